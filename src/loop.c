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
 * workers; we accept with an evconnlistener.  Plain HTTP/1.1 (the server
 * API, /health, /metrics) is read, parsed and answered here, with
 * pipelining (responses in request order); a WebSocket upgrade is handed to
 * lws with lws_adopt_socket_vhost_readbuf() and the bytes already read (the
 * vhost does not listen).  Why not lws for HTTP: lws 4.1 cannot serve two
 * requests that arrive in one segment (see the HTTP section).
 *
 * Writes to WebSockets (the fan-out hot path): loop_conn_send() only queues
 * and lists the connection; at the end of the loop turn (loop_pump, where
 * uv_run is kicked anyway) each listed connection's queue goes out as one
 * frame with a direct lws_write() when lws holds no unsent part of an
 * earlier one.  lws_callback_on_writable() is used only when the socket is
 * full: through libuv every call is a uv_poll_start (an EPOLL_CTL_DEL then
 * an ADD), and so is dropping POLLOUT after the write, which was a third of
 * the worker's CPU when each delivery went through it.  With
 * client.write_delay a recently written connection is not listed but held
 * until its due time (see "write delay"), so that many messages share one
 * frame and one send().
 *
 * Memory: rx_buffer_size 256 (the default 4096 was ~78% of lws's per
 * connection cost), max_http_header_pool 64, per-connection state is the lws
 * per-session struct conn (about 72 bytes); the outgoing queue and the
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
 * Known limits: an unknown WebSocket subprotocol is refused by lws; HTTP
 * request bodies need Content-Length (no chunked upload: 411); at most
 * LOOP_HTTP_PIPELINE_MAX unanswered requests per connection are dispatched,
 * the rest wait in the socket.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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
#define LOOP_LWS_LOG_LEVEL (LLL_ERR | LLL_WARN)
#define LOOP_CLOSE_TIMEOUT 5            /* s to flush before the close frame */
#define LOOP_REASON_MAX 122             /* close reason < 123 bytes */
#define LOOP_QUEUE_INIT 8               /* a power of two, as every cap */
#define LOOP_QUEUE_SPARE 256            /* empty queues kept for reuse */
#define LOOP_QUEUE_SPARE_CAP 32         /* ... when their cap is at most */
#define LOOP_HTTP_HEAD_MAX 16384        /* request line + headers */
#define LOOP_HTTP_PIPELINE_MAX 32       /* unanswered requests per conn */
#define LOOP_HTTP_IDLE_TIMEOUT 5        /* s: idle keep-alive (as lws) */
#define LOOP_HTTP_READ_TIMEOUT 20       /* s: to receive a whole request */

/*
 * The vhost's retry and idle policy: no "validity" (lws's own idle ping at
 * 300 s, hangup at 310 s).  With the context default every adopted wsi
 * inserts a timer into lws's per-thread sorted timer list, and each insert
 * walks the list from its head: the newest deadline is the latest, so with
 * N connections every accept cost O(N) cache misses (22% of the connect
 * phase's CPU at 5,000 connections).  Liveness is the client layer's job
 * (protocol pings on the wheel, see wheel.h).
 */
static const lws_retry_bo_t loop_no_validity;

/* Outgoing queue of one connection: a ring of shared message buffers (cap
 * is a power of two: an index is masked, not divided).
 * Exists only while non-empty.  A connection held by write_delay (see
 * "write delay" below) is always one with a queue, so its links in the held
 * list live here and cost an idle connection nothing. */
struct connq {
	size_t bytes;                   /* sum of queued message lengths */
	uint32_t head;
	uint32_t count;
	uint32_t cap;
	uint32_t due;                   /* held: write at this loop_ms() */
	struct conn *hprev, *hnext;     /* held: l->held list, by due */
	struct sbuf *items[];
};

enum conn_flag {
	CONN_F_WS = 1 << 0,             /* established WebSocket */
	CONN_F_BINARY = 1 << 1,         /* frames out are binary */
	CONN_F_CLOSING = 1 << 2,        /* loop_conn_close() or slow */
	CONN_F_NOFLUSH = 1 << 3,        /* drop the queue, close at once */
	CONN_F_DIRTY = 1 << 4,          /* listed in loop.dirty */
	CONN_F_HELD = 1 << 5,           /* in l->held_head list (write_delay) */
	CONN_F_NOW = 1 << 6,            /* write at this flush, do not hold */
	CONN_F_REPLY = 1 << 7           /* ... because a reply is queued */
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
	uint32_t last_write;            /* loop_ms() of the last frame out */
	struct lws *wsi;
	struct loop *loop;              /* = loop_of(wsi), without the
					   dereference of wsi per delivery */
	void *user;                     /* from ws_open */
	struct connq *q;                /* NULL when nothing is queued */
	char *rx;                       /* reassembly; NULL between messages */
	char *close_reason;
};

struct req_hdr {
	struct req_hdr *next;
	char *name;
	char *value;
};

/*
 * An HTTP request, from its headers to its response.  It belongs to its
 * connection's hconn list, in arrival order, until its response has been
 * written (then the writer frees it) or the client went away (then it is an
 * orphan, hc == NULL, freed by loop_http_respond()).
 */
struct http_req {
	uint32_t magic;
	uint8_t dispatched;             /* complete, handed to a handler */
	uint8_t responded;              /* loop_http_respond() was called */
	uint8_t last;                   /* the connection closes after it */
	struct loop *l;
	struct hconn *hc;               /* NULL: orphan */
	struct http_req *next;          /* in hc's list */
	const char *method;
	char *path;
	char *query;
	char *raw;                      /* header lines, for lookups */
	struct buf body;
	struct req_hdr *hdrs;           /* values looked up so far */
	int status;
	char *ctype;
	char *resp;
	size_t resp_len;
};

/* One plain HTTP/1.1 connection, served by loop.c itself (see HTTP). */
struct hconn {
	struct loop *l;
	int fd;                         /* -1 once handed to lws */
	uint8_t listed;                 /* in l->hready */
	uint8_t closing;                /* parse no more requests */
	uint8_t close_sent;             /* a "connection: close" went out */
	uint8_t rd_eof;                 /* the client sent FIN (or error) */
	uint8_t upgrade;                /* hand to lws once answered */
	unsigned npending;              /* requests in the list */
	struct http_req *head, *tail;   /* dispatched, not yet written */
	struct buf in;                  /* read, not yet parsed */
	size_t in_off;
	struct buf out;                 /* response bytes not yet sent */
	size_t off;                     /* sent part of out */
	struct event *rev;              /* readable */
	struct event *wev;              /* socket full: wait for EV_WRITE */
	struct event *tev;              /* idle / slow request timeout */
	struct hconn *prev, *next;      /* l->hconns */
};

struct loop {
	uint32_t magic;
	struct event_base *base;
	uv_loop_t uv;
	uv_prepare_t uv_keep;           /* keeps uv_backend_timeout() honest */
	struct lws_context *ctx;
	struct lws_vhost *vh;
	long lws_max_fds;               /* lws's descriptor table size */
	struct lws_protocols protocols[3];
	struct evconnlistener *lev;
	struct event *io_ev;            /* uv backend fd readable */
	struct event *timer_ev;         /* uv's next timeout */
	struct event *kick_ev;          /* made active to run uv once */
	struct event *accept_pause_ev;  /* re-enables accept after EMFILE */
	int kick_pending;
	int in_pump;                    /* inside loop_pump() */
	int nodelay_inherited;          /* TCP_NODELAY set on the listener */
	/* WebSockets that got messages this turn, written at its end
	 * (loop_flush); closed ones are NULLed out. */
	struct conn **dirty;
	size_t n_dirty;
	size_t dirty_cap;
	/* write_delay (ms, 0 = off): connections whose frames wait, in
	 * order of due time, and the one timer for all of them */
	uint32_t write_delay;
	struct conn *held_head, *held_tail;
	struct event *held_ev;
	struct hconn *hconns;           /* every HTTP connection */
	/* HTTP connections whose first pending response is ready */
	struct hconn **hready;
	size_t n_hready;
	size_t hready_cap;
	struct loop_params p;
	char *ws_path;
	char **origins;
	struct loop_handlers h;
	void *hctx;
	size_t n_conns;
	char *wbuf;                     /* frame assembly, LWS_PRE headroom */
	size_t wcap;
	/* Emptied queues (cap at most LOOP_QUEUE_SPARE_CAP), reused by the
	 * next push: a delivery to an idle connection allocates nothing, nor
	 * does a connection whose batches take a few more than
	 * LOOP_QUEUE_INIT messages (write_delay) at each refill. */
	struct connq *spare[LOOP_QUEUE_SPARE];
	size_t n_spare;
};

static const char *const loop_method_names[] = {
	"GET", "POST", "OPTIONS", "PUT", "PATCH", "DELETE", "CONNECT", "HEAD",
	"GET"
};

static void loop_pump(struct loop *l);
static void loop_flush(struct loop *l);
static void loop_http_flush(struct loop *l);
static void loop_hconn_new(struct loop *l, int fd);
static void loop_hconn_free(struct hconn *hc);
static void loop_hconn_wev_cb(evutil_socket_t fd, short what, void *arg);

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
	l->in_pump = 1;
	/* What libevent callbacks queued this turn, then lws's own events,
	 * then what lws callbacks queued during uv_run. */
	loop_flush(l);
	uv_run(&l->uv, UV_RUN_NOWAIT);
	loop_flush(l);
	l->in_pump = 0;
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
	/* lws 4.1 logs every lws_adopt_socket_vhost_readbuf() as an error */
	if (strstr(line, "adopt_socket_readbuf: calling service") ||
	    strstr(line, "adopt_socket_readbuf: deferring handling ah"))
		return;
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
	int one = 1;

	/* responses and pushes are whole messages: no Nagle delay (Linux
	 * gives accepted sockets the listener's setting, see loop_new) */
	if (!l->nodelay_inherited)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	loop_hconn_new(l, fd);
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

/* ---- write delay -------------------------------------------------------- */

/*
 * client.write_delay, adaptive.  A connection whose last push-carrying frame
 * left write_delay ago or longer is written at the end of the loop turn, as
 * without the option; one that wrote more recently is "held": what it is
 * sent waits in its queue until write_delay after that write, then leaves as
 * one frame (one send()).  So a connection that gets a message now and then
 * pays nothing, and one that gets hundreds per second pays one send() per
 * write_delay.  A reply to a command is never held: it takes the held pushes
 * queued before it along, in order, and does not count as a write (the
 * first push after a command is not delayed because of the reply).
 *
 * The held connections form one list ordered by due time, with one libevent
 * timer armed for its head.  Every hold is "last write + write_delay" with
 * a last write in the past, so the list is a FIFO and appending is O(1); a
 * reload that shortens the delay is the only case where an insert walks
 * back from the tail.  A held connection always has a queue, so the links
 * live in struct connq.  Times are milliseconds of CLOCK_MONOTONIC modulo
 * 2^32 (loop_ms), compared by unsigned difference: a connection quiet for
 * 49.7 days may look recent and be held once, at most write_delay.
 */

static uint32_t
loop_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint32_t)((uint64_t)ts.tv_sec * 1000 +
			  (uint64_t)ts.tv_nsec / 1000000);
}

/* Arms the held timer for the list head (or stops it: empty list). */
static void
loop_held_arm(struct loop *l, uint32_t now)
{
	struct timeval tv;
	uint32_t wait;

	if (!l->held_head) {
		evtimer_del(l->held_ev);
		return;
	}
	wait = (int32_t)(l->held_head->q->due - now) > 0 ?
	       l->held_head->q->due - now : 0;
	tv.tv_sec = wait / 1000;
	tv.tv_usec = (suseconds_t)(wait % 1000) * 1000;
	evtimer_add(l->held_ev, &tv);
}

/* Holds c (which has a queue) until due. */
static void
loop_hold(struct loop *l, struct conn *c, uint32_t due, uint32_t now)
{
	struct connq *q = c->q;
	struct conn *after = l->held_tail;

	ASSERT(q && !(c->flags & CONN_F_HELD));
	while (after && (int32_t)(after->q->due - due) > 0)
		after = after->q->hprev;
	q->due = due;
	q->hprev = after;
	q->hnext = after ? after->q->hnext : l->held_head;
	if (q->hnext)
		q->hnext->q->hprev = c;
	else
		l->held_tail = c;
	if (after)
		after->q->hnext = c;
	else
		l->held_head = c;
	c->flags |= CONN_F_HELD;
	if (l->held_head == c)
		loop_held_arm(l, now);
}

/* Takes c out of the held list.  The timer is left as it is: at worst it
 * fires once for nothing and re-arms for the new head. */
static void
loop_unhold(struct loop *l, struct conn *c)
{
	struct connq *q = c->q;

	if (!(c->flags & CONN_F_HELD))
		return;
	if (q->hprev)
		q->hprev->q->hnext = q->hnext;
	else
		l->held_head = q->hnext;
	if (q->hnext)
		q->hnext->q->hprev = q->hprev;
	else
		l->held_tail = q->hprev;
	q->hprev = q->hnext = NULL;
	c->flags &= (uint8_t)~CONN_F_HELD;
}

/* Lists c to be written at the end of this loop turn (loop_flush). */
static void
loop_dirty_add(struct loop *l, struct conn *c)
{
	if (c->flags & CONN_F_DIRTY)
		return;
	if (l->n_dirty == l->dirty_cap) {
		l->dirty_cap = l->dirty_cap ? 2 * l->dirty_cap : 256;
		l->dirty = xrealloc(l->dirty, l->dirty_cap *
				    sizeof(l->dirty[0]));
	}
	l->dirty[l->n_dirty++] = c;
	c->flags |= CONN_F_DIRTY;
	if (!l->in_pump)
		loop_kick(l);
}

/* Releases every held connection due by now (or all: every != 0). */
static void
loop_held_release(struct loop *l, int every)
{
	uint32_t now = loop_ms();
	struct conn *c;

	while ((c = l->held_head) &&
	       (every || (int32_t)(now - c->q->due) >= 0)) {
		loop_unhold(l, c);
		c->flags |= CONN_F_NOW;
		loop_dirty_add(l, c);
	}
	loop_held_arm(l, now);
}

static void
loop_held_cb(evutil_socket_t fd, short what, void *arg)
{
	loop_held_release(arg, 0);
}

/* ---- outgoing queue ----------------------------------------------------- */

/* Drops c's queue; a small one is kept in l->spare for reuse. */
static void
loop_queue_free(struct loop *l, struct conn *c)
{
	struct connq *q = c->q;
	uint32_t i;

	if (!q)
		return;
	loop_unhold(l, c);
	for (i = 0; i < q->count; i++)
		sbuf_unref(q->items[(q->head + i) & (q->cap - 1)]);
	c->q = NULL;
	if (q->cap <= LOOP_QUEUE_SPARE_CAP && l->n_spare < LOOP_QUEUE_SPARE)
		l->spare[l->n_spare++] = q;
	else
		free(q);
}

static void
loop_queue_push(struct loop *l, struct conn *c, struct sbuf *msg)
{
	struct connq *q = c->q;
	uint32_t oldcap, wrapped;

	if (!q) {
		if (l->n_spare) {
			q = l->spare[--l->n_spare];     /* keeps its cap */
		} else {
			q = xmalloc(sizeof(*q) +
				    LOOP_QUEUE_INIT * sizeof(q->items[0]));
			q->cap = LOOP_QUEUE_INIT;
		}
		q->bytes = 0;
		q->head = 0;
		q->count = 0;
		q->due = 0;
		q->hprev = q->hnext = NULL;
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
	q->items[(q->head + q->count) & (q->cap - 1)] = sbuf_ref(msg);
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
		s = q->items[(q->head + n) & (q->cap - 1)];
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
		q->head = (q->head + 1) & (q->cap - 1);
	}
	q->count -= n;
	if (!q->count)
		loop_queue_free(l, c);
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
	c->loop = l;
	c->flags = CONN_F_WS;
	c->last_write = loop_ms() - 0x80000000u;        /* long ago */
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
	loop_queue_free(c->loop, c);
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
	if (l->write_delay)
		c->last_write = loop_ms();
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

/* Drops c from the dirty list (c is closing while listed). */
static void
loop_dirty_forget(struct loop *l, struct conn *c)
{
	size_t i;

	for (i = 0; i < l->n_dirty; i++)
		if (l->dirty[i] == c)
			l->dirty[i] = NULL;
	c->flags &= (uint8_t)~CONN_F_DIRTY;
}

/*
 * Writes what c has queued now, outside any lws callback: one frame of up to
 * LOOP_FRAME_MAX bytes per lws_write, until the queue is empty or lws had to
 * keep part of a frame (the socket is full).  lws then holds the rest and
 * asks for POLLOUT itself; the writeable callback continues from there.
 * This is the common path: a frame that fits in the socket buffer costs one
 * send() and no epoll change, where lws_callback_on_writable() costs a
 * uv_poll_start (an EPOLL_CTL_DEL and an ADD) to arm POLLOUT and another to
 * drop it.  A failed write kills the connection (ws_closed runs now).
 */
static void
loop_ws_write_now(struct loop *l, struct conn *c)
{
	size_t n;

	while (c->q && !lws_partial_buffered(c->wsi)) {
		n = loop_queue_take(l, c);
		if (lws_write(c->wsi, (unsigned char *)l->wbuf + LWS_PRE, n,
			      (c->flags & CONN_F_BINARY) ? LWS_WRITE_BINARY :
							   LWS_WRITE_TEXT) < 0) {
			loop_queue_free(l, c);
			c->flags |= CONN_F_CLOSING | CONN_F_NOFLUSH;
			lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK,
					LWS_TO_KILL_SYNC);
			return;
		}
	}
}

/*
 * Writes the batch of every connection that got messages since the last
 * flush.  The list may grow while this runs (a close handler sending); it is
 * read by index for that reason.
 */
static void
loop_flush(struct loop *l)
{
	struct conn *c;
	uint32_t now = 0;
	size_t i;
	uint8_t f;

	if (l->write_delay && l->n_dirty)
		now = loop_ms();
	for (i = 0; i < l->n_dirty; i++) {
		c = l->dirty[i];
		if (!c)
			continue;
		l->dirty[i] = NULL;
		f = c->flags;
		c->flags &= (uint8_t)~(CONN_F_DIRTY | CONN_F_NOW |
				       CONN_F_REPLY);
		/* a closing connection flushes from its writeable callback */
		if (c->magic != CONN_MAGIC || (c->flags & CONN_F_CLOSING) ||
		    !c->q)
			continue;
		if (l->write_delay && !(f & CONN_F_REPLY)) {
			/* see "write delay" */
			if (!(f & CONN_F_NOW) &&
			    now - c->last_write < l->write_delay) {
				loop_hold(l, c, c->last_write + l->write_delay,
					  now);
				continue;
			}
			c->last_write = now;
		}
		loop_ws_write_now(l, c);
	}
	l->n_dirty = 0;
	loop_http_flush(l);
}

static void
loop_ws_closed(struct loop *l, struct conn *c)
{
	void *user;

	if (c->magic != CONN_MAGIC)
		return;
	user = c->user;
	if (c->flags & CONN_F_DIRTY)
		loop_dirty_forget(l, c);
	loop_queue_free(l, c);          /* also leaves the held list */
	free(c->rx);
	free(c->close_reason);
	memset(c, 0, sizeof(*c));
	l->n_conns--;
	l->h.ws_closed(user);
}

/* ---- HTTP --------------------------------------------------------------- */

/*
 * Plain HTTP/1.1 is served here, not by lws: lws 4.1 mishandles pipelined
 * requests (a POST whose headers it parses from its buffer list gets the
 * first bytes of those headers as its body, and its body loop never ends
 * when more bytes follow; a body-less one completed late makes lws parse the
 * next request into the finished header table, i.e. drop it).  Each accepted
 * socket starts here: its requests are read and parsed, dispatched as soon as
 * complete (up to LOOP_HTTP_PIPELINE_MAX unanswered per connection), and
 * answered in request order, several ready responses in one send().  A
 * WebSocket upgrade on ws_path is handed to lws with the bytes already read
 * (lws_adopt_socket_vhost_readbuf), once the responses before it are out.
 */

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
	free(r->raw);
	free(r->path);
	free(r->query);
	buf_free(&r->body);
	free(r->ctype);
	free(r->resp);
	r->magic = 0;
	free(r);
}

static const char *
loop_http_reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 201: return "Created";
	case 204: return "No Content";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 304: return "Not Modified";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 411: return "Length Required";
	case 413: return "Payload Too Large";
	case 415: return "Unsupported Media Type";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	default: return status < 400 ? "OK" : "Error";
	}
}

/* Appends r's complete response to out. */
static void
loop_http_format(struct buf *out, const struct http_req *r)
{
	buf_printf(out, "HTTP/1.1 %d %s\r\nserver: centrifugo\r\n", r->status,
		   loop_http_reason(r->status));
	if (r->ctype)
		buf_printf(out, "content-type: %s\r\n", r->ctype);
	buf_printf(out, "content-length: %zu\r\n", r->resp_len);
	if (r->last)
		buf_puts(out, "connection: close\r\n");
	buf_puts(out, "\r\n");
	/* a HEAD response announces its length but carries no body */
	if (r->resp_len && strcmp(r->method, "HEAD"))
		buf_append(out, r->resp, r->resp_len);
}

/* Makes hc's requests orphans (freed by loop_http_respond) or frees the
 * answered ones. */
static void
loop_hconn_orphan_all(struct hconn *hc)
{
	struct http_req *r, *next;

	for (r = hc->head; r; r = next) {
		next = r->next;
		r->next = NULL;
		r->hc = NULL;
		if (r->responded)
			loop_req_free(r);
	}
	hc->head = hc->tail = NULL;
	hc->npending = 0;
}

/* Frees hc; closes its socket unless it was handed to lws (fd < 0). */
static void
loop_hconn_free(struct hconn *hc)
{
	struct loop *l = hc->l;
	size_t i;

	loop_hconn_orphan_all(hc);
	if (hc->listed)
		for (i = 0; i < l->n_hready; i++)
			if (l->hready[i] == hc)
				l->hready[i] = NULL;
	if (hc->prev)
		hc->prev->next = hc->next;
	else
		l->hconns = hc->next;
	if (hc->next)
		hc->next->prev = hc->prev;
	event_free(hc->rev);
	event_free(hc->tev);
	if (hc->wev)
		event_free(hc->wev);
	if (hc->fd >= 0)
		evutil_closesocket(hc->fd);
	buf_free(&hc->in);
	buf_free(&hc->out);
	free(hc);
}

/* Marks hc to be written at the end of this loop turn (loop_flush). */
static void
loop_hconn_ready(struct hconn *hc)
{
	struct loop *l = hc->l;

	if (hc->listed || hc->wev)
		return;         /* listed, or waiting for the socket */
	if (l->n_hready == l->hready_cap) {
		l->hready_cap = l->hready_cap ? 2 * l->hready_cap : 16;
		l->hready = xrealloc(l->hready,
				     l->hready_cap * sizeof(l->hready[0]));
	}
	l->hready[l->n_hready++] = hc;
	hc->listed = 1;
	if (!l->in_pump)
		loop_kick(l);
}

/* (Re)arms hc's timer: idle keep-alive, or a request still arriving. */
static void
loop_hconn_timer(struct hconn *hc)
{
	struct timeval tv = { LOOP_HTTP_IDLE_TIMEOUT, 0 };

	if (hc->head) {
		evtimer_del(hc->tev);   /* we owe an answer: no timeout */
		return;
	}
	if (hc->in.len > hc->in_off)
		tv.tv_sec = LOOP_HTTP_READ_TIMEOUT;
	evtimer_add(hc->tev, &tv);
}

/* Hands hc's socket and its unparsed bytes to lws, frees hc. */
static void
loop_hconn_handoff(struct hconn *hc)
{
	struct loop *l = hc->l;
	int fd = hc->fd;

	hc->fd = -1;
	event_del(hc->rev);
	/* lws serves the handshake from these bytes right now; on failure
	 * it has closed the socket itself */
	/* lws 4.1 logs every such adopt at error level ("calling service");
	 * with logging off for the call it is not even formatted (about 2%
	 * of a connect's CPU went to formatting and dropping it) */
	lws_set_log_level(0, NULL);
	if (!lws_adopt_socket_vhost_readbuf(l->vh, fd, hc->in.data + hc->in_off,
					    hc->in.len - hc->in_off))
		log_debug("WebSocket handoff of fd %d failed", fd);
	lws_set_log_level(LOOP_LWS_LOG_LEVEL, NULL);
	loop_hconn_free(hc);
	loop_kick(l);
}

static int loop_hconn_parse(struct hconn *hc);

/*
 * Sends the responses that are ready, in request order: every answered
 * request at the head of the list goes into one buffer and one send().  On
 * EAGAIN the rest waits for EV_WRITE.  Then: closes after a last request,
 * hands an upgrade over, or goes on reading.  Runs outside lws callbacks.
 */
static void
loop_hconn_write(struct hconn *hc)
{
	struct http_req *r;
	ssize_t n;

	for (;;) {
		if (hc->off == hc->out.len) {
			hc->off = 0;
			hc->out.len = 0;
			while ((r = hc->head) && r->responded) {
				hc->head = r->next;
				if (!hc->head)
					hc->tail = NULL;
				hc->npending--;
				if (r->last)
					hc->close_sent = 1;
				loop_http_format(&hc->out, r);
				loop_req_free(r);
			}
			if (!hc->out.len)
				break;
		}
		n = send(hc->fd, hc->out.data + hc->off, hc->out.len - hc->off,
			 MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			hc->wev = event_new(hc->l->base, hc->fd, EV_WRITE,
					    loop_hconn_wev_cb, hc);
			ASSERT(hc->wev);
			event_add(hc->wev, NULL);
			return;
		}
		if (n <= 0) {
			log_debug("HTTP response send(fd %d): %s", hc->fd,
				  n < 0 ? strerror(errno) : "0 bytes");
			loop_hconn_free(hc);
			return;
		}
		hc->off += (size_t)n;
	}
	if (hc->close_sent || (hc->rd_eof && !hc->head)) {
		loop_hconn_free(hc);
		return;
	}
	if (hc->upgrade && !hc->head) {
		loop_hconn_handoff(hc);
		return;
	}
	/* requests held back while the pipeline was full; reading again */
	loop_hconn_parse(hc);
}

static void
loop_hconn_wev_cb(evutil_socket_t fd, short what, void *arg)
{
	struct hconn *hc = arg;

	event_free(hc->wev);
	hc->wev = NULL;
	loop_hconn_write(hc);
}

static void
loop_hconn_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct hconn *hc = arg;

	if (!hc->head)
		loop_hconn_free(hc);
}

/* Writes every HTTP connection whose next response became ready. */
static void
loop_http_flush(struct loop *l)
{
	struct hconn *hc;
	size_t i;

	for (i = 0; i < l->n_hready; i++) {
		hc = l->hready[i];
		if (!hc)
			continue;
		l->hready[i] = NULL;
		hc->listed = 0;
		loop_hconn_write(hc);
	}
	l->n_hready = 0;
}

/* Value of header name (lower case) in the raw header lines, repeated
 * headers joined by ','.  Caller frees; NULL if absent. */
static char *
loop_raw_header(const char *raw, const char *name)
{
	size_t nlen = strlen(name);
	const char *p = raw, *e, *v, *ve;
	struct buf b = BUF_INIT;
	int found = 0;

	for (; *p; p = *e ? e + 1 : e) {
		e = strchr(p, '\n');
		if (!e)
			e = p + strlen(p);
		if ((size_t)(e - p) <= nlen || p[nlen] != ':' ||
		    strncasecmp(p, name, nlen))
			continue;
		v = p + nlen + 1;
		ve = e;
		while (v < ve && (*v == ' ' || *v == '\t'))
			v++;
		while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t' ||
				  ve[-1] == '\r'))
			ve--;
		if (found)
			buf_putc(&b, ',');
		buf_append(&b, v, (size_t)(ve - v));
		found = 1;
	}
	if (!found)
		return NULL;
	buf_cstr(&b);
	return buf_steal(&b, NULL);
}

/* Whether the comma-separated header value v has token tok (any case). */
static int
loop_has_token(const char *v, const char *tok)
{
	size_t n = strlen(tok);
	const char *p = v;

	while (v && *p) {
		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		if (!strncasecmp(p, tok, n) &&
		    (p[n] == '\0' || p[n] == ',' || p[n] == ' ' ||
		     p[n] == '\t'))
			return 1;
		p = strchr(p, ',');
		if (!p)
			break;
	}
	return 0;
}

static int
loop_hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/*
 * URL-decodes [s, e) into b: the path as is; the query (args) with '+' as
 * space and its '&' / ';' separators (unencoded ones) as '&', as lws gives
 * them.  Returns -1 on a bad %-escape.
 */
static int
loop_url_decode(struct buf *b, const char *s, const char *e, int args)
{
	int h, lo;

	for (; s < e; s++) {
		if (*s == '%') {
			if (e - s < 3 || (h = loop_hexval(s[1])) < 0 ||
			    (lo = loop_hexval(s[2])) < 0)
				return -1;
			buf_putc(b, (char)(h << 4 | lo));
			s += 2;
		} else if (args && *s == '+') {
			buf_putc(b, ' ');
		} else if (args && *s == ';') {
			buf_putc(b, '&');
		} else {
			buf_putc(b, *s);
		}
	}
	buf_cstr(b);
	return 0;
}

/* Queues r on hc (arrival order). */
static void
loop_hconn_add(struct hconn *hc, struct http_req *r)
{
	r->hc = hc;
	if (hc->tail)
		hc->tail->next = r;
	else
		hc->head = r;
	hc->tail = r;
	hc->npending++;
}

/* Answers with status and an empty body, and reads nothing more. */
static void
loop_hconn_refuse(struct hconn *hc, int status)
{
	struct http_req *r = xcalloc(1, sizeof(*r));

	r->magic = REQ_MAGIC;
	r->l = hc->l;
	r->dispatched = 1;
	r->last = 1;
	r->method = "GET";
	buf_init(&r->body);
	hc->closing = 1;
	loop_hconn_add(hc, r);
	loop_http_respond(r, status, "text/plain", NULL, 0);
}

/*
 * Parses and dispatches the complete requests in hc->in.  Returns -1 when
 * hc is gone (freed or handed to lws), else 0.
 */
static int
loop_hconn_parse(struct hconn *hc)
{
	struct loop *l = hc->l;
	struct http_req *r;
	const char *p, *end, *sp1, *sp2, *eol, *q, *hdrs;
	char *v;
	size_t headlen, avail;
	unsigned long long clen;
	int http10, ka, upgrade, meth;

	while (!hc->closing && !hc->upgrade &&
	       hc->npending < LOOP_HTTP_PIPELINE_MAX &&
	       hc->in.len > hc->in_off) {
		p = hc->in.data + hc->in_off;
		avail = hc->in.len - hc->in_off;
		/* tolerate empty lines between requests */
		if (*p == '\r' || *p == '\n') {
			hc->in_off++;
			continue;
		}
		end = memmem(p, avail, "\r\n\r\n", 4);
		if (!end) {
			if (avail > LOOP_HTTP_HEAD_MAX)
				loop_hconn_refuse(hc, 431);
			break;
		}
		headlen = (size_t)(end - p) + 4;
		if (headlen > LOOP_HTTP_HEAD_MAX) {
			loop_hconn_refuse(hc, 431);
			break;
		}
		eol = memchr(p, '\r', headlen);
		sp1 = memchr(p, ' ', (size_t)(eol - p));
		sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) :
			    NULL;
		if (!sp1 || !sp2 || sp2 == sp1 + 1 || sp1[1] != '/' ||
		    eol - sp2 != 9 || strncmp(sp2 + 1, "HTTP/1.", 7) ||
		    (sp2[8] != '0' && sp2[8] != '1')) {
			loop_hconn_refuse(hc, 400);
			break;
		}
		http10 = sp2[8] == '0';
		for (meth = 0; meth < 8; meth++)
			if ((size_t)(sp1 - p) ==
			    strlen(loop_method_names[meth]) &&
			    !strncmp(p, loop_method_names[meth],
				     (size_t)(sp1 - p)))
				break;
		if (meth == 8) {
			loop_hconn_refuse(hc, 405);
			break;
		}

		r = xcalloc(1, sizeof(*r));
		r->magic = REQ_MAGIC;
		r->l = l;
		r->method = loop_method_names[meth];
		buf_init(&r->body);
		/* header lines, NUL-terminated, for loop_http_header() */
		hdrs = eol + 2;
		r->raw = xstrndup(hdrs, (size_t)(end + 2 - hdrs));
		q = memchr(sp1 + 1, '?', (size_t)(sp2 - sp1 - 1));
		{
			struct buf b = BUF_INIT;

			if (loop_url_decode(&b, sp1 + 1, q ? q : sp2, 0)) {
				buf_free(&b);
				loop_req_free(r);
				loop_hconn_refuse(hc, 400);
				break;
			}
			r->path = buf_steal(&b, NULL);
			buf_init(&b);
			if (loop_url_decode(&b, q ? q + 1 : sp2, sp2, 1)) {
				buf_free(&b);
				loop_req_free(r);
				loop_hconn_refuse(hc, 400);
				break;
			}
			r->query = buf_steal(&b, NULL);
		}

		v = loop_raw_header(r->raw, "connection");
		ka = http10 ? loop_has_token(v, "keep-alive") :
			      !loop_has_token(v, "close");
		upgrade = loop_has_token(v, "upgrade");
		free(v);
		v = loop_raw_header(r->raw, "upgrade");
		upgrade = upgrade && meth == 0 && loop_has_token(v,
								"websocket");
		free(v);

		if (upgrade) {
			int status = 0;

			if (strcmp(r->path, l->ws_path)) {
				status = 404;
			} else if (hc->fd >= l->lws_max_fds) {
				/* lws 4.1 refuses the descriptor and then
				 * crashes in its libuv glue: answer here */
				log_warn("WebSocket upgrade refused: fd %d is "
					 "beyond libwebsockets' table (%ld)",
					 hc->fd, l->lws_max_fds);
				status = 503;
			} else if (l->h.ws_admit &&
				   (status = l->h.ws_admit(l->hctx)) != 0) {
				/* refused (limits) before the origin check,
				 * as Centrifugo's middleware runs first */
			} else {
				v = loop_raw_header(r->raw, "origin");
				if (v && !loop_origin_allowed(l, v)) {
					log_info("WebSocket upgrade refused: "
						 "origin \"%s\" not allowed",
						 v);
					status = 403;
				}
				free(v);
			}
			if (!status) {
				/* lws takes the socket from this request on,
				 * once the responses before it are out */
				loop_req_free(r);
				hc->upgrade = 1;
				event_del(hc->rev);
				evtimer_del(hc->tev);
				if (!hc->head) {
					loop_hconn_handoff(hc);
					return -1;
				}
				return 0;
			}
			hc->in_off += headlen;
			r->dispatched = 1;
			r->last = !ka;
			hc->closing = !ka;
			loop_hconn_add(hc, r);
			loop_http_respond(r, status, "text/plain", NULL, 0);
			continue;
		}

		v = loop_raw_header(r->raw, "content-length");
		clen = 0;
		if (v) {
			char *e;

			errno = 0;
			clen = strtoull(v, &e, 10);
			if (errno || e == v || *e || !isdigit((unsigned char)*v)) {
				free(v);
				loop_req_free(r);
				loop_hconn_refuse(hc, 400);
				break;
			}
		} else if (meth == LWSHUMETH_POST || meth == LWSHUMETH_PUT ||
			   meth == LWSHUMETH_PATCH) {
			loop_req_free(r);
			loop_hconn_refuse(hc, 411);
			break;
		}
		free(v);
		if (clen > l->p.http_body_limit) {
			loop_req_free(r);
			loop_hconn_refuse(hc, 413);
			break;
		}
		if (avail - headlen < clen) {
			loop_req_free(r);       /* body still on its way */
			break;
		}
		buf_append(&r->body, p + headlen, (size_t)clen);
		buf_cstr(&r->body);
		hc->in_off += headlen + (size_t)clen;

		r->dispatched = 1;
		r->last = !ka;
		hc->closing = !ka;
		loop_hconn_add(hc, r);
		/* may answer, even synchronously; written by loop_flush */
		l->h.http_request(l->hctx, r);
	}
	/* keep only the unparsed bytes */
	if (hc->in_off) {
		memmove(hc->in.data, hc->in.data + hc->in_off,
			hc->in.len - hc->in_off);
		hc->in.len -= hc->in_off;
		hc->in_off = 0;
	}
	if (hc->closing || hc->npending >= LOOP_HTTP_PIPELINE_MAX)
		event_del(hc->rev);
	else if (!hc->upgrade && !hc->rd_eof)
		event_add(hc->rev, NULL);
	loop_hconn_timer(hc);
	return 0;
}

static void
loop_hconn_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct hconn *hc = arg;
	struct loop *l = hc->l;
	size_t limit = LOOP_HTTP_HEAD_MAX + l->p.http_body_limit + 4096;
	size_t want;
	ssize_t n;
	int rounds;

	for (rounds = 0; rounds < 16; rounds++) {
		if (hc->in.len >= limit)
			break;  /* parse decides (431/413) */
		buf_reserve(&hc->in, 4096);
		want = hc->in.cap - hc->in.len - 1;
		n = recv(hc->fd, hc->in.data + hc->in.len, want, 0);
		if (n > 0) {
			hc->in.len += (size_t)n;
			/* A short read emptied the socket: no recv() that only
			 * says EAGAIN (the read event is level-triggered, so
			 * whatever comes later, EOF included, is seen). */
			if ((size_t)n < want)
				break;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		/* EOF (the client may have half-closed after its requests)
		 * or error: answer what is complete, then close */
		hc->rd_eof = 1;
		event_del(hc->rev);
		break;
	}
	if (loop_hconn_parse(hc))
		return;
	if (hc->rd_eof && !hc->head && !hc->upgrade)
		loop_hconn_free(hc);
}

/* A new accepted socket: HTTP until its first request says upgrade. */
static void
loop_hconn_new(struct loop *l, int fd)
{
	struct hconn *hc = xcalloc(1, sizeof(*hc));

	hc->l = l;
	hc->fd = fd;
	buf_init(&hc->in);
	buf_init(&hc->out);
	hc->rev = event_new(l->base, fd, EV_READ | EV_PERSIST,
			    loop_hconn_read_cb, hc);
	hc->tev = evtimer_new(l->base, loop_hconn_timeout_cb, hc);
	ASSERT(hc->rev && hc->tev);
	hc->next = l->hconns;
	if (hc->next)
		hc->next->prev = hc;
	l->hconns = hc;
	/*
	 * Read at once instead of waiting for the first readable event: under
	 * load the request is usually there already, and a WebSocket upgrade
	 * then goes to lws without the socket ever entering libevent's epoll
	 * set (an EPOLL_CTL_ADD, a wake-up and an EPOLL_CTL_DEL saved per
	 * connection).  Otherwise this costs one recv() that says EAGAIN, and
	 * the parse arms the read event and the timer as before.  hc may be
	 * gone when this returns.
	 */
	loop_hconn_read_cb(fd, EV_READ, hc);
}

/* ---- the lws protocol callback ------------------------------------------ */

static int
loop_lws_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user,
	    void *in, size_t len)
{
	struct conn *c = user;

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
		/* lws only gets upgrades (see HTTP); one it did not take */
		return -1;
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
	l->held_ev = evtimer_new(base, loop_held_cb, l);
	ASSERT(l->io_ev && l->timer_ev && l->kick_ev && l->accept_pause_ev &&
	       l->held_ev);
	loop_set_write_delay(l, p->write_delay_ms);
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

	lws_set_log_level(LOOP_LWS_LOG_LEVEL, loop_lws_log);
	memset(&info, 0, sizeof(info));
	foreign[0] = &l->uv;
	info.options = LWS_SERVER_OPTION_LIBUV |
		       LWS_SERVER_OPTION_EXPLICIT_VHOSTS |
		       LWS_SERVER_OPTION_VALIDATE_UTF8;
	info.foreign_loops = foreign;
	info.user = l;
	info.max_http_header_pool = 64;
	info.server_string = "centrifugo";
	/* What lws 4.1 sizes its descriptor table by (the open-file limit
	 * the supervisor set, worker_rlimit_nofile). */
	l->lws_max_fds = sysconf(_SC_OPEN_MAX);
	if (l->lws_max_fds <= 0)
		l->lws_max_fds = 1024;
	l->ctx = lws_create_context(&info);
	if (!l->ctx) {
		log_error("lws_create_context failed (is the libuv event "
			  "library libwebsockets-evlib-uv installed?)");
		goto fail_lws;
	}
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.protocols = l->protocols;
	/* No lws validity timer: see loop_no_validity. */
	info.retry_and_idle_policy = &loop_no_validity;
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
		/* Accepted sockets inherit TCP_NODELAY from the listener on
		 * Linux: one setsockopt() here instead of one per accept.
		 * TCP_DEFER_ACCEPT (1 s): the listener wakes us only once the
		 * request is there, so the accept and the first read share
		 * a wake-up (see loop_hconn_new); best effort. */
		{
			int one = 1;

			l->nodelay_inherited = setsockopt(listen_fd, IPPROTO_TCP,
			    TCP_NODELAY, &one, sizeof(one)) == 0;
			(void)setsockopt(listen_fd, IPPROTO_TCP, TCP_DEFER_ACCEPT,
			    &one, sizeof(one));
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
	while (l->hconns)
		loop_hconn_free(l->hconns);
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
	event_free(l->held_ev);
	free(l->ws_path);
	for (i = 0; i < l->p.n_allowed_origins; i++)
		free(l->origins[i]);
	free(l->origins);
	free(l->wbuf);
	while (l->n_spare)
		free(l->spare[--l->n_spare]);
	free(l->dirty);
	free(l->hready);
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

void
loop_set_write_delay(struct loop *l, int64_t ms)
{
	ASSERT(l && l->magic == LOOP_MAGIC);
	if (ms < 0)
		ms = 0;
	if (ms > LOOP_WRITE_DELAY_MAX)
		ms = LOOP_WRITE_DELAY_MAX;
	l->write_delay = (uint32_t)ms;
	/* Off: what waits goes now.  Changed: what waits keeps its due time;
	 * new holds use the new delay. */
	if (!l->write_delay && l->held_head)
		loop_held_release(l, 1);
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
	/* the writeable callback flushes what is queued, held or not */
	loop_unhold(c->loop, c);
	if (noflush) {
		c->flags |= CONN_F_NOFLUSH;
		loop_queue_free(c->loop, c);
	}
	c->close_code = code;
	c->close_reason = xstrndup(reason ? reason : "", LOOP_REASON_MAX);
	/* Bounds the flush; lws re-arms 5 s for the close ack itself. */
	lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LOOP_CLOSE_TIMEOUT);
	lws_callback_on_writable(c->wsi);
	loop_kick(c->loop);
}

int
loop_conn_send(struct conn *c, struct sbuf *msg, unsigned flags)
{
	struct loop *l;
	size_t queued;

	ASSERT(c && c->magic == CONN_MAGIC && msg);
	if (c->flags & CONN_F_CLOSING)
		return -1;
	l = c->loop;
	queued = c->q ? c->q->bytes : 0;
	if (queued + msg->len > l->p.queue_max_size) {
		loop_conn_start_close(c, 3008, "slow", 1);
		return -1;
	}
	loop_queue_push(l, c, msg);
	if (flags & LOOP_SEND_REPLY) {
		/* never held: goes at the end of this turn with the pushes
		 * queued before it (see "write delay") */
		loop_unhold(l, c);
		c->flags |= CONN_F_NOW | CONN_F_REPLY;
	} else if (c->flags & CONN_F_HELD) {
		return 0;       /* goes with the rest when c is due */
	}
	/* written at the end of this loop turn, with whatever else arrives
	 * for c meanwhile (loop_flush) */
	loop_dirty_add(l, c);
	return 0;
}

int
loop_conn_send_copy(struct conn *c, const void *p, size_t n, unsigned flags)
{
	struct sbuf *s = sbuf_new(p, n);
	int rc = loop_conn_send(c, s, flags);

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

const char *
loop_http_header(struct http_req *r, const char *lower_name)
{
	struct req_hdr *h;
	char *v;

	ASSERT(r && r->magic == REQ_MAGIC && lower_name);
	for (h = r->hdrs; h; h = h->next)
		if (!strcmp(h->name, lower_name))
			return h->value;
	if (!r->raw)
		return NULL;
	v = loop_raw_header(r->raw, lower_name);
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
	ASSERT(r && r->magic == REQ_MAGIC && r->dispatched && !r->responded);
	if (!r->hc) {
		loop_req_free(r);
		return;
	}
	r->responded = 1;
	r->status = status;
	r->ctype = content_type ? xstrdup(content_type) : NULL;
	r->resp = len ? xmemdup(body, len) : NULL;
	r->resp_len = len;
	if (r == r->hc->head)
		loop_hconn_ready(r->hc);
}
