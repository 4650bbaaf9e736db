/*
 * glob.c - glob matching (see glob.h).  `{a,b}` groups are expanded first
 * (at most GLOB_MAX_EXPANSIONS patterns); each expansion is then matched
 * with `*`, `?`, `[...]` and `\` by backtracking over the last `*`.
 */
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "glob.h"

#define GLOB_MAX_EXPANSIONS 256

/* End of the `[...]` class starting at p (just past ']'), or NULL. */
static const char *
glob_class_end(const char *p)
{
	p++;                                    /* '[' */
	if (*p == '!' || *p == '^')
		p++;
	if (*p == ']')
		p++;                            /* a leading ']' is literal */
	for (; *p && *p != ']'; p++)
		if (*p == '\\' && p[1])
			p++;
	return *p == ']' ? p + 1 : NULL;
}

/* Does class p..end (from '[' to just past ']') take byte c? */
static int
glob_class_match(const char *p, const char *end, unsigned char c)
{
	const char *last = end - 1;             /* the closing ']' */
	int neg = 0, hit = 0;

	p++;
	if (*p == '!' || *p == '^') {
		neg = 1;
		p++;
	}
	for (; p < last; p++) {
		unsigned char lo = (unsigned char)*p, hi;
		if (lo == '\\' && p + 1 < last)
			lo = (unsigned char)*++p;
		hi = lo;
		if (p + 2 < last && p[1] == '-') {
			hi = (unsigned char)p[2];
			p += 2;
		}
		if (c >= lo && c <= hi)
			hit = 1;
	}
	return hit != neg;
}

/* Matches one brace-free pattern against s[0..len). */
static int
glob_simple(const char *p, const char *s, size_t len)
{
	const char *star_p = NULL;
	size_t i = 0, star_i = 0;

	for (;;) {
		if (*p == '*') {
			while (*p == '*')
				p++;
			star_p = p;
			star_i = i;
			continue;
		}
		if (*p == '\0' && i == len)
			return 1;
		if (*p != '\0' && i < len) {
			unsigned char c = (unsigned char)s[i];
			if (*p == '?') {
				p++;
				i++;
				continue;
			}
			if (*p == '[') {
				const char *e = glob_class_end(p);
				if (e && glob_class_match(p, e, c)) {
					p = e;
					i++;
					continue;
				}
			} else {
				const char *q = p;
				if (*q == '\\' && q[1])
					q++;
				if ((unsigned char)*q == c) {
					p = q + 1;
					i++;
					continue;
				}
			}
		}
		/* Mismatch: let the last `*` take one more character. */
		if (star_p == NULL || star_i >= len)
			return 0;
		p = star_p;
		i = ++star_i;
	}
}

/* Index just past the '}' closing the group that opens at p[0]. */
static const char *
glob_brace_end(const char *p)
{
	int depth = 0;

	for (; *p; p++) {
		if (*p == '\\' && p[1])
			p++;
		else if (*p == '{')
			depth++;
		else if (*p == '}' && --depth == 0)
			return p + 1;
	}
	return NULL;
}

/* Appends every brace expansion of pattern (prefix already in pre) to out
 * (NUL-separated); returns -1 when there would be too many. */
static int
glob_expand(const char *pattern, struct buf *pre, struct buf *out, int *count)
{
	const char *p = pattern, *open = NULL;

	for (; *p; p++) {
		if (*p == '\\' && p[1]) {
			p++;
		} else if (*p == '[') {
			const char *e = glob_class_end(p);
			if (e)
				p = e - 1;
		} else if (*p == '{') {
			open = p;
			break;
		}
	}
	if (open == NULL) {
		if (++*count > GLOB_MAX_EXPANSIONS)
			return -1;
		buf_append(out, pre->data, pre->len);
		buf_append(out, pattern, strlen(pattern) + 1);
		return 0;
	}
	{
		const char *close = glob_brace_end(open), *a = open + 1;
		size_t keep = pre->len;
		char *rest = NULL;
		int depth = 0;

		buf_append(pre, pattern, (size_t)(open - pattern));
		for (const char *q = a; q < close; q++) {
			if (*q == '\\' && q + 1 < close - 1) {
				q++;
				continue;
			}
			if (*q == '{')
				depth++;
			else if (*q == '}' && depth > 0)
				depth--;
			else if ((*q == ',' && depth == 0) || q == close - 1) {
				/* alternative a..q followed by the rest of the pattern */
				struct buf alt = BUF_INIT;
				size_t plen = pre->len;
				buf_append(&alt, a, (size_t)(q - a));
				buf_puts(&alt, close);
				rest = buf_cstr(&alt);
				if (glob_expand(rest, pre, out, count) != 0) {
					buf_free(&alt);
					return -1;
				}
				pre->len = plen;
				buf_free(&alt);
				a = q + 1;
			}
		}
		pre->len = keep;
	}
	return 0;
}

int
glob_valid(const char *pattern)
{
	for (const char *p = pattern; *p; p++) {
		if (*p == '\\') {
			if (p[1] == '\0')
				return 0;
			p++;
		} else if (*p == '[') {
			const char *e = glob_class_end(p);
			if (e == NULL)
				return 0;
			p = e - 1;
		} else if (*p == '{') {
			if (glob_brace_end(p) == NULL)
				return 0;
		} else if (*p == '}') {
			/* a '}' outside a group is only valid when closing one */
			int depth = 0;
			for (const char *q = pattern; q <= p; q++) {
				if (*q == '\\' && q[1])
					q++;
				else if (*q == '{')
					depth++;
				else if (*q == '}')
					depth--;
			}
			if (depth < 0)
				return 0;
		}
	}
	return 1;
}

int
glob_match(const char *pattern, const char *s, size_t len)
{
	struct buf pre = BUF_INIT, out = BUF_INIT;
	int count = 0, hit = 0;

	if (!glob_valid(pattern))
		return 0;
	if (glob_expand(pattern, &pre, &out, &count) == 0)
		for (size_t off = 0; off < out.len && !hit; off += strlen(out.data + off) + 1)
			hit = glob_simple(out.data + off, s, len);
	buf_free(&pre);
	buf_free(&out);
	return hit;
}
