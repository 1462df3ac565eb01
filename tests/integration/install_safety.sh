#!/bin/bash
# install_safety.sh: CREATE EXTENSION ft_orders never installs into a schema
# that a role short of superuser controls (PostgreSQL's "Security
# Considerations for Extensions").
#
# The attack: mallory, a non-superuser who owns database shop, creates
# schema ft_orders before the superuser's CREATE EXTENSION, which would
# install into it.  As its owner she then adds overloads that the
# extension's own calls prefer (_payment_key(text, bytea, integer) for the
# literal 0 of _create_refund, _create_refund(bigint, text, text, text) for
# the untyped NULL of _refund_canceled), and the next refund_order(), run
# by an operator, runs her code as the extension's owner: ALTER ROLE
# mallory SUPERUSER.  The script plays the attack to its end and asserts
# that mallory is no superuser afterwards.
#
# Then: a superuser-owned schema that grants CREATE to a non-superuser is
# refused (42501), one holding an object not of the extension is refused
# (55000, the object named), and an empty superuser-owned schema (what
# pg_restore creates) is accepted.  A refused CREATE EXTENSION leaves
# nothing behind.

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"

pg_start "ft_orders.database = 'ftdb, shop, shop2, shop3'" "ft_orders.workers = 0" ||
	bail_out "server did not start"

psql -XAtq -d postgres -v ON_ERROR_STOP=1 >/dev/null <<'SQL' || bail_out "set-up failed"
CREATE ROLE mallory LOGIN;
CREATE DATABASE shop OWNER mallory;
CREATE DATABASE shop2;
CREATE DATABASE shop3;
SQL

# 1. the attack, played to its end
psql -XAtq -U mallory -d shop -c "CREATE SCHEMA ft_orders" >/dev/null ||
	bail_out "mallory could not create her schema"
out=$(psql -X -d shop -c "\\set VERBOSITY verbose" -c "CREATE EXTENSION ft_orders" 2>&1)
like "$out" 'ERROR:  42501: schema "ft_orders" is owned by role "mallory", which is not a superuser' \
	"CREATE EXTENSION into a schema a non-superuser owns: 42501"
like "$out" 'HINT:  Drop schema "ft_orders" \(CREATE EXTENSION creates it\)' "... with a hint"
is "$(psql -XAtq -d shop -c "SELECT count(*) FROM pg_extension WHERE extname = 'ft_orders'")" "0" \
	"... and no extension was created"
is "$(psql -XAtq -d shop -c "SELECT count(*) FROM pg_proc WHERE pronamespace = 'ft_orders'::regnamespace")" "0" \
	"... nor any function left in her schema"

# her overloads (they succeed only if the extension was installed)
psql -X -U mallory -d shop >/dev/null 2>&1 <<'SQL'
CREATE FUNCTION ft_orders._payment_key(text, bytea, integer) RETURNS uuid
LANGUAGE plpgsql AS $$
BEGIN
	ALTER ROLE mallory SUPERUSER;
	RETURN gen_random_uuid();
END $$;
CREATE FUNCTION ft_orders._create_refund(bigint, text, text, text) RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
	ALTER ROLE mallory SUPERUSER;
	RETURN NULL;
END $$;
SQL
# the operator's routine work: an order, paid, refunded
psql -X -d shop >/dev/null 2>&1 <<'SQL'
SELECT ft_orders.place_order('k1', 'c1', 500, 'EUR');
UPDATE ft_orders.orders SET status = 'paid';
SELECT ft_orders.refund_order(order_id) FROM ft_orders.orders;
SQL
is "$(psql -XAtq -d postgres -c "SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'")" "f" \
	"after the attack mallory is still no superuser"

# 2. a superuser's schema granting CREATE to a non-superuser
psql -XAtq -d shop2 -v ON_ERROR_STOP=1 \
	-c "CREATE SCHEMA ft_orders" -c "GRANT CREATE ON SCHEMA ft_orders TO mallory" >/dev/null ||
	bail_out "set-up of shop2 failed"
out=$(psql -X -d shop2 -c "\\set VERBOSITY verbose" -c "CREATE EXTENSION ft_orders" 2>&1)
like "$out" 'ERROR:  42501: schema "ft_orders" grants CREATE to mallory, which is not a superuser' \
	"a schema that grants CREATE to a non-superuser: 42501"
psql -XAtq -d shop2 -c "REVOKE CREATE ON SCHEMA ft_orders FROM mallory" -c "GRANT CREATE ON SCHEMA ft_orders TO PUBLIC" >/dev/null
out=$(psql -X -d shop2 -c "\\set VERBOSITY verbose" -c "CREATE EXTENSION ft_orders" 2>&1)
like "$out" 'ERROR:  42501: schema "ft_orders" grants CREATE to PUBLIC' "... or to PUBLIC: 42501"

# 3. a superuser's schema holding objects that are not the extension's
psql -XAtq -d shop3 -v ON_ERROR_STOP=1 >/dev/null <<'SQL' || bail_out "set-up of shop3 failed"
CREATE SCHEMA ft_orders;
CREATE FUNCTION ft_orders._create_refund(bigint, text, text, text) RETURNS bigint
LANGUAGE sql AS 'SELECT NULL::bigint';
CREATE TABLE ft_orders.leftover (x int);
SQL
out=$(psql -X -d shop3 -c "\\set VERBOSITY verbose" -c "CREATE EXTENSION ft_orders" 2>&1)
like "$out" 'ERROR:  55000: schema "ft_orders" already holds [0-9]+ object\(s\) that are not part of the extension' \
	"a schema holding foreign objects: 55000"
like "$out" 'function ft_orders._create_refund\(bigint,text,text,text\)' "... the planted function is named"
like "$out" 'table ft_orders.leftover' "... and the table"
is "$(psql -XAtq -d shop3 -c "SELECT count(*) FROM pg_extension WHERE extname = 'ft_orders'")" "0" \
	"... and no extension was created"

# 4. an empty schema a superuser owns (pg_restore creates it so): accepted
psql -XAtq -d shop3 -v ON_ERROR_STOP=1 \
	-c "DROP FUNCTION ft_orders._create_refund(bigint, text, text, text)" \
	-c "DROP TABLE ft_orders.leftover" >/dev/null || bail_out "clean-up of shop3 failed"
out=$(psql -XAtq -d shop3 -c "CREATE EXTENSION ft_orders" -c "SELECT extversion FROM pg_extension WHERE extname = 'ft_orders'" 2>&1)
like "$out" '^1\.[0-9]+$' "an empty schema a superuser owns: CREATE EXTENSION succeeds"
is "$(psql -XAtq -c "SELECT count(*) FROM pg_extension WHERE extname = 'ft_orders'")" "1" \
	"the usual install (no schema beforehand) still works"

is "$(grep -c 'terminated by signal' "$PG_LOG")" "0" "no crash in the server log"
pg_stop
done_testing
