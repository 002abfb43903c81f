/*
 * bench_airflow.c — the product's Airflow client (agents/airflow.c) drives N
 * (default 10,000) concurrent runs through the Airflow simulator on loopback:
 * deploy -> get_dag until parsed -> unpause -> trigger -> get_run until
 * final, every run at once. Prints requests/s, p50/p99 latency of an
 * operation (call to callback, queueing in the client included) and of an
 * HTTP attempt (the client's histogram), peak RSS and CPU time per tracked run.
 *
 * Usage: bench_airflow [--runs N] [--sim PATH] [--max-in-flight N] [--api v1|v2]
 *          [--poll-ms N]
 * The simulator (default: sim_airflow beside this program) is started on
 * 127.0.0.1 port 0 and stopped at the end.
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
#include <jansson.h>

#include "airflow.h"
#include "bench_sim.h"
#include "log.h"
#include "util.h"

#define PARSE_MS	300
#define QUEUED_MS	200
#define RUNNING_MS	2000

enum brun_state { B_DEPLOY, B_GET_DAG, B_UNPAUSE, B_TRIGGER, B_GET_RUN, B_DONE };

struct brun {
	struct bench *b;
	unsigned idx;
	enum brun_state st;
	char dag_id[32];
	char run_id[32];
	uint64_t op_start;
	struct event *timer;
};

struct bench {
	struct event_base *base;
	struct airflow_client *c;
	const struct airflow_ops *ops;
	unsigned remaining, succeeded, failed, errors;
	unsigned poll_ms;
	uint32_t *lat;		/* operation latencies, ms */
	size_t nlat, caplat;
	uint64_t ops_count[B_DONE];
};

static void brun_step(struct brun *r);

static void
lat_add(struct bench *b, uint64_t ms)
{
	if (b->nlat == b->caplat) {
		b->caplat = b->caplat ? b->caplat * 2 : 65536;
		b->lat = ap_xreallocarray(b->lat, b->caplat, sizeof *b->lat);
	}
	b->lat[b->nlat++] = (uint32_t)ms;
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	brun_step(arg);
}

static void
later(struct brun *r)
{
	struct timeval tv = { r->b->poll_ms / 1000, (r->b->poll_ms % 1000) * 1000 };

	evtimer_add(r->timer, &tv);
}

static void
finish(struct brun *r, bool ok)
{
	struct bench *b = r->b;

	r->st = B_DONE;
	if (ok)
		b->succeeded++;
	else
		b->failed++;
	if (--b->remaining == 0)
		event_base_loopexit(b->base, NULL);
}

static void
op_cb(const struct airflow_result *res, void *arg)
{
	struct brun *r = arg;
	struct bench *b = r->b;

	lat_add(b, ap_mono_ms() - r->op_start);
	if (res->status != AIRFLOW_OK && !(r->st == B_GET_DAG &&
	    res->status == AIRFLOW_NOT_FOUND)) {
		if (b->errors++ < 5)
			fprintf(stderr, "bench_airflow: run %u step %d: %s %ld %s\n", r->idx,
			    r->st, airflow_status_name(res->status), res->error.http_status,
			    res->error.detail ? res->error.detail : "");
		finish(r, false);
		return;
	}
	switch (r->st) {
	case B_DEPLOY:
		r->st = B_GET_DAG;
		later(r);	/* Airflow parses the file first */
		return;
	case B_GET_DAG:
		if (res->status == AIRFLOW_NOT_FOUND) {
			later(r);
			return;
		}
		r->st = B_UNPAUSE;
		break;
	case B_UNPAUSE:
		r->st = B_TRIGGER;
		break;
	case B_TRIGGER:
		r->st = B_GET_RUN;
		later(r);
		return;
	case B_GET_RUN:
		if (res->run->state == AIRFLOW_RUN_SUCCESS) {
			finish(r, true);
			return;
		}
		if (res->run->state == AIRFLOW_RUN_FAILED) {
			finish(r, false);
			return;
		}
		later(r);
		return;
	case B_DONE:
		return;
	}
	brun_step(r);
}

static void
brun_step(struct brun *r)
{
	struct bench *b = r->b;
	json_t *p;

	r->op_start = ap_mono_ms();
	b->ops_count[r->st]++;
	switch (r->st) {
	case B_DEPLOY:
		p = json_pack("{s:s, s:s, s:s, s:{s:s, s:s, s:s}, s:{s:{s:s}}, s:{}, s:s, s:s}",
		    "name", r->dag_id, "displayName", r->dag_id, "pipelineType", "metadata",
		    "service", "id", "00000000-0000-0000-0000-000000000001", "type",
		    "databaseService", "name", "bench", "sourceConfig", "config", "type",
		    "DatabaseMetadata", "airflowConfig", "loggerLevel", "INFO", "provider",
		    "automation");
		b->ops->deploy(b->c, p, op_cb, r);
		json_decref(p);
		break;
	case B_GET_DAG:
		b->ops->get_dag(b->c, r->dag_id, op_cb, r);
		break;
	case B_UNPAUSE:
		b->ops->unpause(b->c, r->dag_id, 0, op_cb, r);
		break;
	case B_TRIGGER:
		b->ops->trigger(b->c, r->dag_id, r->run_id, NULL, op_cb, r);
		break;
	case B_GET_RUN:
		b->ops->get_run(b->c, r->dag_id, r->run_id, op_cb, r);
		break;
	case B_DONE:
		break;
	}
}

static int
cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* The bucket bound below which a fraction q of the histogram's attempts fall. */
static const char *
hist_quantile(const struct airflow_stats *st, double q, char *buf, size_t size)
{
	uint64_t want = (uint64_t)(q * (double)st->latency_count);
	unsigned i;

	for (i = 0; i < AIRFLOW_LATENCY_BUCKETS - 1; i++) {
		if (st->latency_le[i] >= want) {
			snprintf(buf, size, "<= %ld ms", airflow_latency_bounds_ms[i]);
			return buf;
		}
	}
	snprintf(buf, size, "> %ld ms", airflow_latency_bounds_ms[i - 1]);
	return buf;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "runs", required_argument, NULL, 'n' },
		{ "sim", required_argument, NULL, 's' },
		{ "max-in-flight", required_argument, NULL, 'm' },
		{ "api", required_argument, NULL, 'a' },
		{ "poll-ms", required_argument, NULL, 'p' },
		{ NULL, 0, NULL, 0 }
	};
	struct bench b = { .poll_ms = 250 };
	struct airflow_config ac = { .username = "admin", .password = "admin",
		.api = AIRFLOW_API_AUTO, .max_in_flight = 64 };
	struct airflow_stats st;
	struct brun *runs;
	unsigned n = 10000, i;
	const char *api = "v1";
	char *sim = NULL, *cause = NULL, *url, scen[] = "/tmp/bench_airflow.XXXXXX", q1[32],
	    q2[32];
	uint64_t t0, t1, http = 0;
	struct rusage ru;
	pid_t simpid;
	int c, port, status, fd;
	FILE *f;
	double secs, cpu;

	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'n': n = (unsigned)strtoul(optarg, NULL, 10); break;
		case 's': sim = ap_xstrdup(optarg); break;
		case 'm': ac.max_in_flight = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'a': api = optarg; break;
		case 'p': b.poll_ms = (unsigned)strtoul(optarg, NULL, 10); break;
		default:
			fprintf(stderr, "usage: bench_airflow [--runs N] [--sim PATH]"
			    " [--max-in-flight N] [--api v1|v2] [--poll-ms N]\n");
			return 2;
		}
	}
	if (n == 0)
		n = 1;
	signal(SIGPIPE, SIG_IGN);
	ap_log_setup(AP_LOG_WARN, AP_LOG_TEXT);
	if (sim == NULL)
		sim = bench_sim_path();
	if ((fd = mkstemp(scen)) < 0 || (f = fdopen(fd, "w")) == NULL)
		ap_fatal("mkstemp: %s", strerror(errno));
	fprintf(f, "{\"api\": \"%s\", \"parse_delay_ms\": %d, \"pipelines\": {\"*\":"
	    " {\"queued_ms\": %d, \"running_ms\": %d, \"outcome\": \"success\"}}}\n",
	    strcmp(api, "v2") == 0 ? "v2" : "v1", PARSE_MS, QUEUED_MS, RUNNING_MS);
	fclose(f);
	simpid = bench_sim_start(sim, scen, &port);
	url = ap_xprintf("http://127.0.0.1:%d", port);

	b.base = ap_event_base_new();
	ac.base_url = url;
	if ((b.c = airflow_client_create(b.base, &ac, &cause)) == NULL)
		ap_fatal("%s", cause);
	b.ops = airflow_client_ops();
	runs = ap_xcalloc(n, sizeof *runs);
	t0 = ap_mono_ms();
	for (i = 0; i < n; i++) {
		struct brun *r = &runs[i];

		r->b = &b;
		r->idx = i;
		snprintf(r->dag_id, sizeof r->dag_id, "bench_%u", i);
		snprintf(r->run_id, sizeof r->run_id, "autopilot__%u.1", i);
		r->timer = evtimer_new(b.base, timer_cb, r);
		b.remaining++;
		brun_step(r);
	}
	event_base_dispatch(b.base);
	t1 = ap_mono_ms();
	getrusage(RUSAGE_SELF, &ru);
	airflow_client_stats(b.c, &st);
	for (i = 0; i < AIRFLOW_HTTP_CLASS_MAX; i++)
		http += st.requests[i];
	qsort(b.lat, b.nlat, sizeof *b.lat, cmp_u32);
	secs = (double)(t1 - t0) / 1000.0;
	cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
	    ru.ru_stime.tv_usec / 1e6;

	printf("runs                %u concurrent (%u succeeded, %u failed), API %s,"
	    " max in flight %u\n", n, b.succeeded, b.failed,
	    airflow_api_name(airflow_client_api(b.c)), ac.max_in_flight);
	printf("simulated Airflow   parse %d ms, queued %d ms, running %d ms; polls every"
	    " %u ms\n", PARSE_MS, QUEUED_MS, RUNNING_MS, b.poll_ms);
	printf("wall time           %.2f s\n", secs);
	printf("HTTP requests       %llu (%.0f requests/s): 2xx %llu, 4xx %llu, 5xx %llu,"
	    " network %llu, retries %llu\n", (unsigned long long)http, http / secs,
	    (unsigned long long)st.requests[AIRFLOW_HTTP_2XX],
	    (unsigned long long)st.requests[AIRFLOW_HTTP_4XX],
	    (unsigned long long)st.requests[AIRFLOW_HTTP_5XX],
	    (unsigned long long)st.requests[AIRFLOW_HTTP_NETWORK],
	    (unsigned long long)st.retries);
	printf("operations          %zu: deploy %llu, get_dag %llu, unpause %llu,"
	    " trigger %llu, get_run %llu\n", b.nlat,
	    (unsigned long long)b.ops_count[B_DEPLOY],
	    (unsigned long long)b.ops_count[B_GET_DAG],
	    (unsigned long long)b.ops_count[B_UNPAUSE],
	    (unsigned long long)b.ops_count[B_TRIGGER],
	    (unsigned long long)b.ops_count[B_GET_RUN]);
	if (b.nlat > 0)
		printf("operation latency   p50 %u ms, p99 %u ms, max %u ms (call to callback,"
		    " client queue included)\n", b.lat[b.nlat / 2],
		    b.lat[(size_t)((double)b.nlat * 0.99)], b.lat[b.nlat - 1]);
	printf("HTTP latency        p50 %s, p99 %s, mean %.2f ms (one attempt, on the"
	    " wire)\n", hist_quantile(&st, 0.5, q1, sizeof q1),
	    hist_quantile(&st, 0.99, q2, sizeof q2),
	    st.latency_count ? (double)st.latency_sum_ms / st.latency_count : 0.0);
	printf("peak RSS            %.1f MB (%.2f KB per tracked run)\n",
	    ru.ru_maxrss / 1024.0, (double)ru.ru_maxrss / n);
	printf("CPU                 %.2f s user + %.2f s system = %.1f us per tracked run,"
	    " %.1f us per HTTP request\n",
	    ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6,
	    ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6, cpu * 1e6 / n,
	    http ? cpu * 1e6 / (double)http : 0.0);

	for (i = 0; i < n; i++)
		event_free(runs[i].timer);
	free(runs);
	airflow_client_free(b.c);
	event_base_free(b.base);
	kill(simpid, SIGTERM);
	waitpid(simpid, &status, 0);
	unlink(scen);
	free(b.lat);
	free(url);
	free(sim);
	return b.failed == 0 ? 0 : 1;
}
