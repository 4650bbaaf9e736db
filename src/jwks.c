/*
 * jwks.c - JSON Web Key Sets for token verification: a bounded, synchronous
 * HTTP/1.1 GET (plain socket or OpenSSL TLS), JWKS parsing with jansson and
 * EVP_PKEY construction from JWK parameters with OSSL_PARAM_BLD.
 *
 * Runs in worker processes (from auth.c while verifying a token) and in the
 * supervisor only to validate the URL at config check (no fetch there: the
 * first lookup fetches).  See jwks.h for the cache and timeout rules.
 */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "b64.h"
#include "buf.h"
#include "jwks.h"
#include "log.h"
#include "xmalloc.h"

#define JWKS_MAGIC 0x4a574b53u /* "JWKS" */
#define JWKS_MAX_HEADER 16384

static int64_t def_ttl_ms = JWKS_CACHE_TTL_MS;
static int64_t def_refetch_ms = JWKS_MIN_REFETCH_MS;
static int def_timeout_ms = JWKS_TIMEOUT_MS;

struct jwks {
	unsigned magic;
	char *url;                    /* as configured, for messages */
	int tls;
	char *host;                   /* without brackets */
	char port[8];
	char *hostport;               /* Host: header value */
	char *path;                   /* begins with '/' */
	SSL_CTX *ssl_ctx;             /* lazily created for https */
	struct jwks_key *keys;
	size_t n_keys;
	int loaded;                   /* a fetch (or jwks_load) succeeded once */
	int attempted;                /* a fetch was tried at least once */
	int64_t fetched_at;           /* monotonic ms of the last success */
	int64_t attempt_at;           /* monotonic ms of the last attempt */
	char last_error[256];         /* "" after a successful fetch */
	int64_t ttl_ms;
	int64_t refetch_ms;
	int timeout_ms;
};

void
jwks_set_timing(int64_t cache_ttl_ms, int64_t min_refetch_ms, int timeout_ms)
{
	if (cache_ttl_ms >= 0)
		def_ttl_ms = cache_ttl_ms;
	if (min_refetch_ms >= 0)
		def_refetch_ms = min_refetch_ms;
	if (timeout_ms >= 0)
		def_timeout_ms = timeout_ms;
}

static int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- URL ------------------------------------------------------------- */

static int
url_parse(struct jwks *j, const char *url, struct buf *err)
{
	const char *p, *auth_end, *host_end, *colon;
	long port;
	char *end;

	if (strstr(url, "{{") != NULL) {
		buf_printf(err, "\"%s\" is a template: {{name}} placeholders are filled from "
			"named groups of issuer_regex/audience_regex, which POSIX regular "
			"expressions do not have; use a fixed URL", url);
		return -1;
	}
	if (strncasecmp(url, "http://", 7) == 0) {
		p = url + 7;
	} else if (strncasecmp(url, "https://", 8) == 0) {
		p = url + 8;
		j->tls = 1;
	} else {
		buf_printf(err, "\"%s\" is not an http:// or https:// URL", url);
		return -1;
	}
	auth_end = p + strcspn(p, "/?#");
	if (*auth_end == '#' ) {
		buf_printf(err, "\"%s\": fragment without a path", url);
		return -1;
	}
	if (memchr(p, '@', (size_t)(auth_end - p)) != NULL) {
		buf_printf(err, "\"%s\": user information in the URL is not supported", url);
		return -1;
	}
	if (*p == '[') {
		host_end = memchr(p, ']', (size_t)(auth_end - p));
		if (host_end == NULL) {
			buf_printf(err, "\"%s\": unterminated [IPv6] host", url);
			return -1;
		}
		j->host = xstrndup(p + 1, (size_t)(host_end - p - 1));
		colon = host_end + 1 < auth_end && host_end[1] == ':' ? host_end + 1 : NULL;
		if (colon == NULL && host_end + 1 != auth_end) {
			buf_printf(err, "\"%s\": junk after the [IPv6] host", url);
			return -1;
		}
	} else {
		colon = memchr(p, ':', (size_t)(auth_end - p));
		host_end = colon != NULL ? colon : auth_end;
		j->host = xstrndup(p, (size_t)(host_end - p));
	}
	if (j->host[0] == '\0') {
		buf_printf(err, "\"%s\" has no host", url);
		return -1;
	}
	if (colon != NULL) {
		errno = 0;
		port = strtol(colon + 1, &end, 10);
		if (end != auth_end || colon + 1 == end || errno != 0 || port < 1 || port > 65535) {
			buf_printf(err, "\"%s\": bad port", url);
			return -1;
		}
	} else {
		port = j->tls ? 443 : 80;
	}
	snprintf(j->port, sizeof(j->port), "%ld", port);
	j->hostport = xstrndup(p, (size_t)(auth_end - p));
	if (*auth_end == '/')
		j->path = xstrndup(auth_end, strcspn(auth_end, "#"));
	else {
		/* "?query" directly after the host */
		struct buf b = BUF_INIT;

		buf_putc(&b, '/');
		buf_append(&b, auth_end, strcspn(auth_end, "#"));
		j->path = buf_steal(&b, NULL);
		buf_free(&b);
	}
	if (strpbrk(j->path, " \r\n\t") != NULL || strpbrk(j->hostport, " \r\n\t") != NULL) {
		buf_printf(err, "\"%s\": whitespace in the URL", url);
		return -1;
	}
	return 0;
}

struct jwks *
jwks_new(const char *url, struct buf *err)
{
	struct jwks *j = xcalloc(1, sizeof(*j));

	j->magic = JWKS_MAGIC;
	j->url = xstrdup(url);
	j->ttl_ms = def_ttl_ms;
	j->refetch_ms = def_refetch_ms;
	j->timeout_ms = def_timeout_ms;
	if (url_parse(j, url, err) < 0) {
		jwks_free(j);
		return NULL;
	}
	return j;
}

static void
keys_free(struct jwks_key *keys, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		free(keys[i].kid);
		free(keys[i].alg);
		EVP_PKEY_free(keys[i].pkey);
	}
	free(keys);
}

void
jwks_free(struct jwks *j)
{
	if (j == NULL)
		return;
	ASSERT(j->magic == JWKS_MAGIC);
	keys_free(j->keys, j->n_keys);
	SSL_CTX_free(j->ssl_ctx);
	free(j->url);
	free(j->host);
	free(j->hostport);
	free(j->path);
	j->magic = 0;
	free(j);
}

/* ---- JWK -> EVP_PKEY ------------------------------------------------- */

/* Decodes base64url member name of jwk; NULL with a message if absent/bad. */
static unsigned char *
jwk_bytes(json_t *jwk, const char *name, size_t *len, char *msg, size_t msgsz)
{
	const char *s = json_string_value(json_object_get(jwk, name));
	struct buf b = BUF_INIT;

	if (s == NULL) {
		snprintf(msg, msgsz, "no \"%s\" string", name);
		return NULL;
	}
	/* tolerate the padding some issuers add */
	if (b64_decode(s, strcspn(s, "="), 1, &b) != 0 || b.len == 0) {
		buf_free(&b);
		snprintf(msg, msgsz, "\"%s\" is not base64url", name);
		return NULL;
	}
	return (unsigned char *)buf_steal(&b, len);
}

static EVP_PKEY *
pkey_fromdata(const char *type, OSSL_PARAM_BLD *bld)
{
	OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
	EVP_PKEY *pkey = NULL;

	if (params == NULL || ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1) {
		EVP_PKEY_free(pkey);
		pkey = NULL;
	}
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	return pkey;
}

static EVP_PKEY *
jwk_rsa(json_t *jwk, char *msg, size_t msgsz)
{
	unsigned char *n = NULL, *e = NULL;
	size_t nlen = 0, elen = 0;
	BIGNUM *bn = NULL, *be = NULL;
	OSSL_PARAM_BLD *bld = NULL;
	EVP_PKEY *pkey = NULL;

	n = jwk_bytes(jwk, "n", &nlen, msg, msgsz);
	e = n != NULL ? jwk_bytes(jwk, "e", &elen, msg, msgsz) : NULL;
	if (e == NULL)
		goto out;
	if (nlen > 2048 || elen > 8) {
		snprintf(msg, msgsz, "RSA parameters too large");
		goto out;
	}
	bn = BN_bin2bn(n, (int)nlen, NULL);
	be = BN_bin2bn(e, (int)elen, NULL);
	bld = OSSL_PARAM_BLD_new();
	if (bn == NULL || be == NULL || bld == NULL ||
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) != 1 ||
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be) != 1) {
		snprintf(msg, msgsz, "cannot build RSA parameters");
		goto out;
	}
	pkey = pkey_fromdata("RSA", bld);
	if (pkey == NULL)
		snprintf(msg, msgsz, "OpenSSL rejects the RSA key");
	else if (EVP_PKEY_get_bits(pkey) < 1024) {
		snprintf(msg, msgsz, "RSA key of %d bits is too small", EVP_PKEY_get_bits(pkey));
		EVP_PKEY_free(pkey);
		pkey = NULL;
	}
out:
	OSSL_PARAM_BLD_free(bld);
	BN_free(bn);
	BN_free(be);
	free(n);
	free(e);
	return pkey;
}

static EVP_PKEY *
jwk_ec(json_t *jwk, int *bits, char *msg, size_t msgsz)
{
	static const struct { const char *crv, *group; int bits; } curves[] = {
		{ "P-256", "prime256v1", 256 },
		{ "P-384", "secp384r1", 384 },
		{ "P-521", "secp521r1", 521 },
	};
	const char *crv = json_string_value(json_object_get(jwk, "crv"));
	unsigned char *x = NULL, *y = NULL, *pt = NULL;
	size_t xlen = 0, ylen = 0, clen, i, c = 3;
	OSSL_PARAM_BLD *bld = NULL;
	EVP_PKEY_CTX *cctx = NULL;
	EVP_PKEY *pkey = NULL;

	for (i = 0; crv != NULL && i < 3; i++) {
		if (strcmp(crv, curves[i].crv) == 0)
			c = i;
	}
	if (c == 3) {
		snprintf(msg, msgsz, "EC crv is not P-256, P-384 or P-521");
		return NULL;
	}
	clen = ((size_t)curves[c].bits + 7) / 8;
	x = jwk_bytes(jwk, "x", &xlen, msg, msgsz);
	y = x != NULL ? jwk_bytes(jwk, "y", &ylen, msg, msgsz) : NULL;
	if (y == NULL)
		goto out;
	if (xlen != clen || ylen != clen) {
		snprintf(msg, msgsz, "EC x/y are not %zu bytes", clen);
		goto out;
	}
	pt = xmalloc(1 + 2 * clen);
	pt[0] = 0x04; /* uncompressed point */
	memcpy(pt + 1, x, clen);
	memcpy(pt + 1 + clen, y, clen);
	bld = OSSL_PARAM_BLD_new();
	if (bld == NULL ||
	    OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
		curves[c].group, 0) != 1 ||
	    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt,
		1 + 2 * clen) != 1) {
		snprintf(msg, msgsz, "cannot build EC parameters");
		goto out;
	}
	pkey = pkey_fromdata("EC", bld);
	cctx = pkey != NULL ? EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL) : NULL;
	if (pkey == NULL || cctx == NULL || EVP_PKEY_public_check(cctx) != 1) {
		snprintf(msg, msgsz, "EC point is not on curve %s", curves[c].crv);
		EVP_PKEY_free(pkey);
		pkey = NULL;
	} else {
		*bits = curves[c].bits;
	}
out:
	EVP_PKEY_CTX_free(cctx);
	OSSL_PARAM_BLD_free(bld);
	free(pt);
	free(x);
	free(y);
	return pkey;
}

static EVP_PKEY *
jwk_okp(json_t *jwk, char *msg, size_t msgsz)
{
	const char *crv = json_string_value(json_object_get(jwk, "crv"));
	unsigned char *x;
	size_t xlen = 0;
	OSSL_PARAM_BLD *bld;
	EVP_PKEY *pkey = NULL;

	if (crv == NULL || strcmp(crv, "Ed25519") != 0) {
		snprintf(msg, msgsz, "OKP crv is not Ed25519");
		return NULL;
	}
	x = jwk_bytes(jwk, "x", &xlen, msg, msgsz);
	if (x == NULL)
		return NULL;
	if (xlen != 32) {
		snprintf(msg, msgsz, "Ed25519 x is not 32 bytes");
		free(x);
		return NULL;
	}
	bld = OSSL_PARAM_BLD_new();
	if (bld != NULL &&
	    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, x, xlen) == 1)
		pkey = pkey_fromdata("ED25519", bld);
	if (pkey == NULL)
		snprintf(msg, msgsz, "OpenSSL rejects the Ed25519 key");
	OSSL_PARAM_BLD_free(bld);
	free(x);
	return pkey;
}

/* Fills *k from one JWK; returns 0, or -1 with a reason in msg. */
static int
jwk_parse(json_t *jwk, struct jwks_key *k, char *msg, size_t msgsz)
{
	const char *kty, *kid, *use, *alg;
	json_t *a;

	memset(k, 0, sizeof(*k));
	if (!json_is_object(jwk)) {
		snprintf(msg, msgsz, "not a JSON object");
		return -1;
	}
	kid = json_string_value(json_object_get(jwk, "kid"));
	kty = json_string_value(json_object_get(jwk, "kty"));
	use = json_string_value(json_object_get(jwk, "use"));
	a = json_object_get(jwk, "alg");
	alg = json_string_value(a);
	if (kid == NULL || kid[0] == '\0') {
		snprintf(msg, msgsz, "no \"kid\"");
		return -1;
	}
	if (kty == NULL) {
		snprintf(msg, msgsz, "no \"kty\"");
		return -1;
	}
	if (use != NULL && strcmp(use, "sig") != 0) {
		snprintf(msg, msgsz, "\"use\" is \"%.16s\", not \"sig\"", use);
		return -1;
	}
	if (a != NULL && !json_is_null(a) && alg == NULL) {
		snprintf(msg, msgsz, "\"alg\" is not a string");
		return -1;
	}
	if (strcmp(kty, "RSA") == 0) {
		k->kty = JWKS_KTY_RSA;
		k->pkey = jwk_rsa(jwk, msg, msgsz);
	} else if (strcmp(kty, "EC") == 0) {
		k->kty = JWKS_KTY_EC;
		k->pkey = jwk_ec(jwk, &k->ec_bits, msg, msgsz);
	} else if (strcmp(kty, "OKP") == 0) {
		k->kty = JWKS_KTY_OKP;
		k->pkey = jwk_okp(jwk, msg, msgsz);
	} else {
		snprintf(msg, msgsz, "unsupported kty \"%.16s\"", kty);
		return -1;
	}
	ERR_clear_error();
	if (k->pkey == NULL)
		return -1;
	k->kid = xstrdup(kid);
	k->alg = alg != NULL && alg[0] != '\0' ? xstrdup(alg) : NULL;
	return 0;
}

int
jwks_load(struct jwks *j, const char *doc, size_t len, struct buf *err)
{
	json_t *root, *arr, *e;
	json_error_t jerr;
	struct jwks_key *keys;
	size_t i, n = 0, skipped = 0;
	char msg[160], first[200] = "";

	ASSERT(j != NULL && j->magic == JWKS_MAGIC);
	root = json_loadb(doc, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!json_is_object(root)) {
		if (root == NULL)
			buf_printf(err, "JWKS document is not JSON: %s (line %d)",
				jerr.text, jerr.line);
		else
			buf_printf(err, "JWKS document is not a JSON object");
		json_decref(root);
		return -1;
	}
	arr = json_object_get(root, "keys");
	if (!json_is_array(arr)) {
		buf_printf(err, "JWKS document has no \"keys\" array");
		json_decref(root);
		return -1;
	}
	keys = xcalloc(json_array_size(arr) + 1, sizeof(*keys));
	json_array_foreach(arr, i, e) {
		if (jwk_parse(e, &keys[n], msg, sizeof(msg)) == 0) {
			n++;
			continue;
		}
		if (skipped++ == 0)
			snprintf(first, sizeof(first), "key %zu: %s", i, msg);
	}
	json_decref(root);
	if (skipped > 0)
		log_warn("jwks: %s: skipped %zu unusable key(s), first %s", j->url,
			skipped, first);
	keys_free(j->keys, j->n_keys);
	j->keys = keys;
	j->n_keys = n;
	j->loaded = 1;
	j->fetched_at = mono_ms();
	j->last_error[0] = '\0';
	return (int)n;
}

/* ---- HTTP ------------------------------------------------------------ */

struct conn {
	int fd;
	SSL *ssl;
	int64_t deadline;             /* monotonic ms */
};

/* Waits until fd is ready for events or the deadline passes. */
static int
conn_wait(struct conn *c, short events, const char *what, struct buf *err)
{
	struct pollfd pfd;
	int64_t left;
	int rc;

	for (;;) {
		left = c->deadline - mono_ms();
		if (left <= 0) {
			buf_printf(err, "timed out while %s", what);
			return -1;
		}
		pfd.fd = c->fd;
		pfd.events = events;
		pfd.revents = 0;
		rc = poll(&pfd, 1, (int)left);
		if (rc > 0)
			return 0;
		if (rc < 0 && errno != EINTR) {
			buf_printf(err, "poll: %s", strerror(errno));
			return -1;
		}
	}
}

/* For a TLS call that returned rc: 1 retry after waiting, -1 fail, 0 EOF. */
static int
ssl_retry(struct conn *c, int rc, const char *what, struct buf *err)
{
	unsigned long e;
	char ebuf[160];

	switch (SSL_get_error(c->ssl, rc)) {
	case SSL_ERROR_WANT_READ:
		return conn_wait(c, POLLIN, what, err) == 0 ? 1 : -1;
	case SSL_ERROR_WANT_WRITE:
		return conn_wait(c, POLLOUT, what, err) == 0 ? 1 : -1;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	case SSL_ERROR_SYSCALL:
		if (errno == 0) {
			return 0;
		}
		buf_printf(err, "%s: %s", what, strerror(errno));
		return -1;
	default:
		e = ERR_get_error();
		if (ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED) {
			buf_printf(err, "%s: certificate verification failed: %s", what,
				X509_verify_cert_error_string(SSL_get_verify_result(c->ssl)));
		} else {
			ERR_error_string_n(e, ebuf, sizeof(ebuf));
			buf_printf(err, "%s: %s", what, e != 0 ? ebuf : "TLS error");
		}
		ERR_clear_error();
		return -1;
	}
}

static int
conn_write(struct conn *c, const char *p, size_t n, struct buf *err)
{
	size_t done;
	ssize_t w;
	int rc;

	while (n > 0) {
		if (c->ssl != NULL) {
			done = 0;
			ERR_clear_error();
			errno = 0;
			rc = SSL_write_ex(c->ssl, p, n, &done);
			if (rc != 1) {
				rc = ssl_retry(c, rc, "sending the request", err);
				if (rc <= 0) {
					if (rc == 0)
						buf_puts(err, "connection closed while sending the request");
					return -1;
				}
				continue;
			}
			p += done;
			n -= done;
			continue;
		}
		w = send(c->fd, p, n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				if (conn_wait(c, POLLOUT, "sending the request", err) < 0)
					return -1;
				continue;
			}
			buf_printf(err, "send: %s", strerror(errno));
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Reads some bytes: returns the count, 0 at EOF, -1 on error/timeout. */
static ssize_t
conn_read(struct conn *c, char *p, size_t n, struct buf *err)
{
	size_t got;
	ssize_t r;
	int rc;

	for (;;) {
		if (c->ssl != NULL) {
			got = 0;
			ERR_clear_error();
			errno = 0;
			rc = SSL_read_ex(c->ssl, p, n, &got);
			if (rc == 1)
				return (ssize_t)got;
			rc = ssl_retry(c, rc, "reading the response", err);
			if (rc <= 0)
				return rc;
			continue;
		}
		r = recv(c->fd, p, n, 0);
		if (r >= 0)
			return r;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			if (conn_wait(c, POLLIN, "reading the response", err) < 0)
				return -1;
			continue;
		}
		buf_printf(err, "recv: %s", strerror(errno));
		return -1;
	}
}

/* Non-blocking connect to one address within the deadline. */
static int
conn_connect(struct conn *c, const struct addrinfo *ai, struct buf *err)
{
	int soerr = 0;
	socklen_t sl = sizeof(soerr);

	c->fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
		ai->ai_protocol);
	if (c->fd < 0) {
		buf_printf(err, "socket: %s", strerror(errno));
		return -1;
	}
	if (connect(c->fd, ai->ai_addr, ai->ai_addrlen) == 0)
		return 0;
	if (errno != EINPROGRESS) {
		buf_printf(err, "connect: %s", strerror(errno));
		goto fail;
	}
	if (conn_wait(c, POLLOUT, "connecting", err) < 0)
		goto fail;
	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
		soerr = errno;
	if (soerr != 0) {
		buf_printf(err, "connect: %s", strerror(soerr));
		goto fail;
	}
	return 0;
fail:
	close(c->fd);
	c->fd = -1;
	return -1;
}

static int
tls_start(struct jwks *j, struct conn *c, struct buf *err)
{
	struct in6_addr a6;
	int rc;

	if (j->ssl_ctx == NULL) {
		j->ssl_ctx = SSL_CTX_new(TLS_client_method());
		if (j->ssl_ctx == NULL) {
			buf_puts(err, "SSL_CTX_new failed");
			ERR_clear_error();
			return -1;
		}
		SSL_CTX_set_min_proto_version(j->ssl_ctx, TLS1_2_VERSION);
		SSL_CTX_set_verify(j->ssl_ctx, SSL_VERIFY_PEER, NULL);
		SSL_CTX_set_options(j->ssl_ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
		if (SSL_CTX_set_default_verify_paths(j->ssl_ctx) != 1)
			log_warn("jwks: SSL_CTX_set_default_verify_paths failed");
		ERR_clear_error();
	}
	c->ssl = SSL_new(j->ssl_ctx);
	if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1) {
		buf_puts(err, "SSL_new failed");
		ERR_clear_error();
		return -1;
	}
	if (inet_pton(AF_INET, j->host, &a6) == 1 || inet_pton(AF_INET6, j->host, &a6) == 1) {
		/* IP literal: no SNI (RFC 6066 §3), match the certificate's IP SAN */
		if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), j->host) != 1) {
			buf_puts(err, "cannot set the IP address to verify");
			return -1;
		}
	} else if (SSL_set_tlsext_host_name(c->ssl, j->host) != 1 ||
	    SSL_set1_host(c->ssl, j->host) != 1) {
		buf_puts(err, "cannot set the TLS host name");
		ERR_clear_error();
		return -1;
	}
	for (;;) {
		ERR_clear_error();
		errno = 0;
		rc = SSL_connect(c->ssl);
		if (rc == 1)
			return 0;
		rc = ssl_retry(c, rc, "TLS handshake", err);
		if (rc < 0)
			return -1;
		if (rc == 0) {
			buf_puts(err, "connection closed during the TLS handshake");
			return -1;
		}
	}
}

/*
 * Looks at the response so far.  Returns 1 with the body in *body when it is
 * complete, 0 when more bytes are needed, -1 with a message when malformed
 * or not a 200.  eof: the peer closed the connection.
 */
static int
http_parse(const char *p, size_t n, int eof, struct buf *body, struct buf *err)
{
	const char *hend, *line, *eol, *q, *end = p + n;
	int status = 0, chunked = 0, have_len = 0;
	unsigned long long clen = 0, csize;
	char *e;

	hend = memmem(p, n, "\r\n\r\n", 4);
	if (hend == NULL) {
		if (n > JWKS_MAX_HEADER) {
			buf_puts(err, "response header too large");
			return -1;
		}
		if (eof) {
			buf_puts(err, n == 0 ? "empty response" : "truncated response header");
			return -1;
		}
		return 0;
	}
	/* hend is at index >= 0, so p[0..hend+4) is in bounds */
	if ((size_t)(hend - p) < 12 || memcmp(p, "HTTP/1.", 7) != 0 || p[8] != ' ' ||
	    p[9] < '1' || p[9] > '5' || p[10] < '0' || p[10] > '9' ||
	    p[11] < '0' || p[11] > '9') {
		buf_puts(err, "not an HTTP/1.x response");
		return -1;
	}
	status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
	if (status != 200) {
		eol = memchr(p, '\r', (size_t)(hend - p) + 1);
		buf_printf(err, "HTTP status \"%.*s\"", (int)(eol - p - 9 > 60 ? 60 : eol - p - 9),
			p + 9);
		return -1;
	}
	line = (const char *)memmem(p, (size_t)(hend - p) + 2, "\r\n", 2) + 2;
	for (; line < hend + 2; line = eol + 2) {
		eol = memmem(line, (size_t)(hend + 2 - line), "\r\n", 2);
		if (eol == NULL)
			break;
		if ((size_t)(eol - line) > 15 && strncasecmp(line, "content-length:", 15) == 0) {
			errno = 0;
			clen = strtoull(line + 15, &e, 10);
			if (errno != 0 || e == line + 15) {
				buf_puts(err, "bad Content-Length");
				return -1;
			}
			have_len = 1;
		} else if ((size_t)(eol - line) > 18 &&
		    strncasecmp(line, "transfer-encoding:", 18) == 0) {
			for (q = line + 18; q + 7 <= eol; q++) {
				if (strncasecmp(q, "chunked", 7) == 0)
					chunked = 1;
			}
		}
	}
	q = hend + 4;
	if (chunked) {
		buf_reset(body);
		for (;;) {
			eol = memmem(q, (size_t)(end - q), "\r\n", 2);
			if (eol == NULL)
				goto more;
			errno = 0;
			csize = strtoull(q, &e, 16);
			if (e == q || errno != 0 || csize > JWKS_MAX_RESPONSE ||
			    (e != eol && *e != ';' && *e != ' ')) {
				buf_puts(err, "bad chunk size");
				return -1;
			}
			q = eol + 2;
			if (csize == 0) {
				/* trailers until an empty line */
				for (;;) {
					eol = memmem(q, (size_t)(end - q), "\r\n", 2);
					if (eol == NULL)
						goto more;
					if (eol == q)
						return 1;
					q = eol + 2;
				}
			}
			if ((size_t)(end - q) < csize + 2)
				goto more;
			if (q[csize] != '\r' || q[csize + 1] != '\n') {
				buf_puts(err, "bad chunk framing");
				return -1;
			}
			buf_append(body, q, csize);
			q += csize + 2;
		}
	}
	if (have_len) {
		if (clen > JWKS_MAX_RESPONSE) {
			buf_puts(err, "response body too large");
			return -1;
		}
		if ((size_t)(end - q) < clen)
			goto more;
		buf_reset(body);
		buf_append(body, q, clen);
		return 1;
	}
	if (!eof)
		return 0;
	buf_reset(body);
	buf_append(body, q, (size_t)(end - q));
	return 1;
more:
	if (eof) {
		buf_puts(err, "truncated response body");
		return -1;
	}
	return 0;
}

/* One GET attempt within timeout_ms; the body lands in body. */
static int
http_get_once(struct jwks *j, struct buf *body, struct buf *err)
{
	struct addrinfo hints, *res = NULL, *ai;
	struct conn c = { -1, NULL, 0 };
	struct buf req = BUF_INIT, resp = BUF_INIT;
	char chunk[16384];
	ssize_t r;
	int rc = -1, gai;

	c.deadline = mono_ms() + j->timeout_ms;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	gai = getaddrinfo(j->host, j->port, &hints, &res);
	if (gai != 0) {
		buf_printf(err, "resolving %s: %s", j->host, gai_strerror(gai));
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		buf_reset(err);
		if (conn_connect(&c, ai, err) == 0)
			break;
	}
	freeaddrinfo(res);
	if (c.fd < 0)
		goto out;
	if (j->tls && tls_start(j, &c, err) < 0)
		goto out;
	buf_printf(&req, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: centrifugo-jwks\r\n"
		"Accept: application/json\r\nConnection: close\r\n\r\n", j->path, j->hostport);
	if (conn_write(&c, req.data, req.len, err) < 0)
		goto out;
	for (;;) {
		r = conn_read(&c, chunk, sizeof(chunk), err);
		if (r < 0)
			goto out;
		buf_append(&resp, chunk, (size_t)r);
		if (resp.len > JWKS_MAX_RESPONSE + JWKS_MAX_HEADER) {
			buf_puts(err, "response too large");
			goto out;
		}
		rc = http_parse(resp.data, resp.len, r == 0, body, err);
		if (rc != 0)
			break;
	}
	rc = rc == 1 ? 0 : -1;
out:
	if (c.ssl != NULL) {
		if (rc == 0)
			SSL_shutdown(c.ssl);
		SSL_free(c.ssl);
	}
	ERR_clear_error();
	if (c.fd >= 0)
		close(c.fd);
	buf_free(&req);
	buf_free(&resp);
	return rc;
}

/* Fetches and loads the set: two attempts.  Records the outcome in j. */
static int
jwks_fetch(struct jwks *j)
{
	struct buf body = BUF_INIT, err = BUF_INIT;
	int attempt, n = -1;

	j->attempted = 1;
	j->attempt_at = mono_ms();
	for (attempt = 0; attempt < 2 && n < 0; attempt++) {
		buf_reset(&err);
		buf_reset(&body);
		if (http_get_once(j, &body, &err) == 0)
			n = jwks_load(j, body.data != NULL ? body.data : "", body.len, &err);
	}
	if (n < 0) {
		snprintf(j->last_error, sizeof(j->last_error), "%s", buf_cstr(&err));
		log_warn("jwks: GET %s failed (2 attempts): %s%s", j->url, j->last_error,
			j->loaded ? "; keeping the keys fetched before" : "");
	} else {
		log_info("jwks: GET %s: %d usable key(s)", j->url, n);
	}
	buf_free(&body);
	buf_free(&err);
	return n < 0 ? -1 : 0;
}

static const struct jwks_key *
find_key(const struct jwks *j, const char *kid)
{
	size_t i;

	for (i = 0; i < j->n_keys; i++) {
		if (strcmp(j->keys[i].kid, kid) == 0)
			return &j->keys[i];
	}
	return NULL;
}

const struct jwks_key *
jwks_lookup(struct jwks *j, const char *kid, struct buf *why)
{
	const struct jwks_key *k;
	int64_t now = mono_ms();
	int expired, fetched = 0;

	ASSERT(j != NULL && j->magic == JWKS_MAGIC);
	k = find_key(j, kid);
	expired = !j->loaded || now - j->fetched_at >= j->ttl_ms;
	if ((k == NULL || expired) &&
	    (!j->attempted || now - j->attempt_at >= j->refetch_ms)) {
		jwks_fetch(j);
		fetched = 1;
		k = find_key(j, kid);
	}
	if (k != NULL)
		return k;
	if (why == NULL)
		return NULL;
	if (!j->loaded)
		buf_printf(why, "JWKS %s unavailable: %s", j->url,
			j->last_error[0] != '\0' ? j->last_error : "not fetched yet");
	else
		buf_printf(why, "no key with kid \"%.64s\" in JWKS %s%s%s%s", kid, j->url,
			fetched ? "" : " (refetch rate-limited)",
			j->last_error[0] != '\0' ? "; last fetch failed: " : "", j->last_error);
	return NULL;
}
