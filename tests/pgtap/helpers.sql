-- helpers.sql: functions the pgTAP files share, created once by run.sh in
-- schema ft_test of the throwaway database (not a test file: run.sh runs
-- only the files whose names start with a digit).

CREATE SCHEMA ft_test;

-- poll(condition, seconds): re-evaluate the SQL condition until it is true
-- or the time is up; for waiting on other sessions (dblink) without a fixed
-- long sleep
CREATE FUNCTION ft_test.poll(cond text, seconds float8 DEFAULT 10) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
	deadline timestamptz := clock_timestamp() + make_interval(secs => seconds);
	result boolean;
BEGIN
	LOOP
		PERFORM pg_stat_clear_snapshot();
		EXECUTE 'SELECT (' || cond || ')' INTO result;
		IF result THEN
			RETURN true;
		END IF;
		IF clock_timestamp() > deadline THEN
			RETURN false;
		END IF;
		PERFORM pg_sleep(0.02);
	END LOOP;
END
$$;

-- waits_for(waiter, blocker): true once backend waiter is blocked by a lock
-- that backend blocker holds (polled, as above)
CREATE FUNCTION ft_test.waits_for(waiter int, blocker int, seconds float8 DEFAULT 10) RETURNS boolean
LANGUAGE sql AS $$
	SELECT ft_test.poll(format('%s = ANY (pg_blocking_pids(%s))', blocker, waiter), seconds)
$$;

-- ends(holder, waiter, how): end the open transaction of the dblink
-- connection holder with how (COMMIT or ROLLBACK), then true once the
-- query that connection waiter had sent has returned
CREATE FUNCTION ft_test.ends(holder text, waiter text, how text DEFAULT 'COMMIT',
							 seconds float8 DEFAULT 10) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM dblink_exec(holder, how);
	RETURN ft_test.poll(format('dblink_is_busy(%L) = 0', waiter), seconds);
END
$$;

-- conninfo(app): a dblink connection string to this server and database,
-- as the superuser, named app in pg_stat_activity
CREATE FUNCTION ft_test.conninfo(app text) RETURNS text
LANGUAGE sql STABLE AS $$
	SELECT format('host=127.0.0.1 port=%s dbname=%s user=postgres application_name=%s',
				  current_setting('port'), current_database(), app)
$$;

-- run_id(prefix): a suffix unique to this run, for the keys of rows that
-- other sessions commit (and the test deletes at the end)
CREATE FUNCTION ft_test.run_id(prefix text) RETURNS text
LANGUAGE sql VOLATILE AS $$
	SELECT format('%s-%s-%s', prefix, pg_backend_pid(),
				  (extract(epoch FROM clock_timestamp()) * 1000)::bigint)
$$;

-- backend_pid(conn): the backend pid of the dblink connection conn
CREATE FUNCTION ft_test.backend_pid(conn text) RETURNS int
LANGUAGE sql VOLATILE AS $$
	SELECT pid FROM dblink(conn, 'SELECT pg_backend_pid()') AS t(pid int)
$$;

-- row_counts(): the row count of every table of schema ft_orders, and
-- seq_positions(): the position of every sequence, each as one comparable
-- text (for "a rejected call writes nothing": compare before and after)
CREATE FUNCTION ft_test.schema_state(kind "char") RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	rel		regclass;
	val		text;
	result	text[] := '{}';
BEGIN
	FOR rel IN SELECT c.oid FROM pg_class c
				WHERE c.relnamespace = 'ft_orders'::regnamespace AND c.relkind = kind
				ORDER BY c.relname
	LOOP
		EXECUTE format(CASE kind WHEN 'S' THEN 'SELECT last_value || ''/'' || is_called FROM %s'
								 ELSE 'SELECT count(*)::text FROM %s' END, rel) INTO val;
		result := result || format('%s=%s', rel, val);
	END LOOP;
	RETURN array_to_string(result, ' ');
END
$$;
CREATE FUNCTION ft_test.row_counts() RETURNS text LANGUAGE sql AS $$ SELECT ft_test.schema_state('r') $$;
CREATE FUNCTION ft_test.seq_positions() RETURNS text LANGUAGE sql AS $$ SELECT ft_test.schema_state('S') $$;
