/*
 * auth.c - JWT verification of connection and subscription tokens
 * (protocol.md §6).  Runs in every worker process (connect, refresh,
 * subscribe, sub_refresh); the supervisor builds a verifier once at config
 * check time to report bad keys and regexes.
 *
 * Signatures are checked with OpenSSL directly rather than libjwt 1.10's
 * jwt_decode(): that function compares HMACs with strcmp (timing leak),
 * accepts alg "none" when no key is passed and an empty HMAC key when the
 * key is NULL, rejects any `typ` other than "JWT" (Centrifugo ignores typ),
 * decodes base64 leniently, alloca()s token-sized buffers and re-parses the
 * PEM key on every call.  Here keys are parsed once, the alg must be one of
 * the nine JWS algorithms whose key family is configured, ES* keys must be
 * on the curve the alg names (RFC 7518 §3.4), and HMACs are compared in
 * constant time.
 *
 * With jwks_public_endpoint the key comes from jwks.c by the header's `kid`
 * (RS*, ES*, EdDSA); the static keys are then never loaded.
 *
 * Claims are parsed with jansson for strict type checks (§6.2 step 2);
 * `info`, `data` and `meta` are returned as the token's own JSON bytes,
 * located with a small scanner over the (already validated) payload, so
 * numbers and escapes reach clients unchanged.
 */
#include <errno.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "auth.h"
#include "b64.h"
#include "buf.h"
#include "jwks.h"
#include "log.h"
#include "pem.h"
#include "xmalloc.h"

#define AUTH_VERIFIER_MAGIC 0x41555448u /* "AUTH" */

struct auth_verifier {
	unsigned magic;
	unsigned char *hmac;          /* NULL = HS* disabled */
	size_t hmac_len;
	unsigned char *hmac_prev;     /* previous secret during rotation */
	size_t hmac_prev_len;
	int64_t hmac_prev_until;      /* 0 = no limit */
	EVP_PKEY *rsa;                /* NULL = RS* disabled */
	EVP_PKEY *ec;                 /* NULL = ES* disabled */
	int ec_bits;                  /* 256, 384 or 521: the one ES* alg allowed */
	char *audience;
	char *issuer;
	regex_t aud_re;
	int has_aud_re;
	regex_t iss_re;
	int has_iss_re;
	char *user_id_claim;          /* NULL = "sub" */
	int skip_verify;
	struct jwks *jwks;            /* non-NULL: JWKS only, static keys unset */
};

enum alg_family {
	ALG_HS = 0,
	ALG_RS,
	ALG_ES,
	ALG_ED                        /* EdDSA (Ed25519), JWKS only */
};

struct alg_desc {
	const char *name;
	enum alg_family family;
	int bits;                     /* 256/384/512; ES512 uses curve P-521 */
};

static const struct alg_desc alg_table[] = {
	{ "HS256", ALG_HS, 256 }, { "HS384", ALG_HS, 384 }, { "HS512", ALG_HS, 512 },
	{ "RS256", ALG_RS, 256 }, { "RS384", ALG_RS, 384 }, { "RS512", ALG_RS, 512 },
	{ "ES256", ALG_ES, 256 }, { "ES384", ALG_ES, 384 }, { "ES512", ALG_ES, 512 },
	{ "EdDSA", ALG_ED, 0 },
};

const char *
auth_result_name(enum auth_result r)
{
	switch (r) {
	case AUTH_OK: return "ok";
	case AUTH_INVALID: return "invalid";
	case AUTH_EXPIRED: return "expired";
	}
	return "unknown";
}

/* ---- base64 ---------------------------------------------------------- */

/*
 * Decodes s[0..n): url = 1 is unpadded base64url (JWS segments), url = 0 is
 * padded standard base64 (b64info, b64data).  Returns a malloc'd buffer with
 * a NUL after the *outlen bytes, or NULL on any bad character or length.
 */
static unsigned char *
auth_b64_decode(const char *s, size_t n, int url, size_t *outlen)
{
	struct buf b = BUF_INIT;

	if (b64_decode(s, n, url, &b) != 0) {
		buf_free(&b);
		return NULL;
	}
	return (unsigned char *)buf_steal(&b, outlen);
}

/* Appends unpadded base64url of p[0..n) to b. */
static void
b64url_encode(struct buf *b, const unsigned char *p, size_t n)
{
	b64_encode(p, n, 1, b);
}

/* ---- keys ------------------------------------------------------------ */

static int
pem_no_password(char *b, int size, int rw, void *u)
{
	(void)b; (void)size; (void)rw; (void)u;
	return 0;
}

/*
 * Parses a PKIX public key or a certificate out of PEM text.  Returns a key
 * the caller frees with EVP_PKEY_free(), or NULL.
 */
static EVP_PKEY *
pem_public_key(const struct buf *pem)
{
	EVP_PKEY *pkey;
	X509 *cert;
	BIO *bio;

	bio = BIO_new_mem_buf(pem->data, (int)pem->len);
	if (bio == NULL)
		return NULL;
	pkey = PEM_read_bio_PUBKEY(bio, NULL, pem_no_password, NULL);
	BIO_free(bio);
	if (pkey == NULL) {
		bio = BIO_new_mem_buf(pem->data, (int)pem->len);
		if (bio == NULL)
			return NULL;
		cert = PEM_read_bio_X509(bio, NULL, pem_no_password, NULL);
		BIO_free(bio);
		if (cert != NULL) {
			pkey = X509_get_pubkey(cert);
			X509_free(cert);
		}
	}
	ERR_clear_error();
	return pkey;
}

/* Loads option opt as a public key of type want (EVP_PKEY_RSA/EC). */
static EVP_PKEY *
load_key(const char *opt, const char *val, int want, struct buf *err)
{
	struct buf pem = BUF_INIT;
	EVP_PKEY *pkey;

	if (pem_resolve(opt, val, &pem, err) < 0) {
		buf_free(&pem);
		return NULL;
	}
	pkey = pem_public_key(&pem);
	buf_free(&pem);
	if (pkey == NULL) {
		buf_printf(err, "%s: no PEM public key or certificate found", opt);
		return NULL;
	}
	if (EVP_PKEY_get_base_id(pkey) != want) {
		buf_printf(err, "%s: key is %s, expected %s", opt,
			EVP_PKEY_get0_type_name(pkey) ? EVP_PKEY_get0_type_name(pkey) : "of another type",
			want == EVP_PKEY_RSA ? "RSA" : "EC");
		EVP_PKEY_free(pkey);
		return NULL;
	}
	return pkey;
}

/* Curve size of an EC key if it is one JWS allows (P-256/384/521), else 0. */
static int
ec_curve_bits(EVP_PKEY *pkey)
{
	char name[64];
	size_t len = 0;

	if (EVP_PKEY_get_group_name(pkey, name, sizeof(name), &len) != 1)
		return 0;
	if (strcmp(name, "prime256v1") == 0 || strcmp(name, "P-256") == 0)
		return 256;
	if (strcmp(name, "secp384r1") == 0 || strcmp(name, "P-384") == 0)
		return 384;
	if (strcmp(name, "secp521r1") == 0 || strcmp(name, "P-521") == 0)
		return 521;
	return 0;
}

static int
compile_regex(const char *opt, const char *re, regex_t *out, struct buf *err)
{
	char msg[256];
	int rc;

	rc = regcomp(out, re, REG_EXTENDED | REG_NOSUB);
	if (rc != 0) {
		regerror(rc, out, msg, sizeof(msg));
		buf_printf(err, "%s: bad regular expression \"%s\": %s", opt, re, msg);
		return -1;
	}
	return 0;
}

static int
is_set(const char *s)
{
	return s != NULL && s[0] != '\0';
}

struct auth_verifier *
auth_verifier_new(const struct auth_keys *k, struct buf *err)
{
	struct auth_verifier *v;

	v = xcalloc(1, sizeof(*v));
	v->magic = AUTH_VERIFIER_MAGIC;
	v->skip_verify = k->skip_verify;
	if (is_set(k->jwks_public_endpoint)) {
		size_t mark = err->len;

		buf_puts(err, "jwks_public_endpoint: ");
		v->jwks = jwks_new(k->jwks_public_endpoint, err);
		if (v->jwks == NULL)
			goto fail;
		err->len = mark;
		goto claims_rules;
	}
	if (is_set(k->hmac_secret_key)) {
		v->hmac_len = strlen(k->hmac_secret_key);
		v->hmac = xmemdup(k->hmac_secret_key, v->hmac_len);
	}
	if (is_set(k->hmac_previous_secret_key)) {
		v->hmac_prev_len = strlen(k->hmac_previous_secret_key);
		v->hmac_prev = xmemdup(k->hmac_previous_secret_key, v->hmac_prev_len);
		v->hmac_prev_until = k->hmac_previous_secret_key_valid_until;
	}
	if (is_set(k->rsa_public_key)) {
		v->rsa = load_key("rsa_public_key", k->rsa_public_key, EVP_PKEY_RSA, err);
		if (v->rsa == NULL)
			goto fail;
	}
	if (is_set(k->ecdsa_public_key)) {
		v->ec = load_key("ecdsa_public_key", k->ecdsa_public_key, EVP_PKEY_EC, err);
		if (v->ec == NULL)
			goto fail;
		v->ec_bits = ec_curve_bits(v->ec);
		if (v->ec_bits == 0) {
			buf_printf(err, "ecdsa_public_key: curve is not P-256, P-384 or P-521");
			goto fail;
		}
	}
claims_rules:
	if (is_set(k->audience))
		v->audience = xstrdup(k->audience);
	if (is_set(k->issuer))
		v->issuer = xstrdup(k->issuer);
	if (is_set(k->audience_regex)) {
		if (compile_regex("audience_regex", k->audience_regex, &v->aud_re, err) < 0)
			goto fail;
		v->has_aud_re = 1;
	}
	if (is_set(k->issuer_regex)) {
		if (compile_regex("issuer_regex", k->issuer_regex, &v->iss_re, err) < 0)
			goto fail;
		v->has_iss_re = 1;
	}
	if (is_set(k->user_id_claim))
		v->user_id_claim = xstrdup(k->user_id_claim);
	return v;
fail:
	auth_verifier_free(v);
	return NULL;
}

void
auth_verifier_free(struct auth_verifier *v)
{
	if (v == NULL)
		return;
	ASSERT(v->magic == AUTH_VERIFIER_MAGIC);
	if (v->hmac != NULL)
		OPENSSL_cleanse(v->hmac, v->hmac_len);
	free(v->hmac);
	if (v->hmac_prev != NULL)
		OPENSSL_cleanse(v->hmac_prev, v->hmac_prev_len);
	free(v->hmac_prev);
	EVP_PKEY_free(v->rsa);
	EVP_PKEY_free(v->ec);
	free(v->audience);
	free(v->issuer);
	if (v->has_aud_re)
		regfree(&v->aud_re);
	if (v->has_iss_re)
		regfree(&v->iss_re);
	free(v->user_id_claim);
	jwks_free(v->jwks);
	v->magic = 0;
	free(v);
}

/* ---- signatures ------------------------------------------------------ */

static const EVP_MD *
alg_md(const struct alg_desc *a)
{
	switch (a->bits) {
	case 256: return EVP_sha256();
	case 384: return EVP_sha384();
	default: return EVP_sha512();
	}
}

static int
hmac_ok(const EVP_MD *md, const unsigned char *key, size_t keylen,
	const char *in, size_t inlen, const unsigned char *sig, size_t siglen)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;

	if (HMAC(md, key, (int)keylen, (const unsigned char *)in, inlen, mac, &maclen) == NULL)
		return 0;
	return siglen == maclen && CRYPTO_memcmp(mac, sig, maclen) == 0;
}

static int
pkey_verify(EVP_PKEY *pkey, const EVP_MD *md, const char *in, size_t inlen,
	const unsigned char *sig, size_t siglen)
{
	EVP_MD_CTX *ctx;
	int ok;

	ctx = EVP_MD_CTX_new();
	if (ctx == NULL)
		return 0;
	ok = EVP_DigestVerifyInit(ctx, NULL, md, NULL, pkey) == 1 &&
		EVP_DigestVerify(ctx, sig, siglen, (const unsigned char *)in, inlen) == 1;
	EVP_MD_CTX_free(ctx);
	return ok;
}

/* JWS ECDSA signatures are r || s, each padded to the curve size; OpenSSL
 * wants DER.  Returns 1 if the signature verifies. */
static int
ecdsa_ok(EVP_PKEY *pkey, int curve_bits, const EVP_MD *md, const char *in,
	size_t inlen, const unsigned char *sig, size_t siglen)
{
	size_t n = ((size_t)curve_bits + 7) / 8;
	ECDSA_SIG *es;
	BIGNUM *r, *s;
	unsigned char *der = NULL;
	int derlen, ok;

	if (siglen != 2 * n)
		return 0;
	es = ECDSA_SIG_new();
	r = BN_bin2bn(sig, (int)n, NULL);
	s = BN_bin2bn(sig + n, (int)n, NULL);
	if (es == NULL || r == NULL || s == NULL) {
		ECDSA_SIG_free(es);
		BN_free(r);
		BN_free(s);
		return 0;
	}
	ECDSA_SIG_set0(es, r, s);
	derlen = i2d_ECDSA_SIG(es, &der);
	ECDSA_SIG_free(es);
	if (derlen <= 0)
		return 0;
	ok = pkey_verify(pkey, md, in, inlen, der, (size_t)derlen);
	OPENSSL_free(der);
	return ok;
}

/* ---- raw JSON spans -------------------------------------------------- */

/*
 * These walk JSON text that jansson has already accepted, so they only need
 * to find value boundaries, never to validate.  They stay within [0, n).
 */
static size_t
js_ws(const char *p, size_t i, size_t n)
{
	while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r'))
		i++;
	return i;
}

/* p[i] is '"'; returns the index after the closing quote. */
static size_t
js_skip_string(const char *p, size_t i, size_t n)
{
	for (i++; i < n; i++) {
		if (p[i] == '\\')
			i++;
		else if (p[i] == '"')
			return i + 1;
	}
	return n;
}

/* Returns the index just after the value starting at p[i]. */
static size_t
js_skip_value(const char *p, size_t i, size_t n)
{
	int depth = 0;

	if (i >= n)
		return n;
	if (p[i] == '"')
		return js_skip_string(p, i, n);
	if (p[i] != '{' && p[i] != '[') {
		while (i < n && strchr(",}] \t\r\n", p[i]) == NULL)
			i++;
		return i;
	}
	while (i < n) {
		if (p[i] == '"') {
			i = js_skip_string(p, i, n);
			continue;
		}
		if (p[i] == '{' || p[i] == '[')
			depth++;
		else if ((p[i] == '}' || p[i] == ']') && --depth == 0)
			return i + 1;
		i++;
	}
	return n;
}

/* Does the JSON string token t[0..tn) (with quotes) spell key? */
static int
js_key_eq(const char *t, size_t tn, const char *key)
{
	size_t klen = strlen(key);
	json_t *j;
	int eq;

	if (tn < 2)
		return 0;
	if (memchr(t, '\\', tn) == NULL)
		return tn - 2 == klen && memcmp(t + 1, key, klen) == 0;
	j = json_loadb(t, tn, JSON_DECODE_ANY, NULL);
	eq = json_is_string(j) && json_string_length(j) == klen &&
		memcmp(json_string_value(j), key, klen) == 0;
	json_decref(j);
	return eq;
}

/*
 * Finds member key of the object text p[0..n) and sets *vp, *vn to its raw
 * value; the last duplicate wins, as in jansson.  Returns 1 if found.
 */
static int
js_member(const char *p, size_t n, const char *key, const char **vp, size_t *vn)
{
	size_t i, ks, ke, vs;
	int found = 0;

	i = js_ws(p, 0, n);
	if (i >= n || p[i] != '{')
		return 0;
	i++;
	for (;;) {
		i = js_ws(p, i, n);
		if (i >= n || p[i] != '"')
			break;
		ks = i;
		i = js_skip_string(p, i, n);
		ke = i;
		i = js_ws(p, i, n);
		if (i >= n || p[i] != ':')
			break;
		i = js_ws(p, i + 1, n);
		vs = i;
		i = js_skip_value(p, i, n);
		if (js_key_eq(p + ks, ke - ks, key)) {
			found = 1;
			*vp = p + vs;
			*vn = i - vs;
		}
		i = js_ws(p, i, n);
		if (i >= n || p[i] != ',')
			break;
		i++;
	}
	return found;
}

/* ---- claim types (§6.2 step 2) --------------------------------------- */

enum claim_type {
	CT_STRING = 0,
	CT_DATE,        /* NumericDate: integer or fractional seconds */
	CT_INT,         /* int64 (expire_at) */
	CT_AUD,         /* string or list of strings */
	CT_STRLIST,
	CT_SUBS,        /* object channel -> options */
	CT_OVERRIDE
};

enum {
	FOR_CONN = 1,
	FOR_SUB = 2
};

struct claim_rule {
	const char *name;
	enum claim_type type;
	int scope;
};

/* Claims without a rule (info, data, meta, unknown ones) may be any JSON. */
static const struct claim_rule claim_rules[] = {
	{ "sub", CT_STRING, FOR_CONN | FOR_SUB },
	{ "exp", CT_DATE, FOR_CONN | FOR_SUB },
	{ "nbf", CT_DATE, FOR_CONN | FOR_SUB },
	{ "iat", CT_DATE, FOR_CONN | FOR_SUB },
	{ "jti", CT_STRING, FOR_CONN | FOR_SUB },
	{ "aud", CT_AUD, FOR_CONN | FOR_SUB },
	{ "iss", CT_STRING, FOR_CONN | FOR_SUB },
	{ "expire_at", CT_INT, FOR_CONN | FOR_SUB },
	{ "b64info", CT_STRING, FOR_CONN | FOR_SUB },
	{ "channel", CT_STRING, FOR_CONN | FOR_SUB },
	{ "channels", CT_STRLIST, FOR_CONN },
	{ "subs", CT_SUBS, FOR_CONN },
	{ "client", CT_STRING, FOR_SUB },
	{ "b64data", CT_STRING, FOR_SUB },
	{ "override", CT_OVERRIDE, FOR_SUB },
};

static const char *const override_names[] = {
	"presence", "join_leave", "force_push_join_leave", "force_recovery",
	"force_positioning",
};

#define N_OVERRIDES (sizeof(override_names) / sizeof(override_names[0]))

static int
type_ok(json_t *j, enum claim_type t)
{
	size_t i, n;
	json_t *e;
	const char *key;
	json_t *val;

	if (j == NULL || json_is_null(j))
		return 1;
	switch (t) {
	case CT_STRING:
		return json_is_string(j);
	case CT_DATE:
		return json_is_number(j);
	case CT_INT:
		return json_is_integer(j);
	case CT_AUD:
		if (json_is_string(j))
			return 1;
		/* FALLTHROUGH */
	case CT_STRLIST:
		if (!json_is_array(j))
			return 0;
		json_array_foreach(j, i, e) {
			if (!json_is_string(e))
				return 0;
		}
		return 1;
	case CT_OVERRIDE:
		if (!json_is_object(j))
			return 0;
		for (n = 0; n < N_OVERRIDES; n++) {
			e = json_object_get(j, override_names[n]);
			if (e == NULL || json_is_null(e))
				continue;
			if (!json_is_object(e))
				return 0;
			e = json_object_get(e, "value");
			if (e != NULL && !json_is_null(e) && !json_is_boolean(e))
				return 0;
		}
		return 1;
	case CT_SUBS:
		if (!json_is_object(j))
			return 0;
		json_object_foreach(j, key, val) {
			if (json_is_null(val))
				continue;
			if (!json_is_object(val) ||
			    !type_ok(json_object_get(val, "b64info"), CT_STRING) ||
			    !type_ok(json_object_get(val, "b64data"), CT_STRING) ||
			    !type_ok(json_object_get(val, "override"), CT_OVERRIDE))
				return 0;
		}
		return 1;
	}
	return 0;
}

/* Returns the name of the first claim of the wrong type, or NULL. */
static const char *
check_types(const struct auth_verifier *v, json_t *claims, int scope)
{
	size_t i;

	for (i = 0; i < sizeof(claim_rules) / sizeof(claim_rules[0]); i++) {
		if (!(claim_rules[i].scope & scope))
			continue;
		if (!type_ok(json_object_get(claims, claim_rules[i].name), claim_rules[i].type))
			return claim_rules[i].name;
	}
	if (v->user_id_claim != NULL &&
	    !type_ok(json_object_get(claims, v->user_id_claim), CT_STRING))
		return v->user_id_claim;
	return NULL;
}

/* ---- helpers for extraction ------------------------------------------ */

/* Claim value, with JSON null folded into "absent". */
static json_t *
claim(json_t *obj, const char *name)
{
	json_t *j = json_object_get(obj, name);

	return json_is_null(j) ? NULL : j;
}

static const char *
claim_str(json_t *obj, const char *name)
{
	json_t *j = claim(obj, name);

	return j != NULL ? json_string_value(j) : NULL;
}

static int64_t
date_to_i64(double d)
{
	int64_t t;

	if (d >= 9.2e18)
		return INT64_MAX;
	if (d <= -9.2e18)
		return INT64_MIN;
	t = (int64_t)d;
	if ((double)t > d)
		t--;
	return t;
}

static char *
dup_span(const char *p, size_t n)
{
	char *s = xmalloc(n + 1);

	memcpy(s, p, n);
	s[n] = '\0';
	return s;
}

/*
 * Resolves a JSON/base64 pair (info/b64info, data/b64data) of object obj,
 * whose text is raw[0..rawn).  A non-empty base64 value wins.  Returns 0
 * (with *out NULL if neither is present) or -1 on bad base64.
 */
static int
json_or_b64(json_t *obj, const char *raw, size_t rawn, const char *jname,
	const char *bname, char **out, size_t *outlen)
{
	const char *b64 = claim_str(obj, bname);
	const char *vp;
	size_t vn;

	*out = NULL;
	*outlen = 0;
	if (b64 != NULL && b64[0] != '\0') {
		*out = (char *)auth_b64_decode(b64, strlen(b64), 0, outlen);
		return *out != NULL ? 0 : -1;
	}
	if (claim(obj, jname) != NULL && js_member(raw, rawn, jname, &vp, &vn)) {
		*out = dup_span(vp, vn);
		*outlen = vn;
	}
	return 0;
}

static void
read_overrides(json_t *ov, int *dst[N_OVERRIDES])
{
	size_t i;
	json_t *e;

	for (i = 0; i < N_OVERRIDES; i++) {
		*dst[i] = AUTH_OVERRIDE_UNSET;
		e = ov != NULL ? claim(ov, override_names[i]) : NULL;
		if (e == NULL)
			continue;
		/* Go's BoolValue: {"value": true}; {} means false. */
		*dst[i] = json_is_true(json_object_get(e, "value")) ? 1 : 0;
	}
}

static enum auth_result
fail(struct buf *why, enum auth_result r, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static enum auth_result
fail(struct buf *why, enum auth_result r, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	if (why != NULL) {
		va_start(ap, fmt);
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
		buf_puts(why, msg);
	}
	return r;
}

/* ---- verification ---------------------------------------------------- */

struct parsed {
	unsigned char *payload;       /* decoded claims text */
	size_t payload_len;
	json_t *claims;
	char *user;                   /* borrowed from claims, or "" */
	int has_exp;
	double exp;
	int has_expire_at;
	int64_t expire_at;
};

static void
parsed_free(struct parsed *p)
{
	json_decref(p->claims);
	free(p->payload);
	memset(p, 0, sizeof(*p));
}

static int
aud_has(json_t *aud, const char *want, const regex_t *re)
{
	size_t i;
	json_t *e;

	if (aud == NULL)
		return 0;
	if (json_is_string(aud)) {
		if (re != NULL)
			return regexec(re, json_string_value(aud), 0, NULL, 0) == 0;
		return strcmp(json_string_value(aud), want) == 0;
	}
	json_array_foreach(aud, i, e) {
		if (aud_has(e, want, re))
			return 1;
	}
	return 0;
}

static const struct alg_desc *
alg_find(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(alg_table) / sizeof(alg_table[0]); i++) {
		if (strcmp(alg_table[i].name, name) == 0)
			return &alg_table[i];
	}
	return NULL;
}

static const char *const kty_names[] = { "RSA", "EC", "OKP" };

/*
 * §6.2 step 4 with jwks_public_endpoint: the key named by `kid`, the alg
 * the JWK fixes (if any) or the token's within the key's family.  May block
 * on a fetch (jwks.h).
 */
static enum auth_result
check_jwks_signature(struct auth_verifier *v, json_t *header, const struct alg_desc *a,
	const char *in, size_t inlen, const unsigned char *sig, size_t siglen,
	struct buf *why)
{
	const struct jwks_key *k;
	const char *kid;
	enum alg_family fam;
	int ok;

	if (a->family == ALG_HS)
		return fail(why, AUTH_INVALID, "alg %s disabled (only JWKS keys are used)",
			a->name);
	kid = json_string_value(json_object_get(header, "kid"));
	if (kid == NULL || kid[0] == '\0')
		return fail(why, AUTH_INVALID, "header has no kid (needed for JWKS)");
	k = jwks_lookup(v->jwks, kid, why);
	if (k == NULL)
		return AUTH_INVALID;
	if (k->alg != NULL && strcmp(k->alg, a->name) != 0)
		return fail(why, AUTH_INVALID, "token alg %s is not the alg %.16s of JWK \"%.64s\"",
			a->name, k->alg, kid);
	fam = k->kty == JWKS_KTY_RSA ? ALG_RS : k->kty == JWKS_KTY_EC ? ALG_ES : ALG_ED;
	if (a->family != fam)
		return fail(why, AUTH_INVALID, "alg %s does not fit the %s key \"%.64s\"",
			a->name, kty_names[k->kty], kid);
	switch (fam) {
	case ALG_RS:
		ok = pkey_verify(k->pkey, alg_md(a), in, inlen, sig, siglen);
		break;
	case ALG_ES:
		if ((a->bits == 512 ? 521 : a->bits) != k->ec_bits)
			return fail(why, AUTH_INVALID, "alg %s does not fit the P-%d key \"%.64s\"",
				a->name, k->ec_bits, kid);
		ok = ecdsa_ok(k->pkey, k->ec_bits, alg_md(a), in, inlen, sig, siglen);
		break;
	default:
		ok = pkey_verify(k->pkey, NULL, in, inlen, sig, siglen);
		break;
	}
	ERR_clear_error();
	if (!ok)
		return fail(why, AUTH_INVALID, "bad %s signature (JWK \"%.64s\")", a->name, kid);
	return AUTH_OK;
}

/* §6.2 step 4. */
static enum auth_result
check_signature(struct auth_verifier *v, json_t *header, const char *in, size_t inlen,
	const unsigned char *sig, size_t siglen, int64_t now, struct buf *why)
{
	const struct alg_desc *a;
	const char *alg;
	int ok;

	alg = json_string_value(json_object_get(header, "alg"));
	if (alg == NULL)
		return fail(why, AUTH_INVALID, "header has no alg string");
	a = alg_find(alg);
	if (a == NULL)
		return fail(why, AUTH_INVALID, "unsupported alg \"%.32s\"", alg);
	if (v->jwks != NULL)
		return check_jwks_signature(v, header, a, in, inlen, sig, siglen, why);
	switch (a->family) {
	case ALG_HS:
		if (v->hmac == NULL)
			return fail(why, AUTH_INVALID, "alg %s disabled (no hmac_secret_key)", a->name);
		ok = hmac_ok(alg_md(a), v->hmac, v->hmac_len, in, inlen, sig, siglen);
		if (!ok && v->hmac_prev != NULL &&
		    (v->hmac_prev_until == 0 || now < v->hmac_prev_until))
			ok = hmac_ok(alg_md(a), v->hmac_prev, v->hmac_prev_len, in, inlen,
				sig, siglen);
		break;
	case ALG_RS:
		if (v->rsa == NULL)
			return fail(why, AUTH_INVALID, "alg %s disabled (no rsa_public_key)", a->name);
		ok = pkey_verify(v->rsa, alg_md(a), in, inlen, sig, siglen);
		break;
	case ALG_ES:
		if (v->ec == NULL)
			return fail(why, AUTH_INVALID, "alg %s disabled (no ecdsa_public_key)", a->name);
		if ((a->bits == 512 ? 521 : a->bits) != v->ec_bits)
			return fail(why, AUTH_INVALID, "alg %s does not match the P-%d ecdsa_public_key",
				a->name, v->ec_bits);
		ok = ecdsa_ok(v->ec, v->ec_bits, alg_md(a), in, inlen, sig, siglen);
		break;
	case ALG_ED:
		return fail(why, AUTH_INVALID, "alg EdDSA needs jwks_public_endpoint");
	default:
		ok = 0;
	}
	ERR_clear_error();
	if (!ok)
		return fail(why, AUTH_INVALID, "bad %s signature", a->name);
	return AUTH_OK;
}

/*
 * §6.2 steps 1-7 shared by both token kinds.  On AUTH_OK *p holds the
 * decoded claims (caller frees with parsed_free()).
 */
static enum auth_result
verify_common(struct auth_verifier *v, const char *token, size_t len, int64_t now,
	int scope, struct parsed *p, struct buf *why)
{
	const char *dot1, *dot2, *bad, *s;
	unsigned char *hdr = NULL, *sig = NULL;
	size_t hdr_len, sig_len;
	json_t *header = NULL, *j;
	json_error_t jerr;
	enum auth_result r = AUTH_INVALID;
	double d;

	ASSERT(v != NULL && v->magic == AUTH_VERIFIER_MAGIC);
	memset(p, 0, sizeof(*p));
	if (why != NULL)
		buf_reset(why);

	/* 1. three base64url segments, header and claims are JSON objects */
	if (token == NULL || len == 0)
		return fail(why, AUTH_INVALID, "empty token");
	if (len > AUTH_TOKEN_MAX)
		return fail(why, AUTH_INVALID, "token too long (%zu bytes)", len);
	dot1 = memchr(token, '.', len);
	dot2 = dot1 != NULL ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
	if (dot2 == NULL || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)) != NULL)
		return fail(why, AUTH_INVALID, "token is not three dot-separated segments");
	hdr = auth_b64_decode(token, (size_t)(dot1 - token), 1, &hdr_len);
	p->payload = auth_b64_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), 1, &p->payload_len);
	sig = auth_b64_decode(dot2 + 1, len - (size_t)(dot2 + 1 - token), 1, &sig_len);
	if (hdr == NULL || p->payload == NULL || sig == NULL) {
		fail(why, AUTH_INVALID, "bad base64url in token %s",
			hdr == NULL ? "header" : p->payload == NULL ? "claims" : "signature");
		goto out;
	}
	header = json_loadb((char *)hdr, hdr_len, 0, &jerr);
	if (!json_is_object(header)) {
		fail(why, AUTH_INVALID, "token header is not a JSON object");
		goto out;
	}
	p->claims = json_loadb((char *)p->payload, p->payload_len, 0, &jerr);
	if (!json_is_object(p->claims)) {
		fail(why, AUTH_INVALID, "token claims are not a JSON object");
		goto out;
	}

	/* 2. claim types */
	bad = check_types(v, p->claims, scope);
	if (bad != NULL) {
		fail(why, AUTH_INVALID, "claim \"%s\" has the wrong type", bad);
		goto out;
	}

	/* 3. aud/iss regex (on unverified claims, as upstream does for JWKS) */
	if (v->has_aud_re && !aud_has(claim(p->claims, "aud"), NULL, &v->aud_re)) {
		fail(why, AUTH_INVALID, "aud does not match audience_regex");
		goto out;
	}
	if (v->has_iss_re) {
		s = claim_str(p->claims, "iss");
		if (regexec(&v->iss_re, s != NULL ? s : "", 0, NULL, 0) != 0) {
			fail(why, AUTH_INVALID, "iss does not match issuer_regex");
			goto out;
		}
	}

	/* 4. signature */
	if (!v->skip_verify) {
		r = check_signature(v, header, token, (size_t)(dot2 - token), sig, sig_len,
			now, why);
		if (r != AUTH_OK)
			goto out;
		r = AUTH_INVALID;
	}

	/* 5. exact aud/iss */
	if (v->audience != NULL && !aud_has(claim(p->claims, "aud"), v->audience, NULL)) {
		fail(why, AUTH_INVALID, "aud does not contain the configured audience");
		goto out;
	}
	if (v->issuer != NULL) {
		s = claim_str(p->claims, "iss");
		if (s == NULL || strcmp(s, v->issuer) != 0) {
			fail(why, AUTH_INVALID, "iss is not the configured issuer");
			goto out;
		}
	}

	/* 6. connection tokens must not carry a channel */
	s = claim_str(p->claims, "channel");
	if ((scope & FOR_CONN) && s != NULL && s[0] != '\0') {
		fail(why, AUTH_INVALID, "connection token has a channel claim");
		goto out;
	}

	/* 7. exp / nbf, no leeway */
	j = claim(p->claims, "exp");
	if (j != NULL) {
		d = json_number_value(j);
		if (d <= (double)now) {
			r = fail(why, AUTH_EXPIRED, "token expired");
			goto out;
		}
		p->has_exp = 1;
		p->exp = d;
	}
	j = claim(p->claims, "nbf");
	if (j != NULL && json_number_value(j) > (double)now) {
		r = fail(why, AUTH_EXPIRED, "token not valid yet (nbf)");
		goto out;
	}
	if ((scope & FOR_SUB) && (s == NULL || s[0] == '\0')) {
		fail(why, AUTH_INVALID, "subscription token has no channel");
		goto out;
	}

	j = claim(p->claims, "expire_at");
	if (j != NULL) {
		p->has_expire_at = 1;
		p->expire_at = (int64_t)json_integer_value(j);
	}
	s = claim_str(p->claims, v->user_id_claim != NULL ? v->user_id_claim : "sub");
	p->user = (char *)(s != NULL ? s : "");
	r = AUTH_OK;
out:
	json_decref(header);
	free(hdr);
	free(sig);
	if (r != AUTH_OK)
		parsed_free(p);
	return r;
}

enum auth_result
auth_verify_connection(struct auth_verifier *v, const char *token, size_t len,
	int64_t now_unix, struct auth_conn_claims *out, struct buf *why)
{
	struct parsed p;
	enum auth_result r;
	const char *raw = NULL, *key, *s;
	size_t rawn = 0, i, en;
	const char *ep;
	json_t *j, *e, *val;
	struct auth_sub_claim *sc;

	memset(out, 0, sizeof(*out));
	r = verify_common(v, token, len, now_unix, FOR_CONN, &p, why);
	if (r != AUTH_OK)
		return r;

	out->user = xstrdup(p.user);
	out->has_exp = p.has_exp;
	out->exp = p.has_exp ? date_to_i64(p.exp) : 0;
	out->has_expire_at = p.has_expire_at;
	out->expire_at = p.expire_at;
	j = claim(p.claims, "iat");
	out->iat = j != NULL ? date_to_i64(json_number_value(j)) : 0;
	s = claim_str(p.claims, "jti");
	out->jti = s != NULL ? xstrdup(s) : NULL;

	/* 8. base64 in b64info and subs entries */
	if (json_or_b64(p.claims, (char *)p.payload, p.payload_len, "info", "b64info",
	    &out->info, &out->info_len) < 0) {
		r = fail(why, AUTH_INVALID, "bad base64 in b64info");
		goto out;
	}
	if (claim(p.claims, "meta") != NULL &&
	    js_member((char *)p.payload, p.payload_len, "meta", &ep, &en)) {
		out->meta = dup_span(ep, en);
		out->meta_len = en;
	}

	j = claim(p.claims, "subs");
	if (j != NULL && json_object_size(j) > 0) {
		if (!js_member((char *)p.payload, p.payload_len, "subs", &raw, &rawn))
			log_panic("auth: subs claim not found in its own payload");
		out->subs = xcalloc(json_object_size(j), sizeof(*out->subs));
		json_object_foreach(j, key, val) {
			int *ov[N_OVERRIDES];

			sc = &out->subs[out->n_subs++];
			sc->channel = xstrdup(key);
			ov[0] = &sc->presence;
			ov[1] = &sc->join_leave;
			ov[2] = &sc->force_push_join_leave;
			ov[3] = &sc->force_recovery;
			ov[4] = &sc->force_positioning;
			read_overrides(json_is_object(val) ? claim(val, "override") : NULL, ov);
			if (!json_is_object(val))
				continue;
			if (!js_member(raw, rawn, key, &ep, &en))
				log_panic("auth: subs entry not found in its own payload");
			if (json_or_b64(val, ep, en, "info", "b64info", &sc->info,
			    &sc->info_len) < 0 ||
			    json_or_b64(val, ep, en, "data", "b64data", &sc->data,
			    &sc->data_len) < 0) {
				r = fail(why, AUTH_INVALID, "bad base64 in subs entry \"%.64s\"", key);
				goto out;
			}
		}
	} else {
		j = claim(p.claims, "channels");
		if (j != NULL && json_array_size(j) > 0) {
			out->channels = xcalloc(json_array_size(j), sizeof(char *));
			json_array_foreach(j, i, e)
				out->channels[out->n_channels++] = xstrdup(json_string_value(e));
		}
	}
out:
	parsed_free(&p);
	if (r != AUTH_OK)
		auth_conn_claims_free(out);
	return r;
}

enum auth_result
auth_verify_subscription(struct auth_verifier *v, const char *token, size_t len,
	int64_t now_unix, struct auth_sub_claims *out, struct buf *why)
{
	struct parsed p;
	enum auth_result r;
	const char *s;
	int *ov[N_OVERRIDES];

	memset(out, 0, sizeof(*out));
	r = verify_common(v, token, len, now_unix, FOR_SUB, &p, why);
	if (r != AUTH_OK)
		return r;

	out->user = xstrdup(p.user);
	out->channel = xstrdup(claim_str(p.claims, "channel"));
	s = claim_str(p.claims, "client");
	out->client = xstrdup(s != NULL ? s : "");
	out->has_exp = p.has_exp;
	out->exp = p.has_exp ? date_to_i64(p.exp) : 0;
	out->has_expire_at = p.has_expire_at;
	out->expire_at = p.expire_at;
	ov[0] = &out->presence;
	ov[1] = &out->join_leave;
	ov[2] = &out->force_push_join_leave;
	ov[3] = &out->force_recovery;
	ov[4] = &out->force_positioning;
	read_overrides(claim(p.claims, "override"), ov);

	/* 8. base64 */
	if (json_or_b64(p.claims, (char *)p.payload, p.payload_len, "info", "b64info",
	    &out->info, &out->info_len) < 0) {
		r = fail(why, AUTH_INVALID, "bad base64 in b64info");
	} else if (json_or_b64(p.claims, (char *)p.payload, p.payload_len, "data",
	    "b64data", &out->data, &out->data_len) < 0) {
		r = fail(why, AUTH_INVALID, "bad base64 in b64data");
	}
	parsed_free(&p);
	if (r != AUTH_OK)
		auth_sub_claims_free(out);
	return r;
}

void
auth_conn_claims_free(struct auth_conn_claims *c)
{
	size_t i;

	free(c->user);
	free(c->jti);
	free(c->info);
	for (i = 0; i < c->n_channels; i++)
		free(c->channels[i]);
	free(c->channels);
	for (i = 0; i < c->n_subs; i++) {
		free(c->subs[i].channel);
		free(c->subs[i].info);
		free(c->subs[i].data);
	}
	free(c->subs);
	free(c->meta);
	memset(c, 0, sizeof(*c));
}

void
auth_sub_claims_free(struct auth_sub_claims *c)
{
	free(c->user);
	free(c->channel);
	free(c->client);
	free(c->info);
	free(c->data);
	memset(c, 0, sizeof(*c));
}

int64_t
auth_expiry(int has_expire_at, int64_t expire_at, int has_exp, int64_t exp)
{
	if (has_expire_at)
		return expire_at;
	return has_exp ? exp : 0;
}

/* ---- signing (tests, gentoken) --------------------------------------- */

char *
auth_make_hmac(const char *alg, const char *secret, const char *claims_json)
{
	const struct alg_desc *a = NULL;
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	struct buf b = BUF_INIT;
	char hdr[64];
	size_t i;

	for (i = 0; i < sizeof(alg_table) / sizeof(alg_table[0]); i++) {
		if (alg_table[i].family == ALG_HS && strcmp(alg_table[i].name, alg) == 0)
			a = &alg_table[i];
	}
	if (a == NULL)
		return NULL;
	snprintf(hdr, sizeof(hdr), "{\"alg\":\"%s\",\"typ\":\"JWT\"}", a->name);
	b64url_encode(&b, (const unsigned char *)hdr, strlen(hdr));
	buf_putc(&b, '.');
	b64url_encode(&b, (const unsigned char *)claims_json, strlen(claims_json));
	if (HMAC(alg_md(a), secret, (int)strlen(secret), (const unsigned char *)b.data,
	    b.len, mac, &maclen) == NULL)
		log_panic("auth: HMAC failed");
	buf_putc(&b, '.');
	b64url_encode(&b, mac, maclen);
	buf_cstr(&b);
	return buf_steal(&b, NULL);
}

char *
auth_make_hs256(const char *secret, const char *claims_json)
{
	return auth_make_hmac("HS256", secret, claims_json);
}
