'use strict';
// config.js: the service's settings, from the environment only.

function intEnv(env, name, dflt, min, max) {
  const raw = env[name];
  if (raw === undefined || raw === '') return dflt;
  if (!/^\d+$/.test(raw)) throw new Error(`${name} must be a non-negative integer, got "${raw}"`);
  const v = Number(raw);
  if (v < min || v > max) throw new Error(`${name} must be between ${min} and ${max}, got ${v}`);
  return v;
}

function strEnv(env, name, dflt) {
  const raw = env[name];
  return raw === undefined || raw === '' ? dflt : raw;
}

// loadConfig(env): a frozen settings object; throws on a malformed value
function loadConfig(env = process.env) {
  const writeHost = strEnv(env, 'FT_WRITE_HOST', '127.0.0.1');
  const cfg = {
    // HAProxy's write port (routes to the Patroni leader) and read port
    // (replicas); the read side defaults to the write side for one server
    write: { host: writeHost, port: intEnv(env, 'FT_WRITE_PORT', 5432, 1, 65535) },
    read: {
      host: strEnv(env, 'FT_READ_HOST', writeHost),
      port: intEnv(env, 'FT_READ_PORT', intEnv(env, 'FT_WRITE_PORT', 5432, 1, 65535), 1, 65535),
    },
    database: strEnv(env, 'FT_DATABASE', 'ftdb'),
    user: strEnv(env, 'FT_USER', 'ft_app'),
    password: env.FT_PASSWORD !== undefined ? env.FT_PASSWORD : env.PGPASSWORD,
    listenHost: strEnv(env, 'FT_LISTEN_HOST', '127.0.0.1'),
    listenPort: intEnv(env, 'FT_LISTEN_PORT', 8080, 0, 65535),
    poolSize: intEnv(env, 'FT_POOL_SIZE', 10, 1, 1000),
    // a connection attempt through HAProxy; HAProxy itself retries a dead
    // backend for ~2 s before it gives up
    connectTimeoutMs: intEnv(env, 'FT_CONNECT_TIMEOUT_MS', 3000, 100, 600000),
    // client-side limit on one statement.  No server-side statement_timeout:
    // under synchronous_mode a cancelled commit that waits for the standby
    // reports success although nothing was replicated (docs/operations.md)
    queryTimeoutMs: intEnv(env, 'FT_QUERY_TIMEOUT_MS', 10000, 100, 600000),
    // retries of one request on connection errors: exponential backoff with
    // full jitter from retryBaseMs doubling to retryMaxMs, for at most
    // retryBudgetMs in all, then 503
    retryBaseMs: intEnv(env, 'FT_RETRY_BASE_MS', 50, 1, 60000),
    retryMaxMs: intEnv(env, 'FT_RETRY_MAX_MS', 1000, 1, 600000),
    retryBudgetMs: intEnv(env, 'FT_RETRY_BUDGET_MS', 20000, 0, 3600000),
    maxBodyBytes: intEnv(env, 'FT_MAX_BODY_BYTES', 1048576, 1024, 67108864),
    sseHeartbeatMs: intEnv(env, 'FT_SSE_HEARTBEAT_MS', 15000, 100, 3600000),
    // webhook endpoint secrets (POST /webhooks/stripe, /webhooks/generic);
    // an endpoint without its secret answers 404
    webhookSecrets: {
      stripe: strEnv(env, 'FT_STRIPE_WEBHOOK_SECRET', null),
      generic: strEnv(env, 'FT_WEBHOOK_SECRET', null),
    },
    // how far a signature's timestamp may be from our clock (Stripe's
    // libraries use 5 minutes)
    webhookToleranceS: intEnv(env, 'FT_WEBHOOK_TOLERANCE_S', 300, 1, 86400),
    // the webhook endpoints' own database role (granted EXECUTE on
    // apply_gateway_event, nothing else); unset: the service's role
    webhookUser: strEnv(env, 'FT_WEBHOOK_USER', null),
    webhookPassword: strEnv(env, 'FT_WEBHOOK_PASSWORD', null),
    // the key of the order capabilities (access tokens returned by POST
    // /orders); every instance of the service needs the same one.  Unset:
    // a random key per process (tokens die with it)
    orderTokenSecret: strEnv(env, 'FT_ORDER_TOKEN_SECRET', null),
    // the console's operators: how long a checked credential is trusted
    // before it is checked against the database again, and how many
    // operators' connection pools are kept
    operatorRecheckMs: intEnv(env, 'FT_OPERATOR_RECHECK_MS', 60000, 0, 3600000),
    operatorPools: intEnv(env, 'FT_OPERATOR_POOLS', 16, 1, 1000),
    // the fake gateway of the tests (tests/fake_gateway): the checkout's
    // 3-D Secure step is a page of ours that completes the payment there.
    // Never set in production.
    fakeGatewayUrl: strEnv(env, 'FT_FAKE_GATEWAY_URL', null),
  };
  if (cfg.orderTokenSecret !== null && cfg.orderTokenSecret.length < 16) {
    throw new Error('FT_ORDER_TOKEN_SECRET must be at least 16 characters');
  }
  return Object.freeze(cfg);
}

module.exports = { loadConfig };
