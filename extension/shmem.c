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
