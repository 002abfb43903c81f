/*
 * log.c — line-oriented logging to stderr. JSON lines are built with jansson
 * so messages are always escaped correctly.
 */
#include "log.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static enum ap_log_level log_min = AP_LOG_INFO;
static enum ap_log_format log_format = AP_LOG_TEXT;

static const char *const log_level_names[AP_LOG_LEVEL_MAX] = {
	"debug", "info", "warn", "error"
};

/* Sets key k of JSON line o to text v, if any; bytes that are not UTF-8
 * (a client's) are logged as escapes, not dropped. */
static void
log_field(json_t *o, const char *k, const char *v)
{
	char *p;

	if (v == NULL)
		return;
	if (ap_utf8_valid(v, strlen(v))) {
		json_object_set_new(o, k, json_string(v));
		return;
	}
	p = ap_printable(v);
	json_object_set_new(o, k, json_string(p));
	free(p);
}

void
ap_log_setup(enum ap_log_level min, enum ap_log_format format)
{
	log_min = min;
	log_format = format;
}

const char *
ap_log_level_name(enum ap_log_level level)
{
	if (level >= AP_LOG_LEVEL_MAX)
		return "unknown";
	return log_level_names[level];
}

bool
ap_log_level_parse(const char *s, enum ap_log_level *out)
{
	int i;

	for (i = 0; i < AP_LOG_LEVEL_MAX; i++) {
		if (strcmp(s, log_level_names[i]) == 0) {
			*out = (enum ap_log_level)i;
			return true;
		}
	}
	return false;
}

static void
log_line(enum ap_log_level level, const struct ap_log_about *about,
    const char *fmt, va_list ap)
{
	char *msg, ts[40];
	json_t *o;
	char *line;

	msg = ap_xvprintf(fmt, ap);
	ap_format_time(ap_wall_ms(), ts, sizeof ts);

	if (log_format == AP_LOG_JSON) {
		o = json_object();
		json_object_set_new(o, "ts", json_string(ts));
		json_object_set_new(o, "level", json_string(ap_log_level_name(level)));
		log_field(o, "msg", msg);
		if (about != NULL) {
			log_field(o, "run_id", about->run_id);
			log_field(o, "agent", about->agent);
			log_field(o, "fqn", about->fqn);
			log_field(o, "event_id", about->event_id);
		}
		line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
		if (line != NULL)
			fprintf(stderr, "%s\n", line);
		free(line);
		json_decref(o);
	} else {
		/* One line per event: what Airflow says (an import error's
		 * traceback) may hold newlines and terminal escapes. */
		char *text = ap_term_text(msg);

		fprintf(stderr, "%s %-5s %s\n", ts, ap_log_level_name(level), text);
		free(text);
	}
	free(msg);
}

bool
ap_log_enabled(enum ap_log_level level)
{
	return level >= log_min;
}

void
ap_log_about(enum ap_log_level level, const struct ap_log_about *about,
    const char *fmt, ...)
{
	va_list ap;

	if (level < log_min)
		return;
	va_start(ap, fmt);
	log_line(level, about, fmt, ap);
	va_end(ap);
}
