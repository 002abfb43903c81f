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

void
ap_log(enum ap_log_level level, const char *fmt, ...)
{
	va_list ap;
	char *msg, ts[40];
	json_t *o;
	char *line;

	if (level < log_min)
		return;
	va_start(ap, fmt);
	msg = ap_xvprintf(fmt, ap);
	va_end(ap);
	ap_format_time(ap_wall_ms(), ts, sizeof ts);

	if (log_format == AP_LOG_JSON) {
		if (!ap_utf8_valid(msg, strlen(msg))) {
			/* Bytes a client sent: logged, not dropped. */
			char *p = ap_printable(msg);

			free(msg);
			msg = p;
		}
		o = json_pack("{s:s, s:s, s:s}", "ts", ts, "level",
		    ap_log_level_name(level), "msg", msg);
		line = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
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
