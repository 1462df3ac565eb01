'use strict';
// 3ds.js: the fake gateway's "3-D Secure" page.  Confirming asks the service
// to complete the payment at the fake gateway (POST /orders/:id/3ds, with
// the order's access token), marks the checkout as confirmed and returns to it.
(() => {
  const $ = (id) => document.getElementById(id);
  const q = new URLSearchParams(window.location.search);
  const id = q.get('order');
  const token = q.get('access_token');
  const auth = { Authorization: `Bearer ${token}` };
  $('order').textContent = `#${id}`;
  $('title').focus();

  fetch(`/orders/${encodeURIComponent(id)}`, { headers: auth })
    .then((r) => (r.ok ? r.json() : Promise.reject(new Error(String(r.status)))))
    .then((o) => { $('amount').textContent = `${(o.amount_minor / 100).toFixed(2)} ${o.currency}`; })
    .catch(() => { $('message').textContent = 'This payment could not be found.'; $('confirm').disabled = true; });

  $('confirm').addEventListener('click', async () => {
    $('confirm').disabled = true;
    $('message').textContent = 'Confirming…';
    let ok = false;
    try {
      const r = await fetch(`/orders/${encodeURIComponent(id)}/3ds`, { method: 'POST', headers: auth });
      ok = r.ok || r.status === 409;     // 409: nothing left to confirm
    } catch (e) {
      ok = false;
    }
    if (!ok) {
      $('message').textContent = 'The bank could not be reached. Please try again.';
      $('confirm').disabled = false;
      return;
    }
    try {
      const st = JSON.parse(sessionStorage.getItem('ft_orders_checkout'));
      if (st && String(st.order_id) === String(id)) {
        st.actionDone = true;
        sessionStorage.setItem('ft_orders_checkout', JSON.stringify(st));
      }
    } catch (e) { /* the shop page shows the status anyway */ }
    $('message').textContent = 'Confirmed. Returning to the shop…';
    window.location.assign('/');
  });
})();
