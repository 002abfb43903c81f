/*
 * log.h — one line per event on stderr, as text (default) or JSON.
 *
 * Secrets are never passed here. Safe to call from loop callbacks.
 */
#ifndef AP_LOG_H
#define AP_LOG_H

#include "util.h"

enum ap_log_level {
	AP_LOG_DEBUG,
	AP_LOG_INFO,
	AP_LOG_WARN,
	AP_LOG_ERROR,
	AP_LOG_LEVEL_MAX
};

enum ap_log_format {
	AP_LOG_TEXT,
	AP_LOG_JSON
};

void ap_log_setup(enum ap_log_level min, enum ap_log_format format);
const char *ap_log_level_name(enum ap_log_level level);
/* Parses "debug", "info", "warn", "error"; false if unknown. */
bool ap_log_level_parse(const char *s, enum ap_log_level *out);

/* Whether lines of level are written: for what costs work to say. */
bool ap_log_enabled(enum ap_log_level level);

/*
 * What a line is about, for JSON lines: each field set is a key of its own
 * ("run_id", "agent", "fqn", "event_id") beside "msg", so that a run's
 * lines can be picked out without reading the message. Text lines are
 * the same with or without them: the message names them already.
 */
struct ap_log_about {
	const char *run_id;
	const char *agent;
	const char *fqn;
	const char *event_id;
};

void ap_log_about(enum ap_log_level level, const struct ap_log_about *about,
    const char *fmt, ...) AP_PRINTFLIKE(3, 4);
/* A line about nothing in particular (no fields beside "msg"). */
#define ap_log(level, ...) ap_log_about((level), NULL, __VA_ARGS__)

#define ap_debug(...) ap_log(AP_LOG_DEBUG, __VA_ARGS__)
#define ap_info(...) ap_log(AP_LOG_INFO, __VA_ARGS__)
#define ap_warn(...) ap_log(AP_LOG_WARN, __VA_ARGS__)
#define ap_error(...) ap_log(AP_LOG_ERROR, __VA_ARGS__)

#endif
