/*
 * api.h - the HTTP side of a worker: the server API (per-method
 * POST /api/<method> and the legacy multi-command POST /api) and /health.
 */
#ifndef CENTRIFUGO_API_H
#define CENTRIFUGO_API_H

struct config;
struct http_req;

/* Once per worker. */
void api_init(const struct config *cfg);
/* Reload: later requests use cfg. */
void api_reconfigure(const struct config *cfg);
/* Which listener a request came in on (config.md §1.6). */
enum api_listener {
	API_LISTENER_MAIN = 0,     /* the only one: serves everything */
	API_LISTENER_EXTERNAL,     /* http_server.port beside a separate internal one */
	API_LISTENER_INTERNAL      /* http_server.internal_port */
};

/* Answers one HTTP request (now, or later once the broker replied). */
void api_handle(struct http_req *r, enum api_listener where);

#endif
