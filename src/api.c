/*
 * api.c - the server HTTP API of a worker (server-api.md §1-§3, §5.1,
 * §5.2) and the health endpoint.
 *
 * A request becomes a job: its commands are parsed from the body, every
 * publication they ask for is sent to the broker at once, and the answer is
 * written when the last broker reply came back.  `data` is raw JSON taken
 * from the body byte for byte; it is never re-serialised.
 *
 * Runs in: worker processes.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "api.h"
#include "b64.h"
#include "buf.h"
#include "config.h"
#include "json.h"
#include "log.h"
#include "loop.h"
#include "msg.h"
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
/* Jobs                                                                */

enum api_cmd_kind {
	API_CMD_ERROR = 0,        /* answered with err, nothing to wait for */
	API_CMD_PUBLISH,
	API_CMD_BROADCAST
};

/* One publication into one channel, waiting for the broker. */
struct api_pub {
	struct api_job *job;
	uint32_t err;             /* 0, or an error code (also before sending) */
	uint64_t offset;
	char epoch[32];
};

struct api_cmd {
	uint32_t id;              /* legacy only; 0 = omitted */
	enum api_cmd_kind kind;
	uint32_t err;             /* API_CMD_ERROR */
	size_t first, npubs;      /* its publications in job->pubs */
};

struct api_job {
	struct http_req *req;
	int legacy;
	int transport_errors;     /* X-Centrifugo-Error-Mode: transport */
	struct api_cmd *cmds;
	size_t ncmds, capcmds;
	struct api_pub **pubs;    /* each allocated alone: callbacks hold them */
	size_t npubs, cappubs;
	size_t pending;           /* broker replies still to come */
};

static struct api_cmd *
api_job_cmd(struct api_job *job, enum api_cmd_kind kind, uint32_t id)
{
	struct api_cmd *c;

	if (job->ncmds == job->capcmds) {
		job->capcmds = job->capcmds ? job->capcmds * 2 : 4;
		job->cmds = xrealloc(job->cmds, job->capcmds * sizeof(*job->cmds));
	}
	c = &job->cmds[job->ncmds++];
	memset(c, 0, sizeof(*c));
	c->kind = kind;
	c->id = id;
	c->first = job->npubs;
	return c;
}

static void
api_job_free(struct api_job *job)
{
	for (size_t i = 0; i < job->npubs; i++)
		free(job->pubs[i]);
	free(job->cmds);
	free(job->pubs);
	free(job);
}

/* Writes `"result":{...}` or `"error":{...}` of one publication. */
static void
api_put_pub(struct buf *b, const struct api_pub *p)
{
	if (p->err) {
		buf_printf(b, "\"error\":{\"code\":%u,\"message\":", p->err);
		json_put_string(b, api_error_message(p->err), strlen(api_error_message(p->err)));
		buf_putc(b, '}');
		return;
	}
	buf_puts(b, "\"result\":{");
	if (p->offset) {
		buf_puts(b, "\"offset\":");
		buf_put_u64(b, p->offset);
		buf_puts(b, ",\"epoch\":");
		json_put_string(b, p->epoch, strlen(p->epoch));
	}
	buf_putc(b, '}');
}

/* Writes the members of one command's answer (no braces). */
static void
api_put_cmd(struct buf *b, const struct api_job *job, const struct api_cmd *c)
{
	struct api_pub err = { .err = c->err };

	switch (c->kind) {
	case API_CMD_ERROR:
		api_put_pub(b, &err);
		break;
	case API_CMD_PUBLISH:
		api_put_pub(b, job->pubs[c->first]);
		break;
	case API_CMD_BROADCAST:
		buf_puts(b, "\"result\":{\"responses\":[");
		for (size_t i = 0; i < c->npubs; i++) {
			if (i)
				buf_putc(b, ',');
			buf_putc(b, '{');
			api_put_pub(b, job->pubs[c->first + i]);
			buf_putc(b, '}');
		}
		buf_puts(b, "]}");
		break;
	}
}

static void
api_job_finish(struct api_job *job)
{
	struct buf b = BUF_INIT;
	int status = 200;

	if (job->legacy) {
		for (size_t i = 0; i < job->ncmds; i++) {
			if (i)
				buf_putc(&b, '\n');
			buf_putc(&b, '{');
			if (job->cmds[i].id)
				buf_printf(&b, "\"id\":%u,", job->cmds[i].id);
			api_put_cmd(&b, job, &job->cmds[i]);
			buf_putc(&b, '}');
		}
	} else {
		const struct api_cmd *c = &job->cmds[0];
		uint32_t err = c->kind == API_CMD_ERROR ? c->err :
		    c->kind == API_CMD_PUBLISH ? job->pubs[c->first]->err : 0;
		if (err && job->transport_errors) {
			status = api_error_status(err);
			buf_printf(&b, "{\"code\":%u,\"message\":", err);
			json_put_string(&b, api_error_message(err), strlen(api_error_message(err)));
			buf_putc(&b, '}');
		} else {
			buf_putc(&b, '{');
			api_put_cmd(&b, job, c);
			buf_putc(&b, '}');
		}
	}
	loop_http_respond(job->req, status, API_CONTENT_TYPE, b.data ? b.data : "", b.len);
	buf_free(&b);
	api_job_free(job);
}

static void
api_pub_done(void *arg, const struct msg *reply)
{
	struct api_pub *p = arg;
	struct api_job *job = p->job;

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
	if (--job->pending == 0)
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
	size_t tag_off[2 * MSG_MAX_TAGS], tag_len[2 * MSG_MAX_TAGS];
};

static void
api_publish_req_free(struct api_publish_req *p)
{
	buf_free(&p->b64);
	buf_free(&p->strings);
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
	/* idempotency_key, delta, version, version_epoch: accepted; their
	 * semantics arrive with the complete API. */
	return 0;
}

/* The payload bytes of a publish request, or an error code. */
static uint32_t
api_payload(const struct api_publish_req *p, const struct chan_opts *o, struct msg_str *out)
{
	const char *fmt = o->publication_data_format;

	if (p->has_b64 < 0)
		return API_ERR_BAD_REQUEST;
	if (p->has_b64) {
		*out = (struct msg_str){ p->b64.data, (uint32_t)p->b64.len };
	} else if (p->data.type != JSON_NONE && p->data.type != JSON_NULL) {
		*out = (struct msg_str){ p->data.p, (uint32_t)p->data.len };
	} else {
		*out = (struct msg_str){ "", 0 };
	}
	if (strcmp(fmt, "binary") == 0)
		return 0;
	if (out->len == 0)
		return API_ERR_BAD_REQUEST;
	if (strcmp(fmt, "json") == 0 && json_validate(out->p, out->len, NULL) != 0)
		return API_ERR_BAD_REQUEST;
	if (strcmp(fmt, "json_object") == 0) {
		struct json_val v;
		if (json_parse(out->p, out->len, &v, NULL) != 0 || v.type != JSON_OBJECT)
			return API_ERR_BAD_REQUEST;
	}
	return 0;
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
	m.epoch = (struct msg_str){ NULL, 0 };
	job->pending++;
	worker_request(&m, api_pub_done, pub);
}

/* Parses one publish or broadcast params object into job. */
static void
api_parse_publish(struct api_job *job, uint32_t id, const struct json_val *params, int broadcast)
{
	struct api_publish_req p;
	struct json_iter it;
	struct json_val k, v, channel = { NULL, 0, JSON_NONE }, channels = { NULL, 0, JSON_NONE };
	struct api_cmd *cmd = api_job_cmd(job, broadcast ? API_CMD_BROADCAST : API_CMD_PUBLISH, id);
	int rc;

	memset(&p, 0, sizeof(p));
	if (params->type != JSON_OBJECT || json_iter_init(&it, params->p, params->len) != 0) {
		cmd->kind = API_CMD_ERROR;
		cmd->err = API_ERR_BAD_REQUEST;
		return;
	}
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
		cmd->kind = API_CMD_ERROR;
		cmd->err = API_ERR_BAD_REQUEST;
		api_publish_req_free(&p);
		return;
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
				char *name = cv.type == JSON_STRING ? api_string(&cv) : xstrdup("");
				api_job_publish(job, name, strlen(name), &p);
				free(name);
				n++;
			}
		}
		cmd->npubs = n;
		if (n == 0) {
			cmd->kind = API_CMD_ERROR;
			cmd->err = API_ERR_BAD_REQUEST;
		}
	}
	api_publish_req_free(&p);
}

/* Finishes now a job that waits for no broker reply; the others finish in
 * api_pub_done(). */
static void
api_job_send(struct api_job *job)
{
	if (job->pending == 0)
		api_job_finish(job);
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
api_job_new(struct http_req *r, int legacy)
{
	struct api_job *job = xcalloc(1, sizeof(*job));
	const char *mode = loop_http_header(r, "x-centrifugo-error-mode");

	job->req = r;
	job->legacy = legacy;
	job->transport_errors = strcmp(api_cfg->http_api_error_mode, "transport") == 0 ||
	    (mode && strcasecmp(mode, "transport") == 0);
	return job;
}

static void
api_method(struct http_req *r, const char *method)
{
	size_t len;
	const char *body = loop_http_body(r, &len);
	struct json_val v;
	struct api_job *job;
	int broadcast;

	if (strcmp(method, "publish") == 0)
		broadcast = 0;
	else if (strcmp(method, "broadcast") == 0)
		broadcast = 1;
	else {
		api_plain(r, 404, "404 page not found\n");
		return;
	}
	if (json_parse(body, len, &v, NULL) != 0 || (v.type != JSON_OBJECT && v.type != JSON_NULL)) {
		api_plain(r, 400, "Bad Request\n");
		return;
	}
	if (v.type == JSON_NULL)
		v = (struct json_val){ "{}", 2, JSON_OBJECT };
	job = api_job_new(r, 0);
	api_parse_publish(job, 0, &v, broadcast);
	api_job_send(job);
}

/* Legacy method numbers (§2.2). */
static const char *const api_legacy_names[] = {
	"publish", "broadcast", "unsubscribe", "disconnect", "presence",
	"presence_stats", "history", "history_remove", "channels", "info", "rpc",
	"subscribe", "refresh",
};

/*
 * Reads the next command object of a legacy body at *pos: its id, method
 * name (one of api_legacy_names, or "" for a number we don't know) and
 * params.  Returns 1, 0 at the end, -1 if the body does not decode.
 */
static int
api_legacy_next(const char *body, size_t len, size_t *pos, uint32_t *id,
    const char **name, struct json_val *params)
{
	static const size_t known = sizeof(api_legacy_names) / sizeof(api_legacy_names[0]);
	struct json_val obj, k, v, method = { NULL, 0, JSON_NONE };
	struct json_iter it;
	int rc;

	while (*pos < len && isspace((unsigned char)body[*pos]))
		(*pos)++;
	if (*pos == len)
		return 0;
	if (json_scan(body, len, pos, &obj, NULL) != 0 || obj.type != JSON_OBJECT)
		return -1;
	*id = 0;
	*params = (struct json_val){ NULL, 0, JSON_NONE };
	json_iter_init(&it, obj.p, obj.len);
	while ((rc = json_iter_next(&it, &k, &v)) == 1) {
		if (json_str_eq(&k, "id") && v.type != JSON_NULL) {
			if (json_get_u32(&v, id) != 0)
				return -1;
		} else if (json_str_eq(&k, "method")) {
			method = v;
		} else if (json_str_eq(&k, "params")) {
			*params = v;
		}
	}
	if (method.type == JSON_NONE || method.type == JSON_NULL) {
		*name = "publish";          /* a missing method decodes as 0 */
	} else if (method.type == JSON_NUMBER) {
		uint32_t n;
		if (json_get_u32(&method, &n) != 0)
			return -1;
		*name = n < known ? api_legacy_names[n] : "";
	} else if (method.type == JSON_STRING) {
		char *m = api_string(&method);
		size_t i;
		if (m == NULL)
			return -1;
		for (i = 0; i < known; i++)
			if (strcasecmp(m, api_legacy_names[i]) == 0)
				break;
		free(m);
		if (i == known)
			return -1;          /* neither a name nor a number */
		*name = api_legacy_names[i];
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
	const char *name;
	uint32_t id;
	int rc;

	/* The whole body must decode before anything runs. */
	while ((rc = api_legacy_next(body, len, &pos, &id, &name, &params)) == 1)
		;
	if (rc < 0 || pos == 0 || len == 0) {
		api_plain(r, 400, "Bad Request\n");
		return;
	}
	job = api_job_new(r, 1);
	pos = 0;
	while (api_legacy_next(body, len, &pos, &id, &name, &params) == 1) {
		if ((strcmp(name, "publish") == 0 || strcmp(name, "broadcast") == 0) &&
		    params.type != JSON_NONE && params.type != JSON_NULL) {
			api_parse_publish(job, id, &params, name[0] == 'b');
		} else {
			struct api_cmd *c = api_job_cmd(job, API_CMD_ERROR, id);
			/* Missing params: 107; methods not served here: 104. */
			c->err = strcmp(name, "publish") == 0 || strcmp(name, "broadcast") == 0 ?
			    API_ERR_BAD_REQUEST : API_ERR_NOT_FOUND;
		}
	}
	api_job_send(job);
}

void
api_handle(struct http_req *r)
{
	const char *path = loop_http_path(r);
	const char *method = loop_http_method(r);
	const char *prefix = api_cfg->http_api_handler_prefix;
	size_t plen = strlen(prefix);

	if (strcmp(path, api_cfg->health_handler_prefix) == 0) {
		loop_http_respond(r, 200, API_CONTENT_TYPE, "{}", 2);
		return;
	}
	if (api_cfg->http_api_disabled || strncmp(path, prefix, plen) != 0 ||
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
