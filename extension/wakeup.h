/*-------------------------------------------------------------------------
 *
 * wakeup.h
 *	  Waking a payment worker when a transaction that placed an order
 *	  commits.
 *
 *-------------------------------------------------------------------------
 */
#ifndef FT_WAKEUP_H
#define FT_WAKEUP_H

extern void ft_wakeup_init(void);
extern void ft_wakeup_at_commit(void);
extern void ft_wake_one_worker(void);

#endif							/* FT_WAKEUP_H */
