/*-------------------------------------------------------------------------
 *
 * webhooks.h
 *	  Webhook emission of the fake gateway (webhooks.c).
 *
 * tests/fake_gateway/webhooks.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef FT_WEBHOOKS_H
#define FT_WEBHOOKS_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <microhttpd.h>

#include "gateway.h"

/* the webhook_* fields of POST /faults */
typedef struct FtWebhookConfig
{
	char		url[1024];
	char		secret[256];
	int			duplicates;
	bool		reorder;
	int			delay_ms;
} FtWebhookConfig;

extern bool ft_webhooks_start(void);
extern void ft_webhooks_stop(void);
extern bool ft_webhooks_parse(json_t *obj, FtWebhookConfig *cfg,
							  char *err, size_t errlen);
extern void ft_webhooks_configure(const FtWebhookConfig *cfg);
extern void ft_webhooks_reset(void);
extern void ft_webhooks_config_json(json_t *obj);

/* a payment settled by POST /payments (generic event) */
extern void ft_webhooks_payment(bool succeeded, const char *payment_key,
								const char *payment_id, int64_t amount,
								const char *currency);

/*
 * a PaymentIntent reached succeeded / requires_payment_method (Stripe
 * event); payment_key NULL: its metadata has none
 */
extern void ft_webhooks_intent(const char *intent_id, const char *status,
							   const char *order_id, const char *payment_key,
							   int64_t amount, const char *currency);

/* POST /webhooks/send, GET and DELETE /webhooks (true: url was handled) */
extern bool ft_gw_webhooks(struct MHD_Connection *conn, const char *url,
						   const char *method, FtRequest *req,
						   enum MHD_Result *ret);

#endif							/* FT_WEBHOOKS_H */
