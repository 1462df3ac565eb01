/*-------------------------------------------------------------------------
 *
 * outbox_claim.c
 *	  The claiming side of a payment worker's SQL: lease due outbox events
 *	  and return what their requests are built from, find the next due
 *	  event, release leases.  Everything runs through SPI with plans
 *	  prepared once and kept (outbox_batch.c), inside one short transaction
 *	  opened by ft_xact_begin and closed by ft_xact_commit (worker_xact.c);
 *	  no transaction is ever open while HTTP runs.  Requests are not built
 *	  here: a claim returns rows, the worker hands them to the provider.
 *
 * Lease protocol (see the outbox table in ft_orders--1.0.sql): a claim sets
 * next_attempt_at = lease_until = now() + lease_timeout and bumps attempts.
 * A record (outbox_record.c) only touches an outbox row that still carries
 * the lease this worker set (lease_until compared exactly), so a worker
 * whose lease was released or expired and re-claimed by another can never
 * override the newer owner.
 *
 * The worker's search_path is pg_catalog, pg_temp (payment_worker.c), so
 * unqualified functions and operators below are the built-in ones.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "claim_floor.h"
#include "guc.h"
#include "schema_version.h"
#include "spi_plan.h"
#include "worker.h"

/*
 * A claim is two statements, each with one generic plan that is right for
 * every batch size (the planner cannot know a LIMIT $1 or an array's
 * length, and a single statement joining both steps has no generic plan
 * that stays on the indexes):
 *
 * 1. lock up to $1 due events, oldest first, skipping those another worker
 *    holds, from the claim floor $2 on (claim_floor.c: the dead row
 *    versions below it, which an old snapshot keeps, are not walked);
 * 2. for the locked events ($1 event ids, $2 order ids, $3 lease in ms):
 *    delete those whose order is no longer pending (their work is done),
 *    lease the others and return what the requests need.
 */
static const char *const ft_lock_due_sql =
"SELECT ob.event_id, ob.order_id, ob.next_attempt_at"
"  FROM ft_orders.outbox ob"
" WHERE ob.next_attempt_at >= $2 AND ob.next_attempt_at <= now()"
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
 * the order was refused for it and recorded so (worker_job.c).  The
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
 * claim, before the request leaves: cancel_order() reads it.  more_cols:
 * columns of later schemas, after the legacy mark.
 */
#define FT_CLAIM_SQL_1_3(more_cols) \
"WITH s AS (" \
"  SELECT c.event_id," \
"         CASE WHEN ob.refund_id IS NULL" \
"              THEN coalesce(o.status IN ('pending', 'action_required'), false)" \
"              ELSE coalesce(r.status = 'pending', false) END AS live," \
"         coalesce(ob.lookup" \
"                  OR ob.first_sent_at < now() - make_interval(secs => $4::float8)" \
"                  OR (ob.refund_id IS NULL AND o.cancel_requested_at IS NOT NULL" \
"                      AND ob.first_sent_at IS NOT NULL), false) AS look," \
"         coalesce(ob.refund_id IS NULL AND o.cancel_requested_at IS NOT NULL, false) AS cancel" \
"    FROM unnest($1::bigint[], $2::bigint[]) AS c(event_id, order_id)" \
"    JOIN ft_orders.outbox ob ON ob.event_id = c.event_id" \
"    LEFT JOIN ft_orders.orders o ON o.order_id = c.order_id" \
"    LEFT JOIN ft_orders.refunds r ON r.refund_id = ob.refund_id" \
FT_CLAIM_LEASE_SQL "," \
"         first_sent_at = CASE WHEN s.look THEN ob.first_sent_at" \
"                              ELSE coalesce(ob.first_sent_at, now()) END" \
"    FROM s" \
"   WHERE ob.event_id = s.event_id AND s.live" \
"  RETURNING ob.event_id, ob.order_id, ob.attempts, ob.lease_until, ob.refund_id," \
"            s.look, s.cancel" \
")" \
"SELECT u.event_id, u.order_id, u.attempts, u.lease_until," \
"       CASE WHEN u.refund_id IS NULL THEN o.attempts + 1 ELSE u.attempts END," \
"       o.payment_key::text, o.customer_id, o.amount_minor, o.currency," \
"       o.items::text, o.payment_method, o.payment_id," \
"       u.refund_id, u.look, u.cancel, r.refund_key::text, r.amount_minor," \
"       r.gateway_refund_id," \
       FT_LEGACY_REQUEST_SQL \
       more_cols \
"  FROM u JOIN ft_orders.orders o ON o.order_id = u.order_id" \
"  LEFT JOIN ft_orders.refunds r ON r.refund_id = u.refund_id"

static const char *const ft_claim_sql_1_3 = FT_CLAIM_SQL_1_3("");

/*
 * 1.5: whether a Stripe object without a payment_key may be the order's
 * (orders.match_by_order_id), and whether its refund's key goes in the
 * refund's metadata (refunds.key_in_metadata)
 */
static const char *const ft_claim_sql_1_5 =
	FT_CLAIM_SQL_1_3(", o.match_by_order_id, coalesce(r.key_in_metadata, false)");

/*
 * The earliest event from the claim floor $1 on, and whether any event lies
 * beyond the horizon of $2 ms: both read one end of the next_attempt_at
 * index, never the dead entries an old snapshot keeps below the floor or
 * behind the latest leases.
 */
static const char *const ft_next_due_sql =
"SELECT (SELECT min(next_attempt_at) FROM ft_orders.outbox WHERE next_attempt_at >= $1),"
"       EXISTS (SELECT 1 FROM ft_orders.outbox"
"                WHERE next_attempt_at > now() + make_interval(secs => $2::float8 / 1000))";

/* the claim floor the last claim of this transaction started at */
static TimestampTz ft_claimed_from = DT_NOBEGIN;

/*
 * Events scheduled further ahead than anything this system schedules
 * ($1 ms: see ft_outbox_next_due) become due now.
 */
static const char *const ft_unskew_sql =
"UPDATE ft_orders.outbox"
"   SET next_attempt_at = now()"
" WHERE next_attempt_at > now() + make_interval(secs => $1::float8 / 1000)";

/* 1.3: events parked for a look-up ($2 ms: action_timeout) may wait longer */
static const char *const ft_unskew_sql_1_3 =
"UPDATE ft_orders.outbox"
"   SET next_attempt_at = now()"
" WHERE next_attempt_at > now() + make_interval(secs => $1::float8 / 1000)"
"   AND (NOT lookup OR next_attempt_at > now() + make_interval(secs => $2::float8 / 1000))";

/*
 * unfinished work of a stopping worker: due again at once, and the
 * attempt its claim counted given back ($3: attempts.c)
 */
static const char *const ft_release_sql =
"UPDATE ft_orders.outbox ob"
"   SET next_attempt_at = now(), lease_until = NULL,"
"       attempts = greatest(ob.attempts - r.uncounted, 0)"
"  FROM unnest($1::bigint[], $2::timestamptz[], $3::int[])"
"       AS r(event_id, lease_until, uncounted)"
" WHERE ob.event_id = r.event_id AND ob.lease_until = r.lease_until";

static const FtJobColumn ft_release_cols[] = {
	FT_COL_EVENT_ID, FT_COL_LEASE, FT_COL_UNCOUNTED
};

static FtJobStatement ft_release = {
	ft_release_sql, ft_release_cols, lengthof(ft_release_cols),
	SPI_OK_UPDATE, "releasing outbox leases"
};

/* the launcher, when no worker can hold a live lease */
static const char *const ft_release_all_sql =
"UPDATE ft_orders.outbox SET next_attempt_at = now(), lease_until = NULL"
" WHERE lease_until IS NOT NULL";


/*
 * Claim up to limit due events: lease them and return, in claims[], the
 * event and the order fields a request is built from (strings allocated
 * in cxt).  Returns the number of claims.  Caller is inside ft_xact_begin.
 */
int
ft_outbox_claim(int limit, MemoryContext cxt, FtClaim *claims)
{
	static SPIPlanPtr lock_plan = NULL;
	static SPIPlanPtr claim_plans[3];	/* before 1.3, from 1.3, from 1.5 */
	Oid			lock_argtypes[2] = {INT4OID, TIMESTAMPTZOID};
	Oid			argtypes[4] = {INT8ARRAYOID, INT8ARRAYOID, INT4OID, INT4OID};
	Datum		values[4];
	FtSchemaVersion schema = ft_schema_version();
	bool		v1_3 = (schema >= FT_SCHEMA_1_3);
	bool		v1_5 = (schema >= FT_SCHEMA_1_5);
	Datum	   *event_ids;
	Datum	   *order_ids;
	MemoryContext oldcxt;
	int			nlocked;
	int			n;

	ft_claimed_from = ft_claim_floor_start();
	values[0] = Int32GetDatum(limit);
	values[1] = TimestampTzGetDatum(ft_claimed_from);
	ft_outbox_exec(&lock_plan, ft_lock_due_sql, 2, lock_argtypes, values,
				   SPI_OK_SELECT, "locking due outbox events");
	nlocked = (int) Min(SPI_processed, (uint64) limit);
	if (nlocked == 0)
	{
		ft_claim_floor_scanned(0, limit, 0);
		return 0;
	}
	else
	{
		bool		isnull;
		Datum		last = SPI_getbinval(SPI_tuptable->vals[nlocked - 1],
										 SPI_tuptable->tupdesc, 3, &isnull);

		ft_claim_floor_scanned(nlocked, limit, DatumGetTimestampTz(last));
	}

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
	ft_outbox_exec(&claim_plans[v1_5 ? 2 : v1_3 ? 1 : 0],
				   v1_5 ? ft_claim_sql_1_5 : v1_3 ? ft_claim_sql_1_3 : ft_claim_sql,
				   v1_3 ? 4 : 3, argtypes, values,
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
		d_legacy = SPI_getbinval(tup, desc, v1_3 ? 19 : 13, &isnull);
		claim->order.legacy_request = !isnull && DatumGetBool(d_legacy);
		/* before 1.5 any order may have been first sent without its key */
		claim->order.match_by_order_id = true;
		claim->order.refund_key_in_metadata = false;
		if (v1_5)
		{
			Datum		d = SPI_getbinval(tup, desc, 20, &isnull);

			claim->order.match_by_order_id = isnull || DatumGetBool(d);
			d = SPI_getbinval(tup, desc, 21, &isnull);
			claim->order.refund_key_in_metadata = !isnull && DatumGetBool(d);
		}
		claim->schema = schema;
		claim->lookup = false;
		claim->cancel_requested = false;
		if (v1_3)
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
 * Earliest next_attempt_at in the outbox (leases included) from the floor
 * the claim before started at (what lies below is the launcher's sweep's:
 * claim_floor.c), 0 when there is none.  A wake-up hint only; call after
 * ft_outbox_claim, in its transaction.
 *
 * Nothing here schedules an event further ahead than a lease or the
 * longest backoff (a Retry-After is capped at backoff_max), except an
 * order parked in action_required (1.3: action_timeout, on an event
 * marked lookup, which gets that much horizon): an event
 * beyond that, plus a minute of slack, was stamped by a clock that has
 * since gone back (say an hour ahead, then corrected), and would wait for
 * the real clock to catch up.  When any event is that far ahead,
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
	bool		v1_3 = (ft_schema_version() >= FT_SCHEMA_1_3);
	bool		isnull;
	Datum		d;
	Datum		args[2];
	TimestampTz next_due;
	Oid			argtypes[2] = {INT4OID, INT4OID};
	int			rc;

	if (next_due_plan == NULL)
	{
		Oid			next_due_argtypes[2] = {TIMESTAMPTZOID, INT4OID};

		next_due_plan = ft_prepare_kept(ft_next_due_sql, 2, next_due_argtypes,
										FT_OUTBOX_PLAN);
	}
	args[0] = TimestampTzGetDatum(ft_claimed_from);
	args[1] = Int32GetDatum(horizon_ms);
	rc = SPI_execute_plan(next_due_plan, args, NULL, true, 1);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "reading the outbox failed: %s", SPI_result_code_string(rc));
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
		return 0;
	next_due = DatumGetTimestampTz(d);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	if (isnull || !DatumGetBool(d))
		return next_due;

	/*
	 * From 1.3 on, an order parked in action_required waits action_timeout
	 * on an event marked lookup: such events get that much more horizon.
	 * (The UPDATE reads the far-future end of the next_attempt_at index
	 * only: the skewed events and the parked ones.)
	 */
	args[0] = Int32GetDatum(horizon_ms);
	args[1] = Int32GetDatum((int) Min(parked, (int64) PG_INT32_MAX));
	ft_outbox_exec(&unskew_plans[v1_3],
				   v1_3 ? ft_unskew_sql_1_3 : ft_unskew_sql,
				   v1_3 ? 2 : 1, argtypes, args,
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
 * Give back the leases of jobs whose outcome is unknown (shutdown) or that
 * were never sent (an interrupted claim): due again at once, for any
 * worker.  The attempt does not count towards max_attempts (attempts.c),
 * except on a schema older than 1.3, whose update takes outbox.attempts
 * > 0 for "sent".  (Leases released by the launcher after a crash keep
 * their attempt: a reply that crashes the server must not be retried for
 * ever.)
 */
void
ft_outbox_release(FtJob **jobs, int njobs)
{
	if (njobs <= 0)
		return;
	for (int i = 0; i < njobs; i++)
		jobs[i]->uncounted = (jobs[i]->claim.schema >= FT_SCHEMA_1_3) ? 1 : 0;
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
