/*
 * server.h — the HTTP side of `autopilot serve` (libevent's evhttp):
 *
 *   POST /api/v1/webhooks/openmetadata          OpenMetadata ChangeEvents
 *   GET  /api/v1/runs[?service=FQN&limit=N]     runs, newest first (admin)
 *   GET  /api/v1/runs/{run_id}                  one run (admin)
 *   POST /api/v1/services/{type}/{fqn}/rerun    re-run a service (admin)
 *   GET  /healthz, /readyz, /metrics
 *
 * A webhook is answered 202 only once its event is committed to the store;
 * the run it starts is then handed to the scheduler. Every answer but
 * /metrics is JSON; errors are {"error": ..., "detail": ...}.
 *
 * Everything runs on the caller's event_base; each request is answered in
 * its callback (store calls are short and synchronous, see store.h), except
 * a /readyz that needs a fresh look at Airflow: it is answered when the
 * probe through the Airflow client ends, or after a short wait. One probe
 * at a time, its outcome cached for a few seconds; one also runs at start,
 * and a warning is logged if Airflow does not answer it.
 */
#ifndef AP_SERVER_H
#define AP_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "airflow.h"
#include "config.h"
#include "plan.h"
#include "sched.h"
#include "store.h"
#include "util.h"

struct event_base;
struct server;

/* What the server works with; all borrowed, they must outlive it. */
struct server_deps {
	struct store *store;
	struct sched *sched;
	const struct airflow_ops *airflow_ops;	/* unreachable(), cancel() */
	void *airflow;
	/* Asks Airflow whether it answers (the plugin's health route), for
	 * /readyz and the check at start; NULL: Airflow is not probed. */
	struct airflow_req *(*airflow_health)(void *airflow, airflow_cb cb, void *arg);
	/* The client's counters (may be NULL): an answer from Airflow to other
	 * work spares /readyz its probe. */
	void (*airflow_stats)(const void *airflow, struct airflow_stats *out);
	/* Why the client's last attempt since since_ms got no answer (a new
	 * string) or NULL; may be NULL. Said by a /readyz that cannot wait for
	 * the probe (being retried) any longer. */
	char *(*airflow_network_error)(const void *airflow, uint64_t since_ms);
	const struct plan *plan;	/* re-runs are checked against it */
	/* Appends further Prometheus text to /metrics (may be NULL). */
	void (*metrics)(struct ap_buf *out, void *arg);
	void *metrics_arg;
};

/* Webhook outcomes, counted for /metrics (autopilot_webhooks_total). */
enum server_outcome {
	SERVER_ACCEPTED,	/* 202, a new event */
	SERVER_REPEATED,	/* 202, an event id seen before */
	SERVER_IGNORED,		/* 200, not acted on */
	SERVER_INVALID,		/* an event of a batch that cannot be read
				 * (the others served) */
	SERVER_BAD_REQUEST,	/* 400 */
	SERVER_UNAUTHORIZED,	/* 401 */
	SERVER_NOT_ALLOWED,	/* 405 */
	SERVER_TOO_LARGE,	/* 413 */
	SERVER_UNSUPPORTED,	/* 415 */
	SERVER_TOO_MANY_HEADERS,	/* 431 */
	SERVER_UNAVAILABLE,	/* 503: store failing or shutting down */
	SERVER_OUTCOME_MAX
};

/*
 * Opens cfg's listen socket (bound, not yet listening; non-blocking,
 * close-on-exec): its descriptor, or -1 and a new *cause ("cannot listen
 * on HOST:PORT: not an address of this host (...)", "...: Address already
 * in use"). Called before anything else is set up, so that an address that
 * cannot be served is refused before the state store is opened or migrated.
 */
int server_listen(const struct config *cfg, char **cause);
/* Whether cfg's listen host is an address of this host, as server_listen()
 * finds it (without binding): 0, or -1 and a new *cause in its words. */
int server_listen_check(const struct config *cfg, char **cause);

/*
 * Creates the server listening on listen_fd (from server_listen(), which it
 * owns from now on, closed by server_free() or on failure; read the port
 * back with server_port). cfg is borrowed (limits, secret, admin token). NULL and a
 * new *cause if the socket cannot be served.
 */
struct server *server_create(struct event_base *base, const struct config *cfg,
    const struct server_deps *deps, int listen_fd, char **cause);
unsigned server_port(const struct server *s);
/* Stops accepting connections; webhooks and re-runs answer 503 from now on,
 * and every connection closes after its answer. */
void server_drain(struct server *s);
/* Requests being answered: awaiting their commit or not yet written out. */
size_t server_busy(const struct server *s);
/* Closes every connection and frees. Accepts NULL. */
void server_free(struct server *s);

#endif
