/*
 * shm.c - creates, lays out and hands out the parts of the shared-memory
 * segment (layout in shm.h).  shm_create() and shm_destroy() run in the
 * supervisor; every child uses the accessors on the handle it inherited.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "log.h"
#include "ring.h"
#include "shm.h"
#include "vmb.h"
#include "xmalloc.h"

#define SHM_HANDLE_MAGIC 0x73686d68u

struct shm {
	unsigned magic;          /* SHM_HANDLE_MAGIC */
	unsigned nworkers;       /* worker slots (max_workers) */
	char *base;              /* the mapping */
	size_t size;
	int *eventfds;           /* nworkers worker eventfds, then the broker's */
};

static size_t
shm_align(size_t n)
{
	return (n + CACHELINE - 1) & ~(size_t)(CACHELINE - 1);
}

static int
shm_valid(const struct shm *s)
{
	return s != NULL && s->magic == SHM_HANDLE_MAGIC &&
	    ((const struct shm_hdr_shm *)s->base)->magic == SHM_MAGIC;
}

static size_t
shm_ring_bytes(const char *what, size_t bytes, unsigned nreaders)
{
	size_t n = ring_shm_size(bytes, nreaders);

	if (n == 0)
		log_error("shm_create: %s ring size %zu is out of range (at most %zu)",
		    what, bytes, RING_MAX_BYTES);
	return n;
}

struct shm *
shm_create(const struct shm_params *p)
{
	struct shm_params prm;
	struct shm_hdr_shm *hdr;
	struct shm *s;
	size_t fanout_sz, req_sz, rep_sz, off, total;
	uint64_t *rings;
	unsigned i, active;
	void *base;

	if (p == NULL) {
		log_error("shm_create: no parameters");
		errno = EINVAL;
		return NULL;
	}
	prm = *p;
	if (prm.nworkers < 1 || prm.nworkers > SHM_MAX_WORKERS) {
		log_error("shm_create: %u workers is out of range (1..%d)", prm.nworkers, SHM_MAX_WORKERS);
		errno = EINVAL;
		return NULL;
	}
	if (prm.max_workers == 0)
		prm.max_workers = prm.nworkers;
	if (prm.max_workers < prm.nworkers || prm.max_workers > SHM_MAX_WORKERS) {
		log_error("shm_create: %u worker slots is out of range (%u..%d)",
		    prm.max_workers, prm.nworkers, SHM_MAX_WORKERS);
		errno = EINVAL;
		return NULL;
	}
	active = prm.nworkers;
	prm.nworkers = prm.max_workers;   /* from here on: slots */
	if (prm.fanout_bytes == 0)
		prm.fanout_bytes = SHM_DEFAULT_FANOUT_BYTES;
	if (prm.request_bytes == 0)
		prm.request_bytes = SHM_DEFAULT_REQUEST_BYTES;
	if (prm.reply_bytes == 0)
		prm.reply_bytes = SHM_DEFAULT_REPLY_BYTES;
	if ((fanout_sz = shm_ring_bytes("fan-out", prm.fanout_bytes, prm.nworkers)) == 0 ||
	    (req_sz = shm_ring_bytes("request", prm.request_bytes, 1)) == 0 ||
	    (rep_sz = shm_ring_bytes("reply", prm.reply_bytes, 1)) == 0) {
		errno = EINVAL;
		return NULL;
	}

	/* Layout: header, slots, ring offset table, rings. */
	off = shm_align(sizeof(struct shm_hdr_shm));
	size_t slots_off = off;
	off += shm_align((prm.nworkers + 1) * sizeof(struct proc_slot_shm));
	size_t rings_off = off;
	off += shm_align(2 * prm.nworkers * sizeof(uint64_t));
	size_t fanout_off = off;
	off += shm_align(fanout_sz);
	size_t first_ring = off;
	total = off + prm.nworkers * (shm_align(req_sz) + shm_align(rep_sz));

	base = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED) {
		log_error("shm_create: mmap(%zu bytes, MAP_SHARED|MAP_ANONYMOUS): %s", total, strerror(errno));
		return NULL;
	}

	s = xcalloc(1, sizeof(*s));
	s->magic = SHM_HANDLE_MAGIC;
	s->nworkers = prm.nworkers;
	s->base = base;
	s->size = total;
	s->eventfds = xmalloc((prm.nworkers + 1) * sizeof(int));
	for (i = 0; i <= prm.nworkers; i++)
		s->eventfds[i] = -1;
	for (i = 0; i <= prm.nworkers; i++) {
		s->eventfds[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (s->eventfds[i] == -1) {
			log_error("shm_create: eventfd for %s %u: %s",
			    i < prm.nworkers ? "worker" : "broker", i, strerror(errno));
			goto fail;
		}
	}

	hdr = base;
	hdr->version = SHM_LAYOUT_VERSION;
	hdr->max_workers = prm.nworkers;
	VMB_STORE(&hdr->active_workers, active);
	hdr->size = total;
	VMB_STORE(&hdr->generation, 1);
	hdr->slots_off = slots_off;
	hdr->rings_off = rings_off;
	hdr->fanout_off = fanout_off;

	rings = (uint64_t *)(s->base + rings_off);
	off = first_ring;
	for (i = 0; i < prm.nworkers; i++) {
		rings[2 * i] = off;
		off += shm_align(req_sz);
		rings[2 * i + 1] = off;
		off += shm_align(rep_sz);
	}

	/* Worker i reads the fan-out ring with its own eventfd. */
	if (ring_shm_init((struct ring_shm *)(s->base + fanout_off), prm.fanout_bytes,
	    prm.nworkers, RING_BROADCAST, s->eventfds) == -1)
		goto fail;
	for (i = 0; i < prm.nworkers; i++) {
		if (ring_shm_init((struct ring_shm *)(s->base + rings[2 * i]), prm.request_bytes,
		    1, RING_SPSC, &s->eventfds[prm.nworkers]) == -1 ||
		    ring_shm_init((struct ring_shm *)(s->base + rings[2 * i + 1]), prm.reply_bytes,
		    1, RING_SPSC, &s->eventfds[i]) == -1)
			goto fail;
	}
	VMB_WMB();
	hdr->magic = SHM_MAGIC;
	log_debug("shm: %zu bytes for %u worker slots, %u active (fan-out %zu, request %zu, reply %zu)",
	    total, prm.nworkers, active, prm.fanout_bytes, prm.request_bytes, prm.reply_bytes);
	return s;

fail:
	for (i = 0; i <= prm.nworkers; i++)
		if (s->eventfds[i] != -1)
			close(s->eventfds[i]);
	free(s->eventfds);
	munmap(base, total);
	free(s);
	return NULL;
}

void
shm_destroy(struct shm *s)
{
	unsigned i;

	if (s == NULL)
		return;
	ASSERT(s->magic == SHM_HANDLE_MAGIC);
	for (i = 0; i <= s->nworkers; i++)
		if (s->eventfds[i] != -1)
			close(s->eventfds[i]);
	if (munmap(s->base, s->size) == -1)
		log_error("shm_destroy: munmap(%zu bytes): %s", s->size, strerror(errno));
	free(s->eventfds);
	s->magic = 0;
	free(s);
}

static int
shm_check(const struct shm *s, const char *fn, unsigned idx, unsigned limit)
{
	if (!shm_valid(s)) {
		log_error("%s: not a shared-memory segment handle", fn);
		errno = EINVAL;
		return -1;
	}
	if (idx >= limit) {
		log_error("%s: index %u out of range (segment has %u worker slots)", fn, idx, s->nworkers);
		errno = EINVAL;
		return -1;
	}
	return 0;
}

static struct ring_shm *
shm_ring(struct shm *s, unsigned worker, unsigned which)
{
	const uint64_t *rings = (const uint64_t *)(s->base + ((struct shm_hdr_shm *)s->base)->rings_off);

	return (struct ring_shm *)(s->base + rings[2 * worker + which]);
}

struct ring_shm *
shm_fanout(struct shm *s)
{
	if (shm_check(s, "shm_fanout", 0, 1) == -1)
		return NULL;
	return (struct ring_shm *)(s->base + ((struct shm_hdr_shm *)s->base)->fanout_off);
}

struct ring_shm *
shm_request(struct shm *s, unsigned worker)
{
	if (shm_check(s, "shm_request", worker, s != NULL ? s->nworkers : 0) == -1)
		return NULL;
	return shm_ring(s, worker, 0);
}

struct ring_shm *
shm_reply(struct shm *s, unsigned worker)
{
	if (shm_check(s, "shm_reply", worker, s != NULL ? s->nworkers : 0) == -1)
		return NULL;
	return shm_ring(s, worker, 1);
}

struct proc_slot_shm *
shm_slot(struct shm *s, unsigned idx)
{
	if (shm_check(s, "shm_slot", idx, s != NULL ? s->nworkers + 1 : 0) == -1)
		return NULL;
	return (struct proc_slot_shm *)(s->base + ((struct shm_hdr_shm *)s->base)->slots_off) + idx;
}

int
shm_worker_eventfd(struct shm *s, unsigned worker)
{
	if (shm_check(s, "shm_worker_eventfd", worker, s != NULL ? s->nworkers : 0) == -1)
		return -1;
	return s->eventfds[worker];
}

int
shm_broker_eventfd(struct shm *s)
{
	if (shm_check(s, "shm_broker_eventfd", 0, 1) == -1)
		return -1;
	return s->eventfds[s->nworkers];
}

unsigned
shm_max_workers(const struct shm *s)
{
	return shm_valid(s) ? s->nworkers : 0;
}

unsigned
shm_active_workers(const struct shm *s)
{
	if (!shm_valid(s))
		return 0;
	return VMB_LOAD_ACQ(&((struct shm_hdr_shm *)s->base)->active_workers);
}

int
shm_set_active_workers(struct shm *s, unsigned n)
{
	if (!shm_valid(s) || n < 1 || n > s->nworkers) {
		log_error("shm_set_active_workers: %u is out of range (1..%u)", n,
		    shm_valid(s) ? s->nworkers : 0);
		errno = EINVAL;
		return -1;
	}
	VMB_STORE_REL(&((struct shm_hdr_shm *)s->base)->active_workers, n);
	return 0;
}

struct shm_hdr_shm *
shm_header(struct shm *s)
{
	return shm_valid(s) ? (struct shm_hdr_shm *)s->base : NULL;
}

size_t
shm_size(const struct shm *s)
{
	return shm_valid(s) ? s->size : 0;
}
