/*
 * filter_effective.c — merges built-in connector defaults, the
 * organisation's configured defaults and the service's own patterns into the
 * effective filter of a service (see filter_effective.h for the rule).
 *
 * Pure: jansson and PCRE2 only; never prints.
 */
#include <string.h>

#include "filter_defaults.h"
#include "filter_effective.h"
#include "util.h"

static const char *const keys_database[] = { "databaseFilterPattern",
	"schemaFilterPattern", "tableFilterPattern", NULL };
static const char *const keys_messaging[] = { "topicFilterPattern", NULL };
static const char *const keys_dashboard[] = { "dashboardFilterPattern",
	"chartFilterPattern", "dataModelFilterPattern", "projectFilterPattern",
	NULL };
static const char *const keys_pipeline[] = { "pipelineFilterPattern", NULL };
static const char *const keys_mlmodel[] = { "mlModelFilterPattern", NULL };
static const char *const keys_storage[] = { "containerFilterPattern", NULL };
static const char *const keys_search[] = { "searchIndexFilterPattern", NULL };
static const char *const keys_api[] = { "apiCollectionFilterPattern", NULL };

static const struct {
	const char *kind;
	const char *const *keys;
} kinds[] = {
	{ "database", keys_database },
	{ "metadata", keys_database },
	{ "messaging", keys_messaging },
	{ "dashboard", keys_dashboard },
	{ "pipeline", keys_pipeline },
	{ "mlmodel", keys_mlmodel },
	{ "storage", keys_storage },
	{ "search", keys_search },
	{ "api", keys_api },
};

const char *const *
filter_kind_keys(const char *kind)
{
	size_t i;

	if (kind == NULL)
		return NULL;
	for (i = 0; i < AP_ARRAY_LEN(kinds); i++)
		if (strcmp(kinds[i].kind, kind) == 0)
			return kinds[i].keys;
	return NULL;
}

const char *
filter_kind_from_entity_type(const char *entity_type)
{
	size_t i, n;

	if (entity_type == NULL || !ap_endswith(entity_type, "Service"))
		return NULL;
	n = strlen(entity_type) - strlen("Service");
	for (i = 0; i < AP_ARRAY_LEN(kinds); i++)
		if (strlen(kinds[i].kind) == n &&
		    strncmp(kinds[i].kind, entity_type, n) == 0)
			return kinds[i].kind;
	return NULL;
}

const char *
filter_key_kind(const char *key)
{
	size_t i, j;

	for (i = 0; i < AP_ARRAY_LEN(kinds); i++)
		for (j = 0; kinds[i].keys[j] != NULL; j++)
			if (strcmp(kinds[i].keys[j], key) == 0)
				return kinds[i].kind;
	return NULL;
}

void
filter_config_init(struct filter_config *cfg)
{
	cfg->builtin_defaults = true;
	cfg->by_kind = NULL;
	cfg->by_connector = NULL;
}

void
filter_config_cleanup(struct filter_config *cfg)
{
	json_decref(cfg->by_kind);
	json_decref(cfg->by_connector);
	filter_config_init(cfg);
}

bool
filter_kind_has_key(const char *kind, const char *key)
{
	const char *const *keys = filter_kind_keys(kind);
	size_t i;

	for (i = 0; keys != NULL && keys[i] != NULL; i++)
		if (strcmp(keys[i], key) == 0)
			return true;
	return false;
}

/*
 * A key that byServiceKind.<kind> does not take: "PATH.KEY: unknown filter
 * key" or "PATH.KEY: not a filter key of KIND services (a messaging key)",
 * then the keys of that kind.
 */
static char *
wrong_key_msg(const char *path, const char *key, const char *kind)
{
	const char *const *keys = filter_kind_keys(kind);
	const char *of = filter_key_kind(key);
	struct ap_buf b;
	size_t i;

	ap_buf_init(&b);
	if (of == NULL)
		ap_buf_printf(&b, "%s.%s: unknown filter key", path, key);
	else
		ap_buf_printf(&b, "%s.%s: not a filter key of %s services (it is"
		    " a %s one)", path, key, kind, of);
	ap_buf_printf(&b, "; the keys of %s services: ", kind);
	for (i = 0; keys[i] != NULL; i++)
		ap_buf_printf(&b, "%s%s", i > 0 ? ", " : "", keys[i]);
	return ap_buf_steal(&b, NULL);
}

/* Checks {KEY: {"includes": [str], "excludes": [str]}} at path; compiles
 * every pattern. kind non-NULL: every KEY must be one of that kind's. */
static int
check_patterns(const json_t *obj, const char *path, const char *kind,
    char **cause)
{
	struct filter_set *fs;
	const char *key, *list;
	json_t *fp, *arr, *v;
	size_t i;
	char *why = NULL;
	int rc = 0;

	if (!json_is_object(obj)) {
		*cause = ap_xprintf("%s: must be an object", path);
		return -1;
	}
	fs = filter_set_create();
	json_object_foreach((json_t *)obj, key, fp) {
		if (kind != NULL && !filter_kind_has_key(kind, key)) {
			*cause = wrong_key_msg(path, key, kind);
			rc = -1;
			goto out;
		}
		if (filter_key_kind(key) == NULL) {
			*cause = ap_xprintf("%s.%s: unknown filter key", path, key);
			rc = -1;
			goto out;
		}
		if (!json_is_object(fp)) {
			*cause = ap_xprintf("%s.%s: must be an object with "
			    "\"includes\" and \"excludes\"", path, key);
			rc = -1;
			goto out;
		}
		json_object_foreach(fp, list, arr) {
			bool exc = strcmp(list, "excludes") == 0;

			if (!exc && strcmp(list, "includes") != 0) {
				*cause = ap_xprintf("%s.%s.%s: unknown key "
				    "(expected includes or excludes)", path,
				    key, list);
				rc = -1;
				goto out;
			}
			if (json_is_null(arr))
				continue;
			if (!json_is_array(arr)) {
				*cause = ap_xprintf("%s.%s.%s: must be an "
				    "array of strings", path, key, list);
				rc = -1;
				goto out;
			}
			if (json_array_size(arr) > FILTER_MAX_PATTERNS) {
				*cause = ap_xprintf("%s.%s.%s: %zu patterns; the "
				    "limit is %u per list", path, key, list,
				    json_array_size(arr), FILTER_MAX_PATTERNS);
				rc = -1;
				goto out;
			}
			json_array_foreach(arr, i, v) {
				if (!json_is_string(v)) {
					*cause = ap_xprintf("%s.%s.%s[%zu]: must "
					    "be a string", path, key, list, i);
					rc = -1;
					goto out;
				}
				if (filter_set_add(fs, key, exc,
				    json_string_value(v), FILTER_ORIGIN_CONFIG,
				    "configuration", &why) < 0) {
					*cause = ap_xprintf("%s.%s", path, why);
					free(why);
					rc = -1;
					goto out;
				}
			}
		}
	}
out:
	filter_set_free(fs);
	return rc;
}

int
filter_config_from_json(const json_t *section, struct filter_config *out,
    char **cause)
{
	const json_t *v, *defs;
	const char *name;
	json_t *obj;
	char *path;
	int rc;

	filter_config_init(out);
	if (section == NULL || json_is_null(section))
		return 0;
	if (!json_is_object(section)) {
		*cause = ap_xstrdup("filters: must be an object");
		return -1;
	}
	json_object_foreach((json_t *)section, name, obj) {
		if (strcmp(name, "builtin_defaults") != 0 &&
		    strcmp(name, "defaults") != 0 && name[0] != '_') {
			*cause = ap_xprintf("filters.%s: unknown key", name);
			return -1;
		}
	}
	v = json_object_get(section, "builtin_defaults");
	if (v != NULL) {
		if (!json_is_boolean(v)) {
			*cause = ap_xstrdup("filters.builtin_defaults: must be "
			    "true or false");
			return -1;
		}
		out->builtin_defaults = json_is_true(v);
	}
	defs = json_object_get(section, "defaults");
	if (defs == NULL || json_is_null(defs))
		return 0;
	if (!json_is_object(defs)) {
		*cause = ap_xstrdup("filters.defaults: must be an object");
		return -1;
	}
	json_object_foreach((json_t *)defs, name, obj) {
		if (strcmp(name, "byServiceKind") != 0 &&
		    strcmp(name, "byConnector") != 0) {
			*cause = ap_xprintf("filters.defaults.%s: unknown key "
			    "(expected byServiceKind or byConnector)", name);
			return -1;
		}
		if (!json_is_object(obj)) {
			*cause = ap_xprintf("filters.defaults.%s: must be an "
			    "object", name);
			return -1;
		}
	}
	v = json_object_get(defs, "byServiceKind");
	if (v != NULL) {
		json_object_foreach((json_t *)v, name, obj) {
			if (filter_kind_keys(name) == NULL) {
				struct ap_buf b;
				size_t i;

				ap_buf_init(&b);
				for (i = 0; i < AP_ARRAY_LEN(kinds); i++)
					ap_buf_printf(&b, "%s%s", i ? ", " : "",
					    kinds[i].kind);
				*cause = ap_xprintf("filters.defaults."
				    "byServiceKind.%s: unknown service kind"
				    " (known: %s)", name, b.data);
				ap_buf_cleanup(&b);
				return -1;
			}
			path = ap_xprintf("filters.defaults.byServiceKind.%s", name);
			rc = check_patterns(obj, path, name, cause);
			free(path);
			if (rc < 0)
				return -1;
		}
		out->by_kind = json_deep_copy(v);
	}
	v = json_object_get(defs, "byConnector");
	if (v != NULL) {
		json_object_foreach((json_t *)v, name, obj) {
			const char *other;
			json_t *o;

			/* Names match connectors case-insensitively: two that
			 * differ only so would have one's patterns dropped. */
			json_object_foreach((json_t *)v, other, o) {
				if (other == name)
					break;
				if (ap_strcaseeq(other, name)) {
					*cause = ap_xprintf("filters.defaults."
					    "byConnector: '%s' and '%s' name one"
					    " connector (names are matched"
					    " case-insensitively): give its"
					    " patterns once", other, name);
					filter_config_cleanup(out);
					return -1;
				}
			}
			path = ap_xprintf("filters.defaults.byConnector.%s", name);
			rc = check_patterns(obj, path, NULL, cause);
			free(path);
			if (rc < 0) {
				filter_config_cleanup(out);
				return -1;
			}
		}
		out->by_connector = json_deep_copy(v);
	}
	return 0;
}

char *
filter_connector_note(const char *connector)
{
	const char *close;
	char *names, *note;

	if (connector == NULL || filter_defaults_connector_name(connector) != NULL)
		return NULL;
	if ((close = filter_defaults_closest(connector)) != NULL)
		return ap_xprintf("no built-in default filters for connector '%s';"
		    " did you mean '%s'?", connector, close);
	names = filter_defaults_names();
	note = ap_xprintf("no built-in default filters for connector '%s' (there"
	    " are for %s)", connector, names);
	free(names);
	return note;
}

void
filter_config_warnings(const struct filter_config *cfg, json_t *out)
{
	const char *name;
	char *note;
	json_t *v;

	if (cfg->by_connector == NULL)
		return;
	json_object_foreach(cfg->by_connector, name, v) {
		/* Only a likely typo: an entry for a connector without built-in
		 * defaults (BigQuery, Looker...) is usual and applies as written. */
		if (filter_defaults_closest(name) == NULL ||
		    (note = filter_connector_note(name)) == NULL)
			continue;
		json_array_append_new(out, json_sprintf("filters.defaults."
		    "byConnector.%s: %s", name, note));
		free(note);
	}
}

/* The filter key of kind (of any kind: kind NULL) that key is likely a typo
 * of, or NULL. */
static const char *
filter_key_typo_of(const char *key, const char *kind)
{
	const char *best = NULL;
	size_t i, j, d, best_d = SIZE_MAX;

	for (i = 0; i < AP_ARRAY_LEN(kinds); i++) {
		if (kind != NULL && strcmp(kinds[i].kind, kind) != 0)
			continue;
		for (j = 0; kinds[i].keys[j] != NULL; j++) {
			d = ap_edit_distance_nocase(key, kinds[i].keys[j]);
			if (d < best_d) {
				best_d = d;
				best = kinds[i].keys[j];
			}
		}
	}
	return best != NULL && ap_is_typo_of(key, best) ? best : NULL;
}

void
filter_service_warnings(const json_t *service, const char *kind, json_t *out)
{
	const json_t *config = json_object_get(json_object_get(service,
	    "connection"), "config");
	const char *key, *close;
	json_t *v;

	if (filter_kind_keys(kind) == NULL)
		kind = NULL;
	json_object_foreach((json_t *)config, key, v) {
		if (filter_key_kind(key) != NULL ||
		    (close = filter_key_typo_of(key, kind)) == NULL)
			continue;
		json_array_append_new(out, json_sprintf("connection.config.%s: not"
		    " a filter key, so it filters nothing (did you mean %s?)", key,
		    close));
	}
}

/* The service's connector type: serviceType, else connection.config.type. */
const char *
filter_service_connector(const json_t *service)
{
	const char *s;

	if (service == NULL)
		return NULL;
	s = json_string_value(json_object_get(service, "serviceType"));
	if (s == NULL)
		s = json_string_value(json_object_get(json_object_get(
		    json_object_get(service, "connection"), "config"), "type"));
	return s;
}

char *
filter_href_type(const json_t *entity)
{
	const char *href = json_string_value(json_object_get(entity, "href"));
	const char *p = NULL, *q, *end;
	char *type;

	/* The last "/services/": a proxy's path before it may hold one. */
	for (q = href; q != NULL && (q = strstr(q, "/services/")) != NULL; q++)
		p = q;
	if (p == NULL)
		return NULL;
	p += strlen("/services/");
	if ((end = strchr(p, '/')) == NULL || (size_t)(end - p) <= strlen("Services") ||
	    strncmp(end - strlen("Services"), "Services", strlen("Services")) != 0)
		return NULL;
	type = ap_xstrndup(p, (size_t)(end - p - 1));
	/* Only a service type autopilot knows says anything. */
	if (filter_kind_from_entity_type(type) == NULL) {
		free(type);
		return NULL;
	}
	return type;
}

/* The first filter key of keys_of (an object) that a service of kind does
 * not have but another kind does, or NULL. */
static const char *
foreign_filter_key(const json_t *keys_of, const char *kind)
{
	const char *key;
	json_t *v;

	if (filter_kind_keys(kind) == NULL || !json_is_object(keys_of))
		return NULL;
	json_object_foreach((json_t *)keys_of, key, v)
		if (filter_key_kind(key) != NULL && !filter_kind_has_key(kind, key))
			return key;
	return NULL;
}

bool
filter_type_conflict(const json_t *entity, const char *entity_type,
    struct filter_type_conflict *c)
{
	const json_t *config = json_object_get(json_object_get(entity, "connection"),
	    "config");
	const char *kind = filter_kind_from_entity_type(entity_type);
	const json_t *defaults;

	memset(c, 0, sizeof *c);
	c->href = json_string_value(json_object_get(entity, "href"));
	if ((c->href_type = filter_href_type(entity)) != NULL) {
		if (strcmp(c->href_type, entity_type) != 0)
			return true;
		filter_type_conflict_cleanup(c);
		return false;
	}
	c->href = NULL;
	c->connector = filter_service_connector(entity);
	defaults = filter_defaults_for(c->connector);
	if ((c->key = foreign_filter_key(defaults, kind)) != NULL)
		return true;
	/* Every connector with built-in defaults is a database's: one sent as
	 * a metadata service (which has the database keys too) is not one. */
	if (kind != NULL && json_object_size(defaults) > 0 &&
	    strcmp(entity_type, "databaseService") != 0) {
		c->key = json_object_iter_key(json_object_iter((json_t *)defaults));
		return true;
	}
	c->connector = NULL;
	return (c->key = foreign_filter_key(config, kind)) != NULL;
}

void
filter_type_conflict_cleanup(struct filter_type_conflict *c)
{
	free(c->href_type);
	memset(c, 0, sizeof *c);
}

/* "a string", "a number"...: what a JSON value is, for messages. */
static const char *
jtype_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "a list";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
	case JSON_REAL:
		return "a number";
	case JSON_TRUE:
		return "true";
	case JSON_FALSE:
		return "false";
	default:
		return "null";
	}
}

/*
 * Checks the service's own connection.config.KEY (own is connection.config,
 * borrowed; NULL or no KEY is fine) against OpenMetadata's FilterPattern
 * schema and the limits before anything is merged or compiled. A list the
 * merge could not read would otherwise be dropped without a word and the
 * agent deployed with no filter at all. null stands for no list:
 * OpenMetadata sends "includes": null, and a null FilterPattern.
 */
static int
check_service_key(const json_t *own, const char *key, char **cause)
{
	const json_t *fp = json_object_get(own, key);
	const char *list;
	json_t *arr, *v;
	size_t i;

	if (fp == NULL || json_is_null(fp))
		return 0;
	if (!json_is_object(fp)) {
		*cause = ap_xprintf("connection.config.%s: expected an object "
		    "with includes and excludes, got %s", key, jtype_name(fp));
		return -1;
	}
	json_object_foreach((json_t *)fp, list, arr) {
		if (strcmp(list, "includes") != 0 &&
		    strcmp(list, "excludes") != 0) {
			*cause = ap_xprintf("connection.config.%s.%s: unknown "
			    "key (expected includes or excludes)", key, list);
			return -1;
		}
		if (json_is_null(arr))
			continue;
		if (!json_is_array(arr)) {
			*cause = ap_xprintf("connection.config.%s.%s: expected a "
			    "list of strings, got %s", key, list, jtype_name(arr));
			return -1;
		}
		if (json_array_size(arr) > FILTER_MAX_PATTERNS) {
			*cause = ap_xprintf("connection.config.%s.%s: %zu "
			    "patterns; the limit is %u per list", key, list,
			    json_array_size(arr), FILTER_MAX_PATTERNS);
			return -1;
		}
		json_array_foreach(arr, i, v) {
			if (!json_is_string(v)) {
				*cause = ap_xprintf("connection.config.%s.%s[%zu]:"
				    " expected a string, got %s", key, list, i,
				    jtype_name(v));
				return -1;
			}
			if (json_string_length(v) > FILTER_MAX_PATTERN_LEN) {
				*cause = ap_xprintf("connection.config.%s.%s[%zu]:"
				    " pattern of %zu bytes; the limit is %u bytes"
				    " per pattern", key, list, i,
				    json_string_length(v), FILTER_MAX_PATTERN_LEN);
				return -1;
			}
		}
	}
	return 0;
}

/* A pattern list from obj[key][list], or NULL. */
static const json_t *
plist(const json_t *obj, const char *key, const char *list)
{
	const json_t *a = json_object_get(json_object_get(obj, key), list);

	return json_is_array(a) ? a : NULL;
}

/* One pattern of the merge, borrowed. */
struct merged {
	const char *pattern;
	enum filter_origin origin;
	const char *source;
	size_t at;		/* its index in the list it was written in */
};

struct mlist {
	struct merged *v;
	size_t n, cap;
};

static void
mlist_add(struct mlist *l, const json_t *arr, enum filter_origin origin,
    const char *source, bool dedup)
{
	size_t i, j;
	json_t *v;

	if (arr == NULL)
		return;
	json_array_foreach(arr, i, v) {
		const char *s = json_string_value(v);

		if (s == NULL)
			continue;
		if (dedup) {
			for (j = 0; j < l->n; j++)
				if (strcmp(l->v[j].pattern, s) == 0)
					break;
			if (j < l->n)
				continue;
		}
		if (l->n == l->cap) {
			l->cap = l->cap ? l->cap * 2 : 8;
			l->v = ap_xreallocarray(l->v, l->cap, sizeof *l->v);
		}
		l->v[l->n].pattern = s;
		l->v[l->n].origin = origin;
		l->v[l->n].source = source;
		l->v[l->n].at = i;
		l->n++;
	}
}

/* Merges one key into inc/exc (borrowing from the JSON inputs). */
static void
merge_key(const struct filter_config *cfg, const json_t *service,
    const char *kind, const char *connector, const char *key,
    struct mlist *inc, struct mlist *exc, char *srcbuf[3])
{
	const json_t *bi = NULL, *ck = NULL, *cc = NULL, *own = NULL;
	const json_t *own_inc;

	if ((cfg == NULL || cfg->builtin_defaults) && connector != NULL)
		bi = filter_defaults_for(connector);
	if (cfg != NULL && cfg->by_kind != NULL && kind != NULL)
		ck = json_object_get(cfg->by_kind, kind);
	if (cfg != NULL && cfg->by_connector != NULL && connector != NULL) {
		const char *name;
		json_t *v;

		json_object_foreach(cfg->by_connector, name, v)
			if (ap_strcaseeq(name, connector))
				cc = v;
	}
	if (service != NULL)
		own = json_object_get(json_object_get(service, "connection"),
		    "config");

	mlist_add(exc, plist(bi, key, "excludes"), FILTER_ORIGIN_BUILTIN,
	    srcbuf[0], true);
	mlist_add(exc, plist(ck, key, "excludes"), FILTER_ORIGIN_CONFIG,
	    srcbuf[1], true);
	mlist_add(exc, plist(cc, key, "excludes"), FILTER_ORIGIN_CONFIG,
	    srcbuf[2], true);
	mlist_add(exc, plist(own, key, "excludes"), FILTER_ORIGIN_SERVICE,
	    "service", true);

	own_inc = plist(own, key, "includes");
	if (own_inc != NULL && json_array_size(own_inc) > 0)
		mlist_add(inc, own_inc, FILTER_ORIGIN_SERVICE, "service", false);
	else if (plist(cc, key, "includes") != NULL &&
	    json_array_size(plist(cc, key, "includes")) > 0)
		mlist_add(inc, plist(cc, key, "includes"), FILTER_ORIGIN_CONFIG,
		    srcbuf[2], false);
	else
		mlist_add(inc, plist(ck, key, "includes"), FILTER_ORIGIN_CONFIG,
		    srcbuf[1], false);
}

/* Walks every key of kind (or of all kinds) and calls back with the merge. */
typedef int (*merged_cb)(void *arg, const char *key, const struct mlist *inc,
    const struct mlist *exc, char **cause);

static int
effective_walk(const struct filter_config *cfg, const json_t *service,
    const char *kind, const char *connector, merged_cb cb, void *arg,
    char **cause)
{
	const json_t *own = json_object_get(json_object_get(service,
	    "connection"), "config");
	char *srcbuf[3];
	size_t ki, kj;
	int rc = 0;

	if (connector == NULL)
		connector = filter_service_connector(service);
	if (filter_defaults_connector_name(connector) != NULL)
		connector = filter_defaults_connector_name(connector);
	srcbuf[0] = ap_xprintf("builtin default for %s",
	    connector != NULL ? connector : "?");
	srcbuf[1] = ap_xprintf("configuration defaults for %s services",
	    kind != NULL ? kind : "?");
	srcbuf[2] = ap_xprintf("configuration defaults for %s",
	    connector != NULL ? connector : "?");
	for (ki = 0; ki < AP_ARRAY_LEN(kinds) && rc == 0; ki++) {
		const char *k = kind != NULL ? kind : kinds[ki].kind;
		const char *const *keys = filter_kind_keys(k);

		if (kind == NULL && strcmp(k, "metadata") == 0)
			continue;	/* same keys as database */
		if (keys == NULL) {
			*cause = ap_xprintf("unknown service kind '%s'", k);
			rc = -1;
			break;
		}
		if (kind == NULL) {
			free(srcbuf[1]);
			srcbuf[1] = ap_xprintf("configuration defaults for %s "
			    "services", k);
		}
		for (kj = 0; keys[kj] != NULL && rc == 0; kj++) {
			struct mlist inc = { 0 }, exc = { 0 };

			if (check_service_key(own, keys[kj], cause) < 0) {
				rc = -1;
				break;
			}
			merge_key(cfg, service, k, connector, keys[kj], &inc,
			    &exc, srcbuf);
			rc = cb(arg, keys[kj], &inc, &exc, cause);
			free(inc.v);
			free(exc.v);
		}
		if (kind != NULL)
			break;
	}
	free(srcbuf[0]);
	free(srcbuf[1]);
	free(srcbuf[2]);
	return rc;
}

static int
set_cb(void *arg, const char *key, const struct mlist *inc,
    const struct mlist *exc, char **cause)
{
	struct filter_set *fs = arg;
	size_t i;

	for (i = 0; i < inc->n; i++)
		if (filter_set_add_at(fs, key, false, inc->v[i].pattern,
		    inc->v[i].origin, inc->v[i].source, inc->v[i].at, cause) < 0)
			return -1;
	for (i = 0; i < exc->n; i++)
		if (filter_set_add_at(fs, key, true, exc->v[i].pattern,
		    exc->v[i].origin, exc->v[i].source, exc->v[i].at, cause) < 0)
			return -1;
	return 0;
}

struct filter_set *
filter_effective_set(const struct filter_config *cfg, const json_t *service,
    const char *kind, const char *connector, char **cause)
{
	struct filter_set *fs = filter_set_create();

	if (effective_walk(cfg, service, kind, connector, set_cb, fs,
	    cause) < 0) {
		filter_set_free(fs);
		return NULL;
	}
	return fs;
}

static int
json_cb(void *arg, const char *key, const struct mlist *inc,
    const struct mlist *exc, char **cause)
{
	json_t *out = arg, *fp, *a;
	size_t i;

	if (inc->n == 0 && exc->n == 0)
		return 0;
	fp = json_object();
	a = json_array();
	for (i = 0; i < inc->n; i++)
		json_array_append_new(a, json_string(inc->v[i].pattern));
	json_object_set_new(fp, "includes", a);
	a = json_array();
	for (i = 0; i < exc->n; i++)
		json_array_append_new(a, json_string(exc->v[i].pattern));
	json_object_set_new(fp, "excludes", a);
	json_object_set_new(out, key, fp);
	return 0;
}

json_t *
filter_effective_json(const struct filter_config *cfg, const json_t *service,
    const char *kind, const char *connector, char **cause)
{
	struct filter_set *fs;
	json_t *out;

	/* Compile first (no JIT: only to check): nothing is deployed with a
	 * broken filter. */
	fs = filter_set_create();
	filter_set_check_only(fs);
	if (effective_walk(cfg, service, kind, connector, set_cb, fs, cause) < 0) {
		filter_set_free(fs);
		return NULL;
	}
	filter_set_free(fs);
	out = json_object();
	if (effective_walk(cfg, service, kind, connector, json_cb, out,
	    cause) < 0) {
		json_decref(out);
		return NULL;
	}
	return out;
}
