/* ft_orders--1.4--1.5.sql: version 1.5 */

\echo Use "ALTER EXTENSION ft_orders UPDATE TO '1.5'" to load this file. \quit

-- Each section below is one feature of 1.5, headed by its name.

-------------------------------------------------------------------------------
-- Attempts that measure the order, not the outage
-- (docs/reference.md, "Guarantees" and "Wire protocol"): an attempt the
-- gateway's own trouble made (no reply, 429, 401/403, the circuit's
-- probes, a 5xx while it answers nobody) is given back in the outbox, so
-- outbox.attempts counts only what moves an order towards max_attempts;
-- orders.attempts and payment_attempts keep every request.
-------------------------------------------------------------------------------
COMMENT ON COLUMN ft_orders.outbox.attempts IS
'Attempts of this event that count towards ft_orders.max_attempts: requests answered about the order, not those an unreachable, refusing or overloaded gateway failed (every request is in payment_attempts and orders.attempts); reset when a dead letter is requeued';
COMMENT ON COLUMN ft_orders.dead_letters.attempts IS
'Attempts that counted towards ft_orders.max_attempts before giving up (1 for a permanent refusal)';

-------------------------------------------------------------------------------
-- Audit retention: the payment audit trail (payment_attempts, order_events)
-- is kept for ft_orders.audit_retention (400 days: disputes come months
-- later), webhook events for ft_orders.history_retention (7 days)
-------------------------------------------------------------------------------
COMMENT ON FUNCTION ft_orders.purge_history() IS
'Delete payment_attempts and order_events rows older than ft_orders.audit_retention and gateway_events rows older than ft_orders.history_retention; returns how many (the launcher runs it every minute). Owner only';
COMMENT ON TABLE ft_orders.payment_attempts IS
'One row per HTTP attempt at the gateway (the payment audit trail); purged after ft_orders.audit_retention';
COMMENT ON TABLE ft_orders.order_events IS
'Durable history of status changes (also sent as NOTIFY ft_orders_events) for consumers that were offline, and the payment audit trail; purged after ft_orders.audit_retention';
