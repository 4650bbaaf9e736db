/*
 * htab.c - string-keyed chained hash table (see htab.h).
 */
#include <stdlib.h>
#include <string.h>

#include "htab.h"
#include "xmalloc.h"

void
htab_init(struct htab *t)
{
	t->nbuckets = 16;
	t->buckets = xcalloc(t->nbuckets, sizeof(*t->buckets));
	t->count = 0;
}

void
htab_free(struct htab *t)
{
	for (size_t i = 0; i < t->nbuckets; i++) {
		struct htab_entry *e = t->buckets[i], *next;
		for (; e; e = next) {
			next = e->next;
			free(e);
		}
	}
	free(t->buckets);
	t->buckets = NULL;
	t->nbuckets = 0;
	t->count = 0;
}

/* FNV-1a, 64 bit: short channel names, no adversarial guarantees needed
 * beyond chaining degrading gracefully. */
uint64_t
htab_hash(const void *key, size_t len)
{
	const unsigned char *p = key;
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

static struct htab_entry **
htab_slot(const struct htab *t, const void *key, size_t len, uint64_t h)
{
	struct htab_entry **pp = &t->buckets[h & (t->nbuckets - 1)];

	for (; *pp; pp = &(*pp)->next) {
		struct htab_entry *e = *pp;
		if (e->hash == h && e->klen == len && memcmp(e->key, key, len) == 0)
			break;
	}
	return pp;
}

void *
htab_get(const struct htab *t, const void *key, size_t len)
{
	struct htab_entry *e = *htab_slot(t, key, len, htab_hash(key, len));

	return e ? e->value : NULL;
}

static void
htab_grow(struct htab *t)
{
	size_t n = t->nbuckets * 2;
	struct htab_entry **b = xcalloc(n, sizeof(*b));

	for (size_t i = 0; i < t->nbuckets; i++) {
		struct htab_entry *e = t->buckets[i], *next;
		for (; e; e = next) {
			next = e->next;
			e->next = b[e->hash & (n - 1)];
			b[e->hash & (n - 1)] = e;
		}
	}
	free(t->buckets);
	t->buckets = b;
	t->nbuckets = n;
}

struct htab_entry *
htab_put(struct htab *t, const void *key, size_t len, void *value)
{
	uint64_t h = htab_hash(key, len);
	struct htab_entry **pp = htab_slot(t, key, len, h), *e;

	if (*pp) {
		(*pp)->value = value;
		return *pp;
	}
	e = xmalloc(sizeof(*e) + len + 1);
	e->next = NULL;
	e->hash = h;
	e->value = value;
	e->klen = (uint32_t)len;
	memcpy(e->key, key, len);
	e->key[len] = '\0';
	*pp = e;
	if (++t->count > t->nbuckets)
		htab_grow(t);
	return e;
}

void *
htab_del(struct htab *t, const void *key, size_t len)
{
	struct htab_entry **pp = htab_slot(t, key, len, htab_hash(key, len));
	struct htab_entry *e = *pp;
	void *v;

	if (e == NULL)
		return NULL;
	*pp = e->next;
	v = e->value;
	free(e);
	t->count--;
	return v;
}

struct htab_entry *
htab_first(const struct htab *t, size_t *iter)
{
	for (*iter = 0; *iter < t->nbuckets; (*iter)++)
		if (t->buckets[*iter])
			return t->buckets[*iter];
	return NULL;
}

struct htab_entry *
htab_next(const struct htab *t, size_t *iter, struct htab_entry *e)
{
	if (e->next)
		return e->next;
	for ((*iter)++; *iter < t->nbuckets; (*iter)++)
		if (t->buckets[*iter])
			return t->buckets[*iter];
	return NULL;
}
