/*
 * loop.c - the worker's event loop glue: libwebsockets on a libuv loop that is
 * embedded in the worker's libevent loop.  Runs in worker processes only.
 *
 * Why this shape: Debian 12's libwebsockets 4.1.6 has no libevent plug-in and
 * no external-poll support, and its own poll() loop scans every fd on each
 * wake-up.  Its libuv plug-in (libwebsockets-evlib-uv) does work on a
 * "foreign" uv loop that we own.  That uv loop is driven from libevent:
 *
 *   - uv_backend_fd() (an epoll fd) is watched for read;
 *   - a one-shot libevent timer follows uv_backend_timeout() (lws timeouts,
 *     close-ack waits, lws's own timers);
 *   - each wake-up runs uv_run(UV_RUN_NOWAIT) once (loop_pump()).
 *
 * THE TRAP: libuv applies watcher changes (uv_poll_start/stop, i.e. every
 * lws_callback_on_writable) only inside uv_run, when it next polls.  A change
 * made from a libevent callback (a publication arriving from the ring, an
 * API response) would sit unapplied until some unrelated fd wakes the uv
 * loop.  So every entry point here that touches lws state calls loop_kick(),
 * which makes one libevent event active: uv_run(NOWAIT) then runs once per
 * libevent loop iteration however many sends happened.  Changes made by lws
 * callbacks inside a uv_run have the same problem; after every run we look at
 * libuv's watcher queue and kick again while it is not empty.
 *
 * Sockets: the supervisor's listening fd is inherited and shared by all
 * workers; we accept with an evconnlistener and hand each socket to lws with
 * lws_adopt_socket_vhost() (the vhost does not listen).
 *
 * Memory: rx_buffer_size 256 (the default 4096 was ~78% of lws's per
 * connection cost), max_http_header_pool 64, per-connection state is the lws
 * per-session struct conn (about 64 bytes); the outgoing queue and the
 * reassembly buffer are allocated only while non-empty, there is no timer per
 * connection.  Incoming messages over 256 bytes arrive in pieces and are
 * reassembled here (size-limited as they grow).  tx_packet_size is set to the
 * largest frame we assemble so a batched frame leaves in one send() instead of
 * being cut in 4 KiB pieces and copied to lws's buflist.
 * Measured (Debian 12, lws 4.1.6, libuv 1.44, -O2, handler keeping no
 * per-connection state, each client sent and got back one small message,
 * growth of VmRSS / N): 10,000 idle WebSockets 1708 B each, 5,000: 1730 B
 * (struct lws ~840 B + uv_poll_t + lws per-session struct conn + malloc
 * overhead).  Kernel socket memory is extra.
 *
 * Known limits: HTTP/1.1 pipelined requests that arrive in the same segment
 * as a previous one are not answered (only sequential keep-alive works);
 * an unknown WebSocket subprotocol is refused by lws; the query string is
 * what lws gives (arguments URL-decoded, re-joined with '&').
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <libwebsockets.h>
#include <uv.h>

#include "buf.h"
#include "log.h"
#include "loop.h"
#include "xmalloc.h"

#define LOOP_MAGIC 0x4c4f4f50u          /* "LOOP" */
#define CONN_MAGIC 0x434f4e4eu          /* "CONN" */
#define REQ_MAGIC 0x48524551u           /* "HREQ" */

#define LOOP_RX_BUFFER 256
#define LOOP_CLOSE_TIMEOUT 5            /* s to flush before the close frame */
#define LOOP_REASON_MAX 122             /* close reason < 123 bytes */
#define LOOP_QUEUE_INIT 8

/* Outgoing queue of one connection: a ring of shared message buffers.
 * Exists only while non-empty. */
struct connq {
	size_t bytes;                   /* sum of queued message lengths */
	uint32_t head;
	uint32_t count;
	uint32_t cap;
	struct sbuf *items[];
};

enum conn_flag {
	CONN_F_WS = 1 << 0,             /* established WebSocket */
	CONN_F_BINARY = 1 << 1,         /* frames out are binary */
	CONN_F_CLOSING = 1 << 2,        /* loop_conn_close() or slow */
	CONN_F_NOFLUSH = 1 << 3         /* drop the queue, close at once */
};

/*
 * The lws per-session data of every wsi on our vhost: for an HTTP wsi only
 * req is used; for a WebSocket the rest.  lws allocates it zeroed and frees
 * it after LWS_CALLBACK_CLOSED / CLOSED_HTTP.
 */
struct conn {
	uint32_t magic;                 /* CONN_MAGIC while a live WebSocket */
	uint16_t close_code;
	uint8_t flags;                  /* enum conn_flag */
	uint32_t rx_len;                /* bytes of the message being built */
	uint32_t rx_cap;
	struct lws *wsi;
	void *user;                     /* from ws_open */
	struct connq *q;                /* NULL when nothing is queued */
	char *rx;                       /* reassembly; NULL between messages */
	char *close_reason;
	struct http_req *req;           /* HTTP: the request in progress */
};

struct req_hdr {
	struct req_hdr *next;
	char *name;
	char *value;
};

/*
 * An HTTP request, from its headers to its response.  Owned by the conn
 * (c->req) until the client goes away; then it is orphaned (wsi == NULL) and
 * freed by loop_http_respond().  Once responded it is freed by the writer.
 */
struct http_req {
	uint32_t magic;
	int responded;
	struct lws *wsi;                /* NULL once the client went away */
	struct loop *l;
	const char *method;
	char *path;
	char *query;
	struct buf body;
	struct req_hdr *hdrs;           /* values looked up so far */
	int status;
	char *ctype;
	char *resp;
	size_t resp_len;
};

struct loop {
	uint32_t magic;
	struct event_base *base;
	uv_loop_t uv;
	uv_prepare_t uv_keep;           /* keeps uv_backend_timeout() honest */
	struct lws_context *ctx;
	struct lws_vhost *vh;
	struct lws_protocols protocols[3];
	struct evconnlistener *lev;
	struct event *io_ev;            /* uv backend fd readable */
	struct event *timer_ev;         /* uv's next timeout */
	struct event *kick_ev;          /* made active to run uv once */
	struct event *accept_pause_ev;  /* re-enables accept after EMFILE */
	int kick_pending;
	struct loop_params p;
	char *ws_path;
	char **origins;
	struct loop_handlers h;
	void *hctx;
	size_t n_conns;
	char *wbuf;                     /* frame assembly, LWS_PRE headroom */
	size_t wcap;
};

static const char *const loop_method_names[] = {
	"GET", "POST", "OPTIONS", "PUT", "PATCH", "DELETE", "CONNECT", "HEAD",
	"GET"
};

static void loop_pump(struct loop *l);

/* ---- libuv inside libevent ---------------------------------------------- */

/*
 * Whether libuv holds watcher changes not yet given to epoll.  This peeks at
 * a private field of uv_loop_t (a queue head that points to itself when
 * empty); its layout changed in libuv 1.45.
 */
static int
loop_uv_changes_pending(const uv_loop_t *u)
{
#if UV_VERSION_HEX >= ((1 << 16) | (45 << 8))
	return u->watcher_queue.next != &u->watcher_queue;
#else
	return u->watcher_queue[0] != (const void *)&u->watcher_queue;
#endif
}

/* Runs uv_run(NOWAIT) once, soon, from the libevent loop. */
static void
loop_kick(struct loop *l)
{
	if (l->kick_pending)
		return;
	l->kick_pending = 1;
	event_active(l->kick_ev, EV_TIMEOUT, 0);
}

static void
loop_pump(struct loop *l)
{
	struct timeval tv;
	int t;

	l->kick_pending = 0;
	uv_run(&l->uv, UV_RUN_NOWAIT);
	if (loop_uv_changes_pending(&l->uv)) {
		loop_kick(l);
		return;
	}
	t = uv_backend_timeout(&l->uv);
	if (t == 0) {
		loop_kick(l);
	} else if (t > 0) {
		tv.tv_sec = t / 1000;
		tv.tv_usec = (t % 1000) * 1000;
		evtimer_add(l->timer_ev, &tv);
	} else {
		evtimer_del(l->timer_ev);
	}
}

static void
loop_pump_cb(evutil_socket_t fd, short what, void *arg)
{
	loop_pump(arg);
}

static void
loop_uv_keep_cb(uv_prepare_t *h)
{
}

/* lws log lines go to our log, without their trailing newline. */
static void
loop_lws_log(int level, const char *line)
{
	size_t n = strlen(line);

	while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		n--;
	if (level & LLL_ERR)
		log_error("lws: %.*s", (int)n, line);
	else if (level & LLL_WARN)
		log_warn("lws: %.*s", (int)n, line);
	else
		log_debug("lws: %.*s", (int)n, line);
}

/* ---- accept ------------------------------------------------------------- */

static void
loop_accept_cb(struct evconnlistener *lev, evutil_socket_t fd,
	       struct sockaddr *sa, int socklen, void *arg)
{
	struct loop *l = arg;

	/* On failure lws has closed the socket itself. */
	if (!lws_adopt_socket_vhost(l->vh, fd))
		log_warn("lws_adopt_socket_vhost(fd %d) failed", (int)fd);
	loop_kick(l);
}

static void
loop_accept_error_cb(struct evconnlistener *lev, void *arg)
{
	struct loop *l = arg;
	struct timeval tv = { 1, 0 };
	int err = EVUTIL_SOCKET_ERROR();

	log_error("accept() failed: %s", evutil_socket_error_to_string(err));
	if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
		/* Out of descriptors: pause instead of spinning. */
		evconnlistener_disable(lev);
		evtimer_add(l->accept_pause_ev, &tv);
	}
}

static void
loop_accept_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct loop *l = arg;

	if (l->lev)
		evconnlistener_enable(l->lev);
}

/* ---- helpers ------------------------------------------------------------ */

static struct loop *
loop_of(struct lws *wsi)
{
	return lws_context_user(lws_get_context(wsi));
}

/* Case-insensitive glob with '*' matching any run of characters. */
static int
loop_glob(const char *pat, const char *s)
{
	const char *star = NULL, *mark = NULL;

	while (*s) {
		if (*pat == '*') {
			star = pat++;
			mark = s;
		} else if (tolower((unsigned char)*pat) ==
			   tolower((unsigned char)*s)) {
			pat++;
			s++;
		} else if (star) {
			pat = star + 1;
			s = ++mark;
		} else {
			return 0;
		}
	}
	while (*pat == '*')
		pat++;
	return *pat == '\0';
}

static int
loop_origin_allowed(const struct loop *l, const char *origin)
{
	size_t i;

	for (i = 0; i < l->p.n_allowed_origins; i++)
		if (loop_glob(l->origins[i], origin))
			return 1;
	return 0;
}

/* Copy of header h, or NULL if absent or empty.  Caller frees. */
static char *
loop_hdr_dup(struct lws *wsi, enum lws_token_indexes h)
{
	int total = lws_hdr_total_length(wsi, h);
	int size;
	char *s;

	if (total <= 0)
		return NULL;
	/* lws_hdr_copy() puts a ',' between repeated headers. */
	for (size = total + 16; size <= 4 * total + 64; size *= 2) {
		s = xmalloc((size_t)size);
		if (lws_hdr_copy(wsi, s, size, h) >= 0)
			return s;
		free(s);
	}
	return NULL;
}

/* The URI arguments (lws splits and URL-decodes them), '&'-joined.
 * Caller frees. */
static char *
loop_args_dup(struct lws *wsi)
{
	struct buf b = BUF_INIT;
	int i, n;

	for (i = 0; (n = lws_hdr_fragment_length(wsi,
				WSI_TOKEN_HTTP_URI_ARGS, i)) > 0; i++) {
		if (b.len)
			buf_putc(&b, '&');
		buf_reserve(&b, (size_t)n + 1);
		if (lws_hdr_copy_fragment(wsi, b.data + b.len, n + 1,
					  WSI_TOKEN_HTTP_URI_ARGS, i) < 0)
			break;
		b.len += (size_t)n;
	}
	buf_cstr(&b);
	return buf_steal(&b, NULL);
}

static int
loop_query_wants_protobuf(const char *q)
{
	const char *p = q, *e;
	size_t n;

	while (*p) {
		e = strchr(p, '&');
		n = e ? (size_t)(e - p) : strlen(p);
		if ((n == 15 && !strncmp(p, "format=protobuf", n)) ||
		    (n == 20 && !strncmp(p, "cf_protocol=protobuf", n)))
			return 1;
		p += n;
		if (*p)
			p++;
	}
	return 0;
}

/* Makes room for n bytes after LWS_PRE in the shared write buffer. */
static unsigned char *
loop_wbuf(struct loop *l, size_t n)
{
	if (LWS_PRE + n > l->wcap) {
		l->wcap = LWS_PRE + n + 1024;
		free(l->wbuf);
		l->wbuf = xmalloc(l->wcap);
	}
	return (unsigned char *)l->wbuf + LWS_PRE;
}

/*
 * Writes a complete HTTP/1 response on wsi (headers and body in one
 * lws_write).  Returns 0 or -1 (the connection must be closed).
 */
static int
loop_http_write(struct loop *l, struct lws *wsi, int status,
		const char *ctype, const void *body, size_t len)
{
	size_t clen = ctype ? strlen(ctype) : 0;
	size_t room = 512 + clen + len;
	unsigned char *start = loop_wbuf(l, room), *p = start;
	unsigned char *end = start + room - len;

	if (lws_add_http_header_status(wsi, (unsigned int)status, &p, end) ||
	    (ctype && lws_add_http_header_by_token(wsi,
			WSI_TOKEN_HTTP_CONTENT_TYPE,
			(const unsigned char *)ctype, (int)clen, &p, end)) ||
	    lws_add_http_header_content_length(wsi, len, &p, end) ||
	    lws_finalize_http_header(wsi, &p, end)) {
		log_warn("HTTP response headers do not fit (status %d)",
			 status);
		return -1;
	}
	if (len)
		memcpy(p, body, len);
	p += len;
	if (lws_write(wsi, start, (size_t)(p - start), LWS_WRITE_HTTP_FINAL) < 0)
		return -1;
	return 0;
}

/* ---- outgoing queue ----------------------------------------------------- */

static void
loop_queue_free(struct conn *c)
{
	struct connq *q = c->q;
	uint32_t i;

	if (!q)
		return;
	for (i = 0; i < q->count; i++)
		sbuf_unref(q->items[(q->head + i) % q->cap]);
	free(q);
	c->q = NULL;
}

static void
loop_queue_push(struct conn *c, struct sbuf *msg)
{
	struct connq *q = c->q;
	uint32_t oldcap, wrapped;

	if (!q) {
		q = xmalloc(sizeof(*q) + LOOP_QUEUE_INIT * sizeof(q->items[0]));
		q->bytes = 0;
		q->head = 0;
		q->count = 0;
		q->cap = LOOP_QUEUE_INIT;
		c->q = q;
	} else if (q->count == q->cap) {
		oldcap = q->cap;
		q = xrealloc(q, sizeof(*q) + 2 * oldcap * sizeof(q->items[0]));
		q->cap = 2 * oldcap;
		/* unwrap the ring: move the part before head after the old end */
		wrapped = q->head + q->count > oldcap ?
			  q->head + q->count - oldcap : 0;
		memcpy(&q->items[oldcap], &q->items[0],
		       wrapped * sizeof(q->items[0]));
		c->q = q;
	}
	q->items[(q->head + q->count) % q->cap] = sbuf_ref(msg);
	q->count++;
	q->bytes += msg->len;
}

/*
 * Moves the first queued messages (up to LOOP_FRAME_MAX bytes, at least one)
 * into one frame in l->wbuf and releases them.  Returns the frame length.
 */
static size_t
loop_queue_take(struct loop *l, struct conn *c)
{
	struct connq *q = c->q;
	int text = !(c->flags & CONN_F_BINARY);
	size_t total = 0, add;
	uint32_t n = 0, i;
	unsigned char *p;
	struct sbuf *s;

	while (n < q->count) {
		s = q->items[(q->head + n) % q->cap];
		add = s->len + (text && n ? 1 : 0);
		if (n && total + add > LOOP_FRAME_MAX)
			break;
		total += add;
		n++;
	}
	p = loop_wbuf(l, total);
	for (i = 0; i < n; i++) {
		s = q->items[q->head];
		if (text && i)
			*p++ = '\n';
		memcpy(p, s->data, s->len);
		p += s->len;
		q->bytes -= s->len;
		sbuf_unref(s);
		q->head = (q->head + 1) % q->cap;
	}
	q->count -= n;
	if (!q->count)
		loop_queue_free(c);
	return total;
}

/* ---- WebSocket ---------------------------------------------------------- */

static int
loop_confirm_upgrade(struct loop *l, struct lws *wsi, const char *what)
{
	char *path, *origin;
	int ok;

	if (!what || strcmp(what, "websocket"))
		return 0;
	path = loop_hdr_dup(wsi, WSI_TOKEN_GET_URI);
	ok = path && !strcmp(path, l->ws_path);
	free(path);
	if (!ok) {
		if (loop_http_write(l, wsi, 404, "text/plain", NULL, 0))
			return -1;
		return 1;
	}
	origin = loop_hdr_dup(wsi, WSI_TOKEN_ORIGIN);
	ok = !origin || loop_origin_allowed(l, origin);
	if (!ok)
		log_info("WebSocket upgrade refused: origin \"%s\" not allowed",
			 origin);
	free(origin);
	if (!ok) {
		if (loop_http_write(l, wsi, 403, "text/plain", NULL, 0))
			return -1;
		return 1;
	}
	return 0;
}

static void
loop_ws_established(struct loop *l, struct lws *wsi, struct conn *c)
{
	struct loop_ws_info info;
	const struct lws_protocols *pr = lws_get_protocol(wsi);
	char addr[64] = "";
	char *query, *ua;

	memset(c, 0, sizeof(*c));
	c->magic = CONN_MAGIC;
	c->wsi = wsi;
	c->flags = CONN_F_WS;
	query = loop_args_dup(wsi);
	ua = loop_hdr_dup(wsi, WSI_TOKEN_HTTP_USER_AGENT);
	lws_get_peer_simple(wsi, addr, sizeof(addr));
	info.protobuf = (pr && pr->name &&
			 !strcmp(pr->name, "centrifuge-protobuf")) ||
			loop_query_wants_protobuf(query);
	info.remote_addr = addr;
	info.user_agent = ua ? ua : "";
	info.query = query;
	if (info.protobuf)
		c->flags |= CONN_F_BINARY;
	l->n_conns++;
	c->user = l->h.ws_open(l->hctx, c, &info);
	free(query);
	free(ua);
}

/* Starts the close of c from inside an lws callback: returns -1 for it. */
static int
loop_ws_fail(struct conn *c, uint16_t code, const char *reason)
{
	free(c->rx);
	c->rx = NULL;
	c->rx_len = c->rx_cap = 0;
	loop_queue_free(c);
	c->flags |= CONN_F_CLOSING | CONN_F_NOFLUSH;
	lws_close_reason(c->wsi, (enum lws_close_status)code,
			 (unsigned char *)reason, strlen(reason));
	return -1;
}

static int
loop_ws_receive(struct loop *l, struct conn *c, const char *in, size_t len)
{
	size_t limit = l->p.ws_message_size_limit;
	size_t remain, need, cap;
	int final, binary;

	if (c->magic != CONN_MAGIC || (c->flags & CONN_F_CLOSING))
		return 0;       /* input after our close is ignored */
	remain = lws_remaining_packet_payload(c->wsi);
	final = lws_is_final_fragment(c->wsi) && remain == 0;
	binary = lws_frame_is_binary(c->wsi);
	/* Refuse as soon as the frame header says the message is too big. */
	if ((size_t)c->rx_len + len + remain > limit)
		return loop_ws_fail(c, 1009, "message too big");
	if (final && c->rx_len == 0) {
		l->h.ws_message(c->user, in, len, binary);
		return 0;
	}
	need = (size_t)c->rx_len + len;
	if (need > c->rx_cap) {
		cap = c->rx_cap ? 2 * (size_t)c->rx_cap : 1024;
		if (cap < need + remain)
			cap = need + remain;
		if (cap > limit)
			cap = limit;
		c->rx = xrealloc(c->rx, cap ? cap : 1);
		c->rx_cap = (uint32_t)cap;
	}
	if (len)
		memcpy(c->rx + c->rx_len, in, len);
	c->rx_len = (uint32_t)need;
	if (final) {
		l->h.ws_message(c->user, c->rx, c->rx_len, binary);
		/* the handler may have closed c, but c itself is still ours */
		free(c->rx);
		c->rx = NULL;
		c->rx_len = c->rx_cap = 0;
	}
	return 0;
}

static int
loop_ws_writeable(struct loop *l, struct conn *c)
{
	size_t n;

	if (c->magic != CONN_MAGIC)
		return 0;
	if ((c->flags & CONN_F_CLOSING) &&
	    ((c->flags & CONN_F_NOFLUSH) || !c->q)) {
		const char *r = c->close_reason ? c->close_reason : "";

		lws_close_reason(c->wsi, (enum lws_close_status)c->close_code,
				 (unsigned char *)r, strlen(r));
		/*
		 * Not "return -1": from a writeable callback lws 4.1 takes that
		 * as a dead socket and drops it without the close frame.  A
		 * synchronous kill goes through the polite close instead: the
		 * close frame is queued, then lws waits 5 s for the peer's.
		 */
		lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK,
				LWS_TO_KILL_SYNC);
		return 0;
	}
	if (!c->q)
		return 0;
	n = loop_queue_take(l, c);
	if (lws_write(c->wsi, (unsigned char *)l->wbuf + LWS_PRE, n,
		      (c->flags & CONN_F_BINARY) ? LWS_WRITE_BINARY :
						   LWS_WRITE_TEXT) < 0)
		return -1;
	/* The close frame goes in a later turn, once lws has sent this. */
	if (c->q || (c->flags & CONN_F_CLOSING))
		lws_callback_on_writable(c->wsi);
	return 0;
}

static void
loop_ws_closed(struct loop *l, struct conn *c)
{
	void *user;

	if (c->magic != CONN_MAGIC)
		return;
	user = c->user;
	loop_queue_free(c);
	free(c->rx);
	free(c->close_reason);
	memset(c, 0, sizeof(*c));
	l->n_conns--;
	l->h.ws_closed(user);
}

/* ---- HTTP --------------------------------------------------------------- */

static void
loop_req_free(struct http_req *r)
{
	struct req_hdr *h, *next;

	for (h = r->hdrs; h; h = next) {
		next = h->next;
		free(h->name);
		free(h->value);
		free(h);
	}
	free(r->path);
	free(r->query);
	buf_free(&r->body);
	free(r->ctype);
	free(r->resp);
	r->magic = 0;
	free(r);
}

/* Answers status with an empty body, drops the request, asks for a close. */
static int
loop_http_refuse(struct loop *l, struct lws *wsi, struct conn *c, int status)
{
	if (c->req) {
		loop_req_free(c->req);
		c->req = NULL;
	}
	loop_http_write(l, wsi, status, "text/plain", NULL, 0);
	return -1;
}

static void
loop_http_dispatch(struct loop *l, struct http_req *r)
{
	buf_cstr(&r->body);
	l->h.http_request(l->hctx, r);
}

static int
loop_http_start(struct loop *l, struct lws *wsi, struct conn *c,
		const char *uri, size_t urilen)
{
	struct http_req *r;
	char *uri_ptr, *cl;
	unsigned long long clen = 0;
	int meth, uri_len, has_cl;

	if (c->req) {                   /* cannot happen on h1 */
		log_warn("HTTP request while another is in progress");
		return -1;
	}
	meth = lws_http_get_uri_and_method(wsi, &uri_ptr, &uri_len);
	r = xcalloc(1, sizeof(*r));
	r->magic = REQ_MAGIC;
	r->wsi = wsi;
	r->l = l;
	r->method = meth >= 0 && (size_t)meth < sizeof(loop_method_names) /
		    sizeof(loop_method_names[0]) ? loop_method_names[meth] :
		    "GET";
	r->path = xstrndup(uri ? uri : "/", uri ? urilen : 1);
	r->query = loop_args_dup(wsi);
	buf_init(&r->body);
	c->req = r;

	cl = loop_hdr_dup(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH);
	has_cl = cl != NULL;
	if (cl) {
		char *e;

		errno = 0;
		clen = strtoull(cl, &e, 10);
		if (errno || e == cl || *e) {
			free(cl);
			return loop_http_refuse(l, wsi, c, 400);
		}
		free(cl);
	}
	if (clen > l->p.http_body_limit)
		return loop_http_refuse(l, wsi, c, 413);
	if (!has_cl && (meth == LWSHUMETH_POST || meth == LWSHUMETH_PUT ||
			meth == LWSHUMETH_PATCH))
		return loop_http_refuse(l, wsi, c, 411);
	/* lws delivers a body (HTTP_BODY..._COMPLETION) for a positive
	 * Content-Length, and for a POST with an explicit zero one. */
	if (clen > 0 || (has_cl && meth == LWSHUMETH_POST))
		return 0;
	loop_http_dispatch(l, r);
	return 0;
}

static int
loop_http_body_chunk(struct loop *l, struct lws *wsi, struct conn *c,
		     const void *in, size_t len)
{
	struct http_req *r = c->req;

	if (!r || r->responded)
		return 0;
	if (r->body.len + len > l->p.http_body_limit)
		return loop_http_refuse(l, wsi, c, 413);
	buf_append(&r->body, in, len);
	return 0;
}

static int
loop_http_writeable(struct loop *l, struct lws *wsi, struct conn *c)
{
	struct http_req *r = c->req;
	int rc;

	if (!r || !r->responded)
		return 0;
	c->req = NULL;
	rc = loop_http_write(l, wsi, r->status, r->ctype, r->resp,
			     r->resp_len);
	loop_req_free(r);
	if (rc)
		return -1;
	/* keep-alive: nonzero means lws wants the connection closed */
	if (lws_http_transaction_completed(wsi))
		return -1;
	return 0;
}

static void
loop_http_closed(struct conn *c)
{
	struct http_req *r = c->req;

	if (!r)
		return;
	c->req = NULL;
	if (r->responded)
		loop_req_free(r);
	else
		r->wsi = NULL;  /* orphan: freed by loop_http_respond() */
}

/* ---- the lws protocol callback ------------------------------------------ */

static int
loop_lws_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user,
	    void *in, size_t len)
{
	struct conn *c = user;
	struct loop *l;

	switch (reason) {
	case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
		return loop_confirm_upgrade(loop_of(wsi), wsi, in);
	case LWS_CALLBACK_ESTABLISHED:
		if (!c)
			return -1;
		loop_ws_established(loop_of(wsi), wsi, c);
		return 0;
	case LWS_CALLBACK_RECEIVE:
		return c ? loop_ws_receive(loop_of(wsi), c, in, len) : 0;
	case LWS_CALLBACK_SERVER_WRITEABLE:
		return c ? loop_ws_writeable(loop_of(wsi), c) : 0;
	case LWS_CALLBACK_CLOSED:
		if (c)
			loop_ws_closed(loop_of(wsi), c);
		return 0;
	case LWS_CALLBACK_HTTP:
		if (!c)
			return -1;
		return loop_http_start(loop_of(wsi), wsi, c, in, len);
	case LWS_CALLBACK_HTTP_BODY:
		l = loop_of(wsi);
		return c ? loop_http_body_chunk(l, wsi, c, in, len) : 0;
	case LWS_CALLBACK_HTTP_BODY_COMPLETION:
		if (c && c->req && !c->req->responded)
			loop_http_dispatch(loop_of(wsi), c->req);
		return 0;
	case LWS_CALLBACK_HTTP_WRITEABLE:
		return c ? loop_http_writeable(loop_of(wsi), wsi, c) : 0;
	case LWS_CALLBACK_CLOSED_HTTP:
		if (c)
			loop_http_closed(c);
		return 0;
	default:
		return 0;
	}
}

/* ---- public API --------------------------------------------------------- */

struct loop *
loop_new(struct event_base *base, int listen_fd, const struct loop_params *p,
	 const struct loop_handlers *h, void *ctx)
{
	struct lws_context_creation_info info;
	void *foreign[1];
	struct loop *l;
	size_t i;
	int rc;

	ASSERT(base && p && h && p->ws_path);
	ASSERT(h->ws_open && h->ws_message && h->ws_closed && h->http_request);
	l = xcalloc(1, sizeof(*l));
	l->magic = LOOP_MAGIC;
	l->base = base;
	l->p = *p;
	l->h = *h;
	l->hctx = ctx;
	l->ws_path = xstrdup(p->ws_path);
	l->p.ws_path = l->ws_path;
	l->origins = xcalloc(p->n_allowed_origins + 1, sizeof(char *));
	for (i = 0; i < p->n_allowed_origins; i++)
		l->origins[i] = xstrdup(p->allowed_origins[i]);
	l->p.allowed_origins = (const char *const *)l->origins;

	rc = uv_loop_init(&l->uv);
	if (rc) {
		log_error("uv_loop_init: %s", uv_strerror(rc));
		goto fail_uv;
	}
	uv_prepare_init(&l->uv, &l->uv_keep);
	uv_prepare_start(&l->uv_keep, loop_uv_keep_cb);

	l->io_ev = event_new(base, uv_backend_fd(&l->uv), EV_READ | EV_PERSIST,
			     loop_pump_cb, l);
	l->timer_ev = evtimer_new(base, loop_pump_cb, l);
	l->kick_ev = event_new(base, -1, 0, loop_pump_cb, l);
	l->accept_pause_ev = evtimer_new(base, loop_accept_resume_cb, l);
	ASSERT(l->io_ev && l->timer_ev && l->kick_ev && l->accept_pause_ev);
	event_add(l->io_ev, NULL);

	/* Both subprotocols share one handler; [0] also serves plain HTTP
	 * and upgrades that name no subprotocol. */
	for (i = 0; i < 2; i++) {
		l->protocols[i].name = i ? "centrifuge-protobuf" :
					   "centrifuge-json";
		l->protocols[i].callback = loop_lws_cb;
		l->protocols[i].per_session_data_size = sizeof(struct conn);
		l->protocols[i].rx_buffer_size = LOOP_RX_BUFFER;
		l->protocols[i].tx_packet_size = LOOP_FRAME_MAX + 64;
	}

	lws_set_log_level(LLL_ERR | LLL_WARN, loop_lws_log);
	memset(&info, 0, sizeof(info));
	foreign[0] = &l->uv;
	info.options = LWS_SERVER_OPTION_LIBUV |
		       LWS_SERVER_OPTION_EXPLICIT_VHOSTS |
		       LWS_SERVER_OPTION_VALIDATE_UTF8;
	info.foreign_loops = foreign;
	info.user = l;
	info.max_http_header_pool = 64;
	info.server_string = "centrifugo";
	l->ctx = lws_create_context(&info);
	if (!l->ctx) {
		log_error("lws_create_context failed (is the libuv event "
			  "library libwebsockets-evlib-uv installed?)");
		goto fail_lws;
	}
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.protocols = l->protocols;
	info.vhost_name = "centrifugo";
	l->vh = lws_create_vhost(l->ctx, &info);
	if (!l->vh) {
		log_error("lws_create_vhost failed");
		goto fail_lws;
	}

	if (listen_fd >= 0) {
		/* evconnlistener loops on accept() until EAGAIN: an inherited
		 * socket may still be blocking. */
		if (evutil_make_socket_nonblocking(listen_fd)) {
			log_error("fcntl(fd %d, O_NONBLOCK) failed", listen_fd);
			goto fail_lws;
		}
		l->lev = evconnlistener_new(base, loop_accept_cb, l,
					    LEV_OPT_CLOSE_ON_EXEC, 0,
					    listen_fd);
		if (!l->lev) {
			log_error("evconnlistener_new(fd %d) failed",
				  listen_fd);
			goto fail_lws;
		}
		evconnlistener_set_error_cb(l->lev, loop_accept_error_cb);
	}
	loop_kick(l);
	return l;

fail_lws:
	loop_free(l);
	return NULL;
fail_uv:
	free(l->ws_path);
	for (i = 0; i < p->n_allowed_origins; i++)
		free(l->origins[i]);
	free(l->origins);
	free(l);
	return NULL;
}

void
loop_free(struct loop *l)
{
	size_t i;
	int n;

	if (!l)
		return;
	ASSERT(l->magic == LOOP_MAGIC);
	if (l->lev)
		evconnlistener_free(l->lev);
	l->lev = NULL;
	/* Closes every wsi: ws_closed runs for each WebSocket. */
	if (l->ctx)
		lws_context_destroy(l->ctx);
	uv_prepare_stop(&l->uv_keep);
	uv_close((uv_handle_t *)&l->uv_keep, NULL);
	/* Let lws's handles finish closing. */
	for (n = 0; n < 10000 && uv_loop_alive(&l->uv); n++)
		uv_run(&l->uv, UV_RUN_NOWAIT);
	/* lws 4.1 finishes a foreign-loop destroy only when called again
	 * outside of its service callbacks. */
	if (l->ctx)
		lws_context_destroy(l->ctx);
	l->ctx = NULL;
	if (uv_loop_close(&l->uv))
		log_warn("uv_loop_close: handles still open at loop_free");
	event_free(l->io_ev);
	event_free(l->timer_ev);
	event_free(l->kick_ev);
	event_free(l->accept_pause_ev);
	free(l->ws_path);
	for (i = 0; i < l->p.n_allowed_origins; i++)
		free(l->origins[i]);
	free(l->origins);
	free(l->wbuf);
	l->magic = 0;
	free(l);
}

void
loop_stop_accepting(struct loop *l)
{
	ASSERT(l && l->magic == LOOP_MAGIC);
	if (l->lev)
		evconnlistener_free(l->lev);
	l->lev = NULL;
	evtimer_del(l->accept_pause_ev);
}

size_t
loop_conn_count(const struct loop *l)
{
	ASSERT(l && l->magic == LOOP_MAGIC);
	return l->n_conns;
}

void
loop_conn_set_binary(struct conn *c, int binary)
{
	ASSERT(c && c->magic == CONN_MAGIC);
	if (binary)
		c->flags |= CONN_F_BINARY;
	else
		c->flags &= (uint8_t)~CONN_F_BINARY;
}

/* Starts a close from outside lws callbacks. */
static void
loop_conn_start_close(struct conn *c, uint16_t code, const char *reason,
		      int noflush)
{
	c->flags |= CONN_F_CLOSING;
	if (noflush) {
		c->flags |= CONN_F_NOFLUSH;
		loop_queue_free(c);
	}
	c->close_code = code;
	c->close_reason = xstrndup(reason ? reason : "", LOOP_REASON_MAX);
	/* Bounds the flush; lws re-arms 5 s for the close ack itself. */
	lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LOOP_CLOSE_TIMEOUT);
	lws_callback_on_writable(c->wsi);
	loop_kick(loop_of(c->wsi));
}

int
loop_conn_send(struct conn *c, struct sbuf *msg)
{
	struct loop *l;
	size_t queued;

	ASSERT(c && c->magic == CONN_MAGIC && msg);
	if (c->flags & CONN_F_CLOSING)
		return -1;
	l = loop_of(c->wsi);
	queued = c->q ? c->q->bytes : 0;
	if (queued + msg->len > l->p.queue_max_size) {
		loop_conn_start_close(c, 3008, "slow", 1);
		return -1;
	}
	loop_queue_push(c, msg);
	if (c->q->count == 1) {
		/* first message: the queue was empty, nobody asked yet */
		lws_callback_on_writable(c->wsi);
		loop_kick(l);
	}
	return 0;
}

int
loop_conn_send_copy(struct conn *c, const void *p, size_t n)
{
	struct sbuf *s = sbuf_new(p, n);
	int rc = loop_conn_send(c, s);

	sbuf_unref(s);
	return rc;
}

void
loop_conn_close(struct conn *c, uint16_t code, const char *reason)
{
	ASSERT(c && c->magic == CONN_MAGIC);
	if (c->flags & CONN_F_CLOSING)
		return;
	loop_conn_start_close(c, code, reason, 0);
}

const char *
loop_http_method(struct http_req *r)
{
	ASSERT(r && r->magic == REQ_MAGIC);
	return r->method;
}

const char *
loop_http_path(struct http_req *r)
{
	ASSERT(r && r->magic == REQ_MAGIC);
	return r->path;
}

const char *
loop_http_query(struct http_req *r)
{
	ASSERT(r && r->magic == REQ_MAGIC);
	return r->query;
}

/* Looks a header up in lws's header table (known or custom header). */
static char *
loop_http_header_lookup(struct lws *wsi, const char *name)
{
	size_t nlen = strlen(name);
	const char *tok;
	char *cname, *v;
	int t, n;

	for (t = 0; t < WSI_TOKEN_COUNT; t++) {
		tok = (const char *)lws_token_to_string(
				(enum lws_token_indexes)t);
		if (tok && !strncmp(tok, name, nlen) && tok[nlen] == ':' &&
		    tok[nlen + 1] == '\0')
			return loop_hdr_dup(wsi, (enum lws_token_indexes)t);
	}
	cname = xmalloc(nlen + 2);
	memcpy(cname, name, nlen);
	cname[nlen] = ':';
	cname[nlen + 1] = '\0';
	n = lws_hdr_custom_length(wsi, cname, (int)nlen + 1);
	v = NULL;
	if (n >= 0) {
		v = xmalloc((size_t)n + 1);
		if (lws_hdr_custom_copy(wsi, v, n + 1, cname,
					(int)nlen + 1) < 0) {
			free(v);
			v = NULL;
		}
	}
	free(cname);
	return v;
}

const char *
loop_http_header(struct http_req *r, const char *lower_name)
{
	struct req_hdr *h;
	char *v;

	ASSERT(r && r->magic == REQ_MAGIC && lower_name);
	for (h = r->hdrs; h; h = h->next)
		if (!strcmp(h->name, lower_name))
			return h->value;
	if (!r->wsi)
		return NULL;
	v = loop_http_header_lookup(r->wsi, lower_name);
	if (!v)
		return NULL;
	h = xmalloc(sizeof(*h));
	h->name = xstrdup(lower_name);
	h->value = v;
	h->next = r->hdrs;
	r->hdrs = h;
	return v;
}

const char *
loop_http_body(struct http_req *r, size_t *len)
{
	ASSERT(r && r->magic == REQ_MAGIC);
	if (len)
		*len = r->body.len;
	return buf_cstr(&r->body);
}

void
loop_http_respond(struct http_req *r, int status, const char *content_type,
		  const void *body, size_t len)
{
	ASSERT(r && r->magic == REQ_MAGIC && !r->responded);
	if (!r->wsi) {
		loop_req_free(r);
		return;
	}
	r->responded = 1;
	r->status = status;
	r->ctype = content_type ? xstrdup(content_type) : NULL;
	r->resp = len ? xmemdup(body, len) : NULL;
	r->resp_len = len;
	lws_callback_on_writable(r->wsi);
	loop_kick(r->l);
}
