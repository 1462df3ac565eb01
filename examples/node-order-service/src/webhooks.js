'use strict';
// webhooks.js: the gateway's webhooks.  The receiver authenticates the
// gateway; ft_orders.apply_gateway_event does the rest (records the event
// once by its id, applies it unless it is a repeat or history).
//
//   verifySignature: the Stripe scheme, used for both providers: header
//     "t=<unix seconds>,v1=<hex>[,v1=<hex>...]", where v1 is HMAC-SHA256 of
//     "<t>.<raw body>" keyed with the endpoint secret; any one v1 may match
//     (Stripe sends several while a secret is being rolled); t must be
//     within the tolerance of our clock (replays of old deliveries fail);
//     compared in constant time (crypto.timingSafeEqual).
//   applyEvent: the function, through the write pool, retried with backoff
//     on connection errors like place_order (safe: the event id makes a
//     repeat a no-op).  Resolves only after the COMMIT, so a 2xx to the
//     gateway means the event is durable.

const crypto = require('crypto');
const { query, withRetry } = require('./db');

// header names per provider (the generic gateway signs the Stripe way)
const SIGNATURE_HEADERS = { stripe: 'stripe-signature', generic: 'webhook-signature' };

class SignatureError extends Error {}

// parseSignatureHeader(value): {t, v1: [Buffer]}; throws SignatureError
function parseSignatureHeader(value) {
  if (typeof value !== 'string' || value.length === 0) throw new SignatureError('no signature header');
  if (value.length > 4096) throw new SignatureError('signature header too long');
  let t = null;
  const v1 = [];
  for (const part of value.split(',')) {
    const eq = part.indexOf('=');
    if (eq <= 0) continue;
    const k = part.slice(0, eq).trim();
    const v = part.slice(eq + 1).trim();
    if (k === 't') {
      if (!/^\d{1,12}$/.test(v)) throw new SignatureError('malformed timestamp');
      t = Number(v);
    } else if (k === 'v1' && /^[0-9a-f]{64}$/i.test(v)) {
      v1.push(Buffer.from(v, 'hex'));
    }
    // other schemes (v0: Stripe's test-mode SHA-1) are ignored, as Stripe's libraries do
  }
  if (t === null) throw new SignatureError('no timestamp in the signature header');
  if (v1.length === 0) throw new SignatureError('no v1 signature in the signature header');
  return { t, v1 };
}

// verifySignature(rawBody: Buffer, header, secret, toleranceS, nowS): the
// timestamp; throws SignatureError
function verifySignature(rawBody, header, secret, toleranceS, nowS = Math.floor(Date.now() / 1000)) {
  const { t, v1 } = parseSignatureHeader(header);
  if (Math.abs(nowS - t) > toleranceS) throw new SignatureError(`timestamp outside the tolerance of ${toleranceS} s`);
  const expected = crypto.createHmac('sha256', secret).update(`${t}.`).update(rawBody).digest();
  // every candidate is compared (no early exit on the first match)
  let match = false;
  for (const sig of v1) {
    if (sig.length === expected.length && crypto.timingSafeEqual(sig, expected)) match = true;
  }
  if (!match) throw new SignatureError('no v1 signature matches');
  return t;
}

// signPayload(rawBody, secret, t): the header value, for tests and tools
function signPayload(rawBody, secret, t = Math.floor(Date.now() / 1000)) {
  const mac = crypto.createHmac('sha256', secret).update(`${t}.`).update(rawBody).digest('hex');
  return `t=${t},v1=${mac}`;
}

function makeWebhooks(cfg, log, db) {
  const pool = db.webhook || db.write;
  if (!db.webhook && (cfg.webhookSecrets.stripe || cfg.webhookSecrets.generic)) {
    // works, but the role that places orders can then also declare them paid
    log.warn('webhook_role_shared', { user: cfg.user, hint: 'set FT_WEBHOOK_USER to a role of its own' });
  }
  // applyEvent(provider, text): true when the event changed an order or refund
  async function applyEvent(provider, text) {
    return withRetry(cfg, log, { op: 'apply_gateway_event', provider }, async () => {
      const res = await query(pool, 'SELECT ft_orders.apply_gateway_event($1, $2::jsonb) AS applied', [provider, text]);
      return res.rows[0].applied;
    });
  }
  return { applyEvent };
}

module.exports = {
  makeWebhooks, verifySignature, parseSignatureHeader, signPayload, SignatureError, SIGNATURE_HEADERS,
};
