/*
 * hub.h - a worker's channel -> local subscribers table, and the hot path:
 * a publication read from the fan-out ring is encoded once (per format in
 * use) and the same bytes are queued on every local subscriber.
 */
#ifndef CENTRIFUGO_HUB_H
#define CENTRIFUGO_HUB_H

#include <stddef.h>
#include <stdint.h>

struct client;
struct hub;
struct hub_chan;
struct msg;

#define HUB_EPOCH_MAX 16

enum hub_sub_state {
	HUB_SUB_PENDING = 0,       /* waiting for its stream position: skips all */
	HUB_SUB_ACTIVE
};

/* One subscription of one client, owned by the client; the hub only links
 * it into the channel's member array. */
struct hub_sub {
	struct client *client;
	struct conn *conn;         /* client_conn(client), set by the owner
				      before hub_add: read per delivery
				      without a visit to the client */
	struct hub_chan *chan;     /* NULL while not linked */
	uint32_t pos;              /* index in the channel's member array */
	uint8_t state;             /* enum hub_sub_state */
	uint8_t positioned;        /* publications are checked against offset */
	uint8_t push_join_leave;   /* join/leave pushes are delivered */
	uint8_t lost;              /* position lost or format unfit: being dropped */
	uint8_t fmt;               /* enum codec_format of the session */
	uint64_t offset;           /* positioned: last offset delivered */
	char epoch[HUB_EPOCH_MAX + 1];
};

enum hub_lost_reason {
	HUB_LOST_POSITION = 0,     /* a positioned subscription missed a publication */
	HUB_LOST_FORMAT            /* binary payload for a JSON session */
};

/* Called after delivery, outside the member loop, for each subscription
 * that cannot take the publication (at most once per subscription). */
typedef void (*hub_lost_fn)(struct hub_sub *s, enum hub_lost_reason why);

struct hub *hub_new(hub_lost_fn lost);
void hub_free(struct hub *h);
/* Links s into channel's members (creating the channel entry). */
void hub_add(struct hub *h, const char *channel, size_t len, struct hub_sub *s);
/* Unlinks s; the channel entry goes away with its last member. */
void hub_remove(struct hub *h, struct hub_sub *s);
/* Channel name of a linked subscription (NUL-terminated). */
const char *hub_sub_channel(const struct hub_sub *s, size_t *len);
/* Queues a MSG_PUB, MSG_JOIN or MSG_LEAVE on the local subscribers of its
 * channel that take it. */
void hub_deliver(struct hub *h, const struct msg *pub);
/* Does this positioned subscription accept the publication at offset in
 * epoch?  Advances its position; 0 = skip (already seen), 1 = deliver,
 * -1 = continuity lost. */
int hub_sub_accept(struct hub_sub *s, uint64_t offset, const char *epoch, size_t epoch_len);
size_t hub_channel_count(const struct hub *h);
size_t hub_subscription_count(const struct hub *h);

#endif
