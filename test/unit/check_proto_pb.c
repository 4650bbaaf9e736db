/*
 * check_proto_pb.c - unit tests for the client protocol Protobuf codec
 * (src/proto_pb.c): decoding the commands centrifuge-js's protobuf build
 * sends (built here byte by byte or packed with the generated code),
 * framing, unknown fields and malformed input; encoding every reply and push
 * kind against exact bytes (protocol.md §8.2) and through the generated
 * unpack.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include <protobuf-c/protobuf-c.h>

#include "buf.h"
#include "client.pb-c.h"
#include "proto.h"
#include "proto_pb.h"

#define PB_T(name) Centrifugal__Centrifuge__Protocol__##name
#define PB_INIT(NAME) CENTRIFUGAL__CENTRIFUGE__PROTOCOL__##NAME##__INIT
#define PB_DESC(name) centrifugal__centrifuge__protocol__##name##__descriptor

/* ------------------------------------------------------------------ */
/* Helpers.                                                            */

static struct proto_reader rd;
static struct proto_cmd cmd;
static struct buf frame, msg, sub, out;

static void
setup(void)
{
	proto_reader_init(&rd);
	memset(&cmd, 0, sizeof(cmd));
	buf_init(&frame);
	buf_init(&msg);
	buf_init(&sub);
	buf_init(&out);
}

static void
teardown(void)
{
	proto_reader_free(&rd);
	buf_free(&frame);
	buf_free(&msg);
	buf_free(&sub);
	buf_free(&out);
}

#define S(lit) proto_span_str(lit)
#define SPAN_EQ(sp, s) ck_assert_msg(proto_span_eq((sp), (s)), \
	"span '%.*s' != '%s'", (int)(sp).len, (sp).p ? (sp).p : "", (s))
/* The span lies inside the current frame (no copy was made). */
#define SPAN_IN_FRAME(sp) ck_assert((sp).p >= rd.p && \
	(sp).p + (sp).len <= rd.p + rd.len)

/* Protobuf writer for hand-built messages. */
static void
w_varint(struct buf *b, uint64_t v)
{
	while (v >= 0x80) {
		buf_putc(b, (char)(v | 0x80));
		v >>= 7;
	}
	buf_putc(b, (char)v);
}

static void
w_tag(struct buf *b, uint32_t num, unsigned wire)
{
	w_varint(b, ((uint64_t)num << 3) | wire);
}

static void
w_uint(struct buf *b, uint32_t num, uint64_t v)
{
	w_tag(b, num, 0);
	w_varint(b, v);
}

static void
w_bytes(struct buf *b, uint32_t num, const void *p, size_t n)
{
	w_tag(b, num, 2);
	w_varint(b, n);
	buf_append(b, p, n);
}

static void
w_str(struct buf *b, uint32_t num, const char *s)
{
	w_bytes(b, num, s, strlen(s));
}

/* Appends varint(len(m)) m to b and empties m. */
static void
w_delim(struct buf *b, struct buf *m)
{
	w_varint(b, m->len);
	buf_append(b, m->data, m->len);
	buf_reset(m);
}

/* Packs a generated message delimited into b (like encodeDelimited). */
static void
pack_delim(struct buf *b, const ProtobufCMessage *m)
{
	size_t n = protobuf_c_message_get_packed_size(m);

	w_varint(b, n);
	buf_reserve(b, n);
	ck_assert_uint_eq(protobuf_c_message_pack(m, (uint8_t *)b->data + b->len),
	    n);
	b->len += n;
}

static void
reset_frame(const void *p, size_t n)
{
	proto_reader_reset(&rd, p, n);
}

/* Decodes the one-command frame in `frame`; expects success then end. */
static void
decode_one(void)
{
	reset_frame(frame.data, frame.len);
	ck_assert_msg(proto_pb_next(&rd, &cmd) == 1, "decode failed: %s at %zu",
	    rd.err ? rd.err : "?", rd.err_off);
	ck_assert_int_eq(proto_pb_next(&rd, &cmd), 0);
}

/* Decoding p[0..n) must fail at its first command, and stay failed. */
static void
decode_bad(const void *p, size_t n, const char *why)
{
	reset_frame(p, n);
	ck_assert_msg(proto_pb_next(&rd, &cmd) == -1, "should fail: %s", why);
	ck_assert_ptr_nonnull(rd.err);
	ck_assert_uint_le(rd.err_off, n);
	ck_assert_int_eq(proto_pb_next(&rd, &cmd), -1);
}

#define BAD(why, ...) do {                                                \
	static const unsigned char b_[] = { __VA_ARGS__ };                \
	decode_bad(b_, sizeof(b_), why);                                  \
} while (0)

/* out must hold exactly the bytes want[0..n); resets out. */
static void
expect_bytes(const unsigned char *want, size_t n)
{
	size_t i;

	if (out.len != n || memcmp(out.data, want, n) != 0) {
		fprintf(stderr, "got: ");
		for (i = 0; i < out.len; i++)
			fprintf(stderr, "%02x ", (unsigned char)out.data[i]);
		fprintf(stderr, "\n");
	}
	ck_assert_uint_eq(out.len, n);
	ck_assert(memcmp(out.data, want, n) == 0);
	buf_reset(&out);
}

#define EXPECT(...) do {                                                  \
	static const unsigned char e_[] = { __VA_ARGS__ };                \
	expect_bytes(e_, sizeof(e_));                                     \
} while (0)

/* Strips the length prefix of the single message in out (checked) and
 * unpacks it with the generated code; the caller frees. */
static ProtobufCMessage *
unpack_out(const ProtobufCMessageDescriptor *desc)
{
	size_t pos = 0, n = 0;
	unsigned shift = 0;
	unsigned char c;
	ProtobufCMessage *m;

	do {
		ck_assert_uint_lt(pos, out.len);
		c = (unsigned char)out.data[pos++];
		n |= (size_t)(c & 0x7f) << shift;
		shift += 7;
	} while (c & 0x80);
	ck_assert_uint_eq(pos + n, out.len);
	m = protobuf_c_message_unpack(desc, NULL, n,
	    (const uint8_t *)out.data + pos);
	ck_assert_ptr_nonnull(m);
	buf_reset(&out);
	return m;
}

static PB_T(Reply) *
unpack_reply(void)
{
	return (PB_T(Reply) *)unpack_out(&PB_DESC(reply));
}

static void
bin_eq(ProtobufCBinaryData b, const void *p, size_t n)
{
	ck_assert_uint_eq(b.len, n);
	ck_assert(n == 0 || memcmp(b.data, p, n) == 0);
}

/* ------------------------------------------------------------------ */
/* Decoding: what centrifuge-js sends.                                 */

START_TEST(test_decode_spec_connect)
{
	/* §8.2: Command {id:1, connect:{token:"abc"}} */
	static const char f[] = "\x09\x08\x01\x22\x05\x0a\x03" "abc";

	reset_frame(f, sizeof(f) - 1);
	ck_assert_int_eq(proto_pb_next(&rd, &cmd), 1);
	ck_assert_uint_eq(cmd.id, 1);
	ck_assert_int_eq(cmd.type, PROTO_CMD_CONNECT);
	ck_assert_uint_eq(cmd.present, 1u << PROTO_CMD_CONNECT);
	SPAN_EQ(cmd.connect.token, "abc");
	SPAN_IN_FRAME(cmd.connect.token);
	ck_assert_uint_eq(cmd.connect.nsubs, 0);
	ck_assert_ptr_null(cmd.connect.subs);
	ck_assert_int_eq(proto_pb_next(&rd, &cmd), 0);
	ck_assert_int_eq(proto_pb_next(&rd, &cmd), 0);
}
END_TEST

START_TEST(test_decode_pong)
{
	static const char f[] = { 0x00 };

	memset(&cmd, 0xff, sizeof(cmd));
	reset_frame(f, 1);
	ck_assert_int_eq(proto_pb_next(&rd, &cmd), 1);
	ck_assert_uint_eq(cmd.id, 0);
	ck_assert_uint_eq(cmd.present, 0);
	ck_assert_int_eq(cmd.type, PROTO_CMD_NONE);
	ck_assert_uint_eq(cmd.connect.token.len, 0);
	ck_assert_int_eq(proto_pb_next(&rd, &cmd), 0);

	/* Two pongs in one frame. */
	reset_frame("\0\0", 2);
	ck_assert_int_eq(proto_pb_next(&rd, &cmd), 1);
	ck_assert_int_eq(proto_pb_next(&rd, &cmd), 1);
	ck_assert_int_eq(proto_pb_next(&rd, &cmd), 0);
	ck_assert_uint_eq(rd.ncmds, 2);
}
END_TEST

START_TEST(test_decode_connect_full)
{
	PB_T(Command) c = PB_INIT(COMMAND);
	PB_T(ConnectRequest) cr = PB_INIT(CONNECT_REQUEST);
	PB_T(ConnectRequest__SubsEntry) e1 = PB_INIT(CONNECT_REQUEST__SUBS_ENTRY);
	PB_T(ConnectRequest__SubsEntry) e2 = PB_INIT(CONNECT_REQUEST__SUBS_ENTRY);
	PB_T(ConnectRequest__SubsEntry) *ents[2] = { &e1, &e2 };
	PB_T(ConnectRequest__HeadersEntry) h = PB_INIT(CONNECT_REQUEST__HEADERS_ENTRY);
	PB_T(ConnectRequest__HeadersEntry) *hs[1] = { &h };
	PB_T(SubscribeRequest) s1 = PB_INIT(SUBSCRIBE_REQUEST);
	PB_T(SubscribeRequest) s2 = PB_INIT(SUBSCRIBE_REQUEST);
	static const uint8_t data[] = { 0x00, 0xff, 0x0a, 0x7b };
	const struct proto_connect_sub *cs;

	s1.recover = 1;
	s1.offset = 43;
	s1.epoch = "QnEeWkrT";
	s1.delta = "fossil";
	e1.key = "news";
	e1.value = &s1;
	e2.key = "#42";
	e2.value = &s2;         /* empty value: written as 12 00 */
	h.key = "x-a";
	h.value = "b";
	cr.token = "eyJhbGciOiJIUzI1NiJ9.e30.sig";
	cr.data.data = (uint8_t *)data;
	cr.data.len = sizeof(data);
	cr.subs = ents;
	cr.n_subs = 2;
	cr.name = "js";
	cr.version = "1.0";
	cr.headers = hs;
	cr.n_headers = 1;
	cr.flag = 1;
	cr.profile = "web";
	c.id = 7;
	c.connect = &cr;
	pack_delim(&frame, &c.base);
	decode_one();

	ck_assert_uint_eq(cmd.id, 7);
	ck_assert_int_eq(cmd.type, PROTO_CMD_CONNECT);
	SPAN_EQ(cmd.connect.token, "eyJhbGciOiJIUzI1NiJ9.e30.sig");
	ck_assert_uint_eq(cmd.connect.data.len, sizeof(data));
	ck_assert(memcmp(cmd.connect.data.p, data, sizeof(data)) == 0);
	SPAN_IN_FRAME(cmd.connect.data);
	SPAN_EQ(cmd.connect.name, "js");
	SPAN_EQ(cmd.connect.version, "1.0");
	ck_assert_uint_eq(cmd.connect.nsubs, 2);
	cs = proto_connect_sub_find(&cmd.connect, S("news"));
	ck_assert_ptr_nonnull(cs);
	ck_assert(cs->req.recover);
	ck_assert_uint_eq(cs->req.offset, 43);
	SPAN_EQ(cs->req.epoch, "QnEeWkrT");
	SPAN_EQ(cs->req.delta, "fossil");
	SPAN_IN_FRAME(cs->req.epoch);
	cs = proto_connect_sub_find(&cmd.connect, S("#42"));
	ck_assert_ptr_nonnull(cs);
	ck_assert(!cs->req.recover);
	ck_assert_uint_eq(cs->req.offset, 0);
	ck_assert_ptr_null(proto_connect_sub_find(&cmd.connect, S("nope")));
}
END_TEST

START_TEST(test_decode_connect_subs_many)
{
	char key[16];
	int i;

	/* 20 entries: rd->subs grows; some without a value, one without key. */
	for (i = 0; i < 20; i++) {
		snprintf(key, sizeof(key), "ch%d", i);
		w_str(&sub, 1, key);
		if (i % 2 == 0) {
			w_uint(&msg, 7, (uint64_t)i);   /* SubscribeRequest.offset */
			w_bytes(&sub, 2, msg.data, msg.len);
			buf_reset(&msg);
		}
		w_bytes(&out, 3, sub.data, sub.len);    /* ConnectRequest.subs */
		buf_reset(&sub);
	}
	w_bytes(&out, 3, "", 0);                        /* entry with nothing */
	w_uint(&msg, 1, 5);
	w_bytes(&msg, 4, out.data, out.len);
	buf_reset(&out);
	w_delim(&frame, &msg);
	decode_one();
	ck_assert_uint_eq(cmd.connect.nsubs, 21);
	for (i = 0; i < 20; i++) {
		snprintf(key, sizeof(key), "ch%d", i);
		SPAN_EQ(cmd.connect.subs[i].req.channel, key);
		ck_assert_uint_eq(cmd.connect.subs[i].req.offset,
		    i % 2 == 0 ? (uint64_t)i : 0);
	}
	ck_assert_uint_eq(cmd.connect.subs[20].req.channel.len, 0);
	/* The map key is the channel, whatever the value's own channel says. */
	ck_assert_ptr_nonnull(proto_connect_sub_find(&cmd.connect, S("ch19")));
}
END_TEST

START_TEST(test_decode_subscribe)
{
	/* centrifuge-js: {subscribe:{channel, recover, epoch, offset,
	 * recoverable, positioned, flag:1}, id:8}; protobufjs writes fields in
	 * number order, id first. */
	w_str(&sub, 1, "chat:1");
	w_str(&sub, 2, "tok");
	w_uint(&sub, 3, 1);
	w_str(&sub, 6, "QnEeWkrT");
	w_uint(&sub, 7, 43);
	w_bytes(&sub, 8, "\x01\x02", 2);
	w_uint(&sub, 9, 1);
	w_uint(&sub, 10, 1);
	w_uint(&sub, 11, 1);
	w_str(&sub, 12, "fossil");
	w_str(&out, 1, "eq");                       /* FilterNode{op:"eq"} */
	w_bytes(&sub, 13, out.data, out.len);
	buf_reset(&out);
	w_uint(&sub, 14, 1);
	w_uint(&sub, 15, 2);
	w_uint(&msg, 1, 8);
	w_bytes(&msg, 5, sub.data, sub.len);
	w_delim(&frame, &msg);
	decode_one();

	ck_assert_uint_eq(cmd.id, 8);
	ck_assert_int_eq(cmd.type, PROTO_CMD_SUBSCRIBE);
	SPAN_EQ(cmd.subscribe.channel, "chat:1");
	SPAN_EQ(cmd.subscribe.token, "tok");
	ck_assert(cmd.subscribe.recover);
	SPAN_EQ(cmd.subscribe.epoch, "QnEeWkrT");
	ck_assert_uint_eq(cmd.subscribe.offset, 43);
	ck_assert_uint_eq(cmd.subscribe.data.len, 2);
	ck_assert(cmd.subscribe.positioned);
	ck_assert(cmd.subscribe.recoverable);
	ck_assert(cmd.subscribe.join_leave);
	SPAN_EQ(cmd.subscribe.delta, "fossil");
	ck_assert(cmd.subscribe.has_tf);
	ck_assert_uint_eq(cmd.subscribe.tf.len, 4);
	ck_assert_int_eq(cmd.subscribe.flag, 1);
	ck_assert_int_eq(cmd.subscribe.type, 2);
	SPAN_IN_FRAME(cmd.subscribe.channel);

	/* Minimal: only the channel; flag 1 as js always sends. */
	buf_reset(&frame);
	buf_reset(&sub);
	w_str(&sub, 1, "news");
	w_uint(&sub, 14, 1);
	w_uint(&msg, 1, 2);
	w_bytes(&msg, 5, sub.data, sub.len);
	w_delim(&frame, &msg);
	decode_one();
	SPAN_EQ(cmd.subscribe.channel, "news");
	ck_assert(!cmd.subscribe.recover);
	ck_assert(!cmd.subscribe.has_tf);
	ck_assert_uint_eq(cmd.subscribe.offset, 0);
	ck_assert_uint_eq(cmd.subscribe.epoch.len, 0);
}
END_TEST

START_TEST(test_decode_publish_binary)
{
	PB_T(Command) c = PB_INIT(COMMAND);
	PB_T(PublishRequest) p = PB_INIT(PUBLISH_REQUEST);
	uint8_t data[300];
	size_t i;

	for (i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7);
	p.channel = "chat:1";
	p.data.data = data;
	p.data.len = sizeof(data);
	c.id = 3;
	c.publish = &p;
	pack_delim(&frame, &c.base);
	decode_one();
	ck_assert_int_eq(cmd.type, PROTO_CMD_PUBLISH);
	ck_assert_uint_eq(cmd.id, 3);
	SPAN_EQ(cmd.publish.channel, "chat:1");
	ck_assert_uint_eq(cmd.publish.data.len, sizeof(data));
	ck_assert(memcmp(cmd.publish.data.p, data, sizeof(data)) == 0);
	SPAN_IN_FRAME(cmd.publish.data);
	ck_assert_int_eq(cmd.publish.type, 0);
}
END_TEST

START_TEST(test_decode_history)
{
	PB_T(Command) c = PB_INIT(COMMAND);
	PB_T(HistoryRequest) h = PB_INIT(HISTORY_REQUEST);
	PB_T(StreamPosition) sp = PB_INIT(STREAM_POSITION);

	sp.offset = 41;
	sp.epoch = "ep";
	h.channel = "chat:1";
	h.limit = 2;
	h.since = &sp;
	h.reverse = 1;
	c.id = 4;
	c.history = &h;
	pack_delim(&frame, &c.base);
	decode_one();
	ck_assert_int_eq(cmd.type, PROTO_CMD_HISTORY);
	SPAN_EQ(cmd.history.channel, "chat:1");
	ck_assert_int_eq(cmd.history.limit, 2);
	ck_assert(cmd.history.has_since);
	ck_assert_uint_eq(cmd.history.since_offset, 41);
	SPAN_EQ(cmd.history.since_epoch, "ep");
	ck_assert(cmd.history.reverse);

	/* since present but empty: `42 00` keeps has_since. */
	buf_reset(&frame);
	sp.offset = 0;
	sp.epoch = (char *)protobuf_c_empty_string;
	h.limit = -1;
	pack_delim(&frame, &c.base);
	ck_assert(memmem(frame.data, frame.len, "\x42\x00", 2) != NULL);
	decode_one();
	ck_assert(cmd.history.has_since);
	ck_assert_uint_eq(cmd.history.since_offset, 0);
	ck_assert_int_eq(cmd.history.limit, -1);

	buf_reset(&frame);
	h.since = NULL;
	pack_delim(&frame, &c.base);
	decode_one();
	ck_assert(!cmd.history.has_since);
}
END_TEST

START_TEST(test_decode_other_commands)
{
	/* rpc: method + data */
	w_bytes(&sub, 1, "{\"a\":1}", 7);
	w_str(&sub, 2, "getUser");
	w_uint(&msg, 1, 9);
	w_bytes(&msg, 13, sub.data, sub.len);
	buf_reset(&sub);
	w_delim(&frame, &msg);
	/* send: no id */
	w_bytes(&sub, 1, "hi", 2);
	w_bytes(&msg, 12, sub.data, sub.len);
	buf_reset(&sub);
	w_delim(&frame, &msg);
	/* refresh */
	w_str(&sub, 1, "newtoken");
	w_uint(&msg, 1, 10);
	w_bytes(&msg, 14, sub.data, sub.len);
	buf_reset(&sub);
	w_delim(&frame, &msg);
	/* sub_refresh */
	w_str(&sub, 1, "chat:1");
	w_str(&sub, 2, "subtok");
	w_uint(&msg, 1, 11);
	w_bytes(&msg, 15, sub.data, sub.len);
	buf_reset(&sub);
	w_delim(&frame, &msg);
	/* unsubscribe, presence, presence_stats */
	w_str(&sub, 1, "c6");
	w_uint(&msg, 1, 12);
	w_bytes(&msg, 6, sub.data, sub.len);
	w_delim(&frame, &msg);
	w_uint(&msg, 1, 13);
	w_bytes(&msg, 8, sub.data, sub.len);
	w_delim(&frame, &msg);
	w_uint(&msg, 1, 14);
	w_bytes(&msg, 9, sub.data, sub.len);
	w_delim(&frame, &msg);
	buf_reset(&sub);
	/* ping request (empty) */
	w_uint(&msg, 1, 15);
	w_bytes(&msg, 11, "", 0);
	w_delim(&frame, &msg);
	/* pong */
	w_delim(&frame, &msg);

	reset_frame(frame.data, frame.len);
	ck_assert_int_eq(proto_pb_next(&rd, &cmd), 1);
	ck_assert_int_eq(cmd.type, PROTO_CMD_RPC);
	ck_assert_uint_eq(cmd.id, 9);
	SPAN_EQ(cmd.rpc.method, "getUser");
	SPAN_EQ(cmd.rpc.data, "{\"a\":1}");
	ck_assert_int_eq(proto_pb_next(&rd, &cmd), 1);
	ck_assert_int_eq(cmd.type, PROTO_CMD_SEND);
	ck_assert_uint_eq(cmd.id, 0);
	SPAN_EQ(cmd.send.data, "hi");
	ck_assert_int_eq(proto_pb_next(&rd, &cmd), 1);
	ck_assert_int_eq(cmd.type, PROTO_CMD_REFRESH);
	SPAN_EQ(cmd.refresh.token, "newtoken");
	ck_assert_int_eq(proto_pb_next(&rd, &cmd), 1);
	ck_assert_int_eq(cmd.type, PROTO_CMD_SUB_REFRESH);
	SPAN_EQ(cmd.sub_refresh.channel, "chat:1");
	SPAN_EQ(cmd.sub_refresh.token, "subtok");
	ck_assert_int_eq(cmd.sub_refresh.type, 0);
	ck_assert_int_eq(proto_pb_next(&rd, &cmd), 1);
	ck_assert_int_eq(cmd.type, PROTO_CMD_UNSUBSCRIBE);
	SPAN_EQ(cmd.unsubscribe.channel, "c6");
	ck_assert_int_eq(proto_pb_next(&rd, &cmd), 1);
	ck_assert_int_eq(cmd.type, PROTO_CMD_PRESENCE);
	SPAN_EQ(cmd.presence.channel, "c6");
	ck_assert_int_eq(proto_pb_next(&rd, &cmd), 1);
	ck_assert_int_eq(cmd.type, PROTO_CMD_PRESENCE_STATS);
	SPAN_EQ(cmd.presence_stats.channel, "c6");
	ck_assert_int_eq(proto_pb_next(&rd, &cmd), 1);
	ck_assert_int_eq(cmd.type, PROTO_CMD_PING);
	ck_assert_uint_eq(cmd.id, 15);
	ck_assert_int_eq(proto_pb_next(&rd, &cmd), 1);
	ck_assert_int_eq(cmd.type, PROTO_CMD_NONE);
	ck_assert_uint_eq(cmd.id, 0);
	ck_assert_int_eq(proto_pb_next(&rd, &cmd), 0);
	ck_assert_uint_eq(rd.ncmds, 9);
}
END_TEST

START_TEST(test_decode_empty_requests_present)
{
	static const unsigned char nums[] = { 4, 5, 6, 7, 8, 9, 10, 11, 12, 13,
	    14, 15 };
	static const enum proto_cmd_type kinds[] = { PROTO_CMD_CONNECT,
	    PROTO_CMD_SUBSCRIBE, PROTO_CMD_UNSUBSCRIBE, PROTO_CMD_PUBLISH,
	    PROTO_CMD_PRESENCE, PROTO_CMD_PRESENCE_STATS, PROTO_CMD_HISTORY,
	    PROTO_CMD_PING, PROTO_CMD_SEND, PROTO_CMD_RPC, PROTO_CMD_REFRESH,
	    PROTO_CMD_SUB_REFRESH };
	size_t i;

	for (i = 0; i < sizeof(nums); i++) {
		buf_reset(&frame);
		w_uint(&msg, 1, 3);
		w_bytes(&msg, nums[i], "", 0);
		w_delim(&frame, &msg);
		decode_one();
		ck_assert_int_eq(cmd.type, kinds[i]);
		ck_assert_uint_eq(cmd.present, 1u << kinds[i]);
	}
	/* `{id:3, publish:{}}` literally. */
	reset_frame("\x04\x08\x03\x3a\x00", 5);
	ck_assert_int_eq(proto_pb_next(&rd, &cmd), 1);
	ck_assert_int_eq(cmd.type, PROTO_CMD_PUBLISH);

	/* Several requests: type is the first in dispatch order (connect,
	 * ping, subscribe, ...), present has them all. */
	buf_reset(&frame);
	w_bytes(&msg, 15, "", 0);
	w_bytes(&msg, 5, "", 0);
	w_bytes(&msg, 11, "", 0);
	w_delim(&frame, &msg);
	decode_one();
	ck_assert_int_eq(cmd.type, PROTO_CMD_PING);
	ck_assert_uint_eq(cmd.present, (1u << PROTO_CMD_PING) |
	    (1u << PROTO_CMD_SUBSCRIBE) | (1u << PROTO_CMD_SUB_REFRESH));
}
END_TEST

START_TEST(test_decode_merge_and_last_wins)
{
	/* Two subscribe fields merge (proto3); a repeated scalar: last wins. */
	w_str(&sub, 1, "a");
	w_uint(&sub, 7, 5);
	w_bytes(&msg, 5, sub.data, sub.len);
	buf_reset(&sub);
	w_str(&sub, 6, "ep");
	w_uint(&sub, 7, 6);
	w_bytes(&msg, 5, sub.data, sub.len);
	buf_reset(&sub);
	w_uint(&msg, 1, 1);
	w_uint(&msg, 1, 2);
	w_delim(&frame, &msg);
	decode_one();
	ck_assert_uint_eq(cmd.id, 2);
	SPAN_EQ(cmd.subscribe.channel, "a");
	SPAN_EQ(cmd.subscribe.epoch, "ep");
	ck_assert_uint_eq(cmd.subscribe.offset, 6);

	/* Two connect fields: subs entries of both are kept. */
	buf_reset(&frame);
	w_str(&sub, 1, "x");
	w_bytes(&out, 3, sub.data, sub.len);
	buf_reset(&sub);
	w_bytes(&msg, 4, out.data, out.len);
	buf_reset(&out);
	w_str(&sub, 1, "y");
	w_bytes(&out, 3, sub.data, sub.len);
	w_str(&out, 1, "tok");
	buf_reset(&sub);
	w_bytes(&msg, 4, out.data, out.len);
	buf_reset(&out);
	w_delim(&frame, &msg);
	decode_one();
	ck_assert_uint_eq(cmd.connect.nsubs, 2);
	SPAN_EQ(cmd.connect.subs[0].req.channel, "x");
	SPAN_EQ(cmd.connect.subs[1].req.channel, "y");
	SPAN_EQ(cmd.connect.token, "tok");
}
END_TEST

START_TEST(test_decode_unknown_fields)
{
	/* Command: unknown and reserved fields of every wire type, a group. */
	w_uint(&msg, 1, 4);
	w_uint(&msg, 2, 99);                        /* reserved */
	w_str(&msg, 3, "x");                        /* reserved */
	w_tag(&msg, 100, 1);
	buf_append(&msg, "12345678", 8);
	w_tag(&msg, 101, 5);
	buf_append(&msg, "1234", 4);
	w_tag(&msg, 102, 3);                        /* group 102 { 1: 5, 2: {} } */
	w_uint(&msg, 1, 5);
	w_bytes(&msg, 2, "\xff\xff", 2);            /* not looked into */
	w_tag(&msg, 103, 3);                        /* nested group */
	w_tag(&msg, 103, 4);
	w_tag(&msg, 102, 4);
	w_uint(&msg, 536870911, 1);                 /* max field number */
	/* subscribe with unknown fields inside, and in a subscribe.tf */
	w_str(&sub, 1, "news");
	w_uint(&sub, 50, 1);
	w_bytes(&sub, 51, "\x80\x80", 2);
	w_uint(&out, 77, 1);
	w_bytes(&sub, 13, out.data, out.len);
	buf_reset(&out);
	w_bytes(&msg, 5, sub.data, sub.len);
	w_bytes(&msg, 16, "\x00\x01", 2);            /* future request kind */
	w_delim(&frame, &msg);
	decode_one();
	ck_assert_uint_eq(cmd.id, 4);
	ck_assert_int_eq(cmd.type, PROTO_CMD_SUBSCRIBE);
	ck_assert_uint_eq(cmd.present, 1u << PROTO_CMD_SUBSCRIBE);
	SPAN_EQ(cmd.subscribe.channel, "news");
	ck_assert(cmd.subscribe.has_tf);
}
END_TEST

START_TEST(test_decode_bad_framing)
{
	decode_bad("", 0, "empty frame");
	BAD("truncated message", 0x05, 0x08, 0x01);
	BAD("broken length varint", 0x80);
	BAD("11-byte varint", 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	    0xff, 0xff, 0x01);
	BAD("10th varint byte > 1", 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	    0xff, 0xff, 0x02);
	BAD("huge length", 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	    0x01, 0x00);
	BAD("length 2^32", 0x80, 0x80, 0x80, 0x80, 0x10, 0x00);

	/* A good command followed by garbage: 1, then -1. */
	reset_frame("\x02\x08\x01\x07\x08", 5);
	ck_assert_int_eq(proto_pb_next(&rd, &cmd), 1);
	ck_assert_int_eq(proto_pb_next(&rd, &cmd), -1);
	ck_assert_uint_eq(rd.err_off, 3);
	ck_assert_int_eq(proto_pb_next(&rd, &cmd), -1);

	/* reset clears the failure */
	reset_frame("\x00", 1);
	ck_assert_int_eq(proto_pb_next(&rd, &cmd), 1);
}
END_TEST

START_TEST(test_decode_bad_fields)
{
	BAD("field number 0", 0x02, 0x00, 0x01);
	BAD("wire type 6", 0x01, 0x0e);
	BAD("wire type 7", 0x01, 0x0f);
	BAD("unexpected end group", 0x01, 0x0c);
	BAD("unterminated group", 0x02, 0x0b, 0x08);
	BAD("mismatched end group", 0x02, 0x0b, 0x14);
	BAD("truncated tag", 0x01, 0x80);
	BAD("truncated varint value", 0x02, 0x08, 0x80);
	BAD("truncated fixed64", 0x05, 0x09, 1, 2, 3, 4);
	BAD("truncated fixed32", 0x03, 0x0d, 1, 2);
	BAD("field length beyond message", 0x03, 0x22, 0x05, 0x00);
	BAD("field length beyond message, frame has more", 0x03, 0x22, 0x02,
	    0x0a, 0x00, 0x00);
	BAD("id as bytes", 0x03, 0x0a, 0x01, 0x00);
	BAD("id as fixed32", 0x05, 0x0d, 0, 0, 0, 0);
	BAD("connect as varint", 0x02, 0x20, 0x01);
	BAD("ping as fixed64", 0x09, 0x59, 0, 0, 0, 0, 0, 0, 0, 0);
	BAD("subscribe.channel as varint", 0x04, 0x2a, 0x02, 0x08, 0x01);
	BAD("subscribe.offset as bytes", 0x05, 0x2a, 0x03, 0x3a, 0x01, 0x00);
	BAD("history.since as varint", 0x04, 0x52, 0x02, 0x40, 0x01);
	BAD("since.epoch as varint", 0x06, 0x52, 0x04, 0x42, 0x02, 0x10,
	    0x01);
	BAD("invalid UTF-8 in channel", 0x05, 0x2a, 0x03, 0x0a, 0x01, 0xff);
	BAD("overlong UTF-8 in token", 0x06, 0x22, 0x04, 0x0a, 0x02, 0xc0,
	    0xaf);
	BAD("surrogate in rpc.method", 0x07, 0x6a, 0x05, 0x12, 0x03, 0xed,
	    0xa0, 0x80);
	BAD("invalid UTF-8 in a subs key", 0x07, 0x22, 0x05, 0x1a, 0x03, 0x0a,
	    0x01, 0xfe);
	BAD("invalid UTF-8 in connect.headers (unused field)", 0x09, 0x22,
	    0x07, 0x32, 0x05, 0x0a, 0x01, 0x61, 0x12, 0x80);
	BAD("wrong wire type inside tf", 0x06, 0x2a, 0x04, 0x6a, 0x02, 0x08,
	    0x01);
	BAD("subs entry value as varint", 0x06, 0x22, 0x04, 0x1a, 0x02, 0x10,
	    0x01);
	BAD("broken varint inside since", 0x05, 0x52, 0x03, 0x42, 0x01, 0x88);

	/* bytes fields are not UTF-8 checked; unknown fields not parsed. */
	reset_frame("\x07\x3a\x05\x12\x03\xff\xfe\x00", 8);
	ck_assert_int_eq(proto_pb_next(&rd, &cmd), 1);
	ck_assert_uint_eq(cmd.publish.data.len, 3);
}
END_TEST

START_TEST(test_decode_deep_nesting)
{
	int i;

	/* subscribe.tf with FilterNode.nodes nested 200 deep: -1, no crash. */
	buf_reset(&sub);
	for (i = 0; i < 200; i++) {
		buf_reset(&out);
		w_bytes(&out, 6, sub.data, sub.len);
		buf_reset(&sub);
		buf_append(&sub, out.data, out.len);
	}
	buf_reset(&out);
	w_bytes(&out, 13, sub.data, sub.len);
	w_bytes(&msg, 5, out.data, out.len);
	buf_reset(&out);
	w_delim(&frame, &msg);
	decode_bad(frame.data, frame.len, "deep nesting");

	/* 10 deep is fine. */
	buf_reset(&frame);
	buf_reset(&sub);
	for (i = 0; i < 10; i++) {
		buf_reset(&out);
		w_bytes(&out, 6, sub.data, sub.len);
		buf_reset(&sub);
		buf_append(&sub, out.data, out.len);
	}
	buf_reset(&out);
	w_bytes(&out, 13, sub.data, sub.len);
	w_bytes(&msg, 5, out.data, out.len);
	buf_reset(&out);
	w_delim(&frame, &msg);
	decode_one();
	ck_assert(cmd.subscribe.has_tf);

	/* Unknown groups nested 1000 deep. */
	buf_reset(&frame);
	for (i = 0; i < 1000; i++)
		w_tag(&msg, 20, 3);
	for (i = 0; i < 1000; i++)
		w_tag(&msg, 20, 4);
	w_delim(&frame, &msg);
	decode_bad(frame.data, frame.len, "deep groups");
}
END_TEST

/* Every prefix of a valid multi-command frame decodes without crashing;
 * prefixes that cut a message fail. */
START_TEST(test_decode_truncations)
{
	PB_T(Command) c = PB_INIT(COMMAND);
	PB_T(SubscribeRequest) s = PB_INIT(SUBSCRIBE_REQUEST);
	size_t ends[3], n, i;
	int rc, k;
	char *copy;

	s.channel = "chat:1";
	s.recover = 1;
	s.epoch = "abc";
	s.offset = 300;
	c.id = 2;
	c.subscribe = &s;
	buf_putc(&frame, 0);
	ends[0] = frame.len;
	pack_delim(&frame, &c.base);
	ends[1] = frame.len;
	pack_delim(&frame, &c.base);
	ends[2] = frame.len;
	for (n = 0; n <= frame.len; n++) {
		/* Exact-size heap copy so ASan sees any over-read. */
		copy = malloc(n ? n : 1);
		memcpy(copy, frame.data, n);
		reset_frame(copy, n);
		k = 0;
		while ((rc = proto_pb_next(&rd, &cmd)) == 1)
			k++;
		if (n == ends[0] || n == ends[1] || n == ends[2]) {
			ck_assert_int_eq(rc, 0);
			for (i = 0; i < 3; i++)
				if (n == ends[i])
					ck_assert_int_eq(k, (int)i + 1);
		} else {
			ck_assert_int_eq(rc, -1);
		}
		free(copy);
	}
}
END_TEST

START_TEST(test_decode_garbage)
{
	unsigned char b[64];
	unsigned seed = 12345;
	int iter, rc, guard;
	size_t i, n;
	char *copy;

	for (iter = 0; iter < 20000; iter++) {
		n = (size_t)(iter % 64);
		for (i = 0; i < n; i++) {
			seed = seed * 1103515245u + 12345u;
			b[i] = (unsigned char)(seed >> 16);
		}
		/* Bias toward plausible starts: a small length prefix. */
		if (n > 0 && (iter & 1))
			b[0] = (unsigned char)(n - 1);
		copy = malloc(n ? n : 1);
		memcpy(copy, b, n);
		reset_frame(copy, n);
		guard = 0;
		while ((rc = proto_pb_next(&rd, &cmd)) == 1)
			ck_assert_int_lt(++guard, 100);
		ck_assert(rc == 0 || rc == -1);
		free(copy);
	}
}
END_TEST

/* ------------------------------------------------------------------ */
/* Encoding.                                                           */

START_TEST(test_encode_spec_examples)
{
	struct proto_connect_result cr = { 0 };
	struct proto_publication pub = { 0 };
	struct proto_push push = { 0 };

	/* §8.2, one by one. */
	cr.client = S("c");
	cr.version = S("1");
	cr.ping = 25;
	cr.pong = true;
	proto_pb_connect_result(&out, 1, &cr);
	EXPECT(0x0e, 0x08, 0x01, 0x2a, 0x0a, 0x0a, 0x01, 0x63, 0x12, 0x01, 0x31,
	    0x38, 0x19, 0x40, 0x01);

	proto_pb_empty_result(&out, 2, PROTO_CMD_PUBLISH);
	EXPECT(0x04, 0x08, 0x02, 0x42, 0x00);

	proto_pb_error(&out, 3, 103, "permission denied", false);
	EXPECT(0x19, 0x08, 0x03, 0x12, 0x15, 0x08, 0x67, 0x12, 0x11, 0x70, 0x65,
	    0x72, 0x6d, 0x69, 0x73, 0x73, 0x69, 0x6f, 0x6e, 0x20, 0x64, 0x65,
	    0x6e, 0x69, 0x65, 0x64);
	proto_pb_error_code(&out, 3, PROTO_ERR_PERMISSION_DENIED);
	EXPECT(0x19, 0x08, 0x03, 0x12, 0x15, 0x08, 0x67, 0x12, 0x11, 0x70, 0x65,
	    0x72, 0x6d, 0x69, 0x73, 0x73, 0x69, 0x6f, 0x6e, 0x20, 0x64, 0x65,
	    0x6e, 0x69, 0x65, 0x64);

	pub.data = S("{}");
	pub.offset = 3;
	proto_pb_push_pub(&out, S("ch"), &pub);
	EXPECT(0x0e, 0x22, 0x0c, 0x12, 0x02, 0x63, 0x68, 0x22, 0x06, 0x22, 0x02,
	    0x7b, 0x7d, 0x30, 0x03);
	push.type = PROTO_PUSH_PUB;
	push.channel = S("ch");
	push.pub = &pub;
	proto_pb_push(&out, &push);
	EXPECT(0x0e, 0x22, 0x0c, 0x12, 0x02, 0x63, 0x68, 0x22, 0x06, 0x22, 0x02,
	    0x7b, 0x7d, 0x30, 0x03);

	proto_pb_ping(&out);
	EXPECT(0x00);

	memset(&push, 0, sizeof(push));
	push.type = PROTO_PUSH_DISCONNECT;
	push.code = 3001;
	push.reason = S("shutdown");
	proto_pb_push(&out, &push);
	EXPECT(0x11, 0x22, 0x0f, 0x5a, 0x0d, 0x08, 0xb9, 0x17, 0x12, 0x08, 0x73,
	    0x68, 0x75, 0x74, 0x64, 0x6f, 0x77, 0x6e);

	/* Several messages append to one frame: ping + publish reply. */
	proto_pb_ping(&out);
	proto_pb_empty_result(&out, 2, PROTO_CMD_PUBLISH);
	EXPECT(0x00, 0x04, 0x08, 0x02, 0x42, 0x00);
}
END_TEST

START_TEST(test_encode_errors)
{
	proto_pb_error_code(&out, 5, PROTO_ERR_INTERNAL);   /* temporary */
	EXPECT(0x1f, 0x08, 0x05, 0x12, 0x1b, 0x08, 0x64, 0x12, 0x15,
	    'i', 'n', 't', 'e', 'r', 'n', 'a', 'l', ' ', 's', 'e', 'r', 'v',
	    'e', 'r', ' ', 'e', 'r', 'r', 'o', 'r', 0x18, 0x01);
	proto_pb_error(&out, 0, 4000, NULL, false);
	EXPECT(0x05, 0x12, 0x03, 0x08, 0xa0, 0x1f);
	proto_pb_error(&out, 1, 0, "", false);          /* empty error: 12 00 */
	EXPECT(0x04, 0x08, 0x01, 0x12, 0x00);
}
END_TEST

START_TEST(test_encode_empty_results)
{
	static const struct { enum proto_cmd_type t; unsigned char tag; } r[] = {
		{ PROTO_CMD_CONNECT, 0x2a }, { PROTO_CMD_SUBSCRIBE, 0x32 },
		{ PROTO_CMD_UNSUBSCRIBE, 0x3a }, { PROTO_CMD_PUBLISH, 0x42 },
		{ PROTO_CMD_PRESENCE, 0x4a }, { PROTO_CMD_PRESENCE_STATS, 0x52 },
		{ PROTO_CMD_HISTORY, 0x5a }, { PROTO_CMD_PING, 0x62 },
		{ PROTO_CMD_RPC, 0x6a }, { PROTO_CMD_REFRESH, 0x72 },
		{ PROTO_CMD_SUB_REFRESH, 0x7a },
	};
	PB_T(Reply) *rep;
	size_t i;

	for (i = 0; i < sizeof(r) / sizeof(r[0]); i++) {
		unsigned char want[] = { 0x04, 0x08, 0x09, r[i].tag, 0x00 };

		proto_pb_empty_result(&out, 9, r[i].t);
		expect_bytes(want, sizeof(want));
	}
	proto_pb_empty_result(&out, 9, PROTO_CMD_SEND);     /* no result field */
	EXPECT(0x02, 0x08, 0x09);

	/* protobuf-c keeps an empty sub-message: non-NULL after unpack. */
	proto_pb_empty_result(&out, 2, PROTO_CMD_PUBLISH);
	rep = unpack_reply();
	ck_assert_uint_eq(rep->id, 2);
	ck_assert_ptr_nonnull(rep->publish);
	ck_assert_ptr_null(rep->error);
	ck_assert_ptr_null(rep->push);
	protobuf_c_message_free_unpacked(&rep->base, NULL);
}
END_TEST

START_TEST(test_encode_connect_result_subs)
{
	struct proto_connect_result cr = { 0 };
	struct proto_sub_entry subs[2];
	struct proto_publication pub = { 0 };
	PB_T(Reply) *rep;
	PB_T(ConnectResult) *c;

	memset(subs, 0, sizeof(subs));
	subs[0].channel = S("#42");                     /* empty result */
	subs[1].channel = S("news");
	subs[1].result.recoverable = true;
	subs[1].result.epoch = S("ep");
	subs[1].result.offset = 9;
	subs[1].result.positioned = true;
	subs[1].result.publications = &pub;
	subs[1].result.npublications = 1;
	pub.data = S("{\"x\":1}");
	pub.offset = 9;
	cr.client = S("0c6f9a8e-2b7d-4c1e-9f3a-5d4e6b7a8c9d");
	cr.version = S("6.1.0 OSS");
	cr.expires = true;
	cr.ttl = 3600;
	cr.data = S("\x01\x02");
	cr.subs = subs;
	cr.nsubs = 2;
	cr.ping = 25;
	cr.pong = true;
	cr.session = S("S1");
	cr.node = S("N1");
	cr.time = 1700000000000LL;
	proto_pb_connect_result(&out, 1, &cr);
	rep = unpack_reply();
	c = rep->connect;
	ck_assert_ptr_nonnull(c);
	ck_assert_str_eq(c->client, "0c6f9a8e-2b7d-4c1e-9f3a-5d4e6b7a8c9d");
	ck_assert_str_eq(c->version, "6.1.0 OSS");
	ck_assert(c->expires);
	ck_assert_uint_eq(c->ttl, 3600);
	bin_eq(c->data, "\x01\x02", 2);
	ck_assert_uint_eq(c->n_subs, 2);
	ck_assert_str_eq(c->subs[0]->key, "#42");
	ck_assert_ptr_nonnull(c->subs[0]->value);       /* `12 00` kept */
	ck_assert_str_eq(c->subs[1]->key, "news");
	ck_assert(c->subs[1]->value->recoverable);
	ck_assert_str_eq(c->subs[1]->value->epoch, "ep");
	ck_assert_uint_eq(c->subs[1]->value->offset, 9);
	ck_assert_uint_eq(c->subs[1]->value->n_publications, 1);
	bin_eq(c->subs[1]->value->publications[0]->data, "{\"x\":1}", 7);
	ck_assert_uint_eq(c->ping, 25);
	ck_assert(c->pong);
	ck_assert_str_eq(c->session, "S1");
	ck_assert_str_eq(c->node, "N1");
	ck_assert_int_eq(c->time, 1700000000000LL);
	protobuf_c_message_free_unpacked(&rep->base, NULL);

	/* Empty connect result: 2a 00 */
	memset(&cr, 0, sizeof(cr));
	proto_pb_connect_result(&out, 1, &cr);
	EXPECT(0x04, 0x08, 0x01, 0x2a, 0x00);
}
END_TEST

START_TEST(test_encode_subscribe_result)
{
	struct proto_subscribe_result r = { 0 };
	struct proto_publication pubs[2];
	struct proto_tag tags[2] = { { S("k1"), S("v1") }, { S("k2"), S("") } };
	PB_T(Reply) *rep;
	PB_T(SubscribeResult) *s;

	memset(pubs, 0, sizeof(pubs));
	pubs[0].data = S("{\"n\":1}");
	pubs[0].offset = 44;
	pubs[0].has_info = true;
	pubs[0].info.user = S("42");
	pubs[0].info.client = S("c1");
	pubs[0].info.conn_info = S("{\"a\":1}");
	pubs[0].tags = tags;
	pubs[0].ntags = 2;
	pubs[1].data = S("\x00\x01");
	pubs[1].data.len = 2;
	pubs[1].offset = 45;
	pubs[1].delta = true;
	pubs[1].epoch = S("QnEeWkrT");
	r.expires = true;
	r.ttl = 60;
	r.recoverable = true;
	r.epoch = S("QnEeWkrT");
	r.publications = pubs;
	r.npublications = 2;
	r.recovered = true;
	r.offset = 43;
	r.positioned = true;
	r.data = S("{}");
	r.was_recovering = true;
	r.delta = true;
	proto_pb_subscribe_result(&out, 8, &r);
	rep = unpack_reply();
	ck_assert_uint_eq(rep->id, 8);
	s = rep->subscribe;
	ck_assert_ptr_nonnull(s);
	ck_assert(s->expires);
	ck_assert_uint_eq(s->ttl, 60);
	ck_assert(s->recoverable);
	ck_assert_str_eq(s->epoch, "QnEeWkrT");
	ck_assert_uint_eq(s->n_publications, 2);
	bin_eq(s->publications[0]->data, "{\"n\":1}", 7);
	ck_assert_uint_eq(s->publications[0]->offset, 44);
	ck_assert_ptr_nonnull(s->publications[0]->info);
	ck_assert_str_eq(s->publications[0]->info->user, "42");
	ck_assert_str_eq(s->publications[0]->info->client, "c1");
	bin_eq(s->publications[0]->info->conn_info, "{\"a\":1}", 7);
	ck_assert_uint_eq(s->publications[0]->info->chan_info.len, 0);
	ck_assert_uint_eq(s->publications[0]->n_tags, 2);
	ck_assert_str_eq(s->publications[0]->tags[0]->key, "k1");
	ck_assert_str_eq(s->publications[0]->tags[0]->value, "v1");
	ck_assert_str_eq(s->publications[0]->tags[1]->key, "k2");
	ck_assert_str_eq(s->publications[0]->tags[1]->value, "");
	bin_eq(s->publications[1]->data, "\x00\x01", 2);
	ck_assert(s->publications[1]->delta);
	ck_assert_ptr_null(s->publications[1]->info);
	ck_assert_str_eq(s->publications[1]->epoch, "QnEeWkrT");
	ck_assert(s->recovered);
	ck_assert_uint_eq(s->offset, 43);
	ck_assert(s->positioned);
	bin_eq(s->data, "{}", 2);
	ck_assert(s->was_recovering);
	ck_assert(s->delta);
	protobuf_c_message_free_unpacked(&rep->base, NULL);

	/* §8.1 first subscribe reply, exact bytes. */
	memset(&r, 0, sizeof(r));
	r.recoverable = true;
	r.epoch = S("QnEeWkrT");
	r.offset = 41;
	r.positioned = true;
	proto_pb_subscribe_result(&out, 2, &r);
	EXPECT(0x14, 0x08, 0x02, 0x32, 0x10, 0x18, 0x01, 0x32, 0x08, 'Q', 'n',
	    'E', 'e', 'W', 'k', 'r', 'T', 0x48, 0x29, 0x50, 0x01);
}
END_TEST

START_TEST(test_encode_presence)
{
	struct proto_client_info infos[2] = {
		{ S("u1"), S("c1"), S("{\"i\":1}"), PROTO_SPAN_NULL },
		{ S(""), S("c2"), PROTO_SPAN_NULL, S("{}") },
	};
	PB_T(Reply) *rep;
	PB_T(PresenceResult) *p;

	proto_pb_presence_result(&out, 5, NULL, 0);
	EXPECT(0x04, 0x08, 0x05, 0x4a, 0x00);
	proto_pb_presence_result(&out, 5, infos, 2);
	rep = unpack_reply();
	p = rep->presence;
	ck_assert_ptr_nonnull(p);
	ck_assert_uint_eq(p->n_presence, 2);
	ck_assert_str_eq(p->presence[0]->key, "c1");
	ck_assert_str_eq(p->presence[0]->value->user, "u1");
	ck_assert_str_eq(p->presence[0]->value->client, "c1");
	bin_eq(p->presence[0]->value->conn_info, "{\"i\":1}", 7);
	ck_assert_str_eq(p->presence[1]->key, "c2");
	ck_assert_str_eq(p->presence[1]->value->user, "");
	bin_eq(p->presence[1]->value->chan_info, "{}", 2);
	protobuf_c_message_free_unpacked(&rep->base, NULL);

	proto_pb_presence_stats_result(&out, 6, 3, 2);
	EXPECT(0x08, 0x08, 0x06, 0x52, 0x04, 0x08, 0x03, 0x10, 0x02);
	proto_pb_presence_stats_result(&out, 6, 0, 0);
	EXPECT(0x04, 0x08, 0x06, 0x52, 0x00);
}
END_TEST

START_TEST(test_encode_history)
{
	struct proto_publication *pubs;
	PB_T(Reply) *rep;
	PB_T(HistoryResult) *h;
	char user[32];
	size_t i, n = 5000;

	proto_pb_history_result(&out, 4, NULL, 0, PROTO_SPAN_NULL, 0);
	EXPECT(0x04, 0x08, 0x04, 0x5a, 0x00);
	proto_pb_history_result(&out, 4, NULL, 0, S("ep"), 7);
	EXPECT(0x0a, 0x08, 0x04, 0x5a, 0x06, 0x12, 0x02, 'e', 'p', 0x18, 0x07);

	/* Many publications: the scratch area grows past its first blocks. */
	pubs = calloc(n, sizeof(*pubs));
	for (i = 0; i < n; i++) {
		pubs[i].data = S("{\"text\":\"hi\"}");
		pubs[i].offset = i + 1;
		pubs[i].has_info = true;
		snprintf(user, sizeof(user), "user-%zu", i);
		pubs[i].info.user.p = strdup(user);
		pubs[i].info.user.len = strlen(user);
		pubs[i].info.client = S("0c6f9a8e-2b7d-4c1e-9f3a-5d4e6b7a8c9d");
	}
	for (int round = 0; round < 2; round++) {
		proto_pb_history_result(&out, 4, pubs, n, S("QnEeWkrT"), n);
		rep = unpack_reply();
		h = rep->history;
		ck_assert_uint_eq(h->n_publications, n);
		ck_assert_str_eq(h->epoch, "QnEeWkrT");
		ck_assert_uint_eq(h->offset, n);
		for (i = 0; i < n; i++) {
			snprintf(user, sizeof(user), "user-%zu", i);
			ck_assert_str_eq(h->publications[i]->info->user, user);
			ck_assert_uint_eq(h->publications[i]->offset, i + 1);
		}
		protobuf_c_message_free_unpacked(&rep->base, NULL);
	}
	for (i = 0; i < n; i++)
		free((char *)pubs[i].info.user.p);
	free(pubs);
}
END_TEST

START_TEST(test_encode_rpc_refresh)
{
	struct proto_refresh_result rr = { 0 };

	proto_pb_rpc_result(&out, 9, S("{\"ok\":true}"));
	EXPECT(0x11, 0x08, 0x09, 0x6a, 0x0d, 0x0a, 0x0b, '{', '"', 'o', 'k', '"',
	    ':', 't', 'r', 'u', 'e', '}');
	proto_pb_rpc_result(&out, 9, PROTO_SPAN_NULL);
	EXPECT(0x04, 0x08, 0x09, 0x6a, 0x00);
	rr.expires = true;
	rr.ttl = 300;
	proto_pb_refresh_result(&out, 10, &rr);
	EXPECT(0x09, 0x08, 0x0a, 0x72, 0x05, 0x18, 0x01, 0x20, 0xac, 0x02);
	proto_pb_sub_refresh_result(&out, 11, true, 60);
	EXPECT(0x08, 0x08, 0x0b, 0x7a, 0x04, 0x08, 0x01, 0x10, 0x3c);
	proto_pb_sub_refresh_result(&out, 11, false, 0);
	EXPECT(0x04, 0x08, 0x0b, 0x7a, 0x00);
}
END_TEST

START_TEST(test_encode_pushes)
{
	struct proto_client_info ci = { S("7"), S("c7"), S("{}"), PROTO_SPAN_NULL };
	struct proto_subscribe_result sr = { 0 };
	struct proto_connect_result cr = { 0 };
	struct proto_sub_entry se;
	struct proto_push push;
	PB_T(Reply) *rep;
	PB_T(Push) *p;

	memset(&push, 0, sizeof(push));
	push.type = PROTO_PUSH_JOIN;
	push.channel = S("chat");
	push.info = &ci;
	proto_pb_push(&out, &push);
	EXPECT(0x17, 0x22, 0x15, 0x12, 0x04, 'c', 'h', 'a', 't', 0x2a, 0x0d,
	    0x0a, 0x0b, 0x0a, 0x01, '7', 0x12, 0x02, 'c', '7', 0x1a, 0x02, '{',
	    '}');
	push.type = PROTO_PUSH_LEAVE;
	proto_pb_push(&out, &push);
	EXPECT(0x17, 0x22, 0x15, 0x12, 0x04, 'c', 'h', 'a', 't', 0x32, 0x0d,
	    0x0a, 0x0b, 0x0a, 0x01, '7', 0x12, 0x02, 'c', '7', 0x1a, 0x02, '{',
	    '}');

	/* Bare push (uni transports) == the Reply's push field content. */
	proto_pb_push_bare(&out, &push);
	EXPECT(0x15, 0x12, 0x04, 'c', 'h', 'a', 't', 0x32, 0x0d, 0x0a, 0x0b,
	    0x0a, 0x01, '7', 0x12, 0x02, 'c', '7', 0x1a, 0x02, '{', '}');

	memset(&push, 0, sizeof(push));
	push.type = PROTO_PUSH_UNSUBSCRIBE;
	push.channel = S("c");
	push.code = 2500;
	push.reason = S("insufficient state");
	proto_pb_push(&out, &push);
	rep = unpack_reply();
	p = rep->push;
	ck_assert_str_eq(p->channel, "c");
	ck_assert_uint_eq(p->unsubscribe->code, 2500);
	ck_assert_str_eq(p->unsubscribe->reason, "insufficient state");
	protobuf_c_message_free_unpacked(&rep->base, NULL);

	memset(&push, 0, sizeof(push));
	push.type = PROTO_PUSH_MESSAGE;
	push.data = S("{\"m\":1}");
	proto_pb_push(&out, &push);
	EXPECT(0x0d, 0x22, 0x0b, 0x42, 0x09, 0x0a, 0x07, '{', '"', 'm', '"', ':',
	    '1', '}');

	/* Empty subscribe push: present as 4a 00. */
	memset(&push, 0, sizeof(push));
	push.type = PROTO_PUSH_SUBSCRIBE;
	push.channel = S("n");
	proto_pb_push(&out, &push);
	EXPECT(0x07, 0x22, 0x05, 0x12, 0x01, 'n', 0x4a, 0x00);
	sr.recoverable = true;
	sr.epoch = S("e");
	sr.offset = 5;
	sr.positioned = true;
	sr.data = S("{}");
	sr.expires = true;              /* not part of the Subscribe push */
	sr.ttl = 9;
	push.subscribe = &sr;
	proto_pb_push(&out, &push);
	EXPECT(0x14, 0x22, 0x12, 0x12, 0x01, 'n', 0x4a, 0x0d, 0x08, 0x01, 0x22,
	    0x01, 'e', 0x28, 0x05, 0x30, 0x01, 0x3a, 0x02, '{', '}');

	/* Connect push (uni): field numbers of Connect, not ConnectResult. */
	memset(&se, 0, sizeof(se));
	se.channel = S("news");
	cr.client = S("C2");
	cr.version = S("v");
	cr.data = S("d");
	cr.subs = &se;
	cr.nsubs = 1;
	cr.expires = true;
	cr.ttl = 10;
	cr.ping = 25;
	cr.pong = true;
	cr.session = S("S2");
	cr.node = S("N2");
	cr.time = 5;                    /* not part of the Connect push */
	memset(&push, 0, sizeof(push));
	push.type = PROTO_PUSH_CONNECT;
	push.connect = &cr;
	proto_pb_push_bare(&out, &push);
	EXPECT(0x26, 0x52, 0x24, 0x0a, 0x02, 'C', '2', 0x12, 0x01, 'v', 0x1a,
	    0x01, 'd', 0x22, 0x08, 0x0a, 0x04, 'n', 'e', 'w', 's', 0x12, 0x00,
	    0x28, 0x01, 0x30, 0x0a, 0x38, 0x19, 0x40, 0x01, 0x4a, 0x02, 'S',
	    '2', 0x52, 0x02, 'N', '2');

	memset(&push, 0, sizeof(push));
	push.type = PROTO_PUSH_REFRESH;
	push.expires = true;
	push.ttl = 30;
	proto_pb_push(&out, &push);
	EXPECT(0x08, 0x22, 0x06, 0x62, 0x04, 0x08, 0x01, 0x10, 0x1e);

	/* Empty payloads when the pointers are NULL: still present. */
	memset(&push, 0, sizeof(push));
	push.type = PROTO_PUSH_PUB;
	proto_pb_push(&out, &push);
	EXPECT(0x04, 0x22, 0x02, 0x22, 0x00);
	push.type = PROTO_PUSH_JOIN;
	proto_pb_push(&out, &push);
	EXPECT(0x06, 0x22, 0x04, 0x2a, 0x02, 0x0a, 0x00);
	push.type = PROTO_PUSH_DISCONNECT;
	proto_pb_push_bare(&out, &push);
	EXPECT(0x02, 0x5a, 0x00);
}
END_TEST

START_TEST(test_encode_push_pub_full)
{
	struct proto_publication pub = { 0 };
	struct proto_tag tag = { S("t"), S("v") };
	PB_T(Reply) *rep;
	PB_T(Publication) *p;
	uint8_t big[1000];
	size_t i;

	for (i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)i;
	pub.data.p = (const char *)big;
	pub.data.len = sizeof(big);
	pub.has_info = true;
	pub.info.user = S("42");
	pub.info.client = S("cid");
	pub.info.chan_info = S("{\"c\":2}");
	pub.offset = 1ULL << 40;
	pub.tags = &tag;
	pub.ntags = 1;
	pub.delta = true;
	pub.epoch = S("E");
	pub.data_string = true;         /* JSON-only; ignored here */
	/* Appends after existing content. */
	buf_append(&out, "\x00", 1);
	proto_pb_push_pub(&out, S("chat:1"), &pub);
	ck_assert_int_eq(out.data[0], 0);
	memmove(out.data, out.data + 1, out.len - 1);
	out.len--;
	/* 2-byte length prefix. */
	ck_assert((unsigned char)out.data[0] & 0x80);
	rep = unpack_reply();
	ck_assert_uint_eq(rep->id, 0);
	p = rep->push->pub;
	ck_assert_str_eq(rep->push->channel, "chat:1");
	bin_eq(p->data, big, sizeof(big));
	ck_assert_str_eq(p->info->user, "42");
	ck_assert_str_eq(p->info->client, "cid");
	bin_eq(p->info->chan_info, "{\"c\":2}", 7);
	ck_assert_uint_eq(p->offset, 1ULL << 40);
	ck_assert_uint_eq(p->n_tags, 1);
	ck_assert_str_eq(p->tags[0]->key, "t");
	ck_assert(p->delta);
	ck_assert_str_eq(p->epoch, "E");
	protobuf_c_message_free_unpacked(&rep->base, NULL);

	/* Info present with empty user/client: 2a 00 inside pub. */
	memset(&pub, 0, sizeof(pub));
	pub.has_info = true;
	proto_pb_push_pub(&out, S("c"), &pub);
	EXPECT(0x09, 0x22, 0x07, 0x12, 0x01, 'c', 0x22, 0x02, 0x2a, 0x00);
}
END_TEST

/* Encoder output decodes as the same kind of Reply it was meant to be, and
 * a Command packed by the generated code round-trips through our decoder. */
START_TEST(test_roundtrip_generated)
{
	PB_T(Reply) *rep;
	PB_T(Command) c = PB_INIT(COMMAND);
	PB_T(SubRefreshRequest) s = PB_INIT(SUB_REFRESH_REQUEST);
	char *untrack[2] = { "a", "b" };

	proto_pb_error_code(&out, 77, PROTO_ERR_TOO_MANY_REQUESTS);
	rep = unpack_reply();
	ck_assert_uint_eq(rep->id, 77);
	ck_assert_uint_eq(rep->error->code, 111);
	ck_assert_str_eq(rep->error->message, "too many requests");
	ck_assert(rep->error->temporary);
	protobuf_c_message_free_unpacked(&rep->base, NULL);

	s.channel = "ch";
	s.token = "t";
	s.type = 2;
	s.untrack = untrack;
	s.n_untrack = 2;
	c.id = 0xffffffffu;
	c.sub_refresh = &s;
	pack_delim(&frame, &c.base);
	decode_one();
	ck_assert_uint_eq(cmd.id, 0xffffffffu);
	ck_assert_int_eq(cmd.type, PROTO_CMD_SUB_REFRESH);
	SPAN_EQ(cmd.sub_refresh.channel, "ch");
	SPAN_EQ(cmd.sub_refresh.token, "t");
	ck_assert_int_eq(cmd.sub_refresh.type, 2);
}
END_TEST

static Suite *
proto_pb_suite(void)
{
	Suite *s = suite_create("proto_pb");
	TCase *dec = tcase_create("decode");
	TCase *bad = tcase_create("malformed");
	TCase *enc = tcase_create("encode");

	tcase_set_timeout(dec, 10);
	tcase_add_checked_fixture(dec, setup, teardown);
	tcase_add_test(dec, test_decode_spec_connect);
	tcase_add_test(dec, test_decode_pong);
	tcase_add_test(dec, test_decode_connect_full);
	tcase_add_test(dec, test_decode_connect_subs_many);
	tcase_add_test(dec, test_decode_subscribe);
	tcase_add_test(dec, test_decode_publish_binary);
	tcase_add_test(dec, test_decode_history);
	tcase_add_test(dec, test_decode_other_commands);
	tcase_add_test(dec, test_decode_empty_requests_present);
	tcase_add_test(dec, test_decode_merge_and_last_wins);
	tcase_add_test(dec, test_decode_unknown_fields);
	suite_add_tcase(s, dec);

	tcase_set_timeout(bad, 30);
	tcase_add_checked_fixture(bad, setup, teardown);
	tcase_add_test(bad, test_decode_bad_framing);
	tcase_add_test(bad, test_decode_bad_fields);
	tcase_add_test(bad, test_decode_deep_nesting);
	tcase_add_test(bad, test_decode_truncations);
	tcase_add_test(bad, test_decode_garbage);
	suite_add_tcase(s, bad);

	tcase_set_timeout(enc, 30);
	tcase_add_checked_fixture(enc, setup, teardown);
	tcase_add_test(enc, test_encode_spec_examples);
	tcase_add_test(enc, test_encode_errors);
	tcase_add_test(enc, test_encode_empty_results);
	tcase_add_test(enc, test_encode_connect_result_subs);
	tcase_add_test(enc, test_encode_subscribe_result);
	tcase_add_test(enc, test_encode_presence);
	tcase_add_test(enc, test_encode_history);
	tcase_add_test(enc, test_encode_rpc_refresh);
	tcase_add_test(enc, test_encode_pushes);
	tcase_add_test(enc, test_encode_push_pub_full);
	tcase_add_test(enc, test_roundtrip_generated);
	suite_add_tcase(s, enc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(proto_pb_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
