/*
 * airflow_config.c — the "airflow" section of the configuration file
 * (airflow_config_from_json() in airflow.h).
 *
 * No libevent, no libcurl, no file reads: the password file is the
 * caller's to read (the environment may override it).
 */
#include <stdlib.h>
#include <string.h>

#include "airflow.h"
#include "util.h"

static int
get_ms(const json_t *v, const char *key, long min, long max, long *out, char **cause)
{
	if (!json_is_integer(v) || json_integer_value(v) < min ||
	    json_integer_value(v) > max) {
		*cause = ap_xprintf("airflow.%s: must be an integer from %ld to %ld", key,
		    min, max);
		return -1;
	}
	*out = (long)json_integer_value(v);
	return 0;
}

static int
get_str(const json_t *v, const char *key, const char **out, char **cause)
{
	if (!json_is_string(v) || json_string_length(v) == 0 ||
	    strlen(json_string_value(v)) != json_string_length(v)) {
		*cause = ap_xprintf("airflow.%s: must be a non-empty string", key);
		return -1;
	}
	*out = json_string_value(v);
	return 0;
}

int
airflow_config_from_json(const json_t *section, struct airflow_config *out, char **cause)
{
	const char *key, *s;
	json_t *v;
	long n;

	memset(out, 0, sizeof *out);
	if (section == NULL || json_is_null(section))
		return 0;
	if (!json_is_object(section)) {
		*cause = ap_xstrdup("airflow: must be an object");
		return -1;
	}
	json_object_foreach((json_t *)section, key, v) {
		if (strcmp(key, "url") == 0) {
			if (get_str(v, key, &out->base_url, cause) < 0)
				goto fail;
			if (!ap_startswith(out->base_url, "http://") &&
			    !ap_startswith(out->base_url, "https://")) {
				char *given = ap_printable(out->base_url);

				*cause = ap_xprintf("airflow.url: must start with http:// or"
				    " https://, not '%s'", given);
				free(given);
				goto fail;
			}
		} else if (strcmp(key, "api") == 0) {
			if (!json_is_string(v))
				s = "";
			else
				s = json_string_value(v);
			if (strcmp(s, "auto") == 0)
				out->api = AIRFLOW_API_AUTO;
			else if (strcmp(s, "v1") == 0)
				out->api = AIRFLOW_API_V1;
			else if (strcmp(s, "v2") == 0)
				out->api = AIRFLOW_API_V2;
			else {
				*cause = ap_xstrdup("airflow.api: must be \"auto\", \"v1\" or"
				    " \"v2\"");
				goto fail;
			}
		} else if (strcmp(key, "username") == 0) {
			if (get_str(v, key, &out->username, cause) < 0)
				goto fail;
		} else if (strcmp(key, "password_file") == 0) {
			/* null: none, as when left out */
			if (!json_is_null(v) && get_str(v, key, &out->password_file,
			    cause) < 0)
				goto fail;
		} else if (strcmp(key, "ca_file") == 0) {
			if (!json_is_null(v) && get_str(v, key, &out->ca_file, cause) < 0)
				goto fail;
		} else if (strcmp(key, "connect_timeout_ms") == 0) {
			if (get_ms(v, key, 1, 600000, &out->connect_timeout_ms, cause) < 0)
				goto fail;
		} else if (strcmp(key, "request_timeout_ms") == 0) {
			if (get_ms(v, key, 1, 3600000, &out->request_timeout_ms, cause) < 0)
				goto fail;
		} else if (strcmp(key, "max_in_flight") == 0) {
			if (!json_is_integer(v) || json_integer_value(v) < 1 ||
			    json_integer_value(v) > 65536) {
				*cause = ap_xstrdup("airflow.max_in_flight: must be a positive"
				    " integer (at most 65536)");
				goto fail;
			}
			out->max_in_flight = (unsigned)json_integer_value(v);
		} else if (strcmp(key, "max_retries") == 0) {
			if (get_ms(v, key, 0, 100, &n, cause) < 0)
				goto fail;
			out->max_retries = n == 0 ? AIRFLOW_RETRIES_NONE : (unsigned)n;
		} else if (strcmp(key, "retry_base_ms") == 0) {
			if (get_ms(v, key, 1, 3600000, &out->retry_base_ms, cause) < 0)
				goto fail;
		} else if (strcmp(key, "retry_max_ms") == 0) {
			if (get_ms(v, key, 1, 3600000, &out->retry_max_ms, cause) < 0)
				goto fail;
		} else if (strcmp(key, "password") == 0) {
			*cause = ap_xstrdup("airflow.password: not allowed in the configuration;"
			    " use airflow.password_file or AUTOPILOT_AIRFLOW_PASSWORD");
			goto fail;
		} else {
			*cause = ap_xprintf("airflow.%s: unknown key (known: url, api,"
			    " username, password_file, ca_file, connect_timeout_ms,"
			    " request_timeout_ms, max_in_flight, max_retries,"
			    " retry_base_ms, retry_max_ms)", key);
			goto fail;
		}
	}
	if (out->retry_base_ms > 0 && out->retry_max_ms > 0 &&
	    out->retry_max_ms < out->retry_base_ms) {
		*cause = ap_xstrdup("airflow.retry_max_ms: must not be below"
		    " airflow.retry_base_ms");
		goto fail;
	}
	return 0;
fail:
	memset(out, 0, sizeof *out);
	return -1;
}
