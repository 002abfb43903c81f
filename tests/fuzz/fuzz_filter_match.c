/*
 * fuzz_filter_match.c — libFuzzer target: a generated filter (include and
 * exclude patterns) and generated names through filter_set_add() and
 * filter_set_match(), with OpenMetadata's decision recomputed from each
 * pattern on its own as the oracle.
 *
 * Input, one item a line:  "+PATTERN" an include, "-PATTERN" an exclude,
 * anything else a name (an empty line is the empty name). At most 8
 * patterns and 32 names are used.
 *
 * The oracle: a name is kept iff (no includes or one matches) and no exclude
 * matches; the rule and the deciding pattern must say the same. Names for
 * which some pattern hits the match limit or which are not UTF-8 are only
 * checked for "an error with a message".
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "filter.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_PATTERNS 8
#define MAX_NAMES 32

struct single {
	struct filter_set *fs;	/* this pattern alone, as an include */
	bool exclude;
};

/* 1 matched, 0 did not, -1 error. */
static int
single_match(struct single *s, const char *name, size_t len)
{
	struct filter_decision d;
	char *cause = NULL;

	if (filter_set_match(s->fs, "k", name, len, &d, &cause) != 0) {
		free(cause);
		return -1;
	}
	return d.kept;
}

static bool
in_list(const struct filter_pattern *p, const struct filter_pattern *list, size_t n)
{
	return n > 0 && p >= list && p < list + n;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct single singles[MAX_PATTERNS];
	const char *names[MAX_NAMES];
	size_t namelen[MAX_NAMES];
	const struct filter_pattern *inc, *exc;
	size_t ninc, nexc, i, j, nsingle = 0, nnames = 0;
	struct filter_set *fs;
	char *buf, *line, *cause;

	if (size > 8192)
		return -1;
	buf = malloc(size + 1);
	memcpy(buf, data, size);
	buf[size] = '\0';
	fs = filter_set_create();
	line = buf;
	for (;;) {
		char *nl = memchr(line, '\n', (size_t)(buf + size - line));
		size_t len = nl != NULL ? (size_t)(nl - line) : (size_t)(buf + size - line);

		if (nl != NULL)
			*nl = '\0';
		if ((line[0] == '+' || line[0] == '-') && nsingle < MAX_PATTERNS &&
		    strlen(line) == len) {
			bool exclude = line[0] == '-';

			cause = NULL;
			if (filter_set_add(fs, "k", exclude, line + 1, FILTER_ORIGIN_CLI,
			    "fuzz", &cause) == 0) {
				singles[nsingle].fs = filter_set_create();
				singles[nsingle].exclude = exclude;
				if (filter_set_add(singles[nsingle].fs, "k", false, line + 1,
				    FILTER_ORIGIN_CLI, "fuzz", &cause) != 0)
					abort();	/* compiles in one set, not in another */
				nsingle++;
			} else if (cause == NULL)
				abort();
			free(cause);
		} else if (nnames < MAX_NAMES) {
			names[nnames] = line;
			namelen[nnames++] = len;
		}
		if (nl == NULL)
			break;
		line = nl + 1;
	}

	ninc = filter_set_includes(fs, "k", &inc);
	nexc = filter_set_excludes(fs, "k", &exc);
	if (ninc + nexc != nsingle)
		abort();

	for (i = 0; i < nnames; i++) {
		struct filter_decision d;
		bool inc_any = false, exc_any = false, err = false, kept;
		enum filter_rule rule;
		int rc;

		cause = NULL;
		rc = filter_set_match(fs, "k", names[i], namelen[i], &d, &cause);
		if (rc != 0) {
			if (cause == NULL)
				abort();
			free(cause);
		}
		for (j = 0; j < nsingle; j++) {
			int m = single_match(&singles[j], names[i], namelen[i]);

			if (m < 0)
				err = true;
			else if (m && singles[j].exclude)
				exc_any = true;
			else if (m)
				inc_any = true;
		}
		if (namelen[i] == 0) {
			if (rc != 0 || d.kept || d.rule != FILTER_RULE_EMPTY)
				abort();
			continue;
		}
		if (err)
			continue;	/* a limit or bad UTF-8: only "error with a message" */
		if (rc != 0)
			abort();	/* every pattern matched alone, but not together */
		kept = (ninc == 0 || inc_any) && !exc_any;
		if (nsingle == 0)
			rule = FILTER_RULE_NONE;
		else if (ninc > 0 && !inc_any)
			rule = FILTER_RULE_NO_INCLUDE;
		else if (exc_any)
			rule = FILTER_RULE_EXCLUDE;
		else if (ninc > 0)
			rule = FILTER_RULE_INCLUDE;
		else
			rule = FILTER_RULE_NO_EXCLUDE;
		if (d.kept != kept || d.rule != rule)
			abort();
		if (rule == FILTER_RULE_INCLUDE && !in_list(d.pattern, inc, ninc))
			abort();
		if (rule == FILTER_RULE_EXCLUDE && !in_list(d.pattern, exc, nexc))
			abort();
	}

	for (j = 0; j < nsingle; j++)
		filter_set_free(singles[j].fs);
	filter_set_free(fs);
	free(buf);
	return 0;
}
