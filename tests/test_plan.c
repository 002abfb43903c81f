/*
 * test_plan.c — the AutoPilot plan and its IngestionPipelines: the default
 * graph, every service kind, supports* flags, configuration overrides and
 * errors (unknown agents and keys, cycles, bad types, with their key
 * paths), disabled agents and their dependents, plan_describe, and
 * deterministic pipeline names and DAG ids.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "airflow.h"
#include "pipeline.h"
#include "plan.h"
#include "util.h"

/* 2026-11-25T07:30:00Z */
#define NOW_MS 1795591800000LL

static json_t *
jparse(const char *text)
{
	json_error_t err;
	json_t *j = json_loads(text, 0, &err);

	if (j == NULL)
		fail_msg("bad test JSON: %s: %s", err.text, text);
	return j;
}

static struct plan *
plan_from(const char *config, char **cause)
{
	json_t *root = config != NULL ? jparse(config) : NULL;
	struct plan_options opt = { "http://om:8585/", "tok-secret-123" };
	struct plan *p;

	*cause = NULL;
	p = plan_create(root, &opt, cause);
	json_decref(root);
	return p;
}

static struct plan *
plan_ok(const char *config)
{
	char *cause = NULL;
	struct plan *p = plan_from(config, &cause);

	if (p == NULL)
		fail_msg("plan_create: %s", cause);
	return p;
}

/* plan_create must fail with a cause starting with want. */
static void
plan_err(const char *config, const char *want)
{
	char *cause = NULL;
	struct plan *p = plan_from(config, &cause);

	assert_null(p);
	assert_non_null(cause);
	if (strncmp(cause, want, strlen(want)) != 0)
		fail_msg("cause '%s', want prefix '%s'", cause, want);
	free(cause);
}

/* A service entity with the four supports* flags (NULL: absent). */
static json_t *
entity(const char *name, const char *connector, const char *flags)
{
	char *text = ap_xprintf("{\"id\": \"id-%s\", \"name\": \"%s\","
	    " \"fullyQualifiedName\": \"%s\", \"serviceType\": \"%s\","
	    " \"connection\": {\"config\": {\"type\": \"%s\"%s%s}}}", name, name, name,
	    connector, connector, flags ? ", " : "", flags ? flags : "");
	json_t *e = jparse(text);

	free(text);
	return e;
}

static const char *all_flags = "\"supportsMetadataExtraction\": true,"
    " \"supportsLineageExtraction\": true, \"supportsUsageExtraction\": true,"
    " \"supportsProfiler\": true";

/* The view as "name[supported/run]<after names>" joined by spaces. */
static char *
view_str(const struct sched_plan_view *v)
{
	struct ap_buf b;
	unsigned i, j;

	ap_buf_init(&b);
	for (i = 0; i < v->n; i++) {
		const struct sched_agent_spec *a = &v->agents[i];

		ap_buf_printf(&b, "%s%s%s%s<", i ? " " : "", a->name,
		    a->supported ? "" : "!", a->run ? "" : "~");
		for (j = 0; j < v->n; j++)
			if (a->after & (1u << j))
				ap_buf_printf(&b, "%s%s", b.data[b.len - 1] == '<' ? "" : ",",
				    v->agents[j].name);
		ap_buf_addc(&b, '>');
	}
	return ap_buf_steal(&b, NULL);
}

static void
expect_view(const struct plan *p, const char *type, const json_t *e, const char *want)
{
	struct sched_plan_view v;
	char *cause = NULL, *got;

	if (plan_expand(p, type, e, &v, &cause) != 0)
		fail_msg("plan_expand(%s): %s", type, cause);
	got = view_str(&v);
	if (strcmp(got, want) != 0)
		fail_msg("%s: view '%s', want '%s'", type, got, want);
	free(got);
}

static void
test_default_graph(void **state)
{
	struct plan *p = plan_ok(NULL);
	json_t *e = entity("sales", "Postgres", all_flags);
	struct sched_plan_view v;
	char *cause = NULL;
	unsigned i;

	expect_view(p, "databaseService", e,
	    "metadata<> lineage<metadata> usage<metadata> profiler<usage>");
	assert_int_equal(plan_expand(p, "databaseService", e, &v, &cause), 0);
	for (i = 0; i < v.n; i++) {
		assert_true(v.agents[i].supported);
		assert_true(v.agents[i].run);
		assert_int_equal(v.agents[i].timeout_ms, 3600000);
		assert_int_equal(v.agents[i].retries, 0);
		assert_int_equal(v.agents[i].retry_backoff_ms, 60000);
	}
	/* The scheduler's planner table is the same plan. */
	memset(&v, 0xff, sizeof v);
	assert_int_equal(plan_sched_planner.expand(p, "databaseService", e, &v, &cause), 0);
	assert_int_equal(v.n, 4);
	assert_string_equal(v.agents[3].name, "profiler");
	assert_int_equal(v.agents[3].after, 1u << 2);
	assert_string_equal(v.warning, "");
	/* A misspelt filter key: planned all the same, with a warning. */
	json_object_set_new(json_object_get(json_object_get(e, "connection"),
	    "config"), "schemaFilterPatern", json_pack("{s:[s]}", "excludes", "^x"));
	assert_int_equal(plan_expand(p, "databaseService", e, &v, &cause), 0);
	assert_int_equal(v.n, 4);
	assert_string_equal(v.warning, "connection.config.schemaFilterPatern: not"
	    " a filter key, so it filters nothing (did you mean"
	    " schemaFilterPattern?)");
	json_decref(e);
	plan_free(p);
	plan_free(NULL);
}

static void
test_service_kinds(void **state)
{
	static const struct {
		const char *type, *kind, *source;
	} kinds[] = {
		{ "databaseService", "database", "DatabaseMetadata" },
		{ "dashboardService", "dashboard", "DashboardMetadata" },
		{ "messagingService", "messaging", "MessagingMetadata" },
		{ "pipelineService", "pipeline", "PipelineMetadata" },
		{ "mlmodelService", "mlmodel", "MlModelMetadata" },
		{ "metadataService", "metadata", "DatabaseMetadata" },
		{ "storageService", "storage", "StorageMetadata" },
		{ "searchService", "search", "SearchMetadata" },
		{ "apiService", "api", "ApiMetadata" },
	};
	struct plan *p = plan_ok("{\"agents\": {\"autoClassification\": {\"enabled\": true}}}");
	json_t *e = entity("svc", "Looker", all_flags), *doc;
	struct sched_plan_view v;
	char *cause = NULL, *dag = NULL;
	size_t i;

	for (i = 0; i < AP_ARRAY_LEN(kinds); i++) {
		assert_string_equal(plan_service_kind(kinds[i].type), kinds[i].kind);
		assert_string_equal(pipeline_source_type(kinds[i].kind, PIPELINE_METADATA),
		    kinds[i].source);
		if (i == 0)
			continue;
		expect_view(p, kinds[i].type, e, "metadata<>");
		assert_null(pipeline_source_type(kinds[i].kind, PIPELINE_USAGE));
		doc = plan_pipeline(p, kinds[i].type, e, "lineage", NOW_MS, &dag, &cause);
		assert_null(doc);
		assert_non_null(strstr(cause, "does not apply"));
		free(cause);
		cause = NULL;
	}
	expect_view(p, "databaseService", e, "metadata<> lineage<metadata>"
	    " usage<metadata> profiler<usage> autoClassification<metadata>");
	assert_null(plan_service_kind("securityService"));
	assert_null(plan_service_kind("table"));
	assert_null(plan_service_kind(NULL));
	assert_int_equal(plan_expand(p, "securityService", e, &v, &cause), -1);
	assert_non_null(strstr(cause, "securityService"));
	free(cause);
	json_decref(e);
	plan_free(p);
}

static void
test_supports_flags(void **state)
{
	struct plan *p = plan_ok(NULL);
	json_t *e = entity("s", "Mysql", "\"supportsMetadataExtraction\": true,"
	    " \"supportsLineageExtraction\": false, \"supportsUsageExtraction\": \"true\"");
	struct sched_plan_view v;
	char *cause = NULL;

	/* Absent or not exactly true: unsupported, as OpenMetadata decides. */
	expect_view(p, "databaseService", e,
	    "metadata<> lineage!<metadata> usage!<metadata> profiler!<usage>");
	assert_int_equal(plan_expand(p, "databaseService", e, &v, &cause), 0);
	assert_non_null(strstr(v.agents[2].unsupported_reason, "supportsUsageExtraction"));
	assert_non_null(strstr(v.agents[3].unsupported_reason, "supportsProfiler"));
	assert_null(v.agents[0].unsupported_reason);
	json_decref(e);

	/* No connection at all: everything unsupported, still planned. */
	e = jparse("{\"id\": \"x\", \"name\": \"bare\"}");
	expect_view(p, "dashboardService", e, "metadata!<>");
	/* ... saying why, so a run that deploys nothing is explained. */
	assert_int_equal(plan_expand(p, "dashboardService", e, &v, &cause), 0);
	assert_non_null(strstr(v.agents[0].unsupported_reason,
	    "no connection configuration"));
	json_decref(e);

	/* No id / no name: cannot be planned or deployed. */
	e = jparse("{\"name\": \"noid\"}");
	assert_int_equal(plan_expand(p, "databaseService", e, &v, &cause), -1);
	assert_string_equal(cause, "service entity: missing \"id\"");
	free(cause);
	json_decref(e);
	e = jparse("{\"id\": \"x\"}");
	assert_int_equal(plan_expand(p, "databaseService", e, &v, &cause), -1);
	assert_string_equal(cause, "service entity: missing \"name\"");
	free(cause);
	json_decref(e);
	plan_free(p);
}

static void
test_overrides(void **state)
{
	struct plan *p = plan_ok("{\"agents\": {"
	    "\"profiler\": {\"run\": false, \"after\": [\"metadata\"], \"timeout_s\": 0.5,"
	    "  \"retries\": 3, \"retry_backoff_s\": 2, \"schedule\": \"@daily\"},"
	    "\"lineage\": {\"schedule\": null, \"after\": []},"
	    "\"usage\": {\"timeout_s\": 7200, \"retry_backoff_s\": 0}}}");
	json_t *e = entity("ov", "Snowflake", all_flags), *doc, *af;
	struct sched_plan_view v;
	char *cause = NULL, *dag = NULL;

	expect_view(p, "databaseService", e,
	    "metadata<> lineage<> usage<metadata> profiler~<metadata>");
	assert_int_equal(plan_expand(p, "databaseService", e, &v, &cause), 0);
	assert_int_equal(v.agents[3].timeout_ms, 500);
	assert_int_equal(v.agents[3].retries, 3);
	assert_int_equal(v.agents[3].retry_backoff_ms, 2000);
	assert_int_equal(v.agents[2].timeout_ms, 7200000);
	assert_int_equal(v.agents[2].retry_backoff_ms, 0);

	doc = plan_pipeline(p, "databaseService", e, "profiler", NOW_MS, &dag, &cause);
	assert_non_null(doc);
	af = json_object_get(doc, "airflowConfig");
	assert_string_equal(json_string_value(json_object_get(af, "scheduleInterval")),
	    "@daily");
	assert_string_equal(json_string_value(json_object_get(af, "startDate")),
	    "2026-11-24T00:00:00.000Z");
	json_decref(doc);
	free(dag);
	doc = plan_pipeline(p, "databaseService", e, "lineage", NOW_MS, &dag, &cause);
	assert_null(json_object_get(json_object_get(doc, "airflowConfig"),
	    "scheduleInterval"));
	json_decref(doc);
	free(dag);
	doc = plan_pipeline(p, "databaseService", e, "metadata", NOW_MS, &dag, &cause);
	assert_string_equal(json_string_value(json_object_get(json_object_get(doc,
	    "airflowConfig"), "scheduleInterval")), "0 0 * * 0");
	json_decref(doc);
	free(dag);
	json_decref(e);
	plan_free(p);
}

static void
test_disabled(void **state)
{
	struct plan *p = plan_ok("{\"agents\": {\"usage\": {\"enabled\": false}}}");
	json_t *e = entity("d", "Postgres", all_flags);
	struct sched_plan_view v;
	char *cause = NULL;

	/* The profiler inherits usage's prerequisite. */
	expect_view(p, "databaseService", e,
	    "metadata<> lineage<metadata> profiler<metadata>");
	plan_free(p);

	/* Through two disabled agents. */
	p = plan_ok("{\"agents\": {\"usage\": {\"enabled\": false, \"after\": [\"lineage\"]},"
	    " \"lineage\": {\"enabled\": false}}}");
	expect_view(p, "databaseService", e, "metadata<> profiler<metadata>");
	plan_free(p);

	/* Metadata disabled: dependents start at once; other kinds have nothing. */
	p = plan_ok("{\"agents\": {\"metadata\": {\"enabled\": false}}}");
	expect_view(p, "databaseService", e, "lineage<> usage<> profiler<usage>");
	assert_int_equal(plan_expand(p, "dashboardService", e, &v, &cause), -1);
	assert_non_null(strstr(cause, "no agent of the plan applies to dashboard"));
	free(cause);
	plan_free(p);

	/* Only metadata applies to a dashboard: a metadata placed after usage
	 * there still has no prerequisite. */
	p = plan_ok("{\"agents\": {\"metadata\": {\"after\": [\"usage\"]},"
	    " \"usage\": {\"after\": []}}}");
	expect_view(p, "dashboardService", e, "metadata<>");
	expect_view(p, "databaseService", e,
	    "usage<> metadata<usage> lineage<metadata> profiler<usage>");
	plan_free(p);
	json_decref(e);
}

static void
test_config_errors(void **state)
{
	plan_err("[]", "the configuration must be a JSON object");
	plan_err("{\"agents\": []}", "agents: must be an object");
	plan_err("{\"agents\": {\"usagee\": {}}}", "agents.usagee: unknown agent (known: "
	    "metadata, lineage, usage, profiler, autoClassification)");
	plan_err("{\"agents\": {\"profiler\": {\"after\": [\"usagee\"]}}}",
	    "agents.profiler.after[0]: unknown agent 'usagee'");
	plan_err("{\"agents\": {\"profiler\": {\"after\": [\"usage\", \"usage\"]}}}",
	    "agents.profiler.after[1]: 'usage' is listed twice");
	plan_err("{\"agents\": {\"profiler\": {\"after\": \"usage\"}}}",
	    "agents.profiler.after: must be an array");
	plan_err("{\"agents\": {\"profiler\": {\"after\": [1]}}}",
	    "agents.profiler.after[0]: must be an agent name");
	plan_err("{\"agents\": {\"profiler\": 3}}", "agents.profiler: must be an object");
	plan_err("{\"agents\": {\"lineage\": {\"enabled\": \"yes\"}}}",
	    "agents.lineage.enabled: must be true or false");
	plan_err("{\"agents\": {\"lineage\": {\"run\": 1}}}",
	    "agents.lineage.run: must be true or false");
	plan_err("{\"agents\": {\"usage\": {\"timeout_s\": \"10\"}}}",
	    "agents.usage.timeout_s: must be a number");
	plan_err("{\"agents\": {\"usage\": {\"timeout_s\": 0}}}",
	    "agents.usage.timeout_s: must be > 0");
	plan_err("{\"agents\": {\"usage\": {\"timeout_s\": 1e12}}}",
	    "agents.usage.timeout_s: must be > 0");
	plan_err("{\"agents\": {\"usage\": {\"retry_backoff_s\": -1}}}",
	    "agents.usage.retry_backoff_s: must be >= 0");
	plan_err("{\"agents\": {\"usage\": {\"retries\": -1}}}",
	    "agents.usage.retries: must be an integer between 0 and 100");
	plan_err("{\"agents\": {\"usage\": {\"retries\": 1.5}}}",
	    "agents.usage.retries: must be an integer");
	plan_err("{\"agents\": {\"usage\": {\"schedule\": \"every sunday\"}}}",
	    "agents.usage.schedule: must be a five-field cron expression");
	plan_err("{\"agents\": {\"usage\": {\"schedule\": \"0 2 * *\"}}}",
	    "agents.usage.schedule: must be a five-field");
	plan_err("{\"agents\": {\"usage\": {\"schedule\": \"0 25 * * 0\"}}}",
	    "agents.usage.schedule: must be a five-field cron expression (\"0 2 * * 0\";"
	    " minute 0-59, hour 0-23");
	plan_err("{\"agents\": {\"usage\": {\"schedule\": 5}}}",
	    "agents.usage.schedule: must be");
	plan_err("{\"agents\": {\"usage\": {\"timeout\": 5}}}",
	    "agents.usage.timeout: unknown key (known: enabled, run, after, timeout_s,");
	plan_err("{\"filters\": {\"defaults\": {\"byServiceKind\": {\"database\":"
	    " {\"tableFilterPattern\": {\"excludes\": [\"(\"]}}}}}}",
	    "filters.defaults.byServiceKind.database");
	plan_err("{\"filters\": {\"nope\": 1}}", "filters.nope: unknown key");
}

static void
test_cycles(void **state)
{
	plan_err("{\"agents\": {\"metadata\": {\"after\": [\"usage\"]}}}",
	    "agents: cycle metadata -> usage -> metadata");
	plan_err("{\"agents\": {\"usage\": {\"after\": [\"usage\"]}}}",
	    "agents: cycle usage -> usage");
	plan_err("{\"agents\": {\"metadata\": {\"after\": [\"profiler\"]}}}",
	    "agents: cycle metadata -> usage -> profiler -> metadata");
	/* A cycle through a disabled agent is still a contradiction. */
	plan_err("{\"agents\": {\"autoClassification\": {\"after\": [\"profiler\"]},"
	    " \"usage\": {\"after\": [\"autoClassification\"]}}}",
	    "agents: cycle usage -> profiler -> autoClassification -> usage");
	/* Annotations are not agents or keys. */
	plan_free(plan_ok("{\"agents\": {\"$comment\": \"x\", \"usage\":"
	    " {\"$comment\": \"y\"}}}"));
	/* Not a cycle: a diamond. */
	plan_free(plan_ok("{\"agents\": {\"profiler\": {\"after\": [\"usage\","
	    " \"lineage\"]}}}"));
}

static void
test_describe(void **state)
{
	struct plan *p = plan_ok("{\"agents\": {\"usage\": {\"enabled\": false},"
	    " \"profiler\": {\"timeout_s\": 1.5}},"
	    " \"filters\": {\"defaults\": {\"byServiceKind\": {\"database\":"
	    " {\"schemaFilterPattern\": {\"excludes\": [\"^tmp_\"]}}}}}}");
	json_t *d = plan_describe(p), *ag, *prof = NULL;
	char *text = json_dumps(d, JSON_COMPACT);
	size_t i;

	assert_null(strstr(text, "tok-secret-123"));
	assert_non_null(strstr(text, "\"token\":\"set\""));
	assert_non_null(strstr(text, "\"order\":[\"metadata\",\"lineage\",\"profiler\"]"));
	assert_non_null(strstr(text, "^tmp_"));
	ag = json_object_get(d, "agents");
	assert_int_equal(json_array_size(ag), 5);
	for (i = 0; i < json_array_size(ag); i++)
		if (strcmp(json_string_value(json_object_get(json_array_get(ag, i),
		    "agent")), "profiler") == 0)
			prof = json_array_get(ag, i);
	assert_non_null(prof);
	assert_int_equal(json_array_size(json_object_get(prof, "after")), 1);
	assert_string_equal(json_string_value(json_array_get(json_object_get(prof,
	    "after"), 0)), "usage");
	assert_int_equal(json_array_size(json_object_get(prof, "effective_after")), 1);
	assert_string_equal(json_string_value(json_array_get(json_object_get(prof,
	    "effective_after"), 0)), "metadata");
	assert_true(json_real_value(json_object_get(prof, "timeout_s")) == 1.5);
	assert_string_equal(json_string_value(json_object_get(json_object_get(
	    json_object_get(json_object_get(d, "service_types"), "dashboardService"),
	    "agents"), "metadata")), "DashboardMetadata");
	free(text);
	json_decref(d);
	plan_free(p);
}

static void
test_names(void **state)
{
	struct plan *p = plan_ok(NULL);
	json_t *a = entity("sales_pg", "Postgres", all_flags);
	json_t *b = entity("sales.pg", "Postgres", all_flags);
	json_t *c = entity("sales pg", "Postgres", all_flags);
	json_t *d1, *d2;
	char *cause = NULL, *id1 = NULL, *id2 = NULL, *id3 = NULL, *n, *longname;
	struct ap_buf lb;
	unsigned i;

	d1 = plan_pipeline(p, "databaseService", a, "profiler", NOW_MS, &id1, &cause);
	d2 = plan_pipeline(p, "databaseService", a, "profiler", NOW_MS + 86400000LL * 3,
	    &id2, &cause);
	assert_string_equal(id1, "sales_pg_database_profiler_autopilot");
	assert_string_equal(id1, id2);
	assert_string_equal(json_string_value(json_object_get(d1, "name")), id1);
	assert_string_equal(json_string_value(json_object_get(d1, "fullyQualifiedName")),
	    "sales_pg.sales_pg_database_profiler_autopilot");
	json_decref(d1);
	json_decref(d2);
	free(id2);

	/* Names that the plugin would map to the same DAG id stay apart. */
	d1 = plan_pipeline(p, "databaseService", b, "profiler", NOW_MS, &id2, &cause);
	d2 = plan_pipeline(p, "databaseService", c, "profiler", NOW_MS, &id3, &cause);
	assert_true(ap_startswith(id2, "sales_pg_"));
	assert_true(ap_endswith(id2, "_database_profiler_autopilot"));
	assert_string_not_equal(id1, id2);
	assert_string_not_equal(id2, id3);
	assert_string_not_equal(id1, id3);
	json_decref(d1);
	json_decref(d2);
	free(id1);
	free(id2);
	free(id3);

	/* Kinds and agents never share a name. */
	n = pipeline_name("database", "x", PIPELINE_METADATA);
	id1 = pipeline_name("dashboard", "x", PIPELINE_METADATA);
	id2 = pipeline_name("database", "x", PIPELINE_LINEAGE);
	assert_string_not_equal(n, id1);
	assert_string_not_equal(n, id2);
	free(n);
	free(id1);
	free(id2);

	/* Long names are cut and hashed, within Airflow's 250 characters. */
	ap_buf_init(&lb);
	for (i = 0; i < 300; i++)
		ap_buf_addc(&lb, 'a');
	longname = ap_buf_steal(&lb, NULL);
	n = pipeline_name("database", longname, PIPELINE_AUTO_CLASSIFICATION);
	assert_true(strlen(n) <= 250);
	longname[299] = 'b';
	id1 = pipeline_name("database", longname, PIPELINE_AUTO_CLASSIFICATION);
	assert_string_not_equal(n, id1);
	id2 = airflow_dag_id_from_name(id1);
	assert_string_equal(id1, id2);
	free(n);
	free(id1);
	free(id2);
	free(longname);

	n = airflow_dag_id_from_name("a..b c/d-e_f\xc3\xa9g");
	assert_string_equal(n, "a_b_c_d-e_f_g");
	free(n);
	json_decref(a);
	json_decref(b);
	json_decref(c);
	plan_free(p);
}

static void
test_pipeline_content(void **state)
{
	struct plan *p = plan_ok("{\"filters\": {\"defaults\": {\"byServiceKind\":"
	    " {\"database\": {\"tableFilterPattern\": {\"excludes\": [\"^tmp_\"]}}}}}}");
	json_t *e = jparse("{\"id\": \"u-1\", \"name\": \"pg\", \"fullyQualifiedName\": \"pg\","
	    " \"displayName\": \"Sales PG\","
	    " \"owners\": [{\"id\": \"o1\", \"type\": \"user\", \"name\": \"ann\","
	    "   \"href\": \"http://x\"}, {\"name\": \"broken\"}],"
	    " \"connection\": {\"config\": {\"type\": \"Postgres\","
	    "  \"schemaFilterPattern\": {\"includes\": [\"^sales\"], \"excludes\": []}}}}");
	json_t *doc, *sc, *om, *svc;
	char *cause = NULL, *dag = NULL, *text;

	doc = plan_pipeline(p, "databaseService", e, "metadata", NOW_MS, &dag, &cause);
	assert_non_null(doc);
	sc = json_object_get(json_object_get(doc, "sourceConfig"), "config");
	assert_string_equal(json_string_value(json_object_get(sc, "type")),
	    "DatabaseMetadata");
	text = json_dumps(sc, JSON_COMPACT | JSON_SORT_KEYS);
	/* Built-in defaults for Postgres, the configuration's and the service's own. */
	assert_non_null(strstr(text, "\"databaseFilterPattern\":{\"excludes\":"
	    "[\"^template1$\",\"^template0$\"],\"includes\":[]}"));
	assert_non_null(strstr(text, "\"schemaFilterPattern\":{\"excludes\":"
	    "[\"^information_schema$\"],\"includes\":[\"^sales\"]}"));
	assert_non_null(strstr(text, "\"tableFilterPattern\":{\"excludes\":[\"^tmp_\"],"
	    "\"includes\":[]}"));
	free(text);
	assert_string_equal(json_string_value(json_object_get(doc, "pipelineType")),
	    "metadata");
	assert_string_equal(json_string_value(json_object_get(doc, "displayName")),
	    "Metadata Agent");
	assert_string_equal(json_string_value(json_object_get(doc, "provider")),
	    "automation");
	assert_string_equal(json_string_value(json_object_get(doc, "loggerLevel")), "INFO");
	svc = json_object_get(doc, "service");
	assert_string_equal(json_string_value(json_object_get(svc, "id")), "u-1");
	assert_string_equal(json_string_value(json_object_get(svc, "type")),
	    "databaseService");
	assert_string_equal(json_string_value(json_object_get(svc, "displayName")),
	    "Sales PG");
	assert_int_equal(json_array_size(json_object_get(doc, "owners")), 1);
	assert_null(json_object_get(json_array_get(json_object_get(doc, "owners"), 0),
	    "href"));
	om = json_object_get(doc, "openMetadataServerConnection");
	assert_string_equal(json_string_value(json_object_get(om, "hostPort")),
	    "http://om:8585/api");
	assert_string_equal(json_string_value(json_object_get(json_object_get(om,
	    "securityConfig"), "jwtToken")), "tok-secret-123");
	json_decref(doc);
	free(dag);

	/* Usage: no filters. Profiler: filters and the Tier1/Tier2 classification. */
	doc = plan_pipeline(p, "databaseService", e, "usage", NOW_MS, &dag, &cause);
	sc = json_object_get(json_object_get(doc, "sourceConfig"), "config");
	assert_string_equal(json_string_value(json_object_get(sc, "type")), "DatabaseUsage");
	assert_null(json_object_get(sc, "schemaFilterPattern"));
	assert_null(json_object_get(sc, "databaseFilterPattern"));
	json_decref(doc);
	free(dag);
	doc = plan_pipeline(p, "databaseService", e, "profiler", NOW_MS, &dag, &cause);
	sc = json_object_get(json_object_get(doc, "sourceConfig"), "config");
	assert_string_equal(json_string_value(json_object_get(sc, "type")), "Profiler");
	assert_non_null(json_object_get(sc, "schemaFilterPattern"));
	text = json_dumps(json_object_get(json_object_get(sc, "classificationFilterPattern"),
	    "includes"), JSON_COMPACT);
	assert_string_equal(text, "[\"Tier1\",\"Tier2\"]");
	free(text);
	json_decref(doc);
	free(dag);
	doc = plan_pipeline(p, "databaseService", e, "autoClassification", NOW_MS, &dag,
	    &cause);
	sc = json_object_get(json_object_get(doc, "sourceConfig"), "config");
	assert_true(json_is_true(json_object_get(sc, "enableAutoClassification")));
	assert_true(json_is_false(json_object_get(sc, "storeSampleData")));
	json_decref(doc);
	free(dag);

	/* The scheduler's table takes the clock itself. */
	doc = plan_sched_planner.pipeline(p, "databaseService", e, "lineage", &dag, &cause);
	assert_string_equal(dag, "pg_database_lineage_autopilot");
	json_decref(doc);
	free(dag);

	assert_null(plan_pipeline(p, "databaseService", e, "usagee", NOW_MS, &dag, &cause));
	assert_string_equal(cause, "unknown agent 'usagee'");
	free(cause);
	cause = NULL;
	json_decref(e);

	/* A service pattern that does not compile fails the plan of that service. */
	e = jparse("{\"id\": \"u-2\", \"name\": \"bad\", \"connection\": {\"config\":"
	    " {\"type\": \"Postgres\", \"tableFilterPattern\": {\"includes\": [\"(\"]}}}}");
	{
		struct sched_plan_view v;

		assert_int_equal(plan_expand(p, "databaseService", e, &v, &cause), -1);
		assert_non_null(strstr(cause, "tableFilterPattern"));
		free(cause);
		cause = NULL;
	}
	assert_null(plan_pipeline(p, "databaseService", e, "metadata", NOW_MS, &dag,
	    &cause));
	free(cause);
	json_decref(e);
	plan_free(p);

	/* No OpenMetadata URL: no server connection; a URL ending in /api is kept. */
	{
		struct plan_options opt = { "https://om.example/api", NULL };
		json_t *e2 = entity("k", "Kafka", all_flags);

		p = plan_create(NULL, NULL, &cause);
		doc = plan_pipeline(p, "messagingService", e2, "metadata", NOW_MS, &dag,
		    &cause);
		assert_null(json_object_get(doc, "openMetadataServerConnection"));
		assert_string_equal(json_string_value(json_object_get(json_object_get(
		    json_object_get(doc, "sourceConfig"), "config"), "type")),
		    "MessagingMetadata");
		json_decref(doc);
		free(dag);
		plan_free(p);
		p = plan_create(NULL, &opt, &cause);
		doc = plan_pipeline(p, "messagingService", e2, "metadata", NOW_MS, &dag,
		    &cause);
		om = json_object_get(doc, "openMetadataServerConnection");
		assert_string_equal(json_string_value(json_object_get(om, "hostPort")),
		    "https://om.example/api");
		assert_null(json_object_get(om, "securityConfig"));
		/* Not "validate", which OpenMetadata's client refuses without an
		 * sslConfig: with "no-ssl", requests still verifies https. */
		assert_string_equal(json_string_value(json_object_get(om, "verifySSL")),
		    "no-ssl");
		assert_null(json_object_get(om, "sslConfig"));
		json_decref(doc);
		free(dag);
		plan_free(p);
		json_decref(e2);
	}
}

/* The schemaFilterPattern excludes of e's metadata pipeline, as compact JSON (new). */
static char *
schema_excludes(struct plan *p, const char *entity)
{
	json_t *e = jparse(entity), *doc;
	char *cause = NULL, *dag = NULL, *text;

	doc = plan_pipeline(p, "databaseService", e, "metadata", NOW_MS, &dag, &cause);
	assert_non_null(doc);
	text = json_dumps(json_object_get(json_object_get(json_object_get(json_object_get(
	    doc, "sourceConfig"), "config"), "schemaFilterPattern"), "excludes"),
	    JSON_COMPACT);
	json_decref(doc);
	json_decref(e);
	free(dag);
	return text;
}

static void
test_filters_of_alike_services(void **state)
{
	struct plan *p = plan_ok(NULL);
	const char *own = "{\"id\": \"a\", \"name\": \"a\", \"connection\":"
	    " {\"config\": {\"type\": \"Postgres\", \"schemaFilterPattern\":"
	    " {\"excludes\": [\"^x$\"]}}}}";
	const char *plain = "{\"id\": \"b\", \"name\": \"b\", \"connection\":"
	    " {\"config\": {\"type\": \"Postgres\"}}}";
	const char *mysql = "{\"id\": \"c\", \"name\": \"c\", \"serviceType\": \"Mysql\"}";
	const char *bad = "{\"id\": \"d\", \"name\": \"d\", \"connection\":"
	    " {\"config\": {\"type\": \"Postgres\", \"schemaFilterPattern\":"
	    " {\"excludes\": [\"(\"]}}}}";
	json_t *e = jparse(bad), *doc;
	char *t, *cause = NULL, *dag = NULL;
	int i;

	/* Services alike share their filters; each keeps its own patterns and
	 * its connector's defaults, whatever was planned before. */
	for (i = 0; i < 2; i++) {
		t = schema_excludes(p, own);
		assert_string_equal(t, "[\"^information_schema$\",\"^x$\"]");
		free(t);
		t = schema_excludes(p, plain);
		assert_string_equal(t, "[\"^information_schema$\"]");
		free(t);
		t = schema_excludes(p, mysql);
		assert_string_equal(t, "[\"^information_schema$\",\"^performance_schema$\"]");
		free(t);
		/* A pattern that does not compile fails every time. */
		doc = plan_pipeline(p, "databaseService", e, "metadata", NOW_MS, &dag, &cause);
		assert_null(doc);
		assert_non_null(strstr(cause, "invalid pattern '('"));
		free(cause);
		cause = NULL;
	}
	json_decref(e);
	plan_free(p);
}

static void
test_schedule_syntax(void **state)
{
	assert_true(pipeline_schedule_valid("0 0 * * 0"));
	assert_true(pipeline_schedule_valid("*/15 1-5 * JAN,FEB MON-FRI"));
	assert_true(pipeline_schedule_valid("@weekly"));
	assert_false(pipeline_schedule_valid("@fortnightly"));
	assert_false(pipeline_schedule_valid("0 0 * * 0 1"));
	assert_false(pipeline_schedule_valid(""));
	assert_false(pipeline_schedule_valid("0 0 * * $"));
	assert_false(pipeline_schedule_valid(NULL));
	/* Values croniter refuses (the DAG would not import). */
	assert_false(pipeline_schedule_valid("99 99 * * *"));
	assert_false(pipeline_schedule_valid("0 24 * * *"));
	assert_false(pipeline_schedule_valid("60 0 * * *"));
	assert_false(pipeline_schedule_valid("0 0 0 * *"));
	assert_false(pipeline_schedule_valid("0 0 1,32 * *"));
	assert_false(pipeline_schedule_valid("0 0 * 13 *"));
	assert_false(pipeline_schedule_valid("0 0 * * 8"));
	assert_false(pipeline_schedule_valid("*/0 * * * *"));
	assert_true(pipeline_schedule_valid("0-59/5 0-23 1-31 1-12 0-7"));
	assert_true(pipeline_schedule_valid("0 0 L * 5L"));
	assert_true(pipeline_schedule_valid("0 0 * * 1#2"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_default_graph),
		cmocka_unit_test(test_service_kinds),
		cmocka_unit_test(test_supports_flags),
		cmocka_unit_test(test_overrides),
		cmocka_unit_test(test_disabled),
		cmocka_unit_test(test_config_errors),
		cmocka_unit_test(test_cycles),
		cmocka_unit_test(test_describe),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_pipeline_content),
		cmocka_unit_test(test_filters_of_alike_services),
		cmocka_unit_test(test_schedule_syntax),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
