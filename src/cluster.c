/*
 * cluster.c - frames between nodes (see cluster.h), shared by the Redis
 * engine and the NATS broker.
 */
#include <string.h>

#include "broker.h"
#include "buf.h"
#include "cluster.h"
#include "node.h"

void
cluster_join_leave_frame(struct buf *out, const struct msg *m)
{
	buf_puts(out, m->type == MSG_JOIN ? "__j__" : "__l__");
	buf_puts(out, node_uid(NULL));
	buf_putc(out, ' ');
	msg_encode(m, out);
}

void
cluster_control_frame(struct buf *out, const struct msg *m)
{
	buf_puts(out, node_uid(NULL));
	if (m) {
		buf_puts(out, " C");
		msg_encode(m, out);
	} else {
		buf_puts(out, " N");
		broker_node_json(out);
	}
}

/* Whether the uid in p[0..len) is ours. */
static int
cluster_is_us(const char *p, size_t len)
{
	const char *uid = node_uid(NULL);

	return len == strlen(uid) && memcmp(p, uid, len) == 0;
}

void
cluster_on_channel_frame(const char *p, size_t len)
{
	if (len >= 5 && (memcmp(p, "__j__", 5) == 0 || memcmp(p, "__l__", 5) == 0)) {
		const char *sp = memchr(p + 5, ' ', len - 5);
		if (sp == NULL || cluster_is_us(p + 5, (size_t)(sp - p - 5)))
			return;
		broker_fanout_raw(sp + 1, len - (size_t)(sp + 1 - p));
		return;
	}
	broker_fanout_raw(p, len);
}

void
cluster_on_control_frame(const char *p, size_t len)
{
	const char *sp = memchr(p, ' ', len);
	size_t ul;

	if (sp == NULL || (size_t)(sp - p) + 2 > len)
		return;
	ul = (size_t)(sp - p);
	if (cluster_is_us(p, ul))
		return;
	if (sp[1] == 'N')
		node_seen(p, ul, sp + 2, len - ul - 2);
	else if (sp[1] == 'C')
		broker_fanout_raw(sp + 2, len - ul - 2);
}
