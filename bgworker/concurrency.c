/*-------------------------------------------------------------------------
 *
 * concurrency.c
 *	  The adaptive in-flight limit (ft_orders.adaptive_concurrency): how
 *	  many requests each payment worker may have under way, between 1 and
 *	  ft_orders.max_in_flight (docs/design.md, "Adaptive concurrency").
 *
 * AIMD, as TCP and Netflix's concurrency-limits AIMDLimit do it, with a
 * latency signal in the manner of TCP Vegas:
 *
 *	- a 429 (the gateway says we send too much) halves the limit and
 *	  stops its growth for FT_AC_HOLD_MS; every 429 counts, so a burst of
 *	  them brings the limit down at once;
 *	- a 503, a timeout, or a slow reply takes 10 % off, at most once per
 *	  round trip: only a request sent after the last such decrease may
 *	  cause the next one.  A reply is slow when both it and the smoothed
 *	  latency (an average with weight 1/FT_AC_SMOOTHING for each new
 *	  reply, as TCP's SRTT) exceed the least latency of the last
 *	  FT_AC_BASELINE_MS to 2 * FT_AC_BASELINE_MS by a factor of
 *	  FT_AC_LATENCY_FACTOR and by FT_AC_LATENCY_SLACK_MS: the odd late
 *	  reply of a worker busy in its SQL step on a loaded server moves the
 *	  average little, a gateway that slows down moves it within a few
 *	  replies.  A 503 may be
 *	  overload or a flaky backend, and halving on random failures would
 *	  bring the limit down to 1 for a gateway that fails 20 % of the time
 *	  (as random losses do to TCP); a 503 that means it says so with
 *	  Retry-After, which pauses every worker (admission.c);
 *	- any other reply makes it grow: by 1 per reply (doubling every round
 *	  trip) up to the limit where the last overload was seen, by 1/limit
 *	  per reply (1 per round trip) above it.  Once FT_AC_HOLD_MS pass
 *	  without a 429, doubling is allowed up to max_in_flight
 *	  again, so a healthy gateway gets the full limit back within a few
 *	  round trips.
 *
 * The limit starts at max_in_flight: a gateway that keeps up is never
 * slowed down.  One limit is shared by all workers (it describes the
 * gateway); each worker applies it to its own requests.  State in
 * ft_db->gateway under ft_db->lock, updated with each batch of
 * completions; the rounded value is also published in an atomic that
 * workers read without the lock before each claim.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "port/atomics.h"
#include "utils/timestamp.h"

#include "guc.h"
#include "shmem.h"
#include "worker.h"

#define FT_AC_OVERLOAD_FACTOR	0.5 /* on a 429 */
#define FT_AC_SLOW_FACTOR		0.9 /* on a 503, a timeout or a slow reply */
#define FT_AC_HOLD_MS			5000	/* no growth after an overload */
#define FT_AC_BASELINE_MS		10000	/* period of the least latency */
#define FT_AC_LATENCY_FACTOR	2.0
#define FT_AC_LATENCY_SLACK_MS	100.0
#define FT_AC_SMOOTHING			16.0	/* weight 1/16 per reply */

/*
 * The in-flight limit a worker applies now (lock-free).
 */
int
ft_concurrency_limit(void)
{
	uint32		v;

	if (!ft_adaptive_concurrency)
		return ft_max_in_flight;
	v = pg_atomic_read_u32(&ft_db->concurrency_limit_now);
	if (v == 0 || v > (uint32) ft_max_in_flight)
		return ft_max_in_flight;
	return (int) v;
}

/*
 * Feed one completed request into the limit.  Caller holds
 * ft_db->lock exclusively.
 */
void
ft_concurrency_report_locked(const FtJob *job, TimestampTz now)
{
	FtGatewayStats *gw = &ft_db->gateway;
	double		max = (double) ft_max_in_flight;
	double		limit = gw->concurrency_limit;
	double		baseline;
	bool		overload = (job->http_status == 429);
	bool		slow;

	if (!ft_adaptive_concurrency)
	{
		/* off: start from max_in_flight when it is turned on again */
		gw->concurrency_limit = 0;
		gw->overload_at = 0;
		pg_atomic_write_u32(&ft_db->concurrency_limit_now, 0);
		return;
	}
	if (limit <= 0 || limit > max)
		limit = max;
	if (gw->slow_start_until <= 0 || gw->slow_start_until > max)
		gw->slow_start_until = max;

	/* the least latency of this period and of the one before */
	if (gw->rtt_period_start == 0 ||
		TimestampDifferenceExceeds(gw->rtt_period_start, now, FT_AC_BASELINE_MS))
	{
		gw->rtt_min_previous = gw->rtt_min_current;
		gw->rtt_min_current = 0;
		gw->rtt_period_start = now;
	}
	if (job->http_status > 0 && job->http_status != 429 &&
		job->http_status != 503 && job->latency_ms > 0 &&
		(gw->rtt_min_current == 0 || job->latency_ms < gw->rtt_min_current))
		gw->rtt_min_current = (float4) job->latency_ms;
	baseline = gw->rtt_min_current;
	if (gw->rtt_min_previous > 0 && (baseline == 0 || gw->rtt_min_previous < baseline))
		baseline = gw->rtt_min_previous;
	if (job->http_status > 0 && job->latency_ms > 0)
		gw->rtt_smoothed = (gw->rtt_smoothed <= 0) ? (float4) job->latency_ms :
			(float4) (gw->rtt_smoothed +
					  (job->latency_ms - gw->rtt_smoothed) / FT_AC_SMOOTHING);

	slow = job->timed_out || job->http_status == 503;
	if (!slow && job->http_status > 0 && baseline > 0)
	{
		double		bound = Max(baseline * FT_AC_LATENCY_FACTOR,
								baseline + FT_AC_LATENCY_SLACK_MS);

		slow = (job->latency_ms > bound && gw->rtt_smoothed > bound);
	}

	if (overload)
	{
		limit = Max(1.0, limit * FT_AC_OVERLOAD_FACTOR);
		gw->overload_at = now;
		gw->slow_start_until = limit;
	}
	else if (slow)
	{
		if (job->started_at >= gw->decreased_at)
		{
			limit = Max(1.0, limit * FT_AC_SLOW_FACTOR);
			gw->decreased_at = now;
		}
	}
	else if (gw->overload_at == 0 ||
			 TimestampDifferenceExceeds(gw->overload_at, now, FT_AC_HOLD_MS))
	{
		if (gw->overload_at != 0)
		{
			gw->overload_at = 0;
			gw->slow_start_until = max;
		}
		limit += (limit < gw->slow_start_until) ? 1.0 : 1.0 / limit;
		limit = Min(limit, max);
	}

	gw->concurrency_limit = limit;
	pg_atomic_write_u32(&ft_db->concurrency_limit_now,
						(uint32) Max(1.0, floor(limit)));
}
