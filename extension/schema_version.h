/*-------------------------------------------------------------------------
 *
 * schema_version.h
 *	  Which version of the ft_orders schema is installed in this database.
 *	  The library may run against an older schema until ALTER EXTENSION
 *	  ft_orders UPDATE, in a backend as in a payment worker.
 *
 *-------------------------------------------------------------------------
 */
#ifndef FT_SCHEMA_VERSION_H
#define FT_SCHEMA_VERSION_H

/*
 * The schema versions, oldest first: compare them (version >=
 * FT_SCHEMA_1_3).  A new version is one more line here and one more
 * probe in schema_version.c.
 */
typedef enum FtSchemaVersion
{
	FT_SCHEMA_1_0,
	FT_SCHEMA_1_1,				/* metrics() */
	FT_SCHEMA_1_2,				/* derived payment keys, purge generations */
	FT_SCHEMA_1_3,				/* payment lifecycle: refunds, look-ups,
								 * cancel, webhooks */
	FT_SCHEMA_1_4,				/* payment keys within the key space */
	FT_SCHEMA_1_5				/* matching by identity
								 * (orders.match_by_order_id) */
} FtSchemaVersion;

#define FT_SCHEMA_NEWEST	FT_SCHEMA_1_5

extern bool ft_schema_installed(void);
extern FtSchemaVersion ft_schema_version(void);

/* how the installed schema makes payment keys (place_order.c's banner) */
typedef enum FtKeyRule
{
	FT_KEYS_RANDOM,				/* 1.0, 1.1 */
	FT_KEYS_V1,					/* 1.2, 1.3: derived, no key space */
	FT_KEYS_V2					/* 1.4 on: derived within the key space */
} FtKeyRule;

extern FtKeyRule ft_schema_key_rule(void);

#endif							/* FT_SCHEMA_VERSION_H */
