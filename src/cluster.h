/*
 * cluster.h - the frames nodes exchange through a multi-node engine's
 * PUB/SUB (Redis or NATS), and what receiving them does.  Run by the
 * broker.  Frames on a channel: a bare PUB record (publication without a
 * stream position), "__j__" / "__l__" + node uid + " " + JOIN / LEAVE
 * record.  Frames on the control channel: node uid + " N" + the node's
 * JSON announcement, or node uid + " C" + a CONTROL record.  The sender
 * delivers to its own workers directly: frames carrying our uid are
 * skipped.
 */
#ifndef CENTRIFUGO_CLUSTER_H
#define CENTRIFUGO_CLUSTER_H

#include <stddef.h>

#include "msg.h"

struct buf;

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

#endif
