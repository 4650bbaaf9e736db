/*
 * broker.c - the broker process.  It drains every worker's request ring,
 * assigns each publication its place in the channel's stream (offset and
 * epoch when the channel keeps history), stores it in the memory engine's
 * history, writes it once into the fan-out ring that every worker reads,
 * and answers on the requesting worker's reply ring.
 *
 * It sleeps on its eventfd only after ring_reader_sleep() confirmed every
 * request ring is empty, so a busy system makes no syscall per message.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include <event2/event.h>

#include "broker.h"
#include "buf.h"
#include "heritage.h"
#include "htab.h"
#include "ipc.h"
#include "log.h"
#include "msg.h"
#include "ring.h"
#include "shm.h"
#include "wheel.h"
#include "xmalloc.h"

#define EPOCH_LEN 8

/* One retained publication: its encoded PUB record, ready to replay. */
struct stream_entry {
	uint64_t offset;
	uint64_t expires_ms;      /* monotonic ms */
	struct sbuf *rec;
};

/*
 * A channel's stream.  Invariant: entries[head .. head+count) (mod cap)
 * hold consecutive offsets ending at top.
 */
struct stream {
	char epoch[EPOCH_LEN + 1];
	uint64_t top;
	uint64_t meta_expires_ms;
	struct stream_entry *entries;
	size_t cap, head, count;
};

/* A reply that did not fit in a full reply ring yet. */
struct pending_reply {
	struct pending_reply *next;
	size_t len;
	char rec[];
};

struct broker {
	struct event_base *base;
	struct event *wake_ev;
	struct event *retry_ev;
	struct htab streams;
	struct ring_cursor *req_cursors;
	struct pending_reply **pending;       /* per worker, FIFO */
	struct pending_reply **pending_tail;
	struct buf rec;                       /* scratch: a request read */
	struct buf out;                       /* scratch: a record to write */
	uint64_t publications;
};

static struct broker broker;

static void
broker_new_epoch(char *epoch)
{
	static const char letters[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
	unsigned char rnd[EPOCH_LEN];

	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		for (int i = 0; i < EPOCH_LEN; i++)
			rnd[i] = (unsigned char)random();
	for (int i = 0; i < EPOCH_LEN; i++)
		epoch[i] = letters[rnd[i] % (sizeof(letters) - 1)];
	epoch[EPOCH_LEN] = '\0';
}

static void
stream_free(struct stream *s)
{
	for (size_t i = 0; i < s->count; i++)
		sbuf_unref(s->entries[(s->head + i) % s->cap].rec);
	free(s->entries);
	free(s);
}

static void
stream_trim(struct stream *s, uint64_t now)
{
	while (s->count && s->entries[s->head].expires_ms <= now) {
		sbuf_unref(s->entries[s->head].rec);
		s->head = (s->head + 1) % s->cap;
		s->count--;
	}
}

/* Finds or creates the stream of a channel; a stream whose meta expired
 * starts over with a new epoch. */
static struct stream *
broker_stream(const struct msg_str *channel, uint64_t now)
{
	struct stream *s = htab_get(&broker.streams, channel->p, channel->len);

	if (s && s->meta_expires_ms && s->meta_expires_ms <= now) {
		htab_del(&broker.streams, channel->p, channel->len);
		stream_free(s);
		s = NULL;
	}
	if (s == NULL) {
		s = xcalloc(1, sizeof(*s));
		broker_new_epoch(s->epoch);
		htab_put(&broker.streams, channel->p, channel->len, s);
	}
	return s;
}

static void
stream_append(struct stream *s, size_t size, uint64_t expires, struct sbuf *rec)
{
	if (s->cap != size) {
		/* history_size changed (or first use): rebuild keeping the newest. */
		struct stream_entry *e = xcalloc(size, sizeof(*e));
		size_t keep = s->count < size ? s->count : size;
		for (size_t i = 0; i < s->count; i++) {
			struct stream_entry *old = &s->entries[(s->head + i) % s->cap];
			if (i < s->count - keep)
				sbuf_unref(old->rec);
			else
				e[i - (s->count - keep)] = *old;
		}
		free(s->entries);
		s->entries = e;
		s->cap = size;
		s->head = 0;
		s->count = keep;
	}
	if (s->count == s->cap) {
		sbuf_unref(s->entries[s->head].rec);
		s->head = (s->head + 1) % s->cap;
		s->count--;
	}
	s->entries[(s->head + s->count) % s->cap] = (struct stream_entry){
		.offset = s->top, .expires_ms = expires, .rec = rec,
	};
	s->count++;
}

static void broker_flush_pending(unsigned w);

/* Queues or writes a reply record to worker w. */
static void
broker_reply(unsigned w, const struct buf *rec)
{
	struct pending_reply *p;

	if (broker.pending[w] == NULL &&
	    ring_write(shm_reply(heritage.shm, w), rec->data, rec->len) == 0)
		return;
	if (broker.pending[w] == NULL && errno != EAGAIN) {
		log_error("reply to worker %u dropped: %s", w, strerror(errno));
		return;
	}
	p = xmalloc(sizeof(*p) + rec->len);
	p->next = NULL;
	p->len = rec->len;
	memcpy(p->rec, rec->data, rec->len);
	if (broker.pending[w])
		broker.pending_tail[w]->next = p;
	else
		broker.pending[w] = p;
	broker.pending_tail[w] = p;
	if (!evtimer_pending(broker.retry_ev, NULL)) {
		struct timeval tv = { 0, 1000 };
		evtimer_add(broker.retry_ev, &tv);
	}
}

static void
broker_flush_pending(unsigned w)
{
	struct pending_reply *p;

	while ((p = broker.pending[w]) != NULL) {
		if (ring_write(shm_reply(heritage.shm, w), p->rec, p->len) != 0)
			break;
		broker.pending[w] = p->next;
		free(p);
	}
}

static void
broker_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	int again = 0;

	for (unsigned w = 0; w < heritage.nworkers; w++) {
		broker_flush_pending(w);
		again |= broker.pending[w] != NULL;
	}
	if (again) {
		struct timeval tv = { 0, 1000 };
		evtimer_add(broker.retry_ev, &tv);
	}
}

static void
broker_publish(unsigned w, const struct msg *req)
{
	struct msg pub = { .type = MSG_PUB }, res = { .type = MSG_PUBLISH_RESULT };
	uint64_t now = wheel_now_ms();
	struct stream *s = NULL;

	pub.channel = req->channel;
	pub.data = req->data;
	pub.has_info = req->has_info;
	pub.user = req->user;
	pub.client = req->client;
	pub.conn_info = req->conn_info;
	pub.chan_info = req->chan_info;
	pub.ntags = req->ntags;
	memcpy(pub.tags, req->tags, sizeof(pub.tags[0]) * 2 * req->ntags);
	if (req->history_size > 0 && req->history_ttl_ms > 0) {
		s = broker_stream(&req->channel, now);
		stream_trim(s, now);
		s->top++;
		pub.offset = s->top;
		pub.epoch.p = s->epoch;
		pub.epoch.len = EPOCH_LEN;
		if (req->history_meta_ttl_ms > 0)
			s->meta_expires_ms = now + (uint64_t)req->history_meta_ttl_ms;
	}
	buf_reset(&broker.out);
	msg_encode(&pub, &broker.out);
	if (ring_write(shm_fanout(heritage.shm), broker.out.data, broker.out.len) != 0) {
		log_error("fan-out write for channel %.*s failed: %s",
		    (int)req->channel.len, req->channel.p, strerror(errno));
		res.error = 100;
	} else {
		broker.publications++;
		if (s)
			stream_append(s, (size_t)req->history_size,
			    now + (uint64_t)req->history_ttl_ms,
			    sbuf_new(broker.out.data, broker.out.len));
	}
	res.req_id = req->req_id;
	if (res.error == 0) {
		res.offset = pub.offset;
		res.epoch = pub.epoch;
	}
	buf_reset(&broker.out);
	msg_encode(&res, &broker.out);
	broker_reply(w, &broker.out);
}

static void
broker_handle(unsigned w, const struct buf *rec)
{
	struct msg m;

	if (msg_decode(rec->data, rec->len, &m) != 0) {
		log_error("malformed record (%zu bytes) on worker %u's request ring", rec->len, w);
		return;
	}
	switch (m.type) {
	case MSG_HELLO:
		log_debug("worker %u generation %u started", m.worker, m.generation);
		break;
	case MSG_PUBLISH:
		broker_publish(w, &m);
		break;
	default:
		log_error("unexpected %s record from worker %u", msg_type_name(m.type), w);
		break;
	}
}

/* Reads every request ring until all are empty and sleeping is safe. */
static void
broker_drain(void)
{
	for (;;) {
		int again = 0;

		for (unsigned w = 0; w < heritage.nworkers; w++) {
			struct ring_shm *r = shm_request(heritage.shm, w);
			int rc, n = 0;
			while ((rc = ring_read(r, &broker.req_cursors[w], &broker.rec)) == RING_OK) {
				broker_handle(w, &broker.rec);
				if (++n == 256) {     /* fairness between workers */
					again = 1;
					break;
				}
			}
			if (rc == RING_OVERRUN)
				log_error("request ring of worker %u overrun", w);
		}
		if (again)
			continue;
		for (unsigned w = 0; w < heritage.nworkers; w++)
			again |= ring_reader_sleep(shm_request(heritage.shm, w), 0);
		if (!again)
			return;
	}
}

static void
broker_wake_cb(evutil_socket_t fd, short what, void *arg)
{
	uint64_t n;

	if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		log_error("read(broker eventfd): %s", strerror(errno));
	broker_drain();
}

static void
broker_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	log_info("stopping (%s), %llu publications ordered", strsignal((int)sig),
	    (unsigned long long)broker.publications);
	event_base_loopbreak(broker.base);
}

static void
broker_parent_gone(void *arg)
{
	log_warn("supervisor gone, exiting");
	event_base_loopbreak(broker.base);
}

int
broker_main(void)
{
	struct event *sigterm, *sigint;
	size_t iter;
	struct htab_entry *e;

	memset(&broker, 0, sizeof(broker));
	broker.base = event_base_new();
	if (broker.base == NULL)
		log_fatal("event_base_new failed");
	htab_init(&broker.streams);
	buf_init(&broker.rec);
	buf_init(&broker.out);
	broker.req_cursors = xcalloc(heritage.nworkers, sizeof(*broker.req_cursors));
	broker.pending = xcalloc(heritage.nworkers, sizeof(*broker.pending));
	broker.pending_tail = xcalloc(heritage.nworkers, sizeof(*broker.pending_tail));
	for (unsigned w = 0; w < heritage.nworkers; w++)
		ring_cursor_init(shm_request(heritage.shm, w), 0, &broker.req_cursors[w]);

	broker.wake_ev = event_new(broker.base, shm_broker_eventfd(heritage.shm),
	    EV_READ | EV_PERSIST, broker_wake_cb, NULL);
	broker.retry_ev = evtimer_new(broker.base, broker_retry_cb, NULL);
	sigterm = evsignal_new(broker.base, SIGTERM, broker_signal_cb, NULL);
	sigint = evsignal_new(broker.base, SIGINT, broker_signal_cb, NULL);
	if (!broker.wake_ev || !broker.retry_ev || !sigterm || !sigint ||
	    event_add(broker.wake_ev, NULL) || event_add(sigterm, NULL) || event_add(sigint, NULL))
		log_fatal("broker event setup failed");
	ipc_child_watch(broker.base, broker_parent_gone, NULL);

	broker_drain();
	ipc_child_ready();
	log_info("ready, serving %u workers", heritage.nworkers);
	event_base_dispatch(broker.base);

	for (e = htab_first(&broker.streams, &iter); e; e = htab_next(&broker.streams, &iter, e))
		stream_free(e->value);
	htab_free(&broker.streams);
	for (unsigned w = 0; w < heritage.nworkers; w++) {
		while (broker.pending[w]) {
			struct pending_reply *p = broker.pending[w];
			broker.pending[w] = p->next;
			free(p);
		}
	}
	free(broker.pending);
	free(broker.pending_tail);
	free(broker.req_cursors);
	buf_free(&broker.rec);
	buf_free(&broker.out);
	event_free(broker.wake_ev);
	event_free(broker.retry_ev);
	event_free(sigterm);
	event_free(sigint);
	event_base_free(broker.base);
	return 0;
}
