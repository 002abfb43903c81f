/*
 * cmd_serve.c — `autopilot serve`: the webhook target. Loads the
 * configuration, opens the store, resumes unfinished runs, and serves the
 * HTTP routes of server.h until SIGTERM or SIGINT.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/resource.h>

#include <event2/event.h>

#include "cmd.h"
#include "config.h"
#include "log.h"
#include "retention.h"
#include "runtime.h"
#include "server.h"
#include "store.h"
#include "util.h"

/* How often a drain looks whether every answer is out. */
#define DRAIN_CHECK_MS 20
/* Once open, how long a statement on the loop waits for a lock another
 * process holds (store_set_busy_timeout()): a commit of `autopilot run`
 * takes milliseconds; a lock held longer turns into store errors (503s,
 * runs taken up again later) rather than a loop that answers nothing. */
#define SERVE_BUSY_TIMEOUT_MS 250

struct serve {
	struct ap_runtime rt;
	struct server *server;
	struct retention *retention;
	struct event *sigterm, *sigint, *sighup;
	struct event *drain_timer;
	uint64_t drain_until;
	unsigned grace_s;
	int signals;
};

/* Descriptors kept beyond the connections: the store, Airflow's
 * connections, the loop's own, logs. */
#define SERVE_FD_RESERVE 128

/*
 * Raises the soft limit on descriptors towards listen.max_connections plus
 * a reserve (as far as the hard limit allows), so that the connection cap,
 * not a failing accept(), is what limits clients; says so when the hard
 * limit is lower.
 */
static void
serve_raise_nofile(const struct config *cfg)
{
	struct rlimit rl;
	rlim_t want = (rlim_t)cfg->max_connections + SERVE_FD_RESERVE;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want)
		return;
	rl.rlim_cur = rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want ?
	    rl.rlim_max : want;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
		ap_warn("cannot raise the descriptor limit to %llu: %s",
		    (unsigned long long)rl.rlim_cur, strerror(errno));
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < want)
		ap_warn("%llu file descriptors allowed (ulimit -n), fewer than"
		    " listen.max_connections (%u) + %d: clients may find accepting"
		    " paused for want of descriptors before the connection limit",
		    (unsigned long long)rl.rlim_cur, cfg->max_connections,
		    SERVE_FD_RESERVE);
}

/* The Airflow client as server.h takes it. */
static struct airflow_req *
serve_airflow_health(void *airflow, airflow_cb cb, void *arg)
{
	return airflow_health(airflow, cb, arg);
}

static char *
serve_airflow_network_error(const void *airflow, uint64_t since_ms)
{
	return airflow_client_network_error(airflow, since_ms);
}

static void
serve_airflow_stats(const void *airflow, struct airflow_stats *out)
{
	airflow_client_stats(airflow, out);
}

/* Exits once every answer is written, or when listen.shutdown_grace_s is up. */
static void
serve_drained(evutil_socket_t fd, short what, void *arg)
{
	struct serve *sv = arg;
	struct timeval tv = { 0, DRAIN_CHECK_MS * 1000 };
	size_t busy = server_busy(sv->server);

	(void)fd;
	(void)what;
	if (busy > 0 && ap_mono_ms() < sv->drain_until) {
		evtimer_add(sv->drain_timer, &tv);
		return;
	}
	if (busy > 0)
		ap_warn("shutdown grace (listen.shutdown_grace_s) is up: %zu answers"
		    " not written; those clients deliver again", busy);
	event_base_loopexit(sv->rt.base, NULL);
}

static void
serve_signal(evutil_socket_t sig, short what, void *arg)
{
	struct serve *sv = arg;
	char *cause = NULL;

	(void)what;
	if (sig == SIGHUP) {
		ap_info("SIGHUP: configuration is read at start; restart to reload it");
		return;
	}
	if (++sv->signals > 1) {
		ap_warn("%s again: exiting now", strsignal((int)sig));
		event_base_loopbreak(sv->rt.base);
		return;
	}
	ap_info("%s: shutting down: no new connections, runs handed over",
	    strsignal((int)sig));
	server_drain(sv->server);
	retention_stop(sv->retention);
	/* The runs are handed over (released) whatever another process holds
	 * meanwhile, as the open waited: else another host takes them up only
	 * once their lease runs out. */
	store_set_busy_timeout(sv->rt.store, STORE_BUSY_TIMEOUT_MS);
	/* Every step is persisted before it is acted on, so stopping here
	 * loses nothing: the next start (or another process) resumes. */
	sched_stop(sv->rt.sched);
	if (store_flush(sv->rt.store, &cause) != STORE_OK) {
		ap_error("state store: %s", cause);
		free(cause);
	}
	sv->drain_until = ap_mono_ms() + (uint64_t)sv->grace_s * 1000;
	sv->drain_timer = evtimer_new(sv->rt.base, serve_drained, sv);
	serve_drained(-1, 0, sv);
}

/* /metrics beyond the server's own: the Airflow client's, retention's. */
static void
serve_metrics(struct ap_buf *out, void *arg)
{
	struct serve *sv = arg;

	ap_runtime_airflow_metrics(out, sv->rt.airflow);
	retention_metrics(out, sv->retention);
}

/* Why serve cannot start: a log line once the log is set up (a JSON
 * object with --log-json), as plain text before. */
static void __attribute__((format(printf, 2, 3)))
serve_fatal(const struct config *cfg, const char *fmt, ...)
{
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	msg = ap_xvprintf(fmt, ap);
	va_end(ap);
	if (cfg->log_format == AP_LOG_JSON)
		ap_error("serve: %s", msg);
	else
		fprintf(stderr, "autopilot: serve: %s\n", msg);
	free(msg);
}

/* Whether a listen host takes connections from this machine only. */
static bool
loopback_host(const char *host)
{
	return strcmp(host, "localhost") == 0 || strcmp(host, "::1") == 0 ||
	    strcmp(host, "0:0:0:0:0:0:0:1") == 0 || strncmp(host, "127.", 4) == 0 ||
	    strncmp(host, "::ffff:127.", 11) == 0;
}

static int
serve_exec(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "listen", required_argument, NULL, 'l' },
		{ "airflow-url", required_argument, NULL, 'a' },
		{ "state", required_argument, NULL, 's' },
		{ "allow-unsigned", no_argument, NULL, 'u' },
		{ "log-json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct config_flags flags = { 0 };
	struct server_deps deps = { 0 };
	struct serve sv;
	struct config cfg;
	const char *path = NULL;
	char *cause = NULL, *listen = NULL;
	int c, rc = AP_EXIT_USAGE, listen_fd = -1;
	unsigned n, held;

	memset(&sv, 0, sizeof sv);
	config_init(&cfg);
	optind = 1;
	opterr = 1;
	while ((c = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'c': path = optarg; break;
		case 'l': flags.listen = optarg; break;
		case 'a': flags.airflow_url = optarg; break;
		case 's': flags.state = optarg; break;
		case 'u': flags.allow_unsigned = true; break;
		case 'j': flags.log_json = true; break;
		case 'h':
			ap_cmd_print_help(&ap_cmd_serve_entry, stdout);
			rc = AP_EXIT_OK;
			goto out;
		default:
			fprintf(stderr, "usage: autopilot serve %s\n", ap_cmd_serve_entry.usage);
			goto out;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "autopilot: serve: unexpected argument '%s'\n", argv[optind]);
		goto out;
	}
	if (config_load(&cfg, path, &flags, &cause) < 0) {
		fprintf(stderr, "autopilot: %s\n", cause);
		goto out;
	}
	ap_log_setup(cfg.log_level, cfg.log_format);
	if (cfg.webhook_secret == NULL && !cfg.allow_unsigned) {
		serve_fatal(&cfg, "no webhook secret: set AUTOPILOT_WEBHOOK_SECRET (or"
		    " webhook.secret_file), the secret of the OpenMetadata event"
		    " subscription; --allow-unsigned accepts unsigned events instead");
		goto out;
	}
	/* A bad Airflow URL from the environment or a flag: refused before the
	 * state database is opened (or created). */
	if (ap_cmd_check_airflow(&cfg, &cause) < 0) {
		serve_fatal(&cfg, "%s", cause);
		goto out;
	}

	/* Likewise an address that cannot be listened on (a host that names
	 * nothing, a port in use): the socket is opened first. */
	if ((listen_fd = server_listen(&cfg, &cause)) < 0) {
		serve_fatal(&cfg, "%s", cause);
		goto out;
	}

	serve_raise_nofile(&cfg);
	if ((rc = ap_runtime_open(&sv.rt, &cfg, &cause)) != AP_EXIT_OK) {
		serve_fatal(&cfg, "%s", cause);
		goto out;
	}
	/* The scheduler logs every state change itself, one line each. */
	deps.store = sv.rt.store;
	deps.sched = sv.rt.sched;
	deps.airflow_ops = airflow_client_ops();
	deps.airflow = sv.rt.airflow;
	deps.airflow_health = serve_airflow_health;
	deps.airflow_stats = serve_airflow_stats;
	deps.airflow_network_error = serve_airflow_network_error;
	deps.plan = sv.rt.plan;
	deps.metrics = serve_metrics;
	deps.metrics_arg = &sv;
	sv.retention = retention_create(sv.rt.base, sv.rt.store,
	    cfg.state_retention_days);
	sv.server = server_create(sv.rt.base, &cfg, &deps, listen_fd, &cause);
	listen_fd = -1;		/* the server's now */
	if (sv.server == NULL) {
		serve_fatal(&cfg, "%s", cause);
		rc = AP_EXIT_USAGE;
		goto out;
	}
	/* The resume at start (claims, halts) waits out a lock as long as
	 * the open did: with scheduler.rescan_ms 0 nothing would try again. */
	if (sched_start(sv.rt.sched, true, &cause) < 0) {
		serve_fatal(&cfg, "state store: %s", cause);
		rc = AP_EXIT_UNREACHABLE;
		goto out;
	}
	store_set_busy_timeout(sv.rt.store, SERVE_BUSY_TIMEOUT_MS);
	sv.grace_s = cfg.shutdown_grace_s;
	sv.sigterm = evsignal_new(sv.rt.base, SIGTERM, serve_signal, &sv);
	sv.sigint = evsignal_new(sv.rt.base, SIGINT, serve_signal, &sv);
	sv.sighup = evsignal_new(sv.rt.base, SIGHUP, serve_signal, &sv);
	evsignal_add(sv.sigterm, NULL);
	evsignal_add(sv.sigint, NULL);
	evsignal_add(sv.sighup, NULL);

	/* HOST:PORT as --listen takes it: an IPv6 address in brackets. */
	listen = strchr(cfg.listen_host, ':') != NULL ?
	    ap_xprintf("[%s]:%u", cfg.listen_host, server_port(sv.server)) :
	    ap_xprintf("%s:%u", cfg.listen_host, server_port(sv.server));
	if (cfg.webhook_secret == NULL)
		ap_warn("accepting UNSIGNED webhooks (--allow-unsigned): anyone who can"
		    " reach %s can start ingestion runs", listen);
	if (cfg.webhook_secret != NULL && cfg.allow_unsigned)
		ap_warn("--allow-unsigned ignored: a webhook secret is set, every"
		    " event must be signed");
	if (cfg.protect_runs && cfg.admin_token == NULL)
		ap_warn("admin.protect_runs is true but no admin token is set"
		    " (AUTOPILOT_ADMIN_TOKEN or admin.token_file): GET /api/v1/runs"
		    " answers 401 to everyone");
	if (!cfg.protect_runs && !loopback_host(cfg.listen_host))
		ap_warn("GET /api/v1/runs is open to anyone who can reach %s (runs hold"
		    " service names and Airflow's error messages); \"admin\":"
		    " {\"protect_runs\": true} puts it behind the admin token", listen);
	printf("listening %s\n", listen);
	fflush(stdout);
	n = sched_active_runs(sv.rt.sched);
	held = store_held_elsewhere(sv.rt.store);
	ap_info("autopilot %s listening %s; Airflow %s; state %s; %u run%s resumed",
	    AP_VERSION, listen, cfg.airflow_url, cfg.state_path, n, n == 1 ? "" :
	    "s");
	if (held > 0)
		ap_info("%u unfinished run%s held by another process on this"
		    " database (autopilot status says which): %s", held, held == 1 ?
		    " is" : "s are", cfg.sched.rescan_ms > 0 ? "taken up here if it"
		    " stops or its lease runs out" : "taken up at the next start"
		    " once it stops (scheduler.rescan_ms is 0)");

	event_base_dispatch(sv.rt.base);
	ap_info("stopped");
	rc = AP_EXIT_OK;
out:
	if (sv.sigterm != NULL)
		event_free(sv.sigterm);
	if (sv.sigint != NULL)
		event_free(sv.sigint);
	if (sv.sighup != NULL)
		event_free(sv.sighup);
	if (sv.drain_timer != NULL)
		event_free(sv.drain_timer);
	server_free(sv.server);
	retention_free(sv.retention);
	if (listen_fd >= 0)
		evutil_closesocket(listen_fd);
	if (sv.rt.base != NULL)
		ap_runtime_close(&sv.rt);
	free(listen);
	free(cause);
	config_cleanup(&cfg);
	return rc;
}

const struct ap_cmd_entry ap_cmd_serve_entry = {
	"serve",
	"[-c FILE] [--listen HOST:PORT] [--airflow-url URL] [--state PATH]"
	" [--allow-unsigned] [--log-json]",
	"Serves the OpenMetadata webhook: each entityCreated event of a service is\n"
	"committed to the state store, answered 202, and its agents deployed,\n"
	"triggered and tracked in Airflow in dependency order. Unfinished runs are\n"
	"resumed at start. Prints \"listening HOST:PORT\" on standard output once\n"
	"it accepts connections; logs go to standard error.\n\n"
	"  -c, --config FILE        configuration file (default: $AUTOPILOT_CONFIG)\n"
	"      --listen HOST:PORT   address to listen on (default 127.0.0.1:8686;\n"
	"                           port 0 picks a free port)\n"
	"      --airflow-url URL    Airflow's base URL (default http://127.0.0.1:8080)\n"
	"      --state PATH         state database (default: AUTOPILOT_STATE,\n"
	"                           else state.path, else autopilot.db)\n"
	"      --allow-unsigned     accept events without X-OM-Signature when no\n"
	"                           secret is set (a warning is logged)\n"
	"      --log-json           log one JSON object a line\n\n"
	"Environment: AUTOPILOT_WEBHOOK_SECRET, AUTOPILOT_AIRFLOW_USERNAME,\n"
	"AUTOPILOT_AIRFLOW_PASSWORD, AUTOPILOT_ADMIN_TOKEN, AUTOPILOT_CONFIG, and\n"
	"the others README.md lists.\n\n"
	"Endpoints:\n"
	"  POST /api/v1/webhooks/openmetadata          ChangeEvents (202, 200 ignored)\n"
	"  GET  /api/v1/runs, /api/v1/runs/{run_id}    run status (open; the admin\n"
	"                                              token with admin.protect_runs)\n"
	"  POST /api/v1/services/{type}/{fqn}/rerun    re-run a service (admin token)\n"
	"  GET  /healthz, /readyz, /metrics\n\n"
	"SIGTERM or SIGINT: stop accepting, hand runs over, finish the answers\n"
	"being written (at most listen.shutdown_grace_s), exit 0.\n"
	"Exit status: 0 after a clean stop; 2 configuration error (or the address\n"
	"cannot be bound); 3 the state store cannot be opened.\n",
	serve_exec,
};
