/*
 * tool_pipeline.c — prints what autopilot would deploy for a service: the
 * plan's agents and, for each one that applies, the IngestionPipeline and
 * its DAG id. For the schema integration test and for looking at the
 * documents by hand.
 *
 * Usage: tool_pipeline [-c CONFIG] [--om-url URL] [--om-token TOKEN]
 *          [--now-ms MS] [--agent NAME]... TYPE ENTITY_FILE
 * Prints one JSON object a line: {"agent", "supported", "run", "after",
 * "dag_id", "pipeline"}. Exit 0, 1 when the plan or a pipeline fails (the
 * message on stderr), 2 on bad usage.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "plan.h"
#include "util.h"

#define MAX_FILE (4u * 1024 * 1024)

static void
usage(void)
{
	fprintf(stderr, "usage: tool_pipeline [-c CONFIG] [--om-url URL] [--om-token TOKEN]"
	    " [--now-ms MS] [--agent NAME]... TYPE ENTITY_FILE\n");
	exit(2);
}

static json_t *
load(const char *path)
{
	json_error_t err;
	json_t *j = json_load_file(path, 0, &err);

	if (j == NULL) {
		fprintf(stderr, "tool_pipeline: %s:%d: %s\n", path, err.line, err.text);
		exit(2);
	}
	return j;
}

static bool
wanted(char **agents, unsigned n, const char *name)
{
	unsigned i;

	if (n == 0)
		return true;
	for (i = 0; i < n; i++)
		if (strcmp(agents[i], name) == 0)
			return true;
	return false;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "om-url", required_argument, NULL, 'u' },
		{ "om-token", required_argument, NULL, 't' },
		{ "now-ms", required_argument, NULL, 'n' },
		{ "agent", required_argument, NULL, 'a' },
		{ NULL, 0, NULL, 0 }
	};
	struct plan_options opt = { NULL, NULL };
	char *agents[16];
	unsigned nagents = 0, i, j;
	int64_t now_ms = ap_wall_ms();
	json_t *config = NULL, *entity;
	struct sched_plan_view v;
	struct plan *p;
	char *cause = NULL;
	int c, rc = 0;

	while ((c = getopt_long(argc, argv, "c:", longopts, NULL)) != -1) {
		switch (c) {
		case 'c': config = load(optarg); break;
		case 'u': opt.openmetadata_url = optarg; break;
		case 't': opt.openmetadata_token = optarg; break;
		case 'n': now_ms = strtoll(optarg, NULL, 10); break;
		case 'a':
			if (nagents == AP_ARRAY_LEN(agents))
				usage();
			agents[nagents++] = optarg;
			break;
		default: usage();
		}
	}
	if (argc - optind != 2)
		usage();
	if ((p = plan_create(config, &opt, &cause)) == NULL) {
		fprintf(stderr, "tool_pipeline: %s\n", cause);
		free(cause);
		json_decref(config);
		return 2;
	}
	entity = load(argv[optind + 1]);
	if (plan_expand(p, argv[optind], entity, &v, &cause) != 0) {
		fprintf(stderr, "tool_pipeline: %s\n", cause);
		rc = 1;
		goto out;
	}
	for (i = 0; i < v.n; i++) {
		const struct sched_agent_spec *a = &v.agents[i];
		json_t *line, *after = json_array(), *doc;
		char *dag_id = NULL, *text;

		if (!wanted(agents, nagents, a->name)) {
			json_decref(after);
			continue;
		}
		for (j = 0; j < v.n; j++)
			if (a->after & (1u << j))
				json_array_append_new(after, json_string(v.agents[j].name));
		doc = plan_pipeline(p, argv[optind], entity, a->name, now_ms, &dag_id, &cause);
		if (doc == NULL) {
			fprintf(stderr, "tool_pipeline: %s: %s\n", a->name, cause);
			json_decref(after);
			rc = 1;
			goto out;
		}
		line = json_pack("{s:s,s:b,s:b,s:o,s:s,s:o}", "agent", a->name,
		    "supported", a->supported, "run", a->run, "after", after,
		    "dag_id", dag_id, "pipeline", doc);
		if (!a->supported)
			json_object_set_new(line, "unsupported_reason",
			    json_string(a->unsupported_reason));
		text = json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER);
		printf("%s\n", text);
		free(text);
		free(dag_id);
		json_decref(line);
	}
out:
	free(cause);
	json_decref(entity);
	json_decref(config);
	plan_free(p);
	return rc;
}
