/*-------------------------------------------------------------------------
 *
 * errcodes.h
 *	  SQLSTATE codes of ft_orders that PostgreSQL does not define itself.
 *
 * Class FT is ours.  Everything else ft_orders raises uses the standard
 * codes from utils/errcodes.h (22023, 22004, 25006, ...).
 *
 *-------------------------------------------------------------------------
 */
#ifndef FT_ERRCODES_H
#define FT_ERRCODES_H

#include "utils/elog.h"

/* idempotency key reused with different parameters */
#define ERRCODE_FT_IDEMPOTENCY_MISMATCH		MAKE_SQLSTATE('F','T','4','0','9')

#endif							/* FT_ERRCODES_H */
