/*-------------------------------------------------------------------------
 *
 * gateway_json.c
 *	  Reading a gateway's JSON reply the same way in every server
 *	  encoding, and deciding whether JSON taken from a reply may be stored.
 *
 * PostgreSQL's JSON parser, asked for de-escaped strings, converts every
 * \u escape to the server encoding: in a LATIN1 or SQL_ASCII database a
 * \u4e2d anywhere in a reply is an error, and so is \u0000 in every
 * encoding, although the fields a worker reads are ASCII.  Replies are
 * therefore parsed with escapes left alone (the parser still checks the
 * whole body's syntax), and ft_json_parse_ascii hands the provider's
 * semantic actions field names and string values de-escaped here, to
 * ASCII: every character outside U+0001..U+007F, raw or escaped, becomes
 * FT_JSON_NOT_ASCII, which no id, status or code a worker accepts may
 * contain.  So a reply reads the same in every database; whatever else a
 * body holds is ignored, never an error.
 *
 * ft_json_storable says whether a JSON value copied from a reply (a
 * next_action) may go into a jsonb column of this database: small,
 * shallow, valid in the database's encoding, and free of what jsonb
 * refuses (\u0000, unpaired surrogates, escapes the encoding cannot
 * hold, numbers no numeric holds).  Everything here is a pure function of
 * its arguments, like the providers that call it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/jsonapi.h"
#include "mb/pg_wchar.h"

#include "compat.h"
#include "gateway.h"
#include "gateway_json.h"

/* longest JSON number stored, in characters, and largest exponent */
#define FT_JSON_NUMBER_MAX		64
#define FT_JSON_EXPONENT_MAX	300

/* semantic-action state of ft_json_parse_ascii */
typedef struct FtAsciiWalk
{
	JsonLexContext *lex;
	const JsonSemAction *inner; /* the provider's actions */
	const char *name_from;		/* the next field name starts here or after */
	const char *value_from;		/* the next value starts here or after */
} FtAsciiWalk;

static bool
ft_json_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* value of the hex digit c, or -1 */
static int
ft_json_hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* the code point of the \uXXXX escape at p (6 bytes before end), or -1 */
static int
ft_json_escape_code(const char *p, const char *end)
{
	int			cp = 0;

	if (end - p < 6 || p[0] != '\\' || p[1] != 'u')
		return -1;
	for (int i = 2; i < 6; i++)
	{
		int			h = ft_json_hex(p[i]);

		if (h < 0)
			return -1;
		cp = cp * 16 + h;
	}
	return cp;
}

/*
 * The JSON string lexeme that starts at the first non-blank byte at or
 * after from, de-escaped to ASCII (see the file banner), palloc'd; *endp
 * is set just past its closing quote.  NULL when no string starts there.
 * The parser has checked the lexeme's syntax already; the scan is bounded
 * by the input's end all the same.
 */
static char *
ft_json_ascii_string(const char *from, const char *input_end, const char **endp)
{
	const char *p = from;
	const char *q;
	char	   *out;
	char	   *o;

	while (p < input_end && ft_json_space(*p))
		p++;
	if (p >= input_end || *p != '"')
		return NULL;
	for (q = p + 1; q < input_end && *q != '"'; q++)
	{
		if (*q == '\\')
			q++;
	}
	if (q >= input_end)
		return NULL;
	*endp = q + 1;

	out = o = palloc(q - p);
	for (p = p + 1; p < q;)
	{
		unsigned char c = (unsigned char) *p;
		int			cp;

		if (c != '\\')
		{
			*o++ = (c < 0x80) ? (char) c : FT_JSON_NOT_ASCII;
			p++;
			continue;
		}
		if (p + 1 >= q)
		{
			*o++ = FT_JSON_NOT_ASCII;
			break;
		}
		switch (p[1])
		{
			case '"':
			case '\\':
			case '/':
				*o++ = p[1];
				break;
			case 'b':
				*o++ = '\b';
				break;
			case 'f':
				*o++ = '\f';
				break;
			case 'n':
				*o++ = '\n';
				break;
			case 'r':
				*o++ = '\r';
				break;
			case 't':
				*o++ = '\t';
				break;
			case 'u':
				cp = ft_json_escape_code(p, q);
				if (cp < 0)
				{
					*o++ = FT_JSON_NOT_ASCII;
					p += 2;
					continue;
				}
				*o++ = (cp >= 0x01 && cp <= 0x7f) ? (char) cp : FT_JSON_NOT_ASCII;
				/* a surrogate pair is one character */
				if (cp >= 0xd800 && cp <= 0xdbff)
				{
					int			lo = ft_json_escape_code(p + 6, q);

					if (lo >= 0xdc00 && lo <= 0xdfff)
						p += 6;
				}
				p += 6;
				continue;
			default:
				*o++ = FT_JSON_NOT_ASCII;
				break;
		}
		p += 2;
	}
	*o = '\0';
	return out;
}

static const char *
ft_json_input_end(const JsonLexContext *lex)
{
	return lex->input + lex->input_length;
}

static FtJsonResult
ascii_object_start(void *state)
{
	FtAsciiWalk *w = (FtAsciiWalk *) state;

	/* the lexer is at the opening brace: the first name follows it */
	w->name_from = w->lex->token_start + 1;
	if (w->inner->object_start)
		return w->inner->object_start(w->inner->semstate);
	return FT_JSON_OK;
}

static FtJsonResult
ascii_object_end(void *state)
{
	FtAsciiWalk *w = (FtAsciiWalk *) state;

	if (w->inner->object_end)
		return w->inner->object_end(w->inner->semstate);
	return FT_JSON_OK;
}

static FtJsonResult
ascii_array_start(void *state)
{
	FtAsciiWalk *w = (FtAsciiWalk *) state;

	if (w->inner->array_start)
		return w->inner->array_start(w->inner->semstate);
	return FT_JSON_OK;
}

static FtJsonResult
ascii_array_end(void *state)
{
	FtAsciiWalk *w = (FtAsciiWalk *) state;

	if (w->inner->array_end)
		return w->inner->array_end(w->inner->semstate);
	return FT_JSON_OK;
}

static FtJsonResult
ascii_field_start(void *state, char *fname, bool isnull)
{
	FtAsciiWalk *w = (FtAsciiWalk *) state;
	const char *end;
	char	   *name = NULL;

	/*
	 * The lexer is at the value: the name lies between name_from and it.
	 * (At the end of the input there is no token: the parser then fails.)
	 */
	if (w->name_from != NULL && w->lex->token_start != NULL &&
		w->name_from <= w->lex->token_start)
		name = ft_json_ascii_string(w->name_from, w->lex->token_start, &end);
	w->value_from = w->lex->token_start;
	if (w->inner->object_field_start)
		return w->inner->object_field_start(w->inner->semstate, name, isnull);
	return FT_JSON_OK;
}

static FtJsonResult
ascii_field_end(void *state, char *fname, bool isnull)
{
	FtAsciiWalk *w = (FtAsciiWalk *) state;

	/* the lexer is at the comma or the closing brace (or the input's end) */
	w->name_from = w->lex->token_start ? w->lex->token_start + 1 : NULL;
	if (w->inner->object_field_end)
		return w->inner->object_field_end(w->inner->semstate, NULL, isnull);
	return FT_JSON_OK;
}

static FtJsonResult
ascii_element_start(void *state, bool isnull)
{
	FtAsciiWalk *w = (FtAsciiWalk *) state;

	w->value_from = w->lex->token_start;
	if (w->inner->array_element_start)
		return w->inner->array_element_start(w->inner->semstate, isnull);
	return FT_JSON_OK;
}

static FtJsonResult
ascii_element_end(void *state, bool isnull)
{
	FtAsciiWalk *w = (FtAsciiWalk *) state;

	if (w->inner->array_element_end)
		return w->inner->array_element_end(w->inner->semstate, isnull);
	return FT_JSON_OK;
}

static FtJsonResult
ascii_scalar(void *state, char *token, JsonTokenType tokentype)
{
	FtAsciiWalk *w = (FtAsciiWalk *) state;
	char	   *value = token;

	if (tokentype == JSON_TOKEN_STRING)
	{
		const char *end = NULL;

		/* the lexer has just passed the string: it ends there */
		value = ft_json_ascii_string(w->value_from ? w->value_from : w->lex->input,
									 ft_json_input_end(w->lex), &end);
		if (value != NULL && end != w->lex->prev_token_terminator)
			value = NULL;
		if (value == NULL)
			value = psprintf("%c", FT_JSON_NOT_ASCII);
	}
	w->value_from = NULL;
	if (w->inner->scalar)
		return w->inner->scalar(w->inner->semstate, value, tokentype);
	return FT_JSON_OK;
}

static const JsonSemAction ft_ascii_actions = {
	.object_start = ascii_object_start,
	.object_end = ascii_object_end,
	.array_start = ascii_array_start,
	.array_end = ascii_array_end,
	.object_field_start = ascii_field_start,
	.object_field_end = ascii_field_end,
	.array_element_start = ascii_element_start,
	.array_element_end = ascii_element_end,
	.scalar = ascii_scalar,
};

/*
 * Parse with PostgreSQL's parser the text of lex, a lexer made without
 * de-escaping (need_escapes false), calling the semantic actions of
 * inner as pg_parse_json would with de-escaping, except that names and
 * string values are ASCII (see the file banner) and object_field_end gets
 * no name.  May raise what pg_parse_json raises (stack depth).
 */
JsonParseErrorType
ft_json_parse_ascii(JsonLexContext *lex, const JsonSemAction *inner)
{
	FtAsciiWalk walk;
	JsonSemAction sem = ft_ascii_actions;

	memset(&walk, 0, sizeof(walk));
	walk.lex = lex;
	walk.inner = inner;
	sem.semstate = &walk;
	return pg_parse_json(lex, &sem);
}

/*
 * Whether the len bytes of s are one JSON value that jsonb accepts in a
 * database whose encoding is UTF8 (utf8) or another one, at most maxlen
 * bytes and nested at most maxdepth deep.  When it is not, *why says why
 * in a few words.
 */
bool
ft_json_storable(const char *s, size_t len, bool utf8, size_t maxlen,
				 int maxdepth, const char **why)
{
	const char *end = s + len;
	bool		in_string = false;
	int			depth = 0;
	JsonLexContext *lex;
	JsonSemAction sem;
	JsonParseErrorType rc;

	*why = NULL;
	if (len > maxlen)
	{
		*why = "too large";
		return false;
	}
	if (len == 0 || memchr(s, '\0', len) != NULL)
	{
		*why = "not JSON";
		return false;
	}
	if (utf8 && pg_encoding_verifymbstr(PG_UTF8, s, (int) len) != (int) len)
	{
		*why = "not valid UTF-8";
		return false;
	}

	/* escapes, numbers and depth, before the parser sees deep nesting */
	for (const char *p = s; p < end; p++)
	{
		unsigned char c = (unsigned char) *p;

		if (!utf8 && c >= 0x80)
		{
			*why = "not ASCII";
			return false;
		}
		if (in_string)
		{
			int			cp;

			if (c == '"')
				in_string = false;
			else if (c == '\\' && p + 1 < end && p[1] == 'u')
			{
				cp = ft_json_escape_code(p, end);
				if (cp == 0 || (!utf8 && cp >= 0x80))
				{
					*why = "an escape the database cannot hold";
					return false;
				}
				if (cp >= 0xd800 && cp <= 0xdbff)
				{
					int			lo = ft_json_escape_code(p + 6, end);

					if (lo < 0xdc00 || lo > 0xdfff)
					{
						*why = "an unpaired surrogate";
						return false;
					}
					p += 6;
				}
				else if (cp >= 0xdc00 && cp <= 0xdfff)
				{
					*why = "an unpaired surrogate";
					return false;
				}
				if (cp > 0)
					p += 5;
			}
			else if (c == '\\')
				p++;
			continue;
		}
		if (c == '"')
			in_string = true;
		else if (c == '{' || c == '[')
		{
			if (++depth > maxdepth)
			{
				*why = "nested too deep";
				return false;
			}
		}
		else if (c == '}' || c == ']')
			depth--;
		else if (c == '-' || (c >= '0' && c <= '9'))
		{
			const char *q = p;
			const char *e = NULL;

			while (q < end && (*q == '-' || *q == '+' || *q == '.' ||
							   *q == 'e' || *q == 'E' || (*q >= '0' && *q <= '9')))
			{
				if (*q == 'e' || *q == 'E')
					e = q;
				q++;
			}
			if (q - p > FT_JSON_NUMBER_MAX ||
				(e != NULL && q - e > 5) ||
				(e != NULL && labs(strtol(e + 1, NULL, 10)) > FT_JSON_EXPONENT_MAX))
			{
				*why = "a number out of range";
				return false;
			}
			p = q - 1;
		}
	}

	/* the syntax, by PostgreSQL's parser (escapes are checked above) */
	memset(&sem, 0, sizeof(sem));
	lex = ft_make_json_lexer(unconstify(char *, s), (int) len, PG_UTF8, false);
	rc = pg_parse_json(lex, &sem);
	if (rc != JSON_SUCCESS)
	{
		*why = "not JSON";
		return false;
	}
	return true;
}

/*
 * A next_action from a reply as it may be stored in this database (utf8:
 * its encoding is UTF8): the reply's JSON text when ft_json_storable
 * accepts it, else the marker {"type":"unavailable","reason":"..."} (the
 * application then asks the gateway itself, with the client secret).
 * NULL for NULL.  palloc'd.
 */
char *
ft_json_next_action(const char *s, bool utf8)
{
	const char *why;

	if (s == NULL)
		return NULL;
	if (ft_json_storable(s, strlen(s), utf8, FT_NEXT_ACTION_MAX,
						 FT_NEXT_ACTION_DEPTH, &why))
		return pstrdup(s);
	return psprintf("{\"type\":\"unavailable\",\"reason\":\"%s\"}", why);
}
