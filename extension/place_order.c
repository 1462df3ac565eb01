/*-------------------------------------------------------------------------
 *
 * place_order.c
 *	  ft_orders.place_order(): idempotent order intake.
 *
 * In the caller's transaction, one statement inserts the idempotency key,
 * the order and its outbox event.  The key's primary key decides races: a
 * concurrent call with the same key waits on ON CONFLICT until the first
 * transaction ends, then either finds the committed key (a replay) or, if
 * the first one aborted, inserts its own.  A replay compares the SHA-256
 * fingerprint of all other arguments and raises FT409 when they differ.
 *
 * Every argument is checked before anything is written, so bad input
 * leaves no trace.  Both statements are prepared once per backend and kept.
 *
 * The order's payment_key (the Idempotency-Key sent to the gateway) is
 * derived, from schema version 1.4 on, by ft_orders._payment_key():
 *
 *	 uuid = SHA-256("ft_orders payment_key v2", key_space, idempotency_key,
 *					fingerprint, generation)[0..15], version 8, variant 10
 *
 * each input length-prefixed (ft_hash_field), generation an 8-byte
 * big-endian integer: how many times purge_expired_keys() has purged this
 * key (ft_orders.idempotency_key_generations, 0 when never).  key_space
 * (ft_orders._key_space()) is the server's system identifier, 8 bytes
 * big-endian, followed by the database's name: the same on every member
 * of one streaming-replication cluster (standbys are copies of the
 * primary), different for every database of ft_orders.database and for
 * every other server, all of which may share one gateway account.  So
 * every incarnation of one order (e.g. one committed on an isolated old
 * primary and lost with its timeline, then retried on the new primary)
 * carries the same Idempotency-Key; the same key and request placed in
 * another database, on another server, or again after the key expired is
 * a new order under a new payment_key.  If a derived key is taken all the
 * same (a purge committed while this statement waited on the key),
 * nothing is written and the caller gets 40001 to retry.
 *
 * Schemas 1.2 and 1.3 derived "v1", the same without key_space (so two
 * databases could derive one key); under them, and under 1.0 and 1.1
 * (random keys), the new library keeps their rule until ALTER EXTENSION
 * ft_orders UPDATE, which every member of the cluster replays at the same
 * point of the WAL.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "common/cryptohash.h"
#include "common/sha2.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/tuplestore.h"
#include "utils/uuid.h"

#include "errcodes.h"
#include "schema_version.h"
#include "spi_plan.h"
#include "wakeup.h"

PG_FUNCTION_INFO_V1(ft_orders_place_order);
PG_FUNCTION_INFO_V1(ft_orders_payment_key);
PG_FUNCTION_INFO_V1(ft_orders_payment_key_v2);
PG_FUNCTION_INFO_V1(ft_orders_key_space);

#define FT_MAX_KEY_LEN			255
#define FT_MAX_CUSTOMER_LEN		255
#define FT_MAX_METHOD_LEN		255
#define FT_MAX_AMOUNT_MINOR		INT64CONST(99999999999)
#define FT_MAX_ITEMS_BYTES		65536

/* the validated, normalised arguments of one call */
typedef struct FtOrderRequest
{
	text	   *idempotency_key;
	text	   *customer_id;
	int64		amount_minor;
	char		currency[4];
	Jsonb	   *items;
	char	   *items_text;		/* canonical jsonb text, for the fingerprint */
	text	   *payment_method; /* NULL if none */
} FtOrderRequest;

/* domain separation: no other SHA-256 of ours starts with these bytes */
#define FT_PAYMENT_KEY_DOMAIN_V1	"ft_orders payment_key v1"
#define FT_PAYMENT_KEY_DOMAIN_V2	"ft_orders payment_key v2"

static SPIPlanPtr ft_insert_plan = NULL;
static SPIPlanPtr ft_lookup_plan = NULL;
/* the rule of ft_insert_plan's payment keys */
static FtKeyRule ft_insert_plan_rule = FT_KEYS_RANDOM;

static void
ft_null_argument(const char *argname)
{
	ereport(ERROR,
			(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
			 errmsg("argument \"%s\" must not be null", argname)));
}

/*
 * Check that a text argument is 1..maxlen characters of printable ASCII
 * (space allowed only when allow_space).
 */
static void
ft_check_ascii_arg(text *value, const char *argname, int maxlen, bool allow_space)
{
	const char *s = VARDATA_ANY(value);
	int			len = VARSIZE_ANY_EXHDR(value);

	if (len < 1 || len > maxlen)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid value for argument \"%s\"", argname),
				 errdetail("The value must be 1 to %d characters long; it has %d.",
						   maxlen, len)));

	for (int i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c > 0x7e || c < 0x20 || (c == ' ' && !allow_space))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid value for argument \"%s\"", argname),
					 errdetail("Only printable ASCII characters%s are allowed; byte 0x%02x at position %d is not.",
							   allow_space ? "" : " other than space", c, i + 1)));
	}
}

/*
 * Refuse control characters in a string of the database encoding: C0 and
 * DEL everywhere, and C1 (U+0080-U+009F) in a UTF-8 database.  Other
 * encodings give the bytes 0x80-0x9F different meanings (WIN1252 has
 * printable characters there), so they are left alone.
 */
static void
ft_check_no_controls(const char *s, int len, const char *argname)
{
	bool		utf8 = (GetDatabaseEncoding() == PG_UTF8);
	int			pos = 1;

	for (int i = 0; i < len; pos++)
	{
		int			clen = pg_mblen(s + i);
		pg_wchar	code;

		if (clen == 1)
			code = (unsigned char) s[i];
		else if (utf8)
			code = utf8_to_unicode((const unsigned char *) s + i);
		else
			code = 0x20;		/* a multibyte character: never a control */

		if (code < 0x20 || code == 0x7f || (utf8 && code >= 0x80 && code <= 0x9f))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid value for argument \"%s\"", argname),
					 errdetail("Control characters are not allowed; character %d (U+%04X) is one.",
							   pos, (unsigned int) code)));
		i += clen;
	}
}

/*
 * Validate and normalise the arguments into req.  Raises 22004 for a NULL
 * and 22023 for a bad value, naming the argument; writes nothing.
 */
static void
ft_read_request(FunctionCallInfo fcinfo, FtOrderRequest *req)
{
	text	   *customer;
	text	   *currency;
	const char *s;
	int			len;

	if (PG_ARGISNULL(0))
		ft_null_argument("idempotency_key");
	if (PG_ARGISNULL(1))
		ft_null_argument("customer_id");
	if (PG_ARGISNULL(2))
		ft_null_argument("amount_minor");
	if (PG_ARGISNULL(3))
		ft_null_argument("currency");
	if (PG_ARGISNULL(4))
		ft_null_argument("items");

	req->idempotency_key = PG_GETARG_TEXT_PP(0);
	ft_check_ascii_arg(req->idempotency_key, "idempotency_key", FT_MAX_KEY_LEN, true);

	/* customer ids may be any text in the database encoding, but no controls */
	customer = PG_GETARG_TEXT_PP(1);
	s = VARDATA_ANY(customer);
	len = VARSIZE_ANY_EXHDR(customer);
	if (len == 0 || pg_mbstrlen_with_len(s, len) > FT_MAX_CUSTOMER_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid value for argument \"customer_id\""),
				 errdetail("The value must be 1 to %d characters long.", FT_MAX_CUSTOMER_LEN)));
	ft_check_no_controls(s, len, "customer_id");
	req->customer_id = customer;

	req->amount_minor = PG_GETARG_INT64(2);
	if (req->amount_minor <= 0 || req->amount_minor > FT_MAX_AMOUNT_MINOR)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid value for argument \"amount_minor\""),
				 errdetail("The amount must be greater than 0 and at most " INT64_FORMAT " minor units; it is " INT64_FORMAT ".",
						   FT_MAX_AMOUNT_MINOR, req->amount_minor)));

	/* ISO 4217 alphabetic code: three letters, stored upper-case */
	currency = PG_GETARG_TEXT_PP(3);
	s = VARDATA_ANY(currency);
	len = VARSIZE_ANY_EXHDR(currency);
	if (len != 3 ||
		!((s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z')) ||
		!((s[1] >= 'A' && s[1] <= 'Z') || (s[1] >= 'a' && s[1] <= 'z')) ||
		!((s[2] >= 'A' && s[2] <= 'Z') || (s[2] >= 'a' && s[2] <= 'z')))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid value for argument \"currency\""),
				 errdetail("The currency must be an ISO 4217 alphabetic code of three letters, such as EUR.")));
	for (int i = 0; i < 3; i++)
		req->currency[i] = pg_ascii_toupper((unsigned char) s[i]);
	req->currency[3] = '\0';

	req->items = PG_GETARG_JSONB_P(4);
	if (!JB_ROOT_IS_ARRAY(req->items) || JB_ROOT_IS_SCALAR(req->items))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid value for argument \"items\""),
				 errdetail("The items must be a JSON array.")));
	req->items_text = JsonbToCString(NULL, &req->items->root, VARSIZE(req->items));
	if (strlen(req->items_text) > FT_MAX_ITEMS_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid value for argument \"items\""),
				 errdetail("The items take %zu bytes as JSON text; at most %d are allowed.",
						   strlen(req->items_text), FT_MAX_ITEMS_BYTES)));

	if (PG_ARGISNULL(5))
		req->payment_method = NULL;
	else
	{
		req->payment_method = PG_GETARG_TEXT_PP(5);
		ft_check_ascii_arg(req->payment_method, "payment_method", FT_MAX_METHOD_LEN, false);
	}
}

/*
 * Feed one field as <uint32 length><bytes>.  data == NULL stands for SQL
 * NULL and is fed as the length PG_UINT32_MAX alone, which no real field
 * can have.
 */
static void
ft_hash_field(pg_cryptohash_ctx *ctx, const char *data, uint32 len)
{
	if (data == NULL)
		len = PG_UINT32_MAX;
	if (pg_cryptohash_update(ctx, (const uint8 *) &len, sizeof(len)) < 0 ||
		(data != NULL && len > 0 &&
		 pg_cryptohash_update(ctx, (const uint8 *) data, len) < 0))
		elog(ERROR, "could not update SHA-256 context: %s",
			 pg_cryptohash_error(ctx));
}

/*
 * SHA-256 over every argument but the key, each field length-prefixed so
 * that no two requests share an encoding.  Items are hashed in jsonb's
 * canonical text form: key order and white space do not matter.
 */
static bytea *
ft_request_fingerprint(const FtOrderRequest *req)
{
	pg_cryptohash_ctx *ctx;
	bytea	   *result = palloc(VARHDRSZ + PG_SHA256_DIGEST_LENGTH);
	char		amount[32];

	snprintf(amount, sizeof(amount), INT64_FORMAT, req->amount_minor);

	ctx = pg_cryptohash_create(PG_SHA256);
	if (pg_cryptohash_init(ctx) < 0)
		elog(ERROR, "could not initialize SHA-256 context: %s",
			 pg_cryptohash_error(ctx));
	ft_hash_field(ctx, VARDATA_ANY(req->customer_id), VARSIZE_ANY_EXHDR(req->customer_id));
	ft_hash_field(ctx, amount, strlen(amount));
	ft_hash_field(ctx, req->currency, 3);
	ft_hash_field(ctx, req->items_text, strlen(req->items_text));
	if (req->payment_method != NULL)
		ft_hash_field(ctx, VARDATA_ANY(req->payment_method),
					  VARSIZE_ANY_EXHDR(req->payment_method));
	else
		ft_hash_field(ctx, NULL, 0);
	if (pg_cryptohash_final(ctx, (uint8 *) VARDATA(result), PG_SHA256_DIGEST_LENGTH) < 0)
		elog(ERROR, "could not finalize SHA-256 context: %s",
			 pg_cryptohash_error(ctx));
	pg_cryptohash_free(ctx);

	SET_VARSIZE(result, VARHDRSZ + PG_SHA256_DIGEST_LENGTH);
	return result;
}

/*
 * The payment_key of an order: a name-based UUID (RFC 9562 version 8,
 * SHA-256) of the key space (NULL: rule v1, without), the idempotency key,
 * the request fingerprint and the key's purge generation.  See the file
 * banner for why.
 */
static void
ft_derive_payment_key(const bytea *key_space,
					  const char *key, uint32 keylen,
					  const char *fingerprint, uint32 fplen,
					  int64 generation, pg_uuid_t *uuid)
{
	pg_cryptohash_ctx *ctx;
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	char		gen[8];
	const char *domain = key_space ? FT_PAYMENT_KEY_DOMAIN_V2 : FT_PAYMENT_KEY_DOMAIN_V1;

	for (int i = 0; i < 8; i++)
		gen[i] = (char) (((uint64) generation >> (56 - 8 * i)) & 0xff);

	ctx = pg_cryptohash_create(PG_SHA256);
	if (pg_cryptohash_init(ctx) < 0)
		elog(ERROR, "could not initialize SHA-256 context: %s",
			 pg_cryptohash_error(ctx));
	ft_hash_field(ctx, domain, strlen(domain));
	if (key_space != NULL)
		ft_hash_field(ctx, VARDATA_ANY(key_space), VARSIZE_ANY_EXHDR(key_space));
	ft_hash_field(ctx, key, keylen);
	ft_hash_field(ctx, fingerprint, fplen);
	ft_hash_field(ctx, gen, sizeof(gen));
	if (pg_cryptohash_final(ctx, digest, sizeof(digest)) < 0)
		elog(ERROR, "could not finalize SHA-256 context: %s",
			 pg_cryptohash_error(ctx));
	pg_cryptohash_free(ctx);

	memcpy(uuid->data, digest, UUID_LEN);
	uuid->data[6] = (uuid->data[6] & 0x0f) | 0x80;	/* version 8 */
	uuid->data[8] = (uuid->data[8] & 0x3f) | 0x80;	/* variant 10 */
}

/* the shared part of both SQL entry points below */
static Datum
ft_payment_key_datum(FunctionCallInfo fcinfo, const bytea *key_space)
{
	text	   *key = PG_GETARG_TEXT_PP(0);
	bytea	   *fingerprint = PG_GETARG_BYTEA_PP(1);
	int64		generation = PG_GETARG_INT64(2);
	pg_uuid_t  *uuid = palloc(sizeof(pg_uuid_t));

	if (generation < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid value for argument \"generation\""),
				 errdetail("The purge generation must be 0 or more; it is " INT64_FORMAT ".",
						   generation)));
	ft_derive_payment_key(key_space, VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key),
						  VARDATA_ANY(fingerprint), VARSIZE_ANY_EXHDR(fingerprint),
						  generation, uuid);
	PG_RETURN_UUID_P(uuid);
}

/*
 * ft_orders._payment_key(idempotency_key text, fingerprint bytea,
 * generation bigint) RETURNS uuid: rule v1 (schemas 1.2 and 1.3), kept
 * for recomputing the keys of orders placed under them.
 */
Datum
ft_orders_payment_key(PG_FUNCTION_ARGS)
{
	return ft_payment_key_datum(fcinfo, NULL);
}

/*
 * ft_orders._payment_key(idempotency_key text, fingerprint bytea,
 * generation bigint, key_space bytea) RETURNS uuid: rule v2 (1.4 on), for
 * place_order's statement and for anyone who wants to recompute a key.
 */
Datum
ft_orders_payment_key_v2(PG_FUNCTION_ARGS)
{
	return ft_payment_key_datum(fcinfo, PG_GETARG_BYTEA_PP(3));
}

/*
 * The key space of this database: the system identifier (8 bytes,
 * big-endian) and the database's name.  Computed once per backend.
 */
static bytea *
ft_key_space(void)
{
	static bytea *key_space = NULL;

	if (key_space == NULL)
	{
		uint64		sysid = GetSystemIdentifier();
		char	   *dbname = get_database_name(MyDatabaseId);
		size_t		namelen;
		bytea	   *ks;

		if (dbname == NULL)
			elog(ERROR, "database %u has no name", MyDatabaseId);
		namelen = strlen(dbname);
		ks = MemoryContextAlloc(TopMemoryContext, VARHDRSZ + 8 + namelen);
		SET_VARSIZE(ks, VARHDRSZ + 8 + namelen);
		for (int i = 0; i < 8; i++)
			((uint8 *) VARDATA(ks))[i] = (uint8) ((sysid >> (56 - 8 * i)) & 0xff);
		memcpy(VARDATA(ks) + 8, dbname, namelen);
		key_space = ks;
	}
	return key_space;
}

/* ft_orders._key_space() RETURNS bytea */
Datum
ft_orders_key_space(PG_FUNCTION_ARGS)
{
	bytea	   *ks = ft_key_space();
	bytea	   *result = palloc(VARSIZE(ks));

	memcpy(result, ks, VARSIZE(ks));
	PG_RETURN_BYTEA_P(result);
}

static void
ft_prepare_plans(void)
{
	FtKeyRule	rule = ft_schema_key_rule();

	if (ft_insert_plan != NULL && ft_insert_plan_rule != rule)
	{
		SPI_freeplan(ft_insert_plan);
		ft_insert_plan = NULL;
	}
	if (ft_insert_plan == NULL)
	{
		Oid			argtypes[8] = {TEXTOID, BYTEAOID, TEXTOID, INT8OID,
		TEXTOID, JSONBOID, TEXTOID, BYTEAOID};
		const char *key_sql;

		/*
		 * The payment key is computed per row of k, i.e. after the key's
		 * insert (and any wait on a concurrent one); its generation comes
		 * from the statement's snapshot.  ON CONFLICT on payment_key turns
		 * a key taken meanwhile into "no order row" (see the caller); a
		 * random key (schemas before 1.2) is never taken.  $8 is the key
		 * space, used by rule v2 only.
		 */
		if (rule == FT_KEYS_RANDOM)
			key_sql = "pg_catalog.gen_random_uuid()";
		else
			key_sql = psprintf("ft_orders._payment_key($1, $2, COALESCE("
							   "  (SELECT g.generation FROM ft_orders.idempotency_key_generations g"
							   "    WHERE g.idempotency_key OPERATOR(pg_catalog.=) $1), 0)%s)",
							   rule == FT_KEYS_V2 ? ", $8" : "");
		ft_insert_plan = ft_prepare_kept(
										 psprintf("WITH k AS ("
												  "  INSERT INTO ft_orders.idempotency_keys (idempotency_key, fingerprint, order_id)"
												  "  VALUES ($1, $2, pg_catalog.nextval('ft_orders.orders_order_id_seq'::pg_catalog.regclass))"
												  "  ON CONFLICT (idempotency_key) DO NOTHING"
												  "  RETURNING order_id),"
												  " o AS ("
												  "  INSERT INTO ft_orders.orders (order_id, idempotency_key, customer_id,"
												  "    amount_minor, currency, items, payment_method, payment_key)"
												  "  SELECT k.order_id, $1, $3, $4, $5, $6, $7, %s"
												  "    FROM k"
												  "  ON CONFLICT (payment_key) DO NOTHING"
												  "  RETURNING order_id, status),"
												  " e AS ("
												  "  INSERT INTO ft_orders.outbox (order_id) SELECT o.order_id FROM o)"
												  "SELECT k.order_id, o.status"
												  "  FROM k LEFT JOIN o ON o.order_id OPERATOR(pg_catalog.=) k.order_id",
												  key_sql),
										 8, argtypes, 0);
		ft_insert_plan_rule = rule;
	}
	if (ft_lookup_plan == NULL)
	{
		Oid			argtypes[1] = {TEXTOID};

		ft_lookup_plan = ft_prepare_kept(
										 "SELECT k.fingerprint, k.order_id, o.status"
										 "  FROM ft_orders.idempotency_keys k"
										 "  JOIN ft_orders.orders o ON o.order_id OPERATOR(pg_catalog.=) k.order_id"
										 " WHERE k.idempotency_key OPERATOR(pg_catalog.=) $1",
										 1, argtypes, 0);
	}
}

Datum
ft_orders_place_order(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	FtOrderRequest req;
	bytea	   *fingerprint;
	Datum		values[8];
	char		nulls[8];
	Datum		result[3];
	bool		result_nulls[3] = {false, false, false};
	bool		done = false;

	ft_read_request(fcinfo, &req);
	fingerprint = ft_request_fingerprint(&req);

	values[0] = PointerGetDatum(req.idempotency_key);
	values[1] = PointerGetDatum(fingerprint);
	values[2] = PointerGetDatum(req.customer_id);
	values[3] = Int64GetDatum(req.amount_minor);
	values[4] = CStringGetTextDatum(req.currency);
	values[5] = JsonbPGetDatum(req.items);
	values[6] = req.payment_method ? PointerGetDatum(req.payment_method) : (Datum) 0;
	values[7] = PointerGetDatum(ft_key_space());
	memset(nulls, ' ', sizeof(nulls));
	if (req.payment_method == NULL)
		nulls[6] = 'n';

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ft_prepare_plans();

	/*
	 * Two rounds at most: a key found neither by the insert nor by the
	 * lookup was deleted in between (purged), so the second insert wins.
	 */
	for (int round = 0; round < 2 && !done; round++)
	{
		bool		isnull;
		int			rc;

		rc = SPI_execute_plan(ft_insert_plan, values, nulls, false, 1);
		if (rc != SPI_OK_SELECT)
			elog(ERROR, "inserting the order failed: %s", SPI_result_code_string(rc));
		if (SPI_processed == 1)
		{
			result[0] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
			result[1] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
			if (isnull)
			{
				/*
				 * The key row went in but the order's derived payment_key
				 * is taken: only a purge of this key that committed after
				 * our snapshot (so the generation we read is stale) leads
				 * here.  The error rolls the key row back; a retry reads
				 * the new generation.
				 */
				ereport(ERROR,
						(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
						 errmsg("could not serialize access due to a concurrent purge of idempotency key \"%s\"",
								text_to_cstring(req.idempotency_key)),
						 errdetail("The payment key derived for the new order belongs to an earlier order of this key."),
						 errhint("Retry the transaction.")));
			}
			result[2] = BoolGetDatum(false);
			ft_wakeup_at_commit();
			done = true;
			break;
		}

		/* the key exists: a replay, or a reuse with other parameters */
		rc = SPI_execute_plan(ft_lookup_plan, values, NULL, false, 1);
		if (rc != SPI_OK_SELECT)
			elog(ERROR, "looking up the idempotency key failed: %s", SPI_result_code_string(rc));
		if (SPI_processed == 1)
		{
			bytea	   *stored;

			stored = DatumGetByteaPP(SPI_getbinval(SPI_tuptable->vals[0],
												   SPI_tuptable->tupdesc, 1, &isnull));
			result[1] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
			if (VARSIZE_ANY_EXHDR(stored) != PG_SHA256_DIGEST_LENGTH ||
				memcmp(VARDATA_ANY(stored), VARDATA(fingerprint), PG_SHA256_DIGEST_LENGTH) != 0)
				ereport(ERROR,
						(errcode(ERRCODE_FT_IDEMPOTENCY_MISMATCH),
						 errmsg("idempotency key reused with different parameters"),
						 errdetail("Key \"%s\" was first used for order " INT64_FORMAT " with other arguments.",
								   text_to_cstring(req.idempotency_key),
								   DatumGetInt64(result[1])),
						 errhint("Use a new idempotency key for a new order.")));
			result[0] = result[1];
			result[1] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull);
			result[2] = BoolGetDatum(true);
			done = true;
		}
	}
	if (!done)
		elog(ERROR, "idempotency key vanished twice while placing an order");

	SPI_finish();

	InitMaterializedSRF(fcinfo, 0);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, result, result_nulls);
	return (Datum) 0;
}
