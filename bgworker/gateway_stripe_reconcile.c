/*-------------------------------------------------------------------------
 *
 * gateway_stripe_reconcile.c
 *	  Reconciliation and refunds of the Stripe providers (docs/providers.md,
 *	  "Reconciliation and refunds"): the look-up of a PaymentIntent by id
 *	  or by a search on metadata[payment_key], POST /v1/refunds and the
 *	  look-up of a refund.  Pure functions of their arguments, like the
 *	  rest of the providers: whatever Stripe sends is an outcome, never an
 *	  ERROR.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include <curl/curl.h>

#include "gateway_stripe.h"

/* a payment_key fit for a search query: [0-9A-Fa-f-], 1..64 */
static bool
stripe_valid_key(const char *s)
{
	size_t		n;

	if (s == NULL)
		return false;
	n = strnlen(s, 65);
	if (n == 0 || n > 64)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isxdigit((unsigned char) s[i]) && s[i] != '-')
			return false;
	return true;
}

/*
 * Reconciliation of a PaymentIntent: by its stored id when the order has
 * one, else a search (Stripe's search API; a PaymentIntent created under a
 * lost reply has no stored id) for the intents that carry the order's
 * payment_key.  Only for an order whose first request may have gone out
 * before the payment_key was sent as metadata (req->match_by_order_id,
 * placed before 1.4) does it also search its order_id: such an intent
 * carries only the order_id, which is numbered per database and which any
 * system on the account may set, so it is not unique.
 * ft_stripe_classify_lookup keeps only the elements that are the order's
 * own.  limit=100: every candidate on one page, whatever other databases'
 * orders share the id.
 */
char *
ft_stripe_intent_lookup(const FtPaymentRequest *req)
{
	StringInfoData query;
	char	   *q;
	char	   *path;

	path = ft_stripe_id_path(req->pending_ref, "pi_", "/v1/payment_intents", "");
	if (path != NULL)
		return path;

	initStringInfo(&query);
	if (stripe_valid_key(req->payment_key))
		appendStringInfo(&query, "metadata['payment_key']:'%s'", req->payment_key);
	if (req->match_by_order_id || query.len == 0)
		appendStringInfo(&query, "%smetadata['order_id']:'" INT64_FORMAT "'",
						 query.len > 0 ? " OR " : "", req->order_id);
	q = curl_easy_escape(NULL, query.data, query.len);
	pfree(query.data);
	if (q == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory encoding a Stripe request")));
	path = psprintf("/v1/payment_intents/search?query=%s&limit=%d", q,
					FT_STRIPE_ELEMS_MAX);
	curl_free(q);
	return path;
}

/*
 * Which element of a search result tells most about the order's payment:
 * a succeeded one, then one under way, then any other.
 */
static int
stripe_status_rank(const char *status)
{
	if (status == NULL)
		return 0;
	if (strcmp(status, "succeeded") == 0)
		return 3;
	if (strcmp(status, "processing") == 0 || strcmp(status, "requires_action") == 0 ||
		strcmp(status, "pending") == 0)
		return 2;
	return 1;
}

/*
 * Why the search result element e is not the payment of order req, or
 * NULL when it is: it must carry the order's payment_key, or, for an order
 * whose first request may have gone out before the payment_key was sent
 * (req->match_by_order_id), no payment_key and the order's order_id; and
 * in any case the order's amount and currency.
 */
static const char *
stripe_elem_foreign(const FtStripeElem *e, const FtPaymentRequest *req)
{
	char		num[32];

	if (e->meta_payment_key != NULL && e->meta_payment_key[0] != '\0')
	{
		if (req->payment_key == NULL ||
			pg_strcasecmp(e->meta_payment_key, req->payment_key) != 0)
			return "another order's payment_key";
	}
	else if (!req->match_by_order_id)
		return "no payment_key, and the order's first request carried it";
	else
	{
		snprintf(num, sizeof(num), INT64_FORMAT, req->order_id);
		if (e->meta_order_id == NULL || strcmp(e->meta_order_id, num) != 0)
			return "neither the order's payment_key nor its order_id";
	}
	snprintf(num, sizeof(num), INT64_FORMAT, req->amount_minor);
	if (e->amount == NULL || strcmp(e->amount, num) != 0 ||
		e->currency == NULL || req->currency == NULL ||
		pg_strcasecmp(e->currency, req->currency) != 0)
		return "another amount or currency than the order's";
	return NULL;
}

/*
 * A look-up reply: an object (GET by id) is classified as a reply to the
 * creation; a search result by its most telling element among those that
 * are the order's own (stripe_elem_foreign: the others are ignored, and
 * said so in result->error with ignored_foreign set, for the worker to
 * log).  No element of the order's, on a complete result, means the
 * gateway has no such payment (FT_OUTCOME_UNKNOWN), as does a 404
 * resource_missing for a stored id (a 404 without that code, say for a URL
 * the gateway does not know, is only a transient failure: "unknown" leads
 * to a new charge, so it must be Stripe's own word).  Nothing but
 * transient failures otherwise: a GET charges nothing.
 */
void
ft_stripe_classify_lookup(const FtGatewayReply *reply,
						  const FtPaymentRequest *req,
						  FtClassification *result)
{
	FtStripeFields f;
	int			status = reply->http_status;

	if (!ft_stripe_json_read_reply(reply, result, &f))
		return;
	if (status == 404 && f.err_code != NULL &&
		strcmp(f.err_code, "resource_missing") == 0)
	{
		/* only "no such object", not a 404 for an unknown URL */
		result->outcome = FT_OUTCOME_UNKNOWN;
		result->error = pstrdup("look-up: the gateway has no such payment");
		return;
	}
	if (status >= 200 && status <= 299 && f.top_is_object &&
		f.object != NULL && strcmp(f.object, "search_result") == 0)
	{
		const FtStripeElem *best = NULL;
		const FtStripeElem *ignored = NULL;
		const char *why = NULL;
		int			nignored = 0;
		int			best_rank = 0;
		char	   *note = NULL;

		for (int i = 0; i < f.nelems; i++)
		{
			const FtStripeElem *e = &f.elems[i];
			const char *w;

			if (!ft_stripe_valid_id(e->id))
				continue;
			if ((w = stripe_elem_foreign(e, req)) != NULL)
			{
				if (nignored++ == 0)
				{
					ignored = e;
					why = w;
				}
				continue;
			}
			if (stripe_status_rank(e->status) > best_rank)
			{
				best = e;
				best_rank = stripe_status_rank(e->status);
			}
		}
		if (ignored != NULL)
		{
			result->ignored_foreign = true;
			note = psprintf("look-up: ignored %d payment(s) not the order's, e.g. %s (%s %s, %s)",
							nignored,
							ft_gateway_clean_text(ignored->id, FT_STRIPE_ID_MAX),
							ignored->amount ? ft_gateway_clean_text(ignored->amount, 32) : "?",
							ignored->currency ? ft_gateway_clean_text(ignored->currency, 16) : "?",
							why);
		}
		if (best == NULL)
		{
			if (f.nelems > 0 && nignored == 0)
				ft_gateway_set_retry(result, psprintf("HTTP %d unexpected search result", status));
			else if (f.has_more || f.ndata > f.nelems)
				ft_gateway_set_retry(result, psprintf("HTTP %d search result incomplete: the order's payment may be on a later page", status));
			else
			{
				result->outcome = FT_OUTCOME_UNKNOWN;
				result->error = note ? note :
					pstrdup("look-up: no PaymentIntent carries this order's payment_key");
			}
			return;
		}
		/* classify the element as if it were the reply itself */
		f.id = best->id;
		f.status = best->status;
		ft_stripe_classify_object(status, &f, result);
		if (result->outcome == FT_OUTCOME_ACTION_REQUIRED)
		{
			/* the search result lacks next_action: GET the intent by id */
			result->outcome = FT_OUTCOME_RETRY;
			result->transient = false;
		}
		if (note != NULL && result->error == NULL)
			result->error = note;
	}
	else
		ft_stripe_classify_reply(reply, result);

	if (status < 200 || status > 299 || result->outcome == FT_OUTCOME_FAILED)
		ft_gateway_lookup_retry(reply, result);
}

/*
 * POST /v1/refunds: the order's PaymentIntent (or charge, for the Charges
 * API) and the amount; the refund's ids as metadata: refund_id (the row)
 * and refund_key (its Idempotency-Key, unique per database and server,
 * which apply_gateway_event matches a refund event by), the latter only
 * for a refund created from 1.5 on: Stripe refuses a key re-sent with
 * other parameters than its first request's.
 */
void
ft_stripe_build_refund(const FtPaymentRequest *req, StringInfo body)
{
	char		amount[32];
	char		refund_id[32];
	const char *ref = req->pending_ref ? req->pending_ref : "";

	resetStringInfo(body);
	ft_stripe_form_add(body, strncmp(ref, "pi_", 3) == 0 ? "payment_intent" : "charge", ref);
	snprintf(amount, sizeof(amount), INT64_FORMAT, req->refund_amount);
	ft_stripe_form_add(body, "amount", amount);
	snprintf(refund_id, sizeof(refund_id), INT64_FORMAT, req->refund_id);
	ft_stripe_form_add(body, "metadata[refund_id]", refund_id);
	if (req->refund_key_in_metadata && stripe_valid_key(req->refund_key))
		ft_stripe_form_add(body, "metadata[refund_key]", req->refund_key);
}

/*
 * A Refund object: succeeded -> refunded; failed / canceled -> refused;
 * pending / requires_action -> re-checked later by its id (kept in
 * refunds.gateway_refund_id).  402 and 400 refuse it for good
 * (charge_already_refunded, amount too large, ...); the rest is transient.
 */
void
ft_stripe_classify_refund(const FtGatewayReply *reply, FtClassification *result)
{
	FtStripeFields f;
	int			status = reply->http_status;

	if (!ft_stripe_json_read_reply(reply, result, &f))
		return;
	if (status >= 200 && status <= 299 && f.top_is_object &&
		f.status != NULL && ft_stripe_valid_id(f.id))
	{
		if (strcmp(f.status, "succeeded") == 0)
		{
			result->outcome = FT_OUTCOME_REFUNDED;
			result->payment_id = pstrdup(f.id);
		}
		else if (strcmp(f.status, "failed") == 0 || strcmp(f.status, "canceled") == 0)
		{
			result->outcome = FT_OUTCOME_REFUND_FAILED;
			result->payment_id = pstrdup(f.id);
			result->error = psprintf("refund %s %s",
									 ft_gateway_clean_text(f.id, FT_STRIPE_ID_MAX),
									 ft_gateway_clean_text(f.status, FT_STRIPE_REASON_MAX));
		}
		else
		{
			result->outcome = FT_OUTCOME_RETRY;
			result->transient = false;
			result->payment_id = pstrdup(f.id);
			result->error = psprintf("refund %s %s: re-checking later",
									 ft_gateway_clean_text(f.id, FT_STRIPE_ID_MAX),
									 ft_gateway_clean_text(f.status, FT_STRIPE_REASON_MAX));
		}
		return;
	}
	if (status >= 200 && status <= 299)
		ft_gateway_set_retry(result, psprintf("HTTP %d unexpected refund reply", status));
	else if (status == 402 || status == 400)
	{
		result->outcome = FT_OUTCOME_REFUND_FAILED;
		result->error = ft_stripe_reason(status, &f);
		return;
	}
	else
	{
		ft_gateway_set_retry(result, ft_stripe_reason(status, &f));
		result->auth_problem = (status == 401 || status == 403);
	}
	result->retry_after_ms = ft_gateway_parse_retry_after(reply->retry_after, reply->now);
}

/* a refund is looked up by its id once the gateway gave one */
char *
ft_stripe_refund_lookup(const FtPaymentRequest *req)
{
	return ft_stripe_id_path(req->refund_ref, "re_", "/v1/refunds", "");
}

void
ft_stripe_classify_refund_lookup(const FtGatewayReply *reply,
							  FtClassification *result)
{
	FtStripeFields f;

	if (!ft_stripe_json_read_reply(reply, result, &f))
		return;
	if (reply->http_status == 404 && f.err_code != NULL &&
		strcmp(f.err_code, "resource_missing") == 0)
	{
		result->outcome = FT_OUTCOME_UNKNOWN;
		result->error = pstrdup("look-up: the gateway has no such refund");
		return;
	}
	ft_stripe_classify_refund(reply, result);
	if (reply->http_status < 200 || reply->http_status > 299)
		ft_gateway_lookup_retry(reply, result);
}

/*
 * The cancel of a canceled order's PaymentIntent that is still unconfirmed
 * (requires_action and the like): POST /v1/payment_intents/{id}/cancel,
 * by the stored id only (without one the order is looked up instead).
 */
char *
ft_stripe_intent_cancel(const FtPaymentRequest *req)
{
	return ft_stripe_id_path(req->pending_ref, "pi_", "/v1/payment_intents",
							 "/cancel");
}

/*
 * The reply to a cancel: the PaymentIntent, canceled -> canceled (never
 * charged).  Stripe refuses to cancel an intent that succeeded or is
 * processing with 400 payment_intent_unexpected_state and the intent in
 * error.payment_intent: that intent is classified instead (succeeded ->
 * paid, then refunded as any canceled order that turned out paid;
 * processing -> re-checked later).  404 resource_missing: no such
 * payment (the caller takes it as never charged).  Anything else is
 * transient, as for a look-up: the cancel is sent again.
 */
void
ft_stripe_classify_cancel(const FtGatewayReply *reply, FtClassification *result)
{
	FtStripeFields f;
	int			status = reply->http_status;

	if (!ft_stripe_json_read_reply(reply, result, &f))
		return;
	if (status >= 200 && status <= 299 && f.top_is_object &&
		f.status != NULL && strcmp(f.status, "canceled") == 0 &&
		ft_stripe_valid_id(f.id))
	{
		result->outcome = FT_OUTCOME_CANCELED;
		result->payment_id = pstrdup(f.id);
		return;
	}
	if (status == 400 && f.err_code != NULL &&
		strcmp(f.err_code, "payment_intent_unexpected_state") == 0 &&
		f.err_pi_status != NULL && ft_stripe_valid_id(f.err_pi_id))
	{
		if (strcmp(f.err_pi_status, "canceled") == 0)
		{
			result->outcome = FT_OUTCOME_CANCELED;
			result->payment_id = pstrdup(f.err_pi_id);
			return;
		}
		f.id = f.err_pi_id;
		f.status = f.err_pi_status;
		ft_stripe_classify_object(200, &f, result);
	}
	else if (status == 404 && f.err_code != NULL &&
			 strcmp(f.err_code, "resource_missing") == 0)
	{
		result->outcome = FT_OUTCOME_UNKNOWN;
		result->error = pstrdup("cancel: the gateway has no such payment");
		return;
	}
	else if (status >= 200 && status <= 299 && f.top_is_object)
		ft_stripe_classify_object(status, &f, result);
	else
		ft_gateway_set_retry(result, ft_stripe_reason(status, &f));

	/* a payment still waiting for the customer is canceled again later */
	if (result->outcome == FT_OUTCOME_ACTION_REQUIRED ||
		result->outcome == FT_OUTCOME_DECLINED ||
		result->outcome == FT_OUTCOME_FAILED)
		ft_gateway_set_retry(result, result->error ? result->error :
							 pstrdup("cancel: unexpected reply"));
	if (result->outcome == FT_OUTCOME_RETRY)
	{
		result->auth_problem = (status == 401 || status == 403);
		result->retry_after_ms = ft_gateway_parse_retry_after(reply->retry_after,
													  reply->now);
	}
}
