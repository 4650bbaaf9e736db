/*
 * buf.h - byte buffers.
 *
 * struct buf is a growable buffer owned by one user (encoders append to it).
 * struct sbuf is an immutable, reference-counted block: one encoded
 * publication frame shared by every local subscriber's outgoing queue, so the
 * hot path never copies or encodes per subscriber.  Both are process-local.
 */
#ifndef CENTRIFUGO_BUF_H
#define CENTRIFUGO_BUF_H

#include <stddef.h>
#include <stdint.h>

struct buf {
	char *data;
	size_t len;
	size_t cap;
};

#define BUF_INIT { NULL, 0, 0 }

void buf_init(struct buf *b);
void buf_free(struct buf *b);
void buf_reset(struct buf *b);            /* len = 0, keeps memory */
void buf_reserve(struct buf *b, size_t extra);
void buf_append(struct buf *b, const void *p, size_t n);
void buf_putc(struct buf *b, char c);
void buf_puts(struct buf *b, const char *s);
void buf_printf(struct buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Appends base-10 digits. */
void buf_put_u64(struct buf *b, uint64_t v);
void buf_put_i64(struct buf *b, int64_t v);
/*
 * A list of byte strings packed in a buf (a u32 length, then the bytes):
 * buf_put_item appends one; buf_next_item reads the one at *off, advances
 * *off and returns 1, or returns 0 at the end.  For collecting keys
 * before a table they come from is changed.
 */
void buf_put_item(struct buf *b, const void *p, uint32_t len);
int buf_next_item(const struct buf *b, size_t *off, const char **p, uint32_t *len);
/* Leaves a NUL after the content (not counted in len); returns data. */
char *buf_cstr(struct buf *b);
/* Takes the memory out of b (caller frees with free()); b becomes empty. */
char *buf_steal(struct buf *b, size_t *len);

struct sbuf {
	uint32_t refs;
	uint32_t len;
	char data[];
};

/* New shared buffer holding a copy of p[0..n); refs = 1. */
struct sbuf *sbuf_new(const void *p, size_t n);
static inline struct sbuf *sbuf_ref(struct sbuf *s) { s->refs++; return s; }
/* Drops one reference; frees at zero.  NULL is accepted. */
void sbuf_free_(struct sbuf *s);
static inline void sbuf_unref(struct sbuf *s)
{
	if (s != NULL && --s->refs == 0)
		sbuf_free_(s);
}

#endif
