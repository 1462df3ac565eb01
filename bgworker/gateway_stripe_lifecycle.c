/*-------------------------------------------------------------------------
 *
 * gateway_stripe_lifecycle.c
 *	  Reconciliation and refunds of the Stripe providers (docs/providers.md,
 *	  "Reconciliation and refunds"): the look-up of a PaymentIntent by id
 *	  or by a search on metadata[order_id], POST /v1/refunds and the
 *	  look-up of a refund.  Pure functions of their arguments, like the
 *	  rest of the providers: whatever Stripe sends is an outcome, never an
 *	  ERROR.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "gateway_stripe.h"

/*
 * Reconciliation of a PaymentIntent: by its stored id when the order has
 * one, else a search by metadata[order_id] (Stripe's search API; a
 * PaymentIntent created under a lost reply has no stored id).
 */
char *
ft_stripe_intent_lookup(const FtPaymentRequest *req)
{
	char		query[64];
	char	   *q;
	char	   *path;

	path = ft_stripe_id_path(req->pending_ref, "pi_", "/v1/payment_intents", "");
	if (path != NULL)
		return path;
	snprintf(query, sizeof(query), "metadata['order_id']:'" INT64_FORMAT "'",
			 req->order_id);
	q = curl_easy_escape(NULL, query, 0);
	if (q == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory encoding a Stripe request")));
	path = psprintf("/v1/payment_intents/search?query=%s", q);
	curl_free(q);
	return path;
}

/*
 * A look-up reply: an object (GET by id) is classified as a reply to the
 * creation; a search result by its most telling element, and an empty one
 * means the gateway has no such payment (FT_OUTCOME_UNKNOWN), as does a
 * 404 resource_missing for a stored id (a 404 without that code, say for
 * a URL the gateway does not know, is only a transient failure: "unknown"
 * leads to a new charge, so it must be Stripe's own word).  Nothing but transient failures otherwise: a GET
 * charges nothing.
 */
void
ft_stripe_classify_lookup(const FtGatewayReply *reply, FtClassification *result)
{
	FtStripeFields f;
	int			status = reply->http_status;

	if (!ft_stripe_read_reply(reply, result, &f))
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
		if (f.ndata == 0)
		{
			result->outcome = FT_OUTCOME_UNKNOWN;
			result->error = pstrdup("look-up: no PaymentIntent carries this order's id");
			return;
		}
		if (f.best_id == NULL)
		{
			ft_gateway_set_retry(result, psprintf("HTTP %d unexpected search result", status));
			return;
		}
		/* classify the element as if it were the reply itself */
		f.id = f.best_id;
		f.status = f.best_status;
		ft_stripe_classify_object(status, &f, result);
		if (result->outcome == FT_OUTCOME_ACTION_REQUIRED)
		{
			/* the search result lacks next_action: GET the intent by id */
			result->outcome = FT_OUTCOME_RETRY;
			result->transient = false;
		}
	}
	else
		ft_stripe_classify_reply(reply, result);

	if (status < 200 || status > 299 || result->outcome == FT_OUTCOME_FAILED)
		ft_gateway_lookup_retry(reply, result);
}

/*
 * POST /v1/refunds: the order's PaymentIntent (or charge, for the Charges
 * API) and the amount; the refund's ids as metadata.
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

	if (!ft_stripe_read_reply(reply, result, &f))
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
	result->retry_after_ms = ft_parse_retry_after(reply->retry_after, reply->now);
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

	if (!ft_stripe_read_reply(reply, result, &f))
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

	if (!ft_stripe_read_reply(reply, result, &f))
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
		result->retry_after_ms = ft_parse_retry_after(reply->retry_after,
													  reply->now);
	}
}
