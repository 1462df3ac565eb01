/*-------------------------------------------------------------------------
 *
 * gateway_stripe.c
 *	  The Stripe gateway providers: "stripe" (PaymentIntents, confirmed at
 *	  creation) and "stripe_charges" (the older Charges API).
 *
 * Requests are application/x-www-form-urlencoded (every name and value
 * through curl_easy_escape), with the order's payment_key as
 * Idempotency-Key (added by the transport).  Replies are parsed with
 * PostgreSQL's own JSON parser (gateway_stripe_json.c): the top-level
 * "id", "object" and "status", and the "type", "code", "decline_code" and
 * "message" of a top-level "error" object.  Like the generic provider,
 * everything here is a pure function of its arguments, and whatever the
 * gateway sends the result is an outcome, never an ERROR.
 *
 * Outcomes (Stripe's documented semantics):
 *	2xx status "succeeded"						paid, payment_id = intent/charge id
 *	2xx status "processing"						stays pending; the id is kept in
 *	  (charges: "pending")						orders.payment_id and the next
 *												attempt GETs it instead of
 *												creating a new payment
 *	2xx status "requires_action"				action_required, with next_action
 *												and client_secret; looked up
 *												after ft_orders.action_timeout
 *	2xx "requires_payment_method" / charge "failed"	declined
 *	2xx "canceled"								failed
 *	402 (card_error)							declined
 *	400 idempotency_error						failed, with an explicit reason
 *	400 other (invalid_request_error)			failed
 *	401, 403									retry, circuit, WARNING
 *	409, 429, 5xx, anything else				retry (transient)
 *	Stripe-Should-Retry: true / false on a non-2xx reply overrides the
 *	status code (retry / fail), except that 401/403 are always retried.
 *	Retry-After is honoured on every retry.
 *
 * Reconciliation, refunds and the cancel of an unconfirmed PaymentIntent
 * are in gateway_stripe_reconcile.c; what the Stripe files share is
 * declared in gateway_stripe.h.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "common/jsonapi.h"
#include "mb/pg_wchar.h"

#include "compat.h"
#include "gateway.h"
#include "gateway_stripe.h"
#include "guc.h"

static void stripe_build_intent(const FtPaymentRequest *req, StringInfo body);
static void stripe_build_charge(const FtPaymentRequest *req, StringInfo body);
static char *stripe_intent_recheck(const FtPaymentRequest *req);
static char *stripe_charge_recheck(const FtPaymentRequest *req);
static const char *stripe_version_header(void);

/*
 * What both Stripe providers share: the form encoding, the classification
 * of a reply and of a look-up, and refunds (a Refund names either a
 * PaymentIntent or a charge).
 */
#define FT_STRIPE_PROVIDER_COMMON \
	.classify_reply = ft_stripe_classify_reply, \
	.content_type = "application/x-www-form-urlencoded", \
	.request_header = stripe_version_header, \
	.classify_lookup = ft_stripe_classify_lookup, \
	.refund_path = "/v1/refunds", \
	.build_refund = ft_stripe_build_refund, \
	.classify_refund = ft_stripe_classify_refund, \
	.refund_lookup_path = ft_stripe_refund_lookup, \
	.classify_refund_lookup = ft_stripe_classify_refund_lookup

const FtProvider ft_provider_stripe = {
	.path = "/v1/payment_intents",
	.build_request = stripe_build_intent,
	.recheck_path = stripe_intent_recheck,
	.lookup_path = ft_stripe_intent_lookup,
	.cancel_path = ft_stripe_intent_cancel,
	.classify_cancel = ft_stripe_classify_cancel,
	FT_STRIPE_PROVIDER_COMMON
};

/*
 * The Charges API has no search: a charge is looked up by its stored id
 * only (stripe_charge_recheck); without one it is sent again under its
 * key (docs/providers.md, "Reconciliation and refunds").
 */
const FtProvider ft_provider_stripe_charges = {
	.path = "/v1/charges",
	.build_request = stripe_build_charge,
	.recheck_path = stripe_charge_recheck,
	.lookup_path = stripe_charge_recheck,
	FT_STRIPE_PROVIDER_COMMON
};

/*
 * "Stripe-Version: <ft_orders.stripe_api_version>", the API version the
 * replies are parsed for, or NULL when the setting is empty (the
 * account's default version).  The setting's check hook allows only
 * letters, digits, '-', '.' and '_', at most FT_STRIPE_API_VERSION_MAX.
 */
static const char *
stripe_version_header(void)
{
	static char line[sizeof("Stripe-Version: ") + FT_STRIPE_API_VERSION_MAX];

	if (ft_stripe_api_version == NULL || ft_stripe_api_version[0] == '\0')
		return NULL;
	snprintf(line, sizeof(line), "Stripe-Version: %s", ft_stripe_api_version);
	return line;
}

/* append "&name=value" (no '&' first), both percent-encoded */
void
ft_stripe_form_add(StringInfo body, const char *name, const char *value)
{
	char	   *n = curl_easy_escape(NULL, name, 0);
	char	   *v = curl_easy_escape(NULL, value, 0);

	if (n == NULL || v == NULL)
	{
		if (n)
			curl_free(n);
		if (v)
			curl_free(v);
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory encoding a Stripe request")));
	}
	if (body->len > 0)
		appendStringInfoChar(body, '&');
	appendStringInfoString(body, n);
	appendStringInfoChar(body, '=');
	appendStringInfoString(body, v);
	curl_free(n);
	curl_free(v);
}

/*
 * amount, lower-case currency, metadata: common to both APIs.
 *
 * metadata[payment_key] identifies the order at Stripe: order ids are
 * numbered per database, and several databases may share one account, so
 * the look-up and the webhooks find an order by its payment_key.  An order
 * whose first request went out without it (sent before the payment_key
 * was part of the request) is re-sent without it: Stripe compares the
 * parameters of a repeated Idempotency-Key and refuses different ones
 * (req->legacy_request, FT_LEGACY_REQUEST_NOTE in gateway.h).
 */
static void
stripe_form_common(const FtPaymentRequest *req, StringInfo body)
{
	char		amount[32];
	char	   *currency = pstrdup(req->currency ? req->currency : "");
	char		order_id[32];

	for (char *p = currency; *p; p++)
		*p = pg_ascii_tolower((unsigned char) *p);
	snprintf(amount, sizeof(amount), INT64_FORMAT, req->amount_minor);
	snprintf(order_id, sizeof(order_id), INT64_FORMAT, req->order_id);

	ft_stripe_form_add(body, "amount", amount);
	ft_stripe_form_add(body, "currency", currency);
	ft_stripe_form_add(body, "metadata[order_id]", order_id);
	ft_stripe_form_add(body, "metadata[customer_id]", req->customer_id ? req->customer_id : "");
	if (!req->legacy_request && req->payment_key != NULL)
		ft_stripe_form_add(body, "metadata[payment_key]", req->payment_key);
	pfree(currency);
}

/*
 * POST /v1/payment_intents, confirmed at once.  Redirect-based payment
 * methods are excluded: nobody is there to follow a redirect.
 */
static void
stripe_build_intent(const FtPaymentRequest *req, StringInfo body)
{
	resetStringInfo(body);
	stripe_form_common(req, body);
	if (req->payment_method != NULL)
		ft_stripe_form_add(body, "payment_method", req->payment_method);
	ft_stripe_form_add(body, "confirm", "true");
	ft_stripe_form_add(body, "automatic_payment_methods[enabled]", "true");
	ft_stripe_form_add(body, "automatic_payment_methods[allow_redirects]", "never");
}

/* POST /v1/charges with source = the order's payment method */
static void
stripe_build_charge(const FtPaymentRequest *req, StringInfo body)
{
	resetStringInfo(body);
	stripe_form_common(req, body);
	if (req->payment_method != NULL)
		ft_stripe_form_add(body, "source", req->payment_method);
}

/* a Stripe object id: [A-Za-z0-9_], 1..255 */
bool
ft_stripe_valid_id(const char *s)
{
	size_t		n;

	if (s == NULL)
		return false;
	n = strnlen(s, FT_STRIPE_ID_MAX + 1);
	if (n == 0 || n > FT_STRIPE_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
	{
		char		c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '_'))
			return false;
	}
	return true;
}

/*
 * The path base/id followed by suffix, when id is a Stripe id of the kind
 * its prefix names ("pi_", "re_", ...); else NULL.
 */
char *
ft_stripe_id_path(const char *id, const char *prefix, const char *base,
				  const char *suffix)
{
	if (id == NULL || strncmp(id, prefix, strlen(prefix)) != 0 ||
		!ft_stripe_valid_id(id))
		return NULL;
	return psprintf("%s/%s%s", base, id, suffix);
}

static char *
stripe_intent_recheck(const FtPaymentRequest *req)
{
	/* only a PaymentIntent id can be re-checked here */
	return ft_stripe_id_path(req->pending_ref, "pi_", "/v1/payment_intents", "");
}

/* a charge (ch_) or a payment of another method (py_) */
static char *
stripe_charge_recheck(const FtPaymentRequest *req)
{
	char	   *path = ft_stripe_id_path(req->pending_ref, "ch_", "/v1/charges", "");

	return path ? path : ft_stripe_id_path(req->pending_ref, "py_", "/v1/charges", "");
}

/* "HTTP 400 invalid_request_error amount_too_large: Amount must be ..." */
char *
ft_stripe_reason(int status, const FtStripeFields *f)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "HTTP %d", status);
	if (f->err_type != NULL)
		appendStringInfo(&buf, " %s", ft_gateway_clean_text(f->err_type, FT_STRIPE_REASON_MAX));
	if (f->err_code != NULL)
		appendStringInfo(&buf, " %s", ft_gateway_clean_text(f->err_code, FT_STRIPE_REASON_MAX));
	if (f->err_message != NULL)
		appendStringInfo(&buf, ": %s", ft_gateway_clean_text(f->err_message, FT_STRIPE_REASON_MAX));
	return buf.data;
}

static void
stripe_declined(FtClassification *result, const FtStripeFields *f,
				   const char *fallback)
{
	result->outcome = FT_OUTCOME_DECLINED;
	if (f->err_code != NULL && f->err_decline_code != NULL)
		result->error = psprintf("declined: %s (%s)",
								 ft_gateway_clean_text(f->err_code, FT_STRIPE_REASON_MAX),
								 ft_gateway_clean_text(f->err_decline_code, FT_STRIPE_REASON_MAX));
	else if (f->err_decline_code != NULL)
		result->error = psprintf("declined: %s",
								 ft_gateway_clean_text(f->err_decline_code, FT_STRIPE_REASON_MAX));
	else if (f->err_code != NULL)
		result->error = psprintf("declined: %s",
								 ft_gateway_clean_text(f->err_code, FT_STRIPE_REASON_MAX));
	else
		result->error = psprintf("declined: %s", fallback);
}

/* a lower-case word with underscores, as every Stripe status is */
static bool
stripe_valid_status(const char *s)
{
	size_t		n = strnlen(s, FT_STRIPE_REASON_MAX + 1);

	if (n == 0 || n > FT_STRIPE_REASON_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
	{
		if (!((s[i] >= 'a' && s[i] <= 'z') || s[i] == '_'))
			return false;
	}
	return true;
}

/* the reply to a 2xx: a PaymentIntent or a Charge object */
void
ft_stripe_classify_object(int status, const FtStripeFields *f,
						  FtClassification *result)
{
	const char *st = f->status;

	/*
	 * A status that is no word of Stripe's (letters and underscores) is no
	 * status at all: the reply is unreadable, whatever it was about.
	 */
	if (st == NULL || !ft_stripe_valid_id(f->id) || !stripe_valid_status(st))
	{
		ft_gateway_set_retry(result, psprintf("HTTP %d unexpected reply", status));
		return;
	}
	if (strcmp(st, "succeeded") == 0)
	{
		result->outcome = FT_OUTCOME_PAID;
		result->payment_id = pstrdup(f->id);
	}
	else if (strcmp(st, "requires_action") == 0)
	{
		/* the customer's move (3-D Secure): no polling; see the caller */
		result->outcome = FT_OUTCOME_ACTION_REQUIRED;
		result->payment_id = pstrdup(f->id);
		result->error = psprintf("%s requires_action: waiting for the customer",
								 ft_gateway_clean_text(f->id, FT_STRIPE_ID_MAX));
	}
	else if (strcmp(st, "processing") == 0 ||
			 strcmp(st, "pending") == 0)
	{
		/* under way: stay pending, re-check this id later (not transient) */
		result->outcome = FT_OUTCOME_RETRY;
		result->transient = false;
		result->payment_id = pstrdup(f->id);
		result->error = psprintf("%s %s: re-checking later",
								 ft_gateway_clean_text(f->id, FT_STRIPE_ID_MAX),
								 ft_gateway_clean_text(st, FT_STRIPE_REASON_MAX));
	}
	else if (strcmp(st, "requires_payment_method") == 0 ||
			 strcmp(st, "failed") == 0)
	{
		result->payment_id = pstrdup(f->id);
		stripe_declined(result, f, st);
	}
	else if (strcmp(st, "canceled") == 0)
	{
		result->outcome = FT_OUTCOME_FAILED;
		result->payment_id = pstrdup(f->id);
		result->error = psprintf("%s canceled at the gateway",
								 ft_gateway_clean_text(f->id, FT_STRIPE_ID_MAX));
	}
	else
	{
		/* requires_confirmation, requires_capture, ...: not ours to settle */
		result->outcome = FT_OUTCOME_FAILED;
		result->payment_id = pstrdup(f->id);
		result->error = psprintf("%s in unexpected state %s",
								 ft_gateway_clean_text(f->id, FT_STRIPE_ID_MAX),
								 ft_gateway_clean_text(st, FT_STRIPE_REASON_MAX));
	}
}

void
ft_stripe_classify_reply(const FtGatewayReply *reply, FtClassification *result)
{
	FtStripeFields f;
	int			status = reply->http_status;
	const char *should_retry;

	if (!ft_stripe_json_read_reply(reply, result, &f))
		return;

	if (status >= 200 && status <= 299)
	{
		if (!f.top_is_object)
			ft_gateway_set_retry(result, psprintf("HTTP %d malformed reply", status));
		else
			ft_stripe_classify_object(status, &f, result);
		if (result->outcome == FT_OUTCOME_ACTION_REQUIRED)
		{
			char	   *secret;
			const FtJsonField fields[] = {
				{"client_secret", false, &secret},
				{"next_action", true, &result->next_action},
			};

			(void) ft_gateway_json_fields(reply->body, reply->body_len,
										  fields, lengthof(fields));
			result->client_secret = secret ? ft_gateway_clean_text(secret, FT_STRIPE_ID_MAX) : NULL;
		}
		if (result->outcome == FT_OUTCOME_RETRY)
			result->retry_after_ms = ft_gateway_parse_retry_after(reply->retry_after,
														  reply->now);
		return;
	}

	if (status == 401 || status == 403)
	{
		ft_gateway_set_retry(result, ft_stripe_reason(status, &f));
		result->auth_problem = true;
	}
	else if (status == 402 ||
			 (f.err_type != NULL && strcmp(f.err_type, "card_error") == 0))
		stripe_declined(result, &f, "card_error");
	else if (status == 400 && f.err_type != NULL &&
			 strcmp(f.err_type, "idempotency_error") == 0)
	{
		result->outcome = FT_OUTCOME_FAILED;
		result->idempotency_refused = true;
		result->error = psprintf("idempotency_error: the gateway holds a different request under this order's Idempotency-Key (was the order changed after it was first sent?)%s%s",
								 f.err_message ? ": " : "",
								 f.err_message ? ft_gateway_clean_text(f.err_message, FT_STRIPE_REASON_MAX) : "");
	}
	else if (status == 400)
	{
		result->outcome = FT_OUTCOME_FAILED;
		result->error = ft_stripe_reason(status, &f);
	}
	else
	{
		/* 409 (concurrent use of the key), 429, 5xx, 404 and the rest */
		ft_gateway_set_retry(result, ft_stripe_reason(status, &f));
	}

	/* Stripe-Should-Retry overrides the status code (credentials aside) */
	should_retry = ft_gateway_reply_header(reply, "Stripe-Should-Retry");
	if (should_retry != NULL && !result->auth_problem)
	{
		if (pg_strcasecmp(should_retry, "true") == 0 &&
			result->outcome != FT_OUTCOME_RETRY)
		{
			result->outcome = FT_OUTCOME_RETRY;
			result->transient = true;
		}
		else if (pg_strcasecmp(should_retry, "false") == 0 &&
				 result->outcome == FT_OUTCOME_RETRY)
		{
			result->outcome = FT_OUTCOME_FAILED;
			result->transient = false;
			result->error = psprintf("%s (Stripe-Should-Retry: false)",
									 result->error ? result->error : "not retryable");
		}
	}

	if (result->outcome == FT_OUTCOME_RETRY)
		result->retry_after_ms = ft_gateway_parse_retry_after(reply->retry_after,
													  reply->now);
}

