/*-------------------------------------------------------------------------
 *
 * gateway_reply.c
 *	  What every gateway provider shares to read a reply: the transport's
 *	  verdicts (no reply, a reply too large), Retry-After, PostgreSQL's
 *	  JSON parser run so that no reply can raise an ERROR, the top-level
 *	  field walker, clean text for logs and tables, and outcome names.
 *
 * Everything here is a pure function of its arguments: no database, no
 * shared memory, no globals, so a fuzzer can drive a provider's
 * classifiers with arbitrary bytes.  A parser error (including "stack
 * depth limit exceeded" on deeply nested input) is caught and reported as
 * a body that is not usable JSON.  Names and strings reach the providers'
 * semantic actions as ASCII, the same in every server encoding
 * (gateway_json.c).  Every string taken from a reply is cut to printable
 * ASCII before it can reach a log line or a table.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include <curl/curl.h>

#include "common/jsonapi.h"
#include "mb/pg_wchar.h"

#include "compat.h"
#include "gateway.h"
#include "gateway_json.h"

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
ft_gateway_parse_retry_after(const char *value, time_t now)
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

		/* escapes left alone: names and strings as ASCII (gateway_json.c) */
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
	result->retry_after_ms = ft_gateway_parse_retry_after(reply->retry_after, reply->now);
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
		result->retry_after_ms = ft_gateway_parse_retry_after(reply->retry_after,
													  reply->now);
		return true;
	}
	return false;
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
			/* the last occurrence counts, whatever its value */
			w->next = &w->fields[i];
			*w->next->value = NULL;
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
