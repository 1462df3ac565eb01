/*-------------------------------------------------------------------------
 *
 * webhooks.c
 *	  Webhook emission of the fake gateway (docs/reference.md, "Webhooks"):
 *	  events are signed the Stripe way and POSTed to a configured URL by one
 *	  sender thread, with duplicates, reordering and delays on demand.
 *
 * Configuration, in POST /faults (reset by DELETE /faults):
 *	  webhook_url			where events go (http:// only; empty: none sent)
 *	  webhook_secret		the endpoint secret signing them
 *	  webhook_duplicates	extra copies of every event (0..10)
 *	  webhook_reorder		deliver each batch of due events last-in first-out
 *	  webhook_delay_ms		hold every event this long before sending
 *
 * Events come from two places: a payment the gateway settles (POST
 * /payments: payment.succeeded / payment.failed, generic shape; POST
 * /v1/payment_intents and the GET that settles a pending intent:
 * payment_intent.succeeded / payment_intent.payment_failed, Stripe shape),
 * and POST /webhooks/send, which queues the events given in its body as
 * they are (the tests use it for cancellations and refunds, which the fake
 * does not perform itself).  GET /webhooks shows the counters, DELETE
 * /webhooks clears the queue and the counters.
 *
 * Signature (both shapes): header "Stripe-Signature" for Stripe events,
 * "Webhook-Signature" for generic ones, value "t=<unix time>,v1=<hex
 * HMAC-SHA256 of "<t>.<body>" with the secret>", computed with OpenSSL.
 *
 * Request handlers only append to the queue under a mutex and signal a
 * condition variable: no HTTP request is ever made on a libmicrohttpd
 * thread.  The sender thread posts with libcurl (easy interface, one
 * request at a time, 5 s timeout); a failed delivery is counted, not
 * retried.
 *
 * tests/fake_gateway/webhooks.c
 *
 *-------------------------------------------------------------------------
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "gateway.h"
#include "webhooks.h"

#define WH_MAX_URL		1024
#define WH_MAX_SECRET	255
#define WH_MAX_QUEUE	100000
#define WH_MAX_DUPS		10

typedef struct WhEvent
{
	struct WhEvent *next;
	int64_t		due_us;
	bool		stripe;			/* Stripe-Signature, else Webhook-Signature */
	bool		bad_signature;	/* signed with a wrong secret (tests) */
	char	   *body;
} WhEvent;

static pthread_mutex_t wh_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wh_cond = PTHREAD_COND_INITIALIZER;
static pthread_t wh_thread;
static bool wh_started = false;
static bool wh_stopping = false;
static FtWebhookConfig wh_cfg;
static WhEvent *wh_head = NULL;
static WhEvent *wh_tail = NULL;
static int	wh_queued = 0;
static int64_t wh_seq = 0;
/*
 * A URL is configured: read without the lock (atomically), so that payments
 * pay nothing otherwise.
 */
static bool wh_enabled = false;

/* counters, behind wh_lock */
static int64_t wh_c_queued;
static int64_t wh_c_sent;
static int64_t wh_c_2xx;
static int64_t wh_c_4xx;
static int64_t wh_c_failed;		/* 5xx, other statuses, no reply */
static int64_t wh_c_dropped;	/* queue full or no URL */
static long wh_last_status;

/* Free a list of events (taken off the queue, or the whole queue). */
static void
wh_free_events(WhEvent *e)
{
	while (e != NULL)
	{
		WhEvent    *next = e->next;

		free(e->body);
		free(e);
		e = next;
	}
}

/*
 * Take the webhook_* fields out of a POST /faults object into *cfg (which
 * starts as the current configuration).  Returns false with a message if
 * one is invalid; the fields are removed from obj either way.
 */
bool
ft_webhooks_parse(json_t *obj, FtWebhookConfig *cfg, char *err, size_t errlen)
{
	json_t	   *v;
	bool		ok = true;

	pthread_mutex_lock(&wh_lock);
	*cfg = wh_cfg;
	pthread_mutex_unlock(&wh_lock);

	if ((v = json_object_get(obj, "webhook_url")) != NULL)
	{
		const char *s = json_string_value(v);

		if (json_is_null(v))
			cfg->url[0] = '\0';
		else if (s == NULL || strlen(s) >= WH_MAX_URL ||
				 (s[0] != '\0' && strncmp(s, "http://", 7) != 0))
			ok = false, snprintf(err, errlen, "webhook_url must be an http:// URL of at most %d bytes", WH_MAX_URL - 1);
		else
			snprintf(cfg->url, sizeof(cfg->url), "%s", s);
	}
	if (ok && (v = json_object_get(obj, "webhook_secret")) != NULL)
	{
		const char *s = json_string_value(v);

		if (s == NULL || strlen(s) > WH_MAX_SECRET)
			ok = false, snprintf(err, errlen, "webhook_secret must be a string of at most %d bytes", WH_MAX_SECRET);
		else
			snprintf(cfg->secret, sizeof(cfg->secret), "%s", s);
	}
	if (ok && (v = json_object_get(obj, "webhook_duplicates")) != NULL)
	{
		if (!json_is_integer(v) || json_integer_value(v) < 0 ||
			json_integer_value(v) > WH_MAX_DUPS)
			ok = false, snprintf(err, errlen, "webhook_duplicates must be an integer in 0..%d", WH_MAX_DUPS);
		else
			cfg->duplicates = (int) json_integer_value(v);
	}
	if (ok && (v = json_object_get(obj, "webhook_reorder")) != NULL)
	{
		if (!json_is_boolean(v))
			ok = false, snprintf(err, errlen, "webhook_reorder must be a boolean");
		else
			cfg->reorder = json_is_true(v);
	}
	if (ok && (v = json_object_get(obj, "webhook_delay_ms")) != NULL)
	{
		if (!json_is_integer(v) || json_integer_value(v) < 0 ||
			json_integer_value(v) > 600000)
			ok = false, snprintf(err, errlen, "webhook_delay_ms must be an integer in 0..600000");
		else
			cfg->delay_ms = (int) json_integer_value(v);
	}
	json_object_del(obj, "webhook_url");
	json_object_del(obj, "webhook_secret");
	json_object_del(obj, "webhook_duplicates");
	json_object_del(obj, "webhook_reorder");
	json_object_del(obj, "webhook_delay_ms");
	return ok;
}

void
ft_webhooks_configure(const FtWebhookConfig *cfg)
{
	pthread_mutex_lock(&wh_lock);
	wh_cfg = *cfg;
	__atomic_store_n(&wh_enabled, wh_cfg.url[0] != '\0', __ATOMIC_RELAXED);
	pthread_mutex_unlock(&wh_lock);
}

void
ft_webhooks_reset(void)
{
	pthread_mutex_lock(&wh_lock);
	memset(&wh_cfg, 0, sizeof(wh_cfg));
	__atomic_store_n(&wh_enabled, false, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&wh_lock);
}

/* The configuration for GET /faults (the secret is not shown). */
void
ft_webhooks_config_json(json_t *obj)
{
	FtWebhookConfig c;

	pthread_mutex_lock(&wh_lock);
	c = wh_cfg;
	pthread_mutex_unlock(&wh_lock);
	json_object_set_new(obj, "webhook_url", json_string(c.url));
	json_object_set_new(obj, "webhook_secret_set", json_boolean(c.secret[0] != '\0'));
	json_object_set_new(obj, "webhook_duplicates", json_integer(c.duplicates));
	json_object_set_new(obj, "webhook_reorder", json_boolean(c.reorder));
	json_object_set_new(obj, "webhook_delay_ms", json_integer(c.delay_ms));
}

/*
 * Queue one event (body taken over: malloc'd) and its duplicates, due
 * webhook_delay_ms after now_us (one now_us for a whole POST /webhooks/send,
 * so that its events form one batch for webhook_reorder).  Returns
 * the number of copies queued (0 when no URL is configured or the queue is
 * full; the body is freed then).
 */
static int
wh_enqueue(char *body, bool stripe, bool bad_signature, int64_t now_us)
{
	int			copies;
	int			n = 0;
	int64_t		due;

	pthread_mutex_lock(&wh_lock);
	copies = 1 + wh_cfg.duplicates;
	due = now_us + (int64_t) wh_cfg.delay_ms * 1000;
	if (wh_cfg.url[0] == '\0')
	{
		wh_c_dropped++;
		pthread_mutex_unlock(&wh_lock);
		free(body);
		return 0;
	}
	for (int i = 0; i < copies && wh_queued < WH_MAX_QUEUE; i++)
	{
		WhEvent    *e = malloc(sizeof(WhEvent));
		char	   *b = i == copies - 1 ? body : strdup(body);

		if (e == NULL || b == NULL)
		{
			free(e);
			if (b != body)
				free(b);
			break;
		}
		e->next = NULL;
		e->due_us = due;
		e->stripe = stripe;
		e->bad_signature = bad_signature;
		e->body = b;
		if (wh_tail)
			wh_tail->next = e;
		else
			wh_head = e;
		wh_tail = e;
		wh_queued++;
		wh_c_queued++;
		n++;
	}
	wh_c_dropped += copies - n;
	if (n < copies)
		free(body);				/* the last copy, which would own it, was not queued */
	pthread_cond_signal(&wh_cond);
	pthread_mutex_unlock(&wh_lock);
	return n;
}

/* Queue a json event (reference taken over). */
static int
wh_enqueue_json(json_t *ev, bool stripe, bool bad_signature)
{
	char	   *text = json_dumps(ev, JSON_COMPACT);

	json_decref(ev);
	if (text == NULL)
		return 0;
	return wh_enqueue(text, stripe, bad_signature, ft_gw_now_us());
}

static int64_t
wh_next_id(void)
{
	int64_t		id;

	pthread_mutex_lock(&wh_lock);
	id = ++wh_seq;
	pthread_mutex_unlock(&wh_lock);
	return id;
}

void
ft_webhooks_payment(bool succeeded, const char *payment_key,
					const char *payment_id, int64_t amount,
					const char *currency)
{
	char		id[48];
	json_t	   *ev;

	if (!__atomic_load_n(&wh_enabled, __ATOMIC_RELAXED))
		return;
	snprintf(id, sizeof(id), "evt_gen_%lld", (long long) wh_next_id());
	ev = json_pack("{s:s, s:s, s:s, s:s, s:I, s:s*}",
				   "event_id", id,
				   "type", succeeded ? "payment.succeeded" : "payment.failed",
				   "payment_key", payment_key,
				   "status", succeeded ? "succeeded" : "declined",
				   "amount_minor", (json_int_t) amount,
				   "currency", currency);
	if (ev == NULL)
		return;
	if (succeeded && payment_id != NULL)
		json_object_set_new(ev, "payment_id", json_string(payment_id));
	if (!succeeded)
		json_object_set_new(ev, "decline_code", json_string("card_declined"));
	wh_enqueue_json(ev, false, false);
}

void
ft_webhooks_intent(const char *intent_id, const char *status,
				   const char *order_id, const char *payment_key,
				   int64_t amount, const char *currency)
{
	char		id[48];
	bool		succeeded = strcmp(status, "succeeded") == 0;
	json_t	   *obj;
	json_t	   *ev;

	if (!__atomic_load_n(&wh_enabled, __ATOMIC_RELAXED))
		return;
	snprintf(id, sizeof(id), "evt_fake%06lld", (long long) wh_next_id());
	obj = json_pack("{s:s, s:s, s:I, s:I, s:s, s:s, s:{s:s}}",
					"id", intent_id, "object", "payment_intent",
					"amount", (json_int_t) amount,
					"amount_received", (json_int_t) (succeeded ? amount : 0),
					"currency", currency, "status", status,
					"metadata", "order_id", order_id ? order_id : "");
	if (obj == NULL)
		return;
	if (payment_key != NULL)
		json_object_set_new(json_object_get(obj, "metadata"), "payment_key",
							json_string(payment_key));
	if (!succeeded)
		json_object_set_new(obj, "last_payment_error",
							json_pack("{s:s, s:s}", "code", "card_declined",
									  "decline_code", "generic_decline"));
	ev = json_pack("{s:s, s:s, s:s, s:I, s:b, s:{s:o}}",
				   "id", id, "object", "event",
				   "type", succeeded ? "payment_intent.succeeded"
				   : "payment_intent.payment_failed",
				   "created", (json_int_t) time(NULL), "livemode", 0,
				   "data", "object", obj);
	if (ev != NULL)
		wh_enqueue_json(ev, true, false);
}

/*
 * POST /webhooks/send {"provider": "stripe"|"generic", "events": [...],
 * "bad_signature": false}: queue the events as given.
 */
static enum MHD_Result
wh_send(struct MHD_Connection *conn, const FtRequest *req)
{
	json_error_t jerr;
	json_t	   *obj = json_loadb(req->body, req->len, 0, &jerr);
	json_t	   *events;
	json_t	   *bad;
	const char *provider;
	bool		stripe;
	size_t		i;
	json_t	   *e;
	int			n = 0;
	int64_t		now_us;

	if (obj == NULL || !json_is_object(obj))
	{
		json_decref(obj);
		return ft_gw_reply_error(conn, 400, "invalid_request", "body must be a JSON object");
	}
	provider = json_string_value(json_object_get(obj, "provider"));
	events = json_object_get(obj, "events");
	bad = json_object_get(obj, "bad_signature");
	if (provider == NULL ||
		(strcmp(provider, "stripe") != 0 && strcmp(provider, "generic") != 0) ||
		!json_is_array(events) || (bad != NULL && !json_is_boolean(bad)))
	{
		json_decref(obj);
		return ft_gw_reply_error(conn, 400, "invalid_request",
								 "expected {\"provider\": \"stripe\"|\"generic\", \"events\": [...], \"bad_signature\": bool}");
	}
	stripe = strcmp(provider, "stripe") == 0;
	now_us = ft_gw_now_us();
	json_array_foreach(events, i, e)
	{
		char	   *text = json_dumps(e, JSON_COMPACT | JSON_ENCODE_ANY);

		if (text != NULL)
			n += wh_enqueue(text, stripe, bad != NULL && json_is_true(bad), now_us);
	}
	json_decref(obj);
	return ft_gw_reply_json(conn, 202, json_pack("{s:i}", "queued", n), NULL, NULL);
}

static json_t *
wh_stats_json(void)
{
	json_t	   *j;

	pthread_mutex_lock(&wh_lock);
	j = json_pack("{s:i, s:I, s:I, s:I, s:I, s:I, s:I, s:i}",
				  "queue", wh_queued,
				  "queued", (json_int_t) wh_c_queued,
				  "sent", (json_int_t) wh_c_sent,
				  "delivered", (json_int_t) wh_c_2xx,
				  "rejected", (json_int_t) wh_c_4xx,
				  "failed", (json_int_t) wh_c_failed,
				  "dropped", (json_int_t) wh_c_dropped,
				  "last_status", (int) wh_last_status);
	pthread_mutex_unlock(&wh_lock);
	return j;
}

bool
ft_gw_webhooks(struct MHD_Connection *conn, const char *url,
			   const char *method, FtRequest *req, enum MHD_Result *ret)
{
	if (strcmp(url, "/webhooks/send") == 0 && strcmp(method, "POST") == 0)
		*ret = wh_send(conn, req);
	else if (strcmp(url, "/webhooks") == 0 && strcmp(method, "GET") == 0)
		*ret = ft_gw_reply_json(conn, 200, wh_stats_json(), NULL, NULL);
	else if (strcmp(url, "/webhooks") == 0 && strcmp(method, "DELETE") == 0)
	{
		WhEvent    *e;

		pthread_mutex_lock(&wh_lock);
		e = wh_head;
		wh_head = wh_tail = NULL;
		wh_queued = 0;
		wh_c_queued = wh_c_sent = wh_c_2xx = wh_c_4xx = wh_c_failed = wh_c_dropped = 0;
		wh_last_status = 0;
		pthread_mutex_unlock(&wh_lock);
		wh_free_events(e);
		*ret = ft_gw_reply_json(conn, 200, wh_stats_json(), NULL, NULL);
	}
	else
		return false;
	return true;
}

/* "t=<now>,v1=<hex hmac>" into out; false if OpenSSL failed */
static bool
wh_sign(const char *secret, bool bad, const char *body, char *out, size_t outlen)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	char		key[WH_MAX_SECRET + 8];
	char		t[32];
	char		hex[2 * EVP_MAX_MD_SIZE + 1];
	size_t		tlen,
				blen = strlen(body);
	unsigned char *msg;

	snprintf(key, sizeof(key), "%s%s", secret, bad ? "-bad" : "");
	tlen = (size_t) snprintf(t, sizeof(t), "%lld", (long long) time(NULL));
	msg = malloc(tlen + 1 + blen);
	if (msg == NULL)
		return false;
	memcpy(msg, t, tlen);
	msg[tlen] = '.';
	memcpy(msg + tlen + 1, body, blen);
	if (HMAC(EVP_sha256(), key, (int) strlen(key), msg, tlen + 1 + blen,
			 mac, &maclen) == NULL)
	{
		free(msg);
		return false;
	}
	free(msg);
	for (unsigned int i = 0; i < maclen; i++)
		snprintf(hex + 2 * i, 3, "%02x", mac[i]);
	snprintf(out, outlen, "t=%s,v1=%s", t, hex);
	return true;
}

/* libcurl write callback: the reply body is not needed */
static size_t
wh_discard(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	return size * nmemb;
}

/* POST one event; returns the HTTP status, 0 when there was no reply */
static long
wh_post(CURL *curl, const char *url, const char *secret, const WhEvent *e)
{
	char		sig[64 + 2 * EVP_MAX_MD_SIZE];
	char		header[200 + sizeof("Stripe-Signature: ")];
	struct curl_slist *headers = NULL;
	struct curl_slist *h;
	long		status = 0;

	if (!wh_sign(secret, e->bad_signature, e->body, sig, sizeof(sig)))
		return 0;
	snprintf(header, sizeof(header), "%s: %s",
			 e->stripe ? "Stripe-Signature" : "Webhook-Signature", sig);
	h = curl_slist_append(NULL, "Content-Type: application/json");
	if (h == NULL)
		return 0;
	headers = h;
	h = curl_slist_append(headers, header);
	if (h == NULL)
	{
		curl_slist_free_all(headers);
		return 0;
	}
	headers = h;
	curl_easy_reset(curl);
	if (curl_easy_setopt(curl, CURLOPT_URL, url) == CURLE_OK &&
		curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http") == CURLE_OK &&
		curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers) == CURLE_OK &&
		curl_easy_setopt(curl, CURLOPT_POSTFIELDS, e->body) == CURLE_OK &&
		curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 5000L) == CURLE_OK &&
		curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
		curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, wh_discard) == CURLE_OK &&
		curl_easy_perform(curl) == CURLE_OK)
		curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(headers);
	return status;
}

/*
 * The sender: wait for due events, take every due one, send them in queue
 * order or (webhook_reorder) reversed.
 */
static void *
wh_main(void *arg)
{
	CURL	   *curl = curl_easy_init();

	if (curl == NULL)
	{
		fprintf(stderr, "fake_gateway: curl_easy_init failed: no webhooks\n");
		return NULL;
	}
	pthread_mutex_lock(&wh_lock);
	while (!wh_stopping)
	{
		int64_t		now = ft_gw_now_us();
		WhEvent    *batch = NULL;
		WhEvent   **prev = &wh_head;
		WhEvent    *e;
		int64_t		next_due = INT64_MAX;
		char		url[WH_MAX_URL];
		char		secret[WH_MAX_SECRET + 1];
		bool		reorder = wh_cfg.reorder;

		/* take the due events; batch ends up reversed (LIFO) */
		wh_tail = NULL;
		while ((e = *prev) != NULL)
		{
			if (e->due_us <= now)
			{
				*prev = e->next;
				e->next = batch;
				batch = e;
				wh_queued--;
			}
			else
			{
				if (e->due_us < next_due)
					next_due = e->due_us;
				wh_tail = e;
				prev = &e->next;
			}
		}
		if (batch == NULL)
		{
			if (next_due == INT64_MAX)
				pthread_cond_wait(&wh_cond, &wh_lock);
			else
			{
				struct timespec ts;

				ts.tv_sec = next_due / 1000000;
				ts.tv_nsec = (next_due % 1000000) * 1000;
				pthread_cond_timedwait(&wh_cond, &wh_lock, &ts);
			}
			continue;
		}
		if (!reorder)
		{
			WhEvent    *fifo = NULL;

			while (batch)
			{
				e = batch->next;
				batch->next = fifo;
				fifo = batch;
				batch = e;
			}
			batch = fifo;
		}
		snprintf(url, sizeof(url), "%s", wh_cfg.url);
		snprintf(secret, sizeof(secret), "%s", wh_cfg.secret);
		pthread_mutex_unlock(&wh_lock);

		while (batch)
		{
			long		status = url[0] ? wh_post(curl, url, secret, batch) : 0;
			bool		stopping;

			pthread_mutex_lock(&wh_lock);
			wh_c_sent++;
			wh_last_status = status;
			if (status >= 200 && status < 300)
				wh_c_2xx++;
			else if (status >= 400 && status < 500)
				wh_c_4xx++;
			else
				wh_c_failed++;
			stopping = wh_stopping;
			pthread_mutex_unlock(&wh_lock);
			e = batch->next;
			batch->next = NULL;
			wh_free_events(batch);
			batch = e;
			if (stopping)
			{
				/* shutting down: the rest of the batch is not sent */
				wh_free_events(batch);
				batch = NULL;
			}
		}
		pthread_mutex_lock(&wh_lock);
	}
	pthread_mutex_unlock(&wh_lock);
	curl_easy_cleanup(curl);
	return NULL;
}

bool
ft_webhooks_start(void)
{
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return false;
	if (pthread_create(&wh_thread, NULL, wh_main, NULL) != 0)
	{
		curl_global_cleanup();
		return false;
	}
	wh_started = true;
	return true;
}

void
ft_webhooks_stop(void)
{
	if (!wh_started)
		return;
	pthread_mutex_lock(&wh_lock);
	wh_stopping = true;
	pthread_cond_signal(&wh_cond);
	pthread_mutex_unlock(&wh_lock);
	pthread_join(wh_thread, NULL);
	curl_global_cleanup();
	/* events still held (webhook_delay_ms) are dropped */
	wh_free_events(wh_head);
	wh_head = wh_tail = NULL;
}
