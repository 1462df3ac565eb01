/*-------------------------------------------------------------------------
 *
 * classify_common.h
 *	  Set-up shared by the two stand-alone builds of the reply
 *	  classification: the libFuzzer target (fuzz/classify_fuzzer.c) and
 *	  the sanitizer harness (tests/integration/harness/classify_harness.c).
 *
 * Both compile bgworker/gateway_reply.c, gateway_generic.c and backoff.c
 * (and the Stripe providers) unchanged against the server headers and link them with the frontend
 * libpgcommon; classify_common.c supplies the few backend symbols those
 * files reference, one way to run the classifier on a reply, and the
 * invariants of the reply table (docs/reference.md, "Wire protocol")
 * that every verdict must
 * respect.  fuzz/classify_build.sh holds the shared compiler command.
 *
 *-------------------------------------------------------------------------
 */
#ifndef FT_CLASSIFY_COMMON_H
#define FT_CLASSIFY_COMMON_H

#include "gateway.h"

/* the fixed "now" of every classified reply (Retry-After dates) */
#define FT_CLASSIFY_NOW		1700000000

/*
 * Classify one reply with the generic provider.  body may hold NUL bytes
 * (body_len counts them) but must be NUL-terminated at body[body_len], as
 * the transport hands it over; NULL stands for an empty body.
 */
extern void ft_classify(int status, const char *body, size_t body_len,
						const char *retry_after, const char *transport_error,
						bool too_large, FtClassification *c);

/*
 * NULL when the verdict c for the reply described by the other arguments
 * respects the reply table (outcome per status, transient flag, printable
 * error text and payment_id, Retry-After and backoff in range); otherwise
 * what is wrong.
 */
extern const char *ft_classify_violation(int status, const char *transport_error,
										 bool too_large,
										 const FtClassification *c);


#endif							/* FT_CLASSIFY_COMMON_H */
