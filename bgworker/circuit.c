/*-------------------------------------------------------------------------
 *
 * circuit.c
 *	  The gateway circuit breaker, shared by all payment workers.
 *
 * State lives in ft_shared->gateway and is changed under ft_shared->lock
 * (exclusive).  closed: requests flow; after circuit_failure_threshold
 * consecutive transient failures (401/403 included) it opens.  open: no
 * worker claims or sends anything, orders stay pending.  After
 * circuit_open_time the next worker that wants to send becomes the single
 * probe (half_open, probe_in_flight): its success closes the circuit, its
 * failure opens it again.  Declines and 400/422 are answers, so they count
 * as successes here.
 *
 * A probe whose worker died would keep the circuit half-open forever, so
 * a probe older than the request timeout (plus a second) is given up and
 * another worker may probe.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "storage/lwlock.h"
#include "utils/timestamp.h"

#include "guc.h"
#include "shmem.h"
#include "worker.h"

/*
 * How many of wanted requests may start now.  *probe is set when the one
 * granted request is the half-open probe (report its outcome with
 * was_probe, or give it back with ft_circuit_abandon_probe if nothing was
 * sent).  *blocked is set when the circuit holds requests back.
 */
int
ft_circuit_admit(int wanted, bool *probe, bool *blocked)
{
	volatile FtGatewayStats *gw = &ft_shared->gateway;
	TimestampTz now;
	int			granted = 0;

	*probe = false;
	*blocked = false;
	if (wanted <= 0)
		return 0;

	/* the common case needs no lock: an int read is atomic */
	if (gw->circuit == FT_CIRCUIT_CLOSED)
		return wanted;

	now = GetCurrentTimestamp();
	LWLockAcquire(ft_shared->lock, LW_EXCLUSIVE);
	if (gw->circuit == FT_CIRCUIT_OPEN &&
		TimestampDifferenceExceeds(gw->opened_at, now, ft_circuit_open_time_ms))
	{
		gw->circuit = FT_CIRCUIT_HALF_OPEN;
		gw->probe_in_flight = false;
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
			if (!gw->probe_in_flight ||
				TimestampDifferenceExceeds(gw->probe_started_at, now,
										   ft_request_timeout_eff_ms() + 1000))
			{
				gw->probe_in_flight = true;
				gw->probe_started_at = now;
				granted = 1;
				*probe = true;
			}
			break;
	}
	LWLockRelease(ft_shared->lock);

	*blocked = (granted < wanted);
	return granted;
}

/*
 * The probe granted by ft_circuit_admit found nothing to send: let the
 * next worker with work probe instead.
 */
void
ft_circuit_abandon_probe(void)
{
	LWLockAcquire(ft_shared->lock, LW_EXCLUSIVE);
	if (ft_shared->gateway.circuit == FT_CIRCUIT_HALF_OPEN)
		ft_shared->gateway.probe_in_flight = false;
	LWLockRelease(ft_shared->lock);
}

/*
 * Feed one completed request into the breaker.  Caller holds
 * ft_shared->lock exclusively (it publishes a whole batch under one
 * acquisition) and logs the returned change after releasing it.
 */
FtCircuitChange
ft_circuit_report_locked(bool transient, bool was_probe, TimestampTz now)
{
	FtGatewayStats *gw = &ft_shared->gateway;

	if (!transient)
	{
		gw->consecutive_failures = 0;
		if (gw->circuit != FT_CIRCUIT_CLOSED)
		{
			gw->circuit = FT_CIRCUIT_CLOSED;
			gw->probe_in_flight = false;
			return FT_CIRCUIT_CLOSED_AGAIN;
		}
		return FT_CIRCUIT_UNCHANGED;
	}

	if (gw->consecutive_failures < INT_MAX)
		gw->consecutive_failures++;

	switch (gw->circuit)
	{
		case FT_CIRCUIT_CLOSED:
			if (gw->consecutive_failures >= ft_circuit_failure_threshold)
			{
				gw->circuit = FT_CIRCUIT_OPEN;
				gw->opened_at = now;
				return FT_CIRCUIT_OPENED;
			}
			break;
		case FT_CIRCUIT_HALF_OPEN:
			if (was_probe)
			{
				gw->circuit = FT_CIRCUIT_OPEN;
				gw->opened_at = now;
				gw->probe_in_flight = false;
				return FT_CIRCUIT_REOPENED;
			}
			break;
		case FT_CIRCUIT_OPEN:
			/* late replies of requests sent before it opened */
			break;
	}
	return FT_CIRCUIT_UNCHANGED;
}
