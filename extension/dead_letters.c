/*-------------------------------------------------------------------------
 *
 * dead_letters.c
 *	  ft_orders.retry_dead_letter() and retry_dead_letters(): requeue
 *	  payment work that was given up on.
 *
 * A requeued event goes back into the outbox under its old event_id with a
 * fresh attempt budget and is due at once; its order returns to 'pending'
 * through _change_status (event row + NOTIFY).  The order keeps its
 * payment_key, so the gateway still sees one Idempotency-Key per order.
 * One statement does it all, so a dead letter is never both requeued and
 * kept, even when two operators run this at once.
 *
 * From schema 1.3 on a dead letter may be a refund (refund_id set): it is
 * requeued with its refund and its order keeps its status; and every
 * requeued event keeps its first_sent_at, so that work first sent longer
 * ago than ft_orders.gateway_key_ttl is looked up at the gateway before
 * it is sent again (docs/reference.md, "Reconciliation").
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"

#include "schema_version.h"
#include "wakeup.h"

PG_FUNCTION_INFO_V1(ft_orders_retry_dead_letter);
PG_FUNCTION_INFO_V1(ft_orders_retry_dead_letters);

/*
 * The end of both requeue statements: the orders of the requeued charges
 * (o.ids, o.n of them) back to 'pending' through _change_status, and the
 * count the function returns (count_col).
 */
#define FT_REQUEUED_PENDING_SQL(count_col) \
"SELECT " count_col ", ft_orders._change_status(o.ids," \
"    pg_catalog.array_fill('pending'::ft_orders.order_status, ARRAY[o.n::integer])," \
"    pg_catalog.array_fill(NULL::integer, ARRAY[o.n::integer])," \
"    pg_catalog.array_fill(NULL::text, ARRAY[o.n::integer])," \
"    pg_catalog.array_fill(NULL::text, ARRAY[o.n::integer])," \
"    pg_catalog.array_fill('requeued from dead letters'::text, ARRAY[o.n::integer]))" \
"  FROM o"

/*
 * $1 NULL requeues every dead letter, else only that event.  Returns the
 * number of events requeued.
 */
static int64
ft_requeue(Datum event_id, bool all)
{
	Oid			argtypes[1] = {INT8OID};
	char		nulls[1] = {all ? 'n' : ' '};
	int64		count;
	bool		isnull;
	int			rc;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	if (ft_schema_version() >= FT_SCHEMA_1_3)
		rc = SPI_execute_with_args(
								   "WITH d AS ("
								   "  DELETE FROM ft_orders.dead_letters"
								   "   WHERE $1 IS NULL OR event_id OPERATOR(pg_catalog.=) $1"
								   "  RETURNING event_id, order_id, refund_id, first_sent_at),"
								   " q AS ("
								   "  INSERT INTO ft_orders.outbox (event_id, order_id, refund_id, first_sent_at)"
								   "  SELECT d.event_id, d.order_id, d.refund_id, d.first_sent_at FROM d"
								   "  RETURNING order_id, refund_id),"
								   " o AS ("
								   "  SELECT pg_catalog.array_agg(q.order_id) FILTER (WHERE q.refund_id IS NULL) AS ids,"
								   "         pg_catalog.count(*) FILTER (WHERE q.refund_id IS NULL) AS n,"
								   "         pg_catalog.count(*) AS total FROM q)"
								   FT_REQUEUED_PENDING_SQL("o.total"),
								   1, argtypes, &event_id, nulls, false, 1);
	else
		rc = SPI_execute_with_args(
							   "WITH d AS ("
							   "  DELETE FROM ft_orders.dead_letters"
							   "   WHERE $1 IS NULL OR event_id OPERATOR(pg_catalog.=) $1"
							   "  RETURNING event_id, order_id),"
							   " q AS ("
							   "  INSERT INTO ft_orders.outbox (event_id, order_id)"
							   "  SELECT d.event_id, d.order_id FROM d"
							   "  RETURNING order_id),"
							   " o AS ("
							   "  SELECT pg_catalog.array_agg(q.order_id) AS ids,"
							   "         pg_catalog.count(*) AS n FROM q)"
							   FT_REQUEUED_PENDING_SQL("o.n"),
							   1, argtypes, &event_id, nulls, false, 1);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "requeueing dead letters failed: %s", SPI_result_code_string(rc));
	count = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();

	if (count > 0)
		ft_wakeup_at_commit();
	return count;
}

Datum
ft_orders_retry_dead_letter(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("argument \"event_id\" must not be null")));
	PG_RETURN_BOOL(ft_requeue(PG_GETARG_DATUM(0), false) > 0);
}

Datum
ft_orders_retry_dead_letters(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(ft_requeue((Datum) 0, true));
}
