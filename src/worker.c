/*
 * worker.c - the worker process.  Its libevent loop carries the
 * connections (through loop.c), the timing wheel of all connection
 * deadlines, the eventfd that wakes it when the fan-out ring or its reply
 * ring has records, and the signals.  Publications read from the fan-out
 * ring go to the hub, which writes them to the local subscribers; replies
 * from the broker are matched to pending requests by id.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "api.h"
#include "buf.h"
#include "client.h"
#include "config.h"
#include "grpc_api.h"
#include "heritage.h"
#include "htab.h"
#include "hub.h"
#include "ipc.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "msg.h"
#include "reload.h"
#include "ring.h"
#include "shm.h"
#include "wheel.h"
#include "worker.h"
#include "xmalloc.h"

/* How long a request waits for the broker before it is answered with an
 * internal error (the broker may have been restarted meanwhile). */
#define WORKER_REQUEST_TIMEOUT_MS 5000
/* Bookkeeping records (worker_note()) wake the broker once per this many,
 * or this long after the first one, whichever comes first. */
#define WORKER_NOTE_BATCH 64
#define WORKER_NOTE_DELAY_US 10000
/* How long a graceful stop waits for clients to take their close frames. */
#define WORKER_DRAIN_MS 3000

struct pending {
	struct wheel_node timer;      /* first: container_of by cast */
	uint64_t id;
	worker_reply_fn fn;
	void *arg;
};

/* A request that did not fit in the request ring yet. */
struct queued {
	struct queued *next;
	size_t len;
	char rec[];
};

struct worker {
	struct event_base *base;
	struct loop *loop;
	struct loop *internal;        /* http_server.internal_port, or NULL */
	struct hub *hub;
	struct wheel wheel;
	struct event *wake_ev, *retry_ev, *note_ev, *drain_ev, *deadline_ev, *sig_ev[2];
	unsigned notes;               /* written since the broker was last woken */
	struct ring_cursor fanout_cursor, reply_cursor;
	struct htab pending;          /* req id (8 bytes) -> struct pending */
	uint64_t next_id;
	struct queued *queue, *queue_tail;
	struct buf rec, out;
	int stopping;
};

static struct worker worker;

struct wheel *worker_wheel(void) { return &worker.wheel; }
struct hub *worker_hub(void) { return worker.hub; }
struct loop *worker_loop(void) { return worker.loop; }
const struct config *worker_config(void) { return heritage.cfg; }
int worker_stopping(void) { return worker.stopping; }

static void
worker_arm_retry(void)
{
	struct timeval tv = { 0, 1000 };

	if (!evtimer_pending(worker.retry_ev, NULL))
		evtimer_add(worker.retry_ev, &tv);
}

static void
worker_flush_queue(void)
{
	struct queued *q;

	while ((q = worker.queue) != NULL) {
		if (ring_write(shm_request(heritage.shm, heritage.worker_id), q->rec, q->len) != 0)
			break;
		worker.queue = q->next;
		free(q);
	}
	if (worker.queue)
		worker_arm_retry();
}

static void
worker_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	worker_flush_queue();
}

/*
 * Writes rec to the request ring, waking the broker unless quiet, or queues
 * it behind earlier ones (the queue is flushed with wake-ups).  Returns 1
 * when it went into the ring without waking the broker.
 */
static int
worker_send_record(const struct buf *rec, int quiet)
{
	struct ring_shm *r = shm_request(heritage.shm, heritage.worker_id);
	struct queued *q;

	if (worker.queue == NULL) {
		if ((quiet ? ring_write_quiet : ring_write)(r, rec->data, rec->len) == 0)
			return quiet;
		if (errno != EAGAIN) {
			log_error("request record of %zu bytes refused: %s", rec->len, strerror(errno));
			return 0;
		}
	}
	q = xmalloc(sizeof(*q) + rec->len);
	q->next = NULL;
	q->len = rec->len;
	memcpy(q->rec, rec->data, rec->len);
	if (worker.queue)
		worker.queue_tail->next = q;
	else
		worker.queue = q;
	worker.queue_tail = q;
	worker_arm_retry();
	return 0;
}

static void
pending_timeout(struct wheel_node *n)
{
	struct pending *p = (struct pending *)n;

	htab_del(&worker.pending, &p->id, sizeof(p->id));
	log_warn("request %llu got no answer from the broker", (unsigned long long)p->id);
	p->fn(p->arg, NULL);
	free(p);
}

void
worker_request(struct msg *req, worker_reply_fn fn, void *arg)
{
	struct pending *p = xmalloc(sizeof(*p));

	p->id = ++worker.next_id;
	p->fn = fn;
	p->arg = arg;
	wheel_node_init(&p->timer, pending_timeout);
	wheel_arm(&worker.wheel, &p->timer, WORKER_REQUEST_TIMEOUT_MS);
	htab_put(&worker.pending, &p->id, sizeof(p->id), p);
	req->req_id = p->id;
	buf_reset(&worker.out);
	msg_encode(req, &worker.out);
	worker_send_record(&worker.out, 0);
}

void
worker_send(const struct msg *m)
{
	buf_reset(&worker.out);
	msg_encode(m, &worker.out);
	worker_send_record(&worker.out, 0);
}

/* Wakes the broker for the bookkeeping records written so far. */
static void
worker_note_cb(evutil_socket_t fd, short what, void *arg)
{
	worker.notes = 0;
	evtimer_del(worker.note_ev);
	ring_wake(shm_request(heritage.shm, heritage.worker_id));
}

void
worker_note(const struct msg *m)
{
	struct timeval tv = { 0, WORKER_NOTE_DELAY_US };

	buf_reset(&worker.out);
	msg_encode(m, &worker.out);
	if (!worker_send_record(&worker.out, 1))
		return;         /* queued (woken when flushed), or refused */
	if (++worker.notes == WORKER_NOTE_BATCH)
		worker_note_cb(-1, 0, NULL);
	else if (!evtimer_pending(worker.note_ev, NULL))
		evtimer_add(worker.note_ev, &tv);
}

/* Hands a decoded answer to the request waiting for it. */
static void
worker_answer(const struct msg *m)
{
	struct pending *p = htab_del(&worker.pending, &m->req_id, sizeof(m->req_id));

	if (p == NULL)
		return;       /* timed out already */
	wheel_disarm(&p->timer);
	p->fn(p->arg, m);
	free(p);
}

static void
worker_on_reply(const struct buf *rec)
{
	struct msg m;

	if (msg_decode(rec->data, rec->len, &m) != 0) {
		log_error("malformed record (%zu bytes) on the reply ring", rec->len);
		return;
	}
	worker_answer(&m);
}


static void
worker_on_fanout(const struct buf *rec)
{
	struct msg m;

	if (msg_decode(rec->data, rec->len, &m) != 0) {
		log_error("malformed record (%zu bytes) on the fan-out ring", rec->len);
		return;
	}
	switch (m.type) {
	case MSG_PUB:
	case MSG_JOIN:
	case MSG_LEAVE:
		hub_deliver(worker.hub, &m);
		break;
	case MSG_SUB_RESULT:
		if (m.worker == heritage.worker_id)
			worker_answer(&m);
		break;
	case MSG_CONTROL:
		client_control(&m);
		break;
	case MSG_BROKER_START:
		if (m.flags & MSG_F_LOST) {
			client_positions_lost();
		} else if (m.generation > 1) {
			/* A respawned broker: our state first, then positioned
			 * subscribers recover (their removal counts down). */
			client_resync();
			client_positions_lost();
		}
		break;
	default:
		break;
	}
}

/* Reads both rings until empty and sleeping is safe. */
static void
worker_drain(void)
{
	struct ring_shm *fan = shm_fanout(heritage.shm);
	struct ring_shm *rep = shm_reply(heritage.shm, heritage.worker_id);
	struct proc_slot_shm *slot = shm_slot(heritage.shm, heritage.worker_id);

	for (;;) {
		int rc, n = 0;

		while (n < 1024 && (rc = ring_read(rep, &worker.reply_cursor, &worker.rec)) == RING_OK) {
			worker_on_reply(&worker.rec);
			n++;
		}
		while (n < 1024) {
			rc = ring_read(fan, &worker.fanout_cursor, &worker.rec);
			if (rc == RING_OK) {
				worker_on_fanout(&worker.rec);
				n++;
				continue;
			}
			if (rc == RING_OVERRUN) {
				atomic_fetch_add(&slot->ring_overruns, 1);
				log_error("fell a whole fan-out ring behind: publications were lost");
				client_fanout_overrun();
				continue;
			}
			break;
		}
		if (n == 1024)
			continue;
		if (!ring_reader_sleep(rep, 0) &&
		    !ring_reader_sleep(fan, heritage.worker_id))
			return;
	}
}

static void
worker_wake_cb(evutil_socket_t fd, short what, void *arg)
{
	uint64_t n;

	if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		log_error("read(worker eventfd): %s", strerror(errno));
	worker_drain();
}

/* While stopping: every 50 ms, done once no connection is left. */
static void
worker_drain_cb(evutil_socket_t fd, short what, void *arg)
{
	if (loop_conn_count(worker.loop) == 0 && grpc_api_conn_count() == 0)
		event_base_loopbreak(worker.base);
}

/* While stopping: the drain took WORKER_DRAIN_MS; stop anyway. */
static void
worker_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	log_warn("%zu connections still open after %d ms: closing them",
	    loop_conn_count(worker.loop), WORKER_DRAIN_MS);
	event_base_loopbreak(worker.base);
}

static void
worker_stop(void)
{
	struct timeval tick = { 0, 50 * 1000 };
	struct timeval tv = { WORKER_DRAIN_MS / 1000, (WORKER_DRAIN_MS % 1000) * 1000 };

	if (worker.stopping)
		return;
	worker.stopping = 1;
	log_info("stopping: closing %zu connections", loop_conn_count(worker.loop));
	loop_stop_accepting(worker.loop);
	if (worker.internal)
		loop_stop_accepting(worker.internal);
	grpc_api_stop();        /* GOAWAY: calls in flight are answered */
	client_close_all(3001, "shutdown");
	/* Poll until every client took its close frame, at most WORKER_DRAIN_MS. */
	worker.drain_ev = event_new(worker.base, -1, EV_PERSIST, worker_drain_cb, NULL);
	worker.deadline_ev = evtimer_new(worker.base, worker_deadline_cb, NULL);
	if (worker.drain_ev == NULL || worker.deadline_ev == NULL ||
	    event_add(worker.drain_ev, &tick) != 0 || event_add(worker.deadline_ev, &tv) != 0)
		event_base_loopbreak(worker.base);
}

static void
worker_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	worker_stop();
}

static void
worker_parent_gone(void *arg)
{
	log_warn("supervisor gone, stopping");
	worker_stop();
}

static void *
worker_ws_open(void *ctx, struct conn *c, const struct loop_ws_info *info)
{
	return client_new(c, info);
}

static int
worker_ws_admit(void *ctx)
{
	return client_admit();
}

static void
worker_ws_message(void *user, const char *data, size_t len, int binary)
{
	client_on_message(user, data, len, binary);
}

static void
worker_ws_closed(void *user)
{
	client_on_closed(user);
}

static void
worker_http_request(void *ctx, struct http_req *r)
{
	api_handle(r, worker.internal ? API_LISTENER_EXTERNAL : API_LISTENER_MAIN);
}

static void
worker_http_internal(void *ctx, struct http_req *r)
{
	api_handle(r, API_LISTENER_INTERNAL);
}

static void *
worker_ws_refuse(void *ctx, struct conn *c, const struct loop_ws_info *info)
{
	/* Unreachable: the internal listener has no WebSocket path. */
	loop_conn_close(c, 1008, "no websocket here");
	return NULL;
}

static void
worker_ws_ignore(void *user, const char *data, size_t len, int binary)
{
}

static void
worker_ws_gone(void *user)
{
}

int
worker_main(void)
{
	const struct config *cfg = heritage.cfg;
	struct loop_params lp;
	struct loop_handlers lh = {
		.ws_open = worker_ws_open,
		.ws_admit = worker_ws_admit,
		.ws_message = worker_ws_message,
		.ws_closed = worker_ws_closed,
		.http_request = worker_http_request,
	};
	struct msg hello = { .type = MSG_HELLO };
	int sigs[2] = { SIGTERM, SIGINT };

	memset(&worker, 0, sizeof(worker));
	signal(SIGPIPE, SIG_IGN);
	worker.base = event_base_new();
	if (worker.base == NULL)
		log_fatal("event_base_new failed");
	htab_init(&worker.pending);
	buf_init(&worker.rec);
	buf_init(&worker.out);
	wheel_init(&worker.wheel, worker.base);
	worker.hub = hub_new(client_sub_lost);
	client_init(cfg);
	api_init(cfg);

	memset(&lp, 0, sizeof(lp));
	lp.ws_path = cfg->websocket_handler_prefix;
	lp.ws_message_size_limit = (size_t)cfg->websocket_message_size_limit;
	lp.queue_max_size = (size_t)cfg->client_queue_max_size;
	lp.allowed_origins = (const char *const *)cfg->client_allowed_origins.v;
	lp.n_allowed_origins = cfg->client_allowed_origins.n;
	lp.http_body_limit = 10 * 1024 * 1024;
	lp.write_delay_ms = cfg->client_write_delay;
	if (heritage.internal_fd >= 0) {
		struct loop_handlers ih = {
			.ws_open = worker_ws_refuse,
			.ws_message = worker_ws_ignore,
			.ws_closed = worker_ws_gone,
			.http_request = worker_http_internal,
		};
		struct loop_params ip = lp;
		ip.ws_path = "/\x01";      /* no WebSocket on the internal port */
		worker.internal = loop_new(worker.base, heritage.internal_fd, &ip, &ih, NULL);
		if (worker.internal == NULL) {
			log_error("cannot start the internal listener");
			return 2;
		}
	}
	worker.loop = loop_new(worker.base, heritage.listen_fd, &lp, &lh, NULL);
	if (worker.loop == NULL) {
		log_error("cannot start the connection loop");
		return 2;
	}
	if (heritage.grpc_fd >= 0 && grpc_api_start(worker.base, heritage.grpc_fd, cfg) != 0) {
		log_error("cannot start the GRPC API");
		return 2;
	}

	ring_cursor_init(shm_fanout(heritage.shm), heritage.worker_id, &worker.fanout_cursor);
	ring_cursor_init(shm_reply(heritage.shm, heritage.worker_id), 0, &worker.reply_cursor);
	worker.wake_ev = event_new(worker.base, shm_worker_eventfd(heritage.shm, heritage.worker_id),
	    EV_READ | EV_PERSIST, worker_wake_cb, NULL);
	worker.retry_ev = evtimer_new(worker.base, worker_retry_cb, NULL);
	worker.note_ev = evtimer_new(worker.base, worker_note_cb, NULL);
	if (!worker.wake_ev || !worker.retry_ev || !worker.note_ev ||
	    event_add(worker.wake_ev, NULL))
		log_fatal("worker event setup failed");
	for (int i = 0; i < 2; i++) {
		worker.sig_ev[i] = evsignal_new(worker.base, sigs[i], worker_signal_cb, NULL);
		if (worker.sig_ev[i] == NULL || event_add(worker.sig_ev[i], NULL))
			log_fatal("evsignal_add failed");
	}
	ipc_child_watch_cb(worker.base, worker_parent_gone, NULL);
	reload_worker_init();   /* IPC_RELOAD: new config, connections kept */

	hello.worker = heritage.worker_id;
	hello.generation = heritage.generation;
	buf_reset(&worker.out);
	msg_encode(&hello, &worker.out);
	worker_send_record(&worker.out, 0);

	metrics_started(heritage.worker_id);
	worker_drain();
	ipc_child_ready();
	log_info("ready");
	event_base_dispatch(worker.base);
	log_info("stopped");

	ipc_child_unwatch();
	loop_free(worker.loop);
	loop_free(worker.internal);
	grpc_api_free();
	if (worker.drain_ev)
		event_free(worker.drain_ev);
	if (worker.deadline_ev)
		event_free(worker.deadline_ev);
	hub_free(worker.hub);
	wheel_free(&worker.wheel);
	htab_free(&worker.pending);
	buf_free(&worker.rec);
	buf_free(&worker.out);
	return 0;
}
