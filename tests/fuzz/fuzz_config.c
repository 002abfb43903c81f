/*
 * fuzz_config.c — libFuzzer target: a configuration file (any bytes, parsed
 * as JSON the way the config loader does) through every section loader, and
 * its "service" member through the effective-filter merge of every service
 * kind, with a few names matched against the merged set.
 *
 *   {"scheduler": {...}, "filters": {...}, "service": {...}, "connector": "..."}
 *
 * Checks: a loader that fails says why (and leaves nothing to free); an
 * effective filter is an object of FilterPatterns whose "includes" and
 * "excludes" are arrays of strings that compile.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "filter.h"
#include "filter_effective.h"
#include "sched.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const kinds[] = { "database", "dashboard", "messaging", "pipeline",
	"mlmodel", "metadata", "storage", "search", "api", "securityService", NULL };

/* A merged list may pass the cap of one list: its parts named apart, as
 * the sources it was merged from are. */
static const char *
part_source(size_t i)
{
	return (i / FILTER_MAX_PATTERNS) % 2 == 0 ? "x" : "y";
}

static void
check_effective_json(const json_t *eff)
{
	struct filter_set *fs = filter_set_create();
	const char *key;
	json_t *fp;

	if (!json_is_object(eff))
		abort();
	json_object_foreach((json_t *)eff, key, fp) {
		json_t *inc = json_object_get(fp, "includes");
		json_t *exc = json_object_get(fp, "excludes");
		json_t *p;
		size_t i;

		if (!json_is_array(inc) || !json_is_array(exc))
			abort();
		json_array_foreach(inc, i, p) {
			char *cause = NULL;

			if (!json_is_string(p) || filter_set_add(fs, key, false,
			    json_string_value(p), FILTER_ORIGIN_CONFIG, part_source(i),
			    &cause) != 0)
				abort();
		}
		json_array_foreach(exc, i, p) {
			char *cause = NULL;

			if (!json_is_string(p) || filter_set_add(fs, key, true,
			    json_string_value(p), FILTER_ORIGIN_CONFIG, part_source(i),
			    &cause) != 0)
				abort();
		}
	}
	filter_set_free(fs);
}

static void
match_some(struct filter_set *fs, const char *kind)
{
	static const char *const names[] = { "information_schema", "public", "sys",
	    "template1", "orders_tmp", "Ñandú" };
	const char *const *keys = kind != NULL ? filter_kind_keys(kind) : NULL;
	size_t i;

	for (; keys != NULL && *keys != NULL; keys++)
		for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
			struct filter_decision d;
			char *cause = NULL;

			if (filter_set_match(fs, *keys, names[i], strlen(names[i]), &d,
			    &cause) != 0 && cause == NULL)
				abort();
			free(cause);
		}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sched_config sc;
	struct filter_config fc;
	json_error_t jerr;
	const json_t *service;
	const char *connector;
	char *cause = NULL;
	json_t *root;
	size_t k;

	if (size > 65536)
		return -1;
	root = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL)
		return 0;

	if (sched_config_from_json(json_object_get(root, "scheduler"), &sc, &cause) != 0) {
		if (cause == NULL)
			abort();
		free(cause);
		cause = NULL;
	} else if (sc.poll_floor_ms > sc.poll_max_ms || sc.poll_initial_ms > sc.poll_max_ms)
		abort();
	/* The whole document as a section too: every key unknown, or not an object. */
	if (sched_config_from_json(root, &sc, &cause) != 0) {
		if (cause == NULL)
			abort();
		free(cause);
		cause = NULL;
	}

	if (filter_config_from_json(json_object_get(root, "filters"), &fc, &cause) != 0) {
		if (cause == NULL)
			abort();
		free(cause);
		cause = NULL;
		filter_config_cleanup(&fc);
		filter_config_init(&fc);
	}
	service = json_object_get(root, "service");
	connector = json_string_value(json_object_get(root, "connector"));
	for (k = 0; k <= sizeof(kinds) / sizeof(kinds[0]) - 1; k++) {
		json_t *eff;
		struct filter_set *fs;

		eff = filter_effective_json(&fc, service, kinds[k], connector, &cause);
		if (eff != NULL) {
			check_effective_json(eff);
			json_decref(eff);
		} else {
			if (cause == NULL)
				abort();
			free(cause);
			cause = NULL;
		}
		fs = filter_effective_set(&fc, service, kinds[k], connector, &cause);
		if (fs != NULL) {
			match_some(fs, kinds[k]);
			filter_set_free(fs);
		} else {
			if (cause == NULL)
				abort();
			free(cause);
			cause = NULL;
		}
	}
	filter_config_cleanup(&fc);
	json_decref(root);
	return 0;
}
