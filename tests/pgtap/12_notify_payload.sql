-- 12_notify_payload.sql: NOTIFY ft_orders_events carries no secrets
-- (docs/reference.md, "Notifications"): LISTEN needs no privilege, so the
-- payload is order_id, status and attempts for every status,
-- action_required included; next_action and client_secret are read with
-- get_order() under its grant.  A listener (a dblink connection of a role
-- without any grant) receives the notification of a committed change.
BEGIN;
SELECT plan(8);

-- a role with no grant at all listens (created and dropped by the writer
-- connection, so that the listener can log in as it)
SELECT dblink_connect('w', ft_test.conninfo('ft13_writer'));
SELECT dblink_exec('w', 'CREATE ROLE ft_nobody LOGIN');
SELECT dblink_connect('lsn', replace(ft_test.conninfo('ft13_listener'), 'user=postgres', 'user=ft_nobody'));
SELECT is((SELECT u FROM dblink('lsn', 'SELECT current_user::text') AS t(u text)), 'ft_nobody',
		  'the listener is a role without any grant');
SELECT dblink_exec('lsn', 'LISTEN ft_orders_events');

-- an order moved to action_required with a next_action and a client_secret
SELECT order_id AS ar FROM dblink('w',
	$$SELECT order_id FROM ft_orders.place_order('ft13-ar', 'c', 1300, 'EUR')$$) AS t(order_id bigint) \gset
SELECT dblink_exec('w', format($$UPDATE ft_orders.orders
	SET next_action = '{"type":"redirect_to_url","redirect_to_url":{"url":"https://bank.example/3ds"}}',
		client_secret = 'pi_ft13_secret_s3cr3t'
	WHERE order_id = %s$$, :ar));
SELECT n FROM dblink('w', format($$SELECT ft_orders._change_status(ARRAY[%s]::bigint[],
	ARRAY['action_required']::ft_orders.order_status[], ARRAY[1]::integer[], ARRAY['pi_ft13']::text[],
	NULL::text[], ARRAY['action required: waiting for the customer']::text[])$$, :ar)) AS t(n int);

CREATE TEMP TABLE got (payload text);
DO $$
DECLARE
	deadline timestamptz := clock_timestamp() + interval '10 s';
BEGIN
	LOOP
		INSERT INTO got SELECT extra FROM dblink_get_notify('lsn') WHERE notify_name = 'ft_orders_events';
		EXIT WHEN EXISTS (SELECT 1 FROM got) OR clock_timestamp() > deadline;
		PERFORM pg_sleep(0.05);
	END LOOP;
END
$$;

SELECT is((SELECT count(*)::int FROM got WHERE (payload::jsonb ->> 'order_id')::bigint = :ar), 1,
		  'the listener got the action_required notification');
SELECT is((SELECT string_agg(k, ',' ORDER BY k) FROM got, jsonb_object_keys(payload::jsonb) k
			WHERE (payload::jsonb ->> 'order_id')::bigint = :ar),
		  'attempts,order_id,status', 'its payload has order_id, status and attempts only');
SELECT is((SELECT payload::jsonb ->> 'status' FROM got WHERE (payload::jsonb ->> 'order_id')::bigint = :ar),
		  'action_required', '... status action_required');
SELECT is((SELECT count(*)::int FROM got WHERE payload LIKE '%s3cr3t%' OR payload LIKE '%bank.example%'), 0,
		  'neither the client_secret nor the next_action is in any payload');

-- the application reads them under its grant
SET LOCAL ROLE app_user;
SELECT is((ft_orders.get_order(:ar)).client_secret, 'pi_ft13_secret_s3cr3t',
		  'ft_orders_app reads the client_secret with get_order()');
SELECT is((ft_orders.get_order(:ar)).next_action ->> 'type', 'redirect_to_url',
		  '... and the next_action');
RESET ROLE;
SET LOCAL ROLE ft_nobody;
SELECT throws_ok(format('SELECT ft_orders.get_order(%s)', :ar), '42501', NULL,
				 'a role without the grant cannot call get_order()');
RESET ROLE;

-- clean up what the writer committed
SELECT dblink_exec('w', format($$DELETE FROM ft_orders.order_events WHERE order_id = %1$s;
	DELETE FROM ft_orders.outbox WHERE order_id = %1$s;
	DELETE FROM ft_orders.idempotency_keys WHERE order_id = %1$s;
	DELETE FROM ft_orders.orders WHERE order_id = %1$s$$, :ar));
SELECT dblink_disconnect('lsn');
SELECT dblink_exec('w', 'DROP ROLE ft_nobody');
SELECT dblink_disconnect('w');

SELECT * FROM finish();
ROLLBACK;
