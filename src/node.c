/*
 * node.c - the node's identity and the registry of the other nodes of a
 * cluster.  The uid is computed from the supervisor's pid and start time,
 * so workers (the info API) and the broker (the control channel) agree on
 * it without talking.  The registry lives in the broker: it keeps the last
 * announcement of every node heard on the control channel and forgets a
 * node after NODE_EXPIRE_MS of silence.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "htab.h"
#include "node.h"
#include "wheel.h"
#include "xmalloc.h"

struct node_peer {
	uint64_t seen_ms;
	size_t len;
	char json[];
};

static struct {
	char uid[64];
	uint64_t start_s;
	int have_uid;
	struct htab peers;        /* uid -> struct node_peer */
	int peers_init;
} node;

const char *
node_uid(uint64_t *start_s)
{
	if (!node.have_uid) {
		char path[64], stat[1024];
		unsigned long long starttime = 0;
		pid_t sup = getppid();
		FILE *f;
		uint64_t h;

		snprintf(path, sizeof(path), "/proc/%ld/stat", (long)sup);
		if ((f = fopen(path, "r")) != NULL) {
			if (fgets(stat, sizeof(stat), f)) {
				const char *p = strrchr(stat, ')');
				/* field 22 (starttime) counted after the command name */
				for (int field = 2; p && field < 22; field++)
					p = strchr(p + 1, ' ');
				if (p)
					starttime = strtoull(p + 1, NULL, 10);
			}
			fclose(f);
		}
		h = ((uint64_t)sup * 0x9e3779b97f4a7c15ULL) ^ (starttime * 0x100000001b3ULL);
		snprintf(node.uid, sizeof(node.uid), "%08llx-%04llx-4%03llx-8%03llx-%012llx",
		    (unsigned long long)(h >> 32), (unsigned long long)(h >> 16 & 0xffff),
		    (unsigned long long)(h & 0xfff), (unsigned long long)(starttime & 0xfff),
		    (unsigned long long)((h * 31 + starttime) & 0xffffffffffffULL));
		node.start_s = starttime / (uint64_t)sysconf(_SC_CLK_TCK);
		node.have_uid = 1;
	}
	if (start_s)
		*start_s = node.start_s;
	return node.uid;
}

void
node_name(const struct config *cfg, char *out, size_t cap)
{
	char host[256];

	if (cfg->node_name[0]) {
		snprintf(out, cap, "%s", cfg->node_name);
		return;
	}
	if (gethostname(host, sizeof(host)) != 0)
		snprintf(host, sizeof(host), "localhost");
	host[sizeof(host) - 1] = '\0';
	snprintf(out, cap, "%s_%lld", host, (long long)cfg->http_server_port);
}

uint64_t
node_uptime(void)
{
	struct timespec ts;
	uint64_t start_s;

	node_uid(&start_s);
	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (uint64_t)ts.tv_sec > start_s ? (uint64_t)ts.tv_sec - start_s : 0;
}

void
node_seen(const char *uid, size_t uid_len, const char *json, size_t json_len)
{
	struct node_peer *p = xmalloc(sizeof(*p) + json_len);

	if (!node.peers_init) {
		htab_init(&node.peers);
		node.peers_init = 1;
	}
	p->seen_ms = wheel_now_ms();
	p->len = json_len;
	memcpy(p->json, json, json_len);
	free(htab_del(&node.peers, uid, uid_len));
	htab_put(&node.peers, uid, uid_len, p);
}

void
node_expire(void)
{
	uint64_t now = wheel_now_ms();
	size_t it;
	struct htab_entry *e;
	int again = 1;

	if (!node.peers_init)
		return;
	/* Deleting restarts the walk: the table is a handful of nodes. */
	while (again) {
		again = 0;
		for (e = htab_first(&node.peers, &it); e; e = htab_next(&node.peers, &it, e)) {
			struct node_peer *p = e->value;
			if (p->seen_ms + NODE_EXPIRE_MS <= now) {
				free(htab_del(&node.peers, e->key, e->klen));
				again = 1;
				break;
			}
		}
	}
}

uint32_t
node_others(struct msg_str **items)
{
	size_t it;
	struct htab_entry *e;
	uint32_t n = 0;

	*items = NULL;
	if (!node.peers_init || node.peers.count == 0)
		return 0;
	*items = xcalloc(node.peers.count, sizeof(**items));
	for (e = htab_first(&node.peers, &it); e; e = htab_next(&node.peers, &it, e)) {
		struct node_peer *p = e->value;
		(*items)[n++] = (struct msg_str){ p->json, (uint32_t)p->len };
	}
	return n;
}

void
node_reset(void)
{
	size_t it;
	struct htab_entry *e;

	if (!node.peers_init)
		return;
	for (e = htab_first(&node.peers, &it); e; e = htab_next(&node.peers, &it, e))
		free(e->value);
	htab_free(&node.peers);
	node.peers_init = 0;
}
