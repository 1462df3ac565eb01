/*-------------------------------------------------------------------------
 *
 * spi_plan.h
 *	  Statements prepared once per process and kept (SPI_keepplan).
 *
 *-------------------------------------------------------------------------
 */
#ifndef FT_SPI_PLAN_H
#define FT_SPI_PLAN_H

#include "executor/spi.h"

extern SPIPlanPtr ft_prepare_kept(const char *sql, int nargs, Oid *argtypes,
								  int cursor_options);

#endif							/* FT_SPI_PLAN_H */
