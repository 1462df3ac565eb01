/*-------------------------------------------------------------------------
 *
 * claim_floor.h
 *	  Where a claim starts in the outbox's next_attempt_at index
 *	  (claim_floor.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef FT_CLAIM_FLOOR_H
#define FT_CLAIM_FLOOR_H

#include "datatype/timestamp.h"

/*
 * How far behind the claims' own clock the floor stays, for writers whose
 * transaction had no transaction id yet when a claim looked (claim_floor.c).
 */
#define FT_CLAIM_FLOOR_LAG_MS		1000

/*
 * The sweep for events below the floor runs at most every
 * FT_CLAIM_SWEEP_MIN_MS, and waits FT_CLAIM_SWEEP_DUTY times as long as
 * its last run took, so that it uses at most a twentieth of one core.
 */
#define FT_CLAIM_SWEEP_MIN_MS		1000
#define FT_CLAIM_SWEEP_DUTY			20

/* payment workers, inside the claim's transaction */
extern TimestampTz ft_claim_floor_start(void);
extern void ft_claim_floor_scanned(int nlocked, int limit, TimestampTz last);

/* the launcher */
extern void ft_claim_floor_reset(void);
extern bool ft_claim_floor_sweep(TimestampTz now);

#endif							/* FT_CLAIM_FLOOR_H */
