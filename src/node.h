/*
 * node.h - this node's identity (uid, name) and, with a multi-node
 * engine, the other nodes heard on the control channel.
 */
#ifndef CENTRIFUGO_NODE_H
#define CENTRIFUGO_NODE_H

#include <stddef.h>
#include <stdint.h>

#include "msg.h"

struct config;

/* How often a node announces itself, and when a silent one is forgotten
 * (Centrifugo's figures). */
#define NODE_INFO_INTERVAL_MS  3000
#define NODE_EXPIRE_MS         7000

/* The node's uid: the same in every process of the node and stable while
 * the supervisor lives (derived from its pid and start time).  *start_s
 * (may be NULL) gets the supervisor's start in seconds since boot. */
const char *node_uid(uint64_t *start_s);

/* The node's name: node.name, or hostname_port. */
void node_name(const struct config *cfg, char *out, size_t cap);

/* Seconds since the node started (0 if unknown). */
uint64_t node_uptime(void);

/* Another node's announcement (its info as a JSON object) arrived. */
void node_seen(const char *uid, size_t uid_len, const char *json, size_t json_len);

/* Forgets nodes silent for NODE_EXPIRE_MS; call periodically. */
void node_expire(void);

/* Points *items (malloc'd, the caller frees the array only) at the JSON
 * of every other live node; returns their number. */
uint32_t node_others(struct msg_str **items);

/* Frees the registry. */
void node_reset(void);

#endif
