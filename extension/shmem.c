/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  Reservation and initialisation of ft_orders' shared memory.
 *
 * The layout and its locking rules are described in shmem.h.  Memory is
 * requested through the PostgreSQL 15 shmem_request_hook and set up in
 * shmem_startup_hook; both chain to whatever hook was installed before us.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/timestamp.h"

#include "shmem.h"

FtSharedState *ft_shared = NULL;

const double ft_latency_bucket_ms[FT_LATENCY_BUCKETS] = {
	5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000
};

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
ft_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();

	RequestAddinShmemSpace(MAXALIGN(sizeof(FtSharedState)));
	RequestNamedLWLockTranche("ft_orders", 1);
}

static void
ft_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	ft_shared = ShmemInitStruct("ft_orders", sizeof(FtSharedState), &found);
	if (!found)
	{
		memset(ft_shared, 0, sizeof(FtSharedState));
		ft_shared->lock = &(GetNamedLWLockTranche("ft_orders"))->lock;
		pg_atomic_init_u32(&ft_shared->wake_next, 0);
		for (int i = 0; i < FT_MAX_WORKERS; i++)
		{
			ft_shared->workers[i].worker_id = i + 1;
			ft_shared->workers[i].state = FT_WORKER_STOPPED;
			pg_atomic_init_u32(&ft_shared->workers[i].in_sql, 0);
			pg_atomic_init_u32(&ft_shared->workers[i].can_send, 0);
		}
		ft_shared->gateway.circuit = FT_CIRCUIT_CLOSED;
		SpinLockInit(&ft_shared->limits.mutex);
		pg_atomic_init_u32(&ft_shared->concurrency_limit_now, 0);
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * Install the hooks.  Called by _PG_init, which only runs while
 * shared_preload_libraries is being processed.
 */
void
ft_shmem_install_hooks(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = ft_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = ft_shmem_startup;
}

/*
 * Zero every counter of the workers and the gateway.  Identity (slot use,
 * pid, latch), the current worker state and the circuit state are kept:
 * they describe what is, not what was counted.
 */
void
ft_shmem_reset_stats(void)
{
	FtGatewayStats *gw;

	LWLockAcquire(ft_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < FT_MAX_WORKERS; i++)
	{
		FtWorkerSlot *slot = &ft_shared->workers[i];

		slot->processed = 0;
		slot->succeeded = 0;
		slot->declined = 0;
		slot->retried = 0;
		slot->failed = 0;
		slot->last_error[0] = '\0';
	}
	gw = &ft_shared->gateway;
	gw->requests = 0;
	gw->errors = 0;
	gw->last_http_status = 0;
	gw->latency_next = 0;
	gw->latency_count = 0;
	memset(gw->latency_buckets, 0, sizeof(gw->latency_buckets));
	gw->latency_sum_ms = 0;
	LWLockRelease(ft_shared->lock);

	SpinLockAcquire(&ft_shared->limits.mutex);
	ft_shared->limits.throttled = 0;
	SpinLockRelease(&ft_shared->limits.mutex);
}

/*
 * Index of the latency histogram bucket a request of latency_ms falls in:
 * the first bucket whose upper bound is >= latency_ms, or
 * FT_LATENCY_BUCKETS for the overflow bucket.
 */
int
ft_latency_bucket(double latency_ms)
{
	for (int i = 0; i < FT_LATENCY_BUCKETS; i++)
	{
		if (latency_ms <= ft_latency_bucket_ms[i])
			return i;
	}
	return FT_LATENCY_BUCKETS;
}

/*
 * Requests (*n) and transient failures (returned) in the circuit's window
 * at time now: the buckets of the last FT_CIRCUIT_BUCKETS periods.  The
 * caller holds ft_shared->lock or works on a copy.
 */
uint32
ft_circuit_window_counts(const FtGatewayStats *gw, TimestampTz now, uint32 *n)
{
	int64		period = now / ((int64) FT_CIRCUIT_BUCKET_MS * 1000);
	uint64		requests = 0;
	uint64		failures = 0;

	for (int i = 0; i < FT_CIRCUIT_BUCKETS; i++)
	{
		if (gw->window_period[i] > period - FT_CIRCUIT_BUCKETS &&
			gw->window_period[i] <= period)
		{
			requests += gw->window_requests[i];
			failures += gw->window_failures[i];
		}
	}
	*n = (uint32) Min(requests, PG_UINT32_MAX);
	return (uint32) Min(failures, PG_UINT32_MAX);
}

/*
 * The figures of FtGatewayLimitsView, read now.  Takes the spinlock and
 * ft_shared->lock (shared) in turn, never both.
 */
void
ft_gateway_limits_snapshot(FtGatewayLimitsView *view)
{
	TimestampTz now = GetCurrentTimestamp();
	FtGatewayStats *gw = &ft_shared->gateway;
	uint32		limit = pg_atomic_read_u32(&ft_shared->concurrency_limit_now);
	uint32		n;
	uint32		failures;

	SpinLockAcquire(&ft_shared->limits.mutex);
	view->throttled = ft_shared->limits.throttled;
	view->paused_until = ft_shared->limits.paused_until;
	SpinLockRelease(&ft_shared->limits.mutex);
	if (view->paused_until <= now)
		view->paused_until = 0;

	LWLockAcquire(ft_shared->lock, LW_SHARED);
	failures = ft_circuit_window_counts(gw, now, &n);
	LWLockRelease(ft_shared->lock);
	view->failure_rate = (n > 0) ? (double) failures / n : -1;

	view->rate_limit = ft_rate_limit;
	view->concurrency_limit = ft_max_in_flight;
	if (ft_adaptive_concurrency && limit > 0 && limit < (uint32) ft_max_in_flight)
		view->concurrency_limit = (int) limit;
}

const char *
ft_worker_state_name(FtWorkerState state)
{
	switch (state)
	{
		case FT_WORKER_STARTING:
			return "starting";
		case FT_WORKER_IDLE:
			return "idle";
		case FT_WORKER_WORKING:
			return "working";
		case FT_WORKER_BACKOFF:
			return "backoff";
		case FT_WORKER_CIRCUIT_OPEN:
			return "circuit_open";
		case FT_WORKER_STANDBY:
			return "standby";
		case FT_WORKER_STOPPED:
			return "stopped";
	}
	return "unknown";
}

const char *
ft_circuit_state_name(FtCircuitState state)
{
	switch (state)
	{
		case FT_CIRCUIT_CLOSED:
			return "closed";
		case FT_CIRCUIT_OPEN:
			return "open";
		case FT_CIRCUIT_HALF_OPEN:
			return "half_open";
	}
	return "unknown";
}
