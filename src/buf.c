/*
 * buf.c - growable and shared byte buffers (see buf.h).
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "xmalloc.h"

void
buf_init(struct buf *b)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

void
buf_free(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

void
buf_reset(struct buf *b)
{
	b->len = 0;
}

void
buf_reserve(struct buf *b, size_t extra)
{
	size_t need = b->len + extra + 1;
	size_t cap;

	if (need <= b->cap)
		return;
	cap = b->cap ? b->cap : 64;
	while (cap < need)
		cap *= 2;
	b->data = xrealloc(b->data, cap);
	b->cap = cap;
}

void
buf_append(struct buf *b, const void *p, size_t n)
{
	buf_reserve(b, n);
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
}

void
buf_putc(struct buf *b, char c)
{
	buf_reserve(b, 1);
	b->data[b->len++] = c;
}

void
buf_puts(struct buf *b, const char *s)
{
	buf_append(b, s, strlen(s));
}

void
buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n <= 0)
		return;
	buf_reserve(b, (size_t)n);
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void
buf_put_u64(struct buf *b, uint64_t v)
{
	char tmp[24];
	int i = (int)sizeof(tmp);

	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	buf_append(b, tmp + i, sizeof(tmp) - (size_t)i);
}

void
buf_put_item(struct buf *b, const void *p, uint32_t len)
{
	buf_append(b, &len, sizeof(len));
	buf_append(b, p, len);
}

int
buf_next_item(const struct buf *b, size_t *off, const char **p, uint32_t *len)
{
	uint32_t l;

	if (*off + sizeof(l) > b->len)
		return 0;
	memcpy(&l, b->data + *off, sizeof(l));
	if (l > b->len - *off - sizeof(l))
		return 0;
	*p = b->data + *off + sizeof(l);
	*len = l;
	*off += sizeof(l) + l;
	return 1;
}

void
buf_put_i64(struct buf *b, int64_t v)
{
	if (v < 0) {
		buf_putc(b, '-');
		buf_put_u64(b, (uint64_t)0 - (uint64_t)v);
	} else {
		buf_put_u64(b, (uint64_t)v);
	}
}

char *
buf_cstr(struct buf *b)
{
	buf_reserve(b, 0);
	b->data[b->len] = '\0';
	return b->data;
}

char *
buf_steal(struct buf *b, size_t *len)
{
	char *p = buf_cstr(b);

	if (len)
		*len = b->len;
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	return p;
}

struct sbuf *
sbuf_new(const void *p, size_t n)
{
	struct sbuf *s = xmalloc(sizeof(*s) + n);

	s->refs = 1;
	s->len = (uint32_t)n;
	if (n)
		memcpy(s->data, p, n);
	return s;
}

/* The out-of-line half of sbuf_unref(): the last reference is gone. */
void
sbuf_free_(struct sbuf *s)
{
	free(s);
}
