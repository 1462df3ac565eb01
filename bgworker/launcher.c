/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  The ft_orders launcher: starts and supervises the payment workers,
 *	  releases the leases of dead workers, runs the periodic maintenance.
 *
 * Registered statically by _PG_init (restart after 1 s), one per database
 * of ft_orders.database; bgw_main_arg is the database's position in the
 * list, and of its block in shared memory (ft_db).  Each serves its own
 * database:
 *
 *	- The database may not exist yet (a fresh cluster): connecting to it
 *	  would FATAL every second.  So an incarnation that has not seen the
 *	  database connects to no database first, looks in pg_database every
 *	  second (one LOG with a hint), and when the database appears exits to
 *	  be restarted, this time connected to it (ft_db->launcher_db_seen).
 *	- DROP DATABASE of the database (extension/drop_database.c) sets
 *	  ft_db->dropping and stops us and our workers; we then wait for the
 *	  database again, connected to none, until the DROP is over.
 *	- If the extension is not installed there, it says so once at LOG and
 *	  looks again every second.
 *	- On a primary, before any worker may claim, it releases every lease
 *	  in the outbox: the workers that took them are gone (server start,
 *	  crash restart, promotion of a standby), and idempotency keys make a
 *	  re-send safe.  ft_db->leases_released tells the workers to go.
 *	  On a standby it looks every 250 ms whether it was promoted.
 *	- It starts ft_orders.workers dynamic payment workers, worker n in slot
 *	  n-1, and starts again one that stopped, a second later.  Workers left
 *	  over from an earlier incarnation of the launcher are stopped first.
 *	- Every 60 s on a primary: purge_expired_keys() and purge_history().
 *	- Every second or less often on a primary: the claim floor's sweep
 *	  (claim_floor.c), which wakes the workers when it finds an event
 *	  below the floor.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_database.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "claim_floor.h"
#include "guc.h"
#include "shmem.h"
#include "worker.h"

PGDLLEXPORT void ft_orders_launcher_main(Datum main_arg);

#define FT_LAUNCHER_POLL_MS		1000
#define FT_RESTART_DELAY_MS		1000
#define FT_MAINTENANCE_MS		60000
#define FT_STRAY_WAIT_MS		10000

static int	ft_db_index;		/* our database in ft_orders.database */
static BackgroundWorkerHandle *ft_worker_handle[FT_MAX_WORKERS];
static TimestampTz ft_worker_restart_at[FT_MAX_WORKERS];
static bool ft_register_failed_logged = false;

static int
ft_nworkers(void)
{
	return Min(Max(ft_workers, 0), FT_MAX_WORKERS);
}

/* SIGTERM: leave; exit code 1 so the postmaster starts us again if it lives */
static void
ft_launcher_check_signals(void)
{
	CHECK_FOR_INTERRUPTS();
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
		ft_report_timeouts();
	}
	if (ShutdownRequestPending)
		proc_exit(1);
}

static void
ft_launcher_sleep(long ms)
{
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 ms, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	ft_launcher_check_signals();
}

/*
 * Does database dbname exist?  Usable without a database connection: a
 * plain scan of the shared catalog pg_database, as the autovacuum
 * launcher does (the syscache needs a database).
 */
static bool
ft_database_exists(const char *dbname)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	bool		found = false;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (HeapTupleIsValid(tup = heap_getnext(scan, ForwardScanDirection)))
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);

		if (strcmp(NameStr(db->datname), dbname) == 0)
		{
			found = true;
			break;
		}
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return found;
}

/*
 * Connected to no database: wait until our database exists (and no DROP
 * DATABASE of it is under way), then exit to be restarted connected to
 * it.  Never returns.
 */
static void
ft_launcher_wait_for_database(const char *dbname)
{
	bool		hinted = false;

	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	for (;;)
	{
		if (!ft_db->dropping)
		{
			if (ft_database_exists(dbname))
			{
				ft_db->launcher_db_seen = true;
				proc_exit(1);	/* restarted in 1 s, then connects */
			}
			if (!hinted)
				ereport(LOG,
						(errcode(ERRCODE_UNDEFINED_DATABASE),
						 errmsg("ft_orders launcher: database \"%s\" does not exist yet; waiting",
								dbname),
						 errhint("Create the database and run CREATE EXTENSION ft_orders in it, or remove it from ft_orders.database.")));
			hinted = true;
		}
		ft_launcher_sleep(FT_LAUNCHER_POLL_MS);
	}
}

/* before_shmem_exit: we no longer hold a connection to the database */
static void
ft_launcher_on_exit(int code, Datum arg)
{
	if (LWLockHeldByMe(ft_db->lock))
		LWLockRelease(ft_db->lock);
	LWLockAcquire(ft_db->lock, LW_EXCLUSIVE);
	ft_db->launcher_pid = 0;
	LWLockRelease(ft_db->lock);
}

/*
 * Ask payment workers of an earlier launcher to stop (they release their
 * leases), and wait for their slots to empty.
 */
static void
ft_launcher_stop_strays(void)
{
	TimestampTz start = GetCurrentTimestamp();
	bool		any;

	do
	{
		any = false;
		LWLockAcquire(ft_db->lock, LW_SHARED);
		for (int i = 0; i < FT_MAX_WORKERS; i++)
		{
			pid_t		pid = ft_db->workers[i].pid;

			if (pid != 0)
			{
				any = true;
				(void) kill(pid, SIGTERM);
			}
		}
		LWLockRelease(ft_db->lock);
		if (any)
			ft_launcher_sleep(100);
	} while (any && !TimestampDifferenceExceeds(start, GetCurrentTimestamp(),
												FT_STRAY_WAIT_MS));
}

static void
ft_launcher_wake_workers(void)
{
	for (int i = 0; i < ft_nworkers(); i++)
	{
		PGPROC	   *proc = ft_db->workers[i].proc;

		if (proc != NULL)
			SetLatch(&proc->procLatch);
	}
}

/*
 * Start (or restart, FT_RESTART_DELAY_MS after it stopped) every payment
 * worker that is not running.
 */
static void
ft_launcher_supervise(TimestampTz now)
{
	if (ft_db->dropping)
		return;					/* SIGTERM follows: the database goes away */
	for (int i = 0; i < ft_nworkers(); i++)
	{
		BackgroundWorker worker;
		pid_t		pid;

		if (ft_worker_handle[i] != NULL)
		{
			BgwHandleStatus status = GetBackgroundWorkerPid(ft_worker_handle[i], &pid);

			if (status == BGWH_POSTMASTER_DIED)
				proc_exit(1);
			if (status != BGWH_STOPPED)
				continue;
			pfree(ft_worker_handle[i]);
			ft_worker_handle[i] = NULL;
			ft_worker_restart_at[i] = TimestampTzPlusMilliseconds(now, FT_RESTART_DELAY_MS);
			continue;
		}
		if (now < ft_worker_restart_at[i])
			continue;

		memset(&worker, 0, sizeof(worker));
		worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
		worker.bgw_start_time = BgWorkerStart_ConsistentState;
		worker.bgw_restart_time = BGW_NEVER_RESTART;
		snprintf(worker.bgw_library_name, BGW_MAXLEN, "ft_orders");
		snprintf(worker.bgw_function_name, BGW_MAXLEN, "ft_orders_payment_worker_main");
		snprintf(worker.bgw_name, BGW_MAXLEN, "ft_orders payment worker %d for database %s",
				 i + 1, NameStr(ft_db->dbname));
		snprintf(worker.bgw_type, BGW_MAXLEN, "ft_orders payment worker");
		worker.bgw_main_arg = Int32GetDatum(ft_worker_main_arg(ft_db_index, i));
		worker.bgw_notify_pid = MyProcPid;

		if (!RegisterDynamicBackgroundWorker(&worker, &ft_worker_handle[i]))
		{
			ft_worker_handle[i] = NULL;
			ft_worker_restart_at[i] = TimestampTzPlusMilliseconds(now, 5 * FT_RESTART_DELAY_MS);
			if (!ft_register_failed_logged)
				ereport(WARNING,
						(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
						 errmsg("could not start ft_orders payment worker %d", i + 1),
						 errhint("Raise max_worker_processes: ft_orders needs ft_orders.workers + 1 background workers per database of ft_orders.database.")));
			ft_register_failed_logged = true;
		}
	}
}

/* purge_expired_keys() and purge_history(); an error is logged, not fatal */
static void
ft_launcher_maintenance(void)
{
	MemoryContext oldcxt = CurrentMemoryContext;

	PG_TRY();
	{
		int			rc;

		/* async (as all the launcher writes): a lost purge runs again */
		ft_xact_begin("ft_orders: maintenance", true);
		rc = SPI_execute("SELECT ft_orders.purge_expired_keys(), ft_orders.purge_history()",
						 false, 0);
		if (rc != SPI_OK_SELECT)
			elog(ERROR, "ft_orders maintenance failed: %s", SPI_result_code_string(rc));
		ft_xact_commit();
	}
	PG_CATCH();
	{
		ft_xact_log_error(oldcxt);
	}
	PG_END_TRY();
}

void
ft_orders_launcher_main(Datum main_arg)
{
	bool		hinted = false;
	bool		released = false;
	TimestampTz next_maintenance = 0;
	const char *dbname;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();

	ft_db_index = DatumGetInt32(main_arg);
	if (ft_db_index < 0 || ft_db_index >= ft_shared->ndatabases)
		elog(ERROR, "ft_orders launcher started for database %d of %d",
			 ft_db_index, ft_shared->ndatabases);
	ft_db = &ft_shared->db[ft_db_index];
	dbname = NameStr(ft_db->dbname);

	if (!ft_db->launcher_db_seen || ft_db->dropping)
		ft_launcher_wait_for_database(dbname);
	/* a FATAL while connecting (database dropped) makes us look again */
	ft_db->launcher_db_seen = false;
	BackgroundWorkerInitializeConnection(dbname, NULL, 0);
	ft_db->launcher_db_seen = true;
	LWLockAcquire(ft_db->lock, LW_EXCLUSIVE);
	ft_db->launcher_pid = MyProcPid;
	LWLockRelease(ft_db->lock);
	before_shmem_exit(ft_launcher_on_exit, (Datum) 0);
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);

	ft_db->leases_released = false;
	ft_launcher_stop_strays();

	LWLockAcquire(ft_db->lock, LW_EXCLUSIVE);
	for (int i = 0; i < ft_nworkers(); i++)
		ft_db->workers[i].in_use = true;
	LWLockRelease(ft_db->lock);

	ereport(LOG,
			(errmsg("ft_orders launcher started for database \"%s\" with %d payment worker(s)",
					dbname, ft_nworkers())));
	ft_report_timeouts();

	for (;;)
	{
		bool		in_recovery = RecoveryInProgress();
		bool		ready;
		int64		nreleased = 0;
		TimestampTz now;

		/*
		 * async: lost releases are simply redone at the next start; and
		 * the launcher never waits for a synchronous standby, so SIGTERM
		 * (SignalHandlerForShutdownRequest) always stops it.
		 */
		ft_xact_begin("ft_orders: launcher", true);
		ready = ft_schema_installed();
		if (ready && !in_recovery && !released)
			nreleased = ft_outbox_release_all_leases();
		ft_xact_commit();

		if (ready && !in_recovery && !released)
		{
			released = true;
			/* new leases, new claims: they start at the head of the index */
			ft_claim_floor_reset();
			ft_db->leases_released = true;
			if (nreleased > 0)
				ereport(LOG,
						(errmsg("ft_orders launcher released %lld outbox lease(s) of stopped payment workers",
								(long long) nreleased)));
			ft_launcher_wake_workers();
		}

		now = GetCurrentTimestamp();
		if (!ready)
		{
			if (!hinted)
				ereport(LOG,
						(errcode(ERRCODE_UNDEFINED_OBJECT),
						 errmsg("extension \"ft_orders\" is not installed in database \"%s\"; payment workers wait",
								dbname),
						 errhint("Run CREATE EXTENSION ft_orders in database \"%s\".",
								 dbname)));
			hinted = true;
		}
		else
		{
			hinted = false;
			ft_launcher_supervise(now);
			if (!in_recovery && released && ft_claim_floor_sweep(now))
				ft_launcher_wake_workers();
			if (!in_recovery && now >= next_maintenance)
			{
				if (next_maintenance != 0)
					ft_launcher_maintenance();
				next_maintenance = TimestampTzPlusMilliseconds(now, FT_MAINTENANCE_MS);
			}
		}

		ft_launcher_sleep(in_recovery ? FT_STANDBY_POLL_MS : FT_LAUNCHER_POLL_MS);
	}
}
