/*
 * runtime.c — the store, Airflow client, plan and scheduler of `serve` and
 * `run`. See runtime.h.
 */
#include "runtime.h"

#include <string.h>

#include <event2/event.h>

#include "cmd.h"
#include "log.h"
#include "util.h"

int
ap_runtime_open(struct ap_runtime *rt, const struct config *cfg, char **cause)
{
	struct store_options so = { 0 };
	struct airflow_config ac;
	struct plan_options po = { 0 };
	char *why = NULL;
	json_t *warnings, *w;
	size_t i;

	memset(rt, 0, sizeof *rt);
	rt->base = ap_event_base_new();

	so.synchronous_normal = cfg->state_sync_normal;
	so.lease_ms = cfg->sched.lease_ms;
	if ((rt->store = store_open(cfg->state_path, &so, &why)) == NULL) {
		*cause = ap_xprintf("state store: %s", why);	/* why names the file */
		free(why);
		ap_runtime_close(rt);
		return AP_EXIT_UNREACHABLE;
	}

	if (airflow_config_from_json(cfg->root != NULL ?
	    json_object_get(cfg->root, "airflow") : NULL, &ac, &why) < 0)
		goto config_error;
	/* The environment and flags win over the file (config.c resolved them). */
	ac.base_url = cfg->airflow_url;
	ac.username = cfg->airflow_username;
	ac.password = cfg->airflow_password;
	rt->airflow = airflow_client_create(rt->base, &ac, &why);
	if (rt->airflow == NULL)
		goto config_error;

	po.openmetadata_url = cfg->om_url;
	po.openmetadata_token = cfg->om_token;
	if ((rt->plan = plan_create(cfg->root, &po, &why)) == NULL)
		goto config_error;
	warnings = config_setting_warnings(cfg);
	json_array_foreach(warnings, i, w)
		ap_warn("%s", json_string_value(w));
	json_decref(warnings);

	rt->sched = sched_create(rt->base, rt->store, airflow_client_ops(),
	    rt->airflow, &plan_sched_planner, rt->plan, &cfg->sched);
	return AP_EXIT_OK;

config_error:
	*cause = ap_xprintf("%s%s%s", cfg->file != NULL ? cfg->file : "",
	    cfg->file != NULL ? ": " : "", why);
	free(why);
	ap_runtime_close(rt);
	return AP_EXIT_USAGE;
}

void
ap_runtime_close(struct ap_runtime *rt)
{
	char *cause = NULL;

	if (rt->sched != NULL) {
		sched_stop(rt->sched);
		sched_free(rt->sched);
	}
	if (rt->store != NULL && store_flush(rt->store, &cause) != STORE_OK) {
		ap_error("state store: %s", cause);
		free(cause);
	}
	plan_free(rt->plan);
	airflow_client_free(rt->airflow);
	store_close(rt->store);
	if (rt->base != NULL)
		event_base_free(rt->base);
	memset(rt, 0, sizeof *rt);
}

void
ap_runtime_airflow_metrics(struct ap_buf *out, void *airflow_client)
{
	struct airflow_stats st;
	int i;

	airflow_client_stats(airflow_client, &st);
	ap_buf_adds(out, "# HELP autopilot_airflow_requests_total HTTP requests to Airflow"
	    " (every attempt the client made; a request libcurl sends again by"
	    " itself, once, on a reused connection Airflow closed meanwhile counts"
	    " once, by its outcome) by outcome.\n"
	    "# TYPE autopilot_airflow_requests_total counter\n");
	for (i = 0; i < AIRFLOW_HTTP_CLASS_MAX; i++)
		ap_buf_printf(out, "autopilot_airflow_requests_total{status=\"%s\"} %llu\n",
		    airflow_http_class_name(i), (unsigned long long)st.requests[i]);
	ap_buf_printf(out, "# HELP autopilot_airflow_retries_total Airflow requests sent"
	    " again after a retryable failure.\n"
	    "# TYPE autopilot_airflow_retries_total counter\n"
	    "autopilot_airflow_retries_total %llu\n"
	    "# HELP autopilot_airflow_breaker_opens_total Times the Airflow circuit"
	    " breaker opened.\n# TYPE autopilot_airflow_breaker_opens_total counter\n"
	    "autopilot_airflow_breaker_opens_total %llu\n"
	    "# HELP autopilot_airflow_in_flight Airflow requests running.\n"
	    "# TYPE autopilot_airflow_in_flight gauge\n"
	    "autopilot_airflow_in_flight %u\n"
	    "# HELP autopilot_airflow_queued Airflow requests waiting for an"
	    " in-flight slot.\n# TYPE autopilot_airflow_queued gauge\n"
	    "autopilot_airflow_queued %u\n"
	    "# HELP autopilot_airflow_request_duration_seconds Airflow request"
	    " latency.\n# TYPE autopilot_airflow_request_duration_seconds histogram\n",
	    (unsigned long long)st.retries, (unsigned long long)st.breaker_opens,
	    st.in_flight, st.queued);
	for (i = 0; i < AIRFLOW_LATENCY_BUCKETS - 1; i++)
		ap_buf_printf(out, "autopilot_airflow_request_duration_seconds_bucket"
		    "{le=\"%g\"} %llu\n", (double)airflow_latency_bounds_ms[i] / 1000.0,
		    (unsigned long long)st.latency_le[i]);
	ap_buf_printf(out, "autopilot_airflow_request_duration_seconds_bucket{le=\"+Inf\"}"
	    " %llu\nautopilot_airflow_request_duration_seconds_sum %.3f\n"
	    "autopilot_airflow_request_duration_seconds_count %llu\n",
	    (unsigned long long)st.latency_le[AIRFLOW_LATENCY_BUCKETS - 1],
	    (double)st.latency_sum_ms / 1000.0, (unsigned long long)st.latency_count);
}
