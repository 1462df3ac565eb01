'use strict';
// failover.test.js: the service under order load while the cluster fails
// over.  Run by tests/cluster/node_service.sh, which sets:
//   FT_WRITE_PORT / FT_READ_PORT / FT_PASSWORD   HAProxy's ports, ft_app's password
//   FT_FAILOVER_CMD     a shell command that makes the leader fail and exits
//                       once a new leader accepts writes; its last output
//                       line is JSON {"scenario","old","new","new_port",...}
//   FT_GATEWAY_URL      the fake gateway (ledger checks)
//   FT_CHECK_USER / FT_CHECK_PASSWORD   a superuser for the checks (reads ft_orders.orders)
//   FT_LOAD_ORDERS      orders to place at least (default 300); the load goes
//                       on until 50 orders were started after the failover
//   FT_SERVICE_LOG      file that receives the service's log
//
// The client is careful: an order is retried with its idempotency key on a
// 503 or a broken connection until it is acknowledged (2xx).  Afterwards:
// every acknowledged order exists once on the new leader with the id the
// client was given, all get paid, the gateway charged each exactly once,
// the event stream kept working, the service's log shows the failover.

const { test, before, after } = require('node:test');
const assert = require('node:assert');
const { exec } = require('child_process');
const pg = require('pg');
const { dbEnv, startService, request, sse, sleep, keyPrefix, operatorAuth } = require('./helpers');

const env = dbEnv();
const need = ['FT_WRITE_PORT', 'FT_FAILOVER_CMD', 'FT_GATEWAY_URL', 'FT_CHECK_PASSWORD'].filter((k) => !process.env[k]);
const skip = need.length ? `not set: ${need.join(', ')}` : false;
const N = Number(process.env.FT_LOAD_ORDERS || 300);
const PACE_MS = 25;
const MAX_IN_FLIGHT = 40;
const MIN_AFTER = 50;            // orders started after the new leader took writes
const MAX_ORDERS = 10 * N;       // a bound, should the failover never end
const prefix = keyPrefix('failover');

const run = {
  svc: null, stream: null, fault: null, faultStart: null, faultEnd: null,
  acked: new Map(),        // key -> {ids: Set, first: answer, started, ackedAt, tries}
  watched: null, watchedStream: null,
  started: 0, unexpected: [], unacked: [], http503: 0, netErrors: 0, slowest: 0,
};

function checkClient() {
  return new pg.Client({
    host: process.env.FT_WRITE_HOST || '127.0.0.1', port: Number(process.env.FT_WRITE_PORT),
    database: process.env.FT_DATABASE || 'ftdb', user: process.env.FT_CHECK_USER || 'postgres',
    password: process.env.FT_CHECK_PASSWORD, connectionTimeoutMillis: 5000,
  });
}
async function checkQuery(sql, params) {
  const c = checkClient();
  await c.connect();
  try { return (await c.query(sql, params)).rows; } finally { await c.end(); }
}

async function gatewayFaults(faults) {
  const gw = new URL(process.env.FT_GATEWAY_URL);
  const r = await request(Number(gw.port), faults ? 'POST' : 'DELETE', '/faults', faults ? { body: faults } : {});
  assert.ok(r.status < 300, `gateway /faults: ${r.status}`);
}

function runFailover() {
  return new Promise((resolve) => {
    run.faultStart = Date.now();
    exec(process.env.FT_FAILOVER_CMD, { timeout: 120000 }, (err, stdout, stderr) => {
      run.faultEnd = Date.now();
      const last = stdout.trim().split('\n').pop() || '';
      try { run.fault = JSON.parse(last); } catch (e) { run.fault = { error: `${err ? err.message : ''} ${stdout} ${stderr}` }; }
      if (err) run.fault.error = `${err.message} ${stderr}`;
      resolve();
    });
  });
}

async function placeUntilAcked(i) {
  const key = `${prefix}-${i}`;
  const body = { customer_id: `c${i % 17}`, amount_minor: 500 + i, currency: 'EUR', items: [{ sku: `s${i}` }], payment_method: 'pm_card_visa' };
  const rec = { ids: new Set(), first: null, started: Date.now(), ackedAt: null, tries: 0 };
  const deadline = Date.now() + 120000;
  let backoff = 100;
  for (;;) {
    if (run.svc.exited) { run.unacked.push(key); return; }
    rec.tries++;
    const t0 = Date.now();
    let r = null;
    try {
      r = await request(run.svc.port, 'POST', '/orders', { headers: { 'Idempotency-Key': key }, body, timeoutMs: 60000 });
    } catch (e) {
      run.netErrors++;
    }
    if (r && (r.status === 200 || r.status === 202)) {
      rec.ids.add(r.body.order_id);
      if (!rec.first) rec.first = r.body;
      rec.ackedAt = Date.now();
      run.slowest = Math.max(run.slowest, rec.ackedAt - t0);
      // acknowledged; one more POST with the key must name the same order
      if (i % 10 === 0 && rec.tries === 1) { rec.tries++; continue; }
      run.acked.set(key, rec);
      return;
    }
    if (r && r.status !== 503) {
      run.unexpected.push({ key, status: r.status, body: r.body });
      return;
    }
    if (r) run.http503++;
    if (Date.now() > deadline) { run.unacked.push(key); return; }
    await sleep(50 + Math.random() * backoff);
    backoff = Math.min(backoff * 2, 1000);
  }
}

before(async () => {
  if (skip) return;
  run.svc = await startService(Object.assign({}, env, { FT_RETRY_BUDGET_MS: '15000' }), process.env.FT_SERVICE_LOG || null);
  // the LISTEN connection is up before the load starts
  for (let i = 0; i < 100 && !run.svc.lines.some((l) => l.event === 'listening'); i++) await sleep(100);
  run.stream = await sse(run.svc.port, '/events', operatorAuth());
  // every payment takes 1.5 s, so that payments are in flight at the fault
  await gatewayFaults({ latency_ms: 1500 });
  // one new order every PACE_MS (at most MAX_IN_FLIGHT unacknowledged); the
  // fault after a quarter of N; on until N orders and MIN_AFTER of them
  // started after the failover command returned
  const inFlight = new Set();
  let failover = null;
  let startedAfter = 0;
  for (let i = 0; i < MAX_ORDERS; i++) {
    if (i === Math.floor(N / 4)) {
      // one order watched through its own event stream across the failover
      const w = await request(run.svc.port, 'POST', '/orders', {
        headers: { 'Idempotency-Key': `w-${prefix}` }, body: { customer_id: 'watcher', amount_minor: 4242, currency: 'EUR' },
      });
      run.watched = w.body;
      if (w.status === 202) {
        run.watchedStream = await sse(run.svc.port, `/orders/${w.body.order_id}/events?access_token=${w.body.access_token}`);
        await run.watchedStream.waitFor((e) => e.event === 'status', 5000).catch(() => {});
      }
      failover = runFailover();
    }
    if (run.faultEnd !== null) startedAfter++;
    if (i >= N && run.faultEnd !== null && startedAfter > MIN_AFTER) break;
    if (run.svc.exited) break;
    while (inFlight.size >= MAX_IN_FLIGHT) await Promise.race(inFlight);
    const p = placeUntilAcked(i).finally(() => inFlight.delete(p));
    inFlight.add(p);
    run.started++;
    await sleep(PACE_MS);
  }
  await Promise.all(inFlight);
  await failover;
  await gatewayFaults(null);
});

after(async () => {
  if (run.stream) run.stream.close();
  if (run.watchedStream) run.watchedStream.close();
  if (!skip) await gatewayFaults(null).catch(() => {});
  if (run.svc) await run.svc.stop();
});

test('the failover happened: a new leader accepts writes', { skip }, () => {
  assert.ok(run.fault && !run.fault.error, `failover command: ${JSON.stringify(run.fault)}`);
  assert.notStrictEqual(run.fault.new, run.fault.old, 'another node leads');
  console.log(`failover ${run.fault.scenario}: n${run.fault.old} -> n${run.fault.new} in ${((run.faultEnd - run.faultStart) / 1000).toFixed(1)} s`);
});

test('every order the client placed was acknowledged, none refused', { skip }, () => {
  assert.deepStrictEqual(run.unexpected, [], 'no answer other than 2xx or 503');
  assert.deepStrictEqual(run.unacked, []);
  assert.strictEqual(run.acked.size, run.started);
  const after = [...run.acked.values()].filter((r) => r.started > run.faultEnd).length;
  const during = [...run.acked.values()].filter((r) => r.started <= run.faultEnd && r.ackedAt >= run.faultStart).length;
  console.log(`client: ${run.acked.size} orders acknowledged (${during} in flight during the failover, ${after} started after it); ` +
    `503 answers ${run.http503}, broken connections ${run.netErrors}, slowest POST ${run.slowest} ms`);
  assert.ok(during > 0, 'some orders were in flight during the failover');
  assert.ok(after >= MIN_AFTER, `${after} orders placed after the failover`);
});

test('one order per key: every answer for a key named the same order', { skip }, () => {
  for (const [key, rec] of run.acked) assert.strictEqual(rec.ids.size, 1, `${key}: order ids ${[...rec.ids]}`);
  const ids = new Set([...run.acked.values()].map((r) => r.first.order_id));
  assert.strictEqual(ids.size, run.acked.size, 'distinct keys got distinct orders');
});

test('every acknowledged order exists once on the new leader with its id', { skip }, async () => {
  const [where] = await checkQuery('SELECT inet_server_port() AS port, pg_is_in_recovery() AS standby');
  assert.strictEqual(where.standby, false);
  assert.strictEqual(where.port, run.fault.new_port, 'the write port leads to the new leader');
  const rows = await checkQuery(
    'SELECT idempotency_key, order_id::text, count(*) OVER (PARTITION BY idempotency_key)::int AS n FROM ft_orders.orders WHERE starts_with(idempotency_key, $1)',
    [`${prefix}-`]);
  assert.strictEqual(rows.length, run.started, `${rows.length} orders in the database for ${run.started} keys`);
  for (const r of rows) {
    assert.strictEqual(r.n, 1, `${r.idempotency_key} has ${r.n} orders`);
    assert.strictEqual(String(run.acked.get(r.idempotency_key).first.order_id), r.order_id, r.idempotency_key);
  }
});

test('all orders get paid, the gateway charged each exactly once', { skip }, async () => {
  let rows;
  const t0 = Date.now();
  for (;;) {
    rows = await checkQuery(
      'SELECT status::text, payment_key::text FROM ft_orders.orders WHERE starts_with(idempotency_key, $1)', [`${prefix}-`]);
    if (rows.every((r) => r.status === 'paid') || Date.now() - t0 > 90000) break;
    await sleep(500);
  }
  const notPaid = rows.filter((r) => r.status !== 'paid');
  assert.deepStrictEqual(notPaid, [], 'every order paid within 90 s');
  console.log(`all ${rows.length} orders paid ${((Date.now() - run.faultEnd) / 1000).toFixed(1)} s after the failover`);
  const gw = new URL(process.env.FT_GATEWAY_URL);
  const ledger = await request(Number(gw.port), 'GET', '/ledger');
  assert.strictEqual(ledger.body.duplicates, 0, `ledger ${JSON.stringify(ledger.body)}`);
  const receipts = await request(Number(gw.port), 'GET', '/ledger/receipts');
  const charged = new Map();
  for (const line of String(receipts.body).split('\n')) {
    const [k, , , c] = line.split(' ');
    if (k) charged.set(k, (charged.get(k) || 0) + Number(c));
  }
  for (const r of rows) assert.strictEqual(charged.get(r.payment_key), 1, `payment_key ${r.payment_key}`);
});

test('the event stream survived the failover', { skip }, async () => {
  // the service's LISTEN connection broke with the old leader and came back
  const gap = await run.stream.waitFor((e) => e.event === 'gap', 10000);
  assert.ok(gap.data.gap_ms >= 0);
  const afterKeys = new Set([...run.acked.entries()].filter(([, r]) => r.started > run.faultEnd).map(([, r]) => r.first.order_id));
  const ev = await run.stream.waitFor((e) => e.event === 'status' && e.data.status === 'paid' && afterKeys.has(e.data.order_id), 30000)
    .catch((err) => {
      const late = run.stream.events.filter((e) => e.at > gap.at);
      throw new Error(`${err.message}: ${late.length} events after the gap event, the last ${JSON.stringify(late.slice(-3))}; ` +
        `orders started after the failover: ${[...afterKeys].slice(0, 5)}...; stream ended: ${run.stream.ended}`);
    });
  assert.ok(ev.at > run.faultStart);
  const paidEvents = run.stream.events.filter((e) => e.event === 'status' && e.data.status === 'paid');
  const perOrder = new Map();
  for (const e of paidEvents) perOrder.set(e.data.order_id, (perOrder.get(e.data.order_id) || 0) + 1);
  const twice = [...perOrder].filter(([, n]) => n > 1).map(([id]) => id);
  // NOTIFY is at-least-once across a failover: a payment the old leader
  // committed (and notified) but never replicated is settled again, as a
  // replay of the same gateway charge, on the new leader
  console.log(`event stream: ${run.stream.events.length} events, ${paidEvents.length} "paid" for ${perOrder.size} orders` +
    `${twice.length ? ` (twice: ${twice.join(', ')})` : ''}, gap of ${gap.data.gap_ms} ms`);
});

test('an order watched through GET /orders/:id/events across the failover: pending, then paid', { skip }, async () => {
  assert.ok(run.watched && run.watched.status === 'pending', `watched order placed: ${JSON.stringify(run.watched)}`);
  const st = run.watchedStream;
  assert.ok(st && st.status === 200, 'its event stream opened');
  const first = st.events.find((e) => e.event === 'status');
  assert.strictEqual(first && first.data.status, 'pending');
  const paid = await st.waitFor((e) => e.event === 'status' && e.data.status === 'paid', 60000);
  await st.waitFor((e) => e.event === 'end', 5000);
  const rel = paid.at < run.faultStart ? 'before the fault' : (paid.at < run.faultEnd ? 'during the failover' : 'after the failover');
  console.log(`watched order ${run.watched.order_id}: "paid" event ${rel} (attempts ${paid.data.attempts})`);
});

test('the service log shows the failover: LISTEN lost, reconnected to the new leader, requests retried', { skip }, () => {
  const ev = (name) => run.svc.lines.filter((l) => l.event === name);
  assert.ok(ev('listen_lost').length >= 1, 'listen_lost');
  const back = ev('listen_reconnected');
  assert.ok(back.length >= 1, 'listen_reconnected');
  const noticed = ev('failover_noticed');
  assert.ok(noticed.length >= 1, 'failover_noticed');
  assert.strictEqual(noticed[noticed.length - 1].new_primary.split(':').pop(), String(run.fault.new_port));
  assert.ok(ev('retry').length >= 1, 'requests retried with their key');
  assert.ok(ev('recovered').length >= 1, 'retried requests succeeded');
  assert.strictEqual(ev('internal_error').length, 0);
  const counts = {};
  for (const l of run.svc.lines) counts[l.event] = (counts[l.event] || 0) + 1;
  console.log(`service log events: ${JSON.stringify(counts)}`);
});
