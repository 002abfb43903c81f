/* test_sched.c — the run and agent state machines and the executor, driven
 * on a real event loop with short timers, a fake Airflow (struct
 * airflow_ops) and a fake planner with OpenMetadata's default plan. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <sqlite3.h>

#include "sched.h"
#include "store.h"
#include "util.h"

/* ---- Fake Airflow. ---- */

enum outcome { OUT_SUCCESS, OUT_FAILED, OUT_LOST, OUT_HANG };

/* The stamp of a DAG's import error, as Airflow's importErrors give it: none;
 * a minute before the test (a parse of the file before, not parsed again);
 * from then on, a ms later at each answer (parses stamped by a clock a
 * minute behind); now, and later at each answer. */
enum { STAMP_NONE, STAMP_OLD, STAMP_BEHIND, STAMP_EACH };

struct behavior {
	int parse_404;		/* get_dag/unpause answer 404 this many times after deploy */
	bool paused;
	const char *import_error;
	bool never_imported;	/* with import_error: no DAG (404) for ever, the
				   error only in importErrors (errors_since),
				   stamped anew at each look */
	int error_stamp;	/* import_error of a DAG Airflow has: STAMP_* */
	int error_answers;	/* > 0: shown in this many DAG answers, then
				   gone (a later parse imported the file) */
	const char *stale_error;	/* an error of the file before, seen by
				   looks (stamped at errors_since, never
				   again) while the DAG is not parsed */
	long unpause_status;	/* the PATCH answers this (a refusal) */
	int queued_polls;	/* get_run answers queued this many times */
	int running_polls;
	int unknown_polls;	/* ... after them, a state this client does not know */
	enum outcome outcome;
	int failing_attempts;	/* the first N attempts fail whatever outcome says */
	bool reject_deploy;
	bool deploy_500;	/* the plugin answers 500 with its reason */
	int duration_ms;	/* > 0: runs succeed this long after the trigger, and
				   answers carry Airflow's times (polls do not count) */
};

struct fake_dag {
	char id[128];
	int gets;
	int error_answers;	/* answers that showed the import error */
	bool paused;
	bool unpaused_once;
};

struct fake_run {
	char dag_id[128];
	char run_id[160];
	int polls;
	int created;		/* 2xx trigger answers that created it */
	int adopted;
	bool failed_by_us;
	bool gone;
	enum airflow_run_state forced;
	bool has_forced;
	int64_t created_ms;	/* wall clock at the trigger */
};

struct log_entry {
	int64_t t;
	bool limited;		/* ops->limit() was called on its request */
	int64_t limit_ms;
	int64_t since;		/* unpause's errors_since */
	char op[16];
	char dag_id[128];
	char run_id[160];
};

struct fake_req {
	struct fake *f;
	struct event *ev;
	airflow_cb cb;
	void *arg;
	struct airflow_result res;
	struct airflow_dag dag;
	struct airflow_run run;
	char s1[160], s2[160], s3[256];
	bool dependent_deploy;		/* a deploy of an agent other than metadata */
	bool unanswered;		/* ends at its bound (f_limit), as the client ends it */
	bool (*guard)(void *);		/* f_guard: asked as the client asks */
	void *guard_arg;
	struct fake_req *next;
};

struct fake {
	struct event_base *base;
	struct behavior beh[SCHED_MAX_AGENTS];	/* by agent index in the default plan */
	bool down;
	int unavailable_next;
	int fail_run_unavailable;	/* fail_run answers "unavailable" this many times */
	bool fail_run_unanswered;	/* fail_run is never answered (ends at its bound) */
	int fail_run_rejects;		/* fail_run answers this many times ... */
	int fail_run_reject_status;	/* ... with this 4xx */
	int slow_next;			/* the next this many requests are answered ... */
	int slow_ms;			/* ... after this long */
	int trigger_bad_reply;		/* triggers that create the run, answer unreadably */
	int trigger_bad_reply_unsent;	/* ... that fail so before reaching Airflow */
	int trigger_bad_reply_late;	/* ... that reach it at the next trigger */
	char late_run[160];		/* the dag_run_id of such a trigger */
	char late_dag[128];
	int trigger_lost_answer;	/* triggers that create the run, unanswered */
	bool trigger_lost_unsent;	/* ... that do not create it */
	int trigger_refused;		/* triggers refused 401 (a login refused) ... */
	bool trigger_refused_resent;	/* ... of the client's second send
					 * (attempts 2), whose first created
					 * the run */
	int get_run_bad_reply;		/* get_run answers unreadably this many times */
	int unpause_bad_reply;		/* unpause answers unreadably this many times */
	int get_run_forbidden;		/* get_run answers 403 this many times */
	int guards_yes;			/* guards of triggers that said "ours" */
	struct fake_dag dags[256];
	int ndags;
	struct fake_run runs[512];
	int nruns;
	struct log_entry log[4096];
	int nlog;
	struct fake_req *reqs;
	int in_air;
	int max_in_air;
	int deps_in_air, max_deps_in_air;	/* dependent_deploy requests */
	const char *unpause_title;	/* of a refused unpause (unpause_status) */
	int64_t created_ms;		/* wall clock at h_new */
	int64_t stamps;			/* STAMP_EACH stamps given */
};

/* When set, every trigger checks through this second handle that the
 * attempt's dag_run_id was committed before Airflow heard of it (and, with
 * verify_halts, every fail_run that the agent's end was). */
static struct store *verify_store;
static int verified_triggers;
static bool verify_halts;

static void
verify_committed(const char *dag_run_id, const char *want)
{
	char run_id[64], *cause = NULL;
	const char *p = dag_run_id + strlen("autopilot__"), *e = strstr(p, "__");
	json_t *j = NULL, *a;
	size_t i;
	bool found = false;

	assert_non_null(e);
	snprintf(run_id, sizeof run_id, "%.*s", (int)(e - p), p);
	assert_int_equal(store_run_json(verify_store, run_id, &j, &cause), STORE_OK);
	json_array_foreach(json_object_get(j, "agents"), i, a) {
		if (ap_streq(json_string_value(json_object_get(a, "dag_run_id")), dag_run_id))
			found = ap_streq(json_string_value(json_object_get(a, "state")),
			    want);
	}
	json_decref(j);
	if (!found)
		fail_msg("request for %s before its %s state was committed",
		    dag_run_id, want);
	verified_triggers++;
}

static const char *const agents_default[] = { "metadata", "lineage", "usage",
    "profiler" };

static int
agent_index(const char *dag_id)
{
	const char *p = strstr(dag_id, "__");
	unsigned i;

	for (i = 0; p != NULL && i < AP_ARRAY_LEN(agents_default); i++) {
		if (strcmp(p + 2, agents_default[i]) == 0)
			return (int)i;
	}
	return 0;
}

static unsigned
run_attempt(const char *run_id)
{
	const char *p = strrchr(run_id, '_');

	return p ? (unsigned)atoi(p + 1) : 1;
}

static struct fake_dag *
fake_dag(struct fake *f, const char *id, bool create)
{
	int i;

	for (i = 0; i < f->ndags; i++) {
		if (strcmp(f->dags[i].id, id) == 0)
			return &f->dags[i];
	}
	if (!create)
		return NULL;
	assert_true(f->ndags < 256);
	memset(&f->dags[f->ndags], 0, sizeof f->dags[0]);
	snprintf(f->dags[f->ndags].id, sizeof f->dags[0].id, "%s", id);
	f->dags[f->ndags].paused = f->beh[agent_index(id)].paused;
	return &f->dags[f->ndags++];
}

static struct fake_run *
fake_run(struct fake *f, const char *run_id)
{
	int i;

	for (i = 0; i < f->nruns; i++) {
		if (strcmp(f->runs[i].run_id, run_id) == 0)
			return &f->runs[i];
	}
	return NULL;
}

static void
fake_log(struct fake *f, const char *op, const char *dag, const char *run)
{
	struct log_entry *e;

	assert_true(f->nlog < 4096);
	e = &f->log[f->nlog++];
	memset(e, 0, sizeof *e);
	e->t = (int64_t)ap_mono_ms();
	snprintf(e->op, sizeof e->op, "%s", op);
	snprintf(e->dag_id, sizeof e->dag_id, "%s", dag ? dag : "");
	snprintf(e->run_id, sizeof e->run_id, "%s", run ? run : "");
}

static void
fake_fire(evutil_socket_t fd, short what, void *arg)
{
	struct fake_req *q = arg, **pp;
	struct fake *f = q->f;

	for (pp = &f->reqs; *pp != q; pp = &(*pp)->next)
		;
	*pp = q->next;
	f->in_air--;
	if (q->dependent_deploy)
		f->deps_in_air--;
	/* As the client would before a retry (the answer is not acted on:
	 * the fake does not retry). */
	if (q->guard != NULL && q->guard(q->guard_arg))
		f->guards_yes++;
	q->cb(&q->res, q->arg);
	event_free(q->ev);
	free(q);
}

static struct fake_req *
fake_req(struct fake *f, airflow_cb cb, void *arg)
{
	struct fake_req *q = ap_xcalloc(1, sizeof *q);
	struct timeval tv = { 0, 1000 };

	q->f = f;
	q->cb = cb;
	q->arg = arg;
	q->ev = evtimer_new(f->base, fake_fire, q);
	q->next = f->reqs;
	f->reqs = q;
	if (f->slow_next > 0) {
		f->slow_next--;
		tv.tv_sec = f->slow_ms / 1000;
		tv.tv_usec = (f->slow_ms % 1000) * 1000;
	}
	evtimer_add(q->ev, &tv);
	if (++f->in_air > f->max_in_air)
		f->max_in_air = f->in_air;
	if (f->down || f->unavailable_next > 0) {
		if (f->unavailable_next > 0)
			f->unavailable_next--;
		q->res.status = AIRFLOW_UNAVAILABLE;
		q->res.error.title = "Couldn't connect to server";
		q->res.error.detail = "connection refused";
	}
	return q;
}

static void
set_run(struct fake_req *q, struct fake_run *r, enum airflow_run_state st)
{
	snprintf(q->s1, sizeof q->s1, "%s", r->dag_id);
	snprintf(q->s2, sizeof q->s2, "%s", r->run_id);
	q->run.dag_id = q->s1;
	q->run.dag_run_id = q->s2;
	q->run.state = st;
	q->run.state_text = st == AIRFLOW_RUN_QUEUED ? "queued" : st == AIRFLOW_RUN_RUNNING ?
	    "running" : st == AIRFLOW_RUN_SUCCESS ? "success" : st == AIRFLOW_RUN_FAILED ?
	    "failed" : "upstream_failed";
	q->res.run = &q->run;
	if (q->f->beh[agent_index(r->dag_id)].duration_ms > 0) {
		q->run.queued_ms = r->created_ms;
		if (st == AIRFLOW_RUN_SUCCESS)
			q->run.ended_ms = r->created_ms +
			    q->f->beh[agent_index(r->dag_id)].duration_ms;
	}
}

static enum airflow_run_state
run_state_now(struct fake *f, struct fake_run *r, bool poll)
{
	const struct behavior *b = &f->beh[agent_index(r->dag_id)];
	bool fail_attempt = run_attempt(r->run_id) <= (unsigned)b->failing_attempts;

	if (r->has_forced)
		return r->forced;
	if (poll)
		r->polls++;
	if (b->duration_ms > 0)
		return ap_wall_ms() >= r->created_ms + b->duration_ms ?
		    AIRFLOW_RUN_SUCCESS : AIRFLOW_RUN_RUNNING;
	if (r->polls <= b->queued_polls)
		return AIRFLOW_RUN_QUEUED;
	if (b->unknown_polls > 0 && r->polls <= b->queued_polls + b->unknown_polls)
		return AIRFLOW_RUN_UNKNOWN;
	if (r->polls <= b->queued_polls + b->unknown_polls + b->running_polls ||
	    b->outcome == OUT_HANG)
		return AIRFLOW_RUN_RUNNING;
	if (fail_attempt || b->outcome == OUT_FAILED)
		return AIRFLOW_RUN_FAILED;
	if (b->outcome == OUT_LOST) {
		r->gone = true;
		return AIRFLOW_RUN_RUNNING;
	}
	return AIRFLOW_RUN_SUCCESS;
}

static struct airflow_req *
f_deploy(void *impl, const json_t *pipeline, airflow_cb cb, void *arg)
{
	struct fake *f = impl;
	struct fake_req *q = fake_req(f, cb, arg);
	const char *name = json_string_value(json_object_get(pipeline, "name"));
	struct fake_dag *d;

	fake_log(f, "deploy", name, NULL);
	if (agent_index(name) != 0) {
		q->dependent_deploy = true;
		if (++f->deps_in_air > f->max_deps_in_air)
			f->max_deps_in_air = f->deps_in_air;
	}
	if (q->res.status == AIRFLOW_OK) {
		if (f->beh[agent_index(name)].reject_deploy) {
			q->res.status = AIRFLOW_REJECTED;
			q->res.error.http_status = 400;
			q->res.error.title = "Bad Request";
			q->res.error.detail = "invalid pipeline";
		} else if (f->beh[agent_index(name)].deploy_500) {
			q->res.status = AIRFLOW_UNAVAILABLE;
			q->res.error.http_status = 500;
			q->res.error.title = "Internal Server Error";
			q->res.error.detail = "Failed to write the DAG file";
		} else {
			d = fake_dag(f, name, true);
			d->gets = 0;
		}
	}
	return (struct airflow_req *)q;
}

/* A GET or PATCH of the DAG: 404 until parsed (false), else the DAG. */
static bool
fake_dag_answer(struct fake *f, struct fake_req *q, const char *dag_id)
{
	struct fake_dag *d = fake_dag(f, dag_id, false);
	const struct behavior *b = &f->beh[agent_index(dag_id)];

	if (q->res.status != AIRFLOW_OK)
		return false;
	if (d == NULL || d->gets++ < b->parse_404) {
		q->res.status = AIRFLOW_NOT_FOUND;
		q->res.error.http_status = 404;
		q->res.error.title = "DAG not found";
		return false;
	}
	snprintf(q->s1, sizeof q->s1, "%s", dag_id);
	q->dag.dag_id = q->s1;
	q->dag.is_paused = d->paused;
	q->dag.has_import_errors = b->import_error != NULL && (b->error_answers == 0 ||
	    d->error_answers++ < b->error_answers);
	q->dag.import_error = q->dag.has_import_errors ? b->import_error : NULL;
	q->dag.import_error_at = !q->dag.has_import_errors ? 0 :
	    b->error_stamp == STAMP_OLD ? f->created_ms - 60000 :
	    b->error_stamp == STAMP_BEHIND ? f->created_ms - 60000 + ++f->stamps :
	    b->error_stamp == STAMP_EACH ? ap_wall_ms() + ++f->stamps : 0;
	q->res.dag = &q->dag;
	return true;
}

static struct airflow_req *
f_get_dag(void *impl, const char *dag_id, airflow_cb cb, void *arg)
{
	struct fake *f = impl;
	struct fake_req *q = fake_req(f, cb, arg);

	fake_log(f, "get_dag", dag_id, NULL);
	fake_dag_answer(f, q, dag_id);
	return (struct airflow_req *)q;
}

/* As Airflow's PATCH: 404 until parsed, then the DAG, unpaused unless it has
 * import errors (the real client pauses such a DAG again). */
static struct airflow_req *
f_unpause(void *impl, const char *dag_id, int64_t errors_since, airflow_cb cb,
    void *arg)
{
	struct fake *f = impl;
	struct fake_req *q = fake_req(f, cb, arg);
	const struct behavior *b = &f->beh[agent_index(dag_id)];
	struct fake_dag *d;

	fake_log(f, "unpause", dag_id, NULL);
	f->log[f->nlog - 1].since = errors_since;
	if (q->res.status == AIRFLOW_OK && f->unpause_bad_reply > 0) {
		f->unpause_bad_reply--;
		q->res.status = AIRFLOW_BAD_REPLY;
		q->res.error.title = "Bad reply";
		q->res.error.detail = "the answer is about DAG 'other', not this one";
		return (struct airflow_req *)q;
	}
	if (q->res.status == AIRFLOW_OK && b->unpause_status != 0) {
		q->res.status = AIRFLOW_REJECTED;
		q->res.error.http_status = b->unpause_status;
		q->res.error.title = f->unpause_title != NULL ? f->unpause_title :
		    "Forbidden";
		return (struct airflow_req *)q;
	}
	d = fake_dag(f, dag_id, false);
	if (q->res.status == AIRFLOW_OK && errors_since != 0 && (b->never_imported ?
	    b->import_error != NULL : b->stale_error != NULL && d != NULL &&
	    d->gets < b->parse_404)) {
		/* As the client answers after reading importErrors (a DAG not
		 * parsed yet: a 404 before). */
		if (d != NULL)
			d->gets++;
		snprintf(q->s1, sizeof q->s1, "%s", dag_id);
		q->dag.dag_id = q->s1;
		q->dag.has_import_errors = true;
		q->dag.no_dag = true;
		q->dag.import_error = b->never_imported ? b->import_error :
		    b->stale_error;
		q->dag.import_error_at = b->never_imported ? ap_wall_ms() :
		    errors_since;
		q->res.dag = &q->dag;
		return (struct airflow_req *)q;
	}
	if (q->res.status == AIRFLOW_OK && b->never_imported) {
		q->res.status = AIRFLOW_NOT_FOUND;
		q->res.error.http_status = 404;
		q->res.error.title = "Not Found";
		return (struct airflow_req *)q;
	}
	if (fake_dag_answer(f, q, dag_id) && !q->dag.has_import_errors) {
		d = fake_dag(f, dag_id, false);
		d->paused = false;
		d->unpaused_once = true;
		q->dag.is_paused = false;
	}
	return (struct airflow_req *)q;
}

/* A run created in Airflow. */
static struct fake_run *
fake_run_new(struct fake *f, const char *dag_id, const char *dag_run_id)
{
	struct fake_run *r;

	assert_true(f->nruns < 512);
	r = &f->runs[f->nruns++];
	memset(r, 0, sizeof *r);
	snprintf(r->dag_id, sizeof r->dag_id, "%s", dag_id);
	snprintf(r->run_id, sizeof r->run_id, "%s", dag_run_id);
	r->created++;
	r->created_ms = ap_wall_ms();
	return r;
}

static struct airflow_req *
f_trigger(void *impl, const char *dag_id, const char *dag_run_id, const json_t *conf,
    airflow_cb cb, void *arg)
{
	struct fake *f = impl;
	struct fake_req *q = fake_req(f, cb, arg);
	struct fake_run *r;
	struct fake_dag *d = fake_dag(f, dag_id, false);

	fake_log(f, "trigger", dag_id, dag_run_id);
	assert_non_null(conf);
	if (verify_store != NULL)
		verify_committed(dag_run_id, "queued");
	if (q->res.status != AIRFLOW_OK)
		return (struct airflow_req *)q;
	if (d == NULL) {
		q->res.status = AIRFLOW_NOT_FOUND;
		q->res.error.http_status = 404;
		return (struct airflow_req *)q;
	}
	/* A paused DAG's run would stay queued forever: the scheduler must
	 * have unpaused before triggering. */
	assert_false(d->paused);
	if (f->late_run[0] != '\0') {
		/* The late trigger arrives before this one. */
		(void)fake_run_new(f, f->late_dag, f->late_run);
		f->late_run[0] = '\0';
	}
	/* (A lost answer comes before a refusal: the refused resends.) */
	if (f->trigger_lost_answer > 0) {
		f->trigger_lost_answer--;
		if (!f->trigger_lost_unsent && fake_run(f, dag_run_id) == NULL)
			(void)fake_run_new(f, dag_id, dag_run_id);
		q->res.status = AIRFLOW_UNAVAILABLE;
		q->res.error.title = "Timeout was reached";
		q->res.error.detail = "no answer within 30000 ms";
		return (struct airflow_req *)q;
	}
	if (f->trigger_refused > 0) {
		f->trigger_refused--;
		if (f->trigger_refused_resent) {
			if (fake_run(f, dag_run_id) == NULL)
				(void)fake_run_new(f, dag_id, dag_run_id);
			q->res.attempts = 2;
			q->res.maybe_delivered = true;
		} else
			q->res.attempts = 2;	/* refused, a new login, refused */
		q->res.status = AIRFLOW_REJECTED;
		q->res.error.http_status = 401;
		q->res.error.title = "Unauthorized";
		q->res.error.detail = "Airflow's login refused the credentials";
		return (struct airflow_req *)q;
	}
	if (f->trigger_bad_reply_late > 0) {
		f->trigger_bad_reply_late--;
		snprintf(f->late_dag, sizeof f->late_dag, "%s", dag_id);
		snprintf(f->late_run, sizeof f->late_run, "%s", dag_run_id);
		q->res.status = AIRFLOW_BAD_REPLY;
		q->res.error.title = "Bad reply";
		return (struct airflow_req *)q;
	}
	if (f->trigger_bad_reply_unsent > 0) {
		f->trigger_bad_reply_unsent--;
		q->res.status = AIRFLOW_BAD_REPLY;
		q->res.error.title = "Bad reply";
		return (struct airflow_req *)q;
	}
	r = fake_run(f, dag_run_id);
	if (r != NULL) {
		r->adopted++;
		q->run.adopted = true;
	} else
		r = fake_run_new(f, dag_id, dag_run_id);
	set_run(q, r, run_state_now(f, r, false));
	q->run.adopted = r->adopted > 0 && r->created == 1 && q->run.adopted;
	if (f->trigger_bad_reply > 0) {
		f->trigger_bad_reply--;
		q->res.status = AIRFLOW_BAD_REPLY;
		q->res.error.title = "Bad reply";
		q->res.run = NULL;
	}
	return (struct airflow_req *)q;
}

static struct airflow_req *
f_get_run(void *impl, const char *dag_id, const char *dag_run_id, airflow_cb cb,
    void *arg)
{
	struct fake *f = impl;
	struct fake_req *q = fake_req(f, cb, arg);
	struct fake_run *r = fake_run(f, dag_run_id);

	fake_log(f, "get_run", dag_id, dag_run_id);
	if (q->res.status != AIRFLOW_OK)
		return (struct airflow_req *)q;
	if (f->get_run_forbidden > 0) {
		f->get_run_forbidden--;
		q->res.status = AIRFLOW_REJECTED;
		q->res.error.http_status = 403;
		q->res.error.title = "Forbidden";
		return (struct airflow_req *)q;
	}
	if (f->get_run_bad_reply > 0 && r != NULL && !r->gone) {
		f->get_run_bad_reply--;
		q->res.status = AIRFLOW_BAD_REPLY;
		q->res.error.title = "Bad reply";
		return (struct airflow_req *)q;
	}
	if (r == NULL || r->gone) {
		q->res.status = AIRFLOW_NOT_FOUND;
		q->res.error.http_status = 404;
		q->res.error.title = "DAGRun not found";
		return (struct airflow_req *)q;
	}
	set_run(q, r, run_state_now(f, r, true));
	if (r->gone) {
		q->res.status = AIRFLOW_NOT_FOUND;
		q->res.error.http_status = 404;
		q->res.run = NULL;
	}
	return (struct airflow_req *)q;
}

static struct airflow_req *
f_fail_run(void *impl, const char *dag_id, const char *dag_run_id, airflow_cb cb,
    void *arg)
{
	struct fake *f = impl;
	struct fake_req *q = fake_req(f, cb, arg);
	struct fake_run *r = fake_run(f, dag_run_id);

	fake_log(f, "fail_run", dag_id, dag_run_id);
	if (verify_store != NULL && verify_halts)
		verify_committed(dag_run_id, "failed");
	if (q->res.status == AIRFLOW_OK && f->fail_run_unanswered) {
		q->unanswered = true;
		q->res.status = AIRFLOW_UNAVAILABLE;
		q->res.error.title = "Out of time";
		q->res.error.detail = "out of time waiting for Airflow's answer";
		return (struct airflow_req *)q;
	}
	if (q->res.status == AIRFLOW_OK && f->fail_run_rejects > 0) {
		f->fail_run_rejects--;
		q->res.status = AIRFLOW_REJECTED;
		q->res.error.http_status = f->fail_run_reject_status;
		q->res.error.title = "Rejected";
	}
	if (q->res.status == AIRFLOW_OK && f->fail_run_unavailable > 0) {
		f->fail_run_unavailable--;
		q->res.status = AIRFLOW_UNAVAILABLE;
		q->res.error.title = "Service Unavailable";
	}
	if (q->res.status != AIRFLOW_OK)
		return (struct airflow_req *)q;
	if (r == NULL) {
		q->res.status = AIRFLOW_NOT_FOUND;
		return (struct airflow_req *)q;
	}
	r->failed_by_us = true;
	r->has_forced = true;
	r->forced = AIRFLOW_RUN_FAILED;
	set_run(q, r, AIRFLOW_RUN_FAILED);
	return (struct airflow_req *)q;
}

static void
f_cancel(void *impl, struct airflow_req *req)
{
	struct fake *f = impl;
	struct fake_req *q = (struct fake_req *)req, **pp;

	for (pp = &f->reqs; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == q) {
			*pp = q->next;
			f->in_air--;
			event_free(q->ev);
			free(q);
			return;
		}
	}
	fail_msg("cancel of an unknown request");
}

/* Called right after the request was made: it is the last logged. */
static void
f_limit(void *impl, struct airflow_req *req, int64_t left_ms)
{
	struct fake *f = impl;
	struct log_entry *e = &f->log[f->nlog - 1];

	assert_non_null(req);
	assert_true(f->nlog > 0);
	assert_false(e->limited);
	e->limited = true;
	e->limit_ms = left_ms;
	if (((struct fake_req *)req)->unanswered) {
		struct timeval tv = { left_ms / 1000, (left_ms % 1000) * 1000 };

		evtimer_add(((struct fake_req *)req)->ev, &tv);	/* moved */
	}
}

static void
f_guard(void *impl, struct airflow_req *req, bool (*ok)(void *), void *arg)
{
	(void)impl;
	((struct fake_req *)req)->guard = ok;
	((struct fake_req *)req)->guard_arg = arg;
}

static bool
f_unreachable(void *impl)
{
	return ((struct fake *)impl)->down;
}

static const struct airflow_ops fake_ops = {
	.deploy = f_deploy,
	.get_dag = f_get_dag,
	.unpause = f_unpause,
	.trigger = f_trigger,
	.get_run = f_get_run,
	.fail_run = f_fail_run,
	.cancel = f_cancel,
	.limit = f_limit,
	.guard = f_guard,
	.unreachable = f_unreachable,
};

static void
fake_cleanup(struct fake *f)
{
	while (f->reqs != NULL)
		f_cancel(f, (struct airflow_req *)f->reqs);
}

/* ---- Fake planner: OpenMetadata's default plan. The entity may carry
 * "unsupported": [agents], "timeout_ms", "retries", "retry_backoff_ms",
 * "no_run": [agents]. ---- */

static bool
in_list(const json_t *entity, const char *key, const char *name)
{
	size_t i;
	json_t *v;

	json_array_foreach(json_object_get(entity, key), i, v) {
		if (ap_streq(json_string_value(v), name))
			return true;
	}
	return false;
}

static int
fp_expand(void *impl, const char *type, const json_t *entity,
    struct sched_plan_view *out, char **cause)
{
	static const uint32_t after[] = { 0, 1u << 0, 1u << 0, 1u << 2 };
	unsigned i;

	if (json_object_get(entity, "unplannable") != NULL) {
		*cause = ap_xstrdup("no agent applies");
		return -1;
	}
	memset(out, 0, sizeof *out);
	out->n = 4;
	for (i = 0; i < 4; i++) {
		struct sched_agent_spec *a = &out->agents[i];

		snprintf(a->name, sizeof a->name, "%s", agents_default[i]);
		a->supported = !in_list(entity, "unsupported", a->name);
		a->unsupported_reason = "unsupported by the service";
		a->run = !in_list(entity, "no_run", a->name);
		a->after = after[i];
		a->timeout_ms = json_integer_value(json_object_get(entity, "timeout_ms"));
		if (a->timeout_ms == 0)
			a->timeout_ms = 20000;
		a->retries = (unsigned)json_integer_value(json_object_get(entity, "retries"));
		a->retry_backoff_ms = json_integer_value(json_object_get(entity,
		    "retry_backoff_ms"));
		if (a->retry_backoff_ms == 0)
			a->retry_backoff_ms = 10;
	}
	return 0;
}

static json_t *
fp_pipeline(void *impl, const char *type, const json_t *entity, const char *agent,
    char **dag_id, char **cause)
{
	const char *name = json_string_value(json_object_get(entity, "name"));

	*dag_id = ap_xprintf("%s__%s", name, agent);
	return json_pack("{s:s,s:s}", "name", *dag_id, "pipelineType", agent);
}

static const struct sched_planner fake_planner = {
	.expand = fp_expand,
	.pipeline = fp_pipeline,
};

/* ---- Harness. ---- */

struct h {
	struct event_base *base;
	struct store *store;
	struct sched *sched;
	struct fake fake;
	char dir[64];
	char *db;
	struct sched_config cfg;
	int finals;
	char final_state[64][16];
	char final_run[64][48];
	char dropped_why[256];		/* why the last run was dropped here */
	int events;
	bool saw_unreachable_note;
	unsigned max_in_flight;
	unsigned max_runs;		/* runs driven at once */
	int sabotage;			/* see test_shared_commit_failure */
};

/* The commit of the scheduler's open batch fails, made by someone else
 * (a status read) while the file may not grow: the disk is full. */
static void
foreign_commit_fails(struct h *h, const char *run_id)
{
	struct rlimit old, tiny;
	json_t *j = NULL;
	char *cause = NULL;
	enum store_result rc;

	assert_true(store_batch_open(h->store));
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	tiny = old;
	tiny.rlim_cur = 1;
	signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &tiny), 0);
	rc = store_run_json(h->store, run_id, &j, &cause);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	assert_int_equal(rc, STORE_ERROR);
	assert_false(store_batch_open(h->store));
	free(cause);
	json_decref(j);
}

static void
observer(const struct sched_event *ev, void *arg)
{
	struct h *h = arg;
	unsigned n = sched_agents_in_flight(h->sched);

	h->events++;
	if (h->sabotage == 1 && ap_streq(ev->agent, "metadata") &&
	    ap_streq(ev->new_state, "queued")) {
		h->sabotage = 2;
		foreign_commit_fails(h, ev->run_id);
	}
	/* The commit holding a run's end fails (test_lost_end_taken_up). */
	if (h->sabotage == 3 && ev->agent == NULL && ap_streq(ev->new_state,
	    "succeeded")) {
		h->sabotage = 4;
		foreign_commit_fails(h, ev->run_id);
	}
	if (ev->agent == NULL && ap_streq(ev->old_state, ev->new_state) &&
	    ev->error != NULL)
		snprintf(h->dropped_why, sizeof h->dropped_why, "%s", ev->error);
	if (n > h->max_in_flight)
		h->max_in_flight = n;
	if (sched_active_runs(h->sched) > h->max_runs)
		h->max_runs = sched_active_runs(h->sched);
	if (ev->agent == NULL && (ap_streq(ev->new_state, "succeeded") ||
	    ap_streq(ev->new_state, "failed")) && h->finals < 64) {
		snprintf(h->final_state[h->finals], 16, "%s", ev->new_state);
		snprintf(h->final_run[h->finals], 48, "%s", ev->run_id);
		h->finals++;
	}
}

static struct h *
h_new(void)
{
	struct h *h = ap_xcalloc(1, sizeof *h);
	char *cause = NULL;

	snprintf(h->dir, sizeof h->dir, "/tmp/test_sched.XXXXXX");
	assert_non_null(mkdtemp(h->dir));
	h->db = ap_xprintf("%s/state.db", h->dir);
	h->base = ap_event_base_new();
	h->fake.base = h->base;
	h->fake.created_ms = ap_wall_ms();
	h->store = store_open(h->db, &(struct store_options){ .synchronous_normal = true },
	    &cause);
	assert_non_null(h->store);
	sched_config_defaults(&h->cfg);
	h->cfg.poll_initial_ms = 5;
	h->cfg.poll_max_ms = 20;
	h->cfg.poll_floor_ms = 2;
	h->cfg.dag_parse_deadline_s = 2;
	h->cfg.unreachable_retry_max_ms = 20;
	h->cfg.rescan_ms = 0;
	/* Deploys in dependency order, which most tests check; the tests of
	 * deploying ahead turn it on. */
	h->cfg.predeploy = false;
	return h;
}

static void
h_start(struct h *h)
{
	char *cause = NULL;

	h->sched = sched_create(h->base, h->store, &fake_ops, &h->fake, &fake_planner,
	    NULL, &h->cfg);
	sched_set_observer(h->sched, observer, h);
	assert_int_equal(sched_start(h->sched, true, &cause), 0);
}

static void
h_free(struct h *h)
{
	char *cmd;

	sched_stop(h->sched);
	sched_free(h->sched);
	fake_cleanup(&h->fake);
	store_close(h->store);
	event_base_free(h->base);
	cmd = ap_xprintf("rm -rf '%s'", h->dir);
	assert_int_equal(system(cmd), 0);
	free(cmd);
	free(h->db);
	free(h);
}

/* The store with a 200 ms lease, so a "crashed" scheduler's runs can be
 * claimed again soon. */
static const struct store_options short_lease = { .synchronous_normal = true,
    .lease_ms = 200 };

static void
h_short_lease(struct h *h)
{
	char *cause = NULL;

	store_close(h->store);
	h->store = store_open(h->db, &short_lease, &cause);
	assert_non_null(h->store);
	h->cfg.lease_ms = 200;
}

/* "Crash": no release, in-flight answers never arrive; the store is opened
 * again after down_us. */
static void
h_crash(struct h *h, useconds_t down_us)
{
	char *cause = NULL;

	sched_free(h->sched);
	h->sched = NULL;
	fake_cleanup(&h->fake);
	store_close(h->store);
	usleep(down_us);
	h->store = store_open(h->db, &short_lease, &cause);
	assert_non_null(h->store);
}

static void
loop_guard(evutil_socket_t fd, short what, void *arg)
{
	*(bool *)arg = true;
}

/* Runs the loop until n runs have ended, or fails after ms. */
static void
h_wait_finals(struct h *h, int n, int ms)
{
	bool expired = false;
	struct event *g = evtimer_new(h->base, loop_guard, &expired);
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	evtimer_add(g, &tv);
	while (h->finals < n && !expired)
		event_base_loop(h->base, EVLOOP_ONCE);
	event_free(g);
	if (h->finals < n)
		fail_msg("only %d of %d runs ended within %d ms", h->finals, n, ms);
}

static void
h_spin(struct h *h, int ms)
{
	bool expired = false;
	struct event *g = evtimer_new(h->base, loop_guard, &expired);
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	evtimer_add(g, &tv);
	while (!expired)
		event_base_loop(h->base, EVLOOP_ONCE);
	event_free(g);
}

static char *
h_submit(struct h *h, const char *name, const char *extra_json)
{
	json_t *e = json_pack("{s:s}", "name", name);
	char *run_id = NULL, *cause = NULL;

	if (extra_json != NULL) {
		json_t *x = json_loads(extra_json, 0, NULL);

		assert_non_null(x);
		json_object_update(e, x);
		json_decref(x);
	}
	if (sched_submit(h->sched, "databaseService", name, e, NULL, false, NULL,
	    &run_id, &cause) != STORE_OK)
		fail_msg("submit: %s", cause);
	json_decref(e);
	return run_id;
}

static json_t *
h_status(struct h *h, const char *run_id)
{
	json_t *j = NULL;
	char *cause = NULL;

	assert_int_equal(store_run_json(h->store, run_id, &j, &cause), STORE_OK);
	return j;
}

static json_t *
status_agent(json_t *run, const char *agent)
{
	size_t i;
	json_t *a;

	json_array_foreach(json_object_get(run, "agents"), i, a) {
		if (ap_streq(json_string_value(json_object_get(a, "agent")), agent))
			return a;
	}
	fail_msg("agent %s not in status", agent);
	return NULL;
}

static const char *
agent_state(json_t *run, const char *agent)
{
	return json_string_value(json_object_get(status_agent(run, agent), "state"));
}

/* Asserts that agent of run_id is in state want, as the store has it. */
static void
h_assert_agent_state(struct h *h, const char *run_id, const char *agent,
    const char *want)
{
	json_t *st = h_status(h, run_id);

	assert_string_equal(agent_state(st, agent), want);
	json_decref(st);
}

static json_int_t
agent_attempts(json_t *run, const char *agent)
{
	return json_integer_value(json_object_get(status_agent(run, agent), "attempts"));
}

static const char *
agent_error(json_t *run, const char *agent)
{
	return json_string_value(json_object_get(status_agent(run, agent), "error"));
}

/* Runs the loop until agent of run_id has ended attempt n and waits, pending,
 * for its retry. */
static void
h_wait_retry(struct h *h, const char *run_id, const char *agent, json_int_t n)
{
	json_t *st = NULL;

	for (;;) {
		event_base_loop(h->base, EVLOOP_ONCE);
		json_decref(st);
		st = h_status(h, run_id);
		if (agent_attempts(st, agent) == n &&
		    strcmp(agent_state(st, agent), "pending") == 0)
			break;
	}
	json_decref(st);
}

/* Index in the fake's log of the first op on a DAG (suffix match), -1 if none. */
static int
log_first(struct h *h, const char *op, const char *dag)
{
	int i;

	for (i = 0; i < h->fake.nlog; i++) {
		if (strcmp(h->fake.log[i].op, op) == 0 &&
		    strcmp(h->fake.log[i].dag_id, dag) == 0)
			return i;
	}
	return -1;
}

static int
log_last(struct h *h, const char *op, const char *dag)
{
	int i;

	for (i = h->fake.nlog - 1; i >= 0; i--) {
		if (strcmp(h->fake.log[i].op, op) == 0 &&
		    strcmp(h->fake.log[i].dag_id, dag) == 0)
			return i;
	}
	return -1;
}

static int
log_count(struct h *h, const char *op, const char *dag)
{
	int i, n = 0;

	for (i = 0; i < h->fake.nlog; i++) {
		if (strcmp(h->fake.log[i].op, op) == 0 &&
		    (dag == NULL || strcmp(h->fake.log[i].dag_id, dag) == 0))
			n++;
	}
	return n;
}

/* The attempts of agent that ended in h's scheduler (the metrics). */
static const struct sched_attempt_count *
h_counted(struct h *h, const char *agent)
{
	const struct sched_attempt_count *c;
	unsigned i;

	for (i = 0; sched_attempt_counts(h->sched, i, &c); i++)
		if (strcmp(c->agent, agent) == 0)
			return c;
	fail_msg("no attempt of %s counted", agent);
	return NULL;
}

/* Runs the loop until the fake has logged n requests op on dag. */
static void
h_wait_log(struct h *h, const char *op, const char *dag, int n)
{
	while (log_count(h, op, dag) < n)
		event_base_loop(h->base, EVLOOP_ONCE);
}

/* metadata's state (unless NULL) and note in run id: the note holds want,
 * or there is none (want NULL). */
static void
h_check_note(struct h *h, const char *id, const char *state, const char *want)
{
	json_t *st = h_status(h, id);

	if (state != NULL)
		assert_string_equal(agent_state(st, "metadata"), state);
	if (want == NULL)
		assert_null(agent_error(st, "metadata"));
	else {
		assert_non_null(agent_error(st, "metadata"));
		assert_non_null(strstr(agent_error(st, "metadata"), want));
	}
	json_decref(st);
}

/* The Airflow run of an agent's attempt in run run_id, NULL if none. */
static struct fake_run *
attempt_run(struct h *h, const char *run_id, const char *agent, unsigned attempt)
{
	char rid[160];

	snprintf(rid, sizeof rid, "autopilot__%s__%s__%u", run_id, agent, attempt);
	return fake_run(&h->fake, rid);
}

/* dag was deployed only after the last poll of prereq's run. */
static bool
deployed_after(struct h *h, const char *dag, const char *prereq)
{
	int last = log_last(h, "get_run", prereq);

	return last >= 0 && log_first(h, "deploy", dag) > last;
}

/* A run of pg limited to agents (NULL: all), replacing its active run if
 * replace: the new run's id. */
static char *
h_submit_pg(struct h *h, const char *const *agents, bool replace)
{
	json_t *e = json_pack("{s:s}", "name", "pg");
	char *id = NULL, *cause = NULL;

	if (sched_submit(h->sched, "databaseService", "pg", e, agents, replace, NULL,
	    &id, &cause) != STORE_OK)
		fail_msg("submit: %s", cause);
	json_decref(e);
	return id;
}

static char *
h_submit_agents(struct h *h, const char *const *agents)
{
	return h_submit_pg(h, agents, false);
}

/* ---- Tests: transition tables. ---- */

static void
test_agent_transitions(void **state)
{
	/* The legal moves, written out independently of the table. */
	static const char *const legal[] = {
		"pending>deploying", "pending>skipped", "pending>failed",
		"deploying>waiting_for_dag", "deploying>pending", "deploying>failed",
		"deploying>timed_out",
		"waiting_for_dag>queued", "waiting_for_dag>succeeded",
		"waiting_for_dag>pending", "waiting_for_dag>failed",
		"waiting_for_dag>timed_out",
		"queued>running", "queued>succeeded", "queued>failed", "queued>timed_out",
		"queued>lost", "queued>pending",
		"running>succeeded", "running>failed", "running>timed_out", "running>lost",
		"running>pending",
	};
	unsigned from, to, i, nlegal = 0;
	char key[64];
	bool want;

	for (from = 0; from < SCHED_AGENT_STATE_MAX; from++) {
		for (to = 0; to < SCHED_AGENT_STATE_MAX; to++) {
			snprintf(key, sizeof key, "%s>%s", sched_agent_state_name(from),
			    sched_agent_state_name(to));
			want = false;
			for (i = 0; i < AP_ARRAY_LEN(legal); i++)
				want = want || strcmp(legal[i], key) == 0;
			if (sched_agent_transition_legal(from, to) != want)
				fail_msg("agent %s: expected %s", key, want ? "legal" :
				    "illegal");
			nlegal += want;
		}
	}
	assert_int_equal(nlegal, AP_ARRAY_LEN(legal));
	/* Final states go nowhere. */
	for (from = SCHED_AGENT_SUCCEEDED; from < SCHED_AGENT_STATE_MAX; from++) {
		assert_true(sched_agent_state_final(from));
		for (to = 0; to < SCHED_AGENT_STATE_MAX; to++)
			assert_false(sched_agent_transition_legal(from, to));
	}
	assert_false(sched_agent_transition_legal(SCHED_AGENT_STATE_MAX, 0));
	assert_false(sched_agent_transition_legal(0, SCHED_AGENT_STATE_MAX));
	for (i = 0; i < SCHED_AGENT_STATE_MAX; i++) {
		enum sched_agent_state st;

		assert_true(sched_agent_state_parse(sched_agent_state_name(i), &st));
		assert_int_equal(st, i);
	}
	enum sched_agent_state st;
	assert_false(sched_agent_state_parse("stuck", &st));
}

static void
test_run_transitions(void **state)
{
	static const char *const legal[] = {
		"pending>running", "pending>failed", "running>succeeded",
		"running>failed",
	};
	unsigned from, to, i;
	char key[64];
	bool want;

	for (from = 0; from < SCHED_RUN_STATE_MAX; from++) {
		for (to = 0; to < SCHED_RUN_STATE_MAX; to++) {
			snprintf(key, sizeof key, "%s>%s", sched_run_state_name(from),
			    sched_run_state_name(to));
			want = false;
			for (i = 0; i < AP_ARRAY_LEN(legal); i++)
				want = want || strcmp(legal[i], key) == 0;
			if (sched_run_transition_legal(from, to) != want)
				fail_msg("run %s: expected %s", key, want ? "legal" :
				    "illegal");
		}
	}
	assert_true(sched_run_state_final(SCHED_RUN_SUCCEEDED));
	assert_true(sched_run_state_final(SCHED_RUN_FAILED));
	assert_false(sched_run_state_final(SCHED_RUN_RUNNING));
}

static void
test_config(void **state)
{
	struct sched_config c;
	char *cause = NULL;
	json_t *j;

	assert_int_equal(sched_config_from_json(NULL, &c, &cause), 0);
	assert_int_equal(c.max_agents_in_flight, 64);
	j = json_loads("{\"max_agents_in_flight\": 3, \"poll_initial_ms\": 100,"
	    " \"poll_max_ms\": 1000, \"poll_floor_ms\": 50, \"dag_parse_deadline_s\": 9,"
	    " \"poll_backoff\": 2}", 0, NULL);
	assert_int_equal(sched_config_from_json(j, &c, &cause), 0);
	assert_int_equal(c.max_agents_in_flight, 3);
	assert_int_equal(c.poll_floor_ms, 50);
	assert_int_equal(c.dag_parse_deadline_s, 9);
	assert_true(c.poll_backoff == 2.0);
	json_decref(j);
	j = json_loads("{\"poll_learn\": false}", 0, NULL);
	assert_int_equal(sched_config_from_json(j, &c, &cause), 0);
	assert_false(c.poll_learn);
	json_decref(j);
	j = json_loads("{\"poll_learn\": 1}", 0, NULL);
	assert_int_equal(sched_config_from_json(j, &c, &cause), -1);
	assert_string_equal(cause, "scheduler.poll_learn: must be true or false");
	free(cause);
	json_decref(j);
	j = json_loads("{\"poll_maxx_ms\": 1}", 0, NULL);
	assert_int_equal(sched_config_from_json(j, &c, &cause), -1);
	assert_string_equal(cause, "scheduler.poll_maxx_ms: unknown key (known:"
	    " max_agents_in_flight, poll_initial_ms, poll_max_ms, poll_floor_ms,"
	    " poll_backoff, poll_learn, dag_parse_deadline_s, unreachable_retry_max_ms,"
	    " lease_ms, predeploy, predeploy_max, rescan_ms)");
	free(cause);
	json_decref(j);
	j = json_loads("{\"poll_floor_ms\": 5000, \"poll_max_ms\": 1000}", 0, NULL);
	assert_int_equal(sched_config_from_json(j, &c, &cause), -1);
	assert_non_null(strstr(cause, "poll_floor_ms"));
	free(cause);
	json_decref(j);
	j = json_loads("{\"max_agents_in_flight\": 0}", 0, NULL);
	assert_int_equal(sched_config_from_json(j, &c, &cause), -1);
	assert_non_null(strstr(cause, "scheduler.max_agents_in_flight"));
	free(cause);
	json_decref(j);
}

/* ---- Tests: executor. ---- */

static void
test_default_plan_order_and_overlap(void **state)
{
	struct h *h = h_new();
	char *id;
	json_t *st;
	int m_done, l_dep, u_dep, l_end, u_end, p_dep;

	h->fake.beh[1].running_polls = 4;	/* lineage */
	h->fake.beh[2].running_polls = 4;	/* usage */
	h->fake.beh[0].paused = true;
	h->fake.beh[0].parse_404 = 3;
	h_start(h);
	id = h_submit(h, "pg", NULL);
	h_wait_finals(h, 1, 10000);
	assert_string_equal(h->final_state[0], "succeeded");

	m_done = log_last(h, "get_run", "pg__metadata");
	if (m_done < 0)
		m_done = log_last(h, "trigger", "pg__metadata");
	l_dep = log_first(h, "deploy", "pg__lineage");
	u_dep = log_first(h, "deploy", "pg__usage");
	l_end = log_last(h, "get_run", "pg__lineage");
	u_end = log_last(h, "get_run", "pg__usage");
	p_dep = log_first(h, "deploy", "pg__profiler");
	assert_true(m_done < l_dep && m_done < u_dep);
	/* lineage and usage overlap: each started before the other finished. */
	assert_true(l_dep < u_end && u_dep < l_end);
	/* profiler after usage succeeded. */
	assert_true(p_dep > u_end);
	/* The DAG was waited for (404s) and unpaused before the trigger, in
	 * one request a poll: no separate GET of the DAG. */
	assert_int_equal(log_count(h, "unpause", "pg__metadata"), 4);
	assert_true(log_last(h, "unpause", "pg__metadata") <
	    log_first(h, "trigger", "pg__metadata"));
	assert_int_equal(log_count(h, "unpause", "pg__lineage"), 1);
	assert_int_equal(log_count(h, "get_dag", "pg__metadata"), 0);
	assert_int_equal(log_count(h, "get_dag", "pg__lineage"), 0);

	st = h_status(h, id);
	assert_string_equal(json_string_value(json_object_get(st, "state")), "succeeded");
	assert_string_equal(agent_state(st, "metadata"), "succeeded");
	assert_string_equal(agent_state(st, "profiler"), "succeeded");
	assert_int_equal(agent_attempts(st, "usage"), 1);
	assert_string_equal(json_string_value(json_object_get(status_agent(st,
	    "usage"), "dag_id")), "pg__usage");
	assert_non_null(strstr(json_string_value(json_object_get(status_agent(st,
	    "usage"), "dag_run_id")), id));
	assert_true(json_is_string(json_object_get(status_agent(st, "usage"),
	    "finished_at")));
	json_decref(st);
	/* Every trigger created a run once. */
	for (int i = 0; i < h->fake.nruns; i++)
		assert_int_equal(h->fake.runs[i].created, 1);
	assert_int_equal(sched_active_runs(h->sched), 0);
	assert_int_equal(sched_agents_in_flight(h->sched), 0);
	free(id);
	h_free(h);
}

/* Polls of a service's runs of an agent (dag ids end in "__agent"). */
static int
polls_of(struct h *h, const char *service, const char *agent)
{
	char *dag = ap_xprintf("%s__%s", service, agent);
	int n = log_count(h, "get_run", dag);

	free(dag);
	return n;
}

/*
 * Once runs of an agent have been seen to end, the first look at a new run
 * of that agent is when they end: one poll each. The first service's runs
 * were polled by the usual series; with poll_learn off, the second's are too.
 */
static void
test_first_poll_learned(void **state)
{
	static const char *const agents[] = { "metadata", "lineage", "usage", "profiler" };
	bool learn;
	unsigned i;

	for (learn = true; ; learn = false) {
		struct h *h = h_new();

		h->cfg.poll_initial_ms = 20;
		h->cfg.poll_floor_ms = 10;
		h->cfg.poll_max_ms = 2000;
		h->cfg.poll_learn = learn;
		for (i = 0; i < 4; i++)
			h->fake.beh[i].duration_ms = 150 + 50 * (int)i;
		h_start(h);
		free(h_submit(h, "first", NULL));
		h_wait_finals(h, 1, 10000);
		free(h_submit(h, "second", NULL));
		h_wait_finals(h, 2, 10000);
		assert_string_equal(h->final_state[0], "succeeded");
		assert_string_equal(h->final_state[1], "succeeded");
		for (i = 0; i < 4; i++) {
			assert_true(polls_of(h, "first", agents[i]) >= 3);
			if (learn)
				assert_int_equal(polls_of(h, "second", agents[i]), 1);
			else
				assert_true(polls_of(h, "second", agents[i]) >= 3);
		}
		h_free(h);
		if (!learn)
			break;
	}

	/* Never later than poll_max_ms: a 400 ms run under a 100 ms cap is
	 * first looked at after 100 ms, then by the usual series. */
	{
		struct h *h = h_new();

		h->cfg.poll_initial_ms = 20;
		h->cfg.poll_floor_ms = 10;
		h->cfg.poll_max_ms = 100;
		for (i = 0; i < 4; i++)
			h->fake.beh[i].duration_ms = 400;
		h_start(h);
		free(h_submit(h, "first", NULL));
		h_wait_finals(h, 1, 10000);
		free(h_submit(h, "second", NULL));
		h_wait_finals(h, 2, 10000);
		assert_string_equal(h->final_state[1], "succeeded");
		for (i = 0; i < 4; i++)
			assert_true(polls_of(h, "second", agents[i]) >= 3);
		h_free(h);
	}
}

static void
test_metadata_failure_skips_everything(void **state)
{
	struct h *h = h_new();
	char *id;
	json_t *st;

	h->fake.beh[0].outcome = OUT_FAILED;
	h_start(h);
	id = h_submit(h, "pg", NULL);
	h_wait_finals(h, 1, 10000);
	assert_string_equal(h->final_state[0], "failed");
	st = h_status(h, id);
	assert_string_equal(agent_state(st, "metadata"), "failed");
	assert_non_null(strstr(agent_error(st, "metadata"), "failed"));
	assert_string_equal(agent_state(st, "lineage"), "skipped");
	assert_string_equal(agent_error(st, "lineage"), "prerequisite metadata failed");
	assert_string_equal(agent_state(st, "usage"), "skipped");
	assert_string_equal(agent_state(st, "profiler"), "skipped");
	assert_non_null(strstr(agent_error(st, "profiler"), "usage"));
	assert_int_equal(log_count(h, "deploy", "pg__lineage"), 0);
	assert_int_equal(log_count(h, "deploy", "pg__profiler"), 0);
	json_decref(st);
	free(id);
	h_free(h);
}

/*
 * scheduler.predeploy: the dependents are deployed while metadata runs (each
 * once), so Airflow can parse their DAGs before their turn comes; in its turn
 * each still waits for the parse (PATCH until found), and the triggers keep
 * the dependency order.
 */
static void
test_predeploy_parses_ahead(void **state)
{
	struct h *h = h_new();
	char *id;
	json_t *st;
	int m_trig, m_done, i;
	const char *dep[] = { "pg__lineage", "pg__usage", "pg__profiler" };

	h->cfg.predeploy = true;
	h->cfg.poll_initial_ms = 20;
	for (i = 0; i < 4; i++)
		h->fake.beh[i].parse_404 = 1;
	h->fake.beh[0].running_polls = 6;
	h_start(h);
	id = h_submit(h, "pg", NULL);
	h_wait_finals(h, 1, 10000);
	assert_string_equal(h->final_state[0], "succeeded");
	m_trig = log_first(h, "trigger", "pg__metadata");
	m_done = log_last(h, "get_run", "pg__metadata");
	for (i = 0; i < 3; i++) {
		assert_int_equal(log_count(h, "deploy", dep[i]), 1);
		assert_true(log_first(h, "deploy", dep[i]) < m_trig);
		/* The wait for the parse still comes first in its turn (the fake
		 * answers one 404 to each DAG, whenever it is asked). */
		assert_int_equal(log_count(h, "unpause", dep[i]), 2);
		assert_true(log_first(h, "unpause", dep[i]) > m_done);
		assert_true(log_first(h, "trigger", dep[i]) > m_done);
	}
	assert_true(log_first(h, "trigger", "pg__profiler") >
	    log_last(h, "get_run", "pg__usage"));
	st = h_status(h, id);
	assert_string_equal(agent_state(st, "profiler"), "succeeded");
	assert_string_equal(json_string_value(json_object_get(status_agent(st,
	    "lineage"), "dag_id")), "pg__lineage");
	assert_int_equal(agent_attempts(st, "usage"), 1);
	json_decref(st);
	for (i = 0; i < h->fake.nruns; i++)
		assert_int_equal(h->fake.runs[i].created, 1);
	free(id);
	h_free(h);
}

/* Deployed ahead, then metadata fails: the dependents are skipped as
 * without it, their DAGs deployed and never triggered. */
static void
test_predeploy_prerequisite_fails(void **state)
{
	struct h *h = h_new();
	char *id;
	json_t *st;

	h->cfg.predeploy = true;
	h->fake.beh[0].outcome = OUT_FAILED;
	h->fake.beh[0].running_polls = 3;
	h_start(h);
	id = h_submit(h, "pg", NULL);
	h_wait_finals(h, 1, 10000);
	assert_string_equal(h->final_state[0], "failed");
	st = h_status(h, id);
	assert_string_equal(agent_state(st, "lineage"), "skipped");
	assert_string_equal(agent_error(st, "lineage"), "prerequisite metadata failed");
	assert_string_equal(agent_state(st, "profiler"), "skipped");
	assert_int_equal(log_count(h, "deploy", "pg__lineage"), 1);
	assert_int_equal(log_count(h, "trigger", "pg__lineage"), 0);
	assert_int_equal(log_count(h, "unpause", "pg__lineage"), 0);
	assert_int_equal(log_count(h, "trigger", "pg__profiler"), 0);
	assert_int_equal(sched_agents_in_flight(h->sched), 0);
	json_decref(st);
	free(id);
	h_free(h);
}

/* A run restricted to some agents deploys ahead only those: one left out
 * is bridged, never deployed. */
static void
test_predeploy_restricted(void **state)
{
	struct h *h = h_new();
	const char *only[] = { "metadata", "profiler", NULL };
	char *id;

	h->cfg.predeploy = true;
	h->fake.beh[0].running_polls = 3;
	h_start(h);
	id = h_submit_agents(h, only);
	h_wait_finals(h, 1, 10000);
	assert_string_equal(h->final_state[0], "succeeded");
	assert_int_equal(log_count(h, "deploy", "pg__profiler"), 1);
	assert_true(log_first(h, "deploy", "pg__profiler") <
	    log_first(h, "trigger", "pg__metadata"));
	assert_true(log_first(h, "trigger", "pg__profiler") >
	    log_last(h, "get_run", "pg__metadata"));
	assert_int_equal(log_count(h, "deploy", "pg__usage"), 0);
	assert_int_equal(log_count(h, "deploy", "pg__lineage"), 0);
	free(id);
	h_free(h);
}

/* scheduler.predeploy_max: deploys ahead in flight at once, across runs
 * (the default lets those of several runs overlap). */
static void
predeploy_cap(unsigned cap, int *max_in_air)
{
	struct h *h = h_new();
	char name[16], *ids[6];
	int i;

	h->cfg.predeploy = true;
	if (cap > 0)
		h->cfg.predeploy_max = cap;
	h->fake.beh[0].running_polls = 4;
	h_start(h);
	for (i = 0; i < 6; i++) {
		snprintf(name, sizeof name, "pg%d", i);
		ids[i] = h_submit(h, name, NULL);
	}
	h_wait_finals(h, 6, 20000);
	for (i = 0; i < 6; i++) {
		assert_string_equal(h->final_state[i], "succeeded");
		free(ids[i]);
	}
	for (i = 0; i < 6; i++) {
		snprintf(name, sizeof name, "pg%d__lineage", i);
		assert_int_equal(log_count(h, "deploy", name), 1);
	}
	*max_in_air = h->fake.max_deps_in_air;
	h_free(h);
}

static void
test_predeploy_max(void **state)
{
	int capped, uncapped;

	predeploy_cap(1, &capped);
	predeploy_cap(0, &uncapped);
	assert_int_equal(capped, 1);
	assert_true(uncapped > 1);
}

static void
test_usage_failure_skips_profiler_only(void **state)
{
	struct h *h = h_new();
	char *id;
	json_t *st;

	h->fake.beh[2].outcome = OUT_FAILED;
	h_start(h);
	id = h_submit(h, "pg", NULL);
	h_wait_finals(h, 1, 10000);
	assert_string_equal(h->final_state[0], "failed");
	st = h_status(h, id);
	assert_string_equal(agent_state(st, "lineage"), "succeeded");
	assert_string_equal(agent_state(st, "usage"), "failed");
	assert_string_equal(agent_state(st, "profiler"), "skipped");
	assert_string_equal(agent_error(st, "profiler"), "prerequisite usage failed");
	assert_non_null(strstr(json_string_value(json_object_get(st, "error")),
	    "usage failed"));
	json_decref(st);
	free(id);
	h_free(h);
}

static void
test_lineage_failure_blocks_nothing(void **state)
{
	struct h *h = h_new();
	char *id;
	json_t *st;

	h->fake.beh[1].outcome = OUT_FAILED;
	h_start(h);
	id = h_submit(h, "pg", NULL);
	h_wait_finals(h, 1, 10000);
	st = h_status(h, id);
	assert_string_equal(agent_state(st, "lineage"), "failed");
	assert_string_equal(agent_state(st, "usage"), "succeeded");
	assert_string_equal(agent_state(st, "profiler"), "succeeded");
	/* lineage ran and failed: the run is failed. */
	assert_string_equal(h->final_state[0], "failed");
	json_decref(st);
	free(id);
	h_free(h);
}

static void
test_unsupported_counts_as_success_and_deploy_only(void **state)
{
	struct h *h = h_new();
	char *id;
	json_t *st;

	h_start(h);
	id = h_submit(h, "pg", "{\"unsupported\": [\"usage\"], \"no_run\": [\"profiler\"]}");
	h_wait_finals(h, 1, 10000);
	assert_string_equal(h->final_state[0], "succeeded");
	st = h_status(h, id);
	assert_string_equal(agent_state(st, "usage"), "skipped");
	assert_string_equal(agent_error(st, "usage"), "unsupported by the service");
	/* profiler runs after an unsupported usage, deployed but not triggered,
	 * and says so. */
	assert_string_equal(agent_state(st, "profiler"), "succeeded");
	assert_string_equal(agent_error(st, "profiler"), "deployed and unpaused (Airflow"
	    " runs it on its schedule, if it has one), not triggered"
	    " (agents.profiler.run is false)");
	assert_int_equal(log_count(h, "deploy", "pg__profiler"), 1);
	assert_int_equal(log_count(h, "trigger", "pg__profiler"), 0);
	assert_int_equal(log_count(h, "deploy", "pg__usage"), 0);
	/* ... and in its turn: after metadata ended, not beside it. */
	assert_true(deployed_after(h, "pg__profiler", "pg__metadata"));
	json_decref(st);
	free(id);
	h_free(h);
}

/* Runs service fqn (its run the nth to end, retries allowed): its metadata
 * agent fails with an error holding want, and is not retried. */
static void
h_fails_unretried(struct h *h, const char *fqn, int nth, const char *want)
{
	char *id = h_submit(h, fqn, "{\"retries\": 2}"), dag[64];
	json_t *st;

	h_wait_finals(h, nth, 10000);
	st = h_status(h, id);
	assert_string_equal(agent_state(st, "metadata"), "failed");
	assert_non_null(strstr(agent_error(st, "metadata"), want));
	snprintf(dag, sizeof dag, "%s__metadata", fqn);
	assert_int_equal(log_count(h, "deploy", dag), 1);
	json_decref(st);
	free(id);
}

static void
test_import_error_and_rejected_deploy(void **state)
{
	struct h *h = h_new();
	char *id2, *id3;
	json_t *st;

	h->fake.beh[0].import_error = "Traceback: ModuleNotFoundError: metadata";
	h_start(h);
	/* Import errors are not retried. */
	h_fails_unretried(h, "pg", 1, "Traceback: ModuleNotFoundError: metadata");

	h->fake.beh[0].import_error = NULL;
	h->fake.beh[0].reject_deploy = true;
	id2 = h_submit(h, "pg2", NULL);
	h_wait_finals(h, 2, 10000);
	st = h_status(h, id2);
	assert_string_equal(agent_state(st, "metadata"), "failed");
	assert_non_null(strstr(agent_error(st, "metadata"), "HTTP 400"));
	assert_non_null(strstr(agent_error(st, "metadata"), "invalid pipeline"));
	json_decref(st);

	/* A deploy the plugin answers 500 is a failed attempt (retried as
	 * one), not an Airflow to wait for until the agent's timeout. */
	h->fake.beh[0].reject_deploy = false;
	h->fake.beh[0].deploy_500 = true;
	id3 = h_submit(h, "pg3", "{\"retries\": 1}");
	h_wait_finals(h, 3, 10000);
	st = h_status(h, id3);
	assert_string_equal(agent_state(st, "metadata"), "failed");
	assert_non_null(strstr(agent_error(st, "metadata"), "HTTP 500"));
	assert_non_null(strstr(agent_error(st, "metadata"), "Failed to write the DAG file"));
	assert_int_equal(log_count(h, "deploy", "pg3__metadata"), 2);
	json_decref(st);
	free(id2);
	free(id3);
	h_free(h);
}

/*
 * A DAG file that never imported has no DAG in Airflow (404 for ever): from
 * the third 404, the unpause asks for the import errors stamped since the
 * deploy (then every 30 s, and at each 404 once one was seen); one stamped
 * again by a later parse fails the agent with Airflow's trace, not retried,
 * rather than at the parse deadline. An error seen but not stamped again (a
 * parse of the file before the deploy) is waited out. A refused unpause is
 * not retried.
 */
static void
test_never_imported_and_refused_unpause(void **state)
{
	struct h *h = h_new();
	int64_t before = ap_wall_ms();
	char *id;
	json_t *st;
	int i, n = 0;

	h->cfg.dag_parse_deadline_s = 60;
	h->fake.beh[0].import_error = "Traceback: SyntaxError: metadata";
	h->fake.beh[0].never_imported = true;
	h_start(h);
	h_fails_unretried(h, "pg", 1, "Traceback: SyntaxError: metadata");
	assert_int_equal(log_count(h, "unpause", "pg__metadata"), 4);
	for (i = 0; i < h->fake.nlog; i++) {
		const struct log_entry *e = &h->fake.log[i];

		if (strcmp(e->op, "unpause") != 0)
			continue;
		if (n++ < 2)
			assert_int_equal(e->since, 0);
		else
			assert_true(e->since >= before && e->since <= ap_wall_ms());
	}

	/* Nothing to see: looked at once, not again within 30 s. */
	h->fake.beh[0].never_imported = false;
	h->fake.beh[0].import_error = NULL;
	h->fake.beh[0].parse_404 = 6;
	id = h_submit(h, "pg0", NULL);
	h_wait_finals(h, 2, 10000);
	assert_string_equal(h->final_state[1], "succeeded");
	assert_int_equal(log_count(h, "unpause", "pg0__metadata"), 7);
	for (i = 0, n = 0; i < h->fake.nlog; i++)
		if (strcmp(h->fake.log[i].dag_id, "pg0__metadata") == 0 &&
		    h->fake.log[i].since != 0)
			n++;
	assert_int_equal(n, 1);
	free(id);

	h->fake.beh[0].stale_error = "Traceback: the file before";
	h->fake.beh[0].parse_404 = 4;
	id = h_submit(h, "pg1", NULL);
	h_wait_finals(h, 3, 10000);
	st = h_status(h, id);
	assert_string_equal(agent_state(st, "metadata"), "succeeded");
	assert_int_equal(log_count(h, "unpause", "pg1__metadata"), 5);
	json_decref(st);
	free(id);
	h->fake.beh[0].stale_error = NULL;
	h->fake.beh[0].parse_404 = 0;

	h->fake.beh[0].import_error = NULL;
	h->fake.beh[0].never_imported = false;
	/* A refusal says what to check: the user's role, its credentials. */
	h->fake.beh[0].unpause_status = 403;
	h_fails_unretried(h, "pg2", 4, "HTTP 403 Forbidden (Airflow refused this"
	    " to its user: its role must allow the REST API");
	h->fake.beh[0].unpause_status = 401;
	h->fake.unpause_title = "Unauthorized";
	h_fails_unretried(h, "pg4", 5, "HTTP 401 Unauthorized (Airflow refused the"
	    " credentials: check AUTOPILOT_AIRFLOW_USERNAME and"
	    " AUTOPILOT_AIRFLOW_PASSWORD");
	/* Airflow 3's login route missing: not "no such DAG", not retried. */
	h->fake.beh[0].unpause_status = 405;
	h->fake.unpause_title = AIRFLOW_NO_LOGIN;
	h_fails_unretried(h, "pg3", 6, "HTTP 405 No Airflow 3 login");
	h_free(h);
}

/*
 * A DAG Airflow has, with import errors: perhaps of the file before the
 * deploy (Airflow shows has_import_errors until it parses the file again).
 * It is read, not unpaused, until Airflow shows it without them, then
 * unpaused and run. Two stamps later than the first look's say the file
 * written is broken: the agent fails, not retried, whatever Airflow's clock
 * reads. An error still shown at the parse deadline fails it too, not
 * retried, stamped or not (test_import_error_and_rejected_deploy).
 */
static void
test_import_error_of_the_file_before(void **state)
{
	struct h *h = h_new();
	char *id;
	json_t *st;

	h->cfg.dag_parse_deadline_s = 60;
	h->fake.beh[0].import_error = "Traceback: the file before";
	h->fake.beh[0].error_stamp = STAMP_OLD;
	h->fake.beh[0].error_answers = 3;
	h_start(h);
	id = h_submit(h, "pg", NULL);
	h_wait_finals(h, 1, 10000);
	st = h_status(h, id);
	assert_string_equal(agent_state(st, "metadata"), "succeeded");
	assert_int_equal(log_count(h, "unpause", "pg__metadata"), 2);
	assert_int_equal(log_count(h, "get_dag", "pg__metadata"), 3);
	assert_true(log_first(h, "get_dag", "pg__metadata") >
	    log_first(h, "unpause", "pg__metadata"));
	assert_int_equal(log_count(h, "deploy", "pg__metadata"), 1);
	assert_int_equal(log_count(h, "trigger", "pg__metadata"), 1);
	json_decref(st);
	free(id);

	/* The file written is broken: the first look's stamp may be of the
	 * file before, the next of a parse begun before the write; the third
	 * confirms it, now or a minute back by Airflow's clock. */
	h->fake.beh[0].import_error = "Traceback: SyntaxError: ours";
	h->fake.beh[0].error_stamp = STAMP_EACH;
	h->fake.beh[0].error_answers = 0;
	h_fails_unretried(h, "pg1", 2, "DAG pg1__metadata has import errors: Traceback:"
	    " SyntaxError: ours");
	assert_int_equal(log_count(h, "unpause", "pg1__metadata"), 1);
	assert_int_equal(log_count(h, "get_dag", "pg1__metadata"), 2);
	h->fake.beh[0].error_stamp = STAMP_BEHIND;
	h_fails_unretried(h, "pg2", 3, "DAG pg2__metadata has import errors: Traceback:"
	    " SyntaxError: ours");
	assert_int_equal(log_count(h, "unpause", "pg2__metadata"), 1);
	assert_int_equal(log_count(h, "get_dag", "pg2__metadata"), 2);
	assert_int_equal(log_count(h, "trigger", "pg1__metadata") +
	    log_count(h, "trigger", "pg2__metadata"), 0);
	h_free(h);

	/* Never parsed again: still shown at the deadline, not retried. */
	h = h_new();
	h->cfg.dag_parse_deadline_s = 1;
	h->fake.beh[0].import_error = "Traceback: the file before";
	h->fake.beh[0].error_stamp = STAMP_OLD;
	h_start(h);
	h_fails_unretried(h, "pg", 1, "DAG pg__metadata has import errors (still at the"
	    " parse deadline): Traceback: the file before");
	assert_int_equal(log_count(h, "unpause", "pg__metadata"), 1);
	assert_true(log_count(h, "get_dag", "pg__metadata") >= 3);
	h_free(h);
}

/* A DAG deployed ahead that never imports: its error is looked for from the
 * deploy ahead's answer, and fails it in its turn, not deployed again. */
static void
test_never_imported_deployed_ahead(void **state)
{
	struct h *h = h_new();
	int64_t before = ap_wall_ms();
	int i, looks = 0;
	char *id;
	json_t *st;

	h->cfg.predeploy = true;
	h->cfg.poll_initial_ms = 20;
	h->fake.beh[0].running_polls = 6;
	h->fake.beh[1].import_error = "Traceback: lineage";
	h->fake.beh[1].never_imported = true;
	h_start(h);
	id = h_submit(h, "pg", "{\"retries\": 2}");
	h_wait_finals(h, 1, 10000);
	st = h_status(h, id);
	assert_string_equal(agent_state(st, "metadata"), "succeeded");
	assert_string_equal(agent_state(st, "lineage"), "failed");
	assert_non_null(strstr(agent_error(st, "lineage"), "Traceback: lineage"));
	assert_int_equal(log_count(h, "deploy", "pg__lineage"), 1);
	assert_true(log_first(h, "deploy", "pg__lineage") <
	    log_first(h, "trigger", "pg__metadata"));
	for (i = 0; i < h->fake.nlog; i++) {
		const struct log_entry *e = &h->fake.log[i];

		if (strcmp(e->op, "unpause") == 0 &&
		    strcmp(e->dag_id, "pg__lineage") == 0 && e->since != 0) {
			assert_true(e->since >= before && e->since <= ap_wall_ms());
			looks++;
		}
	}
	assert_int_equal(looks, 2);
	json_decref(st);
	free(id);
	h_free(h);
}

static void
test_parse_deadline(void **state)
{
	struct h *h = h_new();
	char *id;
	json_t *st;

	h->cfg.dag_parse_deadline_s = 1;
	h->fake.beh[0].parse_404 = 1000000;
	h_start(h);
	id = h_submit(h, "pg", NULL);
	h_wait_finals(h, 1, 10000);
	st = h_status(h, id);
	assert_string_equal(agent_state(st, "metadata"), "failed");
	assert_non_null(strstr(agent_error(st, "metadata"), "not parsed"));
	/* Backoff: far fewer polls than 1 s / floor. */
	assert_true(log_count(h, "unpause", "pg__metadata") < 200);
	json_decref(st);
	free(id);
	h_free(h);
}

/* metadata's Airflow runs never end; the run (with extra in its entity)
 * ends with metadata timed out and its run marked failed. Its status. */
static json_t *
hang_until_timeout(struct h *h, const char *extra, char **id)
{
	json_t *st;

	h->fake.beh[0].outcome = OUT_HANG;
	h_start(h);
	*id = h_submit(h, "pg", extra);
	h_wait_finals(h, 1, 10000);
	st = h_status(h, *id);
	assert_string_equal(agent_state(st, "metadata"), "timed_out");
	assert_non_null(strstr(agent_error(st, "metadata"), "marked failed"));
	return st;
}

static void
test_timeout_fails_airflow_run(void **state)
{
	struct h *h = h_new();
	char *id;
	json_t *st;
	int i;

	st = hang_until_timeout(h, "{\"timeout_ms\": 300}", &id);
	assert_int_equal(log_count(h, "fail_run", "pg__metadata"), 1);
	for (i = 0; i < h->fake.nruns; i++)
		assert_true(h->fake.runs[i].failed_by_us);
	/* Every request of the attempt is bounded by the agent's time (the
	 * client's retries end with it); the PATCH past it has its own 30 s. */
	for (i = 0; i < h->fake.nlog; i++) {
		struct log_entry *e = &h->fake.log[i];

		if (strstr(e->dag_id, "metadata") == NULL)
			continue;
		assert_true(e->limited);
		if (strcmp(e->op, "fail_run") == 0)	/* sent in a later turn */
			assert_true(e->limit_ms > 29000 && e->limit_ms <= 30000);
		else if (i < log_last(h, "fail_run", "pg__metadata") - 1)
			assert_true(e->limit_ms <= 300);
	}
	assert_string_equal(agent_state(st, "lineage"), "skipped");
	assert_string_equal(h->final_state[0], "failed");
	json_decref(st);
	free(id);
	h_free(h);
}

static int64_t
stepped_clock(void *arg)
{
	return ap_wall_ms() + *(int64_t *)arg;
}

/* metadata's started_at in the store, epoch ms. */
static int64_t
h_started_at(struct h *h, const char *run_id)
{
	json_t *st = h_status(h, run_id);
	const char *t = json_string_value(json_object_get(status_agent(st,
	    "metadata"), "started_at"));
	struct tm tm = { 0 };
	int64_t ms;

	assert_non_null(t);
	assert_int_equal(sscanf(t, "%d-%d-%dT%d:%d:%d", &tm.tm_year, &tm.tm_mon,
	    &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec), 6);
	tm.tm_year -= 1900;
	tm.tm_mon--;
	ms = (int64_t)timegm(&tm) * 1000;
	json_decref(st);
	return ms;
}

/* metadata's Airflow run hangs (timeout_ms), the other agents deploy only;
 * the store's clock the wall clock plus *off. Returns once it is polled. */
static char *
h_clock_hang(struct h *h, int64_t *off, int timeout_ms)
{
	char extra[128];
	char *id;

	h->cfg.poll_initial_ms = 50;
	h->cfg.poll_max_ms = 50;
	h->cfg.poll_learn = false;
	store_set_clock(h->store, stepped_clock, off);
	h->fake.beh[0].outcome = OUT_HANG;
	h_start(h);
	snprintf(extra, sizeof extra, "{\"timeout_ms\": %d, \"no_run\":"
	    " [\"lineage\", \"usage\", \"profiler\"]}", timeout_ms);
	id = h_submit(h, "pg", extra);
	while (log_count(h, "get_run", "pg__metadata") == 0)
		event_base_loop(h->base, EVLOOP_ONCE);
	return id;
}

/* The wall clock steps an hour ahead, then a day back, while an agent
 * with a 1.5 s timeout runs: neither times it out early nor holds it a
 * day; its stored start moves with the clock. */
static void
test_clock_step_keeps_timeouts(void **state)
{
	struct h *h = h_new();
	int64_t off = 0, t0, t1, t2;
	uint64_t began;
	char *id;
	json_t *st;

	id = h_clock_hang(h, &off, 1500);
	began = ap_mono_ms();
	t0 = h_started_at(h, id);
	off = 3600000;
	h_spin(h, 300);
	h_assert_agent_state(h, id, "metadata", "running");
	t1 = h_started_at(h, id);
	assert_true(t1 - t0 >= 3599000 && t1 - t0 <= 3601000);
	off = -86400000;
	h_spin(h, 300);
	t2 = h_started_at(h, id);
	assert_true(t0 - t2 >= 86399000 && t0 - t2 <= 86401000);
	h_wait_finals(h, 1, 5000);
	st = h_status(h, id);
	assert_string_equal(agent_state(st, "metadata"), "timed_out");
	assert_true(ap_mono_ms() - began < 3000);
	json_decref(st);
	free(id);
	h_free(h);
}

/* The same for an agent a restarted process took up: the step moves its
 * start in the store as in memory, so that the process after it does not
 * time it out early either. */
static void
test_clock_step_resumed(void **state)
{
	struct h *h = h_new();
	int64_t off = 0, t0, t1;
	char *id;
	int i;

	h_short_lease(h);
	id = h_clock_hang(h, &off, 4000);
	t0 = h_started_at(h, id);
	for (i = 0; i < 2; i++) {
		h_crash(h, 250000);
		store_set_clock(h->store, stepped_clock, &off);
		h_start(h);
		h_spin(h, 300);
		h_assert_agent_state(h, id, "metadata", "running");
		if (i == 0) {
			/* Taken up again; then the clock steps an hour ahead. */
			off = 3600000;
			h_spin(h, 200);
			t1 = h_started_at(h, id);
			assert_true(t1 - t0 >= 3599000 && t1 - t0 <= 3601000);
		}
	}
	h_wait_finals(h, 1, 6000);
	h_assert_agent_state(h, id, "metadata", "timed_out");
	free(id);
	h_free(h);
}

/*
 * The deadline comes while a run is tracked. Polls are slower than the
 * timeout (300 ms), so the one look at metadata's run after its trigger is
 * at the deadline (after `unavailable` "Airflow unavailable" answers); the
 * other agents are deploy-only. Checks the agent's end and the PATCHes.
 */
static void
deadline_case(int duration_ms, enum outcome out, int unavailable, const char *end,
    int fail_runs)
{
	struct h *h = h_new();
	char *id;
	json_t *st;

	h->cfg.poll_initial_ms = 10000;
	h->cfg.poll_max_ms = 10000;
	h->cfg.poll_learn = false;
	h->cfg.dag_parse_deadline_s = 0;	/* the DAG is looked at after the floor */
	h->fake.beh[0].duration_ms = duration_ms;
	h->fake.beh[0].outcome = out;
	h_start(h);
	id = h_submit(h, "pg", "{\"timeout_ms\": 300, \"no_run\": [\"lineage\","
	    " \"usage\", \"profiler\"]}");
	while (log_count(h, "trigger", "pg__metadata") == 0)
		event_base_loop(h->base, EVLOOP_ONCE);
	h->fake.unavailable_next = unavailable;
	h_wait_finals(h, 1, 10000);
	assert_string_equal(h->final_state[0], strcmp(end, "succeeded") == 0 ?
	    "succeeded" : "failed");
	st = h_status(h, id);
	assert_string_equal(agent_state(st, "metadata"), end);
	assert_int_equal(log_count(h, "trigger", "pg__metadata"), 1);
	assert_int_equal(log_count(h, "get_run", "pg__metadata"),
	    1 + (unavailable < 3 ? unavailable : 3));
	assert_int_equal(log_count(h, "fail_run", NULL), fail_runs);
	if (fail_runs > 0)
		assert_true(log_first(h, "fail_run", "pg__metadata") >
		    log_last(h, "get_run", "pg__metadata"));
	assert_int_equal(h->fake.runs[0].failed_by_us, fail_runs > 0 && unavailable == 0);
	json_decref(st);
	free(id);
	h_free(h);
}

/* A run that ended before the deadline but after the last poll keeps its
 * outcome: one GET at the deadline, no PATCH; only a run still running is
 * marked failed, and one gone is lost. Airflow unavailable at the deadline:
 * the look is retried with the usual backoff, a bounded number of times. */
static void
test_timeout_looks_before_failing(void **state)
{
	deadline_case(50, OUT_SUCCESS, 0, "succeeded", 0);
	deadline_case(0, OUT_FAILED, 0, "failed", 0);
	deadline_case(0, OUT_LOST, 0, "lost", 0);
	deadline_case(0, OUT_HANG, 0, "timed_out", 1);
	deadline_case(50, OUT_SUCCESS, 2, "succeeded", 0);
	deadline_case(50, OUT_SUCCESS, 100, "timed_out", 4);
}

/* Marking the timed-out run failed meets an outage: the PATCH is retried
 * with the usual backoff, so the attempt's run is failed in Airflow before
 * the next attempt triggers another. */
static void
test_timeout_patch_retried_while_unavailable(void **state)
{
	struct h *h = h_new();
	char *id, *rid1, *rid2;
	json_t *st;
	int i, n = 0;

	h->fake.fail_run_unavailable = 1;
	st = hang_until_timeout(h, "{\"timeout_ms\": 300, \"retries\": 1}", &id);
	rid1 = ap_xprintf("autopilot__%s__metadata__1", id);
	rid2 = ap_xprintf("autopilot__%s__metadata__2", id);
	assert_true(fake_run(&h->fake, rid1)->failed_by_us);
	assert_true(fake_run(&h->fake, rid2)->failed_by_us);
	assert_int_equal(log_count(h, "fail_run", "pg__metadata"), 3);
	/* Both PATCHes of attempt 1 came before attempt 2's trigger. */
	for (i = 0; i < h->fake.nlog && strcmp(h->fake.log[i].run_id, rid2) != 0; i++) {
		if (strcmp(h->fake.log[i].op, "fail_run") == 0 &&
		    strcmp(h->fake.log[i].run_id, rid1) == 0)
			n++;
	}
	assert_int_equal(n, 2);
	assert_string_equal(h->fake.log[i].op, "trigger");
	json_decref(st);
	free(rid1);
	free(rid2);
	free(id);
	h_free(h);
}

/* Rows in the store's halts (Airflow runs still to be marked failed), as
 * committed. */
/* Runs sql on h's database from a connection of its own. */
static void
h_sql(struct h *h, const char *sql)
{
	sqlite3 *db;

	assert_int_equal(sqlite3_open(h->db, &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
}

static int
halts_count(struct h *h)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	int n;

	assert_int_equal(sqlite3_open_v2(h->db, &db, SQLITE_OPEN_READONLY, NULL),
	    SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM halts", -1,
	    &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	n = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return n;
}

/* A timed-out attempt whose Airflow run could not be marked failed is not
 * retried: the next attempt would run beside it. But marking it failed is
 * kept in the store, and a scheduler that rescans tries again: the Airflow
 * run is looked at, still running, and marked failed. */
static void
test_timeout_unhalted_not_retried(void **state)
{
	struct h *h = h_new();
	char *id;
	json_t *st;
	int n;

	h->cfg.late_budget_ms = 300;
	h->cfg.rescan_ms = 50;
	h->fake.fail_run_unanswered = true;
	h->fake.beh[0].outcome = OUT_HANG;
	h_start(h);
	id = h_submit(h, "pg", "{\"timeout_ms\": 300, \"retries\": 2}");
	h_wait_finals(h, 1, 10000);
	st = h_status(h, id);
	assert_string_equal(agent_state(st, "metadata"), "timed_out");
	assert_int_equal(agent_attempts(st, "metadata"), 1);
	assert_non_null(strstr(agent_error(st, "metadata"), "not retried while that"
	    " run may still go on; marking it failed is tried again later"));
	assert_int_equal(log_count(h, "trigger", "pg__metadata"), 1);
	json_decref(st);
	h_spin(h, 10);
	assert_int_equal(halts_count(h), 1);
	/* The agent's own try counts, with how it failed. */
	st = h_status(h, id);
	{
		json_t *halt = json_array_get(json_object_get(st,
		    "airflow_runs_to_fail"), 0);

		assert_int_equal(json_integer_value(json_object_get(halt,
		    "tries")), 1);
		assert_non_null(strstr(json_string_value(json_object_get(halt,
		    "error")), "mark failed: "));
	}
	json_decref(st);
	assert_false(h->fake.runs[0].failed_by_us);
	h->fake.fail_run_unanswered = false;
	n = log_count(h, "get_run", "pg__metadata");
	h_wait_log(h, "fail_run", "pg__metadata", log_count(h, "fail_run",
	    "pg__metadata") + 1);
	assert_true(log_count(h, "get_run", "pg__metadata") > n);
	h_spin(h, 20);
	assert_true(h->fake.runs[0].failed_by_us);
	assert_int_equal(halts_count(h), 0);
	assert_int_equal(log_count(h, "trigger", "pg__metadata"), 1);
	free(id);
	h_free(h);
}

/* Once metadata's trigger number n was sent, pg's run is replaced: the new
 * run's id. */
static char *
h_replace(struct h *h, int n)
{
	h_wait_log(h, "trigger", "pg__metadata", n);
	h_spin(h, 20);
	return h_submit_pg(h, NULL, true);
}

/*
 * A replaced run's Airflow run that could not be marked failed is in the
 * store: a scheduler started after a crash marks it failed (held in
 * memory only, it would go on unwatched).
 */
static void
test_halt_survives_restart(void **state)
{
	struct h *h = h_new();
	char *id1, *id2;
	int n;

	h->fake.beh[0].running_polls = 1000000;
	h->fake.fail_run_unavailable = 1000000;
	h_start(h);
	id1 = h_submit(h, "pg", NULL);
	id2 = h_replace(h, 1);
	h_wait_log(h, "fail_run", "pg__metadata", 1);
	h_spin(h, 20);
	assert_int_equal(sched_halts_pending(h->sched), 0);
	assert_int_equal(sched_halts_failed(h->sched), 1);
	assert_int_equal(halts_count(h), 1);
	/* The process ends (no rescan here); another starts once the halt is
	 * due again (unreachable_retry_max_ms later). */
	h_spin(h, 40);
	sched_stop(h->sched);
	sched_free(h->sched);
	h->fake.fail_run_unavailable = 0;
	n = log_count(h, "fail_run", "pg__metadata");
	h_start(h);
	h_wait_log(h, "fail_run", "pg__metadata", n + 1);
	h_spin(h, 20);
	assert_non_null(strstr(h->fake.log[log_last(h, "fail_run",
	    "pg__metadata")].run_id, id1));
	assert_true(h->fake.runs[0].failed_by_us);
	assert_int_equal(halts_count(h), 0);
	free(id1);
	free(id2);
	h_free(h);
}

/* A halt in flight when the process stops is handed over: due at once for
 * the next process, not when its claim runs out. */
static void
test_halt_handed_over_at_stop(void **state)
{
	struct h *h = h_new();
	char *id1, *id2, *cause = NULL;
	json_t *due;

	h->fake.beh[0].running_polls = 1000000;
	h->fake.fail_run_unanswered = true;
	h_start(h);
	id1 = h_submit(h, "pg", NULL);
	id2 = h_replace(h, 1);
	h_wait_log(h, "fail_run", "pg__metadata", 1);
	assert_int_equal(store_halts_due(h->store, 10, &due, &cause), STORE_OK);
	assert_int_equal(json_array_size(due), 0);	/* taken */
	json_decref(due);
	sched_halts_cancel(h->sched);
	assert_int_equal(sched_halts_pending(h->sched), 0);
	assert_int_equal(store_halts_due(h->store, 10, &due, &cause), STORE_OK);
	assert_int_equal(json_array_size(due), 1);
	json_decref(due);
	free(id1);
	free(id2);
	h_free(h);
}

/* A PATCH refused 401 (credentials fixed later) is tried again; one
 * refused 422 cannot succeed and is given up. */
static void
test_halt_rejections(void **state)
{
	struct h *h = h_new();
	char *id1, *id2, *id3;

	h->cfg.rescan_ms = 50;
	h->fake.beh[0].running_polls = 1000000;
	h->fake.fail_run_rejects = 1;
	h->fake.fail_run_reject_status = 401;
	h_start(h);
	id1 = h_submit(h, "pg", NULL);
	id2 = h_replace(h, 1);
	h_wait_log(h, "fail_run", "pg__metadata", 2);
	h_spin(h, 20);
	assert_true(h->fake.runs[0].failed_by_us);
	assert_int_equal(halts_count(h), 0);
	h->fake.fail_run_rejects = 1;
	h->fake.fail_run_reject_status = 422;
	id3 = h_replace(h, 2);
	h_wait_log(h, "fail_run", "pg__metadata", 3);
	h_spin(h, 200);
	assert_int_equal(log_count(h, "fail_run", "pg__metadata"), 3);
	assert_false(h->fake.runs[1].failed_by_us);
	assert_int_equal(halts_count(h), 0);
	free(id1);
	free(id2);
	free(id3);
	h_free(h);
}

/* A halt whose Airflow run has ended meanwhile: forgotten, not PATCHed (a
 * run that succeeded keeps its outcome). */
static void
test_halt_of_ended_run_forgotten(void **state)
{
	struct h *h = h_new();
	char *cause = NULL;
	int n;

	h->fake.beh[0].running_polls = 1;
	h_start(h);
	free(h_submit(h, "pg", "{\"no_run\": [\"lineage\", \"usage\","
	    " \"profiler\"]}"));
	h_wait_finals(h, 1, 10000);
	assert_string_equal(h->final_state[0], "succeeded");
	assert_int_equal(store_halt_add(h->store, "rx", "pg__metadata",
	    h->fake.runs[0].run_id, "a test", 0, &cause), STORE_OK);
	sched_stop(h->sched);
	sched_free(h->sched);
	n = log_count(h, "get_run", "pg__metadata");
	h_start(h);
	h_wait_log(h, "get_run", "pg__metadata", n + 1);
	h_spin(h, 20);
	assert_int_equal(log_count(h, "fail_run", NULL), 0);
	assert_int_equal(halts_count(h), 0);
	h_free(h);
}

/*
 * A run replaced while its agent's trigger may still be on its way (sent
 * just before; here its send failed, and it arrives after the PATCH that
 * was to stop it found nothing): the halt is not forgotten at that 404 but
 * looked at again halt_recheck_ms later, and the run the late trigger
 * started is marked failed then, not left going on unwatched.
 */
static void
test_halt_not_yet_looked_at_again(void **state)
{
	struct h *h = h_new();
	char *id, *id2, *rid, *cause = NULL;
	struct fake_run *r;
	int i;

	h->cfg.poll_initial_ms = 5000;	/* the trigger is not tried again soon */
	h->cfg.unreachable_retry_max_ms = 5000;
	h->cfg.halt_recheck_ms = 300;
	h->cfg.rescan_ms = 50;
	h->fake.beh[0].running_polls = 1000000;
	h_start(h);
	id = h_submit(h, "pg", NULL);
	h_wait_log(h, "unpause", "pg__metadata", 1);
	h->fake.down = true;
	h_wait_log(h, "trigger", "pg__metadata", 1);
	h_spin(h, 30);
	h->fake.down = false;
	id2 = h_submit_pg(h, NULL, true);
	h_wait_log(h, "fail_run", "pg__metadata", 1);
	h_spin(h, 30);
	/* Not there: kept, to look at again. */
	assert_int_equal(halts_count(h), 1);
	rid = ap_xprintf("autopilot__%s__metadata__1", id);
	assert_null(fake_run(&h->fake, rid));
	/* The trigger arrives late. */
	r = fake_run_new(&h->fake, "pg__metadata", rid);
	for (i = 0; i < 200 && !r->failed_by_us; i++)
		h_spin(h, 20);
	assert_true(r->failed_by_us);
	for (i = 0; i < 100 && halts_count(h) > 0; i++)
		h_spin(h, 10);	/* its end committed */
	assert_int_equal(halts_count(h), 0);
	/* One found in the store, never tried and made lately (handed over
	 * by a process that stopped before Airflow answered): looked at
	 * again too. One made long ago: forgotten at its first look. */
	assert_int_equal(store_halt_add(h->store, id, "pg__metadata", "never",
	    "a test", 0, &cause), STORE_OK);
	i = log_count(h, "get_run", "pg__metadata");
	h_wait_log(h, "get_run", "pg__metadata", i + 1);
	h_spin(h, 30);
	assert_int_equal(halts_count(h), 1);
	for (i = 0; i < 200 && halts_count(h) > 0; i++)
		h_spin(h, 20);
	assert_int_equal(halts_count(h), 0);
	assert_int_equal(store_halt_add(h->store, id, "pg__metadata", "long-ago",
	    "a test", 0, &cause), STORE_OK);
	h_sql(h, "UPDATE halts SET created_at = 0");
	i = log_count(h, "get_run", "pg__metadata");
	h_wait_log(h, "get_run", "pg__metadata", i + 1);
	for (i = 0; i < 100 && halts_count(h) > 0; i++)
		h_spin(h, 10);
	assert_int_equal(halts_count(h), 0);
	assert_int_equal(log_count(h, "fail_run", "pg__metadata"), 2);
	free(rid);
	free(id);
	free(id2);
	h_free(h);
}

/*
 * A request Airflow has not answered for slow_note_ms is noted on its agent
 * while the client goes on trying; the answer clears the note.
 */
static void
test_slow_request_noted(void **state)
{
	struct h *h = h_new();
	char *id;

	h->cfg.slow_note_ms = 200;	/* looked at every 33 ms */
	h->fake.slow_next = 1;		/* metadata's deploy */
	h->fake.slow_ms = 900;
	h_start(h);
	id = h_submit(h, "pg", "{\"no_run\": [\"lineage\", \"usage\","
	    " \"profiler\"]}");
	h_spin(h, 600);
	h_check_note(h, id, "deploying", "Airflow unreachable during deploy (no"
	    " answer since 20");
	h_wait_log(h, "unpause", "pg__metadata", 1);
	h_check_note(h, id, NULL, NULL);
	h_wait_finals(h, 1, 10000);
	assert_string_equal(h->final_state[0], "succeeded");
	free(id);
	h_free(h);
}

/*
 * An Airflow that never answers the PATCH past the deadline: its tries end
 * with the late budget (each try at its bound, as the client ends it), not
 * after four of them, and the agent ends timed out, saying so.
 */
static void
test_timeout_patch_unanswered_bounded(void **state)
{
	struct h *h = h_new();
	uint64_t t0;
	int64_t lim;
	char *id;
	json_t *st;

	h->cfg.late_budget_ms = 400;
	h->fake.fail_run_unanswered = true;
	h->fake.beh[0].outcome = OUT_HANG;
	h_start(h);
	t0 = ap_mono_ms();
	id = h_submit(h, "pg", "{\"timeout_ms\": 300}");
	h_wait_finals(h, 1, 10000);
	st = h_status(h, id);
	assert_string_equal(agent_state(st, "metadata"), "timed_out");
	assert_non_null(strstr(agent_error(st, "metadata"), "did not succeed: Out of"
	    " time"));
	assert_int_equal(log_count(h, "fail_run", "pg__metadata"), 1);
	lim = h->fake.log[log_last(h, "fail_run", "pg__metadata")].limit_ms;
	assert_true(lim > 300 && lim <= 400);
	/* The timeout, the last look, the PATCH's budget, and some slack. */
	assert_true(ap_mono_ms() - t0 < 300 + 400 + 1500);
	json_decref(st);
	free(id);
	h_free(h);
}

/*
 * Airflow down from just after the unpause until past the deadline: the
 * trigger never reached it. The last look finds no run (404): the agent
 * timed out before its DAG ran; nothing was lost.
 */
static void
test_trigger_never_sent_times_out(void **state)
{
	struct h *h = h_new();
	char *id;
	json_t *st;

	h_start(h);
	id = h_submit(h, "pg", "{\"timeout_ms\": 300, \"no_run\": [\"lineage\","
	    " \"usage\", \"profiler\"]}");
	while (log_count(h, "unpause", "pg__metadata") == 0)
		event_base_loop(h->base, EVLOOP_ONCE);
	h->fake.down = true;
	while (log_count(h, "get_run", "pg__metadata") == 0)
		event_base_loop(h->base, EVLOOP_ONCE);
	h->fake.down = false;
	h_wait_finals(h, 1, 10000);
	st = h_status(h, id);
	assert_string_equal(agent_state(st, "metadata"), "timed_out");
	assert_non_null(strstr(agent_error(st, "metadata"), "before the DAG ran"));
	assert_null(strstr(agent_error(st, "metadata"), "disappeared"));
	/* What the agent showed until then is not hidden by the timeout. */
	assert_non_null(strstr(agent_error(st, "metadata"), "; until then: Airflow"
	    " unreachable during "));
	assert_int_equal(h->fake.nruns, 0);
	json_decref(st);
	free(id);
	h_free(h);
}

/* A trigger answered 2xx with an unreadable body created its run: the run
 * is read by its dag_run_id and adopted, no second attempt. When the
 * request did not reach Airflow after all (404), the attempt failed, and
 * the next one triggers with the same dag_run_id. */
static void
test_trigger_bad_reply_adopts(void **state)
{
	struct h *h = h_new();
	char *id;
	json_t *st;
	int late, triggers;

	h->fake.beh[0].running_polls = 2;
	h->fake.trigger_bad_reply = 1;
	h_start(h);
	id = h_submit(h, "pg", NULL);
	h_wait_finals(h, 1, 10000);
	assert_string_equal(h->final_state[0], "succeeded");
	st = h_status(h, id);
	assert_int_equal(agent_attempts(st, "metadata"), 1);
	assert_int_equal(log_count(h, "trigger", "pg__metadata"), 1);
	assert_int_equal(h->fake.runs[0].created, 1);
	assert_int_equal(h->fake.nruns, 4);	/* one per agent */
	json_decref(st);
	free(id);

	/* The second attempt triggers with the first one's dag_run_id: when
	 * the first trigger reaches Airflow only after the look found no run
	 * (a proxy held it), the second meets its run and adopts it rather
	 * than start another. */
	for (late = 0; late < 2; late++) {
		triggers = log_count(h, "trigger", "pg__metadata");
		if (late)
			h->fake.trigger_bad_reply_late = 1;
		else
			h->fake.trigger_bad_reply_unsent = 1;
		id = h_submit(h, "pg", "{\"retries\": 1}");
		h_wait_finals(h, 2 + late, 10000);
		assert_string_equal(h->final_state[1 + late], "succeeded");
		st = h_status(h, id);
		assert_int_equal(agent_attempts(st, "metadata"), 2);
		assert_int_equal(log_count(h, "trigger", "pg__metadata") - triggers,
		    2);
		assert_non_null(attempt_run(h, id, "metadata", 1));
		assert_int_equal(attempt_run(h, id, "metadata", 1)->created, 1);
		assert_int_equal(attempt_run(h, id, "metadata", 1)->adopted, late);
		assert_null(attempt_run(h, id, "metadata", 2));
		json_decref(st);
		free(id);
	}

	/* The run cannot be read (403) when adopted: it may exist, so it is
	 * looked at again, not triggered a second time. */
	h->fake.trigger_bad_reply = 1;
	h->fake.get_run_forbidden = 2;
	id = h_submit(h, "pg", "{\"retries\": 1}");
	h_wait_finals(h, 4, 10000);
	assert_string_equal(h->final_state[3], "succeeded");
	st = h_status(h, id);
	assert_int_equal(agent_attempts(st, "metadata"), 1);
	assert_int_equal(h->fake.get_run_forbidden, 0);
	json_decref(st);
	free(id);
	h_free(h);
}

/* A trigger sent again and refused for its credentials (a login refused
 * meanwhile) says nothing of the send before it, which may have started
 * the run: the run is looked up by its dag_run_id and followed, not left
 * running unwatched while the agent fails. */
static void
test_trigger_resend_refused_looks_up(void **state)
{
	struct h *h = h_new();
	char *id;
	json_t *st;
	int triggers, gets;

	(void)state;
	h->fake.beh[0].running_polls = 2;
	h_start(h);
	/* The agent's own second send (the first unanswered), and the
	 * client's (attempts 2): each adopts the run of the first. */
	for (int client = 0; client < 2; client++) {
		triggers = log_count(h, "trigger", "pg__metadata");
		if (client) {
			h->fake.trigger_refused = 1;
			h->fake.trigger_refused_resent = true;
		} else {
			h->fake.trigger_lost_answer = 1;
			h->fake.trigger_refused = 1;
		}
		id = h_submit(h, "pg", "{\"retries\": 0}");
		h_wait_finals(h, 1 + client, 10000);
		assert_string_equal(h->final_state[client], "succeeded");
		st = h_status(h, id);
		assert_int_equal(agent_attempts(st, "metadata"), 1);
		assert_string_equal(agent_state(st, "metadata"), "succeeded");
		assert_int_equal(log_count(h, "trigger", "pg__metadata") - triggers,
		    client ? 1 : 2);
		assert_non_null(attempt_run(h, id, "metadata", 1));
		assert_int_equal(attempt_run(h, id, "metadata", 1)->created, 1);
		json_decref(st);
		free(id);
	}
	h->fake.trigger_refused_resent = false;

	/* A first send refused: nothing before it, nothing to look up. */
	gets = log_count(h, "get_run", "pg__metadata");
	h->fake.trigger_refused = 1;
	id = h_submit(h, "pg", "{\"retries\": 0}");
	h_wait_finals(h, 3, 10000);
	assert_string_equal(h->final_state[2], "failed");
	assert_int_equal(log_count(h, "get_run", "pg__metadata"), gets);
	assert_null(attempt_run(h, id, "metadata", 1));
	free(id);

	/* Sent again and refused, and Airflow has no run after all: the
	 * attempt fails naming the refusal, and the next one triggers with
	 * the same dag_run_id (a late first send would meet it). */
	gets = log_count(h, "get_run", "pg__metadata");
	h->fake.trigger_lost_answer = 1;
	h->fake.trigger_lost_unsent = true;
	h->fake.trigger_refused = 1;
	id = h_submit(h, "pg", "{\"retries\": 1}");
	h_wait_finals(h, 4, 10000);
	assert_string_equal(h->final_state[3], "succeeded");
	st = h_status(h, id);
	assert_int_equal(agent_attempts(st, "metadata"), 2);
	assert_true(log_count(h, "get_run", "pg__metadata") > gets);
	assert_non_null(attempt_run(h, id, "metadata", 1));
	assert_null(attempt_run(h, id, "metadata", 2));
	json_decref(st);
	free(id);
	h_free(h);
}

/* An unreadable answer to a poll says nothing of the run, which goes on in
 * Airflow: the scheduler looks again, and the run's success stands; no
 * second attempt is started beside it. */
static void
test_get_run_bad_reply_polls_again(void **state)
{
	struct h *h = h_new();
	char *id;
	json_t *st;

	(void)state;
	h->fake.beh[0].running_polls = 4;
	h_start(h);
	id = h_submit(h, "pg", "{\"retries\": 1}");
	/* Running (the first poll said so), then two answers that cannot be
	 * read (the second poll's answer is decided already): noted while
	 * they last, gone once one can be read again. */
	h_wait_log(h, "get_run", "pg__metadata", 2);
	h->fake.get_run_bad_reply = 2;
	h_wait_log(h, "get_run", "pg__metadata", 5);
	h_check_note(h, id, "running", "(looking again)");
	h_wait_log(h, "get_run", "pg__metadata", 6);
	h_check_note(h, id, "running", NULL);
	h_wait_finals(h, 1, 10000);
	assert_string_equal(h->final_state[0], "succeeded");
	st = h_status(h, id);
	assert_int_equal(agent_attempts(st, "metadata"), 1);
	assert_int_equal(log_count(h, "trigger", "pg__metadata"), 1);
	assert_int_equal(log_count(h, "fail_run", "pg__metadata"), 0);
	assert_int_equal(h->fake.get_run_bad_reply, 0);
	json_decref(st);
	free(id);
	h_free(h);
}

/* A run state this client does not know is polled on (the run may still
 * end), and the agent's status says what Airflow reported meanwhile. */
static void
test_unknown_run_state_noted(void **state)
{
	struct h *h = h_new();
	char *id;
	json_t *st;

	(void)state;
	h->fake.beh[0].unknown_polls = 3;
	h->fake.beh[0].running_polls = 3;
	h_start(h);
	id = h_submit(h, "pg", "{}");
	h_wait_log(h, "get_run", "pg__metadata", 3);
	h_check_note(h, id, NULL, "in state 'upstream_failed'");
	/* Running again: the note goes. */
	h_wait_log(h, "get_run", "pg__metadata", 5);
	h_check_note(h, id, "running", NULL);
	h_wait_finals(h, 1, 10000);
	assert_string_equal(h->final_state[0], "succeeded");
	st = h_status(h, id);
	assert_string_equal(agent_state(st, "metadata"), "succeeded");
	assert_int_equal(agent_attempts(st, "metadata"), 1);
	json_decref(st);
	free(id);
	h_free(h);
}

/* Starts a run of "pg" (a 400 ms timeout), and once its metadata agent runs
 * in Airflow, "crashes" for 600 ms, past the deadline; its run id. */
static char *
h_down_while_running(struct h *h)
{
	char *id;

	h_short_lease(h);
	h_start(h);
	id = h_submit(h, "pg", "{\"timeout_ms\": 400}");
	while (log_count(h, "trigger", "pg__metadata") == 0)
		event_base_loop(h->base, EVLOOP_ONCE);
	h_spin(h, 20);
	h_assert_agent_state(h, id, "metadata", "running");
	h_crash(h, 600000);
	return id;
}

/* The process was down while the Airflow run succeeded and the deadline
 * passed: on resume the run is looked at, and its success stands. */
static void
test_resume_after_deadline_keeps_success(void **state)
{
	struct h *h = h_new();
	char *id;
	json_t *st;

	h->fake.beh[0].duration_ms = 100;
	/* Down past the deadline while the Airflow run succeeds. */
	id = h_down_while_running(h);
	h->fake.nlog = 0;
	h_start(h);
	h_wait_finals(h, 1, 10000);
	assert_string_equal(h->final_state[0], "succeeded");
	st = h_status(h, id);
	assert_string_equal(agent_state(st, "metadata"), "succeeded");
	assert_int_equal(log_count(h, "fail_run", NULL), 0);
	assert_int_equal(log_count(h, "get_run", "pg__metadata"), 1);
	assert_false(h->fake.runs[0].failed_by_us);
	json_decref(st);
	free(id);
	h_free(h);
}

/* The parse deadline is stored with the state: restarts within it do not
 * push it back (a serve restarting in a loop would wait for ever). */
static void
test_parse_deadline_kept_across_restarts(void **state)
{
	struct h *h = h_new();
	char *id;
	json_t *st;
	int restarts;

	h_short_lease(h);
	h->cfg.dag_parse_deadline_s = 1;
	h->fake.beh[0].parse_404 = 1000000;
	h_start(h);
	id = h_submit(h, "pg", NULL);
	h_wait_log(h, "unpause", "pg__metadata", 1);
	/* Up 300 ms, down 250 ms (the lease runs out), six times: 3.3 s. */
	for (restarts = 0; restarts < 6 && h->finals == 0; restarts++) {
		h_spin(h, 300);
		if (h->finals > 0)
			break;
		h_crash(h, 250000);
		h_start(h);
	}
	h_spin(h, 50);
	assert_int_equal(h->finals, 1);
	assert_true(restarts <= 3);
	st = h_status(h, id);
	assert_string_equal(agent_state(st, "metadata"), "failed");
	assert_non_null(strstr(agent_error(st, "metadata"), "not parsed"));
	json_decref(st);
	free(id);
	h_free(h);
}

/* An agent resumed while waiting for a DAG that never imports looks for
 * its import errors from the resume on (Airflow stamps them again at each
 * parse), and fails with the trace, not at the parse deadline. */
static void
test_never_imported_resumed(void **state)
{
	struct h *h = h_new();
	char *id;
	json_t *st;

	h_short_lease(h);
	h->fake.beh[0].import_error = "Traceback: resumed";
	h->fake.beh[0].never_imported = true;
	h_start(h);
	id = h_submit(h, "pg", "{\"retries\": 2}");
	h_wait_log(h, "unpause", "pg__metadata", 1);
	h_crash(h, 250000);
	h_start(h);
	h_wait_finals(h, 1, 10000);
	st = h_status(h, id);
	assert_string_equal(agent_state(st, "metadata"), "failed");
	assert_non_null(strstr(agent_error(st, "metadata"), "Traceback: resumed"));
	assert_int_equal(log_count(h, "deploy", "pg__metadata"), 1);
	json_decref(st);
	free(id);
	h_free(h);
}

/* A run seen running before a restart and gone (404) when looked at past
 * the deadline is lost, not "timed out before the DAG ran". */
static void
test_resume_past_deadline_gone_is_lost(void **state)
{
	struct h *h = h_new();
	char *id;

	h->fake.beh[0].outcome = OUT_HANG;
	id = h_down_while_running(h);
	h->fake.runs[0].gone = true;
	h_start(h);
	h_wait_finals(h, 1, 10000);
	h_assert_agent_state(h, id, "metadata", "lost");
	free(id);
	h_free(h);
}

static void
test_lost_run(void **state)
{
	struct h *h = h_new();
	char *id;
	json_t *st;

	h->fake.beh[2].outcome = OUT_LOST;
	h->fake.beh[2].running_polls = 2;
	h_start(h);
	id = h_submit(h, "pg", NULL);
	h_wait_finals(h, 1, 10000);
	st = h_status(h, id);
	assert_string_equal(agent_state(st, "usage"), "lost");
	assert_non_null(strstr(agent_error(st, "usage"), "disappeared"));
	assert_string_equal(agent_state(st, "profiler"), "skipped");
	assert_string_equal(agent_state(st, "lineage"), "succeeded");
	json_decref(st);
	free(id);
	h_free(h);
}

static void
check_unreachable_note(evutil_socket_t fd, short what, void *arg)
{
	struct h *h = arg;
	json_t *list = NULL;
	char *cause = NULL, *s;

	assert_int_equal(store_runs_json(h->store, NULL, 0, &list, &cause), STORE_OK);
	s = json_dumps(list, 0);
	if (strstr(s, "Airflow unreachable") != NULL)
		h->saw_unreachable_note = true;
	free(s);
	json_decref(list);
	h->fake.down = false;
}

static void
test_unreachable_then_recovered(void **state)
{
	struct h *h = h_new();
	char *id;
	json_t *st;
	struct timeval tv = { 0, 300000 };
	struct event *ev;

	h->fake.beh[0].running_polls = 50;
	h_start(h);
	id = h_submit(h, "pg", NULL);
	h_spin(h, 30);
	h->fake.down = true;
	ev = evtimer_new(h->base, check_unreachable_note, h);
	evtimer_add(ev, &tv);
	h_wait_finals(h, 1, 15000);
	event_free(ev);
	/* While down, status said so; afterwards everything completed. */
	assert_true(h->saw_unreachable_note);
	assert_string_equal(h->final_state[0], "succeeded");
	st = h_status(h, id);
	assert_true(json_is_null(json_object_get(status_agent(st, "metadata"), "error")));
	json_decref(st);
	free(id);
	h_free(h);
}

static void
test_retries_use_new_dag_run_ids(void **state)
{
	struct h *h = h_new();
	char *id, *rid1;
	json_t *st;
	int i, n = 0;

	h->fake.beh[0].failing_attempts = 1;
	h_start(h);
	id = h_submit(h, "pg", "{\"retries\": 2}");
	h_wait_finals(h, 1, 10000);
	assert_string_equal(h->final_state[0], "succeeded");
	st = h_status(h, id);
	assert_int_equal(agent_attempts(st, "metadata"), 2);
	rid1 = ap_xprintf("autopilot__%s__metadata__1", id);
	for (i = 0; i < h->fake.nruns; i++) {
		if (strstr(h->fake.runs[i].dag_id, "metadata") != NULL)
			n++;
	}
	assert_int_equal(n, 2);
	assert_non_null(fake_run(&h->fake, rid1));
	assert_string_not_equal(json_string_value(json_object_get(status_agent(st,
	    "metadata"), "dag_run_id")), rid1);
	assert_int_equal(agent_attempts(st, "lineage"), 1);
	json_decref(st);
	free(rid1);
	free(id);
	h_free(h);
}

static void
test_rerun_refused_replace_and_repeat(void **state)
{
	struct h *h = h_new();
	json_t *e = json_pack("{s:s}", "name", "pg");
	char *id1, *id2 = NULL, *id3 = NULL, *cause = NULL;
	json_t *st;

	h->fake.beh[0].running_polls = 1000000;
	h_start(h);
	id1 = h_submit(h, "pg", NULL);
	h_spin(h, 50);
	assert_int_equal(sched_submit(h->sched, "databaseService", "pg", e, NULL, false,
	    NULL, &id2, &cause), STORE_ACTIVE);
	assert_string_equal(id2, id1);
	assert_non_null(strstr(cause, "already has an active run"));
	free(cause);
	free(id2);
	cause = NULL;
	assert_int_equal(sched_submit(h->sched, "databaseService", "pg", e, NULL, true,
	    NULL, &id2, &cause), STORE_OK);
	assert_string_not_equal(id1, id2);
	assert_false(sched_driving(h->sched, id1));
	/* The old run's metadata, running in Airflow, is marked failed there. */
	h_spin(h, 50);
	assert_int_equal(sched_halts_pending(h->sched), 0);
	{
		int i = log_first(h, "fail_run", "pg__metadata");

		assert_true(i >= 0);
		assert_non_null(strstr(h->fake.log[i].run_id, id1));
		/* Bounded in time as a timed-out attempt's PATCH is. */
		assert_true(h->fake.log[i].limited);
		assert_int_equal(h->fake.log[i].limit_ms, 30000);
	}
	h->fake.beh[0].running_polls = 1;
	h_wait_finals(h, 1, 10000);
	assert_string_equal(h->final_run[0], id2);
	st = h_status(h, id1);
	assert_string_equal(json_string_value(json_object_get(st, "state")), "failed");
	assert_non_null(strstr(json_string_value(json_object_get(st, "error")),
	    "replaced"));
	assert_string_not_equal(agent_state(st, "metadata"), "running");
	json_decref(st);
	/* A finished service runs again: new run id, new dag_run_ids, same DAGs. */
	assert_int_equal(sched_submit(h->sched, "databaseService", "pg", e, NULL, false,
	    NULL, &id3, &cause), STORE_OK);
	h_wait_finals(h, 2, 10000);
	assert_string_equal(h->final_state[1], "succeeded");
	st = h_status(h, id3);
	assert_string_equal(json_string_value(json_object_get(status_agent(st,
	    "profiler"), "dag_id")), "pg__profiler");
	assert_non_null(strstr(json_string_value(json_object_get(status_agent(st,
	    "profiler"), "dag_run_id")), id3));
	json_decref(st);
	assert_int_equal(log_count(h, "deploy", "pg__profiler"), 2);
	json_decref(e);
	free(id1);
	free(id2);
	free(id3);
	h_free(h);
}

static void
test_cap_and_round_robin(void **state)
{
	struct h *h = h_new();
	char *ids[3];
	int i;

	h->cfg.max_agents_in_flight = 1;
	h_start(h);
	ids[0] = h_submit(h, "a", NULL);
	ids[1] = h_submit(h, "b", NULL);
	ids[2] = h_submit(h, "c", NULL);
	h_wait_finals(h, 3, 20000);
	assert_int_equal(h->max_in_flight, 1);
	assert_int_equal(h->fake.max_in_air, 1);
	/* Round robin: every service's metadata before a's second agent. */
	assert_true(log_first(h, "deploy", "c__metadata") <
	    log_first(h, "deploy", "a__lineage"));
	assert_true(log_first(h, "deploy", "b__metadata") <
	    log_first(h, "deploy", "c__metadata"));
	for (i = 0; i < 3; i++) {
		assert_string_equal(h->final_state[i], "succeeded");
		free(ids[i]);
	}
	h_free(h);
}

/* A burst beyond what the slots can use waits for admission as ids: it is
 * neither planned nor held in memory until slots free up, and it is taken
 * oldest first; a stop leaves the waiting runs pending for the next start. */
static void
test_admission(void **state)
{
	struct h *h = h_new();
	char *ids[40], name[16], prev[32], cur[32];
	json_t *st;
	int i, before;

	h->cfg.max_agents_in_flight = 1;
	h_start(h);
	for (i = 0; i < 40; i++) {
		snprintf(name, sizeof name, "s%02d", i);
		ids[i] = h_submit(h, name, NULL);
	}
	/* Sixteen (the minimum look-ahead) planned, the rest waiting. */
	assert_int_equal(sched_active_runs(h->sched), 16);
	assert_int_equal(sched_runs_waiting(h->sched), 24);
	assert_false(sched_driving(h->sched, ids[39]));
	st = h_status(h, ids[39]);
	assert_string_equal(json_string_value(json_object_get(st, "state")), "pending");
	json_decref(st);

	/* Stop with runs waiting; a new scheduler on the database finds them. */
	h_wait_finals(h, 2, 20000);
	before = h->finals;
	sched_stop(h->sched);
	sched_free(h->sched);
	h_start(h);
	assert_true(sched_active_runs(h->sched) <= 17);	/* + one resumed in flight */
	assert_true(sched_runs_waiting(h->sched) > 0);
	h_wait_finals(h, 40, 60000);
	assert_true(h->finals >= before);
	assert_true(h->max_runs <= 17);
	assert_int_equal(h->max_in_flight, 1);
	for (i = 0; i < 40; i++) {
		st = h_status(h, ids[i]);
		assert_string_equal(json_string_value(json_object_get(st, "state")),
		    "succeeded");
		json_decref(st);
	}
	/* Oldest first: each service's metadata deployed after the one before. */
	for (i = 1; i < 40; i++) {
		snprintf(prev, sizeof prev, "s%02d__metadata", i - 1);
		snprintf(cur, sizeof cur, "s%02d__metadata", i);
		assert_true(log_first(h, "deploy", prev) < log_first(h, "deploy", cur));
	}
	for (i = 0; i < 40; i++)
		free(ids[i]);
	h_free(h);
}

static void
test_planning_failure_fails_run(void **state)
{
	struct h *h = h_new();
	char *id;
	json_t *st;

	h_start(h);
	id = h_submit(h, "pg", "{\"unplannable\": true}");
	h_wait_finals(h, 1, 5000);
	st = h_status(h, id);
	assert_string_equal(json_string_value(json_object_get(st, "state")), "failed");
	assert_non_null(strstr(json_string_value(json_object_get(st, "error")),
	    "no agent applies"));
	json_decref(st);
	free(id);
	h_free(h);
}

/* A crash after the trigger was sent but before its answer: once the dead
 * process's lease expires, a restarted scheduler claims the run, repeats the
 * trigger with the same dag_run_id and adopts the existing Airflow run. */
static void
test_crash_recovery_adopts(void **state)
{
	struct h *h = h_new();
	char *id, *cause = NULL, *rid;
	json_t *st;
	int i;

	h_short_lease(h);
	h->fake.beh[1].running_polls = 3;
	h_start(h);
	id = h_submit(h, "pg", NULL);
	while (log_count(h, "trigger", "pg__lineage") == 0)
		event_base_loop(h->base, EVLOOP_ONCE);
	h_crash(h, 0);
	/* The lease still holds: nobody else may drive the run yet. */
	assert_int_equal(store_claim(h->store, id, &cause), STORE_LOST);
	usleep(300000);
	h_start(h);
	assert_true(sched_driving(h->sched, id));
	h_wait_finals(h, 1, 10000);
	assert_string_equal(h->final_state[0], "succeeded");
	rid = ap_xprintf("autopilot__%s__lineage__1", id);
	assert_non_null(fake_run(&h->fake, rid));
	assert_int_equal(fake_run(&h->fake, rid)->adopted, 1);
	/* No Airflow run was ever created twice. */
	for (i = 0; i < h->fake.nruns; i++)
		assert_int_equal(h->fake.runs[i].created, 1);
	assert_int_equal(h->fake.nruns, 4);
	st = h_status(h, id);
	assert_string_equal(agent_state(st, "lineage"), "succeeded");
	assert_int_equal(agent_attempts(st, "lineage"), 1);
	json_decref(st);
	free(rid);
	free(id);
	h_free(h);
}

/* A run of pg as this process left it: claimed, running, with the agent
 * rows given (NULL-terminated). Its id. */
static char *
h_stored_run(struct h *h, struct store_agent_row **rows)
{
	char *id = NULL, *cause = NULL;

	assert_int_equal(store_run_create(h->store, "databaseService", "pg",
	    "{\"name\":\"pg\"}", NULL, false, &id, &cause), STORE_OK);
	assert_int_equal(store_claim(h->store, id, &cause), STORE_OK);
	assert_int_equal(store_run_set_state(h->store, id, "running", NULL, false, &cause),
	    STORE_OK);
	for (; *rows != NULL; rows++)
		assert_int_equal(store_agent_save(h->store, id, *rows, &cause), STORE_OK);
	return id;
}

static void
test_incomplete_row_fails_instead_of_guessing(void **state)
{
	struct h *h = h_new();
	struct store_agent_row row = { .agent = "metadata", .state = "queued",
	    .dag_id = "pg__metadata", .attempt = 1, .started_at = 1 };
	struct store_agent_row *rows[] = { &row, NULL };
	char *id = h_stored_run(h, rows);
	json_t *st;

	h_start(h);
	h_wait_finals(h, 1, 5000);
	assert_string_equal(h->final_state[0], "failed");
	st = h_status(h, id);
	assert_string_equal(agent_state(st, "metadata"), "failed");
	assert_non_null(strstr(agent_error(st, "metadata"), "incomplete"));
	assert_string_equal(agent_state(st, "lineage"), "skipped");
	assert_int_equal(h->fake.nlog, 0);
	json_decref(st);
	free(id);
	h_free(h);
}

/*
 * Agents stored for a run but no longer in the plan (the configuration
 * changed while it was unfinished) end at once: one with an Airflow run
 * failed, and that run marked failed in Airflow; one without, skipped. The
 * run goes on with its plan's agents.
 */
static void
test_agent_gone_from_plan_ends(void **state)
{
	struct h *h = h_new();
	struct store_agent_row gone = { .agent = "classify", .state = "running",
	    .dag_id = "pg__classify", .attempt = 1, .started_at = 1 };
	struct store_agent_row early = { .agent = "old", .state = "deploying",
	    .attempt = 1, .started_at = 1 };
	struct store_agent_row *rows[] = { &early, NULL };
	char *id = h_stored_run(h, rows), *cause = NULL, drid[96], want[160];
	json_t *st;

	snprintf(drid, sizeof drid, "autopilot__%s__classify__1", id);
	gone.dag_run_id = drid;
	assert_int_equal(store_agent_save(h->store, id, &gone, &cause), STORE_OK);

	/* The failed row is on disk before Airflow is asked to fail the run. */
	verify_store = store_open(h->db, NULL, &cause);
	assert_non_null(verify_store);
	verify_halts = true;
	h_start(h);
	h_wait_finals(h, 1, 10000);
	assert_string_equal(h->final_state[0], "succeeded");
	h_wait_log(h, "fail_run", "pg__classify", 1);
	verify_halts = false;
	store_close(verify_store);
	verify_store = NULL;
	st = h_status(h, id);
	assert_string_equal(agent_state(st, "classify"), "failed");
	assert_non_null(strstr(agent_error(st, "classify"), "no longer in the plan"));
	snprintf(want, sizeof want, "its Airflow run is to be marked failed: %s", drid);
	assert_non_null(strstr(agent_error(st, "classify"), want));
	assert_string_equal(agent_state(st, "old"), "skipped");
	assert_non_null(strstr(agent_error(st, "old"), "no longer in the plan"));
	assert_string_equal(agent_state(st, "profiler"), "succeeded");
	assert_int_equal(log_count(h, "fail_run", NULL), 1);
	json_decref(st);
	free(id);
	h_free(h);
}

/* Group commit never lets Airflow hear of an attempt before it is durable. */
static void
test_committed_before_trigger(void **state)
{
	struct h *h = h_new();
	char *cause = NULL, *ids[6];
	int i;

	verify_store = store_open(h->db, NULL, &cause);
	assert_non_null(verify_store);
	verified_triggers = 0;
	h->fake.beh[0].paused = true;
	h_start(h);
	for (i = 0; i < 6; i++) {
		char name[16];

		snprintf(name, sizeof name, "s%d", i);
		ids[i] = h_submit(h, name, NULL);
	}
	h_wait_finals(h, 6, 20000);
	assert_int_equal(verified_triggers, 24);
	/* Each trigger and each deploy (ahead or in its turn: one an agent)
	 * carried the ownership guard for the client's retries. */
	assert_int_equal(h->fake.guards_yes, 24 + 24);
	assert_int_equal(log_count(h, "deploy", NULL), 24);
	store_close(verify_store);
	verify_store = NULL;
	for (i = 0; i < 6; i++)
		free(ids[i]);
	h_free(h);
}

/*
 * The group-commit batch is shared: when a commit of it made elsewhere in
 * the process fails (here a status read, on a full disk, just after the
 * metadata agent was queued), the scheduler's changes in it are gone too.
 * The scheduler must not trigger on them (every trigger checks that its
 * queued state was committed): it drops its runs, takes them back from the
 * store and finishes them.
 */
static void
test_shared_commit_failure(void **state)
{
	struct h *h = h_new();
	char *cause = NULL, *id;

	verify_store = store_open(h->db, NULL, &cause);
	assert_non_null(verify_store);
	verified_triggers = 0;
	h->sabotage = 1;
	h_start(h);
	id = h_submit(h, "s", NULL);
	h_wait_finals(h, 1, 20000);
	assert_int_equal(h->sabotage, 2);
	assert_string_equal(h->final_state[0], "succeeded");
	assert_int_equal(verified_triggers, 4);
	h_assert_agent_state(h, id, "metadata", "succeeded");
	store_close(verify_store);
	verify_store = NULL;
	free(id);
	h_free(h);
}

static void
test_agents_restriction(void **state)
{
	struct h *h = h_new();
	json_t *st;
	const char *only[] = { "profiler", "usage", NULL }, *none[] = { "bogus", NULL };
	char *id, *id2;

	h_start(h);
	id = h_submit_agents(h, only);
	h_wait_finals(h, 1, 10000);
	assert_string_equal(h->final_state[0], "succeeded");
	st = h_status(h, id);
	assert_int_equal(json_array_size(json_object_get(st, "agents")), 2);
	assert_string_equal(agent_state(st, "usage"), "succeeded");
	assert_int_equal(log_count(h, "deploy", "pg__metadata"), 0);
	/* profiler still waited for usage, the one prerequisite left in the run. */
	assert_true(deployed_after(h, "pg__profiler", "pg__usage"));
	json_decref(st);
	id2 = h_submit_agents(h, none);
	h_wait_finals(h, 2, 10000);
	assert_string_equal(h->final_state[1], "failed");
	st = h_status(h, id2);
	assert_non_null(strstr(json_string_value(json_object_get(st, "error")),
	    "none of the requested agents"));
	json_decref(st);
	free(id);
	free(id2);
	h_free(h);
}

/* A run restricted to metadata and profiler: profiler's prerequisite usage
 * is left out, so it waits for usage's own, metadata (as when usage is
 * disabled), and is skipped when metadata fails. */
static void
test_agents_restriction_bridges_left_out(void **state)
{
	struct h *h = h_new();
	json_t *st;
	const char *only[] = { "metadata", "profiler", NULL };
	char *id, *id2;

	h->fake.beh[0].running_polls = 3;
	h->fake.beh[0].outcome = OUT_FAILED;
	h_start(h);
	id = h_submit_agents(h, only);
	h_wait_finals(h, 1, 10000);
	assert_string_equal(h->final_state[0], "failed");
	st = h_status(h, id);
	assert_string_equal(agent_state(st, "metadata"), "failed");
	assert_string_equal(agent_state(st, "profiler"), "skipped");
	assert_string_equal(agent_error(st, "profiler"), "prerequisite metadata failed");
	assert_int_equal(log_count(h, "deploy", "pg__profiler"), 0);
	json_decref(st);

	h->fake.beh[0].outcome = OUT_SUCCESS;
	id2 = h_submit_agents(h, only);
	h_wait_finals(h, 2, 10000);
	assert_string_equal(h->final_state[1], "succeeded");
	assert_int_equal(log_count(h, "deploy", "pg__profiler"), 1);
	assert_true(deployed_after(h, "pg__profiler", "pg__metadata"));
	assert_int_equal(log_count(h, "deploy", "pg__usage"), 0);
	free(id);
	free(id2);
	h_free(h);
}

/* Another process (a store handle and a scheduler of its own) replaces
 * pg's run with one of e: *id2 its id. */
static void
h_replace_elsewhere(struct h *h, const json_t *e, char **id2)
{
	struct store *store2;
	struct sched *cli;
	char *cause = NULL;

	assert_int_equal(sched_commit(h->sched), 0);	/* one thread, two stores */
	store2 = store_open(h->db, NULL, &cause);
	assert_non_null(store2);
	cli = sched_create(h->base, store2, &fake_ops, &h->fake, &fake_planner, NULL,
	    &h->cfg);
	assert_int_equal(sched_start(cli, false, &cause), 0);
	assert_int_equal(sched_submit(cli, "databaseService", "pg", e, NULL, true, NULL,
	    id2, &cause), STORE_OK);
	sched_stop(cli);
	sched_free(cli);
	store_close(store2);
}

/*
 * The dag_run_id an attempt with no run in Airflow passes on survives a
 * restart while the next attempt waits to start: a trigger that reached
 * Airflow late is still met and adopted, not run beside a second one.
 */
static void
test_unseen_id_survives_restart(void **state)
{
	struct h *h = h_new();
	char *id;
	json_t *st;

	(void)state;
	h_short_lease(h);
	h->fake.trigger_bad_reply_late = 1;
	h_start(h);
	id = h_submit(h, "pg", "{\"retries\": 1, \"retry_backoff_ms\": 3000,"
	    " \"no_run\": [\"lineage\", \"usage\", \"profiler\"]}");
	h_wait_retry(h, id, "metadata", 1);
	h_crash(h, 0);
	usleep(300000);
	h_start(h);
	h_wait_finals(h, 1, 20000);
	assert_string_equal(h->final_state[0], "succeeded");
	st = h_status(h, id);
	assert_int_equal(agent_attempts(st, "metadata"), 2);
	assert_int_equal(attempt_run(h, id, "metadata", 1)->created, 1);
	assert_int_equal(attempt_run(h, id, "metadata", 1)->adopted, 1);
	assert_null(attempt_run(h, id, "metadata", 2));
	json_decref(st);
	free(id);
	h_free(h);
}

/*
 * A run replaced by another process while its trigger waits to be sent
 * again (Airflow did not answer it): the trigger is not sent again, so no
 * Airflow run starts that nobody follows.
 */
static void
test_replaced_trigger_not_resent(void **state)
{
	struct h *h = h_new();
	char *id, *id2 = NULL, *rid;
	json_t *e = json_pack("{s:s}", "name", "pg");

	h->cfg.poll_initial_ms = 300;	/* the trigger is tried again 300 ms later */
	h->cfg.unreachable_retry_max_ms = 300;
	h_start(h);
	id = h_submit(h, "pg", NULL);
	h_wait_log(h, "unpause", "pg__metadata", 1);
	h->fake.down = true;
	h_wait_log(h, "trigger", "pg__metadata", 1);
	h_spin(h, 30);		/* its answer seen, the note written */
	h_replace_elsewhere(h, e, &id2);
	h->fake.down = false;
	h_spin(h, 2000);
	rid = ap_xprintf("autopilot__%s__metadata__1", id);
	assert_false(sched_driving(h->sched, id));
	assert_null(fake_run(&h->fake, rid));
	/* Dropped saying what became of it, not only that it is not ours. */
	{
		char *want = ap_xprintf("the run is no longer ours: it is failed"
		    " (replaced by %s)", id2);

		assert_string_equal(h->dropped_why, want);
		free(want);
	}
	json_decref(e);
	free(rid);
	free(id);
	free(id2);
	h_free(h);
}

/*
 * A run replaced by another process while this one waits a minute for its
 * next look at Airflow: the renewal of the leases finds it gone, and it is
 * no longer driven here long before that look. With a backlog, runs this
 * process claimed wait for admission (they are renewed too, and would make
 * up for the one lost in a count): the renewal still finds it gone.
 */
static void
replaced_seen_at_renewal(bool backlog)
{
	struct h *h = h_new();
	char *id, *id2 = NULL, *other, *cause = NULL, name[16];
	json_t *e = json_pack("{s:s}", "name", "pg");
	int i;

	h_short_lease(h);	/* renewed every ~70 ms */
	h->cfg.poll_initial_ms = h->cfg.poll_max_ms = h->cfg.poll_floor_ms = 60000;
	h->fake.beh[0].running_polls = 1000000;
	if (backlog) {
		h->cfg.max_agents_in_flight = 1;  /* 16 runs admitted, the rest wait */
		assert_int_equal(store_run_create(h->store, "databaseService", "pg",
		    "{\"name\": \"pg\"}", NULL, false, &id, &cause), STORE_OK);
		for (i = 0; i < 20; i++) {
			snprintf(name, sizeof name, "s%d", i);
			assert_int_equal(store_run_create(h->store, "databaseService",
			    name, "{\"name\": \"x\"}", NULL, false, &other, &cause),
			    STORE_OK);
			free(other);
		}
		h_start(h);
		assert_int_equal(sched_runs_waiting(h->sched), 5);
	} else {
		h_start(h);
		id = h_submit(h, "pg", NULL);
	}
	h_wait_log(h, "deploy", "pg__metadata", 1);
	h_spin(h, 50);		/* the DAG looked at in a minute */
	assert_true(sched_driving(h->sched, id));
	h_replace_elsewhere(h, e, &id2);
	h_spin(h, 500);
	assert_false(sched_driving(h->sched, id));
	assert_int_equal(log_count(h, "get_dag", "pg__metadata"), 0);
	json_decref(e);
	free(id);
	free(id2);
	h_free(h);
}

static void
test_replaced_seen_at_renewal(void **state)
{
	replaced_seen_at_renewal(false);
}

static void
test_replaced_seen_behind_backlog(void **state)
{
	replaced_seen_at_renewal(true);
}

/*
 * Deploys ahead wait for a free place (predeploy_max 1); the run is replaced
 * meanwhile by another process: those still waiting are not sent, so none
 * writes the old entity's pipeline over what the new run deploys (nothing
 * was written for them that the replacement could have fenced).
 */
static void
test_replaced_predeploys_not_sent(void **state)
{
	struct h *h = h_new();
	char *id, *id2 = NULL;
	json_t *e = json_pack("{s:s}", "name", "pg");

	h->cfg.predeploy = true;
	h->cfg.predeploy_max = 1;
	h->cfg.poll_initial_ms = h->cfg.poll_max_ms = h->cfg.poll_floor_ms = 60000;
	h->fake.beh[0].running_polls = 1000000;
	h->fake.slow_next = 1000;	/* every answer takes 200 ms */
	h->fake.slow_ms = 200;
	h_start(h);
	id = h_submit(h, "pg", NULL);
	h_wait_log(h, "deploy", "pg__lineage", 1);	/* the first ahead, out */
	assert_int_equal(log_count(h, "deploy", "pg__usage"), 0);
	h_replace_elsewhere(h, e, &id2);
	h_spin(h, 800);
	assert_int_equal(log_count(h, "deploy", "pg__usage"), 0);
	assert_int_equal(log_count(h, "deploy", "pg__profiler"), 0);
	json_decref(e);
	free(id);
	free(id2);
	h_free(h);
}

/*
 * A run's end is written in a commit that fails after the run was let go:
 * on disk it is still running, this process's. The renewal of the leases
 * finds it owned but driven by none, and it is taken up again and ends
 * (without a rescan, here off).
 */
static void
test_lost_end_taken_up(void **state)
{
	static const char *const agents[] = {
		"metadata", "lineage", "usage", "profiler"
	};
	struct h *h = h_new();
	const struct sched_attempt_count *c;
	char *id;
	int i;

	h_short_lease(h);
	h->sabotage = 3;
	h_start(h);
	id = h_submit(h, "pg", NULL);
	h_wait_finals(h, 1, 10000);
	assert_int_equal(h->sabotage, 4);
	h_wait_finals(h, 2, 5000);
	assert_string_equal(h->final_run[1], id);
	assert_string_equal(h->final_state[1], "succeeded");
	h_assert_agent_state(h, id, "metadata", "succeeded");
	/* The attempt whose end was lost with the commit is counted once,
	 * when it ends again (and its end is committed). */
	h_spin(h, 20);
	for (i = 0; i < 4; i++) {
		c = h_counted(h, agents[i]);
		assert_int_equal(c->succeeded, 1);
		assert_int_equal(c->failed + c->timed_out + c->lost, 0);
	}
	free(id);
	h_free(h);
}

/* The server and a CLI re-run on one database: each run is driven by one
 * scheduler at a time; a released run is picked up by the other's rescan. */
static void
test_two_schedulers_one_database(void **state)
{
	struct h *h = h_new();
	struct store *store2;
	struct sched *cli;
	char *cause = NULL, *id = NULL;
	json_t *e = json_pack("{s:s}", "name", "pg");
	int i;

	h->cfg.rescan_ms = 50;
	h->fake.beh[0].running_polls = 1000000;
	h_start(h);	/* "server": recovers and rescans */
	store2 = store_open(h->db, NULL, &cause);
	assert_non_null(store2);
	cli = sched_create(h->base, store2, &fake_ops, &h->fake, &fake_planner, NULL,
	    &h->cfg);
	assert_int_equal(sched_start(cli, false, &cause), 0);
	assert_int_equal(sched_submit(cli, "databaseService", "pg", e, NULL, false, NULL,
	    &id, &cause), STORE_OK);
	h_spin(h, 300);
	/* The server's rescans did not take the CLI's run, nor may it take it. */
	assert_true(sched_driving(cli, id));
	assert_false(sched_driving(h->sched, id));
	assert_int_equal(sched_take(h->sched, id, &cause), -1);
	assert_non_null(strstr(cause, "another process"));
	free(cause);
	cause = NULL;
	/* Only one deploy of metadata happened: one driver. */
	assert_int_equal(log_count(h, "deploy", "pg__metadata"), 1);
	/* The CLI stops (released claim): the server resumes the run. */
	sched_stop(cli);
	h->fake.beh[0].running_polls = 2;
	h_wait_finals(h, 1, 10000);
	assert_string_equal(h->final_run[0], id);
	assert_string_equal(h->final_state[0], "succeeded");
	for (i = 0; i < h->fake.nruns; i++)
		assert_int_equal(h->fake.runs[i].created, 1);
	sched_free(cli);
	store_close(store2);
	json_decref(e);
	free(id);
	h_free(h);
}

/* An agent waiting for its DAG's parse (404s) with a 300 ms timeout: the
 * timeout ends the attempt about then, not at the next look, which the
 * parse deadline (60 s) alone would put 2 s after the first; its error
 * says what it waited for. */
static void
test_timeout_while_waiting_for_dag(void **state)
{
	struct h *h = h_new();
	char *id;
	json_t *st;
	int64_t t0, took;

	h->cfg.poll_initial_ms = 200;
	h->cfg.poll_backoff = 10;	/* the second look 2 s after the first */
	h->cfg.poll_max_ms = 3000;
	h->cfg.dag_parse_deadline_s = 60;
	h->fake.beh[0].parse_404 = 1000000;
	h_start(h);
	t0 = ap_wall_ms();
	id = h_submit(h, "pg", "{\"timeout_ms\": 300}");
	h_wait_finals(h, 1, 20000);
	took = ap_wall_ms() - t0;
	st = h_status(h, id);
	assert_string_equal(agent_state(st, "metadata"), "timed_out");
	assert_true(took < 1500);
	assert_non_null(strstr(agent_error(st, "metadata"), "before the DAG ran;"
	    " until then: Airflow had not parsed DAG "));
	json_decref(st);
	free(id);
	h_free(h);
}

/* One unreadable answer to the unpause (a proxy's, about another DAG) is
 * looked at again, as an unreadable poll of a run is, not an attempt
 * failed: the agent succeeds in its first attempt. */
static void
test_unpause_bad_reply_looks_again(void **state)
{
	struct h *h = h_new();
	char *id;
	json_t *st;

	h->fake.unpause_bad_reply = 1;
	h_start(h);
	id = h_submit(h, "pg", NULL);
	h_wait_finals(h, 1, 10000);
	st = h_status(h, id);
	assert_string_equal(agent_state(st, "metadata"), "succeeded");
	assert_int_equal(agent_attempts(st, "metadata"), 1);
	assert_null(agent_error(st, "metadata"));
	assert_int_equal(log_count(h, "unpause", "pg__metadata"), 2);
	json_decref(st);
	free(id);
	h_free(h);
}

/* Attempt 1 ends with no run in Airflow (its trigger may still land: it
 * passes its dag_run_id on); attempt 2 fails at its deploy, before any
 * trigger, and passes it on in turn; with or without a restart then,
 * attempt 3 triggers with attempt 1's id and adopts the late run. */
static void
unseen_then_deploy_fails(bool crash)
{
	struct h *h = h_new();
	char *id;
	json_t *st;
	struct fake_run *r;

	h_short_lease(h);
	h->fake.trigger_bad_reply_late = 1;
	h_start(h);
	id = h_submit(h, "pg", "{\"retries\": 2, \"retry_backoff_ms\": 300,"
	    " \"no_run\": [\"lineage\", \"usage\", \"profiler\"]}");
	h_wait_retry(h, id, "metadata", 1);
	h->fake.beh[0].deploy_500 = true;
	h_wait_retry(h, id, "metadata", 2);
	h->fake.beh[0].deploy_500 = false;
	if (crash) {
		h_crash(h, 0);
		usleep(300000);
		h_start(h);
	}
	h_wait_finals(h, 1, 20000);
	st = h_status(h, id);
	assert_string_equal(h->final_state[0], "succeeded");
	assert_int_equal(agent_attempts(st, "metadata"), 3);
	assert_null(attempt_run(h, id, "metadata", 3));
	assert_non_null((r = attempt_run(h, id, "metadata", 1)));
	assert_int_equal(r->created, 1);
	assert_int_equal(r->adopted, 1);
	if (!crash) {
		/* Each attempt is counted as it ended (the metrics). */
		const struct sched_attempt_count *c = h_counted(h, "metadata");

		assert_int_equal(c->failed, 2);
		assert_int_equal(c->succeeded, 1);
		assert_int_equal(c->timed_out + c->lost, 0);
	}
	json_decref(st);
	free(id);
	h_free(h);
}

static void
test_unseen_id_passed_on_twice(void **state)
{
	unseen_then_deploy_fails(false);
	unseen_then_deploy_fails(true);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_agent_transitions),
		cmocka_unit_test(test_run_transitions),
		cmocka_unit_test(test_config),
		cmocka_unit_test(test_default_plan_order_and_overlap),
		cmocka_unit_test(test_first_poll_learned),
		cmocka_unit_test(test_metadata_failure_skips_everything),
		cmocka_unit_test(test_usage_failure_skips_profiler_only),
		cmocka_unit_test(test_lineage_failure_blocks_nothing),
		cmocka_unit_test(test_unsupported_counts_as_success_and_deploy_only),
		cmocka_unit_test(test_import_error_and_rejected_deploy),
		cmocka_unit_test(test_import_error_of_the_file_before),
		cmocka_unit_test(test_never_imported_and_refused_unpause),
		cmocka_unit_test(test_never_imported_deployed_ahead),
		cmocka_unit_test(test_parse_deadline),
		cmocka_unit_test(test_parse_deadline_kept_across_restarts),
		cmocka_unit_test(test_never_imported_resumed),
		cmocka_unit_test(test_resume_past_deadline_gone_is_lost),
		cmocka_unit_test(test_timeout_fails_airflow_run),
		cmocka_unit_test(test_clock_step_keeps_timeouts),
		cmocka_unit_test(test_clock_step_resumed),
		cmocka_unit_test(test_predeploy_parses_ahead),
		cmocka_unit_test(test_predeploy_prerequisite_fails),
		cmocka_unit_test(test_predeploy_restricted),
		cmocka_unit_test(test_predeploy_max),
		cmocka_unit_test(test_timeout_looks_before_failing),
		cmocka_unit_test(test_unknown_run_state_noted),
		cmocka_unit_test(test_resume_after_deadline_keeps_success),
		cmocka_unit_test(test_timeout_patch_retried_while_unavailable),
		cmocka_unit_test(test_timeout_patch_unanswered_bounded),
		cmocka_unit_test(test_timeout_unhalted_not_retried),
		cmocka_unit_test(test_halt_survives_restart),
		cmocka_unit_test(test_halt_of_ended_run_forgotten),
		cmocka_unit_test(test_halt_rejections),
		cmocka_unit_test(test_halt_handed_over_at_stop),
		cmocka_unit_test(test_replaced_trigger_not_resent),
		cmocka_unit_test(test_halt_not_yet_looked_at_again),
		cmocka_unit_test(test_replaced_seen_at_renewal),
		cmocka_unit_test(test_replaced_seen_behind_backlog),
		cmocka_unit_test(test_lost_end_taken_up),
		cmocka_unit_test(test_replaced_predeploys_not_sent),
		cmocka_unit_test(test_slow_request_noted),
		cmocka_unit_test(test_agent_gone_from_plan_ends),
		cmocka_unit_test(test_trigger_bad_reply_adopts),
		cmocka_unit_test(test_trigger_resend_refused_looks_up),
		cmocka_unit_test(test_get_run_bad_reply_polls_again),
		cmocka_unit_test(test_trigger_never_sent_times_out),
		cmocka_unit_test(test_lost_run),
		cmocka_unit_test(test_unreachable_then_recovered),
		cmocka_unit_test(test_retries_use_new_dag_run_ids),
		cmocka_unit_test(test_rerun_refused_replace_and_repeat),
		cmocka_unit_test(test_cap_and_round_robin),
		cmocka_unit_test(test_admission),
		cmocka_unit_test(test_planning_failure_fails_run),
		cmocka_unit_test(test_crash_recovery_adopts),
		cmocka_unit_test(test_unseen_id_survives_restart),
		cmocka_unit_test(test_unseen_id_passed_on_twice),
		cmocka_unit_test(test_timeout_while_waiting_for_dag),
		cmocka_unit_test(test_unpause_bad_reply_looks_again),
		cmocka_unit_test(test_two_schedulers_one_database),
		cmocka_unit_test(test_agents_restriction),
		cmocka_unit_test(test_agents_restriction_bridges_left_out),
		cmocka_unit_test(test_committed_before_trigger),
		cmocka_unit_test(test_shared_commit_failure),
		cmocka_unit_test(test_incomplete_row_fails_instead_of_guessing),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
