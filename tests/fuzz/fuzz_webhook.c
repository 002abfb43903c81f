/*
 * fuzz_webhook.c — libFuzzer target: any bytes as a webhook delivery, through
 * the X-OM-Signature check (signed right, wrong, as hex, and a header made of
 * the input itself) and the ChangeEvent parser at two depth limits.
 *
 * Checks: a body's own signature always verifies and a one-byte change never
 * does; the parser either fails with a cause and an empty batch (and the id
 * it is logged with, if any, is printable and short), or gives
 * events that each have an id and, when acted on, a service kind, a
 * fully qualified name and an entity object; the depth limit holds.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "util.h"
#include "webhook.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_batch(const char *body, size_t len, unsigned depth)
{
	struct webhook_batch b;
	enum webhook_parse_result r;
	char *cause = NULL;
	size_t i;

	memset(&b, 0, sizeof b);
	r = webhook_parse(body, len, depth, &b, &cause);
	if (r != WEBHOOK_PARSE_OK) {
		char *id = webhook_event_id(body, len);

		if (cause == NULL || b.n != 0 || b.events != NULL)
			abort();
		/* The id a refused delivery is logged with: printable ASCII,
		 * at most 64 bytes and "...". */
		if (id != NULL && (strlen(id) > 67 || strspn(id, " !\"#$%&'()*+,-./"
		    "0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`"
		    "abcdefghijklmnopqrstuvwxyz{|}~") != strlen(id)))
			abort();
		free(id);
		free(cause);
		return;
	}
	if (cause != NULL || b.n == 0 || b.n > WEBHOOK_MAX_EVENTS)
		abort();
	if (webhook_json_depth(body, len, depth + 1, NULL) > depth)
		abort();
	for (i = 0; i < b.n; i++) {
		const struct webhook_event *e = &b.events[i];

		if (e->id == NULL && e->action != WEBHOOK_INVALID)
			abort();
		if (e->action == WEBHOOK_INVALID && (!b.batched || e->reason == NULL ||
		    e->entity != NULL || e->fqn != NULL))
			abort();
		if (e->action == WEBHOOK_ACT && (e->kind == NULL || e->fqn == NULL ||
		    e->fqn[0] == '\0' || !json_is_object(e->entity) ||
		    e->entity_type == NULL))
			abort();
		if (e->action == WEBHOOK_IGNORE && e->reason == NULL)
			abort();
	}
	webhook_batch_cleanup(&b);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *body = (const char *)data, *detail;
	char *sig, *hdr, *copy;

	sig = webhook_signature("fuzz-secret", body, size);
	if (webhook_verify("fuzz-secret", body, size, sig, &detail) != WEBHOOK_SIG_OK)
		abort();
	if (size > 0) {
		copy = ap_xmalloc(size);
		memcpy(copy, body, size);
		copy[size / 2] ^= 0x01;
		if (webhook_verify("fuzz-secret", copy, size, sig, &detail) == WEBHOOK_SIG_OK)
			abort();
		free(copy);
	}
	if (webhook_verify("other", body, size, sig, &detail) == WEBHOOK_SIG_OK)
		abort();
	hdr = ap_xstrndup(body, size > 200 ? 200 : size);
	(void)webhook_verify("fuzz-secret", body, size, hdr, &detail);
	free(hdr);
	free(sig);

	check_batch(body, size, 32);
	check_batch(body, size, 4);
	return 0;
}
