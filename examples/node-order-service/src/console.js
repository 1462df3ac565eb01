'use strict';
// console.js: the operator console's JSON API (GET/POST /console/api/...),
// every query on the signed-in operator's own connections (operators.js).
//
// Figures computed from tables (queue, orders, dead letters, search, an
// order's history) are read on the read side (a replica) and fall back to
// the primary; the workers', the gateway's and metrics() live in the
// primary's shared memory and are read there.  While the primary cannot be
// reached the console says so and stays read-only: actions answer 503.

const { query, isRetryable } = require('./db');
const { BadRequest } = require('./orders');

// errors an operator can act on: the database's own words are shown
const ACTION_ERRORS = {
  42501: 403,   // insufficient_privilege: the operator's role lacks the grant
  22023: 400,
  22004: 400,
  '22P02': 400,
  55000: 409,   // object_not_in_prerequisite_state (e.g. refund of a pending order)
  FT409: 409,   // a refund key reused with another amount
};

class ConsoleError extends Error {
  constructor(status, body) {
    super(body.message);
    this.status = status;
    this.body = body;
  }
}

// asConsoleError(err, primary): an error the console shows, or err itself
function asConsoleError(err, primary) {
  if (err instanceof ConsoleError || err instanceof BadRequest) return err;
  if (err.code && ACTION_ERRORS[err.code]) {
    return new ConsoleError(ACTION_ERRORS[err.code], {
      error: err.code === '42501' ? 'permission_denied' : 'refused', sqlstate: err.code, message: err.message,
    });
  }
  if (isRetryable(err)) {
    return new ConsoleError(503, {
      error: 'unavailable', read_only: primary,
      message: primary ? 'the primary is not reachable (a failover?): the console is read-only for now'
        : 'no database server answers',
    });
  }
  return err;
}

// parseMetrics(text): the Prometheus text of metrics() as
// {name: [{labels, value}]}
function parseMetrics(text) {
  const out = {};
  for (const line of String(text).split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    if (m[3]) {
      for (const kv of m[3].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[kv[1]] = kv[2];
    }
    (out[m[1]] = out[m[1]] || []).push({ labels, value: Number(m[4]) });
  }
  return out;
}

// the figures the charts draw, from one metrics() sample
function chartFigures(metrics) {
  const sum = (name, pred = () => true) => (metrics[name] || []).filter((s) => pred(s.labels)).reduce((a, s) => a + s.value, 0);
  return {
    paid_total: sum('ft_orders_worker_outcomes_total', (l) => l.outcome === 'paid'),
    outcomes_total: sum('ft_orders_worker_outcomes_total'),
    requests_total: sum('ft_orders_gateway_requests_total'),
    errors_total: sum('ft_orders_gateway_errors_total'),
    duration_sum_s: sum('ft_orders_gateway_request_duration_seconds_sum'),
    duration_count: sum('ft_orders_gateway_request_duration_seconds_count'),
    backlog: sum('ft_orders_outbox_events'),
    dead_letters: sum('ft_orders_dead_letters'),
    circuit_state: sum('ft_orders_gateway_circuit_state'),
  };
}

const ORDER_COLUMNS = `order_id, idempotency_key, customer_id, amount_minor, currency, items, payment_method,
  payment_key, status::text AS status, attempts, payment_id, last_error, next_action, cancel_requested_at,
  cancel_reason, refunded_minor, created_at, updated_at`;

function makeConsole(cfg, log) {
  // read(op, sql, params, fresh): {rows, source}; the replica unless fresh
  async function read(op, sql, params = [], fresh = false) {
    const sides = fresh ? [['primary', op.write], ['replica', op.read]] : [['replica', op.read], ['primary', op.write]];
    let lastErr;
    for (const [source, pool] of sides) {
      try {
        const res = await query(pool, sql, params);
        return { rows: res.rows, source };
      } catch (err) {
        if (!isRetryable(err)) throw asConsoleError(err, false);
        lastErr = err;
      }
    }
    throw asConsoleError(lastErr, false);
  }

  // one section of the overview: its value, or {error} for this part only
  async function section(fn) {
    try {
      return await fn();
    } catch (err) {
      const e = asConsoleError(err, true);
      return { error: e.body ? e.body.message : e.message, sqlstate: err.code || null };
    }
  }

  async function overview(op) {
    const tables = await read(op, `SELECT (SELECT to_jsonb(q) FROM ft_orders.queue_status q) AS queue,
        (SELECT coalesce(jsonb_agg(to_jsonb(s) ORDER BY s.status::text), '[]') FROM ft_orders.order_summary s) AS summary,
        pg_is_in_recovery() AS standby,
        extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 AS replay_age_s`);
    const t = tables.rows[0];
    // the primary: is it there, and its shared-memory figures
    let primaryOk = false;
    let primaryError = null;
    try {
      const r = await query(op.write, 'SELECT pg_is_in_recovery() AS standby', []);
      primaryOk = !r.rows[0].standby;
      if (!primaryOk) primaryError = 'the write side reached a standby';
    } catch (err) {
      if (!isRetryable(err)) throw asConsoleError(err, true);
      primaryError = err.message;
    }
    const onPrimary = async (sql) => {
      if (!primaryOk) return { error: 'the primary is not reachable' };
      return section(async () => (await query(op.write, sql, [])).rows[0].v);
    };
    const [gateway, workers, metricsText] = await Promise.all([
      onPrimary('SELECT to_jsonb(g) AS v FROM ft_orders.gateway_status g'),
      onPrimary(`SELECT coalesce(jsonb_agg(to_jsonb(w) ORDER BY w.worker_id), '[]') AS v FROM ft_orders.worker_status w`),
      onPrimary('SELECT ft_orders.metrics() AS v'),
    ]);
    return {
      at: new Date().toISOString(),
      user: op.user,
      source: t.standby ? 'replica' : 'primary',
      replay_age_s: t.standby ? t.replay_age_s : null,
      read_only: !primaryOk,
      primary_error: primaryError,
      queue: t.queue,
      summary: t.summary,
      gateway,
      workers,
      metrics: typeof metricsText === 'string' ? chartFigures(parseMetrics(metricsText)) : metricsText,
    };
  }

  async function deadLetters(op) {
    const r = await read(op, `SELECT d.event_id, d.order_id, d.refund_id, d.attempts, d.last_error, d.failed_at,
        o.status::text AS status, o.customer_id, o.amount_minor, o.currency
        FROM ft_orders.dead_letters d LEFT JOIN ft_orders.orders o USING (order_id)
       ORDER BY d.failed_at DESC, d.event_id DESC LIMIT 100`);
    return { source: r.source, dead_letters: r.rows };
  }

  async function search(op, q) {
    if (typeof q !== 'string' || q.trim() === '' || q.length > 255) throw new BadRequest('search for an order id, an idempotency key or a customer id (1 to 255 characters)');
    q = q.trim();
    const id = /^[1-9]\d{0,17}$/.test(q) ? q : null;
    const r = await read(op, `SELECT order_id, idempotency_key, customer_id, amount_minor, currency, status::text AS status,
        attempts, created_at, updated_at FROM ft_orders.orders
       WHERE order_id = $1::bigint OR idempotency_key = $2 OR customer_id = $2
       ORDER BY order_id DESC LIMIT 50`, [id, q]);
    return { source: r.source, orders: r.rows };
  }

  async function order(op, id, fresh) {
    const r = await read(op, `SELECT
        (SELECT to_jsonb(o) FROM (SELECT ${ORDER_COLUMNS} FROM ft_orders.orders WHERE order_id = $1) o) AS "order",
        (SELECT coalesce(jsonb_agg(to_jsonb(e) ORDER BY e.created_at, e.id), '[]')
           FROM (SELECT id, status::text AS status, attempts, detail, created_at FROM ft_orders.order_events WHERE order_id = $1) e) AS events,
        (SELECT coalesce(jsonb_agg(to_jsonb(a) ORDER BY a.started_at), '[]')
           FROM (SELECT attempt, request, refund_id, http_status, outcome, error, round(latency_ms::numeric, 1) AS latency_ms, started_at
                   FROM ft_orders.payment_attempts WHERE order_id = $1) a) AS attempts,
        (SELECT coalesce(jsonb_agg(to_jsonb(f) ORDER BY f.refund_id), '[]')
           FROM (SELECT refund_id, amount_minor, currency, idempotency_key, status, gateway_refund_id, reason, last_error, created_at, updated_at
                   FROM ft_orders.refunds WHERE order_id = $1) f) AS refunds,
        (SELECT coalesce(jsonb_agg(to_jsonb(d) ORDER BY d.failed_at), '[]')
           FROM (SELECT event_id, refund_id, attempts, last_error, failed_at FROM ft_orders.dead_letters WHERE order_id = $1) d) AS dead_letters,
        (SELECT coalesce(jsonb_agg(to_jsonb(g) ORDER BY g.received_at), '[]')
           FROM (SELECT provider, event_id, type, applied, detail, received_at FROM ft_orders.gateway_events WHERE order_id = $1) g) AS webhooks`,
    [id], fresh);
    const row = r.rows[0];
    if (!row.order) throw new ConsoleError(404, { error: 'not_found', message: `no order ${id}` });
    return Object.assign({ source: r.source }, row);
  }

  // actions: on the primary, as the operator; logged with who did it
  async function act(op, name, sql, params) {
    try {
      const res = await query(op.write, sql, params);
      log.info('console_action', { user: op.user, action: name, args: params.slice(0, 2) });
      return res.rows[0];
    } catch (err) {
      log.warn('console_action_refused', { user: op.user, action: name, code: err.code || null, error: err.message });
      throw asConsoleError(err, true);
    }
  }

  const requeue = (op, eventId) => act(op, 'requeue', 'SELECT ft_orders.retry_dead_letter($1) AS requeued', [eventId]);
  const cancel = (op, id, reason) => act(op, 'cancel', 'SELECT ft_orders.cancel_order($1, $2)::text AS status', [id, reason]);
  const refund = (op, id, amount, key) => act(op, 'refund', 'SELECT ft_orders.refund_order($1, $2, $3) AS refund_id', [id, amount, key]);

  return { overview, deadLetters, search, order, requeue, cancel, refund };
}

module.exports = { makeConsole, parseMetrics, chartFigures, ConsoleError };
