/*
 * cmd_status.c — `autopilot status`: runs and their agents from the state
 * store, as a table or (--json) the document PRODUCT.md pins.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "cmd.h"
#include "config.h"
#include "store.h"
#include "util.h"

#define STATUS_LIMIT_MAX 100000

static const char *
str(const json_t *o, const char *key, const char *dflt)
{
	const char *v = json_string_value(json_object_get(o, key));

	return v != NULL ? v : dflt;
}

/* Prints o's string under key as one line of terminal-safe text (Airflow's
 * errors are multi-line tracebacks and may carry escape sequences). */
static void
put_text(FILE *f, const char *fmt, const json_t *o, const char *key)
{
	char *text = ap_term_text(str(o, key, "?"));

	fprintf(f, fmt, text);
	free(text);
}

static void
print_table(const json_t *runs, FILE *f)
{
	const json_t *run, *agent, *svc;
	size_t i, j;

	json_array_foreach(runs, i, run) {
		svc = json_object_get(run, "service");
		fprintf(f, "%s%s  %s ", i > 0 ? "\n" : "", str(run, "run_id", "?"),
		    str(svc, "type", "?"));
		put_text(f, "%s", svc, "fqn");
		fprintf(f, "  %s  created %s", str(run, "state", "?"),
		    str(run, "created_at", "-"));
		if (json_is_string(json_object_get(run, "finished_at")))
			fprintf(f, "  finished %s", str(run, "finished_at", "-"));
		fputc('\n', f);
		if (json_is_string(json_object_get(run, "origin")))
			put_text(f, "  origin: %s\n", run, "origin");
		if (json_array_size(json_object_get(run, "only_agents")) > 0) {
			fputs("  only:", f);
			json_array_foreach(json_object_get(run, "only_agents"), j, agent)
				fprintf(f, "%s%s", j > 0 ? "," : " ", json_is_string(agent) ?
				    json_string_value(agent) : "?");
			fputc('\n', f);
		}
		/* Unfinished and held by no process: queued for a slot by a
		 * busy serve, or left by a --no-wait run or a driver gone. */
		if (json_object_get(run, "driven_by") != NULL &&
		    json_is_null(json_object_get(run, "driven_by")) &&
		    json_is_null(json_object_get(run, "finished_at")))
			fputs(strcmp(str(run, "state", ""), "pending") == 0 ?
			    "  waiting: no process has taken this run up yet: an"
			    " `autopilot serve` on this state database does when it"
			    " next looks for runs (at its start, and every"
			    " scheduler.rescan_ms) or, when busy, once a slot is"
			    " free\n" :
			    "  not driven now: no process holds this run (a serve on"
			    " this state database takes it up)\n", f);
		if (json_is_string(json_object_get(run, "error")))
			put_text(f, "  error: %s\n", run, "error");
		json_array_foreach(json_object_get(run, "agents"), j, agent) {
			fprintf(f, "  %-18s %-15s attempts %-2lld %s",
			    str(agent, "agent", "?"), str(agent, "state", "?"),
			    (long long)json_integer_value(json_object_get(agent, "attempts")),
			    str(agent, "dag_run_id", "-"));
			if (json_is_string(json_object_get(agent, "error")))
				put_text(f, "  (%s)", agent, "error");
			fputc('\n', f);
		}
		/* Airflow runs of it that go on, not yet marked failed. */
		json_array_foreach(json_object_get(run, "airflow_runs_to_fail"), j,
		    agent) {
			long long tries = (long long)json_integer_value(
			    json_object_get(agent, "tries"));

			fprintf(f, "  still to be marked failed in Airflow: %s of %s,"
			    " tried %lld time%s", str(agent, "dag_run_id", "?"),
			    str(agent, "dag_id", "?"), tries, tries == 1 ? "" : "s");
			if (json_is_string(json_object_get(agent, "error")))
				put_text(f, " (last: %s)", agent, "error");
			fputc('\n', f);
		}
	}
}

static int
status_exec(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "state", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "limit", required_argument, NULL, 'n' },
		{ "before", required_argument, NULL, 'b' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	/* Read-only: no secret is used (a file only serve's host mounts must
	 * not stop it). */
	struct config_flags flags = { .skip_secrets = CONFIG_SECRET_ALL };
	struct store_options so = { 0 };
	struct config cfg;
	struct store *st = NULL;
	const char *path = NULL, *fqn = NULL, *empty = NULL, *before = NULL;
	char *cause = NULL, *text;
	unsigned long limit = 100;
	bool json = false;
	json_t *runs = NULL;
	int c, rc = AP_EXIT_USAGE;

	config_init(&cfg);
	optind = 1;
	opterr = 1;
	while ((c = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'c': path = optarg; break;
		case 's': flags.state = optarg; break;
		case 'j': json = true; break;
		case 'b': before = optarg; break;
		case 'n':
			if (ap_parse_uint(optarg, 1, STATUS_LIMIT_MAX, &limit) < 0) {
				text = ap_term_text(optarg);
				fprintf(stderr, "autopilot: status: --limit: '%s': must"
				    " be an integer from 1 to %d\n", text,
				    STATUS_LIMIT_MAX);
				free(text);
				goto out;
			}
			break;
		case 'h':
			ap_cmd_print_help(&ap_cmd_status_entry, stdout);
			rc = AP_EXIT_OK;
			goto out;
		default:
			fprintf(stderr, "usage: autopilot status %s\n",
			    ap_cmd_status_entry.usage);
			goto out;
		}
	}
	if (optind < argc)
		fqn = argv[optind++];
	if (optind < argc) {
		fprintf(stderr, "autopilot: status: unexpected argument '%s'\n",
		    argv[optind]);
		goto out;
	}
	if (config_load(&cfg, path, &flags, &cause) < 0) {
		fprintf(stderr, "autopilot: %s\n", cause);
		goto out;
	}
	/* No database yet is a fresh install, not a store failure: no runs. */
	if (access(cfg.state_path, F_OK) != 0 && errno == ENOENT)
		empty = "no state database at";
	else {
		/* Only reads: the database is left exactly as it is, and a
		 * copy the user may only read will do. */
		so.read_only = true;
		if ((st = store_open(cfg.state_path, &so, &cause)) == NULL) {
			fprintf(stderr, "autopilot: status: state store: %s\n",
			    cause);
			rc = AP_EXIT_UNREACHABLE;
			goto out;
		}
		if (store_schema_version(st) == 0)
			empty = "empty state database at";
	}
	if (empty != NULL) {
		if (json)
			printf("[]\n");
		fprintf(stderr, "autopilot: no runs: %s %s\n", empty,
		    cfg.state_path);
		rc = AP_EXIT_OK;
		goto out;
	}
	/* One more than shown: whether there are more is said, not left to
	 * be guessed from a round count. */
	switch (store_runs_page(st, fqn, before, (unsigned)limit + 1, &runs,
	    &cause)) {
	case STORE_OK:
		break;
	case STORE_NOT_FOUND:
		text = ap_term_text(before);
		fprintf(stderr, "autopilot: status: --before: no run %s\n", text);
		free(text);
		goto out;
	default:
		fprintf(stderr, "autopilot: status: state store: %s\n", cause);
		rc = AP_EXIT_UNREACHABLE;
		goto out;
	}
	if (json_array_size(runs) > limit) {
		char *shown = limit == 1 ? ap_xstrdup("the newest run") :
		    ap_xprintf("the %lu newest runs", limit);
		const char *last;

		json_array_remove(runs, limit);
		last = json_string_value(json_object_get(json_array_get(runs,
		    limit - 1), "run_id"));
		fprintf(stderr, "autopilot: status: %s%s%s%s shown; there are more:"
		    " %s--before %s shows older ones\n", shown, before != NULL ?
		    " before that one" : "", fqn != NULL ? " of " : "", fqn != NULL ?
		    fqn : "", limit < STATUS_LIMIT_MAX ? "--limit N shows the N newest,"
		    " up to 100000; " : "", last != NULL ? last : "?");
		free(shown);
	}
	if (json) {
		text = json_dumps(runs, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		printf("%s\n", text);
		free(text);
	} else if (json_array_size(runs) == 0)
		fprintf(stderr, "autopilot: no runs%s%s\n", fqn != NULL ? " of " : "",
		    fqn != NULL ? fqn : "");
	else
		print_table(runs, stdout);
	rc = AP_EXIT_OK;
out:
	json_decref(runs);
	store_close(st);
	free(cause);
	config_cleanup(&cfg);
	return rc;
}

const struct ap_cmd_entry ap_cmd_status_entry = {
	"status",
	"[-c FILE] [SERVICE_FQN] [--state PATH] [--json] [--limit N] [--before RUN_ID]",
	"Shows runs, newest first, and the state of each of their agents, from the\n"
	"state store (all services, or the one named).\n\n"
	"  -c, --config FILE   configuration file (default: $AUTOPILOT_CONFIG)\n"
	"      --state PATH    state database (default: AUTOPILOT_STATE,\n"
	"                      else state.path, else autopilot.db)\n"
	"      --json          one JSON document: a list of runs, each with run_id,\n"
	"                      service {type, fqn}, state and agents [{agent, state,\n"
	"                      dag_id, dag_run_id, attempts, started_at,\n"
	"                      finished_at, error}]\n"
	"      --limit N       at most N runs, N from 1 to 100000 (default 100);\n"
	"                      more runs than shown are said on stderr\n"
	"      --before RUN_ID the runs made before that one (the next page)\n\n"
	"When there is no state database at PATH yet (a fresh install), that is\n"
	"said on stderr (\"no runs: no state database at PATH\"), --json prints []\n"
	"and the exit status is 0.\n\n"
	"Exit status: 0 (also for a missing state database); 1 standard output\n"
	"could not be written (a full disk, a closed pipe); 2 usage or\n"
	"configuration error; 3 an existing state database cannot be opened or\n"
	"read.\n",
	status_exec,
};
