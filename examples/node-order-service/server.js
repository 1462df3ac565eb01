'use strict';
// server.js: the order service's entry point.  Settings come from the
// environment (see README.md); logs are JSON lines on stdout.

const { loadConfig } = require('./src/config');
const { makeLogger } = require('./src/log');
const { makeDb } = require('./src/db');
const { makeOrders } = require('./src/orders');
const { StatusListener } = require('./src/events');
const { createServer } = require('./src/http');
const { makeWebhooks } = require('./src/webhooks');

function main() {
  const log = makeLogger();
  let cfg;
  try {
    cfg = loadConfig();
  } catch (err) {
    log.error('bad_config', { error: err.message });
    process.exit(2);
  }
  const db = makeDb(cfg, log);
  const orders = makeOrders(cfg, log, db);
  const listener = new StatusListener(cfg, log);
  listener.setMaxListeners(0);    // one per open event stream
  const webhooks = makeWebhooks(cfg, log, db);
  const server = createServer({ cfg, log, orders, listener, webhooks });

  listener.start();
  server.listen(cfg.listenPort, cfg.listenHost, () => {
    const addr = server.address();
    log.info('started', {
      listen: `${addr.address}:${addr.port}`,
      write: `${cfg.write.host}:${cfg.write.port}`,
      read: `${cfg.read.host}:${cfg.read.port}`,
      database: cfg.database, user: cfg.user, pid: process.pid,
    });
  });

  let stopping = false;
  const stop = async (signal) => {
    if (stopping) return;
    stopping = true;
    log.info('stopping', { signal });
    server.close();
    server.closeStreams();
    await listener.stop();
    await db.end();
    log.info('stopped', {});
    process.exit(0);
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main();
