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
