/*-------------------------------------------------------------------------
 *
 * claim_floor.c
 *	  The claim floor: the least next_attempt_at a claim looks at, so that
 *	  a claim never walks again the row versions earlier claims passed.
 *
 * A claim locks due events in next_attempt_at order through the outbox's
 * next_attempt_at index.  Every event leaves dead index entries behind
 * (its version before the claim, its leased version once it is settled),
 * and they lie where the claims start: at the head of the index.
 * Autovacuum removes them, and a scan marks an entry dead once no
 * snapshot can see its row; but while an old snapshot is held (pg_dump,
 * a REPEATABLE READ reader, a replica with hot_standby_feedback) neither
 * happens, and a claim that starts at the head walks over every event
 * settled since that snapshot was taken, and visits its heap page.
 *
 * So claims start at a floor kept in shared memory (FtClaimFloor, one per
 * database) and only ever raised by claims: "WHERE next_attempt_at >=
 * floor".  What a claim has passed it never walks again, whatever
 * snapshots are held.  A claim may raise the floor to a time t only if no
 * event below t can still become visible unclaimed:
 *
 *	- events its snapshot saw below t were claimed by it or locked by
 *	  another claim (FOR UPDATE SKIP LOCKED): up to its last row when it
 *	  took a full batch, anything due when it took less;
 *	- events not yet committed when it looked are stamped (next_attempt_at)
 *	  no earlier than the start of the transaction that writes them: t is
 *	  at most the oldest start of a transaction of this database holding a
 *	  transaction id (the backends' status in shared memory, read before
 *	  the claim's snapshot is taken), and at most the claim's own now();
 *	- a transaction that gets its transaction id only after that reading
 *	  stamps, from 1.5, place_order's events with clock_timestamp(), and
 *	  the other writers write first and stamp now(), within milliseconds
 *	  of their start: t stays FT_CLAIM_FLOOR_LAG_MS below both bounds.
 *
 * The new floor is published when the claim commits (a transaction
 * callback), never when it aborts.
 *
 * What these rules cannot see (a transaction that ran read-only for longer
 * than the lag before writing an event due at its start, a prepared
 * transaction, an event locked without being changed by a function that
 * then commits, a claim that aborted after another claim passed its rows,
 * a clock set back) lies below the floor: the launcher's sweep finds it.
 * The sweep reads the least next_attempt_at below the floor, and if there
 * is one, lowers the floor to it (generation + 1, so that no claim that
 * started before raises it again from what it saw) and wakes the workers.
 * The sweep's own scan walks what the claims no longer walk, so it runs at
 * most every FT_CLAIM_SWEEP_MIN_MS and waits FT_CLAIM_SWEEP_DUTY times as
 * long as it took: a held snapshot slows the sweep, never the claims.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/spin.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "claim_floor.h"
#include "compat.h"
#include "shmem.h"
#include "worker.h"

/* the least next_attempt_at below the floor $1: an event no claim sees */
static const char *const ft_sweep_sql =
"SELECT min(next_attempt_at) FROM ft_orders.outbox WHERE next_attempt_at < $1";

/* this worker's claim in progress */
static TimestampTz ft_scan_from = DT_NOBEGIN;	/* the floor it started at */
static TimestampTz ft_bound = DT_NOBEGIN;	/* how far it may raise it */
static uint64 ft_generation = 0;	/* of the floor it started at */
static bool ft_pending = false; /* a floor to publish at commit */
static TimestampTz ft_pending_floor = DT_NOBEGIN;
static bool ft_callback_registered = false;

/* publish the pending floor when the claim commits, forget it otherwise */
static void
ft_claim_floor_xact_callback(XactEvent event, void *arg)
{
	FtClaimFloor *f;

	if (!ft_pending)
		return;
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			f = &ft_db->claim_floor;
			SpinLockAcquire(&f->mutex);
			if (f->generation == ft_generation && ft_pending_floor > f->floor)
				f->floor = ft_pending_floor;
			SpinLockRelease(&f->mutex);
			ft_pending = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			ft_pending = false;
			break;
		default:
			break;
	}
}

/* the floor and its generation, as they are now */
static TimestampTz
ft_claim_floor_read(uint64 *generation)
{
	FtClaimFloor *f = &ft_db->claim_floor;
	TimestampTz floor;

	SpinLockAcquire(&f->mutex);
	floor = f->floor;
	*generation = f->generation;
	SpinLockRelease(&f->mutex);
	return floor;
}

/*
 * Lower the floor to at most floor (DT_NOBEGIN: none) and tell claims in
 * progress not to raise it from what they saw.
 */
static void
ft_claim_floor_lower(TimestampTz floor)
{
	FtClaimFloor *f = &ft_db->claim_floor;

	SpinLockAcquire(&f->mutex);
	if (floor < f->floor)
		f->floor = floor;
	f->generation++;
	SpinLockRelease(&f->mutex);
}

/*
 * How far a claim starting now may raise the floor: the oldest start of a
 * transaction of this database that holds a transaction id, this claim's
 * now() if that is earlier, less the lag.  DT_NOBEGIN (raise nothing) when
 * a transaction holding an id has no known start (track_activities off).
 * The backends' status is read from shared memory, not from a table: read
 * before the claim's statement, it is read before that statement's
 * snapshot is taken.
 */
static TimestampTz
ft_claim_floor_bound(void)
{
	TimestampTz bound = GetCurrentTransactionStartTimestamp();
	int			n;

	/* as of now, not as cached earlier in this transaction */
	pgstat_clear_backend_activity_snapshot();
	n = pgstat_fetch_stat_numbackends();
	for (int i = 1; i <= n; i++)
	{
		LocalPgBackendStatus *local = ft_local_beentry(i);
		TimestampTz start;

		if (local == NULL ||
			local->backendStatus.st_databaseid != MyDatabaseId ||
			!TransactionIdIsValid(local->backend_xid))
			continue;
		start = local->backendStatus.st_xact_start_timestamp;
		if (start == 0)
		{
			bound = DT_NOBEGIN;
			break;
		}
		bound = Min(bound, start);
	}
	pgstat_clear_backend_activity_snapshot();
	if (bound == DT_NOBEGIN)
		return bound;
	return TimestampTzPlusMilliseconds(bound, -FT_CLAIM_FLOOR_LAG_MS);
}

/*
 * Start a claim: read how far this claim may raise the floor, then the
 * floor itself, which is returned: the claim locks due events with
 * next_attempt_at >= it (DT_NOBEGIN: all).  Call before the claim's
 * statement, inside its transaction (ft_xact_begin).
 */
TimestampTz
ft_claim_floor_start(void)
{
	if (!ft_callback_registered)
	{
		RegisterXactCallback(ft_claim_floor_xact_callback, NULL);
		ft_callback_registered = true;
	}
	ft_pending = false;
	ft_bound = ft_claim_floor_bound();

	ft_scan_from = ft_claim_floor_read(&ft_generation);
	if (ft_scan_from > GetCurrentTransactionStartTimestamp())
	{
		/*
		 * The floor is ahead of this claim's clock: the clock went back
		 * since it was set.  Start over from the head of the index.
		 */
		ft_claim_floor_lower(DT_NOBEGIN);
		ft_scan_from = ft_claim_floor_read(&ft_generation);
	}
	return ft_scan_from;
}

/*
 * The claim's statement locked nlocked events (of at most limit), the last
 * of them (the latest next_attempt_at) stamped last.  Remember the floor
 * this claim may publish when it commits.
 */
void
ft_claim_floor_scanned(int nlocked, int limit, TimestampTz last)
{
	TimestampTz floor = ft_bound;

	/* a full batch: what lies beyond its last event was not looked at */
	if (nlocked >= limit && last < floor)
		floor = last;
	if (floor <= ft_scan_from)
		return;
	ft_pending_floor = floor;
	ft_pending = true;
}

/*
 * Forget the floor (launcher: at start and promotion, when it releases
 * every lease).  The next claim starts at the head of the index.
 */
void
ft_claim_floor_reset(void)
{
	ft_claim_floor_lower(DT_NOBEGIN);
}

/*
 * The launcher's sweep, when it is due at now: look for an event below the
 * floor and lower the floor to it.  Returns true when it did (the caller
 * wakes the workers).  Runs its own short read-only transaction; an error
 * is logged, not raised.
 */
bool
ft_claim_floor_sweep(TimestampTz now)
{
	static TimestampTz next_sweep = 0;
	MemoryContext oldcxt = CurrentMemoryContext;
	uint64		generation;
	TimestampTz floor;
	/* set inside PG_TRY, read after it */
	volatile TimestampTz straggler = DT_NOBEGIN;
	volatile bool found = false;
	long		secs;
	int			usecs;
	int64		took_ms;

	if (now < next_sweep)
		return false;
	floor = ft_claim_floor_read(&generation);
	if (floor == DT_NOBEGIN)
	{
		next_sweep = TimestampTzPlusMilliseconds(now, FT_CLAIM_SWEEP_MIN_MS);
		return false;
	}

	PG_TRY();
	{
		Oid			argtypes[1] = {TIMESTAMPTZOID};
		Datum		values[1];
		bool		isnull;
		Datum		d;
		int			rc;

		ft_xact_begin("ft_orders: claim floor sweep", true);
		values[0] = TimestampTzGetDatum(floor);
		/* planned each time: at most once a second, with the real floor */
		rc = SPI_execute_with_args(ft_sweep_sql, 1, argtypes, values, NULL,
								   true, 1);
		if (rc != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "reading the outbox below the claim floor failed: %s",
				 SPI_result_code_string(rc));
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (!isnull)
		{
			straggler = DatumGetTimestampTz(d);
			found = true;
		}
		ft_xact_commit();
	}
	PG_CATCH();
	{
		ft_xact_log_error(oldcxt);
		found = false;
	}
	PG_END_TRY();

	TimestampDifference(now, GetCurrentTimestamp(), &secs, &usecs);
	took_ms = (int64) secs * 1000 + usecs / 1000;
	next_sweep = TimestampTzPlusMilliseconds(now,
											 Max((int64) FT_CLAIM_SWEEP_MIN_MS,
												 took_ms * FT_CLAIM_SWEEP_DUTY));
	if (!found)
		return false;
	ft_claim_floor_lower(straggler);
	ereport(DEBUG1,
			(errmsg("ft_orders: an outbox event due at %s lay below the claim floor %s; claims start there again",
					timestamptz_to_str(straggler), timestamptz_to_str(floor))));
	return true;
}

/*
 * ft_orders._claim_floor(): this database's claim floor, NULL when there is
 * none (or the database is not served).  Lock-free reading is not enough
 * for a 64-bit timestamp everywhere: under the spinlock.
 */
PG_FUNCTION_INFO_V1(ft_orders_claim_floor);

Datum
ft_orders_claim_floor(PG_FUNCTION_ARGS)
{
	FtDatabaseState *db = ft_shmem_my_database();
	TimestampTz floor;

	if (db == NULL)
		PG_RETURN_NULL();
	SpinLockAcquire(&db->claim_floor.mutex);
	floor = db->claim_floor.floor;
	SpinLockRelease(&db->claim_floor.mutex);
	if (floor == DT_NOBEGIN)
		PG_RETURN_NULL();
	PG_RETURN_TIMESTAMPTZ(floor);
}
