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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/types.h>
#include <unistd.h>

#include <event2/event.h>

#include "broker.h"
#include "buf.h"
#include "heritage.h"
#include "htab.h"
#include "ipc.h"
#include "log.h"
#include "metrics.h"
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

/* One client in a channel's presence. */
struct presence_entry {
	unsigned worker;
	int join_leave;           /* emits a leave when it goes */
	char *user, *conn_info, *chan_info;
	uint32_t user_len, conn_info_len, chan_info_len;
};

/* Per-worker counts of one key (a channel's subscribers, a user's
 * connections); total is their sum. */
struct counts {
	uint64_t total;
	uint32_t per_worker[];
};

/* The result of a publish with an idempotency key, kept 5 minutes. */
#define IDEM_TTL_MS (5 * 60 * 1000)
struct idem_result {
	uint64_t expires_ms;
	uint64_t offset;
	char epoch[EPOCH_LEN + 1];
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
	struct htab presence;                 /* channel -> htab of client -> entry */
	struct htab interest;                 /* channel -> struct counts: subscribers */
	struct htab users;                    /* user -> struct counts: connections */
	struct htab idem;                     /* channel NUL key -> struct idem_result */
	uint64_t nclients, nsubs;
	struct event *check_ev;
	pid_t *worker_pids;                   /* last pid seen alive per worker */
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
	struct buf ikey = BUF_INIT;
	struct idem_result *idem = NULL;

	if (req->epoch.len) {
		/* A repeated idempotency key within the window: the first
		 * result again, nothing published (server-api.md §5.1). */
		buf_append(&ikey, req->channel.p, req->channel.len);
		buf_putc(&ikey, '\0');
		buf_append(&ikey, req->epoch.p, req->epoch.len);
		idem = htab_get(&broker.idem, ikey.data, ikey.len);
		if (idem && idem->expires_ms > now) {
			res.req_id = req->req_id;
			res.offset = idem->offset;
			res.epoch = (struct msg_str){ idem->epoch, (uint32_t)strlen(idem->epoch) };
			buf_free(&ikey);
			buf_reset(&broker.out);
			msg_encode(&res, &broker.out);
			broker_reply(w, &broker.out);
			return;
		}
	}

	pub.channel = req->channel;
	pub.data = req->data;
	pub.flags = req->flags & MSG_F_BINARY;
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
		atomic_fetch_add(&shm_slot(heritage.shm, heritage.nworkers)->messages_sent, 1);
		if (s)
			stream_append(s, (size_t)req->history_size,
			    now + (uint64_t)req->history_ttl_ms,
			    sbuf_new(broker.out.data, broker.out.len));
	}
	res.req_id = req->req_id;
	if (res.error == 0) {
		res.offset = pub.offset;
		res.epoch = pub.epoch;
		if (ikey.len) {
			if (idem == NULL) {
				idem = xcalloc(1, sizeof(*idem));
				htab_put(&broker.idem, ikey.data, ikey.len, idem);
			}
			idem->expires_ms = now + IDEM_TTL_MS;
			idem->offset = pub.offset;
			memcpy(idem->epoch, pub.epoch.p ? pub.epoch.p : "", pub.epoch.len);
			idem->epoch[pub.epoch.len] = '\0';
		}
	}
	buf_free(&ikey);
	buf_reset(&broker.out);
	msg_encode(&res, &broker.out);
	broker_reply(w, &broker.out);
}

/* ------------------------------------------------------------------ */
/* Streams: reads                                                      */

/*
 * Collects up to limit (< 0: no limit) publications of s: ascending after
 * `since` (or from the oldest), or with reverse descending before `since`
 * (or from the newest).  items get pointers into the stored records.
 */
static uint32_t
stream_read(struct stream *s, int has_since, uint64_t since, int reverse,
    int64_t limit, struct msg_str **items, uint32_t *cap)
{
	uint32_t n = 0;

	if (limit == 0 || s->count == 0)
		return 0;
	for (size_t k = 0; k < s->count; k++) {
		size_t i = reverse ? s->count - 1 - k : k;
		struct stream_entry *e = &s->entries[(s->head + i) % s->cap];
		if (has_since && (reverse ? e->offset >= since : e->offset <= since))
			continue;
		if (n == *cap) {
			*cap = *cap ? *cap * 2 : 64;
			*items = xrealloc(*items, *cap * sizeof(**items));
		}
		(*items)[n++] = (struct msg_str){ e->rec->data, e->rec->len };
		if (limit > 0 && n == (uint64_t)limit)
			break;
	}
	return n;
}

static struct msg_str *broker_items;
static uint32_t broker_items_cap;

static void
broker_history(unsigned w, const struct msg *req)
{
	struct msg res = { .type = MSG_HISTORY_RESULT, .req_id = req->req_id };
	uint64_t now = wheel_now_ms();
	struct stream *s;

	if (req->history_size <= 0 || req->history_ttl_ms <= 0) {
		res.error = 108;
		goto out;
	}
	s = broker_stream(&req->channel, now);
	stream_trim(s, now);
	if (req->history_meta_ttl_ms > 0)
		s->meta_expires_ms = now + (uint64_t)req->history_meta_ttl_ms;
	if ((req->flags & MSG_F_SINCE) && req->epoch.len &&
	    (req->epoch.len != EPOCH_LEN || memcmp(req->epoch.p, s->epoch, EPOCH_LEN) != 0)) {
		res.error = 112;
		goto out;
	}
	res.offset = s->top;
	res.epoch = (struct msg_str){ s->epoch, EPOCH_LEN };
	res.nitems = stream_read(s, (req->flags & MSG_F_SINCE) != 0, req->since,
	    (req->flags & MSG_F_REVERSE) != 0, req->limit, &broker_items, &broker_items_cap);
	res.items = broker_items;
out:
	buf_reset(&broker.out);
	msg_encode(&res, &broker.out);
	broker_reply(w, &broker.out);
}

/* ------------------------------------------------------------------ */
/* Presence and join/leave                                             */

static void
broker_fanout(const struct msg *m)
{
	buf_reset(&broker.out);
	msg_encode(m, &broker.out);
	if (ring_write(shm_fanout(heritage.shm), broker.out.data, broker.out.len) != 0)
		log_error("fan-out write of a %s record failed: %s", msg_type_name(m->type),
		    strerror(errno));
}

static void
presence_entry_free(struct presence_entry *e)
{
	free(e->user);
	free(e->conn_info);
	free(e->chan_info);
	free(e);
}

static char *
broker_dup(struct msg_str s, uint32_t *len)
{
	*len = s.len;
	return xmemdup(s.p ? s.p : "", s.len + 1);
}

static void
broker_join_leave(enum msg_type type, const char *channel, size_t len,
    const char *client, size_t client_len, const struct presence_entry *e)
{
	struct msg m = { .type = type };

	m.channel = (struct msg_str){ channel, (uint32_t)len };
	m.has_info = 1;
	m.user = (struct msg_str){ e->user, e->user_len };
	m.client = (struct msg_str){ client, (uint32_t)client_len };
	m.conn_info = (struct msg_str){ e->conn_info, e->conn_info_len };
	m.chan_info = (struct msg_str){ e->chan_info, e->chan_info_len };
	broker_fanout(&m);
}

static void
broker_presence_add(unsigned w, const struct msg *req)
{
	struct htab *clients = htab_get(&broker.presence, req->channel.p, req->channel.len);
	struct presence_entry *e, *old;

	if (clients == NULL) {
		clients = xmalloc(sizeof(*clients));
		htab_init(clients);
		htab_put(&broker.presence, req->channel.p, req->channel.len, clients);
	}
	e = xcalloc(1, sizeof(*e));
	e->worker = w;
	e->join_leave = (req->flags & MSG_F_JOIN_LEAVE) != 0;
	e->user = broker_dup(req->user, &e->user_len);
	e->conn_info = broker_dup(req->conn_info, &e->conn_info_len);
	e->chan_info = broker_dup(req->chan_info, &e->chan_info_len);
	old = htab_get(clients, req->client.p, req->client.len);
	htab_put(clients, req->client.p, req->client.len, e);
	if (old)
		presence_entry_free(old);
}

static void
broker_presence_remove(const char *channel, size_t len, const char *client, size_t client_len,
    int leave)
{
	struct htab *clients = htab_get(&broker.presence, channel, len);
	struct presence_entry *e;

	if (clients == NULL || (e = htab_del(clients, client, client_len)) == NULL)
		return;
	if (leave && e->join_leave)
		broker_join_leave(MSG_LEAVE, channel, len, client, client_len, e);
	presence_entry_free(e);
	if (clients->count == 0) {
		htab_del(&broker.presence, channel, len);
		htab_free(clients);
		free(clients);
	}
}

static void counts_forget(struct htab *t, unsigned w, uint64_t *sum);

/* A worker is gone: its clients leave every channel. */
static void
broker_forget_worker(unsigned w)
{
	size_t it;
	struct htab_entry *ce;
	struct buf keys = BUF_INIT;

	/* Collect (channel, client) pairs first: removal changes the tables. */
	for (ce = htab_first(&broker.presence, &it); ce; ce = htab_next(&broker.presence, &it, ce)) {
		struct htab *clients = ce->value;
		size_t it2;
		struct htab_entry *pe;
		for (pe = htab_first(clients, &it2); pe; pe = htab_next(clients, &it2, pe)) {
			struct presence_entry *e = pe->value;
			if (e->worker != w)
				continue;
			buf_append(&keys, &ce->klen, sizeof(ce->klen));
			buf_append(&keys, ce->key, ce->klen);
			buf_append(&keys, &pe->klen, sizeof(pe->klen));
			buf_append(&keys, pe->key, pe->klen);
		}
	}
	for (size_t off = 0; off < keys.len;) {
		uint32_t cl, kl;
		const char *c, *k;
		memcpy(&cl, keys.data + off, sizeof(cl));
		c = keys.data + off + sizeof(cl);
		off += sizeof(cl) + cl;
		memcpy(&kl, keys.data + off, sizeof(kl));
		k = keys.data + off + sizeof(kl);
		off += sizeof(kl) + kl;
		broker_presence_remove(c, cl, k, kl, 1);
	}
	buf_free(&keys);
	counts_forget(&broker.interest, w, &broker.nsubs);
	counts_forget(&broker.users, w, &broker.nclients);
}

static void
broker_presence_query(unsigned w, const struct msg *req)
{
	struct msg res = { .type = MSG_PRESENCE_RESULT, .req_id = req->req_id };
	struct htab *clients = htab_get(&broker.presence, req->channel.p, req->channel.len);
	struct msg_str *items = NULL;
	size_t it;
	struct htab_entry *pe;
	uint32_t n = 0;

	res.flags = req->flags & MSG_F_STATS;
	if (clients && (req->flags & MSG_F_STATS)) {
		struct htab users;
		htab_init(&users);
		for (pe = htab_first(clients, &it); pe; pe = htab_next(clients, &it, pe)) {
			struct presence_entry *e = pe->value;
			htab_put(&users, e->user, e->user_len, e);
		}
		res.num_clients = (uint32_t)clients->count;
		res.num_users = (uint32_t)users.count;
		htab_free(&users);
	} else if (clients) {
		items = xmalloc(4 * clients->count * sizeof(*items));
		for (pe = htab_first(clients, &it); pe; pe = htab_next(clients, &it, pe)) {
			struct presence_entry *e = pe->value;
			items[n++] = (struct msg_str){ e->user, e->user_len };
			items[n++] = (struct msg_str){ pe->key, pe->klen };
			items[n++] = (struct msg_str){ e->conn_info, e->conn_info_len };
			items[n++] = (struct msg_str){ e->chan_info, e->chan_info_len };
		}
	}
	res.items = items;
	res.nitems = n;
	buf_reset(&broker.out);
	msg_encode(&res, &broker.out);
	broker_reply(w, &broker.out);
	free(items);
}

/* ------------------------------------------------------------------ */
/* Subscriptions                                                       */

/*
 * A subscription starting on worker w: presence and join first, then the
 * stream position (and recovered publications).  The result goes through
 * the fan-out ring, so the worker sees it exactly between the publications
 * that precede it and those that follow (protocol.md §4.5.6).
 */
static void
broker_subscribe(unsigned w, const struct msg *req)
{
	struct msg res = { .type = MSG_SUB_RESULT, .req_id = req->req_id, .worker = w };
	uint64_t now = wheel_now_ms();

	if (req->flags & MSG_F_PRESENCE)
		broker_presence_add(w, req);
	if (broker_items_cap == 0) {
		broker_items_cap = 64;
		broker_items = xcalloc(broker_items_cap, sizeof(*broker_items));
	}
	if ((req->flags & MSG_F_POSITION) && req->history_size > 0 && req->history_ttl_ms > 0) {
		struct stream *s = broker_stream(&req->channel, now);
		stream_trim(s, now);
		if (req->history_meta_ttl_ms > 0)
			s->meta_expires_ms = now + (uint64_t)req->history_meta_ttl_ms;
		res.offset = s->top;
		res.epoch = (struct msg_str){ s->epoch, EPOCH_LEN };
		if ((req->flags & MSG_F_RECOVER) && (req->flags & MSG_F_CACHE)) {
			/* Cache mode (§4.5.5): only the newest publication matters. */
			int at_top = req->offset == s->top &&
			    req->epoch.len == EPOCH_LEN && memcmp(req->epoch.p, s->epoch, EPOCH_LEN) == 0;
			if (at_top) {
				res.flags |= MSG_F_RECOVERED;
			} else if (s->count) {
				struct stream_entry *e = &s->entries[(s->head + s->count - 1) % s->cap];
				if (e->offset == s->top) {
					res.flags |= MSG_F_RECOVERED;
					broker_items[0] = (struct msg_str){ e->rec->data, e->rec->len };
					res.items = broker_items;
					res.nitems = 1;
				}
			}
		} else if (req->flags & MSG_F_RECOVER) {
			int same_epoch = req->epoch.len == 0 ||
			    (req->epoch.len == EPOCH_LEN && memcmp(req->epoch.p, s->epoch, EPOCH_LEN) == 0);
			uint32_t n = 0;
			if (same_epoch)
				n = stream_read(s, 1, req->offset, 0, req->limit > 0 ? req->limit : -1,
				    &broker_items, &broker_items_cap);
			if (same_epoch && n == 0 && s->top == req->offset)
				res.flags |= MSG_F_RECOVERED;
			if (same_epoch && n > 0) {
				struct msg first, last;
				/* items hold PUB records: read their offsets */
				if (msg_decode(broker_items[0].p, broker_items[0].len, &first) == 0 &&
				    msg_decode(broker_items[n - 1].p, broker_items[n - 1].len, &last) == 0 &&
				    first.offset == req->offset + 1 && last.offset == s->top) {
					res.flags |= MSG_F_RECOVERED;
					res.items = broker_items;
					res.nitems = n;
				}
			}
		}
	}
	if (req->flags & MSG_F_JOIN_LEAVE) {
		struct msg j = *req;
		j.type = MSG_JOIN;
		j.ntags = 0;
		j.nitems = 0;
		broker_fanout(&j);
	}
	if (req->req_id)        /* 0: nothing waits for an answer */
		broker_fanout(&res);
}

static void
broker_unsubscribe(unsigned w, const struct msg *req)
{
	if (req->flags & MSG_F_PRESENCE) {
		broker_presence_remove(req->channel.p, req->channel.len, req->client.p,
		    req->client.len, 1);
	} else if (req->flags & MSG_F_JOIN_LEAVE) {
		struct msg l = *req;
		l.type = MSG_LEAVE;
		l.ntags = 0;
		l.nitems = 0;
		broker_fanout(&l);
	}
}

/* ------------------------------------------------------------------ */
/* Node registries: subscribers per channel, connections per user      */

/* Adds delta to key's count for worker w; returns the new total, and
 * removes the key at zero.  *total_out tracks the registry's sum. */
static uint64_t
counts_add(struct htab *t, const char *key, size_t len, unsigned w, int64_t delta,
    uint64_t *sum)
{
	struct counts *c = htab_get(t, key, len);

	if (c == NULL) {
		if (delta <= 0)
			return 0;
		c = xcalloc(1, sizeof(*c) + heritage.nworkers * sizeof(c->per_worker[0]));
		htab_put(t, key, len, c);
	}
	if (delta < 0 && (uint64_t)-delta > c->per_worker[w])
		delta = -(int64_t)c->per_worker[w];
	c->per_worker[w] = (uint32_t)((int64_t)c->per_worker[w] + delta);
	c->total = (uint64_t)((int64_t)c->total + delta);
	*sum = (uint64_t)((int64_t)*sum + delta);
	if (c->total == 0) {
		uint64_t left = 0;
		htab_del(t, key, len);
		free(c);
		return left;
	}
	return c->total;
}

/* Drops everything worker w had counted in t. */
static void
counts_forget(struct htab *t, unsigned w, uint64_t *sum)
{
	struct buf keys = BUF_INIT;
	size_t it;
	struct htab_entry *e;

	for (e = htab_first(t, &it); e; e = htab_next(t, &it, e)) {
		struct counts *c = e->value;
		if (c->per_worker[w] == 0)
			continue;
		buf_append(&keys, &e->klen, sizeof(e->klen));
		buf_append(&keys, e->key, e->klen);
	}
	for (size_t off = 0; off < keys.len;) {
		uint32_t kl;
		struct counts *c;
		memcpy(&kl, keys.data + off, sizeof(kl));
		c = htab_get(t, keys.data + off + sizeof(kl), kl);
		if (c)
			counts_add(t, keys.data + off + sizeof(kl), kl, w, -(int64_t)c->per_worker[w], sum);
		off += sizeof(kl) + kl;
	}
	buf_free(&keys);
}

static void
counts_free(struct htab *t)
{
	size_t it;
	struct htab_entry *e;

	for (e = htab_first(t, &it); e; e = htab_next(t, &it, e))
		free(e->value);
	htab_free(t);
}

static void
broker_conn(unsigned w, const struct msg *req)
{
	struct msg res = { .type = MSG_CONN_RESULT, .req_id = req->req_id };
	struct counts *c = htab_get(&broker.users, req->user.p, req->user.len);

	if (req->req_id && req->limit > 0 && req->since > 0 && c && c->total >= req->since) {
		res.error = 3504;       /* connection limit */
	} else {
		counts_add(&broker.users, req->user.p, req->user.len, w, req->limit, &broker.nclients);
	}
	if (req->req_id) {
		buf_reset(&broker.out);
		msg_encode(&res, &broker.out);
		broker_reply(w, &broker.out);
	}
}

/* Re-encodes a decoded record (with its items) into the fan-out ring. */
static void
broker_forward(const struct msg *m)
{
	struct msg copy = *m;
	struct msg_str *items = xcalloc(m->nitems ? m->nitems : 1, sizeof(*items));
	size_t pos = 0;

	for (uint32_t i = 0; i < m->nitems; i++)
		msg_item_next(m, &pos, &items[i]);
	copy.items = items;
	broker_fanout(&copy);
	free(items);
}

static void
broker_channels(unsigned w, const struct msg *req)
{
	struct msg res = { .type = MSG_CHANNELS_RESULT, .req_id = req->req_id };
	struct msg_str *items = xcalloc(2 * broker.interest.count + 1, sizeof(*items));
	char (*nums)[24] = xcalloc(broker.interest.count + 1, sizeof(*nums));
	size_t it, n = 0;
	struct htab_entry *e;

	for (e = htab_first(&broker.interest, &it); e; e = htab_next(&broker.interest, &it, e)) {
		struct counts *c = e->value;
		int len = snprintf(nums[n], sizeof(nums[n]), "%llu", (unsigned long long)c->total);
		items[2 * n] = (struct msg_str){ e->key, e->klen };
		items[2 * n + 1] = (struct msg_str){ nums[n], (uint32_t)len };
		n++;
	}
	res.items = items;
	res.nitems = (uint32_t)(2 * n);
	buf_reset(&broker.out);
	msg_encode(&res, &broker.out);
	broker_reply(w, &broker.out);
	free(items);
	free(nums);
}

static void
broker_stats(unsigned w, const struct msg *req)
{
	struct msg res = { .type = MSG_STATS_RESULT, .req_id = req->req_id };

	res.num_clients = (uint32_t)broker.nclients;
	/* Anonymous connections count as one user "", as upstream's hub does. */
	res.num_users = (uint32_t)broker.users.count;
	res.offset = broker.interest.count;
	res.since = broker.nsubs;
	buf_reset(&broker.out);
	msg_encode(&res, &broker.out);
	broker_reply(w, &broker.out);
}

static void
broker_history_remove(unsigned w, const struct msg *req)
{
	struct msg res = { .type = MSG_HISTORY_RESULT, .req_id = req->req_id };
	struct stream *s = htab_get(&broker.streams, req->channel.p, req->channel.len);

	if (s) {
		/* Keep the position (top, epoch): subscribers stay consistent. */
		for (size_t i = 0; i < s->count; i++)
			sbuf_unref(s->entries[(s->head + i) % s->cap].rec);
		s->head = 0;
		s->count = 0;
	}
	buf_reset(&broker.out);
	msg_encode(&res, &broker.out);
	broker_reply(w, &broker.out);
}

/* Once a second: a worker that died since takes its clients out of
 * presence, even before its replacement says hello. */
/* Drops idempotency results past their window. */
static void
broker_idem_purge(void)
{
	uint64_t now = wheel_now_ms();
	struct buf keys = BUF_INIT;
	size_t it;
	struct htab_entry *e;

	for (e = htab_first(&broker.idem, &it); e; e = htab_next(&broker.idem, &it, e)) {
		struct idem_result *r = e->value;
		if (r->expires_ms <= now) {
			buf_append(&keys, &e->klen, sizeof(e->klen));
			buf_append(&keys, e->key, e->klen);
		}
	}
	for (size_t off = 0; off < keys.len;) {
		uint32_t kl;
		memcpy(&kl, keys.data + off, sizeof(kl));
		free(htab_del(&broker.idem, keys.data + off + sizeof(kl), kl));
		off += sizeof(kl) + kl;
	}
	buf_free(&keys);
}

static void
broker_check_cb(evutil_socket_t fd, short what, void *arg)
{
	static unsigned ticks;

	if (++ticks % 60 == 0)
		broker_idem_purge();
	for (unsigned w = 0; w < heritage.nworkers; w++) {
		pid_t pid = (pid_t)atomic_load(&shm_slot(heritage.shm, w)->pid);
		if (pid > 0 && pid != broker.worker_pids[w] && kill(pid, 0) == 0)
			broker.worker_pids[w] = pid;
		else if (broker.worker_pids[w] > 0 && kill(broker.worker_pids[w], 0) != 0 &&
		    errno == ESRCH) {
			log_info("worker %u (pid %ld) is gone: dropping its presence", w,
			    (long)broker.worker_pids[w]);
			broker.worker_pids[w] = 0;
			broker_forget_worker(w);
		}
	}
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
		broker_forget_worker(w);
		break;
	case MSG_SUBSCRIBE:
		broker_subscribe(w, &m);
		break;
	case MSG_UNSUBSCRIBE:
		broker_unsubscribe(w, &m);
		break;
	case MSG_HISTORY:
		broker_history(w, &m);
		break;
	case MSG_PRESENCE:
		broker_presence_query(w, &m);
		break;
	case MSG_INTEREST:
		counts_add(&broker.interest, m.channel.p, m.channel.len, w, m.limit, &broker.nsubs);
		break;
	case MSG_CONN:
		broker_conn(w, &m);
		break;
	case MSG_CONTROL:
		broker_forward(&m);
		break;
	case MSG_CHANNELS:
		broker_channels(w, &m);
		break;
	case MSG_STATS:
		broker_stats(w, &m);
		break;
	case MSG_HISTORY_REMOVE:
		broker_history_remove(w, &m);
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
	htab_init(&broker.presence);
	htab_init(&broker.interest);
	htab_init(&broker.users);
	htab_init(&broker.idem);
	broker.worker_pids = xcalloc(heritage.nworkers, sizeof(*broker.worker_pids));
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
	broker.check_ev = event_new(broker.base, -1, EV_PERSIST, broker_check_cb, NULL);
	{
		struct timeval sec = { 1, 0 };
		if (broker.check_ev == NULL || event_add(broker.check_ev, &sec))
			log_fatal("broker timer setup failed");
	}
	sigterm = evsignal_new(broker.base, SIGTERM, broker_signal_cb, NULL);
	sigint = evsignal_new(broker.base, SIGINT, broker_signal_cb, NULL);
	if (!broker.wake_ev || !broker.retry_ev || !sigterm || !sigint ||
	    event_add(broker.wake_ev, NULL) || event_add(sigterm, NULL) || event_add(sigint, NULL))
		log_fatal("broker event setup failed");
	ipc_child_watch(broker.base, broker_parent_gone, NULL);

	{
		/* Streams start over with new epochs: positioned subscribers
		 * must hear it even if no publication comes (§4.6). */
		struct msg start = { .type = MSG_BROKER_START, .generation = heritage.generation };
		broker_fanout(&start);
	}
	metrics_started(heritage.nworkers);
	broker_drain();
	ipc_child_ready();
	log_info("ready, serving %u workers", heritage.nworkers);
	event_base_dispatch(broker.base);

	for (e = htab_first(&broker.streams, &iter); e; e = htab_next(&broker.streams, &iter, e))
		stream_free(e->value);
	htab_free(&broker.streams);
	for (e = htab_first(&broker.presence, &iter); e; e = htab_next(&broker.presence, &iter, e)) {
		struct htab *clients = e->value;
		size_t it2;
		struct htab_entry *pe;
		for (pe = htab_first(clients, &it2); pe; pe = htab_next(clients, &it2, pe))
			presence_entry_free(pe->value);
		htab_free(clients);
		free(clients);
	}
	htab_free(&broker.presence);
	counts_free(&broker.interest);
	counts_free(&broker.users);
	for (e = htab_first(&broker.idem, &iter); e; e = htab_next(&broker.idem, &iter, e))
		free(e->value);
	htab_free(&broker.idem);
	free(broker.worker_pids);
	free(broker_items);
	event_free(broker.check_ev);
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
