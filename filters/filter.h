/*
 * filter.h — include/exclude filter sets: Python regular expressions, as
 * OpenMetadata's ingestion framework writes them, compiled once with PCRE2.
 *
 * Semantics are OpenMetadata's (ingestion/src/metadata/utils/filters.py): a
 * pattern matches like re.match(p, name, re.IGNORECASE) — anchored at the
 * start only, case-insensitive, Unicode-aware; a name is kept iff (no
 * includes, or it matches one) and it matches no exclude; an empty name is
 * dropped. Patterns are translated from Python's syntax to PCRE2's by a small
 * scanner (filter_translate()); a construct whose meaning differs and cannot
 * be translated is rejected with a message, never run with another meaning.
 *
 * Pure: PCRE2 only; no libevent, no libcurl, never prints.
 */
#ifndef AP_FILTER_H
#define AP_FILTER_H

#include <stdbool.h>
#include <stddef.h>

/* Where a pattern came from, for explaining a decision. */
enum filter_origin {
	FILTER_ORIGIN_BUILTIN,	/* OpenMetadata's built-in default for a connector */
	FILTER_ORIGIN_CONFIG,	/* the organisation's defaults in the configuration */
	FILTER_ORIGIN_SERVICE,	/* the service entity's own connection config */
	FILTER_ORIGIN_CLI,	/* --include/--exclude on the command line */
	FILTER_ORIGIN_MAX
};
/* "builtin", "config", "service", "cli". */
const char *filter_origin_name(enum filter_origin o);

/* Maximum PCRE2 match steps and backtracking depth per (pattern, name). */
#define FILTER_MATCH_LIMIT 1000000u
#define FILTER_DEPTH_LIMIT 10000u

/*
 * At most FILTER_MAX_PATTERNS patterns in one include or exclude list as
 * written in one place (a service's connection.config.*FilterPattern, one
 * configuration default, the --include or --exclude flags), each at most
 * FILTER_MAX_PATTERN_LEN bytes. A service entity comes from a webhook and is
 * planned on the event loop: these bound the translating and compiling it
 * costs. OpenMetadata's users write tens of patterns, rarely long ones.
 */
#define FILTER_MAX_PATTERNS 1000u
#define FILTER_MAX_PATTERN_LEN 4096u

/*
 * At most FILTER_MAX_SET_BYTES bytes of PCRE2 pattern in one filter set,
 * once translated. Python's case rules make some letters a set ('i' is
 * [iI\x{131}\x{130}]), so a pattern can grow 16-fold in translation, and
 * compiling costs time and memory in proportion: this bounds what one
 * service's patterns cost to plan (about 15 ms), whatever their shape.
 */
#define FILTER_MAX_SET_BYTES (512u * 1024u)
#define FILTER_QUOTE_MAX 80u

/*
 * Translates a Python re pattern into an equivalent PCRE2 pattern (to be
 * compiled with CASELESS|UTF|UCP|ANCHORED). Returns a new string, or NULL
 * with *cause (new string) set to why the pattern is invalid in Python or
 * cannot be given Python's meaning; *offset (may be NULL) is the byte offset
 * in py where the problem is.
 */
char *filter_translate(const char *py, char **cause, size_t *offset);

/* One compiled pattern and its source. */
struct filter_pattern {
	char *pattern;		/* the pattern as written (Python syntax) */
	char *source;		/* e.g. "builtin default for Postgres" */
	enum filter_origin origin;
	void *code;		/* pcre2_code_8 * */
	bool jit;		/* JIT-compiled */
	bool backref;		/* has a backreference (see filter_set_match) */
};

/* Outcome of matching one name against one filter key. */
enum filter_rule {
	FILTER_RULE_NONE,	/* no includes and no excludes: kept */
	FILTER_RULE_EMPTY,	/* empty name: dropped */
	FILTER_RULE_INCLUDE,	/* matched include `pattern`; no exclude matched: kept */
	FILTER_RULE_NO_INCLUDE,	/* includes exist and none matched: dropped */
	FILTER_RULE_EXCLUDE,	/* matched exclude `pattern`: dropped */
	FILTER_RULE_NO_EXCLUDE,	/* no includes; no exclude matched: kept */
	FILTER_RULE_MAX
};
/* "none", "empty", "include", "no-include", "exclude", "no-exclude". */
const char *filter_rule_name(enum filter_rule r);

struct filter_decision {
	bool kept;
	enum filter_rule rule;
	/* The deciding pattern, borrowed from the set (NULL for NONE, EMPTY,
	 * NO_INCLUDE, NO_EXCLUDE). */
	const struct filter_pattern *pattern;
};

/* A set of filter keys ("tableFilterPattern"…), each with includes and excludes. */
struct filter_set;

/* Returns a new, empty set. Never NULL. */
struct filter_set *filter_set_create(void);
/* Frees the set and every pattern; accepts NULL. */
void filter_set_free(struct filter_set *fs);
/* Patterns added from now on are compiled to be checked, not JIT-compiled
 * (a third of the cost); matching still works, more slowly. */
void filter_set_check_only(struct filter_set *fs);

/*
 * Translates and compiles pattern (copied) and appends it to key's includes
 * (exclude false) or excludes. source (copied) describes where it came from;
 * a source's patterns are added one after the other. Returns 0, or -1 with
 * *cause (new string) naming the key, the list, the index in that list, the
 * pattern, and PCRE2's or the translator's message with the offset, e.g.
 *   tableFilterPattern.includes[2]: invalid pattern 'a(b': missing closing
 *   parenthesis at offset 3 (from the service)
 * or, before any translating, when the pattern is longer than
 * FILTER_MAX_PATTERN_LEN or would be the list's FILTER_MAX_PATTERNS + 1st
 * from this source:
 *   tableFilterPattern.includes: more than 1000 patterns (--include); the
 *   limit is 1000 per list
 * or, before compiling, when its translation would take the set past
 * FILTER_MAX_SET_BYTES. A pattern quoted in a message is cut after
 * FILTER_QUOTE_MAX bytes, with its length said.
 */
int filter_set_add(struct filter_set *fs, const char *key, bool exclude,
    const char *pattern, enum filter_origin origin, const char *source,
    char **cause);

/* The same, for a pattern that was at index `at` of its source's list as
 * written (a merge that left out duplicates says where it was). */
int filter_set_add_at(struct filter_set *fs, const char *key, bool exclude,
    const char *pattern, enum filter_origin origin, const char *source,
    size_t at, char **cause);

/* True when key has at least one include or exclude. */
bool filter_set_has_key(const struct filter_set *fs, const char *key);

/* Borrowed views of key's lists (count 0 and NULL when the key is absent). */
size_t filter_set_includes(const struct filter_set *fs, const char *key,
    const struct filter_pattern **list);
size_t filter_set_excludes(const struct filter_set *fs, const char *key,
    const struct filter_pattern **list);

/*
 * Decides whether name (len bytes, UTF-8) is kept under key, exactly as
 * OpenMetadata's filter does. A key absent from the set keeps every
 * non-empty name. Returns 0 with *d filled, or -1 with *cause (new string)
 * when a pattern hits the match or depth limit or the name is not valid
 * UTF-8: an error for that name only. Not thread-safe (the set owns its
 * match data); cheap enough for millions of names.
 */
int filter_set_match(struct filter_set *fs, const char *key, const char *name,
    size_t len, struct filter_decision *d, char **cause);

#endif
