/*
 * webhook.h — OpenMetadata webhook deliveries: the X-OM-Signature check and
 * the ChangeEvent parser that decides, per event, whether autopilot acts.
 *
 * A delivery is one ChangeEvent or {"data": [ChangeEvent, ...]} (releases
 * before 1.6 batch them). autopilot acts on eventType "entityCreated" of a
 * service kind it knows (databaseService, dashboardService, ...; not
 * securityService); everything else is ignored with a reason, which the
 * server answers with 200 so OpenMetadata does not count a failed delivery.
 * The entity may be an object or a JSON-encoded string.
 *
 * Pure: jansson and OpenSSL's HMAC only, no I/O, never prints; so the
 * parser can be unit-tested and fuzzed on its own.
 */
#ifndef AP_WEBHOOK_H
#define AP_WEBHOOK_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

/* Most events in one {"data": [...]} delivery (each is stored and answered
 * in the loop turn that reads it). */
#define WEBHOOK_MAX_EVENTS 1000
/* The longest service fullyQualifiedName taken (characters, as bytes). */
#define WEBHOOK_MAX_FQN 1024

/*
 * The signature OpenMetadata sends for body: "sha256=" followed by the
 * standard Base64 (with padding) of HMAC-SHA256(secret, body). New string.
 */
char *webhook_signature(const char *secret, const void *body, size_t len);

enum webhook_sig {
	WEBHOOK_SIG_OK,
	WEBHOOK_SIG_MISSING,	/* no header */
	WEBHOOK_SIG_MALFORMED,	/* not "sha256=..." */
	WEBHOOK_SIG_HEX,	/* hex digest: a receiver's mistake, not OpenMetadata's format */
	WEBHOOK_SIG_MISMATCH,
	WEBHOOK_SIG_MAX
};

/*
 * Checks the X-OM-Signature header value (NULL if absent) against body,
 * comparing in constant time. Never puts the secret or the expected value
 * in *detail (a string describing the failure, valid until the next
 * check on this thread, or NULL on success).
 */
enum webhook_sig webhook_verify(const char *secret, const void *body, size_t len,
    const char *header, const char **detail);

/* The same with the secret's HMAC key set up once (webhook_key_create), so
 * a check costs the hashing only. A key serves one thread at a time. */
struct webhook_key;
struct webhook_key *webhook_key_create(const char *secret);
void webhook_key_free(struct webhook_key *k);	/* accepts NULL */
enum webhook_sig webhook_key_verify(struct webhook_key *k, const void *body, size_t len,
    const char *header, const char **detail);

/* Deepest nesting of arrays and objects in a JSON text (strings skipped);
 * stops counting once above limit, with *at (when not NULL) the offset of
 * the bracket that went above it. Never fails: malformed text is the
 * parser's business. */
unsigned webhook_json_depth(const char *text, size_t len, unsigned limit, size_t *at);

enum webhook_action {
	WEBHOOK_ACT,		/* start (or join) a run for this service */
	WEBHOOK_IGNORE,		/* 200 {"ignored": reason} */
	WEBHOOK_INVALID,	/* an event of a batch that cannot be read: its
				 * results entry says why, the others go on */
	WEBHOOK_ACTION_MAX
};

struct webhook_event {
	enum webhook_action action;
	char *id;		/* the event id (always set, but for INVALID
				 * when it could not be read) */
	char *event_type;
	char *entity_type;	/* OpenMetadata's entityType, e.g. "databaseService" */
	const char *kind;	/* static: "database", ... when ACT */
	char *fqn;		/* the service's fully qualified name, when ACT */
	json_t *entity;		/* owned: the service entity, when ACT */
	char *reason;		/* why ignored, when IGNORE; what is wrong
				 * ("data[2].timestamp: missing"), when INVALID */
};

struct webhook_batch {
	size_t n;
	struct webhook_event *events;
	bool batched;		/* the delivery was {"data": [...]} */
};

enum webhook_parse_result {
	WEBHOOK_PARSE_OK,
	WEBHOOK_PARSE_BAD_JSON,		/* 400: not JSON, or truncated */
	WEBHOOK_PARSE_TOO_DEEP,		/* 400: nesting above max_depth */
	WEBHOOK_PARSE_INVALID,		/* 400: a field is missing or of the wrong type */
	WEBHOOK_PARSE_RESULT_MAX
};

/*
 * Parses a delivery (body of len bytes, not necessarily NUL-terminated) and
 * decides for each event. max_depth bounds nesting, checked before parsing
 * and again on an entity that arrives as a string. In a batch, an event
 * that cannot be read is WEBHOOK_INVALID and the others are read as usual,
 * so that one bad event does not keep the rest of its delivery out for
 * good (a delivery refused is delivered again as it was). On anything but
 * WEBHOOK_PARSE_OK (a body that is not JSON or too deep, a single event
 * that cannot be read, a batch that is not a non-empty list), *cause is a new
 * message naming the field ("data[2].entity.fullyQualifiedName: missing")
 * and out is empty. Free out with webhook_batch_cleanup.
 */
enum webhook_parse_result webhook_parse(const char *body, size_t len,
    unsigned max_depth, struct webhook_batch *out, char **cause);
void webhook_batch_cleanup(struct webhook_batch *b);
/*
 * The "id" of the single event in body (len bytes), as it may be logged (a
 * new string, bytes outside printable ASCII as '?', cut after 64), or NULL
 * when there is none to read: for the log line of a delivery refused.
 */
char *webhook_event_id(const char *body, size_t len);

/*
 * The service entity ev carries (a new reference in *out): its "entity", an
 * object or a JSON string of one, nested at most max_depth levels. Else an
 * error and a new *cause naming the field after where ("data[0].").
 */
enum webhook_parse_result webhook_event_entity(const json_t *ev, const char *where,
    unsigned max_depth, json_t **out, char **cause);

const char *webhook_sig_name(enum webhook_sig s);
const char *webhook_parse_result_name(enum webhook_parse_result r);

#endif
