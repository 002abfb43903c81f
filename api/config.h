/*
 * config.h — autopilot's settings: one JSON file (-c FILE), the AUTOPILOT_*
 * environment and command-line flags, in that increasing precedence over
 * built-in defaults.
 *
 * This module parses the sections the server and CLI own ("listen",
 * "state", "log", "webhook", "admin", "openmetadata") and hands every other
 * section to its owner's parser ("scheduler" -> sched_config_from_json,
 * "filters" -> filter_config_from_json, ...), so one bad key anywhere is one
 * error naming the file and the key path.
 *
 * Keys starting with '$' (e.g. "$comment") are annotations: they are removed
 * from the whole tree before any section is parsed.
 *
 * Secrets (webhook secret, Airflow password, admin token, OpenMetadata
 * token) come from the environment or from a *_file key, never from a plain
 * value in the file; they are kept here and never logged or printed.
 *
 * No libevent; reads files and the environment, so call it before the loop.
 */
#ifndef AP_CONFIG_H
#define AP_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "airflow.h"
#include "log.h"
#include "sched.h"

#define CONFIG_MAX_FILE (4u * 1024 * 1024)
#define CONFIG_MAX_SECRET (64u * 1024)

/* Command-line flags that override the file and the environment (NULL / false: unset). */
struct config_flags {
	const char *listen;		/* --listen HOST:PORT */
	const char *airflow_url;	/* --airflow-url URL */
	const char *state;		/* --state PATH */
	bool allow_unsigned;		/* --allow-unsigned */
	bool log_json;			/* --log-json */
	bool quiet;			/* leave c->warnings to the caller to say */
	/* CONFIG_SECRET_* bits: secret files this command does not use, whose
	 * path is checked but the file not read (status needs none; a file
	 * only serve's host mounts must not stop it). */
	unsigned skip_secrets;
};

#define CONFIG_SECRET_WEBHOOK		0x1u	/* webhook.secret_file */
#define CONFIG_SECRET_ADMIN		0x2u	/* admin.token_file */
#define CONFIG_SECRET_AIRFLOW		0x4u	/* airflow.password_file */
#define CONFIG_SECRET_OPENMETADATA	0x8u	/* openmetadata.token_file */
#define CONFIG_SECRET_ALL		0xfu

/* listen.max_json_depth by default: nesting allowed in a webhook body (and
 * in an entity given as a JSON string). */
#define CONFIG_MAX_JSON_DEPTH 32

/* The header bytes libevent reads of one request at most. */
#define CONFIG_MAX_HEADER_BYTES (64 * 1024)

struct config {
	char *file;			/* the file read (new string), or NULL */
	json_t *root;			/* the file's JSON, '$' keys removed (owned), or NULL */
	unsigned skip_secrets;		/* config_flags.skip_secrets */

	/* "listen" */
	char *listen_host;		/* "127.0.0.1" */
	unsigned listen_port;		/* 8686 */
	size_t max_body_bytes;		/* 1 MiB: larger webhook bodies get 413 */
	unsigned max_headers;		/* 64 request headers */
	unsigned max_json_depth;	/* CONFIG_MAX_JSON_DEPTH levels of nesting */
	unsigned request_timeout_s;	/* 30: a slow client is cut off */
	unsigned max_connections;	/* 1024 open at once; then accepting waits */
	size_t max_buffered_bytes;	/* 64 MiB: of requests not yet answered, on
					 * all connections together (see server.c) */
	unsigned shutdown_grace_s;	/* 10: in-flight work finishes within this */

	/* "state" */
	char *state_path;		/* "autopilot.db" */
	bool state_sync_normal;		/* "synchronous": "normal" (default "full") */
	unsigned state_retention_days;	/* 0: runs and events are kept for ever */

	/* "log" */
	enum ap_log_level log_level;	/* info */
	enum ap_log_format log_format;	/* text */

	/* "webhook" */
	char *webhook_secret;		/* SECRET; NULL if none */
	bool allow_unsigned;		/* accept unsigned events (loudly) */

	/* "admin" */
	char *admin_token;		/* SECRET; NULL: admin endpoints answer 401 */
	bool protect_runs;		/* GET /api/v1/runs takes the token too */

	/* "openmetadata" */
	char *om_url;			/* e.g. "http://openmetadata:8585", or NULL */
	char *om_token;			/* SECRET, or NULL */

	/* "airflow": the parts the server resolves (env, flags, files). */
	char *airflow_url;		/* "http://127.0.0.1:8080" */
	const char *airflow_url_from;	/* "AUTOPILOT_AIRFLOW_URL", "--airflow-url", or NULL (file, default) */
	char *airflow_username;		/* "admin" */
	char *airflow_password;		/* SECRET, or NULL */
	/*
	 * The whole section as the Airflow client parses it
	 * (airflow_config_from_json: api, timeouts, in-flight cap, retries,
	 * ca_file), with base_url, username and password pointing at the three
	 * resolved fields above once config_load() returned.
	 */
	struct airflow_config airflow;

	/* "scheduler" */
	struct sched_config sched;

	/*
	 * What config_load() warned about (logged once, at warn level): strings
	 * naming the file and key path. A byConnector name with no built-in
	 * filter defaults (a typo such as "Postgress" loses them).
	 */
	json_t *warnings;
};

/* Fills in the built-in defaults. Embedded: config_init()/config_cleanup(). */
void config_init(struct config *c);
/* Frees everything (wiping the secrets first). */
void config_cleanup(struct config *c);

/*
 * Warnings (a new array of strings) for variables named AUTOPILOT_* that are
 * none autopilot reads: a typo such as AUTOPILOT_ADMIN_TOKN would leave a
 * setting off without a word. config_load logs them unless quiet.
 */
json_t *config_env_warnings(void);
/*
 * Warnings (a new array of strings) for settings loaded that are valid but
 * likely wrong: no OpenMetadata URL, or no token for it; a secret that
 * begins or ends with white space. serve and run log them; config check
 * prints them.
 */
json_t *config_setting_warnings(const struct config *c);
/*
 * Loads the settings: defaults, then the file (path; NULL means
 * $AUTOPILOT_CONFIG if set, else no file), then the environment, then flags
 * (may be NULL). Every section of the file is checked, including those of
 * other modules. Returns 0, or -1 with a new *cause naming the file and the
 * key path ("conf.json: listen.port: must be an integer between 1 and
 * 65535"). On error *c is left initialised (config_cleanup it).
 * On success it sets up logging as configured (ap_log_setup: level, format)
 * and logs each of c->warnings once (unless flags->quiet).
 */
/*
 * What libevent reads of one request's body at most: four times
 * listen.max_body_bytes and at least 64 KiB past it (a body a little over
 * the limit gets the webhook's JSON 413, a larger one libevent's own).
 */
size_t config_body_read_max(const struct config *c);

/* What one request may hold as it is read: its headers and such a body
 * (listen.max_buffered_bytes is at least this). */
size_t config_request_bytes_max(const struct config *c);

int config_load(struct config *c, const char *path, const struct config_flags *flags,
    char **cause);

/*
 * Reads a configuration file as config_load() does: JSON of at most
 * CONFIG_MAX_FILE bytes, duplicate keys refused, every key starting with '$'
 * removed from the whole tree. Returns a new reference, or NULL with a new
 * *cause naming the file. For commands that read one section themselves
 * (`filter test -c`).
 */
json_t *config_read_file(const char *path, char **cause);

/*
 * Parses "HOST:PORT" ("[::1]:80" too; port 0 means any). Returns 0, or -1
 * with a new *cause. *host is a new string.
 */
int config_parse_hostport(const char *s, char **host, unsigned *port, char **cause);

/*
 * The effective settings as a new JSON object, for `autopilot config check`:
 * secrets appear only as "set" or "unset".
 */
json_t *config_describe(const struct config *c);

#endif
