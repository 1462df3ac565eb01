/*-------------------------------------------------------------------------
 *
 * classify_fuzzer.c
 *	  libFuzzer target over the generic provider's reply classification
 *	  (docs/reference.md, "Wire protocol"): HTTP status + Retry-After header + transport error
 *	  + body -> outcome.  Built and run by fuzz/run.sh (`make fuzz`).
 *
 * gateway_reply.c, gateway_generic.c and backoff.c are compiled unchanged, as for
 * tests/integration/harness/classify_harness.c, against the server headers
 * and linked with the frontend libpgcommon (StringInfo, the JSON parser);
 * the backend stand-ins and the reply table's invariants are shared with
 * that harness (classify_common.c, built by classify_build.sh).
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

#include "classify_common.h"
#include "gateway_json.h"

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
	FtClassification c;
	int			status;
	const char *why;

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

	ft_classify(status, body, body_len, ra, te, (hdr[2] & 1) != 0, &c);
	why = ft_classify_violation(status, te, (hdr[2] & 1) != 0, &c);
	if (why != NULL)
	{
		fprintf(stderr, "invariant violated: %s (HTTP %d, outcome %s, error \"%s\")\n",
				why, status, ft_outcome_name(c.outcome), c.error ? c.error : "(null)");
		abort();
	}

	/* the body as a next_action: stored as it is, or the marker */
	{
		static const char marker[] = "{\"type\":\"unavailable\",";
		char	   *stored = ft_json_next_action(body, (hdr[2] & 8) != 0);

		if (strcmp(stored, body) != 0 &&
			strncmp(stored, marker, sizeof(marker) - 1) != 0)
		{
			fprintf(stderr, "next_action neither kept nor replaced by the marker\n");
			abort();
		}
		if (strcmp(stored, body) == 0 && strlen(body) > FT_NEXT_ACTION_MAX)
		{
			fprintf(stderr, "next_action of %zu bytes kept\n", strlen(body));
			abort();
		}
	}

	arena_reset();
	return 0;
}
