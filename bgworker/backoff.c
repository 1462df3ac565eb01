/*-------------------------------------------------------------------------
 *
 * backoff.c
 *	  Delay before the next attempt of a transiently failed payment.
 *
 * Full jitter (docs/reference.md, "Settings"): random(0, min(backoff_max,
 * backoff_base * 2^(attempt-1))), so that a burst of failures does not come
 * back as a burst of retries.  A Retry-After from the gateway raises the
 * delay, never above backoff_max.  The base is compared with the cap
 * before shifting, so no attempt count or setting can overflow.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/pg_prng.h"
#include "miscadmin.h"

#include "utils/timestamp.h"

#include "guc.h"
#include "worker.h"

/* private generator: jitter needs no strength, only per-process variety */
static pg_prng_state ft_backoff_prng;
static bool ft_backoff_seeded = false;

/*
 * Milliseconds to wait before attempt number attempt + 1, given that
 * attempt (1-based) just failed.  retry_after_ms < 0 means none.
 */
int
ft_backoff_delay_ms(int attempt, int retry_after_ms)
{
	int64		cap = Max(ft_backoff_max_ms, 0);
	int64		ceiling;
	int64		delay;
	int			shift = Max(attempt, 1) - 1;

	/* base * 2^shift, or the cap if that would exceed it (never overflows) */
	ceiling = Max(ft_backoff_base_ms, 0);
	if (shift >= 32 || ceiling > (cap >> shift))
		ceiling = cap;
	else
		ceiling <<= shift;

	if (!ft_backoff_seeded)
	{
		if (!pg_prng_strong_seed(&ft_backoff_prng))
			pg_prng_seed(&ft_backoff_prng,
						 (uint64) MyProcPid ^ (uint64) GetCurrentTimestamp());
		ft_backoff_seeded = true;
	}
	delay = (ceiling > 0)
		? (int64) pg_prng_uint64_range(&ft_backoff_prng, 0, (uint64) ceiling)
		: 0;

	if (retry_after_ms > delay)
		delay = retry_after_ms;
	if (delay > cap)
		delay = cap;
	return (int) delay;
}
