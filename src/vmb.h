/*
 * vmb.h - memory barriers and atomics for everything that lives in shared
 * memory.  This is the only header that includes <stdatomic.h>: the rings
 * (ring.c), the segment (shm.c) and anyone touching a proc_slot_shm counter
 * go through these macros, so the memory-ordering choices are visible in one
 * place.  Used by every process.
 *
 * Shared-memory fields are declared `_Atomic uint64_t` / `_Atomic uint32_t`;
 * they must be lock-free (checked at compile time below) because the same
 * word is touched by several processes.
 */
#ifndef CENTRIFUGO_VMB_H
#define CENTRIFUGO_VMB_H

#include <stdatomic.h>
#include <stdint.h>

/* Cache-line size on every platform we run on (x86-64, arm64). */
#define CACHELINE 64
#define CACHELINE_ALIGNED __attribute__((aligned(CACHELINE)))

_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "64-bit atomics must be lock-free for shared memory");
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "32-bit atomics must be lock-free for shared memory");

/* Plain loads and stores with an explicit ordering. */
#define VMB_LOAD(p) atomic_load_explicit((p), memory_order_relaxed)
#define VMB_LOAD_ACQ(p) atomic_load_explicit((p), memory_order_acquire)
#define VMB_STORE(p, v) atomic_store_explicit((p), (v), memory_order_relaxed)
#define VMB_STORE_REL(p, v) atomic_store_explicit((p), (v), memory_order_release)

/* Read-modify-write. */
#define VMB_XCHG(p, v) atomic_exchange_explicit((p), (v), memory_order_acq_rel)
#define VMB_ADD(p, v) atomic_fetch_add_explicit((p), (v), memory_order_relaxed)
#define VMB_SUB(p, v) atomic_fetch_sub_explicit((p), (v), memory_order_relaxed)

/*
 * Fences.  VMB_WMB: earlier stores are visible before later stores (writer
 * side of a seqlock).  VMB_RMB: earlier loads complete before later loads
 * (reader side).  VMB_MB: full barrier, store->load ordering included (the
 * "I am going to sleep" / "I published" handshake needs it).
 */
#define VMB_WMB() atomic_thread_fence(memory_order_release)
#define VMB_RMB() atomic_thread_fence(memory_order_acquire)
#define VMB_MB() atomic_thread_fence(memory_order_seq_cst)

/* Keeps the compiler from caching or reordering memory accesses. */
#define VMB_COMPILER() atomic_signal_fence(memory_order_seq_cst)

#endif
