/*-------------------------------------------------------------------------
 *
 * faults.c
 *	  Fault-injection configuration: defaults, validation of POST /faults,
 *	  its JSON form, and the per-request snapshot.
 *
 * All state sits behind faults_lock.  A request copies the configuration
 * once (ft_faults_snapshot) and works on its copy, so an update never
 * changes a request half-way.  status_script is a queue consumed one entry
 * per /payments request (ft_faults_pop_script).
 *
 * tests/fake_gateway/faults.c
 *
 *-------------------------------------------------------------------------
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "faults.h"

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

bool
ft_faults_listed(const FtAmountList *list, int64_t amount)
{
	for (int i = 0; i < list->n; i++)
		if (list->v[i] == amount)
			return true;
	return false;
}

/* Parse a rate in [0, 1]. */
static bool
faults_rate(json_t *v, double *out)
{
	if (!json_is_number(v) || json_number_value(v) < 0 ||
		json_number_value(v) > 1)
		return false;
	*out = json_number_value(v);
	return true;
}

/* Parse an integer in [lo, hi]. */
static bool
faults_int(json_t *v, int lo, int hi, int *out)
{
	if (!json_is_integer(v) || json_integer_value(v) < lo ||
		json_integer_value(v) > hi)
		return false;
	*out = (int) json_integer_value(v);
	return true;
}

/* Parse an array of at most max integers into v[], count into *n. */
static bool
faults_int_array(json_t *arr, int max, int64_t *v, int *n)
{
	size_t		i;
	json_t	   *e;

	if (!json_is_array(arr) || json_array_size(arr) > (size_t) max)
		return false;
	json_array_foreach(arr, i, e)
	{
		if (!json_is_integer(e))
			return false;
		v[i] = json_integer_value(e);
	}
	*n = (int) json_array_size(arr);
	return true;
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
		bool		ok;

		if (strcmp(name, "fail_rate") == 0)
			ok = faults_rate(v, &f.fail_rate);
		else if (strcmp(name, "timeout_rate") == 0)
			ok = faults_rate(v, &f.timeout_rate);
		else if (strcmp(name, "garbage_rate") == 0)
			ok = faults_rate(v, &f.garbage_rate);
		else if (strcmp(name, "fail_status") == 0)
			ok = faults_int(v, 100, 599, &f.fail_status);
		else if (strcmp(name, "latency_ms") == 0)
			ok = faults_int(v, 0, 600000, &f.latency_ms);
		else if (strcmp(name, "hang_ms") == 0)
			ok = faults_int(v, 0, 600000, &f.hang_ms);
		else if (strcmp(name, "retry_after_s") == 0)
			ok = faults_int(v, 0, 86400, &f.retry_after_s);
		else if (strcmp(name, "down") == 0)
		{
			ok = json_is_boolean(v);
			f.down = json_is_true(v);
		}
		else if (strcmp(name, "decline_amount_minor") == 0)
			ok = faults_int_array(v, FT_FAULTS_MAX_LIST, f.decline.v,
								  &f.decline.n);
		else if (strcmp(name, "reject_amount_minor") == 0)
			ok = faults_int_array(v, FT_FAULTS_MAX_LIST, f.reject.v,
								  &f.reject.n);
		else if (strcmp(name, "bad_request_amount_minor") == 0)
			ok = faults_int_array(v, FT_FAULTS_MAX_LIST, f.bad_request.v,
								  &f.bad_request.n);
		else if (strcmp(name, "status_script") == 0)
		{
			ok = faults_int_array(v, FT_FAULTS_MAX_SCRIPT, new_script,
								  &new_script_len);
			for (int i = 0; ok && i < new_script_len; i++)
				ok = new_script[i] >= 100 && new_script[i] <= 599;
		}
		else if (strcmp(name, "require_token") == 0)
		{
			ok = json_is_null(v) ||
				(json_is_string(v) && json_string_length(v) > 0 &&
				 json_string_length(v) <= FT_FAULTS_MAX_TOKEN &&
				 strlen(json_string_value(v)) == json_string_length(v));
			f.has_token = ok && json_is_string(v);
			snprintf(f.require_token, sizeof(f.require_token), "%s",
					 f.has_token ? json_string_value(v) : "");
		}
		else
		{
			snprintf(err, errlen, "unknown field \"%.64s\"", name);
			pthread_mutex_unlock(&faults_lock);
			return false;
		}
		if (!ok)
		{
			snprintf(err, errlen, "invalid value for field \"%s\"", name);
			pthread_mutex_unlock(&faults_lock);
			return false;
		}
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

static json_t *
faults_list_json(const FtAmountList *list)
{
	json_t	   *arr = json_array();

	for (int i = 0; i < list->n; i++)
		json_array_append_new(arr, json_integer(list->v[i]));
	return arr;
}

/* The whole current configuration; status_script shows what is left. */
json_t *
ft_faults_to_json(void)
{
	FtFaults	f;
	json_t	   *s = json_array();

	pthread_mutex_lock(&faults_lock);
	f = faults;
	for (int i = script_pos; i < script_len; i++)
		json_array_append_new(s, json_integer(script[i]));
	pthread_mutex_unlock(&faults_lock);

	return json_pack("{s:f, s:i, s:i, s:f, s:i, s:b, s:o, s:o, s:o, s:i, s:f, s:o, s:s?}",
					 "fail_rate", f.fail_rate,
					 "fail_status", f.fail_status,
					 "latency_ms", f.latency_ms,
					 "timeout_rate", f.timeout_rate,
					 "hang_ms", f.hang_ms,
					 "down", f.down,
					 "decline_amount_minor", faults_list_json(&f.decline),
					 "reject_amount_minor", faults_list_json(&f.reject),
					 "bad_request_amount_minor",
					 faults_list_json(&f.bad_request),
					 "retry_after_s", f.retry_after_s,
					 "garbage_rate", f.garbage_rate,
					 "status_script", s,
					 "require_token",
					 f.has_token ? f.require_token : NULL);
}
