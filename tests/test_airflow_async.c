/*
 * test_airflow_async.c — the Airflow client against a small Airflow on the
 * same loop: answers read on the client's worker thread are classified as
 * before, and a request cancelled, or a client freed, while its answer is
 * being read calls nobody back and leaves nothing behind. Likewise for a
 * deploy whose body is being written on the worker.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "airflow.h"
#include "util.h"

#define RUNS_V1		"/api/v1/dags/d/dagRuns"
#define RUNS_V2		"/api/v2/dags/d/dagRuns"
#define BIG_PAD		300000		/* numbers in a big answer's conf */
#define WAIT_MS		20000

/* ----------------------------------------------------------------- Airflow */

struct fake {
	struct event_base *base;
	struct evhttp *http;
	int port;
	char *down;			/* a large 503 error */
	unsigned flaky;			/* 503s answered to dagRuns/flaky */
	unsigned gateway;		/* 502s answered to dagRuns/gateway */
	unsigned tokens;		/* POST /auth/token */
	unsigned rejected;		/* 403s answered to dagRuns/tok */
	unsigned deploys;		/* POST .../openmetadata/deploy */
	char *deployed;			/* the last one's body */
	unsigned held;			/* requests left unanswered (held) */
	bool hold_version;		/* GET /api/v2/version is held */
	bool hold_token;		/* POST /auth/token is held */
	bool token_page;		/* ... answers 200 with a page */
};

static void
answer(struct evhttp_request *req, int code, const char *body)
{
	struct evbuffer *out = evbuffer_new();

	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
	    "application/json");
	evbuffer_add(out, body, strlen(body));
	evhttp_send_reply(req, code, NULL, out);
	evbuffer_free(out);
}

static void
answer_run(struct evhttp_request *req, const char *run_id)
{
	char *body = ap_xprintf("{\"dag_id\": \"d\", \"dag_run_id\": \"%s\","
	    " \"state\": \"success\", \"queued_at\": \"2026-11-25T11:46:10.504000+00:00\","
	    " \"end_date\": \"2026-11-25T11:46:20Z\"}", run_id);

	answer(req, 200, body);
	free(body);
}

static char *padded(const char *, const char *);

static void
fake_route(struct evhttp_request *req, void *arg)
{
	struct fake *f = arg;
	const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	const char *run = NULL;

	if (ap_startswith(path, RUNS_V1 "/"))
		run = path + strlen(RUNS_V1 "/");
	/* Held: never answered (freed with its connection). */
	if ((run != NULL && strcmp(run, "held") == 0) ||
	    (f->hold_version && strcmp(path, "/api/v2/version") == 0) ||
	    (f->hold_token && strcmp(path, "/auth/token") == 0)) {
		f->held++;
		return;
	}
	if (strcmp(path, "/api/v1/openmetadata/deploy") == 0 && cmd == EVHTTP_REQ_POST) {
		struct evbuffer *in = evhttp_request_get_input_buffer(req);
		size_t n = evbuffer_get_length(in);

		f->deploys++;
		free(f->deployed);
		f->deployed = ap_xmalloc(n + 1);
		evbuffer_remove(in, f->deployed, n);
		f->deployed[n] = '\0';
		answer(req, 200, "{\"message\": \"deployed\", \"dag_id\": \"d\"}");
	}
	else if (ap_startswith(path, "/api/v1/dags/") && cmd == EVHTTP_REQ_PATCH) {
		/* Unpausing: the answer each DAG name asks for. */
		const char *dag = path + strlen("/api/v1/dags/");
		char *body = ap_xprintf("{\"dag_id\": \"%s\", \"is_paused\": %s}", dag,
		    strcmp(dag, "paused") == 0 ? "true" : strcmp(dag, "unsaid") == 0 ?
		    "null" : "false");

		answer(req, 200, strcmp(dag, "html") == 0 ? "<html>Sign in</html>" :
		    strcmp(dag, "empty") == 0 ? "{}" : body);
		free(body);
	}
	else if (strcmp(path, RUNS_V1) == 0 && cmd == EVHTTP_REQ_POST)
		answer(req, 409, "{\"title\": \"Conflict\", \"detail\": \"exists\","
		    " \"status\": 409}");
	else if (run != NULL && ap_startswith(run, "big")) {
		/* The run asked about: an answer about another is refused. */
		char *head = ap_xprintf("{\"dag_id\": \"d\", \"dag_run_id\": \"%s\","
		    " \"state\": \"running\", \"conf\": {\"pad\": ", run);
		char *body = padded(head, "}}");

		answer(req, 200, body);
		free(body);
		free(head);
	}
	else if (run != NULL && strcmp(run, "notjson") == 0)
		answer(req, 200, "<html>not JSON</html>");
	else if (run != NULL && strcmp(run, "bomb") == 0) {
		/* Small on the wire, huge as a tree: not read. */
		struct ap_buf b;
		unsigned i;

		ap_buf_init(&b);
		ap_buf_addc(&b, '[');
		for (i = 0; i < 70000; i++)
			ap_buf_adds(&b, i > 0 ? ",{}" : "{}");
		ap_buf_addc(&b, ']');
		answer(req, 200, b.data);
		ap_buf_cleanup(&b);
	}
	else if (run != NULL && strcmp(run, "other") == 0)
		answer(req, 200, "{\"dag_id\": \"d\", \"dag_run_id\": \"elses\","
		    " \"state\": \"success\"}");
	else if (run != NULL && strcmp(run, "notrun") == 0)
		answer(req, 200, "{\"x\": 1}");
	else if (run != NULL && strcmp(run, "gone") == 0)
		answer(req, 404, "{\"title\": \"DAGRun not found\", \"detail\": \"no run gone\","
		    " \"status\": 404}");
	else if (run != NULL && strcmp(run, "bad") == 0)
		answer(req, 400, "{\"title\": \"Bad Request\", \"detail\": \"nope\"}");
	else if (run != NULL && strcmp(run, "down") == 0)
		answer(req, 503, f->down);
	else if (run != NULL && strcmp(run, "slow") == 0) {
		/* Down, and asks for a minute before the next request. */
		evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "60");
		answer(req, 503, "{\"detail\": \"come back later\"}");
	}
	else if (run != NULL && strcmp(run, "flaky") == 0 && f->flaky++ == 0) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "0");
		answer(req, 503, "{\"detail\": \"busy\"}");
	} else if (run != NULL && strcmp(run, "gateway") == 0 && f->gateway++ == 0) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "0");
		answer(req, 502, "<html>Bad Gateway</html>");
	} else if (run != NULL)
		answer_run(req, run);
	else if (strcmp(path, "/auth/token") == 0) {
		f->tokens++;
		answer(req, f->token_page ? 200 : 201, f->token_page ?
		    "<html>Sign in</html>" : "{\"access_token\": \"tok\"}");
	} else if (strcmp(path, RUNS_V2 "/tok") == 0 && f->rejected++ == 0)
		answer(req, 403, "{\"detail\": \"Invalid token\"}");
	else if (strcmp(path, RUNS_V2 "/tok") == 0)
		answer_run(req, "tok");
	else
		answer(req, 404, "{\"detail\": \"no such route\"}");
}

/* head, a JSON array of BIG_PAD numbers, tail: a new string. */
static char *
padded(const char *head, const char *tail)
{
	struct ap_buf b;
	unsigned i;

	ap_buf_init(&b);
	ap_buf_adds(&b, head);
	ap_buf_adds(&b, "[");
	for (i = 0; i < BIG_PAD; i++)
		ap_buf_adds(&b, i > 0 ? ",1" : "1");
	ap_buf_adds(&b, "]");
	ap_buf_adds(&b, tail);
	return ap_buf_steal(&b, NULL);
}

static void
fake_start(struct fake *f)
{
	struct evhttp_bound_socket *bs;
	struct sockaddr_in sin;
	socklen_t len = sizeof sin;

	memset(f, 0, sizeof *f);
	f->base = ap_event_base_new();
	f->http = evhttp_new(f->base);
	bs = evhttp_bind_socket_with_handle(f->http, "127.0.0.1", 0);
	assert_non_null(bs);
	assert_int_equal(getsockname(evhttp_bound_socket_get_fd(bs),
	    (struct sockaddr *)&sin, &len), 0);
	f->port = ntohs(sin.sin_port);
	evhttp_set_gencb(f->http, fake_route, f);
	evhttp_set_allowed_methods(f->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST |
	    EVHTTP_REQ_PATCH);

	f->down = padded("{\"title\": \"Service Unavailable\", \"status\": 503,"
	    " \"detail\": \"down\", \"extra\": ", "}");
}

static void
fake_stop(struct fake *f)
{
	evhttp_free(f->http);
	event_base_free(f->base);
	free(f->down);
	free(f->deployed);
}

/* A client of the fake: retries up to max_retries (backoff from 1 ms to
 * retry_max_ms), at most max_in_flight attempts at once (0: the default). */
static struct airflow_client *
client_new_cfg(struct fake *f, enum airflow_api api, long retry_max_ms,
    unsigned max_retries, unsigned max_in_flight)
{
	struct airflow_config cfg = { 0 };
	struct airflow_client *c;
	char *url = ap_xprintf("http://127.0.0.1:%d", f->port), *cause = NULL;

	cfg.base_url = url;
	cfg.api = api;
	cfg.username = "admin";
	cfg.password = "admin";
	cfg.retry_base_ms = 1;
	cfg.retry_max_ms = retry_max_ms;
	cfg.max_retries = max_retries;
	cfg.max_in_flight = max_in_flight;
	c = airflow_client_create(f->base, &cfg, &cause);
	assert_null(cause);
	assert_non_null(c);
	free(url);
	return c;
}

static struct airflow_client *
client_new_retries(struct fake *f, enum airflow_api api, long retry_max_ms,
    unsigned max_retries)
{
	return client_new_cfg(f, api, retry_max_ms, max_retries, 0);
}

/* A client of at most max_in_flight attempts at once, without retries. */
static struct airflow_client *
client_new_slots(struct fake *f, enum airflow_api api, unsigned max_in_flight)
{
	return client_new_cfg(f, api, 5, 0, max_in_flight);
}

static struct airflow_client *
client_new(struct fake *f, enum airflow_api api)
{
	return client_new_retries(f, api, 5, 0);
}

/* ----------------------------------------------------------------- results */

struct call {
	const char *name;
	int calls;
	enum airflow_status status;
	long http_status;
	unsigned attempts;
	bool maybe_delivered;
	char *title, *detail;
	char *run_id;
	enum airflow_run_state state;
	bool adopted;
	int64_t queued_ms, ended_ms;
	char *body;
	/* Cancels these (not yet called back) when called back. */
	struct call *cancel;
	struct airflow_req **reqs;
	unsigned ncancel;
	struct airflow_client *client;
};

static unsigned ncalls;

static char *
dup_or_null(const char *s)
{
	return s != NULL ? ap_xstrdup(s) : NULL;
}

static void
call_cb(const struct airflow_result *res, void *arg)
{
	struct call *k = arg;
	unsigned i;

	k->calls++;
	ncalls++;
	k->status = res->status;
	k->http_status = res->error.http_status;
	k->attempts = res->attempts;
	k->maybe_delivered = res->maybe_delivered;
	k->title = dup_or_null(res->error.title);
	k->detail = dup_or_null(res->error.detail);
	if (res->run != NULL) {
		k->run_id = dup_or_null(res->run->dag_run_id);
		k->state = res->run->state;
		k->adopted = res->run->adopted;
		k->queued_ms = res->run->queued_ms;
		k->ended_ms = res->run->ended_ms;
	}
	if (res->body != NULL)
		k->body = json_dumps(res->body, JSON_COMPACT | JSON_SORT_KEYS);
	for (i = 0; i < k->ncancel; i++) {
		if (k->cancel[i].calls == 0)
			airflow_client_ops()->cancel(k->client, k->reqs[i]);
	}
}

static void
call_cleanup(struct call *k)
{
	free(k->title);
	free(k->detail);
	free(k->run_id);
	free(k->body);
}

/* Runs the loop until n callbacks have run in all. */
static void
wait_calls(struct fake *f, unsigned n)
{
	uint64_t end = ap_mono_ms() + WAIT_MS;

	while (ncalls < n) {
		assert_true(ap_mono_ms() < end);
		event_base_loop(f->base, EVLOOP_ONCE);
	}
}

/* Runs the loop until the client has counted n 2xx answers. */
static void
wait_answers(struct fake *f, struct airflow_client *c, uint64_t n)
{
	uint64_t end = ap_mono_ms() + WAIT_MS;
	struct airflow_stats st;

	for (;;) {
		airflow_client_stats(c, &st);
		if (st.requests[AIRFLOW_HTTP_2XX] >= n)
			return;
		assert_true(ap_mono_ms() < end);
		event_base_loop(f->base, EVLOOP_ONCE);
	}
}

static struct airflow_req *
get_run(struct airflow_client *c, const char *run, struct call *k)
{
	k->name = run;
	return airflow_client_ops()->get_run(c, "d", run, call_cb, k);
}

/* ----------------------------------------------------------------- tests */

/* Every kind of answer, many at once, ends as it did when read on the loop. */
static void
test_answers_classified(void **state)
{
	const struct airflow_ops *ops = airflow_client_ops();
	struct fake f;
	struct airflow_client *c;
	struct call ok[20], big, notjson, notrun, other, bomb, gone, bad, flaky, trig,
	    dep, gw;
	json_t *pipeline = json_pack("{s:s}", "name", "d");
	char name[20][16];
	unsigned i;

	(void)state;
	fake_start(&f);
	c = client_new(&f, AIRFLOW_API_V1);
	memset(ok, 0, sizeof ok);
	memset(&big, 0, sizeof big);
	memset(&notjson, 0, sizeof notjson);
	memset(&notrun, 0, sizeof notrun);
	memset(&other, 0, sizeof other);
	memset(&bomb, 0, sizeof bomb);
	memset(&gone, 0, sizeof gone);
	memset(&bad, 0, sizeof bad);
	memset(&flaky, 0, sizeof flaky);
	memset(&gw, 0, sizeof gw);
	memset(&trig, 0, sizeof trig);
	memset(&dep, 0, sizeof dep);
	ncalls = 0;

	for (i = 0; i < 20; i++) {
		snprintf(name[i], sizeof name[i], "ok-%u", i);
		get_run(c, name[i], &ok[i]);
	}
	get_run(c, "big-0", &big);
	get_run(c, "notjson", &notjson);
	get_run(c, "notrun", &notrun);
	get_run(c, "other", &other);
	get_run(c, "bomb", &bomb);
	get_run(c, "gone", &gone);
	get_run(c, "bad", &bad);
	get_run(c, "flaky", &flaky);
	get_run(c, "gateway", &gw);
	ops->trigger(c, "d", "r-409", NULL, call_cb, &trig);
	ops->deploy(c, pipeline, call_cb, &dep);
	json_decref(pipeline);
	wait_calls(&f, 31);

	for (i = 0; i < 20; i++) {
		assert_int_equal(ok[i].calls, 1);
		assert_int_equal(ok[i].status, AIRFLOW_OK);
		assert_string_equal(ok[i].run_id, name[i]);
		assert_int_equal(ok[i].state, AIRFLOW_RUN_SUCCESS);
		assert_true(ok[i].queued_ms == 1795607170504LL);
		assert_true(ok[i].ended_ms == 1795607180000LL);
		assert_false(ok[i].adopted);
	}
	assert_int_equal(big.status, AIRFLOW_OK);
	assert_string_equal(big.run_id, "big-0");
	assert_int_equal(big.state, AIRFLOW_RUN_RUNNING);

	assert_int_equal(notjson.status, AIRFLOW_BAD_REPLY);
	assert_string_equal(notjson.detail, "the answer is not JSON");
	assert_int_equal(notjson.http_status, 200);
	assert_int_equal(notrun.status, AIRFLOW_BAD_REPLY);
	assert_string_equal(notrun.detail,
	    "the answer does not have the fields the API promises");
	assert_int_equal(other.status, AIRFLOW_BAD_REPLY);
	assert_string_equal(other.detail, "the answer is about DAG run 'elses' of"
	    " DAG 'd', not run 'other' of DAG 'd'");
	assert_int_equal(bomb.status, AIRFLOW_BAD_REPLY);
	assert_string_equal(bomb.detail, "the answer holds more than 65536 JSON"
	    " objects and arrays (not read)");

	assert_int_equal(gone.status, AIRFLOW_NOT_FOUND);
	assert_int_equal(gone.http_status, 404);
	assert_string_equal(gone.title, "DAGRun not found");
	assert_string_equal(gone.detail, "no run gone");
	assert_int_equal(bad.status, AIRFLOW_REJECTED);
	assert_string_equal(bad.title, "Bad Request");
	assert_string_equal(bad.detail, "nope");
	assert_int_equal(bad.attempts, 1);

	assert_int_equal(flaky.status, AIRFLOW_OK);
	assert_int_equal(flaky.attempts, 2);
	assert_string_equal(flaky.run_id, "flaky");
	/* A 5xx may come from a proxy that passed the request on. */
	assert_true(flaky.maybe_delivered);
	assert_int_equal(gw.status, AIRFLOW_OK);
	assert_int_equal(gw.attempts, 2);
	assert_true(gw.maybe_delivered);

	assert_int_equal(trig.status, AIRFLOW_OK);
	assert_true(trig.adopted);
	assert_string_equal(trig.run_id, "r-409");
	assert_int_equal(trig.attempts, 2);

	assert_int_equal(dep.status, AIRFLOW_OK);
	assert_string_equal(dep.body, "{\"dag_id\":\"d\",\"message\":\"deployed\"}");

	airflow_client_free(c);
	for (i = 0; i < 20; i++)
		call_cleanup(&ok[i]);
	call_cleanup(&big);
	call_cleanup(&notjson);
	call_cleanup(&notrun);
	call_cleanup(&other);
	call_cleanup(&bomb);
	call_cleanup(&gone);
	call_cleanup(&bad);
	call_cleanup(&flaky);
	call_cleanup(&gw);
	call_cleanup(&trig);
	call_cleanup(&dep);
	fake_stop(&f);
}

/* Unpausing is done only by an answer with the DAG, not paused: a 2xx page
 * (a portal's sign-in), an object without the DAG, or the DAG still said
 * paused is a bad reply (the scheduler looks again). Airflow 2's nullable
 * is_paused left null is not read as paused. */
static void
test_unpause_answers(void **state)
{
	const struct airflow_ops *ops = airflow_client_ops();
	static const char *const dags[] = { "html", "empty", "paused", "fine",
	    "unsaid" };
	static const enum airflow_status want[] = { AIRFLOW_BAD_REPLY,
	    AIRFLOW_BAD_REPLY, AIRFLOW_BAD_REPLY, AIRFLOW_OK, AIRFLOW_OK };
	struct call k[5];
	struct fake f;
	struct airflow_client *c;
	unsigned i;

	(void)state;
	fake_start(&f);
	c = client_new(&f, AIRFLOW_API_V1);
	memset(k, 0, sizeof k);
	ncalls = 0;
	for (i = 0; i < 5; i++)
		ops->unpause(c, dags[i], 0, call_cb, &k[i]);
	wait_calls(&f, 5);
	for (i = 0; i < 5; i++) {
		assert_int_equal(k[i].calls, 1);
		if (k[i].status != want[i])
			fail_msg("unpause %s: status %d, not %d (%s: %s)",
			    dags[i], k[i].status, want[i], k[i].title,
			    k[i].detail);
	}
	assert_string_equal(k[0].detail, "the answer is not JSON");
	assert_string_equal(k[1].detail,
	    "the answer does not have the fields the API promises");
	assert_string_equal(k[2].detail,
	    "the answer to unpausing the DAG shows it still paused");
	airflow_client_free(c);
	for (i = 0; i < 5; i++)
		call_cleanup(&k[i]);
	fake_stop(&f);
}

/* Airflow 3: a 403 whose error (read off the loop) names the token renews it. */
static void
test_token_rejected_read(void **state)
{
	struct fake f;
	struct airflow_client *c;
	struct call k;

	(void)state;
	fake_start(&f);
	c = client_new(&f, AIRFLOW_API_V2);
	memset(&k, 0, sizeof k);
	ncalls = 0;
	get_run(c, "tok", &k);
	wait_calls(&f, 1);
	assert_int_equal(k.status, AIRFLOW_OK);
	assert_string_equal(k.run_id, "tok");
	assert_int_equal(k.attempts, 2);
	/* Sent again after a new login: the first was refused, not lost. A
	 * 4xx says the request was not taken. */
	assert_false(k.maybe_delivered);
	assert_int_equal(f.tokens, 2);
	assert_int_equal(f.rejected, 2);
	airflow_client_free(c);
	call_cleanup(&k);
	fake_stop(&f);
}

/* Airflow 3's login answered 2xx without a token (a sign-in portal's
 * page): the request that needed it is refused with the login named, not
 * left as an unreadable answer of its own, and the next request within
 * the retry interval does not log in again. */
static void
test_token_page_refused(void **state)
{
	struct fake f;
	struct airflow_client *c;
	struct call k[2];
	struct airflow_stats st;
	unsigned i;

	(void)state;
	fake_start(&f);
	f.token_page = true;
	c = client_new(&f, AIRFLOW_API_V2);
	memset(k, 0, sizeof k);
	ncalls = 0;
	for (i = 0; i < 2; i++) {
		get_run(c, "tok", &k[i]);
		wait_calls(&f, i + 1);
		assert_int_equal(k[i].status, AIRFLOW_REJECTED);
		assert_int_equal(k[i].http_status, 200);
		assert_non_null(strstr(k[i].detail, "Airflow 3's login (POST"
		    " /auth/token) answered HTTP 200 without an access_token"));
	}
	assert_int_equal(f.tokens, 1);
	airflow_client_stats(c, &st);
	assert_true(st.login_refused);
	airflow_client_free(c);
	for (i = 0; i < 2; i++)
		call_cleanup(&k[i]);
	fake_stop(&f);
}

/*
 * Cancelled after its answer came and before it was read: no callback. The
 * loop turn that takes an answer in cannot also hand it back read, so the
 * cancel below always lands while the answer is with the worker; the next
 * request's answer is read after it, so when that one is called back the
 * cancelled one's job has come back too.
 */
static void
test_cancel_while_reading(void **state)
{
	struct fake f;
	struct airflow_client *c;
	struct airflow_req *r;
	struct call big, next;

	(void)state;
	fake_start(&f);
	c = client_new(&f, AIRFLOW_API_V1);
	memset(&big, 0, sizeof big);
	memset(&next, 0, sizeof next);
	ncalls = 0;
	r = get_run(c, "big-0", &big);
	wait_answers(&f, c, 1);
	assert_int_equal(big.calls, 0);
	airflow_client_ops()->cancel(c, r);
	get_run(c, "ok-1", &next);
	wait_calls(&f, 1);
	assert_int_equal(next.calls, 1);
	assert_int_equal(next.status, AIRFLOW_OK);
	assert_int_equal(big.calls, 0);
	airflow_client_free(c);
	call_cleanup(&next);
	fake_stop(&f);
}

/* The first callback cancels every other request, wherever each one is. */
static void
test_cancel_from_callback(void **state)
{
	struct fake f;
	struct airflow_client *c;
	struct call k[24], last;
	struct airflow_req *reqs[24];
	char name[24][16];
	unsigned i, called = 0;

	(void)state;
	fake_start(&f);
	c = client_new(&f, AIRFLOW_API_V1);
	memset(k, 0, sizeof k);
	memset(&last, 0, sizeof last);
	ncalls = 0;
	for (i = 0; i < 24; i++) {
		snprintf(name[i], sizeof name[i], i % 2 ? "big-%u" : "ok-%u", i);
		reqs[i] = get_run(c, name[i], &k[i]);
		k[i].cancel = k;
		k[i].reqs = reqs;
		k[i].ncancel = 24;
		k[i].client = c;
	}
	wait_calls(&f, 1);
	/* Read after whatever the others left with the worker. */
	get_run(c, "ok-last", &last);
	wait_calls(&f, 2);
	assert_int_equal(last.calls, 1);
	for (i = 0; i < 24; i++) {
		assert_true(k[i].calls <= 1);
		called += k[i].calls;
	}
	assert_int_equal(called, 1);
	airflow_client_free(c);
	for (i = 0; i < 24; i++)
		call_cleanup(&k[i]);
	call_cleanup(&last);
	fake_stop(&f);
}

/*
 * Airflow down, its 503s large enough to take a while to read: the breaker
 * opens, and a probe's turn that comes while an answer is being read is
 * still taken, so every retry is sent (none waits for a probe that never
 * goes out and ends as "Circuit breaker open").
 */
static void
test_breaker_probe_while_reading(void **state)
{
	struct fake f;
	struct airflow_client *c;
	struct call k;

	(void)state;
	fake_start(&f);
	c = client_new_retries(&f, AIRFLOW_API_V1, 1, 12);
	memset(&k, 0, sizeof k);
	ncalls = 0;
	get_run(c, "down", &k);
	wait_calls(&f, 1);
	assert_int_equal(k.status, AIRFLOW_UNAVAILABLE);
	assert_int_equal(k.http_status, 503);
	assert_string_equal(k.title, "Service Unavailable");
	assert_int_equal(k.attempts, 13);
	airflow_client_free(c);
	call_cleanup(&k);
	fake_stop(&f);
}

/* Freed with answers being read: nobody is called back, nothing leaks. */
static void
test_free_while_reading(void **state)
{
	struct fake f;
	struct airflow_client *c;
	struct call k[4];
	char name[4][16];
	unsigned i;

	(void)state;
	fake_start(&f);
	c = client_new(&f, AIRFLOW_API_V1);
	memset(k, 0, sizeof k);
	ncalls = 0;
	for (i = 0; i < 4; i++) {
		snprintf(name[i], sizeof name[i], "big-%u", i);
		get_run(c, name[i], &k[i]);
	}
	wait_answers(&f, c, 1);
	airflow_client_free(c);
	assert_int_equal(ncalls, 0);
	/* Nothing of the client is left on the loop. */
	event_base_loop(f.base, EVLOOP_NONBLOCK);
	assert_int_equal(ncalls, 0);
	fake_stop(&f);
}

/* A pipeline large enough that writing it takes a while: name, padding. */
static json_t *
big_pipeline(const char *name)
{
	char *text = padded("{\"pad\": ", "}");
	json_t *doc = json_loads(text, 0, NULL);

	assert_non_null(doc);
	json_object_set_new(doc, "name", json_string(name));
	free(text);
	return doc;
}

/*
 * The body is written on the worker from the caller's document, which the
 * caller dropped at once: Airflow gets exactly what json_dumps makes of it.
 */
static void
test_deploy_body_written(void **state)
{
	struct fake f;
	struct airflow_client *c;
	struct call k;
	json_t *p = big_pipeline("p1");
	char *want = json_dumps(p, JSON_COMPACT);

	(void)state;
	fake_start(&f);
	c = client_new(&f, AIRFLOW_API_V1);
	memset(&k, 0, sizeof k);
	ncalls = 0;
	airflow_client_ops()->deploy(c, p, call_cb, &k);
	json_decref(p);
	wait_calls(&f, 1);
	assert_int_equal(k.status, AIRFLOW_OK);
	assert_int_equal(f.deploys, 1);
	assert_string_equal(f.deployed, want);
	airflow_client_free(c);
	call_cleanup(&k);
	free(want);
	fake_stop(&f);
}

/*
 * Cancelled while its body is being written: never sent, no callback. The
 * worker writes bodies in turn, so once the second deploy is called back the
 * first one's job has come back too.
 */
static void
test_cancel_while_writing(void **state)
{
	struct fake f;
	struct airflow_client *c;
	struct airflow_req *r;
	struct call first, second;
	json_t *p1 = big_pipeline("p1"), *p2 = big_pipeline("p2");

	(void)state;
	fake_start(&f);
	c = client_new(&f, AIRFLOW_API_V1);
	memset(&first, 0, sizeof first);
	memset(&second, 0, sizeof second);
	ncalls = 0;
	r = airflow_client_ops()->deploy(c, p1, call_cb, &first);
	airflow_client_ops()->deploy(c, p2, call_cb, &second);
	json_decref(p1);
	json_decref(p2);
	airflow_client_ops()->cancel(c, r);
	wait_calls(&f, 1);
	assert_int_equal(second.calls, 1);
	assert_int_equal(second.status, AIRFLOW_OK);
	assert_int_equal(first.calls, 0);
	assert_int_equal(f.deploys, 1);
	assert_non_null(strstr(f.deployed, "\"name\":\"p2\""));
	airflow_client_free(c);
	call_cleanup(&second);
	fake_stop(&f);
}

/* Freed with deploy bodies being written: nothing sent, nobody called back. */
static void
test_free_while_writing(void **state)
{
	struct fake f;
	struct airflow_client *c;
	struct call k[3];
	json_t *p;
	unsigned i;

	(void)state;
	fake_start(&f);
	c = client_new(&f, AIRFLOW_API_V1);
	memset(k, 0, sizeof k);
	ncalls = 0;
	for (i = 0; i < 3; i++) {
		p = big_pipeline("p");
		airflow_client_ops()->deploy(c, p, call_cb, &k[i]);
		json_decref(p);
	}
	airflow_client_free(c);
	event_base_loop(f.base, EVLOOP_NONBLOCK);
	assert_int_equal(ncalls, 0);
	assert_int_equal(f.deploys, 0);
	fake_stop(&f);
}

/*
 * A request bounded in time (ops->limit) ends with its last failure when
 * the next retry would wait past the bound: a Retry-After of a minute does
 * not hold it. With the breaker open (five such answers in a row), a bounded
 * request's wait for the probe ends with the bound too.
 */
static void
test_limit_ends_waits(void **state)
{
	struct fake f;
	struct airflow_client *c;
	struct call k[7];
	struct airflow_req *q;
	uint64_t t0;
	unsigned i;

	(void)state;
	memset(k, 0, sizeof k);
	fake_start(&f);
	c = client_new_retries(&f, AIRFLOW_API_V1, 5, 5);
	ncalls = 0;
	for (i = 0; i < 5; i++) {
		t0 = ap_mono_ms();
		q = get_run(c, "slow", &k[i]);
		airflow_client_ops()->limit(c, q, 300);
		wait_calls(&f, i + 1);
		assert_int_equal(k[i].status, AIRFLOW_UNAVAILABLE);
		assert_int_equal(k[i].attempts, 1);
		if (i < 4) {
			assert_int_equal(k[i].http_status, 503);
			assert_string_equal(k[i].detail, "come back later");
		} else	/* the fifth opened the breaker: its retry waited,
			 * and says what the failures were */
			assert_string_equal(k[i].detail, "Airflow is unreachable (the"
			    " last failure: HTTP 503); out of time waiting for the"
			    " probe request");
		assert_true(ap_mono_ms() - t0 < 5000);
	}
	assert_true(airflow_client_ops()->unreachable(c));
	t0 = ap_mono_ms();
	q = get_run(c, "r1", &k[5]);
	airflow_client_ops()->limit(c, q, 200);
	wait_calls(&f, 6);
	assert_int_equal(k[5].status, AIRFLOW_UNAVAILABLE);
	assert_non_null(strstr(k[5].detail, "out of time waiting for the probe"));
	assert_true(ap_mono_ms() - t0 >= 150 && ap_mono_ms() - t0 < 5000);
	airflow_client_free(c);

	/* Unbounded, the same answer is retried after the minute it asks. */
	c = client_new_retries(&f, AIRFLOW_API_V1, 5, 1);
	q = get_run(c, "slow", &k[6]);
	t0 = ap_mono_ms();
	while (ap_mono_ms() - t0 < 500)
		event_base_loop(f.base, EVLOOP_NONBLOCK);
	assert_int_equal(k[6].calls, 0);
	airflow_client_free(c);
	for (i = 0; i < 7; i++)
		call_cleanup(&k[i]);
	fake_stop(&f);
}

/* Runs the loop for ms. */
static void
spin(struct fake *f, uint64_t ms)
{
	uint64_t t0 = ap_mono_ms();

	while (ap_mono_ms() - t0 < ms)
		event_base_loop(f->base, EVLOOP_NONBLOCK);
}

static unsigned guard_asked;

static bool
guard_no(void *arg)
{
	guard_asked++;
	return *(bool *)arg;
}

/*
 * A request whose owner no longer wants it is not sent again: the guard is
 * asked before the retry of a 503, and "no" ends it there, one attempt
 * made; "yes" lets the retry go.
 */
static void
test_guard_stops_retry(void **state)
{
	const struct airflow_ops *ops = airflow_client_ops();
	struct fake f;
	struct airflow_client *c;
	struct call k[2];
	bool ok[2] = { false, true };
	unsigned i;

	(void)state;
	memset(k, 0, sizeof k);
	fake_start(&f);
	c = client_new_retries(&f, AIRFLOW_API_V1, 5, 3);
	ncalls = 0;
	for (i = 0; i < 2; i++) {
		f.flaky = 0;		/* the first answer is a 503 */
		guard_asked = 0;
		ops->guard(c, get_run(c, "flaky", &k[i]), guard_no, &ok[i]);
		wait_calls(&f, i + 1);
		assert_int_equal(guard_asked, 1);
	}
	assert_int_equal(k[0].status, AIRFLOW_UNAVAILABLE);
	assert_int_equal(k[0].attempts, 1);
	assert_string_equal(k[0].title, "Not sent again");
	assert_int_equal(k[1].status, AIRFLOW_OK);
	assert_int_equal(k[1].attempts, 2);
	assert_string_equal(k[1].run_id, "flaky");
	airflow_client_free(c);
	for (i = 0; i < 2; i++)
		call_cleanup(&k[i]);

	/* A first send that waits for the one slot is asked as it leaves the
	 * queue: "no" and it is never sent; "yes" and it goes. */
	c = client_new_slots(&f, AIRFLOW_API_V1, 1);
	memset(k, 0, sizeof k);
	ncalls = 0;
	for (i = 0; i < 2; i++) {
		struct airflow_req *held = get_run(c, "held", &k[i]);

		guard_asked = 0;
		ops->guard(c, get_run(c, i == 0 ? "r2" : "r3", &k[i]), guard_no, &ok[i]);
		spin(&f, 50);
		assert_int_equal(guard_asked, 0);	/* still queued */
		ops->cancel(c, held);
		wait_calls(&f, i + 1);
		assert_int_equal(guard_asked, 1);
	}
	assert_int_equal(k[0].status, AIRFLOW_UNAVAILABLE);
	assert_int_equal(k[0].attempts, 0);
	assert_int_equal(k[0].http_status, 0);
	assert_string_equal(k[0].title, "Not sent again");
	assert_int_equal(k[1].status, AIRFLOW_OK);
	assert_string_equal(k[1].run_id, "r3");
	airflow_client_free(c);
	for (i = 0; i < 2; i++)
		call_cleanup(&k[i]);
	fake_stop(&f);
}

/*
 * The breaker's probe, queued for a slot, is refused by its guard as it
 * leaves the queue: the probe is released, and the next request probes
 * (before, the breaker stayed open with nothing left to probe: every later
 * request waited out its time, "Circuit breaker open").
 */
static void
test_guard_releases_probe(void **state)
{
	const struct airflow_ops *ops = airflow_client_ops();
	struct fake f;
	struct airflow_client *c;
	struct call held[2], down[5], probe, next;
	struct airflow_req *h[2] = { NULL, NULL }, *q;
	bool no = false;
	unsigned i;

	(void)state;
	memset(held, 0, sizeof held);
	memset(down, 0, sizeof down);
	memset(&probe, 0, sizeof probe);
	memset(&next, 0, sizeof next);
	fake_start(&f);
	c = client_new_cfg(&f, AIRFLOW_API_V1, 5, AIRFLOW_RETRIES_NONE, 2);
	ncalls = 0;
	/* One slot held; five 503s through the other open the breaker, the
	 * second slot held behind the last of them. */
	h[0] = get_run(c, "held", &held[0]);
	for (i = 0; i < 5; i++) {
		get_run(c, "down", &down[i]);
		if (i == 4)
			h[1] = get_run(c, "held", &held[1]);
		wait_calls(&f, i + 1);
		assert_int_equal(down[i].status, AIRFLOW_UNAVAILABLE);
	}
	assert_true(ops->unreachable(c));
	spin(&f, 50);			/* the probe's turn */
	q = get_run(c, "r2", &probe);	/* the probe, queued for a slot */
	ops->guard(c, q, guard_no, &no);
	spin(&f, 50);
	assert_int_equal(probe.calls, 0);
	ops->cancel(c, h[1]);		/* it leaves the queue: "no" */
	wait_calls(&f, 6);
	assert_string_equal(probe.title, "Not sent again");
	ops->cancel(c, h[0]);
	get_run(c, "r3", &next);	/* probes, and Airflow is back */
	wait_calls(&f, 7);
	assert_int_equal(next.status, AIRFLOW_OK);
	assert_string_equal(next.run_id, "r3");
	assert_false(ops->unreachable(c));
	airflow_client_free(c);
	for (i = 0; i < 5; i++)
		call_cleanup(&down[i]);
	call_cleanup(&held[0]);
	call_cleanup(&held[1]);
	call_cleanup(&probe);
	call_cleanup(&next);
	fake_stop(&f);
}

/* Asks for run in c, bounded by ms; checks that it ends "Out of time" with
 * a detail holding what, no sooner than the bound and long before
 * request_timeout_ms (30 s). */
static void
check_out_of_time(struct fake *f, struct airflow_client *c, const char *run,
    int64_t ms, const char *what)
{
	struct call k = { 0 };
	uint64_t t0 = ap_mono_ms(), took;
	unsigned before = ncalls;

	airflow_client_ops()->limit(c, get_run(c, run, &k), ms);
	wait_calls(f, before + 1);
	took = ap_mono_ms() - t0;
	assert_int_equal(k.calls, 1);
	assert_int_equal(k.status, AIRFLOW_UNAVAILABLE);
	assert_string_equal(k.title, "Out of time");
	assert_non_null(strstr(k.detail, what));
	assert_true(took + 5 >= (uint64_t)ms && took < 5000);
	call_cleanup(&k);
}

/*
 * The bound ends what no retry timer covers: an attempt Airflow does not
 * answer (dropped; the next request is answered), a request queued behind
 * max_in_flight, and waits for version detection and for a token (unbounded,
 * that wait goes on: request_timeout_ms is 30 s). A request whose bound has
 * passed by the time it could be sent (its deploy body written on the
 * worker) is not sent.
 */
static void
test_limit_ends_unanswered(void **state)
{
	struct fake f;
	struct airflow_client *c;
	struct call k[3], d = { 0 };
	struct airflow_req *q;
	struct airflow_stats st;
	json_t *p = big_pipeline("p2");
	char *net;
	unsigned i;

	(void)state;
	memset(k, 0, sizeof k);
	fake_start(&f);
	c = client_new_slots(&f, AIRFLOW_API_V1, 1);
	ncalls = 0;
	check_out_of_time(&f, c, "held", 300, "waiting for Airflow's answer");
	assert_int_equal(f.held, 1);
	/* Counted as an attempt without an answer, and said as the last one. */
	airflow_client_stats(c, &st);
	assert_int_equal(st.requests[AIRFLOW_HTTP_NETWORK], 1);
	net = airflow_client_network_error(c, 0);
	assert_non_null(net);
	assert_non_null(strstr(net, "no answer before the request's time ran out"));
	free(net);
	/* The slot is free again: an answered request goes through. */
	get_run(c, "r1", &k[0]);
	wait_calls(&f, ncalls + 1);
	assert_int_equal(k[0].status, AIRFLOW_OK);
	/* One slot, held by an unbounded request: a bounded one behind it
	 * gives up its wait for the slot, and is never sent. */
	q = get_run(c, "held", &k[1]);
	check_out_of_time(&f, c, "r2", 200, "waiting for a free connection");
	assert_int_equal(f.held, 2);
	spin(&f, 300);
	assert_int_equal(k[1].calls, 0);
	airflow_client_ops()->cancel(c, q);
	airflow_client_free(c);

	f.hold_version = true;
	c = client_new_slots(&f, AIRFLOW_API_AUTO, 8);
	check_out_of_time(&f, c, "r3", 200, "API version to be detected");
	airflow_client_free(c);
	f.hold_version = false;

	f.hold_token = true;
	c = client_new_slots(&f, AIRFLOW_API_V2, 8);
	check_out_of_time(&f, c, "r4", 200, "access token");
	/* Unbounded, the same wait goes on. */
	get_run(c, "r5", &k[2]);
	spin(&f, 500);
	assert_int_equal(k[2].calls, 0);
	airflow_client_free(c);
	f.hold_token = false;

	/* Past its bound when its body has been written: never sent. */
	c = client_new(&f, AIRFLOW_API_V1);
	airflow_client_ops()->limit(c, airflow_client_ops()->deploy(c, p, call_cb,
	    &d), 0);
	wait_calls(&f, ncalls + 1);
	assert_int_equal(d.status, AIRFLOW_UNAVAILABLE);
	assert_string_equal(d.detail, "out of time before the request could be sent");
	assert_int_equal(d.attempts, 0);
	assert_int_equal(f.deploys, 0);
	airflow_client_free(c);
	call_cleanup(&d);
	json_decref(p);
	for (i = 0; i < 3; i++)
		call_cleanup(&k[i]);
	fake_stop(&f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_answers_classified),
		cmocka_unit_test(test_unpause_answers),
		cmocka_unit_test(test_token_page_refused),
		cmocka_unit_test(test_token_rejected_read),
		cmocka_unit_test(test_cancel_while_reading),
		cmocka_unit_test(test_cancel_from_callback),
		cmocka_unit_test(test_breaker_probe_while_reading),
		cmocka_unit_test(test_free_while_reading),
		cmocka_unit_test(test_deploy_body_written),
		cmocka_unit_test(test_cancel_while_writing),
		cmocka_unit_test(test_free_while_writing),
		cmocka_unit_test(test_limit_ends_waits),
		cmocka_unit_test(test_limit_ends_unanswered),
		cmocka_unit_test(test_guard_stops_retry),
		cmocka_unit_test(test_guard_releases_probe),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
