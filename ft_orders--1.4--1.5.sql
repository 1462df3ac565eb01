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

-------------------------------------------------------------------------------
-- Stripe livemode (docs/reference.md, "Webhooks"): a Stripe event whose
-- livemode is not the mode of the gateway key (sk_live_ / sk_test_) is
-- recorded and not applied.  apply_gateway_event's body is 1.4's with one
-- step added before the event is matched (marked "Stripe livemode").
-------------------------------------------------------------------------------
CREATE FUNCTION ft_orders._gateway_key_mode()
RETURNS text
LANGUAGE C STABLE
AS 'MODULE_PATHNAME', 'ft_orders_gateway_key_mode';
REVOKE EXECUTE ON FUNCTION ft_orders._gateway_key_mode() FROM PUBLIC;
COMMENT ON FUNCTION ft_orders._gateway_key_mode() IS
'Internal: live for a Stripe live-mode key in ft_orders.gateway_token (sk_live_, rk_live_), test for a test-mode key (sk_test_, rk_test_), NULL otherwise; the key itself is never shown';

-- why a webhook event of another mode than the key's is not applied, or
-- NULL: it may be (the generic provider, a key of unknown mode, an event
-- without livemode); a livemode that is not a boolean is 22023
CREATE FUNCTION ft_orders._gateway_mode_refusal(provider text, event jsonb)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	live	jsonb := event -> 'livemode';
	mode	text;
BEGIN
	IF provider <> 'stripe' OR live IS NULL OR jsonb_typeof(live) = 'null' THEN
		RETURN NULL;
	END IF;
	IF jsonb_typeof(live) <> 'boolean' THEN
		RAISE EXCEPTION 'event "livemode" must be a boolean, not %', jsonb_typeof(live)
			USING ERRCODE = '22023';
	END IF;
	mode := ft_orders._gateway_key_mode();
	IF mode IS NULL OR (live = 'true'::jsonb) = (mode = 'live') THEN
		RETURN NULL;
	END IF;
	RETURN format('not applied: a %s-mode event, and ft_orders.gateway_token is a %s-mode key',
				  CASE WHEN live = 'true'::jsonb THEN 'live' ELSE 'test' END, mode);
END
$$;
REVOKE EXECUTE ON FUNCTION ft_orders._gateway_mode_refusal(text, jsonb) FROM PUBLIC;
COMMENT ON FUNCTION ft_orders._gateway_mode_refusal(text, jsonb) IS
'Internal: why apply_gateway_event does not apply a Stripe event of another mode (livemode) than the gateway key''s, or NULL';

CREATE OR REPLACE FUNCTION ft_orders.apply_gateway_event(provider text, event jsonb)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	e		ft_orders._gateway_event := ft_orders._parse_gateway_event(provider, event);
	oid_	bigint;
	rid		bigint;
	ok		boolean := false;
	what	text;
	amt		bigint;
BEGIN
	INSERT INTO ft_orders.gateway_events (provider, event_id, type, payload)
	VALUES (e.provider, e.event_id, e.type, event)
	ON CONFLICT DO NOTHING;
	IF NOT FOUND THEN
		RETURN false;			-- a redelivery: recorded and handled the first time
	END IF;

	-- Stripe livemode: a test-mode event never settles what a live key
	-- charged, nor the reverse (_gateway_mode_refusal)
	what := ft_orders._gateway_mode_refusal(e.provider, event);
	IF what IS NOT NULL THEN
		NULL;				-- recorded, not applied, as said
	ELSIF e.kind IS NULL THEN
		what := 'event type not handled by ft_orders';
	ELSIF e.kind LIKE 'refund%' THEN
		SELECT r.refund_id, r.order_id INTO rid, oid_
		  FROM ft_orders.refunds r
		 WHERE r.gateway_refund_id = e.refund_ref OR r.refund_key = e.refund_key
		 ORDER BY r.gateway_refund_id = e.refund_ref DESC NULLS LAST
		 LIMIT 1;
		IF rid IS NULL THEN
			what := 'no refund for this event';
		ELSE
			SELECT g.applied, g.detail INTO ok, what
			  FROM ft_orders._gateway_refund_event(rid, e) g;
		END IF;
	ELSE
		oid_ := ft_orders._gateway_event_order(e);
		-- a Stripe charge carries its amount apart from amount_refunded:
		-- another amount than the order's is another order's charge
		IF e.kind = 'charge_refunded' AND oid_ IS NOT NULL THEN
			amt := ft_orders._gateway_int(event #> '{data,object}', 'amount');
			SELECT format('not applied: the charge is for %s, the order is %s', amt, o.amount_minor)
			  INTO what
			  FROM ft_orders.orders o
			 WHERE o.order_id = oid_ AND amt <> o.amount_minor;
		END IF;
		IF oid_ IS NULL THEN
			what := 'no order for this event';
		ELSIF what IS NOT NULL THEN
			NULL;				-- not applied, as said
		ELSIF e.kind = 'charge_refunded' THEN
			SELECT g.applied, g.detail INTO ok, what
			  FROM ft_orders._gateway_charge_refunded(oid_, e) g;
		ELSE
			SELECT g.applied, g.detail INTO ok, what
			  FROM ft_orders._gateway_payment_event(oid_, e) g;
		END IF;
	END IF;

	UPDATE ft_orders.gateway_events g
	   SET applied = ok, detail = what,
		   order_id = oid_, refund_id = rid
	 WHERE g.provider = e.provider AND g.event_id = e.event_id;
	RETURN ok;
END
$$;
COMMENT ON FUNCTION ft_orders.apply_gateway_event(text, jsonb) IS
'Apply a webhook event of the gateway (provider stripe or generic) once: recorded in gateway_events by its event id, applied to its order or refund unless it is a repeat or history (a late failure after a success); true when it changed something. Bad input: 22023, nothing written. Owner only; GRANT EXECUTE to the role of the webhook receiver';

-------------------------------------------------------------------------------
-- worker_status.processed: what it counts
-------------------------------------------------------------------------------
COMMENT ON COLUMN ft_orders.worker_status.processed IS
'Requests whose outcome this worker recorded since the last reset_stats(), of any kind: every attempt (retries and look-ups included), not orders';
