'use strict';
// api.test.js: the HTTP API against a running ft_orders database (the
// cluster's HAProxy ports when run by tests/cluster/node_service.sh).
// Needs FT_WRITE_PORT (+ FT_READ_PORT, FT_PASSWORD, ...); FT_GATEWAY_URL
// (the fake gateway) for the slow-gateway test.

const { test, before, after } = require('node:test');
const assert = require('node:assert');
const { dbEnv, startService, request, sse, sleep, keyPrefix, operatorAuth } = require('./helpers');

const env = dbEnv();
const skip = env ? false : 'FT_WRITE_PORT not set: no database to test against';
const gatewayUrl = process.env.FT_GATEWAY_URL;
const prefix = keyPrefix('api');
let svc;

const order = (n, extra = {}) => Object.assign({
  customer_id: `cust-${n}`, amount_minor: 1000 + n, currency: 'eur', items: [{ sku: `sku-${n}`, qty: 1 }],
  payment_method: 'pm_card_visa',
}, extra);
const post = (key, body) => request(svc.port, 'POST', '/orders', { headers: key === null ? {} : { 'Idempotency-Key': key }, body });

async function gatewayFaults(faults) {
  const u = new URL('/faults', gatewayUrl);
  const res = await fetchJson(u, faults === null ? 'DELETE' : 'POST', faults);
  assert.ok(res.status < 300, `gateway /faults answered ${res.status}`);
}
function fetchJson(u, method, body) {
  return request(Number(u.port), method, u.pathname, body ? { body } : {});
}

before(async () => { if (env) svc = await startService(env); });
after(async () => { if (svc) await svc.stop(); });

test('POST /orders without Idempotency-Key: 400', { skip }, async () => {
  const r = await post(null, order(1));
  assert.strictEqual(r.status, 400);
  assert.match(r.body.message, /Idempotency-Key header is required/);
});

test('invalid requests: 400 with place_order\'s SQLSTATE and message', { skip }, async () => {
  let r = await post(`${prefix}-bad-json`, '{"customer_id":');
  assert.strictEqual(r.status, 400);
  assert.match(r.body.message, /not valid JSON/);
  r = await post(`${prefix}-bad-cur`, order(2, { currency: 'EURO' }));
  assert.deepStrictEqual([r.status, r.body.sqlstate], [400, '22023']);
  assert.match(r.body.message, /currency/);
  r = await post(`${prefix}-bad-null`, order(3, { customer_id: undefined }));
  assert.deepStrictEqual([r.status, r.body.sqlstate], [400, '22004']);
  assert.match(r.body.message, /customer_id/);
  r = await post(`${prefix}-bad-amount`, order(4, { amount_minor: 0 }));
  assert.deepStrictEqual([r.status, r.body.sqlstate], [400, '22023']);
  r = await post('k'.repeat(256), order(5));   // keys are 1..255 characters
  assert.deepStrictEqual([r.status, r.body.sqlstate], [400, '22023']);
  r = await post(`${prefix}-too-big`, JSON.stringify(order(6, { items: [{ note: 'x'.repeat(1100000) }] })));
  assert.strictEqual(r.status, 413);
});

test('sequential duplicates with one key: one order, then replays', { skip }, async () => {
  const key = `${prefix}-seq`;
  const first = await post(key, order(10));
  assert.ok([200, 202].includes(first.status), `status ${first.status}`);
  assert.strictEqual(first.body.replayed, false);
  assert.strictEqual(first.headers.location, `/orders/${first.body.order_id}?access_token=${first.body.access_token}`);
  for (let i = 0; i < 3; i++) {
    const again = await post(key, order(10));
    assert.ok([200, 202].includes(again.status));
    assert.strictEqual(again.body.order_id, first.body.order_id);
    assert.strictEqual(again.body.replayed, true);
  }
});

test('concurrent duplicates with one key: one order, one first answer', { skip }, async () => {
  const key = `${prefix}-conc`;
  const answers = await Promise.all(Array.from({ length: 20 }, () => post(key, order(20))));
  for (const a of answers) assert.ok([200, 202].includes(a.status), `status ${a.status}: ${JSON.stringify(a.body)}`);
  const ids = new Set(answers.map((a) => a.body.order_id));
  assert.strictEqual(ids.size, 1, `order ids ${[...ids]}`);
  assert.strictEqual(answers.filter((a) => a.body.replayed === false).length, 1);
});

test('same key, different request: 422 FT409, the order unchanged', { skip }, async () => {
  const key = `${prefix}-mismatch`;
  const first = await post(key, order(30));
  assert.ok([200, 202].includes(first.status));
  const other = await post(key, order(30, { amount_minor: 99 }));
  assert.deepStrictEqual([other.status, other.body.sqlstate, other.body.error], [422, 'FT409', 'idempotency_key_reused']);
  const got = await request(svc.port, 'GET', `/orders/${first.body.order_id}?access_token=${first.body.access_token}`);
  assert.strictEqual(got.status, 200);
  assert.strictEqual(got.body.amount_minor, 1030);
});

test('GET right after POST finds the order (replica, else primary)', { skip }, async () => {
  for (let i = 0; i < 20; i++) {
    const p = await post(`${prefix}-raw-${i}`, order(40 + i));
    assert.ok([200, 202].includes(p.status));
    const g = await request(svc.port, 'GET', `/orders/${p.body.order_id}`, { headers: { Authorization: `Bearer ${p.body.access_token}` } });
    assert.strictEqual(g.status, 200, `order ${p.body.order_id}: ${JSON.stringify(g.body)}`);
    assert.strictEqual(g.body.idempotency_key, `${prefix}-raw-${i}`);
    assert.strictEqual(g.body.currency, 'EUR');
    assert.deepStrictEqual(g.body.items, [{ sku: `sku-${40 + i}`, qty: 1 }]);
  }
});

test('GET errors: no token 401, unknown id or wrong token 404, malformed id 400, wrong method 405, no route 404', { skip }, async () => {
  assert.strictEqual((await request(svc.port, 'GET', '/orders/999999999999')).status, 401);
  assert.strictEqual((await request(svc.port, 'GET', '/orders/999999999999?access_token=guess')).status, 404);
  const p = await post(`${prefix}-tok`, order(90));
  const other = await post(`${prefix}-tok2`, order(91));
  assert.strictEqual((await request(svc.port, 'GET', `/orders/${p.body.order_id}?access_token=${other.body.access_token}`)).status, 404);
  assert.strictEqual((await request(svc.port, 'GET', `/orders/${p.body.order_id}/events?access_token=${other.body.access_token}`)).status, 404);
  assert.strictEqual((await request(svc.port, 'GET', `/orders/${p.body.order_id}/events`)).status, 401);
  assert.strictEqual((await request(svc.port, 'GET', '/events')).status, 401);
  assert.strictEqual((await request(svc.port, 'GET', '/orders/12abc')).status, 400);
  assert.strictEqual((await request(svc.port, 'DELETE', '/orders/1')).status, 405);
  assert.strictEqual((await request(svc.port, 'GET', '/orders')).status, 405);
  assert.strictEqual((await request(svc.port, 'GET', '/nope')).status, 404);
  assert.strictEqual((await request(svc.port, 'GET', '/orders/999999999999/events?access_token=guess')).status, 404);
});

test('slow gateway: 202 pending at once; the event stream shows pending then paid', { skip: skip || (!gatewayUrl && 'FT_GATEWAY_URL not set') }, async () => {
  await gatewayFaults({ latency_ms: 1500 });
  try {
    const t0 = Date.now();
    const p = await post(`${prefix}-slow`, order(70));
    const took = Date.now() - t0;
    // answered before the gateway did: still pending
    assert.deepStrictEqual([p.status, p.body.status], [202, 'pending'], `after ${took} ms`);
    const stream = await sse(svc.port, `/orders/${p.body.order_id}/events?access_token=${p.body.access_token}`);
    assert.strictEqual(stream.status, 200);
    assert.match(stream.headers['content-type'], /^text\/event-stream/);
    const firstEv = await stream.waitFor((e) => e.event === 'status', 5000);
    assert.strictEqual(firstEv.data.status, 'pending');
    const paid = await stream.waitFor((e) => e.event === 'status' && e.data.status === 'paid', 20000);
    assert.strictEqual(paid.data.order_id, p.body.order_id);
    await stream.waitFor((e) => e.event === 'end', 5000);
    await sleep(100);
    assert.ok(stream.ended, 'the stream ends once the order is final');
    const again = await post(`${prefix}-slow`, order(70));
    assert.deepStrictEqual([again.status, again.body.status, again.body.replayed], [200, 'paid', true]);
  } finally {
    await gatewayFaults(null);
  }
});

test('GET /events streams every status change', { skip }, async () => {
  const stream = await sse(svc.port, '/events', operatorAuth());
  assert.strictEqual(stream.status, 200);
  const p = await post(`${prefix}-all`, order(80));
  const ev = await stream.waitFor((e) => e.event === 'status' && e.data.order_id === p.body.order_id && e.data.status === 'paid', 20000);
  assert.strictEqual(typeof ev.data.attempts, 'number');
  stream.close();
});
