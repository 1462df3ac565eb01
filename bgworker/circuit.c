/*-------------------------------------------------------------------------
 *
 * circuit.c
 *	  The gateway circuit breaker, shared by all payment workers.
 *
 * State lives in ft_db->gateway and is changed under ft_db->lock
 * (exclusive).  The circuit is for a gateway that is down, not for one
 * that is flaky (docs/reference.md, "Gateway limits"): it judges the
 * gateway by its successes, not by a share of failures.  A success is an
 * answer that settles the request (paid, declined, a 400/422 ...); a
 * transient failure is a 5xx, a timeout, a lost connection, a garbled
 * reply; a 429 is neither (the gateway is up and asks us to slow down:
 * admission.c and concurrency.c deal with it), but it shows the gateway
 * is there, as a success does.
 *
 * closed: requests flow.  The circuit counts the run of failed requests
 * that were sent after the gateway's last success or 429 (a request sent
 * before it that fails later, such as a lost reply, says nothing about
 * the gateway since then).  It opens when that run reaches
 *
 *	  max(circuit_failure_threshold, FT_CIRCUIT_EVIDENCE / p)
 *
 * where p is the smoothed share of successes the gateway gave before the
 * run began (weight FT_CIRCUIT_SMOOTHING per request, never below
 * FT_CIRCUIT_MIN_SHARE; FT_CIRCUIT_PRIOR_SHARE until it has answered).
 * FT_CIRCUIT_EVIDENCE / p failures in a row are as many requests as the
 * gateway needs on average for FT_CIRCUIT_EVIDENCE successes, so a run
 * that long happens by chance with probability (1 - p)^(EVIDENCE / p),
 * less than e^-EVIDENCE (2e-9 at EVIDENCE 20), whatever p is: a healthy
 * gateway that goes down is caught after 20 failures, one that succeeds
 * a quarter of the time (80 in a row needed, 0.75^80 = 1e-10) keeps being
 * used, paced by the adaptive limit and the backoff, and one never seen
 * answering is caught after 40.  The margin is wide because p is only an
 * estimate: right after a healthy gateway drops to 25 % it still reads
 * near 1, and a run of 20 failures then has a chance of 0.75^20 = 0.3 %
 * (a simulation of that drop opens the circuit in 0.6 % of the cases;
 * at EVIDENCE 12 and weight 1/16 it was 7.5 %).  The run's own failures
 * are folded into p only when it ends, so a long run does not lower the
 * bar it is measured against.  Counting requests rather than time makes
 * the rule the same at 1 and at 10,000 requests per second.
 *
 * open: no worker claims or sends anything, orders stay pending.
 *
 * half_open: after circuit_open_time up to FT_CIRCUIT_PROBES probes go
 * out at once (on fresh connections, gateway_http.c, so that each is one
 * request).  FT_CIRCUIT_PROBES_TO_CLOSE successes close the circuit (a
 * gateway answering a quarter of its requests is not down; if it still
 * mostly is, the run rule opens it again); once so many probes failed
 * that this cannot happen any more it opens again, so a gateway still
 * down gets FT_CIRCUIT_PROBES requests per circuit_open_time.  The
 * concurrency limit starts small again when it closes (slow start).
 *
 * A probe whose worker died would keep the circuit half-open forever, so
 * probes older than the request timeout (plus a second) are given up and
 * others may be sent.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "storage/lwlock.h"
#include "utils/timestamp.h"

#include "gateway_limits.h"
#include "guc.h"
#include "shmem.h"
#include "worker.h"

/* probes of a half-open round, and the successes among them that close it */
#define FT_CIRCUIT_PROBES			4
#define FT_CIRCUIT_PROBES_TO_CLOSE	1
/* successes' worth of failures in a row that mean "down" */
#define FT_CIRCUIT_EVIDENCE			20.0
/* the success share: weight per request, before any answer, floor */
#define FT_CIRCUIT_SMOOTHING		(1.0 / 16)
#define FT_CIRCUIT_PRIOR_SHARE		0.5
#define FT_CIRCUIT_MIN_SHARE		0.1

/*
 * How many of wanted requests may start now.  *nprobes is set to the
 * number of granted requests that are half-open probes (report their
 * outcome with is_probe set, or give unsent ones back with
 * ft_circuit_abandon_probes).  *blocked is set when the circuit holds
 * requests back.
 */
int
ft_circuit_admit(int wanted, int *nprobes, bool *blocked)
{
	volatile FtGatewayStats *gw = &ft_db->gateway;
	TimestampTz now;
	int			granted = 0;

	*nprobes = 0;
	*blocked = false;
	if (wanted <= 0)
		return 0;

	/* the common case needs no lock: an int read is atomic */
	if (gw->circuit == FT_CIRCUIT_CLOSED)
		return wanted;

	now = GetCurrentTimestamp();
	LWLockAcquire(ft_db->lock, LW_EXCLUSIVE);
	if (gw->circuit == FT_CIRCUIT_OPEN &&
		TimestampDifferenceExceeds(gw->opened_at, now, ft_circuit_open_time_ms))
	{
		gw->circuit = FT_CIRCUIT_HALF_OPEN;
		gw->probes_in_flight = 0;
		gw->probes_succeeded = 0;
		gw->probes_failed = 0;
	}
	switch (gw->circuit)
	{
		case FT_CIRCUIT_CLOSED:
			granted = wanted;
			break;
		case FT_CIRCUIT_OPEN:
			granted = 0;
			break;
		case FT_CIRCUIT_HALF_OPEN:
			{
				int			allowed;

				if (gw->probes_in_flight > 0 &&
					TimestampDifferenceExceeds(gw->probe_started_at, now,
											   ft_request_timeout_eff_ms() + 1000))
					gw->probes_in_flight = 0;
				/* the round's probes, all at once */
				allowed = FT_CIRCUIT_PROBES - gw->probes_succeeded -
					gw->probes_failed - gw->probes_in_flight;
				granted = Min(wanted, Max(allowed, 0));
				if (granted > 0)
				{
					gw->probes_in_flight += granted;
					gw->probe_started_at = now;
					*nprobes = granted;
				}
			}
			break;
	}
	LWLockRelease(ft_db->lock);

	*blocked = (granted < wanted);
	return granted;
}

/*
 * Probes granted by ft_circuit_admit that found nothing to send (or were
 * held back by the rate limit): let the next worker with work probe.
 */
void
ft_circuit_abandon_probes(int n)
{
	if (n <= 0)
		return;
	LWLockAcquire(ft_db->lock, LW_EXCLUSIVE);
	if (ft_db->gateway.circuit == FT_CIRCUIT_HALF_OPEN)
		ft_db->gateway.probes_in_flight =
			Max(0, ft_db->gateway.probes_in_flight - n);
	LWLockRelease(ft_db->lock);
}

/* the window's slot for now, emptied if it still holds an older period */
static int
ft_circuit_window_slot(FtGatewayStats *gw, TimestampTz now)
{
	int64		period = now / ((int64) FT_CIRCUIT_BUCKET_MS * 1000);
	int			slot = (int) (period % FT_CIRCUIT_BUCKETS);

	if (slot < 0)
		slot += FT_CIRCUIT_BUCKETS;
	if (gw->window_period[slot] != period)
	{
		gw->window_period[slot] = period;
		gw->window_requests[slot] = 0;
		gw->window_failures[slot] = 0;
	}
	return slot;
}

/* the failure window of gateway_status.failure_rate */
static void
ft_circuit_window_add(FtGatewayStats *gw, TimestampTz now, bool failed)
{
	int			slot = ft_circuit_window_slot(gw, now);

	if (gw->window_requests[slot] < PG_UINT32_MAX)
	{
		gw->window_requests[slot]++;
		if (failed)
			gw->window_failures[slot]++;
	}
}

static void
ft_circuit_window_clear(FtGatewayStats *gw)
{
	memset(gw->window_requests, 0, sizeof(gw->window_requests));
	memset(gw->window_failures, 0, sizeof(gw->window_failures));
}

/* the smoothed success share, within its bounds */
static double
ft_circuit_share(const FtGatewayStats *gw)
{
	if (gw->success_share <= 0)
		return FT_CIRCUIT_PRIOR_SHARE;
	return Max(gw->success_share, FT_CIRCUIT_MIN_SHARE);
}

/* failures in a row, sent after the last success, that mean "down" */
static int
ft_circuit_run_needed(const FtGatewayStats *gw)
{
	return Max(ft_circuit_failure_threshold,
			   (int) ceil(FT_CIRCUIT_EVIDENCE / ft_circuit_share(gw)));
}

/* fold n outcomes (successes or failures) into the success share */
static void
ft_circuit_share_add(FtGatewayStats *gw, bool success, int n)
{
	double		p = ft_circuit_share(gw);
	double		keep = pow(1.0 - FT_CIRCUIT_SMOOTHING, n);

	p = p * keep + (success ? 1.0 - keep : 0.0);
	gw->success_share = Max(p, FT_CIRCUIT_MIN_SHARE);
}

/* the gateway answered: the run ends, its failures count in the share */
static void
ft_circuit_answered(FtGatewayStats *gw, TimestampTz now, bool success)
{
	if (gw->run_failures > 0)
		ft_circuit_share_add(gw, false, gw->run_failures);
	if (success)
		ft_circuit_share_add(gw, true, 1);
	gw->run_failures = 0;
	gw->run_replies = 0;
	if (now > gw->last_answer_at)
		gw->last_answer_at = now;
}

static void
ft_circuit_open_locked(FtGatewayStats *gw, TimestampTz now)
{
	gw->circuit = FT_CIRCUIT_OPEN;
	gw->opened_at = now;
	gw->probes_in_flight = 0;
	gw->probes_succeeded = 0;
	gw->probes_failed = 0;
	gw->run_failures = 0;
	gw->run_replies = 0;
	ft_circuit_window_clear(gw);
}

/*
 * Feed one completed request into the breaker.  Caller holds
 * ft_db->lock exclusively (it publishes a whole batch under one
 * acquisition) and logs the returned change after releasing it.  When
 * the circuit opens, *run_failures is the run of failures that opened it
 * and *run_needed the run that means "down".
 */
FtCircuitChange
ft_circuit_report_locked(const FtJob *job, TimestampTz now,
						 uint32 *run_needed, uint32 *run_failures)
{
	FtGatewayStats *gw = &ft_db->gateway;
	bool		replied = (job->http_status > 0);

	if (job->http_status == 429)
	{
		/* up, but asking us to slow down: neither failure nor success */
		ft_circuit_answered(gw, now, false);
		if (job->is_probe && gw->circuit == FT_CIRCUIT_HALF_OPEN)
			gw->probes_in_flight = Max(0, gw->probes_in_flight - 1);
		return FT_CIRCUIT_UNCHANGED;
	}

	if (!job->transient)
	{
		gw->consecutive_failures = 0;
		switch (gw->circuit)
		{
			case FT_CIRCUIT_CLOSED:
				ft_circuit_window_add(gw, now, false);
				ft_circuit_answered(gw, now, true);
				break;
			case FT_CIRCUIT_HALF_OPEN:
				if (!job->is_probe)
					break;		/* a late reply from before it opened */
				gw->probes_in_flight = Max(0, gw->probes_in_flight - 1);
				if (++gw->probes_succeeded >= FT_CIRCUIT_PROBES_TO_CLOSE)
				{
					/* the share of the probes answered so far */
					gw->success_share =
						Max((double) gw->probes_succeeded /
							(gw->probes_succeeded + gw->probes_failed),
							FT_CIRCUIT_MIN_SHARE);
					gw->circuit = FT_CIRCUIT_CLOSED;
					gw->probes_in_flight = 0;
					gw->run_failures = 0;
					gw->run_replies = 0;
					gw->last_answer_at = now;
					ft_circuit_window_clear(gw);
					ft_concurrency_restart_locked();
					return FT_CIRCUIT_CLOSED_AGAIN;
				}
				break;
			case FT_CIRCUIT_OPEN:
				break;
		}
		return FT_CIRCUIT_UNCHANGED;
	}

	if (gw->consecutive_failures < INT_MAX)
		gw->consecutive_failures++;

	switch (gw->circuit)
	{
		case FT_CIRCUIT_CLOSED:
			ft_circuit_window_add(gw, now, true);
			if (job->started_at <= gw->last_answer_at)
			{
				/* sent before the gateway's last answer: not in the run */
				ft_circuit_share_add(gw, false, 1);
				break;
			}
			if (gw->run_failures < INT_MAX)
				gw->run_failures++;
			if (replied && gw->run_replies < INT_MAX)
				gw->run_replies++;
			if (gw->run_failures >= ft_circuit_run_needed(gw))
			{
				bool		unreachable = (gw->run_replies == 0);

				*run_needed = (uint32) ft_circuit_run_needed(gw);
				*run_failures = (uint32) gw->run_failures;
				/* the run says nothing more about the share */
				ft_circuit_open_locked(gw, now);
				return unreachable ? FT_CIRCUIT_OPENED_UNREACHABLE :
					FT_CIRCUIT_OPENED;
			}
			break;
		case FT_CIRCUIT_HALF_OPEN:
			if (job->is_probe)
			{
				gw->probes_in_flight = Max(0, gw->probes_in_flight - 1);
				if (++gw->probes_failed >
					FT_CIRCUIT_PROBES - FT_CIRCUIT_PROBES_TO_CLOSE)
				{
					ft_circuit_open_locked(gw, now);
					return FT_CIRCUIT_REOPENED;
				}
			}
			break;
		case FT_CIRCUIT_OPEN:
			/* late replies of requests sent before it opened */
			break;
	}
	return FT_CIRCUIT_UNCHANGED;
}
