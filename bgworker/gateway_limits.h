/*-------------------------------------------------------------------------
 *
 * gateway_limits.h
 *	  What the circuit (circuit.c), the shared pause (admission.c) and the
 *	  adaptive limit (concurrency.c) ask of each other, beyond the calls
 *	  of worker.h.
 *
 *-------------------------------------------------------------------------
 */
#ifndef FT_GATEWAY_LIMITS_H
#define FT_GATEWAY_LIMITS_H

#include "datatype/timestamp.h"

/* admission.c: does a Retry-After with this status pause every worker? */
extern bool ft_admission_pause_is_shared(int http_status);
/* admission.c: the end of the shared pause if one is on at now, else 0 */
extern TimestampTz ft_admission_paused_until(TimestampTz now);

/* concurrency.c: slow start again (the circuit closed); under ft_db->lock */
extern void ft_concurrency_restart_locked(void);

#endif							/* FT_GATEWAY_LIMITS_H */
