/*-------------------------------------------------------------------------
 *
 * concurrency.c
 *	  The adaptive in-flight limit (ft_orders.adaptive_concurrency): how
 *	  many requests each payment worker may have under way, between 1 and
 *	  ft_orders.max_in_flight, or ft_orders.max_in_flight_ceiling for a
 *	  slow but healthy gateway (docs/design.md, "Adaptive concurrency").
 *
 * AIMD with slow start, as TCP and Netflix's concurrency-limits AIMDLimit
 * do it, with a latency signal in the manner of TCP Vegas:
 *
 *	- slow start: the limit starts at FT_AC_INITIAL (TCP's initial window)
 *	  after a server start, when the circuit closes, and when no request
 *	  completed for FT_AC_IDLE_MS, and grows by 1 per good reply, which
 *	  doubles it every round trip, but never more than doubling per
 *	  FT_AC_GROWTH_MS: a healthy gateway reaches max_in_flight = 64
 *	  within four round trips (a fast one within 400 ms), while a
 *	  rate-limited one sees a first burst of a few requests per worker
 *	  instead of max_in_flight of them before its first reply.  The
 *	  requests a burst sends beyond the gateway's bucket are those in
 *	  flight when it runs dry; doubling per round trip of a gateway that
 *	  answers in a millisecond would have twice the bucket in flight by
 *	  then, the growth period keeps it to a few per worker;
 *	- a 429 (the gateway says we send too much) halves the limit and
 *	  stops its growth for FT_AC_HOLD_MS; every 429 counts, so a burst of
 *	  them brings the limit down at once;
 *	- a 503, a timeout, or a slow reply takes 10 % off, at most once per
 *	  round trip: only a request sent after the last such decrease may
 *	  cause the next one.  A reply is slow when both it and the smoothed
 *	  latency (an average with weight 1/FT_AC_SMOOTHING for each new
 *	  reply, as TCP's SRTT) exceed the least latency of the last
 *	  FT_AC_BASELINE_MS to 2 * FT_AC_BASELINE_MS by a factor of
 *	  FT_AC_LATENCY_FACTOR and by FT_AC_LATENCY_SLACK_MS.  The latency
 *	  here is the part of the request's time the worker spent listening
 *	  (FtJob.listened_ms): a reply that arrives while the worker is in
 *	  its SQL step waits for it, and that wait is the worker's, not the
 *	  gateway's (counting it cut the limit of a healthy drain on a busy
 *	  server every few round trips).  A 503 may be
 *	  overload or a flaky backend, and halving on random failures would
 *	  bring the limit down to 1 for a gateway that fails 20 % of the time
 *	  (as random losses do to TCP);
 *	- any other reply makes it grow: by 1 per reply (doubling every round
 *	  trip) up to the limit where the last 429 was seen, by 1/limit per
 *	  reply (1 per round trip) above it.  Once FT_AC_HOLD_MS pass without
 *	  a 429, doubling is allowed up to max_in_flight again.
 *
 * One limit is shared by all workers (it describes the gateway); each
 * worker applies it to its own requests.  State in ft_db->gateway under
 * ft_db->lock, updated with each batch of completions (the one lock
 * acquisition that also publishes the gateway figures); the rounded value
 * is published in an atomic that workers read without the lock, with the
 * time of the last completion for the idle rule.  Once the limit is at
 * max_in_flight with no overload in sight, a reply changes nothing, so a
 * healthy drain is not paced by it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "port/atomics.h"
#include "utils/timestamp.h"

#include "gateway_limits.h"
#include "guc.h"
#include "shmem.h"
#include "worker.h"

#define FT_AC_INITIAL			4	/* slow start's first limit */
#define FT_AC_IDLE_MS			10000	/* idle this long: slow start again */
#define FT_AC_GROWTH_MS			100 /* at most doubling per period */
#define FT_AC_OVERLOAD_FACTOR	0.5 /* on a 429 */
#define FT_AC_SLOW_FACTOR		0.9 /* on a 503, a timeout or a slow reply */
#define FT_AC_HOLD_MS			5000	/* no growth after an overload */
#define FT_AC_BASELINE_MS		10000	/* period of the least latency */
#define FT_AC_LATENCY_FACTOR	2.0
#define FT_AC_LATENCY_SLACK_MS	100.0
#define FT_AC_SMOOTHING			16.0	/* weight 1/16 per reply */
#define FT_UNAVAILABLE_SMOOTHING	(1.0 / 32)	/* the 503 share, per reply */
#define FT_AC_SLOW_GATEWAY_MS	50.0	/* beyond max_in_flight from here */

/*
 * The highest limit now: max_in_flight, or max_in_flight_ceiling while
 * the gateway is slow (its smoothed latency, the worker's own delays left
 * out, at least FT_AC_SLOW_GATEWAY_MS): then the round trip, not the
 * worker's CPU, bounds a drain, and more requests in flight are what the
 * gateway can take.  Its 429s and latency still bring the limit down.
 */
static double
ft_concurrency_ceiling(const FtGatewayStats *gw)
{
	if (ft_max_in_flight_ceiling > ft_max_in_flight &&
		gw->rtt_smoothed >= FT_AC_SLOW_GATEWAY_MS)
		return (double) ft_max_in_flight_ceiling;
	return (double) ft_max_in_flight;
}

/* slow start's first limit under the current settings */
static double
ft_concurrency_initial(void)
{
	return (double) Min(FT_AC_INITIAL, ft_max_in_flight);
}

/*
 * The in-flight limit a worker applies now (lock-free).
 */
int
ft_concurrency_limit(void)
{
	uint32		v;
	uint64		active_at;

	if (!ft_adaptive_concurrency)
		return ft_max_in_flight;
	v = pg_atomic_read_u32(&ft_db->concurrency_limit_now);
	if (v == 0)
		return (int) ft_concurrency_initial();
	if (v > (uint32) ft_concurrency_initial())
	{
		/* after a long idle the next round trips start small again */
		active_at = pg_atomic_read_u64(&ft_db->concurrency_active_at);
		if (active_at != 0 &&
			TimestampDifferenceExceeds((TimestampTz) active_at,
									   GetCurrentTimestamp(), FT_AC_IDLE_MS))
			return (int) ft_concurrency_initial();
	}
	return (int) Min(v, (uint32) Max(ft_max_in_flight, ft_max_in_flight_ceiling));
}

/*
 * Slow start again (the circuit closed).  Caller holds ft_db->lock
 * exclusively.
 */
void
ft_concurrency_restart_locked(void)
{
	FtGatewayStats *gw = &ft_db->gateway;

	gw->concurrency_limit = 0;
	gw->slow_start_until = 0;
	gw->overload_at = 0;
	gw->growth_period_at = 0;
	pg_atomic_write_u32(&ft_db->concurrency_limit_now, 0);
}

/*
 * Feed one completed request into the limit.  Caller holds
 * ft_db->lock exclusively.
 */
void
ft_concurrency_report_locked(const FtJob *job, TimestampTz now)
{
	FtGatewayStats *gw = &ft_db->gateway;
	double		max;
	double		limit = gw->concurrency_limit;
	double		doubling_until;
	double		baseline;
	bool		overload = (job->http_status == 429);
	bool		slow;

	/* the share of 503s, for the shared pause (admission.c) */
	if (job->http_status != 429)
		gw->unavailable_share = (float4)
			(gw->unavailable_share +
			 ((job->http_status == 503 ? 1.0 : 0.0) - gw->unavailable_share) *
			 FT_UNAVAILABLE_SMOOTHING);

	if (!ft_adaptive_concurrency)
	{
		/* off: slow start when it is turned on again */
		if (gw->concurrency_limit != 0)
			ft_concurrency_restart_locked();
		return;
	}
	if (limit <= 0 ||
		(gw->last_completion_at != 0 &&
		 TimestampDifferenceExceeds(gw->last_completion_at, now, FT_AC_IDLE_MS)))
	{
		/* a start, a restart or a long idle: slow start */
		limit = ft_concurrency_initial();
		gw->slow_start_until = 0;
		gw->overload_at = 0;
		gw->growth_period_at = 0;
	}
	if (gw->last_completion_at < now)
	{
		gw->last_completion_at = now;
		pg_atomic_write_u64(&ft_db->concurrency_active_at, (uint64) now);
	}

	/* the least latency of this period and of the one before */
	if (gw->rtt_period_start == 0 ||
		TimestampDifferenceExceeds(gw->rtt_period_start, now, FT_AC_BASELINE_MS))
	{
		gw->rtt_min_previous = gw->rtt_min_current;
		gw->rtt_min_current = 0;
		gw->rtt_period_start = now;
	}
	if (job->http_status > 0 && job->http_status != 429 &&
		job->http_status != 503 && job->listened_ms > 0 &&
		(gw->rtt_min_current == 0 || job->listened_ms < gw->rtt_min_current))
		gw->rtt_min_current = (float4) job->listened_ms;
	baseline = gw->rtt_min_current;
	if (gw->rtt_min_previous > 0 && (baseline == 0 || gw->rtt_min_previous < baseline))
		baseline = gw->rtt_min_previous;
	if (job->http_status > 0 && job->listened_ms > 0)
		gw->rtt_smoothed = (gw->rtt_smoothed <= 0) ? (float4) job->listened_ms :
			(float4) (gw->rtt_smoothed +
					  (job->listened_ms - gw->rtt_smoothed) / FT_AC_SMOOTHING);

	max = ft_concurrency_ceiling(gw);
	limit = Min(limit, max);

	slow = job->timed_out || job->http_status == 503;
	if (!slow && job->http_status > 0 && baseline > 0)
	{
		double		bound = Max(baseline * FT_AC_LATENCY_FACTOR,
								baseline + FT_AC_LATENCY_SLACK_MS);

		slow = (job->listened_ms > bound && gw->rtt_smoothed > bound);
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
	else if (limit < max &&
			 (gw->overload_at == 0 ||
			  TimestampDifferenceExceeds(gw->overload_at, now, FT_AC_HOLD_MS)))
	{
		if (gw->overload_at != 0)
		{
			/* the last 429 is old: double up to the ceiling again */
			gw->overload_at = 0;
			gw->slow_start_until = 0;
		}
		doubling_until = gw->slow_start_until > 0 ? gw->slow_start_until : max;
		limit += (limit < doubling_until) ? 1.0 : 1.0 / limit;
		/* at most doubling per growth period, however short the round trip */
		if (gw->growth_period_at == 0 ||
			TimestampDifferenceExceeds(gw->growth_period_at, now, FT_AC_GROWTH_MS))
		{
			gw->growth_period_at = now;
			gw->growth_base = gw->concurrency_limit > 0 ? gw->concurrency_limit :
				ft_concurrency_initial();
		}
		limit = Min(limit, Max(2.0 * gw->growth_base, 2.0));
		limit = Min(limit, max);
	}

	if (limit != gw->concurrency_limit)
	{
		gw->concurrency_limit = limit;
		pg_atomic_write_u32(&ft_db->concurrency_limit_now,
							(uint32) Max(1.0, floor(limit)));
	}
}
