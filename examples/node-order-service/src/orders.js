'use strict';
// orders.js: the two database operations of the service.
//   placeOrder: ft_orders.place_order through the write pool, retried with
//               the SAME idempotency key on connection errors (a retry after
//               a commit whose reply was lost returns the order, replayed)
//   getOrder:   ft_orders.get_order through the read pool, then the write
//               pool when the replica does not have the order (yet) or
//               cannot be reached

const { query, withRetry, isRetryable } = require('./db');

// settled: the payment's outcome is known (an event stream ends there; a
// later refund, or a late success reported by webhook, is read with GET);
// pending and action_required (the customer's move) are not
const FINAL_STATUSES = new Set(['paid', 'declined', 'failed', 'canceled', 'refunded', 'partially_refunded']);

class BadRequest extends Error {}

const ORDER_COLUMNS = [
  'order_id', 'idempotency_key', 'customer_id', 'amount_minor', 'currency', 'items',
  'payment_method', 'payment_key', 'status', 'attempts', 'payment_id', 'last_error',
  'created_at', 'updated_at', 'next_action', 'client_secret',
];

// parseOrderRequest(body): the place_order arguments of a POST /orders body.
// Only types are checked here; ranges, lengths and the currency code are
// place_order's job (its 22023/22004 messages reach the client as they are).
function parseOrderRequest(body) {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new BadRequest('request body must be a JSON object');
  }
  const known = new Set(['customer_id', 'amount_minor', 'currency', 'items', 'payment_method']);
  for (const k of Object.keys(body)) {
    if (!known.has(k)) throw new BadRequest(`unknown field "${k}"`);
  }
  const { customer_id: customerId, amount_minor: amount, currency } = body;
  if (customerId !== undefined && customerId !== null && typeof customerId !== 'string') {
    throw new BadRequest('customer_id must be a string');
  }
  if (amount !== undefined && amount !== null && !Number.isSafeInteger(amount)) {
    throw new BadRequest('amount_minor must be an integer (minor units, e.g. cents)');
  }
  if (currency !== undefined && currency !== null && typeof currency !== 'string') {
    throw new BadRequest('currency must be a string');
  }
  const items = body.items === undefined ? [] : body.items;
  if (items !== null && !Array.isArray(items)) throw new BadRequest('items must be a JSON array');
  const pm = body.payment_method === undefined ? null : body.payment_method;
  if (pm !== null && typeof pm !== 'string') throw new BadRequest('payment_method must be a string');
  // undefined -> NULL: place_order answers 22004 naming the argument
  return [
    customerId === undefined ? null : customerId,
    amount === undefined ? null : amount,
    currency === undefined ? null : currency,
    items === null ? null : JSON.stringify(items),
    pm,
  ];
}

function makeOrders(cfg, log, db) {
  async function placeOrder(key, args) {
    return withRetry(cfg, log, { op: 'place_order', key }, async () => {
      const res = await query(db.write,
        'SELECT order_id, status::text AS status, replayed FROM ft_orders.place_order($1, $2, $3, $4, $5::jsonb, $6)',
        [key, ...args]);
      return res.rows[0];
    });
  }

  const getSql = `SELECT ${ORDER_COLUMNS.map((c) => `o.${c}`).join(', ')} FROM ft_orders.get_order($1) o`;

  async function fetchOne(pool, id) {
    const res = await query(pool, getSql, [id]);
    const row = res.rows[0];
    return row && row.order_id !== null ? row : null;
  }

  // getOrder(id, opts): the order or null; opts.primaryOnly skips the replica
  async function getOrder(id, opts = {}) {
    return withRetry(cfg, log, { op: 'get_order', order_id: id }, async () => {
      if (!opts.primaryOnly) {
        try {
          const row = await fetchOne(db.read, id);
          if (row) return row;
        } catch (err) {
          if (!isRetryable(err)) throw err;
          // no replica reachable: the primary serves the read
          log.warn('read_fallback', { order_id: id, code: err.code || null, error: err.message });
        }
      }
      // not on the replica: not replayed there yet (replicas apply WAL a
      // little after the commit returned), or really unknown
      return fetchOne(db.write, id);
    });
  }

  return { placeOrder, getOrder };
}

module.exports = { makeOrders, parseOrderRequest, BadRequest, FINAL_STATUSES };
