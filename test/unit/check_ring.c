/*
 * check_ring.c - unit tests for the shared-memory rings (ring.c) and the
 * segment (shm.c): single-process behaviour, bad input, and multi-process
 * stress tests (one producer, several forked readers) that check every
 * record for loss, duplication, reordering and corruption.
 *
 * CHECK_RING_RECORDS=n sets the record count of the broadcast stress test
 * (default 2000000, 300000 under AddressSanitizer).
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include <check.h>

#include "buf.h"
#include "log.h"
#include "ring.h"
#include "shm.h"
#include "vmb.h"

#if defined(__SANITIZE_ADDRESS__)
#define STRESS_DEFAULT_RECORDS 300000
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define STRESS_DEFAULT_RECORDS 300000
#endif
#endif
#ifndef STRESS_DEFAULT_RECORDS
#define STRESS_DEFAULT_RECORDS 2000000
#endif

#define STRESS_MAX_LEN 2000
#define STRESS_READERS 3

/* ---- helpers ---------------------------------------------------------- */

/* A ring in its own shared mapping, so forked processes share it. */
static struct ring_shm *
ring_new(size_t bytes, unsigned nreaders, int mode, const int *efds)
{
	size_t sz = ring_shm_size(bytes, nreaders);
	void *p;

	ck_assert_uint_gt(sz, 0);
	p = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(p, MAP_FAILED);
	ck_assert_int_eq(ring_shm_init(p, bytes, nreaders, mode, efds), 0);
	return p;
}

static void
ring_free(struct ring_shm *r)
{
	munmap(r, ring_shm_size(r->size, r->nreaders));
}

static void *
shared_alloc(size_t n)
{
	void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	ck_assert_ptr_ne(p, MAP_FAILED);
	return p;
}

static uint64_t
mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static size_t
rec_len(uint64_t seq, size_t maxlen)
{
	return 1 + (size_t)(mix64(seq ^ 0x5eed) % maxlen);
}

static uint64_t
rec_checksum(const unsigned char *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL, w;
	size_t i;

	for (i = 0; i + 8 <= n; i += 8) {
		memcpy(&w, p + i, 8);
		h = (h ^ w) * 0x100000001b3ULL;
	}
	for (; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ULL;
	return h;
}

/*
 * The content of record seq: pseudo-random bytes from seq; records of 16
 * bytes or more start with their seq and a checksum of the rest.
 */
static void
rec_fill(uint64_t seq, unsigned char *p, size_t len)
{
	uint64_t x = mix64(seq * 31 + 7), v, sum;
	size_t i;

	for (i = 0; i < len; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		v = x;
		memcpy(p + i, &v, len - i < 8 ? len - i : 8);
	}
	if (len >= 16) {
		memcpy(p, &seq, 8);
		sum = rec_checksum(p + 16, len - 16);
		memcpy(p + 8, &sum, 8);
	}
}

/* 0 if b holds record seq; else a description in why. */
static int
rec_check(uint64_t seq, const struct buf *b, size_t maxlen, unsigned char *scratch,
    char *why, size_t whylen)
{
	size_t len = rec_len(seq, maxlen);
	uint64_t got, sum;

	if (b->len != len) {
		if (b->len >= 16)
			memcpy(&got, b->data, 8);
		else
			got = UINT64_MAX;
		snprintf(why, whylen, "seq %" PRIu64 ": length %zu, expected %zu (record says seq %" PRIu64 ")",
		    seq, b->len, len, got);
		return -1;
	}
	if (len >= 16) {
		memcpy(&got, b->data, 8);
		memcpy(&sum, b->data + 8, 8);
		if (got != seq) {
			snprintf(why, whylen, "expected seq %" PRIu64 ", got %" PRIu64, seq, got);
			return -1;
		}
		if (sum != rec_checksum((const unsigned char *)b->data + 16, len - 16)) {
			snprintf(why, whylen, "seq %" PRIu64 ": bad checksum", seq);
			return -1;
		}
	}
	rec_fill(seq, scratch, len);
	if (memcmp(scratch, b->data, len) != 0) {
		snprintf(why, whylen, "seq %" PRIu64 ": content differs", seq);
		return -1;
	}
	return 0;
}

static int
write_seq(struct ring_shm *r, uint64_t seq, size_t maxlen, unsigned char *scratch)
{
	size_t len = rec_len(seq, maxlen);

	rec_fill(seq, scratch, len);
	return ring_write(r, scratch, len);
}

static void
read_expect(struct ring_shm *r, struct ring_cursor *c, uint64_t seq, size_t maxlen)
{
	unsigned char scratch[8192];
	char why[200];
	struct buf b = BUF_INIT;
	int st = ring_read(r, c, &b);

	ck_assert_msg(st == RING_OK, "seq %" PRIu64 ": ring_read returned %s", seq, ring_status_name(st));
	ck_assert_msg(rec_check(seq, &b, maxlen, scratch, why, sizeof(why)) == 0, "%s", why);
	ck_assert_uint_eq(c->seq, seq + 1);
	buf_free(&b);
}

static int
make_eventfd(void)
{
	int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);

	ck_assert_int_ge(fd, 0);
	return fd;
}

/* Value read from a non-blocking eventfd, 0 if it was not written. */
static uint64_t
eventfd_take(int fd)
{
	uint64_t v = 0;

	if (read(fd, &v, sizeof(v)) != (ssize_t)sizeof(v)) {
		ck_assert_int_eq(errno, EAGAIN);
		return 0;
	}
	return v;
}

/* ---- single process --------------------------------------------------- */

START_TEST(test_empty)
{
	int modes[2] = { RING_BROADCAST, RING_SPSC };
	struct buf b = BUF_INIT;
	struct ring_cursor c;
	unsigned i;

	for (i = 0; i < 2; i++) {
		struct ring_shm *r = ring_new(4096, 1, modes[i], NULL);

		ck_assert_int_eq(ring_cursor_init(r, 0, &c), 0);
		ck_assert_int_eq(ring_read(r, &c, &b), RING_EMPTY);
		ck_assert_int_eq(ring_read(r, &c, &b), RING_EMPTY);
		ck_assert_uint_eq(ring_head(r), 0);
		ck_assert_uint_eq(ring_reader_lag_bytes(r, 0), 0);
		ck_assert_uint_eq(ring_data_size(r), 4096);
		ck_assert_uint_eq(ring_max_record(r), 1024);
		ring_free(r);
	}
	buf_free(&b);
}
END_TEST

START_TEST(test_one_record)
{
	struct ring_shm *r = ring_new(4096, 2, RING_BROADCAST, NULL);
	struct ring_cursor c0, c1;
	struct buf b = BUF_INIT;

	ck_assert_int_eq(ring_cursor_init(r, 0, &c0), 0);
	ck_assert_int_eq(ring_cursor_init(r, 1, &c1), 0);
	buf_puts(&b, "old content that must be replaced");
	ck_assert_int_eq(ring_write(r, "hello", 5), 0);
	ck_assert_uint_eq(ring_head(r), 1);
	ck_assert_int_eq(ring_read(r, &c0, &b), RING_OK);
	ck_assert_uint_eq(b.len, 5);
	ck_assert_mem_eq(b.data, "hello", 5);
	ck_assert_uint_eq(c0.seq, 1);
	ck_assert_uint_eq(ring_reader_seq(r, 0), 1);
	ck_assert_int_eq(ring_read(r, &c0, &b), RING_EMPTY);
	/* The other reader still has it. */
	ck_assert_uint_eq(ring_reader_lag_bytes(r, 1), 32);
	ck_assert_int_eq(ring_read(r, &c1, &b), RING_OK);
	ck_assert_mem_eq(b.data, "hello", 5);
	ck_assert_int_eq(ring_read(r, &c1, &b), RING_EMPTY);
	buf_free(&b);
	ring_free(r);
}
END_TEST

/* Many records through a small ring, each mode, reader keeping up. */
START_TEST(test_wrap_around)
{
	int modes[2] = { RING_BROADCAST, RING_SPSC };
	unsigned char scratch[2048];
	unsigned i;
	uint64_t seq;

	for (i = 0; i < 2; i++) {
		struct ring_shm *r = ring_new(4096, 1, modes[i], NULL);
		struct ring_cursor c;
		struct buf b = BUF_INIT;
		uint64_t next = 0;

		ck_assert_int_eq(ring_cursor_init(r, 0, &c), 0);
		for (seq = 0; seq < 20000; seq++) {
			ck_assert_int_eq(write_seq(r, seq, 1024, scratch), 0);
			/* Read in bursts so the ring holds several records. */
			if (seq % 3 == 2)
				while (next <= seq)
					read_expect(r, &c, next++, 1024);
		}
		while (next < seq)
			read_expect(r, &c, next++, 1024);
		ck_assert_int_eq(ring_read(r, &c, &b), RING_EMPTY);
		ck_assert_uint_eq(ring_head(r), 20000);
		ck_assert_uint_eq(c.overruns, 0);
		buf_free(&b);
		ring_free(r);
	}
}
END_TEST

/* Every size from 0 to the maximum, written both ways. */
START_TEST(test_all_sizes)
{
	int modes[2] = { RING_BROADCAST, RING_SPSC };
	unsigned char rec[1024];
	struct buf b = BUF_INIT;
	unsigned i;
	size_t len, k;

	for (k = 0; k < sizeof(rec); k++)
		rec[k] = (unsigned char)(k * 7 + 3);
	for (i = 0; i < 2; i++) {
		struct ring_shm *r = ring_new(4096, 1, modes[i], NULL);
		struct ring_cursor c;

		ck_assert_int_eq(ring_cursor_init(r, 0, &c), 0);
		for (len = 0; len <= ring_max_record(r); len++) {
			if (len % 2 == 0) {
				ck_assert_int_eq(ring_write(r, rec, len), 0);
			} else {
				/* Two-step: reserve more than needed, commit len. */
				size_t want = len + 13 <= ring_max_record(r) ? len + 13 : len;
				char *p = ring_reserve(r, want);

				ck_assert_ptr_nonnull(p);
				memcpy(p, rec, len);
				ck_assert_int_eq(ring_commit(r, len), 0);
			}
			ck_assert_int_eq(ring_read(r, &c, &b), RING_OK);
			ck_assert_uint_eq(b.len, len);
			if (len)
				ck_assert_mem_eq(b.data, rec, len);
			ck_assert_int_eq(ring_read(r, &c, &b), RING_EMPTY);
		}
		ck_assert_uint_eq(ring_head(r), ring_max_record(r) + 1);
		ring_free(r);
	}
	buf_free(&b);
}
END_TEST

START_TEST(test_too_big)
{
	int modes[2] = { RING_BROADCAST, RING_SPSC };
	static unsigned char rec[4096];
	struct buf b = BUF_INIT;
	unsigned i;

	for (i = 0; i < 2; i++) {
		struct ring_shm *r = ring_new(4096, 1, modes[i], NULL);
		struct ring_cursor c;

		ck_assert_int_eq(ring_cursor_init(r, 0, &c), 0);
		errno = 0;
		ck_assert_int_eq(ring_write(r, rec, 1025), -1);
		ck_assert_int_eq(errno, EMSGSIZE);
		errno = 0;
		ck_assert_int_eq(ring_write(r, rec, SIZE_MAX), -1);
		ck_assert_int_eq(errno, EMSGSIZE);
		errno = 0;
		ck_assert_ptr_null(ring_reserve(r, 4096));
		ck_assert_int_eq(errno, EMSGSIZE);
		ck_assert_uint_eq(ring_head(r), 0);
		ck_assert_int_eq(ring_read(r, &c, &b), RING_EMPTY);
		/* The ring still works. */
		ck_assert_int_eq(ring_write(r, rec, 1024), 0);
		ck_assert_int_eq(ring_read(r, &c, &b), RING_OK);
		ck_assert_uint_eq(b.len, 1024);
		ring_free(r);
	}
	buf_free(&b);
}
END_TEST

START_TEST(test_spsc_full)
{
	struct ring_shm *r = ring_new(4096, 1, RING_SPSC, NULL);
	unsigned char rec[100];
	struct ring_cursor c;
	struct buf b = BUF_INIT;
	uint64_t written = 0, got = 0, n;

	ck_assert_int_eq(ring_cursor_init(r, 0, &c), 0);
	/* 100-byte records take 128 bytes: 32 fit in 4096. */
	for (;;) {
		memset(rec, (int)written, sizeof(rec));
		if (ring_write(r, rec, sizeof(rec)) == -1) {
			ck_assert_int_eq(errno, EAGAIN);
			break;
		}
		written++;
	}
	ck_assert_uint_eq(written, 32);
	ck_assert_uint_eq(ring_reader_lag_bytes(r, 0), 4096);
	/* Still full: nothing was overwritten. */
	errno = 0;
	ck_assert_int_eq(ring_write(r, rec, 1), -1);
	ck_assert_int_eq(errno, EAGAIN);
	/* One read frees one slot. */
	ck_assert_int_eq(ring_read(r, &c, &b), RING_OK);
	ck_assert_uint_eq((unsigned char)b.data[0], got);
	got++;
	memset(rec, (int)written, sizeof(rec));
	ck_assert_int_eq(ring_write(r, rec, sizeof(rec)), 0);
	written++;
	ck_assert_int_eq(ring_write(r, rec, sizeof(rec)), -1);
	/* Drain in order. */
	for (n = 0; ; n++) {
		int st = ring_read(r, &c, &b);

		if (st == RING_EMPTY)
			break;
		ck_assert_int_eq(st, RING_OK);
		ck_assert_uint_eq(b.len, sizeof(rec));
		ck_assert_uint_eq((unsigned char)b.data[0], (unsigned char)got);
		got++;
	}
	ck_assert_uint_eq(got, written);
	ck_assert_uint_eq(c.overruns, 0);
	ck_assert_int_eq(ring_write(r, rec, sizeof(rec)), 0);
	buf_free(&b);
	ring_free(r);
}
END_TEST

START_TEST(test_sleep_wake)
{
	int efd[2] = { make_eventfd(), make_eventfd() };
	struct ring_shm *r = ring_new(4096, 2, RING_BROADCAST, efd);
	struct ring_cursor c0, c1;
	struct buf b = BUF_INIT;

	ck_assert_int_eq(ring_eventfd(r, 0), efd[0]);
	ck_assert_int_eq(ring_eventfd(r, 1), efd[1]);
	ck_assert_int_eq(ring_cursor_init(r, 0, &c0), 0);
	ck_assert_int_eq(ring_cursor_init(r, 1, &c1), 0);

	/* No sleeper: a write makes no eventfd write. */
	ck_assert_int_eq(ring_write(r, "a", 1), 0);
	ck_assert_uint_eq(eventfd_take(efd[0]), 0);
	ck_assert_uint_eq(eventfd_take(efd[1]), 0);
	/* Reader 0 has unread data: it must not sleep. */
	ck_assert_int_eq(ring_reader_sleep(r, 0), 1);
	ck_assert_uint_eq(VMB_LOAD(&r->readers[0].sleeping), 0);
	ck_assert_int_eq(ring_read(r, &c0, &b), RING_OK);
	ck_assert_int_eq(ring_read(r, &c0, &b), RING_EMPTY);
	/* Now it may. */
	ck_assert_int_eq(ring_reader_sleep(r, 0), 0);
	ck_assert_uint_eq(VMB_LOAD(&r->readers[0].sleeping), 1);
	ck_assert_uint_eq(VMB_LOAD(&r->readers[1].sleeping), 0);
	ck_assert_int_eq(ring_write(r, "b", 1), 0);
	ck_assert_uint_eq(VMB_LOAD(&r->readers[0].sleeping), 0);
	ck_assert_uint_eq(VMB_LOAD(&r->readers[0].wakeups), 1);
	ck_assert_uint_eq(VMB_LOAD(&r->readers[1].wakeups), 0);
	/* Only the sleeper was written to, once, even after more writes. */
	ck_assert_int_eq(ring_write(r, "c", 1), 0);
	ck_assert_uint_eq(eventfd_take(efd[0]), 1);
	ck_assert_uint_eq(eventfd_take(efd[1]), 0);
	ring_reader_woken(r, 0); /* nothing left to reset: must not fail */
	ck_assert_int_eq(ring_read(r, &c0, &b), RING_OK);
	ck_assert_mem_eq(b.data, "b", 1);
	ck_assert_int_eq(ring_read(r, &c0, &b), RING_OK);
	ck_assert_mem_eq(b.data, "c", 1);
	/* Sleep, get woken by a write, reset with ring_reader_woken(). */
	ck_assert_int_eq(ring_reader_sleep(r, 0), 0);
	ck_assert_int_eq(ring_write(r, "d", 1), 0);
	ring_reader_woken(r, 0);
	ck_assert_uint_eq(eventfd_take(efd[0]), 0);
	/* A sleeper that woke on its own (timeout) clears its flag. */
	ck_assert_int_eq(ring_read(r, &c0, &b), RING_OK);
	ck_assert_int_eq(ring_reader_sleep(r, 0), 0);
	ring_reader_woken(r, 0);
	ck_assert_uint_eq(VMB_LOAD(&r->readers[0].sleeping), 0);
	ck_assert_int_eq(ring_write(r, "e", 1), 0);
	ck_assert_uint_eq(eventfd_take(efd[0]), 0);
	ring_free(r);

	/* SPSC: same protocol. */
	r = ring_new(4096, 1, RING_SPSC, &efd[1]);
	ck_assert_int_eq(ring_cursor_init(r, 0, &c1), 0);
	ck_assert_int_eq(ring_reader_sleep(r, 0), 0);
	ck_assert_int_eq(ring_write(r, "x", 1), 0);
	ck_assert_uint_eq(eventfd_take(efd[1]), 1);
	ck_assert_int_eq(ring_reader_sleep(r, 0), 1);
	ck_assert_int_eq(ring_read(r, &c1, &b), RING_OK);
	ck_assert_int_eq(ring_reader_sleep(r, 0), 0);
	ring_free(r);
	close(efd[0]);
	close(efd[1]);
	buf_free(&b);
}
END_TEST

/* A reader whose cursor sits on the padding at the end of the data area,
 * when the writer reuses exactly that room: lapped, but nothing lost. */
START_TEST(test_lapped_on_padding)
{
	struct ring_shm *r = ring_new(4096, 1, RING_BROADCAST, NULL);
	struct ring_cursor c;
	struct buf b = BUF_INIT;
	unsigned char rec[112];
	uint64_t i;

	ck_assert_int_eq(ring_cursor_init(r, 0, &c), 0);
	/* 63 records of 64 bytes (48 + header), all read: the cursor is at
	 * 4032, where the next record does not fit. */
	for (i = 0; i < 63; i++) {
		memset(rec, (int)i, sizeof(rec));
		ck_assert_int_eq(ring_write(r, rec, 48), 0);
		ck_assert_int_eq(ring_read(r, &c, &b), RING_OK);
	}
	/* 64 bytes of padding, then record 63 at the start of the next lap;
	 * 62 more records of 64 bytes end exactly one ring after the padding
	 * began, so the tail moves just past it, onto record 63. */
	memset(rec, 63, sizeof(rec));
	ck_assert_int_eq(ring_write(r, rec, 112), 0);
	for (i = 64; i < 126; i++) {
		memset(rec, (int)i, sizeof(rec));
		ck_assert_int_eq(ring_write(r, rec, 48), 0);
	}
	ck_assert_uint_eq(VMB_LOAD(&r->tail), 4096);
	for (i = 63; i < 126; i++) {
		ck_assert_int_eq(ring_read(r, &c, &b), RING_OK);
		ck_assert_uint_eq(b.len, i == 63 ? 112 : 48);
		ck_assert_uint_eq((unsigned char)b.data[0], (unsigned char)i);
	}
	ck_assert_int_eq(ring_read(r, &c, &b), RING_EMPTY);
	ck_assert_uint_eq(c.overruns, 0);
	ck_assert_uint_eq(c.lost, 0);
	buf_free(&b);
	ring_free(r);
}
END_TEST

START_TEST(test_quiet_write)
{
	int efd = make_eventfd();
	struct ring_shm *r = ring_new(4096, 1, RING_SPSC, &efd);
	struct ring_cursor c;
	struct buf b = BUF_INIT;
	unsigned char rec[100] = { 0 };
	int n = 0;

	ck_assert_int_eq(ring_cursor_init(r, 0, &c), 0);
	ck_assert_int_eq(ring_reader_sleep(r, 0), 0);
	/* A quiet record leaves the sleeper asleep... */
	ck_assert_int_eq(ring_write_quiet(r, "q", 1), 0);
	ck_assert_uint_eq(eventfd_take(efd), 0);
	ck_assert_uint_eq(VMB_LOAD(&r->readers[0].sleeping), 1);
	ck_assert_uint_eq(ring_head(r), 1);
	/* ... until ring_wake() or an ordinary write, once. */
	ring_wake(r);
	ring_wake(r);
	ck_assert_uint_eq(eventfd_take(efd), 1);
	ck_assert_uint_eq(VMB_LOAD(&r->readers[0].sleeping), 0);
	ck_assert_int_eq(ring_reader_sleep(r, 0), 1);   /* it has data */
	ck_assert_int_eq(ring_read(r, &c, &b), RING_OK);
	ck_assert_mem_eq(b.data, "q", 1);
	ck_assert_int_eq(ring_reader_sleep(r, 0), 0);
	ck_assert_int_eq(ring_write_quiet(r, "r", 1), 0);
	ck_assert_int_eq(ring_write(r, "s", 1), 0);
	ck_assert_uint_eq(eventfd_take(efd), 1);
	ck_assert_int_eq(ring_read(r, &c, &b), RING_OK);
	ck_assert_mem_eq(b.data, "r", 1);
	ck_assert_int_eq(ring_read(r, &c, &b), RING_OK);
	ck_assert_mem_eq(b.data, "s", 1);
	ck_assert_uint_eq(c.seq, ring_head(r));
	/* A full ring refuses a quiet record as it refuses any. */
	while (ring_write_quiet(r, rec, sizeof(rec)) == 0)
		n++;
	ck_assert_int_eq(errno, EAGAIN);
	ck_assert_int_ge(n, 30);        /* about 4096 / 128 */
	ring_free(r);
	close(efd);
	buf_free(&b);
}
END_TEST

/* A reader that stops for more than a ring's worth. */
START_TEST(test_overrun)
{
	struct ring_shm *r = ring_new(4096, 2, RING_BROADCAST, NULL);
	unsigned char scratch[2048];
	struct ring_cursor slow, fast;
	struct buf b = BUF_INIT;
	uint64_t seq, next, total = 500;
	int st;

	ck_assert_int_eq(ring_cursor_init(r, 0, &slow), 0);
	ck_assert_int_eq(ring_cursor_init(r, 1, &fast), 0);
	for (seq = 0; seq < 3; seq++) {
		ck_assert_int_eq(write_seq(r, seq, 300, scratch), 0);
		read_expect(r, &fast, seq, 300);
	}
	read_expect(r, &slow, 0, 300);
	for (; seq < total; seq++) {
		ck_assert_int_eq(write_seq(r, seq, 300, scratch), 0);
		read_expect(r, &fast, seq, 300);   /* the writer never waited */
	}
	st = ring_read(r, &slow, &b);
	ck_assert_int_eq(st, RING_OVERRUN);
	ck_assert_uint_gt(slow.last_lost, 0);
	ck_assert_uint_eq(slow.overruns, 1);
	ck_assert_uint_eq(VMB_LOAD(&r->readers[0].overruns), 1);
	ck_assert_uint_eq(VMB_LOAD(&r->readers[0].lost), slow.last_lost);
	/* Resumes at the oldest valid record: 1 + lost, then every record. */
	next = 1 + slow.last_lost;
	ck_assert_uint_eq(slow.seq, next);
	ck_assert_uint_lt(next, total);
	while (next < total)
		read_expect(r, &slow, next++, 300);
	ck_assert_int_eq(ring_read(r, &slow, &b), RING_EMPTY);
	/* Everything written is accounted for. */
	ck_assert_uint_eq(1 + slow.lost + (total - 1 - slow.last_lost), total);
	ck_assert_uint_eq(fast.overruns, 0);
	/* And it keeps working afterwards. */
	ck_assert_int_eq(write_seq(r, total, 300, scratch), 0);
	read_expect(r, &slow, total, 300);

	/* Lapped before its first record: the loss is still counted exactly. */
	ck_assert_int_eq(ring_cursor_init(r, 0, &slow), 0);
	ck_assert_uint_eq(slow.seq, total + 1);
	for (seq = total + 1; seq < total + 200; seq++)
		ck_assert_int_eq(write_seq(r, seq, 300, scratch), 0);
	ck_assert_int_eq(ring_read(r, &slow, &b), RING_OVERRUN);
	ck_assert_uint_gt(slow.last_lost, 0);
	ck_assert_uint_eq(slow.seq, total + 1 + slow.last_lost);
	read_expect(r, &slow, total + 1 + slow.last_lost, 300);
	buf_free(&b);
	ring_free(r);
}
END_TEST

/* A (re)started reader sees only new records. */
START_TEST(test_cursor_starts_at_head)
{
	unsigned char scratch[2048];
	struct ring_cursor c;
	struct buf b = BUF_INIT;
	struct ring_shm *r = ring_new(4096, 1, RING_BROADCAST, NULL);
	uint64_t seq;

	for (seq = 0; seq < 5; seq++)
		ck_assert_int_eq(write_seq(r, seq, 500, scratch), 0);
	ck_assert_int_eq(ring_cursor_init(r, 0, &c), 0);
	ck_assert_uint_eq(c.seq, 5);
	ck_assert_int_eq(c.seq_known, 1);
	ck_assert_uint_eq(ring_reader_seq(r, 0), 5);
	ck_assert_int_eq(ring_read(r, &c, &b), RING_EMPTY);
	ck_assert_int_eq(write_seq(r, 5, 500, scratch), 0);
	read_expect(r, &c, 5, 500);
	ring_free(r);

	/* SPSC: a restarted reader discards unread data; the writer gets room. */
	r = ring_new(4096, 1, RING_SPSC, NULL);
	ck_assert_int_eq(ring_cursor_init(r, 0, &c), 0);
	for (seq = 0; ; seq++)
		if (write_seq(r, seq, 500, scratch) == -1)
			break;
	ck_assert_int_eq(errno, EAGAIN);
	ck_assert_int_eq(ring_cursor_init(r, 0, &c), 0);
	ck_assert_int_eq(ring_read(r, &c, &b), RING_EMPTY);
	ck_assert_int_eq(write_seq(r, seq, 500, scratch), 0);
	read_expect(r, &c, seq, 500);
	ring_free(r);
	buf_free(&b);
}
END_TEST

START_TEST(test_bad_args)
{
	static char mem[8192] __attribute__((aligned(64)));
	struct ring_shm *junk = (struct ring_shm *)mem;
	struct ring_shm *r = ring_new(4096, 2, RING_BROADCAST, NULL);
	struct ring_cursor c;
	struct buf b = BUF_INIT;

	ck_assert_uint_eq(ring_shm_size(4096, 0), 0);
	ck_assert_uint_eq(ring_shm_size(4096, RING_MAX_READERS + 1), 0);
	ck_assert_uint_eq(ring_shm_size(RING_MAX_BYTES + 1, 1), 0);
	ck_assert_uint_eq(ring_shm_size(SIZE_MAX, 1), 0);
	ck_assert_uint_eq(ring_shm_size(1, 1), ring_shm_size(4096, 1));
	ck_assert_uint_eq(ring_shm_size(5000, 1) % CACHELINE, 0);

	ck_assert_int_eq(ring_shm_init(NULL, 4096, 1, RING_SPSC, NULL), -1);
	ck_assert_int_eq(ring_shm_init((struct ring_shm *)(mem + 8), 1024, 1, RING_SPSC, NULL), -1);
	ck_assert_int_eq(ring_shm_init(junk, 1024, 1, 7, NULL), -1);
	ck_assert_int_eq(ring_shm_init(junk, 1024, 2, RING_SPSC, NULL), -1);
	ck_assert_int_eq(ring_shm_init(junk, 1024, 0, RING_BROADCAST, NULL), -1);
	ck_assert_int_eq(ring_shm_init(junk, SIZE_MAX, 1, RING_BROADCAST, NULL), -1);
	ck_assert_int_eq(errno, EINVAL);

	/* Not a ring (no magic). */
	memset(mem, 0, sizeof(mem));
	errno = 0;
	ck_assert_int_eq(ring_write(junk, "x", 1), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(ring_write(NULL, "x", 1), -1);
	ck_assert_ptr_null(ring_reserve(junk, 1));
	ck_assert_int_eq(ring_commit(junk, 0), -1);
	ck_assert_int_eq(ring_cursor_init(junk, 0, &c), -1);
	ck_assert_int_eq(ring_reader_sleep(junk, 0), -1);
	ck_assert_int_eq(ring_eventfd(junk, 0), -1);
	ck_assert_uint_eq(ring_head(junk), 0);
	ck_assert_uint_eq(ring_max_record(NULL), 0);

	/* Bad reader index, cursor, output buffer. */
	ck_assert_int_eq(ring_cursor_init(r, 2, &c), -1);
	ck_assert_int_eq(ring_cursor_init(r, 0, NULL), -1);
	ck_assert_int_eq(ring_reader_sleep(r, 2), -1);
	ck_assert_int_eq(ring_eventfd(r, 2), -1);
	ck_assert_int_eq(ring_eventfd(r, 0), -1);   /* no eventfd given */
	ck_assert_uint_eq(ring_reader_lag_bytes(r, 99), 0);
	ring_reader_woken(r, 99);
	ck_assert_int_eq(ring_cursor_init(r, 0, &c), 0);
	ck_assert_int_eq(ring_read(r, NULL, &b), -1);
	ck_assert_int_eq(ring_read(r, &c, NULL), -1);
	ck_assert_int_eq(ring_read(junk, &c, &b), -1);
	c.reader = 5;
	ck_assert_int_eq(ring_read(r, &c, &b), -1);
	ck_assert_str_eq(ring_status_name(RING_OVERRUN), "overrun");
	ck_assert_str_eq(ring_status_name(-1), "error");

	/* Commit without / beyond a reservation. */
	errno = 0;
	ck_assert_int_eq(ring_commit(r, 0), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_ptr_nonnull(ring_reserve(r, 10));
	ck_assert_int_eq(ring_commit(r, 11), -1);
	ck_assert_int_eq(ring_commit(r, 10), 0);
	ck_assert_int_eq(ring_commit(r, 0), -1);   /* already committed */
	buf_free(&b);
	ring_free(r);
}
END_TEST

/* A scribbled ring makes the reader resynchronise, not crash. */
START_TEST(test_corrupt)
{
	int modes[2] = { RING_BROADCAST, RING_SPSC };
	unsigned char scratch[2048];
	struct buf b = BUF_INIT;
	unsigned i;

	for (i = 0; i < 2; i++) {
		struct ring_shm *r = ring_new(4096, 1, modes[i], NULL);
		struct ring_rec_shm *rec = (struct ring_rec_shm *)((char *)r + r->data_off);
		struct ring_cursor c;

		ck_assert_int_eq(ring_cursor_init(r, 0, &c), 0);
		ck_assert_int_eq(write_seq(r, 0, 100, scratch), 0);
		ck_assert_int_eq(write_seq(r, 1, 100, scratch), 0);
		VMB_STORE(&rec->len, 0xffffffffu);
		ck_assert_int_eq(ring_read(r, &c, &b), RING_OVERRUN);
		ck_assert_int_eq(ring_read(r, &c, &b), RING_EMPTY);
		ck_assert_int_eq(write_seq(r, 2, 100, scratch), 0);
		read_expect(r, &c, 2, 100);

		/* A bad sequence number. */
		ck_assert_int_eq(write_seq(r, 3, 100, scratch), 0);
		rec = (struct ring_rec_shm *)((char *)r + r->data_off + (c.pos & (r->size - 1)));
		VMB_STORE(&rec->seq, 77);
		ck_assert_int_eq(ring_read(r, &c, &b), RING_OVERRUN);

		/* A cursor beyond the head, or misaligned. */
		ck_assert_int_eq(write_seq(r, 4, 100, scratch), 0);
		c.pos += 4096 * 3;
		ck_assert_int_eq(ring_read(r, &c, &b), RING_OVERRUN);
		ck_assert_int_eq(write_seq(r, 5, 100, scratch), 0);
		c.pos -= 1;
		ck_assert_int_eq(ring_read(r, &c, &b), RING_OVERRUN);
		ck_assert_int_eq(write_seq(r, 6, 100, scratch), 0);
		read_expect(r, &c, 6, 100);
		ring_free(r);
	}
	buf_free(&b);
}
END_TEST

/* ---- shm -------------------------------------------------------------- */

START_TEST(test_shm_layout)
{
	struct shm_params p = { .nworkers = 3 };
	struct shm *s = shm_create(&p);
	struct shm_hdr_shm *hdr;
	int fds[4];
	unsigned i, j;
	char *base, *end;

	ck_assert_ptr_nonnull(s);
	hdr = shm_header(s);
	base = (char *)hdr;
	end = base + shm_size(s);
	ck_assert_uint_eq(hdr->magic, SHM_MAGIC);
	ck_assert_uint_eq(hdr->version, SHM_LAYOUT_VERSION);
	ck_assert_uint_eq(hdr->max_workers, 3);
	ck_assert_uint_eq(hdr->size, shm_size(s));
	ck_assert_uint_eq(VMB_LOAD(&hdr->generation), 1);
	ck_assert_uint_eq(shm_max_workers(s), 3);

	ck_assert_uint_eq(ring_data_size(shm_fanout(s)), SHM_DEFAULT_FANOUT_BYTES);
	ck_assert_uint_eq(shm_fanout(s)->nreaders, 3);
	ck_assert_uint_eq(shm_fanout(s)->mode, RING_BROADCAST);
	for (i = 0; i < 3; i++) {
		struct ring_shm *rq = shm_request(s, i), *rp = shm_reply(s, i);

		ck_assert_uint_eq(ring_data_size(rq), SHM_DEFAULT_REQUEST_BYTES);
		ck_assert_uint_eq(ring_data_size(rp), SHM_DEFAULT_REPLY_BYTES);
		ck_assert_uint_eq(rq->mode, RING_SPSC);
		ck_assert_uint_eq(rp->mode, RING_SPSC);
		ck_assert((char *)rq > base && (char *)rq + ring_shm_size(rq->size, 1) <= end);
		ck_assert((char *)rp > base && (char *)rp + ring_shm_size(rp->size, 1) <= end);
		ck_assert((char *)rq >= (char *)shm_fanout(s) + ring_shm_size(SHM_DEFAULT_FANOUT_BYTES, 3));
		ck_assert((char *)rp >= (char *)rq + ring_shm_size(rq->size, 1));
		ck_assert_uint_eq((uintptr_t)rq % CACHELINE, 0);
		fds[i] = shm_worker_eventfd(s, i);
		ck_assert_int_ge(fds[i], 0);
		ck_assert_int_eq(ring_eventfd(shm_fanout(s), i), fds[i]);
		ck_assert_int_eq(ring_eventfd(rp, 0), fds[i]);
		ck_assert_int_eq(ring_eventfd(rq, 0), shm_broker_eventfd(s));
	}
	fds[3] = shm_broker_eventfd(s);
	for (i = 0; i < 4; i++) {
		ck_assert_int_ne(fcntl(fds[i], F_GETFL), -1);
		ck_assert(fcntl(fds[i], F_GETFL) & O_NONBLOCK);
		for (j = 0; j < i; j++)
			ck_assert_int_ne(fds[i], fds[j]);
	}
	for (i = 0; i <= 3; i++) {
		struct proc_slot_shm *sl = shm_slot(s, i);

		ck_assert_ptr_nonnull(sl);
		ck_assert_uint_eq((uintptr_t)sl % CACHELINE, 0);
		ck_assert((char *)sl > base && (char *)(sl + 1) <= (char *)shm_fanout(s));
		ck_assert_int_eq(VMB_LOAD(&sl->pid), 0);
		if (i > 0)
			ck_assert_ptr_eq(sl, shm_slot(s, i - 1) + 1);
	}
	/* Slots never share a cache line (false sharing between processes). */
	ck_assert_uint_eq(sizeof(struct proc_slot_shm) % CACHELINE, 0);
	shm_destroy(s);
	for (i = 0; i < 4; i++)
		ck_assert_int_eq(fcntl(fds[i], F_GETFD), -1);
	shm_destroy(NULL);
}
END_TEST

START_TEST(test_shm_bad)
{
	struct shm_params p = { .nworkers = 0 };
	struct shm *s;

	ck_assert_ptr_null(shm_create(NULL));
	ck_assert_ptr_null(shm_create(&p));
	p.nworkers = SHM_MAX_WORKERS + 1;
	ck_assert_ptr_null(shm_create(&p));
	p.nworkers = 2;
	p.fanout_bytes = RING_MAX_BYTES + 1;
	ck_assert_ptr_null(shm_create(&p));
	p.fanout_bytes = 0;
	p.request_bytes = SIZE_MAX;
	ck_assert_ptr_null(shm_create(&p));
	p.request_bytes = 0;
	p.reply_bytes = SIZE_MAX / 2;
	ck_assert_ptr_null(shm_create(&p));
	p.reply_bytes = 4096;
	p.request_bytes = 1000;      /* rounded up */
	p.fanout_bytes = 100000;
	s = shm_create(&p);
	ck_assert_ptr_nonnull(s);
	ck_assert_uint_eq(ring_data_size(shm_request(s, 0)), 4096);
	ck_assert_uint_eq(ring_data_size(shm_fanout(s)), 131072);

	errno = 0;
	ck_assert_ptr_null(shm_request(s, 2));
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_ptr_null(shm_reply(s, 2));
	ck_assert_ptr_null(shm_reply(s, UINT32_MAX));
	ck_assert_ptr_null(shm_slot(s, 3));
	ck_assert_ptr_nonnull(shm_slot(s, 2));     /* the broker */
	ck_assert_int_eq(shm_worker_eventfd(s, 2), -1);
	ck_assert_ptr_null(shm_fanout(NULL));
	ck_assert_ptr_null(shm_request(NULL, 0));
	ck_assert_ptr_null(shm_slot(NULL, 0));
	ck_assert_int_eq(shm_worker_eventfd(NULL, 0), -1);
	ck_assert_int_eq(shm_broker_eventfd(NULL), -1);
	ck_assert_uint_eq(shm_max_workers(NULL), 0);
	ck_assert_ptr_null(shm_header(NULL));
	shm_destroy(s);
}
END_TEST

/* Issue 5: more worker slots than active workers; the active count moves
 * within them, and the data of unused rings is never touched. */
START_TEST(test_shm_slots)
{
	struct shm_params p = { .nworkers = 2, .max_workers = 5 };
	struct shm *s = shm_create(&p);
	long page = sysconf(_SC_PAGESIZE);
	unsigned char vec[4];
	char *data;

	ck_assert_ptr_nonnull(s);
	ck_assert_uint_eq(shm_max_workers(s), 5);
	ck_assert_uint_eq(shm_active_workers(s), 2);
	ck_assert_uint_eq(shm_fanout(s)->nreaders, 5);
	ck_assert_ptr_nonnull(shm_request(s, 4));
	ck_assert_ptr_nonnull(shm_slot(s, 5));     /* the broker */
	ck_assert_ptr_null(shm_slot(s, 6));
	ck_assert_int_eq(shm_set_active_workers(s, 5), 0);
	ck_assert_uint_eq(shm_active_workers(s), 5);
	ck_assert_int_eq(shm_set_active_workers(s, 1), 0);
	ck_assert_uint_eq(shm_active_workers(s), 1);
	ck_assert_int_eq(shm_set_active_workers(s, 0), -1);
	ck_assert_int_eq(shm_set_active_workers(s, 6), -1);
	ck_assert_uint_eq(shm_active_workers(s), 1);
	ck_assert_uint_eq(shm_active_workers(NULL), 0);
	/* The data area of slot 4's request ring has no page yet. */
	data = (char *)shm_request(s, 4) + shm_request(s, 4)->data_off;
	data = (char *)(((uintptr_t)data + (uintptr_t)page - 1) & ~((uintptr_t)page - 1));
	ck_assert_int_eq(mincore(data, 4 * (size_t)page, vec), 0);
	for (unsigned i = 0; i < 4; i++)
		ck_assert_uint_eq(vec[i] & 1, 0);
	shm_destroy(s);

	p.max_workers = 1;          /* fewer slots than workers */
	ck_assert_ptr_null(shm_create(&p));
	p.max_workers = SHM_MAX_WORKERS + 1;
	ck_assert_ptr_null(shm_create(&p));
}
END_TEST

/* The segment is shared with forked children: a child writes, we read. */
START_TEST(test_shm_fork)
{
	struct shm_params p = { .nworkers = 2, .fanout_bytes = 65536, .request_bytes = 8192, .reply_bytes = 8192 };
	struct shm *s = shm_create(&p);
	struct ring_shm *rq;
	struct ring_cursor c;
	struct buf b = BUF_INIT;
	struct pollfd pfd;
	int status, st;
	pid_t pid;

	ck_assert_ptr_nonnull(s);
	rq = shm_request(s, 1);
	ck_assert_int_eq(ring_cursor_init(rq, 0, &c), 0);
	ck_assert_int_eq(ring_read(rq, &c, &b), RING_EMPTY);
	ck_assert_int_eq(ring_reader_sleep(rq, 0), 0);

	pid = fork();
	ck_assert_int_ne(pid, -1);
	if (pid == 0) {
		struct proc_slot_shm *sl = shm_slot(s, 1);

		VMB_STORE(&sl->pid, getpid());
		VMB_ADD(&sl->messages_sent, 3);
		_exit(ring_write(shm_request(s, 1), "from worker 1", 13) == 0 ? 0 : 1);
	}
	/* Blocks until the child's write wakes the broker eventfd. */
	pfd.fd = shm_broker_eventfd(s);
	pfd.events = POLLIN;
	while (poll(&pfd, 1, -1) == -1)
		ck_assert_int_eq(errno, EINTR);
	ring_reader_woken(rq, 0);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	st = ring_read(rq, &c, &b);
	ck_assert_int_eq(st, RING_OK);
	ck_assert_uint_eq(b.len, 13);
	ck_assert_mem_eq(b.data, "from worker 1", 13);
	ck_assert_int_eq(VMB_LOAD(&shm_slot(s, 1)->pid), pid);
	ck_assert_uint_eq(VMB_LOAD(&shm_slot(s, 1)->messages_sent), 3);
	/* Worker 0's ring is a different one: still empty. */
	ck_assert_int_eq(ring_cursor_init(shm_request(s, 0), 0, &c), 0);
	ck_assert_int_eq(ring_read(shm_request(s, 0), &c, &b), RING_EMPTY);
	buf_free(&b);
	shm_destroy(s);
}
END_TEST

/* ---- multi-process stress --------------------------------------------- */

struct stress_result {
	uint64_t received;
	uint64_t lost;
	uint64_t overruns;
	uint64_t errors;
	uint64_t sleeps;
	char why[200];
};

struct stress_ctl {
	_Atomic uint32_t ready;
	struct stress_result res[STRESS_READERS];
};

static uint64_t
stress_records(void)
{
	const char *e = getenv("CHECK_RING_RECORDS");
	long long n;

	if (e == NULL || *e == '\0')
		return STRESS_DEFAULT_RECORDS;
	n = atoll(e);
	return n > 1000 ? (uint64_t)n : 1000;
}

/* Blocks on the reader's eventfd using the sleep protocol. */
static void
stress_wait(struct ring_shm *r, unsigned idx, pid_t parent, struct stress_result *res)
{
	struct pollfd pfd;
	int spin;

	/* Like a busy worker: look again a few times before paying for a sleep. */
	for (spin = 0; spin < 8; spin++) {
		if (ring_reader_lag_bytes(r, idx) != 0)
			return;
		sched_yield();
	}
	if (ring_reader_sleep(r, idx) == 1)
		return;
	res->sleeps++;
	pfd.fd = ring_eventfd(r, idx);
	pfd.events = POLLIN;
	if (poll(&pfd, 1, 1000) == 0 && getppid() != parent)
		_exit(3);   /* the test died: do not linger */
	ring_reader_woken(r, idx);
}

/*
 * Reader process: reads until it has accounted for total records.  pause_every:
 * 0, or stop after that many records until lapped (to exercise overruns).
 */
static void
stress_reader(struct ring_shm *r, unsigned idx, uint64_t total, struct stress_ctl *ctl,
    uint64_t pause_every, pid_t parent)
{
	struct stress_result *res = &ctl->res[idx];
	unsigned char *scratch = malloc(STRESS_MAX_LEN);
	struct ring_cursor c;
	struct buf b = BUF_INIT;
	uint64_t expected = 0;

	if (scratch == NULL || ring_cursor_init(r, idx, &c) != 0)
		_exit(2);
	VMB_ADD(&ctl->ready, 1);
	while (expected < total) {
		int st = ring_read(r, &c, &b);

		if (st == RING_EMPTY) {
			stress_wait(r, idx, parent, res);
			continue;
		}
		if (st == RING_OVERRUN) {
			res->overruns++;
			if (c.last_lost == 0 || c.seq != expected + c.last_lost) {
				if (res->errors++ == 0)
					snprintf(res->why, sizeof(res->why),
					    "overrun at seq %" PRIu64 ": lost %" PRIu64 ", cursor seq %" PRIu64,
					    expected, c.last_lost, c.seq);
				_exit(1);
			}
			expected += c.last_lost;
			res->lost += c.last_lost;
			continue;
		}
		if (st != RING_OK || rec_check(expected, &b, STRESS_MAX_LEN, scratch, res->why, sizeof(res->why)) != 0 ||
		    c.seq != expected + 1) {
			if (st != RING_OK)
				snprintf(res->why, sizeof(res->why), "ring_read: %d", st);
			res->errors++;
			_exit(1);
		}
		expected++;
		res->received++;
		if (pause_every != 0 && res->received % pause_every == 0) {
			/* Stop until the writer has lapped us (or finished). */
			while (ring_reader_lag_bytes(r, idx) <= ring_data_size(r) && ring_head(r) < total)
				usleep(200);
		}
	}
	buf_free(&b);
	free(scratch);
	_exit(0);
}

/* Producer: waits while reader idx is more than half a ring behind. */
static void
stress_pace(struct ring_shm *r, unsigned idx, pid_t pid)
{
	unsigned spins = 0;
	int status;

	while (ring_reader_lag_bytes(r, idx) > ring_data_size(r) / 2) {
		if (++spins % 1024 == 0)
			ck_assert_msg(waitpid(pid, &status, WNOHANG) == 0,
			    "reader %u exited early (status %#x)", idx, status);
		sched_yield();
	}
}

/*
 * Producer (this process): total records; waits (never the ring: the test)
 * while a paced reader is more than half a ring behind, so those must see
 * every record.
 */
static void
stress_run(uint64_t total, size_t ring_bytes, unsigned paced_mask, uint64_t pause_every_r0)
{
	int efd[STRESS_READERS];
	struct ring_shm *r;
	struct stress_ctl *ctl = shared_alloc(sizeof(*ctl));
	unsigned char *scratch = malloc(STRESS_MAX_LEN);
	pid_t pids[STRESS_READERS], parent = getpid();
	uint64_t seq;
	unsigned i;

	ck_assert_ptr_nonnull(scratch);
	for (i = 0; i < STRESS_READERS; i++)
		efd[i] = make_eventfd();
	r = ring_new(ring_bytes, STRESS_READERS, RING_BROADCAST, efd);
	for (i = 0; i < STRESS_READERS; i++) {
		pids[i] = fork();
		ck_assert_int_ne(pids[i], -1);
		if (pids[i] == 0)
			stress_reader(r, i, total, ctl, i == 0 ? pause_every_r0 : 0, parent);
	}
	while (VMB_LOAD(&ctl->ready) < STRESS_READERS)
		usleep(1000);

	for (seq = 0; seq < total; seq++) {
		ck_assert_int_eq(write_seq(r, seq, STRESS_MAX_LEN, scratch), 0);
		if (seq % 16 != 0)
			continue;
		for (i = 0; i < STRESS_READERS; i++) {
			if (!(paced_mask & (1u << i)))
				continue;
			stress_pace(r, i, pids[i]);
		}
	}

	for (i = 0; i < STRESS_READERS; i++) {
		struct stress_result *res = &ctl->res[i];
		int status;

		ck_assert_int_eq(waitpid(pids[i], &status, 0), pids[i]);
		ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		    "reader %u failed (status %#x): %s", i, status, res->why);
		ck_assert_uint_eq(res->errors, 0);
		ck_assert_uint_eq(res->received + res->lost, total);
		if (paced_mask & (1u << i)) {
			ck_assert_msg(res->lost == 0, "paced reader %u lost %" PRIu64, i, res->lost);
			ck_assert_uint_eq(res->overruns, 0);
		}
		fprintf(stderr, "check_ring: broadcast reader %u: %" PRIu64 " received, %" PRIu64
		    " lost in %" PRIu64 " overruns, %" PRIu64 " sleeps\n",
		    i, res->received, res->lost, res->overruns, res->sleeps);
	}
	if (pause_every_r0 != 0) {
		ck_assert_uint_gt(ctl->res[0].overruns, 0);
		ck_assert_uint_gt(ctl->res[0].lost, 0);
	}
	ring_free(r);
	for (i = 0; i < STRESS_READERS; i++)
		close(efd[i]);
	munmap(ctl, sizeof(*ctl));
	free(scratch);
}

/* All readers keep up (paced): every record, in order, intact. */
START_TEST(test_stress_broadcast)
{
	stress_run(stress_records(), 1 << 20, 0x7, 0);
}
END_TEST

/*
 * Reader 0 stops for more than a ring's worth now and then (the producer
 * does not wait for it): it gets RING_OVERRUN, resumes at a valid record,
 * and received + lost == total.  Readers 1 and 2 still see everything.
 */
START_TEST(test_stress_overrun)
{
	uint64_t total = stress_records() / 4;

	stress_run(total, 256 << 10, 0x6, total / 8);
}
END_TEST

/* SPSC across processes: the producer retries on EAGAIN. */
START_TEST(test_stress_spsc)
{
	int efd = make_eventfd();
	struct ring_shm *r = ring_new(16384, 1, RING_SPSC, &efd);
	struct stress_ctl *ctl = shared_alloc(sizeof(*ctl));
	unsigned char *scratch = malloc(STRESS_MAX_LEN);
	uint64_t total = stress_records() / 8, seq, full = 0;
	pid_t pid, parent = getpid();
	int status;

	ck_assert_ptr_nonnull(scratch);
	pid = fork();
	ck_assert_int_ne(pid, -1);
	if (pid == 0)
		stress_reader(r, 0, total, ctl, 0, parent);
	while (VMB_LOAD(&ctl->ready) < 1)
		usleep(1000);
	for (seq = 0; seq < total; seq++) {
		while (write_seq(r, seq, STRESS_MAX_LEN, scratch) == -1) {
			ck_assert_int_eq(errno, EAGAIN);
			full++;
			sched_yield();
		}
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "reader failed (status %#x): %s", status, ctl->res[0].why);
	ck_assert_uint_eq(ctl->res[0].received, total);
	ck_assert_uint_eq(ctl->res[0].lost, 0);
	ck_assert_uint_eq(ctl->res[0].overruns, 0);
	ck_assert_uint_eq(VMB_LOAD(&r->full), full);
	fprintf(stderr, "check_ring: spsc: %" PRIu64 " records, writer found the ring full %" PRIu64
	    " times, reader slept %" PRIu64 " times\n", total, full, ctl->res[0].sleeps);
	ring_free(r);
	close(efd);
	munmap(ctl, sizeof(*ctl));
	free(scratch);
}
END_TEST

static Suite *
ring_suite(void)
{
	Suite *s = suite_create("ring");
	TCase *tc = tcase_create("single");
	TCase *tm = tcase_create("shm");
	TCase *ts = tcase_create("stress");

	tcase_set_timeout(tc, 20);
	tcase_add_test(tc, test_empty);
	tcase_add_test(tc, test_one_record);
	tcase_add_test(tc, test_wrap_around);
	tcase_add_test(tc, test_all_sizes);
	tcase_add_test(tc, test_too_big);
	tcase_add_test(tc, test_spsc_full);
	tcase_add_test(tc, test_sleep_wake);
	tcase_add_test(tc, test_quiet_write);
	tcase_add_test(tc, test_lapped_on_padding);
	tcase_add_test(tc, test_overrun);
	tcase_add_test(tc, test_cursor_starts_at_head);
	tcase_add_test(tc, test_bad_args);
	tcase_add_test(tc, test_corrupt);
	suite_add_tcase(s, tc);

	tcase_set_timeout(tm, 20);
	tcase_add_test(tm, test_shm_layout);
	tcase_add_test(tm, test_shm_bad);
	tcase_add_test(tm, test_shm_slots);
	tcase_add_test(tm, test_shm_fork);
	suite_add_tcase(s, tm);

	tcase_set_timeout(ts, 300);
	tcase_add_test(ts, test_stress_broadcast);
	tcase_add_test(ts, test_stress_overrun);
	tcase_add_test(ts, test_stress_spsc);
	suite_add_tcase(s, ts);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(ring_suite());
	int failed;

	log_set_role("check_ring");
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
