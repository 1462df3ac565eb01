/*-------------------------------------------------------------------------
 *
 * schema_version.c
 *	  Which version of the ft_orders schema is installed: one syscache
 *	  probe per version, newest first, for an object that version added.
 *
 * Cheap enough for every call (a few syscache lookups), so that a backend
 * or a payment worker that outlives ALTER EXTENSION ft_orders UPDATE
 * switches at once.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_proc.h"
#include "commands/extension.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "schema_version.h"

/*
 * What marks a version: a table (relname), a column of a table (relname
 * and attname) or a function without arguments (proname)
 */
typedef struct FtSchemaProbe
{
	const char *relname;
	const char *proname;
	const char *attname;
} FtSchemaProbe;

/* indexed by version; 1.0 is what is left when no later one is found */
static const FtSchemaProbe ft_schema_probes[] = {
	[FT_SCHEMA_1_0] = {NULL, NULL},
	[FT_SCHEMA_1_1] = {NULL, "metrics"},
	[FT_SCHEMA_1_2] = {"idempotency_key_generations", NULL},
	[FT_SCHEMA_1_3] = {"refunds", NULL},
	[FT_SCHEMA_1_4] = {NULL, "_key_space"},
	[FT_SCHEMA_1_5] = {"orders", NULL, "match_by_order_id"},
};

StaticAssertDecl(lengthof(ft_schema_probes) == FT_SCHEMA_NEWEST + 1,
				 "one probe per schema version");

/* true when CREATE EXTENSION ft_orders was run in this database */
bool
ft_schema_installed(void)
{
	return OidIsValid(get_extension_oid("ft_orders", true));
}

/*
 * The installed schema's version: the newest whose object exists in
 * schema ft_orders (FT_SCHEMA_1_0 when there is no such schema).
 */
FtSchemaVersion
ft_schema_version(void)
{
	Oid			nsp = get_namespace_oid("ft_orders", true);

	if (!OidIsValid(nsp))
		return FT_SCHEMA_1_0;
	for (int v = FT_SCHEMA_NEWEST; v > FT_SCHEMA_1_0; v--)
	{
		const FtSchemaProbe *probe = &ft_schema_probes[v];

		if (probe->relname != NULL && probe->attname != NULL)
		{
			Oid			relid = get_relname_relid(probe->relname, nsp);

			if (OidIsValid(relid) &&
				get_attnum(relid, probe->attname) != InvalidAttrNumber)
				return (FtSchemaVersion) v;
			continue;
		}
		if (probe->relname != NULL &&
			OidIsValid(get_relname_relid(probe->relname, nsp)))
			return (FtSchemaVersion) v;
		if (probe->proname != NULL &&
			SearchSysCacheExists3(PROCNAMEARGSNSP,
								  CStringGetDatum(probe->proname),
								  PointerGetDatum(buildoidvector(NULL, 0)),
								  ObjectIdGetDatum(nsp)))
			return (FtSchemaVersion) v;
	}
	return FT_SCHEMA_1_0;
}

/* how the installed schema makes payment keys (place_order.c's banner) */
FtKeyRule
ft_schema_key_rule(void)
{
	FtSchemaVersion version = ft_schema_version();

	if (version >= FT_SCHEMA_1_4)
		return FT_KEYS_V2;
	if (version >= FT_SCHEMA_1_2)
		return FT_KEYS_V1;
	return FT_KEYS_RANDOM;
}
