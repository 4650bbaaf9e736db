/*
 * loop.h - a worker's event loop and transport layer.
 *
 * libwebsockets 4.1 runs on a libuv loop that is itself embedded in the
 * worker's libevent loop (see loop.c for why).  This module owns the
 * listening-socket accept, the WebSocket endpoint (origin check, format
 * selection, message reassembly and size limit, batched outgoing queue,
 * close codes) and plain HTTP/1.1 requests (body read, asynchronous
 * response, keep-alive, pipelining with responses in request order).  It knows nothing about the client protocol: it hands complete
 * WebSocket messages and complete HTTP requests to the handlers.
 *
 * Runs in: worker processes only.  Not thread-safe: every function must be
 * called from the thread running the event_base given to loop_new().
 */
#ifndef CENTRIFUGO_LOOP_H
#define CENTRIFUGO_LOOP_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct sbuf;

struct loop;
struct conn;
struct http_req;

/* Largest WebSocket message loop.c assembles from queued messages (a single
 * queued message bigger than this is still sent, alone). */
#define LOOP_FRAME_MAX 65536
/* Largest write delay in milliseconds (a larger one is clamped). */
#define LOOP_WRITE_DELAY_MAX 60000

struct loop_params {
	const char *ws_path;            /* "/connection/websocket" */
	size_t ws_message_size_limit;   /* bigger incoming message -> close 1009 */
	size_t queue_max_size;          /* queued unwritten bytes -> 3008 "slow" */
	/* Origin patterns: "*" = any; a '*' inside a pattern matches any run
	 * of characters (e.g. https, colon, two slashes, star, ".example.com"),
	 * case-insensitively.  An empty list accepts only upgrades WITHOUT an
	 * Origin header.  A refused upgrade is answered 403.  Strings are
	 * copied. */
	const char *const *allowed_origins;
	size_t n_allowed_origins;
	size_t http_body_limit;         /* bigger request body -> 413 */
	/* client.write_delay in ms; 0: every connection is written at the end
	 * of the loop turn in which it got messages.  See loop_conn_send(). */
	int64_t write_delay_ms;
};

struct loop_ws_info {
	/* 1 when the query has format=protobuf or cf_protocol=protobuf, or the
	 * client offered subprotocol "centrifuge-protobuf". */
	int protobuf;
	const char *remote_addr;        /* peer IP as text */
	const char *user_agent;         /* "" if absent */
	const char *query;              /* URL-decoded args joined by '&', or "" */
};

/* All pointers handed to handlers are valid only during the call unless
 * stated otherwise. */
struct loop_handlers {
	/* A WebSocket connection is established.  Returns the per-connection
	 * user pointer passed to ws_message and ws_closed. */
	void *(*ws_open)(void *ctx, struct conn *c,
			 const struct loop_ws_info *info);
	/* One complete, reassembled message; binary = opcode was binary. */
	void (*ws_message)(void *user, const char *data, size_t len,
			   int binary);
	/* The connection is gone (peer close, error, timeout, or after
	 * loop_conn_close).  Called exactly once per ws_open; the conn must not
	 * be used afterwards. */
	void (*ws_closed)(void *user);
	/* Optional (NULL: accept all).  A WebSocket upgrade on ws_path from an
	 * allowed origin is about to be accepted: returns 0 to go on, or an
	 * HTTP status (e.g. 503) answered instead, with an empty body. */
	int (*ws_admit)(void *ctx);
	/* Any HTTP request that is not a WebSocket upgrade on ws_path, with its
	 * whole body read.  The handler must call loop_http_respond() exactly
	 * once, now or later. */
	void (*http_request)(void *ctx, struct http_req *r);
};

/*
 * Creates the loop glue on base: a libuv loop embedded in base, an lws
 * context on it, and an accept watcher on listen_fd (which stays owned by the
 * caller and is never closed here; several processes may accept on it).
 * p and h are copied; ctx is passed to ws_open and http_request.
 * Returns NULL (logged) if lws cannot be initialised.
 */
struct loop *loop_new(struct event_base *base, int listen_fd,
		      const struct loop_params *p,
		      const struct loop_handlers *h, void *ctx);
/* Drops every connection (ws_closed is called for each) and frees l.
 * NULL is accepted. */
void loop_free(struct loop *l);
/* Graceful shutdown: stop accepting new sockets; existing ones continue. */
void loop_stop_accepting(struct loop *l);
/* Established WebSocket connections. */
size_t loop_conn_count(const struct loop *l);

/* Outgoing frames of c are binary (protobuf) instead of text (JSON). */
void loop_conn_set_binary(struct conn *c, int binary);
/*
 * Changes the write delay (a reload): 0 sends what is held at once; another
 * value applies to the next holds, those already held keep their time.
 */
void loop_set_write_delay(struct loop *l, int64_t ms);

/* loop_conn_send() flags */
#define LOOP_SEND_REPLY 0x1u    /* a reply to a command (or a ping that
				 * waits for one): never held */

/*
 * Queues one protocol message (a JSON object without newline, or one
 * length-delimited protobuf message).  Takes its own reference on msg (the
 * caller keeps its own).  At the end of the loop turn everything queued (up
 * to LOOP_FRAME_MAX bytes) goes out as ONE WebSocket message: '\n'-joined
 * for text connections, concatenated for binary ones.  With a write delay,
 * a connection whose last write is more recent than the delay is written
 * only when the delay since that write is over (everything queued by then in
 * one message), unless flags has LOOP_SEND_REPLY: a reply goes at the end of
 * the turn, after what was queued before it.
 * Returns 0, or -1 when the message was not queued: the connection is
 * closing, or the queue (held messages included) would exceed
 * queue_max_size, in which case the connection is closed with 3008 "slow"
 * without flushing the queue.
 */
int loop_conn_send(struct conn *c, struct sbuf *msg, unsigned flags);
/* loop_conn_send() of a copy of p[0..n). */
int loop_conn_send_copy(struct conn *c, const void *p, size_t n,
			unsigned flags);
/*
 * Flushes what is queued, then sends a close frame with code and reason
 * (truncated to 122 bytes), waits up to 5 s for the peer's close, drops the
 * connection; ws_closed follows.  Idempotent (the first call wins).
 */
void loop_conn_close(struct conn *c, uint16_t code, const char *reason);

/* Request accessors.  Strings stay valid until loop_http_respond(). */
const char *loop_http_method(struct http_req *r);     /* "GET", "POST"... */
const char *loop_http_path(struct http_req *r);       /* URL-decoded path */
const char *loop_http_query(struct http_req *r);      /* as loop_ws_info */
/* Header value by lower-case name ("x-api-key", "authorization"...),
 * repeated headers joined by ','; NULL if absent. */
const char *loop_http_header(struct http_req *r, const char *lower_name);
/* The body (NUL-terminated, not counted in *len); never NULL. */
const char *loop_http_body(struct http_req *r, size_t *len);
/*
 * Answers r and frees it: status, Content-Type exactly as given (NULL: none),
 * body copied.  Call exactly once per request, possibly later from another
 * libevent callback; if the client went away meanwhile it only frees.
 * HTTP/1.1 keep-alive is kept unless the client asked otherwise.
 */
void loop_http_respond(struct http_req *r, int status,
		       const char *content_type, const void *body, size_t len);

#endif
