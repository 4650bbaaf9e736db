/*
 * redis_addr.c - parses engine.redis.address entries and picks a
 * channel's shard.  TCP (rediss:// for TLS) and unix sockets: the Sentinel
 * and Cluster forms of Centrifugo's address syntax are refused with a
 * reason, never silently misread.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis_addr.h"
#include "xmalloc.h"

static int
redis_addr_port(const char *s, size_t len, int *port)
{
	int v = 0;

	if (len == 0 || len > 5)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	if (v < 1 || v > 65535)
		return -1;
	*port = v;
	return 0;
}

int
redis_addr_parse(const char *s, struct redis_addr *a, char *why, size_t cap)
{
	const char *p = s, *at, *slash, *colon, *end;
	static const char *const refused[] = {
		"rediss+sentinel://", "redis+sentinel://", "redis+cluster://",
		"rediss+cluster://",
	};

	memset(a, 0, sizeof(*a));
	a->db = -1;
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		if (strncmp(s, refused[i], strlen(refused[i])) == 0) {
			snprintf(why, cap, "%.*s addresses (Sentinel, Cluster) are not supported%s",
			    (int)strlen(refused[i]), refused[i], strstr(refused[i], "sentinel") ?
			    " (for Sentinel, set sentinel_address and sentinel_master_name)" : "");
			return -1;
		}
	}
	if (strncmp(s, "unix://", 7) == 0) {
		if (s[7] != '/') {
			snprintf(why, cap, "a unix socket address needs an absolute path (unix:///path)");
			return -1;
		}
		a->path = xstrdup(s + 7);
		return 0;
	}
	if (strncmp(s, "redis://", 8) == 0) {
		p = s + 8;
	} else if (strncmp(s, "rediss://", 9) == 0) {
		p = s + 9;
		a->tls = 1;
	}
	else if (strncmp(s, "tcp://", 6) == 0)
		p = s + 6;
	else if (strstr(s, "://") != NULL) {
		snprintf(why, cap, "unknown address scheme (use host:port, redis://, rediss:// or unix://)");
		return -1;
	}
	if ((end = strchr(p, '?')) == NULL)
		end = p + strlen(p);
	if ((slash = memchr(p, '/', (size_t)(end - p))) != NULL) {
		char *e;
		long db = strtol(slash + 1, &e, 10);
		if (slash + 1 == end) {
			end = slash;
		} else if (e != end || db < 0 || db > 1000000) {
			snprintf(why, cap, "the database after '/' must be a number");
			return -1;
		} else {
			a->db = (int)db;
			end = slash;
		}
	}
	if ((at = memchr(p, '@', (size_t)(end - p))) != NULL) {
		const char *c = memchr(p, ':', (size_t)(at - p));
		if (c) {
			if (c > p)
				a->user = xstrndup(p, (size_t)(c - p));
			a->password = xstrndup(c + 1, (size_t)(at - c - 1));
		} else if (at > p) {
			a->password = xstrndup(p, (size_t)(at - p));
		}
		p = at + 1;
	}
	colon = NULL;
	for (const char *q = p; q < end; q++)
		if (*q == ':')
			colon = q;
	if (colon == p || p == end) {
		snprintf(why, cap, "no host name");
		redis_addr_free(a);
		return -1;
	}
	a->port = 6379;
	if (colon && redis_addr_port(colon + 1, (size_t)(end - colon - 1), &a->port) != 0) {
		snprintf(why, cap, "the port must be a number 1..65535");
		redis_addr_free(a);
		return -1;
	}
	a->host = xstrndup(p, (size_t)((colon ? colon : end) - p));
	for (const char *h = a->host; *h; h++) {
		if (*h == ' ' || *h == '/' || *h == '@') {
			snprintf(why, cap, "\"%s\" is not a host name", a->host);
			redis_addr_free(a);
			return -1;
		}
	}
	return 0;
}

void
redis_addr_free(struct redis_addr *a)
{
	free(a->host);
	free(a->path);
	free(a->user);
	free(a->password);
	memset(a, 0, sizeof(*a));
}

int
redis_sentinels_parse(const char *s, struct redis_addr **list, size_t *n, char *why, size_t cap)
{
	const char *p = s;

	*list = NULL;
	*n = 0;
	for (;;) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		char *one = xstrndup(p, len);
		struct redis_addr a;
		int rc = redis_addr_parse(one, &a, why, cap);

		free(one);
		if (rc == 0 && (a.path != NULL || a.tls)) {
			snprintf(why, cap, a.tls ? "sentinels are asked over plain TCP (host:port)" :
			    "a sentinel must be host:port");
			redis_addr_free(&a);
			rc = -1;
		}
		if (rc != 0) {
			redis_sentinels_free(*list, *n);
			*list = NULL;
			*n = 0;
			return -1;
		}
		*list = xrealloc(*list, (*n + 1) * sizeof(**list));
		(*list)[(*n)++] = a;
		if (comma == NULL)
			return 0;
		p = comma + 1;
	}
}

void
redis_sentinels_free(struct redis_addr *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		redis_addr_free(&list[i]);
	free(list);
}

unsigned
redis_shard_index(const char *channel, size_t len, unsigned nshards)
{
	uint64_t key = 14695981039346656037ULL;
	int64_t b = -1, j = 0;

	for (size_t i = 0; i < len; i++) {
		key ^= (unsigned char)channel[i];
		key *= 1099511628211ULL;
	}
	while (j < (int64_t)nshards) {
		b = j;
		key = key * 2862933555777941757ULL + 1;
		j = (int64_t)((double)(b + 1) * ((double)(1LL << 31) / (double)((key >> 33) + 1)));
	}
	return b < 0 ? 0 : (unsigned)b;
}
