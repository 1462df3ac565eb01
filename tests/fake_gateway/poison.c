/*-------------------------------------------------------------------------
 *
 * poison.c
 *	  Hostile reply bodies for the payment endpoints (docs/reference.md,
 *	  "Fake gateway"): the fault fields reply_extra_hex (bytes added to
 *	  every JSON object reply, the same each time) and poison_rate (a share
 *	  of replies replaced by a random hostile body), with their counters.
 *
 * The gateway stays honest: a reply is decided and stored in the ledger
 * first (charged or not), and only then is the body sent spoiled.  A
 * spoiled body never says something else than the real reply: it is
 * unreadable (random bytes, cut off, a NUL, broken JSON), or the real
 * reply with hostile additions (huge strings, \u escapes, invalid UTF-8,
 * deep nesting, huge numbers, a field the client reads given a value that
 * no client may accept), or the real reply with its ASCII letters written
 * as \u00XX escapes (which must read the same).  The HTTP status is never
 * changed.  A retry gets the stored reply again (and may be spoiled again);
 * look-ups are spoiled only with poison_lookups.
 *
 * tests/fake_gateway/poison.c
 *
 *-------------------------------------------------------------------------
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway.h"
#include "faults.h"
#include "poison.h"

/* the kinds of spoiled bodies, as counted in GET /ledger "poison_kinds" */
typedef enum PoisonKind
{
	PK_EMPTY,
	PK_RANDOM,
	PK_TRUNCATED,
	PK_NUL,
	PK_HUGE_STRING,
	PK_ESCAPES,
	PK_INVALID_UTF8,
	PK_DEEP,
	PK_NUMBER,
	PK_HOSTILE_FIELD,
	PK_ESCAPED_SAME,
	PK_NUM
} PoisonKind;

static const char *const poison_kind_names[PK_NUM] = {
	"empty", "random_bytes", "truncated", "nul", "huge_string", "escapes",
	"invalid_utf8", "deep_nesting", "huge_number", "hostile_field",
	"escaped_same"
};

static pthread_mutex_t poison_lock = PTHREAD_MUTEX_INITIALIZER;
static char *poison_extra;		/* reply_extra bytes, or NULL */
static size_t poison_extra_len;
static long poison_counts[PK_NUM];
static long poison_total;
static long poison_extra_total;
static size_t poison_bytes_max;

/* a growable byte buffer; on out of memory data is NULL and stays so */
typedef struct PBuf
{
	char	   *data;
	size_t		len;
	size_t		cap;
} PBuf;

static void
pb_add(PBuf *b, const void *p, size_t n)
{
	if (b->data == NULL && b->cap != 0)
		return;
	if (b->len + n + 1 > b->cap)
	{
		size_t		cap = b->cap ? b->cap : 256;
		char	   *d;

		while (cap < b->len + n + 1)
			cap *= 2;
		d = realloc(b->data, cap);
		if (d == NULL)
		{
			free(b->data);
			b->data = NULL;
			b->cap = 1;
			return;
		}
		b->data = d;
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
}

static void
pb_str(PBuf *b, const char *s)
{
	pb_add(b, s, strlen(s));
}

static void
pb_byte(PBuf *b, unsigned char c)
{
	pb_add(b, &c, 1);
}

/* uniform integer in [0, n) */
static size_t
draw_below(size_t n)
{
	size_t		v = (size_t) (ft_faults_draw() * (double) n);

	return v < n ? v : (n ? n - 1 : 0);
}

/* a size between 1 and max, spread evenly over the orders of magnitude */
static size_t
draw_size(size_t max)
{
	double		e = ft_faults_draw() * 20.0;	/* up to 2^20 */
	size_t		n = (size_t) 1 << (int) e;

	n += draw_below(n);
	return n < 1 ? 1 : (n > max ? max : n);
}

/* n printable ASCII bytes that need no JSON escaping */
static void
add_plain(PBuf *b, size_t n)
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=_-";

	for (size_t i = 0; i < n; i++)
		pb_byte(b, alphabet[draw_below(sizeof(alphabet) - 1)]);
}

/* about n bytes of JSON string content made of hostile \u escapes */
static void
add_escapes(PBuf *b, size_t n)
{
	static const char *const esc[] = {
		"\\u0000", "\\u4e2d", "\\u6587", "\\ud800", "\\udc00",
		"\\ud83d\\ude00", "\\u00e9", "\\uffff", "\\ufeff", "\\u0041",
		"\\u001f", "\\u007f", "\\u0080", "\\\"", "\\\\", "\\/", "\\b",
		"\\f", "\\n", "\\r", "\\t"
	};

	for (size_t done = 0; done < n;)
	{
		const char *e = esc[draw_below(sizeof(esc) / sizeof(esc[0]))];

		pb_str(b, e);
		done += strlen(e);
	}
}

/*
 * n bytes of string content with raw bytes that are not UTF-8 (and, one
 * time in four, a raw control character, which is not JSON either)
 */
static void
add_invalid_utf8(PBuf *b, size_t n)
{
	bool		controls = draw_below(4) == 0;

	for (size_t i = 0; i < n; i++)
	{
		unsigned char c;

		switch (draw_below(4))
		{
			case 0:
				c = (unsigned char) (0x80 + draw_below(0x80));
				break;
			case 1:
				c = controls ? (unsigned char) draw_below(0x20) : 'x';
				break;
			default:
				c = (unsigned char) ('a' + draw_below(26));
				break;
		}
		pb_byte(b, c);
	}
}

/* a JSON value nested depth deep (balanced or not), about 2 * depth bytes */
static void
add_deep(PBuf *b, size_t depth)
{
	bool		objects = draw_below(2) == 0;
	bool		balanced = draw_below(4) != 0;

	for (size_t i = 0; i < depth; i++)
		pb_str(b, objects ? "{\"a\":" : "[");
	pb_str(b, "1");
	for (size_t i = 0; i < (balanced ? depth : depth / 2); i++)
		pb_byte(b, objects ? '}' : ']');
}

/* a JSON number no numeric type holds */
static void
add_number(PBuf *b, size_t n)
{
	switch (draw_below(4))
	{
		case 0:
			pb_str(b, "1e999999999");
			break;
		case 1:
			pb_str(b, "-0.");
			for (size_t i = 0; i < n; i++)
				pb_byte(b, '0');
			pb_byte(b, '1');
			break;
		case 2:
			pb_str(b, "1");
			for (size_t i = 0; i < n; i++)
				pb_byte(b, (char) ('0' + draw_below(10)));
			break;
		default:
			pb_str(b, "1E-2147483649");
			break;
	}
}

/*
 * A value no client may accept for a field it reads (an id, a status):
 * too long, not ASCII once decoded, a NUL, or not a string at all.  Never
 * a usable value of another outcome.
 */
static void
add_unusable_value(PBuf *b, size_t n)
{
	switch (draw_below(7))
	{
		case 0:
			pb_byte(b, '"');
			add_plain(b, n < 256 ? 256 + n : n);
			pb_byte(b, '"');
			break;
		case 1:
			pb_str(b, "\"pi_\\u4e2d");
			add_plain(b, draw_below(8));
			pb_byte(b, '"');
			break;
		case 2:
			pb_str(b, "\"succeeded\\u0000\"");
			break;
		case 3:
			pb_str(b, "\"pay_\xff\xfe\"");
			break;
		case 4:
			pb_str(b, "{\"status\":\"x\"}");
			break;
		case 5:
			pb_str(b, "[\"a\",1]");
			break;
		default:
			add_number(b, n);
			break;
	}
}

/*
 * A next_action the client must store safely or replace: large valid JSON
 * (a QR code's image), invalid UTF-8, escapes jsonb refuses, deep nesting,
 * numbers no numeric holds.
 */
static void
add_next_action(PBuf *b, size_t n)
{
	switch (draw_below(5))
	{
		case 0:
			pb_str(b, "{\"type\":\"display_qr_code\",\"display_qr_code\":{\"image_data_url\":\"data:image/png;base64,");
			add_plain(b, n);
			pb_str(b, "\"}}");
			break;
		case 1:
			pb_str(b, "{\"type\":\"redirect_to_url\",\"redirect_to_url\":{\"url\":\"");
			add_invalid_utf8(b, n);
			pb_str(b, "\"}}");
			break;
		case 2:
			pb_str(b, "{\"type\":\"");
			add_escapes(b, n);
			pb_str(b, "\"}");
			break;
		case 3:
			add_deep(b, n / 2 + 1);
			break;
		default:
			pb_str(b, "{\"type\":\"x\",\"amount\":");
			add_number(b, n);
			pb_byte(b, '}');
			break;
	}
}

/* the fields a client reads, by shape; hostile duplicates of them */
static const char *const generic_fields[] = {
	"status", "payment_id", "message", "error", "decline_code",
	"client_secret", "next_action"
};
static const char *const stripe_fields[] = {
	"id", "status", "client_secret", "next_action", "object", "description"
};

/*
 * The reply text with, before its closing brace, one more member whose
 * name is name and value is made by add (or raw bytes when add is NULL).
 * The original text when it is not a JSON object.
 */
static bool
add_member(PBuf *b, const char *text, size_t len, const char *name,
		   void (*add) (PBuf *, size_t), size_t n)
{
	size_t		end = len;

	while (end > 0 && (text[end - 1] == ' ' || text[end - 1] == '\n'))
		end--;
	if (len < 2 || text[0] != '{' || text[end - 1] != '}')
		return false;
	pb_add(b, text, end - 1);
	if (end > 2)
		pb_byte(b, ',');
	pb_byte(b, '"');
	pb_str(b, name);
	pb_str(b, "\":");
	add(b, n);
	pb_byte(b, '}');
	return true;
}

static void
add_string_of_plain(PBuf *b, size_t n)
{
	pb_byte(b, '"');
	add_plain(b, n);
	pb_byte(b, '"');
}

static void
add_string_of_escapes(PBuf *b, size_t n)
{
	pb_byte(b, '"');
	add_escapes(b, n);
	pb_byte(b, '"');
}

static void
add_string_of_invalid_utf8(PBuf *b, size_t n)
{
	pb_byte(b, '"');
	add_invalid_utf8(b, n);
	pb_byte(b, '"');
}

/* the text with ASCII letters and digits inside strings as \u00XX */
static void
escape_same(PBuf *b, const char *text, size_t len)
{
	bool		in_string = false;

	for (size_t i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) text[i];

		if (in_string && c == '\\' && i + 1 < len)
		{
			pb_add(b, text + i, 2);
			i++;
			continue;
		}
		if (c == '"')
			in_string = !in_string;
		if (in_string && c != '"' && ((c >= 'a' && c <= 'z') ||
									  (c >= 'A' && c <= 'Z') ||
									  (c >= '0' && c <= '9') || c == '_') &&
			draw_below(2) == 0)
		{
			char		esc[8];

			snprintf(esc, sizeof(esc), "\\u%04x", c);
			pb_str(b, esc);
		}
		else
			pb_byte(b, c);
	}
}

/*
 * A spoiled copy of the reply text (len bytes) of at most about max bytes,
 * of a randomly drawn kind (*kind).  Returns a malloc'd body, *outlen set,
 * or NULL when out of memory.
 */
static char *
poison_mutate(const char *text, size_t len, size_t max, bool stripe,
			  size_t *outlen, PoisonKind *kind)
{
	PBuf		b = {NULL, 0, 0};
	size_t		n = draw_size(max > 64 ? max - 64 : 1);
	const char *const *fields = stripe ? stripe_fields : generic_fields;
	size_t		nfields = stripe ? sizeof(stripe_fields) / sizeof(stripe_fields[0])
		: sizeof(generic_fields) / sizeof(generic_fields[0]);
	char		name[32];
	bool		ok = true;

	*kind = (PoisonKind) draw_below(PK_NUM);
	snprintf(name, sizeof(name), "x_%zu", draw_below(1000));
	switch (*kind)
	{
		case PK_EMPTY:
			pb_add(&b, "", 0);
			break;
		case PK_RANDOM:
			for (size_t i = 0; i < n; i++)
				pb_byte(&b, (unsigned char) draw_below(256));
			break;
		case PK_TRUNCATED:
			pb_add(&b, text, len ? draw_below(len) : 0);
			break;
		case PK_NUL:
			{
				size_t		at = len ? draw_below(len) : 0;

				pb_add(&b, text, at);
				pb_byte(&b, '\0');
				pb_add(&b, text + at, len - at);
			}
			break;
		case PK_HUGE_STRING:
			ok = add_member(&b, text, len, name, add_string_of_plain, n);
			break;
		case PK_ESCAPES:
			ok = add_member(&b, text, len, draw_below(2) ? "message" : name,
							add_string_of_escapes, n);
			break;
		case PK_INVALID_UTF8:
			ok = add_member(&b, text, len, draw_below(2) ? "message" : name,
							add_string_of_invalid_utf8, n);
			break;
		case PK_DEEP:
			ok = add_member(&b, text, len, name, add_deep, n / 2 + 1);
			break;
		case PK_NUMBER:
			ok = add_member(&b, text, len, name, add_number, n);
			break;
		case PK_HOSTILE_FIELD:
			{
				const char *field = fields[draw_below(nfields)];

				if (strcmp(field, "next_action") == 0)
					ok = add_member(&b, text, len, field, add_next_action, n);
				else if (strcmp(field, "message") == 0 ||
						 strcmp(field, "description") == 0)
					ok = add_member(&b, text, len, field,
									draw_below(2) ? add_string_of_escapes
									: add_string_of_invalid_utf8, n);
				else
					ok = add_member(&b, text, len, field, add_unusable_value, n);
			}
			break;
		case PK_ESCAPED_SAME:
			escape_same(&b, text, len);
			break;
		case PK_NUM:
			break;
	}
	if (!ok)
	{
		/* not an object: cut it off instead */
		*kind = PK_TRUNCATED;
		free(b.data);
		b.data = NULL;
		b.len = b.cap = 0;
		pb_add(&b, text, len ? draw_below(len) : 0);
	}
	if (b.data == NULL && b.cap == 0)
		pb_add(&b, "", 0);
	if (b.data != NULL && b.len > max)
	{
		/* cut to the size asked for (a cut object is unreadable too) */
		b.len = max;
		b.data[max] = '\0';
	}
	*outlen = b.len;
	return b.data;
}

/* text (malloc'd, len bytes) with reply_extra added, or as it was */
static char *
poison_add_extra(char *text, size_t *len)
{
	PBuf		b = {NULL, 0, 0};
	size_t		end = *len;

	pthread_mutex_lock(&poison_lock);
	if (poison_extra == NULL)
	{
		pthread_mutex_unlock(&poison_lock);
		return text;
	}
	while (end > 0 && (text[end - 1] == ' ' || text[end - 1] == '\n'))
		end--;
	if (end >= 2 && text[0] == '{' && text[end - 1] == '}')
	{
		pb_add(&b, text, end - 1);
		if (end > 2)
			pb_byte(&b, ',');
		pb_add(&b, poison_extra, poison_extra_len);
		pb_byte(&b, '}');
		poison_extra_total++;
	}
	pthread_mutex_unlock(&poison_lock);
	if (b.data == NULL)
		return text;
	free(text);
	*len = b.len;
	return b.data;
}

/*
 * Queue a reply of a payment endpoint: text (malloc'd JSON, taken over),
 * with reply_extra added and, with probability poison_rate, spoiled (a
 * look-up's reply only with poison_lookups).  stripe: the reply has Stripe's shape.
 */
enum MHD_Result
ft_gw_reply_payment(struct MHD_Connection *conn, unsigned int status,
					char *text, size_t len, const char *hname,
					const char *hvalue, bool stripe, bool lookup)
{
	FtFaults	f;

	if (text == NULL)
		return MHD_NO;
	ft_faults_snapshot(&f);
	if (!lookup || f.poison_lookups)
		text = poison_add_extra(text, &len);
	if (f.poison_rate > 0 && (!lookup || f.poison_lookups) &&
		ft_faults_draw() < f.poison_rate)
	{
		PoisonKind	kind;
		size_t		plen;
		char	   *p = poison_mutate(text, len,
									  f.poison_max_bytes > 0 ? (size_t) f.poison_max_bytes
									  : FT_POISON_MAX_BYTES,
									  stripe, &plen, &kind);

		if (p != NULL)
		{
			free(text);
			text = p;
			len = plen;
			pthread_mutex_lock(&poison_lock);
			poison_counts[kind]++;
			poison_total++;
			if (len > poison_bytes_max)
				poison_bytes_max = len;
			pthread_mutex_unlock(&poison_lock);
		}
	}
	return ft_gw_reply(conn, status, text, len, "application/json",
					   hname, hvalue);
}

/* ft_gw_reply_payment of a JSON object (reference taken over) */
enum MHD_Result
ft_gw_reply_payment_json(struct MHD_Connection *conn, unsigned int status,
						 json_t *obj, const char *hname, const char *hvalue,
						 bool stripe, bool lookup)
{
	char	   *text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;

	json_decref(obj);
	if (text == NULL)
		return MHD_NO;
	return ft_gw_reply_payment(conn, status, text, strlen(text), hname, hvalue,
							   stripe, lookup);
}

/*
 * Set reply_extra from its hex form (NULL or "": none).  Returns false,
 * changing nothing, when hex is not an even number of hex digits or
 * decodes to more than FT_POISON_MAX_BYTES.
 */
bool
ft_poison_set_extra_hex(const char *hex)
{
	size_t		n = hex ? strlen(hex) : 0;
	char	   *bytes = NULL;

	if (n % 2 != 0 || n / 2 > FT_POISON_MAX_BYTES)
		return false;
	if (n > 0)
	{
		bytes = malloc(n / 2);
		if (bytes == NULL)
			return false;
		for (size_t i = 0; i < n / 2; i++)
		{
			unsigned int v;

			if (sscanf(hex + 2 * i, "%2x", &v) != 1 ||
				strchr("0123456789abcdefABCDEF", hex[2 * i]) == NULL ||
				strchr("0123456789abcdefABCDEF", hex[2 * i + 1]) == NULL)
			{
				free(bytes);
				return false;
			}
			bytes[i] = (char) v;
		}
	}
	pthread_mutex_lock(&poison_lock);
	free(poison_extra);
	poison_extra = bytes;
	poison_extra_len = n / 2;
	pthread_mutex_unlock(&poison_lock);
	return true;
}

/* reply_extra's length in bytes (0: none), for GET /faults */
size_t
ft_poison_extra_len(void)
{
	size_t		n;

	pthread_mutex_lock(&poison_lock);
	n = poison_extra ? poison_extra_len : 0;
	pthread_mutex_unlock(&poison_lock);
	return n;
}

/* the counters of GET /ledger: poisoned_replies, poison_kinds, ... */
json_t *
ft_poison_stats_json(void)
{
	json_t	   *kinds = json_object();
	json_t	   *j;

	pthread_mutex_lock(&poison_lock);
	for (int i = 0; i < PK_NUM; i++)
		json_object_set_new(kinds, poison_kind_names[i],
							json_integer(poison_counts[i]));
	j = json_pack("{s:I, s:I, s:I, s:o}",
				  "poisoned_replies", (json_int_t) poison_total,
				  "poisoned_bytes_max", (json_int_t) poison_bytes_max,
				  "extra_replies", (json_int_t) poison_extra_total,
				  "poison_kinds", kinds);
	pthread_mutex_unlock(&poison_lock);
	return j;
}

/* DELETE /ledger: zero the counters */
void
ft_poison_clear_stats(void)
{
	pthread_mutex_lock(&poison_lock);
	memset(poison_counts, 0, sizeof(poison_counts));
	poison_total = poison_extra_total = 0;
	poison_bytes_max = 0;
	pthread_mutex_unlock(&poison_lock);
}
