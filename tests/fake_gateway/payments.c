/*-------------------------------------------------------------------------
 *
 * payments.c
 *	  POST /payments: the "generic" provider (docs/reference.md,
 *	  "Wire protocol"), with the idempotency ledger and injected faults
 *	  (docs/reference.md, "Fake gateway").
 *
 * Order of decisions: limiter (limiter.c: over the limits, no latency
 * wait and 429 after the body checks) -> latency wait (suspended, see
 * delay.c) -> token -> Idempotency-Key -> body validation -> stored-reply
 * check (replay / 422) -> down -> status_script -> fail_rate -> decline /
 * reject / requires_action by amount -> charge -> lost reply or garbage.
 * A stored reply is forgotten key_ttl_s after it was stored (0: never):
 * the key is then new again, and a repeat is a second charge, as at
 * Stripe.  GET /payments/{key} looks a payment up
 * (ft_gw_payment_lookup).  Transient faults (down, script, fail_rate) store nothing, so
 * the key stays free for a retry; a lost or garbage reply is stored as the
 * success it was, so a retry gets the proper replay.
 *
 * tests/fake_gateway/payments.c
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "gateway.h"
#include "faults.h"
#include "ledger.h"
#include "webhooks.h"
#include "limiter.h"
#include "poison.h"

static int64_t payment_counter;

/*
 * What a repeated key is compared by: a 64-bit FNV-1a of the body without
 * "order_id", keys sorted, compact.  The order_id only names the order row
 * that sent the request: after a failover that lost an order, the client's
 * retry re-creates it under another order_id but with the same derived
 * payment_key and the same payment, and that is a replay, not a key reused
 * for another payment (docs/reference.md, "Wire protocol").  Returns false
 * if the body cannot be serialised again (out of memory).
 */
static bool
payments_hash(json_t *req, uint64_t *hash)
{
	uint64_t	h = UINT64_C(14695981039346656037);
	char	   *canon;

	json_object_del(req, "order_id");
	canon = json_dumps(req, JSON_COMPACT | JSON_SORT_KEYS);
	if (canon == NULL)
		return false;
	for (const char *c = canon; *c != '\0'; c++)
	{
		h ^= (unsigned char) *c;
		h *= UINT64_C(1099511628211);
	}
	free(canon);
	*hash = h;
	return true;
}

/* Answer a request whose key already has a stored reply (or a mismatch). */
static enum MHD_Result
payments_replay(struct MHD_Connection *conn, FtLedgerOutcome out, int status,
				char *reply)
{
	if (out == FT_LEDGER_MISMATCH)
		return ft_gw_reply_json(conn, 422,
								json_pack("{s:s}", "error",
										  "idempotency_key_reused"),
								NULL, NULL);
	return ft_gw_reply_payment(conn, status, reply, strlen(reply),
							   "Idempotent-Replayed", "true", false, false);
}

/* Reply 200 with a body that is not JSON (garbage_rate). */
static enum MHD_Result
payments_garbage(struct MHD_Connection *conn)
{
	static const char prefix[] = "<html>oops";
	size_t		len = sizeof(prefix) - 1 + 32;
	char	   *body = malloc(len);

	if (body == NULL)
		return MHD_NO;
	memcpy(body, prefix, sizeof(prefix) - 1);
	for (size_t i = sizeof(prefix) - 1; i < len; i++)
		body[i] = (char) (ft_faults_draw() * 256);
	ft_ledger_count(FT_C_GARBAGE);
	return ft_gw_reply(conn, 200, body, len, "text/html", NULL, NULL);
}

/*
 * Check the body fields the gateway relies on; on error, a message for
 * {"error":"invalid_request"} is returned.
 */
static const char *
payments_validate(json_t *req, int64_t *order_id, int64_t *amount)
{
	json_t	   *v;

	if (!json_is_object(req))
		return "body is not a JSON object";
	v = json_object_get(req, "order_id");
	if (!json_is_integer(v))
		return "order_id must be an integer";
	*order_id = json_integer_value(v);
	v = json_object_get(req, "amount_minor");
	if (!json_is_integer(v) || json_integer_value(v) <= 0)
		return "amount_minor must be a positive integer";
	*amount = json_integer_value(v);
	if (!json_is_string(json_object_get(req, "currency")))
		return "currency must be a string";
	return NULL;
}

/*
 * Decide the final reply for a new request (decline, reject or charge),
 * store it under key and send it, or lose it on purpose.
 */
static enum MHD_Result
payments_settle(struct MHD_Connection *conn, FtRequest *req,
				const FtFaults *f, const char *key, uint64_t hash,
				int64_t order_id, int64_t amount, const char *currency)
{
	char		payment_id[32];
	json_t	   *reply;
	char	   *text;
	int			status;
	int			st = 0;
	char	   *stored = NULL;
	bool		pending = false;
	FtLedgerOutcome out;

	payment_id[0] = '\0';
	if (ft_faults_listed(&f->decline_amount_minor, amount))
	{
		status = 402;
		reply = json_pack("{s:s, s:s}", "status", "declined",
						  "decline_code", "card_declined");
		ft_ledger_count(FT_C_DECLINES);
	}
	else if (ft_faults_listed(&f->reject_amount_minor, amount) ||
			 ft_faults_listed(&f->bad_request_amount_minor, amount))
	{
		bool		reject = ft_faults_listed(&f->reject_amount_minor, amount);

		status = reject ? 422 : 400;
		reply = json_pack("{s:s, s:s}",
						  "error", reject ? "unprocessable" : "invalid_request",
						  "message", "amount rejected");
		ft_ledger_count(FT_C_REJECTS);
	}
	else if (ft_faults_listed(&f->requires_action_amount_minor, amount))
	{
		char		secret[64];

		status = 200;
		pending = true;
		snprintf(payment_id, sizeof(payment_id), "pay_%lld",
				 (long long) __atomic_add_fetch(&payment_counter, 1,
												__ATOMIC_RELAXED));
		snprintf(secret, sizeof(secret), "%s_secret_fake", payment_id);
		reply = json_pack("{s:s, s:s, s:s, s:{s:s, s:{s:s}}}",
						  "status", "requires_action", "payment_id", payment_id,
						  "client_secret", secret,
						  "next_action", "type", "redirect_to_url",
						  "redirect_to_url", "url", "https://bank.example/3ds");
	}
	else
	{
		status = 200;
		snprintf(payment_id, sizeof(payment_id), "pay_%lld",
				 (long long) __atomic_add_fetch(&payment_counter, 1,
												__ATOMIC_RELAXED));
		reply = json_pack("{s:s, s:s}", "status", "succeeded",
						  "payment_id", payment_id);
	}
	text = json_dumps(reply, JSON_COMPACT);
	json_decref(reply);
	if (text == NULL)
		return MHD_NO;

	out = ft_ledger_store(key, hash, order_id, req->arrival_us,
						  (int64_t) f->key_ttl_s * 1000000, status, text,
						  payment_id[0] ? payment_id : NULL, amount, pending,
						  &st, &stored);
	if (out != FT_LEDGER_NEW)
	{
		/* a concurrent request with this key settled first */
		free(text);
		return payments_replay(conn, out, st, stored);
	}
	/*
	 * the outcome as a webhook too, even when the reply is lost below (not
	 * for requires_action: that payment has no outcome yet)
	 */
	if ((status == 200 && !pending) || status == 402)
		ft_webhooks_payment(status == 200, key, payment_id[0] ? payment_id : NULL,
							amount, currency);
	if (status == 200 && !pending && ft_faults_draw() < f->timeout_rate)
	{
		free(text);
		ft_ledger_count(FT_C_LOST);
		/* hold the connection, then close it (router.c, req->hang) */
		req->hang = true;
		return ft_gw_delay(conn, f->hang_ms) ? MHD_YES : MHD_NO;
	}
	if (status == 200 && ft_faults_draw() < f->garbage_rate)
	{
		free(text);
		return payments_garbage(conn);
	}
	return ft_gw_reply_payment(conn, status, text, strlen(text), NULL, NULL,
							   false, false);
}

/*
 * Log a valid request (GET /ledger/requests) with the client's source
 * address and the body's customer_id ("-" if absent or not a string).
 */
static void
payments_log(struct MHD_Connection *conn, const FtRequest *req,
			 const char *key, int64_t order_id, json_t *obj)
{
	const union MHD_ConnectionInfo *ci;
	const char *customer = json_string_value(json_object_get(obj, "customer_id"));
	char		src[INET6_ADDRSTRLEN] = "-";

	ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	if (ci != NULL && ci->client_addr != NULL &&
		ci->client_addr->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *) ci->client_addr)->sin_addr,
				  src, sizeof(src));
	ft_ledger_log_request(req->arrival_us, src, key, order_id,
						  customer && customer[0] ? customer : "-");
}

/*
 * POST /payments with its complete body.  Called a second time for the same
 * request after its latency delay.
 */
enum MHD_Result
ft_gw_payments(struct MHD_Connection *conn, FtRequest *req)
{
	FtFaults	f;
	const char *auth;
	const char *key;
	const char *err;
	json_t	   *obj;
	int64_t		order_id = 0;
	int64_t		amount = 0;
	char		currency[16] = "";
	uint64_t	hash = 0;
	bool		auth_ok;
	int			st = 0;
	char	   *stored = NULL;
	FtLedgerOutcome out;
	enum MHD_Result ret;

	ft_faults_snapshot(&f);
	if (!req->delayed)
	{
		ft_ledger_count(FT_C_REQUESTS);
		req->delayed = true;
		/* the limiter answers at once, as a real one does */
		if (ft_limiter_admit(f.rate_limit_per_s, f.max_concurrency,
							 ft_gw_now_us(), &req->retry_after_s))
			req->admitted = true;
		else
			req->limited = true;
		if (f.latency_ms > 0 && !req->limited)
			return ft_gw_delay(conn, f.latency_ms) ? MHD_YES : MHD_NO;
	}

	auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
									   MHD_HTTP_HEADER_AUTHORIZATION);
	auth_ok = auth != NULL && strncmp(auth, "Bearer ", 7) == 0 &&
		auth[7] != '\0' &&
		(!f.has_token || strcmp(auth + 7, f.require_token) == 0);
	ft_ledger_set_auth(auth_ok);
	if (f.has_token && !auth_ok)
	{
		ft_ledger_count(FT_C_UNAUTHORIZED);
		return ft_gw_reply_error(conn, 401, "unauthorized",
								 "missing or wrong bearer token");
	}

	key = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
									  "Idempotency-Key");
	if (key == NULL)
		return ft_gw_reply_error(conn, 400, "missing Idempotency-Key", NULL);
	if (key[0] == '\0' || strlen(key) > FT_GW_MAX_KEY)
		return ft_gw_reply_error(conn, 400, "invalid_request",
								 "Idempotency-Key must be 1 to 255 characters");

	obj = json_loadb(req->body, req->len, 0, NULL);
	err = obj ? payments_validate(obj, &order_id, &amount)
		: "body is not valid JSON";
	if (err == NULL)
		payments_log(conn, req, key, order_id, obj);
	if (err == NULL)
		snprintf(currency, sizeof(currency), "%s",
				 json_string_value(json_object_get(obj, "currency")));
	if (err == NULL && !payments_hash(obj, &hash))
		err = "body could not be compared";
	json_decref(obj);
	if (err != NULL)
		return ft_gw_reply_error(conn, 400, "invalid_request", err);

	if (req->limited)
	{
		char		retry[16];

		ft_ledger_count(FT_C_RATE_LIMITED);
		ft_limiter_log(req->arrival_us, key);
		snprintf(retry, sizeof(retry), "%d", req->retry_after_s);
		return ft_gw_reply_json(conn, 429,
								json_pack("{s:s}", "error", "rate_limited"),
								"Retry-After", retry);
	}

	out = ft_ledger_begin(key, hash, order_id, req->arrival_us,
						  (int64_t) f.key_ttl_s * 1000000, &st, &stored);
	if (out != FT_LEDGER_NEW)
		return payments_replay(conn, out, st, stored);

	if (ft_faults_inject(conn, &f, &ret))
		return ret;

	return payments_settle(conn, req, &f, key, hash, order_id, amount, currency);
}

/*
 * GET /payments/{key}: 200 with the payment's last final reply (the body a
 * POST got: succeeded, declined or requires_action), 404 when the gateway
 * has no payment under key.  Injected faults apply as to a POST (down,
 * status_script, fail_rate, latency), so a look-up can fail too.
 */
enum MHD_Result
ft_gw_payment_lookup(struct MHD_Connection *conn, FtRequest *req,
					 const char *key)
{
	FtFaults	f;
	int			status = 0;
	char	   *reply = NULL;
	enum MHD_Result ret;

	ft_faults_snapshot(&f);
	if (!req->delayed)
	{
		req->delayed = true;
		if (f.latency_ms > 0)
			return ft_gw_delay(conn, f.latency_ms) ? MHD_YES : MHD_NO;
	}
	if (ft_faults_inject(conn, &f, &ret))
		return ret;
	if (!ft_ledger_lookup(key, &status, &reply))
		return ft_gw_reply_error(conn, 404, "not_found", "no payment under this key");
	return ft_gw_reply_payment(conn, status, reply, strlen(reply), NULL, NULL,
							   false, true);
}
