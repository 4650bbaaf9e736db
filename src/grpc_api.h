/*
 * grpc_api.h - the GRPC server API (service
 * centrifugal.centrifugo.api.CentrifugoApi) of a worker: plaintext HTTP/2
 * on the grpc_api listener the supervisor opened, every call run through
 * the HTTP API's implementation (api_call()).
 */
#ifndef CENTRIFUGO_GRPC_API_H
#define CENTRIFUGO_GRPC_API_H

#include <stddef.h>

struct config;
struct event_base;

/* Starts accepting on listen_fd (shared with the other workers) in base.
 * The grpc_api options are read from cfg now (they are restart-only).
 * Returns 0, or -1 after logging. */
int grpc_api_start(struct event_base *base, int listen_fd, const struct config *cfg);
/* Graceful stop: no more accepts; every connection gets GOAWAY and closes
 * once its calls are answered. */
void grpc_api_stop(void);
/* Connections still open. */
size_t grpc_api_conn_count(void);
/* Closes everything (worker exit); calls still waiting for the broker are
 * forgotten. */
void grpc_api_free(void);

#endif
