/*-------------------------------------------------------------------------
 *
 * maintenance.c
 *	  Housekeeping callable from SQL and run periodically by the launcher:
 *	  purging expired idempotency keys and old history rows.  Also the
 *	  install-time check that the extension is created in a database the
 *	  workers serve.
 *
 * From schema 1.2 on, purging a key also counts its purge generation up
 * (ft_orders.idempotency_key_generations, one row per key ever purged, in
 * the same statement): place_order derives the payment_key of the key's
 * next order from it, so that order is charged as a new one.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"

#include "guc.h"
#include "schema_version.h"

PG_FUNCTION_INFO_V1(ft_orders_check_database);
PG_FUNCTION_INFO_V1(ft_orders_purge_expired_keys);
PG_FUNCTION_INFO_V1(ft_orders_purge_history);

/*
 * ft_orders._check_database(), run by CREATE EXTENSION: the extension is
 * only useful in a database that payment workers serve.
 */
Datum
ft_orders_check_database(PG_FUNCTION_ARGS)
{
	char	   *dbname = get_database_name(MyDatabaseId);

	if (ft_database_index(dbname) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("ft_orders cannot be created in database \"%s\"",
						dbname ? dbname : "?"),
				 errdetail("The payment workers serve the databases listed in ft_orders.database (%s); orders placed in \"%s\" would never be charged.",
						   ft_database_list_text(), dbname ? dbname : "?"),
				 errhint("Add \"%s\" to ft_orders.database in postgresql.conf and restart the server.",
						 dbname ? dbname : "?")));
	PG_RETURN_VOID();
}

/*
 * Run one DELETE whose only parameter is an age in seconds; return the
 * number of rows it removed.
 */
static int64
ft_delete_older_than(const char *sql, int age_s)
{
	Oid			argtypes[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(age_s)};
	int64		n;
	int			rc;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	rc = SPI_execute_with_args(sql, 1, argtypes, values, NULL, false, 0);
	if (rc != SPI_OK_DELETE)
		elog(ERROR, "purge failed: %s", SPI_result_code_string(rc));
	n = (int64) SPI_processed;
	SPI_finish();
	return n;
}

Datum
ft_orders_purge_expired_keys(PG_FUNCTION_ARGS)
{
	Oid			argtypes[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(ft_idempotency_ttl_s)};
	int64		n;
	int			rc;

	/* a 1.0 or 1.1 schema (not updated yet) keeps no generations */
	if (ft_schema_key_rule() == FT_KEYS_RANDOM)
		PG_RETURN_INT64(ft_delete_older_than(
											 "DELETE FROM ft_orders.idempotency_keys"
											 " WHERE created_at OPERATOR(pg_catalog.<)"
											 "       (pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.make_interval(secs => $1))",
											 ft_idempotency_ttl_s));

	/*
	 * Each deleted key is unique, so the upsert touches each generation
	 * row once; a concurrent purge skips the rows this one deleted.
	 */
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	rc = SPI_execute_with_args("WITH d AS ("
							   "  DELETE FROM ft_orders.idempotency_keys"
							   "   WHERE created_at OPERATOR(pg_catalog.<)"
							   "         (pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.make_interval(secs => $1))"
							   "  RETURNING idempotency_key)"
							   "INSERT INTO ft_orders.idempotency_key_generations AS g (idempotency_key, generation)"
							   "SELECT d.idempotency_key, 1 FROM d"
							   "  ON CONFLICT (idempotency_key) DO UPDATE"
							   "  SET generation = g.generation OPERATOR(pg_catalog.+) 1,"
							   "      purged_at = pg_catalog.now()",
							   1, argtypes, values, NULL, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "purge failed: %s", SPI_result_code_string(rc));
	n = (int64) SPI_processed;
	SPI_finish();
	PG_RETURN_INT64(n);
}

Datum
ft_orders_purge_history(PG_FUNCTION_ARGS)
{
	int64		n;

	n = ft_delete_older_than(
							 "DELETE FROM ft_orders.payment_attempts"
							 " WHERE started_at OPERATOR(pg_catalog.<)"
							 "       (pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.make_interval(secs => $1))",
							 ft_history_retention_s);
	n += ft_delete_older_than(
							  "DELETE FROM ft_orders.order_events"
							  " WHERE created_at OPERATOR(pg_catalog.<)"
							  "       (pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.make_interval(secs => $1))",
							  ft_history_retention_s);
	/* webhook events (1.3): their ids dedupe redeliveries until then */
	if (ft_schema_version() >= FT_SCHEMA_1_3)
		n += ft_delete_older_than(
								  "DELETE FROM ft_orders.gateway_events"
								  " WHERE received_at OPERATOR(pg_catalog.<)"
								  "       (pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.make_interval(secs => $1))",
								  ft_history_retention_s);
	PG_RETURN_INT64(n);
}
