/*
 * engine_redis.c - the Redis engine, run by the broker process: several
 * nodes serve one set of channels through one Redis setup (one server or
 * several shards, a channel's keys and PUB/SUB channel always on the same
 * shard, chosen by jump consistent hashing of the channel's FNV-1a hash).
 *
 * Per shard two connections through hiredis's asynchronous API on the
 * broker's libevent loop: one for commands and Lua scripts (loaded once
 * per connection, called by SHA), one for PUB/SUB.  The node subscribes to
 * a channel's Redis channel only while some local worker has subscribers
 * (interest), in batched SUBSCRIBE/UNSUBSCRIBE commands, and always to the
 * control channel, which carries node announcements and server API
 * commands for other nodes' sessions.
 *
 * Layout (P = engine.redis.prefix): P.client.<ch> PUB/SUB, P.control,
 * P.stream.<ch> (stream, entry id <offset>-0, field d), P.stream.meta.<ch>
 * (hash: e epoch, s top offset), P.result.<ch>.<key> (idempotency),
 * P.presence.data.<ch> (hash) and P.presence.expire.<ch> (zset).
 * Payloads are this server's own msgpack records (msg.h), not Go
 * Centrifugo's Protobuf: a cluster is made of nodes of this server only.
 * PUB/SUB frames are cluster.h's, plus "__p1:<offset>:<epoch>__" + PUB
 * record for a publication appended to the channel's stream.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <openssl/sha.h>

#include "broker.h"
#include "buf.h"
#include "cluster.h"
#include "config.h"
#include "engine.h"
#include "htab.h"
#include "log.h"
#include "msg.h"
#include "node.h"
#include "redis_addr.h"
#include "redis_loop.h"
#include "tls_tunnel.h"
#include "wheel.h"
#include "xmalloc.h"

#define REDIS_SUB_BATCH      512      /* channels per SUBSCRIBE command */
#define REDIS_TIMER_MS       250
#define REDIS_BACKOFF_MIN_MS 250
#define REDIS_BACKOFF_MAX_MS 5000
#define REDIS_IDEM_TTL_S     300
#define REDIS_POSITION_TRIES 8

enum redis_script {
	SCRIPT_PUBLISH = 0,
	SCRIPT_READ,
	SCRIPT_PRESENCE_ADD,
	SCRIPT_PRESENCE_REMOVE,
	SCRIPT_PRESENCE_GET,
	SCRIPT_COUNT
};

/*
 * KEYS stream, meta, result.  ARGV payload, history size (0: none), ttl s,
 * PUB/SUB channel, meta ttl s (0: none), new epoch, result ttl s (0: no
 * idempotency).  Returns {offset, epoch}: offset and epoch are assigned
 * and the publication appended and published in one atomic step.
 */
static const char script_publish[] =
	"if ARGV[7] ~= '0' then\n"
	"  local r = redis.call('hmget', KEYS[3], 'e', 's')\n"
	"  if r[1] then return {tonumber(r[2]), r[1]} end\n"
	"end\n"
	"if ARGV[2] == '0' then\n"
	"  redis.call('publish', ARGV[4], ARGV[1])\n"
	"  if ARGV[7] ~= '0' then\n"
	"    redis.call('hset', KEYS[3], 'e', '', 's', '0')\n"
	"    redis.call('expire', KEYS[3], ARGV[7])\n"
	"  end\n"
	"  return {0, ''}\n"
	"end\n"
	"local epoch = redis.call('hget', KEYS[2], 'e')\n"
	"if not epoch then\n"
	"  epoch = ARGV[6]\n"
	"  redis.call('hset', KEYS[2], 'e', epoch)\n"
	"end\n"
	"local off = redis.call('hincrby', KEYS[2], 's', 1)\n"
	"if ARGV[5] ~= '0' then redis.call('expire', KEYS[2], ARGV[5]) end\n"
	"if off == 1 then redis.call('del', KEYS[1]) end\n"
	"redis.call('xadd', KEYS[1], 'MAXLEN', ARGV[2], off, 'd', ARGV[1])\n"
	"redis.call('expire', KEYS[1], ARGV[3])\n"
	"redis.call('publish', ARGV[4], '__p1:' .. off .. ':' .. epoch .. '__' .. ARGV[1])\n"
	"if ARGV[7] ~= '0' then\n"
	"  redis.call('hset', KEYS[3], 'e', epoch, 's', off)\n"
	"  redis.call('expire', KEYS[3], ARGV[7])\n"
	"end\n"
	"return {off, epoch}\n";

/*
 * KEYS stream, meta.  ARGV since ('' = none), limit (-1 all, 0 none),
 * reverse ('1'), meta ttl s (0: none), new epoch.  Returns {top, epoch,
 * entries}; a channel without meta gets an epoch at offset 0.
 */
static const char script_read[] =
	"local m = redis.call('hmget', KEYS[2], 's', 'e')\n"
	"local top, epoch = m[1], m[2]\n"
	"if not epoch then\n"
	"  epoch = ARGV[5]\n"
	"  redis.call('hset', KEYS[2], 'e', epoch)\n"
	"end\n"
	"if not top then top = 0 end\n"
	"if ARGV[4] ~= '0' then redis.call('expire', KEYS[2], ARGV[4]) end\n"
	"local lim = tonumber(ARGV[2])\n"
	"if lim == 0 then return {tonumber(top), epoch, {}} end\n"
	"local pubs\n"
	"if ARGV[3] ~= '1' then\n"
	"  local from = '-'\n"
	"  if ARGV[1] ~= '' then from = '(' .. ARGV[1] end\n"
	"  if lim > 0 then pubs = redis.call('xrange', KEYS[1], from, '+', 'COUNT', lim)\n"
	"  else pubs = redis.call('xrange', KEYS[1], from, '+') end\n"
	"else\n"
	"  local to = '+'\n"
	"  if ARGV[1] ~= '' then to = '(' .. ARGV[1] end\n"
	"  if lim > 0 then pubs = redis.call('xrevrange', KEYS[1], to, '-', 'COUNT', lim)\n"
	"  else pubs = redis.call('xrevrange', KEYS[1], to, '-') end\n"
	"end\n"
	"return {tonumber(top), epoch, pubs}\n";

/* KEYS data, expire.  ARGV ttl s, now s, client, info record. */
static const char script_presence_add[] =
	"redis.call('hset', KEYS[1], ARGV[3], ARGV[4])\n"
	"redis.call('expire', KEYS[1], ARGV[1])\n"
	"redis.call('zadd', KEYS[2], tonumber(ARGV[2]) + tonumber(ARGV[1]), ARGV[3])\n"
	"redis.call('expire', KEYS[2], ARGV[1])\n"
	"return 1\n";

/* KEYS data, expire.  ARGV client. */
static const char script_presence_remove[] =
	"redis.call('hdel', KEYS[1], ARGV[1])\n"
	"redis.call('zrem', KEYS[2], ARGV[1])\n"
	"return 1\n";

/* KEYS data, expire.  ARGV now s.  Drops expired clients first. */
static const char script_presence_get[] =
	"local gone = redis.call('zrangebyscore', KEYS[2], '0', ARGV[1])\n"
	"for _, c in ipairs(gone) do redis.call('hdel', KEYS[1], c) end\n"
	"redis.call('zremrangebyscore', KEYS[2], '0', ARGV[1])\n"
	"return redis.call('hgetall', KEYS[1])\n";

static const char *const redis_scripts[SCRIPT_COUNT] = {
	[SCRIPT_PUBLISH] = script_publish,
	[SCRIPT_READ] = script_read,
	[SCRIPT_PRESENCE_ADD] = script_presence_add,
	[SCRIPT_PRESENCE_REMOVE] = script_presence_remove,
	[SCRIPT_PRESENCE_GET] = script_presence_get,
};

struct redis_shard;

/* One connection of a shard, and its reconnection state. */
struct redis_conn {
	struct redis_shard *shard;
	int is_sub;               /* the PUB/SUB connection */
	redisAsyncContext *ac;    /* NULL while down */
	int up;                   /* connected (and, for commands, scripts loaded) */
	unsigned outstanding;     /* commands without an answer yet */
	uint64_t progress_ms;     /* last answer, or the start of waiting */
	uint64_t started_ms;      /* when the connection attempt began */
	uint64_t retry_at_ms;     /* 0, or when to try again */
	unsigned backoff_ms;
	int was_up;               /* had been connected before (for logs) */
	int stale;                /* talks to a replica: re-establish */
};

struct redis_shard {
	unsigned index;
	struct redis_addr addr;           /* with sentinels: the last master they named */
	struct redis_conn cmd, sub;
	/* Sentinel mode: the master is asked before every (re)connection. */
	struct redis_addr *sentinels;
	size_t nsentinels;
	size_t next_sentinel;             /* the one to ask first */
	size_t asked;                     /* sentinels asked in this round */
	redisAsyncContext *sac;           /* the sentinel being asked, or NULL */
	uint64_t sac_started_ms;
	unsigned waiting;                 /* 1: cmd, 2: sub wait for the answer */
};

/* A position request waiting for its channel's subscription. */
struct redis_wait {
	struct redis_wait *next;
	struct engine_read r;
	engine_stream_cb cb;      /* a position to read, or */
	engine_done_cb done;      /* only the subscription to wait for */
	void *arg;
};

/* A channel this node receives (or is about to, or just stopped). */
struct redis_chan {
	unsigned shard;
	int wanted;               /* local interest */
	int requested;            /* SUBSCRIBE sent, no UNSUBSCRIBE since */
	int unsub_inflight;       /* UNSUBSCRIBE sent, not confirmed */
	int confirmed;            /* Redis confirmed the subscription */
	int dirty;                /* in the change list */
	uint64_t last_offset;     /* newest publication delivered to workers */
	char epoch[ENGINE_EPOCH_LEN + 1];
	struct redis_wait *waiters;
};

/* What a command's answer completes. */
enum redis_op_kind {
	OP_NONE = 0,
	OP_PUBLISH,
	OP_READ,
	OP_POSITION,
	OP_REMOVE,
	OP_PRESENCE,
	OP_SCRIPT_LOAD
};

struct redis_op {
	enum redis_op_kind kind;
	struct redis_conn *conn;
	struct engine_to to;              /* OP_PUBLISH */
	engine_stream_cb stream_cb;       /* OP_READ, OP_POSITION */
	engine_presence_cb presence_cb;   /* OP_PRESENCE */
	engine_done_cb done_cb;           /* OP_REMOVE */
	void *arg;
	struct engine_read r;             /* OP_POSITION: to read again */
	unsigned tries;
	int script;                       /* OP_SCRIPT_LOAD */
	uint32_t channel_len;
	char channel[];
};

static struct {
	struct event_base *base;
	const struct config *cfg;
	struct redis_shard *shards;
	unsigned nshards;
	unsigned rr;                      /* control publishing round robin */
	struct htab chans;                /* channel -> struct redis_chan */
	struct buf changes;               /* channel names (u32 len + bytes) to (un)subscribe */
	struct event *flush_ev;
	struct event *timer_ev;
	char sha[SCRIPT_COUNT][2 * SHA_DIGEST_LENGTH + 1];
	SSL_CTX *tls_ctx;                 /* engine.redis.tls, or NULL */
	char *client_prefix;              /* "P.client." */
	size_t client_prefix_len;
	char *control;                    /* "P.control" */
	uint64_t next_info_ms, next_presence_ms;
	struct buf scratch;
	struct buf items_buf;
	struct msg_str *items;
	uint32_t items_cap;
	int stopping;
} rd;

static void redis_connect(struct redis_conn *c);
static void redis_schedule_flush(void);

/* ------------------------------------------------------------------ */
/* Names and shards                                                    */

static unsigned
redis_shard_of(const char *ch, size_t len)
{
	return redis_shard_index(ch, len, rd.nshards);
}

/* out = prefix "." kind "." channel [ "." suffix ] */
static void
redis_key(struct buf *out, const char *kind, const char *ch, size_t len)
{
	buf_reset(out);
	buf_puts(out, rd.cfg->engine_redis_prefix);
	buf_putc(out, '.');
	buf_puts(out, kind);
	buf_putc(out, '.');
	buf_append(out, ch, len);
}

static uint64_t
redis_secs(int64_t ms)
{
	return ms <= 0 ? 0 : (uint64_t)((ms + 999) / 1000);
}

/* ------------------------------------------------------------------ */
/* Commands                                                            */

static struct redis_op *
redis_op_new(enum redis_op_kind kind, const char *ch, size_t len)
{
	struct redis_op *op = xcalloc(1, sizeof(*op) + len + 1);

	op->kind = kind;
	if (ch)
		memcpy(op->channel, ch, len);
	op->channel_len = (uint32_t)len;
	return op;
}

/* The answer's error, logged; 0 for a usable reply.  A master that became
 * a replica (READONLY) marks the connection for re-establishing, which in
 * Sentinel mode finds the new master. */
static int
redis_reply_error(struct redis_conn *c, const redisReply *r, const char *what)
{
	if (r == NULL)
		return 100;
	if (r->type == REDIS_REPLY_ERROR) {
		log_error("redis: %s: %.*s", what, (int)r->len, r->str);
		if (c && (strncmp(r->str, "READONLY", 8) == 0 || strncmp(r->str, "MASTERDOWN", 10) == 0))
			c->stale = 1;
		return 100;
	}
	return 0;
}

static void redis_on_reply(redisAsyncContext *ac, void *reply, void *priv);

/* Sends a command on shard s's command connection; op (owned from now on)
 * completes with its answer or an error.  -1 when the shard is down: op
 * is then left to the caller. */
static int
redis_send(struct redis_shard *s, struct redis_op *op, int argc, const char **argv,
    const size_t *lens)
{
	struct redis_conn *c = &s->cmd;

	if (c->ac == NULL || (!c->up && op->kind != OP_SCRIPT_LOAD && c->outstanding > 64))
		return -1;
	op->conn = c;
	if (redisAsyncCommandArgv(c->ac, redis_on_reply, op, argc, argv, lens) != REDIS_OK)
		return -1;
	if (c->outstanding++ == 0)
		c->progress_ms = wheel_now_ms();
	return 0;
}

/* Fire-and-forget commands (presence updates): the answer is only checked. */
static void
redis_send_noreply(struct redis_shard *s, int argc, const char **argv, const size_t *lens)
{
	struct redis_op *op = redis_op_new(OP_NONE, NULL, 0);

	if (redis_send(s, op, argc, argv, lens) != 0)
		free(op);
}

static int
redis_evalsha(struct redis_shard *s, struct redis_op *op, enum redis_script script, int nkeys,
    int nargs, const char **args, const size_t *lens)
{
	const char *argv[16];
	size_t argl[16];
	char nk[4];

	snprintf(nk, sizeof(nk), "%d", nkeys);
	argv[0] = "EVALSHA";
	argl[0] = 7;
	argv[1] = rd.sha[script];
	argl[1] = strlen(rd.sha[script]);
	argv[2] = nk;
	argl[2] = strlen(nk);
	for (int i = 0; i < nargs && i < 13; i++) {
		argv[3 + i] = args[i];
		argl[3 + i] = lens[i];
	}
	return redis_send(s, op, 3 + nargs, argv, argl);
}

/* Re-encodes a stored PUB record with its offset and epoch into
 * rd.items_buf; returns -1 for a record that does not decode. */
static int
redis_pub_with_position(const char *p, size_t len, uint64_t offset, const char *epoch,
    struct buf *out)
{
	struct msg m;

	if (msg_decode(p, len, &m) != 0 || m.type != MSG_PUB)
		return -1;
	m.offset = offset;
	m.epoch = (struct msg_str){ epoch, (uint32_t)strlen(epoch) };
	msg_encode(&m, out);
	return 0;
}

/* Turns a read script's entries into PUB records in rd.items. */
static uint32_t
redis_entries(const redisReply *entries, const char *epoch)
{
	size_t *ends;
	uint32_t n = 0;

	buf_reset(&rd.items_buf);
	if (entries == NULL || entries->type != REDIS_REPLY_ARRAY || entries->elements == 0)
		return 0;
	ends = xcalloc(entries->elements, sizeof(*ends));
	for (size_t i = 0; i < entries->elements; i++) {
		const redisReply *e = entries->element[i], *id, *fv;
		uint64_t off;
		if (e->type != REDIS_REPLY_ARRAY || e->elements != 2)
			continue;
		id = e->element[0];
		fv = e->element[1];
		if (id->type != REDIS_REPLY_STRING || fv->type != REDIS_REPLY_ARRAY ||
		    fv->elements < 2 || fv->element[1]->type != REDIS_REPLY_STRING)
			continue;
		off = strtoull(id->str, NULL, 10);
		if (redis_pub_with_position(fv->element[1]->str, fv->element[1]->len, off, epoch,
		    &rd.items_buf) == 0)
			ends[n++] = rd.items_buf.len;
	}
	if (n > rd.items_cap) {
		rd.items_cap = n;
		rd.items = xrealloc(rd.items, n * sizeof(*rd.items));
	}
	for (uint32_t i = 0; i < n; i++) {
		size_t start = i ? ends[i - 1] : 0;
		rd.items[i] = (struct msg_str){ rd.items_buf.data + start, (uint32_t)(ends[i] - start) };
	}
	free(ends);
	return n;
}

static void redis_read_send(struct redis_op *op);

static void
redis_position_answer(struct redis_op *op, const redisReply *r)
{
	char epoch[64];
	uint64_t top;
	struct redis_chan *ch;
	uint32_t n;

	top = (uint64_t)r->element[0]->integer;
	snprintf(epoch, sizeof(epoch), "%.*s", (int)r->element[1]->len, r->element[1]->str);
	ch = htab_get(&rd.chans, op->channel, op->channel_len);
	if (op->kind == OP_POSITION && ch && strcmp(ch->epoch, epoch) == 0 &&
	    ch->last_offset > top && op->tries < REDIS_POSITION_TRIES) {
		/* Publications newer than this read already went to the
		 * workers: read again, so the position is not behind them. */
		struct redis_op *again = redis_op_new(OP_POSITION, op->channel, op->channel_len);
		again->stream_cb = op->stream_cb;
		again->arg = op->arg;
		again->r = op->r;
		again->tries = op->tries + 1;
		op->stream_cb = NULL;
		redis_read_send(again);
		return;
	}
	n = redis_entries(r->element[2], epoch);
	op->stream_cb(op->arg, 0, top, epoch, rd.items, n);
	op->stream_cb = NULL;
}

static void
redis_presence_answer(struct redis_op *op, const redisReply *r)
{
	struct msg_str *items = xcalloc(r->elements * 2 + 1, sizeof(*items));
	uint32_t n = 0;

	for (size_t i = 0; i + 1 < r->elements; i += 2) {
		const redisReply *v = r->element[i + 1];
		struct msg m;
		if (v->type != REDIS_REPLY_STRING || msg_decode(v->str, v->len, &m) != 0)
			continue;
		items[n++] = m.user;
		items[n++] = m.client;
		items[n++] = m.conn_info;
		items[n++] = m.chan_info;
	}
	op->presence_cb(op->arg, 0, items, n);
	free(items);
}

static void redis_cmd_ready(struct redis_conn *c);

static void
redis_on_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	struct redis_op *op = priv;
	redisReply *r = reply;
	struct redis_conn *c = op->conn;
	int err;

	if (c->outstanding)
		c->outstanding--;
	c->progress_ms = wheel_now_ms();
	switch (op->kind) {
	case OP_NONE:
		redis_reply_error(c, r, "command");
		break;
	case OP_SCRIPT_LOAD:
		if ((err = redis_reply_error(c, r, "SCRIPT LOAD")) == 0 &&
		    (r->type != REDIS_REPLY_STRING || strcmp(r->str, rd.sha[op->script]) != 0))
			log_error("redis: SCRIPT LOAD answered an unexpected digest");
		if (err == 0 && op->script == SCRIPT_COUNT - 1 && r)
			redis_cmd_ready(c);
		break;
	case OP_PUBLISH:
		if ((err = redis_reply_error(c, r, "publish")) != 0) {
			broker_publish_done(op->to, err, 0, "");
		} else if (r->type == REDIS_REPLY_INTEGER) {          /* plain PUBLISH */
			broker_publish_done(op->to, 0, 0, "");
		} else if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
		    r->element[0]->type == REDIS_REPLY_INTEGER &&
		    r->element[1]->type == REDIS_REPLY_STRING) {
			char epoch[64];
			snprintf(epoch, sizeof(epoch), "%.*s", (int)r->element[1]->len, r->element[1]->str);
			broker_publish_done(op->to, 0, (uint64_t)r->element[0]->integer, epoch);
		} else {
			log_error("redis: publish script answered an unexpected shape");
			broker_publish_done(op->to, 100, 0, "");
		}
		break;
	case OP_READ:
	case OP_POSITION:
		if ((err = redis_reply_error(c, r, "history read")) == 0 &&
		    (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
		     r->element[0]->type != REDIS_REPLY_INTEGER ||
		     r->element[1]->type != REDIS_REPLY_STRING)) {
			log_error("redis: history script answered an unexpected shape");
			err = 100;
		}
		if (err)
			op->stream_cb(op->arg, err, 0, "", NULL, 0);
		else
			redis_position_answer(op, r);
		break;
	case OP_REMOVE:
		op->done_cb(op->arg, redis_reply_error(c, r, "history remove"));
		break;
	case OP_PRESENCE:
		if ((err = redis_reply_error(c, r, "presence")) == 0 && r->type != REDIS_REPLY_ARRAY)
			err = 100;
		if (err)
			op->presence_cb(op->arg, err, NULL, 0);
		else
			redis_presence_answer(op, r);
		break;
	}
	free(op);
}

/* ------------------------------------------------------------------ */
/* Engine operations                                                   */

static void
redis_publish(const struct msg *pub, const struct msg *req, struct engine_to to)
{
	unsigned si = redis_shard_of(req->channel.p, req->channel.len);
	struct redis_shard *s = &rd.shards[si];
	struct redis_op *op = redis_op_new(OP_PUBLISH, NULL, 0);
	struct buf rec = BUF_INIT, chan = BUF_INIT, stream = BUF_INIT, meta = BUF_INIT,
	    result = BUF_INIT;
	int history = req->history_size > 0 && req->history_ttl_ms > 0;
	int rc;

	op->to = to;
	msg_encode(pub, &rec);
	redis_key(&chan, "client", req->channel.p, req->channel.len);
	if (!history && req->epoch.len == 0) {
		const char *argv[] = { "PUBLISH", chan.data, rec.data };
		size_t lens[] = { 7, chan.len, rec.len };
		rc = redis_send(s, op, 3, argv, lens);
	} else {
		char size[24], ttl[24], meta_ttl[24], rttl[24], epoch[ENGINE_EPOCH_LEN + 1];
		const char *args[10];
		size_t lens[10];

		redis_key(&stream, "stream", req->channel.p, req->channel.len);
		redis_key(&meta, "stream.meta", req->channel.p, req->channel.len);
		redis_key(&result, "result", req->channel.p, req->channel.len);
		buf_putc(&result, '.');
		buf_append(&result, req->epoch.p, req->epoch.len);
		snprintf(size, sizeof(size), "%lld", history ? (long long)req->history_size : 0LL);
		snprintf(ttl, sizeof(ttl), "%llu", (unsigned long long)redis_secs(req->history_ttl_ms));
		snprintf(meta_ttl, sizeof(meta_ttl), "%llu",
		    (unsigned long long)redis_secs(req->history_meta_ttl_ms));
		snprintf(rttl, sizeof(rttl), "%d", req->epoch.len ? REDIS_IDEM_TTL_S : 0);
		engine_new_epoch(epoch);
		args[0] = stream.data; lens[0] = stream.len;
		args[1] = meta.data; lens[1] = meta.len;
		args[2] = result.data; lens[2] = result.len;
		args[3] = rec.data; lens[3] = rec.len;
		args[4] = size; lens[4] = strlen(size);
		args[5] = ttl; lens[5] = strlen(ttl);
		args[6] = chan.data; lens[6] = chan.len;
		args[7] = meta_ttl; lens[7] = strlen(meta_ttl);
		args[8] = epoch; lens[8] = strlen(epoch);
		args[9] = rttl; lens[9] = strlen(rttl);
		rc = redis_evalsha(s, op, SCRIPT_PUBLISH, 3, 10, args, lens);
	}
	if (rc != 0) {
		free(op);
		broker_publish_done(to, 100, 0, "");
	}
	buf_free(&rec);
	buf_free(&chan);
	buf_free(&stream);
	buf_free(&meta);
	buf_free(&result);
}

static void
redis_read_send(struct redis_op *op)
{
	struct redis_shard *s = &rd.shards[redis_shard_of(op->channel, op->channel_len)];
	struct buf stream = BUF_INIT, meta = BUF_INIT;
	char since[24] = "", limit[24], meta_ttl[24], epoch[ENGINE_EPOCH_LEN + 1];
	const char *args[7];
	size_t lens[7];

	redis_key(&stream, "stream", op->channel, op->channel_len);
	redis_key(&meta, "stream.meta", op->channel, op->channel_len);
	if (op->r.has_since)
		snprintf(since, sizeof(since), "%llu", (unsigned long long)op->r.since);
	snprintf(limit, sizeof(limit), "%lld", (long long)(op->r.limit < 0 ? -1 : op->r.limit));
	snprintf(meta_ttl, sizeof(meta_ttl), "%llu", (unsigned long long)redis_secs(op->r.meta_ttl_ms));
	engine_new_epoch(epoch);
	args[0] = stream.data; lens[0] = stream.len;
	args[1] = meta.data; lens[1] = meta.len;
	args[2] = since; lens[2] = strlen(since);
	args[3] = limit; lens[3] = strlen(limit);
	args[4] = op->r.reverse ? "1" : "0"; lens[4] = 1;
	args[5] = meta_ttl; lens[5] = strlen(meta_ttl);
	args[6] = epoch; lens[6] = strlen(epoch);
	if (redis_evalsha(s, op, SCRIPT_READ, 2, 7, args, lens) != 0) {
		op->stream_cb(op->arg, 100, 0, "", NULL, 0);
		free(op);
	}
	buf_free(&stream);
	buf_free(&meta);
}

static void
redis_read(const struct msg_str *channel, const struct engine_read *r, engine_stream_cb cb,
    void *arg)
{
	struct redis_op *op = redis_op_new(OP_READ, channel->p, channel->len);

	op->r = *r;
	op->stream_cb = cb;
	op->arg = arg;
	redis_read_send(op);
}

/*
 * 1 when the channel's subscription is confirmed; 0 when w (owned from
 * now on) was queued until it is; -1 when nobody here receives the channel
 * (the subscriber left already) or PUB/SUB is down (w freed).
 */
static int
redis_wait_subscribed(const struct msg_str *channel, struct redis_wait *w)
{
	struct redis_chan *ch = htab_get(&rd.chans, channel->p, channel->len);
	struct redis_wait **tail;

	if (ch == NULL || !ch->wanted || rd.shards[ch->shard].sub.ac == NULL) {
		free(w);
		return -1;
	}
	if (ch->confirmed) {
		free(w);
		return 1;
	}
	for (tail = &ch->waiters; *tail; tail = &(*tail)->next)
		;
	*tail = w;
	return 0;
}

static void
redis_ready(const struct msg_str *channel, engine_done_cb cb, void *arg)
{
	struct redis_wait *w = xcalloc(1, sizeof(*w));
	int rc;

	w->done = cb;
	w->arg = arg;
	if ((rc = redis_wait_subscribed(channel, w)) != 0)
		cb(arg, rc > 0 ? 0 : 100);
}

static void
redis_position(const struct msg_str *channel, const struct engine_read *r,
    engine_stream_cb cb, void *arg)
{
	struct redis_wait *w = xcalloc(1, sizeof(*w));
	struct redis_op *op;
	int rc;

	w->r = *r;
	w->cb = cb;
	w->arg = arg;
	if ((rc = redis_wait_subscribed(channel, w)) <= 0) {
		if (rc < 0)
			cb(arg, 100, 0, "", NULL, 0);
		return;
	}
	op = redis_op_new(OP_POSITION, channel->p, channel->len);
	op->r = *r;
	op->stream_cb = cb;
	op->arg = arg;
	redis_read_send(op);
}

static void
redis_history_remove(const struct msg_str *channel, engine_done_cb cb, void *arg)
{
	struct redis_shard *s = &rd.shards[redis_shard_of(channel->p, channel->len)];
	struct redis_op *op = redis_op_new(OP_REMOVE, NULL, 0);
	struct buf stream = BUF_INIT;
	const char *argv[2];
	size_t lens[2];

	redis_key(&stream, "stream", channel->p, channel->len);
	argv[0] = "DEL"; lens[0] = 3;
	argv[1] = stream.data; lens[1] = stream.len;
	op->done_cb = cb;
	op->arg = arg;
	if (redis_send(s, op, 2, argv, lens) != 0) {
		free(op);
		cb(arg, 100);
	}
	buf_free(&stream);
}

static void
redis_presence_keys(const struct msg_str *channel, struct buf *data, struct buf *exp)
{
	redis_key(data, "presence.data", channel->p, channel->len);
	redis_key(exp, "presence.expire", channel->p, channel->len);
}

static void
redis_presence_add(const struct msg_str *channel, const struct engine_presence *p)
{
	struct redis_shard *s = &rd.shards[redis_shard_of(channel->p, channel->len)];
	struct buf data = BUF_INIT, exp = BUF_INIT, rec = BUF_INIT;
	struct msg m = { .type = MSG_JOIN, .has_info = 1 };
	char ttl[24], now[24];
	const char *args[6];
	size_t lens[6];
	struct redis_op *op;

	m.channel = *channel;
	m.user = p->user;
	m.client = p->client;
	m.conn_info = p->conn_info;
	m.chan_info = p->chan_info;
	msg_encode(&m, &rec);
	redis_presence_keys(channel, &data, &exp);
	snprintf(ttl, sizeof(ttl), "%llu",
	    (unsigned long long)redis_secs(rd.cfg->engine_redis_presence_ttl));
	snprintf(now, sizeof(now), "%lld", (long long)time(NULL));
	args[0] = data.data; lens[0] = data.len;
	args[1] = exp.data; lens[1] = exp.len;
	args[2] = ttl; lens[2] = strlen(ttl);
	args[3] = now; lens[3] = strlen(now);
	args[4] = p->client.p; lens[4] = p->client.len;
	args[5] = rec.data; lens[5] = rec.len;
	op = redis_op_new(OP_NONE, NULL, 0);
	if (redis_evalsha(s, op, SCRIPT_PRESENCE_ADD, 2, 6, args, lens) != 0)
		free(op);
	buf_free(&data);
	buf_free(&exp);
	buf_free(&rec);
}

static void
redis_presence_remove(const struct msg_str *channel, const struct engine_presence *p)
{
	struct redis_shard *s = &rd.shards[redis_shard_of(channel->p, channel->len)];
	struct buf data = BUF_INIT, exp = BUF_INIT;
	const char *args[3];
	size_t lens[3];
	struct redis_op *op = redis_op_new(OP_NONE, NULL, 0);

	redis_presence_keys(channel, &data, &exp);
	args[0] = data.data; lens[0] = data.len;
	args[1] = exp.data; lens[1] = exp.len;
	args[2] = p->client.p; lens[2] = p->client.len;
	if (redis_evalsha(s, op, SCRIPT_PRESENCE_REMOVE, 2, 3, args, lens) != 0)
		free(op);
	buf_free(&data);
	buf_free(&exp);
}

static void
redis_presence_get(const struct msg_str *channel, engine_presence_cb cb, void *arg)
{
	struct redis_shard *s = &rd.shards[redis_shard_of(channel->p, channel->len)];
	struct buf data = BUF_INIT, exp = BUF_INIT;
	char now[24];
	const char *args[3];
	size_t lens[3];
	struct redis_op *op = redis_op_new(OP_PRESENCE, NULL, 0);

	redis_presence_keys(channel, &data, &exp);
	snprintf(now, sizeof(now), "%lld", (long long)time(NULL));
	args[0] = data.data; lens[0] = data.len;
	args[1] = exp.data; lens[1] = exp.len;
	args[2] = now; lens[2] = strlen(now);
	op->presence_cb = cb;
	op->arg = arg;
	if (redis_evalsha(s, op, SCRIPT_PRESENCE_GET, 2, 3, args, lens) != 0) {
		free(op);
		cb(arg, 100, NULL, 0);
	}
	buf_free(&data);
	buf_free(&exp);
}

/* Publishes a frame on a PUB/SUB channel of shard s (no answer awaited). */
static void
redis_publish_frame(struct redis_shard *s, const char *chan, size_t chan_len, const struct buf *frame)
{
	const char *argv[] = { "PUBLISH", chan, frame->data };
	size_t lens[] = { 7, chan_len, frame->len };

	redis_send_noreply(s, 3, argv, lens);
}

/* The next shard whose command connection is up, round robin. */
static struct redis_shard *
redis_control_shard(void)
{
	for (unsigned i = 0; i < rd.nshards; i++) {
		struct redis_shard *s = &rd.shards[rd.rr++ % rd.nshards];
		if (s->cmd.up)
			return s;
	}
	return NULL;
}

/* cluster.c's sender: a control frame on the next shard that is up. */
static int
redis_send_control(const struct buf *frame)
{
	struct redis_shard *s = redis_control_shard();

	if (s == NULL)
		return -1;
	redis_publish_frame(s, rd.control, strlen(rd.control), frame);
	return 0;
}

static void
redis_broadcast(const struct msg *m)
{
	struct buf frame = BUF_INIT, chan = BUF_INIT;

	/* This node at once; the others through Redis (they skip our uid). */
	broker_fanout(m);
	if (m->type == MSG_JOIN || m->type == MSG_LEAVE) {
		struct redis_shard *s = &rd.shards[redis_shard_of(m->channel.p, m->channel.len)];
		cluster_join_leave_frame(&frame, m);
		redis_key(&chan, "client", m->channel.p, m->channel.len);
		redis_publish_frame(s, chan.data, chan.len, &frame);
	} else {
		cluster_control_frame(&frame, m);
		if (redis_send_control(&frame) != 0)
			log_warn("redis: no shard is up, a %s command reaches this node only",
			    msg_type_name(m->type));
	}
	buf_free(&frame);
	buf_free(&chan);
}

/* ------------------------------------------------------------------ */
/* PUB/SUB                                                             */

static struct redis_chan *
redis_chan_get(const char *ch, size_t len, int create)
{
	struct redis_chan *c = htab_get(&rd.chans, ch, len);

	if (c == NULL && create) {
		c = xcalloc(1, sizeof(*c));
		c->shard = redis_shard_of(ch, len);
		htab_put(&rd.chans, ch, len, c);
	}
	return c;
}

static void
redis_chan_dirty(const char *ch, size_t len, struct redis_chan *c)
{
	if (c->dirty)
		return;
	c->dirty = 1;
	buf_put_item(&rd.changes, ch, (uint32_t)len);
	redis_schedule_flush();
}

/* Fails the position requests waiting for a channel. */
static void
redis_fail_waiters(struct redis_chan *c)
{
	while (c->waiters) {
		struct redis_wait *w = c->waiters;
		c->waiters = w->next;
		if (w->done)
			w->done(w->arg, 100);
		else
			w->cb(w->arg, 100, 0, "", NULL, 0);
		free(w);
	}
}

static void
redis_chan_maybe_free(const char *ch, size_t len, struct redis_chan *c)
{
	if (!c->wanted && !c->requested && !c->unsub_inflight && !c->confirmed && !c->dirty &&
	    c->waiters == NULL)
		free(htab_del(&rd.chans, ch, len));
}

static void
redis_interest(const char *ch, size_t len, int on)
{
	struct redis_chan *c = redis_chan_get(ch, len, on);

	if (c == NULL)
		return;
	c->wanted = on;
	if (!on)
		redis_fail_waiters(c);
	redis_chan_dirty(ch, len, c);
}

/* Sends one (UN)SUBSCRIBE command for up to REDIS_SUB_BATCH names. */
static void
redis_sub_command(struct redis_shard *s, const char *verb, const char **names,
    const size_t *lens, unsigned n);

/* Applies the change list: one SUBSCRIBE and one UNSUBSCRIBE per shard
 * and batch. */
static void
redis_flush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct buf changes = rd.changes, name = BUF_INIT, names = BUF_INIT;
	size_t off;
	const char *ch;
	uint32_t l;
	struct redis_chan *c;

	buf_init(&rd.changes);
	for (unsigned si = 0; si < rd.nshards; si++) {
		struct redis_shard *s = &rd.shards[si];
		for (int sub = 1; sub >= 0; sub--) {
			const char *ptrs[REDIS_SUB_BATCH];
			size_t lens[REDIS_SUB_BATCH];
			unsigned n = 0;

			buf_reset(&names);
			/* First collect the full names (stable storage), then point. */
			for (off = 0; buf_next_item(&changes, &off, &ch, &l);) {
				c = htab_get(&rd.chans, ch, l);
				if (c == NULL || c->shard != si || s->sub.ac == NULL || !s->sub.up)
					continue;
				if (sub && c->wanted && !c->requested && !c->unsub_inflight) {
					c->requested = 1;
				} else if (!sub && !c->wanted && c->requested) {
					c->requested = 0;
					c->unsub_inflight = 1;
					c->confirmed = 0;
				} else {
					continue;
				}
				redis_key(&name, "client", ch, l);
				buf_put_item(&names, name.data, (uint32_t)name.len);
			}
			for (off = 0; buf_next_item(&names, &off, &ch, &l);) {
				ptrs[n] = ch;
				lens[n] = l;
				if (++n == REDIS_SUB_BATCH) {
					redis_sub_command(s, sub ? "SUBSCRIBE" : "UNSUBSCRIBE", ptrs, lens, n);
					n = 0;
				}
			}
			if (n)
				redis_sub_command(s, sub ? "SUBSCRIBE" : "UNSUBSCRIBE", ptrs, lens, n);
		}
	}
	for (off = 0; buf_next_item(&changes, &off, &ch, &l);) {
		if ((c = htab_get(&rd.chans, ch, l)) != NULL) {
			c->dirty = 0;
			redis_chan_maybe_free(ch, l, c);
		}
	}
	buf_free(&changes);
	buf_free(&name);
	buf_free(&names);
}

static void
redis_schedule_flush(void)
{
	if (!event_pending(rd.flush_ev, EV_TIMEOUT, NULL)) {
		struct timeval now = { 0, 0 };
		event_add(rd.flush_ev, &now);
	}
}

static void redis_on_pubsub(redisAsyncContext *ac, void *reply, void *priv);

static void
redis_sub_command(struct redis_shard *s, const char *verb, const char **names,
    const size_t *lens, unsigned n)
{
	const char **argv = xcalloc(n + 1, sizeof(*argv));
	size_t *argl = xcalloc(n + 1, sizeof(*argl));

	argv[0] = verb;
	argl[0] = strlen(verb);
	memcpy(argv + 1, names, n * sizeof(*argv));
	memcpy(argl + 1, lens, n * sizeof(*argl));
	if (redisAsyncCommandArgv(s->sub.ac, redis_on_pubsub, s, (int)n + 1, argv, argl) != REDIS_OK)
		log_error("redis shard %u: %s of %u channels failed", s->index, verb, n);
	free(argv);
	free(argl);
}

/* A publication (or join/leave) from Redis for the workers. */
static void
redis_on_channel_message(const char *ch, size_t len, const char *p, size_t plen)
{
	if (plen > 5 && memcmp(p, "__p1:", 5) == 0) {
		const char *q = p + 5, *end = p + plen, *colon, *close;
		char epoch[ENGINE_EPOCH_LEN + 1];
		uint64_t off = strtoull(q, NULL, 10);
		struct redis_chan *c;

		colon = memchr(q, ':', (size_t)(end - q));
		if (colon == NULL)
			return;
		close = NULL;
		for (const char *x = colon + 1; x + 1 < end; x++)
			if (x[0] == '_' && x[1] == '_') {
				close = x;
				break;
			}
		if (close == NULL || (size_t)(close - colon - 1) > ENGINE_EPOCH_LEN)
			return;
		memcpy(epoch, colon + 1, (size_t)(close - colon - 1));
		epoch[close - colon - 1] = '\0';
		buf_reset(&rd.scratch);
		if (redis_pub_with_position(close + 2, (size_t)(end - close - 2), off, epoch,
		    &rd.scratch) != 0) {
			log_error("redis: undecodable publication on channel %.*s", (int)len, ch);
			return;
		}
		broker_fanout_raw(rd.scratch.data, rd.scratch.len);
		if ((c = htab_get(&rd.chans, ch, len)) != NULL) {
			if (strcmp(c->epoch, epoch) != 0) {
				snprintf(c->epoch, sizeof(c->epoch), "%s", epoch);
				c->last_offset = 0;
			}
			if (off > c->last_offset)
				c->last_offset = off;
		}
		return;
	}
	cluster_on_channel_frame(p, plen);
}

static void
redis_on_pubsub(redisAsyncContext *ac, void *reply, void *priv)
{
	struct redis_shard *s = priv;
	redisReply *r = reply, *kind, *name;
	const char *ch;
	size_t len;
	struct redis_chan *c;

	if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements < 3)
		return;
	kind = r->element[0];
	name = r->element[1];
	if (kind->type != REDIS_REPLY_STRING || name->type != REDIS_REPLY_STRING)
		return;
	s->sub.progress_ms = wheel_now_ms();
	if (!s->sub.was_up) {
		/* The first answer on a new PUB/SUB connection. */
		s->sub.was_up = 1;
		s->sub.backoff_ms = 0;
		log_info("redis shard %u: PUB/SUB connected", s->index);
		/* Publications may have passed while this node was not
		 * subscribed: positioned subscribers recover. */
		broker_positions_lost();
	}
	if (name->len == strlen(rd.control) && memcmp(name->str, rd.control, name->len) == 0) {
		if (strcmp(kind->str, "message") == 0 && r->element[2]->type == REDIS_REPLY_STRING)
			cluster_on_control_frame(r->element[2]->str, r->element[2]->len);
		return;
	}
	if (name->len < rd.client_prefix_len ||
	    memcmp(name->str, rd.client_prefix, rd.client_prefix_len) != 0)
		return;
	ch = name->str + rd.client_prefix_len;
	len = name->len - rd.client_prefix_len;
	if (strcmp(kind->str, "message") == 0) {
		if (r->element[2]->type == REDIS_REPLY_STRING)
			redis_on_channel_message(ch, len, r->element[2]->str, r->element[2]->len);
		return;
	}
	c = htab_get(&rd.chans, ch, len);
	if (c == NULL)
		return;
	if (strcmp(kind->str, "subscribe") == 0) {
		c->confirmed = c->requested;
		/* The subscription is live: waiting positions can be read. */
		while (c->confirmed && c->waiters) {
			struct redis_wait *w = c->waiters;
			c->waiters = w->next;
			if (w->done) {
				w->done(w->arg, 0);
			} else {
				struct redis_op *op = redis_op_new(OP_POSITION, ch, len);
				op->r = w->r;
				op->stream_cb = w->cb;
				op->arg = w->arg;
				redis_read_send(op);
			}
			free(w);
		}
	} else if (strcmp(kind->str, "unsubscribe") == 0) {
		c->unsub_inflight = 0;
		c->confirmed = 0;
		if (c->wanted)
			redis_chan_dirty(ch, len, c);       /* wanted again meanwhile */
		else
			redis_chan_maybe_free(ch, len, c);
	}
}

/* ------------------------------------------------------------------ */
/* Connections                                                         */

static void
redis_conn_down(struct redis_conn *c, const char *why)
{
	struct redis_shard *s = c->shard;
	const char *where = s->addr.path ? s->addr.path : s->addr.host;

	if (c->was_up || c->backoff_ms == 0)
		log_warn("redis shard %u (%s:%d) %s connection: %s; reconnecting", s->index, where,
		    s->addr.port, c->is_sub ? "PUB/SUB" : "command", why);
	c->ac = NULL;
	c->up = 0;
	c->outstanding = 0;
	c->was_up = 0;
	c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : REDIS_BACKOFF_MIN_MS;
	if (c->backoff_ms > REDIS_BACKOFF_MAX_MS)
		c->backoff_ms = REDIS_BACKOFF_MAX_MS;
	c->retry_at_ms = wheel_now_ms() + c->backoff_ms;
	if (c->is_sub) {
		size_t it;
		struct htab_entry *e;
		/* Every subscription of the shard is gone with the connection. */
		for (e = htab_first(&rd.chans, &it); e; e = htab_next(&rd.chans, &it, e)) {
			struct redis_chan *ch = e->value;
			if (ch->shard != s->index)
				continue;
			ch->confirmed = 0;
			ch->requested = 0;
			ch->unsub_inflight = 0;
			redis_fail_waiters(ch);
		}
	}
}

static void
redis_connect_cb(const redisAsyncContext *ac, int status)
{
	struct redis_conn *c = ac->data;

	if (status != REDIS_OK) {
		redis_conn_down(c, ac->errstr[0] ? ac->errstr : "connect failed");
		return;
	}
	if (c->is_sub) {
		size_t it;
		struct htab_entry *e;
		/* Commands may go; it counts as up once Redis has answered
		 * (redis_on_pubsub): over TLS this connect is only the local
		 * end of the tunnel. */
		c->up = 1;
		c->progress_ms = wheel_now_ms();
		{
			const char *names[1] = { rd.control };
			size_t lens[1] = { strlen(rd.control) };
			redis_sub_command(c->shard, "SUBSCRIBE", names, lens, 1);
		}
		for (e = htab_first(&rd.chans, &it); e; e = htab_next(&rd.chans, &it, e)) {
			struct redis_chan *ch = e->value;
			if (ch->shard == c->shard->index && ch->wanted)
				redis_chan_dirty(e->key, e->klen, ch);
		}
	}
}

static void
redis_disconnect_cb(const redisAsyncContext *ac, int status)
{
	struct redis_conn *c = ac->data;

	if (c->ac == ac && !rd.stopping)
		redis_conn_down(c, ac->errstr[0] ? ac->errstr : "connection closed");
	else if (c->ac == ac)
		c->ac = NULL;
}

static void
redis_cmd_ready(struct redis_conn *c)
{
	c->up = 1;
	c->was_up = 1;
	c->backoff_ms = 0;
	log_info("redis shard %u: connected, scripts loaded", c->shard->index);
}

/* Starts a connection: AUTH and SELECT first, then (commands) the scripts
 * or (PUB/SUB) the subscriptions, once connected. */
static void
redis_connect_direct(struct redis_conn *c)
{
	struct redis_shard *s = c->shard;
	redisAsyncContext *ac;
	const char *user = s->addr.user ? s->addr.user : rd.cfg->engine_redis_user;
	const char *pass = s->addr.password ? s->addr.password : rd.cfg->engine_redis_password;
	int db = s->addr.db >= 0 ? s->addr.db : (int)rd.cfg->engine_redis_db;

	c->retry_at_ms = 0;
	if (s->addr.tls) {
		/* hiredis talks to the tunnel, the tunnel TLS to Redis. */
		struct tls_tunnel *t;
		char path[128], why[200], what[48];
		snprintf(what, sizeof(what), "redis shard %u", s->index);
		t = tls_tunnel_open(rd.base, rd.tls_ctx, s->addr.host, s->addr.port,
		    rd.cfg->engine_redis_tls_server_name,
		    (unsigned)rd.cfg->engine_redis_connect_timeout, what, c->backoff_ms != 0,
		    path, sizeof(path), why, sizeof(why));
		if (t == NULL) {
			redis_conn_down(c, why);
			return;
		}
		ac = redisAsyncConnectUnix(path);
		tls_tunnel_unlink(t);
	} else {
		ac = s->addr.path ? redisAsyncConnectUnix(s->addr.path) :
		    redisAsyncConnect(s->addr.host, s->addr.port);
	}
	if (ac == NULL) {
		redis_conn_down(c, "out of memory");
		return;
	}
	if (ac->err) {
		char why[160];
		snprintf(why, sizeof(why), "%s", ac->errstr);
		redisAsyncFree(ac);
		redis_conn_down(c, why);
		return;
	}
	ac->data = c;
	c->ac = ac;
	c->up = 0;
	c->outstanding = 0;
	c->started_ms = wheel_now_ms();
	redis_loop_attach(ac, rd.base);
	redisAsyncSetConnectCallback(ac, redis_connect_cb);
	redisAsyncSetDisconnectCallback(ac, redis_disconnect_cb);
	if (pass[0]) {
		const char *argv[3] = { "AUTH", user, pass };
		size_t lens[3] = { 4, strlen(user), strlen(pass) };
		struct redis_op *op = redis_op_new(OP_NONE, NULL, 0);
		op->conn = c;
		if (user[0])
			redisAsyncCommandArgv(ac, redis_on_reply, op, 3, argv, lens);
		else {
			argv[1] = pass;
			lens[1] = strlen(pass);
			redisAsyncCommandArgv(ac, redis_on_reply, op, 2, argv, lens);
		}
		c->outstanding++;
	}
	if (c->is_sub)
		return;
	if (db > 0) {
		char d[16];
		struct redis_op *op = redis_op_new(OP_NONE, NULL, 0);
		const char *argv[2] = { "SELECT", d };
		size_t lens[2];
		snprintf(d, sizeof(d), "%d", db);
		lens[0] = 6;
		lens[1] = strlen(d);
		op->conn = c;
		redisAsyncCommandArgv(ac, redis_on_reply, op, 2, argv, lens);
		c->outstanding++;
	}
	for (int i = 0; i < SCRIPT_COUNT; i++) {
		const char *argv[3] = { "SCRIPT", "LOAD", redis_scripts[i] };
		size_t lens[3] = { 6, 4, strlen(redis_scripts[i]) };
		struct redis_op *op = redis_op_new(OP_SCRIPT_LOAD, NULL, 0);
		op->script = i;
		op->conn = c;
		redisAsyncCommandArgv(ac, redis_on_reply, op, 3, argv, lens);
		c->outstanding++;
	}
	c->progress_ms = wheel_now_ms();
}

/* ------------------------------------------------------------------ */
/* Sentinel                                                            */

static void redis_sentinel_ask(struct redis_shard *s);

/* No sentinel of the shard named a master: the waiting connections
 * retry later, with their backoff. */
static void
redis_sentinel_failed(struct redis_shard *s, const char *why)
{
	unsigned waiting = s->waiting;

	s->waiting = 0;
	s->asked = 0;
	if (waiting & 1)
		redis_conn_down(&s->cmd, why);
	if (waiting & 2)
		redis_conn_down(&s->sub, why);
}

/* The sentinel being asked failed: the next one, or give up. */
static void
redis_sentinel_next(struct redis_shard *s, const char *why)
{
	log_warn("redis shard %u: sentinel %s:%d: %s", s->index,
	    s->sentinels[s->next_sentinel].host, s->sentinels[s->next_sentinel].port, why);
	s->next_sentinel = (s->next_sentinel + 1) % s->nsentinels;
	if (s->asked >= s->nsentinels)
		redis_sentinel_failed(s, "no sentinel named a master");
	else
		redis_sentinel_ask(s);
}

static void
redis_sentinel_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	struct redis_shard *s = priv;
	redisReply *r = reply;
	unsigned waiting;
	int port;

	if (s->sac != ac)
		return;                 /* freed by a timeout: handled there */
	s->sac = NULL;
	if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
	    r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_STRING ||
	    (port = atoi(r->element[1]->str)) <= 0 || port > 65535) {
		if (r)
			redisAsyncDisconnect(ac);
		redis_sentinel_next(s, r && r->type == REDIS_REPLY_ERROR ? r->str :
		    "no master of that name");
		return;
	}
	if (s->addr.host == NULL || strcmp(s->addr.host, r->element[0]->str) != 0 ||
	    s->addr.port != port) {
		log_info("redis shard %u: master %s is %s:%d", s->index,
		    rd.cfg->engine_redis_sentinel_master_name, r->element[0]->str, port);
		free(s->addr.host);
		s->addr.host = xstrdup(r->element[0]->str);
		s->addr.port = port;
	}
	redisAsyncDisconnect(ac);
	waiting = s->waiting;
	s->waiting = 0;
	s->asked = 0;
	if (waiting & 1)
		redis_connect_direct(&s->cmd);
	if (waiting & 2)
		redis_connect_direct(&s->sub);
}

static void
redis_sentinel_connected(const redisAsyncContext *ac, int status)
{
	struct redis_shard *s = ac->data;

	if (status != REDIS_OK && s->sac == ac) {
		s->sac = NULL;          /* hiredis frees it */
		redis_sentinel_next(s, ac->errstr[0] ? ac->errstr : "connect failed");
	}
}

static void
redis_sentinel_gone(const redisAsyncContext *ac, int status)
{
	struct redis_shard *s = ac->data;

	if (s->sac == ac) {
		s->sac = NULL;
		redis_sentinel_next(s, "connection closed");
	}
}

/* Asks the next sentinel for the master's address (asynchronously). */
static void
redis_sentinel_ask(struct redis_shard *s)
{
	const struct redis_addr *a = &s->sentinels[s->next_sentinel];
	const char *user = rd.cfg->engine_redis_sentinel_user;
	const char *pass = rd.cfg->engine_redis_sentinel_password;
	const char *master = rd.cfg->engine_redis_sentinel_master_name;
	redisAsyncContext *ac;

	s->asked++;
	ac = redisAsyncConnect(a->host, a->port);
	if (ac == NULL || ac->err) {
		if (ac)
			redisAsyncFree(ac);
		redis_sentinel_next(s, "cannot connect");
		return;
	}
	ac->data = s;
	s->sac = ac;
	s->sac_started_ms = wheel_now_ms();
	redis_loop_attach(ac, rd.base);
	redisAsyncSetConnectCallback(ac, redis_sentinel_connected);
	redisAsyncSetDisconnectCallback(ac, redis_sentinel_gone);
	if (pass[0]) {
		const char *argv[3] = { "AUTH", user[0] ? user : pass, pass };
		size_t lens[3] = { 4, strlen(argv[1]), strlen(pass) };
		redisAsyncCommandArgv(ac, NULL, NULL, user[0] ? 3 : 2, argv, lens);
	}
	{
		const char *argv[3] = { "SENTINEL", "get-master-addr-by-name", master };
		size_t lens[3] = { 8, 23, strlen(master) };
		redisAsyncCommandArgv(ac, redis_sentinel_reply, s, 3, argv, lens);
	}
}

/* Starts a connection; in Sentinel mode after asking for the master. */
static void
redis_connect(struct redis_conn *c)
{
	struct redis_shard *s = c->shard;

	if (s->nsentinels == 0) {
		redis_connect_direct(c);
		return;
	}
	c->retry_at_ms = 0;
	s->waiting |= c->is_sub ? 2 : 1;
	if (s->sac == NULL && s->asked == 0)
		redis_sentinel_ask(s);
}

/* Timeouts and reconnections of one connection. */
static void
redis_conn_check(struct redis_conn *c, uint64_t now)
{
	if (c->ac == NULL) {
		if (c->retry_at_ms && now >= c->retry_at_ms)
			redis_connect(c);
		return;
	}
	if (!(c->ac->c.flags & REDIS_CONNECTED) &&
	    now - c->started_ms >= (uint64_t)rd.cfg->engine_redis_connect_timeout) {
		redisAsyncContext *ac = c->ac;
		c->ac = NULL;
		redisAsyncFree(ac);
		redis_conn_down(c, "connect timeout");
		return;
	}
	if (c->stale) {
		redisAsyncContext *ac = c->ac;
		c->stale = 0;
		c->ac = NULL;
		redisAsyncFree(ac);
		redis_conn_down(c, "the server is no longer a master");
		if (c->shard->sub.ac) {
			/* The PUB/SUB connection follows to the new master. */
			struct redis_conn *sub = &c->shard->sub;
			ac = sub->ac;
			sub->ac = NULL;
			redisAsyncFree(ac);
			redis_conn_down(sub, "following the master");
		}
		return;
	}
	if (c->is_sub && c->up && now - c->progress_ms >= (uint64_t)rd.cfg->engine_redis_io_timeout +
	    3ULL * NODE_INFO_INTERVAL_MS * rd.nshards) {
		redisAsyncContext *ac = c->ac;
		/* Our own announcements (every 3 s, round robin over the
		 * shards) come back on every PUB/SUB connection: this one has
		 * heard nothing for three rounds, its peer is gone. */
		c->ac = NULL;
		redisAsyncFree(ac);
		redis_conn_down(c, "no PUB/SUB traffic, not even our own announcements");
		return;
	}
	if (!c->is_sub && c->outstanding &&
	    now - c->progress_ms >= (uint64_t)rd.cfg->engine_redis_io_timeout) {
		redisAsyncContext *ac = c->ac;
		/* The waiting requests fail (callbacks with no reply). */
		c->ac = NULL;
		redisAsyncFree(ac);
		redis_conn_down(c, "no answer within io_timeout");
	}
}

static void
redis_presence_refresh_one(const struct msg_str *channel, const struct engine_presence *p)
{
	redis_presence_add(channel, p);
}

static void
redis_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	uint64_t now = wheel_now_ms();

	for (unsigned i = 0; i < rd.nshards; i++) {
		struct redis_shard *s = &rd.shards[i];
		if (s->sac && now - s->sac_started_ms >= (uint64_t)rd.cfg->engine_redis_connect_timeout) {
			redisAsyncContext *ac = s->sac;
			s->sac = NULL;
			redisAsyncFree(ac);
			redis_sentinel_next(s, "no answer in time");
		}
		redis_conn_check(&s->cmd, now);
		redis_conn_check(&s->sub, now);
	}
	if (now >= rd.next_info_ms) {
		struct buf frame = BUF_INIT;
		rd.next_info_ms = now + NODE_INFO_INTERVAL_MS;
		cluster_control_frame(&frame, NULL);
		redis_send_control(&frame);
		buf_free(&frame);
		node_expire();
	}
	if (now >= rd.next_presence_ms) {
		/* Our clients' presence outlives presence_ttl only if we
		 * keep re-adding it. */
		rd.next_presence_ms = now + (uint64_t)rd.cfg->client_presence_update_interval;
		broker_each_presence(redis_presence_refresh_one);
	}
}

static void
redis_tick(void)
{
}

static int
redis_start(struct event_base *base, const struct config *cfg)
{
	struct buf b = BUF_INIT;
	int tls = 0;

	memset(&rd, 0, sizeof(rd));
	rd.base = base;
	rd.cfg = cfg;
	htab_init(&rd.chans);
	buf_init(&rd.changes);
	buf_init(&rd.scratch);
	buf_init(&rd.items_buf);
	for (int i = 0; i < SCRIPT_COUNT; i++) {
		unsigned char md[SHA_DIGEST_LENGTH];
		SHA1((const unsigned char *)redis_scripts[i], strlen(redis_scripts[i]), md);
		for (int k = 0; k < SHA_DIGEST_LENGTH; k++)
			snprintf(rd.sha[i] + 2 * k, 3, "%02x", md[k]);
	}
	buf_printf(&b, "%s.client.", cfg->engine_redis_prefix);
	rd.client_prefix_len = b.len;
	rd.client_prefix = buf_steal(&b, NULL);
	buf_printf(&b, "%s.control", cfg->engine_redis_prefix);
	rd.control = buf_steal(&b, NULL);
	buf_free(&b);

	rd.nshards = (unsigned)(cfg->engine_redis_sentinel_address.n ?
	    cfg->engine_redis_sentinel_address.n : cfg->engine_redis_address.n);
	rd.shards = xcalloc(rd.nshards, sizeof(*rd.shards));
	for (unsigned i = 0; i < rd.nshards; i++) {
		struct redis_shard *s = &rd.shards[i];
		char why[200];
		if (cfg->engine_redis_sentinel_address.n) {
			if (redis_sentinels_parse(cfg->engine_redis_sentinel_address.v[i], &s->sentinels,
			    &s->nsentinels, why, sizeof(why)) != 0) {
				log_error("engine.redis.sentinel_address \"%s\": %s",
				    cfg->engine_redis_sentinel_address.v[i], why);
				return -1;
			}
			s->addr.db = -1;
		} else if (redis_addr_parse(cfg->engine_redis_address.v[i], &s->addr, why, sizeof(why)) != 0) {
			log_error("engine.redis.address \"%s\": %s", cfg->engine_redis_address.v[i], why);
			return -1;
		}
		/* rediss://, or engine.redis.tls for every TCP address (and
		 * the masters sentinels name): the one place that decides. */
		if (s->addr.path == NULL && cfg->engine_redis_tls_enabled)
			s->addr.tls = 1;
		tls |= s->addr.tls;
		s->index = i;
		s->cmd.shard = s;
		s->sub.shard = s;
		s->sub.is_sub = 1;
	}
	if (tls) {
		struct tls_client_conf t;
		struct buf err = BUF_INIT;
		config_redis_tls(cfg, &t);
		rd.tls_ctx = tls_client_ctx_new(&t, &err, NULL);
		if (rd.tls_ctx == NULL) {
			log_error("%s", buf_cstr(&err));
			buf_free(&err);
			return -1;
		}
		buf_free(&err);
	}
	rd.flush_ev = evtimer_new(base, redis_flush_cb, NULL);
	rd.timer_ev = event_new(base, -1, EV_PERSIST, redis_timer_cb, NULL);
	{
		struct timeval tv = { 0, REDIS_TIMER_MS * 1000 };
		if (rd.flush_ev == NULL || rd.timer_ev == NULL || event_add(rd.timer_ev, &tv) != 0)
			return -1;
	}
	for (unsigned i = 0; i < rd.nshards; i++) {
		redis_connect(&rd.shards[i].cmd);
		redis_connect(&rd.shards[i].sub);
	}
	rd.next_presence_ms = wheel_now_ms() + (uint64_t)cfg->client_presence_update_interval;
	cluster_set_sender(base, redis_send_control);
	log_info("redis engine: %u shard%s, prefix \"%s\"", rd.nshards, rd.nshards == 1 ? "" : "s",
	    cfg->engine_redis_prefix);
	return 0;
}

static void
redis_stop(void)
{
	size_t it;
	struct htab_entry *e;

	rd.stopping = 1;
	for (unsigned i = 0; i < rd.nshards; i++) {
		struct redis_shard *s = &rd.shards[i];
		if (s->cmd.ac) {
			redisAsyncContext *ac = s->cmd.ac;
			s->cmd.ac = NULL;
			redisAsyncFree(ac);
		}
		if (s->sub.ac) {
			redisAsyncContext *ac = s->sub.ac;
			s->sub.ac = NULL;
			redisAsyncFree(ac);
		}
		if (s->sac) {
			redisAsyncContext *ac = s->sac;
			s->sac = NULL;
			redisAsyncFree(ac);
		}
		redis_addr_free(&s->addr);
		redis_sentinels_free(s->sentinels, s->nsentinels);
	}
	for (e = htab_first(&rd.chans, &it); e; e = htab_next(&rd.chans, &it, e)) {
		struct redis_chan *c = e->value;
		redis_fail_waiters(c);
		free(c);
	}
	htab_free(&rd.chans);
	tls_tunnel_close_all();
	SSL_CTX_free(rd.tls_ctx);
	free(rd.shards);
	free(rd.client_prefix);
	free(rd.control);
	buf_free(&rd.changes);
	buf_free(&rd.scratch);
	buf_free(&rd.items_buf);
	free(rd.items);
	if (rd.flush_ev)
		event_free(rd.flush_ev);
	if (rd.timer_ev)
		event_free(rd.timer_ev);
}

const struct engine engine_redis = {
	.name = "redis",
	.start = redis_start,
	.stop = redis_stop,
	.publish = redis_publish,
	.read = redis_read,
	.position = redis_position,
	.ready = redis_ready,
	.history_remove = redis_history_remove,
	.presence_add = redis_presence_add,
	.presence_remove = redis_presence_remove,
	.presence_get = redis_presence_get,
	.broadcast = redis_broadcast,
	.interest = redis_interest,
	.tick = redis_tick,
};
