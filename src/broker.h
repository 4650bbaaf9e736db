/*
 * broker.h - the broker process: the single writer of the fan-out ring and
 * the one place that orders publications, through its engine (engine.h).
 * The functions below the first are what engines call back.
 */
#ifndef CENTRIFUGO_BROKER_H
#define CENTRIFUGO_BROKER_H

#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "msg.h"

struct buf;
struct htab;

/* Runs the broker in the child after fork (heritage filled); returns the
 * process exit status. */
int broker_main(void);

/* Writes an encoded record into the fan-out ring; -1 (logged) if it failed. */
int broker_fanout_raw(const void *rec, size_t len);

/* Encodes m into the fan-out ring. */
void broker_fanout(const struct msg *m);

/* Answers a publish: err 0 with its offset and epoch ("" without history),
 * or a protocol error code. */
void broker_publish_done(struct engine_to to, int err, uint64_t offset, const char *epoch);

/* Publications may have been missed (the engine lost its subscriptions):
 * every positioned subscriber resubscribes and recovers. */
void broker_positions_lost(void);

/* This node's announcement for the control channel: a JSON object with
 * the figures of the info API. */
void broker_node_json(struct buf *b);

/* The node's own clients in a channel's presence: *items (malloc'd array,
 * the caller frees it) gets 4 strings per client; returns their count. */
uint32_t broker_local_presence(const struct msg_str *channel, struct msg_str **items);

/* Calls fn for every local client in every channel's presence. */
void broker_each_presence(void (*fn)(const struct msg_str *channel,
    const struct engine_presence *p));

/* Reads what the workers wrote to their request rings without waking the
 * broker (worker_note()), so that the registries below are current.  Does
 * nothing when called while the rings are being read. */
void broker_catch_up(void);

/* Calls add(into, channel, len, subscribers) for every channel with local
 * subscribers. */
void broker_channels_collect(struct htab *into, void (*add)(struct htab *t, const char *ch,
    size_t len, uint64_t count));

/* Appends a CHANNELS_RESULT record of counts (channel -> uint64_t *). */
void broker_channels_encode(const struct htab *counts, uint64_t req_id, struct buf *out);

/* Answers a CHANNELS request with counts (channel -> uint64_t *). */
void broker_channels_answer(unsigned w, uint64_t req_id, struct htab *counts);

#endif
