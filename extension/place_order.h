/*-------------------------------------------------------------------------
 *
 * place_order.h
 *	  What place_order.c shares with the key purge (maintenance.c) and
 *	  metrics.c: which version of the schema is installed.
 *
 *-------------------------------------------------------------------------
 */
#ifndef FT_PLACE_ORDER_H
#define FT_PLACE_ORDER_H

/* how the installed schema makes payment keys (place_order.c's banner) */
typedef enum FtKeyRule
{
	FT_KEYS_RANDOM,				/* 1.0, 1.1 */
	FT_KEYS_V1,					/* 1.2, 1.3: derived, no key space */
	FT_KEYS_V2					/* 1.4 on: derived within the key space */
} FtKeyRule;

extern FtKeyRule ft_schema_key_rule(void);

/* does it have the payment lifecycle and webhooks (1.3 or later)? */
extern bool ft_schema_lifecycle(void);

/* does the installed schema have table ft_orders.relname? */
extern bool ft_schema_has_table(const char *relname);

#endif							/* FT_PLACE_ORDER_H */
