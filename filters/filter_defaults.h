/*
 * filter_defaults.h — OpenMetadata's built-in default filters per connector,
 * parsed from conf/default-filters.json compiled into the binary.
 *
 * Pure: jansson only.
 */
#ifndef AP_FILTER_DEFAULTS_H
#define AP_FILTER_DEFAULTS_H

#include <stddef.h>

#include <jansson.h>

extern const char ap_default_filters_json[];
extern const size_t ap_default_filters_json_len;

/*
 * The built-in defaults of connector (e.g. "Postgres", matched
 * case-insensitively): a BORROWED object {KEY: {"excludes": [...]}}, or NULL
 * when the connector has none. Parsed once on first use (not thread-safe on
 * the first call); a broken embedded file is fatal.
 */
const json_t *filter_defaults_for(const char *connector);

/* The canonical connector name as spelled in the defaults ("postgres" -> "Postgres"), or NULL. */
const char *filter_defaults_connector_name(const char *connector);

/*
 * For a connector name with no built-in defaults: the built-in connector
 * name it is most likely a typo of (case-insensitive edit distance of at
 * most 2, and less than half its length: "Postgress" -> "Postgres"), or NULL.
 */
const char *filter_defaults_closest(const char *connector);

/* The connectors with built-in defaults, "Postgres, Mysql, ..." (new string). */
char *filter_defaults_names(void);

#endif
