/*
 * cluster.h - the frames nodes exchange through a multi-node engine's
 * PUB/SUB (Redis or NATS), and what receiving them does.  Run by the
 * broker.  Frames on a channel: a bare PUB record (publication without a
 * stream position), "__j__" / "__l__" + node uid + " " + JOIN / LEAVE
 * record.  Frames on the control channel: node uid + " N" + the node's
 * JSON announcement, node uid + " C" + a CONTROL record, node uid + " Q"
 * + survey id (a channels survey), or node uid + " A" + asker's uid + " "
 * + survey id + " " + CHANNELS_RESULT record (an answer).  The sender
 * delivers to its own workers directly: frames carrying our uid are
 * skipped.
 */
#ifndef CENTRIFUGO_CLUSTER_H
#define CENTRIFUGO_CLUSTER_H

#include <stddef.h>

#include "msg.h"

struct buf;
struct event_base;

/* How long a channels survey waits for the other nodes' answers. */
#define CLUSTER_SURVEY_TIMEOUT_MS 3000

/* The engine's way to publish a control frame (set at its start). */
void cluster_set_sender(struct event_base *base, int (*send)(const struct buf *frame));

/* Appends the channel frame of a JOIN or LEAVE record. */
void cluster_join_leave_frame(struct buf *out, const struct msg *m);

/* Appends a control frame: a CONTROL record (m), or with m NULL this
 * node's announcement. */
void cluster_control_frame(struct buf *out, const struct msg *m);

/* A frame received on a channel (other than a positioned publication):
 * delivered to the workers unless it is our own join/leave. */
void cluster_on_channel_frame(const char *p, size_t len);

/* A frame received on the control channel. */
void cluster_on_control_frame(const char *p, size_t len);

/*
 * The channels API across nodes: asks every other live node for its
 * channels and answers worker w's request req_id with the sum (through
 * broker_channels_answer) once all answered or after the timeout.
 * Returns -1 when there is no other node or no engine to ask through.
 */
int cluster_survey_channels(unsigned w, uint64_t req_id);

/* Frees pending surveys (at exit). */
void cluster_reset(void);

#endif
