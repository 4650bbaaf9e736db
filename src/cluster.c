/*
 * cluster.c - frames between nodes (see cluster.h), shared by the Redis
 * engine and the NATS broker, and the channels survey: the broker asks
 * every live node for its channels on the control channel and sums the
 * answers (Centrifugo does the same with its survey requests).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "broker.h"
#include "buf.h"
#include "cluster.h"
#include "htab.h"
#include "log.h"
#include "node.h"
#include "xmalloc.h"

/* A channels survey in flight. */
struct cluster_survey {
	struct cluster_survey *next;
	uint64_t id;
	unsigned worker;
	uint64_t req_id;
	uint32_t waiting;         /* answers still expected */
	struct htab counts;       /* channel -> uint64_t * subscribers */
	struct event *timer;
};

static struct {
	struct event_base *base;
	int (*send)(const struct buf *frame);
	struct cluster_survey *surveys;
	uint64_t next_id;
} cl;

void
cluster_set_sender(struct event_base *base, int (*send)(const struct buf *frame))
{
	cl.base = base;
	cl.send = send;
}

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

static void cluster_answer_survey(const char *asker, size_t asker_len, const char *id,
    size_t id_len);
static void cluster_on_answer(const char *p, size_t len);

/* Whether the uid in p[0..len) is ours. */
static int
cluster_is_us(const char *p, size_t len)
{
	const char *uid = node_uid(NULL);

	return len == strlen(uid) && memcmp(p, uid, len) == 0;
}

/* Adds count to channel's sum in t. */
static void
cluster_count(struct htab *t, const char *ch, size_t len, uint64_t count)
{
	uint64_t *c = htab_get(t, ch, len);

	if (c == NULL) {
		c = xcalloc(1, sizeof(*c));
		htab_put(t, ch, len, c);
	}
	*c += count;
}

static void
cluster_survey_finish(struct cluster_survey *s)
{
	struct cluster_survey **pp;
	size_t it;
	struct htab_entry *e;

	for (pp = &cl.surveys; *pp && *pp != s; pp = &(*pp)->next)
		;
	if (*pp)
		*pp = s->next;
	broker_channels_answer(s->worker, s->req_id, &s->counts);
	for (e = htab_first(&s->counts, &it); e; e = htab_next(&s->counts, &it, e))
		free(e->value);
	htab_free(&s->counts);
	event_free(s->timer);
	free(s);
}

static void
cluster_survey_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct cluster_survey *s = arg;

	log_debug("channels survey %llu: %u node(s) did not answer in time",
	    (unsigned long long)s->id, s->waiting);
	cluster_survey_finish(s);
}

int
cluster_survey_channels(unsigned w, uint64_t req_id)
{
	struct msg_str *peers;
	uint32_t npeers;
	struct cluster_survey *s;
	struct buf frame = BUF_INIT;
	struct timeval tv = { CLUSTER_SURVEY_TIMEOUT_MS / 1000, (CLUSTER_SURVEY_TIMEOUT_MS % 1000) * 1000 };

	if (cl.send == NULL)
		return -1;
	node_expire();
	npeers = node_others(&peers);
	free(peers);
	if (npeers == 0)
		return -1;
	s = xcalloc(1, sizeof(*s));
	s->id = ++cl.next_id;
	s->worker = w;
	s->req_id = req_id;
	s->waiting = npeers;
	htab_init(&s->counts);
	broker_channels_collect(&s->counts, cluster_count);
	s->timer = evtimer_new(cl.base, cluster_survey_timeout, s);
	s->next = cl.surveys;
	cl.surveys = s;
	buf_puts(&frame, node_uid(NULL));
	buf_printf(&frame, " Q%llu", (unsigned long long)s->id);
	if (s->timer == NULL || cl.send(&frame) != 0) {
		/* Nobody can be asked: this node's channels alone. */
		if (s->timer == NULL)
			s->timer = evtimer_new(cl.base, cluster_survey_timeout, s);
		cluster_survey_finish(s);
	} else {
		evtimer_add(s->timer, &tv);
	}
	buf_free(&frame);
	return 0;
}

/* Another node asks for our channels. */
static void
cluster_answer_survey(const char *asker, size_t asker_len, const char *id, size_t id_len)
{
	struct buf frame = BUF_INIT;
	struct htab counts;
	size_t it;
	struct htab_entry *e;

	if (cl.send == NULL || id_len == 0 || id_len > 20)
		return;
	broker_catch_up();
	htab_init(&counts);
	broker_channels_collect(&counts, cluster_count);
	buf_puts(&frame, node_uid(NULL));
	buf_puts(&frame, " A");
	buf_append(&frame, asker, asker_len);
	buf_putc(&frame, ' ');
	buf_append(&frame, id, id_len);
	buf_putc(&frame, ' ');
	broker_channels_encode(&counts, 0, &frame);
	cl.send(&frame);
	for (e = htab_first(&counts, &it); e; e = htab_next(&counts, &it, e))
		free(e->value);
	htab_free(&counts);
	buf_free(&frame);
}

/* An answer to a survey (ours or another node's). */
static void
cluster_on_answer(const char *p, size_t len)
{
	const char *uid = node_uid(NULL), *sp, *sp2;
	uint64_t id;
	struct cluster_survey *s;
	struct msg res;
	size_t pos = 0;
	struct msg_str name, count;

	if ((sp = memchr(p, ' ', len)) == NULL ||
	    (size_t)(sp - p) != strlen(uid) || memcmp(p, uid, strlen(uid)) != 0)
		return;                 /* not ours */
	if ((sp2 = memchr(sp + 1, ' ', len - (size_t)(sp + 1 - p))) == NULL)
		return;
	id = strtoull(sp + 1, NULL, 10);
	for (s = cl.surveys; s && s->id != id; s = s->next)
		;
	if (s == NULL || msg_decode(sp2 + 1, len - (size_t)(sp2 + 1 - p), &res) != 0 ||
	    res.type != MSG_CHANNELS_RESULT)
		return;                 /* too late, or garbage */
	while (msg_item_next(&res, &pos, &name) == 1 && msg_item_next(&res, &pos, &count) == 1) {
		char num[24];
		snprintf(num, sizeof(num), "%.*s", (int)(count.len < 23 ? count.len : 23), count.p);
		cluster_count(&s->counts, name.p, name.len, strtoull(num, NULL, 10));
	}
	if (--s->waiting == 0)
		cluster_survey_finish(s);
}

void
cluster_reset(void)
{
	while (cl.surveys)
		cluster_survey_finish(cl.surveys);
	cl.send = NULL;
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
	else if (sp[1] == 'Q')
		cluster_answer_survey(p, ul, sp + 2, len - ul - 2);
	else if (sp[1] == 'A')
		cluster_on_answer(sp + 2, len - ul - 2);
}
