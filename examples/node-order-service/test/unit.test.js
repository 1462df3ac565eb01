'use strict';
// unit.test.js: the pieces that need no database.

const test = require('node:test');
const assert = require('node:assert');
const { loadConfig } = require('../src/config');
const { isRetryable, backoffMs, withRetry, ServiceUnavailable } = require('../src/db');
const { parseOrderRequest, BadRequest } = require('../src/orders');

const quiet = { info() {}, warn() {}, error() {} };

test('config: defaults, overrides and malformed values', () => {
  const c = loadConfig({});
  assert.strictEqual(c.write.port, 5432);
  assert.strictEqual(c.read.port, 5432, 'the read side defaults to the write side');
  assert.strictEqual(c.listenHost, '127.0.0.1');
  const d = loadConfig({ FT_WRITE_PORT: '6000', FT_READ_PORT: '6001', FT_PASSWORD: 'x' });
  assert.deepStrictEqual([d.write.port, d.read.port, d.password], [6000, 6001, 'x']);
  assert.throws(() => loadConfig({ FT_WRITE_PORT: 'abc' }), /FT_WRITE_PORT must be/);
  assert.throws(() => loadConfig({ FT_WRITE_PORT: '70000' }), /between 1 and 65535/);
});

test('errors: connection-level ones are retried, request errors are not', () => {
  for (const code of ['57P01', '57P03', '25006', '08006', '08001', '53300', 'ECONNREFUSED', 'ECONNRESET']) {
    assert.ok(isRetryable({ code, message: 'x' }), code);
  }
  assert.ok(isRetryable(new Error('Connection terminated unexpectedly')));
  assert.ok(isRetryable(new Error('Connection terminated due to connection timeout')));
  for (const code of ['22023', '22004', 'FT409', '42501', '42883']) {
    assert.ok(!isRetryable({ code, message: 'x' }), code);
  }
  assert.ok(!isRetryable(new Error('some bug')));
});

test('backoff: full jitter below an exponential cap', () => {
  const cfg = { retryBaseMs: 50, retryMaxMs: 1000 };
  for (let i = 0; i < 200; i++) {
    assert.ok(backoffMs(cfg, 1) <= 50);
    assert.ok(backoffMs(cfg, 3) <= 200);
    assert.ok(backoffMs(cfg, 40) <= 1000);
  }
});

test('withRetry: retries a connection error, stops at the budget, passes others through', async () => {
  const cfg = { retryBaseMs: 1, retryMaxMs: 5, retryBudgetMs: 200 };
  let n = 0;
  const v = await withRetry(cfg, quiet, {}, async () => {
    n++;
    if (n < 3) throw Object.assign(new Error('down'), { code: '57P01' });
    return 'ok';
  });
  assert.deepStrictEqual([v, n], ['ok', 3]);
  await assert.rejects(withRetry(cfg, quiet, {}, async () => { throw Object.assign(new Error('down'), { code: 'ECONNREFUSED' }); }),
    (e) => e instanceof ServiceUnavailable && e.attempts > 1);
  n = 0;
  await assert.rejects(withRetry(cfg, quiet, {}, async () => { n++; throw Object.assign(new Error('bad'), { code: '22023' }); }),
    (e) => e.code === '22023' && n === 1);
});

test('request bodies: types checked, NULLs left to place_order', () => {
  assert.deepStrictEqual(
    parseOrderRequest({ customer_id: 'c', amount_minor: 100, currency: 'EUR', items: [{ sku: 'a' }], payment_method: 'pm_card_visa' }),
    ['c', 100, 'EUR', '[{"sku":"a"}]', 'pm_card_visa']);
  assert.deepStrictEqual(parseOrderRequest({ amount_minor: 1 }), [null, 1, null, '[]', null]);
  assert.throws(() => parseOrderRequest([]), BadRequest);
  assert.throws(() => parseOrderRequest({ amount_minor: 1.5 }), /amount_minor must be an integer/);
  assert.throws(() => parseOrderRequest({ amount_minor: '100' }), /amount_minor must be an integer/);
  assert.throws(() => parseOrderRequest({ items: {} }), /items must be a JSON array/);
  assert.throws(() => parseOrderRequest({ amount: 1 }), /unknown field "amount"/);
});

// webhooks: the signature check of POST /webhooks/{stripe,generic}
const crypto = require('crypto');
const { verifySignature, parseSignatureHeader, signPayload, SignatureError } = require('../src/webhooks');

test('webhook signature: HMAC-SHA256 over "t.body", any v1 may match, 5-minute tolerance', () => {
  const secret = 'whsec_unit';
  const body = Buffer.from('{"id":"evt_1","type":"payment_intent.succeeded"}');
  const now = 1800000000;
  // the reference value, computed independently of src/webhooks.js
  const mac = crypto.createHmac('sha256', secret).update(`${now}.${body.toString()}`).digest('hex');
  assert.strictEqual(signPayload(body, secret, now), `t=${now},v1=${mac}`);
  assert.strictEqual(verifySignature(body, `t=${now},v1=${mac}`, secret, 300, now), now);
  // several v1 (a secret being rolled) and an unknown scheme: one match is enough
  const other = 'ab'.repeat(32);
  assert.strictEqual(verifySignature(body, `t=${now},v1=${other},v0=${other},v1=${mac}`, secret, 300, now), now);
  assert.strictEqual(verifySignature(body, `t=${now}, v1=${mac.toUpperCase()}`, secret, 300, now), now);
  // within the tolerance on both sides, not beyond
  assert.strictEqual(verifySignature(body, signPayload(body, secret, now - 300), secret, 300, now), now - 300);
  assert.strictEqual(verifySignature(body, signPayload(body, secret, now + 300), secret, 300, now), now + 300);
  const bad = (header, b = body, s = secret) => assert.throws(() => verifySignature(b, header, s, 300, now), SignatureError, header);
  bad(signPayload(body, secret, now - 301));
  bad(signPayload(body, secret, now + 301));
  bad(signPayload(body, 'whsec_other', now));
  bad(`t=${now},v1=${mac}`, Buffer.from(`${body.toString()} `));            // body changed by one byte
  bad(`t=${now + 1},v1=${mac}`);                                             // timestamp changed
  bad(`t=${now},v1=${other}`);
  bad(`t=${now},v1=${mac.slice(0, 62)}`);                                    // short signature
  bad(`t=${now},v0=${mac}`);                                                 // no v1 at all
  bad(`v1=${mac}`);                                                          // no timestamp
  bad(`t=abc,v1=${mac}`);
  bad('');
  bad(undefined);
  assert.throws(() => parseSignatureHeader('x'.repeat(5000)), /too long/);
});

test('order capabilities: one token per order, stable for a key, refused for another order', () => {
  const { makeCapabilities } = require('../src/capability');
  const cfg = loadConfig({ FT_ORDER_TOKEN_SECRET: 'unit-test-key-0123456789' });
  const a = makeCapabilities(cfg, quiet);
  const b = makeCapabilities(cfg, quiet);
  const t = a.tokenFor(42);
  assert.match(t, /^[A-Za-z0-9_-]{43}$/);
  assert.strictEqual(b.tokenFor('42'), t, 'same key, same token (another instance, a replay)');
  assert.ok(a.allows(42, t));
  assert.ok(!a.allows(43, t), 'not for another order');
  assert.ok(!a.allows(42, ''), 'not empty');
  assert.ok(!a.allows(42, t.slice(0, -1)), 'not a prefix');
  assert.ok(!a.allows(42, null));
  const other = makeCapabilities(loadConfig({ FT_ORDER_TOKEN_SECRET: 'another-key-0123456789' }), quiet);
  assert.ok(!other.allows(42, t), 'not with another key');
  assert.throws(() => loadConfig({ FT_ORDER_TOKEN_SECRET: 'short' }), /at least 16/);
});

test('operators: Basic credentials parsed, malformed ones refused', () => {
  const { basicCredentials } = require('../src/operators');
  const h = (s) => `Basic ${Buffer.from(s).toString('base64')}`;
  assert.deepStrictEqual(basicCredentials(h('alice:pw:with:colons')), { user: 'alice', password: 'pw:with:colons' });
  assert.strictEqual(basicCredentials(h(':pw')), null, 'no user');
  assert.strictEqual(basicCredentials(h('nocolon')), null);
  assert.strictEqual(basicCredentials('Bearer abc'), null);
  assert.strictEqual(basicCredentials(undefined), null);
  assert.strictEqual(basicCredentials(h(`${'u'.repeat(64)}:pw`)), null, 'longer than a role name');
});

test('console: metrics() text parsed into the chart figures', () => {
  const { parseMetrics, chartFigures } = require('../src/console');
  const m = parseMetrics([
    '# HELP ft_orders_worker_outcomes_total x',
    'ft_orders_worker_outcomes_total{worker="1",outcome="paid"} 21',
    'ft_orders_worker_outcomes_total{worker="2",outcome="paid"} 9',
    'ft_orders_worker_outcomes_total{worker="2",outcome="retried"} 10',
    'ft_orders_gateway_request_duration_seconds_sum 0.5',
    'ft_orders_gateway_request_duration_seconds_count 40',
    'ft_orders_outbox_events{state="due"} 3',
    'ft_orders_outbox_events{state="scheduled"} 4',
    'garbage line',
  ].join('\n'));
  const f = chartFigures(m);
  assert.deepStrictEqual([f.paid_total, f.outcomes_total, f.backlog, f.duration_count], [30, 40, 7, 40]);
  assert.strictEqual(f.duration_sum_s, 0.5);
});
