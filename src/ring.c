/*
 * ring.c - lock-free record rings in shared memory (layout and invariants in
 * ring.h).  The writer side runs in the broker (fan-out ring, reply rings)
 * and in each worker (its request ring); the reader side in the workers
 * (fan-out, reply) and the broker (requests).  The supervisor only formats
 * rings and reads the metrics.
 *
 * The data path takes no lock and makes no syscall unless a reader said it
 * was going to sleep (then one eventfd write).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "ring.h"
#include "vmb.h"

_Static_assert(sizeof(struct ring_rec_shm) == RING_ALIGN, "record header is one alignment unit");
_Static_assert(sizeof(struct ring_reader_shm) == 2 * CACHELINE, "reader slot is two cache lines");
_Static_assert(offsetof(struct ring_shm, head) == CACHELINE, "writer fields start line 1");
_Static_assert(sizeof(struct ring_shm) == 2 * CACHELINE, "reader slots start line 2");

static const char *const ring_status_names[] = {
	[RING_OK] = "ok",
	[RING_EMPTY] = "empty",
	[RING_OVERRUN] = "overrun",
};

const char *
ring_status_name(int status)
{
	if (status < 0 || status > RING_OVERRUN)
		return "error";
	return ring_status_names[status];
}

static int
ring_valid(const struct ring_shm *r)
{
	return r != NULL && r->magic == RING_MAGIC;
}

static char *
ring_data(struct ring_shm *r)
{
	return (char *)r + r->data_off;
}

static struct ring_rec_shm *
ring_rec_at(struct ring_shm *r, uint64_t pos)
{
	return (struct ring_rec_shm *)(ring_data(r) + (pos & (r->size - 1)));
}

/* Bytes a record with len payload bytes takes in the data area. */
static uint64_t
ring_rec_size(uint64_t len)
{
	return (sizeof(struct ring_rec_shm) + len + RING_ALIGN - 1) & ~(uint64_t)(RING_ALIGN - 1);
}

/* data_bytes rounded up to a power of two >= RING_MIN_BYTES; 0 if too big. */
static size_t
ring_round_size(size_t data_bytes)
{
	size_t size = RING_MIN_BYTES;

	if (data_bytes > RING_MAX_BYTES)
		return 0;
	while (size < data_bytes)
		size <<= 1;
	return size;
}

static size_t
ring_header_size(unsigned nreaders)
{
	return sizeof(struct ring_shm) + (size_t)nreaders * sizeof(struct ring_reader_shm);
}

size_t
ring_shm_size(size_t data_bytes, unsigned nreaders)
{
	size_t size = ring_round_size(data_bytes);

	if (size == 0 || nreaders < 1 || nreaders > RING_MAX_READERS)
		return 0;
	return ring_header_size(nreaders) + size;
}

int
ring_shm_init(struct ring_shm *r, size_t data_bytes, unsigned nreaders,
    int mode, const int *eventfds)
{
	size_t size = ring_round_size(data_bytes);
	unsigned i;

	if (r == NULL || ((uintptr_t)r & (CACHELINE - 1)) != 0) {
		log_error("ring_shm_init: ring memory %p is not %d-byte aligned", (void *)r, CACHELINE);
		errno = EINVAL;
		return -1;
	}
	if (size == 0) {
		log_error("ring_shm_init: data size %zu is larger than %zu", data_bytes, RING_MAX_BYTES);
		errno = EINVAL;
		return -1;
	}
	if (mode != RING_BROADCAST && mode != RING_SPSC) {
		log_error("ring_shm_init: unknown mode %d", mode);
		errno = EINVAL;
		return -1;
	}
	if (nreaders < 1 || nreaders > RING_MAX_READERS || (mode == RING_SPSC && nreaders != 1)) {
		log_error("ring_shm_init: %u readers is not valid for a %s ring",
		    nreaders, mode == RING_SPSC ? "single-reader" : "broadcast");
		errno = EINVAL;
		return -1;
	}

	memset(r, 0, ring_header_size(nreaders));
	r->mode = (uint32_t)mode;
	r->nreaders = nreaders;
	r->size = size;
	r->max_record = size / 4;
	r->data_off = ring_header_size(nreaders);
	VMB_STORE(&r->head, 0);
	VMB_STORE(&r->head_seq, 0);
	VMB_STORE(&r->tail, 0);
	for (i = 0; i < nreaders; i++) {
		struct ring_reader_shm *rd = &r->readers[i];

		VMB_STORE(&rd->sleeping, 0);
		rd->eventfd = eventfds != NULL ? eventfds[i] : -1;
		VMB_STORE(&rd->pos, 0);
		VMB_STORE(&rd->seq, 0);
	}
	VMB_WMB();
	r->magic = RING_MAGIC;
	return 0;
}

size_t
ring_max_record(const struct ring_shm *r)
{
	return ring_valid(r) ? (size_t)r->max_record : 0;
}

size_t
ring_data_size(const struct ring_shm *r)
{
	return ring_valid(r) ? (size_t)r->size : 0;
}

/*
 * Writer: wakes every reader that announced it was going to sleep.  The full
 * barrier pairs with the one in ring_reader_sleep(): either the reader sees
 * the new head, or we see its flag.
 */
void
ring_wake(struct ring_shm *r)
{
	static const uint64_t one = 1;
	unsigned i;

	VMB_MB();
	for (i = 0; i < r->nreaders; i++) {
		struct ring_reader_shm *rd = &r->readers[i];

		if (VMB_LOAD(&rd->sleeping) == 0 || VMB_XCHG(&rd->sleeping, 0) == 0)
			continue;
		VMB_ADD(&rd->wakeups, 1);
		if (rd->eventfd < 0)
			continue;
		if (write(rd->eventfd, &one, sizeof(one)) != (ssize_t)sizeof(one) && errno != EAGAIN)
			log_error("ring: write(eventfd %d) for reader %u: %s", rd->eventfd, i, strerror(errno));
	}
}

/*
 * Writer: makes room for a record of len payload bytes at the head (padding
 * up to the end of the data area if needed).  BROADCAST moves the tail past
 * every record the new one will cover; SPSC fails with EAGAIN if that would
 * cover unread data.  Sets the reservation; 0 or -1 with errno.
 */
static int
ring_make_room(struct ring_shm *r, size_t len)
{
	uint64_t size, h, off, need, pad, end;

	if (!ring_valid(r)) {
		errno = EINVAL;
		return -1;
	}
	if (len > r->max_record) {
		errno = EMSGSIZE;
		return -1;
	}
	size = r->size;
	need = ring_rec_size(len);
	h = VMB_LOAD(&r->head);
	off = h & (size - 1);
	pad = off + need > size ? size - off : 0;
	end = h + pad + need;

	if (r->mode == RING_SPSC) {
		if (end - r->rpos_cache > size) {
			r->rpos_cache = VMB_LOAD_ACQ(&r->readers[0].pos);
			if (end - r->rpos_cache > size) {
				VMB_ADD(&r->full, 1);
				errno = EAGAIN;
				return -1;
			}
		}
	} else {
		uint64_t t = VMB_LOAD(&r->tail);

		if (t + size < end) {
			while (t + size < end) {
				struct ring_rec_shm *rec = ring_rec_at(r, t);
				uint32_t rlen = VMB_LOAD(&rec->len);

				t += (VMB_LOAD(&rec->flags) & RING_REC_PAD) ? rlen : ring_rec_size(rlen);
				ASSERT(t <= h);
			}
			/* Readers must see the new tail before any overwritten byte. */
			VMB_STORE_REL(&r->tail, t);
			VMB_WMB();
		}
	}

	if (pad != 0) {
		struct ring_rec_shm *rec = ring_rec_at(r, h);

		VMB_STORE(&rec->seq, VMB_LOAD(&r->head_seq));
		VMB_STORE(&rec->len, (uint32_t)pad);
		VMB_STORE(&rec->flags, RING_REC_PAD);
	}
	r->resv_pos = h + pad;
	r->resv_len = (uint32_t)len;
	r->resv_active = 1;
	return 0;
}

void *
ring_reserve(struct ring_shm *r, size_t len)
{
	if (ring_make_room(r, len) == -1)
		return NULL;
	return ring_rec_at(r, r->resv_pos) + 1;
}

/* Publishes the reservation; the readers are not woken. */
static int
ring_publish(struct ring_shm *r, size_t used)
{
	struct ring_rec_shm *rec;
	uint64_t seq, gen;

	if (!ring_valid(r) || !r->resv_active || used > r->resv_len) {
		errno = EINVAL;
		return -1;
	}
	rec = ring_rec_at(r, r->resv_pos);
	seq = VMB_LOAD(&r->head_seq);
	VMB_STORE(&rec->seq, seq);
	VMB_STORE(&rec->len, (uint32_t)used);
	VMB_STORE(&rec->flags, 0);
	r->resv_active = 0;
	/* Even base even if a previous writer died between the two stores. */
	gen = (VMB_LOAD(&r->gen) + 1) & ~(uint64_t)1;
	VMB_STORE(&r->gen, gen + 1);
	VMB_WMB();
	VMB_STORE(&r->head_seq, seq + 1);
	/* Publish: header and payload before head. */
	VMB_STORE_REL(&r->head, r->resv_pos + ring_rec_size(used));
	VMB_STORE_REL(&r->gen, gen + 2);
	return 0;
}

int
ring_commit(struct ring_shm *r, size_t used)
{
	if (ring_publish(r, used) != 0)
		return -1;
	ring_wake(r);
	return 0;
}

int
ring_write_quiet(struct ring_shm *r, const void *rec, size_t len)
{
	void *p = ring_reserve(r, len);

	if (p == NULL)
		return -1;
	if (len != 0)
		memcpy(p, rec, len);
	return ring_publish(r, len);
}

int
ring_write(struct ring_shm *r, const void *rec, size_t len)
{
	if (ring_write_quiet(r, rec, len) != 0)
		return -1;
	ring_wake(r);
	return 0;
}

/* Reader: makes the cursor's position visible (SPSC: frees the room). */
static void
ring_publish_cursor(struct ring_shm *r, struct ring_cursor *c)
{
	struct ring_reader_shm *rd = &r->readers[c->reader];

	VMB_STORE(&rd->seq, c->seq);
	if (r->mode == RING_SPSC)
		VMB_STORE_REL(&rd->pos, c->pos); /* after the copy-out */
	else
		VMB_STORE(&rd->pos, c->pos);
}

/*
 * Reader: puts the head and the seq of the record that will be written there
 * into the cursor (seqlock read of the pair).  If the writer seems stuck in
 * the middle of an update (it died there), the seq stays a guess, learnt from
 * the next record.
 */
static void
ring_cursor_at_head(struct ring_shm *r, struct ring_cursor *c)
{
	unsigned tries;

	for (tries = 0; tries < 1000; tries++) {
		uint64_t g = VMB_LOAD_ACQ(&r->gen), h, s;

		if (g & 1)
			continue;
		s = VMB_LOAD(&r->head_seq);
		h = VMB_LOAD(&r->head);
		VMB_RMB();
		if (VMB_LOAD(&r->gen) == g) {
			c->pos = h;
			c->seq = s;
			c->seq_known = 1;
			return;
		}
	}
	c->pos = VMB_LOAD_ACQ(&r->head);
	c->seq = VMB_LOAD(&r->head_seq);
	c->seq_known = 0;
}

int
ring_cursor_init(struct ring_shm *r, unsigned reader, struct ring_cursor *c)
{
	if (!ring_valid(r) || c == NULL || reader >= r->nreaders) {
		errno = EINVAL;
		return -1;
	}
	memset(c, 0, sizeof(*c));
	c->reader = reader;
	ring_cursor_at_head(r, c);
	VMB_STORE(&r->readers[reader].overruns, 0);
	VMB_STORE(&r->readers[reader].lost, 0);
	ring_publish_cursor(r, c);
	return 0;
}

/* Reader: counts one RING_OVERRUN of lost records and publishes the cursor. */
static int
ring_overrun(struct ring_shm *r, struct ring_cursor *c, uint64_t lost)
{
	struct ring_reader_shm *rd = &r->readers[c->reader];

	c->last_lost = lost;
	c->lost += lost;
	c->overruns++;
	VMB_ADD(&rd->overruns, 1);
	VMB_ADD(&rd->lost, lost);
	ring_publish_cursor(r, c);
	return RING_OVERRUN;
}

/* Reader: the ring does not make sense from here; skip to the head. */
static int
ring_corrupt(struct ring_shm *r, struct ring_cursor *c, const char *why)
{
	uint64_t h = VMB_LOAD_ACQ(&r->head);

	log_error("ring: reader %u at position %" PRIu64 " (head %" PRIu64 "): %s; skipping to the head",
	    c->reader, c->pos, h, why);
	ring_cursor_at_head(r, c);
	return ring_overrun(r, c, 0);
}

/*
 * BROADCAST reader, lapped: moves the cursor to the tail and learns the seq
 * there (seqlock read of the tail record's header).  Returns RING_OVERRUN,
 * or RING_OK when the tail holds the very record the cursor expected: only
 * padding was overwritten (the cursor sat on the padding at the end of the
 * data area and the writer reused just that room), nothing is lost and the
 * reader reads on.
 */
static int
ring_lapped(struct ring_shm *r, struct ring_cursor *c)
{
	uint64_t old = c->seq;
	int known = c->seq_known;
	unsigned tries;

	for (tries = 0; tries < 100; tries++) {
		uint64_t t = VMB_LOAD_ACQ(&r->tail);
		uint64_t s = VMB_LOAD(&ring_rec_at(r, t)->seq);

		VMB_RMB();
		if (VMB_LOAD(&r->tail) != t)
			continue;
		c->pos = t;
		c->seq = s;
		c->seq_known = 1;
		if (known && s == old)
			return RING_OK;
		return ring_overrun(r, c, known && s > old ? s - old : 0);
	}
	/* The writer keeps lapping us; settle for an unknown seq. */
	c->pos = VMB_LOAD_ACQ(&r->tail);
	c->seq = VMB_LOAD(&r->head_seq);
	c->seq_known = 0;
	return ring_overrun(r, c, 0);
}

/* BROADCAST: 1 if what was read at pos may have been overwritten. */
static int
ring_torn(struct ring_shm *r, uint64_t pos)
{
	if (r->mode != RING_BROADCAST)
		return 0;
	VMB_RMB();
	return pos < VMB_LOAD(&r->tail);
}

int
ring_read(struct ring_shm *r, struct ring_cursor *c, struct buf *out)
{
	uint64_t size, mask;

	if (!ring_valid(r) || c == NULL || out == NULL || c->reader >= r->nreaders) {
		errno = EINVAL;
		return -1;
	}
	size = r->size;
	mask = size - 1;

	for (;;) {
		uint64_t h = VMB_LOAD_ACQ(&r->head);
		uint64_t pos = c->pos;
		uint64_t off = pos & mask;
		struct ring_rec_shm *rec;
		uint64_t seq;
		uint32_t len, flags;

		if (pos == h)
			return RING_EMPTY;
		if (pos > h)
			return ring_corrupt(r, c, "cursor beyond the head");
		if (r->mode == RING_BROADCAST && pos < VMB_LOAD(&r->tail))
			goto lapped;
		if (h - pos > size)
			return ring_corrupt(r, c, "cursor more than a ring behind");
		if ((off & (RING_ALIGN - 1)) != 0)
			return ring_corrupt(r, c, "misaligned cursor");

		rec = ring_rec_at(r, pos);
		seq = VMB_LOAD(&rec->seq);
		len = VMB_LOAD(&rec->len);
		flags = VMB_LOAD(&rec->flags);

		if (flags & RING_REC_PAD) {
			if (ring_torn(r, pos))
				goto lapped;
			if (len != size - off)
				return ring_corrupt(r, c, "bad padding record");
			if (c->seq_known && seq != c->seq)
				return ring_corrupt(r, c, "sequence gap at padding");
			c->pos = pos + len;
			continue;
		}
		if (len > r->max_record || off + ring_rec_size(len) > size) {
			if (ring_torn(r, pos))
				goto lapped;
			return ring_corrupt(r, c, "bad record length");
		}

		buf_reset(out);
		buf_reserve(out, len);
		if (len != 0)
			memcpy(out->data, rec + 1, len);
		if (ring_torn(r, pos))
			goto lapped;
		if (c->seq_known && seq != c->seq)
			return ring_corrupt(r, c, "sequence gap");
		out->len = len;
		c->pos = pos + ring_rec_size(len);
		c->seq = seq + 1;
		c->seq_known = 1;
		ring_publish_cursor(r, c);
		return RING_OK;
lapped:
		if (ring_lapped(r, c) == RING_OVERRUN)
			return RING_OVERRUN;
	}
}

int
ring_reader_sleep(struct ring_shm *r, unsigned reader)
{
	struct ring_reader_shm *rd;

	if (!ring_valid(r) || reader >= r->nreaders) {
		errno = EINVAL;
		return -1;
	}
	rd = &r->readers[reader];
	VMB_STORE(&rd->sleeping, 1);
	VMB_MB(); /* pairs with ring_wake() */
	if (VMB_LOAD(&r->head) != VMB_LOAD(&rd->pos)) {
		VMB_XCHG(&rd->sleeping, 0);
		return 1;
	}
	return 0;
}

void
ring_reader_woken(struct ring_shm *r, unsigned reader)
{
	struct ring_reader_shm *rd;
	uint64_t v;

	if (!ring_valid(r) || reader >= r->nreaders)
		return;
	rd = &r->readers[reader];
	VMB_XCHG(&rd->sleeping, 0);
	if (rd->eventfd >= 0 && read(rd->eventfd, &v, sizeof(v)) == -1 && errno != EAGAIN)
		log_error("ring: read(eventfd %d) for reader %u: %s", rd->eventfd, reader, strerror(errno));
}

int
ring_eventfd(struct ring_shm *r, unsigned reader)
{
	if (!ring_valid(r) || reader >= r->nreaders)
		return -1;
	return r->readers[reader].eventfd;
}

uint64_t
ring_head(struct ring_shm *r)
{
	return ring_valid(r) ? VMB_LOAD_ACQ(&r->head_seq) : 0;
}

uint64_t
ring_reader_lag_bytes(struct ring_shm *r, unsigned reader)
{
	if (!ring_valid(r) || reader >= r->nreaders)
		return 0;
	return VMB_LOAD(&r->head) - VMB_LOAD(&r->readers[reader].pos);
}

uint64_t
ring_reader_seq(struct ring_shm *r, unsigned reader)
{
	if (!ring_valid(r) || reader >= r->nreaders)
		return 0;
	return VMB_LOAD(&r->readers[reader].seq);
}
