/*
 * reload.h - configuration reload without dropping connections (spec
 * config.md 1.5, DESIGN.md "Failure model").
 *
 * The supervisor loads and validates the new file with reload_load(); an
 * invalid file changes nothing.  It then sends IPC_RELOAD (with the path) to
 * every child; each worker loads the file itself (reload_worker_init()
 * routes the message) and swaps its configuration with reload_apply(), so
 * new operations see new channel, namespace, token and log settings while
 * every connection stays open.  Restart-only options keep their running
 * values in every process and are reported back to the operator, except the
 * listener options with RELOAD_LISTENERS, which the supervisor applies by
 * restarting the workers one at a time on new sockets (supervisor.c).
 */
#ifndef CENTRIFUGO_RELOAD_H
#define CENTRIFUGO_RELOAD_H

struct auth_keys;
struct buf;
struct config;

/*
 * Loads and validates `path` (NULL: defaults and environment only) as a
 * replacement for the running `cur`: config_load() plus a trial build of
 * the token verifiers.  On success returns a new config (caller owns it,
 * config_free) in which every restart-only option still has cur's value,
 * except log.level and log.json which a reload applies; the paths of the
 * restart-only options whose value in the file differs are appended to
 * `restart` (space-separated; may be NULL).  On failure returns NULL with
 * every error appended to `errors`, one per line ("FILE:LINE: message").
 * Any process may call it.
 */
struct config *reload_load(const char *path, const struct config *cur,
    struct buf *errors, struct buf *restart);

/* Flags of reload_load_ex(). */
#define RELOAD_LISTENERS 0x1    /* take the listener options from the file */

/*
 * reload_load() with flags: with RELOAD_LISTENERS, http_server.address,
 * http_server.port, http_server.internal_address and
 * http_server.internal_port get the file's values and are not listed in
 * `restart` (the supervisor applies them by restarting the workers on new
 * sockets).  reload_load() is reload_load_ex() with flags 0.
 */
struct config *reload_load_ex(const char *path, const struct config *cur,
    struct buf *errors, struct buf *restart, unsigned flags);

/*
 * 1 when the listener options (see RELOAD_LISTENERS) of a and b differ,
 * else 0.
 */
int reload_listeners_differ(const struct config *a, const struct config *b);

/*
 * Worker: makes `newcfg` the configuration of this process: heritage.cfg,
 * the client sessions' (token verifiers, channel options) and the server
 * API's, and the log level.  Live connections and subscriptions are kept.
 * Takes newcfg over; the previous configuration is never freed, since
 * requests in flight may still point into it (chan_opts): one config per
 * reload is leaked, on purpose.  Returns 0, or -1 with a reason in err when
 * the sessions could not take it (nothing changed then).
 */
int reload_apply(struct config *newcfg, struct buf *err);

/*
 * Worker: routes IPC_RELOAD messages to reload_load() + reload_apply() and
 * answers the supervisor with IPC_RELOAD_DONE.  Call once after
 * ipc_child_watch().
 */
void reload_worker_init(void);

/*
 * Fills k with the verifier settings of connection tokens (subscription 0)
 * or subscription tokens (1: client.subscription_token when enabled, else
 * client.token), as workers build them.  The strings stay cfg's.
 */
void reload_token_keys(const struct config *cfg, int subscription,
    struct auth_keys *k);

#endif
