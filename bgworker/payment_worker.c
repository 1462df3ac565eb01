/*-------------------------------------------------------------------------
 *
 * payment_worker.c
 *	  A payment worker: drains the outbox and charges the gateway.
 *
 * Started by the launcher as payment worker n in slot n-1 (bgw_main_arg).
 * Each round of the loop:
 *
 *	1. waits at the one wait point (ft_http_wait): latch, postmaster death
 *	   and libcurl's sockets and timer, bounded by whatever the worker
 *	   itself has scheduled (batched record, next due event, poll);
 *	2. CHECK_FOR_INTERRUPTS, reloads settings on SIGHUP, stops on SIGTERM;
 *	3. classifies the requests libcurl finished (provider's classify_reply)
 *	   and feeds them to the gateway figures and the circuit breaker;
 *	4. when enough completions piled up (or they have waited ~2 ms, or
 *	   nothing else is in flight) and/or there is room for more requests
 *	   (under the adaptive in-flight limit, concurrency.c) that the
 *	   circuit, the gateway's pause and the rate limit let go
 *	   (admission.c), runs ONE short transaction that records the
 *	   completions and claims new events (outbox.c), commits, and only
 *	   then has the provider build the new requests and the transport
 *	   start them (the circuit's probes on fresh connections).
 *
 * Durability (docs/reference.md, "Failures"): a transaction that claims commits with the
 * server's own synchronous_commit, so with synchronous_standby_names set
 * (Patroni synchronous_mode) the claim is on the synchronous standby
 * before any of its requests leaves: a failover cannot lose a claim whose
 * requests were sent.  A server with synchronous_commit = local or off
 * opts out (the claim then waits for the local flush, or nothing).
 * Transactions that only record outcomes or release leases commit with
 * synchronous_commit = off: losing one only re-sends under the same
 * Idempotency-Key, which the gateway answers as a replay.
 *
 * SyncRepWaitForLSN leaves its wait only on ProcDiePending, a query cancel
 * or postmaster death, not on our shutdown flag: SIGTERM during a claim's
 * commit therefore also sets ProcDiePending (ft_handle_sigterm).  An
 * interrupted wait still commits, with a WARNING, although the standby
 * may not have the claim: after every claim's commit the worker looks for
 * a shutdown, a die or a cancel (ft_handle_sigint counts them) that came
 * during it, and then sends nothing of that claim; it releases the leases
 * with an asynchronous commit (they are due again) and stops or claims
 * again.
 *
 * So no transaction is open while HTTP runs, a slow request only holds
 * its own slot (claims refill free slots continuously), and everything
 * written to the tables is batched.  A commit of place_order sets our
 * latch (extension/wakeup.c): an idle worker claims at once and libcurl
 * sends within the next round.
 *
 * Memory: a per-round context, reset at the top of every round, holds
 * everything transient (classification, SQL arrays); jobs live in their
 * own context from claim to record, since a request spans rounds.
 *
 * While the server is in recovery the worker publishes "standby", writes
 * nothing, and looks again every 250 ms; after a promotion it also waits
 * until the launcher has released the leases of the dead primary's
 * workers (ft_db->leases_released).
 *
 * On SIGTERM: no more claims, in-flight requests get up to one second,
 * what completed is recorded, the leases of the rest are released, the
 * slot shows "stopped", exit.  A worker ERROR (an SPI failure, say)
 * becomes FATAL in a background worker: the transaction is aborted, the
 * exit callbacks clear the slot and free libcurl, and the launcher starts
 * a new worker.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "gateway.h"
#include "gateway_json.h"
#include "guc.h"
#include "worker.h"

PGDLLEXPORT void ft_orders_payment_worker_main(Datum main_arg);

/* completions wait at most this long for company before being recorded */
#define FT_RECORD_DELAY_MS		2
/* a short claim makes the worker look again at the next due event, or: */
#define FT_POLL_MAX_MS			1000
#define FT_POLL_MIN_MS			10
#define FT_CIRCUIT_POLL_MS		100
#define FT_SHUTDOWN_GRACE_MS	1000
#define FT_LOG_INTERVAL_MS		10000

static MemoryContext ft_round_cxt = NULL;
static MemoryContext ft_job_cxt = NULL;

static FtJob **ft_done;			/* completed, not recorded yet */
static int	ft_ndone = 0;
static TimestampTz ft_first_done_at = 0;
static FtJob **ft_round_done;	/* completed in this round (for the stats) */
static int	ft_nround_done = 0;
static FtJob **ft_aborted;		/* shutdown: outcome unknown */
static int	ft_naborted = 0;
static FtClaim *ft_claims;		/* this round's claim (strings in the round
								 * context) */
static FtJob **ft_claimed;

/* set around a claim's commit: SIGTERM then also interrupts the sync wait */
static volatile sig_atomic_t ft_in_claim_commit = false;
/* SIGINTs (query cancels) received: a cancel ends a sync wait silently */
static volatile sig_atomic_t ft_cancel_count = 0;

static const FtProvider *ft_provider = NULL;
static char *ft_url = NULL;		/* gateway_url + provider path; NULL: idle */
static char *ft_base_url = NULL;	/* gateway_url without trailing '/' */
static bool ft_url_hint_logged = false;

static bool ft_want_claim = true;
static TimestampTz ft_next_poll = 0;
static TimestampTz ft_last_claim = 0;
static bool ft_circuit_blocked = false;
static bool ft_last_was_retry = false;

/* rate-limited gateway trouble reports */
static TimestampTz ft_last_trouble_log = 0;
static int	ft_trouble_unlogged = 0;
static TimestampTz ft_last_auth_log = 0;

static const FtProvider *
ft_current_provider(void)
{
	switch ((FtGatewayProvider) ft_gateway_provider)
	{
		case FT_PROVIDER_GENERIC:
			return &ft_provider_generic;
		case FT_PROVIDER_STRIPE:
			return &ft_provider_stripe;
		case FT_PROVIDER_STRIPE_CHARGES:
			return &ft_provider_stripe_charges;
	}
	return &ft_provider_generic;
}

/*
 * (Re-)read the settings this worker caches: provider and URL.  An empty
 * gateway_url leaves the worker idle, with one LOG hint per emptiness, and
 * out of the commit wake-ups (it could not send; the claim that follows
 * setting a URL finds what was committed meanwhile).
 */
static void
ft_load_settings(void)
{
	bool		idle = (ft_gateway_url == NULL || ft_gateway_url[0] == '\0');
	size_t		len;
	MemoryContext oldcxt;

	ft_provider = ft_current_provider();
	/* the callers claim next: commits made meanwhile are found by that claim */
	ft_slot_set_can_send(!idle);
	if (ft_url)
		pfree(ft_url);
	ft_url = NULL;
	if (ft_base_url)
		pfree(ft_base_url);
	ft_base_url = NULL;

	if (idle)
	{
		if (!ft_url_hint_logged)
			ereport(LOG,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("ft_orders.gateway_url is not set: the payment worker stays idle"),
					 errhint("Set ft_orders.gateway_url to the payment gateway's base URL and reload the configuration.")));
		ft_url_hint_logged = true;
		return;
	}
	ft_url_hint_logged = false;
	len = strlen(ft_gateway_url);
	while (len > 0 && ft_gateway_url[len - 1] == '/')
		len--;
	oldcxt = MemoryContextSwitchTo(TopMemoryContext);
	ft_base_url = pnstrdup(ft_gateway_url, len);
	ft_url = psprintf("%s%s", ft_base_url, ft_provider->path);
	MemoryContextSwitchTo(oldcxt);
}

/*
 * SIGTERM: the shutdown flag as SignalHandlerForShutdownRequest sets it,
 * plus, during a claim's commit only, what die() sets, which is the one
 * thing a wait for the synchronous standby gives up on.  ft_claim_commit
 * clears ProcDiePending again after the commit; the main loop then stops
 * gracefully.  (A SIGTERM between the claim's last statement and its
 * commit may instead end the worker with a FATAL error before the commit:
 * the claim is then rolled back, nothing was sent.)
 */
static void
ft_handle_sigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	ShutdownRequestPending = true;
	if (ft_in_claim_commit)
	{
		ProcDiePending = true;
		InterruptPending = true;
	}
	SetLatch(MyLatch);
	errno = save_errno;
}

/* SIGINT: core's query cancel, counted (SyncRepWaitForLSN clears the flag) */
static void
ft_handle_sigint(SIGNAL_ARGS)
{
	ft_cancel_count = ft_cancel_count + 1;
	StatementCancelHandler(postgres_signal_arg);
}

static void
ft_process_signals(void)
{
	CHECK_FOR_INTERRUPTS();
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
		ft_load_settings();
		ft_want_claim = true;
	}
}

/* LOG a transient gateway failure, at most once per FT_LOG_INTERVAL_MS */
static void
ft_report_trouble(const FtJob *job, bool auth_problem)
{
	TimestampTz now = GetCurrentTimestamp();

	if (auth_problem)
	{
		if (TimestampDifferenceExceeds(ft_last_auth_log, now, FT_LOG_INTERVAL_MS))
		{
			ft_last_auth_log = now;
			ereport(WARNING,
					(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
					 errmsg("payment gateway refused the credentials: HTTP %d",
							job->http_status),
					 errhint("Check ft_orders.gateway_token; the orders stay pending and are retried.")));
		}
		return;
	}

	ft_trouble_unlogged++;
	if (TimestampDifferenceExceeds(ft_last_trouble_log, now, FT_LOG_INTERVAL_MS))
	{
		ereport(LOG,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("payment gateway request failed: %s", job->error),
				 errdetail("%d transient failure(s) since the last report; the payments will be retried.",
						   ft_trouble_unlogged)));
		ft_last_trouble_log = now;
		ft_trouble_unlogged = 0;
	}
}

/*
 * A 2xx reply that settled nothing (malformed, oversize, no usable status
 * or id): the gateway answered, so it is no failure for the circuit, and
 * it may have acted on the request, so the work is never given up on for
 * it (ft_on_done looks it up instead).  Clears c->transient for such a
 * reply and returns true.
 */
static bool
ft_reply_unreadable(const FtGatewayReply *reply, FtClassification *c)
{
	if (reply->http_status < 200 || reply->http_status > 299 ||
		c->outcome != FT_OUTCOME_RETRY || c->payment_id != NULL)
		return false;
	c->transient = false;
	return true;
}

/*
 * The values of a classification that the job stores, checked once more
 * before they reach a table of this database: ids and the client secret
 * printable ASCII of bounded length (else dropped), next_action JSON that
 * jsonb accepts in this database's encoding and that fits a NOTIFY
 * payload (else a marker, see ft_json_next_action).  The job keeps them
 * in its own memory context; the checks allocate in the current one.
 */
static void
ft_job_take_values(FtJob *job, const FtClassification *c)
{
	MemoryContext cxt = GetMemoryChunkContext(job);
	char	   *next_action = ft_json_next_action(c->next_action,
												  GetDatabaseEncoding() == PG_UTF8);

	job->payment_id = c->payment_id ?
		MemoryContextStrdup(cxt, ft_gateway_clean_text(c->payment_id, FT_STORED_ID_MAX)) : NULL;
	job->client_secret = c->client_secret ?
		MemoryContextStrdup(cxt, ft_gateway_clean_text(c->client_secret, FT_STORED_ID_MAX)) : NULL;
	job->next_action = next_action ? MemoryContextStrdup(cxt, next_action) : NULL;
}

/*
 * A request finished (reply != NULL) or was aborted at shutdown (NULL).
 * Classify it and queue the job for recording.
 */
static void
ft_on_done(void *owner, const FtGatewayReply *reply, double latency_ms)
{
	FtJob	   *job = (FtJob *) owner;
	FtClassification c;
	MemoryContext oldcxt;
	bool		unreadable;

	/*
	 * Jobs in flight plus jobs done and not yet recorded never exceed
	 * max_in_flight (a claim records first), which the arrays are sized for.
	 */
	if (ft_ndone >= FT_MAX_IN_FLIGHT || ft_nround_done >= FT_MAX_IN_FLIGHT ||
		ft_naborted >= FT_MAX_IN_FLIGHT)
		elog(ERROR, "payment worker holds more jobs than it can track");

	if (reply == NULL)
	{
		ft_aborted[ft_naborted++] = job;
		return;
	}

	memset(&c, 0, sizeof(c));
	switch (job->kind)
	{
		case FT_REQ_CHARGE:
			ft_provider->classify_reply(reply, &c);
			break;
		case FT_REQ_LOOKUP:
			{
				FtPaymentRequest order;

				memset(&order, 0, sizeof(order));
				order.order_id = job->order_id;
				order.payment_key = job->payment_key;
				order.amount_minor = job->amount_minor;
				order.currency = job->currency;
				order.legacy_request = job->legacy_request;
				ft_provider->classify_lookup(reply, &order, &c);
			}
			break;
		case FT_REQ_REFUND:
			ft_provider->classify_refund(reply, &c);
			break;
		case FT_REQ_REFUND_LOOKUP:
			ft_provider->classify_refund_lookup(reply, &c);
			break;
		case FT_REQ_CANCEL:
			ft_provider->classify_cancel(reply, &c);
			break;
	}

	/*
	 * A canceled order the gateway has no payment for (its look-up or its
	 * cancel says so) was never charged: canceled.  A cancel is only sent
	 * for an order whose cancel was requested.
	 */
	if (c.outcome == FT_OUTCOME_UNKNOWN && job->cancel_requested &&
		(job->kind == FT_REQ_LOOKUP || job->kind == FT_REQ_CANCEL))
		c.outcome = FT_OUTCOME_CANCELED;

	/*
	 * The gateway holds this order's key with other parameters: its first
	 * request went out in the legacy form, without the payment_key (sent
	 * before the payment_key was part of the request).  Sent again in that
	 * form: FT_LEGACY_REQUEST_NOTE in the recorded error is what the next
	 * claim finds (outbox.c).  Only for an order whose earlier request may
	 * have gone out: a first request refused so is not ours to reinterpret.
	 */
	if (c.idempotency_refused && job->kind == FT_REQ_CHARGE &&
		job->body != NULL && !job->legacy_request && job->order_attempt > 1)
	{
		ft_gateway_set_retry(&c, psprintf("%s; re-sending it in that form",
										  FT_LEGACY_REQUEST_NOTE));
		c.transient = false;
		ereport(LOG,
				(errmsg("order " INT64_FORMAT "'s first request went out without its payment_key; re-sending it in that form",
						job->order_id),
				 errdetail("The gateway refused the request under the order's Idempotency-Key: the key was first used with other parameters.")));
	}

	/* a look-up that found other orders' payments: say which, settle none */
	if (c.ignored_foreign && job->kind == FT_REQ_LOOKUP)
		ereport(LOG,
				(errmsg("look-up of order " INT64_FORMAT " ignored payments that are not the order's",
						job->order_id),
				 errdetail("%s", c.error ? c.error : "")));

	/* a schema older than 1.3 has no action_required: re-check later */
	if (c.outcome == FT_OUTCOME_ACTION_REQUIRED && !job->lifecycle)
	{
		c.outcome = FT_OUTCOME_RETRY;
		c.transient = false;
	}

	unreadable = ft_reply_unreadable(reply, &c);
	ft_job_take_values(job, &c);

	oldcxt = MemoryContextSwitchTo(ft_job_cxt);
	job->http_status = reply->http_status;
	job->latency_ms = latency_ms;
	job->transient = c.transient;
	job->timed_out = reply->timed_out;
	job->retry_after_ms = c.retry_after_ms;
	job->outcome = c.outcome;
	if (c.outcome == FT_OUTCOME_RETRY && job->event_attempts >= ft_max_attempts &&
		unreadable && job->lifecycle && job->refund_id == 0 &&
		(job->kind == FT_REQ_CHARGE || job->kind == FT_REQ_LOOKUP))
	{
		/*
		 * The gateway answered, but nothing readable: it may have charged.
		 * Never given up on: looked up instead, until a reply says.
		 */
		job->look_up = true;
		job->error = psprintf("looking it up after %d attempts: %s",
							  job->event_attempts, c.error ? c.error : "unreadable reply");
	}
	else if (c.outcome == FT_OUTCOME_RETRY && job->event_attempts >= ft_max_attempts)
	{
		job->outcome = FT_OUTCOME_FAILED;
		job->error = psprintf("gave up after %d attempts: %s",
							  job->event_attempts, c.error ? c.error : "unknown error");
	}
	else
		job->error = c.error ? pstrdup(c.error) : NULL;
	if (job->outcome == FT_OUTCOME_RETRY && c.retry_after_ms >= 0 &&
		(reply->http_status == 429 || reply->http_status == 503))
	{
		/*
		 * The gateway asked for a pause: every worker holds its requests
		 * until then (admission.c), and this order is due again right when
		 * the pause ends, not later.
		 */
		job->delay_ms = Min(c.retry_after_ms, Max(ft_backoff_max_ms, 0));
		ft_admission_pause(TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   job->delay_ms));
	}
	else if (job->outcome == FT_OUTCOME_RETRY)
		job->delay_ms = ft_backoff_delay_ms(job->event_attempts, c.retry_after_ms);
	MemoryContextSwitchTo(oldcxt);

	if (c.transient)
		ft_report_trouble(job, c.auth_problem);

	if (ft_ndone == 0)
		ft_first_done_at = GetCurrentTimestamp();
	ft_done[ft_ndone++] = job;
	ft_round_done[ft_nround_done++] = job;
}

/*
 * The job for a claimed event, in the job context: the provider builds its
 * request (a body to POST, or a path to GET for a payment the gateway is
 * still working on).
 */
static FtJob *
ft_new_job(const FtClaim *claim)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(ft_job_cxt);
	const FtPaymentRequest *order = &claim->order;
	FtJob	   *job = palloc0(sizeof(FtJob));

	job->event_id = claim->event_id;
	job->order_id = order->order_id;
	job->event_attempts = claim->event_attempts;
	job->order_attempt = claim->order_attempt;
	job->lease_until = claim->lease_until;
	job->refund_id = order->refund_id;
	job->cancel_requested = claim->cancel_requested;
	job->lifecycle = claim->lifecycle;
	job->amount_minor = order->amount_minor;
	strlcpy(job->currency, order->currency ? order->currency : "",
			sizeof(job->currency));
	job->legacy_request = order->legacy_request;
	strlcpy(job->payment_key,
			order->refund_id != 0 ? (order->refund_key ? order->refund_key : "")
			: (order->payment_key ? order->payment_key : ""),
			sizeof(job->payment_key));
	job->body = NULL;
	job->body_len = 0;

	if (order->refund_id != 0)
	{
		/* a refund: looked up first when the gateway may have forgotten it */
		job->kind = FT_REQ_REFUND;
		if (claim->lookup &&
			(job->recheck_path = ft_provider->refund_lookup_path(order)) != NULL)
			job->kind = FT_REQ_REFUND_LOOKUP;
		else
		{
			StringInfoData body;

			initStringInfo(&body);
			ft_provider->build_refund(order, &body);
			job->body = body.data;
			job->body_len = body.len;
		}
	}
	else if (claim->lookup && claim->cancel_requested &&
			 ft_provider->cancel_path != NULL &&
			 (job->recheck_path = ft_provider->cancel_path(order)) != NULL)
	{
		/*
		 * A canceled order whose payment is unconfirmed at the gateway:
		 * cancel it there (a customer who abandons 3-D Secure would leave it
		 * action_required for good), under a key of its own.
		 */
		job->kind = FT_REQ_CANCEL;
		snprintf(job->payment_key, sizeof(job->payment_key), "%s%s",
				 order->payment_key ? order->payment_key : "",
				 FT_CANCEL_KEY_SUFFIX);
		job->body = pstrdup("");
		job->body_len = 0;
	}
	else if (claim->lookup && ft_provider->lookup_path != NULL &&
			 (job->recheck_path = ft_provider->lookup_path(order)) != NULL)
	{
		/* reconciliation: find out what the gateway did, charge nothing */
		job->kind = FT_REQ_LOOKUP;
	}
	else if (ft_provider->recheck_path != NULL && order->pending_ref != NULL &&
			 (job->recheck_path = ft_provider->recheck_path(order)) != NULL)
	{
		/* a payment under way at the gateway: GET it, charge nothing */
		job->kind = FT_REQ_CHARGE;
	}
	else
	{
		StringInfoData body;

		job->kind = FT_REQ_CHARGE;
		initStringInfo(&body);
		ft_provider->build_request(order, &body);
		job->body = body.data;
		job->body_len = body.len;
	}
	MemoryContextSwitchTo(oldcxt);
	return job;
}

/* send a freshly claimed job; a request that cannot start fails at once */
static void
ft_send(FtJob *job)
{
	char		errbuf[256];
	char	   *url = ft_url;
	bool		started;

	job->started_at = GetCurrentTimestamp();
	if ((job->body == NULL || job->kind == FT_REQ_CANCEL) &&
		job->recheck_path != NULL)
		url = psprintf("%s%s", ft_base_url, job->recheck_path);
	else if (job->kind == FT_REQ_REFUND)
		url = psprintf("%s%s", ft_base_url, ft_provider->refund_path);
	started = ft_http_start(job, url, job->payment_key,
							ft_provider->content_type, job->body,
							(size_t) job->body_len, job->is_probe,
							errbuf, sizeof(errbuf));
	if (url != ft_url)
		pfree(url);
	if (!started)
	{
		FtGatewayReply reply;

		memset(&reply, 0, sizeof(reply));
		reply.transport_error = errbuf;
		reply.body = "";
		reply.now = time(NULL);
		ft_on_done(job, &reply, 0.0);
	}
}

static void
ft_free_job(FtJob *job)
{
	if (job->body)
		pfree(job->body);
	if (job->recheck_path)
		pfree(job->recheck_path);
	if (job->payment_id)
		pfree(job->payment_id);
	if (job->error)
		pfree(job->error);
	if (job->next_action)
		pfree(job->next_action);
	if (job->client_secret)
		pfree(job->client_secret);
	pfree(job);
}

/*
 * Should this round run the SQL step, and should it claim?  Recording
 * waits a little for company unless nothing else is in flight; claiming
 * waits for a quarter of the free slots unless the worker is idle or the
 * last claim is FT_RECORD_DELAY_MS old.
 */
static bool
ft_claim_due(TimestampTz now, int *limit)
{
	int			in_flight_limit = ft_concurrency_limit();
	int			room = in_flight_limit - ft_http_in_flight();
	int			chunk = Max(1, Min(ft_batch_size, in_flight_limit) / 4);

	*limit = Min(ft_batch_size, room);
	if (ft_url == NULL || *limit <= 0)
		return false;
	if (!ft_want_claim && now < ft_next_poll)
		return false;
	return (*limit >= chunk || ft_http_in_flight() == 0 ||
			TimestampDifferenceExceeds(ft_last_claim, now, FT_RECORD_DELAY_MS));
}

static bool
ft_record_due(TimestampTz now)
{
	int			chunk = Max(1, Min(ft_batch_size, ft_max_in_flight) / 4);

	if (ft_ndone == 0)
		return false;
	return (ft_ndone >= chunk || ft_http_in_flight() == 0 ||
			TimestampDifferenceExceeds(ft_first_done_at, now, FT_RECORD_DELAY_MS));
}

/*
 * Commit a transaction that claimed *nclaimed events (ft_claims), waiting
 * as synchronous_commit says.  If a shutdown, a die or a query cancel came
 * while it waited, the claim may not be on the synchronous standby:
 * nothing of it may be sent.  Then the leases are released (async), the
 * jobs freed and *nclaimed set to 0; a shutdown continues in the main
 * loop, a die (postmaster death) ends the process here.
 */
static void
ft_claim_commit(int *nclaimed)
{
	sig_atomic_t cancels = ft_cancel_count;
	bool		interrupted;

	/* the flag first: a SIGTERM after the test below finds it set */
	ft_in_claim_commit = true;
	if (ShutdownRequestPending)
	{
		/* stopping already: commit what was recorded, send nothing */
		ft_in_claim_commit = false;
		ft_xact_set_async();
		ft_xact_commit();
		interrupted = true;
	}
	else
	{
		ft_xact_commit();
		ft_in_claim_commit = false;
		interrupted = (ShutdownRequestPending || ProcDiePending ||
					   cancels != ft_cancel_count);
	}
	if (!interrupted)
		return;

	/* ours, set for the shutdown: the graceful stop of the main loop does it */
	if (ShutdownRequestPending)
		ProcDiePending = false;
	/* a die not of our making (postmaster death) ends the process here */
	CHECK_FOR_INTERRUPTS();

	ereport(LOG,
			(errmsg("payment worker: the commit of a claim of %d payment(s) was interrupted; none of them is sent",
					*nclaimed),
			 errdetail("The claim may not have reached the synchronous standby; its leases are released.")));
	for (int i = 0; i < *nclaimed; i++)
		ft_claimed[i] = ft_new_job(&ft_claims[i]);
	ft_xact_begin("ft_orders: releasing an interrupted claim", true);
	ft_outbox_release(ft_claimed, *nclaimed);
	ft_xact_commit();
	for (int i = 0; i < *nclaimed; i++)
		ft_free_job(ft_claimed[i]);
	*nclaimed = 0;
}

/*
 * The SQL step of a round: one transaction that records completions and
 * claims new work, then the new requests are sent.
 */
static void
ft_sql_step(TimestampTz now)
{
	bool		record = ft_record_due(now);
	int			limit = 0;
	bool		claim = ft_claim_due(now, &limit);
	int			nprobes = 0;
	int			admitted = 0;
	int			nclaimed = 0;
	TimestampTz next_due = 0;

	ft_circuit_blocked = false;
	if (claim)
	{
		TimestampTz retry_at = 0;

		limit = ft_circuit_admit(limit, &nprobes, &ft_circuit_blocked);
		if (limit > 0)
		{
			/* the shared pause and the rate limit (admission.c) */
			admitted = ft_admission_take(limit, now, &retry_at);
			if (admitted < nprobes)
			{
				ft_circuit_abandon_probes(nprobes - admitted);
				nprobes = admitted;
			}
			limit = admitted;
		}
		if (limit <= 0)
		{
			claim = false;
			/*
			 * look again when the pause ends or the next token is due
			 * (retry_at), or when the circuit may let a probe through
			 */
			ft_next_poll = retry_at != 0 ? retry_at :
				TimestampTzPlusMilliseconds(now, FT_CIRCUIT_POLL_MS);
			ft_want_claim = false;
		}
	}
	if (claim && ft_ndone > 0)
		record = true;			/* same transaction anyway */
	if (!record && !claim)
		return;

	ft_slot_set_in_sql(true);
	ft_xact_begin(claim ? "ft_orders: claim payments" : "ft_orders: record payments",
					!claim);
	if (record)
		ft_outbox_record_isolated(ft_done, ft_ndone);
	if (claim)
	{
		nclaimed = ft_outbox_claim(limit, ft_round_cxt, ft_claims);
		if (nclaimed < limit)
			next_due = ft_outbox_next_due();
	}
	if (claim && nclaimed > 0)
		ft_claim_commit(&nclaimed);
	else
	{
		/* nothing claimed: what was recorded need not wait */
		ft_xact_set_async();
		ft_xact_commit();
	}
	ft_slot_set_in_sql(false);

	if (record)
	{
		ft_stats_recorded(ft_done, ft_ndone);
		ft_last_was_retry = (ft_done[ft_ndone - 1]->outcome == FT_OUTCOME_RETRY);
		for (int i = 0; i < ft_ndone; i++)
			ft_free_job(ft_done[i]);
		ft_ndone = 0;
	}

	if (claim)
	{
		ft_last_claim = GetCurrentTimestamp();
		if (nclaimed < nprobes)
			ft_circuit_abandon_probes(nprobes - nclaimed);
		if (nclaimed < admitted)
			ft_admission_give_back(admitted - nclaimed);
		for (int i = 0; i < nclaimed; i++)
		{
			ft_claimed[i] = ft_new_job(&ft_claims[i]);
			ft_claimed[i]->is_probe = (i < nprobes);
		}
		if (nclaimed == limit)
			ft_want_claim = true;	/* there may be more due */
		else
		{
			long		ms = FT_POLL_MAX_MS;

			ft_want_claim = false;
			if (next_due != 0)
			{
				long		secs;
				int			usecs;

				TimestampDifference(ft_last_claim, next_due, &secs, &usecs);
				ms = Min(ms, secs * 1000 + usecs / 1000 + 1);
			}
			ft_next_poll = TimestampTzPlusMilliseconds(ft_last_claim,
													   Max(ms, FT_POLL_MIN_MS));
		}
		for (int i = 0; i < nclaimed; i++)
			ft_send(ft_claimed[i]);
	}

	if (ft_http_in_flight() == 0 && ft_ndone == 0)
		MemoryContextReset(ft_job_cxt);
}

/* milliseconds the next wait may last */
static long
ft_wait_time(TimestampTz now)
{
	long		ms = FT_POLL_MAX_MS;
	long		secs;
	int			usecs;

	if (ft_ndone > 0)
		ms = Min(ms, FT_RECORD_DELAY_MS);
	if (ft_url != NULL && ft_concurrency_limit() > ft_http_in_flight())
	{
		if (ft_want_claim)
			ms = Min(ms, FT_RECORD_DELAY_MS);
		else
		{
			TimestampDifference(now, ft_next_poll, &secs, &usecs);
			ms = Min(ms, secs * 1000 + (usecs + 999) / 1000);
		}
	}
	return Max(ms, 0);
}

static void
ft_publish_state(void)
{
	FtWorkerState state;
	int			in_flight = ft_http_in_flight();

	if (ft_url == NULL)
		state = FT_WORKER_IDLE;
	else if (ft_circuit_blocked)
		state = FT_WORKER_CIRCUIT_OPEN;
	else if (in_flight > 0 || ft_ndone > 0)
		state = FT_WORKER_WORKING;
	else if (ft_last_was_retry)
		state = FT_WORKER_BACKOFF;
	else
		state = FT_WORKER_IDLE;
	ft_slot_set_state(state, in_flight);
}

/*
 * SIGTERM: give requests under way FT_SHUTDOWN_GRACE_MS, record what
 * completed, release the leases of the rest, then leave.
 */
static void
ft_shutdown(void)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   FT_SHUTDOWN_GRACE_MS);

	ft_slot_set_state(FT_WORKER_WORKING, ft_http_in_flight());
	while (ft_http_in_flight() > 0)
	{
		TimestampTz now = GetCurrentTimestamp();
		long		secs;
		int			usecs;

		if (now >= deadline)
			break;
		MemoryContextReset(ft_round_cxt);
		TimestampDifference(now, deadline, &secs, &usecs);
		if (ft_http_wait(secs * 1000 + usecs / 1000 + 1, PG_WAIT_EXTENSION) & WL_LATCH_SET)
			ResetLatch(MyLatch);
		ft_nround_done = 0;
		ft_http_collect(ft_on_done);
		ft_stats_completions(ft_round_done, ft_nround_done);
	}
	ft_http_abort_all(ft_on_done);

	if (ft_ndone > 0 || ft_naborted > 0)
	{
		ft_xact_begin("ft_orders: stopping", true);
		ft_outbox_record_isolated(ft_done, ft_ndone);
		ft_outbox_release(ft_aborted, ft_naborted);
		ft_xact_commit();
		ft_stats_recorded(ft_done, ft_ndone);
		if (ft_naborted > 0)
			ereport(LOG,
					(errmsg("payment worker stopping: released %d unfinished payment(s) for a retry",
							ft_naborted)));
	}
	ft_http_shutdown();
	ft_slot_detach();
	proc_exit(0);
}

/*
 * Before any claim: the server must be a primary and the launcher must
 * have released the leases left by workers that no longer exist, and the
 * extension must be installed.  Waits (latch, 250 ms) until then.
 */
static void
ft_wait_until_ready(void)
{
	bool		hinted = false;

	for (;;)
	{
		bool		in_recovery = RecoveryInProgress();

		if (!in_recovery && ft_db->leases_released)
		{
			bool		ready;

			ft_xact_begin("ft_orders: checking the extension", true);
			ready = ft_outbox_extension_ready();
			if (ready)
				ft_outbox_warm_up();
			ft_xact_commit();
			if (ready)
				return;
			if (!hinted)
				ereport(LOG,
						(errcode(ERRCODE_UNDEFINED_OBJECT),
						 errmsg("extension \"ft_orders\" is not installed in database \"%s\": the payment worker waits",
								NameStr(ft_db->dbname)),
						 errhint("Run CREATE EXTENSION ft_orders in that database.")));
			hinted = true;
		}
		ft_slot_set_state(in_recovery ? FT_WORKER_STANDBY : FT_WORKER_STARTING, 0);

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 FT_STANDBY_POLL_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		ft_process_signals();
		if (ShutdownRequestPending)
		{
			ft_slot_detach();
			proc_exit(0);
		}
	}
}

static void
ft_http_on_exit(int code, Datum arg)
{
	ft_http_shutdown();
}

void
ft_orders_payment_worker_main(Datum main_arg)
{
	int			db_index = DatumGetInt32(main_arg) / FT_MAX_WORKERS;
	int			slot_index = DatumGetInt32(main_arg) % FT_MAX_WORKERS;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, ft_handle_sigterm);
	pqsignal(SIGINT, ft_handle_sigint);
	BackgroundWorkerUnblockSignals();

	if (DatumGetInt32(main_arg) < 0 || db_index >= ft_shared->ndatabases)
		elog(ERROR, "payment worker started with argument %d", DatumGetInt32(main_arg));
	ft_db = &ft_shared->db[db_index];
	if (ft_db->dropping)
		proc_exit(0);			/* DROP DATABASE under way: do not connect */

	BackgroundWorkerInitializeConnection(NameStr(ft_db->dbname), NULL, 0);
	/* every name in outbox.c's SQL resolves to the built-in or ft_orders */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);

	/*
	 * No synchronous_commit override here: claims commit with the
	 * server's own setting, records and releases set it off locally
	 * (ft_xact_begin's async; see the file banner).
	 */

	/*
	 * Every statement of the worker reaches its rows through an index, each
	 * join driven by an array or a CTE of this batch (outbox.c keeps them
	 * with one generic plan each).  Those plans are made once, possibly
	 * while a table is empty or just truncated and analyzed; without
	 * sequential scans, hash and merge joins they cannot turn into a scan
	 * of a whole table per batch as the tables grow (a hashed subplan over
	 * orders, a hash join over all of the outbox).
	 */
	SetConfigOption("enable_seqscan", "off", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("enable_hashjoin", "off", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("enable_mergejoin", "off", PGC_SUSET, PGC_S_OVERRIDE);

	ft_slot_attach(slot_index);

	ft_round_cxt = AllocSetContextCreate(TopMemoryContext, "ft_orders round",
										 ALLOCSET_DEFAULT_SIZES);
	ft_job_cxt = AllocSetContextCreate(TopMemoryContext, "ft_orders jobs",
									   ALLOCSET_DEFAULT_SIZES);
	ft_done = MemoryContextAlloc(TopMemoryContext, sizeof(FtJob *) * FT_MAX_IN_FLIGHT);
	ft_round_done = MemoryContextAlloc(TopMemoryContext, sizeof(FtJob *) * FT_MAX_IN_FLIGHT);
	ft_aborted = MemoryContextAlloc(TopMemoryContext, sizeof(FtJob *) * FT_MAX_IN_FLIGHT);
	ft_claimed = MemoryContextAlloc(TopMemoryContext, sizeof(FtJob *) * FT_MAX_IN_FLIGHT);
	ft_claims = MemoryContextAlloc(TopMemoryContext, sizeof(FtClaim) * FT_MAX_IN_FLIGHT);

	ft_http_init();
	before_shmem_exit(ft_http_on_exit, (Datum) 0);
	ft_load_settings();

	ft_wait_until_ready();
	ereport(LOG,
			(errmsg("payment worker %d started", slot_index + 1)));

	for (;;)
	{
		TimestampTz now;

		MemoryContextReset(ft_round_cxt);
		MemoryContextSwitchTo(ft_round_cxt);

		ft_publish_state();
		if (ft_http_wait(ft_wait_time(GetCurrentTimestamp()), PG_WAIT_EXTENSION) & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			ft_want_claim = true;
		}
		ft_process_signals();
		if (ShutdownRequestPending)
			break;

		ft_nround_done = 0;
		ft_http_collect(ft_on_done);
		ft_stats_completions(ft_round_done, ft_nround_done);

		now = GetCurrentTimestamp();
		ft_sql_step(now);
	}

	MemoryContextSwitchTo(TopMemoryContext);
	ft_shutdown();
}
