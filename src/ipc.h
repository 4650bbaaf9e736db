/*
 * ipc.h - the command channel between the supervisor and each child.
 *
 * One AF_UNIX SOCK_SEQPACKET socketpair per child, made by the supervisor
 * before fork: the supervisor keeps end 0, the child end 1
 * (heritage.ipc_fd).  SEQPACKET keeps message boundaries, so one send() is
 * one message and a reader never sees half of one.  End of file on either
 * side means the other process is gone: the supervisor learns that a child
 * died (SIGCHLD tells it how), a child learns that the supervisor died and
 * stops.
 *
 * A message is a fixed header (type, payload length) followed by at most
 * IPC_PAYLOAD_MAX bytes of payload whose format belongs to the type.  New
 * types (stats, reload commands) are added at the end of enum ipc_type;
 * a receiver ignores types it does not know.
 */
#ifndef CENTRIFUGO_IPC_H
#define CENTRIFUGO_IPC_H

#include <stddef.h>
#include <stdint.h>

struct event_base;

enum ipc_type {
	IPC_NONE = 0,
	IPC_READY,      /* child -> supervisor: initialised, serving; no payload */
	IPC_RELOAD,     /* supervisor -> child: struct ipc_reload + config path */
	IPC_RELOAD_DONE, /* child -> supervisor: struct ipc_reload_done + errors */
	IPC_TYPE_COUNT
};

/* Name of a message type for logs ("ready", ...; "unknown" if out of range). */
const char *ipc_type_name(uint32_t type);

#define IPC_PAYLOAD_MAX 4096

struct ipc_hdr {
	uint32_t type;          /* enum ipc_type */
	uint32_t len;           /* payload bytes that follow, <= IPC_PAYLOAD_MAX */
};

struct ipc_msg {
	struct ipc_hdr hdr;
	char payload[IPC_PAYLOAD_MAX];
};

/*
 * IPC_RELOAD payload: this header, then the configuration file path
 * (len - sizeof(struct ipc_reload) bytes, no NUL; empty = no file, defaults
 * and environment only).  The child loads and applies the file and answers
 * with IPC_RELOAD_DONE carrying the same seq.
 */
struct ipc_reload {
	uint32_t seq;
};

/*
 * IPC_RELOAD_DONE payload: this header, then (status -1 only) the errors,
 * one per line, no NUL.
 */
struct ipc_reload_done {
	uint32_t seq;
	int32_t status;         /* 0 applied, -1 nothing changed */
};

/*
 * Creates a connected pair: fds[0] for the supervisor (non-blocking),
 * fds[1] for the child (blocking).  Both are close-on-exec.  Returns 0, or
 * -1 with errno set (nothing is left open).
 */
int ipc_pair(int fds[2]);

/*
 * Sends one message of `type` with `len` bytes of payload (payload may be
 * NULL when len is 0).  Never raises SIGPIPE.  Returns 0; -1 with errno set
 * (EMSGSIZE if len > IPC_PAYLOAD_MAX, EAGAIN if a non-blocking socket is
 * full, EPIPE if the peer is gone).
 */
int ipc_send(int fd, uint32_t type, const void *payload, size_t len);

/*
 * Receives one message into *msg.  Returns 1 when a message was read, 0 on
 * end of file (peer gone), -1 on error with errno set (EAGAIN: nothing to
 * read on a non-blocking socket; EBADMSG: malformed message, which was
 * dropped).
 */
int ipc_recv(int fd, struct ipc_msg *msg);

/*
 * Child side.  Tells the supervisor that this child finished initialising
 * (listening, rings attached); the supervisor then stops throttling its
 * respawn.  Call once from worker_main()/broker_main().  Returns 0 or -1
 * (logged here).
 */
int ipc_child_ready(void);

/*
 * Child side.  Watches heritage.ipc_fd on `base`: when the supervisor goes
 * away (end of file) it logs it and calls on_eof(arg), or, when on_eof is
 * NULL, event_base_loopbreak(base) so the child's loop returns and the
 * child exits.  Messages from the supervisor of types the child does not
 * handle are ignored.  Call once, after the base exists; returns 0, or -1
 * (logged) if the event could not be added.  The event belongs to this
 * module: call ipc_child_unwatch() before event_base_free(base).
 */
int ipc_child_watch(struct event_base *base, void (*on_eof)(void *arg),
    void *arg);

/* The same as ipc_child_watch() (both names are in use). */
int ipc_child_watch_cb(struct event_base *base, void (*on_eof)(void *arg),
    void *arg);

/* Removes and frees the watch event; safe to call when none is set. */
void ipc_child_unwatch(void);

/*
 * Child side.  Called for each message of `type` the supervisor sends once
 * ipc_child_watch() runs; msg lives only during the call.
 */
typedef void (*ipc_handler_fn)(const struct ipc_msg *msg, void *arg);

/*
 * Child side.  Routes messages of `type` (IPC_NONE < type < IPC_TYPE_COUNT)
 * to fn(msg, arg); fn NULL drops the route.  Without a route a message is
 * ignored (logged at debug level).  Returns 0, or -1/EINVAL for a bad type.
 */
int ipc_child_handle(uint32_t type, ipc_handler_fn fn, void *arg);

#endif
