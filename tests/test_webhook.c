/* test_webhook.c — X-OM-Signature (OpenMetadata's Base64 HMAC-SHA256, not
 * hex) and the ChangeEvent parser's decisions and error messages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"
#include "webhook.h"

#define DEPTH 32

static void
test_signature_matches_openmetadata(void **state)
{
	const char *body = "{\"id\":\"x\"}";
	const char *detail;
	char *sig;

	/* Python: base64.b64encode(hmac.new(b"s3cret", body, sha256).digest()) */
	sig = webhook_signature("s3cret", body, strlen(body));
	assert_string_equal(sig, "sha256=nwvsz1FIQdIcVtuidgicI0XBLV0t6xm00iyHM3Hl6LY=");
	assert_int_equal(webhook_verify("s3cret", body, strlen(body), sig, &detail),
	    WEBHOOK_SIG_OK);
	assert_null(detail);
	free(sig);
}

/* One key checks many deliveries, each on its own. */
static void
test_key_reused(void **state)
{
	const char *body = "{\"id\":\"x\"}", *good =
	    "sha256=nwvsz1FIQdIcVtuidgicI0XBLV0t6xm00iyHM3Hl6LY=", *detail;
	struct webhook_key *k = webhook_key_create("s3cret");
	int i;

	for (i = 0; i < 3; i++) {
		assert_int_equal(webhook_key_verify(k, body, strlen(body), good, &detail),
		    WEBHOOK_SIG_OK);
		assert_int_equal(webhook_key_verify(k, body, strlen(body) - 1, good,
		    &detail), WEBHOOK_SIG_MISMATCH);
		assert_int_equal(webhook_key_verify(k, "", 0, good, &detail),
		    WEBHOOK_SIG_MISMATCH);
	}
	webhook_key_free(k);
	webhook_key_free(NULL);
}

static void
test_signature_rejections(void **state)
{
	static const struct {
		const char *sig, *says;
	} shapes[] = {
		{ "sha256=nwvsz1FIQdIcVtuidgicI0XBLV0t6xm00iyHM3Hl6LY",
		    "43 characters, not the 44 of the Base64 of an HMAC-SHA256 (is its"
		    " '=' padding missing?)" },
		{ "sha256= nwvsz1FIQdIcVtuidgicI0XBLV0t6xm00iyHM3Hl6LY=",
		    "white space after \"sha256=\"" },
		{ "sha256=nwvsz1FIQdIcVtuidgicI0XBLV0t6xm00iyHM3Hl6L_=", "URL-safe" },
		{ "sha256=nwvsz1FIQdIcVtuidgicI0XBLV0t6xm00iyHM3Hl6L*=",
		    "character 43, 0x2a" },
		{ "sha256=nwvsz1FIQdIcVtuidgicI0XBLV0t6xm00iyHM3Hl6LY=nwvs",
		    "48 characters, not the 44" },
	};
	const char *body = "{\"id\":\"x\"}";
	const char *detail;
	size_t i;

	assert_int_equal(webhook_verify("s3cret", body, strlen(body), NULL, &detail),
	    WEBHOOK_SIG_MISSING);
	assert_non_null(detail);
	assert_int_equal(webhook_verify("s3cret", body, strlen(body), "", &detail),
	    WEBHOOK_SIG_MISSING);
	assert_int_equal(webhook_verify("s3cret", body, strlen(body),
	    "nwvsz1FIQdIcVtuidgicI0XBLV0t6xm00iyHM3Hl6LY=", &detail),
	    WEBHOOK_SIG_MALFORMED);
	/* The right MAC in hex, as third-party receivers wrongly do. */
	assert_int_equal(webhook_verify("s3cret", body, strlen(body), "sha256="
	    "9f0beccf514841d21c56dba276089c2345c12d5d2deb19b4d22c873371e5e8b6",
	    &detail), WEBHOOK_SIG_HEX);
	assert_non_null(strstr(detail, "Base64"));
	/* Wrong secret, altered body, a character changed. */
	assert_int_equal(webhook_verify("other", body, strlen(body),
	    "sha256=nwvsz1FIQdIcVtuidgicI0XBLV0t6xm00iyHM3Hl6LY=", &detail),
	    WEBHOOK_SIG_MISMATCH);
	assert_int_equal(webhook_verify("s3cret", body, strlen(body) - 1,
	    "sha256=nwvsz1FIQdIcVtuidgicI0XBLV0t6xm00iyHM3Hl6LY=", &detail),
	    WEBHOOK_SIG_MISMATCH);
	assert_int_equal(webhook_verify("s3cret", body, strlen(body),
	    "sha256=nwvsz1FIQdIcVtuidgicI0XBLV0t6xm00iyHM3Hl6LZ=", &detail),
	    WEBHOOK_SIG_MISMATCH);
	assert_non_null(strstr(detail, "wrong secret"));
	/* A sender's formatting mistakes are named, not taken for a wrong
	 * secret, and the expected value is never shown. */
	for (i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
		assert_int_equal(webhook_verify("s3cret", body, strlen(body),
		    shapes[i].sig, &detail), WEBHOOK_SIG_MALFORMED);
		if (strstr(detail, shapes[i].says) == NULL)
			fail_msg("%s: '%s' not in '%s'", shapes[i].sig, shapes[i].says,
			    detail);
		assert_null(strstr(detail, "nwvsz1"));
	}
}

/* The reference example event, signed as OpenMetadata would. */
static void
test_reference_example(void **state)
{
	const char *ref = getenv("AP_REFERENCE");
	struct webhook_batch b;
	char *path, *body, *cause = NULL;
	const char *detail;
	size_t len;

	assert_non_null(ref);
	path = ap_xprintf("%s/openmetadata/examples/"
	    "databaseService-entityCreated.json", ref);
	body = ap_read_file(path, 1 << 20, &len, &cause);
	if (body == NULL)
		fail_msg("%s", cause);
	assert_int_equal(webhook_verify("om-webhook-secret", body, len,
	    "sha256=2WWzh60jt53qsxrKjVfwxzD48+SCn4VmJB7SxloRgBs=", &detail),
	    WEBHOOK_SIG_OK);
	assert_int_equal(webhook_parse(body, len, DEPTH, &b, &cause), WEBHOOK_PARSE_OK);
	assert_int_equal(b.n, 1);
	assert_false(b.batched);
	assert_int_equal(b.events[0].action, WEBHOOK_ACT);
	assert_string_equal(b.events[0].id, "1f0c6b3e-6f0a-4c34-9a54-2b0d6d1c2e11");
	assert_string_equal(b.events[0].entity_type, "databaseService");
	assert_string_equal(b.events[0].kind, "database");
	assert_string_equal(b.events[0].fqn, "sales_postgres");
	assert_string_equal(json_string_value(json_object_get(b.events[0].entity,
	    "serviceType")), "Postgres");
	webhook_batch_cleanup(&b);
	free(body);
	free(path);
}

/* An event with entity (JSON text, or NULL), whose entityId is the
 * entity's id when it has one. */
static const char *
event(const char *etype, const char *entity_type, const char *entity)
{
	static char buf[4096];
	json_t *e = entity != NULL ? json_loads(entity, JSON_DECODE_ANY, NULL) : NULL;
	const char *id;

	if (json_is_string(e)) {	/* an entity given as a JSON string */
		json_t *inner = json_loads(json_string_value(e), 0, NULL);

		json_decref(e);
		e = inner;
	}
	id = json_string_value(json_object_get(e, "id"));

	snprintf(buf, sizeof buf, "{\"id\": \"e1\", \"eventType\": \"%s\","
	    " \"entityType\": \"%s\", \"entityId\": \"%s\","
	    " \"timestamp\": 1764000000000%s%s}", etype, entity_type,
	    id != NULL ? id : "7b9d1c1e-2a7e-4a0e-8d6b-0c3f8f9a5b21",
	    entity != NULL ? ", \"entity\": " : "", entity != NULL ? entity : "");
	json_decref(e);
	return buf;
}

static enum webhook_parse_result
parse(const char *body, struct webhook_batch *b, char **cause)
{
	*cause = NULL;
	return webhook_parse(body, strlen(body), DEPTH, b, cause);
}

static void
expect_ignored(const char *body, const char *reason_part)
{
	struct webhook_batch b;
	char *cause;

	assert_int_equal(parse(body, &b, &cause), WEBHOOK_PARSE_OK);
	assert_int_equal(b.n, 1);
	assert_int_equal(b.events[0].action, WEBHOOK_IGNORE);
	if (strstr(b.events[0].reason, reason_part) == NULL)
		fail_msg("reason '%s' lacks '%s'", b.events[0].reason, reason_part);
	webhook_batch_cleanup(&b);
}

static void
expect_invalid(const char *body, enum webhook_parse_result want, const char *cause_part)
{
	struct webhook_batch b;
	char *cause;

	assert_int_equal(parse(body, &b, &cause), want);
	assert_int_equal(b.n, 0);
	assert_non_null(cause);
	if (strstr(cause, cause_part) == NULL)
		fail_msg("cause '%s' lacks '%s'", cause, cause_part);
	free(cause);
}

static const char pg_entity[] = "{\"id\": \"00000000-0000-0000-0000-0000000000a1\","
    " \"name\": \"pg\", \"fullyQualifiedName\": \"pg\","
    " \"serviceType\": \"Postgres\", \"connection\": {\"config\": {\"type\": \"Postgres\"}}}";
/* A service whose connector has no built-in defaults: any kind's. */
static const char any_entity[] = "{\"id\": \"00000000-0000-0000-0000-0000000000a1\","
    " \"name\": \"x\", \"fullyQualifiedName\": \"x\","
    " \"serviceType\": \"CustomThing\", \"connection\": {\"config\": {}}}";

static void
test_decisions(void **state)
{
	struct webhook_batch b;
	char *cause, *body;

	expect_ignored(event("entityUpdated", "databaseService", pg_entity),
	    "eventType entityUpdated");
	expect_ignored(event("entityCreated", "table", "{}"), "entityType table");
	expect_ignored(event("entityCreated", "securityService", pg_entity),
	    "securityService");
	expect_ignored(event("entityDeleted", "databaseService", NULL), "entityDeleted");

	/* Every service kind of PRODUCT.md is acted on. */
	static const char *const kinds[][2] = { { "databaseService", "database" },
		{ "dashboardService", "dashboard" }, { "messagingService", "messaging" },
		{ "pipelineService", "pipeline" }, { "mlmodelService", "mlmodel" },
		{ "metadataService", "metadata" }, { "storageService", "storage" },
		{ "searchService", "search" }, { "apiService", "api" } };
	for (size_t i = 0; i < AP_ARRAY_LEN(kinds); i++) {
		assert_int_equal(parse(event("entityCreated", kinds[i][0], any_entity), &b,
		    &cause), WEBHOOK_PARSE_OK);
		assert_int_equal(b.events[0].action, WEBHOOK_ACT);
		assert_string_equal(b.events[0].kind, kinds[i][1]);
		webhook_batch_cleanup(&b);
	}

	/* The entity as a JSON-encoded string. */
	json_t *s = json_string(pg_entity);
	char *enc = json_dumps(s, JSON_ENCODE_ANY);
	assert_int_equal(parse(event("entityCreated", "databaseService", enc), &b, &cause),
	    WEBHOOK_PARSE_OK);
	assert_int_equal(b.events[0].action, WEBHOOK_ACT);
	assert_string_equal(b.events[0].fqn, "pg");
	assert_true(json_is_object(b.events[0].entity));
	webhook_batch_cleanup(&b);
	free(enc);
	json_decref(s);

	/* fullyQualifiedName may come from the event when the entity lacks it. */
	body = ap_xprintf("{\"id\": \"e2\", \"eventType\": \"entityCreated\","
	    " \"entityType\": \"dashboardService\", \"entityId\": \"l1\", \"timestamp\": 1,"
	    " \"entityFullyQualifiedName\": \"looker\", \"entity\": {\"id\": \"l1\", \"name\": \"looker\","
	    " \"serviceType\": \"Looker\"}}");
	assert_int_equal(parse(body, &b, &cause), WEBHOOK_PARSE_OK);
	assert_string_equal(b.events[0].fqn, "looker");
	webhook_batch_cleanup(&b);
	free(body);
}

/* An event about one service carrying another's entity is refused. */
static void
test_event_and_entity_agree(void **state)
{
	struct webhook_batch b;
	char *cause;

	(void)state;
	expect_invalid("{\"id\": \"e2\", \"eventType\": \"entityCreated\","
	    " \"entityType\": \"dashboardService\", \"entityId\": \"l1\", \"timestamp\": 1,"
	    " \"entityFullyQualifiedName\": \"a1\", \"entity\": {\"id\": \"l1\","
	    " \"fullyQualifiedName\": \"b\", \"serviceType\": \"Looker\"}}",
	    WEBHOOK_PARSE_INVALID, "entityFullyQualifiedName: not the entity's"
	    " fullyQualifiedName");
	expect_invalid("{\"id\": \"e2\", \"eventType\": \"entityCreated\","
	    " \"entityType\": \"dashboardService\", \"entityId\": \"x\", \"timestamp\": 1,"
	    " \"entity\": {\"id\": \"l1\", \"fullyQualifiedName\": \"b\","
	    " \"serviceType\": \"Looker\"}}", WEBHOOK_PARSE_INVALID,
	    "entityId: not the entity's id");
	/* An entity that says it is of another type: its href, else its
	 * connector's defaults, else its own filter keys. */
	expect_invalid("{\"id\": \"e3\", \"eventType\": \"entityCreated\","
	    " \"entityType\": \"messagingService\", \"entityId\": \"p1\", \"timestamp\": 1,"
	    " \"entity\": {\"id\": \"p1\", \"fullyQualifiedName\": \"b\", \"serviceType\":"
	    " \"CustomThing\", \"href\": \"http://om:8585/api/v1/services/databaseServices/p1\"}}",
	    WEBHOOK_PARSE_INVALID, "entityType: messagingService, but the entity is a"
	    " databaseService (its href)");
	expect_invalid("{\"id\": \"e3\", \"eventType\": \"entityCreated\","
	    " \"entityType\": \"messagingService\", \"entityId\": \"p1\", \"timestamp\": 1,"
	    " \"entity\": {\"id\": \"p1\", \"fullyQualifiedName\": \"b\", \"serviceType\":"
	    " \"Postgres\"}}", WEBHOOK_PARSE_INVALID, "entityType: messagingService, but"
	    " the entity's connector Postgres is a database connector");
	/* A metadata service shares the database filter keys, not the
	 * connectors. */
	expect_invalid("{\"id\": \"e3\", \"eventType\": \"entityCreated\","
	    " \"entityType\": \"metadataService\", \"entityId\": \"p1\", \"timestamp\": 1,"
	    " \"entity\": {\"id\": \"p1\", \"fullyQualifiedName\": \"b\", \"serviceType\":"
	    " \"Postgres\"}}", WEBHOOK_PARSE_INVALID, "entityType: metadataService, but"
	    " the entity's connector Postgres is a database connector");
	assert_int_equal(parse("{\"id\": \"e3\", \"eventType\": \"entityCreated\","
	    " \"entityType\": \"metadataService\", \"entityId\": \"a1\", \"timestamp\": 1,"
	    " \"entity\": {\"id\": \"a1\", \"fullyQualifiedName\": \"b\", \"serviceType\":"
	    " \"Atlas\"}}", &b, &cause), WEBHOOK_PARSE_OK);
	webhook_batch_cleanup(&b);
	expect_invalid("{\"id\": \"e3\", \"eventType\": \"entityCreated\","
	    " \"entityType\": \"dashboardService\", \"entityId\": \"p1\", \"timestamp\": 1,"
	    " \"entity\": {\"id\": \"p1\", \"fullyQualifiedName\": \"b\", \"serviceType\":"
	    " \"CustomThing\", \"connection\": {\"config\": {\"topicFilterPattern\":"
	    " {}}}}}", WEBHOOK_PARSE_INVALID, "entityType: dashboardService, but the"
	    " entity's connection.config has topicFilterPattern, a filter of messaging"
	    " services");
	/* A proxy's path before OpenMetadata's says nothing: the last
	 * "/services/" is OpenMetadata's. */
	assert_int_equal(parse("{\"id\": \"e3\", \"eventType\": \"entityCreated\","
	    " \"entityType\": \"databaseService\", \"entityId\": \"p1\", \"timestamp\": 1,"
	    " \"entity\": {\"id\": \"p1\", \"fullyQualifiedName\": \"b\", \"serviceType\":"
	    " \"Postgres\", \"href\": \"https://gw/services/tools/api/v1/services/"
	    "databaseServices/p1\"}}", &b, &cause), WEBHOOK_PARSE_OK);
	webhook_batch_cleanup(&b);
	/* Nor does a collection that is no service type autopilot knows. */
	assert_int_equal(parse("{\"id\": \"e3\", \"eventType\": \"entityCreated\","
	    " \"entityType\": \"databaseService\", \"entityId\": \"p1\", \"timestamp\": 1,"
	    " \"entity\": {\"id\": \"p1\", \"fullyQualifiedName\": \"b\", \"serviceType\":"
	    " \"Postgres\", \"href\": \"https://om/api/v1/services/widgetServices/p1\"}}",
	    &b, &cause), WEBHOOK_PARSE_OK);
	webhook_batch_cleanup(&b);
	/* Its own href agrees: taken, whatever else it says. */
	assert_int_equal(parse("{\"id\": \"e3\", \"eventType\": \"entityCreated\","
	    " \"entityType\": \"databaseService\", \"entityId\": \"p1\", \"timestamp\": 1,"
	    " \"entity\": {\"id\": \"p1\", \"fullyQualifiedName\": \"b\", \"serviceType\":"
	    " \"Postgres\", \"href\": \"http://om/api/v1/services/databaseServices/p1\"}}",
	    &b, &cause), WEBHOOK_PARSE_OK);
	webhook_batch_cleanup(&b);
	/* The same UUID in either case is the same id. */
	assert_int_equal(parse("{\"id\": \"e2\", \"eventType\": \"entityCreated\","
	    " \"entityType\": \"dashboardService\", \"entityId\": \"AB-12\","
	    " \"timestamp\": 1, \"entity\": {\"id\": \"ab-12\", \"fullyQualifiedName\":"
	    " \"b\", \"serviceType\": \"Looker\"}}", &b, &cause), WEBHOOK_PARSE_OK);
	webhook_batch_cleanup(&b);
}

static void
test_batches(void **state)
{
	struct webhook_batch b;
	char *cause, *body;
	char one[4096];

	snprintf(one, sizeof one, "%s", event("entityCreated", "databaseService", pg_entity));
	body = ap_xprintf("{\"data\": [%s, %s]}", one,
	    event("entityUpdated", "databaseService", pg_entity));
	assert_int_equal(parse(body, &b, &cause), WEBHOOK_PARSE_OK);
	assert_true(b.batched);
	assert_int_equal(b.n, 2);
	assert_int_equal(b.events[0].action, WEBHOOK_ACT);
	assert_int_equal(b.events[1].action, WEBHOOK_IGNORE);
	webhook_batch_cleanup(&b);
	free(body);

	/* Up to WEBHOOK_MAX_EVENTS events a delivery; one more is refused,
	 * saying how many came. */
	{
		struct ap_buf big;
		int i;

		ap_buf_init(&big);
		ap_buf_printf(&big, "{\"data\": [");
		for (i = 0; i < WEBHOOK_MAX_EVENTS; i++)
			ap_buf_printf(&big, "%s%s", i > 0 ? ", " : "", one);
		ap_buf_printf(&big, "]}");
		assert_int_equal(parse(big.data, &b, &cause), WEBHOOK_PARSE_OK);
		assert_int_equal(b.n, WEBHOOK_MAX_EVENTS);
		webhook_batch_cleanup(&b);
		big.len -= 2;
		ap_buf_printf(&big, ", %s]}", one);
		assert_int_equal(parse(big.data, &b, &cause), WEBHOOK_PARSE_INVALID);
		assert_string_equal(cause, "data: 1001 events in one delivery, more"
		    " than the 1000 accepted (send smaller batches)");
		free(cause);
		ap_buf_cleanup(&big);
	}

	/* One event that cannot be read does not keep the others out. */
	body = ap_xprintf("{\"data\": [{\"id\": \"x\"}, %s, 7, {\"id\": \"\","
	    " \"eventType\": \"entityCreated\"}]}", one);
	assert_int_equal(parse(body, &b, &cause), WEBHOOK_PARSE_OK);
	assert_null(cause);
	assert_int_equal(b.n, 4);
	assert_int_equal(b.events[0].action, WEBHOOK_INVALID);
	assert_string_equal(b.events[0].id, "x");
	assert_string_equal(b.events[0].reason, "data[0].eventType: missing");
	assert_int_equal(b.events[1].action, WEBHOOK_ACT);
	assert_string_equal(b.events[1].fqn, "pg");
	assert_int_equal(b.events[2].action, WEBHOOK_INVALID);
	assert_null(b.events[2].id);
	assert_string_equal(b.events[2].reason,
	    "data[2]: a ChangeEvent must be a JSON object");
	assert_int_equal(b.events[3].action, WEBHOOK_INVALID);
	assert_null(b.events[3].id);
	assert_non_null(strstr(b.events[3].reason, "data[3].id"));
	webhook_batch_cleanup(&b);
	free(body);

	/* A batch none of whose events can be read still says, for each, what
	 * is wrong (the server refuses the delivery with those results) ... */
	cause = NULL;
	assert_int_equal(webhook_parse("{\"data\": [1, {\"id\": \"y\"}]}", 26, 64,
	    &b, &cause), WEBHOOK_PARSE_OK);
	assert_null(cause);
	assert_true(b.batched);
	assert_int_equal(b.n, 2);
	assert_int_equal(b.events[0].action, WEBHOOK_INVALID);
	assert_string_equal(b.events[0].reason,
	    "data[0]: a ChangeEvent must be a JSON object");
	assert_int_equal(b.events[1].action, WEBHOOK_INVALID);
	assert_string_equal(b.events[1].id, "y");
	assert_non_null(strstr(b.events[1].reason, "data[1]."));
	webhook_batch_cleanup(&b);
	/* ... but a batch that is no list of events is refused whole. */
	expect_invalid("{\"data\": []}", WEBHOOK_PARSE_INVALID, "data: must be a non-empty");
}

static void
test_invalid(void **state)
{
	char deep[200];
	char *body;
	size_t i;

	expect_invalid("not json", WEBHOOK_PARSE_BAD_JSON, "not valid JSON");
	expect_invalid("{\"id\": \"e1\", \"eventType\": \"entityCr", WEBHOOK_PARSE_BAD_JSON,
	    "not valid JSON");
	expect_invalid("", WEBHOOK_PARSE_BAD_JSON, "not valid JSON");
	expect_invalid("[]", WEBHOOK_PARSE_INVALID, "must be a JSON object");
	expect_invalid("{\"eventType\": \"entityCreated\"}", WEBHOOK_PARSE_INVALID,
	    "id: missing");
	expect_invalid("{\"id\": 5, \"eventType\": \"entityCreated\"}",
	    WEBHOOK_PARSE_INVALID, "id: must be a non-empty string");
	expect_invalid("{\"id\": \"e\", \"eventType\": \"entityCreated\", \"entityType\":"
	    " \"databaseService\"}", WEBHOOK_PARSE_INVALID, "timestamp: missing");
	expect_invalid(event("entityCreated", "databaseService", NULL),
	    WEBHOOK_PARSE_INVALID, "entity: missing");
	expect_invalid(event("entityCreated", "databaseService", "[1]"),
	    WEBHOOK_PARSE_INVALID, "entity: must be an object or a JSON string");
	expect_invalid(event("entityCreated", "databaseService", "\"{not json\""),
	    WEBHOOK_PARSE_INVALID, "entity: not valid JSON");
	expect_invalid(event("entityCreated", "databaseService", "{\"name\": \"pg\","
	    " \"serviceType\": \"Postgres\"}"), WEBHOOK_PARSE_INVALID,
	    "entity.fullyQualifiedName: missing");
	expect_invalid(event("entityCreated", "databaseService",
	    "{\"fullyQualifiedName\": \"pg\"}"), WEBHOOK_PARSE_INVALID,
	    "entity.serviceType: missing");
	expect_invalid(event("entityCreated", "databaseService",
	    "{\"id\": \"s1\", \"fullyQualifiedName\": \"pg\", \"serviceType\": \"Postgres\","
	    " \"connection\": 3}"), WEBHOOK_PARSE_INVALID, "entity.connection");
	/* What the agents name the service by: refused now, not planned
	 * into a failed run later. */
	expect_invalid(event("entityCreated", "databaseService",
	    "{\"fullyQualifiedName\": \"pg\", \"serviceType\": \"Postgres\"}"),
	    WEBHOOK_PARSE_INVALID, "entity.id: missing");
	expect_invalid(event("entityCreated", "databaseService",
	    "{\"id\": {\"a\": 1}, \"fullyQualifiedName\": \"pg\", \"serviceType\":"
	    " \"Postgres\"}"), WEBHOOK_PARSE_INVALID, "entity.id: must be a non-empty string");
	expect_invalid("{\"id\": \"e3\", \"eventType\": \"entityCreated\","
	    " \"entityType\": \"dashboardService\", \"timestamp\": 1, \"entityId\": \"l1\","
	    " \"entityFullyQualifiedName\": \"looker\", \"entity\": {\"id\": \"l1\","
	    " \"serviceType\": \"Looker\"}}", WEBHOOK_PARSE_INVALID, "entity.name: missing");

	/* Read by the schema's names and types, each named when wrong. */
	expect_invalid("{\"id\": \"e\", \"eventType\": \"entityDeleted\", \"entityType\":"
	    " \"databaseService\", \"timestamp\": 1}", WEBHOOK_PARSE_INVALID,
	    "entityId: missing");
	expect_invalid("{\"id\": \"e4\", \"eventType\": \"entityCreated\","
	    " \"entityType\": \"databaseService\", \"timestamp\": 1, \"entityId\": \"x\","
	    " \"entityFullyQualifiedName\": 5, \"entity\": {\"id\": \"s1\","
	    " \"serviceType\": \"Postgres\"}}", WEBHOOK_PARSE_INVALID,
	    "entityFullyQualifiedName: must be a string");
	expect_invalid(event("entityCreated", "databaseService", "{\"id\": \"s1\","
	    " \"name\": 5, \"fullyQualifiedName\": \"pg\", \"serviceType\": \"Postgres\"}"),
	    WEBHOOK_PARSE_INVALID, "entity.name: must be a non-empty string");
	/* \u0000 is JSON, but no string autopilot reads may hold it. */
	expect_invalid("{\"id\": \"a\\u0000b\", \"eventType\": \"entityCreated\"}",
	    WEBHOOK_PARSE_INVALID, "body: a string or key holds \\u0000 (a NUL"
	    " character), which is not accepted (line 1, column 17)");
	expect_invalid("{\"i\\u0000d\": \"a\"}", WEBHOOK_PARSE_INVALID,
	    "body: a string or key holds \\u0000");
	expect_invalid(event("entityCreated", "databaseService", "\"{\\\"id\\\":"
	    " \\\"s\\\\u0000\\\"}\""), WEBHOOK_PARSE_INVALID,
	    "entity: holds \\u0000 (a NUL character)");

	/* A key given twice is refused, not read as its last value: in the
	 * event, in an entity object and in an entity given as a string. */
	expect_invalid("{\"id\": \"e1\", \"eventType\": \"entityCreated\","
	    " \"entityType\": \"databaseService\", \"timestamp\": 1, \"entity\": {},"
	    " \"eventType\": \"entityDeleted\"}", WEBHOOK_PARSE_BAD_JSON,
	    "duplicate object key");
	expect_invalid(event("entityCreated", "databaseService", "{\"fullyQualifiedName\":"
	    " \"pg\", \"serviceType\": \"Postgres\", \"fullyQualifiedName\": \"other\"}"),
	    WEBHOOK_PARSE_BAD_JSON, "duplicate object key");
	expect_invalid(event("entityCreated", "databaseService", "\"{\\\"fullyQualifiedName"
	    "\\\": \\\"pg\\\", \\\"serviceType\\\": \\\"Postgres\\\","
	    " \\\"serviceType\\\": \\\"Mysql\\\"}\""), WEBHOOK_PARSE_INVALID,
	    "entity: not valid JSON: duplicate object key");

	/* Nesting: in the body, and inside an entity given as a string. */
	for (i = 0; i < 100; i++)
		deep[i] = '[';
	deep[100] = '\0';
	expect_invalid(deep, WEBHOOK_PARSE_TOO_DEEP,
	    "deeper than 32 levels (line 1, column 33)");
	body = ap_xprintf("{\n \"a\": %s", deep);
	expect_invalid(body, WEBHOOK_PARSE_TOO_DEEP, "(line 2, column 38)");
	free(body);
	body = ap_xprintf("\"{\\\"a\\\": %s\"", deep);
	expect_invalid(event("entityCreated", "databaseService", body),
	    WEBHOOK_PARSE_TOO_DEEP, "entity: nested deeper than 32 levels (position 38)");
	free(body);
}

/* The id of an event refused, for the log: printable, cut, or none. */
static void
test_event_id(void **state)
{
	static const char *const cases[][2] = {
		{ "{\"id\": \"e-1\", \"eventType\": 3}", "e-1" },
		{ "{\"id\": \"a\\u001bb\\u00e9\"}", "a?b??" },
		{ "{\"id\": 7}", NULL }, { "{\"id\": \"\"}", NULL },
		{ "{\"data\": [{\"id\": \"x\"}]}", NULL }, { "[\"id\"]", NULL },
		{ "{\"id\": \"x\"", NULL }, { "", NULL } };
	char *id, *longer = ap_xprintf("{\"id\": \"%0100d\"}", 0);
	size_t i;

	(void)state;
	for (i = 0; i < AP_ARRAY_LEN(cases); i++) {
		id = webhook_event_id(cases[i][0], strlen(cases[i][0]));
		if (cases[i][1] == NULL)
			assert_null(id);
		else
			assert_string_equal(id, cases[i][1]);
		free(id);
	}
	id = webhook_event_id(longer, strlen(longer));
	assert_int_equal(strlen(id), 67);
	assert_string_equal(id + 64, "...");
	free(id);
	free(longer);
}

static void
test_depth(void **state)
{
	assert_int_equal(webhook_json_depth("{}", 2, 10, NULL), 1);
	assert_int_equal(webhook_json_depth("{\"a\": [[1], {\"b\": 2}]}", 22, 10, NULL), 3);
	/* Brackets inside strings, escaped quotes included, do not count. */
	assert_int_equal(webhook_json_depth("{\"a\": \"[[[\\\"[[[\"}", 17, 10, NULL), 1);
	assert_int_equal(webhook_json_depth("[[[[[[", 6, 3, NULL), 4);
	assert_int_equal(webhook_json_depth("", 0, 3, NULL), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_signature_matches_openmetadata),
		cmocka_unit_test(test_key_reused),
		cmocka_unit_test(test_signature_rejections),
		cmocka_unit_test(test_reference_example),
		cmocka_unit_test(test_decisions),
		cmocka_unit_test(test_event_and_entity_agree),
		cmocka_unit_test(test_batches),
		cmocka_unit_test(test_invalid),
		cmocka_unit_test(test_event_id),
		cmocka_unit_test(test_depth),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
