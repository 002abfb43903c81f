/*
 * tool_sched.c — drives the scheduler with the real Airflow client for the
 * integration tests and the benchmark: accepts a batch of services through
 * the store's inbox (idempotent by event id, so a restart after kill -9
 * re-submits nothing), resumes unfinished runs, and runs the loop until
 * every run of the batch is final.
 *
 * Usage: tool_sched --state DB --airflow-url URL [--api auto|v1|v2]
 *          [--services N] [--prefix NAME] [--entity JSON] [--sched JSON]
 *          [--timeout-ms N] [--retries N] [--retry-backoff-ms N]
 *          [--lease-ms N] [--deadline-s N] [--sync-normal] [--quiet]
 *          [--rerun FQN [--replace]] [--json]
 * Prints "done total=N succeeded=S failed=F cpu_ms=C maxrss_kb=R" and exits
 * 0 when the batch is final, 3 on the deadline, 2 on bad usage.
 *
 * The plan is the product's (plan_sched_planner) with its default graph;
 * --timeout-ms, --retries and --retry-backoff-ms set every agent's options.
 * Each service is a Postgres databaseService supporting every agent; --entity
 * is merged into it (e.g. {"connection": {"config":
 * {"supportsUsageExtraction": false}}}).
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <event2/event.h>

#include "airflow.h"
#include "log.h"
#include "pipeline.h"
#include "plan.h"
#include "sched.h"
#include "store.h"
#include "util.h"

struct tool {
	int64_t timeout_ms;
	unsigned retries;
	int64_t retry_backoff_ms;
	unsigned remaining;
	unsigned succeeded, failed;
	bool quiet;
	struct event_base *base;
};

static void
tool_observer(const struct sched_event *ev, void *arg)
{
	struct tool *t = arg;

	if (ev->agent != NULL && !t->quiet)
		printf("progress %s %s %s -> %s%s%s\n", ev->fqn, ev->agent, ev->old_state,
		    ev->new_state, ev->error ? " : " : "", ev->error ? ev->error : "");
	if (ev->agent == NULL && (strcmp(ev->new_state, "succeeded") == 0 ||
	    strcmp(ev->new_state, "failed") == 0) &&
	    strcmp(ev->old_state, ev->new_state) != 0) {
		if (strcmp(ev->new_state, "succeeded") == 0)
			t->succeeded++;
		else
			t->failed++;
		if (t->remaining > 0 && --t->remaining == 0)
			event_base_loopexit(t->base, NULL);
	}
	fflush(stdout);
}

static void
deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	event_base_loopexit(arg, NULL);
}

static void
usage(void)
{
	fprintf(stderr, "usage: tool_sched --state DB --airflow-url URL [options]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "state", required_argument, NULL, 's' },
		{ "airflow-url", required_argument, NULL, 'u' },
		{ "api", required_argument, NULL, 'a' },
		{ "services", required_argument, NULL, 'n' },
		{ "prefix", required_argument, NULL, 'p' },
		{ "entity", required_argument, NULL, 'e' },
		{ "sched", required_argument, NULL, 'S' },
		{ "timeout-ms", required_argument, NULL, 't' },
		{ "retries", required_argument, NULL, 'r' },
		{ "retry-backoff-ms", required_argument, NULL, 'b' },
		{ "lease-ms", required_argument, NULL, 'l' },
		{ "deadline-s", required_argument, NULL, 'd' },
		{ "sync-normal", no_argument, NULL, 'N' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "rerun", required_argument, NULL, 'R' },
		{ "replace", no_argument, NULL, 'P' },
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 }
	};
	struct tool t = { .timeout_ms = 60000, .retry_backoff_ms = 1000 };
	struct store_options so = { .lease_ms = 5000 };
	struct airflow_config ac = { 0 };
	struct sched_config sc;
	const char *state = NULL, *url = NULL, *prefix = "svc", *entity_extra = NULL;
	const char *sched_json = NULL, *rerun = NULL;
	unsigned nservices = 1, i, deadline_s = 600;
	bool replace = false, want_json = false;
	struct store *store = NULL;
	struct airflow_client *client = NULL;
	struct sched *sched = NULL;
	struct event *deadline = NULL;
	char *cause = NULL, *run_id = NULL, **ids;
	json_t *template, *j;
	struct plan *plan = NULL;
	struct rusage ru;
	int c, rc = 2;

	signal(SIGPIPE, SIG_IGN);
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 's': state = optarg; break;
		case 'u': url = optarg; break;
		case 'a':
			ac.api = strcmp(optarg, "v1") == 0 ? AIRFLOW_API_V1 :
			    strcmp(optarg, "v2") == 0 ? AIRFLOW_API_V2 : AIRFLOW_API_AUTO;
			break;
		case 'n': nservices = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'p': prefix = optarg; break;
		case 'e': entity_extra = optarg; break;
		case 'S': sched_json = optarg; break;
		case 't': t.timeout_ms = strtoll(optarg, NULL, 10); break;
		case 'r': t.retries = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'b': t.retry_backoff_ms = strtoll(optarg, NULL, 10); break;
		case 'l': so.lease_ms = strtoll(optarg, NULL, 10); break;
		case 'd': deadline_s = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'N': so.synchronous_normal = true; break;
		case 'q': t.quiet = true; break;
		case 'R': rerun = optarg; break;
		case 'P': replace = true; break;
		case 'j': want_json = true; break;
		default: usage();
		}
	}
	if (state == NULL || url == NULL)
		usage();
	template = json_pack("{s:s,s:{s:{s:s,s:b,s:b,s:b,s:b}}}", "serviceType",
	    "Postgres", "connection", "config", "type", "Postgres",
	    "supportsMetadataExtraction", 1, "supportsLineageExtraction", 1,
	    "supportsUsageExtraction", 1, "supportsProfiler", 1);
	if (entity_extra != NULL) {
		if ((j = json_loads(entity_extra, 0, NULL)) == NULL) {
			fprintf(stderr, "tool_sched: --entity: not JSON\n");
			return 2;
		}
		json_object_update_recursive(template, j);
		json_decref(j);
	}
	j = json_object();
	for (i = 0; i < PIPELINE_AGENT_MAX; i++)
		json_object_set_new(j, pipeline_agent_name(i), json_pack("{s:f,s:i,s:f}",
		    "timeout_s", (double)t.timeout_ms / 1000, "retries", (int)t.retries,
		    "retry_backoff_s", (double)t.retry_backoff_ms / 1000));
	j = json_pack("{s:o}", "agents", j);
	plan = plan_create(j, NULL, &cause);
	json_decref(j);
	if (plan == NULL) {
		fprintf(stderr, "tool_sched: %s\n", cause);
		return 2;
	}
	j = sched_json ? json_loads(sched_json, 0, NULL) : NULL;
	if (sched_config_from_json(j, &sc, &cause) != 0) {
		fprintf(stderr, "tool_sched: %s\n", cause);
		return 2;
	}
	json_decref(j);
	sc.lease_ms = (unsigned)so.lease_ms;
	ap_log_setup(t.quiet ? AP_LOG_WARN : AP_LOG_INFO, AP_LOG_TEXT);

	t.base = ap_event_base_new();
	if ((store = store_open(state, &so, &cause)) == NULL) {
		fprintf(stderr, "tool_sched: %s\n", cause);
		rc = 3;
		goto out;
	}
	ac.base_url = url;
	ac.username = "admin";
	ac.password = "admin";
	ac.retry_base_ms = 50;
	ac.retry_max_ms = 1000;
	ac.max_in_flight = 64;
	if ((client = airflow_client_create(t.base, &ac, &cause)) == NULL) {
		fprintf(stderr, "tool_sched: %s\n", cause);
		goto out;
	}
	sched = sched_create(t.base, store, airflow_client_ops(), client, &plan_sched_planner,
	    plan, &sc);
	sched_set_observer(sched, tool_observer, &t);
	if (sched_start(sched, true, &cause) != 0) {
		fprintf(stderr, "tool_sched: %s\n", cause);
		rc = 3;
		goto out;
	}

	ids = ap_xcalloc(nservices + 2, sizeof *ids);
	for (i = 0; i < nservices && rerun == NULL; i++) {
		char *fqn = ap_xprintf("%s-%u", prefix, i);
		char *ev = ap_xprintf("ev-%s", fqn);
		json_t *e = json_deep_copy(template);
		char *text;

		json_object_set_new(e, "id", json_sprintf("id-%s", fqn));
		json_object_set_new(e, "name", json_string(fqn));
		json_object_set_new(e, "fullyQualifiedName", json_string(fqn));
		text = json_dumps(e, JSON_COMPACT);
		if (store_inbox_accept(store, ev, "databaseService", fqn, text, &ids[i],
		    NULL, NULL, &cause) == STORE_ERROR) {
			fprintf(stderr, "tool_sched: %s\n", cause);
			rc = 3;
			goto out;
		}
		free(text);
		json_decref(e);
		free(ev);
		free(fqn);
	}
	if (rerun != NULL) {
		json_t *e = json_deep_copy(template);

		json_object_set_new(e, "id", json_sprintf("id-%s", rerun));
		json_object_set_new(e, "name", json_string(rerun));
		json_object_set_new(e, "fullyQualifiedName", json_string(rerun));
		enum store_result r = sched_submit(sched, "databaseService", rerun, e, NULL,
		    replace, "tool_sched", &run_id, &cause);
		json_decref(e);
		if (r != STORE_OK) {
			printf("refused %s\n", cause);
			rc = 1;
			goto out;
		}
		ids[0] = run_id;
		nservices = 1;
	}
	/* Count the runs of the batch still to finish, then take each. */
	for (i = 0; i < nservices; i++) {
		json_t *st = NULL;
		const char *s;

		if (store_run_json(store, ids[i], &st, &cause) != STORE_OK)
			continue;
		s = json_string_value(json_object_get(st, "state"));
		if (strcmp(s, "succeeded") != 0 && strcmp(s, "failed") != 0) {
			t.remaining++;
			if (sched_take(sched, ids[i], &cause) != 0) {
				fprintf(stderr, "tool_sched: %s\n", cause);
				free(cause);
				cause = NULL;
			}
		}
		json_decref(st);
	}
	if (t.remaining > 0) {
		struct timeval tv = { deadline_s, 0 };

		deadline = evtimer_new(t.base, deadline_cb, t.base);
		evtimer_add(deadline, &tv);
		event_base_dispatch(t.base);
	}
	getrusage(RUSAGE_SELF, &ru);
	printf("done total=%u succeeded=%u failed=%u remaining=%u cpu_ms=%ld"
	    " maxrss_kb=%ld\n", nservices, t.succeeded, t.failed, t.remaining,
	    (long)(ru.ru_utime.tv_sec * 1000 + ru.ru_utime.tv_usec / 1000 +
	    ru.ru_stime.tv_sec * 1000 + ru.ru_stime.tv_usec / 1000), ru.ru_maxrss);
	if (want_json) {
		json_t *list = json_array();

		for (i = 0; i < nservices; i++) {
			json_t *st = NULL;

			if (ids[i] != NULL && store_run_json(store, ids[i], &st, &cause) ==
			    STORE_OK)
				json_array_append_new(list, st);
		}
		json_dumpf(list, stdout, JSON_COMPACT);
		printf("\n");
		json_decref(list);
	}
	rc = t.remaining == 0 ? 0 : 3;
	sched_stop(sched);
	for (i = 0; i < nservices; i++)
		free(ids[i]);
	free(ids);
out:
	fflush(stdout);
	if (deadline != NULL)
		event_free(deadline);
	sched_free(sched);
	airflow_client_free(client);
	store_close(store);
	plan_free(plan);
	event_base_free(t.base);
	json_decref(template);
	free(cause);
	return rc;
}
