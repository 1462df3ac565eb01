'use strict';
// events.js: one dedicated connection through the write port that LISTENs
// on ft_orders_events (NOTIFY is not replicated: only the leader has the
// notifications), re-established after a failover.
//
// Emits 'status' with the NOTIFY payload ({order_id, status, attempts}) and
// 'resync' ({gap_ms}) after a reconnect: notifications sent while no
// connection listened are lost, so consumers re-read what they care about.

const { EventEmitter } = require('events');
const pg = require('pg');
const { clientOptions, backoffMs, sleep } = require('./db');

const CHANNEL = 'ft_orders_events';
const PING_MS = 2000;

class StatusListener extends EventEmitter {
  constructor(cfg, log) {
    super();
    this.cfg = cfg;
    this.log = log;
    this.client = null;
    this.connected = false;
    this.stopped = false;
    this.server = null;         // "host:port" of the node listened on
    this.lostAt = null;
    this.pingTimer = null;
    this.loop = null;
  }

  start() {
    this.loop = this.run();
    return this.loop;
  }

  async stop() {
    this.stopped = true;
    clearInterval(this.pingTimer);
    if (this.client) await this.client.end().catch(() => {});
  }

  // connect and LISTEN until it works, then wait until the connection is lost; repeat
  async run() {
    const retryCfg = { retryBaseMs: 100, retryMaxMs: 2000 };
    let attempt = 0;
    while (!this.stopped) {
      attempt++;
      let err;
      try {
        err = await this.session();
        attempt = 0;
      } catch (setupErr) {
        if (this.stopped) break;
        const delay = backoffMs(retryCfg, attempt);
        this.log.warn('listen_retry', {
          attempt, code: setupErr.code || null, error: setupErr.message, delay_ms: delay,
        });
        await sleep(delay);
        continue;
      }
      if (this.stopped) break;
      this.connected = false;
      this.lostAt = Date.now();
      this.log.warn('listen_lost', { server: this.server, code: (err && err.code) || null, error: err ? err.message : 'connection ended' });
    }
  }

  // one connection: connect, LISTEN, then resolve with the error (or null)
  // that ended it; throws if it could not be set up
  async session() {
    const opts = Object.assign(clientOptions(this.cfg, 'write', 'node-order-service-listen'), { query_timeout: 5000 });
    const client = new pg.Client(opts);
    let onLost;
    const lost = new Promise((resolve) => { onLost = resolve; });
    client.on('error', (err) => onLost(err));
    client.on('end', () => onLost(null));
    client.on('notification', (msg) => this.onNotification(msg));
    try {
      await client.connect();
      // where HAProxy sent us, and is it really the primary?  (LISTEN fails
      // on a standby anyway: "cannot execute LISTEN during recovery")
      const r = await client.query('SELECT inet_server_addr()::text AS addr, inet_server_port() AS port, pg_is_in_recovery() AS standby');
      if (r.rows[0].standby) {
        const e = new Error(`write port reached a standby (${r.rows[0].addr}:${r.rows[0].port})`);
        e.code = '25006';
        throw e;
      }
      await client.query(`LISTEN ${CHANNEL}`);
      const server = `${r.rows[0].addr.replace(/\/32$/, '')}:${r.rows[0].port}`;
      const previous = this.server;
      this.server = server;
      this.client = client;
      this.connected = true;
      if (this.lostAt === null) {
        this.log.info('listening', { channel: CHANNEL, server });
      } else {
        const gap = Date.now() - this.lostAt;
        this.log.info('listen_reconnected', { channel: CHANNEL, server, previous_server: previous, gap_ms: gap });
        if (previous && previous !== server) {
          this.log.warn('failover_noticed', { old_primary: previous, new_primary: server });
        }
        this.lostAt = null;
        this.emit('resync', { gap_ms: gap, server });
      }
    } catch (err) {
      client.removeAllListeners('end');
      client.on('error', () => {});
      await client.end().catch(() => {});
      throw err;
    }
    // a half-open TCP connection (a node that vanished without a FIN) would
    // look idle forever: ping it
    clearInterval(this.pingTimer);
    this.pingTimer = setInterval(() => {
      client.query('SELECT 1').catch((err) => {
        onLost(err);
        client.end().catch(() => {});
      });
    }, PING_MS);
    const err = await lost;
    clearInterval(this.pingTimer);
    this.client = null;
    client.removeAllListeners('notification');
    client.end().catch(() => {});
    return err;
  }

  onNotification(msg) {
    if (msg.channel !== CHANNEL) return;
    let ev;
    try {
      ev = JSON.parse(msg.payload);
    } catch (err) {
      this.log.warn('bad_notification', { payload: msg.payload, error: err.message });
      return;
    }
    this.emit('status', ev);
  }
}

module.exports = { StatusListener, CHANNEL };
