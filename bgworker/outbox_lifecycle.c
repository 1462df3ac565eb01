/*-------------------------------------------------------------------------
 *
 * outbox_lifecycle.c
 *	  The SQL side of the payment lifecycle of schema 1.3 (see
 *	  docs/reference.md, "Lifecycle"): recording look-ups that found
 *	  nothing, orders parked in action_required, refunds, and the
 *	  automatic refund of canceled orders that turned out paid.
 *
 * Same rules as outbox.c: kept plans with one generic plan each, arrays
 * in, a statement or two per batch, run inside the worker's short
 * transaction (ft_xact_begin), and every outbox row touched only while it
 * still carries this worker's lease.  Status changes go through
 * ft_orders._change_status; refunds are settled by
 * ft_orders._settle_refunds, which moves the order's status through it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"

#include "guc.h"
#include "spi_plan.h"
#include "worker.h"

#define FT_LIFECYCLE_PLAN	CURSOR_OPT_GENERIC_PLAN

static SPIPlanPtr ft_unknown_plan = NULL;
static SPIPlanPtr ft_park_plan = NULL;
static SPIPlanPtr ft_park_status_plan = NULL;
static SPIPlanPtr ft_refunds_plan = NULL;
static SPIPlanPtr ft_refund_canceled_plan = NULL;

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
"                       $5::text[], $6::text[], $7::int[])"
"      AS r(event_id, lease_until, refund_id, outcome, gateway_id, error, delay_ms)"
"), x AS ("
"  DELETE FROM ft_orders.outbox ob USING r"
"   WHERE ob.event_id = r.event_id AND ob.lease_until = r.lease_until"
"     AND r.outcome <> 'retry'"
"  RETURNING ob.event_id, ob.order_id, ob.attempts, ob.first_sent_at,"
"            r.refund_id, r.outcome, r.gateway_id, r.error"
"), u AS ("
"  UPDATE ft_orders.outbox ob"
"     SET next_attempt_at = now() + make_interval(secs => r.delay_ms::float8 / 1000),"
"         lease_until = NULL, last_error = r.error"
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

/* orders canceled while their charge was in flight, now paid */
static const char *const ft_refund_canceled_sql =
"SELECT ft_orders._refund_canceled($1::bigint[])";

static void
ft_lifecycle_exec(SPIPlanPtr plan, Datum *values, int expected, const char *what)
{
	int			rc = SPI_execute_plan(plan, values, NULL, false, 0);

	if (rc != expected)
		elog(ERROR, "%s failed: %s", what, SPI_result_code_string(rc));
}

/*
 * Look-ups the gateway answered with "unknown" (FT_OUTCOME_UNKNOWN):
 * charges and refunds alike.  Caller is inside ft_xact_begin.
 */
void
ft_lifecycle_record_unknown(FtJob **jobs, int n)
{
	Oid			argtypes[4] = {INT8ARRAYOID, TIMESTAMPTZARRAYOID, INT4ARRAYOID,
	TEXTARRAYOID};
	Datum	   *event_ids = palloc(n * sizeof(Datum));
	Datum	   *leases = palloc(n * sizeof(Datum));
	Datum	   *attempts = palloc(n * sizeof(Datum));
	Datum	   *errors = palloc(n * sizeof(Datum));
	bool	   *error_nulls = palloc(n * sizeof(bool));
	Datum		values[4];

	for (int i = 0; i < n; i++)
	{
		event_ids[i] = Int64GetDatum(jobs[i]->event_id);
		leases[i] = TimestampTzGetDatum(jobs[i]->lease_until);
		attempts[i] = Int32GetDatum(jobs[i]->order_attempt);
		errors[i] = ft_text_or_null(jobs[i]->error, &error_nulls[i]);
	}
	values[0] = ft_array(event_ids, NULL, n, INT8OID);
	values[1] = ft_array(leases, NULL, n, TIMESTAMPTZOID);
	values[2] = ft_array(attempts, NULL, n, INT4OID);
	values[3] = ft_array(errors, error_nulls, n, TEXTOID);

	if (ft_unknown_plan == NULL)
		ft_unknown_plan = ft_prepare_kept(ft_unknown_sql, 4, argtypes, FT_LIFECYCLE_PLAN);
	ft_lifecycle_exec(ft_unknown_plan, values, SPI_OK_UPDATE,
					  "recording look-ups that found nothing");
}

/*
 * Orders whose payment requires the customer's action: park them.
 * Caller is inside ft_xact_begin.
 */
void
ft_lifecycle_record_action(FtJob **jobs, int n)
{
	Oid			argtypes[8] = {INT8ARRAYOID, TIMESTAMPTZARRAYOID, INT4ARRAYOID,
		TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
	INT4OID};
	Oid			status_argtype = INT8ARRAYOID;
	Datum	   *event_ids = palloc(n * sizeof(Datum));
	Datum	   *leases = palloc(n * sizeof(Datum));
	Datum	   *attempts = palloc(n * sizeof(Datum));
	Datum	   *payment_ids = palloc(n * sizeof(Datum));
	bool	   *payment_id_nulls = palloc(n * sizeof(bool));
	Datum	   *actions = palloc(n * sizeof(Datum));
	bool	   *action_nulls = palloc(n * sizeof(bool));
	Datum	   *secrets = palloc(n * sizeof(Datum));
	bool	   *secret_nulls = palloc(n * sizeof(bool));
	Datum	   *errors = palloc(n * sizeof(Datum));
	bool	   *error_nulls = palloc(n * sizeof(bool));
	Datum	   *parked;
	Datum		values[8];
	Datum		ids;
	int			nparked;

	for (int i = 0; i < n; i++)
	{
		FtJob	   *job = jobs[i];

		event_ids[i] = Int64GetDatum(job->event_id);
		leases[i] = TimestampTzGetDatum(job->lease_until);
		attempts[i] = Int32GetDatum(job->order_attempt);
		payment_ids[i] = ft_text_or_null(job->payment_id, &payment_id_nulls[i]);
		actions[i] = ft_text_or_null(job->next_action, &action_nulls[i]);
		secrets[i] = ft_text_or_null(job->client_secret, &secret_nulls[i]);
		errors[i] = ft_text_or_null(job->error, &error_nulls[i]);
	}
	values[0] = ft_array(event_ids, NULL, n, INT8OID);
	values[1] = ft_array(leases, NULL, n, TIMESTAMPTZOID);
	values[2] = ft_array(attempts, NULL, n, INT4OID);
	values[3] = ft_array(payment_ids, payment_id_nulls, n, TEXTOID);
	values[4] = ft_array(actions, action_nulls, n, TEXTOID);
	values[5] = ft_array(secrets, secret_nulls, n, TEXTOID);
	values[6] = ft_array(errors, error_nulls, n, TEXTOID);
	values[7] = Int32GetDatum(ft_action_timeout_s);

	if (ft_park_plan == NULL)
		ft_park_plan = ft_prepare_kept(ft_park_sql, 8, argtypes, FT_LIFECYCLE_PLAN);
	ft_lifecycle_exec(ft_park_plan, values, SPI_OK_UPDATE_RETURNING,
					  "parking orders in action_required");
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
	if (ft_park_status_plan == NULL)
		ft_park_status_plan = ft_prepare_kept(ft_park_status_sql, 1, &status_argtype,
											  FT_LIFECYCLE_PLAN);
	ft_lifecycle_exec(ft_park_status_plan, &ids, SPI_OK_SELECT,
					  "moving orders to action_required");
}

/*
 * Refund outcomes: refunded, refund_failed, failed (given up: dead
 * letter) and retry.  Caller is inside ft_xact_begin.
 */
void
ft_lifecycle_record_refunds(FtJob **jobs, int n)
{
	Oid			argtypes[7] = {INT8ARRAYOID, TIMESTAMPTZARRAYOID, INT8ARRAYOID,
	TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, INT4ARRAYOID};
	Datum	   *event_ids = palloc(n * sizeof(Datum));
	Datum	   *leases = palloc(n * sizeof(Datum));
	Datum	   *refund_ids = palloc(n * sizeof(Datum));
	Datum	   *outcomes = palloc(n * sizeof(Datum));
	Datum	   *gateway_ids = palloc(n * sizeof(Datum));
	bool	   *gateway_id_nulls = palloc(n * sizeof(bool));
	Datum	   *errors = palloc(n * sizeof(Datum));
	bool	   *error_nulls = palloc(n * sizeof(bool));
	Datum	   *delays = palloc(n * sizeof(Datum));
	Datum		values[7];

	for (int i = 0; i < n; i++)
	{
		FtJob	   *job = jobs[i];

		event_ids[i] = Int64GetDatum(job->event_id);
		leases[i] = TimestampTzGetDatum(job->lease_until);
		refund_ids[i] = Int64GetDatum(job->refund_id);
		outcomes[i] = CStringGetTextDatum(ft_outcome_name(job->outcome));
		gateway_ids[i] = ft_text_or_null(job->payment_id, &gateway_id_nulls[i]);
		errors[i] = ft_text_or_null(job->error, &error_nulls[i]);
		delays[i] = Int32GetDatum(job->delay_ms);
	}
	values[0] = ft_array(event_ids, NULL, n, INT8OID);
	values[1] = ft_array(leases, NULL, n, TIMESTAMPTZOID);
	values[2] = ft_array(refund_ids, NULL, n, INT8OID);
	values[3] = ft_array(outcomes, NULL, n, TEXTOID);
	values[4] = ft_array(gateway_ids, gateway_id_nulls, n, TEXTOID);
	values[5] = ft_array(errors, error_nulls, n, TEXTOID);
	values[6] = ft_array(delays, NULL, n, INT4OID);

	if (ft_refunds_plan == NULL)
		ft_refunds_plan = ft_prepare_kept(ft_refunds_sql, 7, argtypes, FT_LIFECYCLE_PLAN);
	ft_lifecycle_exec(ft_refunds_plan, values, SPI_OK_SELECT, "recording refunds");
}

/*
 * Orders among the paid jobs whose cancellation was requested while their
 * charge was in flight: refunded in full (ft_orders._refund_canceled, a
 * statement of its own so that it sees a cancel_order() that committed
 * while this transaction waited for the order's row lock).
 */
void
ft_lifecycle_refund_canceled(FtJob **jobs, int n)
{
	Oid			argtype = INT8ARRAYOID;
	Datum	   *ids = palloc(n * sizeof(Datum));
	Datum		value;
	int			rc;

	for (int i = 0; i < n; i++)
		ids[i] = Int64GetDatum(jobs[i]->order_id);
	value = ft_array(ids, NULL, n, INT8OID);
	if (ft_refund_canceled_plan == NULL)
		ft_refund_canceled_plan = ft_prepare_kept(ft_refund_canceled_sql, 1, &argtype,
												  FT_LIFECYCLE_PLAN);
	rc = SPI_execute_plan(ft_refund_canceled_plan, &value, NULL, false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "refunding canceled orders failed: %s", SPI_result_code_string(rc));
}
