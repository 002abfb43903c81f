/*
 * sched.h — runs AutoPilot: for each service run, the agents of its plan go
 * through deploy -> wait for the DAG to be parsed and unpause it (one PATCH,
 * repeated while it answers 404) -> trigger -> track, in dependency order,
 * to a final state, every step persisted in the store before the next one
 * starts.
 *
 * Two explicit state machines, each changed by one function only:
 *   run:   pending -> running -> succeeded | failed
 *   agent: pending -> deploying -> waiting_for_dag -> queued -> running ->
 *          succeeded | failed | timed_out | lost, or pending -> skipped;
 *          a failed attempt with retries left goes back to pending.
 *
 * Everything runs on the caller's event_base: timers and Airflow callbacks,
 * no thread and no busy loop per run. The scheduler talks to Airflow only
 * through struct airflow_ops, and learns the plan through struct
 * sched_planner, so tests drive it with fakes.
 */
#ifndef AP_SCHED_H
#define AP_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "airflow.h"
#include "store.h"

struct event_base;
struct sched;

enum sched_run_state {
	SCHED_RUN_PENDING,
	SCHED_RUN_RUNNING,
	SCHED_RUN_SUCCEEDED,
	SCHED_RUN_FAILED,
	SCHED_RUN_STATE_MAX
};

enum sched_agent_state {
	SCHED_AGENT_PENDING,
	SCHED_AGENT_DEPLOYING,
	SCHED_AGENT_WAITING_FOR_DAG,
	SCHED_AGENT_QUEUED,
	SCHED_AGENT_RUNNING,
	SCHED_AGENT_SUCCEEDED,
	SCHED_AGENT_FAILED,
	SCHED_AGENT_TIMED_OUT,
	SCHED_AGENT_SKIPPED,
	SCHED_AGENT_LOST,
	SCHED_AGENT_STATE_MAX
};

const char *sched_run_state_name(enum sched_run_state s);
const char *sched_agent_state_name(enum sched_agent_state s);
/* Parses a name; false if unknown. */
bool sched_run_state_parse(const char *name, enum sched_run_state *out);
bool sched_agent_state_parse(const char *name, enum sched_agent_state *out);
bool sched_run_state_final(enum sched_run_state s);
bool sched_agent_state_final(enum sched_agent_state s);
/* Whether the transition table allows from -> to (pure; for tests and tools). */
bool sched_run_transition_legal(enum sched_run_state from, enum sched_run_state to);
bool sched_agent_transition_legal(enum sched_agent_state from,
    enum sched_agent_state to);

/* The "scheduler" configuration section. */
struct sched_config {
	unsigned max_agents_in_flight;	/* 64: agents between deploying and final, all runs */
	unsigned poll_initial_ms;	/* 2000: first poll interval of a DAG or run */
	unsigned poll_max_ms;		/* 60000: cap the interval backs off to */
	unsigned poll_floor_ms;		/* 500: never poll faster than this */
	double poll_backoff;		/* 1.5: interval multiplier after each poll */
	bool poll_learn;		/* true: first look at a run when runs of its agent end */
	bool predeploy;			/* true: an agent waiting for its prerequisites is
					 * deployed once its run has started */
	unsigned predeploy_max;		/* 32: such deploys in flight at once, all runs */
	unsigned dag_parse_deadline_s;	/* 600: deploy -> DAG parsed without errors */
	unsigned unreachable_retry_max_ms; /* 60000: cap on the retry interval while Airflow is down */
	unsigned lease_ms;		/* 30000: claim lifetime; renewed every third */
	unsigned rescan_ms;		/* 10000: look for unclaimed unfinished runs (0: never) */
	unsigned late_budget_ms;	/* 30000: the last look, then the PATCH, past an
					 * agent's deadline, each with every try (not a
					 * configuration key; tests shorten it) */
	unsigned slow_note_ms;		/* 30000: a request unanswered this long is noted
					 * on its agent (not a configuration key) */
	unsigned halt_recheck_ms;	/* 60000: an Airflow run to mark failed that
					 * Airflow did not have yet is looked at again
					 * this much later: longer than a trigger sent
					 * just before takes to reach Airflow
					 * (airflow.request_timeout_ms, 30 s by default,
					 * and the connection's time; not a
					 * configuration key) */
};

/* Fills in the defaults above. */
void sched_config_defaults(struct sched_config *c);
/*
 * Parses the "scheduler" section (borrowed; NULL means defaults) over the
 * defaults. Returns -1 and a new *cause naming the key ("scheduler.poll_max_ms:
 * must be >= poll_floor_ms") on an unknown key or a bad value.
 */
int sched_config_from_json(const json_t *section, struct sched_config *out,
    char **cause);

/* ---- What the scheduler needs to know about the plan. ---- */

#define SCHED_MAX_AGENTS 8
#define SCHED_AGENT_NAME_MAX 32

struct sched_agent_spec {
	char name[SCHED_AGENT_NAME_MAX];	/* "metadata", "lineage", ... */
	bool supported;		/* false: skipped as unsupported (counts as success) */
	bool run;		/* false: deploy only (OpenMetadata does so for the profiler) */
	uint32_t after;		/* bit i: agent i of the plan must succeed first */
	int64_t timeout_ms;	/* from the attempt's start to the run's end */
	unsigned retries;	/* further attempts after a failed one */
	int64_t retry_backoff_ms;	/* before the 2nd attempt; doubles after */
	const char *unsupported_reason;	/* static string, when !supported */
};

struct sched_plan_view {
	unsigned n;
	struct sched_agent_spec agents[SCHED_MAX_AGENTS];
	char warning[512];	/* about the entity, said as a run starts ("": none) */
};

struct sched_planner {
	/* The agents for this service (entity borrowed), in plan order with
	 * prerequisites before dependents. -1 and a new *cause if the service
	 * cannot be planned (the run fails with that message). */
	int (*expand)(void *impl, const char *service_type, const json_t *entity,
	    struct sched_plan_view *out, char **cause);
	/* The IngestionPipeline JSON to deploy for one agent (new reference) and
	 * its DAG id (*dag_id, new string). NULL and a new *cause on failure. */
	json_t *(*pipeline)(void *impl, const char *service_type,
	    const json_t *entity, const char *agent, char **dag_id, char **cause);
};

/* ---- Progress. ---- */

/* An agent (agent != NULL) or run (agent == NULL) changed state. Strings are
 * borrowed for the call. Runs on the loop; may call sched_* functions except
 * sched_free. A run-level event with old_state equal to new_state means this
 * scheduler stopped driving the run before it ended (replaced, taken over by
 * another process, or a store error); error says why. */
struct sched_event {
	const char *run_id;
	const char *service_type;
	const char *fqn;
	const char *agent;	/* NULL for a run-level change */
	const char *old_state;
	const char *new_state;
	const char *dag_id;	/* agent events; may be NULL */
	const char *dag_run_id;
	unsigned attempt;
	const char *error;	/* may be NULL */
	/* A run's final state: the run made to follow it for an event that
	 * joined it (store_run_end), else NULL. */
	const char *followed_by;
};
typedef void (*sched_observer_cb)(const struct sched_event *ev, void *arg);

/*
 * Creates a scheduler on base. Borrows base, store, ops/airflow, planner and
 * planner_impl, which must outlive it; cfg is copied (NULL: defaults).
 * Does nothing until sched_start(). Never NULL.
 */
struct sched *sched_create(struct event_base *base, struct store *store,
    const struct airflow_ops *ops, void *airflow, const struct sched_planner *planner,
    void *planner_impl, const struct sched_config *cfg);
/* Cancels all Airflow requests and timers (no callbacks), frees. Claims stay
 * (call sched_stop first to hand them over). Accepts NULL. Not from an
 * observer callback. */
void sched_free(struct sched *s);

/* Sets the one observer (NULL to remove). */
void sched_set_observer(struct sched *s, sched_observer_cb cb, void *arg);

/*
 * Starts the lease timer. With recover, claims every unfinished run that is
 * not held by a live owner (crash recovery: runs resume where they stopped,
 * Airflow runs are re-adopted by their dag_run_id) and rescans periodically
 * (the server does this; a one-shot CLI re-run does not). -1 and a new *cause
 * on a store error.
 */
int sched_start(struct sched *s, bool recover, char **cause);

/*
 * Creates a run for a service (CLI/admin re-run) and starts it. entity is
 * borrowed; agents is NULL or a NULL-terminated list restricting the run.
 * STORE_ACTIVE when the service has an active run and !replace (*run_id is
 * that run's id, *cause says so); with replace the old run ends failed,
 * "replaced by <id>", and its agents queued or running in Airflow are marked
 * failed there (whichever process drove it; see sched_halts_pending).
 * origin says who asked (the run's "origin"; NULL: not said).
 * *run_id is a new string on STORE_OK/STORE_ACTIVE. STORE_OK once the run is
 * recorded, even if it could not be taken up here at once (a store error):
 * it is taken up later (sched_driving() false until then; see
 * sched_retaking()).
 */
enum store_result sched_submit(struct sched *s, const char *service_type,
    const char *fqn, const json_t *entity, const char *const *agents, bool replace,
    const char *origin, char **run_id, char **cause);
/* The same, but the run is left pending for a process that drives runs
 * (`autopilot serve`) to take up: `run --no-wait`. */
enum store_result sched_record(struct sched *s, const char *service_type,
    const char *fqn, const json_t *entity, const char *const *agents, bool replace,
    const char *origin, char **run_id, char **cause);

/*
 * Starts driving a run already in the store (e.g. just created by
 * store_inbox_accept). 0 if it is now driven here (or already was), or
 * waits for admission: when max_agents_in_flight runs (at least 16) already
 * wait for a slot, it is kept as an id and taken, oldest first, once slots
 * free up. -1 with a new *cause if it is final or held by another live
 * process (for a waiting run that is found, and logged, at admission).
 */
int sched_take(struct sched *s, const char *run_id, char **cause);

/*
 * Another user of the store's group-commit batch (the webhook) saw its
 * commit fail: state changes of this scheduler in that batch are lost, so
 * every run is dropped and taken back from the store, as after a failed
 * flush of its own.
 */
void sched_store_failed(struct sched *s, const char *cause);

/*
 * Commits the open batch now rather than at the end of the turn: 0, or -1
 * when the commit failed, handled as the end of the turn would (every run
 * dropped and taken back from the store). For a process that must not hold
 * the write lock while it waits on something else (the CLI's output).
 */
int sched_commit(struct sched *s);

/* Bytes of scheduler memory per run driven (the run, its agents and their
 * timers), for capacity planning; strings (ids, errors) come on top. */
size_t sched_bytes_per_run(void);
/* Number of runs this scheduler drives, and agents in flight. */
unsigned sched_active_runs(const struct sched *s);
unsigned sched_agents_in_flight(const struct sched *s);
/* Airflow runs of replaced runs still being marked failed (sched_submit
 * with replace): a short-lived process may run its loop for them after
 * sched_stop, which lets them go on; sched_free drops what is left. */
unsigned sched_halts_pending(const struct sched *s);
/* Of those, how many were not marked failed (Airflow refused or could not
 * be reached, the change that ended them was lost, or the stop came). */
unsigned sched_halts_failed(const struct sched *s);
/* Gives up on the halts still pending: each is said (a warning) and counted
 * as failed. sched_free does it too. */
void sched_halts_cancel(struct sched *s);
/* Attempts of one agent that ended in this process since it started, by
 * how they ended (retried or not). */
struct sched_attempt_count {
	char agent[SCHED_AGENT_NAME_MAX];
	uint64_t succeeded, failed, timed_out, lost;
};
/* The i-th agent's counts (i from 0; false past the last). */
bool sched_attempt_counts(const struct sched *s, unsigned i,
    const struct sched_attempt_count **out);
/* Runs taken while the scheduler was full, waiting to be admitted. */
size_t sched_runs_waiting(const struct sched *s);
/* True while run_id is driven by this scheduler. */
bool sched_driving(const struct sched *s, const char *run_id);
/* True while run_id, dropped after a state store error (or recorded but
 * not taken up), is to be taken back here in a few seconds. */
bool sched_retaking(const struct sched *s, const char *run_id);

/*
 * Graceful stop: cancels timers and requests, releases every claim so
 * another process (or the next start) resumes at once. Safe because each
 * step is persisted before it is acted on. The scheduler accepts nothing
 * afterwards; free it with sched_free.
 */
void sched_stop(struct sched *s);

#endif
