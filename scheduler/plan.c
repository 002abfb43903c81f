/*
 * plan.c — the AutoPilot plan: the agents' dependency graph and options
 * from the "agents" section, the organisation's filters from the "filters"
 * section, and their expansion for one service entity into what the
 * scheduler runs (struct sched_plan_view) and deploys (IngestionPipeline).
 *
 * The graph is validated once, at load. At expansion, agents that are
 * disabled or do not apply to the service's kind leave the graph and their
 * dependents inherit their prerequisites (so disabling usage makes the
 * profiler follow metadata); agents the service does not support stay in
 * it, marked unsupported: the scheduler skips them as success, as
 * OpenMetadata's AutoPilot does.
 *
 * Pure: jansson, the filter engine and the pipeline builder; never prints.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filter_effective.h"
#include "pipeline.h"
#include "plan.h"
#include "util.h"

#define PLAN_DEFAULT_TIMEOUT_MS (3600 * 1000LL)
#define PLAN_DEFAULT_BACKOFF_MS (60 * 1000LL)
#define PLAN_MAX_TIMEOUT_S (30.0 * 86400)
#define PLAN_MAX_BACKOFF_S 86400.0
#define PLAN_MAX_RETRIES 100

#define BIT(a) (1u << (unsigned)(a))

struct plan_agent {
	bool enabled;
	bool run;
	uint32_t after;		/* configured prerequisites: bits of enum pipeline_agent */
	int64_t timeout_ms;
	unsigned retries;
	int64_t retry_backoff_ms;
	char *schedule;		/* NULL: deployed without a schedule */
};

/*
 * The effective filters of recent services, by what they are a function of
 * (the kind, the connector and the service's own *FilterPattern values, see
 * filter_effective.h): services alike (most share their connector's
 * defaults) have their patterns compiled and checked once, not at planning
 * and again for each agent's pipeline. A few entries, replaced in turn.
 */
#define PLAN_FILTER_CACHE 8

struct plan_filter_cache {
	char *key[PLAN_FILTER_CACHE];
	json_t *filters[PLAN_FILTER_CACHE];
	unsigned next;
};

struct plan {
	struct plan_agent a[PIPELINE_AGENT_MAX];
	/* Every agent in dependency order, ties broken by the enum order. */
	enum pipeline_agent order[PIPELINE_AGENT_MAX];
	struct filter_config filters;
	char *om_url;
	char *om_token;		/* SECRET */
	struct plan_filter_cache *fcache;	/* not part of the plan's value */
};

static const char *const agent_keys[] = { "enabled", "run", "after", "timeout_s",
	"retries", "retry_backoff_s", "schedule", NULL };

/* Static reasons for sched_agent_spec.unsupported_reason. */
static const char *const unsupported_reasons[PIPELINE_AGENT_MAX] = {
	"not supported by the service (connection.config.supportsMetadataExtraction"
	    " is not true)",
	"not supported by the service (connection.config.supportsLineageExtraction"
	    " is not true)",
	"not supported by the service (connection.config.supportsUsageExtraction"
	    " is not true)",
	"not supported by the service (connection.config.supportsProfiler is not"
	    " true)",
	"not supported by the service (connection.config.supportsProfiler is not"
	    " true)",
};

const char *const plan_service_types[] = { "databaseService", "dashboardService",
	"messagingService", "pipelineService", "mlmodelService", "metadataService",
	"storageService", "searchService", "apiService", NULL };

const char *
plan_service_kind(const char *entity_type)
{
	return filter_kind_from_entity_type(entity_type);
}

static void
plan_defaults(struct plan *p)
{
	unsigned i;

	for (i = 0; i < PIPELINE_AGENT_MAX; i++) {
		struct plan_agent *a = &p->a[i];

		a->enabled = i != PIPELINE_AUTO_CLASSIFICATION;
		a->run = true;
		a->timeout_ms = PLAN_DEFAULT_TIMEOUT_MS;
		a->retries = 0;
		a->retry_backoff_ms = PLAN_DEFAULT_BACKOFF_MS;
		a->schedule = ap_xstrdup(pipeline_agent_default_schedule(i));
	}
	p->a[PIPELINE_METADATA].after = 0;
	p->a[PIPELINE_LINEAGE].after = BIT(PIPELINE_METADATA);
	p->a[PIPELINE_USAGE].after = BIT(PIPELINE_METADATA);
	p->a[PIPELINE_PROFILER].after = BIT(PIPELINE_USAGE);
	p->a[PIPELINE_AUTO_CLASSIFICATION].after = BIT(PIPELINE_METADATA);
}

char *
plan_agent_names(void)
{
	struct ap_buf b;
	unsigned i;

	ap_buf_init(&b);
	for (i = 0; i < PIPELINE_AGENT_MAX; i++)
		ap_buf_printf(&b, "%s%s", i ? ", " : "", pipeline_agent_name(i));
	return ap_buf_steal(&b, NULL);
}

/* A number of seconds in [min, max] (min excluded when !min_ok) -> ms. */
static int
parse_seconds(const json_t *v, const char *path, double max, bool zero_ok,
    int64_t *out, char **cause)
{
	double s;

	if (!json_is_number(v)) {
		*cause = ap_xprintf("%s: must be a number of seconds", path);
		return -1;
	}
	s = json_number_value(v);
	if (!isfinite(s) || s < 0 || (!zero_ok && s * 1000 < 1) || s > max) {
		*cause = ap_xprintf("%s: must be %s and at most %.0f seconds", path,
		    zero_ok ? ">= 0" : "> 0 (at least 0.001)", max);
		return -1;
	}
	*out = llround(s * 1000);
	return 0;
}

static int
parse_after(struct plan_agent *a, const json_t *v, const char *path, char **cause)
{
	const json_t *e;
	enum pipeline_agent dep;
	size_t i;
	char *known;

	if (!json_is_array(v)) {
		*cause = ap_xprintf("%s: must be an array of agent names", path);
		return -1;
	}
	a->after = 0;
	json_array_foreach(v, i, e) {
		if (!json_is_string(e)) {
			*cause = ap_xprintf("%s[%zu]: must be an agent name (a string)",
			    path, i);
			return -1;
		}
		if (!pipeline_agent_parse(json_string_value(e), &dep)) {
			known = plan_agent_names();
			*cause = ap_xprintf("%s[%zu]: unknown agent '%s' (known: %s)", path,
			    i, json_string_value(e), known);
			free(known);
			return -1;
		}
		if (a->after & BIT(dep)) {
			*cause = ap_xprintf("%s[%zu]: '%s' is listed twice", path, i,
			    json_string_value(e));
			return -1;
		}
		a->after |= BIT(dep);
	}
	return 0;
}

static int
parse_agent(struct plan_agent *a, const char *name, const json_t *obj, char **cause)
{
	const char *key;
	json_t *v;
	char *path = NULL;
	int rc = -1;
	unsigned i;

	if (!json_is_object(obj)) {
		*cause = ap_xprintf("agents.%s: must be an object", name);
		return -1;
	}
	json_object_foreach((json_t *)obj, key, v) {
		if (key[0] == '$')
			continue;	/* an annotation ("$comment") */
		free(path);
		path = ap_xprintf("agents.%s.%s", name, key);
		if (strcmp(key, "enabled") == 0 || strcmp(key, "run") == 0) {
			if (!json_is_boolean(v)) {
				*cause = ap_xprintf("%s: must be true or false", path);
				goto out;
			}
			*(key[0] == 'e' ? &a->enabled : &a->run) = json_is_true(v);
		} else if (strcmp(key, "after") == 0) {
			if (parse_after(a, v, path, cause) < 0)
				goto out;
		} else if (strcmp(key, "timeout_s") == 0) {
			if (parse_seconds(v, path, PLAN_MAX_TIMEOUT_S, false,
			    &a->timeout_ms, cause) < 0)
				goto out;
		} else if (strcmp(key, "retry_backoff_s") == 0) {
			if (parse_seconds(v, path, PLAN_MAX_BACKOFF_S, true,
			    &a->retry_backoff_ms, cause) < 0)
				goto out;
		} else if (strcmp(key, "retries") == 0) {
			if (!json_is_integer(v) || json_integer_value(v) < 0 ||
			    json_integer_value(v) > PLAN_MAX_RETRIES) {
				*cause = ap_xprintf("%s: must be an integer between 0 and %d",
				    path, PLAN_MAX_RETRIES);
				goto out;
			}
			a->retries = (unsigned)json_integer_value(v);
		} else if (strcmp(key, "schedule") == 0) {
			if (json_is_null(v)) {
				free(a->schedule);
				a->schedule = NULL;
			} else if (!json_is_string(v) ||
			    !pipeline_schedule_valid(json_string_value(v))) {
				*cause = ap_xprintf("%s: must be a five-field cron expression"
				    " (\"0 2 * * 0\"; minute 0-59, hour 0-23, day 1-31, month"
				    " 1-12, weekday 0-7), an Airflow preset (\"@daily\") or null",
				    path);
				goto out;
			} else {
				free(a->schedule);
				a->schedule = ap_xstrdup(json_string_value(v));
			}
		} else {
			struct ap_buf b;

			ap_buf_init(&b);
			for (i = 0; agent_keys[i] != NULL; i++)
				ap_buf_printf(&b, "%s%s", i ? ", " : "", agent_keys[i]);
			*cause = ap_xprintf("%s: unknown key (known: %s)", path, b.data);
			ap_buf_cleanup(&b);
			goto out;
		}
	}
	rc = 0;
out:
	free(path);
	return rc;
}

/*
 * Finds a cycle by depth-first search along "after" edges and describes it
 * in run order ("metadata -> usage -> metadata"). Returns NULL if none.
 */
static char *
find_cycle(const struct plan *p)
{
	enum { WHITE, GREY, BLACK } color[PIPELINE_AGENT_MAX] = { WHITE };
	unsigned stack[PIPELINE_AGENT_MAX], next[PIPELINE_AGENT_MAX];
	unsigned start, depth, i, k;
	struct ap_buf b;

	for (start = 0; start < PIPELINE_AGENT_MAX; start++) {
		if (color[start] != WHITE)
			continue;
		depth = 0;
		stack[depth] = start;
		next[depth++] = 0;
		color[start] = GREY;
		while (depth > 0) {
			unsigned cur = stack[depth - 1];

			for (i = next[depth - 1]; i < PIPELINE_AGENT_MAX; i++)
				if (p->a[cur].after & BIT(i))
					break;
			if (i == PIPELINE_AGENT_MAX) {
				color[cur] = BLACK;
				depth--;
				continue;
			}
			next[depth - 1] = i + 1;
			if (color[i] == WHITE) {
				color[i] = GREY;
				stack[depth] = i;
				next[depth++] = 0;
				continue;
			}
			if (color[i] == BLACK)
				continue;
			/* stack[k..depth-1] each run after the next; cur after i. */
			for (k = 0; stack[k] != i; k++)
				;
			ap_buf_init(&b);
			ap_buf_adds(&b, "agents: cycle ");
			ap_buf_adds(&b, pipeline_agent_name(i));
			while (depth-- > k + 1)
				ap_buf_printf(&b, " -> %s", pipeline_agent_name(stack[depth]));
			ap_buf_printf(&b, " -> %s", pipeline_agent_name(i));
			return ap_buf_steal(&b, NULL);
		}
	}
	return NULL;
}

/* Kahn's algorithm, lowest enum first among the ready agents. */
static void
topo_order(struct plan *p)
{
	uint32_t placed = 0;
	unsigned n = 0, i;

	while (n < PIPELINE_AGENT_MAX) {
		for (i = 0; i < PIPELINE_AGENT_MAX; i++)
			if (!(placed & BIT(i)) && (p->a[i].after & ~placed) == 0)
				break;
		if (i == PIPELINE_AGENT_MAX)
			ap_fatal("plan: no agent ready in an acyclic graph");
		p->order[n++] = i;
		placed |= BIT(i);
	}
}

/*
 * Prerequisites of each agent among those in `present`, an absent
 * prerequisite replaced by its own (computed in dependency order).
 */
static void
bridge(const struct plan *p, uint32_t present, uint32_t eff[PIPELINE_AGENT_MAX])
{
	unsigned k, i, a;

	for (k = 0; k < PIPELINE_AGENT_MAX; k++) {
		a = p->order[k];
		eff[a] = 0;
		for (i = 0; i < PIPELINE_AGENT_MAX; i++) {
			if (!(p->a[a].after & BIT(i)))
				continue;
			eff[a] |= (present & BIT(i)) ? BIT(i) : eff[i];
		}
	}
}

struct plan *
plan_create(const json_t *config_root, const struct plan_options *opt, char **cause)
{
	struct plan *p = ap_xcalloc(1, sizeof *p);
	const json_t *agents = NULL, *v;
	const char *key;
	enum pipeline_agent a;
	char *known, *cycle;

	plan_defaults(p);
	filter_config_init(&p->filters);
	p->fcache = ap_xcalloc(1, sizeof *p->fcache);
	if (opt != NULL) {
		p->om_url = opt->openmetadata_url ? ap_xstrdup(opt->openmetadata_url) : NULL;
		p->om_token = opt->openmetadata_token ?
		    ap_xstrdup(opt->openmetadata_token) : NULL;
	}
	if (config_root != NULL && !json_is_object(config_root)) {
		*cause = ap_xstrdup("the configuration must be a JSON object");
		goto fail;
	}
	if (config_root != NULL)
		agents = json_object_get(config_root, "agents");
	if (agents != NULL && !json_is_object(agents)) {
		*cause = ap_xstrdup("agents: must be an object");
		goto fail;
	}
	if (agents != NULL) {
		json_object_foreach((json_t *)agents, key, v) {
			if (key[0] == '$')
				continue;	/* an annotation ("$comment") */
			if (!pipeline_agent_parse(key, &a)) {
				known = plan_agent_names();
				*cause = ap_xprintf("agents.%s: unknown agent (known: %s)",
				    key, known);
				free(known);
				goto fail;
			}
			if (parse_agent(&p->a[a], key, v, cause) < 0)
				goto fail;
		}
	}
	if ((cycle = find_cycle(p)) != NULL) {
		*cause = cycle;
		goto fail;
	}
	topo_order(p);
	if (filter_config_from_json(config_root != NULL ?
	    json_object_get(config_root, "filters") : NULL, &p->filters, cause) < 0)
		goto fail;
	return p;
fail:
	plan_free(p);
	return NULL;
}

void
plan_free(struct plan *p)
{
	unsigned i;

	if (p == NULL)
		return;
	for (i = 0; i < PIPELINE_AGENT_MAX; i++)
		free(p->a[i].schedule);
	for (i = 0; p->fcache != NULL && i < PLAN_FILTER_CACHE; i++) {
		free(p->fcache->key[i]);
		json_decref(p->fcache->filters[i]);
	}
	free(p->fcache);
	filter_config_cleanup(&p->filters);
	free(p->om_url);
	if (p->om_token != NULL) {
		memset(p->om_token, 0, strlen(p->om_token));
		free(p->om_token);
	}
	free(p);
}

/* The kind of a service entity autopilot acts on, with an id and a name. */
static const char *
check_service(const char *service_type, const json_t *entity, char **cause)
{
	const char *kind = plan_service_kind(service_type);
	const char *id, *name;

	if (kind == NULL) {
		*cause = ap_xprintf("autopilot does not act on %s entities",
		    service_type != NULL ? service_type : "(null)");
		return NULL;
	}
	if (!json_is_object(entity)) {
		*cause = ap_xstrdup("service entity: must be a JSON object");
		return NULL;
	}
	id = json_string_value(json_object_get(entity, "id"));
	name = json_string_value(json_object_get(entity, "name"));
	if (name == NULL || name[0] == '\0')
		name = json_string_value(json_object_get(entity, "fullyQualifiedName"));
	if (id == NULL || id[0] == '\0') {
		*cause = ap_xstrdup("service entity: missing \"id\"");
		return NULL;
	}
	if (name == NULL || name[0] == '\0') {
		*cause = ap_xstrdup("service entity: missing \"name\"");
		return NULL;
	}
	return kind;
}

/* What the effective filters of entity (kind kind) depend on, as a new string. */
static char *
filter_cache_key(const char *kind, const json_t *entity)
{
	const json_t *own = json_object_get(json_object_get(entity, "connection"), "config");
	const char *const *keys = filter_kind_keys(kind);
	const char *conn = json_string_value(json_object_get(entity, "serviceType"));
	struct ap_buf b;
	char *d;
	unsigned i;

	if (conn == NULL)
		conn = json_string_value(json_object_get(own, "type"));
	ap_buf_init(&b);
	ap_buf_printf(&b, "%s\n%c%s", kind, conn != NULL ? '=' : '-',
	    conn != NULL ? conn : "");
	for (i = 0; keys != NULL && keys[i] != NULL; i++) {
		const json_t *v = json_object_get(own, keys[i]);

		if (v == NULL)
			continue;
		d = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
		ap_buf_printf(&b, "\n%s:%s", keys[i], d != NULL ? d : "?");
		free(d);
	}
	return ap_buf_steal(&b, NULL);
}

/*
 * The effective filters of entity (a new reference, shared with the cache:
 * do not modify), or NULL and a new *cause when a pattern does not compile
 * (not cached: the error names the service's own pattern).
 */
static json_t *
plan_filters(const struct plan *p, const char *kind, const json_t *entity, char **cause)
{
	struct plan_filter_cache *fc = p->fcache;
	char *key = filter_cache_key(kind, entity);
	json_t *filters;
	unsigned i;

	for (i = 0; i < PLAN_FILTER_CACHE; i++) {
		if (fc->key[i] != NULL && strcmp(fc->key[i], key) == 0) {
			free(key);
			return json_incref(fc->filters[i]);
		}
	}
	if ((filters = filter_effective_json(&p->filters, entity, kind, NULL, cause)) ==
	    NULL) {
		free(key);
		return NULL;
	}
	i = fc->next;
	fc->next = (fc->next + 1) % PLAN_FILTER_CACHE;
	free(fc->key[i]);
	json_decref(fc->filters[i]);
	fc->key[i] = key;
	fc->filters[i] = json_incref(filters);
	return filters;
}

int
plan_expand(const struct plan *p, const char *service_type, const json_t *entity,
    struct sched_plan_view *out, char **cause)
{
	const json_t *conn;
	const char *kind;
	uint32_t present = 0, eff[PIPELINE_AGENT_MAX];
	int idx[PIPELINE_AGENT_MAX];
	unsigned k, i;
	json_t *filters, *warnings, *w;

	memset(out, 0, sizeof *out);
	if ((kind = check_service(service_type, entity, cause)) == NULL)
		return -1;
	/* A pattern that does not compile fails the run before any deploy. */
	if ((filters = plan_filters(p, kind, entity, cause)) == NULL)
		return -1;
	json_decref(filters);
	warnings = json_array();
	filter_service_warnings(entity, kind, warnings);
	json_array_foreach(warnings, i, w) {
		size_t len = strlen(out->warning);

		snprintf(out->warning + len, sizeof out->warning - len, "%s%s",
		    len > 0 ? "; " : "", json_string_value(w));
	}
	json_decref(warnings);

	conn = json_object_get(json_object_get(entity, "connection"), "config");
	for (i = 0; i < PIPELINE_AGENT_MAX; i++)
		if (p->a[i].enabled && pipeline_source_type(kind, i) != NULL)
			present |= BIT(i);
	bridge(p, present, eff);
	for (k = 0; k < PIPELINE_AGENT_MAX; k++) {
		enum pipeline_agent a = p->order[k];
		struct sched_agent_spec *s;

		idx[a] = -1;
		if (!(present & BIT(a)))
			continue;
		idx[a] = (int)out->n;
		s = &out->agents[out->n++];
		snprintf(s->name, sizeof s->name, "%s", pipeline_agent_name(a));
		s->supported = json_is_true(json_object_get(conn, pipeline_agent_flag(a)));
		s->unsupported_reason = s->supported ? NULL : !json_is_object(conn) ?
		    "the service has no connection configuration (connection.config):"
		    " nothing to run it with" : unsupported_reasons[a];
		s->run = p->a[a].run;
		s->timeout_ms = p->a[a].timeout_ms;
		s->retries = p->a[a].retries;
		s->retry_backoff_ms = p->a[a].retry_backoff_ms;
		for (i = 0; i < PIPELINE_AGENT_MAX; i++)
			if (eff[a] & BIT(i))
				s->after |= 1u << (unsigned)idx[i];	/* placed before a */
	}
	if (out->n == 0) {
		*cause = ap_xprintf("no agent of the plan applies to %s services (the"
		    " metadata agent is disabled)", kind);
		return -1;
	}
	return 0;
}

int
plan_check_agents(const struct plan *p, const char *service_type, const char *fqn,
    const json_t *entity, const char *const *names, int *bad, char **cause)
{
	struct sched_plan_view v;
	struct ap_buf planned;
	char *why = NULL;
	unsigned i;
	int j, k;

	*bad = -1;
	if (plan_expand(p, service_type, entity, &v, &why) < 0) {
		*cause = ap_xprintf("%s '%s' cannot be planned: %s", service_type, fqn,
		    why);
		free(why);
		return -1;
	}
	for (k = 0; names != NULL && names[k] != NULL; k++) {
		for (j = 0; j < k; j++)
			if (strcmp(names[j], names[k]) == 0)
				break;
		if (j < k) {
			*cause = ap_xprintf("'%s' is listed twice", names[k]);
			*bad = k;
			return -1;
		}
		for (i = 0; i < v.n; i++)
			if (strcmp(v.agents[i].name, names[k]) == 0)
				break;
		if (i < v.n)
			continue;
		ap_buf_init(&planned);
		for (i = 0; i < v.n; i++)
			ap_buf_printf(&planned, "%s%s", i > 0 ? ", " : "", v.agents[i].name);
		*cause = ap_xprintf("'%s' is not in the plan of %s '%s' (disabled in the"
		    " configuration's \"agents\", or not one for this kind of service);"
		    " its plan: %s", names[k], service_type, fqn,
		    planned.data != NULL ? planned.data : "");
		ap_buf_cleanup(&planned);
		*bad = k;
		return -1;
	}
	return 0;
}

json_t *
plan_pipeline(const struct plan *p, const char *service_type, const json_t *entity,
    const char *agent, int64_t now_ms, char **dag_id, char **cause)
{
	struct pipeline_params pp = { 0 };
	const char *kind;
	json_t *filters = NULL, *doc;

	if (!pipeline_agent_parse(agent, &pp.agent)) {
		*cause = ap_xprintf("unknown agent '%s'", agent != NULL ? agent : "(null)");
		return NULL;
	}
	if ((kind = check_service(service_type, entity, cause)) == NULL)
		return NULL;
	if (pipeline_source_type(kind, pp.agent) == NULL) {
		*cause = ap_xprintf("the %s agent does not apply to %s services", agent,
		    kind);
		return NULL;
	}
	if (pp.agent != PIPELINE_USAGE && (filters = plan_filters(p, kind, entity,
	    cause)) == NULL)
		return NULL;
	pp.service_type = service_type;
	pp.entity = entity;
	pp.filters = filters;
	pp.schedule = p->a[pp.agent].schedule;
	pp.openmetadata_url = p->om_url;
	pp.openmetadata_token = p->om_token;
	pp.now_ms = now_ms;
	doc = pipeline_build(&pp, dag_id, cause);
	json_decref(filters);
	return doc;
}

static json_t *
seconds_json(int64_t ms)
{
	return ms % 1000 == 0 ? json_integer(ms / 1000) : json_real((double)ms / 1000);
}

static json_t *
agent_list(uint32_t bits)
{
	json_t *l = json_array();
	unsigned i;

	for (i = 0; i < PIPELINE_AGENT_MAX; i++)
		if (bits & BIT(i))
			json_array_append_new(l, json_string(pipeline_agent_name(i)));
	return l;
}

json_t *
plan_describe(const struct plan *p)
{
	json_t *out = json_object(), *list = json_array(), *order = json_array();
	json_t *kinds = json_object(), *defaults = json_object();
	uint32_t enabled = 0, eff[PIPELINE_AGENT_MAX];
	unsigned k, i;

	for (i = 0; i < PIPELINE_AGENT_MAX; i++)
		if (p->a[i].enabled)
			enabled |= BIT(i);
	bridge(p, enabled, eff);
	for (k = 0; k < PIPELINE_AGENT_MAX; k++) {
		enum pipeline_agent a = p->order[k];
		const struct plan_agent *pa = &p->a[a];
		json_t *o = json_object();

		json_object_set_new(o, "agent", json_string(pipeline_agent_name(a)));
		json_object_set_new(o, "enabled", json_boolean(pa->enabled));
		json_object_set_new(o, "run", json_boolean(pa->run));
		json_object_set_new(o, "after", agent_list(pa->after));
		if (pa->enabled)
			json_object_set_new(o, "effective_after", agent_list(eff[a]));
		json_object_set_new(o, "timeout_s", seconds_json(pa->timeout_ms));
		json_object_set_new(o, "retries", json_integer(pa->retries));
		json_object_set_new(o, "retry_backoff_s", seconds_json(pa->retry_backoff_ms));
		json_object_set_new(o, "schedule", pa->schedule != NULL ?
		    json_string(pa->schedule) : json_null());
		json_object_set_new(o, "pipelineType", json_string(pipeline_agent_name(a)));
		json_object_set_new(o, "displayName",
		    json_string(pipeline_agent_display_name(a)));
		json_object_set_new(o, "requires", json_sprintf("connection.config.%s",
		    pipeline_agent_flag(a)));
		json_array_append_new(list, o);
		if (pa->enabled)
			json_array_append_new(order, json_string(pipeline_agent_name(a)));
	}
	json_object_set_new(out, "agents", list);
	json_object_set_new(out, "order", order);

	for (i = 0; plan_service_types[i] != NULL; i++) {
		const char *kind = plan_service_kind(plan_service_types[i]);
		const char *const *keys = filter_kind_keys(kind);
		json_t *o = json_object(), *ag = json_object(), *fk = json_array();

		for (k = 0; k < PIPELINE_AGENT_MAX; k++) {
			enum pipeline_agent a = p->order[k];
			const char *src = pipeline_source_type(kind, a);

			if (src != NULL && p->a[a].enabled)
				json_object_set_new(ag, pipeline_agent_name(a), json_string(src));
		}
		for (k = 0; keys != NULL && keys[k] != NULL; k++)
			json_array_append_new(fk, json_string(keys[k]));
		json_object_set_new(o, "kind", json_string(kind));
		json_object_set_new(o, "agents", ag);
		json_object_set_new(o, "filter_keys", fk);
		json_object_set_new(kinds, plan_service_types[i], o);
	}
	json_object_set_new(out, "service_types", kinds);

	if (p->filters.by_kind != NULL)
		json_object_set(defaults, "byServiceKind", p->filters.by_kind);
	if (p->filters.by_connector != NULL)
		json_object_set(defaults, "byConnector", p->filters.by_connector);
	json_object_set_new(out, "filters", json_pack("{s:b,s:o}", "builtin_defaults",
	    p->filters.builtin_defaults, "defaults", defaults));
	json_object_set_new(out, "openmetadata", json_pack("{s:o,s:s}", "url",
	    p->om_url != NULL ? json_string(p->om_url) : json_null(), "token",
	    p->om_token != NULL ? "set" : "unset"));
	return out;
}

static int
planner_expand(void *impl, const char *service_type, const json_t *entity,
    struct sched_plan_view *out, char **cause)
{
	return plan_expand(impl, service_type, entity, out, cause);
}

static json_t *
planner_pipeline(void *impl, const char *service_type, const json_t *entity,
    const char *agent, char **dag_id, char **cause)
{
	return plan_pipeline(impl, service_type, entity, agent, ap_wall_ms(), dag_id,
	    cause);
}

const struct sched_planner plan_sched_planner = {
	.expand = planner_expand,
	.pipeline = planner_pipeline,
};
