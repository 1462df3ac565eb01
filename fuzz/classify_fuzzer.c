/*-------------------------------------------------------------------------
 *
 * classify_fuzzer.c
 *	  libFuzzer target over the generic provider's reply classification
 *	  (SPEC section 5): HTTP status + Retry-After header + transport error
 *	  + body -> outcome.  Built and run by fuzz/run.sh (`make fuzz`).
 *
 * gateway_generic.c and backoff.c are compiled unchanged, as in
 * tests/integration/harness/classify_harness.c, against the server headers
 * and linked with the frontend libpgcommon (StringInfo, the JSON parser).
 * The frontend palloc family is replaced below by a small arena freed
 * after every input, standing in for the worker's per-round memory
 * context: without it the classifier's (deliberate) allocations would
 * pile up over millions of runs.  The frontend JSON parser has no stack
 * depth check, so run.sh bounds inputs with -max_len; the backend's
 * "stack depth limit exceeded" path is covered by the integration tests.
 *
 * Input layout (all optional; missing bytes read as zero):
 *	 byte 0-1	HTTP status, big-endian, modulo 1000
 *	 byte 2		flags: 1 = too_large, 2 = Retry-After present,
 *				4 = transport error present, 8 = body given as-is without
 *				the NUL terminator copy check
 *	 byte 3		length of the Retry-After value (mod 64)
 *	 byte 4		length of the transport error (mod 256)
 *	 then the Retry-After bytes, the transport-error bytes, and the body.
 *
 * Any sanitizer report, or a verdict outside the reply table's invariants,
 * aborts: libFuzzer saves the input as a crash file.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <setjmp.h>

#include "utils/timestamp.h"

#include "gateway.h"
#include "guc.h"
#include "worker.h"

/* --- backend symbols the two files reference ----------------------------- */
sigjmp_buf *PG_exception_stack = NULL;
ErrorContextCallback *error_context_stack = NULL;
MemoryContext CurrentMemoryContext = NULL;
int			MyProcPid = 1;
int			ft_backoff_base_ms = 1000;
int			ft_backoff_max_ms = 600000;

void
FlushErrorState(void)
{
}

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

void
escape_json(StringInfo buf, const char *str)
{
	appendStringInfoCharMacro(buf, '"');
	for (const char *p = str; *p; p++)
		appendStringInfoCharMacro(buf, *p);
	appendStringInfoCharMacro(buf, '"');
}

/* --- an arena in place of fe_memutils.c ----------------------------------- */
typedef struct ArenaChunk
{
	struct ArenaChunk *prev;
	struct ArenaChunk *next;
	size_t		size;
	max_align_t align[];
} ArenaChunk;

static ArenaChunk arena = {&arena, &arena, 0};

static void *
arena_alloc(size_t size, bool zero)
{
	ArenaChunk *c = malloc(sizeof(ArenaChunk) + size);

	if (c == NULL)
		abort();
	c->size = size;
	c->next = arena.next;
	c->prev = &arena;
	arena.next->prev = c;
	arena.next = c;
	if (zero)
		memset(c->align, 0, size);
	return c->align;
}

static ArenaChunk *
arena_chunk(void *p)
{
	return (ArenaChunk *) ((char *) p - offsetof(ArenaChunk, align));
}

static void
arena_free(void *p)
{
	ArenaChunk *c;

	if (p == NULL)
		return;
	c = arena_chunk(p);
	c->prev->next = c->next;
	c->next->prev = c->prev;
	free(c);
}

static void
arena_reset(void)
{
	while (arena.next != &arena)
		arena_free(arena.next->align);
}

void *palloc(Size size) { return arena_alloc(size, false); }
void *palloc0(Size size) { return arena_alloc(size, true); }
void *palloc_extended(Size size, int flags) { return arena_alloc(size, (flags & MCXT_ALLOC_ZERO) != 0); }
void pfree(void *p) { arena_free(p); }
void *pg_malloc(size_t size) { return arena_alloc(size, false); }
void *pg_malloc0(size_t size) { return arena_alloc(size, true); }
void *pg_malloc_extended(size_t size, int flags) { return arena_alloc(size, (flags & MCXT_ALLOC_ZERO) != 0); }
void pg_free(void *p) { arena_free(p); }

void *
repalloc(void *p, Size size)
{
	void	   *n = arena_alloc(size, false);

	if (p != NULL)
	{
		ArenaChunk *c = arena_chunk(p);

		memcpy(n, p, Min(c->size, size));
		arena_free(p);
	}
	return n;
}

void *pg_realloc(void *p, size_t size) { return repalloc(p, size); }

char *
pstrdup(const char *s)
{
	size_t		n = strlen(s);
	char	   *d = arena_alloc(n + 1, false);

	memcpy(d, s, n + 1);
	return d;
}

char *pg_strdup(const char *s) { return pstrdup(s); }

char *
pnstrdup(const char *s, Size len)
{
	size_t		n = strnlen(s, len);
	char	   *d = arena_alloc(n + 1, false);

	memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

/* --- the target ------------------------------------------------------------ */
static void
fail(const char *why, int status, const FtClassification *c)
{
	fprintf(stderr, "invariant violated: %s (HTTP %d, outcome %d, error \"%s\")\n",
			why, status, (int) c->outcome, c->error ? c->error : "(null)");
	abort();
}

static void
check_printable(const char *s, const char *what, int status,
				const FtClassification *c)
{
	for (const char *p = s; p && *p; p++)
		if ((unsigned char) *p < 0x20 || (unsigned char) *p >= 0x7f)
			fail(what, status, c);
}

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t		hdr[5] = {0};
	size_t		ra_len,
				te_len;
	char	   *ra = NULL,
			   *te = NULL,
			   *body;
	size_t		body_len;
	FtGatewayReply r;
	FtClassification c;
	int			status;

	memcpy(hdr, data, Min(size, sizeof(hdr)));
	data += Min(size, sizeof(hdr));
	size -= Min(size, sizeof(hdr));

	status = ((hdr[0] << 8) | hdr[1]) % 1000;
	ra_len = Min((size_t) (hdr[3] % FT_RETRY_AFTER_LEN), size);
	if (hdr[2] & 2)
	{
		ra = arena_alloc(ra_len + 1, false);
		memcpy(ra, data, ra_len);
		ra[ra_len] = '\0';
		data += ra_len;
		size -= ra_len;
	}
	te_len = Min((size_t) hdr[4], size);
	if (hdr[2] & 4)
	{
		te = arena_alloc(te_len + 1, false);
		memcpy(te, data, te_len);
		te[te_len] = '\0';
		data += te_len;
		size -= te_len;
	}
	/* the transport hands over a NUL-terminated copy that may hold NULs */
	body_len = Min(size, (size_t) FT_REPLY_MAX_BYTES);
	body = arena_alloc(body_len + 1, false);
	memcpy(body, data, body_len);
	body[body_len] = '\0';

	memset(&r, 0, sizeof(r));
	r.http_status = status;
	r.transport_error = te;
	r.too_large = (hdr[2] & 1) != 0;
	r.retry_after = ra;
	r.body = body;
	r.body_len = body_len;
	r.now = 1700000000;
	ft_provider_generic.classify_reply(&r, &c);

	/* invariants of the SPEC section 5 reply table */
	if (c.outcome == FT_OUTCOME_PAID &&
		(te != NULL || r.too_large || status < 200 || status > 299 ||
		 c.payment_id == NULL || c.payment_id[0] == '\0'))
		fail("paid without a 2xx reply and a payment_id", status, &c);
	if (c.outcome == FT_OUTCOME_FAILED && status != 400 && status != 422)
		fail("failed for a status other than 400/422", status, &c);
	if (c.outcome == FT_OUTCOME_DECLINED &&
		!(status == 402 || (status >= 200 && status <= 299)))
		fail("declined for a status other than 402/2xx", status, &c);
	if ((te != NULL || status <= 0 || r.too_large) && c.outcome != FT_OUTCOME_RETRY)
		fail("transport error, no reply or oversize body not retried", status, &c);
	if ((status == 401 || status == 403 || status == 409 || status == 429 ||
		 (status >= 500 && status <= 599) || (status >= 300 && status <= 399)) &&
		c.outcome != FT_OUTCOME_RETRY)
		fail("401/403/409/429/3xx/5xx not retried", status, &c);
	if (te == NULL && !r.too_large && (status == 400 || status == 422) &&
		c.outcome != FT_OUTCOME_FAILED)
		fail("400/422 not failed at once", status, &c);
	if (te == NULL && !r.too_large && status == 402 && c.outcome != FT_OUTCOME_DECLINED)
		fail("402 not declined", status, &c);
	if ((c.outcome == FT_OUTCOME_RETRY) != c.transient)
		fail("transient flag disagrees with the outcome", status, &c);
	if (c.outcome != FT_OUTCOME_PAID && c.error == NULL)
		fail("no error text for a non-paid outcome", status, &c);
	if (c.retry_after_ms < -1)
		fail("negative Retry-After", status, &c);
	if (c.auth_problem && status != 401 && status != 403)
		fail("auth problem for a status other than 401/403", status, &c);
	check_printable(c.error, "non-printable error text", status, &c);
	check_printable(c.payment_id, "non-printable payment_id", status, &c);
	if (c.error && strlen(c.error) > 512)
		fail("error text longer than 512 bytes", status, &c);

	/* the backoff must stay in range whatever Retry-After said */
	for (int attempt = 1; attempt <= 12; attempt += 11)
	{
		int			d = ft_backoff_delay_ms(attempt, c.retry_after_ms);

		if (d < 0 || d > ft_backoff_max_ms)
			fail("backoff delay out of range", status, &c);
	}

	arena_reset();
	return 0;
}
