/*-------------------------------------------------------------------------
 *
 * metrics.c
 *	  ft_orders.metrics(): every monitoring figure as one text in the
 *	  Prometheus text exposition format, version 0.0.4.
 *
 * Two sources:
 *	- shared memory: the payment workers' slots and the gateway statistics,
 *	  copied under the lock in shared mode and formatted afterwards, as
 *	  status_views.c does;
 *	- the tables, read through SPI in read-only mode (so a scrape also
 *	  works on a hot standby): outbox events by state, orders by status,
 *	  dead letters, webhook events applied and ignored.
 *
 * Nothing secret is exposed: neither the gateway URL nor its token, nor
 * any order's data, only counts.  The function is SECURITY DEFINER in the
 * install script because ft_orders_app may call it but cannot read the
 * tables.
 *
 * Format rules kept here: one "# HELP" and one "# TYPE" line per family,
 * all samples of a family together, counters named *_total, label values
 * escaped (backslash, double quote, newline), a histogram as cumulative
 * _bucket{le} series ending in le="+Inf", then _sum and _count.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"

#include "schema_version.h"
#include "shmem.h"

PG_FUNCTION_INFO_V1(ft_orders_metrics);

#define FT_METRIC_PREFIX	"ft_orders_"

/* outbox events by state, dead letters, the oldest event's age */
#define FT_METRICS_QUEUE_SQL \
"SELECT count(*) FILTER (WHERE o.next_attempt_at <= now()" \
"                          AND (o.lease_until IS NULL OR o.lease_until <= now()))," \
"       count(*) FILTER (WHERE o.lease_until > now())," \
"       count(*) FILTER (WHERE o.next_attempt_at > now()" \
"                          AND (o.lease_until IS NULL OR o.lease_until <= now()))," \
"       COALESCE(extract(epoch FROM now() - min(o.created_at))::float8, 0)," \
"       (SELECT count(*) FROM ft_orders.dead_letters)" \
"  FROM ft_orders.outbox o"

/* orders by status, every status of the enum even when it has no order */
#define FT_METRICS_ORDERS_SQL \
"SELECT s.status::text, count(o.order_id)" \
"  FROM unnest(enum_range(NULL::ft_orders.order_status)) AS s(status)" \
"  LEFT JOIN ft_orders.orders o ON o.status = s.status" \
" GROUP BY s.status ORDER BY s.status"

/* webhook events recorded (schema 1.3), applied or not */
#define FT_METRICS_WEBHOOKS_SQL \
"SELECT count(*) FILTER (WHERE applied), count(*) FILTER (WHERE NOT applied)" \
"  FROM ft_orders.gateway_events"

/* refunds by status (schema 1.3 on), every status even when it has none */
#define FT_METRICS_REFUNDS_SQL \
"SELECT s.status, count(r.refund_id)" \
"  FROM unnest(ARRAY['pending', 'succeeded', 'failed']) WITH ORDINALITY AS s(status, n)" \
"  LEFT JOIN ft_orders.refunds r ON r.status = s.status" \
" GROUP BY s.status, s.n ORDER BY s.n"

/*
 * Append a label value with the escapes of the exposition format.
 */
static void
ft_append_label_value(StringInfo buf, const char *value)
{
	appendStringInfoChar(buf, '"');
	for (const char *p = value; *p; p++)
	{
		switch (*p)
		{
			case '\\':
				appendStringInfoString(buf, "\\\\");
				break;
			case '"':
				appendStringInfoString(buf, "\\\"");
				break;
			case '\n':
				appendStringInfoString(buf, "\\n");
				break;
			default:
				appendStringInfoChar(buf, *p);
				break;
		}
	}
	appendStringInfoChar(buf, '"');
}

/*
 * "# HELP" and "# TYPE" of a family.  Help texts are constants of this
 * file and hold neither backslashes nor newlines, so need no escaping.
 */
static void
ft_family(StringInfo buf, const char *name, const char *type, const char *help)
{
	appendStringInfo(buf, "# HELP " FT_METRIC_PREFIX "%s %s\n", name, help);
	appendStringInfo(buf, "# TYPE " FT_METRIC_PREFIX "%s %s\n", name, type);
}

/*
 * One sample line: name, up to two labels (a NULL label name ends the
 * list) and the value, already formatted.
 */
static void
ft_sample(StringInfo buf, const char *name,
		  const char *label1, const char *value1,
		  const char *label2, const char *value2,
		  const char *value)
{
	appendStringInfo(buf, FT_METRIC_PREFIX "%s", name);
	if (label1 != NULL)
	{
		appendStringInfo(buf, "{%s=", label1);
		ft_append_label_value(buf, value1);
		if (label2 != NULL)
		{
			appendStringInfo(buf, ",%s=", label2);
			ft_append_label_value(buf, value2);
		}
		appendStringInfoChar(buf, '}');
	}
	appendStringInfo(buf, " %s\n", value);
}

/* a family of one sample without labels */
static void
ft_scalar(StringInfo buf, const char *name, const char *type,
		  const char *help, const char *value)
{
	ft_family(buf, name, type, help);
	ft_sample(buf, name, NULL, NULL, NULL, NULL, value);
}

static char *
ft_fmt_u64(uint64 v)
{
	return psprintf(UINT64_FORMAT, v);
}

static char *
ft_fmt_i64(int64 v)
{
	return psprintf(INT64_FORMAT, v);
}

/* a float as the format spells it: NaN, +Inf, -Inf or a decimal number */
static char *
ft_fmt_double(double v)
{
	if (isnan(v))
		return pstrdup("NaN");
	if (isinf(v))
		return pstrdup(v > 0 ? "+Inf" : "-Inf");
	return psprintf("%.15g", v);
}

/* a timestamptz as seconds since the Unix epoch */
static double
ft_unix_seconds(TimestampTz ts)
{
	return (double) ts / USECS_PER_SEC +
		(double) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY;
}

/*
 * The payment workers' families, from a copy of their slots.
 */
static void
ft_metrics_workers(StringInfo buf, const FtWorkerSlot *slots)
{
	static const char *const outcomes[] = {
		"paid", "declined", "retried", "failed"
	};
	static const FtWorkerState states[] = {
		FT_WORKER_STARTING, FT_WORKER_IDLE, FT_WORKER_WORKING,
		FT_WORKER_BACKOFF, FT_WORKER_CIRCUIT_OPEN, FT_WORKER_STANDBY,
		FT_WORKER_STOPPED
	};
	char		ids[FT_MAX_WORKERS][12];

	for (int i = 0; i < FT_MAX_WORKERS; i++)
		snprintf(ids[i], sizeof(ids[i]), "%d", slots[i].worker_id);

	ft_family(buf, "worker_processed_total", "counter",
			  "Requests whose outcome the payment worker recorded, of any kind: every attempt (retries and look-ups included), not orders.");
	for (int i = 0; i < FT_MAX_WORKERS; i++)
		if (slots[i].in_use)
			ft_sample(buf, "worker_processed_total", "worker", ids[i], NULL, NULL,
					  ft_fmt_u64(slots[i].processed));

	ft_family(buf, "worker_outcomes_total", "counter",
			  "Gateway outcomes recorded by the payment worker, by outcome: paid (worker_status.succeeded), declined, retried (transient failure, rescheduled), failed (dead letter).");
	for (int i = 0; i < FT_MAX_WORKERS; i++)
	{
		/* in the order of outcomes[] */
		uint64		counts[] = {
			slots[i].succeeded, slots[i].declined, slots[i].retried, slots[i].failed
		};

		StaticAssertStmt(lengthof(counts) == lengthof(outcomes),
						 "one count per outcome label");
		if (!slots[i].in_use)
			continue;
		for (int j = 0; j < lengthof(outcomes); j++)
			ft_sample(buf, "worker_outcomes_total", "worker", ids[i],
					  "outcome", outcomes[j], ft_fmt_u64(counts[j]));
	}

	ft_family(buf, "worker_state", "gauge",
			  "1 for the payment worker's current state, 0 for the others.");
	for (int i = 0; i < FT_MAX_WORKERS; i++)
	{
		if (!slots[i].in_use)
			continue;
		for (int j = 0; j < lengthof(states); j++)
			ft_sample(buf, "worker_state", "worker", ids[i],
					  "state", ft_worker_state_name(states[j]),
					  slots[i].state == states[j] ? "1" : "0");
	}

	ft_family(buf, "worker_in_flight", "gauge",
			  "HTTP requests the payment worker has under way.");
	for (int i = 0; i < FT_MAX_WORKERS; i++)
		if (slots[i].in_use)
			ft_sample(buf, "worker_in_flight", "worker", ids[i], NULL, NULL,
					  ft_fmt_i64(slots[i].in_flight));

	ft_family(buf, "worker_last_activity_timestamp_seconds", "gauge",
			  "Unix time of the payment worker's last recorded outcome or error.");
	for (int i = 0; i < FT_MAX_WORKERS; i++)
		if (slots[i].in_use && slots[i].last_activity != 0)
			ft_sample(buf, "worker_last_activity_timestamp_seconds", "worker", ids[i],
					  NULL, NULL,
					  ft_fmt_double(ft_unix_seconds(slots[i].last_activity)));
}

/*
 * The gateway's families, from a copy of its statistics.
 */
static void
ft_metrics_gateway(StringInfo buf, const FtGatewayStats *gw,
				   const FtGatewayLimitsView *limits)
{
	uint64		cumulative = 0;

	/* the families of one sample without labels */
	const struct
	{
		const char *name;
		const char *type;
		const char *help;
		const char *value;
	}			scalars[] = {
		{"gateway_requests_total", "counter", "HTTP requests to the payment gateway that completed (with a reply or an error).", ft_fmt_u64(gw->requests)},
		{"gateway_errors_total", "counter", "Gateway requests that ended in a transient failure (timeout, connection error, 401/403, 409, 429, 5xx, bad body).", ft_fmt_u64(gw->errors)},
		{"gateway_circuit_state", "gauge", "Circuit breaker in front of the gateway: 0 closed, 1 open (nothing is sent), 2 half-open (a few probes).", gw->circuit == FT_CIRCUIT_OPEN ? "1" : gw->circuit == FT_CIRCUIT_HALF_OPEN ? "2" : "0"},
		{"gateway_consecutive_failures", "gauge", "Transient gateway failures in a row.", ft_fmt_i64(gw->consecutive_failures)},
		{"gateway_failure_rate", "gauge", "Share of the gateway requests of the last 10 seconds that failed transiently (0 when there were none).", ft_fmt_double(limits->failure_rate < 0 ? 0 : limits->failure_rate)},
		{"gateway_rate_limit", "gauge", "ft_orders.rate_limit: requests per second to the gateway, all workers together (0: no limit).", ft_fmt_double(limits->rate_limit)},
		{"gateway_concurrency_limit", "gauge", "Requests each payment worker may have under way now (adaptive, 1 .. ft_orders.max_in_flight).", ft_fmt_i64(limits->concurrency_limit)},
		{"gateway_throttled_total", "counter", "Times a payment worker held its requests back for the gateway's pause (Retry-After) or ft_orders.rate_limit.", ft_fmt_u64(limits->throttled)},
		{"gateway_paused_until_timestamp_seconds", "gauge", "Unix time until which no request is sent because the gateway asked for a pause (Retry-After); 0 when there is no pause.", limits->paused_until == 0 ? "0" : ft_fmt_double(ft_unix_seconds(limits->paused_until))},
	};

	for (int i = 0; i < lengthof(scalars); i++)
		ft_scalar(buf, scalars[i].name, scalars[i].type, scalars[i].help,
				  scalars[i].value);

	ft_family(buf, "gateway_request_duration_seconds", "histogram",
			  "Duration of the completed gateway requests.");
	for (int i = 0; i <= FT_LATENCY_BUCKETS; i++)
	{
		char	   *le;

		cumulative += gw->latency_buckets[i];
		le = (i < FT_LATENCY_BUCKETS)
			? psprintf("%g", ft_latency_bucket_ms[i] / 1000.0)
			: "+Inf";
		ft_sample(buf, "gateway_request_duration_seconds_bucket", "le", le,
				  NULL, NULL, ft_fmt_u64(cumulative));
	}
	ft_sample(buf, "gateway_request_duration_seconds_sum", NULL, NULL, NULL, NULL,
			  ft_fmt_double(gw->latency_sum_ms / 1000.0));
	ft_sample(buf, "gateway_request_duration_seconds_count", NULL, NULL, NULL, NULL,
			  ft_fmt_u64(cumulative));
}

/* column col (1-based) of the first row of the last SPI result as int64 */
static int64
ft_spi_int64(int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
								  col, &isnull);

	return isnull ? 0 : DatumGetInt64(d);
}

/*
 * A gauge family with one sample per row of sql, which returns (status
 * text, count bigint): the orders or refunds by status.  Caller is
 * connected to SPI.
 */
static void
ft_metrics_counts(StringInfo buf, const char *sql, const char *family,
				  const char *help)
{
	int			rc = SPI_execute(sql, true, 0);

	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not count the %s: %s", family,
			 SPI_result_code_string(rc));
	ft_family(buf, family, "gauge", help);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		char	   *status = SPI_getvalue(tuple, SPI_tuptable->tupdesc, 1);
		bool		isnull;
		Datum		n = SPI_getbinval(tuple, SPI_tuptable->tupdesc, 2, &isnull);

		if (status == NULL || isnull)
			elog(ERROR, "unexpected NULL among the counts of %s", family);
		ft_sample(buf, family, "status", status, NULL, NULL,
				  ft_fmt_i64(DatumGetInt64(n)));
	}
}

/*
 * The queue and order families, read from the tables.  The caller's
 * transaction gives one snapshot to both queries.
 */
static void
ft_metrics_tables(StringInfo buf)
{
	int			rc;
	int64		due,
				leased,
				delayed,
				dead,
				applied = 0,
				ignored = 0;
	double		oldest_age;
	bool		isnull;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	rc = SPI_execute(FT_METRICS_QUEUE_SQL, true, 1);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not read the outbox: %s", SPI_result_code_string(rc));
	due = ft_spi_int64(1);
	leased = ft_spi_int64(2);
	delayed = ft_spi_int64(3);
	oldest_age = DatumGetFloat8(SPI_getbinval(SPI_tuptable->vals[0],
											  SPI_tuptable->tupdesc, 4, &isnull));
	if (isnull)
		oldest_age = 0;
	dead = ft_spi_int64(5);

	ft_family(buf, "outbox_events", "gauge",
			  "Payment work waiting in the outbox, by state: due (to be claimed now), leased (claimed by a worker, in flight), delayed (waiting for a retry).");
	ft_sample(buf, "outbox_events", "state", "due", NULL, NULL, ft_fmt_i64(due));
	ft_sample(buf, "outbox_events", "state", "leased", NULL, NULL, ft_fmt_i64(leased));
	ft_sample(buf, "outbox_events", "state", "delayed", NULL, NULL, ft_fmt_i64(delayed));

	ft_scalar(buf, "outbox_oldest_event_age_seconds", "gauge",
			  "Age of the oldest outbox event (0 when the outbox is empty).",
			  ft_fmt_double(oldest_age));

	ft_scalar(buf, "dead_letters", "gauge",
			  "Outbox events given up on (their orders failed); requeue with ft_orders.retry_dead_letter().",
			  ft_fmt_i64(dead));

	ft_metrics_counts(buf, FT_METRICS_ORDERS_SQL, "orders",
					  "Orders by status (every value of ft_orders.order_status).");

	/* 0 and 0 while the schema is older than 1.3 */
	if (ft_schema_version() >= FT_SCHEMA_1_3)
	{
		rc = SPI_execute(FT_METRICS_WEBHOOKS_SQL, true, 1);
		if (rc != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "could not count the webhook events: %s",
				 SPI_result_code_string(rc));
		applied = ft_spi_int64(1);
		ignored = ft_spi_int64(2);
	}
	ft_family(buf, "gateway_events_total", "counter",
			  "Webhook events recorded by ft_orders.apply_gateway_event, by result: applied (changed an order or refund) or ignored (a repeat, history such as a failure after a success, an unknown order or type); counted from ft_orders.gateway_events, purged after ft_orders.history_retention.");
	ft_sample(buf, "gateway_events_total", "result", "applied", NULL, NULL, ft_fmt_i64(applied));
	ft_sample(buf, "gateway_events_total", "result", "ignored", NULL, NULL, ft_fmt_i64(ignored));

	if (ft_schema_version() >= FT_SCHEMA_1_3)
		ft_metrics_counts(buf, FT_METRICS_REFUNDS_SQL, "refunds",
						  "Refunds by status: pending (to be sent or settled), succeeded, failed (refused by the gateway).");

	SPI_finish();
}

/*
 * ft_orders.metrics() RETURNS text
 */
Datum
ft_orders_metrics(PG_FUNCTION_ARGS)
{
	StringInfoData buf;
	FtWorkerSlot *slots = palloc(sizeof(FtWorkerSlot) * FT_MAX_WORKERS);
	FtGatewayStats *gw = palloc(sizeof(FtGatewayStats));
	FtGatewayLimitsView limits;

	initStringInfo(&buf);

	ft_shmem_snapshot(slots, gw);
	ft_gateway_limits_snapshot(&limits);

	ft_metrics_workers(&buf, slots);
	ft_metrics_gateway(&buf, gw, &limits);
	ft_metrics_tables(&buf);

	PG_RETURN_TEXT_P(cstring_to_text_with_len(buf.data, buf.len));
}
