/* test_util.c — the ap_ helpers: buffers, formatting, constant-time compare,
 * terminal-safe text; and the text log line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

static void
test_buf_grows_and_stays_terminated(void **state)
{
	struct ap_buf b;
	size_t len, i;
	char *s;

	ap_buf_init(&b);
	for (i = 0; i < 1000; i++)
		ap_buf_printf(&b, "%zu,", i);
	assert_int_equal(strlen(b.data), b.len);
	assert_true(ap_startswith(b.data, "0,1,2,"));
	assert_true(ap_endswith(b.data, "998,999,"));
	s = ap_buf_steal(&b, &len);
	assert_null(b.data);
	assert_int_equal(strlen(s), len);
	free(s);
	s = ap_buf_steal(&b, &len);
	assert_string_equal(s, "");
	assert_int_equal(len, 0);
	free(s);
}

static void
test_consttime_eq(void **state)
{
	assert_true(ap_consttime_eq("abc", 3, "abc", 3));
	assert_false(ap_consttime_eq("abd", 3, "abc", 3));
	assert_false(ap_consttime_eq("ab", 2, "abc", 3));
	assert_false(ap_consttime_eq("abcd", 4, "abc", 3));
	assert_false(ap_consttime_eq("", 0, "abc", 3));
	assert_true(ap_consttime_eq("", 0, "", 0));
}

static void
test_format_time(void **state)
{
	char buf[40];

	ap_format_time(1764036041123LL, buf, sizeof buf);
	assert_string_equal(buf, "2025-11-25T02:00:41.123Z");
}

static void
test_read_file_limits(void **state)
{
	char *cause = NULL, *data;
	size_t len;

	data = ap_read_file("/nonexistent/file", 10, &len, &cause);
	assert_null(data);
	assert_non_null(strstr(cause, "/nonexistent/file"));
	free(cause);
	cause = NULL;
	data = ap_read_file("/proc/self/cmdline", 1, &len, &cause);
	assert_null(data);
	assert_non_null(strstr(cause, "larger than 1 bytes"));
	free(cause);
}

static void
expect_read_error(const char *path, const char *want)
{
	char *cause = NULL, *data;
	size_t len;

	data = ap_read_file(path, 1024, &len, &cause);
	assert_null(data);
	assert_non_null(cause);
	if (strcmp(cause, want) != 0)
		fail_msg("cause '%s', want '%s'", cause, want);
	free(cause);
}

/* Only a regular file is read: a FIFO with no writer is refused at once
 * rather than waited on (alarm() fails the test if it blocks); "-" is still
 * standard input, a pipe included. */
static void
test_read_file_regular_only(void **state)
{
	char dir[] = "/tmp/test_util.XXXXXX", *fifo, *want, *cause = NULL, *data;
	int p[2], saved;
	size_t len;

	assert_non_null(mkdtemp(dir));
	fifo = ap_xprintf("%s/fifo", dir);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	alarm(10);
	want = ap_xprintf("%s: not a regular file", fifo);
	expect_read_error(fifo, want);
	free(want);
	expect_read_error("/dev/null", "/dev/null: not a regular file");
	want = ap_xprintf("%s: is a directory", dir);
	expect_read_error(dir, want);
	free(want);
	alarm(0);

	assert_int_equal(pipe(p), 0);
	assert_int_equal(write(p[1], "from a pipe\n", 12), 12);
	close(p[1]);
	fflush(stdin);
	saved = dup(STDIN_FILENO);
	assert_true(saved >= 0);
	assert_int_equal(dup2(p[0], STDIN_FILENO), STDIN_FILENO);
	close(p[0]);
	data = ap_read_file("-", 1024, &len, &cause);
	assert_int_equal(dup2(saved, STDIN_FILENO), STDIN_FILENO);
	close(saved);
	clearerr(stdin);
	if (data == NULL)
		fail_msg("%s", cause);
	assert_int_equal(len, 12);
	assert_string_equal(data, "from a pipe\n");
	free(data);

	unlink(fifo);
	rmdir(dir);
	free(fifo);
}

/* Digits only, within the range: no sign, no white space, no wrap-around. */
static void
test_parse_uint(void **state)
{
	static const char *const bad[] = { "", " 5", "5 ", "+5", "-5", "5x", "0x5",
		"-18446744073709551615", "18446744073709551616",
		"99999999999999999999999", "0", "100001", "1e3", "\t5" };
	unsigned long v = 42;
	size_t i;

	assert_int_equal(ap_parse_uint("1", 1, 100000, &v), 0);
	assert_int_equal(v, 1);
	assert_int_equal(ap_parse_uint("100000", 1, 100000, &v), 0);
	assert_int_equal(v, 100000);
	assert_int_equal(ap_parse_uint("007", 1, 100000, &v), 0);
	assert_int_equal(v, 7);
	assert_int_equal(ap_parse_uint("0", 0, 65535, &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(ap_parse_uint("65535", 0, 65535, &v), 0);
	assert_int_equal(v, 65535);
	assert_int_equal(ap_parse_uint("18446744073709551615", 0, ULONG_MAX, &v), 0);
	assert_true(v == ULONG_MAX);
	assert_int_equal(ap_parse_uint("9", 0, 5, &v), -1);
	for (i = 0; i < AP_ARRAY_LEN(bad); i++) {
		v = 42;
		if (ap_parse_uint(bad[i], 1, 100000, &v) != -1)
			fail_msg("'%s' was taken as %lu", bad[i], v);
		assert_int_equal(v, 42);
	}
}

/* A base URL: http(s), a host, a port in digits when a colon says one
 * follows, no query or fragment. */
static void
test_http_url_ok(void **state)
{
	static const char *const good[] = { "http://127.0.0.1:8080",
		"https://airflow.example.com/", "http://af", "http://af/base/path",
		"http://[::1]:8080", "http://[::1]", "http://af:1", "http://af:65535/" };
	static const char *const bad[] = { "http://:80", "http://127.0.0.1:",
		"http://127.0.0.1:/", "https://:", "http://", "https://", "http:///x",
		"http://[::1]:", "http://[]:80", "http://[::1]x", "http://u@:80",
		"http://af:0", "http://af:65536", "http://af: 80", "http://af:+80",
		"http://af:80x", "http://af:8:80", "ftp://af", "af:80", "http://af?x",
		"http://af#f", "http://a f", "", "https://u:p@af:443/x", "http://u@af" };
	size_t i;

	assert_false(ap_http_url_ok(NULL));
	for (i = 0; i < AP_ARRAY_LEN(good); i++)
		if (!ap_http_url_ok(good[i]))
			fail_msg("'%s' refused", good[i]);
	for (i = 0; i < AP_ARRAY_LEN(bad); i++)
		if (ap_http_url_ok(bad[i]))
			fail_msg("'%s' accepted", bad[i]);
	assert_non_null(strstr(ap_http_url_problem("http://u:p@af"), "no user name"));
	assert_non_null(strstr(ap_http_url_problem("http://u:p#w@af"), "no user name"));
	assert_non_null(strstr(ap_http_url_problem("http://u:p/w@af"), "no user name"));
}

/* OpenMetadata's API root, whether its URL is given with "/api" or not. */
static void
test_om_api_root(void **state)
{
	static const char *const cases[][2] = {
		{ "http://om:8585", "http://om:8585/api" },
		{ "http://om:8585/", "http://om:8585/api" },
		{ "http://om:8585/api", "http://om:8585/api" },
		{ "http://om:8585/api//", "http://om:8585/api" },
		{ "https://h/om/api/", "https://h/om/api" },
		{ "https://h/om", "https://h/om/api" },
		{ "https://h/rapi", "https://h/rapi/api" },
		{ "http://h/api/api", "http://h/api/api" },
		{ "http://api", "http://api/api" }, { "http://api/", "http://api/api" },
		{ "https://api/api", "https://api/api" }, { "http://x/", "http://x/api" } };
	size_t i;
	char *s;

	(void)state;
	for (i = 0; i < AP_ARRAY_LEN(cases); i++) {
		s = ap_om_api_root(cases[i][0]);
		assert_string_equal(s, cases[i][1]);
		free(s);
	}
}

/* A URL shown (in a message) never shows a password. */
static void
test_url_shown(void **state)
{
	static const char *const cases[][2] = {
		{ "https://admin:hunter2@af:8080/x", "https://***@af:8080/x" },
		{ "http://a@b:p@w@af", "http://***@af" },
		{ "http://admin:s3c#r/e?t@af:8080", "http://***@af:8080" },
		{ "http://af/x@y", "http://***@y" },
		{ "http://af:8080/base", "http://af:8080/base" },
		{ "notaurl", "notaurl" }, { "", "" } };
	size_t i;
	char *s;

	for (i = 0; i < AP_ARRAY_LEN(cases); i++) {
		s = ap_url_shown(cases[i][0]);
		assert_string_equal(s, cases[i][1]);
		free(s);
	}
	s = ap_url_shown(NULL);
	assert_string_equal(s, "");
	free(s);
}

/* Text from outside printed on a terminal: one line, no control characters,
 * valid UTF-8 kept. */
static void
test_term_text(void **state)
{
	static const struct { const char *in, *out; } cases[] = {
		{ "plain", "plain" },
		{ "", "" },
		{ "a\nb\r\tc", "a\\nb\\r\\tc" },
		{ "x\033[31mred\007", "x\\x1b[31mred\\x07" },
		{ "del\177", "del\\x7f" },
		{ "s\xc3\xa4l\xc3\xabs \xe2\x82\xac \xf0\x9f\x98\x80", "s\xc3\xa4l\xc3\xabs \xe2\x82\xac \xf0\x9f\x98\x80" },
		{ "csi\xc2\x9b" "2J", "csi\\u009b2J" },
		{ "bad\xff\xc3", "bad\\xff\\xc3" },
		{ "overlong\xc0\xaf", "overlong\\xc0\\xaf" },
		{ "surrogate\xed\xa0\x80", "surrogate\\xed\\xa0\\x80" },
		/* Bidirectional formatting: what follows would be reordered. */
		{ "tab\xe2\x80\xae" "elbat", "tab\\u202eelbat" },
		{ "\xe2\x80\xaa\xe2\x80\x8f\xe2\x81\xa6\xe2\x81\xa9\xd8\x9c",
		    "\\u202a\\u200f\\u2066\\u2069\\u061c" },
		{ "\xe2\x80\xa9\xe2\x81\xaa\xd8\x9d", "\xe2\x80\xa9\xe2\x81\xaa\xd8\x9d" },
	};
	size_t i;
	char *out;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		out = ap_term_text(cases[i].in);
		assert_string_equal(out, cases[i].out);
		free(out);
	}
}

/* A text log line is one line, whatever the message holds (an Airflow
 * import error's traceback, escape sequences). */
static void
test_log_one_line(void **state)
{
	char path[] = "/tmp/test_util_log.XXXXXX", buf[512];
	int fd = mkstemp(path), saved = dup(STDERR_FILENO);
	size_t n;
	FILE *f;

	(void)state;
	assert_true(fd >= 0 && saved >= 0);
	fflush(stderr);
	dup2(fd, STDERR_FILENO);
	ap_log_setup(AP_LOG_INFO, AP_LOG_TEXT);
	ap_log(AP_LOG_WARN, "import error: %s", "Traceback:\n  x\033[31mred");
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	f = fdopen(fd, "r");
	assert_non_null(f);
	rewind(f);
	n = fread(buf, 1, sizeof buf - 1, f);
	buf[n] = '\0';
	fclose(f);
	unlink(path);
	assert_non_null(strstr(buf, "import error: Traceback:\\n  x\\x1b[31mred\n"));
	assert_ptr_equal(strchr(buf, '\n'), buf + n - 1);
	assert_null(strchr(buf, '\033'));
}

/* The wall clock's steps: what it moved beyond the time that passed,
 * over a second; slewing, jitter and a suspend are not steps. */
static void
test_clock_step(void **state)
{
	struct ap_clock_watch w = { 0 };
	const int64_t t0 = 1796600000000;	/* an epoch ms */
	uint64_t b = 5000;
	int64_t now;

	(void)state;
	assert_int_equal(ap_clock_step(&w, t0, b), 0);
	/* Moving as time does, give or take under a second. */
	assert_int_equal(ap_clock_step(&w, t0 + 1000, b + 1000), 0);
	assert_int_equal(ap_clock_step(&w, t0 + 2900, b + 2000), 0);
	assert_int_equal(ap_clock_step(&w, t0 + 2950, b + 2950), 0);
	/* Stepped an hour ahead within a second: the hour. */
	assert_int_equal(ap_clock_step(&w, t0 + 3950 + 3600000, b + 3950),
	    3600000);
	/* Then as time passes again: nothing more. */
	assert_int_equal(ap_clock_step(&w, t0 + 13950 + 3600000, b + 13950), 0);
	/* Back a day, ten seconds after the last reading. */
	assert_int_equal(ap_clock_step(&w, t0 + 23950 + 3600000 - 86400000,
	    b + 23950), -86400000);
	/* A suspend of an hour: the boot clock counted it, not a step. */
	assert_int_equal(ap_clock_step(&w, t0 + 23950 + 7200000 - 86400000,
	    b + 23950 + 3600000), 0);
	/* A step just over the threshold either way, and one just under. */
	w = (struct ap_clock_watch){ 0 };
	ap_clock_step(&w, t0, b);
	assert_int_equal(ap_clock_step(&w, t0 + 1001, b), 1001);
	assert_int_equal(ap_clock_step(&w, t0 + 1001 - 1001, b), -1001);
	assert_int_equal(ap_clock_step(&w, t0 + 1000, b), 0);
	/* The boot clock read before the last (a reading out of order):
	 * no time passed. */
	assert_int_equal(ap_clock_step(&w, t0 + 1000, b - 10), 0);
	/* The clocks of this machine: no step between two readings. */
	w = (struct ap_clock_watch){ 0 };
	now = ap_wall_ms();
	ap_clock_step(&w, now, ap_boot_ms());
	assert_int_equal(ap_clock_step(&w, ap_wall_ms(), ap_boot_ms()), 0);
	assert_true(ap_boot_ms() > 0);
}

static void
test_typo(void **state)
{
	char long_name[100];

	(void)state;
	assert_int_equal(ap_edit_distance_nocase("", ""), 0);
	assert_int_equal(ap_edit_distance_nocase("abc", ""), 3);
	assert_int_equal(ap_edit_distance_nocase("kitten", "sitting"), 3);
	assert_int_equal(ap_edit_distance_nocase("Postgres", "postgres"), 0);
	assert_int_equal(ap_edit_distance_nocase("tabel", "table"), 2);
	assert_true(ap_is_typo_of("Postgress", "Postgres"));
	assert_true(ap_is_typo_of("postgres", "Postgres"));	/* case only */
	assert_false(ap_is_typo_of("Postgres", "Postgres"));	/* the same */
	assert_true(ap_is_typo_of("Db2", "Db"));	/* 1 edit of 3 letters */
	assert_true(ap_is_typo_of("Db22", "Db2"));
	assert_false(ap_is_typo_of("ab", "xy"));	/* all the letters */
	assert_false(ap_is_typo_of("Looker", "Oracle"));
	memset(long_name, 'a', sizeof long_name - 1);
	long_name[sizeof long_name - 1] = '\0';
	assert_int_equal(ap_edit_distance_nocase(long_name, "a"), SIZE_MAX);
	assert_false(ap_is_typo_of(long_name, long_name + 1));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_buf_grows_and_stays_terminated),
		cmocka_unit_test(test_consttime_eq),
		cmocka_unit_test(test_format_time),
		cmocka_unit_test(test_read_file_limits),
		cmocka_unit_test(test_read_file_regular_only),
		cmocka_unit_test(test_parse_uint),
		cmocka_unit_test(test_http_url_ok),
		cmocka_unit_test(test_url_shown),
		cmocka_unit_test(test_om_api_root),
		cmocka_unit_test(test_term_text),
		cmocka_unit_test(test_log_one_line),
		cmocka_unit_test(test_clock_step),
		cmocka_unit_test(test_typo),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
