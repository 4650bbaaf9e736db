/*
 * client.h - one client session on a worker: the protocol state machine
 * (connecting -> connected -> closed), command dispatch, permissions, ping
 * and pong, and the session's subscriptions.
 */
#ifndef CENTRIFUGO_CLIENT_H
#define CENTRIFUGO_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "hub.h"

struct buf;
struct client;
struct config;
struct conn;
struct loop_ws_info;

/* Once per worker, before any client. */
void client_init(const struct config *cfg);
/* Reload: new sessions and commands use cfg; live sessions stay.  Returns
 * 0, or -1 (nothing changed) with the reason in err. */
int client_reconfigure(const struct config *cfg, struct buf *err);
/*
 * A WebSocket upgrade request arrived (before it is accepted): 0 to accept
 * it, or 503 when client.connection_rate_limit (node-wide, fixed one-second
 * windows) or client.connection_limit (connected clients of the whole node)
 * refuses it, as Centrifugo's HTTP middleware does.  Every call counts
 * towards the rate limit, refused or not.
 */
int client_admit(void);
/* A WebSocket opened; returns the session bound to it. */
struct client *client_new(struct conn *conn, const struct loop_ws_info *info);
/* One complete WebSocket message from the client. */
void client_on_message(struct client *c, const char *data, size_t len, int binary);
/* The transport is gone: unlink everything, free when no request holds it. */
void client_on_closed(struct client *c);
/* Closes every session with a disconnect (graceful stop). */
void client_close_all(uint16_t code, const char *reason);
/* The worker lost fan-out records: sessions may have missed publications. */
void client_fanout_overrun(void);
struct msg;
/* A server API command for the sessions of a user (MSG_CONTROL). */
void client_control(const struct msg *m);
/* The broker restarted: every stream position held by a session is void. */
void client_positions_lost(void);

/* A new broker knows nothing of this worker: tell it again about every
 * connection (user counts), subscription (interest, which a multi-node
 * engine turns into PUB/SUB subscriptions) and presence. */
void client_resync(void);
struct conn *client_conn(const struct client *c);
/* The hub dropped a subscription (hub_lost_fn). */
void client_sub_lost(struct hub_sub *s, enum hub_lost_reason why);
/* Number of live sessions on this worker. */
size_t client_count(void);

#endif
