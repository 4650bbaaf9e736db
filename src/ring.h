/*
 * ring.h - lock-free rings of variable-length records in shared memory.
 *
 * Two modes share one layout:
 *
 *  RING_BROADCAST  one writer (the broker), up to RING_MAX_READERS readers
 *                  (the workers), each with a process-local cursor.  The
 *                  writer never waits: it overwrites the oldest records.  A
 *                  lapped reader gets RING_OVERRUN and resumes at the oldest
 *                  record still intact.
 *  RING_SPSC       one writer, one reader whose position is in shared memory;
 *                  the writer never overwrites unread data and ring_write()
 *                  fails with EAGAIN instead.  Used for the per-worker request
 *                  (worker -> broker) and reply (broker -> worker) rings.
 *
 * Layout (every offset relative to the struct ring_shm; no pointers):
 *
 *   +0      line 0  constants: magic, mode, nreaders, size, max_record
 *   +64     line 1  writer: head (byte position), head_seq, tail, gen,
 *                   writer private state and counters.  Read by readers.
 *   +128    reader slot 0, two lines:
 *             line a: sleeping flag, eventfd        (written on sleep/wake)
 *             line b: published pos / seq, overruns (written by the reader)
 *   +256    reader slot 1 ...
 *   +data_off  data area, `size` bytes (a power of two), records back to back:
 *
 *      | seq (8) | len (4) | flags (4) | payload (len) | pad to 16 |
 *
 *   A record never straddles the end of the data area: when it would, the
 *   writer fills the rest with one RING_REC_PAD record (len = bytes skipped,
 *   seq = the seq of the record that follows it at offset 0).
 *
 * Invariants:
 *   - positions (head, tail, cursor pos) are byte counts since the ring was
 *     created and seq are record counts; both are 64-bit and never wrap.
 *     offset in data area = pos & (size - 1).
 *   - tail <= every reader pos we still trust <= head; head - tail <= size.
 *   - BROADCAST: before writing over bytes, the writer moves tail past every
 *     record those bytes belong to, then a write barrier, then writes.  A
 *     reader copies a record, read barrier, re-reads tail: if its pos is now
 *     below tail the copy may be torn and it reports RING_OVERRUN (seqlock).
 *   - SPSC: the writer never lets head - reader pos exceed size.
 *   - records are published by a release store of head after the payload.
 *   - gen is odd while the writer updates head and head_seq together, so a
 *     reader attaching can read a consistent (position, seq) pair.
 *
 * ring_shm_init() runs once, in the process that creates the segment (the
 * supervisor, before fork).  Writer functions may be called by one process
 * at a time; each reader slot by one process at a time.
 */
#ifndef CENTRIFUGO_RING_H
#define CENTRIFUGO_RING_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "vmb.h"

#define RING_MAGIC 0x52494e4743463031ULL /* "RINGCF01" */
#define RING_MAX_READERS 64
#define RING_MIN_BYTES 4096
#define RING_MAX_BYTES ((size_t)1 << 30)
#define RING_ALIGN 16
#define RING_REC_PAD 1u            /* flags bit: padding up to the end of the data area */

enum ring_mode {
	RING_BROADCAST = 0,
	RING_SPSC
};

enum ring_status {
	RING_OK = 0,       /* a record was copied out */
	RING_EMPTY,        /* nothing new */
	RING_OVERRUN       /* lapped (or the ring looked corrupt): records lost,
	                      cursor moved to the oldest valid record */
};

/* Record header in the data area. */
struct ring_rec_shm {
	_Atomic uint64_t seq;
	_Atomic uint32_t len;
	_Atomic uint32_t flags;
};

struct ring_reader_shm {
	/* line a: the sleep/wake handshake */
	_Atomic uint32_t sleeping;      /* 1: reader is (about to be) blocked on eventfd */
	int32_t eventfd;                /* same number in every process (made before fork) */
	_Atomic uint64_t wakeups;       /* eventfd writes made for this reader */
	/* line b: the reader's published position */
	_Atomic uint64_t pos CACHELINE_ALIGNED; /* next byte position to read */
	_Atomic uint64_t seq;           /* next seq (approximate until the first record) */
	_Atomic uint64_t overruns;      /* RING_OVERRUN results */
	_Atomic uint64_t lost;          /* records lost to overruns (as far as known) */
} CACHELINE_ALIGNED;

struct ring_shm {
	/* line 0: constant after ring_shm_init() */
	uint64_t magic;
	uint32_t mode;                  /* enum ring_mode */
	uint32_t nreaders;
	uint64_t size;                  /* data area bytes, power of two */
	uint64_t max_record;            /* largest accepted payload */
	uint64_t data_off;              /* offset of the data area from this struct */

	/* line 1: written by the writer only */
	_Atomic uint64_t head CACHELINE_ALIGNED; /* end of published data */
	_Atomic uint64_t head_seq;      /* seq of the next record = records written */
	_Atomic uint64_t tail;          /* BROADCAST: oldest intact record */
	_Atomic uint64_t gen;           /* odd while head/head_seq change (seqlock) */
	uint64_t resv_pos;              /* ring_reserve(): record start (after padding) */
	uint32_t resv_len;              /* ring_reserve(): payload bytes reserved */
	uint32_t resv_active;           /* ring_reserve(): 1 while a reservation is open */
	uint64_t rpos_cache;            /* SPSC: last reader pos seen by the writer */
	_Atomic uint64_t full;          /* SPSC: EAGAIN returned */

	struct ring_reader_shm readers[];
};

/* Process-local reader state. */
struct ring_cursor {
	uint64_t pos;           /* next byte position */
	uint64_t seq;           /* next seq; a guess from head_seq until seq_known */
	int seq_known;          /* seq was taken from a record header */
	unsigned reader;        /* slot index */
	uint64_t last_lost;     /* records lost in the last RING_OVERRUN (0 = unknown) */
	uint64_t overruns;      /* RING_OVERRUN count */
	uint64_t lost;          /* total records known lost */
};

/* Name of a ring_status for logs ("ok", "empty", "overrun"). */
const char *ring_status_name(int status);

/*
 * Bytes needed for a ring with data_bytes of data (rounded up to a power of
 * two, at least RING_MIN_BYTES) and nreaders reader slots.  Returns 0 if the
 * arguments are out of range (nreaders 1..64, data_bytes <= RING_MAX_BYTES).
 * The result is a multiple of CACHELINE, so rings can be laid end to end.
 */
size_t ring_shm_size(size_t data_bytes, unsigned nreaders);

/*
 * Formats a ring in memory of at least ring_shm_size(data_bytes, nreaders)
 * bytes, CACHELINE-aligned.  eventfds: one per reader (non-blocking
 * eventfds), or NULL / -1 entries for readers that never sleep.  SPSC needs
 * nreaders == 1.  Returns 0, or -1 with errno EINVAL (and a log line).
 */
int ring_shm_init(struct ring_shm *r, size_t data_bytes, unsigned nreaders,
    int mode, const int *eventfds);

/* Largest payload ring_write() accepts (a quarter of the data area). */
size_t ring_max_record(const struct ring_shm *r);

/*
 * Writer: appends one record (copied) and wakes sleeping readers.  len may be
 * 0.  Returns 0, or -1 with errno EMSGSIZE (len > ring_max_record()), EAGAIN
 * (SPSC, reader has not freed enough room yet: retry later) or EINVAL (not a
 * ring).  Never blocks.
 */
int ring_write(struct ring_shm *r, const void *rec, size_t len);

/*
 * Writer: ring_write() without the wake-up.  A reader asleep on its eventfd
 * sees the record only once something wakes it: a later ring_write() or
 * ring_commit(), or ring_wake().  For records no reader waits for.
 */
int ring_write_quiet(struct ring_shm *r, const void *rec, size_t len);

/* Writer: wakes every reader that announced it was going to sleep (one
 * eventfd write each; nothing when all are awake). */
void ring_wake(struct ring_shm *r);

/*
 * Two-step write: ring_reserve() returns room for len payload bytes inside
 * the ring (the caller fills it), ring_commit(r, used) publishes used <= len
 * of them and wakes readers.  A reservation not committed is simply dropped
 * by the next ring_reserve()/ring_write().  Same errors as ring_write(),
 * ring_reserve() returns NULL on error; ring_commit() returns -1/EINVAL when
 * there is no reservation or used is larger than it.
 * BROADCAST: the space is taken from the oldest records at reserve time.
 */
void *ring_reserve(struct ring_shm *r, size_t len);
int ring_commit(struct ring_shm *r, size_t used);

/*
 * Reader: attaches cursor c to slot `reader` at the current head, so a
 * (re)spawned reader sees only records written from now on.  SPSC: the
 * unread records are discarded (the writer gets the room back).
 * Returns 0, or -1/EINVAL if reader is out of range or r is not a ring.
 */
int ring_cursor_init(struct ring_shm *r, unsigned reader, struct ring_cursor *c);

/*
 * Reader: copies the next record into out (replacing its content) and
 * returns RING_OK; or RING_EMPTY; or RING_OVERRUN (BROADCAST only, or on a
 * corrupt ring): the cursor now points at the oldest valid record,
 * c->last_lost says how many records were skipped (0 if unknown), out's
 * content is unspecified; just call ring_read() again.  Returns -1/EINVAL on a bad ring or
 * cursor.
 */
int ring_read(struct ring_shm *r, struct ring_cursor *c, struct buf *out);

/*
 * Reader, after ring_read() returned RING_EMPTY: announces that it is going
 * to block on ring_eventfd().  Returns 1 if data arrived meanwhile (flag
 * cleared: read again, do not block), 0 if it is safe to wait on the eventfd,
 * -1/EINVAL on bad arguments.  After waking, call ring_reader_woken().
 */
int ring_reader_sleep(struct ring_shm *r, unsigned reader);

/* Reader: resets its eventfd after a wake-up (it is non-blocking). */
void ring_reader_woken(struct ring_shm *r, unsigned reader);

/* The eventfd of a reader slot, -1 if none or out of range. */
int ring_eventfd(struct ring_shm *r, unsigned reader);

/* Records written so far (seq of the next record); lag = head - c->seq. */
uint64_t ring_head(struct ring_shm *r);

/*
 * Metrics, any process: bytes between the reader's published position and
 * the head (BROADCAST overruns when it exceeds ring_data_size()), and the
 * next seq it will read (ring_head() - that = lag in records).
 */
uint64_t ring_reader_lag_bytes(struct ring_shm *r, unsigned reader);
uint64_t ring_reader_seq(struct ring_shm *r, unsigned reader);
size_t ring_data_size(const struct ring_shm *r);

#endif
