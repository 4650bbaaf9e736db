/*
 * shm.h - the shared-memory segment: one MAP_SHARED|MAP_ANONYMOUS mapping
 * the supervisor creates before forking, so every child (and every respawned
 * child) inherits it at the same address and nothing is left behind when the
 * last process exits.  It holds the per-process slots and the rings:
 *
 *   +0           struct shm_hdr_shm  magic, layout version, size, generation,
 *                                    max_workers, active_workers, offsets
 *   slots_off    struct proc_slot_shm [max_workers + 1]  (workers, then broker)
 *   rings_off    uint64_t [2 * max_workers]  offsets of request/reply rings
 *   fanout_off   fan-out ring: RING_BROADCAST, reader i = worker i
 *   ...          per worker slot i: request ring (RING_SPSC, worker i ->
 *                broker) and reply ring (RING_SPSC, broker -> worker i)
 *
 * The segment has max_workers worker slots, fixed at start; a reload may
 * change how many of them run (active_workers, slots 0..active-1).  A slot
 * never used costs little: ring_shm_init() writes only each ring's header
 * and reader slots, and MAP_SHARED anonymous pages get memory on first
 * touch, so an unused slot holds two ring-header pages, not its ring data.
 *
 * Everything is addressed by offsets from the segment start.  The eventfds
 * (one per worker, one for the broker) are created with the segment, before
 * fork, so they have the same numbers everywhere: worker i's eventfd wakes
 * it for both the fan-out ring and its reply ring; the broker's eventfd is
 * its reader eventfd in every request ring.
 */
#ifndef CENTRIFUGO_SHM_H
#define CENTRIFUGO_SHM_H

#include <stddef.h>
#include <stdint.h>

#include "ring.h"
#include "vmb.h"

#define SHM_MAGIC 0x43464d4853474553ULL /* "SEGSHMFC" */
#define SHM_LAYOUT_VERSION 3
#define SHM_MAX_WORKERS RING_MAX_READERS
/* Server API methods counted one by one in each slot (api.c's numbering). */
#define SHM_API_METHODS 16

/* Defaults used when a shm_params size is 0. */
#define SHM_DEFAULT_FANOUT_BYTES ((size_t)16 << 20)  /* 16 MiB */
#define SHM_DEFAULT_REQUEST_BYTES ((size_t)1 << 20)  /* 1 MiB */
#define SHM_DEFAULT_REPLY_BYTES ((size_t)1 << 20)    /* 1 MiB */

struct shm_params {
	unsigned nworkers;        /* active at start: 1..max_workers */
	unsigned max_workers;     /* worker slots, nworkers..SHM_MAX_WORKERS;
	                           * 0 = nworkers */
	size_t fanout_bytes;      /* data bytes of each ring, 0 = default; */
	size_t request_bytes;     /* rounded up to a power of two, */
	size_t reply_bytes;       /* RING_MIN_BYTES..RING_MAX_BYTES */
};

/*
 * One per process (worker slots 0..max_workers-1, then the broker).  The owner
 * writes its own slot (relaxed atomics through vmb.h); the supervisor and
 * the workers read all of them for health, metrics and the node-wide
 * connection limit.  Cache-line aligned so no two owners share a line.
 */
struct proc_slot_shm {
	_Atomic int32_t pid;                 /* 0 while not running */
	_Atomic uint32_t spawns;             /* times this slot was (re)spawned */
	_Atomic uint64_t start_time;         /* unix time, seconds */
	_Atomic uint64_t heartbeat;          /* CLOCK_MONOTONIC ms, set by the owner */
	_Atomic uint64_t connections;        /* gauge */
	_Atomic uint64_t subscriptions;      /* gauge */
	_Atomic uint64_t messages_sent;
	_Atomic uint64_t messages_received;
	_Atomic uint64_t ring_overruns;
	_Atomic uint64_t connections_accepted;
	_Atomic uint64_t bytes_sent;         /* client protocol bytes queued */
	_Atomic uint64_t bytes_received;
	_Atomic uint64_t conn_limit_refused; /* upgrades answered 503 (connection_limit) */
	_Atomic uint64_t api_calls[SHM_API_METHODS];       /* server API commands, by method */
	_Atomic uint64_t api_duration_us[SHM_API_METHODS]; /* their summed durations */
} CACHELINE_ALIGNED;

struct shm_hdr_shm {
	uint64_t magic;
	uint32_t version;                    /* SHM_LAYOUT_VERSION */
	uint32_t max_workers;                /* worker slots (fixed) */
	_Atomic uint32_t active_workers;     /* workers meant to run: slots
	                                      * 0..active-1; set by the supervisor */
	uint32_t resv0;
	uint64_t size;                       /* bytes mapped */
	_Atomic uint64_t generation;         /* starts at 1; the supervisor may bump it */
	uint64_t slots_off;
	uint64_t rings_off;
	uint64_t fanout_off;
	/*
	 * client.connection_rate_limit, node-wide: the CLOCK_MONOTONIC second
	 * of the current window in the high 32 bits, upgrades admitted in it in
	 * the low 32.  Workers update it with compare-and-swap (metrics.c).
	 */
	_Atomic uint64_t conn_rate;
} CACHELINE_ALIGNED;

/* Process-local handle (copied into children by fork). */
struct shm;

/*
 * Maps and formats a segment, creates the eventfds.  Returns NULL (after a
 * log line naming the cause) on bad parameters or a failed mmap/eventfd.
 * The caller owns the result and frees it with shm_destroy().
 */
struct shm *shm_create(const struct shm_params *p);

/* Unmaps, closes the eventfds, frees the handle.  NULL is accepted. */
void shm_destroy(struct shm *s);

/*
 * Accessors.  Out-of-range indexes give NULL / -1 with errno EINVAL and a
 * log line, never a crash.
 */
struct ring_shm *shm_fanout(struct shm *s);
struct ring_shm *shm_request(struct shm *s, unsigned worker);
struct ring_shm *shm_reply(struct shm *s, unsigned worker);
/* idx < max_workers: that worker slot; idx == max_workers: the broker's. */
struct proc_slot_shm *shm_slot(struct shm *s, unsigned idx);
int shm_worker_eventfd(struct shm *s, unsigned worker);
int shm_broker_eventfd(struct shm *s);
/* Worker slots in the segment (fixed; the broker's slot index). */
unsigned shm_max_workers(const struct shm *s);
/* Workers meant to run now (acquire load; 0 on a bad handle). */
unsigned shm_active_workers(const struct shm *s);
/*
 * Supervisor only: sets the active count (1..max_workers, release store)
 * before it forks new workers or stops surplus ones.  Returns 0 or -1/EINVAL.
 */
int shm_set_active_workers(struct shm *s, unsigned n);
struct shm_hdr_shm *shm_header(struct shm *s);
size_t shm_size(const struct shm *s);

#endif
