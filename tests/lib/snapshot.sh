# snapshot.sh: digests of ft_orders' data and catalogue, for the upgrade and
# dump/restore tests.  Source after common.sh; both functions run psql with
# the usual PG* variables (pass -d DB to pick another database).
#
#   ft_data_digest [psql args...]     one line per table: name, rows, md5 of
#                                     the rows in text form (sorted), and the
#                                     sequences' positions (the generations
#                                     table from 1.2 on, gateway_events and
#                                     refunds from 1.3 on)
#   ft_catalog_snapshot [psql args...] every object of the extension as text:
#                                     members, function definitions, columns,
#                                     defaults, constraints, indexes, views,
#                                     enum labels, ACLs, reloptions, COMMENTs,
#                                     extconfig; no OIDs, so two databases
#                                     (or an upgraded and a fresh install)
#                                     compare with diff

ft_data_digest()
{
	psql -XAtq -v ON_ERROR_STOP=1 "$@" <<'SQL'
SELECT 'orders ' || count(*) || ' ' || md5(coalesce(string_agg(t::text, E'\n' ORDER BY t::text), '')) FROM ft_orders.orders t;
SELECT 'idempotency_keys ' || count(*) || ' ' || md5(coalesce(string_agg(t::text, E'\n' ORDER BY t::text), '')) FROM ft_orders.idempotency_keys t;
SELECT 'outbox ' || count(*) || ' ' || md5(coalesce(string_agg(t::text, E'\n' ORDER BY t::text), '')) FROM ft_orders.outbox t;
SELECT 'dead_letters ' || count(*) || ' ' || md5(coalesce(string_agg(t::text, E'\n' ORDER BY t::text), '')) FROM ft_orders.dead_letters t;
SELECT 'payment_attempts ' || count(*) || ' ' || md5(coalesce(string_agg(t::text, E'\n' ORDER BY t::text), '')) FROM ft_orders.payment_attempts t;
SELECT 'order_events ' || count(*) || ' ' || md5(coalesce(string_agg(t::text, E'\n' ORDER BY t::text), '')) FROM ft_orders.order_events t;
-- 1.2 and later: the purge generations
SELECT to_regclass('ft_orders.idempotency_key_generations') IS NOT NULL AS ft_has_generations \gset
\if :ft_has_generations
SELECT 'idempotency_key_generations ' || count(*) || ' ' || md5(coalesce(string_agg(t::text, E'\n' ORDER BY t::text), '')) FROM ft_orders.idempotency_key_generations t;
\endif
-- 1.3 and later: the webhook events
SELECT to_regclass('ft_orders.gateway_events') IS NOT NULL AS ft_has_gateway_events \gset
\if :ft_has_gateway_events
SELECT 'gateway_events ' || count(*) || ' ' || md5(coalesce(string_agg(t::text, E'\n' ORDER BY t::text), '')) FROM ft_orders.gateway_events t;
\endif
-- 1.3 and later: refunds
SELECT to_regclass('ft_orders.refunds') IS NOT NULL AS ft_has_refunds \gset
\if :ft_has_refunds
SELECT 'refunds ' || count(*) || ' ' || md5(coalesce(string_agg(t::text, E'\n' ORDER BY t::text), '')) FROM ft_orders.refunds t;
SELECT 'refunds_refund_id_seq ' || last_value || ' ' || is_called FROM ft_orders.refunds_refund_id_seq;
\endif
SELECT 'orders_order_id_seq ' || last_value || ' ' || is_called FROM ft_orders.orders_order_id_seq;
SELECT 'outbox_event_id_seq ' || last_value || ' ' || is_called FROM ft_orders.outbox_event_id_seq;
SELECT 'order_events_id_seq ' || last_value || ' ' || is_called FROM ft_orders.order_events_id_seq;
SQL
}

ft_catalog_snapshot()
{
	psql -XAtq -v ON_ERROR_STOP=1 "$@" <<'SQL'
WITH ext AS (SELECT oid, extversion, extconfig, extcondition FROM pg_extension WHERE extname = 'ft_orders'),
	 ns AS (SELECT 'ft_orders'::regnamespace AS oid)
SELECT line FROM (
	SELECT 'extension version ' || extversion FROM ext
	UNION ALL
	SELECT 'member ' || pg_describe_object(d.classid, d.objid, 0)
	  FROM pg_depend d, ext
	 WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'
	   -- not the row and array types made with a table, view or type (their
	   -- internal dependency): members too from PostgreSQL 17 on only
	   AND NOT EXISTS (SELECT FROM pg_depend i
					    WHERE i.classid = d.classid AND i.objid = d.objid AND i.deptype = 'i')
	UNION ALL
	SELECT 'extconfig ' || c::regclass::text || ' where=' || coalesce(cond, '')
	  FROM ext, unnest(ext.extconfig, ext.extcondition) AS u(c, cond)
	UNION ALL
	SELECT 'schema acl=' || coalesce(n.nspacl::text, '') || ' comment=' || coalesce(obj_description(n.oid, 'pg_namespace'), '')
	  FROM pg_namespace n, ns WHERE n.oid = ns.oid
	UNION ALL
	SELECT 'function ' || p.oid::regprocedure::text || ' acl=' || coalesce(p.proacl::text, '')
		   || ' comment=' || coalesce(obj_description(p.oid, 'pg_proc'), '') || E'\n' || pg_get_functiondef(p.oid)
	  FROM pg_proc p, ns WHERE p.pronamespace = ns.oid
	UNION ALL
	SELECT 'relation ' || c.relname || ' kind=' || c.relkind::text || ' acl=' || coalesce(c.relacl::text, '')
		   || ' options=' || coalesce(c.reloptions::text, '') || ' comment=' || coalesce(obj_description(c.oid, 'pg_class'), '')
	  FROM pg_class c, ns WHERE c.relnamespace = ns.oid
	UNION ALL
	SELECT 'column ' || c.relname || '.' || a.attname || ' #' || a.attnum || ' ' || format_type(a.atttypid, a.atttypmod)
		   || ' notnull=' || a.attnotnull || ' default=' || coalesce(pg_get_expr(ad.adbin, ad.adrelid), '')
		   || ' comment=' || coalesce(col_description(c.oid, a.attnum), '')
	  FROM pg_class c JOIN ns ON c.relnamespace = ns.oid
	  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
	  LEFT JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
	 WHERE c.relkind IN ('r', 'v', 'S')
	UNION ALL
	SELECT 'constraint ' || co.conrelid::regclass::text || ' ' || co.conname || ' ' || pg_get_constraintdef(co.oid)
	  FROM pg_constraint co, ns WHERE co.connamespace = ns.oid
	UNION ALL
	SELECT 'index ' || pg_get_indexdef(i.indexrelid)
	  FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid, ns WHERE c.relnamespace = ns.oid
	UNION ALL
	SELECT 'view ' || c.relname || E'\n' || pg_get_viewdef(c.oid)
	  FROM pg_class c, ns WHERE c.relnamespace = ns.oid AND c.relkind = 'v'
	UNION ALL
	SELECT 'sequence ' || s.seqrelid::regclass::text || ' ' || format_type(s.seqtypid, NULL) || ' start=' || s.seqstart
		   || ' increment=' || s.seqincrement || ' max=' || s.seqmax || ' cycle=' || s.seqcycle
		   || ' owned_by=' || coalesce((SELECT d.refobjid::regclass::text || '.' || d.refobjsubid FROM pg_depend d
										 WHERE d.classid = 'pg_class'::regclass AND d.objid = s.seqrelid
										   AND d.deptype = 'a'), '')
	  FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid, ns WHERE c.relnamespace = ns.oid
	UNION ALL
	SELECT 'enum ' || t.typname || ' labels=' || (SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
												  FROM pg_enum e WHERE e.enumtypid = t.oid)
		   || ' comment=' || coalesce(obj_description(t.oid, 'pg_type'), '')
	  FROM pg_type t, ns WHERE t.typnamespace = ns.oid AND t.typtype = 'e'
	UNION ALL
	SELECT 'role ' || r.rolname || ' comment=' || coalesce(shobj_description(r.oid, 'pg_authid'), '')
	  FROM pg_roles r WHERE r.rolname IN ('ft_orders_app', 'ft_orders_operator')
) AS s(line)
ORDER BY line;
SQL
}
