/*
 * proto_pb.c - client protocol Protobuf codec (see proto_pb.h).
 *
 * Runs in the workers.  The schema is src/client.proto; protoc-c generates
 * client.pb-c.c/h from it into the build tree.
 *
 * Encoding fills the generated structs (on the stack; arrays and C-string
 * copies of spans in a per-process scratch area that is reset after every
 * message and keeps its memory) and packs them with protobuf-c, which emits
 * fields in number order, omits proto3 zero values and writes a non-NULL
 * message field that is empty as tag + 0x00, as §3.1 requires.  Map entries
 * always carry their value message, as the Go encoder does.
 *
 * Decoding is hand-written on purpose, walking the wire format against the
 * generated descriptors (known field <=> descriptor, expected wire type from
 * the descriptor's type, UTF-8 check on string fields), because
 * protobuf_c_message_unpack() cannot give what proto.h promises: it copies
 * every string and bytes field into allocated memory (spans must point into
 * the frame), turns strings into C strings (a string holding U+0000 would
 * be cut), and does not check UTF-8.  Known message fields the server does
 * not use (tf, headers, dict, track) are still validated, so what a full
 * proto3 decoder rejects (broken wire data, wrong wire type for a known
 * field, invalid UTF-8 in a string) is rejected wherever it sits; unknown
 * fields, deprecated groups included, are skipped without looking inside.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <protobuf-c/protobuf-c.h>

#include "buf.h"
#include "client.pb-c.h"
#include "json.h"
#include "log.h"
#include "proto.h"
#include "proto_pb.h"
#include "xmalloc.h"

/* Generated names, shortened. */
#define PB_T(name) Centrifugal__Centrifuge__Protocol__##name
#define PB_INIT(NAME) CENTRIFUGAL__CENTRIFUGE__PROTOCOL__##NAME##__INIT
#define PB_DESC(name) centrifugal__centrifuge__protocol__##name##__descriptor

#define PB_MAX_DEPTH 64                 /* nested messages in a command */
#define PB_MAX_FIELD ((1u << 29) - 1)

enum pb_wire {
	PB_WIRE_VARINT = 0,
	PB_WIRE_FIXED64 = 1,
	PB_WIRE_LEN = 2,
	PB_WIRE_SGROUP = 3,
	PB_WIRE_EGROUP = 4,
	PB_WIRE_FIXED32 = 5
};

/* ------------------------------------------------------------------ */
/* Decoding.                                                           */

struct pb_dec {
	struct proto_reader *rd;
};

/* One message being walked: bytes p[0..len) and the schema they follow. */
struct pb_msg {
	const char *p;
	size_t len;
	size_t pos;
	const ProtobufCMessageDescriptor *desc;
	int depth;
};

/* One known field (unknown ones are skipped inside pb_next()). */
struct pb_field {
	uint32_t num;
	unsigned wire;
	const ProtobufCFieldDescriptor *fd;
	uint64_t v;                     /* varint / fixed value */
	struct proto_span s;            /* length-delimited content */
	const char *at;                 /* where the field starts, for errors */
};

static int
pb_fail(struct pb_dec *d, const char *at, const char *msg)
{
	struct proto_reader *rd = d->rd;

	rd->failed = true;
	rd->err = msg;
	rd->err_off = at ? (size_t)(at - rd->p) : rd->pos;
	return -1;
}

/*
 * Base-128 varint at p[*pos..len) (protowire rules: at most 10 bytes, the
 * 10th at most 1).  Returns 0 and advances *pos, -1 if truncated or too long.
 */
static int
pb_varint(const char *p, size_t len, size_t *pos, uint64_t *v)
{
	const unsigned char *s = (const unsigned char *)p;
	uint64_t r = 0;
	size_t i = *pos;
	unsigned shift;

	for (shift = 0; shift < 64; shift += 7) {
		if (i >= len)
			return -1;
		if (shift == 63 && s[i] > 1)
			return -1;
		r |= (uint64_t)(s[i] & 0x7f) << shift;
		if ((s[i++] & 0x80) == 0) {
			*pos = i;
			*v = r;
			return 0;
		}
	}
	return -1;
}

/* Wire type a field of this type is written with (not packed). */
static unsigned
pb_type_wire(ProtobufCType t)
{
	switch (t) {
	case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_FIXED32:
	case PROTOBUF_C_TYPE_FLOAT:
		return PB_WIRE_FIXED32;
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_FIXED64:
	case PROTOBUF_C_TYPE_DOUBLE:
		return PB_WIRE_FIXED64;
	case PROTOBUF_C_TYPE_STRING:
	case PROTOBUF_C_TYPE_BYTES:
	case PROTOBUF_C_TYPE_MESSAGE:
		return PB_WIRE_LEN;
	default:
		return PB_WIRE_VARINT;
	}
}

static int pb_skip_group(struct pb_dec *d, struct pb_msg *m, uint32_t num,
    int depth);

/*
 * Reads the value of a field with wire type `wire` at m->pos into f.
 * Groups (deprecated, only possible for unknown fields here) are skipped.
 */
static int
pb_value(struct pb_dec *d, struct pb_msg *m, unsigned wire, uint32_t num,
    struct pb_field *f, int depth)
{
	uint64_t n;

	switch (wire) {
	case PB_WIRE_VARINT:
		if (pb_varint(m->p, m->len, &m->pos, &f->v) < 0)
			return pb_fail(d, f->at, "broken varint");
		return 0;
	case PB_WIRE_FIXED64:
	case PB_WIRE_FIXED32:
		n = wire == PB_WIRE_FIXED64 ? 8 : 4;
		if (m->len - m->pos < n)
			return pb_fail(d, f->at, "truncated fixed-size field");
		f->v = 0;
		memcpy(&f->v, m->p + m->pos, n);        /* little-endian host */
		m->pos += n;
		return 0;
	case PB_WIRE_LEN:
		if (pb_varint(m->p, m->len, &m->pos, &n) < 0)
			return pb_fail(d, f->at, "broken length varint");
		if (n > m->len - m->pos)
			return pb_fail(d, f->at, "field length beyond its message");
		f->s.p = m->p + m->pos;
		f->s.len = (size_t)n;
		m->pos += (size_t)n;
		return 0;
	case PB_WIRE_SGROUP:
		return pb_skip_group(d, m, num, depth + 1);
	case PB_WIRE_EGROUP:
		return pb_fail(d, f->at, "unexpected end-group");
	default:
		return pb_fail(d, f->at, "invalid wire type");
	}
}

/* Skips the fields of a group up to its end-group tag. */
static int
pb_skip_group(struct pb_dec *d, struct pb_msg *m, uint32_t num, int depth)
{
	struct pb_field f;
	uint64_t tag;

	if (depth > PB_MAX_DEPTH)
		return pb_fail(d, m->p + m->pos, "nesting too deep");
	for (;;) {
		f.at = m->p + m->pos;
		if (m->pos >= m->len)
			return pb_fail(d, f.at, "unterminated group");
		if (pb_varint(m->p, m->len, &m->pos, &tag) < 0)
			return pb_fail(d, f.at, "broken tag varint");
		if ((tag >> 3) == 0 || (tag >> 3) > PB_MAX_FIELD)
			return pb_fail(d, f.at, "invalid field number");
		if ((tag & 7) == PB_WIRE_EGROUP) {
			if ((tag >> 3) != num)
				return pb_fail(d, f.at, "mismatched end-group");
			return 0;
		}
		if (pb_value(d, m, (unsigned)(tag & 7), (uint32_t)(tag >> 3), &f,
		    depth) < 0)
			return -1;
	}
}

/*
 * Next known field of m: 1 with *f filled (wire type checked against the
 * descriptor, strings checked for UTF-8), 0 at the end, -1 malformed.
 * Unknown fields are skipped.  Nested messages are not looked into: the
 * caller decodes them or passes them to pb_check().
 */
static int
pb_next(struct pb_dec *d, struct pb_msg *m, struct pb_field *f)
{
	uint64_t tag;

	for (;;) {
		if (m->pos >= m->len)
			return 0;
		f->at = m->p + m->pos;
		if (pb_varint(m->p, m->len, &m->pos, &tag) < 0)
			return pb_fail(d, f->at, "broken tag varint");
		if ((tag >> 3) == 0 || (tag >> 3) > PB_MAX_FIELD)
			return pb_fail(d, f->at, "invalid field number");
		f->num = (uint32_t)(tag >> 3);
		f->wire = (unsigned)(tag & 7);
		f->fd = protobuf_c_message_descriptor_get_field(m->desc, f->num);
		f->s = PROTO_SPAN_NULL;
		f->v = 0;
		if (f->fd != NULL && f->wire != pb_type_wire(f->fd->type) &&
		    !(f->wire == PB_WIRE_LEN &&
		    f->fd->label == PROTOBUF_C_LABEL_REPEATED &&
		    pb_type_wire(f->fd->type) != PB_WIRE_LEN))
			return pb_fail(d, f->at, "wrong wire type for a known field");
		if (pb_value(d, m, f->wire, f->num, f, m->depth) < 0)
			return -1;
		if (f->fd == NULL)
			continue;
		if (f->fd->type == PROTOBUF_C_TYPE_STRING &&
		    !json_utf8_valid(f->s.p, f->s.len))
			return pb_fail(d, f->at, "invalid UTF-8 in a string field");
		return 1;
	}
}

static void
pb_sub(struct pb_msg *sub, const struct pb_msg *parent,
    const struct pb_field *f, const ProtobufCMessageDescriptor *desc)
{
	sub->p = f->s.p;
	sub->len = f->s.len;
	sub->pos = 0;
	sub->desc = desc;
	sub->depth = parent->depth + 1;
}

/* Validates a whole message against its descriptor, recursively. */
static int
pb_check(struct pb_dec *d, struct pb_msg *m)
{
	struct pb_field f;
	struct pb_msg sub;
	int rc;

	if (m->depth > PB_MAX_DEPTH)
		return pb_fail(d, m->p, "nesting too deep");
	while ((rc = pb_next(d, m, &f)) == 1) {
		if (f.fd->type != PROTOBUF_C_TYPE_MESSAGE)
			continue;
		pb_sub(&sub, m, &f, f.fd->descriptor);
		if (pb_check(d, &sub) < 0)
			return -1;
	}
	return rc;
}

/* A known field the decoder does not use: validate it if it is a message. */
static int
pb_other(struct pb_dec *d, const struct pb_msg *m, const struct pb_field *f)
{
	struct pb_msg sub;

	if (f->fd->type != PROTOBUF_C_TYPE_MESSAGE)
		return 0;
	pb_sub(&sub, m, f, f->fd->descriptor);
	return pb_check(d, &sub);
}

/* Walks the fields of message `f` (a field of `parent`) with BODY run for
 * each known field: `sf` is the field, `sm` the message; BODY sets rc < 0 on
 * error and falls back to pb_other() for fields it does not handle. */
#define PB_FOR_FIELDS(d, parent, f, desc, BODY) do {                      \
	struct pb_msg sm;                                                 \
	struct pb_field sf;                                               \
	int nrc;                                                          \
	pb_sub(&sm, (parent), (f), (desc));                               \
	if (sm.depth > PB_MAX_DEPTH)                                      \
		return pb_fail((d), sm.p, "nesting too deep");            \
	while ((nrc = pb_next((d), &sm, &sf)) == 1) {                     \
		int rc = 0;                                               \
		switch (sf.num) {                                         \
		BODY                                                      \
		default:                                                  \
			rc = pb_other((d), &sm, &sf);                     \
			break;                                            \
		}                                                         \
		if (rc < 0)                                               \
			return -1;                                        \
	}                                                                 \
	if (nrc < 0)                                                      \
		return -1;                                                \
} while (0)

#define PB_U32(f) ((uint32_t)(f).v)
#define PB_I32(f) ((int32_t)(uint32_t)(f).v)
#define PB_I64(f) ((int64_t)(f).v)
#define PB_BOOL(f) ((f).v != 0)

/* SubscribeRequest (also the value of ConnectRequest.subs). */
static int
pb_dec_subscribe(struct pb_dec *d, const struct pb_msg *m,
    const struct pb_field *f, struct proto_subscribe_req *r)
{
	PB_FOR_FIELDS(d, m, f, &PB_DESC(subscribe_request),
		case 1: r->channel = sf.s; break;
		case 2: r->token = sf.s; break;
		case 3: r->recover = PB_BOOL(sf); break;
		case 6: r->epoch = sf.s; break;
		case 7: r->offset = sf.v; break;
		case 8: r->data = sf.s; break;
		case 9: r->positioned = PB_BOOL(sf); break;
		case 10: r->recoverable = PB_BOOL(sf); break;
		case 11: r->join_leave = PB_BOOL(sf); break;
		case 12: r->delta = sf.s; break;
		case 13:
			r->has_tf = true;
			r->tf = sf.s;
			rc = pb_other(d, &sm, &sf);
			break;
		case 14: r->flag = PB_I64(sf); break;
		case 15: r->type = PB_I32(sf); break;
	);
	return 0;
}

/* Appends one ConnectRequest.subs entry (key 1, value 2) to rd->subs. */
static int
pb_dec_connect_sub(struct pb_dec *d, const struct pb_msg *m,
    const struct pb_field *f, size_t *nsubs)
{
	struct proto_reader *rd = d->rd;
	struct proto_connect_sub *s;
	struct proto_span key = PROTO_SPAN_NULL;

	if (*nsubs == rd->subs_cap) {
		rd->subs_cap = rd->subs_cap ? rd->subs_cap * 2 : 8;
		rd->subs = xrealloc(rd->subs, rd->subs_cap * sizeof(*rd->subs));
	}
	s = &rd->subs[*nsubs];
	memset(s, 0, sizeof(*s));
	PB_FOR_FIELDS(d, m, f, &PB_DESC(connect_request__subs_entry),
		case 1: key = sf.s; break;
		case 2: rc = pb_dec_subscribe(d, &sm, &sf, &s->req); break;
	);
	s->req.channel = key;
	(*nsubs)++;
	return 0;
}

static int
pb_dec_connect(struct pb_dec *d, const struct pb_msg *m,
    const struct pb_field *f, struct proto_connect_req *r)
{
	size_t nsubs = r->nsubs;        /* a second connect field merges */

	PB_FOR_FIELDS(d, m, f, &PB_DESC(connect_request),
		case 1: r->token = sf.s; break;
		case 2: r->data = sf.s; break;
		case 3: rc = pb_dec_connect_sub(d, &sm, &sf, &nsubs); break;
		case 4: r->name = sf.s; break;
		case 5: r->version = sf.s; break;
	);
	/* rd->subs may have moved while growing: take the pointer at the end. */
	r->subs = nsubs ? d->rd->subs : NULL;
	r->nsubs = nsubs;
	return 0;
}

/* unsubscribe, presence, presence_stats: field 1 channel. */
static int
pb_dec_channel(struct pb_dec *d, const struct pb_msg *m,
    const struct pb_field *f, const ProtobufCMessageDescriptor *desc,
    struct proto_channel_req *r)
{
	PB_FOR_FIELDS(d, m, f, desc,
		case 1: r->channel = sf.s; break;
	);
	return 0;
}

static int
pb_dec_publish(struct pb_dec *d, const struct pb_msg *m,
    const struct pb_field *f, struct proto_publish_req *r)
{
	PB_FOR_FIELDS(d, m, f, &PB_DESC(publish_request),
		case 1: r->channel = sf.s; break;
		case 2: r->data = sf.s; break;
		case 3: r->type = PB_I32(sf); break;
	);
	return 0;
}

static int
pb_dec_since(struct pb_dec *d, const struct pb_msg *m,
    const struct pb_field *f, struct proto_history_req *r)
{
	r->has_since = true;
	PB_FOR_FIELDS(d, m, f, &PB_DESC(stream_position),
		case 1: r->since_offset = sf.v; break;
		case 2: r->since_epoch = sf.s; break;
	);
	return 0;
}

static int
pb_dec_history(struct pb_dec *d, const struct pb_msg *m,
    const struct pb_field *f, struct proto_history_req *r)
{
	PB_FOR_FIELDS(d, m, f, &PB_DESC(history_request),
		case 1: r->channel = sf.s; break;
		case 7: r->limit = PB_I32(sf); break;
		case 8: rc = pb_dec_since(d, &sm, &sf, r); break;
		case 9: r->reverse = PB_BOOL(sf); break;
	);
	return 0;
}

static int
pb_dec_rpc(struct pb_dec *d, const struct pb_msg *m,
    const struct pb_field *f, struct proto_rpc_req *r)
{
	PB_FOR_FIELDS(d, m, f, &PB_DESC(rpcrequest),
		case 1: r->data = sf.s; break;
		case 2: r->method = sf.s; break;
	);
	return 0;
}

static int
pb_dec_send(struct pb_dec *d, const struct pb_msg *m,
    const struct pb_field *f, struct proto_send_req *r)
{
	PB_FOR_FIELDS(d, m, f, &PB_DESC(send_request),
		case 1: r->data = sf.s; break;
	);
	return 0;
}

static int
pb_dec_refresh(struct pb_dec *d, const struct pb_msg *m,
    const struct pb_field *f, struct proto_refresh_req *r)
{
	PB_FOR_FIELDS(d, m, f, &PB_DESC(refresh_request),
		case 1: r->token = sf.s; break;
	);
	return 0;
}

static int
pb_dec_sub_refresh(struct pb_dec *d, const struct pb_msg *m,
    const struct pb_field *f, struct proto_sub_refresh_req *r)
{
	PB_FOR_FIELDS(d, m, f, &PB_DESC(sub_refresh_request),
		case 1: r->channel = sf.s; break;
		case 2: r->token = sf.s; break;
		case 3: r->type = PB_I32(sf); break;
	);
	return 0;
}

/* Command field number -> request kind (§3.2). */
static enum proto_cmd_type
pb_cmd_kind(uint32_t num)
{
	static const enum proto_cmd_type kinds[16] = {
		[4] = PROTO_CMD_CONNECT, [5] = PROTO_CMD_SUBSCRIBE,
		[6] = PROTO_CMD_UNSUBSCRIBE, [7] = PROTO_CMD_PUBLISH,
		[8] = PROTO_CMD_PRESENCE, [9] = PROTO_CMD_PRESENCE_STATS,
		[10] = PROTO_CMD_HISTORY, [11] = PROTO_CMD_PING,
		[12] = PROTO_CMD_SEND, [13] = PROTO_CMD_RPC,
		[14] = PROTO_CMD_REFRESH, [15] = PROTO_CMD_SUB_REFRESH,
	};

	return num < 16 ? kinds[num] : PROTO_CMD_NONE;
}

/* The request fields start zeroed (cmd is cleared per command); a second
 * occurrence merges into the first, as proto3 merges message fields. */
static int
pb_dec_command(struct pb_dec *d, struct pb_msg *m, struct proto_cmd *cmd)
{
	struct pb_field f;
	enum proto_cmd_type t;
	int rc;

	while ((rc = pb_next(d, m, &f)) == 1) {
		if (f.num == 1) {
			cmd->id = PB_U32(f);
			continue;
		}
		t = pb_cmd_kind(f.num);
		switch (t) {
		case PROTO_CMD_CONNECT:
			rc = pb_dec_connect(d, m, &f, &cmd->connect);
			break;
		case PROTO_CMD_SUBSCRIBE:
			rc = pb_dec_subscribe(d, m, &f, &cmd->subscribe);
			break;
		case PROTO_CMD_UNSUBSCRIBE:
			rc = pb_dec_channel(d, m, &f,
			    &PB_DESC(unsubscribe_request), &cmd->unsubscribe);
			break;
		case PROTO_CMD_PUBLISH:
			rc = pb_dec_publish(d, m, &f, &cmd->publish);
			break;
		case PROTO_CMD_PRESENCE:
			rc = pb_dec_channel(d, m, &f,
			    &PB_DESC(presence_request), &cmd->presence);
			break;
		case PROTO_CMD_PRESENCE_STATS:
			rc = pb_dec_channel(d, m, &f,
			    &PB_DESC(presence_stats_request),
			    &cmd->presence_stats);
			break;
		case PROTO_CMD_HISTORY:
			rc = pb_dec_history(d, m, &f, &cmd->history);
			break;
		case PROTO_CMD_RPC:
			rc = pb_dec_rpc(d, m, &f, &cmd->rpc);
			break;
		case PROTO_CMD_SEND:
			rc = pb_dec_send(d, m, &f, &cmd->send);
			break;
		case PROTO_CMD_REFRESH:
			rc = pb_dec_refresh(d, m, &f, &cmd->refresh);
			break;
		case PROTO_CMD_SUB_REFRESH:
			rc = pb_dec_sub_refresh(d, m, &f, &cmd->sub_refresh);
			break;
		default:        /* ping, and any field added to the schema */
			rc = pb_other(d, m, &f);
			break;
		}
		if (rc < 0)
			return -1;
		if (t != PROTO_CMD_NONE)
			cmd->present |= 1u << t;
	}
	return rc;
}

int
proto_pb_next(struct proto_reader *rd, struct proto_cmd *cmd)
{
	struct pb_dec d = { rd };
	struct pb_msg m;
	uint64_t n;
	size_t start;
	int t;

	if (rd->failed)
		return -1;
	if (rd->pos >= rd->len) {
		if (rd->ncmds == 0)
			return pb_fail(&d, rd->p, "empty frame");
		return 0;
	}
	start = rd->pos;
	if (pb_varint(rd->p, rd->len, &rd->pos, &n) < 0)
		return pb_fail(&d, rd->p + start, "broken message length varint");
	if (n > rd->len - rd->pos)
		return pb_fail(&d, rd->p + start, "message length beyond the frame");

	memset(cmd, 0, sizeof(*cmd));
	rd->arena.len = 0;
	m.p = rd->p + rd->pos;
	m.len = (size_t)n;
	m.pos = 0;
	m.desc = &PB_DESC(command);
	m.depth = 0;
	rd->pos += (size_t)n;
	if (pb_dec_command(&d, &m, cmd) < 0)
		return -1;
	for (t = PROTO_CMD_CONNECT; t < PROTO_CMD_COUNT; t++)
		if (proto_cmd_has(cmd, (enum proto_cmd_type)t))
			break;
	cmd->type = t < PROTO_CMD_COUNT ? (enum proto_cmd_type)t : PROTO_CMD_NONE;
	rd->ncmds++;
	return 1;
}

/* ------------------------------------------------------------------ */
/* Encoding scratch.                                                   */

/*
 * Bump allocator for the generated structs' arrays and the NUL-terminated
 * copies of string spans, for one message at a time.  Blocks never move
 * while a message is built (the structs point into them); a block that was
 * outgrown is chained and freed at the reset, so after a few messages one
 * block of the usual size serves every call without touching the heap.
 * Blocks over PB_SCRATCH_KEEP are not kept past the message that needed
 * them.  Per process; the workers are single-threaded.
 */
#define PB_SCRATCH_FIRST 4096
#define PB_SCRATCH_KEEP (256 * 1024)

struct pb_block {
	struct pb_block *prev;          /* outgrown during this message */
	size_t cap;
	size_t used;
	_Alignas(16) char mem[];
};

static struct pb_block *pb_scratch;

static void *
pb_alloc(size_t n)
{
	struct pb_block *b = pb_scratch;
	size_t cap;
	void *p;

	n = (n + 15) & ~(size_t)15;
	if (b == NULL || b->cap - b->used < n) {
		cap = b ? b->cap * 2 : PB_SCRATCH_FIRST;
		while (cap < n)
			cap *= 2;
		b = xmalloc(sizeof(*b) + cap);
		b->prev = pb_scratch;
		b->cap = cap;
		b->used = 0;
		pb_scratch = b;
	}
	p = b->mem + b->used;
	b->used += n;
	return p;
}

static void
pb_scratch_reset(void)
{
	struct pb_block *b = pb_scratch, *prev;

	if (b == NULL)
		return;
	while (b->prev != NULL) {
		prev = b->prev->prev;
		free(b->prev);
		b->prev = prev;
	}
	b->used = 0;
	if (b->cap > PB_SCRATCH_KEEP) {
		free(b);
		pb_scratch = NULL;
	}
}

/* C-string copy of a string span (protobuf-c packs strings with strlen). */
static char *
pb_str(struct proto_span s)
{
	char *p;

	if (s.len == 0)
		return (char *)protobuf_c_empty_string;
	p = pb_alloc(s.len + 1);
	memcpy(p, s.p, s.len);
	p[s.len] = '\0';
	return p;
}

/* bytes field over a span, no copy (packing only reads it). */
static ProtobufCBinaryData
pb_bytes(struct proto_span s)
{
	ProtobufCBinaryData b = { s.len, (uint8_t *)(uintptr_t)s.p };

	return b;
}

/* Appends varint(size) + the packed message, then resets the scratch. */
static void
pb_emit(struct buf *out, const ProtobufCMessage *msg)
{
	size_t n = protobuf_c_message_get_packed_size(msg), packed;
	unsigned char *dst;
	uint64_t v = n;

	buf_reserve(out, n + 10);
	dst = (unsigned char *)out->data + out->len;
	while (v >= 0x80) {
		*dst++ = (unsigned char)(v | 0x80);
		v >>= 7;
	}
	*dst++ = (unsigned char)v;
	packed = protobuf_c_message_pack(msg, dst);
	ASSERT(packed == n);
	out->len = (size_t)((char *)dst - out->data) + n;
	pb_scratch_reset();
}

/* ------------------------------------------------------------------ */
/* Filling the generated structs.                                      */

static void
pb_client_info(PB_T(ClientInfo) *ci, const struct proto_client_info *in)
{
	*ci = (PB_T(ClientInfo))PB_INIT(CLIENT_INFO);
	ci->user = pb_str(in->user);
	ci->client = pb_str(in->client);
	ci->conn_info = pb_bytes(in->conn_info);
	ci->chan_info = pb_bytes(in->chan_info);
}

/* ci: storage for the info message (used only when pub->has_info). */
static void
pb_publication(PB_T(Publication) *pp, PB_T(ClientInfo) *ci,
    const struct proto_publication *pub)
{
	PB_T(Publication__TagsEntry) *entries;
	size_t i;

	*pp = (PB_T(Publication))PB_INIT(PUBLICATION);
	pp->data = pb_bytes(pub->data);
	if (pub->has_info) {
		pb_client_info(ci, &pub->info);
		pp->info = ci;
	}
	pp->offset = pub->offset;
	if (pub->ntags > 0) {
		pp->tags = pb_alloc(pub->ntags * sizeof(*pp->tags));
		entries = pb_alloc(pub->ntags * sizeof(*entries));
		for (i = 0; i < pub->ntags; i++) {
			entries[i] = (PB_T(Publication__TagsEntry))
			    PB_INIT(PUBLICATION__TAGS_ENTRY);
			entries[i].key = pb_str(pub->tags[i].key);
			entries[i].value = pb_str(pub->tags[i].value);
			pp->tags[i] = &entries[i];
		}
		pp->n_tags = pub->ntags;
	}
	pp->delta = pub->delta;
	pp->epoch = pb_str(pub->epoch);
}

/* Array of n Publication messages in the scratch. */
static PB_T(Publication) **
pb_publications(const struct proto_publication *pubs, size_t n)
{
	PB_T(Publication) **arr, *pp;
	PB_T(ClientInfo) *ci;
	size_t i;

	if (n == 0)
		return NULL;
	arr = pb_alloc(n * sizeof(*arr));
	pp = pb_alloc(n * sizeof(*pp));
	ci = pb_alloc(n * sizeof(*ci));
	for (i = 0; i < n; i++) {
		pb_publication(&pp[i], &ci[i], &pubs[i]);
		arr[i] = &pp[i];
	}
	return arr;
}

static void
pb_subscribe_result(PB_T(SubscribeResult) *sr,
    const struct proto_subscribe_result *r)
{
	*sr = (PB_T(SubscribeResult))PB_INIT(SUBSCRIBE_RESULT);
	sr->expires = r->expires;
	sr->ttl = r->ttl;
	sr->recoverable = r->recoverable;
	sr->epoch = pb_str(r->epoch);
	sr->publications = pb_publications(r->publications, r->npublications);
	sr->n_publications = sr->publications ? r->npublications : 0;
	sr->recovered = r->recovered;
	sr->offset = r->offset;
	sr->positioned = r->positioned;
	sr->data = pb_bytes(r->data);
	sr->was_recovering = r->was_recovering;
	sr->delta = r->delta;
}

/* Map channel -> SubscribeResult of ConnectResult / Connect: both entry
 * types have the same layout (base, key, value; checked below), built as
 * ConnectResult's; `desc` is the entry descriptor of the message packed. */
_Static_assert(offsetof(PB_T(ConnectResult__SubsEntry), key) ==
    offsetof(PB_T(Connect__SubsEntry), key) &&
    offsetof(PB_T(ConnectResult__SubsEntry), value) ==
    offsetof(PB_T(Connect__SubsEntry), value) &&
    sizeof(PB_T(ConnectResult__SubsEntry)) ==
    sizeof(PB_T(Connect__SubsEntry)), "map entry layouts differ");
static PB_T(ConnectResult__SubsEntry) **
pb_connect_subs(const struct proto_connect_result *r,
    const ProtobufCMessageDescriptor *desc)
{
	PB_T(ConnectResult__SubsEntry) **arr, *e;
	PB_T(SubscribeResult) *sr;
	size_t i;

	if (r->nsubs == 0)
		return NULL;
	arr = pb_alloc(r->nsubs * sizeof(*arr));
	e = pb_alloc(r->nsubs * sizeof(*e));
	sr = pb_alloc(r->nsubs * sizeof(*sr));
	for (i = 0; i < r->nsubs; i++) {
		e[i] = (PB_T(ConnectResult__SubsEntry))
		    PB_INIT(CONNECT_RESULT__SUBS_ENTRY);
		e[i].base.descriptor = desc;
		e[i].key = pb_str(r->subs[i].channel);
		pb_subscribe_result(&sr[i], &r->subs[i].result);
		e[i].value = &sr[i];
		arr[i] = &e[i];
	}
	return arr;
}

/* Empty message of the type desc, in the scratch. */
static ProtobufCMessage *
pb_empty(const ProtobufCMessageDescriptor *desc)
{
	ProtobufCMessage *m = pb_alloc(desc->sizeof_message);

	protobuf_c_message_init(desc, m);
	return m;
}

/* ------------------------------------------------------------------ */
/* Encoders.                                                           */

void
proto_pb_ping(struct buf *out)
{
	buf_putc(out, '\0');
}

void
proto_pb_error(struct buf *out, uint32_t id, uint32_t code,
    const char *message, bool temporary)
{
	PB_T(Reply) reply = PB_INIT(REPLY);
	PB_T(Error) err = PB_INIT(ERROR);

	err.code = code;
	if (message != NULL)
		err.message = (char *)(uintptr_t)message;
	err.temporary = temporary;
	reply.id = id;
	reply.error = &err;
	pb_emit(out, &reply.base);
}

void
proto_pb_error_code(struct buf *out, uint32_t id, uint32_t code)
{
	proto_pb_error(out, id, code, proto_error_message(code),
	    proto_error_temporary(code));
}

/* Reply field number of each result (0: none). */
static const uint32_t pb_result_field[PROTO_CMD_COUNT] = {
	[PROTO_CMD_CONNECT] = 5,
	[PROTO_CMD_SUBSCRIBE] = 6,
	[PROTO_CMD_UNSUBSCRIBE] = 7,
	[PROTO_CMD_PUBLISH] = 8,
	[PROTO_CMD_PRESENCE] = 9,
	[PROTO_CMD_PRESENCE_STATS] = 10,
	[PROTO_CMD_HISTORY] = 11,
	[PROTO_CMD_PING] = 12,
	[PROTO_CMD_RPC] = 13,
	[PROTO_CMD_REFRESH] = 14,
	[PROTO_CMD_SUB_REFRESH] = 15,
};

void
proto_pb_empty_result(struct buf *out, uint32_t id, enum proto_cmd_type type)
{
	PB_T(Reply) reply = PB_INIT(REPLY);
	const ProtobufCFieldDescriptor *fd;

	ASSERT(type > PROTO_CMD_NONE && type < PROTO_CMD_COUNT);
	reply.id = id;
	if (pb_result_field[type] != 0) {
		fd = protobuf_c_message_descriptor_get_field(&PB_DESC(reply),
		    pb_result_field[type]);
		ASSERT(fd != NULL && fd->type == PROTOBUF_C_TYPE_MESSAGE);
		*(ProtobufCMessage **)(void *)((char *)&reply + fd->offset) =
		    pb_empty(fd->descriptor);
	}
	pb_emit(out, &reply.base);
}

void
proto_pb_connect_result(struct buf *out, uint32_t id,
    const struct proto_connect_result *r)
{
	PB_T(Reply) reply = PB_INIT(REPLY);
	PB_T(ConnectResult) cr = PB_INIT(CONNECT_RESULT);

	cr.client = pb_str(r->client);
	cr.version = pb_str(r->version);
	cr.expires = r->expires;
	cr.ttl = r->ttl;
	cr.data = pb_bytes(r->data);
	cr.subs = pb_connect_subs(r, &PB_DESC(connect_result__subs_entry));
	cr.n_subs = cr.subs ? r->nsubs : 0;
	cr.ping = r->ping;
	cr.pong = r->pong;
	cr.session = pb_str(r->session);
	cr.node = pb_str(r->node);
	cr.time = r->time;
	reply.id = id;
	reply.connect = &cr;
	pb_emit(out, &reply.base);
}

void
proto_pb_subscribe_result(struct buf *out, uint32_t id,
    const struct proto_subscribe_result *r)
{
	PB_T(Reply) reply = PB_INIT(REPLY);
	PB_T(SubscribeResult) sr;

	pb_subscribe_result(&sr, r);
	reply.id = id;
	reply.subscribe = &sr;
	pb_emit(out, &reply.base);
}

void
proto_pb_presence_result(struct buf *out, uint32_t id,
    const struct proto_client_info *infos, size_t n)
{
	PB_T(Reply) reply = PB_INIT(REPLY);
	PB_T(PresenceResult) pr = PB_INIT(PRESENCE_RESULT);
	PB_T(PresenceResult__PresenceEntry) *e;
	PB_T(ClientInfo) *ci;
	size_t i;

	if (n > 0) {
		pr.presence = pb_alloc(n * sizeof(*pr.presence));
		e = pb_alloc(n * sizeof(*e));
		ci = pb_alloc(n * sizeof(*ci));
		for (i = 0; i < n; i++) {
			e[i] = (PB_T(PresenceResult__PresenceEntry))
			    PB_INIT(PRESENCE_RESULT__PRESENCE_ENTRY);
			e[i].key = pb_str(infos[i].client);
			pb_client_info(&ci[i], &infos[i]);
			e[i].value = &ci[i];
			pr.presence[i] = &e[i];
		}
		pr.n_presence = n;
	}
	reply.id = id;
	reply.presence = &pr;
	pb_emit(out, &reply.base);
}

void
proto_pb_presence_stats_result(struct buf *out, uint32_t id,
    uint32_t num_clients, uint32_t num_users)
{
	PB_T(Reply) reply = PB_INIT(REPLY);
	PB_T(PresenceStatsResult) ps = PB_INIT(PRESENCE_STATS_RESULT);

	ps.num_clients = num_clients;
	ps.num_users = num_users;
	reply.id = id;
	reply.presence_stats = &ps;
	pb_emit(out, &reply.base);
}

void
proto_pb_history_result(struct buf *out, uint32_t id,
    const struct proto_publication *pubs, size_t n, struct proto_span epoch,
    uint64_t offset)
{
	PB_T(Reply) reply = PB_INIT(REPLY);
	PB_T(HistoryResult) hr = PB_INIT(HISTORY_RESULT);

	hr.publications = pb_publications(pubs, n);
	hr.n_publications = hr.publications ? n : 0;
	hr.epoch = pb_str(epoch);
	hr.offset = offset;
	reply.id = id;
	reply.history = &hr;
	pb_emit(out, &reply.base);
}

void
proto_pb_rpc_result(struct buf *out, uint32_t id, struct proto_span data)
{
	PB_T(Reply) reply = PB_INIT(REPLY);
	PB_T(RPCResult) rr = PB_INIT(RPCRESULT);

	rr.data = pb_bytes(data);
	reply.id = id;
	reply.rpc = &rr;
	pb_emit(out, &reply.base);
}

void
proto_pb_refresh_result(struct buf *out, uint32_t id,
    const struct proto_refresh_result *r)
{
	PB_T(Reply) reply = PB_INIT(REPLY);
	PB_T(RefreshResult) rr = PB_INIT(REFRESH_RESULT);

	rr.client = pb_str(r->client);
	rr.version = pb_str(r->version);
	rr.expires = r->expires;
	rr.ttl = r->ttl;
	reply.id = id;
	reply.refresh = &rr;
	pb_emit(out, &reply.base);
}

void
proto_pb_sub_refresh_result(struct buf *out, uint32_t id, bool expires,
    uint32_t ttl)
{
	PB_T(Reply) reply = PB_INIT(REPLY);
	PB_T(SubRefreshResult) sr = PB_INIT(SUB_REFRESH_RESULT);

	sr.expires = expires;
	sr.ttl = ttl;
	reply.id = id;
	reply.sub_refresh = &sr;
	pb_emit(out, &reply.base);
}

/* Storage for the payload messages of one Push. */
struct pb_push_parts {
	PB_T(Publication) pub;
	PB_T(ClientInfo) info;
	PB_T(Join) join;
	PB_T(Leave) leave;
	PB_T(Unsubscribe) unsub;
	PB_T(Message) message;
	PB_T(Subscribe) subscribe;
	PB_T(Connect) connect;
	PB_T(Disconnect) disconnect;
	PB_T(Refresh) refresh;
};

/* Fills ps from push; the payload structs live in parts. */
static void
pb_push(PB_T(Push) *ps, struct pb_push_parts *parts,
    const struct proto_push *push)
{
	static const struct proto_publication empty_pub;
	static const struct proto_client_info empty_info;
	static const struct proto_subscribe_result empty_sub;
	static const struct proto_connect_result empty_connect;
	const struct proto_subscribe_result *s;
	const struct proto_connect_result *c;

	*ps = (PB_T(Push))PB_INIT(PUSH);
	ps->channel = pb_str(push->channel);
	switch (push->type) {
	case PROTO_PUSH_PUB:
		pb_publication(&parts->pub, &parts->info,
		    push->pub ? push->pub : &empty_pub);
		ps->pub = &parts->pub;
		break;
	case PROTO_PUSH_JOIN:
		parts->join = (PB_T(Join))PB_INIT(JOIN);
		pb_client_info(&parts->info, push->info ? push->info : &empty_info);
		parts->join.info = &parts->info;
		ps->join = &parts->join;
		break;
	case PROTO_PUSH_LEAVE:
		parts->leave = (PB_T(Leave))PB_INIT(LEAVE);
		pb_client_info(&parts->info, push->info ? push->info : &empty_info);
		parts->leave.info = &parts->info;
		ps->leave = &parts->leave;
		break;
	case PROTO_PUSH_UNSUBSCRIBE:
		parts->unsub = (PB_T(Unsubscribe))PB_INIT(UNSUBSCRIBE);
		parts->unsub.code = push->code;
		parts->unsub.reason = pb_str(push->reason);
		ps->unsubscribe = &parts->unsub;
		break;
	case PROTO_PUSH_MESSAGE:
		parts->message = (PB_T(Message))PB_INIT(MESSAGE);
		parts->message.data = pb_bytes(push->data);
		ps->message = &parts->message;
		break;
	case PROTO_PUSH_SUBSCRIBE:
		s = push->subscribe ? push->subscribe : &empty_sub;
		parts->subscribe = (PB_T(Subscribe))PB_INIT(SUBSCRIBE);
		parts->subscribe.recoverable = s->recoverable;
		parts->subscribe.epoch = pb_str(s->epoch);
		parts->subscribe.offset = s->offset;
		parts->subscribe.positioned = s->positioned;
		parts->subscribe.data = pb_bytes(s->data);
		ps->subscribe = &parts->subscribe;
		break;
	case PROTO_PUSH_CONNECT:
		c = push->connect ? push->connect : &empty_connect;
		parts->connect = (PB_T(Connect))PB_INIT(CONNECT);
		parts->connect.client = pb_str(c->client);
		parts->connect.version = pb_str(c->version);
		parts->connect.data = pb_bytes(c->data);
		parts->connect.subs = (PB_T(Connect__SubsEntry) **)(void *)
		    pb_connect_subs(c, &PB_DESC(connect__subs_entry));
		parts->connect.n_subs = parts->connect.subs ? c->nsubs : 0;
		parts->connect.expires = c->expires;
		parts->connect.ttl = c->ttl;
		parts->connect.ping = c->ping;
		parts->connect.pong = c->pong;
		parts->connect.session = pb_str(c->session);
		parts->connect.node = pb_str(c->node);
		ps->connect = &parts->connect;
		break;
	case PROTO_PUSH_DISCONNECT:
		parts->disconnect = (PB_T(Disconnect))PB_INIT(DISCONNECT);
		parts->disconnect.code = push->code;
		parts->disconnect.reason = pb_str(push->reason);
		ps->disconnect = &parts->disconnect;
		break;
	case PROTO_PUSH_REFRESH:
		parts->refresh = (PB_T(Refresh))PB_INIT(REFRESH);
		parts->refresh.expires = push->expires;
		parts->refresh.ttl = push->ttl;
		ps->refresh = &parts->refresh;
		break;
	}
}

void
proto_pb_push(struct buf *out, const struct proto_push *push)
{
	PB_T(Reply) reply = PB_INIT(REPLY);
	PB_T(Push) ps;
	struct pb_push_parts parts;

	pb_push(&ps, &parts, push);
	reply.push = &ps;
	pb_emit(out, &reply.base);
}

void
proto_pb_push_bare(struct buf *out, const struct proto_push *push)
{
	PB_T(Push) ps;
	struct pb_push_parts parts;

	pb_push(&ps, &parts, push);
	pb_emit(out, &ps.base);
}

void
proto_pb_push_pub(struct buf *out, struct proto_span channel,
    const struct proto_publication *pub)
{
	PB_T(Reply) reply = PB_INIT(REPLY);
	PB_T(Push) ps = PB_INIT(PUSH);
	PB_T(Publication) pp;
	PB_T(ClientInfo) ci;

	ps.channel = pb_str(channel);
	pb_publication(&pp, &ci, pub);
	ps.pub = &pp;
	reply.push = &ps;
	pb_emit(out, &reply.base);
}
