/*-------------------------------------------------------------------------
 *
 * gateway_generic.c
 *	  The "generic" gateway provider (docs/reference.md, "Wire protocol"):
 *	  the JSON request body and the classification of a reply into paid /
 *	  declined / failed / retry / action_required, and (1.3) the look-up
 *	  of a payment, refunds and their look-ups.
 *
 * Everything here is a pure function of its arguments: no database, no
 * shared memory, no globals, so a fuzzer can call ft_provider_generic's
 * classify_reply with arbitrary bytes.  Only top-level string fields of a
 * reply are looked at (gateway_reply.c's field walker).  Whatever the
 * gateway sends, the result is an outcome, never an ERROR: a body that is
 * not usable JSON is classified as a malformed, transient reply.  Every
 * string taken from a reply is cut to printable ASCII before it can reach
 * a log line or a table.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/json.h"

#include "compat.h"
#include "gateway.h"

/* longest payment_id accepted, and longest reason kept from a reply */
#define FT_PAYMENT_ID_MAX	255
#define FT_REASON_MAX		80

/* the top-level string fields of a reply that the classifiers read */
typedef struct FtReplyFields
{
	bool		top_is_object;
	char	   *status;
	char	   *payment_id;
	char	   *refund_id;
	char	   *decline_code;
	char	   *error;
	char	   *message;
} FtReplyFields;

/*
 * Build the request body of docs/reference.md, "Wire protocol", into body
 * (reset first).  items_json is the order's jsonb as text, therefore valid
 * JSON.
 */
static void
generic_build_request(const FtPaymentRequest *req, StringInfo body)
{
	resetStringInfo(body);
	appendStringInfo(body, "{\"order_id\":" INT64_FORMAT ",\"payment_key\":",
					 req->order_id);
	escape_json(body, req->payment_key);
	appendStringInfoString(body, ",\"customer_id\":");
	escape_json(body, req->customer_id);
	appendStringInfo(body, ",\"amount_minor\":" INT64_FORMAT ",\"currency\":",
					 req->amount_minor);
	escape_json(body, req->currency);
	appendStringInfoString(body, ",\"payment_method\":");
	if (req->payment_method != NULL)
		escape_json(body, req->payment_method);
	else
		appendStringInfoString(body, "null");
	appendStringInfoString(body, ",\"items\":");
	appendStringInfoString(body, req->items_json ? req->items_json : "[]");
	appendStringInfoChar(body, '}');
}

/*
 * The start of every classifier of this provider: returns false when the
 * transport already classified the reply (result is final), else true
 * with the body's top-level fields in *f.  A body that is not usable JSON
 * leaves *f empty, so top_is_object false.  Allocates in
 * CurrentMemoryContext.
 */
static bool
generic_read_reply(const FtGatewayReply *reply, FtClassification *result,
				   FtReplyFields *f)
{
	const FtJsonField fields[] = {
		{"status", false, &f->status},
		{"payment_id", false, &f->payment_id},
		{"refund_id", false, &f->refund_id},
		{"decline_code", false, &f->decline_code},
		{"error", false, &f->error},
		{"message", false, &f->message},
	};

	if (ft_gateway_classify_transport(reply, result))
		return false;
	f->top_is_object = ft_gateway_json_fields(reply->body, reply->body_len,
											  fields, lengthof(fields));
	return true;
}

/* printable 1..FT_PAYMENT_ID_MAX characters, as a gateway reference must be */
static bool
generic_valid_payment_id(const char *s)
{
	size_t		n;

	if (s == NULL)
		return false;
	n = strnlen(s, FT_PAYMENT_ID_MAX + 1);
	if (n == 0 || n > FT_PAYMENT_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
	{
		if ((unsigned char) s[i] < 0x20 || (unsigned char) s[i] >= 0x7f)
			return false;
	}
	return true;
}

/* "HTTP 422 unprocessable: amount rejected" from the reply's own words */
static char *
generic_reason(int status, const FtReplyFields *f)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "HTTP %d", status);
	if (f->error != NULL)
		appendStringInfo(&buf, " %s", ft_gateway_clean_text(f->error, FT_REASON_MAX));
	if (f->message != NULL)
		appendStringInfo(&buf, ": %s", ft_gateway_clean_text(f->message, FT_REASON_MAX));
	return buf.data;
}

static void
generic_set_declined(FtClassification *result, const FtReplyFields *f)
{
	result->outcome = FT_OUTCOME_DECLINED;
	if (f->decline_code != NULL)
		result->error = psprintf("declined: %s",
								 ft_gateway_clean_text(f->decline_code, FT_REASON_MAX));
	else if (f->error != NULL)
		result->error = psprintf("declined: %s",
								 ft_gateway_clean_text(f->error, FT_REASON_MAX));
	else
		result->error = pstrdup("declined");
}

/*
 * requires_action: the customer must act.  The order keeps the gateway's
 * payment reference, its next_action (any JSON value) and client_secret.
 */
static void
generic_set_action_required(FtClassification *result, const FtReplyFields *f,
					   const FtGatewayReply *reply)
{
	char	   *secret;
	const FtJsonField fields[] = {
		{"client_secret", false, &secret},
		{"next_action", true, &result->next_action},
	};

	result->outcome = FT_OUTCOME_ACTION_REQUIRED;
	result->payment_id = pstrdup(f->payment_id);
	(void) ft_gateway_json_fields(reply->body, reply->body_len,
								  fields, lengthof(fields));
	result->client_secret = secret ? ft_gateway_clean_text(secret, FT_PAYMENT_ID_MAX) : NULL;
	result->error = psprintf("%s requires_action: waiting for the customer",
							 ft_gateway_clean_text(f->payment_id, FT_PAYMENT_ID_MAX));
}

/* a 2xx reply whose body is a JSON object with "status": status */
static bool
generic_reply_says(const FtGatewayReply *reply, const FtReplyFields *f,
				   const char *status)
{
	return reply->http_status >= 200 && reply->http_status <= 299 &&
		f->top_is_object && f->status != NULL && strcmp(f->status, status) == 0;
}

/*
 * A reply that settles nothing: transient.  A 2xx one is "HTTP <status>
 * <unexpected>"; any other (409, 429, 5xx and anything unexpected: 404,
 * 3xx) is given in the reply's own words, and 401/403 are a credentials
 * problem.  The reply's Retry-After is honoured.
 */
static void
generic_set_retry(const FtGatewayReply *reply, const FtReplyFields *f,
				  FtClassification *result, const char *unexpected)
{
	int			status = reply->http_status;

	if (status >= 200 && status <= 299)
		ft_gateway_set_retry(result, psprintf("HTTP %d %s", status, unexpected));
	else
	{
		ft_gateway_set_retry(result, generic_reason(status, f));
		result->auth_problem = (status == 401 || status == 403);
	}
	result->retry_after_ms = ft_gateway_parse_retry_after(reply->retry_after,
												  reply->now);
}

/*
 * The reply table of docs/reference.md, "Wire protocol".  result is fully
 * overwritten; its strings are palloc'd in CurrentMemoryContext.
 */
static void
generic_classify_reply(const FtGatewayReply *reply, FtClassification *result)
{
	FtReplyFields f;
	int			status = reply->http_status;

	if (!generic_read_reply(reply, result, &f))
		return;

	if (generic_reply_says(reply, &f, "succeeded") &&
		generic_valid_payment_id(f.payment_id))
	{
		result->outcome = FT_OUTCOME_PAID;
		result->payment_id = pstrdup(f.payment_id);
	}
	else if (generic_reply_says(reply, &f, "declined") || status == 402)
		generic_set_declined(result, &f);
	else if (generic_reply_says(reply, &f, "requires_action") &&
			 generic_valid_payment_id(f.payment_id))
		generic_set_action_required(result, &f, reply);
	else if (status == 400 || status == 422)
	{
		result->outcome = FT_OUTCOME_FAILED;
		result->error = generic_reason(status, &f);
	}
	else
		generic_set_retry(reply, &f, result,
						  f.top_is_object ? "unexpected reply" : "malformed reply");
}

/* GET prefix/key, or NULL when there is no key to look up */
static char *
generic_key_path(const char *prefix, const char *key)
{
	if (key == NULL || key[0] == '\0')
		return NULL;
	return psprintf("%s/%s", prefix, key);
}

/* GET /payments/{payment_key}: the payment made under the order's key */
static char *
generic_lookup_path(const FtPaymentRequest *req)
{
	return generic_key_path("/payments", req->payment_key);
}

/*
 * A look-up reply: 404 means the gateway has nothing under the key
 * (FT_OUTCOME_UNKNOWN, with the reason unknown); a 2xx is the reply to
 * the creation, classified by classify; anything else, and a verdict
 * that would give the work up (FT_OUTCOME_FAILED), is transient: a GET
 * charges nothing.
 */
static void
generic_classify_key_lookup(const FtGatewayReply *reply,
							FtClassification *result,
							void (*classify) (const FtGatewayReply *reply,
											  FtClassification *result),
							const char *unknown)
{
	if (ft_gateway_classify_transport(reply, result))
		return;
	if (reply->http_status == 404)
	{
		result->outcome = FT_OUTCOME_UNKNOWN;
		result->error = pstrdup(unknown);
		return;
	}
	classify(reply, result);
	if (reply->http_status < 200 || reply->http_status > 299 ||
		result->outcome == FT_OUTCOME_FAILED)
		ft_gateway_lookup_retry(reply, result);
}

/* the payment is found by the order's own key: nothing to tell apart */
static void
generic_classify_lookup(const FtGatewayReply *reply,
						const FtPaymentRequest *req,
						FtClassification *result)
{
	generic_classify_key_lookup(reply, result, generic_classify_reply,
								"look-up: the gateway has no payment under this key");
}

/* POST /refunds: {"payment_key","refund_key","amount_minor","currency"} */
static void
generic_build_refund(const FtPaymentRequest *req, StringInfo body)
{
	resetStringInfo(body);
	appendStringInfoString(body, "{\"payment_key\":");
	escape_json(body, req->payment_key);
	appendStringInfoString(body, ",\"refund_key\":");
	escape_json(body, req->refund_key);
	appendStringInfo(body, ",\"amount_minor\":" INT64_FORMAT ",\"currency\":",
					 req->refund_amount);
	escape_json(body, req->currency);
	appendStringInfoChar(body, '}');
}

/*
 * A refund reply: 2xx {"status":"succeeded","refund_id":...} refunded;
 * 2xx {"status":"failed"}, 402, 400 and 422 refused for good; the rest
 * as for a charge (transient).
 */
static void
generic_classify_refund(const FtGatewayReply *reply, FtClassification *result)
{
	FtReplyFields f;
	int			status = reply->http_status;

	if (!generic_read_reply(reply, result, &f))
		return;
	if (generic_reply_says(reply, &f, "succeeded") &&
		generic_valid_payment_id(f.refund_id))
	{
		result->outcome = FT_OUTCOME_REFUNDED;
		result->payment_id = pstrdup(f.refund_id);
	}
	else if (generic_reply_says(reply, &f, "failed") ||
			 status == 402 || status == 400 || status == 422)
	{
		result->outcome = FT_OUTCOME_REFUND_FAILED;
		result->payment_id = generic_valid_payment_id(f.refund_id) ? pstrdup(f.refund_id) : NULL;
		result->error = generic_reason(status, &f);
	}
	else
		generic_set_retry(reply, &f, result, "unexpected refund reply");
}

/* GET /refunds/{refund_key} */
static char *
generic_refund_lookup_path(const FtPaymentRequest *req)
{
	return generic_key_path("/refunds", req->refund_key);
}

/* a refund reply is never FT_OUTCOME_FAILED: a 2xx refusal stays one */
static void
generic_classify_refund_lookup(const FtGatewayReply *reply,
							   FtClassification *result)
{
	generic_classify_key_lookup(reply, result, generic_classify_refund,
								"look-up: the gateway has no refund under this key");
}

/* the provider, defined last: every function above is its own */
const FtProvider ft_provider_generic = {
	.path = "/payments",
	.build_request = generic_build_request,
	.classify_reply = generic_classify_reply,
	.lookup_path = generic_lookup_path,
	.classify_lookup = generic_classify_lookup,
	.refund_path = "/refunds",
	.build_refund = generic_build_refund,
	.classify_refund = generic_classify_refund,
	.refund_lookup_path = generic_refund_lookup_path,
	.classify_refund_lookup = generic_classify_refund_lookup,
};
