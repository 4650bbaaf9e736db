/*
 * metrics.c - Prometheus text exposition (see metrics.h).  Metric names
 * follow Centrifugo's where a metric exists in both; the ring and process
 * figures are ours.
 */
#include <inttypes.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "build-config.h"
#include "heritage.h"
#include "metrics.h"
#include "ring.h"
#include "shm.h"
#include "vmb.h"

uint64_t
metrics_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

void
metrics_api_done(unsigned method, uint64_t started_us)
{
	struct proc_slot_shm *s = shm_slot(heritage.shm, heritage.worker_id);

	if (method >= SHM_API_METHODS)
		return;
	atomic_fetch_add(&s->api_calls[method], 1);
	atomic_fetch_add(&s->api_duration_us[method], metrics_now_us() - started_us);
}

/* Sums one figure over every worker slot: counters keep what workers a
 * reload stopped counted; their gauges are zeroed when they are gone. */
#define METRICS_SUM(field) ({ \
	uint64_t sum_ = 0; \
	for (unsigned w_ = 0; w_ < heritage.max_workers; w_++) \
		sum_ += atomic_load(&shm_slot(heritage.shm, w_)->field); \
	sum_; })

static void
metrics_one(struct buf *b, const char *name, const char *type, const char *help,
    const char *labels, uint64_t value)
{
	buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s%s %" PRIu64 "\n", name, help, name, type,
	    name, labels, value);
}

void
metrics_started(unsigned idx)
{
	struct proc_slot_shm *s = shm_slot(heritage.shm, idx);

	atomic_fetch_add(&s->spawns, 1);
	atomic_store(&s->pid, (int32_t)getpid());
	atomic_store(&s->start_time, (uint64_t)time(NULL));
}

void
metrics_write(struct buf *b, uint64_t num_users, uint64_t num_channels,
    const char *const *api_names, unsigned n)
{
	struct ring_shm *fan = shm_fanout(heritage.shm);
	struct proc_slot_shm *broker = shm_slot(heritage.shm, heritage.max_workers);
	unsigned active = shm_active_workers(heritage.shm);

	metrics_one(b, "centrifugo_node_num_clients", "gauge",
	    "Number of clients connected.", "", METRICS_SUM(connections));
	metrics_one(b, "centrifugo_node_num_subscriptions", "gauge",
	    "Number of subscriptions.", "", METRICS_SUM(subscriptions));
	metrics_one(b, "centrifugo_node_num_users", "gauge",
	    "Number of unique users connected.", "", num_users);
	metrics_one(b, "centrifugo_node_num_channels", "gauge",
	    "Number of channels with one or more subscribers.", "", num_channels);
	metrics_one(b, "centrifugo_node_messages_sent_count", "counter",
	    "Number of publications sent into channels.", "{type=\"publication\"}",
	    (uint64_t)atomic_load(&broker->messages_sent));
	metrics_one(b, "centrifugo_transport_messages_sent", "counter",
	    "Number of publications delivered to clients.", "{transport=\"websocket\"}",
	    METRICS_SUM(messages_sent));
	metrics_one(b, "centrifugo_node_messages_received_count", "counter",
	    "Number of client messages received.", "{type=\"command\"}", METRICS_SUM(messages_received));
	metrics_one(b, "centrifugo_client_connections_accepted", "counter",
	    "Number of connections accepted.", "{transport=\"websocket\"}",
	    METRICS_SUM(connections_accepted));
	metrics_one(b, "centrifugo_transport_messages_sent_size", "counter",
	    "Bytes of client protocol messages sent.", "{transport=\"websocket\"}",
	    METRICS_SUM(bytes_sent));
	metrics_one(b, "centrifugo_transport_messages_received", "counter",
	    "Number of client protocol messages received.", "{transport=\"websocket\"}",
	    METRICS_SUM(messages_received));
	metrics_one(b, "centrifugo_transport_messages_received_size", "counter",
	    "Bytes of client protocol messages received.", "{transport=\"websocket\"}",
	    METRICS_SUM(bytes_received));
	metrics_one(b, "centrifugo_node_client_connection_limit", "counter",
	    "WebSocket upgrades refused (503) by client.connection_limit.", "",
	    METRICS_SUM(conn_limit_refused));
	buf_puts(b, "# HELP centrifugo_api_command_duration_seconds Server API command durations by method.\n"
	    "# TYPE centrifugo_api_command_duration_seconds summary\n");
	for (unsigned i = 0; i < n && i < SHM_API_METHODS; i++) {
		buf_printf(b, "centrifugo_api_command_duration_seconds_sum{protocol=\"http\",method=\"%s\"} %.6f\n"
		    "centrifugo_api_command_duration_seconds_count{protocol=\"http\",method=\"%s\"} %" PRIu64 "\n",
		    api_names[i], (double)METRICS_SUM(api_duration_us[i]) / 1e6,
		    api_names[i], METRICS_SUM(api_calls[i]));
	}
	buf_puts(b, "# HELP centrifugo_node_build Node build information.\n"
	    "# TYPE centrifugo_node_build gauge\n"
	    "centrifugo_node_build{version=\"" CENTRIFUGO_COMPAT_VERSION "\",server=\""
	    PACKAGE_NAME " " PACKAGE_VERSION "\"} 1\n");

	buf_puts(b, "# HELP centrifugo_ring_lag_records Fan-out records a worker has not read yet.\n"
	    "# TYPE centrifugo_ring_lag_records gauge\n");
	for (unsigned w = 0; w < active; w++)
		buf_printf(b, "centrifugo_ring_lag_records{worker=\"%u\"} %" PRIu64 "\n", w,
		    ring_head(fan) - ring_reader_seq(fan, w));
	buf_puts(b, "# HELP centrifugo_ring_overruns_total Times a worker fell a whole fan-out ring behind.\n"
	    "# TYPE centrifugo_ring_overruns_total counter\n");
	for (unsigned w = 0; w < active; w++)
		buf_printf(b, "centrifugo_ring_overruns_total{worker=\"%u\"} %" PRIu64 "\n", w,
		    (uint64_t)atomic_load(&shm_slot(heritage.shm, w)->ring_overruns));
	buf_puts(b, "# HELP centrifugo_process_spawns_total Times a process slot was started.\n"
	    "# TYPE centrifugo_process_spawns_total counter\n");
	for (unsigned i = 0; i <= heritage.max_workers; i++) {
		char label[32];
		if (i >= active && i < heritage.max_workers)
			continue;
		if (i == heritage.max_workers)
			snprintf(label, sizeof(label), "broker");
		else
			snprintf(label, sizeof(label), "worker %u", i);
		buf_printf(b, "centrifugo_process_spawns_total{process=\"%s\"} %u\n", label,
		    (unsigned)atomic_load(&shm_slot(heritage.shm, i)->spawns));
	}
}

void
metrics_processes_json(struct buf *b)
{
	unsigned active = shm_active_workers(heritage.shm);

	/* The active workers, then the broker. */
	buf_putc(b, '[');
	for (unsigned i = 0; i <= heritage.max_workers; i++) {
		struct proc_slot_shm *s = shm_slot(heritage.shm, i);
		if (i >= active && i < heritage.max_workers)
			continue;
		if (i)
			buf_putc(b, ',');
		if (i == heritage.max_workers)
			buf_puts(b, "{\"role\":\"broker\"");
		else
			buf_printf(b, "{\"role\":\"worker\",\"id\":%u", i);
		buf_printf(b, ",\"pid\":%d,\"connections\":%" PRIu64 ",\"subscriptions\":%" PRIu64 "}",
		    (int)atomic_load(&s->pid), (uint64_t)atomic_load(&s->connections),
		    (uint64_t)atomic_load(&s->subscriptions));
	}
	buf_putc(b, ']');
}
