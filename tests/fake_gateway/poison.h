/*-------------------------------------------------------------------------
 *
 * poison.h
 *	  Hostile reply bodies of the payment endpoints (poison.c).
 *
 * tests/fake_gateway/poison.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef FT_POISON_H
#define FT_POISON_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>
#include <microhttpd.h>

/* largest spoiled body, and largest reply_extra */
#define FT_POISON_MAX_BYTES		(1024 * 1024)

extern enum MHD_Result ft_gw_reply_payment(struct MHD_Connection *conn,
										   unsigned int status, char *text,
										   size_t len, const char *hname,
										   const char *hvalue, bool stripe,
										   bool lookup);
extern enum MHD_Result ft_gw_reply_payment_json(struct MHD_Connection *conn,
												unsigned int status,
												json_t *obj, const char *hname,
												const char *hvalue, bool stripe,
												bool lookup);
extern bool ft_poison_set_extra_hex(const char *hex);
extern size_t ft_poison_extra_len(void);
extern json_t *ft_poison_stats_json(void);
extern void ft_poison_clear_stats(void);

#endif							/* FT_POISON_H */
