/*
 * bench_sim.h — starting the Airflow simulator for the benchmarks
 * (bench_sched, bench_airflow). Header-only; include it from one .c file.
 */
#ifndef AP_BENCH_SIM_H
#define AP_BENCH_SIM_H

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

/* sim_airflow beside this program: a new string. */
static char *
bench_sim_path(void)
{
	char self[PATH_MAX];
	ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);

	if (len < 0)
		ap_fatal("readlink: %s", strerror(errno));
	self[len] = '\0';
	*strrchr(self, '/') = '\0';
	return ap_xprintf("%s/sim_airflow", self);
}

/* Starts sim on 127.0.0.1 port 0 with scenario; returns its pid and *port. */
static pid_t
bench_sim_start(const char *sim, const char *scenario, int *port)
{
	int fds[2];
	pid_t pid;
	char line[256];
	FILE *f;

	if (pipe(fds) != 0)
		ap_fatal("pipe: %s", strerror(errno));
	pid = fork();
	if (pid == 0) {
		dup2(fds[1], 1);
		close(fds[0]);
		close(fds[1]);
		execl(sim, sim, "--listen", "127.0.0.1:0", "--scenario", scenario,
		    "--quiet", (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	f = fdopen(fds[0], "r");
	if (f == NULL || fgets(line, sizeof line, f) == NULL ||
	    sscanf(line, "listening 127.0.0.1:%d", port) != 1)
		ap_fatal("simulator %s did not start", sim);
	return pid;
}

#endif
