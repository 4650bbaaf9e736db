/*
 * b64.h - base64 decoding and encoding (RFC 4648): padded standard base64
 * for b64data / b64info, unpadded base64url for JWS segments.
 */
#ifndef CENTRIFUGO_B64_H
#define CENTRIFUGO_B64_H

#include <stddef.h>

struct buf;

/* Appends the decoded bytes of s[0..n) to out.  url = 1: unpadded
 * base64url; url = 0: standard base64 with padding.  Returns 0, or -1 on
 * a bad character or length (out may hold part of the result). */
int b64_decode(const char *s, size_t n, int url, struct buf *out);
static inline int b64_decode_std(const char *s, size_t n, struct buf *out) { return b64_decode(s, n, 0, out); }
/* Appends the encoding of p[0..n) (url: unpadded base64url). */
void b64_encode(const void *p, size_t n, int url, struct buf *out);

#endif
