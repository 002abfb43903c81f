/*
 * util.h — cross-cutting helpers (ap_ prefix): allocation that never returns
 * NULL, a growable byte buffer, clocks, and small string helpers.
 *
 * Pure: no libevent, no libcurl. Out-of-memory is fatal (as in tmux and
 * Redis); every other failure is returned to the caller.
 */
#ifndef AP_UTIL_H
#define AP_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AP_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#if defined(__GNUC__)
#define AP_PRINTFLIKE(f, a) __attribute__((format(printf, f, a)))
#define AP_NORETURN __attribute__((noreturn))
#else
#define AP_PRINTFLIKE(f, a)
#define AP_NORETURN
#endif

/* Print "autopilot: <message>" to stderr and abort. For broken invariants and OOM. */
AP_NORETURN void ap_fatal(const char *fmt, ...) AP_PRINTFLIKE(1, 2);

/* Allocation: never return NULL (fatal on OOM). The caller owns the result. */
void *ap_xmalloc(size_t size);
void *ap_xcalloc(size_t nmemb, size_t size);
void *ap_xrealloc(void *ptr, size_t size);
void *ap_xreallocarray(void *ptr, size_t nmemb, size_t size);
char *ap_xstrdup(const char *s);
char *ap_xstrndup(const char *s, size_t n);
/* Returns a new string formatted like printf. */
char *ap_xprintf(const char *fmt, ...) AP_PRINTFLIKE(1, 2);
char *ap_xvprintf(const char *fmt, va_list ap);

/*
 * A growable byte buffer, always NUL-terminated so it can be read as a string.
 * Embedded: ap_buf_init()/ap_buf_cleanup().
 */
struct ap_buf {
	char *data;
	size_t len;
	size_t cap;
};

void ap_buf_init(struct ap_buf *b);
void ap_buf_cleanup(struct ap_buf *b);
void ap_buf_reset(struct ap_buf *b);
void ap_buf_add(struct ap_buf *b, const void *data, size_t len);
void ap_buf_adds(struct ap_buf *b, const char *s);
void ap_buf_addc(struct ap_buf *b, char c);
void ap_buf_printf(struct ap_buf *b, const char *fmt, ...) AP_PRINTFLIKE(2, 3);
/* Hands the data to the caller (who frees it) and leaves the buffer empty. */
char *ap_buf_steal(struct ap_buf *b, size_t *lenp);

/* The errno of a write to standard output that failed before the final
 * flush, which then has none to give (main() says why the output failed). */
void ap_stdout_failed(int err);
int ap_stdout_errno(void);

struct event_base;
/* A new libevent loop, as every command and test program runs it. */
struct event_base *ap_event_base_new(void);

/* Milliseconds from a monotonic clock (for timers and durations). */
uint64_t ap_mono_ms(void);
/* Milliseconds since the Unix epoch (for timestamps that are stored). */
int64_t ap_wall_ms(void);

/* Milliseconds since boot, suspended time included (CLOCK_BOOTTIME). */
uint64_t ap_boot_ms(void);

/*
 * Watches the wall clock for steps (an NTP step after boot, a VM's clock
 * set): between two readings, the wall clock moving more than
 * AP_CLOCK_STEP_MS beyond the time that passed (ap_boot_ms(), so a suspend
 * is time passing, not a step). Slewing and small corrections stay under it.
 */
#define AP_CLOCK_STEP_MS 1000
struct ap_clock_watch {
	bool set;
	int64_t wall;		/* the last wall reading */
	uint64_t boot;		/* ... and ap_boot_ms() with it */
};
/* The step of the wall clock since the last reading (0: none, or the
 * first reading), after readings wall and boot. */
int64_t ap_clock_step(struct ap_clock_watch *w, int64_t wall, uint64_t boot);
/* Formats epoch milliseconds as RFC 3339 UTC ("2026-11-25T02:00:41.123Z") into buf. */
void ap_format_time(int64_t ms, char *buf, size_t size);

/*
 * Parses s as a decimal number from min to max into *out: ASCII digits only,
 * at least one (no sign, no white space, nothing after them; strtoul takes
 * all three and wraps a negative number around). Returns 0, or -1 leaving
 * *out alone. Any thread.
 */
int ap_parse_uint(const char *s, unsigned long min, unsigned long max,
    unsigned long *out);

bool ap_streq(const char *a, const char *b);
bool ap_strcaseeq(const char *a, const char *b);
bool ap_startswith(const char *s, const char *prefix);
bool ap_endswith(const char *s, const char *suffix);
/* Whether name is likely a typo of known: not the same string, one or two
 * edits away ignoring case, and fewer than half name's letters (names of at
 * most 64 bytes; longer ones are never typos). Any thread. */
bool ap_is_typo_of(const char *name, const char *known);
/* ap_is_typo_of()'s distance: case-insensitive Levenshtein, or SIZE_MAX
 * when either is longer than 64 bytes. */
size_t ap_edit_distance_nocase(const char *a, const char *b);

/* Reads a whole file into a new NUL-terminated buffer of at most max bytes.
 * path must be a regular file ("PATH: not a regular file", "PATH: is a
 * directory": a FIFO is refused, never waited on), or "-" for standard input.
 * Returns NULL and sets *cause (new string, naming path) on failure. */
char *ap_read_file(const char *path, size_t max, size_t *lenp, char **cause);

/* Constant-time comparison of two byte strings; false when lengths differ. */
/* Whether url is an http:// or https:// URL with a host, a port (if a
 * colon announces one) from 1 to 65535 in digits, and no query, fragment or
 * white space: what Airflow's and OpenMetadata's base URLs must be. */
bool ap_http_url_ok(const char *url);
/* NULL if ap_http_url_ok(url), else what is wrong ("its port must be a
 * number from 1 to 65535"; a static string). */
const char *ap_http_url_problem(const char *url);
/* OpenMetadata's API root for its base URL url, given with or without the
 * "/api" its own hostPort settings carry: "<url>/api" (a new string). */
char *ap_om_api_root(const char *url);
/* url as it may be shown: user information (user:password@) as "***@". A
 * new string ("" for NULL). */
char *ap_url_shown(const char *url);
/* Whether s[0..n) is valid UTF-8 (as jansson takes strings). */
bool ap_utf8_valid(const char *s, size_t n);
/* A new copy of s, each byte outside printable ASCII replaced by '?':
 * for echoing what a client sent (headers) in answers and logs. */
char *ap_printable(const char *s);
/*
 * A new copy of s (text from outside: Airflow's errors, service names) safe
 * to print on a terminal and one line long: control characters (C0, DEL and
 * C1, which can start terminal escape sequences) are written as escapes
 * (\n, \t, \x1b, \u009b), and so are the bidirectional formatting
 * characters (\u202e), bytes that are not UTF-8 as \xff; other UTF-8 is
 * kept. Any thread.
 */
char *ap_term_text(const char *s);
/* Appends s[0..len) to b as ap_term_text() writes it (a NUL as \x00). */
void ap_buf_add_term(struct ap_buf *b, const char *s, size_t len);
bool ap_consttime_eq(const void *a, size_t alen, const void *b, size_t blen);

#endif
