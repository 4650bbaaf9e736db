/*
 * hub.c - channel -> local subscribers of one worker, and delivery.
 *
 * hub_deliver() is the fan-out hot path: one publication is encoded once
 * into a shared buffer and that buffer is queued (by reference) on every
 * member; nothing is allocated or encoded per subscriber.
 */
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "codec.h"
#include "heritage.h"
#include "htab.h"
#include "hub.h"
#include "log.h"
#include "loop.h"
#include "msg.h"
#include "proto.h"
#include "shm.h"
#include "xmalloc.h"

struct hub_chan {
	struct htab_entry *entry;   /* owns the channel name */
	struct hub_sub **members;
	uint32_t n, cap;
};

struct hub {
	struct htab chans;
	size_t nsubs;
	struct buf scratch;
	hub_lost_fn lost;
	struct hub_sub **lostv;        /* collected during one delivery */
	uint8_t *lostwhy;
	size_t nlost, caplost;
};

struct hub *
hub_new(hub_lost_fn lost)
{
	struct hub *h = xcalloc(1, sizeof(*h));

	h->lost = lost;
	htab_init(&h->chans);
	buf_init(&h->scratch);
	return h;
}

void
hub_free(struct hub *h)
{
	size_t it;
	struct htab_entry *e;

	if (h == NULL)
		return;
	for (e = htab_first(&h->chans, &it); e; e = htab_next(&h->chans, &it, e)) {
		struct hub_chan *ch = e->value;
		free(ch->members);
		free(ch);
	}
	htab_free(&h->chans);
	buf_free(&h->scratch);
	free(h->lostv);
	free(h->lostwhy);
	free(h);
}

void
hub_add(struct hub *h, const char *channel, size_t len, struct hub_sub *s)
{
	struct hub_chan *ch = htab_get(&h->chans, channel, len);

	if (ch == NULL) {
		ch = xcalloc(1, sizeof(*ch));
		ch->entry = htab_put(&h->chans, channel, len, ch);
	}
	if (ch->n == ch->cap) {
		ch->cap = ch->cap ? ch->cap * 2 : 4;
		ch->members = xrealloc(ch->members, ch->cap * sizeof(*ch->members));
	}
	s->chan = ch;
	s->pos = ch->n;
	ch->members[ch->n++] = s;
	h->nsubs++;
}

void
hub_remove(struct hub *h, struct hub_sub *s)
{
	struct hub_chan *ch = s->chan;

	if (ch == NULL)
		return;
	ASSERT(s->pos < ch->n && ch->members[s->pos] == s);
	ch->members[s->pos] = ch->members[--ch->n];
	ch->members[s->pos]->pos = s->pos;
	s->chan = NULL;
	h->nsubs--;
	if (ch->n == 0) {
		htab_del(&h->chans, ch->entry->key, ch->entry->klen);
		free(ch->members);
		free(ch);
	}
}

const char *
hub_sub_channel(const struct hub_sub *s, size_t *len)
{
	if (s->chan == NULL) {
		if (len)
			*len = 0;
		return "";
	}
	if (len)
		*len = s->chan->entry->klen;
	return s->chan->entry->key;
}

size_t
hub_channel_count(const struct hub *h)
{
	return h->chans.count;
}

size_t
hub_subscription_count(const struct hub *h)
{
	return h->nsubs;
}

int
hub_sub_accept(struct hub_sub *s, uint64_t offset, const char *epoch, size_t epoch_len)
{
	if (epoch_len > HUB_EPOCH_MAX ||
	    (s->epoch[0] && (strlen(s->epoch) != epoch_len || memcmp(s->epoch, epoch, epoch_len) != 0))) {
		if (s->epoch[0])
			return -1;
	}
	if (s->epoch[0] == '\0' && epoch_len <= HUB_EPOCH_MAX) {
		memcpy(s->epoch, epoch, epoch_len);
		s->epoch[epoch_len] = '\0';
	}
	if (offset <= s->offset)
		return 0;
	if (offset != s->offset + 1)
		return -1;
	s->offset = offset;
	return 1;
}

static void
hub_mark_lost(struct hub *h, struct hub_sub *s, enum hub_lost_reason why)
{
	if (s->lost)
		return;
	s->lost = 1;
	if (h->nlost == h->caplost) {
		h->caplost = h->caplost ? h->caplost * 2 : 8;
		h->lostv = xrealloc(h->lostv, h->caplost * sizeof(*h->lostv));
		h->lostwhy = xrealloc(h->lostwhy, h->caplost);
	}
	h->lostwhy[h->nlost] = (uint8_t)why;
	h->lostv[h->nlost++] = s;
}

/* Encodes a JOIN or LEAVE push once per format. */
static void
hub_encode_join_leave(struct hub *h, const struct codec *codec, const struct msg *m)
{
	struct proto_client_info info;
	struct proto_push push;

	codec_client_info(m, &info);
	memset(&push, 0, sizeof(push));
	push.type = m->type == MSG_JOIN ? PROTO_PUSH_JOIN : PROTO_PUSH_LEAVE;
	push.channel = (struct proto_span){ m->channel.p, m->channel.len };
	push.info = &info;
	codec->push(&h->scratch, &push);
}

/* Encodes a PUB push once per format. */
static void
hub_encode_pub(struct hub *h, const struct codec *codec, const struct msg *m)
{
	struct proto_tag tags[MSG_MAX_TAGS];
	struct proto_publication pub;

	codec_publication(m, &pub, tags);
	codec->push_pub(&h->scratch, (struct proto_span){ m->channel.p, m->channel.len }, &pub);
}

/* The frame of m in one format, encoded on first use. */
static struct sbuf *
hub_frame(struct hub *h, struct sbuf **frames, enum codec_format fmt, const struct msg *m)
{
	if (frames[fmt] == NULL) {
		buf_reset(&h->scratch);
		if (m->type == MSG_PUB)
			hub_encode_pub(h, &codecs[fmt], m);
		else
			hub_encode_join_leave(h, &codecs[fmt], m);
		frames[fmt] = sbuf_new(h->scratch.data, h->scratch.len);
	}
	return frames[fmt];
}

void
hub_deliver(struct hub *h, const struct msg *m)
{
	struct hub_chan *ch = htab_get(&h->chans, m->channel.p, m->channel.len);
	struct sbuf *frames[CODEC_COUNT] = { NULL };
	int is_pub = m->type == MSG_PUB;
	uint64_t sent = 0, bytes = 0;
	int binary = (m->flags & MSG_F_BINARY) != 0;

	if (ch == NULL)
		return;
	/* A member closed as slow inside loop_conn_send() stays linked until
	 * its close callback, which loop.c defers: the array is stable here. */
	for (uint32_t i = 0; i < ch->n; i++) {
		struct hub_sub *s = ch->members[i];
		if (s->state != HUB_SUB_ACTIVE || s->lost)
			continue;
		if (!is_pub) {
			if (!s->push_join_leave)
				continue;
		} else {
			if (binary && s->fmt == CODEC_JSON) {
				hub_mark_lost(h, s, HUB_LOST_FORMAT);
				continue;
			}
			if (s->positioned && m->offset) {
				int rc = hub_sub_accept(s, m->offset, m->epoch.p, m->epoch.len);
				if (rc < 0)
					hub_mark_lost(h, s, HUB_LOST_POSITION);
				if (rc <= 0)
					continue;
			}
		}
		struct sbuf *f = hub_frame(h, frames, s->fmt, m);
		if (loop_conn_send(s->conn, f, 0) == 0) {
			sent++;
			bytes += f->len;
		}
	}
	/* One shared counter update per publication, not per subscriber. */
	if (sent) {
		struct proc_slot_shm *slot = shm_slot(heritage.shm, heritage.worker_id);
		atomic_fetch_add(&slot->messages_sent, sent);
		atomic_fetch_add(&slot->bytes_sent, bytes);
	}
	for (int f = 0; f < CODEC_COUNT; f++)
		sbuf_unref(frames[f]);
	/* Now the member array may change. */
	for (size_t i = 0; i < h->nlost; i++)
		h->lost(h->lostv[i], (enum hub_lost_reason)h->lostwhy[i]);
	h->nlost = 0;
}
