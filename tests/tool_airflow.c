/*
 * tool_airflow.c — drives the product's Airflow client (agents/airflow.c)
 * against a base URL, for tests/it_airflow_client.py.
 *
 * Usage: tool_airflow --url URL [--api auto|v1|v2] [--user U] [--password P]
 *            [--max-retries N] [--retry-base-ms N] [--retry-max-ms N]
 *            [--request-timeout-ms N] [--connect-timeout-ms N] [--max-in-flight N]
 *            [--ca-file F]
 *        tool_airflow --bodies      prints every request body the client builds
 *
 * Reads a script from stdin, one JSON object per line, run one line after the
 * other; a line's operations run concurrently:
 *   {"op": "deploy"|"get_dag"|"unpause"|"trigger"|"get_run"|"fail_run"|"health"|
 *          "kill"|"delete", "dag_id", "run_id", "pipeline", "conf",
 *          "errors_since" (unpause: ms since the epoch, see airflow_ops),
 *    "count": N}          N copies at once; "{i}" in dag_id/run_id is the copy's index
 *   {"op": "wait_dag", "dag_id", "timeout_ms"}   get_dag until found (every 50 ms)
 *   {"op": "wait_run", "dag_id", "run_id", "timeout_ms"}  get_run until final
 *   {"op": "sleep", "ms": N}
 *   {"op": "cancel", ...any op...}   starts the op and cancels it at once
 *   {"op": "stats"}
 * Prints one JSON line per finished operation:
 *   {"op", "i", "status", "http_status", "title", "detail", "attempts", "ms",
 *    "unreachable", "api", "dag": {...}, "run": {...}, "body": ...}
 * and {"op": "stats", ...} for stats. Exit 0 when the script ran.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <jansson.h>

#include "airflow.h"
#include "airflow_proto.h"
#include "util.h"

struct tool {
	struct event_base *base;
	struct airflow_client *c;
	const struct airflow_ops *ops;
	json_t *lines;
	size_t line;
	unsigned pending;
	struct event *next_ev;
};

struct call {
	struct tool *t;
	char *op;
	unsigned i;
	char *dag_id;
	char *run_id;
	json_t *spec;
	uint64_t started;
	uint64_t deadline;	/* wait_* */
	struct event *poll_ev;
};

static void next_line(struct tool *t);
static void call_start(struct call *k);

static char *
subst(const char *s, unsigned i)
{
	struct ap_buf b;
	const char *p;

	if (s == NULL)
		return NULL;
	ap_buf_init(&b);
	ap_buf_adds(&b, "");
	for (p = s; *p != '\0'; p++) {
		if (strncmp(p, "{i}", 3) == 0) {
			ap_buf_printf(&b, "%u", i);
			p += 2;
		} else
			ap_buf_addc(&b, *p);
	}
	return ap_buf_steal(&b, NULL);
}

static void
call_free(struct call *k)
{
	if (k->poll_ev != NULL)
		event_free(k->poll_ev);
	free(k->op);
	free(k->dag_id);
	free(k->run_id);
	json_decref(k->spec);
	free(k);
}

/* Prints j as one line and drops it (steals j). */
static void
print_json(json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT);

	printf("%s\n", s);
	fflush(stdout);
	free(s);
	json_decref(j);
}

static void
print_result(struct call *k, const struct airflow_result *res)
{
	json_t *j = json_pack("{s:s, s:i, s:s, s:I, s:I, s:I, s:b, s:s}", "op", k->op, "i",
	    (int)k->i, "status", airflow_status_name(res->status), "http_status",
	    (json_int_t)res->error.http_status, "attempts", (json_int_t)res->attempts, "ms",
	    (json_int_t)(ap_mono_ms() - k->started), "unreachable",
	    k->t->ops->unreachable(k->t->c), "api",
	    airflow_api_name(airflow_client_api(k->t->c)));

	if (res->error.title != NULL)
		json_object_set_new(j, "title", json_string(res->error.title));
	if (res->error.detail != NULL)
		json_object_set_new(j, "detail", json_string(res->error.detail));
	if (res->dag != NULL) {
		json_t *d = json_pack("{s:s?, s:b, s:b}", "dag_id", res->dag->dag_id,
		    "is_paused", res->dag->is_paused, "has_import_errors",
		    res->dag->has_import_errors);

		if (res->dag->import_error != NULL)
			json_object_set_new(d, "import_error",
			    json_string(res->dag->import_error));
		if (res->dag->import_error_at != 0)
			json_object_set_new(d, "import_error_at",
			    json_integer(res->dag->import_error_at));
		json_object_set_new(j, "dag", d);
	}
	if (res->run != NULL)
		json_object_set_new(j, "run", json_pack("{s:s?, s:s?, s:s, s:s?, s:b}",
		    "dag_id", res->run->dag_id, "dag_run_id", res->run->dag_run_id, "state",
		    airflow_run_state_name(res->run->state), "state_text",
		    res->run->state_text, "adopted", res->run->adopted));
	if (res->body != NULL)
		json_object_set(j, "body", (json_t *)res->body);
	print_json(j);
}

static void
call_done(struct call *k)
{
	struct tool *t = k->t;

	call_free(k);
	if (--t->pending == 0)
		event_active(t->next_ev, 0, 0);
}

static void
poll_cb(evutil_socket_t fd, short what, void *arg)
{
	call_start(arg);
}

static void
op_cb(const struct airflow_result *res, void *arg)
{
	struct call *k = arg;
	bool again = false;

	if (strcmp(k->op, "wait_dag") == 0)
		again = res->status == AIRFLOW_NOT_FOUND;
	else if (strcmp(k->op, "wait_run") == 0)
		again = res->status == AIRFLOW_OK && res->run->state != AIRFLOW_RUN_SUCCESS &&
		    res->run->state != AIRFLOW_RUN_FAILED;
	if (again && ap_mono_ms() < k->deadline) {
		struct timeval tv = { 0, 50000 };

		if (k->poll_ev == NULL)
			k->poll_ev = evtimer_new(k->t->base, poll_cb, k);
		evtimer_add(k->poll_ev, &tv);
		return;
	}
	print_result(k, res);
	call_done(k);
}

static void
sleep_cb(evutil_socket_t fd, short what, void *arg)
{
	call_done(arg);
}

static void
call_start(struct call *k)
{
	struct tool *t = k->t;
	const char *op = k->op;
	struct airflow_req *r = NULL;
	bool cancel = strcmp(op, "cancel") == 0;
	const json_t *conf = json_object_get(k->spec, "conf");

	if (cancel)
		op = json_string_value(json_object_get(k->spec, "what"));
	if (op == NULL)
		op = "";
	if (strcmp(op, "deploy") == 0)
		r = t->ops->deploy(t->c, json_object_get(k->spec, "pipeline"), op_cb, k);
	else if (strcmp(op, "get_dag") == 0 || strcmp(op, "wait_dag") == 0)
		r = t->ops->get_dag(t->c, k->dag_id, op_cb, k);
	else if (strcmp(op, "unpause") == 0)
		r = t->ops->unpause(t->c, k->dag_id, json_integer_value(
		    json_object_get(k->spec, "errors_since")), op_cb, k);
	else if (strcmp(op, "trigger") == 0)
		r = t->ops->trigger(t->c, k->dag_id, k->run_id, conf, op_cb, k);
	else if (strcmp(op, "get_run") == 0 || strcmp(op, "wait_run") == 0)
		r = t->ops->get_run(t->c, k->dag_id, k->run_id, op_cb, k);
	else if (strcmp(op, "fail_run") == 0)
		r = t->ops->fail_run(t->c, k->dag_id, k->run_id, op_cb, k);
	else if (strcmp(op, "health") == 0)
		r = airflow_health(t->c, op_cb, k);
	else if (strcmp(op, "kill") == 0)
		r = airflow_kill(t->c, k->dag_id, op_cb, k);
	else if (strcmp(op, "delete") == 0)
		r = airflow_delete(t->c, k->dag_id, op_cb, k);
	else
		ap_fatal("tool_airflow: unknown op '%s'", op);
	if (cancel) {
		t->ops->cancel(t->c, r);
		printf("{\"op\":\"cancel\",\"i\":%u,\"status\":\"cancelled\"}\n", k->i);
		fflush(stdout);
		call_done(k);
	}
}

static void
print_stats(struct tool *t)
{
	struct airflow_stats st;
	json_t *j, *req = json_object(), *le = json_array();
	unsigned i;

	airflow_client_stats(t->c, &st);
	for (i = 0; i < AIRFLOW_HTTP_CLASS_MAX; i++)
		json_object_set_new(req, airflow_http_class_name(i),
		    json_integer((json_int_t)st.requests[i]));
	for (i = 0; i < AIRFLOW_LATENCY_BUCKETS; i++)
		json_array_append_new(le, json_integer((json_int_t)st.latency_le[i]));
	j = json_pack("{s:s, s:o, s:I, s:I, s:b, s:o, s:I, s:I}", "op", "stats", "requests",
	    req, "retries", (json_int_t)st.retries, "breaker_opens",
	    (json_int_t)st.breaker_opens, "breaker_open", st.breaker_open, "latency_le", le,
	    "latency_count", (json_int_t)st.latency_count, "latency_sum_ms",
	    (json_int_t)st.latency_sum_ms);
	print_json(j);
}

static void
next_cb(evutil_socket_t fd, short what, void *arg)
{
	next_line(arg);
}

static void
next_line(struct tool *t)
{
	json_t *l;
	const char *op;
	unsigned n, i;

	if (t->line >= json_array_size(t->lines)) {
		event_base_loopbreak(t->base);
		return;
	}
	l = json_array_get(t->lines, t->line++);
	op = json_string_value(json_object_get(l, "op"));
	if (op == NULL)
		ap_fatal("tool_airflow: line %zu has no op", t->line);
	if (strcmp(op, "stats") == 0) {
		print_stats(t);
		event_active(t->next_ev, 0, 0);
		return;
	}
	n = json_is_integer(json_object_get(l, "count")) ?
	    (unsigned)json_integer_value(json_object_get(l, "count")) : 1;
	t->pending = n;
	for (i = 0; i < n; i++) {
		struct call *k = ap_xcalloc(1, sizeof *k);

		k->t = t;
		k->op = ap_xstrdup(op);
		k->i = i;
		k->spec = json_incref(l);
		k->dag_id = subst(json_string_value(json_object_get(l, "dag_id")), i);
		k->run_id = subst(json_string_value(json_object_get(l, "run_id")), i);
		k->started = ap_mono_ms();
		k->deadline = k->started + (json_is_integer(json_object_get(l, "timeout_ms")) ?
		    (uint64_t)json_integer_value(json_object_get(l, "timeout_ms")) : 10000);
		if (strcmp(op, "sleep") == 0) {
			long ms = (long)json_integer_value(json_object_get(l, "ms"));
			struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

			k->poll_ev = evtimer_new(t->base, sleep_cb, k);
			evtimer_add(k->poll_ev, &tv);
		} else
			call_start(k);
	}
}

/* Every body the client builds, for the schema check in it_airflow_bodies.py. */
static int
print_bodies(void)
{
	static const struct {
		enum airflow_step step;
		const char *schema_v1, *schema_v2;
	} steps[] = {
		{ AIRFLOW_STEP_UNPAUSE, "DAG", "DAGPatchBody" },
		{ AIRFLOW_STEP_PAUSE, "DAG", "DAGPatchBody" },
		{ AIRFLOW_STEP_TRIGGER, "DAGRun", "TriggerDAGRunPostBody" },
		{ AIRFLOW_STEP_FAIL_RUN, "UpdateDagRunState", "DAGRunPatchBody" },
	};
	json_t *conf = json_pack("{s:s, s:i}", "k", "v", "n", 1);
	enum airflow_api api;
	unsigned i, withconf;

	for (api = AIRFLOW_API_V1; api <= AIRFLOW_API_V2; api++) {
		for (i = 0; i < AP_ARRAY_LEN(steps); i++) {
			for (withconf = 0; withconf < 2; withconf++) {
				struct airflow_step_args a = { .dag_id = "svc_db_metadata",
					.dag_run_id = "autopilot__r1.metadata.1",
					.conf = withconf ? conf : NULL };
				struct airflow_http_req hr;
				char *cause = NULL;

				if (withconf && steps[i].step != AIRFLOW_STEP_TRIGGER)
					continue;
				if (airflow_build(steps[i].step, api, &a, &hr, &cause) != 0)
					ap_fatal("%s", cause);
				printf("{\"api\":\"%s\",\"method\":\"%s\",\"path\":\"%s\","
				    "\"schema\":\"%s\",\"body\":%s}\n", airflow_api_name(api),
				    hr.method, hr.path, api == AIRFLOW_API_V1 ?
				    steps[i].schema_v1 : steps[i].schema_v2, hr.body);
				airflow_http_req_cleanup(&hr);
			}
		}
	}
	json_decref(conf);
	return 0;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "url", required_argument, NULL, 'u' },
		{ "api", required_argument, NULL, 'a' },
		{ "user", required_argument, NULL, 'U' },
		{ "password", required_argument, NULL, 'P' },
		{ "max-retries", required_argument, NULL, 'r' },
		{ "retry-base-ms", required_argument, NULL, 'b' },
		{ "retry-max-ms", required_argument, NULL, 'm' },
		{ "request-timeout-ms", required_argument, NULL, 't' },
		{ "connect-timeout-ms", required_argument, NULL, 'c' },
		{ "max-in-flight", required_argument, NULL, 'f' },
		{ "ca-file", required_argument, NULL, 'C' },
		{ "bodies", no_argument, NULL, 'B' },
		{ NULL, 0, NULL, 0 }
	};
	struct airflow_config ac = { .username = "admin", .password = "admin" };
	struct tool t = { 0 };
	char *cause = NULL, line[1 << 16];
	int ch;

	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'u': ac.base_url = optarg; break;
		case 'a':
			ac.api = strcmp(optarg, "v1") == 0 ? AIRFLOW_API_V1 :
			    strcmp(optarg, "v2") == 0 ? AIRFLOW_API_V2 : AIRFLOW_API_AUTO;
			break;
		case 'U': ac.username = optarg; break;
		case 'P': ac.password = optarg; break;
		case 'r':
			ac.max_retries = atoi(optarg) == 0 ? AIRFLOW_RETRIES_NONE :
			    (unsigned)atoi(optarg);
			break;
		case 'b': ac.retry_base_ms = atol(optarg); break;
		case 'm': ac.retry_max_ms = atol(optarg); break;
		case 't': ac.request_timeout_ms = atol(optarg); break;
		case 'c': ac.connect_timeout_ms = atol(optarg); break;
		case 'f': ac.max_in_flight = (unsigned)atoi(optarg); break;
		case 'C': ac.ca_file = optarg; break;
		case 'B': return print_bodies();
		default:
			fprintf(stderr, "usage: tool_airflow --url URL [options] < script\n");
			return 2;
		}
	}
	t.lines = json_array();
	while (fgets(line, sizeof line, stdin) != NULL) {
		json_error_t err;
		json_t *l;

		if (line[strspn(line, " \t\r\n")] == '\0')
			continue;
		if ((l = json_loads(line, 0, &err)) == NULL)
			ap_fatal("tool_airflow: bad script line: %s", err.text);
		json_array_append_new(t.lines, l);
	}
	t.base = ap_event_base_new();
	if ((t.c = airflow_client_create(t.base, &ac, &cause)) == NULL) {
		fprintf(stderr, "tool_airflow: %s\n", cause);
		return 2;
	}
	t.ops = airflow_client_ops();
	t.next_ev = event_new(t.base, -1, 0, next_cb, &t);
	next_line(&t);
	event_base_dispatch(t.base);
	airflow_client_free(t.c);
	event_free(t.next_ev);
	event_base_free(t.base);
	json_decref(t.lines);
	return 0;
}
