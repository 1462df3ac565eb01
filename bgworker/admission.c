/*-------------------------------------------------------------------------
 *
 * admission.c
 *	  When may the next request go to the gateway: the shared pause set by
 *	  a Retry-After of the gateway as a whole, and the token bucket of
 *	  ft_orders.rate_limit (docs/reference.md, "Gateway limits").
 *
 * Both are shared by every payment worker, of every database of
 * ft_orders.database (they all charge one gateway account, and it is the
 * account that the gateway limits and pauses), and by every kind of
 * request a worker sends (payments now; refunds and look-ups use the same call):
 * before a request leaves, its worker asks ft_admission_take() for it.
 * The answer is how many of the wanted requests may leave now, and, when
 * none may, the time at which to ask again; the worker then sleeps on its
 * latch until that time (no busy waiting).  Tokens taken for requests
 * that in the end were not sent go back with ft_admission_give_back().
 *
 * The bucket holds at most rate_limit_burst tokens (0: the rate, rounded
 * up) and gains rate_limit tokens per second; it starts full.  A request
 * takes one token.  So in any interval of t seconds at most
 * burst + rate * t requests leave, whatever the number of workers.
 *
 * The pause is for the gateway as a whole: a 429 (the account's limit)
 * or a 503 while most requests get one (FT_PAUSE_UNAVAILABLE_SHARE of the
 * smoothed share kept by concurrency.c: a gateway unavailable as a
 * whole).  A 503 of a gateway that answers the other requests well is a
 * flaky backend: its Retry-After delays that order only.
 *
 * The state is in ft_shared->limits under its spinlock: the critical
 * sections are a handful of arithmetic operations, with no call that could
 * raise an error.  Each database counts its own workers' waits
 * (ft_db->throttled).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "storage/spin.h"
#include "utils/timestamp.h"

#include "gateway_limits.h"
#include "guc.h"
#include "shmem.h"
#include "worker.h"

/* share of 503 replies above which a 503's Retry-After pauses everyone */
#define FT_PAUSE_UNAVAILABLE_SHARE	0.5

/* the bucket's size for the current settings */
static double
ft_admission_burst(void)
{
	if (ft_rate_limit_burst > 0)
		return (double) ft_rate_limit_burst;
	return Max(1.0, ceil(ft_rate_limit));
}

/*
 * How many of wanted requests (> 0) may go to the gateway now.  The
 * granted ones are counted as sent.  When none may, *retry_at is set to
 * the time when one may (the end of the pause, or the next token), and
 * the wait is counted in the throttled figure.
 */
int
ft_admission_take(int wanted, TimestampTz now, TimestampTz *retry_at)
{
	volatile FtGatewayLimits *lim = &ft_shared->limits;
	double		rate = ft_rate_limit;
	double		burst = ft_admission_burst();
	int			granted;

	*retry_at = 0;
	if (wanted <= 0)
		return 0;

	SpinLockAcquire(&lim->mutex);
	if (lim->paused_until > now)
	{
		granted = 0;
		*retry_at = lim->paused_until;
	}
	else if (rate <= 0)
	{
		/* no limit: the bucket starts full when one is set */
		granted = wanted;
		lim->refilled_at = 0;
	}
	else
	{
		if (lim->refilled_at == 0 || now < lim->refilled_at)
			lim->tokens = (lim->refilled_at == 0) ? burst : lim->tokens;
		else
			lim->tokens += rate * (double) (now - lim->refilled_at) / USECS_PER_SEC;
		lim->tokens = Min(lim->tokens, burst);
		lim->refilled_at = now;

		granted = (int) Min((double) wanted, floor(lim->tokens));
		if (granted > 0)
			lim->tokens -= granted;
		else
			*retry_at = now + (TimestampTz) ceil((1.0 - lim->tokens) / rate *
												 USECS_PER_SEC);
	}
	SpinLockRelease(&lim->mutex);
	if (granted == 0)
		pg_atomic_fetch_add_u64(&ft_db->throttled, 1);
	return granted;
}

/*
 * Give back n tokens taken by ft_admission_take for requests that were
 * not sent after all (the claim found less work).
 */
void
ft_admission_give_back(int n)
{
	volatile FtGatewayLimits *lim = &ft_shared->limits;

	if (n <= 0 || ft_rate_limit <= 0)
		return;
	SpinLockAcquire(&lim->mutex);
	if (lim->refilled_at != 0)
		lim->tokens = Min(lim->tokens + n, ft_admission_burst());
	SpinLockRelease(&lim->mutex);
}

/*
 * Does a Retry-After that came with this status ask every worker to wait
 * (true), or only the order that got it (false)?  Lock-free: a float read
 * of the share, updated with each batch of completions.
 */
bool
ft_admission_pause_is_shared(int http_status)
{
	if (http_status == 429)
		return true;
	if (http_status == 503)
		return ft_db->gateway.unavailable_share > FT_PAUSE_UNAVAILABLE_SHARE;
	return false;
}

/*
 * The end of the shared pause when one is on at now, else 0.  A worker
 * asks again right before sending what it claimed: a pause that began
 * while its claim ran (another worker's 429) holds those requests too.
 */
TimestampTz
ft_admission_paused_until(TimestampTz now)
{
	volatile FtGatewayLimits *lim = &ft_shared->limits;
	TimestampTz until;

	SpinLockAcquire(&lim->mutex);
	until = lim->paused_until;
	SpinLockRelease(&lim->mutex);
	return (until > now) ? until : 0;
}

/*
 * The gateway as a whole asked for a pause: no request
 * of any worker leaves before until.  A later pause extends an earlier
 * one, never shortens it.
 */
void
ft_admission_pause(TimestampTz until)
{
	volatile FtGatewayLimits *lim = &ft_shared->limits;

	SpinLockAcquire(&lim->mutex);
	if (until > lim->paused_until)
		lim->paused_until = until;
	SpinLockRelease(&lim->mutex);
}
