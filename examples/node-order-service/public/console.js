'use strict';
// console.js: the operator console.  Polls /console/api/overview every
// second (tables and charts), the dead letters every two seconds, follows
// GET /events for the live list; actions ask for confirmation first and run
// under the signed-in operator's database role.
(() => {
  const $ = (id) => document.getElementById(id);
  const CHART_POINTS = 300;          // five minutes at one sample a second
  const samples = [];                // {t, m} from overview.metrics
  let readOnly = false;
  let current = null;                // the order shown in detail
  let freshUntil = 0;                // read the detail on the primary until then

  async function api(path, opts = {}) {
    const init = { credentials: 'same-origin', headers: {} };
    if (opts.body !== undefined) {
      init.method = 'POST';
      init.headers['Content-Type'] = 'application/json';
      init.headers['X-Console-Action'] = '1';
      init.body = JSON.stringify(opts.body);
    }
    const res = await fetch(path, init);
    let data = null;
    try { data = await res.json(); } catch (e) { data = { message: `HTTP ${res.status}` }; }
    if (!res.ok) {
      const err = new Error(data.message || `HTTP ${res.status}`);
      err.status = res.status;
      err.data = data;
      throw err;
    }
    return data;
  }

  const fmt = (v) => {
    if (v === null || v === undefined) return '–';
    if (typeof v === 'object') return JSON.stringify(v);
    return String(v);
  };

  // kv(table, obj): one row per field
  function kv(table, obj) {
    table.replaceChildren();
    if (!obj || obj.error) {
      const tr = table.insertRow();
      const td = tr.insertCell();
      td.textContent = obj && obj.error ? `unavailable: ${obj.error}` : 'unavailable';
      td.className = 'muted';
      return;
    }
    for (const [k, v] of Object.entries(obj)) {
      const tr = table.insertRow();
      const th = document.createElement('th');
      th.scope = 'row';
      th.textContent = k;
      tr.appendChild(th);
      tr.insertCell().textContent = fmt(v);
    }
  }

  // rows(table, list, cols, extra): a header and one row per item; extra(tr, item) adds cells
  function rows(table, list, cols, extra) {
    table.replaceChildren();
    if (!Array.isArray(list)) {
      kv(table, list);
      return;
    }
    const head = table.createTHead().insertRow();
    for (const c of cols) {
      const th = document.createElement('th');
      th.scope = 'col';
      th.textContent = c;
      head.appendChild(th);
    }
    if (extra) {
      const th = document.createElement('th');
      th.scope = 'col';
      th.textContent = 'action';
      head.appendChild(th);
    }
    const body = table.createTBody();
    for (const item of list) {
      const tr = body.insertRow();
      for (const c of cols) tr.insertCell().textContent = fmt(item[c]);
      if (extra) extra(tr, item);
    }
  }

  function button(label, onClick, disabled) {
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = label;
    b.disabled = !!disabled;
    b.addEventListener('click', onClick);
    return b;
  }

  // ---------------------------------------------------------------- overview
  async function refreshOverview() {
    let o;
    try {
      o = await api('/console/api/overview');
    } catch (err) {
      banner(`No database server answers right now (${err.message}); retrying.`);
      return;
    }
    $('user').textContent = o.user;
    $('source').textContent = o.source === 'replica'
      ? `a replica${o.replay_age_s !== null ? ` (last replayed ${Math.max(0, o.replay_age_s).toFixed(1)} s ago)` : ''}`
      : 'the primary';
    $('updated').textContent = `updated ${new Date(o.at).toLocaleTimeString()}`;
    setReadOnly(o.read_only);
    banner(o.read_only
      ? `Read-only: the primary is not reachable (${o.primary_error || 'failover in progress?'}). Figures below come from ${o.source === 'replica' ? 'a replica' : 'the last server that answered'}; actions are disabled until a primary is back.`
      : null);
    kv($('queue'), o.queue);
    rows($('summary'), o.summary, ['status', 'orders', 'amount_minor_total']);
    kv($('gateway'), o.gateway && !o.gateway.error ? pick(o.gateway, ['circuit', 'consecutive_failures', 'opened_at', 'requests', 'errors', 'failure_rate', 'latency_p50_ms', 'latency_p99_ms', 'last_http_status', 'rate_limit', 'concurrency_limit', 'throttled', 'paused_until']) : o.gateway);
    rows($('workers'), o.workers, ['worker_id', 'state', 'in_flight', 'processed', 'succeeded', 'declined', 'retried', 'failed', 'last_error']);
    if (o.metrics && !o.metrics.error) {
      samples.push({ t: Date.parse(o.at), m: o.metrics });
      if (samples.length > CHART_POINTS + 1) samples.shift();
      drawCharts();
    }
  }

  function pick(obj, keys) {
    const out = {};
    for (const k of keys) if (k in obj) out[k] = obj[k];
    return out;
  }

  function banner(text) {
    const b = $('banner');
    if (!text) { b.hidden = true; b.textContent = ''; return; }
    if (b.textContent !== text) b.textContent = text;
    b.hidden = false;
  }

  function setReadOnly(ro) {
    readOnly = ro;
    document.body.classList.toggle('read-only', ro);
    for (const b of document.querySelectorAll('button[data-action]')) b.disabled = ro;
  }

  // ------------------------------------------------------------------ charts
  // series from consecutive samples: rates need two; a counter that went
  // down (reset_stats, another primary) leaves a gap
  function series() {
    const out = { throughput: [], backlog: [], latency: [] };
    for (let i = 0; i < samples.length; i++) {
      const s = samples[i].m;
      out.backlog.push(s.backlog);
      if (i === 0) continue;
      const p = samples[i - 1].m;
      const dt = (samples[i].t - samples[i - 1].t) / 1000;
      const dPaid = s.paid_total - p.paid_total;
      out.throughput.push(dt > 0 && dPaid >= 0 ? dPaid / dt : null);
      const dCount = s.duration_count - p.duration_count;
      const dSum = s.duration_sum_s - p.duration_sum_s;
      out.latency.push(dCount > 0 && dSum >= 0 ? (dSum / dCount) * 1000 : null);
    }
    return out;
  }

  function drawCharts() {
    const s = series();
    draw('chart-throughput', s.throughput, (v) => v.toFixed(1));
    draw('chart-backlog', s.backlog, (v) => String(v));
    draw('chart-latency', s.latency, (v) => v.toFixed(1));
  }

  function draw(id, values, show) {
    const fig = $(id);
    const max = Math.max(1, ...values.filter((v) => v !== null)) * 1.1;
    // the first minute spreads over the width; then the last five minutes
    const step = 300 / (Math.min(CHART_POINTS, Math.max(60, values.length)) - 1);
    const x0 = 300 - (values.length - 1) * step;
    let d = '';
    let pen = false;
    values.forEach((v, i) => {
      if (v === null) { pen = false; return; }
      const x = (x0 + i * step).toFixed(1);
      const y = (100 - (v / max) * 98).toFixed(1);
      d += `${pen ? 'L' : 'M'}${x} ${y} `;
      pen = true;
    });
    fig.querySelector('path').setAttribute('d', d.trim());
    fig.dataset.points = String(values.filter((v) => v !== null).length);
    const last = [...values].reverse().find((v) => v !== null);
    fig.querySelector('.now').textContent = last === undefined ? '–' : `${show(last)} (peak ${show(max / 1.1)})`;
  }

  // ------------------------------------------------------------ dead letters
  async function refreshDead() {
    let d;
    try {
      d = await api('/console/api/dead_letters');
    } catch (err) {
      return;
    }
    $('dead-empty').hidden = d.dead_letters.length > 0;
    rows($('dead-letters'), d.dead_letters, ['event_id', 'order_id', 'refund_id', 'status', 'attempts', 'last_error', 'failed_at'], (tr, dl) => {
      const cell = tr.insertCell();
      const b = button(`Requeue ${dl.event_id}`, () => requeue(dl), readOnly);
      b.dataset.action = 'requeue';
      b.setAttribute('aria-label', `Requeue dead letter ${dl.event_id} of order ${dl.order_id}`);
      cell.appendChild(b);
      cell.appendChild(button('Open', () => openOrder(dl.order_id)));
    });
  }

  async function requeue(dl) {
    const ok = await confirmAction('Requeue this dead letter?',
      `Dead letter ${dl.event_id} of order ${dl.order_id} goes back to the queue with a fresh attempt budget and the same payment key (never a second charge). Last error: ${dl.last_error || '–'}`);
    if (!ok) return;
    try {
      const r = await api(`/console/api/dead_letters/${dl.event_id}/requeue`, { body: {} });
      say(r.requeued ? `Dead letter ${dl.event_id} requeued.` : `Dead letter ${dl.event_id} was no longer there.`);
    } catch (err) {
      say(`Not requeued: ${err.message}`);
    }
    refreshDead();
  }

  // ------------------------------------------------------------------ search
  $('search-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const q = $('q').value.trim();
    if (!q) return;
    $('search-message').textContent = 'Searching…';
    try {
      const r = await api(`/console/api/search?q=${encodeURIComponent(q)}`);
      $('search-message').textContent = `${r.orders.length} order${r.orders.length === 1 ? '' : 's'} found (from ${r.source === 'replica' ? 'a replica' : 'the primary'}).`;
      rows($('results'), r.orders, ['order_id', 'idempotency_key', 'customer_id', 'amount_minor', 'currency', 'status', 'attempts', 'created_at'],
        (tr, o) => tr.insertCell().appendChild(button(`Open ${o.order_id}`, () => openOrder(o.order_id))));
      if (r.orders.length === 1) openOrder(r.orders[0].order_id);
    } catch (err) {
      $('search-message').textContent = `Search failed: ${err.message}`;
    }
  });

  // ------------------------------------------------------------ order detail
  async function openOrder(id) {
    current = id;
    await refreshDetail();
    $('detail').hidden = false;
    $('h-detail').focus();
  }

  async function refreshDetail() {
    if (current === null) return;
    let d;
    try {
      d = await api(`/console/api/orders/${current}${Date.now() < freshUntil ? '?fresh=1' : ''}`);
    } catch (err) {
      $('action-message').textContent = `Could not read order ${current}: ${err.message}`;
      return;
    }
    if (String(d.order.order_id) !== String(current)) return;
    $('detail-id').textContent = `#${d.order.order_id} (${d.order.status})`;
    $('detail').dataset.status = d.order.status;
    kv($('detail-order'), d.order);
    rows($('detail-events'), d.events, ['created_at', 'status', 'attempts', 'detail']);
    rows($('detail-attempts'), d.attempts, ['started_at', 'request', 'attempt', 'http_status', 'outcome', 'error', 'latency_ms']);
    rows($('detail-refunds'), d.refunds, ['refund_id', 'amount_minor', 'status', 'idempotency_key', 'reason', 'gateway_refund_id', 'last_error']);
    rows($('detail-webhooks'), d.webhooks, ['received_at', 'provider', 'type', 'applied', 'detail']);
  }

  $('cancel-order').dataset.action = 'cancel';
  $('refund-order').dataset.action = 'refund';

  $('cancel-order').addEventListener('click', async () => {
    const id = current;
    const ok = await confirmAction(`Cancel order ${id}?`,
      'An order never sent is canceled at once; one in flight is looked up and canceled or refunded in full. Paid orders are refunded instead.', { reason: true });
    if (!ok) return;
    try {
      const r = await api(`/console/api/orders/${id}/cancel`, { body: { reason: ok.reason || 'canceled from the console' } });
      say(`Order ${id}: cancel requested, status ${r.status}.`);
    } catch (err) {
      say(`Not canceled: ${err.message}`);
    }
    freshUntil = Date.now() + 10000;
    refreshDetail();
  });

  $('refund-order').addEventListener('click', async () => {
    const id = current;
    // one key per refund the operator confirms: a double click or a retry
    // of this request is the same refund
    const key = `console-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
    const ok = await confirmAction(`Refund order ${id}?`,
      'The refund is sent to the gateway by the payment workers; the order becomes partially_refunded or refunded when it succeeds.', { amount: true });
    if (!ok) return;
    const amount = ok.amount === '' ? null : Number(ok.amount);
    if (amount !== null && !Number.isSafeInteger(amount)) {
      say('Not refunded: the amount must be a whole number of minor units (e.g. 500 for 5.00).');
      return;
    }
    try {
      const r = await api(`/console/api/orders/${id}/refund`, { body: { amount_minor: amount, idempotency_key: key } });
      say(`Order ${id}: refund ${r.refund_id} created.`);
    } catch (err) {
      say(`Not refunded: ${err.message}`);
    }
    freshUntil = Date.now() + 10000;
    refreshDetail();
  });

  function say(text) {
    $('action-message').textContent = text;
  }

  // confirmAction(title, text, opts): false, or {amount, reason} when confirmed
  function confirmAction(title, text, opts = {}) {
    const dlg = $('confirm');
    $('confirm-title').textContent = title;
    $('confirm-text').textContent = text;
    $('confirm-amount-field').hidden = !opts.amount;
    $('confirm-reason-field').hidden = !opts.reason;
    $('confirm-amount').value = '';
    $('confirm-reason').value = '';
    const opener = document.activeElement;
    return new Promise((resolve) => {
      dlg.addEventListener('close', () => {
        if (opener && opener.focus) opener.focus();
        resolve(dlg.returnValue === 'yes' && !readOnly
          ? { amount: $('confirm-amount').value.trim(), reason: $('confirm-reason').value.trim() } : false);
      }, { once: true });
      dlg.returnValue = '';
      dlg.showModal();
      (opts.amount ? $('confirm-amount') : opts.reason ? $('confirm-reason') : $('confirm-no')).focus();
    });
  }

  // ------------------------------------------------------------- live events
  function liveEvents() {
    const es = new EventSource('/events');
    es.addEventListener('status', (e) => {
      const ev = JSON.parse(e.data);
      const li = document.createElement('li');
      li.textContent = `${new Date().toLocaleTimeString()} order ${ev.order_id}: ${ev.status} (attempts ${ev.attempts})`;
      const list = $('live');
      list.prepend(li);
      while (list.children.length > 30) list.lastChild.remove();
      if (String(ev.order_id) === String(current)) refreshDetail();
    });
    es.addEventListener('gap', (e) => {
      const li = document.createElement('li');
      li.textContent = `${new Date().toLocaleTimeString()} the service missed events for ${JSON.parse(e.data).gap_ms} ms (reconnected to ${JSON.parse(e.data).server})`;
      $('live').prepend(li);
    });
  }

  refreshOverview();
  refreshDead();
  liveEvents();
  setInterval(refreshOverview, 1000);
  setInterval(refreshDead, 2000);
  setInterval(refreshDetail, 2000);
})();
