/*
 * glob.h - glob patterns for the channels API (server-api.md §5.11): `*`
 * (any run of characters, separators included), `?` (one character),
 * `[abc]`, `[a-z]`, `[!a]`, `{alt1,alt2}` alternatives and `\` escapes.
 * Byte-wise; a worker-side helper.
 */
#ifndef CENTRIFUGO_GLOB_H
#define CENTRIFUGO_GLOB_H

#include <stddef.h>

/* Is pattern well formed (brackets and braces closed, no trailing `\`)? */
int glob_valid(const char *pattern);
/* Does s[0..len) match pattern?  An invalid pattern matches nothing. */
int glob_match(const char *pattern, const char *s, size_t len);

#endif
