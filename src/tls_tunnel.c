/*
 * tls_tunnel.c - a unix socket whose one connection is carried over TLS to
 * a TCP server (see tls_tunnel.h).
 *
 * Each tunnel: a listening unix socket in a mkdtemp() directory (mode
 * 0700), removed as soon as the local side has connected; a bufferevent on
 * the accepted connection; an OpenSSL bufferevent to the server.  Bytes
 * move from one side's input to the other's output as they arrive; a side
 * stops being read while the other's output holds TUNNEL_HIGH bytes, until
 * it has drained.  Whatever ends one side ends both, after what the server
 * sent last has reached the local side.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/util.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "buf.h"
#include "log.h"
#include "pem.h"
#include "tls_tunnel.h"
#include "xmalloc.h"

#define TUNNEL_HIGH (1024 * 1024)       /* bytes waiting for one side */

struct tls_tunnel {
	struct tls_tunnel *prev, *next;
	struct event_base *base;
	int lfd;                        /* listening socket until accepted */
	struct event *accept_ev;
	struct event *deadline_ev;      /* until the handshake is done */
	struct bufferevent *local;      /* the library's connection */
	struct bufferevent *remote;     /* TLS to the server */
	SSL *ssl;                       /* owned by remote */
	int tls_up;
	int answered;                   /* the server has sent something */
	int draining;                   /* remote ended: flush local, then close */
	int linked;                     /* the socket file exists */
	int quiet;                      /* failures at debug level */
	char dir[96];
	char path[108];                 /* fits sun_path */
	char what[48];
	char peer[300];
};

static struct tls_tunnel *tunnels;

/* ---- context --------------------------------------------------------- */

static int
tls_pem_certs(const char *opt, const char *val, STACK_OF(X509) *out, struct buf *err)
{
	struct buf pem = BUF_INIT;
	BIO *bio;
	X509 *x;

	if (pem_resolve(opt, val, &pem, err) < 0) {
		buf_free(&pem);
		return -1;
	}
	bio = BIO_new_mem_buf(pem.data, (int)pem.len);
	while (bio && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL)
		sk_X509_push(out, x);
	BIO_free(bio);
	buf_free(&pem);
	ERR_clear_error();      /* the end of the text reads as an error */
	if (sk_X509_num(out) == 0) {
		buf_printf(err, "%s: no PEM certificate in it", opt);
		return -1;
	}
	return 0;
}

static int
tls_ctx_ca(SSL_CTX *ctx, const char *opt, const char *val, struct buf *err)
{
	STACK_OF(X509) *certs = sk_X509_new_null();
	X509_STORE *store = SSL_CTX_get_cert_store(ctx);
	int rc = tls_pem_certs(opt, val, certs, err);

	for (int i = 0; rc == 0 && i < sk_X509_num(certs); i++)
		X509_STORE_add_cert(store, sk_X509_value(certs, i));
	sk_X509_pop_free(certs, X509_free);
	return rc;
}

static int
tls_ctx_identity(SSL_CTX *ctx, const struct tls_client_conf *t, struct buf *err)
{
	char opt_cert[96], opt_key[96];
	STACK_OF(X509) *certs = sk_X509_new_null();
	struct buf pem = BUF_INIT;
	EVP_PKEY *key = NULL;
	BIO *bio;
	int rc = -1;

	snprintf(opt_cert, sizeof(opt_cert), "option '%s.cert_pem'", t->opt);
	snprintf(opt_key, sizeof(opt_key), "option '%s.key_pem'", t->opt);
	if (tls_pem_certs(opt_cert, t->cert_pem, certs, err) < 0)
		goto out;
	if (SSL_CTX_use_certificate(ctx, sk_X509_value(certs, 0)) != 1) {
		buf_printf(err, "%s: the certificate is not usable", opt_cert);
		goto out;
	}
	for (int i = 1; i < sk_X509_num(certs); i++)
		SSL_CTX_add1_chain_cert(ctx, sk_X509_value(certs, i));
	if (pem_resolve(opt_key, t->key_pem, &pem, err) < 0)
		goto out;
	bio = BIO_new_mem_buf(pem.data, (int)pem.len);
	key = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
	BIO_free(bio);
	if (key == NULL) {
		buf_printf(err, "%s: no PEM private key in it (encrypted keys are not supported)",
		    opt_key);
		goto out;
	}
	if (SSL_CTX_use_PrivateKey(ctx, key) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
		buf_printf(err, "%s: the key does not match %s.cert_pem", opt_key, t->opt);
		goto out;
	}
	rc = 0;
out:
	ERR_clear_error();
	EVP_PKEY_free(key);
	buf_free(&pem);
	sk_X509_pop_free(certs, X509_free);
	return rc;
}

SSL_CTX *
tls_client_ctx_new(const struct tls_client_conf *t, struct buf *err)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	char opt[96];

	if (ctx == NULL) {
		buf_printf(err, "%s: cannot create a TLS context", t->opt);
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	if (t->insecure_skip_verify) {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	} else {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
		snprintf(opt, sizeof(opt), "option '%s.server_ca_pem'", t->opt);
		if (t->server_ca_pem[0] != '\0') {
			if (tls_ctx_ca(ctx, opt, t->server_ca_pem, err) < 0)
				goto fail;
		} else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
			buf_printf(err, "%s: empty, and the system's CA certificates cannot be read", opt);
			goto fail;
		}
	}
	if ((t->cert_pem[0] != '\0') != (t->key_pem[0] != '\0')) {
		buf_printf(err, "option '%s.%s' is set without %s.%s", t->opt,
		    t->cert_pem[0] ? "cert_pem" : "key_pem", t->opt,
		    t->cert_pem[0] ? "key_pem" : "cert_pem");
		goto fail;
	}
	if (t->cert_pem[0] != '\0' && tls_ctx_identity(ctx, t, err) < 0)
		goto fail;
	return ctx;
fail:
	ERR_clear_error();
	SSL_CTX_free(ctx);
	return NULL;
}

/* ---- tunnel ---------------------------------------------------------- */

static void
tls_tunnel_free(struct tls_tunnel *t)
{
	if (t->accept_ev)
		event_free(t->accept_ev);
	if (t->deadline_ev)
		event_free(t->deadline_ev);
	if (t->lfd >= 0)
		close(t->lfd);
	if (t->local)
		bufferevent_free(t->local);
	if (t->remote)
		bufferevent_free(t->remote);    /* frees the SSL and the socket */
	else if (t->ssl)
		SSL_free(t->ssl);
	tls_tunnel_unlink(t);
	if (t->prev)
		t->prev->next = t->next;
	else
		tunnels = t->next;
	if (t->next)
		t->next->prev = t->prev;
	free(t);
}

/* The reason a TLS bufferevent ended, for the log; 1 if it is a failure
 * (a TLS alert or a socket error), 0 for a plain end of stream. */
static int
tls_tunnel_reason(struct tls_tunnel *t, short events, char *out, size_t cap)
{
	int failed = 1;

	unsigned long e = t->remote ? bufferevent_get_openssl_error(t->remote) : 0;
	int serr = EVUTIL_SOCKET_ERROR();

	if (e != 0 && ERR_GET_LIB(e) == 0) {
		/* Not an OpenSSL error but the SSL_get_error() code libevent
		 * keeps when the error queue was empty: the connection ended
		 * under TLS (a reset, or a close without close_notify). */
		snprintf(out, cap, "%s%s", serr != 0 && serr != EAGAIN ?
		    evutil_socket_error_to_string(serr) : "the connection was cut",
		    t->answered ? "" : " before the server answered (did it refuse the client certificate?)");
	} else if (e != 0) {
		char s[200];
		long vr = t->ssl ? SSL_get_verify_result(t->ssl) : X509_V_OK;
		ERR_error_string_n(e, s, sizeof(s));
		if (vr != X509_V_OK)
			snprintf(out, cap, "%s (%s)", s, X509_verify_cert_error_string(vr));
		else
			snprintf(out, cap, "%s", s);
	} else if ((events & BEV_EVENT_ERROR) && serr != 0) {
		snprintf(out, cap, "%s", evutil_socket_error_to_string(serr));
	} else if (events & BEV_EVENT_EOF) {
		snprintf(out, cap, "%s", !t->tls_up ? "closed by the server during the TLS handshake" :
		    !t->answered ? "closed by the server before it answered (did it refuse the client certificate?)" :
		    "closed by the server");
		failed = !t->answered;
	} else {
		snprintf(out, cap, "connection failed");
	}
	ERR_clear_error();
	return failed;
}

/* Moves what from has read into to's output; pauses from while to is
 * behind. */
static void
tls_tunnel_relay(struct bufferevent *from, struct bufferevent *to)
{
	struct evbuffer *out = bufferevent_get_output(to);

	evbuffer_add_buffer(out, bufferevent_get_input(from));
	if (evbuffer_get_length(out) >= TUNNEL_HIGH)
		bufferevent_disable(from, EV_READ);
}

static void
tls_tunnel_local_read(struct bufferevent *bev, void *arg)
{
	struct tls_tunnel *t = arg;

	if (t->remote && !t->draining)
		tls_tunnel_relay(bev, t->remote);
}

static void
tls_tunnel_remote_read(struct bufferevent *bev, void *arg)
{
	struct tls_tunnel *t = arg;

	t->answered = 1;
	if (t->local)
		tls_tunnel_relay(bev, t->local);
}

/* to's output drained: read from its peer again (or finish a drain). */
static void
tls_tunnel_local_written(struct bufferevent *bev, void *arg)
{
	struct tls_tunnel *t = arg;

	if (t->draining) {
		tls_tunnel_free(t);
		return;
	}
	if (t->remote)
		bufferevent_enable(t->remote, EV_READ);
}

static void
tls_tunnel_remote_written(struct bufferevent *bev, void *arg)
{
	struct tls_tunnel *t = arg;

	if (t->local)
		bufferevent_enable(t->local, EV_READ);
}

static void
tls_tunnel_local_event(struct bufferevent *bev, short events, void *arg)
{
	struct tls_tunnel *t = arg;

	if (events & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		tls_tunnel_free(t);     /* the library closed its connection */
}

static void
tls_tunnel_remote_event(struct bufferevent *bev, short events, void *arg)
{
	struct tls_tunnel *t = arg;
	char why[300];

	if (events & BEV_EVENT_CONNECTED) {
		t->tls_up = 1;
		if (t->local)
			event_del(t->deadline_ev);
		return;
	}
	if (!(events & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
		return;
	if (tls_tunnel_reason(t, events, why, sizeof(why)))
		log_msg(t->quiet ? LOG_LVL_DEBUG : LOG_LVL_WARN, "%s: TLS to %s: %s", t->what,
		    t->peer, why);
	if (t->local && t->tls_up) {
		/* What the server said last (an error, say) reaches the
		 * library before its connection closes. */
		tls_tunnel_remote_read(bev, t);
		if (evbuffer_get_length(bufferevent_get_output(t->local)) > 0) {
			t->draining = 1;
			bufferevent_free(t->remote);
			t->remote = NULL;
			t->ssl = NULL;
			bufferevent_disable(t->local, EV_READ);
			return;
		}
	}
	tls_tunnel_free(t);
}

static void
tls_tunnel_accept(evutil_socket_t fd, short what, void *arg)
{
	struct tls_tunnel *t = arg;
	int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (c < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return;
		log_warn("%s: tunnel accept: %s", t->what, strerror(errno));
		tls_tunnel_free(t);
		return;
	}
	event_free(t->accept_ev);
	t->accept_ev = NULL;
	close(t->lfd);
	t->lfd = -1;
	t->local = bufferevent_socket_new(t->base, c, BEV_OPT_CLOSE_ON_FREE);
	if (t->local == NULL) {
		close(c);
		tls_tunnel_free(t);
		return;
	}
	bufferevent_setcb(t->local, tls_tunnel_local_read, tls_tunnel_local_written,
	    tls_tunnel_local_event, t);
	bufferevent_enable(t->local, EV_READ | EV_WRITE);
	if (t->tls_up)
		event_del(t->deadline_ev);
	if (t->remote && evbuffer_get_length(bufferevent_get_input(t->remote)) > 0)
		tls_tunnel_relay(t->remote, t->local);
}

static void
tls_tunnel_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct tls_tunnel *t = arg;

	log_msg(t->quiet ? LOG_LVL_DEBUG : LOG_LVL_WARN, "%s: TLS to %s: %s", t->what, t->peer,
	    t->tls_up ? "the local side never connected" :
	    "no TLS connection within connect_timeout");
	tls_tunnel_free(t);
}

/* Verification of the server's name (or address) and SNI on ssl. */
static int
tls_tunnel_name(SSL *ssl, const char *name)
{
	unsigned char a[16];
	int is_ip = inet_pton(AF_INET, name, a) == 1 || inet_pton(AF_INET6, name, a) == 1;

	if (!is_ip && SSL_set_tlsext_host_name(ssl, name) != 1)
		return -1;
	if (!(SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER))
		return 0;
	if (is_ip)
		return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name) == 1 ? 0 : -1;
	return SSL_set1_host(ssl, name) == 1 ? 0 : -1;
}

struct tls_tunnel *
tls_tunnel_open(struct event_base *base, SSL_CTX *ctx, const char *host, int port,
    const char *server_name, unsigned timeout_ms, const char *what, int quiet, char *path,
    size_t cap, char *why, size_t wcap)
{
	struct tls_tunnel *t = xcalloc(1, sizeof(*t));
	struct evutil_addrinfo hints, *ai = NULL;
	struct sockaddr_un sa;
	struct timeval tv;
	const char *tmp = getenv("TMPDIR");
	char portstr[8];
	int rc;

	t->base = base;
	t->lfd = -1;
	t->quiet = quiet;
	snprintf(t->what, sizeof(t->what), "%s", what);
	snprintf(t->peer, sizeof(t->peer), strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
	t->next = tunnels;
	if (tunnels)
		tunnels->prev = t;
	tunnels = t;

	if (tmp == NULL || tmp[0] != '/' || strlen(tmp) > 60)
		tmp = "/tmp";
	snprintf(t->dir, sizeof(t->dir), "%s/centrifugo-tls.XXXXXX", tmp);
	if (mkdtemp(t->dir) == NULL) {
		snprintf(why, wcap, "mkdtemp %s: %s", t->dir, strerror(errno));
		t->dir[0] = '\0';
		goto fail;
	}
	snprintf(t->path, sizeof(t->path), "%s/s", t->dir);
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", t->path);
	t->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (t->lfd < 0 || bind(t->lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(t->lfd, 1) < 0) {
		snprintf(why, wcap, "unix socket %s: %s", t->path, strerror(errno));
		goto fail;
	}
	t->linked = 1;
	t->accept_ev = event_new(base, t->lfd, EV_READ | EV_PERSIST, tls_tunnel_accept, t);
	t->deadline_ev = evtimer_new(base, tls_tunnel_deadline, t);
	event_add(t->accept_ev, NULL);
	tv.tv_sec = timeout_ms / 1000;
	tv.tv_usec = (timeout_ms % 1000) * 1000;
	event_add(t->deadline_ev, &tv);

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	snprintf(portstr, sizeof(portstr), "%d", port);
	rc = evutil_getaddrinfo(host, portstr, &hints, &ai);    /* blocking, as hiredis's */
	if (rc != 0 || ai == NULL) {
		snprintf(why, wcap, "%s: %s", host, evutil_gai_strerror(rc));
		goto fail;
	}
	t->ssl = SSL_new(ctx);
	if (t->ssl == NULL || tls_tunnel_name(t->ssl, server_name[0] ? server_name : host) < 0) {
		snprintf(why, wcap, "cannot set up TLS for %s", server_name[0] ? server_name : host);
		goto fail;
	}
	t->remote = bufferevent_openssl_socket_new(base, -1, t->ssl, BUFFEREVENT_SSL_CONNECTING,
	    BEV_OPT_CLOSE_ON_FREE);
	if (t->remote == NULL) {
		snprintf(why, wcap, "out of memory");
		goto fail;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(t->remote, 1);
	bufferevent_setcb(t->remote, tls_tunnel_remote_read, tls_tunnel_remote_written,
	    tls_tunnel_remote_event, t);
	bufferevent_enable(t->remote, EV_READ | EV_WRITE);
	if (bufferevent_socket_connect(t->remote, ai->ai_addr, (int)ai->ai_addrlen) < 0) {
		snprintf(why, wcap, "connect to %s: %s", t->peer,
		    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		goto fail;
	}
	evutil_freeaddrinfo(ai);
	snprintf(path, cap, "%s", t->path);
	return t;
fail:
	if (ai)
		evutil_freeaddrinfo(ai);
	ERR_clear_error();
	tls_tunnel_free(t);
	return NULL;
}

void
tls_tunnel_unlink(struct tls_tunnel *t)
{
	if (t->linked) {
		unlink(t->path);
		t->linked = 0;
	}
	if (t->dir[0] != '\0') {
		rmdir(t->dir);
		t->dir[0] = '\0';
	}
}

void
tls_tunnel_close_all(void)
{
	while (tunnels)
		tls_tunnel_free(tunnels);
}
