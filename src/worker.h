/*
 * worker.h - a worker process: owns client connections (WebSocket and HTTP)
 * on its own event loop, reads the fan-out ring and talks to the broker
 * through its request/reply rings.  The calls below are for the modules
 * that run inside a worker (client.c, api.c, hub.c).
 */
#ifndef CENTRIFUGO_WORKER_H
#define CENTRIFUGO_WORKER_H

#include <stdint.h>

struct config;
struct hub;
struct loop;
struct msg;
struct wheel;

/* Runs the worker in the child after fork (heritage filled); returns the
 * process exit status. */
int worker_main(void);

/* Called with the broker's answer, or with reply NULL when none came in
 * time (broker restarted or overloaded): the caller answers "internal
 * error".  reply and its strings live only during the call. */
typedef void (*worker_reply_fn)(void *arg, const struct msg *reply);

/*
 * Sends a request record to the broker; assigns req->req_id.  fn(arg, ...)
 * is called exactly once, later, never from inside this call.
 */
void worker_request(struct msg *req, worker_reply_fn fn, void *arg);

/* Sends a record that needs no answer (presence changes, leave). */
void worker_send(const struct msg *m);

/*
 * Sends a bookkeeping record (a subscriber or a connection more or less)
 * without waking the broker for it: the broker reads it with the next
 * record that wakes it, at the latest some milliseconds later.  Its
 * queries that read those counts (channels, info) first read every ring
 * up to where it ended, so nothing a client was already told is missing.
 */
void worker_note(const struct msg *m);

struct wheel *worker_wheel(void);
struct hub *worker_hub(void);
struct loop *worker_loop(void);
const struct config *worker_config(void);
/* True once a graceful stop began: new connections are refused. */
int worker_stopping(void);

#endif
