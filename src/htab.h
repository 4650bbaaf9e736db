/*
 * htab.h - a string-keyed hash table (chained, power-of-two buckets, grows
 * at load 1).  Keys are byte strings copied into the table; values are
 * caller-owned pointers.  Process-local; used by the worker (channel ->
 * local subscribers, pending requests) and the broker (channel streams).
 */
#ifndef CENTRIFUGO_HTAB_H
#define CENTRIFUGO_HTAB_H

#include <stddef.h>
#include <stdint.h>

struct htab_entry {
	struct htab_entry *next;
	uint64_t hash;
	void *value;
	uint32_t klen;
	char key[];          /* NUL-terminated copy of the key */
};

struct htab {
	struct htab_entry **buckets;
	size_t nbuckets;
	size_t count;
};

void htab_init(struct htab *t);
/* Frees the table's own memory; values are the caller's to free first. */
void htab_free(struct htab *t);
uint64_t htab_hash(const void *key, size_t len);
void *htab_get(const struct htab *t, const void *key, size_t len);
/* Inserts or replaces; returns the entry (its key stays valid while it lives). */
struct htab_entry *htab_put(struct htab *t, const void *key, size_t len, void *value);
/* Removes the key; returns the old value or NULL. */
void *htab_del(struct htab *t, const void *key, size_t len);

/* Iteration: for (e = htab_first(t, &i); e; e = htab_next(t, &i, e)).
 * Deleting the current entry during iteration is not allowed. */
struct htab_entry *htab_first(const struct htab *t, size_t *iter);
struct htab_entry *htab_next(const struct htab *t, size_t *iter, struct htab_entry *e);

#endif
