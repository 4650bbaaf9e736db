/*
 * msg.h - the records of the shared-memory bus, encoded with msgpack.
 *
 * Request ring (worker -> broker): HELLO, PUBLISH.
 * Reply ring (broker -> worker): PUBLISH_RESULT.
 * Fan-out ring (broker -> every worker): PUB.
 *
 * A record is a msgpack array: [type, field...]; the field list per type is
 * fixed in msg.c.  Decoded strings point into the record bytes (zero copy),
 * so a decoded struct msg lives only as long as the record buffer.  `data`,
 * `conn_info` and `chan_info` are raw payload bytes passed through untouched.
 */
#ifndef CENTRIFUGO_MSG_H
#define CENTRIFUGO_MSG_H

#include <stddef.h>
#include <stdint.h>

struct buf;

enum msg_type {
	MSG_NONE = 0,
	MSG_HELLO,            /* a worker (re)started: forget its old state */
	MSG_PUBLISH,          /* publish into a channel; answered by PUBLISH_RESULT */
	MSG_PUBLISH_RESULT,   /* error code, offset and epoch of a publish */
	MSG_PUB,              /* a publication to deliver to local subscribers */
	MSG_TYPE_MAX
};

struct msg_str {
	const char *p;
	uint32_t len;
};

#define MSG_MAX_TAGS 64

struct msg {
	enum msg_type type;
	uint64_t req_id;          /* PUBLISH, PUBLISH_RESULT */
	uint32_t worker;          /* HELLO */
	uint32_t generation;      /* HELLO */
	uint32_t error;           /* PUBLISH_RESULT: 0 or a protocol error code */
	struct msg_str channel;   /* PUBLISH, PUB */
	struct msg_str data;      /* PUBLISH, PUB */
	int has_info;             /* PUBLISH, PUB: publisher's ClientInfo present */
	struct msg_str user, client, conn_info, chan_info;
	uint32_t ntags;           /* PUBLISH, PUB: key/value pairs in tags[] */
	struct msg_str tags[2 * MSG_MAX_TAGS];
	int64_t history_size;     /* PUBLISH: 0 = no history */
	int64_t history_ttl_ms;   /* PUBLISH */
	int64_t history_meta_ttl_ms;   /* PUBLISH */
	uint64_t offset;          /* PUBLISH_RESULT, PUB: 0 when no history */
	struct msg_str epoch;     /* PUBLISH_RESULT, PUB */
};

/* Appends the encoding of m to out (replacing nothing). */
void msg_encode(const struct msg *m, struct buf *out);
/* Decodes one record; returns 0, or -1 for a malformed record. */
int msg_decode(const void *rec, size_t len, struct msg *m);
const char *msg_type_name(enum msg_type t);

#endif
