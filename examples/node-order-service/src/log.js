'use strict';
// log.js: one JSON object per line on stdout, e.g.
//   {"ts":"2026-11-27T07:20:01.123Z","level":"warn","event":"retry",...}

function makeLogger(stream = process.stdout) {
  function emit(level, event, fields) {
    const line = Object.assign({ ts: new Date().toISOString(), level, event }, fields || {});
    stream.write(JSON.stringify(line) + '\n');
  }
  return {
    info: (event, fields) => emit('info', event, fields),
    warn: (event, fields) => emit('warn', event, fields),
    error: (event, fields) => emit('error', event, fields),
  };
}

module.exports = { makeLogger };
