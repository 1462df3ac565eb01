/*-------------------------------------------------------------------------
 *
 * ft_orders.c
 *	  Module magic and _PG_init of ft_orders.
 *
 * The library only works from shared_preload_libraries, as pg_cron and
 * pg_net do: its settings include postmaster-level ones (ft_orders.database,
 * ft_orders.workers), and without shared memory and workers an order would
 * never be paid.  Loaded any other way (CREATE EXTENSION or LOAD on a
 * server that does not preload it), _PG_init raises an ERROR saying so.
 * Preloaded, it defines the settings, installs the commit and DROP
 * DATABASE hooks, reserves shared memory and registers one launcher
 * background worker per database of ft_orders.database
 * (bgworker/launcher.c), which starts that database's payment workers.
 * Every process that runs ft_orders code therefore has ft_shared set,
 * except a server that pg_upgrade runs (see _PG_init).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"

#include "drop_database.h"
#include "guc.h"
#include "shmem.h"
#include "wakeup.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/* launcher i serves database i of ft_orders.database */
static void
ft_register_launcher(int i)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	/* consistent state: the launcher also runs on a hot standby and waits */
	worker.bgw_start_time = BgWorkerStart_ConsistentState;
	worker.bgw_restart_time = 1;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "ft_orders");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "ft_orders_launcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "ft_orders launcher for database %s",
			 ft_databases->names[i]);
	snprintf(worker.bgw_type, BGW_MAXLEN, "ft_orders launcher");
	worker.bgw_main_arg = Int32GetDatum(i);
	worker.bgw_notify_pid = 0;
	RegisterBackgroundWorker(&worker);
}

void
_PG_init(void)
{
	/*
	 * Under pg_upgrade (a server started with -b, old or new), do nothing,
	 * as pg_cron and pg_net do, and before the preload check:
	 *
	 * - pg_upgrade LOADs every library the old cluster's functions name into
	 *   the new server to check that it exists, and its restore of the
	 *   schema loads ours again for each CREATE FUNCTION ... LANGUAGE C; the
	 *   new cluster need not preload ft_orders for either, so neither may
	 *   raise the ERROR below.
	 * - No launcher or payment worker: in the old server, a payment
	 *   recorded while pg_upgrade dumps the schema would commit after
	 *   pg_upgrade has read the cluster's last transaction ID, and a request
	 *   sent then would pay an order the new cluster still sees as due; in
	 *   the new server, a worker connected to a database would be in the way
	 *   of the databases pg_upgrade creates and fills, with nothing to serve.
	 * - No settings, hooks or shared memory: nothing here needs them, and
	 *   ALTER DATABASE/ROLE ... SET ft_orders.* replayed by the restore is
	 *   kept as a placeholder, not checked against this server's values.
	 *
	 * Only pg_upgrade connects to such a server and it calls no ft_orders
	 * function, so ft_shared stays NULL there.  The workers start on the
	 * first normal start of the upgraded cluster and resume every order
	 * where the old cluster left it (tests/pg_upgrade/run.sh).
	 */
	if (IsBinaryUpgrade)
		return;

	if (!process_shared_preload_libraries_in_progress)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("ft_orders can only be loaded via shared_preload_libraries"),
				 errhint("Add ft_orders to shared_preload_libraries in postgresql.conf and restart the server.")));

	ft_define_gucs();
	ft_wakeup_init();
	ft_drop_database_install_hook();
	ft_shmem_install_hooks();

	/*
	 * A launcher that does not fit is only reported by the postmaster, as
	 * "too many background workers", without naming us: say it here.
	 */
	if (ft_databases->n * (ft_workers + 1) > max_worker_processes)
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("ft_orders needs %d background workers, but max_worker_processes is %d",
						ft_databases->n * (ft_workers + 1), max_worker_processes),
				 errdetail("ft_orders.database lists %d database(s), each served by a launcher and ft_orders.workers = %d payment worker(s).",
						   ft_databases->n, ft_workers),
				 errhint("Raise max_worker_processes to at least %d (plus what other extensions and parallel queries use) and restart the server.",
						 ft_databases->n * (ft_workers + 1))));
	for (int i = 0; i < ft_databases->n; i++)
		ft_register_launcher(i);
}
