/*
 * check_proto.c - unit tests for the client protocol JSON codec (src/proto.c):
 * decoding the exact frames centrifuge-js sends, framing and malformed input,
 * and encoding every reply and push kind against exact expected bytes.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "buf.h"
#include "json.h"
#include "proto.h"

/* ------------------------------------------------------------------ */
/* Helpers.                                                            */

static struct proto_reader rd;
static struct proto_cmd cmd;

static void
setup(void)
{
	proto_reader_init(&rd);
	memset(&cmd, 0, sizeof(cmd));
}

static void
teardown(void)
{
	proto_reader_free(&rd);
}

/* Starts a frame that is a string literal (without its NUL). */
#define FRAME(s) proto_reader_reset(&rd, (s), sizeof(s) - 1)

#define SPAN_EQ(sp, s) ck_assert_msg(proto_span_eq((sp), (s)), \
	"span %.*s != %s", (int)(sp).len, (sp).p ? (sp).p : "", (s))
#define SPAN_ABSENT(sp) ck_assert_uint_eq((sp).len, 0)

/* Decodes a single-command frame and expects success. */
static void
decode_one(const char *frame)
{
	proto_reader_reset(&rd, frame, strlen(frame));
	ck_assert_msg(proto_json_next(&rd, &cmd) == 1, "decode failed: %s (%s)",
	    frame, rd.err ? rd.err : "?");
	ck_assert_int_eq(proto_json_next(&rd, &cmd), 0);
}

/* Decoding frame must fail at its first command. */
static void
decode_bad(const char *frame)
{
	proto_reader_reset(&rd, frame, strlen(frame));
	ck_assert_msg(proto_json_next(&rd, &cmd) == -1, "should fail: %s", frame);
	ck_assert_ptr_nonnull(rd.err);
	ck_assert_int_eq(proto_json_next(&rd, &cmd), -1);
}

/* b must hold exactly want, valid JSON without a raw newline; resets b. */
static void
expect(struct buf *b, const char *want)
{
	ck_assert_msg(b->len == strlen(want) && memcmp(b->data, want, b->len) == 0,
	    "\n got: %.*s\nwant: %s", (int)b->len, b->data ? b->data : "", want);
	ck_assert(memchr(b->data, '\n', b->len) == NULL);
	ck_assert_msg(json_validate(b->data, b->len, NULL) == 0, "invalid JSON");
	buf_reset(b);
}

#define S(lit) proto_span_str(lit)

/* ------------------------------------------------------------------ */
/* Decoding: what centrifuge-js sends.                                 */

START_TEST(test_decode_first_frame_8_1)
{
	FRAME("{\"connect\":{\"token\":\"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0MiJ9.sig\","
	    "\"name\":\"js\"},\"id\":1}\n"
	    "{\"subscribe\":{\"channel\":\"chat:1\",\"recoverable\":true,\"flag\":1},"
	    "\"id\":2}");
	ck_assert_int_eq(proto_json_next(&rd, &cmd), 1);
	ck_assert_uint_eq(cmd.id, 1);
	ck_assert_int_eq(cmd.type, PROTO_CMD_CONNECT);
	ck_assert_uint_eq(cmd.present, 1u << PROTO_CMD_CONNECT);
	SPAN_EQ(cmd.connect.token, "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0MiJ9.sig");
	SPAN_EQ(cmd.connect.name, "js");
	SPAN_ABSENT(cmd.connect.version);
	SPAN_ABSENT(cmd.connect.data);
	ck_assert_uint_eq(cmd.connect.nsubs, 0);

	ck_assert_int_eq(proto_json_next(&rd, &cmd), 1);
	ck_assert_uint_eq(cmd.id, 2);
	ck_assert_int_eq(cmd.type, PROTO_CMD_SUBSCRIBE);
	SPAN_EQ(cmd.subscribe.channel, "chat:1");
	ck_assert(cmd.subscribe.recoverable);
	ck_assert(!cmd.subscribe.recover);
	ck_assert(!cmd.subscribe.positioned);
	ck_assert_int_eq(cmd.subscribe.flag, 1);
	ck_assert(!proto_cmd_has(&cmd, PROTO_CMD_CONNECT));

	ck_assert_int_eq(proto_json_next(&rd, &cmd), 0);
	ck_assert_int_eq(proto_json_next(&rd, &cmd), 0);
}
END_TEST

START_TEST(test_decode_connect_subs_4_2)
{
	const struct proto_connect_sub *s;

	decode_one("{\"connect\":{\"token\":\"t\",\"name\":\"js\",\"version\":\"1.2\","
	    "\"data\":{\"x\":[1,2]},\"headers\":{\"h\":\"v\"},"
	    "\"subs\":{\"news\":{\"recover\":true,\"offset\":17,\"epoch\":\"xYzAbCdE\"},"
	    "\"n\\u0032\":{},\"n3\":null,\"news\":{\"offset\":18,\"delta\":\"fossil\"}}},"
	    "\"id\":1}");
	ck_assert_int_eq(cmd.type, PROTO_CMD_CONNECT);
	SPAN_EQ(cmd.connect.version, "1.2");
	SPAN_EQ(cmd.connect.data, "{\"x\":[1,2]}");
	ck_assert_uint_eq(cmd.connect.nsubs, 4);
	SPAN_EQ(cmd.connect.subs[0].req.channel, "news");
	ck_assert(cmd.connect.subs[0].req.recover);
	ck_assert_uint_eq(cmd.connect.subs[0].req.offset, 17);
	SPAN_EQ(cmd.connect.subs[0].req.epoch, "xYzAbCdE");
	SPAN_EQ(cmd.connect.subs[1].req.channel, "n2");
	ck_assert(!cmd.connect.subs[1].req.recover);
	SPAN_EQ(cmd.connect.subs[2].req.channel, "n3");

	s = proto_connect_sub_find(&cmd.connect, S("news"));
	ck_assert_ptr_nonnull(s);
	ck_assert_uint_eq(s->req.offset, 18);   /* last wins */
	SPAN_EQ(s->req.delta, "fossil");
	ck_assert_ptr_nonnull(proto_connect_sub_find(&cmd.connect, S("n2")));
	ck_assert_ptr_null(proto_connect_sub_find(&cmd.connect, S("nope")));
}
END_TEST

START_TEST(test_decode_connect_many_subs)
{
	struct buf f = BUF_INIT;
	char name[32];
	int i;

	buf_puts(&f, "{\"id\":1,\"connect\":{\"subs\":{");
	for (i = 0; i < 200; i++)
		buf_printf(&f, "%s\"ch\\u005f%d\":{\"recover\":true,\"offset\":%d}",
		    i ? "," : "", i, i);
	buf_puts(&f, "}}}");
	proto_reader_reset(&rd, f.data, f.len);
	ck_assert_int_eq(proto_json_next(&rd, &cmd), 1);
	ck_assert_uint_eq(cmd.connect.nsubs, 200);
	for (i = 0; i < 200; i++) {
		snprintf(name, sizeof(name), "ch_%d", i);
		SPAN_EQ(cmd.connect.subs[i].req.channel, name);
		ck_assert_uint_eq(cmd.connect.subs[i].req.offset, (uint64_t)i);
	}
	buf_free(&f);
}
END_TEST

START_TEST(test_decode_subscribe_4_5_1)
{
	decode_one("{\"subscribe\":{\"channel\":\"chat:1\",\"token\":\"<jwt>\","
	    "\"recoverable\":true,\"flag\":1,\"recover\":true,\"offset\":42,"
	    "\"epoch\":\"xYzAbCdE\",\"delta\":\"fossil\"},\"id\":3}");
	ck_assert_uint_eq(cmd.id, 3);
	ck_assert_int_eq(cmd.type, PROTO_CMD_SUBSCRIBE);
	SPAN_EQ(cmd.subscribe.channel, "chat:1");
	SPAN_EQ(cmd.subscribe.token, "<jwt>");
	ck_assert(cmd.subscribe.recoverable);
	ck_assert(cmd.subscribe.recover);
	ck_assert_uint_eq(cmd.subscribe.offset, 42);
	SPAN_EQ(cmd.subscribe.epoch, "xYzAbCdE");
	SPAN_EQ(cmd.subscribe.delta, "fossil");
	ck_assert_int_eq(cmd.subscribe.flag, 1);
	ck_assert(!cmd.subscribe.has_tf);

	decode_one("{\"subscribe\":{\"channel\":\"c\",\"positioned\":true,"
	    "\"join_leave\":true,\"data\":[1,\"a\"],\"type\":0,\"flag\":3,"
	    "\"tf\":{\"key\":\"k\",\"cmp\":\"eq\",\"val\":\"v\"},\"phase\":1,"
	    "\"cursor\":\"x\",\"asc\":true},\"id\":4}");
	ck_assert(cmd.subscribe.positioned);
	ck_assert(cmd.subscribe.join_leave);
	SPAN_EQ(cmd.subscribe.data, "[1,\"a\"]");
	ck_assert_int_eq(cmd.subscribe.flag, 3);
	ck_assert(cmd.subscribe.has_tf);
	SPAN_EQ(cmd.subscribe.tf, "{\"key\":\"k\",\"cmp\":\"eq\",\"val\":\"v\"}");
}
END_TEST

START_TEST(test_decode_other_requests)
{
	decode_one("{\"publish\":{\"channel\":\"chat:1\",\"data\":{\"text\":\"hi\"}},\"id\":5}");
	ck_assert_int_eq(cmd.type, PROTO_CMD_PUBLISH);
	ck_assert_uint_eq(cmd.id, 5);
	SPAN_EQ(cmd.publish.channel, "chat:1");
	SPAN_EQ(cmd.publish.data, "{\"text\":\"hi\"}");

	decode_one("{\"rpc\":{\"method\":\"getUser\",\"data\":{\"id\":1}},\"id\":6}");
	ck_assert_int_eq(cmd.type, PROTO_CMD_RPC);
	SPAN_EQ(cmd.rpc.method, "getUser");
	SPAN_EQ(cmd.rpc.data, "{\"id\":1}");

	decode_one("{\"send\":{\"data\":{\"k\":\"v\"}}}");
	ck_assert_int_eq(cmd.type, PROTO_CMD_SEND);
	ck_assert_uint_eq(cmd.id, 0);
	SPAN_EQ(cmd.send.data, "{\"k\":\"v\"}");

	decode_one("{\"history\":{\"channel\":\"chat:1\",\"limit\":10,\"since\":"
	    "{\"offset\":40,\"epoch\":\"xYzAbCdE\"},\"reverse\":false},\"id\":8}");
	ck_assert_int_eq(cmd.type, PROTO_CMD_HISTORY);
	SPAN_EQ(cmd.history.channel, "chat:1");
	ck_assert_int_eq(cmd.history.limit, 10);
	ck_assert(cmd.history.has_since);
	ck_assert_uint_eq(cmd.history.since_offset, 40);
	SPAN_EQ(cmd.history.since_epoch, "xYzAbCdE");
	ck_assert(!cmd.history.reverse);

	decode_one("{\"history\":{\"channel\":\"chat:1\",\"limit\":2,\"reverse\":true},\"id\":4}");
	ck_assert(!cmd.history.has_since);
	ck_assert(cmd.history.reverse);
	ck_assert_int_eq(cmd.history.limit, 2);

	decode_one("{\"history\":{\"channel\":\"c\",\"limit\":-1,\"since\":{}},\"id\":4}");
	ck_assert_int_eq(cmd.history.limit, -1);
	ck_assert(cmd.history.has_since);
	ck_assert_uint_eq(cmd.history.since_offset, 0);

	decode_one("{\"unsubscribe\":{\"channel\":\"chat:1\"},\"id\":9}");
	ck_assert_int_eq(cmd.type, PROTO_CMD_UNSUBSCRIBE);
	SPAN_EQ(cmd.unsubscribe.channel, "chat:1");

	decode_one("{\"presence\":{\"channel\":\"chat:1\"},\"id\":10}");
	ck_assert_int_eq(cmd.type, PROTO_CMD_PRESENCE);
	SPAN_EQ(cmd.presence.channel, "chat:1");

	decode_one("{\"presence_stats\":{\"channel\":\"chat:1\"},\"id\":11}");
	ck_assert_int_eq(cmd.type, PROTO_CMD_PRESENCE_STATS);
	SPAN_EQ(cmd.presence_stats.channel, "chat:1");

	decode_one("{\"refresh\":{\"token\":\"new\"},\"id\":12}");
	ck_assert_int_eq(cmd.type, PROTO_CMD_REFRESH);
	SPAN_EQ(cmd.refresh.token, "new");

	decode_one("{\"sub_refresh\":{\"channel\":\"chat:1\",\"token\":\"tok\"},\"id\":13}");
	ck_assert_int_eq(cmd.type, PROTO_CMD_SUB_REFRESH);
	SPAN_EQ(cmd.sub_refresh.channel, "chat:1");
	SPAN_EQ(cmd.sub_refresh.token, "tok");
	ck_assert_int_eq(cmd.sub_refresh.type, 0);

	/* Empty request objects are present. */
	decode_one("{\"connect\":{},\"id\":1}");
	ck_assert_int_eq(cmd.type, PROTO_CMD_CONNECT);
	decode_one("{\"publish\":{},\"id\":3}");
	ck_assert_int_eq(cmd.type, PROTO_CMD_PUBLISH);
	SPAN_ABSENT(cmd.publish.channel);
	SPAN_ABSENT(cmd.publish.data);
}
END_TEST

START_TEST(test_decode_pong_and_ping)
{
	decode_one("{}");
	ck_assert_uint_eq(cmd.id, 0);
	ck_assert_int_eq(cmd.type, PROTO_CMD_NONE);
	ck_assert_uint_eq(cmd.present, 0);

	decode_one("{\"id\":7,\"ping\":{}}");
	ck_assert_uint_eq(cmd.id, 7);
	ck_assert_int_eq(cmd.type, PROTO_CMD_PING);
	ck_assert_uint_eq(cmd.present, 1u << PROTO_CMD_PING);

	/* ping is before subscribe in dispatch order. */
	decode_one("{\"subscribe\":{\"channel\":\"c\"},\"ping\":{},\"id\":7}");
	ck_assert_int_eq(cmd.type, PROTO_CMD_PING);
	ck_assert(proto_cmd_has(&cmd, PROTO_CMD_SUBSCRIBE));
	SPAN_EQ(cmd.subscribe.channel, "c");

	/* id > 0 and no known request. */
	decode_one("{\"id\":3,\"whatever\":{}}");
	ck_assert_int_eq(cmd.type, PROTO_CMD_NONE);
	ck_assert_uint_eq(cmd.id, 3);

	/* id 0 written explicitly is still a pong. */
	decode_one("{\"id\":0}");
	ck_assert_uint_eq(cmd.id, 0);
	ck_assert_int_eq(cmd.type, PROTO_CMD_NONE);
}
END_TEST

START_TEST(test_decode_dispatch_order)
{
	decode_one("{\"publish\":{\"channel\":\"p\"},\"subscribe\":{\"channel\":\"s\"},"
	    "\"sub_refresh\":{},\"id\":1}");
	ck_assert_int_eq(cmd.type, PROTO_CMD_SUBSCRIBE);
	ck_assert(proto_cmd_has(&cmd, PROTO_CMD_PUBLISH));
	ck_assert(proto_cmd_has(&cmd, PROTO_CMD_SUB_REFRESH));
	ck_assert(!proto_cmd_has(&cmd, PROTO_CMD_CONNECT));
	SPAN_EQ(cmd.publish.channel, "p");

	decode_one("{\"send\":{},\"refresh\":{\"token\":\"x\"}}");
	ck_assert_int_eq(cmd.type, PROTO_CMD_SEND);
}
END_TEST

START_TEST(test_decode_duplicates_last_wins)
{
	decode_one("{\"subscribe\":{\"channel\":\"a\",\"token\":\"t\"},"
	    "\"subscribe\":{\"channel\":\"b\"},\"id\":1,\"id\":2}");
	ck_assert_uint_eq(cmd.id, 2);
	SPAN_EQ(cmd.subscribe.channel, "b");
	SPAN_ABSENT(cmd.subscribe.token);

	decode_one("{\"subscribe\":{\"channel\":\"a\",\"channel\":\"b\"},\"id\":1}");
	SPAN_EQ(cmd.subscribe.channel, "b");
}
END_TEST

START_TEST(test_decode_null_members)
{
	decode_one("{\"connect\":null,\"subscribe\":{\"channel\":\"c\",\"token\":null,"
	    "\"data\":null,\"offset\":null,\"recover\":null,\"tf\":null},"
	    "\"id\":2,\"publish\":null}");
	ck_assert_int_eq(cmd.type, PROTO_CMD_SUBSCRIBE);
	ck_assert_uint_eq(cmd.present, 1u << PROTO_CMD_SUBSCRIBE);
	SPAN_ABSENT(cmd.subscribe.token);
	ck_assert_ptr_null(cmd.subscribe.data.p);
	ck_assert(!cmd.subscribe.has_tf);

	/* null id: a pong */
	decode_one("{\"id\":null}");
	ck_assert_uint_eq(cmd.id, 0);

	/* A null member keeps the earlier value (Go's behaviour). */
	decode_one("{\"subscribe\":{\"channel\":\"c\",\"channel\":null},\"id\":1}");
	SPAN_EQ(cmd.subscribe.channel, "c");
}
END_TEST

START_TEST(test_decode_unknown_keys)
{
	decode_one("{\"extra\":[1,{\"a\":null}],\"connect\":{\"foo\":{\"bar\":[true]},"
	    "\"headers\":{\"a\":\"b\"},\"flag\":\"ignored\",\"dict\":1,"
	    "\"name\":\"js\"},\"id\":1,\"zzz\":\"\\u00e9\"}");
	ck_assert_int_eq(cmd.type, PROTO_CMD_CONNECT);
	SPAN_EQ(cmd.connect.name, "js");
	decode_one("{\"sub_refresh\":{\"channel\":\"c\",\"track\":[{}],\"untrack\":[\"x\"]},\"id\":1}");
	SPAN_EQ(cmd.sub_refresh.channel, "c");
}
END_TEST

START_TEST(test_decode_data_types_verbatim)
{
	static const char *const values[] = {
		"{\"a\":{\"b\":[1,2.5,-3e2]},\"c\":\"\\u00e9\\n\"}",
		"[ 1 , \"two\" , null ]",
		"\"x\"",
		"\"a\\\"b\\/c\\ud83d\\ude00\"",
		"-1.5e3",
		"0",
		"true",
		"false",
		"{}",
		"[]",
		"\"\"",
	};
	struct buf f = BUF_INIT;
	size_t i;

	for (i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		buf_reset(&f);
		buf_printf(&f, "{\"publish\":{\"channel\":\"c\",\"data\": %s },\"id\":1}",
		    values[i]);
		decode_one(buf_cstr(&f));
		SPAN_EQ(cmd.publish.data, values[i]);
		/* The span points into the frame itself (no copy). */
		ck_assert(cmd.publish.data.p > f.data &&
		    cmd.publish.data.p < f.data + f.len);

		buf_reset(&f);
		buf_printf(&f, "{\"send\":{\"data\":%s}}", values[i]);
		decode_one(buf_cstr(&f));
		SPAN_EQ(cmd.send.data, values[i]);

		buf_reset(&f);
		buf_printf(&f, "{\"rpc\":{\"data\":%s,\"method\":\"m\"},\"id\":2}",
		    values[i]);
		decode_one(buf_cstr(&f));
		SPAN_EQ(cmd.rpc.data, values[i]);
	}
	buf_free(&f);
}
END_TEST

START_TEST(test_decode_escaped_strings)
{
	decode_one("{\"subscribe\":{\"channel\":\"chat\\/1\",\"token\":\"\\u0074ok\","
	    "\"epoch\":\"\\ud83d\\ude00\",\"delta\":\"fo\\u0073sil\"},"
	    "\"\\u0069d\":4}");
	ck_assert_uint_eq(cmd.id, 4);
	SPAN_EQ(cmd.subscribe.channel, "chat/1");
	SPAN_EQ(cmd.subscribe.token, "tok");
	SPAN_EQ(cmd.subscribe.epoch, "\xf0\x9f\x98\x80");
	SPAN_EQ(cmd.subscribe.delta, "fossil");

	/* Escaped request key. */
	decode_one("{\"\\u0070ublish\":{\"channel\":\"c\\\"q\"},\"id\":1}");
	ck_assert_int_eq(cmd.type, PROTO_CMD_PUBLISH);
	SPAN_EQ(cmd.publish.channel, "c\"q");

	/* Lone surrogate -> U+FFFD. */
	decode_one("{\"unsubscribe\":{\"channel\":\"a\\ud800b\"},\"id\":1}");
	SPAN_EQ(cmd.unsubscribe.channel, "a\xef\xbf\xbd" "b");
}
END_TEST

START_TEST(test_decode_many_escapes_one_line)
{
	/* Every string of a long line needs the arena: it must not move. */
	struct buf f = BUF_INIT;
	int i;

	buf_puts(&f, "{\"id\":1");
	for (i = 0; i < 300; i++)
		buf_puts(&f, ",\"subscribe\":{\"channel\":\"\\u0061\\n\\/\","
		    "\"token\":\"\\ud83d\\ude00\",\"epoch\":\"\\\\\"}");
	buf_puts(&f, "}");
	proto_reader_reset(&rd, f.data, f.len);
	ck_assert_int_eq(proto_json_next(&rd, &cmd), 1);
	SPAN_EQ(cmd.subscribe.channel, "a\n/");
	SPAN_EQ(cmd.subscribe.token, "\xf0\x9f\x98\x80");
	SPAN_EQ(cmd.subscribe.epoch, "\\");
	buf_free(&f);
}
END_TEST

START_TEST(test_framing)
{
	int n = 0;

	/* Several commands, one trailing newline tolerated. */
	FRAME("{\"id\":1,\"connect\":{}}\n{\"id\":2,\"presence\":{\"channel\":\"a\"}}\n"
	    "{}\n");
	while (proto_json_next(&rd, &cmd) == 1)
		n++;
	ck_assert_int_eq(n, 3);
	ck_assert_int_eq(proto_json_next(&rd, &cmd), 0);

	/* CRLF line ends: \r is JSON whitespace. */
	FRAME("{\"id\":1,\"connect\":{}}\r\n{}\r\n");
	ck_assert_int_eq(proto_json_next(&rd, &cmd), 1);
	ck_assert_int_eq(proto_json_next(&rd, &cmd), 1);
	ck_assert_uint_eq(cmd.id, 0);
	ck_assert_int_eq(proto_json_next(&rd, &cmd), 0);

	/* Leading/trailing whitespace around a command. */
	FRAME("  {\"id\":5,\"ping\":{}}\t ");
	ck_assert_int_eq(proto_json_next(&rd, &cmd), 1);
	ck_assert_uint_eq(cmd.id, 5);
	ck_assert_int_eq(proto_json_next(&rd, &cmd), 0);

	/* Empty frame. */
	proto_reader_reset(&rd, "", 0);
	ck_assert_int_eq(proto_json_next(&rd, &cmd), -1);
	ck_assert_str_eq(rd.err, "empty frame");
	proto_reader_reset(&rd, NULL, 0);
	ck_assert_int_eq(proto_json_next(&rd, &cmd), -1);

	/* Just a newline. */
	FRAME("\n");
	ck_assert_int_eq(proto_json_next(&rd, &cmd), -1);
	ck_assert_str_eq(rd.err, "empty line in frame");

	/* Empty line in the middle. */
	FRAME("{}\n\n{}");
	ck_assert_int_eq(proto_json_next(&rd, &cmd), 1);
	ck_assert_int_eq(proto_json_next(&rd, &cmd), -1);
	ck_assert_uint_eq(rd.err_off, 3);
	ck_assert_int_eq(proto_json_next(&rd, &cmd), -1);

	/* Two trailing newlines. */
	FRAME("{}\n\n");
	ck_assert_int_eq(proto_json_next(&rd, &cmd), 1);
	ck_assert_int_eq(proto_json_next(&rd, &cmd), -1);

	/* Leading newline. */
	FRAME("\n{}");
	ck_assert_int_eq(proto_json_next(&rd, &cmd), -1);

	/* Whitespace-only line. */
	FRAME("{}\n  \n{}");
	ck_assert_int_eq(proto_json_next(&rd, &cmd), 1);
	ck_assert_int_eq(proto_json_next(&rd, &cmd), -1);

	/* The reader is reusable after a failure. */
	FRAME("{\"id\":9,\"rpc\":{}}");
	ck_assert_int_eq(proto_json_next(&rd, &cmd), 1);
	ck_assert_uint_eq(cmd.id, 9);
	ck_assert_int_eq(cmd.type, PROTO_CMD_RPC);
}
END_TEST

START_TEST(test_pretty_json_split_by_newlines)
{
	/* A pretty-printed command is split by its newlines: malformed. */
	decode_bad("{\n\"id\":1,\"connect\":{}\n}");
}
END_TEST

START_TEST(test_decode_malformed)
{
	static const char *const bad[] = {
		"{", "{\"id\":1,", "{\"id\":1,\"connect\":{}", "[]", "[{}]", "\"x\"",
		"1", "null", "true", "{} {}", "{}x", "{\"id\":1}}", "{'id':1}",
		"{\"connect\":{\"token\":\"a\x01\"},\"id\":1}",
		"{\"connect\":{\"token\":\"\xff\"},\"id\":1}",
		"{\"connect\":{\"token\":\"\\x\"},\"id\":1}",
		"{\"connect\":{\"data\":{\"a\":},\"id\":1}",
		"{\"connect\":{\"data\":tru},\"id\":1}",
		"{\"send\":{\"data\":01}}",
		"{\"id\":1,\"extra\":[1,]}",
		"\xef\xbb\xbf{}",       /* BOM */
	};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		decode_bad(bad[i]);
}
END_TEST

START_TEST(test_decode_wrong_types)
{
	static const char *const bad[] = {
		"{\"id\":\"1\",\"connect\":{}}",
		"{\"id\":1.5,\"connect\":{}}",
		"{\"id\":1e2,\"connect\":{}}",
		"{\"id\":-1,\"connect\":{}}",
		"{\"id\":4294967296,\"connect\":{}}",
		"{\"id\":true,\"connect\":{}}",
		"{\"id\":1,\"connect\":[]}",
		"{\"id\":1,\"connect\":\"x\"}",
		"{\"id\":1,\"connect\":1}",
		"{\"id\":1,\"ping\":[]}",
		"{\"id\":1,\"connect\":{\"token\":1}}",
		"{\"id\":1,\"connect\":{\"name\":{}}}",
		"{\"id\":1,\"connect\":{\"subs\":[]}}",
		"{\"id\":1,\"connect\":{\"subs\":{\"a\":1}}}",
		"{\"id\":1,\"connect\":{\"subs\":{\"a\":{\"offset\":\"1\"}}}}",
		"{\"id\":1,\"subscribe\":{\"channel\":5}}",
		"{\"id\":1,\"subscribe\":{\"channel\":\"c\",\"recover\":\"true\"}}",
		"{\"id\":1,\"subscribe\":{\"channel\":\"c\",\"recover\":1}}",
		"{\"id\":1,\"subscribe\":{\"channel\":\"c\",\"offset\":-1}}",
		"{\"id\":1,\"subscribe\":{\"channel\":\"c\",\"offset\":1.0}}",
		"{\"id\":1,\"subscribe\":{\"channel\":\"c\",\"offset\":18446744073709551616}}",
		"{\"id\":1,\"subscribe\":{\"channel\":\"c\",\"tf\":\"x\"}}",
		"{\"id\":1,\"subscribe\":{\"channel\":\"c\",\"type\":2147483648}}",
		"{\"id\":1,\"subscribe\":{\"channel\":\"c\",\"flag\":true}}",
		"{\"id\":1,\"subscribe\":{\"channel\":\"c\",\"delta\":1}}",
		"{\"id\":1,\"subscribe\":[\"c\"]}",
		"{\"id\":1,\"publish\":{\"channel\":[]}}",
		"{\"id\":1,\"publish\":{\"channel\":\"c\",\"type\":\"0\"}}",
		"{\"id\":1,\"history\":{\"channel\":\"c\",\"limit\":\"1\"}}",
		"{\"id\":1,\"history\":{\"channel\":\"c\",\"limit\":2147483648}}",
		"{\"id\":1,\"history\":{\"channel\":\"c\",\"since\":\"x\"}}",
		"{\"id\":1,\"history\":{\"channel\":\"c\",\"since\":{\"offset\":-1}}}",
		"{\"id\":1,\"history\":{\"channel\":\"c\",\"since\":{\"epoch\":1}}}",
		"{\"id\":1,\"history\":{\"channel\":\"c\",\"reverse\":0}}",
		"{\"id\":1,\"rpc\":{\"method\":1}}",
		"{\"id\":1,\"refresh\":{\"token\":false}}",
		"{\"id\":1,\"sub_refresh\":{\"channel\":\"c\",\"type\":1.5}}",
		"{\"id\":1,\"unsubscribe\":{\"channel\":{}}}",
		"{\"id\":1,\"presence\":{\"channel\":[]}}",
		"{\"id\":1,\"presence_stats\":{\"channel\":1}}",
		"{\"send\":[]}",
	};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		decode_bad(bad[i]);
}
END_TEST

START_TEST(test_decode_deep_nesting)
{
	struct buf f = BUF_INIT;
	int i;

	buf_puts(&f, "{\"id\":1,\"publish\":{\"channel\":\"c\",\"data\":");
	for (i = 0; i < 100; i++)
		buf_putc(&f, '[');
	for (i = 0; i < 100; i++)
		buf_putc(&f, ']');
	buf_puts(&f, "}}");
	proto_reader_reset(&rd, f.data, f.len);
	ck_assert_int_eq(proto_json_next(&rd, &cmd), -1);
	ck_assert_str_eq(rd.err, "nesting too deep");
	buf_free(&f);
}
END_TEST

START_TEST(test_decode_error_offset)
{
	FRAME("{}\n{\"id\":1,\"subscribe\":{\"channel\":7}}");
	ck_assert_int_eq(proto_json_next(&rd, &cmd), 1);
	ck_assert_int_eq(proto_json_next(&rd, &cmd), -1);
	ck_assert_str_eq(rd.err, "expected a string");
	ck_assert_uint_eq(rd.err_off, 3 + strlen("{\"id\":1,\"subscribe\":{\"channel\":"));
}
END_TEST

START_TEST(test_decode_truncations)
{
	/* Every prefix of a valid command either fails or (when it ends just
	 * after a complete object) succeeds; none crashes or over-reads. */
	const char *full = "{\"subscribe\":{\"channel\":\"chat\\/1\",\"recover\":true,"
	    "\"offset\":42,\"data\":{\"a\":[1,\"\\u00e9\"]}},\"id\":3}";
	size_t n, len = strlen(full);
	char *cp;

	for (n = 0; n < len; n++) {
		cp = malloc(n ? n : 1);
		memcpy(cp, full, n);
		proto_reader_reset(&rd, cp, n);
		ck_assert_msg(proto_json_next(&rd, &cmd) == -1, "prefix %zu", n);
		free(cp);
	}
}
END_TEST

START_TEST(test_decode_mutations)
{
	/* Corrupt valid frames byte by byte (fixed-seed LCG, reproducible):
	 * decoding must never crash or read outside the frame (ASan), and must
	 * end in 0 or -1. */
	static const char *const seeds[] = {
		"{\"connect\":{\"token\":\"t\\u0041\",\"name\":\"js\",\"subs\":"
		    "{\"n\\/1\":{\"recover\":true,\"offset\":17,\"epoch\":\"e\"}}},\"id\":1}\n"
		    "{\"subscribe\":{\"channel\":\"chat:1\",\"flag\":1},\"id\":2}",
		"{\"history\":{\"channel\":\"c\",\"limit\":10,\"since\":{\"offset\":4,"
		    "\"epoch\":\"x\"},\"reverse\":true},\"id\":8}\n{}\n",
		"{\"publish\":{\"channel\":\"c\",\"data\":{\"a\":[1,2.5e3,\"\\ud83d\\ude00\"]}},\"id\":5}",
	};
	static const char alphabet[] = "{}[]\",:\\\n 0-1.eEtrufalsn\xc3\xa9\xff";
	uint32_t x = 12345;
	size_t si, n, len, k;
	char *f;
	int iter, rc, guard;

	for (si = 0; si < sizeof(seeds) / sizeof(seeds[0]); si++) {
		len = strlen(seeds[si]);
		for (iter = 0; iter < 3000; iter++) {
			f = malloc(len);
			memcpy(f, seeds[si], len);
			n = 1 + iter % 3;
			for (k = 0; k < n; k++) {
				x = x * 1103515245u + 12345u;
				f[(x >> 8) % len] =
				    alphabet[(x >> 20) % (sizeof(alphabet) - 1)];
			}
			x = x * 1103515245u + 12345u;
			proto_reader_reset(&rd, f, len - (x >> 16) % 4);
			guard = 0;
			while ((rc = proto_json_next(&rd, &cmd)) == 1)
				ck_assert_int_lt(++guard, 100);
			ck_assert(rc == 0 || rc == -1);
			free(f);
		}
	}
}
END_TEST

/* ------------------------------------------------------------------ */
/* Encoding.                                                           */

static const struct proto_client_info info7 = {
	.user = { "7", 1 },
	.client = { "a1b2c3d4-0000-4000-8000-000000000001", 36 },
};
static const struct proto_client_info info42 = {
	.user = { "42", 2 },
	.client = { "0c6f9a8e-2b7d-4c1e-9f3a-5d4e6b7a8c9d", 36 },
};

START_TEST(test_encode_ping_and_errors)
{
	struct buf b = BUF_INIT;

	proto_json_ping(&b);
	expect(&b, "{}");
	proto_json_error(&b, 7, 103, "permission denied", false);
	expect(&b, "{\"id\":7,\"error\":{\"code\":103,\"message\":\"permission denied\"}}");
	proto_json_error_code(&b, 5, PROTO_ERR_NOT_AVAILABLE);
	expect(&b, "{\"id\":5,\"error\":{\"code\":108,\"message\":\"not available\"}}");
	proto_json_error_code(&b, 6, PROTO_ERR_ALREADY_SUBSCRIBED);
	expect(&b, "{\"id\":6,\"error\":{\"code\":105,\"message\":\"already subscribed\"}}");
	proto_json_error_code(&b, 1, PROTO_ERR_INTERNAL);
	expect(&b, "{\"id\":1,\"error\":{\"code\":100,\"message\":"
	    "\"internal server error\",\"temporary\":true}}");
	proto_json_error(&b, 2, 4001, "custom \"err\"\nline", true);
	expect(&b, "{\"id\":2,\"error\":{\"code\":4001,\"message\":"
	    "\"custom \\\"err\\\"\\nline\",\"temporary\":true}}");
	proto_json_error_code(&b, 3, 1999);
	expect(&b, "{\"id\":3,\"error\":{\"code\":1999}}");
	buf_free(&b);
}
END_TEST

START_TEST(test_encode_connect_result)
{
	struct buf b = BUF_INIT;
	struct proto_connect_result r = {
		.client = S("0c6f9a8e-2b7d-4c1e-9f3a-5d4e6b7a8c9d"),
		.version = S("6.1.0 OSS"),
		.ping = 25,
		.pong = true,
	};
	struct proto_sub_entry subs[2];

	proto_json_connect_result(&b, 1, &r);
	expect(&b, "{\"id\":1,\"connect\":{\"client\":\"0c6f9a8e-2b7d-4c1e-9f3a-5d4e6b7a8c9d\","
	    "\"version\":\"6.1.0 OSS\",\"ping\":25,\"pong\":true}}");

	r.client = S("6f1b7e4a-8c35-4d40-9d7e-0d6a2c1f5b10");
	r.expires = true;
	r.ttl = 3594;
	proto_json_connect_result(&b, 1, &r);
	expect(&b, "{\"id\":1,\"connect\":{\"client\":\"6f1b7e4a-8c35-4d40-9d7e-0d6a2c1f5b10\","
	    "\"version\":\"6.1.0 OSS\",\"expires\":true,\"ttl\":3594,\"ping\":25,\"pong\":true}}");

	memset(subs, 0, sizeof(subs));
	subs[0].channel = S("#42");
	subs[1].channel = S("news");
	subs[1].result.recoverable = true;
	subs[1].result.positioned = true;
	subs[1].result.epoch = S("ep");
	subs[1].result.offset = 7;
	memset(&r, 0, sizeof(r));
	r.client = S("C1");
	r.data = S("{\"a\":\n1}");
	r.subs = subs;
	r.nsubs = 2;
	r.session = S("S1");
	r.node = S("N1");
	r.time = 1700000000000LL;
	proto_json_connect_result(&b, 9, &r);
	expect(&b, "{\"id\":9,\"connect\":{\"client\":\"C1\",\"data\":{\"a\":1},"
	    "\"subs\":{\"#42\":{},\"news\":{\"recoverable\":true,\"epoch\":\"ep\","
	    "\"offset\":7,\"positioned\":true}},\"session\":\"S1\",\"node\":\"N1\","
	    "\"time\":1700000000000}}");

	memset(&r, 0, sizeof(r));
	proto_json_connect_result(&b, 1, &r);
	expect(&b, "{\"id\":1,\"connect\":{}}");
	buf_free(&b);
}
END_TEST

START_TEST(test_encode_subscribe_result)
{
	struct buf b = BUF_INIT;
	struct proto_subscribe_result r = {
		.recoverable = true,
		.epoch = S("QnEeWkrT"),
		.offset = 41,
		.positioned = true,
	};
	struct proto_publication pubs[2];

	proto_json_subscribe_result(&b, 2, &r);
	expect(&b, "{\"id\":2,\"subscribe\":{\"recoverable\":true,\"epoch\":\"QnEeWkrT\","
	    "\"offset\":41,\"positioned\":true}}");

	/* §8.1 recovery. */
	memset(pubs, 0, sizeof(pubs));
	pubs[0].data = S("{\"n\":1}");
	pubs[0].offset = 44;
	pubs[1].data = S("{\"n\":2}");
	pubs[1].offset = 45;
	r.publications = pubs;
	r.npublications = 2;
	r.recovered = true;
	r.offset = 43;
	r.was_recovering = true;
	proto_json_subscribe_result(&b, 8, &r);
	expect(&b, "{\"id\":8,\"subscribe\":{\"recoverable\":true,\"epoch\":\"QnEeWkrT\","
	    "\"publications\":[{\"data\":{\"n\":1},\"offset\":44},{\"data\":{\"n\":2},"
	    "\"offset\":45}],\"recovered\":true,\"offset\":43,\"positioned\":true,"
	    "\"was_recovering\":true}}");

	/* §8.1 epoch changed. */
	r.epoch = S("bFzRtPqa");
	r.offset = 3;
	r.recovered = false;
	r.npublications = 0;
	proto_json_subscribe_result(&b, 8, &r);
	expect(&b, "{\"id\":8,\"subscribe\":{\"recoverable\":true,\"epoch\":\"bFzRtPqa\","
	    "\"offset\":3,\"positioned\":true,\"was_recovering\":true}}");

	/* §8.6 delta. */
	memset(&r, 0, sizeof(r));
	r.epoch = S("QnEeWkrT");
	r.offset = 10;
	r.positioned = true;
	r.delta = true;
	proto_json_subscribe_result(&b, 2, &r);
	expect(&b, "{\"id\":2,\"subscribe\":{\"epoch\":\"QnEeWkrT\",\"offset\":10,"
	    "\"positioned\":true,\"delta\":true}}");

	memset(&r, 0, sizeof(r));
	r.expires = true;
	r.ttl = 60;
	r.data = S("\"tokdata\"");
	proto_json_subscribe_result(&b, 3, &r);
	expect(&b, "{\"id\":3,\"subscribe\":{\"expires\":true,\"ttl\":60,\"data\":\"tokdata\"}}");

	memset(&r, 0, sizeof(r));
	proto_json_subscribe_result(&b, 2, &r);
	expect(&b, "{\"id\":2,\"subscribe\":{}}");
	buf_free(&b);
}
END_TEST

START_TEST(test_encode_empty_results)
{
	struct buf b = BUF_INIT;

	proto_json_empty_result(&b, 3, PROTO_CMD_PUBLISH);
	expect(&b, "{\"id\":3,\"publish\":{}}");
	proto_json_empty_result(&b, 9, PROTO_CMD_UNSUBSCRIBE);
	expect(&b, "{\"id\":9,\"unsubscribe\":{}}");
	proto_json_empty_result(&b, 12, PROTO_CMD_SUB_REFRESH);
	expect(&b, "{\"id\":12,\"sub_refresh\":{}}");
	proto_json_empty_result(&b, 4294967295u, PROTO_CMD_REFRESH);
	expect(&b, "{\"id\":4294967295,\"refresh\":{}}");
	proto_json_empty_result(&b, 6, PROTO_CMD_RPC);
	expect(&b, "{\"id\":6,\"rpc\":{}}");
	buf_free(&b);
}
END_TEST

START_TEST(test_encode_presence)
{
	struct buf b = BUF_INIT;
	struct proto_client_info infos[2] = {
		{ .user = S("42"), .client = S("c1"), .conn_info = S("{\"n\":\"a\"}"),
		  .chan_info = S("[1,\n2]") },
		{ .user = S(""), .client = S("c2") },
	};

	proto_json_presence_result(&b, 10, infos, 2);
	expect(&b, "{\"id\":10,\"presence\":{\"presence\":{\"c1\":{\"user\":\"42\","
	    "\"client\":\"c1\",\"conn_info\":{\"n\":\"a\"},\"chan_info\":[1,2]},"
	    "\"c2\":{\"user\":\"\",\"client\":\"c2\"}}}}");
	proto_json_presence_result(&b, 10, NULL, 0);
	expect(&b, "{\"id\":10,\"presence\":{\"presence\":{}}}");
	proto_json_presence_stats_result(&b, 11, 3, 2);
	expect(&b, "{\"id\":11,\"presence_stats\":{\"num_clients\":3,\"num_users\":2}}");
	proto_json_presence_stats_result(&b, 11, 0, 0);
	expect(&b, "{\"id\":11,\"presence_stats\":{\"num_clients\":0,\"num_users\":0}}");
	buf_free(&b);
}
END_TEST

START_TEST(test_encode_history)
{
	struct buf b = BUF_INIT;
	struct proto_publication pubs[2];

	memset(pubs, 0, sizeof(pubs));
	pubs[0].data = S("{\"text\":\"hi\"}");
	pubs[0].has_info = true;
	pubs[0].info = info42;
	pubs[0].offset = 43;
	pubs[1].data = S("{\"text\":\"hello\"}");
	pubs[1].has_info = true;
	pubs[1].info = info7;
	pubs[1].offset = 42;
	proto_json_history_result(&b, 4, pubs, 2, S("QnEeWkrT"), 43);
	expect(&b, "{\"id\":4,\"history\":{\"publications\":[{\"data\":{\"text\":\"hi\"},"
	    "\"info\":{\"user\":\"42\",\"client\":\"0c6f9a8e-2b7d-4c1e-9f3a-5d4e6b7a8c9d\"},"
	    "\"offset\":43},{\"data\":{\"text\":\"hello\"},\"info\":{\"user\":\"7\","
	    "\"client\":\"a1b2c3d4-0000-4000-8000-000000000001\"},\"offset\":42}],"
	    "\"epoch\":\"QnEeWkrT\",\"offset\":43}}");
	proto_json_history_result(&b, 4, NULL, 0, PROTO_SPAN_NULL, 0);
	expect(&b, "{\"id\":4,\"history\":{\"publications\":[],\"epoch\":\"\",\"offset\":0}}");
	buf_free(&b);
}
END_TEST

START_TEST(test_encode_rpc_refresh)
{
	struct buf b = BUF_INIT;
	struct proto_refresh_result r = { .expires = true, .ttl = 3600 };

	proto_json_rpc_result(&b, 6, S("{\"user\":{\"id\":1}}"));
	expect(&b, "{\"id\":6,\"rpc\":{\"data\":{\"user\":{\"id\":1}}}}");
	proto_json_rpc_result(&b, 6, PROTO_SPAN_NULL);
	expect(&b, "{\"id\":6,\"rpc\":{}}");
	proto_json_refresh_result(&b, 12, &r);
	expect(&b, "{\"id\":12,\"refresh\":{\"expires\":true,\"ttl\":3600}}");
	r.client = S("c");
	r.version = S("v");
	proto_json_refresh_result(&b, 12, &r);
	expect(&b, "{\"id\":12,\"refresh\":{\"client\":\"c\",\"version\":\"v\","
	    "\"expires\":true,\"ttl\":3600}}");
	memset(&r, 0, sizeof(r));
	proto_json_refresh_result(&b, 12, &r);
	expect(&b, "{\"id\":12,\"refresh\":{}}");
	proto_json_sub_refresh_result(&b, 12, true, 3600);
	expect(&b, "{\"id\":12,\"sub_refresh\":{\"expires\":true,\"ttl\":3600}}");
	proto_json_sub_refresh_result(&b, 12, false, 0);
	expect(&b, "{\"id\":12,\"sub_refresh\":{}}");
	buf_free(&b);
}
END_TEST

START_TEST(test_encode_push_pub)
{
	struct buf b = BUF_INIT;
	struct proto_publication pub;
	struct proto_push push;
	struct proto_tag tags[2] = {
		{ S("k1"), S("v1") }, { S("k\"2"), S("") },
	};

	memset(&pub, 0, sizeof(pub));
	pub.data = S("{\"text\":\"hello\"}");
	pub.has_info = true;
	pub.info = info7;
	pub.offset = 42;
	proto_json_push_pub(&b, S("chat:1"), &pub);
	expect(&b, "{\"push\":{\"channel\":\"chat:1\",\"pub\":{\"data\":{\"text\":\"hello\"},"
	    "\"info\":{\"user\":\"7\",\"client\":\"a1b2c3d4-0000-4000-8000-000000000001\"},"
	    "\"offset\":42}}}");

	memset(&push, 0, sizeof(push));
	push.type = PROTO_PUSH_PUB;
	push.channel = S("chat:1");
	push.pub = &pub;
	proto_json_push(&b, &push);
	expect(&b, "{\"push\":{\"channel\":\"chat:1\",\"pub\":{\"data\":{\"text\":\"hello\"},"
	    "\"info\":{\"user\":\"7\",\"client\":\"a1b2c3d4-0000-4000-8000-000000000001\"},"
	    "\"offset\":42}}}");

	/* §8.5 bare push on uni transports. */
	memset(&pub, 0, sizeof(pub));
	pub.data = S("{\"x\":1}");
	push.channel = S("#42");
	proto_json_push_bare(&b, &push);
	expect(&b, "{\"channel\":\"#42\",\"pub\":{\"data\":{\"x\":1}}}");

	/* Tags, epoch, escaping, newline stripping. */
	memset(&pub, 0, sizeof(pub));
	pub.data = S("{\n  \"a\": \"b\"\n}\n");
	pub.offset = 1;
	pub.tags = tags;
	pub.ntags = 2;
	pub.epoch = S("abcd");
	proto_json_push_pub(&b, S("ch\"x"), &pub);
	expect(&b, "{\"push\":{\"channel\":\"ch\\\"x\",\"pub\":{\"data\":{  \"a\": \"b\"},"
	    "\"offset\":1,\"tags\":{\"k1\":\"v1\",\"k\\\"2\":\"\"},\"epoch\":\"abcd\"}}}");

	/* Channel-less, data-less publication. */
	memset(&pub, 0, sizeof(pub));
	proto_json_push_pub(&b, PROTO_SPAN_NULL, &pub);
	expect(&b, "{\"push\":{\"pub\":{}}}");
	buf_free(&b);
}
END_TEST

START_TEST(test_encode_push_delta_8_6)
{
	struct buf b = BUF_INIT;
	struct proto_publication pub;

	memset(&pub, 0, sizeof(pub));
	pub.data = S("{\"count\":1,\"name\":\"alpha\"}");
	pub.data_string = true;
	pub.offset = 11;
	proto_json_push_pub(&b, S("doc:1"), &pub);
	expect(&b, "{\"push\":{\"channel\":\"doc:1\",\"pub\":{\"data\":"
	    "\"{\\\"count\\\":1,\\\"name\\\":\\\"alpha\\\"}\",\"offset\":11}}}");

	pub.data = S("Q\n9@0,1:2G@A,1AI~kQ;");
	pub.offset = 12;
	pub.delta = true;
	proto_json_push_pub(&b, S("doc:1"), &pub);
	expect(&b, "{\"push\":{\"channel\":\"doc:1\",\"pub\":{\"data\":"
	    "\"Q\\n9@0,1:2G@A,1AI~kQ;\",\"offset\":12,\"delta\":true}}}");
	buf_free(&b);
}
END_TEST

START_TEST(test_encode_other_pushes)
{
	struct buf b = BUF_INIT;
	struct proto_push push;
	struct proto_subscribe_result sr;
	struct proto_connect_result cr;
	struct proto_sub_entry subs[2];
	struct proto_client_info ci = {
		.user = S("42"), .client = S("c1"), .conn_info = S("{\"a\":1}"),
		.chan_info = S("\"x\""),
	};

	memset(&push, 0, sizeof(push));
	push.type = PROTO_PUSH_JOIN;
	push.channel = S("chat:1");
	push.info = &ci;
	proto_json_push(&b, &push);
	expect(&b, "{\"push\":{\"channel\":\"chat:1\",\"join\":{\"info\":{\"user\":\"42\","
	    "\"client\":\"c1\",\"conn_info\":{\"a\":1},\"chan_info\":\"x\"}}}}");
	push.type = PROTO_PUSH_LEAVE;
	proto_json_push(&b, &push);
	expect(&b, "{\"push\":{\"channel\":\"chat:1\",\"leave\":{\"info\":{\"user\":\"42\","
	    "\"client\":\"c1\",\"conn_info\":{\"a\":1},\"chan_info\":\"x\"}}}}");

	memset(&push, 0, sizeof(push));
	push.type = PROTO_PUSH_UNSUBSCRIBE;
	push.channel = S("chat:1");
	push.code = PROTO_UNSUB_SERVER;
	push.reason = S(proto_unsub_reason(PROTO_UNSUB_SERVER));
	proto_json_push(&b, &push);
	expect(&b, "{\"push\":{\"channel\":\"chat:1\",\"unsubscribe\":{\"code\":2000,"
	    "\"reason\":\"server unsubscribe\"}}}");

	memset(&push, 0, sizeof(push));
	push.type = PROTO_PUSH_MESSAGE;
	push.data = S("{\"hello\":\"world\"}");
	proto_json_push(&b, &push);
	expect(&b, "{\"push\":{\"message\":{\"data\":{\"hello\":\"world\"}}}}");

	memset(&sr, 0, sizeof(sr));
	sr.recoverable = true;
	sr.positioned = true;
	sr.epoch = S("e1");
	sr.offset = 7;
	sr.expires = true;      /* not part of the push */
	sr.data = S("{\"d\":1}");
	memset(&push, 0, sizeof(push));
	push.type = PROTO_PUSH_SUBSCRIBE;
	push.channel = S("news");
	push.subscribe = &sr;
	proto_json_push(&b, &push);
	expect(&b, "{\"push\":{\"channel\":\"news\",\"subscribe\":{\"recoverable\":true,"
	    "\"epoch\":\"e1\",\"offset\":7,\"positioned\":true,\"data\":{\"d\":1}}}}");
	push.subscribe = NULL;
	proto_json_push(&b, &push);
	expect(&b, "{\"push\":{\"channel\":\"news\",\"subscribe\":{}}}");

	memset(&push, 0, sizeof(push));
	push.type = PROTO_PUSH_DISCONNECT;
	push.code = PROTO_DISCONNECT_SHUTDOWN;
	push.reason = S(proto_disconnect_reason(PROTO_DISCONNECT_SHUTDOWN));
	proto_json_push(&b, &push);
	expect(&b, "{\"push\":{\"disconnect\":{\"code\":3001,\"reason\":\"shutdown\"}}}");
	proto_json_push_bare(&b, &push);
	expect(&b, "{\"disconnect\":{\"code\":3001,\"reason\":\"shutdown\"}}");

	memset(&push, 0, sizeof(push));
	push.type = PROTO_PUSH_REFRESH;
	push.expires = true;
	push.ttl = 10;
	proto_json_push(&b, &push);
	expect(&b, "{\"push\":{\"refresh\":{\"expires\":true,\"ttl\":10}}}");

	/* §8.5 connect push (uni). */
	memset(subs, 0, sizeof(subs));
	subs[0].channel = S("#42");
	subs[1].channel = S("news");
	memset(&cr, 0, sizeof(cr));
	cr.client = S("C2");
	cr.version = S("6.1.0 OSS");
	cr.subs = subs;
	cr.nsubs = 2;
	cr.ping = 25;
	cr.session = S("S2");
	memset(&push, 0, sizeof(push));
	push.type = PROTO_PUSH_CONNECT;
	push.connect = &cr;
	proto_json_push_bare(&b, &push);
	expect(&b, "{\"connect\":{\"client\":\"C2\",\"version\":\"6.1.0 OSS\","
	    "\"subs\":{\"#42\":{},\"news\":{}},\"ping\":25,\"session\":\"S2\"}}");
	/* Connect push field order: data and subs before expires/ttl. */
	cr.expires = true;
	cr.ttl = 5;
	cr.data = S("1");
	cr.nsubs = 0;
	proto_json_push_bare(&b, &push);
	expect(&b, "{\"connect\":{\"client\":\"C2\",\"version\":\"6.1.0 OSS\",\"data\":1,"
	    "\"expires\":true,\"ttl\":5,\"ping\":25,\"session\":\"S2\"}}");
	buf_free(&b);
}
END_TEST

START_TEST(test_encode_appends)
{
	/* Encoders append; the transport joins messages with '\n'. */
	struct buf b = BUF_INIT;

	proto_json_empty_result(&b, 3, PROTO_CMD_PUBLISH);
	buf_putc(&b, '\n');
	proto_json_ping(&b);
	ck_assert_uint_eq(b.len, strlen("{\"id\":3,\"publish\":{}}\n{}"));
	ck_assert(memcmp(b.data, "{\"id\":3,\"publish\":{}}\n{}", b.len) == 0);
	buf_free(&b);
}
END_TEST

START_TEST(test_encode_invalid_utf8_string)
{
	/* A string field with invalid UTF-8 still yields valid JSON. */
	struct buf b = BUF_INIT;
	struct proto_publication pub;

	memset(&pub, 0, sizeof(pub));
	pub.data = S("a\xff");
	pub.data_string = true;
	proto_json_push_pub(&b, S("c\x01"), &pub);
	expect(&b, "{\"push\":{\"channel\":\"c\\u0001\",\"pub\":{\"data\":\"a\xef\xbf\xbd\"}}}");
	buf_free(&b);
}
END_TEST

START_TEST(test_roundtrip_decode_of_encoded_connect)
{
	/* What we encode must be parseable by our own scanner as one object
	 * with the keys centrifuge-js reads. */
	struct buf b = BUF_INIT;
	struct proto_connect_result r = {
		.client = S("c\\1"), .ping = 25, .pong = true,
	};
	struct json_iter it;
	struct json_val k, v;
	int n = 0;

	proto_json_connect_result(&b, 1, &r);
	ck_assert_int_eq(json_iter_init(&it, b.data, b.len), 0);
	while (json_iter_next(&it, &k, &v) == 1)
		n++;
	ck_assert_int_eq(n, 2);
	ck_assert_uint_eq(json_iter_end(&it), b.len);
	buf_free(&b);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Code tables.                                                        */

START_TEST(test_code_tables)
{
	ck_assert_str_eq(proto_error_message(PROTO_ERR_PERMISSION_DENIED),
	    "permission denied");
	ck_assert_str_eq(proto_error_message(100), "internal server error");
	ck_assert_str_eq(proto_error_message(112), "unrecoverable position");
	ck_assert_str_eq(proto_error_message(113), "concurrent pagination");
	ck_assert_ptr_null(proto_error_message(0));
	ck_assert_ptr_null(proto_error_message(400));
	ck_assert(proto_error_temporary(100));
	ck_assert(proto_error_temporary(111));
	ck_assert(!proto_error_temporary(103));

	ck_assert_str_eq(proto_disconnect_reason(PROTO_DISCONNECT_BAD_REQUEST),
	    "bad request");
	ck_assert_str_eq(proto_disconnect_reason(3001), "shutdown");
	ck_assert_str_eq(proto_disconnect_reason(3004), "internal server error");
	ck_assert_str_eq(proto_disconnect_reason(3503), "force disconnect");
	ck_assert_str_eq(proto_disconnect_reason(3506), "inappropriate protocol");
	ck_assert_str_eq(proto_disconnect_reason(3508), "not available");
	ck_assert_ptr_null(proto_disconnect_reason(4000));
	ck_assert(proto_disconnect_reconnect(3001));
	ck_assert(proto_disconnect_reconnect(3012));
	ck_assert(proto_disconnect_reconnect(4499));
	ck_assert(!proto_disconnect_reconnect(3501));
	ck_assert(!proto_disconnect_reconnect(4500));
	ck_assert(!proto_disconnect_reconnect(1009));
	ck_assert(proto_disconnect_reconnect(1006));

	ck_assert_str_eq(proto_unsub_reason(2500), "insufficient state");
	ck_assert_str_eq(proto_unsub_reason(2501), "subscription expired");
	ck_assert_ptr_null(proto_unsub_reason(2999));

	ck_assert_str_eq(proto_cmd_name(PROTO_CMD_PRESENCE_STATS), "presence_stats");
	ck_assert_str_eq(proto_cmd_name(PROTO_CMD_SUB_REFRESH), "sub_refresh");
	ck_assert_str_eq(proto_cmd_name(PROTO_CMD_NONE), "none");
	ck_assert_str_eq(proto_cmd_name((enum proto_cmd_type)77), "none");
}
END_TEST

static Suite *
proto_suite(void)
{
	Suite *s = suite_create("proto");
	TCase *dec = tcase_create("decode");
	TCase *enc = tcase_create("encode");
	TCase *codes = tcase_create("codes");

	tcase_set_timeout(dec, 10);
	tcase_add_checked_fixture(dec, setup, teardown);
	tcase_add_test(dec, test_decode_first_frame_8_1);
	tcase_add_test(dec, test_decode_connect_subs_4_2);
	tcase_add_test(dec, test_decode_connect_many_subs);
	tcase_add_test(dec, test_decode_subscribe_4_5_1);
	tcase_add_test(dec, test_decode_other_requests);
	tcase_add_test(dec, test_decode_pong_and_ping);
	tcase_add_test(dec, test_decode_dispatch_order);
	tcase_add_test(dec, test_decode_duplicates_last_wins);
	tcase_add_test(dec, test_decode_null_members);
	tcase_add_test(dec, test_decode_unknown_keys);
	tcase_add_test(dec, test_decode_data_types_verbatim);
	tcase_add_test(dec, test_decode_escaped_strings);
	tcase_add_test(dec, test_decode_many_escapes_one_line);
	tcase_add_test(dec, test_framing);
	tcase_add_test(dec, test_pretty_json_split_by_newlines);
	tcase_add_test(dec, test_decode_malformed);
	tcase_add_test(dec, test_decode_wrong_types);
	tcase_add_test(dec, test_decode_deep_nesting);
	tcase_add_test(dec, test_decode_error_offset);
	tcase_add_test(dec, test_decode_truncations);
	tcase_add_test(dec, test_decode_mutations);
	suite_add_tcase(s, dec);

	tcase_set_timeout(enc, 10);
	tcase_add_test(enc, test_encode_ping_and_errors);
	tcase_add_test(enc, test_encode_connect_result);
	tcase_add_test(enc, test_encode_subscribe_result);
	tcase_add_test(enc, test_encode_empty_results);
	tcase_add_test(enc, test_encode_presence);
	tcase_add_test(enc, test_encode_history);
	tcase_add_test(enc, test_encode_rpc_refresh);
	tcase_add_test(enc, test_encode_push_pub);
	tcase_add_test(enc, test_encode_push_delta_8_6);
	tcase_add_test(enc, test_encode_other_pushes);
	tcase_add_test(enc, test_encode_appends);
	tcase_add_test(enc, test_encode_invalid_utf8_string);
	tcase_add_test(enc, test_roundtrip_decode_of_encoded_connect);
	suite_add_tcase(s, enc);

	tcase_set_timeout(codes, 10);
	tcase_add_test(codes, test_code_tables);
	suite_add_tcase(s, codes);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(proto_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
