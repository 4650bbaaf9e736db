/*
 * grpc_api.c - the GRPC server API (server-api.md §6): service
 * centrifugal.centrifugo.api.CentrifugoApi over plaintext HTTP/2 (h2c with
 * prior knowledge, as GRPC clients connect; no Upgrade, no TLS).
 *
 * Runs in: worker processes.  The supervisor opens the listener once; every
 * worker watches it and accepts.  A connection is a bufferevent feeding a
 * libnghttp2 server session (nghttp2 does the framing, HPACK and flow
 * control; it never touches the socket).  A unary call is collected from
 * its HEADERS and DATA frames, checked (method, path, key, encoding, size),
 * its one message ungzipped if need be and unpacked with the protoc-c
 * descriptors of api.proto, turned into the JSON params of the HTTP API and
 * run by api_call(); the JSON answer is encoded back into the response
 * message with the same descriptors.  Both conversions are generic: a JSON
 * member and a Protobuf field share their name.  Bytes fields (publication
 * data, info) travel as base64 in "b64<name>" members where the HTTP API
 * has those, so that any bytes get through unchanged.
 *
 * Lifetimes: a stream (one call) belongs to its connection; a stream whose
 * call is still with the broker when the connection or the stream goes is
 * orphaned (conn = NULL) and freed by the call's completion.  Nothing here
 * frees a connection from inside an nghttp2 callback: the session is only
 * driven (mem_recv / mem_send) from libevent callbacks, and the close check
 * runs after it.
 *
 * Bad input: a client that is not HTTP/2 (bad preface) or breaks the
 * protocol gets GOAWAY and is closed; a bad call gets a GRPC status (or
 * RST_STREAM for a non-POST request).  Limits: grpc_api.max_receive_message_size
 * per message (also after decompression), GRPC_MAX_STREAMS concurrent
 * calls, GRPC_MAX_HEADER_BYTES of headers per call, request bytes held per
 * connection, a preface deadline.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <openssl/crypto.h>
#include <protobuf-c/protobuf-c.h>
#include <sys/socket.h>
#include <zlib.h>

#include "api.h"
#include "api.pb-c.h"
#include "b64.h"
#include "buf.h"
#include "config.h"
#include "grpc_api.h"
#include "json.h"
#include "log.h"
#include "xmalloc.h"

#define GRPC_SERVICE "centrifugal.centrifugo.api.CentrifugoApi"
#define GRPC_DEFAULT_MAX_MSG (4u * 1024 * 1024)
#define GRPC_MAX_STREAMS 100
#define GRPC_MAX_HEADER_BYTES 16384
#define GRPC_PREFACE_TIMEOUT_S 10
#define GRPC_WRITE_TIMEOUT_S 30
#define GRPC_OUT_HIGH (256 * 1024)     /* stop producing frames above this */
#define GRPC_CONN_MAGIC 0x67727063u

/* GRPC status codes. */
enum grpc_status {
	GRPC_OK = 0,
	GRPC_INVALID_ARGUMENT = 3,
	GRPC_NOT_FOUND = 5,
	GRPC_ALREADY_EXISTS = 6,
	GRPC_RESOURCE_EXHAUSTED = 8,
	GRPC_OUT_OF_RANGE = 11,
	GRPC_UNIMPLEMENTED = 12,
	GRPC_INTERNAL = 13,
	GRPC_UNAUTHENTICATED = 16
};

/* One served RPC: its HTTP API method and its messages. */
struct grpc_method {
	const char *rpc;                         /* "PresenceStats" */
	const char *api;                         /* "presence_stats" */
	const ProtobufCMessageDescriptor *req, *resp;
};

#define GRPC_M(rpc, api, lower) { rpc, api, \
	&centrifugal__centrifugo__api__##lower##_request__descriptor, \
	&centrifugal__centrifugo__api__##lower##_response__descriptor }

static const struct grpc_method grpc_methods[] = {
	GRPC_M("Batch", "batch", batch),
	GRPC_M("Publish", "publish", publish),
	GRPC_M("Broadcast", "broadcast", broadcast),
	GRPC_M("Subscribe", "subscribe", subscribe),
	GRPC_M("Unsubscribe", "unsubscribe", unsubscribe),
	GRPC_M("Disconnect", "disconnect", disconnect),
	GRPC_M("Presence", "presence", presence),
	GRPC_M("PresenceStats", "presence_stats", presence_stats),
	GRPC_M("History", "history", history),
	GRPC_M("HistoryRemove", "history_remove", history_remove),
	GRPC_M("Info", "info", info),
	{ "RPC", "rpc", &centrifugal__centrifugo__api__rpcrequest__descriptor,
	  &centrifugal__centrifugo__api__rpcresponse__descriptor },
	GRPC_M("Refresh", "refresh", refresh),
	GRPC_M("Channels", "channels", channels),
};

/* In Centrifugo's service but not served here (PRO, experimental). */
static const char *const grpc_unserved[] = {
	"Connections", "UpdateUserStatus", "GetUserStatus", "DeleteUserStatus",
	"BlockUser", "UnblockUser", "RevokeToken", "InvalidateUserTokens",
	"DeviceRegister", "DeviceUpdate", "DeviceRemove", "DeviceList",
	"DeviceTopicList", "DeviceTopicUpdate", "UserTopicList", "UserTopicUpdate",
	"SendPushNotification", "UpdatePushStatus", "CancelPush", "MapPublish",
	"MapRemove", "MapReadState", "MapReadStream", "MapStats", "MapClear",
	"SharedPollPublish",
};

enum grpc_stream_state {
	GS_HEADERS = 0,   /* reading the request headers */
	GS_BODY,          /* headers fine: collecting the message */
	GS_IGNORE,        /* answered early: further DATA is dropped */
	GS_CALL,          /* with api_call(), waiting for its answer */
	GS_REPLY          /* response submitted */
};

struct grpc_conn;

/* One call (HTTP/2 stream).  Owned by its connection; see the file top. */
struct grpc_stream {
	struct grpc_conn *conn;         /* NULL: orphaned, freed by the call */
	struct grpc_stream *prev, *next;
	int32_t id;
	enum grpc_stream_state state;
	const struct grpc_method *method;
	size_t header_bytes;
	unsigned post : 1, end_stream : 1, gzip : 1, transport : 1;
	char *path, *ctype, *encoding, *auth;   /* request headers, or NULL */
	struct buf in;                  /* DATA so far: the framed message */
	struct buf out;                 /* framed response message */
	size_t out_off;                 /* bytes of out handed to nghttp2 */
	uint32_t status;                /* trailers */
	char *message;                  /* grpc-message, or NULL */
	char *details;                  /* grpc-status-details-bin, or NULL */
};

struct grpc_conn {
	uint32_t magic;
	struct grpc_conn *prev, *next;
	struct bufferevent *bev;
	nghttp2_session *h2;
	struct grpc_stream *streams;
	size_t held;                    /* request bytes held by its streams */
	int in_h2;                      /* inside mem_recv: no send, no free */
	int got_settings;               /* the client's preface arrived */
};

static struct {
	struct event_base *base;
	struct evconnlistener *lev;
	struct event *retry_ev;         /* re-enables accepting after an error */
	struct grpc_conn *conns;
	size_t nconns;
	char *key;                      /* "apikey <key>", or NULL: no auth */
	int transport;                  /* grpc_api.error_mode transport */
	size_t max_msg;
	size_t max_held;                /* request bytes per connection */
	int stopping;
} grpc;

static void grpc_conn_flush(struct grpc_conn *c);

/* ------------------------------------------------------------------ */
/* Protobuf wire writing                                               */

static void
grpc_put_varint(struct buf *b, uint64_t v)
{
	char tmp[10];
	size_t n = 0;

	do {
		tmp[n] = (char)(v & 0x7f);
		v >>= 7;
		if (v)
			tmp[n] |= (char)0x80;
		n++;
	} while (v);
	buf_append(b, tmp, n);
}

static void
grpc_put_tag(struct buf *b, uint32_t id, int wire)
{
	grpc_put_varint(b, ((uint64_t)id << 3) | (uint64_t)wire);
}

static void
grpc_put_lendelim(struct buf *b, uint32_t id, const void *p, size_t n)
{
	grpc_put_tag(b, id, 2);
	grpc_put_varint(b, n);
	buf_append(b, p, n);
}

/* ------------------------------------------------------------------ */
/* JSON answer -> response message                                     */

static void grpc_json_msg(const ProtobufCMessageDescriptor *d, const struct json_val *obj,
    struct buf *out);

/* A JSON member's name, unescaped, into name (NUL-terminated, cut). */
static void
grpc_key(const struct json_val *k, char *name, size_t cap)
{
	struct buf b = BUF_INIT;

	name[0] = '\0';
	if (json_unescape(k->p, k->len, &b) == 0 && b.len < cap) {
		memcpy(name, b.data, b.len);
		name[b.len] = '\0';
	}
	buf_free(&b);
}

/* The message type of a message field. */
static const ProtobufCMessageDescriptor *
grpc_sub(const ProtobufCFieldDescriptor *f)
{
	return (const ProtobufCMessageDescriptor *)f->descriptor;
}

/* A field that is a map<K, V> (a repeated XxxEntry{key = 1, value = 2}). */
static int
grpc_is_map(const ProtobufCFieldDescriptor *f)
{
	const ProtobufCMessageDescriptor *d = grpc_sub(f);
	size_t n;

	if (f->type != PROTOBUF_C_TYPE_MESSAGE || f->label != PROTOBUF_C_LABEL_REPEATED || d == NULL)
		return 0;
	n = strlen(d->short_name);
	return n > 5 && strcmp(d->short_name + n - 5, "Entry") == 0 && d->n_fields == 2 &&
	    d->fields[0].id == 1 && d->fields[1].id == 2;
}

/* Writes field f with JSON value v (one element of a repeated field). */
static void
grpc_json_value(const ProtobufCFieldDescriptor *f, const struct json_val *v, struct buf *out)
{
	uint64_t u = 0;
	int64_t i = 0;
	bool bv;

	if (v->type == JSON_NULL || v->type == JSON_NONE)
		return;
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_ENUM:
		if (json_get_u64(v, &u) != 0) {
			if (json_get_i64(v, &i) != 0)
				return;
			u = (uint64_t)i;
		}
		if (f->type == PROTOBUF_C_TYPE_UINT32)
			u &= 0xffffffffu;
		grpc_put_tag(out, f->id, 0);
		grpc_put_varint(out, u);
		break;
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SINT64:
		if (json_get_i64(v, &i) != 0)
			return;
		grpc_put_tag(out, f->id, 0);
		grpc_put_varint(out, ((uint64_t)i << 1) ^ (uint64_t)(i >> 63));
		break;
	case PROTOBUF_C_TYPE_BOOL:
		if (json_get_bool(v, &bv) != 0)
			return;
		grpc_put_tag(out, f->id, 0);
		grpc_put_varint(out, bv ? 1 : 0);
		break;
	case PROTOBUF_C_TYPE_DOUBLE:
	case PROTOBUF_C_TYPE_FLOAT: {
		char num[64];
		double dv;
		if (v->type != JSON_NUMBER || v->len >= sizeof(num))
			return;
		memcpy(num, v->p, v->len);
		num[v->len] = '\0';
		dv = strtod(num, NULL);
		if (f->type == PROTOBUF_C_TYPE_DOUBLE) {
			grpc_put_tag(out, f->id, 1);
			buf_append(out, &dv, 8);          /* little-endian hosts */
		} else {
			float fv = (float)dv;
			grpc_put_tag(out, f->id, 5);
			buf_append(out, &fv, 4);
		}
		break;
	}
	case PROTOBUF_C_TYPE_STRING: {
		struct buf s = BUF_INIT;
		if (v->type == JSON_STRING) {
			if (json_unescape(v->p, v->len, &s) != 0)
				break;
			grpc_put_lendelim(out, f->id, s.data ? s.data : "", s.len);
		} else {
			grpc_put_lendelim(out, f->id, v->p, v->len);
		}
		buf_free(&s);
		break;
	}
	case PROTOBUF_C_TYPE_BYTES:
		/* Raw JSON (data, info): its exact text is the bytes. */
		grpc_put_lendelim(out, f->id, v->p, v->len);
		break;
	case PROTOBUF_C_TYPE_MESSAGE: {
		struct buf sub = BUF_INIT;
		if (v->type != JSON_OBJECT)
			return;
		grpc_json_msg(grpc_sub(f), v, &sub);
		grpc_put_lendelim(out, f->id, sub.data ? sub.data : "", sub.len);
		buf_free(&sub);
		break;
	}
	default:
		break;               /* fixed-width integers: not in api.proto */
	}
}

/* Writes the members of JSON object obj as the fields of message d;
 * members without a field are skipped. */
static void
grpc_json_msg(const ProtobufCMessageDescriptor *d, const struct json_val *obj, struct buf *out)
{
	struct json_iter it;
	struct json_val k, v;
	char name[128];

	if (json_iter_init(&it, obj->p, obj->len) != 0)
		return;
	while (json_iter_next(&it, &k, &v) == 1) {
		const ProtobufCFieldDescriptor *f;

		grpc_key(&k, name, sizeof(name));
		f = protobuf_c_message_descriptor_get_field_by_name(d, name);
		if (f == NULL && strncmp(name, "b64", 3) == 0 && v.type == JSON_STRING) {
			/* "b64data": the bytes of field data, base64-encoded. */
			struct buf s = BUF_INIT, raw = BUF_INIT;
			f = protobuf_c_message_descriptor_get_field_by_name(d, name + 3);
			if (f != NULL && f->type == PROTOBUF_C_TYPE_BYTES &&
			    json_unescape(v.p, v.len, &s) == 0 &&
			    b64_decode_std(s.data ? s.data : "", s.len, &raw) == 0)
				grpc_put_lendelim(out, f->id, raw.data ? raw.data : "", raw.len);
			buf_free(&s);
			buf_free(&raw);
			continue;
		}
		if (f == NULL)
			continue;
		if (grpc_is_map(f)) {
			struct json_iter mi;
			struct json_val mk, mv;
			if (v.type != JSON_OBJECT || json_iter_init(&mi, v.p, v.len) != 0)
				continue;
			while (json_iter_next(&mi, &mk, &mv) == 1) {
				struct buf e = BUF_INIT;
				grpc_json_value(&grpc_sub(f)->fields[0], &mk, &e);
				grpc_json_value(&grpc_sub(f)->fields[1], &mv, &e);
				grpc_put_lendelim(out, f->id, e.data ? e.data : "", e.len);
				buf_free(&e);
			}
		} else if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			struct json_iter ai;
			struct json_val av;
			if (v.type != JSON_ARRAY || json_iter_init(&ai, v.p, v.len) != 0)
				continue;
			while (json_iter_next(&ai, NULL, &av) == 1)
				grpc_json_value(f, &av, out);
		} else {
			grpc_json_value(f, &v, out);
		}
	}
}

/* ------------------------------------------------------------------ */
/* Request message -> JSON params                                      */

static size_t
grpc_elem_size(const ProtobufCFieldDescriptor *f)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32: case PROTOBUF_C_TYPE_SINT32: case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_UINT32: case PROTOBUF_C_TYPE_FIXED32: case PROTOBUF_C_TYPE_FLOAT:
	case PROTOBUF_C_TYPE_ENUM:
		return 4;
	case PROTOBUF_C_TYPE_INT64: case PROTOBUF_C_TYPE_SINT64: case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64: case PROTOBUF_C_TYPE_FIXED64: case PROTOBUF_C_TYPE_DOUBLE:
		return 8;
	case PROTOBUF_C_TYPE_BOOL:
		return sizeof(protobuf_c_boolean);
	case PROTOBUF_C_TYPE_STRING:
		return sizeof(char *);
	case PROTOBUF_C_TYPE_BYTES:
		return sizeof(ProtobufCBinaryData);
	case PROTOBUF_C_TYPE_MESSAGE:
		return sizeof(ProtobufCMessage *);
	}
	return 0;
}

/* 1 when the singular field at p holds its proto3 default (absent). */
static int
grpc_is_default(const ProtobufCFieldDescriptor *f, const void *p)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32: case PROTOBUF_C_TYPE_SINT32: case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_UINT32: case PROTOBUF_C_TYPE_FIXED32: case PROTOBUF_C_TYPE_ENUM:
		return *(const uint32_t *)p == 0;
	case PROTOBUF_C_TYPE_INT64: case PROTOBUF_C_TYPE_SINT64: case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64: case PROTOBUF_C_TYPE_FIXED64:
		return *(const uint64_t *)p == 0;
	case PROTOBUF_C_TYPE_FLOAT:
		return *(const float *)p == 0;
	case PROTOBUF_C_TYPE_DOUBLE:
		return *(const double *)p == 0;
	case PROTOBUF_C_TYPE_BOOL:
		return !*(const protobuf_c_boolean *)p;
	case PROTOBUF_C_TYPE_STRING:
		return *(char *const *)p == NULL || **(char *const *)p == '\0';
	case PROTOBUF_C_TYPE_BYTES:
		return ((const ProtobufCBinaryData *)p)->len == 0;
	case PROTOBUF_C_TYPE_MESSAGE:
		return *(ProtobufCMessage *const *)p == NULL;
	}
	return 1;
}

static void grpc_msg_json(const ProtobufCMessage *m, struct buf *b);

/* One value of field f at p as JSON. */
static void
grpc_value_json(const ProtobufCFieldDescriptor *f, const void *p, struct buf *b)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32: case PROTOBUF_C_TYPE_SINT32: case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_ENUM:
		buf_printf(b, "%d", *(const int32_t *)p);
		break;
	case PROTOBUF_C_TYPE_UINT32: case PROTOBUF_C_TYPE_FIXED32:
		buf_printf(b, "%u", *(const uint32_t *)p);
		break;
	case PROTOBUF_C_TYPE_INT64: case PROTOBUF_C_TYPE_SINT64: case PROTOBUF_C_TYPE_SFIXED64:
		buf_put_i64(b, *(const int64_t *)p);
		break;
	case PROTOBUF_C_TYPE_UINT64: case PROTOBUF_C_TYPE_FIXED64:
		buf_put_u64(b, *(const uint64_t *)p);
		break;
	case PROTOBUF_C_TYPE_FLOAT:
		buf_printf(b, "%.9g", (double)*(const float *)p);
		break;
	case PROTOBUF_C_TYPE_DOUBLE:
		buf_printf(b, "%.17g", *(const double *)p);
		break;
	case PROTOBUF_C_TYPE_BOOL:
		buf_puts(b, *(const protobuf_c_boolean *)p ? "true" : "false");
		break;
	case PROTOBUF_C_TYPE_STRING: {
		const char *s = *(char *const *)p ? *(char *const *)p : "";
		json_put_string(b, s, strlen(s));
		break;
	}
	case PROTOBUF_C_TYPE_BYTES: {
		const ProtobufCBinaryData *d = p;
		buf_putc(b, '"');
		b64_encode(d->data, d->len, 0, b);
		buf_putc(b, '"');
		break;
	}
	case PROTOBUF_C_TYPE_MESSAGE:
		if (*(ProtobufCMessage *const *)p != NULL)
			grpc_msg_json(*(ProtobufCMessage *const *)p, b);
		else
			buf_puts(b, "{}");
		break;
	}
}

static void
grpc_json_key(struct buf *b, int *first, const char *prefix, const char *name)
{
	if (!*first)
		buf_putc(b, ',');
	*first = 0;
	buf_printf(b, "\"%s%s\":", prefix, name);
}

/*
 * Message m as the JSON params object the HTTP API reads.  Default values
 * are left out (proto3 cannot tell them from absent).  A bytes field X
 * goes as "b64X" (base64) when the message also has the string field b64X
 * (the HTTP API's own alternative), as raw JSON when it is valid JSON, and
 * as "b64X" otherwise.
 */
static void
grpc_msg_json(const ProtobufCMessage *m, struct buf *b)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;
	int first = 1;

	buf_putc(b, '{');
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		const char *base = (const char *)m + f->offset;

		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t n = *(const size_t *)((const char *)m + f->quantifier_offset);
			const char *arr = *(const char *const *)base;
			size_t sz = grpc_elem_size(f);
			if (n == 0)
				continue;
			grpc_json_key(b, &first, "", f->name);
			if (grpc_is_map(f)) {
				const ProtobufCFieldDescriptor *kf = &grpc_sub(f)->fields[0];
				const ProtobufCFieldDescriptor *vf = &grpc_sub(f)->fields[1];
				buf_putc(b, '{');
				for (size_t j = 0; j < n; j++) {
					const char *e = ((const char *const *)arr)[j];
					if (j)
						buf_putc(b, ',');
					if (kf->type == PROTOBUF_C_TYPE_STRING) {
						grpc_value_json(kf, e + kf->offset, b);
					} else {
						buf_putc(b, '"');
						grpc_value_json(kf, e + kf->offset, b);
						buf_putc(b, '"');
					}
					buf_putc(b, ':');
					grpc_value_json(vf, e + vf->offset, b);
				}
				buf_putc(b, '}');
			} else {
				buf_putc(b, '[');
				for (size_t j = 0; j < n; j++) {
					if (j)
						buf_putc(b, ',');
					grpc_value_json(f, arr + j * sz, b);
				}
				buf_putc(b, ']');
			}
			continue;
		}
		if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_STRING &&
		    f->type != PROTOBUF_C_TYPE_MESSAGE && f->quantifier_offset != 0 &&
		    !*(const protobuf_c_boolean *)((const char *)m + f->quantifier_offset))
			continue;
		if (grpc_is_default(f, base))
			continue;
		if (f->type == PROTOBUF_C_TYPE_BYTES) {
			const ProtobufCBinaryData *bd = (const ProtobufCBinaryData *)base;
			char alt[128];
			const ProtobufCFieldDescriptor *af;
			snprintf(alt, sizeof(alt), "b64%s", f->name);
			af = protobuf_c_message_descriptor_get_field_by_name(d, alt);
			if ((af == NULL || af->type != PROTOBUF_C_TYPE_STRING) &&
			    json_validate((const char *)bd->data, bd->len, NULL) == 0) {
				grpc_json_key(b, &first, "", f->name);
				json_put_raw(b, (const char *)bd->data, bd->len);
			} else {
				grpc_json_key(b, &first, "b64", f->name);
				grpc_value_json(f, base, b);
			}
			continue;
		}
		grpc_json_key(b, &first, "", f->name);
		grpc_value_json(f, base, b);
	}
	buf_putc(b, '}');
}

/* ------------------------------------------------------------------ */
/* Streams                                                             */

static void
grpc_stream_free(struct grpc_stream *st)
{
	free(st->path);
	free(st->ctype);
	free(st->encoding);
	free(st->auth);
	free(st->message);
	free(st->details);
	buf_free(&st->in);
	buf_free(&st->out);
	free(st);
}

/* Gives back what st holds of its connection's request budget. */
static void
grpc_stream_drop_input(struct grpc_stream *st)
{
	if (st->conn != NULL)
		st->conn->held -= st->in.len;
	buf_free(&st->in);
	buf_init(&st->in);
}

/* Takes st off its connection's list (the stream stays allocated). */
static void
grpc_stream_unlink(struct grpc_stream *st)
{
	struct grpc_conn *c = st->conn;

	if (c == NULL)
		return;
	c->held -= st->in.len;
	if (st->prev)
		st->prev->next = st->next;
	else
		c->streams = st->next;
	if (st->next)
		st->next->prev = st->prev;
	st->prev = st->next = NULL;
	st->conn = NULL;
}

/* grpc-message: percent-encoded (the GRPC spec). */
static char *
grpc_percent(const char *s)
{
	struct buf b = BUF_INIT;

	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch < 0x20 || ch > 0x7e || ch == '%')
			buf_printf(&b, "%%%02X", ch);
		else
			buf_putc(&b, (char)ch);
	}
	buf_cstr(&b);
	return buf_steal(&b, NULL);
}

#define GRPC_NV(n, v) { (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE }

/* Trailers of st (or the headers of a trailers-only answer when
 * with_status is set). */
static size_t
grpc_trailers(const struct grpc_stream *st, nghttp2_nv *nv, char *code, size_t ccap)
{
	size_t n = 0;

	snprintf(code, ccap, "%u", st->status);
	nv[n++] = (nghttp2_nv)GRPC_NV("grpc-status", code);
	if (st->message != NULL)
		nv[n++] = (nghttp2_nv)GRPC_NV("grpc-message", st->message);
	if (st->details != NULL)
		nv[n++] = (nghttp2_nv)GRPC_NV("grpc-status-details-bin", st->details);
	return n;
}

/*
 * Answers st with a status and no message (a "trailers-only" response),
 * http_status 200 unless told.  Any DATA still coming is dropped.  msg is
 * copied; NULL for none.
 */
static void
grpc_fail(struct grpc_stream *st, uint32_t status, const char *msg, int http_status)
{
	nghttp2_nv nv[6];
	char code[16], hs[8];
	size_t n = 0;

	if (st->conn == NULL)
		return;
	st->status = status;
	free(st->message);
	st->message = msg ? grpc_percent(msg) : NULL;
	snprintf(hs, sizeof(hs), "%d", http_status ? http_status : 200);
	nv[n++] = (nghttp2_nv)GRPC_NV(":status", hs);
	nv[n++] = (nghttp2_nv)GRPC_NV("content-type", "application/grpc");
	n += grpc_trailers(st, nv + n, code, sizeof(code));
	st->state = GS_IGNORE;
	grpc_stream_drop_input(st);
	if (nghttp2_submit_response(st->conn->h2, st->id, nv, n, NULL) != 0)
		nghttp2_submit_rst_stream(st->conn->h2, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
}

static ssize_t
grpc_read_body(nghttp2_session *h2, int32_t id, uint8_t *dst, size_t len,
    uint32_t *flags, nghttp2_data_source *src, void *user)
{
	struct grpc_stream *st = src->ptr;
	size_t n = st->out.len - st->out_off;

	if (n > len)
		n = len;
	memcpy(dst, st->out.data + st->out_off, n);
	st->out_off += n;
	if (st->out_off == st->out.len) {
		nghttp2_nv nv[3];
		char code[16];
		size_t nt = grpc_trailers(st, nv, code, sizeof(code));
		*flags |= NGHTTP2_DATA_FLAG_EOF;
		if (nghttp2_submit_trailer(h2, id, nv, nt) == 0)
			*flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
	}
	return (ssize_t)n;
}

/* Answers st with its response message in out (framed) and status OK. */
static void
grpc_reply(struct grpc_stream *st)
{
	nghttp2_nv nv[] = {
		GRPC_NV(":status", "200"),
		GRPC_NV("content-type", "application/grpc"),
	};
	nghttp2_data_provider prd;

	prd.source.ptr = st;
	prd.read_callback = grpc_read_body;
	st->state = GS_REPLY;
	st->status = GRPC_OK;
	if (nghttp2_submit_response(st->conn->h2, st->id, nv, 2, &prd) != 0)
		nghttp2_submit_rst_stream(st->conn->h2, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
}

/* The GRPC status of a server API error in transport mode (§2.1). */
static uint32_t
grpc_status_of(uint32_t code)
{
	switch (code) {
	case 102: case 104: return GRPC_NOT_FOUND;
	case 107: case 108: return GRPC_INVALID_ARGUMENT;
	case 112: return GRPC_OUT_OF_RANGE;
	case 113: return GRPC_ALREADY_EXISTS;
	default: return GRPC_INTERNAL;
	}
}

/*
 * grpc-status-details-bin for error {code, message}: a google.rpc.Status
 * {code = 1, message = 2, details = 3: Any {type_url = 1, value = 2}}
 * whose one detail is the Error message, base64 without padding.  Returns
 * a string the caller frees.
 */
static char *
grpc_details(uint32_t status, uint32_t code, const char *msg, size_t mlen)
{
	static const char url[] = "type.googleapis.com/centrifugal.centrifugo.api.Error";
	struct buf err = BUF_INIT, any = BUF_INIT, st = BUF_INIT, out = BUF_INIT;

	grpc_put_tag(&err, 1, 0);
	grpc_put_varint(&err, code);
	grpc_put_lendelim(&err, 2, msg, mlen);
	grpc_put_lendelim(&any, 1, url, sizeof(url) - 1);
	grpc_put_lendelim(&any, 2, err.data, err.len);
	grpc_put_tag(&st, 1, 0);
	grpc_put_varint(&st, status);
	grpc_put_lendelim(&st, 2, msg, mlen);
	grpc_put_lendelim(&st, 3, any.data, any.len);
	b64_encode(st.data, st.len, 0, &out);
	while (out.len && out.data[out.len - 1] == '=')
		out.len--;
	buf_cstr(&out);
	buf_free(&err);
	buf_free(&any);
	buf_free(&st);
	return buf_steal(&out, NULL);
}

/* api_call() answered st's call (now or later). */
static void
grpc_call_done(void *arg, const char *json, size_t len)
{
	struct grpc_stream *st = arg;
	struct grpc_conn *c = st->conn;
	struct json_val v, f[1];
	struct buf msg = BUF_INIT;

	if (c == NULL) {
		grpc_stream_free(st);         /* the client is gone */
		return;
	}
	if (json_parse(json, len, &v, NULL) != 0 || v.type != JSON_OBJECT) {
		grpc_fail(st, GRPC_INTERNAL, "internal server error", 0);
		grpc_conn_flush(c);
		return;
	}
	f[0].type = JSON_NONE;
	if (st->transport && strcmp(st->method->api, "batch") != 0) {
		struct json_iter it;
		struct json_val k, mv;
		json_iter_init(&it, v.p, v.len);
		while (json_iter_next(&it, &k, &mv) == 1)
			if (json_str_eq(&k, "error") && mv.type == JSON_OBJECT)
				f[0] = mv;
	}
	if (f[0].type == JSON_OBJECT) {
		/* Transport error mode: the status, its message, the Error. */
		struct json_iter it;
		struct json_val k, ev;
		struct buf text = BUF_INIT;
		uint32_t code = 0;
		json_iter_init(&it, f[0].p, f[0].len);
		while (json_iter_next(&it, &k, &ev) == 1) {
			if (json_str_eq(&k, "code"))
				json_get_u32(&ev, &code);
			else if (json_str_eq(&k, "message") && ev.type == JSON_STRING)
				json_unescape(ev.p, ev.len, &text);
		}
		buf_cstr(&text);
		free(st->details);
		st->details = grpc_details(grpc_status_of(code), code, text.data, text.len);
		grpc_fail(st, grpc_status_of(code), text.data, 0);
		buf_free(&text);
		grpc_conn_flush(c);
		return;
	}
	buf_append(&st->out, "\0\0\0\0\0", 5);
	grpc_json_msg(st->method->resp, &v, &msg);
	st->out.data[1] = (char)(msg.len >> 24);
	st->out.data[2] = (char)(msg.len >> 16);
	st->out.data[3] = (char)(msg.len >> 8);
	st->out.data[4] = (char)msg.len;
	if (msg.len)
		buf_append(&st->out, msg.data, msg.len);
	buf_free(&msg);
	grpc_reply(st);
	grpc_conn_flush(c);
}

/* gunzips in[0..n) into out, at most max bytes.  0, -1 (not gzip), or
 * -2 (larger than max). */
static int
grpc_gunzip(const unsigned char *in, size_t n, size_t max, struct buf *out)
{
	z_stream z;
	unsigned char chunk[16384];
	int rc;

	memset(&z, 0, sizeof(z));
	if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK)
		return -1;
	z.next_in = (unsigned char *)(uintptr_t)in;
	z.avail_in = (uInt)n;
	do {
		z.next_out = chunk;
		z.avail_out = sizeof(chunk);
		rc = inflate(&z, Z_NO_FLUSH);
		if (rc != Z_OK && rc != Z_STREAM_END) {
			inflateEnd(&z);
			return -1;
		}
		if (out->len + (sizeof(chunk) - z.avail_out) > max) {
			inflateEnd(&z);
			return -2;
		}
		buf_append(out, chunk, sizeof(chunk) - z.avail_out);
		if (rc == Z_OK && z.avail_in == 0 && z.avail_out != 0) {
			inflateEnd(&z);
			return -1;           /* truncated */
		}
	} while (rc != Z_STREAM_END);
	inflateEnd(&z);
	return z.avail_in == 0 ? 0 : -1;
}

/* The whole request of st arrived: decode it and start the call. */
static void
grpc_stream_run(struct grpc_stream *st)
{
	const unsigned char *p = (const unsigned char *)st->in.data;
	struct buf plain = BUF_INIT, params = BUF_INIT;
	ProtobufCMessage *m;
	uint32_t n;
	char text[128];

	if (st->in.len < 5) {
		grpc_fail(st, GRPC_INTERNAL, "grpc: no request message", 0);
		return;
	}
	n = (uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 | p[4];
	if (st->in.len != 5 + (size_t)n) {
		grpc_fail(st, GRPC_INTERNAL, "grpc: a unary call takes exactly one request message", 0);
		return;
	}
	if (p[0] > 1) {
		grpc_fail(st, GRPC_INTERNAL, "grpc: bad compressed flag in the message prefix", 0);
		return;
	}
	if (p[0] == 1 && !st->gzip) {
		grpc_fail(st, GRPC_INTERNAL, "grpc: compressed flag set with identity or empty encoding", 0);
		return;
	}
	p += 5;
	if (st->in.data[0] == 1) {
		int rc = grpc_gunzip(p, n, grpc.max_msg, &plain);
		if (rc == -2) {
			snprintf(text, sizeof(text), "grpc: received message after decompression larger than max %zu",
			    grpc.max_msg);
			grpc_fail(st, GRPC_RESOURCE_EXHAUSTED, text, 0);
			buf_free(&plain);
			return;
		}
		if (rc != 0) {
			grpc_fail(st, GRPC_INTERNAL, "grpc: failed to decompress the received message", 0);
			buf_free(&plain);
			return;
		}
		p = (const unsigned char *)(plain.data ? plain.data : "");
		n = (uint32_t)plain.len;
	}
	m = protobuf_c_message_unpack(st->method->req, NULL, n, p);
	buf_free(&plain);
	if (m == NULL) {
		snprintf(text, sizeof(text), "grpc: error unmarshalling request: %s is not a valid %s",
		    "message", st->method->req->name);
		grpc_fail(st, GRPC_INTERNAL, text, 0);
		return;
	}
	grpc_msg_json(m, &params);
	protobuf_c_message_free_unpacked(m, NULL);
	grpc_stream_drop_input(st);
	st->state = GS_CALL;
	/* api_call() may answer before it returns: grpc_call_done() then
	 * submits the response inside this nghttp2 callback (allowed) and
	 * leaves sending to the caller of mem_recv. */
	if (api_call(st->method->api, params.data, params.len, grpc_call_done, st) != 0)
		grpc_fail(st, GRPC_UNIMPLEMENTED, "method not implemented", 0);
	buf_free(&params);
}

/* The request headers of st are complete: check them. */
static void
grpc_stream_headers(struct grpc_stream *st)
{
	static const char prefix[] = "/" GRPC_SERVICE "/";
	const char *name;
	char text[300];

	if (!st->post || st->path == NULL) {
		/* Not a GRPC call at all (GRPC clients only POST). */
		st->state = GS_IGNORE;
		nghttp2_submit_rst_stream(st->conn->h2, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_PROTOCOL_ERROR);
		return;
	}
	if (st->ctype == NULL || strncmp(st->ctype, "application/grpc", 16) != 0 ||
	    (st->ctype[16] != '\0' && st->ctype[16] != '+' && st->ctype[16] != ';')) {
		snprintf(text, sizeof(text), "invalid gRPC request content-type \"%s\"",
		    st->ctype ? st->ctype : "");
		grpc_fail(st, GRPC_INTERNAL, text, 415);
		return;
	}
	if (strncmp(st->path, prefix, sizeof(prefix) - 1) != 0) {
		const char *slash = strchr(st->path + 1, '/');
		snprintf(text, sizeof(text), "unknown service %.*s",
		    slash ? (int)(slash - st->path - 1) : 200, st->path + 1);
		grpc_fail(st, GRPC_UNIMPLEMENTED, text, 0);
		return;
	}
	name = st->path + sizeof(prefix) - 1;
	for (size_t i = 0; i < sizeof(grpc_methods) / sizeof(grpc_methods[0]); i++)
		if (strcmp(name, grpc_methods[i].rpc) == 0)
			st->method = &grpc_methods[i];
	if (st->method == NULL) {
		int known = 0;
		for (size_t i = 0; i < sizeof(grpc_unserved) / sizeof(grpc_unserved[0]); i++)
			known |= strcmp(name, grpc_unserved[i]) == 0;
		if (known)
			snprintf(text, sizeof(text), "method %.200s not implemented", name);
		else
			snprintf(text, sizeof(text), "unknown method %.100s for service %s", name, GRPC_SERVICE);
		grpc_fail(st, GRPC_UNIMPLEMENTED, text, 0);
		return;
	}
	if (grpc.key != NULL) {
		size_t kl = strlen(grpc.key);
		if (st->auth == NULL || strlen(st->auth) != kl ||
		    CRYPTO_memcmp(st->auth, grpc.key, kl) != 0) {
			grpc_fail(st, GRPC_UNAUTHENTICATED, "unauthenticated", 0);
			return;
		}
	}
	if (st->encoding != NULL && strcmp(st->encoding, "identity") != 0) {
		if (strcmp(st->encoding, "gzip") != 0) {
			snprintf(text, sizeof(text), "grpc: Decompressor is not installed for grpc-encoding \"%.100s\"",
			    st->encoding);
			grpc_fail(st, GRPC_UNIMPLEMENTED, text, 0);
			return;
		}
		st->gzip = 1;
	}
	st->state = GS_BODY;
}

/* ------------------------------------------------------------------ */
/* nghttp2 callbacks                                                   */

static int
grpc_on_begin_headers(nghttp2_session *h2, const nghttp2_frame *frame, void *user)
{
	struct grpc_conn *c = user;
	struct grpc_stream *st;

	if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	st = xcalloc(1, sizeof(*st));
	st->conn = c;
	st->id = frame->hd.stream_id;
	st->transport = grpc.transport;
	buf_init(&st->in);
	buf_init(&st->out);
	st->next = c->streams;
	if (c->streams)
		c->streams->prev = st;
	c->streams = st;
	nghttp2_session_set_stream_user_data(h2, st->id, st);
	return 0;
}

static int
grpc_on_header(nghttp2_session *h2, const nghttp2_frame *frame, const uint8_t *name,
    size_t nlen, const uint8_t *value, size_t vlen, uint8_t flags, void *user)
{
	struct grpc_stream *st;

	if (frame->hd.type != NGHTTP2_HEADERS)
		return 0;
	st = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
	if (st == NULL || st->state != GS_HEADERS)
		return 0;                /* trailers of a request: ignored */
	st->header_bytes += nlen + vlen + 32;
	if (st->header_bytes > GRPC_MAX_HEADER_BYTES)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;   /* RST_STREAM */
#define GRPC_IS(lit) (nlen == sizeof(lit) - 1 && memcmp(name, lit, nlen) == 0)
	if (GRPC_IS(":method"))
		st->post = vlen == 4 && memcmp(value, "POST", 4) == 0;
	else if (GRPC_IS(":path") && st->path == NULL)
		st->path = xstrndup((const char *)value, vlen);
	else if (GRPC_IS("content-type") && st->ctype == NULL)
		st->ctype = xstrndup((const char *)value, vlen);
	else if (GRPC_IS("grpc-encoding") && st->encoding == NULL)
		st->encoding = xstrndup((const char *)value, vlen);
	else if (GRPC_IS("authorization") && st->auth == NULL)
		st->auth = xstrndup((const char *)value, vlen);
	else if (GRPC_IS("x-centrifugo-error-mode") && vlen == 9 && memcmp(value, "transport", 9) == 0)
		st->transport = 1;
#undef GRPC_IS
	return 0;
}

static int
grpc_on_data(nghttp2_session *h2, uint8_t flags, int32_t id, const uint8_t *data,
    size_t len, void *user)
{
	struct grpc_conn *c = user;
	struct grpc_stream *st = nghttp2_session_get_stream_user_data(h2, id);
	char text[160];

	if (st == NULL || st->state != GS_BODY)
		return 0;                /* answered already: dropped */
	if (c->held + len > grpc.max_held) {
		/* More request bytes in flight than any honest client needs. */
		nghttp2_session_terminate_session(h2, NGHTTP2_ENHANCE_YOUR_CALM);
		return 0;
	}
	buf_append(&st->in, data, len);
	c->held += len;
	if (st->in.len >= 5) {
		const unsigned char *p = (const unsigned char *)st->in.data;
		uint32_t n = (uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 | p[4];
		if (n > grpc.max_msg) {
			snprintf(text, sizeof(text), "grpc: received message larger than max (%u vs. %zu)",
			    n, grpc.max_msg);
			grpc_fail(st, GRPC_RESOURCE_EXHAUSTED, text, 0);
		} else if (st->in.len > 5 + (size_t)n) {
			grpc_fail(st, GRPC_INTERNAL, "grpc: a unary call takes exactly one request message", 0);
		}
	}
	return 0;
}

static int
grpc_on_frame_recv(nghttp2_session *h2, const nghttp2_frame *frame, void *user)
{
	struct grpc_conn *c = user;
	struct grpc_stream *st;

	if (frame->hd.type == NGHTTP2_SETTINGS && !c->got_settings) {
		struct timeval wt = { GRPC_WRITE_TIMEOUT_S, 0 };
		c->got_settings = 1;
		bufferevent_set_timeouts(c->bev, NULL, &wt);   /* no idle limit now */
	}
	if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
		return 0;
	st = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
	if (st == NULL)
		return 0;
	if (frame->hd.type == NGHTTP2_HEADERS && st->state == GS_HEADERS)
		grpc_stream_headers(st);
	if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) && !st->end_stream) {
		st->end_stream = 1;
		if (st->state == GS_BODY)
			grpc_stream_run(st);
	}
	return 0;
}

static int
grpc_on_frame_send(nghttp2_session *h2, const nghttp2_frame *frame, void *user)
{
	struct grpc_stream *st;

	/* Our answer is complete but the client still sends (an early
	 * error): tell it to stop, as GRPC servers do. */
	if (frame->hd.type != NGHTTP2_HEADERS || !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
		return 0;
	st = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
	if (st != NULL && !st->end_stream)
		nghttp2_submit_rst_stream(h2, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_NO_ERROR);
	return 0;
}

static int
grpc_on_stream_close(nghttp2_session *h2, int32_t id, uint32_t error, void *user)
{
	struct grpc_stream *st = nghttp2_session_get_stream_user_data(h2, id);

	if (st == NULL)
		return 0;
	nghttp2_session_set_stream_user_data(h2, id, NULL);
	grpc_stream_unlink(st);
	if (st->state != GS_CALL)
		grpc_stream_free(st);    /* else the call's answer frees it */
	return 0;
}

/* ------------------------------------------------------------------ */
/* Connections                                                         */

static void
grpc_conn_free(struct grpc_conn *c)
{
	ASSERT(c->magic == GRPC_CONN_MAGIC);
	while (c->streams != NULL) {
		struct grpc_stream *st = c->streams;
		grpc_stream_unlink(st);
		if (st->state != GS_CALL)
			grpc_stream_free(st);
	}
	nghttp2_session_del(c->h2);
	bufferevent_free(c->bev);
	if (c->prev)
		c->prev->next = c->next;
	else
		grpc.conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	grpc.nconns--;
	c->magic = 0;
	free(c);
}

/*
 * Hands nghttp2's pending frames to the socket (up to GRPC_OUT_HIGH queued;
 * the write callback brings the rest) and closes c once nghttp2 wants
 * nothing more and all is written.  May free c.
 */
static void
grpc_conn_flush(struct grpc_conn *c)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);

	if (c->in_h2)
		return;
	while (evbuffer_get_length(out) < GRPC_OUT_HIGH) {
		const uint8_t *data;
		ssize_t n = nghttp2_session_mem_send(c->h2, &data);
		if (n < 0) {
			log_debug("grpc: nghttp2_session_mem_send: %s", nghttp2_strerror((int)n));
			grpc_conn_free(c);
			return;
		}
		if (n == 0)
			break;
		evbuffer_add(out, data, (size_t)n);
	}
	if (!nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2) &&
	    evbuffer_get_length(out) == 0)
		grpc_conn_free(c);
}

static void
grpc_conn_read(struct bufferevent *bev, void *arg)
{
	struct grpc_conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	unsigned char chunk[16384];
	int n;

	while ((n = evbuffer_remove(in, chunk, sizeof(chunk))) > 0) {
		ssize_t rc;
		c->in_h2 = 1;
		rc = nghttp2_session_mem_recv(c->h2, chunk, (size_t)n);
		c->in_h2 = 0;
		if (rc < 0) {
			/* Not HTTP/2 (bad preface) or a protocol error nghttp2
			 * could not answer itself: GOAWAY, then close. */
			log_debug("grpc: closing a connection: %s", nghttp2_strerror((int)rc));
			nghttp2_session_terminate_session(c->h2, NGHTTP2_PROTOCOL_ERROR);
			bufferevent_disable(bev, EV_READ);
			evbuffer_drain(in, evbuffer_get_length(in));
			break;
		}
	}
	grpc_conn_flush(c);
}

static void
grpc_conn_write(struct bufferevent *bev, void *arg)
{
	grpc_conn_flush(arg);
}

static void
grpc_conn_event(struct bufferevent *bev, short what, void *arg)
{
	struct grpc_conn *c = arg;

	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))
		grpc_conn_free(c);
}

static nghttp2_session_callbacks *grpc_callbacks;

static void
grpc_accept(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
    int salen, void *arg)
{
	nghttp2_settings_entry iv[] = {
		{ NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, GRPC_MAX_STREAMS },
		{ NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, GRPC_MAX_HEADER_BYTES },
	};
	struct timeval rt = { GRPC_PREFACE_TIMEOUT_S, 0 }, wt = { GRPC_WRITE_TIMEOUT_S, 0 };
	struct grpc_conn *c;
	int one = 1;

	if (grpc.stopping) {
		evutil_closesocket(fd);
		return;
	}
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c = xcalloc(1, sizeof(*c));
	c->magic = GRPC_CONN_MAGIC;
	c->bev = bufferevent_socket_new(grpc.base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL) {
		log_error("grpc: bufferevent_socket_new(fd %d) failed", (int)fd);
		evutil_closesocket(fd);
		free(c);
		return;
	}
	if (nghttp2_session_server_new(&c->h2, grpc_callbacks, c) != 0) {
		log_error("grpc: nghttp2_session_server_new failed");
		bufferevent_free(c->bev);
		free(c);
		return;
	}
	c->next = grpc.conns;
	if (grpc.conns)
		grpc.conns->prev = c;
	grpc.conns = c;
	grpc.nconns++;
	nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0]));
	bufferevent_setcb(c->bev, grpc_conn_read, grpc_conn_write, grpc_conn_event, c);
	bufferevent_set_timeouts(c->bev, &rt, &wt);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	grpc_conn_flush(c);
}

static void
grpc_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	if (!grpc.stopping && grpc.lev != NULL)
		evconnlistener_enable(grpc.lev);
}

static void
grpc_accept_error(struct evconnlistener *lev, void *arg)
{
	struct timeval tv = { 1, 0 };
	int err = EVUTIL_SOCKET_ERROR();

	/* EMFILE and friends: pause a second instead of spinning. */
	log_warn("grpc: accept() failed: %s; pausing the GRPC listener for 1 s",
	    evutil_socket_error_to_string(err));
	evconnlistener_disable(lev);
	evtimer_add(grpc.retry_ev, &tv);
}

int
grpc_api_start(struct event_base *base, int listen_fd, const struct config *cfg)
{
	nghttp2_session_callbacks *cbs;

	memset(&grpc, 0, sizeof(grpc));
	grpc.base = base;
	grpc.transport = strcmp(cfg->grpc_api_error_mode, "transport") == 0;
	grpc.max_msg = cfg->grpc_api_max_receive_message_size > 0 ?
	    (size_t)cfg->grpc_api_max_receive_message_size : GRPC_DEFAULT_MAX_MSG;
	grpc.max_held = 2 * (grpc.max_msg + 5) + 65536;
	if (cfg->grpc_api_key[0] != '\0') {
		struct buf k = BUF_INIT;
		buf_printf(&k, "apikey %s", cfg->grpc_api_key);
		grpc.key = buf_steal(&k, NULL);
	}
	if (grpc_callbacks == NULL) {
		if (nghttp2_session_callbacks_new(&cbs) != 0) {
			log_error("grpc: nghttp2_session_callbacks_new failed");
			return -1;
		}
		nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, grpc_on_begin_headers);
		nghttp2_session_callbacks_set_on_header_callback(cbs, grpc_on_header);
		nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, grpc_on_data);
		nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, grpc_on_frame_recv);
		nghttp2_session_callbacks_set_on_frame_send_callback(cbs, grpc_on_frame_send);
		nghttp2_session_callbacks_set_on_stream_close_callback(cbs, grpc_on_stream_close);
		grpc_callbacks = cbs;
	}
	if (evutil_make_socket_nonblocking(listen_fd) != 0) {
		log_error("grpc: fcntl(fd %d, O_NONBLOCK) failed", listen_fd);
		return -1;
	}
	grpc.retry_ev = evtimer_new(base, grpc_retry_cb, NULL);
	grpc.lev = evconnlistener_new(base, grpc_accept, NULL, LEV_OPT_CLOSE_ON_EXEC, 0, listen_fd);
	if (grpc.lev == NULL || grpc.retry_ev == NULL) {
		log_error("grpc: evconnlistener_new(fd %d) failed", listen_fd);
		return -1;
	}
	evconnlistener_set_error_cb(grpc.lev, grpc_accept_error);
	return 0;
}

void
grpc_api_stop(void)
{
	struct grpc_conn *c, *next;

	if (grpc.base == NULL || grpc.stopping)
		return;
	grpc.stopping = 1;
	if (grpc.lev != NULL)
		evconnlistener_disable(grpc.lev);
	for (c = grpc.conns; c != NULL; c = next) {
		next = c->next;
		nghttp2_submit_goaway(c->h2, NGHTTP2_FLAG_NONE,
		    nghttp2_session_get_last_proc_stream_id(c->h2), NGHTTP2_NO_ERROR, NULL, 0);
		grpc_conn_flush(c);      /* may free c */
	}
}

size_t
grpc_api_conn_count(void)
{
	return grpc.nconns;
}

void
grpc_api_free(void)
{
	if (grpc.base == NULL)
		return;
	while (grpc.conns != NULL)
		grpc_conn_free(grpc.conns);
	if (grpc.lev != NULL)
		evconnlistener_free(grpc.lev);   /* the fd stays open: shared */
	if (grpc.retry_ev != NULL)
		event_free(grpc.retry_ev);
	if (grpc_callbacks != NULL)
		nghttp2_session_callbacks_del(grpc_callbacks);
	grpc_callbacks = NULL;
	free(grpc.key);
	memset(&grpc, 0, sizeof(grpc));
}
