/*
 * json.h - a small strict JSON (RFC 8259) toolkit for raw pass-through.
 *
 * Payloads (`data`, `info`, ...) must cross the server byte for byte, so we
 * never build a tree: the scanner validates a value in place and reports its
 * extent (a span into the caller's memory) and type; iterators walk the
 * members of an object or the elements of an array; small helpers unescape
 * strings, parse integers and write strings / raw JSON into a struct buf.
 * Used by every process that reads or writes JSON (workers: client protocol
 * and HTTP API; broker; supervisor for the control socket).  No global state.
 *
 * Choices (documented here once):
 *  - Strings must be valid UTF-8 (RFC 3629: no overlongs, no encoded
 *    surrogates, nothing above U+10FFFF) and contain no unescaped control
 *    character (< 0x20).  Invalid input is rejected, never repaired.
 *  - A lone UTF-16 surrogate in a \u escape (e.g. "\ud800") is accepted by the
 *    scanner, as Go's encoding/json and JavaScript's JSON.parse accept it; the
 *    raw text passes through untouched, and json_unescape() turns it into
 *    U+FFFD exactly like Go does.
 *  - Nesting deeper than JSON_MAX_DEPTH arrays/objects is rejected.
 *  - Duplicate object keys are all reported by the iterator in document
 *    order; users that store members as they come get "last wins", as Go.
 *  - Integer parsers accept only an integer literal: "1.5", "1e2", "1.0" are
 *    type errors for integer fields (Go's decoder refuses them as well), "-0"
 *    is an error for unsigned targets, out-of-range values are errors.
 */
#ifndef CENTRIFUGO_JSON_H
#define CENTRIFUGO_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define JSON_MAX_DEPTH 64

enum json_type {
	JSON_NONE = 0,          /* no value (absent / error) */
	JSON_OBJECT,
	JSON_ARRAY,
	JSON_STRING,
	JSON_NUMBER,
	JSON_TRUE,
	JSON_FALSE,
	JSON_NULL
};

/* One JSON value: its exact text (strings include the quotes) and type. */
struct json_val {
	const char *p;
	size_t len;
	enum json_type type;
};

/* Where and why a scan failed: off is a byte offset into the scanned text,
 * msg a static string ("unexpected end of input", "invalid UTF-8", ...). */
struct json_err {
	size_t off;
	const char *msg;
};

/* "object", "array", ... for logs; "none" for JSON_NONE. */
const char *json_type_name(enum json_type t);

/*
 * Scans one value of p[0..len) starting at p[*pos]; leading whitespace is
 * skipped, trailing text is not looked at.  On success returns 0, fills *v
 * (pointing into p) and sets *pos just past the value.  On failure returns
 * -1 and, if err is not NULL, says where and why.  The whole value is
 * validated (grammar, UTF-8, depth).
 */
int json_scan(const char *p, size_t len, size_t *pos, struct json_val *v,
    struct json_err *err);

/* The whole of p[0..len) must be exactly one value, optionally surrounded
 * by whitespace.  v (may be NULL) receives the value.  0 / -1. */
int json_parse(const char *p, size_t len, struct json_val *v,
    struct json_err *err);

/* json_parse() without the value: is p[0..len) one valid JSON document? */
int json_validate(const char *p, size_t len, struct json_err *err);

/* Strict UTF-8 check (same rules as for JSON strings, control chars allowed). */
bool json_utf8_valid(const char *p, size_t len);

/*
 * Iterator over the members of an object or the elements of an array.
 * Validates as it goes, so it may be started on unvalidated text: init only
 * looks at the opening bracket; every next() validates one member.
 */
struct json_iter {
	const char *p;
	size_t len;
	size_t pos;             /* next byte to look at */
	int state;              /* private */
	bool object;            /* true for '{', false for '[' */
	struct json_err err;    /* set when a call returns -1 */
};

/*
 * Starts iterating the object or array that begins (after optional
 * whitespace) at p[0]; len may extend past its end.  Returns 0, or -1 if the
 * text does not start with '{' or '['.  Typically called with a json_val of
 * type JSON_OBJECT / JSON_ARRAY: json_iter_init(&it, v.p, v.len).
 */
int json_iter_init(struct json_iter *it, const char *p, size_t len);

/*
 * Next member: returns 1 and fills *val (and *key, a JSON_STRING span with
 * quotes, for objects; key may be NULL), 0 at the closing bracket (then
 * json_iter_end() is the offset just past it), -1 on malformed input
 * (it->err says why).  After 0 or -1 every further call returns the same.
 */
int json_iter_next(struct json_iter *it, struct json_val *key,
    struct json_val *val);

/* Offset just past the closing bracket once next() returned 0. */
size_t json_iter_end(const struct json_iter *it);

/*
 * Does the JSON string s (a scanned JSON_STRING span, quotes included) decode
 * to the NUL-terminated name?  Handles escaped keys ("\u0069d" equals "id").
 */
bool json_str_eq(const struct json_val *s, const char *name);

/*
 * Appends the decoded bytes of the JSON string span p[0..len) (quotes
 * included) to out: \" \\ \/ \b \f \n \r \t, \uXXXX and surrogate pairs
 * become UTF-8; a lone surrogate becomes U+FFFD.  Returns 0, or -1 (out
 * possibly partly appended) on a malformed span.  The decoded text is never
 * longer than len - 2 bytes.  Raw bytes are copied as they are: scan the
 * string first if its UTF-8 must be checked.
 */
int json_unescape(const char *p, size_t len, struct buf *out);

/* True if the string span needs no unescaping (contains no backslash):
 * then its content is simply p[1..len-1). */
bool json_str_plain(const char *p, size_t len);

/*
 * Integer values.  v must be a JSON_NUMBER holding an integer literal in
 * range of the target type; otherwise -1 and *out is left unchanged.
 */
int json_get_u64(const struct json_val *v, uint64_t *out);
int json_get_i64(const struct json_val *v, int64_t *out);
int json_get_u32(const struct json_val *v, uint32_t *out);
int json_get_i32(const struct json_val *v, int32_t *out);

/* v is JSON_TRUE or JSON_FALSE: sets *out, 0; otherwise -1. */
int json_get_bool(const struct json_val *v, bool *out);

/*
 * Appends p[0..len) as a JSON string with quotes.  Escapes '"', '\\' and
 * every control character (so the output never holds a raw 0x0A); '/' and
 * non-ASCII UTF-8 pass unchanged.  Invalid UTF-8 is replaced by U+FFFD (one
 * per bad byte, like Go) so the output is always valid JSON; the return value
 * is then -1 (0 when the input was valid UTF-8).
 */
int json_put_string(struct buf *b, const char *p, size_t len);

/*
 * Appends raw JSON text p[0..len) with every 0x0A byte removed (in valid JSON
 * a raw newline can only be insignificant whitespace), so the result can be
 * embedded in a '\n'-separated stream.  Does not validate: the caller
 * vouches that p is valid JSON (see json_validate()).
 */
void json_put_raw(struct buf *b, const char *p, size_t len);

#endif
