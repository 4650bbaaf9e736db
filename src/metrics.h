/*
 * metrics.h - node figures for /metrics (Prometheus text format) and the
 * info API, summed over every process from the counters each keeps in its
 * shared-memory slot.  Runs in the workers.
 */
#ifndef CENTRIFUGO_METRICS_H
#define CENTRIFUGO_METRICS_H

#include <stdint.h>

struct buf;

/* Appends the Prometheus exposition of every metric; the node-wide counts
 * kept by the broker are passed in (a MSG_STATS answer), and the names of
 * the server API methods (api_names[i] labels method number i; n at most
 * SHM_API_METHODS; the strings stay the caller's). */
void metrics_write(struct buf *out, uint64_t num_users, uint64_t num_channels,
    const char *const *api_names, unsigned n);
/* Marks the start of this process in its slot (spawn count, pid, time). */
void metrics_started(unsigned slot);
/* Appends a JSON array describing each process (role, pid, figures). */
void metrics_processes_json(struct buf *out);
/* Monotonic microseconds, to time API requests. */
uint64_t metrics_now_us(void);
/* A server API command of method number `method` (< SHM_API_METHODS; others
 * are ignored), in a request that arrived at started_us, was answered. */
void metrics_api_done(unsigned method, uint64_t started_us);

#endif
