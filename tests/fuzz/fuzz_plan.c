/*
 * fuzz_plan.c — libFuzzer target: a configuration and a service entity (any
 * bytes, parsed as JSON) through the plan: plan_create() over the "agents"
 * and "filters" sections, then, for the entity under "service" and every
 * entity type, plan_expand() and plan_pipeline() for each planned agent.
 *
 *   {"agents": {...}, "filters": {...}, "service": {...}}
 *
 * Checks: a failure says why; a plan's prerequisites come before their
 * dependents; an unsupported agent has a reason; every planned agent builds
 * an IngestionPipeline whose name is its DAG id, within Airflow's 250
 * characters, with a sourceConfig type; plan_describe() always answers.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "airflow.h"
#include "plan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const types[] = { "databaseService", "dashboardService",
	"messagingService", "pipelineService", "mlmodelService", "metadataService",
	"storageService", "searchService", "apiService", "securityService", "table" };

static void
check_pipelines(const struct plan *p, const char *type, const json_t *service,
    const struct sched_plan_view *v)
{
	unsigned i;

	if (v->n == 0 || v->n > SCHED_MAX_AGENTS)
		abort();
	for (i = 0; i < v->n; i++) {
		const struct sched_agent_spec *a = &v->agents[i];
		char *cause = NULL, *dag_id = NULL, *mapped;
		const char *name, *src;
		json_t *doc;

		if ((a->after >> i) != 0 || (!a->supported && a->unsupported_reason == NULL))
			abort();
		doc = plan_pipeline(p, type, service, a->name, 0, &dag_id, &cause);
		if (doc == NULL)
			abort();	/* planned, so it must be deployable */
		name = json_string_value(json_object_get(doc, "name"));
		src = json_string_value(json_object_get(json_object_get(json_object_get(doc,
		    "sourceConfig"), "config"), "type"));
		if (name == NULL || src == NULL || strlen(dag_id) > 250)
			abort();
		mapped = airflow_dag_id_from_name(name);
		if (strcmp(mapped, dag_id) != 0)
			abort();
		free(mapped);
		free(dag_id);
		json_decref(doc);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct plan_options opt = { "http://om:8585", "t" };
	struct sched_plan_view v;
	const json_t *service;
	json_error_t jerr;
	struct plan *p;
	char *cause = NULL;
	json_t *root, *d;
	size_t k;

	if (size > 65536)
		return -1;
	root = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL)
		return 0;
	p = plan_create(root, &opt, &cause);
	if (p == NULL) {
		if (cause == NULL)
			abort();
		free(cause);
		json_decref(root);
		return 0;
	}
	if ((d = plan_describe(p)) == NULL)
		abort();
	json_decref(d);
	service = json_object_get(root, "service");
	for (k = 0; k < sizeof(types) / sizeof(types[0]); k++) {
		if (plan_expand(p, types[k], service, &v, &cause) == 0) {
			check_pipelines(p, types[k], service, &v);
		} else {
			if (cause == NULL)
				abort();
			free(cause);
			cause = NULL;
		}
	}
	plan_free(p);
	json_decref(root);
	return 0;
}
