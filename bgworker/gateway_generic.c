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
 * classify_reply with arbitrary bytes.  Replies are parsed with
 * PostgreSQL's own JSON parser; only top-level string fields are looked
 * at.  Whatever the gateway sends, the result is an outcome, never an
 * ERROR: a parser error (including "stack depth limit exceeded" on deeply
 * nested input) is caught and classified as a malformed, transient reply.
 * Every string taken from a reply is cut to printable ASCII before it can
 * reach a log line or a table.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include <curl/curl.h>

#include "common/jsonapi.h"
#include "mb/pg_wchar.h"
#include "utils/json.h"

#include "compat.h"
#include "gateway.h"
#include "gateway_json.h"

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

/* the payment_attempts.outcome text of an outcome (also the tests' name) */
const char *
ft_outcome_name(FtOutcome outcome)
{
	switch (outcome)
	{
		case FT_OUTCOME_PAID:
			return "paid";
		case FT_OUTCOME_DECLINED:
			return "declined";
		case FT_OUTCOME_FAILED:
			return "failed";
		case FT_OUTCOME_RETRY:
			return "retry";
		case FT_OUTCOME_UNKNOWN:
			return "unknown";
		case FT_OUTCOME_CANCELED:
			return "canceled";
		case FT_OUTCOME_ACTION_REQUIRED:
			return "action_required";
		case FT_OUTCOME_REFUNDED:
			return "refunded";
		case FT_OUTCOME_REFUND_FAILED:
			return "refund_failed";
	}
	return "retry";
}

/*
 * A copy of s cut to maxlen bytes of printable ASCII (others become '?'),
 * safe for a log line and for a text column in any server encoding.
 */
char *
ft_gateway_clean_text(const char *s, size_t maxlen)
{
	size_t		n = strnlen(s, maxlen);
	char	   *out = palloc(n + 1);

	for (size_t i = 0; i < n; i++)
	{
		unsigned char c = (unsigned char) s[i];

		out[i] = (c >= 0x20 && c < 0x7f) ? (char) c : '?';
	}
	out[n] = '\0';
	return out;
}

/*
 * Value of the reply's header name (the last one if repeated), trimmed, or
 * NULL when it has none or when there was no reply to ask.  Valid until
 * the next call; the caller copies what it keeps.
 */
const char *
ft_gateway_reply_header(const FtGatewayReply *reply, const char *name)
{
	if (reply->header == NULL)
		return NULL;
	return reply->header(reply, name);
}

/*
 * Seconds of a Retry-After value (delta-seconds or HTTP-date), in ms, or
 * -1 when absent or unusable.  A date in the past means "now" (0).  Huge
 * values are capped rather than overflowing; the caller caps them again
 * at ft_orders.backoff_max.
 */
int
ft_parse_retry_after(const char *value, time_t now)
{
	const char *p;
	int64		secs = 0;
	char		buf[FT_RETRY_AFTER_LEN];
	size_t		len;
	time_t		when;

	if (value == NULL)
		return -1;
	while (*value == ' ' || *value == '\t')
		value++;
	len = strnlen(value, sizeof(buf) - 1);
	while (len > 0 && (value[len - 1] == ' ' || value[len - 1] == '\t' ||
					   value[len - 1] == '\r' || value[len - 1] == '\n'))
		len--;
	if (len == 0)
		return -1;
	memcpy(buf, value, len);
	buf[len] = '\0';

	if (buf[0] >= '0' && buf[0] <= '9')
	{
		for (p = buf; *p; p++)
		{
			if (*p < '0' || *p > '9')
				return -1;		/* "10s", "1.5": garbage */
			if (secs < INT_MAX / 1000)
				secs = secs * 10 + (*p - '0');
		}
		return (int) Min(secs, INT_MAX / 1000) * 1000;
	}

	/* a leading '-' or other junk is no date either: curl_getdate says -1 */
	when = curl_getdate(buf, &now);
	if (when == (time_t) -1)
		return -1;
	if (when <= now)
		return 0;
	return (int) Min((int64) (when - now), (int64) (INT_MAX / 1000)) * 1000;
}

/*
 * Run PostgreSQL's JSON parser over a reply body with the semantic actions
 * sem; when lexp is not NULL, *lexp is set to the lexer before parsing
 * starts (for actions that look at token positions).  Returns false when
 * the body is empty, oversize or not valid JSON, or when the parser gave
 * up (nesting deeper than the stack allows raises an ERROR inside it;
 * that is caught here, since a reply is an outcome, never a reason for
 * the worker to fail).
 */
static bool
ft_json_run(const char *body, size_t len, JsonSemAction *sem,
			JsonLexContext **lexp)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	volatile bool ok = false;

	if (body == NULL || len == 0 || len > FT_REPLY_MAX_BYTES)
		return false;

	PG_TRY();
	{
		JsonLexContext *lex;

		/* escapes left alone: see gateway_json.c */
		lex = ft_make_json_lexer(unconstify(char *, body), (int) len,
								 PG_UTF8, false);
		if (lexp != NULL)
			*lexp = lex;
		ok = (ft_json_parse_ascii(lex, sem) == JSON_SUCCESS);
	}
	PG_CATCH();
	{
		/* stack depth, out of memory: the reply is unusable, not fatal */
		MemoryContextSwitchTo(oldcxt);
		FlushErrorState();
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

/*
 * Parse a reply body into a provider's fields: state (state_size bytes)
 * is zeroed and handed to the semantic actions of actions (whose own
 * semstate is ignored).  Returns false, with state zeroed again, when the
 * body is not usable JSON (see ft_json_run).  Strings the actions keep
 * are allocated in CurrentMemoryContext.  For a provider that reads more
 * than top-level fields (Stripe); ft_gateway_json_fields reads those.
 */
bool
ft_gateway_parse_json(const char *body, size_t len,
					  const JsonSemAction *actions,
					  void *state, size_t state_size)
{
	JsonSemAction sem = *actions;

	memset(state, 0, state_size);
	sem.semstate = state;
	if (!ft_json_run(body, len, &sem, NULL))
	{
		memset(state, 0, state_size);
		return false;
	}
	return true;
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
ft_valid_payment_id(const char *s)
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
ft_http_reason(int status, const FtReplyFields *f)
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
ft_set_declined(FtClassification *result, const FtReplyFields *f)
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
ft_set_action_required(FtClassification *result, const FtReplyFields *f,
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

void
ft_gateway_set_retry(FtClassification *result, char *error)
{
	result->outcome = FT_OUTCOME_RETRY;
	result->transient = true;
	result->error = error;
}

/*
 * A look-up that did not settle the work (a non-2xx reply, or one that
 * would give the work up): transient, whatever the reply said, since a GET
 * charges nothing.  result->error, if any, is kept as the reason.
 */
void
ft_gateway_lookup_retry(const FtGatewayReply *reply, FtClassification *result)
{
	char	   *why = result->error;

	ft_gateway_set_retry(result, psprintf("look-up: %s", why ? why : "unexpected reply"));
	result->retry_after_ms = ft_parse_retry_after(reply->retry_after, reply->now);
}

/*
 * The part of the reply table every provider shares: reset result, and
 * classify a request that got no usable HTTP reply (transport error) or a
 * body cut off at FT_REPLY_MAX_BYTES as a transient failure.  Returns true
 * when it classified the reply, false when the provider must look at it.
 */
bool
ft_gateway_classify_transport(const FtGatewayReply *reply,
							  FtClassification *result)
{
	memset(result, 0, sizeof(*result));
	result->retry_after_ms = -1;

	if (reply->transport_error != NULL || reply->http_status <= 0)
	{
		ft_gateway_set_retry(result,
							 psprintf("%s", reply->transport_error
									  ? ft_gateway_clean_text(reply->transport_error, 200)
									  : "no reply"));
		return true;
	}
	if (reply->too_large)
	{
		ft_gateway_set_retry(result,
							 psprintf("HTTP %d reply too large (over %d bytes)",
									  reply->http_status, FT_REPLY_MAX_BYTES));
		result->retry_after_ms = ft_parse_retry_after(reply->retry_after,
													  reply->now);
		return true;
	}
	return false;
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
		ft_gateway_set_retry(result, ft_http_reason(status, f));
		result->auth_problem = (status == 401 || status == 403);
	}
	result->retry_after_ms = ft_parse_retry_after(reply->retry_after,
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
		ft_valid_payment_id(f.payment_id))
	{
		result->outcome = FT_OUTCOME_PAID;
		result->payment_id = pstrdup(f.payment_id);
	}
	else if (generic_reply_says(reply, &f, "declined") || status == 402)
		ft_set_declined(result, &f);
	else if (generic_reply_says(reply, &f, "requires_action") &&
			 ft_valid_payment_id(f.payment_id))
		ft_set_action_required(result, &f, reply);
	else if (status == 400 || status == 422)
	{
		result->outcome = FT_OUTCOME_FAILED;
		result->error = ft_http_reason(status, &f);
	}
	else
		generic_set_retry(reply, &f, result,
						  f.top_is_object ? "unexpected reply" : "malformed reply");
}

/* semantic-action state of ft_gateway_json_fields */
typedef struct FtFieldWalk
{
	JsonLexContext *lex;
	const FtJsonField *fields;
	int			nfields;
	int			depth;
	bool		top_is_object;
	const FtJsonField *next;	/* the field whose value comes next */
	const FtJsonField *capturing;	/* the raw field whose object or array
									 * the parser is in */
	const char *start;			/* where that value starts */
} FtFieldWalk;

static FtJsonResult
walk_nest_start(void *state)
{
	FtFieldWalk *w = (FtFieldWalk *) state;

	if (w->depth == 0)
		w->top_is_object = (w->lex->token_type == JSON_TOKEN_OBJECT_START);
	if (w->next != NULL && w->next->raw && w->depth == 1)
	{
		/* the lexer is at the value's opening bracket */
		w->capturing = w->next;
		w->start = w->lex->token_start;
	}
	w->next = NULL;
	w->depth++;
	return FT_JSON_OK;
}

static FtJsonResult
walk_nest_end(void *state)
{
	FtFieldWalk *w = (FtFieldWalk *) state;

	w->depth--;
	if (w->capturing != NULL && w->depth == 1)
	{
		/* the lexer has just consumed the value's closing bracket */
		*w->capturing->value = pnstrdup(w->start,
										w->lex->prev_token_terminator - w->start);
		w->capturing = NULL;
	}
	return FT_JSON_OK;
}

static FtJsonResult
walk_field_start(void *state, char *fname, bool isnull)
{
	FtFieldWalk *w = (FtFieldWalk *) state;

	w->next = NULL;
	if (w->depth != 1 || !w->top_is_object || fname == NULL)
		return FT_JSON_OK;
	for (int i = 0; i < w->nfields; i++)
	{
		if (strcmp(fname, w->fields[i].name) == 0)
		{
			w->next = &w->fields[i];
			break;
		}
	}
	return FT_JSON_OK;
}

static FtJsonResult
walk_scalar(void *state, char *token, JsonTokenType tokentype)
{
	FtFieldWalk *w = (FtFieldWalk *) state;

	/* the parser's token is a palloc'd copy: kept as it is */
	if (w->next != NULL && !w->next->raw &&
		tokentype == JSON_TOKEN_STRING && token != NULL)
		*w->next->value = token;
	w->next = NULL;
	return FT_JSON_OK;
}

/* the semantic actions of ft_gateway_json_fields */
static const JsonSemAction ft_walk_actions = {
	.object_start = walk_nest_start,
	.object_end = walk_nest_end,
	.array_start = walk_nest_start,
	.array_end = walk_nest_end,
	.object_field_start = walk_field_start,
	.scalar = walk_scalar,
};

/* every value of fields[] NULL */
static void
ft_json_fields_clear(const FtJsonField *fields, int nfields)
{
	for (int i = 0; i < nfields; i++)
		*fields[i].value = NULL;
}

/*
 * The top-level fields of a JSON object body, in one pass: each field's
 * value is its string (raw false), or the JSON text of its object or
 * array (raw true: next_action), and NULL when the field is absent or its
 * value of the other kind; a repeated field gives its last value.
 * Returns true when the body is a JSON object; false, with every value
 * NULL, when it is not usable JSON (see ft_json_run).  Allocates in
 * CurrentMemoryContext.  PostgreSQL's JSON parser, as for every reply.
 */
bool
ft_gateway_json_fields(const char *body, size_t len,
					   const FtJsonField *fields, int nfields)
{
	FtFieldWalk walk;
	JsonSemAction sem = ft_walk_actions;

	ft_json_fields_clear(fields, nfields);
	memset(&walk, 0, sizeof(walk));
	walk.fields = fields;
	walk.nfields = nfields;
	sem.semstate = &walk;
	if (!ft_json_run(body, len, &sem, &walk.lex))
	{
		ft_json_fields_clear(fields, nfields);
		return false;
	}
	return walk.top_is_object;
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
		ft_valid_payment_id(f.refund_id))
	{
		result->outcome = FT_OUTCOME_REFUNDED;
		result->payment_id = pstrdup(f.refund_id);
	}
	else if (generic_reply_says(reply, &f, "failed") ||
			 status == 402 || status == 400 || status == 422)
	{
		result->outcome = FT_OUTCOME_REFUND_FAILED;
		result->payment_id = ft_valid_payment_id(f.refund_id) ? pstrdup(f.refund_id) : NULL;
		result->error = ft_http_reason(status, &f);
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
