/*-------------------------------------------------------------------------
 *
 * shmem.h
 *	  Layout of ft_orders' shared memory and who may touch what.
 *
 * One FtSharedState lives in the main shared memory segment.  The library
 * refuses to load unless preloaded (ft_orders.c), so ft_shared is set in
 * every process that runs ft_orders code.
 *
 * Locking rules:
 *	- ft_shared->lock (an LWLock of tranche "ft_orders") protects the worker
 *	  slots and the gateway statistics.  Writers are the launcher (slot
 *	  assignment), the payment workers (their own slot, the gateway stats and
 *	  the circuit) and reset_stats(); readers are the status functions.
 *	  Workers take it once per round or per completed batch, never across
 *	  I/O.
 *	- FtWorkerSlot.proc is also read WITHOUT the lock by committing backends
 *	  that only want to set a latch: a stale pointer at worst sets the latch
 *	  of an unrelated process (PGPROCs are never freed), which is harmless.
 *	- wake_next is an atomic round-robin cursor, touched lock-free, and so
 *	  are FtWorkerSlot.in_sql (a hint: a stale value only picks a busier
 *	  worker) and FtWorkerSlot.can_send (a stale 0 only skips a worker that
 *	  claims right after setting it to 1; a stale 1 wakes an idle worker).
 *
 *-------------------------------------------------------------------------
 */
#ifndef FT_SHMEM_H
#define FT_SHMEM_H

#include "port/atomics.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "utils/timestamp.h"

#include "guc.h"

typedef enum FtWorkerState
{
	FT_WORKER_STARTING = 0,
	FT_WORKER_IDLE,
	FT_WORKER_WORKING,
	FT_WORKER_BACKOFF,
	FT_WORKER_CIRCUIT_OPEN,
	FT_WORKER_STANDBY,
	FT_WORKER_STOPPED
} FtWorkerState;

typedef enum FtCircuitState
{
	FT_CIRCUIT_CLOSED = 0,
	FT_CIRCUIT_OPEN,
	FT_CIRCUIT_HALF_OPEN
} FtCircuitState;

#define FT_LAST_ERROR_LEN	256
#define FT_LATENCY_WINDOW	1024	/* latest request latencies kept */

/*
 * Upper bounds (inclusive, in milliseconds) of the finite buckets of the
 * request latency histogram; one more bucket counts everything above the
 * last bound.  The bounds are Prometheus' default buckets (5 ms .. 10 s,
 * 10 s being ft_orders.request_timeout's default).
 */
#define FT_LATENCY_BUCKETS	11
extern const double ft_latency_bucket_ms[FT_LATENCY_BUCKETS];

typedef struct FtWorkerSlot
{
	bool		in_use;			/* assigned by the launcher */
	int			worker_id;		/* 1-based, stable for the slot */
	pid_t		pid;			/* 0 when not running */
	PGPROC	   *proc;			/* latch target; NULL when not running */
	FtWorkerState state;
	int			in_flight;		/* HTTP requests under way */
	pg_atomic_uint32 in_sql;	/* 1 while the worker runs its SQL step:
								 * commit wake-ups prefer another worker;
								 * written lock-free by the worker only */
	pg_atomic_uint32 can_send;	/* 1 while the worker has a gateway URL;
								 * commit wake-ups skip a worker without
								 * (it could not send); lock-free, worker */
	uint64		processed;		/* outcomes recorded (any kind) */
	uint64		succeeded;		/* -> paid */
	uint64		declined;		/* -> declined */
	uint64		retried;		/* transient failure, rescheduled */
	uint64		failed;			/* -> failed (dead letter) */
	TimestampTz last_activity;
	char		last_error[FT_LAST_ERROR_LEN];
} FtWorkerSlot;

typedef struct FtGatewayStats
{
	FtCircuitState circuit;
	int			consecutive_failures;	/* transient failures in a row */
	TimestampTz opened_at;		/* when the circuit last opened */
	bool		probe_in_flight;	/* half-open: the single probe is out */
	TimestampTz probe_started_at;	/* a probe older than the request
									 * timeout was lost with its worker */
	uint64		requests;		/* HTTP requests completed */
	uint64		errors;			/* of which transient failures */
	int			last_http_status;	/* 0: no HTTP reply (network error) */
	uint32		latency_next;	/* next ring position */
	uint32		latency_count;	/* valid entries, <= FT_LATENCY_WINDOW */
	float4		latency_ms[FT_LATENCY_WINDOW];
	/* cumulative histogram of every completed request since reset_stats() */
	uint64		latency_buckets[FT_LATENCY_BUCKETS + 1];	/* per bucket, not
															 * cumulative; the
															 * last is > 10 s */
	double		latency_sum_ms;
} FtGatewayStats;

typedef struct FtSharedState
{
	LWLock	   *lock;
	pg_atomic_uint32 wake_next;
	bool		launcher_db_seen;	/* ft_orders.database existed when the
									 * launcher last looked */
	bool		leases_released;	/* the launcher released the leases of
									 * dead workers; until then (start-up,
									 * promotion) workers claim nothing */
	FtGatewayStats gateway;
	FtWorkerSlot workers[FT_MAX_WORKERS];
} FtSharedState;

extern FtSharedState *ft_shared;

extern void ft_shmem_install_hooks(void);
extern void ft_shmem_reset_stats(void);
extern int	ft_latency_bucket(double latency_ms);
extern const char *ft_worker_state_name(FtWorkerState state);
extern const char *ft_circuit_state_name(FtCircuitState state);

#endif							/* FT_SHMEM_H */
