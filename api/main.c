/*
 * main.c — the autopilot binary: finds the subcommand in the table and runs it.
 */
#include <errno.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cmd.h"
#include "util.h"

static const struct ap_cmd_entry *const cmd_table[] = {
	&ap_cmd_serve_entry,
	&ap_cmd_run_entry,
	&ap_cmd_status_entry,
	&ap_cmd_filter_test_entry,
	&ap_cmd_config_check_entry,
	NULL
};

static void
usage(FILE *f)
{
	size_t i;

	fprintf(f, "usage: autopilot [--version] [--help] <command> [args]\n\n"
	    "Puts OpenMetadata ingestion on autopilot: filters, deploys and\n"
	    "tracks ingestion agents in Airflow.\n\ncommands:\n");
	for (i = 0; cmd_table[i] != NULL; i++)
		fprintf(f, "  %-14s %s\n", cmd_table[i]->name, cmd_table[i]->usage);
	fprintf(f, "\nRun 'autopilot <command> --help' for a command's options.\n");
}

void
ap_cmd_print_help(const struct ap_cmd_entry *e, FILE *f)
{
	fprintf(f, "usage: autopilot %s %s\n\n%s", e->name, e->usage, e->help);
}

/* Number of words of argv that name e (1 or 2), or 0 when they do not. */
static int
cmd_matches(const struct ap_cmd_entry *e, int argc, char **argv)
{
	const char *space = strchr(e->name, ' ');

	if (space == NULL)
		return strcmp(argv[0], e->name) == 0 ? 1 : 0;
	if (strlen(argv[0]) != (size_t)(space - e->name) ||
	    strncmp(argv[0], e->name, (size_t)(space - e->name)) != 0)
		return 0;
	if (argc < 2 || strcmp(argv[1], space + 1) != 0)
		return -1;	/* right group, missing or unknown second word */
	return 2;
}

/* The subcommands of a group ("config", "filter"); given: the word that is
 * none of them, or NULL. */
static void
group_usage(const char *group, const char *given, FILE *f, bool help)
{
	size_t i;
	char *one[1];

	one[0] = (char *)group;
	if (help)
		fprintf(f, "usage: autopilot %s <subcommand> [args]\n\nsubcommands:\n",
		    group);
	else if (given != NULL)
		fprintf(f, "autopilot: unknown subcommand '%s %s'; one of:\n", group,
		    given);
	else
		fprintf(f, "autopilot: '%s' needs a subcommand:\n", group);
	for (i = 0; cmd_table[i] != NULL; i++)
		if (cmd_matches(cmd_table[i], 1, one) != 0)
			fprintf(f, "  autopilot %s %s\n", cmd_table[i]->name,
			    cmd_table[i]->usage);
	if (help)
		fprintf(f, "\nRun 'autopilot %s <subcommand> --help' for its options.\n",
		    group);
}

/*
 * What a command printed must have reached standard output: `status --json
 * > file` on a full disk used to exit 0 with the file cut short. A command
 * that succeeded otherwise then exits 1.
 */
static int
output_checked(const char *name, int rc)
{
	int err;

	errno = 0;
	if (fflush(stdout) == 0 && !ferror(stdout))
		return rc;
	err = errno != 0 ? errno : ap_stdout_errno();
	fprintf(stderr, "autopilot: %s: writing standard output failed%s%s\n", name,
	    err != 0 ? ": " : "", err != 0 ? strerror(err) : "");
	return rc == AP_EXIT_OK ? AP_EXIT_FAILED : rc;
}

/* "autopilot -c FILE status": when a command follows the options, says
 * that they go after it, as the command would take them (true if so). */
static bool
options_first(int argc, char **argv)
{
	struct ap_buf b;
	int i, j, words;

	for (j = 2; j < argc; j++) {
		for (i = 0; cmd_table[i] != NULL; i++)
			if ((words = cmd_matches(cmd_table[i], argc - j, argv + j)) > 0)
				break;
		if (cmd_table[i] == NULL)
			continue;
		ap_buf_init(&b);
		ap_buf_printf(&b, "autopilot %s", cmd_table[i]->name);
		for (i = 1; i < argc; i++)
			if (i < j || i >= j + words)
				ap_buf_printf(&b, " %s", argv[i]);
		fprintf(stderr, "autopilot: options go after the command: %.*s\n",
		    (int)b.len, b.data);
		ap_buf_cleanup(&b);
		return true;
	}
	return false;
}

/* Runs what argv asks for; *name becomes the command's name. */
static int
dispatch(int argc, char **argv, const char **name)
{
	static char prog[64];
	size_t i;
	int words, group = 0;

	if (argc < 2) {
		usage(stderr);
		return AP_EXIT_USAGE;
	}
	if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
		printf("autopilot %s\n", AP_VERSION);
		return AP_EXIT_OK;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return AP_EXIT_OK;
	}
	for (i = 0; cmd_table[i] != NULL; i++) {
		words = cmd_matches(cmd_table[i], argc - 1, argv + 1);
		if (words < 0)
			group = 1;
		if (words <= 0)
			continue;
		*name = cmd_table[i]->name;
		if (argc > 1 + words && (strcmp(argv[1 + words], "--help") == 0 ||
		    strcmp(argv[1 + words], "-h") == 0)) {
			ap_cmd_print_help(cmd_table[i], stdout);
			return AP_EXIT_OK;
		}
		/* getopt names its errors after argv[0]: "autopilot run: ...". */
		snprintf(prog, sizeof prog, "autopilot %s", cmd_table[i]->name);
		argv[words] = prog;
		return cmd_table[i]->exec(argc - words, argv + words);
	}
	if (group) {
		/* "autopilot config --help" asks for the group's usage. */
		bool help = argc > 2 && (strcmp(argv[2], "--help") == 0 ||
		    strcmp(argv[2], "-h") == 0 || strcmp(argv[2], "help") == 0);

		group_usage(argv[1], argc > 2 ? argv[2] : NULL, help ? stdout : stderr,
		    help);
		return help ? AP_EXIT_OK : AP_EXIT_USAGE;
	}
	if (argv[1][0] == '-' && options_first(argc, argv))
		return AP_EXIT_USAGE;
	if (argv[1][0] == '-')
		fprintf(stderr, "autopilot: '%s' is not an option of autopilot's own"
		    " (--help, --version); a command's options go after it\n\n",
		    argv[1]);
	else
		fprintf(stderr, "autopilot: unknown command '%s'\n\n", argv[1]);
	usage(stderr);
	return AP_EXIT_USAGE;
}

int
main(int argc, char **argv)
{
	const char *name = argc > 1 ? argv[1] : "autopilot";
	int rc;

	/* A reader that went away (`status | head -1`, a client of serve or
	 * Airflow's connection) is a write that failed (EPIPE: exit 1 with a
	 * message, as for a full disk, or a closed connection), not a signal
	 * that ends the process with 141. */
	signal(SIGPIPE, SIG_IGN);
	rc = dispatch(argc, argv, &name);

	return output_checked(name, rc);
}
