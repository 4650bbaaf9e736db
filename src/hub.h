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

/* One subscription of one client, owned by the client; the hub only links
 * it into the channel's member array. */
struct hub_sub {
	struct client *client;
	struct hub_chan *chan;     /* NULL while not linked */
	uint32_t pos;              /* index in the channel's member array */
};

struct hub *hub_new(void);
void hub_free(struct hub *h);
/* Links s into channel's members (creating the channel entry). */
void hub_add(struct hub *h, const char *channel, size_t len, struct hub_sub *s);
/* Unlinks s; the channel entry goes away with its last member. */
void hub_remove(struct hub *h, struct hub_sub *s);
/* Channel name of a linked subscription (NUL-terminated). */
const char *hub_sub_channel(const struct hub_sub *s, size_t *len);
/* Queues a MSG_PUB on every local subscriber of its channel. */
void hub_deliver(struct hub *h, const struct msg *pub);
size_t hub_channel_count(const struct hub *h);
size_t hub_subscription_count(const struct hub *h);

#endif
