/*
 * client.c - client sessions of a worker (protocol.md §4).
 *
 * A session is bound to one WebSocket connection.  It starts connecting,
 * becomes connected after a successful `connect`, and is closed by a
 * disconnect (a close frame with the code and reason) or when the transport
 * goes away.  Commands of a frame are handled in order; replies and pushes
 * share the connection's outgoing queue, so a reply queued before a push is
 * written before it.
 *
 * Deadlines (stale connection, next ping, pong check, expiry) use a single
 * node per session in the worker's timing wheel: the node is armed for the
 * earliest of them.
 *
 * Runs in: worker processes.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "auth.h"
#include "build-config.h"
#include "buf.h"
#include "client.h"
#include "codec.h"
#include "config.h"
#include "heritage.h"
#include "htab.h"
#include "hub.h"
#include "json.h"
#include "log.h"
#include "loop.h"
#include "msg.h"
#include "proto.h"
#include "reload.h"
#include "shm.h"
#include "wheel.h"
#include "worker.h"
#include "xmalloc.h"

#define CLIENT_MAGIC 0x434c4e54u   /* "CLNT" */
#define CLIENT_ID_LEN 36

enum client_state {
	CLIENT_CONNECTING = 0,
	CLIENT_CONNECTED,
	CLIENT_CLOSING,            /* close frame queued, transport not gone yet */
	CLIENT_CLOSED              /* transport gone; freed when refs reach 0 */
};

static const char *const client_state_names[] = {
	[CLIENT_CONNECTING] = "connecting",
	[CLIENT_CONNECTED] = "connected",
	[CLIENT_CLOSING] = "closing",
	[CLIENT_CLOSED] = "closed",
};

/* A subscription of a session. */
struct client_sub {
	struct hub_sub hs;         /* first: hub_sub -> client_sub by cast */
	char *chan_info;           /* raw JSON from a subscription token, or NULL */
	size_t chan_info_len;
	unsigned presence:1;       /* has a presence entry in the broker */
	unsigned join_leave:1;     /* its join/leave are emitted */
	unsigned server_side:1;    /* from the connection token or personal channel */
	struct client_req *req;    /* the subscribe waiting for the broker, or NULL */
	uint64_t expire_at;        /* monotonic ms: token expiry + grace, 0 = never */
};

/* A command waiting for the broker. */
struct client_req {
	struct client *c;          /* holds a reference */
	uint32_t id;
	enum proto_cmd_type type;
	/* subscribe */
	char *channel;
	size_t channel_len;
	int recover, recoverable, reject_unrecoverable;
	int positioned;            /* 0: only waits for the engine's subscription */
	int was_recovering;        /* the request asked to recover */
	uint32_t unsub_id;         /* unsubscribed before the broker answered:
				    * that unsubscribe's reply follows this one */
	uint64_t offset;
	char *data;                /* subscription token data, raw */
	size_t data_len;
	int64_t exp;               /* subscription token expiry, 0 = none */
};

struct client {
	uint32_t magic;
	enum client_state state;
	struct conn *conn;
	struct client *prev, *next;    /* every session of this worker */
	struct wheel_node timer;
	uint32_t refs;                 /* the transport + requests in flight */
	unsigned connect_failed:1;     /* connect answered with an error */
	unsigned counted:1;            /* the broker counts this connection */
	unsigned ping_outstanding:1;   /* a ping was sent and not answered */
	unsigned fmt:1;                /* enum codec_format */
	uint64_t stale_at;             /* monotonic ms deadlines, 0 = none */
	uint64_t ping_at;
	uint64_t pong_at;
	uint64_t expire_at;
	uint64_t sub_expire_at;        /* earliest expire_at of the subscriptions */
	int64_t exp;                   /* Unix s the credentials expire, 0 never */
	char id[CLIENT_ID_LEN + 1];
	char *user;
	char *info;                    /* raw conn_info, or NULL */
	size_t info_len;
	struct client_sub **subs;
	uint32_t nsubs, capsubs;
	struct client_connect *cw;     /* connect waiting for server-side positions */
};

/* A server-side subscription being placed while its connect waits. */
struct client_ss {
	struct client_sub *s;
	int recover, recoverable, positioned;
	uint64_t offset;               /* the client's position (recover) */
	char *data;                    /* `data` of the token's subs entry, raw */
	size_t data_len;
	struct buf rec;                /* the broker's SUB_RESULT record */
	int done;
};

/*
 * A connect whose server-side subscriptions need stream positions from the
 * broker.  The reply goes out when the last one is back; frames that
 * arrive meanwhile wait in backlog (each as a 4-byte length and the bytes)
 * so commands keep their order.
 */
struct client_connect {
	uint32_t id;
	unsigned pending;
	struct proto_connect_result res;
	struct client_ss *ss;
	size_t nss;
	struct buf backlog;
};

struct client_globals {
	const struct config *cfg;
	struct auth_verifier *conn_verifier;
	struct auth_verifier *sub_verifier;
	struct client *all;
	size_t count;
	struct proto_reader reader;
	struct buf out;
	unsigned char rnd[4096];       /* random pool for session ids */
	size_t rnd_left;
};

static struct client_globals g;

static void client_schedule(struct client *c);
static void client_disconnect(struct client *c, uint32_t code);
static void client_disconnect_reason(struct client *c, uint32_t code, const char *reason);
static void client_connect_free(struct client *c);
static void client_subs_expire(struct client *c, uint64_t now);
static void client_subs_deadline(struct client *c);
static int client_process(struct client *c, const char *data, size_t len);

/* ------------------------------------------------------------------ */
/* Set-up                                                              */

/*
 * Builds the connection and subscription token verifiers of cfg (the
 * subscription one is the connection one unless client.subscription_token
 * is enabled).  Returns 0, or -1 with the reason in err.
 */
static int
client_verifiers(const struct config *cfg, struct auth_verifier **conn,
    struct auth_verifier **sub, struct buf *err)
{
	struct auth_keys k;

	reload_token_keys(cfg, 0, &k);
	if ((*conn = auth_verifier_new(&k, err)) == NULL)
		return -1;
	*sub = *conn;
	if (cfg->client_subscription_token_enabled) {
		reload_token_keys(cfg, 1, &k);
		if ((*sub = auth_verifier_new(&k, err)) == NULL) {
			auth_verifier_free(*conn);
			return -1;
		}
	}
	return 0;
}

void
client_init(const struct config *cfg)
{
	struct buf err = BUF_INIT;

	memset(&g, 0, sizeof(g));
	g.cfg = cfg;
	proto_reader_init(&g.reader);
	buf_init(&g.out);
	if (client_verifiers(cfg, &g.conn_verifier, &g.sub_verifier, &err) != 0)
		log_fatal("token keys: %s", buf_cstr(&err));
	buf_free(&err);
}

int
client_reconfigure(const struct config *cfg, struct buf *err)
{
	struct auth_verifier *conn, *sub;

	if (client_verifiers(cfg, &conn, &sub, err) != 0)
		return -1;
	/* Sessions keep running; new operations use the new settings.  The
	 * old verifiers are not referenced past this point. */
	if (g.sub_verifier != g.conn_verifier)
		auth_verifier_free(g.sub_verifier);
	auth_verifier_free(g.conn_verifier);
	g.conn_verifier = conn;
	g.sub_verifier = sub;
	g.cfg = cfg;
	return 0;
}

/* One more upgrade in the current one-second window of the node, unless
 * `limit` of them were admitted already: returns 1 if admitted. */
static int
client_rate_take(int64_t limit)
{
	_Atomic uint64_t *state = &shm_header(heritage.shm)->conn_rate;
	uint64_t sec = (uint64_t)(wheel_now_ms() / 1000) & 0xffffffffu;
	uint64_t cur = atomic_load(state), next;

	do {
		if (cur >> 32 != sec)
			next = sec << 32 | 1;   /* a new window: this is its first */
		else if ((int64_t)(cur & 0xffffffffu) >= limit)
			return 0;
		else
			next = cur + 1;
	} while (!atomic_compare_exchange_weak(state, &cur, next));
	return 1;
}

int
client_admit(void)
{
	static uint64_t logged_ms;
	int64_t limit = g.cfg->client_connection_limit;
	int64_t rate = g.cfg->client_connection_rate_limit;
	uint64_t now, n = 0;

	if (rate > 0 && !client_rate_take(rate < 0xffffffffLL ? rate : 0xffffffffLL))
		return 503;
	if (limit <= 0)
		return 0;
	/* Every slot: a worker a reload stops counts until it is gone (the
	 * supervisor zeroes its gauges then). */
	for (unsigned w = 0; w < heritage.max_workers; w++)
		n += atomic_load(&shm_slot(heritage.shm, w)->connections);
	if ((int64_t)n < limit)
		return 0;
	atomic_fetch_add(&shm_slot(heritage.shm, heritage.worker_id)->conn_limit_refused, 1);
	now = wheel_now_ms();
	if (logged_ms == 0 || now - logged_ms >= 3000) {
		/* once in 3 s per worker, whatever the rate of refusals */
		log_warn("node connection limit reached (client.connection_limit %" PRId64
		    "): WebSocket upgrade answered 503", limit);
		logged_ms = now;
	}
	return 503;
}

/* n random bytes from the worker's pool (refilled with one getrandom()
 * for many connections, not one syscall each). */
static unsigned char *
client_random(size_t n)
{
	unsigned char *r;

	ASSERT(n <= sizeof(g.rnd));
	if (g.rnd_left < n) {
		if (getrandom(g.rnd, sizeof(g.rnd), 0) != (ssize_t)sizeof(g.rnd))
			log_panic("getrandom failed");
		g.rnd_left = sizeof(g.rnd);
	}
	r = g.rnd + sizeof(g.rnd) - g.rnd_left;
	g.rnd_left -= n;
	return r;
}

static void
client_new_id(char *out)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char *r = client_random(16);

	r[6] = (unsigned char)((r[6] & 0x0f) | 0x40);    /* version 4 */
	r[8] = (unsigned char)((r[8] & 0x3f) | 0x80);    /* variant 10 */
	for (int i = 0, o = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = hex[r[i] >> 4];
		out[o++] = hex[r[i] & 15];
	}
	out[CLIENT_ID_LEN] = '\0';
}

static uint64_t
client_rand_below(uint64_t n)
{
	uint64_t v;

	if (n == 0)
		return 0;
	memcpy(&v, client_random(sizeof(v)), sizeof(v));
	return v % n;
}

/* Wall-clock seconds.  Not time(NULL): on Linux it reads the coarse clock,
 * which can still show the previous second for a few milliseconds after
 * the precise clock (and a client's) has passed it, so a token's exp or
 * expire_at would look one second further away than it is. */
static int64_t
client_unix_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec;
}

/* ------------------------------------------------------------------ */
/* Life cycle                                                          */

static void client_timer_fire(struct wheel_node *n);

struct client *
client_new(struct conn *conn, const struct loop_ws_info *info)
{
	struct client *c = xcalloc(1, sizeof(*c));

	c->magic = CLIENT_MAGIC;
	c->state = CLIENT_CONNECTING;
	c->conn = conn;
	c->refs = 1;
	c->fmt = info->protobuf ? CODEC_PROTOBUF : CODEC_JSON;
	atomic_fetch_add(&shm_slot(heritage.shm, heritage.worker_id)->connections_accepted, 1);
	loop_conn_set_binary(conn, codecs[c->fmt].binary);
	wheel_node_init(&c->timer, client_timer_fire);
	c->next = g.all;
	if (g.all)
		g.all->prev = c;
	g.all = c;
	g.count++;
	if (worker_stopping()) {
		client_disconnect(c, PROTO_DISCONNECT_SHUTDOWN);
		return c;
	}
	if (g.cfg->client_stale_close_delay > 0)
		c->stale_at = wheel_now_ms() + (uint64_t)g.cfg->client_stale_close_delay;
	client_schedule(c);
	return c;
}

/* Whether several nodes share channels (a Redis engine or NATS broker):
 * then a subscription is confirmed only once the engine delivers. */
static int
client_multinode(void)
{
	return strcmp(g.cfg->engine_type, "redis") == 0 ||
	    (g.cfg->broker_enabled && strcmp(g.cfg->broker_type, "nats") == 0);
}

/* Keeps the broker's count of the channel's subscribers (channels, info).
 * With several nodes the count also decides whether the engine receives
 * the channel: the broker must have it at once. */
static void
client_interest(const char *ch, size_t len, int delta)
{
	struct msg m;

	memset(&m, 0, sizeof(m));
	m.type = MSG_INTEREST;
	m.channel = (struct msg_str){ ch, (uint32_t)len };
	m.limit = delta;
	if (client_multinode())
		worker_send(&m);
	else
		worker_note(&m);
	atomic_fetch_add(&shm_slot(heritage.shm, heritage.worker_id)->subscriptions,
	    (uint64_t)(int64_t)delta);
}

/* Keeps the broker's count of the user's connections (info, limits). */
static void
client_conn_count(struct client *c, int delta)
{
	struct msg m;

	memset(&m, 0, sizeof(m));
	m.type = MSG_CONN;
	m.has_info = 1;
	m.user = (struct msg_str){ c->user, (uint32_t)strlen(c->user) };
	m.limit = delta;
	worker_note(&m);
	atomic_fetch_add(&shm_slot(heritage.shm, heritage.worker_id)->connections,
	    (uint64_t)(int64_t)delta);
}

/* Tells the broker the subscription ended (presence, leave), unlinks it
 * from the hub and frees it. */
static void
client_sub_end(struct client *c, struct client_sub *s)
{
	if (s->presence || s->join_leave) {
		struct msg m;
		size_t len;
		const char *ch = hub_sub_channel(&s->hs, &len);
		memset(&m, 0, sizeof(m));
		m.type = MSG_UNSUBSCRIBE;
		m.channel = (struct msg_str){ ch, (uint32_t)len };
		m.has_info = 1;
		m.user = (struct msg_str){ c->user, (uint32_t)strlen(c->user) };
		m.client = (struct msg_str){ c->id, CLIENT_ID_LEN };
		m.conn_info = (struct msg_str){ c->info, (uint32_t)c->info_len };
		m.chan_info = (struct msg_str){ s->chan_info, (uint32_t)s->chan_info_len };
		m.flags = (s->presence ? MSG_F_PRESENCE : 0) | (s->join_leave ? MSG_F_JOIN_LEAVE : 0);
		worker_send(&m);
	}
	{
		size_t len;
		const char *ch = hub_sub_channel(&s->hs, &len);
		client_interest(ch, len, -1);
	}
	hub_remove(worker_hub(), &s->hs);
	free(s->chan_info);
	free(s);
}

static void
client_unsubscribe_all(struct client *c)
{
	for (uint32_t i = 0; i < c->nsubs; i++)
		client_sub_end(c, c->subs[i]);
	c->nsubs = 0;
}

static void
client_unref(struct client *c)
{
	ASSERT(c->magic == CLIENT_MAGIC && c->refs > 0);
	if (--c->refs)
		return;
	client_connect_free(c);
	free(c->subs);
	free(c->user);
	free(c->info);
	c->magic = 0;
	free(c);
}

void
client_on_closed(struct client *c)
{
	ASSERT(c->magic == CLIENT_MAGIC);
	wheel_disarm(&c->timer);
	client_unsubscribe_all(c);
	if (c->counted)
		client_conn_count(c, -1);
	c->counted = 0;
	c->state = CLIENT_CLOSED;
	c->conn = NULL;
	if (c->prev)
		c->prev->next = c->next;
	else
		g.all = c->next;
	if (c->next)
		c->next->prev = c->prev;
	g.count--;
	client_unref(c);
}

struct conn *
client_conn(const struct client *c)
{
	return c->conn;
}

size_t
client_count(void)
{
	return g.count;
}

/* Closes the session with a disconnect code (a WebSocket close frame
 * carrying the code and reason; no disconnect push on this transport). */
static void
client_disconnect(struct client *c, uint32_t code)
{
	client_disconnect_reason(c, code, proto_disconnect_reason(code));
}

/* Same with a reason of the caller's (server API disconnect). */
static void
client_disconnect_reason(struct client *c, uint32_t code, const char *reason)
{
	if (c->state >= CLIENT_CLOSING)
		return;
	log_debug("client %s (%s) disconnected: %u %s", c->id, client_state_names[c->state],
	    code, reason ? reason : "");
	c->state = CLIENT_CLOSING;
	wheel_disarm(&c->timer);
	/* No push may follow the close frame. */
	client_unsubscribe_all(c);
	loop_conn_close(c->conn, (uint16_t)code, reason ? reason : "");
}

void
client_close_all(uint16_t code, const char *reason)
{
	for (struct client *c = g.all; c; c = c->next) {
		if (c->state >= CLIENT_CLOSING)
			continue;
		c->state = CLIENT_CLOSING;
		wheel_disarm(&c->timer);
		client_unsubscribe_all(c);
		loop_conn_close(c->conn, code, reason);
	}
}

void
client_fanout_overrun(void)
{
	/* Subscribers may have missed publications.  Without positions to
	 * recover from, the honest thing is to make them reconnect. */
	for (struct client *c = g.all; c; c = c->next)
		if (c->state == CLIENT_CONNECTED && c->nsubs)
			client_disconnect(c, PROTO_DISCONNECT_INSUFFICIENT_STATE);
}

void
client_positions_lost(void)
{
	for (struct client *c = g.all; c; c = c->next) {
		if (c->state != CLIENT_CONNECTED)
			continue;
		/* client_sub_lost() removes from c->subs: walk backwards. */
		for (uint32_t i = c->nsubs; i-- > 0;) {
			if (i >= c->nsubs)
				continue;
			if (c->subs[i]->hs.positioned && c->subs[i]->hs.state == HUB_SUB_ACTIVE)
				client_sub_lost(&c->subs[i]->hs, HUB_LOST_POSITION);
			if (c->state != CLIENT_CONNECTED)
				break;
		}
	}
}

static void client_msg_info(struct msg *m, const struct client *c, const struct client_sub *s);

void
client_resync(void)
{
	struct msg m;

	for (struct client *c = g.all; c; c = c->next) {
		if (!c->counted)
			continue;
		memset(&m, 0, sizeof(m));
		m.type = MSG_CONN;
		m.has_info = 1;
		m.user = (struct msg_str){ c->user, (uint32_t)strlen(c->user) };
		m.limit = 1;
		worker_send(&m);
		for (uint32_t i = 0; i < c->nsubs; i++) {
			struct client_sub *s = c->subs[i];
			size_t len;
			const char *ch = hub_sub_channel(&s->hs, &len);

			memset(&m, 0, sizeof(m));
			m.type = MSG_INTEREST;
			m.channel = (struct msg_str){ ch, (uint32_t)len };
			m.limit = 1;
			worker_send(&m);
			if (s->presence) {
				/* Back in presence, without a second join. */
				memset(&m, 0, sizeof(m));
				m.type = MSG_SUBSCRIBE;
				m.channel = (struct msg_str){ ch, (uint32_t)len };
				client_msg_info(&m, c, s);
				m.flags = MSG_F_PRESENCE;
				worker_send(&m);
			}
		}
	}
}

/*
 * Queues the message in g.out on the session; 0 or -1 (slow: closed).
 * flags: LOOP_SEND_REPLY for a reply to a command (never held by
 * client.write_delay), 0 for a push.
 */
static int
client_send(struct client *c, unsigned flags)
{
	if (c->state >= CLIENT_CLOSING)
		return -1;
	atomic_fetch_add(&shm_slot(heritage.shm, heritage.worker_id)->bytes_sent, g.out.len);
	if (loop_conn_send_copy(c->conn, g.out.data, g.out.len, flags) != 0) {
		/* loop.c closed it as slow. */
		c->state = CLIENT_CLOSING;
		wheel_disarm(&c->timer);
		client_unsubscribe_all(c);
		return -1;
	}
	return 0;
}

/* A push (publication, ping, server-side subscribe/unsubscribe...). */
static int
client_send_out(struct client *c)
{
	return client_send(c, 0);
}

/* A reply to a command (or a ping, which waits for an answer too). */
static int
client_send_reply(struct client *c)
{
	return client_send(c, LOOP_SEND_REPLY);
}

static void
client_reply_error(struct client *c, uint32_t id, uint32_t code)
{
	buf_reset(&g.out);
	codecs[c->fmt].error_code(&g.out, id, code);
	client_send_reply(c);
}

static void
client_reply_empty(struct client *c, uint32_t id, enum proto_cmd_type type)
{
	buf_reset(&g.out);
	codecs[c->fmt].empty_result(&g.out, id, type);
	client_send_reply(c);
}

/* ------------------------------------------------------------------ */
/* Deadlines                                                           */

static void
client_schedule(struct client *c)
{
	uint64_t due = 0, now;
	uint64_t cand[5] = { c->stale_at, c->ping_at, c->pong_at, c->expire_at, c->sub_expire_at };

	for (int i = 0; i < 5; i++)
		if (cand[i] && (due == 0 || cand[i] < due))
			due = cand[i];
	if (due == 0) {
		wheel_disarm(&c->timer);
		return;
	}
	now = wheel_now_ms();
	wheel_arm(worker_wheel(), &c->timer, due > now ? (int64_t)(due - now) : 0);
}

static void
client_timer_fire(struct wheel_node *n)
{
	struct client *c = (struct client *)((char *)n - offsetof(struct client, timer));
	uint64_t now = wheel_now_ms();
	const struct config *cfg = g.cfg;

	if (c->state >= CLIENT_CLOSING)
		return;
	if (c->stale_at && now >= c->stale_at) {
		client_disconnect(c, PROTO_DISCONNECT_STALE);
		return;
	}
	if (c->expire_at && now >= c->expire_at) {
		client_disconnect(c, PROTO_DISCONNECT_EXPIRED);
		return;
	}
	if (c->sub_expire_at && now >= c->sub_expire_at) {
		client_subs_expire(c, now);
		if (c->state >= CLIENT_CLOSING)
			return;
	}
	if (c->pong_at && now >= c->pong_at) {
		if (c->ping_outstanding) {
			client_disconnect(c, PROTO_DISCONNECT_NO_PONG);
			return;
		}
		c->pong_at = 0;
	}
	if (c->ping_at && now >= c->ping_at) {
		buf_reset(&g.out);
		codecs[c->fmt].ping(&g.out);
		/* Not held by client.write_delay, as a reply: the pong
		 * timeout counts from now. */
		if (client_send_reply(c) != 0)
			return;
		c->ping_at = now + (uint64_t)cfg->client_ping_interval;
		if (cfg->client_pong_timeout > 0) {
			c->ping_outstanding = 1;
			c->pong_at = now + (uint64_t)cfg->client_pong_timeout;
		}
	}
	client_schedule(c);
}

/* ------------------------------------------------------------------ */
/* connect / refresh                                                   */

/* Deadline (monotonic ms) for credentials expiring at Unix time exp. */
static uint64_t
client_expire_deadline(int64_t exp)
{
	int64_t left = exp - client_unix_now();

	if (left < 0)
		left = 0;
	return wheel_now_ms() + (uint64_t)left * 1000 +
	    (uint64_t)(g.cfg->client_expired_close_delay > 0 ? g.cfg->client_expired_close_delay : 0);
}

static void client_server_subs(struct client *c, const struct proto_cmd *cmd,
    const struct auth_conn_claims *claims, struct proto_connect_result *res);

static void
client_handle_connect(struct client *c, const struct proto_cmd *cmd)
{
	const struct config *cfg = g.cfg;
	const struct proto_connect_req *req = &cmd->connect;
	struct proto_connect_result res;
	struct auth_conn_claims claims;
	int64_t exp = 0;

	if (c->state != CLIENT_CONNECTING || c->connect_failed) {
		client_disconnect(c, PROTO_DISCONNECT_BAD_REQUEST);
		return;
	}
	memset(&claims, 0, sizeof(claims));
	if (req->token.len) {
		struct buf why = BUF_INIT;
		enum auth_result r = auth_verify_connection(g.conn_verifier, req->token.p,
		    req->token.len, client_unix_now(), &claims, &why);
		if (r != AUTH_OK)
			log_info("connection token refused (%s): %s", auth_result_name(r), buf_cstr(&why));
		buf_free(&why);
		if (r == AUTH_INVALID) {
			client_disconnect(c, PROTO_DISCONNECT_INVALID_TOKEN);
			return;
		}
		if (r == AUTH_EXPIRED) {
			c->connect_failed = 1;
			client_reply_error(c, cmd->id, PROTO_ERR_TOKEN_EXPIRED);
			return;
		}
		if (claims.user[0] == '\0' && cfg->client_disallow_anonymous_connection_tokens) {
			auth_conn_claims_free(&claims);
			client_disconnect(c, PROTO_DISCONNECT_PERMISSION_DENIED);
			return;
		}
		if (!cfg->client_insecure)
			exp = auth_expiry(claims.has_expire_at, claims.expire_at, claims.has_exp, claims.exp);
		if (exp && exp <= client_unix_now()) {
			auth_conn_claims_free(&claims);
			c->connect_failed = 1;
			client_reply_error(c, cmd->id, PROTO_ERR_EXPIRED);
			return;
		}
		c->user = claims.user;
		claims.user = NULL;
		if (claims.info) {
			c->info = claims.info;
			c->info_len = claims.info_len;
			claims.info = NULL;
		}
	} else if (cfg->client_allow_anonymous_connect_without_token || cfg->client_insecure) {
		c->user = xstrdup("");
	} else {
		client_disconnect(c, PROTO_DISCONNECT_BAD_REQUEST);
		return;
	}

	client_new_id(c->id);
	c->stale_at = 0;
	c->exp = exp;

	memset(&res, 0, sizeof(res));
	res.client = (struct proto_span){ c->id, CLIENT_ID_LEN };
	res.version = proto_span_str(CENTRIFUGO_COMPAT_VERSION);
	if (exp) {
		res.expires = 1;
		res.ttl = (uint32_t)(exp - client_unix_now());
	}
	if (cfg->client_ping_interval > 0) {
		res.ping = (uint32_t)(cfg->client_ping_interval / 1000);
		res.pong = cfg->client_pong_timeout > 0;
	}
	if (cfg->client_connect_include_server_time) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		res.time = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	}
	client_server_subs(c, cmd, &claims, &res);
	auth_conn_claims_free(&claims);
}

static void
client_handle_refresh(struct client *c, const struct proto_cmd *cmd)
{
	struct auth_conn_claims claims;
	struct proto_refresh_result res;
	struct buf why = BUF_INIT;
	enum auth_result r;
	int64_t exp;

	if (cmd->refresh.token.len == 0) {
		client_disconnect(c, PROTO_DISCONNECT_BAD_REQUEST);
		return;
	}
	r = auth_verify_connection(g.conn_verifier, cmd->refresh.token.p, cmd->refresh.token.len,
	    client_unix_now(), &claims, &why);
	buf_free(&why);
	if (r == AUTH_EXPIRED) {
		client_disconnect(c, PROTO_DISCONNECT_EXPIRED);
		return;
	}
	if (r != AUTH_OK) {
		client_disconnect(c, PROTO_DISCONNECT_INVALID_TOKEN);
		return;
	}
	if (strcmp(claims.user, c->user) != 0) {
		auth_conn_claims_free(&claims);
		client_disconnect(c, PROTO_DISCONNECT_INVALID_TOKEN);
		return;
	}
	exp = g.cfg->client_insecure ? 0 :
	    auth_expiry(claims.has_expire_at, claims.expire_at, claims.has_exp, claims.exp);
	if (exp && exp <= client_unix_now()) {
		auth_conn_claims_free(&claims);
		client_reply_error(c, cmd->id, PROTO_ERR_EXPIRED);
		return;
	}
	if (claims.info) {
		free(c->info);
		c->info = claims.info;
		c->info_len = claims.info_len;
		claims.info = NULL;
	}
	auth_conn_claims_free(&claims);
	c->exp = exp;
	memset(&res, 0, sizeof(res));
	if (exp) {
		res.expires = 1;
		res.ttl = (uint32_t)(exp - client_unix_now());
		c->expire_at = client_expire_deadline(exp);
	} else {
		/* A token without expiry clears it (upstream keeps the old
		 * timer armed; see README). */
		c->expire_at = 0;
	}
	buf_reset(&g.out);
	codecs[c->fmt].refresh_result(&g.out, cmd->id, &res);
	client_send_reply(c);
	client_schedule(c);
}

/* ------------------------------------------------------------------ */
/* Channels                                                            */

static struct client_sub *
client_find_sub(const struct client *c, struct proto_span ch, uint32_t *idx)
{
	for (uint32_t i = 0; i < c->nsubs; i++) {
		size_t len;
		const char *name = hub_sub_channel(&c->subs[i]->hs, &len);
		if (len == ch.len && memcmp(name, ch.p, len) == 0) {
			if (idx)
				*idx = i;
			return c->subs[i];
		}
	}
	return NULL;
}

static int
client_is_anonymous(const struct client *c)
{
	return c->user == NULL || c->user[0] == '\0';
}

/*
 * Resolves and checks a channel name for a channel command.  Returns the
 * options, or NULL after answering: disconnect 3501 for an empty name,
 * error 107 for a bad name, 102 for an unknown namespace.
 */
static const struct chan_opts *
client_chan_opts(struct client *c, uint32_t id, struct proto_span ch)
{
	const struct config *cfg = g.cfg;
	const struct chan_opts *o;
	int unknown = 0;

	if (ch.len == 0) {
		client_disconnect(c, PROTO_DISCONNECT_BAD_REQUEST);
		return NULL;
	}
	if (ch.len > (size_t)cfg->channel_max_length) {
		client_reply_error(c, id, PROTO_ERR_BAD_REQUEST);
		return NULL;
	}
	o = config_chan_opts(cfg, ch.p, ch.len, &unknown);
	if (o == NULL) {
		client_reply_error(c, id, PROTO_ERR_UNKNOWN_CHANNEL);
		return NULL;
	}
	for (size_t i = 0; i < ch.len; i++) {
		unsigned char b = (unsigned char)ch.p[i];
		if (b < 0x20 || b > 0x7e) {
			client_reply_error(c, id, PROTO_ERR_BAD_REQUEST);
			return NULL;
		}
	}
	return o;
}

/*
 * Does the channel's name, without private prefix and namespace, match the
 * namespace's channel_regex (checked for client-side subscriptions)?
 */
static int
client_regex_ok(const struct chan_opts *o, struct proto_span ch)
{
	const char *pp = g.cfg->channel_private_prefix, *nb = g.cfg->channel_namespace_boundary;
	size_t pl = strlen(pp), nl = strlen(nb);
	const char *p = ch.p, *end = ch.p + ch.len;
	char *name;
	int ok;

	if (!o->has_regex)
		return 1;
	if (pl && (size_t)(end - p) >= pl && memcmp(p, pp, pl) == 0)
		p += pl;
	if (o->name[0] && nl) {
		for (const char *q = p; q + nl <= end; q++)
			if (memcmp(q, nb, nl) == 0) {
				p = q + nl;
				break;
			}
	}
	name = xstrndup(p, (size_t)(end - p));
	ok = regexec(&o->regex, name, 0, NULL, 0) == 0;
	free(name);
	return ok;
}

/* Does a user-limited channel ("news#42,43") list this session's user? */
static int
client_user_allowed(const struct client *c, struct proto_span ch)
{
	const char *b = g.cfg->channel_user_boundary, *sep = g.cfg->channel_user_separator;
	size_t bl = strlen(b), sl = strlen(sep), ul = strlen(c->user);
	const char *p = NULL, *end = ch.p + ch.len;

	if (client_is_anonymous(c) || bl == 0)
		return 0;
	for (const char *q = ch.p; q + bl <= end; q++)
		if (memcmp(q, b, bl) == 0) {
			p = q + bl;
			break;
		}
	if (p == NULL)
		return 0;
	while (p <= end) {
		const char *e = p;
		while (e + sl <= end && memcmp(e, sep, sl) != 0)
			e++;
		if (e + sl > end)
			e = end;
		if ((size_t)(e - p) == ul && memcmp(p, c->user, ul) == 0)
			return 1;
		p = e + sl;
	}
	return 0;
}

static int
client_has_prefix(struct proto_span ch, const char *prefix)
{
	size_t n = strlen(prefix);

	return n && ch.len >= n && memcmp(ch.p, prefix, n) == 0;
}

/* Token override (-1 unset) over a namespace default. */
static int
client_override(int token, int ns)
{
	return token >= 0 ? token : ns;
}

static int
client_anon_ok(const struct client *c, int allow_anonymous)
{
	return !client_is_anonymous(c) || allow_anonymous;
}

/* May the session read history / presence of a channel (§4.9, §4.10)?
 * subscribed: it is (or is becoming) a subscriber. */
static int
client_history_allowed(const struct client *c, const struct chan_opts *o, int subscribed)
{
	return (o->allow_history_for_client && client_anon_ok(c, o->allow_history_for_anonymous)) ||
	    (o->allow_history_for_subscriber && subscribed &&
	     client_anon_ok(c, o->allow_history_for_anonymous)) ||
	    g.cfg->client_insecure;
}

static int
client_presence_allowed(const struct client *c, const struct chan_opts *o, int subscribed)
{
	return (o->allow_presence_for_client && client_anon_ok(c, o->allow_presence_for_anonymous)) ||
	    (o->allow_presence_for_subscriber && subscribed &&
	     client_anon_ok(c, o->allow_presence_for_anonymous)) ||
	    g.cfg->client_insecure;
}

static int
client_has_history(const struct chan_opts *o)
{
	return o->history_size > 0 && o->history_ttl > 0;
}

/* MSG_F_CACHE when the namespace recovers in cache mode (§4.5.5). */
static uint32_t
client_cache_mode(const struct chan_opts *o)
{
	return strcmp(o->force_recovery_mode, "cache") == 0 ? MSG_F_CACHE : 0;
}

static struct client_req *
client_req_new(struct client *c, uint32_t id, enum proto_cmd_type type)
{
	struct client_req *r = xcalloc(1, sizeof(*r));

	r->c = c;
	r->id = id;
	r->type = type;
	c->refs++;
	return r;
}

static void
client_req_free(struct client_req *r)
{
	client_unref(r->c);
	free(r->channel);
	free(r->data);
	free(r);
}

/* Fills the parts of a msg that name the session and the subscription. */
static void
client_msg_info(struct msg *m, const struct client *c, const struct client_sub *s)
{
	m->has_info = 1;
	m->user = (struct msg_str){ c->user, (uint32_t)strlen(c->user) };
	m->client = (struct msg_str){ c->id, CLIENT_ID_LEN };
	m->conn_info = (struct msg_str){ c->info, (uint32_t)c->info_len };
	if (s)
		m->chan_info = (struct msg_str){ s->chan_info, (uint32_t)s->chan_info_len };
}

/*
 * Decodes the encoded PUB records of a broker answer into pubs (at most
 * max); the spans point into the answer.  Returns how many.
 */
static size_t
client_decode_pubs(const struct msg *m, struct proto_publication *pubs,
    struct proto_tag (*tags)[MSG_MAX_TAGS], size_t max)
{
	size_t pos = 0, n = 0;
	struct msg_str item;

	while (n < max && msg_item_next(m, &pos, &item) == 1) {
		struct msg p;
		if (msg_decode(item.p, item.len, &p) != 0 || p.type != MSG_PUB)
			continue;
		codec_publication(&p, &pubs[n], tags[n]);
		n++;
	}
	return n;
}

/* Room for decoded publications of one broker answer. */
static struct proto_publication *client_pubs;
static struct proto_tag (*client_pub_tags)[MSG_MAX_TAGS];
static size_t client_pubs_cap;

static size_t
client_pubs_of(const struct msg *m)
{
	if (m->nitems > client_pubs_cap) {
		client_pubs_cap = m->nitems;
		client_pubs = xrealloc(client_pubs, client_pubs_cap * sizeof(*client_pubs));
		client_pub_tags = xrealloc(client_pub_tags, client_pubs_cap * sizeof(*client_pub_tags));
	}
	return client_decode_pubs(m, client_pubs, client_pub_tags, m->nitems);
}

/* ------------------------------------------------------------------ */
/* Server-side subscriptions (§4.12)                                   */

/* Sends the connect reply, starts the session's deadlines and runs what
 * waited behind the connect. */
static void
client_connect_finish(struct client *c, uint32_t id, struct proto_connect_result *res)
{
	const struct config *cfg = g.cfg;

	c->state = CLIENT_CONNECTED;
	if (!c->counted) {
		client_conn_count(c, 1);
		c->counted = 1;
	}
	if (cfg->client_subscribe_to_user_personal_channel_enabled &&
	    cfg->client_subscribe_to_user_personal_channel_single_connection &&
	    !client_is_anonymous(c)) {
		/* One connection per user: the others, on every worker, go
		 * with 3504 (§4.12). */
		struct msg m;
		struct msg_str keep = { c->id, CLIENT_ID_LEN };
		memset(&m, 0, sizeof(m));
		m.type = MSG_CONTROL;
		m.flags = MSG_CTL_DISCONNECT;
		m.has_info = 1;
		m.user = (struct msg_str){ c->user, (uint32_t)strlen(c->user) };
		m.error = PROTO_DISCONNECT_CONNECTION_LIMIT;
		m.data = (struct msg_str){ "connection limit", 16 };
		m.items = &keep;
		m.nitems = 1;
		worker_send(&m);
	}
	buf_reset(&g.out);
	codecs[c->fmt].connect_result(&g.out, id, res);
	if (client_send_reply(c) != 0)
		return;
	if (c->exp)
		c->expire_at = client_expire_deadline(c->exp);
	if (cfg->client_ping_interval > 0) {
		uint64_t iv = (uint64_t)cfg->client_ping_interval;
		/* First ping between interval/2 and interval: spreads storms. */
		c->ping_at = wheel_now_ms() + iv / 2 + client_rand_below(iv / 2 + 1);
	}
	client_schedule(c);
}

static void
client_connect_free(struct client *c)
{
	struct client_connect *cw = c->cw;

	if (cw == NULL)
		return;
	for (size_t i = 0; i < cw->nss; i++) {
		free(cw->ss[i].data);
		buf_free(&cw->ss[i].rec);
	}
	free(cw->ss);
	buf_free(&cw->backlog);
	free(cw);
	c->cw = NULL;
}

/* Every server-side position is back: answer the connect. */
static void
client_connect_complete(struct client *c)
{
	struct client_connect *cw = c->cw;
	struct proto_sub_entry *entries = xcalloc(cw->nss ? cw->nss : 1, sizeof(*entries));
	struct msg *results = xcalloc(cw->nss ? cw->nss : 1, sizeof(*results));
	struct proto_publication **pubs = xcalloc(cw->nss ? cw->nss : 1, sizeof(*pubs));
	struct proto_tag (**tags)[MSG_MAX_TAGS] = xcalloc(cw->nss ? cw->nss : 1, sizeof(*tags));
	struct buf backlog = cw->backlog;
	size_t n = 0;

	for (size_t i = 0; i < cw->nss; i++) {
		struct client_ss *ss = &cw->ss[i];
		struct proto_subscribe_result *r = &entries[n].result;
		size_t len;
		const char *ch = hub_sub_channel(&ss->s->hs, &len);

		entries[n].channel = (struct proto_span){ ch, len };
		r->data = (struct proto_span){ ss->data, ss->data_len };
		r->was_recovering = ss->recover;
		if (ss->positioned && ss->rec.len &&
		    msg_decode(ss->rec.data, ss->rec.len, &results[i]) == 0) {
			const struct msg *m = &results[i];
			r->positioned = 1;
			r->recoverable = ss->recoverable;
			r->epoch = (struct proto_span){ m->epoch.p, m->epoch.len };
			r->offset = m->offset;
			ss->s->hs.offset = m->offset;
			if (m->epoch.len <= HUB_EPOCH_MAX) {
				memcpy(ss->s->hs.epoch, m->epoch.p, m->epoch.len);
				ss->s->hs.epoch[m->epoch.len] = '\0';
			}
			if (ss->recover && (m->flags & MSG_F_RECOVERED)) {
				r->recovered = 1;
				r->offset = ss->offset;
				pubs[i] = xcalloc(m->nitems ? m->nitems : 1, sizeof(*pubs[i]));
				tags[i] = xcalloc(m->nitems ? m->nitems : 1, sizeof(*tags[i]));
				r->publications = pubs[i];
				r->npublications = client_decode_pubs(m, pubs[i], tags[i], m->nitems);
			}
		}
		ss->s->hs.state = HUB_SUB_ACTIVE;
		n++;
	}
	cw->res.subs = entries;
	cw->res.nsubs = n;
	memset(&cw->backlog, 0, sizeof(cw->backlog));
	client_connect_finish(c, cw->id, &cw->res);
	for (size_t i = 0; i < cw->nss; i++) {
		free(pubs[i]);
		free(tags[i]);
	}
	free(pubs);
	free(tags);
	free(results);
	free(entries);
	client_connect_free(c);
	/* Frames that arrived meanwhile, in order. */
	for (size_t off = 0; off + 4 <= backlog.len && c->state == CLIENT_CONNECTED;) {
		uint32_t len;
		memcpy(&len, backlog.data + off, 4);
		if (client_process(c, backlog.data + off + 4, len) != 0)
			break;
		off += 4 + len;
	}
	buf_free(&backlog);
}

struct client_ss_req {
	struct client *c;
	size_t idx;
};

static void
client_server_sub_done(void *arg, const struct msg *m)
{
	struct client_ss_req *r = arg;
	struct client *c = r->c;

	if (c->cw && r->idx < c->cw->nss && c->state == CLIENT_CONNECTING) {
		struct client_ss *ss = &c->cw->ss[r->idx];
		if (m == NULL) {
			client_disconnect(c, PROTO_DISCONNECT_SERVER_ERROR);
		} else {
			/* Kept (re-encoded) until the reply is built: the decoded
			 * strings live only during this call. */
			struct msg copy = *m;
			struct msg_str *items = xcalloc(m->nitems ? m->nitems : 1, sizeof(*items));
			size_t pos = 0;
			for (uint32_t i = 0; i < m->nitems; i++)
				msg_item_next(m, &pos, &items[i]);
			copy.items = items;
			buf_reset(&ss->rec);
			msg_encode(&copy, &ss->rec);
			free(items);
			ss->done = 1;
			if (--c->cw->pending == 0)
				client_connect_complete(c);
		}
	}
	client_unref(c);
	free(r);
}

static void
client_conn_limit_done(void *arg, const struct msg *m)
{
	struct client *c = arg;

	if (c->cw && c->state == CLIENT_CONNECTING) {
		if (m == NULL) {
			client_disconnect(c, PROTO_DISCONNECT_SERVER_ERROR);
		} else if (m->error) {
			client_disconnect(c, PROTO_DISCONNECT_CONNECTION_LIMIT);
		} else {
			atomic_fetch_add(&shm_slot(heritage.shm, heritage.worker_id)->connections, 1);
			c->counted = 1;
			if (--c->cw->pending == 0)
				client_connect_complete(c);
		}
	} else if (m && !m->error) {
		/* Gone meanwhile: give the slot back. */
		c->counted = 1;
		client_conn_count(c, -1);
		atomic_fetch_add(&shm_slot(heritage.shm, heritage.worker_id)->connections, 1);
		c->counted = 0;
	}
	client_unref(c);
}

/* Adds a subscription of c to channel (linked in the hub; pending when it
 * waits for a stream position). */
static struct client_sub *
client_sub_add(struct client *c, const char *ch, size_t len, char *chan_info, size_t chan_info_len,
    int presence, int join_leave, int push_jl, int positioned)
{
	struct client_sub *s = xcalloc(1, sizeof(*s));

	s->hs.client = c;
	s->hs.conn = c->conn;           /* the transport outlives its subs */
	s->chan_info = chan_info;
	s->chan_info_len = chan_info_len;
	s->presence = presence != 0;
	s->join_leave = join_leave != 0;
	s->hs.push_join_leave = push_jl != 0;
	s->hs.positioned = positioned != 0;
	s->hs.fmt = c->fmt;
	s->hs.state = positioned ? HUB_SUB_PENDING : HUB_SUB_ACTIVE;
	if (c->nsubs == c->capsubs) {
		c->capsubs = c->capsubs ? c->capsubs * 2 : 4;
		c->subs = xrealloc(c->subs, c->capsubs * sizeof(*c->subs));
	}
	c->subs[c->nsubs++] = s;
	hub_add(worker_hub(), ch, len, &s->hs);
	client_interest(ch, len, 1);
	return s;
}

/* Tells the broker about a new subscription: presence, join, and (with
 * fn) the stream position, answered to fn(arg). */
static void
client_sub_announce(struct client *c, struct client_sub *s, const struct chan_opts *o,
    uint32_t flags, uint64_t offset, struct proto_span epoch, worker_reply_fn fn, void *arg)
{
	struct msg m;
	size_t len;
	const char *ch = hub_sub_channel(&s->hs, &len);

	memset(&m, 0, sizeof(m));
	m.type = MSG_SUBSCRIBE;
	m.channel = (struct msg_str){ ch, (uint32_t)len };
	client_msg_info(&m, c, s);
	m.flags = flags | (s->presence ? MSG_F_PRESENCE : 0) | (s->join_leave ? MSG_F_JOIN_LEAVE : 0);
	m.history_size = o->history_size;
	m.history_ttl_ms = o->history_ttl;
	m.history_meta_ttl_ms = o->history_meta_ttl;
	m.offset = offset;
	m.epoch = (struct msg_str){ epoch.p, (uint32_t)epoch.len };
	m.limit = (int32_t)g.cfg->client_recovery_max_publication_limit;
	if (fn)
		worker_request(&m, fn, arg);
	else if (m.flags & (MSG_F_PRESENCE | MSG_F_JOIN_LEAVE))
		worker_send(&m);
}

/*
 * Creates the server-side subscriptions of a connect (token `subs` or
 * `channels`, personal channel) and answers the connect, now or once the
 * broker placed the positioned ones.
 */
static void
client_server_subs(struct client *c, const struct proto_cmd *cmd,
    const struct auth_conn_claims *claims, struct proto_connect_result *res)
{
	const struct config *cfg = g.cfg;
	size_t n = claims->n_subs ? claims->n_subs : claims->n_channels, total;
	char *personal = NULL;
	struct client_connect *cw;
	struct proto_span *extra = NULL;
	size_t nextra = 0;
	int limit;

	if (cfg->client_subscribe_to_user_personal_channel_enabled && !client_is_anonymous(c)) {
		struct buf b = BUF_INIT;
		const char *ns = cfg->client_subscribe_to_user_personal_channel_personal_channel_namespace;
		if (ns[0])
			buf_printf(&b, "%s%s", ns, cfg->channel_namespace_boundary);
		buf_printf(&b, "%s%s", cfg->channel_user_boundary, c->user);
		personal = buf_steal(&b, NULL);
	}
	/* Keys of the request's subs the client could subscribe to itself
	 * without a token (§4.12); an unknown namespace is a bad request. */
	for (size_t k = 0; k < cmd->connect.nsubs; k++) {
		struct proto_span ch = cmd->connect.subs[k].req.channel;
		const struct chan_opts *o;
		int unknown = 0;
		if (ch.len == 0 || ch.len > (size_t)cfg->channel_max_length)
			continue;
		if ((o = config_chan_opts(cfg, ch.p, ch.len, &unknown)) == NULL) {
			free(personal);
			free(extra);
			client_disconnect(c, PROTO_DISCONNECT_BAD_REQUEST);
			return;
		}
		if (client_has_prefix(ch, cfg->channel_private_prefix) || !client_regex_ok(o, ch))
			continue;
		if (!((o->allow_user_limited_channels && client_user_allowed(c, ch)) ||
		    (o->allow_subscribe_for_client && client_anon_ok(c, o->allow_subscribe_for_anonymous)) ||
		    cfg->client_insecure))
			continue;
		extra = xrealloc(extra, (nextra + 1) * sizeof(*extra));
		extra[nextra++] = ch;
	}
	total = n + (personal != NULL) + nextra;
	limit = cfg->client_user_connection_limit > 0 && !client_is_anonymous(c);
	if (total == 0 && !limit) {
		client_connect_finish(c, cmd->id, res);
		return;
	}
	if (total > (size_t)cfg->client_channel_limit) {
		free(personal);
		free(extra);
		client_disconnect(c, PROTO_DISCONNECT_CHANNEL_LIMIT);
		return;
	}
	cw = xcalloc(1, sizeof(*cw));
	cw->id = cmd->id;
	cw->res = *res;
	cw->ss = xcalloc(total ? total : 1, sizeof(*cw->ss));
	c->cw = cw;
	if (limit) {
		/* The broker counts the user's connections on the whole node and
		 * refuses one over client.user_connection_limit. */
		struct msg m;
		memset(&m, 0, sizeof(m));
		m.type = MSG_CONN;
		m.has_info = 1;
		m.user = (struct msg_str){ c->user, (uint32_t)strlen(c->user) };
		m.limit = 1;
		m.since = (uint64_t)cfg->client_user_connection_limit;
		cw->pending++;
		c->refs++;
		worker_request(&m, client_conn_limit_done, c);
	}
	for (size_t i = 0; i < total; i++) {
		const struct auth_sub_claim *sc = claims->n_subs && i < n ? &claims->subs[i] : NULL;
		size_t xi = i - n - (personal != NULL);
		const char *ch = i >= n + (personal != NULL) ? extra[xi].p :
		    i == n ? personal : sc ? sc->channel : claims->channels[i];
		size_t len = i >= n + (personal != NULL) ? extra[xi].len : strlen(ch);
		const struct proto_connect_sub *want =
		    proto_connect_sub_find(&cmd->connect, (struct proto_span){ ch, len });
		struct client_ss *ss = &cw->ss[cw->nss];
		const struct chan_opts *o;
		int unknown = 0, presence, join_leave, push_jl, recover;

		if (client_find_sub(c, (struct proto_span){ ch, len }, NULL))
			continue;       /* listed twice */
		o = config_chan_opts(cfg, ch, len, &unknown);
		if (o == NULL) {
			free(personal);
			free(extra);
			client_unsubscribe_all(c);
			client_connect_free(c);
			c->connect_failed = 1;
			client_reply_error(c, cmd->id, PROTO_ERR_UNKNOWN_CHANNEL);
			return;
		}
		presence = client_override(sc ? sc->presence : -1, o->presence);
		join_leave = client_override(sc ? sc->join_leave : -1, o->join_leave);
		push_jl = client_override(sc ? sc->force_push_join_leave : -1, o->force_push_join_leave);
		recover = client_has_history(o) &&
		    client_override(sc ? sc->force_recovery : -1, o->force_recovery);
		ss->recoverable = recover;
		ss->positioned = client_has_history(o) && (recover ||
		    client_override(sc ? sc->force_positioning : -1, o->force_positioning));
		ss->recover = recover && want && want->req.recover;
		ss->offset = want ? want->req.offset : 0;
		if (sc && sc->data) {
			ss->data = xmemdup(sc->data, sc->data_len);
			ss->data_len = sc->data_len;
		}
		ss->s = client_sub_add(c, ch, len,
		    sc && sc->info ? xmemdup(sc->info, sc->info_len) : NULL, sc ? sc->info_len : 0,
		    presence, join_leave, push_jl, ss->positioned);
		ss->s->server_side = 1;
		cw->nss++;
		if (ss->positioned) {
			struct client_ss_req *r = xmalloc(sizeof(*r));
			r->c = c;
			r->idx = cw->nss - 1;
			c->refs++;
			cw->pending++;
			client_sub_announce(c, ss->s, o, MSG_F_POSITION | (ss->recover ? MSG_F_RECOVER : 0) | client_cache_mode(o),
			    ss->offset, want ? want->req.epoch : PROTO_SPAN_NULL, client_server_sub_done, r);
		} else {
			client_sub_announce(c, ss->s, o, 0, 0, PROTO_SPAN_NULL, NULL, NULL);
		}
	}
	free(personal);
	free(extra);
	if (cw->pending == 0)
		client_connect_complete(c);
}

/* The broker placed a positioned subscription in its stream. */
static void
client_subscribe_done(void *arg, const struct msg *res)
{
	struct client_req *r = arg;
	struct client *c = r->c;
	struct proto_subscribe_result out;
	struct client_sub *s = NULL;
	uint32_t idx;
	int recovered;

	if (c->state != CLIENT_CONNECTED)
		goto out;
	if (r->unsub_id == 0) {
		s = client_find_sub(c, (struct proto_span){ r->channel, r->channel_len }, &idx);
		if (s == NULL || s->req != r)
			goto out;       /* gone meanwhile */
		s->req = NULL;
	}
	recovered = res && r->recover && (res->flags & MSG_F_RECOVERED);
	if (res == NULL || res->error || (r->recover && !recovered && r->reject_unrecoverable)) {
		if (s) {
			c->subs[idx] = c->subs[--c->nsubs];
			client_sub_end(c, s);
		}
		client_reply_error(c, r->id, res == NULL ? PROTO_ERR_INTERNAL :
		    res->error ? res->error : PROTO_ERR_UNRECOVERABLE_POSITION);
		goto unsub;
	}
	memset(&out, 0, sizeof(out));
	out.positioned = r->positioned;
	out.recoverable = r->recoverable;
	if (r->positioned) {
		out.epoch = (struct proto_span){ res->epoch.p, res->epoch.len };
		out.offset = res->offset;
	}
	out.was_recovering = r->was_recovering;
	out.recovered = recovered;
	out.data = (struct proto_span){ r->data, r->data_len };
	if (r->exp) {
		out.expires = 1;
		out.ttl = (uint32_t)(r->exp > client_unix_now() ? r->exp - client_unix_now() : 0);
		client_subs_deadline(c);
		client_schedule(c);
	}
	if (recovered) {
		out.offset = r->offset;
		out.npublications = client_pubs_of(res);
		out.publications = client_pubs;
	}
	buf_reset(&g.out);
	codecs[c->fmt].subscribe_result(&g.out, r->id, &out);
	if (client_send_reply(c) != 0)
		goto out;
	if (s) {
		if (r->positioned) {
			s->hs.offset = res->offset;
			if (res->epoch.len <= HUB_EPOCH_MAX) {
				memcpy(s->hs.epoch, res->epoch.p, res->epoch.len);
				s->hs.epoch[res->epoch.len] = '\0';
			}
		}
		s->hs.state = HUB_SUB_ACTIVE;
	}
unsub:
	if (r->unsub_id)
		client_reply_empty(c, r->unsub_id, PROTO_CMD_UNSUBSCRIBE);
out:
	client_req_free(r);
}

/* Recomputes the session's earliest subscription deadline. */
static void
client_subs_deadline(struct client *c)
{
	c->sub_expire_at = 0;
	for (uint32_t i = 0; i < c->nsubs; i++) {
		uint64_t t = c->subs[i]->expire_at;
		if (t && (c->sub_expire_at == 0 || t < c->sub_expire_at))
			c->sub_expire_at = t;
	}
}

/* Deadline for a subscription token expiring at Unix time exp. */
static uint64_t
client_sub_deadline(int64_t exp)
{
	int64_t left = exp - client_unix_now();

	if (left < 0)
		left = 0;
	return wheel_now_ms() + (uint64_t)left * 1000 +
	    (uint64_t)(g.cfg->client_expired_sub_close_delay > 0 ? g.cfg->client_expired_sub_close_delay : 0);
}

static void
client_handle_subscribe(struct client *c, const struct proto_cmd *cmd)
{
	const struct config *cfg = g.cfg;
	const struct proto_subscribe_req *req = &cmd->subscribe;
	const struct chan_opts *o;
	struct proto_subscribe_result res;
	struct auth_sub_claims claims;
	struct client_sub *s;
	int allowed = 0, presence, join_leave, push_jl, recover, positioned;
	int64_t sub_exp = 0;

	if (req->channel.len == 0) {
		client_disconnect(c, PROTO_DISCONNECT_BAD_REQUEST);
		return;
	}
	if (req->delta.len && !proto_span_eq(req->delta, "fossil")) {
		client_disconnect(c, PROTO_DISCONNECT_BAD_REQUEST);
		return;
	}
	if (req->channel.len > (size_t)cfg->channel_max_length) {
		client_reply_error(c, cmd->id, PROTO_ERR_BAD_REQUEST);
		return;
	}
	if (client_find_sub(c, req->channel, NULL)) {
		client_reply_error(c, cmd->id, PROTO_ERR_ALREADY_SUBSCRIBED);
		return;
	}
	if (c->nsubs >= (uint32_t)cfg->client_channel_limit) {
		client_reply_error(c, cmd->id, PROTO_ERR_LIMIT_EXCEEDED);
		return;
	}
	if ((o = client_chan_opts(c, cmd->id, req->channel)) == NULL)
		return;
	if (!client_regex_ok(o, req->channel)) {
		client_reply_error(c, cmd->id, PROTO_ERR_BAD_REQUEST);
		return;
	}
	if (req->has_tf && !o->allow_tags_filter) {
		/* Tags filters are not served; a namespace without
		 * allow_tags_filter refuses them as upstream does (§4.5.2). */
		client_reply_error(c, cmd->id, PROTO_ERR_BAD_REQUEST);
		return;
	}
	if (req->type != 0) {
		client_reply_error(c, cmd->id, PROTO_ERR_PERMISSION_DENIED);
		return;
	}
	memset(&claims, 0, sizeof(claims));
	claims.presence = claims.join_leave = claims.force_push_join_leave =
	    claims.force_recovery = claims.force_positioning = AUTH_OVERRIDE_UNSET;
	if (req->token.len) {
		struct buf why = BUF_INIT;
		enum auth_result r = auth_verify_subscription(g.sub_verifier, req->token.p,
		    req->token.len, client_unix_now(), &claims, &why);
		if (r != AUTH_OK)
			log_info("subscription token refused (%s): %s", auth_result_name(r), buf_cstr(&why));
		buf_free(&why);
		if (r == AUTH_INVALID) {
			client_reply_error(c, cmd->id, PROTO_ERR_PERMISSION_DENIED);
			return;
		}
		if (r == AUTH_EXPIRED) {
			client_reply_error(c, cmd->id, PROTO_ERR_TOKEN_EXPIRED);
			return;
		}
		if (strcmp(claims.user, c->user) != 0 ||
		    strlen(claims.channel) != req->channel.len ||
		    memcmp(claims.channel, req->channel.p, req->channel.len) != 0 ||
		    (claims.client[0] && strcmp(claims.client, c->id) != 0)) {
			auth_sub_claims_free(&claims);
			client_disconnect(c, PROTO_DISCONNECT_INVALID_TOKEN);
			return;
		}
		if (!cfg->client_insecure)
			sub_exp = auth_expiry(claims.has_expire_at, claims.expire_at,
			    claims.has_exp, claims.exp);
		if (sub_exp && sub_exp <= client_unix_now()) {
			auth_sub_claims_free(&claims);
			client_reply_error(c, cmd->id, PROTO_ERR_EXPIRED);
			return;
		}
		allowed = 1;
	} else if (client_has_prefix(req->channel, cfg->channel_private_prefix)) {
		client_reply_error(c, cmd->id, PROTO_ERR_PERMISSION_DENIED);
		return;
	} else if (o->allow_user_limited_channels && client_user_allowed(c, req->channel)) {
		allowed = 1;
	} else if (o->allow_subscribe_for_client && client_anon_ok(c, o->allow_subscribe_for_anonymous)) {
		allowed = 1;
	} else if (cfg->client_insecure) {
		allowed = 1;
	}
	if (!allowed) {
		client_reply_error(c, cmd->id, PROTO_ERR_PERMISSION_DENIED);
		return;
	}

	/* Negotiated options (§4.5.3), with the token's overrides. */
	presence = client_override(claims.presence, o->presence);
	join_leave = client_override(claims.join_leave, o->join_leave);
	push_jl = client_override(claims.force_push_join_leave, o->force_push_join_leave) ||
	    (req->join_leave && join_leave && client_presence_allowed(c, o, 1));
	recover = client_has_history(o) &&
	    (client_override(claims.force_recovery, o->force_recovery) ||
	     (req->recoverable && (o->allow_recovery || client_history_allowed(c, o, 1))));
	positioned = client_has_history(o) && (recover ||
	    client_override(claims.force_positioning, o->force_positioning) ||
	    (req->positioned && (o->allow_positioning || client_history_allowed(c, o, 1))));

	if (positioned || client_multinode()) {
		/* The broker answers through the fan-out ring, in order with the
		 * publications: the reply is sent from client_subscribe_done().
		 * With several nodes a subscription without position waits too:
		 * until this node receives the channel's publications. */
		struct client_req *r = client_req_new(c, cmd->id, PROTO_CMD_SUBSCRIBE);
		r->positioned = positioned;
		r->channel = xstrndup(req->channel.p, req->channel.len);
		r->channel_len = req->channel.len;
		r->recover = req->recover && recover;
		r->was_recovering = req->recover;
		r->recoverable = recover;
		r->reject_unrecoverable = (req->flag & 2) != 0;
		r->offset = req->offset;
		r->data = claims.data;
		r->data_len = claims.data_len;
		r->exp = sub_exp;
		claims.data = NULL;
		s = client_sub_add(c, req->channel.p, req->channel.len, claims.info, claims.info_len,
		    presence, join_leave, push_jl, 1);
		s->hs.positioned = positioned != 0;
		s->req = r;
		claims.info = NULL;
		if (sub_exp)
			s->expire_at = client_sub_deadline(sub_exp);
		client_sub_announce(c, s, o, positioned ?
		    MSG_F_POSITION | (r->recover ? MSG_F_RECOVER : 0) | client_cache_mode(o) : 0,
		    req->offset, req->epoch, client_subscribe_done, r);
		auth_sub_claims_free(&claims);
		return;
	}

	memset(&res, 0, sizeof(res));
	res.was_recovering = req->recover;
	res.data = (struct proto_span){ claims.data, claims.data_len };
	if (sub_exp) {
		res.expires = 1;
		res.ttl = (uint32_t)(sub_exp - client_unix_now());
	}
	buf_reset(&g.out);
	codecs[c->fmt].subscribe_result(&g.out, cmd->id, &res);
	if (client_send_reply(c) == 0) {
		/* Linked after the reply is queued: no push can overtake it. */
		s = client_sub_add(c, req->channel.p, req->channel.len, claims.info, claims.info_len,
		    presence, join_leave, push_jl, 0);
		claims.info = NULL;
		if (sub_exp) {
			s->expire_at = client_sub_deadline(sub_exp);
			client_subs_deadline(c);
			client_schedule(c);
		}
		client_sub_announce(c, s, o, 0, 0, PROTO_SPAN_NULL, NULL, NULL);
	}
	auth_sub_claims_free(&claims);
}

/* Subscriptions not refreshed in time: unsubscribe 2501 (client-side) or
 * disconnect 3006 (server-side). */
static void
client_subs_expire(struct client *c, uint64_t now)
{
	for (uint32_t i = c->nsubs; i-- > 0;) {
		struct client_sub *s;
		struct proto_push push;
		size_t len;
		const char *ch;

		if (i >= c->nsubs)
			continue;
		s = c->subs[i];
		if (s->expire_at == 0 || now < s->expire_at)
			continue;
		if (s->server_side) {
			client_disconnect(c, PROTO_DISCONNECT_SUB_EXPIRED);
			return;
		}
		ch = hub_sub_channel(&s->hs, &len);
		memset(&push, 0, sizeof(push));
		push.type = PROTO_PUSH_UNSUBSCRIBE;
		push.channel = (struct proto_span){ ch, len };
		push.code = PROTO_UNSUB_EXPIRED;
		push.reason = proto_span_str(proto_unsub_reason(PROTO_UNSUB_EXPIRED));
		buf_reset(&g.out);
		codecs[c->fmt].push(&g.out, &push);
		c->subs[i] = c->subs[--c->nsubs];
		client_sub_end(c, s);
		if (client_send_out(c) != 0)
			return;
	}
	client_subs_deadline(c);
}

static void
client_handle_sub_refresh(struct client *c, const struct proto_cmd *cmd)
{
	const struct proto_sub_refresh_req *req = &cmd->sub_refresh;
	struct auth_sub_claims claims;
	struct client_sub *s;
	struct buf why = BUF_INIT;
	enum auth_result r;
	int64_t exp;

	if (req->channel.len == 0) {
		client_disconnect(c, PROTO_DISCONNECT_BAD_REQUEST);
		return;
	}
	if ((s = client_find_sub(c, req->channel, NULL)) == NULL || s->server_side) {
		client_reply_error(c, cmd->id, PROTO_ERR_PERMISSION_DENIED);
		return;
	}
	if (req->token.len == 0) {
		client_reply_error(c, cmd->id, PROTO_ERR_BAD_REQUEST);
		return;
	}
	r = auth_verify_subscription(g.sub_verifier, req->token.p, req->token.len,
	    client_unix_now(), &claims, &why);
	if (r != AUTH_OK)
		log_info("subscription refresh token refused (%s): %s", auth_result_name(r), buf_cstr(&why));
	buf_free(&why);
	if (r == AUTH_EXPIRED) {
		/* Upstream accepts it; an expired token cannot extend anything. */
		client_reply_error(c, cmd->id, PROTO_ERR_EXPIRED);
		return;
	}
	if (r != AUTH_OK) {
		client_disconnect(c, PROTO_DISCONNECT_INVALID_TOKEN);
		return;
	}
	if (strcmp(claims.user, c->user) != 0 || strlen(claims.channel) != req->channel.len ||
	    memcmp(claims.channel, req->channel.p, req->channel.len) != 0 ||
	    (claims.client[0] && strcmp(claims.client, c->id) != 0)) {
		auth_sub_claims_free(&claims);
		client_disconnect(c, PROTO_DISCONNECT_INVALID_TOKEN);
		return;
	}
	exp = g.cfg->client_insecure ? 0 :
	    auth_expiry(claims.has_expire_at, claims.expire_at, claims.has_exp, claims.exp);
	auth_sub_claims_free(&claims);
	if (exp && exp <= client_unix_now()) {
		client_reply_error(c, cmd->id, PROTO_ERR_EXPIRED);
		return;
	}
	s->expire_at = exp ? client_sub_deadline(exp) : 0;
	client_subs_deadline(c);
	buf_reset(&g.out);
	if (exp)
		codecs[c->fmt].sub_refresh_result(&g.out, cmd->id, 1, (uint32_t)(exp - client_unix_now()));
	else
		codecs[c->fmt].empty_result(&g.out, cmd->id, PROTO_CMD_SUB_REFRESH);
	client_send_reply(c);
	client_schedule(c);
}

void
client_sub_lost(struct hub_sub *hs, enum hub_lost_reason why)
{
	struct client_sub *s = (struct client_sub *)hs;
	struct client *c = hs->client;
	struct proto_push push;
	size_t len;
	const char *ch = hub_sub_channel(hs, &len);
	uint32_t idx;

	if (c->state != CLIENT_CONNECTED)
		return;
	if (why == HUB_LOST_FORMAT) {
		client_disconnect(c, PROTO_DISCONNECT_INAPPROPRIATE_PROTOCOL);
		return;
	}
	if (s->server_side) {
		client_disconnect(c, PROTO_DISCONNECT_INSUFFICIENT_STATE);
		return;
	}
	memset(&push, 0, sizeof(push));
	push.type = PROTO_PUSH_UNSUBSCRIBE;
	push.channel = (struct proto_span){ ch, len };
	push.code = PROTO_UNSUB_INSUFFICIENT_STATE;
	push.reason = proto_span_str(proto_unsub_reason(PROTO_UNSUB_INSUFFICIENT_STATE));
	buf_reset(&g.out);
	codecs[c->fmt].push(&g.out, &push);
	if (client_find_sub(c, (struct proto_span){ ch, len }, &idx) == s) {
		c->subs[idx] = c->subs[--c->nsubs];
		client_sub_end(c, s);
	}
	client_send_out(c);
}

static void
client_handle_unsubscribe(struct client *c, const struct proto_cmd *cmd)
{
	struct client_sub *s;
	uint32_t i;

	if (cmd->unsubscribe.channel.len == 0) {
		client_disconnect(c, PROTO_DISCONNECT_BAD_REQUEST);
		return;
	}
	if ((s = client_find_sub(c, cmd->unsubscribe.channel, &i)) != NULL) {
		c->subs[i] = c->subs[--c->nsubs];
		if (s->req) {
			/* The subscribe is still with the broker: its reply goes
			 * out first, then this one (§4.7). */
			s->req->unsub_id = cmd->id;
			client_sub_end(c, s);
			return;
		}
		client_sub_end(c, s);
	}
	client_reply_empty(c, cmd->id, PROTO_CMD_UNSUBSCRIBE);
}

/* A publish waiting for the broker. */
struct client_publish {
	struct client *c;
	uint32_t id;
};

static void
client_publish_done(void *arg, const struct msg *reply)
{
	struct client_publish *p = arg;
	struct client *c = p->c;

	if (c->state == CLIENT_CONNECTED) {
		if (reply == NULL)
			client_reply_error(c, p->id, PROTO_ERR_INTERNAL);
		else if (reply->error)
			client_reply_error(c, p->id, reply->error);
		else
			client_reply_empty(c, p->id, PROTO_CMD_PUBLISH);
	}
	client_unref(c);
	free(p);
}

static void
client_handle_publish(struct client *c, const struct proto_cmd *cmd)
{
	const struct proto_publish_req *req = &cmd->publish;
	const struct chan_opts *o;
	struct client_sub *s;
	struct client_publish *p;
	struct msg m;
	int anon = client_is_anonymous(c), allowed = 0;

	if ((o = client_chan_opts(c, cmd->id, req->channel)) == NULL)
		return;
	if (req->type != 0) {
		client_reply_error(c, cmd->id, PROTO_ERR_PERMISSION_DENIED);
		return;
	}
	if (!codec_data_ok(o, req->data.p, req->data.len)) {
		client_reply_error(c, cmd->id, PROTO_ERR_BAD_REQUEST);
		return;
	}
	s = client_find_sub(c, req->channel, NULL);
	if (o->allow_publish_for_client && (!anon || o->allow_publish_for_anonymous))
		allowed = 1;
	else if (o->allow_publish_for_subscriber && s && (!anon || o->allow_publish_for_anonymous))
		allowed = 1;
	else if (g.cfg->client_insecure)
		allowed = 1;
	if (!allowed) {
		client_reply_error(c, cmd->id, PROTO_ERR_PERMISSION_DENIED);
		return;
	}

	memset(&m, 0, sizeof(m));
	m.type = MSG_PUBLISH;
	m.channel = (struct msg_str){ req->channel.p, (uint32_t)req->channel.len };
	m.data = (struct msg_str){ req->data.p, (uint32_t)req->data.len };
	client_msg_info(&m, c, s);
	if (c->fmt != CODEC_JSON && json_validate(req->data.p, req->data.len, NULL) != 0)
		m.flags |= MSG_F_BINARY;
	m.ntags = 0;
	m.history_size = o->history_size;
	m.history_ttl_ms = o->history_ttl;
	m.history_meta_ttl_ms = o->history_meta_ttl;
	m.offset = 0;
	m.epoch = (struct msg_str){ NULL, 0 };

	p = xmalloc(sizeof(*p));
	p->c = c;
	p->id = cmd->id;
	c->refs++;
	worker_request(&m, client_publish_done, p);
}

static void
client_history_done(void *arg, const struct msg *res)
{
	struct client_req *r = arg;
	struct client *c = r->c;

	if (c->state == CLIENT_CONNECTED) {
		if (res == NULL || res->error) {
			client_reply_error(c, r->id, res ? res->error : PROTO_ERR_INTERNAL);
		} else {
			size_t n = client_pubs_of(res);
			buf_reset(&g.out);
			codecs[c->fmt].history_result(&g.out, r->id, client_pubs, n,
			    (struct proto_span){ res->epoch.p, res->epoch.len }, res->offset);
			client_send_reply(c);
		}
	}
	client_req_free(r);
}

static void
client_handle_history(struct client *c, const struct proto_cmd *cmd)
{
	const struct proto_history_req *req = &cmd->history;
	const struct chan_opts *o = client_chan_opts(c, cmd->id, req->channel);
	int64_t limit = req->limit, max = g.cfg->client_history_max_publication_limit;
	struct msg m;

	if (o == NULL)
		return;
	if (!client_has_history(o)) {
		client_reply_error(c, cmd->id, PROTO_ERR_NOT_AVAILABLE);
		return;
	}
	if (!client_history_allowed(c, o, client_find_sub(c, req->channel, NULL) != NULL)) {
		client_reply_error(c, cmd->id, PROTO_ERR_PERMISSION_DENIED);
		return;
	}
	if (req->has_since && req->reverse && req->since_offset == 0) {
		client_reply_error(c, cmd->id, PROTO_ERR_BAD_REQUEST);
		return;
	}
	if (limit < 0 || (max > 0 && limit > max))
		limit = max > 0 ? max : -1;
	memset(&m, 0, sizeof(m));
	m.type = MSG_HISTORY;
	m.channel = (struct msg_str){ req->channel.p, (uint32_t)req->channel.len };
	m.flags = (req->has_since ? MSG_F_SINCE : 0) | (req->reverse ? MSG_F_REVERSE : 0);
	m.since = req->since_offset;
	m.epoch = (struct msg_str){ req->since_epoch.p, (uint32_t)req->since_epoch.len };
	m.limit = (int32_t)limit;
	m.history_size = o->history_size;
	m.history_ttl_ms = o->history_ttl;
	m.history_meta_ttl_ms = o->history_meta_ttl;
	worker_request(&m, client_history_done, client_req_new(c, cmd->id, PROTO_CMD_HISTORY));
}

static void
client_presence_done(void *arg, const struct msg *res)
{
	struct client_req *r = arg;
	struct client *c = r->c;

	if (c->state != CLIENT_CONNECTED) {
		client_req_free(r);
		return;
	}
	if (res == NULL || res->error) {
		client_reply_error(c, r->id, res ? res->error : PROTO_ERR_INTERNAL);
	} else if (r->type == PROTO_CMD_PRESENCE_STATS) {
		buf_reset(&g.out);
		codecs[c->fmt].presence_stats_result(&g.out, r->id, res->num_clients, res->num_users);
		client_send_reply(c);
	} else {
		size_t n = 0, pos = 0;
		struct proto_client_info *infos = xcalloc(res->nitems / 4 + 1, sizeof(*infos));
		while (n < res->nitems / 4 && codec_presence_next(res, &pos, &infos[n]))
			n++;
		buf_reset(&g.out);
		codecs[c->fmt].presence_result(&g.out, r->id, infos, n);
		client_send_reply(c);
		free(infos);
	}
	client_req_free(r);
}

static void
client_handle_presence(struct client *c, const struct proto_cmd *cmd, struct proto_span channel,
    int stats)
{
	const struct chan_opts *o = client_chan_opts(c, cmd->id, channel);
	struct msg m;

	if (o == NULL)
		return;
	if (!o->presence) {
		client_reply_error(c, cmd->id, PROTO_ERR_NOT_AVAILABLE);
		return;
	}
	if (!client_presence_allowed(c, o, client_find_sub(c, channel, NULL) != NULL)) {
		client_reply_error(c, cmd->id, PROTO_ERR_PERMISSION_DENIED);
		return;
	}
	memset(&m, 0, sizeof(m));
	m.type = MSG_PRESENCE;
	m.channel = (struct msg_str){ channel.p, (uint32_t)channel.len };
	m.flags = stats ? MSG_F_STATS : 0;
	worker_request(&m, client_presence_done,
	    client_req_new(c, cmd->id, stats ? PROTO_CMD_PRESENCE_STATS : PROTO_CMD_PRESENCE));
}

/* ------------------------------------------------------------------ */
/* Dispatch                                                            */

/* Handles one command; returns -1 once the session is closing. */
static int
client_dispatch(struct client *c, const struct proto_cmd *cmd)
{
	if (cmd->id == 0 && cmd->type != PROTO_CMD_SEND) {
		/* A pong, whatever else it carries. */
		if (c->state != CLIENT_CONNECTED || !c->ping_outstanding) {
			client_disconnect(c, PROTO_DISCONNECT_BAD_REQUEST);
			return -1;
		}
		c->ping_outstanding = 0;
		return 0;
	}
	if (c->state == CLIENT_CONNECTING && (cmd->type != PROTO_CMD_CONNECT || c->connect_failed)) {
		client_disconnect(c, PROTO_DISCONNECT_BAD_REQUEST);
		return -1;
	}
	switch (cmd->type) {
	case PROTO_CMD_CONNECT:
		client_handle_connect(c, cmd);
		break;
	case PROTO_CMD_SUBSCRIBE:
		client_handle_subscribe(c, cmd);
		break;
	case PROTO_CMD_UNSUBSCRIBE:
		client_handle_unsubscribe(c, cmd);
		break;
	case PROTO_CMD_PUBLISH:
		client_handle_publish(c, cmd);
		break;
	case PROTO_CMD_PRESENCE:
		client_handle_presence(c, cmd, cmd->presence.channel, 0);
		break;
	case PROTO_CMD_PRESENCE_STATS:
		client_handle_presence(c, cmd, cmd->presence_stats.channel, 1);
		break;
	case PROTO_CMD_HISTORY:
		client_handle_history(c, cmd);
		break;
	case PROTO_CMD_RPC:
		/* No RPC proxy and no built-in method: nothing is found. */
		client_reply_error(c, cmd->id, PROTO_ERR_METHOD_NOT_FOUND);
		break;
	case PROTO_CMD_SEND:
		/* There is no handler for asynchronous messages (§4.8). */
		client_disconnect(c, PROTO_DISCONNECT_NOT_AVAILABLE);
		break;
	case PROTO_CMD_REFRESH:
		client_handle_refresh(c, cmd);
		break;
	case PROTO_CMD_SUB_REFRESH:
		client_handle_sub_refresh(c, cmd);
		break;
	default:
		/* No known request (a lone `ping` lands here too). */
		client_disconnect(c, PROTO_DISCONNECT_BAD_REQUEST);
		break;
	}
	return c->state >= CLIENT_CLOSING ? -1 : 0;
}

/* Handles one frame; returns -1 once the session is closing or waits. */
static int
client_process(struct client *c, const char *data, size_t len)
{
	struct proto_cmd cmd;
	int rc;

	/* The opcode is not looked at: a binary message on a JSON connection
	 * is decoded as JSON like a text one (protocol.md §1.2). */
	proto_reader_reset(&g.reader, data, len);
	while ((rc = codecs[c->fmt].next(&g.reader, &cmd)) == 1) {
		if (client_dispatch(c, &cmd) != 0)
			return -1;
		if (c->cw) {
			/* The connect waits for the broker: keep the rest of the
			 * frame for later, in order. */
			size_t pos = g.reader.pos;
			if (c->fmt == CODEC_JSON && pos < len && data[pos] == '\n')
				pos++;
			if (pos < len) {
				uint32_t rest = (uint32_t)(len - pos);
				buf_append(&c->cw->backlog, &rest, 4);
				buf_append(&c->cw->backlog, data + pos, rest);
			}
			return -1;
		}
	}
	if (rc < 0) {
		log_debug("client %s sent a malformed frame: %s at byte %zu", c->id,
		    g.reader.err ? g.reader.err : "?", g.reader.err_off);
		client_disconnect(c, PROTO_DISCONNECT_BAD_REQUEST);
		return -1;
	}
	return 0;
}

void
client_on_message(struct client *c, const char *data, size_t len, int binary)
{
	ASSERT(c->magic == CLIENT_MAGIC);
	if (c->state >= CLIENT_CLOSING)
		return;
	{
		struct proc_slot_shm *slot = shm_slot(heritage.shm, heritage.worker_id);
		atomic_fetch_add(&slot->messages_received, 1);
		atomic_fetch_add(&slot->bytes_received, len);
	}
	if (c->cw) {
		uint32_t n = (uint32_t)len;
		buf_append(&c->cw->backlog, &n, 4);
		buf_append(&c->cw->backlog, data, len);
		return;
	}
	client_process(c, data, len);
}

/* ------------------------------------------------------------------ */
/* Server API commands for sessions (MSG_CONTROL)                      */

static int
client_str_eq(const char *s, struct msg_str m)
{
	return strlen(s) == m.len && memcmp(s, m.p, m.len) == 0;
}

/* A positioned server-side subscription made by the server API is placed. */
static void
client_api_sub_done(void *arg, const struct msg *res)
{
	struct client_req *r = arg;
	struct client *c = r->c;
	struct proto_subscribe_result sr;
	struct proto_push push;
	struct client_sub *s;
	uint32_t idx;

	s = client_find_sub(c, (struct proto_span){ r->channel, r->channel_len }, &idx);
	if (c->state != CLIENT_CONNECTED || s == NULL || s->hs.state != HUB_SUB_PENDING)
		goto out;
	if (res == NULL) {
		c->subs[idx] = c->subs[--c->nsubs];
		client_sub_end(c, s);
		goto out;
	}
	memset(&sr, 0, sizeof(sr));
	sr.positioned = 1;
	sr.recoverable = r->recoverable;
	sr.epoch = (struct proto_span){ res->epoch.p, res->epoch.len };
	sr.offset = res->offset;
	sr.data = (struct proto_span){ r->data, r->data_len };
	memset(&push, 0, sizeof(push));
	push.type = PROTO_PUSH_SUBSCRIBE;
	push.channel = (struct proto_span){ r->channel, r->channel_len };
	push.subscribe = &sr;
	buf_reset(&g.out);
	codecs[c->fmt].push(&g.out, &push);
	if (client_send_out(c) != 0)
		goto out;
	s->hs.offset = res->offset;
	if (res->epoch.len <= HUB_EPOCH_MAX) {
		memcpy(s->hs.epoch, res->epoch.p, res->epoch.len);
		s->hs.epoch[res->epoch.len] = '\0';
	}
	if (r->recover && (res->flags & MSG_F_RECOVERED)) {
		/* Missed publications follow the subscribe push, in order. */
		size_t n = client_pubs_of(res);
		for (size_t i = 0; i < n; i++) {
			memset(&push, 0, sizeof(push));
			push.type = PROTO_PUSH_PUB;
			push.channel = (struct proto_span){ r->channel, r->channel_len };
			push.pub = &client_pubs[i];
			buf_reset(&g.out);
			codecs[c->fmt].push(&g.out, &push);
			if (client_send_out(c) != 0)
				goto out;
		}
	}
	s->hs.state = HUB_SUB_ACTIVE;
out:
	client_req_free(r);
}

static void
client_api_subscribe(struct client *c, const struct msg *m)
{
	struct proto_span ch = { m->channel.p, m->channel.len };
	const struct chan_opts *o;
	struct client_sub *s;
	int unknown = 0, recover, positioned;

	if (client_find_sub(c, ch, NULL) || c->nsubs >= (uint32_t)g.cfg->client_channel_limit)
		return;
	if ((o = config_chan_opts(g.cfg, ch.p, ch.len, &unknown)) == NULL)
		return;
	recover = client_has_history(o) &&
	    client_override(MSG_OVR_GET(m->limit, MSG_OVR_FORCE_RECOVERY), o->force_recovery);
	positioned = client_has_history(o) && (recover ||
	    client_override(MSG_OVR_GET(m->limit, MSG_OVR_FORCE_POSITIONING), o->force_positioning) ||
	    (m->flags & MSG_F_RECOVER));
	s = client_sub_add(c, ch.p, ch.len,
	    m->chan_info.len ? xmemdup(m->chan_info.p, m->chan_info.len) : NULL, m->chan_info.len,
	    client_override(MSG_OVR_GET(m->limit, MSG_OVR_PRESENCE), o->presence),
	    client_override(MSG_OVR_GET(m->limit, MSG_OVR_JOIN_LEAVE), o->join_leave),
	    client_override(MSG_OVR_GET(m->limit, MSG_OVR_FORCE_PUSH_JOIN_LEAVE),
	    o->force_push_join_leave), positioned);
	s->server_side = 1;
	if (m->since)
		s->expire_at = client_sub_deadline((int64_t)m->since);
	if (positioned) {
		struct client_req *r = client_req_new(c, 0, PROTO_CMD_SUBSCRIBE);
		r->channel = xstrndup(ch.p, ch.len);
		r->channel_len = ch.len;
		r->recover = (m->flags & MSG_F_RECOVER) != 0;
		r->recoverable = recover;
		r->offset = m->offset;
		if (m->data.len) {
			r->data = xmemdup(m->data.p, m->data.len);
			r->data_len = m->data.len;
		}
		client_sub_announce(c, s, o, MSG_F_POSITION | (r->recover ? MSG_F_RECOVER : 0) | client_cache_mode(o),
		    m->offset, (struct proto_span){ m->epoch.p, m->epoch.len }, client_api_sub_done, r);
	} else {
		struct proto_subscribe_result sr;
		struct proto_push push;
		memset(&sr, 0, sizeof(sr));
		sr.data = (struct proto_span){ m->data.p, m->data.len };
		memset(&push, 0, sizeof(push));
		push.type = PROTO_PUSH_SUBSCRIBE;
		push.channel = ch;
		push.subscribe = &sr;
		buf_reset(&g.out);
		codecs[c->fmt].push(&g.out, &push);
		client_send_out(c);
		client_sub_announce(c, s, o, 0, 0, PROTO_SPAN_NULL, NULL, NULL);
	}
	client_subs_deadline(c);
	client_schedule(c);
}

static void
client_api_unsubscribe(struct client *c, const struct msg *m)
{
	struct proto_span ch = { m->channel.p, m->channel.len };
	struct client_sub *s;
	struct proto_push push;
	uint32_t idx;

	if ((s = client_find_sub(c, ch, &idx)) == NULL)
		return;
	c->subs[idx] = c->subs[--c->nsubs];
	client_sub_end(c, s);
	memset(&push, 0, sizeof(push));
	push.type = PROTO_PUSH_UNSUBSCRIBE;
	push.channel = ch;
	push.code = PROTO_UNSUB_SERVER;
	push.reason = proto_span_str(proto_unsub_reason(PROTO_UNSUB_SERVER));
	buf_reset(&g.out);
	codecs[c->fmt].push(&g.out, &push);
	client_send_out(c);
}

static void
client_api_refresh(struct client *c, const struct msg *m)
{
	if (m->flags & MSG_CTL_EXPIRED) {
		client_disconnect(c, PROTO_DISCONNECT_EXPIRED);
		return;
	}
	if (m->flags & MSG_CTL_HAS_INFO) {
		free(c->info);
		c->info = m->conn_info.len ? xmemdup(m->conn_info.p, m->conn_info.len) : NULL;
		c->info_len = m->conn_info.len;
	}
	if (m->since) {
		c->exp = (int64_t)m->since;
		c->expire_at = client_expire_deadline(c->exp);
		client_schedule(c);
	}
}

void
client_control(const struct msg *m)
{
	uint32_t op = m->flags & MSG_CTL_OP_MASK;

	for (struct client *c = g.all, *next; c; c = next) {
		next = c->next;
		if (c->state != CLIENT_CONNECTED || !client_str_eq(c->user, m->user))
			continue;
		if (m->client.len && !client_str_eq(c->id, m->client))
			continue;
		switch (op) {
		case MSG_CTL_DISCONNECT: {
			size_t pos = 0;
			struct msg_str w;
			int keep = 0;
			while (msg_item_next(m, &pos, &w) == 1)
				keep |= client_str_eq(c->id, w);
			if (!keep) {
				char reason[128];
				size_t n = m->data.len < sizeof(reason) - 1 ? m->data.len : sizeof(reason) - 1;
				memcpy(reason, m->data.p, n);
				reason[n] = '\0';
				client_disconnect_reason(c, m->error, reason);
			}
			break;
		}
		case MSG_CTL_SUBSCRIBE:
			client_api_subscribe(c, m);
			break;
		case MSG_CTL_UNSUBSCRIBE:
			client_api_unsubscribe(c, m);
			break;
		case MSG_CTL_REFRESH:
			client_api_refresh(c, m);
			break;
		default:
			break;
		}
	}
}
