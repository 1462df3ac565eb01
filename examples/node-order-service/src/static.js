'use strict';
// static.js: the pages (public/), read once at start: a fixed list of
// files, no path from the request ever reaches the file system.

const fs = require('fs');
const path = require('path');

const PUBLIC = path.join(__dirname, '..', 'public');
const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};
// the pages' own rules: nothing from elsewhere, no framing
const CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

function loadStatic() {
  const files = new Map();
  for (const name of fs.readdirSync(PUBLIC)) {
    const type = TYPES[path.extname(name)];
    if (type) files.set(name, { body: fs.readFileSync(path.join(PUBLIC, name)), type });
  }
  // send(res, name): 200 with the file, false if there is no such file
  function send(res, name) {
    const f = files.get(name);
    if (!f) return false;
    res.writeHead(200, {
      'Content-Type': f.type,
      'Content-Length': f.body.length,
      'Cache-Control': 'no-cache',
      'Content-Security-Policy': CSP,
      'X-Content-Type-Options': 'nosniff',
      'Referrer-Policy': 'no-referrer',
    });
    res.end(f.body);
    return true;
  }
  return { send, has: (name) => files.has(name) };
}

module.exports = { loadStatic };
