/* ft_orders--1.4--1.5.sql: version 1.5 */

\echo Use "ALTER EXTENSION ft_orders UPDATE TO '1.5'" to load this file. \quit

-- Each section below is one feature of 1.5, headed by its name.

-- Install safety: exact calls between the extension's functions ------------
--
-- PostgreSQL's "Security Considerations for Extensions": a call that an
-- overload could capture runs that overload with the caller's privileges,
-- and the callers below run as the extension's owner.  Every call of one of
-- the extension's functions now names its exact argument types: a literal
-- 0 for a bigint parameter is 0::bigint (an integer literal would prefer an
-- overload taking integer), an untyped NULL or string literal carries its
-- cast (an unknown prefers an overload taking text).  All functions pin
-- search_path = pg_catalog, pg_temp, so their unqualified built-in
-- functions and operators resolve in pg_catalog only.  CREATE EXTENSION
-- refuses a schema ft_orders that a non-superuser controls
-- (ft_orders._check_database, maintenance.c), so no one else can add an
-- overload beside them.  Signatures, owners and grants stay.

CREATE OR REPLACE FUNCTION ft_orders._create_refund(
	p_order_id		bigint,
	p_amount_minor	bigint,
	p_key			text,
	p_reason		text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	o			ft_orders.orders;
	r			ft_orders.refunds;
	committed	bigint;
	new_id		bigint;
BEGIN
	SELECT * INTO STRICT o FROM ft_orders.orders WHERE order_id = p_order_id;
	SELECT * INTO r FROM ft_orders.refunds
	 WHERE order_id = p_order_id AND idempotency_key = p_key;
	IF FOUND THEN
		IF p_amount_minor IS NOT NULL AND r.amount_minor <> p_amount_minor THEN
			RAISE EXCEPTION 'idempotency key reused with different parameters'
				USING ERRCODE = 'FT409',
					  DETAIL = format('Refund %s of order %s under key "%s" is of %s, not %s.',
									  r.refund_id, p_order_id, p_key, r.amount_minor, p_amount_minor);
		END IF;
		RETURN r.refund_id;
	END IF;

	SELECT coalesce(sum(amount_minor), 0) INTO committed
	  FROM ft_orders.refunds
	 WHERE order_id = p_order_id AND status IN ('pending', 'succeeded');
	IF p_amount_minor IS NULL THEN
		p_amount_minor := o.amount_minor - committed;
	END IF;
	IF p_amount_minor <= 0 OR p_amount_minor > o.amount_minor - committed THEN
		RAISE EXCEPTION 'invalid value for argument "amount_minor"'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('Order %s was paid %s; %s is refunded or being refunded, %s is left.',
								  p_order_id, o.amount_minor, committed, o.amount_minor - committed);
	END IF;

	INSERT INTO ft_orders.refunds (order_id, amount_minor, currency, idempotency_key, refund_key, reason)
	VALUES (p_order_id, p_amount_minor, o.currency, p_key,
			ft_orders._payment_key(('refund ' || o.payment_key::text || ' ' || p_key)::text,
								   sha256(convert_to('refund:' || p_amount_minor::text, 'UTF8'))::bytea,
								   0::bigint),
			p_reason)
	RETURNING refund_id INTO new_id;
	INSERT INTO ft_orders.outbox (order_id, refund_id) VALUES (p_order_id, new_id);
	PERFORM ft_orders._change_status(ARRAY[p_order_id]::bigint[], ARRAY[o.status]::ft_orders.order_status[],
									 NULL::integer[], NULL::text[], NULL::text[],
									 ARRAY[format('refund %s of %s requested', new_id, p_amount_minor)]::text[]);
	RETURN new_id;
END
$$;

CREATE OR REPLACE FUNCTION ft_orders.refund_order(
	order_id		bigint,
	amount_minor	bigint DEFAULT NULL,
	idempotency_key	text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	o		ft_orders.orders;
	k		text := idempotency_key;
BEGIN
	IF refund_order.order_id IS NULL THEN
		RAISE EXCEPTION 'argument "order_id" must not be null'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF refund_order.amount_minor IS NOT NULL AND
	   (refund_order.amount_minor <= 0 OR refund_order.amount_minor > 99999999999) THEN
		RAISE EXCEPTION 'invalid value for argument "amount_minor"'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'The amount must be between 1 and 99999999999 minor units, or NULL for all that is left.';
	END IF;
	IF k IS NOT NULL AND (length(k) NOT BETWEEN 1 AND 255 OR k !~ '^[\x20-\x7e]+$') THEN
		RAISE EXCEPTION 'invalid value for argument "idempotency_key"'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'The key must be 1 to 255 printable ASCII characters.';
	END IF;
	-- without a key the call is idempotent per amount
	k := coalesce(k, CASE WHEN refund_order.amount_minor IS NULL THEN 'full'
						  ELSE 'amount:' || refund_order.amount_minor END);

	o := ft_orders._order_arg(refund_order.order_id::bigint);
	IF o.status IN ('pending', 'action_required') THEN
		RAISE EXCEPTION 'order % is not paid', o.order_id
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = format('Its status is %s.', o.status),
				  HINT = 'Cancel it with ft_orders.cancel_order() instead.';
	ELSIF o.status NOT IN ('paid', 'partially_refunded', 'refunded') THEN
		RAISE EXCEPTION 'order % is not paid', o.order_id
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = format('Its status is %s: nothing was charged.', o.status);
	END IF;
	RETURN ft_orders._create_refund(o.order_id::bigint, refund_order.amount_minor::bigint,
									k::text, NULL::text);
END
$$;

-- The automatic refund of orders canceled while their charge was in
-- flight and that turned out paid (payment workers, after recording).
-- Returns how many refunds were created.
CREATE OR REPLACE FUNCTION ft_orders._refund_canceled(order_ids bigint[])
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	o		ft_orders.orders;
	n		integer := 0;
BEGIN
	FOR o IN SELECT * FROM ft_orders.orders
			  WHERE order_id = ANY (order_ids) AND cancel_requested_at IS NOT NULL
				AND status = 'paid'
			  ORDER BY order_id
				FOR UPDATE
	LOOP
		CONTINUE WHEN o.status <> 'paid' OR o.cancel_requested_at IS NULL;
		PERFORM ft_orders._create_refund(o.order_id::bigint, NULL::bigint, 'cancel'::text,
										 ('canceled: ' || coalesce(o.cancel_reason, 'cancel_order()'))::text);
		n := n + 1;
	END LOOP;
	RETURN n;
END
$$;

-- Settle a locked, not yet paid order as charged: its queued charge and any
-- dead letter go, and it becomes paid, or refunded / partially_refunded when
-- refunds arrived first (any order of arrival).  A cancelled order, or one
-- whose cancel was requested, gets a full refund queued.  Returns the detail.
CREATE OR REPLACE FUNCTION ft_orders._gateway_settle_charged(o ft_orders.orders, e ft_orders._gateway_event)
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
	DELETE FROM ft_orders.dead_letters WHERE order_id = o.order_id AND refund_id IS NULL;
	st := CASE WHEN o.refunded_minor >= o.amount_minor THEN 'refunded'
			   WHEN o.refunded_minor > 0 THEN 'partially_refunded'
			   ELSE 'paid' END;
	detail := format('%s (webhook %s %s)', st, e.type, e.event_id);
	PERFORM ft_orders._change_status(ARRAY[o.order_id]::bigint[], ARRAY[st::ft_orders.order_status],
									 ARRAY[NULL::integer],
									 ARRAY[coalesce(CASE WHEN e.provider = 'stripe' AND e.kind = 'charge_refunded'
														 THEN coalesce(e.payment_ref, e.charge_ref)
														 ELSE e.payment_ref END, o.payment_id)]::text[],
									 ARRAY[NULL::text], ARRAY[detail]::text[]);
	-- a canceled order whose charge went through is refunded in full, under
	-- the same refund key as the workers' automatic refund (_refund_canceled),
	-- so that it is refunded once whichever path learns of the charge first
	IF (o.status = 'canceled' OR o.cancel_requested_at IS NOT NULL)
		AND (EXISTS (SELECT 1 FROM ft_orders.refunds r
					  WHERE r.order_id = o.order_id AND r.idempotency_key = 'cancel')
			 OR o.amount_minor > (SELECT coalesce(sum(r.amount_minor), 0) FROM ft_orders.refunds r
								   WHERE r.order_id = o.order_id
									 AND r.status IN ('pending', 'succeeded'))) THEN
		rid := ft_orders._create_refund(o.order_id::bigint, NULL::bigint, 'cancel'::text,
										('canceled: ' || coalesce(o.cancel_reason, 'cancel_order()'))::text);
		detail := detail || format(', canceled: refund %s', rid);
	END IF;
	RETURN detail;
END
$$;

-- Matching by identity: a Stripe object settles only its own order ---------
--
-- metadata.order_id is numbered per database and any system on the same
-- Stripe account may set it: an object of another system carrying our
-- order's id, amount and currency settled that order as paid (its queued
-- charge deleted, so never charged).  From 1.5 on a Stripe object matches
-- an order by its metadata.payment_key or by the PaymentIntent or Charge id
-- stored for the order; the metadata.order_id fallback is kept only for
-- orders whose first request may have gone out without a payment_key (the
-- stripe providers send it from 1.4 on), marked per order in
-- orders.match_by_order_id.  The payment workers' look-up (a search) obeys
-- the same mark (gateway_stripe_reconcile.c).
--
-- Existing orders are marked unless their payment_key is provably of rule
-- v2 (placed under 1.4, with the 1.4 library that sends the payment_key):
-- recomputed from their idempotency key while it is kept.  The column is
-- added with the default true (no table rewrite: existing rows read it
-- from the catalog), then new orders get false.
ALTER TABLE ft_orders.orders ADD COLUMN match_by_order_id boolean NOT NULL DEFAULT true;
ALTER TABLE ft_orders.orders ALTER COLUMN match_by_order_id SET DEFAULT false;
UPDATE ft_orders.orders o
   SET match_by_order_id = false
  FROM ft_orders.idempotency_keys k
 WHERE k.order_id = o.order_id
   AND o.payment_key = ft_orders._payment_key(
			k.idempotency_key::text, k.fingerprint::bytea,
			coalesce((SELECT g.generation FROM ft_orders.idempotency_key_generations g
					   WHERE g.idempotency_key = k.idempotency_key), 0::bigint)::bigint,
			ft_orders._key_space()::bytea);
-- The stripe providers send a refund's refund_key as metadata[refund_key]
-- (apply_gateway_event matches refund events by it), for the refunds
-- created from 1.5 on: the key of an older refund may be at the gateway
-- with the parameters of its first request, which Stripe holds it to.
ALTER TABLE ft_orders.refunds ADD COLUMN key_in_metadata boolean NOT NULL DEFAULT false;
ALTER TABLE ft_orders.refunds ALTER COLUMN key_in_metadata SET DEFAULT true;
COMMENT ON COLUMN ft_orders.refunds.key_in_metadata IS
'true for a refund created from 1.5 on: the stripe providers send its refund_key as metadata[refund_key]';

COMMENT ON COLUMN ft_orders.orders.match_by_order_id IS
'true for an order whose first request may have gone out without its payment_key (placed before 1.4): a Stripe object without metadata.payment_key is then matched to it by metadata.order_id; false for every order placed from 1.5 on';

-- The order a payment or charge event is about, or NULL.  Generic: by
-- payment_key.  Stripe: by metadata.payment_key, or by the PaymentIntent or
-- Charge id the worker stored in orders.payment_id; an object without a
-- payment_key by metadata.order_id only for an order marked
-- match_by_order_id and carrying no other gateway reference (and
-- _gateway_payment_event applies it only when its amount and currency are
-- the order's).
CREATE OR REPLACE FUNCTION ft_orders._gateway_event_order(e ft_orders._gateway_event)
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
		AND (o.payment_key = e.payment_key
			 OR e.payment_key IS NULL AND o.order_id = e.order_id AND o.match_by_order_id
				AND (o.payment_id IS NULL OR o.payment_id IN (e.payment_ref, e.charge_ref))
			 OR o.payment_id IN (e.payment_ref, e.charge_ref))
	  ORDER BY o.payment_key = e.payment_key DESC NULLS LAST,
			   o.order_id = e.order_id DESC NULLS LAST
	  LIMIT 1)
	LIMIT 1
$$;
COMMENT ON FUNCTION ft_orders._gateway_event_order(ft_orders._gateway_event) IS
'Internal: the order a webhook payment event is about (generic: payment_key; Stripe: metadata.payment_key or the stored PaymentIntent or Charge id; metadata.order_id only for an object without a payment_key and an order marked match_by_order_id), or NULL';

-- Notifications without secrets, settling without listeners ----------------
--
-- LISTEN needs no privilege: any role that may connect receives every
-- NOTIFY ft_orders_events.  The payload is now {"order_id", "status",
-- "attempts"} for every status, action_required included; an order's
-- next_action and client_secret are read with get_order() (ft_orders_app).
--
-- A NOTIFY is queued at commit, and when the server's notification queue
-- is full (a LISTEN session idle in a transaction holds it back) the
-- commit fails: every settle would fail with it.  So when the queue is
-- fuller than ft_orders.notify_max_queue_usage (0.5 by default, the level
-- at which PostgreSQL starts warning; 0 turns notifications off) the
-- status changes are recorded without NOTIFY, with a WARNING; order_events
-- is the durable history either way.
CREATE OR REPLACE FUNCTION ft_orders._change_status(
	order_ids	bigint[],
	statuses	ft_orders.order_status[],
	attempts	integer[],
	payment_ids text[],
	errors		text[],
	details		text[])
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	changed		integer;
	notified	integer;
	usage		float8 := pg_notification_queue_usage();
	max_usage	float8 := coalesce(nullif(current_setting('ft_orders.notify_max_queue_usage', true), '')::float8,
								   0.5);
	notify		boolean := usage < max_usage;
BEGIN
	WITH v AS (
		SELECT *
		  FROM unnest(order_ids, statuses, attempts, payment_ids, errors, details)
			   AS v(order_id, status, attempts, payment_id, error, detail)
	), u AS (
		UPDATE ft_orders.orders o
		   SET status = v.status,
			   attempts = coalesce(v.attempts, o.attempts),
			   payment_id = coalesce(v.payment_id, o.payment_id),
			   last_error = v.error,
			   next_action = CASE WHEN v.status = 'action_required' THEN o.next_action END,
			   client_secret = CASE WHEN v.status = 'action_required' THEN o.client_secret END,
			   updated_at = now()
		  FROM v
		 WHERE o.order_id = v.order_id
	 RETURNING o.order_id, o.status, o.attempts, v.detail
	), e AS (
		INSERT INTO ft_orders.order_events (order_id, status, attempts, detail)
		SELECT u.order_id, u.status, u.attempts, u.detail FROM u
		RETURNING order_events.order_id, order_events.status, order_events.attempts
	)
	SELECT count(*)::integer,
		   count(CASE WHEN notify
					  THEN pg_notify('ft_orders_events'::text,
									 json_build_object('order_id', e.order_id,
													   'status', e.status,
													   'attempts', e.attempts)::text)
				 END)::integer
	  INTO changed, notified
	  FROM e;
	IF changed > 0 AND NOT notify AND max_usage > 0 THEN
		RAISE WARNING 'ft_orders: % status change(s) recorded without NOTIFY ft_orders_events: the notification queue is % %% full',
			changed, round((usage * 100)::numeric, 4)
			USING DETAIL = format('ft_orders.notify_max_queue_usage is %s; order_events holds every change.', max_usage),
				  HINT = 'A session that LISTENs and stays idle in a transaction holds the queue back: see pg_stat_activity.';
	END IF;
	RETURN changed;
END
$$;
COMMENT ON FUNCTION ft_orders._change_status(bigint[], ft_orders.order_status[], integer[], text[], text[], text[]) IS
'Internal: the one way an order''s status moves (payment workers, retry_dead_letter, cancel_order, refunds, webhooks): apply status changes, append order_events rows and NOTIFY ft_orders_events with order_id, status and attempts (no NOTIFY, a WARNING, while the notification queue is fuller than ft_orders.notify_max_queue_usage)';

------------------------------------------------------------------------------
-- Operator role
------------------------------------------------------------------------------

-- ft_orders_operator: the people who run the shop's payments (a console,
-- psql).  They read the orders, their history and the monitoring, cancel,
-- refund, requeue dead letters and schedule look-ups, each through a
-- function that checks its arguments; they cannot write a table, call an
-- internal function or place an order (that is ft_orders_app's, the
-- shop's, and the two roles stay apart).  Roles belong to the server, not
-- to a database: a second database of the same server finds the role
-- there and only adds its grants.
DO $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'ft_orders_operator') THEN
		CREATE ROLE ft_orders_operator NOLOGIN;
	END IF;
EXCEPTION
	-- another database's CREATE EXTENSION made it at the same moment
	WHEN duplicate_object OR unique_violation THEN
		NULL;
END
$$;
COMMENT ON ROLE ft_orders_operator IS
'Grant to operators: may read the orders, their history, the dead letters and the monitoring views, and call cancel_order(), refund_order(), retry_dead_letter(), reconcile(), get_order() and metrics(); may not write the tables, call internal functions or place orders';

-- Requeueing runs with the owner's rights, as cancel_order and
-- refund_order do, so that the right to requeue is one EXECUTE grant and
-- not the writes the requeue makes (outbox, dead_letters, orders,
-- order_events, _change_status).  Its statement names every object with
-- its schema and every operator with pg_catalog's, and its search_path has
-- been pinned since 1.0.  reconcile() likewise: it only marks outbox
-- events due for a look-up.  Neither is PUBLIC's; grants made before 1.5
-- are kept.
ALTER FUNCTION ft_orders.retry_dead_letter(bigint) SECURITY DEFINER;
ALTER FUNCTION ft_orders.reconcile(interval) SECURITY DEFINER;
REVOKE EXECUTE ON FUNCTION
	ft_orders.retry_dead_letter(bigint),
	ft_orders.reconcile(interval)
FROM PUBLIC;

GRANT USAGE ON SCHEMA ft_orders TO ft_orders_operator;
GRANT SELECT ON
	ft_orders.queue_status,
	ft_orders.order_summary,
	ft_orders.worker_status,
	ft_orders.gateway_status,
	ft_orders.orders,
	ft_orders.order_events,
	ft_orders.payment_attempts,
	ft_orders.refunds,
	ft_orders.dead_letters,
	ft_orders.gateway_events
TO ft_orders_operator;
GRANT EXECUTE ON FUNCTION
	ft_orders.worker_stats(),
	ft_orders.gateway_stats(),
	ft_orders.metrics(),
	ft_orders.get_order(bigint),
	ft_orders.cancel_order(bigint, text),
	ft_orders.refund_order(bigint, bigint, text),
	ft_orders.retry_dead_letter(bigint),
	ft_orders.reconcile(interval)
TO ft_orders_operator;

COMMENT ON FUNCTION ft_orders.retry_dead_letter(bigint) IS
'Requeue one dead letter: its order goes back to pending with a fresh attempt budget and the same payment_key (a refund''s: the refund is sent again, the order keeps its status); false if there is no such dead letter. Runs with the owner''s rights; ft_orders_operator may call it';
COMMENT ON FUNCTION ft_orders.get_order(bigint) IS
'The order with this id, or a NULL row; works on replicas. ft_orders_app and ft_orders_operator may call it';
COMMENT ON FUNCTION ft_orders.metrics() IS
'All monitoring figures as Prometheus text (exposition format 0.0.4): worker outcome counters, worker states, gateway requests, errors, circuit and latency histogram, outbox, orders and dead letters. ft_orders_app and ft_orders_operator may call it';
COMMENT ON FUNCTION ft_orders.reconcile(interval) IS
'Schedule a look-up at the gateway, done by the payment workers at once, of every charge or refund that was sent at least older_than ago and is not settled (outcome unknown, retrying, action_required); returns how many were scheduled. Runs with the owner''s rights; ft_orders_operator may call it';
COMMENT ON FUNCTION ft_orders.cancel_order(bigint, text) IS
'Cancel an order: never sent -> canceled at once and never charged; sent (in flight, unknown or failed) -> recorded and honoured once the gateway''s answer is known (a charge that succeeded is refunded automatically); paid -> 55000 (refund it instead); canceled -> canceled, nothing written. ft_orders_operator may call it';
COMMENT ON FUNCTION ft_orders.refund_order(bigint, bigint, text) IS
'Refund a paid order, in full (amount_minor NULL: all that is left) or in part; returns the refund id. Idempotent per idempotency_key (without one: per amount); the refunds of an order never sum above its amount (22023); an order that is not paid raises 55000. Sent by the payment workers. ft_orders_operator may call it';

-- The claim floor -----------------------------------------------------------
-- The payment workers claim from a floor in the next_attempt_at index kept
-- in shared memory, so that the dead row versions an old snapshot keeps
-- (pg_dump, a long reader) are not walked again on every claim
-- (docs/design.md, "The claim floor").  No table changes: the floor works
-- on every schema version.  This reads it, for monitoring and tests (no SET
-- search_path: a C function that resolves no names).
CREATE FUNCTION ft_orders._claim_floor()
RETURNS timestamptz
AS 'MODULE_PATHNAME', 'ft_orders_claim_floor'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;
COMMENT ON FUNCTION ft_orders._claim_floor() IS
'Internal: the claim floor of this database, the least next_attempt_at the payment workers'' claims look at; NULL when claims start at the head of the outbox''s next_attempt_at index';
REVOKE EXECUTE ON FUNCTION ft_orders._claim_floor() FROM PUBLIC;

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
			amt := ft_orders._gateway_int(event #> '{data,object}', 'amount'::text);
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
