/*
 * proto.c - client protocol JSON codec and code tables (see proto.h).
 *
 * Runs in the workers.  Decoding validates each '\n'-separated command with
 * the json.c scanner and keeps payloads as spans into the frame; only strings
 * with escapes are copied (unescaped) into the reader's arena.  Encoding
 * writes keys in protobuf field order, omits zero values except the keys
 * protocol.md §3.1 requires, embeds raw payloads with 0x0A removed, and never
 * emits a raw newline.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "json.h"
#include "log.h"
#include "proto.h"
#include "xmalloc.h"

/* ------------------------------------------------------------------ */
/* Code tables.                                                        */

struct proto_code_name {
	uint32_t code;
	const char *name;
};

static const struct proto_code_name proto_errors[] = {
	{ PROTO_ERR_INTERNAL, "internal server error" },
	{ PROTO_ERR_UNAUTHORIZED, "unauthorized" },
	{ PROTO_ERR_UNKNOWN_CHANNEL, "unknown channel" },
	{ PROTO_ERR_PERMISSION_DENIED, "permission denied" },
	{ PROTO_ERR_METHOD_NOT_FOUND, "method not found" },
	{ PROTO_ERR_ALREADY_SUBSCRIBED, "already subscribed" },
	{ PROTO_ERR_LIMIT_EXCEEDED, "limit exceeded" },
	{ PROTO_ERR_BAD_REQUEST, "bad request" },
	{ PROTO_ERR_NOT_AVAILABLE, "not available" },
	{ PROTO_ERR_TOKEN_EXPIRED, "token expired" },
	{ PROTO_ERR_EXPIRED, "expired" },
	{ PROTO_ERR_TOO_MANY_REQUESTS, "too many requests" },
	{ PROTO_ERR_UNRECOVERABLE_POSITION, "unrecoverable position" },
	{ PROTO_ERR_CONCURRENT_PAGINATION, "concurrent pagination" },
};

static const struct proto_code_name proto_unsubs[] = {
	{ PROTO_UNSUB_CLIENT, "client unsubscribed" },
	{ PROTO_UNSUB_DISCONNECT, "client disconnected" },
	{ PROTO_UNSUB_SERVER, "server unsubscribe" },
	{ PROTO_UNSUB_INSUFFICIENT_STATE, "insufficient state" },
	{ PROTO_UNSUB_EXPIRED, "subscription expired" },
	{ PROTO_UNSUB_STATE_INVALIDATED, "state invalidated" },
};

static const struct proto_code_name proto_disconnects[] = {
	{ PROTO_DISCONNECT_CONNECTION_CLOSED, "connection closed" },
	{ PROTO_DISCONNECT_SHUTDOWN, "shutdown" },
	{ PROTO_DISCONNECT_SERVER_ERROR, "internal server error" },
	{ PROTO_DISCONNECT_EXPIRED, "connection expired" },
	{ PROTO_DISCONNECT_SUB_EXPIRED, "subscription expired" },
	{ PROTO_DISCONNECT_SLOW, "slow" },
	{ PROTO_DISCONNECT_WRITE_ERROR, "write error" },
	{ PROTO_DISCONNECT_INSUFFICIENT_STATE, "insufficient state" },
	{ PROTO_DISCONNECT_FORCE_RECONNECT, "force reconnect" },
	{ PROTO_DISCONNECT_NO_PONG, "no pong" },
	{ PROTO_DISCONNECT_TOO_MANY_REQUESTS, "too many requests" },
	{ PROTO_DISCONNECT_STATE_INVALIDATED, "state invalidated" },
	{ PROTO_DISCONNECT_INVALID_TOKEN, "invalid token" },
	{ PROTO_DISCONNECT_BAD_REQUEST, "bad request" },
	{ PROTO_DISCONNECT_STALE, "stale" },
	{ PROTO_DISCONNECT_FORCE_NO_RECONNECT, "force disconnect" },
	{ PROTO_DISCONNECT_CONNECTION_LIMIT, "connection limit" },
	{ PROTO_DISCONNECT_CHANNEL_LIMIT, "channel limit" },
	{ PROTO_DISCONNECT_INAPPROPRIATE_PROTOCOL, "inappropriate protocol" },
	{ PROTO_DISCONNECT_PERMISSION_DENIED, "permission denied" },
	{ PROTO_DISCONNECT_NOT_AVAILABLE, "not available" },
	{ PROTO_DISCONNECT_TOO_MANY_ERRORS, "too many errors" },
};

#define PROTO_NELEM(a) (sizeof(a) / sizeof((a)[0]))

static const char *
proto_code_lookup(const struct proto_code_name *t, size_t n, uint32_t code)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (t[i].code == code)
			return t[i].name;
	return NULL;
}

const char *
proto_error_message(uint32_t code)
{
	return proto_code_lookup(proto_errors, PROTO_NELEM(proto_errors), code);
}

bool
proto_error_temporary(uint32_t code)
{
	return code == PROTO_ERR_INTERNAL || code == PROTO_ERR_TOO_MANY_REQUESTS ||
	    code == PROTO_ERR_CONCURRENT_PAGINATION;
}

const char *
proto_unsub_reason(uint32_t code)
{
	return proto_code_lookup(proto_unsubs, PROTO_NELEM(proto_unsubs), code);
}

const char *
proto_disconnect_reason(uint32_t code)
{
	return proto_code_lookup(proto_disconnects,
	    PROTO_NELEM(proto_disconnects), code);
}

bool
proto_disconnect_reconnect(uint32_t code)
{
	if (code == 1009)
		return false;   /* message size limit: terminal in the client */
	if ((code >= 3500 && code <= 3999) || (code >= 4500 && code <= 4999))
		return false;
	return true;
}

const struct proto_connect_sub *
proto_connect_sub_find(const struct proto_connect_req *r,
    struct proto_span channel)
{
	size_t i = r->nsubs;

	while (i-- > 0)
		if (r->subs[i].req.channel.len == channel.len &&
		    (channel.len == 0 || memcmp(r->subs[i].req.channel.p,
		    channel.p, channel.len) == 0))
			return &r->subs[i];
	return NULL;
}

static const char *const proto_cmd_names[PROTO_CMD_COUNT] = {
	[PROTO_CMD_NONE] = "none",
	[PROTO_CMD_CONNECT] = "connect",
	[PROTO_CMD_PING] = "ping",
	[PROTO_CMD_SUBSCRIBE] = "subscribe",
	[PROTO_CMD_UNSUBSCRIBE] = "unsubscribe",
	[PROTO_CMD_PUBLISH] = "publish",
	[PROTO_CMD_PRESENCE] = "presence",
	[PROTO_CMD_PRESENCE_STATS] = "presence_stats",
	[PROTO_CMD_HISTORY] = "history",
	[PROTO_CMD_RPC] = "rpc",
	[PROTO_CMD_SEND] = "send",
	[PROTO_CMD_REFRESH] = "refresh",
	[PROTO_CMD_SUB_REFRESH] = "sub_refresh",
};

const char *
proto_cmd_name(enum proto_cmd_type t)
{
	if ((unsigned)t >= PROTO_CMD_COUNT)
		return "none";
	return proto_cmd_names[t];
}

/* ------------------------------------------------------------------ */
/* Decoding.                                                           */

/* Per-line decoding context. */
struct proto_dec {
	struct proto_reader *rd;
};

void
proto_reader_init(struct proto_reader *rd)
{
	memset(rd, 0, sizeof(*rd));
	buf_init(&rd->arena);
}

void
proto_reader_reset(struct proto_reader *rd, const char *p, size_t len)
{
	rd->p = p;
	rd->len = len;
	rd->pos = 0;
	rd->ncmds = 0;
	rd->failed = false;
	rd->err = NULL;
	rd->err_off = 0;
	rd->arena.len = 0;
}

void
proto_reader_free(struct proto_reader *rd)
{
	buf_free(&rd->arena);
	free(rd->subs);
	rd->subs = NULL;
	rd->subs_cap = 0;
}

static int
proto_rd_fail(struct proto_reader *rd, size_t off, const char *msg)
{
	rd->failed = true;
	rd->err = msg;
	rd->err_off = off;
	return -1;
}

/* Fails at the position of p (a pointer into the current line). */
static int
proto_dec_fail(struct proto_dec *d, const char *p, const char *msg)
{
	return proto_rd_fail(d->rd, (size_t)(p - d->rd->p), msg);
}

static int
proto_dec_iter_fail(struct proto_dec *d, const struct json_iter *it)
{
	return proto_dec_fail(d, it->p + it->err.off,
	    it->err.msg ? it->err.msg : "malformed JSON");
}

/*
 * String value -> span.  Plain strings point into the frame; escaped ones
 * are unescaped into the arena, which proto_json_next() reserved to the line
 * length: decoded strings are never longer than their JSON text, each string
 * of a line is decoded at most once, so the arena never moves while a
 * command is being decoded.
 */
static int
proto_dec_string(struct proto_dec *d, const struct json_val *v,
    struct proto_span *out)
{
	struct buf *a = &d->rd->arena;
	const char *old = a->data;
	size_t start = a->len;

	if (v->type != JSON_STRING)
		return proto_dec_fail(d, v->p, "expected a string");
	if (json_str_plain(v->p, v->len)) {
		out->p = v->p + 1;
		out->len = v->len - 2;
		return 0;
	}
	if (json_unescape(v->p, v->len, a) < 0)
		return proto_dec_fail(d, v->p, "invalid string");
	ASSERT(a->data == old);
	out->p = a->data + start;
	out->len = a->len - start;
	return 0;
}

static void
proto_dec_raw(const struct json_val *v, struct proto_span *out)
{
	out->p = v->p;
	out->len = v->len;
}

static int
proto_dec_bool(struct proto_dec *d, const struct json_val *v, bool *out)
{
	if (json_get_bool(v, out) < 0)
		return proto_dec_fail(d, v->p, "expected a boolean");
	return 0;
}

static int
proto_dec_u64(struct proto_dec *d, const struct json_val *v, uint64_t *out)
{
	if (json_get_u64(v, out) < 0)
		return proto_dec_fail(d, v->p, "expected an unsigned 64-bit integer");
	return 0;
}

static int
proto_dec_u32(struct proto_dec *d, const struct json_val *v, uint32_t *out)
{
	if (json_get_u32(v, out) < 0)
		return proto_dec_fail(d, v->p, "expected an unsigned 32-bit integer");
	return 0;
}

static int
proto_dec_i64(struct proto_dec *d, const struct json_val *v, int64_t *out)
{
	if (json_get_i64(v, out) < 0)
		return proto_dec_fail(d, v->p, "expected a 64-bit integer");
	return 0;
}

static int
proto_dec_i32(struct proto_dec *d, const struct json_val *v, int32_t *out)
{
	if (json_get_i32(v, out) < 0)
		return proto_dec_fail(d, v->p, "expected a 32-bit integer");
	return 0;
}

/*
 * Member loop shared by every request decoder: iterates the object obj,
 * skips null members, runs BODY with k (key) and v (value) in scope; BODY
 * sets rc < 0 on a type error.
 */
#define PROTO_FOR_MEMBERS(d, obj, BODY) do {                              \
	struct json_iter it_;                                             \
	int rc_;                                                          \
	if ((obj)->type != JSON_OBJECT)                                   \
		return proto_dec_fail((d), (obj)->p, "expected an object"); \
	json_iter_init(&it_, (obj)->p, (obj)->len);                       \
	while ((rc_ = json_iter_next(&it_, &k, &v)) == 1) {               \
		int rc = 0;                                               \
		if (v.type == JSON_NULL)                                  \
			continue;                                         \
		BODY                                                      \
		if (rc < 0)                                               \
			return -1;                                        \
	}                                                                 \
	if (rc_ < 0)                                                      \
		return proto_dec_iter_fail((d), &it_);                    \
} while (0)

#define KEY(name) json_str_eq(&k, name)

static int
proto_dec_subscribe(struct proto_dec *d, const struct json_val *obj,
    struct proto_subscribe_req *r)
{
	struct json_val k, v;

	memset(r, 0, sizeof(*r));
	PROTO_FOR_MEMBERS(d, obj, {
		if (KEY("channel"))
			rc = proto_dec_string(d, &v, &r->channel);
		else if (KEY("token"))
			rc = proto_dec_string(d, &v, &r->token);
		else if (KEY("recover"))
			rc = proto_dec_bool(d, &v, &r->recover);
		else if (KEY("epoch"))
			rc = proto_dec_string(d, &v, &r->epoch);
		else if (KEY("offset"))
			rc = proto_dec_u64(d, &v, &r->offset);
		else if (KEY("data"))
			proto_dec_raw(&v, &r->data);
		else if (KEY("positioned"))
			rc = proto_dec_bool(d, &v, &r->positioned);
		else if (KEY("recoverable"))
			rc = proto_dec_bool(d, &v, &r->recoverable);
		else if (KEY("join_leave"))
			rc = proto_dec_bool(d, &v, &r->join_leave);
		else if (KEY("delta"))
			rc = proto_dec_string(d, &v, &r->delta);
		else if (KEY("tf")) {
			if (v.type != JSON_OBJECT)
				rc = proto_dec_fail(d, v.p, "expected an object");
			r->has_tf = true;
			proto_dec_raw(&v, &r->tf);
		} else if (KEY("flag"))
			rc = proto_dec_i64(d, &v, &r->flag);
		else if (KEY("type"))
			rc = proto_dec_i32(d, &v, &r->type);
	});
	return 0;
}

/*
 * ConnectRequest.subs: channel -> SubscribeRequest, appended to rd->subs in
 * document order.  A null value is an entry with default fields (the map key
 * still counts, as in Go).  Duplicate channels are all kept; see
 * proto_connect_sub_find().
 */
static int
proto_dec_connect_subs(struct proto_dec *d, const struct json_val *obj,
    size_t *nsubs)
{
	struct proto_reader *rd = d->rd;
	struct json_iter it;
	struct json_val k, v;
	struct proto_span channel;
	struct proto_connect_sub *s;
	int rc;

	*nsubs = 0;
	if (obj->type != JSON_OBJECT)
		return proto_dec_fail(d, obj->p, "expected an object");
	json_iter_init(&it, obj->p, obj->len);
	while ((rc = json_iter_next(&it, &k, &v)) == 1) {
		if (proto_dec_string(d, &k, &channel) < 0)
			return -1;
		if (*nsubs == rd->subs_cap) {
			rd->subs_cap = rd->subs_cap ? rd->subs_cap * 2 : 8;
			rd->subs = xrealloc(rd->subs,
			    rd->subs_cap * sizeof(*rd->subs));
		}
		s = &rd->subs[*nsubs];
		if (v.type == JSON_NULL)
			memset(s, 0, sizeof(*s));
		else if (proto_dec_subscribe(d, &v, &s->req) < 0)
			return -1;
		s->req.channel = channel;
		(*nsubs)++;
	}
	if (rc < 0)
		return proto_dec_iter_fail(d, &it);
	return 0;
}

static int
proto_dec_connect(struct proto_dec *d, const struct json_val *obj,
    struct proto_connect_req *r)
{
	struct json_val k, v;
	size_t nsubs = 0;

	memset(r, 0, sizeof(*r));
	PROTO_FOR_MEMBERS(d, obj, {
		if (KEY("token"))
			rc = proto_dec_string(d, &v, &r->token);
		else if (KEY("data"))
			proto_dec_raw(&v, &r->data);
		else if (KEY("name"))
			rc = proto_dec_string(d, &v, &r->name);
		else if (KEY("version"))
			rc = proto_dec_string(d, &v, &r->version);
		else if (KEY("subs"))
			rc = proto_dec_connect_subs(d, &v, &nsubs);
	});
	/* rd->subs may have moved while growing: take the pointer at the end. */
	r->subs = nsubs ? d->rd->subs : NULL;
	r->nsubs = nsubs;
	return 0;
}

static int
proto_dec_channel(struct proto_dec *d, const struct json_val *obj,
    struct proto_channel_req *r)
{
	struct json_val k, v;

	memset(r, 0, sizeof(*r));
	PROTO_FOR_MEMBERS(d, obj, {
		if (KEY("channel"))
			rc = proto_dec_string(d, &v, &r->channel);
	});
	return 0;
}

static int
proto_dec_publish(struct proto_dec *d, const struct json_val *obj,
    struct proto_publish_req *r)
{
	struct json_val k, v;

	memset(r, 0, sizeof(*r));
	PROTO_FOR_MEMBERS(d, obj, {
		if (KEY("channel"))
			rc = proto_dec_string(d, &v, &r->channel);
		else if (KEY("data"))
			proto_dec_raw(&v, &r->data);
		else if (KEY("type"))
			rc = proto_dec_i32(d, &v, &r->type);
	});
	return 0;
}

static int
proto_dec_since(struct proto_dec *d, const struct json_val *obj,
    struct proto_history_req *r)
{
	struct json_val k, v;

	r->has_since = true;
	r->since_offset = 0;
	r->since_epoch = PROTO_SPAN_NULL;
	PROTO_FOR_MEMBERS(d, obj, {
		if (KEY("offset"))
			rc = proto_dec_u64(d, &v, &r->since_offset);
		else if (KEY("epoch"))
			rc = proto_dec_string(d, &v, &r->since_epoch);
	});
	return 0;
}

static int
proto_dec_history(struct proto_dec *d, const struct json_val *obj,
    struct proto_history_req *r)
{
	struct json_val k, v;

	memset(r, 0, sizeof(*r));
	PROTO_FOR_MEMBERS(d, obj, {
		if (KEY("channel"))
			rc = proto_dec_string(d, &v, &r->channel);
		else if (KEY("limit"))
			rc = proto_dec_i32(d, &v, &r->limit);
		else if (KEY("since"))
			rc = proto_dec_since(d, &v, r);
		else if (KEY("reverse"))
			rc = proto_dec_bool(d, &v, &r->reverse);
	});
	return 0;
}

static int
proto_dec_rpc(struct proto_dec *d, const struct json_val *obj,
    struct proto_rpc_req *r)
{
	struct json_val k, v;

	memset(r, 0, sizeof(*r));
	PROTO_FOR_MEMBERS(d, obj, {
		if (KEY("method"))
			rc = proto_dec_string(d, &v, &r->method);
		else if (KEY("data"))
			proto_dec_raw(&v, &r->data);
	});
	return 0;
}

static int
proto_dec_send(struct proto_dec *d, const struct json_val *obj,
    struct proto_send_req *r)
{
	struct json_val k, v;

	memset(r, 0, sizeof(*r));
	PROTO_FOR_MEMBERS(d, obj, {
		if (KEY("data"))
			proto_dec_raw(&v, &r->data);
	});
	return 0;
}

static int
proto_dec_refresh(struct proto_dec *d, const struct json_val *obj,
    struct proto_refresh_req *r)
{
	struct json_val k, v;

	memset(r, 0, sizeof(*r));
	PROTO_FOR_MEMBERS(d, obj, {
		if (KEY("token"))
			rc = proto_dec_string(d, &v, &r->token);
	});
	return 0;
}

static int
proto_dec_sub_refresh(struct proto_dec *d, const struct json_val *obj,
    struct proto_sub_refresh_req *r)
{
	struct json_val k, v;

	memset(r, 0, sizeof(*r));
	PROTO_FOR_MEMBERS(d, obj, {
		if (KEY("channel"))
			rc = proto_dec_string(d, &v, &r->channel);
		else if (KEY("token"))
			rc = proto_dec_string(d, &v, &r->token);
		else if (KEY("type"))
			rc = proto_dec_i32(d, &v, &r->type);
	});
	return 0;
}

static int
proto_dec_ping(struct proto_dec *d, const struct json_val *obj)
{
	if (obj->type != JSON_OBJECT)
		return proto_dec_fail(d, obj->p, "expected an object");
	return 0;
}

static int
proto_dec_request(struct proto_dec *d, enum proto_cmd_type t,
    const struct json_val *v, struct proto_cmd *cmd)
{
	switch (t) {
	case PROTO_CMD_CONNECT:
		return proto_dec_connect(d, v, &cmd->connect);
	case PROTO_CMD_PING:
		return proto_dec_ping(d, v);
	case PROTO_CMD_SUBSCRIBE:
		return proto_dec_subscribe(d, v, &cmd->subscribe);
	case PROTO_CMD_UNSUBSCRIBE:
		return proto_dec_channel(d, v, &cmd->unsubscribe);
	case PROTO_CMD_PUBLISH:
		return proto_dec_publish(d, v, &cmd->publish);
	case PROTO_CMD_PRESENCE:
		return proto_dec_channel(d, v, &cmd->presence);
	case PROTO_CMD_PRESENCE_STATS:
		return proto_dec_channel(d, v, &cmd->presence_stats);
	case PROTO_CMD_HISTORY:
		return proto_dec_history(d, v, &cmd->history);
	case PROTO_CMD_RPC:
		return proto_dec_rpc(d, v, &cmd->rpc);
	case PROTO_CMD_SEND:
		return proto_dec_send(d, v, &cmd->send);
	case PROTO_CMD_REFRESH:
		return proto_dec_refresh(d, v, &cmd->refresh);
	case PROTO_CMD_SUB_REFRESH:
		return proto_dec_sub_refresh(d, v, &cmd->sub_refresh);
	default:
		break;
	}
	return proto_dec_fail(d, v->p, "unknown request");
}

static int
proto_dec_command(struct proto_dec *d, const char *line, size_t len,
    struct proto_cmd *cmd)
{
	struct json_iter it;
	struct json_val k, v;
	size_t end;
	int rc, t;

	if (json_iter_init(&it, line, len) < 0 || !it.object)
		return proto_dec_fail(d, line + it.err.off,
		    "command is not a JSON object");
	while ((rc = json_iter_next(&it, &k, &v)) == 1) {
		if (v.type == JSON_NULL)
			continue;
		if (KEY("id")) {
			if (proto_dec_u32(d, &v, &cmd->id) < 0)
				return -1;
			continue;
		}
		for (t = PROTO_CMD_CONNECT; t < PROTO_CMD_COUNT; t++)
			if (KEY(proto_cmd_names[t]))
				break;
		if (t == PROTO_CMD_COUNT)
			continue;       /* unknown key: ignored */
		if (proto_dec_request(d, (enum proto_cmd_type)t, &v, cmd) < 0)
			return -1;
		cmd->present |= 1u << t;
	}
	if (rc < 0)
		return proto_dec_iter_fail(d, &it);
	end = json_iter_end(&it);
	while (end < len && (line[end] == ' ' || line[end] == '\t' ||
	    line[end] == '\r'))
		end++;
	if (end != len)
		return proto_dec_fail(d, line + end,
		    "trailing data after command");
	return 0;
}

int
proto_json_next(struct proto_reader *rd, struct proto_cmd *cmd)
{
	struct proto_dec d;
	const char *nl;
	size_t start, end;
	int t;

	if (rd->failed)
		return -1;
	if (rd->pos >= rd->len) {
		if (rd->ncmds == 0)
			return proto_rd_fail(rd, 0, "empty frame");
		return 0;
	}
	start = rd->pos;
	nl = memchr(rd->p + start, '\n', rd->len - start);
	end = nl ? (size_t)(nl - rd->p) : rd->len;
	rd->pos = nl ? end + 1 : rd->len;
	if (end == start)
		return proto_rd_fail(rd, start, "empty line in frame");

	memset(cmd, 0, sizeof(*cmd));
	rd->arena.len = 0;
	buf_reserve(&rd->arena, end - start);
	d.rd = rd;
	if (proto_dec_command(&d, rd->p + start, end - start, cmd) < 0)
		return -1;
	for (t = PROTO_CMD_CONNECT; t < PROTO_CMD_COUNT; t++)
		if (proto_cmd_has(cmd, (enum proto_cmd_type)t))
			break;
	cmd->type = t < PROTO_CMD_COUNT ? (enum proto_cmd_type)t : PROTO_CMD_NONE;
	rd->ncmds++;
	return 1;
}

/* ------------------------------------------------------------------ */
/* Encoding.                                                           */

#define PUTLIT(b, s) buf_append((b), (s), sizeof(s) - 1)

/* Writes ',' unless first, then "key":  (keys are plain ASCII literals). */
static void
proto_key(struct buf *b, bool *more, const char *key)
{
	if (*more)
		buf_putc(b, ',');
	*more = true;
	buf_putc(b, '"');
	buf_puts(b, key);
	PUTLIT(b, "\":");
}

static void
proto_put_span_string(struct buf *b, struct proto_span s)
{
	json_put_string(b, s.p ? s.p : "", s.len);
}

static void
proto_field_str(struct buf *b, bool *more, const char *key,
    struct proto_span s)
{
	if (s.len == 0)
		return;
	proto_key(b, more, key);
	json_put_string(b, s.p, s.len);
}

static void
proto_field_raw(struct buf *b, bool *more, const char *key,
    struct proto_span s)
{
	if (s.len == 0)
		return;
	proto_key(b, more, key);
	json_put_raw(b, s.p, s.len);
}

static void
proto_field_bool(struct buf *b, bool *more, const char *key, bool v)
{
	if (!v)
		return;
	proto_key(b, more, key);
	PUTLIT(b, "true");
}

static void
proto_field_u64(struct buf *b, bool *more, const char *key, uint64_t v)
{
	if (v == 0)
		return;
	proto_key(b, more, key);
	buf_put_u64(b, v);
}

static void
proto_field_i64(struct buf *b, bool *more, const char *key, int64_t v)
{
	if (v == 0)
		return;
	proto_key(b, more, key);
	buf_put_i64(b, v);
}

/* `{"id":N,"<key>":` (id omitted when 0); the caller closes with '}'. */
static void
proto_reply_open(struct buf *b, uint32_t id, const char *key)
{
	bool more = false;

	buf_putc(b, '{');
	proto_field_u64(b, &more, "id", id);
	proto_key(b, &more, key);
}

void
proto_json_client_info(struct buf *b, const struct proto_client_info *ci)
{
	bool more = false;

	buf_putc(b, '{');
	proto_key(b, &more, "user");
	proto_put_span_string(b, ci->user);
	proto_key(b, &more, "client");
	proto_put_span_string(b, ci->client);
	proto_field_raw(b, &more, "conn_info", ci->conn_info);
	proto_field_raw(b, &more, "chan_info", ci->chan_info);
	buf_putc(b, '}');
}

void
proto_json_publication(struct buf *b, const struct proto_publication *pub)
{
	bool more = false;
	size_t i;

	buf_putc(b, '{');
	if (pub->data_string)
		proto_field_str(b, &more, "data", pub->data);
	else
		proto_field_raw(b, &more, "data", pub->data);
	if (pub->has_info) {
		proto_key(b, &more, "info");
		proto_json_client_info(b, &pub->info);
	}
	proto_field_u64(b, &more, "offset", pub->offset);
	if (pub->ntags > 0) {
		proto_key(b, &more, "tags");
		buf_putc(b, '{');
		for (i = 0; i < pub->ntags; i++) {
			if (i > 0)
				buf_putc(b, ',');
			proto_put_span_string(b, pub->tags[i].key);
			buf_putc(b, ':');
			proto_put_span_string(b, pub->tags[i].value);
		}
		buf_putc(b, '}');
	}
	proto_field_bool(b, &more, "delta", pub->delta);
	proto_field_str(b, &more, "epoch", pub->epoch);
	buf_putc(b, '}');
}

static void
proto_publications(struct buf *b, const struct proto_publication *pubs,
    size_t n)
{
	size_t i;

	buf_putc(b, '[');
	for (i = 0; i < n; i++) {
		if (i > 0)
			buf_putc(b, ',');
		proto_json_publication(b, &pubs[i]);
	}
	buf_putc(b, ']');
}

static void
proto_subscribe_result_obj(struct buf *b, const struct proto_subscribe_result *r)
{
	bool more = false;

	buf_putc(b, '{');
	proto_field_bool(b, &more, "expires", r->expires);
	proto_field_u64(b, &more, "ttl", r->ttl);
	proto_field_bool(b, &more, "recoverable", r->recoverable);
	proto_field_str(b, &more, "epoch", r->epoch);
	if (r->npublications > 0) {
		proto_key(b, &more, "publications");
		proto_publications(b, r->publications, r->npublications);
	}
	proto_field_bool(b, &more, "recovered", r->recovered);
	proto_field_u64(b, &more, "offset", r->offset);
	proto_field_bool(b, &more, "positioned", r->positioned);
	proto_field_raw(b, &more, "data", r->data);
	proto_field_bool(b, &more, "was_recovering", r->was_recovering);
	proto_field_bool(b, &more, "delta", r->delta);
	buf_putc(b, '}');
}

static void
proto_connect_subs(struct buf *b, bool *more,
    const struct proto_connect_result *r)
{
	size_t i;

	if (r->nsubs == 0)
		return;
	proto_key(b, more, "subs");
	buf_putc(b, '{');
	for (i = 0; i < r->nsubs; i++) {
		if (i > 0)
			buf_putc(b, ',');
		proto_put_span_string(b, r->subs[i].channel);
		buf_putc(b, ':');
		proto_subscribe_result_obj(b, &r->subs[i].result);
	}
	buf_putc(b, '}');
}

/* ConnectResult field order: 1 client, 2 version, 3 expires, 4 ttl, 5 data,
 * 6 subs, 7 ping, 8 pong, 9 session, 10 node, 11 time. */
static void
proto_connect_result_obj(struct buf *b, const struct proto_connect_result *r)
{
	bool more = false;

	buf_putc(b, '{');
	proto_field_str(b, &more, "client", r->client);
	proto_field_str(b, &more, "version", r->version);
	proto_field_bool(b, &more, "expires", r->expires);
	proto_field_u64(b, &more, "ttl", r->ttl);
	proto_field_raw(b, &more, "data", r->data);
	proto_connect_subs(b, &more, r);
	proto_field_u64(b, &more, "ping", r->ping);
	proto_field_bool(b, &more, "pong", r->pong);
	proto_field_str(b, &more, "session", r->session);
	proto_field_str(b, &more, "node", r->node);
	proto_field_i64(b, &more, "time", r->time);
	buf_putc(b, '}');
}

/* Connect push field order: 1 client, 2 version, 3 data, 4 subs, 5 expires,
 * 6 ttl, 7 ping, 8 pong, 9 session, 10 node. */
static void
proto_connect_push_obj(struct buf *b, const struct proto_connect_result *r)
{
	bool more = false;

	buf_putc(b, '{');
	proto_field_str(b, &more, "client", r->client);
	proto_field_str(b, &more, "version", r->version);
	proto_field_raw(b, &more, "data", r->data);
	proto_connect_subs(b, &more, r);
	proto_field_bool(b, &more, "expires", r->expires);
	proto_field_u64(b, &more, "ttl", r->ttl);
	proto_field_u64(b, &more, "ping", r->ping);
	proto_field_bool(b, &more, "pong", r->pong);
	proto_field_str(b, &more, "session", r->session);
	proto_field_str(b, &more, "node", r->node);
	buf_putc(b, '}');
}

void
proto_json_ping(struct buf *out)
{
	PUTLIT(out, "{}");
}

void
proto_json_error(struct buf *out, uint32_t id, uint32_t code,
    const char *message, bool temporary)
{
	bool more = false;

	proto_reply_open(out, id, "error");
	buf_putc(out, '{');
	proto_field_u64(out, &more, "code", code);
	if (message != NULL)
		proto_field_str(out, &more, "message", proto_span_str(message));
	proto_field_bool(out, &more, "temporary", temporary);
	PUTLIT(out, "}}");
}

void
proto_json_error_code(struct buf *out, uint32_t id, uint32_t code)
{
	proto_json_error(out, id, code, proto_error_message(code),
	    proto_error_temporary(code));
}

void
proto_json_empty_result(struct buf *out, uint32_t id, enum proto_cmd_type type)
{
	ASSERT(type > PROTO_CMD_NONE && type < PROTO_CMD_COUNT);
	proto_reply_open(out, id, proto_cmd_names[type]);
	PUTLIT(out, "{}}");
}

void
proto_json_connect_result(struct buf *out, uint32_t id,
    const struct proto_connect_result *r)
{
	proto_reply_open(out, id, "connect");
	proto_connect_result_obj(out, r);
	buf_putc(out, '}');
}

void
proto_json_subscribe_result(struct buf *out, uint32_t id,
    const struct proto_subscribe_result *r)
{
	proto_reply_open(out, id, "subscribe");
	proto_subscribe_result_obj(out, r);
	buf_putc(out, '}');
}

void
proto_json_presence_result(struct buf *out, uint32_t id,
    const struct proto_client_info *infos, size_t n)
{
	size_t i;

	proto_reply_open(out, id, "presence");
	PUTLIT(out, "{\"presence\":{");
	for (i = 0; i < n; i++) {
		if (i > 0)
			buf_putc(out, ',');
		proto_put_span_string(out, infos[i].client);
		buf_putc(out, ':');
		proto_json_client_info(out, &infos[i]);
	}
	PUTLIT(out, "}}}");
}

void
proto_json_presence_stats_result(struct buf *out, uint32_t id,
    uint32_t num_clients, uint32_t num_users)
{
	proto_reply_open(out, id, "presence_stats");
	PUTLIT(out, "{\"num_clients\":");
	buf_put_u64(out, num_clients);
	PUTLIT(out, ",\"num_users\":");
	buf_put_u64(out, num_users);
	PUTLIT(out, "}}");
}

void
proto_json_history_result(struct buf *out, uint32_t id,
    const struct proto_publication *pubs, size_t n, struct proto_span epoch,
    uint64_t offset)
{
	proto_reply_open(out, id, "history");
	PUTLIT(out, "{\"publications\":");
	proto_publications(out, pubs, n);
	PUTLIT(out, ",\"epoch\":");
	proto_put_span_string(out, epoch);
	PUTLIT(out, ",\"offset\":");
	buf_put_u64(out, offset);
	PUTLIT(out, "}}");
}

void
proto_json_rpc_result(struct buf *out, uint32_t id, struct proto_span data)
{
	bool more = false;

	proto_reply_open(out, id, "rpc");
	buf_putc(out, '{');
	proto_field_raw(out, &more, "data", data);
	PUTLIT(out, "}}");
}

void
proto_json_refresh_result(struct buf *out, uint32_t id,
    const struct proto_refresh_result *r)
{
	bool more = false;

	proto_reply_open(out, id, "refresh");
	buf_putc(out, '{');
	proto_field_str(out, &more, "client", r->client);
	proto_field_str(out, &more, "version", r->version);
	proto_field_bool(out, &more, "expires", r->expires);
	proto_field_u64(out, &more, "ttl", r->ttl);
	PUTLIT(out, "}}");
}

void
proto_json_sub_refresh_result(struct buf *out, uint32_t id, bool expires,
    uint32_t ttl)
{
	bool more = false;

	proto_reply_open(out, id, "sub_refresh");
	buf_putc(out, '{');
	proto_field_bool(out, &more, "expires", expires);
	proto_field_u64(out, &more, "ttl", ttl);
	PUTLIT(out, "}}");
}

static void
proto_code_reason(struct buf *b, uint32_t code, struct proto_span reason)
{
	bool more = false;

	buf_putc(b, '{');
	proto_field_u64(b, &more, "code", code);
	proto_field_str(b, &more, "reason", reason);
	buf_putc(b, '}');
}

void
proto_json_push_bare(struct buf *out, const struct proto_push *push)
{
	static const struct proto_subscribe_result empty_sub;
	static const struct proto_connect_result empty_connect;
	static const struct proto_client_info empty_info;
	static const struct proto_publication empty_pub;
	bool more = false;

	buf_putc(out, '{');
	proto_field_str(out, &more, "channel", push->channel);
	switch (push->type) {
	case PROTO_PUSH_PUB:
		proto_key(out, &more, "pub");
		proto_json_publication(out, push->pub ? push->pub : &empty_pub);
		break;
	case PROTO_PUSH_JOIN:
	case PROTO_PUSH_LEAVE:
		proto_key(out, &more,
		    push->type == PROTO_PUSH_JOIN ? "join" : "leave");
		PUTLIT(out, "{\"info\":");
		proto_json_client_info(out, push->info ? push->info : &empty_info);
		buf_putc(out, '}');
		break;
	case PROTO_PUSH_UNSUBSCRIBE:
		proto_key(out, &more, "unsubscribe");
		proto_code_reason(out, push->code, push->reason);
		break;
	case PROTO_PUSH_MESSAGE: {
		bool m = false;

		proto_key(out, &more, "message");
		buf_putc(out, '{');
		proto_field_raw(out, &m, "data", push->data);
		buf_putc(out, '}');
		break;
	}
	case PROTO_PUSH_SUBSCRIBE: {
		const struct proto_subscribe_result *s =
		    push->subscribe ? push->subscribe : &empty_sub;
		bool m = false;

		proto_key(out, &more, "subscribe");
		buf_putc(out, '{');
		proto_field_bool(out, &m, "recoverable", s->recoverable);
		proto_field_str(out, &m, "epoch", s->epoch);
		proto_field_u64(out, &m, "offset", s->offset);
		proto_field_bool(out, &m, "positioned", s->positioned);
		proto_field_raw(out, &m, "data", s->data);
		buf_putc(out, '}');
		break;
	}
	case PROTO_PUSH_CONNECT:
		proto_key(out, &more, "connect");
		proto_connect_push_obj(out,
		    push->connect ? push->connect : &empty_connect);
		break;
	case PROTO_PUSH_DISCONNECT:
		proto_key(out, &more, "disconnect");
		proto_code_reason(out, push->code, push->reason);
		break;
	case PROTO_PUSH_REFRESH: {
		bool m = false;

		proto_key(out, &more, "refresh");
		buf_putc(out, '{');
		proto_field_bool(out, &m, "expires", push->expires);
		proto_field_u64(out, &m, "ttl", push->ttl);
		buf_putc(out, '}');
		break;
	}
	}
	buf_putc(out, '}');
}

void
proto_json_push(struct buf *out, const struct proto_push *push)
{
	PUTLIT(out, "{\"push\":");
	proto_json_push_bare(out, push);
	buf_putc(out, '}');
}

void
proto_json_push_pub(struct buf *out, struct proto_span channel,
    const struct proto_publication *pub)
{
	bool more = false;

	PUTLIT(out, "{\"push\":{");
	proto_field_str(out, &more, "channel", channel);
	proto_key(out, &more, "pub");
	proto_json_publication(out, pub);
	PUTLIT(out, "}}");
}
