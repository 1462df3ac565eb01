/*-------------------------------------------------------------------------
 *
 * spi_plan.c
 *	  Statements prepared once per process and kept for its lifetime:
 *	  place_order and get_order in the backends, the outbox statements in
 *	  the payment workers and the launcher.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"

#include "spi_plan.h"

/*
 * Prepare sql (nargs parameters of argtypes) with cursor_options (0, or
 * CURSOR_OPT_GENERIC_PLAN for one generic plan that is never replanned
 * per value) and keep the plan out of the caller's SPI memory, so that it
 * outlives the transaction.  The caller is connected to SPI and stores the
 * result in a static pointer.  Raises an ERROR on failure.
 */
SPIPlanPtr
ft_prepare_kept(const char *sql, int nargs, Oid *argtypes, int cursor_options)
{
	SPIPlanPtr	plan = SPI_prepare_cursor(sql, nargs, argtypes, cursor_options);

	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "SPI_keepplan failed");
	return plan;
}
