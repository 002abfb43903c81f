/*
 * retention.c — deletes old runs and events in small transactions on the
 * loop, so requests and runs go on between them.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include <event2/event.h>

#include "log.h"
#include "retention.h"
#include "store.h"
#include "util.h"

/* Runs (and events) per transaction: a few milliseconds each. */
#define RETENTION_BATCH 64
/* Between two batches the loop is left to the rest for this long. */
#define RETENTION_GAP_MS 10
/* The first pass, after the runs resumed at start are under way; then
 * every hour. */
#define RETENTION_FIRST_MS 2000
#define RETENTION_EVERY_MS (3600 * 1000)
/* A time this far past now was written under a clock since set back. */
#define RETENTION_AHEAD_MS (60 * 1000)

struct retention {
	struct store *store;
	struct event *ev;
	unsigned days;
	bool shutdown;
	/* The pass under way: its cutoff, where it is, what it deleted. */
	bool passing;
	int64_t before;
	uint64_t pass_runs, pass_events;
	char *held_by;		/* the last batch's run with halts */
	int64_t held_until;	/* the latest time a look was held back at */
	uint64_t runs_total, events_total;
};

static void
retention_later(struct retention *r, unsigned ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	if (!r->shutdown)
		evtimer_add(r->ev, &tv);
}

static void
retention_cb(evutil_socket_t fd, short what, void *arg)
{
	struct retention *r = arg;
	struct store_pruned p;
	char *cause = NULL, when[40];

	(void)fd;
	(void)what;
	if (!r->passing) {
		r->passing = true;
		r->before = ap_wall_ms() - (int64_t)r->days * 86400 * 1000;
		r->pass_runs = r->pass_events = 0;
		r->held_until = 0;
	}
	if (store_prune(r->store, r->before, RETENTION_BATCH, &p, &cause) !=
	    STORE_OK) {
		ap_warn("retention: %s; tried again in an hour", cause);
		free(cause);
		r->passing = false;
		retention_later(r, RETENTION_EVERY_MS);
		return;
	}
	r->pass_runs += p.runs;
	r->pass_events += p.events;
	r->runs_total += p.runs;
	r->events_total += p.events;
	free(r->held_by);
	r->held_by = p.held_by;
	if (p.held_until > r->held_until)
		r->held_until = p.held_until;
	if (p.more) {
		retention_later(r, RETENTION_GAP_MS);
		return;
	}
	r->passing = false;
	if (r->held_by != NULL)
		ap_log_about(AP_LOG_WARN, &(struct ap_log_about){ .run_id =
		    r->held_by }, "retention: run %s and those after it are kept"
		    " until its Airflow runs are marked failed"
		    " (autopilot_airflow_runs_to_fail)", r->held_by);
	if (r->held_until > ap_wall_ms() + RETENTION_AHEAD_MS) {
		ap_format_time(r->held_until, when, sizeof when);
		ap_warn("retention: a run ended or an event came at %s, later than"
		    " now (was the clock set back?): it and those after it are kept"
		    " until then, and %u days more", when, r->days);
	}
	if (r->pass_runs > 0 || r->pass_events > 0) {
		ap_format_time(r->before, when, sizeof when);
		ap_info("retention: deleted %llu runs and %llu events older than"
		    " %s (state.retention_days %u)",
		    (unsigned long long)r->pass_runs,
		    (unsigned long long)r->pass_events, when, r->days);
	}
	retention_later(r, RETENTION_EVERY_MS);
}

struct retention *
retention_create(struct event_base *base, struct store *store, unsigned days)
{
	struct retention *r = ap_xcalloc(1, sizeof *r);

	r->store = store;
	r->days = days;
	if (days > 0) {
		r->ev = evtimer_new(base, retention_cb, r);
		retention_later(r, RETENTION_FIRST_MS);
	}
	return r;
}

void
retention_stop(struct retention *r)
{
	r->shutdown = true;
	if (r->ev != NULL)
		evtimer_del(r->ev);
}

void
retention_free(struct retention *r)
{
	if (r == NULL)
		return;
	if (r->ev != NULL)
		event_free(r->ev);
	free(r->held_by);
	free(r);
}

void
retention_metrics(struct ap_buf *out, const struct retention *r)
{
	ap_buf_printf(out, "# HELP autopilot_retention_runs_deleted_total Runs"
	    " deleted by state.retention_days.\n"
	    "# TYPE autopilot_retention_runs_deleted_total counter\n"
	    "autopilot_retention_runs_deleted_total %llu\n"
	    "# HELP autopilot_retention_events_deleted_total Accepted events"
	    " deleted from the inbox by state.retention_days.\n"
	    "# TYPE autopilot_retention_events_deleted_total counter\n"
	    "autopilot_retention_events_deleted_total %llu\n",
	    (unsigned long long)r->runs_total,
	    (unsigned long long)r->events_total);
}
