/*
 * http.c — libcurl multi-socket on libevent (see http.h).
 *
 * curl tells us which sockets to watch (socket_cb) and when to call it back
 * (timer_cb); we turn those into events on the caller's event_base and hand
 * activity back with curl_multi_socket_action(), then drain the info queue
 * for finished transfers. Exactly hiperfifo.c, plus events of idle
 * connections kept registered (struct http_sock), a FIFO of requests
 * waiting for one of max_in_flight slots, a pool of easy handles that keep
 * their constant options (a request sets only what is its own), shared
 * header lists, and per-request buffers with a size cap.
 *
 * Callbacks are only ever called from check_done(), which runs from an event
 * callback after curl_multi_socket_action() has returned, so a callback may
 * start or cancel requests freely.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <event2/event_struct.h>

#include "http.h"
#include "util.h"

#define HTTP_POOL_MAX		256	/* idle easy handles kept for reuse */
#define HTTP_RETRY_AFTER_MAX	128	/* bytes of a Retry-After value kept */

/*
 * A socket curl wants watched. The event of a connection's socket (one
 * curl opened through open_cb) stays registered while the connection sits
 * idle in curl's cache between two transfers (curl says CURL_POLL_REMOVE
 * then), so the next transfer on it costs no epoll_ctl: it is forgotten when
 * curl closes it, which curl does through close_cb. Other descriptors (a
 * resolver's) are forgotten at CURL_POLL_REMOVE.
 */
struct http_sock {
	struct http_client *h;
	curl_socket_t fd;
	struct event ev;
	bool added;
	bool conn;		/* opened through open_cb: closed through close_cb */
	bool curl;		/* curl watches it now (a transfer uses it) */
	int what;		/* curl's CURL_POLL_* interest now registered */
};

struct http_headers {
	unsigned refs;
	struct curl_slist *list;
};

struct http_req {
	struct http_client *h;
	TAILQ_ENTRY(http_req) entry;	/* in h->queue or h->running */
	bool running;
	CURL *easy;
	char method[16];
	char *url;
	char *body;
	size_t body_len;
	struct http_headers *headers;
	struct ap_buf resp;
	bool too_big;
	char retry_after[HTTP_RETRY_AFTER_MAX];
	bool has_retry_after;
	uint64_t started_ms;
	char errbuf[CURL_ERROR_SIZE];
	http_cb cb;
	void *arg;
	bool (*gate)(void *);		/* asked before a queued start */
};

TAILQ_HEAD(http_req_list, http_req);

struct http_client {
	struct event_base *base;
	CURLM *multi;
	struct event timer;
	struct http_options opt;
	char *ca_file;
	struct http_req_list queue;
	struct http_req_list running;
	unsigned nrunning;
	unsigned nqueued;
	CURL *pool[HTTP_POOL_MAX];
	unsigned npool;
	struct http_sock **socks;	/* by file descriptor */
	size_t nsocks;
	struct http_headers *no_headers;	/* for requests without any */
	bool hold;		/* do not refill slots (draining completions, closing) */
};

static void http_start_queued(struct http_client *h);

static void
check_done(struct http_client *h)
{
	CURLMsg *msg;
	int left;

	h->hold = true;
	while ((msg = curl_multi_info_read(h->multi, &left)) != NULL) {
		struct http_req *r = NULL;
		struct http_response res;
		CURLcode code;
		curl_off_t total_us = 0;
		long reqsize = 0;

		if (msg->msg != CURLMSG_DONE)
			continue;
		code = msg->data.result;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
		memset(&res, 0, sizeof res);
		curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &res.status);
		curl_easy_getinfo(r->easy, CURLINFO_TOTAL_TIME_T, &total_us);
		res.elapsed_ms = (uint64_t)total_us / 1000;
		if (curl_easy_getinfo(r->easy, CURLINFO_REQUEST_SIZE, &reqsize) ==
		    CURLE_OK)
			res.sent = reqsize > 0;
		if (code == CURLE_FILESIZE_EXCEEDED)
			r->too_big = true;	/* Content-Length said so up front */
		if (r->too_big) {
			res.too_big = true;
			res.error = "response body too large";
		} else if (code != CURLE_OK) {
			/* A transfer that broke after the status line is still a failure. */
			res.status = 0;
			res.error = r->errbuf[0] != '\0' ? r->errbuf : curl_easy_strerror(code);
			res.permanent = code == CURLE_PEER_FAILED_VERIFICATION ||
			    code == CURLE_SSL_CACERT_BADFILE || code == CURLE_SSL_CERTPROBLEM ||
			    code == CURLE_UNSUPPORTED_PROTOCOL || code == CURLE_URL_MALFORMAT;
		}
		res.body = r->resp.data != NULL && !r->too_big ? r->resp.data : "";
		res.body_len = r->too_big ? 0 : r->resp.len;
		res.retry_after = r->has_retry_after ? r->retry_after : NULL;

		curl_multi_remove_handle(h->multi, r->easy);
		TAILQ_REMOVE(&h->running, r, entry);
		h->nrunning--;
		r->running = false;
		r->cb(&res, r->arg);
		http_cancel(h, r);	/* frees; nothing left to cancel */
	}
	h->hold = false;
	http_start_queued(h);
}

static void
event_cb(evutil_socket_t fd, short what, void *arg)
{
	struct http_sock *s = arg;
	struct http_client *h = s->h;
	int action = ((what & EV_READ) ? CURL_CSELECT_IN : 0) |
	    ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0);
	int still;

	if (!s->curl) {
		/* An idle connection the peer closed (or wrote to): stop watching;
		 * curl finds out when it next looks at the connection. */
		event_del(&s->ev);
		s->added = false;
		return;
	}
	curl_multi_socket_action(h->multi, fd, action, &still);
	check_done(h);
}

static void
timer_event_cb(evutil_socket_t fd, short what, void *arg)
{
	struct http_client *h = arg;
	int still;

	curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &still);
	check_done(h);
}

/* CURLMOPT_TIMERFUNCTION: curl wants to be called after timeout_ms (-1: never). */
static int
timer_cb(CURLM *multi, long timeout_ms, void *arg)
{
	struct http_client *h = arg;
	struct timeval tv;

	if (timeout_ms < 0) {
		evtimer_del(&h->timer);
		return 0;
	}
	tv.tv_sec = timeout_ms / 1000;
	tv.tv_usec = (timeout_ms % 1000) * 1000;
	evtimer_add(&h->timer, &tv);
	return 0;
}

static struct http_sock *
sock_find(const struct http_client *h, curl_socket_t fd)
{
	return fd >= 0 && (size_t)fd < h->nsocks ? h->socks[fd] : NULL;
}

/* Forgets fd's event and entry (before the descriptor is closed). */
static void
sock_drop(struct http_client *h, curl_socket_t fd)
{
	struct http_sock *s = sock_find(h, fd);

	if (s == NULL)
		return;
	if (s->added)
		event_del(&s->ev);
	h->socks[fd] = NULL;
	free(s);
}

static struct http_sock *
sock_new(struct http_client *h, curl_socket_t fd)
{
	struct http_sock *s;

	/* An entry left by a descriptor closed behind our back goes first. */
	sock_drop(h, fd);
	if ((size_t)fd >= h->nsocks) {
		size_t n = (size_t)fd + 64;

		h->socks = ap_xreallocarray(h->socks, n, sizeof *h->socks);
		memset(h->socks + h->nsocks, 0, (n - h->nsocks) * sizeof *h->socks);
		h->nsocks = n;
	}
	s = ap_xcalloc(1, sizeof *s);
	s->h = h;
	s->fd = fd;
	h->socks[fd] = s;
	return s;
}

/* CURLMOPT_SOCKETFUNCTION: watch fd for what curl says. */
static int
socket_cb(CURL *easy, curl_socket_t fd, int what, void *arg, void *sockp)
{
	struct http_client *h = arg;
	struct http_sock *s = sockp != NULL ? sockp : sock_find(h, fd);
	short kind;

	if (what == CURL_POLL_REMOVE) {
		if (s != NULL && s->conn)
			s->curl = false;	/* idle: the event stays (see struct http_sock) */
		else if (s != NULL)
			sock_drop(h, fd);
		return 0;
	}
	if (s == NULL)
		s = sock_new(h, fd);
	if (sockp == NULL)
		curl_multi_assign(h->multi, fd, s);
	s->curl = true;
	if (s->added) {
		if (s->what == what)
			return 0;	/* unchanged: spare two epoll_ctl calls */
		event_del(&s->ev);
	}
	s->what = what;
	kind = (short)(((what & CURL_POLL_IN) ? EV_READ : 0) |
	    ((what & CURL_POLL_OUT) ? EV_WRITE : 0) | EV_PERSIST);
	event_assign(&s->ev, h->base, fd, kind, event_cb, s);
	event_add(&s->ev, NULL);
	s->added = true;
	return 0;
}

/* CURLOPT_OPENSOCKETFUNCTION: every connection's socket starts here. */
static curl_socket_t
open_cb(void *arg, curlsocktype purpose, struct curl_sockaddr *addr)
{
	curl_socket_t fd = socket(addr->family, addr->socktype, addr->protocol);

	if (fd != CURL_SOCKET_BAD)
		sock_new(arg, fd)->conn = true;
	return fd;
}

/* CURLOPT_CLOSESOCKETFUNCTION: every connection's socket ends here. */
static int
close_cb(void *arg, curl_socket_t fd)
{
	sock_drop(arg, fd);
	return close(fd);
}

static size_t
write_cb(char *data, size_t size, size_t n, void *arg)
{
	struct http_req *r = arg;
	size_t len = size * n;

	if (r->resp.len + len > r->h->opt.max_body) {
		r->too_big = true;
		return 0;	/* CURLE_WRITE_ERROR ends the transfer */
	}
	ap_buf_add(&r->resp, data, len);
	return len;
}

static size_t
header_cb(char *data, size_t size, size_t n, void *arg)
{
	struct http_req *r = arg;
	size_t len = size * n, vlen;
	const char *v;

	/* A new status line (redirects are off, but 1xx answers exist): forget. */
	if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) {
		r->has_retry_after = false;
		return len;
	}
	if (len > 12 && strncasecmp(data, "Retry-After:", 12) == 0) {
		v = data + 12;
		vlen = len - 12;
		while (vlen > 0 && (*v == ' ' || *v == '\t')) {
			v++;
			vlen--;
		}
		while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' ||
		    v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
			vlen--;
		if (vlen >= sizeof r->retry_after)
			vlen = sizeof r->retry_after - 1;
		memcpy(r->retry_after, v, vlen);
		r->retry_after[vlen] = '\0';
		r->has_retry_after = true;
	}
	return len;
}

/* A pooled handle, or a new one with the options every request shares. */
static CURL *
easy_get(struct http_client *h)
{
	CURL *e;

	if (h->npool > 0)
		return h->pool[--h->npool];
	if ((e = curl_easy_init()) == NULL)
		ap_fatal("curl_easy_init failed");
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_cb);
	curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, h);
	curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, close_cb);
	curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, h);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, h->opt.connect_timeout_ms);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, h->opt.request_timeout_ms);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
	if (h->ca_file != NULL)
		curl_easy_setopt(e, CURLOPT_CAINFO, h->ca_file);
	curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)h->opt.max_body);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	return e;
}

/* Back to the pool, pointing at nothing of the finished request. */
static void
easy_put(struct http_client *h, CURL *e)
{
	if (h->npool < HTTP_POOL_MAX) {
		curl_easy_setopt(e, CURLOPT_ERRORBUFFER, NULL);
		curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
		curl_easy_setopt(e, CURLOPT_PRIVATE, NULL);
		h->pool[h->npool++] = e;
	} else
		curl_easy_cleanup(e);
}

/*
 * Sets what is the request's own on a pooled handle. Every method-related
 * option is set each time, since the handle's previous request may have
 * used another method.
 */
static void
http_start(struct http_client *h, struct http_req *r)
{
	CURL *e = easy_get(h);
	CURLMcode mc;
	bool get = strcmp(r->method, "GET") == 0, post = strcmp(r->method, "POST") == 0;

	r->easy = e;
	r->started_ms = ap_mono_ms();
	curl_easy_setopt(e, CURLOPT_URL, r->url);
	curl_easy_setopt(e, CURLOPT_PRIVATE, r);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers->list);
	if (!get && (r->body != NULL || post)) {
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body != NULL ? r->body : "");
	} else
		curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
	curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, get || post ? NULL : r->method);
	if ((mc = curl_multi_add_handle(h->multi, e)) != CURLM_OK)
		ap_fatal("curl_multi_add_handle: %s", curl_multi_strerror(mc));
	r->running = true;
	TAILQ_INSERT_TAIL(&h->running, r, entry);
	h->nrunning++;
}

static void http_req_free(struct http_req *r);

static void
http_start_queued(struct http_client *h)
{
	struct http_req *r;

	while (h->nrunning < h->opt.max_in_flight && (r = TAILQ_FIRST(&h->queue)) != NULL) {
		TAILQ_REMOVE(&h->queue, r, entry);
		h->nqueued--;
		if (r->gate != NULL && !r->gate(r->arg)) {
			http_req_free(r);
			continue;
		}
		http_start(h, r);
	}
}

void
http_req_gate(struct http_req *r, bool (*gate)(void *))
{
	r->gate = gate;
}

struct http_headers *
http_headers_create(const char *const *lines)
{
	struct http_headers *hh = ap_xcalloc(1, sizeof *hh);
	const char *const *p;
	struct curl_slist *n;

	hh->refs = 1;
	for (p = lines; p != NULL && *p != NULL; p++) {
		if ((n = curl_slist_append(hh->list, *p)) == NULL)
			ap_fatal("curl_slist_append failed");
		hh->list = n;
	}
	/* No "Expect: 100-continue" round trip for small JSON bodies. */
	if ((n = curl_slist_append(hh->list, "Expect:")) == NULL)
		ap_fatal("curl_slist_append failed");
	hh->list = n;
	return hh;
}

void
http_headers_free(struct http_headers *hh)
{
	struct curl_slist *n;

	if (hh == NULL || --hh->refs > 0)
		return;
	for (n = hh->list; n != NULL; n = n->next)
		memset(n->data, 0, strlen(n->data));
	curl_slist_free_all(hh->list);
	free(hh);
}

struct http_client *
http_client_create(struct event_base *base, const struct http_options *opt)
{
	static bool global_done;
	struct http_client *h = ap_xcalloc(1, sizeof *h);

	if (!global_done) {
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
			ap_fatal("curl_global_init failed");
		global_done = true;
	}
	h->base = base;
	h->opt = *opt;
	if (h->opt.connect_timeout_ms <= 0)
		h->opt.connect_timeout_ms = 5000;
	if (h->opt.request_timeout_ms <= 0)
		h->opt.request_timeout_ms = 30000;
	if (h->opt.max_in_flight == 0)
		h->opt.max_in_flight = 64;
	if (h->opt.max_body == 0)
		h->opt.max_body = HTTP_MAX_BODY_DEFAULT;
	h->ca_file = opt->ca_file != NULL ? ap_xstrdup(opt->ca_file) : NULL;
	h->opt.ca_file = h->ca_file;
	TAILQ_INIT(&h->queue);
	TAILQ_INIT(&h->running);
	h->no_headers = http_headers_create(NULL);
	if ((h->multi = curl_multi_init()) == NULL)
		ap_fatal("curl_multi_init failed");
	evtimer_assign(&h->timer, base, timer_event_cb, h);
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
	/* Keep one idle connection per slot so a busy client never reconnects. */
	curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, (long)h->opt.max_in_flight);
	return h;
}

void
http_client_free(struct http_client *h)
{
	struct http_req *r;
	size_t i;

	if (h == NULL)
		return;
	h->hold = true;
	while ((r = TAILQ_FIRST(&h->queue)) != NULL)
		http_cancel(h, r);
	while ((r = TAILQ_FIRST(&h->running)) != NULL)
		http_cancel(h, r);
	while (h->npool > 0)
		curl_easy_cleanup(h->pool[--h->npool]);
	curl_multi_cleanup(h->multi);	/* closes the connections: close_cb */
	for (i = 0; i < h->nsocks; i++)
		sock_drop(h, (curl_socket_t)i);
	free(h->socks);
	evtimer_del(&h->timer);
	http_headers_free(h->no_headers);
	free(h->ca_file);
	free(h);
}

struct http_req *
http_request(struct http_client *h, const char *method, char *url,
    struct http_headers *headers, char *body, size_t body_len, http_cb cb, void *arg)
{
	struct http_req *r = ap_xcalloc(1, sizeof *r);

	r->h = h;
	snprintf(r->method, sizeof r->method, "%s", method);
	r->url = url;
	r->body = body;
	r->body_len = body != NULL ? body_len : 0;
	r->headers = headers != NULL ? headers : h->no_headers;
	r->headers->refs++;
	ap_buf_init(&r->resp);
	r->cb = cb;
	r->arg = arg;
	if (h->nrunning < h->opt.max_in_flight && TAILQ_EMPTY(&h->queue))
		http_start(h, r);
	else {
		TAILQ_INSERT_TAIL(&h->queue, r, entry);
		h->nqueued++;
	}
	return r;
}

void
http_cancel(struct http_client *h, struct http_req *r)
{
	if (r->easy != NULL) {
		if (r->running) {
			curl_multi_remove_handle(h->multi, r->easy);
			TAILQ_REMOVE(&h->running, r, entry);
			h->nrunning--;
		}
		easy_put(h, r->easy);
	} else {
		TAILQ_REMOVE(&h->queue, r, entry);
		h->nqueued--;
	}
	http_req_free(r);
	/*
	 * A freed slot is filled on the next check_done(); when cancelling from
	 * outside a completion, fill it now (curl only acts on the next event).
	 */
	if (!h->hold)
		http_start_queued(h);
}

/* Frees a request out of every list, its easy handle given back. */
static void
http_req_free(struct http_req *r)
{
	http_headers_free(r->headers);
	ap_buf_cleanup(&r->resp);
	free(r->url);
	if (r->body != NULL) {
		/* A token request's body carries the password. */
		memset(r->body, 0, r->body_len);
		free(r->body);
	}
	free(r);
}

char *
http_take_body(struct http_req *r, size_t *lenp)
{
	if (r->too_big)
		ap_buf_cleanup(&r->resp);	/* what came is not the body */
	return ap_buf_steal(&r->resp, lenp);
}

bool
http_started(const struct http_req *r)
{
	return r->running;
}

unsigned
http_running(const struct http_client *h)
{
	return h->nrunning;
}

unsigned
http_queued(const struct http_client *h)
{
	return h->nqueued;
}
