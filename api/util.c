/*
 * util.c — allocation, buffers, clocks and string helpers shared by every
 * module. Pure: depends on libc only.
 */
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

void
ap_fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("autopilot: fatal: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	abort();
}

void *
ap_xmalloc(size_t size)
{
	void *p = malloc(size == 0 ? 1 : size);

	if (p == NULL)
		ap_fatal("out of memory allocating %zu bytes", size);
	return p;
}

void *
ap_xcalloc(size_t nmemb, size_t size)
{
	void *p;

	if (nmemb == 0 || size == 0)
		nmemb = size = 1;
	p = calloc(nmemb, size);
	if (p == NULL)
		ap_fatal("out of memory allocating %zu x %zu bytes", nmemb, size);
	return p;
}

void *
ap_xrealloc(void *ptr, size_t size)
{
	void *p = realloc(ptr, size == 0 ? 1 : size);

	if (p == NULL)
		ap_fatal("out of memory reallocating %zu bytes", size);
	return p;
}

void *
ap_xreallocarray(void *ptr, size_t nmemb, size_t size)
{
	if (size != 0 && nmemb > SIZE_MAX / size)
		ap_fatal("allocation overflow: %zu x %zu", nmemb, size);
	return ap_xrealloc(ptr, nmemb * size);
}

char *
ap_xstrdup(const char *s)
{
	return ap_xstrndup(s, strlen(s));
}

char *
ap_xstrndup(const char *s, size_t n)
{
	size_t len = strnlen(s, n);
	char *p = ap_xmalloc(len + 1);

	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

char *
ap_xvprintf(const char *fmt, va_list ap)
{
	va_list ap2;
	int n;
	char *p;

	va_copy(ap2, ap);
	n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n < 0)
		ap_fatal("bad format string: %s", fmt);
	p = ap_xmalloc((size_t)n + 1);
	vsnprintf(p, (size_t)n + 1, fmt, ap);
	return p;
}

char *
ap_xprintf(const char *fmt, ...)
{
	va_list ap;
	char *p;

	va_start(ap, fmt);
	p = ap_xvprintf(fmt, ap);
	va_end(ap);
	return p;
}

void
ap_buf_init(struct ap_buf *b)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

void
ap_buf_cleanup(struct ap_buf *b)
{
	free(b->data);
	ap_buf_init(b);
}

void
ap_buf_reset(struct ap_buf *b)
{
	b->len = 0;
	if (b->data != NULL)
		b->data[0] = '\0';
}

static void
ap_buf_reserve(struct ap_buf *b, size_t more)
{
	size_t need, cap;

	if (more > SIZE_MAX - b->len - 1)
		ap_fatal("buffer overflow");
	need = b->len + more + 1;
	if (need <= b->cap)
		return;
	cap = b->cap == 0 ? 64 : b->cap;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	b->data = ap_xrealloc(b->data, cap);
	b->cap = cap;
}

void
ap_buf_add(struct ap_buf *b, const void *data, size_t len)
{
	ap_buf_reserve(b, len);
	if (len != 0)
		memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = '\0';
}

void
ap_buf_adds(struct ap_buf *b, const char *s)
{
	ap_buf_add(b, s, strlen(s));
}

void
ap_buf_addc(struct ap_buf *b, char c)
{
	ap_buf_add(b, &c, 1);
}

void
ap_buf_printf(struct ap_buf *b, const char *fmt, ...)
{
	va_list ap, ap2;
	int n;

	va_start(ap, fmt);
	va_copy(ap2, ap);
	n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n < 0)
		ap_fatal("bad format string: %s", fmt);
	ap_buf_reserve(b, (size_t)n);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
	va_end(ap);
}

char *
ap_buf_steal(struct ap_buf *b, size_t *lenp)
{
	char *p;

	if (b->data == NULL)
		ap_buf_reserve(b, 0), b->data[0] = '\0';
	p = b->data;
	if (lenp != NULL)
		*lenp = b->len;
	ap_buf_init(b);
	return p;
}

/*
 * With epoll's change list, the add and delete a request makes on its socket
 * within one loop turn become one epoll_ctl, or none (two calls per request
 * instead of four). Its one caveat is descriptors cloned with dup(): libevent
 * is never given one here (evhttp's and curl's sockets, the signal pipe).
 */
struct event_base *
ap_event_base_new(void)
{
	struct event_config *cfg = event_config_new();
	struct event_base *base;

	if (cfg == NULL)
		ap_fatal("event_config_new failed");
	event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	base = event_base_new_with_config(cfg);
	event_config_free(cfg);
	if (base == NULL)
		ap_fatal("event_base_new failed");
	return base;
}

uint64_t
ap_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int64_t
ap_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t
ap_boot_ms(void)
{
	struct timespec ts;

#ifdef CLOCK_BOOTTIME
	if (clock_gettime(CLOCK_BOOTTIME, &ts) == 0)
		return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
#endif
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int64_t
ap_clock_step(struct ap_clock_watch *w, int64_t wall, uint64_t boot)
{
	int64_t passed, step;

	if (!w->set) {
		w->set = true;
		w->wall = wall;
		w->boot = boot;
		return 0;
	}
	passed = boot >= w->boot ? (int64_t)(boot - w->boot) : 0;
	step = (wall - w->wall) - passed;
	w->wall = wall;
	w->boot = boot;
	return step > AP_CLOCK_STEP_MS || step < -AP_CLOCK_STEP_MS ? step : 0;
}

void
ap_format_time(int64_t ms, char *buf, size_t size)
{
	time_t secs = (time_t)(ms / 1000);
	struct tm tm;
	char tmp[32];

	gmtime_r(&secs, &tm);
	strftime(tmp, sizeof tmp, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, size, "%s.%03dZ", tmp, (int)(ms % 1000));
}

int
ap_parse_uint(const char *s, unsigned long min, unsigned long max,
    unsigned long *out)
{
	unsigned long v = 0, d;

	if (*s == '\0')
		return -1;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		d = (unsigned long)(*s - '0');
		if (d > max || v > (max - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	if (v < min)
		return -1;
	*out = v;
	return 0;
}

static int stdout_errno;

void
ap_stdout_failed(int err)
{
	if (stdout_errno == 0)
		stdout_errno = err;
}

int
ap_stdout_errno(void)
{
	return stdout_errno;
}

bool
ap_streq(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

bool
ap_strcaseeq(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcasecmp(a, b) == 0;
}

/* Longest name an edit distance is computed for. */
#define AP_DISTANCE_MAX_LEN 64

size_t
ap_edit_distance_nocase(const char *a, const char *b)
{
	size_t row[AP_DISTANCE_MAX_LEN + 1], i, j, la = strlen(a), lb = strlen(b);

	if (la > AP_DISTANCE_MAX_LEN || lb > AP_DISTANCE_MAX_LEN)
		return SIZE_MAX;
	for (j = 0; j <= lb; j++)
		row[j] = j;
	for (i = 1; i <= la; i++) {
		size_t diag = row[0];

		row[0] = i;
		for (j = 1; j <= lb; j++) {
			size_t up = row[j], best = diag +
			    (tolower((unsigned char)a[i - 1]) !=
			    tolower((unsigned char)b[j - 1]));

			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			diag = up;
			row[j] = best;
		}
	}
	return row[lb];
}

bool
ap_is_typo_of(const char *name, const char *known)
{
	size_t d = ap_edit_distance_nocase(name, known);

	return d <= 2 && d * 2 < strlen(name) && strcmp(name, known) != 0;
}

bool
ap_startswith(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

bool
ap_endswith(const char *s, const char *suffix)
{
	size_t sl = strlen(s), xl = strlen(suffix);

	return sl >= xl && memcmp(s + sl - xl, suffix, xl) == 0;
}

/*
 * Opens path for reading if it is a regular file. O_NONBLOCK so that a FIFO
 * with no writer (or a device) is refused rather than waited on for ever;
 * a regular file reads the same either way, and the flag is cleared anyway.
 */
static FILE *
open_regular(const char *path, char **cause)
{
	struct stat st;
	FILE *f;
	int fd, flags;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)) < 0) {
		*cause = ap_xprintf("%s: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) < 0) {
		*cause = ap_xprintf("%s: %s", path, strerror(errno));
		close(fd);
		return NULL;
	}
	if (!S_ISREG(st.st_mode)) {
		*cause = ap_xprintf("%s: %s", path, S_ISDIR(st.st_mode) ?
		    "is a directory" : "not a regular file");
		close(fd);
		return NULL;
	}
	if ((flags = fcntl(fd, F_GETFL)) < 0 ||
	    fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0 ||
	    (f = fdopen(fd, "rb")) == NULL) {
		*cause = ap_xprintf("%s: %s", path, strerror(errno));
		close(fd);
		return NULL;
	}
	return f;
}

char *
ap_read_file(const char *path, size_t max, size_t *lenp, char **cause)
{
	FILE *f = NULL;
	struct ap_buf b;
	char chunk[65536];
	size_t n;
	char *out = NULL;

	ap_buf_init(&b);
	/* "-" is standard input, whatever it is (a pipe, usually). */
	if (strcmp(path, "-") == 0)
		f = stdin;
	else if ((f = open_regular(path, cause)) == NULL)
		goto out;
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
		if (b.len + n > max) {
			*cause = ap_xprintf("%s: larger than %zu bytes", path, max);
			goto out;
		}
		ap_buf_add(&b, chunk, n);
	}
	if (ferror(f)) {
		*cause = ap_xprintf("%s: read error: %s", path, strerror(errno));
		goto out;
	}
	out = ap_buf_steal(&b, lenp);
out:
	if (f != NULL && f != stdin)
		fclose(f);
	ap_buf_cleanup(&b);
	return out;
}

bool
ap_consttime_eq(const void *a, size_t alen, const void *b, size_t blen)
{
	const unsigned char *x = a, *y = b;
	unsigned char diff = 0;
	size_t i;

	/* Compare over the expected length whatever the given one is, so timing
	 * says nothing about where the first difference is. */
	if (alen == 0 || blen == 0)
		return alen == blen;
	for (i = 0; i < blen; i++)
		diff |= (unsigned char)(x[i < alen ? i : 0] ^ y[i]);
	return diff == 0 && alen == blen;
}

const char *
ap_http_url_problem(const char *url)
{
	const char *host = url == NULL ? NULL : ap_startswith(url, "http://") ?
	    url + strlen("http://") : ap_startswith(url, "https://") ?
	    url + strlen("https://") : NULL;
	const char *end, *port;
	unsigned long n;
	char *digits;
	bool ok;

	if (host == NULL)
		return "must be an http:// or https:// URL";
	/* Credentials (user:password@, whatever the password holds) would be
	 * shown wherever the URL is (logs, config check). */
	if (strchr(host, '@') != NULL)
		return "must hold no user name or password (user@host): Airflow's"
		    " come from AUTOPILOT_AIRFLOW_USERNAME and AUTOPILOT_AIRFLOW_PASSWORD,"
		    " OpenMetadata's token from AUTOPILOT_OPENMETADATA_TOKEN";
	if (strpbrk(url, " \t\r\n?#") != NULL)
		return "must have no query, fragment or white space";
	/* The authority: host[:port], up to the path. */
	end = host + strcspn(host, "/");
	if (host[0] == '[') {
		if ((port = memchr(host, ']', (size_t)(end - host))) == NULL ||
		    port == host + 1)
			return "has no host (an IPv6 address goes in brackets)";
		port++;
		if (port != end && *port != ':')
			return "has no host (an IPv6 address goes in brackets)";
	} else {
		port = memchr(host, ':', (size_t)(end - host));
		if (port == NULL)
			port = end;
		if (port == host)
			return "has no host";	/* "http://:80", "http://" */
	}
	if (port == end)
		return NULL;
	/* A colon says a port follows: digits, 1 to 65535 ("http://h:" is not
	 * one). */
	digits = ap_xstrndup(port + 1, (size_t)(end - port - 1));
	ok = ap_parse_uint(digits, 1, 65535, &n) == 0;
	free(digits);
	return ok ? NULL : "its port must be a number from 1 to 65535";
}

char *
ap_om_api_root(const char *url)
{
	const char *scheme = strstr(url, "://");
	size_t n = strlen(url), path;

	/* The path begins after the authority ("http://api" has none). */
	path = scheme != NULL ? (size_t)(scheme - url) + 3 : 0;
	path += strcspn(url + path, "/");
	while (n > path && url[n - 1] == '/')
		n--;
	if (n >= path + 4 && strncmp(url + n - 4, "/api", 4) == 0)
		n -= 4;
	while (n > path && url[n - 1] == '/')
		n--;
	return ap_xprintf("%.*s/api", (int)n, url);
}

char *
ap_url_shown(const char *url)
{
	const char *auth = url != NULL ? strstr(url, "://") : NULL;
	const char *at;

	if (url == NULL)
		return ap_xstrdup("");
	if (auth == NULL)
		return ap_xstrdup(url);
	auth += 3;
	/* Up to the last '@' anywhere: a password may hold '/', '?' or '#'
	 * typed as they are (a path with an '@' is hidden too). */
	if ((at = strrchr(auth, '@')) == NULL)
		return ap_xstrdup(url);
	return ap_xprintf("%.*s***%s", (int)(auth - url), url, at);
}

bool
ap_http_url_ok(const char *url)
{
	return ap_http_url_problem(url) == NULL;
}

bool
ap_utf8_valid(const char *s, size_t n)
{
	json_t *j = json_stringn(s, n);

	json_decref(j);
	return j != NULL;
}

char *
ap_printable(const char *s)
{
	char *out = ap_xstrdup(s), *p;

	for (p = out; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
			*p = '?';
	return out;
}

/* Length of the UTF-8 sequence at p (1 to 4, within left bytes), or 0 when
 * it is not one. */
static size_t
utf8_seq_len(const unsigned char *p, size_t left)
{
	size_t n, i;

	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		n = 2;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		n = 3;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		n = 4;
	else
		return 0;
	if (n > left)
		return 0;
	for (i = 1; i < n; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	/* Overlong forms, surrogates and code points past U+10FFFF. */
	return ap_utf8_valid((const char *)p, n) ? n : 0;
}

/* The UTF-8 sequence p (n bytes) is a bidirectional formatting character:
 * U+061C, U+200E, U+200F, U+202A to U+202E, U+2066 to U+2069. */
static bool
bidi_control(const unsigned char *p, size_t n)
{
	if (n == 2)
		return p[0] == 0xd8 && p[1] == 0x9c;
	if (n != 3 || p[0] != 0xe2)
		return false;
	return (p[1] == 0x80 && (p[2] == 0x8e || p[2] == 0x8f ||
	    (p[2] >= 0xaa && p[2] <= 0xae))) || (p[1] == 0x81 && p[2] >= 0xa6 &&
	    p[2] <= 0xa9);
}

void
ap_buf_add_term(struct ap_buf *b, const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + len;
	size_t n;

	while (p < end) {
		if (*p == '\n' || *p == '\r' || *p == '\t') {
			ap_buf_addc(b, '\\');
			ap_buf_addc(b, *p == '\n' ? 'n' : *p == '\r' ? 'r' : 't');
			p++;
		} else if (*p < 0x20 || *p == 0x7f) {
			ap_buf_printf(b, "\\x%02x", *p++);
		} else if (*p < 0x80) {
			ap_buf_addc(b, (char)*p++);
		} else if ((n = utf8_seq_len(p, (size_t)(end - p))) == 0) {
			ap_buf_printf(b, "\\x%02x", *p++);
		} else if (n == 2 && p[0] == 0xc2 && p[1] <= 0x9f) {
			ap_buf_printf(b, "\\u%04x", p[1]);
			p += 2;
		} else if (bidi_control(p, n)) {
			/* Reorders what follows on the terminal: a name or an
			 * error would not read as what it holds. */
			ap_buf_printf(b, "\\u%04x", n == 2 ? ((p[0] & 0x1f) << 6) |
			    (p[1] & 0x3f) : ((p[0] & 0x0f) << 12) | ((p[1] & 0x3f) <<
			    6) | (p[2] & 0x3f));
			p += n;
		} else {
			ap_buf_add(b, p, n);
			p += n;
		}
	}
}

char *
ap_term_text(const char *s)
{
	struct ap_buf b;

	ap_buf_init(&b);
	ap_buf_add_term(&b, s, strlen(s));
	return ap_buf_steal(&b, NULL);
}
