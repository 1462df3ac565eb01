/*-------------------------------------------------------------------------
 *
 * guc.c
 *	  Definition of the ft_orders.* configuration parameters and their
 *	  check hooks.
 *
 * Names, contexts and defaults are those of SPEC section 4.  Every time
 * setting carries a unit so that '30s', '2min' or '500ms' all work.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "access/parallel.h"
#include "utils/guc.h"

#include "guc.h"

char	   *ft_database = NULL;
int			ft_workers = 2;
char	   *ft_gateway_url = NULL;
int			ft_gateway_provider = FT_PROVIDER_GENERIC;
char	   *ft_gateway_token = NULL;
uint64		ft_gateway_token_generation = 0;
int			ft_request_timeout_ms = 10000;
int			ft_connect_timeout_ms = 2000;
int			ft_max_in_flight = 64;
int			ft_batch_size = 100;
int			ft_max_attempts = 10;
int			ft_backoff_base_ms = 1000;
int			ft_backoff_max_ms = 600000;
int			ft_lease_timeout_ms = 60000;
int			ft_circuit_failure_threshold = 5;
int			ft_circuit_open_time_ms = 30000;
int			ft_idempotency_ttl_s = 86400;
bool		ft_tls_verify = true;
char	   *ft_ca_file = NULL;
int			ft_history_retention_s = 7 * 86400;

static const struct config_enum_entry ft_provider_options[] = {
	{"generic", FT_PROVIDER_GENERIC, false},
	{"stripe", FT_PROVIDER_STRIPE, false},
	{"stripe_charges", FT_PROVIDER_STRIPE_CHARGES, false},
	{NULL, 0, false}
};

/*
 * Accept an empty URL (workers stay idle) or an absolute http(s) URL.
 * libcurl is told the same protocol list, so this is a first line of
 * defence and the place where an operator gets a clear message.
 */
static bool
ft_check_gateway_url(char **newval, void **extra, GucSource source)
{
	const char *url = *newval;
	const char *rest;

	if (url == NULL || url[0] == '\0')
		return true;

	if (pg_strncasecmp(url, "http://", 7) == 0)
		rest = url + 7;
	else if (pg_strncasecmp(url, "https://", 8) == 0)
		rest = url + 8;
	else
	{
		GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
		GUC_check_errmsg("invalid value for parameter \"ft_orders.gateway_url\"");
		GUC_check_errdetail("Only http:// and https:// URLs are accepted.");
		return false;
	}

	/* "http://", "http:///x", "http://:8080", "http://?q": no host */
	if (*rest == '\0' || strchr("/:?#@", *rest) != NULL)
	{
		GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
		GUC_check_errmsg("invalid value for parameter \"ft_orders.gateway_url\"");
		GUC_check_errdetail("The URL has no host name.");
		return false;
	}

	for (const char *p = url; *p; p++)
	{
		if ((unsigned char) *p <= 0x20 || (unsigned char) *p >= 0x7f)
		{
			GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
			GUC_check_errmsg("invalid value for parameter \"ft_orders.gateway_url\"");
			GUC_check_errdetail("The URL contains a space, a control character or a non-ASCII byte.");
			return false;
		}
	}
	return true;
}

/*
 * A claimed event whose lease ran out is handed to another worker, so the
 * lease must outlive the longest request.  Only this hook compares the two:
 * ft_orders.request_timeout is defined first, so at start-up it already
 * holds its configured value when this runs.
 */
static bool
ft_check_lease_timeout(int *newval, void **extra, GucSource source)
{
	/*
	 * A parallel worker restores the leader's settings in an arbitrary
	 * order, possibly this one before ft_orders.request_timeout: the pair
	 * was already checked in the leader, and refusing here would make
	 * every parallel query fail.
	 */
	if (InitializingParallelWorker)
		return true;
	if (*newval <= ft_request_timeout_ms)
	{
		GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
		GUC_check_errmsg("\"ft_orders.lease_timeout\" must be greater than \"ft_orders.request_timeout\"");
		GUC_check_errdetail("ft_orders.lease_timeout is %d ms, ft_orders.request_timeout is %d ms.",
							*newval, ft_request_timeout_ms);
		return false;
	}
	return true;
}

static bool
ft_check_database(char **newval, void **extra, GucSource source)
{
	if (*newval == NULL || (*newval)[0] == '\0')
	{
		GUC_check_errdetail("ft_orders.database must name a database.");
		return false;
	}
	return true;
}

/*
 * Never echo the secret: the hook only checks that it is printable.  A
 * value "file:/absolute/path" names a file holding the token (read by the
 * payment workers, see gateway_http.c): the postmaster logs every changed
 * setting on reload, value included, so only the path should ever be in
 * postgresql.conf.
 */
static bool
ft_check_gateway_token(char **newval, void **extra, GucSource source)
{
	if (*newval == NULL)
		return true;
	for (const char *p = *newval; *p; p++)
	{
		if ((unsigned char) *p < 0x21 || (unsigned char) *p > 0x7e)
		{
			GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
			GUC_check_errmsg("invalid value for parameter \"ft_orders.gateway_token\"");
			GUC_check_errdetail("The token may only contain printable ASCII characters without spaces.");
			return false;
		}
	}
	if (strncmp(*newval, FT_TOKEN_FILE_PREFIX, strlen(FT_TOKEN_FILE_PREFIX)) == 0 &&
		(*newval)[strlen(FT_TOKEN_FILE_PREFIX)] != '/')
	{
		GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
		GUC_check_errmsg("invalid value for parameter \"ft_orders.gateway_token\"");
		GUC_check_errdetail("A token file must be given as \"file:\" followed by an absolute path.");
		return false;
	}
	return true;
}

/*
 * Every (re)load of the setting, changed or not, bumps a generation
 * counter: a worker re-reads a token file when it sees a new generation,
 * so rotating the file's content and sending SIGHUP is enough.  No I/O
 * here: assign hooks must not fail.
 */
static void
ft_assign_gateway_token(const char *newval, void *extra)
{
	ft_gateway_token_generation++;
}

/*
 * Define every ft_orders.* parameter and reserve the prefix.  Called from
 * _PG_init in every process that loads the library.
 */
void
ft_define_gucs(void)
{
	DefineCustomStringVariable("ft_orders.database",
							   "Database whose outbox the payment workers drain.",
							   "CREATE EXTENSION ft_orders is refused in any other database.",
							   &ft_database,
							   "postgres",
							   PGC_POSTMASTER,
							   0,
							   ft_check_database, NULL, NULL);

	DefineCustomIntVariable("ft_orders.workers",
							"Number of payment workers (0 disables them).",
							NULL,
							&ft_workers,
							2, 0, FT_MAX_WORKERS,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);

	DefineCustomStringVariable("ft_orders.gateway_url",
							   "Base URL of the payment gateway (http or https).",
							   "Empty leaves the workers idle.",
							   &ft_gateway_url,
							   "",
							   PGC_SIGHUP,
							   0,
							   ft_check_gateway_url, NULL, NULL);

	DefineCustomEnumVariable("ft_orders.gateway_provider",
							 "Wire protocol spoken to the gateway.",
							 NULL,
							 &ft_gateway_provider,
							 FT_PROVIDER_GENERIC,
							 ft_provider_options,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("ft_orders.gateway_token",
							   "Bearer token sent to the gateway.",
							   "Only superusers can see this setting.  \"file:/path\" reads the token from that file, so that only the path is ever logged.",
							   &ft_gateway_token,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							   ft_check_gateway_token, ft_assign_gateway_token, NULL);

	DefineCustomIntVariable("ft_orders.request_timeout",
							"Timeout of one whole gateway request.",
							NULL,
							&ft_request_timeout_ms,
							10000, 100, 600000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("ft_orders.connect_timeout",
							"Timeout for connecting to the gateway.",
							NULL,
							&ft_connect_timeout_ms,
							2000, 10, 600000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("ft_orders.max_in_flight",
							"Concurrent gateway requests per payment worker.",
							NULL,
							&ft_max_in_flight,
							64, 1, 1024,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("ft_orders.batch_size",
							"Outbox events claimed per round.",
							NULL,
							&ft_batch_size,
							100, 1, 10000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("ft_orders.max_attempts",
							"Attempts before an event goes to the dead-letter queue.",
							NULL,
							&ft_max_attempts,
							10, 1, 1000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("ft_orders.backoff_base",
							"First retry delay; doubles with every attempt (full jitter).",
							NULL,
							&ft_backoff_base_ms,
							1000, 1, 86400000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("ft_orders.backoff_max",
							"Upper bound of a retry delay, Retry-After included.",
							NULL,
							&ft_backoff_max_ms,
							600000, 1, 86400000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("ft_orders.lease_timeout",
							"How long a claimed event stays with its worker before it is due again.",
							"Must be greater than ft_orders.request_timeout.",
							&ft_lease_timeout_ms,
							60000, 1000, 86400000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							ft_check_lease_timeout, NULL, NULL);

	DefineCustomIntVariable("ft_orders.circuit_failure_threshold",
							"Consecutive transient failures that open the circuit.",
							NULL,
							&ft_circuit_failure_threshold,
							5, 1, 100000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("ft_orders.circuit_open_time",
							"How long the circuit stays open before one probe request.",
							NULL,
							&ft_circuit_open_time_ms,
							30000, 10, 86400000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("ft_orders.idempotency_ttl",
							"Age after which idempotency keys are purged.",
							NULL,
							&ft_idempotency_ttl_s,
							86400, 1, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("ft_orders.tls_verify",
							 "Verify the gateway's TLS certificate and host name.",
							 NULL,
							 &ft_tls_verify,
							 true,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("ft_orders.ca_file",
							   "CA bundle used to verify an https gateway (empty: system store).",
							   NULL,
							   &ft_ca_file,
							   "",
							   PGC_SIGHUP,
							   0,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("ft_orders.history_retention",
							"Age after which payment_attempts and order_events rows are purged.",
							NULL,
							&ft_history_retention_s,
							7 * 86400, 60, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("ft_orders");
}
