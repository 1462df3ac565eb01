'use strict';
// webhooks.test.js: POST /webhooks/stripe and /webhooks/generic against a
// running ft_orders database whose payment workers do not settle the
// orders by themselves (gateway down), so that every change seen here is a
// webhook's.  Run by tests/integration/webhooks.sh, which sets FT_WRITE_PORT,
// FT_USER (a role granted ft_orders_app and EXECUTE on apply_gateway_event),
// FT_STRIPE_WEBHOOK_SECRET and FT_WEBHOOK_SECRET.

const { test, before, after } = require('node:test');
const assert = require('node:assert');
const { dbEnv, startService, request, keyPrefix } = require('./helpers');
const { signPayload } = require('../src/webhooks');

const env = dbEnv();
const stripeSecret = process.env.FT_STRIPE_WEBHOOK_SECRET;
const genericSecret = process.env.FT_WEBHOOK_SECRET;
const skip = env && stripeSecret && genericSecret ? false
  : 'FT_WRITE_PORT, FT_STRIPE_WEBHOOK_SECRET or FT_WEBHOOK_SECRET not set';
const prefix = keyPrefix('wh');
let svc;

before(async () => {
  if (!skip) {
    svc = await startService(Object.assign({}, env, {
      FT_STRIPE_WEBHOOK_SECRET: stripeSecret, FT_WEBHOOK_SECRET: genericSecret,
    }));
  }
});
after(async () => { if (svc) await svc.stop(); });

let n = 0;
async function newOrder(amount) {
  n += 1;
  const r = await request(svc.port, 'POST', '/orders', {
    headers: { 'Idempotency-Key': `${prefix}-${n}` },
    body: { customer_id: 'wh', amount_minor: amount, currency: 'EUR', payment_method: 'pm_card_visa' },
  });
  assert.ok([200, 202].includes(r.status), `POST /orders: ${r.status}`);
  tokens.set(String(r.body.order_id), r.body.access_token);
  const o = await request(svc.port, 'GET', `/orders/${r.body.order_id}?access_token=${r.body.access_token}`);
  return o.body;
}
const tokens = new Map();     // order id -> its access token
const status = async (id) => (await request(svc.port, 'GET', `/orders/${id}?access_token=${tokens.get(String(id))}`)).body.status;

// hook(provider, event, {secret, t, header}): POST a signed event
function hook(provider, event, opts = {}) {
  const text = typeof event === 'string' ? event : JSON.stringify(event);
  const secret = opts.secret || (provider === 'stripe' ? stripeSecret : genericSecret);
  const name = provider === 'stripe' ? 'Stripe-Signature' : 'Webhook-Signature';
  const value = opts.header !== undefined ? opts.header : signPayload(Buffer.from(text), secret, opts.t);
  return request(svc.port, 'POST', `/webhooks/${provider}`, { headers: value === null ? {} : { [name]: value }, body: text });
}
const stripeEvent = (id, type, order, extra = {}) => ({
  id, object: 'event', type,
  data: { object: Object.assign({ id: `pi_${prefix}_${order.order_id}`, object: 'payment_intent', amount: order.amount_minor, currency: 'eur', metadata: { order_id: String(order.order_id), payment_key: order.payment_key } }, extra) },
});

test('a bad, missing, stale or foreign signature: 400, nothing applied', { skip }, async () => {
  const o = await newOrder(501);
  const ev = { event_id: `${prefix}-bad`, type: 'payment.succeeded', payment_key: o.payment_key };
  for (const opts of [{ secret: 'whsec_wrong' }, { header: null }, { header: 't=1,v1=zz' },
    { t: Math.floor(Date.now() / 1000) - 301 }, { t: Math.floor(Date.now() / 1000) + 301 }]) {
    const r = await hook('generic', ev, opts);
    assert.strictEqual(r.status, 400, JSON.stringify(opts));
    assert.strictEqual(r.body.error, 'bad_signature');
  }
  // a Stripe signature is no generic one: each endpoint has its secret
  const r = await hook('generic', ev, { secret: stripeSecret });
  assert.strictEqual(r.status, 400);
  assert.strictEqual(await status(o.order_id), 'pending');
  // the same event, signed: applied now (so the rejected ones were not recorded)
  const good = await hook('generic', ev);
  assert.deepStrictEqual([good.status, good.body.applied], [200, true]);
  assert.strictEqual(await status(o.order_id), 'paid');
  assert.ok(svc.lines.some((l) => l.event === 'webhook_rejected'), 'webhook_rejected logged');
});

test('generic: applied once, its repeat answered 200 with applied false', { skip }, async () => {
  const o = await newOrder(502);
  const ev = { event_id: `${prefix}-g1`, type: 'payment.failed', payment_key: o.payment_key, status: 'declined', decline_code: 'insufficient_funds' };
  let r = await hook('generic', ev);
  assert.deepStrictEqual([r.status, r.body], [200, { received: true, applied: true }]);
  r = await hook('generic', ev);
  assert.deepStrictEqual([r.status, r.body], [200, { received: true, applied: false }]);
  assert.strictEqual(await status(o.order_id), 'declined');
});

test('Stripe: failure, success, a late failure (history), in any order', { skip }, async () => {
  const o = await newOrder(503);
  let r = await hook('stripe', stripeEvent(`evt_${prefix}_1`, 'payment_intent.payment_failed', o,
    { last_payment_error: { code: 'card_declined', decline_code: 'generic_decline' } }));
  assert.deepStrictEqual([r.status, r.body.applied], [200, true]);
  assert.strictEqual(await status(o.order_id), 'declined');
  r = await hook('stripe', stripeEvent(`evt_${prefix}_2`, 'payment_intent.succeeded', o));
  assert.deepStrictEqual([r.status, r.body.applied], [200, true]);
  assert.strictEqual(await status(o.order_id), 'paid');
  r = await hook('stripe', stripeEvent(`evt_${prefix}_3`, 'payment_intent.payment_failed', o));
  assert.deepStrictEqual([r.status, r.body.applied], [200, false]);
  assert.strictEqual(await status(o.order_id), 'paid');
});

test('signed but malformed events: 400 with the SQLSTATE', { skip }, async () => {
  let r = await hook('stripe', { type: 'payment_intent.succeeded', data: { object: { id: 'pi_x' } } });
  assert.deepStrictEqual([r.status, r.body.sqlstate], [400, '22023']);
  assert.match(r.body.message, /has no "id"/);
  r = await hook('generic', '{"event_id":');
  assert.deepStrictEqual([r.status, r.body.sqlstate], [400, '22P02']);
  r = await hook('generic', '[]');
  assert.deepStrictEqual([r.status, r.body.sqlstate], [400, '22023']);
});

test('GET /webhooks/stripe: 405', { skip }, async () => {
  const r = await request(svc.port, 'GET', '/webhooks/stripe');
  assert.strictEqual(r.status, 405);
});
