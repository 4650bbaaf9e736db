/*
 * engine_nats.c - the NATS broker (broker.type = "nats"), run by the
 * broker process: publications, join/leave and control messages travel
 * through core NATS subjects (<prefix>.client.<channel>, <prefix>.control),
 * at most once, as Centrifugo's NATS broker.  There is no history: reads
 * answer 108 (not available), publications carry no offset.  Presence is
 * each node's own (the broker's table of local clients).
 *
 * libnats runs its own threads (socket reader, flusher, message
 * delivery).  Its callbacks only append received frames to a queue under
 * a mutex and wake the broker's libevent loop through an eventfd; all
 * other work stays on the broker's thread.  Frames are cluster.h's.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/event.h>
#include <nats/nats.h>

#include "broker.h"
#include "buf.h"
#include "cluster.h"
#include "config.h"
#include "engine.h"
#include "htab.h"
#include "log.h"
#include "node.h"
#include "wheel.h"
#include "xmalloc.h"

/* A channel this node receives. */
struct nats_chan {
	natsSubscription *sub;
	int flushed;              /* the SUB is known to have reached the server */
};

/* Frames waiting for the broker thread: subject and data, as buf items. */
struct nats_queue {
	pthread_mutex_t lock;
	struct buf frames;
	int efd;
};

static struct {
	const struct config *cfg;
	natsConnection *nc;
	natsOptions *opts;
	natsSubscription *control_sub;
	struct htab subs;                 /* channel -> struct nats_chan */
	struct nats_queue q;
	struct event *wake_ev;
	char *client_prefix;              /* "P.client." */
	size_t client_prefix_len;
	char *control;                    /* "P.control" */
	atomic_int state_changed;         /* 1: connected again, resubscribe */
	uint64_t next_info_ms;
	unsigned ticks;
} nt;

/* libnats thread: queue the frame, wake the broker. */
static void
nats_on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	const char *subj = natsMsg_GetSubject(msg);
	int was_empty;
	uint64_t one = 1;

	pthread_mutex_lock(&nt.q.lock);
	was_empty = nt.q.frames.len == 0;
	buf_put_item(&nt.q.frames, subj, (uint32_t)strlen(subj));
	buf_put_item(&nt.q.frames, natsMsg_GetData(msg), (uint32_t)natsMsg_GetDataLength(msg));
	pthread_mutex_unlock(&nt.q.lock);
	if (was_empty && write(nt.q.efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_error("nats: eventfd write: %s", strerror(errno));
	natsMsg_Destroy(msg);
}

static void
nats_on_reconnected(natsConnection *nc, void *closure)
{
	uint64_t one = 1;

	/* The server forgot nothing of our subscriptions (libnats replays
	 * them), but publications may have passed meanwhile. */
	atomic_store(&nt.state_changed, 1);
	if (write(nt.q.efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_error("nats: eventfd write: %s", strerror(errno));
}

static void
nats_on_disconnected(natsConnection *nc, void *closure)
{
	log_warn("nats: disconnected from %s, reconnecting", nt.cfg->broker_nats_url);
}

/* Broker thread: handle every queued frame. */
static void
nats_wake_cb(evutil_socket_t fd, short what, void *arg)
{
	uint64_t n;
	struct buf frames;
	const char *subj, *data;
	uint32_t sl, dl;

	if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		log_error("nats: eventfd read: %s", strerror(errno));
	if (atomic_exchange(&nt.state_changed, 0)) {
		log_info("nats: connected to %s", nt.cfg->broker_nats_url);
		broker_positions_lost();
	}
	pthread_mutex_lock(&nt.q.lock);
	frames = nt.q.frames;
	buf_init(&nt.q.frames);
	pthread_mutex_unlock(&nt.q.lock);
	for (size_t off = 0; buf_next_item(&frames, &off, &subj, &sl) &&
	    buf_next_item(&frames, &off, &data, &dl);) {
		if (sl == strlen(nt.control) && memcmp(subj, nt.control, sl) == 0)
			cluster_on_control_frame(data, dl);
		else
			cluster_on_channel_frame(data, dl);
	}
	buf_free(&frames);
}

static int
nats_connected(void)
{
	return nt.nc && natsConnection_Status(nt.nc) == NATS_CONN_STATUS_CONNECTED;
}

static int
nats_send(const char *subject, const struct buf *frame)
{
	natsStatus s;

	if (!nats_connected())
		return -1;
	s = natsConnection_Publish(nt.nc, subject, frame->data, (int)frame->len);
	if (s != NATS_OK) {
		log_error("nats: publish to %s: %s", subject, natsStatus_GetText(s));
		return -1;
	}
	return 0;
}

/* cluster.c's sender. */
static int
nats_send_control(const struct buf *frame)
{
	return nats_send(nt.control, frame);
}

static void
nats_subject(struct buf *out, const char *ch, size_t len)
{
	buf_reset(out);
	buf_append(out, nt.client_prefix, nt.client_prefix_len);
	buf_append(out, ch, len);
}

static void
nats_publish(const struct msg *pub, const struct msg *req, struct engine_to to)
{
	struct buf frame = BUF_INIT, subj = BUF_INIT;
	int rc;

	/* No stream here: delivered without offset, whatever the
	 * namespace's history options say. */
	msg_encode(pub, &frame);
	nats_subject(&subj, req->channel.p, req->channel.len);
	rc = nats_send(buf_cstr(&subj), &frame);
	buf_free(&frame);
	buf_free(&subj);
	broker_publish_done(to, rc == 0 ? 0 : 100, 0, "");
}

static void
nats_read(const struct msg_str *channel, const struct engine_read *r, engine_stream_cb cb,
    void *arg)
{
	cb(arg, 108, 0, "", NULL, 0);
}

/* Our SUB must have reached the server before a publication from
 * another connection can be relied on: one PING/PONG round trip, once per
 * channel subscription (it blocks the broker for that round trip). */
static void
nats_ready(const struct msg_str *channel, engine_done_cb cb, void *arg)
{
	struct nats_chan *c = htab_get(&nt.subs, channel->p, channel->len);
	natsStatus s;

	if (c == NULL || !nats_connected()) {
		cb(arg, 100);
		return;
	}
	if (!c->flushed) {
		s = natsConnection_FlushTimeout(nt.nc, nt.cfg->broker_nats_write_timeout);
		if (s != NATS_OK) {
			log_error("nats: flush: %s", natsStatus_GetText(s));
			cb(arg, 100);
			return;
		}
		c->flushed = 1;
	}
	cb(arg, 0);
}

static void
nats_history_remove(const struct msg_str *channel, engine_done_cb cb, void *arg)
{
	cb(arg, 108);
}

static void
nats_presence_noop(const struct msg_str *channel, const struct engine_presence *p)
{
}

static void
nats_presence_get(const struct msg_str *channel, engine_presence_cb cb, void *arg)
{
	struct msg_str *items = NULL;
	uint32_t n = broker_local_presence(channel, &items);

	cb(arg, 0, items, n);
	free(items);
}

static void
nats_broadcast(const struct msg *m)
{
	struct buf frame = BUF_INIT, subj = BUF_INIT;

	broker_fanout(m);
	if (m->type == MSG_JOIN || m->type == MSG_LEAVE) {
		cluster_join_leave_frame(&frame, m);
		nats_subject(&subj, m->channel.p, m->channel.len);
		nats_send(buf_cstr(&subj), &frame);
	} else {
		cluster_control_frame(&frame, m);
		if (nats_send(nt.control, &frame) != 0)
			log_warn("nats: a %s command reaches this node only", msg_type_name(m->type));
	}
	buf_free(&frame);
	buf_free(&subj);
}

static void
nats_interest(const char *ch, size_t len, int on)
{
	struct nats_chan *c = htab_get(&nt.subs, ch, len);
	struct buf subj = BUF_INIT;
	natsSubscription *sub = NULL;
	natsStatus s;

	if (on && c == NULL) {
		nats_subject(&subj, ch, len);
		s = natsConnection_Subscribe(&sub, nt.nc, buf_cstr(&subj), nats_on_msg, NULL);
		if (s == NATS_OK) {
			c = xcalloc(1, sizeof(*c));
			c->sub = sub;
			htab_put(&nt.subs, ch, len, c);
		} else {
			log_error("nats: subscribe %s: %s", buf_cstr(&subj), natsStatus_GetText(s));
		}
	} else if (!on && c) {
		htab_del(&nt.subs, ch, len);
		natsSubscription_Unsubscribe(c->sub);
		natsSubscription_Destroy(c->sub);
		free(c);
	}
	buf_free(&subj);
}

static void
nats_tick(void)
{
	uint64_t now = wheel_now_ms();

	if (now >= nt.next_info_ms) {
		struct buf frame = BUF_INIT;
		nt.next_info_ms = now + NODE_INFO_INTERVAL_MS;
		cluster_control_frame(&frame, NULL);
		nats_send(nt.control, &frame);
		buf_free(&frame);
		node_expire();
	}
}

static int
nats_start(struct event_base *base, const struct config *cfg)
{
	natsStatus s;
	struct buf b = BUF_INIT;

	memset(&nt, 0, sizeof(nt));
	nt.cfg = cfg;
	htab_init(&nt.subs);
	buf_init(&nt.q.frames);
	pthread_mutex_init(&nt.q.lock, NULL);
	nt.q.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (nt.q.efd < 0) {
		log_error("nats: eventfd: %s", strerror(errno));
		return -1;
	}
	nt.wake_ev = event_new(base, nt.q.efd, EV_READ | EV_PERSIST, nats_wake_cb, NULL);
	if (nt.wake_ev == NULL || event_add(nt.wake_ev, NULL) != 0)
		return -1;
	buf_printf(&b, "%s.client.", cfg->broker_nats_prefix);
	nt.client_prefix_len = b.len;
	nt.client_prefix = buf_steal(&b, NULL);
	buf_printf(&b, "%s.control", cfg->broker_nats_prefix);
	nt.control = buf_steal(&b, NULL);
	buf_free(&b);

	if ((s = natsOptions_Create(&nt.opts)) != NATS_OK ||
	    (s = natsOptions_SetURL(nt.opts, cfg->broker_nats_url)) != NATS_OK ||
	    (s = natsOptions_SetTimeout(nt.opts, cfg->broker_nats_dial_timeout)) != NATS_OK ||
	    (s = natsOptions_SetWriteDeadline(nt.opts, cfg->broker_nats_write_timeout)) != NATS_OK ||
	    (s = natsOptions_SetMaxReconnect(nt.opts, -1)) != NATS_OK ||
	    (s = natsOptions_SetReconnectWait(nt.opts, 250)) != NATS_OK ||
	    (s = natsOptions_SetDisconnectedCB(nt.opts, nats_on_disconnected, NULL)) != NATS_OK ||
	    (s = natsOptions_SetReconnectedCB(nt.opts, nats_on_reconnected, NULL)) != NATS_OK ||
	    (s = natsOptions_SetRetryOnFailedConnect(nt.opts, true, nats_on_reconnected, NULL)) != NATS_OK) {
		log_error("nats: options (url %s): %s", cfg->broker_nats_url, natsStatus_GetText(s));
		return -1;
	}
	s = natsConnection_Connect(&nt.nc, nt.opts);
	if (s == NATS_NOT_YET_CONNECTED) {
		log_warn("nats: %s not reachable yet, retrying in the background",
		    cfg->broker_nats_url);
	} else if (s != NATS_OK) {
		log_error("nats: connect to %s: %s", cfg->broker_nats_url, natsStatus_GetText(s));
		return -1;
	} else {
		log_info("nats broker: connected to %s, prefix \"%s\"", cfg->broker_nats_url,
		    cfg->broker_nats_prefix);
	}
	cluster_set_sender(base, nats_send_control);
	s = natsConnection_Subscribe(&nt.control_sub, nt.nc, nt.control, nats_on_msg, NULL);
	if (s != NATS_OK) {
		log_error("nats: subscribe %s: %s", nt.control, natsStatus_GetText(s));
		return -1;
	}
	return 0;
}

static void
nats_stop(void)
{
	size_t it;
	struct htab_entry *e;

	for (e = htab_first(&nt.subs, &it); e; e = htab_next(&nt.subs, &it, e)) {
		struct nats_chan *c = e->value;
		natsSubscription_Destroy(c->sub);
		free(c);
	}
	htab_free(&nt.subs);
	natsSubscription_Destroy(nt.control_sub);
	if (nt.nc) {
		natsConnection_Close(nt.nc);
		natsConnection_Destroy(nt.nc);
	}
	natsOptions_Destroy(nt.opts);
	nats_CloseAndWait(2000);
	if (nt.wake_ev)
		event_free(nt.wake_ev);
	close(nt.q.efd);
	buf_free(&nt.q.frames);
	pthread_mutex_destroy(&nt.q.lock);
	free(nt.client_prefix);
	free(nt.control);
}

const struct engine engine_nats = {
	.name = "nats",
	.start = nats_start,
	.stop = nats_stop,
	.publish = nats_publish,
	.read = nats_read,
	.position = nats_read,
	.ready = nats_ready,
	.history_remove = nats_history_remove,
	.presence_add = nats_presence_noop,
	.presence_remove = nats_presence_noop,
	.presence_get = nats_presence_get,
	.broadcast = nats_broadcast,
	.interest = nats_interest,
	.tick = nats_tick,
};
