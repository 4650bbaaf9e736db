/*
 * broker.c - the broker process.  It drains every worker's request ring,
 * hands publications, history and presence to the engine (engine.h:
 * memory, redis or nats), writes what must reach the workers once into
 * the fan-out ring, and answers on the requesting worker's reply ring.
 * It also keeps the node's registries: subscribers per channel and
 * connections per user (per worker, so a dead worker's share can be
 * dropped), and the presence of the node's own clients.
 *
 * It sleeps on its eventfd only after ring_reader_sleep() confirmed every
 * request ring is empty, so a busy system makes no syscall per message.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include <event2/event.h>

#include "broker.h"
#include "buf.h"
#include "build-config.h"
#include "cluster.h"
#include "config.h"
#include "engine.h"
#include "heritage.h"
#include "htab.h"
#include "ipc.h"
#include "json.h"
#include "log.h"
#include "metrics.h"
#include "msg.h"
#include "node.h"
#include "ring.h"
#include "shm.h"
#include "wheel.h"
#include "xmalloc.h"

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

/* A reply that did not fit in a full reply ring yet. */
struct pending_reply {
	struct pending_reply *next;
	size_t len;
	char rec[];
};

/* A request waiting for the engine: a copy of its record. */
struct broker_op {
	unsigned worker;
	size_t len;
	char rec[];
};

/*
 * A query that reads the registries (channels, info), held until every
 * request ring has been read up to where it ended when the query was read.
 * Workers do not wake the broker for each bookkeeping record (a
 * subscriber or a connection more or less: worker_note()), so a
 * subscription whose reply a client already has may still be unread in
 * another worker's ring; by the time the query's own record is read, that
 * record is below the other ring's head.
 */
struct held_query {
	struct held_query *next;
	unsigned worker;
	unsigned span;            /* rings in heads[] */
	uint64_t *heads;          /* each ring's ring_head() when read */
	size_t len;
	char rec[];
};

struct broker {
	struct event_base *base;
	struct event *wake_ev;
	struct event *retry_ev;
	const struct engine *engine;
	struct htab presence;                 /* channel -> htab of client -> entry */
	struct htab interest;                 /* channel -> struct counts: subscribers */
	struct htab users;                    /* user -> struct counts: connections */
	uint64_t nclients, nsubs;
	struct event *check_ev;
	pid_t *worker_pids;                   /* last pid seen alive per worker slot */
	/* Request rings drained: max(active workers, 1 + the highest slot
	 * with a pid in worker_pids), so a worker a reload stops is heard
	 * until it is gone (broker_check_cb() recomputes live_span). */
	unsigned live_span;
	struct ring_cursor *req_cursors;
	struct pending_reply **pending;       /* per worker, FIFO */
	struct pending_reply **pending_tail;
	struct held_query *held, **held_tail; /* FIFO, see struct held_query */
	struct buf rec;                       /* scratch: a request read */
	struct buf out;                       /* scratch: a record to write */
	uint64_t publications;
};

static struct broker broker;

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

/* Encodes m and queues it to worker w. */
static void
broker_answer(unsigned w, const struct msg *m)
{
	buf_reset(&broker.out);
	msg_encode(m, &broker.out);
	broker_reply(w, &broker.out);
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

	for (unsigned w = 0; w < heritage.max_workers; w++) {
		broker_flush_pending(w);
		again |= broker.pending[w] != NULL;
	}
	if (again) {
		struct timeval tv = { 0, 1000 };
		evtimer_add(broker.retry_ev, &tv);
	}
}

/* ------------------------------------------------------------------ */
/* What engines call                                                   */

int
broker_fanout_raw(const void *rec, size_t len)
{
	if (ring_write(shm_fanout(heritage.shm), rec, len) != 0) {
		log_error("fan-out write failed: %s", strerror(errno));
		return -1;
	}
	return 0;
}

void
broker_fanout(const struct msg *m)
{
	struct buf out = BUF_INIT;

	/* Its own buffer: engines call this while broker.out holds a reply. */
	msg_encode(m, &out);
	if (broker_fanout_raw(out.data, out.len) != 0)
		log_error("a %s record was not delivered", msg_type_name(m->type));
	buf_free(&out);
}

void
broker_publish_done(struct engine_to to, int err, uint64_t offset, const char *epoch)
{
	struct msg res = { .type = MSG_PUBLISH_RESULT, .req_id = to.req_id };

	res.error = (uint32_t)err;
	if (err == 0) {
		broker.publications++;
		atomic_fetch_add(&shm_slot(heritage.shm, heritage.max_workers)->messages_sent, 1);
		res.offset = offset;
		res.epoch = (struct msg_str){ epoch, (uint32_t)strlen(epoch) };
	}
	broker_answer(to.worker, &res);
}

void
broker_positions_lost(void)
{
	/* Positioned subscribers resubscribe and recover. */
	struct msg lost = { .type = MSG_BROKER_START, .generation = heritage.generation,
	    .flags = MSG_F_LOST };

	broker_fanout(&lost);
}

void
broker_node_json(struct buf *b)
{
	char name[300];
	const char *uid = node_uid(NULL);

	node_name(heritage.cfg, name, sizeof(name));
	buf_puts(b, "{\"uid\":");
	json_put_string(b, uid, strlen(uid));
	buf_puts(b, ",\"name\":");
	json_put_string(b, name, strlen(name));
	buf_puts(b, ",\"version\":\"" CENTRIFUGO_COMPAT_VERSION " OSS\"");
	buf_printf(b, ",\"num_clients\":%llu,\"num_users\":%zu,\"num_channels\":%zu,"
	    "\"num_subs\":%llu,\"uptime\":%llu}",
	    (unsigned long long)broker.nclients, broker.users.count, broker.interest.count,
	    (unsigned long long)broker.nsubs, (unsigned long long)node_uptime());
}

static struct broker_op *
broker_op_new(unsigned w)
{
	struct broker_op *op = xmalloc(sizeof(*op) + broker.rec.len);

	op->worker = w;
	op->len = broker.rec.len;
	memcpy(op->rec, broker.rec.data, broker.rec.len);
	return op;
}

/* ------------------------------------------------------------------ */
/* Publications and history                                            */

static void
broker_publish(unsigned w, const struct msg *req)
{
	struct msg pub = { .type = MSG_PUB };

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
	broker.engine->publish(&pub, req, (struct engine_to){ w, req->req_id });
}

static void
broker_history_done(void *arg, int err, uint64_t top, const char *epoch,
    const struct msg_str *items, uint32_t n)
{
	struct broker_op *op = arg;
	struct msg req, res = { .type = MSG_HISTORY_RESULT };

	if (msg_decode(op->rec, op->len, &req) != 0) {
		free(op);
		return;
	}
	res.req_id = req.req_id;
	if (err) {
		res.error = (uint32_t)err;
	} else if ((req.flags & MSG_F_SINCE) && req.epoch.len &&
	    (req.epoch.len != strlen(epoch) || memcmp(req.epoch.p, epoch, req.epoch.len) != 0)) {
		res.error = 112;
	} else {
		res.offset = top;
		res.epoch = (struct msg_str){ epoch, (uint32_t)strlen(epoch) };
		res.items = items;
		res.nitems = n;
	}
	broker_answer(op->worker, &res);
	free(op);
}

static void
broker_history(unsigned w, const struct msg *req)
{
	struct engine_read r = {
		.has_since = (req->flags & MSG_F_SINCE) != 0,
		.reverse = (req->flags & MSG_F_REVERSE) != 0,
		.since = req->since,
		.limit = req->limit,
		.meta_ttl_ms = req->history_meta_ttl_ms,
	};

	if (req->history_size <= 0 || req->history_ttl_ms <= 0) {
		struct msg res = { .type = MSG_HISTORY_RESULT, .req_id = req->req_id, .error = 108 };
		broker_answer(w, &res);
		return;
	}
	broker.engine->read(&req->channel, &r, broker_history_done, broker_op_new(w));
}

static void
broker_removed(void *arg, int err)
{
	struct broker_op *op = arg;
	struct msg req, res = { .type = MSG_HISTORY_RESULT };

	if (msg_decode(op->rec, op->len, &req) == 0) {
		res.req_id = req.req_id;
		res.error = (uint32_t)err;
		broker_answer(op->worker, &res);
	}
	free(op);
}

static void
broker_history_remove(unsigned w, const struct msg *req)
{
	broker.engine->history_remove(&req->channel, broker_removed, broker_op_new(w));
}

/* ------------------------------------------------------------------ */
/* Presence and join/leave                                             */

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

static struct engine_presence
broker_presence_view(const struct presence_entry *e, const char *client, size_t client_len)
{
	return (struct engine_presence){
		.user = { e->user, e->user_len },
		.client = { client, (uint32_t)client_len },
		.conn_info = { e->conn_info, e->conn_info_len },
		.chan_info = { e->chan_info, e->chan_info_len },
	};
}

static void
broker_presence_add(unsigned w, const struct msg *req)
{
	struct htab *clients = htab_get(&broker.presence, req->channel.p, req->channel.len);
	struct presence_entry *e, *old;
	struct engine_presence view;

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
	view = broker_presence_view(e, req->client.p, req->client.len);
	broker.engine->presence_add(&req->channel, &view);
}

static void
broker_presence_remove(const char *channel, size_t len, const char *client, size_t client_len,
    int leave)
{
	struct htab *clients = htab_get(&broker.presence, channel, len);
	struct presence_entry *e;
	struct msg_str ch = { channel, (uint32_t)len };
	struct engine_presence view;

	if (clients == NULL || (e = htab_del(clients, client, client_len)) == NULL)
		return;
	view = broker_presence_view(e, client, client_len);
	broker.engine->presence_remove(&ch, &view);
	if (leave && e->join_leave) {
		struct msg m = { .type = MSG_LEAVE, .has_info = 1 };
		m.channel = ch;
		m.user = view.user;
		m.client = view.client;
		m.conn_info = view.conn_info;
		m.chan_info = view.chan_info;
		broker.engine->broadcast(&m);
	}
	presence_entry_free(e);
	if (clients->count == 0) {
		htab_del(&broker.presence, channel, len);
		htab_free(clients);
		free(clients);
	}
}

uint32_t
broker_local_presence(const struct msg_str *channel, struct msg_str **items)
{
	struct htab *clients = htab_get(&broker.presence, channel->p, channel->len);
	size_t it;
	struct htab_entry *pe;
	uint32_t n = 0;

	*items = NULL;
	if (clients == NULL)
		return 0;
	*items = xmalloc(4 * clients->count * sizeof(**items));
	for (pe = htab_first(clients, &it); pe; pe = htab_next(clients, &it, pe)) {
		struct presence_entry *e = pe->value;
		(*items)[n++] = (struct msg_str){ e->user, e->user_len };
		(*items)[n++] = (struct msg_str){ pe->key, pe->klen };
		(*items)[n++] = (struct msg_str){ e->conn_info, e->conn_info_len };
		(*items)[n++] = (struct msg_str){ e->chan_info, e->chan_info_len };
	}
	return n;
}

void
broker_each_presence(void (*fn)(const struct msg_str *channel, const struct engine_presence *p))
{
	size_t it, it2;
	struct htab_entry *ce, *pe;

	for (ce = htab_first(&broker.presence, &it); ce; ce = htab_next(&broker.presence, &it, ce)) {
		struct htab *clients = ce->value;
		struct msg_str ch = { ce->key, ce->klen };
		for (pe = htab_first(clients, &it2); pe; pe = htab_next(clients, &it2, pe)) {
			struct engine_presence view = broker_presence_view(pe->value, pe->key, pe->klen);
			fn(&ch, &view);
		}
	}
}

static void counts_forget(struct htab *t, unsigned w, uint64_t *sum, int interest);

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
			buf_put_item(&keys, ce->key, ce->klen);
			buf_put_item(&keys, pe->key, pe->klen);
		}
	}
	{
		size_t off = 0;
		uint32_t cl, kl;
		const char *c, *k;
		while (buf_next_item(&keys, &off, &c, &cl) && buf_next_item(&keys, &off, &k, &kl))
			broker_presence_remove(c, cl, k, kl, 1);
	}
	buf_free(&keys);
	counts_forget(&broker.interest, w, &broker.nsubs, 1);
	counts_forget(&broker.users, w, &broker.nclients, 0);
}

static void
broker_presence_done(void *arg, int err, const struct msg_str *items, uint32_t n)
{
	struct broker_op *op = arg;
	struct msg req, res = { .type = MSG_PRESENCE_RESULT };

	if (msg_decode(op->rec, op->len, &req) != 0) {
		free(op);
		return;
	}
	res.req_id = req.req_id;
	res.flags = req.flags & MSG_F_STATS;
	res.error = (uint32_t)err;
	if (err == 0 && (req.flags & MSG_F_STATS)) {
		struct htab users;
		htab_init(&users);
		for (uint32_t i = 0; i + 3 < n; i += 4)
			htab_put(&users, items[i].p, items[i].len, NULL);
		res.num_clients = n / 4;
		res.num_users = (uint32_t)users.count;
		htab_free(&users);
	} else if (err == 0) {
		res.items = items;
		res.nitems = n;
	}
	broker_answer(op->worker, &res);
	free(op);
}

static void
broker_presence_query(unsigned w, const struct msg *req)
{
	broker.engine->presence_get(&req->channel, broker_presence_done, broker_op_new(w));
}

/* ------------------------------------------------------------------ */
/* Subscriptions                                                       */

/* Announces a subscriber's join to the channel (every node). */
static void
broker_join(const struct msg *req)
{
	struct msg j = *req;

	j.type = MSG_JOIN;
	j.req_id = 0;
	j.ntags = 0;
	j.nitems = 0;
	broker.engine->broadcast(&j);
}

/* Whether epoch (NUL-terminated) is the one of the request. */
static int
broker_same_epoch(const struct msg *req, const char *epoch)
{
	return req->epoch.len == strlen(epoch) && memcmp(req->epoch.p, epoch, req->epoch.len) == 0;
}

/*
 * The stream position of a subscription being placed, and what it
 * recovers.  The result goes through the fan-out ring, so the worker sees
 * it exactly between the publications that precede it and those that
 * follow (protocol.md §4.5.6).
 */
static void
broker_positioned(void *arg, int err, uint64_t top, const char *epoch,
    const struct msg_str *items, uint32_t n)
{
	struct broker_op *op = arg;
	struct msg req, res = { .type = MSG_SUB_RESULT };

	if (msg_decode(op->rec, op->len, &req) != 0) {
		free(op);
		return;
	}
	res.req_id = req.req_id;
	res.worker = op->worker;
	if (err) {
		res.error = (uint32_t)err;
		goto out;
	}
	res.offset = top;
	res.epoch = (struct msg_str){ epoch, (uint32_t)strlen(epoch) };
	if ((req.flags & MSG_F_RECOVER) && (req.flags & MSG_F_CACHE)) {
		/* Cache mode (§4.5.5): only the newest publication matters;
		 * the read was newest-first, limit 1. */
		struct msg last;
		if (req.offset == top && broker_same_epoch(&req, epoch)) {
			res.flags |= MSG_F_RECOVERED;
		} else if (n && msg_decode(items[0].p, items[0].len, &last) == 0 &&
		    last.offset == top) {
			res.flags |= MSG_F_RECOVERED;
			res.items = items;
			res.nitems = 1;
		}
	} else if (req.flags & MSG_F_RECOVER) {
		int same = req.epoch.len == 0 || broker_same_epoch(&req, epoch);
		struct msg first, last;
		if (same && n == 0 && top == req.offset)
			res.flags |= MSG_F_RECOVERED;
		/* items hold PUB records: recovered only without a gap */
		if (same && n > 0 && msg_decode(items[0].p, items[0].len, &first) == 0 &&
		    msg_decode(items[n - 1].p, items[n - 1].len, &last) == 0 &&
		    first.offset == req.offset + 1 && last.offset == top) {
			res.flags |= MSG_F_RECOVERED;
			res.items = items;
			res.nitems = n;
		}
	}
out:
	broker_fanout(&res);
	if (res.error == 0 && (req.flags & MSG_F_JOIN_LEAVE))
		broker_join(&req);
	free(op);
}

/* A subscription without position: answered once the engine delivers;
 * the join follows the answer, so the subscriber sees its own join. */
static void
broker_ready(void *arg, int err)
{
	struct broker_op *op = arg;
	struct msg req, res = { .type = MSG_SUB_RESULT };

	if (msg_decode(op->rec, op->len, &req) == 0) {
		res.req_id = req.req_id;
		res.worker = op->worker;
		res.error = (uint32_t)err;
		broker_fanout(&res);
		if (err == 0 && (req.flags & MSG_F_JOIN_LEAVE))
			broker_join(&req);
	}
	free(op);
}

static void
broker_subscribe(unsigned w, const struct msg *req)
{
	if (req->flags & MSG_F_PRESENCE)
		broker_presence_add(w, req);
	if (req->req_id == 0) {        /* nothing waits for an answer */
		if (req->flags & MSG_F_JOIN_LEAVE)
			broker_join(req);
		return;
	}
	if ((req->flags & MSG_F_POSITION) && req->history_size > 0 && req->history_ttl_ms > 0) {
		struct engine_read r = { .meta_ttl_ms = req->history_meta_ttl_ms, .limit = 0 };
		if ((req->flags & MSG_F_RECOVER) && (req->flags & MSG_F_CACHE)) {
			r.reverse = 1;
			r.limit = 1;
		} else if (req->flags & MSG_F_RECOVER) {
			r.has_since = 1;
			r.since = req->offset;
			r.limit = req->limit > 0 ? req->limit : -1;
		}
		broker.engine->position(&req->channel, &r, broker_positioned, broker_op_new(w));
		return;
	}
	broker.engine->ready(&req->channel, broker_ready, broker_op_new(w));
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
		broker.engine->broadcast(&l);
	}
}

/* ------------------------------------------------------------------ */
/* Node registries: subscribers per channel, connections per user      */

/* Adds delta to key's count for worker w; returns the new total, and
 * removes the key at zero.  *sum tracks the registry's sum.  With
 * interest, the engine hears when the channel gains its first or loses
 * its last subscriber. */
static uint64_t
counts_add(struct htab *t, const char *key, size_t len, unsigned w, int64_t delta,
    uint64_t *sum, int interest)
{
	struct counts *c = htab_get(t, key, len);

	if (c == NULL) {
		if (delta <= 0)
			return 0;
		c = xcalloc(1, sizeof(*c) + heritage.max_workers * sizeof(c->per_worker[0]));
		htab_put(t, key, len, c);
		if (interest)
			broker.engine->interest(key, len, 1);
	}
	if (delta < 0 && (uint64_t)-delta > c->per_worker[w])
		delta = -(int64_t)c->per_worker[w];
	c->per_worker[w] = (uint32_t)((int64_t)c->per_worker[w] + delta);
	c->total = (uint64_t)((int64_t)c->total + delta);
	*sum = (uint64_t)((int64_t)*sum + delta);
	if (c->total == 0) {
		htab_del(t, key, len);
		free(c);
		if (interest)
			broker.engine->interest(key, len, 0);
		return 0;
	}
	return c->total;
}

/* Drops everything worker w had counted in t. */
static void
counts_forget(struct htab *t, unsigned w, uint64_t *sum, int interest)
{
	struct buf keys = BUF_INIT;
	size_t it, off = 0;
	struct htab_entry *e;
	const char *k;
	uint32_t kl;

	for (e = htab_first(t, &it); e; e = htab_next(t, &it, e)) {
		struct counts *c = e->value;
		if (c->per_worker[w] != 0)
			buf_put_item(&keys, e->key, e->klen);
	}
	while (buf_next_item(&keys, &off, &k, &kl)) {
		struct counts *c = htab_get(t, k, kl);
		if (c)
			counts_add(t, k, kl, w, -(int64_t)c->per_worker[w], sum, interest);
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
		counts_add(&broker.users, req->user.p, req->user.len, w, req->limit,
		    &broker.nclients, 0);
	}
	if (req->req_id)
		broker_answer(w, &res);
}

/* A server API command for sessions (disconnect, unsubscribe, ...):
 * every node's workers look for the user's connections. */
static void
broker_control(const struct msg *m)
{
	struct msg copy = *m;
	struct msg_str *items = xcalloc(m->nitems ? m->nitems : 1, sizeof(*items));
	size_t pos = 0;

	for (uint32_t i = 0; i < m->nitems; i++)
		msg_item_next(m, &pos, &items[i]);
	copy.items = items;
	broker.engine->broadcast(&copy);
	free(items);
}

void
broker_channels_collect(struct htab *into, void (*add)(struct htab *t, const char *ch, size_t len,
    uint64_t count))
{
	size_t it;
	struct htab_entry *e;

	for (e = htab_first(&broker.interest, &it); e; e = htab_next(&broker.interest, &it, e))
		add(into, e->key, e->klen, ((struct counts *)e->value)->total);
}

void
broker_channels_encode(const struct htab *counts, uint64_t req_id, struct buf *out)
{
	struct msg res = { .type = MSG_CHANNELS_RESULT, .req_id = req_id };
	struct msg_str *items = xcalloc(2 * counts->count + 1, sizeof(*items));
	char (*nums)[24] = xcalloc(counts->count + 1, sizeof(*nums));
	size_t it, n = 0;
	struct htab_entry *e;

	for (e = htab_first(counts, &it); e; e = htab_next(counts, &it, e)) {
		int len = snprintf(nums[n], sizeof(nums[n]), "%llu",
		    (unsigned long long)*(uint64_t *)e->value);
		items[2 * n] = (struct msg_str){ e->key, e->klen };
		items[2 * n + 1] = (struct msg_str){ nums[n], (uint32_t)len };
		n++;
	}
	res.items = items;
	res.nitems = (uint32_t)(2 * n);
	msg_encode(&res, out);
	free(items);
	free(nums);
}

void
broker_channels_answer(unsigned w, uint64_t req_id, struct htab *counts)
{
	buf_reset(&broker.out);
	broker_channels_encode(counts, req_id, &broker.out);
	broker_reply(w, &broker.out);
}

static void
broker_channels_count(struct htab *t, const char *ch, size_t len, uint64_t count)
{
	uint64_t *c = xmalloc(sizeof(*c));

	*c = count;
	htab_put(t, ch, len, c);
}

static void
broker_channels(unsigned w, const struct msg *req)
{
	struct htab counts;
	size_t it;
	struct htab_entry *e;

	/* With other nodes: their channels too, summed. */
	if (cluster_survey_channels(w, req->req_id) == 0)
		return;
	htab_init(&counts);
	broker_channels_collect(&counts, broker_channels_count);
	broker_channels_answer(w, req->req_id, &counts);
	for (e = htab_first(&counts, &it); e; e = htab_next(&counts, &it, e))
		free(e->value);
	htab_free(&counts);
}

static void
broker_stats(unsigned w, const struct msg *req)
{
	struct msg res = { .type = MSG_STATS_RESULT, .req_id = req->req_id };
	struct msg_str *peers;

	res.num_clients = (uint32_t)broker.nclients;
	/* Anonymous connections count as one user "", as upstream's hub does. */
	res.num_users = (uint32_t)broker.users.count;
	res.offset = broker.interest.count;
	res.since = broker.nsubs;
	/* The other nodes, as they last announced themselves. */
	node_expire();
	res.nitems = node_others(&peers);
	res.items = peers;
	broker_answer(w, &res);
	free(peers);
}

/* Once a second: a worker that died since takes its clients out of
 * presence, even before its replacement says hello. */
static void
broker_check_cb(evutil_socket_t fd, short what, void *arg)
{
	unsigned span = 0;

	broker.engine->tick();
	for (unsigned w = 0; w < heritage.max_workers; w++) {
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
		if (broker.worker_pids[w] > 0)
			span = w + 1;
	}
	broker.live_span = span;
}

/* Request rings to read now (see broker.live_span). */
static unsigned
broker_span(void)
{
	unsigned n = shm_active_workers(heritage.shm);

	return n > broker.live_span ? n : broker.live_span;
}

static void
broker_hold_query(unsigned w, const struct buf *rec)
{
	unsigned span = broker_span();
	struct held_query *q = xmalloc(sizeof(*q) + rec->len);

	q->next = NULL;
	q->worker = w;
	q->span = span;
	q->heads = xcalloc(span, sizeof(*q->heads));
	for (unsigned i = 0; i < span; i++)
		q->heads[i] = ring_head(shm_request(heritage.shm, i));
	q->len = rec->len;
	memcpy(q->rec, rec->data, rec->len);
	*broker.held_tail = q;
	broker.held_tail = &q->next;
}

/* Whether every ring has been read up to where it ended when q was read. */
static int
broker_held_ready(const struct held_query *q)
{
	for (unsigned i = 0; i < q->span; i++)
		if (broker.req_cursors[i].seq < q->heads[i])
			return 0;
	return 1;
}

/* Answers the held queries whose rings have been read far enough, or all
 * of them (every ring was found empty after they were read). */
static void
broker_answer_held(int all)
{
	struct held_query **pp = &broker.held, *q;

	while ((q = *pp) != NULL) {
		struct msg m;

		if (!all && !broker_held_ready(q)) {
			pp = &q->next;
			continue;
		}
		*pp = q->next;
		if (msg_decode(q->rec, q->len, &m) == 0) {
			if (m.type == MSG_CHANNELS)
				broker_channels(q->worker, &m);
			else
				broker_stats(q->worker, &m);
		}
		free(q->heads);
		free(q);
	}
	broker.held_tail = pp;
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
		counts_add(&broker.interest, m.channel.p, m.channel.len, w, m.limit,
		    &broker.nsubs, 1);
		break;
	case MSG_CONN:
		broker_conn(w, &m);
		break;
	case MSG_CONTROL:
		broker_control(&m);
		break;
	case MSG_CHANNELS:
	case MSG_STATS:
		broker_hold_query(w, rec);
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
	static int draining;

	if (draining)
		return;
	draining = 1;
	for (;;) {
		/* A reload may have started workers: the supervisor then writes
		 * our eventfd, and this re-reads the count. */
		unsigned span = broker_span();
		int again = 0;

		for (unsigned w = 0; w < span; w++) {
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
		broker_answer_held(0);
		if (again)
			continue;
		for (unsigned w = 0; w < span; w++)
			again |= ring_reader_sleep(shm_request(heritage.shm, w), 0);
		/* Workers added meanwhile: read their rings before sleeping. */
		again |= broker_span() != span;
		if (!again) {
			/* Every ring is read to its end (a ring formatted
			 * anew for a respawned worker never reaches an old
			 * head). */
			broker_answer_held(1);
			break;
		}
	}
	draining = 0;
}

void
broker_catch_up(void)
{
	broker_drain();
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

static const struct engine *
broker_engine(const struct config *cfg)
{
	if (strcmp(cfg->engine_type, "redis") == 0)
		return &engine_redis;
	if (cfg->broker_enabled && strcmp(cfg->broker_type, "nats") == 0)
		return &engine_nats;
	return &engine_memory;
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
	htab_init(&broker.presence);
	htab_init(&broker.interest);
	htab_init(&broker.users);
	broker.worker_pids = xcalloc(heritage.max_workers, sizeof(*broker.worker_pids));
	buf_init(&broker.rec);
	buf_init(&broker.out);
	broker.held_tail = &broker.held;
	broker.req_cursors = xcalloc(heritage.max_workers, sizeof(*broker.req_cursors));
	broker.pending = xcalloc(heritage.max_workers, sizeof(*broker.pending));
	broker.pending_tail = xcalloc(heritage.max_workers, sizeof(*broker.pending_tail));
	for (unsigned w = 0; w < heritage.max_workers; w++)
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

	broker.engine = broker_engine(heritage.cfg);
	if (broker.engine->start(broker.base, heritage.cfg) != 0)
		log_fatal("the %s engine did not start", broker.engine->name);
	{
		/* Streams start over with new epochs (memory engine), or
		 * publications may have passed while no broker listened:
		 * positioned subscribers must hear it even if no publication
		 * comes (§4.6). */
		struct msg start = { .type = MSG_BROKER_START, .generation = heritage.generation };
		broker_fanout(&start);
	}
	metrics_started(heritage.max_workers);
	broker_drain();
	ipc_child_ready();
	log_info("ready, serving %u workers (%u slots), %s engine",
	    shm_active_workers(heritage.shm), heritage.max_workers, broker.engine->name);
	event_base_dispatch(broker.base);

	cluster_reset();
	broker.engine->stop();
	node_reset();
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
	free(broker.worker_pids);
	event_free(broker.check_ev);
	for (unsigned w = 0; w < heritage.max_workers; w++) {
		while (broker.pending[w]) {
			struct pending_reply *p = broker.pending[w];
			broker.pending[w] = p->next;
			free(p);
		}
	}
	free(broker.pending);
	free(broker.pending_tail);
	while (broker.held) {
		struct held_query *q = broker.held;
		broker.held = q->next;
		free(q->heads);
		free(q);
	}
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
