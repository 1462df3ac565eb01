/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  Reservation and initialisation of ft_orders' shared memory.
 *
 * The layout and its locking rules are described in shmem.h.  Memory is
 * requested through the PostgreSQL 15 shmem_request_hook and set up in
 * shmem_startup_hook; both chain to whatever hook was installed before us.
 * ft_orders.database is a postmaster setting, so the number of database
 * blocks is known when memory is requested and never changes.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "shmem.h"

/* how long DROP DATABASE waits for a database's workers to leave */
#define FT_DROP_WAIT_MS		10000

FtSharedState *ft_shared = NULL;
FtDatabaseState *ft_db = NULL;

const double ft_latency_bucket_ms[FT_LATENCY_BUCKETS] = {
	5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000
};

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static Size
ft_shmem_size(void)
{
	return MAXALIGN(add_size(offsetof(FtSharedState, db),
							 mul_size(ft_databases->n, sizeof(FtDatabaseState))));
}

static void
ft_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();

	RequestAddinShmemSpace(ft_shmem_size());
	RequestNamedLWLockTranche("ft_orders", ft_databases->n);
}

static void
ft_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	ft_shared = ShmemInitStruct("ft_orders", ft_shmem_size(), &found);
	if (!found)
	{
		LWLockPadded *locks = GetNamedLWLockTranche("ft_orders");

		memset(ft_shared, 0, ft_shmem_size());
		SpinLockInit(&ft_shared->limits.mutex);
		ft_shared->ndatabases = ft_databases->n;
		for (int d = 0; d < ft_shared->ndatabases; d++)
		{
			FtDatabaseState *db = &ft_shared->db[d];

			namestrcpy(&db->dbname, ft_databases->names[d]);
			db->lock = &locks[d].lock;
			pg_atomic_init_u32(&db->wake_next, 0);
			for (int i = 0; i < FT_MAX_WORKERS; i++)
			{
				db->workers[i].worker_id = i + 1;
				db->workers[i].state = FT_WORKER_STOPPED;
				pg_atomic_init_u32(&db->workers[i].in_sql, 0);
				pg_atomic_init_u32(&db->workers[i].can_send, 0);
			}
			db->gateway.circuit = FT_CIRCUIT_CLOSED;
			pg_atomic_init_u64(&db->throttled, 0);
			pg_atomic_init_u32(&db->concurrency_limit_now, 0);
			pg_atomic_init_u64(&db->concurrency_active_at, 0);
			SpinLockInit(&db->claim_floor.mutex);
			db->claim_floor.floor = DT_NOBEGIN;
		}
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

static FtDatabaseState *
ft_shmem_find(const char *dbname)
{
	for (int d = 0; dbname != NULL && d < ft_shared->ndatabases; d++)
	{
		if (strcmp(NameStr(ft_shared->db[d].dbname), dbname) == 0)
			return &ft_shared->db[d];
	}
	return NULL;
}

/*
 * The block of the current database in a backend, found by name once (a
 * catalog look-up: call it inside a transaction); NULL when the database
 * is not listed in ft_orders.database.  Launcher and workers have ft_db
 * set from the start.
 */
FtDatabaseState *
ft_shmem_my_database(void)
{
	static bool looked_up = false;

	if (ft_db == NULL && !looked_up)
	{
		ft_db = ft_shmem_find(get_database_name(MyDatabaseId));
		looked_up = true;
	}
	return ft_db;
}

/*
 * DROP DATABASE dbname is about to run: if ft_orders serves it, ask its
 * launcher and payment workers to leave it (the workers release their
 * leases and exit, the launcher waits for the database again without a
 * connection) and wait for them, at most FT_DROP_WAIT_MS.  Their
 * connections would otherwise make the DROP fail.  Until
 * ft_shmem_release_database, nothing of ours connects to it again.
 */
void
ft_shmem_stop_database(const char *dbname)
{
	FtDatabaseState *db = ft_shmem_find(dbname);
	TimestampTz start = GetCurrentTimestamp();
	bool		logged = false;

	if (db == NULL)
		return;

	for (;;)
	{
		pid_t		pids[FT_MAX_WORKERS + 1];
		int			npids = 0;

		LWLockAcquire(db->lock, LW_EXCLUSIVE);
		db->dropping = true;
		db->launcher_db_seen = false;
		if (db->launcher_pid != 0)
			pids[npids++] = db->launcher_pid;
		for (int i = 0; i < FT_MAX_WORKERS; i++)
		{
			if (db->workers[i].pid != 0)
				pids[npids++] = db->workers[i].pid;
		}
		LWLockRelease(db->lock);

		if (npids == 0)
			break;
		if (!logged)
			ereport(LOG,
					(errmsg("ft_orders: stopping the payment workers of database \"%s\" for DROP DATABASE",
							dbname)));
		logged = true;
		if (TimestampDifferenceExceeds(start, GetCurrentTimestamp(), FT_DROP_WAIT_MS))
			break;				/* DROP DATABASE reports who is connected */
		for (int i = 0; i < npids; i++)
			(void) kill(pids[i], SIGTERM);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 100, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * DROP DATABASE dbname is over, done or failed: its launcher may look for
 * the database again (and come back if it is still there).
 */
void
ft_shmem_release_database(const char *dbname)
{
	FtDatabaseState *db = ft_shmem_find(dbname);

	if (db == NULL)
		return;
	LWLockAcquire(db->lock, LW_EXCLUSIVE);
	db->dropping = false;
	LWLockRelease(db->lock);
}

/*
 * Zero every counter of the current database's workers and gateway.
 * Identity (slot use, pid, latch), the current worker state and the
 * circuit state are kept: they describe what is, not what was counted.
 */
void
ft_shmem_reset_stats(void)
{
	FtGatewayStats *gw;

	if (ft_shmem_my_database() == NULL)
		return;
	LWLockAcquire(ft_db->lock, LW_EXCLUSIVE);
	for (int i = 0; i < FT_MAX_WORKERS; i++)
	{
		FtWorkerSlot *slot = &ft_db->workers[i];

		slot->processed = 0;
		slot->succeeded = 0;
		slot->declined = 0;
		slot->retried = 0;
		slot->failed = 0;
		slot->last_error[0] = '\0';
	}
	gw = &ft_db->gateway;
	gw->requests = 0;
	gw->errors = 0;
	gw->last_http_status = 0;
	gw->latency_next = 0;
	gw->latency_count = 0;
	memset(gw->latency_buckets, 0, sizeof(gw->latency_buckets));
	gw->latency_sum_ms = 0;
	LWLockRelease(ft_db->lock);

	pg_atomic_write_u64(&ft_db->throttled, 0);
}

/*
 * Copies of the current database's worker slots (FT_MAX_WORKERS of them)
 * and gateway statistics, for the views and metrics(); either may be NULL.
 * In a database that is not listed: no slot in use, nothing counted.
 */
void
ft_shmem_snapshot(FtWorkerSlot *slots, FtGatewayStats *gw)
{
	if (ft_shmem_my_database() == NULL)
	{
		if (slots != NULL)
			memset(slots, 0, sizeof(FtWorkerSlot) * FT_MAX_WORKERS);
		if (gw != NULL)
		{
			memset(gw, 0, sizeof(FtGatewayStats));
			gw->circuit = FT_CIRCUIT_CLOSED;
		}
		return;
	}
	LWLockAcquire(ft_db->lock, LW_SHARED);
	if (slots != NULL)
		memcpy(slots, ft_db->workers, sizeof(FtWorkerSlot) * FT_MAX_WORKERS);
	if (gw != NULL)
		memcpy(gw, &ft_db->gateway, sizeof(FtGatewayStats));
	LWLockRelease(ft_db->lock);
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
 * caller holds ft_db->lock or works on a copy.
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
 * The figures of FtGatewayLimitsView of the current database, read now:
 * its workers' waits and failure window, and the account's pause (in a
 * database that is not listed: the settings, nothing counted).  Takes the
 * spinlock and ft_db->lock (shared) in turn, never both.
 */
void
ft_gateway_limits_snapshot(FtGatewayLimitsView *view)
{
	TimestampTz now = GetCurrentTimestamp();
	FtGatewayStats *gw;
	uint32		limit;
	uint32		n;
	uint32		failures;

	view->rate_limit = ft_rate_limit;
	view->concurrency_limit = ft_max_in_flight;
	if (ft_shmem_my_database() == NULL)
	{
		view->throttled = 0;
		view->paused_until = 0;
		view->failure_rate = -1;
		return;
	}
	gw = &ft_db->gateway;
	limit = pg_atomic_read_u32(&ft_db->concurrency_limit_now);

	view->throttled = pg_atomic_read_u64(&ft_db->throttled);
	SpinLockAcquire(&ft_shared->limits.mutex);
	view->paused_until = ft_shared->limits.paused_until;
	SpinLockRelease(&ft_shared->limits.mutex);
	if (view->paused_until <= now)
		view->paused_until = 0;

	LWLockAcquire(ft_db->lock, LW_SHARED);
	failures = ft_circuit_window_counts(gw, now, &n);
	LWLockRelease(ft_db->lock);
	view->failure_rate = (n > 0) ? (double) failures / n : -1;

	if (ft_adaptive_concurrency && limit > 0 &&
		limit <= (uint32) Max(ft_max_in_flight, ft_max_in_flight_ceiling))
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
