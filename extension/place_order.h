/*-------------------------------------------------------------------------
 *
 * place_order.h
 *	  What place_order.c shares with the key purge (maintenance.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef FT_PLACE_ORDER_H
#define FT_PLACE_ORDER_H

/* does the installed schema keep purge generations (1.2 or later)? */
extern bool ft_schema_derives_keys(void);
extern bool ft_schema_lifecycle(void);

#endif							/* FT_PLACE_ORDER_H */
