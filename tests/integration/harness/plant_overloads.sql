-- plant_overloads.sql: overloads that would capture a call of ft_orders'
-- own functions or operators made with inexact argument types (used by
-- planted_overloads.sh).  Each planted function records its call in
-- public.planted_calls and returns NULL (or nothing).
--
-- public.ft_plant(schema) creates, in that schema, for every function of
-- the extension and every argument position, the variants an inexact call
-- would prefer: text there (an untyped literal or NULL prefers it), integer
-- for bigint (an integer literal), integer[] for bigint[], and one variant
-- with every argument text.  Returns how many it created.

CREATE TABLE IF NOT EXISTS public.planted_calls (fn text, at timestamptz DEFAULT clock_timestamp());
GRANT INSERT, SELECT ON public.planted_calls TO PUBLIC;

CREATE OR REPLACE FUNCTION public.ft_plant(target text) RETURNS integer
LANGUAGE plpgsql AS $fn$
DECLARE
	p		record;
	v		text[];
	variants text[][] := '{}';
	alt		text;
	n		integer := 0;
	sig		text;
	ret		text;
BEGIN
	FOR p IN SELECT f.oid, f.proname, f.proargtypes::regtype[]::text[] AS args, f.proretset,
					f.prorettype::regtype::text AS rettype,
					f.proallargtypes IS NOT NULL AS has_out,
					pg_get_function_result(f.oid) AS result
			   FROM pg_proc f
			   JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = f.oid AND d.deptype = 'e'
			   JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'ft_orders'
			  WHERE f.pronargs > 0
	LOOP
		ret := CASE WHEN p.proretset THEN 'RETURN;'
					WHEN p.rettype = 'void' THEN 'RETURN;'
					ELSE 'RETURN NULL;' END;
		FOR i IN 1 .. array_length(p.args, 1) + 1 LOOP
			FOREACH alt IN ARRAY ARRAY['text', 'integer', 'integer[]'] LOOP
				v := p.args;
				IF i > array_length(p.args, 1) THEN
					CONTINUE WHEN alt <> 'text';
					v := array_fill('text'::text, ARRAY[array_length(p.args, 1)]);
				ELSIF alt = 'text' THEN
					CONTINUE WHEN v[i] = 'text';
					v[i] := 'text';
				ELSIF alt = 'integer' THEN
					CONTINUE WHEN v[i] <> 'bigint';
					v[i] := 'integer';
				ELSE
					CONTINUE WHEN v[i] <> 'bigint[]';
					v[i] := 'integer[]';
				END IF;
				sig := format('%I.%I(%s)', target, p.proname, array_to_string(v, ', '));
				CONTINUE WHEN to_regprocedure(sig) IS NOT NULL;
				EXECUTE format($f$CREATE FUNCTION %s RETURNS %s LANGUAGE plpgsql AS $b$
BEGIN
	INSERT INTO public.planted_calls (fn) VALUES (%L);
	%s
END $b$$f$,
							   sig,
							   CASE WHEN p.proretset THEN p.result
									WHEN p.has_out THEN 'record'
									ELSE p.rettype END,
							   sig,
							   CASE WHEN p.has_out AND NOT p.proretset THEN 'RETURN NULL;' ELSE ret END);
				n := n + 1;
			END LOOP;
		END LOOP;
	END LOOP;
	RETURN n;
END
$fn$;

-- built-ins an unqualified call would resolve to a better-matching
-- overload in a schema of the search_path (pg_catalog has them only
-- polymorphic, variadic or for other types), and operators on the
-- extension's types
CREATE OR REPLACE FUNCTION public.ft_plant_builtins(target text) RETURNS integer
LANGUAGE plpgsql AS $fn$
DECLARE
	s		text;
	n		integer := 0;
BEGIN
	FOREACH s IN ARRAY ARRAY[
		'json_build_object(text, bigint, text, ft_orders.order_status, text, integer) RETURNS json',
		'format(text, bigint) RETURNS text',
		'format(text, text, bigint) RETURNS text',
		'unnest(bigint[]) RETURNS SETOF bigint',
		'convert_to(text, text) RETURNS bytea',
		'array_fill(ft_orders.order_status, integer[]) RETURNS ft_orders.order_status[]',
		'pg_notify(text, json) RETURNS void']
	LOOP
		BEGIN
			EXECUTE format($f$CREATE FUNCTION %I.%s LANGUAGE plpgsql AS $b$
BEGIN
	INSERT INTO public.planted_calls (fn) VALUES (%L);
	RETURN%s;
END $b$$f$, target, s, target || '.' || s,
						   CASE WHEN s LIKE '%SETOF%' OR s LIKE '%void' THEN '' ELSE ' NULL' END);
			n := n + 1;
		EXCEPTION WHEN others THEN
			NULL;		-- exists there already
		END;
	END LOOP;
	FOREACH s IN ARRAY ARRAY['eq:=', 'ne:<>'] LOOP
		EXECUTE format($f$CREATE FUNCTION %I.ft_planted_status_%s(ft_orders.order_status, ft_orders.order_status)
RETURNS boolean LANGUAGE plpgsql AS $b$
BEGIN
	INSERT INTO public.planted_calls (fn) VALUES (%L);
	RETURN NULL;
END $b$$f$, target, split_part(s, ':', 1),
					   format('%s.%s(order_status, order_status)', target, split_part(s, ':', 2)));
		IF target <> 'pg_temp' THEN
			EXECUTE format('CREATE OPERATOR %I.%s (LEFTARG = ft_orders.order_status, RIGHTARG = ft_orders.order_status, FUNCTION = %I.ft_planted_status_%s)',
						   target, split_part(s, ':', 2), target, split_part(s, ':', 1));
			n := n + 1;
		END IF;
	END LOOP;
	RETURN n;
END
$fn$;
