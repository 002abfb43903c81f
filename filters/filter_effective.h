/*
 * filter_effective.h — the effective filter of a service: OpenMetadata's
 * built-in defaults for its connector, plus the organisation's defaults from
 * the configuration ("filters" section), plus the service's own patterns from
 * connection.config.*FilterPattern.
 *
 * Merge (PRODUCT.md): per filter key, excludes are the union of the three
 * sources (built-in, then configuration, then service; duplicates dropped);
 * includes are the service's own if it has any, else the configuration's
 * (byConnector's when it has includes for the key, else byServiceKind's).
 *
 * Pure: jansson and PCRE2 only. The usage agent gets no filters and the
 * profiler an extra classificationFilterPattern: that is the pipeline
 * builder's business, not this module's.
 */
#ifndef AP_FILTER_EFFECTIVE_H
#define AP_FILTER_EFFECTIVE_H

#include <stdbool.h>

#include <jansson.h>

#include "filter.h"

/* The "filters" configuration section. Embedded: filter_config_init()/_cleanup(). */
struct filter_config {
	bool builtin_defaults;	/* default true */
	json_t *by_kind;	/* owned: {"database": {"schemaFilterPattern": {...}}} or NULL */
	json_t *by_connector;	/* owned: {"Postgres": {...}} or NULL */
};

/* Built-in defaults on, no organisation defaults. */
void filter_config_init(struct filter_config *cfg);
void filter_config_cleanup(struct filter_config *cfg);

/*
 * Parses the "filters" section (borrowed; NULL means all defaults):
 *   {"builtin_defaults": true, "defaults": {"byServiceKind": {KIND: {KEY:
 *    {"includes": [...], "excludes": [...]}}}, "byConnector": {TYPE: {...}}}}
 * Every pattern is compiled to check it; a list holds at most
 * FILTER_MAX_PATTERNS. Returns 0, or -1 with *cause (new string) naming the
 * key path, e.g. "filters.defaults.byServiceKind.database
 * .schemaFilterPattern.excludes[1]: invalid pattern '(': ...". On error *out
 * is left initialised and empty.
 */
int filter_config_from_json(const json_t *section, struct filter_config *out,
    char **cause);

/*
 * Connector names are open-ended (OpenMetadata adds connectors), so a name
 * with no built-in defaults is not an error; but a typo ("Postgress")
 * silently loses the defaults. For a connector with no built-in defaults:
 * "no built-in default filters for connector 'Postgress'; did you mean
 * 'Postgres'?" (the closest built-in name, if close), else the list of those
 * that have some (new string); NULL when it has built-in defaults.
 */
char *filter_connector_note(const char *connector);
/* Appends to out (an array) a warning string for each byConnector name that
 * looks like a typo of a connector with built-in defaults:
 * "filters.defaults.byConnector.NAME: <note>". */
void filter_config_warnings(const struct filter_config *cfg, json_t *out);
/*
 * A key of the service's connection.config that is no filter key but looks
 * like a misspelt one of kind's (any kind's for NULL or an unknown kind)
 * filters nothing, silently. Appends to out (an array) a warning string for
 * each: "connection.config.KEY: not a filter key, so it filters nothing (did
 * you mean tableFilterPattern?)".
 */
void filter_service_warnings(const json_t *service, const char *kind, json_t *out);
/* A service entity's connector: "serviceType", else connection.config.type
 * (borrowed), or NULL. */
const char *filter_service_connector(const json_t *service);

/*
 * Service kinds are entity types without "Service": "database", "dashboard",
 * "messaging", "pipeline", "mlmodel", "metadata", "storage", "search", "api".
 * Returns the NULL-terminated list of filter keys of a kind (static), or
 * NULL for an unknown kind.
 */
const char *const *filter_kind_keys(const char *kind);
/* The kind from an entity type ("databaseService" -> "database", static), or NULL. */
const char *filter_kind_from_entity_type(const char *entity_type);
/* The kind a filter key belongs to ("tableFilterPattern" -> "database"), or NULL. */
const char *filter_key_kind(const char *key);
/* Whether key is one of kind's filter keys (false for an unknown kind). */
bool filter_kind_has_key(const char *kind, const char *key);

/* An entity's href "…/services/databaseServices/<id>" -> "databaseService"
 * (new string; the last "/services/" of it), a service type of a kind
 * autopilot knows; NULL without such an href. */
char *filter_href_type(const json_t *entity);

/* What says a service entity is of another type than it is taken for. */
struct filter_type_conflict {
	char *href_type;	/* its href's collection ("databaseService"), new */
	const char *href;	/* ... the href (borrowed) */
	const char *connector;	/* its connector, whose built-in defaults ... */
	const char *key;	/* ... or its connection.config have this key of
				   another kind (borrowed) */
};
/*
 * Whether entity contradicts entity_type (a service type autopilot acts
 * on): its href's collection of services, when it has one, decides; else
 * its connector (one with built-in defaults is a database's), then the
 * filter keys of its own connection.config (a schemaFilterPattern makes a
 * database service).
 * true and *c filled (free with filter_type_conflict_cleanup), or false.
 */
bool filter_type_conflict(const json_t *entity, const char *entity_type,
    struct filter_type_conflict *c);
void filter_type_conflict_cleanup(struct filter_type_conflict *c);

/*
 * The effective filters of a service entity (borrowed; its "serviceType", or
 * connection.config.type, names the connector) of the given kind. cfg may be
 * NULL (built-in defaults only). connector overrides the entity's connector
 * type when non-NULL; service may be NULL (defaults only, then connector
 * names the connector).
 *
 * The service's own connection.config.KEY of each of the kind's keys must
 * be OpenMetadata's FilterPattern: null, or an object whose "includes" and
 * "excludes" are null or lists of at most FILTER_MAX_PATTERNS strings of at
 * most FILTER_MAX_PATTERN_LEN bytes. Anything else is an error naming the
 * key path ("connection.config.tableFilterPattern.includes[1]: expected a
 * string, got a number"; "connection.config.tableFilterPattern.includes:
 * 40000 patterns; the limit is 1000 per list"), found before anything is
 * compiled: a list that could not be read would otherwise deploy the agent
 * with no filter at all.
 *
 * filter_effective_json() returns a NEW object mapping each of the kind's
 * filter keys that has any pattern to an OpenMetadata FilterPattern
 * {"includes": [...], "excludes": [...]} (both arrays always present), or
 * NULL with *cause set when a pattern does not compile or the service's
 * patterns are malformed (so nothing is deployed with a broken filter).
 *
 * filter_effective_set() returns a new compiled set with each pattern's
 * source (for explaining decisions), or NULL with *cause. kind NULL means
 * every filter key of every kind.
 */
json_t *filter_effective_json(const struct filter_config *cfg,
    const json_t *service, const char *kind, const char *connector,
    char **cause);
struct filter_set *filter_effective_set(const struct filter_config *cfg,
    const json_t *service, const char *kind, const char *connector,
    char **cause);

#endif
