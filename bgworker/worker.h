/*-------------------------------------------------------------------------
 *
 * worker.h
 *	  Declarations shared by the files of the payment workers and their
 *	  launcher: the in-memory form of a claimed outbox event (FtJob), the
 *	  outbox SQL (outbox_batch.c, outbox_claim.c, outbox_record.c),
 *	  backoff, the circuit breaker and the shared
 *	  memory figures a worker publishes.
 *
 *-------------------------------------------------------------------------
 */
#ifndef FT_WORKER_H
#define FT_WORKER_H

#include "datatype/timestamp.h"
#include "executor/spi.h"

#include "gateway.h"
#include "schema_version.h"
#include "shmem.h"

#define FT_UUID_TEXT_LEN	36

/* launcher and workers look this often whether a standby was promoted */
#define FT_STANDBY_POLL_MS	250

/*
 * One claimed outbox event and the order fields its request is built from
 * (order.order_id included).
 */
typedef struct FtClaim
{
	int64		event_id;
	int32		event_attempts; /* outbox.attempts, this attempt included */
	int32		order_attempt;	/* orders.attempts, this request included */
	TimestampTz lease_until;
	FtSchemaVersion schema;		/* the schema it was claimed from */
	bool		lookup;			/* look the work up before sending again */
	bool		cancel_requested;
	FtPaymentRequest order;
} FtClaim;

/*
 * One claimed outbox event, from its claim to the recording of its
 * outcome (worker_job.c).  Lives in the worker's job memory context, not
 * in the per-round context: an HTTP request spans many rounds.
 */
typedef struct FtJob
{
	FtClaim		claim;			/* a copy, strings in the job context */
	bool		is_probe;		/* the circuit's half-open probe: sent on a
								 * fresh connection */
	char		idempotency_key[FT_UUID_TEXT_LEN + 16];	/* the payment_key,
														 * the refund_key, or
														 * the payment_key +
														 * FT_CANCEL_KEY_SUFFIX */
	FtRequestKind kind;
	char	   *body;			/* request body (kept alive for libcurl);
								 * NULL: GET recheck_path instead */
	char	   *recheck_path;	/* path to GET (a cancel: to POST body to),
								 * or NULL: POST to the provider's path */
	int			body_len;

	/* from the reply */
	TimestampTz started_at;
	FtOutcome	outcome;
	bool		transient;		/* counted against the circuit */
	bool		timed_out;		/* no reply within request_timeout */
	int			http_status;	/* 0: none */
	int			retry_after_ms; /* the reply's Retry-After; -1: none */
	double		latency_ms;
	double		listened_ms;	/* of latency_ms, the worker listening */
	int			delay_ms;		/* retry: backoff before the next attempt */
	int32		uncounted;		/* retry: 1 when this attempt does not count
								 * towards max_attempts (attempts.c) */
	bool		look_up;		/* retry: as a look-up (attempts used up on
								 * replies that said nothing final) */
	char	   *payment_id;		/* paid (refunds: the gateway's refund id) */
	char	   *error;			/* NULL when paid */
	char	   *next_action;	/* action_required only */
	char	   *client_secret;	/* action_required only */
} FtJob;

/*
 * What a batch statement of the outbox takes from each job: one array
 * parameter per column (outbox_batch.c, ft_job_arrays).
 */
typedef enum FtJobColumn
{
	FT_COL_EVENT_ID,			/* bigint */
	FT_COL_ORDER_ID,			/* bigint */
	FT_COL_REFUND_ID,			/* bigint, NULL for a charge */
	FT_COL_LEASE,				/* timestamptz: lease_until */
	FT_COL_STARTED,				/* timestamptz */
	FT_COL_ORDER_ATTEMPT,		/* int */
	FT_COL_HTTP_STATUS,			/* int, NULL without an HTTP reply */
	FT_COL_DELAY,				/* int: delay_ms */
	FT_COL_LATENCY,				/* float8: latency_ms */
	FT_COL_REQUEST,				/* text: charge, lookup, refund, ... */
	FT_COL_OUTCOME,				/* text: ft_outcome_name */
	FT_COL_DETAIL,				/* text: the order_events detail */
	FT_COL_PAYMENT_ID,			/* text or NULL */
	FT_COL_ERROR,				/* text or NULL */
	FT_COL_NEXT_ACTION,			/* text or NULL */
	FT_COL_CLIENT_SECRET,		/* text or NULL */
	FT_COL_UNCOUNTED			/* int: 1, this attempt does not count */
} FtJobColumn;

/* longest error message kept when a job's record fails */
#define FT_RECORD_ERROR_MAX	200

/* most parameters a batch statement takes */
#define FT_JOB_MAX_COLUMNS	16

/*
 * A batch statement of the outbox: sql takes one array parameter per job
 * column of cols (ft_job_arrays) and returns the SPI code expected, else
 * the error is "<what> failed".  Its plan is prepared the first time this
 * process runs it, and kept in plan.
 */
typedef struct FtJobStatement
{
	const char *sql;
	const FtJobColumn *cols;
	int			ncols;
	int			expected;
	const char *what;
	SPIPlanPtr	plan;
} FtJobStatement;

/* worker_xact.c: the short transaction every SQL step runs in */
extern void ft_xact_begin(const char *activity, bool async);
extern void ft_xact_set_async(void);
extern void ft_xact_commit(void);
extern void ft_xact_log_error(MemoryContext cxt);

/*
 * outbox_batch.c: the batch statements under claim and record.  Every
 * statement is prepared once with one generic plan
 * (CURSOR_OPT_GENERIC_PLAN), which spares planning on every execution.
 * Each is right whatever the values: index lookups driven by the arrays,
 * and for the claim's LIMIT $1 (a generic plan assumes 10 % of the outbox)
 * the next_attempt_at index, since the worker plans without sequential
 * scans, hash and merge joins (payment_worker.c).
 */
#define FT_OUTBOX_PLAN	CURSOR_OPT_GENERIC_PLAN

extern Datum ft_array(Datum *elems, bool *nulls, int n, Oid elemtype);
extern void ft_outbox_exec(SPIPlanPtr *plan, const char *sql, int nargs,
						   Oid *argtypes, Datum *values, int expected,
						   const char *what);
extern void ft_job_arrays(FtJob **jobs, int njobs, const FtJobColumn *cols,
						  int ncols, Datum *values, Oid *argtypes);
extern bool ft_outbox_try(void (*fn) (FtJob **jobs, int njobs),
						  FtJob **jobs, int njobs, char **error);
extern void ft_outbox_run_jobs(FtJobStatement *stmt, FtJob **jobs, int njobs);

/* outbox_claim.c: every function runs inside ft_xact_begin/commit */
extern int	ft_outbox_claim(int limit, MemoryContext cxt, FtClaim *claims);
extern TimestampTz ft_outbox_next_due(void);
extern void ft_outbox_release(FtJob **jobs, int njobs);
extern int64 ft_outbox_release_all_leases(void);

/* outbox_record.c: inside ft_xact_begin/commit */
extern void ft_outbox_warm_up(void);
extern void ft_outbox_record(FtJob **jobs, int njobs);
extern void ft_outbox_record_isolated(FtJob **jobs, int njobs);

/* worker_job.c: one job, from its claim to its outcome */
extern void ft_job_init(void);
extern void ft_job_load_settings(void);
extern bool ft_job_can_send(void);
extern FtJob *ft_job_new(const FtClaim *claim);
extern void ft_job_send(FtJob *job, FtHttpDoneCallback on_done);
extern void ft_job_finish(FtJob *job, const FtGatewayReply *reply,
						  double latency_ms);
extern void ft_job_free(FtJob *job);
extern void ft_job_free_all(void);

/* attempts.c: which attempts count towards max_attempts; give-up reports */
extern bool ft_attempt_counts(int http_status, bool auth_problem, bool is_probe);
extern void ft_attempt_report_failed(int64 order_id, int64 refund_id,
									 int64 event_id, const char *error);

/* backoff.c */
extern int	ft_backoff_delay_ms(int attempt, int retry_after_ms);

/* circuit.c */
typedef enum FtCircuitChange
{
	FT_CIRCUIT_UNCHANGED = 0,
	FT_CIRCUIT_OPENED,			/* by failure rate */
	FT_CIRCUIT_OPENED_UNREACHABLE,	/* no reply at all */
	FT_CIRCUIT_REOPENED,
	FT_CIRCUIT_CLOSED_AGAIN
} FtCircuitChange;

extern int	ft_circuit_admit(int wanted, int *nprobes, bool *blocked);
extern void ft_circuit_abandon_probes(int n);
extern FtCircuitChange ft_circuit_report_locked(const FtJob *job, TimestampTz now,
												uint32 *window_requests,
												uint32 *window_failures);

/*
 * admission.c: the shared pause and the rate limit, for any kind of
 * request to the gateway
 */
extern int	ft_admission_take(int wanted, TimestampTz now, TimestampTz *retry_at);
extern void ft_admission_give_back(int n);
extern void ft_admission_pause(TimestampTz until);

/* concurrency.c: the adaptive in-flight limit */
extern int	ft_concurrency_limit(void);
extern void ft_concurrency_report_locked(const FtJob *job, TimestampTz now);

/*
 * bgw_main_arg of the payment worker in slot slot (0-based) of database db
 * (its position in ft_orders.database): set by the launcher, decoded by
 * ft_orders_payment_worker_main.
 */
#define ft_worker_main_arg(db, slot)	((db) * FT_MAX_WORKERS + (slot))

/* worker_stats.c: the worker's slot and the gateway figures */
extern void ft_slot_attach(int slot_index);
extern void ft_slot_detach(void);
extern void ft_slot_set_state(FtWorkerState state, int in_flight);
extern void ft_slot_set_in_sql(bool in_sql);
extern void ft_slot_set_can_send(bool can_send);
extern void ft_stats_completions(FtJob **jobs, int njobs);
extern void ft_stats_recorded(FtJob **jobs, int njobs);

#endif							/* FT_WORKER_H */
