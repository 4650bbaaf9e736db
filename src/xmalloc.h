/*
 * xmalloc.h - allocation that never returns NULL (out of memory is fatal).
 */
#ifndef CENTRIFUGO_XMALLOC_H
#define CENTRIFUGO_XMALLOC_H

#include <stddef.h>

void *xmalloc(size_t size);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *ptr, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* Copy of n bytes of p (p need not be a string). */
void *xmemdup(const void *p, size_t n);

#endif
