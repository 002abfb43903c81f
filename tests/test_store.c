/* test_store.c — the SQLite store: schema migrations and backup, refusal of
 * newer databases, inbox idempotence, re-run refusal/replace, status JSON,
 * claims and leases between two handles, recovery of unfinished runs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <pthread.h>
#include <sqlite3.h>

#include "store.h"
#include "util.h"

static char tmpdir[256];

static char *
db_path(const char *name)
{
	return ap_xprintf("%s/%s", tmpdir, name);
}

static int
setup_dir(void **state)
{
	snprintf(tmpdir, sizeof tmpdir, "/tmp/test_store.XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	return 0;
}

static int
teardown_dir(void **state)
{
	char *cmd = ap_xprintf("rm -rf '%s'", tmpdir);

	assert_int_equal(system(cmd), 0);
	free(cmd);
	return 0;
}

static struct store *
open_ok(const char *path, const struct store_options *o)
{
	char *cause = NULL;
	struct store *s = store_open(path, o, &cause);

	if (s == NULL)
		fail_msg("store_open: %s", cause);
	return s;
}

static int64_t fake_now = 1700000000000LL;

static int64_t
fake_clock(void *arg)
{
	return *(int64_t *)arg;
}

static void
test_fresh_open_is_current_and_wal(void **state)
{
	char *p = db_path("fresh.db"), *wal = ap_xprintf("%s-wal", p);
	struct store *s = open_ok(p, NULL);
	sqlite3 *db;
	sqlite3_stmt *st;
	struct stat sb;

	assert_int_equal(store_schema_version(s), STORE_SCHEMA_VERSION);
	assert_null(store_backup_path(s));
	/* Service entities and Airflow's answers: for its owner only, the
	 * write-ahead log too. */
	assert_int_equal(stat(p, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	assert_int_equal(stat(wal, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	free(wal);
	store_close(s);
	/* Through a link to a file not there yet, as SQLite follows it. */
	{
		char *link = db_path("link.db"), *target = db_path("target.db");

		assert_int_equal(symlink(target, link), 0);
		store_close(open_ok(link, NULL));
		assert_int_equal(stat(target, &sb), 0);
		assert_int_equal(sb.st_mode & 0777, 0600);
		free(link);
		free(target);
	}
	assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL),
	    SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
	sqlite3_finalize(st);
	sqlite3_close(db);
	/* Reopening a current database neither migrates nor backs up. */
	s = open_ok(p, NULL);
	assert_null(store_backup_path(s));
	store_close(s);
	free(p);
}

/* A database of schema version, with a run 'rold' of service pg (state,
 * entity run_entity) and pg's entity, as an older autopilot wrote them. */
static void
old_database(const char *p, unsigned version, const char *state,
    const char *run_entity, const char *service_entity)
{
	struct store_options o = { .target_version = version };
	struct store *s = open_ok(p, &o);
	sqlite3 *db;
	char *sql;

	assert_int_equal(store_schema_version(s), version);
	store_close(s);
	sql = sqlite3_mprintf("INSERT INTO runs (run_id, service_type, fqn, state, entity,"
	    " created_at) VALUES ('rold', 'databaseService', 'pg', %Q, %Q, 1);"
	    "INSERT INTO services VALUES ('databaseService', 'pg', %Q, 1);", state,
	    run_entity, service_entity);
	assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	sqlite3_free(sql);
}

/* Commits the raw connection's transaction after 300 ms, and closes it. */
static void *
commit_later(void *arg)
{
	sqlite3 *db = arg;

	usleep(300000);
	assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	return NULL;
}

/*
 * Another process migrates to a newer schema while this one, about to
 * migrate an old database, waits for the write lock: the version read again
 * under the lock is newer than this autopilot's, and the database is
 * refused as one found newer at first would be (not migrated again, nor
 * opened as this version).
 */
static void
test_newer_migration_seen_under_lock(void **state)
{
	char *p = db_path("race.db"), *cause = NULL, sql[64];
	sqlite3 *db;
	pthread_t t;

	(void)state;
	old_database(p, 1, "pending", "{}", "{}");
	assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
	snprintf(sql, sizeof sql, "BEGIN IMMEDIATE; PRAGMA user_version = %d",
	    STORE_SCHEMA_VERSION + 1);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(pthread_create(&t, NULL, commit_later, db), 0);
	assert_null(store_open(p, NULL, &cause));
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_non_null(cause);
	assert_non_null(strstr(cause, "migrated it just now"));
	free(cause);
	free(p);
}

static void
test_migration_from_v1_backs_up_and_keeps_data(void **state)
{
	char *p = db_path("old.db"), *cause = NULL, *run_id = NULL, *ent = NULL;
	struct store *s;
	sqlite3 *db;
	sqlite3_stmt *st;
	struct stat sb;
	json_t *j = NULL;

	old_database(p, 1, "succeeded", "{}", "{\"name\":\"pg\"}");
	/* The backup is readable by whom the database is, no more. */
	assert_int_equal(chmod(p, 0640), 0);

	/* A command that only reads refuses it, and writes nothing. */
	{
		struct store_options ro = { .no_migrate = true };
		char *bak = ap_xprintf("ls '%s'.v1.*.bak >/dev/null 2>&1", p);

		assert_null(store_open(p, &ro, &cause));
		assert_non_null(strstr(cause, "older than this autopilot's"));
		free(cause);
		cause = NULL;
		assert_int_not_equal(system(bak), 0);
		free(bak);
	}
	s = open_ok(p, NULL);
	assert_int_equal(store_schema_version(s), STORE_SCHEMA_VERSION);
	assert_non_null(store_backup_path(s));
	assert_int_equal(stat(store_backup_path(s), &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0640);
	/* The backup is the old database: version 1, with the old row. */
	assert_int_equal(sqlite3_open(store_backup_path(s), &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL),
	    SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(st, 0), 1);
	sqlite3_finalize(st);
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM runs", -1, &st,
	    NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(st, 0), 1);
	sqlite3_finalize(st);
	sqlite3_close(db);
	/* Data survived the migration and the new columns work. */
	assert_int_equal(store_run_json(s, "rold", &j, &cause), STORE_OK);
	assert_string_equal(json_string_value(json_object_get(j, "state")), "succeeded");
	/* Made before runs said why they exist. */
	assert_true(json_is_null(json_object_get(j, "origin")));
	json_decref(j);
	assert_int_equal(store_service_get(s, NULL, "pg", &ent, NULL, &cause), STORE_OK);
	assert_string_equal(ent, "{\"name\":\"pg\"}");
	free(ent);
	assert_int_equal(store_run_create(s, "databaseService", "pg", "{}", NULL, false,
	    &run_id, &cause), STORE_OK);
	free(run_id);
	store_close(s);
	free(p);
}

/*
 * Entities: a v2 database's rows keep their text; from v3 on a new run's
 * entity is stored once for the run and its service, and the run keeps the
 * entity it was created with when the service's changes.
 */
static void
test_entity_stored_once_and_v2_rows_kept(void **state)
{
	char *p = db_path("v2.db"), *cause = NULL, *r1 = NULL, *r2 = NULL, *ent = NULL;
	struct store *s;
	sqlite3 *db;
	sqlite3_stmt *st;

	old_database(p, 2, "pending", "{\"v\":1}", "{\"v\":1}");

	s = open_ok(p, NULL);
	assert_int_equal(store_schema_version(s), STORE_SCHEMA_VERSION);
	assert_non_null(store_backup_path(s));
	assert_int_equal(store_run_entity(s, "rold", &ent, &cause), STORE_OK);
	assert_string_equal(ent, "{\"v\":1}");
	free(ent);
	assert_int_equal(store_service_get(s, "databaseService", "pg", &ent, NULL,
	    &cause), STORE_OK);
	assert_string_equal(ent, "{\"v\":1}");
	free(ent);

	/* A new run: one copy of its entity, read back through both rows. */
	assert_int_equal(store_inbox_accept(s, "ev-1", "databaseService", "pg2",
	    "{\"v\":2}", &r1, NULL, NULL, &cause), STORE_OK);
	assert_int_equal(store_run_entity(s, r1, &ent, &cause), STORE_OK);
	assert_string_equal(ent, "{\"v\":2}");
	free(ent);
	assert_int_equal(store_service_get(s, NULL, "pg2", &ent, NULL, &cause), STORE_OK);
	assert_string_equal(ent, "{\"v\":2}");
	free(ent);
	/* Joining the active run, taken up, changes the service's entity, not
	 * the run's. */
	assert_int_equal(store_claim(s, r1, &cause), STORE_OK);
	assert_int_equal(store_inbox_accept(s, "ev-2", "databaseService", "pg2",
	    "{\"v\":3}", &r2, NULL, NULL, &cause), STORE_OK);
	assert_string_equal(r1, r2);
	free(r2);
	assert_int_equal(store_service_get(s, NULL, "pg2", &ent, NULL, &cause), STORE_OK);
	assert_string_equal(ent, "{\"v\":3}");
	free(ent);
	assert_int_equal(store_service_put(s, "databaseService", "pg2", "{\"v\":4}",
	    &cause), STORE_OK);
	assert_int_equal(store_run_entity(s, r1, &ent, &cause), STORE_OK);
	assert_string_equal(ent, "{\"v\":2}");
	free(ent);
	/* A replacing run of the old service refers to its own copy. */
	assert_int_equal(store_run_create(s, "databaseService", "pg", "{\"v\":5}", NULL,
	    true, &r2, &cause), STORE_OK);
	assert_int_equal(store_run_entity(s, r2, &ent, &cause), STORE_OK);
	assert_string_equal(ent, "{\"v\":5}");
	free(ent);
	assert_int_equal(store_run_entity(s, "rold", &ent, &cause), STORE_OK);
	assert_string_equal(ent, "{\"v\":1}");
	free(ent);
	free(r2);
	store_close(s);

	/* One copy of each entity: a service that refers to a run has none. */
	assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM services WHERE"
	    " entity = '' AND entity_run IS NOT NULL", -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(st, 0), 1);
	sqlite3_finalize(st);
	/* An autopilot of schema 2 still running on the upgraded store writes
	 * the entity text and leaves entity_run: its text is the latest. */
	assert_int_equal(sqlite3_exec(db, "UPDATE services SET entity = '{\"v\":6}'"
	    " WHERE fqn = 'pg'", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	s = open_ok(p, NULL);
	assert_int_equal(store_service_get(s, "databaseService", "pg", &ent, NULL, &cause),
	    STORE_OK);
	assert_string_equal(ent, "{\"v\":6}");
	free(ent);
	store_close(s);
	/* The run a service refers to deleted by hand: no entity, not an empty one. */
	assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "UPDATE services SET entity = '' WHERE fqn = 'pg';"
	    " DELETE FROM runs WHERE run_id = (SELECT entity_run FROM services WHERE"
	    " fqn = 'pg')", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	s = open_ok(p, NULL);
	assert_int_equal(store_service_get(s, "databaseService", "pg", &ent, NULL, &cause),
	    STORE_NOT_FOUND);
	assert_null(ent);
	store_close(s);
	free(r1);
	free(p);
}

static void
test_newer_database_is_refused(void **state)
{
	char *p = db_path("newer.db"), *cause = NULL;
	struct store *s = open_ok(p, NULL);
	sqlite3 *db;
	char sql[64];

	store_close(s);
	assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
	snprintf(sql, sizeof sql, "PRAGMA user_version = %d", STORE_SCHEMA_VERSION + 1);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	s = store_open(p, NULL, &cause);
	assert_null(s);
	assert_non_null(cause);
	assert_non_null(strstr(cause, "newer"));
	free(cause);
	free(p);
}

/* The check for writing leaves the schema version as it is: another
 * process that migrated the database since this one opened it is not undone
 * (which would have the next start migrate again); the check fails, saying so. */
static void
test_writable_check_keeps_version(void **state)
{
	char *p = db_path("stamp.db"), *cause = NULL;
	struct store *s = open_ok(p, NULL);
	sqlite3 *db;
	sqlite3_stmt *st;
	char sql[64];

	(void)state;
	assert_int_equal(store_check_writable(s, &cause), STORE_OK);
	assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
	snprintf(sql, sizeof sql, "PRAGMA user_version = %d", STORE_SCHEMA_VERSION + 1);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(store_check_writable(s, &cause), STORE_ERROR);
	assert_non_null(strstr(cause, "another autopilot migrated it since"));
	free(cause);
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL),
	    SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(st, 0), STORE_SCHEMA_VERSION + 1);
	sqlite3_finalize(st);
	sqlite3_close(db);
	store_close(s);
	free(p);
}

/* A database of another program (tables, user_version 0) is refused, not
 * backed up and extended; nothing is written next to it. */
static void
test_foreign_database_is_refused(void **state)
{
	char *p = db_path("foreign.db"), *cause = NULL;
	char *bak = ap_xprintf("ls '%s'.v0.*.bak >/dev/null 2>&1", p);
	struct store_options ro = { .read_only = true };
	sqlite3 *db;

	(void)state;
	assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "CREATE TABLE runs (x); CREATE TABLE"
	    " other (y)", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	assert_null(store_open(p, NULL, &cause));
	assert_non_null(strstr(cause, "not an autopilot state database (it has"
	    " 2 tables or indexes"));
	free(cause);
	cause = NULL;
	assert_null(store_open(p, &ro, &cause));
	assert_non_null(strstr(cause, "not an autopilot state database"));
	free(cause);
	assert_int_not_equal(system(bak), 0);
	free(bak);
	free(p);
}

/* Read-only: an empty file stays empty (version 0, no schema, no WAL); a
 * database is read as it is; checks for writing fail. */
static void
test_read_only_open_writes_nothing(void **state)
{
	char *p = db_path("ro.db"), *cause = NULL, *run_id = NULL;
	struct store_options ro = { .read_only = true };
	struct store *s;
	struct stat sb;
	json_t *runs = NULL;
	FILE *f;

	(void)state;
	assert_non_null(f = fopen(p, "w"));
	fclose(f);
	s = open_ok(p, &ro);
	assert_int_equal(store_schema_version(s), 0);
	store_close(s);
	assert_int_equal(stat(p, &sb), 0);
	assert_int_equal(sb.st_size, 0);

	unlink(p);
	s = open_ok(p, NULL);
	assert_int_equal(store_inbox_accept(s, "ev-1", "databaseService", "svc",
	    "{\"name\": \"svc\"}", &run_id, NULL, NULL, &cause), STORE_OK);
	assert_int_equal(store_check_writable(s, &cause), STORE_OK);
	store_close(s);
	s = open_ok(p, &ro);
	assert_int_equal(store_schema_version(s), STORE_SCHEMA_VERSION);
	assert_int_equal(store_runs_json(s, NULL, 0, &runs, &cause), STORE_OK);
	assert_int_equal(json_array_size(runs), 1);
	assert_string_equal(json_string_value(json_object_get(json_array_get(
	    runs, 0), "run_id")), run_id);
	assert_int_equal(store_check_writable(s, &cause), STORE_ERROR);
	assert_non_null(strstr(cause, "read-only"));
	free(cause);
	json_decref(runs);
	store_close(s);
	free(run_id);
	free(p);
}

static void
test_inbox_is_idempotent(void **state)
{
	char *p = db_path("inbox.db"), *cause = NULL, *r1, *r2, *r3, *ent, *type;
	struct store *s = open_ok(p, NULL);
	bool joined = true;

	assert_int_equal(store_inbox_accept(s, "ev-1", "databaseService", "pg1",
	    "{\"name\":\"pg1\"}", &r1, &joined, NULL, &cause), STORE_OK);
	assert_false(joined);
	assert_int_equal(store_inbox_accept(s, "ev-1", "databaseService", "pg1",
	    "{\"name\":\"pg1\"}", &r2, NULL, NULL, &cause), STORE_REPEAT);
	assert_string_equal(r1, r2);
	free(r2);
	/* Another event for a service with an active run joins that run. */
	assert_int_equal(store_inbox_accept(s, "ev-2", "databaseService", "pg1",
	    "{\"name\":\"pg1\",\"v\":2}", &r2, &joined, NULL, &cause), STORE_OK);
	assert_true(joined);
	assert_string_equal(r1, r2);
	free(r2);
	/* A different service gets its own run. */
	assert_int_equal(store_inbox_accept(s, "ev-3", "databaseService", "pg2",
	    "{}", &r3, &joined, NULL, &cause), STORE_OK);
	assert_false(joined);
	assert_string_not_equal(r1, r3);
	assert_int_equal(store_service_get(s, "databaseService", "pg1", &ent, &type,
	    &cause), STORE_OK);
	assert_string_equal(ent, "{\"name\":\"pg1\",\"v\":2}");
	assert_string_equal(type, "databaseService");
	free(ent);
	free(type);
	assert_int_equal(store_service_get(s, NULL, "nope", &ent, NULL, &cause),
	    STORE_NOT_FOUND);
	/* The answer survives a reopen. */
	store_close(s);
	s = open_ok(p, NULL);
	assert_int_equal(store_inbox_accept(s, "ev-1", "x", "y", "{}", &r2, NULL, NULL, &cause),
	    STORE_REPEAT);
	assert_string_equal(r1, r2);
	free(r1);
	free(r2);
	free(r3);
	store_close(s);
	free(p);
}

/* Ends run id (claimed by s) and returns the run that follows it, if any. */
static char *
end_run(struct store *s, const char *id)
{
	char *cause = NULL, *next = NULL;

	assert_int_equal(store_claim(s, id, &cause), STORE_OK);
	assert_int_equal(store_run_end(s, id, "succeeded", NULL, &next, &cause),
	    STORE_OK);
	return next;
}

/* Event eid for service pg with entity: the id of its run (a new string),
 * which must be active_id when that is not NULL (the event joins it), and
 * whether a run is to follow must be follows. A new run is taken up (claimed)
 * at once, as serve takes it when it has room. */
static char *
accept_pg(struct store *s, const char *eid, const char *entity,
    const char *active_id, bool follows)
{
	char *cause = NULL, *id = NULL;
	bool joined, more;

	assert_int_equal(store_inbox_accept(s, eid, "databaseService", "pg", entity,
	    &id, &joined, &more, &cause), STORE_OK);
	assert_int_equal(joined, active_id != NULL);
	assert_int_equal(more, follows);
	if (active_id != NULL)
		assert_string_equal(id, active_id);
	else
		assert_int_equal(store_claim(s, id, &cause), STORE_OK);
	return id;
}

/*
 * Event e1 starts a run of pg ({"v":1}), event e2 joins it with another
 * entity ({"v":2}), a re-run with entity and these agents (NULL: the whole
 * plan) replaces it, and ends: the run that follows it, if any.
 */
static char *
join_then_replace(struct store *s, const char *e1, const char *e2,
    const char *entity, const char *agents)
{
	char *cause = NULL, *r1, *r2, *next;

	r1 = accept_pg(s, e1, "{\"v\":1}", NULL, false);
	free(accept_pg(s, e2, "{\"v\":2}", r1, true));
	assert_int_equal(store_run_create(s, "databaseService", "pg", entity,
	    agents, true, &r2, &cause), STORE_OK);
	next = end_run(s, r2);
	free(r1);
	free(r2);
	return next;
}

/* The origin of run id, as status JSON has it: want, or NULL for null. */
static void
assert_run_origin(struct store *s, const char *id, const char *want)
{
	char *cause = NULL;
	json_t *j = NULL;

	assert_int_equal(store_run_json(s, id, &j, &cause), STORE_OK);
	if (want == NULL)
		assert_true(json_is_null(json_object_get(j, "origin")));
	else
		assert_string_equal(json_string_value(json_object_get(j, "origin")),
		    want);
	json_decref(j);
}

/*
 * Why a run exists is stored with it: the event that made it, a re-run's
 * asker, the run a follow-up follows. The list says the same as one run.
 */
static void
test_run_origin(void **state)
{
	char *p = db_path("origin.db"), *cause = NULL, *r1, *r2, *next;
	struct store *s = open_ok(p, NULL);
	json_t *list = NULL;

	(void)state;
	r1 = accept_pg(s, "ev-o1", "{\"v\":1}", NULL, false);
	assert_run_origin(s, r1, "webhook event ev-o1");
	free(accept_pg(s, "ev-o2", "{\"v\":2}", r1, true));
	next = end_run(s, r1);
	assert_non_null(next);
	{
		char *want = ap_xprintf("follow-up of run %s (an event that joined"
		    " it asked for more)", r1);

		assert_run_origin(s, next, want);
		free(want);
	}
	assert_int_equal(store_run_replace(s, "databaseService", "pg", "{}", NULL,
	    true, false, "admin re-run from 127.0.0.1:5000", &r2, NULL, &cause),
	    STORE_OK);
	assert_run_origin(s, r2, "admin re-run from 127.0.0.1:5000");
	assert_int_equal(store_runs_json(s, NULL, 10, &list, &cause), STORE_OK);
	assert_int_equal(json_array_size(list), 3);
	assert_string_equal(json_string_value(json_object_get(json_array_get(list,
	    0), "origin")), "admin re-run from 127.0.0.1:5000");
	assert_string_equal(json_string_value(json_object_get(json_array_get(list,
	    2), "origin")), "webhook event ev-o1");
	json_decref(list);
	free(next);
	free(r1);
	free(r2);
	store_close(s);
	free(p);
}

static void
assert_run_entity(struct store *s, const char *id, const char *want)
{
	char *cause = NULL, *ent = NULL;

	assert_int_equal(store_run_entity(s, id, &ent, &cause), STORE_OK);
	assert_string_equal(ent, want);
	free(ent);
}

/*
 * An event that joins an active run is not left without the run it asked
 * for: when the run ends, a new one follows if the event brought another
 * entity, or if the run was limited to some agents. The same entity again
 * (a redelivery under a new id) asks for nothing more.
 */
static void
test_joined_event_gets_its_run(void **state)
{
	char *p = db_path("followup.db"), *cause = NULL, *r1, *r2, *next, *ent;
	bool joined, more;
	struct store *s = open_ok(p, NULL);

	/* The same entity, its keys in another order: nothing follows. */
	r1 = accept_pg(s, "e1", "{\"v\":1,\"w\":[1,2]}", NULL, false);
	free(accept_pg(s, "e2", "{\"w\":[1,2],\"v\":1}", r1, false));
	assert_null(end_run(s, r1));
	free(r1);
	/* Nothing joined: nothing follows. */
	r1 = accept_pg(s, "e3", "{\"v\":1}", NULL, false);
	assert_null(end_run(s, r1));
	free(r1);
	/* Another entity joined: a run with it follows, and is the active one. */
	r1 = accept_pg(s, "e4", "{\"v\":1}", NULL, false);
	free(accept_pg(s, "e5", "{\"v\":2}", r1, true));
	assert_non_null(next = end_run(s, r1));
	assert_string_not_equal(next, r1);
	assert_run_entity(s, next, "{\"v\":2}");
	free(accept_pg(s, "e6", "{\"v\":2}", next, false));
	assert_null(end_run(s, next));	/* e6 brought the same entity */
	free(next);
	free(r1);
	/* Another entity, then the run's own again: nothing follows. */
	r1 = accept_pg(s, "e8", "{\"v\":5}", NULL, false);
	free(accept_pg(s, "e9", "{\"v\":6}", r1, true));
	free(accept_pg(s, "e10", "{\"v\":5}", r1, false));
	assert_null(end_run(s, r1));
	free(r1);
	/* A run limited to some agents that an event joined: the whole plan
	 * follows, even for the same entity. */
	assert_int_equal(store_run_create(s, "databaseService", "pg", "{\"v\":2}",
	    "[\"profiler\"]", false, &r1, &cause), STORE_OK);
	free(accept_pg(s, "e7", "{\"v\":2}", r1, true));
	assert_non_null(next = end_run(s, r1));
	assert_run_entity(s, next, "{\"v\":2}");
	assert_null(end_run(s, next));
	free(next);
	free(r1);
	/* An event joined a run that a re-run limited to some agents then
	 * replaced: the replacement carries the ask on. */
	assert_non_null(next = join_then_replace(s, "e11", "e12", "{\"v\":2}",
	    "[\"metadata\"]"));
	assert_run_entity(s, next, "{\"v\":2}");
	assert_null(end_run(s, next));
	free(next);
	/* ... with the event's entity, whatever entity the replacement was
	 * given (autopilot run --service-json), limited or not. */
	assert_non_null(next = join_then_replace(s, "e16", "e17", "{\"v\":3}",
	    "[\"metadata\"]"));
	assert_run_entity(s, next, "{\"v\":2}");
	assert_null(end_run(s, next));
	free(next);
	assert_non_null(next = join_then_replace(s, "e18", "e19", "{\"v\":3}", NULL));
	assert_run_entity(s, next, "{\"v\":2}");
	assert_null(end_run(s, next));
	free(next);
	/* A run replaced is no longer its driver's (store_run_owned, the
	 * guard of a trigger's retries). */
	r1 = accept_pg(s, "e15", "{\"v\":11}", NULL, false);
	assert_int_equal(store_claim(s, r1, &cause), STORE_OK);
	assert_int_equal(store_run_owned(s, r1, &cause), STORE_OK);
	assert_int_equal(store_run_create(s, "databaseService", "pg", "{\"v\":11}",
	    NULL, true, &r2, &cause), STORE_OK);
	assert_int_equal(store_run_owned(s, r1, &cause), STORE_LOST);
	assert_null(end_run(s, r2));
	free(r1);
	free(r2);
	/* ... which a replacement of the whole plan does itself. */
	assert_null(join_then_replace(s, "e13", "e14", "{\"v\":2}", NULL));
	/* A run nobody has taken up yet (waiting for admission) takes the
	 * entity of an event that joins it: nothing follows. Not one limited
	 * to some agents (the event asks for the whole plan). */
	assert_int_equal(store_inbox_accept(s, "e20", "databaseService", "pg",
	    "{\"v\":20}", &r1, &joined, &more, &cause), STORE_OK);
	assert_int_equal(store_inbox_accept(s, "e21", "databaseService", "pg",
	    "{\"v\":21}", &r2, &joined, &more, &cause), STORE_OK);
	assert_string_equal(r1, r2);
	assert_true(joined);
	assert_false(more);
	assert_run_entity(s, r1, "{\"v\":21}");
	assert_int_equal(store_service_get(s, "databaseService", "pg", &ent, NULL,
	    &cause), STORE_OK);
	assert_string_equal(ent, "{\"v\":21}");
	free(ent);
	assert_null(end_run(s, r1));
	free(r1);
	free(r2);
	assert_int_equal(store_run_create(s, "databaseService", "pg", "{\"v\":22}",
	    "[\"profiler\"]", false, &r1, &cause), STORE_OK);
	free(accept_pg(s, "e22", "{\"v\":23}", r1, true));
	assert_run_entity(s, r1, "{\"v\":22}");
	assert_non_null(next = end_run(s, r1));
	assert_run_entity(s, next, "{\"v\":23}");
	assert_null(end_run(s, next));
	free(next);
	free(r1);
	/* The service's entity written with no event joined (as a schema-2
	 * process on the same store writes it): nothing follows. */
	assert_int_equal(store_run_create(s, "databaseService", "pg", "{\"v\":3}",
	    "[\"profiler\"]", false, &r1, &cause), STORE_OK);
	assert_int_equal(store_service_put(s, "databaseService", "pg", "{\"v\":4}",
	    &cause), STORE_OK);
	assert_null(end_run(s, r1));
	free(r1);
	store_close(s);
	free(p);
}

static int
count_rows(const char *path, const char *sql)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	int n;

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	n = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return n;
}

/*
 * A run's end and the run that follows it go together or not at all: when
 * writing the final state fails after the follow-up was made (a trigger
 * refuses it here), neither is written, alone or inside a group-commit
 * batch, whose other writes stay and commit.
 */
static void
test_run_end_all_or_nothing(void **state)
{
	char *p = db_path("end.db"), *cause = NULL, *r1, *other = NULL, *next = NULL;
	struct store *s = open_ok(p, NULL);
	sqlite3 *db;
	bool joined, follows;
	int batch;

	(void)state;
	assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "CREATE TRIGGER refuse_end BEFORE UPDATE OF"
	    " finished_at ON runs WHEN NEW.finished_at > 0 AND OLD.fqn = 'pg'"
	    " BEGIN SELECT RAISE(ABORT, 'refused'); END", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	r1 = accept_pg(s, "e1", "{\"v\":1}", NULL, false);
	free(accept_pg(s, "e2", "{\"v\":2}", r1, true));
	assert_int_equal(store_claim(s, r1, &cause), STORE_OK);
	for (batch = 0; batch < 2; batch++) {
		if (batch) {
			assert_int_equal(store_batch_begin(s, &cause), STORE_OK);
			assert_int_equal(store_inbox_accept(s, "e3", "databaseService",
			    "other", "{}", &other, &joined, &follows, &cause), STORE_OK);
		}
		assert_int_equal(store_run_end(s, r1, "succeeded", NULL, &next,
		    &cause), STORE_ERROR);
		assert_null(next);
		assert_non_null(strstr(cause, "refused"));
		free(cause);
		cause = NULL;
		if (batch) {
			assert_int_equal(store_flush(s, &cause), STORE_OK);
			assert_int_equal(store_batch_failures(s), 0);
		}
		/* The run, still active, and no follow-up; the batch's run. */
		assert_int_equal(count_rows(p, "SELECT count(*) FROM runs WHERE"
		    " fqn = 'pg'"), 1);
		assert_int_equal(count_rows(p, "SELECT count(*) FROM runs WHERE"
		    " fqn = 'pg' AND state IN ('pending', 'running')"), 1);
		assert_int_equal(count_rows(p, "SELECT count(*) FROM runs WHERE"
		    " fqn = 'other'"), batch);
	}
	free(other);
	free(r1);
	store_close(s);
	free(p);
}

static void
test_rerun_refused_while_active_then_replace(void **state)
{
	char *p = db_path("rerun.db"), *cause = NULL, *r1, *r2, *r3;
	struct store *s = open_ok(p, NULL);
	json_t *j;

	assert_int_equal(store_run_create(s, "databaseService", "svc", "{}", NULL, false,
	    &r1, &cause), STORE_OK);
	assert_int_equal(store_run_create(s, "databaseService", "svc", "{}", NULL, false,
	    &r2, &cause), STORE_ACTIVE);
	assert_string_equal(r1, r2);
	free(r2);
	assert_int_equal(store_claim(s, r1, &cause), STORE_OK);
	struct store_agent_row m = { .agent = "metadata", .state = "running" };
	struct store_agent_row u = { .agent = "usage", .state = "pending" };
	struct store_agent_row l = { .agent = "lineage", .state = "pending",
	    .attempt = 1 };
	assert_int_equal(store_agent_save(s, r1, &m, &cause), STORE_OK);
	assert_int_equal(store_agent_save(s, r1, &u, &cause), STORE_OK);
	assert_int_equal(store_agent_save(s, r1, &l, &cause), STORE_OK);
	assert_int_equal(store_run_create(s, "databaseService", "svc", "{}",
	    "[\"metadata\"]", true, &r2, &cause), STORE_OK);
	assert_string_not_equal(r1, r2);
	assert_int_equal(store_run_json(s, r1, &j, &cause), STORE_OK);
	assert_string_equal(json_string_value(json_object_get(j, "state")), "failed");
	assert_non_null(strstr(json_string_value(json_object_get(j, "error")), r2));
	/* The old run's owner finds it is not its own any more. */
	struct store_agent_row a = { .agent = "metadata", .state = "deploying" };
	assert_int_equal(store_agent_save(s, r1, &a, &cause), STORE_LOST);
	json_decref(j);
	assert_int_equal(store_run_json(s, r1, &j, &cause), STORE_OK);
	assert_int_equal(store_run_set_state(s, r1, "running", NULL, false, &cause),
	    STORE_LOST);
	/* Its agent did not stay "running" either; one that had not begun
	 * did not run (skipped), one waiting to try again had failed. */
	assert_string_equal(json_string_value(json_object_get(json_array_get(
	    json_object_get(j, "agents"), 0), "state")), "failed");
	assert_string_equal(json_string_value(json_object_get(json_array_get(
	    json_object_get(j, "agents"), 1), "state")), "skipped");
	assert_non_null(strstr(json_string_value(json_object_get(json_array_get(
	    json_object_get(j, "agents"), 1), "error")), r2));
	assert_string_equal(json_string_value(json_object_get(json_array_get(
	    json_object_get(j, "agents"), 2), "state")), "failed");
	json_decref(j);
	/* Once the new run finishes, the service may run again and again. */
	assert_int_equal(store_claim(s, r2, &cause), STORE_OK);
	assert_int_equal(store_run_set_state(s, r2, "succeeded", NULL, true, &cause),
	    STORE_OK);
	assert_int_equal(store_run_create(s, "databaseService", "svc", "{}", NULL, false,
	    &r3, &cause), STORE_OK);
	free(r1);
	free(r2);
	free(r3);
	store_close(s);
	free(p);
}

static void
test_status_json_shape(void **state)
{
	char *p = db_path("status.db"), *cause = NULL, *r1;
	struct store *s = open_ok(p, NULL);
	struct store_agent_row a = { .agent = "metadata", .state = "running",
	    .dag_id = "svc_metadata", .dag_run_id = "ap-x-1", .attempt = 1,
	    .started_at = 1700000000000LL };
	struct store_agent_row b = { .agent = "lineage", .state = "pending" };
	json_t *j, *ag, *list;

	assert_int_equal(store_inbox_accept(s, "e", "databaseService", "svc", "{}", &r1,
	    NULL, NULL, &cause), STORE_OK);
	assert_int_equal(store_claim(s, r1, &cause), STORE_OK);
	assert_int_equal(store_run_set_state(s, r1, "running", NULL, false, &cause),
	    STORE_OK);
	assert_int_equal(store_agent_save(s, r1, &a, &cause), STORE_OK);
	assert_int_equal(store_agent_save(s, r1, &b, &cause), STORE_OK);
	a.state = "succeeded";
	a.finished_at = 1700000001000LL;
	assert_int_equal(store_agent_save(s, r1, &a, &cause), STORE_OK);
	assert_int_equal(store_run_json(s, r1, &j, &cause), STORE_OK);
	assert_string_equal(json_string_value(json_object_get(j, "run_id")), r1);
	assert_string_equal(json_string_value(json_object_get(json_object_get(j,
	    "service"), "type")), "databaseService");
	assert_string_equal(json_string_value(json_object_get(json_object_get(j,
	    "service"), "fqn")), "svc");
	assert_string_equal(json_string_value(json_object_get(j, "state")), "running");
	assert_int_equal(json_array_size(json_object_get(j, "agents")), 2);
	ag = json_array_get(json_object_get(j, "agents"), 0);
	assert_string_equal(json_string_value(json_object_get(ag, "agent")), "metadata");
	assert_string_equal(json_string_value(json_object_get(ag, "state")), "succeeded");
	assert_string_equal(json_string_value(json_object_get(ag, "dag_id")),
	    "svc_metadata");
	assert_string_equal(json_string_value(json_object_get(ag, "dag_run_id")),
	    "ap-x-1");
	assert_int_equal(json_integer_value(json_object_get(ag, "attempts")), 1);
	assert_string_equal(json_string_value(json_object_get(ag, "started_at")),
	    "2023-11-14T22:13:20.000Z");
	assert_true(json_is_string(json_object_get(ag, "finished_at")));
	assert_true(json_is_null(json_object_get(ag, "error")));
	ag = json_array_get(json_object_get(j, "agents"), 1);
	assert_true(json_is_null(json_object_get(ag, "dag_run_id")));
	assert_true(json_is_null(json_object_get(ag, "started_at")));
	json_decref(j);
	assert_int_equal(store_runs_json(s, NULL, 0, &list, &cause), STORE_OK);
	assert_int_equal(json_array_size(list), 1);
	json_decref(list);
	assert_int_equal(store_runs_json(s, "other", 0, &list, &cause), STORE_OK);
	assert_int_equal(json_array_size(list), 0);
	json_decref(list);
	assert_int_equal(store_run_json(s, "nope", &j, &cause), STORE_NOT_FOUND);
	int64_t counts[4], halts;
	assert_int_equal(store_check_writable(s, &cause), STORE_OK);
	assert_int_equal(store_counts(s, counts, &list, &halts, &cause), STORE_OK);
	assert_int_equal(halts, 0);
	assert_int_equal(counts[1], 1);
	json_decref(list);
	free(r1);
	store_close(s);
	free(p);
}

/* store_counts() of reader (which keeps what it counted) against those of a
 * new handle, which counts everything, and against want. */
static void
check_counts(struct store *reader, const char *path, const int64_t want[4],
    const char *want_agents)
{
	struct store_options ro = { .read_only = true };
	struct store *fresh = open_ok(path, &ro);
	int64_t a[4], b[4], ha, hb;
	json_t *ja, *jb, *jw;
	char *cause = NULL;
	int i;

	assert_int_equal(store_counts(reader, a, &ja, &ha, &cause), STORE_OK);
	assert_int_equal(store_counts(fresh, b, &jb, &hb, &cause), STORE_OK);
	assert_int_equal(ha, hb);
	for (i = 0; i < 4; i++) {
		assert_int_equal(a[i], want[i]);
		assert_int_equal(b[i], want[i]);
	}
	jw = json_loads(want_agents, 0, NULL);
	assert_non_null(jw);
	assert_true(json_equal(ja, jw));
	assert_true(json_equal(jb, jw));
	json_decref(ja);
	json_decref(jb);
	json_decref(jw);
	store_close(fresh);
}

/* Ends run_id, its metadata agent as the run. */
static void
finish_run(struct store *s, const char *run_id, char *state)
{
	struct store_agent_row a = { .agent = "metadata", .state = state };
	char *cause = NULL;

	assert_int_equal(store_agent_save(s, run_id, &a, &cause), STORE_OK);
	assert_int_equal(store_run_set_state(s, run_id, state, NULL, true,
	    &cause), STORE_OK);
}

static void
test_counts_kept(void **state)
{
	struct store_options ro = { .read_only = true };
	char *p = db_path("counts.db"), *cause = NULL, *r[4];
	struct store *s = open_ok(p, NULL), *reader;
	struct store_agent_row a = { .agent = "metadata", .state = "running" };
	sqlite3 *db;
	int i;

	(void)state;
	reader = open_ok(p, &ro);
	check_counts(reader, p, (int64_t[4]){ 0, 0, 0, 0 }, "{}");
	for (i = 0; i < 4; i++) {
		char fqn[8];

		snprintf(fqn, sizeof fqn, "svc%d", i);
		assert_int_equal(store_run_create(s, "databaseService", fqn, "{}",
		    NULL, false, &r[i], &cause), STORE_OK);
		assert_int_equal(store_claim(s, r[i], &cause), STORE_OK);
		assert_int_equal(store_agent_save(s, r[i], &a, &cause), STORE_OK);
	}
	check_counts(reader, p, (int64_t[4]){ 4, 0, 0, 0 },
	    "{\"metadata\": {\"running\": 4}}");
	/* The second run ends first: the first, still active, holds the
	 * kept counts back. */
	finish_run(s, r[1], "succeeded");
	check_counts(reader, p, (int64_t[4]){ 3, 0, 1, 0 },
	    "{\"metadata\": {\"running\": 3, \"succeeded\": 1}}");
	finish_run(s, r[0], "succeeded");
	finish_run(s, r[3], "failed");
	check_counts(reader, p, (int64_t[4]){ 1, 0, 2, 1 },
	    "{\"metadata\": {\"running\": 1, \"succeeded\": 2, \"failed\": 1}}");
	/* None active: every run is kept; a new one is counted on top. */
	finish_run(s, r[2], "succeeded");
	check_counts(reader, p, (int64_t[4]){ 0, 0, 3, 1 },
	    "{\"metadata\": {\"succeeded\": 3, \"failed\": 1}}");
	check_counts(reader, p, (int64_t[4]){ 0, 0, 3, 1 },
	    "{\"metadata\": {\"succeeded\": 3, \"failed\": 1}}");
	free(r[0]);
	assert_int_equal(store_run_create(s, "databaseService", "svc0", "{}",
	    NULL, false, &r[0], &cause), STORE_OK);
	check_counts(reader, p, (int64_t[4]){ 1, 0, 3, 1 },
	    "{\"metadata\": {\"succeeded\": 3, \"failed\": 1}}");
	/* The oldest runs deleted by hand: counted again. */
	assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "DELETE FROM agent_runs WHERE run_id IN"
	    " (SELECT run_id FROM runs ORDER BY rowid LIMIT 2);"
	    " DELETE FROM runs WHERE rowid IN (SELECT rowid FROM runs ORDER BY"
	    " rowid LIMIT 2)", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	check_counts(reader, p, (int64_t[4]){ 1, 0, 1, 1 },
	    "{\"metadata\": {\"succeeded\": 1, \"failed\": 1}}");
	for (i = 0; i < 4; i++)
		free(r[i]);
	store_close(reader);
	store_close(s);
	free(p);
}

/*
 * Halts: the Airflow runs of a replaced run's agents queued or running are
 * written with the replace; a failed try puts one off; done deletes it.
 */
/* How many halts are due now (and taken by this call). */
static size_t
halts_due(struct store *s)
{
	char *cause = NULL;
	json_t *due;
	size_t n;

	assert_int_equal(store_halts_due(s, 10, &due, &cause), STORE_OK);
	n = json_array_size(due);
	json_decref(due);
	return n;
}

/* A replaced run's Airflow runs say whether a live process held it (its
 * trigger may still be on its way) or none did. */
static void
test_halt_held(void **state)
{
	char *p = db_path("held.db"), *cause = NULL, *r1, *r2, *r3;
	struct store *s = open_ok(p, NULL);
	struct store_agent_row a = { .agent = "metadata", .state = "queued",
	    .dag_id = "pg__metadata", .dag_run_id = "ap-r1-1" };
	json_t *airflow;

	(void)state;
	assert_int_equal(store_run_create(s, "databaseService", "pg", "{}", NULL,
	    false, &r1, &cause), STORE_OK);
	assert_int_equal(store_claim(s, r1, &cause), STORE_OK);
	assert_int_equal(store_agent_save(s, r1, &a, &cause), STORE_OK);
	assert_int_equal(store_release_all(s, &cause), STORE_OK);
	assert_int_equal(store_run_replace(s, "databaseService", "pg", "{}", NULL,
	    true, true, "a test", &r2, &airflow, &cause), STORE_OK);
	assert_int_equal(json_array_size(airflow), 1);
	assert_false(json_is_true(json_object_get(json_array_get(airflow, 0),
	    "held")));
	json_decref(airflow);
	a.dag_run_id = "ap-r2-1";
	assert_int_equal(store_agent_save(s, r2, &a, &cause), STORE_OK);
	assert_int_equal(store_run_replace(s, "databaseService", "pg", "{}", NULL,
	    true, false, "a test", &r3, &airflow, &cause), STORE_OK);
	assert_int_equal(json_array_size(airflow), 1);
	assert_true(json_is_true(json_object_get(json_array_get(airflow, 0),
	    "held")));
	json_decref(airflow);
	free(r1);
	free(r2);
	free(r3);
	store_close(s);
	free(p);
}

static void
test_halts(void **state)
{
	char *p = db_path("halts.db"), *cause = NULL, *r1, *r2;
	struct store *s = open_ok(p, NULL);
	struct store_agent_row a = { .agent = "metadata", .state = "running",
	    .dag_id = "pg__metadata", .dag_run_id = "ap-r1-1" };
	int64_t now = fake_now, counts[4], halts;
	json_t *due, *airflow, *agents;

	(void)state;
	store_set_clock(s, fake_clock, &now);
	assert_int_equal(store_run_create(s, "databaseService", "pg", "{}", NULL,
	    false, &r1, &cause), STORE_OK);
	assert_int_equal(store_claim(s, r1, &cause), STORE_OK);
	assert_int_equal(store_agent_save(s, r1, &a, &cause), STORE_OK);
	assert_int_equal(store_run_replace(s, "databaseService", "pg", "{}", NULL,
	    true, false, "a test", &r2, &airflow, &cause), STORE_OK);
	assert_int_equal(json_array_size(airflow), 1);
	/* This process held it: its trigger may be on its way. */
	assert_true(json_is_true(json_object_get(json_array_get(airflow, 0),
	    "held")));
	json_decref(airflow);
	/* The replacing process sends it: taken for the halt claim. */
	assert_int_equal(halts_due(s), 0);
	now += 60000;
	assert_int_equal(store_halts_due(s, 10, &due, &cause), STORE_OK);
	assert_int_equal(json_array_size(due), 1);
	assert_string_equal(json_string_value(json_object_get(json_array_get(due, 0),
	    "dag_run_id")), "ap-r1-1");
	assert_string_equal(json_string_value(json_object_get(json_array_get(due, 0),
	    "run_id")), r1);
	assert_non_null(strstr(json_string_value(json_object_get(json_array_get(due,
	    0), "what")), r2));
	json_decref(due);
	/* Taken by that call: not due again for another one. */
	assert_int_equal(halts_due(s), 0);
	assert_int_equal(store_counts(s, counts, &agents, &halts, &cause), STORE_OK);
	assert_int_equal(halts, 1);
	json_decref(agents);
	/* A failed try: not due until next_at, then with its count. */
	assert_int_equal(store_halt_failed(s, "pg__metadata", "ap-r1-1", "503",
	    now + 5000, &cause), STORE_OK);
	assert_int_equal(halts_due(s), 0);
	now += 5000;
	assert_int_equal(store_halts_due(s, 10, &due, &cause), STORE_OK);
	assert_int_equal(json_array_size(due), 1);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(due, 0),
	    "tries")), 1);
	json_decref(due);
	/* Added again (another reason, due now): one row, due at the earlier
	 * time. */
	assert_int_equal(store_halt_add(s, r1, "pg__metadata", "ap-r1-1", "again",
	    now, &cause), STORE_OK);
	assert_int_equal(store_halt_add(s, r1, "pg__metadata", "ap-r1-1", "again",
	    now + 60000, &cause), STORE_OK);
	assert_int_equal(store_halts_due(s, 10, &due, &cause), STORE_OK);
	assert_int_equal(json_array_size(due), 1);
	assert_string_equal(json_string_value(json_object_get(json_array_get(due,
	    0), "what")), "again");
	json_decref(due);
	/* Put off further than any try or claim does (60 s claim, 5 min the
	 * longest try): written before the clock was set back a day, due. */
	store_set_halt_claim(s, 60000, 300000);
	assert_int_equal(store_halt_failed(s, "pg__metadata", "ap-r1-1", "503",
	    now + 300000, &cause), STORE_OK);
	assert_int_equal(halts_due(s), 0);
	now -= 86400000;
	assert_int_equal(halts_due(s), 1);
	assert_int_equal(halts_due(s), 0);
	assert_int_equal(store_halt_done(s, "pg__metadata", "ap-r1-1", &cause),
	    STORE_OK);
	assert_int_equal(halts_due(s), 0);
	free(r1);
	free(r2);
	store_close(s);
	free(p);
}

/* Prunes until done: the runs and events deleted, and the run that held it
 * at the end (NULL: none). Returns the time the last look was held at. */
static int64_t
prune_all(struct store *s, int64_t before, unsigned want_runs,
    unsigned want_events, const char *want_held)
{
	struct store_pruned p;
	unsigned runs = 0, events = 0, calls = 0;
	char *cause = NULL;

	do {
		assert_int_equal(store_prune(s, before, 2, &p, &cause), STORE_OK);
		assert_true(p.runs <= 2 && p.events <= 2);
		runs += p.runs;
		events += p.events;
		assert_true(++calls < 100);
		if (!p.more && want_held == NULL)
			assert_null(p.held_by);
		else if (!p.more)
			assert_string_equal(p.held_by, want_held);
		free(p.held_by);
	} while (p.more);
	assert_int_equal(runs, want_runs);
	assert_int_equal(events, want_events);
	return p.held_until;
}

/*
 * Retention: the oldest runs that ended before the cutoff are deleted with
 * their agent runs, in batches, up to the first one kept: one that ended
 * after the cutoff, one with an Airflow run still to mark failed, an active
 * run, the last run. The inbox's old events go too, up to one of an active
 * run; a service's entity held by a deleted run is copied into its row
 * first, unless the row holds newer text.
 */
static void
test_prune(void **state)
{
	struct store_agent_row a = { .agent = "metadata", .state = "running",
	    .dag_id = "c__metadata", .dag_run_id = "ap-c-1" };
	struct store_options ro = { .read_only = true };
	char *p = db_path("prune.db"), *cause = NULL, *r[6], *entity, *type, *r3;
	struct store *s = open_ok(p, NULL), *reader = open_ok(p, &ro);
	const int64_t day = 86400000, t0 = fake_now;
	int64_t now = t0;
	json_t *j;
	sqlite3 *db;
	bool joined, follows;
	int i;

	(void)state;
	store_set_clock(s, fake_clock, &now);
	/* r0: a, by an event, its entity the service's; r1: b, ends late;
	 * r2: c, an Airflow run to stop; r3: d, active; r4: e; r5: f. */
	assert_int_equal(store_inbox_accept(s, "e0", "databaseService", "a",
	    "{\"v\": 1}", &r[0], &joined, &follows, &cause), STORE_OK);
	for (i = 1; i < 6; i++) {
		char fqn[2] = { (char)('a' + i), '\0' };

		now = t0 + i * 1000;
		assert_int_equal(store_run_create(s, "databaseService", fqn, "{}",
		    NULL, false, &r[i], &cause), STORE_OK);
	}
	for (i = 0; i < 6; i++)
		assert_int_equal(store_claim(s, r[i], &cause), STORE_OK);
	/* An event that joins the active r3: kept while r3 is. */
	now = t0 + 6000;
	assert_int_equal(store_inbox_accept(s, "e3", "databaseService", "d", "{}",
	    &r3, &joined, &follows, &cause), STORE_OK);
	assert_true(joined && !follows);
	assert_string_equal(r3, r[3]);
	free(r3);
	assert_int_equal(store_agent_save(s, r[2], &a, &cause), STORE_OK);
	assert_int_equal(store_halt_add(s, r[2], "c__metadata", "ap-c-1", "test",
	    0, &cause), STORE_OK);
	now = t0 + 10000;
	finish_run(s, r[0], "succeeded");
	finish_run(s, r[2], "failed");
	finish_run(s, r[4], "succeeded");
	finish_run(s, r[5], "succeeded");
	now = t0 + 10 * day;
	finish_run(s, r[1], "succeeded");
	check_counts(reader, p, (int64_t[4]){ 1, 0, 4, 1 },
	    "{\"metadata\": {\"succeeded\": 4, \"failed\": 1}}");

	/* Cut off at 5 days: r0 goes, with its event; r1 ended since (where
	 * the look stopped), r3's event stays. */
	assert_int_equal(prune_all(s, t0 + 5 * day, 1, 1, NULL), t0 + 10 * day);
	assert_int_equal(count_rows(p, "SELECT count(*) FROM runs"), 5);
	assert_int_equal(count_rows(p, "SELECT count(*) FROM agent_runs"), 4);
	assert_int_equal(count_rows(p, "SELECT count(*) FROM inbox"), 1);
	assert_int_equal(store_run_json(s, r[0], &j, &cause), STORE_NOT_FOUND);
	free(cause);
	cause = NULL;
	assert_int_equal(store_service_get(s, "databaseService", "a", &entity,
	    &type, &cause), STORE_OK);
	assert_string_equal(entity, "{\"v\": 1}");
	free(entity);
	free(type);
	check_counts(reader, p, (int64_t[4]){ 1, 0, 3, 1 },
	    "{\"metadata\": {\"succeeded\": 3, \"failed\": 1}}");

	/* r3 ends; r1 still holds the rest back until it too is old, then
	 * r2's halt does. */
	now = t0 + 2 * day;
	finish_run(s, r[3], "succeeded");
	prune_all(s, t0 + 5 * day, 0, 1, NULL);
	assert_int_equal(count_rows(p, "SELECT count(*) FROM inbox"), 0);
	prune_all(s, t0 + 11 * day, 1, 0, r[2]);
	assert_int_equal(count_rows(p, "SELECT count(*) FROM runs"), 4);
	check_counts(reader, p, (int64_t[4]){ 0, 0, 3, 1 },
	    "{\"metadata\": {\"succeeded\": 3, \"failed\": 1}}");
	/* The halt done: r2 to r4 go; r5, the last, stays whatever its age. */
	assert_int_equal(store_halt_done(s, "c__metadata", "ap-c-1", &cause),
	    STORE_OK);
	prune_all(s, t0 + 11 * day, 3, 0, NULL);
	prune_all(s, t0 + 100 * day, 0, 0, NULL);
	assert_int_equal(count_rows(p, "SELECT count(*) FROM runs"), 1);
	assert_int_equal(count_rows(p, "SELECT count(*) FROM agent_runs"), 1);
	assert_int_equal(store_run_json(s, r[5], &j, &cause), STORE_OK);
	json_decref(j);
	check_counts(reader, p, (int64_t[4]){ 0, 0, 1, 0 },
	    "{\"metadata\": {\"succeeded\": 1}}");
	/* A new run's rowid is above every one counted. */
	now = t0 + 101 * day;
	free(r[0]);
	assert_int_equal(store_run_create(s, "databaseService", "a", "{}", NULL,
	    false, &r[0], &cause), STORE_OK);
	check_counts(reader, p, (int64_t[4]){ 1, 0, 1, 0 },
	    "{\"metadata\": {\"succeeded\": 1}}");
	/* Text in a service's row that refers to a run is newer (written by
	 * an older autopilot): the run's entity does not replace it. */
	assert_int_equal(store_claim(s, r[0], &cause), STORE_OK);
	finish_run(s, r[0], "succeeded");
	assert_int_equal(store_inbox_accept(s, "e6", "databaseService", "g",
	    "{\"v\": 6}", &r3, &joined, &follows, &cause), STORE_OK);
	assert_int_equal(store_claim(s, r3, &cause), STORE_OK);
	finish_run(s, r3, "succeeded");
	free(r3);
	assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "UPDATE services SET entity ="
	    " '{\"v\": \"newer\"}' WHERE fqn = 'g'", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(store_run_create(s, "databaseService", "h", "{}", NULL,
	    false, &r3, &cause), STORE_OK);
	free(r3);
	prune_all(s, t0 + 200 * day, 3, 1, NULL);
	assert_int_equal(store_service_get(s, "databaseService", "g", &entity,
	    &type, &cause), STORE_OK);
	assert_string_equal(entity, "{\"v\": \"newer\"}");
	free(entity);
	free(type);
	for (i = 0; i < 6; i++)
		free(r[i]);
	store_close(reader);
	store_close(s);
	free(p);
}

/* Keeps the ids store_lease_renew() names, two at most. */
static void
renewed_id(const char *run_id, void *arg)
{
	char (*seen)[64] = arg;

	snprintf(seen[seen[0][0] != '\0'], 64, "%s", run_id);
}

static void
test_leases_between_two_handles(void **state)
{
	struct store_options o = { .lease_ms = 1000 };
	char *p = db_path("lease.db"), *cause = NULL, *r1, *r2, **ids;
	struct store *a, *b;
	struct store_agent_row row = { .agent = "metadata", .state = "deploying" };
	unsigned n, i;
	int64_t now_a = fake_now, now_b = fake_now;

	a = open_ok(p, &o);
	b = open_ok(p, &o);
	store_set_clock(a, fake_clock, &now_a);
	store_set_clock(b, fake_clock, &now_b);
	assert_string_not_equal(store_owner(a), store_owner(b));
	assert_int_equal(store_run_create(a, "databaseService", "s1", "{}", NULL, false,
	    &r1, &cause), STORE_OK);
	assert_int_equal(store_run_create(a, "databaseService", "s2", "{}", NULL, false,
	    &r2, &cause), STORE_OK);
	/* a claims both; b finds nothing to claim while a's lease holds. */
	assert_int_equal(store_claim_unfinished(a, 0, &ids, &cause), STORE_OK);
	assert_non_null(ids[0]);
	assert_non_null(ids[1]);
	assert_null(ids[2]);
	store_strv_free(ids);
	assert_int_equal(store_claim_unfinished(b, 0, &ids, &cause), STORE_OK);
	assert_null(ids[0]);
	store_strv_free(ids);
	assert_int_equal(store_claim(b, r1, &cause), STORE_LOST);
	assert_int_equal(store_agent_save(b, r1, &row, &cause), STORE_LOST);
	assert_int_equal(store_agent_save(a, r1, &row, &cause), STORE_OK);
	/* a renews; time passes but not past the renewed lease. */
	now_a += 800;
	now_b += 800;
	assert_int_equal(store_lease_renew(a, NULL, NULL, &n, &cause), STORE_OK);
	assert_int_equal(n, 2);
	/* Named, as the scheduler asks to compare them with the runs it drives. */
	{
		char seen[2][64] = { "", "" };
		unsigned k = 0;

		assert_int_equal(store_lease_renew(a, renewed_id, &seen, &n, &cause),
		    STORE_OK);
		assert_int_equal(n, 2);
		for (i = 0; i < 2; i++)
			k += strcmp(seen[i], r1) == 0 || strcmp(seen[i], r2) == 0;
		assert_int_equal(k, 2);
		assert_string_not_equal(seen[0], seen[1]);
		assert_int_equal(store_lease_renew(b, renewed_id, &seen, &n, &cause),
		    STORE_OK);
		assert_int_equal(n, 0);
	}
	now_b += 800;
	assert_int_equal(store_claim(b, r1, &cause), STORE_LOST);
	/* The clock steps an hour ahead: b, which saw it first, does not take
	 * a's runs for a lease's time (a has not renewed yet); then it may. */
	now_a += 3600000;
	now_b += 3600000;
	assert_int_equal(store_clock_stepped(b, 3600000, &n, &cause), STORE_OK);
	assert_int_equal(n, 0);
	assert_int_equal(store_claim(b, r1, &cause), STORE_LOST);
	assert_int_equal(store_claim_unfinished(b, 0, &ids, &cause), STORE_OK);
	assert_null(ids[0]);
	store_strv_free(ids);
	/* a renews when it sees it (its agents have no times to move). */
	assert_int_equal(store_clock_stepped(a, 3600000, &n, &cause), STORE_OK);
	assert_int_equal(n, 0);
	assert_int_equal(store_claim(b, r1, &cause), STORE_LOST);
	/* a stops renewing: after expiry b takes over and a is locked out. */
	now_b += 2000;
	assert_int_equal(store_claim_unfinished(b, 1, &ids, &cause), STORE_OK);
	assert_string_equal(ids[0], r1);
	assert_null(ids[1]);
	store_strv_free(ids);
	assert_int_equal(store_agent_save(a, r1, &row, &cause), STORE_LOST);
	assert_int_equal(store_agent_save(b, r1, &row, &cause), STORE_OK);
	/* Graceful release hands a's remaining run over at once. */
	now_b = now_a;
	assert_int_equal(store_claim(b, r2, &cause), STORE_LOST);
	assert_int_equal(store_release_all(a, &cause), STORE_OK);
	assert_int_equal(store_claim(b, r2, &cause), STORE_OK);
	/* Final runs are never claimed again. */
	assert_int_equal(store_run_set_state(b, r2, "succeeded", NULL, true, &cause),
	    STORE_OK);
	assert_int_equal(store_claim(a, r2, &cause), STORE_LOST);
	free(r2);
	/* A run created claimed is its creator's from the start: no other
	 * process takes it before the creator's take. */
	assert_int_equal(store_run_replace(a, "databaseService", "s3", "{}", NULL,
	    false, true, NULL, &r2, NULL, &cause), STORE_OK);
	assert_int_equal(store_claim_unfinished(b, 0, &ids, &cause), STORE_OK);
	for (i = 0; ids[i] != NULL; i++)	/* r1 is b's */
		assert_string_not_equal(ids[i], r2);
	store_strv_free(ids);
	assert_int_equal(store_claim(b, r2, &cause), STORE_LOST);
	assert_int_equal(store_claim(a, r2, &cause), STORE_OK);
	free(r1);
	free(r2);
	store_close(a);
	store_close(b);
	free(p);
}

/*
 * An owner's pid means something only in the PID namespace and boot its tag
 * names: a pid gone here is a dead owner if the tag is this process's
 * locality (or names none, as tags did before), not if it is another's (a
 * container of the same host name): that one's lease decides.
 */
static void
test_owner_of_other_namespace(void **state)
{
	char *p = db_path("ns.db"), *cause = NULL, *r1, **ids, hostname[256], *owner,
	    other[9], *mine;
	struct store_options o = { .lease_ms = 3600000 };
	struct store *a, *b;
	pid_t pid;
	int st, i;

	(void)state;
	pid = fork();
	if (pid == 0)
		_exit(0);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	gethostname(hostname, sizeof hostname);
	hostname[sizeof hostname - 1] = '\0';
	b = open_ok(p, &o);
	mine = strrchr(store_owner(b), '/') + 1;
	assert_int_equal(strlen(mine), 14);
	snprintf(other, sizeof other, "%.8s", mine);
	other[0] = other[0] == '0' ? '1' : '0';
	for (i = 0; i < 2; i++) {
		owner = ap_xprintf("%s/%ld/%.8sabcdef", hostname, (long)pid,
		    i == 0 ? other : mine);
		o.owner = owner;
		a = open_ok(p, &o);
		assert_int_equal(store_run_create(a, "databaseService", i == 0 ? "s1" :
		    "s2", "{}", NULL, false, &r1, &cause), STORE_OK);
		assert_int_equal(store_claim(a, r1, &cause), STORE_OK);
		store_close(a);	/* "crash": no release */
		assert_int_equal(store_claim_unfinished(b, 0, &ids, &cause), STORE_OK);
		if (i == 0)
			assert_null(ids[0]);	/* its lease holds */
		else {
			assert_non_null(ids[0]);
			assert_string_equal(ids[0], r1);
		}
		store_strv_free(ids);
		free(r1);
		free(owner);
	}
	store_close(b);
	free(p);
}

/* zombie: the owner has exited but is not reaped yet (as under an init that
 * reaps nobody). */
static void
recovery_after_owner_died(bool zombie)
{
	char *p = db_path(zombie ? "zombie.db" : "dead.db"), *cause = NULL, *r1, **ids,
	    hostname[256];
	siginfo_t si;
	struct store_options o = { .lease_ms = 3600000 };
	struct store *a, *b;
	struct store_run_row *run;
	struct store_agent_row *agents;
	struct store_agent_row row = { .agent = "metadata", .state = "queued",
	    .dag_id = "d", .dag_run_id = "d-r-1", .attempt = 1, .next_at = 5 };
	unsigned n;
	pid_t pid;
	char *owner;
	int st;

	/* An owner id naming a process of this host that has exited. */
	pid = fork();
	if (pid == 0)
		_exit(0);
	if (zombie)
		assert_int_equal(waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT), 0);
	else
		assert_int_equal(waitpid(pid, &st, 0), pid);
	gethostname(hostname, sizeof hostname);
	hostname[sizeof hostname - 1] = '\0';
	owner = ap_xprintf("%s/%ld/abc", hostname, (long)pid);
	o.owner = owner;
	a = open_ok(p, &o);
	assert_int_equal(store_run_create(a, "databaseService", "s1", "{\"e\":1}", NULL,
	    false, &r1, &cause), STORE_OK);
	assert_int_equal(store_claim(a, r1, &cause), STORE_OK);
	assert_int_equal(store_run_set_state(a, r1, "running", NULL, false, &cause),
	    STORE_OK);
	assert_int_equal(store_agent_save(a, r1, &row, &cause), STORE_OK);
	store_close(a);	/* "crash": no release */

	o.owner = NULL;
	b = open_ok(p, &o);
	assert_int_equal(store_claim_unfinished(b, 0, &ids, &cause), STORE_OK);
	assert_non_null(ids[0]);
	assert_string_equal(ids[0], r1);
	store_strv_free(ids);
	assert_int_equal(store_run_load(b, r1, &run, &agents, &n, &cause), STORE_OK);
	assert_string_equal(run->state, "running");
	assert_int_equal(n, 1);
	assert_string_equal(agents[0].state, "queued");
	assert_string_equal(agents[0].dag_run_id, "d-r-1");
	assert_int_equal(agents[0].attempt, 1);
	assert_int_equal(agents[0].next_at, 5);
	assert_true(agents[0].stored);
	store_agent_row_cleanup(&agents[0]);
	free(agents);
	store_run_row_free(run);
	char *ent;
	assert_int_equal(store_run_entity(b, r1, &ent, &cause), STORE_OK);
	assert_string_equal(ent, "{\"e\":1}");
	free(ent);
	free(r1);
	free(owner);
	store_close(b);
	free(p);
	if (zombie)
		assert_int_equal(waitpid(pid, &st, 0), pid);
}

static void
test_recovery_after_owner_died(void **state)
{
	(void)state;
	recovery_after_owner_died(false);
}

static void
test_recovery_after_owner_zombie(void **state)
{
	(void)state;
	recovery_after_owner_died(true);
}

/* The state (and error) of a run's agent in status JSON, or NULL. */
static const char *
agent_field(json_t *run, const char *agent, const char *field)
{
	json_t *ag;
	size_t i;

	json_array_foreach(json_object_get(run, "agents"), i, ag) {
		if (ap_streq(json_string_value(json_object_get(ag, "agent")), agent))
			return json_string_value(json_object_get(ag, field));
	}
	return NULL;
}

/* A row known to exist ("stored") is updated in place, behind the same
 * ownership fence as the upsert: lease lost, run replaced or run ended are
 * STORE_LOST and change nothing; a wrong hint still saves the row. */
static void
test_agent_update_in_place(void **state)
{
	struct store_options o = { .lease_ms = 1000 };
	char *p = db_path("update.db"), *cause = NULL, *r1, *r2, **ids;
	struct store *a, *b;
	struct store_agent_row m = { .agent = "metadata", .state = "pending" };
	struct store_agent_row l = { .agent = "lineage", .state = "pending",
	    .stored = true };
	struct store_agent_row *rows;
	struct store_run_row *run;
	int64_t now_a = fake_now, now_b = fake_now;
	unsigned n;
	json_t *j;

	(void)state;
	a = open_ok(p, &o);
	b = open_ok(p, &o);
	store_set_clock(a, fake_clock, &now_a);
	store_set_clock(b, fake_clock, &now_b);
	assert_int_equal(store_run_create(a, "databaseService", "s1", "{}", NULL, false,
	    &r1, &cause), STORE_OK);
	assert_int_equal(store_claim(a, r1, &cause), STORE_OK);
	assert_int_equal(store_agent_save(a, r1, &m, &cause), STORE_OK);
	m.stored = true;
	m.state = "deploying";
	m.dag_id = "s1_metadata";
	m.attempt = 1;
	m.started_at = fake_now;
	assert_int_equal(store_agent_save(a, r1, &m, &cause), STORE_OK);
	/* The same values again still count as saved. */
	assert_int_equal(store_agent_save(a, r1, &m, &cause), STORE_OK);
	/* "stored" is a hint: a row that is not there after all is inserted. */
	assert_int_equal(store_agent_save(a, r1, &l, &cause), STORE_OK);
	/* In a batch too, and the update is what the other handle reads. */
	assert_int_equal(store_batch_begin(a, &cause), STORE_OK);
	m.state = "queued";
	m.dag_run_id = "autopilot__x__metadata__1";
	assert_int_equal(store_agent_save(a, r1, &m, &cause), STORE_OK);
	assert_int_equal(store_flush(a, &cause), STORE_OK);
	assert_int_equal(store_run_json(b, r1, &j, &cause), STORE_OK);
	assert_int_equal(json_array_size(json_object_get(j, "agents")), 2);
	assert_string_equal(agent_field(j, "metadata", "state"), "queued");
	assert_string_equal(agent_field(j, "metadata", "dag_id"), "s1_metadata");
	assert_string_equal(agent_field(j, "metadata", "dag_run_id"),
	    "autopilot__x__metadata__1");
	assert_string_equal(agent_field(j, "lineage", "state"), "pending");
	json_decref(j);
	/* Loaded rows exist. */
	assert_int_equal(store_run_load(b, r1, &run, &rows, &n, &cause), STORE_OK);
	assert_int_equal(n, 2);
	assert_true(rows[0].stored);
	assert_true(rows[1].stored);
	store_agent_row_cleanup(&rows[0]);
	store_agent_row_cleanup(&rows[1]);
	free(rows);
	store_run_row_free(run);

	/* a's lease expires and b takes the run: a is fenced off. */
	now_b += 5000;
	assert_int_equal(store_claim_unfinished(b, 0, &ids, &cause), STORE_OK);
	assert_string_equal(ids[0], r1);
	store_strv_free(ids);
	m.state = "running";
	assert_int_equal(store_agent_save(a, r1, &m, &cause), STORE_LOST);
	l.state = "deploying";
	assert_int_equal(store_agent_save(a, r1, &l, &cause), STORE_LOST);
	assert_int_equal(store_run_json(b, r1, &j, &cause), STORE_OK);
	assert_string_equal(agent_field(j, "metadata", "state"), "queued");
	assert_string_equal(agent_field(j, "lineage", "state"), "pending");
	json_decref(j);
	assert_int_equal(store_agent_save(b, r1, &m, &cause), STORE_OK);

	/* The run is replaced: its owner's updates are lost. */
	now_a = now_b;
	assert_int_equal(store_run_create(a, "databaseService", "s1", "{}", NULL, true,
	    &r2, &cause), STORE_OK);
	m.state = "succeeded";
	assert_int_equal(store_agent_save(b, r1, &m, &cause), STORE_LOST);
	assert_int_equal(store_run_json(a, r1, &j, &cause), STORE_OK);
	assert_string_equal(agent_field(j, "metadata", "state"), "failed");
	json_decref(j);

	/* A run that ended takes no more writes either. */
	assert_int_equal(store_claim(b, r2, &cause), STORE_OK);
	m.stored = false;
	m.state = "running";
	assert_int_equal(store_agent_save(b, r2, &m, &cause), STORE_OK);
	assert_int_equal(store_run_set_state(b, r2, "failed", "x", true, &cause),
	    STORE_OK);
	m.stored = true;
	m.state = "succeeded";
	assert_int_equal(store_agent_save(b, r2, &m, &cause), STORE_LOST);
	assert_int_equal(store_run_json(a, r2, &j, &cause), STORE_OK);
	assert_string_equal(agent_field(j, "metadata", "state"), "running");
	json_decref(j);
	free(r1);
	free(r2);
	store_close(a);
	store_close(b);
	free(p);
}

/* Webhook group commit: events accepted inside a batch are invisible to
 * another handle until the flush, a repeat inside the batch is recognised,
 * and a failed event (a savepoint) does not undo the others. */
static void
test_inbox_in_batch(void **state)
{
	char *p = db_path("inbox-batch.db"), *cause = NULL, *a = NULL, *b = NULL;
	char *c = NULL, *ent = NULL;
	struct store *s = open_ok(p, NULL), *other = open_ok(p, NULL);
	json_t *runs;

	(void)state;
	assert_int_equal(store_batch_begin(s, &cause), STORE_OK);
	assert_int_equal(store_inbox_accept(s, "ev-1", "databaseService", "pg1", "{}",
	    &a, NULL, NULL, &cause), STORE_OK);
	assert_int_equal(store_inbox_accept(s, "ev-2", "databaseService", "pg2", "{}",
	    &b, NULL, NULL, &cause), STORE_OK);
	assert_int_equal(store_inbox_accept(s, "ev-1", "databaseService", "pg1", "{}",
	    &c, NULL, NULL, &cause), STORE_REPEAT);
	assert_string_equal(a, c);
	assert_true(store_batch_open(s));
	assert_int_equal(store_runs_json(other, NULL, 0, &runs, &cause), STORE_OK);
	assert_int_equal(json_array_size(runs), 0);
	json_decref(runs);
	assert_int_equal(store_flush(s, &cause), STORE_OK);
	assert_int_equal(store_runs_json(other, NULL, 0, &runs, &cause), STORE_OK);
	assert_int_equal(json_array_size(runs), 2);
	json_decref(runs);
	assert_int_equal(store_service_get(other, "databaseService", "pg2", &ent, NULL,
	    &cause), STORE_OK);
	assert_string_equal(ent, "{}");
	free(a);
	free(b);
	free(c);
	free(ent);
	store_close(other);
	store_close(s);
	free(p);
}

/* Has SQLite roll back the whole transaction of an insert into table when
 * cond holds (a trigger's RAISE(ROLLBACK)). */
static void
rollback_on(const char *p, const char *table, const char *cond)
{
	sqlite3 *db;
	char *sql = sqlite3_mprintf("CREATE TRIGGER boom_%s BEFORE INSERT ON %s WHEN %s"
	    " BEGIN SELECT RAISE(ROLLBACK, 'boom'); END;", table, table, cond);

	assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	sqlite3_free(sql);
}

/*
 * An error after which SQLite rolls the whole batch back (here a trigger's
 * RAISE(ROLLBACK)): what joined the batch is lost and reported as a batch
 * failure; a later write of the same turn is not made in a transaction that
 * no longer exists, and is committed and not reported lost.
 */
static void
test_batch_rolled_back_whole(void **state)
{
	char *p = db_path("batch-lost.db"), *cause = NULL, *a = NULL, *b = NULL;
	char *c = NULL;
	struct store *s = open_ok(p, NULL), *other = open_ok(p, NULL);
	uint64_t failures, lost, kept;
	json_t *runs;

	(void)state;
	rollback_on(p, "inbox", "NEW.event_id LIKE 'fail-%'");
	failures = store_batch_failures(s);
	assert_int_equal(store_batch_seq(s), 0);
	assert_int_equal(store_batch_begin(s, &cause), STORE_OK);
	lost = store_batch_seq(s);
	assert_int_not_equal(lost, 0);
	assert_int_equal(store_batch_fate(s, lost), STORE_BATCH_OPEN);
	assert_int_equal(store_inbox_accept(s, "ev-1", "databaseService", "pg1", "{}",
	    &a, NULL, NULL, &cause), STORE_OK);
	assert_int_not_equal(store_inbox_accept(s, "fail-2", "databaseService", "pg2",
	    "{}", &b, NULL, NULL, &cause), STORE_OK);
	free(cause);
	cause = NULL;
	/* ev-1 went with the batch, and whoever wrote it can tell. */
	assert_int_equal(store_batch_failures(s), failures + 1);
	assert_false(store_batch_open(s));
	assert_int_equal(store_batch_fate(s, lost), STORE_BATCH_LOST);
	/* The next delivery of the turn opens a batch of its own; its commit
	 * does not make the lost one committed. */
	assert_int_equal(store_batch_begin(s, &cause), STORE_OK);
	kept = store_batch_seq(s);
	assert_true(kept > lost);
	assert_int_equal(store_inbox_accept(s, "ev-3", "databaseService", "pg3", "{}",
	    &c, NULL, NULL, &cause), STORE_OK);
	assert_int_equal(store_flush(s, &cause), STORE_OK);
	assert_int_equal(store_batch_seq(s), 0);
	assert_int_equal(store_batch_fate(s, kept), STORE_BATCH_COMMITTED);
	assert_int_equal(store_batch_fate(s, lost), STORE_BATCH_LOST);
	assert_int_equal(store_batch_failures(s), failures + 1);
	assert_int_equal(store_runs_json(other, NULL, 0, &runs, &cause), STORE_OK);
	assert_int_equal(json_array_size(runs), 1);
	assert_string_equal(json_string_value(json_object_get(json_array_get(runs, 0),
	    "run_id")), c);
	json_decref(runs);
	free(a);
	free(c);
	store_close(other);
	store_close(s);
	free(p);
}

/*
 * The same when the write that fails is one that does not check for a lost
 * batch itself (an agent's row): the next write of the turn (the run's
 * state) is not committed on its own as if the batch were open, but refused,
 * and the batch is reported lost.
 */
static void
test_write_after_batch_rolled_back(void **state)
{
	char *p = db_path("batch-lost2.db"), *cause = NULL, *r1 = NULL;
	struct store *s = open_ok(p, NULL), *other = open_ok(p, NULL);
	struct store_agent_row ok = { .agent = "metadata", .state = "deploying" };
	struct store_agent_row boom = { .agent = "boom", .state = "deploying" };
	uint64_t failures;
	json_t *run = NULL;

	(void)state;
	rollback_on(p, "agent_runs", "NEW.agent = 'boom'");
	assert_int_equal(store_run_create(s, "databaseService", "pg", "{}", NULL, false,
	    &r1, &cause), STORE_OK);
	assert_int_equal(store_claim(s, r1, &cause), STORE_OK);
	failures = store_batch_failures(s);
	assert_int_equal(store_batch_begin(s, &cause), STORE_OK);
	assert_int_equal(store_agent_save(s, r1, &ok, &cause), STORE_OK);
	assert_int_equal(store_agent_save(s, r1, &boom, &cause), STORE_ERROR);
	free(cause);
	cause = NULL;
	assert_int_equal(store_run_set_state(s, r1, "running", NULL, false, &cause),
	    STORE_ERROR);
	assert_non_null(strstr(cause, "rolled back after an earlier error"));
	free(cause);
	cause = NULL;
	assert_int_equal(store_batch_failures(s), failures + 1);
	assert_false(store_batch_open(s));
	assert_int_equal(store_run_json(other, r1, &run, &cause), STORE_OK);
	assert_string_equal(json_string_value(json_object_get(run, "state")), "pending");
	assert_int_equal(json_array_size(json_object_get(run, "agents")), 0);
	json_decref(run);
	free(r1);
	store_close(other);
	store_close(s);
	free(p);
}

static void
test_group_commit(void **state)
{
	char *p = db_path("batch.db"), *cause = NULL, *r1, *r2;
	struct store *a = open_ok(p, NULL), *b = open_ok(p, NULL);
	struct store_agent_row row = { .agent = "metadata", .state = "queued",
	    .dag_run_id = "x__1", .attempt = 1 };
	json_t *j;

	assert_int_equal(store_run_create(a, "databaseService", "s", "{}", NULL, false,
	    &r1, &cause), STORE_OK);
	assert_int_equal(store_claim(a, r1, &cause), STORE_OK);
	assert_int_equal(store_batch_begin(a, &cause), STORE_OK);
	assert_true(store_batch_open(a));
	assert_int_equal(store_agent_save(a, r1, &row, &cause), STORE_OK);
	assert_int_equal(store_run_set_state(a, r1, "running", NULL, false, &cause),
	    STORE_OK);
	/* Not visible to another connection until flushed. */
	assert_int_equal(store_run_json(b, r1, &j, &cause), STORE_OK);
	assert_string_equal(json_string_value(json_object_get(j, "state")), "pending");
	assert_int_equal(json_array_size(json_object_get(j, "agents")), 0);
	json_decref(j);
	assert_int_equal(store_flush(a, &cause), STORE_OK);
	assert_false(store_batch_open(a));
	assert_int_equal(store_run_json(b, r1, &j, &cause), STORE_OK);
	assert_string_equal(json_string_value(json_object_get(j, "state")), "running");
	assert_int_equal(json_array_size(json_object_get(j, "agents")), 1);
	json_decref(j);
	/* A function with its own transaction commits the open batch first. */
	assert_int_equal(store_batch_begin(a, &cause), STORE_OK);
	row.state = "running";
	assert_int_equal(store_agent_save(a, r1, &row, &cause), STORE_OK);
	assert_int_equal(store_run_create(a, "databaseService", "t", "{}", NULL, false,
	    &r2, &cause), STORE_OK);
	assert_false(store_batch_open(a));
	assert_int_equal(store_run_json(b, r1, &j, &cause), STORE_OK);
	assert_string_equal(json_string_value(json_object_get(json_array_get(
	    json_object_get(j, "agents"), 0), "state")), "running");
	json_decref(j);
	/* Closing flushes too. Meanwhile the write lock is held: another
	 * handle's readiness check says so after its busy timeout. */
	assert_int_equal(store_batch_begin(a, &cause), STORE_OK);
	{
		struct store_options o = { .busy_timeout_ms = 50 };
		struct store *c = open_ok(p, &o);

		assert_int_equal(store_check_writable(c, &cause), STORE_ERROR);
		assert_non_null(strstr(cause, "locked"));
		free(cause);
		cause = NULL;
		store_close(c);
	}
	assert_int_equal(store_run_set_state(a, r1, "succeeded", NULL, true, &cause),
	    STORE_OK);
	store_close(a);
	assert_int_equal(store_run_json(b, r1, &j, &cause), STORE_OK);
	assert_string_equal(json_string_value(json_object_get(j, "state")), "succeeded");
	json_decref(j);
	store_close(b);
	free(r1);
	free(r2);
	free(p);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fresh_open_is_current_and_wal),
		cmocka_unit_test(test_migration_from_v1_backs_up_and_keeps_data),
		cmocka_unit_test(test_run_origin),
		cmocka_unit_test(test_entity_stored_once_and_v2_rows_kept),
		cmocka_unit_test(test_newer_database_is_refused),
		cmocka_unit_test(test_newer_migration_seen_under_lock),
		cmocka_unit_test(test_writable_check_keeps_version),
		cmocka_unit_test(test_foreign_database_is_refused),
		cmocka_unit_test(test_read_only_open_writes_nothing),
		cmocka_unit_test(test_inbox_is_idempotent),
		cmocka_unit_test(test_run_end_all_or_nothing),
		cmocka_unit_test(test_rerun_refused_while_active_then_replace),
		cmocka_unit_test(test_status_json_shape),
		cmocka_unit_test(test_counts_kept),
		cmocka_unit_test(test_halts),
		cmocka_unit_test(test_halt_held),
		cmocka_unit_test(test_prune),
		cmocka_unit_test(test_leases_between_two_handles),
		cmocka_unit_test(test_recovery_after_owner_died),
		cmocka_unit_test(test_recovery_after_owner_zombie),
		cmocka_unit_test(test_owner_of_other_namespace),
		cmocka_unit_test(test_agent_update_in_place),
		cmocka_unit_test(test_group_commit),
		cmocka_unit_test(test_batch_rolled_back_whole),
		cmocka_unit_test(test_write_after_batch_rolled_back),
		cmocka_unit_test(test_inbox_in_batch),
		cmocka_unit_test(test_joined_event_gets_its_run),
	};

	/* The usual mask: the modes the store gives are what is checked. */
	umask(022);
	return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
