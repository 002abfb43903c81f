/*
 * fuzz_filter_translate.c — libFuzzer target: a Python re pattern (the raw
 * input) through filter_translate() and the PCRE2 compile of filter_set_add(),
 * then matched against a few names, among them the pattern itself.
 *
 * Checks beyond "no crash, no leak, no sanitizer report": a rejected pattern
 * comes with a message and an offset inside the pattern; translation and
 * compilation agree (a pattern the set refuses was refused by the translator
 * or by PCRE2 with a message naming the pattern); a match error says why.
 */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "filter.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_names(struct filter_set *fs, const char *self, size_t selflen)
{
	static const char *const names[] = { "a", "sys", "SYS_extra", "information_schema",
	    "Ärger", "\xc4\xb1", "template0", "x_tmp", "db_1234", "" };
	struct filter_decision d;
	size_t i;

	for (i = 0; i <= sizeof(names) / sizeof(names[0]); i++) {
		const char *n = i < sizeof(names) / sizeof(names[0]) ? names[i] : self;
		size_t len = i < sizeof(names) / sizeof(names[0]) ? strlen(n) : selflen;
		char *cause = NULL;

		if (filter_set_match(fs, "k", n, len, &d, &cause) != 0) {
			if (cause == NULL)
				abort();
			free(cause);
			continue;
		}
		if (cause != NULL)
			abort();
		/* One include, no exclude: kept iff it matched that include. */
		if (len == 0 && (d.kept || d.rule != FILTER_RULE_EMPTY))
			abort();
		if (d.kept != (d.rule == FILTER_RULE_INCLUDE))
			if (len != 0)
				abort();
		if (d.kept && d.pattern == NULL)
			abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *py, *xl, *cause = NULL, *cause2 = NULL;
	size_t off = (size_t)-1;
	struct filter_set *fs;
	int rc;

	if (size > 4096)
		return -1;
	py = malloc(size + 1);
	memcpy(py, data, size);
	py[size] = '\0';
	/* Patterns come from JSON strings: an embedded NUL ends them. */
	size = strlen(py);

	xl = filter_translate(py, &cause, &off);
	if (xl == NULL) {
		if (cause == NULL || off > size)
			abort();
	} else if (cause != NULL)
		abort();

	fs = filter_set_create();
	rc = filter_set_add(fs, "k", false, py, FILTER_ORIGIN_SERVICE, "fuzz", &cause2);
	if (rc == 0) {
		if (xl == NULL || cause2 != NULL)
			abort();	/* the set compiled what the translator refused */
		check_names(fs, py, size);
	} else if (cause2 == NULL || strstr(cause2, "k.includes[0]") == NULL)
		abort();
	filter_set_free(fs);
	free(cause2);
	free(cause);
	free(xl);
	free(py);
	return 0;
}
