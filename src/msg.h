/*
 * msg.h - the records of the shared-memory bus, encoded with msgpack.
 *
 * Request ring (worker -> broker): HELLO, PUBLISH, SUBSCRIBE, UNSUBSCRIBE,
 *   HISTORY, PRESENCE.
 * Reply ring (broker -> worker): PUBLISH_RESULT, HISTORY_RESULT,
 *   PRESENCE_RESULT.
 * Fan-out ring (broker -> every worker): PUB, JOIN, LEAVE, and
 *   SUB_RESULT (addressed to one worker: it travels with the publications
 *   so that a subscription starts exactly at the stream position the
 *   broker reported, with nothing lost or repeated in between).
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
	MSG_SUBSCRIBE,        /* presence add, join, stream position / recovery */
	MSG_SUB_RESULT,       /* answer to SUBSCRIBE, on the fan-out ring */
	MSG_UNSUBSCRIBE,      /* presence remove, leave */
	MSG_JOIN,             /* a client joined a channel (ClientInfo) */
	MSG_LEAVE,            /* a client left a channel (ClientInfo) */
	MSG_HISTORY,          /* read a channel's stream */
	MSG_HISTORY_RESULT,
	MSG_PRESENCE,         /* presence (or, with MSG_F_STATS, its counts) */
	MSG_PRESENCE_RESULT,
	MSG_BROKER_START,     /* fan-out: a (new) broker started; memory streams are new */
	MSG_INTEREST,         /* a channel gained (limit +1) or lost (-1) a local subscriber */
	MSG_CONN,             /* a connection of `user` came (+1) or went (-1); with a
			       * req_id: refused with an error at `since` connections */
	MSG_CONN_RESULT,
	MSG_CONTROL,          /* server API command for sessions (flags: MSG_CTL_*),
			       * forwarded by the broker to every worker */
	MSG_CHANNELS,         /* channels with subscribers and their counts */
	MSG_CHANNELS_RESULT,  /* items: channel, count (decimal) pairs */
	MSG_STATS,            /* node figures */
	MSG_STATS_RESULT,     /* num_clients, num_users, offset = channels, since = subs */
	MSG_HISTORY_REMOVE,   /* answered by HISTORY_RESULT (error only) */
	MSG_TYPE_MAX
};

struct msg_str {
	const char *p;
	uint32_t len;
};

#define MSG_MAX_TAGS 64

/* flags */
#define MSG_F_PRESENCE   0x01u   /* SUBSCRIBE/UNSUBSCRIBE: keep presence */
#define MSG_F_JOIN_LEAVE 0x02u   /* SUBSCRIBE/UNSUBSCRIBE: emit join/leave */
#define MSG_F_POSITION   0x04u   /* SUBSCRIBE: report the stream top */
#define MSG_F_RECOVER    0x08u   /* SUBSCRIBE: recover from offset/epoch */
#define MSG_F_RECOVERED  0x10u   /* SUB_RESULT: recovery succeeded */
#define MSG_F_SINCE      0x20u   /* HISTORY: since is set */
#define MSG_F_REVERSE    0x40u   /* HISTORY: newest first */
#define MSG_F_STATS      0x80u   /* PRESENCE: counts only */
#define MSG_F_CACHE      0x100u  /* SUBSCRIBE: cache recovery mode */
#define MSG_F_BINARY     0x200u  /* PUBLISH, PUB: data is not valid JSON */
#define MSG_F_LOST       0x400u  /* BROKER_START: same broker, but publications
				  * may have been missed (engine reconnected) */

/* MSG_CONTROL operations (in flags) and options */
#define MSG_CTL_SUBSCRIBE   0x1000u
#define MSG_CTL_UNSUBSCRIBE 0x2000u
#define MSG_CTL_DISCONNECT  0x4000u
#define MSG_CTL_REFRESH     0x8000u
#define MSG_CTL_EXPIRED     0x10000u  /* REFRESH: disconnect as expired */
#define MSG_CTL_HAS_INFO    0x20000u  /* REFRESH: replace conn_info */
#define MSG_CTL_OP_MASK     0xf000u

/* MSG_CONTROL subscribe: option overrides packed in `limit`, two bits each
 * (0 unset, 1 false, 2 true), in this order. */
enum msg_override {
	MSG_OVR_PRESENCE = 0,
	MSG_OVR_JOIN_LEAVE,
	MSG_OVR_FORCE_PUSH_JOIN_LEAVE,
	MSG_OVR_FORCE_RECOVERY,
	MSG_OVR_FORCE_POSITIONING,
	MSG_OVR_COUNT
};
/* -1 unset, 0 false, 1 true */
#define MSG_OVR_GET(packed, i) ((((packed) >> (2 * (i))) & 3) ? (int)((((packed) >> (2 * (i))) & 3) - 1) : -1)
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
	uint64_t offset;          /* PUBLISH_RESULT, PUB: 0 when no history;
				   * SUBSCRIBE: client's position; *_RESULT: top */
	struct msg_str epoch;     /* PUBLISH_RESULT, PUB, SUBSCRIBE, *_RESULT;
				   * PUBLISH: the idempotency key, if any */
	uint32_t flags;           /* MSG_F_* */
	int32_t limit;            /* HISTORY; SUBSCRIBE: recovery limit */
	uint64_t since;           /* HISTORY: since offset (epoch in `epoch`) */
	uint32_t num_clients;     /* PRESENCE_RESULT with MSG_F_STATS */
	uint32_t num_users;
	/*
	 * Items: SUB_RESULT and HISTORY_RESULT carry encoded PUB records;
	 * PRESENCE_RESULT carries 4 strings per client (user, client,
	 * conn_info, chan_info).  To encode, point items at nitems strings; a
	 * decoded msg instead exposes them through msg_item_next().
	 */
	const struct msg_str *items;
	uint32_t nitems;
	struct msg_str items_raw; /* decoded: the packed items */
};

/* Iterates the items of a decoded msg: *pos starts at 0; returns 1 with
 * *out set, 0 at the end, -1 on a malformed record. */
int msg_item_next(const struct msg *m, size_t *pos, struct msg_str *out);

/* Appends the encoding of m to out (replacing nothing). */
void msg_encode(const struct msg *m, struct buf *out);
/* Decodes one record; returns 0, or -1 for a malformed record. */
int msg_decode(const void *rec, size_t len, struct msg *m);
const char *msg_type_name(enum msg_type t);

#endif
