/*
 * api.h - the HTTP side of a worker: the server API (per-method
 * POST /api/<method> and the legacy multi-command POST /api) and /health.
 */
#ifndef CENTRIFUGO_API_H
#define CENTRIFUGO_API_H

#include <stddef.h>

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

/*
 * The server API for another front end (grpc_api.c): runs method `name`
 * (as in POST /api/<name>, "batch" included) with params, one JSON object
 * (params[0..len), read during the call only).  done(arg, json, len) is
 * called exactly once, maybe before api_call() returns, with the answer as
 * the per-method HTTP API writes it in the default error mode:
 * {"result":{..}} or {"error":{"code":..,"message":..}}, and for batch
 * {"replies":[..]}; json is valid during the call only.  Publication data
 * that is not JSON appears as "b64data" (base64) in history results.
 * Params that do not decode answer error 107.  Returns 0, or -1 (done not
 * called) for an unknown method name.  Worker processes only.
 */
typedef void (*api_done_fn)(void *arg, const char *json, size_t len);
int api_call(const char *name, const char *params, size_t len, api_done_fn done, void *arg);

#endif
