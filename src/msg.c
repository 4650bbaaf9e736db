/*
 * msg.c - msgpack encoding of bus records (see msg.h).  Runs in the
 * workers and the broker.  Decoding is a small hand-written reader over the
 * subset of msgpack we emit, so that strings are referenced in place and a
 * record costs no allocation to read.
 */
#include <string.h>

#include <msgpack.h>

#include "buf.h"
#include "msg.h"

static const char *const msg_type_names[MSG_TYPE_MAX] = {
	[MSG_NONE] = "none",
	[MSG_HELLO] = "hello",
	[MSG_PUBLISH] = "publish",
	[MSG_PUBLISH_RESULT] = "publish_result",
	[MSG_PUB] = "pub",
	[MSG_SUBSCRIBE] = "subscribe",
	[MSG_SUB_RESULT] = "sub_result",
	[MSG_UNSUBSCRIBE] = "unsubscribe",
	[MSG_JOIN] = "join",
	[MSG_LEAVE] = "leave",
	[MSG_HISTORY] = "history",
	[MSG_HISTORY_RESULT] = "history_result",
	[MSG_PRESENCE] = "presence",
	[MSG_PRESENCE_RESULT] = "presence_result",
	[MSG_BROKER_START] = "broker_start",
	[MSG_INTEREST] = "interest",
	[MSG_CONN] = "conn",
	[MSG_CONN_RESULT] = "conn_result",
	[MSG_CONTROL] = "control",
	[MSG_CHANNELS] = "channels",
	[MSG_CHANNELS_RESULT] = "channels_result",
	[MSG_STATS] = "stats",
	[MSG_STATS_RESULT] = "stats_result",
	[MSG_HISTORY_REMOVE] = "history_remove",
};

const char *
msg_type_name(enum msg_type t)
{
	return t < MSG_TYPE_MAX && msg_type_names[t] ? msg_type_names[t] : "unknown";
}

static int
msg_buf_write(void *data, const char *p, size_t n)
{
	buf_append(data, p, n);
	return 0;
}

static void
pack_str(msgpack_packer *pk, struct msg_str s)
{
	msgpack_pack_bin(pk, s.len);
	msgpack_pack_bin_body(pk, s.p, s.len);
}

static void
pack_info(msgpack_packer *pk, const struct msg *m)
{
	if (!m->has_info) {
		msgpack_pack_nil(pk);
		return;
	}
	msgpack_pack_array(pk, 4);
	pack_str(pk, m->user);
	pack_str(pk, m->client);
	pack_str(pk, m->conn_info);
	pack_str(pk, m->chan_info);
}

static void
pack_tags(msgpack_packer *pk, const struct msg *m)
{
	msgpack_pack_array(pk, m->ntags * 2);
	for (uint32_t i = 0; i < m->ntags * 2; i++)
		pack_str(pk, m->tags[i]);
}

/*
 * Every record has the same layout, whatever its type: one msgpack array of
 * MSG_NFIELDS elements in this order.  Unused fields cost a byte or two;
 * one layout keeps encoder and decoder in step.
 */
#define MSG_NFIELDS 19

void
msg_encode(const struct msg *m, struct buf *out)
{
	msgpack_packer pk;

	msgpack_packer_init(&pk, out, msg_buf_write);
	msgpack_pack_array(&pk, MSG_NFIELDS);
	msgpack_pack_uint32(&pk, m->type);
	msgpack_pack_uint64(&pk, m->req_id);
	msgpack_pack_uint32(&pk, m->worker);
	msgpack_pack_uint32(&pk, m->generation);
	msgpack_pack_uint32(&pk, m->error);
	msgpack_pack_uint32(&pk, m->flags);
	pack_str(&pk, m->channel);
	pack_str(&pk, m->data);
	pack_info(&pk, m);
	pack_tags(&pk, m);
	msgpack_pack_int64(&pk, m->history_size);
	msgpack_pack_int64(&pk, m->history_ttl_ms);
	msgpack_pack_int64(&pk, m->history_meta_ttl_ms);
	msgpack_pack_uint64(&pk, m->offset);
	pack_str(&pk, m->epoch);
	msgpack_pack_int64(&pk, m->limit);
	msgpack_pack_uint64(&pk, m->since);
	msgpack_pack_array(&pk, 2);
	msgpack_pack_uint32(&pk, m->num_clients);
	msgpack_pack_uint32(&pk, m->num_users);
	msgpack_pack_array(&pk, m->nitems);
	for (uint32_t i = 0; i < m->nitems; i++)
		pack_str(&pk, m->items[i]);
}

/* A cursor over the bytes of one record. */
struct rd {
	const unsigned char *p, *end;
};

static int
rd_need(struct rd *r, size_t n)
{
	return (size_t)(r->end - r->p) >= n ? 0 : -1;
}

static uint64_t
rd_be(const unsigned char *p, int n)
{
	uint64_t v = 0;

	for (int i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

/* Reads an unsigned or non-negative integer. */
static int
rd_uint(struct rd *r, uint64_t *v)
{
	unsigned char c;
	static const int width[] = { 1, 2, 4, 8 };

	if (rd_need(r, 1))
		return -1;
	c = *r->p++;
	if (c <= 0x7f) {
		*v = c;
		return 0;
	}
	if (c >= 0xcc && c <= 0xcf) {
		int n = width[c - 0xcc];
		if (rd_need(r, (size_t)n))
			return -1;
		*v = rd_be(r->p, n);
		r->p += n;
		return 0;
	}
	if (c >= 0xd0 && c <= 0xd3) {
		int n = width[c - 0xd0];
		int64_t s;
		if (rd_need(r, (size_t)n))
			return -1;
		s = (int64_t)rd_be(r->p, n);
		if (n < 8)
			s = (int64_t)(s << (64 - 8 * n)) >> (64 - 8 * n);
		r->p += n;
		if (s < 0)
			return -1;
		*v = (uint64_t)s;
		return 0;
	}
	return -1;
}

static int
rd_int(struct rd *r, int64_t *v)
{
	unsigned char c;
	static const int width[] = { 1, 2, 4, 8 };
	uint64_t u;

	if (rd_need(r, 1))
		return -1;
	c = *r->p;
	if (c >= 0xe0) {
		r->p++;
		*v = (int8_t)c;
		return 0;
	}
	if (c >= 0xd0 && c <= 0xd3) {
		int n = width[c - 0xd0];
		r->p++;
		if (rd_need(r, (size_t)n))
			return -1;
		u = rd_be(r->p, n);
		r->p += n;
		*v = n < 8 ? (int64_t)(u << (64 - 8 * n)) >> (64 - 8 * n) : (int64_t)u;
		return 0;
	}
	if (rd_uint(r, &u) || u > INT64_MAX)
		return -1;
	*v = (int64_t)u;
	return 0;
}

static int
rd_array(struct rd *r, uint32_t *n)
{
	unsigned char c;

	if (rd_need(r, 1))
		return -1;
	c = *r->p++;
	if ((c & 0xf0) == 0x90) {
		*n = c & 0x0f;
		return 0;
	}
	if (c == 0xdc || c == 0xdd) {
		int w = c == 0xdc ? 2 : 4;
		if (rd_need(r, (size_t)w))
			return -1;
		*n = (uint32_t)rd_be(r->p, w);
		r->p += w;
		return 0;
	}
	return -1;
}

static int
rd_str(struct rd *r, struct msg_str *s)
{
	unsigned char c;
	uint64_t n;
	int w;

	if (rd_need(r, 1))
		return -1;
	c = *r->p++;
	switch (c) {
	case 0xc4: w = 1; break;
	case 0xc5: w = 2; break;
	case 0xc6: w = 4; break;
	default: return -1;
	}
	if (rd_need(r, (size_t)w))
		return -1;
	n = rd_be(r->p, w);
	r->p += w;
	if (rd_need(r, n))
		return -1;
	s->p = (const char *)r->p;
	s->len = (uint32_t)n;
	r->p += n;
	return 0;
}

static int
rd_info(struct rd *r, struct msg *m)
{
	uint32_t n;

	if (rd_need(r, 1))
		return -1;
	if (*r->p == 0xc0) {
		r->p++;
		m->has_info = 0;
		return 0;
	}
	if (rd_array(r, &n) || n != 4)
		return -1;
	m->has_info = 1;
	if (rd_str(r, &m->user) || rd_str(r, &m->client) ||
	    rd_str(r, &m->conn_info) || rd_str(r, &m->chan_info))
		return -1;
	return 0;
}

static int
rd_tags(struct rd *r, struct msg *m)
{
	uint32_t n;

	if (rd_array(r, &n) || n % 2 || n > 2 * MSG_MAX_TAGS)
		return -1;
	m->ntags = n / 2;
	for (uint32_t i = 0; i < n; i++)
		if (rd_str(r, &m->tags[i]))
			return -1;
	return 0;
}

int
msg_decode(const void *rec, size_t len, struct msg *m)
{
	struct rd r = { rec, (const unsigned char *)rec + len };
	uint32_t n;
	uint64_t u[6];
	int64_t limit;
	const unsigned char *items;

	memset(m, 0, offsetof(struct msg, tags));
	m->ntags = 0;
	memset(&m->history_size, 0, sizeof(*m) - offsetof(struct msg, history_size));
	if (rd_array(&r, &n) || n != MSG_NFIELDS)
		return -1;
	for (int i = 0; i < 6; i++)
		if (rd_uint(&r, &u[i]) || (i != 1 && u[i] > UINT32_MAX))
			return -1;
	if (u[0] == MSG_NONE || u[0] >= MSG_TYPE_MAX)
		return -1;
	m->type = (enum msg_type)u[0];
	m->req_id = u[1];
	m->worker = (uint32_t)u[2];
	m->generation = (uint32_t)u[3];
	m->error = (uint32_t)u[4];
	m->flags = (uint32_t)u[5];
	if (rd_str(&r, &m->channel) || rd_str(&r, &m->data) || rd_info(&r, m) ||
	    rd_tags(&r, m) || rd_int(&r, &m->history_size) ||
	    rd_int(&r, &m->history_ttl_ms) || rd_int(&r, &m->history_meta_ttl_ms) ||
	    rd_uint(&r, &m->offset) || rd_str(&r, &m->epoch) || rd_int(&r, &limit) ||
	    rd_uint(&r, &m->since) || rd_array(&r, &n) || n != 2 ||
	    rd_uint(&r, &u[0]) || rd_uint(&r, &u[1]) || rd_array(&r, &m->nitems))
		return -1;
	if (limit < INT32_MIN || limit > INT32_MAX || u[0] > UINT32_MAX || u[1] > UINT32_MAX)
		return -1;
	m->limit = (int32_t)limit;
	m->num_clients = (uint32_t)u[0];
	m->num_users = (uint32_t)u[1];
	/* Items are checked now so that msg_item_next() cannot fail later. */
	items = r.p;
	for (uint32_t i = 0; i < m->nitems; i++) {
		struct msg_str s;
		if (rd_str(&r, &s))
			return -1;
	}
	m->items_raw.p = (const char *)items;
	m->items_raw.len = (uint32_t)(r.p - items);
	return r.p == r.end ? 0 : -1;
}

int
msg_item_next(const struct msg *m, size_t *pos, struct msg_str *out)
{
	struct rd r = { (const unsigned char *)m->items_raw.p + *pos,
	    (const unsigned char *)m->items_raw.p + m->items_raw.len };

	if (r.p >= r.end)
		return 0;
	if (rd_str(&r, out))
		return -1;
	*pos = (size_t)(r.p - (const unsigned char *)m->items_raw.p);
	return 1;
}
