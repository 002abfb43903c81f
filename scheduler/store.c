/*
 * store.c — SQLite state: inbox, services, runs, agent runs, leases.
 *
 * Durability choice: WAL with synchronous=FULL by default. In WAL mode NORMAL
 * stays consistent after any crash but may lose the last commits on power
 * loss; since a 202 to OpenMetadata promises the event is stored and a
 * persisted "queued" promises we never trigger twice, FULL (fsync of the WAL
 * on every commit) is the honest default. NORMAL is an option for hosts that
 * accept that window (the benchmark reports both).
 *
 * Writes that change state run inside BEGIN IMMEDIATE so the write lock is
 * taken up front (a deferred transaction that upgrades later can fail with
 * SQLITE_BUSY without waiting out busy_timeout). Statements are prepared once
 * and cached for the life of the handle.
 *
 * Depends on SQLite, jansson, util and log only.
 */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "log.h"
#include "util.h"

#define ACTIVE_STATES "('pending','running')"
/* How much later than this process puts a halt off one is taken as written
 * before the clock was set back (store_halts_due). */
#define STORE_HALT_AHEAD_MS (10 * 60 * 1000)
/* The ownership fence: run ?1 is active and owned by parameter o; of
 * agent writes, as OWNED_RUN with o = ?11. */
#define OWNED_BY(o) "run_id = ?1 AND owner = " o " AND state IN " ACTIVE_STATES
#define OWNED_RUN " (SELECT 1 FROM runs WHERE " OWNED_BY("?11") ")"

/* Each migration takes the schema from version i to i + 1. */
static const char *const store_migrations[STORE_SCHEMA_VERSION] = {
	/* 0 -> 1: inbox, services, runs, agent runs. */
	"CREATE TABLE inbox ("
	"  event_id TEXT PRIMARY KEY,"
	"  run_id TEXT NOT NULL,"
	"  service_type TEXT NOT NULL,"
	"  fqn TEXT NOT NULL,"
	"  received_at INTEGER NOT NULL);"
	"CREATE TABLE services ("
	"  service_type TEXT NOT NULL,"
	"  fqn TEXT NOT NULL,"
	"  entity TEXT NOT NULL,"
	"  updated_at INTEGER NOT NULL,"
	"  PRIMARY KEY (service_type, fqn));"
	"CREATE TABLE runs ("
	"  run_id TEXT PRIMARY KEY,"
	"  service_type TEXT NOT NULL,"
	"  fqn TEXT NOT NULL,"
	"  state TEXT NOT NULL,"
	"  entity TEXT NOT NULL,"
	"  agents TEXT,"
	"  error TEXT,"
	"  created_at INTEGER NOT NULL,"
	"  started_at INTEGER NOT NULL DEFAULT 0,"
	"  finished_at INTEGER NOT NULL DEFAULT 0);"
	"CREATE INDEX runs_by_fqn ON runs (fqn);"
	"CREATE TABLE agent_runs ("
	"  run_id TEXT NOT NULL REFERENCES runs (run_id),"
	"  agent TEXT NOT NULL,"
	"  state TEXT NOT NULL,"
	"  dag_id TEXT,"
	"  dag_run_id TEXT,"
	"  attempt INTEGER NOT NULL DEFAULT 0,"
	"  started_at INTEGER NOT NULL DEFAULT 0,"
	"  finished_at INTEGER NOT NULL DEFAULT 0,"
	"  error TEXT,"
	"  PRIMARY KEY (run_id, agent));",
	/* 1 -> 2: owners and leases (two processes on one database), and the
	 * next poll time so a resumed agent keeps its backoff. */
	"ALTER TABLE runs ADD COLUMN owner TEXT;"
	"ALTER TABLE runs ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE agent_runs ADD COLUMN next_at INTEGER NOT NULL DEFAULT 0;"
	"CREATE INDEX runs_active ON runs (state) WHERE state IN " ACTIVE_STATES ";",
	/* 2 -> 3: a service whose last entity came with a new run refers to
	 * that run's (entity_run; its own entity column is then ''), so the
	 * entity is stored once. A run's entity changes only before the run
	 * is taken up, together with its service's (store_inbox_accept()),
	 * and a run is deleted (store_prune()) only after its entity is
	 * copied back. */
	"ALTER TABLE services ADD COLUMN entity_run TEXT;",
	/* 3 -> 4: Airflow runs to be marked failed that no agent follows any
	 * more (of a replaced run, of an agent gone from the plan, of a
	 * timed-out attempt whose PATCH failed), written with the change that
	 * ends their agent and deleted once Airflow took the PATCH (or has no
	 * such run): a crash or an outage in between does not lose them. */
	"CREATE TABLE halts ("
	"  dag_id TEXT NOT NULL,"
	"  dag_run_id TEXT NOT NULL,"
	"  run_id TEXT NOT NULL,"
	"  what TEXT NOT NULL,"
	"  tries INTEGER NOT NULL DEFAULT 0,"
	"  next_at INTEGER NOT NULL DEFAULT 0,"
	"  error TEXT,"
	"  created_at INTEGER NOT NULL,"
	"  PRIMARY KEY (dag_id, dag_run_id));"
	"CREATE INDEX halts_by_run ON halts (run_id);",
	/* 4 -> 5: why a run exists (a webhook event, an admin re-run, `run`,
	 * a follow-up); NULL for the runs made before. */
	"ALTER TABLE runs ADD COLUMN origin TEXT;",
};

/* The entity of services row s (see migration 2 -> 3). Text in entity
 * with entity_run set was written by an autopilot of schema 2 still running
 * on the upgraded store (it knows nothing of entity_run): that text is the
 * newer. NULL when the run referred to is gone. */
#define SERVICE_ENTITY "CASE WHEN s.entity_run IS NULL OR s.entity <> '' THEN" \
	" s.entity ELSE (SELECT entity FROM runs WHERE run_id = s.entity_run) END"

enum store_stmt_id {
	Q_BEGIN,
	Q_COMMIT,
	Q_ROLLBACK,
	Q_SAVEPOINT,
	Q_SAVEPOINT_RELEASE,
	Q_ROLLBACK_TO,
	Q_INBOX_GET,
	Q_INBOX_PUT,
	Q_SERVICE_PUT,
	Q_SERVICE_GET,
	Q_SERVICE_GET_ANY,
	Q_ACTIVE_RUN,
	Q_RUN_INSERT,
	Q_RUN_REPLACE,
	Q_RUN_REPLACE_AGENTS,
	Q_RUN_AIRFLOW_ACTIVE,
	Q_RUN_GET,
	Q_RUN_LIST,
	Q_RUN_LIST_FQN,
	Q_RUN_ROWID,
	Q_BEGIN_READ,
	Q_HALT_ADD,
	Q_HALT_ADD_FAILED,
	Q_HALT_FAILED,
	Q_HALT_DONE,
	Q_HALT_RELEASE,
	Q_HALTS_OF,
	Q_HALTS_DUE,
	Q_COUNT_BOUNDS,
	Q_HELD_ELSEWHERE,
	Q_RUN_COUNTS,
	Q_AGENT_COUNTS,
	Q_AGENT_COUNTS_OF,
	Q_RUN_ENTITY,
	Q_RUN_FOLLOWUP,
	Q_SERVICE_JOINED,
	Q_SERVICE_IS_JOINED,
	Q_RUN_ENTITY_AGENTS,
	Q_RUN_SET_ENTITY,
	Q_ACTIVE_OTHER,
	Q_RUN_OWNED,
	Q_AGENTS_OF,
	Q_CLAIM_CANDIDATES,
	Q_CLAIM_ONE_GET,
	Q_CLAIM,
	Q_RUN_SET_STATE,
	Q_RUN_SET_FINAL,
	Q_AGENT_SAVE,
	Q_AGENT_UPDATE,
	Q_RENEW,
	Q_RENEW_IDS,
	Q_SHIFT_AGENTS,
	Q_RELEASE,
	Q_PRUNE_BOUND,
	Q_PRUNE_SCAN,
	Q_PRUNE_SERVICE,
	Q_PRUNE_AGENTS,
	Q_PRUNE_RUN,
	Q_PRUNE_INBOX_SCAN,
	Q_PRUNE_INBOX,
	Q_MAX
};

static const char *const store_sql[Q_MAX] = {
	[Q_BEGIN] = "BEGIN IMMEDIATE",
	[Q_COMMIT] = "COMMIT",
	[Q_ROLLBACK] = "ROLLBACK",
	[Q_SAVEPOINT] = "SAVEPOINT one",
	[Q_SAVEPOINT_RELEASE] = "RELEASE one",
	[Q_ROLLBACK_TO] = "ROLLBACK TO one",
	[Q_INBOX_GET] = "SELECT run_id FROM inbox WHERE event_id = ?1",
	[Q_INBOX_PUT] = "INSERT INTO inbox (event_id, run_id, service_type, fqn,"
	    " received_at) VALUES (?1, ?2, ?3, ?4, ?5)",
	[Q_SERVICE_PUT] = "INSERT INTO services (service_type, fqn, entity, updated_at,"
	    " entity_run) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (service_type, fqn)"
	    " DO UPDATE SET entity = excluded.entity, updated_at = excluded.updated_at,"
	    " entity_run = excluded.entity_run",
	[Q_SERVICE_GET] = "SELECT " SERVICE_ENTITY ", service_type, updated_at FROM"
	    " services s WHERE service_type = ?1 AND fqn = ?2",
	[Q_SERVICE_GET_ANY] = "SELECT " SERVICE_ENTITY ", service_type, updated_at FROM"
	    " services s WHERE fqn = ?1 AND (" SERVICE_ENTITY ") IS NOT NULL ORDER BY"
	    " updated_at DESC",
	[Q_ACTIVE_RUN] = "SELECT run_id FROM runs WHERE service_type = ?1 AND"
	    " fqn = ?2 AND state IN " ACTIVE_STATES " ORDER BY rowid LIMIT 1",
	[Q_RUN_INSERT] = "INSERT INTO runs (run_id, service_type, fqn, state, entity,"
	    " agents, created_at, origin) VALUES (?1, ?2, ?3, 'pending', ?4, ?5, ?6,"
	    " ?7)",
	[Q_RUN_REPLACE] = "UPDATE runs SET state = 'failed', error = ?2,"
	    " finished_at = ?3, owner = NULL, lease_until = 0 WHERE run_id = ?1",
	/* An agent that never began (pending, no attempt) did not run: it is
	 * skipped, as a dependent of a failed one is; the others failed. */
	[Q_RUN_REPLACE_AGENTS] = "UPDATE agent_runs SET state = CASE WHEN state ="
	    " 'pending' AND attempt = 0 THEN 'skipped' ELSE 'failed' END, error = ?2,"
	    " finished_at = ?3 WHERE run_id = ?1 AND state NOT IN"
	    " ('succeeded','failed','timed_out','skipped','lost')",
	[Q_RUN_AIRFLOW_ACTIVE] = "SELECT dag_id, dag_run_id FROM agent_runs WHERE"
	    " run_id = ?1 AND state IN ('queued','running') AND dag_id IS NOT NULL"
	    " AND dag_run_id IS NOT NULL",
	[Q_RUN_GET] = "SELECT run_id, service_type, fqn, state, agents, error,"
	    " created_at, started_at, finished_at, owner, lease_until, origin FROM runs"
	    " WHERE run_id = ?1",
	/* Newest first, from before the run of rowid ?3. */
	[Q_RUN_LIST] = "SELECT run_id, service_type, fqn, state, agents, error,"
	    " created_at, started_at, finished_at, owner, lease_until, origin FROM"
	    " runs WHERE rowid < ?3 ORDER BY rowid DESC LIMIT ?1",
	[Q_RUN_LIST_FQN] = "SELECT run_id, service_type, fqn, state, agents, error,"
	    " created_at, started_at, finished_at, owner, lease_until, origin FROM"
	    " runs WHERE fqn = ?2 AND rowid < ?3 ORDER BY rowid DESC LIMIT ?1",
	[Q_RUN_ROWID] = "SELECT rowid FROM runs WHERE run_id = ?1",
	/* store_counts(): the oldest active run, the last run, the first and
	 * the halts; runs by state and agent runs by agent and state, of the
	 * runs with a rowid in [?1, ?2). */
	[Q_BEGIN_READ] = "BEGIN",
	/* Unfinished runs another process holds (store_held_elsewhere()). */
	[Q_HELD_ELSEWHERE] = "SELECT owner, lease_until FROM runs WHERE state IN "
	    ACTIVE_STATES " AND owner IS NOT NULL AND owner <> ?1",
	[Q_COUNT_BOUNDS] = "SELECT (SELECT min(rowid) FROM runs WHERE state IN "
	    ACTIVE_STATES "), (SELECT max(rowid) FROM runs),"
	    " (SELECT min(rowid) FROM runs), (SELECT count(*) FROM halts)",
	[Q_RUN_COUNTS] = "SELECT state, count(*) FROM runs WHERE rowid >= ?1"
	    " AND rowid < ?2 GROUP BY state",
	[Q_AGENT_COUNTS] = "SELECT agent, state, count(*) FROM agent_runs"
	    " GROUP BY agent, state",
	[Q_AGENT_COUNTS_OF] = "SELECT a.agent, a.state, count(*) FROM runs r"
	    " JOIN agent_runs a ON a.run_id = r.run_id WHERE r.rowid >= ?1"
	    " AND r.rowid < ?2 GROUP BY a.agent, a.state",
	/* Airflow runs to be marked failed (store_halt_add()). */
	[Q_HALT_ADD] = "INSERT INTO halts (dag_id, dag_run_id, run_id, what, next_at,"
	    " created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (dag_id,"
	    " dag_run_id) DO UPDATE SET run_id = excluded.run_id, what ="
	    " excluded.what, next_at = min(next_at, excluded.next_at)",
	/* ... with a PATCH of it that failed already: counted, its error
	 * kept. A row there already (another process's, which may be sending
	 * it now) keeps its due time and its why. */
	[Q_HALT_ADD_FAILED] = "INSERT INTO halts (dag_id, dag_run_id, run_id, what,"
	    " next_at, created_at, tries, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1,"
	    " ?7) ON CONFLICT (dag_id, dag_run_id) DO UPDATE SET tries = tries + 1,"
	    " error = excluded.error",
	[Q_HALT_FAILED] = "UPDATE halts SET tries = tries + 1, error = ?3,"
	    " next_at = ?4 WHERE dag_id = ?1 AND dag_run_id = ?2",
	[Q_HALT_DONE] = "DELETE FROM halts WHERE dag_id = ?1 AND dag_run_id = ?2",
	[Q_HALT_RELEASE] = "UPDATE halts SET next_at = 0 WHERE dag_id = ?1 AND"
	    " dag_run_id = ?2",
	[Q_HALTS_OF] = "SELECT dag_id, dag_run_id, what, tries, error FROM halts"
	    " WHERE run_id = ?1 ORDER BY created_at",
	/* Taken: not due again before ?3, for another process to leave. */
	[Q_HALTS_DUE] = "UPDATE halts SET next_at = ?3 WHERE rowid IN (SELECT rowid"
	    " FROM halts WHERE next_at <= ?1 OR next_at > ?4 ORDER BY next_at"
	    " LIMIT ?2)"
	    " RETURNING dag_id, dag_run_id, run_id, what, tries, created_at",
	[Q_RUN_ENTITY] = "SELECT entity FROM runs WHERE run_id = ?1",
	/* A run an event joined and asked for more than it does (marked by
	 * store_inbox_accept): the service and the event's entity. */
	[Q_RUN_FOLLOWUP] = "SELECT r.service_type, r.fqn, " SERVICE_ENTITY
	    " FROM runs r JOIN services s ON s.service_type = r.service_type AND"
	    " s.fqn = r.fqn WHERE r.run_id = ?1 AND s.entity_run = 'joined:' ||"
	    " r.run_id AND r.owner = ?2 AND r.state IN " ACTIVE_STATES,
	/* Its entity is then in entity (text): SERVICE_ENTITY reads it. */
	[Q_SERVICE_JOINED] = "UPDATE services SET entity_run = 'joined:' || ?3"
	    " WHERE service_type = ?1 AND fqn = ?2 AND entity <> ''",
	[Q_SERVICE_IS_JOINED] = "SELECT entity FROM services WHERE service_type = ?1"
	    " AND fqn = ?2 AND entity_run = 'joined:' || ?3",
	[Q_RUN_ENTITY_AGENTS] = "SELECT entity, agents FROM runs WHERE run_id = ?1",
	/* A run of the whole plan that nobody has taken up: not claimed (a
	 * run is claimed before it is loaded), no agent of it written. */
	[Q_RUN_SET_ENTITY] = "UPDATE runs SET entity = ?2 WHERE run_id = ?1"
	    " AND state = 'pending' AND agents IS NULL AND owner IS NULL AND"
	    " NOT EXISTS (SELECT 1 FROM agent_runs WHERE run_id = ?1)",
	[Q_RUN_OWNED] = "SELECT run_id FROM runs WHERE " OWNED_BY("?2"),
	[Q_ACTIVE_OTHER] = "SELECT run_id FROM runs WHERE service_type = ?1 AND"
	    " fqn = ?2 AND state IN " ACTIVE_STATES " AND run_id <> ?3 LIMIT 1",
	[Q_AGENTS_OF] = "SELECT agent, state, dag_id, dag_run_id, attempt,"
	    " started_at, finished_at, next_at, error FROM agent_runs"
	    " WHERE run_id = ?1 ORDER BY rowid",
	[Q_CLAIM_CANDIDATES] = "SELECT run_id, owner, lease_until FROM runs"
	    " WHERE state IN " ACTIVE_STATES " ORDER BY rowid",
	[Q_CLAIM_ONE_GET] = "SELECT owner, lease_until FROM runs"
	    " WHERE run_id = ?1 AND state IN " ACTIVE_STATES,
	[Q_CLAIM] = "UPDATE runs SET owner = ?2, lease_until = ?3"
	    " WHERE run_id = ?1 AND state IN " ACTIVE_STATES,
	[Q_RUN_SET_STATE] = "UPDATE runs SET state = ?2, error = ?3,"
	    " started_at = CASE WHEN started_at = 0 AND ?2 = 'running' THEN ?5"
	    " ELSE started_at END"
	    " WHERE run_id = ?1 AND owner = ?4 AND state IN " ACTIVE_STATES,
	[Q_RUN_SET_FINAL] = "UPDATE runs SET state = ?2, error = ?3,"
	    " finished_at = ?5, owner = NULL, lease_until = 0,"
	    " started_at = CASE WHEN started_at = 0 THEN ?5 ELSE started_at END"
	    " WHERE run_id = ?1 AND owner = ?4 AND state IN " ACTIVE_STATES,
	[Q_AGENT_SAVE] = "INSERT INTO agent_runs (run_id, agent, state, dag_id,"
	    " dag_run_id, attempt, started_at, finished_at, next_at, error)"
	    " SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10 WHERE EXISTS"
	    OWNED_RUN " ON CONFLICT (run_id, agent) DO UPDATE SET"
	    " state = excluded.state, dag_id = excluded.dag_id,"
	    " dag_run_id = excluded.dag_run_id, attempt = excluded.attempt,"
	    " started_at = excluded.started_at, finished_at = excluded.finished_at,"
	    " next_at = excluded.next_at, error = excluded.error",
	/* The same write for a row known to exist: no insert attempt, no
	 * conflict resolution, the same fence. */
	[Q_AGENT_UPDATE] = "UPDATE agent_runs SET state = ?3, dag_id = ?4,"
	    " dag_run_id = ?5, attempt = ?6, started_at = ?7, finished_at = ?8,"
	    " next_at = ?9, error = ?10 WHERE run_id = ?1 AND agent = ?2"
	    " AND EXISTS" OWNED_RUN,
	[Q_RENEW] = "UPDATE runs SET lease_until = ?2 WHERE owner = ?1 AND state IN "
	    ACTIVE_STATES,
	[Q_RENEW_IDS] = "UPDATE runs SET lease_until = ?2 WHERE owner = ?1 AND state IN "
	    ACTIVE_STATES " RETURNING run_id",
	/* The wall clock stepped by ?2: the times of the agents under way of
	 * the runs owner ?1 drives move with it (store_clock_stepped). */
	[Q_SHIFT_AGENTS] = "UPDATE agent_runs SET"
	    " started_at = CASE WHEN started_at > 0 THEN started_at + ?2 ELSE 0 END,"
	    " next_at = CASE WHEN next_at > 0 THEN next_at + ?2 ELSE 0 END"
	    " WHERE (started_at > 0 OR next_at > 0) AND state NOT IN"
	    " ('succeeded','failed','timed_out','skipped','lost') AND run_id IN"
	    " (SELECT run_id FROM runs WHERE owner = ?1 AND state IN "
	    ACTIVE_STATES ")",
	/* Only an active run has an owner: runs_active finds them without
	 * reading every run. */
	[Q_RELEASE] = "UPDATE runs SET owner = NULL, lease_until = 0 WHERE owner = ?1"
	    " AND state IN " ACTIVE_STATES,
	/* store_prune(): runs are looked at oldest first, below the oldest
	 * active one and below the last one (so that no rowid is used again,
	 * see store_counts()); a service's entity kept with a run is copied
	 * into its row first. */
	[Q_PRUNE_BOUND] = "SELECT coalesce((SELECT min(rowid) FROM runs WHERE"
	    " state IN " ACTIVE_STATES "), (SELECT max(rowid) FROM runs))",
	[Q_PRUNE_SCAN] = "SELECT rowid, run_id, service_type, fqn, finished_at,"
	    " EXISTS (SELECT 1 FROM halts h WHERE h.run_id = runs.run_id)"
	    " FROM runs WHERE rowid < ?1 ORDER BY rowid LIMIT ?2",
	/* Text in entity is newer (see SERVICE_ENTITY): kept. */
	[Q_PRUNE_SERVICE] = "UPDATE services SET entity = CASE WHEN entity <> ''"
	    " THEN entity ELSE (SELECT entity FROM runs WHERE run_id = ?1) END,"
	    " entity_run = NULL WHERE service_type = ?2 AND fqn = ?3 AND"
	    " entity_run = ?1",
	[Q_PRUNE_AGENTS] = "DELETE FROM agent_runs WHERE run_id = ?1",
	[Q_PRUNE_RUN] = "DELETE FROM runs WHERE rowid = ?1",
	/* An event of an active run stays: it answers a delivery repeated
	 * as such, not as a new event joining the run. */
	[Q_PRUNE_INBOX_SCAN] = "SELECT i.rowid, i.received_at, r.state IN "
	    ACTIVE_STATES " FROM inbox i LEFT JOIN runs r ON r.run_id = i.run_id"
	    " ORDER BY i.rowid LIMIT ?1",
	[Q_PRUNE_INBOX] = "DELETE FROM inbox WHERE rowid <= ?1",
};

struct store {
	sqlite3 *db;
	char *path;
	char *owner;
	char *host;
	char locality[9];	/* of this process's owner tag, see store_locality() */
	char *backup_path;
	unsigned version;
	int64_t lease_ms;
	uint64_t rand_state;
	bool no_migrate;	/* store_options.no_migrate */
	bool read_only;		/* store_options.read_only */
	bool batch;		/* a group-commit transaction is open */
	uint64_t batch_failures;	/* batch commits that failed */
	uint64_t batch_seq;		/* of the batch open or last open */
	uint64_t committed_seq;		/* of the last batch committed */
	uint64_t lost_seqs[32];		/* of the last batches lost (a ring) */
	int64_t (*now)(void *);
	void *now_arg;
	/* store_counts(): the runs with a rowid under counted_below (the
	 * first of them counted_first) are finished, and so never change
	 * again: their counts, kept. counted_agents NULL: none kept. */
	int64_t counted_below, counted_first;
	int64_t counted_runs[4];
	json_t *counted_agents;
	int64_t halt_claim_ms;		/* store_set_halt_claim() */
	int64_t halt_longest_ms;	/* ... and the longest a try puts one off */
	int64_t stepped_until;		/* store_clock_stepped(): leases wait */
	/* store_busy(): how long a statement waits for a lock another
	 * connection holds, when this wait began, and until when none waits
	 * (one waited it out in vain: the lock is held long). */
	unsigned busy_ms;
	uint64_t busy_began, busy_quiet_until;
	sqlite3_stmt *stmts[Q_MAX];
};

/* After a wait for a lock ran out, how long statements give up at once. */
#define STORE_BUSY_QUIET_MS 1000

/*
 * SQLite's busy handler: waits up to busy_ms for a lock another connection
 * holds (a write lock, most often for a commit of a few milliseconds). One
 * that held it all that time may hold it for long (an `sqlite3` shell with
 * a transaction open): for STORE_BUSY_QUIET_MS the next statements give up
 * at once (SQLITE_BUSY, "database is locked"), so that a caller on an event
 * loop is held up at most busy_ms a second, not busy_ms a statement.
 */
static int
store_busy(void *arg, int count)
{
	struct store *s = arg;
	uint64_t now = ap_mono_ms();

	if (count == 0) {
		if (now < s->busy_quiet_until)
			return 0;
		s->busy_began = now;
	}
	if (now - s->busy_began >= s->busy_ms) {
		s->busy_quiet_until = now + STORE_BUSY_QUIET_MS;
		return 0;
	}
	sqlite3_sleep(count < 4 ? 1 : count < 16 ? 5 : 20);
	return 1;
}

void
store_set_busy_timeout(struct store *s, unsigned ms)
{
	s->busy_ms = ms;
	s->busy_quiet_until = 0;
}

static int64_t
store_default_now(void *arg)
{
	(void)arg;
	return ap_wall_ms();
}

static int64_t
store_now(struct store *s)
{
	return s->now(s->now_arg);
}

int64_t
store_clock(struct store *s)
{
	return store_now(s);
}

static void
store_set_cause(struct store *s, char **cause, const char *what)
{
	if (cause != NULL)
		*cause = ap_xprintf("%s: %s: %s", s->path, what, sqlite3_errmsg(s->db));
}

static void store_batch_lost(struct store *);

/* The cached statement, reset and unbound. NULL on a prepare failure, or
 * when the open batch is found rolled back. */
static sqlite3_stmt *
store_stmt(struct store *s, enum store_stmt_id id, char **cause)
{
	sqlite3_stmt *st = s->stmts[id];

	/* SQLite rolled the open batch back itself after an error (SQLITE_FULL,
	 * IOERR, NOMEM, a RAISE(ROLLBACK)): it is lost, and no statement runs
	 * as if it were open, each committed on its own, until the caller has
	 * heard (store_batch_failures()). */
	if (s->batch && sqlite3_get_autocommit(s->db)) {
		store_batch_lost(s);
		if (cause != NULL)
			*cause = ap_xprintf("%s: the open transaction was rolled back after"
			    " an earlier error; what it held is lost", s->path);
		return NULL;
	}
	if (st == NULL) {
		if (sqlite3_prepare_v3(s->db, store_sql[id], -1,
		    SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK) {
			store_set_cause(s, cause, "prepare");
			return NULL;
		}
		s->stmts[id] = st;
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return st;
}

/*
 * Binds without a copy (SQLITE_STATIC): every statement is stepped and reset
 * in the function that bound it, while the caller's string is alive, and
 * store_stmt() clears the bindings before the statement's next use; SQLite
 * reads a binding only inside sqlite3_step().
 */
static void
bind_text(sqlite3_stmt *st, int i, const char *v)
{
	if (v == NULL)
		sqlite3_bind_null(st, i);
	else
		sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
}

static char *
col_text(sqlite3_stmt *st, int i)
{
	const unsigned char *t = sqlite3_column_text(st, i);

	return t == NULL ? NULL : ap_xstrdup((const char *)t);
}

/* Runs a statement that returns no rows. */
static int
store_exec_stmt(struct store *s, sqlite3_stmt *st, char **cause, const char *what)
{
	int rc = sqlite3_step(st);

	sqlite3_reset(st);
	if (rc != SQLITE_DONE) {
		store_set_cause(s, cause, what);
		return -1;
	}
	return 0;
}

static int
store_simple(struct store *s, enum store_stmt_id id, char **cause)
{
	sqlite3_stmt *st = store_stmt(s, id, cause);

	if (st == NULL)
		return -1;
	return store_exec_stmt(s, st, cause, store_sql[id]);
}

/* Functions with their own transaction first commit an open batch. */
static int
store_begin(struct store *s, char **cause)
{
	if (store_flush(s, cause) != STORE_OK)
		return -1;
	return store_simple(s, Q_BEGIN, cause);
}

enum store_result
store_batch_begin(struct store *s, char **cause)
{
	if (s->batch)
		return STORE_OK;
	if (store_simple(s, Q_BEGIN, cause) != 0)
		return STORE_ERROR;
	s->batch = true;
	s->batch_seq++;
	return STORE_OK;
}

/* The open batch is gone: its writes with it. */
static void
store_batch_failed(struct store *s)
{
	s->batch = false;
	s->batch_failures++;
	s->lost_seqs[s->batch_failures % (sizeof s->lost_seqs /
	    sizeof s->lost_seqs[0])] = s->batch_seq;
}

enum store_result
store_flush(struct store *s, char **cause)
{
	if (!s->batch)
		return STORE_OK;
	s->batch = false;
	if (store_simple(s, Q_COMMIT, cause) != 0) {
		store_simple(s, Q_ROLLBACK, NULL);
		store_batch_failed(s);
		return STORE_ERROR;
	}
	s->committed_seq = s->batch_seq;
	return STORE_OK;
}

uint64_t
store_batch_seq(const struct store *s)
{
	return s->batch ? s->batch_seq : 0;
}

enum store_batch_fate
store_batch_fate(const struct store *s, uint64_t seq)
{
	size_t i;

	if (s->batch && seq == s->batch_seq)
		return STORE_BATCH_OPEN;
	for (i = 0; i < sizeof s->lost_seqs / sizeof s->lost_seqs[0]; i++)
		if (s->lost_seqs[i] == seq)
			return STORE_BATCH_LOST;
	return seq <= s->committed_seq ? STORE_BATCH_COMMITTED : STORE_BATCH_LOST;
}

uint64_t
store_batch_failures(const struct store *s)
{
	return s->batch_failures;
}

bool
store_batch_open(const struct store *s)
{
	return s->batch;
}

static int
store_commit(struct store *s, char **cause)
{
	if (store_simple(s, Q_COMMIT, cause) != 0) {
		store_simple(s, Q_ROLLBACK, NULL);
		return -1;
	}
	return 0;
}

static void
store_rollback(struct store *s)
{
	if (!sqlite3_get_autocommit(s->db))
		store_simple(s, Q_ROLLBACK, NULL);
}

/*
 * The batch's transaction is gone (SQLite rolls a whole transaction back
 * after some errors, or a rollback to a savepoint failed): what joined it is
 * lost, which store_batch_failures() tells whoever wrote it. Later writes
 * are not made inside a transaction that no longer exists.
 */
static void
store_batch_lost(struct store *s)
{
	store_rollback(s);
	store_batch_failed(s);
}

/*
 * A write that joins an open group-commit batch (as a savepoint, so a
 * failure undoes this write only; durable at the batch's store_flush()) or
 * else runs in its own transaction. *nested says which, for store_done()
 * and store_undo().
 */
static int
store_join(struct store *s, bool *nested, char **cause)
{
	if (s->batch && sqlite3_get_autocommit(s->db))
		store_batch_lost(s);
	*nested = s->batch;
	return *nested ? store_simple(s, Q_SAVEPOINT, cause) : store_begin(s, cause);
}

static int
store_done(struct store *s, bool nested, char **cause)
{
	return nested ? store_simple(s, Q_SAVEPOINT_RELEASE, cause) : store_commit(s, cause);
}

/* Undoes what was written since store_begin() or, nested in a batch, since
 * the savepoint (the batch itself stays open). */
static void
store_undo(struct store *s, bool nested)
{
	if (!nested) {
		store_rollback(s);
		return;
	}
	if (sqlite3_get_autocommit(s->db) ||
	    store_simple(s, Q_ROLLBACK_TO, NULL) != 0 ||
	    store_simple(s, Q_SAVEPOINT_RELEASE, NULL) != 0)
		store_batch_lost(s);
}

static int
store_exec_sql(struct store *s, const char *sql, char **cause)
{
	char *err = NULL;

	if (sqlite3_exec(s->db, sql, NULL, NULL, &err) != SQLITE_OK) {
		if (cause != NULL)
			*cause = ap_xprintf("%s: %s", s->path, err ? err : "error");
		sqlite3_free(err);
		return -1;
	}
	return 0;
}

static uint64_t
store_rand(struct store *s)
{
	/* xorshift64*: ids need uniqueness, not secrecy. */
	s->rand_state ^= s->rand_state >> 12;
	s->rand_state ^= s->rand_state << 25;
	s->rand_state ^= s->rand_state >> 27;
	return s->rand_state * 2685821657736338717ULL;
}

/* Run ids sort by creation time and are valid in Airflow dag_run_ids. */
static char *
store_new_run_id(struct store *s)
{
	return ap_xprintf("r%011llx-%06llx", (unsigned long long)store_now(s),
	    (unsigned long long)(store_rand(s) & 0xffffff));
}

static int
store_pragma_int(struct store *s, const char *sql, int *out, char **cause)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) {
		store_set_cause(s, cause, sql);
		return -1;
	}
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*out = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		store_set_cause(s, cause, sql);
		return -1;
	}
	return 0;
}

/*
 * Creates path, empty, with mode (before umask) unless it exists (through a
 * symbolic link too, as SQLite would): SQLite would create it readable by
 * all, and a database holds service entities and Airflow's answers. Its
 * write-ahead log and index take the file's mode. With gid not -1 the file
 * gets that group, if it may. A failure is left for SQLite to meet and
 * explain.
 */
static void
store_create_private(const char *path, mode_t mode, gid_t gid)
{
	int fd = open(path, O_RDONLY | O_CREAT | O_NONBLOCK | O_CLOEXEC, mode);

	if (fd < 0)
		return;
	if (gid != (gid_t)-1 && fchown(fd, (uid_t)-1, gid) != 0)
		ap_debug("state store: %s: keeping its group: %s", path,
		    strerror(errno));
	close(fd);
}

/* Copies the live database to a backup file with the online backup API. */
static int
store_backup(struct store *s, unsigned version, char **cause)
{
	struct stat st;
	sqlite3 *dst = NULL;
	sqlite3_backup *b;
	char *path;
	int rc;

	path = ap_xprintf("%s.v%u.%lld.bak", s->path, version,
	    (long long)ap_wall_ms());
	/* Readable by no more users than the database. */
	if (stat(s->path, &st) == 0)
		store_create_private(path, st.st_mode & 0666, st.st_gid);
	else
		store_create_private(path, 0600, (gid_t)-1);
	if (sqlite3_open_v2(path, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
	    NULL) != SQLITE_OK) {
		*cause = ap_xprintf("%s: cannot create backup: %s", path,
		    dst ? sqlite3_errmsg(dst) : "out of memory");
		goto fail;
	}
	b = sqlite3_backup_init(dst, "main", s->db, "main");
	if (b == NULL) {
		*cause = ap_xprintf("%s: backup: %s", path, sqlite3_errmsg(dst));
		goto fail;
	}
	rc = sqlite3_backup_step(b, -1);
	sqlite3_backup_finish(b);
	if (rc != SQLITE_DONE) {
		*cause = ap_xprintf("%s: backup: %s", path, sqlite3_errstr(rc));
		goto fail;
	}
	sqlite3_close(dst);
	ap_info("store: backed up schema v%u database to %s before migrating", version,
	    path);
	s->backup_path = path;
	return 0;
fail:
	sqlite3_close(dst);
	unlink(path);
	free(path);
	return -1;
}

static int
store_migrate(struct store *s, unsigned target, char **cause)
{
	int version = 0, tables = 0;
	unsigned v;
	char *sql;

	if (store_pragma_int(s, "PRAGMA user_version", &version, cause) != 0 ||
	    store_pragma_int(s, "SELECT count(*) FROM sqlite_master", &tables, cause) != 0)
		return -1;
	if (version > STORE_SCHEMA_VERSION) {
		*cause = ap_xprintf("%s: schema version %d is newer than this autopilot's"
		    " (%d); it was written by a newer autopilot — upgrade autopilot"
		    " or point --state at another database", s->path, version,
		    STORE_SCHEMA_VERSION);
		return -1;
	}
	if ((unsigned)version >= target) {
		s->version = (unsigned)version;
		return 0;
	}
	/* Every schema autopilot writes has a version: tables without one
	 * are another program's, not autopilot's to back up and extend. */
	if (version == 0 && tables > 0) {
		*cause = ap_xprintf("%s: not an autopilot state database (it has %d"
		    " table%s or index%s but no autopilot schema version); point"
		    " --state (state.path) at autopilot's own database or a new"
		    " file", s->path, tables, tables == 1 ? "" : "s",
		    tables == 1 ? "" : "es");
		return -1;
	}
	if (s->read_only && version == 0) {
		s->version = 0;	/* empty: nothing to read */
		return 0;
	}
	if (s->no_migrate && version > 0) {
		*cause = ap_xprintf("%s: schema version %d is older than this autopilot's"
		    " (%u); `autopilot serve` or `autopilot run` upgrades it (after a"
		    " backup copy); this command only reads and leaves it as it is",
		    s->path, version, target);
		return -1;
	}
	if (version > 0 || tables > 0) {
		if (store_backup(s, (unsigned)version, cause) != 0)
			return -1;
	}
	if (store_exec_sql(s, "BEGIN IMMEDIATE", cause) != 0)
		return -1;
	/* Another process may have migrated while we waited for the lock,
	 * to this version or to a newer one (refused as above). */
	if (store_pragma_int(s, "PRAGMA user_version", &version, cause) != 0)
		goto fail;
	if (version > STORE_SCHEMA_VERSION) {
		*cause = ap_xprintf("%s: schema version %d is newer than this autopilot's"
		    " (%d); a newer autopilot migrated it just now — upgrade autopilot"
		    " or point --state at another database", s->path, version,
		    STORE_SCHEMA_VERSION);
		goto fail;
	}
	for (v = (unsigned)version; v < target; v++) {
		if (store_exec_sql(s, store_migrations[v], cause) != 0)
			goto fail;
	}
	sql = ap_xprintf("PRAGMA user_version = %u", target > (unsigned)version ?
	    target : (unsigned)version);
	if (store_exec_sql(s, sql, cause) != 0) {
		free(sql);
		goto fail;
	}
	free(sql);
	if (store_exec_sql(s, "COMMIT", cause) != 0)
		goto fail;
	if (version > 0)
		ap_info("store: migrated %s from schema v%d to v%u", s->path, version,
		    target);
	s->version = target;
	return 0;
fail:
	store_exec_sql(s, "ROLLBACK", NULL);
	return -1;
}

/* The directory path is in (a new string). */
static char *
store_dir_of(const char *path)
{
	char *dir = ap_xstrdup(path), *slash = strrchr(dir, '/');

	if (slash == NULL)
		strcpy(dir, ".");
	else if (slash == dir)
		slash[1] = '\0';
	else
		*slash = '\0';
	return dir;
}

/* True if this user may write path and create files beside it (the
 * write-ahead log and its index). */
static bool
store_writable(const char *path)
{
	char *dir = store_dir_of(path);
	bool ok;

	ok = access(path, R_OK | W_OK) == 0 && access(dir, W_OK | X_OK) == 0;
	free(dir);
	return ok;
}

/*
 * Why SQLite could not open path, as far as the file system tells (a new
 * string, or NULL): a missing or unwritable directory, a file this user
 * may not use. A relative path's directory is named in full.
 */
static char *
store_open_hint(const char *path, bool write)
{
	char *dir = store_dir_of(path), *hint = NULL, cwd[4096];
	struct stat st;

	if (path[0] != '/' && getcwd(cwd, sizeof cwd) != NULL) {
		size_t n = strlen(cwd);
		char *full = strcmp(dir, ".") == 0 ? ap_xstrdup(cwd) :
		    ap_xprintf("%s%s%s", cwd, n > 0 && cwd[n - 1] == '/' ? "" : "/", dir);

		free(dir);
		dir = full;
	}
	if (stat(path, &st) == 0) {
		if (S_ISDIR(st.st_mode))
			hint = ap_xstrdup("it is a directory");
		else if (access(path, write ? R_OK | W_OK : R_OK) != 0)
			hint = ap_xprintf("the file is not %s by this user", write ?
			    "readable and writable" : "readable");
	} else if (errno == EACCES) {
		/* The first directory on the way this user may not search. */
		char *p = dir + (dir[0] == '/'), *cut;

		for (;;) {
			cut = strchr(p, '/');
			if (cut != NULL)
				*cut = '\0';
			if (access(dir, X_OK) != 0 || cut == NULL)
				break;
			*cut = '/';
			p = cut + 1;
		}
		hint = ap_xprintf("this user may not look into %s", dir);
	} else if (stat(dir, &st) != 0)
		hint = ap_xprintf("directory %s does not exist (create it, or set"
		    " state.path or --state)", dir);
	else if (!S_ISDIR(st.st_mode))
		hint = ap_xprintf("%s is not a directory", dir);
	else if (write && access(dir, W_OK | X_OK) != 0)
		hint = ap_xprintf("this user may not create files in %s", dir);
	free(dir);
	return hint;
}

static void
store_nap_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

/*
 * A database in WAL mode is read through its shared-memory file, which a
 * reader creates if no writer has: in a directory this user may not write,
 * it cannot. With no writer there is nothing in flight, so the file is read
 * as it stands (SQLite's immutable=1). immutable=1 ignores the write-ahead
 * log, so a log with content (a writer is live, or one died before its last
 * checkpoint) rules it out: the file alone would show an older state, or an
 * empty one. 0 if reopened and readable, else -1.
 */
static int
store_reopen_immutable(struct store *s, unsigned target)
{
	struct ap_buf b;
	struct stat sb;
	const char *p;
	char *err = NULL, *wal;
	int rc, xrc = sqlite3_extended_errcode(s->db);

	if (xrc != SQLITE_READONLY && xrc != SQLITE_READONLY_CANTINIT &&
	    xrc != SQLITE_READONLY_CANTLOCK && xrc != SQLITE_READONLY_DIRECTORY &&
	    (xrc & 0xff) != SQLITE_CANTOPEN)
		return -1;
	wal = ap_xprintf("%s-wal", s->path);
	rc = stat(wal, &sb);
	free(wal);
	if (rc == 0 && sb.st_size > 0)
		return -1;
	ap_buf_init(&b);
	ap_buf_adds(&b, "file:");
	for (p = s->path; *p != '\0'; p++) {
		if (*p == '%' || *p == '?' || *p == '#')
			ap_buf_printf(&b, "%%%02x", (unsigned char)*p);
		else
			ap_buf_addc(&b, *p);
	}
	ap_buf_adds(&b, "?immutable=1");
	sqlite3_close(s->db);
	s->db = NULL;
	rc = sqlite3_open_v2(b.data, &s->db, SQLITE_OPEN_READONLY |
	    SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX, NULL);
	ap_buf_cleanup(&b);
	if (rc != SQLITE_OK || store_migrate(s, target, &err) != 0) {
		free(err);
		return -1;
	}
	return 0;
}

static uint32_t store_locality(void);

struct store *
store_open(const char *path, const struct store_options *opts, char **cause)
{
	static bool memstatus_off;
	struct store_options def = { 0 };
	struct store *s;
	char host[256], journal[16] = "";
	unsigned target;
	sqlite3_stmt *st = NULL;
	char *sql, *why = NULL;

	if (opts == NULL)
		opts = &def;
	target = opts->target_version ? opts->target_version : STORE_SCHEMA_VERSION;
	if (target > STORE_SCHEMA_VERSION)
		target = STORE_SCHEMA_VERSION;

	s = ap_xcalloc(1, sizeof *s);
	s->path = ap_xstrdup(path);
	s->lease_ms = opts->lease_ms > 0 ? opts->lease_ms : 30000;
	s->halt_claim_ms = 60000;
	s->read_only = opts->read_only;
	s->no_migrate = opts->no_migrate || opts->read_only;
	s->now = store_default_now;
	s->rand_state = ((uint64_t)ap_wall_ms() << 20) ^ (uint64_t)getpid() ^
	    (uint64_t)(uintptr_t)s;
	if (s->rand_state == 0)
		s->rand_state = 1;
	if (gethostname(host, sizeof host) != 0)
		strcpy(host, "localhost");
	host[sizeof host - 1] = '\0';
	s->host = ap_xstrdup(host);
	snprintf(s->locality, sizeof s->locality, "%08x", store_locality());
	if (opts->owner != NULL)
		s->owner = ap_xstrdup(opts->owner);
	else
		s->owner = ap_xprintf("%s/%ld/%s%06llx", host, (long)getpid(),
		    s->locality, (unsigned long long)(store_rand(s) & 0xffffff));

	/* SQLite's memory statistics (unused here) cost a mutex and counters on
	 * every allocation; they can be turned off only before SQLite's first
	 * use in the process, and the call is refused harmlessly after it. */
	if (!memstatus_off) {
		memstatus_off = true;
		(void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
	}
	/*
	 * A reader that may write the file and its directory opens it as a
	 * writer does, minus creation, and queries only: it then takes part in
	 * WAL locking like any other connection, whatever a live writer does.
	 * Only a reader without that right opens read-only (see
	 * store_reopen_immutable()).
	 */
	if (!s->read_only)
		store_create_private(path, 0600, (gid_t)-1);
	if (sqlite3_open_v2(path, &s->db, (!s->read_only ? SQLITE_OPEN_READWRITE |
	    SQLITE_OPEN_CREATE : store_writable(path) ? SQLITE_OPEN_READWRITE :
	    SQLITE_OPEN_READONLY) | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
		char *hint = store_open_hint(path, !s->read_only);

		*cause = ap_xprintf("%s: cannot open: %s%s%s", path,
		    s->db ? sqlite3_errmsg(s->db) : "out of memory", hint != NULL ?
		    ": " : "", hint != NULL ? hint : "");
		free(hint);
		goto fail;
	}
	s->busy_ms = opts->busy_timeout_ms ? opts->busy_timeout_ms :
	    STORE_BUSY_TIMEOUT_MS;
	sqlite3_busy_handler(s->db, store_busy, s);
	sqlite3_extended_result_codes(s->db, 1);
	if (s->read_only) {
		if (store_exec_sql(s, "PRAGMA query_only = ON", cause) != 0)
			goto fail;
		/* A reader that finds the shared-memory index being rebuilt by
		 * a writer is told so at once (no busy handler): look again,
		 * for up to 2 s. A lock held is waited out by the busy handler
		 * already and not looked at again. */
		for (int tries = 0; store_migrate(s, target, &why) != 0 &&
		    sqlite3_extended_errcode(s->db) == SQLITE_READONLY_RECOVERY &&
		    tries < 100; tries++) {
			free(why);
			why = NULL;
			store_nap_ms(20);
		}
		if (why != NULL) {
			if (store_reopen_immutable(s, target) != 0) {
				*cause = why;
				goto fail;
			}
			free(why);
		}
		return s;
	}
	/* SQLite opens a file it may not write for reading, silently. */
	if (sqlite3_db_readonly(s->db, "main") == 1) {
		*cause = ap_xprintf("%s: cannot be written (the file or its"
		    " directory is read-only to this user)", path);
		goto fail;
	}

	/* journal_mode returns the mode in effect: a read-only or odd filesystem
	 * may refuse WAL, and we say so rather than run without it. */
	if (sqlite3_prepare_v2(s->db, "PRAGMA journal_mode = WAL", -1, &st,
	    NULL) != SQLITE_OK || sqlite3_step(st) != SQLITE_ROW) {
		*cause = ap_xprintf("%s: cannot open: %s", path, sqlite3_errmsg(s->db));
		sqlite3_finalize(st);
		goto fail;
	}
	snprintf(journal, sizeof journal, "%s", (const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	if (!ap_strcaseeq(journal, "wal")) {
		*cause = ap_xprintf("%s: cannot switch to WAL journal mode (got %s)",
		    path, journal);
		goto fail;
	}
	sql = ap_xprintf("PRAGMA synchronous = %s; PRAGMA foreign_keys = ON;",
	    opts->synchronous_normal ? "NORMAL" : "FULL");
	if (store_exec_sql(s, sql, cause) != 0) {
		free(sql);
		goto fail;
	}
	free(sql);
	if (store_migrate(s, target, cause) != 0)
		goto fail;
	return s;
fail:
	store_close(s);
	return NULL;
}

void
store_close(struct store *s)
{
	char *cause = NULL;
	int i;

	if (s == NULL)
		return;
	if (s->batch && store_flush(s, &cause) != STORE_OK) {
		ap_error("store: %s", cause);
		free(cause);
	}
	for (i = 0; i < Q_MAX; i++)
		sqlite3_finalize(s->stmts[i]);
	sqlite3_close(s->db);
	free(s->path);
	free(s->owner);
	free(s->host);
	free(s->backup_path);
	json_decref(s->counted_agents);
	free(s);
}

const char *
store_owner(const struct store *s)
{
	return s->owner;
}

unsigned
store_schema_version(const struct store *s)
{
	return s->version;
}

const char *
store_backup_path(const struct store *s)
{
	return s->backup_path;
}

void
store_set_clock(struct store *s, int64_t (*now_ms)(void *), void *arg)
{
	s->now = now_ms != NULL ? now_ms : store_default_now;
	s->now_arg = arg;
}

void
store_strv_free(char **v)
{
	char **p;

	if (v == NULL)
		return;
	for (p = v; *p != NULL; p++)
		free(*p);
	free(v);
}

void
store_run_row_free(struct store_run_row *r)
{
	if (r == NULL)
		return;
	free(r->run_id);
	free(r->service_type);
	free(r->fqn);
	free(r->state);
	free(r->agents_json);
	free(r->error);
	free(r);
}

void
store_agent_row_cleanup(struct store_agent_row *a)
{
	free(a->agent);
	free(a->state);
	free(a->dag_id);
	free(a->dag_run_id);
	free(a->error);
	memset(a, 0, sizeof *a);
}

/*
 * Runs statement id with ?1..?3 bound to p1..p3 (NULL: left unbound) and
 * gives its first row's first column as a new string in *out, NULL when
 * there is no row; -1 and *cause (naming what) on error.
 */
static int
store_lookup(struct store *s, enum store_stmt_id id, const char *p1,
    const char *p2, const char *p3, char **out, const char *what, char **cause)
{
	sqlite3_stmt *st = store_stmt(s, id, cause);
	int rc;

	*out = NULL;
	if (st == NULL)
		return -1;
	bind_text(st, 1, p1);
	if (p2 != NULL)
		bind_text(st, 2, p2);
	if (p3 != NULL)
		bind_text(st, 3, p3);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*out = col_text(st, 0);
	sqlite3_reset(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		store_set_cause(s, cause, what);
		return -1;
	}
	return 0;
}

/* Inside a transaction: the active run of a service, as a new string, or NULL. */
static int
store_active_run(struct store *s, const char *type, const char *fqn, char **run_id,
    char **cause)
{
	return store_lookup(s, Q_ACTIVE_RUN, type, fqn, NULL, run_id,
	    "find active run", cause);
}

/* As store_active_run, leaving run `but` out. */
static int
store_active_other(struct store *s, const char *type, const char *fqn,
    const char *but, char **run_id, char **cause)
{
	return store_lookup(s, Q_ACTIVE_OTHER, type, fqn, but, run_id,
	    "find active run", cause);
}

/* Inside a transaction: the service's entity, its text or (entity_run not
 * NULL) that of the run entity_run. */
static int
store_put_service(struct store *s, const char *type, const char *fqn,
    const char *entity, const char *entity_run, char **cause)
{
	sqlite3_stmt *st = store_stmt(s, Q_SERVICE_PUT, cause);

	if (st == NULL)
		return -1;
	bind_text(st, 1, type);
	bind_text(st, 2, fqn);
	bind_text(st, 3, entity_run != NULL ? "" : entity);
	sqlite3_bind_int64(st, 4, store_now(s));
	bind_text(st, 5, entity_run);
	return store_exec_stmt(s, st, cause, "store service");
}

/* Inside a transaction: inserts a pending run, returns its new id. */
static int
store_insert_run(struct store *s, const char *type, const char *fqn,
    const char *entity, const char *agents, const char *origin, char **run_id,
    char **cause)
{
	sqlite3_stmt *st;
	int tries, rc;
	char *id;

	for (tries = 0; tries < 8; tries++) {
		if ((st = store_stmt(s, Q_RUN_INSERT, cause)) == NULL)
			return -1;
		id = store_new_run_id(s);
		bind_text(st, 1, id);
		bind_text(st, 2, type);
		bind_text(st, 3, fqn);
		bind_text(st, 4, entity);
		bind_text(st, 5, agents);
		sqlite3_bind_int64(st, 6, store_now(s));
		bind_text(st, 7, origin);
		rc = sqlite3_step(st);
		sqlite3_reset(st);
		if (rc == SQLITE_DONE) {
			*run_id = id;
			return 0;
		}
		free(id);
		if (rc != SQLITE_CONSTRAINT_PRIMARYKEY) {
			store_set_cause(s, cause, "create run");
			return -1;
		}
	}
	store_set_cause(s, cause, "create run (id collisions)");
	return -1;
}

/* Inside a transaction: a new pending run of the service, whose entity is
 * the service's too until the next one received (stored once); origin says
 * why it exists (NULL: not said). */
static int
store_new_run(struct store *s, const char *type, const char *fqn,
    const char *entity, const char *agents, const char *origin, char **run_id,
    char **cause)
{
	if (store_insert_run(s, type, fqn, entity, agents, origin, run_id,
	    cause) != 0)
		return -1;
	if (store_put_service(s, type, fqn, NULL, *run_id, cause) != 0) {
		free(*run_id);
		*run_id = NULL;
		return -1;
	}
	return 0;
}

/* The entity of an event that joined run_id and asked for more
 * (store_mark_joined()), as a new string, or NULL when none did. */
static int
store_joined_entity(struct store *s, const char *type, const char *fqn,
    const char *run_id, char **entity, char **cause)
{
	return store_lookup(s, Q_SERVICE_IS_JOINED, type, fqn, run_id, entity,
	    "look for a joined event", cause);
}

/* Whether two entities are the same JSON value (the order of keys aside). */
static bool
entity_same(const char *a_json, const char *b_json)
{
	json_t *a = json_loads(a_json, 0, NULL), *b = json_loads(b_json, 0, NULL);
	bool same = a == NULL || b == NULL ? strcmp(a_json, b_json) == 0 :
	    json_equal(a, b);

	json_decref(a);
	json_decref(b);
	return same;
}

/* Inside a transaction: the service's entity (just written as text) came
 * with an event that joined run_id. */
static int
store_mark_joined(struct store *s, const char *type, const char *fqn,
    const char *run_id, char **cause)
{
	sqlite3_stmt *st = store_stmt(s, Q_SERVICE_JOINED, cause);

	if (st == NULL)
		return -1;
	bind_text(st, 1, type);
	bind_text(st, 2, fqn);
	bind_text(st, 3, run_id);
	return store_exec_stmt(s, st, cause, "mark the service's event joined");
}

/*
 * Whether an event with entity_json that joins run_id asks for more than
 * that run does: the run is limited to some agents, or its entity is
 * another (as JSON values: the order of keys aside).
 */
static int
store_join_asks_more(struct store *s, const char *run_id, const char *entity_json,
    bool *more, char **cause)
{
	sqlite3_stmt *st = store_stmt(s, Q_RUN_ENTITY_AGENTS, cause);
	int rc;

	*more = false;
	if (st == NULL)
		return -1;
	bind_text(st, 1, run_id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		const char *mine = (const char *)sqlite3_column_text(st, 0);

		*more = sqlite3_column_type(st, 1) != SQLITE_NULL || mine == NULL ||
		    !entity_same(mine, entity_json);
	}
	sqlite3_reset(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		store_set_cause(s, cause, "read the joined run");
		return -1;
	}
	return 0;
}

/* Inside a transaction: run_id, of the whole plan and not taken up by any
 * process yet, takes entity_json (*set); else nothing changes. */
static int
store_run_set_entity(struct store *s, const char *run_id, const char *entity_json,
    bool *set, char **cause)
{
	sqlite3_stmt *st = store_stmt(s, Q_RUN_SET_ENTITY, cause);

	*set = false;
	if (st == NULL)
		return -1;
	bind_text(st, 1, run_id);
	bind_text(st, 2, entity_json);
	if (store_exec_stmt(s, st, cause, "give the run the event's entity") != 0)
		return -1;
	*set = sqlite3_changes(s->db) > 0;
	return 0;
}

enum store_result
store_inbox_accept(struct store *s, const char *event_id, const char *service_type,
    const char *fqn, const char *entity_json, char **run_id, bool *joined,
    bool *follows, char **cause)
{
	sqlite3_stmt *st;
	char *id = NULL, *origin;
	bool nested, more = false, retaken = false;
	int rc;

	*run_id = NULL;
	if (joined != NULL)
		*joined = false;
	if (follows != NULL)
		*follows = false;
	if (store_join(s, &nested, cause) != 0)
		return STORE_ERROR;
	if ((st = store_stmt(s, Q_INBOX_GET, cause)) == NULL)
		goto fail;
	bind_text(st, 1, event_id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		id = col_text(st, 0);
	sqlite3_reset(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		store_set_cause(s, cause, "inbox lookup");
		goto fail;
	}
	if (id != NULL) {
		store_undo(s, nested);
		*run_id = id;
		return STORE_REPEAT;
	}
	if (store_active_run(s, service_type, fqn, &id, cause) != 0)
		goto fail;
	if (joined != NULL)
		*joined = id != NULL;
	/* Joining a run of the whole plan that nobody has taken up yet (it
	 * waits for admission), the run takes the event's entity, which is
	 * the service's as the run's. Joining another active run, the entity
	 * is the service's alone, marked as joined to that run when the event
	 * asks for more than the run does (store_run_end); a later join of
	 * the same entity as the run's takes the mark back. */
	if (id != NULL && store_run_set_entity(s, id, entity_json, &retaken,
	    cause) != 0)
		goto fail;
	if (id == NULL) {
		origin = ap_xprintf("webhook event %s", event_id);
		rc = store_new_run(s, service_type, fqn, entity_json, NULL, origin,
		    &id, cause);
		free(origin);
		if (rc != 0)
			goto fail;
	} else if (retaken ? store_put_service(s, service_type, fqn,
	    NULL, id, cause) != 0 : store_put_service(s, service_type, fqn,
	    entity_json, NULL, cause) != 0 || store_join_asks_more(s, id,
	    entity_json, &more, cause) != 0 || (more && store_mark_joined(s,
	    service_type, fqn, id, cause) != 0))
		goto fail;
	if (follows != NULL)
		*follows = more;
	if ((st = store_stmt(s, Q_INBOX_PUT, cause)) == NULL)
		goto fail;
	bind_text(st, 1, event_id);
	bind_text(st, 2, id);
	bind_text(st, 3, service_type);
	bind_text(st, 4, fqn);
	sqlite3_bind_int64(st, 5, store_now(s));
	if (store_exec_stmt(s, st, cause, "inbox insert") != 0)
		goto fail;
	if (store_done(s, nested, cause) != 0)
		goto fail;
	*run_id = id;
	return STORE_OK;
fail:
	free(id);
	store_undo(s, nested);
	return STORE_ERROR;
}

enum store_result
store_service_get(struct store *s, const char *service_type, const char *fqn,
    char **entity_json, char **type_out, char **cause)
{
	return store_service_get_at(s, service_type, fqn, entity_json, type_out,
	    NULL, cause);
}

enum store_result
store_service_get_at(struct store *s, const char *service_type,
    const char *fqn, char **entity_json, char **type_out, int64_t *stored_at,
    char **cause)
{
	sqlite3_stmt *st;
	bool ambiguous;
	int rc;

	*entity_json = NULL;
	if (type_out != NULL)
		*type_out = NULL;
	if (stored_at != NULL)
		*stored_at = 0;
	if (service_type != NULL) {
		if ((st = store_stmt(s, Q_SERVICE_GET, cause)) == NULL)
			return STORE_ERROR;
		bind_text(st, 1, service_type);
		bind_text(st, 2, fqn);
	} else {
		if ((st = store_stmt(s, Q_SERVICE_GET_ANY, cause)) == NULL)
			return STORE_ERROR;
		bind_text(st, 1, fqn);
	}
	rc = sqlite3_step(st);
	/* A row whose entity's run is gone (deleted by hand) has none to give. */
	if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) == SQLITE_NULL)
		rc = SQLITE_DONE;
	if (rc == SQLITE_ROW) {
		*entity_json = col_text(st, 0);
		if (type_out != NULL)
			*type_out = col_text(st, 1);
		if (stored_at != NULL)
			*stored_at = sqlite3_column_int64(st, 2);
	}
	/* Names are unique within a service type only: with none given, a
	 * name stored under two types is not this function's to pick from. */
	if (rc == SQLITE_ROW && service_type == NULL) {
		struct ap_buf b;

		ap_buf_init(&b);
		ap_buf_adds(&b, (const char *)sqlite3_column_text(st, 1));
		while ((rc = sqlite3_step(st)) == SQLITE_ROW)
			ap_buf_printf(&b, ", %s", (const char *)sqlite3_column_text(st,
			    1));
		ambiguous = rc == SQLITE_DONE && b.data != NULL &&
		    strchr(b.data, ',') != NULL;
		if (ambiguous)
			*cause = ap_xprintf("service '%s' is stored under more than one"
			    " type (%s)", fqn, b.data);
		ap_buf_cleanup(&b);
		if (rc == SQLITE_DONE && !ambiguous)
			rc = SQLITE_ROW;	/* the one row, read above */
		else {
			free(*entity_json);
			*entity_json = NULL;
			if (type_out != NULL) {
				free(*type_out);
				*type_out = NULL;
			}
		}
		if (ambiguous) {
			sqlite3_reset(st);
			return STORE_AMBIGUOUS;
		}
	}
	sqlite3_reset(st);
	if (rc == SQLITE_DONE)
		return STORE_NOT_FOUND;
	if (rc != SQLITE_ROW) {
		store_set_cause(s, cause, "service lookup");
		return STORE_ERROR;
	}
	return STORE_OK;
}

enum store_result
store_service_put(struct store *s, const char *service_type, const char *fqn,
    const char *entity_json, char **cause)
{
	return store_put_service(s, service_type, fqn, entity_json, NULL, cause) == 0 ?
	    STORE_OK : STORE_ERROR;
}

static bool store_claimable(struct store *s, const char *owner,
    int64_t lease_until);

/* Who holds active run run_id: 1 with *owner (a new string, or NULL: none)
 * and *lease_until, 0 when the run is not active, -1 when it cannot be
 * read. */
static int
store_run_holder(struct store *s, const char *run_id, char **owner,
    int64_t *lease_until)
{
	sqlite3_stmt *st = store_stmt(s, Q_CLAIM_ONE_GET, NULL);
	int rc = 0;

	*owner = NULL;
	*lease_until = 0;
	if (st == NULL)
		return -1;
	bind_text(st, 1, run_id);
	if (sqlite3_step(st) == SQLITE_ROW) {
		*owner = col_text(st, 0);
		*lease_until = sqlite3_column_int64(st, 1);
		rc = 1;
	}
	sqlite3_reset(st);
	return rc;
}

/* Whether a live process (this one too) holds active run run_id. */
static bool
store_run_held(struct store *s, const char *run_id)
{
	char *owner;
	int64_t lease;
	int rc = store_run_holder(s, run_id, &owner, &lease);
	bool held = rc < 0 ||	/* not known: as if held */
	    (rc > 0 && owner != NULL && (strcmp(owner, s->owner) == 0 ||
	    !store_claimable(s, owner, lease)));

	free(owner);
	return held;
}

/* Appends {run_id, dag_id, dag_run_id, held} of the run's agents queued or
 * running in Airflow; held: a live process holds the run, whose trigger
 * may be on its way still. */
static int
store_airflow_active(struct store *s, const char *run_id, json_t *out, char **cause)
{
	sqlite3_stmt *st;
	bool held = store_run_held(s, run_id);
	int rc;

	if ((st = store_stmt(s, Q_RUN_AIRFLOW_ACTIVE, cause)) == NULL)
		return -1;
	bind_text(st, 1, run_id);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		json_array_append_new(out, json_pack("{s:s, s:s, s:s, s:b}",
		    "run_id", run_id,
		    "dag_id", (const char *)sqlite3_column_text(st, 0),
		    "dag_run_id", (const char *)sqlite3_column_text(st, 1),
		    "held", held));
	sqlite3_reset(st);
	if (rc != SQLITE_DONE) {
		store_set_cause(s, cause, "replaced run's Airflow runs");
		return -1;
	}
	return 0;
}

static int store_claim_one(struct store *s, const char *run_id, bool *claimed,
    char **cause);

enum store_result
store_run_create(struct store *s, const char *service_type, const char *fqn,
    const char *entity_json, const char *agents_json, bool replace, char **run_id,
    char **cause)
{
	return store_run_replace(s, service_type, fqn, entity_json, agents_json,
	    replace, false, NULL, run_id, NULL, cause);
}

enum store_result
store_run_replace(struct store *s, const char *service_type, const char *fqn,
    const char *entity_json, const char *agents_json, bool replace, bool claim,
    const char *origin, char **run_id, json_t **airflow_runs, char **cause)
{
	sqlite3_stmt *st;
	char *active = NULL, *id = NULL, *asked = NULL, *why;
	json_t *stop = json_array();
	bool claimed;
	int rc;

	*run_id = NULL;
	if (airflow_runs != NULL)
		*airflow_runs = NULL;
	if (store_begin(s, cause) != 0) {
		json_decref(stop);
		return STORE_ERROR;
	}
	if (store_active_run(s, service_type, fqn, &active, cause) != 0)
		goto fail;
	if (active != NULL && !replace) {
		store_rollback(s);
		json_decref(stop);
		*run_id = active;
		return STORE_ACTIVE;
	}
	/* An event that joined the run replaced asked for a run of the whole
	 * plan with its entity: the replacement carries that on, unless it is
	 * that run (the whole plan, that entity). The event's entity stays the
	 * service's, whatever entity the replacement was given. */
	if (active != NULL && store_joined_entity(s, service_type, fqn, active,
	    &asked, cause) != 0)
		goto fail;
	if (asked != NULL && agents_json == NULL && entity_same(asked, entity_json)) {
		free(asked);
		asked = NULL;
	}
	if (store_new_run(s, service_type, fqn, entity_json, agents_json, origin, &id,
	    cause) != 0 || (claim && store_claim_one(s, id, &claimed, cause) != 0))
		goto fail;
	if (asked != NULL && (store_put_service(s, service_type, fqn, asked, NULL,
	    cause) != 0 || store_mark_joined(s, service_type, fqn, id, cause) != 0))
		goto fail;
	while (active != NULL) {
		/* Its agents in Airflow, read while it is still active (whether
		 * a live process holds it is part of it). */
		if (store_airflow_active(s, active, stop, cause) != 0)
			goto fail;
		if ((st = store_stmt(s, Q_RUN_REPLACE, cause)) == NULL)
			goto fail;
		why = ap_xprintf("replaced by %s", id);
		bind_text(st, 1, active);
		bind_text(st, 2, why);
		sqlite3_bind_int64(st, 3, store_now(s));
		if (store_exec_stmt(s, st, cause, "replace run") != 0) {
			free(why);
			goto fail;
		}
		/* Its unfinished agents end too: nothing stays "running". */
		if ((st = store_stmt(s, Q_RUN_REPLACE_AGENTS, cause)) == NULL) {
			free(why);
			goto fail;
		}
		bind_text(st, 1, active);
		bind_text(st, 2, why);
		sqlite3_bind_int64(st, 3, store_now(s));
		rc = store_exec_stmt(s, st, cause, "replace run agents");
		free(why);
		if (rc != 0)
			goto fail;
		ap_log_about(AP_LOG_INFO, &(struct ap_log_about){ .run_id =
		    active, .fqn = fqn }, "store: run %s of %s replaced by %s",
		    active, fqn, id);
		free(active);
		if (store_active_run(s, service_type, fqn, &active, cause) != 0)
			goto fail;
		if (active != NULL && strcmp(active, id) == 0) {
			free(active);
			active = NULL;
		}
	}
	if (json_array_size(stop) > 0) {
		size_t i;
		json_t *v;

		why = ap_xprintf("replaced by %s", id);
		json_array_foreach(stop, i, v)
			if (store_halt_add(s, json_string_value(json_object_get(v,
			    "run_id")), json_string_value(json_object_get(v, "dag_id")),
			    json_string_value(json_object_get(v, "dag_run_id")), why,
			    store_now(s) + s->halt_claim_ms, cause) != STORE_OK)
				break;
		free(why);
		if (i < json_array_size(stop))
			goto fail;
	}
	if (store_commit(s, cause) != 0)
		goto fail;
	free(asked);
	*run_id = id;
	if (airflow_runs != NULL)
		*airflow_runs = stop;
	else
		json_decref(stop);
	return STORE_OK;
fail:
	json_decref(stop);
	free(active);
	free(asked);
	free(id);
	store_rollback(s);
	return STORE_ERROR;
}

static json_t *
json_time(int64_t ms)
{
	char buf[40];

	if (ms <= 0)
		return json_null();
	ap_format_time(ms, buf, sizeof buf);
	return json_string(buf);
}

/* Text from the store as JSON; bytes that are not UTF-8 (a name given on
 * the command line may have any) come out as '?', never as a lost row. */
static json_t *
json_str_or_null(const unsigned char *t)
{
	json_t *v;
	char *p;

	if (t == NULL)
		return json_null();
	if ((v = json_string((const char *)t)) != NULL)
		return v;
	p = ap_printable((const char *)t);
	v = json_string(p);
	free(p);
	return v;
}

/* Each row of statement id for run_id (its ?1), as row() makes it, into
 * arr; what names the rows in an error. */
static int
store_run_rows_json(struct store *s, enum store_stmt_id id, const char *run_id,
    json_t *(*row)(sqlite3_stmt *), json_t *arr, const char *what, char **cause)
{
	sqlite3_stmt *st = store_stmt(s, id, cause);
	int rc;

	if (st == NULL)
		return -1;
	bind_text(st, 1, run_id);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		json_array_append_new(arr, row(st));
	sqlite3_reset(st);
	if (rc != SQLITE_DONE) {
		store_set_cause(s, cause, what);
		return -1;
	}
	return 0;
}

/* A row of Q_AGENTS_OF as status JSON. */
static json_t *
store_agent_row_json(sqlite3_stmt *st)
{
	return json_pack("{s:o,s:o,s:o,s:o,s:I,s:o,s:o,s:o}",
	    "agent", json_str_or_null(sqlite3_column_text(st, 0)),
	    "state", json_str_or_null(sqlite3_column_text(st, 1)),
	    "dag_id", json_str_or_null(sqlite3_column_text(st, 2)),
	    "dag_run_id", json_str_or_null(sqlite3_column_text(st, 3)),
	    "attempts", (json_int_t)sqlite3_column_int64(st, 4),
	    "started_at", json_time(sqlite3_column_int64(st, 5)),
	    "finished_at", json_time(sqlite3_column_int64(st, 6)),
	    "error", json_str_or_null(sqlite3_column_text(st, 8)));
}

static bool store_owner_dead(struct store *s, const char *owner);

/* A run row (columns of Q_RUN_GET) as status JSON, without agents.
 * driven_by names the process that holds an unfinished run, or is null when
 * none does (not yet taken up, or its driver gone or its lease run out). */
static json_t *
store_run_row_json(struct store *s, sqlite3_stmt *st)
{
	json_t *agents = json_null();
	const unsigned char *a = sqlite3_column_text(st, 4);
	const char *state = (const char *)sqlite3_column_text(st, 3);
	const char *owner = (const char *)sqlite3_column_text(st, 9);
	bool driven;

	if (a != NULL && (agents = json_loads((const char *)a, 0, NULL)) == NULL)
		agents = json_null();
	driven = state != NULL && owner != NULL && (strcmp(state, "pending") == 0 ||
	    strcmp(state, "running") == 0) && sqlite3_column_int64(st, 10) >=
	    store_now(s) && !store_owner_dead(s, owner);
	return json_pack("{s:o,s:{s:o,s:o},s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:[]}",
	    "run_id", json_str_or_null(sqlite3_column_text(st, 0)),
	    "service",
	    "type", json_str_or_null(sqlite3_column_text(st, 1)),
	    "fqn", json_str_or_null(sqlite3_column_text(st, 2)),
	    "state", json_str_or_null(sqlite3_column_text(st, 3)),
	    "only_agents", agents,
	    "error", json_str_or_null(sqlite3_column_text(st, 5)),
	    "created_at", json_time(sqlite3_column_int64(st, 6)),
	    "started_at", json_time(sqlite3_column_int64(st, 7)),
	    "finished_at", json_time(sqlite3_column_int64(st, 8)),
	    "driven_by", driven ? json_str_or_null((const unsigned char *)owner) :
	    json_null(),
	    "origin", json_str_or_null(sqlite3_column_text(st, 11)),
	    "agents");
}

/* A row of Q_HALTS_OF: an Airflow run still to be marked failed. */
static json_t *
store_halt_row_json(sqlite3_stmt *st)
{
	return json_pack("{s:o,s:o,s:o,s:I,s:o}",
	    "dag_id", json_str_or_null(sqlite3_column_text(st, 0)),
	    "dag_run_id", json_str_or_null(sqlite3_column_text(st, 1)),
	    "why", json_str_or_null(sqlite3_column_text(st, 2)),
	    "tries", (json_int_t)sqlite3_column_int64(st, 3),
	    "error", json_str_or_null(sqlite3_column_text(st, 4)));
}

/* Fills in the agents of each run of arr, and its Airflow runs still to be
 * marked failed (halts): two more statements per run. */
static int
store_fill_agents(struct store *s, json_t *arr, char **cause)
{
	size_t i;
	json_t *r;

	json_array_foreach(arr, i, r) {
		const char *id = json_string_value(json_object_get(r, "run_id"));

		if (store_run_rows_json(s, Q_AGENTS_OF, id, store_agent_row_json,
		    json_object_get(r, "agents"), "list agent runs", cause) != 0)
			return -1;
		json_object_set_new(r, "airflow_runs_to_fail", json_array());
		if (store_run_rows_json(s, Q_HALTS_OF, id, store_halt_row_json,
		    json_object_get(r, "airflow_runs_to_fail"), "list the Airflow"
		    " runs to mark failed", cause) != 0)
			return -1;
	}
	return 0;
}

enum store_result
store_run_brief(struct store *s, const char *run_id, json_t **out, char **cause)
{
	sqlite3_stmt *st;
	int rc;

	*out = NULL;
	if ((st = store_stmt(s, Q_RUN_GET, cause)) == NULL)
		return STORE_ERROR;
	bind_text(st, 1, run_id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*out = store_run_row_json(s, st);
	sqlite3_reset(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		store_set_cause(s, cause, "run lookup");
		return STORE_ERROR;
	}
	return rc == SQLITE_ROW ? STORE_OK : STORE_NOT_FOUND;
}

enum store_result
store_run_json(struct store *s, const char *run_id, json_t **out, char **cause)
{
	json_t *arr = json_array(), *run = NULL;

	*out = NULL;
	/* One read transaction so the run and its agents are one snapshot. */
	if (store_flush(s, cause) != STORE_OK ||
	    store_exec_sql(s, "BEGIN", cause) != 0 ||
	    store_run_brief(s, run_id, &run, cause) == STORE_ERROR)
		goto fail;
	if (run != NULL)
		json_array_append_new(arr, run);
	if (store_fill_agents(s, arr, cause) != 0)
		goto fail;
	store_exec_sql(s, "COMMIT", NULL);
	if (json_array_size(arr) == 0) {
		json_decref(arr);
		return STORE_NOT_FOUND;
	}
	*out = json_incref(json_array_get(arr, 0));
	json_decref(arr);
	return STORE_OK;
fail:
	store_rollback(s);
	json_decref(arr);
	return STORE_ERROR;
}

enum store_result
store_runs_json(struct store *s, const char *fqn, unsigned limit, json_t **out,
    char **cause)
{
	return store_runs_page(s, fqn, NULL, limit, out, cause);
}

enum store_result
store_runs_page(struct store *s, const char *fqn, const char *before,
    unsigned limit, json_t **out, char **cause)
{
	sqlite3_stmt *st;
	json_t *arr = json_array();
	int64_t below = INT64_MAX;
	int rc;

	*out = NULL;
	if (store_flush(s, cause) != STORE_OK ||
	    store_exec_sql(s, "BEGIN", cause) != 0)
		goto fail;
	if (before != NULL) {
		if ((st = store_stmt(s, Q_RUN_ROWID, cause)) == NULL)
			goto fail;
		bind_text(st, 1, before);
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW)
			below = sqlite3_column_int64(st, 0);
		sqlite3_reset(st);
		if (rc == SQLITE_DONE) {
			store_rollback(s);
			json_decref(arr);
			return STORE_NOT_FOUND;
		}
		if (rc != SQLITE_ROW) {
			store_set_cause(s, cause, "find the run to list runs before");
			goto fail;
		}
	}
	if ((st = store_stmt(s, fqn ? Q_RUN_LIST_FQN : Q_RUN_LIST, cause)) == NULL)
		goto fail;
	sqlite3_bind_int64(st, 1, limit ? limit : 100);
	if (fqn != NULL)
		bind_text(st, 2, fqn);
	sqlite3_bind_int64(st, 3, below);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		json_array_append_new(arr, store_run_row_json(s, st));
	sqlite3_reset(st);
	if (rc != SQLITE_DONE) {
		store_set_cause(s, cause, "list runs");
		goto fail;
	}
	if (store_fill_agents(s, arr, cause) != 0)
		goto fail;
	store_exec_sql(s, "COMMIT", NULL);
	*out = arr;
	return STORE_OK;
fail:
	store_rollback(s);
	json_decref(arr);
	return STORE_ERROR;
}

enum store_result
store_check_writable(struct store *s, char **cause)
{
	char *sql;
	int rc, version = 0;

	if (s->read_only || sqlite3_db_readonly(s->db, "main") == 1) {
		*cause = ap_xprintf("%s: opened read-only", s->path);
		return STORE_ERROR;
	}
	if (store_begin(s, cause) != 0)
		return STORE_ERROR;
	/* The stamp is written back as it is read: another process may have
	 * migrated the schema since this one opened the database, and writing
	 * this one's version over it would have the next start migrate again. */
	if (store_pragma_int(s, "PRAGMA user_version", &version, cause) != 0)
		goto fail;
	if (version < 0 || (unsigned)version != s->version) {
		*cause = ap_xprintf("%s: the schema is at version %d, this process"
		    " opened it at %u: another autopilot migrated it since; restart"
		    " this process (an upgraded one, if it is the older)", s->path,
		    version, s->version);
		goto fail;
	}
	sql = ap_xprintf("PRAGMA user_version = %d", version);
	rc = store_exec_sql(s, sql, cause);
	free(sql);
	if (rc != 0 || store_simple(s, Q_COMMIT, cause) != 0)
		goto fail;
	return STORE_OK;
fail:
	store_rollback(s);
	return STORE_ERROR;
}

static const char *const run_states[4] = { "pending", "running",
    "succeeded", "failed" };

/* Adds (sign 1) or takes away (-1) the counts of the rows of st, bound. */
static int
store_add_run_counts(struct store *s, sqlite3_stmt *st, int64_t counts[4],
    int sign, char **cause)
{
	const char *state;
	int rc, i;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		state = (const char *)sqlite3_column_text(st, 0);
		for (i = 0; i < 4; i++)
			if (state != NULL && strcmp(state, run_states[i]) == 0)
				counts[i] += sign * sqlite3_column_int64(st, 1);
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE) {
		store_set_cause(s, cause, "count runs");
		return -1;
	}
	return 0;
}

/* The same for agent runs, into {"<agent>": {"<state>": n}}. */
static int
store_add_agent_counts(struct store *s, sqlite3_stmt *st, json_t *counts,
    int sign, char **cause)
{
	const char *agent, *state;
	json_t *per;
	int rc;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		agent = (const char *)sqlite3_column_text(st, 0);
		state = (const char *)sqlite3_column_text(st, 1);
		if (agent == NULL || state == NULL)
			continue;
		if ((per = json_object_get(counts, agent)) == NULL) {
			per = json_object();
			json_object_set_new(counts, agent, per);
		}
		json_object_set_new(per, state, json_integer(json_integer_value(
		    json_object_get(per, state)) + sign * sqlite3_column_int64(st, 2)));
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE) {
		store_set_cause(s, cause, "count agent runs");
		return -1;
	}
	return 0;
}

/* The counts of the runs with a rowid in [lo, hi) (Q_RUN_COUNTS or
 * Q_AGENT_COUNTS_OF), added to counts. */
static int
store_count_range(struct store *s, enum store_stmt_id id, int64_t lo,
    int64_t hi, int64_t runs[4], json_t *agents, char **cause)
{
	sqlite3_stmt *st = store_stmt(s, id, cause);

	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, lo);
	sqlite3_bind_int64(st, 2, hi);
	return id == Q_RUN_COUNTS ? store_add_run_counts(s, st, runs, 1, cause) :
	    store_add_agent_counts(s, st, agents, 1, cause);
}

static void
store_merge_agent_counts(json_t *into, const json_t *from)
{
	const char *agent, *state;
	json_t *per, *n, *to;

	json_object_foreach((json_t *)from, agent, per) {
		if ((to = json_object_get(into, agent)) == NULL) {
			to = json_object();
			json_object_set_new(into, agent, to);
		}
		json_object_foreach(per, state, n)
			json_object_set_new(to, state, json_integer(json_integer_value(
			    json_object_get(to, state)) + json_integer_value(n)));
	}
}

/* Takes out the states counted 0, and agents left with none. */
static void
store_prune_agent_counts(json_t *counts)
{
	const char *agent, *state;
	json_t *per, *n;
	void *t1, *t2;

	json_object_foreach_safe(counts, t1, agent, per) {
		json_object_foreach_safe(per, t2, state, n)
			if (json_integer_value(n) == 0)
				json_object_del(per, state);
		if (json_object_size(per) == 0)
			json_object_del(counts, agent);
	}
}

/*
 * A run that has finished never changes again, nor do its agent runs (every
 * write is fenced by an active state), and a new run's rowid is above every
 * other's. So the runs older than the oldest active one are counted once and
 * kept; a later reading adds the runs that finished since and counts only
 * those after the oldest active run. If the first run is no longer the one
 * counted first (the oldest runs deleted by store_prune(), which deletes
 * no others, or by hand), or the oldest active run
 * is older than those kept (another database in the file's place),
 * everything is counted again; other finished runs deleted by hand stay
 * counted until the process starts again.
 */
enum store_result
store_counts(struct store *s, int64_t runs[4], json_t **agents, int64_t *halts,
    char **cause)
{
	int64_t below, first, kept[4];
	json_t *kept_agents = NULL, *fresh = NULL;
	sqlite3_stmt *st;
	int rc, i;

	memset(runs, 0, 4 * sizeof runs[0]);
	*agents = NULL;
	*halts = 0;
	if (store_flush(s, cause) != STORE_OK || store_simple(s, Q_BEGIN_READ,
	    cause) != 0)
		return STORE_ERROR;
	if ((st = store_stmt(s, Q_COUNT_BOUNDS, cause)) == NULL)
		goto fail;
	if ((rc = sqlite3_step(st)) != SQLITE_ROW) {
		sqlite3_reset(st);
		store_set_cause(s, cause, "count runs");
		goto fail;
	}
	/* Below the oldest active run, or else past the last run. */
	below = sqlite3_column_type(st, 0) != SQLITE_NULL ?
	    sqlite3_column_int64(st, 0) : sqlite3_column_int64(st, 1) + 1;
	first = sqlite3_column_int64(st, 2);
	*halts = sqlite3_column_int64(st, 3);
	sqlite3_reset(st);

	kept_agents = json_object();
	memset(kept, 0, sizeof kept);
	if (s->counted_agents != NULL && first == s->counted_first &&
	    below >= s->counted_below) {
		memcpy(kept, s->counted_runs, sizeof kept);
		store_merge_agent_counts(kept_agents, s->counted_agents);
		if (store_count_range(s, Q_RUN_COUNTS, s->counted_below, below,
		    kept, NULL, cause) != 0 || store_count_range(s,
		    Q_AGENT_COUNTS_OF, s->counted_below, below, NULL, kept_agents,
		    cause) != 0)
			goto fail;
	} else {
		/* All agent runs in one pass, less those of the runs from the
		 * oldest active one on: faster than looking each run's up. */
		if (store_count_range(s, Q_RUN_COUNTS, INT64_MIN, below, kept,
		    NULL, cause) != 0 || (st = store_stmt(s, Q_AGENT_COUNTS,
		    cause)) == NULL || store_add_agent_counts(s, st, kept_agents, 1,
		    cause) != 0 || (st = store_stmt(s, Q_AGENT_COUNTS_OF,
		    cause)) == NULL)
			goto fail;
		sqlite3_bind_int64(st, 1, below);
		sqlite3_bind_int64(st, 2, INT64_MAX);
		if (store_add_agent_counts(s, st, kept_agents, -1, cause) != 0)
			goto fail;
	}
	/* From the oldest active run on, as they are now. */
	memcpy(runs, kept, sizeof kept);
	fresh = json_object();
	store_merge_agent_counts(fresh, kept_agents);
	if (store_count_range(s, Q_RUN_COUNTS, below, INT64_MAX, runs, NULL,
	    cause) != 0 || store_count_range(s, Q_AGENT_COUNTS_OF, below,
	    INT64_MAX, NULL, fresh, cause) != 0)
		goto fail;
	store_simple(s, Q_COMMIT, NULL);	/* a read: nothing to lose */
	store_prune_agent_counts(kept_agents);
	store_prune_agent_counts(fresh);

	for (i = 0; i < 4; i++)
		s->counted_runs[i] = kept[i];
	json_decref(s->counted_agents);
	s->counted_agents = kept_agents;
	s->counted_below = below;
	s->counted_first = first;
	*agents = fresh;
	return STORE_OK;
fail:
	memset(runs, 0, 4 * sizeof runs[0]);
	json_decref(kept_agents);
	json_decref(fresh);
	store_rollback(s);
	return STORE_ERROR;
}

/* True if pid has exited and waits to be reaped (a container whose init
 * reaps no one keeps a killed server so): it holds nothing any more. */
static bool
proc_zombie(long pid)
{
	char path[64], buf[512], *rp;
	FILE *f;
	size_t n;

	snprintf(path, sizeof path, "/proc/%ld/stat", pid);
	if ((f = fopen(path, "r")) == NULL)
		return false;
	n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* "pid (comm) S ...": comm may hold anything, ')' included. */
	if ((rp = strrchr(buf, ')')) == NULL || rp[1] != ' ')
		return false;
	return rp[2] == 'Z' || rp[2] == 'X';
}

/*
 * Where this process's pids mean something: its PID namespace (the inode of
 * /proc/self/ns/pid) and this boot (the kernel's boot id), hashed (FNV-1a)
 * into the first 8 hex digits of its owner tag. Without /proc, the same
 * for every process: taken as local, as before tags named it.
 */
static uint32_t
store_locality(void)
{
	char boot[64];
	struct stat sb;
	uint32_t h = 2166136261u;
	size_t n = 0, i;
	FILE *f;

	if ((f = fopen("/proc/sys/kernel/random/boot_id", "r")) != NULL) {
		n = fread(boot, 1, sizeof boot, f);
		fclose(f);
	}
	for (i = 0; i < n; i++)
		h = (h ^ (unsigned char)boot[i]) * 16777619u;
	if (stat("/proc/self/ns/pid", &sb) == 0)
		for (i = 0; i < sizeof sb.st_ino; i++)
			h = (h ^ (unsigned char)(sb.st_ino >> (8 * i))) * 16777619u;
	return h;
}

/*
 * True if owner names a process on this host that no longer exists. Its pid
 * means something here only if it was given in this PID namespace since
 * this boot: two containers of one host name (a pod's, or --network host)
 * each have their own, where the other's pid may be anyone's or no one's.
 * An owner tag written before it named its locality is taken as local.
 */
static bool
store_owner_dead(struct store *s, const char *owner)
{
	size_t hl = strlen(s->host);
	const char *p;
	char *end;
	long pid;

	if (owner == NULL)
		return true;
	if (strncmp(owner, s->host, hl) != 0 || owner[hl] != '/')
		return false;
	p = owner + hl + 1;
	errno = 0;
	pid = strtol(p, &end, 10);
	if (errno != 0 || end == p || *end != '/' || pid <= 0)
		return false;
	if (strlen(end + 1) == 14 && strspn(end + 1, "0123456789abcdef") == 14 &&
	    strncmp(end + 1, s->locality, 8) != 0)
		return false;
	if (pid == (long)getpid())
		return false;
	if (kill((pid_t)pid, 0) != 0)
		return errno == ESRCH;
	return proc_zombie(pid);
}

static int
store_claim_one(struct store *s, const char *run_id, bool *claimed, char **cause)
{
	sqlite3_stmt *st = store_stmt(s, Q_CLAIM, cause);

	if (st == NULL)
		return -1;
	bind_text(st, 1, run_id);
	bind_text(st, 2, s->owner);
	sqlite3_bind_int64(st, 3, store_now(s) + s->lease_ms);
	if (store_exec_stmt(s, st, cause, "claim run") != 0)
		return -1;
	*claimed = sqlite3_changes(s->db) > 0;
	return 0;
}

/* Whether a run (row of Q_CLAIM_CANDIDATES) may be taken by this handle. */
static bool
store_claimable(struct store *s, const char *owner, int64_t lease_until)
{
	int64_t now = store_now(s);

	if (owner == NULL || strcmp(owner, s->owner) == 0)
		return true;
	/* Just after the clock stepped ahead, a lease run out may be one its
	 * owner has not renewed yet: only an owner known dead is taken from. */
	if (lease_until < now && now >= s->stepped_until)
		return true;
	return store_owner_dead(s, owner);
}

enum store_result
store_claim_unfinished(struct store *s, unsigned max, char ***ids, char **cause)
{
	sqlite3_stmt *st;
	char **v = NULL;
	size_t n = 0, i;
	int rc;
	bool claimed;

	*ids = NULL;
	if (store_begin(s, cause) != 0)
		return STORE_ERROR;
	if ((st = store_stmt(s, Q_CLAIM_CANDIDATES, cause)) == NULL)
		goto fail;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (max != 0 && n >= max)
			continue;
		if (!store_claimable(s, (const char *)sqlite3_column_text(st, 1),
		    sqlite3_column_int64(st, 2)))
			continue;
		v = ap_xreallocarray(v, n + 2, sizeof *v);
		v[n++] = col_text(st, 0);
		v[n] = NULL;
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE) {
		store_set_cause(s, cause, "list unfinished runs");
		goto fail;
	}
	for (i = 0; i < n; i++) {
		if (store_claim_one(s, v[i], &claimed, cause) != 0)
			goto fail;
	}
	if (store_commit(s, cause) != 0)
		goto fail;
	if (v == NULL)
		v = ap_xcalloc(1, sizeof *v);
	*ids = v;
	return STORE_OK;
fail:
	store_rollback(s);
	store_strv_free(v);
	return STORE_ERROR;
}

unsigned
store_held_elsewhere(struct store *s)
{
	sqlite3_stmt *st = store_stmt(s, Q_HELD_ELSEWHERE, NULL);
	unsigned n = 0;

	if (st == NULL)
		return 0;
	bind_text(st, 1, s->owner);
	while (sqlite3_step(st) == SQLITE_ROW)
		n += !store_claimable(s, (const char *)sqlite3_column_text(st, 0),
		    sqlite3_column_int64(st, 1));
	sqlite3_reset(st);
	return n;
}

bool
store_run_orphaned(struct store *s, const char *run_id)
{
	char *owner;
	int64_t lease;
	bool orphaned = store_run_holder(s, run_id, &owner, &lease) > 0 &&
	    (owner == NULL || strcmp(owner, s->owner) != 0) &&
	    store_claimable(s, owner, lease);

	free(owner);
	return orphaned;
}

enum store_result
store_claim(struct store *s, const char *run_id, char **cause)
{
	sqlite3_stmt *st;
	char *owner = NULL;
	int64_t lease = 0;
	bool found = false, claimed = false, nested;
	int rc;

	/* In a batch the owner acts only after the batch's commit, so the
	 * claim is durable before anything depends on it. */
	if (store_join(s, &nested, cause) != 0)
		return STORE_ERROR;
	if ((st = store_stmt(s, Q_CLAIM_ONE_GET, cause)) == NULL)
		goto fail;
	bind_text(st, 1, run_id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		found = true;
		owner = col_text(st, 0);
		lease = sqlite3_column_int64(st, 1);
	}
	sqlite3_reset(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		store_set_cause(s, cause, "claim lookup");
		goto fail;
	}
	if (found && store_claimable(s, owner, lease)) {
		if (store_claim_one(s, run_id, &claimed, cause) != 0)
			goto fail;
	}
	free(owner);
	owner = NULL;
	if (store_done(s, nested, cause) != 0)
		goto fail;
	return claimed ? STORE_OK : STORE_LOST;
fail:
	free(owner);
	store_undo(s, nested);
	return STORE_ERROR;
}

static struct store_run_row *
store_run_row_from(sqlite3_stmt *st)
{
	struct store_run_row *r = ap_xcalloc(1, sizeof *r);

	r->run_id = col_text(st, 0);
	r->service_type = col_text(st, 1);
	r->fqn = col_text(st, 2);
	r->state = col_text(st, 3);
	r->agents_json = col_text(st, 4);
	r->error = col_text(st, 5);
	r->created_at = sqlite3_column_int64(st, 6);
	r->started_at = sqlite3_column_int64(st, 7);
	r->finished_at = sqlite3_column_int64(st, 8);
	return r;
}

enum store_result
store_run_load(struct store *s, const char *run_id, struct store_run_row **run,
    struct store_agent_row **agents, unsigned *nagents, char **cause)
{
	struct store_run_row *r = NULL;
	struct store_agent_row *a = NULL, *x;
	unsigned n = 0;
	sqlite3_stmt *st;
	int rc;

	*run = NULL;
	*agents = NULL;
	*nagents = 0;
	if ((st = store_stmt(s, Q_RUN_GET, cause)) == NULL)
		return STORE_ERROR;
	bind_text(st, 1, run_id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		r = store_run_row_from(st);
	sqlite3_reset(st);
	if (rc == SQLITE_DONE)
		return STORE_NOT_FOUND;
	if (rc != SQLITE_ROW) {
		store_set_cause(s, cause, "load run");
		return STORE_ERROR;
	}
	if ((st = store_stmt(s, Q_AGENTS_OF, cause)) == NULL)
		goto fail;
	bind_text(st, 1, run_id);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		a = ap_xreallocarray(a, n + 1, sizeof *a);
		x = &a[n++];
		x->agent = col_text(st, 0);
		x->state = col_text(st, 1);
		x->dag_id = col_text(st, 2);
		x->dag_run_id = col_text(st, 3);
		x->attempt = (unsigned)sqlite3_column_int64(st, 4);
		x->started_at = sqlite3_column_int64(st, 5);
		x->finished_at = sqlite3_column_int64(st, 6);
		x->next_at = sqlite3_column_int64(st, 7);
		x->error = col_text(st, 8);
		x->stored = true;
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE) {
		store_set_cause(s, cause, "load agent runs");
		goto fail;
	}
	*run = r;
	*agents = a;
	*nagents = n;
	return STORE_OK;
fail:
	while (n > 0)
		store_agent_row_cleanup(&a[--n]);
	free(a);
	store_run_row_free(r);
	return STORE_ERROR;
}

enum store_result
store_run_entity(struct store *s, const char *run_id, char **entity_json, char **cause)
{
	sqlite3_stmt *st = store_stmt(s, Q_RUN_ENTITY, cause);
	int rc;

	*entity_json = NULL;
	if (st == NULL)
		return STORE_ERROR;
	bind_text(st, 1, run_id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*entity_json = col_text(st, 0);
	sqlite3_reset(st);
	if (rc == SQLITE_DONE)
		return STORE_NOT_FOUND;
	if (rc != SQLITE_ROW) {
		store_set_cause(s, cause, "load run entity");
		return STORE_ERROR;
	}
	return STORE_OK;
}

enum store_result
store_run_set_state(struct store *s, const char *run_id, const char *state,
    const char *error, bool final, char **cause)
{
	sqlite3_stmt *st = store_stmt(s, final ? Q_RUN_SET_FINAL : Q_RUN_SET_STATE,
	    cause);

	if (st == NULL)
		return STORE_ERROR;
	bind_text(st, 1, run_id);
	bind_text(st, 2, state);
	bind_text(st, 3, error);
	bind_text(st, 4, s->owner);
	sqlite3_bind_int64(st, 5, store_now(s));
	if (store_exec_stmt(s, st, cause, "set run state") != 0)
		return STORE_ERROR;
	return sqlite3_changes(s->db) > 0 ? STORE_OK : STORE_LOST;
}

/* The run to follow run_id (see store_run_end), inside a transaction. */
static int
store_run_followup(struct store *s, const char *run_id, char **next, char **cause)
{
	sqlite3_stmt *st = store_stmt(s, Q_RUN_FOLLOWUP, cause);
	char *type = NULL, *fqn = NULL, *entity = NULL, *other = NULL, *origin;
	bool needed = false;
	int rc;

	*next = NULL;
	if (st == NULL)
		return -1;
	bind_text(st, 1, run_id);
	bind_text(st, 2, s->owner);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW && sqlite3_column_type(st, 2) != SQLITE_NULL) {
		type = col_text(st, 0);
		fqn = col_text(st, 1);
		entity = col_text(st, 2);
		needed = true;
	}
	sqlite3_reset(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		store_set_cause(s, cause, "look for an event joined to the run");
		return -1;
	}
	/* Another active run of the service (it replaced this one) already
	 * takes that entity up. */
	rc = needed ? store_active_other(s, type, fqn, run_id, &other, cause) : 0;
	if (rc == 0 && needed && other == NULL) {
		origin = ap_xprintf("follow-up of run %s (an event that joined it"
		    " asked for more)", run_id);
		rc = store_new_run(s, type, fqn, entity, NULL, origin, next, cause);
		free(origin);
	}
	free(type);
	free(fqn);
	free(entity);
	free(other);
	return rc;
}

enum store_result
store_run_end(struct store *s, const char *run_id, const char *state,
    const char *error, char **next, char **cause)
{
	enum store_result r = STORE_ERROR;
	bool nested;

	*next = NULL;
	/* All or nothing, also inside a batch. */
	if (store_join(s, &nested, cause) != 0)
		return STORE_ERROR;
	if (store_run_followup(s, run_id, next, cause) == 0 &&
	    (r = store_run_set_state(s, run_id, state, error, true, cause)) ==
	    STORE_OK && store_done(s, nested, cause) != 0)
		r = STORE_ERROR;
	if (r != STORE_OK) {
		store_undo(s, nested);
		free(*next);
		*next = NULL;
	}
	return r;
}

enum store_result
store_run_owned(struct store *s, const char *run_id, char **cause)
{
	char *id;

	if (store_lookup(s, Q_RUN_OWNED, run_id, s->owner, NULL, &id,
	    "check the run's owner", cause) != 0)
		return STORE_ERROR;
	free(id);
	return id != NULL ? STORE_OK : STORE_LOST;
}

/* One agent write (Q_AGENT_SAVE or Q_AGENT_UPDATE): 1 if a row was written,
 * 0 if not (the fence), -1 on error. */
static int
store_agent_write(struct store *s, enum store_stmt_id id, const char *run_id,
    const struct store_agent_row *a, char **cause)
{
	sqlite3_stmt *st = store_stmt(s, id, cause);

	if (st == NULL)
		return -1;
	bind_text(st, 1, run_id);
	bind_text(st, 2, a->agent);
	bind_text(st, 3, a->state);
	bind_text(st, 4, a->dag_id);
	bind_text(st, 5, a->dag_run_id);
	sqlite3_bind_int64(st, 6, a->attempt);
	sqlite3_bind_int64(st, 7, a->started_at);
	sqlite3_bind_int64(st, 8, a->finished_at);
	sqlite3_bind_int64(st, 9, a->next_at);
	bind_text(st, 10, a->error);
	bind_text(st, 11, s->owner);
	if (store_exec_stmt(s, st, cause, "save agent run") != 0)
		return -1;
	return sqlite3_changes(s->db) > 0;
}

enum store_result
store_agent_save(struct store *s, const char *run_id, const struct store_agent_row *a,
    char **cause)
{
	int rc;

	/*
	 * Most saves change a row written before: a plain UPDATE costs less
	 * than the upsert. "stored" is only a hint: if the UPDATE finds
	 * nothing (the run is not ours any more, or the row is not there
	 * after all, e.g. its batch was rolled back), the upsert decides.
	 */
	if (a->stored) {
		rc = store_agent_write(s, Q_AGENT_UPDATE, run_id, a, cause);
		if (rc != 0)
			return rc > 0 ? STORE_OK : STORE_ERROR;
	}
	rc = store_agent_write(s, Q_AGENT_SAVE, run_id, a, cause);
	if (rc < 0)
		return STORE_ERROR;
	return rc > 0 ? STORE_OK : STORE_LOST;
}

/* ---- Airflow runs to be marked failed (halts). ---- */

void
store_set_halt_claim(struct store *s, int64_t ms, int64_t longest_ms)
{
	s->halt_claim_ms = ms;
	s->halt_longest_ms = longest_ms;
}

enum store_result
store_halt_add(struct store *s, const char *run_id, const char *dag_id,
    const char *dag_run_id, const char *what, int64_t next_at, char **cause)
{
	return store_halt_add_failed(s, run_id, dag_id, dag_run_id, what,
	    next_at, NULL, cause);
}

enum store_result
store_halt_add_failed(struct store *s, const char *run_id, const char *dag_id,
    const char *dag_run_id, const char *what, int64_t next_at,
    const char *error, char **cause)
{
	sqlite3_stmt *st = store_stmt(s, error != NULL ? Q_HALT_ADD_FAILED :
	    Q_HALT_ADD, cause);

	if (st == NULL)
		return STORE_ERROR;
	bind_text(st, 1, dag_id);
	bind_text(st, 2, dag_run_id);
	bind_text(st, 3, run_id);
	bind_text(st, 4, what);
	sqlite3_bind_int64(st, 5, next_at);
	sqlite3_bind_int64(st, 6, store_now(s));
	if (error != NULL)
		bind_text(st, 7, error);
	return store_exec_stmt(s, st, cause, "record an Airflow run to mark"
	    " failed") == 0 ? STORE_OK : STORE_ERROR;
}

enum store_result
store_halt_failed(struct store *s, const char *dag_id, const char *dag_run_id,
    const char *error, int64_t next_at, char **cause)
{
	sqlite3_stmt *st = store_stmt(s, Q_HALT_FAILED, cause);

	if (st == NULL)
		return STORE_ERROR;
	bind_text(st, 1, dag_id);
	bind_text(st, 2, dag_run_id);
	bind_text(st, 3, error);
	sqlite3_bind_int64(st, 4, next_at);
	return store_exec_stmt(s, st, cause, "record a failed PATCH") == 0 ?
	    STORE_OK : STORE_ERROR;
}

/* One statement on the halt (dag_id, dag_run_id): Q_HALT_DONE or
 * Q_HALT_RELEASE. */
static enum store_result
store_halt_exec(struct store *s, enum store_stmt_id id, const char *dag_id,
    const char *dag_run_id, const char *what, char **cause)
{
	sqlite3_stmt *st = store_stmt(s, id, cause);

	if (st == NULL)
		return STORE_ERROR;
	bind_text(st, 1, dag_id);
	bind_text(st, 2, dag_run_id);
	return store_exec_stmt(s, st, cause, what) == 0 ? STORE_OK : STORE_ERROR;
}

enum store_result
store_halt_done(struct store *s, const char *dag_id, const char *dag_run_id,
    char **cause)
{
	return store_halt_exec(s, Q_HALT_DONE, dag_id, dag_run_id, "forget an"
	    " Airflow run marked failed", cause);
}

enum store_result
store_halt_release(struct store *s, const char *dag_id, const char *dag_run_id,
    char **cause)
{
	return store_halt_exec(s, Q_HALT_RELEASE, dag_id, dag_run_id, "hand an"
	    " Airflow run to mark failed over", cause);
}

enum store_result
store_halts_due(struct store *s, unsigned limit, json_t **out, char **cause)
{
	sqlite3_stmt *st = store_stmt(s, Q_HALTS_DUE, cause);
	int rc;

	*out = NULL;
	if (st == NULL)
		return STORE_ERROR;
	sqlite3_bind_int64(st, 1, store_now(s));
	sqlite3_bind_int64(st, 2, limit);
	sqlite3_bind_int64(st, 3, store_now(s) + s->halt_claim_ms);
	/* Later than any halt is put off: written before the clock was set
	 * back (a margin of STORE_HALT_AHEAD_MS for other processes' settings
	 * and clocks). */
	sqlite3_bind_int64(st, 4, store_now(s) + (s->halt_longest_ms >
	    s->halt_claim_ms ? s->halt_longest_ms : s->halt_claim_ms) +
	    STORE_HALT_AHEAD_MS);
	*out = json_array();
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		json_array_append_new(*out, json_pack("{s:s, s:s, s:s, s:s, s:I, s:I}",
		    "dag_id", (const char *)sqlite3_column_text(st, 0),
		    "dag_run_id", (const char *)sqlite3_column_text(st, 1),
		    "run_id", (const char *)sqlite3_column_text(st, 2),
		    "what", (const char *)sqlite3_column_text(st, 3),
		    "tries", (json_int_t)sqlite3_column_int64(st, 4),
		    "created_at", (json_int_t)sqlite3_column_int64(st, 5)));
	sqlite3_reset(st);
	if (rc != SQLITE_DONE) {
		json_decref(*out);
		*out = NULL;
		store_set_cause(s, cause, "read the Airflow runs to mark failed");
		return STORE_ERROR;
	}
	return STORE_OK;
}

enum store_result
store_lease_renew(struct store *s, void (*each)(const char *, void *), void *arg,
    unsigned *renewed, char **cause)
{
	sqlite3_stmt *st = store_stmt(s, each != NULL ? Q_RENEW_IDS : Q_RENEW, cause);
	unsigned n = 0;
	int rc;

	if (renewed != NULL)
		*renewed = 0;
	if (st == NULL)
		return STORE_ERROR;
	bind_text(st, 1, s->owner);
	sqlite3_bind_int64(st, 2, store_now(s) + s->lease_ms);
	if (each == NULL) {
		if (store_exec_stmt(s, st, cause, "renew leases") != 0)
			return STORE_ERROR;
		n = (unsigned)sqlite3_changes(s->db);
	} else {
		/* Every row is updated at the first step; then they are named. */
		while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
			const char *id = (const char *)sqlite3_column_text(st, 0);

			if (id != NULL)
				each(id, arg);
			n++;
		}
		sqlite3_reset(st);
		if (rc != SQLITE_DONE) {
			store_set_cause(s, cause, "renew leases");
			return STORE_ERROR;
		}
	}
	if (renewed != NULL)
		*renewed = n;
	return STORE_OK;
}

void
store_clock_step_seen(struct store *s, int64_t step)
{
	if (step > 0)
		s->stepped_until = store_now(s) + s->lease_ms;
}

enum store_result
store_clock_stepped(struct store *s, int64_t step, unsigned *moved, char **cause)
{
	sqlite3_stmt *st = store_stmt(s, Q_SHIFT_AGENTS, cause);

	if (moved != NULL)
		*moved = 0;
	store_clock_step_seen(s, step);
	if (st == NULL)
		return STORE_ERROR;
	bind_text(st, 1, s->owner);
	sqlite3_bind_int64(st, 2, step);
	if (store_exec_stmt(s, st, cause, "move the agents' times") != 0)
		return STORE_ERROR;
	if (moved != NULL)
		*moved = (unsigned)sqlite3_changes(s->db);
	return store_lease_renew(s, NULL, NULL, NULL, cause);
}

enum store_result
store_release_all(struct store *s, char **cause)
{
	sqlite3_stmt *st = store_stmt(s, Q_RELEASE, cause);

	if (st == NULL)
		return STORE_ERROR;
	bind_text(st, 1, s->owner);
	return store_exec_stmt(s, st, cause, "release runs") == 0 ? STORE_OK :
	    STORE_ERROR;
}

/* ---- Retention. ---- */

struct prune_run {
	int64_t rowid;
	char *run_id, *service_type, *fqn;
};

/* Deletes run r (finished) with its agent runs, its entity first copied to
 * its service's row if that row refers to it. */
static int
store_prune_run(struct store *s, const struct prune_run *r, char **cause)
{
	sqlite3_stmt *st;

	if ((st = store_stmt(s, Q_PRUNE_SERVICE, cause)) == NULL)
		return -1;
	bind_text(st, 1, r->run_id);
	bind_text(st, 2, r->service_type);
	bind_text(st, 3, r->fqn);
	if (store_exec_stmt(s, st, cause, "keep a service's entity") != 0 ||
	    (st = store_stmt(s, Q_PRUNE_AGENTS, cause)) == NULL)
		return -1;
	bind_text(st, 1, r->run_id);
	if (store_exec_stmt(s, st, cause, "delete agent runs") != 0 ||
	    (st = store_stmt(s, Q_PRUNE_RUN, cause)) == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, r->rowid);
	return store_exec_stmt(s, st, cause, "delete a run");
}

/* The inbox's first (oldest) events received before `before`, at most max:
 * deleted; *more if max of them were. */
static int
store_prune_inbox(struct store *s, int64_t before, unsigned max,
    struct store_pruned *out, bool *more, char **cause)
{
	sqlite3_stmt *st = store_stmt(s, Q_PRUNE_INBOX_SCAN, cause);
	int64_t last = 0;
	unsigned n = 0;
	int rc;

	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, max);
	/* Received in rowid order: the first one too new (or of an active
	 * run) ends it. */
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (sqlite3_column_int64(st, 1) >= before ||
		    sqlite3_column_int(st, 2) != 0) {
			if (sqlite3_column_int64(st, 1) > out->held_until)
				out->held_until = sqlite3_column_int64(st, 1);
			break;
		}
		last = sqlite3_column_int64(st, 0);
		n++;
	}
	sqlite3_reset(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		store_set_cause(s, cause, "read the inbox");
		return -1;
	}
	if (n == 0)
		return 0;
	if ((st = store_stmt(s, Q_PRUNE_INBOX, cause)) == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, last);
	if (store_exec_stmt(s, st, cause, "delete events") != 0)
		return -1;
	out->events += (unsigned)sqlite3_changes(s->db);
	*more = *more || n == max;
	return 0;
}

enum store_result
store_prune(struct store *s, int64_t before, unsigned max,
    struct store_pruned *out, char **cause)
{
	struct prune_run *v;
	sqlite3_stmt *st;
	int64_t bound;
	unsigned n = 0, i;
	int rc = SQLITE_DONE;
	bool more = false;

	memset(out, 0, sizeof *out);
	if (max == 0)
		max = 1;
	v = ap_xcalloc(max, sizeof *v);
	if (store_begin(s, cause) != 0) {
		free(v);
		return STORE_ERROR;
	}
	if ((st = store_stmt(s, Q_PRUNE_BOUND, cause)) == NULL)
		goto fail;
	if ((rc = sqlite3_step(st)) != SQLITE_ROW) {
		sqlite3_reset(st);
		store_set_cause(s, cause, "read the runs");
		goto fail;
	}
	bound = sqlite3_column_type(st, 0) == SQLITE_NULL ? 0 :
	    sqlite3_column_int64(st, 0);
	sqlite3_reset(st);

	/* The first runs only, up to the first one kept: what is deleted
	 * is always the oldest, so that store_counts() sees it. */
	if ((st = store_stmt(s, Q_PRUNE_SCAN, cause)) == NULL)
		goto fail;
	sqlite3_bind_int64(st, 1, bound);
	sqlite3_bind_int64(st, 2, max);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (sqlite3_column_int64(st, 4) >= before) {
			out->held_until = sqlite3_column_int64(st, 4);
			break;
		}
		if (sqlite3_column_int(st, 5) != 0) {
			out->held_by = col_text(st, 1);
			break;
		}
		v[n].rowid = sqlite3_column_int64(st, 0);
		v[n].run_id = col_text(st, 1);
		v[n].service_type = col_text(st, 2);
		v[n].fqn = col_text(st, 3);
		n++;
	}
	sqlite3_reset(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		store_set_cause(s, cause, "read the runs");
		goto fail;
	}
	more = n == max;
	for (i = 0; i < n; i++)
		if (store_prune_run(s, &v[i], cause) != 0)
			goto fail;
	out->runs = n;
	if (store_prune_inbox(s, before, max, out, &more, cause) != 0 ||
	    store_commit(s, cause) != 0)
		goto fail;
	out->more = more;
	rc = 0;
	goto out;
fail:
	store_rollback(s);
	free(out->held_by);
	memset(out, 0, sizeof *out);
	rc = -1;
out:
	for (i = 0; i < n; i++) {
		free(v[i].run_id);
		free(v[i].service_type);
		free(v[i].fqn);
	}
	free(v);
	return rc == 0 ? STORE_OK : STORE_ERROR;
}
