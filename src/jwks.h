/*
 * jwks.h - JSON Web Key Sets (RFC 7517) fetched over HTTP(S) for token
 * verification (protocol.md §6.1, config.md §2.6 jwks_public_endpoint).
 *
 * A struct jwks belongs to one auth verifier in one worker process and
 * caches the key set of one URL.  Keys are fetched lazily, synchronously, on
 * the first lookup: a fetch blocks the calling worker for at most two
 * attempts of JWKS_TIMEOUT_MS each (~2 s), connect, TLS handshake, request
 * and response all bounded with poll().  Host names are resolved with
 * getaddrinfo(), which the timeout cannot bound; use an IP address or an
 * /etc/hosts name when that matters.
 *
 * Cache: a key set is used for JWKS_CACHE_TTL_MS (one hour) and then
 * refetched on the next lookup; an unknown kid also triggers a refetch.
 * Fetch attempts are at least JWKS_MIN_REFETCH_MS apart, so a flood of
 * tokens with made-up kids (or a dead endpoint) costs one fetch per
 * interval, not one per token.  A failed refetch keeps the keys already
 * held (stale keys beat no keys while the endpoint is down).
 *
 * Supported keys: kty RSA (n, e), EC (crv P-256/P-384/P-521, x, y), OKP
 * (crv Ed25519, x).  Keys with `use` other than "sig", without a `kid`, or
 * with bad parameters are skipped (logged at warn once per fetch).
 *
 * Process-local, not thread-safe.
 */
#ifndef CENTRIFUGO_JWKS_H
#define CENTRIFUGO_JWKS_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/types.h>

struct buf;

#define JWKS_TIMEOUT_MS 1000           /* per attempt; one retry */
#define JWKS_CACHE_TTL_MS 3600000      /* one hour */
#define JWKS_MIN_REFETCH_MS 5000       /* between two fetch attempts */
#define JWKS_MAX_RESPONSE (1024 * 1024)

enum jwks_kty {
	JWKS_KTY_RSA = 0,
	JWKS_KTY_EC,
	JWKS_KTY_OKP
};

/* One usable key; owned by its struct jwks. */
struct jwks_key {
	char *kid;
	enum jwks_kty kty;
	int ec_bits;      /* EC: 256, 384 or 521; 0 otherwise */
	char *alg;        /* the JWK's `alg`, NULL if absent */
	EVP_PKEY *pkey;
};

struct jwks;

/*
 * Validates url (http:// or https://, host, optional :port, path) and
 * returns an empty cache for it; nothing is fetched yet.  Returns NULL with
 * a message in err for a bad URL or one holding a {{name}} template
 * (templates need named regex groups, which POSIX regex lacks).  Free with
 * jwks_free().
 */
struct jwks *jwks_new(const char *url, struct buf *err);
/* NULL is accepted. */
void jwks_free(struct jwks *j);

/*
 * Finds the key with this kid, fetching the set first if it was never
 * fetched, has expired, or lacks the kid (subject to the refetch rate
 * limit).  Returns the key (owned by j, valid until the next jwks_lookup()
 * or jwks_load() on j), or NULL with a short reason appended to why (may be
 * NULL): endpoint unreachable, bad document, or unknown kid.  May block for
 * up to ~2 s (see above).
 */
const struct jwks_key *jwks_lookup(struct jwks *j, const char *kid, struct buf *why);

/*
 * Replaces the cached key set with the keys of the JWKS document
 * doc[0..len), as a successful fetch does.  Returns the number of usable
 * keys, or -1 with a message in err (the cache is then unchanged) when doc
 * is not a JSON object with a `keys` array.  Exposed for tests.
 */
int jwks_load(struct jwks *j, const char *doc, size_t len, struct buf *err);

/*
 * Test hook: timings of jwks objects created afterwards in this process.
 * A negative value keeps the default above; min_refetch_ms 0 disables the
 * rate limit.
 */
void jwks_set_timing(int64_t cache_ttl_ms, int64_t min_refetch_ms, int timeout_ms);

#endif
