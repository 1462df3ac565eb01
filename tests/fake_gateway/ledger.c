/*-------------------------------------------------------------------------
 *
 * ledger.c
 *	  The idempotency ledger: Idempotency-Key -> stored reply, plus the
 *	  charge counters that tests and benchmarks assert on.
 *
 * Keys and orders live in two uthash tables behind ledger_lock.  A key is
 * created on its first valid request (so first_received_us is the arrival
 * of the first attempt) but has no stored reply until ft_ledger_store;
 * until then it is free for retries.  The plain counters are updated with
 * atomics so that the hot path takes the lock only for the key itself.
 *
 * duplicate_keys counts keys charged twice (a bug in this file if ever
 * non-zero, unless key_ttl_s made the ledger forget a key: then a repeated
 * key is a new charge, as at Stripe, and shows here); duplicate_orders
 * counts order_ids charged under more than one key, which is how a client
 * that changes its key between retries shows.
 *
 * Apart from the idempotency state (the stored reply, forgotten after
 * key_ttl_s), a key keeps its payment for good: GET /payments/{key}
 * answers with the last final reply stored under it (the look-up of
 * docs/reference.md, "Reconciliation"), and a requires_action payment
 * stays so until POST /ledger/{key}/complete charges it.
 *
 * tests/fake_gateway/ledger.c
 *
 *-------------------------------------------------------------------------
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uthash.h>

#include "gateway.h"
#include "ledger.h"
#include "textlog.h"

typedef struct LedgerEntry
{
	char	   *key;
	uint64_t	hash;			/* hash of the body of the stored reply */
	int64_t		order_id;
	int			status;			/* stored HTTP status, 0 = none yet */
	char	   *reply;			/* stored reply body */
	int64_t		stored_us;		/* when the reply was stored */
	char		payment_id[32];
	int			charges;
	int64_t		amount;			/* of the last charge */
	int			payment_status; /* the payment for look-ups: 0 = none */
	char	   *payment_reply;
	bool		pending_action; /* requires_action, not completed yet */
	int64_t		first_received_us;
	int64_t		requests;
	UT_hash_handle hh;
} LedgerEntry;

typedef struct OrderEntry
{
	int64_t		order_id;
	int			keys_charged;
	UT_hash_handle hh;
} OrderEntry;

static pthread_mutex_t ledger_lock = PTHREAD_MUTEX_INITIALIZER;
static LedgerEntry *entries;
static OrderEntry *orders;
static int64_t nkeys;
static int64_t ncharges;
static int64_t duplicate_keys;
static int64_t duplicate_orders;
static int64_t counters[FT_C_NUM];
static int	last_auth_ok;

/* GET /ledger/requests: one text line per valid POST /payments */
static FtTextLog request_log = FT_TEXTLOG_INIT("request");

static void *
ledger_alloc(size_t size)
{
	void	   *p = calloc(1, size);

	if (p == NULL)
	{
		fprintf(stderr, "fake_gateway: out of memory\n");
		abort();
	}
	return p;
}

static char *
ledger_strdup(const char *s)
{
	size_t		len = strlen(s) + 1;

	return memcpy(ledger_alloc(len), s, len);
}

void
ft_ledger_count(FtCounter c)
{
	__atomic_add_fetch(&counters[c], 1, __ATOMIC_RELAXED);
}

void
ft_ledger_set_auth(bool ok)
{
	__atomic_store_n(&last_auth_ok, ok ? 1 : 0, __ATOMIC_RELAXED);
}

/* Find key, creating it without a stored reply.  Caller holds the lock. */
static LedgerEntry *
ledger_find_or_add(const char *key, int64_t order_id, int64_t now_us)
{
	LedgerEntry *e;

	HASH_FIND_STR(entries, key, e);
	if (e == NULL)
	{
		e = ledger_alloc(sizeof(LedgerEntry));
		e->key = ledger_strdup(key);
		e->order_id = order_id;
		e->first_received_us = now_us;
		HASH_ADD_KEYPTR(hh, entries, e->key, strlen(e->key), e);
		nkeys++;
	}
	return e;
}

/*
 * Compare a request with the stored reply of e.  On a replay, *status and
 * *reply (malloc'd, caller frees) receive the stored reply.  Caller holds
 * the lock.
 */
static FtLedgerOutcome
ledger_check(LedgerEntry *e, uint64_t hash, int64_t now_us, int64_t key_ttl_us,
			 int *status, char **reply)
{
	if (e->status != 0 && key_ttl_us > 0 && now_us - e->stored_us > key_ttl_us)
	{
		/* retention over: the key is forgotten, its payment is not */
		free(e->reply);
		e->reply = NULL;
		e->status = 0;
		ft_ledger_count(FT_C_FORGOTTEN);
	}
	if (e->status == 0)
		return FT_LEDGER_NEW;
	if (e->hash != hash)
	{
		ft_ledger_count(FT_C_MISMATCHES);
		return FT_LEDGER_MISMATCH;
	}
	ft_ledger_count(FT_C_REPLAYS);
	*status = e->status;
	*reply = ledger_strdup(e->reply);
	return FT_LEDGER_REPLAY;
}

/* Record a charge under e.  Caller holds the lock. */
static void
ledger_charge(LedgerEntry *e)
{
	OrderEntry *o;

	ncharges++;
	if (++e->charges == 2)
		duplicate_keys++;
	if (e->charges > 1)
		return;
	HASH_FIND(hh, orders, &e->order_id, sizeof(int64_t), o);
	if (o == NULL)
	{
		o = ledger_alloc(sizeof(OrderEntry));
		o->order_id = e->order_id;
		HASH_ADD(hh, orders, order_id, sizeof(int64_t), o);
	}
	if (++o->keys_charged == 2)
		duplicate_orders++;
}

/*
 * First look at a key for a request: count the request and tell whether
 * there is a stored reply to replay (see ledger_check).
 */
FtLedgerOutcome
ft_ledger_begin(const char *key, uint64_t hash, int64_t order_id,
				int64_t now_us, int64_t key_ttl_us, int *status, char **reply)
{
	LedgerEntry *e;
	FtLedgerOutcome out;

	pthread_mutex_lock(&ledger_lock);
	e = ledger_find_or_add(key, order_id, now_us);
	e->requests++;
	out = ledger_check(e, hash, now_us, key_ttl_us, status, reply);
	pthread_mutex_unlock(&ledger_lock);
	return out;
}

/*
 * Store the final reply for key, charging it if payment_id is not NULL
 * (with pending, a requires_action payment: charged only when completed).
 * If a concurrent request with the same key stored first, nothing is
 * stored and the result is that of ledger_check against its reply.
 */
FtLedgerOutcome
ft_ledger_store(const char *key, uint64_t hash, int64_t order_id,
				int64_t now_us, int64_t key_ttl_us, int status,
				const char *reply, const char *payment_id, int64_t amount,
				bool pending, int *out_status, char **out_reply)
{
	LedgerEntry *e;
	FtLedgerOutcome out;

	pthread_mutex_lock(&ledger_lock);
	e = ledger_find_or_add(key, order_id, now_us);
	out = ledger_check(e, hash, now_us, key_ttl_us, out_status, out_reply);
	if (out == FT_LEDGER_NEW)
	{
		e->hash = hash;
		e->order_id = order_id;
		e->status = status;
		e->reply = ledger_strdup(reply);
		e->stored_us = now_us;
		if (status == 200 || status == 402)
		{
			free(e->payment_reply);
			e->payment_reply = ledger_strdup(reply);
			e->payment_status = status;
		}
		if (payment_id != NULL)
		{
			snprintf(e->payment_id, sizeof(e->payment_id), "%s", payment_id);
			e->amount = amount;
			e->pending_action = pending;
			if (!pending)
				ledger_charge(e);
		}
	}
	pthread_mutex_unlock(&ledger_lock);
	return out;
}

/*
 * GET /payments/{key}: the payment made under key, if any (a final reply
 * was stored: succeeded, declined or requires_action), whatever the
 * idempotency retention.  *reply is malloc'd.
 */
bool
ft_ledger_lookup(const char *key, int *status, char **reply)
{
	LedgerEntry *e;
	bool		found = false;

	ft_ledger_count(FT_C_LOOKUPS);
	pthread_mutex_lock(&ledger_lock);
	HASH_FIND_STR(entries, key, e);
	if (e != NULL && e->payment_reply != NULL)
	{
		*status = e->payment_status;
		*reply = ledger_strdup(e->payment_reply);
		found = true;
	}
	pthread_mutex_unlock(&ledger_lock);
	return found;
}

/*
 * POST /ledger/{key}/complete: the customer finished a requires_action
 * payment; it is charged and its look-up says succeeded.  false if key
 * has no payment waiting for the customer.
 */
bool
ft_ledger_complete(const char *key, int64_t now_us)
{
	LedgerEntry *e;
	bool		done = false;

	pthread_mutex_lock(&ledger_lock);
	HASH_FIND_STR(entries, key, e);
	if (e != NULL && e->pending_action)
	{
		char		body[96];

		snprintf(body, sizeof(body), "{\"status\":\"succeeded\",\"payment_id\":\"%s\"}",
				 e->payment_id);
		free(e->payment_reply);
		e->payment_reply = ledger_strdup(body);
		e->payment_status = 200;
		e->pending_action = false;
		ledger_charge(e);
		done = true;
	}
	pthread_mutex_unlock(&ledger_lock);
	return done;
}

/* Is key's payment charged, and for how much?  (POST /refunds) */
bool
ft_ledger_charged(const char *key, int64_t *amount)
{
	LedgerEntry *e;
	bool		charged = false;

	pthread_mutex_lock(&ledger_lock);
	HASH_FIND_STR(entries, key, e);
	if (e != NULL && e->charges > 0)
	{
		*amount = e->amount;
		charged = true;
	}
	pthread_mutex_unlock(&ledger_lock);
	return charged;
}

#define COUNTER(c) __atomic_load_n(&counters[c], __ATOMIC_RELAXED)

json_t *
ft_ledger_stats_json(void)
{
	json_t	   *j;

	pthread_mutex_lock(&ledger_lock);
	j = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I,"
				  " s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b}",
				  "charges", (json_int_t) ncharges,
				  "keys", (json_int_t) nkeys,
				  "duplicates", (json_int_t) (duplicate_keys + duplicate_orders),
				  "duplicate_keys", (json_int_t) duplicate_keys,
				  "duplicate_orders", (json_int_t) duplicate_orders,
				  "requests", (json_int_t) COUNTER(FT_C_REQUESTS),
				  "replays", (json_int_t) COUNTER(FT_C_REPLAYS),
				  "declines", (json_int_t) COUNTER(FT_C_DECLINES),
				  "rejects", (json_int_t) COUNTER(FT_C_REJECTS),
				  "faults_injected", (json_int_t) COUNTER(FT_C_FAULTS),
				  "lost_replies", (json_int_t) COUNTER(FT_C_LOST),
				  "garbage_replies", (json_int_t) COUNTER(FT_C_GARBAGE),
				  "mismatches", (json_int_t) COUNTER(FT_C_MISMATCHES),
				  "unauthorized", (json_int_t) COUNTER(FT_C_UNAUTHORIZED),
				  "rate_limited", (json_int_t) COUNTER(FT_C_RATE_LIMITED),
				  "forgotten_keys", (json_int_t) COUNTER(FT_C_FORGOTTEN),
				  "lookups", (json_int_t) COUNTER(FT_C_LOOKUPS),
				  "last_auth_ok",
				  __atomic_load_n(&last_auth_ok, __ATOMIC_RELAXED));
	pthread_mutex_unlock(&ledger_lock);
	return j;
}

/* GET /ledger/{key}; NULL if the key was never seen. */
json_t *
ft_ledger_entry_json(const char *key)
{
	LedgerEntry *e;
	json_t	   *j = NULL;

	pthread_mutex_lock(&ledger_lock);
	HASH_FIND_STR(entries, key, e);
	if (e != NULL)
		j = json_pack("{s:s, s:I, s:b, s:I, s:o, s:I, s:I, s:s?}",
					  "key", e->key,
					  "order_id", (json_int_t) e->order_id,
					  "charged", e->charges > 0,
					  "charges", (json_int_t) e->charges,
					  "status", e->status ? json_integer(e->status) : json_null(),
					  "requests", (json_int_t) e->requests,
					  "first_received_us", (json_int_t) e->first_received_us,
					  "payment_id", e->charges > 0 ? e->payment_id : NULL);
	pthread_mutex_unlock(&ledger_lock);
	return j;
}

/*
 * GET /ledger/receipts: "<key> <order_id> <first_received_us> <charged>\n"
 * per key, in a malloc'd buffer.
 */
char *
ft_ledger_receipts(size_t *len)
{
	LedgerEntry *e;
	size_t		cap = 1;
	size_t		off = 0;
	char	   *buf;

	pthread_mutex_lock(&ledger_lock);
	for (e = entries; e != NULL; e = e->hh.next)
		cap += strlen(e->key) + 64;
	buf = ledger_alloc(cap);
	for (e = entries; e != NULL; e = e->hh.next)
		off += snprintf(buf + off, cap - off, "%s %lld %lld %d\n", e->key,
						(long long) e->order_id,
						(long long) e->first_received_us,
						e->charges > 0 ? 1 : 0);
	pthread_mutex_unlock(&ledger_lock);
	*len = off;
	return buf;
}

/*
 * Log one POST /payments that carried a valid key and body, before the
 * ledger looked at it (replays and injected faults included), so that a
 * test can see which client sent what when: tests/partition tells the
 * nodes apart by their source address and maps a charge back to the
 * client's own idempotency key through customer_id.  Control characters
 * in the strings become '_' (textlog.c) to keep one request per line.
 */
void
ft_ledger_log_request(int64_t arrival_us, const char *src, const char *key,
					  int64_t order_id, const char *customer_id)
{
	ft_textlog_append(&request_log, "%lld %s %s %lld %s\n",
					  (long long) arrival_us, src, key,
					  (long long) order_id, customer_id);
}

/*
 * GET /ledger/requests: "<arrival_us> <src> <key> <order_id> <customer_id>\n"
 * per logged request, in arrival order, in a malloc'd buffer.
 */
char *
ft_ledger_requests(size_t *len)
{
	return ft_textlog_copy(&request_log, len);
}

static void
ledger_entry_free(LedgerEntry *e)
{
	free(e->key);
	free(e->reply);
	free(e->payment_reply);
	free(e);
}

/* DELETE /ledger: forget every key, order, counter and logged request. */
void
ft_ledger_clear(void)
{
	pthread_mutex_lock(&ledger_lock);
	FT_GW_HASH_FREE_ALL(entries, ledger_entry_free);
	FT_GW_HASH_FREE_ALL(orders, free);
	nkeys = ncharges = duplicate_keys = duplicate_orders = 0;
	for (int i = 0; i < FT_C_NUM; i++)
		__atomic_store_n(&counters[i], 0, __ATOMIC_RELAXED);
	__atomic_store_n(&last_auth_ok, 0, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&ledger_lock);
	ft_textlog_clear(&request_log);
}
