/*
 * server.c — routes of `autopilot serve`: the OpenMetadata webhook, the admin
 * API, health, readiness and metrics. See server.h.
 */
#include "server.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sys/queue.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "log.h"
#include "pipeline.h"
#include "webhook.h"
#include "workq.h"

#define WEBHOOK_PATH "/api/v1/webhooks/openmetadata"
#define RUNS_PATH "/api/v1/runs"
/* A 503's detail for the runs, which may be read without a token (the
 * store's own words, its path among them, are logged). */
#define RUNS_UNREADABLE "the state store cannot be read now; try again later"
#define SERVICES_PATH "/api/v1/services/"
#define RERUN_SUFFIX "/rerun"
/* Bytes of request headers libevent reads before it gives up (431-like close). */
#define RUNS_LIMIT_MAX 1000
#define RUNS_LIMIT_DEFAULT 100
/* Runs handed to the scheduler per loop turn after a webhook commit. */
#define TAKE_PER_TURN 16
/* How long a look at Airflow (a probe's outcome, or an answer to other
 * work) stands for /readyz: at most one probe per this many ms. */
#define READY_FRESH_MS 5000
/* How long a /readyz waits for the probe (from its start) before it answers
 * that Airflow does not answer in time. */
#define READY_WAIT_MS 2000
/* How often a waiting /readyz looks whether an attempt of the probe failed. */
#define READY_TICK_MS 50
/* A look at Airflow (at start, for /readyz) gets this long, retries
 * included: one that hangs is said unreachable then, not after the
 * client's retries of request_timeout_ms each (minutes). */
#define PROBE_BUDGET_MS 15000
/* How recent a failure to reach Airflow must be to be named as why the
 * circuit breaker is open. */
#define BREAKER_WHY_MS 60000
/* How long accepting pauses when accept() fails for want of descriptors
 * (or memory), and how often at most that is logged. */
#define ACCEPT_PAUSE_MS 250
#define ACCEPT_WARN_MS 60000
/* How often connections are looked at for the request deadline. */
#define CONN_SWEEP_MS 1000

/* A read of the runs for GET /api/v1/runs[/{run_id}], made on the runs
 * thread through its read-only handle. */
struct runs_job {
	struct workq_job job;
	struct server *s;
	struct evhttp_request *req;	/* NULL once its connection closed */
	const char *path;
	struct store **store;		/* the worker's handle (s->runs_store) */
	char *run_id;			/* one run; NULL: the list */
	char *fqn;			/* the list's service, or NULL */
	char *before;			/* the list's runs made before it, or NULL */
	unsigned limit;
	char *next;			/* the list goes on before this run */
	enum store_result r;
	char *text;			/* the answer's JSON text */
	char *cause;
	TAILQ_ENTRY(runs_job) link;
};

/* Requests refused for their credentials, of one kind (log_refused()). */
enum refused_kind { REFUSED_WEBHOOK, REFUSED_ADMIN, REFUSED_DELIVERY,
	REFUSED_KINDS };
struct refusals {
	uint64_t logged_ms;	/* when the last line was logged */
	uint64_t unlogged;	/* refused since, not logged */
	char last[160];		/* the last of those: "from PEER: why" */
};

struct server {
	struct event_base *base;
	const struct config *cfg;
	struct webhook_key *key;	/* of cfg->webhook_secret, or NULL */
	struct server_deps deps;
	struct evhttp *http;
	struct evhttp_bound_socket *listener;
	unsigned port;
	bool draining;
	uint64_t outcomes[SERVER_OUTCOME_MAX];
	uint64_t admin_requests;
	struct refusals refused[REFUSED_KINDS];	/* log_refused() */
	uint64_t admin_denied;
	/* Webhook group commit (see struct pending). */
	struct event *flush_ev, *take_ev;
	struct pending *pending;
	size_t npending, pending_cap;
	json_t *take;			/* run ids waiting for sched_take */
	size_t take_next;
	/* Connections with a request being answered (awaiting its commit, or
	 * its answer not yet written out): what a drain waits for. */
	struct evhttp_connection **busy;
	size_t nbusy, busy_cap;
	/* Readiness of Airflow (see handle_readyz). */
	struct airflow_req *probe;	/* in flight, or NULL */
	uint64_t probe_started_ms;
	bool probe_logged;		/* the first outcome is logged, then changes */
	bool airflow_known;		/* airflow_ok holds a look at Airflow */
	bool airflow_ok;
	char *airflow_error;		/* why not, when !airflow_ok */
	const char *airflow_state;	/* "reachable", "unreachable", "rejected"... */
	uint64_t airflow_seen_ms;	/* when airflow_ok was learnt */
	uint64_t answers_2xx;		/* the client's 2xx answers at the last look */
	uint64_t answers_seen_ms;	/* when answers_2xx was read */
	/* The store's last writability check (readyz_answer). */
	uint64_t store_checked_ms;
	bool store_ok;
	char *store_why;		/* why not, when !store_ok */
	char *store_said;		/* the last such why logged, or NULL */
	struct evhttp_request **ready_waiting;	/* /readyz waiting for the probe */
	size_t nready_waiting, ready_waiting_cap;
	struct event *ready_timer;	/* answers them after READY_WAIT_MS */
	/* /metrics: the store's counts are read on a thread of their own,
	 * through a read-only handle, as counting every run ever made takes
	 * long on a large store (see handle_metrics). */
	struct workq *metrics_wq;
	struct store *metrics_store;	/* the worker's; opened at first use */
	struct metrics_job *metrics_job;	/* in flight, or NULL */
	struct evhttp_request **metrics_now;	/* answered by that job */
	size_t nmetrics_now, metrics_now_cap;
	struct evhttp_request **metrics_next;	/* came after it started */
	size_t nmetrics_next, metrics_next_cap;
	/* GET /api/v1/runs: read on a thread of its own too (a list of a
	 * thousand runs with their agents takes tens of ms). */
	struct workq *runs_wq;
	struct store *runs_store;	/* the worker's; opened at first use */
	TAILQ_HEAD(, runs_job) runs_jobs;	/* submitted, not done */
	bool closing;			/* in server_free */
	/* Accepting paused after accept() failed (see accept_error_cb). */
	struct event *accept_timer;
	uint64_t accept_warned_ms;
	uint64_t accept_failures;	/* since the last warning */
	/* Open connections (see conn_track): for listen.max_connections and
	 * the request deadline of listen.request_timeout_s. */
	TAILQ_HEAD(, conn_entry) conns;
	void *conn_tree;		/* tsearch() tree of the same, by evcon */
	size_t nconns;			/* tracked, and accepted ones to adopt */
	struct bufferevent **adopt;	/* accepted this turn, see conn_bev_cb */
	size_t nadopt, adopt_cap;
	struct event *adopt_ev, *sweep_ev, *close_ev;
	bool conn_capped;		/* accepting paused at max_connections */
	uint64_t cap_warned_ms;
	uint64_t conns_cut;		/* closed for missing the request deadline */
	uint64_t cut_warned_ms, cut_unwarned;
	/* Bytes of requests not yet answered, all connections together (see
	 * conn_input_cb), and the connections closed to keep them within
	 * listen.max_buffered_bytes. */
	size_t held, busy_held;		/* the latter by requests being answered */
	struct event *shed_ev;
	uint64_t conns_shed;
	uint64_t shed_warned_ms, shed_unwarned;
	struct server *next;		/* in the list accept_error_cb searches */
};

/* An open connection. */
struct conn_entry {
	TAILQ_ENTRY(conn_entry) link;
	struct server *s;
	struct evhttp_connection *evcon;
	uint64_t since_ms;		/* accepted, or its last answer written */
	bool close_now;			/* answered CONNECT: to be closed */
	struct bufferevent *bev;	/* libevent's, or NULL */
	struct evbuffer_cb_entry *input_cb;	/* conn_input_cb, on its input */
	size_t raw;			/* bytes received since its last answer */
	size_t held;			/* what they hold, as conn_input_cb counts */
	uint64_t begun_ms;		/* its first byte after that answer came */
	bool busy;			/* its request is being answered (busy_add) */
};

/* Servers of this process, for accept_error_cb (libevent hands it the
 * listener and evhttp's own argument only). */
static struct server *servers;

static const char *const outcome_names[SERVER_OUTCOME_MAX] = {
	"accepted", "repeated", "ignored", "invalid", "bad_request", "unauthorized",
	"method_not_allowed", "too_large", "unsupported_media_type",
	"too_many_headers", "unavailable"
};

/* ---- Answers. ---- */

/* The reason phrase of a webhook's answer that waited for its commit. */
static const char *
code_reason(int code)
{
	return code == 202 ? "Accepted" : code == 400 ? "Bad Request" : "OK";
}

/*
 * Sends an answer. The answer to HEAD is the one GET would get without its
 * body (libevent would write the body, which the client then reads as the
 * start of the next answer on the connection), with its Content-Length.
 */
static void
send_reply(struct evhttp_request *req, int code, const char *reason,
    struct evbuffer *out)
{
	char n[24];

	if (evhttp_request_get_command(req) != EVHTTP_REQ_HEAD) {
		evhttp_send_reply(req, code, reason, out);
		return;
	}
	snprintf(n, sizeof n, "%zu", evbuffer_get_length(out));
	evhttp_remove_header(evhttp_request_get_output_headers(req), "Content-Length");
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Length", n);
	evhttp_send_reply(req, code, reason, NULL);
}

/* Answers with a JSON text (and a newline). */
static void
reply_text(struct evhttp_request *req, int code, const char *reason, const char *text,
    size_t len)
{
	struct evbuffer *out = evbuffer_new();

	if (out == NULL)
		ap_fatal("out of memory");
	evbuffer_add(out, text, len);
	evbuffer_add(out, "\n", 1);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
	    "application/json");
	send_reply(req, code, reason, out);
	evbuffer_free(out);
}

/* A new JSON text of o (stolen). */
static char *
json_text(json_t *o)
{
	char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);

	if (text == NULL)
		ap_fatal("out of memory");
	json_decref(o);
	return text;
}

/* Steals body. NULL (a value jansson refused) answers 500, never aborts. */
static void
reply_json(struct evhttp_request *req, int code, const char *reason, json_t *body)
{
	static const char failed[] = "{\"error\":\"internal error\",\"detail\":"
	    "\"the answer could not be encoded\"}";
	char *text;

	if (body == NULL) {
		ap_error("http: the answer to %s could not be encoded (HTTP %d)",
		    evhttp_request_get_uri(req), code);
		reply_text(req, 500, "Internal Server Error", failed, sizeof failed - 1);
		return;
	}
	text = json_text(body);

	reply_text(req, code, reason, text, strlen(text));
	free(text);
}

static void
reply_error(struct evhttp_request *req, int code, const char *reason,
    const char *error, const char *detail)
{
	reply_json(req, code, reason, json_pack("{s:s, s:s}", "error", error,
	    "detail", detail != NULL ? detail : ""));
}

static void
reply_unavailable(struct evhttp_request *req, const char *detail)
{
	evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "5");
	reply_error(req, 503, "Service Unavailable", "unavailable", detail);
}

/* ---- Request helpers. ---- */

static const char *
header(struct evhttp_request *req, const char *name)
{
	return evhttp_find_header(evhttp_request_get_input_headers(req), name);
}

static unsigned
header_count(struct evhttp_request *req)
{
	struct evkeyvalq *h = evhttp_request_get_input_headers(req);
	struct evkeyval *kv;
	unsigned n = 0;

	for (kv = h->tqh_first; kv != NULL; kv = kv->next.tqe_next)
		n++;
	return n;
}

/* The 431 answer's detail (a new string). */
static char *
too_many_headers(const struct server *s)
{
	return ap_xprintf("more than %u request headers", s->cfg->max_headers);
}

/* Text from the request echoed in an answer (an unknown run id or service
 * type): at most 64 bytes, cut where a UTF-8 character starts, "…" after
 * when cut. A new string. */
static char *
echo_cut(const char *text)
{
	size_t n = strlen(text);

	if (n <= 64)
		return ap_xstrdup(text);
	for (n = 64; n > 0 && ((unsigned char)text[n] & 0xc0) == 0x80; n--)
		;
	return ap_xprintf("%.*s…", (int)n, text);
}

/* Whether the request has the header more than once. */
static bool
header_repeated(struct evhttp_request *req, const char *name)
{
	struct evkeyvalq *h = evhttp_request_get_input_headers(req);
	struct evkeyval *kv;
	unsigned n = 0;

	for (kv = h->tqh_first; kv != NULL; kv = kv->next.tqe_next)
		if (strcasecmp(kv->key, name) == 0 && ++n > 1)
			return true;
	return false;
}

/* GET, or HEAD: the same answer without its body (send_reply). */
static bool
method_get(struct evhttp_request *req)
{
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);

	return cmd == EVHTTP_REQ_GET || cmd == EVHTTP_REQ_HEAD;
}

/* True for application/json, with or without parameters (charset=utf-8). */
static bool
content_type_json(const char *ct)
{
	size_t n = strlen("application/json");

	if (ct == NULL)
		return false;
	while (*ct == ' ')
		ct++;
	return strncasecmp(ct, "application/json", n) == 0 &&
	    (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

/* The request body as one contiguous block (owned by the request). */
static const char *
body(struct evhttp_request *req, size_t *len)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);

	*len = evbuffer_get_length(in);
	if (*len == 0)
		return "";
	return (const char *)evbuffer_pullup(in, -1);
}

/*
 * Why the body is refused before it is looked at (new string), or NULL when
 * it is within listen.max_body_bytes. Checked before body() makes a
 * contiguous copy of it.
 */
static char *
body_too_large(const struct server *s, struct evhttp_request *req)
{
	size_t len = evbuffer_get_length(evhttp_request_get_input_buffer(req));

	if (len <= s->cfg->max_body_bytes)
		return NULL;
	return ap_xprintf("body of %zu bytes is larger than the limit of %zu"
	    " (listen.max_body_bytes)", len, s->cfg->max_body_bytes);
}

/* Whether every '%' of s[0..n) starts a percent-encoded byte (libevent
 * keeps any other as it is, which a client that meant it encoded did not). */
static bool
percent_ok(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (s[i] == '%' && (n - i < 3 || !isxdigit((unsigned char)s[i + 1]) ||
		    !isxdigit((unsigned char)s[i + 2])))
			return false;
	return true;
}

/*
 * The parameters of query q into params (initialised here). Empty ones
 * (a=1&, &a=1, a=1&&b=2) are passed over, as URL parsers do, where libevent
 * takes only one at the end. 0, or -1 when one has no '=' or an empty name.
 */
static int
query_parse(const char *q, struct evkeyvalq *params)
{
	struct ap_buf b;
	const char *p, *amp;
	int rc;

	TAILQ_INIT(params);
	ap_buf_init(&b);
	for (p = q; *p != '\0'; p = *amp != '\0' ? amp + 1 : amp) {
		if ((amp = strchr(p, '&')) == NULL)
			amp = p + strlen(p);
		if (amp == p)
			continue;
		if (b.len > 0)
			ap_buf_addc(&b, '&');
		ap_buf_add(&b, p, (size_t)(amp - p));
	}
	rc = evhttp_parse_query_str(b.data != NULL ? b.data : "", params);
	ap_buf_cleanup(&b);
	return rc;
}

/*
 * The decoded query parameter name: a new string in *out, NULL when it is
 * not given. -1 and a new *cause for a query that cannot mean one thing: a
 * parameter without "=", name given twice, an encoded NUL (which would cut
 * the value short), a '%' that encodes nothing, a value not UTF-8.
 */
static int
query_param(struct evhttp_request *req, const char *name, char **out, char **cause)
{
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *q = uri != NULL ? evhttp_uri_get_query(uri) : NULL;
	struct evkeyvalq params;
	struct evkeyval *kv;
	int rc = 0;

	*out = NULL;
	if (q == NULL)
		return 0;
	if (strstr(q, "%00") != NULL) {
		*cause = ap_xstrdup("query: contains an encoded NUL (%00)");
		return -1;
	}
	if (!percent_ok(q, strlen(q))) {
		*cause = ap_xstrdup("query: a '%' not followed by two hex digits"
		    " (write a '%' as %25)");
		return -1;
	}
	if (query_parse(q, &params) != 0) {
		evhttp_clear_headers(&params);
		*cause = ap_xstrdup("query: cannot be read (each parameter is"
		    " name=value, joined by &)");
		return -1;
	}
	TAILQ_FOREACH(kv, &params, next) {
		if (strcmp(kv->key, name) != 0)
			continue;
		if (*out != NULL) {
			free(*out);
			*out = NULL;
			*cause = ap_xprintf("%s: given twice", name);
			rc = -1;
			break;
		}
		if (!ap_utf8_valid(kv->value, strlen(kv->value))) {
			*cause = ap_xprintf("%s: not UTF-8 once decoded", name);
			rc = -1;
			break;
		}
		*out = ap_xstrdup(kv->value);
	}
	evhttp_clear_headers(&params);
	return rc;
}

/* The query parameters of GET /api/v1/runs, and of a re-run. */
static const char *const runs_params[] = { "service", "limit", "before", NULL };
static const char *const rerun_params[] = { "replace", NULL };
static const char *const no_params[] = { NULL };

/* 0 if every query parameter is one of names (NULL-terminated), else -1
 * and a new *cause naming the first that is not: a misspelt filter would
 * otherwise be ignored and everything listed. */
static int
query_known(struct evhttp_request *req, const char *const *names, char **cause)
{
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *q = uri != NULL ? evhttp_uri_get_query(uri) : NULL;
	struct evkeyvalq params;
	struct evkeyval *kv;
	struct ap_buf known;
	char *key;
	size_t i;
	int rc = 0;

	if (q == NULL)
		return 0;
	if (query_parse(q, &params) != 0) {
		evhttp_clear_headers(&params);
		return 0;	/* query_param() says what is wrong */
	}
	TAILQ_FOREACH(kv, &params, next) {
		for (i = 0; names[i] != NULL && strcmp(kv->key, names[i]) != 0; i++)
			;
		if (names[i] != NULL)
			continue;
		ap_buf_init(&known);
		for (i = 0; names[i] != NULL; i++) {
			ap_buf_adds(&known, i > 0 ? ", " : "");
			ap_buf_adds(&known, names[i]);
		}
		key = ap_printable(kv->key);
		*cause = ap_xprintf("query: unknown parameter '%.64s' (known: %s)", key,
		    known.data != NULL ? known.data : "none");
		free(key);
		ap_buf_cleanup(&known);
		rc = -1;
		break;
	}
	evhttp_clear_headers(&params);
	return rc;
}

/* The percent-decoded path (new string), or NULL if it cannot be decoded. */
static char *
decoded(const char *s, size_t n)
{
	char *raw, *d;
	size_t len;

	if (!percent_ok(s, n))
		return NULL;
	raw = ap_xstrndup(s, n);
	d = evhttp_uridecode(raw, 0, &len);
	free(raw);
	if (d == NULL)
		return NULL;
	/* An encoded NUL, or bytes that are not UTF-8 (no name or id is). */
	if (strlen(d) != len || !ap_utf8_valid(d, len)) {
		free(d);
		return NULL;
	}
	return d;
}

/* s as one word for a POSIX shell, in single quotes when it needs them. */
static char *
shell_quoted(const char *s)
{
	struct ap_buf b;
	const char *p;

	if (*s != '\0' && strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "0123456789_.-+:@/,=") == strlen(s))
		return ap_xstrdup(s);
	ap_buf_init(&b);
	ap_buf_addc(&b, '\'');
	for (p = s; *p != '\0'; p++) {
		if (*p == '\'')
			ap_buf_adds(&b, "'\\''");
		else
			ap_buf_addc(&b, *p);
	}
	ap_buf_addc(&b, '\'');
	return ap_buf_steal(&b, NULL);
}

/* The client's address, for the log ("?" when libevent has none). */
static void
peer_of(struct evhttp_request *req, char *buf, size_t size)
{
	struct evhttp_connection *conn = evhttp_request_get_connection(req);
	const char *addr = NULL;
	ev_uint16_t port = 0;

	if (conn != NULL)
		evhttp_connection_get_peer(conn, (char **)&addr, &port);
	if (addr != NULL)
		snprintf(buf, size, "%s:%u", addr, (unsigned)port);
	else
		snprintf(buf, size, "?");
}

/*
 * A request refused for its credentials, logged (at most one line a second
 * for each kind, webhook or admin; the sweep logs how many more were within
 * that second, with the last of them): a wrong secret or token is the
 * operator's to fix, and a burst of guesses is seen whole.
 */
static const char *const refused_what[REFUSED_KINDS] = { "webhook",
	"admin request", "webhook delivery" };

static void refused_flush(struct server *, uint64_t, bool);

static void
log_refused(struct server *s, struct evhttp_request *req, enum refused_kind k,
    const char *event_id, const char *why)
{
	struct refusals *r = &s->refused[k];
	uint64_t now = ap_mono_ms();
	char peer[80];

	peer_of(req, peer, sizeof peer);
	if (r->logged_ms != 0 && now - r->logged_ms < 1000) {
		r->unlogged++;
		snprintf(r->last, sizeof r->last, "from %s: %s", peer, why);
		return;
	}
	refused_flush(s, now, true);
	ap_log_about(AP_LOG_WARN, &(struct ap_log_about){ .event_id = event_id },
	    "%s refused from %s: %s", refused_what[k], peer, why);
	r->logged_ms = now;
}

/* Logs the refusals not logged yet, of a second gone by (or all: now). */
static void
refused_flush(struct server *s, uint64_t now, bool all)
{
	struct refusals *r;
	unsigned k;

	for (k = 0; k < REFUSED_KINDS; k++) {
		r = &s->refused[k];
		if (r->unlogged == 0 || (!all && now - r->logged_ms < 1000))
			continue;
		ap_warn("%s: %" PRIu64 " more refused within a second of the last"
		    " such line, the last %s", refused_what[k], r->unlogged, r->last);
		r->unlogged = 0;
	}
}

/*
 * Admin routes take "Authorization: Bearer <token>", compared in constant
 * time. Answers 401 itself and returns false when the caller is not admitted.
 */
static bool
admin_ok(struct server *s, struct evhttp_request *req)
{
	const char *auth = header(req, "Authorization"), *tok;

	s->admin_requests++;
	if (s->cfg->admin_token == NULL) {
		log_refused(s, req, REFUSED_ADMIN, NULL, "no admin token is configured");
		s->admin_denied++;
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    "WWW-Authenticate", "Bearer");
		reply_error(req, 401, "Unauthorized", "unauthorized", "admin endpoints"
		    " are off: no admin token is configured (AUTOPILOT_ADMIN_TOKEN)");
		return false;
	}
	if (auth == NULL || strncasecmp(auth, "Bearer ", 7) != 0) {
		log_refused(s, req, REFUSED_ADMIN, NULL, "no bearer token");
		s->admin_denied++;
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    "WWW-Authenticate", "Bearer");
		reply_error(req, 401, "Unauthorized", "unauthorized",
		    "missing \"Authorization: Bearer <admin token>\" header");
		return false;
	}
	tok = auth + 7;
	if (!ap_consttime_eq(tok, strlen(tok), s->cfg->admin_token,
	    strlen(s->cfg->admin_token))) {
		log_refused(s, req, REFUSED_ADMIN, NULL, "the token does not match");
		s->admin_denied++;
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    "WWW-Authenticate", "Bearer error=\"invalid_token\"");
		reply_error(req, 401, "Unauthorized", "unauthorized",
		    "the admin token does not match");
		return false;
	}
	return true;
}

/* ---- The webhook. ---- */

/*
 * Answers a delivery refused. One OpenMetadata will never get through as it
 * is (a 400, or a 413: too large) loses its event for good, so the operator
 * sees it at log.level "warn", with the sender and, for a 400, the event id
 * when the body has one.
 */
static void
webhook_fail(struct server *s, struct evhttp_request *req, enum server_outcome o,
    int code, const char *reason, const char *error, const char *detail)
{
	s->outcomes[o]++;
	if (code == 401)
		log_refused(s, req, REFUSED_WEBHOOK, NULL, detail != NULL ?
		    detail : error);
	else if (code == 400 || code == 413) {
		char *id = NULL, *why;
		size_t len;
		const char *data = code == 400 ? body(req, &len) : NULL;

		if (data != NULL)
			id = webhook_event_id(data, len);
		why = ap_xprintf("%d%s%s%s: %s: %s", code, id != NULL ? " (event " :
		    "", id != NULL ? id : "", id != NULL ? ")" : "", error,
		    detail != NULL ? detail : "");
		/* Limited as refusals for credentials are: a 413 comes before
		 * the signature is looked at. */
		log_refused(s, req, REFUSED_DELIVERY, id, why);
		free(why);
		free(id);
	} else
		ap_info("webhook: %d %s: %s", code, error, detail != NULL ? detail : "");
	if (code == 503)
		reply_unavailable(req, detail);
	else
		reply_error(req, code, reason, error, detail);
}

/*
 * Group commit. Events accepted during one loop turn join one store batch;
 * at the end of the turn (the flush event) it is committed and only then
 * are their 202s sent, so many deliveries in flight share one fsync. A
 * delivery whose connection closed meanwhile is dropped (OpenMetadata
 * delivers it again and gets the original answer). Runs are handed to the
 * scheduler after the commit, a few per turn, so ingest never waits for
 * planning.
 */
struct pending {
	struct evhttp_request *req;	/* NULL once freed with its connection */
	struct evhttp_connection *conn;
	char *answer;			/* JSON text */
	int code;
	unsigned accepted, repeated, ignored, invalid;
	json_t *take;			/* run ids to hand to the scheduler */
	json_t *notes;			/* log lines, said once committed */
	uint64_t failures;		/* store_batch_failures() when stored */
	/* What a delivery answered 503 stored before the store failed (no
	 * answer, no count): handed over and said once committed. */
	bool stored_only;
};

/* ---- Connections. ---- */

/*
 * Every connection is tracked from its accept (conn_bev_cb, the bufferevent
 * libevent asks for, then conn_adopt_cb once the connection exists) to its
 * close (conn_closed): at listen.max_connections accepting pauses, and a
 * connection that has not delivered a whole request within
 * listen.request_timeout_s of its accept or of its previous answer is
 * closed (libevent's own timeout only counts silence, which a client
 * trickling a byte at a time never leaves).
 */

static int
conn_cmp(const void *a, const void *b)
{
	uintptr_t x = (uintptr_t)((const struct conn_entry *)a)->evcon;
	uintptr_t y = (uintptr_t)((const struct conn_entry *)b)->evcon;

	return x < y ? -1 : x > y;
}

static struct conn_entry *
conn_find(struct server *s, struct evhttp_connection *evcon)
{
	struct conn_entry key = { .evcon = evcon };
	void **n = tfind(&key, &s->conn_tree, conn_cmp);

	return n != NULL ? *n : NULL;
}

/* Accepting goes on once below max_connections (unless paused for want of
 * descriptors: accept_resume_cb then decides). */
static void
conn_uncap(struct server *s)
{
	if (!s->conn_capped || s->nconns >= s->cfg->max_connections)
		return;
	s->conn_capped = false;
	if (s->listener != NULL && s->accept_timer != NULL &&
	    !evtimer_pending(s->accept_timer, NULL))
		evconnlistener_enable(evhttp_bound_socket_get_listener(s->listener));
}

static void
conn_forget(struct server *s, struct conn_entry *e)
{
	if (e->input_cb != NULL)
		evbuffer_remove_cb_entry(bufferevent_get_input(e->bev), e->input_cb);
	s->held -= e->held;
	if (e->busy)
		s->busy_held -= e->held;
	tdelete(e, &s->conn_tree, conn_cmp);
	TAILQ_REMOVE(&s->conns, e, link);
	free(e);
	s->nconns--;
	conn_uncap(s);
}

static void conn_closed(struct evhttp_connection *, void *);

/* Closes e's connection (forgotten first: conn_closed finds nothing). */
static void
conn_close(struct server *s, struct conn_entry *e)
{
	struct evhttp_connection *evcon = e->evcon;

	conn_forget(s, e);
	evhttp_connection_free(evcon);
}

/* Whether requests not yet whole hold more than listen.max_buffered_bytes. */
static bool
conn_over_budget(const struct server *s)
{
	return s->held - s->busy_held > s->cfg->max_buffered_bytes;
}

/* What libevent keeps of one header line beyond its bytes: an entry and
 * copies of its name and value, each a block of its own. */
#define HEADER_LINE_COST 128

/* The line ends among the n bytes at the end of buf that lie within the
 * first CONFIG_MAX_HEADER_BYTES of a request (raw bytes came before them). */
static size_t
conn_header_lines(struct evbuffer *buf, size_t n, size_t raw)
{
	struct evbuffer_iovec v[8];
	struct evbuffer_ptr at;
	size_t len = evbuffer_get_length(buf), lines = 0, left, k;
	const char *p, *end;
	int nv, i;

	if (raw >= CONFIG_MAX_HEADER_BYTES || n > len)
		return 0;
	left = n < CONFIG_MAX_HEADER_BYTES - raw ? n : CONFIG_MAX_HEADER_BYTES - raw;
	if (evbuffer_ptr_set(buf, &at, len - n, EVBUFFER_PTR_SET) < 0)
		return 0;
	nv = evbuffer_peek(buf, (ev_ssize_t)left, &at, v, 8);
	for (i = 0; i < nv && i < 8 && left > 0; i++) {
		k = v[i].iov_len < left ? v[i].iov_len : left;
		p = v[i].iov_base;
		end = p + k;
		while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
			lines++;
			p++;
		}
		left -= k;
	}
	return lines;
}

/*
 * Counts what a connection receives: every byte read into its bufferevent
 * stays in memory until its request is answered (libevent moves the body
 * into the request, and parses header lines into entries that take more
 * than their bytes), so what it received since its last answer is what it
 * holds, and what all hold is bounded by listen.max_buffered_bytes: past
 * it, conn_shed_cb closes connections. A connection counts no more than one
 * request may hold (a body past libevent's limit is read and dropped, and
 * its input stops at that much while it waits).
 */
static void
conn_input_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	struct conn_entry *e = arg;
	struct server *s = e->s;
	size_t n = info->n_added, room;

	if (n == 0)
		return;
	if (e->raw == 0)
		e->begun_ms = ap_mono_ms();
	n += conn_header_lines(buf, n, e->raw) * HEADER_LINE_COST;
	e->raw += info->n_added;
	room = config_request_bytes_max(s->cfg) - e->held;
	if (n > room)
		n = room;
	e->held += n;
	s->held += n;
	if (e->busy)
		s->busy_held += n;
	else if (conn_over_budget(s))
		event_active(s->shed_ev, EV_TIMEOUT, 1);
}

/* e's request is answered (or e is new): what it holds is what came after it
 * (what its input has, of the next request), it is not busy, and it may read
 * a whole request. */
static void
conn_held_reset(struct server *s, struct conn_entry *e)
{
	size_t max = config_request_bytes_max(s->cfg);
	size_t n = e->bev != NULL ? evbuffer_get_length(bufferevent_get_input(e->bev)) : 0;

	if (e->busy)
		s->busy_held -= e->held;
	e->busy = false;
	e->raw = n;
	e->begun_ms = ap_mono_ms();
	if (n > max)
		n = max;
	s->held = s->held - e->held + n;
	e->held = n;
	if (e->bev != NULL)
		bufferevent_setwatermark(e->bev, EV_READ, 0, max);
	if (conn_over_budget(s))
		event_active(s->shed_ev, EV_TIMEOUT, 1);
}

/* Tracks evcon (once), already counted in nconns when counted. */
static struct conn_entry *
conn_track(struct server *s, struct evhttp_connection *evcon, bool counted)
{
	struct conn_entry *e;
	struct bufferevent *bev;

	if ((e = conn_find(s, evcon)) != NULL) {
		if (counted)
			s->nconns--;
		return e;
	}
	e = ap_xcalloc(1, sizeof *e);
	e->s = s;
	e->evcon = evcon;
	e->since_ms = ap_mono_ms();
	if (tsearch(e, &s->conn_tree, conn_cmp) == NULL)
		ap_fatal("out of memory");
	if ((bev = evhttp_connection_get_bufferevent(evcon)) != NULL) {
		/* Reading stops at what one request may hold (no less: a chunk
		 * of a body is taken whole), and less while an answer is
		 * written (busy_add). */
		e->bev = bev;
		if ((e->input_cb = evbuffer_add_cb(bufferevent_get_input(bev),
		    conn_input_cb, e)) == NULL)
			ap_fatal("out of memory");
		conn_held_reset(s, e);
	}
	TAILQ_INSERT_TAIL(&s->conns, e, link);
	if (!counted)
		s->nconns++;
	evhttp_connection_set_closecb(evcon, conn_closed, s);
	return e;
}

/*
 * libevent asks for the bufferevent of each connection it accepts: held
 * (one reference) until conn_adopt_cb, later in this turn, finds the
 * connection it went to. The bufferevent closes the socket itself, when
 * freed: a connection libevent frees before its adoption only shuts its
 * socket down, so the descriptor cannot be reused (and its new event lost
 * beside this one's, still registered) while the reference holds it. At
 * max_connections the listener stops here, before it accepts the next.
 */
static struct bufferevent *
conn_bev_cb(struct event_base *base, void *arg)
{
	struct server *s = arg;
	struct bufferevent *bev;
	uint64_t now;

	if ((bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE)) == NULL)
		return NULL;	/* libevent tries itself; busy_add tracks it */
	bufferevent_incref(bev);
	if (s->nadopt == s->adopt_cap) {
		s->adopt_cap = s->adopt_cap == 0 ? 16 : s->adopt_cap * 2;
		s->adopt = ap_xreallocarray(s->adopt, s->adopt_cap, sizeof *s->adopt);
	}
	s->adopt[s->nadopt++] = bev;
	s->nconns++;
	event_active(s->adopt_ev, EV_TIMEOUT, 0);
	if (s->nconns >= s->cfg->max_connections && s->listener != NULL &&
	    !s->conn_capped) {
		s->conn_capped = true;
		evconnlistener_disable(evhttp_bound_socket_get_listener(s->listener));
		now = ap_mono_ms();
		if (s->cap_warned_ms == 0 || now - s->cap_warned_ms >= ACCEPT_WARN_MS) {
			ap_warn("http: %zu connections open (listen.max_connections);"
			    " new ones wait until some close", s->nconns);
			s->cap_warned_ms = now;
		}
	}
	return bev;
}

static void
conn_adopt_cb(evutil_socket_t fd, short what, void *arg)
{
	struct server *s = arg;
	bufferevent_data_cb readcb;
	void *evcon;
	size_t i, n = s->nadopt;

	(void)fd;
	(void)what;
	s->nadopt = 0;
	for (i = 0; i < n; i++) {
		/* libevent's connection sets itself as the argument of its
		 * callbacks; freed already, it left none. */
		bufferevent_getcb(s->adopt[i], &readcb, NULL, NULL, &evcon);
		if (readcb != NULL && evcon != NULL)
			conn_track(s, evcon, true);
		else
			s->nconns--;
		bufferevent_decref(s->adopt[i]);
	}
	conn_uncap(s);
}

static bool
conn_busy(const struct server *s, const struct evhttp_connection *evcon)
{
	size_t i;

	for (i = 0; i < s->nbusy; i++)
		if (s->busy[i] == evcon)
			return true;
	return false;
}

static void probe_start(struct server *);

static void conn_shed_warn(struct server *, uint64_t);

/* Closes the connections past the request deadline. */
static void
conn_sweep_cb(evutil_socket_t fd, short what, void *arg)
{
	struct server *s = arg;
	struct conn_entry *e, *next;
	uint64_t now = ap_mono_ms(), limit = (uint64_t)s->cfg->request_timeout_s * 1000;

	(void)fd;
	(void)what;
	for (e = TAILQ_FIRST(&s->conns); e != NULL; e = next) {
		next = TAILQ_NEXT(e, link);
		/* A request being answered is ours; request_done restarts
		 * the deadline. */
		if (conn_busy(s, e->evcon) || now - e->since_ms < limit)
			continue;
		conn_close(s, e);
		s->conns_cut++;
		s->cut_unwarned++;
	}
	if (s->cut_unwarned > 0 && (s->cut_warned_ms == 0 ||
	    now - s->cut_warned_ms >= ACCEPT_WARN_MS)) {
		ap_warn("http: closed %llu connection%s that delivered no whole request"
		    " within %u s (listen.request_timeout_s)",
		    (unsigned long long)s->cut_unwarned, s->cut_unwarned == 1 ? "" : "s",
		    s->cfg->request_timeout_s);
		s->cut_warned_ms = now;
		s->cut_unwarned = 0;
	}
	conn_shed_warn(s, now);
	refused_flush(s, now, false);
	/* While the breaker is open, the client probes only for a request
	 * that waits: a server with no work would never see Airflow back, and
	 * /readyz (which then answers at once) would stay 503. One look at a
	 * time, at most every READY_FRESH_MS. */
	if (s->deps.airflow_ops != NULL && s->deps.airflow_health != NULL &&
	    s->probe == NULL && !s->draining &&
	    s->deps.airflow_ops->unreachable(s->deps.airflow) &&
	    now - s->probe_started_ms >= READY_FRESH_MS)
		probe_start(s);
}

/* Says what was shed, at most once a minute (the sweep says the rest). */
static void
conn_shed_warn(struct server *s, uint64_t now)
{
	if (s->shed_unwarned == 0 || (s->shed_warned_ms != 0 &&
	    now - s->shed_warned_ms < ACCEPT_WARN_MS))
		return;
	ap_warn("http: closed %llu connection%s waiting longest for a whole request,"
	    " to keep what requests not yet whole hold within %zu bytes"
	    " (listen.max_buffered_bytes)", (unsigned long long)s->shed_unwarned,
	    s->shed_unwarned == 1 ? "" : "s", s->cfg->max_buffered_bytes);
	s->shed_warned_ms = now;
	s->shed_unwarned = 0;
}

/*
 * Closes connections while those whose request has not reached a route hold
 * more than listen.max_buffered_bytes: the one waiting longest for its
 * request to be whole first (a delivery comes whole within moments; clients
 * holding bytes wait), the one holding most among those equally old. A
 * request being answered is ours, and is let finish; what it holds does
 * not count, so it closes no other. A client closed gets no answer:
 * OpenMetadata delivers again.
 */
static void
conn_shed_cb(evutil_socket_t fd, short what, void *arg)
{
	struct server *s = arg;
	struct conn_entry *e, *first;

	(void)fd;
	(void)what;
	while (conn_over_budget(s)) {
		first = NULL;
		TAILQ_FOREACH(e, &s->conns, link)
			if (e->held > 0 && !e->busy && !e->close_now && (first == NULL ||
			    e->begun_ms < first->begun_ms || (e->begun_ms == first->begun_ms &&
			    e->held > first->held)))
				first = e;
		if (first == NULL)
			break;
		conn_close(s, first);
		s->conns_shed++;
		s->shed_unwarned++;
	}
	conn_shed_warn(s, ap_mono_ms());
}

/* Closes the connections whose CONNECT is answered (close_ev, activated by
 * request_done: outside libevent's callback, after the last byte). */
static void
conn_close_cb(evutil_socket_t fd, short what, void *arg)
{
	struct server *s = arg;
	struct conn_entry *e, *next;

	(void)fd;
	(void)what;
	for (e = TAILQ_FIRST(&s->conns); e != NULL; e = next) {
		next = TAILQ_NEXT(e, link);
		if (!e->close_now)
			continue;
		conn_close(s, e);
	}
}

/* ---- Requests in progress (for the drain). ---- */

static void
busy_remove(struct server *s, struct evhttp_connection *conn)
{
	size_t i;

	for (i = 0; i < s->nbusy; i++)
		if (s->busy[i] == conn) {
			s->busy[i] = s->busy[--s->nbusy];
			return;
		}
}

/* The answer is written out (libevent calls this after the last byte). */
static void
request_done(struct evhttp_request *req, void *arg)
{
	struct server *s = arg;
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	struct conn_entry *e;

	busy_remove(s, evcon);
	/* The next request's deadline counts from here. */
	if (evcon != NULL && (e = conn_find(s, evcon)) != NULL) {
		e->since_ms = ap_mono_ms();
		/* Its request goes now; what came after it stays. */
		conn_held_reset(s, e);
		/* libevent keeps a connection open after CONNECT whatever the
		 * headers say; its answer is written, so it closes now. */
		if (evhttp_request_get_command(req) == EVHTTP_REQ_CONNECT) {
			e->close_now = true;
			event_active(s->close_ev, EV_TIMEOUT, 1);
		}
	}
}

/* Requests waiting for something (a probe, a reading): kept in a list
 * whose entries a closing connection clears (NULL). */
static void
park(struct evhttp_request ***list, size_t *n, size_t *cap,
    struct evhttp_request *req)
{
	if (*n == *cap) {
		*cap = *cap == 0 ? 16 : *cap * 2;
		*list = ap_xreallocarray(*list, *cap, sizeof **list);
	}
	(*list)[(*n)++] = req;
}

static void
unpark(struct evhttp_request **list, size_t n, struct evhttp_connection *conn)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (list[i] != NULL && evhttp_request_get_connection(list[i]) == conn)
			list[i] = NULL;
}

/* A connection closed: its answer will not be written, and a delivery
 * waiting for the commit has no one to answer any more. */
static void
conn_closed(struct evhttp_connection *conn, void *arg)
{
	struct server *s = arg;
	struct conn_entry *e;
	struct runs_job *j;
	size_t i;

	busy_remove(s, conn);
	if ((e = conn_find(s, conn)) != NULL)
		conn_forget(s, e);
	/* A request libevent detached from its closing connection is ours
	 * (answering it frees it); one still on it is freed with it. */
	for (i = 0; i < s->npending; i++)
		if (s->pending[i].conn == conn) {
			s->pending[i].conn = NULL;
			if (s->pending[i].req != NULL &&
			    evhttp_request_get_connection(s->pending[i].req) == conn)
				s->pending[i].req = NULL;
		}
	unpark(s->ready_waiting, s->nready_waiting, conn);
	unpark(s->metrics_now, s->nmetrics_now, conn);
	unpark(s->metrics_next, s->nmetrics_next, conn);
	TAILQ_FOREACH(j, &s->runs_jobs, link)
		if (j->req != NULL && evhttp_request_get_connection(j->req) == conn)
			j->req = NULL;
}

static void
busy_add(struct server *s, struct evhttp_request *req)
{
	struct evhttp_connection *conn = evhttp_request_get_connection(req);
	struct conn_entry *e;

	if (conn == NULL)
		return;
	if (s->nbusy == s->busy_cap) {
		s->busy_cap = s->busy_cap == 0 ? 64 : s->busy_cap * 2;
		s->busy = ap_xreallocarray(s->busy, s->busy_cap, sizeof *s->busy);
	}
	s->busy[s->nbusy++] = conn;
	evhttp_request_set_on_complete_cb(req, request_done, s);
	/* (Its deadline waits while the request is busy; request_done
	 * restarts it.) What it holds no longer counts against the others. */
	e = conn_track(s, conn, false);
	if (!e->busy) {
		e->busy = true;
		s->busy_held += e->held;
		/* libevent reads on while it writes the answer, with nothing
		 * taking what comes (pipelined requests, or anything): a little
		 * is enough until it does. */
		if (e->bev != NULL)
			bufferevent_setwatermark(e->bev, EV_READ, 0, CONFIG_MAX_HEADER_BYTES);
	}
	/* While draining, each connection closes after its answer. */
	if (s->draining)
		evhttp_add_header(evhttp_request_get_output_headers(req), "Connection",
		    "close");
}

static void
take_cb(evutil_socket_t fd, short what, void *arg)
{
	struct server *s = arg;
	unsigned n = 0;
	char *why = NULL;
	const char *id;

	(void)fd;
	(void)what;
	/* The claims and first state changes of these runs share one commit. */
	if (store_batch_open(s->deps.store) ||
	    store_batch_begin(s->deps.store, &why) == STORE_OK)
		event_active(s->flush_ev, EV_TIMEOUT, 0);
	else {
		ap_warn("webhook: %s", why);
		free(why);
		why = NULL;
	}
	while (s->take_next < json_array_size(s->take) && n++ < TAKE_PER_TURN) {
		id = json_string_value(json_array_get(s->take, s->take_next++));
		/* Held by another process (a CLI re-run) or already final: that
		 * process finishes it; recovery covers a crash in between. */
		if (sched_take(s->deps.sched, id, &why) < 0) {
			ap_log_about(AP_LOG_DEBUG, &(struct ap_log_about){
			    .run_id = id }, "webhook: run %s not driven here: %s",
			    id, why);
			free(why);
			why = NULL;
		}
	}
	if (s->take_next < json_array_size(s->take))
		event_active(s->take_ev, EV_TIMEOUT, 0);
	else {
		json_array_clear(s->take);
		s->take_next = 0;
	}
}

/* A delivery's events are committed: their runs go to the scheduler
 * (take_cb), and what is to be said of them is said. */
static void
pending_commit(struct server *s, const struct pending *p)
{
	size_t j;

	for (j = 0; j < json_array_size(p->take); j++)
		json_array_append(s->take, json_array_get(p->take, j));
	/* Said as what they are: stored, though a stored_only delivery was not. */
	for (j = 0; j < json_array_size(p->notes); j++) {
		const json_t *n = json_array_get(p->notes, j);

		ap_log_about(AP_LOG_INFO, &(struct ap_log_about){
		    .run_id = json_string_value(json_object_get(n, "run_id")),
		    .event_id = json_string_value(json_object_get(n, "event_id")),
		    .fqn = json_string_value(json_object_get(n, "fqn")) }, "%s%s",
		    json_string_value(json_object_get(n, "msg")), p->stored_only ?
		    " (stored, though its delivery was answered 503 for a later"
		    " event)" : "");
	}
}

static void
flush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct server *s = arg;
	struct pending *p;
	char *cause = NULL;
	uint64_t failures;
	bool flushed, ok;
	size_t i;

	(void)fd;
	(void)what;
	flushed = store_flush(s->deps.store, &cause) == STORE_OK;
	failures = store_batch_failures(s->deps.store);
	if (!flushed) {
		ap_error("webhook: %zu deliveries not stored: %s", s->npending, cause);
		/* The scheduler's changes in the same batch are lost too. */
		sched_store_failed(s->deps.sched, cause);
		free(cause);
	}
	for (i = 0; i < s->npending; i++) {
		p = &s->pending[i];
		/* A batch that failed since this delivery was stored (here or in
		 * the scheduler's flush) took it with it. */
		ok = flushed && p->failures == failures;
		if (p->stored_only) {
			if (ok)
				pending_commit(s, p);
		} else if (!ok) {
			s->outcomes[SERVER_UNAVAILABLE]++;
			if (p->req != NULL)
				reply_unavailable(p->req, "the state store cannot take the"
				    " event now; deliver again later");
		} else {
			s->outcomes[SERVER_ACCEPTED] += p->accepted;
			s->outcomes[SERVER_REPEATED] += p->repeated;
			s->outcomes[SERVER_IGNORED] += p->ignored;
			s->outcomes[SERVER_INVALID] += p->invalid;
			pending_commit(s, p);
			if (p->code == 400)
				s->outcomes[SERVER_BAD_REQUEST]++;
			if (p->req != NULL)
				reply_text(p->req, p->code, code_reason(p->code),
				    p->answer, strlen(p->answer));
		}
		free(p->answer);
		json_decref(p->take);
		json_decref(p->notes);
	}
	s->npending = 0;
	if (json_array_size(s->take) > 0)
		event_active(s->take_ev, EV_TIMEOUT, 0);
}

/* Queues p (copied) for the turn's flush (flush_cb). */
static void
pending_add(struct server *s, const struct pending *p)
{
	if (s->npending == s->pending_cap) {
		s->pending_cap = s->pending_cap == 0 ? 64 : s->pending_cap * 2;
		s->pending = ap_xreallocarray(s->pending, s->pending_cap,
		    sizeof *s->pending);
	}
	s->pending[s->npending++] = *p;
}

/* How a stored event was answered (webhook_accept). */
enum {
	ANSWER_REPEATED = 1,	/* "repeated": the event id was seen before */
	ANSWER_JOINED = 2,	/* "joined": the service's active run */
	ANSWER_FOLLOWS = 4	/* "follows": and a run of its own follows it */
};

/* Adds one acted-on event to the open batch: its run id (a new string), or
 * NULL and *cause on failure; *how is ANSWER_* bits. What is to be logged of
 * it goes into notes, said once the batch is committed (a batch that fails
 * stored nothing). */
static char *
webhook_accept(struct server *s, const struct webhook_event *ev, json_t *take,
    json_t *notes, unsigned *how, char **cause)
{
	enum store_result r;
	char *entity, *run_id = NULL, *note;
	bool joined, follows;

	entity = json_dumps(ev->entity, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (entity == NULL)
		ap_fatal("out of memory");
	r = store_inbox_accept(s->deps.store, ev->id, ev->entity_type, ev->fqn, entity,
	    &run_id, &joined, &follows, cause);
	free(entity);
	if (r != STORE_OK && r != STORE_REPEAT)
		return NULL;
	*how = r == STORE_REPEAT ? ANSWER_REPEATED : joined ? ANSWER_JOINED |
	    (follows ? ANSWER_FOLLOWS : 0) : 0;
	if (joined)
		note = ap_xprintf("webhook: event %s (%s %s) joins the service's active"
		    " run %s, %s", ev->id, ev->entity_type, ev->fqn, run_id, follows ?
		    "which goes on with the entity it started with; a run of the"
		    " whole plan with this event's entity follows it" : "and asks for"
		    " nothing more (the run's own entity and the whole plan, or a run"
		    " not taken up yet, which takes this event's entity); it takes"
		    " back a run an earlier event may have asked to follow");
	else
		note = ap_xprintf("webhook: event %s (%s %s) %s: run %s", ev->id,
		    ev->entity_type, ev->fqn, r == STORE_REPEAT ? "repeated" :
		    "accepted", run_id);
	json_array_append_new(notes, json_pack("{s:s, s:s, s:s, s:s}", "msg",
	    note, "run_id", run_id, "event_id", ev->id, "fqn", ev->fqn));
	free(note);
	/*
	 * A repeat too: its first delivery may have been answered 503 after
	 * its run was committed (a later event of that delivery failed), and
	 * that run was then handed to nobody. The scheduler passes over runs
	 * it drives already or that are finished.
	 */
	json_array_append_new(take, json_string(run_id));
	return run_id;
}

/* Characters a run id is made of (store_new_run_id), none of which JSON escapes. */
static bool
json_plain(const char *v)
{
	for (; *v != '\0'; v++)
		if (!((*v >= '0' && *v <= '9') || (*v >= 'a' && *v <= 'z') ||
		    (*v >= 'A' && *v <= 'Z') || *v == '-' || *v == '_' || *v == '.'))
			return false;
	return true;
}

/* What is answered of a stored event: {"id": …, "run_id": …} with
 * "repeated", "joined" and "follows" true as how says, without "id" when id
 * is NULL (a delivery of that event alone). */
static json_t *
webhook_result(const char *id, const char *run_id, unsigned how)
{
	json_t *o = json_object();

	if (id != NULL)
		json_object_set_new(o, "id", json_string(id));
	json_object_set_new(o, "run_id", json_string(run_id));
	if (how & ANSWER_REPEATED)
		json_object_set_new(o, "repeated", json_true());
	if (how & ANSWER_JOINED)
		json_object_set_new(o, "joined", json_true());
	if (how & ANSWER_FOLLOWS)
		json_object_set_new(o, "follows", json_true());
	return o;
}

/* The answer to a delivery of one stored event, as text (a new string);
 * formatted directly when the id needs no escaping, as every id autopilot
 * makes. */
static char *
webhook_answer(const char *run_id, unsigned how)
{
	if (json_plain(run_id))
		return ap_xprintf("{\"run_id\":\"%s\"%s%s%s}", run_id,
		    how & ANSWER_REPEATED ? ",\"repeated\":true" : "",
		    how & ANSWER_JOINED ? ",\"joined\":true" : "",
		    how & ANSWER_FOLLOWS ? ",\"follows\":true" : "");
	return json_text(webhook_result(NULL, run_id, how));
}

static void
handle_webhook(struct server *s, struct evhttp_request *req)
{
	struct webhook_batch b;
	enum webhook_parse_result pr;
	enum webhook_sig sig;
	struct pending p = { 0 };
	const char *data, *detail;
	char *cause = NULL, *msg, *run_id;
	json_t *results;
	size_t len, i;
	unsigned how;
	char *invalid = NULL;
	bool single;

	if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "POST");
		webhook_fail(s, req, SERVER_NOT_ALLOWED, 405, "Method Not Allowed",
		    "method not allowed", "the webhook takes POST");
		return;
	}
	if (s->draining) {
		webhook_fail(s, req, SERVER_UNAVAILABLE, 503, NULL, "unavailable",
		    "shutting down; deliver again later");
		return;
	}
	if (header_count(req) > s->cfg->max_headers) {
		msg = too_many_headers(s);
		webhook_fail(s, req, SERVER_TOO_MANY_HEADERS, 431,
		    "Request Header Fields Too Large", "too many headers", msg);
		free(msg);
		return;
	}
	if (!content_type_json(header(req, "Content-Type"))) {
		char *given = header(req, "Content-Type") != NULL ?
		    ap_printable(header(req, "Content-Type")) : ap_xstrdup("missing");

		msg = ap_xprintf("Content-Type must be application/json, not %s", given);
		webhook_fail(s, req, SERVER_UNSUPPORTED, 415, "Unsupported Media Type",
		    "unsupported media type", msg);
		free(given);
		free(msg);
		return;
	}
	if ((msg = body_too_large(s, req)) != NULL) {
		webhook_fail(s, req, SERVER_TOO_LARGE, 413, "Payload Too Large",
		    "payload too large", msg);
		free(msg);
		return;
	}
	data = body(req, &len);
	if (s->key != NULL) {
		sig = webhook_key_verify(s->key, data, len,
		    header(req, "X-OM-Signature"), &detail);
		if (sig != WEBHOOK_SIG_OK) {
			webhook_fail(s, req, SERVER_UNAUTHORIZED, 401, "Unauthorized",
			    "bad signature", detail);
			return;
		}
	}
	pr = webhook_parse(data, len, s->cfg->max_json_depth, &b, &cause);
	if (pr != WEBHOOK_PARSE_OK) {
		webhook_fail(s, req, SERVER_BAD_REQUEST, 400, "Bad Request",
		    pr == WEBHOOK_PARSE_TOO_DEEP ? "too deeply nested" :
		    pr == WEBHOOK_PARSE_BAD_JSON ? "malformed JSON" : "invalid event",
		    cause);
		free(cause);
		return;
	}

	/* Each event is a savepoint in the batch: if the store fails half-way,
	 * the delivery is answered 503, OpenMetadata delivers it again and the
	 * events already stored are answered as repeats. */
	/* One event alone is answered by itself, a batch with its results. */
	single = !b.batched && b.n == 1;
	results = single ? NULL : json_array();
	p.take = json_array();
	p.notes = json_array();
	p.failures = store_batch_failures(s->deps.store);
	for (i = 0; i < b.n; i++) {
		const struct webhook_event *ev = &b.events[i];

		if (ev->action == WEBHOOK_INVALID) {
			char *id = ev->id != NULL ? ap_printable(ev->id) : NULL;

			ap_log_about(AP_LOG_WARN, &(struct ap_log_about){
			    .event_id = ev->id }, "webhook: event %s of a batch"
			    " cannot be read: %s", id != NULL ? id : "without an id",
			    ev->reason);
			free(id);
			if (p.invalid++ == 0)
				invalid = ap_xstrdup(ev->reason);
			json_array_append_new(results, ev->id != NULL ?
			    json_pack("{s:s, s:s}", "id", ev->id, "error", ev->reason) :
			    json_pack("{s:s}", "error", ev->reason));
			continue;
		}
		if (ev->action != WEBHOOK_ACT) {
			ap_log_about(AP_LOG_INFO, &(struct ap_log_about){
			    .event_id = ev->id }, "webhook: event %s ignored: %s",
			    ev->id, ev->reason);
			p.ignored++;
			if (single)
				p.answer = json_text(json_pack("{s:s}", "ignored",
				    ev->reason));
			else
				json_array_append_new(results, json_pack("{s:s, s:s}",
				    "id", ev->id, "ignored", ev->reason));
			continue;
		}
		if (!store_batch_open(s->deps.store) &&
		    store_batch_begin(s->deps.store, &cause) != STORE_OK)
			goto store_failed;
		/* Whoever opened the batch, this turn's flush answers. */
		event_active(s->flush_ev, EV_TIMEOUT, 0);
		if ((run_id = webhook_accept(s, ev, p.take, p.notes, &how, &cause)) ==
		    NULL)
			goto store_failed;
		if (how & ANSWER_REPEATED)
			p.repeated++;
		else
			p.accepted++;
		if (single)
			p.answer = webhook_answer(run_id, how);
		else
			json_array_append_new(results, webhook_result(ev->id, run_id,
			    how));
		free(run_id);
	}

	/*
	 * Events that cannot be read make the delivery a 400, as a single one
	 * is, but the others are stored all the same (and answered in the
	 * results): OpenMetadata delivers it again, to no avail for those,
	 * and the others are then repeats.
	 */
	if (p.invalid > 0) {
		if (p.invalid == b.n)
			msg = b.n > 1 ? ap_xprintf("%s (no event of the %zu in this"
			    " delivery can be read, see results)", invalid, b.n) :
			    ap_xstrdup(invalid);
		else if (p.invalid > 1)
			msg = ap_xprintf("%s (and %u more events that cannot be read;"
			    " the others were served, see results)", invalid,
			    p.invalid - 1);
		else
			msg = ap_xprintf("%s (the other events were served, see"
			    " results)", invalid);
		p.answer = json_text(json_pack("{s:s, s:s, s:o}", "error",
		    "invalid event", "detail", msg, "results", results));
		free(msg);
	} else if (!single)
		p.answer = json_text(json_pack("{s:o}", "results", results));
	free(invalid);
	webhook_batch_cleanup(&b);
	p.code = p.invalid > 0 ? 400 : p.accepted + p.repeated > 0 ? 202 : 200;
	if (p.accepted + p.repeated == 0) {
		/* Nothing stored: answer now. */
		s->outcomes[SERVER_IGNORED] += p.ignored;
		s->outcomes[SERVER_INVALID] += p.invalid;
		if (p.code == 400)
			s->outcomes[SERVER_BAD_REQUEST]++;
		reply_text(req, p.code, code_reason(p.code), p.answer,
		    strlen(p.answer));
		free(p.answer);
		json_decref(p.take);
		json_decref(p.notes);
		return;
	}
	p.req = req;
	p.conn = evhttp_request_get_connection(req);
	pending_add(s, &p);
	return;

store_failed:
	ap_error("webhook: a delivery not stored: %s", cause);
	s->outcomes[SERVER_UNAVAILABLE]++;
	reply_unavailable(req, "the state store cannot take the event now; deliver"
	    " again later");
	free(cause);
	json_decref(results);
	free(p.answer);
	free(invalid);
	/* The events before the one that failed stay in the batch (each is
	 * a savepoint): once committed, their runs are driven. */
	if (json_array_size(p.take) > 0) {
		p.answer = NULL;
		p.stored_only = true;
		pending_add(s, &p);
	} else {
		json_decref(p.take);
		json_decref(p.notes);
	}
	webhook_batch_cleanup(&b);
}

static void
runs_work(struct workq_job *wj)
{
	struct runs_job *j = (struct runs_job *)wj;
	struct store_options o = { .read_only = true };
	json_t *out = NULL;

	j->r = STORE_ERROR;
	if (*j->store == NULL && (*j->store = store_open(j->path, &o, &j->cause)) == NULL)
		return;
	/* One run more than asked for says whether the list goes on. */
	j->r = j->run_id != NULL ? store_run_json(*j->store, j->run_id, &out, &j->cause) :
	    store_runs_page(*j->store, j->fqn, j->before, j->limit + 1, &out,
	    &j->cause);
	if (j->r == STORE_OK && j->run_id == NULL && json_array_size(out) > j->limit) {
		json_array_remove(out, j->limit);
		j->next = ap_xstrdup(json_string_value(json_object_get(
		    json_array_get(out, j->limit - 1), "run_id")));
	}
	if (j->r == STORE_OK)
		j->text = json_text(out);	/* a large list takes ms too */
	if (j->r != STORE_OK && j->r != STORE_NOT_FOUND) {
		/* Opened again for the next read. */
		store_close(*j->store);
		*j->store = NULL;
	}
}

/* A list cut at its limit says where it goes on (RFC 8288). */
static void
runs_link_next(struct runs_job *j)
{
	char *next = evhttp_uriencode(j->next, -1, 0), *svc = NULL, *link;

	if (j->fqn != NULL)
		svc = evhttp_uriencode(j->fqn, -1, 0);
	link = ap_xprintf("<%s?%s%s%slimit=%u&before=%s>; rel=\"next\"", RUNS_PATH,
	    svc != NULL ? "service=" : "", svc != NULL ? svc : "", svc != NULL ?
	    "&" : "", j->limit, next != NULL ? next : "");
	evhttp_add_header(evhttp_request_get_output_headers(j->req), "Link", link);
	free(link);
	free(svc);
	free(next);
}

static void
runs_done(struct workq_job *wj)
{
	struct runs_job *j = (struct runs_job *)wj;
	char *shown, *msg;

	TAILQ_REMOVE(&j->s->runs_jobs, j, link);
	/* (No answer for a client that went away.) */
	if (j->req != NULL && j->r == STORE_NOT_FOUND) {
		shown = echo_cut(j->run_id != NULL ? j->run_id : j->before);
		msg = ap_xprintf(j->run_id != NULL ? "no run %s" : "before: no run %s",
		    shown);
		reply_error(j->req, 404, "Not Found", "not found", msg);
		free(shown);
		free(msg);
	} else if (j->req != NULL && j->r != STORE_OK) {
		/* The store's own words (its path among them) go to the log:
		 * the runs may be read without a token. */
		ap_warn("runs: cannot be read: %s", j->cause != NULL ? j->cause :
		    "state store error");
		reply_unavailable(j->req, RUNS_UNREADABLE);
	} else if (j->req != NULL) {
		if (j->next != NULL)
			runs_link_next(j);
		reply_text(j->req, 200, "OK", j->text, strlen(j->text));
	}
	free(j->text);
	free(j->run_id);
	free(j->fqn);
	free(j->before);
	free(j->next);
	free(j->cause);
	free(j);
}

/*
 * Reads one run (run_id, stolen) or the list (fqn, stolen, and limit) on
 * the runs thread, and answers req with it. What the loop has written is
 * committed first, so that the read sees every run answered so far.
 */
static void
runs_start(struct server *s, struct evhttp_request *req, char *run_id, char *fqn,
    char *before, unsigned limit)
{
	struct runs_job *j;
	char *cause = NULL;

	if (store_flush(s->deps.store, &cause) != STORE_OK) {
		ap_warn("runs: cannot be read: %s", cause);
		reply_unavailable(req, RUNS_UNREADABLE);
		free(cause);
		free(run_id);
		free(fqn);
		free(before);
		return;
	}
	j = ap_xcalloc(1, sizeof *j);
	j->job.work = runs_work;
	j->job.done = runs_done;	/* on the loop; at once if no thread */
	j->s = s;
	j->req = req;
	j->path = s->cfg->state_path;
	j->store = &s->runs_store;
	j->run_id = run_id;
	j->fqn = fqn;
	j->before = before;
	j->limit = limit != 0 ? limit : RUNS_LIMIT_DEFAULT;
	TAILQ_INSERT_TAIL(&s->runs_jobs, j, link);
	workq_submit(s->runs_wq, &j->job);
}

/* ---- Admin API. ---- */

static void
handle_runs(struct server *s, struct evhttp_request *req, const char *path)
{
	char *fqn, *lim, *before, *cause = NULL, *id;
	unsigned long limit = 0;

	if (!method_get(req)) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
		    "GET, HEAD");
		reply_error(req, 405, "Method Not Allowed", "method not allowed",
		    "runs are read with GET");
		return;
	}
	/* Open, as /metrics is, unless admin.protect_runs asks for the token. */
	if (s->cfg->protect_runs && !admin_ok(s, req))
		return;
	if (path[strlen(RUNS_PATH)] == '/') {
		const char *raw = path + strlen(RUNS_PATH) + 1;

		if ((id = decoded(raw, strlen(raw))) == NULL || *id == '\0' ||
		    strchr(id, '/') != NULL) {
			reply_error(req, 404, "Not Found", "not found", "no such run");
			free(id);
			return;
		}
		/* As for the list: a parameter it takes none of is said. */
		if (query_known(req, no_params, &cause) < 0) {
			reply_error(req, 400, "Bad Request", "bad query", cause);
			free(cause);
			free(id);
			return;
		}
		runs_start(s, req, id, NULL, NULL, 0);
		return;
	}
	fqn = lim = before = NULL;
	if (query_known(req, runs_params, &cause) < 0 ||
	    query_param(req, "service", &fqn, &cause) < 0 ||
	    query_param(req, "limit", &lim, &cause) < 0 ||
	    query_param(req, "before", &before, &cause) < 0) {
		reply_error(req, 400, "Bad Request", "bad query", cause);
		free(cause);
		free(fqn);
		free(lim);
		free(before);
		return;
	}
	if (lim != NULL) {
		if (ap_parse_uint(lim, 1, RUNS_LIMIT_MAX, &limit) < 0) {
			char *msg = ap_xprintf("limit: must be an integer from 1 to %d",
			    RUNS_LIMIT_MAX);

			reply_error(req, 400, "Bad Request", "bad query", msg);
			free(msg);
			free(lim);
			free(fqn);
			free(before);
			return;
		}
	}
	free(lim);
	if (before != NULL && before[0] == '\0') {
		reply_error(req, 400, "Bad Request", "bad query",
		    "before: must name a run (a run_id)");
		free(fqn);
		free(before);
		return;
	}
	runs_start(s, req, NULL, fqn, before, (unsigned)limit);
}

/* The optional body of a re-run: {"agents": [...], "replace": bool}. */
static int
rerun_options(struct evhttp_request *req, json_t **agents_out, bool *replace,
    char **cause)
{
	json_error_t jerr;
	const char *data;
	json_t *root, *v, *a;
	const char *key;
	size_t len, i;
	char *q;

	*agents_out = NULL;
	/* A misspelt ?replace= would re-run without replacing. */
	if (query_known(req, rerun_params, cause) < 0 ||
	    query_param(req, "replace", &q, cause) < 0)
		return -1;
	if (q != NULL) {
		if (strcmp(q, "true") != 0 && strcmp(q, "1") != 0 &&
		    strcmp(q, "false") != 0 && strcmp(q, "0") != 0) {
			char *shown = echo_cut(q);

			*cause = ap_xprintf("replace: must be true or false, not '%s'",
			    shown);
			free(shown);
			free(q);
			return -1;
		}
		*replace = strcmp(q, "true") == 0 || strcmp(q, "1") == 0;
		free(q);
	}
	data = body(req, &len);
	if (len == 0)
		return 0;
	root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL) {
		*cause = ap_xprintf("body: %s (line %d, column %d)", jerr.text,
		    jerr.line, jerr.column);
		return -1;
	}
	if (!json_is_object(root)) {
		*cause = ap_xstrdup("body: must be an object {\"agents\": [...],"
		    " \"replace\": bool}");
		goto fail;
	}
	json_object_foreach(root, key, v) {
		if (strcmp(key, "agents") != 0 && strcmp(key, "replace") != 0) {
			/* A typo must not re-run every agent. */
			char *shown = echo_cut(key);

			*cause = ap_xprintf("body: unknown key '%s' (expected \"agents\""
			    " and \"replace\")", shown);
			free(shown);
			goto fail;
		}
	}
	if ((v = json_object_get(root, "replace")) != NULL) {
		if (!json_is_boolean(v)) {
			*cause = ap_xstrdup("replace: must be true or false");
			goto fail;
		}
		*replace = json_is_true(v);
	}
	if ((v = json_object_get(root, "agents")) != NULL) {
		if (!json_is_array(v) || json_array_size(v) == 0 ||
		    json_array_size(v) > PIPELINE_AGENT_MAX) {
			char *names = plan_agent_names();

			*cause = json_is_array(v) && json_array_size(v) > 0 ?
			    ap_xprintf("agents: %zu names, more than there are agents"
			    " (%s)", json_array_size(v), names) : ap_xprintf("agents:"
			    " must be a non-empty list of agent names (of %s)", names);
			free(names);
			goto fail;
		}
		json_array_foreach(v, i, a) {
			if (!json_is_string(a)) {
				*cause = ap_xprintf("agents[%zu]: must be a string", i);
				goto fail;
			}
		}
		*agents_out = json_incref(v);
	}
	json_decref(root);
	return 0;
fail:
	json_decref(root);
	return -1;
}

/* A re-run refused: answered, and logged with who asked (a 409 is logged
 * by the handler, with the active run). */
static void
rerun_refused(struct evhttp_request *req, const char *type, const char *fqn,
    int code, const char *reason, const char *error, const char *detail)
{
	char peer[80], *shown = type != NULL ? echo_cut(type) : NULL;

	/* The type as the answer shows it: its first 64 bytes. */
	peer_of(req, peer, sizeof peer);
	ap_log_about(AP_LOG_INFO, &(struct ap_log_about){ .fqn = fqn },
	    "admin: re-run%s%s%s%s refused from %s: %d %s: %s", type != NULL ||
	    fqn != NULL ? " of " : "", shown != NULL ? shown : "", shown != NULL &&
	    fqn != NULL ? " " : "", fqn != NULL ? fqn : "", peer, code, error,
	    detail != NULL ? detail : "");
	free(shown);
	reply_error(req, code, reason, error, detail);
}

/*
 * Whether a re-run of the service (entity borrowed) with these agents
 * (NULL: the whole plan) can be planned: every name is an agent and in the
 * service's plan. -1 and a new *cause naming the bad entry otherwise.
 */
static int
rerun_check_plan(struct server *s, const char *type, const char *fqn,
    const json_t *entity, const char *const *names, char **cause)
{
	enum pipeline_agent agent;
	char *why = NULL, *known, *shown;
	int k, bad;

	for (k = 0; names != NULL && names[k] != NULL; k++) {
		if (pipeline_agent_parse(names[k], &agent))
			continue;
		known = plan_agent_names();
		shown = echo_cut(names[k]);
		*cause = ap_xprintf("agents[%d]: unknown agent '%s' (agents: %s)", k,
		    shown, known);
		free(shown);
		free(known);
		return -1;
	}
	if (s->deps.plan == NULL ||
	    plan_check_agents(s->deps.plan, type, fqn, entity, names, &bad, &why) == 0)
		return 0;
	if (bad >= 0)
		*cause = ap_xprintf("agents[%d]: %s", bad, why);
	else
		*cause = ap_xstrdup(why);
	free(why);
	return -1;
}

static void
handle_rerun(struct server *s, struct evhttp_request *req, const char *path)
{
	const char *rest = path + strlen(SERVICES_PATH), *slash;
	char *type = NULL, *fqn = NULL, *entity_text = NULL, *cause = NULL;
	char *run_id = NULL, *msg, *names_text = NULL, peer[80];
	const char *names[SCHED_MAX_AGENTS + 1];
	json_t *agents = NULL, *entity = NULL, *out;
	json_error_t jerr;
	enum store_result r;
	bool replace = false;
	size_t i;

	if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "POST");
		reply_error(req, 405, "Method Not Allowed", "method not allowed",
		    "a re-run is requested with POST");
		return;
	}
	if (!admin_ok(s, req))
		return;
	if (s->draining) {
		reply_unavailable(req, "shutting down");
		return;
	}
	slash = strchr(rest, '/');
	if (slash == NULL || slash == rest ||
	    (size_t)(slash - rest) + strlen(RERUN_SUFFIX) >= strlen(rest)) {
		rerun_refused(req, type, fqn, 404, "Not Found", "not found",
		    "expected /api/v1/services/{serviceType}/{fqn}/rerun");
		goto out;
	}
	type = decoded(rest, (size_t)(slash - rest));
	fqn = decoded(slash + 1, strlen(slash + 1) - strlen(RERUN_SUFFIX));
	if (type == NULL || fqn == NULL) {
		rerun_refused(req, type, fqn, 400, "Bad Request", "bad path",
		    "the service type or name is not valid percent-encoding of UTF-8");
		goto out;
	}
	if (*fqn == '\0') {
		rerun_refused(req, type, fqn, 400, "Bad Request", "bad path", "the service name is"
		    " empty: expected /api/v1/services/{serviceType}/{fqn}/rerun");
		goto out;
	}
	if (strlen(fqn) > WEBHOOK_MAX_FQN) {
		/* As the webhook refuses such a name, none is stored. */
		msg = ap_xprintf("the service name is longer than %d characters",
		    WEBHOOK_MAX_FQN);
		rerun_refused(req, type, fqn, 400, "Bad Request", "bad path", msg);
		free(msg);
		goto out;
	}
	if (plan_service_kind(type) == NULL) {
		struct ap_buf b;
		char *shown = echo_cut(type);

		ap_buf_init(&b);
		ap_buf_printf(&b, "'%s' is not a service type autopilot acts on;"
		    " valid types:", shown);
		free(shown);
		for (i = 0; plan_service_types[i] != NULL; i++)
			ap_buf_printf(&b, "%s %s", i > 0 ? "," : "", plan_service_types[i]);
		rerun_refused(req, type, fqn, 400, "Bad Request", "unknown service type", b.data);
		ap_buf_cleanup(&b);
		goto out;
	}
	if ((msg = body_too_large(s, req)) != NULL) {
		rerun_refused(req, type, fqn, 413, "Payload Too Large", "payload too large", msg);
		free(msg);
		goto out;
	}
	if (rerun_options(req, &agents, &replace, &cause) < 0) {
		rerun_refused(req, type, fqn, 400, "Bad Request", "bad request", cause);
		goto out;
	}
	r = store_service_get(s->deps.store, type, fqn, &entity_text, NULL, &cause);
	if (r == STORE_NOT_FOUND) {
		char *q = shell_quoted(fqn);

		/* Options first, and "--" before a name that begins with '-'. */
		msg = ap_xprintf("no entity received for %s '%s'; run `autopilot run"
		    " --type %s --service-json FILE %s%s` (or with OpenMetadata"
		    " configured) to re-run it", type, fqn, type, fqn[0] == '-' ?
		    "-- " : "", q);
		free(q);
		rerun_refused(req, type, fqn, 404, "Not Found", "unknown service", msg);
		free(msg);
		goto out;
	}
	if (r != STORE_OK) {
		reply_unavailable(req, cause);
		goto out;
	}
	if ((entity = json_loads(entity_text, 0, &jerr)) == NULL) {
		msg = ap_xprintf("the stored entity of %s is not JSON: %s", fqn, jerr.text);
		rerun_refused(req, type, fqn, 500, "Internal Server Error", "bad stored entity", msg);
		free(msg);
		goto out;
	}
	free(cause);
	cause = NULL;
	if (agents != NULL) {
		json_t *a;

		struct ap_buf nb;

		ap_buf_init(&nb);
		json_array_foreach(agents, i, a) {
			names[i] = json_string_value(a);
			ap_buf_printf(&nb, "%s%s", i > 0 ? ", " : "", names[i]);
		}
		names[i] = NULL;
		names_text = ap_buf_steal(&nb, NULL);
	}
	/* Checked before anything is created or replaced: a run that would
	 * fail at once must not end the active one. */
	if (rerun_check_plan(s, type, fqn, entity, agents != NULL ? names : NULL,
	    &cause) < 0) {
		rerun_refused(req, type, fqn, 400, "Bad Request", "bad request", cause);
		goto out;
	}
	peer_of(req, peer, sizeof peer);
	msg = ap_xprintf("admin re-run from %s%s", peer, replace ? ", replacing"
	    " any active run" : "");
	r = sched_submit(s->deps.sched, type, fqn, entity, agents != NULL ? names : NULL,
	    replace, msg, &run_id, &cause);
	free(msg);
	switch (r) {
	case STORE_OK:
		ap_log_about(AP_LOG_INFO, &(struct ap_log_about){ .run_id =
		    run_id, .fqn = fqn }, "admin: re-run of %s %s from %s: run"
		    " %s, %s%s%s", type, fqn, peer, run_id, agents != NULL ?
		    "agents " : "every agent", agents != NULL ? names_text : "",
		    replace ? " (replacing any active run)" : "");
		reply_json(req, 202, "Accepted", json_pack("{s:s}", "run_id", run_id));
		break;
	case STORE_ACTIVE:
		ap_log_about(AP_LOG_INFO, &(struct ap_log_about){ .run_id =
		    run_id, .fqn = fqn }, "admin: re-run of %s %s refused from %s:"
		    " 409 active run: %s", type, fqn, peer, cause != NULL ? cause :
		    "");
		out = json_pack("{s:s, s:s, s:s}", "error", "active run", "detail",
		    cause != NULL ? cause : "", "run_id", run_id);
		reply_json(req, 409, "Conflict", out);
		break;
	default:
		reply_unavailable(req, cause);
		break;
	}
out:
	json_decref(agents);
	json_decref(entity);
	free(names_text);
	free(entity_text);
	free(run_id);
	free(cause);
	free(type);
	free(fqn);
}

/* ---- Health, readiness, metrics. ---- */

/*
 * Readiness. The store is checked in the request (one short write). Airflow
 * is looked at through its client without blocking: the circuit breaker
 * open means unreachable at once; a look younger than READY_FRESH_MS (a
 * probe's outcome, or a 2xx answer to other work since a recent look)
 * stands; otherwise one probe (the plugin's health route, as `autopilot
 * run` checks before it starts) is sent and the request waits for it, at
 * most READY_WAIT_MS from the probe's start. Probes never overlap, so a
 * storm of /readyz costs Airflow one request per READY_FRESH_MS.
 */

/* Why the client's last attempt since since_ms got no answer (a new
 * string), or NULL. */
static char *
airflow_network_error(struct server *s, uint64_t since_ms)
{
	if (s->deps.airflow_network_error == NULL)
		return NULL;
	return s->deps.airflow_network_error(s->deps.airflow, since_ms);
}

static void
readyz_answer(struct server *s, struct evhttp_request *req, bool timed_out)
{
	const char *cause;
	bool store_ok, airflow_ok;
	const char *airflow_state;
	const char *airflow_error = NULL;
	char *late = NULL, *last = NULL;
	uint64_t now;
	json_t *out;

	/* The check commits a write: at most one a second, however often
	 * probes come; the others are answered with its outcome. */
	now = ap_mono_ms();
	if (s->store_checked_ms == 0 || now - s->store_checked_ms >= 1000) {
		free(s->store_why);
		s->store_why = NULL;
		s->store_ok = store_check_writable(s->deps.store,
		    &s->store_why) == STORE_OK;
		s->store_checked_ms = now;
		/* Said once in the log too (whoever watches only the log). */
		if (!s->store_ok && !ap_streq(s->store_why, s->store_said)) {
			ap_warn("readyz: the state store is not writable: %s",
			    s->store_why != NULL ? s->store_why : "?");
			free(s->store_said);
			s->store_said = ap_xstrdup(s->store_why != NULL ? s->store_why : "?");
		} else if (s->store_ok && s->store_said != NULL) {
			ap_info("readyz: the state store is writable again");
			free(s->store_said);
			s->store_said = NULL;
		}
	}
	store_ok = s->store_ok;
	cause = s->store_why;
	if (s->deps.airflow_ops == NULL) {
		airflow_ok = true;
		airflow_state = "reachable";
	} else if (s->deps.airflow_ops->unreachable(s->deps.airflow)) {
		airflow_ok = false;
		airflow_state = "unreachable";
		/* With why, when attempts got no answer lately (a refused
		 * connection is said as such). */
		now = ap_mono_ms();
		last = airflow_network_error(s, now > BREAKER_WHY_MS ?
		    now - BREAKER_WHY_MS : 0);
		if (last != NULL)
			airflow_error = late = ap_xprintf("circuit breaker open: Airflow"
			    " failed repeatedly; the last attempt to reach it failed: %s",
			    last);
		else
			airflow_error = "circuit breaker open: Airflow failed repeatedly";
	} else if (s->deps.airflow_health == NULL) {
		airflow_ok = true;	/* as far as the breaker knows */
		airflow_state = "reachable";
	} else if (timed_out || !s->airflow_known) {
		/* The check may have started before this request did: its own
		 * age, not READY_WAIT_MS, is how long Airflow has not answered. */
		unsigned long long waited = ap_mono_ms() - s->probe_started_ms;

		airflow_ok = false;
		airflow_state = "unreachable";
		/* The client may be retrying attempts that failed: say why (a
		 * refused connection is no slow Airflow). */
		last = timed_out ? airflow_network_error(s, s->probe_started_ms) : NULL;
		if (last != NULL)
			airflow_error = late = ap_xprintf("no answer to the health"
			    " check sent %llu ms ago; the last attempt to reach Airflow"
			    " failed: %s", waited, last);
		else if (timed_out)
			airflow_error = late = ap_xprintf("no answer to the health"
			    " check sent %llu ms ago", waited);
		else
			airflow_error = "not checked yet";
	} else {
		airflow_ok = s->airflow_ok;
		airflow_state = s->airflow_state;
		airflow_error = s->airflow_error;
	}
	out = json_pack("{s:b, s:s, s:s}", "ready", store_ok && airflow_ok &&
	    !s->draining, "store", store_ok ? "writable" :
	    cause != NULL ? cause : "not writable", "airflow", airflow_state);
	if (!airflow_ok && airflow_error != NULL)
		json_object_set_new(out, "airflow_error", json_string(airflow_error));
	if (s->draining)
		json_object_set_new(out, "draining", json_true());
	free(late);
	free(last);
	if (store_ok && airflow_ok && !s->draining)
		reply_json(req, 200, "OK", out);
	else
		reply_json(req, 503, "Service Unavailable", out);
}

/* Answers every /readyz waiting for the probe. */
static void
readyz_release(struct server *s, bool timed_out)
{
	struct evhttp_request *req;
	size_t i, n = s->nready_waiting;

	s->nready_waiting = 0;
	if (s->ready_timer != NULL)
		evtimer_del(s->ready_timer);
	for (i = 0; i < n; i++)
		if ((req = s->ready_waiting[i]) != NULL)
			readyz_answer(s, req, timed_out);
}

/* Whether Airflow answered other work (a 2xx) since the last look at the
 * client's counters (airflow_fresh, before the probe started). */
static bool
answered_since(struct server *s)
{
	struct airflow_stats st;

	if (s->deps.airflow_stats == NULL)
		return false;
	s->deps.airflow_stats(s->deps.airflow, &st);
	return st.requests[AIRFLOW_HTTP_2XX] != s->answers_2xx;
}

/* Arms the readiness timer for the next look: READY_TICK_MS, or what is
 * left of READY_WAIT_MS from the probe's start. */
static void
readyz_arm(struct server *s, uint64_t waited)
{
	uint64_t ms = READY_WAIT_MS - waited < READY_TICK_MS ?
	    READY_WAIT_MS - waited : READY_TICK_MS;
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };

	evtimer_add(s->ready_timer, &tv);
}

static void
readyz_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct server *s = arg;
	uint64_t waited = ap_mono_ms() - s->probe_started_ms;
	char *why = NULL;

	(void)fd;
	(void)what;
	/* An attempt that got no answer since the probe started (a refused
	 * connection), while nothing else got a 2xx, is the news already:
	 * the client may retry the probe for seconds. The probe goes on;
	 * its outcome is kept for the next requests. */
	if (waited < READY_WAIT_MS && (answered_since(s) ||
	    (why = airflow_network_error(s, s->probe_started_ms)) == NULL)) {
		readyz_arm(s, waited);
		return;
	}
	free(why);
	readyz_release(s, true);
}

static void
probe_done(const struct airflow_result *res, void *arg)
{
	struct server *s = arg;
	bool was_ok = s->airflow_ok, first = !s->probe_logged;

	s->probe = NULL;
	free(s->airflow_error);
	s->airflow_error = NULL;
	s->airflow_known = true;
	s->airflow_ok = res->status == AIRFLOW_OK;
	s->airflow_seen_ms = ap_mono_ms();
	switch (res->status) {
	case AIRFLOW_OK:
		s->airflow_state = "reachable";
		break;
	case AIRFLOW_UNAVAILABLE:
		s->airflow_state = "unreachable";
		break;
	case AIRFLOW_BAD_REPLY:
		s->airflow_state = "bad reply";
		break;
	default:
		s->airflow_state = "rejected";
		break;
	}
	if (!s->airflow_ok)
		s->airflow_error = airflow_result_text("health check", res);
	s->probe_logged = true;
	if (!s->airflow_ok && res->status == AIRFLOW_REJECTED &&
	    (res->error.http_status == 401 || res->error.http_status == 403)) {
		s->airflow_state = "rejected";
		if (first || was_ok)
			ap_warn("Airflow at %s refuses the credentials of user '%s' (%s):"
			    " every agent will fail until AUTOPILOT_AIRFLOW_USERNAME and"
			    " AUTOPILOT_AIRFLOW_PASSWORD (or airflow.username and"
			    " airflow.password_file) are right", s->cfg->airflow_url,
			    s->cfg->airflow_username, s->airflow_error);
	} else if (!s->airflow_ok && res->status == AIRFLOW_NOT_FOUND) {
		/* It answers: the route is not there. */
		if (first || was_ok)
			ap_warn("Airflow at %s has no OpenMetadata plugin route there"
			    " (%s): every deploy will fail until the plugin is installed"
			    " and airflow.url (and airflow.api) are right",
			    s->cfg->airflow_url, s->airflow_error);
	} else if (!s->airflow_ok && res->status == AIRFLOW_REJECTED) {
		/* It answers, and refuses what is asked: a setup to fix (such
		 * as Airflow 3's login missing: airflow.api "v2" for an
		 * Airflow 2), which waiting does not. */
		if (first || was_ok)
			ap_warn("Airflow at %s answers, and refuses the health check"
			    " (%s): agents will fail until that is fixed",
			    s->cfg->airflow_url, s->airflow_error);
	} else if (first && !s->airflow_ok)
		ap_warn("Airflow at %s does not answer (%s); serving anyway: runs are"
		    " stored and wait for Airflow", s->cfg->airflow_url,
		    s->airflow_error);
	else if (first)
		ap_info("Airflow at %s answers", s->cfg->airflow_url);
	else if (was_ok && !s->airflow_ok)
		ap_warn("readiness: Airflow at %s does not answer (%s)",
		    s->cfg->airflow_url, s->airflow_error);
	else if (!was_ok && s->airflow_ok)
		ap_info("readiness: Airflow at %s answers again", s->cfg->airflow_url);
	readyz_release(s, false);
}

static void
probe_start(struct server *s)
{
	if (s->probe != NULL || s->deps.airflow_health == NULL)
		return;
	s->probe_started_ms = ap_mono_ms();
	s->probe = s->deps.airflow_health(s->deps.airflow, probe_done, s);
	if (s->probe != NULL && s->deps.airflow_ops != NULL &&
	    s->deps.airflow_ops->limit != NULL)
		s->deps.airflow_ops->limit(s->deps.airflow, s->probe, PROBE_BUDGET_MS);
}

/* Whether the last look at Airflow still stands, counting the client's
 * 2xx answers to other work since a recent look as a look (not while a
 * login Airflow 3 refused stands: the plugin's routes answer, and every
 * request of Airflow's own API fails). */
static bool
airflow_fresh(struct server *s, uint64_t now)
{
	struct airflow_stats st;

	if (s->deps.airflow_stats != NULL) {
		s->deps.airflow_stats(s->deps.airflow, &st);
		if (st.requests[AIRFLOW_HTTP_2XX] != s->answers_2xx && !st.login_refused &&
		    s->answers_seen_ms != 0 && now - s->answers_seen_ms <= READY_FRESH_MS) {
			free(s->airflow_error);
			s->airflow_error = NULL;
			s->airflow_known = s->airflow_ok = true;
			s->airflow_state = "reachable";
			s->airflow_seen_ms = now;
		}
		s->answers_2xx = st.requests[AIRFLOW_HTTP_2XX];
		s->answers_seen_ms = now;
	}
	return s->airflow_known && now - s->airflow_seen_ms < READY_FRESH_MS;
}

static void
handle_readyz(struct server *s, struct evhttp_request *req)
{
	uint64_t now = ap_mono_ms(), waited;

	if (s->draining || s->deps.airflow_ops == NULL ||
	    s->deps.airflow_health == NULL ||
	    s->deps.airflow_ops->unreachable(s->deps.airflow) ||
	    airflow_fresh(s, now)) {
		readyz_answer(s, req, false);
		return;
	}
	probe_start(s);
	now = ap_mono_ms();	/* not before the probe's start */
	waited = now - s->probe_started_ms;
	if (waited >= READY_WAIT_MS) {
		readyz_answer(s, req, true);
		return;
	}
	park(&s->ready_waiting, &s->nready_waiting, &s->ready_waiting_cap, req);
	if (!evtimer_pending(s->ready_timer, NULL))
		readyz_arm(s, waited);
}

static void
metrics_webhooks(struct server *s, struct ap_buf *b)
{
	int i;

	ap_buf_adds(b, "# HELP autopilot_webhooks_total Webhook deliveries (events for"
	    " accepted/repeated/ignored/invalid) by outcome.\n"
	    "# TYPE autopilot_webhooks_total counter\n");
	for (i = 0; i < SERVER_OUTCOME_MAX; i++)
		ap_buf_printf(b, "autopilot_webhooks_total{outcome=\"%s\"} %llu\n",
		    outcome_names[i], (unsigned long long)s->outcomes[i]);
	ap_buf_printf(b, "# HELP autopilot_admin_requests_total Admin API requests by"
	    " result: admitted (ok) or refused for their token (denied).\n"
	    "# TYPE autopilot_admin_requests_total counter\n"
	    "autopilot_admin_requests_total{result=\"ok\"} %llu\n"
	    "autopilot_admin_requests_total{result=\"denied\"} %llu\n",
	    (unsigned long long)(s->admin_requests - s->admin_denied),
	    (unsigned long long)s->admin_denied);
	ap_buf_printf(b, "# HELP autopilot_http_connections Connections open to the"
	    " server (listen.max_connections at most).\n"
	    "# TYPE autopilot_http_connections gauge\n"
	    "autopilot_http_connections %zu\n"
	    "# HELP autopilot_http_connections_cut_total Connections closed for not"
	    " delivering a whole request within listen.request_timeout_s.\n"
	    "# TYPE autopilot_http_connections_cut_total counter\n"
	    "autopilot_http_connections_cut_total %llu\n"
	    "# HELP autopilot_http_connections_shed_total Connections closed, waiting"
	    " longest for a whole request, when requests not yet whole held more"
	    " than listen.max_buffered_bytes.\n"
	    "# TYPE autopilot_http_connections_shed_total counter\n"
	    "autopilot_http_connections_shed_total %llu\n"
	    "# HELP autopilot_http_buffered_bytes Bytes of requests not yet answered"
	    " that connections hold (listen.max_buffered_bytes at most, but for"
	    " requests being answered).\n"
	    "# TYPE autopilot_http_buffered_bytes gauge\n"
	    "autopilot_http_buffered_bytes %zu\n", s->nconns,
	    (unsigned long long)s->conns_cut, (unsigned long long)s->conns_shed, s->held);
}

/* A reading of the store's counts, made on the metrics thread. */
struct metrics_job {
	struct workq_job job;
	struct server *s;
	const char *path;
	struct store **store;	/* the worker's handle (s->metrics_store) */
	int64_t runs[4];
	json_t *agents;		/* {"<agent>": {"<state>": n}} */
	int64_t halts;		/* Airflow runs still to be marked failed */
	char *cause;		/* why there are none, or NULL */
};

static void
metrics_work(struct workq_job *wj)
{
	struct metrics_job *j = (struct metrics_job *)wj;
	struct store_options o = { .read_only = true };

	if (*j->store == NULL && (*j->store = store_open(j->path, &o, &j->cause)) == NULL)
		return;
	if (store_counts(*j->store, j->runs, &j->agents, &j->halts, &j->cause) !=
	    STORE_OK) {
		/* Opened again for the next reading. */
		store_close(*j->store);
		*j->store = NULL;
	}
}

static const char *const agent_states[] = { "pending", "deploying",
	"waiting_for_dag", "queued", "running", "succeeded", "failed", "timed_out",
	"skipped", "lost" };

static bool
known_agent_state(const char *state)
{
	size_t i;

	for (i = 0; i < AP_ARRAY_LEN(agent_states); i++)
		if (strcmp(agent_states[i], state) == 0)
			return true;
	return false;
}

static void
metrics_store(const struct metrics_job *j, struct ap_buf *b)
{
	static const char *const run_states[4] = { "pending", "running",
	    "succeeded", "failed" };
	json_t *per, *n;
	const char *agent, *state;
	int i;

	if (j->cause != NULL)
		return;
	ap_buf_adds(b, "# HELP autopilot_runs Runs in the store by state.\n"
	    "# TYPE autopilot_runs gauge\n");
	for (i = 0; i < 4; i++)
		ap_buf_printf(b, "autopilot_runs{state=\"%s\"} %lld\n", run_states[i],
		    (long long)j->runs[i]);
	ap_buf_adds(b, "# HELP autopilot_agent_runs Agent runs in the store by agent"
	    " and state.\n# TYPE autopilot_agent_runs gauge\n");
	json_object_foreach(j->agents, agent, per) {
		/* Every state of an agent seen, none counted as 0: a series
		 * that appears only once counted cannot be rated. */
		for (i = 0; i < (int)AP_ARRAY_LEN(agent_states); i++)
			ap_buf_printf(b, "autopilot_agent_runs{agent=\"%s\",state=\"%s\"}"
			    " %lld\n", agent, agent_states[i], (long long)
			    json_integer_value(json_object_get(per, agent_states[i])));
		json_object_foreach(per, state, n) {
			if (!known_agent_state(state))
				ap_buf_printf(b, "autopilot_agent_runs{agent=\"%s\","
				    "state=\"%s\"} %lld\n", agent, state,
				    (long long)json_integer_value(n));
		}
	}
	ap_buf_printf(b, "# HELP autopilot_airflow_runs_to_fail Airflow runs no"
	    " agent follows any more (of replaced runs, of agents dropped from the plan,"
	    " of timed-out attempts)"
	    " still to be marked failed.\n# TYPE autopilot_airflow_runs_to_fail"
	    " gauge\nautopilot_airflow_runs_to_fail %lld\n", (long long)j->halts);
}

/* Attempts ended in this process, by agent and how: a retry that then
 * succeeded shows here, not in the runs' final states. */
static void
metrics_attempts(struct server *s, struct ap_buf *b)
{
	static const char *const how[] = { "succeeded", "failed", "timed_out",
	    "lost" };
	const struct sched_attempt_count *c;
	unsigned i, k;

	ap_buf_adds(b, "# HELP autopilot_agent_attempts_total Agents' attempts"
	    " that ended in this process since it started, by agent and how (a"
	    " failed attempt that was retried too).\n"
	    "# TYPE autopilot_agent_attempts_total counter\n");
	for (i = 0; sched_attempt_counts(s->deps.sched, i, &c); i++) {
		const uint64_t n[] = { c->succeeded, c->failed, c->timed_out,
		    c->lost };

		for (k = 0; k < AP_ARRAY_LEN(how); k++)
			ap_buf_printf(b, "autopilot_agent_attempts_total{agent=\"%s\","
			    "outcome=\"%s\"} %llu\n", c->agent, how[k],
			    (unsigned long long)n[k]);
	}
}

/* One /metrics answer, with the store's counts of j. */
static void
metrics_answer(struct server *s, struct evhttp_request *req,
    const struct metrics_job *j)
{
	struct evbuffer *out;
	struct ap_buf b;

	ap_buf_init(&b);
	metrics_webhooks(s, &b);
	metrics_store(j, &b);
	ap_buf_printf(&b, "# HELP autopilot_runs_driven Runs this process drives now.\n"
	    "# TYPE autopilot_runs_driven gauge\nautopilot_runs_driven %u\n"
	    "# HELP autopilot_agents_in_flight Agents between deploying and a final"
	    " state in this process.\n# TYPE autopilot_agents_in_flight gauge\n"
	    "autopilot_agents_in_flight %u\n"
	    "# HELP autopilot_runs_waiting Runs accepted while every slot was"
	    " spoken for, waiting to be admitted.\n# TYPE autopilot_runs_waiting"
	    " gauge\nautopilot_runs_waiting %zu\n", sched_active_runs(s->deps.sched),
	    sched_agents_in_flight(s->deps.sched), sched_runs_waiting(s->deps.sched));
	metrics_attempts(s, &b);
	if (s->deps.airflow_ops != NULL)
		ap_buf_printf(&b, "# HELP autopilot_airflow_up 0 while the Airflow"
		    " circuit breaker is open.\n# TYPE autopilot_airflow_up gauge\n"
		    "autopilot_airflow_up %d\n",
		    s->deps.airflow_ops->unreachable(s->deps.airflow) ? 0 : 1);
	if (s->deps.metrics != NULL)
		s->deps.metrics(&b, s->deps.metrics_arg);
	if ((out = evbuffer_new()) == NULL)
		ap_fatal("out of memory");
	evbuffer_add(out, b.data, b.len);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
	    "text/plain; version=0.0.4");
	send_reply(req, 200, "OK", out);
	evbuffer_free(out);
	ap_buf_cleanup(&b);
}

static void metrics_start(struct server *s);

static void
metrics_done(struct workq_job *wj)
{
	struct metrics_job *j = (struct metrics_job *)wj;
	struct server *s = j->s;
	size_t i;

	if (j->cause != NULL)
		ap_warn("metrics: %s", j->cause);
	s->metrics_job = NULL;
	for (i = 0; i < s->nmetrics_now; i++)
		if (s->metrics_now[i] != NULL)
			metrics_answer(s, s->metrics_now[i], j);
	s->nmetrics_now = 0;
	json_decref(j->agents);
	free(j->cause);
	free(j);
	/* Those that came meanwhile get a reading that starts after them
	 * (not once the server is being freed: no answer would go out). */
	if (s->nmetrics_next > 0 && !s->closing)
		metrics_start(s);
}

/* Moves the requests waiting for the next reading to one that starts now. */
static void
metrics_start(struct server *s)
{
	struct evhttp_request **t = s->metrics_now;
	size_t cap = s->metrics_now_cap;
	struct metrics_job *j = ap_xcalloc(1, sizeof *j);

	s->metrics_now = s->metrics_next;
	s->metrics_now_cap = s->metrics_next_cap;
	s->nmetrics_now = s->nmetrics_next;
	s->metrics_next = t;
	s->metrics_next_cap = cap;
	s->nmetrics_next = 0;
	j->job.work = metrics_work;
	j->job.done = metrics_done;	/* on the loop; at once if no thread */
	j->s = s;
	j->path = s->cfg->state_path;
	j->store = &s->metrics_store;
	s->metrics_job = j;
	workq_submit(s->metrics_wq, &j->job);
}

/*
 * Counting the runs and agent runs of the store by state reads every row
 * the first time (about three seconds per million runs; later readings
 * only the runs from the oldest active one on, see store_counts()), so it
 * is not done on the loop:
 * the request waits for a reading on the metrics thread that starts after
 * it came (requests that come together share one).
 */
static void
handle_metrics(struct server *s, struct evhttp_request *req)
{
	park(&s->metrics_next, &s->nmetrics_next, &s->metrics_next_cap, req);
	if (s->metrics_job == NULL)
		metrics_start(s);
}

/* ---- Routing. ---- */

/* The webhook's path (a URL typed with a final '/' is as meant). */
static bool
path_is_webhook(const char *path)
{
	return strcmp(path, WEBHOOK_PATH) == 0 || strcmp(path, WEBHOOK_PATH "/") == 0;
}

static bool
path_is_rerun(const char *path)
{
	return ap_startswith(path, SERVICES_PATH) && ap_endswith(path, RERUN_SUFFIX);
}

static void
route(struct evhttp_request *req, void *arg)
{
	struct server *s = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;

	busy_add(s, req);
	if (path == NULL || *path == '\0')
		path = "/";
	/* Only the webhook and the re-run read a body: any other one goes
	 * now rather than when its answer is written, however slowly the
	 * client reads it. */
	if (!path_is_webhook(path) && !path_is_rerun(path))
		evbuffer_drain(evhttp_request_get_input_buffer(req),
		    evbuffer_get_length(evhttp_request_get_input_buffer(req)));
	if (evhttp_request_get_command(req) == EVHTTP_REQ_CONNECT) {
		/* libevent neither frames an answer to CONNECT nor closes its
		 * connection after one, whatever the headers say: the answer
		 * ends where the connection does, closed once it is written
		 * (request_done). */
		evhttp_add_header(evhttp_request_get_output_headers(req), "Connection",
		    "close");
		evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
		    "GET, HEAD, POST");
		reply_error(req, 405, "Method Not Allowed", "method not allowed",
		    "CONNECT: autopilot is not a proxy");
	} else if (header_repeated(req, "Content-Length")) {
		/* libevent framed the body by the first one; a proxy in front may
		 * have used another, and the rest would be read as a request of
		 * its own. Refused, and the connection closed after the answer. */
		evhttp_remove_header(evhttp_request_get_output_headers(req), "Connection");
		evhttp_add_header(evhttp_request_get_output_headers(req), "Connection",
		    "close");
		reply_error(req, 400, "Bad Request", "bad request",
		    "more than one Content-Length header");
	} else if (path_is_webhook(path))
		handle_webhook(s, req);
	else if (header_count(req) > s->cfg->max_headers) {
		/* The webhook says so itself, counted in its outcomes. */
		char *msg = too_many_headers(s);

		reply_error(req, 431, "Request Header Fields Too Large",
		    "too many headers", msg);
		free(msg);
	}
	else if (strcmp(path, RUNS_PATH) == 0 || ap_startswith(path, RUNS_PATH "/"))
		handle_runs(s, req, path);
	else if (path_is_rerun(path))
		handle_rerun(s, req, path);
	else if ((strcmp(path, "/healthz") == 0 || strcmp(path, "/readyz") == 0 ||
	    strcmp(path, "/metrics") == 0) && !method_get(req)) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
		    "GET, HEAD");
		reply_error(req, 405, "Method Not Allowed", "method not allowed",
		    "health, readiness and metrics are read with GET");
	} else if (strcmp(path, "/healthz") == 0)
		reply_json(req, 200, "OK", json_pack("{s:s}", "status", "ok"));
	else if (strcmp(path, "/readyz") == 0)
		handle_readyz(s, req);
	else if (strcmp(path, "/metrics") == 0)
		handle_metrics(s, req);
	else
		reply_error(req, 404, "Not Found", "not found", "no such endpoint");
}

/* ---- Accepting. ---- */

/*
 * accept() failed for want of descriptors or memory (EMFILE, ENFILE,
 * ENOBUFS, ENOMEM: every connection a client holds open costs one). The
 * listening socket stays readable, so without a pause the loop would spin
 * on it, and libevent would log each failure: accepting pauses for
 * ACCEPT_PAUSE_MS (the connections wait in the kernel's backlog meanwhile)
 * and the failure is logged at most once per ACCEPT_WARN_MS.
 */
static void
accept_error_cb(struct evconnlistener *lev, void *arg)
{
	int err = EVUTIL_SOCKET_ERROR();
	struct timeval tv = { 0, ACCEPT_PAUSE_MS * 1000 };
	struct server *s;
	uint64_t now = ap_mono_ms();

	(void)arg;
	for (s = servers; s != NULL; s = s->next)
		if (s->listener != NULL &&
		    evhttp_bound_socket_get_listener(s->listener) == lev)
			break;
	evconnlistener_disable(lev);
	if (s == NULL)
		return;
	s->accept_failures++;
	if (s->accept_warned_ms == 0 || now - s->accept_warned_ms >= ACCEPT_WARN_MS) {
		if (s->accept_failures > 1)
			ap_warn("http: cannot accept connections: %s (%llu failed accepts"
			    " since the last warning); trying again every %d ms",
			    evutil_socket_error_to_string(err),
			    (unsigned long long)s->accept_failures, ACCEPT_PAUSE_MS);
		else
			ap_warn("http: cannot accept connections: %s; trying again every"
			    " %d ms", evutil_socket_error_to_string(err), ACCEPT_PAUSE_MS);
		s->accept_warned_ms = now;
		s->accept_failures = 0;
	}
	evtimer_add(s->accept_timer, &tv);
}

static void
accept_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct server *s = arg;

	(void)fd;
	(void)what;
	if (s->listener != NULL && !s->conn_capped)
		evconnlistener_enable(evhttp_bound_socket_get_listener(s->listener));
}

/* ---- Life cycle. ---- */

/* The addresses of cfg's listen host and port, or NULL and a new *cause. */
static struct evutil_addrinfo *
listen_addresses(const struct config *cfg, char **cause)
{
	struct evutil_addrinfo hints, *ai = NULL;
	char port[16];
	int gai;

	snprintf(port, sizeof port, "%u", cfg->listen_port);
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = EVUTIL_AI_PASSIVE | EVUTIL_AI_ADDRCONFIG;
	if ((gai = evutil_getaddrinfo(cfg->listen_host, port, &hints, &ai)) != 0) {
		*cause = ap_xprintf("cannot listen on %s:%u: not an address of this"
		    " host (%s)", cfg->listen_host, cfg->listen_port,
		    evutil_gai_strerror(gai));
		return NULL;
	}
	return ai;
}

int
server_listen_check(const struct config *cfg, char **cause)
{
	struct evutil_addrinfo *ai = listen_addresses(cfg, cause);
	struct sockaddr_storage sa;
	int fd, rc = 0;

	if (ai == NULL)
		return -1;
	/* Bound on any port (the one configured may be taken by a serve
	 * running), as server_listen() binds: an address of another host
	 * resolves, but cannot be bound. */
	memcpy(&sa, ai->ai_addr, ai->ai_addrlen < sizeof sa ? ai->ai_addrlen :
	    sizeof sa);
	if (sa.ss_family == AF_INET)
		((struct sockaddr_in *)&sa)->sin_port = 0;
	else if (sa.ss_family == AF_INET6)
		((struct sockaddr_in6 *)&sa)->sin6_port = 0;
	if ((fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    bind(fd, (struct sockaddr *)&sa, (socklen_t)ai->ai_addrlen) < 0) {
		*cause = ap_xprintf("cannot listen on %s:%u: %s", cfg->listen_host,
		    cfg->listen_port, strerror(errno));
		rc = -1;
	}
	if (fd >= 0)
		evutil_closesocket(fd);
	evutil_freeaddrinfo(ai);
	return rc;
}

int
server_listen(const struct config *cfg, char **cause)
{
	struct evutil_addrinfo *ai;
	int fd, on = 1, err;

	/* A host that does not resolve is said so (binding would only leave
	 * errno from something else). As libevent's own binding does: the
	 * first address (of a family configured here), SO_REUSEADDR and
	 * keepalive. Bound, not listening: until server_create() listens,
	 * connections are refused rather than left waiting while the store
	 * opens (or migrates). */
	if ((ai = listen_addresses(cfg, cause)) == NULL)
		return -1;
	fd = socket(ai->ai_family, SOCK_STREAM, 0);
	if (fd < 0 || evutil_make_socket_nonblocking(fd) < 0 ||
	    evutil_make_socket_closeonexec(fd) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on) < 0 ||
	    evutil_make_listen_socket_reuseable(fd) < 0 ||
	    bind(fd, ai->ai_addr, (socklen_t)ai->ai_addrlen) < 0) {
		err = errno;
		*cause = ap_xprintf("cannot listen on %s:%u: %s", cfg->listen_host,
		    cfg->listen_port, strerror(err));
		if (fd >= 0)
			evutil_closesocket(fd);
		fd = -1;
	}
	evutil_freeaddrinfo(ai);
	return fd;
}

struct server *
server_create(struct event_base *base, const struct config *cfg,
    const struct server_deps *deps, int listen_fd, char **cause)
{
	struct server *s = ap_xcalloc(1, sizeof *s);
	struct evconnlistener *listener;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	struct timeval sweep_tv = { CONN_SWEEP_MS / 1000, (CONN_SWEEP_MS % 1000) * 1000 };

	s->base = base;
	s->cfg = cfg;
	if (cfg->webhook_secret != NULL)
		s->key = webhook_key_create(cfg->webhook_secret);
	s->deps = *deps;
	if ((s->http = evhttp_new(base)) == NULL)
		ap_fatal("evhttp_new failed");
	/* Bodies up to max_body_bytes are read; those a little above it get a
	 * JSON 413 from the webhook; past config_body_read_max() libevent
	 * answers its own 413, reading (and dropping) the rest first so that a
	 * sender still writing sees the answer rather than a reset connection. */
	evhttp_set_max_body_size(s->http, (ev_ssize_t)config_body_read_max(cfg));
	evhttp_set_flags(s->http, EVHTTP_SERVER_LINGERING_CLOSE);
	evhttp_set_max_headers_size(s->http, CONFIG_MAX_HEADER_BYTES);
	evhttp_set_timeout(s->http, (int)cfg->request_timeout_s);
	/* The methods libevent knows reach route(), so that each gets a JSON
	 * answer (405 with Allow) rather than libevent's HTML 501, which for
	 * CONNECT would leave the connection open behind an unframed body. */
	evhttp_set_allowed_methods(s->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST |
	    EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_PATCH | EVHTTP_REQ_HEAD |
	    EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT);
	evhttp_set_default_content_type(s->http, "application/json");
	evhttp_set_gencb(s->http, route, s);
	s->flush_ev = event_new(base, -1, 0, flush_cb, s);
	s->take_ev = event_new(base, -1, 0, take_cb, s);
	s->ready_timer = evtimer_new(base, readyz_timer_cb, s);
	/* NULL: the counts are read on the loop (workq_submit). */
	s->metrics_wq = workq_create(base, 1);
	TAILQ_INIT(&s->runs_jobs);
	s->runs_wq = workq_create(base, 1);
	s->accept_timer = evtimer_new(base, accept_resume_cb, s);
	TAILQ_INIT(&s->conns);
	s->adopt_ev = event_new(base, -1, 0, conn_adopt_cb, s);
	s->sweep_ev = event_new(base, -1, EV_PERSIST, conn_sweep_cb, s);
	s->close_ev = event_new(base, -1, 0, conn_close_cb, s);
	s->shed_ev = event_new(base, -1, 0, conn_shed_cb, s);
	evtimer_add(s->sweep_ev, &sweep_tv);
	evhttp_set_bevcb(s->http, conn_bev_cb, s);
	s->take = json_array();
	s->next = servers;
	servers = s;
	/* Listens (a backlog of 128, as libevent's own binding); the socket
	 * is the listener's from here, closed when it is freed. */
	errno = 0;
	listener = evconnlistener_new(base, NULL, NULL, LEV_OPT_REUSEABLE |
	    LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_CLOSE_ON_FREE, 128, listen_fd);
	if (listener == NULL)
		evutil_closesocket(listen_fd);
	else if ((s->listener = evhttp_bind_listener(s->http, listener)) == NULL)
		evconnlistener_free(listener);
	if (s->listener == NULL) {
		*cause = ap_xprintf("cannot listen on %s:%u: %s", cfg->listen_host,
		    cfg->listen_port, errno != 0 ? strerror(errno) : "out of memory");
		server_free(s);
		return NULL;
	}
	evconnlistener_set_error_cb(evhttp_bound_socket_get_listener(s->listener),
	    accept_error_cb);
	if (getsockname(evhttp_bound_socket_get_fd(s->listener), (struct sockaddr *)&ss,
	    &sl) == 0) {
		if (ss.ss_family == AF_INET)
			s->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		else if (ss.ss_family == AF_INET6)
			s->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	}
	/* Whether Airflow answers, logged when known; serving goes on either
	 * way, as runs are stored and wait for Airflow. */
	probe_start(s);
	return s;
}

unsigned
server_port(const struct server *s)
{
	return s->port;
}

size_t
server_busy(const struct server *s)
{
	return s->nbusy;
}

void
server_drain(struct server *s)
{
	if (s->draining)
		return;
	s->draining = true;
	if (s->listener != NULL) {
		evhttp_del_accept_socket(s->http, s->listener);
		s->listener = NULL;
	}
	evtimer_del(s->accept_timer);
	/* Not ready any more: say so now rather than after the probe. */
	readyz_release(s, false);
}

void
server_free(struct server *s)
{
	struct workq *wq;
	struct server **link;
	struct conn_entry *e;
	size_t i;

	if (s == NULL)
		return;
	if (s->npending > 0)
		flush_cb(-1, 0, s);	/* commit and answer what is waiting */
	if (s->probe != NULL && s->deps.airflow_ops != NULL)
		s->deps.airflow_ops->cancel(s->deps.airflow, s->probe);
	s->draining = true;
	readyz_release(s, false);
	/* The reading in flight ends and answers what waited for it; what
	 * came after it goes with its connection (evhttp_free below). */
	s->closing = true;
	wq = s->metrics_wq;
	s->metrics_wq = NULL;
	workq_free(wq);
	s->nmetrics_next = 0;
	store_close(s->metrics_store);
	wq = s->runs_wq;
	s->runs_wq = NULL;
	workq_free(wq);
	store_close(s->runs_store);
	free(s->metrics_now);
	free(s->metrics_next);
	if (s->ready_timer != NULL)
		event_free(s->ready_timer);
	if (s->accept_timer != NULL)
		event_free(s->accept_timer);
	s->accept_timer = NULL;
	for (link = &servers; *link != NULL; link = &(*link)->next)
		if (*link == s) {
			*link = s->next;
			break;
		}
	free(s->ready_waiting);
	free(s->airflow_error);
	free(s->store_why);
	free(s->store_said);
	if (s->flush_ev != NULL)
		event_free(s->flush_ev);
	if (s->take_ev != NULL)
		event_free(s->take_ev);
	if (s->sweep_ev != NULL)
		event_free(s->sweep_ev);
	if (s->close_ev != NULL)
		event_free(s->close_ev);
	if (s->shed_ev != NULL)
		event_free(s->shed_ev);
	if (s->adopt_ev != NULL)
		event_free(s->adopt_ev);
	/* evhttp_free frees the listener, then each connection (conn_closed):
	 * nothing to resume accepting on. */
	s->listener = NULL;
	s->conn_capped = false;
	if (s->http != NULL)
		evhttp_free(s->http);
	/* Those accepted last are freed now if their connection is. */
	for (i = 0; i < s->nadopt; i++)
		bufferevent_decref(s->adopt[i]);
	free(s->adopt);
	while ((e = TAILQ_FIRST(&s->conns)) != NULL) {
		tdelete(e, &s->conn_tree, conn_cmp);
		TAILQ_REMOVE(&s->conns, e, link);
		free(e);
	}
	json_decref(s->take);
	webhook_key_free(s->key);
	free(s->pending);
	free(s->busy);
	free(s);
}
