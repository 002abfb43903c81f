/*
 * airflow.c — the asynchronous Airflow client (airflow.h) over http.c.
 *
 * Each operation is one struct airflow_req that walks through one or more
 * steps (airflow_proto.h): trigger may continue with get_run after a 409,
 * get_dag with importErrors, unpause (on a DAG with import errors) with a
 * pause and importErrors, and unpause asked for it (errors_since) after a
 * 404 with importErrors. Before its first API step a request may wait
 * for version detection (api "auto") or for the Airflow 3 JWT; while the
 * circuit breaker is open it waits for the single probe in flight. Every
 * attempt goes through req_attempt(); every answer comes back to http_done();
 * every request ends in req_finish(), which defers the user's callback to its
 * own zero timer, so a callback never runs inside an operation call or inside
 * another callback, and the request is freed only after its callback returned.
 *
 * Version detection and token fetches are internal requests (same retries,
 * same breaker) whose callbacks release the requests waiting for them.
 * Detection may take two questions (GET /api/v2/version, then, after a 401
 * or 403, GET /api/v1/version); the second request replaces the first as
 * c->detect, so there is one detection at a time and its waiters are
 * released or failed once, by whichever answer decides.
 *
 * An answer's body is read on the client's worker thread (api/workq.h):
 * http_done() notes what the answer says without it (stats, breaker) and
 * hands the body over; reply_done() is the rest of http_done() once the
 * reply is parsed, back on the loop. A request freed meanwhile leaves its
 * job behind, which then frees only itself. Replies are freed on the worker
 * too, once the loop is done with them.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/event_struct.h>

#include "airflow.h"
#include "airflow_proto.h"
#include "http.h"
#include "log.h"
#include "util.h"
#include "workq.h"

/* Consecutive failed attempts (network, 502-504) that open the breaker. */
#define AIRFLOW_BREAKER_THRESHOLD 5
/* How long a login Airflow 3 refused is not tried again (start_token()). */
#define AIRFLOW_LOGIN_RETRY_MS 30000

const long airflow_latency_bounds_ms[AIRFLOW_LATENCY_BUCKETS - 1] = {
	5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000 };

static const char *const http_class_names[] = { "2xx", "3xx", "4xx", "5xx", "network" };

const char *
airflow_http_class_name(enum airflow_http_class k)
{
	return (unsigned)k < AIRFLOW_HTTP_CLASS_MAX ? http_class_names[k] : "?";
}

enum req_timer { T_NONE, T_RETRY, T_BREAKER_WAIT, T_OUT_OF_TIME, T_FINISH };

TAILQ_HEAD(airflow_reqq, airflow_req);

/*
 * An answer being read off the loop. The job owns the body and, once read,
 * the reply and what was taken out of it, until reply_done() hands them to
 * the request (or drops them, the request gone).
 */
struct reply_job {
	struct workq_job job;		/* first: the callbacks cast back */
	struct airflow_req *q;		/* NULL once q is freed */
	struct airflow_client *c;
	bool note_later;		/* the breaker counts it once read */
	enum airflow_step step;
	long status;
	bool permanent;
	bool was_probe;
	long retry_after_ms;		/* -1: no Retry-After */
	char *body;			/* taken from the response */
	size_t body_len;
	/* Read on the worker: */
	json_t *reply;
	struct airflow_error_text err;	/* a non-2xx answer's error */
	struct airflow_run run;		/* a 2xx answer of a run step */
	bool run_ok;
	bool bloated;			/* too many JSON values to read */
};

/*
 * A deploy's IngestionPipeline being serialised off the loop. The job holds
 * a reference to the document (which nobody changes any more) and drops it
 * on the worker, the tree freed there too.
 */
struct body_job {
	struct workq_job job;		/* first: the callbacks cast back */
	struct airflow_req *q;		/* NULL once q is freed */
	json_t *doc;
	char *text;
};

/* A reply the loop is done with, freed on the worker. */
struct drop_job {
	struct workq_job job;		/* first: the callbacks cast back */
	json_t *reply;
};

struct airflow_req {
	struct airflow_client *c;
	TAILQ_ENTRY(airflow_req) all;		/* c->reqs */
	TAILQ_ENTRY(airflow_req) wait;		/* in *waitq */
	struct airflow_reqq *waitq;		/* what it waits for, or NULL */
	enum airflow_step step;
	airflow_cb cb;
	void *arg;
	bool internal;				/* version detection or token fetch */

	char *dag_id;
	char *run_id;
	char *pipeline;				/* deploy: serialised (smaller than a copy) */
	json_t *conf;
	unsigned plugin_variant;

	unsigned retries;			/* of the current step */
	bool token_retried;
	unsigned token_gen;			/* of the token the attempt carried */
	struct http_req *http;
	struct reply_job *parse;		/* its answer is being read */
	struct body_job *body;			/* deploy: its body being written */
	bool is_probe;
	bool was_probe;				/* its last answer was the probe's */
	long retry_after_ms;			/* of its last answer; -1: none */
	bool presence_check;			/* q is c->presence */
	bool noted;				/* the breaker counted its answer */
	uint64_t deadline;			/* ap_mono_ms(); 0: none (op_limit) */
	bool (*guard)(void *);			/* asked before a later send (op_guard) */
	void *guard_arg;
	bool wait_cut;				/* its breaker wait ends at deadline */
	long last_http;				/* the last attempt's HTTP status */
	const char *sent_method;		/* at log.level debug: what the */
	char *sent_path;			/* attempt asked, logged with its answer */
	struct event timer;
	enum req_timer timer_kind;

	/* The outcome, owned here until the callback returned. */
	struct airflow_result res;
	struct airflow_dag dag;
	struct airflow_run run;
	bool run_ok;				/* run was read from reply */
	bool bloated;				/* reply left unread: reply_bloated() */
	struct airflow_error_text err;
	json_t *reply;
	json_t *dag_reply;			/* DAG answer kept across importErrors */
	char *import_error;
	bool repaused;				/* unpause: a broken DAG paused again */
	int64_t errors_since;			/* unpause: see airflow_ops */
	bool absent;				/* ... and it answered 404 */
	bool adopted;
};

struct airflow_client {
	struct event_base *base;
	struct http_client *http;
	struct workq *wq;			/* reads answers; NULL: on the loop */
	bool closing;				/* being freed: answers are dropped */
	char *net_error;			/* the last attempt without an answer: why */
	char *login_refused;			/* token_done(): what to fix */
	uint64_t login_refused_ms;		/* ... when Airflow said so */
	long login_refused_status;		/* ... with this status */
	struct event *login_ev;			/* login_refused_cb */
	uint64_t net_error_ms;			/* and when it ended */
	struct airflow_config cfg;		/* defaults applied; strings below */
	char *base_url;
	char *username;
	char *password;
	char *ca_file;
	enum airflow_api api;
	unsigned plugin_variant;		/* first plugin prefix worth trying */
	char *basic;				/* "Authorization: Basic ..." */
	char *bearer;				/* "Authorization: Bearer ...", or NULL */
	/* Header sets by auth kind and whether a body is sent, built when first
	 * needed; the bearer ones are dropped with their token. */
	struct http_headers *headers[AIRFLOW_AUTH_BEARER + 1][2];
	unsigned token_gen;
	struct airflow_req *detect;		/* version detection in progress */
	long detect_v2_status;			/* /api/v2/version's 401/403, while
						 * /api/v1/version is asked */
	struct airflow_req *token;		/* token fetch in progress */
	struct airflow_req *presence;		/* presence check in progress */
	uint64_t presence_at;			/* its last verdict (ap_mono_ms), 0 none */
	bool presence_there;			/* ... Airflow answers behind the URL */
	int presence_said;			/* the verdict last logged: -1 none,
						 * 0 absent, 1 there */
	struct airflow_reqq api_waiters;
	struct airflow_reqq token_waiters;
	struct airflow_reqq presence_waiters;	/* 404s the check decides */
	struct airflow_reqq breaker_waiters;
	struct airflow_reqq reqs;
	unsigned fails;				/* consecutive breaker failures */
	long fail_status;			/* the last one's HTTP status (0:
						 * no answer, net_error says why) */
	bool open;
	bool probe_ready;			/* the next attempt may probe */
	unsigned probe_fails;
	struct airflow_req *probe;
	struct event probe_timer;
	uint64_t rng;
	/* Stats; latency per bucket (not cumulative). */
	uint64_t n_class[AIRFLOW_HTTP_CLASS_MAX];
	uint64_t n_retries;
	uint64_t n_opens;
	uint64_t lat_bucket[AIRFLOW_LATENCY_BUCKETS];
	uint64_t lat_sum;
};

static void req_attempt(struct airflow_req *q);
static void req_timer_cb(evutil_socket_t fd, short what, void *arg);
static void reply_drop(struct airflow_client *c, json_t *reply);

static uint64_t
rng_next(struct airflow_client *c)
{
	uint64_t x = c->rng;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	c->rng = x;
	return x * 0x2545F4914F6CDD1DULL;
}

static void
timer_arm(struct airflow_req *q, enum req_timer kind, long ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	q->timer_kind = kind;
	evtimer_add(&q->timer, &tv);
}

static void
timer_disarm(struct airflow_req *q)
{
	if (q->timer_kind != T_NONE) {
		evtimer_del(&q->timer);
		q->timer_kind = T_NONE;
	}
}

static void
wait_on(struct airflow_req *q, struct airflow_reqq *list)
{
	q->waitq = list;
	TAILQ_INSERT_TAIL(list, q, wait);
}

static void
wait_leave(struct airflow_req *q)
{
	if (q->waitq != NULL) {
		TAILQ_REMOVE(q->waitq, q, wait);
		q->waitq = NULL;
	}
}

static struct airflow_req *
req_new(struct airflow_client *c, enum airflow_step step, airflow_cb cb, void *arg,
    const char *dag_id, const char *run_id)
{
	struct airflow_req *q = ap_xcalloc(1, sizeof *q);

	q->c = c;
	q->step = step;
	q->cb = cb;
	q->arg = arg;
	q->dag_id = dag_id != NULL ? ap_xstrdup(dag_id) : NULL;
	q->run_id = run_id != NULL ? ap_xstrdup(run_id) : NULL;
	q->plugin_variant = c->plugin_variant;
	evtimer_assign(&q->timer, c->base, req_timer_cb, q);
	TAILQ_INSERT_TAIL(&c->reqs, q, all);
	return q;
}

static void
req_free(struct airflow_req *q)
{
	struct airflow_client *c = q->c;

	TAILQ_REMOVE(&c->reqs, q, all);
	wait_leave(q);
	timer_disarm(q);
	if (q->http != NULL)
		http_cancel(c->http, q->http);
	if (q->parse != NULL)
		q->parse->q = NULL;	/* the job frees itself when read */
	if (q->body != NULL)
		q->body->q = NULL;	/* likewise once written */
	if (c->probe == q)
		c->probe = NULL;
	if (c->detect == q)
		c->detect = NULL;
	if (c->token == q)
		c->token = NULL;
	if (c->presence == q)
		c->presence = NULL;
	free(q->dag_id);
	free(q->run_id);
	free(q->sent_path);
	free(q->pipeline);
	json_decref(q->conf);
	airflow_error_text_cleanup(&q->err);
	reply_drop(c, q->reply);
	reply_drop(c, q->dag_reply);
	free(q->import_error);
	free(q);
}

/* Sets q's error text (new copies). */
static void
req_error(struct airflow_req *q, const char *title, const char *detail)
{
	airflow_error_text_cleanup(&q->err);
	q->err.title = title != NULL ? ap_xstrdup(title) : NULL;
	q->err.detail = detail != NULL ? ap_xstrdup(detail) : NULL;
}

/* Ends q: the callback runs from q's timer on a later loop turn. */
static void
req_finish(struct airflow_req *q, enum airflow_status st, long http_status)
{
	if (q->absent && st != AIRFLOW_OK) {
		/* The DAG's 404 stands, whatever became of the look at the
		 * import errors. */
		st = AIRFLOW_NOT_FOUND;
		http_status = 404;
		req_error(q, "Not Found", "the DAG is not in Airflow (not parsed"
		    " yet)");
	}
	wait_leave(q);
	timer_disarm(q);
	q->res.status = st;
	q->res.error.http_status = st == AIRFLOW_OK ? 0 : http_status;
	q->res.error.title = st == AIRFLOW_OK ? NULL : q->err.title;
	q->res.error.detail = st == AIRFLOW_OK ? NULL : q->err.detail;
	q->res.body = q->reply;
	timer_arm(q, T_FINISH, 0);
}

/* Fails every request waiting on list with src's error. */
static void
fail_waiters(struct airflow_reqq *list, const struct airflow_result *src)
{
	struct airflow_req *q;

	while ((q = TAILQ_FIRST(list)) != NULL) {
		wait_leave(q);
		req_error(q, src->error.title, src->error.detail);
		req_finish(q, src->status == AIRFLOW_OK ? AIRFLOW_BAD_REPLY : src->status,
		    src->error.http_status);
	}
}

/* Sends every request waiting on list again (none calls back synchronously). */
static void
release_waiters(struct airflow_reqq *list)
{
	struct airflow_reqq tmp = TAILQ_HEAD_INITIALIZER(tmp);
	struct airflow_req *q;

	/* Move them out first: a request may have to wait on the same list again. */
	while ((q = TAILQ_FIRST(list)) != NULL) {
		wait_leave(q);
		timer_disarm(q);
		wait_on(q, &tmp);
	}
	while ((q = TAILQ_FIRST(&tmp)) != NULL) {
		wait_leave(q);
		req_attempt(q);
	}
}

static void
wipe_free(char *s)
{
	if (s != NULL) {
		memset(s, 0, strlen(s));
		free(s);
	}
}

/* Replaces the bearer token (NULL: none until the next login). */
static void
bearer_set(struct airflow_client *c, const char *tok)
{
	wipe_free(c->bearer);
	c->bearer = tok != NULL ? ap_xprintf("Authorization: Bearer %s", tok) : NULL;
	http_headers_free(c->headers[AIRFLOW_AUTH_BEARER][0]);
	http_headers_free(c->headers[AIRFLOW_AUTH_BEARER][1]);
	c->headers[AIRFLOW_AUTH_BEARER][0] = c->headers[AIRFLOW_AUTH_BEARER][1] = NULL;
}

/* The header lines of a request (shared, borrowed). */
static struct http_headers *
client_headers(struct airflow_client *c, enum airflow_auth auth, bool body)
{
	struct http_headers **hh = &c->headers[auth][body];
	const char *lines[4];
	unsigned n = 0;

	if (*hh == NULL) {
		if (auth == AIRFLOW_AUTH_BASIC)
			lines[n++] = c->basic;
		else if (auth == AIRFLOW_AUTH_BEARER)
			lines[n++] = c->bearer;
		lines[n++] = "Accept: application/json";
		if (body)
			lines[n++] = "Content-Type: application/json";
		lines[n] = NULL;
		*hh = http_headers_create(lines);
	}
	return *hh;
}

/* True if a wait of ms from now ends within q's time (op_limit). */
static bool
req_time_left(const struct airflow_req *q, long ms)
{
	return q->deadline == 0 || ap_mono_ms() + (uint64_t)ms < q->deadline;
}

/* A wait of up to ms, cut to what is left of q's time. */
static long
req_wait_ms(const struct airflow_req *q, long ms)
{
	uint64_t now = ap_mono_ms();

	if (q->deadline == 0)
		return ms;
	if (now >= q->deadline)
		return 0;
	return q->deadline - now < (uint64_t)ms ? (long)(q->deadline - now) : ms;
}

/*
 * Ends q at its bound (op_limit) while it waits for what no retry timer
 * covers: an answer, a free connection slot, version detection or a token.
 * The timer is q's only one; these waits use no other.
 */
static void
req_bound_arm(struct airflow_req *q)
{
	if (q->deadline != 0)
		timer_arm(q, T_OUT_OF_TIME, req_wait_ms(q, LONG_MAX));
}

/* ----------------------------------------------------------------- breaker */

/*
 * The circuit breaker. After AIRFLOW_BREAKER_THRESHOLD consecutive attempts
 * that found Airflow down it opens: every attempt then waits in
 * breaker_waiters, and a timer with exponential backoff (the retry policy's)
 * lets one of them through at a time as the probe, no sooner than a
 * Retry-After asks. Any answer that is neither a "down" answer nor a 429
 * closes it and releases everybody.
 */
static void
breaker_arm(struct airflow_client *c, long ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	evtimer_del(&c->probe_timer);
	evtimer_add(&c->probe_timer, &tv);
}

static void
breaker_note(struct airflow_client *c, long http_status, bool was_probe,
    long retry_after_ms)
{
	/* A 429 says Airflow is up but wants fewer requests: it opens
	 * nothing, but an open breaker stays open and paced. */
	bool slow_down = http_status == 429 && c->open;

	if (airflow_breaker_failure(http_status) || slow_down) {
		if (!slow_down)
			c->fails++;
		c->fail_status = http_status;
		if (!c->open && c->fails >= AIRFLOW_BREAKER_THRESHOLD) {
			c->open = true;
			c->probe_ready = false;
			c->probe_fails = 0;
			c->n_opens++;
			ap_warn("airflow: %u failed requests in a row; Airflow looks down,"
			    " probing with one request at a time", c->fails);
			breaker_arm(c, airflow_retry_delay(1, c->cfg.retry_base_ms,
			    c->cfg.retry_max_ms, rng_next(c), retry_after_ms));
		} else if (c->open && was_probe) {
			/* The next probe waits out the backoff, and Retry-After
			 * when Airflow sent one. */
			c->probe_fails++;
			breaker_arm(c, airflow_retry_delay(c->probe_fails + 1,
			    c->cfg.retry_base_ms, c->cfg.retry_max_ms, rng_next(c),
			    retry_after_ms));
		}
		return;
	}
	c->fails = 0;
	if (c->open) {
		c->open = false;
		evtimer_del(&c->probe_timer);
		ap_info("airflow: Airflow answers again (HTTP %ld); resuming", http_status);
		release_waiters(&c->breaker_waiters);
	}
}

/* The probe's turn: the first waiter goes, or the next request to come. */
static void
breaker_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct airflow_client *c = arg;
	struct airflow_req *q;

	if (!c->open || c->probe != NULL)
		return;
	c->probe_ready = true;
	if ((q = TAILQ_FIRST(&c->breaker_waiters)) != NULL) {
		wait_leave(q);
		timer_disarm(q);
		req_attempt(q);
	}
}

/* The bound of q's wait for the breaker: request_timeout_ms, or what is
 * left of q's time if that is less. */
static void
breaker_wait_arm(struct airflow_req *q)
{
	long full = q->c->cfg.request_timeout_ms, ms = req_wait_ms(q, full);

	q->wait_cut = ms < full;
	timer_arm(q, T_BREAKER_WAIT, ms);	/* a pending wait is moved */
}

/* Waits for the breaker; bounded so the caller hears "unavailable" in time. */
static void
breaker_wait(struct airflow_req *q, bool first)
{
	struct airflow_client *c = q->c;

	q->waitq = &c->breaker_waiters;
	if (first)
		TAILQ_INSERT_HEAD(&c->breaker_waiters, q, wait);
	else
		TAILQ_INSERT_TAIL(&c->breaker_waiters, q, wait);
	breaker_wait_arm(q);
	/* The probe's turn came while q's answer was being read, with nobody
	 * waiting: q goes now. */
	if (c->probe == NULL && c->probe_ready)
		breaker_arm(c, 0);
}

/* ----------------------------------------------------------------- internal requests */

static void detect_v1_done(const struct airflow_result *res, void *arg);

/*
 * An answer of version detection (to `asked`): the generation, a second
 * question, or nothing decided (the waiters fail; the next request detects
 * again). Runs as the asking request's callback, which is freed after it.
 */
static void
detect_answer(struct airflow_client *c, enum airflow_step asked,
    const struct airflow_result *res)
{
	long st = res->status == AIRFLOW_OK ? 200 : res->error.http_status;
	enum airflow_api api = AIRFLOW_API_V1;
	struct airflow_req *q;

	switch (res->status == AIRFLOW_UNAVAILABLE ? AIRFLOW_DETECT_RETRY :
	    airflow_detect_api(asked, st, res->status == AIRFLOW_OK)) {
	case AIRFLOW_DETECT_RETRY:
		fail_waiters(&c->api_waiters, res);
		return;
	case AIRFLOW_DETECT_ASK_V1:
		/* 3.x (or a proxy) protects /api/v2/version: 2.x answers
		 * /api/v1/version, 3.x has no /api/v1. The waiters stay. */
		c->detect_v2_status = st;
		q = req_new(c, AIRFLOW_STEP_VERSION_V1, detect_v1_done, c, NULL, NULL);
		q->internal = true;
		c->detect = q;
		req_attempt(q);
		return;
	case AIRFLOW_DETECT_V2:
		api = AIRFLOW_API_V2;
		break;
	case AIRFLOW_DETECT_GUESS_V1:
		/* Said once: the generation is decided for good below, so
		 * detection never runs again. */
		ap_warn("airflow: %s: GET /api/v2/version answered HTTP %ld %s and GET"
		    " /api/v1/version HTTP %ld %s, so the API generation is unknown (wrong"
		    " credentials, or a proxy in front of Airflow wanting its own?); taking 2.x"
		    " (/api/v1): setting airflow.api to \"v1\" or \"v2\" fixes the generation",
		    c->base_url, c->detect_v2_status, airflow_reason(c->detect_v2_status),
		    st, st >= 200 && st < 300 ? "without a version" : airflow_reason(st));
		break;
	case AIRFLOW_DETECT_V1:
		break;
	}
	c->api = api;
	ap_info("airflow: %s speaks the Airflow %s API", c->base_url,
	    api == AIRFLOW_API_V2 ? "3.x (/api/v2)" : "2.x (/api/v1)");
	release_waiters(&c->api_waiters);
}

static void
detect_done(const struct airflow_result *res, void *arg)
{
	detect_answer(arg, AIRFLOW_STEP_VERSION, res);
}

static void
detect_v1_done(const struct airflow_result *res, void *arg)
{
	detect_answer(arg, AIRFLOW_STEP_VERSION_V1, res);
}

static void
start_detect(struct airflow_client *c)
{
	struct airflow_req *q;

	if (c->detect != NULL)
		return;
	q = req_new(c, AIRFLOW_STEP_VERSION, detect_done, c, NULL, NULL);
	q->internal = true;
	c->detect = q;
	req_attempt(q);
}

/* The login Airflow answered with status refused, for what it says (text,
 * taken): kept, and not tried again for a while (start_token()). */
static const char *
login_refuse(struct airflow_client *c, long status, char *text)
{
	free(c->login_refused);
	c->login_refused_ms = ap_mono_ms();
	c->login_refused_status = status;
	c->login_refused = text;
	return text;
}

static void
token_done(const struct airflow_result *res, void *arg)
{
	struct airflow_client *c = arg;
	const char *tok = res->status == AIRFLOW_OK ? airflow_parse_token(res->body) : NULL;

	if (tok == NULL) {
		struct airflow_result r = *res;

		if (res->status == AIRFLOW_OK || (res->status ==
		    AIRFLOW_BAD_REPLY && res->error.http_status >= 200 &&
		    res->error.http_status < 300)) {
			/* A 2xx with no token (a portal's sign-in page): no
			 * login to be had here, which the requests waiting for
			 * it must not take for an unreadable answer of their own
			 * (looked at again). Not tried again for a while, as a
			 * refused login. */
			r.error.detail = login_refuse(c, res->error.http_status,
			    ap_xprintf(AIRFLOW_LOGIN_REFUSED " answered HTTP %ld without an access_token (%s): not"
			    " Airflow 3's login at airflow.url (a sign-in portal's"
			    " page?), or airflow.api \"v2\" for an Airflow that is not"
			    " 3", res->error.http_status, res->error.detail != NULL ?
			    res->error.detail : "no detail"));
			r.status = AIRFLOW_REJECTED;
			r.error.title = "Bad reply";
		} else if (res->status != AIRFLOW_UNAVAILABLE &&
		    (res->error.http_status == 404 || res->error.http_status == 405)) {
			/* No login route where Airflow answers (a 404 with no
			 * Airflow there is AIRFLOW_UNAVAILABLE, as a 503): not
			 * Airflow 3 (airflow.api "v2" set for an Airflow 2, or a
			 * path prefix that is not Airflow's). Its 404 must not
			 * read as "no such DAG" (not parsed yet, waited on until
			 * the deadline), nor be retried. */
			r.status = AIRFLOW_REJECTED;
			r.error.title = AIRFLOW_NO_LOGIN;
			r.error.detail = "POST /auth/token is not there: Airflow 3's API"
			    " (airflow.api \"v2\") needs it; an Airflow 2 is \"v1\" (or"
			    " \"auto\", which asks Airflow), or airflow.url's path is not"
			    " Airflow's";
		} else if (res->status == AIRFLOW_REJECTED &&
		    (res->error.http_status == 401 || res->error.http_status == 403)) {
			/* Whatever asked for the token fails with this: the
			 * login, not its own request, is what to fix. */
			r.error.detail = login_refuse(c, res->error.http_status,
			    ap_xprintf(AIRFLOW_LOGIN_REFUSED " refused the credentials of user '%s': check"
			    " AUTOPILOT_AIRFLOW_USERNAME and AUTOPILOT_AIRFLOW_PASSWORD (or"
			    " airflow.username and airflow.password_file)%s%s",
			    c->username != NULL ? c->username : "", res->error.detail !=
			    NULL ? ": " : "", res->error.detail != NULL ?
			    res->error.detail : ""));
		}
		fail_waiters(&c->token_waiters, &r);
		return;
	}
	bearer_set(c, tok);
	c->token_gen++;
	free(c->login_refused);
	c->login_refused = NULL;
	release_waiters(&c->token_waiters);
}

/* The requests waiting for a login while one refused stands fail with it. */
static void
login_refused_cb(evutil_socket_t fd, short what, void *arg)
{
	struct airflow_client *c = arg;
	struct airflow_result r;

	(void)fd;
	(void)what;
	memset(&r, 0, sizeof r);
	r.status = AIRFLOW_REJECTED;
	r.error.http_status = c->login_refused_status;
	r.error.title = c->login_refused_status < 300 ? "Bad reply" :
	    airflow_reason(c->login_refused_status);
	r.error.detail = c->login_refused;
	fail_waiters(&c->token_waiters, &r);
}

static void
start_token(struct airflow_client *c)
{
	static const struct timeval now = { 0, 0 };
	struct airflow_req *q;

	if (c->token != NULL)
		return;
	/* A login refused is not tried again for AIRFLOW_LOGIN_RETRY_MS:
	 * credentials a directory locks after so many failures are not
	 * spent by every request and every readiness probe meanwhile. */
	if (c->login_refused != NULL &&
	    ap_mono_ms() - c->login_refused_ms < AIRFLOW_LOGIN_RETRY_MS) {
		if (c->login_ev == NULL)
			c->login_ev = evtimer_new(c->base, login_refused_cb, c);
		evtimer_add(c->login_ev, &now);
		return;
	}
	q = req_new(c, AIRFLOW_STEP_TOKEN, token_done, c, NULL, NULL);
	q->internal = true;
	c->token = q;
	req_attempt(q);
}

/* ----------------------------------------------------------------- attempts */

static void http_done(const struct http_response *resp, void *arg);

/*
 * Whether q is no longer wanted by its owner (op_guard): then it ends
 * "Not sent again" (true). Asked before every send but the first, and by
 * the HTTP layer before a queued send starts (req_gate).
 */
static bool
req_unwanted(struct airflow_req *q)
{
	struct airflow_client *c = q->c;

	if (q->guard == NULL || q->guard(q->guard_arg))
		return false;
	req_error(q, "Not sent again", "what it was for is no longer this"
	    " process's (the run was replaced or taken over)");
	req_finish(q, AIRFLOW_UNAVAILABLE, 0);
	/* The probe, never sent (it waited for a slot), or a waiter released
	 * as the probe: the next waiter probes instead. */
	if (q->is_probe) {
		q->is_probe = false;
		c->probe = NULL;
		if (c->open)
			breaker_arm(c, 0);
	} else if (c->open && c->probe == NULL && c->probe_ready)
		breaker_arm(c, 0);
	return true;
}

/* The HTTP layer's question before a queued attempt starts. */
static bool
req_gate(void *arg)
{
	struct airflow_req *q = arg;

	if (!req_unwanted(q))
		return true;
	q->http = NULL;		/* dropped by the HTTP layer, never sent */
	q->res.attempts--;
	return false;
}

static void
req_attempt(struct airflow_req *q)
{
	struct airflow_client *c = q->c;
	struct airflow_step_args a = { 0 };
	struct airflow_http_req hr;
	char *cause = NULL, *url;

	/* Released at its bound (by the breaker, version detection, a token):
	 * nothing is sent that would be dropped at once. The last answer
	 * stands, if there was one. Nor is what is sent again (or at last)
	 * for an owner that no longer wants it (op_guard). */
	if (q->deadline != 0 && ap_mono_ms() >= q->deadline) {
		if (q->err.title == NULL)
			req_error(q, "Out of time", "out of time before the request"
			    " could be sent");
		req_finish(q, AIRFLOW_UNAVAILABLE, q->last_http);
		/* Released as the probe: the next waiter goes instead. */
		if (c->open && c->probe == NULL && c->probe_ready)
			breaker_arm(c, 0);
		return;
	}
	if (req_unwanted(q))
		return;
	if (q->step != AIRFLOW_STEP_VERSION && q->step != AIRFLOW_STEP_VERSION_V1 &&
	    q->step != AIRFLOW_STEP_TOKEN && c->api == AIRFLOW_API_AUTO) {
		wait_on(q, &c->api_waiters);
		req_bound_arm(q);
		start_detect(c);
		return;
	}
	a.dag_id = q->dag_id;
	a.dag_run_id = q->run_id;
	a.pipeline_text = q->pipeline;
	a.conf = q->conf;
	a.username = c->username;
	a.password = c->password;
	a.plugin_variant = q->plugin_variant;
	if (airflow_build(q->step, c->api, &a, &hr, &cause) != 0) {
		req_error(q, "Bad request", cause);
		free(cause);
		req_finish(q, AIRFLOW_REJECTED, 0);
		return;
	}
	/* On Airflow 3 the health check (the plugin's, Basic auth) is of the
	 * login too, which every other request needs: a login refused shows
	 * in /readyz, not only in each agent's error. */
	if ((hr.auth == AIRFLOW_AUTH_BEARER || (q->step == AIRFLOW_STEP_HEALTH &&
	    c->api == AIRFLOW_API_V2)) && c->bearer == NULL) {
		airflow_http_req_cleanup(&hr);
		wait_on(q, &c->token_waiters);
		req_bound_arm(q);
		start_token(c);
		return;
	}
	/* The presence check goes past the breaker: it decides what a 404
	 * says, which the breaker then counts. */
	if (c->open && !q->presence_check) {
		if (c->probe != NULL || !c->probe_ready) {
			airflow_http_req_cleanup(&hr);
			breaker_wait(q, false);
			return;
		}
		c->probe_ready = false;
		c->probe = q;
		q->is_probe = true;
	}
	if (hr.auth == AIRFLOW_AUTH_BEARER)
		q->token_gen = c->token_gen;
	url = ap_xprintf("%s%s", c->base_url, hr.path);
	q->res.attempts++;
	if (ap_log_enabled(AP_LOG_DEBUG)) {
		q->sent_method = hr.method;
		free(q->sent_path);
		q->sent_path = ap_xstrdup(hr.path);
	}
	/* The URL and the body go to the request, which frees them. */
	q->http = http_request(c->http, hr.method, url, client_headers(c, hr.auth,
	    hr.body != NULL), hr.body, hr.body != NULL ? strlen(hr.body) : 0, http_done, q);
	hr.body = NULL;
	if (q->guard != NULL)
		http_req_gate(q->http, req_gate);
	airflow_http_req_cleanup(&hr);
	req_bound_arm(q);
}

/* Why the last attempt reached no Airflow, kept for /readyz. */
static void
note_why(struct airflow_client *c, const char *why)
{
	if (why != NULL) {
		free(c->net_error);
		c->net_error = ap_xstrdup(why);
		c->net_error_ms = ap_mono_ms();
	}
}

/* A 404 that no Airflow gave (reply_verdict()): what it is. */
#define PROXY_404 "HTTP 404 without Airflow's JSON body, and no Airflow" \
	" answering there: a proxy with no Airflow behind it (restarting?), or" \
	" airflow.url's path is not Airflow's"

/* An attempt without an HTTP answer: counted, and why kept. */
static void
note_no_answer(struct airflow_client *c, const char *why)
{
	c->n_class[AIRFLOW_HTTP_NETWORK]++;
	note_why(c, why);
}

static void
stats_note(struct airflow_client *c, const struct http_response *resp)
{
	enum airflow_http_class k;
	unsigned i;

	if (resp->status <= 0)
		k = AIRFLOW_HTTP_NETWORK;
	else if (resp->status < 300)
		k = AIRFLOW_HTTP_2XX;
	else if (resp->status < 400)
		k = AIRFLOW_HTTP_3XX;
	else if (resp->status < 500)
		k = AIRFLOW_HTTP_4XX;
	else
		k = AIRFLOW_HTTP_5XX;
	if (k == AIRFLOW_HTTP_NETWORK)
		note_no_answer(c, resp->error);
	else
		c->n_class[k]++;
	for (i = 0; i < AIRFLOW_LATENCY_BUCKETS - 1; i++) {
		if ((long)resp->elapsed_ms <= airflow_latency_bounds_ms[i])
			break;
	}
	c->lat_bucket[i]++;
	c->lat_sum += resp->elapsed_ms;
}

static bool
step_is_plugin(enum airflow_step s)
{
	return s == AIRFLOW_STEP_DEPLOY || s == AIRFLOW_STEP_HEALTH ||
	    s == AIRFLOW_STEP_KILL || s == AIRFLOW_STEP_DELETE;
}

/* Moves q to its next step (a new retry budget) and sends it. */
static void
req_next_step(struct airflow_req *q, enum airflow_step s)
{
	q->step = s;
	q->retries = 0;
	reply_drop(q->c, q->reply);
	q->reply = NULL;
	airflow_error_text_cleanup(&q->err);
	req_attempt(q);
}

/* A 2xx answer of q's current step. */
static void
req_answered(struct airflow_req *q, long status)
{
	const char *fileloc = NULL, *text;
	char *detail;
	int rc;

	switch (q->step) {
	case AIRFLOW_STEP_GET_DAG:
	case AIRFLOW_STEP_UNPAUSE:
		/* Both generations answer with the DAG (DAGResponse, dag_id
		 * required): a 2xx page without one (a portal's, a proxy's) is
		 * no sign that anything was unpaused. */
		rc = airflow_parse_dag(q->reply, &q->dag, &fileloc);
		if (rc != 0)
			break;
		/* An answer about another DAG (a proxy's cache, a confused
		 * gateway) says nothing about ours. */
		if (strcmp(q->dag.dag_id, q->dag_id) != 0) {
			detail = ap_xprintf("the answer is about DAG '%s', not '%s'",
			    q->dag.dag_id, q->dag_id);
			req_error(q, "Bad reply", detail);
			free(detail);
			req_finish(q, AIRFLOW_BAD_REPLY, status);
			return;
		}
		if (q->dag.has_import_errors) {
			/* Read Airflow's trace; a broken DAG we unpaused is paused first. */
			q->dag_reply = q->reply;
			q->reply = NULL;
			req_next_step(q, q->step == AIRFLOW_STEP_UNPAUSE ? AIRFLOW_STEP_PAUSE :
			    AIRFLOW_STEP_IMPORT_ERRORS);
			return;
		}
		/* Said paused after the PATCH that unpauses it: not done, and
		 * a trigger now would only queue. */
		if (q->step == AIRFLOW_STEP_UNPAUSE &&
		    json_is_true(json_object_get(q->reply, "is_paused"))) {
			req_error(q, "Bad reply", "the answer to unpausing the DAG"
			    " shows it still paused");
			req_finish(q, AIRFLOW_BAD_REPLY, status);
			return;
		}
		q->res.dag = &q->dag;
		req_finish(q, AIRFLOW_OK, status);
		return;
	case AIRFLOW_STEP_IMPORT_ERRORS:
		if (q->absent) {
			text = airflow_pick_new_import_error(q->reply, q->dag_id,
			    q->errors_since, &q->dag.import_error_at);
			if (text == NULL) {
				req_finish(q, AIRFLOW_NOT_FOUND, 404);
				return;
			}
			q->dag.dag_id = q->dag_id;
			q->dag.has_import_errors = true;
			q->dag.no_dag = true;
			q->import_error = airflow_redact(ap_xstrdup(text));
			q->dag.import_error = q->import_error;
			q->res.dag = &q->dag;
			req_finish(q, AIRFLOW_OK, status);
			return;
		}
		airflow_parse_dag(q->dag_reply, &q->dag, &fileloc);
		text = airflow_pick_import_error(q->reply, q->dag_id, fileloc,
		    &q->dag.import_error_at);
		q->import_error = airflow_redact(ap_xstrdup(text != NULL ? text :
		    "the DAG has import errors (Airflow listed none for its file)"));
		q->dag.import_error = q->import_error;
		if (q->repaused)
			q->dag.is_paused = true;
		q->res.dag = &q->dag;
		req_finish(q, AIRFLOW_OK, status);
		return;
	case AIRFLOW_STEP_TRIGGER:
	case AIRFLOW_STEP_GET_RUN:
	case AIRFLOW_STEP_FAIL_RUN:
		/* Read with the reply (reply_work). */
		if (!q->run_ok)
			break;
		/* Answers before 2.x's dag_id field existed: use what we asked. */
		if (q->run.dag_id == NULL)
			q->run.dag_id = q->dag_id;
		if (q->run.dag_run_id == NULL)
			q->run.dag_run_id = q->run_id;
		/* An answer about another run (a proxy's cache, a confused
		 * gateway) says nothing about ours. */
		if (strcmp(q->run.dag_id, q->dag_id) != 0 || (q->run_id != NULL &&
		    strcmp(q->run.dag_run_id, q->run_id) != 0)) {
			detail = ap_xprintf("the answer is about DAG run '%s' of DAG"
			    " '%s', not run '%s' of DAG '%s'", q->run.dag_run_id,
			    q->run.dag_id, q->run_id != NULL ? q->run_id : "(new)",
			    q->dag_id);
			req_error(q, "Bad reply", detail);
			free(detail);
			req_finish(q, AIRFLOW_BAD_REPLY, status);
			return;
		}
		q->run.adopted = q->adopted;
		q->res.run = &q->run;
		req_finish(q, AIRFLOW_OK, status);
		return;
	case AIRFLOW_STEP_PAUSE:
		q->repaused = true;
		req_next_step(q, AIRFLOW_STEP_IMPORT_ERRORS);
		return;
	case AIRFLOW_STEP_TOKEN:
		if (airflow_parse_token(q->reply) == NULL)
			break;
		req_finish(q, AIRFLOW_OK, status);
		return;
	case AIRFLOW_STEP_VERSION:
	case AIRFLOW_STEP_VERSION_V1:
		/* Airflow's VersionInfo always has the version; a 2xx without
		 * one is somebody else's page and decides nothing. */
		if (airflow_parse_version(q->reply) != NULL) {
			req_finish(q, AIRFLOW_OK, status);
			return;
		}
		detail = ap_xprintf("GET %s answered without a version, so the API generation"
		    " is unknown: not Airflow's API at this URL? (or set airflow.api to v1 or"
		    " v2)", q->step == AIRFLOW_STEP_VERSION ? "/api/v2/version" :
		    "/api/v1/version");
		req_error(q, "Bad reply", detail);
		free(detail);
		req_finish(q, AIRFLOW_BAD_REPLY, status);
		return;
	default:
		req_finish(q, AIRFLOW_OK, status);
		return;
	}
	req_error(q, "Bad reply", q->bloated ? "the answer holds more than"
	    " 65536 JSON objects and arrays (not read)" : q->reply == NULL ?
	    "the answer is not JSON" :
	    "the answer does not have the fields the API promises");
	req_finish(q, AIRFLOW_BAD_REPLY, status);
}

char *
airflow_client_network_error(const struct airflow_client *c, uint64_t since_ms)
{
	if (c->net_error == NULL || c->net_error_ms < since_ms)
		return NULL;
	return ap_xstrdup(c->net_error);
}

char *
airflow_result_text(const char *what, const struct airflow_result *res)
{
	const struct airflow_error *e = &res->error;

	if (e->http_status != 0)
		return ap_xprintf("%s%sHTTP %ld %s%s%s", what ? what : "", what ? ": " : "",
		    e->http_status, e->title ? e->title : "", e->detail ? ": " : "",
		    e->detail ? e->detail : "");
	return ap_xprintf("%s%s%s%s%s", what ? what : "", what ? ": " : "",
	    e->title ? e->title : "error", e->detail ? ": " : "",
	    e->detail ? e->detail : "");
}

static bool
step_is_run(enum airflow_step s)
{
	return s == AIRFLOW_STEP_TRIGGER || s == AIRFLOW_STEP_GET_RUN ||
	    s == AIRFLOW_STEP_FAIL_RUN;
}

/* Reads an answer's body; on the worker, the job is all it touches. */
/*
 * Whether body opens more than REPLY_MAX_NODES JSON objects and arrays
 * (counting brackets in strings too: only ever more). Each costs jansson a
 * hundred bytes and more: 8 MiB of "[{},{},…]" is 600 MB of tree. Airflow's
 * answers hold tens of them.
 */
#define REPLY_MAX_NODES 65536
static bool
reply_bloated(const char *body, size_t len)
{
	size_t i, n = 0;

	for (i = 0; i < len; i++)
		if ((body[i] == '{' || body[i] == '[') && ++n > REPLY_MAX_NODES)
			return true;
	return false;
}

static void
reply_work(struct workq_job *wj)
{
	struct reply_job *j = (struct reply_job *)wj;
	long st = j->status;

	/* Not read at all: said as such (a non-2xx by its status alone). */
	if ((j->bloated = reply_bloated(j->body, j->body_len)))
		j->body_len = 0;
	if (j->body_len > 0)
		j->reply = json_loadb(j->body, j->body_len, 0, NULL);
	if (st > 0 && (st < 200 || st >= 300))
		airflow_parse_error(st, j->body, j->body_len, &j->err);
	else if (st > 0 && step_is_run(j->step))
		j->run_ok = airflow_parse_run(j->reply, &j->run) == 0;
}

static void
reply_job_free(struct reply_job *j)
{
	free(j->body);
	json_decref(j->reply);
	airflow_error_text_cleanup(&j->err);
	free(j);
}

static void reply_decide(struct airflow_req *q, long st);

/*
 * Whether the breaker counts q's answer (HTTP st) only once it is read: a
 * 404 may be Airflow's, or a proxy's with no Airflow behind it, which the
 * body tells (reply_verdict()).
 */
static bool
note_later(const struct airflow_req *q, long st)
{
	(void)q;
	return st == 404;
}

/* How long a presence check's verdict stands for the 404s that follow. */
#define PRESENCE_FRESH_MS 1000

/* The presence check's answer: the waiters' 404s are decided. */
static void
presence_done(const struct airflow_result *res, void *arg)
{
	struct airflow_client *c = arg;
	struct airflow_reqq tmp = TAILQ_HEAD_INITIALIZER(tmp);
	struct airflow_req *q;
	long st = res->error.http_status;
	bool there;

	/* A version, or an answer only Airflow (or a proxy passing requests
	 * to it) gives: a refusal, a 429, a 404 of Airflow's own. */
	there = res->status == AIRFLOW_OK || (st >= 400 && st < 500 &&
	    st != 404 && st != 408) || (st == 404 && json_is_object(res->body));
	c->presence_at = ap_mono_ms();
	if (c->presence_at == 0)
		c->presence_at = 1;
	c->presence_there = there;
	if (c->presence_said != (int)there) {
		if (there && c->presence_said == 0)
			ap_info("airflow: Airflow answers at %s again", c->base_url);
		else if (there)
			ap_info("airflow: %s answers HTTP 404 without Airflow's JSON"
			    " body while Airflow answers there: a proxy replacing"
			    " Airflow's error pages? Its 404s are taken as Airflow's",
			    c->base_url);
		else
			ap_warn("airflow: %s answers HTTP 404 without Airflow's JSON"
			    " body, and GET /api/v1/version %s%ld %s: no Airflow behind it for"
			    " now (a proxy's 404, an Airflow restarting, or airflow.url's"
			    " path is not Airflow's); retrying as for an Airflow down",
			    c->base_url, st > 0 ? "HTTP " : "", st, res->error.title != NULL ?
			    res->error.title : "");
		c->presence_said = there;
	}
	while ((q = TAILQ_FIRST(&c->presence_waiters)) != NULL) {
		wait_leave(q);
		timer_disarm(q);
		wait_on(q, &tmp);
	}
	while ((q = TAILQ_FIRST(&tmp)) != NULL) {
		wait_leave(q);
		reply_decide(q, 404);
	}
}

/*
 * Asks GET /api/v1/version, once at a time: is Airflow there behind the
 * URL? Both generations answer it as only they do: 2.x with its version
 * (or a refusal), 3.x with a JSON 404 ("/api/v1 has been removed").
 */
static void
start_presence(struct airflow_client *c)
{
	struct airflow_req *q;

	if (c->presence != NULL)
		return;
	q = req_new(c, AIRFLOW_STEP_VERSION_V1, presence_done, c, NULL, NULL);
	q->internal = true;
	q->presence_check = true;
	c->presence = q;
	req_attempt(q);
}

enum verdict { V_WAIT, V_AIRFLOW, V_PROXY };

/*
 * Whose 404 q's answer is. Airflow answers each 404 of its API with a JSON
 * object (2.x RFC 7807, 3.x {"detail"}); one without is a proxy's with no
 * Airflow behind it (an ingress during a rollout), or a proxy's page in
 * place of Airflow's own, or Airflow 2's page for a route it has not (a
 * missing plugin). GET /api/v1/version tells which: V_WAIT while it is asked.
 */
static enum verdict
reply_verdict(struct airflow_req *q)
{
	struct airflow_client *c = q->c;

	if (json_is_object(q->reply))
		return V_AIRFLOW;
	if (q->presence_check)
		return V_PROXY;
	if (c->presence_at != 0 && ap_mono_ms() - c->presence_at < PRESENCE_FRESH_MS)
		return c->presence_there ? V_AIRFLOW : V_PROXY;
	if (q->was_probe) {
		/* The breaker's probe: counted as a failure now, so that the
		 * next probe comes in its time whatever becomes of q (the
		 * check's own answer closes the breaker when Airflow is
		 * there). */
		breaker_note(c, 0, true, q->retry_after_ms);
		q->noted = true;
	}
	wait_on(q, &c->presence_waiters);
	req_bound_arm(q);
	start_presence(c);
	return V_WAIT;
}

/* The rest of http_done(), with the answer read. */
static void
reply_use(struct airflow_req *q, struct reply_job *j)
{
	q->reply = j->reply;
	j->reply = NULL;
	q->run = j->run;
	q->run_ok = j->run_ok;
	q->bloated = j->bloated;
	q->was_probe = j->was_probe;
	q->retry_after_ms = j->retry_after_ms;
	q->noted = false;
	if (j->err.title != NULL) {
		/* A non-2xx answer's error (a network error's is set already). */
		q->err = j->err;
		memset(&j->err, 0, sizeof j->err);
	}
	if (j->permanent) {
		/* A certificate Airflow's side must fix: retrying now cannot help. */
		req_finish(q, AIRFLOW_UNAVAILABLE, 0);
		return;
	}
	reply_decide(q, j->status);
}

/* What q's answer (HTTP st, read) means: a retry, a next step, the end. */
static void
reply_decide(struct airflow_req *q, long st)
{
	struct airflow_client *c = q->c;
	enum airflow_status cls;
	bool foreign = false;

	if (note_later(q, st)) {
		switch (reply_verdict(q)) {
		case V_WAIT:
			return;
		case V_AIRFLOW:
			if (!q->noted)
				breaker_note(c, st, q->was_probe, q->retry_after_ms);
			break;
		case V_PROXY:
			/* No Airflow answered: as a 503, not "no such DAG" nor
			 * "the run is lost" (which would fail its run), nor
			 * "no login route" or "an Airflow 2" (the login, the
			 * detection). The check's own is counted in its
			 * waiters'. */
			if (q->presence_check)
				break;
			if (!q->noted)
				breaker_note(c, 0, q->was_probe, q->retry_after_ms);
			foreign = true;
			req_error(q, "Not Found", PROXY_404);
			note_why(c, PROXY_404);
			break;
		}
	}
	if ((airflow_retryable(st) || foreign) && !q->presence_check) {
		unsigned max = c->cfg.max_retries == AIRFLOW_RETRIES_NONE ? 0 :
		    c->cfg.max_retries;
		long delay;

		if (q->retries < max) {
			q->retries++;
			c->n_retries++;
			if (c->open) {
				/* The breaker paces retries now; a failed probe goes first. */
				breaker_wait(q, q->was_probe);
				return;
			}
			delay = airflow_retry_delay(q->retries, c->cfg.retry_base_ms,
			    c->cfg.retry_max_ms, rng_next(c), q->retry_after_ms);
			if (!req_time_left(q, delay)) {
				/* Out of time for the wait: the last answer stands. */
				q->retries--;
				c->n_retries--;
				req_finish(q, AIRFLOW_UNAVAILABLE, st);
				return;
			}
			timer_arm(q, T_RETRY, delay);
			return;
		}
		req_finish(q, AIRFLOW_UNAVAILABLE, st);
		return;
	}
	/* An expired or revoked JWT: fetch a new one, once per request. */
	if (c->api == AIRFLOW_API_V2 && !q->internal && !step_is_plugin(q->step) &&
	    !q->token_retried && airflow_token_rejected(st, &q->err)) {
		q->token_retried = true;
		if (q->token_gen == c->token_gen && c->bearer != NULL)
			bearer_set(c, NULL);
		req_attempt(q);
		return;
	}
	/* 3.x: the plugin may sit under another prefix. */
	if (c->api == AIRFLOW_API_V2 && step_is_plugin(q->step)) {
		if (!airflow_plugin_missing(st, q->reply)) {
			/* The plugin answered here: later requests start here. */
			c->plugin_variant = q->plugin_variant;
		} else if (q->plugin_variant + 1 < AIRFLOW_PLUGIN_PREFIXES_V2) {
			q->plugin_variant++;
			q->retries = 0;
			req_attempt(q);
			return;
		} else {
			/* Remembering no prefix: the plugin may be installed later. */
			req_error(q, "OpenMetadata plugin not found", "nothing answers as the"
			    " OpenMetadata managed-APIs plugin under /pluginsv2/api/v2/openmetadata,"
			    " /api/v2/openmetadata or /api/v1/openmetadata (is it installed in"
			    " Airflow?)");
			if (airflow_classify(st) == AIRFLOW_OK) {
				req_finish(q, AIRFLOW_BAD_REPLY, st);
				return;
			}
		}
	}
	if (q->step == AIRFLOW_STEP_TRIGGER && st == 409) {
		q->adopted = true;
		req_next_step(q, AIRFLOW_STEP_GET_RUN);
		return;
	}
	if (q->step == AIRFLOW_STEP_UNPAUSE && st == 404 && q->errors_since != 0) {
		/* Not parsed yet, or parsed and never imported. */
		q->absent = true;
		req_next_step(q, AIRFLOW_STEP_IMPORT_ERRORS);
		return;
	}
	cls = airflow_classify(st);
	if (q->step == AIRFLOW_STEP_PAUSE && cls != AIRFLOW_OK) {
		/* Pausing it again failed: the import errors are the news. */
		req_next_step(q, AIRFLOW_STEP_IMPORT_ERRORS);
		return;
	}
	if (q->step == AIRFLOW_STEP_IMPORT_ERRORS && cls != AIRFLOW_OK && !q->absent) {
		/* The DAG is broken either way; say so even without Airflow's text. */
		airflow_parse_dag(q->dag_reply, &q->dag, NULL);
		q->import_error = ap_xprintf("the DAG has import errors (reading them failed:"
		    " HTTP %ld %s)", st, q->err.title != NULL ? q->err.title : "");
		q->dag.import_error = q->import_error;
		if (q->repaused)
			q->dag.is_paused = true;
		q->res.dag = &q->dag;
		req_finish(q, AIRFLOW_OK, st);
		return;
	}
	if (cls == AIRFLOW_OK)
		req_answered(q, st);
	else
		req_finish(q, cls, st);
}

/* Back on the loop with the answer read. */
static void
reply_done(struct workq_job *wj)
{
	struct reply_job *j = (struct reply_job *)wj;
	struct airflow_req *q = j->q;

	if (q != NULL) {
		q->parse = NULL;
		if (!q->c->closing)
			reply_use(q, j);
	} else if (j->note_later && j->was_probe && !j->c->closing) {
		/* The probe is gone before its 404 was read: the next one
		 * comes in its time. */
		breaker_note(j->c, 0, true, j->retry_after_ms);
	}
	reply_job_free(j);
}

static void
drop_work(struct workq_job *wj)
{
	struct drop_job *d = (struct drop_job *)wj;

	json_decref(d->reply);
}

static void
drop_done(struct workq_job *wj)
{
	free(wj);
}

/* Frees a reply the loop is done with, on the worker when there is one. */
static void
reply_drop(struct airflow_client *c, json_t *reply)
{
	struct drop_job *d;

	if (reply == NULL)
		return;
	if (c->wq == NULL || c->closing) {
		json_decref(reply);
		return;
	}
	d = ap_xmalloc(sizeof *d);
	d->job.work = drop_work;
	d->job.done = drop_done;
	d->reply = reply;
	workq_submit(c->wq, &d->job);
}

static void
http_done(const struct http_response *resp, void *arg)
{
	struct airflow_req *q = arg;
	struct airflow_client *c = q->c;
	struct http_req *hr = q->http;
	struct reply_job *j;
	long st = resp->status, retry_after_ms;
	bool was_probe = q->is_probe;

	q->http = NULL;
	q->last_http = st;
	/* A 5xx may be a proxy's after it passed the request on (a 503 too:
	 * an upstream reset before its answer). */
	if ((st == 0 && resp->sent) || (st >= 500 && st <= 599))
		q->res.maybe_delivered = true;
	if (q->sent_path != NULL && st > 0)
		ap_debug("airflow: %s %s: HTTP %ld in %llu ms%s%s", q->sent_method,
		    q->sent_path, st, (unsigned long long)resp->elapsed_ms,
		    resp->retry_after != NULL ? ", Retry-After: " : "",
		    resp->retry_after != NULL ? resp->retry_after : "");
	else if (q->sent_path != NULL)
		ap_debug("airflow: %s %s: no answer in %llu ms: %s", q->sent_method,
		    q->sent_path, (unsigned long long)resp->elapsed_ms,
		    resp->error != NULL ? resp->error : "?");
	if (q->timer_kind == T_OUT_OF_TIME)
		timer_disarm(q);
	stats_note(c, resp);
	if (was_probe) {
		q->is_probe = false;
		c->probe = NULL;
	}
	retry_after_ms = resp->retry_after != NULL ?
	    airflow_parse_retry_after(resp->retry_after, ap_wall_ms()) : -1;
	if (!note_later(q, st))
		breaker_note(c, st, was_probe, retry_after_ms);
	reply_drop(c, q->reply);
	q->reply = NULL;
	airflow_error_text_cleanup(&q->err);

	if (resp->too_big) {
		if (note_later(q, st))
			breaker_note(c, st, was_probe, retry_after_ms);
		req_error(q, "Bad reply", "the answer is larger than the client accepts");
		req_finish(q, AIRFLOW_BAD_REPLY, st);
		return;
	}
	if (st <= 0)
		req_error(q, resp->permanent ? "TLS or URL error" : "Network error",
		    resp->error);

	j = ap_xcalloc(1, sizeof *j);
	j->job.work = reply_work;
	j->job.done = reply_done;
	j->q = q;
	j->c = c;
	j->note_later = note_later(q, st);
	j->step = q->step;
	j->status = st;
	j->permanent = resp->permanent;
	j->was_probe = was_probe;
	j->retry_after_ms = retry_after_ms;
	if (resp->body_len == 0) {
		/* Nothing to read: no trip to the worker. */
		reply_work(&j->job);
		reply_done(&j->job);
		return;
	}
	/* The body is the job's now (read at once without a worker). */
	j->body = http_take_body(hr, &j->body_len);
	q->parse = j;
	workq_submit(c->wq, &j->job);
}

/*
 * q's bound came while it waited for an answer (the attempt is dropped: its
 * connection closes, and Airflow may have acted on it, as after any
 * timeout), for a connection slot, version detection or a token.
 */
static void
req_out_of_time(struct airflow_req *q)
{
	struct airflow_client *c = q->c;
	const char *detail;

	if (q->http != NULL && http_started(q->http)) {
		detail = "out of time waiting for Airflow's answer (the attempt was"
		    " dropped)";
		q->res.maybe_delivered = true;
		/* Counted for /metrics and said by /readyz; the breaker counts
		 * only what Airflow did within request_timeout_ms. */
		note_no_answer(c, "no answer before the request's time ran out (the"
		    " attempt was dropped)");
	} else if (q->http != NULL)
		detail = "out of time waiting for a free connection"
		    " (airflow.max_in_flight requests in flight)";
	else if (q->waitq == &c->api_waiters)
		detail = "out of time waiting for Airflow's API version to be detected";
	else if (q->waitq == &c->token_waiters)
		detail = "out of time waiting for an access token";
	else if (q->waitq == &c->presence_waiters)
		detail = "out of time waiting to learn whether Airflow answers (after"
		    " an HTTP 404 without Airflow's JSON body)";
	else
		detail = "out of time";
	if (q->http != NULL) {
		http_cancel(c->http, q->http);
		q->http = NULL;
		if (q->is_probe) {
			/* Unanswered, not failed: the next waiter probes. */
			q->is_probe = false;
			c->probe = NULL;
			if (c->open)
				breaker_arm(c, 0);
		}
	}
	wait_leave(q);
	req_error(q, "Out of time", detail);
	req_finish(q, AIRFLOW_UNAVAILABLE, 0);
}

/* Why a request that waited for the breaker's probe ends: with what the
 * last failure was, which "circuit breaker open" alone hides. */
static char *
breaker_detail(const struct airflow_client *c, bool cut)
{
	char status[40];
	const char *last = status;

	if (c->fail_status > 0)
		snprintf(status, sizeof status, "HTTP %ld", c->fail_status);
	else
		last = c->net_error != NULL ? c->net_error : "no answer";
	if (cut)
		return ap_xprintf("Airflow is unreachable (the last failure: %s);"
		    " out of time waiting for the probe request", last);
	return ap_xprintf("Airflow is unreachable (the last failure: %s); no"
	    " answer to the probe request within %ld ms", last,
	    c->cfg.request_timeout_ms);
}

static void
req_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct airflow_req *q = arg;
	enum req_timer kind = q->timer_kind;
	struct airflow_client *c = q->c;
	char *detail;

	q->timer_kind = T_NONE;
	switch (kind) {
	case T_RETRY:
		req_attempt(q);
		break;
	case T_BREAKER_WAIT:
		wait_leave(q);
		detail = breaker_detail(c, q->wait_cut);
		req_error(q, "Circuit breaker open", detail);
		free(detail);
		req_finish(q, AIRFLOW_UNAVAILABLE, 0);
		break;
	case T_OUT_OF_TIME:
		req_out_of_time(q);
		break;
	case T_FINISH:
		if (q->cb != NULL)
			q->cb(&q->res, q->arg);
		req_free(q);
		break;
	case T_NONE:
		break;
	}
}

/* ----------------------------------------------------------------- public */

struct airflow_client *
airflow_client_create(struct event_base *base, const struct airflow_config *cfg,
    char **cause)
{
	struct airflow_client *c;
	struct http_options ho = { 0 };
	const char *why = ap_http_url_problem(cfg->base_url);
	size_t n;

	if (why != NULL) {
		char *shown = ap_url_shown(cfg->base_url);

		*cause = ap_xprintf("airflow.url: %s (got '%s')", why, shown);
		free(shown);
		return NULL;
	}
	if ((unsigned)cfg->api >= AIRFLOW_API_MAX) {
		*cause = ap_xstrdup("airflow.api: must be auto, v1 or v2");
		return NULL;
	}
	c = ap_xcalloc(1, sizeof *c);
	c->base = base;
	c->cfg = *cfg;
	c->base_url = ap_xstrdup(cfg->base_url);
	n = strlen(c->base_url);
	while (n > 0 && c->base_url[n - 1] == '/')
		c->base_url[--n] = '\0';
	c->username = ap_xstrdup(cfg->username != NULL ? cfg->username : "");
	c->password = ap_xstrdup(cfg->password != NULL ? cfg->password : "");
	c->ca_file = cfg->ca_file != NULL ? ap_xstrdup(cfg->ca_file) : NULL;
	c->cfg.base_url = c->base_url;
	c->cfg.username = c->username;
	c->cfg.password = c->password;
	c->cfg.ca_file = c->ca_file;
	if (c->cfg.connect_timeout_ms <= 0)
		c->cfg.connect_timeout_ms = AIRFLOW_DEFAULT_CONNECT_TIMEOUT_MS;
	if (c->cfg.request_timeout_ms <= 0)
		c->cfg.request_timeout_ms = AIRFLOW_DEFAULT_REQUEST_TIMEOUT_MS;
	if (c->cfg.max_in_flight == 0)
		c->cfg.max_in_flight = AIRFLOW_DEFAULT_MAX_IN_FLIGHT;
	if (c->cfg.max_retries == 0)
		c->cfg.max_retries = AIRFLOW_DEFAULT_MAX_RETRIES;
	if (c->cfg.retry_base_ms <= 0)
		c->cfg.retry_base_ms = AIRFLOW_DEFAULT_RETRY_BASE_MS;
	if (c->cfg.retry_max_ms <= 0)
		c->cfg.retry_max_ms = AIRFLOW_DEFAULT_RETRY_MAX_MS;
	if (c->cfg.retry_max_ms < c->cfg.retry_base_ms)
		c->cfg.retry_max_ms = c->cfg.retry_base_ms;
	c->api = cfg->api;
	{
		char *b = airflow_basic_auth(c->username, c->password);

		c->basic = ap_xprintf("Authorization: %s", b);
		free(b);
	}
	TAILQ_INIT(&c->api_waiters);
	TAILQ_INIT(&c->token_waiters);
	TAILQ_INIT(&c->presence_waiters);
	c->presence_said = -1;
	TAILQ_INIT(&c->breaker_waiters);
	TAILQ_INIT(&c->reqs);
	evtimer_assign(&c->probe_timer, base, breaker_timer_cb, c);
	c->rng = (ap_mono_ms() * 0x9E3779B97F4A7C15ULL) ^ (uint64_t)(uintptr_t)c ^
	    ((uint64_t)getpid() << 32);
	if (c->rng == 0)
		c->rng = 1;
	ho.connect_timeout_ms = c->cfg.connect_timeout_ms;
	ho.request_timeout_ms = c->cfg.request_timeout_ms;
	ho.max_in_flight = c->cfg.max_in_flight;
	ho.ca_file = c->ca_file;
	c->http = http_client_create(base, &ho);
	/* One thread reads answers: the loop is the busy one. */
	c->wq = workq_create(base, 1);
	return c;
}

void
airflow_client_free(struct airflow_client *c)
{
	struct airflow_req *q;
	unsigned i;

	if (c == NULL)
		return;
	/* Answers still being read are dropped, their requests with them. */
	c->closing = true;
	workq_free(c->wq);
	while ((q = TAILQ_FIRST(&c->reqs)) != NULL)
		req_free(q);
	evtimer_del(&c->probe_timer);
	http_client_free(c->http);
	free(c->base_url);
	free(c->username);
	wipe_free(c->password);
	free(c->ca_file);
	free(c->net_error);
	free(c->login_refused);
	if (c->login_ev != NULL)
		event_free(c->login_ev);
	wipe_free(c->basic);
	bearer_set(c, NULL);
	for (i = 0; i <= AIRFLOW_AUTH_BEARER; i++) {
		http_headers_free(c->headers[i][0]);
		http_headers_free(c->headers[i][1]);
	}
	free(c);
}

enum airflow_api
airflow_client_api(const struct airflow_client *c)
{
	return c->api;
}

void
airflow_client_stats(const struct airflow_client *c, struct airflow_stats *out)
{
	uint64_t sum = 0;
	unsigned i;

	memset(out, 0, sizeof *out);
	memcpy(out->requests, c->n_class, sizeof out->requests);
	out->retries = c->n_retries;
	out->breaker_opens = c->n_opens;
	out->breaker_open = c->open;
	out->login_refused = c->login_refused != NULL;
	out->in_flight = http_running(c->http);
	out->queued = http_queued(c->http);
	for (i = 0; i < AIRFLOW_LATENCY_BUCKETS; i++) {
		sum += c->lat_bucket[i];
		out->latency_le[i] = sum;
	}
	out->latency_count = sum;
	out->latency_sum_ms = c->lat_sum;
}

static struct airflow_req *
op_start(struct airflow_client *c, enum airflow_step step, airflow_cb cb, void *arg,
    const char *dag_id, const char *run_id)
{
	struct airflow_req *q = req_new(c, step, cb, arg, dag_id, run_id);

	req_attempt(q);
	return q;
}

/* Serialises a deploy's document; on the worker, the job is all it touches. */
static void
body_work(struct workq_job *wj)
{
	struct body_job *j = (struct body_job *)wj;

	if ((j->text = json_dumps(j->doc, JSON_COMPACT)) == NULL)
		ap_fatal("json_dumps failed");
	json_decref(j->doc);
	j->doc = NULL;
}

/* Back on the loop with the body written: the deploy's first attempt. */
static void
body_done(struct workq_job *wj)
{
	struct body_job *j = (struct body_job *)wj;
	struct airflow_req *q = j->q;

	if (q != NULL) {
		q->body = NULL;
		q->pipeline = j->text;
		j->text = NULL;
		if (!q->c->closing)
			req_attempt(q);
	}
	free(j->text);
	free(j);
}

/*
 * The document is kept as text, not as a tree: thousands of queued deploys
 * hold a few KB each. It is written on the worker thread (the caller no
 * longer changes it, see airflow.h; without a worker, here and now), the
 * rest of the request on the loop. Not an object: the attempt says so.
 */
static struct airflow_req *
op_deploy(void *impl, const json_t *pipeline, airflow_cb cb, void *arg)
{
	struct airflow_client *c = impl;
	struct airflow_req *q = req_new(c, AIRFLOW_STEP_DEPLOY, cb, arg, NULL, NULL);
	struct body_job *j;

	if (!json_is_object(pipeline)) {
		req_attempt(q);
		return q;
	}
	j = ap_xcalloc(1, sizeof *j);
	j->job.work = body_work;
	j->job.done = body_done;
	j->q = q;
	j->doc = json_incref((json_t *)pipeline);
	q->body = j;
	workq_submit(c->wq, &j->job);
	return q;
}

static struct airflow_req *
op_get_dag(void *impl, const char *dag_id, airflow_cb cb, void *arg)
{
	return op_start(impl, AIRFLOW_STEP_GET_DAG, cb, arg, dag_id, NULL);
}

static struct airflow_req *
op_unpause(void *impl, const char *dag_id, int64_t errors_since, airflow_cb cb,
    void *arg)
{
	struct airflow_client *c = impl;
	struct airflow_req *q = req_new(c, AIRFLOW_STEP_UNPAUSE, cb, arg, dag_id, NULL);

	q->errors_since = errors_since;
	req_attempt(q);
	return q;
}

static struct airflow_req *
op_trigger(void *impl, const char *dag_id, const char *dag_run_id, const json_t *conf,
    airflow_cb cb, void *arg)
{
	struct airflow_client *c = impl;
	struct airflow_req *q = req_new(c, AIRFLOW_STEP_TRIGGER, cb, arg, dag_id, dag_run_id);

	q->conf = conf != NULL ? json_deep_copy(conf) : NULL;
	req_attempt(q);
	return q;
}

static struct airflow_req *
op_get_run(void *impl, const char *dag_id, const char *dag_run_id, airflow_cb cb,
    void *arg)
{
	return op_start(impl, AIRFLOW_STEP_GET_RUN, cb, arg, dag_id, dag_run_id);
}

static struct airflow_req *
op_fail_run(void *impl, const char *dag_id, const char *dag_run_id, airflow_cb cb,
    void *arg)
{
	return op_start(impl, AIRFLOW_STEP_FAIL_RUN, cb, arg, dag_id, dag_run_id);
}

static void
op_cancel(void *impl, struct airflow_req *q)
{
	struct airflow_client *c = impl;
	bool was_probe = q != NULL && c->probe == q;

	if (q == NULL)
		return;
	req_free(q);
	if (was_probe && c->open)
		breaker_arm(c, 0);	/* the next waiter probes */
}

static void
op_limit(void *impl, struct airflow_req *q, int64_t left_ms)
{
	(void)impl;
	if (q == NULL)
		return;
	q->deadline = ap_mono_ms() + (uint64_t)(left_ms > 0 ? left_ms : 0);
	if (q->deadline == 0)
		q->deadline = 1;
	/* Already waiting for the breaker (it was open when q was made), or
	 * sent, queued, or waiting for version detection or a token. */
	if (q->timer_kind == T_BREAKER_WAIT)
		breaker_wait_arm(q);
	else if ((q->timer_kind == T_NONE || q->timer_kind == T_OUT_OF_TIME) &&
	    (q->http != NULL || q->waitq != NULL))
		req_bound_arm(q);
}

static void
op_guard(void *impl, struct airflow_req *q, bool (*ok)(void *), void *arg)
{
	(void)impl;
	if (q == NULL)
		return;
	q->guard = ok;
	q->guard_arg = arg;
	/* Its first send may wait for a free slot. */
	if (q->http != NULL)
		http_req_gate(q->http, req_gate);
}

void
airflow_limit(struct airflow_client *c, struct airflow_req *q, int64_t left_ms)
{
	op_limit(c, q, left_ms);
}

static bool
op_unreachable(void *impl)
{
	return ((struct airflow_client *)impl)->open;
}

static const struct airflow_ops client_ops = {
	.deploy = op_deploy,
	.get_dag = op_get_dag,
	.unpause = op_unpause,
	.trigger = op_trigger,
	.get_run = op_get_run,
	.fail_run = op_fail_run,
	.cancel = op_cancel,
	.limit = op_limit,
	.guard = op_guard,
	.unreachable = op_unreachable,
};

const struct airflow_ops *
airflow_client_ops(void)
{
	return &client_ops;
}

struct airflow_req *
airflow_health(struct airflow_client *c, airflow_cb cb, void *arg)
{
	return op_start(c, AIRFLOW_STEP_HEALTH, cb, arg, NULL, NULL);
}

struct airflow_req *
airflow_kill(struct airflow_client *c, const char *dag_id, airflow_cb cb, void *arg)
{
	return op_start(c, AIRFLOW_STEP_KILL, cb, arg, dag_id, NULL);
}

struct airflow_req *
airflow_delete(struct airflow_client *c, const char *dag_id, airflow_cb cb, void *arg)
{
	return op_start(c, AIRFLOW_STEP_DELETE, cb, arg, dag_id, NULL);
}
