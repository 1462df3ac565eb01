/*-------------------------------------------------------------------------
 *
 * ledger.h
 *	  The fake gateway's idempotency ledger and its counters.
 *
 * tests/fake_gateway/ledger.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef FT_LEDGER_H
#define FT_LEDGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* What a key lookup or store decided. */
typedef enum FtLedgerOutcome
{
	FT_LEDGER_NEW,				/* no stored reply: go on (or: stored now) */
	FT_LEDGER_REPLAY,			/* same body: replay the stored reply */
	FT_LEDGER_MISMATCH			/* different body under the same key: 422 */
} FtLedgerOutcome;

/* Counters bumped from outside the ledger; see ft_ledger_count. */
typedef enum FtCounter
{
	FT_C_REQUESTS,
	FT_C_DECLINES,
	FT_C_REJECTS,
	FT_C_FAULTS,
	FT_C_LOST,
	FT_C_GARBAGE,
	FT_C_UNAUTHORIZED,
	FT_C_RATE_LIMITED,
	FT_C_REPLAYS,				/* bumped by the ledger itself */
	FT_C_MISMATCHES,			/* bumped by the ledger itself */
	FT_C_FORGOTTEN,				/* keys past key_ttl_s: bumped by the ledger */
	FT_C_LOOKUPS,
	FT_C_NUM
} FtCounter;

extern void ft_ledger_count(FtCounter c);
extern void ft_ledger_set_auth(bool ok);
extern FtLedgerOutcome ft_ledger_begin(const char *key, uint64_t hash,
									   int64_t order_id, int64_t now_us,
									   int64_t key_ttl_us,
									   int *status, char **reply);
extern FtLedgerOutcome ft_ledger_store(const char *key, uint64_t hash,
									   int64_t order_id, int64_t now_us,
									   int64_t key_ttl_us,
									   int status, const char *reply,
									   const char *payment_id, int64_t amount,
									   bool pending,
									   int *out_status, char **out_reply);
extern bool ft_ledger_lookup(const char *key, int *status, char **reply);
extern bool ft_ledger_complete(const char *key, int64_t now_us);
extern bool ft_ledger_charged(const char *key, int64_t *amount);
extern json_t *ft_ledger_stats_json(void);
extern json_t *ft_ledger_entry_json(const char *key);
extern char *ft_ledger_receipts(size_t *len);
extern void ft_ledger_log_request(int64_t arrival_us, const char *src,
								  const char *key, int64_t order_id,
								  const char *customer_id);
extern char *ft_ledger_requests(size_t *len);
extern void ft_ledger_clear(void);

#endif							/* FT_LEDGER_H */
