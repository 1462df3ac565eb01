/*-------------------------------------------------------------------------
 *
 * faults.h
 *	  Fault-injection configuration of the fake payment gateway.
 *
 * tests/fake_gateway/faults.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef FT_FAULTS_H
#define FT_FAULTS_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <microhttpd.h>

#define FT_FAULTS_MAX_LIST		64	/* entries per *_amount_minor list */
#define FT_FAULTS_MAX_SCRIPT	1024	/* entries in status_script */
#define FT_FAULTS_MAX_TOKEN		255

/* A list of amounts (decline / reject / bad request). */
typedef struct FtAmountList
{
	int			n;
	int64_t		v[FT_FAULTS_MAX_LIST];
} FtAmountList;

/*
 * The part of the configuration a /payments request reads.  status_script
 * is kept apart (faults.c) because requests consume it.
 */
typedef struct FtFaults
{
	double		fail_rate;
	int			fail_status;
	int			latency_ms;
	double		timeout_rate;
	int			hang_ms;
	bool		down;
	int			retry_after_s;
	double		garbage_rate;
	int			rate_limit_per_s;	/* 0: none (limiter.c) */
	int			max_concurrency;	/* 0: none */
	FtAmountList decline_amount_minor;
	FtAmountList reject_amount_minor;
	FtAmountList bad_request_amount_minor;
	FtAmountList requires_action_amount_minor;
	int			key_ttl_s;		/* 0: keys are remembered for good */
	double		poison_rate;	/* share of payment replies spoiled (poison.c) */
	int			poison_max_bytes;	/* 0: FT_POISON_MAX_BYTES */
	bool		poison_lookups; /* look-up replies are spoiled too */
	bool		has_token;
	char		require_token[FT_FAULTS_MAX_TOKEN + 1];
} FtFaults;

extern void ft_faults_init(int hang_ms, const char *env_token);
extern void ft_faults_reset(void);
extern void ft_faults_snapshot(FtFaults *out);
extern int	ft_faults_pop_script(void);
extern bool ft_faults_update(json_t *obj, char *err, size_t errlen);
extern json_t *ft_faults_to_json(void);
extern bool ft_faults_listed(const FtAmountList *list, int64_t amount);
extern double ft_faults_draw(void);
extern bool ft_faults_inject(struct MHD_Connection *conn, const FtFaults *f,
							 enum MHD_Result *ret);

#endif							/* FT_FAULTS_H */
