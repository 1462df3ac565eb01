/* ft_orders--1.2--1.3.sql: version 1.3 */

\echo Use "ALTER EXTENSION ft_orders UPDATE TO '1.3'" to load this file. \quit

-- CREATE EXTENSION ft_orders runs the scripts up to 1.2 and then this one;
-- ALTER EXTENSION ft_orders UPDATE runs only the scripts after the
-- installed version: both end with the same objects, grants and comments.
-- Each change of 1.3 has its own section below.

-- #15 gateway limits ---------------------------------------------------------
--
-- gateway_status gains the gateway limits of docs/reference.md, "Gateway
-- limits": rate_limit, concurrency_limit, throttled, paused_until and
-- failure_rate.  A function's OUT columns cannot change in place, so the
-- view and its function are dropped and created again with the same
-- grants and comments (plus the new columns); the C function serves both
-- the old and the new column list, so a server that already runs the new
-- library keeps answering the 1.2 view until the update.

DROP VIEW ft_orders.gateway_status;
DROP FUNCTION ft_orders.gateway_stats();

CREATE FUNCTION ft_orders.gateway_stats(
	OUT circuit text,
	OUT consecutive_failures integer,
	OUT opened_at timestamptz,
	OUT requests bigint,
	OUT errors bigint,
	OUT latency_p50_ms double precision,
	OUT latency_p99_ms double precision,
	OUT last_http_status integer,
	OUT rate_limit double precision,
	OUT concurrency_limit integer,
	OUT throttled bigint,
	OUT paused_until timestamptz,
	OUT failure_rate double precision)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'ft_orders_gateway_stats'
LANGUAGE C VOLATILE;

CREATE VIEW ft_orders.gateway_status AS
SELECT * FROM ft_orders.gateway_stats();

REVOKE EXECUTE ON FUNCTION ft_orders.gateway_stats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ft_orders.gateway_stats() TO ft_orders_app;
GRANT SELECT ON ft_orders.gateway_status TO ft_orders_app;

COMMENT ON FUNCTION ft_orders.gateway_stats() IS
'Gateway, circuit-breaker and gateway-limit figures from shared memory; read them through the gateway_status view';
COMMENT ON VIEW ft_orders.gateway_status IS
'One row: circuit breaker state, request and error counts (since reset_stats()), recent latency percentiles, last HTTP status, rate and concurrency limits, pause and failure rate, from shared memory. ft_orders_app may read it';
COMMENT ON COLUMN ft_orders.gateway_status.circuit IS
'closed (requests flow), open (nothing is sent, orders stay pending) or half_open (a few probes decide)';
COMMENT ON COLUMN ft_orders.gateway_status.consecutive_failures IS
'Transient failures in a row (the circuit opens by failure_rate, or when the gateway cannot be reached)';
COMMENT ON COLUMN ft_orders.gateway_status.opened_at IS
'When the circuit last opened';
COMMENT ON COLUMN ft_orders.gateway_status.requests IS
'Requests completed since the last reset_stats()';
COMMENT ON COLUMN ft_orders.gateway_status.errors IS
'Of which transient failures';
COMMENT ON COLUMN ft_orders.gateway_status.latency_p50_ms IS
'Median request latency over the last 1024 requests, in milliseconds';
COMMENT ON COLUMN ft_orders.gateway_status.latency_p99_ms IS
'99th percentile request latency over the last 1024 requests, in milliseconds';
COMMENT ON COLUMN ft_orders.gateway_status.last_http_status IS
'HTTP status of the last reply, NULL if the last request got none';
COMMENT ON COLUMN ft_orders.gateway_status.rate_limit IS
'ft_orders.rate_limit: requests per second to the gateway, all workers together; 0 for no limit';
COMMENT ON COLUMN ft_orders.gateway_status.concurrency_limit IS
'Requests each payment worker may have under way now: the adaptive limit, 1 .. ft_orders.max_in_flight (max_in_flight when ft_orders.adaptive_concurrency is off)';
COMMENT ON COLUMN ft_orders.gateway_status.throttled IS
'Times a payment worker held its requests back for the gateway''s pause or for ft_orders.rate_limit, since the last reset_stats()';
COMMENT ON COLUMN ft_orders.gateway_status.paused_until IS
'No request is sent before this time: the gateway answered 429 or 503 with Retry-After; NULL when there is no pause';
COMMENT ON COLUMN ft_orders.gateway_status.failure_rate IS
'Share of the requests of the last 10 seconds that failed transiently (429 left out); NULL when there were none';

-- #16 lifecycle: shared schema ---------------------------------------------
-- (identical in branches wt-16 and wt-16w; the lead merges them)

-- SPEC §11 statuses (added values; existing ones keep their meaning).
-- ADD VALUE may run inside the extension script's transaction, but a value
-- added here cannot be used by a statement in this same script.
ALTER TYPE ft_orders.order_status ADD VALUE IF NOT EXISTS 'action_required';
ALTER TYPE ft_orders.order_status ADD VALUE IF NOT EXISTS 'canceled';
ALTER TYPE ft_orders.order_status ADD VALUE IF NOT EXISTS 'refunded';
ALTER TYPE ft_orders.order_status ADD VALUE IF NOT EXISTS 'partially_refunded';

ALTER TABLE ft_orders.orders
	ADD COLUMN next_action			jsonb,
	ADD COLUMN client_secret		text,
	ADD COLUMN cancel_requested_at	timestamptz,
	ADD COLUMN cancel_reason		text,
	ADD COLUMN refunded_minor		bigint NOT NULL DEFAULT 0;

CREATE SEQUENCE ft_orders.refunds_refund_id_seq;
CREATE TABLE ft_orders.refunds (
	refund_id			bigint PRIMARY KEY
						DEFAULT pg_catalog.nextval('ft_orders.refunds_refund_id_seq'::pg_catalog.regclass),
	order_id			bigint NOT NULL,
	amount_minor		bigint NOT NULL CHECK (amount_minor > 0),
	currency			text NOT NULL,
	idempotency_key		text NOT NULL,
	refund_key			uuid NOT NULL UNIQUE,
	status				text NOT NULL DEFAULT 'pending'
						CHECK (status IN ('pending', 'succeeded', 'failed')),
	gateway_refund_id	text,
	reason				text,
	last_error			text,
	created_at			timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_at			timestamptz NOT NULL DEFAULT pg_catalog.now(),
	UNIQUE (order_id, idempotency_key)
);
ALTER SEQUENCE ft_orders.refunds_refund_id_seq OWNED BY ft_orders.refunds.refund_id;
SELECT pg_catalog.pg_extension_config_dump('ft_orders.refunds', '');
SELECT pg_catalog.pg_extension_config_dump('ft_orders.refunds_refund_id_seq', '');

-- An outbox event with refund_id NULL charges its order (as before); one
-- with refund_id set sends that refund.
ALTER TABLE ft_orders.outbox ADD COLUMN refund_id bigint;

-- COMMENTs on the shared schema above (psql's \d+ documents every object;
-- tests/pgtap/08_metrics.sql checks it).  wt-16 may carry the same ones:
-- the merge keeps one copy.
COMMENT ON TYPE ft_orders.order_status IS
'pending: accepted, not settled yet; action_required: the customer must act (3-D Secure), see next_action; paid: gateway confirmed the charge; declined: gateway refused for good; failed: given up, see dead_letters; canceled: canceled before it was charged; partially_refunded / refunded: paid, then part / all of it refunded';
COMMENT ON COLUMN ft_orders.orders.next_action IS
'What the customer must do to finish the payment (the gateway''s next_action), while the order is action_required';
COMMENT ON COLUMN ft_orders.orders.client_secret IS
'The PaymentIntent''s client_secret the application needs to finish an action_required payment in the browser';
COMMENT ON COLUMN ft_orders.orders.cancel_requested_at IS
'When cancel_order() was called, NULL if never';
COMMENT ON COLUMN ft_orders.orders.cancel_reason IS
'The reason given to cancel_order()';
COMMENT ON COLUMN ft_orders.orders.refunded_minor IS
'Amount refunded so far, in minor units; never above amount_minor in a consistent ledger, never lowered';
COMMENT ON TABLE ft_orders.refunds IS
'One row per refund of an order: amount, its own Idempotency-Key (refund_key), status pending / succeeded / failed';
COMMENT ON COLUMN ft_orders.refunds.refund_id IS
'Refund number, from refunds_refund_id_seq';
COMMENT ON COLUMN ft_orders.refunds.order_id IS
'The order refunded';
COMMENT ON COLUMN ft_orders.refunds.amount_minor IS
'Amount of this refund in minor units';
COMMENT ON COLUMN ft_orders.refunds.currency IS
'The order''s currency';
COMMENT ON COLUMN ft_orders.refunds.idempotency_key IS
'The caller''s key for this refund (unique per order); a repeat returns the same refund';
COMMENT ON COLUMN ft_orders.refunds.refund_key IS
'Idempotency-Key sent to the gateway for this refund, for its whole life';
COMMENT ON COLUMN ft_orders.refunds.status IS
'pending, succeeded or failed';
COMMENT ON COLUMN ft_orders.refunds.gateway_refund_id IS
'The gateway''s id of the refund (Stripe: re_...), once known';
COMMENT ON COLUMN ft_orders.refunds.reason IS
'Why the refund was made';
COMMENT ON COLUMN ft_orders.refunds.last_error IS
'The last error, e.g. why it failed';
COMMENT ON COLUMN ft_orders.refunds.created_at IS
'When the refund was requested';
COMMENT ON COLUMN ft_orders.refunds.updated_at IS
'When its status last changed';
COMMENT ON SEQUENCE ft_orders.refunds_refund_id_seq IS
'Refund ids; kept by pg_dump';
COMMENT ON COLUMN ft_orders.outbox.refund_id IS
'NULL: the event charges its order; set: it sends this refund';

------------------------------------------------------------------------------
-- #16 webhooks ---------------------------------------------------------------
------------------------------------------------------------------------------

-- The gateway's asynchronous outcomes (docs/reference.md, "Webhooks").
-- apply_gateway_event() records every event once, by the gateway's event
-- id, and applies it to its order or refund when that moves it forward:
--   - an unsettled order (pending, action_required) is settled by any
--     payment outcome, and its queued charge is removed from the outbox in
--     the same transaction (a worker that has it in flight finds its lease
--     gone and records nothing; a resend would be a replay of the same key);
--   - a success is the money's truth: it also settles a declined, failed or
--     canceled order as paid (a canceled one, or one whose cancel was
--     requested, gets a full refund queued, as SPEC §11 wants for a charge
--     that succeeds after a cancel);
--   - a failure or cancellation after a success, a second outcome of a
--     settled order, a refund failure after its success: kept as history
--     (applied = false), never applied;
--   - refunds: a pending refund is settled by its event; the order's
--     refunded_minor only grows (the largest of what it was, the sum of its
--     succeeded refunds and the gateway's own total in charge.refunded), and
--     its status follows: partially_refunded, refunded.
-- Lock order, the same as the payment workers': the event's outbox rows
-- first, then the order, then the refund; so a webhook and a worker that
-- settle the same order wait for each other instead of deadlocking.

CREATE TABLE ft_orders.gateway_events (
	provider		text NOT NULL,
	event_id		text NOT NULL,
	type			text NOT NULL,
	order_id		bigint,
	refund_id		bigint,
	applied			boolean NOT NULL DEFAULT false,
	detail			text,
	payload			jsonb NOT NULL,
	received_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	PRIMARY KEY (provider, event_id)
);
CREATE INDEX gateway_events_order_id_idx ON ft_orders.gateway_events (order_id);
-- purge_history() deletes rows older than ft_orders.history_retention
CREATE INDEX gateway_events_received_at_idx
	ON ft_orders.gateway_events USING brin (received_at);
COMMENT ON TABLE ft_orders.gateway_events IS
'Every webhook event received, once per (provider, event_id): what it was, the order or refund it concerned, whether it changed anything and why (detail); purged after ft_orders.history_retention';
COMMENT ON COLUMN ft_orders.gateway_events.provider IS
'stripe or generic';
COMMENT ON COLUMN ft_orders.gateway_events.event_id IS
'The gateway''s event id (Stripe: evt_...; generic: event_id); a repeat is not applied again';
COMMENT ON COLUMN ft_orders.gateway_events.type IS
'The gateway''s event type, e.g. payment_intent.succeeded, payment.failed';
COMMENT ON COLUMN ft_orders.gateway_events.order_id IS
'The order the event concerned, NULL when none was found';
COMMENT ON COLUMN ft_orders.gateway_events.refund_id IS
'The refund the event concerned (refund events), NULL otherwise';
COMMENT ON COLUMN ft_orders.gateway_events.applied IS
'true when the event changed the order or refund; false for history (a late failure after a success), repeats of a settled outcome, unknown orders and unhandled types';
COMMENT ON COLUMN ft_orders.gateway_events.detail IS
'What the event did, or why it was not applied';
COMMENT ON COLUMN ft_orders.gateway_events.payload IS
'The event as received';
COMMENT ON COLUMN ft_orders.gateway_events.received_at IS
'When it was first received';
SELECT pg_catalog.pg_extension_config_dump('ft_orders.gateway_events', '');
REVOKE ALL ON TABLE ft_orders.gateway_events FROM PUBLIC;

-- how events find their rows: a charge's outbox event by order, a Stripe
-- PaymentIntent or Charge by the reference the worker stored, a refund by
-- the gateway's refund id
CREATE INDEX outbox_order_id_idx ON ft_orders.outbox (order_id);
CREATE INDEX orders_payment_id_idx ON ft_orders.orders (payment_id)
	WHERE payment_id IS NOT NULL;
CREATE INDEX refunds_gateway_refund_id_idx ON ft_orders.refunds (gateway_refund_id)
	WHERE gateway_refund_id IS NOT NULL;

-- A webhook event reduced to what apply_gateway_event needs, whatever the
-- provider.  kind: payment_succeeded, payment_failed, payment_canceled,
-- refund_succeeded, refund_failed, refund_pending, charge_refunded, or
-- NULL for a type ft_orders does not handle.
CREATE TYPE ft_orders._gateway_event AS (
	provider		text,
	event_id		text,
	type			text,
	kind			text,
	order_id		bigint,		-- Stripe metadata.order_id
	payment_key		uuid,		-- generic
	payment_ref		text,		-- PaymentIntent id (Stripe), payment_id (generic)
	charge_ref		text,		-- Charge id (Stripe)
	refund_ref		text,		-- the gateway's refund id
	refund_key		uuid,		-- our refund_key, sent with the refund
	amount_minor	bigint,		-- payment: amount; charge_refunded: amount refunded
	currency		text,
	reason			text		-- decline or cancellation reason
);
COMMENT ON TYPE ft_orders._gateway_event IS
'Internal: a webhook event reduced to the fields apply_gateway_event uses';

-- A string field of a JSON object: NULL when absent or JSON null, 22023
-- when of another type.
CREATE FUNCTION ft_orders._gateway_text(obj jsonb, field text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v		jsonb := obj -> field;
BEGIN
	IF v IS NULL OR jsonb_typeof(v) = 'null' THEN
		RETURN NULL;
	ELSIF jsonb_typeof(v) <> 'string' THEN
		RAISE EXCEPTION 'event field "%" must be a string, not %', field, jsonb_typeof(v)
			USING ERRCODE = '22023';
	END IF;
	RETURN v #>> '{}';
END
$$;
COMMENT ON FUNCTION ft_orders._gateway_text(jsonb, text) IS
'Internal: a string field of a webhook event (NULL when absent), 22023 when of another type';

-- An integer field of a JSON object (minor units): NULL when absent, 22023
-- when not a non-negative integer.
CREATE FUNCTION ft_orders._gateway_int(obj jsonb, field text)
RETURNS bigint
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v		jsonb := obj -> field;
BEGIN
	IF v IS NULL OR jsonb_typeof(v) = 'null' THEN
		RETURN NULL;
	ELSIF jsonb_typeof(v) <> 'number' OR (v #>> '{}') !~ '^[0-9]{1,18}$' THEN
		RAISE EXCEPTION 'event field "%" must be a non-negative integer (minor units)', field
			USING ERRCODE = '22023';
	END IF;
	RETURN (v #>> '{}')::bigint;
END
$$;
COMMENT ON FUNCTION ft_orders._gateway_int(jsonb, text) IS
'Internal: an integer field of a webhook event (NULL when absent), 22023 when not a non-negative integer';

-- Validate and normalize an event; 22023 (22004 for NULL) on bad input.
CREATE FUNCTION ft_orders._parse_gateway_event(provider text, event jsonb)
RETURNS ft_orders._gateway_event
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	e		ft_orders._gateway_event;
	obj		jsonb;
	st		text;
BEGIN
	IF provider IS NULL THEN
		RAISE EXCEPTION 'provider must not be NULL' USING ERRCODE = '22004';
	END IF;
	IF event IS NULL THEN
		RAISE EXCEPTION 'event must not be NULL' USING ERRCODE = '22004';
	END IF;
	e.provider := lower(provider);
	IF e.provider = 'stripe_charges' THEN
		e.provider := 'stripe';		-- one Stripe account, one kind of event
	END IF;
	IF e.provider NOT IN ('stripe', 'generic') THEN
		RAISE EXCEPTION 'unknown provider "%"', left(provider, 64)
			USING ERRCODE = '22023',
				  HINT = 'provider is ''stripe'' or ''generic''.';
	END IF;
	IF jsonb_typeof(event) <> 'object' THEN
		RAISE EXCEPTION 'event must be a JSON object, not %', jsonb_typeof(event)
			USING ERRCODE = '22023';
	END IF;

	e.event_id := ft_orders._gateway_text(event, CASE e.provider WHEN 'stripe' THEN 'id' ELSE 'event_id' END);
	e.type := ft_orders._gateway_text(event, 'type');
	IF e.event_id IS NULL OR e.event_id = '' OR length(e.event_id) > 255 THEN
		RAISE EXCEPTION 'event has no "%" (a string of 1 to 255 characters)',
			CASE e.provider WHEN 'stripe' THEN 'id' ELSE 'event_id' END
			USING ERRCODE = '22023';
	END IF;
	IF e.type IS NULL OR e.type = '' OR length(e.type) > 255 THEN
		RAISE EXCEPTION 'event "%" has no "type" (a string of 1 to 255 characters)', left(e.event_id, 64)
			USING ERRCODE = '22023';
	END IF;

	IF e.provider = 'stripe' THEN
		e.kind := CASE e.type
			WHEN 'payment_intent.succeeded' THEN 'payment_succeeded'
			WHEN 'payment_intent.payment_failed' THEN 'payment_failed'
			WHEN 'payment_intent.canceled' THEN 'payment_canceled'
			WHEN 'charge.refunded' THEN 'charge_refunded'
			WHEN 'refund.updated' THEN 'refund'
			WHEN 'refund.created' THEN 'refund'
			WHEN 'refund.failed' THEN 'refund'
			WHEN 'charge.refund.updated' THEN 'refund'
			END;
		IF e.kind IS NULL THEN
			RETURN e;
		END IF;
		obj := event #> '{data,object}';
		IF obj IS NULL OR jsonb_typeof(obj) <> 'object' THEN
			RAISE EXCEPTION 'Stripe event "%" has no data.object', left(e.event_id, 64)
				USING ERRCODE = '22023';
		END IF;
		IF ft_orders._gateway_text(obj, 'id') IS NULL THEN
			RAISE EXCEPTION 'Stripe event "%": data.object has no "id"', left(e.event_id, 64)
				USING ERRCODE = '22023';
		END IF;
		st := ft_orders._gateway_text(obj -> 'metadata', 'order_id');
		IF st ~ '^[0-9]{1,18}$' THEN
			e.order_id := st::bigint;
		END IF;
		e.currency := upper(ft_orders._gateway_text(obj, 'currency'));
		IF e.kind LIKE 'payment%' THEN
			e.payment_ref := obj ->> 'id';
			e.amount_minor := ft_orders._gateway_int(obj, 'amount');
			e.reason := coalesce(ft_orders._gateway_text(obj #> '{last_payment_error}', 'decline_code'),
								 ft_orders._gateway_text(obj #> '{last_payment_error}', 'code'),
								 ft_orders._gateway_text(obj, 'cancellation_reason'));
		ELSIF e.kind = 'charge_refunded' THEN
			e.charge_ref := obj ->> 'id';
			e.payment_ref := ft_orders._gateway_text(obj, 'payment_intent');
			e.amount_minor := ft_orders._gateway_int(obj, 'amount_refunded');
			IF e.amount_minor IS NULL THEN
				RAISE EXCEPTION 'Stripe event "%": the charge has no amount_refunded', left(e.event_id, 64)
					USING ERRCODE = '22023';
			END IF;
		ELSE
			e.refund_ref := obj ->> 'id';
			e.payment_ref := ft_orders._gateway_text(obj, 'payment_intent');
			e.charge_ref := ft_orders._gateway_text(obj, 'charge');
			e.amount_minor := ft_orders._gateway_int(obj, 'amount');
			st := ft_orders._gateway_text(obj -> 'metadata', 'refund_key');
			IF st ~* '^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$' THEN
				e.refund_key := st::uuid;
			END IF;
			st := ft_orders._gateway_text(obj, 'status');
			e.kind := CASE
				WHEN st = 'succeeded' THEN 'refund_succeeded'
				WHEN st IN ('failed', 'canceled') THEN 'refund_failed'
				ELSE 'refund_pending' END;
			e.reason := ft_orders._gateway_text(obj, 'failure_reason');
		END IF;
		RETURN e;
	END IF;

	-- generic: the §5 reply body plus event_id, type, payment_key
	e.kind := CASE e.type
		WHEN 'payment.succeeded' THEN 'payment_succeeded'
		WHEN 'payment.failed' THEN 'payment_failed'
		WHEN 'payment.canceled' THEN 'payment_canceled'
		WHEN 'refund.succeeded' THEN 'refund_succeeded'
		WHEN 'refund.failed' THEN 'refund_failed'
		END;
	IF e.kind IS NULL THEN
		RETURN e;
	END IF;
	st := ft_orders._gateway_text(event, 'payment_key');
	IF st IS NULL OR st !~* '^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$' THEN
		RAISE EXCEPTION 'event "%" has no valid "payment_key" (a UUID)', left(e.event_id, 64)
			USING ERRCODE = '22023';
	END IF;
	e.payment_key := st::uuid;
	e.payment_ref := ft_orders._gateway_text(event, 'payment_id');
	e.amount_minor := ft_orders._gateway_int(event, 'amount_minor');
	e.currency := upper(ft_orders._gateway_text(event, 'currency'));
	e.reason := coalesce(ft_orders._gateway_text(event, 'decline_code'),
						 ft_orders._gateway_text(event, 'error'),
						 ft_orders._gateway_text(event, 'message'));
	IF e.kind LIKE 'refund%' THEN
		e.refund_ref := ft_orders._gateway_text(event, 'refund_id');
		st := ft_orders._gateway_text(event, 'refund_key');
		IF st ~* '^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$' THEN
			e.refund_key := st::uuid;
		ELSIF st IS NOT NULL OR e.refund_ref IS NULL THEN
			RAISE EXCEPTION 'refund event "%" needs a "refund_key" (a UUID) or a "refund_id"', left(e.event_id, 64)
				USING ERRCODE = '22023';
		END IF;
	END IF;
	RETURN e;
END
$$;
COMMENT ON FUNCTION ft_orders._parse_gateway_event(text, jsonb) IS
'Internal: validate a webhook event and reduce it to ft_orders._gateway_event; 22023 (22004 for NULL) on bad input';

-- The order a payment or charge event is about, or NULL.  Generic: by
-- payment_key.  Stripe: by metadata.order_id (set by the stripe provider on
-- every PaymentIntent and Charge), as long as the order carries no other
-- gateway reference; else by the PaymentIntent or Charge id the worker
-- stored in orders.payment_id.
CREATE FUNCTION ft_orders._gateway_event_order(e ft_orders._gateway_event)
RETURNS bigint
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT o.order_id
	  FROM ft_orders.orders o
	 WHERE e.provider = 'generic' AND o.payment_key = e.payment_key
	UNION ALL
	(SELECT o.order_id
	   FROM ft_orders.orders o
	  WHERE e.provider = 'stripe'
		AND (o.order_id = e.order_id
			 AND (o.payment_id IS NULL OR o.payment_id IN (e.payment_ref, e.charge_ref))
			 OR o.payment_id IN (e.payment_ref, e.charge_ref))
	  ORDER BY o.order_id = e.order_id DESC
	  LIMIT 1)
	LIMIT 1
$$;
COMMENT ON FUNCTION ft_orders._gateway_event_order(ft_orders._gateway_event) IS
'Internal: the order a webhook payment event is about (generic: payment_key; Stripe: metadata.order_id, else the stored PaymentIntent or Charge id), or NULL';

-- Settle a locked, not yet paid order as charged: its queued charge and any
-- dead letter go, and it becomes paid, or refunded / partially_refunded when
-- refunds arrived first (any order of arrival).  A cancelled order, or one
-- whose cancel was requested, gets a full refund queued.  Returns the detail.
CREATE FUNCTION ft_orders._gateway_settle_charged(o ft_orders.orders, e ft_orders._gateway_event)
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	st		text;
	detail	text;
	rid		bigint;
BEGIN
	DELETE FROM ft_orders.outbox WHERE order_id = o.order_id AND refund_id IS NULL;
	DELETE FROM ft_orders.dead_letters WHERE order_id = o.order_id;
	st := CASE WHEN o.refunded_minor >= o.amount_minor THEN 'refunded'
			   WHEN o.refunded_minor > 0 THEN 'partially_refunded'
			   ELSE 'paid' END;
	detail := format('%s (webhook %s %s)', st, e.type, e.event_id);
	IF (o.status = 'canceled' OR o.cancel_requested_at IS NOT NULL)
		AND o.refunded_minor < o.amount_minor THEN
		INSERT INTO ft_orders.refunds (order_id, amount_minor, currency, idempotency_key,
									   refund_key, reason)
		VALUES (o.order_id, o.amount_minor - o.refunded_minor, o.currency,
				'ft_orders:cancel', gen_random_uuid(),
				coalesce(o.cancel_reason, 'canceled before the charge succeeded'))
		ON CONFLICT (order_id, idempotency_key) DO NOTHING
		RETURNING refund_id INTO rid;
		IF rid IS NOT NULL THEN
			INSERT INTO ft_orders.outbox (order_id, refund_id) VALUES (o.order_id, rid);
			detail := detail || format(', canceled: refund %s queued', rid);
		END IF;
	END IF;
	PERFORM ft_orders._change_status(ARRAY[o.order_id], ARRAY[st::ft_orders.order_status],
									 ARRAY[NULL::integer],
									 ARRAY[coalesce(CASE WHEN e.provider = 'stripe' AND e.kind = 'charge_refunded'
														 THEN coalesce(e.payment_ref, e.charge_ref)
														 ELSE e.payment_ref END, o.payment_id)],
									 ARRAY[NULL::text], ARRAY[detail]);
	RETURN detail;
END
$$;
COMMENT ON FUNCTION ft_orders._gateway_settle_charged(ft_orders.orders, ft_orders._gateway_event) IS
'Internal: settle an order whose charge a webhook confirmed: paid (refunded / partially_refunded when refunds came first), its queued charge and dead letters removed, a refund queued when it was canceled';

-- Raise a locked order's refunded_minor to total (it never goes down) and
-- move a charged order to partially_refunded / refunded.  Returns whether
-- anything changed.
CREATE FUNCTION ft_orders._gateway_order_refunded(o ft_orders.orders, total bigint, detail text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n		bigint := greatest(o.refunded_minor, total);
BEGIN
	IF n <= o.refunded_minor THEN
		RETURN false;
	END IF;
	UPDATE ft_orders.orders SET refunded_minor = n, updated_at = now()
	 WHERE order_id = o.order_id;
	IF o.status IN ('paid', 'partially_refunded', 'refunded') THEN
		PERFORM ft_orders._change_status(
			ARRAY[o.order_id],
			ARRAY[CASE WHEN n >= o.amount_minor THEN 'refunded' ELSE 'partially_refunded' END
				  ::ft_orders.order_status],
			ARRAY[NULL::integer], ARRAY[NULL::text], ARRAY[NULL::text],
			ARRAY[format('%s, %s of %s refunded', detail, n, o.amount_minor)]);
	END IF;
	RETURN true;
END
$$;
COMMENT ON FUNCTION ft_orders._gateway_order_refunded(ft_orders.orders, bigint, text) IS
'Internal: raise an order''s refunded_minor (never lowered) and move a charged order to partially_refunded or refunded';

-- A payment outcome for order order_id.  Returns (applied, detail).
CREATE FUNCTION ft_orders._gateway_payment_event(order_id bigint, e ft_orders._gateway_event,
												 OUT applied boolean, OUT detail text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	o		ft_orders.orders;
	st		ft_orders.order_status;
	why		text;
BEGIN
	applied := false;
	-- lock order: the charge's outbox row, then the order (as the workers)
	PERFORM 1 FROM ft_orders.outbox ob
	  WHERE ob.order_id = _gateway_payment_event.order_id AND ob.refund_id IS NULL
	  FOR UPDATE;
	SELECT * INTO o FROM ft_orders.orders oo
	 WHERE oo.order_id = _gateway_payment_event.order_id FOR UPDATE;

	IF e.amount_minor IS NOT NULL AND e.amount_minor <> o.amount_minor
		OR e.currency IS NOT NULL AND e.currency <> o.currency THEN
		detail := format('not applied: the event is for %s %s, the order is %s %s',
						 e.amount_minor, e.currency, o.amount_minor, o.currency);
		RETURN;
	END IF;

	IF e.kind = 'payment_succeeded' THEN
		IF o.status IN ('paid', 'partially_refunded', 'refunded') THEN
			detail := format('repeat: order already %s', o.status);
			RETURN;
		END IF;
		applied := true;
		detail := ft_orders._gateway_settle_charged(o, e);
		RETURN;
	END IF;

	-- a failure or cancellation only settles an order still waiting for
	-- its outcome; after a success it is history, after another outcome a
	-- repeat
	IF o.status NOT IN ('pending', 'action_required') THEN
		detail := format('%s: order already %s',
						 CASE WHEN o.status IN ('paid', 'partially_refunded', 'refunded')
							  THEN 'history' ELSE 'repeat' END, o.status);
		RETURN;
	END IF;
	IF e.kind = 'payment_failed' THEN
		st := 'declined';
		why := 'declined: ' || coalesce(left(e.reason, 200), 'payment failed');
	ELSE
		st := 'canceled';
		why := 'canceled at the gateway' || coalesce(': ' || left(e.reason, 200), '');
	END IF;
	DELETE FROM ft_orders.outbox ob
	 WHERE ob.order_id = o.order_id AND ob.refund_id IS NULL;
	detail := format('%s (webhook %s %s)', st, e.type, e.event_id);
	PERFORM ft_orders._change_status(ARRAY[o.order_id], ARRAY[st], ARRAY[NULL::integer],
									 ARRAY[e.payment_ref], ARRAY[why], ARRAY[detail]);
	applied := true;
END
$$;
COMMENT ON FUNCTION ft_orders._gateway_payment_event(bigint, ft_orders._gateway_event) IS
'Internal: apply a payment outcome (succeeded, failed, canceled) from a webhook to its order';

-- Stripe charge.refunded: the gateway's own total refunded for the charge.
-- An order still waiting for its outcome was evidently charged: settled.
CREATE FUNCTION ft_orders._gateway_charge_refunded(order_id bigint, e ft_orders._gateway_event,
												   OUT applied boolean, OUT detail text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	o		ft_orders.orders;
BEGIN
	applied := false;
	PERFORM 1 FROM ft_orders.outbox ob
	  WHERE ob.order_id = _gateway_charge_refunded.order_id AND ob.refund_id IS NULL
	  FOR UPDATE;
	SELECT * INTO o FROM ft_orders.orders oo
	 WHERE oo.order_id = _gateway_charge_refunded.order_id FOR UPDATE;
	IF e.currency IS NOT NULL AND e.currency <> o.currency THEN
		detail := format('not applied: the charge is in %s, the order in %s', e.currency, o.currency);
		RETURN;
	END IF;
	detail := format('charge refunded: %s (webhook %s %s)', e.amount_minor, e.type, e.event_id);
	IF ft_orders._gateway_order_refunded(o, e.amount_minor, detail) THEN
		applied := true;
		SELECT * INTO o FROM ft_orders.orders oo WHERE oo.order_id = o.order_id;
	END IF;
	IF o.status NOT IN ('paid', 'partially_refunded', 'refunded') THEN
		applied := true;
		detail := detail || '; ' || ft_orders._gateway_settle_charged(o, e);
	END IF;
	IF NOT applied THEN
		detail := format('repeat: %s of %s already refunded', o.refunded_minor, o.amount_minor);
	END IF;
END
$$;
COMMENT ON FUNCTION ft_orders._gateway_charge_refunded(bigint, ft_orders._gateway_event) IS
'Internal: apply Stripe''s charge.refunded (the charge''s total refunded) to its order';

-- A refund outcome for refund refund_id.  Returns (applied, detail).
CREATE FUNCTION ft_orders._gateway_refund_event(refund_id bigint, e ft_orders._gateway_event,
												OUT applied boolean, OUT detail text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	o		ft_orders.orders;
	r		ft_orders.refunds;
	total	bigint;
	why		text;
BEGIN
	applied := false;
	-- lock order: the refund's outbox row, the order, the refund
	PERFORM 1 FROM ft_orders.outbox ob
	  WHERE ob.refund_id = _gateway_refund_event.refund_id FOR UPDATE;
	SELECT oo.* INTO o FROM ft_orders.orders oo
	  JOIN ft_orders.refunds rr ON rr.order_id = oo.order_id
	 WHERE rr.refund_id = _gateway_refund_event.refund_id
	   FOR UPDATE OF oo;
	SELECT * INTO r FROM ft_orders.refunds rr
	 WHERE rr.refund_id = _gateway_refund_event.refund_id FOR UPDATE;

	IF e.payment_key IS NOT NULL AND e.payment_key <> o.payment_key THEN
		detail := 'not applied: the refund belongs to another payment_key';
		RETURN;
	END IF;
	IF e.kind = 'refund_pending' THEN
		detail := 'refund still pending at the gateway';
		RETURN;
	END IF;
	IF r.status = 'succeeded' THEN
		detail := CASE e.kind WHEN 'refund_succeeded' THEN 'repeat: refund already succeeded'
							  ELSE 'history: refund already succeeded' END;
		RETURN;
	END IF;
	IF r.status = 'failed' AND e.kind = 'refund_failed' THEN
		detail := 'repeat: refund already failed';
		RETURN;
	END IF;

	DELETE FROM ft_orders.outbox ob WHERE ob.refund_id = r.refund_id;
	applied := true;
	IF e.kind = 'refund_succeeded' THEN
		UPDATE ft_orders.refunds
		   SET status = 'succeeded', last_error = NULL, updated_at = now(),
			   gateway_refund_id = coalesce(gateway_refund_id, e.refund_ref)
		 WHERE refunds.refund_id = r.refund_id;
		SELECT sum(rr.amount_minor) INTO total FROM ft_orders.refunds rr
		 WHERE rr.order_id = o.order_id AND rr.status = 'succeeded';
		detail := format('refund %s succeeded: %s (webhook %s %s)',
						 r.refund_id, r.amount_minor, e.type, e.event_id);
		PERFORM ft_orders._gateway_order_refunded(o, total, detail);
	ELSE
		why := 'failed: ' || coalesce(left(e.reason, 200), 'refund failed');
		UPDATE ft_orders.refunds
		   SET status = 'failed', last_error = why, updated_at = now(),
			   gateway_refund_id = coalesce(gateway_refund_id, e.refund_ref)
		 WHERE refunds.refund_id = r.refund_id;
		detail := format('refund %s %s (webhook %s %s)', r.refund_id, why, e.type, e.event_id);
		-- the order's status stays; its history says what happened
		PERFORM ft_orders._change_status(ARRAY[o.order_id], ARRAY[o.status], ARRAY[NULL::integer],
										 ARRAY[NULL::text], ARRAY[o.last_error], ARRAY[detail]);
	END IF;
END
$$;
COMMENT ON FUNCTION ft_orders._gateway_refund_event(bigint, ft_orders._gateway_event) IS
'Internal: apply a refund outcome (succeeded, failed) from a webhook to its refunds row and order';

CREATE FUNCTION ft_orders.apply_gateway_event(provider text, event jsonb)
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
BEGIN
	INSERT INTO ft_orders.gateway_events (provider, event_id, type, payload)
	VALUES (e.provider, e.event_id, e.type, event)
	ON CONFLICT DO NOTHING;
	IF NOT FOUND THEN
		RETURN false;			-- a redelivery: recorded and handled the first time
	END IF;

	IF e.kind IS NULL THEN
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
		IF oid_ IS NULL THEN
			what := 'no order for this event';
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

-- The webhook receiver authenticates the gateway (the signature); the
-- function trusts its caller, so it is not granted to ft_orders_app by
-- default: a role that can place orders cannot also declare them paid.
-- GRANT EXECUTE ON FUNCTION ft_orders.apply_gateway_event(text, jsonb) TO <receiver role>;
REVOKE EXECUTE ON FUNCTION
	ft_orders.apply_gateway_event(text, jsonb),
	ft_orders._parse_gateway_event(text, jsonb),
	ft_orders._gateway_text(jsonb, text),
	ft_orders._gateway_int(jsonb, text),
	ft_orders._gateway_event_order(ft_orders._gateway_event),
	ft_orders._gateway_settle_charged(ft_orders.orders, ft_orders._gateway_event),
	ft_orders._gateway_order_refunded(ft_orders.orders, bigint, text),
	ft_orders._gateway_payment_event(bigint, ft_orders._gateway_event),
	ft_orders._gateway_charge_refunded(bigint, ft_orders._gateway_event),
	ft_orders._gateway_refund_event(bigint, ft_orders._gateway_event)
FROM PUBLIC;
