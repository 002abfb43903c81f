/*
 * cmd.h — the subcommand table (tmux's cmd_entry): one file per command,
 * api/cmd_<name>.c, each exporting a struct ap_cmd_entry listed in main.c.
 */
#ifndef AP_CMD_H
#define AP_CMD_H

/* Exit codes, pinned by PRODUCT.md. */
enum ap_exit {
	AP_EXIT_OK = 0,          /* success */
	AP_EXIT_FAILED = 1,      /* the work ran but an agent failed or timed out */
	AP_EXIT_USAGE = 2,       /* usage, configuration or input error */
	AP_EXIT_UNREACHABLE = 3  /* Airflow, OpenMetadata or the store unreachable */
};

struct ap_cmd_entry {
	const char *name;   /* "serve", "filter test", ... */
	const char *usage;  /* one line, without the program name */
	const char *help;   /* the rest of --help */
	/* argv[0] is the last word of the command's name. Returns an ap_exit. */
	int (*exec)(int argc, char **argv);
};

/* Prints "usage: autopilot <name> <usage>" and the help text to f. */
#include <stdio.h>
void ap_cmd_print_help(const struct ap_cmd_entry *e, FILE *f);

/*
 * Checks the effective Airflow settings of a loaded configuration (cfg
 * borrowed) the way `serve` will use them, by creating and freeing an
 * Airflow client: a URL from AUTOPILOT_AIRFLOW_URL or --airflow-url is
 * checked here, the file's "airflow" section already by config_load().
 * Returns 0, or -1 with a new *cause naming where the bad value came from
 * (the file, AUTOPILOT_AIRFLOW_URL or --airflow-url). Not on a loop.
 */
struct config;
int ap_cmd_check_airflow(const struct config *cfg, char **cause);

extern const struct ap_cmd_entry ap_cmd_filter_test_entry;
extern const struct ap_cmd_entry ap_cmd_config_check_entry;
extern const struct ap_cmd_entry ap_cmd_status_entry;
extern const struct ap_cmd_entry ap_cmd_serve_entry;
extern const struct ap_cmd_entry ap_cmd_run_entry;

#endif
