/*
 * fuzz_airflow_reply.c — libFuzzer target: whatever Airflow (or a proxy in
 * front of it) may answer, through the Airflow client's readers: the error
 * reader of both formats, the DAG, DAG run, import error and token readers,
 * the Retry-After parser, and (a JSON object body) the "airflow" configuration
 * section.
 *
 * Input: byte 0 picks the HTTP status, the rest is the body (and, up to the
 * first newline, a Retry-After value). Checks beyond "no crash, no leak, no
 * sanitizer report": an error always has a title, title and detail stay
 * within AIRFLOW_ERROR_TEXT_MAX bytes (plus "...") without control
 * characters; a Retry-After is -1 or within [0, AIRFLOW_RETRY_AFTER_MAX_MS].
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "airflow.h"
#include "airflow_proto.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const long statuses[] = { 200, 201, 400, 401, 403, 404, 409, 422, 429, 500, 502,
	503, 504, 0, 302, 418 };

static void
check_text(const char *s)
{
	size_t i, n;

	if (s == NULL)
		return;
	n = strlen(s);
	if (n > AIRFLOW_ERROR_TEXT_MAX + 3)
		abort();
	for (i = 0; i < n; i++) {
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			abort();
	}
}

/* What was redacted once holds no token any more. */
static void
redacted_stays(const char *s)
{
	char *c;

	if (s == NULL)
		return;
	c = strdup(s);
	if (c == NULL)
		abort();
	if (strcmp(airflow_redact(c), s) != 0)
		abort();
	free(c);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct airflow_error_text e;
	struct airflow_config cfg;
	struct airflow_dag dag;
	char *cause = NULL;
	struct airflow_run run;
	const char *body, *loc, *nl;
	char *ra;
	size_t len;
	long st, d;
	int64_t at;
	json_t *j;

	if (size == 0)
		return 0;
	st = statuses[data[0] % (sizeof statuses / sizeof statuses[0])];
	body = (const char *)data + 1;
	len = size - 1;

	airflow_parse_error(st, body, len, &e);
	if (e.title == NULL)
		abort();
	check_text(e.title);
	check_text(e.detail);
	redacted_stays(e.title);
	redacted_stays(e.detail);
	(void)airflow_token_rejected(st, &e);
	airflow_error_text_cleanup(&e);

	j = json_loadb(body, len, JSON_DECODE_ANY, NULL);
	if (airflow_parse_dag(j, &dag, &loc) == 0 && dag.dag_id == NULL)
		abort();
	if (airflow_parse_run(j, &run) == 0 && (run.state_text == NULL ||
	    run.state >= AIRFLOW_RUN_STATE_MAX))
		abort();
	if (airflow_pick_import_error(j, "d", loc, &at) == NULL && at != 0)
		abort();	/* a stamp without an error */
	if (at < 0)
		abort();
	at = 0;
	if (airflow_pick_new_import_error(j, "d", 1, &at) != NULL && at < 1)
		abort();
	(void)airflow_parse_token(j);
	(void)airflow_plugin_missing(st, j);
	if (json_is_object(j)) {
		if (airflow_config_from_json(j, &cfg, &cause) == 0) {
			if (cause != NULL || cfg.password != NULL)
				abort();
		} else {
			if (cause == NULL || strncmp(cause, "airflow", 7) != 0)
				abort();
			free(cause);
		}
	}
	json_decref(j);

	nl = memchr(body, '\n', len);
	ra = ap_xstrndup(body, nl != NULL ? (size_t)(nl - body) : len);
	d = airflow_parse_retry_after(ra, 1700000000000LL);
	if (d < -1 || d > AIRFLOW_RETRY_AFTER_MAX_MS)
		abort();
	free(ra);
	return 0;
}
