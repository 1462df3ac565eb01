/*-------------------------------------------------------------------------
 *
 * payment_worker.c
 *	  A payment worker: drains the outbox and charges the gateway.
 *
 * Started by the launcher in one slot of one database's workers (bgw_main_arg:
 * ft_worker_main_arg).  The loop here decides when to claim, send and
 * record; the job (worker_job.c) decides what a claim becomes and what a
 * reply means.  Each round of the loop:
 *
 *	1. waits at the one wait point (ft_http_wait): latch, postmaster death
 *	   and libcurl's sockets and timer, bounded by whatever the worker
 *	   itself has scheduled (batched record, next due event, poll);
 *	2. CHECK_FOR_INTERRUPTS, reloads settings on SIGHUP, stops on SIGTERM;
 *	3. classifies the requests libcurl finished (ft_job_finish: the
 *	   provider's classify_reply, then the outcome policy) and feeds
 *	   them to the gateway figures and the circuit breaker;
 *	4. when enough completions piled up (or they have waited ~2 ms, or
 *	   nothing else is in flight) and/or there is room for more requests
 *	   (under the adaptive in-flight limit, concurrency.c) that the
 *	   circuit, the gateway's pause and the rate limit let go
 *	   (admission.c), runs ONE short transaction that records the
 *	   completions and claims new events (outbox_*.c), commits, and only
 *	   then has the provider build the new requests and the transport
 *	   start them (the circuit's probes on fresh connections).
 *
 * Durability (docs/reference.md, "Failures"): a transaction that claims commits with the
 * server's own synchronous_commit, so with synchronous_standby_names set
 * (Patroni synchronous_mode) the claim is on the synchronous standby
 * before any of its requests leaves: a failover cannot lose a claim whose
 * requests were sent.  A server with synchronous_commit = local or off
 * opts out (the claim then waits for the local flush, or nothing).
 * Transactions that only record outcomes or release leases commit with
 * synchronous_commit = off: losing one only re-sends under the same
 * Idempotency-Key, which the gateway answers as a replay.
 *
 * SyncRepWaitForLSN leaves its wait only on ProcDiePending, a query cancel
 * or postmaster death, not on our shutdown flag: SIGTERM during a claim's
 * commit therefore also sets ProcDiePending (ft_handle_sigterm).  An
 * interrupted wait still commits, with a WARNING, although the standby
 * may not have the claim: after every claim's commit the worker looks for
 * a shutdown, a die or a cancel (ft_handle_sigint counts them) that came
 * during it, and then sends nothing of that claim; it releases the leases
 * with an asynchronous commit (they are due again) and stops or claims
 * again.
 *
 * So no transaction is open while HTTP runs, a slow request only holds
 * its own slot (claims refill free slots continuously), and everything
 * written to the tables is batched.  A commit of place_order sets our
 * latch (extension/wakeup.c): an idle worker claims at once and libcurl
 * sends within the next round.
 *
 * Memory: a per-round context, reset at the top of every round, holds
 * everything transient (classification, SQL arrays); jobs live in their
 * own context from claim to record, since a request spans rounds.
 *
 * While the server is in recovery the worker publishes "standby", writes
 * nothing, and looks again every 250 ms; after a promotion it also waits
 * until the launcher has released the leases of the dead primary's
 * workers (ft_db->leases_released).
 *
 * On SIGTERM: no more claims, in-flight requests get up to one second,
 * what completed is recorded, the leases of the rest are released, the
 * slot shows "stopped", exit.  A worker ERROR (an SPI failure, say)
 * becomes FATAL in a background worker: the transaction is aborted, the
 * exit callbacks clear the slot and free libcurl, and the launcher starts
 * a new worker.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "gateway.h"
#include "gateway_limits.h"
#include "guc.h"
#include "worker.h"

PGDLLEXPORT void ft_orders_payment_worker_main(Datum main_arg);

/* completions wait at most this long for company before being recorded */
#define FT_RECORD_DELAY_MS		2
/* a short claim makes the worker look again at the next due event, or: */
#define FT_POLL_MAX_MS			1000
#define FT_POLL_MIN_MS			10
#define FT_CIRCUIT_POLL_MS		100
#define FT_SHUTDOWN_GRACE_MS	1000

static MemoryContext ft_round_cxt = NULL;

static FtJob **ft_done;			/* completed, not recorded yet */
static int	ft_ndone = 0;
static TimestampTz ft_first_done_at = 0;
static FtJob **ft_round_done;	/* completed in this round (for the stats) */
static int	ft_nround_done = 0;
static FtJob **ft_aborted;		/* shutdown: outcome unknown */
static int	ft_naborted = 0;
static FtClaim *ft_claims;		/* this round's claim (strings in the round
								 * context) */
static FtJob **ft_claimed;

/* set around a claim's commit: SIGTERM then also interrupts the sync wait */
static volatile sig_atomic_t ft_in_claim_commit = false;
/* SIGINTs (query cancels) received: a cancel ends a sync wait silently */
static volatile sig_atomic_t ft_cancel_count = 0;

static bool ft_want_claim = true;
static TimestampTz ft_next_poll = 0;
static TimestampTz ft_last_claim = 0;
static bool ft_circuit_blocked = false;
static bool ft_last_was_retry = false;

/*
 * SIGTERM: the shutdown flag as SignalHandlerForShutdownRequest sets it,
 * plus, during a claim's commit only, what die() sets, which is the one
 * thing a wait for the synchronous standby gives up on.  ft_claim_commit
 * clears ProcDiePending again after the commit; the main loop then stops
 * gracefully.  (A SIGTERM between the claim's last statement and its
 * commit may instead end the worker with a FATAL error before the commit:
 * the claim is then rolled back, nothing was sent.)
 */
static void
ft_handle_sigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	ShutdownRequestPending = true;
	if (ft_in_claim_commit)
	{
		ProcDiePending = true;
		InterruptPending = true;
	}
	SetLatch(MyLatch);
	errno = save_errno;
}

/* SIGINT: core's query cancel, counted (SyncRepWaitForLSN clears the flag) */
static void
ft_handle_sigint(SIGNAL_ARGS)
{
	ft_cancel_count = ft_cancel_count + 1;
	StatementCancelHandler(postgres_signal_arg);
}

static void
ft_process_signals(void)
{
	CHECK_FOR_INTERRUPTS();
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
		ft_job_load_settings();
		ft_want_claim = true;
	}
}

/*
 * A request finished (reply != NULL) or was aborted at shutdown (NULL).
 * The job says what the reply means; queue it for recording.
 */
static void
ft_on_done(void *owner, const FtGatewayReply *reply, double latency_ms)
{
	FtJob	   *job = (FtJob *) owner;

	/*
	 * Jobs in flight plus jobs done and not yet recorded never exceed
	 * max_in_flight (a claim records first), which the arrays are sized for.
	 */
	if (ft_ndone >= FT_MAX_IN_FLIGHT || ft_nround_done >= FT_MAX_IN_FLIGHT ||
		ft_naborted >= FT_MAX_IN_FLIGHT)
		elog(ERROR, "payment worker holds more jobs than it can track");

	if (reply == NULL)
	{
		ft_aborted[ft_naborted++] = job;
		return;
	}

	ft_job_finish(job, reply, latency_ms);
	if (ft_ndone == 0)
		ft_first_done_at = GetCurrentTimestamp();
	ft_done[ft_ndone++] = job;
	ft_round_done[ft_nround_done++] = job;
}

/*
 * Should this round run the SQL step, and should it claim?  Recording
 * waits a little for company unless nothing else is in flight; claiming
 * waits for a quarter of the free slots unless the worker is idle or the
 * last claim is FT_RECORD_DELAY_MS old.
 */
static bool
ft_claim_due(TimestampTz now, int *limit)
{
	int			in_flight_limit = ft_concurrency_limit();
	int			room = in_flight_limit - ft_http_in_flight();
	int			chunk = Max(1, Min(ft_batch_size, in_flight_limit) / 4);

	*limit = Min(ft_batch_size, room);
	if (!ft_job_can_send() || *limit <= 0)
		return false;
	if (!ft_want_claim && now < ft_next_poll)
		return false;
	return (*limit >= chunk || ft_http_in_flight() == 0 ||
			TimestampDifferenceExceeds(ft_last_claim, now, FT_RECORD_DELAY_MS));
}

static bool
ft_record_due(TimestampTz now)
{
	int			chunk = Max(1, Min(ft_batch_size, ft_max_in_flight) / 4);

	if (ft_ndone == 0)
		return false;
	return (ft_ndone >= chunk || ft_http_in_flight() == 0 ||
			TimestampDifferenceExceeds(ft_first_done_at, now, FT_RECORD_DELAY_MS));
}

/*
 * Send none of the *nclaimed events just claimed: release their leases
 * (async; the attempt each claim counted is given back, as at a
 * shutdown), free the jobs, set *nclaimed to 0.
 */
static void
ft_release_claims(int *nclaimed, const char *what)
{
	for (int i = 0; i < *nclaimed; i++)
		ft_claimed[i] = ft_job_new(&ft_claims[i]);
	ft_xact_begin(what, true);
	ft_outbox_release(ft_claimed, *nclaimed);
	ft_xact_commit();
	for (int i = 0; i < *nclaimed; i++)
		ft_job_free(ft_claimed[i]);
	*nclaimed = 0;
}

/*
 * Commit a transaction that claimed *nclaimed events (ft_claims), waiting
 * as synchronous_commit says.  If a shutdown, a die or a query cancel came
 * while it waited, the claim may not be on the synchronous standby:
 * nothing of it may be sent.  Then the leases are released (async), the
 * jobs freed and *nclaimed set to 0; a shutdown continues in the main
 * loop, a die (postmaster death) ends the process here.
 */
static void
ft_claim_commit(int *nclaimed)
{
	sig_atomic_t cancels = ft_cancel_count;
	bool		interrupted;

	/* the flag first: a SIGTERM after the test below finds it set */
	ft_in_claim_commit = true;
	if (ShutdownRequestPending)
	{
		/* stopping already: commit what was recorded, send nothing */
		ft_in_claim_commit = false;
		ft_xact_set_async();
		ft_xact_commit();
		interrupted = true;
	}
	else
	{
		ft_xact_commit();
		ft_in_claim_commit = false;
		interrupted = (ShutdownRequestPending || ProcDiePending ||
					   cancels != ft_cancel_count);
	}
	if (!interrupted)
		return;

	/* ours, set for the shutdown: the graceful stop of the main loop does it */
	if (ShutdownRequestPending)
		ProcDiePending = false;
	/* a die not of our making (postmaster death) ends the process here */
	CHECK_FOR_INTERRUPTS();

	ereport(LOG,
			(errmsg("payment worker: the commit of a claim of %d payment(s) was interrupted; none of them is sent",
					*nclaimed),
			 errdetail("The claim may not have reached the synchronous standby; its leases are released.")));
	ft_release_claims(nclaimed, "ft_orders: releasing an interrupted claim");
}

/*
 * The SQL step of a round: one transaction that records completions and
 * claims new work, then the new requests are sent.
 */
static void
ft_sql_step(TimestampTz now)
{
	bool		record = ft_record_due(now);
	int			limit = 0;
	bool		claim = ft_claim_due(now, &limit);
	int			nprobes = 0;
	int			admitted = 0;
	int			nclaimed = 0;
	TimestampTz next_due = 0;
	TimestampTz paused_until = 0;

	ft_circuit_blocked = false;
	if (claim)
	{
		TimestampTz retry_at = 0;

		limit = ft_circuit_admit(limit, &nprobes, &ft_circuit_blocked);
		if (limit > 0)
		{
			/* the shared pause and the rate limit (admission.c) */
			admitted = ft_admission_take(limit, now, &retry_at);
			if (admitted < nprobes)
			{
				ft_circuit_abandon_probes(nprobes - admitted);
				nprobes = admitted;
			}
			limit = admitted;
		}
		if (limit <= 0)
		{
			claim = false;
			/*
			 * look again when the pause ends or the next token is due
			 * (retry_at), or when the circuit may let a probe through
			 */
			ft_next_poll = retry_at != 0 ? retry_at :
				TimestampTzPlusMilliseconds(now, FT_CIRCUIT_POLL_MS);
			ft_want_claim = false;
		}
	}
	if (claim && ft_ndone > 0)
		record = true;			/* same transaction anyway */
	if (!record && !claim)
		return;

	ft_slot_set_in_sql(true);
	ft_xact_begin(claim ? "ft_orders: claim payments" : "ft_orders: record payments",
					!claim);
	if (record)
		ft_outbox_record_isolated(ft_done, ft_ndone);
	if (claim)
	{
		nclaimed = ft_outbox_claim(limit, ft_round_cxt, ft_claims);
		if (nclaimed < limit)
			next_due = ft_outbox_next_due();
	}
	if (claim && nclaimed > 0)
		ft_claim_commit(&nclaimed);
	else
	{
		/* nothing claimed: what was recorded need not wait */
		ft_xact_set_async();
		ft_xact_commit();
	}
	ft_slot_set_in_sql(false);

	if (record)
	{
		ft_stats_recorded(ft_done, ft_ndone);
		ft_last_was_retry = (ft_done[ft_ndone - 1]->outcome == FT_OUTCOME_RETRY);
		for (int i = 0; i < ft_ndone; i++)
			ft_job_free(ft_done[i]);
		ft_ndone = 0;
	}

	if (claim)
	{
		ft_last_claim = GetCurrentTimestamp();
		/*
		 * The gateway asked every worker to wait while this claim ran
		 * (another worker's 429): what it claimed waits too, or it would
		 * be a burst of requests the gateway has just refused.
		 */
		paused_until = ft_admission_paused_until(ft_last_claim);
		if (paused_until != 0 && nclaimed > 0)
			ft_release_claims(&nclaimed,
							  "ft_orders: releasing a claim the gateway's pause overtook");
		if (nclaimed < nprobes)
			ft_circuit_abandon_probes(nprobes - nclaimed);
		if (nclaimed < admitted)
			ft_admission_give_back(admitted - nclaimed);
		for (int i = 0; i < nclaimed; i++)
		{
			ft_claimed[i] = ft_job_new(&ft_claims[i]);
			ft_claimed[i]->is_probe = (i < nprobes);
		}
		if (nclaimed == limit)
			ft_want_claim = true;	/* there may be more due */
		else
		{
			long		ms = FT_POLL_MAX_MS;

			ft_want_claim = false;
			if (next_due != 0)
			{
				long		secs;
				int			usecs;

				TimestampDifference(ft_last_claim, next_due, &secs, &usecs);
				ms = Min(ms, secs * 1000 + usecs / 1000 + 1);
			}
			ft_next_poll = TimestampTzPlusMilliseconds(ft_last_claim,
													   Max(ms, FT_POLL_MIN_MS));
		}
		if (paused_until != 0)
		{
			ft_want_claim = false;
			ft_next_poll = paused_until;
		}
		for (int i = 0; i < nclaimed; i++)
			ft_job_send(ft_claimed[i], ft_on_done);
	}

	if (ft_http_in_flight() == 0 && ft_ndone == 0)
		ft_job_free_all();
}

/* milliseconds the next wait may last */
static long
ft_wait_time(TimestampTz now)
{
	long		ms = FT_POLL_MAX_MS;
	long		secs;
	int			usecs;

	if (ft_ndone > 0)
		ms = Min(ms, FT_RECORD_DELAY_MS);
	if (ft_job_can_send() && ft_concurrency_limit() > ft_http_in_flight())
	{
		if (ft_want_claim)
			ms = Min(ms, FT_RECORD_DELAY_MS);
		else
		{
			TimestampDifference(now, ft_next_poll, &secs, &usecs);
			ms = Min(ms, secs * 1000 + (usecs + 999) / 1000);
		}
	}
	return Max(ms, 0);
}

static void
ft_publish_state(void)
{
	FtWorkerState state;
	int			in_flight = ft_http_in_flight();

	if (!ft_job_can_send())
		state = FT_WORKER_IDLE;
	else if (ft_circuit_blocked)
		state = FT_WORKER_CIRCUIT_OPEN;
	else if (in_flight > 0 || ft_ndone > 0)
		state = FT_WORKER_WORKING;
	else if (ft_last_was_retry)
		state = FT_WORKER_BACKOFF;
	else
		state = FT_WORKER_IDLE;
	ft_slot_set_state(state, in_flight);
}

/*
 * SIGTERM: give requests under way FT_SHUTDOWN_GRACE_MS, record what
 * completed, release the leases of the rest, then leave.
 */
static void
ft_shutdown(void)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   FT_SHUTDOWN_GRACE_MS);

	ft_slot_set_state(FT_WORKER_WORKING, ft_http_in_flight());
	while (ft_http_in_flight() > 0)
	{
		TimestampTz now = GetCurrentTimestamp();
		long		secs;
		int			usecs;

		if (now >= deadline)
			break;
		MemoryContextReset(ft_round_cxt);
		TimestampDifference(now, deadline, &secs, &usecs);
		if (ft_http_wait(secs * 1000 + usecs / 1000 + 1, PG_WAIT_EXTENSION) & WL_LATCH_SET)
			ResetLatch(MyLatch);
		ft_nround_done = 0;
		ft_http_collect(ft_on_done);
		ft_stats_completions(ft_round_done, ft_nround_done);
	}
	ft_http_abort_all(ft_on_done);

	if (ft_ndone > 0 || ft_naborted > 0)
	{
		ft_xact_begin("ft_orders: stopping", true);
		ft_outbox_record_isolated(ft_done, ft_ndone);
		ft_outbox_release(ft_aborted, ft_naborted);
		ft_xact_commit();
		ft_stats_recorded(ft_done, ft_ndone);
		if (ft_naborted > 0)
			ereport(LOG,
					(errmsg("payment worker stopping: released %d unfinished payment(s) for a retry",
							ft_naborted)));
	}
	ft_http_shutdown();
	ft_slot_detach();
	proc_exit(0);
}

/*
 * Before any claim: the server must be a primary and the launcher must
 * have released the leases left by workers that no longer exist, and the
 * extension must be installed.  Waits (latch, 250 ms) until then.
 */
static void
ft_wait_until_ready(void)
{
	bool		hinted = false;

	for (;;)
	{
		bool		in_recovery = RecoveryInProgress();

		if (!in_recovery && ft_db->leases_released)
		{
			bool		ready;

			ft_xact_begin("ft_orders: checking the extension", true);
			ready = ft_schema_installed();
			if (ready)
				ft_outbox_warm_up();
			ft_xact_commit();
			if (ready)
				return;
			if (!hinted)
				ereport(LOG,
						(errcode(ERRCODE_UNDEFINED_OBJECT),
						 errmsg("extension \"ft_orders\" is not installed in database \"%s\": the payment worker waits",
								NameStr(ft_db->dbname)),
						 errhint("Run CREATE EXTENSION ft_orders in that database.")));
			hinted = true;
		}
		ft_slot_set_state(in_recovery ? FT_WORKER_STANDBY : FT_WORKER_STARTING, 0);

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 FT_STANDBY_POLL_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		ft_process_signals();
		if (ShutdownRequestPending)
		{
			ft_slot_detach();
			proc_exit(0);
		}
	}
}

static void
ft_http_on_exit(int code, Datum arg)
{
	ft_http_shutdown();
}

void
ft_orders_payment_worker_main(Datum main_arg)
{
	int			db_index = DatumGetInt32(main_arg) / FT_MAX_WORKERS;
	int			slot_index = DatumGetInt32(main_arg) % FT_MAX_WORKERS;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, ft_handle_sigterm);
	pqsignal(SIGINT, ft_handle_sigint);
	BackgroundWorkerUnblockSignals();

	if (DatumGetInt32(main_arg) < 0 || db_index >= ft_shared->ndatabases)
		elog(ERROR, "payment worker started with argument %d", DatumGetInt32(main_arg));
	ft_db = &ft_shared->db[db_index];
	if (ft_db->dropping)
		proc_exit(0);			/* DROP DATABASE under way: do not connect */

	BackgroundWorkerInitializeConnection(NameStr(ft_db->dbname), NULL, 0);
	/* every name in the outbox's SQL resolves to the built-in or ft_orders */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);

	/*
	 * No synchronous_commit override here: claims commit with the
	 * server's own setting, records and releases set it off locally
	 * (ft_xact_begin's async; see the file banner).
	 */

	/*
	 * Every statement of the worker reaches its rows through an index, each
	 * join driven by an array or a CTE of this batch (outbox_batch.c keeps them
	 * with one generic plan each).  Those plans are made once, possibly
	 * while a table is empty or just truncated and analyzed; without
	 * sequential scans, hash and merge joins they cannot turn into a scan
	 * of a whole table per batch as the tables grow (a hashed subplan over
	 * orders, a hash join over all of the outbox).
	 */
	SetConfigOption("enable_seqscan", "off", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("enable_hashjoin", "off", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("enable_mergejoin", "off", PGC_SUSET, PGC_S_OVERRIDE);

	ft_slot_attach(slot_index);

	ft_round_cxt = AllocSetContextCreate(TopMemoryContext, "ft_orders round",
										 ALLOCSET_DEFAULT_SIZES);
	ft_job_init();
	ft_done = MemoryContextAlloc(TopMemoryContext, sizeof(FtJob *) * FT_MAX_IN_FLIGHT);
	ft_round_done = MemoryContextAlloc(TopMemoryContext, sizeof(FtJob *) * FT_MAX_IN_FLIGHT);
	ft_aborted = MemoryContextAlloc(TopMemoryContext, sizeof(FtJob *) * FT_MAX_IN_FLIGHT);
	ft_claimed = MemoryContextAlloc(TopMemoryContext, sizeof(FtJob *) * FT_MAX_IN_FLIGHT);
	ft_claims = MemoryContextAlloc(TopMemoryContext, sizeof(FtClaim) * FT_MAX_IN_FLIGHT);

	ft_http_init();
	before_shmem_exit(ft_http_on_exit, (Datum) 0);
	ft_job_load_settings();

	ft_wait_until_ready();
	ereport(LOG,
			(errmsg("payment worker %d started", slot_index + 1)));

	for (;;)
	{
		TimestampTz now;

		MemoryContextReset(ft_round_cxt);
		MemoryContextSwitchTo(ft_round_cxt);

		ft_publish_state();
		if (ft_http_wait(ft_wait_time(GetCurrentTimestamp()), PG_WAIT_EXTENSION) & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			ft_want_claim = true;
		}
		ft_process_signals();
		if (ShutdownRequestPending)
			break;

		ft_nround_done = 0;
		ft_http_collect(ft_on_done);
		ft_stats_completions(ft_round_done, ft_nround_done);

		now = GetCurrentTimestamp();
		ft_sql_step(now);
	}

	MemoryContextSwitchTo(TopMemoryContext);
	ft_shutdown();
}
