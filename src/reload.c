/*
 * reload.c - configuration reload without dropping connections (see
 * reload.h).
 *
 * reload_load() runs in the supervisor (validation before anything is sent)
 * and again in each worker (a worker cannot receive a parsed config over
 * the ipc channel, so it reads the same file itself); reload_apply() and the
 * IPC_RELOAD handler run in workers only.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "auth.h"
#include "buf.h"
#include "client.h"
#include "config.h"
#include "heritage.h"
#include "ipc.h"
#include "log.h"
#include "loop.h"
#include "reload.h"
#include "worker.h"
#include "xmalloc.h"

/* ---- restart-only options keep their running value ---- */

static void
reload_keep_BOOL(int *dst, const int *src)
{
	*dst = *src;
}

static void
reload_keep_INT(int64_t *dst, const int64_t *src)
{
	*dst = *src;
}

#define reload_keep_INT64 reload_keep_INT
#define reload_keep_DURATION reload_keep_INT

static void
reload_keep_STRING(char **dst, char *const *src)
{
	free(*dst);
	*dst = xstrdup(*src);
}

static void
reload_keep_STRLIST(struct config_strlist *dst, const struct config_strlist *src)
{
	for (size_t i = 0; i < dst->n; i++)
		free(dst->v[i]);
	free(dst->v);
	dst->v = src->n > 0 ? xcalloc(src->n, sizeof(*dst->v)) : NULL;
	for (size_t i = 0; i < src->n; i++)
		dst->v[i] = xstrdup(src->v[i]);
	dst->n = src->n;
}

/* Restart-only options in the table that a reload applies anyway. */
static int
reload_applies(const char *path)
{
	return strcmp(path, "log.level") == 0 || strcmp(path, "log.json") == 0;
}

/* The options a reload with RELOAD_LISTENERS applies by new sockets. */
static int
reload_is_listener(const char *path)
{
	return strcmp(path, "http_server.address") == 0 ||
	    strcmp(path, "http_server.port") == 0 ||
	    strcmp(path, "http_server.internal_address") == 0 ||
	    strcmp(path, "http_server.internal_port") == 0;
}

/* Whether a reload with `flags` applies restart-only option `path`. */
static int
reload_applies_with(const char *path, unsigned flags)
{
	return reload_applies(path) ||
	    ((flags & RELOAD_LISTENERS) && reload_is_listener(path));
}

int
reload_listeners_differ(const struct config *a, const struct config *b)
{
	return strcmp(a->http_server_address, b->http_server_address) != 0 ||
	    a->http_server_port != b->http_server_port ||
	    strcmp(a->http_server_internal_address,
	    b->http_server_internal_address) != 0 ||
	    strcmp(a->http_server_internal_port,
	    b->http_server_internal_port) != 0;
}

/*
 * Copies every restart-only option but those reload_applies_with(flags)
 * from src.
 */
static void
reload_keep_restart_only(struct config *dst, const struct config *src,
    unsigned flags)
{
#define CONFIG_OPT(m, p, t, d, lo, hi, ch, fl, doc) \
	if (!((fl) & CFG_RELOAD) && !reload_applies_with(p, flags)) \
		reload_keep_##t(&dst->m, &src->m);
#include "config_tbl.h"
#undef CONFIG_OPT
}

/* ---- validation beyond config_load ---- */

static void
reload_conn_keys(const struct config *cfg, struct auth_keys *k)
{
	memset(k, 0, sizeof(*k));
	k->hmac_secret_key = cfg->client_token_hmac_secret_key;
	k->hmac_previous_secret_key = cfg->client_token_hmac_previous_secret_key;
	k->hmac_previous_secret_key_valid_until =
	    cfg->client_token_hmac_previous_secret_key_valid_until;
	k->rsa_public_key = cfg->client_token_rsa_public_key;
	k->ecdsa_public_key = cfg->client_token_ecdsa_public_key;
	k->audience = cfg->client_token_audience;
	k->issuer = cfg->client_token_issuer;
	k->audience_regex = cfg->client_token_audience_regex;
	k->issuer_regex = cfg->client_token_issuer_regex;
	k->user_id_claim = cfg->client_token_user_id_claim;
	k->skip_verify = cfg->client_insecure_skip_token_signature_verify;
	k->jwks_public_endpoint = cfg->client_token_jwks_public_endpoint;
}

static void
reload_sub_keys(const struct config *cfg, struct auth_keys *k)
{
	memset(k, 0, sizeof(*k));
	k->hmac_secret_key = cfg->client_subscription_token_hmac_secret_key;
	k->hmac_previous_secret_key =
	    cfg->client_subscription_token_hmac_previous_secret_key;
	k->hmac_previous_secret_key_valid_until =
	    cfg->client_subscription_token_hmac_previous_secret_key_valid_until;
	k->rsa_public_key = cfg->client_subscription_token_rsa_public_key;
	k->ecdsa_public_key = cfg->client_subscription_token_ecdsa_public_key;
	k->audience = cfg->client_subscription_token_audience;
	k->issuer = cfg->client_subscription_token_issuer;
	k->audience_regex = cfg->client_subscription_token_audience_regex;
	k->issuer_regex = cfg->client_subscription_token_issuer_regex;
	k->user_id_claim = cfg->client_subscription_token_user_id_claim;
	k->skip_verify = cfg->client_insecure_skip_token_signature_verify;
	k->jwks_public_endpoint = cfg->client_subscription_token_jwks_public_endpoint;
}

void
reload_token_keys(const struct config *cfg, int subscription,
    struct auth_keys *k)
{
	if (subscription && cfg->client_subscription_token_enabled)
		reload_sub_keys(cfg, k);
	else
		reload_conn_keys(cfg, k);
}

/*
 * Builds (and drops) the verifiers a worker will build, so a key that cannot
 * be read is a reload error here rather than a worker failure.  Returns the
 * number of errors appended.
 */
static int
reload_check_tokens(const struct config *cfg, const char *name,
    struct buf *errors)
{
	struct auth_keys k;
	struct auth_verifier *v;
	struct buf err = BUF_INIT;
	int n = 0;

	reload_conn_keys(cfg, &k);
	v = auth_verifier_new(&k, &err);
	if (v == NULL) {
		buf_printf(errors, "%s: client.token: %s\n", name, buf_cstr(&err));
		n++;
	}
	auth_verifier_free(v);
	if (cfg->client_subscription_token_enabled) {
		buf_reset(&err);
		reload_sub_keys(cfg, &k);
		v = auth_verifier_new(&k, &err);
		if (v == NULL) {
			buf_printf(errors, "%s: client.subscription_token: %s\n",
			    name, buf_cstr(&err));
			n++;
		}
		auth_verifier_free(v);
	}
	buf_free(&err);
	return n;
}

struct config *
reload_load(const char *path, const struct config *cur, struct buf *errors,
    struct buf *restart)
{
	return reload_load_ex(path, cur, errors, restart, 0);
}

struct config *
reload_load_ex(const char *path, const struct config *cur,
    struct buf *errors, struct buf *restart, unsigned flags)
{
	struct config *n = NULL;
	struct buf names = BUF_INIT;
	char *tok, *save = NULL;
	int first = 1;

	if (config_load(path, &n, errors) == -1)
		return NULL;
	if (reload_check_tokens(n, path != NULL ? path : "environment",
	    errors) > 0) {
		config_free(n);
		return NULL;
	}
	if (restart != NULL && config_restart_changes(cur, n, &names) > 0) {
		for (tok = strtok_r(buf_cstr(&names), " ", &save); tok != NULL;
		    tok = strtok_r(NULL, " ", &save)) {
			if (reload_applies_with(tok, flags))
				continue;
			if (!first)
				buf_putc(restart, ' ');
			buf_puts(restart, tok);
			first = 0;
		}
	}
	buf_free(&names);
	reload_keep_restart_only(n, cur, flags);
	return n;
}

/* ---- worker side ---- */

int
reload_apply(struct config *newcfg, struct buf *err)
{
	enum log_level lvl;

	ASSERT(newcfg != NULL && newcfg->magic == CONFIG_MAGIC);
	/* client.c rebuilds its token verifiers first and changes nothing
	 * when one cannot be built. */
	if (client_reconfigure(newcfg, err) == -1) {
		config_free(newcfg);
		return -1;
	}
	api_reconfigure(newcfg);
	if (worker_loop() != NULL)
		loop_set_write_delay(worker_loop(), newcfg->client_write_delay);
	/* The previous heritage.cfg is left allocated on purpose (see
	 * reload.h): chan_opts pointers of requests in flight point into
	 * it.  One config per reload leaks. */
	heritage.cfg = newcfg;
	if (log_level_parse(newcfg->log_level, &lvl) == 0)
		log_set_level(lvl);
	log_set_json(newcfg->log_json);
	return 0;
}

static void
reload_on_ipc(const struct ipc_msg *msg, void *arg)
{
	struct ipc_reload req;
	struct ipc_reload_done done;
	struct buf errors = BUF_INIT, out = BUF_INIT;
	struct config *n;
	char *path;

	if (msg->hdr.len < sizeof(req)) {
		log_warn("dropping a short reload message from the supervisor");
		return;
	}
	memcpy(&req, msg->payload, sizeof(req));
	path = xstrndup(msg->payload + sizeof(req), msg->hdr.len - sizeof(req));
	log_info("reloading configuration %s",
	    path[0] != '\0' ? path : "(defaults and environment)");
	n = reload_load(path[0] != '\0' ? path : NULL, heritage.cfg, &errors,
	    NULL);
	done.seq = req.seq;
	done.status = n != NULL && reload_apply(n, &errors) == 0 ? 0 : -1;
	if (done.status == 0)
		log_info("configuration reloaded");
	else
		log_error("configuration not reloaded: %s", buf_cstr(&errors));
	buf_append(&out, &done, sizeof(done));
	if (done.status != 0)
		buf_append(&out, errors.data, errors.len);
	if (out.len > IPC_PAYLOAD_MAX)
		out.len = IPC_PAYLOAD_MAX;
	if (ipc_send(heritage.ipc_fd, IPC_RELOAD_DONE, out.data, out.len) == -1)
		log_error("cannot answer the reload: sendmsg() on fd %d failed: %s",
		    heritage.ipc_fd, strerror(errno));
	buf_free(&out);
	buf_free(&errors);
	free(path);
}

void
reload_worker_init(void)
{
	ipc_child_handle(IPC_RELOAD, reload_on_ipc, NULL);
}
