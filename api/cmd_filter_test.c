/*
 * cmd_filter_test.c — `autopilot filter test`: shows which names a set of
 * include/exclude patterns keeps, and which rule, pattern and source decided.
 *
 * Patterns: the built-in defaults of a connector, the configuration's
 * organisation defaults (-c), a service entity's own (--service-json) and
 * --include/--exclude, merged as the deployed pipelines get them. Names come
 * from the arguments, else from standard input one a line, streamed with
 * constant memory.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cmd.h"
#include "config.h"
#include "filter.h"
#include "filter_defaults.h"
#include "filter_effective.h"
#include "util.h"
#include "webhook.h"

#define MAX_INPUT_FILE (64u * 1024 * 1024)

static const char *const filter_kinds[] = { "database", "schema", "table",
	"topic", "dashboard", "chart", "dataModel", "project", "pipeline",
	"mlModel", "container", "searchIndex", "apiCollection", NULL };

struct ftest {
	struct filter_set *fs;
	const char *key;
	bool json;
	bool fqn;
	int errors;
	struct ap_buf out;
};

/* Appends s as a JSON string; bytes that are not valid UTF-8 become U+FFFD. */
static void
json_str(struct ap_buf *b, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)s, *e = p + len;

	ap_buf_addc(b, '"');
	while (p < e) {
		const unsigned char *run = p;

		while (p < e && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\')
			p++;
		if (p > run)
			ap_buf_add(b, run, (size_t)(p - run));
		if (p >= e)
			break;
		if (*p < 0x20) {
			char esc[7] = { '\\', 'u', '0', '0', hex[*p >> 4],
				hex[*p & 15], 0 };
			ap_buf_adds(b, esc);
			p++;
		} else if (*p == '"' || *p == '\\') {
			ap_buf_addc(b, '\\');
			ap_buf_addc(b, (char)*p++);
		} else {
			size_t n = *p >= 0xf0 && *p <= 0xf4 ? 3 : *p >= 0xe0 &&
			    *p <= 0xef ? 2 : *p >= 0xc2 && *p <= 0xdf ? 1 : 0;
			size_t k;
			bool ok = n > 0 && (size_t)(e - p) > n;

			for (k = 1; ok && k <= n; k++)
				ok = (p[k] & 0xc0) == 0x80;
			if (ok && n == 2 && ((p[0] == 0xe0 && p[1] < 0xa0) ||
			    (p[0] == 0xed && p[1] >= 0xa0)))
				ok = false;
			if (ok && n == 3 && ((p[0] == 0xf0 && p[1] < 0x90) ||
			    (p[0] == 0xf4 && p[1] >= 0x90)))
				ok = false;
			if (ok) {
				ap_buf_add(b, p, n + 1);
				p += n + 1;
			} else {
				ap_buf_adds(b, "\\ufffd");
				p++;
			}
		}
	}
	ap_buf_addc(b, '"');
}

static void
flush_out(struct ftest *t, bool force)
{
	if (t->out.len >= 64 * 1024 || (force && t->out.len > 0)) {
		errno = 0;
		if (fwrite(t->out.data, 1, t->out.len, stdout) < t->out.len)
			ap_stdout_failed(errno);
		ap_buf_reset(&t->out);
	}
}

static void
decide(struct ftest *t, const char *name, size_t len)
{
	struct filter_decision d;
	char *cause = NULL;
	struct ap_buf *b = &t->out;
	const struct filter_pattern *fp;

	if (filter_set_match(t->fs, t->key, name, len, &d, &cause) < 0) {
		t->errors++;
		if (t->json) {
			ap_buf_adds(b, "{\"name\":");
			json_str(b, name, len);
			ap_buf_adds(b, ",\"kept\":false,\"error\":");
			json_str(b, cause, strlen(cause));
			ap_buf_adds(b, "}\n");
		} else {
			ap_buf_adds(b, "error   ");
			ap_buf_add_term(b, name, len);
			ap_buf_adds(b, "  ");
			ap_buf_add_term(b, cause, strlen(cause));
			ap_buf_addc(b, '\n');
		}
		free(cause);
		flush_out(t, false);
		return;
	}
	fp = d.pattern;
	if (t->json) {
		ap_buf_adds(b, "{\"name\":");
		json_str(b, name, len);
		ap_buf_adds(b, d.kept ? ",\"kept\":true,\"rule\":\"" :
		    ",\"kept\":false,\"rule\":\"");
		ap_buf_adds(b, filter_rule_name(d.rule));
		ap_buf_addc(b, '"');
		if (fp != NULL) {
			ap_buf_adds(b, ",\"pattern\":");
			json_str(b, fp->pattern, strlen(fp->pattern));
			ap_buf_adds(b, ",\"source\":");
			json_str(b, fp->source, strlen(fp->source));
		}
		ap_buf_adds(b, "}\n");
		flush_out(t, false);
		return;
	}
	/* Names, patterns and where they come from as a terminal may show
	 * them, one line each (a name given as an argument may hold a line
	 * end, one read may hold an escape sequence). */
	ap_buf_adds(b, d.kept ? "kept     " : "dropped  ");
	ap_buf_add_term(b, name, len);
	switch (d.rule) {
	case FILTER_RULE_INCLUDE:
	case FILTER_RULE_EXCLUDE:
		ap_buf_adds(b, d.rule == FILTER_RULE_INCLUDE ? "  matches include '" :
		    "  matches exclude '");
		ap_buf_add_term(b, fp->pattern, strlen(fp->pattern));
		ap_buf_adds(b, "' (");
		ap_buf_add_term(b, fp->source, strlen(fp->source));
		ap_buf_adds(b, d.rule == FILTER_RULE_INCLUDE ? "), no exclude\n" :
		    ")\n");
		break;
	case FILTER_RULE_NO_INCLUDE:
		ap_buf_adds(b, "  matches no include\n");
		break;
	case FILTER_RULE_NO_EXCLUDE:
		ap_buf_adds(b, "  matches no exclude\n");
		break;
	case FILTER_RULE_EMPTY:
		ap_buf_adds(b, "(empty name)\n");
		break;
	default:
		ap_buf_adds(b, "  no filter for this kind\n");
		break;
	}
	flush_out(t, false);
}

/*
 * An error elsewhere in the configuration at path (one serve and run would
 * refuse) is said as a warning: only its filters are used here. Not for
 * standard input, which is read once.
 */
static void
warn_config_rest(const char *path)
{
	struct config full;
	struct config_flags quiet = { .quiet = true, .skip_secrets =
	    CONFIG_SECRET_ALL };
	char *why = NULL, *shown;

	if (strcmp(path, "-") == 0)
		return;
	config_init(&full);
	if (config_load(&full, path, &quiet, &why) < 0) {
		shown = ap_term_text(why);
		fprintf(stderr, "autopilot: warning: %s (serve, run and config check"
		    " refuse this configuration; filter test uses only its"
		    " filters)\n", shown);
		free(shown);
		free(why);
	}
	config_cleanup(&full);
}

static json_t *
load_json(const char *path, const char *what, char **cause)
{
	json_error_t err;
	char *data, *why = NULL;
	size_t len;
	json_t *j;

	data = ap_read_file(path, MAX_INPUT_FILE, &len, &why);
	if (data == NULL) {
		/* why begins with the path. */
		*cause = ap_xprintf("%s %s", what, why);
		free(why);
		return NULL;
	}
	j = json_loadb(data, len, 0, &err);
	free(data);
	if (j == NULL)
		*cause = ap_xprintf("%s %s: line %d: %s", what, path, err.line,
		    err.text);
	return j;
}

/* The set for key: the effective set's includes (replaced by the service's
 * own plus --include when there are --include patterns) and excludes plus
 * --exclude. */
static struct filter_set *
build_set(struct filter_set *eff, const char *key, char **inc, size_t ninc,
    char **exc, size_t nexc, char **cause)
{
	struct filter_set *fs = filter_set_create();
	const struct filter_pattern *l;
	size_t i, n;

	n = filter_set_includes(eff, key, &l);
	for (i = 0; i < n; i++) {
		if (ninc > 0 && l[i].origin != FILTER_ORIGIN_SERVICE)
			continue;
		if (filter_set_add(fs, key, false, l[i].pattern, l[i].origin,
		    l[i].source, cause) < 0)
			goto fail;
	}
	for (i = 0; i < ninc; i++)
		if (filter_set_add(fs, key, false, inc[i], FILTER_ORIGIN_CLI,
		    "--include", cause) < 0)
			goto fail;
	n = filter_set_excludes(eff, key, &l);
	for (i = 0; i < n; i++)
		if (filter_set_add(fs, key, true, l[i].pattern, l[i].origin,
		    l[i].source, cause) < 0)
			goto fail;
	for (i = 0; i < nexc; i++)
		if (filter_set_add(fs, key, true, exc[i], FILTER_ORIGIN_CLI,
		    "--exclude", cause) < 0)
			goto fail;
	return fs;
fail:
	filter_set_free(fs);
	return NULL;
}

/*
 * Connector names with no built-in defaults are taken (OpenMetadata adds
 * connectors) but said on stderr, with the closest built-in name: a typo
 * silently loses the defaults. byConnector names in FILE only when they
 * look like such a typo. The exit status does not change.
 */
static void
warn_connectors(const struct filter_config *cfg, const char *config_path,
    const char *connector, const json_t *service, const char *service_path,
    const char *key)
{
	json_t *warnings = json_array(), *w;
	const json_t *defaults;
	const char *what = "--connector", *arg = connector, *kind, *dkey = NULL;
	const char *const *keys;
	struct ap_buf names;
	char *note;
	size_t i;

	filter_config_warnings(cfg, warnings);
	json_array_foreach(warnings, i, w)
		fprintf(stderr, "autopilot: warning: %s: %s\n", config_path,
		    json_string_value(w));
	json_decref(warnings);
	if (connector == NULL) {
		/* The service's own connector (serviceType). */
		connector = filter_service_connector(service);
		what = "--service-json";
		arg = service_path;
	}
	if ((note = filter_connector_note(connector)) != NULL) {
		fprintf(stderr, "autopilot: warning: %s %s: %s\n", what, arg, note);
		free(note);
		return;
	}
	/* A connector's built-in defaults tell its kind (that of their keys):
	 * the patterns of another kind filter nothing its services ingest. */
	if ((defaults = filter_defaults_for(connector)) == NULL)
		return;
	json_object_foreach((json_t *)defaults, dkey, w)
		break;
	if (dkey == NULL || (kind = filter_key_kind(dkey)) == NULL ||
	    filter_kind_has_key(kind, key) || (keys = filter_kind_keys(kind)) == NULL)
		return;
	ap_buf_init(&names);
	for (i = 0; keys[i] != NULL; i++)
		ap_buf_printf(&names, "%s%s", i == 0 ? "" : keys[i + 1] == NULL ?
		    " and " : ", ", keys[i]);
	fprintf(stderr, "autopilot: warning: --kind %.*s: %s is a %s connector,"
	    " whose services are filtered by %s only\n", (int)(strlen(key) -
	    strlen("FilterPattern")), key, filter_defaults_connector_name(connector),
	    kind, names.data);
	ap_buf_cleanup(&names);
}

static int
filter_test_exec(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "service-json", required_argument, NULL, 's' },
		{ "connector", required_argument, NULL, 'C' },
		{ "kind", required_argument, NULL, 'k' },
		{ "include", required_argument, NULL, 'i' },
		{ "exclude", required_argument, NULL, 'e' },
		{ "no-defaults", no_argument, NULL, 'n' },
		{ "fqn", no_argument, NULL, 'f' },
		{ "json", no_argument, NULL, 'j' },
		{ "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct ftest t;
	struct filter_config cfg;
	struct filter_set *eff = NULL;
	const char *service_path = NULL, *connector = NULL, *kind = "table";
	const char *config_path = NULL, *svc_kind = NULL;
	char **inc = NULL, **exc = NULL, *cause = NULL, *why = NULL, *key = NULL;
	char *line = NULL, *shown;
	size_t ninc = 0, nexc = 0, cap = 0, i;
	ssize_t n;
	json_t *service = NULL, *conf = NULL;
	bool no_defaults = false;
	int c, rc = AP_EXIT_USAGE;

	memset(&t, 0, sizeof t);
	ap_buf_init(&t.out);
	filter_config_init(&cfg);
	inc = ap_xcalloc((size_t)argc + 1, sizeof *inc);
	exc = ap_xcalloc((size_t)argc + 1, sizeof *exc);
	optind = 1;
	opterr = 1;
	while ((c = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
		switch (c) {
		case 's': service_path = optarg; break;
		case 'C': connector = optarg; break;
		case 'k': kind = optarg; break;
		case 'i': inc[ninc++] = optarg; break;
		case 'e': exc[nexc++] = optarg; break;
		case 'n': no_defaults = true; break;
		case 'f': t.fqn = true; break;
		case 'j': t.json = true; break;
		case 'c': config_path = optarg; break;
		case 'h':
			ap_cmd_print_help(&ap_cmd_filter_test_entry, stdout);
			rc = AP_EXIT_OK;
			goto out;
		default:
			fprintf(stderr, "usage: autopilot filter test %s\n",
			    ap_cmd_filter_test_entry.usage);
			goto out;
		}
	}
	for (i = 0; filter_kinds[i] != NULL; i++)
		if (strcmp(filter_kinds[i], kind) == 0)
			break;
	if (filter_kinds[i] == NULL) {
		fprintf(stderr, "autopilot: --kind %s: unknown kind (one of "
		    "database, schema, table, topic, dashboard, chart, dataModel, "
		    "project, pipeline, mlModel, container, searchIndex, "
		    "apiCollection)\n", kind);
		goto out;
	}
	key = ap_xprintf("%sFilterPattern", kind);
	/* As every command finds its configuration. */
	if (config_path == NULL && getenv("AUTOPILOT_CONFIG") != NULL &&
	    getenv("AUTOPILOT_CONFIG")[0] != '\0')
		config_path = getenv("AUTOPILOT_CONFIG");
	/* Standard input is read once: by one of the two, or for the names. */
	if (config_path != NULL && service_path != NULL &&
	    strcmp(config_path, "-") == 0 && strcmp(service_path, "-") == 0) {
		fprintf(stderr, "autopilot: -c - and --service-json - both read"
		    " standard input: give one of them a file\n");
		goto out;
	}
	if (((config_path != NULL && strcmp(config_path, "-") == 0) ||
	    (service_path != NULL && strcmp(service_path, "-") == 0)) &&
	    optind >= argc) {
		fprintf(stderr, "autopilot: %s - reads standard input, where the"
		    " names are read when none is given: give the names as"
		    " arguments\n", service_path != NULL && strcmp(service_path,
		    "-") == 0 ? "--service-json" : "-c");
		goto out;
	}
	if (config_path != NULL) {
		/* Read as every other command reads it ('$' keys are comments);
		 * only its "filters" section matters here. */
		if ((conf = config_read_file(config_path, &cause)) == NULL)
			goto fail;
		if (filter_config_from_json(json_object_get(conf, "filters"),
		    &cfg, &why) < 0) {
			cause = ap_xprintf("%s: %s", config_path, why);
			free(why);
			goto fail;
		}
		warn_config_rest(config_path);
	}
	if (no_defaults)
		cfg.builtin_defaults = false;
	if (service_path != NULL) {
		service = load_json(service_path, "--service-json", &cause);
		if (service == NULL)
			goto fail;
		if (json_object_get(service, "entity") != NULL) {
			/* A ChangeEvent: the entity it carries (an object or a
			 * JSON string of one, as the webhook takes it). */
			json_t *e = NULL;

			svc_kind = filter_kind_from_entity_type(json_string_value(
			    json_object_get(service, "entityType")));
			if (webhook_event_entity(service, "", CONFIG_MAX_JSON_DEPTH, &e,
			    &why) != WEBHOOK_PARSE_OK) {
				cause = ap_xprintf("--service-json %s (a ChangeEvent):"
				    " %s", service_path, why);
				free(why);
				goto fail;
			}
			json_decref(service);
			service = e;
		}
		if (!json_is_object(service)) {
			cause = ap_xprintf("--service-json %s: not a JSON object",
			    service_path);
			goto fail;
		}
		/* Another file (a configuration) would filter with nothing
		 * of its own, silently. */
		if (json_object_get(service, "serviceType") == NULL &&
		    json_object_get(service, "connection") == NULL) {
			cause = ap_xprintf("--service-json %s: not a service entity"
			    " (it has neither serviceType nor connection): give one"
			    " as OpenMetadata sends it, or a ChangeEvent carrying one",
			    service_path);
			goto fail;
		}
	}
	warn_connectors(&cfg, config_path, connector, service, service_path, key);
	if (service != NULL) {
		json_t *warnings = json_array(), *w;

		/* Of any kind: --kind need not be the service's. */
		filter_service_warnings(service, NULL, warnings);
		json_array_foreach(warnings, i, w)
			fprintf(stderr, "autopilot: warning: --service-json %s:"
			    " %s\n", service_path, json_string_value(w));
		json_decref(warnings);
	}
	/* The service's kind when it tells it (its event's entityType, its
	 * href), as its agents are planned: a metadata service's table
	 * patterns are not a database service's. */
	if (service != NULL && svc_kind == NULL) {
		char *type = filter_href_type(service);

		svc_kind = filter_kind_from_entity_type(type);
		free(type);
	}
	if (svc_kind == NULL || !filter_kind_has_key(svc_kind, key))
		svc_kind = filter_key_kind(key);
	eff = filter_effective_set(&cfg, service, svc_kind, connector, &cause);
	if (eff == NULL)
		goto service_fail;
	t.key = key;
	t.fs = build_set(eff, key, inc, ninc, exc, nexc, &cause);
	if (t.fs == NULL)
		goto service_fail;

	rc = AP_EXIT_OK;
	if (optind < argc) {
		for (i = (size_t)optind; i < (size_t)argc; i++)
			decide(&t, argv[i], strlen(argv[i]));
	} else {
		/* Once standard output is gone (a closed pipe), reading on
		 * decides names nobody sees. */
		while (!ferror(stdout) &&
		    (n = getline(&line, &cap, stdin)) != -1) {
			/* One line end: "\n" or "\r\n" (a file written on Windows). */
			if (n > 0 && line[n - 1] == '\n')
				n--;
			if (n > 0 && line[n - 1] == '\r')
				n--;
			decide(&t, line, (size_t)n);
		}
	}
	flush_out(&t, true);	/* a write failure is main()'s to say */
	if (t.errors > 0) {
		fprintf(stderr, "autopilot: %d name(s) could not be decided\n",
		    t.errors);
		rc = AP_EXIT_USAGE;
	}
	goto out;
service_fail:
	/* What is wrong in the service entity: in which file. */
	if (service_path != NULL && ap_startswith(cause, "connection.")) {
		char *named = ap_xprintf("--service-json %s: %s", service_path,
		    cause);

		free(cause);
		cause = named;
	}
fail:
	/* A pattern refused is quoted in it: shown as a terminal may. */
	shown = ap_term_text(cause);
	fprintf(stderr, "autopilot: %s\n", shown);
	free(shown);
	rc = AP_EXIT_USAGE;
out:
	free(line);
	free(cause);
	free(key);
	free(inc);
	free(exc);
	filter_set_free(t.fs);
	filter_set_free(eff);
	filter_config_cleanup(&cfg);
	json_decref(service);
	json_decref(conf);
	ap_buf_cleanup(&t.out);
	return rc;
}

const struct ap_cmd_entry ap_cmd_filter_test_entry = {
	"filter test",
	"[-c FILE] [--service-json FILE] [--connector NAME] [--kind KIND] "
	"[--include RE]... [--exclude RE]... [--no-defaults] [--fqn] [--json] "
	"[NAME...]",
	"Shows which names a set of include/exclude patterns keeps, and the rule,\n"
	"pattern and source that decided, as OpenMetadata's ingestion applies them:\n"
	"a pattern matches like Python's re.match(p, name, re.IGNORECASE); a name is\n"
	"kept iff (no includes, or it matches one) and it matches no exclude.\n\n"
	"  -c FILE              take the organisation defaults from FILE's \"filters\"\n"
	"                       (default: $AUTOPILOT_CONFIG)\n"
	"  --service-json FILE  a service entity (or a ChangeEvent carrying one):\n"
	"                       its connector and its own\n"
	"                       connection.config.*FilterPattern\n"
	"  --connector NAME     use NAME's built-in defaults (e.g. Postgres)\n"
	"  --kind KIND          database, schema, table (default), topic, dashboard,\n"
	"                       chart, dataModel, project, pipeline, mlModel,\n"
	"                       container, searchIndex, apiCollection\n"
	"  --include RE         an include pattern for KIND (repeatable); replaces\n"
	"                       the configuration's includes\n"
	"  --exclude RE         an exclude pattern for KIND (repeatable)\n"
	"  --no-defaults        leave out the built-in connector defaults\n"
	"  --fqn                the names are fully qualified names (as with\n"
	"                       useFqnForFiltering: true); matched whole\n"
	"  --json               one JSON object a line: name, kept, rule, pattern,\n"
	"                       source\n\n"
	"A connector (--connector or the service's) with no built-in defaults,\n"
	"or a byConnector name in FILE that looks like a typo of one that has\n"
	"some, is warned about on stderr, with the closest built-in name\n"
	"(\"did you mean 'Postgres'?\"); it is still used. A key of the service's\n"
	"connection.config that looks like a misspelt filter key is warned about\n"
	"too: it filters nothing.\n"
	"Names come from the arguments, else from standard input, one a line\n"
	"(a line ending in \\r\\n loses both).\n"
	"Exit status: 0 done; 1 standard output could not be written (a full\n"
	"disk, a closed pipe); 2 invalid pattern, bad option or input, or a name\n"
	"that could not be decided (match limit).\n",
	filter_test_exec
};
