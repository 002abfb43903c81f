/*
 * airflow_proto.c — requests, answers and retry policy of the Airflow client
 * (see airflow_proto.h). Also the name functions of airflow.h's enums.
 *
 * Pure: no libevent, no libcurl, no clock reads.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "airflow_proto.h"
#include "util.h"

static const char *const api_names[] = { "auto", "v1", "v2" };
static const char *const run_state_names[] = { "queued", "running", "success", "failed",
	"unknown" };
static const char *const status_names[] = { "ok", "not_found", "rejected", "unavailable",
	"bad_reply" };
static const char *const step_names[] = { "deploy", "health", "kill", "delete", "get_dag",
	"import_errors", "unpause", "pause", "trigger", "get_run", "fail_run", "version",
	"version_v1", "token" };

const char *
airflow_api_name(enum airflow_api api)
{
	return (unsigned)api < AIRFLOW_API_MAX ? api_names[api] : "?";
}

const char *
airflow_run_state_name(enum airflow_run_state s)
{
	return (unsigned)s < AIRFLOW_RUN_STATE_MAX ? run_state_names[s] : "?";
}

const char *
airflow_status_name(enum airflow_status s)
{
	return (unsigned)s < AIRFLOW_STATUS_MAX ? status_names[s] : "?";
}

const char *
airflow_step_name(enum airflow_step s)
{
	return (unsigned)s < AIRFLOW_STEP_MAX ? step_names[s] : "?";
}

/* ----------------------------------------------------------------- requests */

const char *
airflow_plugin_prefix(enum airflow_api api, unsigned variant)
{
	static const char *const v2[AIRFLOW_PLUGIN_PREFIXES_V2] = {
		"/pluginsv2/api/v2/openmetadata", "/api/v2/openmetadata",
		"/api/v1/openmetadata" };

	if (api != AIRFLOW_API_V2)
		return variant == 0 ? "/api/v1/openmetadata" : NULL;
	return variant < AIRFLOW_PLUGIN_PREFIXES_V2 ? v2[variant] : NULL;
}

char *
airflow_escape(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	struct ap_buf b;
	const unsigned char *p;

	ap_buf_init(&b);
	ap_buf_adds(&b, "");
	for (p = (const unsigned char *)s; *p != '\0'; p++) {
		if (isascii(*p) && (isalnum(*p) || *p == '-' || *p == '.' || *p == '_' ||
		    *p == '~'))
			ap_buf_addc(&b, (char)*p);
		else {
			ap_buf_addc(&b, '%');
			ap_buf_addc(&b, hex[*p >> 4]);
			ap_buf_addc(&b, hex[*p & 15]);
		}
	}
	return ap_buf_steal(&b, NULL);
}

char *
airflow_basic_auth(const char *user, const char *password)
{
	static const char b64[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char *plain = ap_xprintf("%s:%s", user != NULL ? user : "",
	    password != NULL ? password : "");
	size_t n = strlen(plain), i;
	struct ap_buf b;
	const unsigned char *p = (const unsigned char *)plain;

	ap_buf_init(&b);
	ap_buf_adds(&b, "Basic ");
	for (i = 0; i + 2 < n; i += 3) {
		ap_buf_addc(&b, b64[p[i] >> 2]);
		ap_buf_addc(&b, b64[((p[i] & 3) << 4) | (p[i + 1] >> 4)]);
		ap_buf_addc(&b, b64[((p[i + 1] & 15) << 2) | (p[i + 2] >> 6)]);
		ap_buf_addc(&b, b64[p[i + 2] & 63]);
	}
	if (n - i == 1) {
		ap_buf_addc(&b, b64[p[i] >> 2]);
		ap_buf_addc(&b, b64[(p[i] & 3) << 4]);
		ap_buf_adds(&b, "==");
	} else if (n - i == 2) {
		ap_buf_addc(&b, b64[p[i] >> 2]);
		ap_buf_addc(&b, b64[((p[i] & 3) << 4) | (p[i + 1] >> 4)]);
		ap_buf_addc(&b, b64[(p[i + 1] & 15) << 2]);
		ap_buf_addc(&b, '=');
	}
	/* The password was in plain; do not leave it in freed memory. */
	memset(plain, 0, n);
	free(plain);
	return ap_buf_steal(&b, NULL);
}

static char *
dumps(json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT);

	if (s == NULL)
		ap_fatal("json_dumps failed");
	json_decref(j);
	return s;
}

int
airflow_build(enum airflow_step s, enum airflow_api api,
    const struct airflow_step_args *a, struct airflow_http_req *out, char **cause)
{
	const char *ver = api == AIRFLOW_API_V2 ? "/api/v2" : "/api/v1";
	const char *prefix = airflow_plugin_prefix(api, a->plugin_variant);
	char *dag = NULL, *run = NULL;
	json_t *j;
	int rc = -1;

	memset(out, 0, sizeof *out);
	switch (s) {
	case AIRFLOW_STEP_DEPLOY:
	case AIRFLOW_STEP_HEALTH:
	case AIRFLOW_STEP_KILL:
	case AIRFLOW_STEP_DELETE:
		if (prefix == NULL) {
			*cause = ap_xstrdup("no OpenMetadata plugin route left to try");
			goto out;
		}
		break;
	case AIRFLOW_STEP_GET_DAG:
	case AIRFLOW_STEP_IMPORT_ERRORS:
	case AIRFLOW_STEP_UNPAUSE:
	case AIRFLOW_STEP_PAUSE:
	case AIRFLOW_STEP_TRIGGER:
	case AIRFLOW_STEP_GET_RUN:
	case AIRFLOW_STEP_FAIL_RUN:
	case AIRFLOW_STEP_VERSION:
	case AIRFLOW_STEP_VERSION_V1:
	case AIRFLOW_STEP_TOKEN:
		break;
	default:
		*cause = ap_xstrdup("unknown request");
		goto out;
	}
	if (s != AIRFLOW_STEP_DEPLOY && s != AIRFLOW_STEP_HEALTH && s != AIRFLOW_STEP_VERSION &&
	    s != AIRFLOW_STEP_VERSION_V1 && s != AIRFLOW_STEP_TOKEN) {
		if (a->dag_id == NULL || a->dag_id[0] == '\0') {
			*cause = ap_xprintf("%s: no DAG id", airflow_step_name(s));
			goto out;
		}
		dag = airflow_escape(a->dag_id);
	}
	if (s == AIRFLOW_STEP_TRIGGER || s == AIRFLOW_STEP_GET_RUN ||
	    s == AIRFLOW_STEP_FAIL_RUN) {
		if (a->dag_run_id == NULL || a->dag_run_id[0] == '\0') {
			*cause = ap_xprintf("%s: no DAG run id", airflow_step_name(s));
			goto out;
		}
		run = airflow_escape(a->dag_run_id);
	}
	out->auth = api == AIRFLOW_API_V2 ? AIRFLOW_AUTH_BEARER : AIRFLOW_AUTH_BASIC;

	switch (s) {
	case AIRFLOW_STEP_DEPLOY:
		if (a->pipeline_text == NULL && !json_is_object(a->pipeline)) {
			*cause = ap_xstrdup("deploy: the pipeline is not a JSON object");
			goto out;
		}
		out->method = "POST";
		out->path = ap_xprintf("%s/deploy", prefix);
		out->body = a->pipeline_text != NULL ? ap_xstrdup(a->pipeline_text) :
		    json_dumps(a->pipeline, JSON_COMPACT);
		if (out->body == NULL)
			ap_fatal("json_dumps failed");
		out->auth = AIRFLOW_AUTH_BASIC;
		break;
	case AIRFLOW_STEP_HEALTH:
		out->method = "GET";
		/* health-auth: a check that also says whether the credentials
		 * are taken (the plain health route takes none). */
		out->path = ap_xprintf("%s/health-auth", prefix);
		out->auth = AIRFLOW_AUTH_BASIC;
		break;
	case AIRFLOW_STEP_KILL:
		out->method = "POST";
		out->path = ap_xprintf("%s/kill", prefix);
		out->body = dumps(json_pack("{s:s}", "dag_id", a->dag_id));
		out->auth = AIRFLOW_AUTH_BASIC;
		break;
	case AIRFLOW_STEP_DELETE:
		out->method = "DELETE";
		out->path = ap_xprintf("%s/delete?dag_id=%s", prefix, dag);
		out->auth = AIRFLOW_AUTH_BASIC;
		break;
	case AIRFLOW_STEP_GET_DAG:
		out->method = "GET";
		out->path = ap_xprintf("%s/dags/%s", ver, dag);
		break;
	case AIRFLOW_STEP_IMPORT_ERRORS:
		/*
		 * 3.x filters by file name; 2.x has no filter (and rejects unknown
		 * query parameters), so the client picks the DAG's file itself.
		 */
		out->method = "GET";
		if (api == AIRFLOW_API_V2)
			out->path = ap_xprintf("%s/importErrors?filename_pattern=%s&limit=100",
			    ver, dag);
		else
			out->path = ap_xprintf("%s/importErrors?limit=100&order_by=-timestamp",
			    ver);
		break;
	case AIRFLOW_STEP_UNPAUSE:
	case AIRFLOW_STEP_PAUSE:
		out->method = "PATCH";
		out->path = ap_xprintf("%s/dags/%s?update_mask=is_paused", ver, dag);
		out->body = ap_xstrdup(s == AIRFLOW_STEP_PAUSE ? "{\"is_paused\":true}" :
		    "{\"is_paused\":false}");
		break;
	case AIRFLOW_STEP_TRIGGER:
		out->method = "POST";
		out->path = ap_xprintf("%s/dags/%s/dagRuns", ver, dag);
		j = json_pack("{s:s}", "dag_run_id", a->dag_run_id);
		if (a->conf != NULL && !json_is_null(a->conf)) {
			if (!json_is_object(a->conf)) {
				json_decref(j);
				*cause = ap_xstrdup("trigger: conf is not a JSON object");
				goto out;
			}
			json_object_set(j, "conf", (json_t *)a->conf);
		}
		/* Airflow 3.0 requires the key; null means "run now, no logical date". */
		if (api == AIRFLOW_API_V2)
			json_object_set_new(j, "logical_date", json_null());
		out->body = dumps(j);
		break;
	case AIRFLOW_STEP_GET_RUN:
		out->method = "GET";
		out->path = ap_xprintf("%s/dags/%s/dagRuns/%s", ver, dag, run);
		break;
	case AIRFLOW_STEP_FAIL_RUN:
		out->method = "PATCH";
		out->path = ap_xprintf("%s/dags/%s/dagRuns/%s", ver, dag, run);
		out->body = dumps(json_pack("{s:s}", "state", "failed"));
		break;
	case AIRFLOW_STEP_VERSION:
		out->method = "GET";
		out->path = ap_xstrdup("/api/v2/version");
		out->auth = AIRFLOW_AUTH_NONE;
		break;
	case AIRFLOW_STEP_VERSION_V1:
		/*
		 * v1.yaml puts /version under the global security (Basic among
		 * its schemes), so a 2.x that protects its API protects this
		 * too: asked as every other 2.x route, with the credentials
		 * that server gets anyway.
		 */
		out->method = "GET";
		out->path = ap_xstrdup("/api/v1/version");
		out->auth = AIRFLOW_AUTH_BASIC;
		break;
	case AIRFLOW_STEP_TOKEN:
		out->method = "POST";
		out->path = ap_xstrdup("/auth/token");
		out->body = dumps(json_pack("{s:s, s:s}", "username",
		    a->username != NULL ? a->username : "", "password",
		    a->password != NULL ? a->password : ""));
		out->auth = AIRFLOW_AUTH_NONE;
		break;
	default:
		break;
	}
	rc = 0;
out:
	free(dag);
	free(run);
	if (rc != 0)
		airflow_http_req_cleanup(out);
	return rc;
}

void
airflow_http_req_cleanup(struct airflow_http_req *r)
{
	free(r->path);
	if (r->body != NULL) {
		/* Token requests carry the password. */
		memset(r->body, 0, strlen(r->body));
		free(r->body);
	}
	memset(r, 0, sizeof *r);
}

/* ----------------------------------------------------------------- answers */

enum airflow_status
airflow_classify(long http_status)
{
	if (http_status >= 200 && http_status < 300)
		return AIRFLOW_OK;
	if (http_status == 404)
		return AIRFLOW_NOT_FOUND;
	if (http_status <= 0 || http_status == 429 || http_status >= 500 ||
	    airflow_redirect(http_status))
		return AIRFLOW_UNAVAILABLE;
	return AIRFLOW_REJECTED;
}

bool
airflow_redirect(long http_status)
{
	return http_status >= 300 && http_status < 400;
}

bool
airflow_retryable(long http_status)
{
	return http_status <= 0 || http_status == 429 || http_status == 502 ||
	    http_status == 503 || http_status == 504 || airflow_redirect(http_status);
}

bool
airflow_breaker_failure(long http_status)
{
	return http_status <= 0 || http_status == 502 || http_status == 503 ||
	    http_status == 504 || airflow_redirect(http_status);
}

const char *
airflow_reason(long st)
{
	switch (st) {
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 409: return "Conflict";
	case 413: return "Payload Too Large";
	case 422: return "Unprocessable Entity";
	case 429: return "Too Many Requests";
	case 500: return "Internal Server Error";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	default: break;
	}
	/* Redirects are not followed (credentials would go along): the URL
	 * is the one to fix. */
	if (st >= 300 && st < 400)
		return "Redirect, not followed (check airflow.url: scheme, host,"
		    " port and path prefix)";
	return "HTTP error";
}

/*
 * A copy of at most max bytes, tokens redacted, control characters as
 * spaces. Redacted before the cut, as a token cut in half would not read as
 * one, and after it, as the "..." may end what now reads as one.
 */
static char *
clip_to(const char *s, size_t len, size_t max)
{
	char *out = airflow_redact(ap_xstrndup(s, len));
	size_t i;

	len = strlen(out);
	if (len > max) {
		len = max - 3;
		/* Do not cut a UTF-8 sequence in half. */
		while (len > 0 && ((unsigned char)out[len] & 0xc0) == 0x80)
			len--;
		memcpy(out + len, "...", 4);
		len += 3;
	}
	for (i = 0; i < len; i++) {
		if ((unsigned char)out[i] < 0x20 || out[i] == 0x7f)
			out[i] = ' ';
	}
	return airflow_redact(out);
}

static char *
clip(const char *s, size_t len)
{
	return clip_to(s, len, AIRFLOW_ERROR_TEXT_MAX);
}

static char *
clip_json(const json_t *j)
{
	char *s, *c;

	if (json_is_string(j))
		return clip(json_string_value(j), json_string_length(j));
	s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
	if (s == NULL)
		return NULL;
	c = clip(s, strlen(s));
	free(s);
	return c;
}

/*
 * A 3.x validation list ([{type, loc, msg, input, ctx}], FastAPI's 422) as
 * "body.logical_date: Field required; ...", or NULL when detail is not one.
 * "input" is left out: it echoes what was sent (the password of a token
 * request, a run's conf).
 */
static char *
validation_text(const json_t *detail)
{
	struct ap_buf b;
	const json_t *e, *l;
	size_t i, k;
	char *s;

	if (!json_is_array(detail) || json_array_size(detail) == 0)
		return NULL;
	json_array_foreach(detail, i, e) {
		if (!json_is_string(json_object_get(e, "msg")))
			return NULL;
	}
	ap_buf_init(&b);
	ap_buf_adds(&b, "");
	json_array_foreach(detail, i, e) {
		if (i > 0)
			ap_buf_adds(&b, "; ");
		json_array_foreach(json_object_get(e, "loc"), k, l) {
			if (k > 0)
				ap_buf_addc(&b, '.');
			if (json_is_string(l))
				ap_buf_adds(&b, json_string_value(l));
			else if (json_is_integer(l))
				ap_buf_printf(&b, "%" JSON_INTEGER_FORMAT, json_integer_value(l));
			else
				ap_buf_addc(&b, '?');
		}
		if (json_array_size(json_object_get(e, "loc")) > 0)
			ap_buf_adds(&b, ": ");
		ap_buf_adds(&b, json_string_value(json_object_get(e, "msg")));
	}
	s = clip(b.data, b.len);
	ap_buf_cleanup(&b);
	return s;
}

static bool
b64url_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	    (c >= '0' && c <= '9') || c == '-' || c == '_';
}

/* The length of the base64url run at s. */
static size_t
b64url_run(const char *s)
{
	size_t n = 0;

	while (b64url_char(s[n]))
		n++;
	return n;
}

char *
airflow_redact(char *s)
{
	char *r, *w;
	size_t h, p;

	if (s == NULL)
		return NULL;
	for (r = w = s; *r != '\0';) {
		/* A JWT: base64url of {"... twice, dot-separated, and a
		 * signature (empty when unsigned). */
		if (strncmp(r, "eyJ", 3) == 0 && (r == s || !b64url_char(r[-1])) &&
		    (h = b64url_run(r)) >= 10 && r[h] == '.' &&
		    strncmp(r + h + 1, "eyJ", 3) == 0 &&
		    (p = b64url_run(r + h + 1)) >= 10 && r[h + 1 + p] == '.') {
			r += h + 1 + p + 1;
			r += b64url_run(r);
			memcpy(w, AIRFLOW_REDACTED, sizeof AIRFLOW_REDACTED - 1);
			w += sizeof AIRFLOW_REDACTED - 1;
			continue;
		}
		*w++ = *r++;
	}
	*w = '\0';
	return s;
}

void
airflow_parse_error(long http_status, const char *body, size_t len,
    struct airflow_error_text *out)
{
	json_t *j = NULL, *title, *detail, *error;
	size_t i;

	memset(out, 0, sizeof out[0]);
	if (body != NULL && len > 0 && len <= (1u << 20))
		j = json_loadb(body, len, JSON_DECODE_ANY, NULL);
	title = json_object_get(j, "title");
	detail = json_object_get(j, "detail");
	error = json_object_get(j, "error");
	if (json_is_string(title) && json_string_length(title) > 0)
		out->title = clip(json_string_value(title), json_string_length(title));
	else
		out->title = ap_xstrdup(airflow_reason(http_status));
	if (detail != NULL && !json_is_null(detail)) {
		/* 2.x string, 3.x string, object or validation list */
		if ((out->detail = validation_text(detail)) == NULL)
			out->detail = clip_json(detail);
	} else if (error != NULL && !json_is_null(error))
		out->detail = clip_json(error);		/* the plugin */
	else if (j == NULL && body != NULL && len > 0) {
		/* Not JSON (a proxy's HTML page...): the start of it, if it is
		 * text (read on to the end of a token there). */
		for (i = 0; i < len && i < 64 * 1024; i++) {
			if (body[i] == '\0')
				break;
		}
		if (i > 0)
			out->detail = clip_to(body, i, 200);
	}
	json_decref(j);
	/* An answer may echo what was sent (the pipeline carries OpenMetadata's
	 * bot token): every text was redacted by clip_to(). */
}

void
airflow_error_text_cleanup(struct airflow_error_text *e)
{
	free(e->title);
	free(e->detail);
	e->title = e->detail = NULL;
}

static bool
contains_ci(const char *hay, const char *needle)
{
	size_t n = strlen(needle);

	for (; hay != NULL && *hay != '\0'; hay++) {
		if (strncasecmp(hay, needle, n) == 0)
			return true;
	}
	return false;
}

bool
airflow_token_rejected(long http_status, const struct airflow_error_text *e)
{
	if (http_status == 401)
		return true;
	return http_status == 403 && e != NULL && (contains_ci(e->detail, "token") ||
	    contains_ci(e->title, "token"));
}

bool
airflow_plugin_missing(long http_status, const json_t *body)
{
	const char *error = json_string_value(json_object_get(body, "error"));

	/* Airflow 3's routes for what no router serves: GET only, so any other
	 * method there is a 405; GET /api/... is a 404 with an "error" of its
	 * own, and any other GET is the UI's page (200, HTML). */
	if (http_status == 405)
		return true;
	if (http_status >= 200 && http_status < 300)
		return !json_is_object(body);
	if (http_status != 404)
		return false;
	return json_object_get(body, "error") == NULL || (error != NULL &&
	    (strcmp(error, "API route not found") == 0 ||
	    strncmp(error, "/api/v1 has been removed in Airflow 3", 37) == 0));
}

enum airflow_run_state
airflow_run_state_parse(const char *s)
{
	unsigned i;

	for (i = 0; s != NULL && i < AIRFLOW_RUN_UNKNOWN; i++) {
		if (strcmp(s, run_state_names[i]) == 0)
			return (enum airflow_run_state)i;
	}
	return AIRFLOW_RUN_UNKNOWN;
}

int
airflow_parse_dag(const json_t *j, struct airflow_dag *out, const char **fileloc)
{
	const json_t *id = json_object_get(j, "dag_id");
	const json_t *paused = json_object_get(j, "is_paused");
	const json_t *ierr = json_object_get(j, "has_import_errors");

	memset(out, 0, sizeof *out);
	if (fileloc != NULL)
		*fileloc = NULL;
	if (!json_is_string(id))
		return -1;
	/* Booleans, or null (2.x's nullable fields): "no" or 1 would be read
	 * as paused or as no import errors. */
	if ((paused != NULL && !json_is_boolean(paused) && !json_is_null(paused)) ||
	    (ierr != NULL && !json_is_boolean(ierr) && !json_is_null(ierr)))
		return -2;
	out->dag_id = json_string_value(id);
	/* is_paused is nullable on 2.x; unknown counts as paused (unpausing is harmless). */
	out->is_paused = !json_is_false(paused);
	out->has_import_errors = json_is_true(ierr);
	if (fileloc != NULL)
		*fileloc = json_string_value(json_object_get(j, "fileloc"));
	return 0;
}

/* n decimal digits at p, or -1. */
static int
time_digits(const char *p, int n)
{
	int v = 0;

	while (n-- > 0) {
		if (*p < '0' || *p > '9')
			return -1;
		v = v * 10 + (*p++ - '0');
	}
	return v;
}

int64_t
airflow_parse_time(const char *s)
{
	struct tm tm = { 0 };
	int64_t ms = 0, scale = 100;
	int zh, zm, sign;
	time_t t;

	/* YYYY-MM-DDTHH:MM:SS */
	if (s == NULL || strlen(s) < 19 || s[4] != '-' || s[7] != '-' ||
	    (s[10] != 'T' && s[10] != ' ') || s[13] != ':' || s[16] != ':')
		return -1;
	tm.tm_year = time_digits(s, 4) - 1900;
	tm.tm_mon = time_digits(s + 5, 2) - 1;
	tm.tm_mday = time_digits(s + 8, 2);
	tm.tm_hour = time_digits(s + 11, 2);
	tm.tm_min = time_digits(s + 14, 2);
	tm.tm_sec = time_digits(s + 17, 2);
	if (tm.tm_year < 0 || tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_mday < 1 ||
	    tm.tm_mday > 31 || tm.tm_hour < 0 || tm.tm_hour > 23 || tm.tm_min < 0 ||
	    tm.tm_min > 59 || tm.tm_sec < 0 || tm.tm_sec > 60)
		return -1;
	s += 19;
	if (*s == '.') {
		if (s[1] < '0' || s[1] > '9')
			return -1;
		for (s++; *s >= '0' && *s <= '9'; s++) {
			ms += (*s - '0') * scale;
			scale /= 10;
		}
	}
	if (*s == 'Z' || *s == 'z')
		s++;
	else if (*s == '+' || *s == '-') {
		sign = *s == '-' ? -1 : 1;
		if ((zh = time_digits(s + 1, 2)) < 0 || zh > 23)
			return -1;
		zm = s[3] == ':' ? time_digits(s + 4, 2) : time_digits(s + 3, 2);
		if (zm < 0 || zm > 59)
			return -1;
		s += s[3] == ':' ? 6 : 5;
		ms -= sign * ((int64_t)zh * 3600000 + (int64_t)zm * 60000);
	}
	if (*s != '\0' || (t = timegm(&tm)) == (time_t)-1)
		return -1;
	return (int64_t)t * 1000 + ms;
}

/* A time field of j in ms since the epoch, 0 when absent or unreadable. */
static int64_t
run_time(const json_t *j, const char *key)
{
	int64_t t = airflow_parse_time(json_string_value(json_object_get(j, key)));

	return t > 0 ? t : 0;
}

/* Whether v is absent, null or a string. */
static bool
string_or_null(const json_t *v)
{
	return v == NULL || json_is_null(v) || json_is_string(v);
}

int
airflow_parse_run(const json_t *j, struct airflow_run *out)
{
	const json_t *st = json_object_get(j, "state");

	memset(out, 0, sizeof *out);
	if (!json_is_object(j) || !json_is_string(st))
		return -1;
	/* Strings, or absent (older answers) or null (a manual run's): another
	 * type would pass for "the run asked about". */
	if (!string_or_null(json_object_get(j, "dag_id")) ||
	    !string_or_null(json_object_get(j, "dag_run_id")))
		return -1;
	out->dag_id = json_string_value(json_object_get(j, "dag_id"));
	out->dag_run_id = json_string_value(json_object_get(j, "dag_run_id"));
	out->state_text = json_string_value(st);
	out->state = airflow_run_state_parse(out->state_text);
	/* 3.x says when the run was queued; on 2.x a run triggered without a
	 * logical date gets the time of the trigger as its logical date. */
	if ((out->queued_ms = run_time(j, "queued_at")) == 0 &&
	    (out->queued_ms = run_time(j, "logical_date")) == 0)
		out->queued_ms = run_time(j, "execution_date");
	out->ended_ms = run_time(j, "end_date");
	return 0;
}

/*
 * Whether an import error's filename names the file at fileloc: the same
 * path (2.x), or its end at a '/' (3.x lists files relative to their bundle).
 */
static bool
same_file(const char *fn, const char *fileloc)
{
	size_t n = strlen(fn), m = strlen(fileloc);

	if (n == 0 || n > m)
		return false;
	return strcmp(fileloc + (m - n), fn) == 0 && (n == m || fn[0] == '/' ||
	    fileloc[m - n - 1] == '/');
}

/* Whether filename's last component is "<dag_id>.py", the plugin's file. */
static bool
dag_file(const char *fn, const char *dag_id)
{
	const char *base = strrchr(fn, '/');
	size_t n = strlen(dag_id);

	base = base != NULL ? base + 1 : fn;
	return strncmp(base, dag_id, n) == 0 && strcmp(base + n, ".py") == 0;
}

/* The timestamp of an import error entry (ms since the epoch), 0 if none. */
static int64_t
import_error_time(const json_t *e)
{
	int64_t t = airflow_parse_time(json_string_value(json_object_get(e, "timestamp")));

	return t > 0 ? t : 0;
}

const char *
airflow_pick_import_error(const json_t *j, const char *dag_id, const char *fileloc,
    int64_t *at)
{
	const json_t *list = json_object_get(j, "import_errors"), *e;
	const json_t *named = NULL, *fallback = NULL, *pick;
	size_t i;

	*at = 0;
	json_array_foreach(list, i, e) {
		const char *fn = json_string_value(json_object_get(e, "filename"));
		const char *st = json_string_value(json_object_get(e, "stack_trace"));

		if (fn == NULL || st == NULL)
			continue;
		if (fileloc != NULL && same_file(fn, fileloc)) {
			named = e;
			break;
		}
		if (named == NULL && dag_id != NULL && dag_file(fn, dag_id))
			named = e;
		if (fallback == NULL && dag_id != NULL && strstr(fn, dag_id) != NULL)
			fallback = e;
	}
	if ((pick = named != NULL ? named : fallback) == NULL)
		return NULL;
	*at = import_error_time(pick);
	return json_string_value(json_object_get(pick, "stack_trace"));
}

const char *
airflow_pick_new_import_error(const json_t *j, const char *dag_id,
    int64_t since_ms, int64_t *at)
{
	const json_t *list = json_object_get(j, "import_errors"), *e;
	size_t i;

	json_array_foreach(list, i, e) {
		const char *fn = json_string_value(json_object_get(e, "filename"));
		const char *st = json_string_value(json_object_get(e, "stack_trace"));
		int64_t t = import_error_time(e);

		if (fn != NULL && st != NULL && t != 0 && t >= since_ms &&
		    dag_file(fn, dag_id)) {
			*at = t;
			return st;
		}
	}
	return NULL;
}

const char *
airflow_parse_token(const json_t *j)
{
	const char *t = json_string_value(json_object_get(j, "access_token"));

	return t != NULL && t[0] != '\0' ? t : NULL;
}

const char *
airflow_parse_version(const json_t *j)
{
	const char *v = json_string_value(json_object_get(j, "version"));

	return v != NULL && v[0] != '\0' ? v : NULL;
}

enum airflow_detect
airflow_detect_api(enum airflow_step asked, long http_status, bool has_version)
{
	bool ok = http_status >= 200 && http_status < 300;

	if (airflow_retryable(http_status) || http_status >= 500)
		return AIRFLOW_DETECT_RETRY;
	if (asked == AIRFLOW_STEP_VERSION) {
		if (ok)
			return has_version ? AIRFLOW_DETECT_V2 : AIRFLOW_DETECT_RETRY;
		if (http_status == 401 || http_status == 403)
			return AIRFLOW_DETECT_ASK_V1;
		return AIRFLOW_DETECT_V1;
	}
	if (ok && has_version)
		return AIRFLOW_DETECT_V1;
	if (http_status == 404)
		return AIRFLOW_DETECT_V2;
	return AIRFLOW_DETECT_GUESS_V1;
}

/* ----------------------------------------------------------------- retries */

static int
month_index(const char *m)
{
	static const char *const names[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
		"Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	int i;

	for (i = 0; i < 12; i++) {
		if (strcmp(m, names[i]) == 0)
			return i;
	}
	return -1;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian). */
static int64_t
days_from_civil(int64_t y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

long
airflow_parse_retry_after(const char *v, int64_t now_wall_ms)
{
	char wd[16], mon[4], tz[8];
	int d, y, hh, mm, ss, mi, n = 0;
	int64_t t, ms;
	const char *p;

	if (v == NULL)
		return -1;
	while (*v == ' ' || *v == '\t')
		v++;
	if (isdigit((unsigned char)*v)) {
		long long secs = 0;

		for (p = v; isdigit((unsigned char)*p); p++) {
			if (secs < 1000000000LL)
				secs = secs * 10 + (*p - '0');
		}
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p != '\0')
			return -1;
		ms = secs * 1000;
		return ms > AIRFLOW_RETRY_AFTER_MAX_MS ? AIRFLOW_RETRY_AFTER_MAX_MS : (long)ms;
	}
	/* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" */
	if (sscanf(v, "%15[A-Za-z], %d %3s %d %d:%d:%d %7s%n", wd, &d, mon, &y, &hh, &mm,
	    &ss, tz, &n) == 8 && v[n] == '\0' && strcmp(tz, "GMT") == 0) {
		/* parsed */
	} else if (sscanf(v, "%15[A-Za-z], %d-%3s-%d %d:%d:%d %7s%n", wd, &d, mon, &y, &hh,
	    &mm, &ss, tz, &n) == 8 && v[n] == '\0' && strcmp(tz, "GMT") == 0) {
		/* RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT" */
		y += y < 70 ? 2000 : (y < 100 ? 1900 : 0);
	} else if (sscanf(v, "%15s %3s %d %d:%d:%d %d%n", wd, mon, &d, &hh, &mm, &ss, &y,
	    &n) == 7 && v[n] == '\0') {
		/* asctime: "Sun Nov  6 08:49:37 1994" */
	} else
		return -1;
	if ((mi = month_index(mon)) < 0 || d < 1 || d > 31 || hh < 0 || hh > 23 || mm < 0 ||
	    mm > 59 || ss < 0 || ss > 60 || y < 1970 || y > 9999)
		return -1;
	t = days_from_civil(y, mi + 1, d) * 86400 + hh * 3600 + mm * 60 + ss;
	ms = t * 1000 - now_wall_ms;
	if (ms < 0)
		return 0;
	return ms > AIRFLOW_RETRY_AFTER_MAX_MS ? AIRFLOW_RETRY_AFTER_MAX_MS : (long)ms;
}

long
airflow_retry_delay(unsigned retry, long base_ms, long max_ms, uint64_t rnd,
    long retry_after_ms)
{
	long cap = base_ms > 0 ? base_ms : 1, d;
	unsigned i;

	if (max_ms < cap)
		max_ms = cap;
	for (i = 1; i < retry && cap < max_ms; i++)
		cap = cap > max_ms / 2 ? max_ms : cap * 2;
	if (cap > max_ms)
		cap = max_ms;
	d = (long)(rnd % ((uint64_t)cap + 1));
	if (retry_after_ms >= 0 && d < retry_after_ms)
		d = retry_after_ms;
	return d;
}
