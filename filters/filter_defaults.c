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

/* Longest name the edit distance is computed for. */
#define NAME_MAX_LEN 64

/* Levenshtein distance of a and b, ignoring case (both at most NAME_MAX_LEN). */
static size_t
distance_nocase(const char *a, const char *b)
{
	size_t row[NAME_MAX_LEN + 1], i, j, la = strlen(a), lb = strlen(b);

	for (j = 0; j <= lb; j++)
		row[j] = j;
	for (i = 1; i <= la; i++) {
		size_t diag = row[0];

		row[0] = i;
		for (j = 1; j <= lb; j++) {
			size_t up = row[j], best = diag +
			    (tolower((unsigned char)a[i - 1]) !=
			    tolower((unsigned char)b[j - 1]));

			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			diag = up;
			row[j] = best;
		}
	}
	return row[lb];
}

const char *
filter_defaults_closest(const char *connector)
{
	const char *key, *best = NULL;
	size_t d, best_d = (size_t)-1, len;
	json_t *v;

	if (connector == NULL || (len = strlen(connector)) > NAME_MAX_LEN ||
	    filter_defaults_connector_name(connector) != NULL)
		return NULL;
	json_object_foreach(defaults_get(), key, v) {
		if (key[0] == '_' || strlen(key) > NAME_MAX_LEN)
			continue;
		d = distance_nocase(connector, key);
		if (d < best_d) {
			best_d = d;
			best = key;
		}
	}
	/* A typo: one or two edits, and fewer than half the name's letters. */
	return best != NULL && best_d <= 2 && best_d * 2 < len ? best : NULL;
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
