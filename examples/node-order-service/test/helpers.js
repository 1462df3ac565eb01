'use strict';
// helpers.js: start the service as a child process, talk HTTP to it, read
// server-sent events.  Used by the test files; no test framework here.

const { spawn } = require('child_process');
const fs = require('fs');
const http = require('http');
const path = require('path');

const ROOT = path.join(__dirname, '..');

// the database the integration tests use: the same FT_* variables as the
// service itself (FT_WRITE_PORT, FT_READ_PORT, FT_PASSWORD, ...)
function dbEnv() {
  if (!process.env.FT_WRITE_PORT) return null;
  const env = {};
  for (const k of ['FT_WRITE_HOST', 'FT_WRITE_PORT', 'FT_READ_HOST', 'FT_READ_PORT', 'FT_DATABASE', 'FT_USER', 'FT_PASSWORD']) {
    if (process.env[k] !== undefined) env[k] = process.env[k];
  }
  return env;
}

// startService(env, logFile): resolves once the service logged "started";
// .lines holds every log line parsed, .port the HTTP port, .stop() ends it
function startService(extraEnv = {}, logFile = null) {
  const env = Object.assign({}, process.env, { FT_LISTEN_PORT: '0' }, extraEnv);
  const child = spawn(process.execPath, [path.join(ROOT, 'server.js')], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const svc = { child, lines: [], port: null, exited: null };
  const out = logFile ? fs.createWriteStream(logFile, { flags: 'a' }) : null;
  let buf = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('service did not start within 20 s')), 20000);
    child.stdout.on('data', (chunk) => {
      if (out) out.write(chunk);
      buf += chunk.toString('utf8');
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const text = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        let line;
        try { line = JSON.parse(text); } catch (e) { line = { event: 'unparsed', text }; }
        svc.lines.push(line);
        if (line.event === 'started') {
          svc.port = Number(line.listen.split(':').pop());
          clearTimeout(timer);
          resolve(svc);
        }
      }
    });
    child.stderr.on('data', (chunk) => { if (out) out.write(chunk); process.stderr.write(chunk); });
    child.on('exit', (code, signal) => {
      svc.exited = { code, signal };
      clearTimeout(timer);
      reject(new Error(`service exited (${code}/${signal}) before it started`));
    });
    svc.stop = () => new Promise((res) => {
      if (svc.exited) return res(svc.exited);
      child.once('exit', (code, signal) => res({ code, signal }));
      child.kill('SIGTERM');
      setTimeout(() => { if (!svc.exited) child.kill('SIGKILL'); }, 10000).unref();
    });
  });
}

// request(port, method, path, {headers, body}): {status, headers, body (parsed JSON or text)}
function request(port, method, urlPath, opts = {}) {
  return new Promise((resolve, reject) => {
    const data = opts.body === undefined ? null
      : (typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body));
    const headers = Object.assign({}, opts.headers || {});
    if (data !== null) {
      headers['Content-Type'] = 'application/json';
      headers['Content-Length'] = Buffer.byteLength(data);
    }
    const req = http.request({ host: '127.0.0.1', port, method, path: urlPath, headers, agent: opts.agent },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let body = text;
          try { body = JSON.parse(text); } catch (e) { /* not JSON */ }
          resolve({ status: res.statusCode, headers: res.headers, body });
        });
      });
    req.setTimeout(opts.timeoutMs || 60000, () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
    if (data !== null) req.write(data);
    req.end();
  });
}

// sse(port, path, headers): an open event stream; .events collects {event,
// data}, .waitFor(pred, ms) resolves with the first matching event, .close()
function sse(port, urlPath, headers = {}) {
  const stream = { events: [], status: null, ended: false, waiters: [] };
  const check = () => {
    stream.waiters = stream.waiters.filter((w) => {
      const hit = stream.events.find(w.pred);
      if (hit) { clearTimeout(w.timer); w.resolve(hit); return false; }
      if (stream.ended) { clearTimeout(w.timer); w.reject(new Error(`stream ${urlPath} ended`)); return false; }
      return true;
    });
  };
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: urlPath, headers: Object.assign({ Accept: 'text/event-stream' }, headers) }, (res) => {
      stream.status = res.statusCode;
      stream.headers = res.headers;
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => {
        buf += chunk;
        let sep;
        while ((sep = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, sep);
          buf = buf.slice(sep + 2);
          let event = 'message';
          const data = [];
          for (const line of block.split('\n')) {
            if (line.startsWith('event: ')) event = line.slice(7);
            else if (line.startsWith('data: ')) data.push(line.slice(6));
          }
          if (data.length) {
            let parsed = data.join('\n');
            try { parsed = JSON.parse(parsed); } catch (e) { /* text */ }
            stream.events.push({ event, data: parsed, at: Date.now() });
          }
        }
        check();
      });
      res.on('end', () => { stream.ended = true; check(); });
      res.on('error', () => { stream.ended = true; check(); });
      resolve(stream);
    });
    req.on('error', reject);
    stream.close = () => req.destroy();
    stream.waitFor = (pred, ms) => new Promise((res2, rej2) => {
      const w = { pred, resolve: res2, reject: rej2 };
      w.timer = setTimeout(() => {
        stream.waiters = stream.waiters.filter((x) => x !== w);
        rej2(new Error(`no matching event on ${urlPath} within ${ms} ms`));
      }, ms);
      stream.waiters.push(w);
      check();
    });
  });
}

// operatorAuth(): the Authorization header of the console's operator for
// the tests (FT_CHECK_USER / FT_CHECK_PASSWORD: the all-orders stream)
function operatorAuth() {
  const user = process.env.FT_CHECK_USER || 'postgres';
  const pw = process.env.FT_CHECK_PASSWORD || '';
  return { Authorization: `Basic ${Buffer.from(`${user}:${pw}`).toString('base64')}` };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// a fresh prefix for idempotency keys, so that runs never collide
function keyPrefix(tag) {
  return `${tag}-${process.pid}-${Date.now().toString(36)}`;
}

module.exports = { dbEnv, startService, request, sse, sleep, keyPrefix, operatorAuth, ROOT };
