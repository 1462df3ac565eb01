/*-------------------------------------------------------------------------
 *
 * outbox.c
 *	  The SQL side of a payment worker: claim due outbox events, record
 *	  outcomes, release leases.  Everything runs through SPI with plans
 *	  prepared once and kept, inside one short transaction opened by
 *	  ft_xact_begin and closed by ft_xact_commit (worker_xact.c); no
 *	  transaction is ever open while HTTP runs.  Requests are not built
 *	  here: a claim returns rows, the worker hands them to the provider.
 *
 * Lease protocol (see the outbox table in ft_orders--1.0.sql): a claim sets
 * next_attempt_at = lease_until = now() + lease_timeout and bumps attempts.
 * A record only touches an outbox row that still carries the lease this
 * worker set (lease_until compared exactly), so a worker whose lease was
 * released or expired and re-claimed by another can never override the
 * newer owner.  Its payment_attempts row is still written: the HTTP
 * request did happen.
 *
 * Records are batched: arrays in, a handful of statements per batch,
 * whatever the batch size.  Status changes go through
 * ft_orders._change_status, like every other caller's.
 *
 * The worker's search_path is pg_catalog, pg_temp (payment_worker.c), so
 * unqualified functions and operators below are the built-in ones.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

#include "guc.h"
#include "place_order.h"
#include "spi_plan.h"
#include "worker.h"

/*
 * A claim is two statements, each with one generic plan that is right for
 * every batch size (the planner cannot know a LIMIT $1 or an array's
 * length, and a single statement joining both steps has no generic plan
 * that stays on the indexes):
 *
 * 1. lock up to $1 due events, oldest first, skipping those another worker
 *    holds;
 * 2. for the locked events ($1 event ids, $2 order ids, $3 lease in ms):
 *    delete those whose order is no longer pending (their work is done),
 *    lease the others and return what the requests need.
 */
static const char *const ft_lock_due_sql =
"SELECT ob.event_id, ob.order_id"
"  FROM ft_orders.outbox ob"
" WHERE ob.next_attempt_at <= now()"
" ORDER BY ob.next_attempt_at"
" LIMIT $1"
"   FOR UPDATE SKIP LOCKED";

/*
 * What both claims do with the locked events s(event_id, live, ...): delete
 * those that are not live, lease the others for $3 ms.  The lease's SET
 * list is left open.
 */
#define FT_CLAIM_LEASE_SQL \
"), d AS (" \
"  DELETE FROM ft_orders.outbox ob USING s" \
"   WHERE ob.event_id = s.event_id AND NOT s.live" \
"), u AS (" \
"  UPDATE ft_orders.outbox ob" \
"     SET attempts = ob.attempts + 1," \
"         next_attempt_at = now() + make_interval(secs => $3::float8 / 1000)," \
"         lease_until = now() + make_interval(secs => $3::float8 / 1000)"

/*
 * Whether the order's first request went out in the legacy form, without
 * its payment_key (gateway.h, FT_LEGACY_REQUEST_NOTE): a charge attempt of
 * the order was refused for it and recorded so (payment_worker.c).  The
 * order's request is then re-sent in that form, as the gateway holds it.
 * An index probe (payment_attempts_order_id_idx) per claimed order.
 */
#define FT_LEGACY_REQUEST_SQL \
"       EXISTS (SELECT 1 FROM ft_orders.payment_attempts pa" \
"                WHERE pa.order_id = o.order_id" \
"                  AND starts_with(pa.error, '" FT_LEGACY_REQUEST_NOTE "'))"

static const char *const ft_claim_sql =
"WITH s AS ("
"  SELECT c.event_id, coalesce(o.status = 'pending', false) AS live"
"    FROM unnest($1::bigint[], $2::bigint[]) AS c(event_id, order_id)"
"    LEFT JOIN ft_orders.orders o ON o.order_id = c.order_id"
FT_CLAIM_LEASE_SQL
"    FROM s"
"   WHERE ob.event_id = s.event_id AND s.live"
"  RETURNING ob.event_id, ob.order_id, ob.attempts, ob.lease_until"
")"
"SELECT u.event_id, u.order_id, u.attempts, u.lease_until, o.attempts + 1,"
"       o.payment_key::text, o.customer_id, o.amount_minor, o.currency,"
"       o.items::text, o.payment_method, o.payment_id,"
       FT_LEGACY_REQUEST_SQL
"  FROM u JOIN ft_orders.orders o ON o.order_id = u.order_id";

/*
 * The claim of schema 1.3 (docs/reference.md, "Reconciliation"): events
 * that charge an order (refund_id NULL) are live while the order is
 * pending or action_required, refund events while their refund is
 * pending.  An event is looked up instead of sent ("look") when a look-up
 * was asked for, when its first request is older than gateway_key_ttl ($4
 * seconds: the gateway may have forgotten the key), or when its order's
 * cancellation was requested after it was sent (a canceled order is never
 * sent again).  Anything else is sent, and first_sent_at is set by this
 * claim, before the request leaves: cancel_order() reads it.
 */
static const char *const ft_claim13_sql =
"WITH s AS ("
"  SELECT c.event_id,"
"         CASE WHEN ob.refund_id IS NULL"
"              THEN coalesce(o.status IN ('pending', 'action_required'), false)"
"              ELSE coalesce(r.status = 'pending', false) END AS live,"
"         coalesce(ob.lookup"
"                  OR ob.first_sent_at < now() - make_interval(secs => $4::float8)"
"                  OR (ob.refund_id IS NULL AND o.cancel_requested_at IS NOT NULL"
"                      AND ob.first_sent_at IS NOT NULL), false) AS look,"
"         coalesce(ob.refund_id IS NULL AND o.cancel_requested_at IS NOT NULL, false) AS cancel"
"    FROM unnest($1::bigint[], $2::bigint[]) AS c(event_id, order_id)"
"    JOIN ft_orders.outbox ob ON ob.event_id = c.event_id"
"    LEFT JOIN ft_orders.orders o ON o.order_id = c.order_id"
"    LEFT JOIN ft_orders.refunds r ON r.refund_id = ob.refund_id"
FT_CLAIM_LEASE_SQL ","
"         first_sent_at = CASE WHEN s.look THEN ob.first_sent_at"
"                              ELSE coalesce(ob.first_sent_at, now()) END"
"    FROM s"
"   WHERE ob.event_id = s.event_id AND s.live"
"  RETURNING ob.event_id, ob.order_id, ob.attempts, ob.lease_until, ob.refund_id,"
"            s.look, s.cancel"
")"
"SELECT u.event_id, u.order_id, u.attempts, u.lease_until,"
"       CASE WHEN u.refund_id IS NULL THEN o.attempts + 1 ELSE u.attempts END,"
"       o.payment_key::text, o.customer_id, o.amount_minor, o.currency,"
"       o.items::text, o.payment_method, o.payment_id,"
"       u.refund_id, u.look, u.cancel, r.refund_key::text, r.amount_minor,"
"       r.gateway_refund_id,"
       FT_LEGACY_REQUEST_SQL
"  FROM u JOIN ft_orders.orders o ON o.order_id = u.order_id"
"  LEFT JOIN ft_orders.refunds r ON r.refund_id = u.refund_id";

static const char *const ft_next_due_sql =
"SELECT min(next_attempt_at), max(next_attempt_at) FROM ft_orders.outbox";

/*
 * Events scheduled further ahead than anything this system schedules
 * ($1 ms: see ft_outbox_next_due) become due now.
 */
static const char *const ft_unskew_sql =
"UPDATE ft_orders.outbox"
"   SET next_attempt_at = now()"
" WHERE next_attempt_at > now() + make_interval(secs => $1::float8 / 1000)";

/* 1.3: events parked for a look-up ($2 ms: action_timeout) may wait longer */
static const char *const ft_unskew13_sql =
"UPDATE ft_orders.outbox"
"   SET next_attempt_at = now()"
" WHERE next_attempt_at > now() + make_interval(secs => $1::float8 / 1000)"
"   AND (NOT lookup OR next_attempt_at > now() + make_interval(secs => $2::float8 / 1000))";

/* one row per HTTP attempt, whatever became of the event */
static const char *const ft_attempts_sql =
"INSERT INTO ft_orders.payment_attempts"
"       (order_id, attempt, http_status, outcome, error, latency_ms, started_at)"
"SELECT * FROM unnest($1::bigint[], $2::int[], $3::int[], $4::text[],"
"                     $5::text[], $6::float8[], $7::timestamptz[])";

/* schema 1.3: also what the request was, and its refund */
static const char *const ft_attempts13_sql =
"INSERT INTO ft_orders.payment_attempts"
"       (order_id, attempt, http_status, outcome, error, latency_ms, started_at,"
"        request, refund_id)"
"SELECT * FROM unnest($1::bigint[], $2::int[], $3::int[], $4::text[],"
"                     $5::text[], $6::float8[], $7::timestamptz[], $8::text[],"
"                     $9::bigint[])";

static const FtJobColumn ft_attempts_cols[] = {
	FT_COL_ORDER_ID, FT_COL_ORDER_ATTEMPT, FT_COL_HTTP_STATUS,
	FT_COL_OUTCOME, FT_COL_ERROR, FT_COL_LATENCY, FT_COL_STARTED,
	FT_COL_REQUEST, FT_COL_REFUND_ID
};

/* before 1.3 (the first seven columns only), from 1.3 */
static FtJobStatement ft_attempts[2] = {
	{ft_attempts_sql, ft_attempts_cols, 7,
	SPI_OK_INSERT, "recording payment attempts"},
	{ft_attempts13_sql, ft_attempts_cols, lengthof(ft_attempts_cols),
	SPI_OK_INSERT, "recording payment attempts"},
};

/*
 * Settled events (paid, declined, failed): delete the leased outbox row,
 * park failed ones in dead_letters, then ft_orders._change_status moves
 * the order (order status, order_events row, NOTIFY ft_orders_events) as
 * for every other caller.  One call per batch; from 1.2 on it is PL/pgSQL,
 * whose own statement is planned once per worker.
 */
#define FT_FINAL_SQL(dl_cols, dl_vals) \
"WITH r AS (" \
"  SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::text[], $4::int[]," \
"                       $5::text[], $6::text[], $7::text[])" \
"      AS r(event_id, lease_until, status, order_attempts, payment_id, error, detail)" \
"), x AS (" \
"  DELETE FROM ft_orders.outbox ob USING r" \
"   WHERE ob.event_id = r.event_id AND ob.lease_until = r.lease_until" \
"  RETURNING ob.*, ob.attempts AS event_attempts," \
"            r.status::ft_orders.order_status AS status, r.order_attempts," \
"            r.payment_id, r.error, r.detail" \
"), dl AS (" \
"  INSERT INTO ft_orders.dead_letters (event_id, order_id, attempts, last_error" dl_cols ")" \
"  SELECT x.event_id, x.order_id, x.event_attempts, x.error" dl_vals \
"    FROM x WHERE x.status = 'failed'" \
"  ON CONFLICT (event_id) DO UPDATE" \
"     SET order_id = excluded.order_id, attempts = excluded.attempts," \
"         last_error = excluded.last_error, failed_at = now()" \
")" \
"SELECT ft_orders._change_status(array_agg(x.order_id), array_agg(x.status)," \
"                                array_agg(x.order_attempts), array_agg(x.payment_id)," \
"                                array_agg(x.error), array_agg(x.detail))" \
"  FROM x"

static const char *const ft_final_sql = FT_FINAL_SQL("", "");
/* schema 1.3: a dead letter keeps first_sent_at for its requeue */
static const char *const ft_final13_sql = FT_FINAL_SQL(", first_sent_at", ", x.first_sent_at");

static const FtJobColumn ft_final_cols[] = {
	FT_COL_EVENT_ID, FT_COL_LEASE, FT_COL_OUTCOME, FT_COL_ORDER_ATTEMPT,
	FT_COL_PAYMENT_ID, FT_COL_ERROR, FT_COL_DETAIL
};

/* before 1.3, from 1.3 */
static FtJobStatement ft_final[2] = {
	{ft_final_sql, ft_final_cols, lengthof(ft_final_cols),
	SPI_OK_SELECT, "recording settled payments"},
	{ft_final13_sql, ft_final_cols, lengthof(ft_final_cols),
	SPI_OK_SELECT, "recording settled payments"},
};


/*
 * transient failures: give the lease back with a delay.  A payment the
 * gateway is still working on (a provider's re-check reference, $6) is
 * kept in orders.payment_id while the order stays pending.
 */
static const char *const ft_retry_sql =
"WITH r AS ("
"  SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::int[], $4::text[], $5::int[],"
"                       $6::text[])"
"      AS r(event_id, lease_until, delay_ms, error, order_attempts, payment_id)"
"), u AS ("
"  UPDATE ft_orders.outbox ob"
"     SET next_attempt_at = now() + make_interval(secs => r.delay_ms::float8 / 1000),"
"         lease_until = NULL,"
"         last_error = r.error"
"    FROM r"
"   WHERE ob.event_id = r.event_id AND ob.lease_until = r.lease_until"
"  RETURNING ob.order_id, r.error, r.order_attempts, r.payment_id"
")"
"UPDATE ft_orders.orders o"
"   SET attempts = u.order_attempts, last_error = u.error,"
"       payment_id = coalesce(u.payment_id, o.payment_id)"
"  FROM u WHERE o.order_id = u.order_id";

static const FtJobColumn ft_retry_cols[] = {
	FT_COL_EVENT_ID, FT_COL_LEASE, FT_COL_DELAY, FT_COL_ERROR,
	FT_COL_ORDER_ATTEMPT, FT_COL_PAYMENT_ID
};

static FtJobStatement ft_retry = {
	ft_retry_sql, ft_retry_cols, lengthof(ft_retry_cols),
	SPI_OK_UPDATE, "rescheduling payments"
};

/*
 * Retries that are to be look-ups (FtJob.look_up: attempts used up on
 * replies that said nothing readable): marked before ft_retry gives
 * their lease back.  Schema 1.3 on.
 */
static const char *const ft_look_up_sql =
"UPDATE ft_orders.outbox ob SET lookup = true"
"  FROM unnest($1::bigint[], $2::timestamptz[]) AS r(event_id, lease_until)"
" WHERE ob.event_id = r.event_id AND ob.lease_until = r.lease_until";

static const FtJobColumn ft_look_up_cols[] = {FT_COL_EVENT_ID, FT_COL_LEASE};

static FtJobStatement ft_look_up = {
	ft_look_up_sql, ft_look_up_cols, lengthof(ft_look_up_cols),
	SPI_OK_UPDATE, "marking payments for a look-up"
};

/* unfinished work of a stopping worker: due again at once */
static const char *const ft_release_sql =
"UPDATE ft_orders.outbox ob"
"   SET next_attempt_at = now(), lease_until = NULL"
"  FROM unnest($1::bigint[], $2::timestamptz[]) AS r(event_id, lease_until)"
" WHERE ob.event_id = r.event_id AND ob.lease_until = r.lease_until";

static const FtJobColumn ft_release_cols[] = {FT_COL_EVENT_ID, FT_COL_LEASE};

static FtJobStatement ft_release = {
	ft_release_sql, ft_release_cols, lengthof(ft_release_cols),
	SPI_OK_UPDATE, "releasing outbox leases"
};

/* the launcher, when no worker can hold a live lease */
static const char *const ft_release_all_sql =
"UPDATE ft_orders.outbox SET next_attempt_at = now(), lease_until = NULL"
" WHERE lease_until IS NOT NULL";

/*
 * Every statement below is prepared once with one generic plan
 * (CURSOR_OPT_GENERIC_PLAN), which spares planning on every execution.
 * Each is right whatever the values: index lookups driven by the arrays,
 * and for the claim's LIMIT $1 (a generic plan assumes 10 % of the outbox)
 * the next_attempt_at index, since the worker plans without sequential
 * scans, hash and merge joins (payment_worker.c).
 */
#define FT_OUTBOX_PLAN	CURSOR_OPT_GENERIC_PLAN

/* true when CREATE EXTENSION ft_orders was run in this database */
bool
ft_outbox_extension_ready(void)
{
	return OidIsValid(get_extension_oid("ft_orders", true));
}

/*
 * Is the installed schema 1.3 or later (refunds, look-ups)?  Two syscache
 * lookups, cheap enough for every transaction, so that a worker that
 * outlives ALTER EXTENSION ft_orders UPDATE switches at its next claim.
 */
bool
ft_outbox_lifecycle(void)
{
	return ft_schema_lifecycle();
}

/* a one-dimensional array of n elements of type elemtype */
Datum
ft_array(Datum *elems, bool *nulls, int n, Oid elemtype)
{
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			dims[1] = {n};
	int			lbs[1] = {1};

	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	return PointerGetDatum(construct_md_array(elems, nulls, 1, dims, lbs,
											  elemtype, typlen, typbyval,
											  typalign));
}

/* a text Datum of s, or NULL (*isnull) when s is NULL */
static Datum
ft_text_or_null(const char *s, bool *isnull)
{
	*isnull = (s == NULL);
	return s ? CStringGetTextDatum(s) : (Datum) 0;
}

/* the payment_attempts.request text of a job */
static const char *
ft_request_name(FtRequestKind kind)
{
	switch (kind)
	{
		case FT_REQ_CHARGE:
			return "charge";
		case FT_REQ_LOOKUP:
			return "lookup";
		case FT_REQ_REFUND:
			return "refund";
		case FT_REQ_REFUND_LOOKUP:
			return "refund_lookup";
		case FT_REQ_CANCEL:
			return "cancel";
	}
	return "charge";
}

/* the order_events detail of a settled job */
static char *
ft_detail(const FtJob *job)
{
	switch (job->outcome)
	{
		case FT_OUTCOME_PAID:
			return pstrdup("paid");
		case FT_OUTCOME_DECLINED:
			return pstrdup(job->error ? job->error : "declined");
		case FT_OUTCOME_CANCELED:
			return pstrdup("canceled: the gateway never charged it");
		default:
			return psprintf("failed: %s", job->error ? job->error : "unknown error");
	}
}

/*
 * Execute the outbox statement sql with nargs parameters (values, of
 * argtypes), preparing and keeping its plan in *plan the first time this
 * process runs it.  The result is left in SPI_tuptable / SPI_processed.
 * Raises an ERROR, "<what> failed", when SPI returns anything but
 * expected.  Caller is inside ft_xact_begin.
 */
void
ft_outbox_exec(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes,
			   Datum *values, int expected, const char *what)
{
	int			rc;

	if (*plan == NULL)
		*plan = ft_prepare_kept(sql, nargs, argtypes, FT_OUTBOX_PLAN);
	rc = SPI_execute_plan(*plan, values, NULL, false, 0);
	if (rc != expected)
		elog(ERROR, "%s failed: %s", what, SPI_result_code_string(rc));
}

/*
 * Each FtJobColumn: its element and array types and, for a column that is
 * a field of FtJob, the field's offset; with zero_is_null, a field of 0
 * (numbers) is SQL NULL.  A string field is NULL when its pointer is.  The
 * columns computed from a job (request, outcome, detail) have no field.
 */
static const struct
{
	Oid			elemtype;
	Oid			arraytype;
	size_t		offset;
	bool		zero_is_null;
}			ft_job_columns[] = {
	[FT_COL_EVENT_ID] = {INT8OID, INT8ARRAYOID, offsetof(FtJob, event_id)},
	[FT_COL_ORDER_ID] = {INT8OID, INT8ARRAYOID, offsetof(FtJob, order_id)},
	/* charges have none */
	[FT_COL_REFUND_ID] = {INT8OID, INT8ARRAYOID, offsetof(FtJob, refund_id), true},
	[FT_COL_LEASE] = {TIMESTAMPTZOID, TIMESTAMPTZARRAYOID, offsetof(FtJob, lease_until)},
	[FT_COL_STARTED] = {TIMESTAMPTZOID, TIMESTAMPTZARRAYOID, offsetof(FtJob, started_at)},
	[FT_COL_ORDER_ATTEMPT] = {INT4OID, INT4ARRAYOID, offsetof(FtJob, order_attempt)},
	/* 0: no HTTP reply */
	[FT_COL_HTTP_STATUS] = {INT4OID, INT4ARRAYOID, offsetof(FtJob, http_status), true},
	[FT_COL_DELAY] = {INT4OID, INT4ARRAYOID, offsetof(FtJob, delay_ms)},
	[FT_COL_LATENCY] = {FLOAT8OID, FLOAT8ARRAYOID, offsetof(FtJob, latency_ms)},
	[FT_COL_REQUEST] = {TEXTOID, TEXTARRAYOID},
	[FT_COL_OUTCOME] = {TEXTOID, TEXTARRAYOID},
	[FT_COL_DETAIL] = {TEXTOID, TEXTARRAYOID},
	[FT_COL_PAYMENT_ID] = {TEXTOID, TEXTARRAYOID, offsetof(FtJob, payment_id)},
	[FT_COL_ERROR] = {TEXTOID, TEXTARRAYOID, offsetof(FtJob, error)},
	[FT_COL_NEXT_ACTION] = {TEXTOID, TEXTARRAYOID, offsetof(FtJob, next_action)},
	[FT_COL_CLIENT_SECRET] = {TEXTOID, TEXTARRAYOID, offsetof(FtJob, client_secret)},
};

StaticAssertDecl(lengthof(ft_job_columns) == FT_COL_CLIENT_SECRET + 1,
				 "one entry per job column");

/* the value of column col for one job; *isnull set */
static Datum
ft_job_datum(const FtJob *job, FtJobColumn col, bool *isnull)
{
	const char *field;
	int64		number;

	*isnull = false;
	switch (col)
	{
		case FT_COL_REQUEST:
			return CStringGetTextDatum(ft_request_name(job->kind));
		case FT_COL_OUTCOME:
			return CStringGetTextDatum(ft_outcome_name(job->outcome));
		case FT_COL_DETAIL:
			return CStringGetTextDatum(ft_detail(job));
		default:
			break;
	}

	/* a field of the job, read as its column's type */
	field = (const char *) job + ft_job_columns[col].offset;
	switch (ft_job_columns[col].elemtype)
	{
		case INT8OID:
			number = *(const int64 *) field;
			*isnull = (ft_job_columns[col].zero_is_null && number == 0);
			return Int64GetDatum(number);
		case INT4OID:
			number = *(const int32 *) field;
			*isnull = (ft_job_columns[col].zero_is_null && number == 0);
			return Int32GetDatum((int32) number);
		case TIMESTAMPTZOID:
			return TimestampTzGetDatum(*(const TimestampTz *) field);
		case FLOAT8OID:
			return Float8GetDatum(*(const double *) field);
		case TEXTOID:
			return ft_text_or_null(*(char *const *) field, isnull);
	}
	elog(ERROR, "unknown outbox job column %d", (int) col);
	return (Datum) 0;			/* keep compiler quiet */
}

/*
 * The parameters of a batch statement: values[k] is the array of column
 * cols[k] over the njobs jobs, argtypes[k] its array type.
 */
void
ft_job_arrays(FtJob **jobs, int njobs, const FtJobColumn *cols, int ncols,
			  Datum *values, Oid *argtypes)
{
	Datum	   *elems = palloc(njobs * sizeof(Datum));
	bool	   *nulls = palloc(njobs * sizeof(bool));

	for (int k = 0; k < ncols; k++)
	{
		Assert(OidIsValid(ft_job_columns[cols[k]].elemtype));
		for (int i = 0; i < njobs; i++)
			elems[i] = ft_job_datum(jobs[i], cols[k], &nulls[i]);
		/* construct_md_array copies: elems serves the next column */
		values[k] = ft_array(elems, nulls, njobs,
							 ft_job_columns[cols[k]].elemtype);
		argtypes[k] = ft_job_columns[cols[k]].arraytype;
	}
}

/*
 * Run the batch statement stmt over jobs, its parameters being the arrays
 * of its columns (ft_job_arrays), with ft_outbox_exec.
 */
void
ft_outbox_run_jobs(FtJobStatement *stmt, FtJob **jobs, int njobs)
{
	Datum		values[FT_JOB_MAX_COLUMNS];
	Oid			argtypes[FT_JOB_MAX_COLUMNS];

	Assert(stmt->ncols <= FT_JOB_MAX_COLUMNS);
	ft_job_arrays(jobs, njobs, stmt->cols, stmt->ncols, values, argtypes);
	ft_outbox_exec(&stmt->plan, stmt->sql, stmt->ncols, argtypes, values,
				   stmt->expected, stmt->what);
}

/*
 * Claim up to limit due events: lease them and return, in claims[], the
 * event and the order fields a request is built from (strings allocated
 * in cxt).  Returns the number of claims.  Caller is inside ft_xact_begin.
 */
int
ft_outbox_claim(int limit, MemoryContext cxt, FtClaim *claims)
{
	static SPIPlanPtr lock_plan = NULL;
	static SPIPlanPtr claim_plans[2];	/* before 1.3, from 1.3 */
	Oid			lock_argtypes[1] = {INT4OID};
	Oid			argtypes[4] = {INT8ARRAYOID, INT8ARRAYOID, INT4OID, INT4OID};
	Datum		values[4];
	bool		lifecycle = ft_outbox_lifecycle();
	Datum	   *event_ids;
	Datum	   *order_ids;
	MemoryContext oldcxt;
	int			nlocked;
	int			n;

	values[0] = Int32GetDatum(limit);
	ft_outbox_exec(&lock_plan, ft_lock_due_sql, 1, lock_argtypes, values,
				   SPI_OK_SELECT, "locking due outbox events");
	nlocked = (int) Min(SPI_processed, (uint64) limit);
	if (nlocked == 0)
		return 0;

	event_ids = palloc(nlocked * sizeof(Datum));
	order_ids = palloc(nlocked * sizeof(Datum));
	for (int i = 0; i < nlocked; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		bool		isnull;

		event_ids[i] = SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull);
		order_ids[i] = SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull);
	}
	values[0] = ft_array(event_ids, NULL, nlocked, INT8OID);
	values[1] = ft_array(order_ids, NULL, nlocked, INT8OID);
	values[2] = Int32GetDatum(ft_lease_timeout_ms);
	values[3] = Int32GetDatum(ft_gateway_key_ttl_s);
	ft_outbox_exec(&claim_plans[lifecycle ? 1 : 0],
				   lifecycle ? ft_claim13_sql : ft_claim_sql,
				   lifecycle ? 4 : 3, argtypes, values,
				   SPI_OK_SELECT, "claiming outbox events");

	n = (int) Min(SPI_processed, (uint64) limit);
	oldcxt = MemoryContextSwitchTo(cxt);
	for (int i = 0; i < n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		FtClaim    *claim = &claims[i];
		bool		isnull;
		Datum		d_legacy;

		claim->event_id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		claim->order.order_id = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
		claim->event_attempts = DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull));
		claim->lease_until = DatumGetTimestampTz(SPI_getbinval(tup, desc, 4, &isnull));
		claim->order_attempt = DatumGetInt32(SPI_getbinval(tup, desc, 5, &isnull));
		claim->order.payment_key = SPI_getvalue(tup, desc, 6);
		claim->order.customer_id = SPI_getvalue(tup, desc, 7);
		claim->order.amount_minor = DatumGetInt64(SPI_getbinval(tup, desc, 8, &isnull));
		claim->order.currency = SPI_getvalue(tup, desc, 9);
		claim->order.items_json = SPI_getvalue(tup, desc, 10);
		claim->order.payment_method = SPI_getvalue(tup, desc, 11);
		claim->order.pending_ref = SPI_getvalue(tup, desc, 12);
		claim->order.refund_id = 0;
		claim->order.refund_key = NULL;
		claim->order.refund_amount = 0;
		claim->order.refund_ref = NULL;
		d_legacy = SPI_getbinval(tup, desc, lifecycle ? 19 : 13, &isnull);
		claim->order.legacy_request = !isnull && DatumGetBool(d_legacy);
		claim->lifecycle = lifecycle;
		claim->lookup = false;
		claim->cancel_requested = false;
		if (lifecycle)
		{
			Datum		d = SPI_getbinval(tup, desc, 13, &isnull);

			if (!isnull)
			{
				claim->order.refund_id = DatumGetInt64(d);
				claim->order.refund_key = SPI_getvalue(tup, desc, 16);
				claim->order.refund_amount = DatumGetInt64(SPI_getbinval(tup, desc, 17, &isnull));
				claim->order.refund_ref = SPI_getvalue(tup, desc, 18);
			}
			claim->lookup = DatumGetBool(SPI_getbinval(tup, desc, 14, &isnull));
			claim->cancel_requested = DatumGetBool(SPI_getbinval(tup, desc, 15, &isnull));
		}
	}
	MemoryContextSwitchTo(oldcxt);
	return n;
}

/*
 * Earliest next_attempt_at in the outbox (leases included), 0 when the
 * outbox is empty.  A wake-up hint only.
 *
 * Nothing here schedules an event further ahead than a lease or the
 * longest backoff (a Retry-After is capped at backoff_max), except an
 * order parked in action_required (1.3: action_timeout, on an event
 * marked lookup, which gets that much horizon): an event
 * beyond that, plus a minute of slack, was stamped by a clock that has
 * since gone back (say an hour ahead, then corrected), and would wait for
 * the real clock to catch up.  When the latest event is that far ahead,
 * all such events are made due now; re-sending one early is safe (same
 * Idempotency-Key; a lease it still held only makes its worker's record a
 * no-op).  Caller is inside ft_xact_begin.
 */
TimestampTz
ft_outbox_next_due(void)
{
	static SPIPlanPtr next_due_plan = NULL;
	static SPIPlanPtr unskew_plans[2];	/* before 1.3, from 1.3 */
	int			horizon_ms = Max(ft_backoff_max_ms, ft_lease_timeout_ms) + 60 * 1000;
	int64		parked = Max((int64) horizon_ms, (int64) ft_action_timeout_s * 1000 + 60 * 1000);
	bool		lifecycle = ft_outbox_lifecycle();
	bool		isnull;
	Datum		d;
	Datum		args[2];
	TimestampTz next_due;
	Oid			argtypes[2] = {INT4OID, INT4OID};
	int			rc;

	if (next_due_plan == NULL)
		next_due_plan = ft_prepare_kept(ft_next_due_sql, 0, NULL, FT_OUTBOX_PLAN);
	rc = SPI_execute_plan(next_due_plan, NULL, NULL, true, 1);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "reading the outbox failed: %s", SPI_result_code_string(rc));
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
		return 0;
	next_due = DatumGetTimestampTz(d);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	if (DatumGetTimestampTz(d) <=
		TimestampTzPlusMilliseconds(GetCurrentTransactionStartTimestamp(), horizon_ms))
		return next_due;

	/*
	 * From 1.3 on, an order parked in action_required waits action_timeout
	 * on an event marked lookup: such events get that much more horizon.
	 * (The UPDATE reads the far-future end of the next_attempt_at index
	 * only: the skewed events and the parked ones.)
	 */
	args[0] = Int32GetDatum(horizon_ms);
	args[1] = Int32GetDatum((int) Min(parked, (int64) PG_INT32_MAX));
	ft_outbox_exec(&unskew_plans[lifecycle ? 1 : 0],
				   lifecycle ? ft_unskew13_sql : ft_unskew_sql,
				   lifecycle ? 2 : 1, argtypes, args,
				   SPI_OK_UPDATE, "rescheduling outbox events");
	if (SPI_processed == 0)
		return next_due;		/* only parked events are that far ahead */
	ereport(LOG,
			(errmsg("payment worker: " UINT64_FORMAT " outbox event(s) were scheduled more than %d s ahead; they are due now",
					SPI_processed, horizon_ms / 1000),
			 errdetail("Nothing schedules that far ahead: the events were stamped by a clock that has since gone back.")));
	return GetCurrentTransactionStartTimestamp();
}

/*
 * Run the settle statement once on an empty batch: it writes nothing, but
 * the one-time costs of the first settle (planning, loading PL/pgSQL and
 * compiling _change_status) are paid before the worker's first request,
 * not while its requests wait in libcurl.  Caller is inside
 * ft_xact_begin.
 */
void
ft_outbox_warm_up(void)
{
	ft_outbox_run_jobs(&ft_final[ft_outbox_lifecycle() ? 1 : 0], NULL, 0);
}


/*
 * Record the outcomes of njobs completed requests: one payment_attempts
 * row each, then the settled ones and the retries, at most three
 * statements in all.  Caller is inside ft_xact_begin.
 */
void
ft_outbox_record(FtJob **jobs, int njobs)
{
	FtJob	  **settled = palloc(njobs * sizeof(FtJob *));
	FtJob	  **retries = palloc(njobs * sizeof(FtJob *));
	FtJob	  **paid = palloc(njobs * sizeof(FtJob *));
	FtJob	  **unknown = palloc(njobs * sizeof(FtJob *));
	FtJob	  **action = palloc(njobs * sizeof(FtJob *));
	FtJob	  **refunds = palloc(njobs * sizeof(FtJob *));
	FtJob	  **look_ups = palloc(njobs * sizeof(FtJob *));
	int			nlook_ups = 0;
	int			nsettled = 0;
	int			nretries = 0;
	int			npaid = 0;
	int			nunknown = 0;
	int			naction = 0;
	int			nrefunds = 0;
	bool		lifecycle;

	if (njobs <= 0)
		return;
	lifecycle = ft_outbox_lifecycle();
	for (int i = 0; i < njobs; i++)
	{
		FtJob	   *job = jobs[i];

		if (job->outcome == FT_OUTCOME_UNKNOWN)
			unknown[nunknown++] = job;
		else if (job->refund_id != 0)
			refunds[nrefunds++] = job;
		else if (job->outcome == FT_OUTCOME_RETRY)
		{
			retries[nretries++] = job;
			if (job->look_up && lifecycle)
				look_ups[nlook_ups++] = job;
		}
		else if (job->outcome == FT_OUTCOME_ACTION_REQUIRED)
			action[naction++] = job;
		else
		{
			settled[nsettled++] = job;
			if (job->outcome == FT_OUTCOME_PAID)
				paid[npaid++] = job;
		}
	}
	/* jobs of 1.3 kinds exist only when a 1.3 schema claimed them */
	if (!lifecycle && (nunknown > 0 || nrefunds > 0 || naction > 0))
		elog(ERROR, "payment worker holds look-up or refund results but the ft_orders schema is older than 1.3");

	ft_outbox_run_jobs(&ft_attempts[lifecycle ? 1 : 0], jobs, njobs);
	if (nsettled > 0)
		ft_outbox_run_jobs(&ft_final[lifecycle ? 1 : 0], settled, nsettled);
	if (nlook_ups > 0)
		ft_outbox_run_jobs(&ft_look_up, look_ups, nlook_ups);
	if (nretries > 0)
		ft_outbox_run_jobs(&ft_retry, retries, nretries);
	if (nunknown > 0)
		ft_outbox_run_jobs(&ft_lifecycle_unknown, unknown, nunknown);
	if (naction > 0)
		ft_lifecycle_record_action(action, naction);
	if (nrefunds > 0)
		ft_outbox_run_jobs(&ft_lifecycle_refunds, refunds, nrefunds);
	if (npaid > 0 && lifecycle)
		ft_outbox_run_jobs(&ft_lifecycle_refund_canceled, paid, npaid);
}

/*
 * ft_outbox_record in a subtransaction (as PL/pgSQL runs a block with an
 * exception handler).  Returns true when it committed; false, with the
 * subtransaction rolled back and *error set to the error's message
 * (printable ASCII), when it raised an error that may come from the jobs'
 * data.  Errors that say nothing about the jobs (a cancel, a shutdown,
 * lack of resources, a serialization failure, an internal error) are
 * raised again, as if there were no subtransaction.
 */
static bool
ft_outbox_record_sub(FtJob **jobs, int njobs, char **error)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	volatile bool ok = true;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		ft_outbox_record(jobs, njobs);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		int			class;

		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;

		class = ERRCODE_TO_CATEGORY(edata->sqlerrcode);
		if (class == ERRCODE_TRANSACTION_ROLLBACK ||
			class == ERRCODE_INSUFFICIENT_RESOURCES ||
			class == ERRCODE_OPERATOR_INTERVENTION ||
			class == ERRCODE_SYSTEM_ERROR ||
			class == ERRCODE_INTERNAL_ERROR)
			ReThrowError(edata);
		*error = ft_gateway_clean_text(edata->message ? edata->message : "unknown error",
									   FT_RECORD_ERROR_MAX);
		FreeErrorData(edata);
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

/* a job's values from its reply, freed: it is recorded without them */
static void
ft_job_forget_reply(FtJob *job)
{
	char	  **fields[] = {&job->payment_id, &job->error, &job->next_action,
	&job->client_secret};

	for (int i = 0; i < lengthof(fields); i++)
	{
		if (*fields[i] != NULL)
			pfree(*fields[i]);
		*fields[i] = NULL;
	}
}

/*
 * Record the outcomes of njobs jobs so that one job's data cannot keep the
 * others from being recorded: the batch in a subtransaction; if it fails,
 * each job in one of its own.  A job whose record still fails is recorded
 * as a failed attempt with the error instead (retried like a transient
 * failure, a dead letter after max_attempts), with a WARNING; if even that
 * fails, it is left to its lease (due again when the lease ends).  Caller
 * is inside ft_xact_begin.
 */
void
ft_outbox_record_isolated(FtJob **jobs, int njobs)
{
	char	   *error = NULL;

	if (njobs <= 0 || ft_outbox_record_sub(jobs, njobs, &error))
		return;
	for (int i = 0; i < njobs; i++)
	{
		FtJob	   *job = jobs[i];
		FtOutcome	was = job->outcome;
		MemoryContext oldcxt;

		if (ft_outbox_record_sub(&job, 1, &error))
			continue;
		ereport(WARNING,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("could not record the outcome of order " INT64_FORMAT ": %s",
						job->order_id, error),
				 errdetail("The %s outcome was not recorded; the payment is tried again and becomes a dead letter after ft_orders.max_attempts attempts.",
						   ft_outcome_name(was))));
		/* the job's strings live in the job's own memory context */
		oldcxt = MemoryContextSwitchTo(GetMemoryChunkContext(job));
		ft_job_forget_reply(job);
		job->error = psprintf("could not record the %s outcome: %s",
							  ft_outcome_name(was), error);
		MemoryContextSwitchTo(oldcxt);
		job->outcome = job->event_attempts >= ft_max_attempts ?
			FT_OUTCOME_FAILED : FT_OUTCOME_RETRY;
		job->delay_ms = ft_backoff_delay_ms(job->event_attempts, -1);
		job->look_up = false;
		if (!ft_outbox_record_sub(&job, 1, &error))
			ereport(WARNING,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("could not record the failure of order " INT64_FORMAT ": %s",
							job->order_id, error),
					 errdetail("Its event is due again when its lease ends.")));
	}
}

/*
 * Give back the leases of jobs whose outcome is unknown (shutdown): due
 * again at once, for any worker.
 */
void
ft_outbox_release(FtJob **jobs, int njobs)
{
	if (njobs <= 0)
		return;
	ft_outbox_run_jobs(&ft_release, jobs, njobs);
}

/*
 * Release every lease (launcher, when no payment worker runs).  Returns
 * how many were released.  Caller is inside ft_xact_begin.
 */
int64
ft_outbox_release_all_leases(void)
{
	static SPIPlanPtr plan = NULL;

	ft_outbox_exec(&plan, ft_release_all_sql, 0, NULL, NULL,
				   SPI_OK_UPDATE, "releasing outbox leases");
	return (int64) SPI_processed;
}
