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
const { makeCapabilities } = require('./src/capability');
const { makeOperators } = require('./src/operators');
const { makeConsole } = require('./src/console');

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
  const capabilities = makeCapabilities(cfg, log);
  const operators = makeOperators(cfg, log);
  const consoleApi = makeConsole(cfg, log);
  const server = createServer({ cfg, log, orders, listener, webhooks, capabilities, operators, consoleApi });

  listener.start();
  server.listen(cfg.listenPort, cfg.listenHost, () => {
    const addr = server.address();
    log.info('started', {
      listen: `${addr.address}:${addr.port}`,
      write: `${cfg.write.host}:${cfg.write.port}`,
      read: `${cfg.read.host}:${cfg.read.port}`,
      database: cfg.database, user: cfg.user, pid: process.pid,
      checkout: `http://${addr.address}:${addr.port}/`,
      console: `http://${addr.address}:${addr.port}/console`,
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
    await Promise.allSettled([db.end(), operators.end()]);
    log.info('stopped', {});
    process.exit(0);
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main();
