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

/* does the installed schema keep purge generations (1.2 or later)? */
extern bool ft_schema_derives_keys(void);

/* does it have the payment lifecycle and webhooks (1.3 or later)? */
extern bool ft_schema_lifecycle(void);

/* does the installed schema have table ft_orders.relname? */
extern bool ft_schema_has_table(const char *relname);

#endif							/* FT_PLACE_ORDER_H */
