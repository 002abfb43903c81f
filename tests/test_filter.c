/*
 * test_filter.c — the filter engine: Python-to-PCRE2 translation, the
 * include-then-exclude decision, sources, the effective-filter merge, error
 * messages, the shape of a service's patterns, and the match and pattern
 * limits.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "filter.h"
#include "filter_defaults.h"
#include "filter_effective.h"
#include "util.h"

/* Decision for one name under a one-key set built from inc/exc (NULL-terminated). */
static bool
kept(const char *const *inc, const char *const *exc, const char *name)
{
	struct filter_set *fs = filter_set_create();
	struct filter_decision d;
	char *cause = NULL;
	size_t i;

	for (i = 0; inc != NULL && inc[i] != NULL; i++)
		assert_int_equal(filter_set_add(fs, "k", false, inc[i],
		    FILTER_ORIGIN_CLI, "t", &cause), 0);
	for (i = 0; exc != NULL && exc[i] != NULL; i++)
		assert_int_equal(filter_set_add(fs, "k", true, exc[i],
		    FILTER_ORIGIN_CLI, "t", &cause), 0);
	assert_int_equal(filter_set_match(fs, "k", name, strlen(name), &d,
	    &cause), 0);
	filter_set_free(fs);
	return d.kept;
}

static bool
m(const char *pat, const char *name)
{
	const char *inc[] = { pat, NULL };

	return kept(inc, NULL, name);
}

static void
test_semantics(void **state)
{
	const char *inc[] = { "^sales", NULL }, *exc[] = { "sales_tmp", NULL };

	(void)state;
	assert_true(m("sys", "sys_extra"));	/* anchored at start only */
	assert_false(m("schema", "my_schema"));
	assert_true(m("SYS", "sys"));		/* case-insensitive */
	assert_true(kept(inc, exc, "sales_a"));
	assert_false(kept(inc, exc, "sales_tmp1"));	/* include then exclude */
	assert_false(kept(inc, exc, "other"));
	assert_false(kept(NULL, exc, ""));	/* empty name dropped */
	assert_true(kept(NULL, NULL, "x"));
	assert_false(kept(NULL, NULL, ""));
}

static void
test_python_syntax(void **state)
{
	(void)state;
	assert_true(m("a\\Z", "a"));
	assert_false(m("a\\Z", "a\n"));		/* \Z is PCRE2's \z */
	assert_true(m("a$", "a\n"));		/* $ before a final newline */
	assert_false(m("a$", "a\nb"));
	assert_true(m("\\Aab", "ab"));
	assert_true(m("(?P<x>a)(?P=x)", "aA"));
	assert_true(m("a{,2}b", "aab"));	/* {,n} is {0,n} in Python */
	assert_true(m("a{,2}b", "b"));
	assert_true(m("a{x}", "a{x}"));		/* not a quantifier: literal */
	assert_true(m("[[:alpha:]]+", "a]]"));	/* no POSIX classes */
	assert_false(m("[[:alpha:]]", "b"));
	assert_true(m("\\u00e9", "\xc3\x89"));	/* \uXXXX, caseless */
	assert_true(m("\\U0001F600", "\xf0\x9f\x98\x80"));
	assert_true(m("\\101", "a"));		/* octal */
	assert_true(m("(a)\\1", "aa"));		/* backreference */
	assert_true(m("a*+b", "aab"));		/* possessive */
	assert_true(m("(?>a+)b", "ab"));
	assert_true(m("(?x) a b # comment", "ab"));
	assert_true(m("(?s)a.b", "a\nb"));
	assert_false(m("a.b", "a\nb"));
	assert_false(m("(?-i:a)", "A"));
	assert_true(m("\\s", "\x1c"));		/* Python's \s has U+001C */
	assert_false(m("\\s", "\xe1\xa0\x8e"));	/* ... not U+180E */
	assert_true(m("\\S", "\xe1\xa0\x8e"));
	assert_true(m("[\\s\\S]", "\xe1\xa0\x8e"));	/* \S in a set */
	assert_false(m("[^\\S]", "x"));
	assert_true(m("[^\\S]", "\x1f"));
	assert_true(m("[\\s-]", "-"));
	assert_true(m("\\v", "\x0b"));
	assert_false(m("\\v", "\n"));
	/* Unicode case folding as Python's IGNORECASE */
	assert_true(m("k", "\xe2\x84\xaa"));	/* KELVIN SIGN */
	assert_true(m("s", "\xc5\xbf"));	/* LONG S */
	assert_true(m("\xcf\x83", "\xcf\x82"));	/* sigma, final sigma */
	assert_true(m("i", "\xc4\xb0"));	/* dotted capital I */
	assert_true(m("I", "\xc4\xb1"));	/* dotless i */
	assert_true(m("[a-z]", "\xc4\xb0"));
	assert_false(m("ss", "\xc3\x9f"));	/* no full folding, as Python */
	assert_true(m("\\d", "\xd9\xa3"));	/* Unicode digits */
}

static void
reject(const char *pat, const char *want)
{
	struct filter_set *fs = filter_set_create();
	char *cause = NULL;

	assert_int_equal(filter_set_add(fs, "tableFilterPattern", true, pat,
	    FILTER_ORIGIN_SERVICE, "the service", &cause), -1);
	assert_non_null(cause);
	if (strstr(cause, want) == NULL)
		fail_msg("'%s': got '%s', want '%s'", pat, cause, want);
	assert_non_null(strstr(cause, "tableFilterPattern.excludes[0]"));
	free(cause);
	filter_set_free(fs);
}

static void
test_rejects(void **state)
{
	(void)state;
	reject("\\K", "bad escape \\K");
	reject("\\Qa\\E", "bad escape \\Q");
	reject("\\p{L}", "bad escape \\p");
	reject("\\h", "bad escape \\h");
	reject("\\R", "bad escape \\R");
	reject("\\z", "bad escape \\z");
	reject("\\N{DIGIT ONE}", "not supported");
	reject("(?a)x", "ASCII flag");
	reject("(?L)x", "'L' flag");
	reject("a(?i)", "global flags not at the start");
	reject("(?<n>a)", "unknown extension");
	reject("(*UTF)a", "nothing to repeat");
	reject("a**", "multiple repeat");
	reject("^*", "nothing to repeat");
	reject("(a\\1)", "open group");
	reject("\\2(a)", "invalid group reference");
	reject("a(b", "missing )");
	reject("[a", "unterminated character set");
	reject("\\x4", "incomplete escape");
	reject("a{3,1}", "min repeat greater than max repeat");
	reject("a{70000}", "offset");	/* PCRE2's own message */
	reject("a(b", "'a(b'");
	reject("a(b", "the service");
}

/*
 * Python refuses a lookbehind unless its width is fixed, counted as sre
 * counts it; PCRE2 would take top-level branches of different widths. A
 * reference inside a lookbehind to a group opened inside it is refused too.
 */
/* Widths of groups past the first ones kept: 39 groups "(a)", then group
 * 40 "(bc)" (2 wide) and group 41 "(d|ef)" (not of one width). */
static void
lookbehind_many_groups(void)
{
	struct ap_buf p, name;
	int i;

	ap_buf_init(&p);
	ap_buf_init(&name);
	for (i = 0; i < 39; i++) {
		ap_buf_adds(&p, "(a)");
		ap_buf_adds(&name, "a");
	}
	ap_buf_adds(&p, "(bc)(d|ef)");
	ap_buf_adds(&name, "bcdx");
	ap_buf_adds(&p, "(?<=\\40d)x");
	assert_true(m(p.data, name.data));
	p.len -= strlen("(?<=\\40d)x");
	ap_buf_adds(&p, "(?<=\\41)x");
	reject(p.data, "look-behind requires fixed-width pattern");
	ap_buf_cleanup(&p);
	ap_buf_cleanup(&name);
}

static void
test_lookbehind_width(void **state)
{
	(void)state;
	assert_true(m("a(?<=a|b)", "a"));
	assert_true(m("ab(?<=a{2}|ab)", "ab"));
	assert_true(m("ab(?<=(?:a|b){2})", "ab"));
	assert_true(m("(ab)(?<=\\1)", "ab"));
	assert_true(m("(?P<g>ab)c(?<=(?P=g)c)", "abc"));
	assert_true(m("(x)a(?<=(?(1)a|b))", "xa"));
	assert_true(m("a(?<=\\ba$)", "a"));
	assert_true(m("ab(?<=(?=b)b)", "ab"));
	reject("a(?<=a|bc)", "look-behind requires fixed-width pattern");
	reject("(?<=ab(c|de))x", "look-behind requires fixed-width pattern");
	reject("(?<!a.?)x", "look-behind requires fixed-width pattern");
	reject("(?<=a*)x", "look-behind requires fixed-width pattern");
	reject("(?<=a{1,2})x", "look-behind requires fixed-width pattern");
	reject("(a|bc)(?<=\\1)", "look-behind requires fixed-width pattern");
	reject("(x)(?<=(?(1)a))", "look-behind requires fixed-width pattern");
	reject("(x)(?<=(?(1)a|bc))", "look-behind requires fixed-width pattern");
	reject("(?<=(?<=a|bc)d)", "look-behind requires fixed-width pattern");
	reject("(?<=(ab)\\1)c", "cannot refer to group defined in the same lookbehind");
	reject("(?<=(?P<g>a)(?P=g))", "cannot refer to group defined in the same lookbehind");
	reject("(?<=(?(1)a|b))(x)", "cannot refer to an open group");
	lookbehind_many_groups();
}

/*
 * Python's conditionals (?(N)...) and (?(name)...): PCRE2 reads more
 * between the parentheses, which must never change the answer.
 */
static void
test_conditionals(void **state)
{
	(void)state;
	assert_true(m("(a)?(?(1)b|c)", "ab"));
	assert_true(m("(a)?(?(1)b|c)", "c"));
	assert_false(m("(a)?(?(1)b|c)", "b"));
	assert_true(m("(?P<x>a)?(?(x)b|c)", "c"));
	assert_false(m("(?P<x>a)?(?(x)b|c)", "b"));
	assert_true(m("(?P<x>a)?(?(x)b|c)", "ab"));
	/* A group named R or DEFINE is a group, not a recursion test. */
	assert_true(m("(?P<R>x)?(?(R)a|b)", "xa"));
	assert_false(m("(?P<R>x)?(?(R)a|b)", "a"));
	/* PCRE2's relative +1 is another group than Python's (deprecated) 1. */
	reject("(x)(?(+1)a|b)(c)", "bad character in group name '+1'");
	reject("(?(-1)a|b)(c)", "bad character in group name '-1'");
	reject("(?(R)a|b)", "unknown group name 'R'");
	reject("(?(DEFINE)a)b", "unknown group name 'DEFINE'");
	reject("(?(VERSION>=10)a|b)", "bad character in group name");
	reject("(?(x)a|b)(?P<x>c)", "unknown group name 'x'");
	reject("(?(0)a|b)", "bad group number");
	reject("(?(2)a|b)(c)", "invalid group reference 2");
	reject("(?()a)", "missing group name");
	reject("(?P=n)", "unknown group name 'n'");
	reject("(?P<n>a(?P=n))", "open group");
	/* Global flags belong to the first branch only. */
	reject("|(?i)a", "global flags not at the start");
	assert_true(m("(?i)|a", "x"));
}

/* Python's IGNORECASE equivalences that Unicode simple folding lacks. */
static void
test_case_equivalences(void **state)
{
	(void)state;
	assert_true(m("\xef\xac\x85", "\xef\xac\x86"));	/* long s t, s t */
	assert_true(m("\xef\xac\x86", "\xef\xac\x85"));
	assert_true(m("[\xef\xac\x85]", "\xef\xac\x86"));
	assert_false(m("[^\xef\xac\x85]", "\xef\xac\x86"));
	assert_true(m("\\ufb05", "\xef\xac\x86"));
	assert_false(m("(?-i:\xef\xac\x85)", "\xef\xac\x86"));
	assert_true(m("\xce\x90", "\xe1\xbf\x93"));	/* iota dialytika tonos / oxia */
	assert_true(m("\xe1\xbf\x93", "\xce\x90"));
	assert_true(m("[\xe1\xbf\x90-\xe1\xbf\x94]", "\xce\x90"));
	assert_true(m("\xce\xb0", "\xe1\xbf\xa3"));	/* upsilon */
	assert_true(m("\xe1\xbf\xa3", "\xce\xb0"));
}

static void
test_match_limit(void **state)
{
	struct filter_set *fs = filter_set_create();
	struct filter_decision d;
	char *cause = NULL, name[64];

	(void)state;
	memset(name, 'a', 40);
	strcpy(name + 40, "!b");
	assert_int_equal(filter_set_add(fs, "k", true, "(a|aa|a?)*(a|aa)*b",
	    FILTER_ORIGIN_CLI, "t", &cause), 0);
	assert_int_equal(filter_set_match(fs, "k", name, strlen(name), &d,
	    &cause), -1);
	assert_non_null(strstr(cause, "limit"));
	free(cause);
	cause = NULL;
	/* The set still works for the next name. */
	assert_int_equal(filter_set_match(fs, "k", "ab", 2, &d, &cause), 0);
	assert_false(d.kept);
	assert_int_equal(d.rule, FILTER_RULE_EXCLUDE);
	filter_set_free(fs);
}

static json_t *
jparse(const char *s)
{
	json_error_t e;
	json_t *j = json_loads(s, 0, &e);

	if (j == NULL)
		fail_msg("bad JSON in test: %s", e.text);
	return j;
}

static void
test_effective_merge(void **state)
{
	struct filter_config cfg;
	json_t *conf, *svc, *out, *want;
	struct filter_set *fs;
	struct filter_decision d;
	char *cause = NULL;

	(void)state;
	conf = jparse("{\"builtin_defaults\": true, \"defaults\": {"
	    "\"byServiceKind\": {\"database\": {\"schemaFilterPattern\": "
	    "{\"includes\": [\"^prod\"], \"excludes\": [\"^tmp\"]}}},"
	    "\"byConnector\": {\"Postgres\": {\"tableFilterPattern\": "
	    "{\"excludes\": [\"^bak_\"]}}}}}");
	assert_int_equal(filter_config_from_json(conf, &cfg, &cause), 0);
	svc = jparse("{\"name\": \"pg\", \"serviceType\": \"Postgres\", "
	    "\"connection\": {\"config\": {\"type\": \"Postgres\", "
	    "\"schemaFilterPattern\": {\"excludes\": [\"^old\"]}, "
	    "\"tableFilterPattern\": {\"includes\": [\"^t_\"]}}}}");
	out = filter_effective_json(&cfg, svc, "database", NULL, &cause);
	assert_non_null(out);
	want = jparse("{\"databaseFilterPattern\": {\"includes\": [], "
	    "\"excludes\": [\"^template1$\", \"^template0$\"]},"
	    "\"schemaFilterPattern\": {\"includes\": [\"^prod\"], \"excludes\": "
	    "[\"^information_schema$\", \"^tmp\", \"^old\"]},"
	    "\"tableFilterPattern\": {\"includes\": [\"^t_\"], \"excludes\": "
	    "[\"^bak_\"]}}");
	if (!json_equal(out, want)) {
		char *s = json_dumps(out, JSON_SORT_KEYS);

		fail_msg("effective: %s", s);
	}
	json_decref(out);
	json_decref(want);

	fs = filter_effective_set(&cfg, svc, "database", NULL, &cause);
	assert_non_null(fs);
	assert_int_equal(filter_set_match(fs, "schemaFilterPattern",
	    "information_schema", 18, &d, &cause), 0);
	assert_false(d.kept);
	assert_int_equal(d.rule, FILTER_RULE_NO_INCLUDE);
	assert_int_equal(filter_set_match(fs, "databaseFilterPattern",
	    "TEMPLATE1", 9, &d, &cause), 0);
	assert_false(d.kept);
	assert_int_equal(d.rule, FILTER_RULE_EXCLUDE);
	assert_int_equal(d.pattern->origin, FILTER_ORIGIN_BUILTIN);
	assert_string_equal(d.pattern->source, "builtin default for Postgres");
	assert_int_equal(filter_set_match(fs, "schemaFilterPattern",
	    "prod_x", 6, &d, &cause), 0);
	assert_true(d.kept);
	assert_int_equal(d.pattern->origin, FILTER_ORIGIN_CONFIG);
	filter_set_free(fs);

	/* Built-in defaults off. */
	cfg.builtin_defaults = false;
	out = filter_effective_json(&cfg, svc, "database", NULL, &cause);
	assert_null(json_object_get(out, "databaseFilterPattern"));
	json_decref(out);
	filter_config_cleanup(&cfg);
	json_decref(conf);
	json_decref(svc);

	/* Other kinds: a dashboard service. */
	svc = jparse("{\"serviceType\": \"Looker\", \"connection\": {\"config\":"
	    " {\"chartFilterPattern\": {\"includes\": [\"^kpi\"]}}}}");
	out = filter_effective_json(NULL, svc, "dashboard", NULL, &cause);
	want = jparse("{\"chartFilterPattern\": {\"includes\": [\"^kpi\"], "
	    "\"excludes\": []}}");
	assert_true(json_equal(out, want));
	json_decref(out);
	json_decref(want);
	json_decref(svc);
	assert_string_equal(filter_kind_from_entity_type("mlmodelService"), "mlmodel");
	assert_string_equal(filter_key_kind("topicFilterPattern"), "messaging");
	assert_null(filter_kind_keys("securityService"));
}

/* filter_config_from_json() refuses text with a message holding both needles
 * (the second may be NULL). */
static void
config_error(const char *text, const char *needle, const char *needle2)
{
	struct filter_config cfg;
	json_t *conf = jparse(text);
	char *cause = NULL;

	assert_int_equal(filter_config_from_json(conf, &cfg, &cause), -1);
	if (strstr(cause, needle) == NULL ||
	    (needle2 != NULL && strstr(cause, needle2) == NULL))
		fail_msg("cause '%s' lacks '%s' or '%s'", cause, needle,
		    needle2 != NULL ? needle2 : "");
	free(cause);
	json_decref(conf);
}

static void
test_config_errors(void **state)
{
	(void)state;
	config_error("{\"defaults\": {\"byServiceKind\": {\"database\": "
	    "{\"schemaFilterPattern\": {\"excludes\": [\"ok\", \"(\"]}}}}}",
	    "filters.defaults.byServiceKind.database."
	    "schemaFilterPattern.excludes[1]: invalid pattern '('", NULL);
	config_error("{\"builtin_defaults\": 1}", "filters.builtin_defaults", NULL);
	config_error("{\"defaults\": {\"byServiceKind\": {\"databse\": {}}}}",
	    "filters.defaults.byServiceKind.databse: unknown service kind",
	    "(known: database, metadata, messaging, dashboard, pipeline, mlmodel,"
	    " storage, search, api)");
	assert_non_null(filter_defaults_for("postgres"));
	assert_null(filter_defaults_for("Looker"));
}

/* A byServiceKind entry takes only its kind's filter keys: the message
 * names the path and lists the keys valid for that kind. */
static void
test_config_kind_keys(void **state)
{
	struct filter_config cfg;
	json_t *conf;
	char *cause = NULL;

	(void)state;
	config_error("{\"defaults\": {\"byServiceKind\": {\"database\": "
	    "{\"topicFilterPattern\": {}}}}}", "filters.defaults.byServiceKind."
	    "database.topicFilterPattern: not a filter key of database services",
	    "databaseFilterPattern, schemaFilterPattern, tableFilterPattern");
	config_error("{\"defaults\": {\"byServiceKind\": {\"messaging\": "
	    "{\"topicFilterPattern\": {}}, \"dashboard\": "
	    "{\"chartFilterPattern\": {}, \"tableFilterPattern\": {}}}}}",
	    "byServiceKind.dashboard.tableFilterPattern: not a filter key of"
	    " dashboard services", "dashboardFilterPattern, chartFilterPattern,"
	    " dataModelFilterPattern, projectFilterPattern");
	config_error("{\"defaults\": {\"byServiceKind\": {\"database\": "
	    "{\"tableFilterPatern\": {}}}}}", "database.tableFilterPatern: unknown"
	    " filter key", "the keys of database services: databaseFilterPattern");
	/* metadata services have the database keys; byConnector takes any. */
	conf = jparse("{\"defaults\": {\"byServiceKind\": {\"metadata\": "
	    "{\"tableFilterPattern\": {}}, \"messaging\": {\"topicFilterPattern\":"
	    " {}}}, \"byConnector\": {\"Kafka\": {\"topicFilterPattern\": {},"
	    " \"tableFilterPattern\": {}}}}}");
	assert_int_equal(filter_config_from_json(conf, &cfg, &cause), 0);
	filter_config_cleanup(&cfg);
	json_decref(conf);
}

/* The effective filters of a Postgres service whose connection.config
 * holds config_tail (JSON members): NULL and *cause, or a new object. */
static json_t *
service_filters(const char *config_tail, char **cause)
{
	char *text = ap_xprintf("{\"name\": \"pg\", \"serviceType\": "
	    "\"Postgres\", \"connection\": {\"config\": {\"type\": "
	    "\"Postgres\"%s%s}}}", config_tail[0] != '\0' ? ", " : "",
	    config_tail);
	json_t *svc = jparse(text), *out;
	struct filter_set *fs;
	char *why = NULL;

	free(text);
	out = filter_effective_json(NULL, svc, "database", NULL, cause);
	/* The compiled set (filter test, decisions) says the same. */
	fs = filter_effective_set(NULL, svc, "database", NULL, &why);
	assert_true((out == NULL) == (fs == NULL));
	if (out == NULL)
		assert_string_equal(why, *cause);
	free(why);
	filter_set_free(fs);
	json_decref(svc);
	return out;
}

/* A service's FilterPattern that is refused, with a message holding want. */
static void
service_error(const char *config_tail, const char *want)
{
	char *cause = NULL;
	json_t *out = service_filters(config_tail, &cause);

	if (out != NULL) {
		char *s = json_dumps(out, JSON_SORT_KEYS);

		fail_msg("'%.200s' taken: %.200s", config_tail, s);
	}
	if (strstr(cause, want) == NULL)
		fail_msg("'%.200s': got '%s', want '%s'", config_tail, cause, want);
	free(cause);
}

/*
 * A service's *FilterPattern that does not have OpenMetadata's shape
 * (filterPattern.json: an object of includes and excludes, lists of
 * strings) is an error naming the key path: read past, it would deploy the
 * agent with no filter at all. null is no list, as OpenMetadata sends it.
 */
static void
test_service_filter_shape(void **state)
{
	char *cause = NULL;
	json_t *out, *want;

	(void)state;
	service_error("\"tableFilterPattern\": {\"includes\": \"^fact_\"}",
	    "connection.config.tableFilterPattern.includes: expected a list of"
	    " strings, got a string");
	service_error("\"tableFilterPattern\": {\"includes\": [\"^a\", 3]}",
	    "connection.config.tableFilterPattern.includes[1]: expected a string,"
	    " got a number");
	service_error("\"schemaFilterPattern\": {\"excludes\": [null]}",
	    "connection.config.schemaFilterPattern.excludes[0]: expected a"
	    " string, got null");
	service_error("\"tableFilterPattern\": \"^fact_\"",
	    "connection.config.tableFilterPattern: expected an object with"
	    " includes and excludes, got a string");
	service_error("\"databaseFilterPattern\": [\"^a\"]",
	    "connection.config.databaseFilterPattern: expected an object with"
	    " includes and excludes, got a list");
	service_error("\"tableFilterPattern\": {\"excludes\": {\"0\": \"^a\"}}",
	    "connection.config.tableFilterPattern.excludes: expected a list of"
	    " strings, got an object");
	/* Python's FilterPattern forbids other keys: a typo loses the list. */
	service_error("\"tableFilterPattern\": {\"include\": [\"^a\"]}",
	    "connection.config.tableFilterPattern.include: unknown key"
	    " (expected includes or excludes)");

	/* null lists and a null FilterPattern: no patterns of the service's. */
	out = service_filters("\"tableFilterPattern\": {\"includes\": null,"
	    " \"excludes\": null}, \"schemaFilterPattern\": null,"
	    " \"databaseFilterPattern\": {\"includes\": null, \"excludes\":"
	    " [\"^x\"]}", &cause);
	assert_non_null(out);
	assert_null(json_object_get(out, "tableFilterPattern"));
	want = json_pack("{s:[],s:[sss]}", "includes", "excludes",
	    "^template1$", "^template0$", "^x");
	assert_true(json_equal(json_object_get(out, "databaseFilterPattern"),
	    want));
	json_decref(want);
	json_decref(out);

	/* Keys of another kind are not the service's filters for this kind. */
	out = service_filters("\"topicFilterPattern\": \"x\"", &cause);
	assert_non_null(out);
	json_decref(out);
}

/* A JSON list of n patterns "^pREFIXk$" (new string). */
static char *
pattern_list(size_t n, const char *prefix)
{
	struct ap_buf b;
	size_t i;

	ap_buf_init(&b);
	ap_buf_addc(&b, '[');
	for (i = 0; i < n; i++)
		ap_buf_printf(&b, "%s\"^%s%zu$\"", i > 0 ? ", " : "", prefix, i);
	ap_buf_addc(&b, ']');
	return ap_buf_steal(&b, NULL);
}

/*
 * Python's case rules spell each 'i' out as a set of four, so a pattern can
 * grow 16-fold once translated: a set takes at most FILTER_MAX_SET_BYTES of
 * translation, whatever the pattern count. A pattern refused does not use
 * up the budget; a long one is quoted cut short, with its length.
 */
static void
test_pattern_budget(void **state)
{
	struct filter_set *fs;
	char *p = ap_xmalloc(1003), *cause = NULL, *xl, *big;
	size_t i, xlen, n;

	(void)state;
	memset(p, 'i', 1000);
	memcpy(p + 1000, "00", 3);
	xl = filter_translate(p, &cause, NULL);
	assert_non_null(xl);
	xlen = strlen(xl);
	assert_true(xlen > 16 * 1000);
	free(xl);
	n = FILTER_MAX_SET_BYTES / xlen;	/* the patterns that fit */

	fs = filter_set_create();
	filter_set_check_only(fs);
	for (i = 0; i < n; i++) {
		p[1000] = (char)('0' + i / 10);
		p[1001] = (char)('0' + i % 10);
		assert_int_equal(filter_set_add(fs, i % 2 ? "schemaFilterPattern" :
		    "tableFilterPattern", false, p, FILTER_ORIGIN_SERVICE,
		    "service", &cause), 0);
	}
	assert_true(n < 100);
	p[1000] = (char)('0' + n / 10);
	p[1001] = (char)('0' + n % 10);
	assert_int_equal(filter_set_add(fs, "tableFilterPattern", true, p,
	    FILTER_ORIGIN_SERVICE, "service", &cause), -1);
	assert_string_equal(cause, "connection.config.tableFilterPattern."
	    "excludes[0]: the filter's patterns come to more than 512 KiB once written for "
	    "PCRE2, the limit (Python's case rules spell each 'i' out as a set "
	    "of 4) (service)");
	free(cause);
	/* What is left of the budget still takes short patterns. */
	assert_int_equal(filter_set_add(fs, "tableFilterPattern", true,
	    "^tmp_", FILTER_ORIGIN_SERVICE, "service", &cause), 0);
	filter_set_free(fs);

	/* One pattern past what PCRE2 compiles (64 KiB of code): said so. */
	fs = filter_set_create();
	big = ap_xmalloc(2001);
	memset(big, 'i', 2000);
	big[2000] = '\0';
	assert_int_equal(filter_set_add(fs, "tableFilterPattern", false, big,
	    FILTER_ORIGIN_CLI, "--include", &cause), -1);
	assert_non_null(strstr(cause, "PCRE2 compiles a pattern to at most 64 KiB"));
	free(cause);
	free(big);
	filter_set_free(fs);

	/* Quoted cut short, never in the middle of a character. */
	fs = filter_set_create();
	memset(p, 'a', 79);
	memcpy(p + 79, "\xc3\xa9(", 4);	/* 'é' across the cut, then '(' */
	assert_int_equal(filter_set_add(fs, "tableFilterPattern", false, p,
	    FILTER_ORIGIN_CLI, "--include", &cause), -1);
	assert_non_null(strstr(cause, "includes[0]: invalid pattern 'aaaaa"));
	assert_non_null(strstr(cause, "aaa\xe2\x80\xa6' (82 bytes): missing"));
	assert_null(strstr(cause, "\xc3"));
	free(cause);
	filter_set_free(fs);
	free(p);
}

/*
 * At most FILTER_MAX_PATTERNS patterns per list as written in one place,
 * each at most FILTER_MAX_PATTERN_LEN bytes: in a service entity (from a
 * webhook, planned on the event loop), in the configuration, and added one
 * by one (the --include and --exclude flags). Lists from several sources
 * merge past the limit.
 */
static void
test_pattern_limits(void **state)
{
	struct filter_config cfg;
	struct filter_set *fs;
	json_t *conf, *out;
	char *list, *tail, *cause = NULL, buf[32];
	char *big = ap_xmalloc(FILTER_MAX_PATTERN_LEN + 2);
	size_t i;

	(void)state;
	/* A service's list: counted before anything is compiled. */
	list = pattern_list(FILTER_MAX_PATTERNS + 1, "t");
	tail = ap_xprintf("\"tableFilterPattern\": {\"includes\": %s}", list);
	service_error(tail, "connection.config.tableFilterPattern.includes: 1001"
	    " patterns; the limit is 1000 per list");
	free(tail);
	free(list);
	memset(big, 'a', FILTER_MAX_PATTERN_LEN + 1);
	big[FILTER_MAX_PATTERN_LEN + 1] = '\0';
	tail = ap_xprintf("\"schemaFilterPattern\": {\"excludes\": [\"^x\","
	    " \"%s\"]}", big);
	service_error(tail, "connection.config.schemaFilterPattern.excludes[1]:"
	    " pattern of 4097 bytes; the limit is 4096 bytes per pattern");
	free(tail);

	/* The configuration's lists. */
	list = pattern_list(FILTER_MAX_PATTERNS + 1, "c");
	tail = ap_xprintf("{\"defaults\": {\"byServiceKind\": {\"database\":"
	    " {\"tableFilterPattern\": {\"excludes\": %s}}}}}", list);
	config_error(tail, "filters.defaults.byServiceKind.database."
	    "tableFilterPattern.excludes: 1001 patterns; the limit is 1000 per"
	    " list", NULL);
	free(tail);
	free(list);
	tail = ap_xprintf("{\"defaults\": {\"byConnector\": {\"Mysql\":"
	    " {\"tableFilterPattern\": {\"includes\": [\"%s\"]}}}}}", big);
	config_error(tail, "filters.defaults.byConnector.Mysql.tableFilterPattern"
	    ".includes[0]: pattern of 4097 bytes; the limit is 4096 bytes per"
	    " pattern", NULL);
	free(tail);

	/* One by one: the 1001st from one source is refused, another
	 * source's are still taken; so is a pattern of exactly the limit. */
	fs = filter_set_create();
	filter_set_check_only(fs);
	for (i = 0; i < FILTER_MAX_PATTERNS; i++) {
		snprintf(buf, sizeof buf, "^i%zu$", i);
		assert_int_equal(filter_set_add(fs, "tableFilterPattern", false,
		    buf, FILTER_ORIGIN_CLI, "--include", &cause), 0);
	}
	assert_int_equal(filter_set_add(fs, "tableFilterPattern", false, "^x",
	    FILTER_ORIGIN_CLI, "--include", &cause), -1);
	assert_string_equal(cause, "tableFilterPattern.includes: more than 1000"
	    " patterns (--include); the limit is 1000 per list");
	free(cause);
	assert_int_equal(filter_set_add(fs, "tableFilterPattern", true, "^x",
	    FILTER_ORIGIN_CLI, "--exclude", &cause), 0);
	assert_int_equal(filter_set_add(fs, "tableFilterPattern", false, "^x",
	    FILTER_ORIGIN_SERVICE, "service", &cause), 0);
	assert_int_equal(filter_set_add(fs, "tableFilterPattern", true, big,
	    FILTER_ORIGIN_CLI, "--exclude", &cause), -1);
	assert_string_equal(cause, "tableFilterPattern.excludes[1]: pattern of"
	    " 4097 bytes; the limit is 4096 bytes per pattern (--exclude)");
	free(cause);
	big[FILTER_MAX_PATTERN_LEN] = '\0';
	assert_int_equal(filter_set_add(fs, "tableFilterPattern", true, big,
	    FILTER_ORIGIN_CLI, "--exclude", &cause), 0);
	filter_set_free(fs);

	/* The limit is per list as written: 1000 excludes in each of the
	 * configuration's two places and in the service merge to 3002. */
	list = pattern_list(FILTER_MAX_PATTERNS, "k");
	tail = pattern_list(FILTER_MAX_PATTERNS, "c");
	{
		char *text = ap_xprintf("{\"defaults\": {\"byServiceKind\": "
		    "{\"database\": {\"databaseFilterPattern\": {\"excludes\":"
		    " %s}}}, \"byConnector\": {\"Postgres\": "
		    "{\"databaseFilterPattern\": {\"excludes\": %s}}}}}", list,
		    tail);

		conf = jparse(text);
		free(text);
	}
	assert_int_equal(filter_config_from_json(conf, &cfg, &cause), 0);
	free(tail);
	tail = pattern_list(FILTER_MAX_PATTERNS, "s");
	{
		char *text = ap_xprintf("{\"name\": \"pg\", \"serviceType\":"
		    " \"Postgres\", \"connection\": {\"config\": "
		    "{\"databaseFilterPattern\": {\"excludes\": %s}}}}", tail);
		json_t *svc = jparse(text);

		free(text);
		out = filter_effective_json(&cfg, svc, "database", NULL, &cause);
		assert_non_null(out);
		assert_int_equal(json_array_size(json_object_get(json_object_get(
		    out, "databaseFilterPattern"), "excludes")),
		    3 * FILTER_MAX_PATTERNS + 2);
		json_decref(out);
		fs = filter_effective_set(&cfg, svc, "database", NULL, &cause);
		assert_non_null(fs);
		assert_int_equal(filter_set_excludes(fs, "databaseFilterPattern",
		    NULL), 3 * FILTER_MAX_PATTERNS + 2);
		filter_set_free(fs);
		json_decref(svc);
	}
	filter_config_cleanup(&cfg);
	json_decref(conf);
	free(tail);
	free(list);
	free(big);
}

/* Connector names with no built-in defaults: taken, with a note that
 * suggests the closest built-in name for a likely typo. */
static void
test_connector_notes(void **state)
{
	struct filter_config cfg;
	json_t *conf, *w;
	char *note;

	(void)state;
	assert_string_equal(filter_defaults_closest("Postgress"), "Postgres");
	assert_string_equal(filter_defaults_closest("postgre"), "Postgres");
	assert_string_equal(filter_defaults_closest("SNOWFLAK"), "Snowflake");
	assert_string_equal(filter_defaults_closest("Orcale"), "Oracle");
	assert_null(filter_defaults_closest("Postgres"));	/* has defaults */
	assert_null(filter_defaults_closest("Looker"));
	assert_null(filter_defaults_closest("BigQuery"));
	assert_null(filter_defaults_closest("Db2"));
	assert_null(filter_defaults_closest(""));
	assert_null(filter_connector_note("postgres"));
	assert_null(filter_connector_note(NULL));
	note = filter_connector_note("Postgress");
	assert_string_equal(note, "no built-in default filters for connector"
	    " 'Postgress'; did you mean 'Postgres'?");
	free(note);
	note = filter_connector_note("BigQuery");
	assert_non_null(strstr(note, "no built-in default filters for connector"
	    " 'BigQuery' (there are for Postgres, Mysql"));
	assert_null(strstr(note, "did you mean"));
	free(note);

	conf = jparse("{\"defaults\": {\"byConnector\": {\"Postgress\": {},"
	    " \"mysql\": {}, \"Looker\": {}}}}");
	assert_int_equal(filter_config_from_json(conf, &cfg, NULL), 0);
	w = json_array();
	filter_config_warnings(&cfg, w);
	/* Looker has no built-in defaults, and is no typo: its entry applies. */
	assert_int_equal(json_array_size(w), 1);
	assert_string_equal(json_string_value(json_array_get(w, 0)),
	    "filters.defaults.byConnector.Postgress: no built-in default filters"
	    " for connector 'Postgress'; did you mean 'Postgres'?");
	json_decref(w);
	filter_config_cleanup(&cfg);
	json_decref(conf);
}

/* A key of a service's connection.config that looks like a misspelt filter
 * key of its kind is warned about; filter keys and other keys are not. */
static void
test_service_key_typos(void **state)
{
	json_t *svc, *w;

	(void)state;
	svc = jparse("{\"connection\": {\"config\": {"
	    "\"tabelFilterPattern\": {}, \"TableFilterPattern\": {},"
	    " \"schemaFilterPattern\": {}, \"topicFilterPattern\": {},"
	    " \"hostPort\": \"db:5432\", \"username\": \"u\", \"type\": \"Postgres\","
	    " \"classificationFilterPattern\": {}, \"topicFilterPatterns\": {},"
	    " \"x\": 1, \"tableFilter\": {}}}}");
	w = json_array();
	filter_service_warnings(svc, "database", w);
	assert_int_equal(json_array_size(w), 2);
	assert_string_equal(json_string_value(json_array_get(w, 0)),
	    "connection.config.tabelFilterPattern: not a filter key, so it"
	    " filters nothing (did you mean tableFilterPattern?)");
	assert_string_equal(json_string_value(json_array_get(w, 1)),
	    "connection.config.TableFilterPattern: not a filter key, so it"
	    " filters nothing (did you mean tableFilterPattern?)");
	json_decref(w);
	/* Of any kind's keys, for no kind or an unknown one. */
	w = json_array();
	filter_service_warnings(svc, NULL, w);
	assert_int_equal(json_array_size(w), 3);
	assert_string_equal(json_string_value(json_array_get(w, 2)),
	    "connection.config.topicFilterPatterns: not a filter key, so it"
	    " filters nothing (did you mean topicFilterPattern?)");
	json_array_clear(w);
	filter_service_warnings(svc, "nosuch", w);
	assert_int_equal(json_array_size(w), 3);
	json_decref(w);
	json_decref(svc);
	/* No connection.config, or not an object: nothing. */
	w = json_array();
	svc = jparse("{\"connection\": {\"config\": [1]}}");
	filter_service_warnings(svc, "database", w);
	filter_service_warnings(NULL, "database", w);
	assert_int_equal(json_array_size(w), 0);
	json_decref(w);
	json_decref(svc);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_semantics),
		cmocka_unit_test(test_service_key_typos),
		cmocka_unit_test(test_python_syntax),
		cmocka_unit_test(test_rejects),
		cmocka_unit_test(test_conditionals),
		cmocka_unit_test(test_lookbehind_width),
		cmocka_unit_test(test_case_equivalences),
		cmocka_unit_test(test_match_limit),
		cmocka_unit_test(test_effective_merge),
		cmocka_unit_test(test_config_errors),
		cmocka_unit_test(test_config_kind_keys),
		cmocka_unit_test(test_service_filter_shape),
		cmocka_unit_test(test_pattern_limits),
		cmocka_unit_test(test_pattern_budget),
		cmocka_unit_test(test_connector_notes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
