/*
 * pipeline.c — IngestionPipeline documents for the OpenMetadata Airflow
 * plugin's /deploy, as OpenMetadata 1.7's AutoPilot builds them: the source
 * config of each agent with the defaults OpenMetadata serialises, the
 * service's effective filters (none for usage; the profiler also gets the
 * Tier1/Tier2 classification filter), the agent's schedule starting
 * yesterday at midnight UTC, and how the ingestion run reaches OpenMetadata.
 *
 * Pure: jansson and the filter engine's kind table; never prints.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "airflow.h"
#include "filter_effective.h"
#include "pipeline.h"
#include "util.h"

/* Longest service-name part of a pipeline name: keeps the DAG id well under
 * Airflow's 250 characters and OpenMetadata's 256. */
#define PIPELINE_SERVICE_PART_MAX 128

static const struct {
	const char *name;
	const char *display;
	const char *flag;
	const char *schedule;
	const char *db_source;	/* sourceConfig type on database services */
} agents[PIPELINE_AGENT_MAX] = {
	{ "metadata", "Metadata Agent", "supportsMetadataExtraction", "0 0 * * 0",
	  "DatabaseMetadata" },
	{ "lineage", "Lineage Agent", "supportsLineageExtraction", "0 2 * * 0",
	  "DatabaseLineage" },
	{ "usage", "Usage Agent", "supportsUsageExtraction", "0 2 * * 0",
	  "DatabaseUsage" },
	{ "profiler", "Profiler Agent", "supportsProfiler", "0 4 * * 0", "Profiler" },
	{ "autoClassification", "AutoClassification Agent", "supportsProfiler",
	  "0 4 * * 0", "AutoClassification" },
};

/* The metadata source config of each service kind; metadata services
 * (Atlas, Alation, ...) ingest databases, so they use DatabaseMetadata. */
static const struct {
	const char *kind;
	const char *source;
} metadata_sources[] = {
	{ "database", "DatabaseMetadata" },
	{ "dashboard", "DashboardMetadata" },
	{ "messaging", "MessagingMetadata" },
	{ "pipeline", "PipelineMetadata" },
	{ "mlmodel", "MlModelMetadata" },
	{ "metadata", "DatabaseMetadata" },
	{ "storage", "StorageMetadata" },
	{ "search", "SearchMetadata" },
	{ "api", "ApiMetadata" },
};

const char *
pipeline_agent_name(enum pipeline_agent a)
{
	return a < PIPELINE_AGENT_MAX ? agents[a].name : "unknown";
}

bool
pipeline_agent_parse(const char *name, enum pipeline_agent *out)
{
	unsigned i;

	for (i = 0; name != NULL && i < PIPELINE_AGENT_MAX; i++) {
		if (strcmp(agents[i].name, name) == 0) {
			*out = (enum pipeline_agent)i;
			return true;
		}
	}
	return false;
}

const char *
pipeline_agent_display_name(enum pipeline_agent a)
{
	return a < PIPELINE_AGENT_MAX ? agents[a].display : "Unknown Agent";
}

const char *
pipeline_agent_flag(enum pipeline_agent a)
{
	return a < PIPELINE_AGENT_MAX ? agents[a].flag : NULL;
}

const char *
pipeline_agent_default_schedule(enum pipeline_agent a)
{
	return a < PIPELINE_AGENT_MAX ? agents[a].schedule : NULL;
}

const char *
pipeline_source_type(const char *kind, enum pipeline_agent a)
{
	size_t i;

	if (kind == NULL || a >= PIPELINE_AGENT_MAX)
		return NULL;
	if (strcmp(kind, "database") == 0)
		return agents[a].db_source;
	if (a != PIPELINE_METADATA)
		return NULL;
	for (i = 0; i < AP_ARRAY_LEN(metadata_sources); i++)
		if (strcmp(metadata_sources[i].kind, kind) == 0)
			return metadata_sources[i].source;
	return NULL;
}

/* FNV-1a, 64 bits: stable across builds and machines. */
static uint64_t
fnv1a64(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3ULL;
	}
	return h;
}

char *
pipeline_name(const char *kind, const char *service_name, enum pipeline_agent a)
{
	char *part = airflow_dag_id_from_name(service_name), *name;
	bool lossy = strcmp(part, service_name) != 0;

	if (strlen(part) > PIPELINE_SERVICE_PART_MAX) {
		part[PIPELINE_SERVICE_PART_MAX] = '\0';
		lossy = true;
	}
	if (lossy)
		name = ap_xprintf("%s_%016llx_%s_%s_autopilot", part,
		    (unsigned long long)fnv1a64(service_name), kind,
		    pipeline_agent_name(a));
	else
		name = ap_xprintf("%s_%s_%s_autopilot", part, kind, pipeline_agent_name(a));
	free(part);
	return name;
}

/*
 * Whether the numbers of one cron field (s, n bytes) lie in [lo, hi], as
 * croniter (which Airflow parses schedules with) insists: "99 * * * *"
 * passes the shape check but gives the deployed DAG an import error.
 * Steps must be positive. Names (MON, JAN) and croniter's L and # forms
 * are left to Airflow.
 */
static bool
cron_field_ok(const char *s, size_t n, long lo, long hi)
{
	size_t i = 0;

	while (i < n) {
		size_t e = i;
		bool step = false;

		while (e < n && s[e] != ',')
			e++;
		for (size_t k = i; k < e; k++) {
			long v;

			if (s[k] == '/') {
				step = true;
				continue;
			}
			if (!isdigit((unsigned char)s[k]))
				continue;
			/* A whole number: a value, a range end, or the step. */
			if (k > i && isalnum((unsigned char)s[k - 1]))
				continue;
			for (v = 0; k < e && isdigit((unsigned char)s[k]); k++)
				if (v < 100000)
					v = v * 10 + (s[k] - '0');
			if (k < e && isalpha((unsigned char)s[k]))
				continue;	/* 5L, a name */
			if (step ? v < 1 : (v < lo || v > hi))
				return false;
			k--;
		}
		i = e + 1;
	}
	return true;
}

bool
pipeline_schedule_valid(const char *s)
{
	static const char *const presets[] = { "@once", "@continuous", "@hourly",
		"@daily", "@weekly", "@monthly", "@quarterly", "@yearly", "@annually",
		"@midnight", NULL };
	/* minute, hour, day of month, month, day of week (0 and 7: Sunday) */
	static const long lo[5] = { 0, 0, 1, 1, 0 }, hi[5] = { 59, 23, 31, 12, 7 };
	const char *field = NULL;
	unsigned fields = 0, i;
	bool in = false;

	if (s == NULL || strlen(s) > 256)
		return false;
	if (s[0] == '@') {
		for (i = 0; presets[i] != NULL; i++)
			if (strcmp(presets[i], s) == 0)
				return true;
		return false;
	}
	for (;; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == ' ' || c == '\t' || c == '\0') {
			if (in && (fields > 5 || !cron_field_ok(field,
			    (size_t)((const char *)s - field), lo[fields - 1],
			    hi[fields - 1])))
				return false;
			in = false;
			if (c == '\0')
				break;
			continue;
		}
		/* Digits, ranges, steps, lists, names (MON, JAN) and ?LW#. */
		if (!isascii(c) || !(isalnum(c) || strchr("*/,-?#", c) != NULL))
			return false;
		if (!in) {
			in = true;
			field = s;
			fields++;
		}
	}
	return fields == 5;
}

/* Copies the FilterPattern objects of keys present in filters into cfg. */
static void
add_filters(json_t *cfg, const json_t *filters)
{
	const char *key;
	json_t *v;

	if (filters == NULL)
		return;
	json_object_foreach((json_t *)filters, key, v)
		json_object_set_new(cfg, key, json_deep_copy(v));
}

static json_t *
source_config(const char *kind, enum pipeline_agent a, const json_t *filters)
{
	json_t *c = json_object();
	const char *type = pipeline_source_type(kind, a);

	json_object_set_new(c, "type", json_string(type));
	if (strcmp(kind, "database") != 0 && strcmp(kind, "metadata") != 0) {
		/* Other kinds: their type and their filter keys only. */
		add_filters(c, filters);
		return c;
	}
	switch (a) {
	case PIPELINE_METADATA:
		add_filters(c, filters);
		json_object_set_new(c, "useFqnForFiltering", json_false());
		json_object_set_new(c, "markDeletedTables", json_true());
		json_object_set_new(c, "includeTables", json_true());
		json_object_set_new(c, "includeViews", json_true());
		json_object_set_new(c, "includeTags", json_true());
		json_object_set_new(c, "includeStoredProcedures", json_true());
		json_object_set_new(c, "pushDownFilter", json_false());
		json_object_set_new(c, "queryLogDuration", json_integer(1));
		json_object_set_new(c, "queryParsingTimeoutLimit", json_integer(300));
		break;
	case PIPELINE_LINEAGE:
		add_filters(c, filters);
		json_object_set_new(c, "queryLogDuration", json_integer(1));
		json_object_set_new(c, "resultLimit", json_integer(1000));
		json_object_set_new(c, "parsingTimeoutLimit", json_integer(300));
		json_object_set_new(c, "overrideViewLineage", json_false());
		json_object_set_new(c, "processViewLineage", json_true());
		json_object_set_new(c, "processQueryLineage", json_true());
		json_object_set_new(c, "processStoredProcedureLineage", json_true());
		json_object_set_new(c, "threads", json_integer(1));
		break;
	case PIPELINE_USAGE:
		/* No filters, as in OpenMetadata. */
		json_object_set_new(c, "queryLogDuration", json_integer(1));
		json_object_set_new(c, "stageFileLocation", json_string("/tmp/query_log"));
		json_object_set_new(c, "resultLimit", json_integer(1000));
		json_object_set_new(c, "processQueryCostAnalysis", json_true());
		break;
	case PIPELINE_PROFILER:
		add_filters(c, filters);
		json_object_set_new(c, "classificationFilterPattern",
		    json_pack("{s:[ss],s:[]}", "includes", "Tier1", "Tier2", "excludes"));
		json_object_set_new(c, "useFqnForFiltering", json_false());
		json_object_set_new(c, "includeViews", json_false());
		json_object_set_new(c, "computeMetrics", json_true());
		json_object_set_new(c, "computeTableMetrics", json_true());
		json_object_set_new(c, "computeColumnMetrics", json_true());
		json_object_set_new(c, "threadCount", json_integer(5));
		json_object_set_new(c, "timeoutSeconds", json_integer(43200));
		break;
	case PIPELINE_AUTO_CLASSIFICATION:
		add_filters(c, filters);
		json_object_set_new(c, "useFqnForFiltering", json_false());
		json_object_set_new(c, "storeSampleData", json_false());
		json_object_set_new(c, "enableAutoClassification", json_true());
		json_object_set_new(c, "confidence", json_integer(80));
		json_object_set_new(c, "sampleDataCount", json_integer(50));
		break;
	default:
		break;
	}
	return c;
}

static json_t *
airflow_config(const char *schedule, int64_t now_ms)
{
	char start[64];
	int64_t day = 86400000;
	/* Yesterday at 00:00 UTC, as OpenMetadata's AutoPilot sets it. */
	int64_t midnight = now_ms - ((now_ms % day) + day) % day - day;
	json_t *a;

	ap_format_time(midnight, start, sizeof start);
	a = json_pack("{s:b,s:i,s:s,s:s,s:i,s:i,s:b}",
	    "pausePipeline", 0, "concurrency", 1, "startDate", start,
	    "pipelineTimezone", "UTC", "retries", 0, "retryDelay", 300,
	    "pipelineCatchup", 0);
	if (schedule != NULL)
		json_object_set_new(a, "scheduleInterval", json_string(schedule));
	json_object_set_new(a, "maxActiveRuns", json_integer(1));
	json_object_set_new(a, "workflowDefaultView", json_string("tree"));
	json_object_set_new(a, "workflowDefaultViewOrientation", json_string("LR"));
	return a;
}

/* hostPort is OpenMetadata's API root: "<url>/api". */
static json_t *
server_connection(const char *url, const char *token)
{
	char *host = ap_om_api_root(url);
	json_t *c;

	c = json_pack("{s:s,s:s,s:s,s:s}", "clusterName", "openmetadata",
	    "type", "OpenMetadata", "hostPort", host, "authProvider", "openmetadata");
	if (token != NULL)
		json_object_set_new(c, "securityConfig",
		    json_pack("{s:s}", "jwtToken", token));
	/* "no-ssl", as OpenMetadata itself sends by default: the ingestion's
	 * client then leaves verification of an https:// server to Python's
	 * requests, which checks it against its CA bundle (certifi's, or
	 * REQUESTS_CA_BUNDLE).
	 * "validate" would want an sslConfig with a CA certificate, and without
	 * one OpenMetadata's client refuses to start ("You have Verify SSL but
	 * the SSL Config is missing"), so every DAG would fail to import. */
	json_object_set_new(c, "verifySSL", json_string("no-ssl"));
	free(host);
	return c;
}

/* OpenMetadata copies the service's owners; keep only well-formed references. */
static json_t *
owners(const json_t *entity)
{
	const json_t *list = json_object_get(entity, "owners"), *o;
	json_t *out = json_array();
	size_t i;

	json_array_foreach(list, i, o) {
		json_t *ref;
		const char *k;
		json_t *v;

		if (!json_is_string(json_object_get(o, "id")) ||
		    !json_is_string(json_object_get(o, "type")))
			continue;
		ref = json_object();
		json_object_foreach((json_t *)o, k, v) {
			if ((strcmp(k, "id") == 0 || strcmp(k, "type") == 0 ||
			    strcmp(k, "name") == 0 || strcmp(k, "fullyQualifiedName") == 0 ||
			    strcmp(k, "displayName") == 0) && json_is_string(v))
				json_object_set(ref, k, v);
		}
		json_array_append_new(out, ref);
	}
	return out;
}

json_t *
pipeline_build(const struct pipeline_params *pp, char **dag_id, char **cause)
{
	const char *kind, *id, *name, *fqn, *display, *source;
	json_t *doc, *svc, *own;
	char *pname;

	kind = filter_kind_from_entity_type(pp->service_type);
	if (kind == NULL) {
		*cause = ap_xprintf("autopilot does not act on %s entities",
		    pp->service_type != NULL ? pp->service_type : "(null)");
		return NULL;
	}
	if ((source = pipeline_source_type(kind, pp->agent)) == NULL) {
		*cause = ap_xprintf("the %s agent does not apply to %s services",
		    pipeline_agent_name(pp->agent), kind);
		return NULL;
	}
	id = json_string_value(json_object_get(pp->entity, "id"));
	name = json_string_value(json_object_get(pp->entity, "name"));
	fqn = json_string_value(json_object_get(pp->entity, "fullyQualifiedName"));
	if (name == NULL || name[0] == '\0')
		name = fqn;
	if (fqn == NULL || fqn[0] == '\0')
		fqn = name;
	if (id == NULL || id[0] == '\0') {
		*cause = ap_xstrdup("service entity: missing \"id\"");
		return NULL;
	}
	if (name == NULL || name[0] == '\0') {
		*cause = ap_xstrdup("service entity: missing \"name\"");
		return NULL;
	}

	pname = pipeline_name(kind, name, pp->agent);
	svc = json_pack("{s:s,s:s,s:s,s:s}", "id", id, "type", pp->service_type,
	    "name", name, "fullyQualifiedName", fqn);
	display = json_string_value(json_object_get(pp->entity, "displayName"));
	if (display != NULL)
		json_object_set_new(svc, "displayName", json_string(display));

	doc = json_object();
	json_object_set_new(doc, "name", json_string(pname));
	json_object_set_new(doc, "displayName",
	    json_string(pipeline_agent_display_name(pp->agent)));
	json_object_set_new(doc, "fullyQualifiedName",
	    json_sprintf("%s.%s", fqn, pname));
	json_object_set_new(doc, "pipelineType",
	    json_string(pipeline_agent_name(pp->agent)));
	own = owners(pp->entity);
	if (json_array_size(own) > 0)
		json_object_set_new(doc, "owners", own);
	else
		json_decref(own);
	json_object_set_new(doc, "service", svc);
	json_object_set_new(doc, "sourceConfig", json_pack("{s:o}", "config",
	    source_config(kind, pp->agent, pp->filters)));
	json_object_set_new(doc, "airflowConfig",
	    airflow_config(pp->schedule, pp->now_ms));
	json_object_set_new(doc, "loggerLevel",
	    json_string(pp->logger_level != NULL ? pp->logger_level : "INFO"));
	json_object_set_new(doc, "provider", json_string("automation"));
	json_object_set_new(doc, "enabled", json_true());
	if (pp->openmetadata_url != NULL)
		json_object_set_new(doc, "openMetadataServerConnection",
		    server_connection(pp->openmetadata_url, pp->openmetadata_token));

	*dag_id = airflow_dag_id_from_name(pname);
	free(pname);
	return doc;
}
