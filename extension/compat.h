/*-------------------------------------------------------------------------
 *
 * compat.h
 *	  What differs between the PostgreSQL majors ft_orders supports (15 and
 *	  17; 16 compiles the same way), in one place.  The rest of the code
 *	  uses these names and holds no PG_VERSION_NUM test of its own.
 *
 * - JSON semantic actions (common/jsonapi.h) return JsonParseErrorType
 *	 from PostgreSQL 16 on (void before): callbacks are declared as
 *	 returning FtJsonResult and end with "return FT_JSON_OK;", which is
 *	 "return ;" where they are void.
 * - makeJsonLexContextCstringLen takes a lexer to initialise (NULL:
 *	 allocate one) as its first argument from PostgreSQL 17 on.
 * - CreateWaitEventSet takes the owning ResourceOwner instead of a memory
 *	 context from PostgreSQL 17 on, where the set always lives in
 *	 TopMemoryContext.  ft_orders' sets are process-lifetime ones, freed by
 *	 FreeWaitEventSet: owner NULL there, TopMemoryContext before.
 * - pgstat_fetch_stat_local_beentry is pgstat_get_local_beentry_by_index
 *	 from PostgreSQL 16 on (ft_local_beentry).
 *
 *-------------------------------------------------------------------------
 */
#ifndef FT_COMPAT_H
#define FT_COMPAT_H

#include "common/jsonapi.h"
#include "storage/latch.h"
#include "utils/memutils.h"

#if PG_VERSION_NUM < 150000
#error "ft_orders needs PostgreSQL 15 or later"
#endif

#if PG_VERSION_NUM >= 160000
typedef JsonParseErrorType FtJsonResult;
#define FT_JSON_OK JSON_SUCCESS
#else
typedef void FtJsonResult;
#define FT_JSON_OK
#endif

/*
 * A GUC check hook's "extra": freed by the GUC machinery with free() up to
 * 15, with guc_free() (pfree in GUC's own memory context) from 16 on.
 */
#if PG_VERSION_NUM >= 160000
#include "utils/guc.h"
#define ft_guc_malloc(size)		guc_malloc(LOG, (size))
#else
#define ft_guc_malloc(size)		malloc(size)
#endif

/* may the current user drop database dbid?  (owner check, 16 unified them) */
#if PG_VERSION_NUM >= 160000
#include "catalog/pg_database.h"
#include "utils/acl.h"
#define ft_database_ownercheck(dbid, roleid) \
	object_ownercheck(DatabaseRelationId, (dbid), (roleid))
#else
#include "utils/acl.h"
#define ft_database_ownercheck(dbid, roleid) \
	pg_database_ownercheck((dbid), (roleid))
#endif

#if PG_VERSION_NUM >= 170000
#define ft_make_json_lexer(json, len, encoding, need_escapes) \
	makeJsonLexContextCstringLen(NULL, (json), (len), (encoding), (need_escapes))
#define ft_create_wait_event_set(nevents) \
	CreateWaitEventSet(NULL, (nevents))
#else
#define ft_make_json_lexer(json, len, encoding, need_escapes) \
	makeJsonLexContextCstringLen((json), (len), (encoding), (need_escapes))
#define ft_create_wait_event_set(nevents) \
	CreateWaitEventSet(TopMemoryContext, (nevents))
#endif

/*
 * The backends' status as this transaction reads it, by index 1 ..
 * pgstat_fetch_stat_numbackends(): renamed in PostgreSQL 16.
 */
#include "utils/backend_status.h"
#if PG_VERSION_NUM >= 160000
#define ft_local_beentry(i)		pgstat_get_local_beentry_by_index(i)
#else
#define ft_local_beentry(i)		pgstat_fetch_stat_local_beentry(i)
#endif

#endif							/* FT_COMPAT_H */
