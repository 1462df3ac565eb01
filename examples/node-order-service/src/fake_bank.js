'use strict';
// fake_bank.js: the "bank" of the checkout's 3-D Secure step with the fake
// gateway of the tests (tests/fake_gateway): the customer's confirmation is
// POST {gateway}/ledger/{payment_key}/complete.  A real gateway sends the
// customer to its own page instead (next_action.redirect_to_url).

const http = require('http');

// completeFakeAction(gatewayUrl, paymentKey): the gateway's HTTP status
function completeFakeAction(gatewayUrl, paymentKey) {
  const u = new URL(`/ledger/${encodeURIComponent(paymentKey)}/complete`, gatewayUrl);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', headers: { 'Content-Length': 0 } },
      (res) => { res.resume(); res.on('end', () => resolve(res.statusCode)); });
    req.setTimeout(5000, () => req.destroy(new Error('the fake gateway did not answer within 5 s')));
    req.on('error', reject);
    req.end();
  });
}

module.exports = { completeFakeAction };
