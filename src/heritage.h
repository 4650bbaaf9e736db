/*
 * heritage.h - everything a child process inherits from the supervisor
 * across fork(): the parsed configuration, the shared-memory segment (with
 * its rings and eventfds), the listening sockets and the child's identity.
 * The supervisor fills it before forking; children only read it.
 */
#ifndef CENTRIFUGO_HERITAGE_H
#define CENTRIFUGO_HERITAGE_H

struct config;
struct shm;

enum heritage_role {
	ROLE_SUPERVISOR = 0,
	ROLE_WORKER,
	ROLE_BROKER
};

struct heritage {
	struct config *cfg;       /* parsed configuration (copy-on-write copy) */
	struct shm *shm;          /* shared segment, mapped before fork */
	int listen_fd;            /* http_server.address:port, already listening */
	int internal_fd;          /* http_server.internal_port when separate, else -1 */
	int grpc_fd;              /* grpc_api listener (shared by every worker), or -1 */
	unsigned max_workers;     /* worker slots in the shared memory (fixed; the
	                           * broker's slot index); how many run now is
	                           * shm_active_workers(), a reload may change it */
	enum heritage_role role;  /* what this process is */
	unsigned worker_id;       /* 0..max_workers-1 when role == ROLE_WORKER */
	int ipc_fd;               /* child's end of its socketpair to the supervisor */
	unsigned generation;      /* how many times this slot was (re)spawned */
};

extern struct heritage heritage;

#endif
