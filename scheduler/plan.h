/*
 * plan.h — the AutoPilot plan: which agents run for a service, in which
 * order, with which options, and the IngestionPipeline each one deploys.
 *
 * The plan is configuration (the "agents" and "filters" sections), checked
 * once at load: unknown agents or keys, bad `after` lists and cycles are
 * errors naming the key path. For a given service entity the plan expands
 * to the agents that apply to its kind (database services can get every
 * agent, the other kinds `metadata` only), each marked unsupported when the
 * service's connection.config does not carry its supports* flag as true.
 *
 * Pure: jansson and the filter engine; no libevent, no libcurl, never
 * prints, never blocks, so every function may be called from a loop
 * callback. A plan is immutable after plan_create(), so it may be shared.
 * Cost: expanding a database service and building its four pipelines takes
 * about 0.2 ms, most of it compiling the effective filters to check them.
 */
#ifndef AP_PLAN_H
#define AP_PLAN_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "sched.h"

struct plan;

struct plan_options {
	const char *openmetadata_url;	/* e.g. "http://openmetadata:8585"; may be NULL */
	const char *openmetadata_token;	/* JWT for the ingestion runs; may be NULL (SECRET) */
};

/*
 * Reads the "agents" and "filters" sections of config_root (borrowed; NULL
 * or a missing section means the defaults):
 *   "agents": {"<agent>": {"enabled": bool, "run": bool, "after": [agent...],
 *              "timeout_s": s, "retries": n, "retry_backoff_s": s,
 *              "schedule": "cron" | null}}
 * Agents: metadata, lineage, usage, profiler, autoClassification (disabled
 * by default). Default order: lineage and usage after metadata, profiler
 * after usage, autoClassification after metadata. A disabled agent's
 * dependents inherit its prerequisites. opt (may be NULL) is copied.
 * Returns a new plan, or NULL with a new *cause naming the key path
 * ("agents.profiler.after[0]: unknown agent 'usagee'", "agents: cycle
 * metadata -> usage -> metadata").
 */
struct plan *plan_create(const json_t *config_root, const struct plan_options *opt,
    char **cause);
/* Accepts NULL. */
void plan_free(struct plan *p);

/* The scheduler's view of the plan: impl is the struct plan *. */
extern const struct sched_planner plan_sched_planner;

/*
 * The service kind autopilot acts on for an OpenMetadata entity type
 * ("databaseService" -> "database", "dashboardService" -> "dashboard", ...,
 * static), or NULL (securityService, anything that is not a service).
 */
const char *plan_service_kind(const char *entity_type);
/* The OpenMetadata entity types autopilot acts on, NULL-terminated. */
extern const char *const plan_service_types[];

/*
 * The agents for a service (entity borrowed) in plan order, prerequisites
 * first; the same as plan_sched_planner.expand. -1 and a new *cause when the
 * service cannot be planned (not a service kind autopilot acts on, no id or
 * name, a filter pattern that does not compile, no agent enabled).
 */
int plan_expand(const struct plan *p, const char *service_type, const json_t *entity,
    struct sched_plan_view *out, char **cause);

/*
 * Whether a run of the service (entity borrowed) restricted to names
 * (NULL-terminated agent names; NULL: the whole plan) can be planned and
 * each name is in its plan. 0; or -1 and a new *cause, with *bad the index
 * of the name not in the plan, or -1 when the service cannot be planned.
 */
int plan_check_agents(const struct plan *p, const char *service_type,
    const char *fqn, const json_t *entity, const char *const *names, int *bad,
    char **cause);

/* Every agent name, ", "-separated (new string), for messages. */
char *plan_agent_names(void);

/*
 * The IngestionPipeline to deploy for one agent of a service (new
 * reference; it holds the OpenMetadata token when one is configured, so
 * never log it) and its DAG id (*dag_id, new string); now_ms sets the
 * pipeline's startDate (yesterday, midnight UTC, as OpenMetadata does).
 * NULL and a new *cause if the agent does not apply to the service.
 */
json_t *plan_pipeline(const struct plan *p, const char *service_type,
    const json_t *entity, const char *agent, int64_t now_ms, char **dag_id,
    char **cause);

/* The effective plan as a new JSON object, for `autopilot config check`
 * (the token shows only as "set" or "unset"). */
json_t *plan_describe(const struct plan *p);

#endif
