/*
 * proto.h - the client protocol (v2): format-neutral message structs, the
 * JSON codec, and the error / unsubscribe / disconnect code tables.
 *
 * Runs in the workers (client connections).  Decoding turns one transport
 * frame into commands; encoding appends one JSON object per reply or push to
 * a struct buf (no newline: the transport joins messages with '\n').  The
 * structs carry no JSON-specific state, so the protobuf codec fills and
 * consumes the same ones.  Payload fields (`data`, `info`, `conn_info`,
 * `chan_info`) are spans of raw bytes: raw JSON text on JSON connections.
 */
#ifndef CENTRIFUGO_PROTO_H
#define CENTRIFUGO_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "buf.h"

/* Bytes owned by someone else (the frame, a decoder arena, the caller). */
struct proto_span {
	const char *p;
	size_t len;
};

#define PROTO_SPAN_NULL ((struct proto_span){ NULL, 0 })
/* Span over a NUL-terminated string (not copied). */
static inline struct proto_span
proto_span_str(const char *s)
{
	struct proto_span sp = { s, s ? strlen(s) : 0 };

	return sp;
}
/* Span equals the NUL-terminated string s. */
static inline bool
proto_span_eq(struct proto_span sp, const char *s)
{
	size_t n = strlen(s);

	return sp.len == n && (n == 0 || memcmp(sp.p, s, n) == 0);
}

/* ------------------------------------------------------------------ */
/* Codes (protocol.md §5): the enum values are the wire values.       */

enum proto_error_code {
	PROTO_ERR_NONE = 0,
	PROTO_ERR_INTERNAL = 100,
	PROTO_ERR_UNAUTHORIZED = 101,
	PROTO_ERR_UNKNOWN_CHANNEL = 102,
	PROTO_ERR_PERMISSION_DENIED = 103,
	PROTO_ERR_METHOD_NOT_FOUND = 104,
	PROTO_ERR_ALREADY_SUBSCRIBED = 105,
	PROTO_ERR_LIMIT_EXCEEDED = 106,
	PROTO_ERR_BAD_REQUEST = 107,
	PROTO_ERR_NOT_AVAILABLE = 108,
	PROTO_ERR_TOKEN_EXPIRED = 109,
	PROTO_ERR_EXPIRED = 110,
	PROTO_ERR_TOO_MANY_REQUESTS = 111,
	PROTO_ERR_UNRECOVERABLE_POSITION = 112,
	PROTO_ERR_CONCURRENT_PAGINATION = 113
};

enum proto_unsub_code {
	PROTO_UNSUB_CLIENT = 0,                 /* internal only */
	PROTO_UNSUB_DISCONNECT = 1,             /* internal only */
	PROTO_UNSUB_SERVER = 2000,
	PROTO_UNSUB_INSUFFICIENT_STATE = 2500,
	PROTO_UNSUB_EXPIRED = 2501,
	PROTO_UNSUB_STATE_INVALIDATED = 2502
};

enum proto_disconnect_code {
	PROTO_DISCONNECT_NONE = 0,
	PROTO_DISCONNECT_CONNECTION_CLOSED = 3000,  /* internal, never sent */
	PROTO_DISCONNECT_SHUTDOWN = 3001,
	PROTO_DISCONNECT_SERVER_ERROR = 3004,
	PROTO_DISCONNECT_EXPIRED = 3005,
	PROTO_DISCONNECT_SUB_EXPIRED = 3006,
	PROTO_DISCONNECT_SLOW = 3008,
	PROTO_DISCONNECT_WRITE_ERROR = 3009,
	PROTO_DISCONNECT_INSUFFICIENT_STATE = 3010,
	PROTO_DISCONNECT_FORCE_RECONNECT = 3011,
	PROTO_DISCONNECT_NO_PONG = 3012,
	PROTO_DISCONNECT_TOO_MANY_REQUESTS = 3013,
	PROTO_DISCONNECT_STATE_INVALIDATED = 3014,
	PROTO_DISCONNECT_INVALID_TOKEN = 3500,
	PROTO_DISCONNECT_BAD_REQUEST = 3501,
	PROTO_DISCONNECT_STALE = 3502,
	PROTO_DISCONNECT_FORCE_NO_RECONNECT = 3503,
	PROTO_DISCONNECT_CONNECTION_LIMIT = 3504,
	PROTO_DISCONNECT_CHANNEL_LIMIT = 3505,
	PROTO_DISCONNECT_INAPPROPRIATE_PROTOCOL = 3506,
	PROTO_DISCONNECT_PERMISSION_DENIED = 3507,
	PROTO_DISCONNECT_NOT_AVAILABLE = 3508,
	PROTO_DISCONNECT_TOO_MANY_ERRORS = 3509
};

/* Exact upstream message of an error code ("permission denied"), or NULL
 * for a code not in §5.1 (application codes carry their own message). */
const char *proto_error_message(uint32_t code);
/* The `temporary` flag upstream sets for this code (100, 111, 113). */
bool proto_error_temporary(uint32_t code);
/* Reason of an unsubscribe code ("insufficient state"), or NULL. */
const char *proto_unsub_reason(uint32_t code);
/* Reason of a disconnect code ("bad request"), or NULL (4000-4999: the
 * application's own reason). */
const char *proto_disconnect_reason(uint32_t code);
/* Does centrifuge-js reconnect after this disconnect code? (§5.3, §5.4) */
bool proto_disconnect_reconnect(uint32_t code);

/* ------------------------------------------------------------------ */
/* Commands (client -> server).                                        */

/* Request kinds, in the upstream dispatch order (§3.2). */
enum proto_cmd_type {
	PROTO_CMD_NONE = 0,
	PROTO_CMD_CONNECT,
	PROTO_CMD_PING,
	PROTO_CMD_SUBSCRIBE,
	PROTO_CMD_UNSUBSCRIBE,
	PROTO_CMD_PUBLISH,
	PROTO_CMD_PRESENCE,
	PROTO_CMD_PRESENCE_STATS,
	PROTO_CMD_HISTORY,
	PROTO_CMD_RPC,
	PROTO_CMD_SEND,
	PROTO_CMD_REFRESH,
	PROTO_CMD_SUB_REFRESH,
	PROTO_CMD_COUNT
};

/* JSON key / log name of a request kind ("presence_stats"); "none". */
const char *proto_cmd_name(enum proto_cmd_type t);

struct proto_subscribe_req {
	struct proto_span channel;
	struct proto_span token;
	bool recover;
	struct proto_span epoch;
	uint64_t offset;
	struct proto_span data;         /* raw */
	bool positioned;
	bool recoverable;
	bool join_leave;
	struct proto_span delta;        /* "fossil" or empty */
	bool has_tf;                    /* a tags filter was sent */
	struct proto_span tf;           /* raw FilterNode (JSON object) */
	int64_t flag;
	int32_t type;
};

/* One entry of ConnectRequest.subs: the map key is put in req.channel; only
 * recover/epoch/offset/delta are meaningful (§3.5.1). */
struct proto_connect_sub {
	struct proto_subscribe_req req;
};

struct proto_connect_req {
	struct proto_span token;
	struct proto_span data;         /* raw */
	struct proto_span name;
	struct proto_span version;
	const struct proto_connect_sub *subs;   /* map order as received */
	size_t nsubs;
	/* headers, flag, dict, profile: ignored */
};

/* unsubscribe, presence, presence_stats */
struct proto_channel_req {
	struct proto_span channel;
};

struct proto_publish_req {
	struct proto_span channel;
	struct proto_span data;         /* raw */
	int32_t type;
};

struct proto_history_req {
	struct proto_span channel;
	int32_t limit;
	bool has_since;
	uint64_t since_offset;
	struct proto_span since_epoch;
	bool reverse;
};

struct proto_rpc_req {
	struct proto_span method;
	struct proto_span data;         /* raw */
};

struct proto_send_req {
	struct proto_span data;         /* raw */
};

struct proto_refresh_req {
	struct proto_span token;
};

struct proto_sub_refresh_req {
	struct proto_span channel;
	struct proto_span token;
	int32_t type;
};

/*
 * One decoded command.  `present` has bit (1u << t) set for every request
 * kind t whose key was present with a non-null value (an empty `{}` counts);
 * `type` is the first of them in dispatch order, PROTO_CMD_NONE if none.
 * So: pong = id 0 and no SEND; a lone ping = type PROTO_CMD_PING (§4.1).
 * Fields of absent requests are zero.  Absent / null / zero-length strings
 * are { NULL, 0 } or zero-length spans: test .len, not .p.
 */
struct proto_cmd {
	uint32_t id;
	enum proto_cmd_type type;
	uint32_t present;
	struct proto_connect_req connect;
	struct proto_subscribe_req subscribe;
	struct proto_channel_req unsubscribe;
	struct proto_publish_req publish;
	struct proto_channel_req presence;
	struct proto_channel_req presence_stats;
	struct proto_history_req history;
	struct proto_rpc_req rpc;
	struct proto_send_req send;
	struct proto_refresh_req refresh;
	struct proto_sub_refresh_req sub_refresh;
};

/* The entry of r->subs for channel (the last one if the client sent the key
 * twice: last wins), or NULL. */
const struct proto_connect_sub *proto_connect_sub_find(
    const struct proto_connect_req *r, struct proto_span channel);

static inline bool
proto_cmd_has(const struct proto_cmd *cmd, enum proto_cmd_type t)
{
	return (cmd->present >> t) & 1u;
}

/*
 * Decoder state for one frame.  Init once per connection, reset per frame.
 * Spans in a decoded proto_cmd point into the frame (strings without
 * escapes, raw payloads) or into the reader's arena (unescaped strings), so
 * they stay valid until the next proto_json_next() / proto_reader_reset() /
 * proto_reader_free() and as long as the frame memory lives.
 */
struct proto_reader {
	const char *p;
	size_t len;
	size_t pos;
	unsigned ncmds;                 /* commands decoded from this frame */
	bool failed;
	const char *err;                /* why the last call returned -1 */
	size_t err_off;                 /* byte offset in the frame */
	struct buf arena;
	struct proto_connect_sub *subs;
	size_t subs_cap;
};

void proto_reader_init(struct proto_reader *rd);
/* Starts decoding frame p[0..len) (not copied; must outlive the commands). */
void proto_reader_reset(struct proto_reader *rd, const char *p, size_t len);
/* Frees the arena; rd can be init'ed again. */
void proto_reader_free(struct proto_reader *rd);

/*
 * Decodes the next '\n'-separated JSON command of the frame (§2.1).
 * Returns 1 with *cmd filled, 0 at the end of the frame, -1 if the frame is
 * malformed (empty frame, empty line other than one trailing '\n', invalid
 * JSON, top level not an object, wrong JSON type for a known key, integer out
 * of range); rd->err says why, and the caller disconnects with 3501.  Unknown
 * keys are ignored, null members are treated as absent, duplicate keys: the
 * last one wins.  After -1 every further call returns -1.
 */
int proto_json_next(struct proto_reader *rd, struct proto_cmd *cmd);

/* ------------------------------------------------------------------ */
/* Replies and pushes (server -> client): inputs of the encoders.      */
/* Zero values are omitted on output except the keys §3.1 lists.      */
/* Raw spans must hold valid JSON on JSON connections (else the caller */
/* disconnects with 3506; see json_validate()); 0x0A bytes are        */
/* removed when they are embedded.                                     */

struct proto_client_info {
	struct proto_span user;         /* always written */
	struct proto_span client;       /* always written */
	struct proto_span conn_info;    /* raw */
	struct proto_span chan_info;    /* raw */
};

struct proto_tag {
	struct proto_span key;
	struct proto_span value;
};

struct proto_publication {
	struct proto_span data;         /* raw payload */
	bool data_string;               /* JSON: write data as a JSON string of its
					 * bytes (delta-negotiated subscription, §4.13) */
	bool has_info;
	struct proto_client_info info;
	uint64_t offset;
	const struct proto_tag *tags;
	size_t ntags;
	bool delta;                     /* data is a fossil delta */
	struct proto_span epoch;
};

/* SubscribeResult; also the input of the `subscribe` push, which writes only
 * recoverable, epoch, offset, positioned and data. */
struct proto_subscribe_result {
	bool expires;
	uint32_t ttl;
	bool recoverable;
	struct proto_span epoch;
	const struct proto_publication *publications;
	size_t npublications;
	bool recovered;
	uint64_t offset;
	bool positioned;
	struct proto_span data;         /* raw */
	bool was_recovering;
	bool delta;
};

/* One entry of ConnectResult.subs (channel -> SubscribeResult). */
struct proto_sub_entry {
	struct proto_span channel;
	struct proto_subscribe_result result;
};

/* ConnectResult; also the input of the `connect` push (uni transports). */
struct proto_connect_result {
	struct proto_span client;
	struct proto_span version;
	bool expires;
	uint32_t ttl;
	struct proto_span data;         /* raw */
	const struct proto_sub_entry *subs;
	size_t nsubs;
	uint32_t ping;                  /* seconds */
	bool pong;
	struct proto_span session;
	struct proto_span node;
	int64_t time;                   /* Unix ms */
};

/* RefreshResult (upstream leaves client/version empty). */
struct proto_refresh_result {
	struct proto_span client;
	struct proto_span version;
	bool expires;
	uint32_t ttl;
};

enum proto_push_type {
	PROTO_PUSH_PUB = 0,
	PROTO_PUSH_JOIN,
	PROTO_PUSH_LEAVE,
	PROTO_PUSH_UNSUBSCRIBE,
	PROTO_PUSH_MESSAGE,
	PROTO_PUSH_SUBSCRIBE,
	PROTO_PUSH_CONNECT,
	PROTO_PUSH_DISCONNECT,
	PROTO_PUSH_REFRESH
};

/* One push; set `type`, `channel` for channel pushes, and the fields that
 * type uses (the others are ignored). */
struct proto_push {
	enum proto_push_type type;
	struct proto_span channel;
	const struct proto_publication *pub;            /* PUB */
	const struct proto_client_info *info;           /* JOIN, LEAVE */
	uint32_t code;                                  /* UNSUBSCRIBE, DISCONNECT */
	struct proto_span reason;                       /* UNSUBSCRIBE, DISCONNECT */
	struct proto_span data;                         /* MESSAGE (raw) */
	const struct proto_subscribe_result *subscribe; /* SUBSCRIBE */
	const struct proto_connect_result *connect;     /* CONNECT */
	bool expires;                                   /* REFRESH */
	uint32_t ttl;                                   /* REFRESH */
};

/* ------------------------------------------------------------------ */
/* JSON encoders: each appends exactly one JSON object to out.         */

/* Server ping: an empty Reply `{}` (bidirectional) / empty Push (uni). */
void proto_json_ping(struct buf *out);

/* {"id":N,"error":{"code":C,"message":"..."[,"temporary":true]}} */
void proto_json_error(struct buf *out, uint32_t id, uint32_t code,
    const char *message, bool temporary);
/* Same with the §5.1 message and temporary flag of code. */
void proto_json_error_code(struct buf *out, uint32_t id, uint32_t code);

/* {"id":N,"<key>":{}} for a result with no fields set: unsubscribe,
 * publish, rpc, refresh, sub_refresh, ... (type must not be NONE). */
void proto_json_empty_result(struct buf *out, uint32_t id,
    enum proto_cmd_type type);

void proto_json_connect_result(struct buf *out, uint32_t id,
    const struct proto_connect_result *r);
void proto_json_subscribe_result(struct buf *out, uint32_t id,
    const struct proto_subscribe_result *r);
/* presence: map client id -> ClientInfo (always written, {} when n is 0). */
void proto_json_presence_result(struct buf *out, uint32_t id,
    const struct proto_client_info *infos, size_t n);
void proto_json_presence_stats_result(struct buf *out, uint32_t id,
    uint32_t num_clients, uint32_t num_users);
/* publications ([] when n is 0), epoch and offset always written. */
void proto_json_history_result(struct buf *out, uint32_t id,
    const struct proto_publication *pubs, size_t n, struct proto_span epoch,
    uint64_t offset);
void proto_json_rpc_result(struct buf *out, uint32_t id,
    struct proto_span data);
void proto_json_refresh_result(struct buf *out, uint32_t id,
    const struct proto_refresh_result *r);
void proto_json_sub_refresh_result(struct buf *out, uint32_t id,
    bool expires, uint32_t ttl);

/* {"push":{...}} on bidirectional connections. */
void proto_json_push(struct buf *out, const struct proto_push *push);
/* The bare Push object {...}: the top-level message of uni transports. */
void proto_json_push_bare(struct buf *out, const struct proto_push *push);
/* Shortcut for the hot path: {"push":{"channel":"c","pub":{...}}}. */
void proto_json_push_pub(struct buf *out, struct proto_span channel,
    const struct proto_publication *pub);
/* A Publication object alone (e.g. for the HTTP API's history). */
void proto_json_publication(struct buf *out, const struct proto_publication *pub);
/* A ClientInfo object alone. */
void proto_json_client_info(struct buf *out, const struct proto_client_info *ci);

#endif
