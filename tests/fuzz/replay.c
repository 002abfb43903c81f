/*
 * replay.c — runs a libFuzzer target's LLVMFuzzerTestOneInput over files,
 * without libFuzzer: `make test` builds every tests/fuzz/fuzz_<name>.c with
 * this main (gcc, AddressSanitizer and UndefinedBehaviorSanitizer) and
 * replays its seeds (tests/fuzz/corpus/<name>/) and every input a fuzzing
 * run ever found wrong (tests/fuzz/regressions/<name>/). A target checks
 * its own invariants and aborts when one breaks; a sanitizer report fails
 * the run too.
 *
 *   replay_fuzz_<name> PATH...   each PATH a file or a directory of files
 *
 * Exit status 0 when every input ran, 1 when a file cannot be read or no
 * input was found at all (a test that replays nothing proves nothing). An
 * input that breaks an invariant (abort), trips a sanitizer (a crash
 * included) or runs over 10 s ends the process, its path named on
 * standard error.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Longer than any input `make fuzz` makes (-max_len=16384) or keeps. */
#define REPLAY_MAX_LEN (1024 * 1024)
/* As `make fuzz`'s -timeout: an input that takes longer is a finding. */
#define REPLAY_TIMEOUT_S 10

/* The input being run, named when it ends the process. */
static const char *current;

static void
say_current(const char *why)
{
	const char *p = current != NULL ? current : "(no input)";

	/* Only async-signal-safe calls: this may run in a signal handler. */
	(void)!write(STDERR_FILENO, "replay: ", 8);
	(void)!write(STDERR_FILENO, why, strlen(why));
	(void)!write(STDERR_FILENO, " on ", 4);
	(void)!write(STDERR_FILENO, p, strlen(p));
	(void)!write(STDERR_FILENO, "\n", 1);
}

static void
on_signal(int sig)
{
	/* Fixed strings: strsignal() is not async-signal-safe. */
	say_current(sig == SIGALRM ? "timeout (over 10 s)" : "abort");
	signal(SIGABRT, SIG_DFL);
	raise(SIGABRT);
}

#if defined(__SANITIZE_ADDRESS__)
static void
on_sanitizer_death(void)
{
	say_current("sanitizer report");
}
#endif

static int
replay_file(const char *path, unsigned *n)
{
	FILE *f;
	uint8_t *buf, *tight;
	size_t len;

	if ((f = fopen(path, "rb")) == NULL) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return -1;
	}
	buf = malloc(REPLAY_MAX_LEN + 1);
	if (buf == NULL) {
		fclose(f);
		fprintf(stderr, "replay: %s: out of memory\n", path);
		return -1;
	}
	len = fread(buf, 1, REPLAY_MAX_LEN + 1, f);
	if (ferror(f) || len > REPLAY_MAX_LEN) {
		fprintf(stderr, "replay: %s: %s\n", path, ferror(f) ?
		    "read error" : "longer than 1 MiB");
		fclose(f);
		free(buf);
		return -1;
	}
	fclose(f);
	/* Exactly len bytes, as libFuzzer gives them: reading past is a bug
	 * AddressSanitizer is to see. */
	if ((tight = realloc(buf, len > 0 ? len : 1)) == NULL) {
		free(buf);
		fprintf(stderr, "replay: %s: out of memory\n", path);
		return -1;
	}
	current = path;
	alarm(REPLAY_TIMEOUT_S);
	LLVMFuzzerTestOneInput(tight, len);
	alarm(0);
	current = NULL;
	free(tight);
	(*n)++;
	return 0;
}

static int
name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A directory's regular files in name order, so a failure repeats. */
static int
replay_dir(const char *dir, unsigned *n)
{
	DIR *d;
	struct dirent *e;
	struct stat sb;
	char **names = NULL, *path;
	size_t count = 0, cap = 0, i;
	int rc = 0;

	if ((d = opendir(dir)) == NULL) {
		fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
		return -1;
	}
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		if (count == cap) {
			cap = cap ? cap * 2 : 64;
			names = realloc(names, cap * sizeof *names);
			if (names == NULL)
				abort();
		}
		if ((names[count++] = strdup(e->d_name)) == NULL)
			abort();
	}
	closedir(d);
	if (count > 0)
		qsort(names, count, sizeof *names, name_cmp);
	for (i = 0; i < count; i++) {
		if ((path = malloc(strlen(dir) + strlen(names[i]) + 2)) == NULL)
			abort();
		sprintf(path, "%s/%s", dir, names[i]);
		if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode) &&
		    replay_file(path, n) != 0)
			rc = -1;
		free(path);
		free(names[i]);
	}
	free(names);
	return rc;
}

int
main(int argc, char **argv)
{
	struct stat sb;
	unsigned n = 0;
	int i, rc = 0;

	/* Only these two: the sanitizers keep their own handlers for the
	 * faults, and name the input through the death callback. */
	signal(SIGABRT, on_signal);
	signal(SIGALRM, on_signal);
#if defined(__SANITIZE_ADDRESS__)
	__sanitizer_set_death_callback(on_sanitizer_death);
#endif

	for (i = 1; i < argc; i++) {
		if (stat(argv[i], &sb) != 0) {
			/* A target with no regressions yet has no directory. */
			if (errno == ENOENT)
				continue;
			fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
			rc = 1;
		} else if (S_ISDIR(sb.st_mode)) {
			if (replay_dir(argv[i], &n) != 0)
				rc = 1;
		} else if (replay_file(argv[i], &n) != 0)
			rc = 1;
	}
	if (n == 0) {
		fprintf(stderr, "replay: no input found in the paths given\n");
		return 1;
	}
	printf("replay: %u inputs, %s\n", n, rc == 0 ? "no failure" :
	    "some could not be read");
	return rc;
}
