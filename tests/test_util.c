/* test_util.c — the ap_ helpers: buffers, formatting, constant-time compare. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

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

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_buf_grows_and_stays_terminated),
		cmocka_unit_test(test_consttime_eq),
		cmocka_unit_test(test_format_time),
		cmocka_unit_test(test_read_file_limits),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
