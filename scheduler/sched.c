/*
 * sched.c — the run and agent state machines and their executor on the
 * caller's libevent loop.
 *
 * Each agent of a run is a small struct with one timer and at most one
 * Airflow request outstanding; what it does next is decided in one switch
 * (sched_agent_act) from its state and its pending action. Every state
 * change goes through sched_agent_set_state() / sched_run_set_state(), which
 * check the transition table, log old -> new, commit to the store and only
 * then run the on-enter action. A crash between any two steps therefore
 * leaves a persisted state from which sched_run_load() resumes: the one step
 * that may or may not have reached Airflow (a trigger) is repeated with the
 * same deterministic dag_run_id, and Airflow's 409 makes the client adopt
 * the existing run instead of starting a second one.
 *
 * Runs and agents are never freed inside their own callbacks: a finished or
 * abandoned run is marked dead, its timers and requests cancelled, and freed
 * by the reaper event on a later loop turn.
 *
 * Depends on libevent, the store, the airflow_ops table and the planner
 * table; no libcurl, no SQL.
 */
#include "sched.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/event.h>

#include "log.h"
#include "util.h"

/* Runs waiting for a slot beyond which a taken run waits for admission
 * (max_agents_in_flight, at least this), and runs admitted per loop turn. */
#define SCHED_ADMIT_AHEAD_MIN 16
#define SCHED_ADMIT_PER_TURN 64

/* What an agent's timer or callback does next, within its state. */
enum sched_act {
	ACT_NONE,
	ACT_START,	/* retry backoff over: become ready */
	ACT_DEPLOY,
	ACT_UNPAUSE,	/* waiting for the DAG: unpausing it answers 404 until parsed */
	ACT_GET_DAG,	/* ... and for one with import errors to be parsed again */
	ACT_TRIGGER,
	ACT_GET_RUN,
	ACT_FAIL_RUN,	/* timed out: fail the Airflow run, then TIMED_OUT */
	ACT_LAST_LOOK,	/* timed out: GET the run once more before failing it */
	ACT_ADOPT,	/* the trigger's 2xx answer was unreadable: GET the run */
	ACT_MAX
};

static const char *const sched_act_names[ACT_MAX] = {
	"none", "start", "deploy", "unpause", "get_dag", "trigger", "get_run",
	"fail_run", "get_run", "get_run"
};

/* "Airflow unavailable" answers past an agent's deadline retried (with the
 * usual backoff), for the last look and for the PATCH each, before it goes
 * on without the answer. */
#define SCHED_LATE_TRIES 3

/* The last look and the PATCH past the deadline each have
 * sched_config.late_budget_ms (30 s), every try with its client retries,
 * Retry-After and breaker waits included (and an attempt Airflow does not
 * answer): an Airflow that answers neither leaves the agent's end about
 * twice that after its timeout. A try is made with at least this share of
 * the budget left. */
#define SCHED_LATE_MIN_TRY_DIV 30

/* How the notes about a tracked run's polls begin (cleared once the run
 * reads queued or running again). */
#define NOTE_UNREADABLE "reading the Airflow run failed (looking again)"
#define NOTE_UNKNOWN_STATE "Airflow reports run "
/* ... and how a note that Airflow does not answer begins (cleared by the
 * first answer). */
#define NOTE_UNREACHABLE "Airflow unreachable during "
/* How the error of an attempt that ended with no run in Airflow names its
 * dag_run_id (sched_agent_unseen()): read back when a run is loaded. */
#define NOTE_NO_RUN "Airflow has no run "
/* ... and said of a later attempt that failed before its trigger, which
 * passes that dag_run_id on in turn (sched_agent_unseen_resumed()). */
#define NOTE_REUSE "the next attempt triggers as "
/* A DAG waited for whose answer could not be used (looked at again). */
#define NOTE_DAG_UNREADABLE "the DAG's answer could not be used (looking" \
	" again): "
/* While a DAG answers 404, how often Airflow's import errors are looked at. */
#define IMPORT_LOOK_EVERY_MS 30000

struct sched_run;

struct sched_agent {
	struct sched_run *run;
	unsigned idx;
	enum sched_agent_state state;
	enum sched_act act;
	unsigned attempt;
	unsigned streak;	/* consecutive "Airflow unavailable" answers */
	unsigned late_tries;	/* of them for this request past the deadline */
	int64_t late_until;	/* when that request's tries end (sched_now) */
	int64_t req_sent;	/* when req was made (sched_now) */
	unsigned poll_ms;
	char *dag_id;
	char *dag_run_id;
	char *error;
	char *deadline_note;	/* error when the timeout came ("" none) */
	/* Why this attempt looks its run up (ACT_ADOPT): how a trigger sent
	 * again was refused (trigger_refused_after()), or NULL: the trigger's
	 * answer could not be read. */
	char *adopt_why;
	int64_t started_at, finished_at, next_at;
	int64_t parse_deadline;
	/* When this attempt's DAG file was written (its deploy answered; for
	 * one resumed while waiting for it, the resume), the 404s since, when
	 * Airflow's import errors were last looked at with one of them
	 * (agent_import_look()), and the stamp of the file's error first seen
	 * since the write, which one stamped later confirms. */
	int64_t deploy_done;
	unsigned n404;
	int64_t import_looked;
	int64_t import_seen;
	/* For a DAG Airflow has, shown with import errors: the latest stamp
	 * seen (the first look's, at first), and how many later ones came
	 * (agent_import_confirmed()). */
	int64_t import_last;
	unsigned import_later;
	struct event *timer;
	struct airflow_req *req;
	bool in_flight;		/* holds one of max_agents_in_flight */
	bool ready;		/* prerequisites done, waiting for a slot */
	bool retry_wait;	/* pending until next_at (retry backoff) */
	bool skip_ok;		/* skipped as unsupported: counts as success */
	bool waiting_flush;	/* on s->flush_waiters */
	bool stored;		/* its row was saved (store_agent_row.stored) */
	bool run_seen;		/* Airflow answered with this attempt's run */
	bool trigger_sent;	/* this attempt's trigger was sent (once) */
	bool trigger_fenced;	/* ... and its next send passed the fence */
	/* A trigger with this dag_run_id before the one in flight may have
	 * reached Airflow: sent unanswered, before a restart, or by the
	 * attempt that passed the id on. */
	bool trigger_doubt;
	uint64_t saved_in;	/* the batch its row was last written into (0: none) */
	/* dag_run_id is of a failed attempt that Airflow has no run of
	 * although its trigger may have been sent: the next attempt keeps it
	 * and triggers with it (sched_agent_unseen()). */
	bool reuse_id;
	/* Deployed ahead, while its prerequisites run (scheduler.predeploy):
	 * its first attempt then starts at the wait for the parse. */
	struct airflow_req *pre_req;
	char *pre_dag_id;
	bool predeployed;
	bool pre_queued;	/* on s->pre_queue */
	int64_t predeployed_at;
	TAILQ_ENTRY(sched_agent) wait_link;
	TAILQ_ENTRY(sched_agent) pre_link;
};
TAILQ_HEAD(sched_agent_list, sched_agent);

struct sched_run {
	struct sched *s;
	char *run_id;
	char *service_type;
	char *fqn;
	enum sched_run_state state;
	bool dead;
	bool in_ring;
	bool advancing, advance_again;
	unsigned nagents;
	struct sched_plan_view plan;
	json_t *entity;			/* the service entity, parsed once (a run's is fixed) */
	struct sched_agent agents[SCHED_MAX_AGENTS];
	TAILQ_ENTRY(sched_run) link;		/* s->runs or s->dead */
	struct sched_run *hnext;		/* s->index chain (runs only) */
	uint32_t hash;
	TAILQ_ENTRY(sched_run) ring_link;	/* s->ring: runs with ready agents */
};
TAILQ_HEAD(sched_run_list, sched_run);

struct sched_retake {
	struct sched *s;
	struct event *ev;
	char *run_id;
	TAILQ_ENTRY(sched_retake) link;
};
TAILQ_HEAD(sched_retake_list, sched_retake);

/* Marks an Airflow run failed (PATCH) that no agent follows any more (of a
 * replaced run, of an agent gone from the plan, of a timed-out attempt whose
 * own PATCH failed), then logs; its row in the store's halts goes once it is
 * done, or says when to try again. */
struct sched_halt {
	struct sched *s;
	struct airflow_req *req;
	char *run_id, *dag_id, *dag_run_id;
	char *what;			/* why: "replaced", ... */
	uint64_t batch;			/* sent once this batch commits (0: sent) */
	int64_t tries;			/* tries that failed before this one */
	bool look_first;		/* GET the run first: PATCH it only if it
					 * is still queued or running */
	bool recheck;			/* never tried, and a trigger may still be
					 * on its way: a 404 is looked at again
					 * (sched_halt_not_yet()) */
	TAILQ_ENTRY(sched_halt) link;
};
TAILQ_HEAD(sched_halt_list, sched_halt);

/* Runs renewed that this process drives, and some it does not
 * (sched_lease_cb). */
#define SCHED_LEASE_ORPHANS 64
struct sched_lease_count {
	struct sched *s;
	unsigned driven;
	char *orphans[SCHED_LEASE_ORPHANS];
	unsigned norphans;
};

struct sched {
	struct event_base *base;
	struct store *store;
	const struct airflow_ops *ops;
	void *airflow;
	const struct sched_planner *planner;
	void *planner_impl;
	struct sched_config cfg;
	sched_observer_cb observer;
	void *observer_arg;
	struct sched_run_list runs;
	struct sched_run_list dead;
	struct sched_run_list ring;
	unsigned nring;			/* runs in ring */
	struct sched_retake_list retakes;
	struct sched_halt_list halts;
	unsigned nhalts;
	unsigned halts_failed;		/* Airflow runs not marked failed */
	/* Admission: runs taken while enough runs already wait for a slot wait
	 * here, as ids only, oldest first (see sched_full). */
	char **admit;
	size_t admit_head, admit_len, admit_cap;
	struct event *admit_ev;
	unsigned nruns;
	struct sched_run **index;	/* runs by run_id: chained hash, nruns <= size */
	size_t index_size;
	unsigned in_flight;
	bool started, stopped, recover;
	char **followups;		/* runs to take once the batch commits */
	size_t nfollowups;
	json_t *empty_conf;
	struct event *kick_ev;		/* dispatch ready agents */
	struct event *reap_ev;		/* free dead runs */
	struct event *flush_ev;		/* commit the loop turn's state changes */
	struct sched_agent_list flush_waiters;	/* acting once that commit is done */
	/* Agents to deploy ahead, oldest first, at most cfg.predeploy_max
	 * of those deploys in flight (each holds its IngestionPipeline). */
	struct sched_agent_list pre_queue;
	unsigned pre_outstanding;
	uint64_t batch_failures;	/* store_batch_failures() already acted on */
	struct event *lease_ev;
	struct event *note_ev;		/* sched_note_cb, every slow_note_ms / 6 */
	struct event *rescan_ev;
	struct ap_clock_watch clock;	/* steps of the wall clock (sched_now) */
	/* How long runs of each agent lately took in Airflow, queued to ended,
	 * by Airflow's own times (successful runs; see agent_first_poll_delay). */
	struct sched_learned {
		char agent[SCHED_AGENT_NAME_MAX];
		int64_t ms;
	} learned[2 * SCHED_MAX_AGENTS];
	unsigned nlearned;
	/* Attempts ended in this process, by agent (sched_attempt_counts()),
	 * and those whose end is in a batch not yet committed: counted once
	 * it is (a batch lost ends them again, to be counted then). */
	struct sched_attempt_count ended[2 * SCHED_MAX_AGENTS];
	unsigned nended;
	struct sched_uncounted {
		uint64_t batch;
		unsigned i;		/* in ended */
		enum sched_agent_state how;
	} *uncounted;
	size_t nuncounted, uncounted_cap;
};

static const char *const run_state_names[SCHED_RUN_STATE_MAX] = {
	"pending", "running", "succeeded", "failed"
};

static const char *const agent_state_names[SCHED_AGENT_STATE_MAX] = {
	"pending", "deploying", "waiting_for_dag", "queued", "running",
	"succeeded", "failed", "timed_out", "skipped", "lost"
};

#define R(x) (1u << SCHED_RUN_##x)
static const unsigned run_moves[SCHED_RUN_STATE_MAX] = {
	[SCHED_RUN_PENDING] = R(RUNNING) | R(FAILED),
	[SCHED_RUN_RUNNING] = R(SUCCEEDED) | R(FAILED),
	[SCHED_RUN_SUCCEEDED] = 0,
	[SCHED_RUN_FAILED] = 0,
};
#undef R

/*
 * The agent transition table. Back to PENDING is a retry (a new attempt
 * after backoff). TIMED_OUT is reachable from every in-flight state because
 * the agent's timeout bounds the whole attempt, Airflow outages included.
 */
#define A(x) (1u << SCHED_AGENT_##x)
#define A_FAILS (A(PENDING) | A(FAILED) | A(TIMED_OUT))
static const unsigned agent_moves[SCHED_AGENT_STATE_MAX] = {
	[SCHED_AGENT_PENDING] = A(DEPLOYING) | A(SKIPPED) | A(FAILED),
	[SCHED_AGENT_DEPLOYING] = A(WAITING_FOR_DAG) | A_FAILS,
	[SCHED_AGENT_WAITING_FOR_DAG] = A(QUEUED) | A(SUCCEEDED) | A_FAILS,
	[SCHED_AGENT_QUEUED] = A(RUNNING) | A(SUCCEEDED) | A(LOST) | A_FAILS,
	[SCHED_AGENT_RUNNING] = A(SUCCEEDED) | A(LOST) | A_FAILS,
	[SCHED_AGENT_SUCCEEDED] = 0,
	[SCHED_AGENT_FAILED] = 0,
	[SCHED_AGENT_TIMED_OUT] = 0,
	[SCHED_AGENT_SKIPPED] = 0,
	[SCHED_AGENT_LOST] = 0,
};
#undef A_FAILS
#undef A

const char *
sched_run_state_name(enum sched_run_state s)
{
	return (unsigned)s < SCHED_RUN_STATE_MAX ? run_state_names[s] : "?";
}

const char *
sched_agent_state_name(enum sched_agent_state s)
{
	return (unsigned)s < SCHED_AGENT_STATE_MAX ? agent_state_names[s] : "?";
}

bool
sched_run_state_parse(const char *name, enum sched_run_state *out)
{
	unsigned i;

	for (i = 0; name != NULL && i < SCHED_RUN_STATE_MAX; i++) {
		if (strcmp(name, run_state_names[i]) == 0) {
			*out = (enum sched_run_state)i;
			return true;
		}
	}
	return false;
}

bool
sched_agent_state_parse(const char *name, enum sched_agent_state *out)
{
	unsigned i;

	for (i = 0; name != NULL && i < SCHED_AGENT_STATE_MAX; i++) {
		if (strcmp(name, agent_state_names[i]) == 0) {
			*out = (enum sched_agent_state)i;
			return true;
		}
	}
	return false;
}

bool
sched_run_state_final(enum sched_run_state s)
{
	return s == SCHED_RUN_SUCCEEDED || s == SCHED_RUN_FAILED;
}

bool
sched_agent_state_final(enum sched_agent_state s)
{
	return s >= SCHED_AGENT_SUCCEEDED && s < SCHED_AGENT_STATE_MAX;
}

bool
sched_run_transition_legal(enum sched_run_state from, enum sched_run_state to)
{
	if ((unsigned)from >= SCHED_RUN_STATE_MAX || (unsigned)to >= SCHED_RUN_STATE_MAX)
		return false;
	return (run_moves[from] & (1u << to)) != 0;
}

bool
sched_agent_transition_legal(enum sched_agent_state from, enum sched_agent_state to)
{
	if ((unsigned)from >= SCHED_AGENT_STATE_MAX ||
	    (unsigned)to >= SCHED_AGENT_STATE_MAX)
		return false;
	return (agent_moves[from] & (1u << to)) != 0;
}

static bool
agent_active(enum sched_agent_state st)
{
	return st >= SCHED_AGENT_DEPLOYING && st <= SCHED_AGENT_RUNNING;
}

/* ---- Configuration. ---- */

void
sched_config_defaults(struct sched_config *c)
{
	memset(c, 0, sizeof *c);
	c->max_agents_in_flight = 64;
	c->poll_initial_ms = 2000;
	c->poll_max_ms = 60000;
	c->poll_floor_ms = 500;
	c->poll_backoff = 1.5;
	c->poll_learn = true;
	c->predeploy = true;
	c->predeploy_max = 32;
	c->dag_parse_deadline_s = 600;
	c->unreachable_retry_max_ms = 60000;
	c->lease_ms = 30000;
	c->rescan_ms = 10000;
	c->late_budget_ms = 30000;
	c->halt_recheck_ms = 60000;
	c->slow_note_ms = 30000;
}

static int
cfg_uint(const char *key, json_t *v, unsigned min, unsigned max, unsigned *out,
    char **cause)
{
	json_int_t i;

	if (!json_is_integer(v)) {
		*cause = ap_xprintf("scheduler.%s: must be an integer", key);
		return -1;
	}
	i = json_integer_value(v);
	if (i < (json_int_t)min || i > (json_int_t)max) {
		*cause = ap_xprintf("scheduler.%s: must be between %u and %u", key, min,
		    max);
		return -1;
	}
	*out = (unsigned)i;
	return 0;
}

int
sched_config_from_json(const json_t *section, struct sched_config *out, char **cause)
{
	struct sched_config c;
	const char *key;
	json_t *v;

	sched_config_defaults(&c);
	if (section != NULL && !json_is_null(section)) {
		if (!json_is_object(section)) {
			*cause = ap_xstrdup("scheduler: must be an object");
			return -1;
		}
		json_object_foreach((json_t *)section, key, v) {
			int rc;

			if (strcmp(key, "max_agents_in_flight") == 0)
				rc = cfg_uint(key, v, 1, 100000, &c.max_agents_in_flight, cause);
			else if (strcmp(key, "poll_initial_ms") == 0)
				rc = cfg_uint(key, v, 1, 86400000, &c.poll_initial_ms, cause);
			else if (strcmp(key, "poll_max_ms") == 0)
				rc = cfg_uint(key, v, 1, 86400000, &c.poll_max_ms, cause);
			else if (strcmp(key, "poll_floor_ms") == 0)
				rc = cfg_uint(key, v, 1, 86400000, &c.poll_floor_ms, cause);
			else if (strcmp(key, "dag_parse_deadline_s") == 0)
				rc = cfg_uint(key, v, 1, 86400 * 7, &c.dag_parse_deadline_s,
				    cause);
			else if (strcmp(key, "unreachable_retry_max_ms") == 0)
				rc = cfg_uint(key, v, 1, 86400000, &c.unreachable_retry_max_ms,
				    cause);
			else if (strcmp(key, "lease_ms") == 0)
				rc = cfg_uint(key, v, 100, 86400000, &c.lease_ms, cause);
			else if (strcmp(key, "predeploy_max") == 0)
				rc = cfg_uint(key, v, 1, 100000, &c.predeploy_max, cause);
			else if (strcmp(key, "rescan_ms") == 0)
				rc = cfg_uint(key, v, 0, 86400000, &c.rescan_ms, cause);
			else if (strcmp(key, "poll_learn") == 0 ||
			    strcmp(key, "predeploy") == 0) {
				if (!json_is_boolean(v)) {
					*cause = ap_xprintf("scheduler.%s: must be true"
					    " or false", key);
					rc = -1;
				} else {
					*(strcmp(key, "predeploy") == 0 ? &c.predeploy :
					    &c.poll_learn) = json_is_true(v);
					rc = 0;
				}
			} else if (strcmp(key, "poll_backoff") == 0) {
				if (!json_is_number(v) || json_number_value(v) < 1.0 ||
				    json_number_value(v) > 10.0) {
					*cause = ap_xstrdup("scheduler.poll_backoff: must be a"
					    " number between 1 and 10");
					rc = -1;
				} else {
					c.poll_backoff = json_number_value(v);
					rc = 0;
				}
			} else {
				*cause = ap_xprintf("scheduler.%s: unknown key (known:"
				    " max_agents_in_flight, poll_initial_ms, poll_max_ms,"
				    " poll_floor_ms, poll_backoff, poll_learn,"
				    " dag_parse_deadline_s, unreachable_retry_max_ms,"
				    " lease_ms, predeploy, predeploy_max, rescan_ms)", key);
				rc = -1;
			}
			if (rc != 0)
				return -1;
		}
	}
	if (c.poll_floor_ms > c.poll_max_ms) {
		*cause = ap_xstrdup("scheduler.poll_floor_ms: must be <= poll_max_ms");
		return -1;
	}
	if (c.poll_initial_ms > c.poll_max_ms) {
		*cause = ap_xstrdup("scheduler.poll_initial_ms: must be <= poll_max_ms");
		return -1;
	}
	*out = c;
	return 0;
}

/* ---- Helpers. ---- */

static void sched_clock_stepped(struct sched *s, int64_t step);

/* The wall clock (what is stored, and compared by other processes), its
 * steps taken up by moving the times of the agents this process drives. */
static int64_t
sched_now(struct sched *s)
{
	int64_t now = store_clock(s->store), step;

	step = ap_clock_step(&s->clock, now, ap_boot_ms());
	if (step != 0)
		sched_clock_stepped(s, step);
	return now;
}

static void
sched_set_str(char **dst, const char *src)
{
	char *n = src != NULL ? ap_xstrdup(src) : NULL;

	free(*dst);
	*dst = n;
}

static const char *
agent_name(const struct sched_agent *a)
{
	return a->run->plan.agents[a->idx].name;
}

/* Lines about a run, one of its agents, or a run known by its id alone:
 * JSON lines carry these as fields (struct ap_log_about). */
#define run_log(level, r, ...)						\
	ap_log_about((level), &(struct ap_log_about){ .run_id = (r)->run_id,	\
	    .fqn = (r)->fqn }, __VA_ARGS__)
#define agent_log(level, a, ...)					\
	ap_log_about((level), &(struct ap_log_about){			\
	    .run_id = (a)->run->run_id, .agent = agent_name(a),		\
	    .fqn = (a)->run->fqn }, __VA_ARGS__)
#define id_log(level, id, ...)						\
	ap_log_about((level), &(struct ap_log_about){ .run_id = (id) },	\
	    __VA_ARGS__)

static const struct sched_agent_spec *
agent_spec(const struct sched_agent *a)
{
	return &a->run->plan.agents[a->idx];
}

static void sched_run_abandon(struct sched_run *r, const char *why, bool retake);
static void sched_run_advance(struct sched_run *r);
static void sched_agent_act(struct sched_agent *a);
static void sched_kick(struct sched *s);

/* Tells the observer; followed_by: see struct sched_event. */
static void
sched_tell(struct sched_run *r, struct sched_agent *a, const char *old,
    const char *new, const char *error, const char *followed_by)
{
	struct sched_event ev = {
		.run_id = r->run_id,
		.service_type = r->service_type,
		.fqn = r->fqn,
		.agent = a ? agent_name(a) : NULL,
		.old_state = old,
		.new_state = new,
		.dag_id = a ? a->dag_id : NULL,
		.dag_run_id = a ? a->dag_run_id : NULL,
		.attempt = a ? a->attempt : 0,
		.error = error,
		.followed_by = followed_by,
	};

	if (r->s->observer != NULL)
		r->s->observer(&ev, r->s->observer_arg);
}

static void
sched_notify(struct sched_run *r, struct sched_agent *a, const char *old,
    const char *new, const char *error)
{
	sched_tell(r, a, old, new, error, NULL);
}

/*
 * Group commit: state changes made within a short window (a few loop turns,
 * SCHED_COMMIT_WINDOW_US) share one SQLite transaction, committed by the
 * flush timer; an Airflow request that needs them (sched_agent_act) waits
 * for that commit. So the rule "persisted before the next action" holds,
 * and the many changes of a busy moment cost one commit (fewer WAL frames:
 * a page changed by many rows is written once). If the commit fails,
 * nothing that depended on it has happened yet: every run is dropped and
 * taken back from the store.
 */
#define SCHED_COMMIT_WINDOW_US 2000
static void sched_flush_failed(struct sched *s, const char *cause);
static void sched_index_del(struct sched *s, struct sched_run *r);
/* Why a run is no longer driven when the store says it is not ours. */
#define NOT_OURS "the run is no longer ours (replaced, ended or taken over" \
	" after our lease expired)"
static void sched_run_lost(struct sched_run *r);
static void sched_settle(struct sched *s);
static void sched_take_followups(struct sched *s);
static void sched_drop_followups(struct sched *s);

/* Commits the open batch SCHED_COMMIT_WINDOW_US from now (once). */
static void
sched_flush_soon(struct sched *s)
{
	struct timeval tv = { 0, SCHED_COMMIT_WINDOW_US };

	if (!event_pending(s->flush_ev, EV_TIMEOUT, NULL))
		event_add(s->flush_ev, &tv);
}

static int
sched_batch(struct sched *s)
{
	char *cause = NULL;

	if (store_batch_open(s->store))
		return 0;
	if (store_batch_begin(s->store, &cause) != STORE_OK) {
		ap_error("scheduler: cannot open a transaction: %s", cause);
		free(cause);
		return -1;
	}
	sched_flush_soon(s);
	return 0;
}

/*
 * Commits the open batch. The batch is shared with the rest of the process
 * (the webhook, the admin API): a commit of it that failed elsewhere took our
 * changes too, and counts as ours.
 */
static int
sched_flush(struct sched *s)
{
	char *cause = NULL;

	if (store_flush(s->store, &cause) == STORE_OK) {
		if (store_batch_failures(s->store) == s->batch_failures)
			return 0;
		cause = ap_xstrdup("a commit of the shared transaction failed");
	}
	sched_flush_failed(s, cause);
	free(cause);
	return -1;
}

/*
 * The end of the turn: one commit, then every agent that waited for it
 * sends its Airflow request. An agent whose act wrote again (a failure
 * path) makes the next one commit first.
 */
static void
sched_flush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sched *s = arg;
	struct sched_agent *a;

	if (sched_flush(s) != 0)
		return;
	while ((a = TAILQ_FIRST(&s->flush_waiters)) != NULL) {
		if (sched_flush(s) != 0)
			return;
		TAILQ_REMOVE(&s->flush_waiters, a, wait_link);
		a->waiting_flush = false;
		sched_agent_act(a);
	}
	sched_settle(s);
	sched_take_followups(s);
}

/* Commits the agent's row; on failure the run is abandoned (-1). */
static int
sched_agent_persist(struct sched_agent *a)
{
	struct sched_run *r = a->run;
	struct store_agent_row row = {
		.agent = (char *)agent_name(a),
		.state = (char *)sched_agent_state_name(a->state),
		.dag_id = a->dag_id,
		.dag_run_id = a->dag_run_id,
		.attempt = a->attempt,
		.started_at = a->started_at,
		.finished_at = a->finished_at,
		.next_at = a->next_at,
		.error = a->error,
		.stored = a->stored,
	};
	enum store_result rc;
	char *cause = NULL;

	if (sched_batch(r->s) != 0) {
		sched_run_abandon(r, "state store error", true);
		return -1;
	}
	rc = store_agent_save(r->s->store, r->run_id, &row, &cause);
	if (rc == STORE_OK) {
		a->stored = true;
		a->saved_in = store_batch_seq(r->s->store);
		return 0;
	}
	if (rc == STORE_LOST)
		sched_run_lost(r);
	else {
		agent_log(AP_LOG_ERROR, a,
		    "run %s: cannot persist agent %s: %s",
		    r->run_id, agent_name(a), cause);
		sched_run_abandon(r, "state store error", true);
	}
	free(cause);
	return -1;
}

/* The times an agent keeps against the clock, moved by a step of it. */
static bool
sched_agent_shift(struct sched_agent *a, int64_t step)
{
	int64_t *t[] = { &a->started_at, &a->next_at, &a->parse_deadline,
	    &a->late_until, &a->req_sent, &a->import_looked };
	bool moved = false;
	size_t i;

	for (i = 0; i < sizeof t / sizeof t[0]; i++)
		if (*t[i] > 0) {
			*t[i] += step;
			moved = true;
		}
	return moved;
}

/*
 * The wall clock stepped (an NTP step after boot, a VM's clock set): the
 * start times and deadlines of the agents under way move with it, so that
 * their timeouts, retries and parse deadlines keep to the time that passed
 * (a step of an hour neither times them all out nor doubles them): those in
 * memory, and in the store those of every run this process holds (taken
 * but not loaded yet too), in the loop turn's batch; the leases are renewed
 * by the clock as it is. A process that takes them up later reads them
 * against the same wall clock. What other processes drive is theirs to
 * move; times of what ended, the time a DAG was deployed (compared with
 * Airflow's stamps) and Airflow's own stay as they were.
 */
static void
sched_clock_stepped(struct sched *s, int64_t step)
{
	struct sched_run *r;
	unsigned i, n = 0, moved = 0;
	char *cause = NULL;

	TAILQ_FOREACH(r, &s->runs, link)
		for (i = 0; i < r->nagents; i++)
			if (!sched_agent_state_final(r->agents[i].state) &&
			    sched_agent_shift(&r->agents[i], step))
				n++;
	store_clock_step_seen(s->store, step);
	if (sched_batch(s) != 0 || store_clock_stepped(s->store, step, &moved,
	    &cause) != STORE_OK)
		ap_error("scheduler: the wall clock stepped by %+.1f s; the agents'"
		    " times in the store could not follow: %s", (double)step / 1000,
		    cause != NULL ? cause : "no transaction");
	free(cause);
	ap_warn("the wall clock stepped by %+.1f s: the times of the %u agent(s)"
	    " under way move with it, their timeouts keeping to the time that"
	    " passed", (double)step / 1000, moved > n ? moved : n);
}

static void
sched_slot_release(struct sched_agent *a)
{
	if (a->in_flight) {
		a->in_flight = false;
		a->run->s->in_flight--;
		sched_kick(a->run->s);
	}
}

static void
sched_agent_unwait(struct sched_agent *a)
{
	if (a->waiting_flush) {
		TAILQ_REMOVE(&a->run->s->flush_waiters, a, wait_link);
		a->waiting_flush = false;
	}
}

/* Takes the agent off the deploy-ahead queue, or cancels its deploy ahead. */
static void
sched_agent_unpre(struct sched_agent *a)
{
	struct sched *s = a->run->s;

	if (a->pre_queued) {
		TAILQ_REMOVE(&s->pre_queue, a, pre_link);
		a->pre_queued = false;
	}
	if (a->pre_req != NULL) {
		s->ops->cancel(s->airflow, a->pre_req);
		a->pre_req = NULL;
		s->pre_outstanding--;
	}
}

static void
sched_agent_cancel(struct sched_agent *a)
{
	struct sched *s = a->run->s;

	if (a->req != NULL) {
		s->ops->cancel(s->airflow, a->req);
		a->req = NULL;
	}
	sched_agent_unpre(a);
	if (a->timer != NULL)
		evtimer_del(a->timer);
	sched_agent_unwait(a);
	a->act = ACT_NONE;
}

static void sched_agent_timer_cb(evutil_socket_t fd, short what, void *arg);
static int64_t agent_poll_delay(struct sched_agent *a, int64_t deadline);
static int64_t agent_dag_poll_delay(struct sched_agent *a);

/* Runs act after delay_ms (0: on the next loop turn). */
static void
sched_agent_after(struct sched_agent *a, enum sched_act act, int64_t delay_ms)
{
	struct timeval tv;

	if (a->timer == NULL)
		a->timer = evtimer_new(a->run->s->base, sched_agent_timer_cb, a);
	if (delay_ms < 0)
		delay_ms = 0;
	tv.tv_sec = (time_t)(delay_ms / 1000);
	tv.tv_usec = (suseconds_t)((delay_ms % 1000) * 1000);
	a->act = act;
	evtimer_add(a->timer, &tv);
}

static void sched_predeploy_next(struct sched *s);

/* Whether r is still this process's as the store says (a store that cannot
 * tell does not stop anything: the run's next write tells). */
static bool
sched_run_ours(struct sched_run *r)
{
	char *cause = NULL;
	enum store_result rc = store_run_owned(r->s->store, r->run_id, &cause);

	free(cause);
	return rc != STORE_LOST;
}

static bool sched_deploy_ours(void *);

static void
sched_predeploy_cb(const struct airflow_result *res, void *arg)
{
	struct sched_agent *a = arg;
	struct sched *s = a->run->s;

	a->pre_req = NULL;
	s->pre_outstanding--;
	if (!a->run->dead && res->status == AIRFLOW_OK &&
	    a->state == SCHED_AGENT_PENDING && a->attempt == 0) {
		a->predeployed = true;
		a->predeployed_at = sched_now(s);
	} else {
		/* Nothing is lost: the agent deploys in its turn, and says why
		 * if that fails too. */
		if (res->status != AIRFLOW_OK)
			agent_log(AP_LOG_DEBUG, a,
			    "run %s agent %s: deploying ahead failed (%s);"
			    " deploying in its turn", a->run->run_id, agent_name(a),
			    airflow_status_name(res->status));
		free(a->pre_dag_id);
		a->pre_dag_id = NULL;
	}
	sched_predeploy_next(s);
}

/* Whether an agent may still be deployed ahead: its first attempt has not
 * started, it will run after prerequisites, and it is not deployed yet. */
static bool
sched_agent_pre_ok(const struct sched_agent *a)
{
	const struct sched_agent_spec *sp = &a->run->plan.agents[a->idx];

	return !a->run->dead && a->run->entity != NULL &&
	    a->state == SCHED_AGENT_PENDING && !a->ready && !a->retry_wait &&
	    a->attempt == 0 && sp->supported && sp->after != 0 &&
	    a->pre_req == NULL && a->pre_dag_id == NULL;
}

/* Sends deploys ahead from the queue while fewer than the cap are out. */
static void
sched_predeploy_next(struct sched *s)
{
	struct sched_agent *a;

	while (s->pre_outstanding < s->cfg.predeploy_max &&
	    (a = TAILQ_FIRST(&s->pre_queue)) != NULL) {
		struct sched_run *r = a->run;
		char *dag_id = NULL, *cause = NULL;
		json_t *pipeline;

		TAILQ_REMOVE(&s->pre_queue, a, pre_link);
		a->pre_queued = false;
		/* Nothing was written for it, so nothing fenced it: a run
		 * replaced while its deploys ahead waited here sends none. */
		if (!sched_agent_pre_ok(a) || !sched_run_ours(r))
			continue;
		pipeline = s->planner->pipeline(s->planner_impl, r->service_type,
		    r->entity, agent_name(a), &dag_id, &cause);
		if (pipeline == NULL) {
			free(cause);	/* the agent's own deploy reports it */
			continue;
		}
		a->pre_dag_id = dag_id;
		s->pre_outstanding++;
		a->pre_req = s->ops->deploy(s->airflow, pipeline, sched_predeploy_cb, a);
		if (a->pre_req != NULL && s->ops->guard != NULL)
			s->ops->guard(s->airflow, a->pre_req, sched_deploy_ours, a);
		json_decref(pipeline);
	}
}

/*
 * Deploys ahead the agents of a run that started and that wait for their
 * prerequisites, so that Airflow parses their DAGs while the prerequisites
 * run (a new DAG file takes seconds to minutes to be parsed). Only the DAG
 * is written: an agent is still unpaused and triggered in its turn, and
 * holds no slot before it; one whose prerequisite fails is skipped as
 * before, its DAG deployed but never run (as a deploy-only agent's is).
 * Nothing is recorded: after a restart the agent deploys in its turn, and
 * so does one whose deploy ahead has not come back by then.
 */
static void
sched_run_predeploy(struct sched_run *r)
{
	struct sched *s = r->s;
	unsigned i;

	for (i = 0; i < r->nagents; i++) {
		struct sched_agent *a = &r->agents[i];

		if (a->pre_queued || !sched_agent_pre_ok(a))
			continue;
		TAILQ_INSERT_TAIL(&s->pre_queue, a, pre_link);
		a->pre_queued = true;
	}
	sched_predeploy_next(s);
}

/*
 * The one function that changes an agent's state: checks the table, writes
 * (with the fields the new state implies), logs, tells the observer, then
 * runs the on-enter action. Returns -1 if the move is illegal or could not
 * be persisted (then the run is abandoned and the caller must stop).
 */
static int
sched_agent_set_state(struct sched_agent *a, enum sched_agent_state to,
    const char *error)
{
	struct sched_run *r = a->run;
	struct sched *s = r->s;
	enum sched_agent_state from = a->state;
	int64_t now = sched_now(s), delay;

	if (r->dead)
		return -1;
	if (!sched_agent_transition_legal(from, to)) {
		agent_log(AP_LOG_ERROR, a,
		    "run %s agent %s: illegal transition %s -> %s", r->run_id,
		    agent_name(a), sched_agent_state_name(from),
		    sched_agent_state_name(to));
		return -1;
	}
	/* Fields that go with the new state, committed with it. */
	switch (to) {
	case SCHED_AGENT_DEPLOYING:
		a->attempt++;
		a->started_at = now;
		a->finished_at = 0;
		a->next_at = 0;
		a->retry_wait = false;
		/* The dag_run_id this attempt is to trigger with is kept if an
		 * earlier one's passes on (stored, so that a restart keeps it). */
		if (!a->reuse_id)
			sched_set_str(&a->dag_run_id, NULL);
		sched_set_str(&a->deadline_note, NULL);
		sched_set_str(&a->adopt_why, NULL);
		break;
	case SCHED_AGENT_WAITING_FOR_DAG:
		/* The parse deadline, stored so that a resumed agent keeps it
		 * (a serve restarting in a loop would never reach it). */
		a->next_at = now + (int64_t)s->cfg.dag_parse_deadline_s * 1000;
		break;
	case SCHED_AGENT_QUEUED:
		a->next_at = 0;
		/* Deterministic per run, agent and attempt: a trigger repeated
		 * after a crash finds the same run (409) instead of a second. */
		a->trigger_doubt = a->reuse_id && a->dag_run_id != NULL;
		if (!a->trigger_doubt) {
			free(a->dag_run_id);
			a->dag_run_id = ap_xprintf("autopilot__%s__%s__%u",
			    r->run_id, agent_name(a), a->attempt);
		}
		a->reuse_id = false;
		a->run_seen = false;
		a->trigger_sent = false;
		break;
	default:
		break;
	}
	if (sched_agent_state_final(to))
		a->finished_at = now;
	sched_set_str(&a->error, error);
	a->state = to;
	/* Logged once written: a run no longer ours changes nothing. */
	if (sched_agent_persist(a) != 0)
		return -1;
	/* An attempt that failed (retried or not) is for the operator to see
	 * at log.level "warn" too. */
	if (error != NULL)
		agent_log(to == SCHED_AGENT_FAILED ||
		    to == SCHED_AGENT_TIMED_OUT || to == SCHED_AGENT_LOST ||
		    (to == SCHED_AGENT_PENDING && a->attempt > 0) ? AP_LOG_WARN :
		    AP_LOG_INFO, a,
		    "run %s agent %s: %s -> %s (%s)", r->run_id, agent_name(a),
		    sched_agent_state_name(from), sched_agent_state_name(to), error);
	else
		agent_log(AP_LOG_INFO, a,
		    "run %s agent %s: %s -> %s", r->run_id, agent_name(a),
		    sched_agent_state_name(from), sched_agent_state_name(to));
	sched_notify(r, a, sched_agent_state_name(from), sched_agent_state_name(to),
	    error);
	if (r->dead)
		return -1;

	/* On-enter actions. */
	switch (to) {
	case SCHED_AGENT_PENDING:
		/* A retry: give the slot back, wait out the backoff. */
		sched_agent_cancel(a);
		sched_slot_release(a);
		a->retry_wait = true;
		sched_agent_after(a, ACT_START, a->next_at - now);
		break;
	case SCHED_AGENT_DEPLOYING:
		a->streak = 0;
		sched_agent_after(a, ACT_DEPLOY, 0);
		if (s->cfg.predeploy)
			sched_run_predeploy(r);
		break;
	case SCHED_AGENT_WAITING_FOR_DAG:
		a->poll_ms = s->cfg.poll_initial_ms;
		a->parse_deadline = a->next_at;
		a->n404 = 0;
		a->import_looked = 0;
		a->import_seen = 0;
		a->import_last = 0;
		a->import_later = 0;
		/* A DAG file just written is not parsed at once (nor is a redeployed
		 * one re-parsed): the first look is one poll interval after the
		 * deploy, which for a DAG deployed ahead may be now. */
		delay = agent_dag_poll_delay(a);
		if (a->predeployed) {
			/* (Clamped: the wall clock may have stepped since.) */
			int64_t since = now - a->predeployed_at;

			delay = since < 0 ? delay : since >= delay ? 0 : delay - since;
			a->predeployed = false;
		}
		sched_agent_after(a, ACT_UNPAUSE, delay);
		break;
	case SCHED_AGENT_QUEUED:
		a->poll_ms = s->cfg.poll_initial_ms;
		sched_agent_after(a, ACT_TRIGGER, 0);
		break;
	case SCHED_AGENT_RUNNING:
		break;	/* the tracking poll is already scheduled */
	case SCHED_AGENT_SUCCEEDED:
	case SCHED_AGENT_FAILED:
	case SCHED_AGENT_TIMED_OUT:
	case SCHED_AGENT_SKIPPED:
	case SCHED_AGENT_LOST:
		sched_agent_cancel(a);
		sched_slot_release(a);
		sched_run_advance(r);
		break;
	default:
		break;
	}
	return 0;
}

/* The one function that changes a run's state (see sched_agent_set_state). */
static int
sched_run_set_state(struct sched_run *r, enum sched_run_state to, const char *error)
{
	enum sched_run_state from = r->state;
	enum store_result rc;
	char *cause = NULL, *next = NULL;

	if (r->dead)
		return -1;
	if (!sched_run_transition_legal(from, to)) {
		run_log(AP_LOG_ERROR, r,
		    "run %s: illegal transition %s -> %s", r->run_id,
		    sched_run_state_name(from), sched_run_state_name(to));
		return -1;
	}
	if (sched_batch(r->s) != 0) {
		sched_run_abandon(r, "state store error", true);
		return -1;
	}
	/* An event that joined the run may ask for another: made with its
	 * end (all or nothing), so that both go in the same commit, or
	 * neither does and the run, taken back, ends again. */
	rc = sched_run_state_final(to) ? store_run_end(r->s->store, r->run_id,
	    sched_run_state_name(to), error, &next, &cause) :
	    store_run_set_state(r->s->store, r->run_id, sched_run_state_name(to),
	    error, false, &cause);
	if (rc != STORE_OK) {
		if (rc == STORE_LOST)
			sched_run_lost(r);
		else {
			run_log(AP_LOG_ERROR, r,
			    "run %s: cannot persist state: %s",
			    r->run_id, cause);
			sched_run_abandon(r, "state store error", true);
		}
		free(cause);
		free(next);
		return -1;
	}
	r->state = to;
	run_log(to == SCHED_RUN_FAILED ? AP_LOG_WARN : AP_LOG_INFO, r,
	    "run %s (%s): %s -> %s%s%s", r->run_id, r->fqn,
	    sched_run_state_name(from), sched_run_state_name(to),
	    error ? ": " : "", error ? error : "");
	if (next != NULL)
		run_log(AP_LOG_INFO, r,
		    "run %s (%s): an event received while it ran asks for a"
		    " run of its own: run %s follows", r->run_id, r->fqn, next);
	sched_tell(r, NULL, sched_run_state_name(from), sched_run_state_name(to),
	    error, next);
	/* A serve takes it up once it is committed (sched_flush_cb); `run`
	 * leaves it to one. */
	if (next != NULL && r->s->recover && !r->s->stopped) {
		r->s->followups = ap_xreallocarray(r->s->followups,
		    r->s->nfollowups + 1, sizeof *r->s->followups);
		r->s->followups[r->s->nfollowups++] = next;
		sched_flush_soon(r->s);
	} else
		free(next);
	if (sched_run_state_final(to) && !r->dead)
		sched_run_abandon(r, NULL, false);	/* done: free on a later turn */
	return 0;
}

/* Updates the error text shown in status without a state change (e.g.
 * "Airflow unreachable, retrying"); commits only when it changed. */
static int
sched_agent_note(struct sched_agent *a, const char *note)
{
	if (ap_streq(a->error, note) || (a->error == NULL && note == NULL))
		return 0;
	if (note != NULL)
		agent_log(AP_LOG_WARN, a,
		    "run %s agent %s: %s", a->run->run_id, agent_name(a), note);
	else
		agent_log(AP_LOG_INFO, a,
		    "run %s agent %s: Airflow reachable again", a->run->run_id,
		    agent_name(a));
	sched_set_str(&a->error, note);
	return sched_agent_persist(a);
}

/* ---- Runs: dependencies, fairness, completion. ---- */

static bool
agent_counts_as_success(const struct sched_agent *a)
{
	return a->state == SCHED_AGENT_SUCCEEDED ||
	    (a->state == SCHED_AGENT_SKIPPED && a->skip_ok);
}

static void
sched_ring_add(struct sched_run *r)
{
	if (!r->in_ring && !r->dead) {
		TAILQ_INSERT_TAIL(&r->s->ring, r, ring_link);
		r->in_ring = true;
		r->s->nring++;
	}
	sched_kick(r->s);
}

static void
sched_ring_remove(struct sched_run *r)
{
	if (r->in_ring) {
		TAILQ_REMOVE(&r->s->ring, r, ring_link);
		r->in_ring = false;
		r->s->nring--;
	}
}

/*
 * Moves the run forward after an agent reached a final state (or at start):
 * agents whose prerequisites all succeeded become ready, agents behind a
 * failed prerequisite are skipped with the reason, and when every agent is
 * final the run ends. Re-entrant calls (skips cascade) are folded into a loop.
 */
static void
sched_run_advance(struct sched_run *r)
{
	unsigned i, j;
	bool all_final, ok;
	char *why;

	if (r->advancing) {
		r->advance_again = true;
		return;
	}
	r->advancing = true;
	do {
		r->advance_again = false;
		for (i = 0; i < r->nagents && !r->dead; i++) {
			struct sched_agent *a = &r->agents[i];
			const struct sched_agent_spec *sp = &r->plan.agents[i];
			int blocked = -1;
			bool waiting = false;

			if (a->state != SCHED_AGENT_PENDING || a->ready || a->retry_wait)
				continue;
			for (j = 0; j < r->nagents; j++) {
				if (!(sp->after & (1u << j)))
					continue;
				if (!sched_agent_state_final(r->agents[j].state))
					waiting = true;
				else if (!agent_counts_as_success(&r->agents[j]))
					blocked = (int)j;
			}
			if (blocked >= 0) {
				why = ap_xprintf("prerequisite %s %s",
				    r->plan.agents[blocked].name,
				    sched_agent_state_name(r->agents[blocked].state));
				sched_agent_set_state(a, SCHED_AGENT_SKIPPED, why);
				free(why);
				continue;
			}
			if (waiting)
				continue;
			/* Unsupported: skipped in its turn, after its prerequisites,
			 * so its dependents still wait for those (usage unsupported:
			 * the profiler still runs after metadata, not beside it). */
			if (!sp->supported) {
				a->skip_ok = true;
				sched_agent_set_state(a, SCHED_AGENT_SKIPPED,
				    sp->unsupported_reason ? sp->unsupported_reason :
				    "not supported by this service");
				continue;
			}
			a->ready = true;
			sched_ring_add(r);
		}
	} while (r->advance_again && !r->dead);
	r->advancing = false;
	if (r->dead)
		return;

	all_final = true;
	ok = true;
	for (i = 0; i < r->nagents; i++) {
		if (!sched_agent_state_final(r->agents[i].state))
			all_final = false;
		else if (!agent_counts_as_success(&r->agents[i]) &&
		    r->agents[i].state != SCHED_AGENT_SKIPPED)
			ok = false;
	}
	if (!all_final)
		return;
	if (ok) {
		for (i = 0; i < r->nagents; i++)
			if (r->agents[i].state != SCHED_AGENT_SKIPPED)
				break;
		/* Nothing deployed: for an operator at log.level "warn" too. */
		if (i == r->nagents && r->nagents > 0)
			run_log(AP_LOG_WARN, r,
			    "run %s (%s): nothing ran, every agent was skipped"
			    " (%s: %s)", r->run_id, r->fqn, agent_name(&r->agents[0]),
			    r->agents[0].error != NULL ? r->agents[0].error : "skipped");
		sched_run_set_state(r, SCHED_RUN_SUCCEEDED, NULL);
	} else {
		struct ap_buf b;

		ap_buf_init(&b);
		for (i = 0; i < r->nagents; i++) {
			struct sched_agent *a = &r->agents[i];

			if (agent_counts_as_success(a) || a->state == SCHED_AGENT_SKIPPED)
				continue;
			ap_buf_printf(&b, "%s%s %s", b.len ? "; " : "", agent_name(a),
			    sched_agent_state_name(a->state));
		}
		sched_run_set_state(r, SCHED_RUN_FAILED, b.data);
		ap_buf_cleanup(&b);
	}
}

/* Starts ready agents while slots are free, one per run in turn, so one
 * service with many (or slow) agents cannot starve the others. */
static void
sched_dispatch(struct sched *s)
{
	struct sched_run *r;
	unsigned i;
	bool more;

	while (!s->stopped && s->in_flight < s->cfg.max_agents_in_flight &&
	    (r = TAILQ_FIRST(&s->ring)) != NULL) {
		sched_ring_remove(r);
		more = false;
		for (i = 0; i < r->nagents; i++) {
			struct sched_agent *a = &r->agents[i];

			if (!a->ready)
				continue;
			if (a->state != SCHED_AGENT_PENDING) {
				a->ready = false;
				continue;
			}
			a->ready = false;
			a->in_flight = true;
			s->in_flight++;
			if (sched_agent_set_state(a, SCHED_AGENT_DEPLOYING, NULL) != 0)
				break;
			for (i = i + 1; i < r->nagents; i++)
				more = more || r->agents[i].ready;
			break;
		}
		if (more && !r->dead)
			sched_ring_add(r);
	}
}

static void
sched_kick_cb(evutil_socket_t fd, short what, void *arg)
{
	sched_dispatch(arg);
}

/*
 * Enough runs wait for a slot to fill every slot at once: a run taken now
 * would only wait too, holding memory and costing its planning and store
 * writes up front (a burst of thousands of webhooks would plan them all
 * before the first agent ran). It waits in the admission queue instead.
 */
static bool
sched_full(const struct sched *s)
{
	unsigned ahead = s->cfg.max_agents_in_flight;

	if (ahead < SCHED_ADMIT_AHEAD_MIN)
		ahead = SCHED_ADMIT_AHEAD_MIN;
	return s->nring >= ahead;
}

static void
sched_kick(struct sched *s)
{
	if (s->stopped)
		return;
	if (s->in_flight < s->cfg.max_agents_in_flight && !TAILQ_EMPTY(&s->ring))
		event_active(s->kick_ev, EV_TIMEOUT, 0);
	if (s->admit_len > 0 && !sched_full(s))
		event_active(s->admit_ev, EV_TIMEOUT, 0);
}

static void
sched_run_free(struct sched_run *r)
{
	unsigned i;

	for (i = 0; i < SCHED_MAX_AGENTS; i++) {
		struct sched_agent *a = &r->agents[i];

		if (a->timer != NULL)
			event_free(a->timer);
		sched_agent_unwait(a);
		free(a->dag_id);
		free(a->dag_run_id);
		free(a->error);
		free(a->deadline_note);
		free(a->adopt_why);
		free(a->pre_dag_id);
		if (a->pre_queued)
			TAILQ_REMOVE(&r->s->pre_queue, a, pre_link);
	}
	free(r->run_id);
	free(r->service_type);
	free(r->fqn);
	json_decref(r->entity);
	free(r);
}

static void
sched_reap_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sched *s = arg;
	struct sched_run *r;

	while ((r = TAILQ_FIRST(&s->dead)) != NULL) {
		TAILQ_REMOVE(&s->dead, r, link);
		sched_run_free(r);
	}
}

static void sched_retake_cb(evutil_socket_t fd, short what, void *arg);
static void sched_retake_later(struct sched *s, const char *run_id);

/*
 * Stops driving a run: cancels its requests and timers, gives back its
 * slots, and frees it on a later loop turn. why != NULL means it did not
 * end normally (logged, and told to the observer as a run-level event with
 * no state change). retake: try to claim it again later (store errors).
 */
static void
sched_run_abandon(struct sched_run *r, const char *why, bool retake)
{
	struct sched *s = r->s;
	unsigned i;

	if (r->dead)
		return;
	r->dead = true;
	for (i = 0; i < r->nagents; i++) {
		sched_agent_cancel(&r->agents[i]);
		if (r->agents[i].in_flight) {
			r->agents[i].in_flight = false;
			s->in_flight--;
		}
		r->agents[i].ready = false;
	}
	sched_ring_remove(r);
	sched_index_del(s, r);
	TAILQ_REMOVE(&s->runs, r, link);
	TAILQ_INSERT_TAIL(&s->dead, r, link);
	s->nruns--;
	event_active(s->reap_ev, EV_TIMEOUT, 0);
	sched_kick(s);
	/* Before it is said: an observer asks sched_retaking(). */
	if (retake)
		sched_retake_later(s, r->run_id);
	if (why != NULL) {
		run_log(AP_LOG_WARN, r,
		    "run %s (%s): no longer driven by this process: %s%s",
		    r->run_id, r->fqn, why, retake && sched_retaking(s,
		    r->run_id) ? " (taken back in 5 s)" : "");
		sched_notify(r, NULL, sched_run_state_name(r->state),
		    sched_run_state_name(r->state), why);
	}
}

/*
 * The store says r is not this process's any more: dropped, saying what
 * the store has of it now (replaced: "failed: replaced by ID"; taken over:
 * who drives it), which NOT_OURS alone leaves open.
 */
static void
sched_run_lost(struct sched_run *r)
{
	json_t *j = NULL;
	char *cause = NULL, *why;
	const char *state, *error, *by;

	if (store_run_brief(r->s->store, r->run_id, &j, &cause) != STORE_OK) {
		free(cause);
		sched_run_abandon(r, NOT_OURS, false);
		return;
	}
	state = json_string_value(json_object_get(j, "state"));
	error = json_string_value(json_object_get(j, "error"));
	by = json_string_value(json_object_get(j, "driven_by"));
	why = ap_xprintf("the run is no longer ours: it is %s%s%s%s%s%s",
	    state != NULL ? state : "?", error != NULL ? " (" : "", error != NULL ?
	    error : "", error != NULL ? ")" : "", by != NULL ? ", driven by " : "",
	    by != NULL ? by : "");
	json_decref(j);
	sched_run_abandon(r, why, false);
	free(why);
}

/* Claims run_id again in 5 s (after a store error), unless that is due. */
static void
sched_retake_later(struct sched *s, const char *run_id)
{
	struct timeval tv = { 5, 0 };
	struct sched_retake *t;

	if (s->stopped || sched_retaking(s, run_id))
		return;
	t = ap_xcalloc(1, sizeof *t);
	t->s = s;
	t->run_id = ap_xstrdup(run_id);
	t->ev = evtimer_new(s->base, sched_retake_cb, t);
	TAILQ_INSERT_TAIL(&s->retakes, t, link);
	evtimer_add(t->ev, &tv);
}

static void
sched_flush_failed(struct sched *s, const char *cause)
{
	struct sched_run *r;

	s->batch_failures = store_batch_failures(s->store);
	ap_error("scheduler: cannot commit state changes: %s; dropping every run"
	    " to take it back from the store", cause);
	while (!TAILQ_EMPTY(&s->flush_waiters))
		sched_agent_unwait(TAILQ_FIRST(&s->flush_waiters));
	sched_settle(s);
	/* Rolled back with the batch: the runs they follow end again. */
	sched_drop_followups(s);
	while ((r = TAILQ_FIRST(&s->runs)) != NULL)
		sched_run_abandon(r, "state store error", true);
}

void
sched_store_failed(struct sched *s, const char *cause)
{
	sched_flush_failed(s, cause);
}

int
sched_commit(struct sched *s)
{
	if (sched_flush(s) != 0)
		return -1;
	sched_settle(s);
	return 0;
}

/* ---- Agents: what each state does (the one switch). ---- */

/*
 * Asked by the client before it sends a trigger again: whether the run is
 * still this process's (another may have replaced it, or taken it over,
 * meanwhile). A store that cannot tell does not stop it: the attempt's
 * queued state was committed before its first send.
 */
static bool
sched_agent_ours(struct sched_agent *a, const char *what)
{
	if (sched_run_ours(a->run))
		return true;
	agent_log(AP_LOG_WARN, a,
	    "run %s agent %s: %s not sent again: the run is no longer this"
	    " process's", a->run->run_id, agent_name(a), what);
	return false;
}

static bool
sched_trigger_ours(void *arg)
{
	struct sched_agent *a = arg;
	char *what = ap_xprintf("trigger of %s", a->dag_run_id);
	bool ours = sched_agent_ours(a, what);

	free(what);
	return ours;
}

/* The same before a deploy is sent again: a run replaced meanwhile must not
 * write its entity's pipeline over the one its replacement deploys. */
static bool
sched_deploy_ours(void *arg)
{
	return sched_agent_ours(arg, "deploy");
}

static void sched_agent_cb(const struct airflow_result *res, void *arg);

static int64_t
agent_deadline(const struct sched_agent *a)
{
	int64_t t = agent_spec(a)->timeout_ms;

	return t > 0 ? a->started_at + t : INT64_MAX;
}

/* A delay of d cut to end at the deadline, never under the poll floor. */
static int64_t
agent_delay_by(const struct sched_agent *a, int64_t d, int64_t deadline)
{
	int64_t left = deadline - sched_now(a->run->s);

	/* A look due at the deadline comes 1 ms after it, so that the check
	 * (wall-clock ms, against a timer on the monotonic clock) finds it
	 * passed rather than a millisecond short. */
	if (left < d)
		d = left + 1;
	if (d < (int64_t)a->run->s->cfg.poll_floor_ms)
		d = a->run->s->cfg.poll_floor_ms;
	return d;
}

/* Next poll delay: never faster than the floor, never past the deadline by
 * more than the floor (the deadline check then fires). */
static int64_t
agent_poll_delay(struct sched_agent *a, int64_t deadline)
{
	const struct sched_config *c = &a->run->s->cfg;
	int64_t d = agent_delay_by(a, a->poll_ms, deadline);
	double next;

	next = (double)a->poll_ms * c->poll_backoff;
	a->poll_ms = next > c->poll_max_ms ? c->poll_max_ms : (unsigned)next;
	if (a->poll_ms < c->poll_floor_ms)
		a->poll_ms = c->poll_floor_ms;
	return d;
}

/* The next look at a DAG waited for: bounded by its parse deadline and by
 * the agent's own, whichever comes first. */
static int64_t
agent_dag_poll_delay(struct sched_agent *a)
{
	int64_t d = agent_deadline(a);

	return agent_poll_delay(a, a->parse_deadline < d ? a->parse_deadline : d);
}

/* The learned duration of the agent's runs; with add, a new entry when it
 * has none. NULL when there is none (or no room). */
static struct sched_learned *
sched_learned(struct sched *s, const char *agent, bool add)
{
	unsigned i;

	for (i = 0; i < s->nlearned; i++)
		if (strcmp(s->learned[i].agent, agent) == 0)
			return &s->learned[i];
	if (!add || s->nlearned == AP_ARRAY_LEN(s->learned))
		return NULL;
	snprintf(s->learned[i].agent, sizeof s->learned[i].agent, "%s", agent);
	s->learned[i].ms = 0;
	s->nlearned++;
	return &s->learned[i];
}

/* A successful run ended: fold its duration (Airflow's times) into the
 * agent's, a moving average that follows change within a few runs. */
static void
sched_learn(struct sched_agent *a, const struct airflow_run *run)
{
	int64_t d = run->ended_ms - run->queued_ms;
	struct sched_learned *l;

	if (run->queued_ms <= 0 || run->ended_ms <= 0 || d <= 0 ||
	    d > 7 * 86400 * (int64_t)1000)
		return;
	if ((l = sched_learned(a->run->s, agent_name(a), true)) == NULL)
		return;
	l->ms = l->ms == 0 ? d : l->ms + (d - l->ms) / 4;
}

/*
 * The first look at a run just triggered. Once runs of the same agent have
 * been seen to end, it is when they usually end (a little after), so a run
 * as long as the others is seen done by one request, as soon as it is;
 * never sooner than the floor, never later than the longest interval (a run
 * that fails fast is seen within poll_max_ms, as with the usual series) nor
 * past the deadline. The series then goes on from poll_initial_ms.
 */
static int64_t
agent_first_poll_delay(struct sched_agent *a)
{
	struct sched *s = a->run->s;
	const struct sched_config *c = &s->cfg;
	struct sched_learned *l = c->poll_learn ?
	    sched_learned(s, agent_name(a), false) : NULL;
	int64_t d;

	if (l == NULL || l->ms <= 0)
		return agent_poll_delay(a, agent_deadline(a));
	d = l->ms + l->ms / 32;
	if (d > (int64_t)c->poll_max_ms)
		d = c->poll_max_ms;
	return agent_delay_by(a, d, agent_deadline(a));
}

/* Backoff while Airflow is unavailable: doubles per failure up to the cap. */
static int64_t
agent_unavailable_ms(const struct sched_agent *a)
{
	const struct sched_config *c = &a->run->s->cfg;
	double d = (double)c->poll_initial_ms * pow(2.0, a->streak < 30 ? a->streak : 30);

	if (d > c->unreachable_retry_max_ms)
		d = c->unreachable_retry_max_ms;
	if (d < c->poll_floor_ms)
		d = c->poll_floor_ms;
	return (int64_t)d;
}

/* The wait before the next try; the streak grows. */
static int64_t
agent_unavailable_delay(struct sched_agent *a)
{
	int64_t d = agent_unavailable_ms(a);

	a->streak++;
	return d;
}

/* The last look or the PATCH past the deadline starts: its tries, its own
 * backoff (not the outage's before), its budget. */
static void
agent_late_begin(struct sched_agent *a, int64_t now)
{
	a->late_tries = 0;
	a->streak = 0;
	a->late_until = now + a->run->s->cfg.late_budget_ms;
}

/* Whether a request past the deadline (the last look, the PATCH) that found
 * Airflow unavailable is tried again: a few times, each with its wait and
 * some time left (SCHED_LATE_MIN_TRY_DIV) before its tries end. */
static bool
agent_late_retry(struct sched_agent *a, int64_t now)
{
	return a->late_tries++ < SCHED_LATE_TRIES &&
	    now + agent_unavailable_ms(a) + a->run->s->cfg.late_budget_ms /
	    SCHED_LATE_MIN_TRY_DIV <= a->late_until;
}

static void
sched_agent_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	sched_agent_act(arg);
}

static void
sched_count_add(struct sched_attempt_count *c, enum sched_agent_state how)
{
	switch (how) {
	case SCHED_AGENT_SUCCEEDED: c->succeeded++; break;
	case SCHED_AGENT_FAILED: c->failed++; break;
	case SCHED_AGENT_TIMED_OUT: c->timed_out++; break;
	case SCHED_AGENT_LOST: c->lost++; break;
	default: break;
	}
}

/* Counts an attempt of a that ended as how (succeeded, failed, timed_out,
 * lost), retried or not, once the batch its end was written into is
 * committed (sched_agent_end()). */
static void
sched_count_attempt(struct sched_agent *a, enum sched_agent_state how)
{
	struct sched *s = a->run->s;
	const char *name = agent_name(a);
	/* The batch the end was written into (what ran since may have lost
	 * it already: then it is not counted). */
	uint64_t batch = a->saved_in;
	struct sched_uncounted *u;
	unsigned i;

	for (i = 0; i < s->nended; i++)
		if (strcmp(s->ended[i].agent, name) == 0)
			break;
	if (i == s->nended) {
		if (s->nended == AP_ARRAY_LEN(s->ended))
			return;
		snprintf(s->ended[i].agent, sizeof s->ended[i].agent, "%s", name);
		s->nended++;
	}
	if (batch == 0) {
		sched_count_add(&s->ended[i], how);
		return;
	}
	if (s->nuncounted == s->uncounted_cap) {
		s->uncounted_cap = s->uncounted_cap ? 2 * s->uncounted_cap : 64;
		s->uncounted = ap_xreallocarray(s->uncounted, s->uncounted_cap,
		    sizeof *s->uncounted);
	}
	u = &s->uncounted[s->nuncounted++];
	u->batch = batch;
	u->i = i;
	u->how = how;
	/* Settled at the next flush, which a batch another caller commits
	 * would not bring. */
	sched_flush_soon(s);
}

/* The attempts whose batch has ended: counted if it was committed (by
 * whoever committed it), forgotten if it was lost. */
static void
sched_counts_settle(struct sched *s)
{
	size_t i, kept = 0;

	for (i = 0; i < s->nuncounted; i++) {
		switch (store_batch_fate(s->store, s->uncounted[i].batch)) {
		case STORE_BATCH_OPEN:
			s->uncounted[kept++] = s->uncounted[i];
			break;
		case STORE_BATCH_COMMITTED:
			sched_count_add(&s->ended[s->uncounted[i].i],
			    s->uncounted[i].how);
			break;
		case STORE_BATCH_LOST:
			break;
		}
	}
	s->nuncounted = kept;
}

bool
sched_attempt_counts(const struct sched *s, unsigned i,
    const struct sched_attempt_count **out)
{
	if (i >= s->nended)
		return false;
	*out = &s->ended[i];
	return true;
}

/*
 * An attempt of a ends as how: a goes to state to (a final state, or pending
 * for a retry) with error, and the attempt is counted once that is written
 * (a store that refuses it, or a batch whose commit fails, gives the run
 * up, to end the attempt again).
 */
static void
sched_agent_end(struct sched_agent *a, enum sched_agent_state to,
    const char *error, enum sched_agent_state how)
{
	if (sched_agent_set_state(a, to, error) == 0)
		sched_count_attempt(a, how);
}

/* Whether error names dag_run_id as note (NOTE_NO_RUN, NOTE_REUSE) puts
 * it: the note, the id, then after. */
static bool
error_names(const char *error, const char *note, const char *dag_run_id,
    const char *after)
{
	char *named = ap_xprintf("%s%s%s", note, dag_run_id, after);
	bool yes = strstr(error, named) != NULL;

	free(named);
	return yes;
}

/*
 * An attempt ended without success. With retries left (and a cause worth
 * retrying) the agent returns to pending after backoff, else it ends in
 * final_state.
 */
static void
sched_agent_attempt_failed(struct sched_agent *a, enum sched_agent_state final_state,
    const char *error, bool retryable)
{
	const struct sched_agent_spec *sp = agent_spec(a);
	int64_t backoff;
	char *why, at[40];
	bool reuse = false;

	if (retryable && a->attempt <= sp->retries) {
		/* A dag_run_id passed on, not yet triggered with: said unless
		 * the error says it already, so that a restart keeps it. */
		reuse = a->reuse_id && a->dag_run_id != NULL &&
		    !error_names(error, NOTE_NO_RUN, a->dag_run_id, "");
		backoff = sp->retry_backoff_ms * (1LL << (a->attempt - 1 < 20 ?
		    a->attempt - 1 : 20));
		a->next_at = sched_now(a->run->s) + backoff;
		/* When, too: a length alone goes stale in status. */
		ap_format_time(a->next_at, at, sizeof at);
		why = ap_xprintf("attempt %u %s: %s; retrying in %lld ms (at %s)"
		    "%s%s%s", a->attempt, sched_agent_state_name(final_state),
		    error, (long long)backoff, at, reuse ? " (" NOTE_REUSE : "", reuse ?
		    a->dag_run_id : "", reuse ? ", of an attempt before that"
		    " Airflow may yet receive)" : "");
		sched_agent_end(a, SCHED_AGENT_PENDING, why, final_state);
		free(why);
		return;
	}
	sched_agent_end(a, final_state, error, final_state);
}

/*
 * A resumed agent's dag_run_id that is to be triggered with again: that of
 * an attempt that ended with no run in Airflow (its error says so), while
 * the next waits to start, or kept by the next attempt before its trigger.
 */
static void
sched_agent_unseen_resumed(struct sched_agent *a)
{
	if (a->dag_run_id == NULL)
		return;
	if (a->state == SCHED_AGENT_DEPLOYING ||
	    a->state == SCHED_AGENT_WAITING_FOR_DAG) {
		a->reuse_id = true;
		return;
	}
	if (a->state != SCHED_AGENT_PENDING || a->attempt == 0 || a->error == NULL)
		return;
	a->reuse_id = error_names(a->error, NOTE_NO_RUN, a->dag_run_id, "") ||
	    error_names(a->error, NOTE_REUSE, a->dag_run_id, ",");
}

/*
 * The attempt ends (final_state, error) with no run in Airflow although its
 * trigger may have been sent: a trigger that reaches Airflow after the look
 * would start a run nobody follows, so the next attempt triggers with the
 * same dag_run_id, and meets such a run (409) and adopts it instead of
 * starting a second one beside it.
 */
static void
sched_agent_unseen(struct sched_agent *a, enum sched_agent_state final_state,
    const char *error)
{
	a->reuse_id = true;
	sched_agent_attempt_failed(a, final_state, error, true);
}

/* Why an attempt ends at the parse deadline (a new string): with the import
 * error of its file seen but not stamped again since, if any. */
static char *
agent_not_parsed(const struct sched_agent *a, const char *import_error)
{
	if (import_error == NULL)
		return ap_xprintf("DAG %s was not parsed by Airflow within %u s of"
		    " the deploy", a->dag_id, a->run->s->cfg.dag_parse_deadline_s);
	return ap_xprintf("DAG %s was not parsed by Airflow within %u s of the"
	    " deploy (an import error of its file, not confirmed by a parse since"
	    " the deploy: %s)", a->dag_id, a->run->s->cfg.dag_parse_deadline_s,
	    import_error);
}

/*
 * The DAG is not parsed yet (a 404, or an error of a file that never
 * imported, not confirmed): the attempt fails at the parse deadline (with
 * import_error, if any, in its message), else the wait goes on.
 */
static void
agent_not_parsed_yet(struct sched_agent *a, int64_t now, const char *import_error)
{
	char *text;

	a->n404++;
	if (now >= a->parse_deadline) {
		text = agent_not_parsed(a, import_error);
		sched_agent_attempt_failed(a, SCHED_AGENT_FAILED, text, true);
		free(text);
		return;
	}
	sched_agent_after(a, ACT_UNPAUSE, agent_dag_poll_delay(a));
}

/*
 * An agent's error for Airflow's answer res to what it did: Airflow's words,
 * and for a refusal of the credentials (401) or of the user (403) what to
 * check, which an agent's "HTTP 401 Unauthorized" alone does not say (a
 * refused Airflow 3 login says it already). A new string.
 */
static char *
agent_result_text(const char *what, const struct airflow_result *res)
{
	char *text = airflow_result_text(what, res), *t;
	long st = res->error.http_status;

	if (res->status != AIRFLOW_REJECTED || (st != 401 && st != 403) ||
	    (res->error.detail != NULL && ap_startswith(res->error.detail,
	    AIRFLOW_LOGIN_REFUSED)))
		return text;
	t = ap_xprintf("%s (%s)", text, st == 401 ? "Airflow refused the"
	    " credentials: check AUTOPILOT_AIRFLOW_USERNAME and"
	    " AUTOPILOT_AIRFLOW_PASSWORD, or airflow.username and"
	    " airflow.password_file; on Airflow 2, that [api] auth_backends"
	    " takes basic_auth; on Airflow 3, whose login took them, that its API"
	    " servers share one JWT secret and a clock" : "Airflow refused this"
	    " to its user: its role must allow the REST API on DAGs and DAG"
	    " runs, and the OpenMetadata plugin's routes");
	free(text);
	return t;
}

/*
 * The error of an attempt that timed out: what (taken), and what the agent
 * showed until then, which the timeout would hide: its note (Airflow
 * unreachable, an answer that could not be read), or a DAG Airflow had not
 * parsed yet. A new string.
 */
static char *
agent_timeout_text(const struct sched_agent *a, char *what)
{
	const char *note = a->deadline_note != NULL ? a->deadline_note :
	    a->error;
	char *t;

	if (note != NULL && *note != '\0')
		t = ap_xprintf("%s; until then: %s", what, note);
	else if (a->state == SCHED_AGENT_WAITING_FOR_DAG && a->n404 > 0)
		t = ap_xprintf("%s; until then: Airflow had not parsed DAG %s (%u"
		    " looks)", what, a->dag_id, a->n404);
	else
		return what;
	free(what);
	return t;
}

/*
 * An answer to reading or unpausing the DAG that cannot be used (not the
 * DAG's, not read, still paused after the unpause): one answer says
 * nothing of the DAG, so it is looked at again, the reason noted, until
 * the parse deadline fails the attempt (or the agent's timeout ends it).
 */
static void
agent_dag_unreadable(struct sched_agent *a, enum sched_act act, int64_t now,
    const struct airflow_result *res)
{
	char *text = airflow_result_text(act == ACT_GET_DAG ? "reading the DAG"
	    " failed" : "unpausing the DAG failed", res), *note;

	if (now >= a->parse_deadline) {
		sched_agent_attempt_failed(a, SCHED_AGENT_FAILED, text, true);
		free(text);
		return;
	}
	note = ap_xprintf(NOTE_DAG_UNREADABLE "%s", text);
	if (sched_agent_note(a, note) == 0)
		sched_agent_after(a, act, agent_dag_poll_delay(a));
	free(note);
	free(text);
}

/*
 * Whether the import error of a DAG Airflow has, stamped at (by Airflow, at
 * a parse of the file; 0 for no stamp), is known to be of the file written.
 * A DAG that imported once shows has_import_errors until Airflow parses its
 * file again, so the stamp of the first look since the deploy may be of a
 * parse of the file before, and the next one later of a parse that began
 * before the write. Airflow parses a file once at a time, so a third, later
 * still, is of a parse that began after the first look: the file written is
 * broken. No stamp of Airflow's is compared with this clock.
 */
static bool
agent_import_confirmed(struct sched_agent *a, int64_t at)
{
	if (at == 0)
		return false;
	if (a->import_last != 0 && at > a->import_last)
		a->import_later++;
	if (at > a->import_last)
		a->import_last = at;
	return a->import_later >= 2;
}

/* Airflow 3's login route is not there (airflow.api "v2" for an Airflow 2):
 * fixed with the setup, never by trying again. */
static bool
no_login(const struct airflow_result *res)
{
	return res->status == AIRFLOW_REJECTED && res->error.title != NULL &&
	    strcmp(res->error.title, AIRFLOW_NO_LOGIN) == 0;
}

/*
 * A trigger refused for who sent it (401, 403, a login refused, answered
 * with a page or not there) while a send of its dag_run_id before may have
 * reached Airflow: sent again by the client (no answer in time) or by the
 * agent, after a restart, or by the attempt that passed the id on.
 */
static bool
trigger_refused_after(const struct sched_agent *a,
    const struct airflow_result *res)
{
	long st = res->error.http_status;

	return res->status == AIRFLOW_REJECTED && (a->trigger_doubt ||
	    res->maybe_delivered) && (st == 401 || st == 403 || (st >= 200 &&
	    st < 300) || no_login(res));
}

/* Airflow refused the request as it stands: a bad request, credentials it
 * does not take, a user without the permission, a body it does not accept.
 * A new attempt (a redeploy, a wait for the parse) would meet the same
 * refusal. Unlike a halt (halt_hopeless()), nothing is left behind by
 * giving up: the agent fails and says why; credentials fixed, a re-run
 * goes through. */
static bool
refused(const struct airflow_result *res)
{
	long st = res->error.http_status;

	return res->status == AIRFLOW_REJECTED && (st == 400 || st == 401 ||
	    st == 403 || st == 422 || no_login(res));
}

/*
 * Whether this wait for the parse looks at Airflow's import errors too (on
 * 2.x a list of all of them): from the third 404 on, every
 * IMPORT_LOOK_EVERY_MS, and at each 404 once an error of the file was seen,
 * until Airflow stamps it again (it parses a file every 30 s by default).
 */
static bool
agent_import_look(const struct sched_agent *a, int64_t now)
{
	return a->n404 >= 2 && (a->import_looked == 0 || a->import_seen != 0 ||
	    now - a->import_looked >= IMPORT_LOOK_EVERY_MS);
}

static void
sched_agent_act(struct sched_agent *a)
{
	struct sched_run *r = a->run;
	struct sched *s = r->s;
	enum sched_act act = a->act;
	int64_t now = sched_now(s);
	json_t *entity = NULL, *pipeline = NULL;
	char *text = NULL, *cause = NULL, *dag_id = NULL;
	bool look;

	a->act = ACT_NONE;
	if (r->dead)
		return;
	/*
	 * The timeout bounds every in-flight step, outages included. A run
	 * that may exist in Airflow is looked at once more first: it may have
	 * ended since the last poll (or while this process or Airflow was
	 * down), and then its outcome stands; only a run still queued or
	 * running is marked failed.
	 */
	if (agent_active(a->state) && act != ACT_FAIL_RUN && act != ACT_LAST_LOOK &&
	    now >= agent_deadline(a)) {
		if ((a->state == SCHED_AGENT_QUEUED || a->state == SCHED_AGENT_RUNNING) &&
		    a->dag_run_id != NULL) {
			act = ACT_LAST_LOOK;
			agent_late_begin(a, now);
			/* What the agent showed until now, for its error: the
			 * late requests write notes of their own. */
			sched_set_str(&a->deadline_note, a->error != NULL ?
			    a->error : "");
		} else {
			text = agent_timeout_text(a, ap_xprintf("timed out after"
			    " %g s before the DAG ran",
			    (double)agent_spec(a)->timeout_ms / 1000));
			sched_agent_attempt_failed(a, SCHED_AGENT_TIMED_OUT, text, true);
			free(text);
			return;
		}
	}
	/* A trigger sent again (Airflow did not answer the last one, or not
	 * in time) first passes the ownership fence: a run replaced or taken
	 * over by another process since must not start an Airflow run that
	 * nobody follows. A first trigger passed it with its queued state. */
	if (act == ACT_TRIGGER && a->trigger_sent && !a->trigger_fenced) {
		if (sched_agent_persist(a) != 0)
			return;
		a->trigger_fenced = true;
	}
	/* Whatever this agent (or any other) recorded must be durable before
	 * Airflow hears of it: with changes not yet committed, wait for the
	 * turn's one commit (sched_flush_cb) instead of committing for each
	 * agent. */
	if (act != ACT_NONE && act != ACT_START && store_batch_open(s->store)) {
		a->act = act;
		if (!a->waiting_flush) {
			TAILQ_INSERT_TAIL(&s->flush_waiters, a, wait_link);
			a->waiting_flush = true;
		}
		sched_flush_soon(s);
		return;
	}
	/* Committed by someone else: the commit must have worked. */
	if (act != ACT_NONE && act != ACT_START &&
	    store_batch_failures(s->store) != s->batch_failures) {
		sched_flush(s);
		return;
	}
	a->act = act;
	switch (act) {
	case ACT_NONE:
		break;
	case ACT_START:
		a->retry_wait = false;
		a->act = ACT_NONE;
		sched_run_advance(r);
		break;
	case ACT_DEPLOY:
		if (a->predeployed && a->pre_dag_id != NULL) {
			/* Deployed ahead: go on to the wait for the parse. */
			free(a->dag_id);
			a->dag_id = a->pre_dag_id;
			a->pre_dag_id = NULL;
			a->deploy_done = a->predeployed_at;
			a->act = ACT_NONE;
			sched_agent_set_state(a, SCHED_AGENT_WAITING_FOR_DAG, NULL);
			break;
		}
		/* Not deployed ahead (yet): the deploy of the attempt supersedes. */
		a->predeployed = false;
		sched_agent_unpre(a);
		free(a->pre_dag_id);
		a->pre_dag_id = NULL;
		if (r->entity != NULL)
			entity = json_incref(r->entity);
		else if (store_run_entity(s->store, r->run_id, &text, &cause) != STORE_OK ||
		    (entity = json_loads(text, 0, NULL)) == NULL) {
			if (cause == NULL)
				cause = ap_xstrdup("stored service entity is not JSON");
			sched_agent_attempt_failed(a, SCHED_AGENT_FAILED, cause, false);
			break;
		}
		pipeline = s->planner->pipeline(s->planner_impl, r->service_type, entity,
		    agent_name(a), &dag_id, &cause);
		if (pipeline == NULL) {
			text = ap_xprintf("cannot build the IngestionPipeline: %s", cause);
			sched_agent_attempt_failed(a, SCHED_AGENT_FAILED, text, false);
			break;
		}
		free(a->dag_id);
		a->dag_id = dag_id;
		dag_id = NULL;
		a->req = s->ops->deploy(s->airflow, pipeline, sched_agent_cb, a);
		/* Its first send follows the committed deploying state, which
		 * only the run's owner writes; later ones are asked. */
		if (a->req != NULL && s->ops->guard != NULL)
			s->ops->guard(s->airflow, a->req, sched_deploy_ours, a);
		break;
	case ACT_GET_DAG:
		a->req = s->ops->get_dag(s->airflow, a->dag_id, sched_agent_cb, a);
		break;
	case ACT_UNPAUSE:
		look = agent_import_look(a, now);
		if (look)
			a->import_looked = now;
		a->req = s->ops->unpause(s->airflow, a->dag_id,
		    look ? a->deploy_done : 0, sched_agent_cb, a);
		break;
	case ACT_TRIGGER:
		a->req = s->ops->trigger(s->airflow, a->dag_id, a->dag_run_id,
		    s->empty_conf, sched_agent_cb, a);
		if (a->trigger_sent)
			a->trigger_doubt = true;
		a->trigger_sent = true;
		a->trigger_fenced = false;
		/* The client's own retries pass the fence too (read only). */
		if (a->req != NULL && s->ops->guard != NULL)
			s->ops->guard(s->airflow, a->req, sched_trigger_ours, a);
		break;
	case ACT_GET_RUN:
	case ACT_LAST_LOOK:
	case ACT_ADOPT:
		a->req = s->ops->get_run(s->airflow, a->dag_id, a->dag_run_id,
		    sched_agent_cb, a);
		break;
	case ACT_FAIL_RUN:
		a->req = s->ops->fail_run(s->airflow, a->dag_id, a->dag_run_id,
		    sched_agent_cb, a);
		break;
	case ACT_MAX:
		break;
	}
	a->req_sent = now;
	/* The client's retries and waits (a Retry-After of minutes, an open
	 * circuit breaker) end with the agent's time, and a request past it
	 * (the last look, the PATCH) has a short grace of its own. */
	if (a->req != NULL && s->ops->limit != NULL &&
	    agent_deadline(a) != INT64_MAX) {
		int64_t left = agent_deadline(a) - now;

		if (act == ACT_LAST_LOOK || act == ACT_FAIL_RUN)
			left = a->late_until - now;
		s->ops->limit(s->airflow, a->req, left);
	}
	json_decref(pipeline);
	json_decref(entity);
	free(dag_id);
	free(text);
	free(cause);
}

/* Airflow could not be reached: say so in status, try again later. */
static void
sched_agent_unavailable(struct sched_agent *a, enum sched_act act,
    const struct airflow_result *res)
{
	char *what = ap_xprintf(NOTE_UNREACHABLE "%s (retrying)",
	    sched_act_names[act]);
	char *text = airflow_result_text(what, res);
	int64_t d = agent_unavailable_delay(a);

	/* The deadline check comes no later than the deadline. */
	if (act != ACT_LAST_LOOK && act != ACT_FAIL_RUN)
		d = agent_delay_by(a, d, agent_deadline(a));

	free(what);
	if (sched_agent_note(a, text) == 0)
		sched_agent_after(a, act, d);
	free(text);
}

/* Applies an Airflow run state seen by trigger (triggered: our new run) or
 * get_run. */
static void
sched_agent_track(struct sched_agent *a, const struct airflow_run *run,
    bool triggered)
{
	char *text;

	a->run_seen = true;
	switch (run->state) {
	case AIRFLOW_RUN_SUCCESS:
		sched_learn(a, run);
		sched_agent_end(a, SCHED_AGENT_SUCCEEDED, NULL,
		    SCHED_AGENT_SUCCEEDED);
		return;
	case AIRFLOW_RUN_FAILED:
		text = ap_xprintf("Airflow run %s of DAG %s failed", a->dag_run_id,
		    a->dag_id);
		sched_agent_attempt_failed(a, SCHED_AGENT_FAILED, text, true);
		free(text);
		return;
	case AIRFLOW_RUN_RUNNING:
		if (a->state == SCHED_AGENT_QUEUED &&
		    sched_agent_set_state(a, SCHED_AGENT_RUNNING, NULL) != 0)
			return;
		break;
	case AIRFLOW_RUN_UNKNOWN:
		/* Keep polling (the timeout bounds it), but say why. */
		text = ap_xprintf(NOTE_UNKNOWN_STATE "%s of DAG %s in state '%.64s',"
		    " which is not queued, running, success or failed; polling"
		    " until it is one of those or the timeout", a->dag_run_id,
		    a->dag_id, run->state_text != NULL ? run->state_text : "");
		if (sched_agent_note(a, text) != 0) {
			free(text);
			return;
		}
		free(text);
		break;
	default:
		break;	/* queued: keep polling */
	}
	/* A run read right again (queued or running): a note about the polls
	 * before no longer holds. */
	if (run->state != AIRFLOW_RUN_UNKNOWN && a->error != NULL &&
	    (ap_startswith(a->error, NOTE_UNREADABLE) ||
	    ap_startswith(a->error, NOTE_UNKNOWN_STATE))) {
		agent_log(AP_LOG_INFO, a,
		    "run %s agent %s: Airflow run %s reads %s again",
		    a->run->run_id, agent_name(a), a->dag_run_id, run->state_text);
		sched_set_str(&a->error, NULL);
		if (sched_agent_persist(a) != 0)
			return;
	}
	sched_agent_after(a, ACT_GET_RUN, triggered ? agent_first_poll_delay(a) :
	    agent_poll_delay(a, agent_deadline(a)));
}

/* Whether Airflow's answer to marking a run failed (or reading it) says
 * that trying again cannot help: 400, 405, 409 and 422. Not 401 or 403
 * (credentials are fixed and serve restarted), nor 408 or 429. */
static bool
halt_hopeless(const struct airflow_result *res)
{
	int st = res->error.http_status;

	/* (A login route missing is fixed with the setup: the halt waits.) */
	return res->status == AIRFLOW_REJECTED && !no_login(res) && (st == 400 ||
	    st == 405 || st == 409 || st == 422);
}

/* How long after a failed try at marking an Airflow run failed (tries
 * before it) the next one comes: 5 s, doubling, up to
 * unreachable_retry_max_ms. */
static int64_t
halt_wait(const struct sched *s, int64_t tries)
{
	int64_t wait = 5000, max = s->cfg.unreachable_retry_max_ms;

	while (tries-- > 0 && wait < max)
		wait *= 2;
	return wait < max ? wait : max;
}

/* Writes the halt of Airflow run dag_run_id of run_id into the batch (due
 * at next_at; error: how a PATCH of it failed already, else NULL): 0, or
 * -1 (said) if the store refused it. */
static int
sched_halt_record(struct sched *s, const char *run_id, const char *dag_id,
    const char *dag_run_id, const char *what, int64_t next_at,
    const char *error)
{
	char *cause = NULL;

	if (sched_batch(s) == 0 && store_halt_add_failed(s->store, run_id,
	    dag_id, dag_run_id, what, next_at, error, &cause) == STORE_OK)
		return 0;
	id_log(AP_LOG_ERROR, run_id,
	    "run %s: cannot record Airflow run %s as to be marked failed: %s",
	    run_id, dag_run_id, cause ? cause : "state store error");
	free(cause);
	return -1;
}

/*
 * The PATCH of a's Airflow run failed: it goes into the store's halts, in
 * the batch that ends a, for a process that rescans the store (serve) to
 * try again a little later. 0, or -1 (said) if the store refused it.
 */
static int
sched_halt_keep(struct sched_agent *a, const char *why,
    const struct airflow_result *res)
{
	struct sched *s = a->run->s;
	char *what = ap_xprintf("agent %s %s", agent_name(a), why);
	char *error = airflow_result_text("mark failed", res);
	/* The agent's own try counts: status says how it failed. */
	int rc = sched_halt_record(s, a->run->run_id, a->dag_id, a->dag_run_id,
	    what, sched_now(s) + halt_wait(s, 0), error);

	free(error);
	free(what);
	return rc;
}

static void
sched_agent_cb(const struct airflow_result *res, void *arg)
{
	struct sched_agent *a = arg;
	enum sched_act act = a->act;
	const struct sched_agent_spec *sp = agent_spec(a);
	char *text = NULL;
	int64_t now = sched_now(a->run->s);

	a->req = NULL;
	a->act = ACT_NONE;
	if (a->run->dead)
		return;
	/* The plugin answers a deploy it could not do (an unwritable DAG
	 * folder, a pipeline it cannot build) 500 with its reason: a failed
	 * attempt, not an Airflow to wait for until the agent's timeout. */
	if (res->status == AIRFLOW_UNAVAILABLE &&
	    !(act == ACT_DEPLOY && res->error.http_status == 500) &&
	    ((act != ACT_FAIL_RUN && act != ACT_LAST_LOOK) ||
	    agent_late_retry(a, now))) {
		sched_agent_unavailable(a, act, res);
		return;
	}
	a->streak = 0;
	/* Airflow answered: it is not unreachable (whatever the answer). */
	if (res->status != AIRFLOW_UNAVAILABLE && a->error != NULL &&
	    a->state != SCHED_AGENT_PENDING && ap_startswith(a->error, NOTE_UNREACHABLE) &&
	    sched_agent_note(a, NULL) != 0)
		return;

	switch (act) {
	case ACT_DEPLOY:
		if (res->status != AIRFLOW_OK) {
			text = agent_result_text("deploy failed", res);
			sched_agent_attempt_failed(a, SCHED_AGENT_FAILED, text,
			    res->status != AIRFLOW_REJECTED);
			break;
		}
		a->deploy_done = now;
		sched_agent_set_state(a, SCHED_AGENT_WAITING_FOR_DAG, NULL);
		break;
	case ACT_UNPAUSE:
	case ACT_GET_DAG:
		/*
		 * Waiting for the parse and unpausing are one request: the PATCH
		 * answers 404 until Airflow has parsed the DAG, then the DAG. A
		 * DAG shown with import errors is read (get_dag) until parsed
		 * again, then unpaused.
		 */
		if (res->status == AIRFLOW_BAD_REPLY) {
			agent_dag_unreadable(a, act, now, res);
			break;
		}
		/* Read right again: a note about the answer before goes. */
		if (a->error != NULL && ap_startswith(a->error,
		    NOTE_DAG_UNREADABLE)) {
			sched_set_str(&a->error, NULL);
			if (sched_agent_persist(a) != 0)
				break;
		}
		if (res->status == AIRFLOW_NOT_FOUND) {
			agent_not_parsed_yet(a, now, NULL);
			break;
		}
		if (res->status != AIRFLOW_OK) {
			/* A refusal is the same on a redeploy. */
			text = agent_result_text(act == ACT_GET_DAG ? "reading the DAG"
			    " failed" : "unpausing the DAG failed", res);
			sched_agent_attempt_failed(a, SCHED_AGENT_FAILED, text,
			    !refused(res));
			break;
		}
		if (res->dag != NULL && res->dag->has_import_errors &&
		    res->dag->no_dag && (a->import_seen == 0 ||
		    res->dag->import_error_at <= a->import_seen)) {
			/*
			 * No DAG, but an error of its file stamped since the
			 * deploy: a parse of the file before it may have ended
			 * after the write, so only an error stamped again by a
			 * later parse (of the file written) fails the agent as
			 * broken. Until then it is a DAG not parsed yet.
			 */
			if (res->dag->import_error_at > a->import_seen)
				a->import_seen = res->dag->import_error_at;
			agent_not_parsed_yet(a, now, res->dag->import_error);
			break;
		}
		if (res->dag != NULL && res->dag->has_import_errors &&
		    !res->dag->no_dag &&
		    !agent_import_confirmed(a, res->dag->import_error_at) &&
		    now < a->parse_deadline) {
			/* Perhaps of the file before: read (not unpaused) until
			 * Airflow shows it without, or the error is confirmed. */
			sched_agent_after(a, ACT_GET_DAG, agent_dag_poll_delay(a));
			break;
		}
		if (res->dag != NULL && res->dag->has_import_errors) {
			/* Airflow's own message; retrying the same DAG cannot help
			 * (nor can it once Airflow has shown the error through the
			 * whole wait for the parse). */
			text = ap_xprintf("DAG %s has import errors%s: %s", a->dag_id,
			    res->dag->no_dag || a->import_later >= 2 ? "" :
			    " (still at the parse deadline)", res->dag->import_error ?
			    res->dag->import_error : "(no detail)");
			sched_agent_attempt_failed(a, SCHED_AGENT_FAILED, text, false);
			break;
		}
		if (act == ACT_GET_DAG) {
			/* Parsed without them: now unpause it. */
			sched_agent_after(a, ACT_UNPAUSE, 0);
			break;
		}
		if (!sp->run) {
			/* Deploy only: said, so that its success is not read
			 * as a run that went well. */
			text = ap_xprintf("deployed and unpaused (Airflow runs it on"
			    " its schedule, if it has one), not triggered (agents.%s.run"
			    " is false)", agent_name(a));
			sched_agent_end(a, SCHED_AGENT_SUCCEEDED, text,
			    SCHED_AGENT_SUCCEEDED);
		} else
			sched_agent_set_state(a, SCHED_AGENT_QUEUED, NULL);
		break;
	case ACT_TRIGGER:
		/* Airflow accepted the trigger (2xx) but its answer cannot be
		 * read: the run was created; read it by its dag_run_id rather
		 * than start another attempt beside it. */
		if (res->status == AIRFLOW_BAD_REPLY) {
			sched_set_str(&a->adopt_why, NULL);
			sched_agent_after(a, ACT_ADOPT, 0);
			break;
		}
		/* A send refused for its credentials (or its login) says
		 * nothing of a send before it that went unanswered: that one
		 * may have started the run, which is looked up by its
		 * dag_run_id (and looked at again until the agent's timeout,
		 * then marked failed) rather than left running unwatched. */
		if (trigger_refused_after(a, res)) {
			free(a->adopt_why);
			a->adopt_why = agent_result_text("triggering the DAG again"
			    " was refused", res);
			agent_log(AP_LOG_WARN, a, "run %s agent %s: %s; an earlier"
			    " send may have reached Airflow: looking up Airflow run"
			    " %s", a->run->run_id, agent_name(a), a->adopt_why,
			    a->dag_run_id);
			sched_agent_after(a, ACT_ADOPT, 0);
			break;
		}
		if (res->status != AIRFLOW_OK || res->run == NULL) {
			text = agent_result_text("triggering the DAG failed", res);
			sched_agent_attempt_failed(a, SCHED_AGENT_FAILED, text,
			    res->status != AIRFLOW_REJECTED);
			break;
		}
		if (res->run->adopted)
			agent_log(AP_LOG_INFO, a,
			    "run %s agent %s: adopted existing Airflow run %s",
			    a->run->run_id, agent_name(a), a->dag_run_id);
		sched_agent_track(a, res->run, !res->run->adopted);
		break;
	case ACT_ADOPT:
		if (res->status == AIRFLOW_OK && res->run != NULL) {
			agent_log(AP_LOG_INFO, a,
			    "run %s agent %s: adopted Airflow run %s (%s)",
			    a->run->run_id, agent_name(a), a->dag_run_id,
			    a->adopt_why != NULL ? "an earlier send of the trigger"
			    " started it; the last was refused" : "the trigger's"
			    " answer could not be read");
			sched_agent_track(a, res->run, true);
			break;
		}
		if (res->status != AIRFLOW_NOT_FOUND) {
			/* Not readable either, or refused (a 403): the run may
			 * exist, so look again (the deadline bounds it, then the
			 * last look marks it failed) rather than trigger a
			 * second run beside the first. */
			text = agent_result_text(NOTE_UNREADABLE, res);
			if (res->status == AIRFLOW_BAD_REPLY ||
			    sched_agent_note(a, text) == 0)
				sched_agent_after(a, ACT_ADOPT, agent_poll_delay(a,
				    agent_deadline(a)));
			break;
		}
		/* No such run: the request did not reach Airflow after all. */
		text = a->adopt_why != NULL ? ap_xprintf("%s, and " NOTE_NO_RUN
		    "%s", a->adopt_why, a->dag_run_id) : ap_xprintf("triggering"
		    " the DAG failed: its answer could not be read and "
		    NOTE_NO_RUN "%s", a->dag_run_id);
		sched_agent_unseen(a, SCHED_AGENT_FAILED, text);
		break;
	case ACT_LAST_LOOK:
		/* Past the deadline: an ended run's outcome stands; a run still
		 * queued or running (or not readable) is marked failed. */
		if (res->status == AIRFLOW_OK && res->run != NULL &&
		    (res->run->state == AIRFLOW_RUN_SUCCESS ||
		    res->run->state == AIRFLOW_RUN_FAILED)) {
			sched_agent_track(a, res->run, false);
			break;
		}
		if (res->status != AIRFLOW_NOT_FOUND) {
			agent_late_begin(a, now);
			sched_agent_after(a, ACT_FAIL_RUN, 0);
			break;
		}
		if (!a->run_seen) {
			/* Its trigger never reached Airflow (an outage until the
			 * deadline, or a crash before it was sent): nothing was
			 * lost, it timed out before the DAG ran. */
			text = agent_timeout_text(a, ap_xprintf("timed out after"
			    " %g s before the DAG ran (" NOTE_NO_RUN "%s)",
			    (double)sp->timeout_ms / 1000, a->dag_run_id));
			sched_agent_unseen(a, SCHED_AGENT_TIMED_OUT, text);
			break;
		}
		/* FALLTHROUGH */
	case ACT_GET_RUN:
		if (res->status == AIRFLOW_NOT_FOUND) {
			text = ap_xprintf("Airflow run %s of DAG %s disappeared (404)",
			    a->dag_run_id, a->dag_id);
			sched_agent_attempt_failed(a, SCHED_AGENT_LOST, text, true);
			break;
		}
		if (res->status != AIRFLOW_OK || res->run == NULL) {
			/* The run goes on in Airflow whatever one answer said:
			 * look again (the deadline bounds it, then the last look
			 * marks it failed) rather than leave it running and
			 * start another attempt beside it. */
			text = agent_result_text(NOTE_UNREADABLE, res);
			if (sched_agent_note(a, text) == 0)
				sched_agent_after(a, ACT_GET_RUN, agent_poll_delay(a,
				    agent_deadline(a)));
			break;
		}
		sched_agent_track(a, res->run, false);
		break;
	case ACT_FAIL_RUN:
		if (res->status == AIRFLOW_OK)
			text = ap_xprintf("timed out after %g s; Airflow run %s marked"
			    " failed", (double)sp->timeout_ms / 1000, a->dag_run_id);
		else {
			char *what = ap_xprintf("timed out after %g s; marking Airflow"
			    " run %s failed did not succeed", (double)sp->timeout_ms /
			    1000, a->dag_run_id);

			text = agent_result_text(what, res);
			free(what);
		}
		/* Another attempt while this one's Airflow run may still go
		 * on would run two ingestions side by side: only an Airflow
		 * run marked failed, or gone, lets the agent try again. */
		if (res->status != AIRFLOW_OK && res->status != AIRFLOW_NOT_FOUND) {
			bool keep = !halt_hopeless(res);
			char *t;

			/* Kept before the agent ends: a store that refuses
			 * it takes the run back, to look again. */
			if (keep && sched_halt_keep(a, "timed out", res) != 0) {
				sched_run_abandon(a->run, "state store error", true);
				break;
			}
			t = ap_xprintf("%s%s%s", text, a->attempt <= sp->retries ?
			    "; not retried while that run may still go on" : "", keep ?
			    "; marking it failed is tried again later" : "");
			free(text);
			text = t;
		}
		text = agent_timeout_text(a, text);
		sched_agent_attempt_failed(a, SCHED_AGENT_TIMED_OUT, text,
		    res->status == AIRFLOW_OK || res->status == AIRFLOW_NOT_FOUND);
		break;
	default:
		break;
	}
	free(text);
}

/* ---- Loading and starting runs. ---- */

/*
 * Restricts plan to the agents named in agents_json. An agent left out is
 * bridged as the planner bridges a disabled one: its dependents wait for
 * its prerequisites instead, transitively (metadata and profiler only: the
 * profiler still runs after metadata, and is skipped if metadata fails).
 */
static void
plan_restrict(struct sched_plan_view *plan, const char *agents_json)
{
	struct sched_plan_view out = { 0 };
	json_t *list;
	int map[SCHED_MAX_AGENTS];
	uint32_t eff[SCHED_MAX_AGENTS];	/* prerequisites in the run, by plan index */
	unsigned i, j, pass;
	size_t k;
	json_t *v;

	if (agents_json == NULL || (list = json_loads(agents_json, 0, NULL)) == NULL)
		return;
	for (i = 0; i < plan->n; i++) {
		map[i] = -1;
		json_array_foreach(list, k, v) {
			if (ap_streq(json_string_value(v), plan->agents[i].name)) {
				map[i] = (int)out.n;
				out.agents[out.n++] = plan->agents[i];
				break;
			}
		}
	}
	memcpy(out.warning, plan->warning, sizeof out.warning);
	/* Prerequisites come first in a plan; the passes make the result not
	 * depend on that. */
	memset(eff, 0, sizeof eff);
	for (pass = 0; pass < plan->n; pass++) {
		for (i = 0; i < plan->n; i++) {
			eff[i] = 0;
			for (j = 0; j < plan->n; j++) {
				if (plan->agents[i].after & (1u << j))
					eff[i] |= map[j] >= 0 ? 1u << j : eff[j];
			}
		}
	}
	for (i = 0; i < plan->n; i++) {
		uint32_t after = 0;

		if (map[i] < 0)
			continue;
		for (j = 0; j < plan->n; j++) {
			if (eff[i] & (1u << j))
				after |= 1u << map[j];
		}
		out.agents[map[i]].after = after;
	}
	json_decref(list);
	*plan = out;
}

/* ---- The index of driven runs by id (sched_take, sched_driving). ---- */

static uint32_t
run_hash(const char *id)
{
	uint32_t h = 2166136261u;	/* FNV-1a */

	while (*id != '\0')
		h = (h ^ (unsigned char)*id++) * 16777619u;
	return h;
}

static void
sched_index_put(struct sched *s, struct sched_run *r)
{
	struct sched_run **b;
	size_t size, i;

	r->hash = run_hash(r->run_id);
	if (s->nruns + 1 > s->index_size) {
		size = s->index_size == 0 ? 64 : s->index_size * 2;
		b = ap_xcalloc(size, sizeof *b);
		for (i = 0; i < s->index_size; i++) {
			struct sched_run *x = s->index[i], *next;

			for (; x != NULL; x = next) {
				next = x->hnext;
				x->hnext = b[x->hash & (size - 1)];
				b[x->hash & (size - 1)] = x;
			}
		}
		free(s->index);
		s->index = b;
		s->index_size = size;
	}
	b = &s->index[r->hash & (s->index_size - 1)];
	r->hnext = *b;
	*b = r;
}

static void
sched_index_del(struct sched *s, struct sched_run *r)
{
	struct sched_run **p;

	if (s->index_size == 0)
		return;
	for (p = &s->index[r->hash & (s->index_size - 1)]; *p != NULL; p = &(*p)->hnext) {
		if (*p == r) {
			*p = r->hnext;
			r->hnext = NULL;
			return;
		}
	}
}


static struct sched_run *
sched_find(const struct sched *s, const char *run_id)
{
	struct sched_run *r;
	uint32_t h = run_hash(run_id);

	if (s->index_size == 0)
		return NULL;
	for (r = s->index[h & (s->index_size - 1)]; r != NULL; r = r->hnext) {
		if (r->hash == h && strcmp(r->run_id, run_id) == 0)
			return r;
	}
	return NULL;
}

static void sched_halt_airflow_runs(struct sched *s, const char *run_id,
    const json_t *runs, const char *what);

/* A halt taken is its GET's and its PATCH's, each within the late budget,
 * before another process may take it. */
static int64_t
halt_claim_ms(const struct sched *s)
{
	return 2 * (int64_t)s->cfg.late_budget_ms + 5000;
}

/*
 * Ends what is stored of run r for agents its plan no longer has (the
 * configuration changed while the run was unfinished, or another process
 * with another plan started it): unfinished, nothing would ever finish them.
 * One that has an Airflow run is failed, and that run marked failed in
 * Airflow; the others are skipped. 0, or -1 when r was abandoned.
 */
static int
sched_run_drop_unplanned(struct sched_run *r, struct store_agent_row *rows,
    unsigned nrows)
{
	struct sched *s = r->s;
	enum sched_agent_state st;
	enum store_result rc;
	json_t *halts = json_array();
	char *cause = NULL;
	unsigned i, j;
	bool airflow;

	for (j = 0; j < nrows; j++) {
		for (i = 0; i < r->nagents; i++)
			if (strcmp(rows[j].agent, r->plan.agents[i].name) == 0)
				break;
		if (i < r->nagents || (sched_agent_state_parse(rows[j].state, &st) &&
		    sched_agent_state_final(st)))
			continue;
		airflow = rows[j].dag_id != NULL && rows[j].dag_run_id != NULL &&
		    !(sched_agent_state_parse(rows[j].state, &st) &&
		    st < SCHED_AGENT_QUEUED);
		run_log(AP_LOG_WARN, r,
		    "run %s (%s): agent %s, %s, is no longer in the plan:"
		    " it ends %s", r->run_id, r->fqn, rows[j].agent, rows[j].state,
		    airflow ? "failed, and its Airflow run is to be marked failed" :
		    "skipped");
		free(rows[j].state);
		rows[j].state = ap_xstrdup(sched_agent_state_name(airflow ?
		    SCHED_AGENT_FAILED : SCHED_AGENT_SKIPPED));
		free(rows[j].error);
		rows[j].error = ap_xprintf("no longer in the plan (the configuration"
		    " changed while the run was unfinished)%s%s", airflow ? "; no"
		    " longer followed, its Airflow run is to be marked failed: " :
		    "", airflow ? rows[j].dag_run_id : "");
		rows[j].finished_at = sched_now(s);
		rows[j].stored = true;
		if (sched_batch(s) != 0) {
			sched_run_abandon(r, "state store error", true);
			goto fail;
		}
		/* The halt first: should the agent's end then fail, the run is
		 * taken back and the agent found unplanned again. Sent here
		 * (below), so taken for the time that takes. */
		if (airflow && sched_halt_record(s, r->run_id, rows[j].dag_id,
		    rows[j].dag_run_id, "an agent no longer in the plan",
		    sched_now(s) + halt_claim_ms(s), NULL) != 0) {
			sched_run_abandon(r, "state store error", true);
			goto fail;
		}
		if ((rc = store_agent_save(s->store, r->run_id, &rows[j], &cause)) !=
		    STORE_OK) {
			/* Its new owner follows that Airflow run. */
			if (airflow)
				(void)store_halt_done(s->store, rows[j].dag_id,
				    rows[j].dag_run_id, NULL);
			if (rc == STORE_LOST)
				sched_run_lost(r);
			else {
				run_log(AP_LOG_ERROR, r,
				    "run %s: cannot persist agent %s: %s",
				    r->run_id, rows[j].agent, cause);
				sched_run_abandon(r, "state store error", true);
			}
			free(cause);
			goto fail;
		}
		if (airflow)
			json_array_append_new(halts, json_pack("{s:s, s:s}", "dag_id",
			    rows[j].dag_id, "dag_run_id", rows[j].dag_run_id));
	}
	if (json_array_size(halts) > 0)
		sched_halt_airflow_runs(s, r->run_id, halts, "an agent no longer in"
		    " the plan");
	json_decref(halts);
	return 0;
fail:
	json_decref(halts);
	return -1;
}

/*
 * Builds the in-memory run from the store (new or interrupted) and starts
 * it. The run must be claimed by us. Returns -1 with *cause on failure.
 */
static int
sched_run_load(struct sched *s, const char *run_id, char **cause)
{
	struct store_run_row *row = NULL;
	struct store_agent_row *rows = NULL;
	unsigned nrows = 0, i, j;
	struct sched_run *r = NULL;
	json_t *entity = NULL;
	char *text = NULL, *pcause = NULL;
	enum sched_run_state rst;
	int rc = -1;
	bool fresh;

	/* A step of the clock is taken up before the rows are read: they are
	 * moved with the rest, not after. */
	(void)sched_now(s);
	if (store_run_load(s->store, run_id, &row, &rows, &nrows, cause) != STORE_OK) {
		if (*cause == NULL)
			*cause = ap_xprintf("run %s not found", run_id);
		goto out;
	}
	if (!sched_run_state_parse(row->state, &rst) || sched_run_state_final(rst)) {
		*cause = ap_xprintf("run %s is %s", run_id, row->state);
		goto out;
	}
	r = ap_xcalloc(1, sizeof *r);
	r->s = s;
	r->run_id = ap_xstrdup(row->run_id);
	r->service_type = ap_xstrdup(row->service_type);
	r->fqn = ap_xstrdup(row->fqn);
	r->state = rst;
	sched_index_put(s, r);
	TAILQ_INSERT_TAIL(&s->runs, r, link);
	s->nruns++;

	if (store_run_entity(s->store, run_id, &text, cause) != STORE_OK)
		goto abandon;
	entity = json_loads(text, 0, NULL);
	if (entity == NULL || s->planner->expand(s->planner_impl, r->service_type,
	    entity, &r->plan, &pcause) != 0) {
		char *why = ap_xprintf("cannot plan the service: %s", pcause ? pcause :
		    "stored entity is not JSON");

		sched_run_set_state(r, SCHED_RUN_FAILED, why);
		free(why);
		rc = 0;
		goto out;
	}
	r->entity = json_incref(entity);
	plan_restrict(&r->plan, row->agents_json);
	r->nagents = r->plan.n;
	if (r->nagents == 0) {
		sched_run_set_state(r, SCHED_RUN_FAILED, row->agents_json ?
		    "none of the requested agents is in the plan" :
		    "the plan has no agent for this service");
		rc = 0;
		goto out;
	}
	for (i = 0; i < r->nagents; i++) {
		r->agents[i].run = r;
		r->agents[i].idx = i;
		r->agents[i].state = SCHED_AGENT_PENDING;
	}
	/* Carry over what was stored for each agent. */
	fresh = true;
	for (j = 0; j < nrows; j++) {
		for (i = 0; i < r->nagents; i++) {
			struct sched_agent *a = &r->agents[i];
			enum sched_agent_state st;

			if (strcmp(rows[j].agent, r->plan.agents[i].name) != 0)
				continue;
			if (!sched_agent_state_parse(rows[j].state, &st))
				st = SCHED_AGENT_PENDING;
			fresh = false;
			a->state = st;
			a->attempt = rows[j].attempt;
			a->dag_id = rows[j].dag_id;
			rows[j].dag_id = NULL;
			a->dag_run_id = rows[j].dag_run_id;
			rows[j].dag_run_id = NULL;
			a->error = rows[j].error;
			rows[j].error = NULL;
			a->started_at = rows[j].started_at;
			a->finished_at = rows[j].finished_at;
			a->next_at = rows[j].next_at;
			a->skip_ok = st == SCHED_AGENT_SKIPPED && !r->plan.agents[i].supported;
			sched_agent_unseen_resumed(a);
		}
	}
	if (nrows > 0 && sched_run_drop_unplanned(r, rows, nrows) != 0) {
		rc = 0;
		goto out;
	}
	if (fresh) {
		if (r->plan.warning[0] != '\0')
			run_log(AP_LOG_WARN, r, "run %s (%s): %s", r->run_id,
			    r->fqn, r->plan.warning);
		/* A new run: every agent shows as pending in status from now on. */
		for (i = 0; i < r->nagents; i++) {
			if (sched_agent_persist(&r->agents[i]) != 0) {
				rc = 0;
				goto out;
			}
		}
	} else
		run_log(AP_LOG_INFO, r, "run %s (%s): resuming", r->run_id,
		    r->fqn);
	if (r->state == SCHED_RUN_PENDING &&
	    sched_run_set_state(r, SCHED_RUN_RUNNING, NULL) != 0) {
		rc = 0;
		goto out;
	}
	/* Resume in-flight agents at the step their state implies. */
	for (i = 0; i < r->nagents; i++) {
		struct sched_agent *a = &r->agents[i];
		int64_t now = sched_now(s);

		if (agent_active(a->state)) {
			a->in_flight = true;
			s->in_flight++;
			a->poll_ms = s->cfg.poll_initial_ms;
			/* A row edited by hand or by a bug: do not guess. */
			if ((a->state >= SCHED_AGENT_WAITING_FOR_DAG && a->dag_id == NULL) ||
			    (a->state >= SCHED_AGENT_QUEUED && a->dag_run_id == NULL)) {
				sched_agent_set_state(a, SCHED_AGENT_FAILED, "stored state is"
				    " incomplete (no DAG or run id); cannot resume");
				if (r->dead)
					break;
				continue;
			}
		}
		switch (a->state) {
		case SCHED_AGENT_PENDING:
			if (a->attempt > 0 && a->next_at > now) {
				a->retry_wait = true;
				sched_agent_after(a, ACT_START, a->next_at - now);
			}
			break;
		case SCHED_AGENT_DEPLOYING:
			sched_agent_after(a, ACT_DEPLOY, 0);
			break;
		case SCHED_AGENT_WAITING_FOR_DAG:
			/* Stored with the state (none in a row of an older
			 * version: from now). */
			a->parse_deadline = a->next_at > 0 ? a->next_at : now +
			    (int64_t)s->cfg.dag_parse_deadline_s * 1000;
			/* Airflow parses a file again every so often (30 s
			 * by default), each time stamping its import error. */
			a->deploy_done = now;
			sched_agent_after(a, ACT_UNPAUSE, 0);
			break;
		case SCHED_AGENT_QUEUED:
			/* The trigger may or may not have reached Airflow: repeat it
			 * with the same dag_run_id; a 409 adopts the existing run. */
			a->trigger_doubt = true;
			sched_agent_after(a, ACT_TRIGGER, 0);
			break;
		case SCHED_AGENT_RUNNING:
			/* Seen in Airflow before: a 404 now means it is lost. */
			a->run_seen = true;
			sched_agent_after(a, ACT_GET_RUN, 0);
			break;
		default:
			break;
		}
	}
	sched_run_advance(r);
	rc = 0;
	goto out;
abandon:
	sched_run_abandon(r, NULL, false);
out:
	if (row != NULL)
		store_run_row_free(row);
	for (i = 0; i < nrows; i++)
		store_agent_row_cleanup(&rows[i]);
	free(rows);
	json_decref(entity);
	free(text);
	free(pcause);
	return rc;
}

static void
sched_admit_push(struct sched *s, const char *run_id)
{
	size_t i, n;
	char **v;

	if (s->admit_len == s->admit_cap) {
		n = s->admit_cap == 0 ? 64 : s->admit_cap * 2;
		v = ap_xreallocarray(NULL, n, sizeof *v);
		for (i = 0; i < s->admit_len; i++)
			v[i] = s->admit[(s->admit_head + i) % s->admit_cap];
		free(s->admit);
		s->admit = v;
		s->admit_cap = n;
		s->admit_head = 0;
	}
	s->admit[(s->admit_head + s->admit_len++) % s->admit_cap] = ap_xstrdup(run_id);
}

static char *
sched_admit_pop(struct sched *s)
{
	char *id;

	if (s->admit_len == 0)
		return NULL;
	id = s->admit[s->admit_head];
	s->admit_head = (s->admit_head + 1) % s->admit_cap;
	s->admit_len--;
	return id;
}

static void
sched_admit_clear(struct sched *s)
{
	char *id;

	while ((id = sched_admit_pop(s)) != NULL)
		free(id);
}

static int sched_take_now(struct sched *, const char *, char **);

/* Takes waiting runs while slots can use them, a bounded number a turn. */
static void
sched_admit_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sched *s = arg;
	unsigned n = 0;
	char *id, *cause = NULL;

	(void)fd;
	(void)what;
	while (!s->stopped && !sched_full(s) && n++ < SCHED_ADMIT_PER_TURN &&
	    (id = sched_admit_pop(s)) != NULL) {
		/* Final, or claimed by another process meanwhile: it drives it. */
		if (sched_take_now(s, id, &cause) != 0) {
			id_log(AP_LOG_DEBUG, id, "scheduler: run %s not taken: %s",
			    id, cause);
			free(cause);
			cause = NULL;
		}
		free(id);
	}
	sched_kick(s);
}

int
sched_take(struct sched *s, const char *run_id, char **cause)
{
	*cause = NULL;
	if (s->stopped) {
		*cause = ap_xstrdup("scheduler is stopping");
		return -1;
	}
	if (sched_find(s, run_id) != NULL)
		return 0;
	if (s->admit_len > 0 || sched_full(s)) {
		sched_admit_push(s, run_id);
		return 0;
	}
	return sched_take_now(s, run_id, cause);
}

static int
sched_take_now(struct sched *s, const char *run_id, char **cause)
{
	enum store_result rc;

	*cause = NULL;
	if (sched_find(s, run_id) != NULL)
		return 0;
	(void)sched_now(s);	/* a step taken up before the claim */
	rc = store_claim(s->store, run_id, cause);
	if (rc == STORE_LOST) {
		*cause = ap_xprintf("run %s is finished or driven by another process",
		    run_id);
		return -1;
	}
	if (rc != STORE_OK) {
		/* Not dropped: a rescan may be far off, or never come. */
		id_log(AP_LOG_WARN, run_id,
		    "scheduler: cannot claim run %s: %s; trying again in 5 s",
		    run_id, *cause);
		sched_retake_later(s, run_id);
		return -1;
	}
	return sched_run_load(s, run_id, cause);
}

/* ---- Stopping the Airflow runs of a replaced run. ---- */

static void
sched_halt_free(struct sched_halt *h)
{
	TAILQ_REMOVE(&h->s->halts, h, link);
	h->s->nhalts--;
	free(h->run_id);
	free(h->dag_id);
	free(h->dag_run_id);
	free(h->what);
	free(h);
}

static void sched_halt_send(struct sched_halt *h);

/* Done (marked failed, gone, or ended): its row goes. */
static void
sched_halt_done(struct sched_halt *h, const char *how)
{
	struct sched *s = h->s;
	char *cause = NULL;

	id_log(AP_LOG_INFO, h->run_id,
	    "run %s: %s: Airflow run %s of %s %s", h->run_id, h->what,
	    h->dag_run_id, h->dag_id, how);
	if (sched_batch(s) != 0 || store_halt_done(s->store, h->dag_id,
	    h->dag_run_id, &cause) != STORE_OK) {
		/* Looked at again later: found ended, then forgotten. */
		id_log(AP_LOG_WARN, h->run_id,
		    "run %s: cannot forget Airflow run %s of %s, marked"
		    " failed: %s", h->run_id, h->dag_run_id, h->dag_id, cause ?
		    cause : "state store error");
		free(cause);
	}
	sched_halt_free(h);
}

/*
 * Not done. An answer that trying again cannot change (halt_hopeless()) gives
 * it up, said as an error; otherwise the row says when to try again
 * (halt_wait()), for a process that rescans the store (serve).
 */
static void
sched_halt_failed(struct sched_halt *h, const struct airflow_result *res,
    const char *doing)
{
	struct sched *s = h->s;
	char *why = airflow_result_text(doing, res), *cause = NULL;
	int rc;

	s->halts_failed++;
	if (halt_hopeless(res)) {
		id_log(AP_LOG_ERROR, h->run_id,
		    "run %s: %s, but its Airflow run %s of %s goes on: %s;"
		    " given up", h->run_id, h->what, h->dag_run_id, h->dag_id, why);
		rc = sched_batch(s) == 0 ? store_halt_done(s->store, h->dag_id,
		    h->dag_run_id, &cause) : STORE_ERROR;
	} else {
		/* Said once as a warning; each later try, as information. */
		id_log(h->tries == 0 ? AP_LOG_WARN : AP_LOG_INFO, h->run_id,
		    "run %s: %s, but its Airflow run %s of %s goes on: %s; %s",
		    h->run_id, h->what, h->dag_run_id, h->dag_id, why, !s->recover ? "kept for"
		    " autopilot serve on this database to try again" :
		    s->cfg.rescan_ms > 0 ? "tried again later" : "tried again at"
		    " the next start (rescan_ms is 0)");
		rc = sched_batch(s) == 0 ? store_halt_failed(s->store, h->dag_id,
		    h->dag_run_id, why, sched_now(s) + halt_wait(s, h->tries), &cause) :
		    STORE_ERROR;
	}
	if (rc != STORE_OK) {
		id_log(AP_LOG_WARN, h->run_id,
		    "run %s: cannot record the try at marking Airflow run %s"
		    " failed: %s", h->run_id, h->dag_run_id, cause ? cause :
		    "state store error");
		free(cause);
	}
	free(why);
	sched_halt_free(h);
}

/*
 * A halt's first PATCH found no run while a live process held the run
 * replaced: it may have sent its trigger just before the change that made
 * the halt (its first send is not asked again), and Airflow may not have
 * it yet. Looked at once more, halt_recheck_ms later (by a process that
 * rescans the store), before it is forgotten.
 */
static void
sched_halt_not_yet(struct sched_halt *h)
{
	struct sched *s = h->s;
	char *why = ap_xprintf("Airflow had no run %s yet (a trigger sent just"
	    " before may still reach it)", h->dag_run_id), *cause = NULL;

	id_log(AP_LOG_INFO, h->run_id, "run %s: %s: %s; looked at again in"
	    " %g s", h->run_id, h->what, why, s->cfg.halt_recheck_ms / 1000.0);
	if (sched_batch(s) != 0 || store_halt_failed(s->store, h->dag_id,
	    h->dag_run_id, why, sched_now(s) + s->cfg.halt_recheck_ms,
	    &cause) != STORE_OK) {
		id_log(AP_LOG_WARN, h->run_id, "run %s: cannot record that"
		    " Airflow run %s is to be looked at again: %s", h->run_id,
		    h->dag_run_id, cause ? cause : "state store error");
		free(cause);
	}
	free(why);
	sched_halt_free(h);
}

/* Airflow has no such run: looked at again (see recheck), or done. */
static void
sched_halt_gone(struct sched_halt *h)
{
	if (h->recheck)
		sched_halt_not_yet(h);
	else
		sched_halt_done(h, "is gone");
}

static void
sched_halt_cb(const struct airflow_result *res, void *arg)
{
	struct sched_halt *h = arg;

	h->req = NULL;
	if (res->status == AIRFLOW_NOT_FOUND)
		sched_halt_gone(h);
	else if (res->status == AIRFLOW_OK)
		sched_halt_done(h, "marked failed");
	else
		sched_halt_failed(h, res, "mark failed");
}

/* A halt tried before (or found in the store): an Airflow run that has
 * ended since keeps its outcome. */
static void
sched_halt_look_cb(const struct airflow_result *res, void *arg)
{
	struct sched_halt *h = arg;
	char *how;

	h->req = NULL;
	if (res->status == AIRFLOW_NOT_FOUND) {
		sched_halt_gone(h);
	} else if (res->status == AIRFLOW_OK && res->run != NULL &&
	    (res->run->state == AIRFLOW_RUN_SUCCESS ||
	    res->run->state == AIRFLOW_RUN_FAILED)) {
		how = ap_xprintf("had ended (%s)", airflow_run_state_name(
		    res->run->state));
		sched_halt_done(h, how);
		free(how);
	} else if (res->status == AIRFLOW_OK) {
		h->look_first = false;
		sched_halt_send(h);
	} else
		sched_halt_failed(h, res, "read the Airflow run");
}

static void
sched_halt_send(struct sched_halt *h)
{
	struct sched *s = h->s;

	h->req = h->look_first ? s->ops->get_run(s->airflow, h->dag_id,
	    h->dag_run_id, sched_halt_look_cb, h) : s->ops->fail_run(s->airflow,
	    h->dag_id, h->dag_run_id, sched_halt_cb, h);
	/* As a timed-out attempt's PATCH: its tries end in time. */
	if (h->req != NULL && s->ops->limit != NULL)
		s->ops->limit(s->airflow, h->req, s->cfg.late_budget_ms);
}

static struct sched_halt *
sched_halt_new(struct sched *s, const char *run_id, const char *dag_id,
    const char *dag_run_id, const char *what)
{
	struct sched_halt *h = ap_xcalloc(1, sizeof *h);

	h->s = s;
	h->run_id = ap_xstrdup(run_id);
	h->what = ap_xstrdup(what);
	h->dag_id = ap_xstrdup(dag_id);
	h->dag_run_id = ap_xstrdup(dag_run_id);
	TAILQ_INSERT_TAIL(&s->halts, h, link);
	s->nhalts++;
	return h;
}

/* PATCHes each {run_id, dag_id, dag_run_id} of runs failed, which no agent
 * follows any more (what says why; run_id, when not given, is run_id's),
 * so that two ingestions of one service do not go on side by side and none
 * goes on unwatched. Each is in the store's halts already, written with
 * the change that ended its agent. */
static void
sched_halt_airflow_runs(struct sched *s, const char *run_id, const json_t *runs,
    const char *what)
{
	struct sched_halt *h;
	const char *of;
	size_t i;
	json_t *v;

	json_array_foreach(runs, i, v) {
		of = json_string_value(json_object_get(v, "run_id"));
		h = sched_halt_new(s, of != NULL ? of : run_id,
		    json_string_value(json_object_get(v, "dag_id")),
		    json_string_value(json_object_get(v, "dag_run_id")), what);
		h->recheck = json_is_true(json_object_get(v, "held"));
		/* The change that ends the agent (failed, with why) is on disk
		 * before Airflow hears of it, as for every other request. */
		if ((h->batch = store_batch_seq(s->store)) != 0)
			sched_flush_soon(s);
		else
			sched_halt_send(h);
	}
}

/* The store's halts that are due and not in hand here: left by a process
 * that stopped or crashed first, or tried before and due again. */
static void
sched_halts_resume(struct sched *s)
{
	struct sched_halt *h;
	const char *dag_id, *dag_run_id;
	json_t *due = NULL, *v;
	char *cause = NULL;
	size_t i;

	if (store_halts_due(s->store, 256, &due, &cause) != STORE_OK) {
		ap_error("scheduler: cannot read the Airflow runs to mark failed:"
		    " %s", cause);
		free(cause);
		return;
	}
	json_array_foreach(due, i, v) {
		dag_id = json_string_value(json_object_get(v, "dag_id"));
		dag_run_id = json_string_value(json_object_get(v, "dag_run_id"));
		TAILQ_FOREACH(h, &s->halts, link)
			if (strcmp(h->dag_id, dag_id) == 0 &&
			    strcmp(h->dag_run_id, dag_run_id) == 0)
				break;
		if (h != NULL)
			continue;
		h = sched_halt_new(s, json_string_value(json_object_get(v, "run_id")),
		    dag_id, dag_run_id, json_string_value(json_object_get(v, "what")));
		h->tries = json_integer_value(json_object_get(v, "tries"));
		h->look_first = true;
		/* Never tried, and made lately (handed over by a process that
		 * stopped before Airflow answered): a trigger sent just before
		 * may still be on its way. */
		h->recheck = h->tries == 0 && sched_now(s) - json_integer_value(
		    json_object_get(v, "created_at")) < (int64_t)s->cfg.halt_recheck_ms;
		sched_halt_send(h);
	}
	json_decref(due);
}

/*
 * Halts whose batch has ended since they were made: sent once it is
 * committed, whoever committed it (the row is durable, and nothing would
 * ask again); dropped when it was lost (nothing stored says the agent ended:
 * the run is taken back from the store, which asks again).
 */
static void
sched_halts_settle(struct sched *s)
{
	struct sched_halt *h, *next;

	for (h = TAILQ_FIRST(&s->halts); h != NULL; h = next) {
		next = TAILQ_NEXT(h, link);
		if (h->batch == 0)
			continue;
		switch (store_batch_fate(s->store, h->batch)) {
		case STORE_BATCH_OPEN:
			break;
		case STORE_BATCH_COMMITTED:
			h->batch = 0;
			sched_halt_send(h);
			break;
		case STORE_BATCH_LOST:
			s->halts_failed++;
			id_log(AP_LOG_WARN, h->run_id,
			    "run %s: %s: Airflow run %s of %s not marked failed:"
			    " the change that ends it was not committed",
			    h->run_id, h->what, h->dag_run_id, h->dag_id);
			sched_halt_free(h);
			break;
		}
	}
}

/* What waited for the fate of a batch: the attempts to count, the halts to
 * send. */
static void
sched_settle(struct sched *s)
{
	sched_counts_settle(s);
	sched_halts_settle(s);
}

void
sched_halts_cancel(struct sched *s)
{
	struct sched_halt *h;

	while ((h = TAILQ_FIRST(&s->halts)) != NULL) {
		char *cause = NULL;

		if (h->req != NULL)
			s->ops->cancel(s->airflow, h->req);
		/* Due at once for the next process, not after the claim. */
		if (store_halt_release(s->store, h->dag_id, h->dag_run_id, &cause) !=
		    STORE_OK) {
			id_log(AP_LOG_WARN, h->run_id,
			    "run %s: cannot hand Airflow run %s over: %s",
			    h->run_id, h->dag_run_id, cause);
			free(cause);
		}
		s->halts_failed++;
		id_log(AP_LOG_WARN, h->run_id,
		    "run %s: %s, but its Airflow run %s of %s was not marked"
		    " failed before the stop (kept for autopilot serve on this"
		    " database to do)", h->run_id, h->what, h->dag_run_id,
		    h->dag_id);
		sched_halt_free(h);
	}
}

unsigned
sched_halts_pending(const struct sched *s)
{
	return s->nhalts;
}

unsigned
sched_halts_failed(const struct sched *s)
{
	return s->halts_failed;
}

static enum store_result
sched_create_run(struct sched *s, const char *service_type, const char *fqn,
    const json_t *entity, const char *const *agents, bool replace, bool drive,
    const char *origin, char **run_id, char **cause)
{
	char *ent = NULL, *list = NULL, *id = NULL, *what;
	struct sched_run *old;
	enum store_result rc;
	json_t *arr, *halt = NULL;

	*run_id = NULL;
	*cause = NULL;
	if (s->stopped) {
		*cause = ap_xstrdup("scheduler is stopping");
		return STORE_ERROR;
	}
	ent = json_dumps(entity, JSON_COMPACT);
	if (ent == NULL) {
		*cause = ap_xstrdup("service entity cannot be serialised");
		return STORE_ERROR;
	}
	if (agents != NULL) {
		arr = json_array();
		for (; *agents != NULL; agents++)
			json_array_append_new(arr, json_string(*agents));
		list = json_dumps(arr, JSON_COMPACT);
		json_decref(arr);
	}
	rc = store_run_replace(s->store, service_type, fqn, ent, list, replace,
	    drive, origin, &id, &halt, cause);
	if (rc == STORE_ACTIVE) {
		*cause = ap_xprintf("service %s already has an active run %s; wait for"
		    " it to finish or ask to replace it", fqn, id);
		*run_id = id;
		goto out;
	}
	if (rc != STORE_OK)
		goto out;
	/* A replaced run we were driving stops here at once. */
	TAILQ_FOREACH(old, &s->runs, link) {
		if (ap_streq(old->fqn, fqn) && ap_streq(old->service_type, service_type)) {
			sched_run_abandon(old, "replaced", false);
			break;
		}
	}
	/* Whoever drove the old run (here or another process), its Airflow
	 * runs stop now. */
	what = ap_xprintf("replaced by %s", id);
	sched_halt_airflow_runs(s, id, halt, what);
	free(what);
	json_decref(halt);
	/* Recorded and claimed: a store error now (a lock held too long)
	 * leaves a run to take back (a claim that failed is tried again in
	 * 5 s, said; the lease renewal takes up any other), not one to
	 * report as never made. */
	if (drive && sched_take(s, id, cause) != 0) {
		if (!sched_retaking(s, id))
			id_log(AP_LOG_WARN, id, "run %s (%s): recorded, but not"
			    " taken up here now: %s", id, fqn, *cause);
		free(*cause);
		*cause = NULL;
	}
	*run_id = id;
out:
	free(ent);
	free(list);
	return rc;
}

enum store_result
sched_submit(struct sched *s, const char *service_type, const char *fqn,
    const json_t *entity, const char *const *agents, bool replace,
    const char *origin, char **run_id, char **cause)
{
	return sched_create_run(s, service_type, fqn, entity, agents, replace, true,
	    origin, run_id, cause);
}

enum store_result
sched_record(struct sched *s, const char *service_type, const char *fqn,
    const json_t *entity, const char *const *agents, bool replace,
    const char *origin, char **run_id, char **cause)
{
	return sched_create_run(s, service_type, fqn, entity, agents, replace, false,
	    origin, run_id, cause);
}

/* ---- Runs that follow a run an event joined (store_run_end). ---- */

static void
sched_drop_followups(struct sched *s)
{
	size_t i;

	for (i = 0; i < s->nfollowups; i++)
		free(s->followups[i]);
	free(s->followups);
	s->followups = NULL;
	s->nfollowups = 0;
}

/* Once committed: driven here, or queued for a free slot. */
static void
sched_take_followups(struct sched *s)
{
	char **ids = s->followups, *cause = NULL;
	size_t i, n = s->nfollowups;

	if (n == 0 || store_batch_open(s->store))
		return;
	s->followups = NULL;
	s->nfollowups = 0;
	for (i = 0; i < n; i++) {
		if (!s->stopped && sched_take(s, ids[i], &cause) != 0) {
			/* Still pending in the store: the next rescan takes it. */
			id_log(AP_LOG_WARN, ids[i],
			    "scheduler: run %s: not taken up now: %s", ids[i],
			    cause);
			free(cause);
			cause = NULL;
		}
		free(ids[i]);
	}
	free(ids);
}

/* ---- Leases, rescans, retakes. ---- */

static void
sched_claim_unfinished(struct sched *s)
{
	char **ids = NULL, *cause = NULL;
	size_t i;

	/* Runs still waiting for admission are found again once admitted. */
	if (s->admit_len > 0)
		return;
	/* A step of the clock is taken up (our leases renewed) before the
	 * leases of others are compared with it. */
	(void)sched_now(s);
	if (store_claim_unfinished(s->store, 0, &ids, &cause) != STORE_OK) {
		ap_error("scheduler: cannot claim unfinished runs: %s", cause);
		free(cause);
		return;
	}
	for (i = 0; ids[i] != NULL; i++) {
		if (sched_find(s, ids[i]) != NULL)
			continue;
		if (s->admit_len > 0 || sched_full(s)) {
			sched_admit_push(s, ids[i]);
			continue;
		}
		if (sched_run_load(s, ids[i], &cause) != 0) {
			id_log(AP_LOG_WARN, ids[i],
			    "scheduler: cannot resume run %s: %s", ids[i], cause);
			free(cause);
			cause = NULL;
		}
	}
	store_strv_free(ids);
}

/*
 * An agent whose request has had no answer for slow_note_ms says so while
 * the client goes on trying (up to max_retries attempts of request_timeout_ms
 * each): a hung Airflow shows in status within a minute, not after minutes.
 * The first answer clears the note, as it clears "Airflow unreachable".
 */
static void
sched_slow_notes(struct sched *s)
{
	struct sched_run *r, *next;
	struct sched_agent *a;
	int64_t now = sched_now(s);
	char *text, since[40];
	unsigned i;

	for (r = TAILQ_FIRST(&s->runs); r != NULL; r = next) {
		next = TAILQ_NEXT(r, link);
		for (i = 0; i < r->nagents && !r->dead; i++) {
			a = &r->agents[i];
			if (a->req == NULL || now - a->req_sent < (int64_t)s->cfg.slow_note_ms ||
			    (a->error != NULL && ap_startswith(a->error, NOTE_UNREACHABLE)))
				continue;
			/* Since when, not for how long: the note is written
			 * once, and a length would go stale. */
			ap_format_time(a->req_sent, since, sizeof since);
			text = ap_xprintf(NOTE_UNREACHABLE "%s (no answer since %s;"
			    " retrying)", sched_act_names[a->act], since);
			(void)sched_agent_note(a, text);
			free(text);
		}
	}
}

/*
 * Fewer runs renewed than this process drives: one was taken from it
 * (replaced by another process, most likely). Each is looked at now rather
 * than at its next write, which a slow poll may put off by poll_max_ms.
 */
static void
sched_check_owned(struct sched *s)
{
	struct sched_run *r;
	char **lost;
	size_t n = 0, i;

	lost = ap_xcalloc(s->nruns + 1, sizeof *lost);
	TAILQ_FOREACH(r, &s->runs, link)
		if (!sched_run_ours(r))
			lost[n++] = ap_xstrdup(r->run_id);
	/* Abandoned apart from the walk: an observer told of one may act. */
	for (i = 0; i < n; i++) {
		if ((r = sched_find(s, lost[i])) != NULL)
			sched_run_lost(r);
		free(lost[i]);
	}
	free(lost);
}

/* Counts the runs renewed that this process drives, and notes others
 * while none waits for admission (those waiting are owned, some of them). */
static void
sched_lease_seen(const char *run_id, void *arg)
{
	struct sched_lease_count *c = arg;

	if (sched_find(c->s, run_id) != NULL)
		c->driven++;
	else if (c->s->admit_len == 0 && c->norphans < SCHED_LEASE_ORPHANS)
		c->orphans[c->norphans++] = ap_xstrdup(run_id);
}

bool
sched_retaking(const struct sched *s, const char *run_id)
{
	const struct sched_retake *t;

	TAILQ_FOREACH(t, &s->retakes, link)
		if (strcmp(t->run_id, run_id) == 0)
			return true;
	return false;
}

/*
 * Renews the leases of the runs this process owns, and compares them with
 * those it drives: fewer of these renewed than driven, one at least is not
 * its own any more (replaced by another process, most likely), and each is
 * looked at. A run renewed that it neither drives nor has waiting (for
 * admission, or to be taken back after a store error) is driven by no one:
 * a run whose end was written in a commit that failed after the run was let
 * go (active on disk again), or one whose load failed; a serve takes it up
 * again (as a rescan would, which may be off or put off).
 */
static void
sched_lease_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sched *s = arg;
	struct sched_lease_count c = { .s = s };
	char *cause = NULL;
	unsigned i;

	if (store_lease_renew(s->store, sched_lease_seen, &c, NULL, &cause) != STORE_OK) {
		ap_error("scheduler: cannot renew leases: %s", cause);
		free(cause);
		cause = NULL;
		while (c.norphans > 0)
			free(c.orphans[--c.norphans]);
	} else if (c.driven < s->nruns)
		sched_check_owned(s);
	for (i = 0; i < c.norphans; i++) {
		if (s->recover && !s->stopped && sched_find(s, c.orphans[i]) == NULL &&
		    !sched_retaking(s, c.orphans[i])) {
			id_log(AP_LOG_WARN, c.orphans[i],
			    "scheduler: run %s is this process's but driven by none"
			    " of it; taking it up again", c.orphans[i]);
			if (sched_take(s, c.orphans[i], &cause) != 0) {
				id_log(AP_LOG_WARN, c.orphans[i],
				    "scheduler: cannot take run %s up again: %s",
				    c.orphans[i], cause != NULL ? cause : "?");
				free(cause);
				cause = NULL;
			}
		}
		free(c.orphans[i]);
	}
}

static void
sched_note_cb(evutil_socket_t fd, short what, void *arg)
{
	sched_slow_notes(arg);
}

static void
sched_rescan_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sched *s = arg;

	if (!s->stopped) {
		sched_claim_unfinished(s);
		sched_halts_resume(s);
	}
}

static void
sched_retake_free(struct sched_retake *t)
{
	TAILQ_REMOVE(&t->s->retakes, t, link);
	event_free(t->ev);
	free(t->run_id);
	free(t);
}

static void
sched_retake_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sched_retake *t = arg;
	struct sched *s = t->s;
	char *run_id = ap_xstrdup(t->run_id), *cause = NULL;

	sched_retake_free(t);
	if (sched_take(s, run_id, &cause) != 0) {
		id_log(AP_LOG_WARN, run_id,
		    "scheduler: cannot take run %s back: %s", run_id,
		    cause ? cause : "?");
		free(cause);
	}
	free(run_id);
}

/* ---- Public API. ---- */

struct sched *
sched_create(struct event_base *base, struct store *store,
    const struct airflow_ops *ops, void *airflow, const struct sched_planner *planner,
    void *planner_impl, const struct sched_config *cfg)
{
	struct sched *s = ap_xcalloc(1, sizeof *s);

	s->base = base;
	s->store = store;
	s->batch_failures = store_batch_failures(store);
	s->ops = ops;
	s->airflow = airflow;
	s->planner = planner;
	s->planner_impl = planner_impl;
	if (cfg != NULL)
		s->cfg = *cfg;
	else
		sched_config_defaults(&s->cfg);
	if (s->cfg.max_agents_in_flight == 0)
		s->cfg.max_agents_in_flight = 1;
	if (s->cfg.poll_backoff < 1.0)
		s->cfg.poll_backoff = 1.0;
	TAILQ_INIT(&s->runs);
	TAILQ_INIT(&s->flush_waiters);
	TAILQ_INIT(&s->pre_queue);
	TAILQ_INIT(&s->dead);
	TAILQ_INIT(&s->ring);
	TAILQ_INIT(&s->retakes);
	TAILQ_INIT(&s->halts);
	store_set_halt_claim(store, halt_claim_ms(s),
	    (int64_t)s->cfg.unreachable_retry_max_ms);
	s->empty_conf = json_object();
	s->kick_ev = event_new(base, -1, 0, sched_kick_cb, s);
	s->admit_ev = event_new(base, -1, 0, sched_admit_cb, s);
	s->reap_ev = event_new(base, -1, 0, sched_reap_cb, s);
	s->flush_ev = event_new(base, -1, 0, sched_flush_cb, s);
	s->lease_ev = event_new(base, -1, EV_PERSIST, sched_lease_cb, s);
	s->note_ev = event_new(base, -1, EV_PERSIST, sched_note_cb, s);
	s->rescan_ev = event_new(base, -1, EV_PERSIST, sched_rescan_cb, s);
	return s;
}

void
sched_set_observer(struct sched *s, sched_observer_cb cb, void *arg)
{
	s->observer = cb;
	s->observer_arg = arg;
}

int
sched_start(struct sched *s, bool recover, char **cause)
{
	struct timeval tv;
	unsigned renew = s->cfg.lease_ms / 3;

	*cause = NULL;
	if (s->started)
		return 0;
	s->started = true;
	s->recover = recover;
	tv.tv_sec = renew / 1000;
	tv.tv_usec = (renew % 1000) * 1000;
	evtimer_add(s->lease_ev, &tv);
	/* A note comes within a sixth of slow_note_ms of being due. */
	renew = s->cfg.slow_note_ms / 6 > 0 ? s->cfg.slow_note_ms / 6 : 1;
	tv.tv_sec = renew / 1000;
	tv.tv_usec = (renew % 1000) * 1000;
	if (s->cfg.slow_note_ms > 0)
		evtimer_add(s->note_ev, &tv);
	if (recover) {
		sched_claim_unfinished(s);
		sched_halts_resume(s);
		if (s->cfg.rescan_ms > 0) {
			tv.tv_sec = s->cfg.rescan_ms / 1000;
			tv.tv_usec = (s->cfg.rescan_ms % 1000) * 1000;
			evtimer_add(s->rescan_ev, &tv);
		}
	}
	return 0;
}

size_t
sched_bytes_per_run(void)
{
	return sizeof(struct sched_run) + 4 * event_get_struct_event_size();
}

unsigned
sched_active_runs(const struct sched *s)
{
	return s->nruns;
}

unsigned
sched_agents_in_flight(const struct sched *s)
{
	return s->in_flight;
}

size_t
sched_runs_waiting(const struct sched *s)
{
	return s->admit_len;
}

bool
sched_driving(const struct sched *s, const char *run_id)
{
	return sched_find(s, run_id) != NULL;
}

void
sched_stop(struct sched *s)
{
	struct sched_run *r;
	char *cause = NULL;

	if (s->stopped)
		return;
	while ((r = TAILQ_FIRST(&s->runs)) != NULL)
		sched_run_abandon(r, NULL, false);
	s->stopped = true;
	while (!TAILQ_EMPTY(&s->retakes))
		sched_retake_free(TAILQ_FIRST(&s->retakes));
	/* Waiting runs are unclaimed (or released below): the next start, or
	 * another process, takes them. */
	sched_admit_clear(s);
	event_del(s->admit_ev);
	/* Marking a replaced run's Airflow runs failed goes on until
	 * sched_free: a process stopping may still let it finish. */
	evtimer_del(s->lease_ev);
	evtimer_del(s->note_ev);
	evtimer_del(s->rescan_ev);
	if (store_release_all(s->store, &cause) != STORE_OK ||
	    store_flush(s->store, &cause) != STORE_OK) {
		ap_warn("scheduler: cannot release runs: %s", cause);
		free(cause);
	}
	/* Halts whose rows that commit made durable go now, and have until
	 * sched_free as the others. */
	sched_settle(s);
}

void
sched_free(struct sched *s)
{
	struct sched_run *r;

	if (s == NULL)
		return;
	while ((r = TAILQ_FIRST(&s->runs)) != NULL) {
		unsigned i;

		for (i = 0; i < r->nagents; i++)
			sched_agent_cancel(&r->agents[i]);
		TAILQ_REMOVE(&s->runs, r, link);
		sched_run_free(r);
	}
	while ((r = TAILQ_FIRST(&s->dead)) != NULL) {
		TAILQ_REMOVE(&s->dead, r, link);
		sched_run_free(r);
	}
	while (!TAILQ_EMPTY(&s->retakes))
		sched_retake_free(TAILQ_FIRST(&s->retakes));
	free(s->index);
	sched_halts_cancel(s);
	sched_drop_followups(s);
	event_free(s->kick_ev);
	event_free(s->admit_ev);
	sched_admit_clear(s);
	free(s->admit);
	free(s->uncounted);
	event_free(s->reap_ev);
	event_free(s->flush_ev);
	event_free(s->lease_ev);
	event_free(s->note_ev);
	event_free(s->rescan_ev);
	json_decref(s->empty_conf);
	free(s);
}
