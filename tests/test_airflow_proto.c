/*
 * test_airflow_proto.c — the pure half of the Airflow client: request paths
 * and bodies on both API generations, both error formats (and garbage),
 * answers, retry policy with fixed random values, Retry-After, version
 * detection, the configuration section, the DAG id rule. No sockets.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "airflow.h"
#include "airflow_proto.h"
#include "util.h"

static void
build_ok(enum airflow_step s, enum airflow_api api, const struct airflow_step_args *a,
    struct airflow_http_req *r)
{
	char *cause = NULL;

	if (airflow_build(s, api, a, r, &cause) != 0)
		fail_msg("airflow_build(%s): %s", airflow_step_name(s), cause);
}

static void
assert_body(const char *body, const char *want_json)
{
	json_t *a = json_loads(body, 0, NULL), *b = json_loads(want_json, 0, NULL);

	assert_non_null(a);
	assert_non_null(b);
	if (!json_equal(a, b))
		fail_msg("body %s, want %s", body, want_json);
	json_decref(a);
	json_decref(b);
}

static void
test_paths_v1(void **state)
{
	struct airflow_step_args a = { .dag_id = "svc_db_metadata", .dag_run_id = "r:1+x" };
	struct airflow_http_req r;

	build_ok(AIRFLOW_STEP_GET_DAG, AIRFLOW_API_V1, &a, &r);
	assert_string_equal(r.method, "GET");
	assert_string_equal(r.path, "/api/v1/dags/svc_db_metadata");
	assert_null(r.body);
	assert_int_equal(r.auth, AIRFLOW_AUTH_BASIC);
	airflow_http_req_cleanup(&r);

	build_ok(AIRFLOW_STEP_UNPAUSE, AIRFLOW_API_V1, &a, &r);
	assert_string_equal(r.method, "PATCH");
	assert_string_equal(r.path, "/api/v1/dags/svc_db_metadata?update_mask=is_paused");
	assert_body(r.body, "{\"is_paused\": false}");
	airflow_http_req_cleanup(&r);

	build_ok(AIRFLOW_STEP_PAUSE, AIRFLOW_API_V1, &a, &r);
	assert_string_equal(r.method, "PATCH");
	assert_string_equal(r.path, "/api/v1/dags/svc_db_metadata?update_mask=is_paused");
	assert_body(r.body, "{\"is_paused\": true}");
	airflow_http_req_cleanup(&r);

	build_ok(AIRFLOW_STEP_TRIGGER, AIRFLOW_API_V1, &a, &r);
	assert_string_equal(r.method, "POST");
	assert_string_equal(r.path, "/api/v1/dags/svc_db_metadata/dagRuns");
	/* 2.x: no logical_date key at all (Airflow picks now). */
	assert_body(r.body, "{\"dag_run_id\": \"r:1+x\"}");
	airflow_http_req_cleanup(&r);

	build_ok(AIRFLOW_STEP_GET_RUN, AIRFLOW_API_V1, &a, &r);
	assert_string_equal(r.path, "/api/v1/dags/svc_db_metadata/dagRuns/r%3A1%2Bx");
	airflow_http_req_cleanup(&r);

	build_ok(AIRFLOW_STEP_FAIL_RUN, AIRFLOW_API_V1, &a, &r);
	assert_string_equal(r.method, "PATCH");
	assert_string_equal(r.path, "/api/v1/dags/svc_db_metadata/dagRuns/r%3A1%2Bx");
	assert_body(r.body, "{\"state\": \"failed\"}");
	airflow_http_req_cleanup(&r);

	build_ok(AIRFLOW_STEP_IMPORT_ERRORS, AIRFLOW_API_V1, &a, &r);
	assert_true(ap_startswith(r.path, "/api/v1/importErrors?"));
	assert_null(strstr(r.path, "filename_pattern"));	/* 2.x rejects it */
	airflow_http_req_cleanup(&r);

	a.pipeline = json_object();
	build_ok(AIRFLOW_STEP_DEPLOY, AIRFLOW_API_V1, &a, &r);
	assert_string_equal(r.path, "/api/v1/openmetadata/deploy");
	assert_int_equal(r.auth, AIRFLOW_AUTH_BASIC);
	airflow_http_req_cleanup(&r);
	json_decref((json_t *)a.pipeline);
}

static void
test_paths_v2(void **state)
{
	json_t *conf = json_pack("{s:i}", "x", 1), *pipe = json_pack("{s:s}", "name", "n");
	struct airflow_step_args a = { .dag_id = "a b/c", .dag_run_id = "r1", .conf = conf,
		.pipeline = pipe, .username = "u", .password = "p\"w" };
	struct airflow_http_req r;
	char *cause = NULL;

	build_ok(AIRFLOW_STEP_GET_DAG, AIRFLOW_API_V2, &a, &r);
	assert_string_equal(r.path, "/api/v2/dags/a%20b%2Fc");
	assert_int_equal(r.auth, AIRFLOW_AUTH_BEARER);
	airflow_http_req_cleanup(&r);

	build_ok(AIRFLOW_STEP_TRIGGER, AIRFLOW_API_V2, &a, &r);
	assert_body(r.body, "{\"dag_run_id\": \"r1\", \"conf\": {\"x\": 1}, "
	    "\"logical_date\": null}");
	airflow_http_req_cleanup(&r);

	build_ok(AIRFLOW_STEP_IMPORT_ERRORS, AIRFLOW_API_V2, &a, &r);
	assert_string_equal(r.path,
	    "/api/v2/importErrors?filename_pattern=a%20b%2Fc&limit=100");
	airflow_http_req_cleanup(&r);

	build_ok(AIRFLOW_STEP_DEPLOY, AIRFLOW_API_V2, &a, &r);
	assert_string_equal(r.path, "/pluginsv2/api/v2/openmetadata/deploy");
	assert_int_equal(r.auth, AIRFLOW_AUTH_BASIC);
	assert_body(r.body, "{\"name\": \"n\"}");
	airflow_http_req_cleanup(&r);
	a.plugin_variant = 1;
	build_ok(AIRFLOW_STEP_KILL, AIRFLOW_API_V2, &a, &r);
	assert_string_equal(r.path, "/api/v2/openmetadata/kill");
	assert_body(r.body, "{\"dag_id\": \"a b/c\"}");
	airflow_http_req_cleanup(&r);
	a.plugin_variant = 2;
	build_ok(AIRFLOW_STEP_DELETE, AIRFLOW_API_V2, &a, &r);
	assert_string_equal(r.method, "DELETE");
	assert_string_equal(r.path, "/api/v1/openmetadata/delete?dag_id=a%20b%2Fc");
	airflow_http_req_cleanup(&r);
	a.plugin_variant = 3;
	assert_int_equal(airflow_build(AIRFLOW_STEP_HEALTH, AIRFLOW_API_V2, &a, &r, &cause), -1);
	assert_non_null(cause);
	free(cause);
	cause = NULL;
	a.plugin_variant = 0;

	build_ok(AIRFLOW_STEP_VERSION, AIRFLOW_API_AUTO, &a, &r);
	assert_string_equal(r.path, "/api/v2/version");
	assert_int_equal(r.auth, AIRFLOW_AUTH_NONE);
	airflow_http_req_cleanup(&r);

	build_ok(AIRFLOW_STEP_TOKEN, AIRFLOW_API_V2, &a, &r);
	assert_string_equal(r.method, "POST");
	assert_string_equal(r.path, "/auth/token");
	assert_body(r.body, "{\"username\": \"u\", \"password\": \"p\\\"w\"}");
	airflow_http_req_cleanup(&r);

	/* Missing arguments and a conf that is not an object. */
	a.dag_run_id = NULL;
	assert_int_equal(airflow_build(AIRFLOW_STEP_GET_RUN, AIRFLOW_API_V2, &a, &r, &cause),
	    -1);
	free(cause);
	cause = NULL;
	a.dag_run_id = "r";
	a.dag_id = "";
	assert_int_equal(airflow_build(AIRFLOW_STEP_GET_DAG, AIRFLOW_API_V1, &a, &r, &cause),
	    -1);
	free(cause);
	cause = NULL;
	a.dag_id = "d";
	a.conf = json_array();
	assert_int_equal(airflow_build(AIRFLOW_STEP_TRIGGER, AIRFLOW_API_V1, &a, &r, &cause),
	    -1);
	free(cause);
	json_decref((json_t *)a.conf);
	json_decref(conf);
	json_decref(pipe);
}

static void
test_escape_and_basic(void **state)
{
	char *s;

	s = airflow_escape("Az09-._~ /?%\xc3\xa9");
	assert_string_equal(s, "Az09-._~%20%2F%3F%25%C3%A9");
	free(s);
	s = airflow_basic_auth("admin", "admin");
	assert_string_equal(s, "Basic YWRtaW46YWRtaW4=");
	free(s);
	s = airflow_basic_auth("a", "");
	assert_string_equal(s, "Basic YTo=");
	free(s);
	s = airflow_basic_auth("ab", "c");
	assert_string_equal(s, "Basic YWI6Yw==");
	free(s);
}

static void
parse_err(long st, const char *body, const char *title, const char *detail)
{
	struct airflow_error_text e;

	airflow_parse_error(st, body, body != NULL ? strlen(body) : 0, &e);
	assert_non_null(e.title);
	if (title != NULL)
		assert_string_equal(e.title, title);
	if (detail == NULL)
		assert_null(e.detail);
	else {
		assert_non_null(e.detail);
		assert_string_equal(e.detail, detail);
	}
	airflow_error_text_cleanup(&e);
}

static void
test_errors(void **state)
{
	struct airflow_error_text e;
	struct ap_buf b;
	size_t i;

	/* 2.x RFC 7807. */
	parse_err(404, "{\"type\": \"https://x/NotFound\", \"title\": \"DAG not found\","
	    " \"status\": 404, \"detail\": \"DAG with dag_id: 'x' not found\"}",
	    "DAG not found", "DAG with dag_id: 'x' not found");
	/* 3.x string, object and validation array. */
	parse_err(404, "{\"detail\": \"The Dag with ID: `x` was not found\"}", "Not Found",
	    "The Dag with ID: `x` was not found");
	parse_err(409, "{\"detail\": {\"reason\": \"Unique constraint violation\"}}",
	    "Conflict", "{\"reason\":\"Unique constraint violation\"}");
	parse_err(422, "{\"detail\": [{\"type\": \"missing\", \"loc\": [\"body\","
	    " \"logical_date\"], \"msg\": \"Field required\"}]}", "Unprocessable Entity",
	    "body.logical_date: Field required");
	/* FastAPI echoes the request in "input" (a token request's password): left out. */
	parse_err(422, "{\"detail\": [{\"type\": \"missing\", \"loc\": [\"body\","
	    " \"password\"], \"msg\": \"Field required\", \"input\": {\"username\":"
	    " \"admin\", \"passwd\": \"s3cret\"}}, {\"type\": \"string_type\", \"loc\":"
	    " [\"query\", \"limit\", 0], \"msg\": \"Input should be a valid string\","
	    " \"input\": 5, \"ctx\": {}}, {\"type\": \"x\", \"loc\": [], \"msg\":"
	    " \"Value error\"}]}", "Unprocessable Entity", "body.password: Field required;"
	    " query.limit.0: Input should be a valid string; Value error");
	/* A list that is not one of FastAPI's: as it came. */
	parse_err(422, "{\"detail\": [\"a\", {\"msg\": \"b\"}]}", NULL,
	    "[\"a\",{\"msg\":\"b\"}]");
	/* The plugin. */
	parse_err(500, "{\"error\": \"An unexpected problem occurred\"}",
	    "Internal Server Error", "An unexpected problem occurred");
	/* Garbage: HTML, empty, control characters, NUL inside, JSON that is no object. */
	parse_err(502, "<html><body>Bad gateway</body></html>", "Bad Gateway",
	    "<html><body>Bad gateway</body></html>");
	parse_err(503, "", "Service Unavailable", NULL);
	parse_err(503, NULL, "Service Unavailable", NULL);
	parse_err(418, "line1\nline2\t\x01", "HTTP error", "line1 line2  ");
	/* A redirect (not followed) names what to fix. */
	parse_err(307, "", "Redirect, not followed (check airflow.url: scheme,"
	    " host, port and path prefix)", NULL);
	parse_err(400, "[1,2]", "Bad Request", NULL);
	parse_err(400, "{\"detail\": null, \"title\": 7}", "Bad Request", NULL);
	airflow_parse_error(400, "ab\0cd", 5, &e);
	assert_string_equal(e.detail, "ab");
	airflow_error_text_cleanup(&e);

	/* Huge detail: clipped, valid UTF-8 kept whole. */
	ap_buf_init(&b);
	ap_buf_adds(&b, "{\"detail\": \"");
	for (i = 0; i < 5000; i++)
		ap_buf_adds(&b, "\xc3\xa9");
	ap_buf_adds(&b, "\"}");
	airflow_parse_error(500, b.data, b.len, &e);
	assert_true(strlen(e.detail) <= AIRFLOW_ERROR_TEXT_MAX);
	assert_true(ap_endswith(e.detail, "\xc3\xa9..."));
	airflow_error_text_cleanup(&e);
	ap_buf_cleanup(&b);
	/* Huge non-JSON: an excerpt. */
	ap_buf_init(&b);
	for (i = 0; i < 100000; i++)
		ap_buf_addc(&b, 'x');
	airflow_parse_error(502, b.data, b.len, &e);
	assert_int_equal(strlen(e.detail), 200);
	airflow_error_text_cleanup(&e);
	ap_buf_cleanup(&b);

	/* A token the answer quotes back (the deployed pipeline's bot token)
	 * is redacted; words that merely start like one are kept. */
	parse_err(400, "{\"error\": \"1 validation error: input_value={'jwtToken':"
	    " 'eyJraWQiOiJHYjM4.eyJzdWIiOiJpbmdlc3Rpb24tYm90.c2lnbmF0dXJlLXBhcnQ-_x'}\"}",
	    "Bad Request", "1 validation error: input_value={'jwtToken': '[JWT"
	    " redacted]'}");
	parse_err(500, "{\"detail\": \"eyJraWQiOiJHYjM4.eyJzdWIiOiJpbmdlc3Rpb24tYm90.\"}",
	    NULL, "[JWT redacted]");
	parse_err(500, "{\"detail\": \"eyJhbGc.eyJzdWIi.sig xeyJraWQiOiJHYjM4.eyJzdWIiOiJp.s"
	    " eyJraWQiOiJHYjM4\"}", NULL, "eyJhbGc.eyJzdWIi.sig xeyJraWQiOiJHYjM4.eyJzdWIiOiJp.s"
	    " eyJraWQiOiJHYjM4");
	assert_null(airflow_redact(NULL));
	/* A token across the cut: redacted whole, none of it shown (JSON
	 * detail, clipped at AIRFLOW_ERROR_TEXT_MAX; a page, at 200). */
	{
		const char *tok = "eyJraWQiOiJHYjM4.eyJzdWIiOiJpbmdlc3Rpb24tYm90"
		    "aW5nZXN0aW9uLWJvdGluZ2VzdGlvbi1ib3Q.c2lnbmF0dXJlLXBhcnQ-_x";
		static const size_t lead[] = { 1000, 190 };
		unsigned k;

		for (k = 0; k < 2; k++) {
			ap_buf_init(&b);
			if (k == 0)
				ap_buf_adds(&b, "{\"detail\": \"");
			for (i = 0; i < lead[k]; i++)
				ap_buf_addc(&b, 'a');
			ap_buf_adds(&b, " ");
			ap_buf_adds(&b, tok);
			ap_buf_adds(&b, " and more text after it");
			if (k == 0)
				ap_buf_adds(&b, "\"}");
			airflow_parse_error(500, b.data, b.len, &e);
			assert_non_null(e.detail);
			assert_null(strstr(e.detail, "eyJ"));
			assert_true(strlen(e.detail) <= (k == 0 ?
			    AIRFLOW_ERROR_TEXT_MAX : 200));
			airflow_error_text_cleanup(&e);
			ap_buf_cleanup(&b);
		}
	}

	assert_true(airflow_token_rejected(401, NULL));
	e.title = "Forbidden";
	e.detail = "Invalid JWT token";
	assert_true(airflow_token_rejected(403, &e));
	e.detail = "Access denied to DAG";
	assert_false(airflow_token_rejected(403, &e));
	assert_false(airflow_token_rejected(404, &e));
}

static void
test_classify(void **state)
{
	static const struct { long st; enum airflow_status want; bool retry, brk; } t[] = {
		{ 0, AIRFLOW_UNAVAILABLE, true, true },
		{ 200, AIRFLOW_OK, false, false },
		{ 201, AIRFLOW_OK, false, false },
		{ 301, AIRFLOW_UNAVAILABLE, true, true },
		{ 302, AIRFLOW_UNAVAILABLE, true, true },
		{ 308, AIRFLOW_UNAVAILABLE, true, true },
		{ 400, AIRFLOW_REJECTED, false, false },
		{ 401, AIRFLOW_REJECTED, false, false },
		{ 403, AIRFLOW_REJECTED, false, false },
		{ 404, AIRFLOW_NOT_FOUND, false, false },
		{ 409, AIRFLOW_REJECTED, false, false },
		{ 422, AIRFLOW_REJECTED, false, false },
		{ 429, AIRFLOW_UNAVAILABLE, true, false },
		{ 500, AIRFLOW_UNAVAILABLE, false, false },
		{ 502, AIRFLOW_UNAVAILABLE, true, true },
		{ 503, AIRFLOW_UNAVAILABLE, true, true },
		{ 504, AIRFLOW_UNAVAILABLE, true, true },
	};
	size_t i;

	for (i = 0; i < AP_ARRAY_LEN(t); i++) {
		assert_int_equal(airflow_classify(t[i].st), t[i].want);
		assert_int_equal(airflow_retryable(t[i].st), t[i].retry);
		assert_int_equal(airflow_breaker_failure(t[i].st), t[i].brk);
	}
	assert_string_equal(airflow_api_name(AIRFLOW_API_V2), "v2");
	assert_string_equal(airflow_status_name(AIRFLOW_BAD_REPLY), "bad_reply");
	assert_string_equal(airflow_run_state_name(AIRFLOW_RUN_SUCCESS), "success");
}

/* Version detection: GET /api/v2/version, then after a 401/403 GET /api/v1/version. */
static void
test_detect(void **state)
{
	static const struct {
		enum airflow_step asked;
		long st;
		bool version;
		enum airflow_detect want;
	} t[] = {
		{ AIRFLOW_STEP_VERSION, 200, true, AIRFLOW_DETECT_V2 },
		{ AIRFLOW_STEP_VERSION, 200, false, AIRFLOW_DETECT_RETRY },	/* a portal */
		{ AIRFLOW_STEP_VERSION, 404, false, AIRFLOW_DETECT_V1 },	/* 2.x */
		{ AIRFLOW_STEP_VERSION, 405, false, AIRFLOW_DETECT_V1 },
		{ AIRFLOW_STEP_VERSION, 401, false, AIRFLOW_DETECT_ASK_V1 },	/* protected */
		{ AIRFLOW_STEP_VERSION, 403, false, AIRFLOW_DETECT_ASK_V1 },
		{ AIRFLOW_STEP_VERSION, 0, false, AIRFLOW_DETECT_RETRY },
		{ AIRFLOW_STEP_VERSION, 429, false, AIRFLOW_DETECT_RETRY },
		{ AIRFLOW_STEP_VERSION, 500, false, AIRFLOW_DETECT_RETRY },
		{ AIRFLOW_STEP_VERSION, 503, false, AIRFLOW_DETECT_RETRY },
		{ AIRFLOW_STEP_VERSION_V1, 200, true, AIRFLOW_DETECT_V1 },
		{ AIRFLOW_STEP_VERSION_V1, 404, false, AIRFLOW_DETECT_V2 },	/* 3.x */
		{ AIRFLOW_STEP_VERSION_V1, 401, false, AIRFLOW_DETECT_GUESS_V1 },	/* a proxy */
		{ AIRFLOW_STEP_VERSION_V1, 403, false, AIRFLOW_DETECT_GUESS_V1 },
		{ AIRFLOW_STEP_VERSION_V1, 200, false, AIRFLOW_DETECT_GUESS_V1 },
		{ AIRFLOW_STEP_VERSION, 302, false, AIRFLOW_DETECT_RETRY },	/* not reached */
		{ AIRFLOW_STEP_VERSION_V1, 302, false, AIRFLOW_DETECT_RETRY },
		{ AIRFLOW_STEP_VERSION_V1, 0, false, AIRFLOW_DETECT_RETRY },
		{ AIRFLOW_STEP_VERSION_V1, 429, false, AIRFLOW_DETECT_RETRY },
		{ AIRFLOW_STEP_VERSION_V1, 500, false, AIRFLOW_DETECT_RETRY },
		{ AIRFLOW_STEP_VERSION_V1, 502, false, AIRFLOW_DETECT_RETRY },
	};
	struct airflow_step_args a = { 0 };
	struct airflow_http_req r;
	size_t i;

	for (i = 0; i < AP_ARRAY_LEN(t); i++) {
		if (airflow_detect_api(t[i].asked, t[i].st, t[i].version) != t[i].want)
			fail_msg("%s answered %ld%s: got %d, want %d",
			    airflow_step_name(t[i].asked), t[i].st, t[i].version ?
			    " with a version" : "", airflow_detect_api(t[i].asked, t[i].st,
			    t[i].version), t[i].want);
	}
	/* The second question goes to 2.x's route with 2.x's credentials. */
	build_ok(AIRFLOW_STEP_VERSION_V1, AIRFLOW_API_AUTO, &a, &r);
	assert_string_equal(r.method, "GET");
	assert_string_equal(r.path, "/api/v1/version");
	assert_null(r.body);
	assert_int_equal(r.auth, AIRFLOW_AUTH_BASIC);
	airflow_http_req_cleanup(&r);
	assert_string_equal(airflow_step_name(AIRFLOW_STEP_VERSION_V1), "version_v1");
	assert_string_equal(airflow_step_name(AIRFLOW_STEP_TOKEN), "token");
}

static void
test_times(void **state)
{
	static const char *const bad[] = { "", "2026-11-25", "2026-11-25T11:46",
	    "2026-13-25T11:46:10Z", "2026-11-25T24:00:00Z", "2026-11-25T11:46:10.Z",
	    "2026-11-25T11:46:10+0", "2026-11-25T11:46:10+25:00", "2026-11-25T11:46:10 junk",
	    "20x6-11-25T11:46:10Z", "2026/11/25T11:46:10Z", "-026-11-25T11:46:10Z" };
	size_t i;

	assert_int_equal(airflow_parse_time("1970-01-01T00:00:00Z"), 0);
	assert_int_equal(airflow_parse_time("1970-01-01T00:00:01"), 1000);
	assert_int_equal(airflow_parse_time("1970-01-01 00:00:01.5"), 1500);
	assert_int_equal(airflow_parse_time("1970-01-01T01:00:00+01:00"), 0);
	assert_int_equal(airflow_parse_time("1970-01-01T00:00:00-0130"), 5400000);
	assert_int_equal(airflow_parse_time("2026-11-25T11:46:10.504999999Z"),
	    INT64_C(1795607170504));
	assert_int_equal(airflow_parse_time(NULL), -1);
	for (i = 0; i < AP_ARRAY_LEN(bad); i++)
		if (airflow_parse_time(bad[i]) != -1)
			fail_msg("'%s' was read as a time", bad[i]);
}

static void
test_answers(void **state)
{
	json_t *j;
	struct airflow_dag d;
	struct airflow_run r;
	const char *loc;
	int64_t at;

	j = json_loads("{\"dag_id\": \"d\", \"is_paused\": false, \"has_import_errors\": true,"
	    " \"fileloc\": \"/dags/d.py\"}", 0, NULL);
	assert_int_equal(airflow_parse_dag(j, &d, &loc), 0);
	assert_string_equal(d.dag_id, "d");
	assert_false(d.is_paused);
	assert_true(d.has_import_errors);
	assert_string_equal(loc, "/dags/d.py");
	json_decref(j);
	j = json_loads("{\"dag_id\": \"d\", \"is_paused\": null}", 0, NULL);
	assert_int_equal(airflow_parse_dag(j, &d, NULL), 0);
	assert_true(d.is_paused);
	assert_false(d.has_import_errors);
	json_decref(j);
	/* Fields of another type are not read as false or paused. */
	j = json_loads("{\"dag_id\": \"d\", \"is_paused\": \"no\"}", 0, NULL);
	assert_int_equal(airflow_parse_dag(j, &d, NULL), -2);
	json_decref(j);
	j = json_loads("{\"dag_id\": \"d\", \"has_import_errors\": 1}", 0, NULL);
	assert_int_equal(airflow_parse_dag(j, &d, NULL), -2);
	json_decref(j);
	j = json_loads("{\"dag_id\": \"d\", \"has_import_errors\": null}", 0, NULL);
	assert_int_equal(airflow_parse_dag(j, &d, NULL), 0);
	assert_false(d.has_import_errors);
	json_decref(j);
	j = json_loads("{\"dag_id\": 5, \"dag_run_id\": \"r\", \"state\": \"running\"}",
	    0, NULL);
	assert_int_equal(airflow_parse_run(j, &r), -1);
	json_decref(j);
	j = json_loads("{\"dag_id\": \"d\", \"dag_run_id\": [], \"state\": \"running\"}",
	    0, NULL);
	assert_int_equal(airflow_parse_run(j, &r), -1);
	json_decref(j);
	j = json_loads("{\"dag_id\": null, \"dag_run_id\": null, \"state\": \"queued\"}",
	    0, NULL);
	assert_int_equal(airflow_parse_run(j, &r), 0);
	assert_null(r.dag_id);
	json_decref(j);
	assert_int_equal(airflow_parse_dag(NULL, &d, &loc), -1);
	j = json_loads("[1]", JSON_DECODE_ANY, NULL);
	assert_int_equal(airflow_parse_dag(j, &d, &loc), -1);
	assert_int_equal(airflow_parse_run(j, &r), -1);
	json_decref(j);

	j = json_loads("{\"dag_id\": \"d\", \"dag_run_id\": \"r\", \"state\": \"running\"}", 0,
	    NULL);
	assert_int_equal(airflow_parse_run(j, &r), 0);
	assert_int_equal(r.state, AIRFLOW_RUN_RUNNING);
	assert_string_equal(r.state_text, "running");
	assert_int_equal(r.queued_ms, 0);
	assert_int_equal(r.ended_ms, 0);
	json_decref(j);
	/* Airflow's times: 3.x queued_at first, else 2.x's logical date. */
	j = json_loads("{\"state\": \"success\", \"queued_at\": \"2026-11-25T11:46:10.504Z\","
	    " \"logical_date\": null, \"end_date\": \"2026-11-25T13:46:12.75+02:00\"}", 0, NULL);
	assert_int_equal(airflow_parse_run(j, &r), 0);
	assert_int_equal(r.queued_ms, INT64_C(1795607170504));
	assert_int_equal(r.ended_ms, INT64_C(1795607172750));
	json_decref(j);
	j = json_loads("{\"state\": \"running\", \"execution_date\": \"x\","
	    " \"logical_date\": \"2026-11-25T11:46:10.504000+00:00\", \"end_date\": null}",
	    0, NULL);
	assert_int_equal(airflow_parse_run(j, &r), 0);
	assert_int_equal(r.queued_ms, INT64_C(1795607170504));
	assert_int_equal(r.ended_ms, 0);
	json_decref(j);
	j = json_loads("{\"state\": \"upstream_failed\"}", 0, NULL);
	assert_int_equal(airflow_parse_run(j, &r), 0);
	assert_int_equal(r.state, AIRFLOW_RUN_UNKNOWN);
	json_decref(j);
	j = json_loads("{\"state\": 3}", 0, NULL);
	assert_int_equal(airflow_parse_run(j, &r), -1);
	json_decref(j);

	j = json_loads("{\"import_errors\": [{\"filename\": \"/dags/other.py\", \"stack_trace\":"
	    " \"A\"}, {\"filename\": \"/dags/dd.py\", \"stack_trace\": \"B\"}, {\"filename\":"
	    " \"/dags/d.py\", \"stack_trace\": \"C\"}, {\"filename\": 1}], \"total_entries\": 3}",
	    0, NULL);
	assert_string_equal(airflow_pick_import_error(j, "d", "/dags/d.py", &at), "C");
	assert_string_equal(airflow_pick_import_error(j, "dd", NULL, &at), "B");
	assert_null(airflow_pick_import_error(j, "zz", "/dags/zz.py", &at));
	assert_int_equal(at, 0);
	json_decref(j);
	/*
	 * 3.x lists files relative to their bundle: "mysql.py" is the file of
	 * fileloc /opt/airflow/dags/mysql.py; "mysql_prod.py" (listed first,
	 * contains the DAG id) is not, and "mysql.py" is not the file of
	 * /opt/airflow/dags/my_mysql.py (which ends with it, but not at a '/').
	 */
	j = json_loads("{\"import_errors\": [{\"filename\": \"mysql_prod.py\", \"stack_trace\":"
	    " \"P\"}, {\"filename\": \"mysql.py\", \"stack_trace\": \"Y\"}, {\"filename\":"
	    " \"my_mysql.py\", \"stack_trace\": \"M\"}], \"total_entries\": 3}", 0, NULL);
	assert_string_equal(airflow_pick_import_error(j, "mysql",
	    "/opt/airflow/dags/mysql.py", &at), "Y");
	assert_string_equal(airflow_pick_import_error(j, "my_mysql",
	    "/opt/airflow/dags/my_mysql.py", &at), "M");
	/* Without fileloc: the file named after the DAG before a mere substring. */
	assert_string_equal(airflow_pick_import_error(j, "mysql", NULL, &at), "Y");
	assert_string_equal(airflow_pick_import_error(j, "mysql_p", NULL, &at), "P");
	json_decref(j);
	/*
	 * A DAG that answers 404: only its own file's error ("<dag_id>.py",
	 * never a substring), and only one stamped since the deploy (an
	 * earlier one is of the file before it, not parsed again yet).
	 */
	j = json_loads("{\"import_errors\": [{\"filename\": \"mysql_prod.py\","
	    " \"stack_trace\": \"P\", \"timestamp\": \"2026-12-07T10:00:05+00:00\"},"
	    " {\"filename\": \"/opt/dags/mysql.py\", \"stack_trace\": \"Y\","
	    " \"timestamp\": \"2026-12-07T10:00:00.500000+00:00\"}, {\"filename\":"
	    " \"/opt/dags/pg.py\", \"stack_trace\": \"G\"}], \"total_entries\": 3}",
	    0, NULL);
	assert_string_equal(airflow_pick_new_import_error(j, "mysql",
	    airflow_parse_time("2026-12-07T10:00:00Z"), &at), "Y");
	assert_int_equal(at, airflow_parse_time("2026-12-07T10:00:00.500Z"));
	assert_string_equal(airflow_pick_new_import_error(j, "mysql",
	    airflow_parse_time("2026-12-07T10:00:00.500Z"), &at), "Y");
	assert_null(airflow_pick_new_import_error(j, "mysql",
	    airflow_parse_time("2026-12-07T10:00:00.501Z"), &at));
	assert_null(airflow_pick_new_import_error(j, "mysql_p", 1, &at));
	/* No timestamp: not known to be new. */
	assert_null(airflow_pick_new_import_error(j, "pg", 1, &at));
	/* The error of a DAG Airflow has comes with its stamp, 0 for none. */
	assert_string_equal(airflow_pick_import_error(j, "mysql", "/opt/dags/mysql.py", &at),
	    "Y");
	assert_int_equal(at, airflow_parse_time("2026-12-07T10:00:00.500Z"));
	assert_string_equal(airflow_pick_import_error(j, "pg", NULL, &at), "G");
	assert_int_equal(at, 0);
	json_decref(j);

	j = json_loads("{\"access_token\": \"abc\"}", 0, NULL);
	assert_string_equal(airflow_parse_token(j), "abc");
	json_decref(j);
	j = json_loads("{\"access_token\": \"\"}", 0, NULL);
	assert_null(airflow_parse_token(j));
	json_decref(j);

	j = json_loads("{\"detail\": \"Not Found\"}", 0, NULL);
	assert_true(airflow_plugin_missing(404, j));
	json_decref(j);
	j = json_loads("{\"error\": \"DAG x not found.\"}", 0, NULL);
	assert_false(airflow_plugin_missing(404, j));
	assert_false(airflow_plugin_missing(500, NULL));
	assert_false(airflow_plugin_missing(200, j));
	json_decref(j);
	/* Airflow 3's own routes for what nothing serves. */
	j = json_loads("{\"error\": \"API route not found\"}", 0, NULL);
	assert_true(airflow_plugin_missing(404, j));
	json_decref(j);
	j = json_loads("{\"error\": \"/api/v1 has been removed in Airflow 3, please use its"
	    " upgraded version /api/v2 instead.\"}", 0, NULL);
	assert_true(airflow_plugin_missing(404, j));
	json_decref(j);
	j = json_loads("{\"detail\": \"Method Not Allowed\"}", 0, NULL);
	assert_true(airflow_plugin_missing(405, j));
	json_decref(j);
	assert_true(airflow_plugin_missing(200, NULL));		/* the UI's HTML page */
	assert_false(airflow_plugin_missing(401, NULL));
	assert_false(airflow_plugin_missing(400, NULL));
}

static void
test_retry_policy(void **state)
{
	/* Full jitter: rnd % (cap + 1); caps double from base up to max. */
	assert_int_equal(airflow_retry_delay(1, 250, 30000, 0, -1), 0);
	assert_int_equal(airflow_retry_delay(1, 250, 30000, 250, -1), 250);
	assert_int_equal(airflow_retry_delay(1, 250, 30000, 251, -1), 0);
	assert_int_equal(airflow_retry_delay(2, 250, 30000, 500, -1), 500);
	assert_int_equal(airflow_retry_delay(3, 250, 30000, UINT64_MAX, -1),
	    (long)(UINT64_MAX % 1001));
	assert_int_equal(airflow_retry_delay(20, 250, 30000, 30000, -1), 30000);
	assert_int_equal(airflow_retry_delay(200, 250, 30000, 30001, -1), 0);
	assert_int_equal(airflow_retry_delay(1000, 1, 1000, 1000, -1), 1000);
	/* Retry-After is a floor. */
	assert_int_equal(airflow_retry_delay(1, 250, 30000, 10, 2000), 2000);
	assert_int_equal(airflow_retry_delay(1, 250, 30000, 10, 0), 10);
	/* Never above the cap without Retry-After, whatever the draw. */
	for (uint64_t r = 0; r < 100000; r += 997)
		assert_true(airflow_retry_delay(4, 250, 1500, r * 2654435761u, -1) <= 1500);
}

static void
test_retry_after(void **state)
{
	/* Sun, 06 Nov 1994 08:49:37 GMT = 784111777 s. */
	int64_t now = 784111777000LL;

	assert_int_equal(airflow_parse_retry_after("3", now), 3000);
	assert_int_equal(airflow_parse_retry_after(" 0 ", now), 0);
	assert_int_equal(airflow_parse_retry_after("99999999999", now),
	    AIRFLOW_RETRY_AFTER_MAX_MS);
	assert_int_equal(airflow_parse_retry_after(NULL, now), -1);
	assert_int_equal(airflow_parse_retry_after("", now), -1);
	assert_int_equal(airflow_parse_retry_after("-1", now), -1);
	assert_int_equal(airflow_parse_retry_after("1.5", now), -1);
	assert_int_equal(airflow_parse_retry_after("soon", now), -1);
	assert_int_equal(airflow_parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now), 0);
	assert_int_equal(airflow_parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now),
	    10000);
	assert_int_equal(airflow_parse_retry_after("Sunday, 06-Nov-94 08:49:42 GMT", now),
	    5000);
	assert_int_equal(airflow_parse_retry_after("Sun Nov  6 08:49:39 1994", now), 2000);
	/* In the past: retry now. */
	assert_int_equal(airflow_parse_retry_after("Sat, 05 Nov 1994 08:49:37 GMT", now), 0);
	/* Far future: capped. */
	assert_int_equal(airflow_parse_retry_after("Mon, 07 Nov 1994 08:49:37 GMT", now),
	    AIRFLOW_RETRY_AFTER_MAX_MS);
	assert_int_equal(airflow_parse_retry_after("Sun, 06 Foo 1994 08:49:37 GMT", now), -1);
	assert_int_equal(airflow_parse_retry_after("Sun, 06 Nov 1994 08:49:37 PST", now), -1);
	assert_int_equal(airflow_parse_retry_after("Sun, 06 Nov 1994 25:49:37 GMT", now), -1);
	/* 2000-02-29 leap day. */
	assert_int_equal(airflow_parse_retry_after("Tue, 29 Feb 2000 00:00:01 GMT",
	    951782400000LL), 1000);
}

static json_t *
jl(const char *s)
{
	json_t *j = json_loads(s, 0, NULL);

	assert_non_null(j);
	return j;
}

static void
config_err(const char *text, const char *want)
{
	struct airflow_config c;
	json_t *j = jl(text);
	char *cause = NULL;

	assert_int_equal(airflow_config_from_json(j, &c, &cause), -1);
	assert_non_null(cause);
	if (strstr(cause, want) == NULL)
		fail_msg("cause '%s' lacks '%s'", cause, want);
	free(cause);
	json_decref(j);
}

static void
test_config(void **state)
{
	struct airflow_config c;
	char *cause = NULL;
	json_t *j;

	assert_int_equal(airflow_config_from_json(NULL, &c, &cause), 0);
	assert_null(c.base_url);
	assert_int_equal(c.max_in_flight, 0);

	j = jl("{\"url\": \"https://af:8080/\", \"api\": \"v2\", \"username\": \"u\","
	    " \"ca_file\": \"/etc/ca.pem\", \"connect_timeout_ms\": 100, \"request_timeout_ms\":"
	    " 2000, \"max_in_flight\": 8, \"max_retries\": 0, \"retry_base_ms\": 10,"
	    " \"retry_max_ms\": 100}");
	assert_int_equal(airflow_config_from_json(j, &c, &cause), 0);
	assert_string_equal(c.base_url, "https://af:8080/");
	assert_int_equal(c.api, AIRFLOW_API_V2);
	assert_string_equal(c.username, "u");
	assert_null(c.password);
	assert_string_equal(c.ca_file, "/etc/ca.pem");
	assert_int_equal(c.connect_timeout_ms, 100);
	assert_int_equal(c.request_timeout_ms, 2000);
	assert_int_equal(c.max_in_flight, 8);
	assert_int_equal(c.max_retries, AIRFLOW_RETRIES_NONE);
	assert_int_equal(c.retry_base_ms, 10);
	assert_int_equal(c.retry_max_ms, 100);
	assert_null(c.password_file);
	json_decref(j);

	/* The password file is named, not read: the server reads it unless
	 * AUTOPILOT_AIRFLOW_PASSWORD overrides it. */
	j = json_pack("{s:s}", "password_file", "/nonexistent/pw");
	assert_int_equal(airflow_config_from_json(j, &c, &cause), 0);
	assert_string_equal(c.password_file, "/nonexistent/pw");
	assert_null(c.password);
	json_decref(j);

	config_err("{\"max_in_flight\": 0}", "airflow.max_in_flight: must be a positive");
	config_err("{\"max_in_flight\": \"8\"}", "airflow.max_in_flight");
	config_err("{\"api\": \"v3\"}", "airflow.api:");
	config_err("{\"url\": \"ftp://x\"}", "airflow.url:");
	config_err("{\"url\": 3}", "airflow.url:");
	config_err("{\"password\": \"x\"}", "airflow.password:");
	config_err("{\"pasword_file\": \"x\"}", "airflow.pasword_file: unknown key");
	config_err("{\"connect_timeout_ms\": -1}", "airflow.connect_timeout_ms:");
	config_err("{\"max_retries\": 1000}", "airflow.max_retries:");
	config_err("{\"retry_base_ms\": 100, \"retry_max_ms\": 10}", "airflow.retry_max_ms:");
	config_err("{\"password_file\": \"\"}", "airflow.password_file:");
	config_err("{\"password_file\": 1}", "airflow.password_file:");
	config_err("[]", "airflow:");
}

static void
test_dag_id(void **state)
{
	char *s = airflow_dag_id_from_name("svc.db/metadata  agent");

	assert_string_equal(s, "svc_db_metadata_agent");
	free(s);
	s = airflow_dag_id_from_name("a-b_c");
	assert_string_equal(s, "a-b_c");
	free(s);
	s = airflow_dag_id_from_name("\xc3\xa9x..");
	assert_string_equal(s, "_x_");
	free(s);
}

static void
test_client_config_errors(void **state)
{
	struct airflow_config c = { .base_url = "localhost:8080" };
	char *cause = NULL;

	assert_null(airflow_client_create(NULL, &c, &cause));
	assert_non_null(strstr(cause, "airflow.url"));
	free(cause);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_paths_v1),
		cmocka_unit_test(test_paths_v2),
		cmocka_unit_test(test_escape_and_basic),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_classify),
		cmocka_unit_test(test_detect),
		cmocka_unit_test(test_answers),
		cmocka_unit_test(test_times),
		cmocka_unit_test(test_retry_policy),
		cmocka_unit_test(test_retry_after),
		cmocka_unit_test(test_config),
		cmocka_unit_test(test_dag_id),
		cmocka_unit_test(test_client_config_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
