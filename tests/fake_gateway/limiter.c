/*-------------------------------------------------------------------------
 *
 * limiter.c
 *	  Server-side limits of POST /payments (faults "rate_limit_per_s" and
 *	  "max_concurrency") and the log of the requests they turned away.
 *
 * The rate limit is a token bucket of rate_limit_per_s tokens per second
 * holding at most rate_limit_per_s tokens, full when the limit is set or
 * changed: at most N + N * t requests pass in any t seconds, as with
 * Stripe's limiter.  The concurrency limit counts requests from their
 * arrival (before any latency_ms wait) to their reply.  A request beyond
 * either gets 429 with a Retry-After of the whole seconds until a token
 * is due (at least 1).  Each is logged with its arrival time and key
 * (GET /ledger/limited), so that a test can count the 429s per second.
 *
 * tests/fake_gateway/limiter.c
 *
 *-------------------------------------------------------------------------
 */
#include <pthread.h>

#include "limiter.h"
#include "textlog.h"

static pthread_mutex_t limiter_lock = PTHREAD_MUTEX_INITIALIZER;
static int	bucket_rate;		/* the rate the bucket was filled for */
static double tokens;
static int64_t refilled_us;
static int	in_progress;		/* admitted, not answered yet */

/* GET /ledger/limited */
static FtTextLog limited_log = FT_TEXTLOG_INIT("limited");

/*
 * May a new /payments request go on?  If so it counts as in progress
 * until ft_limiter_done().  If not, *retry_after_s says when to come back.
 */
bool
ft_limiter_admit(int rate_per_s, int max_concurrency, int64_t now_us,
				 int *retry_after_s)
{
	bool		ok = true;

	*retry_after_s = 1;
	pthread_mutex_lock(&limiter_lock);
	if (rate_per_s > 0)
	{
		if (bucket_rate != rate_per_s)
		{
			bucket_rate = rate_per_s;
			tokens = rate_per_s;
		}
		else if (now_us > refilled_us)
			tokens += (double) rate_per_s * (now_us - refilled_us) / 1e6;
		if (tokens > rate_per_s)
			tokens = rate_per_s;
		refilled_us = now_us;
		if (tokens < 1.0)
		{
			double		wait_s = (1.0 - tokens) / rate_per_s;

			*retry_after_s = (int) wait_s + 1;
			ok = false;
		}
	}
	else
		bucket_rate = 0;
	if (ok && max_concurrency > 0 && in_progress >= max_concurrency)
		ok = false;
	if (ok)
	{
		if (rate_per_s > 0)
			tokens -= 1.0;
		in_progress++;
	}
	pthread_mutex_unlock(&limiter_lock);
	return ok;
}

/* An admitted request was answered (or its connection ended). */
void
ft_limiter_done(void)
{
	pthread_mutex_lock(&limiter_lock);
	if (in_progress > 0)
		in_progress--;
	pthread_mutex_unlock(&limiter_lock);
}

/* Log a request turned away: "<arrival_us> <key>". */
void
ft_limiter_log(int64_t arrival_us, const char *key)
{
	ft_textlog_append(&limited_log, "%lld %s\n", (long long) arrival_us, key);
}

/* GET /ledger/limited, in a malloc'd buffer (freed by the reply). */
char *
ft_limiter_log_text(size_t *len)
{
	return ft_textlog_copy(&limited_log, len);
}

/* DELETE /ledger: forget the log (the limits keep their state). */
void
ft_limiter_clear(void)
{
	ft_textlog_clear(&limited_log);
}
