/*
 * tls_tunnel.c - a unix socket whose one connection is carried over TLS to
 * a TCP server (see tls_tunnel.h).
 *
 * Each tunnel: a listening unix socket in a mkdtemp() directory (mode
 * 0700), removed as soon as the local side has connected; the accepted
 * connection; a non-blocking TCP socket to the server with OpenSSL on it.
 * Bytes are written on as soon as they are read (SSL_write() or write()
 * straight from the read callback), so the usual message costs one read
 * and one write per hop and no change of what epoll watches: an fd waits
 * for writability only while a write would block.  A side stops being read
 * while TUNNEL_HIGH bytes wait for the other.  Whatever ends one side ends
 * both, after what the server sent last has reached the local side.
 */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <event2/event.h>
#include <event2/event_struct.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "buf.h"
#include "log.h"
#include "pem.h"
#include "tls_tunnel.h"
#include "xmalloc.h"

#define TUNNEL_HIGH (1024 * 1024)       /* bytes waiting for one side */

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
tls_ctx_identity(SSL_CTX *ctx, const struct tls_client_conf *t, struct buf *err,
    enum tls_conf_field *bad)
{
	char opt_cert[96], opt_key[96];
	STACK_OF(X509) *certs = sk_X509_new_null();
	struct buf pem = BUF_INIT;
	EVP_PKEY *key = NULL;
	BIO *bio;
	int rc = -1;

	snprintf(opt_cert, sizeof(opt_cert), "option '%s.cert_pem'", t->opt);
	snprintf(opt_key, sizeof(opt_key), "option '%s.key_pem'", t->opt);
	*bad = TLS_F_CERT;
	if (tls_pem_certs(opt_cert, t->cert_pem, certs, err) < 0)
		goto out;
	if (SSL_CTX_use_certificate(ctx, sk_X509_value(certs, 0)) != 1) {
		buf_printf(err, "%s: the certificate is not usable", opt_cert);
		goto out;
	}
	for (int i = 1; i < sk_X509_num(certs); i++)
		SSL_CTX_add1_chain_cert(ctx, sk_X509_value(certs, i));
	*bad = TLS_F_KEY;
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
tls_client_ctx_new(const struct tls_client_conf *t, struct buf *err, enum tls_conf_field *bad)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	enum tls_conf_field ignored;
	char opt[96];

	if (bad == NULL)
		bad = &ignored;
	*bad = TLS_F_OBJECT;

	if (ctx == NULL) {
		buf_printf(err, "%s: cannot create a TLS context", t->opt);
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* One read() takes what the socket holds, not a record header and
	 * then its body. */
	SSL_CTX_set_read_ahead(ctx, 1);
	if (t->insecure_skip_verify) {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	} else {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
		snprintf(opt, sizeof(opt), "option '%s.server_ca_pem'", t->opt);
		*bad = TLS_F_CA;
		if (t->server_ca_pem[0] != '\0') {
			if (tls_ctx_ca(ctx, opt, t->server_ca_pem, err) < 0)
				goto fail;
		} else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
			buf_printf(err, "%s: empty, and the system's CA certificates cannot be read", opt);
			goto fail;
		}
	}
	if ((t->cert_pem[0] != '\0') != (t->key_pem[0] != '\0')) {
		*bad = t->cert_pem[0] ? TLS_F_CERT : TLS_F_KEY;
		buf_printf(err, "option '%s.%s' is set without %s.%s", t->opt,
		    t->cert_pem[0] ? "cert_pem" : "key_pem", t->opt,
		    t->cert_pem[0] ? "key_pem" : "cert_pem");
		goto fail;
	}
	if (t->cert_pem[0] != '\0' && tls_ctx_identity(ctx, t, err, bad) < 0)
		goto fail;
	return ctx;
fail:
	ERR_clear_error();
	SSL_CTX_free(ctx);
	return NULL;
}

/* ---- tunnel ---------------------------------------------------------- */

/* Bytes on their way to one side: data[off..len). */
struct tls_pipe {
	struct buf b;
	size_t off;
};

struct tls_tunnel {
	struct tls_tunnel *prev, *next;
	struct event_base *base;
	int lfd;                        /* listening socket until accepted */
	int cfd;                        /* the library's connection, or -1 */
	int sfd;                        /* TCP to the server, or -1 */
	SSL *ssl;
	struct event *accept_ev;
	struct event *deadline_ev;      /* until the handshake is done */
	struct event c_ev, s_ev;        /* assigned once the fd exists */
	short c_want, s_want;           /* what c_ev / s_ev wait for now */
	enum { T_CONNECTING, T_HANDSHAKE, T_UP } state;
	int ssl_write_wants;            /* 0, or EV_READ / EV_WRITE a stalled
					   SSL_write() waits for */
	int answered;                   /* the server has sent something */
	int draining;                   /* the server ended: flush, then close */
	int linked;                     /* the socket file exists */
	int quiet;                      /* failures at debug level */
	struct tls_pipe to_server, to_local;
	char dir[96];
	char path[108];                 /* fits sun_path */
	char what[48];
	char peer[300];
};

static struct tls_tunnel *tunnels;
static char tls_io[16384];              /* read buffer, one loop at a time */

static size_t
tls_pipe_len(const struct tls_pipe *p)
{
	return p->b.len - p->off;
}

static void
tls_pipe_consume(struct tls_pipe *p, size_t n)
{
	p->off += n;
	if (p->off == p->b.len) {
		p->off = 0;
		buf_reset(&p->b);
	}
}

static void
tls_tunnel_free(struct tls_tunnel *t)
{
	if (t->accept_ev)
		event_free(t->accept_ev);
	if (t->deadline_ev)
		event_free(t->deadline_ev);
	if (t->c_want)
		event_del(&t->c_ev);
	if (t->s_want)
		event_del(&t->s_ev);
	if (t->lfd >= 0)
		close(t->lfd);
	if (t->cfd >= 0)
		close(t->cfd);
	SSL_free(t->ssl);
	if (t->sfd >= 0)
		close(t->sfd);
	buf_free(&t->to_server.b);
	buf_free(&t->to_local.b);
	tls_tunnel_unlink(t);
	if (t->prev)
		t->prev->next = t->next;
	else
		tunnels = t->next;
	if (t->next)
		t->next->prev = t->prev;
	free(t);
	ERR_clear_error();
}

static void tls_tunnel_local_cb(evutil_socket_t fd, short what, void *arg);
static void tls_tunnel_server_cb(evutil_socket_t fd, short what, void *arg);

/* Sets what an fd's event waits for; the kernel hears of it only on a
 * change. */
static void
tls_tunnel_want(struct tls_tunnel *t, int server, short want)
{
	struct event *ev = server ? &t->s_ev : &t->c_ev;
	short *cur = server ? &t->s_want : &t->c_want;

	if (*cur == want)
		return;
	if (*cur)
		event_del(ev);
	*cur = want;
	if (want) {
		event_assign(ev, t->base, server ? t->sfd : t->cfd, want | EV_PERSIST,
		    server ? tls_tunnel_server_cb : tls_tunnel_local_cb, t);
		event_add(ev, NULL);
	}
}

/* What each fd waits for, from the state: read unless the other side is
 * behind, write while something waits for the socket. */
static void
tls_tunnel_rearm(struct tls_tunnel *t)
{
	short c = 0, s = 0;

	if (t->cfd >= 0) {
		if (!t->draining && tls_pipe_len(&t->to_server) < TUNNEL_HIGH)
			c |= EV_READ;
		if (tls_pipe_len(&t->to_local) > 0)
			c |= EV_WRITE;
		tls_tunnel_want(t, 0, c);
	}
	if (t->sfd >= 0 && !t->draining) {
		if (t->state == T_CONNECTING)
			s = EV_WRITE;
		else if (t->state == T_HANDSHAKE)
			s = (short)t->ssl_write_wants;
		else {
			if (tls_pipe_len(&t->to_local) < TUNNEL_HIGH)
				s |= EV_READ;
			s |= (short)t->ssl_write_wants;
		}
		tls_tunnel_want(t, 1, s);
	} else if (t->sfd >= 0) {
		tls_tunnel_want(t, 1, 0);
	}
}

/* The reason the TLS side failed, for the log (ssl_err: SSL_get_error()). */
static void
tls_tunnel_reason(struct tls_tunnel *t, int ssl_err, int sys_errno, char *out, size_t cap)
{
	unsigned long e = ERR_peek_last_error();

	if (e != 0) {
		char s[200];
		long vr = t->ssl ? SSL_get_verify_result(t->ssl) : X509_V_OK;
		ERR_error_string_n(e, s, sizeof(s));
		if (vr != X509_V_OK)
			snprintf(out, cap, "%s (%s)", s, X509_verify_cert_error_string(vr));
		else
			snprintf(out, cap, "%s", s);
	} else if (ssl_err == SSL_ERROR_ZERO_RETURN || (ssl_err == SSL_ERROR_SYSCALL && sys_errno == 0)) {
		snprintf(out, cap, "%s%s", t->state != T_UP ?
		    "closed by the server during the TLS handshake" : "closed by the server",
		    t->state == T_UP && !t->answered ?
		    " before it answered (did it refuse the client certificate?)" : "");
	} else {
		snprintf(out, cap, "%s%s", sys_errno ? strerror(sys_errno) : "TLS failure",
		    t->state == T_UP && !t->answered ?
		    " before the server answered (did it refuse the client certificate?)" : "");
	}
	ERR_clear_error();
}

/* The TLS side ended or failed.  What the server sent last still reaches
 * the library before its connection closes. */
static void
tls_tunnel_server_gone(struct tls_tunnel *t, int ssl_err, int sys_errno)
{
	char why[300];
	int failure = !(t->answered && (ssl_err == SSL_ERROR_ZERO_RETURN ||
	    (ssl_err == SSL_ERROR_SYSCALL && sys_errno == 0 && ERR_peek_last_error() == 0)));

	tls_tunnel_reason(t, ssl_err, sys_errno, why, sizeof(why));
	if (failure)
		log_msg(t->quiet ? LOG_LVL_DEBUG : LOG_LVL_WARN, "%s: TLS to %s: %s", t->what,
		    t->peer, why);
	if (t->cfd >= 0 && tls_pipe_len(&t->to_local) > 0) {
		t->draining = 1;
		tls_tunnel_rearm(t);
		return;
	}
	tls_tunnel_free(t);
}

/* Writes what waits for the library; 0, or -1 when its side is gone. */
static int
tls_tunnel_flush_local(struct tls_tunnel *t)
{
	while (tls_pipe_len(&t->to_local) > 0) {
		ssize_t n = write(t->cfd, t->to_local.b.data + t->to_local.off,
		    tls_pipe_len(&t->to_local));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return 0;
		if (n <= 0)
			return -1;
		tls_pipe_consume(&t->to_local, (size_t)n);
	}
	return 0;
}

/* Encrypts what waits for the server; 0, or -1 (then t is freed). */
static int
tls_tunnel_flush_server(struct tls_tunnel *t)
{
	t->ssl_write_wants = 0;
	while (tls_pipe_len(&t->to_server) > 0) {
		/* at most TUNNEL_HIGH + one read: fits an int */
		int len = (int)tls_pipe_len(&t->to_server);
		errno = 0;        /* an EOF sets none: no stale EAGAIN */
		int n = SSL_write(t->ssl, t->to_server.b.data + t->to_server.off, len);
		if (n > 0) {
			tls_pipe_consume(&t->to_server, (size_t)n);
			continue;
		}
		int err = SSL_get_error(t->ssl, n);
		if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) {
			t->ssl_write_wants = err == SSL_ERROR_WANT_WRITE ? EV_WRITE : EV_READ;
			return 0;
		}
		tls_tunnel_server_gone(t, err, errno);
		return -1;
	}
	return 0;
}

/* Decrypts what the server sent; 0, or -1 (t freed or draining). */
static int
tls_tunnel_read_server(struct tls_tunnel *t)
{
	while (tls_pipe_len(&t->to_local) < TUNNEL_HIGH) {
		errno = 0;        /* an EOF sets none: no stale EAGAIN */
		int n = SSL_read(t->ssl, tls_io, sizeof(tls_io));
		if (n > 0) {
			t->answered = 1;
			buf_append(&t->to_local.b, tls_io, (size_t)n);
			/* Nothing buffered in OpenSSL: what the socket gets
			 * later comes with its own event, no read() that only
			 * says EAGAIN. */
			if ((size_t)n < sizeof(tls_io) && !SSL_has_pending(t->ssl))
				return 0;
			continue;
		}
		int err = SSL_get_error(t->ssl, n);
		if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
			return 0;
		tls_tunnel_server_gone(t, err, errno);
		return -1;
	}
	return 0;
}

/* Drives the handshake; 0 while it goes on or once done, -1 (t freed). */
static int
tls_tunnel_handshake(struct tls_tunnel *t)
{
	int n, err;

	errno = 0;
	n = SSL_connect(t->ssl);

	if (n == 1) {
		t->state = T_UP;
		t->ssl_write_wants = 0;
		if (t->cfd >= 0)
			event_del(t->deadline_ev);
		return tls_tunnel_flush_server(t);
	}
	err = SSL_get_error(t->ssl, n);
	if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
		t->ssl_write_wants = err == SSL_ERROR_WANT_WRITE ? EV_WRITE : EV_READ;
		return 0;
	}
	tls_tunnel_server_gone(t, err, errno);
	return -1;
}

static void
tls_tunnel_server_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tls_tunnel *t = arg;

	if (t->state == T_CONNECTING) {
		int soerr = 0;
		socklen_t sl = sizeof(soerr);
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
			soerr = errno;
		if (soerr != 0) {
			log_msg(t->quiet ? LOG_LVL_DEBUG : LOG_LVL_WARN, "%s: TLS to %s: %s",
			    t->what, t->peer, strerror(soerr));
			tls_tunnel_free(t);
			return;
		}
		t->state = T_HANDSHAKE;
	}
	if (t->state == T_HANDSHAKE) {
		if (tls_tunnel_handshake(t) < 0)
			return;
	} else {
		if ((what & EV_READ) && tls_tunnel_read_server(t) < 0)
			return;
		if (t->ssl_write_wants && tls_tunnel_flush_server(t) < 0)
			return;
	}
	if (t->cfd >= 0 && tls_tunnel_flush_local(t) < 0) {
		tls_tunnel_free(t);
		return;
	}
	tls_tunnel_rearm(t);
}

static void
tls_tunnel_local_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tls_tunnel *t = arg;

	if (what & EV_WRITE) {
		if (tls_tunnel_flush_local(t) < 0) {
			tls_tunnel_free(t);
			return;
		}
		if (t->draining && tls_pipe_len(&t->to_local) == 0) {
			tls_tunnel_free(t);
			return;
		}
		/* Reading stopped at TUNNEL_HIGH may have left decrypted bytes
		 * in OpenSSL, which epoll cannot announce. */
		if (!t->draining && t->state == T_UP && SSL_pending(t->ssl) > 0 &&
		    tls_pipe_len(&t->to_local) < TUNNEL_HIGH) {
			if (tls_tunnel_read_server(t) < 0)
				return;
			if (tls_tunnel_flush_local(t) < 0) {
				tls_tunnel_free(t);
				return;
			}
		}
	}
	if ((what & EV_READ) && !t->draining) {
		for (;;) {
			ssize_t n = read(fd, tls_io, sizeof(tls_io));
			if (n > 0) {
				buf_append(&t->to_server.b, tls_io, (size_t)n);
				if ((size_t)n < sizeof(tls_io) ||
				    tls_pipe_len(&t->to_server) >= TUNNEL_HIGH)
					break;
				continue;
			}
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && errno == EAGAIN)
				break;
			tls_tunnel_free(t);     /* the library closed its connection */
			return;
		}
		if (t->state == T_UP && tls_tunnel_flush_server(t) < 0)
			return;
	}
	tls_tunnel_rearm(t);
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
	t->cfd = c;
	if (t->state == T_UP)
		event_del(t->deadline_ev);
	tls_tunnel_rearm(t);
}

static void
tls_tunnel_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct tls_tunnel *t = arg;

	log_msg(t->quiet ? LOG_LVL_DEBUG : LOG_LVL_WARN, "%s: TLS to %s: %s", t->what, t->peer,
	    t->state == T_UP ? "the local side never connected" :
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
	struct addrinfo hints, *ai = NULL;
	struct sockaddr_un sa;
	struct timeval tv;
	const char *tmp = getenv("TMPDIR");
	char portstr[8];
	int rc;

	t->base = base;
	t->lfd = t->cfd = t->sfd = -1;
	t->quiet = quiet;
	t->state = T_CONNECTING;
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
	rc = getaddrinfo(host, portstr, &hints, &ai);   /* blocking, as hiredis's */
	if (rc != 0 || ai == NULL) {
		snprintf(why, wcap, "%s: %s", host, gai_strerror(rc));
		goto fail;
	}
	t->sfd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (t->sfd < 0 || (connect(t->sfd, ai->ai_addr, ai->ai_addrlen) < 0 &&
	    errno != EINPROGRESS)) {
		snprintf(why, wcap, "connect to %s: %s", t->peer, strerror(errno));
		goto fail;
	}
	{
		int one = 1;
		setsockopt(t->sfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	t->ssl = SSL_new(ctx);
	if (t->ssl == NULL || SSL_set_fd(t->ssl, t->sfd) != 1 ||
	    tls_tunnel_name(t->ssl, server_name[0] ? server_name : host) < 0) {
		snprintf(why, wcap, "cannot set up TLS for %s", server_name[0] ? server_name : host);
		goto fail;
	}
	SSL_set_mode(t->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	freeaddrinfo(ai);
	tls_tunnel_rearm(t);
	snprintf(path, cap, "%s", t->path);
	return t;
fail:
	if (ai)
		freeaddrinfo(ai);
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
