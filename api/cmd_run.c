/*
 * cmd_run.c — `autopilot run`: re-runs AutoPilot on an existing service and
 * follows it to the end. The entity comes from --service-json, else the
 * state store, else OpenMetadata's API.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <event2/event.h>

#include "cmd.h"
#include "config.h"
#include "filter_defaults.h"
#include "filter_effective.h"
#include "log.h"
#include "pipeline.h"
#include "runtime.h"
#include "util.h"
#include "webhook.h"

#define OM_MAX_BODY (8u * 1024 * 1024)
#define RUN_MAX_AGENTS SCHED_MAX_AGENTS
/* Longest --no-wait waits for a replaced run's Airflow runs to be failed. */
#define HALT_WAIT_MS 10000
/* A run dropped after a state store error (a write lock held too long) is
 * waited for this long to be taken back before `run` gives it up to serve. */
#define RUN_RETAKE_MS 30000

struct run_line {
	char agent[SCHED_AGENT_NAME_MAX];
	char state[24];
	char dag_run_id[160];
	char error[512];	/* cut to the terminal's width when drawn */
	unsigned attempt;
	uint64_t started;	/* mono ms when it left pending, 0 before */
	uint64_t ended;		/* mono ms when it reached a final state */
};

/* The signals that interrupt `run` (SIGHUP: its terminal went away),
 * but one ignored when it started (SIGHUP under nohup). */
static const int run_signals[] = { SIGINT, SIGTERM, SIGHUP };
#define RUN_NSIGNALS (sizeof run_signals / sizeof run_signals[0])
static bool run_signal_ignored[RUN_NSIGNALS];

/* A handler for run_signals[i], or NULL when it was ignored at start. */
static struct event *
run_signal_new(struct event_base *base, size_t i, event_callback_fn cb, void *arg)
{
	struct event *ev;
	struct sigaction sa;

	if (run_signal_ignored[i])
		return NULL;
	ev = evsignal_new(base, run_signals[i], cb, arg);
	evsignal_add(ev, NULL);
	/* libevent's handler restarts an interrupted system call: a write to
	 * a standard output that blocks (a full pipe nobody reads, a paused
	 * terminal) would go on blocking, and the signal never reach the
	 * loop. Without SA_RESTART the write is cut instead. */
	if (sigaction(run_signals[i], NULL, &sa) == 0 &&
	    (sa.sa_flags & SA_RESTART) != 0) {
		sa.sa_flags &= ~SA_RESTART;
		(void)sigaction(run_signals[i], &sa, NULL);
	}
	return ev;
}

struct run_watch {
	struct ap_runtime rt;
	const char *run_id;
	bool tty, json;
	struct run_line lines[RUN_MAX_AGENTS];
	unsigned nlines, drawn;
	char run_state[24];
	char *run_error;
	char *followed_by;	/* the run made to follow this one, or NULL */
	bool done, left;	/* final, or no longer driven here */
	bool interrupted;
	unsigned signals;	/* received, counted (a second one ends waits) */
	/* Dropped after a store error, or recorded but not taken up: taken
	 * back within RUN_RETAKE_MS (from retake_since), else given up to
	 * serve (store_lost, store_error saying why). */
	struct event *retake;
	uint64_t retake_since;
	bool store_lost;
	char *store_error;
	struct event *tick, *sig[RUN_NSIGNALS];
	/* Progress is written by run_output, outside the scheduler's
	 * callbacks and after a commit: a standard output that blocks (a
	 * pager, a terminal paused, a full pipe) must not hold the state
	 * store's write lock, which `autopilot serve` waits on. */
	struct event *out;
	struct ap_buf pending;	/* plain lines not yet written */
	bool redraw;
	bool headed;		/* the run's first line is out: progress follows */
};

/* ---- Where the entity comes from. ---- */

/*
 * --type against what a --service-json entity says it is: its href's
 * collection ("/services/databaseServices/…") when it has one, else the
 * filter keys of its connector's built-in defaults and of its own
 * connection.config (a schemaFilterPattern makes a database service).
 * A contradiction is an input error, not a pipeline of the wrong kind.
 */
static int
check_entity_type(const char *json_file, const json_t *entity, const char *type,
    bool from_event, char **cause)
{
	struct filter_type_conflict c;
	char *lead, *hint = NULL, *what;
	const char *other;

	if (!filter_type_conflict(entity, type, &c))
		return AP_EXIT_OK;
	lead = ap_xprintf("%s: %s %s", json_file, from_event ?
	    "the ChangeEvent's entityType is" : "--type is", type);
	if (c.href_type != NULL) {
		if (!from_event)
			hint = ap_xprintf(": give --type %s, or the entity of a %s",
			    c.href_type, type);
		*cause = ap_xprintf("%s, but the entity is a %s (its href '%s')%s", lead,
		    c.href_type, c.href, hint != NULL ? hint : "");
	} else {
		other = filter_key_kind(c.key);
		what = c.connector != NULL ? ap_xprintf("the entity's connector %s is a"
		    " %s connector", c.connector, other) : ap_xprintf("the entity's"
		    " connection.config has %s, a filter of %s services", c.key, other);
		if (!from_event)
			hint = ap_xprintf(": give --type %sService, or the entity of a %s",
			    other, type);
		*cause = ap_xprintf("%s, but %s%s", lead, what, hint != NULL ? hint : "");
		free(what);
	}
	free(lead);
	free(hint);
	filter_type_conflict_cleanup(&c);
	return AP_EXIT_USAGE;
}

static size_t
om_write(char *data, size_t size, size_t n, void *arg)
{
	struct ap_buf *b = arg;

	if (b->len + size * n > OM_MAX_BODY)
		return 0;
	ap_buf_add(b, data, size * n);
	return size * n;
}

/* Whether b holds OpenMetadata's error body: {"code": N, "message": "..."}. */
static bool
om_error_body(const struct ap_buf *b)
{
	json_t *j = json_loadb(b->data != NULL ? b->data : "", b->len, 0, NULL);
	bool ok = json_is_object(j) && json_is_string(json_object_get(j, "message"));

	json_decref(j);
	return ok;
}

/*
 * GET {url}/api/v1/services/{type}s/name/{fqn} (url with or without its
 * "/api"). Blocking: the CLI does this
 * before its event loop starts. Returns the HTTP status (0 on a network
 * error, with *cause) and, on 200, the entity.
 */
static long
om_fetch(const struct config *cfg, const char *type, const char *fqn,
    json_t **entity, char **cause)
{
	struct curl_slist *hdrs = NULL;
	struct ap_buf b;
	json_error_t jerr;
	char *url, *root, *efqn, *auth, errbuf[CURL_ERROR_SIZE] = "";
	long status = 0;
	CURLcode rc;
	CURL *h;

	*entity = NULL;
	if ((h = curl_easy_init()) == NULL)
		ap_fatal("curl_easy_init failed");
	efqn = curl_easy_escape(h, fqn, 0);
	root = ap_om_api_root(cfg->om_url);
	url = ap_xprintf("%s/v1/services/%ss/name/%s", root, type, efqn);
	free(root);
	curl_free(efqn);
	ap_buf_init(&b);
	hdrs = curl_slist_append(hdrs, "Accept: application/json");
	if (cfg->om_token != NULL) {
		auth = ap_xprintf("Authorization: Bearer %s", cfg->om_token);
		hdrs = curl_slist_append(hdrs, auth);
		memset(auth, 0, strlen(auth));
		free(auth);
	}
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, om_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 30000L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	rc = curl_easy_perform(h);
	if (rc != CURLE_OK) {
		*cause = ap_xprintf("OpenMetadata %s: %s", url,
		    errbuf[0] != '\0' ? errbuf : curl_easy_strerror(rc));
		goto out;
	}
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	if (status == 200) {
		const char *name, *full;

		*entity = json_loadb(b.data != NULL ? b.data : "", b.len, 0, &jerr);
		name = json_string_value(json_object_get(*entity, "name"));
		full = json_string_value(json_object_get(*entity, "fullyQualifiedName"));
		/* What answers is OpenMetadata, about that service: another
		 * server's JSON would otherwise pass for an entity. */
		if (*entity == NULL || !json_is_object(*entity) || !((name != NULL &&
		    strcmp(name, fqn) == 0) || (full != NULL && strcmp(full, fqn) == 0))) {
			*cause = ap_xprintf("OpenMetadata %s: the answer is not %s%s",
			    url, *entity == NULL || !json_is_object(*entity) ?
			    "a JSON object: " : "the service asked for (no \"name\" nor"
			    " \"fullyQualifiedName\" of that value)", *entity == NULL ?
			    jerr.text : "");
			json_decref(*entity);
			*entity = NULL;
			status = 0;
		}
	} else if (status == 404 && !om_error_body(&b)) {
		/* A 404 that is not OpenMetadata's says nothing of the service:
		 * another server (or a proxy with none behind it) answered. */
		*cause = ap_xprintf("OpenMetadata %s: HTTP 404 without OpenMetadata's"
		    " JSON body: is %s OpenMetadata's address?", url, cfg->om_url);
		status = 0;
	} else if (status != 404)
		*cause = ap_xprintf("OpenMetadata %s: HTTP %ld%s%.*s", url, status,
		    b.len > 0 ? ": " : "", (int)(b.len > 300 ? 300 : b.len),
		    b.data != NULL ? b.data : "");
out:
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(h);
	ap_buf_cleanup(&b);
	free(url);
	return status;
}

/*
 * A --service-json that is a ChangeEvent, as the webhook gets it (and filter
 * test takes it): *entity becomes the entity it carries (an object or a JSON
 * string of one), of its entityType, which must agree with --type and with
 * the entity's href.
 */
static int
event_entity(const struct config *cfg, const char *json_file, char **type,
    json_t **entity, char **cause)
{
	json_t *ev = *entity;
	const char *et = json_string_value(json_object_get(ev, "entityType"));
	char *why = NULL;
	int rc = AP_EXIT_OK;

	*entity = NULL;
	if (webhook_event_entity(ev, "", cfg->max_json_depth, entity, &why) !=
	    WEBHOOK_PARSE_OK) {
		*cause = ap_xprintf("%s (a ChangeEvent): %s", json_file, why);
		free(why);
		json_decref(ev);
		return AP_EXIT_USAGE;
	}
	if (et != NULL && *type != NULL && strcmp(et, *type) != 0) {
		*cause = ap_xprintf("%s: --type is %s, but the ChangeEvent's entityType"
		    " is %s", json_file, *type, et);
		rc = AP_EXIT_USAGE;
	} else if (*type != NULL)
		rc = check_entity_type(json_file, *entity, *type, false, cause);
	else if (et != NULL) {
		*type = ap_xstrdup(et);
		rc = check_entity_type(json_file, *entity, *type, true, cause);
	} else if ((*type = filter_href_type(*entity)) == NULL) {
		*cause = ap_xprintf("%s: cannot tell the service type (no"
		    " entityType, and no \"href\" naming it): give --type, e.g."
		    " --type databaseService", json_file);
		rc = AP_EXIT_USAGE;
	}
	json_decref(ev);
	return rc;
}

/*
 * The service entity and its type. Returns AP_EXIT_OK or an exit code with
 * a new *cause.
 */
static int
find_entity(const struct config *cfg, struct store *st, const char *fqn,
    const char *json_file, char **type, json_t **entity, char **cause)
{
	json_error_t jerr;
	enum store_result r;
	char *text = NULL, *why = NULL;
	const char *found_type = NULL;
	json_t *found = NULL;
	struct ap_buf types;
	unsigned nfound = 0;
	size_t i, len;
	long status;
	int64_t stored_at;

	*entity = NULL;
	if (json_file != NULL) {
		if ((text = ap_read_file(json_file, OM_MAX_BODY, &len, &why)) == NULL) {
			*cause = ap_xprintf("--service-json: %s", why);
			free(why);
			return AP_EXIT_USAGE;
		}
		*entity = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
		free(text);
		if (*entity == NULL || !json_is_object(*entity)) {
			*cause = *entity == NULL ? ap_xprintf("%s: line %d, column %d:"
			    " %s", json_file, jerr.line, jerr.column, jerr.text) :
			    ap_xprintf("%s: the service entity must be a JSON object",
			    json_file);
			json_decref(*entity);
			*entity = NULL;
			return AP_EXIT_USAGE;
		}
		if (json_object_get(*entity, "entity") != NULL)
			return event_entity(cfg, json_file, type, entity, cause);
		if (*type != NULL)
			return check_entity_type(json_file, *entity, *type, false, cause);
		if ((*type = filter_href_type(*entity)) == NULL) {
			*cause = ap_xprintf("%s: cannot tell the service type (no"
			    " \"href\" naming it): give --type, e.g. --type"
			    " databaseService", json_file);
			return AP_EXIT_USAGE;
		}
		return AP_EXIT_OK;
	}

	r = store_service_get_at(st, *type, fqn, &text, *type == NULL ? type :
	    NULL, &stored_at, &why);
	if (r == STORE_OK) {
		*entity = json_loads(text, 0, &jerr);
		free(text);
		if (*entity != NULL) {
			char at[40];

			/* The webhook stores the entity of entityCreated only:
			 * filters changed in OpenMetadata since are not in it. */
			ap_format_time(stored_at, at, sizeof at);
			fprintf(stderr, "autopilot: run: the entity of %s %s is the"
			    " one stored at %s (of its entityCreated event, or an"
			    " earlier run's --service-json): a change made in"
			    " OpenMetadata since, to its filters say, is not in it;"
			    " --service-json FILE gives the service as it is now\n",
			    *type, fqn, at);
			return AP_EXIT_OK;
		}
		*cause = ap_xprintf("the stored entity of %s is not JSON: %s", fqn,
		    jerr.text);
		return AP_EXIT_UNREACHABLE;
	}
	if (r == STORE_AMBIGUOUS) {
		*cause = ap_xprintf("%s: give --type to say which", why);
		free(why);
		return AP_EXIT_USAGE;
	}
	if (r != STORE_NOT_FOUND) {
		*cause = ap_xprintf("state store: %s", why);
		free(why);
		return AP_EXIT_UNREACHABLE;
	}

	if (cfg->om_url == NULL) {
		*cause = ap_xprintf("no entity for service '%s': it is not in the state"
		    " store, and OpenMetadata is not configured (AUTOPILOT_OPENMETADATA_URL);"
		    " give --service-json FILE", fqn);
		return AP_EXIT_USAGE;
	}
	/* Names are unique within a service type only: with no --type, every
	 * type is asked, and a name found under two is for the user to pick. */
	ap_buf_init(&types);
	for (i = 0; plan_service_types[i] != NULL; i++) {
		if (*type != NULL && strcmp(*type, plan_service_types[i]) != 0)
			continue;
		free(*cause);
		*cause = NULL;
		status = om_fetch(cfg, plan_service_types[i], fqn, &found, cause);
		if (status == 200 && *type != NULL) {
			*entity = found;
			return AP_EXIT_OK;
		}
		if (status == 200) {
			ap_buf_printf(&types, "%s%s", nfound++ > 0 ? ", " : "",
			    plan_service_types[i]);
			if (*entity == NULL) {
				*entity = found;
				found_type = plan_service_types[i];
			} else
				json_decref(found);
			continue;
		}
		if (status != 404) {
			/* Another type could not be asked. */
			json_decref(*entity);
			*entity = NULL;
			ap_buf_cleanup(&types);
		}
		if (status == 401 || status == 403) {
			/* A token problem: configuration. */
			char *c = ap_xprintf("%s; %s (AUTOPILOT_OPENMETADATA_TOKEN or"
			    " openmetadata.token_file: a JWT of a bot allowed to read"
			    " services)", *cause, cfg->om_token != NULL ?
			    "OpenMetadata turned the token down" :
			    "no OpenMetadata token is set");

			free(*cause);
			*cause = c;
			return AP_EXIT_USAGE;
		}
		if (status != 404)
			return AP_EXIT_UNREACHABLE;
	}
	free(*cause);
	*cause = NULL;
	if (nfound > 1) {
		json_decref(*entity);
		*entity = NULL;
		*cause = ap_xprintf("OpenMetadata has more than one service named"
		    " '%s' (%s): give --type to say which", fqn, types.data);
		ap_buf_cleanup(&types);
		return AP_EXIT_USAGE;
	}
	ap_buf_cleanup(&types);
	if (*entity != NULL) {
		*type = ap_xstrdup(found_type);
		return AP_EXIT_OK;
	}
	*cause = ap_xprintf("OpenMetadata at %s has no %s named '%s'", cfg->om_url,
	    *type != NULL ? *type : "service", fqn);
	return AP_EXIT_USAGE;
}

/* ---- Progress. ---- */

static struct run_line *
line_of(struct run_watch *w, const char *agent)
{
	unsigned i;

	for (i = 0; i < w->nlines; i++)
		if (strcmp(w->lines[i].agent, agent) == 0)
			return &w->lines[i];
	if (w->nlines == RUN_MAX_AGENTS)
		return NULL;
	snprintf(w->lines[w->nlines].agent, sizeof w->lines[0].agent, "%s", agent);
	return &w->lines[w->nlines++];
}

/* Columns of the terminal on stdout (80 when it does not say). */
static unsigned
term_columns(void)
{
	struct winsize ws;

	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
		return ws.ws_col;
	return 80;
}

/*
 * Redraws the agent lines in place: the cursor goes back up one row per
 * line, so a line must not wrap; each is cut to the terminal's width (a
 * UTF-8 character taken as one column).
 */
static void
draw(struct run_watch *w)
{
	uint64_t now = ap_mono_ms();
	unsigned i, cols = term_columns() - 1, used;
	struct run_line *l;
	double secs;
	char *text;
	size_t n;

	if (w->drawn > 0)
		printf("\033[%uA", w->drawn);
	/* (Nothing more once a signal cut a write: see run_output.) */
	for (i = 0; i < w->nlines && !ferror(stdout); i++) {
		l = &w->lines[i];
		secs = l->started == 0 ? 0 :
		    (double)((l->ended != 0 ? l->ended : now) - l->started) / 1000.0;
		text = ap_xprintf("  %-18s %-15s %7.1fs  %s%s%s", l->agent, l->state, secs,
		    l->dag_run_id, l->error[0] != '\0' ? "  " : "", l->error);
		for (n = 0, used = 0; text[n] != '\0'; n++) {
			if (((unsigned char)text[n] & 0xc0) == 0x80)
				continue;	/* the rest of a UTF-8 character */
			if (used++ == cols)
				break;
		}
		printf("\r\033[K%.*s\n", (int)n, text);
		free(text);
	}
	w->drawn = w->nlines;
	if (!ferror(stdout))
		fflush(stdout);
}

/*
 * Commits what the scheduler has changed, then writes the progress it
 * reported: -1 if the commit failed (the run is then dropped, see
 * sched_commit).
 */
static int
run_output(struct run_watch *w)
{
	int rc = sched_commit(w->rt.sched);

	/* Changes the commit lost were never the run's. */
	if (rc != 0)
		ap_buf_reset(&w->pending);
	/* A write a signal cut (the output blocked) is not tried again: it
	 * would block again, the signal already taken (see run_signal_new). */
	if (!w->headed || ferror(stdout))
		return rc;
	if (w->pending.len > 0) {
		fwrite(w->pending.data, 1, w->pending.len, stdout);
		ap_buf_reset(&w->pending);
		if (!ferror(stdout))
			fflush(stdout);
	}
	if (w->redraw && !ferror(stdout)) {
		w->redraw = false;
		draw(w);
	}
	return rc;
}

static void
run_output_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)run_output(arg);
}

static void
run_tick(evutil_socket_t fd, short what, void *arg)
{
	struct run_watch *w = arg;

	(void)fd;
	(void)what;
	w->redraw = true;
	(void)run_output(w);
}

/* Whether the run is driven here again, or given up (then the loop ends);
 * asked every second while it is not. */
static void
run_retake_cb(evutil_socket_t fd, short what, void *arg)
{
	static const struct timeval second = { 1, 0 };
	struct run_watch *w = arg;
	char *cause = NULL;

	(void)fd;
	(void)what;
	if (w->done || w->left || w->interrupted)
		return;
	if (!sched_driving(w->rt.sched, w->run_id)) {
		if (ap_mono_ms() - w->retake_since >= RUN_RETAKE_MS) {
			w->left = w->store_lost = true;
			event_base_loopexit(w->rt.base, NULL);
			return;
		}
		/* Not to be taken back by the scheduler (its load failed, or
		 * it gave up): taken here. */
		if (!sched_retaking(w->rt.sched, w->run_id) &&
		    sched_take(w->rt.sched, w->run_id, &cause) != 0) {
			if (!sched_retaking(w->rt.sched, w->run_id)) {
				/* Not a store error: finished or taken over. */
				free(cause);
				w->left = true;
				event_base_loopexit(w->rt.base, NULL);
				return;
			}
			free(w->store_error);
			w->store_error = cause;
		}
	}
	if (sched_driving(w->rt.sched, w->run_id)) {
		w->retake_since = 0;
		return;
	}
	evtimer_add(w->retake, &second);
}

/* The run is not driven here for now (why: the store error): waited for. */
static void
run_retake_wait(struct run_watch *w, const char *why)
{
	static const struct timeval second = { 1, 0 };

	if (w->retake_since == 0)
		w->retake_since = ap_mono_ms();
	if (why != NULL) {
		free(w->store_error);
		w->store_error = ap_xstrdup(why);
	}
	if (w->retake == NULL)
		w->retake = evtimer_new(w->rt.base, run_retake_cb, w);
	if (!evtimer_pending(w->retake, NULL))
		evtimer_add(w->retake, &second);
}

static void
run_observe(const struct sched_event *ev, void *arg)
{
	struct run_watch *w = arg;
	struct run_line *l;
	char ts[32], *error = NULL;

	/* Events of the run may come while sched_submit() creates it, before
	 * its id is known here; this process drives no other run. */
	if (w->run_id != NULL && strcmp(ev->run_id, w->run_id) != 0)
		return;
	if (ev->agent == NULL) {
		/* Dropped to be taken back (the scheduler's warning says so):
		 * the run goes on, here again in a few seconds. */
		if (ev->old_state != NULL && strcmp(ev->old_state,
		    ev->new_state) == 0 && sched_retaking(w->rt.sched, ev->run_id)) {
			run_retake_wait(w, ev->error);
			return;
		}
		snprintf(w->run_state, sizeof w->run_state, "%s", ev->new_state);
		if (ev->error != NULL) {
			free(w->run_error);
			w->run_error = ap_term_text(ev->error);
		}
		if (ev->followed_by != NULL) {
			free(w->followed_by);
			w->followed_by = ap_xstrdup(ev->followed_by);
		}
		if (ev->old_state != NULL && strcmp(ev->old_state, ev->new_state) == 0)
			w->left = true;
		else {
			enum sched_run_state rs;

			w->done = sched_run_state_parse(ev->new_state, &rs) &&
			    sched_run_state_final(rs);
		}
		if (w->done || w->left)
			event_base_loopexit(w->rt.base, NULL);
		return;
	}
	/* Airflow's errors (import errors are tracebacks) are shown on one line,
	 * without the control characters they may carry. */
	if (ev->error != NULL)
		error = ap_term_text(ev->error);
	if ((l = line_of(w, ev->agent)) != NULL) {
		enum sched_agent_state as;

		snprintf(l->state, sizeof l->state, "%s", ev->new_state);
		if (ev->dag_run_id != NULL)
			snprintf(l->dag_run_id, sizeof l->dag_run_id, "%s", ev->dag_run_id);
		snprintf(l->error, sizeof l->error, "%s", error != NULL ? error : "");
		l->attempt = ev->attempt;
		if (l->started == 0 && strcmp(ev->new_state, "pending") != 0)
			l->started = ap_mono_ms();
		if (sched_agent_state_parse(ev->new_state, &as) && sched_agent_state_final(as))
			l->ended = ap_mono_ms();
		else
			l->ended = 0;
	}
	if (w->json)
		goto out;
	if (w->tty)
		w->redraw = true;
	else {
		ap_format_time(ap_wall_ms(), ts, sizeof ts);
		ap_buf_printf(&w->pending, "%s %s: %s -> %s (attempt %u%s%s)%s%s\n",
		    ts, ev->agent, ev->old_state != NULL ? ev->old_state : "new",
		    ev->new_state, ev->attempt, ev->dag_run_id != NULL ?
		    ", dag run " : "", ev->dag_run_id != NULL ? ev->dag_run_id : "",
		    error != NULL ? ": " : "", error != NULL ? error : "");
	}
	event_active(w->out, EV_TIMEOUT, 0);
out:
	free(error);
}

static void
run_alarm(int sig)
{
	(void)sig;
}

/* When a write cut by run_cut_writes()'s timer is given up (0: never).
 * Until then what must be said whole (the --json document, the last word
 * on standard error) is written again: a reader that is slow, not gone,
 * still gets it. */
static uint64_t run_cut_until;

/* Writes text whole to f, past interruptions until run_cut_until: 0, or
 * -1 if f failed or the time ran out. */
static int
run_say(FILE *f, const char *text)
{
	size_t len = strlen(text), done = 0;
	ssize_t n;

	if (fflush(f) != 0 || ferror(f))
		return -1;
	while (done < len) {
		n = write(fileno(f), text + done, len - done);
		if (n > 0) {
			done += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR && (run_cut_until == 0 ||
		    ap_mono_ms() < run_cut_until))
			continue;
		return -1;
	}
	return 0;
}

/*
 * From now on a write that blocks (standard output or error on a pipe
 * nobody reads, a paused terminal) is cut within a second, again and
 * again: once interrupted, `run` ends whatever its readers do, as a
 * service manager's stop expects.
 */
static void
run_cut_writes(void)
{
	static bool armed;
	struct sigaction sa;
	struct itimerval it = { { 1, 0 }, { 1, 0 } };

	if (armed)
		return;
	armed = true;
	run_cut_until = ap_mono_ms() + 5000;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = run_alarm;	/* no SA_RESTART: the write returns */
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGALRM, &sa, NULL) != 0)
		return;
	/* (Blocked by whoever started `run`, it would cut nothing.) */
	sigemptyset(&sa.sa_mask);
	sigaddset(&sa.sa_mask, SIGALRM);
	(void)sigprocmask(SIG_UNBLOCK, &sa.sa_mask, NULL);
	(void)setitimer(ITIMER_REAL, &it, NULL);
}

static void
run_signal(evutil_socket_t sig, short what, void *arg)
{
	struct run_watch *w = arg;

	(void)sig;
	(void)what;
	w->interrupted = true;
	w->signals++;
	run_cut_writes();
	event_base_loopexit(w->rt.base, NULL);
}

/*
 * The run is no longer driven here (replaced, or taken over): when it has
 * ended since, what the store says of it (who replaced it, or how the
 * other process finished it) becomes what is reported, and decides the
 * exit status.
 */
static void
run_left(struct run_watch *w)
{
	enum sched_run_state rs;
	const char *state, *error;
	json_t *doc = NULL;
	char *cause = NULL;

	if (store_run_json(w->rt.store, w->run_id, &doc, &cause) != STORE_OK) {
		free(cause);
		return;
	}
	state = json_string_value(json_object_get(doc, "state"));
	error = json_string_value(json_object_get(doc, "error"));
	if (state != NULL && sched_run_state_parse(state, &rs) &&
	    sched_run_state_final(rs)) {
		w->done = true;
		snprintf(w->run_state, sizeof w->run_state, "%s", state);
		free(w->run_error);
		w->run_error = error != NULL ? ap_term_text(error) : NULL;
	}
	json_decref(doc);
}

/*
 * Whether run run_id was asked for as this one is: the same entity and the
 * same agents (NULL: the whole plan), in any order.
 */
static bool
run_same(struct store *st, const char *run_id, const json_t *entity,
    const char *const *agents)
{
	struct store_run_row *row = NULL;
	struct store_agent_row *rows = NULL;
	unsigned nrows = 0, i, n = 0;
	json_t *stored = NULL, *list = NULL;
	char *text = NULL, *cause = NULL;
	bool same = false;
	size_t k;

	if (store_run_load(st, run_id, &row, &rows, &nrows, &cause) != STORE_OK ||
	    store_run_entity(st, run_id, &text, &cause) != STORE_OK)
		goto out;
	stored = json_loads(text, 0, NULL);
	if (stored == NULL || !json_equal(stored, entity))
		goto out;
	if (agents == NULL || row->agents_json == NULL) {
		same = agents == NULL && row->agents_json == NULL;
		goto out;
	}
	if ((list = json_loads(row->agents_json, 0, NULL)) == NULL)
		goto out;
	for (; agents[n] != NULL; n++) {
		for (k = 0; k < json_array_size(list); k++)
			if (ap_streq(json_string_value(json_array_get(list, k)),
			    agents[n]))
				break;
		if (k == json_array_size(list))
			goto out;
	}
	same = n == json_array_size(list);
out:
	for (i = 0; i < nrows; i++)
		store_agent_row_cleanup(&rows[i]);
	free(rows);
	store_run_row_free(row);
	json_decref(stored);
	json_decref(list);
	free(text);
	free(cause);
	return same;
}

/* ---- Airflow first: refuse to start a run nobody can drive. ---- */

struct probe {
	struct event_base *base;
	enum airflow_status status;
	long http_status;
	char *detail;
	bool done;
	bool interrupted;	/* SIGINT, SIGTERM or SIGHUP meanwhile */
};


static void
probe_done(const struct airflow_result *res, void *arg)
{
	struct probe *p = arg;

	p->status = res->status;
	p->http_status = res->error.http_status;
	if (res->status != AIRFLOW_OK)
		p->detail = airflow_result_text(NULL, res);
	p->done = true;
	event_base_loopexit(p->base, NULL);
}

/* A DAG id no deployment can have ('.' is outside the plugin's DAG id
 * characters): its GET answers 404 to good credentials, 401/403 to bad. */
#define PROBE_DAG_ID "autopilot.credentials-check"

/* Each pre-flight request's retries end this long after it was made. */
#define PROBE_BUDGET_MS 60000

static void
probe_signal(evutil_socket_t sig, short what, void *arg)
{
	struct probe *p = arg;

	(void)sig;
	(void)what;
	p->interrupted = true;
	event_base_loopexit(p->base, NULL);
}

/* A check that has had no answer this long says it still waits. */
#define PROBE_SLOW_MS 5000

static void
probe_slow(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	fprintf(stderr, "autopilot: run: checking Airflow at %s: no answer that"
	    " ends the check after %d s; still trying (for at most %d s)\n",
	    (const char *)arg, PROBE_SLOW_MS / 1000, PROBE_BUDGET_MS / 1000);
}

/* Waits for p's answer to q (to Airflow at url), or one of run_signals
 * (which drops the request: nothing is recorded yet). False when
 * interrupted. */
static bool
probe_run(struct ap_runtime *rt, struct probe *p, struct airflow_req *q,
    const char *url)
{
	struct timeval slow = { PROBE_SLOW_MS / 1000, 0 };
	struct event *sig[RUN_NSIGNALS], *note;
	size_t i;

	for (i = 0; i < RUN_NSIGNALS; i++)
		sig[i] = run_signal_new(rt->base, i, probe_signal, p);
	note = evtimer_new(rt->base, probe_slow, (void *)url);
	evtimer_add(note, &slow);
	while (!p->done && !p->interrupted)
		event_base_dispatch(rt->base);
	event_free(note);
	for (i = 0; i < RUN_NSIGNALS; i++)
		if (sig[i] != NULL)
			event_free(sig[i]);
	if (p->done)
		return true;
	airflow_client_ops()->cancel(rt->airflow, q);
	return false;
}

#define PROBE_INTERRUPTED "interrupted while checking Airflow: no run was recorded"

/* Airflow turned the credentials down (401/403): what to fix, as *cause. */
static bool
probe_refused(struct ap_runtime *rt, const struct config *cfg, struct probe *p,
    char **cause)
{
	struct airflow_stats st;

	if (p->status != AIRFLOW_REJECTED ||
	    (p->http_status != 401 && p->http_status != 403))
		return false;
	airflow_client_stats(rt->airflow, &st);
	if (st.login_refused) {
		/* Airflow 3's login refused: the client's words say it all
		 * already, with what to fix. */
		*cause = ap_xprintf("Airflow at %s: %s", cfg->airflow_url, p->detail);
		free(p->detail);
		return true;
	}
	*cause = ap_xprintf("Airflow at %s refused the credentials of user"
	    " '%s' (%s): check AUTOPILOT_AIRFLOW_USERNAME and"
	    " AUTOPILOT_AIRFLOW_PASSWORD (or airflow.username and"
	    " airflow.password_file)%s", cfg->airflow_url, cfg->airflow_username,
	    p->detail, cfg->airflow_password == NULL ? "; no password is set" : "");
	free(p->detail);
	return true;
}

/*
 * The pre-flight check: the plugin's authenticated health route, then one
 * request of Airflow's own API, so that wrong credentials (for either) are
 * a configuration error here rather than a run whose first agent fails
 * with 401.
 */
static int
probe_airflow(struct ap_runtime *rt, const struct config *cfg, char **cause)
{
	struct probe p = { rt->base, AIRFLOW_OK, 0, NULL, false, false };
	struct airflow_req *q;

	/* Retries (and a Retry-After) end after PROBE_BUDGET_MS: Airflow
	 * down is said in a minute, not after the client's whole budget. */
	q = airflow_health(rt->airflow, probe_done, &p);
	airflow_limit(rt->airflow, q, PROBE_BUDGET_MS);
	if (!probe_run(rt, &p, q, cfg->airflow_url)) {
		*cause = ap_xstrdup(PROBE_INTERRUPTED);
		return AP_EXIT_FAILED;
	}
	if (probe_refused(rt, cfg, &p, cause))
		return AP_EXIT_USAGE;
	if (p.status != AIRFLOW_OK) {
		/* Airflow answered that there is no such route: a setup to fix
		 * (the plugin, airflow.api, the URL's path), not an Airflow down. */
		const char *hint = "";

		if (p.status == AIRFLOW_NOT_FOUND)	/* the client may ask the first */
			hint = p.detail != NULL && strstr(p.detail, "installed") != NULL ?
			    " (and is airflow.api right for this Airflow, airflow.url's"
			    " path Airflow's?)" : " (is the OpenMetadata plugin installed,"
			    " airflow.api right for this Airflow, and airflow.url's path"
			    " Airflow's?)";
		*cause = ap_xprintf("Airflow at %s: health check of the OpenMetadata"
		    " plugin failed: %s%s", cfg->airflow_url, p.detail, hint);
		free(p.detail);
		return p.status == AIRFLOW_REJECTED || p.status == AIRFLOW_NOT_FOUND ?
		    AP_EXIT_USAGE : AP_EXIT_UNREACHABLE;
	}

	memset(&p, 0, sizeof p);
	p.base = rt->base;
	q = airflow_client_ops()->get_dag(rt->airflow, PROBE_DAG_ID, probe_done, &p);
	airflow_limit(rt->airflow, q, PROBE_BUDGET_MS);
	if (!probe_run(rt, &p, q, cfg->airflow_url)) {
		*cause = ap_xstrdup(PROBE_INTERRUPTED);
		return AP_EXIT_FAILED;
	}
	if (p.status == AIRFLOW_OK || p.status == AIRFLOW_NOT_FOUND) {
		free(p.detail);
		return AP_EXIT_OK;
	}
	if (probe_refused(rt, cfg, &p, cause))
		return AP_EXIT_USAGE;
	*cause = ap_xprintf("Airflow at %s: GET of DAG %s failed: %s", cfg->airflow_url,
	    PROBE_DAG_ID, p.detail);
	free(p.detail);
	return p.status == AIRFLOW_UNAVAILABLE ? AP_EXIT_UNREACHABLE : AP_EXIT_USAGE;
}

/* ---- The command. ---- */

/* A service of a type autopilot acts on. */
static int
check_kind(const char *fqn, const char *type, char **cause)
{
	if (plan_service_kind(type) != NULL)
		return AP_EXIT_OK;
	*cause = ap_xprintf("'%s' is a %s, which autopilot does not act on", fqn,
	    type);
	return AP_EXIT_USAGE;
}

/*
 * A --service-json entity must be the service named on the command line:
 * the run is recorded under SERVICE_FQN, the DAGs are named after the
 * entity's own name.
 */
static int
check_entity_name(const char *json_file, const json_t *entity, const char *fqn,
    char **cause)
{
	const char *key = "fullyQualifiedName";
	const char *name = json_string_value(json_object_get(entity, key));

	if (name == NULL) {
		key = "name";
		name = json_string_value(json_object_get(entity, key));
	}
	if (name == NULL || strcmp(name, fqn) == 0)
		return AP_EXIT_OK;	/* no name: plan_expand() says so */
	*cause = ap_xprintf("%s: the entity's %s is '%s', but SERVICE_FQN is '%s':"
	    " give the service's own entity, or run '%s'", json_file, key, name, fqn,
	    name);
	return AP_EXIT_USAGE;
}

/*
 * Plans the service as the scheduler will, before a run exists: a service
 * that cannot be planned, or an --agents entry outside its plan (disabled
 * in "agents", or not applicable to its kind), is an input error now
 * rather than a run that fails at once.
 */
static int
check_plan(const struct plan *plan, const char *type, const char *fqn,
    const json_t *entity, const char *const *names, char **cause)
{
	char *why = NULL;
	int bad;

	if (plan_check_agents(plan, type, fqn, entity, names, &bad, &why) == 0)
		return AP_EXIT_OK;
	*cause = bad >= 0 ? ap_xprintf("--agents: %s", why) : ap_xstrdup(why);
	free(why);
	return AP_EXIT_USAGE;
}

/* --agents A,B,...: names, white space around each ignored; an empty one
 * ("metadata,,profiler", a final ',') is refused, not skipped. */
static int
split_agents(char *list, const char **names, char **cause)
{
	enum pipeline_agent agent;
	char *tok, *rest = list, *end;
	unsigned n = 0;

	if (strspn(list, ", \t") == strlen(list)) {
		*cause = ap_xstrdup("--agents: give a comma-separated list of agents");
		return -1;
	}
	while ((tok = strsep(&rest, ",")) != NULL) {
		while (isspace((unsigned char)*tok))
			tok++;
		end = tok + strlen(tok);
		while (end > tok && isspace((unsigned char)end[-1]))
			*--end = '\0';
		if (*tok == '\0') {
			*cause = ap_xprintf("--agents: agent %u of the list is empty (a"
			    " ',' too many?)", n + 1);
			return -1;
		}
		if (!pipeline_agent_parse(tok, &agent)) {
			char *known = plan_agent_names();

			*cause = ap_xprintf("--agents: unknown agent '%s' (agents: %s)", tok,
			    known);
			free(known);
			return -1;
		}
		if (n == RUN_MAX_AGENTS) {
			*cause = ap_xstrdup("--agents: too many agents");
			return -1;
		}
		names[n++] = tok;
	}
	if (n == 0) {
		*cause = ap_xstrdup("--agents: give a comma-separated list of agents");
		return -1;
	}
	names[n] = NULL;
	return 0;
}

/* Airflow runs no agent follows any more (a replaced run's, an agent's gone
 * from the plan) are being marked failed: before the process ends (with
 * --no-wait, at once), the run is handed over (sched_stop) and only that is
 * waited for, at most HALT_WAIT_MS. */
static void
halts_guard(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
}

/* False when an Airflow run of a replaced run was not marked failed (the
 * scheduler has said which, and why). */
static bool
halts_wait(struct run_watch *w)
{
	struct timeval tv = { HALT_WAIT_MS / 1000, 0 };
	struct event *guard;
	unsigned signals = w->signals;

	if (sched_halts_pending(w->rt.sched) == 0)
		return sched_halts_failed(w->rt.sched) == 0;
	sched_stop(w->rt.sched);
	guard = evtimer_new(w->rt.base, halts_guard, NULL);
	evtimer_add(guard, &tv);
	/* A signal now (a second Ctrl-C) ends the wait too. */
	while (sched_halts_pending(w->rt.sched) > 0 && evtimer_pending(guard,
	    NULL) && w->signals == signals)
		event_base_loop(w->rt.base, EVLOOP_ONCE);
	event_free(guard);
	/* Out of time: what was not marked failed is said now, not at exit. */
	sched_halts_cancel(w->rt.sched);
	return sched_halts_failed(w->rt.sched) == 0;
}

/* A webhook event that joined the run asked for a run of its own, made in
 * the commit that ended this one (store_run_end): true when there is
 * one and it is stored. */
static bool
followup_stored(struct run_watch *w)
{
	json_t *doc = NULL;
	char *cause = NULL;

	if (w->followed_by == NULL || !w->done || w->left)
		return false;
	if (store_run_json(w->rt.store, w->followed_by, &doc, &cause) != STORE_OK) {
		free(cause);
		return false;
	}
	json_decref(doc);
	return true;
}

static int
run_exec(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "type", required_argument, NULL, 't' },
		{ "service-json", required_argument, NULL, 'f' },
		{ "agents", required_argument, NULL, 'A' },
		{ "no-wait", no_argument, NULL, 'n' },
		{ "replace", no_argument, NULL, 'r' },
		{ "json", no_argument, NULL, 'j' },
		{ "airflow-url", required_argument, NULL, 'a' },
		{ "state", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	/* The webhook's and the admin API's secrets are serve's. */
	struct config_flags flags = { .skip_secrets = CONFIG_SECRET_WEBHOOK |
	    CONFIG_SECRET_ADMIN };
	struct run_watch w;
	struct config cfg;
	const char *path = NULL, *fqn, *json_file = NULL;
	const char *names[RUN_MAX_AGENTS + 1];
	char *type = NULL, *agents_arg = NULL, *cause = NULL, *run_id = NULL, *text,
	    *origin, *doc_text;
	bool no_wait = false, replace = false, restricted = false, resumable = false;
	bool followed = false, fresh, out_cut = false;
	struct timeval second = { 1, 0 };
	json_t *entity = NULL, *doc = NULL;
	enum store_result r;
	int c, rc = AP_EXIT_USAGE;
	size_t i;

	memset(&w, 0, sizeof w);
	for (i = 0; i < RUN_NSIGNALS; i++) {
		struct sigaction sa;

		run_signal_ignored[i] = sigaction(run_signals[i], NULL, &sa) == 0 &&
		    sa.sa_handler == SIG_IGN;
	}
	config_init(&cfg);
	optind = 1;
	opterr = 1;
	while ((c = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'c': path = optarg; break;
		case 't':
			/* Given twice, a value is not dropped without a word. */
			if (type != NULL && strcmp(type, optarg) != 0) {
				fprintf(stderr, "autopilot: run: --type given twice"
				    " (%s, %s): give one\n", type, optarg);
				goto out;
			}
			free(type);
			type = ap_xstrdup(optarg);
			break;
		case 'f':
			if (json_file != NULL && strcmp(json_file, optarg) != 0) {
				fprintf(stderr, "autopilot: run: --service-json given"
				    " twice (%s, %s): give one\n", json_file, optarg);
				goto out;
			}
			json_file = optarg;
			break;
		case 'A':
			/* Each --agents adds to the list (one named twice is
			 * refused with the list). */
			text = agents_arg;
			agents_arg = text != NULL ? ap_xprintf("%s,%s", text,
			    optarg) : ap_xstrdup(optarg);
			free(text);
			break;
		case 'n': no_wait = true; break;
		case 'r': replace = true; break;
		case 'j': w.json = true; break;
		case 'a': flags.airflow_url = optarg; break;
		case 's': flags.state = optarg; break;
		case 'h':
			ap_cmd_print_help(&ap_cmd_run_entry, stdout);
			rc = AP_EXIT_OK;
			goto out;
		default:
			fprintf(stderr, "usage: autopilot run %s\n", ap_cmd_run_entry.usage);
			goto out;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "autopilot: run: %s\nusage: autopilot run %s\n",
		    optind >= argc ? "give the service's fully qualified name" :
		    "one service at a time", ap_cmd_run_entry.usage);
		goto out;
	}
	fqn = argv[optind];
	if (fqn[0] == '\0') {
		fprintf(stderr, "autopilot: run: SERVICE_FQN is empty: give the"
		    " service's fully qualified name\n");
		goto out;
	}
	if (strlen(fqn) > WEBHOOK_MAX_FQN) {
		/* As the webhook and the re-run endpoint refuse such a name. */
		fprintf(stderr, "autopilot: run: SERVICE_FQN is longer than %d"
		    " characters, which no service OpenMetadata sends has\n",
		    WEBHOOK_MAX_FQN);
		goto out;
	}
	if (!ap_utf8_valid(fqn, strlen(fqn))) {
		fprintf(stderr, "autopilot: run: SERVICE_FQN is not UTF-8 text, as"
		    " OpenMetadata's names are\n");
		goto out;
	}
	if (type != NULL && plan_service_kind(type) == NULL) {
		fprintf(stderr, "autopilot: run: --type: '%s' is not a service type"
		    " autopilot acts on (databaseService, dashboardService,"
		    " messagingService, pipelineService, mlmodelService,"
		    " metadataService, storageService, searchService, apiService)\n", type);
		goto out;
	}
	if (agents_arg != NULL && split_agents(agents_arg, names, &cause) < 0) {
		fprintf(stderr, "autopilot: run: %s\n", cause);
		goto out;
	}
	restricted = agents_arg != NULL;
	if (json_file != NULL && strcmp(json_file, "-") == 0 && ((path != NULL &&
	    strcmp(path, "-") == 0) || (path == NULL && getenv("AUTOPILOT_CONFIG") !=
	    NULL && strcmp(getenv("AUTOPILOT_CONFIG"), "-") == 0))) {
		fprintf(stderr, "autopilot: run: -c - and --service-json - both read"
		    " standard input: give one of them a file\n");
		goto out;
	}
	if (config_load(&cfg, path, &flags, &cause) < 0 ||
	    ap_cmd_check_airflow(&cfg, &cause) < 0) {
		fprintf(stderr, "autopilot: %s\n", cause);
		goto out;
	}
	/* Progress goes to stdout; log lines (warnings) to stderr: info says
	 * what the progress lines say, but debug (Airflow's requests) is
	 * asked for. */
	ap_log_setup(cfg.log_level > AP_LOG_WARN || cfg.log_level == AP_LOG_DEBUG ?
	    cfg.log_level : AP_LOG_WARN, cfg.log_format);
	/* An entity given as a file is checked before the state database is
	 * opened (or created): bad input leaves nothing behind. */
	if (json_file != NULL && ((rc = find_entity(&cfg, NULL, fqn, json_file,
	    &type, &entity, &cause)) != AP_EXIT_OK || (rc = check_kind(fqn, type,
	    &cause)) != AP_EXIT_OK || (rc = check_entity_name(json_file, entity,
	    fqn, &cause)) != AP_EXIT_OK)) {
		fprintf(stderr, "autopilot: run: %s\n", cause);
		goto out;
	}
	fresh = access(cfg.state_path, F_OK) != 0 && errno == ENOENT;
	if ((rc = ap_runtime_open(&w.rt, &cfg, &cause)) != AP_EXIT_OK) {
		fprintf(stderr, "autopilot: run: %s\n", cause);
		goto out;
	}
	/* A database of its own sees no run a serve drives elsewhere: said,
	 * since the active run of the service would go unseen. */
	if (fresh)
		fprintf(stderr, "autopilot: run: note: state database %s did not"
		    " exist and was created: the runs of a serve using another one"
		    " are not seen here (state.path, AUTOPILOT_STATE or --state name"
		    " it)\n", cfg.state_path);
	if (json_file == NULL && ((rc = find_entity(&cfg, w.rt.store, fqn, NULL,
	    &type, &entity, &cause)) != AP_EXIT_OK || (rc = check_kind(fqn, type,
	    &cause)) != AP_EXIT_OK)) {
		fprintf(stderr, "autopilot: run: %s\n", cause);
		goto out;
	}
	if ((rc = check_plan(w.rt.plan, type, fqn, entity, restricted ? names : NULL,
	    &cause)) != AP_EXIT_OK) {
		fprintf(stderr, "autopilot: run: %s\n", cause);
		goto out;
	}
	/* With --no-wait a serve process drives the run, with its own Airflow
	 * settings: nothing here talks to Airflow. */
	if (!no_wait && (rc = probe_airflow(&w.rt, &cfg, &cause)) != AP_EXIT_OK) {
		fprintf(stderr, "autopilot: run: %s\n", cause);
		goto out;
	}
	if (sched_start(w.rt.sched, false, &cause) < 0) {
		fprintf(stderr, "autopilot: run: state store: %s\n", cause);
		rc = AP_EXIT_UNREACHABLE;
		goto out;
	}
	w.out = event_new(w.rt.base, -1, 0, run_output_cb, &w);
	sched_set_observer(w.rt.sched, run_observe, &w);
	w.tty = !w.json && isatty(STDOUT_FILENO);
	origin = ap_xprintf("autopilot run%s%s, process %s", no_wait ?
	    " --no-wait" : "", replace ? " --replace" : "",
	    store_owner(w.rt.store));
	r = (no_wait ? sched_record : sched_submit)(w.rt.sched, type, fqn, entity,
	    restricted ? names : NULL, replace, origin, &run_id, &cause);
	free(origin);
	if (r == STORE_ACTIVE && store_run_orphaned(w.rt.store, run_id) &&
	    !(resumable = !no_wait && run_same(w.rt.store, run_id, entity,
	    restricted ? names : NULL))) {
		fprintf(stderr, "autopilot: run: %s %s already has an unfinished run"
		    " %s that no process is driving now (interrupted, left to serve"
		    " by --no-wait, or its process ended)%s; `autopilot serve` on"
		    " this state database takes it up, or give --replace to fail it"
		    " and start again\n", type, fqn, run_id, no_wait ? "" :
		    ", for other agents or another entity of the service than"
		    " this one");
		rc = AP_EXIT_USAGE;
		goto out;
	}
	/* The same run, unfinished and driven by no process: it goes on here
	 * (its Airflow runs adopted by their dag_run_id), unless another
	 * process has just taken it. */
	if (r == STORE_ACTIVE && resumable) {
		free(cause);
		cause = NULL;
		if (sched_take(w.rt.sched, run_id, &cause) == 0 &&
		    sched_driving(w.rt.sched, run_id)) {
			fprintf(stderr, "autopilot: run: resuming run %s of %s %s,"
			    " unfinished and driven by no process (give --replace"
			    " to fail it and start again)\n", run_id, type, fqn);
			r = STORE_OK;
		}
	}
	if (r == STORE_ACTIVE) {
		json_t *active = NULL;
		const char *by;

		free(cause);
		cause = NULL;
		if (store_run_json(w.rt.store, run_id, &active, &cause) != STORE_OK) {
			free(cause);
			cause = NULL;
		}
		by = json_string_value(json_object_get(active, "driven_by"));
		fprintf(stderr, "autopilot: run: %s %s already has an active run %s%s%s%s;"
		    " wait for it to end, or give --replace to fail it and start"
		    " again\n", type, fqn, run_id, by != NULL ? " (driven by " : "",
		    by != NULL ? by : "", by != NULL ? ")" : "");
		json_decref(active);
		rc = AP_EXIT_USAGE;
		goto out;
	}
	if (r != STORE_OK) {
		fprintf(stderr, "autopilot: run: state store: %s\n", cause);
		rc = AP_EXIT_UNREACHABLE;
		goto out;
	}
	w.run_id = run_id;
	/* Recorded, but not taken up here yet (a store error): waited for. */
	if (!no_wait && !sched_driving(w.rt.sched, run_id))
		run_retake_wait(&w, NULL);
	if (run_output(&w) != 0) {
		fprintf(stderr, "autopilot: run: state store: run %s could not be"
		    " started here; `autopilot serve` on this state database takes"
		    " it up\n", run_id);
		/* The replace is durable: its PATCHes still get their time. */
		halts_wait(&w);
		rc = AP_EXIT_UNREACHABLE;
		goto out;
	}
	if (no_wait) {
		if (w.json) {
			json_t *o = json_pack("{s:s}", "run_id", run_id);
			char *line = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;

			if (line == NULL)
				ap_fatal("out of memory");
			printf("%s\n", line);
			free(line);
			json_decref(o);
		} else
			printf("run %s: %s %s submitted; `autopilot serve` on %s takes"
			    " it up (when one runs there)\n", run_id, type, fqn,
			    cfg.state_path);
		if (flags.airflow_url != NULL && !replace)
			fprintf(stderr, "autopilot: run: warning: --airflow-url is not"
			    " used with --no-wait but for --replace: the serve that"
			    " drives the run uses its own airflow.url\n");
		fflush(stdout);
		rc = AP_EXIT_OK;
		if (!halts_wait(&w)) {
			fprintf(stderr, "autopilot: run: the replaced run's Airflow runs"
			    " could not all be marked failed at %s (said above); they go"
			    " on beside run %s\n", cfg.airflow_url, run_id);
			rc = AP_EXIT_UNREACHABLE;
		}
		goto out;
	}
	if (!w.json)
		printf("run %s: %s %s (Airflow %s)\n", run_id, type, fqn, cfg.airflow_url);
	fflush(stdout);
	/* What the run did meanwhile (it may have ended already) comes next. */
	w.headed = true;
	w.redraw = w.tty;
	event_active(w.out, EV_TIMEOUT, 0);
	if (w.tty) {
		w.tick = event_new(w.rt.base, -1, EV_PERSIST, run_tick, &w);
		evtimer_add(w.tick, &second);
	}
	for (i = 0; i < RUN_NSIGNALS; i++)
		w.sig[i] = run_signal_new(w.rt.base, i, run_signal, &w);
	while (!w.done && !w.left && !w.interrupted)
		event_base_dispatch(w.rt.base);
	/* A standard output a signal cut a write to gets nothing more: it
	 * would block again. What there is to say goes to standard error,
	 * whose writes are cut too if they block. */
	if (ferror(stdout)) {
		out_cut = true;
		w.headed = w.tty = false;
		run_cut_writes();
	}
	if (w.retake != NULL)
		evtimer_del(w.retake);
	if (w.store_lost && !w.done) {
		/* Handed over first: the store may name no process for it. */
		sched_stop(w.rt.sched);
		fprintf(stderr, "autopilot: run: state store: run %s could not be"
		    " driven here for %d s (%s); `autopilot serve` on this state"
		    " database resumes it, or this `run` given again\n", run_id,
		    RUN_RETAKE_MS / 1000, w.store_error != NULL ? w.store_error :
		    "state store error");
		rc = AP_EXIT_UNREACHABLE;
		goto out;
	}
	/* What is reported (and the exit status) is what the store holds. */
	if (run_output(&w) != 0 && !w.interrupted) {
		fprintf(stderr, "autopilot: run: state store: the state of run %s"
		    " could not be recorded; `autopilot serve` on this state"
		    " database resumes it\n", run_id);
		rc = AP_EXIT_UNREACHABLE;
		goto out;
	}
	if (w.tty)
		draw(&w);
	if (w.left)
		run_left(&w);
	/* Airflow runs being marked failed (a replaced run's, or an agent's
	 * gone from the plan) are given their time before the process ends. */
	halts_wait(&w);

	if (w.interrupted) {
		/* Handed over before anything is said or printed of it (the
		 * document then names no process holding it); another process
		 * may have ended it meanwhile (replaced it). */
		sched_stop(w.rt.sched);
		run_left(&w);
		text = w.done ? ap_xprintf("autopilot: run: interrupted; run %s"
		    " had ended meanwhile: %s%s%s\n", run_id, w.run_state,
		    w.run_error != NULL ? ": " : "", w.run_error != NULL ?
		    w.run_error : "") : ap_xprintf("autopilot: run: interrupted;"
		    " run %s is unfinished and resumes under `autopilot serve` on"
		    " the same state database, or when this `run` is given"
		    " again\n", run_id);
		(void)run_say(stderr, text);
		free(text);
	}
	/* --json promises one document, also when interrupted: the run as
	 * stored (unfinished, or ended by another process meanwhile). */
	followed = followup_stored(&w);
	if (w.json && !out_cut) {
		if (store_run_json(w.rt.store, run_id, &doc, &cause) != STORE_OK) {
			fprintf(stderr, "autopilot: run: state store: %s\n", cause);
			rc = AP_EXIT_UNREACHABLE;
			goto out;
		}
		json_object_set_new(doc, "followed_by", followed ?
		    json_string(w.followed_by) : json_null());
		text = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		if (text == NULL)
			ap_fatal("out of memory");
		doc_text = ap_xprintf("%s\n", text);
		(void)run_say(stdout, doc_text);
		free(doc_text);
		free(text);
	} else if (!w.interrupted && w.left && w.done)
		printf("run %s: no longer driven here: %s%s%s\n", run_id, w.run_state,
		    w.run_error != NULL ? ": " : "", w.run_error != NULL ?
		    w.run_error : "");
	else if (!w.interrupted)
		printf("run %s: %s%s%s\n", run_id, w.left ? "no longer driven here" :
		    w.run_state, w.run_error != NULL ? ": " : "",
		    w.run_error != NULL ? w.run_error : "");
	rc = !w.interrupted && w.done && strcmp(w.run_state, "succeeded") == 0 ? AP_EXIT_OK :
	    AP_EXIT_FAILED;
	/* This process does not drive the run that follows: say so. */
	if (followed)
		fprintf(stderr, "autopilot: run: an event received while run %s ran"
		    " asks for a run of its own: run %s follows (`autopilot serve`"
		    " on this state database takes it up)\n", run_id, w.followed_by);
out:
	if (w.rt.sched != NULL)
		sched_set_observer(w.rt.sched, NULL, NULL);
	if (w.out != NULL)
		event_free(w.out);
	ap_buf_cleanup(&w.pending);
	if (w.tick != NULL)
		event_free(w.tick);
	if (w.retake != NULL)
		event_free(w.retake);
	free(w.store_error);
	for (i = 0; i < RUN_NSIGNALS; i++)
		if (w.sig[i] != NULL)
			event_free(w.sig[i]);
	if (w.rt.base != NULL)
		ap_runtime_close(&w.rt);
	json_decref(doc);
	json_decref(entity);
	free(w.run_error);
	free(w.followed_by);
	free(run_id);
	free(agents_arg);
	free(type);
	free(cause);
	config_cleanup(&cfg);
	return rc;
}

const struct ap_cmd_entry ap_cmd_run_entry = {
	"run",
	"[-c FILE] SERVICE_FQN [--type SERVICE_TYPE] [--service-json FILE]"
	" [--agents LIST] [--no-wait] [--replace] [--json] [--airflow-url URL]"
	" [--state PATH]",
	"Re-runs AutoPilot on an existing service: deploys its agents, triggers\n"
	"them in dependency order and follows them to a final state. The service\n"
	"entity comes from --service-json, else from the state store (the entity\n"
	"last received for it), else from OpenMetadata's API\n"
	"(AUTOPILOT_OPENMETADATA_URL, AUTOPILOT_OPENMETADATA_TOKEN).\n\n"
	"  -c, --config FILE        configuration file (default: $AUTOPILOT_CONFIG)\n"
	"      --type TYPE          OpenMetadata entity type, e.g. databaseService\n"
	"                           (default: from the entity, the store or a lookup;\n"
	"                           must agree with a --service-json entity's href)\n"
	"      --service-json FILE  the service entity as OpenMetadata returns it, or\n"
	"                           a ChangeEvent carrying it\n"
	"      --agents LIST        only these agents, e.g. metadata,profiler\n"
	"      --no-wait            record the run and return, without contacting\n"
	"                           Airflow; `autopilot serve` on the same state\n"
	"                           database drives it\n"
	"      --replace            fail the service's active run and start again\n"
	"                           (without it, an unfinished run of the same\n"
	"                           entity and agents that no process drives is\n"
	"                           resumed)\n"
	"      --json               print one JSON document at the end instead of\n"
	"                           progress: one run object, as in the list\n"
	"                           `status --json` prints ({\"run_id\"} with\n"
	"                           --no-wait)\n"
	"      --airflow-url URL    Airflow's base URL\n"
	"      --state PATH         state database (default: AUTOPILOT_STATE,\n"
	"                           else state.path, else autopilot.db)\n\n"
	"On a terminal, one line per agent (state, elapsed time, Airflow run id)\n"
	"updated in place; otherwise one line per change.\n\n"
	"Exit status: 0 every agent succeeded (or was skipped as unsupported);\n"
	"1 an agent failed, timed out or was lost, or the run was interrupted\n"
	"(or standard output could not be written);\n"
	"2 usage, configuration or input error, or the service has an active run;\n"
	"3 Airflow, OpenMetadata or the state store could not be reached.\n",
	run_exec,
};
