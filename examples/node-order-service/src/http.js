'use strict';
// http.js: the HTTP API on Node's own http module.
//
//   POST /orders             Idempotency-Key header + JSON body -> place_order;
//                            the reply carries the order's access token
//   GET  /orders/:id         the order (replica first, then the primary), with
//                            its access token; 401 without one, 404 otherwise
//   GET  /orders/:id/events  server-sent events: the order's status now and
//                            every change until it is final (token as well)
//   GET  /events             server-sent events: every status change (operators)
//   GET  /health             200 with the LISTEN connection's state
//   POST /webhooks/stripe    Stripe-Signature checked -> apply_gateway_event
//   POST /webhooks/generic   Webhook-Signature checked -> apply_gateway_event
//   GET  /, /3ds             the checkout page, the fake gateway's 3-D Secure page
//   GET  /console, /console/api/...   the operator console (operators.js)

const http = require('http');
const { BadRequest, parseOrderRequest, FINAL_STATUSES } = require('./orders');
const { ServiceUnavailable } = require('./db');
const { verifySignature, SignatureError, SIGNATURE_HEADERS } = require('./webhooks');
const { tokenOf } = require('./capability');
const { Unauthorized } = require('./operators');
const { ConsoleError } = require('./console');
const { loadStatic } = require('./static');
const { completeFakeAction } = require('./fake_bank');

// SQLSTATE -> HTTP status for errors the client must fix
const CLIENT_ERRORS = {
  22023: 400,       // invalid_parameter_value (place_order's checks)
  22004: 400,       // null_value_not_allowed
  '22P02': 400,     // invalid_text_representation (also: a webhook body that is not JSON)
  22003: 400,       // numeric_value_out_of_range
  // idempotency key reused with a different request: 422, as the IETF
  // draft "The Idempotency-Key HTTP Header Field" recommends
  FT409: 422,
};

function sendJson(res, status, body, headers) {
  const text = JSON.stringify(body);
  res.writeHead(status, Object.assign({
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(text),
    'Cache-Control': 'no-store',
  }, headers || {}));
  res.end(text);
}

function readBody(req, limit) {
  return readRawBody(req, limit).then((buf) => buf.toString('utf8'));
}

// the body as bytes: a webhook signature covers them exactly
function readRawBody(req, limit) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      // past the limit the rest is read and dropped, so that the 413 can
      // still be sent on this connection
      if (size <= limit) chunks.push(c);
    });
    req.on('end', () => {
      if (size > limit) {
        const e = new BadRequest(`request body larger than ${limit} bytes`);
        e.status = 413;
        reject(e);
        return;
      }
      resolve(Buffer.concat(chunks));
    });
    req.on('error', reject);
  });
}

// the customer's view of an order: get_order()'s row, and where to go
// for an action_required step
function customerView(cfg, row, token) {
  const view = Object.assign({}, row);
  if (row.status === 'action_required') view.action_url = actionUrl(cfg, row, token);
  return view;
}

// actionUrl: the page the customer goes to for next_action: our own
// 3-D Secure page in front of the fake gateway, else the gateway's redirect
function actionUrl(cfg, row, token) {
  if (cfg.fakeGatewayUrl) return `/3ds?order=${row.order_id}&access_token=${encodeURIComponent(token)}`;
  const na = row.next_action;
  if (na && na.type === 'redirect_to_url' && na.redirect_to_url && /^https:\/\//.test(na.redirect_to_url.url || '')) {
    return na.redirect_to_url.url;
  }
  return null;
}

function createServer({ cfg, log, orders, listener, webhooks, capabilities, operators, consoleApi }) {
  const streams = new Set();      // open SSE responses
  const pages = loadStatic();

  function errorReply(res, err, ctx) {
    if (err instanceof Unauthorized) {
      return sendJson(res, 401, { error: 'unauthorized', message: err.message },
        { 'WWW-Authenticate': 'Basic realm="ft_orders console", charset="UTF-8"' });
    }
    if (err instanceof ConsoleError) return sendJson(res, err.status, err.body);
    if (err instanceof BadRequest) return sendJson(res, err.status || 400, { error: 'bad_request', message: err.message });
    if (err instanceof ServiceUnavailable) {
      return sendJson(res, 503, { error: 'unavailable', message: 'the database is not reachable; retry with the same Idempotency-Key' },
        { 'Retry-After': '1' });
    }
    const status = err.code && CLIENT_ERRORS[err.code];
    if (status) {
      return sendJson(res, status, {
        error: err.code === 'FT409' ? 'idempotency_key_reused' : 'invalid_request',
        sqlstate: err.code, message: err.message,
        ...(err.detail ? { detail: err.detail } : {}),
      });
    }
    log.error('internal_error', Object.assign({}, ctx, { code: err.code || null, error: err.message }));
    return sendJson(res, 500, { error: 'internal', message: 'internal error' });
  }

  async function postOrder(req, res) {
    const key = req.headers['idempotency-key'];
    if (key === undefined || key === '') {
      return sendJson(res, 400, { error: 'bad_request', message: 'the Idempotency-Key header is required' });
    }
    let args;
    try {
      const text = await readBody(req, cfg.maxBodyBytes);
      let body;
      try {
        body = JSON.parse(text);
      } catch (e) {
        throw new BadRequest(`request body is not valid JSON: ${e.message}`);
      }
      args = parseOrderRequest(body);
    } catch (err) {
      return errorReply(res, err, { op: 'place_order', key });
    }
    let row;
    try {
      row = await orders.placeOrder(key, args);
    } catch (err) {
      return errorReply(res, err, { op: 'place_order', key });
    }
    // 202: accepted, the payment happens asynchronously; a replay of an
    // order already settled gets 200
    const status = FINAL_STATUSES.has(row.status) ? 200 : 202;
    const token = capabilities.tokenFor(row.order_id);
    return sendJson(res, status, Object.assign({}, row, { access_token: token }),
      { Location: `/orders/${row.order_id}?access_token=${token}` });
  }

  // the order's capability: 401 without a token, 404 for a wrong one (as
  // for an unknown order: an id alone tells nothing); true when allowed
  function allowed(req, res, url, id) {
    const token = tokenOf(req, url);
    if (!token) {
      sendJson(res, 401, { error: 'unauthorized', message: 'the order\'s access_token is required' }, { 'WWW-Authenticate': 'Bearer' });
      return null;
    }
    if (!capabilities.allows(id, token)) {
      sendJson(res, 404, { error: 'not_found', message: `no order ${id}` });
      return null;
    }
    return token;
  }

  async function getOrder(req, res, url, id) {
    const token = allowed(req, res, url, id);
    if (!token) return undefined;
    let row;
    try {
      row = await orders.getOrder(id);
    } catch (err) {
      return errorReply(res, err, { op: 'get_order', order_id: id });
    }
    if (!row) return sendJson(res, 404, { error: 'not_found', message: `no order ${id}` });
    return sendJson(res, 200, customerView(cfg, row, token));
  }

  // POST /orders/:id/3ds: the fake gateway's 3-D Secure step, done
  async function completeAction(req, res, url, id) {
    const token = allowed(req, res, url, id);
    if (!token) return undefined;
    if (!cfg.fakeGatewayUrl) return sendJson(res, 404, { error: 'not_found', message: 'no fake gateway configured' });
    try {
      const row = await orders.getOrder(id, { primaryOnly: true });
      if (!row) return sendJson(res, 404, { error: 'not_found', message: `no order ${id}` });
      if (row.status !== 'action_required') {
        return sendJson(res, 409, { error: 'no_action', message: `the order is ${row.status}`, status: row.status });
      }
      const status = await completeFakeAction(cfg.fakeGatewayUrl, row.payment_key);
      log.info('fake_3ds_completed', { order_id: row.order_id, gateway_status: status });
      return sendJson(res, status === 200 ? 200 : 502, { completed: status === 200, gateway_status: status });
    } catch (err) {
      return errorReply(res, err, { op: 'complete_action', order_id: id });
    }
  }

  // POST /webhooks/{provider}: 400 and nothing written unless the
  // signature is good; 200 only once apply_gateway_event committed; a
  // database outage is a 503, which the gateway retries later
  async function postWebhook(req, res, provider) {
    const secret = cfg.webhookSecrets[provider];
    if (!secret) return sendJson(res, 404, { error: 'not_found', message: `no ${provider} webhook secret configured` });
    let raw;
    try {
      raw = await readRawBody(req, cfg.maxBodyBytes);
      verifySignature(raw, req.headers[SIGNATURE_HEADERS[provider]], secret, cfg.webhookToleranceS);
    } catch (err) {
      if (err instanceof SignatureError) {
        log.warn('webhook_rejected', { provider, reason: err.message });
        return sendJson(res, 400, { error: 'bad_signature', message: err.message });
      }
      return errorReply(res, err, { op: 'webhook', provider });
    }
    let applied;
    try {
      applied = await webhooks.applyEvent(provider, raw.toString('utf8'));
    } catch (err) {
      return errorReply(res, err, { op: 'apply_gateway_event', provider });
    }
    log.info('webhook', { provider, applied });
    return sendJson(res, 200, { received: true, applied });
  }

  function sseOpen(req, res) {
    res.writeHead(200, {
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-store',
      Connection: 'keep-alive',
      'X-Accel-Buffering': 'no',
    });
    res.write('retry: 1000\n\n');
    const beat = setInterval(() => res.write(': keep-alive\n\n'), cfg.sseHeartbeatMs);
    const stream = { res, close: null };
    streams.add(stream);
    const cleanups = [() => clearInterval(beat), () => streams.delete(stream)];
    let closed = false;
    stream.close = () => {
      if (closed) return;
      closed = true;
      cleanups.forEach((f) => f());
      res.end();
    };
    // 'close' on the response: the client went away (or we ended it)
    res.on('close', stream.close);
    res.on('error', stream.close);
    return { send: (event, data) => !closed && res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`), onClose: (f) => cleanups.push(f), close: stream.close };
  }

  async function orderEvents(req, res, url, id) {
    const token = allowed(req, res, url, id);
    if (!token) return undefined;
    // subscribe first, so that no change between the read and the
    // subscription is missed; the (status, attempts) pair dedupes
    const pending = [];
    let sse = null;
    let last = null;
    const deliver = (ev) => {
      const sig = `${ev.status}/${ev.attempts}`;
      if (sig === last) return;
      last = sig;
      const view = ev.customer_id !== undefined ? customerView(cfg, ev, token)
        : { order_id: ev.order_id, status: ev.status, attempts: ev.attempts };
      sse.send('status', { order_id: view.order_id, status: view.status, attempts: view.attempts,
        ...(view.next_action ? { next_action: view.next_action, action_url: view.action_url } : {}) });
      if (FINAL_STATUSES.has(ev.status)) {
        sse.send('end', { order_id: ev.order_id, status: ev.status });
        sse.close();
      }
    };
    // a notification says only that the order changed: its details come
    // from get_order() on the primary (the replica may not have the change
    // yet), one read at a time so that they arrive in order; without the
    // database, the notification's status is sent as it is
    let chain = Promise.resolve();
    const onStatus = (ev) => {
      if (String(ev.order_id) !== String(id)) return;
      if (!sse) { pending.push(ev); return; }
      chain = chain.then(async () => {
        let row = null;
        try {
          row = await orders.getOrder(id, { primaryOnly: true });
        } catch (err) {
          log.warn('event_read_failed', { order_id: id, error: err.message });
        }
        deliver(row || { order_id: ev.order_id, status: ev.status, attempts: ev.attempts });
      });
    };
    const resync = async () => {
      // notifications sent while the LISTEN connection was down are lost:
      // read the order again on the primary
      try {
        const row = await orders.getOrder(id, { primaryOnly: true });
        if (row && sse) deliver(row);
      } catch (err) {
        log.warn('resync_failed', { order_id: id, error: err.message });
      }
    };
    listener.on('status', onStatus);
    let row;
    try {
      row = await orders.getOrder(id);
    } catch (err) {
      listener.off('status', onStatus);
      return errorReply(res, err, { op: 'get_order', order_id: id });
    }
    if (!row) {
      listener.off('status', onStatus);
      return sendJson(res, 404, { error: 'not_found', message: `no order ${id}` });
    }
    sse = sseOpen(req, res);
    listener.on('resync', resync);
    sse.onClose(() => { listener.off('status', onStatus); listener.off('resync', resync); });
    deliver(row);
    pending.forEach(onStatus);
    return undefined;
  }

  async function allEvents(req, res) {
    try {
      await operators.authenticate(req);
    } catch (err) {
      return errorReply(res, err, { op: 'events' });
    }
    const sse = sseOpen(req, res);
    // the notification's public part only
    const onStatus = (ev) => sse.send('status', { order_id: ev.order_id, status: ev.status, attempts: ev.attempts });
    // tell the client that it may have missed changes (and how long the
    // service listened to nothing)
    const onResync = (info) => sse.send('gap', info);
    listener.on('status', onStatus);
    listener.on('resync', onResync);
    sse.onClose(() => { listener.off('status', onStatus); listener.off('resync', onResync); });
    return undefined;
  }

  // the console: every request signed in (HTTP Basic, the operator's
  // database role); actions need the console's own header, which a
  // cross-site form or image cannot send
  async function consoleRoute(req, res, url, path) {
    let op;
    try {
      op = await operators.authenticate(req);
    } catch (err) {
      return errorReply(res, err, { op: 'console' });
    }
    if (path === '/console' || path === '/console/') return route(req, res, 'GET', () => pages.send(res, 'console.html'));
    let m = /^\/console\/([a-z0-9_-]+\.(?:js|css))$/.exec(path);
    if (m && pages.has(m[1])) return route(req, res, 'GET', () => pages.send(res, m[1]));
    const run = (fn) => Promise.resolve().then(fn).then((body) => sendJson(res, 200, body), (err) => errorReply(res, err, { op: 'console', path }));
    const action = (fn) => route(req, res, 'POST', async () => {
      if (req.headers['x-console-action'] !== '1') {
        return sendJson(res, 403, { error: 'forbidden', message: 'console actions need the X-Console-Action header' });
      }
      let body;
      try {
        const text = await readBody(req, 65536);
        body = text === '' ? {} : JSON.parse(text);
        if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new Error('not an object');
      } catch (e) {
        return sendJson(res, 400, { error: 'bad_request', message: 'the body must be a JSON object' });
      }
      return run(() => fn(body));
    });
    const idOk = (s) => /^[1-9]\d{0,17}$/.test(s);
    if (path === '/console/api/overview') return route(req, res, 'GET', () => run(() => consoleApi.overview(op)));
    if (path === '/console/api/dead_letters') return route(req, res, 'GET', () => run(() => consoleApi.deadLetters(op)));
    if (path === '/console/api/search') return route(req, res, 'GET', () => run(() => consoleApi.search(op, url.searchParams.get('q'))));
    if ((m = /^\/console\/api\/orders\/(\d+)$/.exec(path)) && idOk(m[1])) {
      return route(req, res, 'GET', () => run(() => consoleApi.order(op, m[1], url.searchParams.get('fresh') === '1')));
    }
    if ((m = /^\/console\/api\/dead_letters\/(\d+)\/requeue$/.exec(path)) && idOk(m[1])) {
      return action(() => consoleApi.requeue(op, m[1]));
    }
    if ((m = /^\/console\/api\/orders\/(\d+)\/cancel$/.exec(path)) && idOk(m[1])) {
      return action((b) => {
        if (b.reason !== undefined && b.reason !== null && typeof b.reason !== 'string') throw new BadRequest('reason must be a string');
        return consoleApi.cancel(op, m[1], b.reason || null);
      });
    }
    if ((m = /^\/console\/api\/orders\/(\d+)\/refund$/.exec(path)) && idOk(m[1])) {
      return action((b) => {
        const amount = b.amount_minor === undefined || b.amount_minor === null || b.amount_minor === '' ? null : b.amount_minor;
        if (amount !== null && !Number.isSafeInteger(amount)) throw new BadRequest('amount_minor must be an integer (minor units)');
        if (typeof b.idempotency_key !== 'string') throw new BadRequest('idempotency_key is required (one per refund the operator confirms)');
        return consoleApi.refund(op, m[1], amount, b.idempotency_key);
      });
    }
    return sendJson(res, 404, { error: 'not_found', message: `no route ${path}` });
  }

  function route(req, res, method, fn) {
    if (req.method !== method && !(method === 'GET' && req.method === 'HEAD')) {
      return sendJson(res, 405, { error: 'method_not_allowed', message: `use ${method}` }, { Allow: method });
    }
    return fn();
  }

  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://localhost');
    const path = url.pathname;
    let m;
    const route = (method, fn) => {
      if (req.method !== method) return sendJson(res, 405, { error: 'method_not_allowed', message: `use ${method}` }, { Allow: method });
      return fn();
    };
    const page = (name) => route('GET', () => pages.send(res, name));
    const badId = () => sendJson(res, 400, { error: 'bad_request', message: 'order id must be a positive integer' });
    Promise.resolve().then(() => {
      if (path === '/orders') return route('POST', () => postOrder(req, res));
      if ((m = /^\/orders\/([^/]+)$/.exec(path))) {
        return route('GET', () => (/^[1-9]\d{0,17}$/.test(m[1]) ? getOrder(req, res, url, m[1]) : badId()));
      }
      if ((m = /^\/orders\/([^/]+)\/events$/.exec(path))) {
        return route('GET', () => (/^[1-9]\d{0,17}$/.test(m[1]) ? orderEvents(req, res, url, m[1]) : badId()));
      }
      if ((m = /^\/orders\/([^/]+)\/3ds$/.exec(path))) {
        return route('POST', () => (/^[1-9]\d{0,17}$/.test(m[1]) ? completeAction(req, res, url, m[1]) : badId()));
      }
      if (path === '/' || path === '/index.html') return page('index.html');
      if (path === '/3ds') return page('3ds.html');
      if (/^\/[a-z0-9_-]+\.(?:js|css)$/.test(path) && pages.has(path.slice(1)) && !path.startsWith('/console')) {
        return page(path.slice(1));
      }
      if (path === '/console' || path.startsWith('/console/')) return consoleRoute(req, res, url, path);
      if (path === '/events') return route('GET', () => allEvents(req, res));
      if ((m = /^\/webhooks\/(stripe|generic)$/.exec(path))) return route('POST', () => postWebhook(req, res, m[1]));
      if (path === '/health') {
        return route('GET', () => sendJson(res, 200, { status: 'ok', listening: listener.connected, primary: listener.server }));
      }
      return sendJson(res, 404, { error: 'not_found', message: `no route ${path}` });
    }).catch((err) => {
      log.error('internal_error', { path, error: err.stack || err.message });
      if (!res.headersSent) sendJson(res, 500, { error: 'internal', message: 'internal error' });
      else res.end();
    });
  });

  server.closeStreams = () => { for (const s of [...streams]) s.close(); };
  return server;
}

module.exports = { createServer, CLIENT_ERRORS };
