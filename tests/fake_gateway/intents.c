/*-------------------------------------------------------------------------
 *
 * intents.c
 *	  A small Stripe PaymentIntents shape for the "stripe" provider of
 *	  ft_orders: POST /v1/payment_intents (form-encoded, confirm=true) and
 *	  GET /v1/payment_intents/{id}, with Stripe-like idempotency (same key +
 *	  same body: replay with Idempotent-Replayed: true; other body: 400
 *	  idempotency_error).  Outcomes are chosen by payment_method:
 *
 *	  pm_card_visa (or anything else)	200 succeeded
 *	  pm_processing					200 processing; the 2nd GET says succeeded
 *	  pm_requires_action			200 requires_action (with next_action and
 *									client_secret); the 2nd GET: succeeded
 *	  pm_processing_fails			200 processing; the 2nd GET says
 *									requires_payment_method (declined)
 *	  pm_card_chargeDeclined		402 card_error card_declined
 *	  pm_503_noretry				503 + Stripe-Should-Retry: false (not stored)
 *	  pm_400_retry_once				first request: 400 + Stripe-Should-Retry:
 *									true (not stored); then succeeded
 *
 *	  POST /v1/payment_intents/{id}/cancel: cancels an intent in
 *	  requires_payment_method, requires_confirmation, requires_action or
 *	  requires_capture (200, the canceled intent; the same Idempotency-Key
 *	  again replays it); any other status: 400 invalid_request_error
 *	  payment_intent_unexpected_state with the intent in
 *	  error.payment_intent, as at Stripe.
 *
 *	  GET /v1/payment_intents/search?query=metadata['payment_key']:'K'
 *	  OR metadata['order_id']:'N' (the look-up of ft_orders'
 *	  reconciliation; either clause alone too): the intents whose metadata
 *	  match, each with its metadata.
 *
 *	  GET /v1/_intents: {"intents","creates","replays","gets","searches",
 *	  "succeeded","cancels","canceled"}
 *	  GET /v1/_intents/{id}: {"key","content_type","body"} of its creation,
 *	  its "status" and the Idempotency-Key of the cancel that canceled it
 *	  ("cancel_key", "" if none)
 *	  DELETE /v1/_intents: forget everything.
 *
 * A missing "Authorization: Bearer" header gets 401.  State is in memory,
 * behind one mutex (libmicrohttpd runs a thread pool).
 *
 * tests/fake_gateway/intents.c
 *
 *-------------------------------------------------------------------------
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway.h"
#include "webhooks.h"
#include "poison.h"

#define FT_PI_MAX		4096
#define FT_PI_PREFIX	"/v1/payment_intents/"

typedef struct FtIntent
{
	char		id[32];
	char		key[FT_GW_MAX_KEY + 1];
	char	   *body;			/* the creating request, for idempotency */
	char		content_type[64];
	unsigned int reply_status;	/* stored reply to the creating request */
	char		status[32];		/* current PaymentIntent status */
	char		final_status[32];	/* what a later GET turns it into */
	char		cancel_key[FT_GW_MAX_KEY + 1];	/* key of the cancel that
												 * canceled it */
	int			gets;
	long long	amount;
	char		currency[8];
} FtIntent;

static pthread_mutex_t ft_pi_lock = PTHREAD_MUTEX_INITIALIZER;
static FtIntent ft_pi[FT_PI_MAX];
static int	ft_npi = 0;
static int	ft_pi_seq = 0;
static int	ft_pi_creates = 0;
static int	ft_pi_replays = 0;
static int	ft_pi_gets = 0;
static int	ft_pi_searches = 0;
static int	ft_pi_cancels = 0;
static int	ft_pi_retry_once_seen = 0;

/* value of form field name (URL-decoded into out), or false */
static bool
form_get(const char *body, const char *name, char *out, size_t outlen)
{
	size_t		nlen = strlen(name);
	const char *p = body;

	while (p && *p)
	{
		const char *amp = strchr(p, '&');
		const char *end = amp ? amp : p + strlen(p);

		if ((size_t) (end - p) > nlen && strncmp(p, name, nlen) == 0 && p[nlen] == '=')
		{
			const char *v = p + nlen + 1;
			size_t		o = 0;

			while (v < end && o + 1 < outlen)
			{
				if (*v == '%' && end - v >= 3)
				{
					char		hex[3] = {v[1], v[2], 0};

					out[o++] = (char) strtol(hex, NULL, 16);
					v += 3;
				}
				else
				{
					out[o++] = (*v == '+') ? ' ' : *v;
					v++;
				}
			}
			out[o] = '\0';
			return true;
		}
		p = amp ? amp + 1 : NULL;
	}
	return false;
}

/* metadata[name] of the creating request (URL-encoded or not), or false */
static bool
intent_metadata(const FtIntent *pi, const char *name, char *out, size_t outlen)
{
	char		enc[64];
	char		raw[64];

	snprintf(enc, sizeof(enc), "metadata%%5B%s%%5D", name);
	snprintf(raw, sizeof(raw), "metadata[%s]", name);
	return form_get(pi->body, enc, out, outlen) || form_get(pi->body, raw, out, outlen);
}

static json_t *
intent_json(const FtIntent *pi)
{
	json_t	   *j = json_pack("{s:s, s:s, s:I, s:s, s:s, s:s+}", "id", pi->id,
								  "object", "payment_intent", "amount", (json_int_t) pi->amount,
								  "currency", pi->currency, "status", pi->status,
								  "client_secret", pi->id, "_secret_fake");
	json_t	   *meta = json_object();
	char		v[FT_GW_MAX_KEY + 1];

	/* the metadata it was created with, as Stripe returns it */
	if (meta != NULL)
	{
		if (intent_metadata(pi, "order_id", v, sizeof(v)))
			json_object_set_new(meta, "order_id", json_string(v));
		if (intent_metadata(pi, "payment_key", v, sizeof(v)))
			json_object_set_new(meta, "payment_key", json_string(v));
		if (j != NULL)
			json_object_set_new(j, "metadata", meta);
		else
			json_decref(meta);
	}

	/* what Stripe sends for 3-D Secure: the customer's next step */
	if (j != NULL && strcmp(pi->status, "requires_action") == 0)
		json_object_set_new(j, "next_action",
							json_pack("{s:s, s:{s:s}}", "type", "use_stripe_sdk",
									  "use_stripe_sdk", "type", "three_d_secure_redirect"));
	return j;
}

static enum MHD_Result
stripe_error(struct MHD_Connection *conn, unsigned int status, const char *type,
			 const char *code, const char *message, const char *should_retry)
{
	return ft_gw_reply_json(conn, status,
							json_pack("{s:{s:s, s:s*, s:s*, s:s*}}", "error",
									  "type", type, "code", code,
									  "decline_code", strcmp(type, "card_error") == 0 ? "generic_decline" : NULL,
									  "message", message),
							should_retry ? "Stripe-Should-Retry" : NULL, should_retry);
}

/*
 * A settled intent as a webhook (caller holds ft_pi_lock; emission only
 * queues the event).
 */
static void
intent_webhook(const FtIntent *pi)
{
	char		order_id[32] = "";
	char		payment_key[FT_GW_MAX_KEY + 1] = "";

	intent_metadata(pi, "order_id", order_id, sizeof(order_id));
	intent_metadata(pi, "payment_key", payment_key, sizeof(payment_key));
	ft_webhooks_intent(pi->id, pi->status, order_id,
					   payment_key[0] ? payment_key : NULL, pi->amount,
					   pi->currency);
}

static enum MHD_Result
intents_create(struct MHD_Connection *conn, const FtRequest *req)
{
	const char *key = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Idempotency-Key");
	char		pm[128] = "";
	char		amount[32] = "";
	char		currency[8] = "";
	FtIntent   *pi = NULL;
	enum MHD_Result ret;

	if (key == NULL || key[0] == '\0' || strlen(key) > FT_GW_MAX_KEY)
		return stripe_error(conn, 400, "invalid_request_error", "idempotency_key_invalid",
							"an Idempotency-Key of 1 to 255 characters is required", NULL);
	if (!form_get(req->body, "amount", amount, sizeof(amount)) ||
		!form_get(req->body, "currency", currency, sizeof(currency)) ||
		strtoll(amount, NULL, 10) <= 0)
		return stripe_error(conn, 400, "invalid_request_error", "parameter_missing",
							"amount and currency are required", NULL);
	form_get(req->body, "payment_method", pm, sizeof(pm));

	pthread_mutex_lock(&ft_pi_lock);
	for (int i = 0; i < ft_npi; i++)
	{
		if (strcmp(ft_pi[i].key, key) != 0)
			continue;
		if (strcmp(ft_pi[i].body, req->body) != 0)
		{
			pthread_mutex_unlock(&ft_pi_lock);
			return stripe_error(conn, 400, "idempotency_error", NULL,
								"Keys for idempotent requests can only be used with the same parameters they were first used with.",
								NULL);
		}
		ft_pi_replays++;
		if (ft_pi[i].reply_status == 402)
		{
			pthread_mutex_unlock(&ft_pi_lock);
			return stripe_error(conn, 402, "card_error", "card_declined",
								"Your card was declined.", NULL);
		}
		ret = ft_gw_reply_payment_json(conn, 200, intent_json(&ft_pi[i]),
									   "Idempotent-Replayed", "true", true, false);
		pthread_mutex_unlock(&ft_pi_lock);
		return ret;
	}

	/* transient answers, not stored under the key */
	if (strcmp(pm, "pm_503_noretry") == 0)
	{
		pthread_mutex_unlock(&ft_pi_lock);
		return stripe_error(conn, 503, "api_error", NULL, "will not get better",
							"false");
	}
	if (strcmp(pm, "pm_400_retry_once") == 0 && ft_pi_retry_once_seen++ == 0)
	{
		pthread_mutex_unlock(&ft_pi_lock);
		return stripe_error(conn, 400, "invalid_request_error", "lock_timeout",
							"try again", "true");
	}
	if (ft_npi >= FT_PI_MAX)
	{
		pthread_mutex_unlock(&ft_pi_lock);
		return stripe_error(conn, 429, "rate_limit_error", NULL, "intent table full", NULL);
	}

	pi = &ft_pi[ft_npi++];
	memset(pi, 0, sizeof(*pi));
	snprintf(pi->id, sizeof(pi->id), "pi_fake%06d", ++ft_pi_seq);
	snprintf(pi->key, sizeof(pi->key), "%s", key);
	pi->body = strdup(req->body);
	{
		const char *ct = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
													 MHD_HTTP_HEADER_CONTENT_TYPE);

		snprintf(pi->content_type, sizeof(pi->content_type), "%s", ct ? ct : "");
	}
	pi->amount = strtoll(amount, NULL, 10);
	snprintf(pi->currency, sizeof(pi->currency), "%s", currency);
	pi->reply_status = 200;
	ft_pi_creates++;
	if (strcmp(pm, "pm_card_chargeDeclined") == 0)
	{
		pi->reply_status = 402;
		strcpy(pi->status, "requires_payment_method");
		intent_webhook(pi);
		pthread_mutex_unlock(&ft_pi_lock);
		return stripe_error(conn, 402, "card_error", "card_declined",
							"Your card was declined.", NULL);
	}
	if (strcmp(pm, "pm_processing") == 0 || strcmp(pm, "pm_processing_fails") == 0)
	{
		strcpy(pi->status, "processing");
		strcpy(pi->final_status, strcmp(pm, "pm_processing") == 0
			   ? "succeeded" : "requires_payment_method");
	}
	else if (strcmp(pm, "pm_requires_action") == 0)
	{
		strcpy(pi->status, "requires_action");
		strcpy(pi->final_status, "succeeded");
	}
	else
	{
		strcpy(pi->status, "succeeded");
		intent_webhook(pi);
	}
	ret = ft_gw_reply_payment_json(conn, 200, intent_json(pi), NULL, NULL,
								   true, false);
	pthread_mutex_unlock(&ft_pi_lock);
	return ret;
}

/*
 * The intent whose id is the idlen bytes at id, or NULL.  Caller holds
 * ft_pi_lock.
 */
static FtIntent *
intent_find(const char *id, size_t idlen)
{
	for (int i = 0; i < ft_npi; i++)
	{
		if (strlen(ft_pi[i].id) == idlen && strncmp(ft_pi[i].id, id, idlen) == 0)
			return &ft_pi[i];
	}
	return NULL;
}

static enum MHD_Result
intent_missing(struct MHD_Connection *conn)
{
	return stripe_error(conn, 404, "invalid_request_error", "resource_missing",
						"No such payment_intent", NULL);
}

static enum MHD_Result
intents_get(struct MHD_Connection *conn, const char *id)
{
	FtIntent   *pi;
	enum MHD_Result ret;

	pthread_mutex_lock(&ft_pi_lock);
	ft_pi_gets++;
	pi = intent_find(id, strlen(id));
	if (pi == NULL)
		ret = intent_missing(conn);
	else
	{
		pi->gets++;
		if (pi->final_status[0] != '\0' && pi->gets >= 2)
		{
			strcpy(pi->status, pi->final_status);
			pi->final_status[0] = '\0';
			intent_webhook(pi);
		}
		ret = ft_gw_reply_payment_json(conn, 200, intent_json(pi), NULL, NULL,
									   true, false);
	}
	pthread_mutex_unlock(&ft_pi_lock);
	return ret;
}

/*
 * POST /v1/payment_intents/{id}/cancel (id is the part of the URL between
 * the prefix and "/cancel").
 */
static enum MHD_Result
intents_cancel(struct MHD_Connection *conn, const char *id, size_t idlen)
{
	const char *key = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Idempotency-Key");
	FtIntent   *pi;
	enum MHD_Result ret;

	pthread_mutex_lock(&ft_pi_lock);
	pi = intent_find(id, idlen);
	if (pi == NULL)
		ret = intent_missing(conn);
	else if (key != NULL && key[0] != '\0' && strcmp(pi->cancel_key, key) == 0)
	{
		ft_pi_replays++;
		ret = ft_gw_reply_json(conn, 200, intent_json(pi),
							   "Idempotent-Replayed", "true");
	}
	else if (strcmp(pi->status, "requires_payment_method") == 0 ||
			 strcmp(pi->status, "requires_confirmation") == 0 ||
			 strcmp(pi->status, "requires_action") == 0 ||
			 strcmp(pi->status, "requires_capture") == 0)
	{
		ft_pi_cancels++;
		strcpy(pi->status, "canceled");
		pi->final_status[0] = '\0';
		snprintf(pi->cancel_key, sizeof(pi->cancel_key), "%s",
				 key && strlen(key) <= FT_GW_MAX_KEY ? key : "");
		intent_webhook(pi);
		ret = ft_gw_reply_json(conn, 200, intent_json(pi), NULL, NULL);
	}
	else
	{
		char		message[128];

		snprintf(message, sizeof(message),
				 "You cannot cancel this PaymentIntent because it has a status of %s.",
				 pi->status);
		ret = ft_gw_reply_json(conn, 400,
							   json_pack("{s:{s:s, s:s, s:s, s:o}}", "error",
										 "type", "invalid_request_error",
										 "code", "payment_intent_unexpected_state",
										 "message", message,
										 "payment_intent", intent_json(pi)),
							   NULL, NULL);
	}
	pthread_mutex_unlock(&ft_pi_lock);
	return ret;
}

/*
 * One clause of a search query: metadata['name']:'value' at *q, with the
 * value copied into out; *q moves past it.  false when *q is not one.
 */
static bool
search_clause(const char **q, char *name, size_t namelen, char *out, size_t outlen)
{
	const char *p = *q;
	const char *end;
	size_t		n;

	if (strncmp(p, "metadata['", 10) != 0)
		return false;
	p += 10;
	end = strchr(p, '\'');
	if (end == NULL || (n = (size_t) (end - p)) == 0 || n >= namelen ||
		strncmp(end, "']:'", 4) != 0)
		return false;
	memcpy(name, p, n);
	name[n] = '\0';
	p = end + 4;
	end = strchr(p, '\'');
	if (end == NULL || (n = (size_t) (end - p)) == 0 || n >= outlen)
		return false;
	memcpy(out, p, n);
	out[n] = '\0';
	*q = end + 1;
	return true;
}

/* the Stripe-Version header of the last /v1/payment_intents request ("": none) */
static char ft_pi_stripe_version[128];

/*
 * GET /v1/payment_intents/search?query=...: the queries ft_orders' look-up
 * sends, metadata['order_id']:'N', metadata['payment_key']:'K', or both
 * joined by " OR " (up to 10 clauses, as at Stripe), on order_id and
 * payment_key only: every intent whose metadata matches a clause, as a
 * search_result.  Any other query is a 400; "limit" is accepted.
 */
#define FT_SEARCH_CLAUSES	10

static enum MHD_Result
intents_search(struct MHD_Connection *conn)
{
	const char *q = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "query");
	char		names[FT_SEARCH_CLAUSES][16];
	char		values[FT_SEARCH_CLAUSES][FT_GW_MAX_KEY + 1];
	int			nclauses = 0;
	json_t	   *data;

	while (q != NULL)
	{
		if (nclauses >= FT_SEARCH_CLAUSES ||
			!search_clause(&q, names[nclauses], sizeof(names[0]),
						   values[nclauses], sizeof(values[0])) ||
			(strcmp(names[nclauses], "order_id") != 0 &&
			 strcmp(names[nclauses], "payment_key") != 0))
		{
			q = NULL;
			nclauses = 0;
			break;
		}
		nclauses++;
		if (*q == '\0')
			break;
		if (strncmp(q, " OR ", 4) != 0)
		{
			nclauses = 0;
			break;
		}
		q += 4;
	}
	if (nclauses == 0)
		return stripe_error(conn, 400, "invalid_request_error", "parameter_invalid",
							"unsupported search query", NULL);
	data = json_array();
	pthread_mutex_lock(&ft_pi_lock);
	ft_pi_searches++;
	for (int i = 0; i < ft_npi; i++)
	{
		for (int c = 0; c < nclauses; c++)
		{
			char		v[FT_GW_MAX_KEY + 1];

			if (intent_metadata(&ft_pi[i], names[c], v, sizeof(v)) &&
				strcmp(v, values[c]) == 0)
			{
				json_array_append_new(data, intent_json(&ft_pi[i]));
				break;
			}
		}
	}
	pthread_mutex_unlock(&ft_pi_lock);
	return ft_gw_reply_payment_json(conn, 200,
									json_pack("{s:s, s:o, s:b}", "object", "search_result",
											  "data", data, "has_more", 0),
									NULL, NULL, true, true);
}

static enum MHD_Result
intents_stats(struct MHD_Connection *conn, const char *method)
{
	json_t	   *j;
	int			succeeded = 0;
	int			canceled = 0;

	pthread_mutex_lock(&ft_pi_lock);
	if (strcmp(method, "DELETE") == 0)
	{
		for (int i = 0; i < ft_npi; i++)
			free(ft_pi[i].body);
		ft_npi = ft_pi_creates = ft_pi_replays = ft_pi_gets = ft_pi_searches = 0;
		ft_pi_cancels = 0;
		ft_pi_retry_once_seen = 0;
	}
	for (int i = 0; i < ft_npi; i++)
	{
		if (strcmp(ft_pi[i].status, "succeeded") == 0)
			succeeded++;
		else if (strcmp(ft_pi[i].status, "canceled") == 0)
			canceled++;
	}
	if (strcmp(method, "DELETE") == 0)
		ft_pi_stripe_version[0] = '\0';
	j = json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:s}", "intents", ft_npi,
				  "creates", ft_pi_creates, "replays", ft_pi_replays,
				  "gets", ft_pi_gets, "searches", ft_pi_searches,
				  "succeeded", succeeded, "cancels", ft_pi_cancels,
				  "canceled", canceled, "stripe_version", ft_pi_stripe_version);
	pthread_mutex_unlock(&ft_pi_lock);
	return ft_gw_reply_json(conn, 200, j, NULL, NULL);
}

/* true when url is ours; *ret then holds the answer */
bool
ft_gw_intents(struct MHD_Connection *conn, const char *url, const char *method,
			  FtRequest *req, enum MHD_Result *ret)
{
	const char *auth;

	if (strcmp(url, "/v1/_intents") == 0)
	{
		*ret = intents_stats(conn, method);
		return true;
	}
	if (strncmp(url, "/v1/_intents/", 13) == 0)
	{
		json_t	   *j = NULL;
		FtIntent   *pi;

		pthread_mutex_lock(&ft_pi_lock);
		pi = intent_find(url + 13, strlen(url + 13));
		if (pi != NULL)
			j = json_pack("{s:s, s:s, s:s, s:s, s:s}", "key", pi->key,
						  "content_type", pi->content_type,
						  "body", pi->body, "status", pi->status,
						  "cancel_key", pi->cancel_key);
		pthread_mutex_unlock(&ft_pi_lock);
		*ret = j ? ft_gw_reply_json(conn, 200, j, NULL, NULL)
			: ft_gw_reply_error(conn, 404, "not_found", NULL);
		return true;
	}
	if (strncmp(url, "/v1/payment_intents", strlen("/v1/payment_intents")) != 0)
		return false;

	{
		const char *version = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
														  "Stripe-Version");

		pthread_mutex_lock(&ft_pi_lock);
		snprintf(ft_pi_stripe_version, sizeof(ft_pi_stripe_version), "%s",
				 version ? version : "");
		pthread_mutex_unlock(&ft_pi_lock);
	}
	auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
	if (auth == NULL || strncmp(auth, "Bearer ", 7) != 0 || auth[7] == '\0')
		*ret = stripe_error(conn, 401, "invalid_request_error", NULL,
							"You did not provide an API key.", NULL);
	else if (strcmp(url, "/v1/payment_intents") == 0 && strcmp(method, "POST") == 0)
		*ret = intents_create(conn, req);
	else if (strcmp(url, "/v1/payment_intents/search") == 0 && strcmp(method, "GET") == 0)
		*ret = intents_search(conn);
	else if (strncmp(url, FT_PI_PREFIX, strlen(FT_PI_PREFIX)) == 0 &&
			 strcmp(method, "POST") == 0 && strlen(url) > strlen(FT_PI_PREFIX) + 7 &&
			 strcmp(url + strlen(url) - 7, "/cancel") == 0)
		*ret = intents_cancel(conn, url + strlen(FT_PI_PREFIX),
							  strlen(url) - strlen(FT_PI_PREFIX) - 7);
	else if (strncmp(url, FT_PI_PREFIX, strlen(FT_PI_PREFIX)) == 0 &&
			 strcmp(method, "GET") == 0)
		*ret = intents_get(conn, url + strlen(FT_PI_PREFIX));
	else
		*ret = stripe_error(conn, 404, "invalid_request_error", NULL,
							"Unrecognized request URL", NULL);
	return true;
}
