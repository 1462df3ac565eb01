#!/bin/bash
# install_script.sh: the one-file install script (ft_orders--1.5.sql) and the
# upgrade chain (ft_orders--1.0.sql, then ft_orders--1.0--1.1.sql ..
# ft_orders--1.4--1.5.sql) give the same catalogue.
#
# One server preloading ft_orders, two databases: "chain" gets CREATE
# EXTENSION ft_orders VERSION '1.0' and ALTER EXTENSION ft_orders UPDATE,
# "fresh" a plain CREATE EXTENSION ft_orders (which PostgreSQL runs from
# the one-file script: a direct install script beats an update path).  The
# two catalogues are compared object kind by object kind, as text without
# OIDs (catalogue queries, not pg_dump: see docs/design.md, "Install
# scripts").  The roles ft_orders_app and ft_orders_operator belong to the
# server, so they are dropped between the two installs and each install
# creates them itself.
#
# Not compared, as inherent to ALTER TABLE: attnum (a dropped column leaves
# a hole; the live columns are compared in order) and atthasmissing /
# attmissingval (a column added with a default keeps that default for the
# rows of before; both tables start empty).

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"

pg_start "ft_orders.database = 'ftdb, chain, fresh'" "ft_orders.workers = 0" ||
	bail_out "server did not start"
psql -XAtq -d postgres -v ON_ERROR_STOP=1 -c "CREATE DATABASE chain" -c "CREATE DATABASE fresh" >/dev/null ||
	bail_out "could not create the databases"
# pg_start installed the extension in ftdb: drop it there, so that the roles
# can go and each install below creates them
psql_q "DROP EXTENSION ft_orders; DROP SCHEMA IF EXISTS ft_orders;
        DROP ROLE IF EXISTS ft_orders_app; DROP ROLE IF EXISTS ft_orders_operator" >/dev/null ||
	bail_out "could not drop the extension of ftdb"

# Catalogue queries, one per object kind.  :'s' is the schema; every query
# prints text only (no OIDs), in a stable order.
declare -A Q
declare -a KINDS=(extension members schema relations columns constraints indexes views functions
				  types sequences triggers policies rules comments init_privs depends roles settings)
Q[extension]="
SELECT 'owner=' || e.extowner::regrole || ' schema=' || e.extnamespace::regnamespace
	   || ' relocatable=' || e.extrelocatable || ' version=' || e.extversion
  FROM pg_extension e WHERE e.extname = 'ft_orders'
UNION ALL
SELECT 'config #' || u.n || ' ' || u.c::regclass || ' where=' || coalesce(u.cond, '')
  FROM pg_extension e, unnest(e.extconfig, e.extcondition) WITH ORDINALITY AS u(c, cond, n)
 WHERE e.extname = 'ft_orders'"
Q[members]="
SELECT pg_describe_object(d.classid, d.objid, d.objsubid)
  FROM pg_depend d JOIN pg_extension e ON d.refclassid = 'pg_extension'::regclass AND d.refobjid = e.oid
 WHERE e.extname = 'ft_orders' AND d.deptype = 'e'
 ORDER BY 1"
Q[schema]="
SELECT n.nspname || ' owner=' || n.nspowner::regrole || ' acl=' || coalesce(n.nspacl::text, 'NULL')
  FROM pg_namespace n WHERE n.nspname = 'ft_orders'"
Q[relations]="
SELECT c.relname || ' kind=' || c.relkind::text || ' owner=' || c.relowner::regrole
	   || ' am=' || coalesce(am.amname, '') || ' persistence=' || c.relpersistence::text
	   || ' acl=' || coalesce(c.relacl::text, 'NULL') || ' options=' || coalesce(c.reloptions::text, 'NULL')
	   || ' replident=' || c.relreplident::text || ' rls=' || c.relrowsecurity || '/' || c.relforcerowsecurity
	   || ' natts=' || (SELECT count(*) FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped)
	   || ' type=' || coalesce(c.reltype::regtype::text, '') || ' oftype=' || coalesce(nullif(c.reloftype, 0)::regtype::text, '')
  FROM pg_class c LEFT JOIN pg_am am ON am.oid = c.relam
 WHERE c.relnamespace = 'ft_orders'::regnamespace
 ORDER BY 1"
Q[columns]="
SELECT c.relname || ' #' || row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum) || ' ' || a.attname
	   || ' ' || format_type(a.atttypid, a.atttypmod) || ' typmod=' || a.atttypmod
	   || ' notnull=' || a.attnotnull || ' default=' || coalesce(pg_get_expr(ad.adbin, ad.adrelid), 'NULL')
	   || ' identity=' || a.attidentity::text || ' generated=' || a.attgenerated::text
	   || ' collation=' || coalesce(co.collname, '') || ' storage=' || a.attstorage::text
	   || ' compression=' || a.attcompression::text || ' stattarget=' || coalesce(a.attstattarget::text, 'NULL')
	   || ' acl=' || coalesce(a.attacl::text, 'NULL') || ' options=' || coalesce((SELECT array_agg(o ORDER BY o) FROM unnest(a.attoptions) o
												WHERE o NOT LIKE 'pg\\_attver=%')::text, 'NULL')
  FROM pg_class c
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
  LEFT JOIN pg_collation co ON co.oid = a.attcollation
 WHERE c.relnamespace = 'ft_orders'::regnamespace AND c.relkind <> 'i'
 ORDER BY c.relname, a.attnum"
Q[constraints]="
SELECT coalesce(co.conrelid::regclass::text, co.contypid::regtype::text) || ' ' || co.conname
	   || ' type=' || co.contype::text || ' deferrable=' || co.condeferrable || '/' || co.condeferred
	   || ' valid=' || co.convalidated || ' ' || pg_get_constraintdef(co.oid)
  FROM pg_constraint co WHERE co.connamespace = 'ft_orders'::regnamespace
 ORDER BY 1"
Q[indexes]="
SELECT pg_get_indexdef(i.indexrelid) || ' primary=' || i.indisprimary || ' unique=' || i.indisunique
	   || ' valid=' || i.indisvalid || ' clustered=' || i.indisclustered
  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
 WHERE c.relnamespace = 'ft_orders'::regnamespace
 ORDER BY 1"
Q[views]="
SELECT c.relname || E'\n' || pg_get_viewdef(c.oid)
  FROM pg_class c WHERE c.relnamespace = 'ft_orders'::regnamespace AND c.relkind IN ('v', 'm')
 ORDER BY c.relname"
Q[functions]="
SELECT p.oid::regprocedure || ' owner=' || p.proowner::regrole || ' kind=' || p.prokind::text
	   || ' acl=' || coalesce(p.proacl::text, 'NULL') || ' secdef=' || p.prosecdef
	   || ' config=' || coalesce(p.proconfig::text, 'NULL') || ' volatile=' || p.provolatile::text
	   || ' parallel=' || p.proparallel::text || ' leakproof=' || p.proleakproof || ' strict=' || p.proisstrict
	   || ' cost=' || p.procost || ' rows=' || p.prorows || ' lang=' || l.lanname
	   || ' result=' || pg_get_function_result(p.oid) || ' args=' || pg_get_function_arguments(p.oid)
	   || E'\n' || pg_get_functiondef(p.oid)
  FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
 WHERE p.pronamespace = 'ft_orders'::regnamespace
 ORDER BY p.oid::regprocedure::text"
Q[types]="
SELECT t.typname || ' type=' || t.typtype::text || ' owner=' || t.typowner::regrole
	   || ' acl=' || coalesce(t.typacl::text, 'NULL')
	   || ' labels=' || coalesce((SELECT string_agg(e.enumlabel || ':' || e.enumsortorder, ',' ORDER BY e.enumsortorder)
								   FROM pg_enum e WHERE e.enumtypid = t.oid), '')
  FROM pg_type t WHERE t.typnamespace = 'ft_orders'::regnamespace
 ORDER BY t.typname"
Q[sequences]="
SELECT s.seqrelid::regclass || ' ' || format_type(s.seqtypid, NULL) || ' start=' || s.seqstart
	   || ' increment=' || s.seqincrement || ' min=' || s.seqmin || ' max=' || s.seqmax
	   || ' cache=' || s.seqcache || ' cycle=' || s.seqcycle
	   || ' owned_by=' || coalesce((SELECT d.refobjid::regclass || '.' || a.attname
									  FROM pg_depend d JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
									 WHERE d.classid = 'pg_class'::regclass AND d.objid = s.seqrelid
									   AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')), '')
  FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid
 WHERE c.relnamespace = 'ft_orders'::regnamespace
 ORDER BY 1"
Q[triggers]="
SELECT pg_get_triggerdef(t.oid) || ' enabled=' || t.tgenabled::text
  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
 WHERE c.relnamespace = 'ft_orders'::regnamespace AND NOT t.tgisinternal
 ORDER BY 1"
Q[policies]="
SELECT p.tablename || ' ' || p.policyname || ' ' || p.permissive || ' ' || p.roles::text || ' ' || p.cmd
	   || ' using=' || coalesce(p.qual, '') || ' check=' || coalesce(p.with_check, '')
  FROM pg_policies p WHERE p.schemaname = 'ft_orders'
 ORDER BY 1"
Q[rules]="
SELECT r.rulename || ' on ' || r.ev_class::regclass || ' ' || pg_get_ruledef(r.oid)
  FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class
 WHERE c.relnamespace = 'ft_orders'::regnamespace AND r.rulename <> '_RETURN'
 ORDER BY 1"
# every comment on an object of the schema (tables, columns, views, view
# columns, sequences, functions, types, indexes, constraints) and on the
# schema itself
Q[comments]="
SELECT pg_describe_object(d.classoid, d.objoid, d.objsubid) || ' = ' || d.description
  FROM pg_description d
 WHERE (pg_identify_object(d.classoid, d.objoid, 0)).schema = 'ft_orders'
    OR (d.classoid = 'pg_namespace'::regclass AND d.objoid = 'ft_orders'::regnamespace)
 ORDER BY 1"
Q[init_privs]="
SELECT pg_describe_object(i.classoid, i.objoid, i.objsubid) || ' ' || i.privtype::text || ' ' || i.initprivs::text
  FROM pg_init_privs i
 WHERE (pg_identify_object(i.classoid, i.objoid, 0)).schema = 'ft_orders'
    OR (i.classoid = 'pg_namespace'::regclass AND i.objoid = 'ft_orders'::regnamespace)
 ORDER BY 1"
# dependencies between the objects of the schema (a default on its
# sequence, a view on its function, a function on a type, ...)
Q[depends]="
SELECT regexp_replace(pg_describe_object(d.classid, d.objid, d.objsubid), 'pg_toast_[0-9]+', 'pg_toast_N') || ' -> '
	   || pg_describe_object(d.refclassid, d.refobjid, d.refobjsubid) || ' ' || d.deptype::text
  FROM pg_depend d
 WHERE d.refclassid <> 'pg_extension'::regclass
   AND ((pg_identify_object(d.classid, d.objid, 0)).schema = 'ft_orders'
	    OR (pg_identify_object(d.refclassid, d.refobjid, 0)).schema = 'ft_orders')
 ORDER BY 1"
Q[roles]="
SELECT r.rolname || ' super=' || r.rolsuper || ' login=' || r.rolcanlogin || ' inherit=' || r.rolinherit
	   || ' createrole=' || r.rolcreaterole || ' createdb=' || r.rolcreatedb || ' bypassrls=' || r.rolbypassrls
	   || ' config=' || coalesce(r.rolconfig::text, 'NULL')
	   || ' member_of=' || coalesce((SELECT string_agg(m.roleid::regrole::text, ',' ORDER BY 1)
									   FROM pg_auth_members m WHERE m.member = r.oid), '')
	   || ' comment=' || coalesce(shobj_description(r.oid, 'pg_authid'), 'NULL')
  FROM pg_roles r WHERE r.rolname LIKE 'ft\\_orders\\_%'
 ORDER BY 1"
Q[settings]="
SELECT s.name || '=' || s.setting || ' context=' || s.context || ' source=' || s.source
  FROM pg_settings s WHERE s.name LIKE 'ft\\_orders.%'
 ORDER BY 1"

# snapshot DB DIR: one file per object kind in DIR
snapshot()
{
	local db=$1 dir=$2 kind
	mkdir -p "$dir"
	for kind in "${KINDS[@]}"; do
		psql -XAtq -v ON_ERROR_STOP=1 -d "$db" -c "${Q[$kind]}" >"$dir/$kind" ||
			{ echo "the $kind query failed on $db" >&2; return 1; }
	done
}

# --- the upgrade chain ------------------------------------------------------------
psql -XAtq -v ON_ERROR_STOP=1 -d chain -c "CREATE EXTENSION ft_orders VERSION '1.0'" >/dev/null
ok $? "chain: CREATE EXTENSION ft_orders VERSION '1.0'"
psql -XAtq -v ON_ERROR_STOP=1 -d chain -c "ALTER EXTENSION ft_orders UPDATE" >/dev/null
ok $? "chain: ALTER EXTENSION ft_orders UPDATE"
is "$(psql -XAtq -d chain -c "SELECT extversion FROM pg_extension WHERE extname = 'ft_orders'")" "1.5" \
	"chain: 1.5 is installed"
snapshot chain "$FT_TMP/chain" || bail_out "snapshot of the chain failed"
missing="SELECT atthasmissing FROM pg_attribute WHERE attrelid = 'ft_orders.orders'::regclass AND attname = 'match_by_order_id'"
chain_missing=$(psql -XAtq -d chain -c "$missing")

# the roles go with the extension, so that the fresh install creates them
psql -XAtq -v ON_ERROR_STOP=1 -d chain -c "DROP EXTENSION ft_orders" -c "DROP SCHEMA IF EXISTS ft_orders" \
	-c "DROP ROLE ft_orders_app" -c "DROP ROLE ft_orders_operator" >/dev/null
ok $? "chain: extension and roles dropped"

# --- the one-file script ------------------------------------------------------------
is "$(psql -XAtq -d fresh -c "SELECT count(*) FROM pg_extension_update_paths('ft_orders') WHERE target = '1.5' AND path IS NOT NULL")" \
	"5" "the update paths to 1.5 are still there (1.0 .. 1.4)"
psql -XAtq -v ON_ERROR_STOP=1 -d fresh -c "CREATE EXTENSION ft_orders" >/dev/null
ok $? "fresh: CREATE EXTENSION ft_orders"
# which script ran shows in the one trace ALTER TABLE ADD COLUMN leaves: a
# column added with a default keeps it as the "missing value" of the rows
# of before (orders.match_by_order_id, added in 1.5)
is "$chain_missing/$(psql -XAtq -d fresh -c "$missing")" "t/f" \
	"fresh: PostgreSQL ran the one-file script (orders.match_by_order_id created with the table, not added)"
snapshot fresh "$FT_TMP/fresh" || bail_out "snapshot of the fresh install failed"

# --- the comparison -------------------------------------------------------------------
for kind in "${KINDS[@]}"; do
	d=$(diff -u --label "chain/$kind" --label "fresh/$kind" "$FT_TMP/chain/$kind" "$FT_TMP/fresh/$kind")
	is "$d" "" "same $kind ($(grep -c '' "$FT_TMP/fresh/$kind") lines)"
done

# the comparison covers what it claims to
cmp_ok "$(grep -c '' "$FT_TMP/fresh/members")" -ge 55 "(members: every function, table, view, type and sequence)"
cmp_ok "$(grep -c '' "$FT_TMP/fresh/columns")" -ge 100 "(columns of every table and view)"
like "$(cat "$FT_TMP/fresh/extension")" 'config #13 ft_orders.gateway_events where=' "(extconfig, all 13 entries)"
like "$(cat "$FT_TMP/fresh/init_privs")" 'function ft_orders.metrics\(\) e .*ft_orders_app=X' "(pg_init_privs)"
like "$(cat "$FT_TMP/fresh/roles")" 'ft_orders_operator .* comment=Grant to operators' "(the roles)"
like "$(cat "$FT_TMP/fresh/functions")" 'ft_orders.retry_dead_letter\(bigint\) .* secdef=true' "(SECURITY DEFINER)"

is "$(grep -c 'terminated by signal' "$PG_LOG")" "0" "no process crashed"

done_testing
