/* ft_orders--1.3--1.4.sql: version 1.4 */

\echo Use "ALTER EXTENSION ft_orders UPDATE TO '1.4'" to load this file. \quit

-- #17 several databases: payment keys unique per database ------------------
--
-- One server may serve several databases (ft_orders.database is a list), all
-- talking to one gateway account.  The payment_key rule of 1.2 (v1: derived
-- from the idempotency key, the request fingerprint and the purge
-- generation) gave the same key and request placed in two databases the
-- same Idempotency-Key: the gateway answered the second order with the
-- first one's payment.  From 1.4 on, place_order derives rule v2, which
-- also hashes the key space: the server's system identifier and the
-- database's name, equal on every member of one replication cluster (so a
-- lost incarnation of an order retried on the new primary keeps its key)
-- and different for every other database or server.  Orders placed before
-- keep their keys; _payment_key(text, bytea, bigint) stays, for
-- recomputing them.

-- No SET search_path: C functions that resolve no names.
CREATE FUNCTION ft_orders._key_space()
RETURNS bytea
AS 'MODULE_PATHNAME', 'ft_orders_key_space'
LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION ft_orders._key_space() IS
'Internal: the key space of this database''s payment keys: the system identifier (8 bytes, big-endian) followed by the database name';
REVOKE EXECUTE ON FUNCTION ft_orders._key_space() FROM PUBLIC;

CREATE FUNCTION ft_orders._payment_key(idempotency_key text, fingerprint bytea, generation bigint, key_space bytea)
RETURNS uuid
AS 'MODULE_PATHNAME', 'ft_orders_payment_key_v2'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION ft_orders._payment_key(text, bytea, bigint, bytea) IS
'Internal: the payment_key of an order placed from 1.4 on, a version 8 UUID from SHA-256 of ("ft_orders payment_key v2", key space, idempotency key, request fingerprint, purge generation), each length-prefixed';
REVOKE EXECUTE ON FUNCTION ft_orders._payment_key(text, bytea, bigint, bytea) FROM PUBLIC;

COMMENT ON FUNCTION ft_orders._payment_key(text, bytea, bigint) IS
'Internal: the payment_key of an order placed under 1.2 or 1.3 (rule v1), a version 8 UUID from SHA-256 of ("ft_orders payment_key v1", idempotency key, request fingerprint, purge generation), each length-prefixed';
COMMENT ON COLUMN ft_orders.orders.payment_key IS
'Idempotency-Key sent to the gateway for the whole life of the order, across retries, restarts and failovers; derived from the database''s key space, the idempotency key, the request fingerprint and the key''s purge generation (orders placed under 1.2 and 1.3: without the key space; before 1.2: random)';
COMMENT ON FUNCTION ft_orders._check_database() IS
'Internal: refuses CREATE EXTENSION in a database that ft_orders.database does not list';
COMMENT ON FUNCTION ft_orders.place_order(text, text, bigint, text, jsonb, text) IS
'Place an order idempotently: stores the order, its key and an outbox event in the caller''s transaction; a repeat of the key returns the same order (replayed = true); the key with other parameters raises FT409. The payment_key is derived from the database''s key space, the key, the request and the key''s purge generation. ft_orders_app may call it';

-- #17 Stripe webhooks on an account several databases share ---------------
--
-- Order ids are numbered per database, so metadata.order_id does not name
-- one order on an account that several listed databases share.  From 1.4
-- on the stripe providers send metadata[payment_key] (unique per database
-- and server: the key space above) with every PaymentIntent and Charge,
-- and a webhook event is matched by it when it carries one; an object
-- created before (no payment_key) is still matched by metadata.order_id,
-- and then applied only when its amount and currency are the order's.  A
-- charge.refunded whose charge amount is not the order's is recorded, not
-- applied.  The three functions keep their signatures, owners and grants.

-- Validate and normalize an event; 22023 (22004 for NULL) on bad input.
CREATE OR REPLACE FUNCTION ft_orders._parse_gateway_event(provider text, event jsonb)
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
		-- metadata.payment_key names the order on an account several
		-- databases share (order ids are per database); a payment that
		-- carries one not a UUID is nobody's here: no order_id match either
		IF e.kind NOT LIKE 'refund%' THEN
			st := ft_orders._gateway_text(obj -> 'metadata', 'payment_key');
			IF st ~* '^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$' THEN
				e.payment_key := st::uuid;
			ELSIF st IS NOT NULL THEN
				e.order_id := NULL;
			END IF;
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
-- payment_key.  Stripe: by metadata.payment_key (set by the stripe
-- providers on every PaymentIntent and Charge), or by the PaymentIntent or
-- Charge id the worker stored in orders.payment_id; an object without a
-- payment_key (created before it was sent) by metadata.order_id, as long
-- as the order carries no other gateway reference.  Order ids are numbered
-- per database, so an order_id match may be another database's payment on
-- the same account: _gateway_payment_event applies it only when its amount
-- and currency are the order's.
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
			 OR e.payment_key IS NULL AND o.order_id = e.order_id
				AND (o.payment_id IS NULL OR o.payment_id IN (e.payment_ref, e.charge_ref))
			 OR o.payment_id IN (e.payment_ref, e.charge_ref))
	  ORDER BY o.payment_key = e.payment_key DESC NULLS LAST,
			   o.order_id = e.order_id DESC NULLS LAST
	  LIMIT 1)
	LIMIT 1
$$;
COMMENT ON FUNCTION ft_orders._gateway_event_order(ft_orders._gateway_event) IS
'Internal: the order a webhook payment event is about (generic: payment_key; Stripe: metadata.payment_key or the stored PaymentIntent or Charge id, metadata.order_id for an object without a payment_key), or NULL';

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
