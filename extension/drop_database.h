/*-------------------------------------------------------------------------
 *
 * drop_database.h
 *	  DROP DATABASE of a database that ft_orders serves (drop_database.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef FT_DROP_DATABASE_H
#define FT_DROP_DATABASE_H

extern void ft_drop_database_install_hook(void);

#endif							/* FT_DROP_DATABASE_H */
