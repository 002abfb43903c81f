/*
 * store.h — autopilot's durable state in SQLite (WAL): the inbox of accepted
 * webhook events, the last entity received per service, runs, and agent runs
 * with their Airflow ids, attempts, timestamps and errors.
 *
 * Every function commits before it returns, so a caller may acknowledge or
 * act on what it stored — except inside a group-commit batch (see
 * store_batch_begin), which the caller flushes before acting. Two processes (the server and a CLI re-run) may open
 * the same database: each unfinished run has an owner and a lease; only the
 * owner writes its agent rows, and a writer that lost its lease is told so
 * (STORE_LOST) instead of overwriting.
 *
 * Depends on SQLite, jansson and util only; no libevent. Calls block on disk
 * I/O (and up to busy_timeout_ms on a lock held by the other process); they
 * are short and may be called from loop callbacks. One handle per thread.
 *
 * States are stored as the strings sched.h names them ("pending", ...); the
 * store does not interpret them beyond "final or not".
 */
#ifndef AP_STORE_H
#define AP_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

/* The schema version this build writes. Older databases are migrated (after
 * a backup copy); newer ones are refused. */
#define STORE_SCHEMA_VERSION 5

struct store;

/* How long a statement waits for a lock another connection holds, unless
 * told otherwise (store_options, store_set_busy_timeout()). */
#define STORE_BUSY_TIMEOUT_MS 5000

enum store_result {
	STORE_OK = 0,
	STORE_ERROR = -1,	/* SQLite error or I/O; *cause says what */
	STORE_REPEAT = 1,	/* inbox: event id seen before; original answer returned */
	STORE_NOT_FOUND = 2,	/* no such run / service */
	STORE_ACTIVE = 3,	/* a run of this service is still active */
	STORE_LOST = 4,		/* the run is no longer ours (lease expired, replaced, ended) */
	STORE_AMBIGUOUS = 5	/* a service name stored under more than one type */
};

struct store_options {
	unsigned busy_timeout_ms;	/* 0: STORE_BUSY_TIMEOUT_MS (see
					 * store_set_busy_timeout()) */
	bool synchronous_normal;	/* false (default): synchronous=FULL */
	unsigned target_version;	/* 0: STORE_SCHEMA_VERSION (tests migrate to older) */
	int64_t lease_ms;		/* 0: 30000; how long a claim lasts unrenewed */
	const char *owner;		/* NULL: "<host>/<pid>/<random>" */
	bool no_migrate;		/* an older schema is an error, not upgraded
					 * (commands that only read) */
	bool read_only;			/* open for reading only (implies
					 * no_migrate); nothing is written, not
					 * even the journal mode or a new schema */
};

/*
 * Opens (creating if needed) the database at path, migrating an older schema
 * after writing a backup copy (path + ".v<old>.<epoch ms>.bak", logged).
 * opts may be NULL. Returns NULL and a new *cause on failure, including a
 * database written by a newer autopilot ("schema version N is newer than
 * this autopilot's M"), a database of another program (tables, but no
 * autopilot schema version), and, unless opts->read_only, a database that
 * cannot be written (read-only file or directory). Read-only, an empty
 * database opens with store_schema_version() 0 and nothing in it may be
 * queried.
 */
struct store *store_open(const char *path, const struct store_options *opts,
    char **cause);
/* Closes; accepts NULL. Does not release leases (see store_release_all). */
void store_close(struct store *s);
/* The owner id this handle claims runs with (borrowed). */
const char *store_owner(const struct store *s);
/* The schema version of the open database, and the backup written at open (NULL if none). */
unsigned store_schema_version(const struct store *s);
const char *store_backup_path(const struct store *s);
/* Now, in epoch milliseconds; tests may replace the clock (NULL: ap_wall_ms). */
void store_set_clock(struct store *s, int64_t (*now_ms)(void *), void *arg);
/* The time by that clock: what the scheduler stores and times against. */
int64_t store_clock(struct store *s);
/* The wall clock stepped by step ms: after a step ahead, for a lease's time,
 * runs are taken from other owners only when these are known dead (their
 * leases look run out until renewed). Kept in the handle, so it holds
 * whether or not the writes of store_clock_stepped() (which does this too)
 * can be made. */
void store_clock_step_seen(struct store *s, int64_t step);
/* The wall clock stepped by step ms: the start and next times of the agents
 * under way of the runs this handle drives move with it (*moved: how many
 * agents, when not NULL), and its leases are renewed by the clock as it is.
 * After a step ahead, for a lease's time, runs are taken from other owners
 * only when these are known dead (not merely their leases run out). */
enum store_result store_clock_stepped(struct store *s, int64_t step,
    unsigned *moved, char **cause);

/*
 * Inbox: records an accepted event and the run it starts, in one transaction.
 * service_type is the OpenMetadata entity type ("databaseService"...), fqn the
 * service's fully qualified name, entity_json the service entity as received.
 * The service's last entity is updated too. If the event id was seen before,
 * returns STORE_REPEAT and the original run id without changing anything.
 * If the service already has an active run, the event is recorded against
 * that run (no second run) and STORE_OK is returned with its id, and
 * *joined (when not NULL) set; the entity is then the service's, and when
 * the event asks for more than that run does (another entity, or the run
 * is limited to some agents) *follows is set: a run of the whole plan with
 * it follows that run (store_run_end). *run_id is a new string on
 * STORE_OK/STORE_REPEAT.
 * Inside a group-commit batch (store_batch_begin) the event joins the batch
 * and is durable only once store_flush() succeeds: acknowledge it after.
 */
enum store_result store_inbox_accept(struct store *s, const char *event_id,
    const char *service_type, const char *fqn, const char *entity_json,
    char **run_id, bool *joined, bool *follows, char **cause);

/*
 * Ends run_id (active, this handle's) in final state (error may be NULL),
 * all or nothing: when an event joined it (the service's entity changed
 * while it ran) and either that entity is another than the run's or the
 * run was limited to some agents, a new pending run of the service with
 * that entity is made with it, its id in *next (a new string); else *next
 * is NULL. So an event that joined a run is never left without the run it
 * asked for. STORE_LOST (nothing written) if the run is not ours any more.
 */
enum store_result store_run_end(struct store *s, const char *run_id,
    const char *state, const char *error, char **next, char **cause);

/* STORE_OK while run_id is active and this handle's (the ownership fence
 * of agent writes, read only), STORE_LOST when not. */
enum store_result store_run_owned(struct store *s, const char *run_id,
    char **cause);

/* Last entity received for a service: *entity_json and *service_type are new
 * strings. service_type may be NULL (any type): STORE_AMBIGUOUS, and a
 * *cause listing the types, when the name is stored under more than one. */
enum store_result store_service_get(struct store *s, const char *service_type,
    const char *fqn, char **entity_json, char **type_out, char **cause);
/* The same, with when it was stored (epoch ms; may be NULL). */
enum store_result store_service_get_at(struct store *s, const char *service_type,
    const char *fqn, char **entity_json, char **type_out, int64_t *stored_at,
    char **cause);
/* Records the service's entity (as store_inbox_accept does). */
enum store_result store_service_put(struct store *s, const char *service_type,
    const char *fqn, const char *entity_json, char **cause);

/*
 * Creates a pending run (CLI / admin re-run). agents_json: NULL or a JSON
 * array of agent names to restrict the run to. If the service has an active
 * run: without replace returns STORE_ACTIVE with *run_id = that run's id;
 * with replace the old run and its unfinished agents end "failed" with error
 * "replaced by <new id>"
 * and its owner (if any) finds STORE_LOST on its next write. The new run is
 * not claimed; *run_id is a new string.
 */
enum store_result store_run_create(struct store *s, const char *service_type,
    const char *fqn, const char *entity_json, const char *agents_json,
    bool replace, char **run_id, char **cause);
/* The same; origin (NULL: none) says why the run exists, as its "origin";
 * with claim the new run is claimed in the same transaction (no
 * other process takes it between its creation and the caller's take); on
 * STORE_OK *airflow_runs (a new array) holds {run_id, dag_id, dag_run_id} of
 * each replaced agent that was queued or running in Airflow, for the caller
 * to stop there. */
enum store_result store_run_replace(struct store *s, const char *service_type,
    const char *fqn, const char *entity_json, const char *agents_json,
    bool replace, bool claim, const char *origin, char **run_id,
    json_t **airflow_runs, char **cause);

/* Run status as PRODUCT.md pins it for `status --json` and GET /api/v1/runs:
 * {run_id, service{type,fqn}, state, error, created_at, started_at,
 *  finished_at, agents[{agent,state,dag_id,dag_run_id,attempts,started_at,
 *  finished_at,error}]} (times RFC 3339 or null). */
/* One run: *out is a new reference; STORE_NOT_FOUND if no such run. */
enum store_result store_run_json(struct store *s, const char *run_id,
    json_t **out, char **cause);
/* The same without its agents and halts, read as the handle sees it now:
 * inside a group-commit batch too, which it neither commits nor ends. */
enum store_result store_run_brief(struct store *s, const char *run_id,
    json_t **out, char **cause);
/* Runs newest first, optionally of one service fqn (NULL: all), at most
 * limit (0: 100). *out is a new JSON array. */
enum store_result store_runs_json(struct store *s, const char *fqn,
    unsigned limit, json_t **out, char **cause);
/* As store_runs_json, the runs made before run `before` (NULL: all);
 * STORE_NOT_FOUND when there is no such run. */
enum store_result store_runs_page(struct store *s, const char *fqn,
    const char *before, unsigned limit, json_t **out, char **cause);
/*
 * How long a statement waits for a lock another connection holds, from now
 * on (store_options.busy_timeout_ms at first). After a wait that ran out,
 * the statements of the next second give up at once: a handle used on an
 * event loop (serve's, once open) is held up at most ms a second by a
 * lock held long, and its callers see "database is locked" as any other
 * store error.
 */
void store_set_busy_timeout(struct store *s, unsigned ms);
/* For readiness probes: commits a write of the database header (its
 * schema version, unchanged) in a transaction of its own, after an open
 * batch: STORE_OK if the database can be written now, within
 * busy_timeout_ms. A lock alone touches no disk, so a full or read-only
 * filesystem would go unseen. */
enum store_result store_check_writable(struct store *s, char **cause);
/* For /metrics, read in one snapshot: runs by state (pending, running,
 * succeeded, failed), agent runs by agent and state, *agents a new
 * object {"metadata": {"succeeded": 3, ...}, ...}, and the halts (Airflow
 * runs still to be marked failed, see store_halt_add()). The counts of
 * finished runs are kept in s, so a later call reads only the runs since the
 * oldest one active. */
enum store_result store_counts(struct store *s, int64_t runs[4], json_t **agents,
    int64_t *halts, char **cause);

/* ---- Below: what the scheduler uses to drive runs. ---- */

/*
 * Halts: Airflow runs to be marked failed (PATCH) that no agent follows any
 * more, kept until Airflow has taken the PATCH or has no such run. Each is
 * written in the transaction that ends its agent (store_run_replace() adds
 * those of the run it replaces), so none is lost to a crash or an outage.
 * next_at: not looked at again before then (ms since the epoch; 0: now).
 */
enum store_result store_halt_add(struct store *s, const char *run_id,
    const char *dag_id, const char *dag_run_id, const char *what,
    int64_t next_at, char **cause);
/* The same, for an Airflow run whose PATCH failed already (error): that
 * try is counted in its tries, as a later one's would be. */
enum store_result store_halt_add_failed(struct store *s, const char *run_id,
    const char *dag_id, const char *dag_run_id, const char *what,
    int64_t next_at, const char *error, char **cause);
/* How long a process that takes a halt has for it (its GET and PATCH)
 * before another may: store_halts_due() and the halts a replace writes,
 * which the replacing process sends. 60 s unless set. longest_ms: the
 * longest a failed try puts a halt off; one put off further than both was
 * written before the wall clock was set back (10 minutes further), and is
 * due. */
void store_set_halt_claim(struct store *s, int64_t ms, int64_t longest_ms);
/* Another try failed (error says how): counted, next one not before next_at. */
enum store_result store_halt_failed(struct store *s, const char *dag_id,
    const char *dag_run_id, const char *error, int64_t next_at, char **cause);
/* Given up by the process that took it (it stops): due now, for another. */
enum store_result store_halt_release(struct store *s, const char *dag_id,
    const char *dag_run_id, char **cause);
/* Done: Airflow took the PATCH, has no such run, or it had ended. */
enum store_result store_halt_done(struct store *s, const char *dag_id,
    const char *dag_run_id, char **cause);
/* Up to limit halts due now, the longest due first, taken: not due again
 * for the halt claim (store_set_halt_claim()), so that two processes do not
 * both send them. *out a new array of {dag_id, dag_run_id, run_id, what,
 * tries, created_at}. */
enum store_result store_halts_due(struct store *s, unsigned limit, json_t **out,
    char **cause);

/* A run as the scheduler loads it (store_run_row_free frees). */
struct store_run_row {
	char *run_id;
	char *service_type;
	char *fqn;
	char *state;
	char *agents_json;	/* NULL: all agents of the plan */
	char *error;
	int64_t created_at, started_at, finished_at;	/* epoch ms, 0 if unset */
};
void store_run_row_free(struct store_run_row *r);

/* An agent run row. Strings are owned by the row (store_agent_row_cleanup). */
struct store_agent_row {
	char *agent;
	char *state;
	char *dag_id;		/* NULL until deployed */
	char *dag_run_id;	/* NULL until an attempt is triggered */
	unsigned attempt;	/* 0 before the first attempt */
	int64_t started_at, finished_at, next_at;	/* epoch ms, 0 if unset */
	char *error;
	bool stored;		/* the row is known to exist (loaded, or saved
				 * before): store_agent_save updates it in
				 * place, which costs less than an upsert */
};
void store_agent_row_cleanup(struct store_agent_row *a);

/*
 * Claims unfinished runs (pending or running) for this handle's owner: those
 * with no owner, an expired lease, or an owner process on this host that no
 * longer exists. At most max (0: no limit), oldest first. *ids is a new
 * NULL-terminated array of new strings (free with store_strv_free).
 */
enum store_result store_claim_unfinished(struct store *s, unsigned max,
    char ***ids, char **cause);
/* Whether an unfinished run has no process driving it: no owner (its
 * process let it go, as an interrupted `autopilot run` does), an expired
 * lease, or an owner on this host that has exited. */
bool store_run_orphaned(struct store *s, const char *run_id);
/* How many unfinished runs another live process holds (0 on a store
 * error): said at start, as the runs this process did not resume. */
unsigned store_held_elsewhere(struct store *s);
/* Claims one run by id: STORE_LOST if it is final or someone else holds it.
 * Inside a group-commit batch the claim joins the batch (durable at its
 * store_flush, before which the caller must not act on the run). */
enum store_result store_claim(struct store *s, const char *run_id, char **cause);
void store_strv_free(char **v);

/* Loads a run and its agents (*agents a new array of *nagents rows). */
enum store_result store_run_load(struct store *s, const char *run_id,
    struct store_run_row **run, struct store_agent_row **agents,
    unsigned *nagents, char **cause);
/* The entity the run was created with: a new string. */
enum store_result store_run_entity(struct store *s, const char *run_id,
    char **entity_json, char **cause);

/* Sets the run's state (and error, may be NULL); final states also release
 * the claim. STORE_LOST if the run is not ours any more. */
enum store_result store_run_set_state(struct store *s, const char *run_id,
    const char *state, const char *error, bool final, char **cause);
/* Inserts or updates one agent row of an owned run. STORE_LOST if not ours.
 * a->stored is a hint only: the result is the same either way. */
enum store_result store_agent_save(struct store *s, const char *run_id,
    const struct store_agent_row *a, char **cause);

/*
 * Group commit. After store_batch_begin(), store_agent_save(),
 * store_run_set_state(), store_lease_renew() and store_release_all() run in
 * one open transaction until store_flush() commits it; every other function
 * commits the open batch first. A caller must flush before acting on what it
 * wrote (the scheduler flushes before each Airflow request), so many state
 * changes of one loop turn cost one fsync instead of one each. Until the
 * flush they are not durable. store_close() flushes.
 */
enum store_result store_batch_begin(struct store *s, char **cause);
enum store_result store_flush(struct store *s, char **cause);
bool store_batch_open(const struct store *s);
/* Batches whose commit failed (rolled back) since open: a caller that wrote
 * into a batch compares it before and after to know its writes were lost
 * even when another caller's store_flush() reported the failure. */
uint64_t store_batch_failures(const struct store *s);
/* The open batch's number (0: none), and later what became of it: so that
 * a step that must follow a write only once it is durable, and that nothing
 * would ask for again (the write ends what asked for it), knows whether to
 * go even when another caller's commit or failure ended the batch. The
 * last 32 batches lost are remembered. */
enum store_batch_fate {
	STORE_BATCH_OPEN,
	STORE_BATCH_COMMITTED,
	STORE_BATCH_LOST
};
uint64_t store_batch_seq(const struct store *s);
enum store_batch_fate store_batch_fate(const struct store *s, uint64_t seq);

/* Renews the lease of every active run this handle owns; says how many in
 * *renewed (may be NULL) and, with each, the id of each (each may not use
 * the store). */
enum store_result store_lease_renew(struct store *s, void (*each)(const char *run_id,
    void *arg), void *arg, unsigned *renewed, char **cause);
/* Gives up every claim of this handle (graceful shutdown). */
enum store_result store_release_all(struct store *s, char **cause);

/*
 * Retention (state.retention_days): in one transaction, deletes the oldest
 * runs, up to max, that ended before `before` (ms since the epoch) with
 * their agent runs, and the oldest events of the inbox received before then
 * (up to max). Only the first go, up to the first one kept. Runs kept: one
 * that ended since (until it too is old), one with Airflow runs still to
 * mark failed (halts; its id in out->held_by, a new string), an active run
 * and every one after it, and the last run (its rowid would be used again;
 * see store_counts()). Events kept: those of an active run (a delivery
 * repeated is answered as such). A service's last entity stays: copied
 * into the service's row when a deleted run held it. out->more: call again
 * for the rest. A max of 0 is taken as 1.
 */
struct store_pruned {
	unsigned runs;		/* runs deleted */
	unsigned events;	/* inbox events deleted */
	char *held_by;		/* NULL, or the run with halts that stopped it */
	/* The time (ended, received) of the row that held a look back, the
	 * later of the two: one in the future tells of a clock set back. */
	int64_t held_until;
	bool more;
};
enum store_result store_prune(struct store *s, int64_t before, unsigned max,
    struct store_pruned *out, char **cause);

#endif
