/*
 * config.c — loads autopilot's settings: defaults < JSON file < AUTOPILOT_*
 * environment < flags. Parses the server's own sections and hands the others
 * to their owners' parsers, so a bad key anywhere is reported with its file
 * and key path. Secrets are read from the environment or *_file keys only.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "airflow_proto.h"
#include "filter_effective.h"
#include "plan.h"
#include "util.h"

#define DEFAULT_LISTEN_HOST "127.0.0.1"
#define DEFAULT_LISTEN_PORT 8686
#define DEFAULT_MAX_BUFFERED (64u * 1024 * 1024)
#define MIN_BODY_BYTES 1024	/* listen.max_body_bytes at least */
/* The least one request may hold as it is read (config_request_bytes_max()
 * at the least max_body_bytes): listen.max_buffered_bytes at least. */
#define MIN_BUFFERED (MIN_BODY_BYTES + 65536 + CONFIG_MAX_HEADER_BYTES)
#define DEFAULT_STATE "autopilot.db"
#define DEFAULT_AIRFLOW_URL "http://127.0.0.1:8080"
#define DEFAULT_AIRFLOW_USER "admin"

/* Sections of the file: ours are parsed here, the rest by their owners. */
static const char *const known_sections[] = { "listen", "state", "log", "webhook",
	"admin", "openmetadata", "airflow", "scheduler", "filters", "agents", NULL };

static void
wipe_free(char *s)
{
	if (s == NULL)
		return;
	/* volatile so the compiler keeps the wipe of memory about to be freed. */
	for (volatile char *p = s; *p != '\0'; p++)
		*p = '\0';
	free(s);
}

static void
set_str(char **dst, const char *v)
{
	free(*dst);
	*dst = v != NULL ? ap_xstrdup(v) : NULL;
}

static void
set_secret(char **dst, char *v)
{
	wipe_free(*dst);
	*dst = v;
}

void
config_init(struct config *c)
{
	memset(c, 0, sizeof *c);
	c->listen_host = ap_xstrdup(DEFAULT_LISTEN_HOST);
	c->listen_port = DEFAULT_LISTEN_PORT;
	c->max_body_bytes = 1024 * 1024;
	c->max_headers = 64;
	c->max_json_depth = CONFIG_MAX_JSON_DEPTH;
	c->request_timeout_s = 30;
	c->max_connections = 1024;
	c->max_buffered_bytes = DEFAULT_MAX_BUFFERED;
	c->shutdown_grace_s = 10;
	c->state_path = ap_xstrdup(DEFAULT_STATE);
	c->log_level = AP_LOG_INFO;
	c->log_format = AP_LOG_TEXT;
	c->airflow_url = ap_xstrdup(DEFAULT_AIRFLOW_URL);
	c->airflow_username = ap_xstrdup(DEFAULT_AIRFLOW_USER);
	sched_config_defaults(&c->sched);
	c->warnings = json_array();
}

void
config_cleanup(struct config *c)
{
	free(c->file);
	json_decref(c->root);
	free(c->listen_host);
	free(c->state_path);
	wipe_free(c->webhook_secret);
	wipe_free(c->admin_token);
	free(c->om_url);
	wipe_free(c->om_token);
	free(c->airflow_url);
	free(c->airflow_username);
	wipe_free(c->airflow_password);
	json_decref(c->warnings);
	memset(c, 0, sizeof *c);
}

int
config_parse_hostport(const char *s, char **host, unsigned *port, char **cause)
{
	const char *colon, *whole = s;
	unsigned long p;
	size_t hlen;

	*host = NULL;
	if (s[0] == '[') {
		const char *close = strchr(s, ']');

		if (close == NULL || close[1] != ':') {
			*cause = ap_xprintf("'%s': expected HOST:PORT", s);
			return -1;
		}
		colon = close + 1;
		s++;
		hlen = (size_t)(close - s);
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL) {
			*cause = ap_xprintf("'%s': expected HOST:PORT", s);
			return -1;
		}
		hlen = (size_t)(colon - s);
	}
	if (hlen == 0) {
		*cause = ap_xprintf("'%s': empty host", whole);
		return -1;
	}
	if (ap_parse_uint(colon + 1, 0, 65535, &p) < 0) {
		*cause = ap_xprintf("'%s': port must be a number between 0 and 65535",
		    colon + 1);
		return -1;
	}
	*host = ap_xstrndup(s, hlen);
	*port = (unsigned)p;
	return 0;
}

/* Removes every key starting with '$' (annotations) from the whole tree. */
static void
strip_annotations(json_t *j)
{
	const char *key;
	json_t *v;
	void *tmp;
	size_t i;

	if (json_is_object(j)) {
		json_object_foreach_safe(j, tmp, key, v) {
			if (key[0] == '$')
				json_object_del(j, key);
			else
				strip_annotations(v);
		}
	} else if (json_is_array(j)) {
		json_array_foreach(j, i, v)
			strip_annotations(v);
	}
}

/* ---- Typed getters: each names the key path in its message. ---- */

static int
get_uint(const char *sec, const char *key, const json_t *v, unsigned long min,
    unsigned long max, unsigned long *out, char **cause)
{
	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    (unsigned long long)json_integer_value(v) < min ||
	    (unsigned long long)json_integer_value(v) > max) {
		*cause = ap_xprintf("%s.%s: must be an integer between %lu and %lu",
		    sec, key, min, max);
		return -1;
	}
	*out = (unsigned long)json_integer_value(v);
	return 0;
}

static int
get_str(const char *sec, const char *key, const json_t *v, char **out, char **cause)
{
	if (!json_is_string(v) || json_string_length(v) == 0) {
		*cause = ap_xprintf("%s.%s: must be a non-empty string", sec, key);
		return -1;
	}
	set_str(out, json_string_value(v));
	return 0;
}

static int
get_bool(const char *sec, const char *key, const json_t *v, bool *out, char **cause)
{
	if (!json_is_boolean(v)) {
		*cause = ap_xprintf("%s.%s: must be true or false", sec, key);
		return -1;
	}
	*out = json_is_true(v);
	return 0;
}

/* A variable's value, or NULL when it is unset or empty. */
static const char *
env(const char *name)
{
	const char *v = getenv(name);

	return v != NULL && v[0] != '\0' ? v : NULL;
}

/*
 * A secret from variable name, if set, into *dst: without one line end
 * ("\n" or "\r\n") at its end, as a *_file's first line is read, since a
 * value written by `echo` (a Kubernetes Secret made so) carries one. One
 * that holds nothing else is an error, as an empty *_file is.
 */
static int
env_secret(const char *name, char **dst, char **cause)
{
	const char *v = env(name);
	size_t n;

	if (v == NULL)
		return 0;
	n = strlen(v);
	if (v[n - 1] == '\n' && --n > 0 && v[n - 1] == '\r')
		n--;
	if (n == 0) {
		*cause = ap_xprintf("%s: no secret: the variable holds only a line"
		    " end", name);
		return -1;
	}
	set_secret(dst, ap_xstrndup(v, n));
	return 0;
}

/*
 * Reads a secret from a file: its first line, without the line end ("\n" or
 * "\r\n"); what follows is not read as part of it. The secret itself never
 * appears in a message.
 */
static int
read_secret_file(const char *what, const char *path, char **out, char **cause)
{
	char *err = NULL, *s, *nl;
	size_t len;
	bool empty;

	s = ap_read_file(path, CONFIG_MAX_SECRET, &len, &err);
	if (s == NULL) {
		*cause = ap_xprintf("%s: %s", what, err);
		free(err);
		return -1;
	}
	empty = len == 0;
	if ((nl = memchr(s, '\n', len)) != NULL) {
		/* Wipe the rest too: it is freed with the secret. */
		memset(nl, '\0', len - (size_t)(nl - s));
		len = (size_t)(nl - s);
	}
	if (len > 0 && s[len - 1] == '\r')
		s[--len] = '\0';
	if (len == 0 || strlen(s) != len) {
		*cause = ap_xprintf("%s: %s: %s", what, path, empty ?
		    "no secret: the file is empty" : len == 0 ?
		    "no secret: its first line is empty" :
		    "its first line contains a NUL byte");
		memset(s, '\0', len);
		free(s);
		return -1;
	}
	set_secret(out, s);
	return 0;
}

/*
 * A *_file key: the path must be given, and the file is read only when the
 * variable envname does not override it (a file that is not there, or not
 * readable by this user, is no error then), nor the command skips the
 * secret (bit, of c->skip_secrets).
 */
static int
get_secret_file(const struct config *c, unsigned bit, const char *sec,
    const char *key, const json_t *v, const char *envname, char **out,
    char **cause)
{
	char *what;
	int rc;

	if (json_is_null(v))
		return 0;	/* none, as when left out */
	if (!json_is_string(v) || json_string_length(v) == 0 ||
	    strlen(json_string_value(v)) != json_string_length(v)) {
		*cause = ap_xprintf("%s.%s: must be the path of a file", sec, key);
		return -1;
	}
	if (env(envname) != NULL || (c->skip_secrets & bit) != 0)
		return 0;
	what = ap_xprintf("%s.%s", sec, key);
	rc = read_secret_file(what, json_string_value(v), out, cause);
	free(what);
	return rc;
}

static int
section_object(const char *sec, const json_t *v, char **cause)
{
	if (!json_is_object(v)) {
		*cause = ap_xprintf("%s: must be an object", sec);
		return -1;
	}
	return 0;
}

static int
unknown_key(const char *sec, const char *key, const char *known, char **cause)
{
	*cause = ap_xprintf("%s.%s: unknown key (known: %s)", sec, key, known);
	return -1;
}

/* ---- Our sections. ---- */

size_t
config_body_read_max(const struct config *c)
{
	size_t n = c->max_body_bytes * 4;

	return n < c->max_body_bytes + 65536 ? c->max_body_bytes + 65536 : n;
}

size_t
config_request_bytes_max(const struct config *c)
{
	return config_body_read_max(c) + CONFIG_MAX_HEADER_BYTES;
}

static int
parse_listen(struct config *c, const json_t *sec, char **cause)
{
	const char *key;
	json_t *v;
	unsigned long n = 0;
	bool buffered_set = false;
	int rc;

	if (section_object("listen", sec, cause) < 0)
		return -1;
	json_object_foreach((json_t *)sec, key, v) {
		if (strcmp(key, "host") == 0)
			rc = get_str("listen", key, v, &c->listen_host, cause);
		else if (strcmp(key, "port") == 0) {
			rc = get_uint("listen", key, v, 0, 65535, &n, cause);
			c->listen_port = (unsigned)n;
		} else if (strcmp(key, "max_body_bytes") == 0) {
			rc = get_uint("listen", key, v, MIN_BODY_BYTES, 64ul * 1024 * 1024, &n,
			    cause);
			c->max_body_bytes = n;
		} else if (strcmp(key, "max_headers") == 0) {
			rc = get_uint("listen", key, v, 8, 1000, &n, cause);
			c->max_headers = (unsigned)n;
		} else if (strcmp(key, "max_json_depth") == 0) {
			rc = get_uint("listen", key, v, 4, 1000, &n, cause);
			c->max_json_depth = (unsigned)n;
		} else if (strcmp(key, "request_timeout_s") == 0) {
			rc = get_uint("listen", key, v, 1, 3600, &n, cause);
			c->request_timeout_s = (unsigned)n;
		} else if (strcmp(key, "max_connections") == 0) {
			rc = get_uint("listen", key, v, 4, 1000000, &n, cause);
			c->max_connections = (unsigned)n;
		} else if (strcmp(key, "max_buffered_bytes") == 0) {
			rc = get_uint("listen", key, v, MIN_BUFFERED, (unsigned long)(SIZE_MAX >
			    0xffffffffu ? 16ull << 30 : SIZE_MAX), &n, cause);
			c->max_buffered_bytes = n;
			buffered_set = true;
		} else if (strcmp(key, "shutdown_grace_s") == 0) {
			rc = get_uint("listen", key, v, 0, 3600, &n, cause);
			c->shutdown_grace_s = (unsigned)n;
		} else
			rc = unknown_key("listen", key, "host, port, max_body_bytes, max_headers, max_json_depth, request_timeout_s, max_connections, max_buffered_bytes, shutdown_grace_s", cause);
		if (rc < 0)
			return -1;
	}
	/* Room for one request as large as may be read; left out, for a
	 * few of them beside smaller ones. */
	if (buffered_set && c->max_buffered_bytes < config_request_bytes_max(c)) {
		*cause = ap_xprintf("listen.max_buffered_bytes: %zu is less than one"
		    " request may hold as it is read (%zu bytes: 64 KiB of headers and a"
		    " body up to four times listen.max_body_bytes, at least 64 KiB past"
		    " it)", c->max_buffered_bytes, config_request_bytes_max(c));
		return -1;
	}
	if (!buffered_set && c->max_buffered_bytes < 4 * config_request_bytes_max(c))
		c->max_buffered_bytes = 4 * config_request_bytes_max(c);
	return 0;
}

static int
parse_state(struct config *c, const json_t *sec, char **cause)
{
	const char *key;
	json_t *v;

	if (section_object("state", sec, cause) < 0)
		return -1;
	json_object_foreach((json_t *)sec, key, v) {
		if (strcmp(key, "path") == 0) {
			if (get_str("state", key, v, &c->state_path, cause) < 0)
				return -1;
		} else if (strcmp(key, "synchronous") == 0) {
			const char *s = json_string_value(v);

			if (s == NULL || (strcmp(s, "full") != 0 && strcmp(s, "normal") != 0)) {
				*cause = ap_xstrdup("state.synchronous: must be \"full\" or"
				    " \"normal\"");
				return -1;
			}
			c->state_sync_normal = strcmp(s, "normal") == 0;
		} else if (strcmp(key, "retention_days") == 0) {
			unsigned long n;

			if (get_uint("state", key, v, 0, 36500, &n, cause) < 0)
				return -1;
			c->state_retention_days = (unsigned)n;
		} else
			return unknown_key("state", key, "path, synchronous,"
			    " retention_days", cause);
	}
	return 0;
}

static int
parse_log_format(const char *what, const char *s, enum ap_log_format *out, char **cause)
{
	if (s != NULL && strcmp(s, "text") == 0)
		*out = AP_LOG_TEXT;
	else if (s != NULL && strcmp(s, "json") == 0)
		*out = AP_LOG_JSON;
	else {
		*cause = ap_xprintf("%s: must be \"text\" or \"json\"", what);
		return -1;
	}
	return 0;
}

static int
parse_log_level(const char *what, const char *s, enum ap_log_level *out, char **cause)
{
	if (s == NULL || !ap_log_level_parse(s, out)) {
		*cause = ap_xprintf("%s: must be \"debug\", \"info\", \"warn\" or"
		    " \"error\"", what);
		return -1;
	}
	return 0;
}

static int
parse_log(struct config *c, const json_t *sec, char **cause)
{
	const char *key;
	json_t *v;

	if (section_object("log", sec, cause) < 0)
		return -1;
	json_object_foreach((json_t *)sec, key, v) {
		if (strcmp(key, "level") == 0) {
			if (parse_log_level("log.level", json_string_value(v),
			    &c->log_level, cause) < 0)
				return -1;
		} else if (strcmp(key, "format") == 0) {
			if (parse_log_format("log.format", json_string_value(v),
			    &c->log_format, cause) < 0)
				return -1;
		} else
			return unknown_key("log", key, "level, format", cause);
	}
	return 0;
}

static int
refuse_plain_secret(const char *sec, const char *key, const char *file_key,
    const char *env, char **cause)
{
	*cause = ap_xprintf("%s.%s: secrets are not read from the configuration file;"
	    " use %s.%s (a file holding it) or %s", sec, key, sec, file_key, env);
	return -1;
}

static int
parse_webhook(struct config *c, const json_t *sec, char **cause)
{
	const char *key;
	json_t *v;

	if (section_object("webhook", sec, cause) < 0)
		return -1;
	json_object_foreach((json_t *)sec, key, v) {
		int rc;

		if (strcmp(key, "secret_file") == 0)
			rc = get_secret_file(c, CONFIG_SECRET_WEBHOOK, "webhook",
			    key, v, "AUTOPILOT_WEBHOOK_SECRET", &c->webhook_secret,
			    cause);
		else if (strcmp(key, "allow_unsigned") == 0)
			rc = get_bool("webhook", key, v, &c->allow_unsigned, cause);
		else if (strcmp(key, "secret") == 0)
			rc = refuse_plain_secret("webhook", key, "secret_file",
			    "AUTOPILOT_WEBHOOK_SECRET", cause);
		else
			rc = unknown_key("webhook", key, "secret_file, allow_unsigned", cause);
		if (rc < 0)
			return -1;
	}
	return 0;
}

static int
parse_admin(struct config *c, const json_t *sec, char **cause)
{
	const char *key;
	json_t *v;

	if (section_object("admin", sec, cause) < 0)
		return -1;
	json_object_foreach((json_t *)sec, key, v) {
		int rc;

		if (strcmp(key, "token_file") == 0)
			rc = get_secret_file(c, CONFIG_SECRET_ADMIN, "admin", key,
			    v, "AUTOPILOT_ADMIN_TOKEN", &c->admin_token, cause);
		else if (strcmp(key, "token") == 0)
			rc = refuse_plain_secret("admin", key, "token_file",
			    "AUTOPILOT_ADMIN_TOKEN", cause);
		else if (strcmp(key, "protect_runs") == 0)
			rc = get_bool("admin", key, v, &c->protect_runs, cause);
		else
			rc = unknown_key("admin", key, "token_file, protect_runs", cause);
		if (rc < 0)
			return -1;
	}
	return 0;
}

/*
 * OpenMetadata's base URL, as deployed agents get it (hostPort "URL/api"):
 * checked like airflow.url. what names the key or the variable.
 */
static int
check_om_url(const char *what, const char *url, char **cause)
{
	const char *why = ap_http_url_problem(url);
	char *shown;

	if (why != NULL) {
		shown = ap_url_shown(url);
		*cause = ap_xprintf("%s: %s, e.g. http://openmetadata:8585 (got '%s')",
		    what, why, shown);
		free(shown);
		return -1;
	}
	return 0;
}

/* airflow.ca_file must be a file we can read now, not at the first TLS
 * connection. */
static int
check_ca_file(const char *path, char **cause)
{
	struct stat st;
	int fd;

	/* O_NONBLOCK: a FIFO is refused below rather than waited on. */
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)) < 0 ||
	    fstat(fd, &st) < 0) {
		*cause = ap_xprintf("airflow.ca_file: %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	if (!S_ISREG(st.st_mode)) {
		*cause = ap_xprintf("airflow.ca_file: %s: %s", path,
		    S_ISDIR(st.st_mode) ? "is a directory" : "not a regular file");
		return -1;
	}
	return 0;
}

static int
parse_openmetadata(struct config *c, const json_t *sec, char **cause)
{
	const char *key;
	json_t *v;

	if (section_object("openmetadata", sec, cause) < 0)
		return -1;
	json_object_foreach((json_t *)sec, key, v) {
		int rc;

		if (strcmp(key, "url") == 0 && json_is_null(v))
			rc = 0;		/* none, as when left out */
		else if (strcmp(key, "url") == 0) {
			rc = get_str("openmetadata", key, v, &c->om_url, cause);
			if (rc == 0)
				rc = check_om_url("openmetadata.url", c->om_url, cause);
		}
		else if (strcmp(key, "token_file") == 0)
			rc = get_secret_file(c, CONFIG_SECRET_OPENMETADATA,
			    "openmetadata", key, v, "AUTOPILOT_OPENMETADATA_TOKEN",
			    &c->om_token, cause);
		else if (strcmp(key, "token") == 0)
			rc = refuse_plain_secret("openmetadata", key, "token_file",
			    "AUTOPILOT_OPENMETADATA_TOKEN", cause);
		else
			rc = unknown_key("openmetadata", key, "url, token_file", cause);
		if (rc < 0)
			return -1;
	}
	return 0;
}

/*
 * The "airflow" keys the server resolves itself (url, username and the
 * password file, which environment and flags override). The section as a
 * whole is checked by the Airflow client's parser.
 */
static int
parse_airflow_own(struct config *c, const json_t *sec, char **cause)
{
	json_t *v;

	if (section_object("airflow", sec, cause) < 0)
		return -1;
	if ((v = json_object_get(sec, "url")) != NULL &&
	    get_str("airflow", "url", v, &c->airflow_url, cause) < 0)
		return -1;
	if ((v = json_object_get(sec, "username")) != NULL &&
	    get_str("airflow", "username", v, &c->airflow_username, cause) < 0)
		return -1;
	if ((v = json_object_get(sec, "password_file")) != NULL &&
	    get_secret_file(c, CONFIG_SECRET_AIRFLOW, "airflow", "password_file",
	    v, "AUTOPILOT_AIRFLOW_PASSWORD", &c->airflow_password, cause) < 0)
		return -1;
	if (json_object_get(sec, "password") != NULL)
		return refuse_plain_secret("airflow", "password", "password_file",
		    "AUTOPILOT_AIRFLOW_PASSWORD", cause);
	return 0;
}

/* Every section of the file, ours and the other modules'. */
static int
parse_file(struct config *c, char **cause)
{
	struct filter_config fc;
	struct plan *plan;
	const char *key;
	json_t *v;
	size_t i;
	int rc = 0;

	if (!json_is_object(c->root)) {
		*cause = ap_xstrdup("the configuration must be a JSON object");
		return -1;
	}
	json_object_foreach(c->root, key, v) {
		for (i = 0; known_sections[i] != NULL; i++)
			if (strcmp(key, known_sections[i]) == 0)
				break;
		if (known_sections[i] == NULL) {
			*cause = ap_xprintf("%s: unknown section (known: listen, state,"
			    " log, webhook, admin, openmetadata, airflow, scheduler,"
			    " filters, agents)", key);
			return -1;
		}
	}
	if ((v = json_object_get(c->root, "listen")) != NULL && parse_listen(c, v, cause) < 0)
		return -1;
	if ((v = json_object_get(c->root, "state")) != NULL && parse_state(c, v, cause) < 0)
		return -1;
	if ((v = json_object_get(c->root, "log")) != NULL && parse_log(c, v, cause) < 0)
		return -1;
	if ((v = json_object_get(c->root, "webhook")) != NULL &&
	    parse_webhook(c, v, cause) < 0)
		return -1;
	if ((v = json_object_get(c->root, "admin")) != NULL && parse_admin(c, v, cause) < 0)
		return -1;
	if ((v = json_object_get(c->root, "openmetadata")) != NULL &&
	    parse_openmetadata(c, v, cause) < 0)
		return -1;
	/* The Airflow client's parser checks the whole section, as serve's
	 * client will; then the keys the environment and flags override. */
	if (airflow_config_from_json(json_object_get(c->root, "airflow"), &c->airflow,
	    cause) < 0)
		return -1;
	if (c->airflow.ca_file != NULL && check_ca_file(c->airflow.ca_file, cause) < 0)
		return -1;
	if ((v = json_object_get(c->root, "airflow")) != NULL &&
	    parse_airflow_own(c, v, cause) < 0)
		return -1;
	if (sched_config_from_json(json_object_get(c->root, "scheduler"), &c->sched,
	    cause) < 0)
		return -1;
	filter_config_init(&fc);
	rc = filter_config_from_json(json_object_get(c->root, "filters"), &fc, cause);
	if (rc == 0)
		filter_config_warnings(&fc, c->warnings);
	filter_config_cleanup(&fc);
	if (rc < 0)
		return -1;
	/* The plan reads "agents" and "filters": unknown agents, cycles and
	 * patterns that do not compile are caught here, before anything runs. */
	if ((plan = plan_create(c->root, NULL, cause)) == NULL)
		return -1;
	plan_free(plan);
	return 0;
}

static int
apply_listen(struct config *c, const char *what, const char *s, char **cause)
{
	char *host = NULL, *err = NULL;
	unsigned port;

	if (config_parse_hostport(s, &host, &port, &err) < 0) {
		*cause = ap_xprintf("%s: %s", what, err);
		free(err);
		return -1;
	}
	free(c->listen_host);
	c->listen_host = host;
	c->listen_port = port;
	return 0;
}

static int
apply_env(struct config *c, char **cause)
{
	const char *v;

	if ((v = env("AUTOPILOT_LISTEN")) != NULL &&
	    apply_listen(c, "AUTOPILOT_LISTEN", v, cause) < 0)
		return -1;
	if ((v = env("AUTOPILOT_STATE")) != NULL)
		set_str(&c->state_path, v);
	if ((v = env("AUTOPILOT_LOG_LEVEL")) != NULL &&
	    parse_log_level("AUTOPILOT_LOG_LEVEL", v, &c->log_level, cause) < 0)
		return -1;
	if ((v = env("AUTOPILOT_LOG_FORMAT")) != NULL &&
	    parse_log_format("AUTOPILOT_LOG_FORMAT", v, &c->log_format, cause) < 0)
		return -1;
	if (env_secret("AUTOPILOT_WEBHOOK_SECRET", &c->webhook_secret, cause) < 0)
		return -1;
	if (env_secret("AUTOPILOT_ADMIN_TOKEN", &c->admin_token, cause) < 0)
		return -1;
	if ((v = env("AUTOPILOT_OPENMETADATA_URL")) != NULL) {
		if (check_om_url("AUTOPILOT_OPENMETADATA_URL", v, cause) < 0)
			return -1;
		set_str(&c->om_url, v);
	}
	if (env_secret("AUTOPILOT_OPENMETADATA_TOKEN", &c->om_token, cause) < 0)
		return -1;
	if ((v = env("AUTOPILOT_AIRFLOW_URL")) != NULL) {
		set_str(&c->airflow_url, v);
		c->airflow_url_from = "AUTOPILOT_AIRFLOW_URL";
	}
	if ((v = env("AUTOPILOT_AIRFLOW_USERNAME")) != NULL)
		set_str(&c->airflow_username, v);
	if (env_secret("AUTOPILOT_AIRFLOW_PASSWORD", &c->airflow_password, cause) < 0)
		return -1;
	return 0;
}

static int
apply_flags(struct config *c, const struct config_flags *f, char **cause)
{
	if (f == NULL)
		return 0;
	if (f->listen != NULL && apply_listen(c, "--listen", f->listen, cause) < 0)
		return -1;
	if (f->airflow_url != NULL) {
		set_str(&c->airflow_url, f->airflow_url);
		c->airflow_url_from = "--airflow-url";
	}
	if (f->state != NULL) {
		/* As the file's state.path: an empty path is no database. */
		if (f->state[0] == '\0') {
			*cause = ap_xstrdup("--state: must be a non-empty path");
			return -1;
		}
		set_str(&c->state_path, f->state);
	}
	if (f->allow_unsigned)
		c->allow_unsigned = true;
	if (f->log_json)
		c->log_format = AP_LOG_JSON;
	return 0;
}

json_t *
config_read_file(const char *path, char **cause)
{
	json_error_t jerr;
	char *err = NULL, *text;
	size_t len, bom;
	json_t *root;

	if ((text = ap_read_file(path, CONFIG_MAX_FILE, &len, &err)) == NULL) {
		*cause = ap_xprintf("configuration: %s", err);
		free(err);
		return NULL;
	}
	/* A byte order mark, as some editors on Windows write one, is not
	 * part of the JSON text (RFC 8259 lets a parser pass over it). */
	bom = len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0 ? 3 : 0;
	root = json_loadb(text + bom, len - bom, JSON_REJECT_DUPLICATES, &jerr);
	free(text);
	if (root == NULL) {
		*cause = ap_xprintf("%s: line %d, column %d: %s", path, jerr.line,
		    jerr.column, jerr.text);
		return NULL;
	}
	strip_annotations(root);
	return root;
}

/* Every variable autopilot reads (README's table). */
static const char *const env_known[] = { "AUTOPILOT_CONFIG", "AUTOPILOT_LISTEN",
	"AUTOPILOT_STATE", "AUTOPILOT_LOG_LEVEL", "AUTOPILOT_LOG_FORMAT",
	"AUTOPILOT_WEBHOOK_SECRET", "AUTOPILOT_ADMIN_TOKEN", "AUTOPILOT_AIRFLOW_URL",
	"AUTOPILOT_AIRFLOW_USERNAME", "AUTOPILOT_AIRFLOW_PASSWORD",
	"AUTOPILOT_OPENMETADATA_URL", "AUTOPILOT_OPENMETADATA_TOKEN", NULL };

json_t *
config_env_warnings(void)
{
	extern char **environ;
	json_t *out = json_array();
	char **e, *msg, *name, *shown;
	size_t n, i;

	for (e = environ; e != NULL && *e != NULL; e++) {
		if (strncmp(*e, "AUTOPILOT_", 10) != 0)
			continue;
		n = strcspn(*e, "=");
		for (i = 0; env_known[i] != NULL; i++)
			if (strlen(env_known[i]) == n && strncmp(*e, env_known[i], n) == 0)
				break;
		if (env_known[i] != NULL)
			continue;
		name = ap_xstrndup(*e, n < 64 ? n : 64);
		shown = ap_printable(name);
		msg = ap_xprintf("environment: %s is not a variable autopilot reads;"
		    " it is ignored (README.md lists those it reads)", shown);
		json_array_append_new(out, json_string(msg));
		free(msg);
		free(shown);
		free(name);
	}
	return out;
}

/* Warns of a secret set that begins or ends with white space. */
static void
secret_space_warning(json_t *out, const char *s, const char *what,
    const char *envname, const char *key)
{
	char *msg;

	if (s == NULL || !(isspace((unsigned char)s[0]) ||
	    isspace((unsigned char)s[strlen(s) - 1])))
		return;
	msg = ap_xprintf("the %s (%s or %s) %s with white space: it is used as it"
	    " is (only a line end at its end is not part of it), and one that"
	    " does not hold that white space does not match it", what, envname,
	    key, isspace((unsigned char)s[0]) ? "begins" : "ends");
	json_array_append_new(out, json_string(msg));
	free(msg);
}

json_t *
config_setting_warnings(const struct config *c)
{
	json_t *out = json_array();

	if (c->om_url == NULL)
		json_array_append_new(out, json_string("openmetadata.url"
		    " (AUTOPILOT_OPENMETADATA_URL) is not set: the agents deployed"
		    " have no openMetadataServerConnection, which OpenMetadata's"
		    " ingestion needs to reach OpenMetadata (OpenMetadata's Airflow"
		    " plugin fails to deploy a pipeline without one)"));
	else if (c->om_token == NULL)
		json_array_append_new(out, json_string("openmetadata.url is set but"
		    " no OpenMetadata token (AUTOPILOT_OPENMETADATA_TOKEN or"
		    " openmetadata.token_file): the agents deployed have no"
		    " securityConfig, so OpenMetadata turns their calls down unless"
		    " it runs without authentication"));
	secret_space_warning(out, c->webhook_secret, "webhook secret",
	    "AUTOPILOT_WEBHOOK_SECRET", "webhook.secret_file");
	secret_space_warning(out, c->admin_token, "admin token",
	    "AUTOPILOT_ADMIN_TOKEN", "admin.token_file");
	secret_space_warning(out, c->om_token, "OpenMetadata token",
	    "AUTOPILOT_OPENMETADATA_TOKEN", "openmetadata.token_file");
	secret_space_warning(out, c->airflow_password, "Airflow password",
	    "AUTOPILOT_AIRFLOW_PASSWORD", "airflow.password_file");
	return out;
}

int
config_load(struct config *c, const char *path, const struct config_flags *flags,
    char **cause)
{
	char *err = NULL;
	size_t i;
	json_t *w;
	long wait;
	int rc = -1;

	if (path == NULL)
		path = env("AUTOPILOT_CONFIG");
	c->skip_secrets = flags != NULL ? flags->skip_secrets : 0;
	if (path != NULL) {
		set_str(&c->file, path);
		if ((c->root = config_read_file(path, cause)) == NULL)
			goto out;
		if (parse_file(c, &err) < 0) {
			*cause = ap_xprintf("%s: %s", path, err);
			goto out;
		}
	}
	if (apply_env(c, cause) < 0 || apply_flags(c, flags, cause) < 0)
		goto out;
	c->airflow.base_url = c->airflow_url;
	c->airflow.username = c->airflow_username;
	c->airflow.password = c->airflow_password;
	/* A trigger sent just before its run was replaced reaches Airflow
	 * within one request's time: a halt that found no run looks again
	 * after that (60 s at least). */
	wait = (c->airflow.request_timeout_ms > 0 ? c->airflow.request_timeout_ms :
	    AIRFLOW_DEFAULT_REQUEST_TIMEOUT_MS) + (c->airflow.connect_timeout_ms > 0 ?
	    c->airflow.connect_timeout_ms : AIRFLOW_DEFAULT_CONNECT_TIMEOUT_MS) + 10000;
	if (wait > (long)c->sched.halt_recheck_ms)
		c->sched.halt_recheck_ms = (unsigned)wait;
	rc = 0;
	/* Logged once, as the configuration says logs go. */
	ap_log_setup(c->log_level, c->log_format);
	if (flags == NULL || !flags->quiet) {
		json_t *ew = config_env_warnings();

		json_array_foreach(c->warnings, i, w)
			ap_warn("%s: %s", c->file, json_string_value(w));
		json_array_foreach(ew, i, w)
			ap_warn("%s", json_string_value(w));
		json_decref(ew);
	}
out:
	free(err);
	return rc;
}

/*
 * A setting as a JSON string (new reference), or null. Paths, hosts and the
 * user name come from flags and the environment as bytes, which need not be
 * UTF-8; jansson refuses such strings, so their other bytes are shown as '?'.
 */
static json_t *
describe_str(const char *s)
{
	json_t *j;
	char *p;

	if (s == NULL)
		return json_null();
	if ((j = json_string(s)) != NULL)
		return j;
	p = ap_printable(s);
	j = json_string(p);
	free(p);
	return j;
}

static const char *
secret_state(const char *s)
{
	return s != NULL ? "set" : "unset";
}

json_t *
config_describe(const struct config *c)
{
	const struct airflow_config *a = &c->airflow;
	struct plan_options po = { 0 };
	struct plan *plan;
	json_t *o;
	char *listen, *cause = NULL;
	/* The values the Airflow client will use (airflow_client_create()'s
	 * defaults for the keys left out). */
	long connect_ms = a->connect_timeout_ms > 0 ? a->connect_timeout_ms :
	    AIRFLOW_DEFAULT_CONNECT_TIMEOUT_MS;
	long request_ms = a->request_timeout_ms > 0 ? a->request_timeout_ms :
	    AIRFLOW_DEFAULT_REQUEST_TIMEOUT_MS;
	unsigned in_flight = a->max_in_flight > 0 ? a->max_in_flight :
	    AIRFLOW_DEFAULT_MAX_IN_FLIGHT;
	unsigned retries = a->max_retries == AIRFLOW_RETRIES_NONE ? 0 :
	    a->max_retries > 0 ? a->max_retries : AIRFLOW_DEFAULT_MAX_RETRIES;
	long base_ms = a->retry_base_ms > 0 ? a->retry_base_ms :
	    AIRFLOW_DEFAULT_RETRY_BASE_MS;
	long max_ms = a->retry_max_ms > 0 ? a->retry_max_ms :
	    AIRFLOW_DEFAULT_RETRY_MAX_MS;

	if (max_ms < base_ms)
		max_ms = base_ms;
	listen = strchr(c->listen_host, ':') != NULL ?
	    ap_xprintf("[%s]:%u", c->listen_host, c->listen_port) :
	    ap_xprintf("%s:%u", c->listen_host, c->listen_port);
	o = json_pack("{s:o, s:{s:o, s:I, s:i, s:i, s:i, s:i, s:I, s:i}, s:{s:o, s:s, s:i},"
	    " s:{s:s, s:s}, s:{s:s, s:b}, s:{s:s, s:b}, s:{s:o, s:s},"
	    " s:{s:o, s:s, s:o, s:s, s:o, s:I, s:I, s:I, s:I, s:I, s:I},"
	    " s:{s:i, s:i, s:i, s:i, s:f, s:b, s:b, s:i, s:i, s:i, s:i, s:i}}",
	    "file", describe_str(c->file),
	    "listen", "address", describe_str(listen),
	    "max_body_bytes", (json_int_t)c->max_body_bytes,
	    "max_headers", (int)c->max_headers, "max_json_depth", (int)c->max_json_depth,
	    "request_timeout_s", (int)c->request_timeout_s,
	    "max_connections", (int)c->max_connections,
	    "max_buffered_bytes", (json_int_t)c->max_buffered_bytes,
	    "shutdown_grace_s", (int)c->shutdown_grace_s,
	    "state", "path", describe_str(c->state_path), "synchronous",
	    c->state_sync_normal ? "normal" : "full",
	    "retention_days", (int)c->state_retention_days,
	    "log", "level", ap_log_level_name(c->log_level), "format",
	    c->log_format == AP_LOG_JSON ? "json" : "text",
	    "webhook", "secret", secret_state(c->webhook_secret), "allow_unsigned",
	    c->allow_unsigned,
	    "admin", "token", secret_state(c->admin_token), "protect_runs",
	    c->protect_runs,
	    "openmetadata", "url", describe_str(c->om_url),
	    "token", secret_state(c->om_token),
	    "airflow", "url", describe_str(c->airflow_url),
	    "api", airflow_api_name(a->api),
	    "username", describe_str(c->airflow_username),
	    "password", secret_state(c->airflow_password),
	    "ca_file", describe_str(a->ca_file),
	    "connect_timeout_ms", (json_int_t)connect_ms,
	    "request_timeout_ms", (json_int_t)request_ms,
	    "max_in_flight", (json_int_t)in_flight, "max_retries", (json_int_t)retries,
	    "retry_base_ms", (json_int_t)base_ms, "retry_max_ms", (json_int_t)max_ms,
	    "scheduler", "max_agents_in_flight", (int)c->sched.max_agents_in_flight,
	    "poll_initial_ms", (int)c->sched.poll_initial_ms,
	    "poll_max_ms", (int)c->sched.poll_max_ms,
	    "poll_floor_ms", (int)c->sched.poll_floor_ms,
	    "poll_backoff", c->sched.poll_backoff,
	    "poll_learn", c->sched.poll_learn, "predeploy", c->sched.predeploy,
	    "predeploy_max", (int)c->sched.predeploy_max,
	    "dag_parse_deadline_s", (int)c->sched.dag_parse_deadline_s,
	    "unreachable_retry_max_ms", (int)c->sched.unreachable_retry_max_ms,
	    "lease_ms", (int)c->sched.lease_ms, "rescan_ms", (int)c->sched.rescan_ms);
	free(listen);
	if (o == NULL)
		ap_fatal("config_describe: json_pack failed");
	po.openmetadata_url = c->om_url;
	po.openmetadata_token = c->om_token;
	if ((plan = plan_create(c->root, &po, &cause)) != NULL) {
		json_object_set_new(o, "plan", plan_describe(plan));
		plan_free(plan);
	} else {
		json_object_set_new(o, "plan", json_pack("{s:s}", "error", cause));
		free(cause);
	}
	return o;
}
