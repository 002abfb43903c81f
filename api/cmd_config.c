/*
 * cmd_config.c — `autopilot config check`: loads a configuration the way
 * `serve` and `run` do (file, environment, every module's section) and
 * prints the effective settings, secrets shown only as set/unset.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include <event2/event.h>
#include <jansson.h>

#include "airflow.h"
#include "cmd.h"
#include "config.h"
#include "server.h"
#include "util.h"

int
ap_cmd_check_airflow(const struct config *cfg, char **cause)
{
	struct event_base *base;
	struct airflow_client *client;
	char *why = NULL;
	bool ok;

	base = ap_event_base_new();
	client = airflow_client_create(base, &cfg->airflow, &why);
	ok = client != NULL;
	airflow_client_free(client);
	event_base_free(base);
	if (ok)
		return 0;
	*cause = ap_xprintf("%s: %s", cfg->airflow_url_from != NULL ?
	    cfg->airflow_url_from : cfg->file != NULL ? cfg->file : "built-in defaults",
	    why);
	free(why);
	return -1;
}

static int
config_check_exec(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct config cfg;
	struct config_flags flags = { .quiet = true };
	const char *path = NULL;
	char *cause = NULL, *text;
	json_t *out, *w, *env_warnings;
	size_t i;
	int c, rc = AP_EXIT_USAGE;

	config_init(&cfg);
	optind = 1;
	opterr = 1;
	while ((c = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'c': path = optarg; break;
		case 'h':
			ap_cmd_print_help(&ap_cmd_config_check_entry, stdout);
			rc = AP_EXIT_OK;
			goto out;
		default:
			fprintf(stderr, "usage: autopilot config check %s\n",
			    ap_cmd_config_check_entry.usage);
			goto out;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "autopilot: config check: unexpected argument '%s'\n",
		    argv[optind]);
		goto out;
	}
	if (config_load(&cfg, path, &flags, &cause) < 0 ||
	    ap_cmd_check_airflow(&cfg, &cause) < 0) {
		fprintf(stderr, "autopilot: %s\n", cause);
		goto out;
	}
	/* config_load() built the plan once to check "agents" and "filters";
	 * the description carries the effective plan. */
	out = config_describe(&cfg);
	text = json_dumps(out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	printf("%s\n", text);
	free(text);
	json_decref(out);
	json_array_foreach(cfg.warnings, i, w)
		fprintf(stderr, "autopilot: warning: %s: %s\n", cfg.file,
		    json_string_value(w));
	env_warnings = config_env_warnings();
	json_array_foreach(env_warnings, i, w)
		fprintf(stderr, "autopilot: warning: %s\n", json_string_value(w));
	json_decref(env_warnings);
	env_warnings = config_setting_warnings(&cfg);
	json_array_foreach(env_warnings, i, w)
		fprintf(stderr, "autopilot: warning: %s\n", json_string_value(w));
	json_decref(env_warnings);
	if (server_listen_check(&cfg, &cause) < 0) {
		fprintf(stderr, "autopilot: warning: listen: %s: `serve` cannot start"
		    " on this host as configured\n", cause);
		free(cause);
		cause = NULL;
	}
	if (cfg.webhook_secret == NULL && !cfg.allow_unsigned)
		fprintf(stderr, "autopilot: warning: no webhook secret"
		    " (AUTOPILOT_WEBHOOK_SECRET or webhook.secret_file): `serve` refuses"
		    " to start without one (--allow-unsigned accepts unsigned events"
		    " instead)\n");
	fprintf(stderr, "autopilot: configuration OK%s%s\n", cfg.file != NULL ? ": " : "",
	    cfg.file != NULL ? cfg.file : " (defaults and environment, no file)");
	rc = AP_EXIT_OK;
out:
	free(cause);
	config_cleanup(&cfg);
	return rc;
}

const struct ap_cmd_entry ap_cmd_config_check_entry = {
	"config check",
	"[-c FILE]",
	"Loads the configuration (the file, AUTOPILOT_* environment variables and\n"
	"every section: listen, state, log, webhook, admin, openmetadata, airflow,\n"
	"scheduler, filters, agents), reports the first error with the file and\n"
	"key path (exit 2), else prints the effective settings (the Airflow\n"
	"client's too: api, timeouts, max_in_flight, retries, ca_file) and plan as\n"
	"JSON. Secrets are shown only as \"set\" or \"unset\". Warns (on stderr, exit\n"
	"still 0) when openmetadata.url is unset: deployed agents need it to report\n"
	"back to OpenMetadata.\n\n"
	"  -c, --config FILE   configuration file (default: $AUTOPILOT_CONFIG)\n",
	config_check_exec,
};
