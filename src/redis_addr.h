/*
 * redis_addr.h - one engine.redis.address entry, parsed: host:port,
 * redis://[user[:password]@]host[:port][/db], rediss://..., tcp://...,
 * unix:///path;
 * and which of several addresses (shards) serves a channel.  Used by the
 * configuration check (every process) and the Redis engine (broker).
 */
#ifndef CENTRIFUGO_REDIS_ADDR_H
#define CENTRIFUGO_REDIS_ADDR_H

#include <stddef.h>

struct redis_addr {
	char *host;               /* NULL for a unix socket */
	int port;
	char *path;               /* unix socket path, or NULL */
	char *user, *password;    /* NULL when the address has none */
	int db;                   /* -1 when the address has none */
	int tls;                  /* rediss:// (the engine adds engine.redis.tls) */
};

/* 0 with *a filled (free with redis_addr_free), or -1 with the reason in
 * why (never NULL-terminated short of cap). */
int redis_addr_parse(const char *s, struct redis_addr *a, char *why, size_t cap);

void redis_addr_free(struct redis_addr *a);

/* One engine.redis.sentinel_address entry: host:port[,host:port...], each a
 * plain address.  0 with *list (n entries, free with redis_sentinels_free),
 * or -1 with the reason in why. */
int redis_sentinels_parse(const char *s, struct redis_addr **list, size_t *n, char *why,
    size_t cap);
void redis_sentinels_free(struct redis_addr *list, size_t n);

/* The shard (0..nshards-1) of a channel: jump consistent hash of the
 * name's 64-bit FNV-1a hash, as Centrifugo, so nodes agree and adding a
 * shard moves only the channels the new one takes. */
unsigned redis_shard_index(const char *channel, size_t len, unsigned nshards);

#endif
