/*-------------------------------------------------------------------------
 *
 * limiter.h
 *	  The fake gateway's server-side limiter: requests per second and
 *	  requests at once on POST /payments, as a real gateway's rate and
 *	  concurrency limiters (docs/reference.md, "Fake gateway").
 *
 * tests/fake_gateway/limiter.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef FT_LIMITER_H
#define FT_LIMITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

extern bool ft_limiter_admit(int rate_per_s, int max_concurrency,
							 int64_t now_us, int *retry_after_s);
extern void ft_limiter_done(void);
extern void ft_limiter_log(int64_t arrival_us, const char *key);
extern char *ft_limiter_log_text(size_t *len);
extern void ft_limiter_clear(void);

#endif							/* FT_LIMITER_H */
