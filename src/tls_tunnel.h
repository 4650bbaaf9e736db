/*
 * tls_tunnel.h - TLS for a client library that cannot speak it (hiredis
 * 0.14, as Debian 12 ships it): the library connects to a private unix
 * socket, and the tunnel carries that one connection over TLS (OpenSSL) to
 * the real server, on the caller's libevent loop.  Used by the Redis engine
 * for engine.redis.tls and rediss:// addresses.
 */
#ifndef CENTRIFUGO_TLS_TUNNEL_H
#define CENTRIFUGO_TLS_TUNNEL_H

#include <stddef.h>

#include <openssl/ssl.h>

struct event_base;
struct buf;

/* The TLS object of the configuration (spec config.md 2.1), client side. */
struct tls_client_conf {
	const char *opt;                /* option prefix for messages, e.g.
					   "engine.redis.tls" */
	const char *cert_pem;           /* client certificate ("" = none) */
	const char *key_pem;            /* its key */
	const char *server_ca_pem;      /* CA bundle ("" = the system's) */
	const char *server_name;        /* name to check ("" = the host) */
	int insecure_skip_verify;
};

/* The option of a TLS object a failure is about. */
enum tls_conf_field { TLS_F_OBJECT, TLS_F_CERT, TLS_F_KEY, TLS_F_CA };

/* Builds a client context from t: certificates and keys as pem.h reads
 * them.  NULL with the reason (naming the option) appended to err and, if
 * bad is not NULL, the option in *bad. */
SSL_CTX *tls_client_ctx_new(const struct tls_client_conf *t, struct buf *err,
    enum tls_conf_field *bad);

struct tls_tunnel;

/*
 * Starts a tunnel to host:port: a unix socket in a fresh private directory
 * (its path written to path, cap bytes) whose first connection is carried
 * over TLS; the TCP connection and the handshake start now, and what the
 * local side writes meanwhile waits.  The certificate is checked against
 * server_name (or host) unless the context skips verification.  If the
 * server is not reached and the handshake done within timeout_ms, or
 * either side closes or fails, both sides are closed and the tunnel frees
 * itself; what (e.g. "redis shard 0") names it in the log line that says
 * why, a warning unless quiet (a retry after a failure: debug).  NULL with
 * the reason in why on a local failure.
 */
struct tls_tunnel *tls_tunnel_open(struct event_base *base, SSL_CTX *ctx, const char *host,
    int port, const char *server_name, unsigned timeout_ms, const char *what, int quiet,
    char *path, size_t cap, char *why, size_t wcap);

/* Removes the socket file and its directory: call once the local side has
 * connected (its connection is queued on the listening socket). */
void tls_tunnel_unlink(struct tls_tunnel *t);

/* Closes every tunnel still open (at shutdown). */
void tls_tunnel_close_all(void);

#endif
