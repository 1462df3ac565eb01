/*-------------------------------------------------------------------------
 *
 * worker_stats.c
 *	  What a payment worker publishes in shared memory: its own slot
 *	  (identity, state, counters) and the gateway figures (requests,
 *	  errors, latency ring and histogram, circuit breaker input).
 *
 * The worker owns its slot; the launcher only marks it in_use.  Writes go
 * under ft_db->lock, once per round at most for the state and once per
 * batch for the counters, never across I/O.  proc is published last on
 * attach and cleared first on detach: committing backends read it without
 * the lock to set our latch (see shmem.h).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "utils/timestamp.h"

#include "guc.h"
#include "worker.h"

static FtWorkerSlot *ft_my_slot = NULL;
static FtWorkerState ft_published_state = FT_WORKER_STOPPED;
static int	ft_published_in_flight = -1;

static void
ft_slot_on_exit(int code, Datum arg)
{
	ft_slot_detach();
}

/*
 * Take slot slot_index (0-based) for this process and make it the target
 * of commit wake-ups.  Registers the exit callback that clears it.
 */
void
ft_slot_attach(int slot_index)
{
	FtWorkerSlot *slot = &ft_db->workers[slot_index];

	LWLockAcquire(ft_db->lock, LW_EXCLUSIVE);
	slot->in_use = true;
	slot->pid = MyProcPid;
	slot->state = FT_WORKER_STARTING;
	slot->in_flight = 0;
	pg_atomic_write_u32(&slot->in_sql, 0);
	pg_atomic_write_u32(&slot->can_send, 0);
	slot->last_activity = GetCurrentTimestamp();
	slot->proc = MyProc;
	LWLockRelease(ft_db->lock);

	ft_my_slot = slot;
	ft_published_state = FT_WORKER_STARTING;
	ft_published_in_flight = 0;
	before_shmem_exit(ft_slot_on_exit, (Datum) 0);
}

/*
 * Leave the slot: no more wake-ups, state stopped.  Idempotent; also runs
 * from the exit callback after an ERROR.
 */
void
ft_slot_detach(void)
{
	FtWorkerSlot *slot = ft_my_slot;

	if (slot == NULL)
		return;
	ft_my_slot = NULL;

	/* a FATAL exit may come from under the lock (it cannot be re-taken) */
	if (LWLockHeldByMe(ft_db->lock))
		LWLockRelease(ft_db->lock);
	LWLockAcquire(ft_db->lock, LW_EXCLUSIVE);
	slot->proc = NULL;
	slot->pid = 0;
	slot->in_flight = 0;
	slot->state = FT_WORKER_STOPPED;
	LWLockRelease(ft_db->lock);
}

/*
 * Tell committing backends whether this worker is inside its SQL step
 * (extension/wakeup.c wakes a worker that is not, if there is one).
 */
void
ft_slot_set_in_sql(bool in_sql)
{
	if (ft_my_slot != NULL)
		pg_atomic_write_u32(&ft_my_slot->in_sql, in_sql ? 1 : 0);
}

/*
 * Tell committing backends whether this worker can send at all (it has a
 * gateway URL); wake-ups skip one that cannot.  Set to true only right
 * before a claim of everything due, so that no commit is missed in between.
 */
void
ft_slot_set_can_send(bool can_send)
{
	if (ft_my_slot != NULL)
		pg_atomic_write_u32(&ft_my_slot->can_send, can_send ? 1 : 0);
}

/*
 * Publish state and in-flight count; cheap when nothing changed.
 */
void
ft_slot_set_state(FtWorkerState state, int in_flight)
{
	if (ft_my_slot == NULL ||
		(state == ft_published_state && in_flight == ft_published_in_flight))
		return;

	LWLockAcquire(ft_db->lock, LW_EXCLUSIVE);
	ft_my_slot->state = state;
	ft_my_slot->in_flight = in_flight;
	LWLockRelease(ft_db->lock);
	ft_published_state = state;
	ft_published_in_flight = in_flight;
}

/*
 * Account for requests that just completed: gateway counters, latency
 * ring and histogram, and the circuit breaker, all under one lock
 * acquisition.  Circuit transitions are logged afterwards, outside the
 * lock.
 */
void
ft_stats_completions(FtJob **jobs, int njobs)
{
	FtGatewayStats *gw = &ft_db->gateway;
	TimestampTz now = GetCurrentTimestamp();
	FtCircuitChange change = FT_CIRCUIT_UNCHANGED;
	uint32		run_needed = 0;
	uint32		run_failures = 0;
	const char *last_error = NULL;

	if (njobs <= 0)
		return;

	LWLockAcquire(ft_db->lock, LW_EXCLUSIVE);
	for (int i = 0; i < njobs; i++)
	{
		FtJob	   *job = jobs[i];
		FtCircuitChange c;
		/* a clock step must not make the histogram's sum go backwards */
		double		ms = job->latency_ms > 0 ? job->latency_ms : 0;

		gw->requests++;
		if (job->transient)
		{
			gw->errors++;
			last_error = job->error;
		}
		gw->last_http_status = job->http_status;
		gw->latency_ms[gw->latency_next] = (float4) job->latency_ms;
		gw->latency_next = (gw->latency_next + 1) % FT_LATENCY_WINDOW;
		if (gw->latency_count < FT_LATENCY_WINDOW)
			gw->latency_count++;
		gw->latency_buckets[ft_latency_bucket(ms)]++;
		gw->latency_sum_ms += ms;

		ft_concurrency_report_locked(job, now);
		c = ft_circuit_report_locked(job, now, &run_needed, &run_failures);
		if (c != FT_CIRCUIT_UNCHANGED)
			change = c;
	}
	LWLockRelease(ft_db->lock);

	switch (change)
	{
		case FT_CIRCUIT_OPENED:
			ereport(WARNING,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("payment gateway circuit opened after %u failed requests in a row: the gateway is down",
							run_failures),
					 errdetail("No request sent since the gateway's last success succeeded; %u in a row mean it is down at the success share it showed before. Last error: %s.",
							   run_needed, last_error ? last_error : "unknown"),
					 errhint("No payment requests are sent for ft_orders.circuit_open_time; orders stay pending.")));
			break;
		case FT_CIRCUIT_OPENED_UNREACHABLE:
			ereport(WARNING,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("payment gateway circuit opened after %u failed requests in a row: the gateway cannot be reached",
							run_failures),
					 errdetail("None of the requests sent since the gateway's last success got an HTTP reply. Last error: %s.",
							   last_error ? last_error : "unknown"),
					 errhint("No payment requests are sent for ft_orders.circuit_open_time; orders stay pending.")));
			break;
		case FT_CIRCUIT_REOPENED:
			ereport(LOG,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("payment gateway circuit opened again: the probe requests failed"),
					 errdetail("Last error: %s.", last_error ? last_error : "unknown")));
			break;
		case FT_CIRCUIT_CLOSED_AGAIN:
			ereport(LOG,
					(errmsg("payment gateway circuit closed: the gateway answers again")));
			break;
		case FT_CIRCUIT_UNCHANGED:
			break;
	}
}

/*
 * Count outcomes that were just committed to the tables.
 */
void
ft_stats_recorded(FtJob **jobs, int njobs)
{
	const char *last_error = NULL;
	uint64		paid = 0,
				declined = 0,
				retried = 0,
				failed = 0;

	if (ft_my_slot == NULL || njobs <= 0)
		return;

	for (int i = 0; i < njobs; i++)
	{
		switch (jobs[i]->outcome)
		{
			case FT_OUTCOME_PAID:
				paid++;
				break;
			case FT_OUTCOME_DECLINED:
				declined++;
				break;
			case FT_OUTCOME_RETRY:
				retried++;
				break;
			case FT_OUTCOME_FAILED:
				failed++;
				break;
			case FT_OUTCOME_UNKNOWN:
			case FT_OUTCOME_CANCELED:
			case FT_OUTCOME_ACTION_REQUIRED:
			case FT_OUTCOME_REFUNDED:
			case FT_OUTCOME_REFUND_FAILED:
				/* counted in processed only */
				break;
		}
		if (jobs[i]->error != NULL && jobs[i]->outcome != FT_OUTCOME_DECLINED)
			last_error = jobs[i]->error;
	}

	LWLockAcquire(ft_db->lock, LW_EXCLUSIVE);
	ft_my_slot->processed += njobs;
	ft_my_slot->succeeded += paid;
	ft_my_slot->declined += declined;
	ft_my_slot->retried += retried;
	ft_my_slot->failed += failed;
	ft_my_slot->last_activity = GetCurrentTimestamp();
	if (last_error != NULL)
		strlcpy(ft_my_slot->last_error, last_error, FT_LAST_ERROR_LEN);
	LWLockRelease(ft_db->lock);
}
