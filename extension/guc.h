/*-------------------------------------------------------------------------
 *
 * guc.h
 *	  The ft_orders.* configuration parameters (docs/reference.md,
 *	  "Settings").
 *
 * Every time setting is held in the unit named in its variable: _ms for
 * milliseconds, _s for seconds.  Values are only ever written by the GUC
 * machinery; readers in workers re-read them after ProcessConfigFile().
 *
 *-------------------------------------------------------------------------
 */
#ifndef FT_GUC_H
#define FT_GUC_H

typedef enum FtGatewayProvider
{
	FT_PROVIDER_GENERIC = 0,
	FT_PROVIDER_STRIPE,			/* Stripe PaymentIntents */
	FT_PROVIDER_STRIPE_CHARGES	/* Stripe's older Charges API */
} FtGatewayProvider;

extern char *ft_database;		/* as written; see ft_databases */
extern int	ft_workers;
extern char *ft_gateway_url;
extern int	ft_gateway_provider;
extern char *ft_gateway_token;
extern uint64 ft_gateway_token_generation;	/* bumped on every (re)load */
extern int	ft_request_timeout_ms;
extern int	ft_connect_timeout_ms;
extern int	ft_max_in_flight;
extern int	ft_batch_size;
extern int	ft_max_attempts;
extern int	ft_backoff_base_ms;
extern int	ft_backoff_max_ms;
extern int	ft_lease_timeout_ms;
extern int	ft_circuit_failure_threshold;
extern int	ft_circuit_open_time_ms;
extern double ft_circuit_failure_rate;
extern double ft_rate_limit;
extern int	ft_rate_limit_burst;
extern bool ft_adaptive_concurrency;
extern int	ft_max_in_flight_ceiling;
extern int	ft_idempotency_ttl_s;
extern bool ft_tls_verify;
extern char *ft_ca_file;
extern int	ft_history_retention_s;
extern int	ft_audit_retention_s;
extern char *ft_stripe_api_version;

/* the Stripe API version the stripe providers are written for */
#define FT_STRIPE_API_VERSION_DEFAULT	"2024-06-20"
#define FT_STRIPE_API_VERSION_MAX		64
extern int	ft_gateway_key_ttl_s;
extern int	ft_action_timeout_s;
extern bool ft_allow_insecure_http;

/* ft_orders.gateway_token = 'file:/path': the token is that file's content */
#define FT_TOKEN_FILE_PREFIX	"file:"
/* longest token accepted from a token file */
#define FT_TOKEN_MAX_BYTES		4096

/* most databases ft_orders.database may list */
#define FT_MAX_DATABASES 16

/*
 * ft_orders.database parsed: the names of the databases served, in the
 * order written.  Database i has launcher i and shared-memory block i.
 */
typedef struct FtDatabaseList
{
	int			n;
	char		names[FT_MAX_DATABASES][NAMEDATALEN];
} FtDatabaseList;

extern const FtDatabaseList *ft_databases;

/* upper bound of ft_orders.workers; sizes the shared-memory slot array */
#define FT_MAX_WORKERS 32

/*
 * upper bound of ft_orders.max_in_flight; sizes a worker's job arrays and
 * its libcurl handle pool
 */
#define FT_MAX_IN_FLIGHT 1024

/*
 * When lease_timeout <= request_timeout, requests are cut to the lease
 * minus this margin (or minus half the lease if that is less)
 */
#define FT_LEASE_MARGIN_MS 1000

extern void ft_define_gucs(void);
extern int	ft_database_index(const char *dbname);
extern char *ft_database_list_text(void);
extern int	ft_request_timeout_eff_ms(void);
extern void ft_report_timeouts(void);

#endif							/* FT_GUC_H */
