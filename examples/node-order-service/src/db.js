'use strict';
// db.js: the two connection pools (HAProxy write port -> leader, read port
// -> replicas), the classification of errors into "retry with the same
// idempotency key" and "answer now", and the retry loop (exponential
// backoff with full jitter, bounded in total time).

const pg = require('pg');

// bigint columns (order_id, amount_minor) as JSON numbers while they are
// exact, else as strings
function parseInt8(text) {
  const n = Number(text);
  return Number.isSafeInteger(n) ? n : text;
}
const types = {
  getTypeParser(oid, format) {
    if (oid === 20 && format !== 'binary') return parseInt8;
    return pg.types.getTypeParser(oid, format);
  },
};

// clientOptions(cfg, side, name, creds): connection settings for the write
// or read side, as the service's role unless creds ({user, password}) name
// another one (the webhook role, an operator of the console)
function clientOptions(cfg, side, name, creds) {
  return {
    host: cfg[side].host,
    port: cfg[side].port,
    database: cfg.database,
    user: creds ? creds.user : cfg.user,
    password: creds ? creds.password : cfg.password,
    connectionTimeoutMillis: cfg.connectTimeoutMs,
    query_timeout: cfg.queryTimeoutMs,
    keepAlive: true,
    application_name: name,
    types,
  };
}

// makePool(cfg, side, log, opts): opts.creds another role, opts.name the
// pool's name in logs and application_name, opts.max its size
function makePool(cfg, side, log, opts = {}) {
  const name = opts.name || side;
  const pool = new pg.Pool(Object.assign(clientOptions(cfg, side, `node-order-service-${name}`, opts.creds), {
    max: opts.max || cfg.poolSize,
    idleTimeoutMillis: 30000,
  }));
  // an idle client whose server went away (failover): the pool drops it;
  // without this handler the process would exit
  pool.on('error', (err) => {
    log.warn('pool_client_lost', { pool: name, code: err.code || null, error: err.message });
  });
  return pool;
}

// SQLSTATEs after which the same request may succeed on a retry: the
// connection is gone or the server is not (or no longer) the primary
const RETRYABLE_SQLSTATES = new Set([
  '57P01', // admin_shutdown: the node is stopping (switchover, Patroni restart)
  '57P02', // crash_shutdown: another backend crashed
  '57P03', // cannot_connect_now: starting up or shutting down
  '25006', // read_only_sql_transaction: HAProxy still routes to a demoted node
  '53300', // too_many_connections: clients piling up during the failover
  '40001', // serialization_failure
  '40P01', // deadlock_detected
]);
const RETRYABLE_ERRNOS = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN',
]);
// node-postgres reports a lost connection and its own timeouts without a code
const RETRYABLE_MESSAGES = /Connection terminated|connection timeout|timeout exceeded when trying to connect|Query read timeout|Client has encountered a connection error|not queryable/i;

function isRetryable(err) {
  if (!err) return false;
  const code = err.code;
  if (typeof code === 'string') {
    if (/^[0-9A-Z]{5}$/.test(code)) return code.startsWith('08') || RETRYABLE_SQLSTATES.has(code);
    if (RETRYABLE_ERRNOS.has(code)) return true;
  }
  return RETRYABLE_MESSAGES.test(String(err.message || ''));
}

class ServiceUnavailable extends Error {
  constructor(cause, attempts, elapsedMs) {
    super(`database unavailable after ${attempts} attempts in ${elapsedMs} ms: ${cause.message}`);
    this.cause = cause;
    this.attempts = attempts;
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// backoffMs(attempt): random(0, min(max, base * 2^(attempt-1))), full jitter
function backoffMs(cfg, attempt) {
  const cap = Math.min(cfg.retryMaxMs, cfg.retryBaseMs * 2 ** Math.min(attempt - 1, 30));
  return Math.floor(Math.random() * (cap + 1));
}

// withRetry(cfg, log, ctx, fn): fn() until it succeeds or fails with an error
// that a retry cannot help; throws ServiceUnavailable when the next delay
// would end past cfg.retryBudgetMs.  ctx is logged with every retry.
async function withRetry(cfg, log, ctx, fn) {
  const start = Date.now();
  for (let attempt = 1; ; attempt++) {
    try {
      const result = await fn(attempt);
      if (attempt > 1) {
        log.info('recovered', Object.assign({}, ctx, { attempts: attempt, elapsed_ms: Date.now() - start }));
      }
      return result;
    } catch (err) {
      if (!isRetryable(err)) throw err;
      const elapsed = Date.now() - start;
      const delay = backoffMs(cfg, attempt);
      const fields = Object.assign({}, ctx, {
        attempt, code: err.code || null, error: err.message, elapsed_ms: elapsed,
      });
      if (elapsed + delay > cfg.retryBudgetMs) {
        log.error('gave_up', fields);
        throw new ServiceUnavailable(err, attempt, elapsed);
      }
      log.warn('retry', Object.assign(fields, { delay_ms: delay }));
      await sleep(delay);
    }
  }
}

// query(pool, sql, params): one statement on a pooled client.  A client
// that failed with a connection-level error is destroyed, never reused.
async function query(pool, sql, params) {
  const client = await pool.connect();
  // a checked-out client has no 'error' listener of the pool's: a server
  // that dies between two messages (e.g. "terminating connection due to
  // unexpected postmaster exit" while no query is active) would otherwise
  // be an unhandled 'error' event and end the process
  let lost = null;
  const onError = (err) => { lost = err; };
  client.on('error', onError);
  let res;
  try {
    res = await client.query(sql, params);
  } catch (err) {
    client.removeListener('error', onError);
    client.release(isRetryable(err) || lost ? err : undefined);
    throw err;
  }
  client.removeListener('error', onError);
  client.release(lost || undefined);
  return res;
}

function makeDb(cfg, log) {
  // the webhook endpoints' own role, on the write side: a role that can
  // declare orders paid is not the one that places them
  const webhook = cfg.webhookUser
    ? makePool(cfg, 'write', log, { name: 'webhook', max: Math.min(cfg.poolSize, 4), creds: { user: cfg.webhookUser, password: cfg.webhookPassword !== null ? cfg.webhookPassword : cfg.password } })
    : null;
  return {
    write: makePool(cfg, 'write', log),
    read: makePool(cfg, 'read', log),
    webhook,
    async end() {
      await Promise.allSettled([this.write.end(), this.read.end(), webhook ? webhook.end() : null]);
    },
  };
}

module.exports = {
  makeDb, makePool, query, withRetry, isRetryable, backoffMs, clientOptions, ServiceUnavailable, sleep,
};
