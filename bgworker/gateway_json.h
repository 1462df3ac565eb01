/*-------------------------------------------------------------------------
 *
 * gateway_json.h
 *	  Reading reply JSON the same way in every server encoding, and what of
 *	  it may be stored (gateway_json.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef FT_GATEWAY_JSON_H
#define FT_GATEWAY_JSON_H

#include "common/jsonapi.h"

/*
 * What a character outside U+0001..U+007F of a reply's name or string
 * becomes (ASCII SUB): no id, status or code the workers accept holds it.
 */
#define FT_JSON_NOT_ASCII		'\x1a'

/*
 * The largest next_action stored, and its deepest nesting: with
 * client_secret it fits a NOTIFY payload (8000 bytes) however jsonb
 * prints it.
 */
#define FT_NEXT_ACTION_MAX		3000
#define FT_NEXT_ACTION_DEPTH	32

/* the longest payment id or client secret a worker stores */
#define FT_STORED_ID_MAX		255

extern JsonParseErrorType ft_json_parse_ascii(JsonLexContext *lex,
											  const JsonSemAction *inner);
extern bool ft_json_storable(const char *s, size_t len, bool utf8,
							 size_t maxlen, int maxdepth, const char **why);
extern char *ft_json_next_action(const char *s, bool utf8);

#endif							/* FT_GATEWAY_JSON_H */
