/*-------------------------------------------------------------------------
 *
 * classify_common.c
 *	  Backend stand-ins, a classify call and the reply table's invariants,
 *	  shared by fuzz/classify_fuzzer.c and
 *	  tests/integration/harness/classify_harness.c (see classify_common.h).
 *
 * Memory comes from whatever palloc the program links: libpgcommon's
 * fe_memutils in the harness, an arena in the fuzzer.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <setjmp.h>

#include "utils/timestamp.h"

#include "classify_common.h"
#include "guc.h"
#include "worker.h"

/* --- backend symbols the providers and backoff.c reference -------------- */
sigjmp_buf *PG_exception_stack = NULL;
ErrorContextCallback *error_context_stack = NULL;
MemoryContext CurrentMemoryContext = NULL;
int			MyProcPid = 1;
int			ft_backoff_base_ms = 1000;
int			ft_backoff_max_ms = 600000;
char	   *ft_stripe_api_version = FT_STRIPE_API_VERSION_DEFAULT;

void
FlushErrorState(void)
{
}

/*
 * ereport(ERROR) of the Stripe providers (out of memory while encoding a
 * request): never expected here, fatal if it happens
 */
bool
errstart_cold(int elevel, const char *domain)
{
	abort();
}

int
errcode(int sqlerrcode)
{
	return 0;
}

int
errmsg(const char *fmt,...)
{
	return 0;
}

void
errfinish(const char *filename, int lineno, const char *funcname)
{
	abort();
}

/* no PG_TRY frame exists here: an ERROR thrown by the JSON parser is fatal */
void
pg_re_throw(void)
{
	abort();
}

TimestampTz
GetCurrentTimestamp(void)
{
	return (TimestampTz) time(NULL) * 1000000;
}

/* the backend's escape_json, reduced to what JSON requires */
void
escape_json(StringInfo buf, const char *str)
{
	appendStringInfoCharMacro(buf, '"');
	for (const char *p = str; *p; p++)
	{
		unsigned char c = (unsigned char) *p;

		if (c == '"' || c == '\\')
		{
			appendStringInfoCharMacro(buf, '\\');
			appendStringInfoCharMacro(buf, c);
		}
		else if (c < 0x20)
			appendStringInfo(buf, "\\u%04x", c);
		else
			appendStringInfoCharMacro(buf, c);
	}
	appendStringInfoCharMacro(buf, '"');
}

/* --- classification ------------------------------------------------------ */
void
ft_classify(int status, const char *body, size_t body_len,
			const char *retry_after, const char *transport_error,
			bool too_large, FtClassification *c)
{
	FtGatewayReply r;

	memset(&r, 0, sizeof(r));
	r.http_status = status;
	r.body = body ? body : "";
	r.body_len = body ? body_len : 0;
	r.retry_after = retry_after;
	r.transport_error = transport_error;
	r.too_large = too_large;
	r.now = FT_CLASSIFY_NOW;
	ft_provider_generic.classify_reply(&r, c);
}

static bool
printable(const char *s)
{
	for (const char *p = s; p && *p; p++)
		if ((unsigned char) *p < 0x20 || (unsigned char) *p >= 0x7f)
			return false;
	return true;
}

const char *
ft_classify_violation(int status, const char *te, bool too_large,
					  const FtClassification *c)
{
	bool		answer = (te == NULL && !too_large && status > 0);

	if (c->outcome == FT_OUTCOME_PAID &&
		(!answer || status < 200 || status > 299 ||
		 c->payment_id == NULL || c->payment_id[0] == '\0'))
		return "paid without a 2xx reply and a payment_id";
	if (c->outcome == FT_OUTCOME_FAILED && status != 400 && status != 422)
		return "failed for a status other than 400/422";
	if (c->outcome == FT_OUTCOME_DECLINED &&
		!(status == 402 || (status >= 200 && status <= 299)))
		return "declined for a status other than 402/2xx";
	if (!answer && c->outcome != FT_OUTCOME_RETRY)
		return "transport error, no reply or oversize body not retried";
	if ((status == 401 || status == 403 || status == 409 || status == 429 ||
		 (status >= 500 && status <= 599) || (status >= 300 && status <= 399)) &&
		c->outcome != FT_OUTCOME_RETRY)
		return "401/403/409/429/3xx/5xx not retried";
	if (answer && (status == 400 || status == 422) &&
		c->outcome != FT_OUTCOME_FAILED)
		return "400/422 not failed at once";
	if (answer && status == 402 && c->outcome != FT_OUTCOME_DECLINED)
		return "402 not declined";
	if ((c->outcome == FT_OUTCOME_RETRY) != c->transient)
		return "transient flag disagrees with the outcome";
	if (c->outcome != FT_OUTCOME_PAID && c->error == NULL)
		return "no error text for a non-paid outcome";
	if (c->retry_after_ms < -1)
		return "negative Retry-After";
	if (c->auth_problem && status != 401 && status != 403)
		return "auth problem for a status other than 401/403";
	if (!printable(c->error))
		return "non-printable error text";
	if (!printable(c->payment_id))
		return "non-printable payment_id";
	if (c->error && strlen(c->error) > 512)
		return "error text longer than 512 bytes";

	/* the backoff must stay in range whatever Retry-After said */
	for (int attempt = 1; attempt <= 12; attempt += 11)
	{
		int			d = ft_backoff_delay_ms(attempt, c->retry_after_ms);

		if (d < 0 || d > ft_backoff_max_ms)
			return "backoff delay out of range";
	}
	return NULL;
}
