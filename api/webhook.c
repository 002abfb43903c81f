/*
 * webhook.c — X-OM-Signature verification (HMAC-SHA256, Base64, constant
 * time) and the ChangeEvent parser/decision. Pure: no I/O.
 */
#include "webhook.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "filter_effective.h"
#include "util.h"

#define SIG_PREFIX "sha256="
#define SHA256_LEN 32
/* Base64 of 32 bytes with padding: 44 characters. */
#define SIG_B64_LEN 44

static const char *const sig_names[WEBHOOK_SIG_MAX] = {
	"ok", "missing", "malformed", "hex", "mismatch"
};
static const char *const parse_names[WEBHOOK_PARSE_RESULT_MAX] = {
	"ok", "bad_json", "too_deep", "invalid"
};

const char *
webhook_sig_name(enum webhook_sig s)
{
	return s < WEBHOOK_SIG_MAX ? sig_names[s] : "unknown";
}

const char *
webhook_parse_result_name(enum webhook_parse_result r)
{
	return r < WEBHOOK_PARSE_RESULT_MAX ? parse_names[r] : "unknown";
}

/* An HMAC-SHA256 context keyed once; each MAC re-initialises it with the
 * same key, which skips the algorithm look-ups a one-shot HMAC() makes. */
struct webhook_key {
	EVP_MAC_CTX *ctx;
};

struct webhook_key *
webhook_key_create(const char *secret)
{
	struct webhook_key *k = ap_xcalloc(1, sizeof *k);
	OSSL_PARAM params[2];
	EVP_MAC *mac;

	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
	    (char *)"SHA256", 0);
	params[1] = OSSL_PARAM_construct_end();
	if ((mac = EVP_MAC_fetch(NULL, "HMAC", NULL)) == NULL ||
	    (k->ctx = EVP_MAC_CTX_new(mac)) == NULL ||
	    !EVP_MAC_init(k->ctx, (const unsigned char *)secret, strlen(secret), params))
		ap_fatal("HMAC-SHA256 set-up failed");
	EVP_MAC_free(mac);
	return k;
}

void
webhook_key_free(struct webhook_key *k)
{
	if (k == NULL)
		return;
	EVP_MAC_CTX_free(k->ctx);	/* cleanses the key */
	free(k);
}

static void
hmac_b64(struct webhook_key *k, const void *body, size_t len, char out[SIG_B64_LEN + 1])
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	size_t maclen = 0;

	if (!EVP_MAC_init(k->ctx, NULL, 0, NULL) || !EVP_MAC_update(k->ctx, body, len) ||
	    !EVP_MAC_final(k->ctx, mac, &maclen, sizeof mac) || maclen != SHA256_LEN)
		ap_fatal("HMAC-SHA256 failed");
	EVP_EncodeBlock((unsigned char *)out, mac, SHA256_LEN);
	out[SIG_B64_LEN] = '\0';
	OPENSSL_cleanse(mac, sizeof mac);
}

char *
webhook_signature(const char *secret, const void *body, size_t len)
{
	struct webhook_key *k = webhook_key_create(secret);
	char b64[SIG_B64_LEN + 1];

	hmac_b64(k, body, len, b64);
	webhook_key_free(k);
	return ap_xprintf(SIG_PREFIX "%s", b64);
}

static bool
all_hex(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!isxdigit((unsigned char)s[i]))
			return false;
	return true;
}

/*
 * What is wrong with the shape of a signature that did not match (got, n
 * bytes after "sha256="), or NULL when it is shaped right (44 characters of
 * standard Base64): a sender's formatting mistake is named rather than
 * reported as a wrong secret. Looks at what was sent only.
 */
static const char *
sig_shape(const char *got, size_t n)
{
	/* The detail outlives the key of webhook_verify(): kept here, one per
	 * thread, until the next signature that is shaped wrong. */
	static _Thread_local char buf[160];
	const size_t size = sizeof buf;
	size_t i, pad = 0;
	bool urlsafe = false;

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)got[i];

		if (c == ' ' || c == '\t') {
			snprintf(buf, size, "signature has white space %s; send"
			    " \"sha256=<base64>\" with nothing between or in it",
			    i == 0 ? "after \"sha256=\"" : "in it");
			return buf;
		}
		if (c == '-' || c == '_')
			urlsafe = true;
		else if (c == '=')
			pad++;
		else if (!isalnum(c) && c != '+' && c != '/') {
			snprintf(buf, size, "signature is not Base64 (character %zu,"
			    " 0x%02x, is outside A-Z a-z 0-9 + / =)", i + 1, c);
			return buf;
		}
	}
	if (urlsafe) {
		snprintf(buf, size, "signature is URL-safe Base64 ('-', '_');"
		    " OpenMetadata signs with standard Base64 ('+', '/')");
		return buf;
	}
	if (n != SIG_B64_LEN) {
		snprintf(buf, size, "signature is %zu characters, not the %d of the"
		    " Base64 of an HMAC-SHA256%s", n, SIG_B64_LEN, pad == 0 &&
		    n == SIG_B64_LEN - 1 ? " (is its '=' padding missing?)" : "");
		return buf;
	}
	return NULL;
}

enum webhook_sig
webhook_verify(const char *secret, const void *body, size_t len, const char *header,
    const char **detail)
{
	struct webhook_key *k = webhook_key_create(secret);
	enum webhook_sig r = webhook_key_verify(k, body, len, header, detail);

	webhook_key_free(k);
	return r;
}

enum webhook_sig
webhook_key_verify(struct webhook_key *k, const void *body, size_t len,
    const char *header, const char **detail)
{
	char expected[SIG_B64_LEN + 1];
	const char *got;
	size_t glen;
	bool ok;

	*detail = NULL;
	if (header == NULL || header[0] == '\0') {
		*detail = "missing X-OM-Signature header";
		return WEBHOOK_SIG_MISSING;
	}
	if (strncmp(header, SIG_PREFIX, strlen(SIG_PREFIX)) != 0) {
		*detail = "X-OM-Signature must be \"sha256=\" followed by the Base64"
		    " HMAC-SHA256 of the body";
		return WEBHOOK_SIG_MALFORMED;
	}
	got = header + strlen(SIG_PREFIX);
	glen = strlen(got);
	hmac_b64(k, body, len, expected);
	/* Compare first, whatever the shape, so timing says nothing about the
	 * expected value; lengths are public (always 44). */
	ok = ap_consttime_eq(got, glen, expected, SIG_B64_LEN);
	OPENSSL_cleanse(expected, sizeof expected);
	if (ok)
		return WEBHOOK_SIG_OK;
	if (glen == 2 * SHA256_LEN && all_hex(got, glen)) {
		*detail = "signature is hex; OpenMetadata signs with the Base64 of"
		    " HMAC-SHA256 (sha256=<base64>)";
		return WEBHOOK_SIG_HEX;
	}
	if ((*detail = sig_shape(got, glen)) != NULL)
		return WEBHOOK_SIG_MALFORMED;
	*detail = "signature does not match the body (wrong secret, or the body"
	    " was altered)";
	return WEBHOOK_SIG_MISMATCH;
}

unsigned
webhook_json_depth(const char *text, size_t len, unsigned limit, size_t *at)
{
	unsigned depth = 0, max = 0;
	bool in_str = false, esc = false;
	size_t i;

	for (i = 0; i < len; i++) {
		char ch = text[i];

		if (in_str) {
			if (esc)
				esc = false;
			else if (ch == '\\')
				esc = true;
			else if (ch == '"')
				in_str = false;
			continue;
		}
		if (ch == '"')
			in_str = true;
		else if (ch == '{' || ch == '[') {
			if (++depth > max) {
				max = depth;
				if (max > limit) {
					if (at != NULL)
						*at = i;
					return max;
				}
			}
		} else if ((ch == '}' || ch == ']') && depth > 0)
			depth--;
	}
	return max;
}

static void
event_cleanup(struct webhook_event *e)
{
	free(e->id);
	free(e->event_type);
	free(e->entity_type);
	free(e->fqn);
	json_decref(e->entity);
	free(e->reason);
}

void
webhook_batch_cleanup(struct webhook_batch *b)
{
	size_t i;

	for (i = 0; i < b->n; i++)
		event_cleanup(&b->events[i]);
	free(b->events);
	memset(b, 0, sizeof *b);
}

/* A required non-empty string field, or -1 with the message. */
static int
req_string(const json_t *o, const char *where, const char *key, const char **out,
    char **cause)
{
	json_t *v = json_object_get(o, key);

	if (v == NULL || json_is_null(v)) {
		*cause = ap_xprintf("%s%s: missing", where, key);
		return -1;
	}
	if (!json_is_string(v) || json_string_length(v) == 0) {
		*cause = ap_xprintf("%s%s: must be a non-empty string", where, key);
		return -1;
	}
	if (strlen(json_string_value(v)) != json_string_length(v)) {
		*cause = ap_xprintf("%s%s: contains a NUL character", where, key);
		return -1;
	}
	*out = json_string_value(v);
	return 0;
}

/* jansson refused a string holding \u0000 (JSON allows it; autopilot does
 * not: every string it reads ends at its first NUL). */
static bool
nul_refused(const json_error_t *jerr)
{
	return strstr(jerr->text, "\\u0000 is not allowed") != NULL ||
	    strstr(jerr->text, "NUL byte in object key") != NULL;
}

/* The service entity of an entityCreated event: object, or a JSON string of one. */
enum webhook_parse_result
webhook_event_entity(const json_t *ev, const char *where, unsigned max_depth, json_t **out,
    char **cause)
{
	json_t *v = json_object_get(ev, "entity"), *e;
	json_error_t jerr;
	const char *s;
	size_t n, at = 0;

	*out = NULL;
	if (v == NULL || json_is_null(v)) {
		*cause = ap_xprintf("%sentity: missing (an entityCreated event carries"
		    " the service entity)", where);
		return WEBHOOK_PARSE_INVALID;
	}
	if (json_is_object(v)) {
		*out = json_incref(v);
		return WEBHOOK_PARSE_OK;
	}
	if (!json_is_string(v)) {
		*cause = ap_xprintf("%sentity: must be an object or a JSON string", where);
		return WEBHOOK_PARSE_INVALID;
	}
	s = json_string_value(v);
	n = json_string_length(v);
	if (webhook_json_depth(s, n, max_depth, &at) > max_depth) {
		*cause = ap_xprintf("%sentity: nested deeper than %u levels (position"
		    " %zu)", where, max_depth, at + 1);
		return WEBHOOK_PARSE_TOO_DEEP;
	}
	e = json_loadb(s, n, JSON_REJECT_DUPLICATES, &jerr);
	if (e == NULL) {
		*cause = nul_refused(&jerr) ? ap_xprintf("%sentity: holds \\u0000"
		    " (a NUL character), which is not accepted (position %d)", where,
		    jerr.position) : ap_xprintf("%sentity: not valid JSON: %s"
		    " (position %d)", where, jerr.text, jerr.position);
		return WEBHOOK_PARSE_INVALID;
	}
	if (!json_is_object(e)) {
		json_decref(e);
		*cause = ap_xprintf("%sentity: must encode a JSON object", where);
		return WEBHOOK_PARSE_INVALID;
	}
	*out = e;
	return WEBHOOK_PARSE_OK;
}

static enum webhook_parse_result
parse_event(const json_t *ev, const char *where, unsigned max_depth,
    struct webhook_event *out, char **cause)
{
	const char *id, *etype, *entity_type, *entity_id, *fqn = NULL, *stype, *eid;
	struct filter_type_conflict tc;
	const char *ename;
	char *ewhere = NULL;
	json_t *ts, *entity = NULL, *conn, *v;
	enum webhook_parse_result r = WEBHOOK_PARSE_INVALID;

	memset(out, 0, sizeof *out);
	if (!json_is_object(ev)) {
		*cause = where[0] != '\0' ? ap_xprintf("%.*s: a ChangeEvent must be a"
		    " JSON object", (int)strlen(where) - 1, where) :
		    ap_xstrdup("body: a ChangeEvent must be a JSON object");
		return WEBHOOK_PARSE_INVALID;
	}
	if (req_string(ev, where, "id", &id, cause) < 0 ||
	    req_string(ev, where, "eventType", &etype, cause) < 0 ||
	    req_string(ev, where, "entityType", &entity_type, cause) < 0)
		return WEBHOOK_PARSE_INVALID;
	if (strlen(id) > 256) {
		*cause = ap_xprintf("%sid: longer than 256 characters", where);
		return WEBHOOK_PARSE_INVALID;
	}
	ts = json_object_get(ev, "timestamp");
	if (ts == NULL) {
		*cause = ap_xprintf("%stimestamp: missing", where);
		return WEBHOOK_PARSE_INVALID;
	}
	if (!json_is_integer(ts)) {
		*cause = ap_xprintf("%stimestamp: must be an integer (epoch ms)", where);
		return WEBHOOK_PARSE_INVALID;
	}
	if (req_string(ev, where, "entityId", &entity_id, cause) < 0)
		return WEBHOOK_PARSE_INVALID;
	out->id = ap_xstrdup(id);
	out->event_type = ap_xstrdup(etype);
	out->entity_type = ap_xstrdup(entity_type);
	out->action = WEBHOOK_IGNORE;

	if (strcmp(etype, "entityCreated") != 0) {
		out->reason = ap_xprintf("eventType %s is not acted on (only"
		    " entityCreated)", etype);
		return WEBHOOK_PARSE_OK;
	}
	out->kind = filter_kind_from_entity_type(entity_type);
	if (out->kind == NULL) {
		out->reason = ap_xprintf("entityType %s is not a service kind autopilot"
		    " acts on", entity_type);
		return WEBHOOK_PARSE_OK;
	}

	r = webhook_event_entity(ev, where, max_depth, &entity, cause);
	if (r != WEBHOOK_PARSE_OK)
		goto fail;
	r = WEBHOOK_PARSE_INVALID;
	ewhere = ap_xprintf("%sentity.", where);
	v = json_object_get(ev, "entityFullyQualifiedName");
	if (v != NULL && !json_is_null(v) && !json_is_string(v)) {
		*cause = ap_xprintf("%sentityFullyQualifiedName: must be a string",
		    where);
		goto fail;
	}
	v = json_object_get(entity, "name");
	if (v != NULL && !json_is_null(v) && req_string(entity, ewhere, "name",
	    &ename, cause) < 0)
		goto fail;
	if (json_object_get(entity, "fullyQualifiedName") != NULL) {
		if (req_string(entity, ewhere, "fullyQualifiedName", &fqn, cause) < 0)
			goto fail;
	} else if (json_is_string(json_object_get(ev, "entityFullyQualifiedName")) &&
	    json_string_length(json_object_get(ev, "entityFullyQualifiedName")) > 0)
		fqn = json_string_value(json_object_get(ev, "entityFullyQualifiedName"));
	else if (req_string(entity, ewhere, "fullyQualifiedName", &fqn, cause) < 0)
		goto fail;
	if (strlen(fqn) > WEBHOOK_MAX_FQN) {
		*cause = ap_xprintf("%sfullyQualifiedName: longer than %d characters",
		    ewhere, WEBHOOK_MAX_FQN);
		goto fail;
	}
	/* The connector type decides the built-in default filters. */
	if (req_string(entity, ewhere, "serviceType", &stype, cause) < 0)
		goto fail;
	/* What every deployed agent names the service by: refused here, not
	 * accepted and then failed as a run that cannot be planned. */
	if (req_string(entity, ewhere, "id", &eid, cause) < 0)
		goto fail;
	/* An event about one service that carries another is refused: which
	 * of the two was meant cannot be told. */
	v = json_object_get(ev, "entityFullyQualifiedName");
	if (json_is_string(v) && json_string_length(v) > 0 &&
	    strcmp(json_string_value(v), fqn) != 0) {
		*cause = ap_xprintf("%sentityFullyQualifiedName: not the entity's"
		    " fullyQualifiedName (the event is about another service"
		    " than the entity it carries)", where);
		goto fail;
	}
	if (strcasecmp(entity_id, eid) != 0) {	/* UUIDs: either case */
		*cause = ap_xprintf("%sentityId: not the entity's id (the event is"
		    " about another service than the entity it carries)", where);
		goto fail;
	}
	if (json_object_get(entity, "fullyQualifiedName") == NULL &&
	    req_string(entity, ewhere, "name", &ename, cause) < 0)
		goto fail;
	conn = json_object_get(entity, "connection");
	if (conn != NULL && !json_is_null(conn) && (!json_is_object(conn) ||
	    (json_object_get(conn, "config") != NULL &&
	    !json_is_object(json_object_get(conn, "config"))))) {
		*cause = ap_xprintf("%sconnection: must be an object with an object"
		    " \"config\"", ewhere);
		goto fail;
	}
	/* An entity that says it is of another type would be run as the
	 * event's (a Postgres service's agents as a messaging service's). */
	if (filter_type_conflict(entity, entity_type, &tc)) {
		if (tc.href_type != NULL)
			*cause = ap_xprintf("%sentityType: %s, but the entity is a %s"
			    " (its href)", where, entity_type, tc.href_type);
		else if (tc.connector != NULL)
			*cause = ap_xprintf("%sentityType: %s, but the entity's"
			    " connector %s is a %s connector", where, entity_type,
			    tc.connector, filter_key_kind(tc.key));
		else
			*cause = ap_xprintf("%sentityType: %s, but the entity's"
			    " connection.config has %s, a filter of %s services",
			    where, entity_type, tc.key, filter_key_kind(tc.key));
		filter_type_conflict_cleanup(&tc);
		goto fail;
	}
	out->action = WEBHOOK_ACT;
	out->fqn = ap_xstrdup(fqn);
	out->entity = entity;
	free(ewhere);
	return WEBHOOK_PARSE_OK;
fail:
	free(ewhere);
	json_decref(entity);
	event_cleanup(out);
	memset(out, 0, sizeof *out);
	return r;
}

/* Event e of a batch cannot be read, for reason why (taken): it keeps the
 * id it gives, when that is one, for its entry in the results. */
static void
batch_invalid(struct webhook_event *e, const json_t *ev, char *why)
{
	const char *id = json_string_value(json_object_get(ev, "id"));

	memset(e, 0, sizeof *e);
	e->action = WEBHOOK_INVALID;
	e->reason = why;
	if (id != NULL && id[0] != '\0' && strlen(id) <= 256)
		e->id = ap_xstrdup(id);
}

char *
webhook_event_id(const char *body, size_t len)
{
	json_t *root = json_loadb(body, len, 0, NULL);
	const char *id = json_string_value(json_object_get(root, "id"));
	char *cut, *out = NULL;

	if (id != NULL && id[0] != '\0') {
		cut = strlen(id) > 64 ? ap_xprintf("%.64s...", id) : ap_xstrdup(id);
		out = ap_printable(cut);
		free(cut);
	}
	json_decref(root);
	return out;
}

enum webhook_parse_result
webhook_parse(const char *body, size_t len, unsigned max_depth,
    struct webhook_batch *out, char **cause)
{
	json_error_t jerr;
	json_t *root = NULL, *data;
	enum webhook_parse_result r;
	size_t i, n, at = 0;
	char *why = NULL;

	memset(out, 0, sizeof *out);
	if (webhook_json_depth(body, len, max_depth, &at) > max_depth) {
		size_t line = 1, col = 1;

		for (i = 0; i < at; i++, col++)
			if (body[i] == '\n') {
				line++;
				col = 0;
			}
		*cause = ap_xprintf("body: JSON nested deeper than %u levels (line %zu,"
		    " column %zu)", max_depth, line, col);
		return WEBHOOK_PARSE_TOO_DEEP;
	}
	/* A key given twice would be read as its last value here and perhaps
	 * as its first elsewhere: refused (OpenMetadata never sends one). */
	root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL && nul_refused(&jerr)) {
		*cause = ap_xprintf("body: a string or key holds \\u0000 (a NUL"
		    " character), which is not accepted (line %d, column %d)",
		    jerr.line, jerr.column);
		return WEBHOOK_PARSE_INVALID;
	}
	if (root == NULL) {
		*cause = ap_xprintf("body: not valid JSON: %s (line %d, column %d)",
		    jerr.text, jerr.line, jerr.column);
		return WEBHOOK_PARSE_BAD_JSON;
	}
	data = json_object_get(root, "data");
	if (json_is_object(root) && data != NULL && json_object_get(root, "eventType") == NULL) {
		if (!json_is_array(data) || json_array_size(data) == 0) {
			*cause = ap_xstrdup("data: must be a non-empty array of ChangeEvents");
			r = WEBHOOK_PARSE_INVALID;
			goto out;
		}
		n = json_array_size(data);
		if (n > WEBHOOK_MAX_EVENTS) {
			*cause = ap_xprintf("data: %zu events in one delivery, more than"
			    " the %d accepted (send smaller batches)", n,
			    WEBHOOK_MAX_EVENTS);
			r = WEBHOOK_PARSE_INVALID;
			goto out;
		}
		out->batched = true;
	} else {
		data = NULL;
		n = 1;
	}
	out->events = ap_xcalloc(n, sizeof *out->events);
	for (i = 0; i < n; i++) {
		char *where = out->batched ? ap_xprintf("data[%zu].", i) : ap_xstrdup("");
		const json_t *ev = data != NULL ? json_array_get(data, i) : root;

		r = parse_event(ev, where, max_depth, &out->events[i], &why);
		free(where);
		if (r != WEBHOOK_PARSE_OK && !out->batched) {
			*cause = why;
			webhook_batch_cleanup(out);
			goto out;
		}
		if (r != WEBHOOK_PARSE_OK)
			batch_invalid(&out->events[i], ev, why);
		out->n++;
	}
	/* A batch is answered with each event's outcome, even when none of
	 * them can be read (the caller refuses it then, with those results). */
	r = WEBHOOK_PARSE_OK;
out:
	json_decref(root);
	return r;
}
