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
 */
void
ft_xact_begin(const char *activity)
{
	ft_caller_cxt = CurrentMemoryContext;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
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
