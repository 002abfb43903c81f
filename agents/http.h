/*
 * http.h — non-blocking HTTP client: libcurl's multi-socket interface driven
 * by a libevent loop (the pattern of curl's docs/examples/hiperfifo.c).
 *
 * Connections are reused (the multi handle keeps a cache), at most
 * max_in_flight transfers run at once and the rest wait in a FIFO queue,
 * every transfer has a connect and a total timeout, TLS peers are always
 * verified (optionally against a CA file), response bodies are capped, and
 * the Retry-After header is kept for the caller's retry policy.
 *
 * Callbacks run from the loop, never from inside http_request() or
 * http_cancel(): a completion is always reported on a later loop turn. This
 * module knows nothing about Airflow.
 */
#ifndef AP_HTTP_H
#define AP_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct http_client;
struct http_req;

#define HTTP_MAX_BODY_DEFAULT	(8u << 20)	/* 8 MiB */

struct http_options {
	long connect_timeout_ms;	/* 0: 5000 */
	long request_timeout_ms;	/* 0: 30000; the whole transfer */
	unsigned max_in_flight;		/* 0: 64 */
	const char *ca_file;		/* NULL: system CAs; verification always on */
	size_t max_body;		/* 0: HTTP_MAX_BODY_DEFAULT */
};

struct http_response {
	long status;		/* HTTP status; 0 when the transfer failed */
	bool too_big;		/* the body exceeded max_body (status kept, body dropped) */
	bool permanent;		/* status 0 that retrying cannot cure: TLS verification,
				   a bad URL or CA file */
	const char *error;	/* curl's message when status is 0 (or too_big), else NULL */
	const char *body;	/* NUL-terminated; never NULL (empty when none) */
	size_t body_len;
	const char *retry_after;	/* the Retry-After header value, or NULL */
	uint64_t elapsed_ms;	/* from the transfer's start (after queueing) */
	bool sent;		/* some of the request was written (status 0: it
				   may have reached the server) */
};

/* Called once per request unless cancelled. The response is borrowed. */
typedef void (*http_cb)(const struct http_response *res, void *arg);

/*
 * A set of request header lines, built once and shared by the requests that
 * send it (so a request costs no header allocation). Reference counted: each
 * request holds a reference until it is done. The text is wiped when the
 * last reference goes (it may carry credentials).
 */
struct http_headers;
/* lines: NULL-terminated "Name: value" lines (copied; may be NULL). Never NULL. */
struct http_headers *http_headers_create(const char *const *lines);
/* Drops the caller's reference. Accepts NULL. */
void http_headers_free(struct http_headers *hh);

/* Creates a client on base; opt is copied (ca_file too). Never NULL. */
struct http_client *http_client_create(struct event_base *base,
    const struct http_options *opt);
/* Cancels everything (no callbacks) and frees. Accepts NULL. Not from a callback. */
void http_client_free(struct http_client *h);

/*
 * Starts (or queues) a request. method is "GET", "POST", "PATCH", "DELETE"...
 * (copied); headers (may be NULL) is borrowed, the request takes its own
 * reference. url (a malloc'ed string) and body (malloc'ed, or NULL) are
 * stolen: the request frees them when done, the body wiped first. Returns a
 * handle valid until the callback has run or http_cancel() was called.
 * May be called from a callback.
 */
struct http_req *http_request(struct http_client *h, const char *method, char *url,
    struct http_headers *headers, char *body, size_t body_len, http_cb cb, void *arg);
/* Drops a queued or running request; its callback will not run. */
void http_cancel(struct http_client *h, struct http_req *r);
/*
 * A request queued for a free slot asks gate(arg) (arg: its callback's)
 * before it starts; false drops it, as http_cancel() would, without its
 * callback: the gate took over telling its owner. A request running
 * already is not asked.
 */
void http_req_gate(struct http_req *r, bool (*gate)(void *arg));

/*
 * From r's callback: takes r's response body so that it outlives the
 * callback (the caller frees it): the buffer res->body points to
 * (NUL-terminated, *lenp = res->body_len), not copied; a new empty string
 * when the response had no body or it was too big.
 */
char *http_take_body(struct http_req *r, size_t *lenp);

/* True once r has left the queue for one of max_in_flight slots (its
 * transfer has started). */
bool http_started(const struct http_req *r);

/* Transfers running now, and requests waiting for a slot. */
unsigned http_running(const struct http_client *h);
unsigned http_queued(const struct http_client *h);

#endif
