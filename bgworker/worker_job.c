/*-------------------------------------------------------------------------
 *
 * worker_job.c
 *	  One payment job, from its claim to its outcome: which request a
 *	  claimed outbox event becomes (the provider builds it), sending it,
 *	  and what its reply means (the provider's verdict, then the worker's
 *	  outcome policy).  The loop in payment_worker.c decides when to claim,
 *	  send and record; this file decides what; the outbox files record.
 *
 * A job lives in the job memory context, not in the loop's per-round
 * context: an HTTP request spans many rounds.  It carries a copy of its
 * claim (FtJob.claim, strings included), from which a provider builds
 * the request and classifies a look-up's reply.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "mb/pg_wchar.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "gateway.h"
#include "gateway_json.h"
#include "gateway_limits.h"
#include "guc.h"
#include "worker.h"

#define FT_LOG_INTERVAL_MS		10000

static MemoryContext ft_job_cxt = NULL;

static const FtProvider *ft_provider = NULL;
static char *ft_url = NULL;		/* gateway_url + provider path; NULL: idle */
static char *ft_base_url = NULL;	/* gateway_url without trailing '/' */
static bool ft_url_hint_logged = false;

/* rate-limited gateway trouble reports */
static TimestampTz ft_last_trouble_log = 0;
static int	ft_trouble_unlogged = 0;
static TimestampTz ft_last_auth_log = 0;

/* the job memory context, under TopMemoryContext: once per process */
void
ft_job_init(void)
{
	ft_job_cxt = AllocSetContextCreate(TopMemoryContext, "ft_orders jobs",
									   ALLOCSET_DEFAULT_SIZES);
}

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
void
ft_job_load_settings(void)
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

/* can the worker send (is a gateway_url set)? */
bool
ft_job_can_send(void)
{
	return ft_url != NULL;
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
					 errhint("Check ft_orders.gateway_token, then reload the configuration. Refused requests never count towards ft_orders.max_attempts: the orders stay pending and are sent again once the gateway accepts the token.")));
		}
		return;
	}

	ft_trouble_unlogged++;
	if (TimestampDifferenceExceeds(ft_last_trouble_log, now, FT_LOG_INTERVAL_MS))
	{
		ereport(LOG,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("payment gateway request failed: %s", job->error),
				 errdetail("%d transient failure(s) since the last report; those orders stay pending and are retried.",
						   ft_trouble_unlogged)));
		ft_last_trouble_log = now;
		ft_trouble_unlogged = 0;
	}
}

/* the string s, copied into the current memory context, or NULL */
static const char *
ft_job_strdup(const char *s)
{
	return s != NULL ? pstrdup(s) : NULL;
}

/* *to = *from, its strings copied into the current memory context */
static void
ft_job_copy_claim(FtClaim *to, const FtClaim *from)
{
	FtPaymentRequest *order = &to->order;

	*to = *from;
	order->payment_key = ft_job_strdup(order->payment_key);
	order->customer_id = ft_job_strdup(order->customer_id);
	order->currency = ft_job_strdup(order->currency);
	order->payment_method = ft_job_strdup(order->payment_method);
	order->items_json = ft_job_strdup(order->items_json);
	order->pending_ref = ft_job_strdup(order->pending_ref);
	order->refund_key = ft_job_strdup(order->refund_key);
	order->refund_ref = ft_job_strdup(order->refund_ref);
}

/*
 * The job for a claimed event, in the job context: the provider builds its
 * request (a body to POST, or a path to GET for a payment the gateway is
 * still working on).
 */
FtJob *
ft_job_new(const FtClaim *claim)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(ft_job_cxt);
	FtJob	   *job = palloc0(sizeof(FtJob));
	const FtPaymentRequest *order = &job->claim.order;

	ft_job_copy_claim(&job->claim, claim);
	strlcpy(job->idempotency_key,
			order->refund_id != 0 ? (order->refund_key ? order->refund_key : "")
			: (order->payment_key ? order->payment_key : ""),
			sizeof(job->idempotency_key));
	job->body = NULL;
	job->body_len = 0;

	if (order->refund_id != 0)
	{
		/* a refund: looked up first when the gateway may have forgotten it */
		job->kind = FT_REQ_REFUND;
		if (job->claim.lookup &&
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
	else if (job->claim.lookup && job->claim.cancel_requested &&
			 ft_provider->cancel_path != NULL &&
			 (job->recheck_path = ft_provider->cancel_path(order)) != NULL)
	{
		/*
		 * A canceled order whose payment is unconfirmed at the gateway:
		 * cancel it there (a customer who abandons 3-D Secure would leave it
		 * action_required for good), under a key of its own.
		 */
		job->kind = FT_REQ_CANCEL;
		snprintf(job->idempotency_key, sizeof(job->idempotency_key), "%s%s",
				 order->payment_key ? order->payment_key : "",
				 FT_CANCEL_KEY_SUFFIX);
		job->body = pstrdup("");
		job->body_len = 0;
	}
	else if (job->claim.lookup && ft_provider->lookup_path != NULL &&
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

/*
 * Send a freshly claimed job; a request that cannot start fails at once,
 * and on_done gets it as a transport error.
 */
void
ft_job_send(FtJob *job, FtHttpDoneCallback on_done)
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
	started = ft_http_start(job, url, job->idempotency_key,
							ft_provider->content_type,
							ft_provider->request_header ? ft_provider->request_header() : NULL,
							job->body,
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
		on_done(job, &reply, 0.0);
	}
}

/*
 * A 2xx reply that settled nothing: unreadable (malformed, oversize, no
 * usable status or id), or naming a payment still under way (Stripe's
 * processing, or a look-up that must fetch the intent).  The gateway
 * answered, so it is no failure for the circuit, and it may have charged
 * or still may, so the work is never given up on for it (ft_job_finish
 * looks it up, or re-checks the payment it names).  Clears c->transient
 * for such a reply and returns true.
 */
static bool
ft_job_reply_unsettled(const FtGatewayReply *reply, FtClassification *c)
{
	if (reply->http_status < 200 || reply->http_status > 299 ||
		c->outcome != FT_OUTCOME_RETRY)
		return false;
	c->transient = false;
	return true;
}

/*
 * The values of a classification that the job stores, checked once more
 * before they reach a table of this database: the payment id and the
 * client secret printable ASCII of bounded length, next_action JSON that
 * jsonb accepts in this database's encoding and that fits a NOTIFY
 * payload (else a marker, see ft_json_next_action).  The job keeps them
 * in the job context; the checks allocate in the current one.
 */
static void
ft_job_take_values(FtJob *job, const FtClassification *c)
{
	bool		utf8 = (GetDatabaseEncoding() == PG_UTF8);
	char	   *next_action = ft_json_next_action(c->next_action, utf8);

	job->payment_id = NULL;
	job->client_secret = NULL;
	job->next_action = NULL;
	if (c->payment_id != NULL)
		job->payment_id = MemoryContextStrdup(ft_job_cxt,
											  ft_gateway_clean_text(c->payment_id,
																	FT_STORED_ID_MAX));
	if (c->client_secret != NULL)
		job->client_secret = MemoryContextStrdup(ft_job_cxt,
												 ft_gateway_clean_text(c->client_secret,
																	   FT_STORED_ID_MAX));
	if (next_action != NULL)
		job->next_action = MemoryContextStrdup(ft_job_cxt, next_action);
}

/*
 * A job's request finished with reply: the provider's verdict, then the
 * worker's outcome policy (canceled orders, legacy re-sends, schemas
 * without action_required, max_attempts, the gateway's pause), in the
 * job's fields.
 */
void
ft_job_finish(FtJob *job, const FtGatewayReply *reply, double latency_ms)
{
	FtClassification c;
	MemoryContext oldcxt;
	bool		counts;
	bool		unsettled;

	memset(&c, 0, sizeof(c));
	switch (job->kind)
	{
		case FT_REQ_CHARGE:
			ft_provider->classify_reply(reply, &c);
			break;
		case FT_REQ_LOOKUP:
			ft_provider->classify_lookup(reply, &job->claim.order, &c);
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
	if (c.outcome == FT_OUTCOME_UNKNOWN && job->claim.cancel_requested &&
		(job->kind == FT_REQ_LOOKUP || job->kind == FT_REQ_CANCEL))
		c.outcome = FT_OUTCOME_CANCELED;

	/*
	 * The gateway holds this order's key with other parameters: its first
	 * request went out in the legacy form, without the payment_key (sent
	 * before the payment_key was part of the request).  Sent again in that
	 * form: FT_LEGACY_REQUEST_NOTE in the recorded error is what the next
	 * claim finds (outbox_claim.c).  Only for an order whose earlier request may
	 * have gone out: a first request refused so is not ours to reinterpret.
	 */
	if (c.idempotency_refused && job->kind == FT_REQ_CHARGE &&
		job->body != NULL && !job->claim.order.legacy_request &&
		job->claim.order_attempt > 1)
	{
		ft_gateway_set_retry(&c, psprintf("%s; re-sending it in that form",
										  FT_LEGACY_REQUEST_NOTE));
		c.transient = false;
		ereport(LOG,
				(errmsg("order " INT64_FORMAT "'s first request went out without its payment_key; re-sending it in that form",
						job->claim.order.order_id),
				 errdetail("The gateway refused the request under the order's Idempotency-Key: the key was first used with other parameters.")));
	}

	/* a look-up that found other orders' payments: say which, settle none */
	if (c.ignored_foreign && job->kind == FT_REQ_LOOKUP)
		ereport(LOG,
				(errmsg("look-up of order " INT64_FORMAT " ignored payments that are not the order's",
						job->claim.order.order_id),
				 errdetail("%s", c.error ? c.error : "")));

	/* a schema older than 1.3 has no action_required: re-check later */
	if (c.outcome == FT_OUTCOME_ACTION_REQUIRED && job->claim.schema < FT_SCHEMA_1_3)
	{
		c.outcome = FT_OUTCOME_RETRY;
		c.transient = false;
	}

	unsettled = ft_job_reply_unsettled(reply, &c);
	ft_job_take_values(job, &c);

	oldcxt = MemoryContextSwitchTo(ft_job_cxt);
	job->http_status = reply->http_status;
	job->latency_ms = latency_ms;
	job->listened_ms = Min(reply->listened_ms, latency_ms);
	job->transient = c.transient;
	job->timed_out = reply->timed_out;
	job->retry_after_ms = c.retry_after_ms;
	job->outcome = c.outcome;

	/*
	 * max_attempts counts what the order itself got, not the gateway's
	 * outage (attempts.c): an attempt that does not count never gives the
	 * order up, and is given back when its retry is recorded.  Not on a
	 * schema older than 1.3, whose update to 1.3 takes outbox.attempts > 0
	 * for "sent" (first_sent_at): there it stays counted, and only the
	 * first counted failure after an outage may end the order.
	 */
	counts = (c.outcome != FT_OUTCOME_RETRY ||
			  ft_attempt_counts(reply->http_status, c.auth_problem, job->is_probe));
	job->uncounted = (!counts && job->claim.schema >= FT_SCHEMA_1_3) ? 1 : 0;
	if (c.outcome == FT_OUTCOME_RETRY && counts &&
		job->claim.event_attempts >= ft_max_attempts &&
		unsettled && job->claim.schema >= FT_SCHEMA_1_3 &&
		job->claim.order.refund_id == 0 &&
		(job->kind == FT_REQ_CHARGE || job->kind == FT_REQ_LOOKUP))
	{
		/*
		 * The gateway answered, but said nothing final: it may have
		 * charged, or still may.  Never given up on: looked up (or the
		 * payment it named re-checked) until a reply says.
		 */
		job->look_up = (c.payment_id == NULL);
		job->error = psprintf("%s after %d attempts: %s",
							  job->look_up ? "looking it up" : "re-checking it",
							  job->claim.event_attempts,
							  c.error ? c.error : "unreadable reply");
	}
	else if (c.outcome == FT_OUTCOME_RETRY && counts &&
			 job->claim.event_attempts >= ft_max_attempts)
	{
		job->outcome = FT_OUTCOME_FAILED;
		job->error = psprintf("gave up after %d attempts: %s",
							  job->claim.event_attempts, c.error ? c.error : "unknown error");
	}
	else
		job->error = c.error ? pstrdup(c.error) : NULL;
	if (job->outcome == FT_OUTCOME_RETRY && c.retry_after_ms >= 0 &&
		(reply->http_status == 429 || reply->http_status == 503))
	{
		/*
		 * The gateway named a time: this order is due again right then,
		 * not later.  A 429, or a 503 of a gateway unavailable as a whole,
		 * holds every worker's requests until then too (admission.c); a
		 * sporadic 503 only this order.
		 */
		job->delay_ms = Min(c.retry_after_ms, Max(ft_backoff_max_ms, 0));
		if (ft_admission_pause_is_shared(reply->http_status))
			ft_admission_pause(TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														   job->delay_ms));
	}
	else if (job->outcome == FT_OUTCOME_RETRY)
	{
		/*
		 * An attempt that does not count still backs off by the order's
		 * requests so far (a refund's: its counted attempts), so that what
		 * keeps failing outside the circuit's judgement is spaced out.
		 */
		int			n = job->claim.event_attempts;

		if (!counts && job->claim.order.refund_id == 0)
			n = Max(n, job->claim.order_attempt);
		job->delay_ms = ft_backoff_delay_ms(n, c.retry_after_ms);
	}
	MemoryContextSwitchTo(oldcxt);

	if (job->outcome == FT_OUTCOME_FAILED)
		ft_attempt_report_failed(job->claim.order.order_id,
								 job->claim.order.refund_id,
								 job->claim.event_id, job->error);
	else if (c.transient)
		ft_report_trouble(job, c.auth_problem);
}

/* free a job once its outcome is recorded (or its lease released) */
void
ft_job_free(FtJob *job)
{
	const FtPaymentRequest *order = &job->claim.order;
	const char *const strings[] = {
		order->payment_key, order->customer_id, order->currency,
		order->payment_method, order->items_json, order->pending_ref,
		order->refund_key, order->refund_ref
	};

	for (int i = 0; i < lengthof(strings); i++)
		if (strings[i] != NULL)
			pfree((char *) strings[i]);
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

/* free every job at once: none is in flight or waits to be recorded */
void
ft_job_free_all(void)
{
	MemoryContextReset(ft_job_cxt);
}
