/*-------------------------------------------------------------------------
 *
 * faults.c
 *	  Fault-injection configuration: defaults, validation of POST /faults,
 *	  its JSON form, the per-request snapshot, and the transient faults
 *	  (down, status_script, fail_rate) that every endpoint injects alike.
 *
 * All state sits behind faults_lock.  A request copies the configuration
 * once (ft_faults_snapshot) and works on its copy, so an update never
 * changes a request half-way.  The plain fields are described once in
 * fault_fields[], which drives both parsing and printing; status_script
 * (a queue consumed one entry per /payments request) and require_token
 * are handled apart.
 *
 * tests/fake_gateway/faults.c
 *
 *-------------------------------------------------------------------------
 */
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway.h"
#include "faults.h"
#include "ledger.h"
#include "poison.h"

static __thread unsigned int prng_seed;
static __thread bool prng_ready;

typedef enum FaultKind
{
	FK_RATE,					/* double in [0, 1] */
	FK_INT,						/* int in [lo, hi] */
	FK_BOOL,
	FK_LIST						/* FtAmountList */
} FaultKind;

typedef struct FaultField
{
	const char *name;
	FaultKind	kind;
	size_t		offset;			/* in FtFaults */
	int			lo;
	int			hi;
} FaultField;

#define FIELD(name, kind, lo, hi) {#name, kind, offsetof(FtFaults, name), lo, hi}

static const FaultField fault_fields[] = {
	FIELD(fail_rate, FK_RATE, 0, 0),
	FIELD(fail_status, FK_INT, 100, 599),
	FIELD(latency_ms, FK_INT, 0, 600000),
	FIELD(timeout_rate, FK_RATE, 0, 0),
	FIELD(hang_ms, FK_INT, 0, 600000),
	FIELD(down, FK_BOOL, 0, 0),
	FIELD(decline_amount_minor, FK_LIST, 0, 0),
	FIELD(reject_amount_minor, FK_LIST, 0, 0),
	FIELD(bad_request_amount_minor, FK_LIST, 0, 0),
	FIELD(retry_after_s, FK_INT, 0, 86400),
	FIELD(garbage_rate, FK_RATE, 0, 0),
	FIELD(rate_limit_per_s, FK_INT, 0, 1000000),
	FIELD(max_concurrency, FK_INT, 0, 100000),
	FIELD(requires_action_amount_minor, FK_LIST, 0, 0),
	FIELD(key_ttl_s, FK_INT, 0, 30 * 86400),
	FIELD(poison_rate, FK_RATE, 0, 0),
	FIELD(poison_max_bytes, FK_INT, 0, FT_POISON_MAX_BYTES),
	FIELD(poison_lookups, FK_BOOL, 0, 0),
};
#define NUM_FAULT_FIELDS (sizeof(fault_fields) / sizeof(fault_fields[0]))

static pthread_mutex_t faults_lock = PTHREAD_MUTEX_INITIALIZER;
static FtFaults faults;
static FtFaults faults_default;
static int	script[FT_FAULTS_MAX_SCRIPT];
static int	script_len;
static int	script_pos;

/*
 * Set the defaults (no faults) from the command line and environment; the
 * environment token stays required after DELETE /faults.
 */
void
ft_faults_init(int hang_ms, const char *env_token)
{
	memset(&faults_default, 0, sizeof(faults_default));
	faults_default.fail_status = 503;
	faults_default.hang_ms = hang_ms;
	if (env_token != NULL && env_token[0] != '\0')
	{
		faults_default.has_token = true;
		snprintf(faults_default.require_token,
				 sizeof(faults_default.require_token), "%s", env_token);
	}
	ft_faults_reset();
}

void
ft_faults_reset(void)
{
	pthread_mutex_lock(&faults_lock);
	faults = faults_default;
	script_len = script_pos = 0;
	pthread_mutex_unlock(&faults_lock);
	(void) ft_poison_set_extra_hex(NULL);
}

void
ft_faults_snapshot(FtFaults *out)
{
	pthread_mutex_lock(&faults_lock);
	*out = faults;
	pthread_mutex_unlock(&faults_lock);
}

/* Next scripted HTTP status, or 0 when the script is used up. */
int
ft_faults_pop_script(void)
{
	int			status = 0;

	pthread_mutex_lock(&faults_lock);
	if (script_pos < script_len)
		status = script[script_pos++];
	pthread_mutex_unlock(&faults_lock);
	return status;
}

/*
 * A uniform draw in [0, 1) for fail_rate, timeout_rate and garbage_rate,
 * from this thread's own PRNG state (rand() would share one state, behind
 * a lock, between the libmicrohttpd threads).
 */
double
ft_faults_draw(void)
{
	if (!prng_ready)
	{
		prng_seed = (unsigned int) ft_gw_now_us() ^
			(unsigned int) (uintptr_t) pthread_self();
		prng_ready = true;
	}
	return rand_r(&prng_seed) / ((double) RAND_MAX + 1.0);
}

/*
 * The transient faults of f, in this order: down (the connection is closed
 * without a reply), the next status_script entry, fail_rate (fail_status).
 * A scripted or drawn status is answered {"error":"injected"}, with
 * Retry-After when retry_after_s > 0.  Each counts as faults_injected.
 * Returns true, with the handler's result in *ret, if a fault was injected;
 * false if the request goes on.
 */
bool
ft_faults_inject(struct MHD_Connection *conn, const FtFaults *f,
				 enum MHD_Result *ret)
{
	int			status;
	char		retry[16];

	if (f->down)
	{
		ft_ledger_count(FT_C_FAULTS);
		*ret = MHD_NO;
		return true;
	}
	status = ft_faults_pop_script();
	if (status == 0 && f->fail_rate > 0 && ft_faults_draw() < f->fail_rate)
		status = f->fail_status;
	if (status == 0)
		return false;
	ft_ledger_count(FT_C_FAULTS);
	snprintf(retry, sizeof(retry), "%d", f->retry_after_s);
	*ret = ft_gw_reply_json(conn, status,
							json_pack("{s:s}", "error", "injected"),
							f->retry_after_s > 0 ? "Retry-After" : NULL, retry);
	return true;
}

bool
ft_faults_listed(const FtAmountList *list, int64_t amount)
{
	for (int i = 0; i < list->n; i++)
		if (list->v[i] == amount)
			return true;
	return false;
}

/* Parse an array of at most max integers in [lo, hi] into v[], *n. */
static bool
faults_int_array(json_t *arr, int max, int64_t lo, int64_t hi,
				 int64_t *v, int *n)
{
	size_t		i;
	json_t	   *e;

	if (!json_is_array(arr) || json_array_size(arr) > (size_t) max)
		return false;
	json_array_foreach(arr, i, e)
	{
		if (!json_is_integer(e) || json_integer_value(e) < lo ||
			json_integer_value(e) > hi)
			return false;
		v[i] = json_integer_value(e);
	}
	*n = (int) json_array_size(arr);
	return true;
}

/* Check v against field fd and store it into *f; false if invalid. */
static bool
faults_set(const FaultField *fd, json_t *v, FtFaults *f)
{
	char	   *p = (char *) f + fd->offset;
	FtAmountList *list = (FtAmountList *) p;

	switch (fd->kind)
	{
		case FK_RATE:
			if (!json_is_number(v) || json_number_value(v) < 0 ||
				json_number_value(v) > 1)
				return false;
			*(double *) p = json_number_value(v);
			return true;
		case FK_INT:
			if (!json_is_integer(v) || json_integer_value(v) < fd->lo ||
				json_integer_value(v) > fd->hi)
				return false;
			*(int *) p = (int) json_integer_value(v);
			return true;
		case FK_BOOL:
			*(bool *) p = json_is_true(v);
			return json_is_boolean(v);
		case FK_LIST:
			return faults_int_array(v, FT_FAULTS_MAX_LIST, INT64_MIN,
									INT64_MAX, list->v, &list->n);
	}
	return false;
}

/* The JSON value of field fd in *f. */
static json_t *
faults_get(const FaultField *fd, const FtFaults *f)
{
	const char *p = (const char *) f + fd->offset;
	const FtAmountList *list = (const FtAmountList *) p;
	json_t	   *arr;

	switch (fd->kind)
	{
		case FK_RATE:
			return json_real(*(const double *) p);
		case FK_INT:
			return json_integer(*(const int *) p);
		case FK_BOOL:
			return json_boolean(*(const bool *) p);
		case FK_LIST:
			break;
	}
	arr = json_array();
	for (int i = 0; i < list->n; i++)
		json_array_append_new(arr, json_integer(list->v[i]));
	return arr;
}

/*
 * Apply a POST /faults object.  Every field is checked before anything
 * changes; on error nothing changes and err holds a message.
 */
bool
ft_faults_update(json_t *obj, char *err, size_t errlen)
{
	FtFaults	f;
	int64_t		new_script[FT_FAULTS_MAX_SCRIPT];
	int			new_script_len = -1;
	const char *new_extra = NULL;
	bool		set_extra = false;
	const char *name;
	json_t	   *v;

	if (!json_is_object(obj))
	{
		snprintf(err, errlen, "body must be a JSON object");
		return false;
	}
	/* held throughout so that concurrent updates do not lose fields */
	pthread_mutex_lock(&faults_lock);
	f = faults;
	json_object_foreach(obj, name, v)
	{
		bool		ok = false;
		bool		known = false;

		for (size_t i = 0; !known && i < NUM_FAULT_FIELDS; i++)
			if (strcmp(name, fault_fields[i].name) == 0)
			{
				known = true;
				ok = faults_set(&fault_fields[i], v, &f);
			}
		if (strcmp(name, "status_script") == 0)
		{
			known = true;
			ok = faults_int_array(v, FT_FAULTS_MAX_SCRIPT, 100, 599,
								  new_script, &new_script_len);
		}
		else if (strcmp(name, "require_token") == 0)
		{
			known = true;
			ok = json_is_null(v) ||
				(json_is_string(v) && json_string_length(v) > 0 &&
				 json_string_length(v) <= FT_FAULTS_MAX_TOKEN &&
				 strlen(json_string_value(v)) == json_string_length(v));
			f.has_token = ok && json_is_string(v);
			snprintf(f.require_token, sizeof(f.require_token), "%s",
					 f.has_token ? json_string_value(v) : "");
		}
		else if (strcmp(name, "reply_extra_hex") == 0)
		{
			known = true;
			ok = json_is_null(v) || json_is_string(v);
			set_extra = ok;
			new_extra = json_string_value(v);
		}
		if (!known || !ok)
		{
			snprintf(err, errlen, known ? "invalid value for field \"%.64s\""
					 : "unknown field \"%.64s\"", name);
			pthread_mutex_unlock(&faults_lock);
			return false;
		}
	}

	if (set_extra && !ft_poison_set_extra_hex(new_extra))
	{
		snprintf(err, errlen, "invalid value for field \"reply_extra_hex\"");
		pthread_mutex_unlock(&faults_lock);
		return false;
	}
	faults = f;
	if (new_script_len >= 0)
	{
		for (int i = 0; i < new_script_len; i++)
			script[i] = (int) new_script[i];
		script_len = new_script_len;
		script_pos = 0;
	}
	pthread_mutex_unlock(&faults_lock);
	return true;
}

/* The whole current configuration; status_script shows what is left. */
json_t *
ft_faults_to_json(void)
{
	json_t	   *j = json_object();
	json_t	   *s = json_array();
	FtFaults	f;

	pthread_mutex_lock(&faults_lock);
	f = faults;
	for (int i = script_pos; i < script_len; i++)
		json_array_append_new(s, json_integer(script[i]));
	pthread_mutex_unlock(&faults_lock);

	for (size_t i = 0; i < NUM_FAULT_FIELDS; i++)
		json_object_set_new(j, fault_fields[i].name,
							faults_get(&fault_fields[i], &f));
	json_object_set_new(j, "status_script", s);
	json_object_set_new(j, "reply_extra_bytes",
						json_integer((json_int_t) ft_poison_extra_len()));
	json_object_set_new(j, "require_token",
						f.has_token ? json_string(f.require_token)
						: json_null());
	return j;
}
