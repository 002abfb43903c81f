/*
 * mini_airflow.h — a small asynchronous Airflow 2.x client (libevent evhttp)
 * implementing struct airflow_ops, for the scheduler's test driver and
 * benchmark only: the scheduler can be exercised end to end against the
 * simulator independently of the product's client (agents/airflow.c).
 * No retries of its own (the scheduler's backoff handles "unavailable"), no
 * TLS, admin:admin, plain http://127.0.0.1:PORT. Airflow 2.x (/api/v1, Basic)
 * or 3.x (/api/v2, a JWT fetched once at creation with a blocking libcurl
 * call — fine for a test driver, never for the product).
 *
 * Header-only (static functions); include it from one .c file.
 */
#ifndef AP_MINI_AIRFLOW_H
#define AP_MINI_AIRFLOW_H

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <curl/curl.h>
#include <jansson.h>

#include "airflow.h"
#include "util.h"

#define MINI_CONNS 32
#define MINI_API(m) ((m)->v2 ? "/api/v2" : "/api/v1")

struct mini_airflow {
	struct event_base *base;
	struct evhttp_connection *conns[MINI_CONNS];
	unsigned next;
	char host[64];
	int port;
	struct mini_req *reqs;	/* outstanding, freed at the end if never answered */
	bool v2;
	char auth[2048];	/* Authorization header of API requests */
	uint64_t http;		/* HTTP requests sent */
};

enum mini_op { MINI_DEPLOY, MINI_GET_DAG, MINI_IMPORT_ERRORS, MINI_UNPAUSE,
    MINI_TRIGGER, MINI_GET_RUN, MINI_FAIL_RUN };

struct mini_req {
	struct mini_airflow *m;
	enum mini_op op;
	airflow_cb cb;
	void *arg;
	bool cancelled;
	char *dag_id;
	char *run_id;
	bool adopted;
	bool is_paused;
	struct mini_req *prev, *next;
};

static size_t
mini_token_write(char *p, size_t size, size_t n, void *arg)
{
	ap_buf_add(arg, p, size * n);
	return size * n;
}

/* Airflow 3: POST /auth/token -> 201 {"access_token"} (blocking, once). */
static void
mini_fetch_token(struct mini_airflow *m, const char *url)
{
	CURL *c = curl_easy_init();
	struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
	struct ap_buf b;
	char *u = ap_xprintf("%s/auth/token", url);
	json_t *j;
	long code = 0;

	ap_buf_init(&b);
	curl_easy_setopt(c, CURLOPT_URL, u);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS,
	    "{\"username\": \"admin\", \"password\": \"admin\"}");
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, mini_token_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
	if (curl_easy_perform(c) != CURLE_OK)
		ap_fatal("mini_airflow: cannot reach %s", u);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	j = json_loads(b.data ? b.data : "", 0, NULL);
	if (code != 201 || !json_is_string(json_object_get(j, "access_token")))
		ap_fatal("mini_airflow: %s answered %ld", u, code);
	snprintf(m->auth, sizeof m->auth, "Bearer %s",
	    json_string_value(json_object_get(j, "access_token")));
	json_decref(j);
	ap_buf_cleanup(&b);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	free(u);
}

static struct mini_airflow *
mini_airflow_create(struct event_base *base, const char *url, bool v2)
{
	struct mini_airflow *m = ap_xcalloc(1, sizeof *m);
	unsigned i;

	m->base = base;
	m->v2 = v2;
	if (sscanf(url, "http://%63[^:]:%d", m->host, &m->port) != 2)
		ap_fatal("mini_airflow: bad url %s", url);
	if (v2)
		mini_fetch_token(m, url);
	else
		snprintf(m->auth, sizeof m->auth, "Basic YWRtaW46YWRtaW4=");
	for (i = 0; i < MINI_CONNS; i++) {
		m->conns[i] = evhttp_connection_base_new(base, NULL, m->host,
		    (unsigned short)m->port);
		evhttp_connection_set_timeout(m->conns[i], 30);
	}
	return m;
}

static void
mini_airflow_free(struct mini_airflow *m)
{
	unsigned i;

	if (m == NULL)
		return;
	for (i = 0; i < MINI_CONNS; i++)
		evhttp_connection_free(m->conns[i]);
	while (m->reqs != NULL) {
		struct mini_req *q = m->reqs;

		m->reqs = q->next;
		free(q->dag_id);
		free(q->run_id);
		free(q);
	}
	free(m);
}

static void mini_done(struct evhttp_request *req, void *arg);

static void
mini_send(struct mini_req *q, enum evhttp_cmd_type cmd, const char *path,
    const json_t *body)
{
	struct mini_airflow *m = q->m;
	struct evhttp_request *req = evhttp_request_new(mini_done, q);
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	char hostport[96];

	m->http++;
	snprintf(hostport, sizeof hostport, "%s:%d", m->host, m->port);
	evhttp_add_header(h, "Host", hostport);
	evhttp_add_header(h, "Authorization", strstr(path, "/openmetadata/") != NULL ?
	    "Basic YWRtaW46YWRtaW4=" : m->auth);
	evhttp_add_header(h, "Accept", "application/json");
	if (body != NULL) {
		char *s = json_dumps(body, JSON_COMPACT);

		char len[32];

		/* evhttp adds Content-Length for POST and PUT only. */
		snprintf(len, sizeof len, "%zu", strlen(s));
		evhttp_add_header(h, "Content-Type", "application/json");
		if (cmd != EVHTTP_REQ_POST && cmd != EVHTTP_REQ_PUT)
			evhttp_add_header(h, "Content-Length", len);
		evbuffer_add(evhttp_request_get_output_buffer(req), s, strlen(s));
		free(s);
	}
	evhttp_make_request(m->conns[m->next++ % MINI_CONNS], req, cmd, path);
}

static struct mini_req *
mini_req_new(struct mini_airflow *m, enum mini_op op, airflow_cb cb, void *arg,
    const char *dag_id, const char *run_id)
{
	struct mini_req *q = ap_xcalloc(1, sizeof *q);

	q->m = m;
	q->op = op;
	q->cb = cb;
	q->arg = arg;
	q->dag_id = dag_id ? ap_xstrdup(dag_id) : NULL;
	q->run_id = run_id ? ap_xstrdup(run_id) : NULL;
	q->next = m->reqs;
	if (m->reqs != NULL)
		m->reqs->prev = q;
	m->reqs = q;
	return q;
}

static void
mini_req_free(struct mini_req *q)
{
	if (q->prev != NULL)
		q->prev->next = q->next;
	else
		q->m->reqs = q->next;
	if (q->next != NULL)
		q->next->prev = q->prev;
	free(q->dag_id);
	free(q->run_id);
	free(q);
}

static enum airflow_run_state
mini_run_state(const char *s)
{
	if (s == NULL)
		return AIRFLOW_RUN_UNKNOWN;
	if (strcmp(s, "queued") == 0)
		return AIRFLOW_RUN_QUEUED;
	if (strcmp(s, "running") == 0)
		return AIRFLOW_RUN_RUNNING;
	if (strcmp(s, "success") == 0)
		return AIRFLOW_RUN_SUCCESS;
	if (strcmp(s, "failed") == 0)
		return AIRFLOW_RUN_FAILED;
	return AIRFLOW_RUN_UNKNOWN;
}

static void
mini_done(struct evhttp_request *req, void *arg)
{
	struct mini_req *q = arg;
	struct airflow_result res = { 0 };
	struct airflow_dag dag = { 0 };
	struct airflow_run run = { 0 };
	json_t *body = NULL;
	int code = req ? evhttp_request_get_response_code(req) : 0;
	char *import_error = NULL;

	if (q->cancelled) {
		mini_req_free(q);
		return;
	}
	if (req != NULL) {
		struct evbuffer *in = evhttp_request_get_input_buffer(req);
		size_t len = evbuffer_get_length(in);
		char *text = ap_xmalloc(len + 1);

		evbuffer_remove(in, text, len);
		text[len] = '\0';
		body = json_loads(text, JSON_DECODE_ANY, NULL);
		free(text);
	}
	res.attempts = 1;
	res.error.http_status = code;
	if (code >= 200 && code < 300)
		res.status = AIRFLOW_OK;
	else if (code == 404)
		res.status = AIRFLOW_NOT_FOUND;
	else if (code == 0 || code == 429 || code >= 500)
		res.status = AIRFLOW_UNAVAILABLE;
	else
		res.status = AIRFLOW_REJECTED;
	if (code == 0) {
		res.error.title = "connection failed";
		res.error.detail = "no answer from Airflow";
	} else if (res.status != AIRFLOW_OK) {
		res.error.title = json_string_value(json_object_get(body, "title"));
		res.error.detail = json_string_value(json_object_get(body, "detail"));
	}

	/* Multi-step operations continue here instead of answering. */
	if (q->op == MINI_TRIGGER && code == 409) {
		q->op = MINI_GET_RUN;
		q->adopted = true;
		char *path = ap_xprintf("%s/dags/%s/dagRuns/%s", MINI_API(q->m), q->dag_id, q->run_id);

		mini_send(q, EVHTTP_REQ_GET, path, NULL);
		free(path);
		json_decref(body);
		return;
	}
	if (q->op == MINI_GET_DAG && res.status == AIRFLOW_OK &&
	    json_is_true(json_object_get(body, "has_import_errors"))) {
		char *path = ap_xprintf("%s/importErrors?filename_pattern=%s",
		    MINI_API(q->m), q->dag_id);

		q->op = MINI_IMPORT_ERRORS;
		q->is_paused = json_is_true(json_object_get(body, "is_paused"));
		mini_send(q, EVHTTP_REQ_GET, path, NULL);
		free(path);
		json_decref(body);
		return;
	}

	switch (q->op) {
	case MINI_GET_DAG:
		if (res.status == AIRFLOW_OK) {
			dag.dag_id = q->dag_id;
			dag.is_paused = json_is_true(json_object_get(body, "is_paused"));
			res.dag = &dag;
		}
		break;
	case MINI_IMPORT_ERRORS:
		dag.dag_id = q->dag_id;
		dag.is_paused = q->is_paused;
		dag.has_import_errors = true;
		import_error = ap_xstrdup(json_string_value(json_object_get(json_array_get(
		    json_object_get(body, "import_errors"), 0), "stack_trace")) ?
		    json_string_value(json_object_get(json_array_get(json_object_get(body,
		    "import_errors"), 0), "stack_trace")) : "import error");
		dag.import_error = import_error;
		res.status = AIRFLOW_OK;
		res.dag = &dag;
		break;
	case MINI_TRIGGER:
	case MINI_GET_RUN:
	case MINI_FAIL_RUN:
		if (res.status == AIRFLOW_OK) {
			const char *st = json_string_value(json_object_get(body, "state"));

			run.dag_id = q->dag_id;
			run.dag_run_id = q->run_id;
			run.state = mini_run_state(st);
			run.state_text = st;
			run.adopted = q->adopted;
			res.run = &run;
		}
		break;
	default:
		res.body = body;
		break;
	}
	q->cb(&res, q->arg);
	free(import_error);
	json_decref(body);
	mini_req_free(q);
}

static struct airflow_req *
mini_deploy(void *impl, const json_t *pipeline, airflow_cb cb, void *arg)
{
	struct mini_req *q = mini_req_new(impl, MINI_DEPLOY, cb, arg, NULL, NULL);

	mini_send(q, EVHTTP_REQ_POST, q->m->v2 ? "/pluginsv2/api/v2/openmetadata/deploy" :
	    "/api/v1/openmetadata/deploy", pipeline);
	return (struct airflow_req *)q;
}

static struct airflow_req *
mini_get_dag(void *impl, const char *dag_id, airflow_cb cb, void *arg)
{
	struct mini_req *q = mini_req_new(impl, MINI_GET_DAG, cb, arg, dag_id, NULL);
	char *path = ap_xprintf("%s/dags/%s", MINI_API(q->m), dag_id);

	mini_send(q, EVHTTP_REQ_GET, path, NULL);
	free(path);
	return (struct airflow_req *)q;
}

static struct airflow_req *
mini_unpause(void *impl, const char *dag_id, airflow_cb cb, void *arg)
{
	struct mini_req *q = mini_req_new(impl, MINI_UNPAUSE, cb, arg, dag_id, NULL);
	char *path = ap_xprintf("%s/dags/%s?update_mask=is_paused", MINI_API(q->m),
	    dag_id);
	json_t *b = json_pack("{s:b}", "is_paused", 0);

	mini_send(q, EVHTTP_REQ_PATCH, path, b);
	json_decref(b);
	free(path);
	return (struct airflow_req *)q;
}

static struct airflow_req *
mini_trigger(void *impl, const char *dag_id, const char *dag_run_id,
    const json_t *conf, airflow_cb cb, void *arg)
{
	struct mini_req *q = mini_req_new(impl, MINI_TRIGGER, cb, arg, dag_id, dag_run_id);
	char *path = ap_xprintf("%s/dags/%s/dagRuns", MINI_API(q->m), dag_id);
	json_t *b = json_pack("{s:s,s:O}", "dag_run_id", dag_run_id, "conf", conf);

	if (q->m->v2)
		json_object_set_new(b, "logical_date", json_null());

	mini_send(q, EVHTTP_REQ_POST, path, b);
	json_decref(b);
	free(path);
	return (struct airflow_req *)q;
}

static struct airflow_req *
mini_get_run(void *impl, const char *dag_id, const char *dag_run_id, airflow_cb cb,
    void *arg)
{
	struct mini_req *q = mini_req_new(impl, MINI_GET_RUN, cb, arg, dag_id, dag_run_id);
	char *path = ap_xprintf("%s/dags/%s/dagRuns/%s", MINI_API(q->m), dag_id,
	    dag_run_id);

	mini_send(q, EVHTTP_REQ_GET, path, NULL);
	free(path);
	return (struct airflow_req *)q;
}

static struct airflow_req *
mini_fail_run(void *impl, const char *dag_id, const char *dag_run_id, airflow_cb cb,
    void *arg)
{
	struct mini_req *q = mini_req_new(impl, MINI_FAIL_RUN, cb, arg, dag_id, dag_run_id);
	char *path = ap_xprintf("%s/dags/%s/dagRuns/%s", MINI_API(q->m), dag_id,
	    dag_run_id);
	json_t *b = json_pack("{s:s}", "state", "failed");

	mini_send(q, EVHTTP_REQ_PATCH, path, b);
	json_decref(b);
	free(path);
	return (struct airflow_req *)q;
}

/* The answer is swallowed when it arrives (the request stays on the wire). */
static void
mini_cancel(void *impl, struct airflow_req *req)
{
	((struct mini_req *)req)->cancelled = true;
}

static bool
mini_unreachable(void *impl)
{
	return false;
}

static const struct airflow_ops mini_airflow_ops = {
	.deploy = mini_deploy,
	.get_dag = mini_get_dag,
	.unpause = mini_unpause,
	.trigger = mini_trigger,
	.get_run = mini_get_run,
	.fail_run = mini_fail_run,
	.cancel = mini_cancel,
	.unreachable = mini_unreachable,
};

#endif
