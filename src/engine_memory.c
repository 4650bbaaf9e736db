/*
 * engine_memory.c - the single-node engine, run by the broker process.
 * Channel streams (history: the PUB records themselves, ready to replay),
 * their offsets and epochs, and idempotency results live in the broker's
 * heap; publications go straight into the fan-out ring.  Presence is the
 * broker's own table of local clients.  A broker restart starts every
 * stream over with a new epoch.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "broker.h"
#include "buf.h"
#include "engine.h"
#include "htab.h"
#include "log.h"
#include "msg.h"
#include "wheel.h"
#include "xmalloc.h"

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
	char epoch[ENGINE_EPOCH_LEN + 1];
	uint64_t top;
	uint64_t meta_expires_ms;
	struct stream_entry *entries;
	size_t cap, head, count;
};

/* The result of a publish with an idempotency key, kept 5 minutes. */
#define IDEM_TTL_MS (5 * 60 * 1000)
struct idem_result {
	uint64_t expires_ms;
	uint64_t offset;
	char epoch[ENGINE_EPOCH_LEN + 1];
};

static struct {
	struct htab streams;      /* channel -> struct stream */
	struct htab idem;         /* channel NUL key -> struct idem_result */
	struct buf out;           /* scratch: a record to write */
	struct msg_str *items;    /* scratch: read results */
	uint32_t items_cap;
	unsigned ticks;
} mem;

void
engine_new_epoch(char *epoch)
{
	static const char letters[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
	unsigned char rnd[ENGINE_EPOCH_LEN];

	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		for (int i = 0; i < ENGINE_EPOCH_LEN; i++)
			rnd[i] = (unsigned char)random();
	for (int i = 0; i < ENGINE_EPOCH_LEN; i++)
		epoch[i] = letters[rnd[i] % (sizeof(letters) - 1)];
	epoch[ENGINE_EPOCH_LEN] = '\0';
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

/* Finds or creates the stream of a channel, trimmed, its meta lifetime
 * refreshed; a stream whose meta expired starts over with a new epoch. */
static struct stream *
mem_stream(const struct msg_str *channel, int64_t meta_ttl_ms, uint64_t now)
{
	struct stream *s = htab_get(&mem.streams, channel->p, channel->len);

	if (s && s->meta_expires_ms && s->meta_expires_ms <= now) {
		htab_del(&mem.streams, channel->p, channel->len);
		stream_free(s);
		s = NULL;
	}
	if (s == NULL) {
		s = xcalloc(1, sizeof(*s));
		engine_new_epoch(s->epoch);
		htab_put(&mem.streams, channel->p, channel->len, s);
	}
	stream_trim(s, now);
	if (meta_ttl_ms > 0)
		s->meta_expires_ms = now + (uint64_t)meta_ttl_ms;
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

static void
mem_publish(const struct msg *pub_in, const struct msg *req, struct engine_to to)
{
	struct msg pub = *pub_in;
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
		idem = htab_get(&mem.idem, ikey.data, ikey.len);
		if (idem && idem->expires_ms > now) {
			buf_free(&ikey);
			broker_publish_done(to, 0, idem->offset, idem->epoch);
			return;
		}
	}
	if (req->history_size > 0 && req->history_ttl_ms > 0) {
		s = mem_stream(&req->channel, req->history_meta_ttl_ms, now);
		s->top++;
		pub.offset = s->top;
		pub.epoch = (struct msg_str){ s->epoch, ENGINE_EPOCH_LEN };
	}
	buf_reset(&mem.out);
	msg_encode(&pub, &mem.out);
	if (broker_fanout_raw(mem.out.data, mem.out.len) != 0) {
		buf_free(&ikey);
		broker_publish_done(to, 100, 0, "");
		return;
	}
	if (s)
		stream_append(s, (size_t)req->history_size, now + (uint64_t)req->history_ttl_ms,
		    sbuf_new(mem.out.data, mem.out.len));
	if (ikey.len) {
		if (idem == NULL) {
			idem = xcalloc(1, sizeof(*idem));
			htab_put(&mem.idem, ikey.data, ikey.len, idem);
		}
		idem->expires_ms = now + IDEM_TTL_MS;
		idem->offset = pub.offset;
		memcpy(idem->epoch, s ? s->epoch : "", s ? ENGINE_EPOCH_LEN + 1 : 1);
	}
	buf_free(&ikey);
	broker_publish_done(to, 0, pub.offset, s ? s->epoch : "");
}

static void
mem_read(const struct msg_str *channel, const struct engine_read *r, engine_stream_cb cb,
    void *arg)
{
	struct stream *s = mem_stream(channel, r->meta_ttl_ms, wheel_now_ms());
	uint32_t n = 0;

	for (size_t k = 0; r->limit != 0 && k < s->count; k++) {
		size_t i = r->reverse ? s->count - 1 - k : k;
		struct stream_entry *e = &s->entries[(s->head + i) % s->cap];
		if (r->has_since && (r->reverse ? e->offset >= r->since : e->offset <= r->since))
			continue;
		if (n == mem.items_cap) {
			mem.items_cap = mem.items_cap ? mem.items_cap * 2 : 64;
			mem.items = xrealloc(mem.items, mem.items_cap * sizeof(*mem.items));
		}
		mem.items[n++] = (struct msg_str){ e->rec->data, e->rec->len };
		if (r->limit > 0 && n == (uint64_t)r->limit)
			break;
	}
	cb(arg, 0, s->top, s->epoch, mem.items, n);
}

static void
mem_ready(const struct msg_str *channel, engine_done_cb cb, void *arg)
{
	cb(arg, 0);
}

static void
mem_history_remove(const struct msg_str *channel, engine_done_cb cb, void *arg)
{
	struct stream *s = htab_get(&mem.streams, channel->p, channel->len);

	if (s) {
		/* Keep the position (top, epoch): subscribers stay consistent. */
		for (size_t i = 0; i < s->count; i++)
			sbuf_unref(s->entries[(s->head + i) % s->cap].rec);
		s->head = 0;
		s->count = 0;
	}
	cb(arg, 0);
}

static void
mem_presence_get(const struct msg_str *channel, engine_presence_cb cb, void *arg)
{
	struct msg_str *items = NULL;
	uint32_t n = broker_local_presence(channel, &items);

	cb(arg, 0, items, n);
	free(items);
}

static void
mem_presence_noop(const struct msg_str *channel, const struct engine_presence *p)
{
}

static void
mem_broadcast(const struct msg *m)
{
	broker_fanout(m);
}

static void
mem_interest(const char *channel, size_t len, int on)
{
}

/* Drops idempotency results past their window. */
static void
mem_idem_purge(void)
{
	uint64_t now = wheel_now_ms();
	struct buf keys = BUF_INIT;
	size_t it, off = 0;
	struct htab_entry *e;
	const char *k;
	uint32_t kl;

	for (e = htab_first(&mem.idem, &it); e; e = htab_next(&mem.idem, &it, e)) {
		struct idem_result *r = e->value;
		if (r->expires_ms <= now)
			buf_put_item(&keys, e->key, e->klen);
	}
	while (buf_next_item(&keys, &off, &k, &kl))
		free(htab_del(&mem.idem, k, kl));
	buf_free(&keys);
}

static void
mem_tick(void)
{
	if (++mem.ticks % 60 == 0)
		mem_idem_purge();
}

static int
mem_start(struct event_base *base, const struct config *cfg)
{
	memset(&mem, 0, sizeof(mem));
	htab_init(&mem.streams);
	htab_init(&mem.idem);
	buf_init(&mem.out);
	return 0;
}

static void
mem_stop(void)
{
	size_t it;
	struct htab_entry *e;

	for (e = htab_first(&mem.streams, &it); e; e = htab_next(&mem.streams, &it, e))
		stream_free(e->value);
	htab_free(&mem.streams);
	for (e = htab_first(&mem.idem, &it); e; e = htab_next(&mem.idem, &it, e))
		free(e->value);
	htab_free(&mem.idem);
	buf_free(&mem.out);
	free(mem.items);
}

const struct engine engine_memory = {
	.name = "memory",
	.start = mem_start,
	.stop = mem_stop,
	.publish = mem_publish,
	.read = mem_read,
	.position = mem_read,
	.ready = mem_ready,
	.history_remove = mem_history_remove,
	.presence_add = mem_presence_noop,
	.presence_remove = mem_presence_noop,
	.presence_get = mem_presence_get,
	.broadcast = mem_broadcast,
	.interest = mem_interest,
	.tick = mem_tick,
};
