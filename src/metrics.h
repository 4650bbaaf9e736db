/*
 * metrics.h - node figures for /metrics (Prometheus text format) and the
 * info API, summed over every process from the counters each keeps in its
 * shared-memory slot.  Runs in the workers.
 */
#ifndef CENTRIFUGO_METRICS_H
#define CENTRIFUGO_METRICS_H

#include <stdint.h>

struct buf;

/* Appends the Prometheus exposition of every metric. */
void metrics_write(struct buf *out);
/* Appends a JSON array describing each process (role, pid, figures). */
void metrics_processes_json(struct buf *out);
/* Counts one server API request of this worker. */
void metrics_api_call(void);
/* Monotonic microseconds, to time API requests. */
uint64_t metrics_now_us(void);
/* An API request that started at started_us was answered. */
void metrics_api_done(uint64_t started_us);

#endif
