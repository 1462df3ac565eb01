'use strict';
// capability.js: the customer's access to one order.  POST /orders returns
// an access token, HMAC-SHA256(key, "order:<id>") in base64url: whoever
// holds it may read and follow that order, nobody else (order ids are
// sequential, so an id alone proves nothing).  Stateless: a replay of the
// order's idempotency key gets the same token, on any instance of the
// service that has the same key (FT_ORDER_TOKEN_SECRET).

const crypto = require('crypto');

function makeCapabilities(cfg, log) {
  let key = cfg.orderTokenSecret;
  if (key === null) {
    key = crypto.randomBytes(32).toString('hex');
    log.warn('order_token_secret_random', { hint: 'set FT_ORDER_TOKEN_SECRET: tokens given out now stop working when the service restarts' });
  }

  // tokenFor(orderId): the order's access token
  function tokenFor(orderId) {
    return crypto.createHmac('sha256', key).update(`order:${orderId}`).digest('base64url');
  }

  // allows(orderId, token): true when token is the order's; constant time
  function allows(orderId, token) {
    if (typeof token !== 'string' || token.length === 0 || token.length > 128) return false;
    const want = Buffer.from(tokenFor(orderId));
    const got = Buffer.from(token);
    return got.length === want.length && crypto.timingSafeEqual(got, want);
  }

  return { tokenFor, allows };
}

// tokenOf(req, url): the token a request carries, as "Authorization: Bearer
// <token>" or ?access_token= (EventSource cannot set headers)
function tokenOf(req, url) {
  const auth = req.headers.authorization;
  if (typeof auth === 'string' && /^Bearer /i.test(auth)) return auth.slice(7).trim();
  return url.searchParams.get('access_token');
}

module.exports = { makeCapabilities, tokenOf };
