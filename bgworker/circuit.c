/*-------------------------------------------------------------------------
 *
 * circuit.c
 *	  The gateway circuit breaker, shared by all payment workers.
 *
 * State lives in ft_db->gateway and is changed under ft_db->lock
 * (exclusive).  The circuit is for a gateway that is down, not for one
 * that is flaky (docs/reference.md, "Gateway limits"):
 *
 * closed: requests flow.  Every completed request goes into a window of
 * the last FT_CIRCUIT_BUCKETS seconds.  The circuit opens when
 *	  - the window holds at least circuit_failure_threshold requests and
 *		the share of transient failures among them is at least
 *		circuit_failure_rate, judged by the lower bound of its 95 % Wilson
 *		score interval: a handful of unlucky requests of a gateway that
 *		fails a third of the time is no evidence that it fails half of the
 *		time, while five failures out of five are (bound 0.57); or
 *	  - circuit_failure_threshold requests in a row, each sent after the
 *		last HTTP reply of any kind, failed without any reply (connection
 *		refused, DNS, TLS, timeout): the gateway cannot be reached.  Lost
 *		replies of a gateway that answers other requests meanwhile do not
 *		count, since those requests were sent before its later replies.
 * 429 replies are neither: the gateway is up and asks us to slow down
 * (admission.c and concurrency.c deal with them).
 *
 * open: no worker claims or sends anything, orders stay pending.
 *
 * half_open: after circuit_open_time the first worker that wants to send
 * sends one probe; once it has been answered, the next
 * FT_CIRCUIT_PROBES - 1 probes may go together.  FT_CIRCUIT_PROBES
 * answered probes close the circuit; one failed probe opens it again, so
 * a gateway still down gets one request per circuit_open_time.  Declines
 * and 400/422 are answers, so they count as successes here.  Probes go
 * out on fresh connections (gateway_http.c) so that each is one request.
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

#include "guc.h"
#include "shmem.h"
#include "worker.h"

/* answered probes that close the circuit */
#define FT_CIRCUIT_PROBES	3
/* z of the Wilson score interval: 95 % two-sided */
#define FT_CIRCUIT_WILSON_Z	1.96

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
				/* one probe alone, then the rest together */
				allowed = (gw->probes_succeeded == 0 ? 1 :
						   FT_CIRCUIT_PROBES - gw->probes_succeeded) -
					gw->probes_in_flight;
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

/* lower bound of the Wilson score interval of failures / n */
static double
ft_wilson_lower(uint32 failures, uint32 n)
{
	double		z = FT_CIRCUIT_WILSON_Z;
	double		p = (double) failures / n;
	double		z2n = z * z / n;

	return (p + z2n / 2 - z * sqrt(p * (1 - p) / n + z2n / (4.0 * n))) /
		(1 + z2n);
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

static void
ft_circuit_open_locked(FtGatewayStats *gw, TimestampTz now)
{
	gw->circuit = FT_CIRCUIT_OPEN;
	gw->opened_at = now;
	gw->probes_in_flight = 0;
	gw->probes_succeeded = 0;
	ft_circuit_window_clear(gw);
}

/*
 * Feed one completed request into the breaker.  Caller holds
 * ft_db->lock exclusively (it publishes a whole batch under one
 * acquisition) and logs the returned change after releasing it.  When
 * the circuit opens, *window_requests and *window_failures say what the
 * window held.
 */
FtCircuitChange
ft_circuit_report_locked(const FtJob *job, TimestampTz now,
						 uint32 *window_requests, uint32 *window_failures)
{
	FtGatewayStats *gw = &ft_db->gateway;
	bool		replied = (job->http_status > 0);

	if (replied)
	{
		gw->last_reply_at = now;
		gw->unreachable = 0;
	}

	if (job->http_status == 429)
	{
		/* up, but asking us to slow down: neither failure nor success */
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
				break;
			case FT_CIRCUIT_HALF_OPEN:
				if (!job->is_probe)
					break;		/* a late reply from before it opened */
				gw->probes_in_flight = Max(0, gw->probes_in_flight - 1);
				if (++gw->probes_succeeded >= FT_CIRCUIT_PROBES)
				{
					gw->circuit = FT_CIRCUIT_CLOSED;
					gw->probes_in_flight = 0;
					ft_circuit_window_clear(gw);
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
	if (!replied && job->started_at > gw->last_reply_at && gw->unreachable < INT_MAX)
		gw->unreachable++;

	switch (gw->circuit)
	{
		case FT_CIRCUIT_CLOSED:
			{
				uint32		n;
				uint32		failures;

				ft_circuit_window_add(gw, now, true);
				failures = ft_circuit_window_counts(gw, now, &n);
				*window_requests = n;
				*window_failures = failures;
				if (gw->unreachable >= ft_circuit_failure_threshold)
				{
					ft_circuit_open_locked(gw, now);
					return FT_CIRCUIT_OPENED_UNREACHABLE;
				}
				if (n >= (uint32) ft_circuit_failure_threshold &&
					ft_wilson_lower(failures, n) >= ft_circuit_failure_rate)
				{
					ft_circuit_open_locked(gw, now);
					return FT_CIRCUIT_OPENED;
				}
			}
			break;
		case FT_CIRCUIT_HALF_OPEN:
			if (job->is_probe)
			{
				ft_circuit_open_locked(gw, now);
				return FT_CIRCUIT_REOPENED;
			}
			break;
		case FT_CIRCUIT_OPEN:
			/* late replies of requests sent before it opened */
			break;
	}
	return FT_CIRCUIT_UNCHANGED;
}
