/*-------------------------------------------------------------------------
 *
 * refunds.c
 *	  POST /refunds and GET /refunds/{refund_key}: refunds of the "generic"
 *	  provider (docs/reference.md, "Wire protocol"), idempotent by
 *	  Idempotency-Key, with a ledger that never refunds more than was
 *	  charged under a payment_key.
 *
 * Order of decisions, as for /payments: latency wait -> Idempotency-Key ->
 * body validation -> stored-reply check (replay / 422) -> down ->
 * status_script -> fail_rate -> refund or refusal -> lost reply.  A
 * refusal (no charge under the payment_key, or more than is left of it)
 * is a 400 and is stored like a success.  Refund keys are not forgotten
 * (key_ttl_s applies to payments only).
 *
 * tests/fake_gateway/refunds.c
 *
 *-------------------------------------------------------------------------
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uthash.h>

#include "gateway.h"
#include "faults.h"
#include "ledger.h"

#define REFUNDS_PREFIX "/refunds/"

typedef struct RefundEntry
{
	char	   *key;			/* the refund_key */
	char	   *body;			/* the creating request, for idempotency */
	int			status;			/* stored reply */
	char	   *reply;
	UT_hash_handle hh;
} RefundEntry;

/* what was refunded under one payment_key */
typedef struct RefundedPayment
{
	char	   *payment_key;
	int64_t		refunded;
	UT_hash_handle hh;
} RefundedPayment;

static pthread_mutex_t refunds_lock = PTHREAD_MUTEX_INITIALIZER;
static RefundEntry *refunds;
static RefundedPayment *refunded;
static int64_t refund_seq;
static int64_t nrefunds;
static int64_t refunded_minor;
static int64_t nrequests;
static int64_t nreplays;
static int64_t nrefused;

static char *
refunds_strdup(const char *s)
{
	char	   *p = strdup(s);

	if (p == NULL)
	{
		fprintf(stderr, "fake_gateway: out of memory\n");
		abort();
	}
	return p;
}

/* a stored reply for key, or a refund made now; caller holds the lock */
static void
refunds_decide(const char *key, const char *body, const char *payment_key,
			   int64_t amount, int *status, char **reply)
{
	RefundedPayment *rp;
	int64_t		charged = 0;
	json_t	   *j;
	RefundEntry *e;
	char		refund_id[32];

	HASH_FIND_STR(refunded, payment_key, rp);
	if (!ft_ledger_charged(payment_key, &charged))
	{
		*status = 400;
		j = json_pack("{s:s, s:s}", "error", "invalid_request",
					  "message", "no charge under this payment_key");
		nrefused++;
	}
	else if (amount > charged - (rp ? rp->refunded : 0))
	{
		*status = 400;
		j = json_pack("{s:s, s:s}", "error", "invalid_request",
					  "message", "refund exceeds what is left of the charge");
		nrefused++;
	}
	else
	{
		if (rp == NULL)
		{
			rp = calloc(1, sizeof(RefundedPayment));
			if (rp == NULL)
				abort();
			rp->payment_key = refunds_strdup(payment_key);
			HASH_ADD_KEYPTR(hh, refunded, rp->payment_key, strlen(rp->payment_key), rp);
		}
		rp->refunded += amount;
		nrefunds++;
		refunded_minor += amount;
		snprintf(refund_id, sizeof(refund_id), "re_%lld", (long long) ++refund_seq);
		*status = 200;
		j = json_pack("{s:s, s:s}", "status", "succeeded", "refund_id", refund_id);
	}
	*reply = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	if (*reply == NULL)
		abort();

	e = calloc(1, sizeof(RefundEntry));
	if (e == NULL)
		abort();
	e->key = refunds_strdup(key);
	e->body = refunds_strdup(body);
	e->status = *status;
	e->reply = refunds_strdup(*reply);
	HASH_ADD_KEYPTR(hh, refunds, e->key, strlen(e->key), e);
}

static enum MHD_Result
refunds_post(struct MHD_Connection *conn, FtRequest *req)
{
	FtFaults	f;
	const char *key;
	json_t	   *obj;
	json_t	   *pk;
	json_t	   *am;
	RefundEntry *e;
	int			status;
	char	   *reply;
	char	   *canon;
	enum MHD_Result ret;

	ft_faults_snapshot(&f);
	if (!req->delayed)
	{
		req->delayed = true;
		__atomic_add_fetch(&nrequests, 1, __ATOMIC_RELAXED);
		if (f.latency_ms > 0)
			return ft_gw_delay(conn, f.latency_ms) ? MHD_YES : MHD_NO;
	}
	key = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Idempotency-Key");
	if (key == NULL || key[0] == '\0' || strlen(key) > FT_GW_MAX_KEY)
		return ft_gw_reply_error(conn, 400, "invalid_request",
								 "Idempotency-Key must be 1 to 255 characters");
	obj = json_loadb(req->body, req->len, 0, NULL);
	pk = obj ? json_object_get(obj, "payment_key") : NULL;
	am = obj ? json_object_get(obj, "amount_minor") : NULL;
	if (!json_is_object(obj) || !json_is_string(pk) || !json_is_integer(am) ||
		json_integer_value(am) <= 0 ||
		!json_is_string(json_object_get(obj, "currency")))
	{
		json_decref(obj);
		return ft_gw_reply_error(conn, 400, "invalid_request",
								 "payment_key, amount_minor and currency are required");
	}
	canon = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS);
	if (canon == NULL)
	{
		json_decref(obj);
		return MHD_NO;
	}

	pthread_mutex_lock(&refunds_lock);
	HASH_FIND_STR(refunds, key, e);
	if (e != NULL)
	{
		bool		same = strcmp(e->body, canon) == 0;

		status = e->status;
		reply = refunds_strdup(e->reply);
		nreplays++;
		pthread_mutex_unlock(&refunds_lock);
		free(canon);
		json_decref(obj);
		if (!same)
		{
			free(reply);
			return ft_gw_reply_error(conn, 422, "idempotency_key_reused", NULL);
		}
		return ft_gw_reply(conn, status, reply, strlen(reply), "application/json",
						   "Idempotent-Replayed", "true");
	}
	pthread_mutex_unlock(&refunds_lock);

	if (ft_faults_inject(conn, &f, &ret))
	{
		free(canon);
		json_decref(obj);
		return ret;
	}

	pthread_mutex_lock(&refunds_lock);
	HASH_FIND_STR(refunds, key, e);
	if (e != NULL)
	{
		/* a concurrent request with the key decided first */
		status = e->status;
		reply = refunds_strdup(e->reply);
	}
	else
		refunds_decide(key, canon, json_string_value(pk), json_integer_value(am),
					   &status, &reply);
	pthread_mutex_unlock(&refunds_lock);
	free(canon);
	json_decref(obj);

	if (status == 200 && ft_faults_draw() < f.timeout_rate)
	{
		free(reply);
		ft_ledger_count(FT_C_LOST);
		req->hang = true;
		return ft_gw_delay(conn, f.hang_ms) ? MHD_YES : MHD_NO;
	}
	return ft_gw_reply(conn, status, reply, strlen(reply), "application/json",
					   NULL, NULL);
}

/* GET /refunds/{key}: the stored reply, or 404 */
static enum MHD_Result
refunds_get(struct MHD_Connection *conn, const char *key)
{
	RefundEntry *e;
	int			status = 0;
	char	   *reply = NULL;

	pthread_mutex_lock(&refunds_lock);
	HASH_FIND_STR(refunds, key, e);
	if (e != NULL)
	{
		status = e->status;
		reply = refunds_strdup(e->reply);
	}
	pthread_mutex_unlock(&refunds_lock);
	if (reply == NULL)
		return ft_gw_reply_error(conn, 404, "not_found", "no refund under this key");
	return ft_gw_reply(conn, status, reply, strlen(reply), "application/json",
					   NULL, NULL);
}

bool
ft_gw_refunds(struct MHD_Connection *conn, const char *url, const char *method,
			  FtRequest *req, enum MHD_Result *ret)
{
	if (strcmp(url, "/refunds") == 0 && strcmp(method, "POST") == 0)
	{
		*ret = refunds_post(conn, req);
		return true;
	}
	if (strncmp(url, REFUNDS_PREFIX, strlen(REFUNDS_PREFIX)) == 0 &&
		strcmp(method, "GET") == 0)
	{
		*ret = refunds_get(conn, url + strlen(REFUNDS_PREFIX));
		return true;
	}
	return false;
}

/* the refund figures of GET /ledger */
json_t *
ft_gw_refund_stats(void)
{
	json_t	   *j;

	pthread_mutex_lock(&refunds_lock);
	j = json_pack("{s:I, s:I, s:I, s:I, s:I}",
				  "refunds", (json_int_t) nrefunds,
				  "refunded_minor", (json_int_t) refunded_minor,
				  "refund_requests", (json_int_t) __atomic_load_n(&nrequests, __ATOMIC_RELAXED),
				  "refund_replays", (json_int_t) nreplays,
				  "refunds_refused", (json_int_t) nrefused);
	pthread_mutex_unlock(&refunds_lock);
	return j;
}

static void
refund_entry_free(RefundEntry *e)
{
	free(e->key);
	free(e->body);
	free(e->reply);
	free(e);
}

static void
refunded_payment_free(RefundedPayment *p)
{
	free(p->payment_key);
	free(p);
}

/* DELETE /ledger */
void
ft_gw_refunds_clear(void)
{
	pthread_mutex_lock(&refunds_lock);
	FT_GW_HASH_FREE_ALL(refunds, refund_entry_free);
	FT_GW_HASH_FREE_ALL(refunded, refunded_payment_free);
	nrefunds = refunded_minor = nreplays = nrefused = 0;
	__atomic_store_n(&nrequests, 0, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&refunds_lock);
}
