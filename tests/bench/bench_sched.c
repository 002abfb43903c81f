/*
 * bench_sched.c — drives N services (default 10,000) through the Airflow
 * simulator with the scheduler in this process (HTTP through the product's
 * client agents/airflow.c, operations counted by a shim over its ops), and
 * prints the makespan against the critical-path lower bound, Airflow HTTP
 * requests per agent run, peak RSS and the scheduler's CPU time.
 *
 * Usage: bench_sched [--services N] [--sim PATH] [--max-in-flight N]
 *          [--sync-full] [--state PATH] [--no-predeploy]
 * The simulator (default: sim_airflow beside this program) is started on
 * 127.0.0.1 port 0 with short agent durations and stopped at the end.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

#include "airflow.h"
#include "bench_sim.h"
#include "log.h"
#include "sched.h"
#include "plan.h"
#include "store.h"
#include "util.h"

/* Agent timings given to the simulator (ms). */
#define PARSE_MS 100
static const char *const agents[] = { "metadata", "lineage", "usage", "profiler" };
static const int queued_ms[] = { 20, 20, 20, 20 };
static const int running_ms[] = { 200, 300, 250, 150 };

struct bench {
	struct event_base *base;
	const struct airflow_ops *real;
	struct airflow_client *client;
	unsigned remaining, succeeded, failed;
	uint64_t ops[8], attempts;
	uint64_t t_first_final, t_last_final;
};

/* ---- Counting shim over the real client's ops. ---- */

struct shim_call {
	struct bench *b;
	airflow_cb cb;
	void *arg;
};

static struct bench *B;

static void
shim_cb(const struct airflow_result *res, void *arg)
{
	struct shim_call *c = arg;
	airflow_cb cb = c->cb;
	void *a = c->arg;

	free(c);
	cb(res, a);
}

static struct shim_call *
shim(airflow_cb cb, void *arg, int op)
{
	struct shim_call *c = ap_xmalloc(sizeof *c);

	c->b = B;
	c->cb = cb;
	c->arg = arg;
	B->ops[op]++;
	return c;
}

/* The scheduler cancels only requests it will not hear from; the shim's
 * context of a cancelled request is leaked (a few bytes, rare: timeouts). */
static struct airflow_req *
s_deploy(void *impl, const json_t *p, airflow_cb cb, void *arg)
{
	return B->real->deploy(B->client, p, shim_cb, shim(cb, arg, 0));
}

static struct airflow_req *
s_get_dag(void *impl, const char *d, airflow_cb cb, void *arg)
{
	return B->real->get_dag(B->client, d, shim_cb, shim(cb, arg, 1));
}

static struct airflow_req *
s_unpause(void *impl, const char *d, int64_t errors_since, airflow_cb cb,
    void *arg)
{
	return B->real->unpause(B->client, d, errors_since, shim_cb,
	    shim(cb, arg, 2));
}

static struct airflow_req *
s_trigger(void *impl, const char *d, const char *r, const json_t *conf, airflow_cb cb,
    void *arg)
{
	return B->real->trigger(B->client, d, r, conf, shim_cb, shim(cb, arg, 3));
}

static struct airflow_req *
s_get_run(void *impl, const char *d, const char *r, airflow_cb cb, void *arg)
{
	return B->real->get_run(B->client, d, r, shim_cb, shim(cb, arg, 4));
}

static struct airflow_req *
s_fail_run(void *impl, const char *d, const char *r, airflow_cb cb, void *arg)
{
	return B->real->fail_run(B->client, d, r, shim_cb, shim(cb, arg, 5));
}

static void
s_cancel(void *impl, struct airflow_req *req)
{
	B->real->cancel(B->client, req);
}

static bool
s_unreachable(void *impl)
{
	return B->real->unreachable(B->client);
}

static void
s_limit(void *impl, struct airflow_req *req, int64_t left_ms)
{
	B->real->limit(B->client, req, left_ms);
}

static void
s_guard(void *impl, struct airflow_req *req, bool (*ok)(void *), void *arg)
{
	B->real->guard(B->client, req, ok, arg);
}

static const struct airflow_ops shim_ops = {
	.deploy = s_deploy, .get_dag = s_get_dag, .unpause = s_unpause,
	.trigger = s_trigger, .get_run = s_get_run, .fail_run = s_fail_run,
	.cancel = s_cancel, .limit = s_limit, .guard = s_guard,
	.unreachable = s_unreachable
};

static void
observer(const struct sched_event *ev, void *arg)
{
	struct bench *b = arg;

	if (ev->agent != NULL || strcmp(ev->old_state, ev->new_state) == 0)
		return;
	if (strcmp(ev->new_state, "succeeded") != 0 && strcmp(ev->new_state, "failed") != 0)
		return;
	if (strcmp(ev->new_state, "succeeded") == 0)
		b->succeeded++;
	else
		b->failed++;
	b->t_last_final = ap_mono_ms();
	if (--b->remaining == 0)
		event_base_loopexit(b->base, NULL);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "services", required_argument, NULL, 'n' },
		{ "sim", required_argument, NULL, 's' },
		{ "max-in-flight", required_argument, NULL, 'm' },
		{ "sync-full", no_argument, NULL, 'f' },
		{ "state", required_argument, NULL, 'd' },
		{ "no-predeploy", no_argument, NULL, 'p' },
		{ NULL, 0, NULL, 0 }
	};
	struct bench b = { 0 };
	struct store_options so = { .synchronous_normal = true, .lease_ms = 60000 };
	struct airflow_config ac = { 0 };
	struct sched_config sc;
	struct store *store;
	struct airflow_client *client;
	struct airflow_stats ast;
	struct sched *sched;
	struct plan *plan;
	json_t *j;
	unsigned n = 10000, cap = 2000, i;
	char *sim = NULL, *state = NULL, *cause = NULL, *scen, *url, dir[] =
	    "/tmp/bench_sched.XXXXXX";
	uint64_t t0, t1;
	struct rusage ru, simru;
	pid_t simpid;
	int c, port, st;
	bool predeploy = true;
	FILE *f;
	double cp_ms, work_ms, lb_ms;

	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'n': n = (unsigned)strtoul(optarg, NULL, 10); break;
		case 's': sim = ap_xstrdup(optarg); break;
		case 'm': cap = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'f': so.synchronous_normal = false; break;
		case 'd': state = ap_xstrdup(optarg); break;
		case 'p': predeploy = false; break;
		default:
			fprintf(stderr, "usage: bench_sched [--services N] [--sim PATH]"
			    " [--max-in-flight N] [--sync-full] [--state PATH]"
			    " [--no-predeploy]\n");
			return 2;
		}
	}
	signal(SIGPIPE, SIG_IGN);
	ap_log_setup(AP_LOG_WARN, AP_LOG_TEXT);
	if (sim == NULL)
		sim = bench_sim_path();
	if (mkdtemp(dir) == NULL)
		ap_fatal("mkdtemp: %s", strerror(errno));
	if (state == NULL)
		state = ap_xprintf("%s/state.db", dir);
	scen = ap_xprintf("%s/scenario.json", dir);
	f = fopen(scen, "w");
	fprintf(f, "{\"parse_delay_ms\": %d, \"pipelines\": {", PARSE_MS);
	for (i = 0; i < 4; i++)
		fprintf(f, "%s\"%s\": {\"queued_ms\": %d, \"running_ms\": %d, \"outcome\":"
		    " \"success\"}", i ? "," : "", agents[i], queued_ms[i], running_ms[i]);
	fprintf(f, "}}\n");
	fclose(f);
	simpid = bench_sim_start(sim, scen, &port);
	url = ap_xprintf("http://127.0.0.1:%d", port);

	b.base = ap_event_base_new();
	B = &b;
	if ((store = store_open(state, &so, &cause)) == NULL)
		ap_fatal("%s", cause);
	ac.base_url = url;
	ac.api = AIRFLOW_API_V1;
	ac.username = "admin";
	ac.password = "admin";
	ac.max_in_flight = 64;
	if ((client = airflow_client_create(b.base, &ac, &cause)) == NULL)
		ap_fatal("%s", cause);
	b.real = airflow_client_ops();
	b.client = client;
	sched_config_defaults(&sc);
	sc.max_agents_in_flight = cap;
	sc.predeploy = predeploy;
	sc.poll_initial_ms = 100;
	sc.poll_max_ms = 1000;
	sc.poll_floor_ms = 50;
	sc.poll_backoff = 1.5;
	sc.rescan_ms = 0;
	sc.lease_ms = 60000;
	/* The product's plan (OpenMetadata's default graph), 600 s per agent. */
	j = json_loads("{\"agents\": {\"metadata\": {\"timeout_s\": 600},"
	    " \"lineage\": {\"timeout_s\": 600}, \"usage\": {\"timeout_s\": 600},"
	    " \"profiler\": {\"timeout_s\": 600}}}", 0, NULL);
	if ((plan = plan_create(j, NULL, &cause)) == NULL)
		ap_fatal("%s", cause);
	json_decref(j);
	sched = sched_create(b.base, store, &shim_ops, NULL, &plan_sched_planner, plan,
	    &sc);
	sched_set_observer(sched, observer, &b);
	if (sched_start(sched, false, &cause) != 0)
		ap_fatal("%s", cause);

	t0 = ap_mono_ms();
	for (i = 0; i < n; i++) {
		char *fqn = ap_xprintf("bench-%u", i), *ev = ap_xprintf("ev-%u", i);
		char *ent = ap_xprintf("{\"id\":\"id-%s\",\"name\":\"%s\","
		    "\"fullyQualifiedName\":\"%s\",\"serviceType\":\"Postgres\","
		    "\"connection\":{\"config\":{\"type\":\"Postgres\","
		    "\"supportsMetadataExtraction\":true,\"supportsLineageExtraction\":true,"
		    "\"supportsUsageExtraction\":true,\"supportsProfiler\":true}}}",
		    fqn, fqn, fqn), *id = NULL;

		if (store_inbox_accept(store, ev, "databaseService", fqn, ent, &id,
		    NULL, NULL, &cause) == STORE_ERROR)
			ap_fatal("%s", cause);
		if (sched_take(sched, id, &cause) != 0)
			ap_fatal("%s", cause);
		b.remaining++;
		free(id);
		free(ent);
		free(ev);
		free(fqn);
	}
	event_base_dispatch(b.base);
	t1 = ap_mono_ms();
	getrusage(RUSAGE_SELF, &ru);
	airflow_client_stats(client, &ast);
	for (i = 0; i < AIRFLOW_HTTP_CLASS_MAX; i++)
		b.attempts += ast.requests[i];

	/* Lower bounds: the longest chain (parse + queue + run per agent:
	 * metadata -> usage -> profiler, or metadata -> lineage), and the total
	 * agent time spread over the cap. Deployed ahead (scheduler.predeploy),
	 * a dependent's parse overlaps its prerequisites' runs (each longer
	 * than PARSE_MS), so only metadata's parse is on the chain and in a
	 * slot. */
	cp_ms = 0;
	{
		double dp = sc.predeploy ? 0 : PARSE_MS;
		double m = PARSE_MS + queued_ms[0] + running_ms[0];
		double l = dp + queued_ms[1] + running_ms[1];
		double u = dp + queued_ms[2] + running_ms[2] +
		    dp + queued_ms[3] + running_ms[3];

		cp_ms = m + (l > u ? l : u);
		work_ms = 0;
		for (i = 0; i < 4; i++)
			work_ms += (i == 0 ? PARSE_MS : dp) + queued_ms[i] + running_ms[i];
		work_ms = work_ms * n / cap;
	}
	lb_ms = cp_ms > work_ms ? cp_ms : work_ms;
	/* The simulator's own CPU: it shares the machine's CPUs with the
	 * scheduler, so it is part of what the makespan measures. */
	kill(simpid, SIGTERM);
	if (wait4(simpid, &st, 0, &simru) < 0)
		memset(&simru, 0, sizeof simru);
	printf("services            %u (%u succeeded, %u failed), agent runs %u\n", n,
	    b.succeeded, b.failed, n * 4);
	printf("max agents in flight %u, store synchronous=%s, dependents deployed %s\n",
	    cap, so.synchronous_normal ? "NORMAL" : "FULL",
	    sc.predeploy ? "ahead (their parse off the bound)" : "in their turn");
	printf("makespan            %.1f s\n", (t1 - t0) / 1000.0);
	printf("lower bound         %.1f s (critical path %.2f s; work/cap %.1f s)"
	    " -> ratio %.2f\n", lb_ms / 1000.0, cp_ms / 1000.0, work_ms / 1000.0,
	    (double)(t1 - t0) / lb_ms);
	printf("airflow requests    %llu HTTP (%.2f per agent run): deploy %llu, get_dag"
	    " %llu, unpause %llu, trigger %llu, get_run %llu, fail_run %llu\n",
	    (unsigned long long)b.attempts, (double)b.attempts / (n * 4.0),
	    (unsigned long long)b.ops[0], (unsigned long long)b.ops[1],
	    (unsigned long long)b.ops[2], (unsigned long long)b.ops[3],
	    (unsigned long long)b.ops[4], (unsigned long long)b.ops[5]);
	printf("peak RSS            %.1f MB (%.2f KB per service)\n", ru.ru_maxrss / 1024.0,
	    (double)ru.ru_maxrss / n);
	printf("scheduler CPU       %.2f s user + %.2f s system (this process: scheduler,"
	    " client, SQLite)\n", ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6,
	    ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
	printf("simulator CPU       %.2f s user + %.2f s system (the Airflow simulator, on the"
	    " same CPUs)\n", simru.ru_utime.tv_sec + simru.ru_utime.tv_usec / 1e6,
	    simru.ru_stime.tv_sec + simru.ru_stime.tv_usec / 1e6);
	printf("request rate        %.0f Airflow requests/s over the makespan\n",
	    b.attempts * 1000.0 / (double)(t1 - t0));

	sched_stop(sched);
	sched_free(sched);
	airflow_client_free(client);
	store_close(store);
	plan_free(plan);
	event_base_free(b.base);
	{
		char *cmd = ap_xprintf("rm -rf '%s'", dir);

		if (system(cmd) != 0)
			fprintf(stderr, "bench_sched: could not remove %s\n", dir);
		free(cmd);
	}
	free(url);
	free(scen);
	free(state);
	free(sim);
	return b.failed == 0 ? 0 : 1;
}
