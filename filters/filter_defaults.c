/*
 * filter_defaults.c — OpenMetadata's built-in default filters, parsed once
 * from conf/default-filters.json as compiled into the binary.
 *
 * Pure: jansson only.
 */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "filter_defaults.h"
#include "util.h"

static json_t *defaults;

static json_t *
defaults_get(void)
{
	json_error_t err;

	if (defaults == NULL) {
		defaults = json_loadb(ap_default_filters_json,
		    ap_default_filters_json_len, 0, &err);
		if (defaults == NULL || !json_is_object(defaults))
			ap_fatal("embedded default-filters.json: %s (line %d)",
			    err.text, err.line);
	}
	return defaults;
}

const char *
filter_defaults_connector_name(const char *connector)
{
	const char *key;
	json_t *v;

	if (connector == NULL)
		return NULL;
	json_object_foreach(defaults_get(), key, v) {
		if (key[0] != '_' && strcasecmp(key, connector) == 0)
			return key;
	}
	return NULL;
}

const json_t *
filter_defaults_for(const char *connector)
{
	const char *name = filter_defaults_connector_name(connector);

	return name == NULL ? NULL : json_object_get(defaults_get(), name);
}

const char *
filter_defaults_closest(const char *connector)
{
	const char *key, *best = NULL;
	size_t d, best_d = SIZE_MAX;
	json_t *v;

	if (connector == NULL || filter_defaults_connector_name(connector) != NULL)
		return NULL;
	json_object_foreach(defaults_get(), key, v) {
		if (key[0] == '_')
			continue;
		d = ap_edit_distance_nocase(connector, key);
		if (d < best_d) {
			best_d = d;
			best = key;
		}
	}
	return best != NULL && ap_is_typo_of(connector, best) ? best : NULL;
}

char *
filter_defaults_names(void)
{
	struct ap_buf b;
	const char *key;
	json_t *v;

	ap_buf_init(&b);
	json_object_foreach(defaults_get(), key, v)
		if (key[0] != '_')
			ap_buf_printf(&b, "%s%s", b.len > 0 ? ", " : "", key);
	return ap_buf_steal(&b, NULL);
}
