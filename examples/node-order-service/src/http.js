'use strict';
// http.js: the HTTP API on Node's own http module.
//
//   POST /orders             Idempotency-Key header + JSON body -> place_order
//   GET  /orders/:id         the order (replica first, then the primary), 404
//   GET  /orders/:id/events  server-sent events: the order's status now and
//                            every change until it is final
//   GET  /events             server-sent events: every status change
//   GET  /health             200 with the LISTEN connection's state
//   POST /webhooks/stripe    Stripe-Signature checked -> apply_gateway_event
//   POST /webhooks/generic   Webhook-Signature checked -> apply_gateway_event

const http = require('http');
const { BadRequest, parseOrderRequest, FINAL_STATUSES } = require('./orders');
const { ServiceUnavailable } = require('./db');
const { verifySignature, SignatureError, SIGNATURE_HEADERS } = require('./webhooks');

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

function createServer({ cfg, log, orders, listener, webhooks }) {
  const streams = new Set();      // open SSE responses

  function errorReply(res, err, ctx) {
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
    return sendJson(res, status, row, { Location: `/orders/${row.order_id}` });
  }

  async function getOrder(res, id) {
    let row;
    try {
      row = await orders.getOrder(id);
    } catch (err) {
      return errorReply(res, err, { op: 'get_order', order_id: id });
    }
    if (!row) return sendJson(res, 404, { error: 'not_found', message: `no order ${id}` });
    return sendJson(res, 200, row);
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

  async function orderEvents(req, res, id) {
    // subscribe first, so that no change between the read and the
    // subscription is missed; the (status, attempts) pair dedupes
    const pending = [];
    let sse = null;
    let last = null;
    const deliver = (ev) => {
      const sig = `${ev.status}/${ev.attempts}`;
      if (sig === last) return;
      last = sig;
      sse.send('status', { order_id: ev.order_id, status: ev.status, attempts: ev.attempts });
      if (FINAL_STATUSES.has(ev.status)) {
        sse.send('end', { order_id: ev.order_id, status: ev.status });
        sse.close();
      }
    };
    const onStatus = (ev) => {
      if (String(ev.order_id) !== String(id)) return;
      if (sse) deliver(ev); else pending.push(ev);
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
    pending.forEach(deliver);
    return undefined;
  }

  function allEvents(req, res) {
    const sse = sseOpen(req, res);
    const onStatus = (ev) => sse.send('status', ev);
    // tell the client that it may have missed changes (and how long the
    // service listened to nothing)
    const onResync = (info) => sse.send('gap', info);
    listener.on('status', onStatus);
    listener.on('resync', onResync);
    sse.onClose(() => { listener.off('status', onStatus); listener.off('resync', onResync); });
  }

  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://localhost');
    const path = url.pathname;
    let m;
    const route = (method, fn) => {
      if (req.method !== method) return sendJson(res, 405, { error: 'method_not_allowed', message: `use ${method}` }, { Allow: method });
      return fn();
    };
    const badId = () => sendJson(res, 400, { error: 'bad_request', message: 'order id must be a positive integer' });
    Promise.resolve().then(() => {
      if (path === '/orders') return route('POST', () => postOrder(req, res));
      if ((m = /^\/orders\/([^/]+)$/.exec(path))) {
        return route('GET', () => (/^[1-9]\d{0,17}$/.test(m[1]) ? getOrder(res, m[1]) : badId()));
      }
      if ((m = /^\/orders\/([^/]+)\/events$/.exec(path))) {
        return route('GET', () => (/^[1-9]\d{0,17}$/.test(m[1]) ? orderEvents(req, res, m[1]) : badId()));
      }
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
