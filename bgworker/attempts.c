/*-------------------------------------------------------------------------
 *
 * attempts.c
 *	  Which attempts count towards max_attempts, and what is said when an
 *	  order is given up (docs/reference.md, "Guarantees" and "Wire
 *	  protocol").
 *
 * max_attempts measures the order, not the gateway: an order is given up
 * only after max_attempts requests that told something about the order
 * itself.  A failure the gateway as a whole is having says nothing about
 * the order, however long it lasts, so an attempt that ends in a retry
 * does not count when
 *	  - it got no HTTP reply at all (connection refused, DNS, TLS, timeout,
 *		a request that could not start): the gateway could not be reached;
 *	  - its reply was 429 (slow down) or 401/403 (the credentials, the
 *		operator's problem);
 *	  - it was a half-open probe, or the circuit was not closed when its
 *		reply came: the circuit judges the gateway, not the order;
 *	  - its reply was a 5xx while the gateway answered no other request
 *		successfully in the circuit's window (the last 10 s): a gateway
 *		that fails everything is down, not refusing this order.
 * Every other retry counts: a reply about the order (409, 404, a 2xx the
 * provider could not use, a payment still processing), and a 5xx while
 * the gateway keeps answering others (a flaky gateway, or one that fails
 * this order).  Permanent answers (a decline, 400, 422) end the order at
 * once, whatever the count.
 *
 * An attempt that does not count never gives the order up, and is given
 * back in the outbox (outbox.attempts, the attempts that count, is
 * lowered again when its retry is recorded; worker_job.c); orders.attempts
 * and payment_attempts keep every request.  On a schema older than 1.3 it
 * is not given back: the update to 1.3 takes outbox.attempts > 0 for
 * "sent".  Requests held back by the circuit, the pause or the rate limit
 * are never claimed, so they are no attempts at all.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "storage/lwlock.h"
#include "utils/timestamp.h"

#include "shmem.h"
#include "worker.h"

/* give-up WARNINGs: at most this many per interval, then a count */
#define FT_FAILED_LOG_BURST			20
#define FT_FAILED_LOG_INTERVAL_MS	10000

static TimestampTz ft_failed_log_start = 0;
static int	ft_failed_logged = 0;
static int	ft_failed_unlogged = 0;

/*
 * Does an attempt that ends in a retry count towards max_attempts?  Its
 * HTTP status (0: no reply), whether the provider saw refused credentials
 * in it, and whether it was a half-open probe.  Reads the circuit as the
 * workers last left it (this batch's completions are fed to it after).
 */
bool
ft_attempt_counts(int http_status, bool auth_problem, bool is_probe)
{
	volatile FtGatewayStats *gw = &ft_db->gateway;
	uint32		requests;
	uint32		failures;

	if (http_status <= 0 || http_status == 429 || auth_problem || is_probe)
		return false;
	/* an int read is atomic: as ft_circuit_admit's lock-free look */
	if (gw->circuit != FT_CIRCUIT_CLOSED)
		return false;
	if (http_status < 500 || http_status > 599)
		return true;

	/* a 5xx: did the gateway answer anyone successfully lately? */
	LWLockAcquire(ft_db->lock, LW_SHARED);
	failures = ft_circuit_window_counts(&ft_db->gateway, GetCurrentTimestamp(),
										&requests);
	LWLockRelease(ft_db->lock);
	return requests > failures;
}

/*
 * Say that an order's charge (refund_id 0) or a refund was given up: a
 * WARNING naming it and the reason, at most FT_FAILED_LOG_BURST per
 * FT_FAILED_LOG_INTERVAL_MS per worker; the ones left out are counted in
 * the next WARNING.  The dead letters hold them all.
 */
void
ft_attempt_report_failed(int64 order_id, int64 refund_id, int64 event_id,
						 const char *error)
{
	TimestampTz now = GetCurrentTimestamp();

	if (TimestampDifferenceExceeds(ft_failed_log_start, now,
								   FT_FAILED_LOG_INTERVAL_MS))
	{
		if (ft_failed_unlogged > 0)
			ereport(WARNING,
					(errmsg("%d more payment(s) failed in the last %d seconds",
							ft_failed_unlogged, FT_FAILED_LOG_INTERVAL_MS / 1000),
					 errdetail("They were not logged one by one; each is in ft_orders.dead_letters.")));
		ft_failed_log_start = now;
		ft_failed_logged = 0;
		ft_failed_unlogged = 0;
	}
	if (ft_failed_logged >= FT_FAILED_LOG_BURST)
	{
		ft_failed_unlogged++;
		return;
	}
	ft_failed_logged++;

	if (refund_id != 0)
		ereport(WARNING,
				(errmsg("refund " INT64_FORMAT " of order " INT64_FORMAT " failed: %s",
						refund_id, order_id, error ? error : "unknown error"),
				 errdetail("Its outbox event " INT64_FORMAT " is a dead letter and is not retried; the refund stays pending, its outcome unknown.",
						   event_id),
				 errhint("Once the cause is fixed, SELECT ft_orders.retry_dead_letter(" INT64_FORMAT ") sends it again under the same key.",
						 event_id)));
	else
		ereport(WARNING,
				(errmsg("order " INT64_FORMAT " failed: %s",
						order_id, error ? error : "unknown error"),
				 errdetail("Its outbox event " INT64_FORMAT " is a dead letter and is not retried.",
						   event_id),
				 errhint("Once the cause is fixed, SELECT ft_orders.retry_dead_letter(" INT64_FORMAT ") sends it again under the same payment_key.",
						 event_id)));
}
