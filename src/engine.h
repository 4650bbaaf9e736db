/*
 * engine.h - what the broker asks of an engine: where publications are
 * ordered and delivered (PUB/SUB), where history and presence live, and
 * how control messages reach the other nodes.
 *
 *   memory  one node: streams and idempotency results in the broker's
 *           heap, delivery straight into the fan-out ring
 *   redis   several nodes: PUB/SUB, streams and presence in Redis (one
 *           or more shards), node discovery on a control channel
 *   nats    several nodes: PUB/SUB and control through NATS; no history,
 *           presence per node (as Centrifugo's NATS broker)
 *
 * Only the broker process runs an engine.  Operations complete through
 * callbacks, at once (memory) or when the remote answers; records handed
 * to a callback are valid only during the call.  Errors are protocol
 * codes (100 internal, 108 not available, 112 unrecoverable position).
 */
#ifndef CENTRIFUGO_ENGINE_H
#define CENTRIFUGO_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "msg.h"

struct event_base;
struct config;

#define ENGINE_EPOCH_LEN 8

/* Who waits for an answer: a worker and its request id. */
struct engine_to {
	unsigned worker;
	uint64_t req_id;
};

/* A stream read: publications after `since` (or from the oldest), or
 * with reverse before `since` (or from the newest); limit < 0: all. */
struct engine_read {
	int has_since, reverse;
	uint64_t since;
	int64_t limit;
	int64_t meta_ttl_ms;      /* > 0: refresh the stream meta's lifetime */
};

/* items are PUB records (offset and epoch set), oldest first unless the
 * read was reverse; epoch is NUL-terminated. */
typedef void (*engine_stream_cb)(void *arg, int err, uint64_t top, const char *epoch,
    const struct msg_str *items, uint32_t nitems);
/* items: 4 strings per client (user, client, conn_info, chan_info). */
typedef void (*engine_presence_cb)(void *arg, int err, const struct msg_str *items,
    uint32_t nitems);
typedef void (*engine_done_cb)(void *arg, int err);

/* One local client in a channel's presence, as the broker keeps it. */
struct engine_presence {
	struct msg_str user, client, conn_info, chan_info;
};

struct engine {
	const char *name;
	/* 0 when running; -1 with a log line. */
	int (*start)(struct event_base *base, const struct config *cfg);
	void (*stop)(void);
	/*
	 * Orders and delivers one publication.  pub is the PUB record to
	 * deliver (offset and epoch unset); req the PUBLISH request (history
	 * options, idempotency key in req->epoch).  Completes with
	 * broker_publish_done(to, ...).
	 */
	void (*publish)(const struct msg *pub, const struct msg *req, struct engine_to to);
	/* Reads a channel's stream (history API). */
	void (*read)(const struct msg_str *channel, const struct engine_read *r,
	    engine_stream_cb cb, void *arg);
	/*
	 * As read, for a subscription being placed: answers only once this
	 * node receives the channel's publications, and with a top no older
	 * than any publication already delivered to the workers.
	 */
	void (*position)(const struct msg_str *channel, const struct engine_read *r,
	    engine_stream_cb cb, void *arg);
	/* Calls cb(arg, 0) once this node receives the channel's
	 * publications (a subscription without position), or with an error. */
	void (*ready)(const struct msg_str *channel, engine_done_cb cb, void *arg);
	/* Empties the history, keeping offset and epoch. */
	void (*history_remove)(const struct msg_str *channel, engine_done_cb cb, void *arg);
	/* The node's clients entering and leaving a channel's presence. */
	void (*presence_add)(const struct msg_str *channel, const struct engine_presence *p);
	void (*presence_remove)(const struct msg_str *channel, const struct engine_presence *p);
	/* The whole presence of a channel, every node's clients. */
	void (*presence_get)(const struct msg_str *channel, engine_presence_cb cb, void *arg);
	/* A JOIN, LEAVE or CONTROL record for this node and every other. */
	void (*broadcast)(const struct msg *m);
	/* The first local subscriber of a channel arrived (on) or the last
	 * one left: receive its publications or stop. */
	void (*interest)(const char *channel, size_t len, int on);
	/* Once a second. */
	void (*tick)(void);
};

extern const struct engine engine_memory;
extern const struct engine engine_redis;
extern const struct engine engine_nats;

/* Random epoch letters, NUL-terminated (ENGINE_EPOCH_LEN + 1 bytes). */
void engine_new_epoch(char *epoch);

#endif
