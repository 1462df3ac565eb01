/* ft_orders--1.2--1.3.sql: version 1.3, the payment lifecycle (SPEC §11) */

\echo Use "ALTER EXTENSION ft_orders UPDATE TO '1.3'" to load this file. \quit

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

-- #16 reconciliation, cancel, refund ---------------------------------------
-- (branch wt-16: the payment workers' side of the lifecycle)

------------------------------------------------------------------------------
-- Columns and tables
------------------------------------------------------------------------------

-- outbox.first_sent_at: when a request of this work (a charge, or the
-- refund of refund_id) may first have reached the gateway.  A claim sets it
-- before anything is sent; a look-up that finds nothing at the gateway
-- clears it, and the next POST starts a new key lifetime.  Events of 1.2
-- that were tried already count as sent at their creation (conservative:
-- at worst one look-up too many).
-- outbox.lookup: look the work up at the gateway before anything is sent
-- again (set by reconcile(), by cancel_order() and when an order is parked
-- in action_required).
ALTER TABLE ft_orders.outbox
	ADD COLUMN first_sent_at	timestamptz,
	ADD COLUMN lookup			boolean NOT NULL DEFAULT false;
UPDATE ft_orders.outbox SET first_sent_at = created_at WHERE attempts > 0;

-- A dead letter keeps what its requeue needs: which refund (NULL: the
-- charge) and when it was first sent.
ALTER TABLE ft_orders.dead_letters
	ADD COLUMN refund_id		bigint,
	ADD COLUMN first_sent_at	timestamptz;
UPDATE ft_orders.dead_letters d SET first_sent_at = o.created_at
  FROM ft_orders.orders o WHERE o.order_id = d.order_id;

-- payment_attempts: what the request was, and the outcomes of look-ups
-- (unknown: the gateway has no such payment) and refunds.
ALTER TABLE ft_orders.payment_attempts
	ADD COLUMN request		text NOT NULL DEFAULT 'charge'
		CHECK (request IN ('charge', 'lookup', 'refund', 'refund_lookup')),
	ADD COLUMN refund_id	bigint;
ALTER TABLE ft_orders.payment_attempts
	DROP CONSTRAINT payment_attempts_outcome_check,
	ADD CONSTRAINT payment_attempts_outcome_check
		CHECK (outcome IN ('paid', 'declined', 'failed', 'retry', 'unknown',
						   'canceled', 'action_required', 'refunded', 'refund_failed'));

CREATE INDEX refunds_order_id_idx ON ft_orders.refunds (order_id);

REVOKE ALL ON TABLE ft_orders.refunds FROM PUBLIC;
REVOKE ALL ON SEQUENCE ft_orders.refunds_refund_id_seq FROM PUBLIC;

COMMENT ON TABLE ft_orders.refunds IS
'One row per refund (refund_order(), or the automatic refund of an order canceled while its charge was in flight); sent by the payment workers under refund_key';
COMMENT ON COLUMN ft_orders.refunds.refund_id IS
'Refund id from refunds_refund_id_seq, returned by refund_order()';
COMMENT ON COLUMN ft_orders.refunds.order_id IS
'The order refunded';
COMMENT ON COLUMN ft_orders.refunds.amount_minor IS
'Amount refunded, in the order''s minor units; pending and succeeded refunds of an order never sum above its amount';
COMMENT ON COLUMN ft_orders.refunds.currency IS
'The order''s currency';
COMMENT ON COLUMN ft_orders.refunds.idempotency_key IS
'The caller''s key (refund_order()), unique per order: a repeat returns the same refund';
COMMENT ON COLUMN ft_orders.refunds.refund_key IS
'Idempotency-Key sent to the gateway for this refund, derived from the key, the order''s payment_key and the amount';
COMMENT ON COLUMN ft_orders.refunds.status IS
'pending (not settled yet), succeeded or failed (the gateway refused it)';
COMMENT ON COLUMN ft_orders.refunds.gateway_refund_id IS
'The gateway''s reference of the refund';
COMMENT ON COLUMN ft_orders.refunds.reason IS
'Why: "canceled: ..." for the refund of a canceled order, else NULL';
COMMENT ON COLUMN ft_orders.refunds.last_error IS
'Why the last attempt did not settle the refund';
COMMENT ON COLUMN ft_orders.refunds.created_at IS
'When the refund was requested';
COMMENT ON COLUMN ft_orders.refunds.updated_at IS
'Last change of status';
COMMENT ON SEQUENCE ft_orders.refunds_refund_id_seq IS
'Refund ids; kept by pg_dump';
COMMENT ON COLUMN ft_orders.outbox.refund_id IS
'NULL: charge the order; else send this refund';
COMMENT ON COLUMN ft_orders.outbox.first_sent_at IS
'When a request of this work may first have reached the gateway; older than ft_orders.gateway_key_ttl: look it up before sending again';
COMMENT ON COLUMN ft_orders.outbox.lookup IS
'Look the work up at the gateway before sending it again (reconcile(), cancel_order(), action_required)';
COMMENT ON COLUMN ft_orders.dead_letters.refund_id IS
'NULL: the charge of the order; else the refund given up on';
COMMENT ON COLUMN ft_orders.dead_letters.first_sent_at IS
'outbox.first_sent_at of the event, restored when it is requeued';
COMMENT ON COLUMN ft_orders.payment_attempts.request IS
'charge (POST), lookup (GET of the payment), refund (POST) or refund_lookup (GET of the refund)';
COMMENT ON COLUMN ft_orders.payment_attempts.refund_id IS
'The refund sent or looked up, NULL for a charge';
COMMENT ON COLUMN ft_orders.orders.next_action IS
'action_required: what the customer must do (the gateway''s next_action), else NULL';
COMMENT ON COLUMN ft_orders.orders.client_secret IS
'action_required: the secret the browser needs to finish the payment (Stripe: the PaymentIntent''s client_secret)';
COMMENT ON COLUMN ft_orders.orders.cancel_requested_at IS
'When cancel_order() was called for an order whose charge was in flight or unknown; honoured once the outcome is known';
COMMENT ON COLUMN ft_orders.orders.cancel_reason IS
'The reason given to cancel_order()';
COMMENT ON COLUMN ft_orders.orders.refunded_minor IS
'Sum of the succeeded refunds, in minor units';

------------------------------------------------------------------------------
-- Status changes carry what the application needs
------------------------------------------------------------------------------

-- Same as 1.2, plus: the NOTIFY payload of an action_required order carries
-- its next_action and client_secret, and a status change to anything else
-- clears them.
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
	 RETURNING o.order_id, o.status, o.attempts, v.detail, o.next_action, o.client_secret
	), e AS (
		INSERT INTO ft_orders.order_events (order_id, status, attempts, detail)
		SELECT u.order_id, u.status, u.attempts, u.detail FROM u
		RETURNING order_events.order_id, order_events.status, order_events.attempts
	)
	SELECT count(pg_notify('ft_orders_events',
						   CASE WHEN u.status = 'action_required'
								THEN json_build_object('order_id', e.order_id,
													   'status', e.status,
													   'attempts', e.attempts,
													   'next_action', u.next_action,
													   'client_secret', u.client_secret)
								ELSE json_build_object('order_id', e.order_id,
													   'status', e.status,
													   'attempts', e.attempts)
						   END::text))::integer
	  INTO changed
	  FROM e JOIN u ON u.order_id = e.order_id;
	RETURN changed;
END
$$;
COMMENT ON FUNCTION ft_orders._change_status(bigint[], ft_orders.order_status[], integer[], text[], text[], text[]) IS
'Internal: the one way an order''s status moves (payment workers, retry_dead_letter, cancel_order, refunds): apply status changes, append order_events rows and NOTIFY ft_orders_events (with next_action and client_secret for action_required)';

------------------------------------------------------------------------------
-- Refunds
------------------------------------------------------------------------------

-- The refund of (order, key): created with its outbox event, or the one
-- that exists.  Caller holds the order's row lock and has checked the
-- order.  Raises FT409 when the key names a refund of another amount and
-- 22023 when the amount is above what is left.  refund_key: the
-- _payment_key derivation of ("refund <payment_key> <key>", SHA-256 of
-- "refund:<amount>", generation 0): stable for the refund, and no order's
-- (key, fingerprint) pair can produce it (an order's fingerprint is the
-- SHA-256 of its encoded request, never of such a string).
CREATE FUNCTION ft_orders._create_refund(
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
			ft_orders._payment_key('refund ' || o.payment_key::text || ' ' || p_key,
								   sha256(convert_to('refund:' || p_amount_minor::text, 'UTF8')),
								   0),
			p_reason)
	RETURNING refund_id INTO new_id;
	INSERT INTO ft_orders.outbox (order_id, refund_id) VALUES (p_order_id, new_id);
	PERFORM ft_orders._change_status(ARRAY[p_order_id], ARRAY[o.status], NULL::integer[],
									 NULL::text[], NULL::text[],
									 ARRAY[format('refund %s of %s requested', new_id, p_amount_minor)]);
	RETURN new_id;
END
$$;
COMMENT ON FUNCTION ft_orders._create_refund(bigint, bigint, text, text) IS
'Internal: create a refund and its outbox event under the order''s row lock (refund_order, and the automatic refund of a canceled order)';

CREATE FUNCTION ft_orders.refund_order(
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

	SELECT * INTO o FROM ft_orders.orders WHERE orders.order_id = refund_order.order_id FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'invalid value for argument "order_id"'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('There is no order %s.', refund_order.order_id);
	END IF;
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
	RETURN ft_orders._create_refund(o.order_id, refund_order.amount_minor, k, NULL);
END
$$;
COMMENT ON FUNCTION ft_orders.refund_order(bigint, bigint, text) IS
'Refund a paid order, in full (amount_minor NULL: all that is left) or in part; returns the refund id. Idempotent per idempotency_key (without one: per amount); the refunds of an order never sum above its amount (22023); an order that is not paid raises 55000. Sent by the payment workers. Owner only unless granted';

-- The automatic refund of orders canceled while their charge was in
-- flight and that turned out paid (payment workers, after recording).
-- Returns how many refunds were created.
CREATE FUNCTION ft_orders._refund_canceled(order_ids bigint[])
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
		PERFORM ft_orders._create_refund(o.order_id, NULL, 'cancel',
										 'canceled: ' || coalesce(o.cancel_reason, 'cancel_order()'));
		n := n + 1;
	END LOOP;
	RETURN n;
END
$$;
COMMENT ON FUNCTION ft_orders._refund_canceled(bigint[]) IS
'Internal: refund in full the paid orders among these whose cancellation was requested while their charge was in flight';

-- A refund settled by a payment worker: the refund row, and for a success
-- the order's refunded_minor and status (partially_refunded / refunded)
-- through _change_status; a refused refund leaves the status and appends
-- an order_events row saying so.  outcomes: 'refunded' or 'refund_failed'.
CREATE FUNCTION ft_orders._settle_refunds(
	refund_ids	bigint[],
	outcomes	text[],
	gateway_ids	text[],
	errors		text[])
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v		record;
	o		ft_orders.orders;
	n		integer := 0;
BEGIN
	FOR v IN SELECT u.refund_id, u.outcome, u.gateway_id, u.error, r.order_id, r.amount_minor
			   FROM unnest(refund_ids, outcomes, gateway_ids, errors)
					AS u(refund_id, outcome, gateway_id, error)
			   JOIN ft_orders.refunds r ON r.refund_id = u.refund_id
			  WHERE r.status = 'pending'
			  ORDER BY r.order_id, u.refund_id
	LOOP
		SELECT * INTO o FROM ft_orders.orders WHERE order_id = v.order_id FOR UPDATE;
		IF v.outcome = 'refunded' THEN
			UPDATE ft_orders.refunds
			   SET status = 'succeeded', gateway_refund_id = v.gateway_id,
				   last_error = NULL, updated_at = now()
			 WHERE refund_id = v.refund_id;
			UPDATE ft_orders.orders SET refunded_minor = refunded_minor + v.amount_minor
			 WHERE order_id = v.order_id;
			PERFORM ft_orders._change_status(
				ARRAY[v.order_id],
				ARRAY[CASE WHEN o.refunded_minor + v.amount_minor >= o.amount_minor
						   THEN 'refunded' ELSE 'partially_refunded' END::ft_orders.order_status],
				NULL::integer[], NULL::text[], NULL::text[],
				ARRAY[format('refund %s of %s succeeded', v.refund_id, v.amount_minor)]);
		ELSE
			UPDATE ft_orders.refunds
			   SET status = 'failed', gateway_refund_id = coalesce(v.gateway_id, gateway_refund_id),
				   last_error = v.error, updated_at = now()
			 WHERE refund_id = v.refund_id;
			PERFORM ft_orders._change_status(
				ARRAY[v.order_id], ARRAY[o.status], NULL::integer[], NULL::text[],
				ARRAY[o.last_error],
				ARRAY[format('refund %s failed: %s', v.refund_id, coalesce(v.error, 'refused'))]);
		END IF;
		n := n + 1;
	END LOOP;
	RETURN n;
END
$$;
COMMENT ON FUNCTION ft_orders._settle_refunds(bigint[], text[], text[], text[]) IS
'Internal: record refunds settled by the payment workers (refund row, order refunded_minor and status, order_events, NOTIFY)';

------------------------------------------------------------------------------
-- Cancel
------------------------------------------------------------------------------

CREATE FUNCTION ft_orders.cancel_order(order_id bigint, reason text DEFAULT NULL)
RETURNS ft_orders.order_status
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	o		ft_orders.orders;
	ev		ft_orders.outbox;
	dl		ft_orders.dead_letters;
	why		text;
BEGIN
	IF cancel_order.order_id IS NULL THEN
		RAISE EXCEPTION 'argument "order_id" must not be null'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF reason IS NOT NULL AND length(reason) NOT BETWEEN 1 AND 1000 THEN
		RAISE EXCEPTION 'invalid value for argument "reason"'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'The reason must be 1 to 1000 characters, or NULL.';
	END IF;
	why := 'canceled' || coalesce(': ' || reason, '');

	SELECT * INTO o FROM ft_orders.orders WHERE orders.order_id = cancel_order.order_id FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'invalid value for argument "order_id"'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('There is no order %s.', cancel_order.order_id);
	END IF;

	IF o.status = 'canceled' THEN
		RETURN o.status;
	ELSIF o.status IN ('paid', 'partially_refunded', 'refunded') THEN
		RAISE EXCEPTION 'order % is already paid', o.order_id
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = format('Its status is %s.', o.status),
				  HINT = 'Refund it with ft_orders.refund_order() instead.';
	ELSIF o.status = 'declined' THEN
		RAISE EXCEPTION 'order % was declined by the gateway', o.order_id
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'It was never charged; there is nothing to cancel.';
	ELSIF o.cancel_requested_at IS NOT NULL THEN
		RETURN o.status;		-- recorded already: nothing written
	END IF;

	IF o.status = 'failed' THEN
		-- given up on: its outcome may be unknown (a lost reply), so it is
		-- looked up once more and canceled only if the gateway never
		-- charged it
		DELETE FROM ft_orders.dead_letters d
		 WHERE d.order_id = o.order_id AND d.refund_id IS NULL
		RETURNING * INTO dl;
		IF dl.event_id IS NULL OR dl.first_sent_at IS NULL THEN
			PERFORM ft_orders._change_status(ARRAY[o.order_id], ARRAY['canceled'::ft_orders.order_status],
											 NULL::integer[], NULL::text[], NULL::text[], ARRAY[why]);
			UPDATE ft_orders.orders SET cancel_reason = reason WHERE orders.order_id = o.order_id;
			RETURN 'canceled';
		END IF;
		INSERT INTO ft_orders.outbox (event_id, order_id, first_sent_at, lookup)
		VALUES (dl.event_id, dl.order_id, dl.first_sent_at, true);
		UPDATE ft_orders.orders SET cancel_requested_at = now(), cancel_reason = reason
		 WHERE orders.order_id = o.order_id;
		PERFORM ft_orders._change_status(ARRAY[o.order_id], ARRAY['pending'::ft_orders.order_status],
										 NULL::integer[], NULL::text[], NULL::text[],
										 ARRAY['cancel requested: looking the payment up']);
		RETURN 'pending';
	END IF;

	-- pending or action_required: the charge's outbox event (waits for a
	-- worker's claim of it to commit, then sees its first_sent_at)
	SELECT * INTO ev FROM ft_orders.outbox b
	 WHERE b.order_id = o.order_id AND b.refund_id IS NULL
	   FOR UPDATE;
	IF FOUND AND ev.first_sent_at IS NULL AND ev.attempts = 0 THEN
		-- never sent: canceled now, never charged
		DELETE FROM ft_orders.outbox b WHERE b.event_id = ev.event_id;
		UPDATE ft_orders.orders SET cancel_reason = reason WHERE orders.order_id = o.order_id;
		PERFORM ft_orders._change_status(ARRAY[o.order_id], ARRAY['canceled'::ft_orders.order_status],
										 NULL::integer[], NULL::text[], NULL::text[], ARRAY[why]);
		RETURN 'canceled';
	END IF;

	-- sent (in flight or outcome unknown): honoured once the outcome is known
	UPDATE ft_orders.orders SET cancel_requested_at = now(), cancel_reason = reason
	 WHERE orders.order_id = o.order_id;
	IF FOUND THEN
		UPDATE ft_orders.outbox b
		   SET lookup = true,
			   next_attempt_at = CASE WHEN b.lease_until > now() THEN b.next_attempt_at ELSE now() END
		 WHERE b.event_id = ev.event_id;
	END IF;
	PERFORM ft_orders._change_status(ARRAY[o.order_id], ARRAY[o.status], NULL::integer[],
									 NULL::text[], ARRAY[o.last_error],
									 ARRAY['cancel requested: honoured once the outcome is known']);
	RETURN o.status;
END
$$;
COMMENT ON FUNCTION ft_orders.cancel_order(bigint, text) IS
'Cancel an order: never sent -> canceled at once and never charged; sent (in flight, unknown or failed) -> recorded and honoured once the gateway''s answer is known (a charge that succeeded is refunded automatically); paid -> 55000 (refund it instead); canceled -> canceled, nothing written. Owner only unless granted';

------------------------------------------------------------------------------
-- Reconciliation on demand
------------------------------------------------------------------------------

-- Schedules look-ups; the payment workers perform them (no HTTP in a SQL
-- function, no transaction across HTTP).
CREATE FUNCTION ft_orders.reconcile(older_than interval DEFAULT '1 hour')
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n		bigint;
BEGIN
	IF older_than IS NULL THEN
		RAISE EXCEPTION 'argument "older_than" must not be null'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF older_than < interval '0' THEN
		RAISE EXCEPTION 'invalid value for argument "older_than"'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'The interval must not be negative.';
	END IF;
	UPDATE ft_orders.outbox b
	   SET lookup = true, next_attempt_at = now()
	 WHERE b.first_sent_at IS NOT NULL
	   AND b.first_sent_at <= now() - older_than
	   AND (b.lease_until IS NULL OR b.lease_until <= now());
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END
$$;
COMMENT ON FUNCTION ft_orders.reconcile(interval) IS
'Schedule a look-up at the gateway, done by the payment workers at once, of every charge or refund that was sent at least older_than ago and is not settled (outcome unknown, retrying, action_required); returns how many were scheduled. Owner only unless granted';

------------------------------------------------------------------------------
-- Views
------------------------------------------------------------------------------

CREATE OR REPLACE VIEW ft_orders.queue_status AS
SELECT pg_catalog.count(*) AS pending,
	   pg_catalog.count(*) FILTER (WHERE o.next_attempt_at <= pg_catalog.now()) AS due_now,
	   pg_catalog.count(*) FILTER (WHERE o.lease_until > pg_catalog.now()) AS in_flight,
	   pg_catalog.count(*) FILTER (WHERE o.attempts > 0
								   AND o.next_attempt_at > pg_catalog.now()
								   AND (o.lease_until IS NULL OR o.lease_until <= pg_catalog.now()))
			AS scheduled_retries,
	   (SELECT pg_catalog.count(*) FROM ft_orders.dead_letters) AS dead_letters,
	   pg_catalog.now() - pg_catalog.min(o.created_at) AS oldest_pending_age,
	   pg_catalog.count(*) FILTER (WHERE o.refund_id IS NOT NULL) AS refunds
  FROM ft_orders.outbox o;
COMMENT ON COLUMN ft_orders.queue_status.refunds IS
'Of the outbox events, refunds still to be sent';
COMMENT ON COLUMN ft_orders.queue_status.pending IS
'Outbox events: charges and refunds still to be sent';

------------------------------------------------------------------------------
-- Privileges: cancel, refund and reconcile are the owner's; an application
-- role gets them with one GRANT (docs/reference.md, "Privileges"):
--   GRANT EXECUTE ON FUNCTION ft_orders.cancel_order(bigint, text),
--         ft_orders.refund_order(bigint, bigint, text) TO ft_orders_app;
------------------------------------------------------------------------------

REVOKE EXECUTE ON FUNCTION
	ft_orders._create_refund(bigint, bigint, text, text),
	ft_orders.refund_order(bigint, bigint, text),
	ft_orders._refund_canceled(bigint[]),
	ft_orders._settle_refunds(bigint[], text[], text[], text[]),
	ft_orders.cancel_order(bigint, text),
	ft_orders.reconcile(interval)
FROM PUBLIC;
