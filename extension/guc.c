/*-------------------------------------------------------------------------
 *
 * guc.c
 *	  Definition of the ft_orders.* configuration parameters and their
 *	  check hooks.
 *
 * Names, contexts and defaults are those of docs/reference.md, "Settings".
 * Every time setting carries a unit so that '30s', '2min' or '500ms' all
 * work.
 *
 * Every check hook looks at its own value only.  A rule that ties two
 * settings together (lease_timeout > request_timeout) cannot live in a
 * check hook: a reload applies the lines of postgresql.conf one by one in
 * file order, and a parallel worker restores its leader's settings in
 * any order, so a hook would judge the new value of one setting against
 * the old value of the other and could refuse a valid new pair.  Such a
 * rule is enforced where the values are used (ft_request_timeout_eff_ms)
 * and reported once per reload (ft_report_timeouts).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <limits.h>

#include "access/xact.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/varlena.h"

#include "compat.h"
#include "guc.h"

char	   *ft_database = NULL;
const FtDatabaseList *ft_databases = NULL;
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
double		ft_circuit_failure_rate = 0.5;
double		ft_rate_limit = 0;
int			ft_rate_limit_burst = 0;
bool		ft_adaptive_concurrency = true;
int			ft_max_in_flight_ceiling = 0;
int			ft_idempotency_ttl_s = 86400;
bool		ft_tls_verify = true;
char	   *ft_ca_file = NULL;
int			ft_history_retention_s = 7 * 86400;
int			ft_audit_retention_s = 400 * 86400;
char	   *ft_stripe_api_version = NULL;
int			ft_gateway_key_ttl_s = 86400;
int			ft_action_timeout_s = 3600;
bool		ft_allow_insecure_http = false;
static double ft_notify_max_queue_usage = 0.5;

static const struct config_enum_entry ft_provider_options[] = {
	{"generic", FT_PROVIDER_GENERIC, false},
	{"stripe", FT_PROVIDER_STRIPE, false},
	{"stripe_charges", FT_PROVIDER_STRIPE_CHARGES, false},
	{NULL, 0, false}
};

/*
 * Whether the host of an URL's authority (host[:port], [v6][:port], len
 * bytes at host) is the loopback interface: "localhost", 127.0.0.0/8 or
 * [::1], written as such (no name resolution here).
 */
static bool
ft_host_is_loopback(const char *host, size_t len)
{
	char		buf[64];
	unsigned char addr[16];
	const char *end;

	if (len >= sizeof(buf))
		return false;
	if (host[0] == '[')
	{
		end = memchr(host, ']', len);
		if (end == NULL || (size_t) (end - host - 1) >= sizeof(buf))
			return false;
		memcpy(buf, host + 1, end - host - 1);
		buf[end - host - 1] = '\0';
		return inet_pton(AF_INET6, buf, addr) == 1 &&
			memcmp(addr, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\1", 16) == 0;
	}
	end = memchr(host, ':', len);
	if (end != NULL)
		len = end - host;
	memcpy(buf, host, len);
	buf[len] = '\0';
	if (pg_strcasecmp(buf, "localhost") == 0)
		return true;
	return inet_pton(AF_INET, buf, addr) == 1 && addr[0] == 127;
}

/*
 * Accept an empty URL (workers stay idle) or an absolute http(s) URL
 * without credentials: the token travels in the Authorization header only,
 * never in a URL that is logged and shown to pg_read_all_settings.  Plain
 * http:// would send the token in clear: only to the loopback interface,
 * unless ft_orders.allow_insecure_http is on (a postmaster setting, defined
 * before this one, so its value is settled whenever this hook runs).
 * libcurl is told the same protocol list, so this is a first line of
 * defence and the place where an operator gets a clear message.
 */
static bool
ft_check_gateway_url(char **newval, void **extra, GucSource source)
{
	const char *url = *newval;
	const char *rest;
	size_t		authority;
	bool		plain;

	if (url == NULL || url[0] == '\0')
		return true;

	plain = pg_strncasecmp(url, "http://", 7) == 0;
	if (plain)
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

	authority = strcspn(rest, "/?#");
	if (memchr(rest, '@', authority) != NULL)
	{
		GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
		GUC_check_errmsg("invalid value for parameter \"ft_orders.gateway_url\"");
		GUC_check_errdetail("The URL contains credentials (user:password@); the gateway token goes in ft_orders.gateway_token.");
		return false;
	}
	if (plain && !ft_allow_insecure_http && !ft_host_is_loopback(rest, authority))
	{
		GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
		GUC_check_errmsg("invalid value for parameter \"ft_orders.gateway_url\"");
		GUC_check_errdetail("A plain http:// URL would send the gateway token in clear; it is accepted only for localhost, 127.0.0.0/8 and [::1].");
		GUC_check_errhint("Use https://, or set ft_orders.allow_insecure_http = on and restart the server.");
		return false;
	}
	return true;
}

/*
 * ft_orders.database: a comma-separated list of database names, split as
 * PostgreSQL splits its own list settings (SplitGUCList: spaces around a
 * name are ignored, names are not downcased, double quotes protect a comma
 * or a space).  The parsed list goes to the assign hook as "extra".
 */
static bool
ft_check_database(char **newval, void **extra, GucSource source)
{
	char	   *raw;
	List	   *names;
	ListCell   *lc;
	FtDatabaseList parsed;
	FtDatabaseList *list = &parsed;
	bool		ok;

	if (*newval == NULL || (*newval)[0] == '\0')
	{
		GUC_check_errdetail("ft_orders.database must name at least one database.");
		return false;
	}
	raw = pstrdup(*newval);
	if (!SplitGUCList(raw, ',', &names))
	{
		GUC_check_errdetail("ft_orders.database must be a comma-separated list of database names, without empty names.");
		return false;
	}
	if (list_length(names) == 0 || list_length(names) > FT_MAX_DATABASES)
	{
		GUC_check_errdetail("ft_orders.database lists %d databases; it must list 1 to %d.",
							list_length(names), FT_MAX_DATABASES);
		return false;
	}

	list->n = 0;
	ok = true;
	foreach(lc, names)
	{
		const char *name = (const char *) lfirst(lc);

		if (name[0] == '\0')
		{
			GUC_check_errdetail("ft_orders.database lists an empty database name.");
			ok = false;
			break;
		}
		if (strlen(name) >= NAMEDATALEN)
		{
			GUC_check_errdetail("Database name \"%s\" is longer than %d bytes.",
								name, NAMEDATALEN - 1);
			ok = false;
			break;
		}
		for (int i = 0; i < list->n; i++)
		{
			if (strcmp(list->names[i], name) == 0)
			{
				GUC_check_errdetail("Database \"%s\" is listed twice.", name);
				ok = false;
				break;
			}
		}
		if (!ok)
			break;
		strlcpy(list->names[list->n++], name, NAMEDATALEN);
	}
	list_free(names);
	pfree(raw);
	if (!ok)
		return false;

	/* the GUC machinery frees "extra" (compat.h) */
	*extra = ft_guc_malloc(sizeof(FtDatabaseList));
	if (*extra == NULL)
	{
		GUC_check_errcode(ERRCODE_OUT_OF_MEMORY);
		GUC_check_errdetail("Out of memory.");
		return false;
	}
	memcpy(*extra, &parsed, sizeof(FtDatabaseList));
	return true;
}

static void
ft_assign_database(const char *newval, void *extra)
{
	ft_databases = (const FtDatabaseList *) extra;
}

/*
 * ft_orders.stripe_api_version: empty (the account's default) or a Stripe
 * API version such as 2024-06-20 or 2024-09-30.acacia, sent as the
 * Stripe-Version header: letters, digits, '-', '.' and '_' only, so that
 * it can never break the header.
 */
static bool
ft_check_stripe_api_version(char **newval, void **extra, GucSource source)
{
	const char *v = *newval;

	if (v == NULL || v[0] == '\0')
		return true;
	if (strlen(v) > FT_STRIPE_API_VERSION_MAX)
	{
		GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
		GUC_check_errdetail("A Stripe API version has at most %d characters.",
							FT_STRIPE_API_VERSION_MAX);
		return false;
	}
	for (const char *p = v; *p; p++)
	{
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
			  (*p >= 'A' && *p <= 'Z') || *p == '-' || *p == '.' || *p == '_'))
		{
			GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
			GUC_check_errdetail("A Stripe API version such as %s holds only letters, digits, '-', '.' and '_'.",
								FT_STRIPE_API_VERSION_DEFAULT);
			return false;
		}
	}
	return true;
}

/*
 * Position of dbname in ft_orders.database, or -1 when it is not listed.
 */
int
ft_database_index(const char *dbname)
{
	if (ft_databases == NULL || dbname == NULL)
		return -1;
	for (int i = 0; i < ft_databases->n; i++)
	{
		if (strcmp(ft_databases->names[i], dbname) == 0)
			return i;
	}
	return -1;
}

/*
 * The listed databases for a message: "a", "b" (palloc'd).
 */
char *
ft_database_list_text(void)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; ft_databases != NULL && i < ft_databases->n; i++)
		appendStringInfo(&buf, "%s\"%s\"", i > 0 ? ", " : "", ft_databases->names[i]);
	return buf.data;
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
 * What SHOW, current_setting() and pg_settings print for the token.
 * GUC_SUPERUSER_ONLY still lets members of pg_read_all_settings (and so
 * pg_monitor, the exporter's role) read a setting: only a superuser sees
 * the value, anyone else a mask ("file:" values, a path, stay readable so
 * that a monitoring role can tell which file is used).  Outside a
 * transaction no role can be checked: masked.
 */
static const char *
ft_show_gateway_token(void)
{
	const char *token = ft_gateway_token;

	if (token == NULL || token[0] == '\0')
		return "";
	if (strncmp(token, FT_TOKEN_FILE_PREFIX, strlen(FT_TOKEN_FILE_PREFIX)) == 0)
		return token;
	if (IsTransactionState() && superuser())
		return token;
	return "********";
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
 * The whole-request timeout the payment workers really use.
 *
 * docs/reference.md, "Settings": lease_timeout must exceed
 * request_timeout, or a lease could run out, and another worker claim the
 * event, while its request is still in flight.  When the configuration breaks that rule the lease
 * wins: it is the operator's bound on how long a claimed event may stay
 * with one worker (and how long a crashed worker's events wait), so the
 * request timeout is cut to lease_timeout minus a margin of one second
 * (half the lease for leases under two seconds), which covers the claim
 * commit before the request starts and the recording after it ends.
 * ft_report_timeouts() says so in the log.
 */
int
ft_request_timeout_eff_ms(void)
{
	if (ft_lease_timeout_ms > ft_request_timeout_ms)
		return ft_request_timeout_ms;
	return ft_lease_timeout_ms - Min(FT_LEASE_MARGIN_MS, ft_lease_timeout_ms / 2);
}

/*
 * WARNING when lease_timeout does not exceed request_timeout.  Called by
 * the launcher (one process per server) when it starts and after every
 * reload, so the warning appears once per reload that leaves the pair
 * invalid, with the values the workers actually use.
 */
void
ft_report_timeouts(void)
{
	if (ft_lease_timeout_ms > ft_request_timeout_ms)
		return;
	ereport(WARNING,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("\"ft_orders.lease_timeout\" (%d ms) must be greater than \"ft_orders.request_timeout\" (%d ms)",
					ft_lease_timeout_ms, ft_request_timeout_ms),
			 errdetail("The payment workers use a request timeout of %d ms, so that no lease runs out while its request is in flight.",
					   ft_request_timeout_eff_ms()),
			 errhint("Raise ft_orders.lease_timeout or lower ft_orders.request_timeout, then reload the configuration.")));
}

/*
 * Define every ft_orders.* parameter and reserve the prefix.  Called from
 * _PG_init in every process that loads the library.
 */
void
ft_define_gucs(void)
{
	DefineCustomStringVariable("ft_orders.database",
							   "Databases whose outboxes the payment workers drain (a comma-separated list).",
							   "CREATE EXTENSION ft_orders is refused in any other database.",
							   &ft_database,
							   "postgres",
							   PGC_POSTMASTER,
							   GUC_LIST_INPUT,
							   ft_check_database, ft_assign_database, NULL);

	DefineCustomIntVariable("ft_orders.workers",
							"Number of payment workers (0 disables them).",
							NULL,
							&ft_workers,
							2, 0, FT_MAX_WORKERS,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);

	/* before gateway_url: its check hook reads this */
	DefineCustomBoolVariable("ft_orders.allow_insecure_http",
							 "Accept a plain http:// ft_orders.gateway_url to a host other than the loopback interface.",
							 "The gateway token then travels in clear.",
							 &ft_allow_insecure_http,
							 false,
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
							   "Only superusers see its value (members of pg_read_all_settings see a mask).  \"file:/path\" reads the token from that file, so that only the path is ever logged.",
							   &ft_gateway_token,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							   ft_check_gateway_token, ft_assign_gateway_token,
							   ft_show_gateway_token);

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
							64, 1, FT_MAX_IN_FLIGHT,
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
							NULL, NULL, NULL);

	DefineCustomIntVariable("ft_orders.circuit_failure_threshold",
							"Least number of failed requests in a row that open the circuit.",
							"Requests sent after the gateway's last success; the circuit asks for more when the gateway's success share was low (docs/reference.md, \"Gateway limits\").",
							&ft_circuit_failure_threshold,
							5, 1, 100000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("ft_orders.circuit_open_time",
							"How long the circuit stays open before the half-open probes.",
							NULL,
							&ft_circuit_open_time_ms,
							30000, 10, 86400000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomRealVariable("ft_orders.circuit_failure_rate",
							 "No longer used: the circuit opens on a gateway that is down, whatever share of requests fails.",
							 "Accepted, with its old range, so that configuration files that set it still load.",
							 &ft_circuit_failure_rate,
							 0.5, 0.01, 1.0,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomRealVariable("ft_orders.rate_limit",
							 "Requests per second to the gateway, all payment workers together (0: no limit).",
							 NULL,
							 &ft_rate_limit,
							 0, 0, 100000,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("ft_orders.rate_limit_burst",
							"Requests that may leave at once under ft_orders.rate_limit (0: the rate, rounded up).",
							NULL,
							&ft_rate_limit_burst,
							0, 0, 1000000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("ft_orders.adaptive_concurrency",
							 "Let each worker's in-flight limit adapt between 1 and ft_orders.max_in_flight.",
							 "It halves on 429 replies, falls a little on 503s, timeouts and rising latency, and grows back while the gateway keeps up.",
							 &ft_adaptive_concurrency,
							 true,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("ft_orders.max_in_flight_ceiling",
							"How far adaptive concurrency may raise each worker's in-flight limit above ft_orders.max_in_flight for a slow but healthy gateway.",
							"0, or a value at or below ft_orders.max_in_flight: never above it.",
							&ft_max_in_flight_ceiling,
							0, 0, FT_MAX_IN_FLIGHT,
							PGC_SIGHUP,
							0,
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
							"Age after which gateway_events rows (webhook events) are purged.",
							"The payment audit trail, payment_attempts and order_events, is kept for ft_orders.audit_retention.",
							&ft_history_retention_s,
							7 * 86400, 60, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("ft_orders.audit_retention",
							"Age after which payment_attempts and order_events rows (the payment audit trail) are purged.",
							"Keep it longer than the window in which customers may dispute a payment.",
							&ft_audit_retention_s,
							400 * 86400, 60, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("ft_orders.gateway_key_ttl",
							"How long the gateway is trusted to remember an Idempotency-Key.",
							"Work first sent longer ago is looked up at the gateway before it is sent again.",
							&ft_gateway_key_ttl_s,
							86400, 1, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("ft_orders.action_timeout",
							"How long an action_required order waits for the customer before it is looked up.",
							NULL,
							&ft_action_timeout_s,
							3600, 1, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomRealVariable("ft_orders.notify_max_queue_usage",
							 "Notification queue usage (0.5 = 50 %) above which status changes are recorded without NOTIFY ft_orders_events.",
							 "A LISTEN session idle in a transaction fills the queue; a full queue would make every commit that notifies fail.  0 turns the notifications off.",
							 &ft_notify_max_queue_usage,
							 0.5, 0.0, 1.0,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("ft_orders.stripe_api_version",
							   "Stripe API version sent as the Stripe-Version header by the stripe providers.",
							   "The replies are parsed for this version; empty sends no header, so that replies follow the account's default version.",
							   &ft_stripe_api_version,
							   FT_STRIPE_API_VERSION_DEFAULT,
							   PGC_SIGHUP,
							   0,
							   ft_check_stripe_api_version, NULL, NULL);

	MarkGUCPrefixReserved("ft_orders");
}
