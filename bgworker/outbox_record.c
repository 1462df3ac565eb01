/*-------------------------------------------------------------------------
 *
 * outbox_record.c
 *	  The recording side of a payment worker's SQL: one payment_attempts
 *	  row per HTTP attempt, settled payments, retries, and the payment
 *	  lifecycle of schema 1.3 (see docs/reference.md, "Lifecycle"):
 *	  look-ups that found nothing, orders parked in action_required,
 *	  refunds, and the automatic refund of canceled orders that turned out
 *	  paid.
 *
 * Records are batched: arrays of the jobs' columns in (outbox_batch.c), a
 * handful of statements per batch, whatever the batch size, run inside
 * the worker's short transaction (ft_xact_begin).  Every outbox row is
 * touched only while it still carries this worker's lease
 * (outbox_claim.c); the payment_attempts row of a job is written anyway:
 * the HTTP request did happen.  Status changes go through
 * ft_orders._change_status, like every other caller's; refunds are settled
 * by ft_orders._settle_refunds, which moves the order's status through it.
 *
 * The worker's search_path is pg_catalog, pg_temp (payment_worker.c), so
 * unqualified functions and operators below are the built-in ones.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "guc.h"
#include "schema_version.h"
#include "worker.h"

/* one row per HTTP attempt, whatever became of the event */
static const char *const ft_attempts_sql =
"INSERT INTO ft_orders.payment_attempts"
"       (order_id, attempt, http_status, outcome, error, latency_ms, started_at)"
"SELECT * FROM unnest($1::bigint[], $2::int[], $3::int[], $4::text[],"
"                     $5::text[], $6::float8[], $7::timestamptz[])";

/* schema 1.3: also what the request was, and its refund */
static const char *const ft_attempts_sql_1_3 =
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
	{ft_attempts_sql_1_3, ft_attempts_cols, lengthof(ft_attempts_cols),
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
static const char *const ft_final_sql_1_3 = FT_FINAL_SQL(", first_sent_at", ", x.first_sent_at");

static const FtJobColumn ft_final_cols[] = {
	FT_COL_EVENT_ID, FT_COL_LEASE, FT_COL_OUTCOME, FT_COL_ORDER_ATTEMPT,
	FT_COL_PAYMENT_ID, FT_COL_ERROR, FT_COL_DETAIL
};

/* before 1.3, from 1.3 */
static FtJobStatement ft_final[2] = {
	{ft_final_sql, ft_final_cols, lengthof(ft_final_cols),
	SPI_OK_SELECT, "recording settled payments"},
	{ft_final_sql_1_3, ft_final_cols, lengthof(ft_final_cols),
	SPI_OK_SELECT, "recording settled payments"},
};

/*
 * transient failures: give the lease back with a delay, and the attempt
 * the claim counted when it does not count ($7, attempts.c).  A payment
 * the gateway is still working on (a provider's re-check reference, $6)
 * is kept in orders.payment_id while the order stays pending.
 */
static const char *const ft_retry_sql =
"WITH r AS ("
"  SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::int[], $4::text[], $5::int[],"
"                       $6::text[], $7::int[])"
"      AS r(event_id, lease_until, delay_ms, error, order_attempts, payment_id, uncounted)"
"), u AS ("
"  UPDATE ft_orders.outbox ob"
"     SET next_attempt_at = now() + make_interval(secs => r.delay_ms::float8 / 1000),"
"         lease_until = NULL,"
"         attempts = greatest(ob.attempts - r.uncounted, 0),"
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
	FT_COL_ORDER_ATTEMPT, FT_COL_PAYMENT_ID, FT_COL_UNCOUNTED
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

/*
 * A look-up that the gateway answered "no such payment / refund": nothing
 * was charged under the key, so the work is sent afresh, at once, as a new
 * key lifetime (first_sent_at cleared; the claim that sends it sets it).
 * A charge's order keeps its attempt count and the reason.
 */
static const char *const ft_unknown_sql =
"WITH r AS ("
"  SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::int[], $4::text[])"
"      AS r(event_id, lease_until, order_attempts, error)"
"), u AS ("
"  UPDATE ft_orders.outbox ob"
"     SET first_sent_at = NULL, lookup = false, next_attempt_at = now(),"
"         lease_until = NULL, last_error = r.error"
"    FROM r"
"   WHERE ob.event_id = r.event_id AND ob.lease_until = r.lease_until"
"  RETURNING ob.order_id, ob.refund_id, r.order_attempts, r.error"
")"
"UPDATE ft_orders.orders o"
"   SET attempts = u.order_attempts, last_error = u.error"
"  FROM u WHERE o.order_id = u.order_id AND u.refund_id IS NULL";

static const FtJobColumn ft_unknown_cols[] = {
	FT_COL_EVENT_ID, FT_COL_LEASE, FT_COL_ORDER_ATTEMPT, FT_COL_ERROR
};

/* charges and refunds alike (FT_OUTCOME_UNKNOWN) */
static FtJobStatement ft_unknown = {
	ft_unknown_sql, ft_unknown_cols, lengthof(ft_unknown_cols),
	SPI_OK_UPDATE, "recording look-ups that found nothing"
};

/*
 * requires_action: the customer's move.  The event waits action_timeout
 * ($8 s) and is then looked up (a webhook may settle the order first); the
 * order keeps the payment reference, next_action and client_secret.
 * Returns the orders whose event this worker still held.
 */
static const char *const ft_park_sql =
"WITH r AS ("
"  SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::int[], $4::text[],"
"                       $5::text[], $6::text[], $7::text[])"
"      AS r(event_id, lease_until, order_attempts, payment_id, next_action,"
"           client_secret, error)"
"), u AS ("
"  UPDATE ft_orders.outbox ob"
"     SET lookup = true, lease_until = NULL, last_error = r.error,"
"         next_attempt_at = now() + make_interval(secs => $8::float8)"
"    FROM r"
"   WHERE ob.event_id = r.event_id AND ob.lease_until = r.lease_until"
"  RETURNING ob.order_id, r.*"
")"
"UPDATE ft_orders.orders o"
"   SET attempts = u.order_attempts, last_error = u.error,"
"       payment_id = coalesce(u.payment_id, o.payment_id),"
"       next_action = u.next_action::jsonb, client_secret = u.client_secret"
"  FROM u WHERE o.order_id = u.order_id"
" RETURNING o.order_id";

/* ... and their status, in a statement of its own (the row was updated) */
static const char *const ft_park_status_sql =
"SELECT ft_orders._change_status(array_agg(o.order_id),"
"         array_agg('action_required'::ft_orders.order_status),"
"         array_agg(o.attempts), array_agg(o.payment_id), array_agg(o.last_error),"
"         array_agg('action required: waiting for the customer'::text))"
"  FROM ft_orders.orders o"
" WHERE o.order_id = ANY ($1::bigint[]) AND o.status <> 'action_required'";

/*
 * Refund events: a settled refund (refunded / refund_failed) leaves the
 * outbox and is settled by _settle_refunds; one given up on after
 * max_attempts (failed) becomes a dead letter and stays pending (its
 * outcome is unknown); a transient failure (retry) is rescheduled.  The
 * refund row keeps the last error.
 */
static const char *const ft_refunds_sql =
"WITH r AS ("
"  SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::bigint[], $4::text[],"
"                       $5::text[], $6::text[], $7::int[], $8::int[])"
"      AS r(event_id, lease_until, refund_id, outcome, gateway_id, error, delay_ms,"
"           uncounted)"
"), x AS ("
"  DELETE FROM ft_orders.outbox ob USING r"
"   WHERE ob.event_id = r.event_id AND ob.lease_until = r.lease_until"
"     AND r.outcome <> 'retry'"
"  RETURNING ob.event_id, ob.order_id, ob.attempts, ob.first_sent_at,"
"            r.refund_id, r.outcome, r.gateway_id, r.error"
"), u AS ("
"  UPDATE ft_orders.outbox ob"
"     SET next_attempt_at = now() + make_interval(secs => r.delay_ms::float8 / 1000),"
"         lease_until = NULL, last_error = r.error,"
"         attempts = greatest(ob.attempts - r.uncounted, 0)"
"    FROM r"
"   WHERE ob.event_id = r.event_id AND ob.lease_until = r.lease_until"
"     AND r.outcome = 'retry'"
"  RETURNING r.refund_id, r.error, r.gateway_id"
"), dl AS ("
"  INSERT INTO ft_orders.dead_letters"
"         (event_id, order_id, attempts, last_error, refund_id, first_sent_at)"
"  SELECT x.event_id, x.order_id, x.attempts, x.error, x.refund_id, x.first_sent_at"
"    FROM x WHERE x.outcome = 'failed'"
"  ON CONFLICT (event_id) DO UPDATE"
"     SET order_id = excluded.order_id, attempts = excluded.attempts,"
"         last_error = excluded.last_error, refund_id = excluded.refund_id,"
"         first_sent_at = excluded.first_sent_at, failed_at = now()"
"), e AS ("
"  UPDATE ft_orders.refunds f"
"     SET last_error = t.error, updated_at = now(),"
"         gateway_refund_id = coalesce(t.gateway_id, f.gateway_refund_id)"
"    FROM (SELECT u.refund_id, u.error, u.gateway_id FROM u"
"          UNION ALL"
"          SELECT x.refund_id, x.error, x.gateway_id FROM x WHERE x.outcome = 'failed') t"
"   WHERE f.refund_id = t.refund_id"
")"
"SELECT ft_orders._settle_refunds("
"         array_agg(x.refund_id) FILTER (WHERE x.outcome <> 'failed'),"
"         array_agg(x.outcome) FILTER (WHERE x.outcome <> 'failed'),"
"         array_agg(x.gateway_id) FILTER (WHERE x.outcome <> 'failed'),"
"         array_agg(x.error) FILTER (WHERE x.outcome <> 'failed'))"
"  FROM x";

/* the gateway's refund id is the job's payment_id */
static const FtJobColumn ft_refunds_cols[] = {
	FT_COL_EVENT_ID, FT_COL_LEASE, FT_COL_REFUND_ID, FT_COL_OUTCOME,
	FT_COL_PAYMENT_ID, FT_COL_ERROR, FT_COL_DELAY, FT_COL_UNCOUNTED
};

/* refunded, refund_failed, failed (given up: dead letter) and retry */
static FtJobStatement ft_refunds = {
	ft_refunds_sql, ft_refunds_cols, lengthof(ft_refunds_cols),
	SPI_OK_SELECT, "recording refunds"
};

/*
 * Orders among the paid jobs whose cancellation was requested while their
 * charge was in flight: refunded in full (ft_orders._refund_canceled, a
 * statement of its own so that it sees a cancel_order() that committed
 * while this transaction waited for the order's row lock).
 */
static const char *const ft_refund_canceled_sql =
"SELECT ft_orders._refund_canceled($1::bigint[])";

static const FtJobColumn ft_refund_canceled_cols[] = {FT_COL_ORDER_ID};

static FtJobStatement ft_refund_canceled = {
	ft_refund_canceled_sql, ft_refund_canceled_cols,
	lengthof(ft_refund_canceled_cols),
	SPI_OK_SELECT, "refunding canceled orders"
};

/*
 * Orders whose payment requires the customer's action: park them.
 * Caller is inside ft_xact_begin.
 */
static void
ft_record_action(FtJob **jobs, int n)
{
	static const FtJobColumn cols[] = {
		FT_COL_EVENT_ID, FT_COL_LEASE, FT_COL_ORDER_ATTEMPT, FT_COL_PAYMENT_ID,
		FT_COL_NEXT_ACTION, FT_COL_CLIENT_SECRET, FT_COL_ERROR
	};
	static SPIPlanPtr park_plan = NULL;
	static SPIPlanPtr status_plan = NULL;
	Oid			argtypes[lengthof(cols) + 1];
	Datum		values[lengthof(cols) + 1];
	Oid			status_argtype = INT8ARRAYOID;
	Datum	   *parked;
	Datum		ids;
	int			nparked;

	/* the job arrays, then $8: action_timeout */
	ft_job_arrays(jobs, n, cols, lengthof(cols), values, argtypes);
	argtypes[lengthof(cols)] = INT4OID;
	values[lengthof(cols)] = Int32GetDatum(ft_action_timeout_s);
	ft_outbox_exec(&park_plan, ft_park_sql, lengthof(values), argtypes, values,
				   SPI_OK_UPDATE_RETURNING, "parking orders in action_required");
	nparked = (int) SPI_processed;
	if (nparked == 0)
		return;
	parked = palloc(nparked * sizeof(Datum));
	for (int i = 0; i < nparked; i++)
	{
		bool		isnull;

		parked[i] = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);
	}
	ids = ft_array(parked, NULL, nparked, INT8OID);
	ft_outbox_exec(&status_plan, ft_park_status_sql, 1, &status_argtype,
				   &ids, SPI_OK_SELECT, "moving orders to action_required");
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
	ft_outbox_run_jobs(&ft_final[ft_schema_version() >= FT_SCHEMA_1_3], NULL, 0);
}


/*
 * Record the outcomes of njobs completed requests: one payment_attempts
 * row each, then one statement per kind of outcome in the batch (settled,
 * retries (and those of them to be looked up), look-ups that found
 * nothing, action_required (two), refunds, refunds of canceled orders
 * that turned out paid): at most nine statements in all.  Caller is
 * inside ft_xact_begin.
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
	bool		v1_3;

	if (njobs <= 0)
		return;
	v1_3 = (ft_schema_version() >= FT_SCHEMA_1_3);
	for (int i = 0; i < njobs; i++)
	{
		FtJob	   *job = jobs[i];

		if (job->outcome == FT_OUTCOME_UNKNOWN)
			unknown[nunknown++] = job;
		else if (job->claim.order.refund_id != 0)
			refunds[nrefunds++] = job;
		else if (job->outcome == FT_OUTCOME_RETRY)
		{
			retries[nretries++] = job;
			if (job->look_up && v1_3)
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
	if (!v1_3 && (nunknown > 0 || nrefunds > 0 || naction > 0))
		elog(ERROR, "payment worker holds look-up or refund results but the ft_orders schema is older than 1.3");

	ft_outbox_run_jobs(&ft_attempts[v1_3], jobs, njobs);
	if (nsettled > 0)
		ft_outbox_run_jobs(&ft_final[v1_3], settled, nsettled);
	if (nlook_ups > 0)
		ft_outbox_run_jobs(&ft_look_up, look_ups, nlook_ups);
	if (nretries > 0)
		ft_outbox_run_jobs(&ft_retry, retries, nretries);
	if (nunknown > 0)
		ft_outbox_run_jobs(&ft_unknown, unknown, nunknown);
	if (naction > 0)
		ft_record_action(action, naction);
	if (nrefunds > 0)
		ft_outbox_run_jobs(&ft_refunds, refunds, nrefunds);
	if (npaid > 0 && v1_3)
		ft_outbox_run_jobs(&ft_refund_canceled, paid, npaid);
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
 * others from being recorded, nor stop the worker: the batch in a
 * subtransaction (ft_outbox_try); if it fails, each job in one of its
 * own.  A job whose record still fails is recorded as a failed attempt
 * with the error instead, with a WARNING: retried like a transient
 * failure, a dead letter after max_attempts.  If even that fails, it is
 * left to its lease (due again when the lease ends).  Caller is inside
 * ft_xact_begin.
 */
void
ft_outbox_record_isolated(FtJob **jobs, int njobs)
{
	char	   *error = NULL;

	if (njobs <= 0 || ft_outbox_try(ft_outbox_record, jobs, njobs, &error))
		return;
	for (int i = 0; i < njobs; i++)
	{
		FtJob	   *job = jobs[i];
		FtOutcome	was = job->outcome;
		MemoryContext oldcxt;

		if (ft_outbox_try(ft_outbox_record, &job, 1, &error))
			continue;
		ereport(WARNING,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("could not record the outcome of order " INT64_FORMAT ": %s",
						job->claim.order.order_id, error),
				 errdetail("The %s outcome was not recorded; the payment is tried again and becomes a dead letter after ft_orders.max_attempts attempts.",
						   ft_outcome_name(was))));
		/* the job's strings live in the job's own memory context */
		oldcxt = MemoryContextSwitchTo(GetMemoryChunkContext(job));
		ft_job_forget_reply(job);
		job->error = psprintf("could not record the %s outcome: %s",
							  ft_outcome_name(was), error);
		MemoryContextSwitchTo(oldcxt);
		job->outcome = job->claim.event_attempts >= ft_max_attempts ?
			FT_OUTCOME_FAILED : FT_OUTCOME_RETRY;
		job->delay_ms = ft_backoff_delay_ms(job->claim.event_attempts, -1);
		job->look_up = false;
		job->uncounted = 0;		/* the order's own trouble: it counts */
		if (!ft_outbox_try(ft_outbox_record, &job, 1, &error))
			ereport(WARNING,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("could not record the failure of order " INT64_FORMAT ": %s",
							job->claim.order.order_id, error),
					 errdetail("Its event is due again when its lease ends.")));
	}
}
