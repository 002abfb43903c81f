/*
 * runtime.h — what `serve` and `run` both set up from a loaded configuration:
 * the event loop, the state store, the Airflow client, the plan and the
 * scheduler, created in that order and torn down in reverse.
 */
#ifndef AP_RUNTIME_H
#define AP_RUNTIME_H

#include "airflow.h"
#include "config.h"
#include "plan.h"
#include "sched.h"
#include "store.h"

struct event_base;

struct ap_runtime {
	struct event_base *base;
	struct store *store;
	struct airflow_client *airflow;
	struct plan *plan;
	struct sched *sched;
};

/*
 * Opens everything from cfg (borrowed; it must outlive the runtime). On
 * failure returns the exit code (AP_EXIT_USAGE for configuration,
 * AP_EXIT_UNREACHABLE for the store) with a new *cause, and leaves rt closed.
 */
int ap_runtime_open(struct ap_runtime *rt, const struct config *cfg, char **cause);
/* Stops the scheduler (handing its runs over), flushes and frees. */
void ap_runtime_close(struct ap_runtime *rt);

/* Prometheus text of the Airflow client's counters (for /metrics). */
void ap_runtime_airflow_metrics(struct ap_buf *out, void *airflow_client);

#endif
