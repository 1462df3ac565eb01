/*-------------------------------------------------------------------------
 *
 * gateway.h
 *	  Declarations shared by the modules of the fake payment gateway
 *	  (docs/reference.md, "Fake gateway"): the per-request body buffer, reply helpers, the router
 *	  entry points and the shutdown-aware sleep.
 *
 * libmicrohttpd runs a small pool of epoll threads; handlers never block:
 * a delayed reply suspends its connection (delay.c) instead.
 *
 * tests/fake_gateway/gateway.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef FT_GATEWAY_H
#define FT_GATEWAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <microhttpd.h>

/* largest request body accepted; anything bigger gets 413 */
#define FT_GW_MAX_BODY		(1024 * 1024)
/* bodies up to this size need no allocation beyond the request itself */
#define FT_GW_INLINE_BODY	2048
/* most connections open at once (and so most delayed replies) */
#define FT_GW_MAX_CONNECTIONS	4096
/* longest Idempotency-Key accepted */
#define FT_GW_MAX_KEY		255

/*
 * Empty the uthash table head (entries linked by "hh"; the caller includes
 * uthash.h), handing each entry to free_entry once it is out of the table.
 */
#define FT_GW_HASH_FREE_ALL(head, free_entry) \
	do { \
		__typeof__(head) ft_entry_, ft_next_; \
		HASH_ITER(hh, head, ft_entry_, ft_next_) \
		{ \
			HASH_DEL(head, ft_entry_); \
			free_entry(ft_entry_); \
		} \
	} while (0)

/* One in-flight HTTP request: its body, accumulated by the router. */
typedef struct FtRequest
{
	char	   *body;			/* points to inline_buf or to a malloc'd block */
	size_t		len;
	size_t		cap;
	bool		too_big;		/* body exceeded FT_GW_MAX_BODY; discarded */
	int64_t		arrival_us;		/* CLOCK_REALTIME when the headers arrived */
	bool		delayed;		/* latency_ms already waited */
	bool		hang;			/* lost reply: close without answering */
	bool		admitted;		/* counted by the limiter until completed */
	bool		limited;		/* turned away by the limiter: 429 */
	int			retry_after_s;	/* of that 429 */
	char		inline_buf[FT_GW_INLINE_BODY + 1];
} FtRequest;

/* router.c */
extern enum MHD_Result ft_gw_access(void *cls, struct MHD_Connection *conn,
									const char *url, const char *method,
									const char *version,
									const char *upload_data,
									size_t *upload_data_size, void **con_cls);
extern void ft_gw_completed(void *cls, struct MHD_Connection *conn,
							void **con_cls,
							enum MHD_RequestTerminationCode toe);
extern enum MHD_Result ft_gw_reply(struct MHD_Connection *conn,
								   unsigned int status, char *body,
								   size_t len, const char *content_type,
								   const char *hname, const char *hvalue);
extern enum MHD_Result ft_gw_reply_json(struct MHD_Connection *conn,
										unsigned int status, json_t *obj,
										const char *hname,
										const char *hvalue);
extern enum MHD_Result ft_gw_reply_error(struct MHD_Connection *conn,
										 unsigned int status,
										 const char *error,
										 const char *message);

/* payments.c */
extern enum MHD_Result ft_gw_payments(struct MHD_Connection *conn,
									  FtRequest *req);

extern enum MHD_Result ft_gw_payment_lookup(struct MHD_Connection *conn,
											FtRequest *req, const char *key);

/* refunds.c: POST /refunds, GET /refunds/{key} (true: url was handled) */
extern bool ft_gw_refunds(struct MHD_Connection *conn, const char *url,
						  const char *method, FtRequest *req,
						  enum MHD_Result *ret);
extern json_t *ft_gw_refund_stats(void);
extern void ft_gw_refunds_clear(void);

/* intents.c: the Stripe PaymentIntents shape (true: url was handled) */
extern bool ft_gw_intents(struct MHD_Connection *conn, const char *url,
						  const char *method, FtRequest *req,
						  enum MHD_Result *ret);

/* delay.c */
extern bool ft_gw_delay(struct MHD_Connection *conn, long ms);
extern bool ft_gw_delay_start(void);
extern void ft_gw_delay_stop(void);

/* main.c */
extern int64_t ft_gw_now_us(void);

#endif							/* FT_GATEWAY_H */
