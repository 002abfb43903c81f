/* test_config.c — settings: defaults < file < environment < flags, every
 * section checked with its key path, secrets only from env or files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "util.h"

static const char *const env_vars[] = { "AUTOPILOT_CONFIG", "AUTOPILOT_LISTEN",
	"AUTOPILOT_STATE", "AUTOPILOT_LOG_LEVEL", "AUTOPILOT_LOG_FORMAT",
	"AUTOPILOT_WEBHOOK_SECRET", "AUTOPILOT_ADMIN_TOKEN", "AUTOPILOT_OPENMETADATA_URL",
	"AUTOPILOT_OPENMETADATA_TOKEN", "AUTOPILOT_AIRFLOW_URL",
	"AUTOPILOT_AIRFLOW_USERNAME", "AUTOPILOT_AIRFLOW_PASSWORD", NULL };

static char tmpdir[] = "/tmp/test_config.XXXXXX";

static int
setup(void **state)
{
	size_t i;

	for (i = 0; env_vars[i] != NULL; i++)
		unsetenv(env_vars[i]);
	return 0;
}

static char *
write_tmp(const char *name, const char *text)
{
	char *path = ap_xprintf("%s/%s", tmpdir, name);
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return path;
}

/* Loads text as a config file; returns the rc and leaves the cause in *cause. */
static int
load_text(struct config *c, const char *text, const struct config_flags *fl, char **cause)
{
	char *path = write_tmp("c.json", text);
	int rc;

	config_init(c);
	*cause = NULL;
	rc = config_load(c, path, fl, cause);
	free(path);
	return rc;
}

static void
expect_error(const char *text, const char *needle)
{
	struct config c;
	char *cause;

	assert_int_equal(load_text(&c, text, NULL, &cause), -1);
	assert_non_null(cause);
	if (strstr(cause, needle) == NULL)
		fail_msg("cause '%s' lacks '%s'", cause, needle);
	/* Every message names the file. */
	assert_non_null(strstr(cause, "c.json"));
	free(cause);
	config_cleanup(&c);
}

static void
test_defaults(void **state)
{
	struct config c;
	char *cause = NULL;

	config_init(&c);
	assert_int_equal(config_load(&c, NULL, NULL, &cause), 0);
	assert_null(c.file);
	assert_string_equal(c.listen_host, "127.0.0.1");
	assert_int_equal(c.listen_port, 8686);
	assert_string_equal(c.state_path, "autopilot.db");
	assert_int_equal(c.state_retention_days, 0);
	assert_null(c.webhook_secret);
	assert_null(c.admin_token);
	assert_false(c.allow_unsigned);
	assert_false(c.protect_runs);
	assert_int_equal(c.log_format, AP_LOG_TEXT);
	assert_int_equal(c.sched.poll_max_ms, 60000);
	assert_int_equal(c.max_buffered_bytes, 64u * 1024 * 1024);
	config_cleanup(&c);
}

/* listen.max_buffered_bytes holds at least one request as large as may be
 * read; left out, four of them when that is more than 64 MiB. */
static void
test_max_buffered(void **state)
{
	struct config c;
	char *cause = NULL;

	(void)state;
	/* max_body_bytes 1 MiB: a body read up to 4 MiB, 64 KiB of headers. */
	expect_error("{\"listen\": {\"max_buffered_bytes\": 4259839}}",
	    "listen.max_buffered_bytes: 4259839 is less than one request may hold"
	    " as it is read (4259840 bytes");
	assert_int_equal(load_text(&c, "{\"listen\": {\"max_buffered_bytes\": 4259840}}",
	    NULL, &cause), 0);
	assert_int_equal(c.max_buffered_bytes, 4259840);
	config_cleanup(&c);
	/* Either order in the section. */
	expect_error("{\"listen\": {\"max_buffered_bytes\": 300000,"
	    " \"max_body_bytes\": 1048576}}", "is less than one request");
	/* max_body_bytes 1024: a body read up to 1024 + 64 KiB. */
	assert_int_equal(load_text(&c, "{\"listen\": {\"max_buffered_bytes\": 132096,"
	    " \"max_body_bytes\": 1024}}", NULL, &cause), 0);
	assert_int_equal(config_request_bytes_max(&c), 132096);
	config_cleanup(&c);
	/* (The least one request may hold, at the least max_body_bytes.) */
	expect_error("{\"listen\": {\"max_buffered_bytes\": 132095}}",
	    "listen.max_buffered_bytes: must be an integer between 132096 and");
	/* Left out with 32 MiB bodies: 4 x (128 MiB + 64 KiB). */
	assert_int_equal(load_text(&c, "{\"listen\": {\"max_body_bytes\": 33554432}}",
	    NULL, &cause), 0);
	assert_int_equal(c.max_buffered_bytes, 4 * (4 * 33554432ul + 65536));
	config_cleanup(&c);
}

/* A variable named like autopilot's that is none it reads is warned about. */
static void
test_env_warnings(void **state)
{
	json_t *w;

	setenv("AUTOPILOT_ADMIN_TOKN", "x", 1);
	setenv("AUTOPILOT_ADMIN_TOKEN", "y", 1);
	w = config_env_warnings();
	assert_int_equal(json_array_size(w), 1);
	assert_non_null(strstr(json_string_value(json_array_get(w, 0)),
	    "AUTOPILOT_ADMIN_TOKN is not a variable autopilot reads"));
	json_decref(w);
	unsetenv("AUTOPILOT_ADMIN_TOKN");
	w = config_env_warnings();
	assert_int_equal(json_array_size(w), 0);
	json_decref(w);
	unsetenv("AUTOPILOT_ADMIN_TOKEN");
}

/* The shipped example must always load, and say what the defaults are. */
static void
test_example_loads(void **state)
{
	const char *src = getenv("AP_SRC");
	struct config c, d;
	char *path, *text, *cause = NULL;
	json_t *a, *b, *root;

	assert_non_null(src);
	path = ap_xprintf("%s/conf/autopilot.example.json", src);
	config_init(&c);
	if (config_load(&c, path, NULL, &cause) < 0)
		fail_msg("%s", cause);
	assert_null(json_object_get(c.root, "$comment"));
	assert_null(json_object_get(json_object_get(c.root, "listen"), "$comment"));
	assert_int_equal(json_array_size(c.warnings), 0);
	/* Apart from the file name, the example's effective settings are the defaults. */
	config_init(&d);
	assert_int_equal(config_load(&d, NULL, NULL, &cause), 0);
	a = config_describe(&c);
	b = config_describe(&d);
	json_object_del(a, "file");
	json_object_del(b, "file");
	/* The plan is valid; the example adds organisation filter defaults to it. */
	assert_non_null(json_object_get(a, "plan"));
	assert_null(json_object_get(json_object_get(a, "plan"), "error"));
	assert_false(json_equal(json_object_get(a, "plan"), json_object_get(b, "plan")));
	json_object_del(a, "plan");
	json_object_del(b, "plan");
	assert_true(json_equal(a, b));
	json_decref(a);
	json_decref(b);
	config_cleanup(&c);
	/* Without those examples (filters.defaults), the plan is the default
	 * one too: agents, order, timeouts, schedules, built-in filters. */
	root = json_load_file(path, 0, NULL);
	assert_non_null(root);
	assert_int_equal(json_object_del(json_object_get(root, "filters"), "defaults"), 0);
	text = json_dumps(root, 0);
	assert_int_equal(load_text(&c, text, NULL, &cause), 0);
	a = config_describe(&c);
	b = config_describe(&d);
	assert_true(json_equal(json_object_get(a, "plan"), json_object_get(b, "plan")));
	json_decref(a);
	json_decref(b);
	json_decref(root);
	free(text);
	config_cleanup(&c);
	config_cleanup(&d);
	free(path);
}

static void
test_precedence(void **state)
{
	struct config c;
	struct config_flags fl = { 0 };
	char *cause = NULL;
	const char *text = "{\"listen\": {\"host\": \"10.0.0.1\", \"port\": 9000},"
	    " \"state\": {\"path\": \"/file.db\", \"retention_days\": 30},"
	    " \"log\": {\"format\": \"text\"},"
	    " \"airflow\": {\"url\": \"http://file:8080\", \"username\": \"fileuser\"}}";

	/* File only. */
	assert_int_equal(load_text(&c, text, NULL, &cause), 0);
	assert_string_equal(c.listen_host, "10.0.0.1");
	assert_int_equal(c.listen_port, 9000);
	assert_string_equal(c.state_path, "/file.db");
	assert_int_equal(c.state_retention_days, 30);
	assert_string_equal(c.airflow_url, "http://file:8080");
	assert_string_equal(c.airflow_username, "fileuser");
	config_cleanup(&c);

	/* Environment over file. */
	setenv("AUTOPILOT_LISTEN", "127.0.0.2:9001", 1);
	setenv("AUTOPILOT_STATE", "/env.db", 1);
	setenv("AUTOPILOT_AIRFLOW_URL", "http://env:8080", 1);
	setenv("AUTOPILOT_LOG_FORMAT", "json", 1);
	assert_int_equal(load_text(&c, text, NULL, &cause), 0);
	assert_string_equal(c.listen_host, "127.0.0.2");
	assert_int_equal(c.listen_port, 9001);
	assert_string_equal(c.state_path, "/env.db");
	assert_string_equal(c.airflow_url, "http://env:8080");
	assert_string_equal(c.airflow_username, "fileuser");
	assert_int_equal(c.log_format, AP_LOG_JSON);
	config_cleanup(&c);

	/* Flags over environment. */
	fl.listen = "[::1]:0";
	fl.state = "/flag.db";
	fl.airflow_url = "http://flag:8080";
	fl.allow_unsigned = true;
	assert_int_equal(load_text(&c, text, &fl, &cause), 0);
	assert_string_equal(c.listen_host, "::1");
	assert_int_equal(c.listen_port, 0);
	assert_string_equal(c.state_path, "/flag.db");
	assert_string_equal(c.airflow_url, "http://flag:8080");
	assert_true(c.allow_unsigned);
	config_cleanup(&c);

	/* An empty --state is refused, as an empty state.path is. */
	fl.state = "";
	assert_int_equal(load_text(&c, text, &fl, &cause), -1);
	assert_string_equal(cause, "--state: must be a non-empty path");
	free(cause);
	config_cleanup(&c);
	expect_error("{\"state\": {\"path\": \"\"}}",
	    "state.path: must be a non-empty string");

	/* A bad environment value names the variable. */
	setenv("AUTOPILOT_LISTEN", "nohost", 1);
	assert_int_equal(load_text(&c, text, NULL, &cause), -1);
	assert_non_null(strstr(cause, "AUTOPILOT_LISTEN"));
	free(cause);
	config_cleanup(&c);
	setup(NULL);
}

static void
test_errors_name_key_path(void **state)
{
	expect_error("{\"listen\": {\"port\": 70000}}", "listen.port: must be an integer");
	expect_error("{\"listen\": {\"prot\": 80}}", "listen.prot: unknown key (known: host, port,");
	expect_error("{\"lisen\": {}}", "lisen: unknown section");
	expect_error("{\"state\": {\"synchronous\": \"off\"}}", "state.synchronous");
	expect_error("{\"state\": {\"retention_days\": -1}}",
	    "state.retention_days: must be an integer between 0 and 36500");
	expect_error("{\"state\": {\"retention_days\": 1.5}}",
	    "state.retention_days: must be an integer");
	expect_error("{\"state\": {\"retention\": 7}}",
	    "state.retention: unknown key (known: path, synchronous, retention_days)");
	expect_error("{\"log\": {\"level\": \"loud\"}}", "log.level");
	expect_error("{\"webhook\": {\"allow_unsigned\": \"yes\"}}",
	    "webhook.allow_unsigned: must be true or false");
	expect_error("{\"admin\": {\"protect_runs\": 1}}",
	    "admin.protect_runs: must be true or false");
	expect_error("{\"admin\": {\"protect\": true}}",
	    "admin.protect: unknown key (known: token_file, protect_runs)");
	expect_error("{\"scheduler\": {\"poll_max_msx\": 1}}", "scheduler.poll_max_msx");
	expect_error("{\"filters\": {\"defaults\": {\"byServiceKind\": {\"database\":"
	    " {\"schemaFilterPattern\": {\"excludes\": [\"ok\", \"(\"]}}}}}}",
	    "filters.defaults.byServiceKind.database.schemaFilterPattern.excludes[1]");
	/* The "airflow" section is checked by the Airflow client's parser. */
	expect_error("{\"airflow\": {\"bogus\": 1}}", "airflow.bogus: unknown key");
	expect_error("{\"airflow\": {\"api\": \"v3\"}}", "airflow.api: must be");
	expect_error("{\"airflow\": {\"max_retries\": \"x\"}}", "airflow.max_retries");
	expect_error("{\"airflow\": {\"url\": \"ftp://x\"}}", "airflow.url");
	expect_error("{\"airflow\": {\"connect_timeout_ms\": -5}}",
	    "airflow.connect_timeout_ms");
	expect_error("{\"listen\": [1]}", "listen: must be an object");
	expect_error("[]", "must be a JSON object");
	expect_error("{\"listen\": {\"port\": 1}, \"listen\": {}}", "line 1");
	expect_error("{\"listen\": ", "line 1");
}

/* The effective Airflow client settings: the file's, with the client's
 * defaults for the keys left out; the password never shown. */
static void
test_airflow_described(void **state)
{
	struct config c;
	char *cause = NULL;
	json_t *d, *a;

	char *ca = write_tmp("ca.pem", "-----BEGIN CERTIFICATE-----\n");
	char *text = ap_xprintf("{\"airflow\": {\"api\": \"v2\", \"max_retries\": 0,"
	    " \"connect_timeout_ms\": 1234, \"ca_file\": \"%s\"}}", ca);

	setenv("AUTOPILOT_AIRFLOW_PASSWORD", "pw-never-shown", 1);
	assert_int_equal(load_text(&c, text, NULL, &cause), 0);
	free(text);
	assert_string_equal(c.airflow.base_url, c.airflow_url);
	assert_string_equal(c.airflow.password, "pw-never-shown");
	d = config_describe(&c);
	a = json_object_get(d, "airflow");
	assert_string_equal(json_string_value(json_object_get(a, "api")), "v2");
	assert_int_equal(json_integer_value(json_object_get(a, "max_retries")), 0);
	assert_int_equal(json_integer_value(json_object_get(a, "connect_timeout_ms")), 1234);
	assert_int_equal(json_integer_value(json_object_get(a, "request_timeout_ms")), 30000);
	assert_int_equal(json_integer_value(json_object_get(a, "max_in_flight")), 64);
	assert_string_equal(json_string_value(json_object_get(a, "ca_file")), ca);
	assert_string_equal(json_string_value(json_object_get(a, "password")), "set");
	text = json_dumps(d, 0);
	assert_null(strstr(text, "pw-never-shown"));
	free(text);
	json_decref(d);
	config_cleanup(&c);
	unlink(ca);
	free(ca);
	setup(NULL);
}

/* airflow.ca_file must be readable when the configuration is loaded, not
 * at the first TLS connection: the message names the key and the OS error. */
static void
test_ca_file_checked(void **state)
{
	char *text;

	expect_error("{\"airflow\": {\"url\": \"https://af:8080\","
	    " \"ca_file\": \"/nonexistent/ca.pem\"}}",
	    "airflow.ca_file: /nonexistent/ca.pem: No such file or directory");
	text = ap_xprintf("{\"airflow\": {\"ca_file\": \"%s\"}}", tmpdir);
	expect_error(text, "airflow.ca_file: /tmp/test_config.");
	expect_error(text, "is a directory");
	free(text);
	if (geteuid() != 0) {
		char *ca = write_tmp("unreadable.pem", "x\n");

		assert_int_equal(chmod(ca, 0), 0);
		text = ap_xprintf("{\"airflow\": {\"ca_file\": \"%s\"}}", ca);
		expect_error(text, "Permission denied");
		free(text);
		unlink(ca);
		free(ca);
	}
}

/* openmetadata.url (and AUTOPILOT_OPENMETADATA_URL) is checked like
 * airflow.url: deployed agents would get hostPort "nope/api". */
static void
test_om_url_checked(void **state)
{
	struct config c;
	char *cause = NULL;

	expect_error("{\"openmetadata\": {\"url\": \"nope\"}}",
	    "openmetadata.url: must be an http:// or https:// URL");
	expect_error("{\"openmetadata\": {\"url\": \"ftp://om:8585\"}}",
	    "(got 'ftp://om:8585')");
	expect_error("{\"openmetadata\": {\"url\": \"http://\"}}", "openmetadata.url");
	expect_error("{\"openmetadata\": {\"url\": \"http://:8585\"}}",
	    "(got 'http://:8585')");
	expect_error("{\"openmetadata\": {\"url\": \"http://om:\"}}",
	    "(got 'http://om:')");
	expect_error("{\"openmetadata\": {\"url\": \"http://om:8585?x=1\"}}",
	    "openmetadata.url");
	assert_int_equal(load_text(&c, "{\"openmetadata\": {\"url\":"
	    " \"https://om.example.com/\"}}", NULL, &cause), 0);
	assert_string_equal(c.om_url, "https://om.example.com/");
	config_cleanup(&c);

	setenv("AUTOPILOT_OPENMETADATA_URL", "nope", 1);
	assert_int_equal(load_text(&c, "{\"openmetadata\": {\"url\": \"http://om:8585\"}}",
	    NULL, &cause), -1);
	if (strstr(cause, "AUTOPILOT_OPENMETADATA_URL: must be an http:// or https://"
	    " URL") == NULL || strstr(cause, "'nope'") == NULL)
		fail_msg("cause '%s'", cause);
	free(cause);
	config_cleanup(&c);
	config_init(&c);
	assert_int_equal(config_load(&c, NULL, NULL, &cause), -1);
	assert_non_null(strstr(cause, "AUTOPILOT_OPENMETADATA_URL"));
	free(cause);
	config_cleanup(&c);
	setenv("AUTOPILOT_OPENMETADATA_URL", "http://om:8585", 1);
	config_init(&c);
	assert_int_equal(config_load(&c, NULL, NULL, &cause), 0);
	assert_string_equal(c.om_url, "http://om:8585");
	config_cleanup(&c);
	setup(NULL);
}

/* A byConnector name with no built-in defaults loads (connectors are
 * open-ended) with a warning that suggests the built-in name. */
static void
test_connector_warnings(void **state)
{
	struct config c;
	char *cause = NULL;

	assert_int_equal(load_text(&c, "{\"filters\": {\"defaults\": {\"byConnector\":"
	    " {\"Postgress\": {\"tableFilterPattern\": {\"excludes\": [\"^x\"]}},"
	    " \"POSTGRES\": {}, \"BigQuery\": {}}}}}", NULL, &cause), 0);
	assert_int_equal(json_array_size(c.warnings), 1);
	assert_string_equal(json_string_value(json_array_get(c.warnings, 0)),
	    "filters.defaults.byConnector.Postgress: no built-in default filters for"
	    " connector 'Postgress'; did you mean 'Postgres'?");
	config_cleanup(&c);
	assert_int_equal(load_text(&c, "{\"filters\": {\"defaults\": {\"byConnector\":"
	    " {\"Postgres\": {}}}}}", NULL, &cause), 0);
	assert_int_equal(json_array_size(c.warnings), 0);
	config_cleanup(&c);
	/* Two names of one connector (matched case-insensitively): one's
	 * patterns would be dropped. */
	assert_int_equal(load_text(&c, "{\"filters\": {\"defaults\": {\"byConnector\":"
	    " {\"Postgres\": {\"tableFilterPattern\": {\"excludes\": [\"^a\"]}},"
	    " \"BigQuery\": {}, \"postgres\": {\"tableFilterPattern\":"
	    " {\"excludes\": [\"^b\"]}}}}}}", NULL, &cause), -1);
	assert_non_null(strstr(cause, "filters.defaults.byConnector: 'Postgres' and"
	    " 'postgres' name one connector"));
	free(cause);
	config_cleanup(&c);
}

/* config_read_file(): what `filter test -c` reads, '$' keys gone at every level. */
static void
test_read_file(void **state)
{
	char *path = write_tmp("r.json", "{\"$comment\": 1, \"filters\": {\"$comment\": \"x\","
	    " \"defaults\": {\"$c\": 1, \"byConnector\": {\"Postgres\": {\"$c\": 2}}}},"
	    " \"a\": [{\"$b\": 1, \"c\": 2}]}");
	char *cause = NULL;
	json_t *j;

	j = config_read_file(path, &cause);
	assert_non_null(j);
	assert_null(json_object_get(j, "$comment"));
	assert_null(json_object_get(json_object_get(j, "filters"), "$comment"));
	assert_int_equal(json_object_size(json_object_get(json_object_get(json_object_get(
	    json_object_get(j, "filters"), "defaults"), "byConnector"), "Postgres")), 0);
	assert_int_equal(json_object_size(json_array_get(json_object_get(j, "a"), 0)), 1);
	json_decref(j);
	free(path);
	path = write_tmp("r.json", "{\"a\": 1, \"a\": 2}");
	assert_null(config_read_file(path, &cause));
	assert_non_null(strstr(cause, "r.json: line 1"));
	free(cause);
	free(path);
	/* A byte order mark (a file saved by Notepad) is passed over; one
	 * elsewhere is not. */
	path = write_tmp("r.json", "\xef\xbb\xbf{\"a\": 1}");
	assert_non_null(j = config_read_file(path, &cause));
	assert_int_equal(json_integer_value(json_object_get(j, "a")), 1);
	json_decref(j);
	free(path);
	path = write_tmp("r.json", "{\"a\": \xef\xbb\xbf" "1}");
	assert_null(config_read_file(path, &cause));
	free(cause);
	free(path);
}

static void
test_secrets_not_from_file_values(void **state)
{
	expect_error("{\"webhook\": {\"secret\": \"s3cret\"}}",
	    "webhook.secret: secrets are not read from the configuration file");
	expect_error("{\"admin\": {\"token\": \"t\"}}", "AUTOPILOT_ADMIN_TOKEN");
	expect_error("{\"airflow\": {\"password\": \"p\"}}", "airflow.password_file");
	expect_error("{\"openmetadata\": {\"token\": \"p\"}}", "openmetadata.token_file");
}

static void
test_secret_files_and_env(void **state)
{
	struct config c;
	char *sec = write_tmp("secret", "hunter2\n");
	char *empty = write_tmp("empty", "\n");
	char *text, *cause = NULL, *desc;
	json_t *d;

	text = ap_xprintf("{\"webhook\": {\"secret_file\": \"%s\"}, \"admin\":"
	    " {\"token_file\": \"%s\", \"protect_runs\": true}, \"airflow\":"
	    " {\"password_file\": \"%s\"},"
	    " \"openmetadata\": {\"url\": \"http://om:8585\", \"token_file\": \"%s\"}}",
	    sec, sec, sec, sec);
	assert_int_equal(load_text(&c, text, NULL, &cause), 0);
	assert_string_equal(c.webhook_secret, "hunter2");
	assert_string_equal(c.admin_token, "hunter2");
	assert_string_equal(c.airflow_password, "hunter2");
	assert_string_equal(c.om_token, "hunter2");
	assert_string_equal(c.om_url, "http://om:8585");
	/* The description never shows a secret. */
	d = config_describe(&c);
	desc = json_dumps(d, 0);
	assert_null(strstr(desc, "hunter2"));
	assert_non_null(strstr(desc, "\"secret\": \"set\""));
	assert_true(c.protect_runs);
	assert_true(json_is_true(json_object_get(json_object_get(d, "admin"), "protect_runs")));
	free(desc);
	json_decref(d);
	config_cleanup(&c);
	free(text);

	/* The environment overrides a secret file. */
	setenv("AUTOPILOT_WEBHOOK_SECRET", "fromenv", 1);
	setenv("AUTOPILOT_AIRFLOW_PASSWORD", "pw", 1);
	text = ap_xprintf("{\"webhook\": {\"secret_file\": \"%s\"}}", sec);
	assert_int_equal(load_text(&c, text, NULL, &cause), 0);
	assert_string_equal(c.webhook_secret, "fromenv");
	assert_string_equal(c.airflow_password, "pw");
	config_cleanup(&c);
	free(text);
	setup(NULL);

	/* An empty value in the environment is no secret. */
	setenv("AUTOPILOT_WEBHOOK_SECRET", "", 1);
	assert_int_equal(load_text(&c, "{}", NULL, &cause), 0);
	assert_null(c.webhook_secret);
	config_cleanup(&c);
	setup(NULL);

	text = ap_xprintf("{\"webhook\": {\"secret_file\": \"%s\"}}", empty);
	expect_error(text, "webhook.secret_file");
	free(text);
	expect_error("{\"webhook\": {\"secret_file\": \"/nonexistent/x\"}}",
	    "webhook.secret_file: /nonexistent/x");
	expect_error("{\"webhook\": {\"secret_file\": \"\"}}",
	    "webhook.secret_file: must be the path of a file");
	unlink(sec);
	unlink(empty);
	free(sec);
	free(empty);
}

/* A variable overrides its *_file key: the file is not read at all, so one
 * that is not there (mounted only where the variable is not used) is no
 * error. The key must still be a path. */
static void
test_secret_env_skips_file(void **state)
{
	static const char *const vars[] = { "AUTOPILOT_WEBHOOK_SECRET",
		"AUTOPILOT_ADMIN_TOKEN", "AUTOPILOT_AIRFLOW_PASSWORD",
		"AUTOPILOT_OPENMETADATA_TOKEN" };
	static const char *const keys[] = { "webhook.secret_file",
		"admin.token_file", "airflow.password_file", "openmetadata.token_file" };
	const char *text = "{\"webhook\": {\"secret_file\": \"/nonexistent/w\"},"
	    " \"admin\": {\"token_file\": \"/nonexistent/a\"},"
	    " \"airflow\": {\"password_file\": \"/nonexistent/p\"},"
	    " \"openmetadata\": {\"token_file\": \"/nonexistent/o\"}}";
	struct config c;
	char *cause = NULL;
	size_t i;

	for (i = 0; i < AP_ARRAY_LEN(vars); i++)
		setenv(vars[i], "fromenv", 1);
	if (load_text(&c, text, NULL, &cause) < 0)
		fail_msg("%s", cause);
	assert_string_equal(c.webhook_secret, "fromenv");
	assert_string_equal(c.admin_token, "fromenv");
	assert_string_equal(c.airflow_password, "fromenv");
	assert_string_equal(c.airflow.password, "fromenv");
	assert_string_equal(c.om_token, "fromenv");
	config_cleanup(&c);

	/* Each variable covers its own key only. */
	for (i = 0; i < AP_ARRAY_LEN(vars); i++) {
		unsetenv(vars[i]);
		expect_error(text, keys[i]);
		setenv(vars[i], "fromenv", 1);
	}
	setup(NULL);
	setenv("AUTOPILOT_WEBHOOK_SECRET", "fromenv", 1);
	expect_error("{\"webhook\": {\"secret_file\": 1}}",
	    "webhook.secret_file: must be the path of a file");
	setup(NULL);
}

/* Every *_file secret is the file's first line without its line end; an
 * empty one is refused naming the key and the file. */
static void
test_secret_first_line(void **state)
{
	static const struct {
		const char *text, *secret;
	} ok[] = {
		{ "hunter2", "hunter2" },
		{ "hunter2\n", "hunter2" },
		{ "hunter2\r\n", "hunter2" },
		{ "hunter2\nsecond line\n", "hunter2" },
		{ "hunter2\r\nsecond\r\n", "hunter2" },
		{ " pass word \n", " pass word " },
	};
	static const struct {
		const char *text, *why;
	} bad[] = {
		{ "", "no secret: the file is empty" },
		{ "\n", "no secret: its first line is empty" },
		{ "\r\n", "no secret: its first line is empty" },
		{ "\nhunter2\n", "no secret: its first line is empty" },
	};
	struct config c;
	char *path, *text, *cause = NULL, *want;
	size_t i;

	for (i = 0; i < AP_ARRAY_LEN(ok); i++) {
		path = write_tmp("line", ok[i].text);
		text = ap_xprintf("{\"webhook\": {\"secret_file\": \"%s\"}, \"admin\":"
		    " {\"token_file\": \"%s\", \"protect_runs\": true}, \"airflow\":"
	    " {\"password_file\": \"%s\"},"
		    " \"openmetadata\": {\"token_file\": \"%s\"}}", path, path, path, path);
		if (load_text(&c, text, NULL, &cause) < 0)
			fail_msg("%s", cause);
		assert_string_equal(c.webhook_secret, ok[i].secret);
		assert_string_equal(c.admin_token, ok[i].secret);
		assert_string_equal(c.airflow_password, ok[i].secret);
		assert_string_equal(c.airflow.password, ok[i].secret);
		assert_string_equal(c.om_token, ok[i].secret);
		config_cleanup(&c);
		free(text);
		unlink(path);
		free(path);
	}
	for (i = 0; i < AP_ARRAY_LEN(bad); i++) {
		path = write_tmp("line", bad[i].text);
		text = ap_xprintf("{\"airflow\": {\"password_file\": \"%s\"}}", path);
		want = ap_xprintf("airflow.password_file: %s: %s", path, bad[i].why);
		expect_error(text, want);
		free(want);
		free(text);
		text = ap_xprintf("{\"admin\": {\"token_file\": \"%s\"}}", path);
		want = ap_xprintf("admin.token_file: %s: %s", path, bad[i].why);
		expect_error(text, want);
		free(want);
		free(text);
		unlink(path);
		free(path);
	}
}

static void
test_hostport(void **state)
{
	static const char *const bad[] = { "127.0.0.1: 0", "h: 80", "h:\t80", "h:80 ",
		"h:+80", "h:-0", "h:", "[::1]: 80", "h:0x50", "h:80\n",
		"h:18446744073709551696" };
	struct config_flags fl = { 0 };
	struct config c;
	char *host = NULL, *cause = NULL;
	unsigned port = 1;
	size_t i;

	assert_int_equal(config_parse_hostport("0.0.0.0:0", &host, &port, &cause), 0);
	assert_string_equal(host, "0.0.0.0");
	assert_int_equal(port, 0);
	free(host);
	assert_int_equal(config_parse_hostport("[::1]:8080", &host, &port, &cause), 0);
	assert_string_equal(host, "::1");
	assert_int_equal(port, 8080);
	free(host);
	assert_int_equal(config_parse_hostport("host:65536", &host, &port, &cause), -1);
	free(cause);
	assert_int_equal(config_parse_hostport(":80", &host, &port, &cause), -1);
	assert_string_equal(cause, "':80': empty host");
	free(cause);
	assert_int_equal(config_parse_hostport("[]:80", &host, &port, &cause), -1);
	assert_string_equal(cause, "'[]:80': empty host");
	free(cause);
	assert_int_equal(config_parse_hostport("host:-1", &host, &port, &cause), -1);
	free(cause);
	assert_int_equal(config_parse_hostport("host", &host, &port, &cause), -1);
	free(cause);
	/* The port is digits only: no white space, sign or anything after. */
	for (i = 0; i < AP_ARRAY_LEN(bad); i++) {
		cause = NULL;
		if (config_parse_hostport(bad[i], &host, &port, &cause) != -1)
			fail_msg("'%s' was taken as port %u", bad[i], port);
		assert_null(host);
		assert_non_null(strstr(cause, "port must be a number between 0 and 65535"));
		free(cause);
	}

	/* As AUTOPILOT_LISTEN and --listen give it. */
	setenv("AUTOPILOT_LISTEN", "h: 80", 1);
	config_init(&c);
	assert_int_equal(config_load(&c, NULL, NULL, &cause), -1);
	assert_non_null(strstr(cause, "AUTOPILOT_LISTEN: ' 80': port must be"));
	free(cause);
	config_cleanup(&c);
	setup(NULL);
	fl.listen = "127.0.0.1: 0";
	config_init(&c);
	assert_int_equal(config_load(&c, NULL, &fl, &cause), -1);
	assert_non_null(strstr(cause, "--listen: ' 0': port must be"));
	free(cause);
	config_cleanup(&c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_defaults, setup),
		cmocka_unit_test_setup(test_max_buffered, setup),
		cmocka_unit_test_setup(test_example_loads, setup),
		cmocka_unit_test_setup(test_env_warnings, setup),
		cmocka_unit_test_setup(test_precedence, setup),
		cmocka_unit_test_setup(test_errors_name_key_path, setup),
		cmocka_unit_test_setup(test_airflow_described, setup),
		cmocka_unit_test_setup(test_ca_file_checked, setup),
		cmocka_unit_test_setup(test_om_url_checked, setup),
		cmocka_unit_test_setup(test_connector_warnings, setup),
		cmocka_unit_test_setup(test_read_file, setup),
		cmocka_unit_test_setup(test_secrets_not_from_file_values, setup),
		cmocka_unit_test_setup(test_secret_files_and_env, setup),
		cmocka_unit_test_setup(test_secret_env_skips_file, setup),
		cmocka_unit_test_setup(test_secret_first_line, setup),
		cmocka_unit_test_setup(test_hostport, setup),
	};
	int rc;

	if (mkdtemp(tmpdir) == NULL)
		return 1;
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	rmdir(tmpdir);
	return rc;
}
