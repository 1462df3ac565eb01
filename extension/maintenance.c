/*-------------------------------------------------------------------------
 *
 * maintenance.c
 *	  Housekeeping callable from SQL and run periodically by the launcher:
 *	  purging expired idempotency keys and old history rows (the payment
 *	  audit trail after audit_retention, webhook events after
 *	  history_retention).  Also the install-time checks: the extension is
 *	  created in a database the workers serve, into a schema that only
 *	  superusers control.
 *
 * From schema 1.2 on, purging a key also counts its purge generation up
 * (ft_orders.idempotency_key_generations, one row per purged key, in the
 * same statement): place_order derives the payment_key of the key's next
 * order from it, so that order is charged as a new one.  No timer drops a
 * generation row: without it the key's next order would derive the
 * payment_key of an earlier order of the key, refused while that order is
 * kept and replayed by the gateway while it remembers the key.  The rows
 * are bounded by the orders kept; the archiving recipe of
 * docs/operations.md drops those of keys whose last order it archives.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/syscache.h"

#include "guc.h"
#include "schema_version.h"

PG_FUNCTION_INFO_V1(ft_orders_check_database);
PG_FUNCTION_INFO_V1(ft_orders_purge_expired_keys);
PG_FUNCTION_INFO_V1(ft_orders_purge_history);

/*
 * Objects of the schema that are not members of the extension: the install
 * script runs in that schema as a superuser, so an object planted there
 * beforehand (a function overload, an operator, a table, default
 * privileges) could be picked up by the extension's own statements.  The
 * first few are described for the message (palloc'd), NULL when there are
 * none.
 */
#define FT_FOREIGN_OBJECTS_SQL \
"SELECT pg_catalog.count(*)::pg_catalog.int8," \
"       pg_catalog.string_agg(pg_catalog.pg_describe_object(f.classid, f.objid, 0), ', ')" \
"         FILTER (WHERE f.n OPERATOR(pg_catalog.<=) 5)" \
"  FROM (SELECT o.classid, o.objid," \
"               pg_catalog.row_number() OVER (ORDER BY o.classid, o.objid) AS n" \
"          FROM (SELECT 'pg_catalog.pg_class'::pg_catalog.regclass::pg_catalog.oid, c.oid FROM pg_catalog.pg_class c WHERE c.relnamespace OPERATOR(pg_catalog.=) $1" \
"                UNION ALL SELECT 'pg_catalog.pg_proc'::pg_catalog.regclass::pg_catalog.oid, p.oid FROM pg_catalog.pg_proc p WHERE p.pronamespace OPERATOR(pg_catalog.=) $1" \
"                UNION ALL SELECT 'pg_catalog.pg_type'::pg_catalog.regclass::pg_catalog.oid, t.oid FROM pg_catalog.pg_type t WHERE t.typnamespace OPERATOR(pg_catalog.=) $1" \
"                UNION ALL SELECT 'pg_catalog.pg_operator'::pg_catalog.regclass::pg_catalog.oid, o.oid FROM pg_catalog.pg_operator o WHERE o.oprnamespace OPERATOR(pg_catalog.=) $1" \
"                UNION ALL SELECT 'pg_catalog.pg_opclass'::pg_catalog.regclass::pg_catalog.oid, o.oid FROM pg_catalog.pg_opclass o WHERE o.opcnamespace OPERATOR(pg_catalog.=) $1" \
"                UNION ALL SELECT 'pg_catalog.pg_opfamily'::pg_catalog.regclass::pg_catalog.oid, o.oid FROM pg_catalog.pg_opfamily o WHERE o.opfnamespace OPERATOR(pg_catalog.=) $1" \
"                UNION ALL SELECT 'pg_catalog.pg_collation'::pg_catalog.regclass::pg_catalog.oid, o.oid FROM pg_catalog.pg_collation o WHERE o.collnamespace OPERATOR(pg_catalog.=) $1" \
"                UNION ALL SELECT 'pg_catalog.pg_conversion'::pg_catalog.regclass::pg_catalog.oid, o.oid FROM pg_catalog.pg_conversion o WHERE o.connamespace OPERATOR(pg_catalog.=) $1" \
"                UNION ALL SELECT 'pg_catalog.pg_constraint'::pg_catalog.regclass::pg_catalog.oid, o.oid FROM pg_catalog.pg_constraint o WHERE o.connamespace OPERATOR(pg_catalog.=) $1" \
"                UNION ALL SELECT 'pg_catalog.pg_statistic_ext'::pg_catalog.regclass::pg_catalog.oid, o.oid FROM pg_catalog.pg_statistic_ext o WHERE o.stxnamespace OPERATOR(pg_catalog.=) $1" \
"                UNION ALL SELECT 'pg_catalog.pg_ts_config'::pg_catalog.regclass::pg_catalog.oid, o.oid FROM pg_catalog.pg_ts_config o WHERE o.cfgnamespace OPERATOR(pg_catalog.=) $1" \
"                UNION ALL SELECT 'pg_catalog.pg_ts_dict'::pg_catalog.regclass::pg_catalog.oid, o.oid FROM pg_catalog.pg_ts_dict o WHERE o.dictnamespace OPERATOR(pg_catalog.=) $1" \
"                UNION ALL SELECT 'pg_catalog.pg_ts_parser'::pg_catalog.regclass::pg_catalog.oid, o.oid FROM pg_catalog.pg_ts_parser o WHERE o.prsnamespace OPERATOR(pg_catalog.=) $1" \
"                UNION ALL SELECT 'pg_catalog.pg_ts_template'::pg_catalog.regclass::pg_catalog.oid, o.oid FROM pg_catalog.pg_ts_template o WHERE o.tmplnamespace OPERATOR(pg_catalog.=) $1" \
"                UNION ALL SELECT 'pg_catalog.pg_extension'::pg_catalog.regclass::pg_catalog.oid, o.oid FROM pg_catalog.pg_extension o WHERE o.extnamespace OPERATOR(pg_catalog.=) $1 AND o.oid OPERATOR(pg_catalog.<>) $2" \
"                UNION ALL SELECT 'pg_catalog.pg_default_acl'::pg_catalog.regclass::pg_catalog.oid, o.oid FROM pg_catalog.pg_default_acl o WHERE o.defaclnamespace OPERATOR(pg_catalog.=) $1" \
"               ) AS o(classid, objid)" \
"         WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d" \
"                            WHERE d.classid OPERATOR(pg_catalog.=) o.classid" \
"                              AND d.objid OPERATOR(pg_catalog.=) o.objid" \
"                              AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_extension'::pg_catalog.regclass::pg_catalog.oid" \
"                              AND d.refobjid OPERATOR(pg_catalog.=) $2" \
"                              AND d.deptype OPERATOR(pg_catalog.=) 'e'::pg_catalog.\"char\")) f"

static char *
ft_foreign_objects(Oid nspid, Oid extid, int64 *count)
{
	Oid			argtypes[2] = {OIDOID, OIDOID};
	Datum		values[2] = {ObjectIdGetDatum(nspid), ObjectIdGetDatum(extid)};
	char	   *result = NULL;
	bool		isnull;
	int			rc;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	rc = SPI_execute_with_args(FT_FOREIGN_OBJECTS_SQL, 2, argtypes, values,
							   NULL, true, 1);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "listing the objects of schema \"ft_orders\" failed: %s",
			 SPI_result_code_string(rc));
	*count = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										 SPI_tuptable->tupdesc, 1, &isnull));
	if (*count > 0)
	{
		char	   *described = SPI_getvalue(SPI_tuptable->vals[0],
											 SPI_tuptable->tupdesc, 2);

		result = SPI_palloc(strlen(described ? described : "") + 1);
		strcpy(result, described ? described : "");
	}
	SPI_finish();
	return result;
}

/*
 * PostgreSQL's "Security Considerations for Extensions": an install script
 * must not run in a schema that an untrusted role controls.  The extension
 * installs into schema ft_orders; when that schema existed before CREATE
 * EXTENSION (the control file's schema is created only when missing), its
 * owner and anyone it granted CREATE could have planted objects there, or
 * add them while the script runs, and the extension's functions would run
 * them with the privileges of the extension's owner.  So the schema must
 * be owned by a superuser, grant CREATE to no other role, and hold nothing
 * but the extension's own members.  A schema created by pg_restore as a
 * superuser, empty until CREATE EXTENSION, passes.
 */
static void
ft_check_install_schema(void)
{
	Oid			nspid = get_namespace_oid("ft_orders", true);
	HeapTuple	tup;
	Oid			owner;
	Datum		acldatum;
	bool		isnull;
	int64		nforeign;
	char	   *foreign;

	if (!OidIsValid(nspid))
		return;
	tup = SearchSysCache1(NAMESPACEOID, ObjectIdGetDatum(nspid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for schema %u", nspid);
	owner = ((Form_pg_namespace) GETSTRUCT(tup))->nspowner;
	if (!superuser_arg(owner))
	{
		ReleaseSysCache(tup);
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("schema \"ft_orders\" is owned by role \"%s\", which is not a superuser",
						GetUserNameFromId(owner, false)),
				 errdetail("The extension's functions run with the privileges of its owner; the owner of their schema could replace what they call."),
				 errhint("Drop schema \"ft_orders\" (CREATE EXTENSION creates it), or make a superuser its owner and check its contents, then create the extension.")));
	}
	acldatum = SysCacheGetAttr(NAMESPACEOID, tup, Anum_pg_namespace_nspacl, &isnull);
	if (!isnull)
	{
		Acl		   *acl = DatumGetAclPCopy(acldatum);
		AclItem    *items = ACL_DAT(acl);

		for (int i = 0; i < ACL_NUM(acl); i++)
		{
			if ((ACLITEM_GET_PRIVS(items[i]) & ACL_CREATE) == 0)
				continue;
			if (items[i].ai_grantee != ACL_ID_PUBLIC &&
				superuser_arg(items[i].ai_grantee))
				continue;
			ReleaseSysCache(tup);
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("schema \"ft_orders\" grants CREATE to %s, which is not a superuser",
							items[i].ai_grantee == ACL_ID_PUBLIC ? "PUBLIC" :
							quote_identifier(GetUserNameFromId(items[i].ai_grantee, false))),
					 errdetail("A role that may create objects in the extension's schema could replace what its functions call."),
					 errhint("REVOKE CREATE ON SCHEMA ft_orders from it, or drop the schema, then create the extension.")));
		}
	}
	ReleaseSysCache(tup);

	foreign = ft_foreign_objects(nspid, CurrentExtensionObject, &nforeign);
	if (nforeign > 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("schema \"ft_orders\" already holds " INT64_FORMAT " object(s) that are not part of the extension",
						nforeign),
				 errdetail("Among them: %s.", foreign),
				 errhint("Drop them, or drop schema \"ft_orders\" (CREATE EXTENSION creates it), then create the extension.")));
}

/*
 * ft_orders._check_database(), run by CREATE EXTENSION (ft_orders--1.0.sql):
 * the extension is only useful in a database that payment workers serve,
 * and only safe in a schema that only superusers control.
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
	if (creating_extension)
		ft_check_install_schema();
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

	/* the payment audit trail: kept for disputes */
	n = ft_delete_older_than(
							 "DELETE FROM ft_orders.payment_attempts"
							 " WHERE started_at OPERATOR(pg_catalog.<)"
							 "       (pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.make_interval(secs => $1))",
							 ft_audit_retention_s);
	n += ft_delete_older_than(
							  "DELETE FROM ft_orders.order_events"
							  " WHERE created_at OPERATOR(pg_catalog.<)"
							  "       (pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.make_interval(secs => $1))",
							  ft_audit_retention_s);
	/* webhook events (1.3): their ids dedupe redeliveries until then */
	if (ft_schema_version() >= FT_SCHEMA_1_3)
		n += ft_delete_older_than(
								  "DELETE FROM ft_orders.gateway_events"
								  " WHERE received_at OPERATOR(pg_catalog.<)"
								  "       (pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.make_interval(secs => $1))",
								  ft_history_retention_s);
	PG_RETURN_INT64(n);
}
