/*
 * auth.h - JWT verification of connection and subscription tokens
 * (protocol.md §6).
 *
 * A struct auth_verifier holds the configured keys (parsed once) and the
 * aud/iss rules.  Workers build one from the client.token (and, when enabled,
 * client.subscription_token) options and call auth_verify_connection() on
 * `connect`/`refresh` and auth_verify_subscription() on `subscribe`/
 * `sub_refresh`.  Verification follows the order of §6.2 steps 1-7 and the
 * base64 part of step 8; namespace checks (step 8) and comparing `sub`,
 * `channel`, `client` with the connection are left to the caller.
 *
 * Process-local, not thread-safe (each worker owns its verifier).
 *
 * JWKS (jwks_public_endpoint set): only JWKS keys are used, every static key
 * option is ignored (not even parsed) and HS* tokens are invalid.  The key
 * is chosen by the token header's `kid`; RS*, ES* and EdDSA (Ed25519) are
 * accepted as the key's type allows, and a JWK `alg` must equal the token's.
 * Keys are fetched by the verifying worker itself, synchronously: a fetch
 * blocks that worker for at most ~2 s (1 s timeout, one retry), at most
 * once per few seconds, and the set is cached for an hour (see jwks.h).
 * The {{name}} templating of Centrifugo's endpoint is not supported (it
 * needs named groups, which POSIX regex lacks): auth_verifier_new() rejects
 * an endpoint containing "{{".
 */
#ifndef CENTRIFUGO_AUTH_H
#define CENTRIFUGO_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* Tokens longer than this are refused without being decoded. */
#define AUTH_TOKEN_MAX 65536

/*
 * Configuration of a verifier.  Every string may be NULL or "" (= not set).
 * The three keys may be inline PEM text, base64-encoded PEM, or a path to a
 * PEM file, detected in that order (config.md §1.3).  rsa_public_key is a
 * PKIX public key or a certificate; ecdsa_public_key a PKIX EC public key
 * (P-256, P-384 or P-521) or a certificate.
 *
 * audience_regex / issuer_regex are POSIX extended regular expressions
 * (regcomp REG_EXTENDED), searched unanchored like Go's MatchString.  Unlike
 * Go's RE2 they have no \d \w \s, no (?i) flags, no non-greedy or named
 * groups; use [0-9], [[:alnum:]_], [[:space:]] and anchors ^ $ instead.
 *
 * user_id_claim names the top-level claim holding the user id instead of
 * `sub` (config validation restricts it to [a-zA-Z_]+); the claim must be
 * a string.
 *
 * jwks_public_endpoint is an http:// or https:// URL of a JWK Set; when set
 * the hmac/rsa/ecdsa options are ignored (see above).
 */
struct auth_keys {
	const char *hmac_secret_key;
	const char *hmac_previous_secret_key;
	int64_t hmac_previous_secret_key_valid_until; /* Unix s; 0 = no limit */
	const char *rsa_public_key;
	const char *ecdsa_public_key;
	const char *audience;
	const char *issuer;
	const char *audience_regex;
	const char *issuer_regex;
	const char *user_id_claim;
	int skip_verify; /* client.insecure_skip_token_signature_verify */
	const char *jwks_public_endpoint;
};

struct auth_verifier;

enum auth_result {
	AUTH_OK = 0,
	AUTH_INVALID,   /* -> disconnect 3500 / error 103, see §6.5 */
	AUTH_EXPIRED    /* exp passed or nbf not reached -> error 109 / 3005 */
};

/* Name of a result for logs ("ok", "invalid", "expired"). */
const char *auth_result_name(enum auth_result r);

/*
 * Builds a verifier from k (strings are copied; k may be freed afterwards).
 * Returns NULL and appends a message naming the option to err when a key
 * cannot be read or parsed, is of the wrong type, a regex does not
 * compile, or jwks_public_endpoint is not a plain http(s) URL.  Nothing is
 * fetched here (the first JWKS token fetches).  A verifier with no key at all is valid: it refuses every token
 * (unless skip_verify).  Free with auth_verifier_free().
 */
struct auth_verifier *auth_verifier_new(const struct auth_keys *k, struct buf *err);
/* NULL is accepted. */
void auth_verifier_free(struct auth_verifier *v);

/*
 * Per-channel override from a `subs` entry or a subscription token's
 * `override` claim: -1 unset, 0 false, 1 true.
 */
#define AUTH_OVERRIDE_UNSET (-1)

/* One entry of a connection token's `subs` claim. */
struct auth_sub_claim {
	char *channel;
	char *info;        /* raw JSON of `info` or decoded `b64info`; NULL if none */
	size_t info_len;
	char *data;        /* raw JSON of `data` or decoded `b64data`; NULL if none */
	size_t data_len;
	int presence;
	int join_leave;
	int force_push_join_leave;
	int force_recovery;
	int force_positioning;
};

/*
 * Claims of a verified connection token.  Every pointer is owned by the
 * struct (free with auth_conn_claims_free()); strings are NUL-terminated,
 * info/data/meta are also NUL-terminated after their _len bytes.  Raw JSON
 * values are the token's own bytes, unchanged.  A claim that is absent or
 * JSON null is reported as absent (NULL / 0).
 */
struct auth_conn_claims {
	char *user;            /* `sub` or user_id_claim; "" = anonymous, never NULL */
	int64_t exp;           /* seconds (fraction dropped); 0 if absent */
	int has_exp;
	int64_t expire_at;     /* valid when has_expire_at; 0 = never expire */
	int has_expire_at;
	int64_t iat;           /* 0 if absent */
	char *jti;             /* NULL if absent */
	char *info;            /* b64info decoded if non-empty, else raw `info` */
	size_t info_len;
	char **channels;       /* `channels`; emptied when `subs` has entries */
	size_t n_channels;
	struct auth_sub_claim *subs;  /* `subs` in token order */
	size_t n_subs;
	char *meta;            /* raw JSON of `meta` */
	size_t meta_len;
};

/* Claims of a verified subscription token; ownership as above. */
struct auth_sub_claims {
	char *user;            /* never NULL */
	char *channel;         /* never NULL, never empty */
	char *client;          /* "" if absent */
	int64_t exp;
	int has_exp;
	int64_t expire_at;
	int has_expire_at;
	char *info;            /* b64info decoded if non-empty, else raw `info` */
	size_t info_len;
	char *data;            /* b64data decoded if non-empty, else raw `data` */
	size_t data_len;
	int presence;          /* overrides from `override`, AUTH_OVERRIDE_UNSET if absent */
	int join_leave;
	int force_push_join_leave;
	int force_recovery;
	int force_positioning;
};

/*
 * Verifies a connection token of len bytes (need not be NUL-terminated)
 * at time now_unix.  On AUTH_OK fills *out (caller frees it with
 * auth_conn_claims_free()); otherwise *out is zeroed and needs no freeing.
 * why (may be NULL) is reset and receives a short reason for logs.
 * Because now has whole-second precision, `nbf` equal to now is accepted
 * (Go compares against a sub-second clock, where that token is valid).
 */
enum auth_result auth_verify_connection(struct auth_verifier *v, const char *token,
	size_t len, int64_t now_unix, struct auth_conn_claims *out, struct buf *why);

/* Same for a subscription token; an empty or absent `channel` is invalid. */
enum auth_result auth_verify_subscription(struct auth_verifier *v, const char *token,
	size_t len, int64_t now_unix, struct auth_sub_claims *out, struct buf *why);

/* Free the contents (not the struct itself); the struct is zeroed.  Safe on
 * a zeroed struct. */
void auth_conn_claims_free(struct auth_conn_claims *c);
void auth_sub_claims_free(struct auth_sub_claims *c);

/*
 * Expiry of a connection or subscription (§4.4, §4.11): expire_at if
 * present (0 = never), else exp if present, else 0 (never).
 */
int64_t auth_expiry(int has_expire_at, int64_t expire_at, int has_exp, int64_t exp);

/*
 * Signs claims_json (any text; used verbatim as the payload) with HMAC.
 * alg is "HS256", "HS384" or "HS512".  Returns a NUL-terminated compact
 * JWS the caller frees with free(), or NULL if alg is unknown.  For tests
 * and the `gentoken` command.
 */
char *auth_make_hmac(const char *alg, const char *secret, const char *claims_json);
/* auth_make_hmac("HS256", ...); never NULL. */
char *auth_make_hs256(const char *secret, const char *claims_json);

#endif
