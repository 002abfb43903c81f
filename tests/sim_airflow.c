/*
 * sim_airflow.c — a fast, scriptable Airflow with the OpenMetadata
 * managed-APIs plugin installed, for the tests, the benchmarks and the demo.
 *
 * One process, one libevent loop, evhttp + jansson. It serves either the
 * Airflow 2.x API (/api/v1, HTTP Basic) or the Airflow 3.x API (/api/v2, JWT
 * from POST /auth/token). As 2.x, the 3.x paths answer 404; as 3.x, a path
 * nothing serves (the 2.x API among them) answers as Airflow 3's catch-all
 * routes do: 405 to anything but GET, 404 {"error"} to GET /api/..., and the
 * UI's HTML page (200) to any other GET. Run states are
 * computed lazily from timestamps, so 10,000 concurrent runs cost no timers.
 * Faults (latency, 5xx, 429 bursts, resets, outages, dead workers, restarts,
 * import errors) come from a scenario file and are deterministic given its
 * seed and the order of requests. Every request is recorded compactly and
 * served back on GET /_sim/requests, so tests assert what Airflow received.
 *
 * Usage: sim_airflow [--listen 127.0.0.1:0] [--scenario FILE] [--api v1|v2] [--quiet]
 * Prints "listening 127.0.0.1:<port>" once ready. SIGTERM/SIGINT: exit 0.
 * Binds 127.0.0.1 only. --api wins over the scenario file's "api"; a
 * scenario installed later with PUT /_sim/scenario may switch it.
 *
 * Scenario format (JSON object; every key optional, unknown keys rejected):
 *   "api": "v1"|"v2"                 default "v1"
 *   "username", "password"           default "admin"/"admin" (Basic auth and /auth/token)
 *   "token_ttl_ms": 3600000          JWT lifetime; an expired token gets 401 "Token Expired"
 *   "parse_delay_ms": 200            deploy -> DAG visible (GET /dags/{id} 404 until then)
 *   "airflow_version": "2.10.5"|"3.0.2"   what /version answers
 *   "version_auth": false            true: /version (of the generation served) wants
 *                                    that generation's credentials (Basic; 3.x: the
 *                                    JWT) and answers 401 without them, as the global
 *                                    security of v1.yaml and v2.yaml allows
 *   "proxy_401": ["/api/v2/version"] path prefixes an authenticating proxy in front
 *                                    of Airflow answers 401 (HTML, WWW-Authenticate:
 *                                    Basic realm="proxy") whatever credentials come
 *                                    (the client has none for it); before any fault
 *   "proxy_pages_404": false         true: a proxy in front of Airflow puts its own HTML
 *                                    page in place of each 404 Airflow answers (nginx's
 *                                    proxy_intercept_errors)
 *   "seed": 1                        seeds the fault dice
 *   "pipelines": { "<pipelineType>"|"*": {"queued_ms": 50, "running_ms": 300,
 *                   "outcome": "success", "parse_delay_ms": ...} }
 *   "dags": { "<dag_id>": {"queued_ms", "running_ms", "outcome", "parse_delay_ms",
 *                "import_error": "<stack trace text>", "deploy_status": 200,
 *                "exists": false, "pipeline_type": "metadata", "is_paused": true} }
 *       A run's timing comes from dags[id], else pipelines[type], else
 *       pipelines["*"], else the defaults above, key by key, frozen at trigger.
 *       "outcome": "success" | "failed" | "worker_died" (stays running forever),
 *       or a list: the n-th run of the DAG takes element min(n, len-1), so
 *       ["failed", "success"] fails once then succeeds.
 *       "exists": true makes the DAG present from the start (no deploy needed).
 *       "import_error": once parsed, GET /importErrors lists the text with filename =
 *       the DAG's fileloc (3.x: its relative_fileloc, the path in the bundle), stamped
 *       with the file's last parse (every 500 ms, as Airflow stamps it each time). A DAG
 *       whose file imported before (one that "exists", or was seen without the error)
 *       shows has_import_errors: true, POST dagRuns answers 400 as Airflow does for a
 *       DAG with import errors, and runs the plugin's trigger starts end failed; one
 *       whose file never imported has no DAG at all: 404, as in Airflow.
 *       "fixed_by_deploy": true, with "exists" and "import_error": the file had the error
 *       before; the first deploy writes one that imports. Until parse_delay_ms after that
 *       deploy the DAG still shows has_import_errors, its error stamped no later than
 *       the deploy; from then on neither.
 *       "deploy_status" >= 300: the plugin's deploy answers it (an error) and does nothing.
 *       Keys starting with '$' (e.g. "$comment") are ignored everywhere.
 *   "faults": {
 *       "latency_ms": 0, "latency_jitter_ms": 0      added to every answer (timers, no sleep)
 *       "error_rate": 0.0, "error_status": 503       or a list, e.g. [503, 502, 500], picked at random
 *       "error_burst": {"after": 0, "count": 0, "status": 503}
 *                                                    requests after+1 .. after+count get status
 *       "rate_limit_every": 0, "rate_limit_burst": 1, "retry_after_s": 1
 *                                                    in every block of N requests the last
 *                                                    `burst` get 429 with Retry-After
 *       "retry_after_503": false                     503 answers (outages too) carry
 *                                                    Retry-After: retry_after_s as well
 *       "reset_rate": 0.0                            close the connection without answering
 *       "lost_reply_rate": 0.0                       do the work, then close without answering
 *                                                    (a trigger whose reply is lost: retry -> 409)
 *       "outage": {"start_ms": 0, "duration_ms": 0, "mode": "503"|"reset"|"proxy404"}
 *                                                    relative to when the scenario was loaded;
 *                                                    "proxy404": a proxy's HTML 404 to every
 *                                                    path (an ingress with no Airflow behind it)
 *       "paths": ["/api/v1/dags"]                    path prefixes the faults above apply to
 *                                                    (default: every non-control request;
 *                                                    outages apply to everything)
 *       "proxy_pages": false                         error_burst and error_rate answers are a
 *                                                    proxy's HTML page, not Airflow's JSON
 *       "plugin_v2_fallback_404": false              no plugin under /api/v2/openmetadata/
 *       "plugin_pluginsv2_404": false                no plugin under /pluginsv2/api/v2/openmetadata/
 *                                                    (either answers as a path nothing serves)
 *   }
 * Fault order per request: outage, error_burst, rate limit, reset, error_rate,
 * lost_reply;
 * requests are counted (for bursts and rate limits) from the scenario load.
 *
 * Control endpoints (no auth, not recorded, no faults):
 *   GET /_sim/requests[?since=SEQ][&path=PREFIX]
 *                                   recorded requests, oldest first: {seq, t_ms, method,
 *                                   path (raw, without query), query (or null), auth
 *                                   ("basic"|"bearer"|"none"), body (JSON, else string,
 *                                   else null), status (0 for a reset)}; seq never restarts
 *   DELETE /_sim/requests           clears the log
 *   GET /_sim/state                 DAGs and runs with their current states
 *   GET|PUT /_sim/scenario          the scenario (PUT replaces it; 400 with the reason)
 *   POST /_sim/restart[?dags=1][&tokens=1]  forget all runs (and DAGs; and invalidate tokens)
 *   POST /_sim/outage?ms=N[&mode=reset|proxy404]  outage from now for N ms (503 by default)
 *
 * Test-only program: it must not be linked into the product.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/queue.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/http_struct.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "util.h"

#define SIM_MAX_BODY		(4u << 20)	/* request bodies; evhttp answers 413 beyond */
#define SIM_MAX_HEADERS		(64u << 10)
#define SIM_MAX_SEGS		16
#define SIM_LOG_BODY_MAX	(64u << 10)	/* recorded body bytes per request */
#define SIM_LOG_NONE		UINT32_MAX
#define SIM_MAX_ERROR_STATUS	8
#define SIM_PLUGIN_VERSION	"1.7.0.0"
#define SIM_DAGS_FOLDER		"/opt/airflow/dags"
#define SIM_REPARSE_MS		500	/* a parsed file is parsed again this often */
#define SIM_STATUS_RUNS		10
#define SIM_REPLY_FLAGS		(JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(9))
#define SIM_TM_VARS		16	/* values of a view template */
#define SIM_TM_GAPS		24	/* places for them */
#define SIM_TM_MARK		"@sim-value-"
#define SIM_BODY_CACHE		4	/* small bodies kept parsed */
#define SIM_BODY_CACHE_MAX	256	/* bytes */

enum sim_api { SIM_API_V1 = 1, SIM_API_V2 = 2 };

/* Which error format a request gets (decided by its path prefix). */
enum sim_fam { SIM_FAM_V1, SIM_FAM_V2, SIM_FAM_PLUGIN };

enum sim_auth { SIM_AUTH_NONE, SIM_AUTH_BASIC, SIM_AUTH_BEARER };

enum sim_outcome { SIM_OUT_SUCCESS, SIM_OUT_FAILED, SIM_OUT_WORKER_DIED };

enum sim_state { SIM_ST_QUEUED, SIM_ST_RUNNING, SIM_ST_SUCCESS, SIM_ST_FAILED, SIM_ST_NONE };

static const char *const sim_state_names[] = { "queued", "running", "success", "failed", NULL };

/* ---------------------------------------------------------------- string map */

/* Open addressing, linear probing, tombstones; keys are borrowed from values. */
struct smap_ent {
	const char *key;	/* NULL: empty or tombstone */
	void *val;		/* &smap_tomb for a tombstone */
	uint32_t hash;
};

struct smap {
	struct smap_ent *ents;
	size_t cap;		/* power of two, or 0 */
	size_t used;		/* live + tombstones */
	size_t live;
};

static char smap_tomb;

static uint32_t
smap_hash(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

static void
smap_cleanup(struct smap *m)
{
	free(m->ents);
	memset(m, 0, sizeof *m);
}

static void *
smap_get(const struct smap *m, const char *key)
{
	uint32_t h;
	size_t i;

	if (m->cap == 0)
		return NULL;
	h = smap_hash(key);
	for (i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
		const struct smap_ent *e = &m->ents[i];

		if (e->key == NULL && e->val == NULL)
			return NULL;
		if (e->key != NULL && e->hash == h && strcmp(e->key, key) == 0)
			return e->val;
	}
}

static void smap_put(struct smap *m, const char *key, void *val);

static void
smap_grow(struct smap *m)
{
	struct smap old = *m;
	size_t i;

	m->cap = old.cap == 0 ? 16 : (old.live * 4 > old.cap ? old.cap * 2 : old.cap);
	m->ents = ap_xcalloc(m->cap, sizeof *m->ents);
	m->used = m->live = 0;
	for (i = 0; i < old.cap; i++) {
		if (old.ents[i].key != NULL)
			smap_put(m, old.ents[i].key, old.ents[i].val);
	}
	free(old.ents);
}

/* Adds key (which must be absent); key must live as long as the entry. */
static void
smap_put(struct smap *m, const char *key, void *val)
{
	uint32_t h;
	size_t i;

	if ((m->used + 1) * 4 > m->cap * 3)
		smap_grow(m);
	h = smap_hash(key);
	for (i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
		struct smap_ent *e = &m->ents[i];

		if (e->key == NULL) {
			if (e->val == NULL)
				m->used++;
			e->key = key;
			e->val = val;
			e->hash = h;
			m->live++;
			return;
		}
	}
}

static void
smap_del(struct smap *m, const char *key)
{
	uint32_t h;
	size_t i;

	if (m->cap == 0)
		return;
	h = smap_hash(key);
	for (i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
		struct smap_ent *e = &m->ents[i];

		if (e->key == NULL && e->val == NULL)
			return;
		if (e->key != NULL && e->hash == h && strcmp(e->key, key) == 0) {
			e->key = NULL;
			e->val = &smap_tomb;
			m->live--;
			return;
		}
	}
}

/* ---------------------------------------------------------------- model */

struct dag;

struct run {
	char *run_id;
	struct dag *dag;
	char *jrid, *jconf, *jld;	/* run_id, conf, logical_date as JSON */
	char *logical_date;		/* NULL: null */
	int64_t created;		/* sim ms */
	int64_t start;			/* queued countdown began (sim ms); -1: waiting for unpause */
	int64_t forced_at;
	int64_t started_at;		/* set when forced after it started running, else -1 */
	uint32_t queued_ms;
	uint32_t running_ms;
	uint8_t outcome;		/* enum sim_outcome */
	uint8_t forced;			/* enum sim_state; SIM_ST_NONE: lifecycle decides */
	struct run *prev, *next;	/* in trigger order */
};

struct dag {
	char *dag_id;
	char *jid, *jtoken, *jloc;	/* dag_id, file_token, fileloc as JSON */
	char *pipeline_type;
	char *schedule;			/* airflowConfig.scheduleInterval or NULL */
	int64_t created;		/* sim ms of first deploy */
	int64_t visible_at;		/* sim ms when the DAG processor has parsed it */
	int64_t parsed_at;
	bool paused;
	/* A parse of its file imported it once, so Airflow has a DAG row (a
	 * broken file then shows has_import_errors); a file that never
	 * imported has none: 404, its error only in importErrors. */
	bool imported;
	uint64_t serial;		/* stable import_error_id */
	/* "fixed_by_deploy": when the error goes (0: not deployed yet), and
	 * its last stamp before the deploy. */
	int64_t fixed_at;
	int64_t stale_stamp;
	uint64_t triggers;		/* runs created so far (picks from outcome lists) */
	struct smap runs;
	struct run *run_head, *run_tail;
	size_t nruns;
	struct dag *prev, *next;	/* in creation order */
};

/* The values that vary in the DAG and run views (see JSON views). */
enum { DV_ID, DV_TOKEN, DV_LOC, DV_IERR, DV_PAUSED, DV_PARSED, DV_SCHED, DV_REL, DV_SUMMARY };
enum { RV_CONF, RV_DAG, RV_RUN, RV_END, RV_LD, RV_START, RV_STATE, RV_UUID, RV_DAG_CREATED,
	RV_DURATION, RV_QUEUED, RV_USER };

/* A view's reply dump cut where its values go: text pieces, value, piece, ... */
struct tmpl {
	char *text;
	size_t ngap;
	size_t off[SIM_TM_GAPS + 1], len[SIM_TM_GAPS + 1];
	uint8_t var[SIM_TM_GAPS];
};

/* The values of one view, dumped, one after the other in b. */
struct tvals {
	struct ap_buf b;
	size_t off[SIM_TM_VARS], len[SIM_TM_VARS];
};

/* ---------------------------------------------------------------- scenario */

enum outage_mode {
	OUTAGE_NONE, OUTAGE_503, OUTAGE_RESET, OUTAGE_PROXY_404, OUTAGE_BAD
};

static enum outage_mode
outage_mode_parse(const char *s)
{
	if (strcmp(s, "503") == 0)
		return OUTAGE_503;
	if (strcmp(s, "reset") == 0)
		return OUTAGE_RESET;
	if (strcmp(s, "proxy404") == 0)
		return OUTAGE_PROXY_404;
	return OUTAGE_BAD;
}

struct faults {
	int64_t latency_ms;
	int64_t latency_jitter_ms;
	double error_rate;
	int error_status[SIM_MAX_ERROR_STATUS];
	size_t n_error_status;
	int64_t burst_after;
	int64_t burst_count;
	int burst_status;
	int64_t rate_limit_every;
	int64_t rate_limit_burst;
	int64_t retry_after_s;
	bool retry_after_503;
	bool proxy_pages;
	double reset_rate;
	double lost_reply_rate;
	int64_t outage_start_ms;
	int64_t outage_duration_ms;
	enum outage_mode outage_mode;
	bool plugin_v2_fallback_404;
	bool plugin_pluginsv2_404;
	const json_t *paths;		/* array of strings or NULL; borrowed from the scenario */
};

struct scenario {
	json_t *root;			/* owned; the sections below borrow from it */
	enum sim_api api;
	bool api_set;
	const char *username;
	const char *password;
	const char *version;
	bool version_auth;
	bool proxy_pages_404;
	const json_t *proxy_401;	/* array of strings or NULL; borrowed from root */
	int64_t token_ttl_ms;
	int64_t parse_delay_ms;
	uint64_t seed;
	const json_t *pipelines;	/* object or NULL */
	const json_t *dags;		/* object or NULL */
	struct faults f;
};

/* ---------------------------------------------------------------- request log */

struct logent {
	int64_t t_ms;
	size_t off;			/* path, query, body follow each other in the arena */
	uint32_t path_len;
	uint32_t query_len;		/* SIM_LOG_NONE: no query */
	uint32_t body_len;		/* SIM_LOG_NONE: no body */
	uint16_t status;
	uint8_t method;
	uint8_t auth;
};

/* A reply (or a reset) waiting for its latency timer. */
struct pending {
	struct sim *s;
	struct evhttp_request *req;
	struct evbuffer *out;
	struct event *ev;
	int status;
	bool reset;
	struct pending *prev, *next;
};

struct sim {
	struct event_base *base;
	struct evhttp *http;
	bool quiet;
	enum sim_api cli_api;		/* 0: not given */
	struct scenario sc;
	int64_t sc_loaded;		/* sim ms */
	uint64_t rng;
	uint64_t fault_count;
	int64_t outage_until;		/* control outage end (sim ms), 0 none */
	enum outage_mode outage_until_mode;
	uint64_t mono0;
	int64_t wall0;
	struct smap dags;
	struct dag *dag_head, *dag_tail;
	uint64_t dag_serial;
	size_t nruns;
	unsigned char jwt_key[32];
	uint64_t jwt_seq;
	struct logent *log;
	size_t log_len, log_cap;
	uint64_t log_base_seq;		/* seq of log[0] */
	struct ap_buf arena;
	struct pending *pending;
	struct tmpl t_dag[2], t_run[2], t_msg;	/* [0]: 2.x, [1]: 3.x */
	struct tmpl t_cron;		/* 2.x schedule_interval */
	char *jstate[SIM_ST_NONE];	/* the run states as JSON */
	char *jtrue, *jfalse, *jnull;
	struct tvals tv;		/* the values of the view being answered */
	struct ap_buf out;		/* the reply being answered */
	uint64_t sc_gen;		/* scenarios loaded so far */
	char *basic_last;		/* the last Basic Authorization that passed */
	uint64_t basic_gen;		/* ... under scenario sc_gen */
	struct body_cache {
		json_t *json;		/* NULL: empty */
		char text[SIM_BODY_CACHE_MAX];
		size_t len;
		uint64_t used;
	} bodies[SIM_BODY_CACHE];	/* small bodies lately parsed */
	uint64_t bodies_clock;
};

/* One incoming request while it is being handled. */
struct rq {
	struct sim *s;
	struct evhttp_request *req;
	enum evhttp_cmd_type method;
	const char *path;
	const char *query;
	char *seg[SIM_MAX_SEGS];	/* in segbuf */
	int nseg;
	char *segbuf;			/* segstack, or allocated for a long path */
	char segstack[512];
	const char *authz;		/* the Authorization header */
	struct evkeyvalq params;
	const char *body;
	size_t body_len;
	enum sim_auth auth;
	enum sim_fam fam;
	int64_t now;
	bool logged;
	bool lose_reply;		/* answer by a reset, after doing the work */
	size_t log_idx;
	uint64_t log_seq;
};

/* ---------------------------------------------------------------- small helpers */

static int64_t
sim_now(const struct sim *s)
{
	return (int64_t)(ap_mono_ms() - s->mono0);
}

/* ap_format_time(wall0 + t): "YYYY-MM-DDTHH:MM:SS.mmmZ", its seconds cached. */
static void
sim_time(const struct sim *s, int64_t t, char *buf, size_t size)
{
	static struct { int64_t sec; char text[32]; size_t len; } cache[4] = {
		{ -1, "", 0 }, { -1, "", 0 }, { -1, "", 0 }, { -1, "", 0 } };
	int64_t ms = s->wall0 + t, sec = ms / 1000;
	int frac = (int)(ms % 1000);
	char *dot;
	size_t slot = (size_t)sec & 3;

	if (ms < 0 || size < sizeof cache[0].text + 6) {
		ap_format_time(ms, buf, size);
		return;
	}
	if (cache[slot].sec != sec) {
		ap_format_time(sec * 1000, cache[slot].text, sizeof cache[slot].text);
		if ((dot = strrchr(cache[slot].text, '.')) == NULL) {
			ap_format_time(ms, buf, size);
			return;
		}
		cache[slot].len = (size_t)(dot - cache[slot].text);
		cache[slot].sec = sec;
	}
	memcpy(buf, cache[slot].text, cache[slot].len);
	buf += cache[slot].len;
	buf[0] = '.';
	buf[1] = (char)('0' + frac / 100);
	buf[2] = (char)('0' + frac / 10 % 10);
	buf[3] = (char)('0' + frac % 10);
	buf[4] = 'Z';
	buf[5] = '\0';
}

/*
 * A time as each generation's API writes it: 2.x "2026-11-25T11:46:10.504000+00:00"
 * (Python's isoformat, microseconds), 3.x "2026-11-25T11:46:10.504000Z" (pydantic).
 */
static void
sim_time_api(const struct sim *s, int64_t t, enum sim_api api, char *buf, size_t size)
{
	size_t n;

	sim_time(s, t, buf, size);
	n = strlen(buf);
	if (n > 0 && buf[n - 1] == 'Z' && n + 9 < size)
		snprintf(buf + n - 1, size - (n - 1), "000%s", api == SIM_API_V1 ? "+00:00" : "Z");
}

static json_t *
sim_time_json(const struct sim *s, int64_t t, enum sim_api api)
{
	char buf[64];

	if (t < 0)
		return json_null();
	sim_time_api(s, t, api, buf, sizeof buf);
	return json_string(buf);
}

/* splitmix64: small, fast, and the same sequence on every platform. */
static uint64_t
sim_rand(struct sim *s)
{
	uint64_t z = (s->rng += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static double
sim_rand01(struct sim *s)
{
	return (double)(sim_rand(s) >> 11) / 9007199254740992.0;
}

static const char *
http_reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 201: return "Created";
	case 204: return "No Content";
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
	default: return "Status";
	}
}

static const char *
method_name(unsigned m)
{
	switch (m) {
	case EVHTTP_REQ_GET: return "GET";
	case EVHTTP_REQ_POST: return "POST";
	case EVHTTP_REQ_HEAD: return "HEAD";
	case EVHTTP_REQ_PUT: return "PUT";
	case EVHTTP_REQ_DELETE: return "DELETE";
	case EVHTTP_REQ_OPTIONS: return "OPTIONS";
	case EVHTTP_REQ_TRACE: return "TRACE";
	case EVHTTP_REQ_CONNECT: return "CONNECT";
	case EVHTTP_REQ_PATCH: return "PATCH";
	default: return "?";
	}
}

/* evhttp_cmd_type values are bit flags; store them in a byte. */
static uint8_t
method_code(enum evhttp_cmd_type m)
{
	uint8_t i;

	for (i = 0; i < 16; i++) {
		if ((unsigned)m == (1u << i))
			return i;
	}
	return 15;
}

static int
b64_val(int c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+' || c == '-')
		return 62;
	if (c == '/' || c == '_')
		return 63;
	return -1;
}

/* Decodes standard or URL-safe Base64 (padding optional) into a new string. */
static char *
b64_decode(const char *in, size_t len, size_t *outlen)
{
	char *out = ap_xmalloc(len / 4 * 3 + 4);
	uint32_t acc = 0;
	size_t i, n = 0;
	int bits = 0;

	for (i = 0; i < len; i++) {
		int v;

		if (in[i] == '=')
			break;
		if ((v = b64_val((unsigned char)in[i])) < 0) {
			free(out);
			return NULL;
		}
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[n++] = (char)((acc >> bits) & 0xff);
		}
	}
	out[n] = '\0';
	*outlen = n;
	return out;
}

static void
b64url_encode(struct ap_buf *b, const unsigned char *in, size_t len)
{
	static const char tab[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t i;

	for (i = 0; i + 2 < len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];

		ap_buf_addc(b, tab[v >> 18]);
		ap_buf_addc(b, tab[(v >> 12) & 63]);
		ap_buf_addc(b, tab[(v >> 6) & 63]);
		ap_buf_addc(b, tab[v & 63]);
	}
	if (len - i == 1) {
		uint32_t v = (uint32_t)in[i] << 16;

		ap_buf_addc(b, tab[v >> 18]);
		ap_buf_addc(b, tab[(v >> 12) & 63]);
	} else if (len - i == 2) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;

		ap_buf_addc(b, tab[v >> 18]);
		ap_buf_addc(b, tab[(v >> 12) & 63]);
		ap_buf_addc(b, tab[(v >> 6) & 63]);
	}
}

/* The plugin's DAG id: each run of characters outside [0-9a-zA-Z-_] becomes one '_'. */
static char *
dag_id_from_name(const char *name)
{
	struct ap_buf b;
	bool in_run = false;

	ap_buf_init(&b);
	for (; *name != '\0'; name++) {
		unsigned char c = (unsigned char)*name;
		bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
		    (c >= 'A' && c <= 'Z') || c == '-' || c == '_';

		if (ok) {
			ap_buf_addc(&b, (char)c);
			in_run = false;
		} else if (!in_run) {
			ap_buf_addc(&b, '_');
			in_run = true;
		}
	}
	return ap_buf_steal(&b, NULL);
}

/* Airflow's default allowed_run_id_pattern. */
static bool
run_id_valid(const char *id)
{
	if (*id == '\0' || strlen(id) > 250)
		return false;
	for (; *id != '\0'; id++) {
		unsigned char c = (unsigned char)*id;

		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
		    (c >= 'A' && c <= 'Z') || strchr("_.~:+-", c) != NULL))
			return false;
	}
	return true;
}

static int
dump_to_evbuffer(const char *buf, size_t size, void *arg)
{
	return evbuffer_add(arg, buf, size);
}

/* ---------------------------------------------------------------- scenario loading */

static bool
keys_allowed(const json_t *obj, const char *const *allowed, const char *where, char **cause)
{
	const char *key;
	json_t *v;

	json_object_foreach((json_t *)obj, key, v) {
		size_t i;
		bool ok = false;

		for (i = 0; allowed[i] != NULL; i++) {
			if (strcmp(allowed[i], key) == 0)
				ok = true;
		}
		if (!ok && key[0] != '$' && strcmp(key, "comment") != 0) {
			*cause = ap_xprintf("%s.%s: unknown key", where, key);
			return false;
		}
	}
	return true;
}

static int
get_int(const json_t *obj, const char *key, int64_t min, int64_t max, int64_t *out,
    const char *where, char **cause)
{
	const json_t *v = json_object_get(obj, key);

	if (v == NULL)
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
		*cause = ap_xprintf("%s.%s: expected an integer in [%" PRId64 ", %" PRId64 "]",
		    where, key, min, max);
		return -1;
	}
	*out = json_integer_value(v);
	return 0;
}

static int
get_rate(const json_t *obj, const char *key, double *out, const char *where, char **cause)
{
	const json_t *v = json_object_get(obj, key);

	if (v == NULL)
		return 0;
	if (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) > 1) {
		*cause = ap_xprintf("%s.%s: expected a number in [0, 1]", where, key);
		return -1;
	}
	*out = json_number_value(v);
	return 0;
}

static int
get_bool(const json_t *obj, const char *key, bool *out, const char *where, char **cause)
{
	const json_t *v = json_object_get(obj, key);

	if (v == NULL)
		return 0;
	if (!json_is_boolean(v)) {
		*cause = ap_xprintf("%s.%s: expected a boolean", where, key);
		return -1;
	}
	*out = json_is_true(v);
	return 0;
}

static int
get_str(const json_t *obj, const char *key, const char **out, const char *where, char **cause)
{
	const json_t *v = json_object_get(obj, key);

	if (v == NULL)
		return 0;
	if (!json_is_string(v)) {
		*cause = ap_xprintf("%s.%s: expected a string", where, key);
		return -1;
	}
	*out = json_string_value(v);
	return 0;
}

static bool
outcome_parse(const char *s, enum sim_outcome *out)
{
	if (strcmp(s, "success") == 0)
		*out = SIM_OUT_SUCCESS;
	else if (strcmp(s, "failed") == 0)
		*out = SIM_OUT_FAILED;
	else if (strcmp(s, "worker_died") == 0)
		*out = SIM_OUT_WORKER_DIED;
	else
		return false;
	return true;
}

/* Validates one timing block: pipelines.<type> or dags.<id>. */
static int
timing_check(const json_t *obj, const char *where, bool is_dag, char **cause)
{
	static const char *const pipeline_keys[] = { "queued_ms", "running_ms", "outcome",
		"parse_delay_ms", NULL };
	static const char *const dag_keys[] = { "queued_ms", "running_ms", "outcome",
		"parse_delay_ms", "import_error", "exists", "pipeline_type", "is_paused",
		"deploy_status", "fixed_by_deploy", NULL };
	const json_t *o;
	int64_t i;
	const char *str;
	bool b;
	enum sim_outcome oc;

	if (!json_is_object(obj)) {
		*cause = ap_xprintf("%s: expected an object", where);
		return -1;
	}
	if (!keys_allowed(obj, is_dag ? dag_keys : pipeline_keys, where, cause))
		return -1;
	if (get_int(obj, "queued_ms", 0, UINT32_MAX, &i, where, cause) < 0 ||
	    get_int(obj, "running_ms", 0, UINT32_MAX, &i, where, cause) < 0 ||
	    get_int(obj, "parse_delay_ms", 0, INT32_MAX, &i, where, cause) < 0 ||
	    get_int(obj, "deploy_status", 200, 599, &i, where, cause) < 0 ||
	    get_str(obj, "import_error", &str, where, cause) < 0 ||
	    get_str(obj, "pipeline_type", &str, where, cause) < 0 ||
	    get_bool(obj, "exists", &b, where, cause) < 0 ||
	    get_bool(obj, "fixed_by_deploy", &b, where, cause) < 0 ||
	    get_bool(obj, "is_paused", &b, where, cause) < 0)
		return -1;
	if ((o = json_object_get(obj, "outcome")) != NULL) {
		size_t k;
		const json_t *e;

		if (json_is_string(o)) {
			if (!outcome_parse(json_string_value(o), &oc))
				goto bad_outcome;
		} else if (json_is_array(o) && json_array_size(o) > 0) {
			json_array_foreach(o, k, e) {
				if (!json_is_string(e) || !outcome_parse(json_string_value(e), &oc))
					goto bad_outcome;
			}
		} else
			goto bad_outcome;
	}
	return 0;
bad_outcome:
	*cause = ap_xprintf("%s.outcome: expected \"success\", \"failed\", \"worker_died\" "
	    "or a non-empty list of them", where);
	return -1;
}

static int
faults_parse(const json_t *obj, struct faults *f, char **cause)
{
	static const char *const keys[] = { "latency_ms", "latency_jitter_ms", "error_rate",
		"error_status", "error_burst", "rate_limit_every", "rate_limit_burst",
		"retry_after_s", "retry_after_503", "reset_rate", "lost_reply_rate", "outage", "paths", "plugin_v2_fallback_404",
		"plugin_pluginsv2_404", "proxy_pages", NULL };
	static const char *const burst_keys[] = { "after", "count", "status", NULL };
	static const char *const outage_keys[] = { "start_ms", "duration_ms", "mode", NULL };
	const char *w = "faults";
	const json_t *v;
	int64_t st;

	memset(f, 0, sizeof *f);
	f->error_status[0] = 503;
	f->n_error_status = 1;
	f->burst_status = 503;
	f->rate_limit_burst = 1;
	f->retry_after_s = 1;
	if (obj == NULL)
		return 0;
	if (!json_is_object(obj)) {
		*cause = ap_xprintf("faults: expected an object");
		return -1;
	}
	if (!keys_allowed(obj, keys, w, cause) ||
	    get_int(obj, "latency_ms", 0, 600000, &f->latency_ms, w, cause) < 0 ||
	    get_int(obj, "latency_jitter_ms", 0, 600000, &f->latency_jitter_ms, w, cause) < 0 ||
	    get_rate(obj, "error_rate", &f->error_rate, w, cause) < 0 ||
	    get_int(obj, "rate_limit_every", 0, INT32_MAX, &f->rate_limit_every, w, cause) < 0 ||
	    get_int(obj, "rate_limit_burst", 1, INT32_MAX, &f->rate_limit_burst, w, cause) < 0 ||
	    get_int(obj, "retry_after_s", 0, 86400, &f->retry_after_s, w, cause) < 0 ||
	    get_rate(obj, "reset_rate", &f->reset_rate, w, cause) < 0 ||
	    get_rate(obj, "lost_reply_rate", &f->lost_reply_rate, w, cause) < 0 ||
	    get_bool(obj, "retry_after_503", &f->retry_after_503, w, cause) < 0 ||
	    get_bool(obj, "proxy_pages", &f->proxy_pages, w, cause) < 0 ||
	    get_bool(obj, "plugin_v2_fallback_404", &f->plugin_v2_fallback_404, w, cause) < 0 ||
	    get_bool(obj, "plugin_pluginsv2_404", &f->plugin_pluginsv2_404, w, cause) < 0)
		return -1;
	if (f->rate_limit_every > 0 && f->rate_limit_burst > f->rate_limit_every) {
		*cause = ap_xprintf("faults.rate_limit_burst: larger than rate_limit_every");
		return -1;
	}
	if ((v = json_object_get(obj, "error_status")) != NULL) {
		size_t i;
		const json_t *e;

		if (json_is_integer(v))
			v = json_pack("[O]", v);
		else
			json_incref((json_t *)v);
		if (!json_is_array(v) || json_array_size(v) == 0 ||
		    json_array_size(v) > SIM_MAX_ERROR_STATUS) {
			json_decref((json_t *)v);
			*cause = ap_xprintf("faults.error_status: expected a status or a list of "
			    "1 to %d statuses", SIM_MAX_ERROR_STATUS);
			return -1;
		}
		f->n_error_status = 0;
		json_array_foreach(v, i, e) {
			if (!json_is_integer(e) || json_integer_value(e) < 400 ||
			    json_integer_value(e) > 599) {
				json_decref((json_t *)v);
				*cause = ap_xprintf("faults.error_status: statuses are 400..599");
				return -1;
			}
			f->error_status[f->n_error_status++] = (int)json_integer_value(e);
		}
		json_decref((json_t *)v);
	}
	if ((v = json_object_get(obj, "error_burst")) != NULL) {
		w = "faults.error_burst";
		st = 503;
		if (!json_is_object(v)) {
			*cause = ap_xprintf("%s: expected an object", w);
			return -1;
		}
		if (!keys_allowed(v, burst_keys, w, cause) ||
		    get_int(v, "after", 0, INT64_MAX / 2, &f->burst_after, w, cause) < 0 ||
		    get_int(v, "count", 0, INT64_MAX / 2, &f->burst_count, w, cause) < 0 ||
		    get_int(v, "status", 400, 599, &st, w, cause) < 0)
			return -1;
		f->burst_status = (int)st;
	}
	if ((v = json_object_get(obj, "outage")) != NULL) {
		const char *mode = "503";

		w = "faults.outage";
		if (!json_is_object(v)) {
			*cause = ap_xprintf("%s: expected an object", w);
			return -1;
		}
		if (!keys_allowed(v, outage_keys, w, cause) ||
		    get_int(v, "start_ms", 0, INT64_MAX / 4, &f->outage_start_ms, w, cause) < 0 ||
		    get_int(v, "duration_ms", 0, INT64_MAX / 4, &f->outage_duration_ms, w,
		    cause) < 0 ||
		    get_str(v, "mode", &mode, w, cause) < 0)
			return -1;
		if ((f->outage_mode = outage_mode_parse(mode)) == OUTAGE_BAD) {
			*cause = ap_xprintf("%s.mode: expected \"503\", \"reset\" or"
			    " \"proxy404\"", w);
			return -1;
		}
	}
	if ((v = json_object_get(obj, "paths")) != NULL) {
		size_t i;
		const json_t *e;

		if (!json_is_array(v)) {
			*cause = ap_xprintf("faults.paths: expected a list of path prefixes");
			return -1;
		}
		json_array_foreach(v, i, e) {
			if (!json_is_string(e)) {
				*cause = ap_xprintf("faults.paths[%zu]: expected a string", i);
				return -1;
			}
		}
		f->paths = v;
	}
	return 0;
}

/* Parses root (stolen) into sc. On error sc is untouched, root freed, *cause set. */
static int
scenario_parse(json_t *root, struct scenario *sc, char **cause)
{
	static const char *const keys[] = { "api", "username", "password", "token_ttl_ms",
		"parse_delay_ms", "pipelines", "dags", "faults", "seed", "airflow_version",
		"version_auth", "proxy_401", "proxy_pages_404", NULL };
	struct scenario n;
	const char *api = NULL;
	const char *key;
	json_t *v;
	int64_t seed = 1;
	const char *w = "scenario";

	memset(&n, 0, sizeof n);
	n.root = root;
	n.api = SIM_API_V1;
	n.username = "admin";
	n.password = "admin";
	n.token_ttl_ms = 3600000;
	n.parse_delay_ms = 200;
	if (!json_is_object(root)) {
		*cause = ap_xprintf("scenario: expected a JSON object");
		goto fail;
	}
	if (!keys_allowed(root, keys, w, cause) ||
	    get_str(root, "api", &api, w, cause) < 0 ||
	    get_str(root, "username", &n.username, w, cause) < 0 ||
	    get_str(root, "password", &n.password, w, cause) < 0 ||
	    get_str(root, "airflow_version", &n.version, w, cause) < 0 ||
	    get_bool(root, "version_auth", &n.version_auth, w, cause) < 0 ||
	    get_bool(root, "proxy_pages_404", &n.proxy_pages_404, w, cause) < 0 ||
	    get_int(root, "token_ttl_ms", 0, INT64_MAX / 4, &n.token_ttl_ms, w, cause) < 0 ||
	    get_int(root, "parse_delay_ms", 0, INT32_MAX, &n.parse_delay_ms, w, cause) < 0 ||
	    get_int(root, "seed", INT64_MIN, INT64_MAX, &seed, w, cause) < 0)
		goto fail;
	n.seed = (uint64_t)seed;
	if (api != NULL) {
		if (strcmp(api, "v1") == 0)
			n.api = SIM_API_V1;
		else if (strcmp(api, "v2") == 0)
			n.api = SIM_API_V2;
		else {
			*cause = ap_xprintf("scenario.api: expected \"v1\" or \"v2\"");
			goto fail;
		}
		n.api_set = true;
	}
	if ((v = json_object_get(root, "proxy_401")) != NULL) {
		size_t i;
		const json_t *e;

		if (!json_is_array(v)) {
			*cause = ap_xprintf("scenario.proxy_401: expected a list of path prefixes");
			goto fail;
		}
		json_array_foreach(v, i, e) {
			if (!json_is_string(e)) {
				*cause = ap_xprintf("scenario.proxy_401[%zu]: expected a string", i);
				goto fail;
			}
		}
		n.proxy_401 = v;
	}
	if ((v = json_object_get(root, "pipelines")) != NULL) {
		if (!json_is_object(v)) {
			*cause = ap_xprintf("scenario.pipelines: expected an object");
			goto fail;
		}
		json_t *p;

		json_object_foreach(v, key, p) {
			char *where;
			int rc;

			if (key[0] == '$')
				continue;
			where = ap_xprintf("pipelines.%s", key);
			rc = timing_check(p, where, false, cause);
			free(where);
			if (rc < 0)
				goto fail;
		}
		n.pipelines = v;
	}
	if ((v = json_object_get(root, "dags")) != NULL) {
		json_t *d;

		if (!json_is_object(v)) {
			*cause = ap_xprintf("scenario.dags: expected an object");
			goto fail;
		}
		json_object_foreach(v, key, d) {
			char *where;
			int rc;

			if (key[0] == '$')
				continue;
			where = ap_xprintf("dags.%s", key);
			rc = timing_check(d, where, true, cause);
			free(where);
			if (rc < 0)
				goto fail;
		}
		n.dags = v;
	}
	if (faults_parse(json_object_get(root, "faults"), &n.f, cause) < 0)
		goto fail;
	json_decref(sc->root);
	*sc = n;
	return 0;
fail:
	json_decref(root);
	return -1;
}

/* Looks key up in dags[dag_id], then pipelines[ptype], then pipelines["*"]. Borrowed. */
static const json_t *
sc_lookup(const struct scenario *sc, const char *dag_id, const char *ptype, const char *key)
{
	const json_t *v;

	if (sc->dags != NULL && dag_id != NULL &&
	    (v = json_object_get(json_object_get(sc->dags, dag_id), key)) != NULL)
		return v;
	if (sc->pipelines != NULL && ptype != NULL &&
	    (v = json_object_get(json_object_get(sc->pipelines, ptype), key)) != NULL)
		return v;
	if (sc->pipelines != NULL &&
	    (v = json_object_get(json_object_get(sc->pipelines, "*"), key)) != NULL)
		return v;
	return NULL;
}

static int64_t
sc_int(const struct scenario *sc, const struct dag *d, const char *key, int64_t dflt)
{
	const json_t *v = sc_lookup(sc, d->dag_id, d->pipeline_type, key);

	return v != NULL ? json_integer_value(v) : dflt;
}

static const char *
sc_import_error(const struct scenario *sc, const struct dag *d)
{
	const json_t *v = json_object_get(json_object_get(sc->dags, d->dag_id), "import_error");

	return json_is_string(v) ? json_string_value(v) : NULL;
}

/* The import error of d's file at now (sim ms), or NULL. */
static const char *
dag_import_error(const struct sim *s, const struct dag *d, int64_t now)
{
	if (d->fixed_at != 0 && now >= d->fixed_at)
		return NULL;
	return sc_import_error(&s->sc, d);
}

/* When Airflow last stamped d's import error (parsing its file again every
 * SIM_REPARSE_MS, and stamping it each time). */
static int64_t
dag_import_stamp(const struct dag *d, int64_t now)
{
	if (d->fixed_at != 0)
		return d->stale_stamp;
	return d->parsed_at + (now - d->parsed_at) / SIM_REPARSE_MS * SIM_REPARSE_MS;
}

/* ---------------------------------------------------------------- DAGs and runs */

static void dag_dumps(struct dag *d);
static void run_dumps(struct run *r, const json_t *conf);

static void
run_free(struct run *r)
{
	if (r == NULL)
		return;
	free(r->run_id);
	free(r->jrid);
	free(r->jconf);
	free(r->jld);
	free(r->logical_date);
	free(r);
}

static void
dag_forget_runs(struct sim *s, struct dag *d)
{
	struct run *r, *next;

	for (r = d->run_head; r != NULL; r = next) {
		next = r->next;
		run_free(r);
	}
	s->nruns -= d->nruns;
	d->run_head = d->run_tail = NULL;
	d->nruns = 0;
	smap_cleanup(&d->runs);
}

static void
dag_remove(struct sim *s, struct dag *d)
{
	dag_forget_runs(s, d);
	smap_del(&s->dags, d->dag_id);
	if (d->prev != NULL)
		d->prev->next = d->next;
	else
		s->dag_head = d->next;
	if (d->next != NULL)
		d->next->prev = d->prev;
	else
		s->dag_tail = d->prev;
	free(d->dag_id);
	free(d->jid);
	free(d->jtoken);
	free(d->jloc);
	free(d->pipeline_type);
	free(d->schedule);
	free(d);
}

static struct dag *
dag_find(struct sim *s, const char *dag_id)
{
	return smap_get(&s->dags, dag_id);
}

/* The DAG as the API sees it: deployed, parsed and imported once. */
static struct dag *
dag_visible(struct sim *s, const char *dag_id, int64_t now)
{
	struct dag *d = dag_find(s, dag_id);

	if (d == NULL || now < d->visible_at)
		return NULL;
	if (!d->imported) {
		if (dag_import_error(s, d, now) != NULL)
			return NULL;
		d->imported = true;
	}
	return d;
}

/* Creates the DAG or updates it on redeploy (runs, pause state and visibility stay). */
static struct dag *
dag_deploy(struct sim *s, const char *dag_id, const char *ptype, const char *schedule,
    int64_t now, bool parsed_now)
{
	struct dag *d = dag_find(s, dag_id);

	if (d == NULL) {
		const json_t *p;

		d = ap_xcalloc(1, sizeof *d);
		d->dag_id = ap_xstrdup(dag_id);
		dag_dumps(d);
		d->pipeline_type = ap_xstrdup(ptype);
		d->created = now;
		d->paused = true;
		d->serial = ++s->dag_serial;
		if ((p = json_object_get(json_object_get(s->sc.dags, dag_id), "is_paused")) != NULL)
			d->paused = json_is_true(p);
		d->visible_at = parsed_now ? now :
		    now + sc_int(&s->sc, d, "parse_delay_ms", s->sc.parse_delay_ms);
		d->parsed_at = d->visible_at;
		smap_put(&s->dags, d->dag_id, d);
		d->prev = s->dag_tail;
		if (s->dag_tail != NULL)
			s->dag_tail->next = d;
		else
			s->dag_head = d;
		s->dag_tail = d;
	} else {
		free(d->pipeline_type);
		d->pipeline_type = ap_xstrdup(ptype);
		free(d->schedule);
		d->schedule = NULL;
		if (d->fixed_at == 0 && sc_import_error(&s->sc, d) != NULL &&
		    json_is_true(json_object_get(json_object_get(s->sc.dags, dag_id),
		    "fixed_by_deploy"))) {
			d->stale_stamp = dag_import_stamp(d, now);
			d->fixed_at = now + sc_int(&s->sc, d, "parse_delay_ms",
			    s->sc.parse_delay_ms) + 1;
		}
		if (now >= d->visible_at)
			d->parsed_at = now;
	}
	if (schedule != NULL)
		d->schedule = ap_xstrdup(schedule);
	return d;
}

/* DAGs the scenario says exist from the start. */
static void
sim_create_existing(struct sim *s)
{
	const char *key;
	json_t *v;

	if (s->sc.dags == NULL)
		return;
	json_object_foreach((json_t *)s->sc.dags, key, v) {
		const char *ptype = "metadata";

		if (!json_is_true(json_object_get(v, "exists")) || dag_find(s, key) != NULL)
			continue;
		if (json_is_string(json_object_get(v, "pipeline_type")))
			ptype = json_string_value(json_object_get(v, "pipeline_type"));
		dag_deploy(s, key, ptype, NULL, sim_now(s), true)->imported = true;
	}
}

/* State of r at now; start/end dates (sim ms, -1 for null) through the pointers. */
static enum sim_state
run_state(const struct run *r, int64_t now, int64_t *startp, int64_t *endp)
{
	int64_t start = -1, end = -1;
	enum sim_state st;

	if (r->forced != SIM_ST_NONE) {
		st = r->forced;
		start = r->started_at;
		end = r->forced_at;
	} else if (r->start < 0 || now < r->start + r->queued_ms) {
		st = SIM_ST_QUEUED;
	} else {
		start = r->start + r->queued_ms;
		if (r->outcome == SIM_OUT_WORKER_DIED || now < start + r->running_ms)
			st = SIM_ST_RUNNING;
		else {
			end = start + r->running_ms;
			st = r->outcome == SIM_OUT_SUCCESS ? SIM_ST_SUCCESS : SIM_ST_FAILED;
		}
	}
	if (startp != NULL)
		*startp = start;
	if (endp != NULL)
		*endp = end;
	return st;
}

static void
run_force(struct run *r, enum sim_state st, int64_t now)
{
	int64_t start;
	enum sim_state cur = run_state(r, now, &start, NULL);

	if (st == SIM_ST_QUEUED) {
		/* Cleared back to queued: it will run again once the DAG is unpaused. */
		r->forced = SIM_ST_NONE;
		r->start = r->dag->paused ? -1 : now;
		r->started_at = -1;
		return;
	}
	if (cur == st)
		return;
	r->started_at = start;
	r->forced = (uint8_t)st;
	r->forced_at = now;
}

static void
dag_set_paused(struct dag *d, bool paused, int64_t now)
{
	struct run *r;

	if (d->paused == paused)
		return;
	d->paused = paused;
	for (r = d->run_head; r != NULL; r = r->next) {
		if (r->forced != SIM_ST_NONE)
			continue;
		if (!paused && r->start < 0)
			r->start = now;
		else if (paused && run_state(r, now, NULL, NULL) == SIM_ST_QUEUED)
			r->start = -1;	/* queued runs wait again; running ones carry on */
	}
}

/* Creates a run (the id must be new). conf is borrowed (copied). */
static struct run *
run_create(struct sim *s, struct dag *d, const char *run_id, const json_t *conf,
    const char *logical_date, int64_t now)
{
	struct run *r = ap_xcalloc(1, sizeof *r);
	const json_t *oc;
	enum sim_outcome outcome = SIM_OUT_SUCCESS;

	r->run_id = ap_xstrdup(run_id);
	r->dag = d;
	r->logical_date = logical_date != NULL ? ap_xstrdup(logical_date) : NULL;
	run_dumps(r, conf != NULL && json_is_object(conf) ? conf : NULL);
	r->created = now;
	r->start = d->paused ? -1 : now;
	r->started_at = -1;
	r->forced = SIM_ST_NONE;
	r->queued_ms = (uint32_t)sc_int(&s->sc, d, "queued_ms", 50);
	r->running_ms = (uint32_t)sc_int(&s->sc, d, "running_ms", 300);
	if ((oc = sc_lookup(&s->sc, d->dag_id, d->pipeline_type, "outcome")) != NULL) {
		if (json_is_array(oc)) {
			size_t n = json_array_size(oc);
			size_t i = d->triggers < n ? (size_t)d->triggers : n - 1;

			oc = json_array_get(oc, i);
		}
		outcome_parse(json_string_value(oc), &outcome);
	}
	if (dag_import_error(s, d, now) != NULL)
		outcome = SIM_OUT_FAILED;
	r->outcome = (uint8_t)outcome;
	d->triggers++;
	smap_put(&d->runs, r->run_id, r);
	r->prev = d->run_tail;
	if (d->run_tail != NULL)
		d->run_tail->next = r;
	else
		d->run_head = r;
	d->run_tail = r;
	d->nruns++;
	s->nruns++;
	return r;
}

static void
sim_forget(struct sim *s, bool dags)
{
	struct dag *d, *next;

	for (d = s->dag_head; d != NULL; d = next) {
		next = d->next;
		if (dags)
			dag_remove(s, d);
		else
			dag_forget_runs(s, d);
	}
	if (dags) {
		smap_cleanup(&s->dags);
		sim_create_existing(s);
	}
}

/* ---------------------------------------------------------------- JSON views */

/*
 * The DAG and DAG run views are answered from templates: each view's tree is
 * built once with a marker string in place of every value that varies, dumped
 * as a reply is, and cut at the markers. A reply is the constant pieces with
 * the values' own dumps (jansson, same flags) between them: the same bytes as
 * dumping the whole tree, without building and dumping ~30 constant members
 * per request. Values that never change (a DAG's id and file, a run's id,
 * conf and logical date) are dumped once, when the DAG or run is created.
 */

static int
dump_to_buf(const char *buf, size_t size, void *arg)
{
	ap_buf_add(arg, buf, size);
	return 0;
}

/* Appends j (stolen) dumped as in a reply. */
static void
buf_dump(struct ap_buf *b, json_t *j)
{
	if (j == NULL || json_dump_callback(j, dump_to_buf, b, SIM_REPLY_FLAGS) != 0)
		ap_fatal("sim_airflow: cannot dump a JSON value");
	json_decref(j);
}

/* j (stolen) dumped as in a reply: a new string. */
static char *
str_dump(json_t *j)
{
	struct ap_buf b;

	ap_buf_init(&b);
	buf_dump(&b, j);
	return ap_buf_steal(&b, NULL);
}

/* The string str dumped as in a reply: a new string. */
static char *
str_json(const char *str)
{
	return str_dump(json_string(str));
}

static json_t *
tm_mark(int var)
{
	return json_sprintf(SIM_TM_MARK "%02d@", var);
}

/* Cuts the reply dump of tree (stolen; built with tm_mark values) at its markers. */
static void
tmpl_init(struct tmpl *t, json_t *tree)
{
	static const char mark[] = "\"" SIM_TM_MARK;
	const char *p, *m;
	size_t start = 0;

	if (tree == NULL)
		ap_fatal("sim_airflow: template: json_pack failed");
	t->text = str_dump(tree);
	t->ngap = 0;
	for (p = t->text; (m = strstr(p, mark)) != NULL; p = m + sizeof mark - 1 + 4) {
		if (t->ngap == SIM_TM_GAPS)
			ap_fatal("sim_airflow: template: too many values");
		t->off[t->ngap] = start;
		t->len[t->ngap] = (size_t)(m - t->text) - start;
		t->var[t->ngap] = (uint8_t)atoi(m + sizeof mark - 1);
		if (t->var[t->ngap] >= SIM_TM_VARS || m[sizeof mark - 1 + 2] != '@' ||
		    m[sizeof mark - 1 + 3] != '"')
			ap_fatal("sim_airflow: template: bad marker");
		t->ngap++;
		start = (size_t)(m - t->text) + sizeof mark - 1 + 4;
	}
	t->off[t->ngap] = start;
	t->len[t->ngap] = strlen(t->text) - start;
}

static struct tvals *
tv_begin(struct sim *s)
{
	ap_buf_reset(&s->tv.b);
	return &s->tv;
}

static void
tv_add(struct tvals *v, int var, const char *p, size_t len)
{
	v->off[var] = v->b.len;
	ap_buf_add(&v->b, p, len);
	v->len[var] = len;
}

static void
tv_lit(struct tvals *v, int var, const char *dumped)
{
	tv_add(v, var, dumped, strlen(dumped));
}

/* j (stolen) dumped. */
static void
tv_json(struct tvals *v, int var, json_t *j)
{
	v->off[var] = v->b.len;
	buf_dump(&v->b, j);
	v->len[var] = v->b.len - v->off[var];
}

static void
tv_str(struct tvals *v, int var, const char *str)
{
	tv_json(v, var, json_string(str));
}

/* t (one value) filled with the string str. */
static void
tv_str1(struct tvals *v, int var, const struct tmpl *t, const char *str)
{
	v->off[var] = v->b.len;
	ap_buf_add(&v->b, t->text + t->off[0], t->len[0]);
	buf_dump(&v->b, json_string(str));
	ap_buf_add(&v->b, t->text + t->off[1], t->len[1]);
	v->len[var] = v->b.len - v->off[var];
}

static void
tv_bool(const struct sim *s, struct tvals *v, int var, bool b)
{
	tv_lit(v, var, b ? s->jtrue : s->jfalse);
}

/* A time (sim ms) as sim_time_json() has it. */
static void
tv_time(struct tvals *v, int var, const struct sim *s, int64_t t, enum sim_api api)
{
	tv_json(v, var, sim_time_json(s, t, api));
}

/* Replaces out's contents with t filled with v's values. */
static void
tmpl_render(const struct tmpl *t, const struct tvals *v, struct ap_buf *out)
{
	size_t i;

	ap_buf_reset(out);
	for (i = 0; i < t->ngap; i++) {
		ap_buf_add(out, t->text + t->off[i], t->len[i]);
		ap_buf_add(out, v->b.data + v->off[t->var[i]], v->len[t->var[i]]);
	}
	ap_buf_add(out, t->text + t->off[i], t->len[i]);
}

static char *
fileloc(const struct dag *d)
{
	return ap_xprintf("%s/%s.py", SIM_DAGS_FOLDER, d->dag_id);
}

/* The DAG views' values (DV_*), borrowed. */
static json_t *
dag_tree(enum sim_api api, json_t *const *v)
{
	if (api == SIM_API_V1)
		return json_pack("{s:O, s:O, s:n, s:s, s:O, s:O, s:O, s:b, s:b, s:O, s:b, s:n, "
		    "s:O, s:n, s:i, s:i, s:i, s:n, s:n, s:n, s:n, s:[s], s:n, s:n, s:[], "
		    "s:n, s:b, s:O}",
		    "dag_id", v[DV_ID], "dag_display_name", v[DV_ID], "description",
		    "default_view", "grid", "file_token", v[DV_TOKEN], "fileloc", v[DV_LOC],
		    "has_import_errors", v[DV_IERR], "has_task_concurrency_limits", 0,
		    "is_active", 1, "is_paused", v[DV_PAUSED], "is_subdag", 0,
		    "last_expired",
		    "last_parsed_time", v[DV_PARSED], "last_pickled",
		    "max_active_runs", 1, "max_active_tasks", 16,
		    "max_consecutive_failed_dag_runs", 0,
		    "next_dagrun", "next_dagrun_create_after", "next_dagrun_data_interval_end",
		    "next_dagrun_data_interval_start", "owners", "openmetadata",
		    "pickle_id", "root_dag_id", "tags", "timetable_description",
		    "scheduler_lock", 0, "schedule_interval", v[DV_SCHED]);
	return json_pack("{s:O, s:O, s:n, s:s, s:n, s:n, s:O, s:O, s:O, s:b, s:O, s:b, "
	    "s:n, s:f, s:O, s:i, s:i, s:i, s:n, s:n, s:n, s:n, s:[s], s:O, s:[], "
	    "s:n, s:b, s:O}",
	    "dag_id", v[DV_ID], "dag_display_name", v[DV_ID], "allowed_run_types",
	    "bundle_name", "dags-folder", "bundle_version", "description",
	    "file_token", v[DV_TOKEN], "fileloc", v[DV_LOC], "has_import_errors", v[DV_IERR],
	    "has_task_concurrency_limits", 0, "is_paused", v[DV_PAUSED], "is_stale", 0,
	    "last_expired", "last_parse_duration", 0.05,
	    "last_parsed_time", v[DV_PARSED],
	    "max_active_runs", 1, "max_active_tasks", 16,
	    "max_consecutive_failed_dag_runs", 0,
	    "next_dagrun_data_interval_end", "next_dagrun_data_interval_start",
	    "next_dagrun_logical_date", "next_dagrun_run_after",
	    "owners", "openmetadata", "relative_fileloc", v[DV_REL], "tags",
	    "timetable_description", "timetable_partitioned", 0, "timetable_summary",
	    v[DV_SUMMARY]);
}

/* The run views' values (RV_*), borrowed. */
static json_t *
run_tree(enum sim_api api, json_t *const *v)
{
	if (api == SIM_API_V1)
		return json_pack("{s:O, s:O, s:O, s:n, s:n, s:O, s:O, s:b, s:n, s:O, s:n, "
		    "s:s, s:O, s:O}",
		    "conf", v[RV_CONF], "dag_id", v[RV_DAG], "dag_run_id", v[RV_RUN],
		    "data_interval_end", "data_interval_start",
		    "end_date", v[RV_END], "execution_date", v[RV_LD],
		    "external_trigger", 1, "last_scheduling_decision",
		    "logical_date", v[RV_LD], "note", "run_type", "manual",
		    "start_date", v[RV_START], "state", v[RV_STATE]);
	return json_pack("{s:n, s:O, s:O, s:O, s:O, s:[{s:O, s:i, s:O, s:O, s:O, s:s, "
	    "s:n, s:n}], s:n, s:n, s:O, s:O, s:n, s:O, s:n, s:n, s:O, s:O, s:s, s:O, "
	    "s:O, s:s, s:O}",
	    "bundle_version", "conf", v[RV_CONF], "dag_display_name", v[RV_DAG],
	    "dag_id", v[RV_DAG], "dag_run_id", v[RV_RUN],
	    "dag_versions", "id", v[RV_UUID], "version_number", 1, "dag_id", v[RV_DAG],
	    "created_at", v[RV_DAG_CREATED], "dag_display_name", v[RV_DAG],
	    "bundle_name", "dags-folder", "bundle_url", "bundle_version",
	    "data_interval_end", "data_interval_start",
	    "duration", v[RV_DURATION],
	    "end_date", v[RV_END], "last_scheduling_decision",
	    "logical_date", v[RV_LD], "note", "partition_key",
	    "queued_at", v[RV_QUEUED], "run_after", v[RV_QUEUED], "run_type", "manual",
	    "start_date", v[RV_START], "state", v[RV_STATE],
	    "triggered_by", "rest_api", "triggering_user_name", v[RV_USER]);
}

static void
sim_templates_init(struct sim *s)
{
	json_t *mk[SIM_TM_VARS];
	int i;

	for (i = 0; i < SIM_TM_VARS; i++)
		mk[i] = tm_mark(i);
	tmpl_init(&s->t_dag[0], dag_tree(SIM_API_V1, mk));
	tmpl_init(&s->t_dag[1], dag_tree(SIM_API_V2, mk));
	tmpl_init(&s->t_run[0], run_tree(SIM_API_V1, mk));
	tmpl_init(&s->t_run[1], run_tree(SIM_API_V2, mk));
	tmpl_init(&s->t_msg, json_pack("{s:O}", "message", mk[0]));
	tmpl_init(&s->t_cron, json_pack("{s:s, s:O}", "__type", "CronExpression", "value",
	    mk[0]));
	if (s->t_msg.ngap != 1 || s->t_cron.ngap != 1)
		ap_fatal("sim_airflow: template: one value expected");
	for (i = 0; i < SIM_TM_VARS; i++)
		json_decref(mk[i]);
	for (i = 0; i < SIM_ST_NONE; i++)
		s->jstate[i] = str_json(sim_state_names[i]);
	s->jtrue = str_dump(json_true());
	s->jfalse = str_dump(json_false());
	s->jnull = str_dump(json_null());
}

static void
sim_templates_free(struct sim *s)
{
	int i;

	free(s->t_dag[0].text);
	free(s->t_dag[1].text);
	free(s->t_run[0].text);
	free(s->t_run[1].text);
	free(s->t_msg.text);
	free(s->t_cron.text);
	for (i = 0; i < SIM_ST_NONE; i++)
		free(s->jstate[i]);
	free(s->jtrue);
	free(s->jfalse);
	free(s->jnull);
	ap_buf_cleanup(&s->tv.b);
	ap_buf_cleanup(&s->out);
}

/* The dumps of what never changes in a DAG's views. */
static void
dag_dumps(struct dag *d)
{
	char token[32], *loc = fileloc(d);

	snprintf(token, sizeof token, "Ii4uLiI.%08x", smap_hash(d->dag_id));
	d->jid = str_json(d->dag_id);
	d->jtoken = str_json(token);
	d->jloc = str_json(loc);
	free(loc);
}


/* The DAG as GET /dags/{id} answers it, into out. */
static void
dag_text(struct sim *s, const struct dag *d, enum sim_api api, struct ap_buf *out)
{
	struct tvals *v = tv_begin(s);

	tv_lit(v, DV_ID, d->jid);
	tv_lit(v, DV_TOKEN, d->jtoken);
	tv_lit(v, DV_LOC, d->jloc);
	tv_bool(s, v, DV_IERR, dag_import_error(s, d, sim_now(s)) != NULL);
	tv_bool(s, v, DV_PAUSED, d->paused);
	tv_time(v, DV_PARSED, s, d->parsed_at, api);
	if (api == SIM_API_V1) {
		if (d->schedule != NULL)
			tv_str1(v, DV_SCHED, &s->t_cron, d->schedule);
		else
			tv_lit(v, DV_SCHED, s->jnull);
	} else {
		tv_json(v, DV_REL, json_sprintf("%s.py", d->dag_id));
		if (d->schedule != NULL)
			tv_str(v, DV_SUMMARY, d->schedule);
		else
			tv_lit(v, DV_SUMMARY, s->jnull);
	}
	tmpl_render(&s->t_dag[api == SIM_API_V1 ? 0 : 1], v, out);
}

/* The dumps of what never changes in a run's views; conf is borrowed. */
static void
run_dumps(struct run *r, const json_t *conf)
{
	r->jrid = str_json(r->run_id);
	r->jconf = str_dump(conf != NULL ? json_incref((json_t *)conf) : json_object());
	r->jld = str_dump(r->logical_date != NULL ? json_string(r->logical_date) : json_null());
}

static void
run_uuid(const struct run *r, char *uuid, size_t size)
{
	uint32_t h = smap_hash(r->dag->dag_id);

	snprintf(uuid, size, "%08x-0000-4000-8000-0000%08x", h,
	    (unsigned)(r->dag->serial & 0xffffffffu));
}

/* The run as GET /dags/{id}/dagRuns/{run} answers it, into out. */
static void
run_text(struct sim *s, const struct run *r, enum sim_api api, int64_t now,
    struct ap_buf *out)
{
	int64_t start, end;
	enum sim_state st = run_state(r, now, &start, &end);
	struct tvals *v = tv_begin(s);

	tv_lit(v, RV_CONF, r->jconf);
	tv_lit(v, RV_DAG, r->dag->jid);
	tv_lit(v, RV_RUN, r->jrid);
	tv_time(v, RV_END, s, end, api);
	tv_lit(v, RV_LD, r->jld);
	tv_time(v, RV_START, s, start, api);
	tv_lit(v, RV_STATE, s->jstate[st]);
	if (api == SIM_API_V2) {
		char uuid[40];

		run_uuid(r, uuid, sizeof uuid);
		tv_str(v, RV_UUID, uuid);
		tv_time(v, RV_DAG_CREATED, s, r->dag->created, api);
		tv_json(v, RV_DURATION, end >= 0 && start >= 0 ?
		    json_real((double)(end - start) / 1000.0) : json_null());
		tv_time(v, RV_QUEUED, s, r->created, api);
		tv_str(v, RV_USER, s->sc.username);
	}
	tmpl_render(&s->t_run[api == SIM_API_V1 ? 0 : 1], v, out);
}

/* The run as a tree, for lists: its view read back. */
static json_t *
run_json(struct sim *s, const struct run *r, enum sim_api api, int64_t now)
{
	json_t *j;

	run_text(s, r, api, now, &s->out);
	if ((j = json_loadb(s->out.data, s->out.len, JSON_ALLOW_NUL, NULL)) == NULL)
		ap_fatal("run_json: cannot read a run's view back");
	return j;
}

/* ---------------------------------------------------------------- request log */

static void
log_add(struct rq *rq)
{
	struct sim *s = rq->s;
	struct logent *e;
	size_t plen = strlen(rq->path);

	if (s->log_len == s->log_cap) {
		s->log_cap = s->log_cap == 0 ? 1024 : s->log_cap * 2;
		s->log = ap_xreallocarray(s->log, s->log_cap, sizeof *s->log);
	}
	e = &s->log[s->log_len];
	e->t_ms = rq->now;
	e->off = s->arena.len;
	if (plen > 65536)
		plen = 65536;
	e->path_len = (uint32_t)plen;
	ap_buf_add(&s->arena, rq->path, plen);
	e->query_len = SIM_LOG_NONE;
	if (rq->query != NULL) {
		size_t qlen = strlen(rq->query);

		if (qlen > 65536)
			qlen = 65536;
		e->query_len = (uint32_t)qlen;
		ap_buf_add(&s->arena, rq->query, qlen);
	}
	e->body_len = SIM_LOG_NONE;
	if (rq->body_len > 0) {
		size_t blen = rq->body_len < SIM_LOG_BODY_MAX ? rq->body_len : SIM_LOG_BODY_MAX;

		e->body_len = (uint32_t)blen;
		ap_buf_add(&s->arena, rq->body, blen);
	}
	e->status = 0;
	e->method = method_code(rq->method);
	e->auth = (uint8_t)rq->auth;
	rq->logged = true;
	rq->log_idx = s->log_len;
	rq->log_seq = s->log_base_seq + s->log_len;
	s->log_len++;
}

static void
log_set_status(struct rq *rq, int status)
{
	struct sim *s = rq->s;

	if (!rq->logged || rq->log_seq < s->log_base_seq ||
	    rq->log_seq - s->log_base_seq >= s->log_len)
		return;
	s->log[rq->log_seq - s->log_base_seq].status = (uint16_t)status;
}

static void
log_clear(struct sim *s)
{
	s->log_base_seq += s->log_len;
	s->log_len = 0;
	s->log_cap = 0;
	free(s->log);
	s->log = NULL;
	ap_buf_cleanup(&s->arena);
	ap_buf_init(&s->arena);
}

static json_t *
log_text_json(const char *p, size_t len)
{
	json_t *j = json_stringn(p, len);

	return j != NULL ? j : json_sprintf("<%zu bytes, not UTF-8>", len);
}

static json_t *
log_entry_json(const struct sim *s, size_t i)
{
	static const char *const auth_names[] = { "none", "basic", "bearer" };
	const struct logent *e = &s->log[i];
	const char *p = s->arena.data + e->off;
	json_t *query = json_null(), *body = json_null();

	if (e->query_len != SIM_LOG_NONE)
		query = log_text_json(p + e->path_len, e->query_len);
	if (e->body_len != SIM_LOG_NONE) {
		const char *b = p + e->path_len + (e->query_len != SIM_LOG_NONE ? e->query_len : 0);

		json_decref(body);
		if ((body = json_loadb(b, e->body_len, JSON_DECODE_ANY, NULL)) == NULL)
			body = log_text_json(b, e->body_len);
	}
	return json_pack("{s:I, s:I, s:s, s:o, s:o, s:s, s:o, s:i}",
	    "seq", (json_int_t)(s->log_base_seq + i + 1), "t_ms", (json_int_t)e->t_ms,
	    "method", method_name(1u << e->method), "path", log_text_json(p, e->path_len),
	    "query", query, "auth", auth_names[e->auth], "body", body, "status", e->status);
}

/* ---------------------------------------------------------------- replies */

static void pending_fire(evutil_socket_t fd, short what, void *arg);

/* True if path starts with one of prefixes (an array of strings). */
static bool
path_under(const json_t *prefixes, const char *path)
{
	size_t i;
	const json_t *p;

	json_array_foreach(prefixes, i, p) {
		if (ap_startswith(path, json_string_value(p)))
			return true;
	}
	return false;
}

static bool
faults_cover(const struct sim *s, const char *path)
{
	return s->sc.f.paths == NULL || path_under(s->sc.f.paths, path);
}

static void
pending_free(struct pending *p)
{
	struct sim *s = p->s;

	if (p->prev != NULL)
		p->prev->next = p->next;
	else
		s->pending = p->next;
	if (p->next != NULL)
		p->next->prev = p->prev;
	event_free(p->ev);
	if (p->out != NULL)
		evbuffer_free(p->out);
	free(p);
}

/*
 * The Date header evhttp_send_reply adds to an HTTP/1.1 reply that has none,
 * from a text made once a second instead of once a reply.
 */
static void
sim_date_header(struct evhttp_request *req)
{
	static time_t last = (time_t)-1;
	static char date[64];
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	time_t now;
	struct tm tm;

	if (req->major != 1 || req->minor < 1 || evhttp_find_header(h, "Date") != NULL)
		return;
	if ((now = time(NULL)) != last) {
		if (gmtime_r(&now, &tm) == NULL)
			return;
		evutil_date_rfc1123(date, sizeof date, &tm);
		last = now;
	}
	evhttp_add_header(h, "Date", date);
}

/* Sends out (stolen) now, or after the scenario's latency; reset closes instead. */
static void
sim_send(struct rq *rq, int status, struct evbuffer *out, bool reset)
{
	struct sim *s = rq->s;
	const struct faults *f = &s->sc.f;
	int64_t delay = 0;
	struct pending *p;
	struct timeval tv;

	if (rq->logged && faults_cover(s, rq->path)) {
		delay = f->latency_ms;
		if (f->latency_jitter_ms > 0)
			delay += (int64_t)(sim_rand(s) % (uint64_t)(f->latency_jitter_ms + 1));
	}
	if (!reset && delay == 0) {
		sim_date_header(rq->req);
		evhttp_send_reply(rq->req, status, http_reason(status), out);
		evbuffer_free(out);
		return;
	}
	/*
	 * Deferred even without latency for a reset: freeing the connection
	 * inside evhttp's own callback would pull it out from under evhttp.
	 */
	p = ap_xcalloc(1, sizeof *p);
	p->s = s;
	p->req = rq->req;
	p->out = out;
	p->status = status;
	p->reset = reset;
	p->ev = evtimer_new(s->base, pending_fire, p);
	p->next = s->pending;
	if (s->pending != NULL)
		s->pending->prev = p;
	s->pending = p;
	tv.tv_sec = (time_t)(delay / 1000);
	tv.tv_usec = (suseconds_t)(delay % 1000 * 1000);
	evtimer_add(p->ev, &tv);
}

static void
pending_fire(evutil_socket_t fd, short what, void *arg)
{
	struct pending *p = arg;
	struct evhttp_connection *evcon = evhttp_request_get_connection(p->req);

	if (p->reset && evcon != NULL) {
		struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
		evutil_socket_t sfd = bev != NULL ? bufferevent_getfd(bev) : -1;
		struct linger lg = { 1, 0 };

		/* SO_LINGER 0: close() sends RST, as a crashed server would. */
		if (sfd >= 0)
			setsockopt(sfd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
		evhttp_connection_free(evcon);
	} else {
		/* Also frees a request whose client went away meanwhile. */
		evhttp_send_reply(p->req, p->status, http_reason(p->status), p->out);
	}
	pending_free(p);
}

static void
rq_trace(struct rq *rq, int status)
{
	if (rq->s->quiet)
		return;
	fprintf(stderr, "sim_airflow: %6" PRId64 " %s %s%s%s -> %d\n", rq->now,
	    method_name(rq->method), rq->path, rq->query != NULL ? "?" : "",
	    rq->query != NULL ? rq->query : "", status);
}

static void rq_reset(struct rq *rq);

/* Answers status with the JSON text json (NULL: no body). */
static void
rq_send(struct rq *rq, int status, const struct ap_buf *json)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(rq->req);
	struct evbuffer *out;

	if ((out = evbuffer_new()) == NULL)
		ap_fatal("evbuffer_new failed");
	if (json != NULL) {
		evbuffer_add(out, json->data, json->len);
		if (evhttp_find_header(h, "Content-Type") == NULL)
			evhttp_add_header(h, "Content-Type", "application/json");
	}
	if (status == 429 || (status == 503 && rq->s->sc.f.retry_after_503)) {
		char ra[32];

		snprintf(ra, sizeof ra, "%" PRId64, rq->s->sc.f.retry_after_s);
		evhttp_add_header(h, "Retry-After", ra);
	}
	log_set_status(rq, status);
	if (rq->logged)
		rq_trace(rq, status);
	sim_send(rq, status, out, false);
}

/* Answers body (stolen; NULL for none) with status. */
static void
rq_reply(struct rq *rq, int status, json_t *body)
{
	struct sim *s = rq->s;

	if (rq->lose_reply) {
		json_decref(body);
		rq_reset(rq);
		return;
	}
	if (body != NULL) {
		ap_buf_reset(&s->out);
		json_dump_callback(body, dump_to_buf, &s->out, SIM_REPLY_FLAGS);
		json_decref(body);
	}
	rq_send(rq, status, body != NULL ? &s->out : NULL);
}

/* Answers status with the view rendered into s->out. */
static void
rq_reply_out(struct rq *rq, int status)
{
	if (rq->lose_reply)
		rq_reset(rq);
	else
		rq_send(rq, status, &rq->s->out);
}

/* Answers 200 {"message": <fmt...>}. */
static void
rq_message(struct rq *rq, const char *fmt, ...) AP_PRINTFLIKE(2, 3);

static void
rq_message(struct rq *rq, const char *fmt, ...)
{
	struct sim *s = rq->s;
	struct tvals *v = tv_begin(s);
	va_list ap;
	char *m;

	va_start(ap, fmt);
	m = ap_xvprintf(fmt, ap);
	va_end(ap);
	tv_str(v, 0, m);
	tmpl_render(&s->t_msg, v, &s->out);
	free(m);
	rq_reply_out(rq, 200);
}

static void
rq_reset(struct rq *rq)
{
	log_set_status(rq, 0);
	rq_trace(rq, 0);
	sim_send(rq, 0, evbuffer_new(), true);
}

static const char *
problem_type(int status)
{
	switch (status) {
	case 400: return "BadRequest";
	case 401: return "Unauthenticated";
	case 403: return "PermissionDenied";
	case 404: return "NotFound";
	case 405: return "MethodNotAllowed";
	case 409: return "AlreadyExists";
	case 500: return "Unknown";
	default: return NULL;
	}
}

/* An error in the format of the request's family. */
static void proxy_page(struct rq *rq, int status);
static void
rq_error(struct rq *rq, int status, const char *title, const char *fmt, ...)
    AP_PRINTFLIKE(4, 5);

static void
rq_error(struct rq *rq, int status, const char *title, const char *fmt, ...)
{
	va_list ap;
	char *detail;
	json_t *j = NULL;
	const char *pt;
	char *type;

	if (status == 404 && rq->s->sc.proxy_pages_404) {
		proxy_page(rq, 404);
		return;
	}
	va_start(ap, fmt);
	detail = ap_xvprintf(fmt, ap);
	va_end(ap);
	if (title == NULL)
		title = http_reason(status);
	switch (rq->fam) {
	case SIM_FAM_V1:
		pt = problem_type(status);
		type = pt != NULL ? ap_xprintf("https://airflow.apache.org/docs/apache-airflow/"
		    "2.10.5/stable-rest-api-ref.html#section/Errors/%s", pt) :
		    ap_xstrdup("about:blank");
		j = json_pack("{s:s, s:s, s:i, s:o}", "type", type, "title", title,
		    "status", status, "detail", log_text_json(detail, strlen(detail)));
		free(type);
		evhttp_add_header(evhttp_request_get_output_headers(rq->req), "Content-Type",
		    "application/problem+json");
		if (status == 401)
			evhttp_add_header(evhttp_request_get_output_headers(rq->req),
			    "WWW-Authenticate", "Basic");
		break;
	case SIM_FAM_V2:
		j = json_pack("{s:o}", "detail", log_text_json(detail, strlen(detail)));
		break;
	case SIM_FAM_PLUGIN:
		j = json_pack("{s:o}", "error", status >= 500 ?
		    json_string("An unexpected problem occurred") :
		    log_text_json(detail, strlen(detail)));
		break;
	}
	free(detail);
	rq_reply(rq, status, j);
}

/* A 3.x validation error: {"detail": [{type, loc, msg, input}]}. input is stolen. */
static void
rq_invalid(struct rq *rq, const char *type, const char *field, const char *msg, json_t *input)
{
	json_t *loc = json_pack("[s]", "body");

	if (field != NULL)
		json_array_append_new(loc, json_string(field));
	rq_reply(rq, 422, json_pack("{s:[{s:s, s:o, s:s, s:o}]}", "detail", "type", type,
	    "loc", loc, "msg", msg, "input", input != NULL ? input : json_null()));
}

/*
 * Airflow 3's answer for a path no router serves: its catch-all routes take
 * only GET (anything else: FastAPI's 405); GET /api/v1/... and /api/... are
 * 404s with an "error" of their own; any other GET is the UI's page.
 */
static bool seg_is(const struct rq *rq, int i, const char *s);

static void
v3_unrouted(struct rq *rq)
{
	struct ap_buf page;

	rq->fam = SIM_FAM_V2;
	if (rq->lose_reply) {
		rq_reset(rq);
		return;
	}
	if (rq->method != EVHTTP_REQ_GET) {
		rq_error(rq, 405, NULL, "Method Not Allowed");
		return;
	}
	if (seg_is(rq, 0, "api") && seg_is(rq, 1, "v1")) {
		rq_reply(rq, 404, json_pack("{s:s}", "error", "/api/v1 has been removed in "
		    "Airflow 3, please use its upgraded version /api/v2 instead."));
		return;
	}
	if (seg_is(rq, 0, "api")) {
		rq_reply(rq, 404, json_pack("{s:s}", "error", "API route not found"));
		return;
	}
	evhttp_add_header(evhttp_request_get_output_headers(rq->req), "Content-Type",
	    "text/html; charset=utf-8");
	ap_buf_init(&page);
	ap_buf_adds(&page, "<!doctype html><html lang=\"en\"><head><meta charset=\"UTF-8\" />"
	    "<title>Airflow</title></head><body><div id=\"root\"></div></body></html>\n");
	rq_send(rq, 200, &page);
	ap_buf_cleanup(&page);
}

/* ---------------------------------------------------------------- authentication */

static bool
basic_ok(struct sim *s, const char *hdr)
{
	char *dec, *colon;
	const char *full = hdr;
	size_t len;
	bool ok;

	if (hdr == NULL || strncasecmp(hdr, "Basic ", 6) != 0)
		return false;
	/* The last header that passed, under the same scenario, passes again. */
	if (s->basic_last != NULL && s->basic_gen == s->sc_gen && strcmp(hdr, s->basic_last) == 0)
		return true;
	hdr += 6;
	while (*hdr == ' ')
		hdr++;
	if ((dec = b64_decode(hdr, strlen(hdr), &len)) == NULL)
		return false;
	colon = strchr(dec, ':');
	ok = colon != NULL && strlen(dec) == len &&
	    (size_t)(colon - dec) == strlen(s->sc.username) &&
	    strncmp(dec, s->sc.username, (size_t)(colon - dec)) == 0 &&
	    strcmp(colon + 1, s->sc.password) == 0;
	free(dec);
	if (ok) {
		free(s->basic_last);
		s->basic_last = ap_xstrdup(full);
		s->basic_gen = s->sc_gen;
	}
	return ok;
}

static void
jwt_sign(const struct sim *s, const char *data, size_t len, struct ap_buf *out)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;

	if (HMAC(EVP_sha256(), s->jwt_key, sizeof s->jwt_key, (const unsigned char *)data,
	    len, mac, &maclen) == NULL)
		ap_fatal("HMAC failed");
	b64url_encode(out, mac, maclen);
}

static char *
jwt_create(struct sim *s, const char *user, int64_t now)
{
	static const char header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
	int64_t wall = s->wall0 + now, exp_ms = wall + s->sc.token_ttl_ms;
	json_t *payload = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I}", "sub", user,
	    "iat", (json_int_t)(wall / 1000), "nbf", (json_int_t)(wall / 1000),
	    "exp", (json_int_t)((exp_ms + 999) / 1000), "exp_ms", (json_int_t)exp_ms,
	    "jti", (json_int_t)++s->jwt_seq);
	char *p = json_dumps(payload, JSON_COMPACT);
	struct ap_buf b;

	ap_buf_init(&b);
	b64url_encode(&b, (const unsigned char *)header, sizeof header - 1);
	ap_buf_addc(&b, '.');
	b64url_encode(&b, (const unsigned char *)p, strlen(p));
	free(p);
	json_decref(payload);
	p = ap_xstrndup(b.data, b.len);
	ap_buf_addc(&b, '.');
	jwt_sign(s, p, strlen(p), &b);
	free(p);
	return ap_buf_steal(&b, NULL);
}

enum jwt_check { JWT_OK, JWT_MISSING, JWT_EXPIRED, JWT_INVALID };

static enum jwt_check
jwt_check(const struct sim *s, const char *hdr, int64_t now)
{
	const char *tok, *dot1, *dot2;
	struct ap_buf sig;
	char *payload;
	size_t plen;
	json_t *j;
	enum jwt_check rc = JWT_INVALID;

	if (hdr == NULL || strncasecmp(hdr, "Bearer ", 7) != 0)
		return JWT_MISSING;
	tok = hdr + 7;
	while (*tok == ' ')
		tok++;
	if ((dot1 = strchr(tok, '.')) == NULL || (dot2 = strchr(dot1 + 1, '.')) == NULL)
		return JWT_INVALID;
	ap_buf_init(&sig);
	jwt_sign(s, tok, (size_t)(dot2 - tok), &sig);
	if (!ap_consttime_eq(sig.data, sig.len, dot2 + 1, strlen(dot2 + 1))) {
		ap_buf_cleanup(&sig);
		return JWT_INVALID;
	}
	ap_buf_cleanup(&sig);
	if ((payload = b64_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), &plen)) == NULL)
		return JWT_INVALID;
	if ((j = json_loadb(payload, plen, 0, NULL)) != NULL &&
	    json_is_integer(json_object_get(j, "exp_ms"))) {
		rc = s->wall0 + now >= json_integer_value(json_object_get(j, "exp_ms")) ?
		    JWT_EXPIRED : JWT_OK;
	}
	json_decref(j);
	free(payload);
	return rc;
}

/* Checks the request's credentials; answers 401/403 and returns false if wrong. */
static bool
rq_authorized(struct rq *rq, bool bearer)
{
	const char *hdr = rq->authz;

	if (!bearer) {
		if (basic_ok(rq->s, hdr))
			return true;
		rq_error(rq, 401, "Unauthorized", "%s", hdr == NULL ?
		    "No credentials provided" : "Invalid credentials");
		return false;
	}
	switch (jwt_check(rq->s, hdr, rq->now)) {
	case JWT_OK:
		return true;
	case JWT_MISSING:
		rq_error(rq, 401, NULL, "Not authenticated");
		return false;
	case JWT_EXPIRED:
		rq_error(rq, 401, NULL, "Token Expired");
		return false;
	case JWT_INVALID:
		break;
	}
	rq_error(rq, 403, NULL, "Invalid JWT token");
	return false;
}

/* ---------------------------------------------------------------- proxy */

/*
 * An authenticating proxy in front of Airflow (scenario "proxy_401"): under
 * its prefixes every request gets the proxy's own 401, which no credential
 * the client has passes. Returns true when it answered.
 */
static bool
proxy_refuses(struct rq *rq)
{
	struct ap_buf page;

	if (!path_under(rq->s->sc.proxy_401, rq->path))
		return false;
	evhttp_add_header(evhttp_request_get_output_headers(rq->req), "WWW-Authenticate",
	    "Basic realm=\"proxy\"");
	evhttp_add_header(evhttp_request_get_output_headers(rq->req), "Content-Type",
	    "text/html");
	ap_buf_init(&page);
	ap_buf_adds(&page, "<html><head><title>401 Authorization Required</title></head>"
	    "<body><center><h1>401 Authorization Required</h1></center></body></html>\n");
	rq_send(rq, 401, &page);
	ap_buf_cleanup(&page);
	return true;
}

/*
 * A proxy's own error page, as nginx writes it: outage mode "proxy404" (an
 * ingress's default backend during a rollout answers every path 404) and
 * the error faults with "proxy_pages".
 */
static void
proxy_page(struct rq *rq, int status)
{
	struct ap_buf page;
	char line[64];

	evhttp_add_header(evhttp_request_get_output_headers(rq->req), "Content-Type",
	    "text/html");
	snprintf(line, sizeof line, "%d %s", status, http_reason(status));
	ap_buf_init(&page);
	ap_buf_adds(&page, "<html><head><title>");
	ap_buf_adds(&page, line);
	ap_buf_adds(&page, "</title></head><body><center><h1>");
	ap_buf_adds(&page, line);
	ap_buf_adds(&page, "</h1></center><hr><center>nginx</center></body></html>\n");
	rq_send(rq, status, &page);
	ap_buf_cleanup(&page);
}

/* An error fault's answer: Airflow's JSON, or the proxy's page. */
static void
fault_error(struct rq *rq, int status, const char *text)
{
	if (rq->s->sc.f.proxy_pages)
		proxy_page(rq, status);
	else
		rq_error(rq, status, NULL, "%s", text);
}

/* ---------------------------------------------------------------- faults */

/* Returns true when a fault answered (or reset) the request. */
static bool
faults_apply(struct rq *rq)
{
	struct sim *s = rq->s;
	const struct faults *f = &s->sc.f;
	int64_t t = rq->now - s->sc_loaded;
	uint64_t n;
	enum outage_mode outage = OUTAGE_NONE;

	if (rq->now < s->outage_until)
		outage = s->outage_until_mode;
	else if (f->outage_duration_ms > 0 && t >= f->outage_start_ms &&
	    t < f->outage_start_ms + f->outage_duration_ms)
		outage = f->outage_mode;
	switch (outage) {
	case OUTAGE_NONE:
	case OUTAGE_BAD:
		break;
	case OUTAGE_RESET:
		rq_reset(rq);
		return true;
	case OUTAGE_PROXY_404:
		proxy_page(rq, 404);
		return true;
	case OUTAGE_503:
		rq_error(rq, 503, NULL, "Airflow is unavailable (simulated outage)");
		return true;
	}
	if (!faults_cover(s, rq->path))
		return false;
	n = ++s->fault_count;
	if (f->burst_count > 0 && n > (uint64_t)f->burst_after &&
	    n <= (uint64_t)(f->burst_after + f->burst_count)) {
		fault_error(rq, f->burst_status, "Simulated error burst");
		return true;
	}
	if (f->rate_limit_every > 0 &&
	    (int64_t)((n - 1) % (uint64_t)f->rate_limit_every) >=
	    f->rate_limit_every - f->rate_limit_burst) {
		rq_error(rq, 429, NULL, "Rate limit exceeded (simulated)");
		return true;
	}
	if (f->reset_rate > 0 && sim_rand01(s) < f->reset_rate) {
		rq_reset(rq);
		return true;
	}
	if (f->error_rate > 0 && sim_rand01(s) < f->error_rate) {
		int st = f->error_status[f->n_error_status > 1 ?
		    sim_rand(s) % f->n_error_status : 0];

		fault_error(rq, st, "Simulated failure");
		return true;
	}
	if (f->lost_reply_rate > 0 && sim_rand01(s) < f->lost_reply_rate)
		rq->lose_reply = true;
	return false;
}

/* ---------------------------------------------------------------- Airflow REST API */

/*
 * The body parsed: a new reference. The small bodies parsed last are kept
 * with their trees (bodies are only read, never modified), since clients
 * send the same few bytes over and over (a PATCH that unpauses).
 */
static json_t *
rq_body_json(const struct rq *rq)
{
	struct sim *s = rq->s;
	struct body_cache *c, *lru = &s->bodies[0];
	json_t *j;
	size_t i;

	if (rq->body_len == 0)
		return NULL;
	for (i = 0; i < SIM_BODY_CACHE; i++) {
		c = &s->bodies[i];
		if (c->json != NULL && c->len == rq->body_len &&
		    memcmp(c->text, rq->body, rq->body_len) == 0) {
			c->used = ++s->bodies_clock;
			return json_incref(c->json);
		}
		if (c->used < lru->used)
			lru = c;
	}
	j = json_loadb(rq->body, rq->body_len, JSON_DECODE_ANY, NULL);
	if (j != NULL && rq->body_len <= SIM_BODY_CACHE_MAX) {
		json_decref(lru->json);
		lru->json = json_incref(j);
		memcpy(lru->text, rq->body, rq->body_len);
		lru->len = rq->body_len;
		lru->used = ++s->bodies_clock;
	}
	return j;
}

static const char *
rq_param(struct rq *rq, const char *name)
{
	return evhttp_find_header(&rq->params, name);
}

/*
 * Checks a 3.x body: an object with only allowed keys. Answers 422 and
 * returns NULL otherwise; a new reference on success.
 */
static json_t *
v2_body(struct rq *rq, const char *const *allowed)
{
	json_t *j = rq_body_json(rq);
	const char *key;
	json_t *v;

	if (j == NULL) {
		rq_invalid(rq, "json_invalid", NULL, "JSON decode error", NULL);
		return NULL;
	}
	if (!json_is_object(j)) {
		rq_invalid(rq, "model_attributes_type", NULL,
		    "Input should be a valid dictionary or object to extract fields from", j);
		return NULL;
	}
	json_object_foreach(j, key, v) {
		size_t i;
		bool ok = false;

		for (i = 0; allowed[i] != NULL; i++) {
			if (strcmp(allowed[i], key) == 0)
				ok = true;
		}
		if (!ok) {
			rq_invalid(rq, "extra_forbidden", key, "Extra inputs are not permitted",
			    json_incref(v));
			json_decref(j);
			return NULL;
		}
	}
	return j;
}

/* A 2.x body: an object with only allowed keys; else 400 like marshmallow. */
static json_t *
v1_body(struct rq *rq, const char *const *allowed)
{
	json_t *j = rq_body_json(rq);
	const char *key;
	json_t *v;

	if (j == NULL || !json_is_object(j)) {
		json_decref(j);
		rq_error(rq, 400, "Bad Request", "Request body must be a JSON object");
		return NULL;
	}
	json_object_foreach(j, key, v) {
		size_t i;
		bool ok = false;

		for (i = 0; allowed[i] != NULL; i++) {
			if (strcmp(allowed[i], key) == 0)
				ok = true;
		}
		if (!ok) {
			rq_error(rq, 400, "Bad Request", "{'%s': ['Unknown field.']}", key);
			json_decref(j);
			return NULL;
		}
	}
	return j;
}

static void
dag_not_found(struct rq *rq, const char *dag_id)
{
	if (rq->fam == SIM_FAM_V1)
		rq_error(rq, 404, "DAG not found", "DAG with dag_id: '%s' not found", dag_id);
	else
		rq_error(rq, 404, NULL, "The Dag with ID: `%s` was not found", dag_id);
}

static void
run_not_found(struct rq *rq, const char *dag_id, const char *run_id)
{
	if (rq->fam == SIM_FAM_V1)
		rq_error(rq, 404, "DAGRun not found",
		    "DAGRun with DAG ID: '%s' and DagRun ID: '%s' not found", dag_id, run_id);
	else
		rq_error(rq, 404, NULL, "The DagRun with dag_id: `%s` and run_id: `%s` was "
		    "not found", dag_id, run_id);
}

static void
api_get_dag(struct rq *rq, enum sim_api api, const char *dag_id)
{
	struct dag *d = dag_visible(rq->s, dag_id, rq->now);

	if (d == NULL)
		dag_not_found(rq, dag_id);
	else {
		dag_text(rq->s, d, api, &rq->s->out);
		rq_reply_out(rq, 200);
	}
}

static void
api_patch_dag(struct rq *rq, enum sim_api api, const char *dag_id)
{
	/* 2.x: every other DAG field is read-only, an unknown field to marshmallow. */
	static const char *const v1_keys[] = { "is_paused", NULL };
	static const char *const v2_keys[] = { "is_paused", NULL };
	const char *mask = rq_param(rq, "update_mask");
	json_t *j, *p;
	struct dag *d;

	if (mask != NULL && strcmp(mask, "is_paused") != 0) {
		rq_error(rq, 400, "Bad Request",
		    "Only `is_paused` field can be updated through the REST API");
		return;
	}
	if ((j = api == SIM_API_V1 ? v1_body(rq, v1_keys) : v2_body(rq, v2_keys)) == NULL)
		return;
	p = json_object_get(j, "is_paused");
	if (!json_is_boolean(p)) {
		if (api == SIM_API_V1)
			rq_error(rq, 400, "Bad Request", "{'is_paused': ['%s']}",
			    p == NULL ? "Missing data for required field." : "Not a valid boolean.");
		else if (p == NULL)
			rq_invalid(rq, "missing", "is_paused", "Field required", json_incref(j));
		else
			rq_invalid(rq, "bool_parsing", "is_paused",
			    "Input should be a valid boolean", json_incref(p));
		json_decref(j);
		return;
	}
	if ((d = dag_visible(rq->s, dag_id, rq->now)) == NULL)
		dag_not_found(rq, dag_id);
	else {
		dag_set_paused(d, json_is_true(p), rq->now);
		dag_text(rq->s, d, api, &rq->s->out);
		rq_reply_out(rq, 200);
	}
	json_decref(j);
}

static void
api_trigger(struct rq *rq, enum sim_api api, const char *dag_id)
{
	static const char *const v1_keys[] = { "dag_run_id", "conf", "logical_date",
		"execution_date", "note", "data_interval_start", "data_interval_end", NULL };
	static const char *const v2_keys[] = { "dag_run_id", "conf", "logical_date", "note",
		"data_interval_start", "data_interval_end", "run_after", "partition_key", NULL };
	struct sim *s = rq->s;
	json_t *j = NULL, *conf, *rid, *ld;
	struct dag *d = NULL;
	char *gen = NULL;
	const char *run_id, *logical = NULL;
	char now_s[64];
	struct run *r;

	sim_time_api(s, rq->now, api, now_s, sizeof now_s);
	if (api == SIM_API_V1) {
		/* Airflow 2 looks the DAG up before it reads the body. */
		if ((d = dag_visible(s, dag_id, rq->now)) == NULL) {
			dag_not_found(rq, dag_id);
			return;
		}
		if (dag_import_error(s, d, rq->now) != NULL) {
			rq_error(rq, 400, "DAG cannot be triggered", "DAG with dag_id: '%s' has "
			    "import errors", dag_id);
			return;
		}
		if ((j = v1_body(rq, v1_keys)) == NULL)
			return;
	} else {
		if ((j = v2_body(rq, v2_keys)) == NULL)
			return;
		/* Airflow 3.0 requires the key, even as null. */
		if (json_object_get(j, "logical_date") == NULL) {
			rq_invalid(rq, "missing", "logical_date", "Field required", json_incref(j));
			goto out;
		}
	}
	conf = json_object_get(j, "conf");
	rid = json_object_get(j, "dag_run_id");
	ld = json_object_get(j, "logical_date");
	if (ld == NULL)
		ld = json_object_get(j, "execution_date");
	if ((conf != NULL && !json_is_object(conf) && !json_is_null(conf)) ||
	    (rid != NULL && !json_is_string(rid) && !json_is_null(rid)) ||
	    (ld != NULL && !json_is_string(ld) && !json_is_null(ld))) {
		const char *field = conf != NULL && !json_is_object(conf) && !json_is_null(conf) ?
		    "conf" : rid != NULL && !json_is_string(rid) && !json_is_null(rid) ?
		    "dag_run_id" : "logical_date";

		if (api == SIM_API_V1)
			rq_error(rq, 400, "Bad Request", "{'%s': ['Invalid value.']}", field);
		else
			rq_invalid(rq, strcmp(field, "conf") == 0 ? "dict_type" : "string_type",
			    field, strcmp(field, "conf") == 0 ? "Input should be a valid dictionary"
			    : "Input should be a valid string", json_incref(json_object_get(j, field)));
		goto out;
	}
	if (api == SIM_API_V2) {
		/* Airflow 3: the body (422) first, then the DAG, then the run id. */
		if ((d = dag_visible(s, dag_id, rq->now)) == NULL) {
			dag_not_found(rq, dag_id);
			goto out;
		}
		if (dag_import_error(s, d, rq->now) != NULL) {
			rq_error(rq, 400, NULL, "DAG with dag_id: '%s' has import errors and cannot "
			    "be triggered", dag_id);
			goto out;
		}
	}
	if (json_is_string(ld))
		logical = json_string_value(ld);
	else if (api == SIM_API_V1)
		logical = now_s;
	if (json_is_string(rid))
		run_id = json_string_value(rid);
	else
		run_id = gen = ap_xprintf("manual__%s", logical != NULL ? logical : now_s);
	if (!run_id_valid(run_id)) {
		rq_error(rq, 400, "Bad Request", "The run_id provided '%s' does not match "
		    "regex pattern '^[A-Za-z0-9_.~:+-]+$'", run_id);
		goto out;
	}
	if (smap_get(&d->runs, run_id) != NULL) {
		if (api == SIM_API_V1)
			rq_error(rq, 409, "Conflict", "DAGRun with DAG ID: '%s' and DAGRun ID: "
			    "'%s' already exists", dag_id, run_id);
		else
			rq_reply(rq, 409, json_pack("{s:{s:s, s:s, s:s}}", "detail", "reason",
			    "Unique constraint violation", "statement",
			    "INSERT INTO dag_run (dag_id, run_id, ...) VALUES (?, ?, ...)",
			    "orig_error", "UNIQUE constraint failed: dag_run.dag_id, dag_run.run_id"));
		goto out;
	}
	r = run_create(s, d, run_id, json_is_object(conf) ? conf : NULL,
	    api == SIM_API_V1 ? logical : (json_is_string(ld) ? logical : NULL), rq->now);
	run_text(s, r, api, rq->now, &s->out);
	rq_reply_out(rq, 200);
out:
	free(gen);
	json_decref(j);
}

static void
api_list_runs(struct rq *rq, enum sim_api api, const char *dag_id)
{
	struct dag *d = dag_find(rq->s, dag_id);
	json_t *runs = json_array();
	struct run *r;

	if (d != NULL) {
		for (r = d->run_head; r != NULL; r = r->next)
			json_array_append_new(runs, run_json(rq->s, r, api, rq->now));
	} else if (api == SIM_API_V2) {
		json_decref(runs);
		dag_not_found(rq, dag_id);
		return;
	}
	rq_reply(rq, 200, json_pack("{s:o, s:I}", "dag_runs", runs, "total_entries",
	    (json_int_t)(d != NULL ? d->nruns : 0)));
}

static struct run *
run_lookup(struct rq *rq, const char *dag_id, const char *run_id)
{
	struct dag *d = dag_find(rq->s, dag_id);
	struct run *r = d != NULL ? smap_get(&d->runs, run_id) : NULL;

	if (r == NULL)
		run_not_found(rq, dag_id, run_id);
	return r;
}

static void
api_get_run(struct rq *rq, enum sim_api api, const char *dag_id, const char *run_id)
{
	struct run *r = run_lookup(rq, dag_id, run_id);

	if (r != NULL) {
		run_text(rq->s, r, api, rq->now, &rq->s->out);
		rq_reply_out(rq, 200);
	}
}

static void
api_patch_run(struct rq *rq, enum sim_api api, const char *dag_id, const char *run_id)
{
	static const char *const v1_keys[] = { "state", NULL };
	static const char *const v2_keys[] = { "state", "note", NULL };
	json_t *j, *st;
	enum sim_state want = SIM_ST_NONE;
	struct run *r;
	int i;

	if ((j = api == SIM_API_V1 ? v1_body(rq, v1_keys) : v2_body(rq, v2_keys)) == NULL)
		return;
	st = json_object_get(j, "state");
	for (i = 0; i < SIM_ST_NONE && json_is_string(st); i++) {
		if (i != SIM_ST_RUNNING && strcmp(json_string_value(st), sim_state_names[i]) == 0)
			want = (enum sim_state)i;
	}
	if (want == SIM_ST_NONE) {
		if (api == SIM_API_V1)
			rq_error(rq, 400, "Bad Request", "{'state': ['Must be one of: success, "
			    "failed, queued.']}");
		else if (st == NULL)
			rq_invalid(rq, "missing", "state", "Field required", json_incref(j));
		else
			rq_invalid(rq, "enum", "state", "Input should be 'queued', 'success' or "
			    "'failed'", json_incref(st));
		json_decref(j);
		return;
	}
	if ((r = run_lookup(rq, dag_id, run_id)) != NULL) {
		run_force(r, want, rq->now);
		run_text(rq->s, r, api, rq->now, &rq->s->out);
		rq_reply_out(rq, 200);
	}
	json_decref(j);
}

static void
api_import_errors(struct rq *rq, enum sim_api api)
{
	struct sim *s = rq->s;
	const char *pattern = rq_param(rq, "filename_pattern");
	json_t *list = json_array();
	struct dag *d;
	int64_t stamp;

	for (d = s->dag_head; d != NULL; d = d->next) {
		const char *msg = dag_import_error(s, d, rq->now);
		char *loc;
		json_t *e;

		if (msg == NULL || rq->now < d->visible_at)
			continue;
		stamp = dag_import_stamp(d, rq->now);
		/* 2.x: the file's absolute path; 3.x: its path in the DAG bundle
		 * (the DAG's relative_fileloc), which filename_pattern matches. */
		loc = api == SIM_API_V1 ? fileloc(d) : ap_xprintf("%s.py", d->dag_id);
		if (pattern == NULL || strstr(loc, pattern) != NULL) {
			e = json_pack("{s:s, s:I, s:s, s:o}", "filename", loc, "import_error_id",
			    (json_int_t)d->serial, "stack_trace", msg, "timestamp",
			    sim_time_json(s, stamp, api));
			if (api == SIM_API_V2)
				json_object_set_new(e, "bundle_name", json_string("dags-folder"));
			json_array_append_new(list, e);
		}
		free(loc);
	}
	rq_reply(rq, 200, json_pack("{s:I, s:o}", "total_entries",
	    (json_int_t)json_array_size(list), "import_errors", list));
}

static void
api_version(struct rq *rq, enum sim_api api)
{
	const char *v = rq->s->sc.version;

	if (v == NULL)
		v = api == SIM_API_V1 ? "2.10.5" : "3.0.2";
	rq_reply(rq, 200, json_pack("{s:s, s:n}", "version", v, "git_version"));
}

static void
api_health(struct rq *rq, enum sim_api api)
{
	json_t *hb = sim_time_json(rq->s, rq->now, api);
	json_t *j = json_pack("{s:{s:s}, s:{s:s, s:O}, s:{s:s, s:O}}", "metadatabase",
	    "status", "healthy", "scheduler", "status", "healthy",
	    "latest_scheduler_heartbeat", hb, "triggerer", "status", "healthy",
	    "latest_triggerer_heartbeat", hb);

	if (api == SIM_API_V2)
		json_object_set_new(j, "dag_processor", json_pack("{s:s, s:O}", "status",
		    "healthy", "latest_dag_processor_heartbeat", hb));
	json_decref(hb);
	rq_reply(rq, 200, j);
}

static bool
seg_is(const struct rq *rq, int i, const char *s)
{
	return i < rq->nseg && strcmp(rq->seg[i], s) == 0;
}

/* The query parameters of the 2.x routes (v1.yaml). */
static const char *const q_none[] = { NULL };
static const char *const q_fields[] = { "fields", NULL };
static const char *const q_dag_get[] = { "fields", NULL };
static const char *const q_dag_patch[] = { "update_mask", NULL };
static const char *const q_runs_get[] = { "limit", "offset", "execution_date_gte",
	"execution_date_lte", "start_date_gte", "start_date_lte", "end_date_gte", "end_date_lte",
	"updated_at_gte", "updated_at_lte", "state", "order_by", "fields", NULL };
static const char *const q_import_errors[] = { "limit", "offset", "order_by", NULL };

/*
 * Airflow 2 runs connexion with strict_validation: a query parameter the
 * route does not declare is a 400 before anything else (3.x's FastAPI
 * ignores them). Answers it and returns false.
 */
static bool
v1_query_ok(struct rq *rq, const char *const *allowed)
{
	const struct evkeyval *kv;
	struct ap_buf extra;
	size_t i;
	bool ok;

	ap_buf_init(&extra);
	TAILQ_FOREACH(kv, &rq->params, next) {
		for (i = 0, ok = false; allowed[i] != NULL && !ok; i++)
			ok = strcmp(allowed[i], kv->key) == 0;
		if (!ok) {
			if (extra.len > 0)
				ap_buf_adds(&extra, ", ");
			ap_buf_adds(&extra, kv->key);
		}
	}
	ok = extra.len == 0;
	if (!ok) {
		ap_buf_addc(&extra, '\0');
		rq->fam = SIM_FAM_V1;
		rq_error(rq, 400, "Bad Request", "Extra query parameter(s) %s not in spec",
		    extra.data);
	}
	ap_buf_cleanup(&extra);
	return ok;
}

/* /api/v1/... and /api/v2/...: the DAG and DAG run routes autopilot uses. */
static void
handle_api(struct rq *rq, enum sim_api api)
{
	enum { R_VERSION, R_HEALTH, R_DAG, R_RUNS, R_RUN, R_IMPORT_ERRORS } route;
	int n = rq->nseg - 2;
	enum evhttp_cmd_type m = rq->method;
	bool allowed;

	if (rq->s->sc.api == SIM_API_V2 && api != SIM_API_V2) {
		v3_unrouted(rq);
		return;
	}
	if (rq->s->sc.api != api) {
		rq->fam = SIM_FAM_V1;
		rq_error(rq, 404, NULL, "Not Found");
		return;
	}
	if (n == 1 && seg_is(rq, 2, "version"))
		route = R_VERSION;
	else if ((api == SIM_API_V1 && n == 1 && seg_is(rq, 2, "health")) ||
	    (api == SIM_API_V2 && n == 2 && seg_is(rq, 2, "monitor") && seg_is(rq, 3, "health")))
		route = R_HEALTH;
	else if (n == 2 && seg_is(rq, 2, "dags"))
		route = R_DAG;
	else if (n == 3 && seg_is(rq, 2, "dags") && seg_is(rq, 4, "dagRuns"))
		route = R_RUNS;
	else if (n == 4 && seg_is(rq, 2, "dags") && seg_is(rq, 4, "dagRuns"))
		route = R_RUN;
	else if (n == 1 && seg_is(rq, 2, "importErrors"))
		route = R_IMPORT_ERRORS;
	else if (api == SIM_API_V2) {
		v3_unrouted(rq);
		return;
	} else {
		rq_error(rq, 404, NULL, "The requested URL was not found on the server. If you "
		    "entered the URL manually please check your spelling and try again.");
		return;
	}
	switch (route) {
	case R_DAG:
	case R_RUN:
		allowed = m == EVHTTP_REQ_GET || m == EVHTTP_REQ_PATCH;
		break;
	case R_RUNS:
		allowed = m == EVHTTP_REQ_GET || m == EVHTTP_REQ_POST;
		break;
	default:
		allowed = m == EVHTTP_REQ_GET;
		break;
	}
	if (!allowed) {
		rq_error(rq, 405, NULL, "Method Not Allowed");
		return;
	}
	if (api == SIM_API_V1 && !v1_query_ok(rq, route == R_DAG ? (m == EVHTTP_REQ_GET ?
	    q_dag_get : q_dag_patch) : route == R_RUNS ? (m == EVHTTP_REQ_GET ?
	    q_runs_get : q_none) : route == R_RUN ? (m == EVHTTP_REQ_GET ? q_fields : q_none) :
	    route == R_IMPORT_ERRORS ? q_import_errors : q_none))
		return;
	if (route == R_VERSION) {
		if (rq->s->sc.version_auth && !rq_authorized(rq, api == SIM_API_V2))
			return;
		api_version(rq, api);
		return;
	}
	if (route == R_HEALTH) {
		api_health(rq, api);
		return;
	}
	if (!rq_authorized(rq, api == SIM_API_V2))
		return;
	switch (route) {
	case R_DAG:
		if (m == EVHTTP_REQ_GET)
			api_get_dag(rq, api, rq->seg[3]);
		else
			api_patch_dag(rq, api, rq->seg[3]);
		break;
	case R_RUNS:
		if (m == EVHTTP_REQ_POST)
			api_trigger(rq, api, rq->seg[3]);
		else
			api_list_runs(rq, api, rq->seg[3]);
		break;
	case R_RUN:
		if (m == EVHTTP_REQ_GET)
			api_get_run(rq, api, rq->seg[3], rq->seg[5]);
		else
			api_patch_run(rq, api, rq->seg[3], rq->seg[5]);
		break;
	case R_IMPORT_ERRORS:
		api_import_errors(rq, api);
		break;
	default:
		break;
	}
}

/* POST /auth/token (Airflow 3's simple auth manager): 201 {"access_token"}. */
static void
handle_token(struct rq *rq)
{
	static const char *const keys[] = { "username", "password", NULL };
	struct sim *s = rq->s;
	json_t *j, *u, *p;
	char *tok;

	if (s->sc.api != SIM_API_V2) {
		rq->fam = SIM_FAM_V1;
		rq_error(rq, 404, NULL, "The requested URL was not found on the server.");
		return;
	}
	if (rq->method != EVHTTP_REQ_POST) {
		rq_error(rq, 405, NULL, "Method Not Allowed");
		return;
	}
	if ((j = v2_body(rq, keys)) == NULL)
		return;
	u = json_object_get(j, "username");
	p = json_object_get(j, "password");
	if (!json_is_string(u) || !json_is_string(p)) {
		rq_invalid(rq, u == NULL || p == NULL ? "missing" : "string_type",
		    !json_is_string(u) ? "username" : "password",
		    u == NULL || p == NULL ? "Field required" : "Input should be a valid string",
		    json_incref(j));
	} else if (strcmp(json_string_value(u), s->sc.username) != 0 ||
	    strcmp(json_string_value(p), s->sc.password) != 0) {
		rq_error(rq, 401, NULL, "Invalid credentials");
	} else {
		tok = jwt_create(s, json_string_value(u), rq->now);
		rq_reply(rq, 201, json_pack("{s:s}", "access_token", tok));
		free(tok);
	}
	json_decref(j);
}

/* ---------------------------------------------------------------- OpenMetadata plugin */

static const char *
task_id_for(const char *ptype)
{
	if (strcmp(ptype, "usage") == 0)
		return "usage_task";
	if (strcmp(ptype, "lineage") == 0)
		return "lineage_task";
	if (strcmp(ptype, "profiler") == 0)
		return "profiler_task";
	if (strcmp(ptype, "autoClassification") == 0)
		return "auto_classification_task";
	return "ingestion_task";
}

static void
plugin_deploy(struct rq *rq)
{
	json_t *j = rq_body_json(rq);
	const json_t *name, *ptype, *sched, *st;
	char *dag_id;

	if (!json_is_object(j)) {
		rq_error(rq, 400, NULL, "Did not receive any JSON request to deploy");
		goto out;
	}
	name = json_object_get(j, "name");
	ptype = json_object_get(j, "pipelineType");
	sched = json_object_get(json_object_get(j, "airflowConfig"), "scheduleInterval");
	if (!json_is_string(name) || json_string_length(name) == 0) {
		rq_error(rq, 400, NULL, "Error parsing request: 'name' is a required string");
		goto out;
	}
	if (!json_is_string(ptype)) {
		rq_error(rq, 400, NULL, "Error parsing request: 'pipelineType' is a required "
		    "string");
		goto out;
	}
	if (!json_is_object(json_object_get(j, "sourceConfig"))) {
		rq_error(rq, 400, NULL, "Error parsing request: 'sourceConfig' is a required "
		    "object");
		goto out;
	}
	dag_id = dag_id_from_name(json_string_value(name));
	st = json_object_get(json_object_get(rq->s->sc.dags, dag_id), "deploy_status");
	if (st != NULL && json_integer_value(st) >= 300) {
		rq_error(rq, (int)json_integer_value(st), NULL, "Failed to deploy %s (simulated)",
		    dag_id);
		free(dag_id);
		goto out;
	}
	dag_deploy(rq->s, dag_id, json_string_value(ptype),
	    json_is_string(sched) ? json_string_value(sched) : NULL, rq->now, false);
	rq_message(rq, "Workflow [%s] has been created", dag_id);
	free(dag_id);
out:
	json_decref(j);
}

/* The dag_id of a plugin request: from the JSON body or the query. NULL: answered 400. */
static const char *
plugin_dag_id(struct rq *rq, json_t **bodyp)
{
	const char *id;
	json_t *j;

	*bodyp = NULL;
	if (rq->method == EVHTTP_REQ_GET || rq->method == EVHTTP_REQ_DELETE) {
		if ((id = rq_param(rq, "dag_id")) == NULL || *id == '\0')
			rq_error(rq, 400, NULL, "Missing dag_id argument in the request");
		return id;
	}
	j = rq_body_json(rq);
	if (!json_is_object(j) || !json_is_string(json_object_get(j, "dag_id"))) {
		json_decref(j);
		rq_error(rq, 400, NULL, "Missing dag_id argument in the request");
		return NULL;
	}
	*bodyp = j;
	return json_string_value(json_object_get(j, "dag_id"));
}

static void
plugin_trigger(struct rq *rq, struct dag *d, json_t *body)
{
	struct sim *s = rq->s;
	const char *run_id = rq_param(rq, "run_id");
	json_t *conf = json_object_get(body, "conf");
	char now_s[64];
	char *gen = NULL;
	struct run *r;

	sim_time_api(s, rq->now, s->sc.api, now_s, sizeof now_s);
	if (run_id == NULL || *run_id == '\0')
		run_id = gen = ap_xprintf("manual__%s", now_s);
	if (!run_id_valid(run_id) || smap_get(&d->runs, run_id) != NULL) {
		rq_error(rq, 500, NULL, "Workflow [%s] has filed to trigger", d->dag_id);
	} else {
		r = run_create(s, d, run_id, json_is_object(conf) ? conf : NULL, now_s, rq->now);
		rq_message(rq, "Workflow [%s] has been triggered <DagRun %s @ %s: %s, "
		    "state:queued, queued_at: %s. externally triggered: True>", d->dag_id,
		    d->dag_id, now_s, r->run_id, now_s);
	}
	free(gen);
}

static json_t *
epoch_ms_json(const struct sim *s, int64_t t)
{
	return t < 0 ? json_null() : json_integer((json_int_t)(s->wall0 + t));
}

static void
plugin_status(struct rq *rq, struct dag *d)
{
	json_t *list = json_array();
	struct run *r;
	int n = 0;

	for (r = d->run_tail; r != NULL && n < SIM_STATUS_RUNS; r = r->prev, n++) {
		int64_t start, end;
		enum sim_state st = run_state(r, rq->now, &start, &end);

		json_array_append_new(list, json_pack("{s:s, s:s, s:o, s:o, s:o}",
		    "pipelineState", sim_state_names[st], "runId", r->run_id,
		    "startDate", epoch_ms_json(rq->s, start), "endDate",
		    epoch_ms_json(rq->s, end), "timestamp", epoch_ms_json(rq->s, r->created)));
	}
	rq_reply(rq, 200, list);
}

static void
plugin_kill(struct rq *rq, struct dag *d)
{
	struct run *r;
	int killed = 0;

	for (r = d->run_head; r != NULL; r = r->next) {
		enum sim_state st = run_state(r, rq->now, NULL, NULL);

		if (st == SIM_ST_QUEUED || st == SIM_ST_RUNNING) {
			run_force(r, SIM_ST_FAILED, rq->now);
			killed++;
		}
	}
	if (killed == 0)
		rq_error(rq, 404, NULL, "There are no DagRuns running or queued for dag_id %s",
		    d->dag_id);
	else
		rq_message(rq, "Workflow [%s] has been killed", d->dag_id);
}

static void
plugin_logs(struct rq *rq, struct dag *d)
{
	const char *task = rq_param(rq, "task_id");
	json_t *j;
	char *text;

	if (d->run_tail == NULL) {
		rq_error(rq, 404, NULL, "No DAG runs found for %s", d->dag_id);
		return;
	}
	if (task == NULL)
		task = task_id_for(d->pipeline_type);
	text = ap_xprintf("[sim] %s/%s run %s: %s\n", d->dag_id, task, d->run_tail->run_id,
	    sim_state_names[run_state(d->run_tail, rq->now, NULL, NULL)]);
	j = json_pack("{s:s, s:s, s:s}", task, text, "total", "1", "after", "1");
	free(text);
	rq_reply(rq, 200, j);
}

/*
 * The managed-APIs plugin: /api/v1/openmetadata/<op> on 2.x;
 * /pluginsv2/api/v2/openmetadata/<op> and /api/v2/openmetadata/<op> on 3.x.
 */
static void
handle_plugin(struct rq *rq, enum sim_api api, int op_seg, bool disabled)
{
	struct sim *s = rq->s;
	const char *op;
	enum evhttp_cmd_type want;
	const char *dag_id;
	json_t *body = NULL;
	struct dag *d;

	if (s->sc.api == SIM_API_V2 && (api != SIM_API_V2 || disabled)) {
		v3_unrouted(rq);
		return;
	}
	if (s->sc.api != api || disabled || rq->nseg != op_seg + 1) {
		rq->fam = api == SIM_API_V1 ? SIM_FAM_V1 : SIM_FAM_V2;
		rq_error(rq, 404, NULL, "Not Found");
		return;
	}
	op = rq->seg[op_seg];
	if (strcmp(op, "health") == 0 || strcmp(op, "health-auth") == 0 ||
	    strcmp(op, "status") == 0 || strcmp(op, "last_dag_logs") == 0)
		want = EVHTTP_REQ_GET;
	else if (strcmp(op, "delete") == 0)
		want = EVHTTP_REQ_DELETE;
	else if (strcmp(op, "deploy") == 0 || strcmp(op, "trigger") == 0 ||
	    strcmp(op, "enable") == 0 || strcmp(op, "disable") == 0 ||
	    strcmp(op, "kill") == 0)
		want = EVHTTP_REQ_POST;
	else {
		rq_error(rq, 404, NULL, "Not Found");
		return;
	}
	if (rq->method != want) {
		rq_error(rq, 405, NULL, "Method Not Allowed");
		return;
	}
	if (strcmp(op, "health") != 0 && !rq_authorized(rq, false))
		return;
	if (strcmp(op, "health") == 0 || strcmp(op, "health-auth") == 0) {
		rq_reply(rq, 200, json_pack("{s:s, s:s}", "status", "healthy", "version",
		    SIM_PLUGIN_VERSION));
		return;
	}
	if (strcmp(op, "deploy") == 0) {
		plugin_deploy(rq);
		return;
	}
	if ((dag_id = plugin_dag_id(rq, &body)) == NULL)
		return;
	if ((d = dag_visible(s, dag_id, rq->now)) == NULL) {
		rq_error(rq, 404, NULL, "DAG %s not found.", dag_id);
		goto out;
	}
	if (strcmp(op, "trigger") == 0)
		plugin_trigger(rq, d, body);
	else if (strcmp(op, "status") == 0)
		plugin_status(rq, d);
	else if (strcmp(op, "enable") == 0 || strcmp(op, "disable") == 0) {
		bool pause = strcmp(op, "disable") == 0;

		dag_set_paused(d, pause, rq->now);
		rq_message(rq, "DAG %s has been %s", d->dag_id, pause ? "paused" : "unpaused");
	} else if (strcmp(op, "kill") == 0)
		plugin_kill(rq, d);
	else if (strcmp(op, "last_dag_logs") == 0)
		plugin_logs(rq, d);
	else {
		char *id = ap_xstrdup(d->dag_id);

		dag_remove(s, d);
		rq_message(rq, "DAG [%s] has been deleted", id);
		free(id);
	}
out:
	json_decref(body);
}

/* ---------------------------------------------------------------- control endpoints */

static void
ctl_requests(struct rq *rq)
{
	struct sim *s = rq->s;
	struct evbuffer *out;
	const char *since_s = rq_param(rq, "since");
	const char *prefix = rq_param(rq, "path");
	size_t plen = prefix != NULL ? strlen(prefix) : 0;
	uint64_t since = since_s != NULL ? strtoull(since_s, NULL, 10) : 0;
	size_t i = 0;
	bool first = true;

	if (rq->method == EVHTTP_REQ_DELETE) {
		size_t n = s->log_len;

		log_clear(s);
		rq_reply(rq, 200, json_pack("{s:I}", "cleared", (json_int_t)n));
		return;
	}
	/* Streamed entry by entry: the log may hold hundreds of thousands. */
	out = evbuffer_new();
	if (since > s->log_base_seq)
		i = (size_t)(since - s->log_base_seq);
	evbuffer_add(out, "[", 1);
	for (; i < s->log_len; i++) {
		json_t *e;

		if (plen > 0 && (s->log[i].path_len < plen ||
		    memcmp(s->arena.data + s->log[i].off, prefix, plen) != 0))
			continue;
		e = log_entry_json(s, i);
		if (!first)
			evbuffer_add(out, ",\n", 2);
		first = false;
		json_dump_callback(e, dump_to_evbuffer, out, JSON_COMPACT);
		json_decref(e);
	}
	evbuffer_add(out, "]\n", 2);
	evhttp_add_header(evhttp_request_get_output_headers(rq->req), "Content-Type",
	    "application/json");
	sim_send(rq, 200, out, false);
}

static void
ctl_state(struct rq *rq)
{
	struct sim *s = rq->s;
	json_t *dags = json_array();
	struct dag *d;

	for (d = s->dag_head; d != NULL; d = d->next) {
		json_t *runs = json_array();
		struct run *r;

		for (r = d->run_head; r != NULL; r = r->next) {
			int64_t start, end;
			enum sim_state st = run_state(r, rq->now, &start, &end);

			json_array_append_new(runs, json_pack("{s:s, s:s, s:I, s:o, s:o}",
			    "dag_run_id", r->run_id, "state", sim_state_names[st],
			    "created_ms", (json_int_t)r->created,
			    "start_ms", start >= 0 ? json_integer(start) : json_null(),
			    "end_ms", end >= 0 ? json_integer(end) : json_null()));
		}
		json_array_append_new(dags, json_pack("{s:s, s:s, s:b, s:b, s:b, s:I, s:o}",
		    "dag_id", d->dag_id, "pipeline_type", d->pipeline_type,
		    "is_paused", d->paused, "visible",
		    dag_visible(s, d->dag_id, rq->now) != NULL,
		    "has_import_errors", dag_import_error(s, d, rq->now) != NULL,
		    "visible_at_ms", (json_int_t)d->visible_at, "runs", runs));
	}
	rq_reply(rq, 200, json_pack("{s:s, s:I, s:o, s:I, s:I}", "api",
	    s->sc.api == SIM_API_V1 ? "v1" : "v2", "t_ms", (json_int_t)rq->now, "dags", dags,
	    "runs", (json_int_t)s->nruns, "requests", (json_int_t)s->log_len));
}

/* Installs root (stolen) as the scenario. */
static int
sim_load_scenario(struct sim *s, json_t *root, bool from_file, char **cause)
{
	struct dag *d;

	/* What the scenario being replaced let import has a DAG row, whatever
	 * the new one says of its file. */
	for (d = s->dag_head; d != NULL; d = d->next)
		dag_visible(s, d->dag_id, sim_now(s));
	if (scenario_parse(root, &s->sc, cause) < 0)
		return -1;
	if (s->cli_api != 0 && (from_file || !s->sc.api_set))
		s->sc.api = s->cli_api;
	s->sc_loaded = sim_now(s);
	s->sc_gen++;
	s->rng = s->sc.seed;
	s->fault_count = 0;
	sim_create_existing(s);
	return 0;
}

static void
ctl_scenario(struct rq *rq)
{
	json_t *j;
	json_error_t err;
	char *cause = NULL;

	if (rq->method == EVHTTP_REQ_GET) {
		rq_reply(rq, 200, json_incref(rq->s->sc.root));
		return;
	}
	if ((j = json_loadb(rq->body != NULL ? rq->body : "", rq->body_len, 0, &err)) == NULL) {
		rq_reply(rq, 400, json_pack("{s:s}", "error", err.text));
		return;
	}
	if (sim_load_scenario(rq->s, j, false, &cause) < 0) {
		rq_reply(rq, 400, json_pack("{s:s}", "error", cause));
		free(cause);
		return;
	}
	rq_reply(rq, 200, json_pack("{s:s}", "api", rq->s->sc.api == SIM_API_V1 ? "v1" : "v2"));
}

static void
ctl_restart(struct rq *rq)
{
	struct sim *s = rq->s;
	const char *dags = rq_param(rq, "dags");
	const char *tokens = rq_param(rq, "tokens");

	sim_forget(s, dags != NULL && strcmp(dags, "0") != 0);
	if (tokens != NULL && strcmp(tokens, "0") != 0) {
		size_t i;

		/* A new signing key: every token issued so far is now invalid. */
		for (i = 0; i < sizeof s->jwt_key; i++)
			s->jwt_key[i] = (unsigned char)sim_rand(s);
	}
	rq_reply(rq, 200, json_pack("{s:b}", "restarted", 1));
}

static void
ctl_outage(struct rq *rq)
{
	struct sim *s = rq->s;
	const char *ms = rq_param(rq, "ms");
	const char *mode = rq_param(rq, "mode");
	char *end = NULL;
	long long v = ms != NULL ? strtoll(ms, &end, 10) : -1;

	if (ms == NULL || *ms == '\0' || *end != '\0' || v < 0) {
		rq_reply(rq, 400, json_pack("{s:s}", "error", "ms=<milliseconds> required"));
		return;
	}
	s->outage_until = rq->now + v;
	s->outage_until_mode = mode != NULL ? outage_mode_parse(mode) :
	    s->sc.f.outage_mode != OUTAGE_NONE ? s->sc.f.outage_mode : OUTAGE_503;
	if (s->outage_until_mode == OUTAGE_BAD) {
		s->outage_until = 0;
		rq_reply(rq, 400, json_pack("{s:s}", "error", "mode: expected 503, reset"
		    " or proxy404"));
		return;
	}
	rq_reply(rq, 200, json_pack("{s:I}", "until_ms", (json_int_t)s->outage_until));
}

static void
handle_control(struct rq *rq)
{
	enum evhttp_cmd_type m = rq->method;
	const char *what = rq->nseg == 2 ? rq->seg[1] : "";

	if (strcmp(what, "requests") == 0 && (m == EVHTTP_REQ_GET || m == EVHTTP_REQ_DELETE))
		ctl_requests(rq);
	else if (strcmp(what, "state") == 0 && m == EVHTTP_REQ_GET)
		ctl_state(rq);
	else if (strcmp(what, "scenario") == 0 && (m == EVHTTP_REQ_GET || m == EVHTTP_REQ_PUT))
		ctl_scenario(rq);
	else if (strcmp(what, "restart") == 0 && m == EVHTTP_REQ_POST)
		ctl_restart(rq);
	else if (strcmp(what, "outage") == 0 && m == EVHTTP_REQ_POST)
		ctl_outage(rq);
	else
		rq_reply(rq, 404, json_pack("{s:s}", "error", "unknown control endpoint"));
}

/* ---------------------------------------------------------------- dispatch */

/*
 * Splits the raw path into decoded segments, one after the other in
 * rq->segbuf (a decoded segment is no longer than its raw text). Returns -1
 * on a bad or deep path.
 */
static int
rq_split(struct rq *rq)
{
	const char *p = rq->path;
	size_t plen = strlen(p);
	char *w;

	rq->segbuf = plen < sizeof rq->segstack ? rq->segstack : ap_xmalloc(plen + 1);
	w = rq->segbuf;
	while (*p != '\0') {
		const char *e;
		char *seg = w;

		if (*p == '/') {
			p++;
			continue;
		}
		e = strchr(p, '/');
		if (e == NULL)
			e = p + strlen(p);
		if (rq->nseg == SIM_MAX_SEGS)
			return -1;
		memcpy(seg, p, (size_t)(e - p));
		seg[e - p] = '\0';
		/* Without a '%', evhttp_uridecode (no '+' decoding) copies. */
		if (memchr(seg, '%', (size_t)(e - p)) != NULL) {
			char *dec = evhttp_uridecode(seg, 0, NULL);

			if (dec == NULL)
				return -1;
			strcpy(seg, dec);
			free(dec);
		}
		if (*seg == '\0')
			return -1;
		w = seg + strlen(seg) + 1;
		rq->seg[rq->nseg++] = seg;
		p = e;
	}
	return 0;
}

static enum sim_auth
auth_kind(const char *hdr)
{
	if (hdr == NULL)
		return SIM_AUTH_NONE;
	if (strncasecmp(hdr, "Basic ", 6) == 0)
		return SIM_AUTH_BASIC;
	if (strncasecmp(hdr, "Bearer ", 7) == 0)
		return SIM_AUTH_BEARER;
	return SIM_AUTH_NONE;
}

static void
on_request(struct evhttp_request *req, void *arg)
{
	struct sim *s = arg;
	struct rq rq;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	struct evbuffer *in = evhttp_request_get_input_buffer(req);

	memset(&rq, 0, sizeof rq);
	TAILQ_INIT(&rq.params);
	rq.s = s;
	rq.req = req;
	rq.method = evhttp_request_get_command(req);
	rq.now = sim_now(s);
	rq.path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
	if (rq.path == NULL || *rq.path == '\0')
		rq.path = "/";
	rq.query = uri != NULL ? evhttp_uri_get_query(uri) : NULL;
	if (rq.query != NULL)
		evhttp_parse_query_str(rq.query, &rq.params);
	rq.body_len = evbuffer_get_length(in);
	rq.body = rq.body_len > 0 ? (const char *)evbuffer_pullup(in, -1) : NULL;
	rq.authz = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
	rq.auth = auth_kind(rq.authz);
	rq.fam = s->sc.api == SIM_API_V1 ? SIM_FAM_V1 : SIM_FAM_V2;
	if (rq_split(&rq) < 0) {
		log_add(&rq);
		rq_error(&rq, 404, NULL, "Not Found");
		goto out;
	}
	if (seg_is(&rq, 0, "_sim")) {
		handle_control(&rq);
		goto out;
	}
	log_add(&rq);
	if (seg_is(&rq, 0, "api") && seg_is(&rq, 1, "v1"))
		rq.fam = seg_is(&rq, 2, "openmetadata") ? SIM_FAM_PLUGIN : SIM_FAM_V1;
	else if (seg_is(&rq, 0, "api") && seg_is(&rq, 1, "v2"))
		rq.fam = seg_is(&rq, 2, "openmetadata") ? SIM_FAM_PLUGIN : SIM_FAM_V2;
	else if (seg_is(&rq, 0, "pluginsv2"))
		rq.fam = SIM_FAM_PLUGIN;
	else if (seg_is(&rq, 0, "auth"))
		rq.fam = SIM_FAM_V2;
	if (proxy_refuses(&rq))
		goto out;
	if (faults_apply(&rq))
		goto out;
	if (seg_is(&rq, 0, "api") && seg_is(&rq, 1, "v1") && seg_is(&rq, 2, "openmetadata"))
		handle_plugin(&rq, SIM_API_V1, 3, false);
	else if (seg_is(&rq, 0, "api") && seg_is(&rq, 1, "v2") && seg_is(&rq, 2, "openmetadata"))
		handle_plugin(&rq, SIM_API_V2, 3, s->sc.f.plugin_v2_fallback_404);
	else if (seg_is(&rq, 0, "pluginsv2") && seg_is(&rq, 1, "api") && seg_is(&rq, 2, "v2") &&
	    seg_is(&rq, 3, "openmetadata"))
		handle_plugin(&rq, SIM_API_V2, 4, s->sc.f.plugin_pluginsv2_404);
	else if (seg_is(&rq, 0, "api") && seg_is(&rq, 1, "v1"))
		handle_api(&rq, SIM_API_V1);
	else if (seg_is(&rq, 0, "api") && seg_is(&rq, 1, "v2"))
		handle_api(&rq, SIM_API_V2);
	else if (rq.nseg == 2 && seg_is(&rq, 0, "auth") && seg_is(&rq, 1, "token"))
		handle_token(&rq);
	else if (s->sc.api == SIM_API_V2)
		v3_unrouted(&rq);
	else
		rq_error(&rq, 404, NULL, "Not Found");
out:
	if (rq.segbuf != rq.segstack)
		free(rq.segbuf);
	evhttp_clear_headers(&rq.params);
}

/* ---------------------------------------------------------------- main */

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct sim *s = arg;

	event_base_loopexit(s->base, NULL);
}

static void
sim_cleanup(struct sim *s)
{
	struct dag *d, *next;
	size_t i;

	/*
	 * Replies still waiting for their latency: a request whose client has
	 * gone is ours to free; the others go with their connection.
	 */
	while (s->pending != NULL) {
		struct pending *p = s->pending;

		if (evhttp_request_get_connection(p->req) == NULL)
			evhttp_request_free(p->req);
		pending_free(p);
	}
	if (s->http != NULL)
		evhttp_free(s->http);
	for (d = s->dag_head; d != NULL; d = next) {
		next = d->next;
		dag_remove(s, d);
	}
	smap_cleanup(&s->dags);
	free(s->log);
	ap_buf_cleanup(&s->arena);
	json_decref(s->sc.root);
	sim_templates_free(s);
	free(s->basic_last);
	for (i = 0; i < SIM_BODY_CACHE; i++)
		json_decref(s->bodies[i].json);
}

static void
usage(void)
{
	fprintf(stderr, "usage: sim_airflow [--listen 127.0.0.1:PORT] [--scenario FILE] "
	    "[--api v1|v2] [--quiet]\n");
}

static void
seed_key(struct sim *s)
{
	FILE *f = fopen("/dev/urandom", "rb");
	size_t i;

	if (f == NULL || fread(s->jwt_key, 1, sizeof s->jwt_key, f) != sizeof s->jwt_key) {
		uint64_t x = ap_mono_ms() ^ (uint64_t)ap_wall_ms() ^ (uint64_t)getpid();

		for (i = 0; i < sizeof s->jwt_key; i++) {
			x = x * 6364136223846793005ull + 1442695040888963407ull;
			s->jwt_key[i] = (unsigned char)(x >> 33);
		}
	}
	if (f != NULL)
		fclose(f);
}

int
main(int argc, char **argv)
{
	struct sim s;
	const char *listen = "127.0.0.1:0", *scenario = NULL;
	char *host = NULL, *colon, *cause = NULL, *end;
	long port;
	struct evhttp_bound_socket *bound;
	struct sockaddr_in sin;
	socklen_t slen = sizeof sin;
	struct event *ev_term = NULL, *ev_int = NULL;
	struct event_config *cfg;
	struct rlimit rl;
	json_t *root;
	int i, rc = 2;

	memset(&s, 0, sizeof s);
	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc)
			listen = argv[++i];
		else if (strcmp(argv[i], "--scenario") == 0 && i + 1 < argc)
			scenario = argv[++i];
		else if (strcmp(argv[i], "--api") == 0 && i + 1 < argc) {
			i++;
			if (strcmp(argv[i], "v1") == 0)
				s.cli_api = SIM_API_V1;
			else if (strcmp(argv[i], "v2") == 0)
				s.cli_api = SIM_API_V2;
			else {
				usage();
				return 2;
			}
		} else if (strcmp(argv[i], "--quiet") == 0)
			s.quiet = true;
		else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage();
			return 0;
		} else {
			usage();
			return 2;
		}
	}
	host = ap_xstrdup(listen);
	if ((colon = strrchr(host, ':')) == NULL) {
		fprintf(stderr, "sim_airflow: --listen wants 127.0.0.1:PORT\n");
		goto out;
	}
	*colon = '\0';
	port = strtol(colon + 1, &end, 10);
	if (strcmp(host, "127.0.0.1") != 0 || *end != '\0' || port < 0 || port > 65535) {
		fprintf(stderr, "sim_airflow: --listen wants 127.0.0.1:PORT (loopback only)\n");
		goto out;
	}
	signal(SIGPIPE, SIG_IGN);
	/* Load tests open many connections: take every descriptor we may. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	sim_templates_init(&s);
	s.mono0 = ap_mono_ms();
	s.wall0 = ap_wall_ms();
	ap_buf_init(&s.arena);
	seed_key(&s);
	if (scenario != NULL) {
		json_error_t err;

		if ((root = json_load_file(scenario, 0, &err)) == NULL) {
			fprintf(stderr, "sim_airflow: %s:%d: %s\n", scenario, err.line, err.text);
			goto out;
		}
	} else
		root = json_object();
	if (sim_load_scenario(&s, root, true, &cause) < 0) {
		fprintf(stderr, "sim_airflow: %s: %s\n", scenario, cause);
		free(cause);
		goto out;
	}
	/*
	 * evhttp turns a connection's reading and writing off and on around each
	 * request: with epoll's change list that is one epoll_ctl per direction
	 * change a loop turn, not one per call (four per request). No descriptor
	 * here is ever dup()ed, which the change list could not tell apart.
	 */
	if ((cfg = event_config_new()) != NULL) {
		event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
		s.base = event_base_new_with_config(cfg);
		event_config_free(cfg);
	}
	if (s.base == NULL || (s.http = evhttp_new(s.base)) == NULL) {
		fprintf(stderr, "sim_airflow: libevent setup failed\n");
		goto out;
	}
	evhttp_set_max_body_size(s.http, SIM_MAX_BODY);
	evhttp_set_max_headers_size(s.http, SIM_MAX_HEADERS);
	evhttp_set_timeout(s.http, 120);
	evhttp_set_allowed_methods(s.http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
	    EVHTTP_REQ_PATCH | EVHTTP_REQ_DELETE | EVHTTP_REQ_HEAD | EVHTTP_REQ_OPTIONS);
	evhttp_set_gencb(s.http, on_request, &s);
	if ((bound = evhttp_bind_socket_with_handle(s.http, "127.0.0.1", (uint16_t)port)) ==
	    NULL) {
		fprintf(stderr, "sim_airflow: cannot listen on 127.0.0.1:%ld: %s\n", port,
		    strerror(errno));
		goto out;
	}
	if (getsockname(evhttp_bound_socket_get_fd(bound), (struct sockaddr *)&sin, &slen) < 0) {
		fprintf(stderr, "sim_airflow: getsockname: %s\n", strerror(errno));
		goto out;
	}
	ev_term = evsignal_new(s.base, SIGTERM, on_signal, &s);
	ev_int = evsignal_new(s.base, SIGINT, on_signal, &s);
	if (ev_term == NULL || ev_int == NULL || evsignal_add(ev_term, NULL) < 0 ||
	    evsignal_add(ev_int, NULL) < 0) {
		fprintf(stderr, "sim_airflow: cannot handle signals\n");
		goto out;
	}
	printf("listening 127.0.0.1:%u\n", (unsigned)ntohs(sin.sin_port));
	fflush(stdout);
	event_base_dispatch(s.base);
	rc = 0;
out:
	if (ev_term != NULL)
		event_free(ev_term);
	if (ev_int != NULL)
		event_free(ev_int);
	sim_cleanup(&s);
	if (s.base != NULL)
		event_base_free(s.base);
	free(host);
	return rc;
}
