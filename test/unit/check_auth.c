/*
 * check_auth.c - unit tests for auth.c (JWT verification, protocol.md §6).
 *
 * Keys are generated at start with OpenSSL (RSA 2048, EC P-256 and P-384)
 * and inherited by the forked tests; tokens are signed here with OpenSSL
 * (ES signatures converted from DER to JWS r||s) and, as an independent
 * cross-check, with libjwt.
 *
 * The "jwks" case serves JWK Sets from a small HTTP(S) server forked per
 * test on 127.0.0.1:0 (TLS with a self-signed certificate trusted through
 * SSL_CERT_FILE) and counts its requests to check caching, refetch on an
 * unknown kid and the refetch rate limit.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <check.h>
#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "auth.h"
#include "buf.h"
#include "jwks.h"
#include "xmalloc.h"

#define NOW 1700000000
#define SECRET "secret"

/* Extra zero bytes tok_pk() appends to an r||s signature. */
static int es_extra;
static EVP_PKEY *rsa_key, *ec256_key, *ec384_key;
static char *rsa_pub, *rsa_priv, *rsa_cert, *ec256_pub, *ec256_priv, *ec384_pub;

/* ---- helpers --------------------------------------------------------- */

static void
b64url(struct buf *b, const void *p, size_t n)
{
	static const char tbl[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	const unsigned char *s = p;
	unsigned acc = 0, bits = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		acc = (acc << 8) | s[i];
		bits += 8;
		while (bits >= 6) {
			bits -= 6;
			buf_putc(b, tbl[(acc >> bits) & 63]);
		}
	}
	if (bits > 0)
		buf_putc(b, tbl[(acc << (6 - bits)) & 63]);
}

static char *
std_b64(const char *s)
{
	size_t n = strlen(s);
	char *out = xmalloc(4 * ((n + 2) / 3) + 1);

	EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)s, (int)n);
	return out;
}

/* "header.claims" in base64url, appended to b. */
static void
signing_input(struct buf *b, const char *header, const char *claims)
{
	b64url(b, header, strlen(header));
	buf_putc(b, '.');
	b64url(b, claims, strlen(claims));
}

/* Token with an explicit header and raw signature bytes. */
static char *
tok_raw(const char *header, const char *claims, const void *sig, size_t siglen)
{
	struct buf b = BUF_INIT;

	signing_input(&b, header, claims);
	buf_putc(&b, '.');
	b64url(&b, sig, siglen);
	return buf_steal(&b, NULL);
}

static const EVP_MD *
md_for(int bits)
{
	return bits == 256 ? EVP_sha256() : bits == 384 ? EVP_sha384() : EVP_sha512();
}

static char *
tok_hs(int bits, const char *secret, const char *header, const char *claims)
{
	struct buf b = BUF_INIT;
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen;

	signing_input(&b, header, claims);
	HMAC(md_for(bits), secret, (int)strlen(secret), (unsigned char *)b.data, b.len,
		mac, &maclen);
	buf_putc(&b, '.');
	b64url(&b, mac, maclen);
	return buf_steal(&b, NULL);
}

/* RS* or ES* signature; ec_bytes > 0 converts DER to r||s of that size. */
static char *
tok_pk(EVP_PKEY *key, int bits, int ec_bytes, const char *header, const char *claims)
{
	struct buf b = BUF_INIT;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char sig[1024], rs[140] = { 0 };
	size_t siglen = sizeof(sig);

	signing_input(&b, header, claims);
	ck_assert(EVP_DigestSignInit(ctx, NULL, md_for(bits), NULL, key) == 1);
	ck_assert(EVP_DigestSign(ctx, sig, &siglen, (unsigned char *)b.data, b.len) == 1);
	EVP_MD_CTX_free(ctx);
	buf_putc(&b, '.');
	if (ec_bytes > 0) {
		const unsigned char *p = sig;
		ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)siglen);
		ck_assert(es != NULL);
		ck_assert(BN_bn2binpad(ECDSA_SIG_get0_r(es), rs, ec_bytes) == ec_bytes);
		ck_assert(BN_bn2binpad(ECDSA_SIG_get0_s(es), rs + ec_bytes, ec_bytes) == ec_bytes);
		ECDSA_SIG_free(es);
		b64url(&b, rs, 2 * (size_t)ec_bytes + (size_t)es_extra);
	} else {
		b64url(&b, sig, siglen);
	}
	return buf_steal(&b, NULL);
}

/* For setup in main(), outside any test. */
#define REQUIRE(e) do { if (!(e)) { fprintf(stderr, "check_auth: setup failed: %s\n", #e); exit(1); } } while (0)

static char *
pem_pub(EVP_PKEY *k)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *p;
	long n;

	REQUIRE(PEM_write_bio_PUBKEY(bio, k) == 1);
	n = BIO_get_mem_data(bio, &p);
	p = xstrndup(p, (size_t)n);
	BIO_free(bio);
	return p;
}

static char *
pem_priv(EVP_PKEY *k)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *p;
	long n;

	REQUIRE(PEM_write_bio_PrivateKey(bio, k, NULL, NULL, 0, NULL, NULL) == 1);
	n = BIO_get_mem_data(bio, &p);
	p = xstrndup(p, (size_t)n);
	BIO_free(bio);
	return p;
}

static char *
pem_cert(EVP_PKEY *k)
{
	X509 *x = X509_new();
	BIO *bio = BIO_new(BIO_s_mem());
	char *p;
	long n;

	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, k);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
		(const unsigned char *)"test", -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	REQUIRE(X509_sign(x, k, EVP_sha256()) > 0);
	REQUIRE(PEM_write_bio_X509(bio, x) == 1);
	n = BIO_get_mem_data(bio, &p);
	p = xstrndup(p, (size_t)n);
	BIO_free(bio);
	X509_free(x);
	return p;
}

static struct auth_verifier *
mkv(const struct auth_keys *k)
{
	struct buf err = BUF_INIT;
	struct auth_verifier *v = auth_verifier_new(k, &err);

	ck_assert_msg(v != NULL, "auth_verifier_new: %s", buf_cstr(&err));
	buf_free(&err);
	return v;
}

static struct auth_verifier *
hmac_verifier(void)
{
	struct auth_keys k = { .hmac_secret_key = SECRET };

	return mkv(&k);
}

/* Verifies a connection token, frees it, returns the result; on AUTH_OK
 * the claims are left in *c for the caller to check and free. */
static enum auth_result
conn(struct auth_verifier *v, char *tok, struct auth_conn_claims *c)
{
	struct buf why = BUF_INIT;
	enum auth_result r;

	r = auth_verify_connection(v, tok, strlen(tok), NOW, c, &why);
	if (r != AUTH_OK)
		ck_assert_msg(why.len > 0, "no reason given for %s", auth_result_name(r));
	buf_free(&why);
	free(tok);
	return r;
}

/* Connection token result, claims discarded. */
static enum auth_result
conn_r(struct auth_verifier *v, char *tok)
{
	struct auth_conn_claims c;
	enum auth_result r = conn(v, tok, &c);

	auth_conn_claims_free(&c);
	return r;
}

static enum auth_result
hs_r(const char *claims)
{
	struct auth_verifier *v = hmac_verifier();
	enum auth_result r = conn_r(v, auth_make_hs256(SECRET, claims));

	auth_verifier_free(v);
	return r;
}

static enum auth_result
sub(struct auth_verifier *v, char *tok, struct auth_sub_claims *c)
{
	struct buf why = BUF_INIT;
	enum auth_result r;

	r = auth_verify_subscription(v, tok, strlen(tok), NOW, c, &why);
	if (r != AUTH_OK)
		ck_assert(why.len > 0);
	buf_free(&why);
	free(tok);
	return r;
}

static enum auth_result
sub_r(const char *claims)
{
	struct auth_verifier *v = hmac_verifier();
	struct auth_sub_claims c;
	enum auth_result r = sub(v, auth_make_hs256(SECRET, claims), &c);

	auth_sub_claims_free(&c);
	auth_verifier_free(v);
	return r;
}

#define HDR(alg) "{\"alg\":\"" alg "\",\"typ\":\"JWT\"}"

/* ---- algorithms ------------------------------------------------------ */

START_TEST(test_hs_valid)
{
	struct auth_verifier *v = hmac_verifier();
	struct auth_conn_claims c;
	const char *cl = "{\"sub\":\"42\",\"exp\":1700003600,\"iat\":1699999999,"
		"\"jti\":\"j1\",\"info\": {\"name\":\"Ann\",\"x\":0.1} ,"
		"\"channels\":[\"news\",\"chat:1\"],\"meta\":[1,2e3]}";

	ck_assert_int_eq(conn(v, tok_hs(256, SECRET, HDR("HS256"), cl), &c), AUTH_OK);
	ck_assert_str_eq(c.user, "42");
	ck_assert(c.has_exp && c.exp == 1700003600);
	ck_assert(!c.has_expire_at);
	ck_assert(c.iat == 1699999999);
	ck_assert_str_eq(c.jti, "j1");
	/* the token's own bytes, 0.1 not re-serialised */
	ck_assert_str_eq(c.info, "{\"name\":\"Ann\",\"x\":0.1}");
	ck_assert_uint_eq(c.info_len, strlen(c.info));
	ck_assert_uint_eq(c.n_channels, 2);
	ck_assert_str_eq(c.channels[0], "news");
	ck_assert_str_eq(c.channels[1], "chat:1");
	ck_assert_str_eq(c.meta, "[1,2e3]");
	ck_assert_uint_eq(c.n_subs, 0);
	auth_conn_claims_free(&c);

	ck_assert_int_eq(conn_r(v, tok_hs(384, SECRET, HDR("HS384"), cl)), AUTH_OK);
	ck_assert_int_eq(conn_r(v, tok_hs(512, SECRET, HDR("HS512"), cl)), AUTH_OK);
	/* header without typ, and typ other than JWT, are fine */
	ck_assert_int_eq(conn_r(v, tok_hs(256, SECRET, "{\"alg\":\"HS256\"}", cl)), AUTH_OK);
	ck_assert_int_eq(conn_r(v, tok_hs(256, SECRET,
		"{\"alg\":\"HS256\",\"typ\":\"at+jwt\"}", cl)), AUTH_OK);
	/* alg names are case-sensitive */
	ck_assert_int_eq(conn_r(v, tok_hs(256, SECRET, HDR("hs256"), cl)), AUTH_INVALID);
	/* alg/signature length mismatch */
	ck_assert_int_eq(conn_r(v, tok_hs(256, SECRET, HDR("HS512"), cl)), AUTH_INVALID);
	auth_verifier_free(v);
}
END_TEST

START_TEST(test_make_hmac)
{
	struct auth_verifier *v = hmac_verifier();
	struct auth_conn_claims c;

	ck_assert_int_eq(conn(v, auth_make_hs256(SECRET, "{\"sub\":\"u\"}"), &c), AUTH_OK);
	ck_assert_str_eq(c.user, "u");
	ck_assert(!c.has_exp && c.exp == 0);
	ck_assert(c.info == NULL && c.meta == NULL && c.jti == NULL);
	auth_conn_claims_free(&c);
	ck_assert_int_eq(conn_r(v, auth_make_hmac("HS384", SECRET, "{}")), AUTH_OK);
	ck_assert_int_eq(conn_r(v, auth_make_hmac("HS512", SECRET, "{}")), AUTH_OK);
	ck_assert(auth_make_hmac("RS256", SECRET, "{}") == NULL);
	ck_assert(auth_make_hmac("none", SECRET, "{}") == NULL);
	auth_verifier_free(v);
}
END_TEST

START_TEST(test_hs_wrong_secret_and_tamper)
{
	struct auth_verifier *v = hmac_verifier();
	char *t, *dot;
	struct buf b = BUF_INIT;

	ck_assert_int_eq(conn_r(v, auth_make_hs256("other", "{\"sub\":\"1\"}")), AUTH_INVALID);

	/* replace the claims segment of a valid token */
	t = auth_make_hs256(SECRET, "{\"sub\":\"1\"}");
	dot = strchr(t, '.');
	buf_append(&b, t, (size_t)(dot - t) + 1);
	b64url(&b, "{\"sub\":\"2\"}", 11);
	buf_puts(&b, strrchr(t, '.'));
	free(t);
	ck_assert_int_eq(conn_r(v, buf_steal(&b, NULL)), AUTH_INVALID);

	/* flip one signature character */
	t = auth_make_hs256(SECRET, "{\"sub\":\"1\"}");
	t[strlen(t) - 2] = t[strlen(t) - 2] == 'A' ? 'B' : 'A';
	ck_assert_int_eq(conn_r(v, t), AUTH_INVALID);
	/* truncated signature */
	t = auth_make_hs256(SECRET, "{\"sub\":\"1\"}");
	t[strlen(t) - 4] = '\0';
	ck_assert_int_eq(conn_r(v, t), AUTH_INVALID);
	auth_verifier_free(v);
}
END_TEST

START_TEST(test_alg_none)
{
	struct auth_keys k = { .hmac_secret_key = SECRET, .rsa_public_key = rsa_pub,
		.ecdsa_public_key = ec256_pub };
	struct auth_verifier *v = mkv(&k);

	ck_assert_int_eq(conn_r(v, tok_raw("{\"alg\":\"none\"}", "{\"sub\":\"1\"}", "", 0)),
		AUTH_INVALID);
	ck_assert_int_eq(conn_r(v, tok_raw("{\"alg\":\"None\"}", "{\"sub\":\"1\"}", "", 0)),
		AUTH_INVALID);
	ck_assert_int_eq(conn_r(v, tok_hs(256, SECRET, "{\"alg\":\"none\"}", "{\"sub\":\"1\"}")),
		AUTH_INVALID);
	/* missing, non-string and unsupported alg */
	ck_assert_int_eq(conn_r(v, tok_hs(256, SECRET, "{}", "{}")), AUTH_INVALID);
	ck_assert_int_eq(conn_r(v, tok_hs(256, SECRET, "{\"alg\":256}", "{}")), AUTH_INVALID);
	ck_assert_int_eq(conn_r(v, tok_pk(rsa_key, 256, 0, HDR("PS256"), "{}")), AUTH_INVALID);
	ck_assert_int_eq(conn_r(v, tok_hs(256, SECRET, HDR("EdDSA"), "{}")), AUTH_INVALID);
	auth_verifier_free(v);
}
END_TEST

START_TEST(test_alg_not_configured)
{
	struct auth_keys kh = { .hmac_secret_key = SECRET };
	struct auth_keys kr = { .rsa_public_key = rsa_pub };
	struct auth_keys kn = { 0 };
	struct auth_verifier *vh = mkv(&kh), *vr = mkv(&kr), *vn = mkv(&kn);

	/* RS256 when only HMAC is configured */
	ck_assert_int_eq(conn_r(vh, tok_pk(rsa_key, 256, 0, HDR("RS256"), "{}")), AUTH_INVALID);
	ck_assert_int_eq(conn_r(vh, tok_pk(ec256_key, 256, 32, HDR("ES256"), "{}")), AUTH_INVALID);
	/* key confusion: HS256 signed with the RSA public PEM as secret */
	ck_assert_int_eq(conn_r(vr, tok_hs(256, rsa_pub, HDR("HS256"), "{}")), AUTH_INVALID);
	/* HS256 signed with an empty secret, no HMAC key configured */
	ck_assert_int_eq(conn_r(vr, tok_hs(256, "", HDR("HS256"), "{}")), AUTH_INVALID);
	ck_assert_int_eq(conn_r(vn, auth_make_hs256(SECRET, "{}")), AUTH_INVALID);
	ck_assert_int_eq(conn_r(vr, tok_pk(rsa_key, 256, 0, HDR("RS256"), "{}")), AUTH_OK);
	auth_verifier_free(vh);
	auth_verifier_free(vr);
	auth_verifier_free(vn);
}
END_TEST

START_TEST(test_rs_valid)
{
	struct auth_keys k = { .rsa_public_key = rsa_pub };
	struct auth_verifier *v = mkv(&k);
	struct auth_conn_claims c;
	char *t;

	ck_assert_int_eq(conn(v, tok_pk(rsa_key, 256, 0, HDR("RS256"), "{\"sub\":\"r\"}"), &c),
		AUTH_OK);
	ck_assert_str_eq(c.user, "r");
	auth_conn_claims_free(&c);
	ck_assert_int_eq(conn_r(v, tok_pk(rsa_key, 384, 0, HDR("RS384"), "{}")), AUTH_OK);
	ck_assert_int_eq(conn_r(v, tok_pk(rsa_key, 512, 0, HDR("RS512"), "{}")), AUTH_OK);
	/* hash mismatch between alg and signature */
	ck_assert_int_eq(conn_r(v, tok_pk(rsa_key, 256, 0, HDR("RS512"), "{}")), AUTH_INVALID);
	/* tampered signature */
	t = tok_pk(rsa_key, 256, 0, HDR("RS256"), "{}");
	t[strlen(t) - 5] = t[strlen(t) - 5] == 'A' ? 'B' : 'A';
	ck_assert_int_eq(conn_r(v, t), AUTH_INVALID);
	auth_verifier_free(v);
}
END_TEST

START_TEST(test_rs_certificate)
{
	struct auth_keys k = { .rsa_public_key = rsa_cert };
	struct auth_verifier *v = mkv(&k);

	ck_assert_int_eq(conn_r(v, tok_pk(rsa_key, 256, 0, HDR("RS256"), "{}")), AUTH_OK);
	auth_verifier_free(v);
}
END_TEST

START_TEST(test_es_valid)
{
	struct auth_keys k256 = { .ecdsa_public_key = ec256_pub };
	struct auth_keys k384 = { .ecdsa_public_key = ec384_pub };
	struct auth_verifier *v256 = mkv(&k256), *v384 = mkv(&k384);
	unsigned char zeros[64] = { 0 };

	ck_assert_int_eq(conn_r(v256, tok_pk(ec256_key, 256, 32, HDR("ES256"), "{\"sub\":\"e\"}")),
		AUTH_OK);
	ck_assert_int_eq(conn_r(v384, tok_pk(ec384_key, 384, 48, HDR("ES384"), "{}")), AUTH_OK);
	/* alg must match the key's curve */
	ck_assert_int_eq(conn_r(v384, tok_pk(ec384_key, 256, 48, HDR("ES256"), "{}")),
		AUTH_INVALID);
	ck_assert_int_eq(conn_r(v256, tok_pk(ec256_key, 384, 32, HDR("ES384"), "{}")),
		AUTH_INVALID);
	/* wrong key */
	ck_assert_int_eq(conn_r(v384, tok_pk(ec256_key, 384, 48, HDR("ES384"), "{}")),
		AUTH_INVALID);
	/* DER signature instead of r||s; wrong length; all zero */
	ck_assert_int_eq(conn_r(v256, tok_pk(ec256_key, 256, 0, HDR("ES256"), "{}")),
		AUTH_INVALID);
	ck_assert_int_eq(conn_r(v256, tok_raw(HDR("ES256"), "{}", zeros, 63)), AUTH_INVALID);
	ck_assert_int_eq(conn_r(v256, tok_raw(HDR("ES256"), "{}", zeros, 64)), AUTH_INVALID);
	/* a valid r||s with one byte appended */
	es_extra = 1;
	ck_assert_int_eq(conn_r(v256, tok_pk(ec256_key, 256, 32, HDR("ES256"), "{}")),
		AUTH_INVALID);
	es_extra = 0;
	/* RS token with only an EC key */
	ck_assert_int_eq(conn_r(v256, tok_pk(rsa_key, 256, 0, HDR("RS256"), "{}")), AUTH_INVALID);
	auth_verifier_free(v256);
	auth_verifier_free(v384);
}
END_TEST

/* Tokens signed by libjwt 1.10 verify here (independent implementation). */
START_TEST(test_libjwt_cross_check)
{
	struct auth_keys k = { .hmac_secret_key = SECRET, .rsa_public_key = rsa_pub };
	struct auth_keys ke = { .ecdsa_public_key = ec256_pub };
	struct auth_verifier *v = mkv(&k), *ve = mkv(&ke);
	struct auth_conn_claims c;
	jwt_t *j;
	char *s;

	ck_assert(jwt_new(&j) == 0);
	ck_assert(jwt_add_grants_json(j, "{\"sub\":\"lj\",\"exp\":1700003600}") == 0);
	ck_assert(jwt_set_alg(j, JWT_ALG_HS256, (const unsigned char *)SECRET, 6) == 0);
	s = jwt_encode_str(j);
	ck_assert(s != NULL);
	ck_assert_int_eq(conn(v, xstrdup(s), &c), AUTH_OK);
	ck_assert_str_eq(c.user, "lj");
	auth_conn_claims_free(&c);
	free(s);
	ck_assert(jwt_set_alg(j, JWT_ALG_RS256, (const unsigned char *)rsa_priv,
		(int)strlen(rsa_priv)) == 0);
	s = jwt_encode_str(j);
	ck_assert(s != NULL);
	ck_assert_int_eq(conn_r(v, xstrdup(s)), AUTH_OK);
	free(s);
	ck_assert(jwt_set_alg(j, JWT_ALG_ES256, (const unsigned char *)ec256_priv,
		(int)strlen(ec256_priv)) == 0);
	s = jwt_encode_str(j);
	ck_assert(s != NULL);
	ck_assert_int_eq(conn_r(ve, xstrdup(s)), AUTH_OK);
	free(s);
	jwt_free(j);
	auth_verifier_free(v);
	auth_verifier_free(ve);
}
END_TEST

/* ---- keys and configuration ----------------------------------------- */

START_TEST(test_key_forms)
{
	char path[] = "/tmp/check_auth_XXXXXX";
	struct auth_keys k = { 0 };
	struct auth_verifier *v;
	char *b64, *wrapped;
	size_t i, n;
	int fd;

	/* base64-encoded PEM */
	b64 = std_b64(rsa_pub);
	k.rsa_public_key = b64;
	v = mkv(&k);
	ck_assert_int_eq(conn_r(v, tok_pk(rsa_key, 256, 0, HDR("RS256"), "{}")), AUTH_OK);
	auth_verifier_free(v);
	/* wrapped base64, as base64(1) prints it */
	wrapped = xmalloc(2 * strlen(b64) + 1);
	for (i = 0, n = 0; b64[i] != '\0'; i++) {
		wrapped[n++] = b64[i];
		if (i % 64 == 63)
			wrapped[n++] = '\n';
	}
	wrapped[n] = '\0';
	k.rsa_public_key = wrapped;
	v = mkv(&k);
	ck_assert_int_eq(conn_r(v, tok_pk(rsa_key, 256, 0, HDR("RS256"), "{}")), AUTH_OK);
	auth_verifier_free(v);
	free(wrapped);
	free(b64);

	/* path to a PEM file */
	fd = mkstemp(path);
	ck_assert(fd >= 0);
	ck_assert(write(fd, ec256_pub, strlen(ec256_pub)) == (ssize_t)strlen(ec256_pub));
	close(fd);
	k.rsa_public_key = NULL;
	k.ecdsa_public_key = path;
	v = mkv(&k);
	unlink(path);
	ck_assert_int_eq(conn_r(v, tok_pk(ec256_key, 256, 32, HDR("ES256"), "{}")), AUTH_OK);
	auth_verifier_free(v);
}
END_TEST

static void
expect_new_fails(const struct auth_keys *k, const char *needle)
{
	struct buf err = BUF_INIT;

	ck_assert(auth_verifier_new(k, &err) == NULL);
	ck_assert_msg(strstr(buf_cstr(&err), needle) != NULL, "error \"%s\" lacks \"%s\"",
		err.data, needle);
	buf_free(&err);
}

START_TEST(test_verifier_new_errors)
{
	struct auth_keys k;
	EVP_PKEY *k1;
	char *k1_pub;

	memset(&k, 0, sizeof(k));
	k.rsa_public_key = "-----BEGIN PUBLIC KEY-----\nnot base64!\n-----END PUBLIC KEY-----\n";
	expect_new_fails(&k, "rsa_public_key");
	k.rsa_public_key = "/nonexistent/key.pem";
	expect_new_fails(&k, "rsa_public_key");
	k.rsa_public_key = ec256_pub;           /* EC key where RSA is expected */
	expect_new_fails(&k, "expected RSA");
	k.rsa_public_key = NULL;
	k.ecdsa_public_key = rsa_pub;
	expect_new_fails(&k, "expected EC");
	k.ecdsa_public_key = "/dev/null";
	expect_new_fails(&k, "ecdsa_public_key");
	k1 = EVP_EC_gen("secp256k1");           /* not a JWS curve */
	ck_assert(k1 != NULL);
	k1_pub = pem_pub(k1);
	k.ecdsa_public_key = k1_pub;
	expect_new_fails(&k, "curve");
	free(k1_pub);
	EVP_PKEY_free(k1);
	k.ecdsa_public_key = NULL;
	k.audience_regex = "(unclosed";
	expect_new_fails(&k, "audience_regex");
	k.audience_regex = NULL;
	k.issuer_regex = "a{1";
	expect_new_fails(&k, "issuer_regex");
}
END_TEST

START_TEST(test_hmac_rotation)
{
	struct auth_keys k = { .hmac_secret_key = "new", .hmac_previous_secret_key = "old",
		.hmac_previous_secret_key_valid_until = NOW + 10 };
	struct auth_verifier *v = mkv(&k);

	ck_assert_int_eq(conn_r(v, auth_make_hs256("new", "{}")), AUTH_OK);
	ck_assert_int_eq(conn_r(v, auth_make_hs256("old", "{}")), AUTH_OK);
	ck_assert_int_eq(conn_r(v, auth_make_hs256("other", "{}")), AUTH_INVALID);
	auth_verifier_free(v);
	k.hmac_previous_secret_key_valid_until = NOW;
	v = mkv(&k);
	ck_assert_int_eq(conn_r(v, auth_make_hs256("old", "{}")), AUTH_INVALID);
	auth_verifier_free(v);
}
END_TEST

START_TEST(test_skip_verify)
{
	struct auth_keys k = { .skip_verify = 1 };
	struct auth_verifier *v = mkv(&k);
	struct auth_conn_claims c;

	ck_assert_int_eq(conn(v, tok_raw(HDR("HS256"), "{\"sub\":\"s\"}", "xx", 2), &c), AUTH_OK);
	ck_assert_str_eq(c.user, "s");
	auth_conn_claims_free(&c);
	/* other checks still apply */
	ck_assert_int_eq(conn_r(v, tok_raw(HDR("HS256"), "{\"exp\":1}", "xx", 2)), AUTH_EXPIRED);
	ck_assert_int_eq(conn_r(v, tok_raw(HDR("HS256"), "{\"sub\":1}", "xx", 2)), AUTH_INVALID);
	ck_assert_int_eq(conn_r(v, tok_raw("[]", "{}", "xx", 2)), AUTH_INVALID);
	auth_verifier_free(v);
}
END_TEST

/* ---- time claims ----------------------------------------------------- */

START_TEST(test_exp_nbf)
{
	char cl[128];

	snprintf(cl, sizeof(cl), "{\"exp\":%d}", NOW + 1);
	ck_assert_int_eq(hs_r(cl), AUTH_OK);
	snprintf(cl, sizeof(cl), "{\"exp\":%d}", NOW);
	ck_assert_int_eq(hs_r(cl), AUTH_EXPIRED);
	snprintf(cl, sizeof(cl), "{\"exp\":%d}", NOW - 100);
	ck_assert_int_eq(hs_r(cl), AUTH_EXPIRED);
	ck_assert_int_eq(hs_r("{\"exp\":0}"), AUTH_EXPIRED);
	ck_assert_int_eq(hs_r("{\"exp\":null}"), AUTH_OK);
	snprintf(cl, sizeof(cl), "{\"nbf\":%d}", NOW + 1);
	ck_assert_int_eq(hs_r(cl), AUTH_EXPIRED);
	snprintf(cl, sizeof(cl), "{\"nbf\":%d}", NOW);      /* see auth.h */
	ck_assert_int_eq(hs_r(cl), AUTH_OK);
	snprintf(cl, sizeof(cl), "{\"nbf\":%d,\"exp\":%d}", NOW - 10, NOW + 10);
	ck_assert_int_eq(hs_r(cl), AUTH_OK);
	/* iat is not checked */
	snprintf(cl, sizeof(cl), "{\"iat\":%d}", NOW + 1000);
	ck_assert_int_eq(hs_r(cl), AUTH_OK);
	/* huge values do not overflow */
	ck_assert_int_eq(hs_r("{\"exp\":1e300}"), AUTH_OK);
	ck_assert_int_eq(hs_r("{\"exp\":-1e300}"), AUTH_EXPIRED);
}
END_TEST

START_TEST(test_exp_fractional)
{
	struct auth_verifier *v = hmac_verifier();
	struct auth_conn_claims c;
	char cl[128];

	snprintf(cl, sizeof(cl), "{\"exp\":%d.5}", NOW);
	ck_assert_int_eq(conn(v, auth_make_hs256(SECRET, cl), &c), AUTH_OK);
	ck_assert(c.exp == NOW);               /* fraction dropped */
	auth_conn_claims_free(&c);
	snprintf(cl, sizeof(cl), "{\"exp\":%d.5}", NOW - 1);
	ck_assert_int_eq(conn_r(v, auth_make_hs256(SECRET, cl)), AUTH_EXPIRED);
	snprintf(cl, sizeof(cl), "{\"exp\":%d.0}", NOW + 60);
	ck_assert_int_eq(conn(v, auth_make_hs256(SECRET, cl), &c), AUTH_OK);
	ck_assert(c.exp == NOW + 60);
	auth_conn_claims_free(&c);
	snprintf(cl, sizeof(cl), "{\"nbf\":%d.5}", NOW);
	ck_assert_int_eq(conn_r(v, auth_make_hs256(SECRET, cl)), AUTH_EXPIRED);
	snprintf(cl, sizeof(cl), "{\"nbf\":%d.5}", NOW - 1);
	ck_assert_int_eq(conn_r(v, auth_make_hs256(SECRET, cl)), AUTH_OK);
	auth_verifier_free(v);
}
END_TEST

START_TEST(test_expire_at)
{
	struct auth_verifier *v = hmac_verifier();
	struct auth_conn_claims c;
	char cl[128];

	snprintf(cl, sizeof(cl), "{\"exp\":%d,\"expire_at\":0}", NOW + 60);
	ck_assert_int_eq(conn(v, auth_make_hs256(SECRET, cl), &c), AUTH_OK);
	ck_assert(c.has_expire_at && c.expire_at == 0);
	ck_assert(auth_expiry(c.has_expire_at, c.expire_at, c.has_exp, c.exp) == 0);
	auth_conn_claims_free(&c);
	snprintf(cl, sizeof(cl), "{\"exp\":%d,\"expire_at\":%d}", NOW + 60, NOW + 600);
	ck_assert_int_eq(conn(v, auth_make_hs256(SECRET, cl), &c), AUTH_OK);
	ck_assert(auth_expiry(c.has_expire_at, c.expire_at, c.has_exp, c.exp) == NOW + 600);
	auth_conn_claims_free(&c);
	snprintf(cl, sizeof(cl), "{\"exp\":%d}", NOW + 60);
	ck_assert_int_eq(conn(v, auth_make_hs256(SECRET, cl), &c), AUTH_OK);
	ck_assert(auth_expiry(c.has_expire_at, c.expire_at, c.has_exp, c.exp) == NOW + 60);
	auth_conn_claims_free(&c);
	/* expire_at in the past is not the verifier's business (error 110) */
	ck_assert_int_eq(conn(v, auth_make_hs256(SECRET, "{\"expire_at\":5}"), &c), AUTH_OK);
	ck_assert(auth_expiry(c.has_expire_at, c.expire_at, c.has_exp, c.exp) == 5);
	auth_conn_claims_free(&c);
	ck_assert(auth_expiry(0, 0, 0, 0) == 0);
	auth_verifier_free(v);
}
END_TEST

/* ---- aud / iss ------------------------------------------------------- */

START_TEST(test_aud_iss)
{
	struct auth_keys k = { .hmac_secret_key = SECRET, .audience = "app",
		.issuer = "me" };
	struct auth_verifier *v = mkv(&k);

	ck_assert_int_eq(conn_r(v, auth_make_hs256(SECRET, "{\"aud\":\"app\",\"iss\":\"me\"}")),
		AUTH_OK);
	ck_assert_int_eq(conn_r(v, auth_make_hs256(SECRET,
		"{\"aud\":[\"x\",\"app\"],\"iss\":\"me\"}")), AUTH_OK);
	ck_assert_int_eq(conn_r(v, auth_make_hs256(SECRET, "{\"aud\":\"x\",\"iss\":\"me\"}")),
		AUTH_INVALID);
	ck_assert_int_eq(conn_r(v, auth_make_hs256(SECRET, "{\"aud\":[],\"iss\":\"me\"}")),
		AUTH_INVALID);
	ck_assert_int_eq(conn_r(v, auth_make_hs256(SECRET, "{\"iss\":\"me\"}")), AUTH_INVALID);
	ck_assert_int_eq(conn_r(v, auth_make_hs256(SECRET, "{\"aud\":\"app\",\"iss\":\"mE\"}")),
		AUTH_INVALID);
	ck_assert_int_eq(conn_r(v, auth_make_hs256(SECRET, "{\"aud\":\"app\"}")), AUTH_INVALID);
	/* aud/iss of the wrong type */
	ck_assert_int_eq(conn_r(v, auth_make_hs256(SECRET, "{\"aud\":5,\"iss\":\"me\"}")),
		AUTH_INVALID);
	ck_assert_int_eq(conn_r(v, auth_make_hs256(SECRET, "{\"aud\":[\"app\",5],\"iss\":\"me\"}")),
		AUTH_INVALID);
	ck_assert_int_eq(conn_r(v, auth_make_hs256(SECRET, "{\"aud\":\"app\",\"iss\":[\"me\"]}")),
		AUTH_INVALID);
	auth_verifier_free(v);

	/* not configured: aud/iss are not checked */
	ck_assert_int_eq(hs_r("{\"aud\":\"whatever\",\"iss\":\"anyone\"}"), AUTH_OK);
}
END_TEST

START_TEST(test_regex)
{
	struct auth_keys k = { .hmac_secret_key = SECRET, .audience_regex = "^app-[0-9]+$",
		.issuer_regex = "^https://([a-z]+\\.)?example\\.com$" };
	struct auth_verifier *v = mkv(&k);
	const char *iss = "\"iss\":\"https://auth.example.com\"";
	char cl[256];

	snprintf(cl, sizeof(cl), "{\"aud\":\"app-12\",%s}", iss);
	ck_assert_int_eq(conn_r(v, auth_make_hs256(SECRET, cl)), AUTH_OK);
	snprintf(cl, sizeof(cl), "{\"aud\":[\"web\",\"app-7\"],%s}", iss);
	ck_assert_int_eq(conn_r(v, auth_make_hs256(SECRET, cl)), AUTH_OK);
	snprintf(cl, sizeof(cl), "{\"aud\":\"app-x\",%s}", iss);
	ck_assert_int_eq(conn_r(v, auth_make_hs256(SECRET, cl)), AUTH_INVALID);
	snprintf(cl, sizeof(cl), "{%s}", iss);
	ck_assert_int_eq(conn_r(v, auth_make_hs256(SECRET, cl)), AUTH_INVALID);
	ck_assert_int_eq(conn_r(v, auth_make_hs256(SECRET,
		"{\"aud\":\"app-1\",\"iss\":\"https://evil.com\"}")), AUTH_INVALID);
	ck_assert_int_eq(conn_r(v, auth_make_hs256(SECRET,
		"{\"aud\":\"app-1\",\"iss\":\"https://example.com\"}")), AUTH_OK);
	ck_assert_int_eq(conn_r(v, auth_make_hs256(SECRET, "{\"aud\":\"app-1\"}")),
		AUTH_INVALID);
	auth_verifier_free(v);
}
END_TEST

/* ---- claim types ----------------------------------------------------- */

START_TEST(test_wrong_types)
{
	static const char *const bad[] = {
		"{\"sub\":42}",
		"{\"sub\":true}",
		"{\"exp\":\"1800000000\"}",
		"{\"nbf\":[1]}",
		"{\"iat\":\"now\"}",
		"{\"jti\":5}",
		"{\"expire_at\":1.5}",
		"{\"expire_at\":\"0\"}",
		"{\"channels\":\"news\"}",
		"{\"channels\":[\"a\",1]}",
		"{\"channels\":{\"a\":1}}",
		"{\"b64info\":{}}",
		"{\"subs\":[\"a\"]}",
		"{\"subs\":{\"a\":5}}",
		"{\"subs\":{\"a\":{\"b64data\":1}}}",
		"{\"subs\":{\"a\":{\"override\":{\"presence\":true}}}}",
		"{\"subs\":{\"a\":{\"override\":{\"presence\":{\"value\":\"yes\"}}}}}",
		"{\"channel\":5}",
	};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(hs_r(bad[i]) == AUTH_INVALID, "accepted %s", bad[i]);
	/* null counts as absent; info/data/meta may be anything */
	ck_assert_int_eq(hs_r("{\"sub\":null,\"channels\":null,\"subs\":null,\"iat\":1.5,"
		"\"info\":5,\"meta\":\"m\",\"unknown\":[{}]}"), AUTH_OK);
	/* a subscription token's own claims */
	ck_assert_int_eq(sub_r("{\"channel\":\"c\",\"client\":1}"), AUTH_INVALID);
	ck_assert_int_eq(sub_r("{\"channel\":\"c\",\"override\":[]}"), AUTH_INVALID);
	ck_assert_int_eq(sub_r("{\"channel\":\"c\",\"b64data\":2}"), AUTH_INVALID);
	ck_assert_int_eq(sub_r("{\"channel\":[\"c\"]}"), AUTH_INVALID);
	/* connection-only claims are ignored in a subscription token */
	ck_assert_int_eq(sub_r("{\"channel\":\"c\",\"channels\":5}"), AUTH_OK);
}
END_TEST

START_TEST(test_user_id_claim)
{
	struct auth_keys k = { .hmac_secret_key = SECRET, .user_id_claim = "user_id" };
	struct auth_verifier *v = mkv(&k);
	struct auth_conn_claims c;
	struct auth_sub_claims s;

	ck_assert_int_eq(conn(v, auth_make_hs256(SECRET, "{\"sub\":\"x\",\"user_id\":\"u7\"}"),
		&c), AUTH_OK);
	ck_assert_str_eq(c.user, "u7");
	auth_conn_claims_free(&c);
	ck_assert_int_eq(conn(v, auth_make_hs256(SECRET, "{\"sub\":\"x\"}"), &c), AUTH_OK);
	ck_assert_str_eq(c.user, "");
	auth_conn_claims_free(&c);
	ck_assert_int_eq(conn_r(v, auth_make_hs256(SECRET, "{\"user_id\":7}")), AUTH_INVALID);
	ck_assert_int_eq(sub(v, auth_make_hs256(SECRET, "{\"user_id\":\"u7\",\"channel\":\"c\"}"),
		&s), AUTH_OK);
	ck_assert_str_eq(s.user, "u7");
	auth_sub_claims_free(&s);
	auth_verifier_free(v);
}
END_TEST

/* ---- channel claims -------------------------------------------------- */

START_TEST(test_conn_channel_claim)
{
	ck_assert_int_eq(hs_r("{\"sub\":\"1\",\"channel\":\"news\"}"), AUTH_INVALID);
	ck_assert_int_eq(hs_r("{\"sub\":\"1\",\"channel\":\"\"}"), AUTH_OK);
	/* order: an expired token with a channel is invalid (step 6 < 7) */
	ck_assert_int_eq(hs_r("{\"channel\":\"news\",\"exp\":1}"), AUTH_INVALID);
}
END_TEST

START_TEST(test_sub_token)
{
	struct auth_verifier *v = hmac_verifier();
	struct auth_sub_claims s;
	char cl[256];

	snprintf(cl, sizeof(cl), "{\"sub\":\"42\",\"channel\":\"$gossips\",\"exp\":%d,"
		"\"client\":\"cid\",\"info\":{\"a\":1},\"data\":[true],"
		"\"override\":{\"presence\":{\"value\":true},\"join_leave\":{\"value\":false},"
		"\"force_recovery\":{},\"force_positioning\":null}}", NOW + 5);
	ck_assert_int_eq(sub(v, auth_make_hs256(SECRET, cl), &s), AUTH_OK);
	ck_assert_str_eq(s.user, "42");
	ck_assert_str_eq(s.channel, "$gossips");
	ck_assert_str_eq(s.client, "cid");
	ck_assert(s.has_exp && s.exp == NOW + 5);
	ck_assert_str_eq(s.info, "{\"a\":1}");
	ck_assert_str_eq(s.data, "[true]");
	ck_assert_int_eq(s.presence, 1);
	ck_assert_int_eq(s.join_leave, 0);
	ck_assert_int_eq(s.force_push_join_leave, AUTH_OVERRIDE_UNSET);
	ck_assert_int_eq(s.force_recovery, 0);
	ck_assert_int_eq(s.force_positioning, AUTH_OVERRIDE_UNSET);
	auth_sub_claims_free(&s);

	ck_assert_int_eq(sub(v, auth_make_hs256(SECRET, "{\"channel\":\"c\"}"), &s), AUTH_OK);
	ck_assert_str_eq(s.user, "");
	ck_assert_str_eq(s.client, "");
	ck_assert(s.info == NULL && s.data == NULL && !s.has_exp && !s.has_expire_at);
	ck_assert_int_eq(s.presence, AUTH_OVERRIDE_UNSET);
	auth_sub_claims_free(&s);

	/* b64 forms win over JSON */
	ck_assert_int_eq(sub(v, auth_make_hs256(SECRET, "{\"channel\":\"c\",\"info\":1,"
		"\"b64info\":\"aGk=\",\"data\":2,\"b64data\":\"AP8=\"}"), &s), AUTH_OK);
	ck_assert_uint_eq(s.info_len, 2);
	ck_assert(memcmp(s.info, "hi", 2) == 0);
	ck_assert_uint_eq(s.data_len, 2);
	ck_assert(memcmp(s.data, "\x00\xff", 2) == 0);
	auth_sub_claims_free(&s);
	auth_verifier_free(v);

	ck_assert_int_eq(sub_r("{\"sub\":\"42\"}"), AUTH_INVALID);
	ck_assert_int_eq(sub_r("{\"sub\":\"42\",\"channel\":\"\"}"), AUTH_INVALID);
	ck_assert_int_eq(sub_r("{\"channel\":null}"), AUTH_INVALID);
	ck_assert_int_eq(sub_r("{\"channel\":\"c\",\"exp\":1}"), AUTH_EXPIRED);
	/* step 7 comes before the empty-channel check */
	ck_assert_int_eq(sub_r("{\"exp\":1}"), AUTH_EXPIRED);
	ck_assert_int_eq(sub_r("{\"channel\":\"c\",\"b64info\":\"!!\"}"), AUTH_INVALID);
	ck_assert_int_eq(sub_r("{\"channel\":\"c\",\"b64data\":\"abc\"}"), AUTH_INVALID);
}
END_TEST

/* ---- info and subs --------------------------------------------------- */

START_TEST(test_info_b64info)
{
	struct auth_verifier *v = hmac_verifier();
	struct auth_conn_claims c;

	ck_assert_int_eq(conn(v, auth_make_hs256(SECRET,
		"{\"info\":{\"n\":\"\\u00e9\\\"\"},\"b64info\":\"AAEC\"}"), &c), AUTH_OK);
	ck_assert_uint_eq(c.info_len, 3);
	ck_assert(memcmp(c.info, "\x00\x01\x02", 3) == 0);
	auth_conn_claims_free(&c);
	/* empty b64info falls back to info, escapes kept verbatim */
	ck_assert_int_eq(conn(v, auth_make_hs256(SECRET,
		"{\"b64info\":\"\",\"info\":{\"n\":\"\\u00e9\\\"\"}}"), &c), AUTH_OK);
	ck_assert_str_eq(c.info, "{\"n\":\"\\u00e9\\\"\"}");
	auth_conn_claims_free(&c);
	/* duplicate keys: the last one wins, as in jansson */
	ck_assert_int_eq(conn(v, auth_make_hs256(SECRET, "{\"info\":1,\"info\":\"two\"}"), &c),
		AUTH_OK);
	ck_assert_str_eq(c.info, "\"two\"");
	auth_conn_claims_free(&c);
	/* bad standard base64: bad char, url alphabet, missing padding */
	ck_assert_int_eq(conn_r(v, auth_make_hs256(SECRET, "{\"b64info\":\"a$==\"}")),
		AUTH_INVALID);
	ck_assert_int_eq(conn_r(v, auth_make_hs256(SECRET, "{\"b64info\":\"__8=\"}")),
		AUTH_INVALID);
	ck_assert_int_eq(conn_r(v, auth_make_hs256(SECRET, "{\"b64info\":\"aGk\"}")),
		AUTH_INVALID);
	ck_assert_int_eq(conn_r(v, auth_make_hs256(SECRET, "{\"b64info\":\"a===\"}")),
		AUTH_INVALID);
	/* order: expired wins over bad base64 (step 7 < 8) */
	ck_assert_int_eq(conn_r(v, auth_make_hs256(SECRET, "{\"b64info\":\"!\",\"exp\":1}")),
		AUTH_EXPIRED);
	auth_verifier_free(v);
}
END_TEST

START_TEST(test_subs)
{
	struct auth_verifier *v = hmac_verifier();
	struct auth_conn_claims c;
	const char *cl = "{\"sub\":\"1\",\"channels\":[\"ignored\"],\"subs\":{"
		"\"news\":{\"info\":{\"x\":[1, 2]},\"data\":\"d\","
		"\"override\":{\"presence\":{\"value\":true},\"force_push_join_leave\":{\"value\":false}}},"
		"\"a\\u0062c\":{\"b64info\":\"aQ==\",\"b64data\":\"ZA==\",\"info\":\"no\"},"
		"\"empty\":null,"
		"\"x\":{\"info\":{\"news\":{\"info\":\"decoy\"}}}}}";

	ck_assert_int_eq(conn(v, auth_make_hs256(SECRET, cl), &c), AUTH_OK);
	ck_assert_uint_eq(c.n_channels, 0);
	ck_assert_uint_eq(c.n_subs, 4);
	ck_assert_str_eq(c.subs[0].channel, "news");
	ck_assert_str_eq(c.subs[0].info, "{\"x\":[1, 2]}");
	ck_assert_str_eq(c.subs[0].data, "\"d\"");
	ck_assert_int_eq(c.subs[0].presence, 1);
	ck_assert_int_eq(c.subs[0].join_leave, AUTH_OVERRIDE_UNSET);
	ck_assert_int_eq(c.subs[0].force_push_join_leave, 0);
	ck_assert_str_eq(c.subs[1].channel, "abc");
	ck_assert_uint_eq(c.subs[1].info_len, 1);
	ck_assert_str_eq(c.subs[1].info, "i");
	ck_assert_str_eq(c.subs[1].data, "d");
	ck_assert_int_eq(c.subs[1].presence, AUTH_OVERRIDE_UNSET);
	ck_assert_str_eq(c.subs[2].channel, "empty");
	ck_assert(c.subs[2].info == NULL && c.subs[2].data == NULL);
	ck_assert_str_eq(c.subs[3].channel, "x");
	ck_assert_str_eq(c.subs[3].info, "{\"news\":{\"info\":\"decoy\"}}");
	auth_conn_claims_free(&c);

	/* empty subs: channels are used */
	ck_assert_int_eq(conn(v, auth_make_hs256(SECRET, "{\"channels\":[\"a\"],\"subs\":{}}"),
		&c), AUTH_OK);
	ck_assert_uint_eq(c.n_channels, 1);
	ck_assert_uint_eq(c.n_subs, 0);
	auth_conn_claims_free(&c);

	ck_assert_int_eq(conn_r(v, auth_make_hs256(SECRET,
		"{\"subs\":{\"a\":{},\"b\":{\"b64data\":\"%%%%\"}}}")), AUTH_INVALID);
	ck_assert_int_eq(conn_r(v, auth_make_hs256(SECRET,
		"{\"subs\":{\"a\":{\"b64info\":\"Zg\"}}}")), AUTH_INVALID);
	auth_verifier_free(v);
}
END_TEST

/* ---- malformed tokens ------------------------------------------------ */

START_TEST(test_malformed)
{
	struct auth_verifier *v = hmac_verifier();
	struct auth_conn_claims c;
	struct auth_sub_claims s;
	struct buf why = BUF_INIT;
	char *good = auth_make_hs256(SECRET, "{\"sub\":\"1\"}");
	char *big, *t;
	size_t n;

	ck_assert_int_eq(conn_r(v, xstrdup("")), AUTH_INVALID);
	ck_assert_int_eq(conn_r(v, xstrdup("abc")), AUTH_INVALID);
	ck_assert_int_eq(conn_r(v, xstrdup("abc.def")), AUTH_INVALID);
	ck_assert_int_eq(conn_r(v, xstrdup("..")), AUTH_INVALID);
	ck_assert_int_eq(conn_r(v, xstrdup("a.b.c.d")), AUTH_INVALID);
	/* a valid token with a fourth segment */
	n = strlen(good);
	t = xmalloc(n + 3);
	memcpy(t, good, n);
	memcpy(t + n, ".x", 3);
	ck_assert_int_eq(conn_r(v, t), AUTH_INVALID);
	/* padding, standard alphabet, bad char, impossible length */
	t = xstrdup(good);
	t[n - 1] = '=';
	ck_assert_int_eq(conn_r(v, t), AUTH_INVALID);
	t = xstrdup(good);
	t[1] = '+';
	ck_assert_int_eq(conn_r(v, t), AUTH_INVALID);
	t = xstrdup(good);
	t[1] = '*';
	ck_assert_int_eq(conn_r(v, t), AUTH_INVALID);
	ck_assert_int_eq(conn_r(v, tok_raw(HDR("HS256"), "{}", "", 0)), AUTH_INVALID);
	ck_assert_int_eq(conn_r(v, xstrdup("eyJhbGciOiJIUzI1NiJ9A.e30.AAAA")), AUTH_INVALID);
	/* non-JSON header, JSON non-object header, non-object claims */
	ck_assert_int_eq(conn_r(v, tok_hs(256, SECRET, "alg: HS256", "{}")), AUTH_INVALID);
	ck_assert_int_eq(conn_r(v, tok_hs(256, SECRET, "[\"HS256\"]", "{}")), AUTH_INVALID);
	ck_assert_int_eq(conn_r(v, tok_hs(256, SECRET, HDR("HS256"), "[1]")), AUTH_INVALID);
	ck_assert_int_eq(conn_r(v, tok_hs(256, SECRET, HDR("HS256"), "{\"sub\":\"1\"")),
		AUTH_INVALID);
	ck_assert_int_eq(conn_r(v, tok_hs(256, SECRET, HDR("HS256"), "{} {}")), AUTH_INVALID);
	ck_assert_int_eq(conn_r(v, tok_hs(256, SECRET, HDR("HS256"), "\xff\xfe")), AUTH_INVALID);
	ck_assert_int_eq(conn_r(v, tok_hs(256, SECRET, HDR("HS256"), "")), AUTH_INVALID);
	/* length is honoured: an embedded NUL or a short len */
	t = xstrdup(good);
	ck_assert_int_eq(auth_verify_connection(v, t, n - 1, NOW, &c, &why), AUTH_INVALID);
	t[5] = '\0';
	ck_assert_int_eq(auth_verify_connection(v, t, n, NOW, &c, &why), AUTH_INVALID);
	free(t);
	ck_assert_int_eq(auth_verify_connection(v, NULL, 0, NOW, &c, NULL), AUTH_INVALID);
	ck_assert_int_eq(auth_verify_subscription(v, "x.y", 3, NOW, &s, NULL), AUTH_INVALID);
	/* huge token, refused before decoding */
	big = xmalloc(AUTH_TOKEN_MAX + 2);
	memset(big, 'A', AUTH_TOKEN_MAX + 1);
	big[100] = '.';
	big[200] = '.';
	big[AUTH_TOKEN_MAX + 1] = '\0';
	ck_assert_int_eq(auth_verify_connection(v, big, AUTH_TOKEN_MAX + 1, NOW, &c, &why),
		AUTH_INVALID);
	ck_assert(strstr(buf_cstr(&why), "too long") != NULL);
	free(big);
	/* a long but legal token with large claims still works */
	big = xmalloc(40000);
	memcpy(big, "{\"info\":\"", 9);
	memset(big + 9, 'x', 39000);
	memcpy(big + 39009, "\"}", 3);
	ck_assert_int_eq(conn(v, auth_make_hs256(SECRET, big), &c), AUTH_OK);
	ck_assert_uint_eq(c.info_len, 39002);
	auth_conn_claims_free(&c);
	free(big);
	/* zeroed claims after failure are safe to free */
	auth_conn_claims_free(&c);
	auth_sub_claims_free(&s);
	free(good);
	buf_free(&why);
	auth_verifier_free(v);
}
END_TEST

/* Every single-byte change and every truncation of a rich token, against
 * a verifier and a skip_verify one (whose claim parsing sees garbage):
 * no crash, no leak, a defined result. */
START_TEST(test_mutations)
{
	static const char muts[] = { 'A', 'z', '_', '-', '.', '=', '+', '/', ' ', '\0', '\xff' };
	struct auth_keys ks = { .skip_verify = 1 };
	struct auth_verifier *vs[2] = { hmac_verifier(), mkv(&ks) };
	const char *cl = "{\"sub\":\"1\",\"exp\":1800000000,\"info\":{\"a\":[1,\"b\\\"\"]},"
		"\"channel\":\"\",\"subs\":{\"c\\u0041\":{\"info\":{\"x\":1},\"b64data\":\"AA==\","
		"\"override\":{\"presence\":{\"value\":true}}},\"d\":null},\"meta\":{}}";
	char *tok = auth_make_hs256(SECRET, cl), *t;
	size_t n = strlen(tok), i, m, w;
	struct auth_conn_claims c;
	struct auth_sub_claims s;
	enum auth_result r;

	for (w = 0; w < 2; w++) {
		ck_assert_int_eq(auth_verify_connection(vs[w], tok, n, NOW, &c, NULL), AUTH_OK);
		auth_conn_claims_free(&c);
		for (i = 0; i < n; i++) {
			for (m = 0; m < sizeof(muts); m++) {
				t = xmemdup(tok, n);
				t[i] = muts[m];
				r = auth_verify_connection(vs[w], t, n, NOW, &c, NULL);
				ck_assert(r == AUTH_OK || r == AUTH_INVALID || r == AUTH_EXPIRED);
				auth_conn_claims_free(&c);
				r = auth_verify_subscription(vs[w], t, n, NOW, &s, NULL);
				ck_assert(r == AUTH_OK || r == AUTH_INVALID || r == AUTH_EXPIRED);
				auth_sub_claims_free(&s);
				free(t);
			}
			t = xmemdup(tok, i);
			r = auth_verify_connection(vs[w], t, i, NOW, &c, NULL);
			ck_assert(r == AUTH_INVALID || (w == 1 && r == AUTH_OK));
			auth_conn_claims_free(&c);
			free(t);
		}
	}
	free(tok);
	auth_verifier_free(vs[0]);
	auth_verifier_free(vs[1]);
}
END_TEST

START_TEST(test_result_names)
{
	ck_assert_str_eq(auth_result_name(AUTH_OK), "ok");
	ck_assert_str_eq(auth_result_name(AUTH_INVALID), "invalid");
	ck_assert_str_eq(auth_result_name(AUTH_EXPIRED), "expired");
	auth_verifier_free(NULL);
}
END_TEST

/* ---- JWKS (jwks_public_endpoint) ------------------------------------- */

/*
 * A tiny HTTP(S) server forked per test on 127.0.0.1:0.  It serves the
 * file jwks_doc (re-read on every request, so a test can rotate keys) and
 * writes one byte per request to a pipe, so a test can count fetches.
 */
enum srv_mode {
	SRV_LEN = 0,      /* 200 with Content-Length */
	SRV_CHUNKED,      /* 200, chunked transfer encoding */
	SRV_404,
	SRV_TRUNCATED,    /* Content-Length larger than the body, then close */
	SRV_HANG,         /* accept, read, never answer */
	SRV_TLS,          /* SRV_LEN over TLS with srv_cert/srv_key */
	SRV_RAW           /* the file is the whole response, then close */
};

static char jwks_doc[64];
static int count_fd = -1;
static pid_t srv_pid;
static EVP_PKEY *rsa2_key, *ed_key;
static X509 *srv_cert;            /* SAN IP:127.0.0.1, DNS:localhost */
static X509 *srv_cert_other;      /* SAN DNS:example.com only */

static void
write_file(const char *path, const char *text)
{
	char tmp[80];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	ck_assert(f != NULL);
	ck_assert(fputs(text, f) >= 0);
	ck_assert(fclose(f) == 0);
	ck_assert(rename(tmp, path) == 0);
}

static char *
read_file(const char *path, size_t *len)
{
	struct buf b = BUF_INIT;
	char chunk[4096];
	size_t n;
	FILE *f = fopen(path, "r");

	if (f != NULL) {
		while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
			buf_append(&b, chunk, n);
		fclose(f);
	}
	buf_cstr(&b);
	return buf_steal(&b, len);
}

static void
srv_io(SSL *ssl, int fd, const char *p, size_t n)
{
	if (ssl != NULL)
		SSL_write(ssl, p, (int)n);
	else if (write(fd, p, n) < 0)
		_exit(3);
}

static void
srv_serve(int fd, enum srv_mode mode, SSL_CTX *ctx)
{
	char req[8192], hdr[256];
	size_t got = 0, len;
	ssize_t r;
	SSL *ssl = NULL;
	char *body;

	if (ctx != NULL) {
		ssl = SSL_new(ctx);
		SSL_set_fd(ssl, fd);
		if (SSL_accept(ssl) != 1) {
			SSL_free(ssl);
			close(fd);
			return;
		}
	}
	while (got < sizeof(req) - 1) {
		r = ssl != NULL ? SSL_read(ssl, req + got, (int)(sizeof(req) - 1 - got))
			: read(fd, req + got, sizeof(req) - 1 - got);
		if (r <= 0)
			break;
		got += (size_t)r;
		req[got] = '\0';
		if (strstr(req, "\r\n\r\n") != NULL)
			break;
	}
	if (write(count_fd, "x", 1) != 1)
		_exit(3);
	body = read_file(jwks_doc, &len);
	switch (mode) {
	case SRV_HANG:
		free(body);
		return; /* fd stays open, never answered */
	case SRV_RAW:
		srv_io(ssl, fd, body, len);
		break;
	case SRV_404:
		snprintf(hdr, sizeof(hdr), "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
		srv_io(ssl, fd, hdr, strlen(hdr));
		break;
	case SRV_CHUNKED:
		snprintf(hdr, sizeof(hdr), "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%zx\r\n",
			len / 2);
		srv_io(ssl, fd, hdr, strlen(hdr));
		srv_io(ssl, fd, body, len / 2);
		snprintf(hdr, sizeof(hdr), "\r\n%zx;ext=1\r\n", len - len / 2);
		srv_io(ssl, fd, hdr, strlen(hdr));
		srv_io(ssl, fd, body + len / 2, len - len / 2);
		srv_io(ssl, fd, "\r\n0\r\n\r\n", 7);
		break;
	case SRV_TRUNCATED:
		snprintf(hdr, sizeof(hdr), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", len + 10);
		srv_io(ssl, fd, hdr, strlen(hdr));
		srv_io(ssl, fd, body, len);
		break;
	default:
		snprintf(hdr, sizeof(hdr), "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
			"Content-Length: %zu\r\n\r\n", len);
		srv_io(ssl, fd, hdr, strlen(hdr));
		srv_io(ssl, fd, body, len);
		break;
	}
	free(body);
	if (ssl != NULL) {
		SSL_shutdown(ssl);
		SSL_free(ssl);
	}
	close(fd);
}

/* Starts the server with the document text doc; returns its port. */
static int
srv_start(enum srv_mode mode, X509 *cert, const char *doc)
{
	struct sockaddr_in sin;
	socklen_t sl = sizeof(sin);
	int lfd, pfd[2], fd;
	SSL_CTX *ctx = NULL;

	snprintf(jwks_doc, sizeof(jwks_doc), "/tmp/check_auth_jwks.%d", (int)getpid());
	write_file(jwks_doc, doc);
	ck_assert(pipe(pfd) == 0);
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert(lfd >= 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) == 0);
	ck_assert(listen(lfd, 16) == 0);
	ck_assert(getsockname(lfd, (struct sockaddr *)&sin, &sl) == 0);
	if (mode == SRV_TLS) {
		ctx = SSL_CTX_new(TLS_server_method());
		ck_assert(ctx != NULL);
		ck_assert(SSL_CTX_use_certificate(ctx, cert) == 1);
		ck_assert(SSL_CTX_use_PrivateKey(ctx, rsa_key) == 1);
	}
	srv_pid = fork();
	ck_assert(srv_pid >= 0);
	if (srv_pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(pfd[0]);
		count_fd = pfd[1];
		for (;;) {
			fd = accept(lfd, NULL, NULL);
			if (fd >= 0)
				srv_serve(fd, mode, ctx);
		}
	}
	SSL_CTX_free(ctx);
	close(lfd);
	close(pfd[1]);
	count_fd = pfd[0];
	ck_assert(fcntl(count_fd, F_SETFL, O_NONBLOCK) == 0);
	return ntohs(sin.sin_port);
}

/* Number of requests served so far (cumulative). */
static int srv_requests;

static int
srv_count(void)
{
	char b[64];
	ssize_t r;

	while ((r = read(count_fd, b, sizeof(b))) > 0)
		srv_requests += (int)r;
	return srv_requests;
}

static void
srv_stop(void)
{
	kill(srv_pid, SIGKILL);
	waitpid(srv_pid, NULL, 0);
	unlink(jwks_doc);
}

static void
b64url_bn(struct buf *b, const BIGNUM *bn, int pad)
{
	unsigned char tmp[1024];
	int n = pad > 0 ? pad : BN_num_bytes(bn);

	ck_assert(BN_bn2binpad(bn, tmp, n) == n);
	b64url(b, tmp, (size_t)n);
}

/* One JWK object for key k; alg NULL leaves it out. */
static void
jwk_append(struct buf *b, EVP_PKEY *k, const char *kid, const char *alg)
{
	BIGNUM *x = NULL, *y = NULL;
	unsigned char raw[64];
	size_t rawlen = sizeof(raw);
	char crv[32];
	int bits;

	buf_printf(b, "{\"kid\":\"%s\",\"use\":\"sig\",", kid);
	if (alg != NULL)
		buf_printf(b, "\"alg\":\"%s\",", alg);
	switch (EVP_PKEY_get_base_id(k)) {
	case EVP_PKEY_RSA:
		ck_assert(EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_N, &x) == 1);
		ck_assert(EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_E, &y) == 1);
		buf_puts(b, "\"kty\":\"RSA\",\"n\":\"");
		b64url_bn(b, x, 0);
		buf_puts(b, "\",\"e\":\"");
		b64url_bn(b, y, 0);
		buf_puts(b, "\"}");
		break;
	case EVP_PKEY_EC:
		ck_assert(EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_EC_PUB_X, &x) == 1);
		ck_assert(EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_EC_PUB_Y, &y) == 1);
		bits = EVP_PKEY_get_bits(k);
		snprintf(crv, sizeof(crv), "P-%d", bits);
		buf_printf(b, "\"kty\":\"EC\",\"crv\":\"%s\",\"x\":\"", crv);
		b64url_bn(b, x, (bits + 7) / 8);
		buf_puts(b, "\",\"y\":\"");
		b64url_bn(b, y, (bits + 7) / 8);
		buf_puts(b, "\"}");
		break;
	default:
		ck_assert(EVP_PKEY_get_raw_public_key(k, raw, &rawlen) == 1);
		buf_puts(b, "\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"");
		b64url(b, raw, rawlen);
		buf_puts(b, "\"}");
		break;
	}
	BN_free(x);
	BN_free(y);
}

/* The usual set: r1 RSA, r2 second RSA, e1 P-256, e3 P-384, d1 Ed25519. */
static char *
std_doc(void)
{
	struct buf b = BUF_INIT;

	buf_puts(&b, "{\"keys\":[");
	jwk_append(&b, rsa_key, "r1", NULL);
	buf_putc(&b, ',');
	jwk_append(&b, rsa2_key, "r2", "RS256");
	buf_putc(&b, ',');
	jwk_append(&b, ec256_key, "e1", NULL);
	buf_putc(&b, ',');
	jwk_append(&b, ec384_key, "e3", "ES384");
	buf_putc(&b, ',');
	jwk_append(&b, ed_key, "d1", NULL);
	buf_puts(&b, "]}");
	buf_cstr(&b);
	return buf_steal(&b, NULL);
}

static char *
tok_ed(EVP_PKEY *key, const char *header, const char *claims)
{
	struct buf b = BUF_INIT;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char sig[64];
	size_t siglen = sizeof(sig);

	signing_input(&b, header, claims);
	ck_assert(EVP_DigestSignInit(ctx, NULL, NULL, NULL, key) == 1);
	ck_assert(EVP_DigestSign(ctx, sig, &siglen, (unsigned char *)b.data, b.len) == 1);
	EVP_MD_CTX_free(ctx);
	buf_putc(&b, '.');
	b64url(&b, sig, siglen);
	return buf_steal(&b, NULL);
}

#define KHDR(alg, kid) "{\"alg\":\"" alg "\",\"kid\":\"" kid "\",\"typ\":\"JWT\"}"
#define JCLAIMS "{\"sub\":\"jw\",\"exp\":1800000000}"

static struct auth_verifier *
jwks_verifier(const char *scheme_host, int port)
{
	char url[128];
	struct auth_keys k = { 0 };

	snprintf(url, sizeof(url), "%s:%d/jwks", scheme_host, port);
	k.jwks_public_endpoint = url;
	return mkv(&k);
}

/* Verifies a connection token (freed); *reason gets the why text. */
static enum auth_result
jconn(struct auth_verifier *v, char *tok, struct buf *reason)
{
	struct auth_conn_claims c;
	enum auth_result r;

	buf_reset(reason);
	r = auth_verify_connection(v, tok, strlen(tok), NOW, &c, reason);
	if (r == AUTH_OK)
		ck_assert_str_eq(c.user, "jw");
	else
		ck_assert_msg(reason->len > 0, "no reason for %s", auth_result_name(r));
	auth_conn_claims_free(&c);
	free(tok);
	buf_cstr(reason);
	return r;
}

#define ASSERT_INVALID(r, why, sub) do { \
	ck_assert_int_eq((r), AUTH_INVALID); \
	ck_assert_msg(strstr(buf_cstr(why), (sub)) != NULL, "reason \"%s\" lacks \"%s\"", \
		buf_cstr(why), (sub)); \
} while (0)

START_TEST(test_jwks_rsa_ec_ed)
{
	char *doc = std_doc();
	int port = srv_start(SRV_LEN, NULL, doc);
	struct auth_verifier *v = jwks_verifier("http://127.0.0.1", port);
	struct buf why = BUF_INIT;
	enum auth_result r;

	ck_assert_int_eq(srv_count(), 0); /* nothing fetched at creation */
	r = jconn(v, tok_pk(rsa_key, 256, 0, KHDR("RS256", "r1"), JCLAIMS), &why);
	ck_assert_msg(r == AUTH_OK, "RS256: %s", buf_cstr(&why));
	/* no JWK alg: any RS* of the token */
	r = jconn(v, tok_pk(rsa_key, 512, 0, KHDR("RS512", "r1"), JCLAIMS), &why);
	ck_assert_msg(r == AUTH_OK, "RS512: %s", buf_cstr(&why));
	r = jconn(v, tok_pk(ec256_key, 256, 32, KHDR("ES256", "e1"), JCLAIMS), &why);
	ck_assert_msg(r == AUTH_OK, "ES256: %s", buf_cstr(&why));
	r = jconn(v, tok_pk(ec384_key, 384, 48, KHDR("ES384", "e3"), JCLAIMS), &why);
	ck_assert_msg(r == AUTH_OK, "ES384: %s", buf_cstr(&why));
	r = jconn(v, tok_ed(ed_key, KHDR("EdDSA", "d1"), JCLAIMS), &why);
	ck_assert_msg(r == AUTH_OK, "EdDSA: %s", buf_cstr(&why));
	/* the set was fetched once and then cached */
	ck_assert_int_eq(srv_count(), 1);

	/* signatures still matter */
	r = jconn(v, tok_pk(rsa2_key, 256, 0, KHDR("RS256", "r1"), JCLAIMS), &why);
	ASSERT_INVALID(r, &why, "bad RS256 signature");
	r = jconn(v, tok_pk(ec256_key, 256, 32, KHDR("ES256", "e1"), JCLAIMS "x"), &why);
	ck_assert_int_eq(r, AUTH_INVALID);
	{
		char *t = tok_ed(ed_key, KHDR("EdDSA", "d1"), JCLAIMS);
		t[strlen(t) - 2] = t[strlen(t) - 2] == 'A' ? 'B' : 'A';
		r = jconn(v, t, &why);
		ASSERT_INVALID(r, &why, "bad EdDSA signature");
	}
	/* subscription tokens use the same keys */
	{
		struct auth_sub_claims sc;
		char *t = tok_pk(ec256_key, 256, 32, KHDR("ES256", "e1"),
			"{\"sub\":\"jw\",\"channel\":\"c\"}");

		buf_reset(&why);
		r = auth_verify_subscription(v, t, strlen(t), NOW, &sc, &why);
		ck_assert_msg(r == AUTH_OK, "sub: %s", buf_cstr(&why));
		ck_assert_str_eq(sc.channel, "c");
		auth_sub_claims_free(&sc);
		free(t);
	}
	auth_verifier_free(v);
	buf_free(&why);
	free(doc);
	srv_stop();
}
END_TEST

START_TEST(test_jwks_kid_and_alg)
{
	char *doc = std_doc();
	int port = srv_start(SRV_CHUNKED, NULL, doc);
	struct auth_verifier *v = jwks_verifier("http://127.0.0.1", port);
	struct buf why = BUF_INIT;
	enum auth_result r;

	/* kid selects among two RSA keys (and chunked responses work) */
	r = jconn(v, tok_pk(rsa2_key, 256, 0, KHDR("RS256", "r2"), JCLAIMS), &why);
	ck_assert_msg(r == AUTH_OK, "r2: %s", buf_cstr(&why));
	r = jconn(v, tok_pk(rsa_key, 256, 0, KHDR("RS256", "r2"), JCLAIMS), &why);
	ASSERT_INVALID(r, &why, "bad RS256 signature");
	/* no kid */
	r = jconn(v, tok_pk(rsa_key, 256, 0, HDR("RS256"), JCLAIMS), &why);
	ASSERT_INVALID(r, &why, "no kid");
	/* RS256 token naming an EC key */
	r = jconn(v, tok_pk(rsa_key, 256, 0, KHDR("RS256", "e1"), JCLAIMS), &why);
	ASSERT_INVALID(r, &why, "does not fit the EC key");
	/* ES256 token naming the Ed25519 key, EdDSA naming RSA */
	r = jconn(v, tok_pk(ec256_key, 256, 32, KHDR("ES256", "d1"), JCLAIMS), &why);
	ASSERT_INVALID(r, &why, "does not fit the OKP key");
	r = jconn(v, tok_ed(ed_key, KHDR("EdDSA", "r1"), JCLAIMS), &why);
	ASSERT_INVALID(r, &why, "does not fit the RSA key");
	/* JWK alg RS256 fixes the alg: RS512 with that key is refused */
	r = jconn(v, tok_pk(rsa2_key, 512, 0, KHDR("RS512", "r2"), JCLAIMS), &why);
	ASSERT_INVALID(r, &why, "is not the alg RS256");
	/* curve and alg must agree: ES384 with the P-256 key */
	r = jconn(v, tok_pk(ec256_key, 384, 32, KHDR("ES384", "e1"), JCLAIMS), &why);
	ASSERT_INVALID(r, &why, "does not fit the P-256 key");
	/* HMAC and unknown algs are refused without a fetch */
	r = jconn(v, tok_hs(256, SECRET, KHDR("HS256", "r1"), JCLAIMS), &why);
	ASSERT_INVALID(r, &why, "only JWKS keys");
	r = jconn(v, tok_pk(rsa_key, 256, 0, KHDR("PS256", "r1"), JCLAIMS), &why);
	ASSERT_INVALID(r, &why, "unsupported alg");
	ck_assert_int_eq(srv_count(), 1);
	auth_verifier_free(v);
	buf_free(&why);
	free(doc);
	srv_stop();
}
END_TEST

START_TEST(test_jwks_rotation)
{
	struct buf d = BUF_INIT, why = BUF_INIT;
	struct auth_verifier *v;
	enum auth_result r;
	int port;

	jwks_set_timing(-1, 0, -1); /* no refetch rate limit */
	buf_puts(&d, "{\"keys\":[");
	jwk_append(&d, rsa_key, "old", NULL);
	buf_puts(&d, "]}");
	port = srv_start(SRV_LEN, NULL, buf_cstr(&d));
	v = jwks_verifier("http://127.0.0.1", port);
	r = jconn(v, tok_pk(rsa_key, 256, 0, KHDR("RS256", "old"), JCLAIMS), &why);
	ck_assert_msg(r == AUTH_OK, "old: %s", buf_cstr(&why));
	ck_assert_int_eq(srv_count(), 1);

	/* the issuer rotates: a token with the new kid makes us refetch */
	buf_reset(&d);
	buf_puts(&d, "{\"keys\":[");
	jwk_append(&d, rsa2_key, "new", NULL);
	buf_puts(&d, "]}");
	write_file(jwks_doc, buf_cstr(&d));
	r = jconn(v, tok_pk(rsa2_key, 256, 0, KHDR("RS256", "new"), JCLAIMS), &why);
	ck_assert_msg(r == AUTH_OK, "new: %s", buf_cstr(&why));
	ck_assert_int_eq(srv_count(), 2);
	/* the old key is gone from the set (its kid refetches, then fails) */
	r = jconn(v, tok_pk(rsa_key, 256, 0, KHDR("RS256", "old"), JCLAIMS), &why);
	ASSERT_INVALID(r, &why, "no key with kid \"old\"");
	ck_assert_int_eq(srv_count(), 3);
	auth_verifier_free(v);
	buf_free(&d);
	buf_free(&why);
	srv_stop();
}
END_TEST

START_TEST(test_jwks_rate_limit)
{
	char *doc = std_doc();
	struct auth_verifier *v;
	struct buf why = BUF_INIT;
	enum auth_result r;
	int port, i;

	jwks_set_timing(-1, 3600000, -1); /* one fetch per hour at most */
	port = srv_start(SRV_LEN, NULL, doc);
	v = jwks_verifier("http://127.0.0.1", port);
	r = jconn(v, tok_pk(rsa_key, 256, 0, KHDR("RS256", "r1"), JCLAIMS), &why);
	ck_assert_msg(r == AUTH_OK, "r1: %s", buf_cstr(&why));
	/* a flood of unknown kids does not reach the endpoint */
	for (i = 0; i < 50; i++) {
		r = jconn(v, tok_pk(rsa_key, 256, 0, KHDR("RS256", "bogus"), JCLAIMS), &why);
		ASSERT_INVALID(r, &why, "rate-limited");
	}
	ck_assert_int_eq(srv_count(), 1);
	/* known kids keep working from the cache */
	r = jconn(v, tok_pk(rsa_key, 256, 0, KHDR("RS256", "r1"), JCLAIMS), &why);
	ck_assert_int_eq(r, AUTH_OK);
	auth_verifier_free(v);
	buf_free(&why);
	free(doc);
	srv_stop();
}
END_TEST

START_TEST(test_jwks_malformed_documents)
{
	static const char *const docs[] = {
		"", "not json", "[]", "{\"keys\":5}", "{\"nokeys\":[]}", "{\"keys\":[",
		"{\"keys\":[1,\"x\",null,[],{}]}", "\x01\x02", "{\"keys\":{}}",
	};
	struct auth_verifier *v;
	struct buf why = BUF_INIT;
	enum auth_result r;
	size_t i;
	int port;

	jwks_set_timing(-1, 0, -1);
	port = srv_start(SRV_LEN, NULL, "");
	v = jwks_verifier("http://127.0.0.1", port);
	for (i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
		write_file(jwks_doc, docs[i]);
		r = jconn(v, tok_pk(rsa_key, 256, 0, KHDR("RS256", "r1"), JCLAIMS), &why);
		ck_assert_msg(r == AUTH_INVALID, "doc %zu accepted", i);
	}
	/* the server keeps serving bad docs: the verifier keeps answering */
	ck_assert_int_ge(srv_count(), (int)(sizeof(docs) / sizeof(docs[0])));
	auth_verifier_free(v);
	buf_free(&why);
	srv_stop();
}
END_TEST

/* Every malformed JWK is skipped; the good one next to them still works. */
START_TEST(test_jwks_malformed_keys)
{
	static const char *const bad[] = {
		"{\"kty\":\"RSA\",\"kid\":\"a\"}",
		"{\"kty\":\"RSA\",\"kid\":\"a\",\"n\":\"!!!\",\"e\":\"AQAB\"}",
		"{\"kty\":\"RSA\",\"kid\":\"a\",\"n\":\"AQAB\",\"e\":\"AQAB\"}",
		"{\"kty\":\"RSA\",\"kid\":\"a\",\"n\":5,\"e\":\"AQAB\"}",
		"{\"kty\":\"EC\",\"kid\":\"a\",\"crv\":\"P-192\",\"x\":\"AQAB\",\"y\":\"AQAB\"}",
		"{\"kty\":\"EC\",\"kid\":\"a\",\"crv\":\"P-256\",\"x\":\"AQAB\",\"y\":\"AQAB\"}",
		"{\"kty\":\"EC\",\"kid\":\"a\",\"crv\":\"P-256\","
		"\"x\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\","
		"\"y\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE\"}",
		"{\"kty\":\"OKP\",\"kid\":\"a\",\"crv\":\"X25519\",\"x\":\"AQAB\"}",
		"{\"kty\":\"OKP\",\"kid\":\"a\",\"crv\":\"Ed25519\",\"x\":\"AQAB\"}",
		"{\"kty\":\"oct\",\"kid\":\"a\",\"k\":\"AQAB\"}",
		"{\"kid\":\"a\"}",
		"{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\"}",
		"{\"kty\":\"OKP\",\"kid\":\"a\",\"use\":\"enc\",\"crv\":\"Ed25519\",\"x\":\"AQAB\"}",
		"{\"kty\":\"OKP\",\"kid\":\"a\",\"alg\":7,\"crv\":\"Ed25519\",\"x\":\"AQAB\"}",
		"{\"kty\":[],\"kid\":{}}",
		"42",
	};
	struct jwks *j;
	struct buf d = BUF_INIT, err = BUF_INIT;
	size_t i;

	j = jwks_new("http://127.0.0.1:1/", &err);
	ck_assert(j != NULL);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		buf_reset(&d);
		buf_printf(&d, "{\"keys\":[%s]}", bad[i]);
		ck_assert_msg(jwks_load(j, d.data, d.len, &err) == 0, "key %zu loaded", i);
	}
	ck_assert_int_eq(jwks_load(j, "{\"keys\":[", 9, &err), -1);
	ck_assert(strstr(buf_cstr(&err), "not JSON") != NULL);
	buf_reset(&d);
	buf_puts(&d, "{\"keys\":[");
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		buf_printf(&d, "%s,", bad[i]);
	jwk_append(&d, ed_key, "a", "EdDSA");
	buf_puts(&d, "]}");
	ck_assert_int_eq(jwks_load(j, d.data, d.len, &err), 1);
	ck_assert(jwks_lookup(j, "a", NULL) != NULL);
	jwks_free(j);
	buf_free(&d);
	buf_free(&err);
}
END_TEST

START_TEST(test_jwks_unreachable)
{
	struct sockaddr_in sin;
	socklen_t sl = sizeof(sin);
	struct auth_verifier *v;
	struct buf why = BUF_INIT;
	enum auth_result r;
	int fd, port;
	char *doc;

	/* a port nobody listens on */
	fd = socket(AF_INET, SOCK_STREAM, 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert(bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0);
	ck_assert(getsockname(fd, (struct sockaddr *)&sin, &sl) == 0);
	port = ntohs(sin.sin_port);
	close(fd);
	jwks_set_timing(-1, 0, 300);
	v = jwks_verifier("http://127.0.0.1", port);
	r = jconn(v, tok_pk(rsa_key, 256, 0, KHDR("RS256", "r1"), JCLAIMS), &why);
	ASSERT_INVALID(r, &why, "unavailable");
	ASSERT_INVALID(r, &why, "Connection refused");
	auth_verifier_free(v);

	/* accepts, never answers: timeout, then one retry */
	doc = std_doc();
	port = srv_start(SRV_HANG, NULL, doc);
	v = jwks_verifier("http://127.0.0.1", port);
	r = jconn(v, tok_pk(rsa_key, 256, 0, KHDR("RS256", "r1"), JCLAIMS), &why);
	ASSERT_INVALID(r, &why, "timed out");
	ck_assert_int_eq(srv_count(), 2);
	auth_verifier_free(v);
	srv_stop();

	/* 404 and a truncated body */
	port = srv_start(SRV_404, NULL, doc);
	v = jwks_verifier("http://127.0.0.1", port);
	r = jconn(v, tok_pk(rsa_key, 256, 0, KHDR("RS256", "r1"), JCLAIMS), &why);
	ASSERT_INVALID(r, &why, "404");
	auth_verifier_free(v);
	srv_stop();
	port = srv_start(SRV_TRUNCATED, NULL, doc);
	v = jwks_verifier("http://127.0.0.1", port);
	r = jconn(v, tok_pk(rsa_key, 256, 0, KHDR("RS256", "r1"), JCLAIMS), &why);
	ASSERT_INVALID(r, &why, "truncated");
	auth_verifier_free(v);
	srv_stop();
	free(doc);
	buf_free(&why);
}
END_TEST

/* Broken HTTP responses: refused with a reason, never a crash. */
START_TEST(test_jwks_bad_http)
{
	static const char *const resp[] = {
		"",
		"garbage",
		"garbage\r\n\r\n",
		"HTTP/1.1 \r\n\r\n",
		"HTTP/1.1 2\r\n\r\n",
		"HTTP/1.1 20x OK\r\n\r\n",
		"HTTP/2 200\r\n\r\n{\"keys\":[]}",
		"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n{}",
		"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n{}",
		"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n{}",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}XX0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffff\r\n{}",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n",
		"HTTP/1.1 200 OK\r\n\r\n{\"keys\":",
		"HTTP/1.1 301 Moved\r\nLocation: /x\r\n\r\n",
	};
	struct auth_verifier *v;
	struct buf why = BUF_INIT;
	enum auth_result r;
	size_t i;
	int port;

	jwks_set_timing(-1, 0, 300);
	port = srv_start(SRV_RAW, NULL, "");
	v = jwks_verifier("http://127.0.0.1", port);
	for (i = 0; i < sizeof(resp) / sizeof(resp[0]); i++) {
		write_file(jwks_doc, resp[i]);
		r = jconn(v, tok_pk(rsa_key, 256, 0, KHDR("RS256", "r1"), JCLAIMS), &why);
		ck_assert_msg(r == AUTH_INVALID, "response %zu accepted", i);
		ck_assert_msg(strstr(why.data, "unavailable") != NULL, "response %zu: %s", i,
			why.data);
	}
	/* a good raw response without Content-Length (body until close) works */
	{
		struct buf d = BUF_INIT;
		char *doc = std_doc();

		buf_printf(&d, "HTTP/1.0 200 OK\r\nX-A: b\r\n\r\n%s", doc);
		write_file(jwks_doc, buf_cstr(&d));
		r = jconn(v, tok_pk(rsa_key, 256, 0, KHDR("RS256", "r1"), JCLAIMS), &why);
		ck_assert_msg(r == AUTH_OK, "%s", buf_cstr(&why));
		buf_free(&d);
		free(doc);
	}
	auth_verifier_free(v);
	buf_free(&why);
	srv_stop();
}
END_TEST

START_TEST(test_jwks_https)
{
	char *doc = std_doc();
	char certfile[64];
	struct auth_verifier *v;
	struct buf why = BUF_INIT;
	enum auth_result r;
	FILE *f;
	int port;

	snprintf(certfile, sizeof(certfile), "/tmp/check_auth_ca.%d", (int)getpid());
	f = fopen(certfile, "w");
	ck_assert(f != NULL);
	ck_assert(PEM_write_X509(f, srv_cert) == 1);
	fclose(f);
	setenv("SSL_CERT_FILE", certfile, 1);
	setenv("SSL_CERT_DIR", "/nonexistent", 1);

	port = srv_start(SRV_TLS, srv_cert, doc);
	v = jwks_verifier("https://127.0.0.1", port);
	r = jconn(v, tok_pk(rsa_key, 256, 0, KHDR("RS256", "r1"), JCLAIMS), &why);
	ck_assert_msg(r == AUTH_OK, "https IP: %s", buf_cstr(&why));
	auth_verifier_free(v);
	v = jwks_verifier("https://localhost", port);
	r = jconn(v, tok_ed(ed_key, KHDR("EdDSA", "d1"), JCLAIMS), &why);
	ck_assert_msg(r == AUTH_OK, "https localhost: %s", buf_cstr(&why));
	auth_verifier_free(v);
	srv_stop();

	/* trusted certificate, wrong name */
	port = srv_start(SRV_TLS, srv_cert_other, doc);
	f = fopen(certfile, "w");
	ck_assert(PEM_write_X509(f, srv_cert_other) == 1);
	fclose(f);
	v = jwks_verifier("https://127.0.0.1", port);
	r = jconn(v, tok_pk(rsa_key, 256, 0, KHDR("RS256", "r1"), JCLAIMS), &why);
	ASSERT_INVALID(r, &why, "certificate verification failed");
	auth_verifier_free(v);
	srv_stop();

	/* untrusted certificate */
	port = srv_start(SRV_TLS, srv_cert, doc);
	v = jwks_verifier("https://127.0.0.1", port);
	r = jconn(v, tok_pk(rsa_key, 256, 0, KHDR("RS256", "r1"), JCLAIMS), &why);
	ASSERT_INVALID(r, &why, "certificate verification failed");
	auth_verifier_free(v);
	srv_stop();
	unlink(certfile);
	free(doc);
	buf_free(&why);
}
END_TEST

START_TEST(test_jwks_endpoint_errors)
{
	static const char *const bad[] = {
		"ftp://example.com/jwks", "http://", "http:///jwks", "http://h:0/",
		"http://h:99999/", "http://h:12x/", "http://[::1/jwks", "http://u@h/",
		"example.com/jwks", "http://h/a b",
	};
	struct auth_keys k = { 0 };
	struct buf err = BUF_INIT, why = BUF_INIT;
	struct auth_verifier *v;
	size_t i;

	k.jwks_public_endpoint = "https://{{tenant}}.example.com/jwks";
	v = auth_verifier_new(&k, &err);
	ck_assert(v == NULL);
	ck_assert_msg(strstr(buf_cstr(&err), "jwks_public_endpoint") != NULL &&
		strstr(err.data, "POSIX") != NULL, "%s", err.data);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		buf_reset(&err);
		k.jwks_public_endpoint = bad[i];
		v = auth_verifier_new(&k, &err);
		ck_assert_msg(v == NULL, "accepted %s", bad[i]);
		ck_assert_msg(strncmp(buf_cstr(&err), "jwks_public_endpoint: ", 22) == 0,
			"%s", err.data);
	}
	/* accepted forms; static keys are ignored, even broken ones */
	buf_reset(&err);
	k.jwks_public_endpoint = "http://[::1]:8080/.well-known/jwks.json?x=1";
	k.rsa_public_key = "not a key";
	k.hmac_secret_key = SECRET;
	v = auth_verifier_new(&k, &err);
	ck_assert_msg(v != NULL, "%s", buf_cstr(&err));
	ck_assert_uint_eq(err.len, 0);
	ck_assert_int_eq(jconn(v, tok_hs(256, SECRET, HDR("HS256"), JCLAIMS), &why), AUTH_INVALID);
	auth_verifier_free(v);
	k.jwks_public_endpoint = "https://example.com";
	v = mkv(&k);
	auth_verifier_free(v);
	/* without JWKS, EdDSA is a disabled alg */
	k.jwks_public_endpoint = NULL;
	k.rsa_public_key = NULL;
	v = mkv(&k);
	ck_assert_int_eq(jconn(v, tok_ed(ed_key, KHDR("EdDSA", "d1"), JCLAIMS), &why),
		AUTH_INVALID);
	auth_verifier_free(v);
	buf_free(&err);
	buf_free(&why);
}
END_TEST

/* Self-signed certificate for the TLS server, names in its SAN. */
static X509 *
make_cert(const char *cn, const char *san)
{
	X509 *x = X509_new();
	X509V3_CTX ctx;
	X509_EXTENSION *ext;

	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 2);
	X509_gmtime_adj(X509_getm_notBefore(x), -60);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, rsa_key);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
		(const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name, san);
	REQUIRE(ext != NULL);
	X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_basic_constraints, "critical,CA:TRUE");
	REQUIRE(ext != NULL);
	X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	REQUIRE(X509_sign(x, rsa_key, EVP_sha256()) > 0);
	return x;
}

static Suite *
auth_suite(void)
{
	Suite *s = suite_create("auth");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 20);
	tcase_add_test(tc, test_hs_valid);
	tcase_add_test(tc, test_make_hmac);
	tcase_add_test(tc, test_hs_wrong_secret_and_tamper);
	tcase_add_test(tc, test_alg_none);
	tcase_add_test(tc, test_alg_not_configured);
	tcase_add_test(tc, test_rs_valid);
	tcase_add_test(tc, test_rs_certificate);
	tcase_add_test(tc, test_es_valid);
	tcase_add_test(tc, test_libjwt_cross_check);
	tcase_add_test(tc, test_key_forms);
	tcase_add_test(tc, test_verifier_new_errors);
	tcase_add_test(tc, test_hmac_rotation);
	tcase_add_test(tc, test_skip_verify);
	tcase_add_test(tc, test_exp_nbf);
	tcase_add_test(tc, test_exp_fractional);
	tcase_add_test(tc, test_expire_at);
	tcase_add_test(tc, test_aud_iss);
	tcase_add_test(tc, test_regex);
	tcase_add_test(tc, test_wrong_types);
	tcase_add_test(tc, test_user_id_claim);
	tcase_add_test(tc, test_conn_channel_claim);
	tcase_add_test(tc, test_sub_token);
	tcase_add_test(tc, test_info_b64info);
	tcase_add_test(tc, test_subs);
	tcase_add_test(tc, test_malformed);
	tcase_add_test(tc, test_mutations);
	tcase_add_test(tc, test_result_names);
	suite_add_tcase(s, tc);

	tc = tcase_create("jwks");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_jwks_rsa_ec_ed);
	tcase_add_test(tc, test_jwks_kid_and_alg);
	tcase_add_test(tc, test_jwks_rotation);
	tcase_add_test(tc, test_jwks_rate_limit);
	tcase_add_test(tc, test_jwks_malformed_documents);
	tcase_add_test(tc, test_jwks_malformed_keys);
	tcase_add_test(tc, test_jwks_unreachable);
	tcase_add_test(tc, test_jwks_bad_http);
	tcase_add_test(tc, test_jwks_https);
	tcase_add_test(tc, test_jwks_endpoint_errors);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr;
	int failed;

	rsa_key = EVP_RSA_gen(2048);
	ec256_key = EVP_EC_gen("P-256");
	ec384_key = EVP_EC_gen("P-384");
	rsa2_key = EVP_RSA_gen(2048);
	ed_key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	if (rsa_key == NULL || ec256_key == NULL || ec384_key == NULL || rsa2_key == NULL ||
	    ed_key == NULL) {
		fprintf(stderr, "check_auth: key generation failed\n");
		return 1;
	}
	rsa_pub = pem_pub(rsa_key);
	rsa_priv = pem_priv(rsa_key);
	rsa_cert = pem_cert(rsa_key);
	ec256_pub = pem_pub(ec256_key);
	ec256_priv = pem_priv(ec256_key);
	ec384_pub = pem_pub(ec384_key);
	srv_cert = make_cert("jwks test", "IP:127.0.0.1,DNS:localhost");
	srv_cert_other = make_cert("jwks other", "DNS:example.com");
	signal(SIGPIPE, SIG_IGN);

	sr = srunner_create(auth_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);

	EVP_PKEY_free(rsa_key);
	EVP_PKEY_free(ec256_key);
	EVP_PKEY_free(ec384_key);
	EVP_PKEY_free(rsa2_key);
	EVP_PKEY_free(ed_key);
	X509_free(srv_cert);
	X509_free(srv_cert_other);
	free(rsa_pub);
	free(rsa_priv);
	free(rsa_cert);
	free(ec256_pub);
	free(ec256_priv);
	free(ec384_pub);
	return failed == 0 ? 0 : 1;
}
