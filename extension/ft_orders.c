/*-------------------------------------------------------------------------
 *
 * ft_orders.c
 *	  Module magic and _PG_init of ft_orders.
 *
 * _PG_init defines the settings, and when the library is preloaded it
 * reserves shared memory and registers the launcher background worker
 * (bgworker/launcher.c), which starts the payment workers.  Loaded on
 * demand in a backend it only defines the settings and the commit hook.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"

#include "guc.h"
#include "shmem.h"
#include "wakeup.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

static void
ft_register_launcher(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	/* consistent state: the launcher also runs on a hot standby and waits */
	worker.bgw_start_time = BgWorkerStart_ConsistentState;
	worker.bgw_restart_time = 1;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "ft_orders");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "ft_orders_launcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "ft_orders launcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "ft_orders launcher");
	worker.bgw_main_arg = (Datum) 0;
	worker.bgw_notify_pid = 0;
	RegisterBackgroundWorker(&worker);
}

void
_PG_init(void)
{
	ft_define_gucs();
	ft_wakeup_init();

	if (!process_shared_preload_libraries_in_progress)
		return;

	ft_shmem_install_hooks();
	ft_register_launcher();
}
