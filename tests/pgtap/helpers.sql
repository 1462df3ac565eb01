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
