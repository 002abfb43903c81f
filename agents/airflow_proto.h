/*
 * airflow_proto.h — the pure half of the Airflow client: which HTTP request
 * each operation is on each API generation, how answers and errors are read,
 * and when and how long to wait before a retry.
 *
 * Pure: no libevent, no libcurl, no clock reads (times are passed in), no
 * printing. The transport (airflow.c) calls these; tests call them directly.
 */
#ifndef AP_AIRFLOW_PROTO_H
#define AP_AIRFLOW_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "airflow.h"

/* One HTTP exchange of an operation (an operation may take several). */
enum airflow_step {
	AIRFLOW_STEP_DEPLOY,		/* plugin: POST deploy, the pipeline */
	AIRFLOW_STEP_HEALTH,		/* plugin: GET health */
	AIRFLOW_STEP_KILL,		/* plugin: POST kill {"dag_id"} */
	AIRFLOW_STEP_DELETE,		/* plugin: DELETE delete?dag_id= */
	AIRFLOW_STEP_GET_DAG,		/* GET dags/{id} */
	AIRFLOW_STEP_IMPORT_ERRORS,	/* GET importErrors (after has_import_errors) */
	AIRFLOW_STEP_UNPAUSE,		/* PATCH dags/{id}?update_mask=is_paused, false */
	AIRFLOW_STEP_PAUSE,		/* the same, true (a DAG found with import errors) */
	AIRFLOW_STEP_TRIGGER,		/* POST dags/{id}/dagRuns */
	AIRFLOW_STEP_GET_RUN,		/* GET dags/{id}/dagRuns/{run} (also after a 409) */
	AIRFLOW_STEP_FAIL_RUN,		/* PATCH dags/{id}/dagRuns/{run} {"state":"failed"} */
	AIRFLOW_STEP_VERSION,		/* GET /api/v2/version (detection) */
	AIRFLOW_STEP_VERSION_V1,	/* GET /api/v1/version (detection, after a 401/403) */
	AIRFLOW_STEP_TOKEN,		/* POST /auth/token (Airflow 3 JWT) */
	AIRFLOW_STEP_MAX
};
const char *airflow_step_name(enum airflow_step s);

enum airflow_auth {
	AIRFLOW_AUTH_NONE,
	AIRFLOW_AUTH_BASIC,	/* 2.x API and the plugin on both generations */
	AIRFLOW_AUTH_BEARER	/* 3.x API: the JWT */
};

/*
 * The plugin's route prefixes, tried in this order on 3.x when a prefix is
 * missing (404 without the plugin's {"error"} body). 2.x has only the first
 * v1 one.
 */
#define AIRFLOW_PLUGIN_PREFIXES_V2 3
const char *airflow_plugin_prefix(enum airflow_api api, unsigned variant);

/* What to send. All strings are new (airflow_http_req_cleanup frees them). */
struct airflow_http_req {
	const char *method;	/* static */
	char *path;		/* from the base URL's end, with the query */
	char *body;		/* JSON, or NULL */
	enum airflow_auth auth;
};

/* The arguments of a step; what a step does not use may be NULL. Borrowed. */
struct airflow_step_args {
	const char *dag_id;
	const char *dag_run_id;
	const json_t *pipeline;		/* deploy */
	const char *pipeline_text;	/* deploy: the pipeline already serialised (wins) */
	const json_t *conf;		/* trigger; NULL: no conf */
	const char *username;		/* token */
	const char *password;		/* token */
	unsigned plugin_variant;	/* plugin steps: see airflow_plugin_prefix() */
};

/*
 * Builds step s for API generation api (V1 or V2; AUTO is taken as V1 except
 * for VERSION, VERSION_V1 and TOKEN, which do not depend on it). Returns 0, or -1 with a
 * new *cause when an argument is missing.
 */
int airflow_build(enum airflow_step s, enum airflow_api api,
    const struct airflow_step_args *a, struct airflow_http_req *out, char **cause);
void airflow_http_req_cleanup(struct airflow_http_req *r);

/* Percent-encodes everything but RFC 3986 unreserved characters. New string. */
char *airflow_escape(const char *s);
/* "Basic <base64(user:password)>": a new string. */
char *airflow_basic_auth(const char *user, const char *password);

/* ----------------------------------------------------------------- answers */

/* How an HTTP status (0: no answer) ends a request, before any retry. */
enum airflow_status airflow_classify(long http_status);
/* A 3xx: not followed (credentials would go along), and never Airflow's
 * API answering: what redirects (an ingress sending http:// to https://,
 * an SSO login) stands in front of an Airflow not reached, as a 503 would,
 * until airflow.url is fixed; runs wait, they do not fail. */
bool airflow_redirect(long http_status);
/* Network errors, 429, 502, 503, 504, redirects. */
bool airflow_retryable(long http_status);
/* Whether an answer counts against the circuit breaker (Airflow looks down). */
bool airflow_breaker_failure(long http_status);

/*
 * Reads an error answer of either generation: RFC 7807 (2.x), {"detail":
 * string|object|array} (3.x; a 422 validation list reads "body.field: msg;
 * ...", without the "input" it echoes), the plugin's {"error"}, or anything
 * else (a short printable excerpt). Fills a title and a detail, both new
 * strings (detail may be NULL), each at most AIRFLOW_ERROR_TEXT_MAX bytes.
 */
#define AIRFLOW_ERROR_TEXT_MAX 1024
struct airflow_error_text {
	char *title;
	char *detail;
};
void airflow_parse_error(long http_status, const char *body, size_t len,
    struct airflow_error_text *out);
void airflow_error_text_cleanup(struct airflow_error_text *e);
/* The reason phrase of a status ("Not Found"), or "HTTP error". Static. */
const char *airflow_reason(long http_status);

/* True when an authentication failure means the bearer token must be renewed. */
bool airflow_token_rejected(long http_status, const struct airflow_error_text *e);
/*
 * True when a plugin route's answer means nothing serves that route prefix
 * (not the plugin's own answer): a 404 without the plugin's {"error"} or
 * with Airflow 3's own ("API route not found", "/api/v1 has been removed
 * ..."), a 405 (Airflow 3's catch-all routes take only GET), or a 2xx whose
 * body (NULL when not JSON) is no JSON object (Airflow 3's UI page, which
 * answers any other GET). The plugin answers JSON objects.
 */
bool airflow_plugin_missing(long http_status, const json_t *body);

/* Parses a DAG object; NULL-safe. Strings point into j. -1 when not a DAG
 * (no dag_id string), -2 when is_paused or has_import_errors is neither a
 * boolean nor null. */
int airflow_parse_dag(const json_t *j, struct airflow_dag *out, const char **fileloc);
/*
 * An ISO 8601 time as Airflow writes it ("2026-11-25T11:46:10.504000+00:00",
 * "2026-11-25T11:46:10.504Z", "2026-11-25T11:46:10"; no zone means UTC), in ms
 * since the epoch, or -1 when s is NULL or not such a time.
 */
int64_t airflow_parse_time(const char *s);
/* Parses a DAG run object. Strings point into j. -1 when not a DAG run. */
int airflow_parse_run(const json_t *j, struct airflow_run *out);
enum airflow_run_state airflow_run_state_parse(const char *s);
/* What airflow_redact() puts in place of a token. */
#define AIRFLOW_REDACTED "[JWT redacted]"
/*
 * Replaces, in place, every JSON Web Token in s (two base64url runs that
 * begin "eyJ", each of at least 10 characters, and a signature, joined by
 * dots) with AIRFLOW_REDACTED, which is shorter. Returns s (NULL for NULL).
 * Airflow's and the plugin's answers, and the traces of import errors, may
 * quote the deployed pipeline, whose openMetadataServerConnection holds
 * OpenMetadata's bot token: what autopilot stores, logs and serves of them
 * goes through this.
 */
char *airflow_redact(char *s);
/*
 * Picks the import error of the DAG from an ImportErrorCollection: the entry
 * whose filename is fileloc (2.x: the same absolute path; 3.x: the path
 * relative to the DAG bundle, which fileloc ends with), else the first whose
 * file is "<dag_id>.py", else the first whose filename contains dag_id.
 * Returns its stack_trace (points into j) or NULL; *at is its timestamp (ms
 * since the epoch), 0 when it has none or none was picked.
 */
const char *airflow_pick_import_error(const json_t *j, const char *dag_id,
    const char *fileloc, int64_t *at);
/*
 * The import error of a DAG file that has none imported (the DAG answers
 * 404): the stack_trace (points into j) of the entry whose file is
 * "<dag_id>.py" and whose timestamp, in *at, is since_ms or later, or NULL.
 */
const char *airflow_pick_new_import_error(const json_t *j, const char *dag_id,
    int64_t since_ms, int64_t *at);
/* The access_token of a /auth/token answer, or NULL. Points into j. */
const char *airflow_parse_token(const json_t *j);
/*
 * The version of a GET /api/v2/version answer (3.x's VersionInfo), or NULL
 * when it has none: then the 200 came from something other than Airflow's
 * API (a proxy's or a portal's page), which says nothing about the
 * generation. Points into j.
 */
const char *airflow_parse_version(const json_t *j);
/* What one answer of version detection decides (airflow_detect_api). */
enum airflow_detect {
	AIRFLOW_DETECT_RETRY,		/* undecided: detect again with the next request */
	AIRFLOW_DETECT_V1,		/* 2.x */
	AIRFLOW_DETECT_V2,		/* 3.x */
	AIRFLOW_DETECT_ASK_V1,		/* ask GET /api/v1/version (AIRFLOW_STEP_VERSION_V1) */
	AIRFLOW_DETECT_GUESS_V1		/* neither answer tells: 2.x, said with a warning */
};

/*
 * Version detection: what the answer to `asked` decides. http_status is the
 * answer's (0: none); has_version whether a 2xx carried a version.
 *
 * AIRFLOW_STEP_VERSION, GET /api/v2/version without credentials: 2xx with a
 * version -> V2; 401 or 403 -> ASK_V1 (v2.yaml puts the route under the
 * global security, so 3.x or a proxy in front may protect it); any other 4xx
 * or 3xx -> V1 (2.x has no /api/v2: 404). AIRFLOW_STEP_VERSION_V1, GET
 * /api/v1/version with Basic auth: 2xx with a version -> V1; 404 -> V2 (3.x
 * has removed /api/v1); anything else (401 again: a proxy protecting both)
 * -> GUESS_V1. Either way no answer, a retryable status, another 5xx or a
 * 2xx to /api/v2/version without a version (not Airflow's API) -> RETRY.
 */
enum airflow_detect airflow_detect_api(enum airflow_step asked, long http_status,
    bool has_version);

/* ----------------------------------------------------------------- retries */

#define AIRFLOW_RETRY_AFTER_MAX_MS 300000	/* a Retry-After longer than 5 min is capped */

/*
 * Parses a Retry-After value: delay-seconds or an HTTP-date (IMF-fixdate,
 * RFC 850 or asctime), relative to now_wall_ms. Returns milliseconds (>= 0,
 * capped at AIRFLOW_RETRY_AFTER_MAX_MS) or -1 when absent or unreadable.
 */
long airflow_parse_retry_after(const char *value, int64_t now_wall_ms);

/*
 * The wait before retry number `retry` (1 for the first retry): full jitter,
 * a uniform draw in [0, min(max_ms, base_ms * 2^(retry-1))], from rnd (any
 * 64-bit random value). A Retry-After (retry_after_ms >= 0) is a floor.
 */
long airflow_retry_delay(unsigned retry, long base_ms, long max_ms, uint64_t rnd,
    long retry_after_ms);

/* ----------------------------------------------------------------- config */

/* Default values of the zero fields of struct airflow_config. */
#define AIRFLOW_DEFAULT_CONNECT_TIMEOUT_MS	5000
#define AIRFLOW_DEFAULT_REQUEST_TIMEOUT_MS	30000
#define AIRFLOW_DEFAULT_MAX_IN_FLIGHT		64
#define AIRFLOW_DEFAULT_MAX_RETRIES		5
#define AIRFLOW_DEFAULT_RETRY_BASE_MS		250
#define AIRFLOW_DEFAULT_RETRY_MAX_MS		30000

#endif
