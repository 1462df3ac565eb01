/*-------------------------------------------------------------------------
 *
 * status_views.c
 *	  Set-returning functions behind the worker_status and gateway_status
 *	  views, and reset_stats().
 *
 * They show the current database's workers and gateway figures: each
 * database of ft_orders.database has its own (shmem.h).  They copy shared
 * memory under the lock in shared mode (ft_shmem_snapshot) and build the
 * rows afterwards, so the lock is held for a memcpy, not for tuple work.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/tuplestore.h"

#include "shmem.h"

PG_FUNCTION_INFO_V1(ft_orders_worker_stats);
PG_FUNCTION_INFO_V1(ft_orders_gateway_stats);
PG_FUNCTION_INFO_V1(ft_orders_reset_stats);

#define WORKER_STATS_COLS	11
/*
 * gateway_stats() of 1.3; the 1.0 definition asks for the first 8 only
 * (a server already running the new library before ALTER EXTENSION
 * UPDATE): the tuple is built with the caller's descriptor, which reads
 * only its own columns.
 */
#define GATEWAY_STATS_COLS	13

Datum
ft_orders_worker_stats(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	FtWorkerSlot *slots;

	InitMaterializedSRF(fcinfo, 0);

	slots = palloc(sizeof(FtWorkerSlot) * FT_MAX_WORKERS);
	ft_shmem_snapshot(slots, NULL);

	for (int i = 0; i < FT_MAX_WORKERS; i++)
	{
		FtWorkerSlot *slot = &slots[i];
		Datum		values[WORKER_STATS_COLS];
		bool		nulls[WORKER_STATS_COLS] = {0};

		if (!slot->in_use)
			continue;

		slot->last_error[FT_LAST_ERROR_LEN - 1] = '\0';
		values[0] = Int32GetDatum(slot->worker_id);
		values[1] = Int32GetDatum((int32) slot->pid);
		nulls[1] = (slot->pid == 0);
		values[2] = CStringGetTextDatum(ft_worker_state_name(slot->state));
		values[3] = Int32GetDatum(slot->in_flight);
		values[4] = Int64GetDatum((int64) slot->processed);
		values[5] = Int64GetDatum((int64) slot->succeeded);
		values[6] = Int64GetDatum((int64) slot->declined);
		values[7] = Int64GetDatum((int64) slot->retried);
		values[8] = Int64GetDatum((int64) slot->failed);
		values[9] = TimestampTzGetDatum(slot->last_activity);
		nulls[9] = (slot->last_activity == 0);
		values[10] = CStringGetTextDatum(slot->last_error);
		nulls[10] = (slot->last_error[0] == '\0');
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

static int
ft_float_cmp(const void *a, const void *b)
{
	float4		x = *(const float4 *) a;
	float4		y = *(const float4 *) b;

	return (x > y) - (x < y);
}

/* nearest-rank percentile of a sorted array of n > 0 values */
static double
ft_percentile(const float4 *sorted, uint32 n, double p)
{
	uint32		rank = (uint32) ceil(p * n);

	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	/* microsecond resolution; float4 noise digits would only confuse psql */
	return rint((double) sorted[rank - 1] * 1000.0) / 1000.0;
}

Datum
ft_orders_gateway_stats(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	FtGatewayStats *gw;
	Datum		values[GATEWAY_STATS_COLS];
	bool		nulls[GATEWAY_STATS_COLS] = {0};
	uint32		n;
	FtGatewayLimitsView limits;

	InitMaterializedSRF(fcinfo, 0);

	gw = palloc(sizeof(FtGatewayStats));
	ft_shmem_snapshot(NULL, gw);
	ft_gateway_limits_snapshot(&limits);
	if (rsinfo->setDesc->natts > GATEWAY_STATS_COLS)
		elog(ERROR, "gateway_stats() declared with %d columns, at most %d known",
			 rsinfo->setDesc->natts, GATEWAY_STATS_COLS);

	n = Min(gw->latency_count, FT_LATENCY_WINDOW);
	values[0] = CStringGetTextDatum(ft_circuit_state_name(gw->circuit));
	values[1] = Int32GetDatum(gw->consecutive_failures);
	values[2] = TimestampTzGetDatum(gw->opened_at);
	nulls[2] = (gw->opened_at == 0);
	values[3] = Int64GetDatum((int64) gw->requests);
	values[4] = Int64GetDatum((int64) gw->errors);
	if (n > 0)
	{
		qsort(gw->latency_ms, n, sizeof(float4), ft_float_cmp);
		values[5] = Float8GetDatum(ft_percentile(gw->latency_ms, n, 0.50));
		values[6] = Float8GetDatum(ft_percentile(gw->latency_ms, n, 0.99));
	}
	else
	{
		nulls[5] = true;
		nulls[6] = true;
	}
	values[7] = Int32GetDatum(gw->last_http_status);
	nulls[7] = (gw->last_http_status == 0);
	values[8] = Float8GetDatum(limits.rate_limit);
	values[9] = Int32GetDatum(limits.concurrency_limit);
	values[10] = Int64GetDatum((int64) limits.throttled);
	values[11] = TimestampTzGetDatum(limits.paused_until);
	nulls[11] = (limits.paused_until == 0);
	values[12] = Float8GetDatum(limits.failure_rate);
	nulls[12] = (limits.failure_rate < 0);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	return (Datum) 0;
}

Datum
ft_orders_reset_stats(PG_FUNCTION_ARGS)
{
	ft_shmem_reset_stats();
	PG_RETURN_VOID();
}
