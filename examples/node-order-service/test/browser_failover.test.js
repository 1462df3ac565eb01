'use strict';
// browser_failover.test.js: a failover of the cluster while a customer's
// checkout page and an operator's console are open in chromium.  The page
// never shows an error (only "placing", "pending", "delayed", then "paid"),
// the order is paid once (one row, one charge in the ledger), and the
// console says it is read-only while no primary answers, then not any more.
// Run by tests/cluster/node_service.sh after the other tests; needs what
// failover.test.js needs plus FT_CHROMIUM and FT_BROWSER_OUT.

const { test, before, after } = require('node:test');
const assert = require('node:assert');
const path = require('path');
const { spawn } = require('child_process');
const pg = require('pg');
const { dbEnv, startService, request, sleep, keyPrefix } = require('./helpers');

const env = dbEnv();
const need = ['FT_WRITE_PORT', 'FT_FAILOVER_CMD', 'FT_GATEWAY_URL', 'FT_CHECK_PASSWORD', 'FT_CHROMIUM', 'FT_BROWSER_OUT']
  .filter((k) => !process.env[k]);
const skip = need.length ? `not set: ${need.join(', ')}` : false;
const GW = process.env.FT_GATEWAY_URL ? new URL(process.env.FT_GATEWAY_URL) : null;
const customer = keyPrefix('browser-failover');
const CALM = new Set(['placing', 'pending', 'delayed', 'paid']);

let svc;
let browser;

async function checkQuery(sql, params) {
  const c = new pg.Client({
    host: process.env.FT_WRITE_HOST || '127.0.0.1', port: Number(process.env.FT_WRITE_PORT),
    database: process.env.FT_DATABASE || 'ftdb', user: process.env.FT_CHECK_USER || 'postgres',
    password: process.env.FT_CHECK_PASSWORD, connectionTimeoutMillis: 5000,
  });
  await c.connect();
  try { return (await c.query(sql, params)).rows; } finally { await c.end(); }
}
const gw = (method, p, body) => request(Number(GW.port), method, p, body === undefined ? {} : { body });

before(async () => {
  if (skip) return;
  svc = await startService(Object.assign({}, env, { FT_ORDER_TOKEN_SECRET: 'browser-failover-token-key' }),
    process.env.FT_SERVICE_LOG || null);
  const { chromium } = require('playwright-core');
  browser = await chromium.launch({
    executablePath: process.env.FT_CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'],
  });
});

after(async () => {
  if (skip) return;
  if (browser) await browser.close().catch(() => {});
  if (svc) await svc.stop();
  await gw('DELETE', '/faults').catch(() => {});
});

test('3. failover with the checkout and the console open: no error on the page, the order paid once', { skip }, async () => {
  const base = `http://127.0.0.1:${svc.port}`;
  assert.ok((await gw('POST', '/faults', { latency_ms: 500 })).status < 300);
  const shop = await (await browser.newContext()).newPage();
  await shop.goto(`${base}/`);
  await shop.fill('#customer', customer);
  await shop.fill('#amount', '12.34');

  const ops = await (await browser.newContext({
    httpCredentials: { username: process.env.FT_CHECK_USER || 'postgres', password: process.env.FT_CHECK_PASSWORD },
  })).newPage();
  await ops.goto(`${base}/console`);
  await ops.waitForFunction(() => /^updated/.test(document.getElementById('updated').textContent), null, { timeout: 10000 });

  // watch both pages while the leader fails
  const seen = new Set();
  const banners = [];
  let errorShown = false;
  let watching = true;
  const watch = (async () => {
    while (watching) {
      try {
        seen.add(await shop.getAttribute('#status', 'data-status'));
        if (await shop.isVisible('#form-error')) errorShown = true;
        if (await ops.isVisible('#banner')) banners.push(await ops.textContent('#banner'));
      } catch (e) { /* a page between two renders */ }
      await sleep(100);
    }
  })();
  // the customer pays right after the leader's postmaster was killed: the
  // order is placed across the failover (the service's and the page's own
  // retries, one idempotency key)
  let result;
  try {
    const fault = runFailover();
    await fault.killed;
    await shop.click('#pay');
    result = await fault.done;
    assert.ok(!result.error, `failover: ${JSON.stringify(result)}`);
    await shop.waitForSelector('#status[data-status="paid"]', { timeout: 60000 });
    await ops.waitForSelector('#banner', { state: 'hidden', timeout: 30000 });
  } finally {
    watching = false;
    await watch;
  }
  await shop.screenshot({ path: path.join(process.env.FT_BROWSER_OUT, 'failover-checkout.png') });

  const odd = [...seen].filter((s) => s && !CALM.has(s));
  assert.deepStrictEqual(odd, [], `the page showed only ${[...CALM].join(', ')} (saw ${[...seen].join(', ')})`);
  assert.ok(!errorShown, 'no error message on the checkout');
  assert.ok(banners.some((b) => /read-only/i.test(b)), `the console said it was read-only during the failover (banners: ${JSON.stringify(banners.slice(0, 3))})`);
  const rows = await checkQuery('SELECT order_id, idempotency_key, status::text AS status, payment_key::text AS pk FROM ft_orders.orders WHERE customer_id = $1', [customer]);
  assert.strictEqual(rows.length, 1, 'one order');
  assert.strictEqual(rows[0].status, 'paid');
  const ledger = (await gw('GET', `/ledger/${rows[0].pk}`)).body;
  assert.strictEqual(ledger.charges, 1, `charged once: ${JSON.stringify(ledger)}`);
  const retries = svc.lines.filter((l) => l.key === rows[0].idempotency_key && (l.event === 'retry' || l.event === 'recovered')).length;
  diagLine(`statuses seen: ${[...seen].filter(Boolean).join(', ')}; leader promoted in ${result.promoted_s} s; ` +
    `the service retried this order's place_order ${retries} times`);
});

// runFailover(): {killed, done}: killed resolves once the fault is done
// (the command's "... of leader nN" line), done with its JSON result
function runFailover() {
  let killed;
  const out = { killed: new Promise((r) => { killed = r; }) };
  out.done = new Promise((resolve) => {
    const child = spawn('bash', ['-c', process.env.FT_FAILOVER_CMD], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), 120000);
    child.stdout.on('data', (c) => { stdout += c; });
    child.stderr.on('data', (c) => {
      stderr += c;
      if (/ of leader n\d/.test(stderr)) killed();
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      killed();
      const last = stdout.trim().split('\n').pop() || '';
      let res;
      try { res = JSON.parse(last); } catch (e) { res = { error: `${stdout} ${stderr}` }; }
      if (code !== 0) res.error = `exit ${code}: ${stdout} ${stderr}`;
      resolve(res);
    });
  });
  return out;
}

function diagLine(text) {
  process.stdout.write(`${text}\n`);
}
