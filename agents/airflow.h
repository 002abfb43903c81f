/*
 * airflow.h — the asynchronous Airflow client as the rest of autopilot sees it.
 *
 * Every operation is non-blocking: it starts HTTP work on the caller's
 * event_base (libcurl multi-socket driven by libevent) and calls back exactly
 * once with a result, unless the request is cancelled first (then never).
 * Callbacks run on the loop; the result and everything it points to are
 * borrowed for the duration of the callback only (copy what you keep).
 *
 * The client retries what is worth retrying (network errors, 429, 502, 503,
 * 504; exponential backoff with full jitter, honouring Retry-After) up to
 * its configured budget, refreshes the Airflow 3 JWT on 401, and holds a
 * circuit breaker: while Airflow is down, one probe at a time, the rest wait.
 * A callback therefore reports either a definite answer from Airflow or a
 * final error after the retries.
 *
 * The scheduler uses the client only through struct airflow_ops, so tests can
 * drive it with a fake Airflow; airflow_client_ops() gives the real one.
 */
#ifndef AP_AIRFLOW_H
#define AP_AIRFLOW_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

struct event_base;
struct airflow_client;
struct airflow_req;

enum airflow_api {
	AIRFLOW_API_AUTO,	/* detect with GET /api/v2/version */
	AIRFLOW_API_V1,		/* Airflow 2.x: /api/v1, HTTP Basic */
	AIRFLOW_API_V2,		/* Airflow 3.x: /api/v2, JWT bearer */
	AIRFLOW_API_MAX
};
const char *airflow_api_name(enum airflow_api api);

/* Airflow DAG run states, as Airflow names them. */
enum airflow_run_state {
	AIRFLOW_RUN_QUEUED,
	AIRFLOW_RUN_RUNNING,
	AIRFLOW_RUN_SUCCESS,
	AIRFLOW_RUN_FAILED,
	AIRFLOW_RUN_UNKNOWN,	/* a state this client does not know */
	AIRFLOW_RUN_STATE_MAX
};
const char *airflow_run_state_name(enum airflow_run_state s);

/* How an operation ended. */
/* How the error of a request that an Airflow 3 login refused begins. */
#define AIRFLOW_LOGIN_REFUSED "Airflow 3's login (POST /auth/token)"

enum airflow_status {
	AIRFLOW_OK,		/* Airflow answered 2xx (or 409 adopted, see below) */
	AIRFLOW_NOT_FOUND,	/* Airflow's 404: DAG not parsed yet, run lost, ...
				 * (a 404 without Airflow's JSON, a proxy's, is
				 * AIRFLOW_UNAVAILABLE, retried) */
	AIRFLOW_REJECTED,	/* other 4xx: not retried; see error */
	AIRFLOW_UNAVAILABLE,	/* network, timeouts, 5xx, 429 after retries, breaker open */
	AIRFLOW_BAD_REPLY,	/* 2xx whose body is not what the API promises */
	AIRFLOW_STATUS_MAX
};
const char *airflow_status_name(enum airflow_status s);

/* The title of a request refused because Airflow 3's login route is not
 * there (POST /auth/token answered 404 or 405, and never a token before): a
 * setup to fix. Once it gave one, its 404 is AIRFLOW_UNAVAILABLE. */
#define AIRFLOW_NO_LOGIN "No Airflow 3 login"

/* One error value for both APIs' formats (RFC 7807 on 2.x, {"detail"} on 3.x). */
struct airflow_error {
	long http_status;	/* 0 when no HTTP answer (network error) */
	const char *title;	/* e.g. "Not Found", or curl's error name */
	const char *detail;	/* Airflow's detail (objects are serialised), or curl's message */
};

struct airflow_dag {
	const char *dag_id;
	bool is_paused;
	bool has_import_errors;
	const char *import_error;	/* Airflow's message, if has_import_errors */
	/* When Airflow stamped the file's import error, at its last parse
	 * (ms since the epoch, Airflow's clock); 0 when it gave none. */
	int64_t import_error_at;
	/* Airflow has no DAG (404): the error is of a file that never
	 * imported, read from importErrors (unpause with errors_since). */
	bool no_dag;
};

struct airflow_run {
	const char *dag_id;
	const char *dag_run_id;
	enum airflow_run_state state;
	const char *state_text;		/* the state string Airflow sent */
	bool adopted;			/* trigger got 409 and fetched the existing run */
	/* Airflow's own times, ms since the epoch (0: absent or unreadable):
	 * when the run was queued (3.x queued_at; the logical date a manual
	 * trigger gets on 2.x) and when it ended (end_date). */
	int64_t queued_ms, ended_ms;
};

struct airflow_result {
	enum airflow_status status;
	struct airflow_error error;	/* set unless status is AIRFLOW_OK */
	unsigned attempts;		/* HTTP attempts made, including retries */
	/* An attempt may have reached Airflow although it failed: sent and
	 * unanswered, or answered 5xx (a proxy's, perhaps after passing it
	 * on). Not after a 401 and a new login, say. */
	bool maybe_delivered;
	/* Set for get_dag and unpause: */
	const struct airflow_dag *dag;
	/* Set for trigger, get_run and fail_run: */
	const struct airflow_run *run;
	/* Set for deploy, health, kill, delete: the decoded reply body (borrowed). */
	const json_t *body;
};

typedef void (*airflow_cb)(const struct airflow_result *res, void *arg);

/* A failed result as one line for logs and errors: "WHAT: HTTP 503 Service
 * Unavailable: detail" or "WHAT: title: detail" (no "WHAT: " when NULL). */
char *airflow_result_text(const char *what, const struct airflow_result *res);

struct airflow_config {
	const char *base_url;		/* e.g. "http://127.0.0.1:8080"; no trailing slash needed */
	enum airflow_api api;
	const char *username;		/* Basic auth (2.x API and the plugin routes) and JWT login */
	const char *password;
	const char *ca_file;		/* NULL: system CAs. Verification is always on. */
	long connect_timeout_ms;	/* 0: 5000 */
	long request_timeout_ms;	/* 0: 30000 */
	unsigned max_in_flight;		/* 0: 64 requests at once; the rest queue */
	unsigned max_retries;		/* 0: 5 retries of a retryable failure */
	long retry_base_ms;		/* 0: 250 */
	long retry_max_ms;		/* 0: 30000 */
	/* "password_file" as the file names it, or NULL; never read here. */
	const char *password_file;
};

/* max_retries value meaning "no retries at all" (0 means the default). */
#define AIRFLOW_RETRIES_NONE UINT32_MAX

/*
 * Parses the "airflow" configuration section into *out (zeroed first; zero
 * fields take the defaults above). section may be NULL (all defaults).
 * Keys: url, api ("auto"|"v1"|"v2"), username, password_file, ca_file,
 * connect_timeout_ms, request_timeout_ms, max_in_flight, max_retries (0: no
 * retries), retry_base_ms, retry_max_ms; any other key is an error, and so is
 * a plain "password" (secrets come from a file or the environment).
 * The strings in *out are borrowed from section (keep it alive); nothing is
 * allocated. out->password is left NULL for the caller to fill: the server
 * reads out->password_file unless AUTOPILOT_AIRFLOW_PASSWORD overrides it.
 * Returns 0, or -1 with a new *cause naming the key ("airflow.max_in_flight:
 * must be a positive integer").
 */
int airflow_config_from_json(const json_t *section, struct airflow_config *out,
    char **cause);

/* HTTP request counts by outcome, for /metrics. */
enum airflow_http_class {
	AIRFLOW_HTTP_2XX,
	AIRFLOW_HTTP_3XX,
	AIRFLOW_HTTP_4XX,
	AIRFLOW_HTTP_5XX,
	AIRFLOW_HTTP_NETWORK,	/* no HTTP answer: refused, reset, timeout, TLS... */
	AIRFLOW_HTTP_CLASS_MAX
};
const char *airflow_http_class_name(enum airflow_http_class k);	/* "2xx"... "network" */

/* Latency histogram bucket upper bounds in ms; the last bucket is +Inf. */
#define AIRFLOW_LATENCY_BUCKETS 12
extern const long airflow_latency_bounds_ms[AIRFLOW_LATENCY_BUCKETS - 1];

struct airflow_stats {
	/* HTTP attempts (each retry counts) by outcome class. */
	uint64_t requests[AIRFLOW_HTTP_CLASS_MAX];
	uint64_t retries;		/* attempts scheduled again after a retryable failure */
	uint64_t breaker_opens;		/* times the circuit breaker opened */
	bool breaker_open;		/* open now */
	bool login_refused;		/* Airflow 3's login refused since the
					 * last one it took */
	unsigned in_flight;		/* HTTP transfers running now */
	unsigned queued;		/* HTTP requests waiting for an in-flight slot */
	/*
	 * Request latency (start of the transfer to its end, every attempt),
	 * cumulative as Prometheus wants it: latency_le[i] counts attempts that
	 * took <= airflow_latency_bounds_ms[i]; latency_le[AIRFLOW_LATENCY_BUCKETS-1]
	 * (+Inf) equals latency_count.
	 */
	uint64_t latency_le[AIRFLOW_LATENCY_BUCKETS];
	uint64_t latency_count;
	uint64_t latency_sum_ms;
};

/* Fills *out with the client's counters so far. Cheap; any time. */
void airflow_client_stats(const struct airflow_client *c, struct airflow_stats *out);

/*
 * The operations the scheduler needs, as a table so a fake can stand in.
 * Each returns a request handle that may be passed to cancel() until the
 * callback has run; NULL never (failures are reported through the callback,
 * which is then deferred to the next loop turn, never called re-entrantly).
 * All string and JSON arguments are borrowed (copied if kept), except
 * deploy's pipeline: the client keeps a reference and may read it on its
 * worker thread, so the caller must not change that document afterwards.
 */
struct airflow_ops {
	/* POST the IngestionPipeline to the plugin's deploy route. */
	struct airflow_req *(*deploy)(void *impl, const json_t *pipeline,
	    airflow_cb cb, void *arg);
	/* GET the DAG: NOT_FOUND until Airflow has parsed it. */
	struct airflow_req *(*get_dag)(void *impl, const char *dag_id,
	    airflow_cb cb, void *arg);
	/*
	 * PATCH is_paused=false, which also waits for the parse in one request:
	 * NOT_FOUND until Airflow has parsed the DAG, then the DAG as Airflow
	 * answers it (res->dag, or NULL if the 2xx body is not a DAG). A DAG
	 * with import errors is paused again and its import error read, as
	 * get_dag does (with its stamp, import_error_at). With errors_since (ms since the epoch) not 0, a 404
	 * is followed by a look at Airflow's import errors: a DAG file that
	 * never imported has no DAG (404 for ever) and its error only there.
	 * One for "<dag_id>.py" stamped since then is answered as a DAG with
	 * import errors (res->dag, has_import_errors, import_error_at); else
	 * NOT_FOUND, as when that look fails.
	 */
	struct airflow_req *(*unpause)(void *impl, const char *dag_id,
	    int64_t errors_since, airflow_cb cb, void *arg);
	/* POST a run with this dag_run_id; on 409 fetch it and report adopted. */
	struct airflow_req *(*trigger)(void *impl, const char *dag_id,
	    const char *dag_run_id, const json_t *conf, airflow_cb cb, void *arg);
	struct airflow_req *(*get_run)(void *impl, const char *dag_id,
	    const char *dag_run_id, airflow_cb cb, void *arg);
	/* PATCH the run's state to failed (timeouts). */
	struct airflow_req *(*fail_run)(void *impl, const char *dag_id,
	    const char *dag_run_id, airflow_cb cb, void *arg);
	/* Drops a request: its callback will not run. */
	void (*cancel)(void *impl, struct airflow_req *req);
	/*
	 * Bounds req in time: no retry, Retry-After or circuit-breaker wait
	 * goes on past left_ms from now; when the next would, req ends with
	 * its last failure (AIRFLOW_UNAVAILABLE). At the bound, an attempt
	 * still unanswered is dropped, and a wait for a free connection slot,
	 * version detection or a token given up: req ends AIRFLOW_UNAVAILABLE,
	 * titled "Out of time". 0 or less: it ends now. May be NULL (no bound).
	 */
	void (*limit)(void *impl, struct airflow_req *req, int64_t left_ms);
	/*
	 * Before req is sent again (a retry, or a send after a wait for a
	 * free slot, the breaker, version detection or a token; its first
	 * send too when that waits for a slot), ok(arg) is asked; false ends
	 * req at once, "Not sent again" (AIRFLOW_UNAVAILABLE, no HTTP
	 * status): a trigger whose run another process replaced meanwhile
	 * starts no Airflow run. May be NULL.
	 */
	void (*guard)(void *impl, struct airflow_req *req, bool (*ok)(void *arg),
	    void *arg);
	/* True while the circuit breaker is open (Airflow believed down). */
	bool (*unreachable)(void *impl);
};

/*
 * Creates a client on base. cfg is copied. Returns NULL and a new *cause on
 * bad configuration. Version detection (AIRFLOW_API_AUTO) happens lazily
 * before the first request. The client reads Airflow's answers on a thread
 * of its own; callbacks still run on the loop.
 */
struct airflow_client *airflow_client_create(struct event_base *base,
    const struct airflow_config *cfg, char **cause);
/* Cancels everything in flight (no callbacks) and frees. Accepts NULL. */
void airflow_client_free(struct airflow_client *c);
/* The ops table and impl pointer of a real client. */
const struct airflow_ops *airflow_client_ops(void);

/* Plugin routes beyond the ops table (same callback rules). */
struct airflow_req *airflow_health(struct airflow_client *c, airflow_cb cb, void *arg);
/* The ops table's limit() for a request made through these routes. */
void airflow_limit(struct airflow_client *c, struct airflow_req *req, int64_t left_ms);
/* curl's message for the last attempt that got no HTTP answer (refused,
 * reset, timed out...) if it ended at or after since_ms (ap_mono_ms()), as
 * a new string; else NULL. */
char *airflow_client_network_error(const struct airflow_client *c, uint64_t since_ms);
struct airflow_req *airflow_kill(struct airflow_client *c, const char *dag_id,
    airflow_cb cb, void *arg);
struct airflow_req *airflow_delete(struct airflow_client *c, const char *dag_id,
    airflow_cb cb, void *arg);
/* The API generation in use (AUTO until detection finished). */
enum airflow_api airflow_client_api(const struct airflow_client *c);

/*
 * The DAG id the OpenMetadata plugin derives from a pipeline name: each run
 * of characters outside [0-9a-zA-Z-_] becomes one '_'. Returns a new string.
 */
char *airflow_dag_id_from_name(const char *name);

#endif
