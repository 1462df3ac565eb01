/*-------------------------------------------------------------------------
 *
 * drop_database.c
 *	  DROP DATABASE of a database that ft_orders serves.
 *
 * The launcher and the payment workers of a listed database stay connected
 * to it, so a plain DROP DATABASE would fail ("being accessed by other
 * users").  A ProcessUtility hook asks them to leave first
 * (ft_shmem_stop_database): the workers release their leases and exit, the
 * launcher waits for the database again without a connection.  After the
 * DROP, done or failed, the launcher looks again: it comes back at once if
 * the database is still there, and when it is created anew.
 *
 * Only a role that may drop the database stops its workers, and only for a
 * DROP that core would run (at top level, not the current database);
 * anyone else gets core's own error without our workers being disturbed.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "tcop/utility.h"

#include "compat.h"
#include "guc.h"
#include "shmem.h"
#include "drop_database.h"

static ProcessUtility_hook_type prev_process_utility = NULL;

static void
ft_run_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
			   ProcessUtilityContext context, ParamListInfo params,
			   QueryEnvironment *queryEnv, DestReceiver *dest,
			   QueryCompletion *qc)
{
	if (prev_process_utility)
		prev_process_utility(pstmt, queryString, readOnlyTree, context,
							 params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
}

/*
 * The database a DROP DATABASE statement would drop, if ft_orders serves
 * it and the drop can go ahead; NULL otherwise.
 */
static const char *
ft_served_database_to_drop(Node *parsetree, bool isTopLevel)
{
	DropdbStmt *stmt;
	Oid			dbid;

	if (!IsA(parsetree, DropdbStmt))
		return NULL;
	stmt = (DropdbStmt *) parsetree;
	if (ft_database_index(stmt->dbname) < 0)
		return NULL;

	/* core's own checks, raised now with core's own error */
	PreventInTransactionBlock(isTopLevel, "DROP DATABASE");
	dbid = get_database_oid(stmt->dbname, true);
	if (!OidIsValid(dbid) || dbid == MyDatabaseId ||
		!ft_database_ownercheck(dbid, GetUserId()))
		return NULL;
	return stmt->dbname;
}

static void
ft_process_utility(PlannedStmt *pstmt, const char *queryString,
				   bool readOnlyTree, ProcessUtilityContext context,
				   ParamListInfo params, QueryEnvironment *queryEnv,
				   DestReceiver *dest, QueryCompletion *qc)
{
	const char *dbname;

	dbname = ft_served_database_to_drop(pstmt->utilityStmt,
										context == PROCESS_UTILITY_TOPLEVEL);
	if (dbname == NULL)
	{
		ft_run_utility(pstmt, queryString, readOnlyTree, context, params,
					   queryEnv, dest, qc);
		return;
	}

	ft_shmem_stop_database(dbname);
	PG_TRY();
	{
		ft_run_utility(pstmt, queryString, readOnlyTree, context, params,
					   queryEnv, dest, qc);
	}
	PG_FINALLY();
	{
		ft_shmem_release_database(dbname);
	}
	PG_END_TRY();
}

/* Called by _PG_init: chain our hook in front of any earlier one. */
void
ft_drop_database_install_hook(void)
{
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = ft_process_utility;
}
