/*-------------------------------------------------------------------------
 *
 * shmem.h
 *	  Layout of ft_orders' shared memory and who may touch what.
 *
 * One FtSharedState lives in the main shared memory segment: one
 * FtDatabaseState per database of ft_orders.database, in the order listed.
 * The library refuses to load unless preloaded (ft_orders.c), so ft_shared
 * is set in every process that runs ft_orders code.  ft_db is the block of
 * the process's own database: the launcher and the payment workers set it
 * from their bgw_main_arg, a backend finds it by its database's name
 * (ft_shmem_my_database); it stays NULL in a database that is not listed.
 * Nothing ever touches another database's block, except DROP DATABASE
 * (ft_shmem_stop_database).
 *
 * Locking rules, all per database block:
 *	- ft_db->lock (an LWLock of tranche "ft_orders", one per block)
 *	  protects the worker slots, the gateway statistics, launcher_pid and
 *	  dropping.  Writers are the launcher (slot assignment), the payment
 *	  workers (their own slot, the gateway stats and the circuit),
 *	  reset_stats() and DROP DATABASE; readers are the status functions.
 *	  Workers take it once per round or per completed batch, never across
 *	  I/O.
 *	- FtWorkerSlot.proc is also read WITHOUT the lock by committing backends
 *	  that only want to set a latch: a stale pointer at worst sets the latch
 *	  of an unrelated process (PGPROCs are never freed), which is harmless.
 *	- ft_shared->limits (the shared pause and the token bucket of
 *	  ft_orders.rate_limit) is the one thing all databases share: they
 *	  all talk to one gateway account, which limits and pauses the
 *	  account.  It has its own spinlock: every payment worker asks it
 *	  before each claim, and the critical sections are a few arithmetic
 *	  operations (bgworker/admission.c).  Each database counts its own
 *	  workers' waits in ft_db->throttled (atomic).
 *	- claim_floor has its own spinlock, held for a comparison and an
 *	  assignment, once per claim (bgworker/claim_floor.c).
 *	- The adaptive concurrency limit and the circuit's failure window live
 *	  in FtGatewayStats under ft_db->lock, fed with each completed
 *	  batch; concurrency_limit_now is also read lock-free (an int).
 *	- wake_next is an atomic round-robin cursor, touched lock-free, and so
 *	  are FtWorkerSlot.in_sql (a hint: a stale value only picks a busier
 *	  worker) and FtWorkerSlot.can_send (a stale 0 only skips a worker that
 *	  claims right after setting it to 1; a stale 1 wakes an idle worker).
 *	  The payment workers and the launcher also read dropping lock-free
 *	  once per round: a stale false only delays their leaving by a round.
 *
 *-------------------------------------------------------------------------
 */
#ifndef FT_SHMEM_H
#define FT_SHMEM_H

#include "port/atomics.h"
#include "storage/lwlock.h"
#include "storage/spin.h"
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

/*
 * The circuit's failure window (bgworker/circuit.c): the requests of the
 * last FT_CIRCUIT_BUCKETS periods of FT_CIRCUIT_BUCKET_MS, counted per
 * period.
 */
#define FT_CIRCUIT_BUCKETS		10
#define FT_CIRCUIT_BUCKET_MS	1000
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
	int			probes_in_flight;	/* half-open: probes sent, not answered */
	int			probes_succeeded;	/* half-open: probes that got an answer */
	int			probes_failed;	/* half-open: probes that failed */
	TimestampTz probe_started_at;	/* a probe older than the request
									 * timeout was lost with its worker */
	/* the failure window behind failure_rate (views, metrics) */
	int64		window_period[FT_CIRCUIT_BUCKETS];	/* now / bucket length */
	uint32		window_requests[FT_CIRCUIT_BUCKETS];
	uint32		window_failures[FT_CIRCUIT_BUCKETS];
	/* what opens the circuit (bgworker/circuit.c) */
	TimestampTz last_answer_at; /* the last success or 429 */
	int			run_failures;	/* failed requests sent after it */
	int			run_replies;	/* ... of which got an HTTP reply */
	double		success_share;	/* smoothed share of successes before
								 * the run; 0: none seen yet */
	float4		unavailable_share;	/* smoothed share of 503 replies
									 * (admission.c) */
	/* adaptive concurrency (bgworker/concurrency.c) */
	double		concurrency_limit;	/* 0: not started yet (slow start) */
	double		slow_start_until;	/* below it the limit grows by 1 per
									 * success, above by 1/limit; 0: the
									 * ceiling */
	TimestampTz last_completion_at; /* a long idle restarts slow start */
	TimestampTz growth_period_at;	/* growth is at most doubling per */
	double		growth_base;	/* FT_AC_GROWTH_MS from this limit */
	TimestampTz overload_at;	/* last 429: no growth for a while */
	TimestampTz decreased_at;	/* last gentle decrease (once per RTT) */
	float4		rtt_min_current;	/* least latency of this period */
	float4		rtt_min_previous;	/* ... and of the period before */
	float4		rtt_smoothed;	/* moving average of the latency */
	TimestampTz rtt_period_start;
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

/*
 * The shared pause (Retry-After of a 429/503) and the token bucket of
 * ft_orders.rate_limit: when the next request may leave, for every worker
 * and every kind of request (bgworker/admission.c).  Under mutex.
 */
typedef struct FtGatewayLimits
{
	slock_t		mutex;
	TimestampTz paused_until;	/* no request before; 0: no pause */
	double		tokens;			/* requests that may leave now */
	TimestampTz refilled_at;	/* tokens were counted at this time; 0:
								 * never (the bucket starts full) */
} FtGatewayLimits;

/*
 * The claim floor (bgworker/claim_floor.c): the least next_attempt_at a
 * claim of this database needs to look at.  Under mutex; raised by the
 * payment workers after a claim commits, lowered (with generation + 1) by
 * the launcher's sweep, at its start and when the clock went back.
 */
typedef struct FtClaimFloor
{
	slock_t		mutex;
	TimestampTz floor;			/* DT_NOBEGIN: none, claims start at the
								 * head of the index */
	uint64		generation;		/* + 1 whenever the floor is lowered: a
								 * claim that started before raises nothing */
} FtClaimFloor;

typedef struct FtDatabaseState
{
	NameData	dbname;			/* from ft_orders.database, set at start */
	LWLock	   *lock;
	pg_atomic_uint32 wake_next;
	bool		launcher_db_seen;	/* the database existed when the
									 * launcher last looked */
	pid_t		launcher_pid;	/* launcher connected to the database; 0:
								 * none (waiting for it, or stopped) */
	bool		dropping;		/* DROP DATABASE under way: the launcher
								 * and the workers leave, the launcher
								 * waits without a connection */
	bool		leases_released;	/* the launcher released the leases of
									 * dead workers; until then (start-up,
									 * promotion) workers claim nothing */
	FtGatewayStats gateway;
	pg_atomic_uint64 throttled; /* times one of our workers was told to
								 * wait by ft_shared->limits */
	pg_atomic_uint32 concurrency_limit_now; /* the adaptive limit, rounded;
											 * 0: not started (slow start) */
	pg_atomic_uint64 concurrency_active_at; /* last completion (µs): after a
											 * long idle, slow start again */
	FtClaimFloor claim_floor;
	FtWorkerSlot workers[FT_MAX_WORKERS];
} FtDatabaseState;

typedef struct FtSharedState
{
	FtGatewayLimits limits;		/* of the one gateway account */
	int			ndatabases;
	FtDatabaseState db[FLEXIBLE_ARRAY_MEMBER];
} FtSharedState;

extern FtSharedState *ft_shared;
extern FtDatabaseState *ft_db;

/*
 * The gateway limits as the views and metrics() show them (docs/reference.md,
 * "Gateway limits").
 */
typedef struct FtGatewayLimitsView
{
	double		rate_limit;		/* ft_orders.rate_limit, requests/s; 0: none */
	int			concurrency_limit;	/* per worker, 1 .. max_in_flight */
	uint64		throttled;		/* times a worker waited for the pause or
								 * the rate limit */
	TimestampTz paused_until;	/* 0: no pause now */
	double		failure_rate;	/* share in the circuit's window; -1: empty */
} FtGatewayLimitsView;

extern void ft_shmem_install_hooks(void);
extern FtDatabaseState *ft_shmem_my_database(void);
extern void ft_shmem_stop_database(const char *dbname);
extern void ft_shmem_release_database(const char *dbname);
extern void ft_shmem_reset_stats(void);
extern void ft_shmem_snapshot(FtWorkerSlot *slots, FtGatewayStats *gw);
extern int	ft_latency_bucket(double latency_ms);
extern void ft_gateway_limits_snapshot(FtGatewayLimitsView *view);
extern uint32 ft_circuit_window_counts(const FtGatewayStats *gw, TimestampTz now,
									   uint32 *n);
extern const char *ft_worker_state_name(FtWorkerState state);
extern const char *ft_circuit_state_name(FtCircuitState state);

#endif							/* FT_SHMEM_H */
