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

void ap_log(enum ap_log_level level, const char *fmt, ...) AP_PRINTFLIKE(2, 3);

#define ap_debug(...) ap_log(AP_LOG_DEBUG, __VA_ARGS__)
#define ap_info(...) ap_log(AP_LOG_INFO, __VA_ARGS__)
#define ap_warn(...) ap_log(AP_LOG_WARN, __VA_ARGS__)
#define ap_error(...) ap_log(AP_LOG_ERROR, __VA_ARGS__)

#endif
