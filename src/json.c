/*
 * json.c - strict in-place JSON scanning, iteration, unescaping and writing
 * (see json.h for the rules we chose).  Runs in every process; no global
 * state, no allocation except into the caller's struct buf.
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "buf.h"
#include "json.h"

/* Iterator states. */
enum json_iter_state {
	JSON_ITER_FIRST = 0,    /* just after the opening bracket */
	JSON_ITER_MORE,         /* after a member: ',' or the closing bracket */
	JSON_ITER_DONE,
	JSON_ITER_FAILED
};

static const char *const json_type_names[] = {
	[JSON_NONE] = "none",
	[JSON_OBJECT] = "object",
	[JSON_ARRAY] = "array",
	[JSON_STRING] = "string",
	[JSON_NUMBER] = "number",
	[JSON_TRUE] = "true",
	[JSON_FALSE] = "false",
	[JSON_NULL] = "null",
};

const char *
json_type_name(enum json_type t)
{
	if ((unsigned)t >= sizeof(json_type_names) / sizeof(json_type_names[0]))
		return "none";
	return json_type_names[t];
}

static int
json_fail(struct json_err *err, size_t off, const char *msg)
{
	if (err != NULL) {
		err->off = off;
		err->msg = msg;
	}
	return -1;
}

static size_t
json_skip_ws(const unsigned char *s, size_t len, size_t i)
{
	while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' ||
	    s[i] == '\r'))
		i++;
	return i;
}

static bool
json_is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static int
json_hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Four hex digits at s[0..4) -> 0..0xFFFF, or -1. */
static long
json_hex4(const unsigned char *s)
{
	long v = 0;
	int i, h;

	for (i = 0; i < 4; i++) {
		h = json_hexval(s[i]);
		if (h < 0)
			return -1;
		v = (v << 4) | h;
	}
	return v;
}

/*
 * Length of the valid UTF-8 sequence at s[0..n) (n >= 1), or 0 if it is not
 * valid (RFC 3629 table: no overlongs, no surrogates, max U+10FFFF).
 */
static size_t
json_utf8_seq(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	unsigned char lo = 0x80, hi = 0xBF;
	size_t need, k;

	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		need = 1;
	else if (c >= 0xE0 && c <= 0xEF) {
		need = 2;
		if (c == 0xE0)
			lo = 0xA0;
		else if (c == 0xED)
			hi = 0x9F;
	} else if (c >= 0xF0 && c <= 0xF4) {
		need = 3;
		if (c == 0xF0)
			lo = 0x90;
		else if (c == 0xF4)
			hi = 0x8F;
	} else
		return 0;
	if (n < need + 1)
		return 0;
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (k = 2; k <= need; k++)
		if (s[k] < 0x80 || s[k] > 0xBF)
			return 0;
	return need + 1;
}

bool
json_utf8_valid(const char *p, size_t len)
{
	const unsigned char *s = (const unsigned char *)p;
	size_t i = 0, n;

	while (i < len) {
		if (s[i] < 0x80) {
			i++;
			continue;
		}
		n = json_utf8_seq(s + i, len - i);
		if (n == 0)
			return false;
		i += n;
	}
	return true;
}

/* s[*pos] is '"': validate the string, *pos = just past the closing quote. */
static int
json_scan_string(const unsigned char *s, size_t len, size_t *pos,
    struct json_err *err)
{
	size_t i = *pos + 1, n;
	unsigned char c;

	for (;;) {
		if (i >= len)
			return json_fail(err, i, "unterminated string");
		c = s[i];
		if (c == '"') {
			*pos = i + 1;
			return 0;
		}
		if (c == '\\') {
			if (i + 1 >= len)
				return json_fail(err, i, "unterminated string");
			switch (s[i + 1]) {
			case '"': case '\\': case '/': case 'b':
			case 'f': case 'n': case 'r': case 't':
				i += 2;
				break;
			case 'u':
				if (i + 6 > len)
					return json_fail(err, i,
					    "unterminated \\u escape");
				if (json_hex4(s + i + 2) < 0)
					return json_fail(err, i,
					    "invalid \\u escape");
				i += 6;
				break;
			default:
				return json_fail(err, i, "invalid escape");
			}
			continue;
		}
		if (c < 0x20)
			return json_fail(err, i,
			    "unescaped control character in string");
		if (c < 0x80) {
			i++;
			continue;
		}
		n = json_utf8_seq(s + i, len - i);
		if (n == 0)
			return json_fail(err, i, "invalid UTF-8 in string");
		i += n;
	}
}

/* s[*pos] starts a number: -?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)? */
static int
json_scan_number(const unsigned char *s, size_t len, size_t *pos,
    struct json_err *err)
{
	size_t i = *pos;

	if (s[i] == '-')
		i++;
	if (i >= len || !json_is_digit(s[i]))
		return json_fail(err, i, "invalid number");
	if (s[i] == '0')
		i++;
	else
		while (i < len && json_is_digit(s[i]))
			i++;
	if (i < len && s[i] == '.') {
		i++;
		if (i >= len || !json_is_digit(s[i]))
			return json_fail(err, i, "invalid number fraction");
		while (i < len && json_is_digit(s[i]))
			i++;
	}
	if (i < len && (s[i] == 'e' || s[i] == 'E')) {
		i++;
		if (i < len && (s[i] == '+' || s[i] == '-'))
			i++;
		if (i >= len || !json_is_digit(s[i]))
			return json_fail(err, i, "invalid number exponent");
		while (i < len && json_is_digit(s[i]))
			i++;
	}
	*pos = i;
	return 0;
}

static int
json_scan_literal(const unsigned char *s, size_t len, size_t *pos,
    const char *word, struct json_err *err)
{
	size_t n = strlen(word);

	if (len - *pos < n || memcmp(s + *pos, word, n) != 0)
		return json_fail(err, *pos, "invalid literal");
	*pos += n;
	return 0;
}

static enum json_type
json_type_of(unsigned char c)
{
	switch (c) {
	case '{': return JSON_OBJECT;
	case '[': return JSON_ARRAY;
	case '"': return JSON_STRING;
	case 't': return JSON_TRUE;
	case 'f': return JSON_FALSE;
	case 'n': return JSON_NULL;
	default:
		if (c == '-' || json_is_digit(c))
			return JSON_NUMBER;
		return JSON_NONE;
	}
}

/*
 * Iterative scanner.  The container stack is one bit per level (1 = object,
 * 0 = array), which is why JSON_MAX_DEPTH is 64.
 */
int
json_scan(const char *p, size_t len, size_t *pos, struct json_val *v,
    struct json_err *err)
{
	const unsigned char *s = (const unsigned char *)p;
	uint64_t stack = 0;
	unsigned depth = 0;
	size_t i, start;
	enum json_type type;
	bool in_obj;
	unsigned char c;

	i = json_skip_ws(s, len, *pos);
	if (i >= len)
		return json_fail(err, i, "unexpected end of input");
	start = i;
	type = json_type_of(s[i]);

value:
	if (i >= len)
		return json_fail(err, i, "unexpected end of input");
	c = s[i];
	switch (c) {
	case '{':
	case '[':
		if (depth >= JSON_MAX_DEPTH)
			return json_fail(err, i, "nesting too deep");
		if (c == '{')
			stack |= (uint64_t)1 << depth;
		else
			stack &= ~((uint64_t)1 << depth);
		depth++;
		i = json_skip_ws(s, len, i + 1);
		if (i < len && s[i] == (c == '{' ? '}' : ']')) {
			i++;
			depth--;
			goto after;
		}
		if (c == '{')
			goto key;
		goto value;
	case '"':
		if (json_scan_string(s, len, &i, err) < 0)
			return -1;
		goto after;
	case 't':
		if (json_scan_literal(s, len, &i, "true", err) < 0)
			return -1;
		goto after;
	case 'f':
		if (json_scan_literal(s, len, &i, "false", err) < 0)
			return -1;
		goto after;
	case 'n':
		if (json_scan_literal(s, len, &i, "null", err) < 0)
			return -1;
		goto after;
	default:
		if (c == '-' || json_is_digit(c)) {
			if (json_scan_number(s, len, &i, err) < 0)
				return -1;
			goto after;
		}
		return json_fail(err, i, "unexpected character");
	}

key:
	if (i >= len)
		return json_fail(err, i, "unexpected end of input");
	if (s[i] != '"')
		return json_fail(err, i, "expected string key");
	if (json_scan_string(s, len, &i, err) < 0)
		return -1;
	i = json_skip_ws(s, len, i);
	if (i >= len)
		return json_fail(err, i, "unexpected end of input");
	if (s[i] != ':')
		return json_fail(err, i, "expected ':'");
	i = json_skip_ws(s, len, i + 1);
	goto value;

after:
	if (depth == 0) {
		v->p = p + start;
		v->len = i - start;
		v->type = type;
		*pos = i;
		return 0;
	}
	i = json_skip_ws(s, len, i);
	if (i >= len)
		return json_fail(err, i, "unexpected end of input");
	in_obj = (stack >> (depth - 1)) & 1;
	if (s[i] == ',') {
		i = json_skip_ws(s, len, i + 1);
		if (in_obj)
			goto key;
		goto value;
	}
	if (s[i] == (in_obj ? '}' : ']')) {
		i++;
		depth--;
		goto after;
	}
	return json_fail(err, i, in_obj ? "expected ',' or '}'" :
	    "expected ',' or ']'");
}

int
json_parse(const char *p, size_t len, struct json_val *v, struct json_err *err)
{
	struct json_val tmp;
	size_t pos = 0;

	if (json_scan(p, len, &pos, &tmp, err) < 0)
		return -1;
	pos = json_skip_ws((const unsigned char *)p, len, pos);
	if (pos != len)
		return json_fail(err, pos, "trailing data after value");
	if (v != NULL)
		*v = tmp;
	return 0;
}

int
json_validate(const char *p, size_t len, struct json_err *err)
{
	return json_parse(p, len, NULL, err);
}

int
json_iter_init(struct json_iter *it, const char *p, size_t len)
{
	const unsigned char *s = (const unsigned char *)p;
	size_t i = json_skip_ws(s, len, 0);

	it->p = p;
	it->len = len;
	it->err.off = 0;
	it->err.msg = NULL;
	if (i >= len || (s[i] != '{' && s[i] != '[')) {
		it->pos = i;
		it->state = JSON_ITER_FAILED;
		it->object = false;
		json_fail(&it->err, i, "expected object or array");
		return -1;
	}
	it->object = s[i] == '{';
	it->pos = i + 1;
	it->state = JSON_ITER_FIRST;
	return 0;
}

int
json_iter_next(struct json_iter *it, struct json_val *key, struct json_val *val)
{
	const unsigned char *s = (const unsigned char *)it->p;
	unsigned char close = it->object ? '}' : ']';
	size_t i, kstart;

	if (it->state == JSON_ITER_DONE)
		return 0;
	if (it->state == JSON_ITER_FAILED)
		return -1;
	i = json_skip_ws(s, it->len, it->pos);
	if (i >= it->len)
		goto eof;
	if (s[i] == close) {
		it->pos = i + 1;
		it->state = JSON_ITER_DONE;
		return 0;
	}
	if (it->state == JSON_ITER_MORE) {
		if (s[i] != ',') {
			json_fail(&it->err, i, it->object ?
			    "expected ',' or '}'" : "expected ',' or ']'");
			goto failed;
		}
		i = json_skip_ws(s, it->len, i + 1);
		if (i >= it->len)
			goto eof;
	}
	if (it->object) {
		if (s[i] != '"') {
			json_fail(&it->err, i, "expected string key");
			goto failed;
		}
		kstart = i;
		if (json_scan_string(s, it->len, &i, &it->err) < 0)
			goto failed;
		if (key != NULL) {
			key->p = it->p + kstart;
			key->len = i - kstart;
			key->type = JSON_STRING;
		}
		i = json_skip_ws(s, it->len, i);
		if (i >= it->len)
			goto eof;
		if (s[i] != ':') {
			json_fail(&it->err, i, "expected ':'");
			goto failed;
		}
		i++;
	}
	if (json_scan(it->p, it->len, &i, val, &it->err) < 0)
		goto failed;
	it->pos = i;
	it->state = JSON_ITER_MORE;
	return 1;

eof:
	json_fail(&it->err, i, "unexpected end of input");
failed:
	it->state = JSON_ITER_FAILED;
	return -1;
}

size_t
json_iter_end(const struct json_iter *it)
{
	return it->pos;
}

bool
json_str_plain(const char *p, size_t len)
{
	return memchr(p, '\\', len) == NULL;
}

bool
json_str_eq(const struct json_val *s, const char *name)
{
	size_t n = strlen(name);
	struct buf tmp = BUF_INIT;
	bool eq;

	if (s->type != JSON_STRING || s->len < 2)
		return false;
	if (json_str_plain(s->p, s->len))
		return s->len - 2 == n && memcmp(s->p + 1, name, n) == 0;
	/* Escaped key: rare, decode it. */
	if (json_unescape(s->p, s->len, &tmp) < 0) {
		buf_free(&tmp);
		return false;
	}
	eq = tmp.len == n && (n == 0 || memcmp(tmp.data, name, n) == 0);
	buf_free(&tmp);
	return eq;
}

static void
json_put_utf8(struct buf *out, uint32_t cp)
{
	char u[4];
	size_t n;

	if (cp < 0x80) {
		u[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		u[0] = (char)(0xC0 | (cp >> 6));
		u[1] = (char)(0x80 | (cp & 0x3F));
		n = 2;
	} else if (cp < 0x10000) {
		u[0] = (char)(0xE0 | (cp >> 12));
		u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		u[2] = (char)(0x80 | (cp & 0x3F));
		n = 3;
	} else {
		u[0] = (char)(0xF0 | (cp >> 18));
		u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
		u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
		u[3] = (char)(0x80 | (cp & 0x3F));
		n = 4;
	}
	buf_append(out, u, n);
}

int
json_unescape(const char *p, size_t len, struct buf *out)
{
	const unsigned char *s = (const unsigned char *)p;
	size_t i, end;
	const char *bs;
	long cp, lo;

	if (len < 2 || p[0] != '"' || p[len - 1] != '"')
		return -1;
	end = len - 1;
	buf_reserve(out, len - 2);
	i = 1;
	while (i < end) {
		bs = memchr(p + i, '\\', end - i);
		if (bs == NULL) {
			buf_append(out, p + i, end - i);
			break;
		}
		buf_append(out, p + i, (size_t)(bs - p) - i);
		i = (size_t)(bs - p);
		if (i + 1 >= end)
			return -1;
		switch (s[i + 1]) {
		case '"': buf_putc(out, '"'); i += 2; continue;
		case '\\': buf_putc(out, '\\'); i += 2; continue;
		case '/': buf_putc(out, '/'); i += 2; continue;
		case 'b': buf_putc(out, '\b'); i += 2; continue;
		case 'f': buf_putc(out, '\f'); i += 2; continue;
		case 'n': buf_putc(out, '\n'); i += 2; continue;
		case 'r': buf_putc(out, '\r'); i += 2; continue;
		case 't': buf_putc(out, '\t'); i += 2; continue;
		case 'u':
			break;
		default:
			return -1;
		}
		if (i + 6 > end || (cp = json_hex4(s + i + 2)) < 0)
			return -1;
		i += 6;
		if (cp >= 0xD800 && cp <= 0xDBFF) {
			/* High surrogate: combine with a following low one. */
			if (i + 6 <= end && s[i] == '\\' && s[i + 1] == 'u' &&
			    (lo = json_hex4(s + i + 2)) >= 0xDC00 &&
			    lo <= 0xDFFF) {
				cp = 0x10000 + ((cp - 0xD800) << 10) +
				    (lo - 0xDC00);
				i += 6;
			} else {
				cp = 0xFFFD;
			}
		} else if (cp >= 0xDC00 && cp <= 0xDFFF) {
			cp = 0xFFFD;
		}
		json_put_utf8(out, (uint32_t)cp);
	}
	return 0;
}

/* Integer literal -> sign and magnitude; -1 if not a plain integer or > 2^64-1. */
static int
json_int_parts(const struct json_val *v, bool *neg, uint64_t *mag)
{
	const unsigned char *s = (const unsigned char *)v->p;
	size_t i = 0;
	uint64_t m = 0;
	unsigned d;

	if (v->type != JSON_NUMBER || v->len == 0)
		return -1;
	*neg = false;
	if (s[0] == '-') {
		*neg = true;
		i = 1;
	}
	if (i >= v->len)
		return -1;
	if (s[i] == '0' && i + 1 < v->len)
		return -1;      /* leading zero, or "0.5", "0e1" */
	for (; i < v->len; i++) {
		if (!json_is_digit(s[i]))
			return -1;  /* fraction or exponent */
		d = s[i] - '0';
		if (m > (UINT64_MAX - d) / 10)
			return -1;
		m = m * 10 + d;
	}
	*mag = m;
	return 0;
}

int
json_get_u64(const struct json_val *v, uint64_t *out)
{
	bool neg;
	uint64_t m;

	if (json_int_parts(v, &neg, &m) < 0 || neg)
		return -1;
	*out = m;
	return 0;
}

int
json_get_i64(const struct json_val *v, int64_t *out)
{
	bool neg;
	uint64_t m;

	if (json_int_parts(v, &neg, &m) < 0)
		return -1;
	if (neg) {
		if (m > (uint64_t)INT64_MAX + 1)
			return -1;
		*out = m == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)m;
	} else {
		if (m > (uint64_t)INT64_MAX)
			return -1;
		*out = (int64_t)m;
	}
	return 0;
}

int
json_get_u32(const struct json_val *v, uint32_t *out)
{
	uint64_t m;

	if (json_get_u64(v, &m) < 0 || m > UINT32_MAX)
		return -1;
	*out = (uint32_t)m;
	return 0;
}

int
json_get_i32(const struct json_val *v, int32_t *out)
{
	int64_t m;

	if (json_get_i64(v, &m) < 0 || m < INT32_MIN || m > INT32_MAX)
		return -1;
	*out = (int32_t)m;
	return 0;
}

int
json_get_bool(const struct json_val *v, bool *out)
{
	if (v->type == JSON_TRUE)
		*out = true;
	else if (v->type == JSON_FALSE)
		*out = false;
	else
		return -1;
	return 0;
}

int
json_put_string(struct buf *b, const char *p, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *s = (const unsigned char *)p;
	size_t i = 0, run = 0, n;
	unsigned char c;
	char esc[6];
	int rc = 0;

	buf_reserve(b, len + 2);
	buf_putc(b, '"');
	while (i < len) {
		c = s[i];
		if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
			i++;
			continue;
		}
		buf_append(b, p + run, i - run);
		if (c >= 0x80) {
			n = json_utf8_seq(s + i, len - i);
			if (n == 0) {
				buf_append(b, "\xEF\xBF\xBD", 3);
				rc = -1;
				n = 1;
			} else {
				buf_append(b, p + i, n);
			}
			i += n;
			run = i;
			continue;
		}
		esc[0] = '\\';
		switch (c) {
		case '"': esc[1] = '"'; n = 2; break;
		case '\\': esc[1] = '\\'; n = 2; break;
		case '\b': esc[1] = 'b'; n = 2; break;
		case '\f': esc[1] = 'f'; n = 2; break;
		case '\n': esc[1] = 'n'; n = 2; break;
		case '\r': esc[1] = 'r'; n = 2; break;
		case '\t': esc[1] = 't'; n = 2; break;
		default:
			esc[1] = 'u';
			esc[2] = '0';
			esc[3] = '0';
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 0xF];
			n = 6;
			break;
		}
		buf_append(b, esc, n);
		i++;
		run = i;
	}
	buf_append(b, p + run, i - run);
	buf_putc(b, '"');
	return rc;
}

void
json_put_raw(struct buf *b, const char *p, size_t len)
{
	const char *end = p + len, *nl;

	buf_reserve(b, len);
	while (p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL) {
			buf_append(b, p, (size_t)(end - p));
			break;
		}
		buf_append(b, p, (size_t)(nl - p));
		p = nl + 1;
	}
}
