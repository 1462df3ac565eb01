/*-------------------------------------------------------------------------
 *
 * router.c
 *	  libmicrohttpd access handler of the fake gateway: reads request
 *	  bodies (bounded), routes by path and method, and serves the control
 *	  endpoints (/health, /faults, /ledger).  /payments is in payments.c.
 *
 * libmicrohttpd calls ft_gw_access once with the headers, once per chunk
 * of body, and once more with no data; we answer on that last call, which
 * is repeated after a suspended (delayed) connection is resumed.
 *
 * tests/fake_gateway/router.c
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway.h"
#include "faults.h"
#include "ledger.h"
#include "webhooks.h"
#include "limiter.h"
#include "poison.h"

#define LEDGER_PREFIX "/ledger/"

/*
 * Queue a reply whose body (malloc'd, may be NULL when len is 0) is handed
 * over to libmicrohttpd, with one optional extra header.
 */
enum MHD_Result
ft_gw_reply(struct MHD_Connection *conn, unsigned int status, char *body,
			size_t len, const char *content_type, const char *hname,
			const char *hvalue)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
	if (resp == NULL)
	{
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
	if (hname != NULL)
		MHD_add_response_header(resp, hname, hvalue);
	ret = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* Queue a JSON reply; takes over the reference to obj. */
enum MHD_Result
ft_gw_reply_json(struct MHD_Connection *conn, unsigned int status,
				 json_t *obj, const char *hname, const char *hvalue)
{
	char	   *text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;

	json_decref(obj);
	if (text == NULL)
		return MHD_NO;
	return ft_gw_reply(conn, status, text, strlen(text), "application/json",
					   hname, hvalue);
}

/* Queue {"error":error[,"message":message]}. */
enum MHD_Result
ft_gw_reply_error(struct MHD_Connection *conn, unsigned int status,
				  const char *error, const char *message)
{
	return ft_gw_reply_json(conn, status,
							json_pack("{s:s, s:s*}", "error", error,
									  "message", message),
							NULL, NULL);
}

/* Append a chunk of body; past FT_GW_MAX_BODY the body is dropped. */
static void
router_append(FtRequest *req, const char *data, size_t size)
{
	if (req->too_big || req->len + size > FT_GW_MAX_BODY)
	{
		req->too_big = true;
		return;
	}
	if (req->len + size > req->cap)
	{
		size_t		cap = req->cap * 2;
		char	   *p;

		while (cap < req->len + size)
			cap *= 2;
		if (cap > FT_GW_MAX_BODY)
			cap = FT_GW_MAX_BODY;
		p = malloc(cap + 1);
		if (p == NULL)
		{
			req->too_big = true;
			return;
		}
		memcpy(p, req->body, req->len);
		if (req->body != req->inline_buf)
			free(req->body);
		req->body = p;
		req->cap = cap;
	}
	memcpy(req->body + req->len, data, size);
	req->len += size;
	req->body[req->len] = '\0';
}

/* POST, GET and DELETE /faults. */
static enum MHD_Result
router_faults(struct MHD_Connection *conn, const char *method,
			  const FtRequest *req)
{
	if (strcmp(method, "POST") == 0)
	{
		json_error_t jerr;
		json_t	   *obj = json_loadb(req->body, req->len, 0, &jerr);
		char		err[256];
		bool		ok;

		if (obj == NULL)
			return ft_gw_reply_error(conn, 400, "invalid_request",
									 "body is not valid JSON");
		FtWebhookConfig wh;

		/* the webhook_* fields are webhooks.c's; both parts or neither */
		ok = json_is_object(obj) && ft_webhooks_parse(obj, &wh, err, sizeof(err)) &&
			ft_faults_update(obj, err, sizeof(err));
		if (!json_is_object(obj))
			snprintf(err, sizeof(err), "body must be a JSON object");
		json_decref(obj);
		if (!ok)
			return ft_gw_reply_error(conn, 400, "invalid_request", err);
		ft_webhooks_configure(&wh);
	}
	else if (strcmp(method, "DELETE") == 0)
	{
		ft_faults_reset();
		ft_webhooks_reset();
	}
	else if (strcmp(method, "GET") != 0)
		return ft_gw_reply_error(conn, 404, "not_found", NULL);
	{
		json_t	   *j = ft_faults_to_json();

		ft_webhooks_config_json(j);
		return ft_gw_reply_json(conn, 200, j, NULL, NULL);
	}
}

/*
 * GET and DELETE /ledger, GET /ledger/receipts, GET /ledger/requests,
 * GET /ledger/limited,
 * GET /ledger/{key}.
 */
static enum MHD_Result
router_ledger(struct MHD_Connection *conn, const char *url,
			  const char *method)
{
	bool		get = strcmp(method, "GET") == 0;

	if (strcmp(url, "/ledger") == 0 && get)
	{
		json_t	   *j = ft_ledger_stats_json();
		json_t	   *r = ft_gw_refund_stats();

		json_object_update(j, r);
		json_decref(r);
		r = ft_poison_stats_json();
		json_object_update(j, r);
		json_decref(r);
		return ft_gw_reply_json(conn, 200, j, NULL, NULL);
	}
	if (strcmp(url, "/ledger") == 0 && strcmp(method, "DELETE") == 0)
	{
		ft_ledger_clear();
		ft_limiter_clear();
		ft_gw_refunds_clear();
		ft_poison_clear_stats();
		return ft_gw_reply_json(conn, 200, json_pack("{s:b}", "ok", 1),
								NULL, NULL);
	}
	if (strcmp(url, LEDGER_PREFIX "receipts") == 0 && get)
	{
		size_t		len;
		char	   *text = ft_ledger_receipts(&len);

		return ft_gw_reply(conn, 200, text, len, "text/plain", NULL, NULL);
	}
	if (strcmp(url, LEDGER_PREFIX "limited") == 0 && get)
	{
		size_t		len;
		char	   *text = ft_limiter_log_text(&len);

		return ft_gw_reply(conn, 200, text, len, "text/plain", NULL, NULL);
	}
	if (strcmp(url, LEDGER_PREFIX "requests") == 0 && get)
	{
		size_t		len;
		char	   *text = ft_ledger_requests(&len);

		return ft_gw_reply(conn, 200, text, len, "text/plain", NULL, NULL);
	}
	if (strncmp(url, LEDGER_PREFIX, strlen(LEDGER_PREFIX)) == 0 &&
		strcmp(method, "POST") == 0)
	{
		/* POST /ledger/{key}/complete: the customer finished 3-D Secure */
		const char *key = url + strlen(LEDGER_PREFIX);
		const char *slash = strchr(key, '/');
		char		buf[FT_GW_MAX_KEY + 1];

		if (slash == NULL || strcmp(slash, "/complete") != 0 ||
			(size_t) (slash - key) > FT_GW_MAX_KEY)
			return ft_gw_reply_error(conn, 404, "not_found", NULL);
		memcpy(buf, key, slash - key);
		buf[slash - key] = '\0';
		if (!ft_ledger_complete(buf, ft_gw_now_us()))
			return ft_gw_reply_error(conn, 404, "not_found",
									 "no payment waiting for the customer");
		return ft_gw_reply_json(conn, 200, json_pack("{s:b}", "ok", 1), NULL, NULL);
	}
	if (strncmp(url, LEDGER_PREFIX, strlen(LEDGER_PREFIX)) == 0 && get)
	{
		json_t	   *j = ft_ledger_entry_json(url + strlen(LEDGER_PREFIX));

		if (j != NULL)
			return ft_gw_reply_json(conn, 200, j, NULL, NULL);
		return ft_gw_reply_error(conn, 404, "not_found", "unknown key");
	}
	return ft_gw_reply_error(conn, 404, "not_found", NULL);
}

/* Route a complete request. */
static enum MHD_Result
router_dispatch(struct MHD_Connection *conn, const char *url,
				const char *method, FtRequest *req)
{
	enum MHD_Result ret;

	if (ft_gw_intents(conn, url, method, req, &ret))
		return ret;
	if (ft_gw_webhooks(conn, url, method, req, &ret))
		return ret;
	if (ft_gw_refunds(conn, url, method, req, &ret))
		return ret;
	if (strcmp(url, "/payments") == 0 && strcmp(method, "POST") == 0)
		return ft_gw_payments(conn, req);
	if (strncmp(url, "/payments/", 10) == 0 && strcmp(method, "GET") == 0)
		return ft_gw_payment_lookup(conn, req, url + 10);
	if (strcmp(url, "/health") == 0 && strcmp(method, "GET") == 0)
		return ft_gw_reply_json(conn, 200, json_pack("{s:b}", "ok", 1),
								NULL, NULL);
	if (strcmp(url, "/faults") == 0)
		return router_faults(conn, method, req);
	if (strcmp(url, "/ledger") == 0 ||
		strncmp(url, LEDGER_PREFIX, strlen(LEDGER_PREFIX)) == 0)
		return router_ledger(conn, url, method);
	return ft_gw_reply_error(conn, 404, "not_found", NULL);
}

enum MHD_Result
ft_gw_access(void *cls, struct MHD_Connection *conn, const char *url,
			 const char *method, const char *version,
			 const char *upload_data, size_t *upload_data_size,
			 void **con_cls)
{
	FtRequest  *req = *con_cls;

	if (req == NULL)
	{
		const char *clen;

		/* headers only so far */
		req = malloc(sizeof(FtRequest));
		if (req == NULL)
			return MHD_NO;
		req->body = req->inline_buf;
		req->body[0] = '\0';
		req->len = 0;
		req->cap = FT_GW_INLINE_BODY;
		req->too_big = false;
		req->arrival_us = ft_gw_now_us();
		req->delayed = false;
		req->hang = false;
		req->admitted = false;
		req->limited = false;
		req->retry_after_s = 0;
		*con_cls = req;
		clen = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
										   MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (clen != NULL && strtoull(clen, NULL, 10) > FT_GW_MAX_BODY)
			return ft_gw_reply_error(conn, 413, "payload_too_large", NULL);
		return MHD_YES;
	}
	if (*upload_data_size > 0)
	{
		router_append(req, upload_data, *upload_data_size);
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (req->hang)
		return MHD_NO;			/* resumed after a lost reply: just close */
	if (req->too_big)
		return ft_gw_reply_error(conn, 413, "payload_too_large", NULL);
	return router_dispatch(conn, url, method, req);
}

/* Request finished (answered or not): free its body. */
void
ft_gw_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
				enum MHD_RequestTerminationCode toe)
{
	FtRequest  *req = *con_cls;

	if (req == NULL)
		return;
	if (req->admitted)
		ft_limiter_done();
	if (req->body != req->inline_buf)
		free(req->body);
	free(req);
	*con_cls = NULL;
}
