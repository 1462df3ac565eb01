'use strict';
// operators.js: who may use the console and the all-orders event stream.
//
// An operator signs in with HTTP Basic authentication using their own
// PostgreSQL role and password: the service checks the pair by connecting
// as that role, and every console query and action then runs on a pool of
// connections of that role.  So the console never has more rights than the
// operator has in psql, and PostgreSQL's own grants (and its log of who did
// what) are the only access control.  A checked credential is trusted for
// cfg.operatorRecheckMs, then checked again; at most cfg.operatorPools
// operators' pools are kept (the least recently used one is closed).

const crypto = require('crypto');
const { makePool, query, isRetryable, ServiceUnavailable } = require('./db');

class Unauthorized extends Error {}

// SQLSTATEs of a refused sign-in
const AUTH_FAILED = new Set(['28P01', '28000', '42704']);

// basicCredentials(header): {user, password} or null
function basicCredentials(header) {
  if (typeof header !== 'string' || !/^Basic /i.test(header)) return null;
  const text = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
  const colon = text.indexOf(':');
  if (colon <= 0) return null;
  const user = text.slice(0, colon);
  const password = text.slice(colon + 1);
  if (user.length > 63 || password.length > 1024 || /[\0]/.test(user + password)) return null;
  return { user, password };
}

function makeOperators(cfg, log) {
  const entries = new Map();     // sha256(user, password) -> entry

  function newEntry(creds) {
    const opts = (side) => ({ name: `console-${side}`, max: 3, creds });
    return {
      user: creds.user,
      write: makePool(cfg, 'write', log, opts('write')),
      read: makePool(cfg, 'read', log, opts('read')),
      checkedAt: 0,
      usedAt: Date.now(),
    };
  }

  function close(id) {
    const e = entries.get(id);
    if (!e) return;
    entries.delete(id);
    e.write.end().catch(() => {});
    e.read.end().catch(() => {});
  }

  // authenticate(req): the operator ({user, write, read}); throws
  // Unauthorized (401) or ServiceUnavailable (no server to check with)
  async function authenticate(req) {
    const creds = basicCredentials(req.headers.authorization);
    if (!creds) throw new Unauthorized('sign in with your database role');
    const id = crypto.createHash('sha256').update(creds.user).update('\0').update(creds.password).digest('hex');
    let e = entries.get(id);
    if (!e) {
      e = newEntry(creds);
      entries.set(id, e);
      if (entries.size > cfg.operatorPools) {
        const oldest = [...entries.entries()].sort((a, b) => a[1].usedAt - b[1].usedAt)[0][0];
        close(oldest);
      }
    }
    e.usedAt = Date.now();
    if (Date.now() - e.checkedAt < cfg.operatorRecheckMs) return e;
    // check on the read side first (a replica answers during a failover),
    // then the write side
    let lastErr = null;
    for (const pool of [e.read, e.write]) {
      try {
        await query(pool, 'SELECT 1', []);
        e.checkedAt = Date.now();
        return e;
      } catch (err) {
        if (AUTH_FAILED.has(err.code)) {
          close(id);
          log.warn('operator_refused', { user: creds.user, code: err.code });
          throw new Unauthorized('the database refused this role or password');
        }
        if (!isRetryable(err)) throw err;
        lastErr = err;
      }
    }
    throw new ServiceUnavailable(lastErr, 2, 0);
  }

  async function end() {
    for (const id of [...entries.keys()]) close(id);
  }

  return { authenticate, end };
}

module.exports = { makeOperators, basicCredentials, Unauthorized };
