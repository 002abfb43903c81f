/*
 * bench_ceiling.c — the ceiling for the webhook ingest benchmark: a libevent
 * HTTP server that answers every request 200 {"ok":true} and does nothing
 * else. `make bench` runs the same wrk load against it and against
 * `autopilot serve`, and prints the ratio.
 *
 * Usage: bench_ceiling [--listen 127.0.0.1:0]
 * Binds 127.0.0.1 only, prints "listening 127.0.0.1:<port>" once ready,
 * exits 0 on SIGTERM or SIGINT.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

static void
answer(struct evhttp_request *req, void *arg)
{
	struct evbuffer *out = evhttp_request_get_output_buffer(req);

	(void)arg;
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
	    "application/json");
	evbuffer_add(out, "{\"ok\":true}", 11);
	evhttp_send_reply(req, 200, "OK", NULL);
}

static void
on_signal(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	event_base_loopbreak(arg);
}

int
main(int argc, char **argv)
{
	const char *listen = "127.0.0.1:0";
	struct event_config *ecfg;
	struct event_base *base;
	struct evhttp *http;
	struct evhttp_bound_socket *sock;
	struct event *sigterm, *sigint;
	struct sockaddr_storage ss;
	ev_socklen_t sl = sizeof ss;
	char host[64];
	const char *colon;
	int port;

	if (argc == 3 && strcmp(argv[1], "--listen") == 0)
		listen = argv[2];
	else if (argc != 1) {
		fprintf(stderr, "usage: bench_ceiling [--listen 127.0.0.1:PORT]\n");
		return 2;
	}
	colon = strrchr(listen, ':');
	if (colon == NULL || (size_t)(colon - listen) >= sizeof host) {
		fprintf(stderr, "bench_ceiling: bad --listen %s\n", listen);
		return 2;
	}
	memcpy(host, listen, (size_t)(colon - listen));
	host[colon - listen] = '\0';
	port = atoi(colon + 1);

	signal(SIGPIPE, SIG_IGN);
	/* The loop autopilot runs (ap_event_base_new): epoll's change list. */
	if ((ecfg = event_config_new()) == NULL)
		return 1;
	event_config_set_flag(ecfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	base = event_base_new_with_config(ecfg);
	event_config_free(ecfg);
	if (base == NULL)
		return 1;
	http = evhttp_new(base);
	evhttp_set_gencb(http, answer, NULL);
	evhttp_set_max_body_size(http, 1 << 20);
	sock = evhttp_bind_socket_with_handle(http, host, (ev_uint16_t)port);
	if (sock == NULL) {
		fprintf(stderr, "bench_ceiling: cannot listen on %s\n", listen);
		return 1;
	}
	if (getsockname(evhttp_bound_socket_get_fd(sock), (struct sockaddr *)&ss, &sl) != 0)
		return 1;
	printf("listening %s:%d\n", host,
	    ntohs(((struct sockaddr_in *)&ss)->sin_port));
	fflush(stdout);
	sigterm = evsignal_new(base, SIGTERM, on_signal, base);
	sigint = evsignal_new(base, SIGINT, on_signal, base);
	event_add(sigterm, NULL);
	event_add(sigint, NULL);
	event_base_dispatch(base);
	event_free(sigterm);
	event_free(sigint);
	evhttp_free(http);
	event_base_free(base);
	return 0;
}
