/*
 * pipeline.h — the IngestionPipeline documents autopilot deploys through the
 * OpenMetadata Airflow plugin, built as OpenMetadata's AutoPilot builds them
 * (name, displayName, pipelineType, service reference, sourceConfig with the
 * effective filters, airflowConfig, loggerLevel, provider "automation",
 * openMetadataServerConnection), but with a deterministic name per
 * (service, agent) so a re-run redeploys the same DAG.
 *
 * Pure: jansson, the filter engine's kind table and airflow_dag_id_from_name();
 * no libevent, no libcurl, never prints; every function
 * may be called from a loop callback.
 */
#ifndef AP_PIPELINE_H
#define AP_PIPELINE_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

/* Agents, in their default plan order. */
enum pipeline_agent {
	PIPELINE_METADATA,
	PIPELINE_LINEAGE,
	PIPELINE_USAGE,
	PIPELINE_PROFILER,
	PIPELINE_AUTO_CLASSIFICATION,
	PIPELINE_AGENT_MAX
};

/* "metadata", "lineage", "usage", "profiler", "autoClassification" (also the pipelineType). */
const char *pipeline_agent_name(enum pipeline_agent a);
/* Parses an agent name (exact spelling); false if unknown. */
bool pipeline_agent_parse(const char *name, enum pipeline_agent *out);
/* "Metadata Agent", ... as OpenMetadata names them. */
const char *pipeline_agent_display_name(enum pipeline_agent a);
/* The connection.config flag that says a service supports the agent
 * ("supportsMetadataExtraction", ...; autoClassification uses supportsProfiler). */
const char *pipeline_agent_flag(enum pipeline_agent a);
/* OpenMetadata AutoPilot's default schedule ("0 0 * * 0", ...). */
const char *pipeline_agent_default_schedule(enum pipeline_agent a);

/*
 * The sourceConfig.config type of an agent for a service kind ("database",
 * "dashboard", ...): "DatabaseMetadata", "DashboardMetadata", ...,
 * "Profiler"; NULL when the agent does not apply to the kind (only database
 * services get more than metadata). Static.
 */
const char *pipeline_source_type(const char *kind, enum pipeline_agent a);

/*
 * The deterministic pipeline name of (service, agent): for a service named
 * "sales_pg" of kind database, "sales_pg_database_profiler_autopilot". The
 * name is also the DAG id: a service name with characters outside
 * [0-9a-zA-Z-_] (or longer than 128 bytes) has them replaced by '_' (and is
 * cut) and gets a hash of the real name appended, so two services never
 * share a DAG. Returns a new string.
 */
char *pipeline_name(const char *kind, const char *service_name, enum pipeline_agent a);

struct pipeline_params {
	const char *service_type;	/* entity type, e.g. "databaseService" */
	const json_t *entity;		/* the service entity (borrowed): id, name, ... */
	enum pipeline_agent agent;
	const json_t *filters;		/* effective {KEY: FilterPattern} for the kind (borrowed), or NULL */
	const char *schedule;		/* cron or preset; NULL: no scheduleInterval */
	const char *logger_level;	/* NULL: "INFO" */
	const char *openmetadata_url;	/* NULL: no openMetadataServerConnection */
	const char *openmetadata_token;	/* NULL: no securityConfig */
	int64_t now_ms;			/* startDate is the day before, 00:00 UTC */
};

/*
 * Builds the IngestionPipeline (new reference) and its DAG id (*dag_id,
 * new string). NULL and a new *cause when the service type is not one
 * autopilot acts on, the agent does not apply to it, or the entity has no
 * "id" or no "name" (or "fullyQualifiedName").
 */
json_t *pipeline_build(const struct pipeline_params *pp, char **dag_id, char **cause);

/* Checks a schedule: a five-field cron expression or an Airflow preset
 * ("@daily", ...). */
bool pipeline_schedule_valid(const char *s);

#endif
