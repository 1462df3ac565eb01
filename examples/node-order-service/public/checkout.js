'use strict';
// checkout.js: the checkout page.  One idempotency key per checkout, made
// and stored (sessionStorage) before the first request: every retry of the
// browser's own, a double click or a reload sends the same key with the
// same body, so the database makes one order.  Then the order is followed
// through its event stream (GET /orders/:id/events with its access token).
(() => {
  const STORE = 'ft_orders_checkout';
  const $ = (id) => document.getElementById(id);
  const MESSAGES = {
    placing: 'Placing your order…',
    pending: 'Payment in progress…',
    delayed: 'Your payment is delayed. Your order is safe and will not be charged twice: this page updates by itself as soon as the payment goes through.',
    paid: 'Paid. Thank you for your order!',
    declined: 'Your card was declined. No money was taken: please try another card.',
    failed: 'The payment could not be completed. If any money was taken it will be returned; please contact us with your order number.',
    action_required: 'Your bank asks you to confirm this payment: taking you to your bank…',
    confirming: 'Confirmed with your bank. Waiting for the payment to go through: this page updates by itself.',
    canceled: 'This order was canceled. No money was taken.',
    refunded: 'This order was refunded.',
    partially_refunded: 'Paid; part of it was refunded.',
  };
  const FINAL = new Set(['paid', 'declined', 'failed', 'canceled', 'refunded', 'partially_refunded']);
  const DELAYED_AFTER_MS = 4000;

  let state = load();       // {key, body, placedAt, order_id, token, status}
  let source = null;        // the EventSource
  let delayTimer = null;

  function load() {
    try { return JSON.parse(sessionStorage.getItem(STORE)); } catch (e) { return null; }
  }
  function save() {
    if (state) sessionStorage.setItem(STORE, JSON.stringify(state)); else sessionStorage.removeItem(STORE);
  }
  function newKey() {
    const b = new Uint8Array(16);
    crypto.getRandomValues(b);
    return `checkout-${Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('')}`;
  }
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  function show(kind, extra) {
    const box = $('status');
    box.dataset.status = kind;
    $('status-text').textContent = extra ? `${MESSAGES[kind]} ${extra}` : MESSAGES[kind];
  }

  function formBusy(busy) {
    $('pay').disabled = busy;
    $('checkout').setAttribute('aria-busy', String(busy));
    for (const el of $('checkout').querySelectorAll('input, select')) el.readOnly = busy;
  }

  function showResult() {
    const sec = $('result');
    const wasHidden = sec.hidden;
    sec.hidden = false;
    $('order-amount').textContent = `${(state.body.amount_minor / 100).toFixed(2)} ${state.body.currency}`;
    $('order-id').textContent = state.order_id ? `#${state.order_id}` : '(being placed)';
    if (wasHidden) $('result-title').focus();
  }

  // place(): POST /orders until the service answers; the same key and body each time
  async function place() {
    formBusy(true);
    showResult();
    show('placing');
    for (let attempt = 1; ; attempt++) {
      let res = null;
      try {
        res = await fetch('/orders', {
          method: 'POST',
          headers: { 'Content-Type': 'application/json', 'Idempotency-Key': state.key },
          body: JSON.stringify(state.body),
        });
      } catch (e) {
        res = null;     // no answer: the network or the service; try again
      }
      if (res && (res.status === 200 || res.status === 202)) {
        const data = await res.json();
        state.order_id = data.order_id;
        state.token = data.access_token;
        state.status = data.status;
        save();
        showResult();
        follow();
        return;
      }
      if (res && res.status >= 400 && res.status < 500) {
        // refused for good (e.g. an amount the shop does not accept): nothing was ordered
        let msg = `The order was refused (${res.status}).`;
        try { msg = (await res.json()).message || msg; } catch (e) { /* keep msg */ }
        state = null;
        save();
        $('result').hidden = true;
        const err = $('form-error');
        err.textContent = msg;
        err.hidden = false;
        formBusy(false);
        return;
      }
      // 503 (database unreachable), another 5xx or no answer: delayed, retry
      show('delayed');
      const after = res && Number(res.headers.get('Retry-After'));
      await sleep(after > 0 ? after * 1000 : Math.min(5000, 250 * 2 ** Math.min(attempt, 5)) * (0.5 + Math.random() / 2));
    }
  }

  // follow(): the order's event stream; reopened when the service lost it
  function follow() {
    if (source) source.close();
    clearTimeout(delayTimer);
    const url = `/orders/${state.order_id}/events?access_token=${encodeURIComponent(state.token)}`;
    source = new EventSource(url);
    source.addEventListener('status', (e) => render(JSON.parse(e.data)));
    source.addEventListener('end', () => { source.close(); source = null; });
    source.onerror = () => {
      if (FINAL.has(state.status)) return;
      // the stream broke (service restart, failover): say "delayed", never
      // an error, and reconnect; EventSource itself gives up on a 503
      show('delayed');
      if (source && source.readyState === EventSource.CLOSED) {
        source = null;
        setTimeout(() => { if (!source && state && !FINAL.has(state.status)) follow(); }, 2000);
      }
    };
    // pending for long: say so, without waiting for a retry to be reported
    delayTimer = setTimeout(() => {
      if (state && state.status === 'pending') show('delayed');
    }, Math.max(0, DELAYED_AFTER_MS - (Date.now() - state.placedAt)));
  }

  function render(ev) {
    if (!state || String(ev.order_id) !== String(state.order_id)) return;
    state.status = ev.status;
    save();
    if (ev.status === 'pending') {
      show(ev.attempts > 0 || Date.now() - state.placedAt > DELAYED_AFTER_MS ? 'delayed' : 'pending');
    } else if (ev.status === 'action_required' && state.actionDone) {
      show('confirming');     // back from the bank; the gateway settles it
    } else if (ev.status === 'action_required') {
      show('action_required');
      const link = $('action-link');
      if (ev.action_url) {
        link.href = ev.action_url;
        $('action').hidden = false;
        // followed by itself once; back from the bank without confirming,
        // the customer chooses with the link
        if (!state.redirected) {
          state.redirected = true;
          save();
          setTimeout(() => window.location.assign(ev.action_url), 800);
        } else {
          $('status-text').textContent = 'Your bank asks you to confirm this payment.';
        }
      }
    } else {
      $('action').hidden = true;
      show(MESSAGES[ev.status] ? ev.status : 'pending');
    }
    if (FINAL.has(ev.status)) clearTimeout(delayTimer);
  }

  function amountMinor(text) {
    const m = /^\s*(\d{1,9})(?:[.,](\d{1,2}))?\s*$/.exec(text);
    if (!m) return null;
    return Number(m[1]) * 100 + Number((m[2] || '0').padEnd(2, '0'));
  }

  $('checkout').addEventListener('submit', (e) => {
    e.preventDefault();
    $('form-error').hidden = true;
    if (state) return;          // this checkout is already placed or being placed
    const amount = amountMinor($('amount').value);
    const customer = $('customer').value.trim();
    if (!amount || !customer) {
      const err = $('form-error');
      err.textContent = !customer ? 'Please enter your customer id.' : 'Please enter an amount such as 19.99.';
      err.hidden = false;
      (!customer ? $('customer') : $('amount')).focus();
      return;
    }
    state = {
      key: newKey(),
      body: {
        customer_id: customer, amount_minor: amount, currency: 'EUR',
        items: [{ sku: $('item').value.trim() || 'item', qty: 1 }], payment_method: $('card').value,
      },
      placedAt: Date.now(), order_id: null, token: null, status: null,
    };
    save();                     // before the request: a reload resends this key
    place();
  });

  $('new-order').addEventListener('click', () => {
    if (source) source.close();
    source = null;
    clearTimeout(delayTimer);
    state = null;
    save();
    $('result').hidden = true;
    $('action').hidden = true;
    formBusy(false);
    $('customer').focus();
  });

  // a reload (or the way back from the bank) resumes this checkout
  if (state) {
    $('customer').value = state.body.customer_id;
    $('amount').value = (state.body.amount_minor / 100).toFixed(2);
    $('item').value = state.body.items[0].sku;
    $('card').value = state.body.payment_method;
    if (state.order_id) {
      formBusy(true);
      showResult();
      show(state.status && MESSAGES[state.status] ? state.status : 'pending');
      follow();
    } else {
      place();
    }
  }
})();
