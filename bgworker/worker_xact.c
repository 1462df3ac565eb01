/*-------------------------------------------------------------------------
 *
 * worker_xact.c
 *	  The short transactions of the launcher and the payment workers.
 *
 * A background worker runs no transaction of its own between statements;
 * each SQL step (claim and record, release leases, maintenance, checking
 * that the extension is installed) runs in one short transaction opened
 * by ft_xact_begin and committed by ft_xact_commit, with SPI connected and
 * a snapshot pushed in between.  No transaction is ever open while HTTP
 * runs.  An ERROR in between aborts the transaction as usual (the worker
 * exits, the launcher's maintenance catches it).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "pgstat.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "worker.h"

/* memory context of ft_xact_begin's caller, restored at commit */
static MemoryContext ft_caller_cxt = NULL;

/*
 * Start a transaction, connect to SPI and push a snapshot; activity is
 * what pg_stat_activity shows meanwhile.  The caller's memory context is
 * current again after ft_xact_commit (a commit would otherwise leave
 * TopMemoryContext current).
 *
 * async: commit with synchronous_commit = off (SET LOCAL), for writes
 * whose loss only makes work due again (records, releases, maintenance).
 * Otherwise the commit follows the server's own synchronous_commit: a
 * claim waits for the WAL flush and, with synchronous_standby_names set,
 * for the synchronous standby (payment_worker.c says why).
 */
void
ft_xact_begin(const char *activity, bool async)
{
	ft_caller_cxt = CurrentMemoryContext;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (async)
		ft_xact_set_async();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

/* this transaction commits with synchronous_commit = off (SET LOCAL) */
void
ft_xact_set_async(void)
{
	(void) set_config_option("synchronous_commit", "off",
							 PGC_SUSET, PGC_S_SESSION, GUC_ACTION_LOCAL,
							 true, 0, false);
}

/* Finish SPI, commit, report the statistics and go back to idle. */
void
ft_xact_commit(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	MemoryContextSwitchTo(ft_caller_cxt);
}

/*
 * In the PG_CATCH of work whose failure is only logged (the launcher's
 * maintenance and claim floor sweep): report the error, abort the
 * transaction, go back to idle in the caller's memory context cxt.
 */
void
ft_xact_log_error(MemoryContext cxt)
{
	MemoryContextSwitchTo(cxt);
	EmitErrorReport();
	FlushErrorState();
	AbortCurrentTransaction();
	pgstat_report_activity(STATE_IDLE, NULL);
}
