/*
 * api.c - the server HTTP API of a worker (server-api.md): per-method
 * POST /api/<method>, the legacy multi-command POST /api, batch, and the
 * health and metrics endpoints.
 *
 * A request becomes a job: its commands are parsed from the body, every
 * publication they ask for is sent to the broker at once, and the answer is
 * written when the last broker reply came back.  `data` is raw JSON taken
 * from the body byte for byte; it is never re-serialised.
 *
 * Runs in: worker processes.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "api.h"
#include "b64.h"
#include "buf.h"
#include "build-config.h"
#include "codec.h"
#include "config.h"
#include "glob.h"
#include "heritage.h"
#include "json.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "msg.h"
#include "node.h"
#include "proto.h"
#include "shm.h"
#include "worker.h"
#include "xmalloc.h"

#define API_CONTENT_TYPE "application/json"
#define API_ERR_INTERNAL 100
#define API_ERR_UNKNOWN_CHANNEL 102
#define API_ERR_NOT_FOUND 104
#define API_ERR_BAD_REQUEST 107
#define API_ERR_NOT_AVAILABLE 108

static const struct config *api_cfg;

void
api_init(const struct config *cfg)
{
	api_cfg = cfg;
}

void
api_reconfigure(const struct config *cfg)
{
	api_cfg = cfg;
}

static const char *
api_error_message(uint32_t code)
{
	switch (code) {
	case API_ERR_INTERNAL: return "internal server error";
	case API_ERR_UNKNOWN_CHANNEL: return "unknown channel";
	case API_ERR_NOT_FOUND: return "not found";
	case API_ERR_BAD_REQUEST: return "bad request";
	case API_ERR_NOT_AVAILABLE: return "not available";
	case 112: return "unrecoverable position";
	case 113: return "conflict";
	default: return "internal server error";
	}
}

/* HTTP status of an error in transport error mode (§2.3). */
static int
api_error_status(uint32_t code)
{
	switch (code) {
	case API_ERR_UNKNOWN_CHANNEL: case API_ERR_NOT_FOUND: return 404;
	case API_ERR_BAD_REQUEST: case API_ERR_NOT_AVAILABLE: return 400;
	case 112: return 416;
	case 113: return 409;
	default: return 500;
	}
}

static void
api_plain(struct http_req *r, int status, const char *text)
{
	loop_http_respond(r, status, text ? "text/plain; charset=utf-8" : NULL,
	    text ? text : "", text ? strlen(text) : 0);
}

/* ------------------------------------------------------------------ */
/* Jobs and commands                                                   */

/* Server API methods; the order is the legacy numbering (§2.2) for the
 * first thirteen. */
enum api_method {
	API_PUBLISH = 0,
	API_BROADCAST,
	API_UNSUBSCRIBE,
	API_DISCONNECT,
	API_PRESENCE,
	API_PRESENCE_STATS,
	API_HISTORY,
	API_HISTORY_REMOVE,
	API_CHANNELS,
	API_INFO,
	API_RPC,
	API_SUBSCRIBE,
	API_REFRESH,
	API_BATCH,
	API_METHOD_COUNT,
	API_UNKNOWN = API_METHOD_COUNT
};

_Static_assert(API_METHOD_COUNT <= SHM_API_METHODS, "every method has a metrics slot");

static const char *const api_method_names[API_METHOD_COUNT] = {
	[API_PUBLISH] = "publish",
	[API_BROADCAST] = "broadcast",
	[API_UNSUBSCRIBE] = "unsubscribe",
	[API_DISCONNECT] = "disconnect",
	[API_PRESENCE] = "presence",
	[API_PRESENCE_STATS] = "presence_stats",
	[API_HISTORY] = "history",
	[API_HISTORY_REMOVE] = "history_remove",
	[API_CHANNELS] = "channels",
	[API_INFO] = "info",
	[API_RPC] = "rpc",
	[API_SUBSCRIBE] = "subscribe",
	[API_REFRESH] = "refresh",
	[API_BATCH] = "batch",
};

/* Order in which batch looks for the command key (§5.14). */
static const enum api_method api_batch_order[] = {
	API_PUBLISH, API_BROADCAST, API_SUBSCRIBE, API_UNSUBSCRIBE, API_DISCONNECT,
	API_HISTORY, API_HISTORY_REMOVE, API_PRESENCE, API_PRESENCE_STATS, API_INFO,
	API_RPC, API_REFRESH, API_CHANNELS,
};

enum api_mode {
	API_MODE_METHOD = 0,      /* POST /api/<method>: {"result":..} */
	API_MODE_LEGACY,          /* POST /api: {"id":..,"result":..} lines */
	API_MODE_BATCH            /* /api/batch: {"replies":[{"<method>":..}]} */
};

struct api_job;

/* One publication into one channel, waiting for the broker. */
struct api_pub {
	struct api_job *job;
	uint32_t err;             /* 0, or an error code (also before sending) */
	uint64_t offset;
	char epoch[32];
};

/* One command of a job.  Methods other than publish/broadcast put their
 * result object into `result` (now, or when the broker answers). */
struct api_cmd {
	struct api_job *job;
	uint32_t id;              /* legacy only; 0 = omitted */
	enum api_method method;
	uint32_t err;             /* 0, or the error answered */
	struct buf result;        /* the result object */
	size_t first, npubs;      /* publish/broadcast: its publications */
	char *pattern;            /* channels: glob, or NULL */
};

struct api_job {
	struct http_req *req;     /* NULL for a job of api_call() */
	api_done_fn done;         /* api_call(): gets the answer instead */
	void *done_arg;
	uint64_t started_us;      /* for the duration metric */
	enum api_mode mode;
	int transport_errors;     /* X-Centrifugo-Error-Mode: transport */
	struct api_cmd **cmds;    /* each allocated alone: callbacks hold them */
	size_t ncmds, capcmds;
	struct api_pub **pubs;
	size_t npubs, cappubs;
	size_t pending;           /* broker replies still to come */
};

static struct api_cmd *
api_job_cmd(struct api_job *job, enum api_method method, uint32_t id)
{
	struct api_cmd *c = xcalloc(1, sizeof(*c));

	if (job->ncmds == job->capcmds) {
		job->capcmds = job->capcmds ? job->capcmds * 2 : 4;
		job->cmds = xrealloc(job->cmds, job->capcmds * sizeof(*job->cmds));
	}
	job->cmds[job->ncmds++] = c;
	c->job = job;
	c->method = method;
	c->id = id;
	c->first = job->npubs;
	buf_init(&c->result);
	return c;
}

static void
api_job_free(struct api_job *job)
{
	for (size_t i = 0; i < job->npubs; i++)
		free(job->pubs[i]);
	for (size_t i = 0; i < job->ncmds; i++) {
		buf_free(&job->cmds[i]->result);
		free(job->cmds[i]->pattern);
		free(job->cmds[i]);
	}
	free(job->cmds);
	free(job->pubs);
	free(job);
}

static void
api_put_error(struct buf *b, uint32_t code)
{
	buf_printf(b, "{\"code\":%u,\"message\":", code);
	json_put_string(b, api_error_message(code), strlen(api_error_message(code)));
	buf_putc(b, '}');
}

/* The result object of one publication. */
static void
api_put_pub_result(struct buf *b, const struct api_pub *p)
{
	buf_putc(b, '{');
	if (p->offset) {
		buf_puts(b, "\"offset\":");
		buf_put_u64(b, p->offset);
		buf_puts(b, ",\"epoch\":");
		json_put_string(b, p->epoch, strlen(p->epoch));
	}
	buf_putc(b, '}');
}

/* Writes `"error":{...}` or `"<key>":{result}` of one command. */
static void
api_put_cmd(struct buf *b, const struct api_job *job, const struct api_cmd *c, const char *key)
{
	uint32_t err = c->err;

	if (err == 0 && c->method == API_PUBLISH)
		err = job->pubs[c->first]->err;
	if (err) {
		buf_puts(b, "\"error\":");
		api_put_error(b, err);
		return;
	}
	buf_printf(b, "\"%s\":", key);
	switch (c->method) {
	case API_PUBLISH:
		api_put_pub_result(b, job->pubs[c->first]);
		break;
	case API_BROADCAST:
		buf_puts(b, "{\"responses\":[");
		for (size_t i = 0; i < c->npubs; i++) {
			const struct api_pub *p = job->pubs[c->first + i];
			if (i)
				buf_putc(b, ',');
			if (p->err) {
				buf_puts(b, "{\"error\":");
				api_put_error(b, p->err);
				buf_putc(b, '}');
			} else {
				buf_puts(b, "{\"result\":");
				api_put_pub_result(b, p);
				buf_putc(b, '}');
			}
		}
		buf_puts(b, "]}");
		break;
	default:
		if (c->result.len)
			buf_append(b, c->result.data, c->result.len);
		else
			buf_puts(b, "{}");
		break;
	}
}

static void
api_job_finish(struct api_job *job)
{
	struct buf b = BUF_INIT;
	int status = 200;

	switch (job->mode) {
	case API_MODE_LEGACY:
		for (size_t i = 0; i < job->ncmds; i++) {
			if (i)
				buf_putc(&b, '\n');
			buf_putc(&b, '{');
			if (job->cmds[i]->id)
				buf_printf(&b, "\"id\":%u,", job->cmds[i]->id);
			api_put_cmd(&b, job, job->cmds[i], "result");
			buf_putc(&b, '}');
		}
		break;
	case API_MODE_BATCH:
		buf_puts(&b, "{\"replies\":[");
		for (size_t i = 0; i < job->ncmds; i++) {
			const struct api_cmd *c = job->cmds[i];
			if (i)
				buf_putc(&b, ',');
			buf_putc(&b, '{');
			api_put_cmd(&b, job, c, c->method < API_METHOD_COUNT ?
			    api_method_names[c->method] : "result");
			buf_putc(&b, '}');
		}
		buf_puts(&b, "]}");
		break;
	case API_MODE_METHOD: {
		const struct api_cmd *c = job->cmds[0];
		uint32_t err = c->err ? c->err :
		    c->method == API_PUBLISH ? job->pubs[c->first]->err : 0;
		if (err && job->transport_errors) {
			status = api_error_status(err);
			api_put_error(&b, err);
		} else {
			buf_putc(&b, '{');
			api_put_cmd(&b, job, c, "result");
			buf_putc(&b, '}');
		}
		break;
	}
	}
	if (job->done != NULL) {
		/* A GRPC call: not observed under the HTTP API's label. */
		job->done(job->done_arg, b.data ? b.data : "{}", b.len ? b.len : 2);
	} else {
		loop_http_respond(job->req, status, API_CONTENT_TYPE, b.data ? b.data : "", b.len);
		/* One observation per command, labelled with its method, as
		 * Centrifugo does (a batch is its commands; unknown methods are
		 * not observed).  Commands of one request are answered
		 * together, so each one's duration is the request's. */
		for (size_t i = 0; i < job->ncmds; i++)
			if (job->cmds[i]->method < API_BATCH)
				metrics_api_done(job->cmds[i]->method, job->started_us);
	}
	buf_free(&b);
	api_job_free(job);
}

static void
api_job_done_one(struct api_job *job)
{
	if (--job->pending == 0)
		api_job_finish(job);
}

static void
api_pub_done(void *arg, const struct msg *reply)
{
	struct api_pub *p = arg;

	if (reply == NULL) {
		p->err = API_ERR_INTERNAL;
	} else if (reply->error) {
		p->err = reply->error;
	} else {
		p->offset = reply->offset;
		if (reply->epoch.len < sizeof(p->epoch)) {
			memcpy(p->epoch, reply->epoch.p, reply->epoch.len);
			p->epoch[reply->epoch.len] = '\0';
		}
	}
	api_job_done_one(p->job);
}

/* Sends a request for cmd to the broker; fn fills cmd when it answers. */
static void
api_cmd_request(struct api_cmd *cmd, struct msg *m, worker_reply_fn fn)
{
	cmd->job->pending++;
	worker_request(m, fn, cmd);
}

/* Finishes now a job that waits for no broker reply; the others finish
 * when the last reply comes back. */
static void
api_job_send(struct api_job *job)
{
	if (job->pending == 0)
		api_job_finish(job);
}

/* ------------------------------------------------------------------ */
/* Requests                                                            */

/* The common fields of publish and broadcast. */
struct api_publish_req {
	struct json_val data;         /* JSON_NONE when absent */
	struct buf b64;               /* decoded b64data */
	int has_b64;
	int skip_history;
	struct msg_str tags[2 * MSG_MAX_TAGS];
	uint32_t ntags;
	struct buf strings;           /* unescaped tag strings */
	struct buf idem;              /* idempotency_key */
	size_t tag_off[2 * MSG_MAX_TAGS], tag_len[2 * MSG_MAX_TAGS];
};

static void
api_publish_req_free(struct api_publish_req *p)
{
	buf_free(&p->b64);
	buf_free(&p->strings);
	buf_free(&p->idem);
}

/* Unescapes a JSON string span into a fresh NUL-terminated string. */
static char *
api_string(const struct json_val *v)
{
	struct buf b = BUF_INIT;

	if (json_unescape(v->p, v->len, &b) != 0) {
		buf_free(&b);
		return NULL;
	}
	return buf_steal(&b, NULL);
}

/*
 * Reads the shared publish fields from one member (key k, value v);
 * returns 1 if it was one of them, 0 if not, -1 if its value is of the
 * wrong type (the whole body does not decode: 400, like Go's decoder).
 */
static int
api_publish_field(struct api_publish_req *p, const struct json_val *k, const struct json_val *v)
{
	if (json_str_eq(k, "data")) {
		p->data = *v;
		return 1;
	}
	if (json_str_eq(k, "b64data")) {
		char *s;
		if (v->type != JSON_STRING || (s = api_string(v)) == NULL)
			return -1;
		buf_reset(&p->b64);
		p->has_b64 = s[0] != '\0';
		if (p->has_b64 && b64_decode_std(s, strlen(s), &p->b64) != 0)
			p->has_b64 = -1;        /* bad base64: error 107 later */
		free(s);
		return 1;
	}
	if (json_str_eq(k, "skip_history")) {
		bool b;
		if (json_get_bool(v, &b) != 0)
			return -1;
		p->skip_history = b;
		return 1;
	}
	if (json_str_eq(k, "tags")) {
		struct json_iter it;
		struct json_val tk, tv;
		int rc;
		if (v->type != JSON_OBJECT || json_iter_init(&it, v->p, v->len) != 0)
			return -1;
		p->ntags = 0;
		buf_reset(&p->strings);
		while ((rc = json_iter_next(&it, &tk, &tv)) == 1) {
			if (tv.type == JSON_NULL)
				continue;
			if (tv.type != JSON_STRING)
				return -1;
			if (p->ntags == MSG_MAX_TAGS)
				return -1;
			p->tag_off[2 * p->ntags] = p->strings.len;
			json_unescape(tk.p, tk.len, &p->strings);
			p->tag_len[2 * p->ntags] = p->strings.len - p->tag_off[2 * p->ntags];
			p->tag_off[2 * p->ntags + 1] = p->strings.len;
			json_unescape(tv.p, tv.len, &p->strings);
			p->tag_len[2 * p->ntags + 1] = p->strings.len - p->tag_off[2 * p->ntags + 1];
			p->ntags++;
		}
		return rc < 0 ? -1 : 1;
	}
	if (json_str_eq(k, "idempotency_key")) {
		buf_reset(&p->idem);
		if (v->type != JSON_STRING || json_unescape(v->p, v->len, &p->idem) != 0)
			return -1;
		return 1;
	}
	/* delta, version, version_epoch: accepted, not applied (README). */
	return 0;
}

/* The payload bytes of a publish request, or an error code. */
static uint32_t
api_payload(const struct api_publish_req *p, const struct chan_opts *o, struct msg_str *out)
{
	if (p->has_b64 < 0)
		return API_ERR_BAD_REQUEST;
	if (p->has_b64) {
		*out = (struct msg_str){ p->b64.data, (uint32_t)p->b64.len };
	} else if (p->data.type != JSON_NONE && p->data.type != JSON_NULL) {
		*out = (struct msg_str){ p->data.p, (uint32_t)p->data.len };
	} else {
		*out = (struct msg_str){ "", 0 };
	}
	return codec_data_ok(o, out->p, out->len) ? 0 : API_ERR_BAD_REQUEST;
}

/* Adds (and sends) one publication of job; errors found here are final. */
static void
api_job_publish(struct api_job *job, const char *channel, size_t len,
    const struct api_publish_req *p)
{
	struct api_pub *pub;
	const struct chan_opts *o;
	struct msg m;
	int unknown = 0;

	if (job->npubs == job->cappubs) {
		job->cappubs = job->cappubs ? job->cappubs * 2 : 4;
		job->pubs = xrealloc(job->pubs, job->cappubs * sizeof(*job->pubs));
	}
	pub = job->pubs[job->npubs++] = xcalloc(1, sizeof(*pub));
	pub->job = job;
	if (len == 0) {
		pub->err = API_ERR_BAD_REQUEST;
		return;
	}
	o = config_chan_opts(api_cfg, channel, len, &unknown);
	if (o == NULL) {
		pub->err = API_ERR_UNKNOWN_CHANNEL;
		return;
	}
	memset(&m, 0, sizeof(m));
	m.type = MSG_PUBLISH;
	if ((pub->err = api_payload(p, o, &m.data)) != 0)
		return;
	if (p->has_b64 && json_validate(m.data.p, m.data.len, NULL) != 0)
		m.flags |= MSG_F_BINARY;
	m.channel = (struct msg_str){ channel, (uint32_t)len };
	m.ntags = p->ntags;
	for (uint32_t i = 0; i < 2 * p->ntags; i++)
		m.tags[i] = (struct msg_str){ p->strings.data + p->tag_off[i], (uint32_t)p->tag_len[i] };
	m.history_size = p->skip_history ? 0 : o->history_size;
	m.history_ttl_ms = p->skip_history ? 0 : o->history_ttl;
	m.history_meta_ttl_ms = o->history_meta_ttl;
	m.offset = 0;
	/* A PUBLISH request carries its idempotency key where the epoch goes. */
	m.epoch = (struct msg_str){ p->idem.data, (uint32_t)p->idem.len };
	job->pending++;
	worker_request(&m, api_pub_done, pub);
}

/* ------------------------------------------------------------------ */
/* Fields                                                              */

/*
 * Collects the members named in names[0..n) of a params object into
 * out[] (JSON_NONE when absent or null; the last one wins).  Unknown
 * members are ignored.  Returns 0, or -1 if obj is not an object.
 */
static int
api_fields(const struct json_val *obj, const char *const *names, struct json_val *out, size_t n)
{
	struct json_iter it;
	struct json_val k, v;
	int rc;

	for (size_t i = 0; i < n; i++)
		out[i] = (struct json_val){ NULL, 0, JSON_NONE };
	if (obj->type != JSON_OBJECT || json_iter_init(&it, obj->p, obj->len) != 0)
		return -1;
	while ((rc = json_iter_next(&it, &k, &v)) == 1) {
		for (size_t i = 0; i < n; i++)
			if (json_str_eq(&k, names[i]))
				out[i] = v.type == JSON_NULL ? (struct json_val){ NULL, 0, JSON_NONE } : v;
	}
	return rc < 0 ? -1 : 0;
}

/* A string field into buf b (NUL-terminated, "" when absent); -1 if the
 * field is not a string. */
static int
api_str(const struct json_val *v, struct buf *b)
{
	buf_reset(b);
	if (v->type == JSON_NONE) {
		buf_cstr(b);
		return 0;
	}
	if (v->type != JSON_STRING || json_unescape(v->p, v->len, b) != 0)
		return -1;
	buf_cstr(b);
	return 0;
}

static int
api_i64(const struct json_val *v, int64_t *out)
{
	*out = 0;
	return v->type == JSON_NONE ? 0 : json_get_i64(v, out);
}

static int
api_bool(const struct json_val *v, int *out)
{
	bool b = false;

	*out = 0;
	if (v->type == JSON_NONE)
		return 0;
	if (json_get_bool(v, &b) != 0)
		return -1;
	*out = b;
	return 0;
}

/* Raw JSON of `raw`, or the decoded base64 of `b64` when that is set;
 * into b.  -1 on a type error, -2 on bad base64. */
static int
api_bytes(const struct json_val *raw, const struct json_val *b64, struct buf *b)
{
	struct buf s = BUF_INIT;
	int rc = 0;

	buf_reset(b);
	if (api_str(b64, &s) != 0) {
		buf_free(&s);
		return -1;
	}
	if (s.len) {
		if (b64_decode_std(s.data, s.len, b) != 0)
			rc = -2;
	} else if (raw->type != JSON_NONE) {
		buf_append(b, raw->p, raw->len);
	}
	buf_free(&s);
	return rc;
}

/* Resolves a channel for cmd; sets cmd->err and returns NULL when it is
 * empty (107) or its namespace unknown (102). */
static const struct chan_opts *
api_channel(struct api_cmd *cmd, const struct buf *channel)
{
	const struct chan_opts *o;
	int unknown = 0;

	if (channel->len == 0) {
		cmd->err = API_ERR_BAD_REQUEST;
		return NULL;
	}
	if ((o = config_chan_opts(api_cfg, channel->data, channel->len, &unknown)) == NULL)
		cmd->err = API_ERR_UNKNOWN_CHANNEL;
	return o;
}

/* ------------------------------------------------------------------ */
/* Methods                                                             */

/* Parses one publish or broadcast params object into cmd; -1 when a
 * field has the wrong type. */
static int
api_parse_publish(struct api_cmd *cmd, const struct json_val *params)
{
	struct api_publish_req p;
	struct json_iter it;
	struct json_val k, v, channel = { NULL, 0, JSON_NONE }, channels = { NULL, 0, JSON_NONE };
	int rc, broadcast = cmd->method == API_BROADCAST;
	struct api_job *job = cmd->job;

	memset(&p, 0, sizeof(p));
	if (params->type != JSON_OBJECT || json_iter_init(&it, params->p, params->len) != 0)
		return -1;
	while ((rc = json_iter_next(&it, &k, &v)) == 1) {
		if (v.type == JSON_NULL)
			continue;
		if (json_str_eq(&k, "channel"))
			channel = v;
		else if (json_str_eq(&k, "channels"))
			channels = v;
		else if (api_publish_field(&p, &k, &v) < 0)
			rc = -1;
		if (rc < 0)
			break;
	}
	if (rc < 0 || (channel.type != JSON_NONE && channel.type != JSON_STRING) ||
	    (channels.type != JSON_NONE && channels.type != JSON_ARRAY)) {
		api_publish_req_free(&p);
		return -1;
	}
	if (!broadcast) {
		char *name = channel.type == JSON_STRING ? api_string(&channel) : xstrdup("");
		cmd->npubs = 1;
		api_job_publish(job, name, strlen(name), &p);
		free(name);
	} else {
		struct json_iter ci;
		struct json_val cv;
		size_t n = 0;
		if (channels.type == JSON_ARRAY && json_iter_init(&ci, channels.p, channels.len) == 0) {
			while ((rc = json_iter_next(&ci, NULL, &cv)) == 1) {
				char *name = cv.type == JSON_STRING ? api_string(&cv) : NULL;
				if (name == NULL)
					name = xstrdup("");
				api_job_publish(job, name, strlen(name), &p);
				free(name);
				n++;
			}
		}
		cmd->npubs = n;
		if (n == 0)
			cmd->err = API_ERR_BAD_REQUEST;
	}
	api_publish_req_free(&p);
	return 0;
}

/*
 * SubscribeOptionOverride: each member is {"value": bool}.  Packed two bits
 * per option in the order of MSG_OVR_* (0 unset, 1 false, 2 true).  A
 * member of another shape does not decode (-1), as with Centrifugo.
 */
static int
api_override(const struct json_val *v, int32_t *out)
{
	static const char *const names[MSG_OVR_COUNT] = {
		"presence", "join_leave", "force_push_join_leave", "force_recovery",
		"force_positioning",
	};
	struct json_val f[MSG_OVR_COUNT];

	*out = 0;
	if (v->type == JSON_NONE)
		return 0;
	if (api_fields(v, names, f, MSG_OVR_COUNT) != 0)
		return -1;
	for (int i = 0; i < MSG_OVR_COUNT; i++) {
		static const char *const vn[] = { "value" };
		struct json_val val;
		int b;
		if (f[i].type == JSON_NONE)
			continue;
		if (f[i].type != JSON_OBJECT || api_fields(&f[i], vn, &val, 1) != 0 ||
		    api_bool(&val, &b) != 0)
			return -1;
		*out |= (b ? 2 : 1) << (2 * i);
	}
	return 0;
}

/* subscribe, unsubscribe, disconnect, refresh: a command for the user's
 * sessions on every worker, forwarded by the broker. */
static int
api_parse_control(struct api_cmd *cmd, const struct json_val *params)
{
	static const char *const names[] = {
		"user", "channel", "client", "info", "b64info", "data", "b64data",
		"expire_at", "recover_since", "whitelist", "disconnect", "expired", "override",
	};
	enum { F_USER, F_CHANNEL, F_CLIENT, F_INFO, F_B64INFO, F_DATA, F_B64DATA,
	       F_EXPIRE_AT, F_RECOVER, F_WHITELIST, F_DISCONNECT, F_EXPIRED, F_OVERRIDE, F_N };
	struct json_val f[F_N];
	struct buf user = BUF_INIT, channel = BUF_INIT, client = BUF_INIT, info = BUF_INIT,
	    data = BUF_INIT, reason = BUF_INIT, epoch = BUF_INIT, white = BUF_INIT;
	struct msg_str *items = NULL;
	struct msg m;
	int64_t expire_at = 0;
	int expired = 0, rc = -1, rc_info, rc_data;
	size_t nwhite = 0;

	memset(&m, 0, sizeof(m));
	if (api_fields(params, names, f, F_N) != 0 || api_str(&f[F_USER], &user) ||
	    api_str(&f[F_CHANNEL], &channel) || api_str(&f[F_CLIENT], &client) ||
	    api_i64(&f[F_EXPIRE_AT], &expire_at) || api_bool(&f[F_EXPIRED], &expired))
		goto out;
	rc_info = api_bytes(&f[F_INFO], &f[F_B64INFO], &info);
	rc_data = api_bytes(&f[F_DATA], &f[F_B64DATA], &data);
	if (rc_info == -1 || rc_data == -1)
		goto out;
	rc = 0;
	if (rc_info == -2 || rc_data == -2) {
		cmd->err = API_ERR_BAD_REQUEST;      /* bad base64 */
		goto out;
	}
	m.type = MSG_CONTROL;
	switch (cmd->method) {
	case API_SUBSCRIBE:
		m.flags = MSG_CTL_SUBSCRIBE;
		if (api_channel(cmd, &channel) == NULL)
			goto out;
		if (f[F_RECOVER].type == JSON_OBJECT) {
			static const char *const rn[] = { "offset", "epoch" };
			struct json_val r[2];
			if (api_fields(&f[F_RECOVER], rn, r, 2) != 0 ||
			    (r[0].type != JSON_NONE && json_get_u64(&r[0], &m.offset) != 0) ||
			    api_str(&r[1], &epoch) != 0) {
				rc = -1;
				goto out;
			}
			m.flags |= MSG_F_RECOVER;
			m.epoch = (struct msg_str){ epoch.data, (uint32_t)epoch.len };
		}
		if (api_override(&f[F_OVERRIDE], &m.limit) != 0) {
			rc = -1;
			goto out;
		}
		m.chan_info = (struct msg_str){ info.data, (uint32_t)info.len };
		m.data = (struct msg_str){ data.data, (uint32_t)data.len };
		m.since = expire_at > 0 ? (uint64_t)expire_at : 0;
		break;
	case API_UNSUBSCRIBE:
		m.flags = MSG_CTL_UNSUBSCRIBE;
		if (api_channel(cmd, &channel) == NULL)
			goto out;
		break;
	case API_DISCONNECT: {
		struct json_iter it;
		struct json_val v;
		m.flags = MSG_CTL_DISCONNECT;
		m.error = PROTO_DISCONNECT_FORCE_NO_RECONNECT;
		buf_puts(&reason, proto_disconnect_reason(m.error));
		if (f[F_DISCONNECT].type == JSON_OBJECT) {
			static const char *const dn[] = { "code", "reason" };
			struct json_val d[2];
			uint32_t code = 0;
			if (api_fields(&f[F_DISCONNECT], dn, d, 2) != 0 ||
			    (d[0].type != JSON_NONE && json_get_u32(&d[0], &code) != 0) ||
			    api_str(&d[1], &reason) != 0) {
				rc = -1;
				goto out;
			}
			if (code)
				m.error = code;
		} else if (f[F_DISCONNECT].type != JSON_NONE) {
			rc = -1;
			goto out;
		}
		m.data = (struct msg_str){ reason.data, (uint32_t)reason.len };
		if (f[F_WHITELIST].type == JSON_ARRAY &&
		    json_iter_init(&it, f[F_WHITELIST].p, f[F_WHITELIST].len) == 0) {
			size_t cap = 0;
			while (json_iter_next(&it, NULL, &v) == 1) {
				size_t off = white.len;
				if (v.type != JSON_STRING || json_unescape(v.p, v.len, &white) != 0)
					continue;
				if (nwhite == cap) {
					cap = cap ? cap * 2 : 8;
					items = xrealloc(items, cap * sizeof(*items));
				}
				/* offsets for now; pointers once white stops growing */
				items[nwhite++] = (struct msg_str){ (const char *)(uintptr_t)off,
				    (uint32_t)(white.len - off) };
			}
			for (size_t i = 0; i < nwhite; i++)
				items[i].p = white.data + (uintptr_t)items[i].p;
		}
		m.items = items;
		m.nitems = (uint32_t)nwhite;
		break;
	}
	case API_REFRESH:
		m.flags = MSG_CTL_REFRESH | (expired ? MSG_CTL_EXPIRED : 0) |
		    (f[F_INFO].type != JSON_NONE ? MSG_CTL_HAS_INFO : 0);
		m.conn_info = (struct msg_str){ info.data, (uint32_t)info.len };
		m.since = expire_at > 0 ? (uint64_t)expire_at : 0;
		break;
	default:
		break;
	}
	m.has_info = 1;
	m.user = (struct msg_str){ user.data, (uint32_t)user.len };
	m.client = (struct msg_str){ client.data, (uint32_t)client.len };
	m.channel = (struct msg_str){ channel.data, (uint32_t)channel.len };
	worker_send(&m);
out:
	free(items);
	buf_free(&user);
	buf_free(&channel);
	buf_free(&client);
	buf_free(&info);
	buf_free(&data);
	buf_free(&reason);
	buf_free(&epoch);
	buf_free(&white);
	return rc;
}

static void
api_presence_done(void *arg, const struct msg *res)
{
	struct api_cmd *cmd = arg;
	struct buf *b = &cmd->result;

	if (res == NULL || res->error) {
		cmd->err = res ? res->error : API_ERR_INTERNAL;
	} else if (cmd->method == API_PRESENCE_STATS) {
		buf_printf(b, "{\"num_clients\":%u,\"num_users\":%u}", res->num_clients, res->num_users);
	} else {
		size_t pos = 0;
		struct proto_client_info ci;
		int first = 1;
		buf_puts(b, "{\"presence\":{");
		while (codec_presence_next(res, &pos, &ci)) {
			if (!first)
				buf_putc(b, ',');
			first = 0;
			json_put_string(b, ci.client.p, ci.client.len);
			buf_putc(b, ':');
			proto_json_client_info(b, &ci);
		}
		buf_puts(b, "}}");
	}
	api_job_done_one(cmd->job);
}

static void
api_history_done(void *arg, const struct msg *res)
{
	struct api_cmd *cmd = arg;
	struct buf *b = &cmd->result;
	size_t pos = 0;
	struct msg_str item;
	int first = 1;

	if (res == NULL || res->error) {
		cmd->err = res ? res->error : API_ERR_INTERNAL;
		api_job_done_one(cmd->job);
		return;
	}
	if (cmd->method == API_HISTORY_REMOVE) {
		api_job_done_one(cmd->job);
		return;
	}
	buf_puts(b, "{\"publications\":[");
	while (msg_item_next(res, &pos, &item) == 1) {
		struct msg p;
		struct proto_publication pub;
		struct proto_tag tags[MSG_MAX_TAGS];
		if (msg_decode(item.p, item.len, &p) != 0)
			continue;
		codec_publication(&p, &pub, tags);
		pub.epoch = PROTO_SPAN_NULL;    /* the API's Publication has none */
		if (!first)
			buf_putc(b, ',');
		first = 0;
		if (cmd->job->done != NULL && (p.flags & MSG_F_BINARY)) {
			/* api_call() (GRPC: bytes): bytes that are not JSON go
			 * as "b64data", spliced in before the closing brace. */
			pub.data = PROTO_SPAN_NULL;
			proto_json_publication(b, &pub);
			b->len--;
			if (b->data[b->len - 1] != '{')
				buf_putc(b, ',');
			buf_puts(b, "\"b64data\":\"");
			b64_encode(p.data.p, p.data.len, 0, b);
			buf_puts(b, "\"}");
		} else {
			proto_json_publication(b, &pub);
		}
	}
	buf_puts(b, "],\"offset\":");
	buf_put_u64(b, res->offset);
	buf_puts(b, ",\"epoch\":");
	json_put_string(b, res->epoch.p ? res->epoch.p : "", res->epoch.len);
	buf_putc(b, '}');
	api_job_done_one(cmd->job);
}

/* presence, presence_stats, history, history_remove */
static int
api_parse_query(struct api_cmd *cmd, const struct json_val *params)
{
	static const char *const names[] = { "channel", "limit", "since", "reverse" };
	struct json_val f[4];
	struct buf channel = BUF_INIT, epoch = BUF_INIT;
	const struct chan_opts *o;
	struct msg m;
	int64_t limit = 0;
	int reverse = 0, rc = -1;

	memset(&m, 0, sizeof(m));
	if (api_fields(params, names, f, 4) != 0 || api_str(&f[0], &channel) ||
	    api_i64(&f[1], &limit) || api_bool(&f[3], &reverse))
		goto out;
	if (f[2].type == JSON_OBJECT) {
		static const char *const sn[] = { "offset", "epoch" };
		struct json_val sf[2];
		if (api_fields(&f[2], sn, sf, 2) != 0 ||
		    (sf[0].type != JSON_NONE && json_get_u64(&sf[0], &m.since) != 0) ||
		    api_str(&sf[1], &epoch) != 0)
			goto out;
		m.flags |= MSG_F_SINCE;
		m.epoch = (struct msg_str){ epoch.data, (uint32_t)epoch.len };
	} else if (f[2].type != JSON_NONE) {
		goto out;
	}
	rc = 0;
	if ((o = api_channel(cmd, &channel)) == NULL)
		goto out;
	m.channel = (struct msg_str){ channel.data, (uint32_t)channel.len };
	switch (cmd->method) {
	case API_PRESENCE:
	case API_PRESENCE_STATS:
		if (!o->presence) {
			cmd->err = API_ERR_NOT_AVAILABLE;
			goto out;
		}
		m.type = MSG_PRESENCE;
		m.flags = cmd->method == API_PRESENCE_STATS ? MSG_F_STATS : 0;
		api_cmd_request(cmd, &m, api_presence_done);
		break;
	case API_HISTORY:
	case API_HISTORY_REMOVE:
		if (o->history_size <= 0 || o->history_ttl <= 0) {
			cmd->err = API_ERR_NOT_AVAILABLE;
			goto out;
		}
		if (cmd->method == API_HISTORY && reverse && (m.flags & MSG_F_SINCE) && m.since == 0) {
			cmd->err = API_ERR_BAD_REQUEST;
			goto out;
		}
		m.type = cmd->method == API_HISTORY ? MSG_HISTORY : MSG_HISTORY_REMOVE;
		m.flags |= reverse ? MSG_F_REVERSE : 0;
		m.limit = limit < INT32_MIN ? -1 : limit > INT32_MAX ? INT32_MAX : (int32_t)limit;
		m.history_size = o->history_size;
		m.history_ttl_ms = o->history_ttl;
		m.history_meta_ttl_ms = o->history_meta_ttl;
		api_cmd_request(cmd, &m, api_history_done);
		break;
	default:
		break;
	}
out:
	buf_free(&channel);
	buf_free(&epoch);
	return rc;
}

static void
api_channels_done(void *arg, const struct msg *res)
{
	struct api_cmd *cmd = arg;
	struct buf *b = &cmd->result;
	size_t pos = 0;
	struct msg_str name, count;
	int first = 1;

	if (res == NULL) {
		cmd->err = API_ERR_INTERNAL;
		api_job_done_one(cmd->job);
		return;
	}
	buf_puts(b, "{\"channels\":{");
	while (msg_item_next(res, &pos, &name) == 1 && msg_item_next(res, &pos, &count) == 1) {
		if (cmd->pattern == NULL || glob_match(cmd->pattern, name.p, name.len)) {
			if (!first)
				buf_putc(b, ',');
			first = 0;
			json_put_string(b, name.p, name.len);
			buf_puts(b, ":{\"num_clients\":");
			buf_append(b, count.p, count.len);
			buf_putc(b, '}');
		}
	}
	buf_puts(b, "}}");
	api_job_done_one(cmd->job);
}

static void
api_info_done(void *arg, const struct msg *res)
{
	struct api_cmd *cmd = arg;
	struct buf *b = &cmd->result;
	char name[300];
	const char *uid;
	uint64_t up;
	size_t pos = 0;
	struct msg_str peer;

	if (res == NULL) {
		cmd->err = API_ERR_INTERNAL;
		api_job_done_one(cmd->job);
		return;
	}
	uid = node_uid(NULL);
	up = node_uptime();
	node_name(api_cfg, name, sizeof(name));
	buf_puts(b, "{\"nodes\":[{\"uid\":");
	json_put_string(b, uid, strlen(uid));
	buf_puts(b, ",\"name\":");
	json_put_string(b, name, strlen(name));
	buf_puts(b, ",\"version\":\"" CENTRIFUGO_COMPAT_VERSION " OSS\"");
	buf_printf(b, ",\"num_clients\":%u,\"num_users\":%u,\"num_channels\":%llu,\"num_subs\":%llu",
	    res->num_clients, res->num_users, (unsigned long long)res->offset,
	    (unsigned long long)res->since);
	if (up)
		buf_printf(b, ",\"uptime\":%llu", (unsigned long long)up);
	buf_puts(b, ",\"server\":{\"name\":\"" PACKAGE_NAME "\",\"version\":\"" PACKAGE_VERSION "\"}");
	buf_puts(b, ",\"processes\":");
	metrics_processes_json(b);
	buf_putc(b, '}');
	/* The other nodes of the cluster, as they announced themselves. */
	while (msg_item_next(res, &pos, &peer) == 1) {
		buf_putc(b, ',');
		buf_append(b, peer.p, peer.len);
	}
	buf_puts(b, "]}");
	api_job_done_one(cmd->job);
}

static int
api_parse_misc(struct api_cmd *cmd, const struct json_val *params)
{
	struct msg m;

	memset(&m, 0, sizeof(m));
	switch (cmd->method) {
	case API_CHANNELS: {
		static const char *const names[] = { "pattern" };
		struct json_val f[1];
		struct buf pattern = BUF_INIT;
		if (params->type == JSON_OBJECT &&
		    (api_fields(params, names, f, 1) != 0 || api_str(&f[0], &pattern) != 0)) {
			buf_free(&pattern);
			return -1;
		}
		if (pattern.len && !glob_valid(pattern.data)) {
			/* Upstream's nodes answer an error for a bad pattern. */
			cmd->err = API_ERR_INTERNAL;
			buf_free(&pattern);
			return 0;
		}
		if (pattern.len)
			cmd->pattern = buf_steal(&pattern, NULL);
		buf_free(&pattern);
		m.type = MSG_CHANNELS;
		api_cmd_request(cmd, &m, api_channels_done);
		return 0;
	}
	case API_INFO:
		m.type = MSG_STATS;
		api_cmd_request(cmd, &m, api_info_done);
		return 0;
	case API_RPC: {
		static const char *const names[] = { "method" };
		struct json_val f[1];
		struct buf method = BUF_INIT;
		int rc = api_fields(params, names, f, 1) != 0 || api_str(&f[0], &method) != 0 ? -1 : 0;
		/* No server-side RPC extension is registered (as in OSS). */
		cmd->err = method.len ? API_ERR_NOT_FOUND : API_ERR_BAD_REQUEST;
		buf_free(&method);
		return rc;
	}
	default:
		cmd->err = API_ERR_NOT_FOUND;
		return 0;
	}
}

/* Parses and starts one command of method with params; -1 when the
 * params don't decode (a field of the wrong type). */
static int
api_run(struct api_cmd *cmd, const struct json_val *params)
{
	static const struct json_val empty = { "{}", 2, JSON_OBJECT };

	if (params == NULL || params->type == JSON_NONE || params->type == JSON_NULL)
		params = &empty;
	switch (cmd->method) {
	case API_PUBLISH:
	case API_BROADCAST:
		return api_parse_publish(cmd, params);
	case API_SUBSCRIBE:
	case API_UNSUBSCRIBE:
	case API_DISCONNECT:
	case API_REFRESH:
		return api_parse_control(cmd, params);
	case API_PRESENCE:
	case API_PRESENCE_STATS:
	case API_HISTORY:
	case API_HISTORY_REMOVE:
		return api_parse_query(cmd, params);
	default:
		return api_parse_misc(cmd, params);
	}
}

/* batch: {"commands":[{"<method>":{...}}...], "parallel": bool}.  The
 * commands reach the broker in order, so they also take effect in order;
 * `parallel` changes nothing for correctness and is accepted. */
static int
api_batch(struct api_job *job, const struct json_val *params)
{
	static const char *const names[] = { "commands" };
	struct json_val f[1], v;
	struct json_iter it;

	if (api_fields(params, names, f, 1) != 0 ||
	    (f[0].type != JSON_NONE && f[0].type != JSON_ARRAY))
		return -1;
	if (f[0].type == JSON_NONE)
		return 0;
	json_iter_init(&it, f[0].p, f[0].len);
	while (json_iter_next(&it, NULL, &v) == 1) {
		struct json_val sub[sizeof(api_batch_order) / sizeof(api_batch_order[0])];
		const char *keys[sizeof(api_batch_order) / sizeof(api_batch_order[0])];
		size_t n = sizeof(api_batch_order) / sizeof(api_batch_order[0]), i;
		struct api_cmd *cmd;

		if (v.type != JSON_OBJECT) {
			cmd = api_job_cmd(job, API_UNKNOWN, 0);
			cmd->err = API_ERR_BAD_REQUEST;
			continue;
		}
		for (i = 0; i < n; i++)
			keys[i] = api_method_names[api_batch_order[i]];
		api_fields(&v, keys, sub, n);
		for (i = 0; i < n && sub[i].type == JSON_NONE; i++)
			;
		if (i == n) {
			cmd = api_job_cmd(job, API_UNKNOWN, 0);
			cmd->err = API_ERR_NOT_FOUND;
			continue;
		}
		cmd = api_job_cmd(job, api_batch_order[i], 0);
		if (api_run(cmd, &sub[i]) != 0)
			cmd->err = API_ERR_BAD_REQUEST;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Authentication (§3)                                                 */

static int
api_key_eq(const char *given, size_t len)
{
	const char *key = api_cfg->http_api_key;
	size_t klen = strlen(key);

	return len == klen && CRYPTO_memcmp(given, key, klen) == 0;
}

static int
api_authorized(struct http_req *r)
{
	const char *h, *q;

	if (api_cfg->http_api_insecure)
		return 1;
	if (api_cfg->http_api_key[0] == '\0') {
		log_error("http_api.key is empty: every API request is refused (401)");
		return 0;
	}
	if ((h = loop_http_header(r, "x-api-key")) != NULL)
		return api_key_eq(h, strlen(h));
	if ((h = loop_http_header(r, "authorization")) != NULL) {
		const char *p = h, *w1, *w2;
		size_t l1, l2;
		while (isspace((unsigned char)*p))
			p++;
		w1 = p;
		while (*p && !isspace((unsigned char)*p))
			p++;
		l1 = (size_t)(p - w1);
		while (isspace((unsigned char)*p))
			p++;
		w2 = p;
		while (*p && !isspace((unsigned char)*p))
			p++;
		l2 = (size_t)(p - w2);
		while (isspace((unsigned char)*p))
			p++;
		if (*p == '\0' && l1 == 6 && strncasecmp(w1, "apikey", 6) == 0 && api_key_eq(w2, l2))
			return 1;
	}
	q = loop_http_query(r);
	for (const char *p = q; p && *p;) {
		const char *amp = strchr(p, '&');
		size_t n = amp ? (size_t)(amp - p) : strlen(p);
		if (n > 8 && strncmp(p, "api_key=", 8) == 0)
			return api_key_eq(p + 8, n - 8);
		p = amp ? amp + 1 : NULL;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Dispatch                                                            */

static struct api_job *
api_job_new(struct http_req *r, enum api_mode mode)
{
	struct api_job *job = xcalloc(1, sizeof(*job));
	const char *emode = loop_http_header(r, "x-centrifugo-error-mode");

	job->req = r;
	job->mode = mode;
	job->started_us = metrics_now_us();
	job->transport_errors = strcmp(api_cfg->http_api_error_mode, "transport") == 0 ||
	    (emode && strcasecmp(emode, "transport") == 0);
	return job;
}

static enum api_method
api_method_by_name(const char *name)
{
	for (int i = 0; i < API_METHOD_COUNT; i++)
		if (strcmp(name, api_method_names[i]) == 0)
			return (enum api_method)i;
	return API_UNKNOWN;
}

static void
api_method(struct http_req *r, const char *name)
{
	size_t len;
	const char *body = loop_http_body(r, &len);
	enum api_method method = api_method_by_name(name);
	struct json_val v;
	struct api_job *job;
	int rc;

	if (method == API_UNKNOWN) {
		api_plain(r, 404, "404 page not found\n");
		return;
	}
	if (json_parse(body, len, &v, NULL) != 0 || (v.type != JSON_OBJECT && v.type != JSON_NULL)) {
		api_plain(r, 400, "Bad Request\n");
		return;
	}
	if (v.type == JSON_NULL)
		v = (struct json_val){ "{}", 2, JSON_OBJECT };
	if (method == API_BATCH) {
		job = api_job_new(r, API_MODE_BATCH);
		rc = api_batch(job, &v);
	} else {
		job = api_job_new(r, API_MODE_METHOD);
		rc = api_run(api_job_cmd(job, method, 0), &v);
	}
	if (rc != 0 && job->pending == 0) {
		/* A field of the wrong type: the body does not decode (Go). */
		api_job_free(job);
		api_plain(r, 400, "Bad Request\n");
		return;
	}
	if (rc != 0)
		job->cmds[0]->err = API_ERR_BAD_REQUEST;
	api_job_send(job);
}

/*
 * Reads the next command object of a legacy body at *pos: its id, method
 * and params.  Returns 1, 0 at the end, -1 if the body does not decode.
 * An unknown method string does not decode; an unknown number (or a PRO
 * method) is API_UNKNOWN, answered 104.
 */
static int
api_legacy_next(const char *body, size_t len, size_t *pos, uint32_t *id,
    enum api_method *method, struct json_val *params)
{
	static const char *const names[] = { "id", "method", "params" };
	struct json_val obj, f[3];

	while (*pos < len && isspace((unsigned char)body[*pos]))
		(*pos)++;
	if (*pos == len)
		return 0;
	if (json_scan(body, len, pos, &obj, NULL) != 0 || api_fields(&obj, names, f, 3) != 0)
		return -1;
	*id = 0;
	if (f[0].type != JSON_NONE && json_get_u32(&f[0], id) != 0)
		return -1;
	*params = f[2];
	if (f[1].type == JSON_NONE) {
		*method = API_PUBLISH;      /* a missing method decodes as 0 */
	} else if (f[1].type == JSON_NUMBER) {
		uint32_t n;
		if (json_get_u32(&f[1], &n) != 0)
			return -1;
		*method = n < API_BATCH ? (enum api_method)n : API_UNKNOWN;
	} else if (f[1].type == JSON_STRING) {
		struct buf m = BUF_INIT;
		int i;
		if (api_str(&f[1], &m) != 0) {
			buf_free(&m);
			return -1;
		}
		for (i = 0; i < API_BATCH; i++)
			if (strcasecmp(m.data, api_method_names[i]) == 0)
				break;
		buf_free(&m);
		if (i == API_BATCH)
			return -1;          /* neither a name nor a number */
		*method = (enum api_method)i;
	} else {
		return -1;
	}
	return 1;
}

static void
api_legacy(struct http_req *r)
{
	size_t len, pos = 0;
	const char *body = loop_http_body(r, &len);
	struct api_job *job;
	struct json_val params;
	enum api_method method;
	uint32_t id;
	int rc;

	/* The whole body must decode before anything runs. */
	while ((rc = api_legacy_next(body, len, &pos, &id, &method, &params)) == 1)
		;
	if (rc < 0 || len == 0 || pos == 0) {
		api_plain(r, 400, "Bad Request\n");
		return;
	}
	job = api_job_new(r, API_MODE_LEGACY);
	pos = 0;
	while (api_legacy_next(body, len, &pos, &id, &method, &params) == 1) {
		struct api_cmd *cmd = api_job_cmd(job, method, id);
		if (method == API_UNKNOWN)
			cmd->err = API_ERR_NOT_FOUND;
		else if (method != API_INFO && (params.type == JSON_NONE || params.type == JSON_NULL))
			cmd->err = API_ERR_BAD_REQUEST;   /* params required */
		else if (api_run(cmd, &params) != 0)
			cmd->err = API_ERR_BAD_REQUEST;
	}
	api_job_send(job);
}

int
api_call(const char *name, const char *params, size_t len, api_done_fn done, void *arg)
{
	enum api_method method = api_method_by_name(name);
	struct api_job *job;
	struct json_val v;
	int rc;

	if (method == API_UNKNOWN)
		return -1;
	job = xcalloc(1, sizeof(*job));
	job->done = done;
	job->done_arg = arg;
	job->started_us = metrics_now_us();
	job->mode = method == API_BATCH ? API_MODE_BATCH : API_MODE_METHOD;
	if (json_parse(params, len, &v, NULL) != 0 || v.type != JSON_OBJECT) {
		api_job_cmd(job, method, 0)->err = API_ERR_BAD_REQUEST;
	} else if (method == API_BATCH) {
		if (api_batch(job, &v) != 0)
			api_job_cmd(job, API_UNKNOWN, 0)->err = API_ERR_BAD_REQUEST;
	} else {
		rc = api_run(api_job_cmd(job, method, 0), &v);
		if (rc != 0)
			job->cmds[0]->err = API_ERR_BAD_REQUEST;
	}
	api_job_send(job);
	return 0;
}

/* /metrics, once the broker gave its node-wide counts. */
static void
api_metrics_done(void *arg, const struct msg *res)
{
	struct http_req *r = arg;
	struct buf b = BUF_INIT;

	metrics_write(&b, res ? res->num_users : 0, res ? res->offset : 0,
	    api_method_names, API_BATCH);
	loop_http_respond(r, 200, "text/plain; version=0.0.4; charset=utf-8",
	    b.data ? b.data : "", b.len);
	buf_free(&b);
}

void
api_handle(struct http_req *r, enum api_listener where)
{
	const char *path = loop_http_path(r);
	const char *method = loop_http_method(r);
	const char *prefix = api_cfg->http_api_handler_prefix;
	size_t plen = strlen(prefix);
	/* With a separate internal port the external one keeps only client
	 * transports (and the API when http_api.external is set). */
	int internal_ok = where != API_LISTENER_EXTERNAL;
	int api_ok = where == API_LISTENER_MAIN ||
	    (where == API_LISTENER_EXTERNAL) == (api_cfg->http_api_external != 0);

	if (!internal_ok && !api_ok) {
		api_plain(r, 404, "404 page not found\n");
		return;
	}
	if (internal_ok && strcmp(path, api_cfg->health_handler_prefix) == 0) {
		loop_http_respond(r, 200, API_CONTENT_TYPE, "{}", 2);
		return;
	}
	if (internal_ok && strcmp(path, api_cfg->prometheus_handler_prefix) == 0) {
		struct msg m;
		memset(&m, 0, sizeof(m));
		m.type = MSG_STATS;
		worker_request(&m, api_metrics_done, r);
		return;
	}
	if (!api_ok || api_cfg->http_api_disabled || strncmp(path, prefix, plen) != 0 ||
	    (path[plen] != '\0' && path[plen] != '/')) {
		api_plain(r, 404, "404 page not found\n");
		return;
	}
	if (strcmp(method, "POST") != 0) {
		api_plain(r, 405, NULL);
		return;
	}
	if (!api_authorized(r)) {
		api_plain(r, 401, NULL);
		return;
	}
	if (path[plen] == '\0' || strcmp(path + plen, "/") == 0)
		api_legacy(r);
	else
		api_method(r, path + plen + 1);
}
