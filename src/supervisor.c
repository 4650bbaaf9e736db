/*
 * supervisor.c - the supervisor process (see DESIGN.md "Processes").
 *
 * Runs in the process main() started.  It opens the listening socket and
 * the shared memory before any fork so every child, first or respawned,
 * inherits them; then it forks the broker and the workers and sits in a
 * libevent loop that only reacts to signals (delivered by evsignal, never
 * handled inside a signal handler), to READY messages on the ipc channels
 * and to timers.  It never touches client traffic.
 *
 * Respawn policy (postfix master_spawn.c, nginx ngx_process.c):
 *  - a child that exits with SUP_EXIT_FATAL can never work: it is not
 *    respawned; if it is the broker, or it was the last worker, the server
 *    stops with that status;
 *  - a child that died before READY, or less than SUP_QUICK_MS after it
 *    started, failed "quickly": each quick failure in a row doubles its
 *    respawn delay, from SUP_BACKOFF_MIN_MS up to SUP_BACKOFF_MAX_MS;
 *  - a child that was READY and ran longer is respawned at once and its
 *    count of failures starts again from zero.
 *
 * Stop (SIGTERM/SIGINT): no more respawns; SIGTERM to the workers (they
 * send their clients the shutdown disconnect and exit), SIGKILL to those
 * still there after min(shutdown.timeout, SUP_WORKER_STOP_CAP_MS); then
 * the same for the broker, capped at SUP_BROKER_STOP_MS; then the pid file,
 * shared memory and socket go and sup_run() returns.
 *
 * Reload (SIGHUP or the control socket's `reload`, ctl.c): reload_load()
 * validates the file first, so an invalid one changes nothing and its
 * errors go back to whoever asked.  A valid one becomes the supervisor's
 * (and heritage.cfg, for children forked from now on), then every child
 * gets IPC_RELOAD with the path; each worker loads the same file, swaps
 * its configuration without touching its connections and answers
 * IPC_RELOAD_DONE.  The reply is sent once every worker answered (or
 * SUP_RELOAD_TIMEOUT_MS passed).  Restart-only options keep their running
 * values everywhere and are listed in the reply.
 *
 * A new worker count (issue 5): the shared memory has sup.max_workers
 * worker slots, made at start (sup_max_workers()); a count above it is
 * refused like an invalid file.  More workers: their SO_REUSEPORT
 * listeners are opened first (a failure fails the reload), the active
 * count in the segment header is raised, the broker's eventfd written (so
 * it reads the new request rings) and the new workers forked; the reload
 * is answered once they are READY.  Fewer: the count is lowered, the
 * surplus workers get SIGTERM as on a stop (their clients get 3001 and
 * reconnect to the others; the broker drops their presence as for a dead
 * worker) and are never respawned; when one is gone its listener closes
 * and its gauges in the segment are zeroed, and the reload is answered
 * once all are gone (SIGKILL at SUP_RELOAD_TIMEOUT_MS).  The other workers
 * keep running and get IPC_RELOAD as usual.  A count and listener change
 * in one reload is refused (do one, then the other).
 *
 * New listener options (http_server.address/port/internal_address/
 * internal_port, unless the command line set them): the new sockets are
 * opened first (a failure fails the reload, nothing changes), then the
 * workers are restarted one at a time on them instead of getting
 * IPC_RELOAD: SIGTERM (clients get the 3001 shutdown disconnect and
 * reconnect to the others), wait for the exit (SIGKILL after the stop
 * budget), fork the replacement with the new socket and configuration,
 * wait for its READY (at most SUP_RELOAD_TIMEOUT_MS), next worker.  The
 * supervisor's copy of each old socket is closed once its worker is gone;
 * children keep only their own listener, so a closed socket really closes.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "broker.h"
#include "buf.h"
#include "build-config.h"
#include "config.h"
#include "ctl.h"
#include "heritage.h"
#include "ipc.h"
#include "json.h"
#include "log.h"
#include "proctitle.h"
#include "reload.h"
#include "ring.h"
#include "sdnotify.h"
#include "shm.h"
#include "supervisor.h"
#include "worker.h"
#include "xmalloc.h"

#define SUP_LISTEN_BACKLOG 1024
#define SUP_BACKOFF_MIN_MS 250
#define SUP_BACKOFF_MAX_MS 5000
#define SUP_QUICK_MS 10000
#define SUP_WORKER_STOP_CAP_MS 10000
#define SUP_BROKER_STOP_MS 5000
#define SUP_FANOUT_BYTES ((size_t)16 << 20)
#define SUP_REQUEST_BYTES ((size_t)1 << 20)
#define SUP_REPLY_BYTES ((size_t)1 << 20)
#define SUP_RELOAD_TIMEOUT_MS 10000
#define SUP_CTL_SOCKET_MODE 0660
#define SUP_MIN_WORKER_SLOTS 16

/* What every child inherits; filled here before each fork. */
struct heritage heritage;

enum sup_child_state {
	SUP_CHILD_DOWN = 0,     /* not running; a respawn may be pending */
	SUP_CHILD_STARTING,     /* forked, no READY yet */
	SUP_CHILD_READY,        /* sent READY */
	SUP_CHILD_FATAL         /* exited SUP_EXIT_FATAL: never respawned */
};

static const char *const sup_child_state_names[] = {
	[SUP_CHILD_DOWN] = "down",
	[SUP_CHILD_STARTING] = "starting",
	[SUP_CHILD_READY] = "ready",
	[SUP_CHILD_FATAL] = "fatal",
};

struct sup_child {
	enum heritage_role role;
	unsigned worker_id;         /* ROLE_WORKER only */
	char name[24];              /* "worker 3", "broker": logs and role */
	enum sup_child_state state;
	pid_t pid;                  /* 0 when not running */
	int ipc_fd;                 /* our end of the pair, -1 when closed */
	struct event *ipc_ev;       /* read event on ipc_fd, or NULL */
	struct event *respawn_ev;   /* timer, always allocated */
	unsigned generation;        /* forks of this slot so far */
	unsigned failures;          /* quick failures in a row */
	struct timespec started;    /* CLOCK_MONOTONIC at fork */
	int reload_pending;         /* got IPC_RELOAD, no answer yet */
	int resize_pending;         /* a reload waits for its READY (new
	                             * worker) or its exit (retiring one) */
	int retiring;               /* stopped by a reload lowering the worker
	                             * count: not respawned */
};

enum sup_phase {
	SUP_RUNNING = 0,
	SUP_STOP_WORKERS,           /* workers got SIGTERM, waiting for them */
	SUP_STOP_BROKER,            /* broker got SIGTERM, waiting for it */
	SUP_DONE
};

static const char *const sup_phase_names[] = {
	[SUP_RUNNING] = "running",
	[SUP_STOP_WORKERS] = "stopping workers",
	[SUP_STOP_BROKER] = "stopping broker",
	[SUP_DONE] = "done",
};

/*
 * The supervisor's state; one per process.  children[0..max_workers-1] are
 * the worker slots, of which 0..nworkers-1 are meant to run (a reload
 * stopping surplus workers may leave some above still running for a
 * while), children[max_workers] the broker (the same index shm_slot()
 * uses).
 */
static struct {
	struct config *cfg;
	const char *config_path;
	struct event_base *base;
	struct sup_child *children;
	unsigned nworkers;          /* workers meant to run (the config's) */
	unsigned max_workers;       /* worker slots in the shared memory */
	enum sup_phase phase;
	int exit_status;
	struct event *sig_ev[5];
	struct event *stop_ev;
	int listen_fd;              /* worker 0's listener */
	int *listen_fds;            /* one per worker slot (SO_REUSEPORT), -1
	                             * for slots not in use */
	int internal_fd;            /* separate internal listener, or -1 */
	int grpc_fd;                /* grpc_api listener, or -1: opened once at
	                             * start, every worker accepts on it */
	struct shm *shm;
	const char *pid_file;       /* set once written */
	pid_t pid;
	int notified_ready;         /* systemd got READY=1 */
	struct timespec started;    /* CLOCK_MONOTONIC at sup_run() */
	/* Configurations made by reloads (the last one is sup.cfg): never
	 * freed while children may run, since they were handed out through
	 * heritage.cfg; freed by sup_cleanup().  The first config is the
	 * caller's. */
	struct config **reloaded;
	size_t nreloaded;
	/* The reload in progress, if any. */
	struct {
		int active;
		uint32_t seq;
		struct ctl_conn *conn;  /* who asked; NULL for SIGHUP */
		unsigned waiting;       /* workers yet to answer */
		int failed;
		struct buf report;      /* per-worker problems, one a line */
		struct buf restart;     /* restart-only options that differ */
		struct event *timeout_ev;
	} reload;
	/* The listener options came from the command line (they differ from
	 * the file's): a reload keeps them rather than take the file's. */
	int cli_listeners;
	/* Workers restarted one at a time onto new listeners (a reload that
	 * changed them; see sup_roll_step()). */
	struct {
		int active;
		unsigned next;          /* worker slot being restarted */
		int starting;           /* 0: waiting for its exit; 1: for READY */
		pid_t old_pid;          /* the process being stopped */
		unsigned restarted;     /* workers that came back READY */
		int *old_fds;           /* listeners before the reload */
		int old_internal;       /* internal listener before, or -1 */
		struct event *timer_ev; /* stop budget, then READY wait */
	} roll;
} sup;

static struct sup_child *
sup_broker(void)
{
	return &sup.children[sup.max_workers];
}

/*
 * Worker slots to make in the shared memory for a server started with n
 * workers: room for a reload to raise the count without a restart, i.e.
 * max(n, 2 x online CPUs, SUP_MIN_WORKER_SLOTS), at most SHM_MAX_WORKERS
 * (n itself if larger: shm_create() then refuses it).  Unused slots cost
 * two ring-header pages each (shm.h).
 */
static unsigned
sup_max_workers(unsigned n)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned m = SUP_MIN_WORKER_SLOTS;

	if (cpus > 0 && (unsigned long)cpus * 2 > m)
		m = (unsigned)cpus * 2 > SHM_MAX_WORKERS ? SHM_MAX_WORKERS :
		    (unsigned)cpus * 2;
	if (m > SHM_MAX_WORKERS)
		m = SHM_MAX_WORKERS;
	return n > m ? n : m;
}

static long
sup_ms_since(const struct timespec *t)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (long)(now.tv_sec - t->tv_sec) * 1000 +
	    (now.tv_nsec - t->tv_nsec) / 1000000;
}

static void
sup_ms_to_tv(long ms, struct timeval *tv)
{
	tv->tv_sec = ms / 1000;
	tv->tv_usec = (ms % 1000) * 1000;
}

/* "SIGKILL", or "signal 42" for one without a name. */
static const char *
sup_signame(int sig, char *tmp, size_t cap)
{
	const char *abbrev = sigabbrev_np(sig);

	if (abbrev != NULL)
		snprintf(tmp, cap, "SIG%s", abbrev);
	else
		snprintf(tmp, cap, "signal %d", sig);
	return tmp;
}

/* ---- listening socket and pid file ---- */

/* "1.2.3.4:8000" or "[::1]:8000" into out. */
static void
sup_format_addr(char *out, size_t cap, const char *host, int64_t port)
{
	if (strchr(host, ':') != NULL)
		snprintf(out, cap, "[%s]:%lld", host, (long long)port);
	else
		snprintf(out, cap, "%s:%lld", host, (long long)port);
}

/*
 * Reports a listener error: appended to err as a line when err is not NULL
 * (the caller logs and forwards it), else logged.
 */
static void __attribute__((format(printf, 2, 3)))
sup_listen_error(struct buf *err, const char *fmt, ...)
{
	char text[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (err != NULL)
		buf_printf(err, "%s\n", text);
	else
		log_error("%s", text);
}

/*
 * Opens a non-blocking listening socket on address:port.  With reuseport,
 * SO_REUSEPORT is set so that several sockets (one per worker) share the
 * port and the kernel spreads new connections over them; *bound (if not
 * NULL) gets the port actually bound (port 0 picks one).  Returns the fd,
 * or -1 with why (naming address:port) appended to err, or logged when err
 * is NULL.
 */
static int
sup_listen(const char *address, int64_t port, int reuseport, int64_t *bound,
    struct buf *err_out)
{
	struct addrinfo hints, *res, *ai;
	const char *host = address[0] != '\0' ? address : "0.0.0.0";
	char where[300], service[16];
	const char *call = "socket";
	int fd = -1, err = 0, rc, one = 1;

	sup_format_addr(where, sizeof(where), host, port);
	if (port < 0 || port > 65535) {
		sup_listen_error(err_out, "cannot listen on %s: port out of "
		    "range 0..65535", where);
		return -1;
	}
	snprintf(service, sizeof(service), "%lld", (long long)port);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	rc = getaddrinfo(host, service, &hints, &res);
	if (rc != 0) {
		sup_listen_error(err_out, "cannot listen on %s: getaddrinfo() "
		    "failed: %s", where, gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK,
		    ai->ai_protocol);
		if (fd == -1) {
			call = "socket";
			err = errno;
			continue;
		}
		if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one,
		    sizeof(one)) == -1) {
			call = "setsockopt(SO_REUSEADDR)";
		} else if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one,
		    sizeof(one)) == -1) {
			call = "setsockopt(SO_REUSEPORT)";
		} else if (bind(fd, ai->ai_addr, ai->ai_addrlen) == -1) {
			call = "bind";
		} else if (listen(fd, SUP_LISTEN_BACKLOG) == -1) {
			call = "listen";
		} else {
			break;
		}
		err = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd == -1) {
		sup_listen_error(err_out, "cannot listen on %s: %s() failed: %s",
		    where, call, strerror(err));
		return -1;
	}
	if (bound != NULL) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		*bound = port;
		if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
			*bound = ntohs(ss.ss_family == AF_INET6 ?
			    ((struct sockaddr_in6 *)&ss)->sin6_port :
			    ((struct sockaddr_in *)&ss)->sin_port);
	}
	if (!reuseport || bound != NULL)
		log_info("listening on %s", where);
	return fd;
}

/*
 * Where cfg wants the separate internal listener: 1 with *addr and *port
 * set, or 0 when there is none (no internal_port, or it resolves to the
 * main listener).
 */
static int
sup_internal_where(const struct config *cfg, const char **addr,
    int64_t *port)
{
	if (cfg->http_server_internal_port[0] == '\0')
		return 0;
	*addr = cfg->http_server_internal_address[0] != '\0' ?
	    cfg->http_server_internal_address : cfg->http_server_address;
	*port = strtoll(cfg->http_server_internal_port, NULL, 10);
	return *port != cfg->http_server_port ||
	    strcmp(*addr, cfg->http_server_address) != 0;
}

/*
 * Opens the listeners cfg asks for: `n` SO_REUSEPORT sockets on
 * http_server.address:port into fds[0..n-1] (one per worker: the kernel
 * spreads new connections over the workers evenly instead of letting the
 * first awake worker take a whole burst) and the separate internal
 * listener (config.md 1.6), or -1, into *internal.
 * With `old` (a reload; NULL at start), a listener whose address and port
 * are the same in old and cfg is not opened again but shared: fds[] gets
 * old_fds[] (or *internal gets old_internal), since a second socket could
 * not bind it.  Returns 0, or -1 with every socket it opened closed and the
 * reason appended to err (NULL: logged).
 */
static int
sup_listeners_open(const struct config *cfg, unsigned n,
    const struct config *old, const int *old_fds, int old_internal,
    int *fds, int *internal, struct buf *err)
{
	const char *addr, *oaddr;
	int64_t port = cfg->http_server_port, oport;
	int keep_main = old != NULL && port != 0 &&
	    port == old->http_server_port &&
	    strcmp(cfg->http_server_address, old->http_server_address) == 0;
	unsigned i;

	*internal = -1;
	for (i = 0; i < n; i++)
		fds[i] = -1;
	if (!keep_main) {
		/* A plain bind first: with SO_REUSEPORT alone a second server
		 * started by the same user would silently share the port. */
		int probe = sup_listen(cfg->http_server_address, port, 0, &port, err);
		if (probe == -1)
			return -1;
		close(probe);
	}
	for (i = 0; i < n; i++) {
		fds[i] = keep_main ? old_fds[i] :
		    sup_listen(cfg->http_server_address, port, 1,
		    i == 0 ? &port : NULL, err);
		if (fds[i] == -1)
			goto fail;
	}
	if (sup_internal_where(cfg, &addr, &port)) {
		if (old != NULL && old_internal != -1 && port != 0 &&
		    sup_internal_where(old, &oaddr, &oport) &&
		    oport == port && strcmp(oaddr, addr) == 0)
			*internal = old_internal;
		else
			*internal = sup_listen(addr, port, 0, NULL, err);
		if (*internal == -1)
			goto fail;
	}
	return 0;
fail:
	for (i = 0; i < n && !keep_main; i++) {
		if (fds[i] != -1)
			close(fds[i]);
	}
	for (i = 0; i < n; i++)
		fds[i] = -1;
	*internal = -1;
	return -1;
}

/*
 * 1 when the listener options of cfg are not those of the file (and
 * environment) at config_path: command-line options set them, and a reload
 * must not move the listeners back to the file's.  0 otherwise.
 */
static int
sup_cli_listeners(const struct config *cfg, const char *config_path)
{
	struct buf errors = BUF_INIT;
	struct config *f;
	int differ;

	f = reload_load_ex(config_path, cfg, &errors, NULL, RELOAD_LISTENERS);
	buf_free(&errors);
	if (f == NULL)
		return 1;
	differ = reload_listeners_differ(cfg, f);
	config_free(f);
	if (differ)
		log_info("listener options from the command line: a reload "
		    "keeps them");
	return differ;
}

/* Writes our pid to path.  Returns 0, or -1 after logging. */
static int
sup_write_pid_file(const char *path)
{
	char text[32];
	int fd, n;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd == -1) {
		log_error("cannot write pid file %s: open() failed: %s", path,
		    strerror(errno));
		return -1;
	}
	n = snprintf(text, sizeof(text), "%ld\n", (long)getpid());
	if (write(fd, text, (size_t)n) != n) {
		log_error("cannot write pid file %s: write() failed: %s", path,
		    errno != 0 ? strerror(errno) : "short write");
		close(fd);
		unlink(path);
		return -1;
	}
	if (close(fd) == -1) {
		log_error("cannot write pid file %s: close() failed: %s", path,
		    strerror(errno));
		unlink(path);
		return -1;
	}
	return 0;
}

/* ---- children ---- */

static void sup_on_ipc(evutil_socket_t fd, short what, void *arg);
static void sup_schedule_respawn(struct sup_child *c);
static void sup_reload_answer(struct sup_child *c, const struct ipc_msg *msg);
static void sup_reload_child_gone(struct sup_child *c);
static void sup_roll_ready(struct sup_child *c);
static void sup_roll_exited(struct sup_child *c);
static void sup_roll_lost(struct sup_child *c);
static void sup_roll_abort(const char *why);
static void sup_resize_done(struct sup_child *c, const char *what);
static void sup_retire_gone(struct sup_child *c);

static void
sup_close_ipc(struct sup_child *c)
{
	if (c->ipc_ev != NULL)
		event_free(c->ipc_ev);
	c->ipc_ev = NULL;
	if (c->ipc_fd != -1)
		close(c->ipc_fd);
	c->ipc_fd = -1;
}

/*
 * In the new child: closes every listening socket c does not accept on
 * (the other workers', those a reload is replacing; all of them in the
 * broker), so that a socket the supervisor closes is really closed and no
 * connection waits in the backlog of a socket nobody accepts on.
 */
static void
sup_child_close_listeners(const struct sup_child *c)
{
	int mine = c->role == ROLE_WORKER ? sup.listen_fds[c->worker_id] : -1;
	int internal = c->role == ROLE_WORKER ? sup.internal_fd : -1;

	for (unsigned i = 0; i < sup.max_workers; i++) {
		if (sup.listen_fds[i] != -1 && sup.listen_fds[i] != mine)
			close(sup.listen_fds[i]);
		if (sup.roll.old_fds != NULL && sup.roll.old_fds[i] != -1 &&
		    sup.roll.old_fds[i] != sup.listen_fds[i])
			close(sup.roll.old_fds[i]);
	}
	if (sup.internal_fd != -1 && sup.internal_fd != internal)
		close(sup.internal_fd);
	if (sup.roll.old_internal != -1 &&
	    sup.roll.old_internal != sup.internal_fd)
		close(sup.roll.old_internal);
	if (c->role != ROLE_WORKER && sup.grpc_fd != -1)
		close(sup.grpc_fd);
}

/*
 * The soft limit on open files a worker runs with: worker_rlimit_nofile,
 * capped by the hard limit.  libwebsockets sizes its descriptor table by
 * it and scans the whole table on every closed connection, so a high
 * inherited limit (the unit's LimitNOFILE=1048576) is lowered, not kept.
 */
static rlim_t
sup_worker_nofile(const struct config *cfg, rlim_t hard)
{
	rlim_t want = (rlim_t)cfg->worker_rlimit_nofile;

	return hard != RLIM_INFINITY && want > hard ? hard : want;
}

/* At start: say once when the hard limit caps worker_rlimit_nofile. */
static void
sup_check_nofile(const struct config *cfg)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
		return;
	if (sup_worker_nofile(cfg, rl.rlim_max) <
	    (rlim_t)cfg->worker_rlimit_nofile)
		log_info("worker_rlimit_nofile %lld is above the hard limit "
		    "on open files (%llu): workers run with %llu (raise "
		    "LimitNOFILE or ulimit -Hn)",
		    (long long)cfg->worker_rlimit_nofile,
		    (unsigned long long)rl.rlim_max,
		    (unsigned long long)rl.rlim_max);
}

/* In a new worker, before libwebsockets sizes its tables. */
static void
sup_child_set_nofile(const struct config *cfg)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
		return;
	rl.rlim_cur = sup_worker_nofile(cfg, rl.rlim_max);
	if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
		log_warn("setrlimit(RLIMIT_NOFILE, %llu) failed: %s",
		    (unsigned long long)rl.rlim_cur, strerror(errno));
}

/*
 * In the new child, right after fork: drop everything that belongs to the
 * supervisor, become `c` and run its main function.  Never returns.
 */
static void __attribute__((noreturn))
sup_child_main(struct sup_child *c, const int fds[2])
{
	struct sigaction sa;
	sigset_t none;
	char title[64], comm[16];
	int status;

	/*
	 * The epoll instance and the signal pipe are shared with the
	 * supervisor until event_reinit() gives this process its own;
	 * freeing the base before that would remove the supervisor's
	 * registrations.  Freeing it also hands libevent's signal
	 * handling back, so the child's own loop can take it.
	 */
	if (event_reinit(sup.base) == -1)
		log_warn("event_reinit() failed in the new child");
	event_base_free(sup.base);
	sup.base = NULL;
	/* The supervisor's channel ends, ours and the other children's:
	 * holding one would hide the supervisor's death from its peer. */
	close(fds[0]);
	for (unsigned i = 0; i <= sup.max_workers; i++) {
		if (sup.children[i].ipc_fd != -1)
			close(sup.children[i].ipc_fd);
	}
	ctl_close_in_child();
	sup_child_close_listeners(c);
	/* Default dispositions, but keep SIGPIPE ignored: every child
	 * writes to sockets whose peers may be gone. */
	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	for (int s = 1; s < NSIG; s++) {
		if (s == SIGKILL || s == SIGSTOP)
			continue;
		sa.sa_handler = s == SIGPIPE ? SIG_IGN : SIG_DFL;
		sigaction(s, &sa, NULL); /* EINVAL for libc-reserved ones */
	}
	/* Signals were blocked across fork; SIGTERM from the supervisor's
	 * death must come even if the supervisor died before prctl(). */
	if (prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0) == -1)
		log_warn("prctl(PR_SET_PDEATHSIG) failed: %s", strerror(errno));
	if (getppid() != sup.pid)
		_exit(0);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);

	heritage.role = c->role;
	heritage.worker_id = c->worker_id;
	if (c->role == ROLE_WORKER) {
		sup_child_set_nofile(sup.cfg);
		heritage.listen_fd = sup.listen_fds[c->worker_id];
	} else {
		heritage.listen_fd = -1;
		heritage.internal_fd = -1;
		heritage.grpc_fd = -1;
	}
	heritage.ipc_fd = fds[1];
	heritage.generation = c->generation;
	log_set_role(c->name);
	snprintf(title, sizeof(title), "centrifugo: %s", c->name);
	if (c->role == ROLE_BROKER)
		snprintf(comm, sizeof(comm), "centrifugo-brk");
	else
		snprintf(comm, sizeof(comm), "centrifugo-w%u", c->worker_id);
	proctitle_set(title, comm);

	status = c->role == ROLE_BROKER ? broker_main() : worker_main();
	fflush(NULL);
	_exit(status & 0xff);
}

/*
 * Forks child slot c.  On failure (logged) the slot is left down with a
 * respawn scheduled.  Returns 0 or -1.
 */
static int
sup_spawn(struct sup_child *c)
{
	sigset_t all, old;
	int fds[2];
	pid_t pid;

	ASSERT(c->pid == 0 && c->ipc_fd == -1);
	if (ipc_pair(fds) == -1) {
		log_error("cannot start %s: socketpair() failed: %s", c->name,
		    strerror(errno));
		goto fail;
	}
	c->generation++;
	/* No signal may run libevent's handler in the child before it
	 * resets dispositions: that handler writes to the supervisor's
	 * signal pipe. */
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old);
	pid = fork();
	if (pid == 0)
		sup_child_main(c, fds);
	sigprocmask(SIG_SETMASK, &old, NULL);
	close(fds[1]);
	if (pid == -1) {
		log_error("cannot start %s: fork() failed: %s", c->name,
		    strerror(errno));
		close(fds[0]);
		goto fail;
	}
	c->pid = pid;
	c->ipc_fd = fds[0];
	c->state = SUP_CHILD_STARTING;
	clock_gettime(CLOCK_MONOTONIC, &c->started);
	c->ipc_ev = event_new(sup.base, c->ipc_fd, EV_READ | EV_PERSIST,
	    sup_on_ipc, c);
	if (c->ipc_ev == NULL || event_add(c->ipc_ev, NULL) == -1)
		log_error("cannot watch the ipc channel of %s (pid %ld)",
		    c->name, (long)pid);
	log_info("started %s (pid %ld)", c->name, (long)pid);
	return 0;
fail:
	c->failures++;
	sup_schedule_respawn(c);
	return -1;
}

static void
sup_on_respawn(evutil_socket_t fd, short what, void *arg)
{
	struct sup_child *c = arg;

	if (sup.phase == SUP_RUNNING && c->pid == 0 &&
	    c->state == SUP_CHILD_DOWN && !c->retiring &&
	    (c->role != ROLE_WORKER || c->worker_id < sup.nworkers))
		sup_spawn(c);
}

/* Arms the respawn timer with the delay c->failures calls for. */
static void
sup_schedule_respawn(struct sup_child *c)
{
	struct timeval tv;
	long ms = 0;

	if (c->failures > 0) {
		unsigned shift = c->failures - 1;
		ms = shift >= 5 ? SUP_BACKOFF_MAX_MS : SUP_BACKOFF_MIN_MS << shift;
		if (ms > SUP_BACKOFF_MAX_MS)
			ms = SUP_BACKOFF_MAX_MS;
		log_notice("respawning %s in %ld ms (%u quick failure%s in a row)",
		    c->name, ms, c->failures, c->failures == 1 ? "" : "s");
	}
	sup_ms_to_tv(ms, &tv);
	evtimer_add(c->respawn_ev, &tv);
}

/* systemd (Type=notify): READY=1 once the broker and every worker are. */
static void
sup_notify_ready(void)
{
	if (sup.notified_ready || sup.phase != SUP_RUNNING)
		return;
	if (sup_broker()->state != SUP_CHILD_READY)
		return;
	for (unsigned i = 0; i < sup.nworkers; i++) {
		if (sup.children[i].state != SUP_CHILD_READY)
			return;
	}
	sup.notified_ready = 1;
	if (sdnotify_printf("READY=1\nMAINPID=%ld\n"
	    "STATUS=serving with %u worker%s", (long)sup.pid, sup.nworkers,
	    sup.nworkers == 1 ? "" : "s") == -1)
		log_warn("sd_notify READY=1 to $NOTIFY_SOCKET failed: %s",
		    strerror(errno));
}

static void
sup_on_ipc(evutil_socket_t fd, short what, void *arg)
{
	struct sup_child *c = arg;
	struct ipc_msg msg;
	int rc;

	for (;;) {
		rc = ipc_recv(fd, &msg);
		if (rc == -1 && errno == EAGAIN)
			return;
		if (rc == -1 && errno == EBADMSG) {
			log_warn("dropping a malformed ipc message from %s",
			    c->name);
			continue;
		}
		if (rc != 1) {
			/* EOF: the child is gone; SIGCHLD says how. */
			if (rc == -1)
				log_warn("recvmsg() from %s failed: %s", c->name,
				    strerror(errno));
			sup_close_ipc(c);
			return;
		}
		switch (msg.hdr.type) {
		case IPC_READY:
			if (c->state == SUP_CHILD_STARTING) {
				c->state = SUP_CHILD_READY;
				log_info("%s (pid %ld) is ready", c->name,
				    (long)c->pid);
				sup_notify_ready();
				sup_roll_ready(c);
				sup_resize_done(c, NULL);
			}
			break;
		case IPC_RELOAD_DONE:
			sup_reload_answer(c, &msg);
			break;
		default:
			log_debug("ignoring ipc message %s (%u) from %s",
			    ipc_type_name(msg.hdr.type), msg.hdr.type, c->name);
			break;
		}
	}
}

/* ---- stopping ---- */

static void
sup_arm_stop_timer(long ms)
{
	struct timeval tv;

	sup_ms_to_tv(ms, &tv);
	evtimer_add(sup.stop_ev, &tv);
}

static unsigned
sup_workers_running(void)
{
	unsigned n = 0;

	for (unsigned i = 0; i < sup.max_workers; i++)
		n += sup.children[i].pid != 0;
	return n;
}

static long
sup_stop_budget_ms(void)
{
	int64_t t = sup.cfg->shutdown_timeout;

	return t <= 0 || t > SUP_WORKER_STOP_CAP_MS ? SUP_WORKER_STOP_CAP_MS :
	    (long)t;
}

static long
sup_broker_stop_ms(void)
{
	long t = sup_stop_budget_ms();

	return t < SUP_BROKER_STOP_MS ? t : SUP_BROKER_STOP_MS;
}

/* Moves the stop along once the children of the current phase are gone. */
static void
sup_stop_progress(void)
{
	struct sup_child *b = sup_broker();

	if (sup.phase == SUP_STOP_WORKERS && sup_workers_running() == 0) {
		evtimer_del(sup.stop_ev);
		sup.phase = SUP_STOP_BROKER;
		log_debug("supervisor phase: %s", sup_phase_names[sup.phase]);
		if (b->pid != 0) {
			kill(b->pid, SIGTERM);
			sup_arm_stop_timer(sup_broker_stop_ms());
		}
	}
	if (sup.phase == SUP_STOP_BROKER && b->pid == 0) {
		evtimer_del(sup.stop_ev);
		sup.phase = SUP_DONE;
		event_base_loopexit(sup.base, NULL);
	}
}

static void
sup_kill_all(int sig)
{
	for (unsigned i = 0; i <= sup.max_workers; i++) {
		if (sup.children[i].pid != 0)
			kill(sup.children[i].pid, sig);
	}
}

static void
sup_on_stop_timer(evutil_socket_t fd, short what, void *arg)
{
	if (sup.phase == SUP_STOP_WORKERS) {
		log_warn("%u worker%s still running after the shutdown timeout: killing",
		    sup_workers_running(), sup_workers_running() == 1 ? "" : "s");
		for (unsigned i = 0; i < sup.max_workers; i++) {
			if (sup.children[i].pid != 0)
				kill(sup.children[i].pid, SIGKILL);
		}
	} else if (sup.phase == SUP_STOP_BROKER && sup_broker()->pid != 0) {
		log_warn("broker still running after %ld ms: killing",
		    sup_broker_stop_ms());
		kill(sup_broker()->pid, SIGKILL);
	}
}

/* Starts the graceful stop; a second request kills what is left.  A
 * request within a second of the first is the same one delivered twice
 * (timeout(1) and terminals signal the whole process group too) and is
 * ignored. */
static void
sup_stop(const char *why)
{
	static struct timespec first;
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	if (sup.phase != SUP_RUNNING) {
		long ms = (now.tv_sec - first.tv_sec) * 1000 + (now.tv_nsec - first.tv_nsec) / 1000000;
		if (ms < 1000)
			return;
		log_warn("%s while %s: killing the remaining children", why,
		    sup_phase_names[sup.phase]);
		sup_kill_all(SIGKILL);
		return;
	}
	first = now;
	log_info("%s: stopping", why);
	(void)sdnotify_send("STOPPING=1");
	sup.phase = SUP_STOP_WORKERS;
	sup_roll_abort("the server is stopping");
	for (unsigned i = 0; i <= sup.max_workers; i++)
		evtimer_del(sup.children[i].respawn_ev);
	for (unsigned i = 0; i < sup.max_workers; i++) {
		if (sup.children[i].pid != 0)
			kill(sup.children[i].pid, SIGTERM);
	}
	sup_arm_stop_timer(sup_stop_budget_ms());
	sup_stop_progress();
}

/* ---- reaping ---- */

static void
sup_child_exited(struct sup_child *c, int status)
{
	long uptime = sup_ms_since(&c->started);
	int was_ready = c->state == SUP_CHILD_READY;
	/* The worker a rolling restart stopped on purpose. */
	int rolled = sup.roll.active && !sup.roll.starting &&
	    c->role == ROLE_WORKER && c->worker_id == sup.roll.next &&
	    c->pid == sup.roll.old_pid;
	/* The replacement it forked, gone before READY. */
	int roll_lost = sup.roll.active && sup.roll.starting &&
	    c->role == ROLE_WORKER && c->worker_id == sup.roll.next;
	int retired = c->retiring;
	int expected = sup.phase != SUP_RUNNING || rolled || retired;
	enum log_level lvl = expected ? LOG_LVL_INFO : LOG_LVL_WARN;
	char sig[32];

	if (WIFEXITED(status)) {
		if (expected && WEXITSTATUS(status) != 0)
			lvl = LOG_LVL_WARN;
		log_msg(lvl, "%s (pid %ld) exited with status %d", c->name,
		    (long)c->pid, WEXITSTATUS(status));
	} else if (WIFSIGNALED(status)) {
		log_msg(expected && WTERMSIG(status) == SIGTERM ? LOG_LVL_INFO :
		    LOG_LVL_WARN, "%s (pid %ld) killed by signal %s%s", c->name,
		    (long)c->pid, sup_signame(WTERMSIG(status), sig, sizeof(sig)),
		    WCOREDUMP(status) ? " (core dumped)" : "");
	}
	c->pid = 0;
	/* A READY still queued is stale: the channel goes with the child. */
	sup_close_ipc(c);
	c->state = SUP_CHILD_DOWN;
	sup_reload_child_gone(c);

	if (rolled) {
		sup_roll_exited(c);
		return;
	}
	if (retired) {
		sup_retire_gone(c);
		if (sup.phase != SUP_RUNNING)
			sup_stop_progress();
		return;
	}
	if (roll_lost)
		sup_roll_lost(c);
	if (expected) {
		sup_stop_progress();
		return;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == SUP_EXIT_FATAL) {
		unsigned fatal = 0;

		c->state = SUP_CHILD_FATAL;
		log_error("%s can never work (exit status %d): not respawning it",
		    c->name, SUP_EXIT_FATAL);
		for (unsigned i = 0; i < sup.nworkers; i++)
			fatal += sup.children[i].state == SUP_CHILD_FATAL;
		if (c->role == ROLE_BROKER || fatal == sup.nworkers) {
			sup.exit_status = SUP_EXIT_FATAL;
			sup_stop(c->role == ROLE_BROKER ? "the broker cannot run" :
			    "no worker can run");
		}
		return;
	}
	if (!was_ready || uptime < SUP_QUICK_MS)
		c->failures++;
	else
		c->failures = 0;
	sup_schedule_respawn(c);
}

static void
sup_reap(void)
{
	pid_t pid;
	int status;

	for (;;) {
		pid = waitpid(-1, &status, WNOHANG);
		if (pid == 0)
			return;
		if (pid == -1) {
			if (errno == EINTR)
				continue;
			if (errno != ECHILD)
				log_error("waitpid() failed: %s", strerror(errno));
			return;
		}
		struct sup_child *c = NULL;
		for (unsigned i = 0; i <= sup.max_workers; i++) {
			if (sup.children[i].pid == pid)
				c = &sup.children[i];
		}
		if (c == NULL) {
			log_debug("reaped unknown child pid %ld", (long)pid);
			continue;
		}
		log_debug("%s was %s", c->name, sup_child_state_names[c->state]);
		sup_child_exited(c, status);
	}
}

/* ---- reload ---- */

/* Logs each line of text at `lvl`. */
static void
sup_log_lines(enum log_level lvl, const char *text)
{
	const char *p = text, *nl;

	while (*p != '\0') {
		nl = strchr(p, '\n');
		if (nl == NULL)
			nl = p + strlen(p);
		if (nl > p)
			log_msg(lvl, "%.*s", (int)(nl - p), p);
		p = *nl == '\n' ? nl + 1 : nl;
	}
}

/* Sends the result to whoever asked and ends the reload. */
static void
sup_reload_finish(void)
{
	const char *name = sup.config_path != NULL ? sup.config_path :
	    "(defaults and environment)";
	struct buf body = BUF_INIT, *r = &body;

	/* Details first, the summary last (centrifugo-ctl's one-line reason). */
	buf_append(r, sup.reload.report.data, sup.reload.report.len);
	if (sup.reload.restart.len > 0)
		buf_printf(r, "not applied until a restart (running values "
		    "kept): %s\n", buf_cstr(&sup.reload.restart));
	if (sup.reload.failed)
		buf_printf(r, "configuration %s is valid but was not applied "
		    "everywhere\n", name);
	else
		buf_printf(r, "configuration %s reloaded\n", name);
	evtimer_del(sup.reload.timeout_ev);
	for (unsigned i = 0; i < sup.max_workers; i++) {
		sup.children[i].reload_pending = 0;
		sup.children[i].resize_pending = 0;
	}
	sup.reload.active = 0;
	sup.reload.waiting = 0;
	if (r->len > 0 && r->data[r->len - 1] == '\n')
		r->len--;
	sup_log_lines(sup.reload.failed ? LOG_LVL_ERROR : LOG_LVL_INFO,
	    buf_cstr(r));
	if (sup.reload.conn != NULL)
		ctl_reply(sup.reload.conn, sup.reload.failed ?
		    CTL_STATUS_FAILED : CTL_STATUS_OK, r->data, r->len);
	sup.reload.conn = NULL;
	buf_free(&body);
	buf_reset(&sup.reload.report);
	buf_reset(&sup.reload.restart);
	if (sup.notified_ready && sup.phase == SUP_RUNNING)
		(void)sdnotify_send("READY=1");
}

static void
sup_on_reload_timeout(evutil_socket_t fd, short what, void *arg)
{
	if (!sup.reload.active)
		return;
	for (unsigned i = 0; i < sup.max_workers; i++) {
		struct sup_child *c = &sup.children[i];

		if (c->reload_pending)
			buf_printf(&sup.reload.report, "%s: no answer within %d ms; "
			    "it may still run the previous configuration\n",
			    c->name, SUP_RELOAD_TIMEOUT_MS);
		if (c->resize_pending && c->retiring && c->pid != 0) {
			buf_printf(&sup.reload.report, "%s (pid %ld): still running "
			    "%d ms after SIGTERM: killed\n", c->name,
			    (long)c->pid, SUP_RELOAD_TIMEOUT_MS);
			kill(c->pid, SIGKILL);
		} else if (c->resize_pending) {
			buf_printf(&sup.reload.report, "%s: not ready within %d ms; "
			    "it is respawned until it starts\n", c->name,
			    SUP_RELOAD_TIMEOUT_MS);
		}
	}
	sup.reload.failed = 1;
	sup_reload_finish();
}

static void
sup_reload_answer(struct sup_child *c, const struct ipc_msg *msg)
{
	struct ipc_reload_done done;

	if (msg->hdr.len < sizeof(done)) {
		log_warn("dropping a short reload answer from %s", c->name);
		return;
	}
	memcpy(&done, msg->payload, sizeof(done));
	if (!sup.reload.active || !c->reload_pending ||
	    done.seq != sup.reload.seq) {
		log_debug("stale reload answer from %s", c->name);
		return;
	}
	c->reload_pending = 0;
	if (done.status != 0) {
		size_t n = msg->hdr.len - sizeof(done);
		const char *text = msg->payload + sizeof(done);

		while (n > 0 && text[n - 1] == '\n')
			n--;
		sup.reload.failed = 1;
		buf_printf(&sup.reload.report,
		    "%s: the new configuration was not applied: %.*s\n",
		    c->name, (int)n, text);
	}
	if (--sup.reload.waiting == 0)
		sup_reload_finish();
}

static void
sup_reload_child_gone(struct sup_child *c)
{
	if (!c->reload_pending)
		return;
	c->reload_pending = 0;
	/* Its successor is forked with the new heritage.cfg. */
	buf_printf(&sup.reload.report, "%s exited during the reload; it is "
	    "respawned with the new configuration\n", c->name);
	if (--sup.reload.waiting == 0)
		sup_reload_finish();
}

/* ---- a new worker count ---- */

/*
 * A worker the reload waited for is READY (what == NULL) or gone: the
 * reload is answered when it was the last one.
 */
static void
sup_resize_done(struct sup_child *c, const char *what)
{
	if (!sup.reload.active || !c->resize_pending)
		return;
	c->resize_pending = 0;
	if (what != NULL)
		buf_printf(&sup.reload.report, "%s %s\n", c->name, what);
	if (sup.reload.waiting > 0 && --sup.reload.waiting == 0)
		sup_reload_finish();
}

/*
 * A worker stopped by a lower worker count is gone: its listener closes,
 * its gauges go to zero (metrics and the connection limit sum every slot),
 * and it stays down.
 */
static void
sup_retire_gone(struct sup_child *c)
{
	struct proc_slot_shm *slot = shm_slot(sup.shm, c->worker_id);

	c->retiring = 0;
	c->failures = 0;
	evtimer_del(c->respawn_ev);
	if (sup.listen_fds[c->worker_id] != -1 &&
	    c->worker_id >= sup.nworkers) {
		close(sup.listen_fds[c->worker_id]);
		sup.listen_fds[c->worker_id] = -1;
	}
	if (slot != NULL) {
		VMB_STORE(&slot->pid, 0);
		VMB_STORE(&slot->connections, 0);
		VMB_STORE(&slot->subscriptions, 0);
	}
	log_info("%s stopped: the worker count is now %u", c->name,
	    sup.nworkers);
	sup_resize_done(c, "stopped");
}

/*
 * Checks a reload's new worker count `want` (its configuration is n) and,
 * for more workers, opens their listeners into sup.listen_fds.  Returns 0,
 * or -1 with the reason in errors and nothing changed.
 */
static int
sup_resize_prepare(const struct config *n, unsigned want, struct buf *errors)
{
	int64_t port = 0;
	unsigned i;

	if (want == sup.nworkers)
		return 0;
	if (want > sup.max_workers) {
		buf_printf(errors, "workers: %u is more than the %u worker slots "
		    "the shared memory was made with at start (max(workers, 2 x "
		    "online CPUs, %d), at most %d); only a restart can go beyond\n",
		    want, sup.max_workers, SUP_MIN_WORKER_SLOTS, SHM_MAX_WORKERS);
		return -1;
	}
	if (reload_listeners_differ(sup.cfg, n)) {
		buf_printf(errors, "workers: the worker count and the listeners "
		    "cannot change in one reload; change one, reload, then the "
		    "other\n");
		return -1;
	}
	if (sup.roll.active) {
		buf_printf(errors, "workers: workers are being restarted on new "
		    "listeners; try again when that is done\n");
		return -1;
	}
	for (i = sup.nworkers; i < want; i++) {
		if (sup.children[i].retiring || sup.children[i].pid != 0) {
			buf_printf(errors, "workers: %s is still stopping from an "
			    "earlier reload; try again when it is gone\n",
			    sup.children[i].name);
			return -1;
		}
	}
	if (want < sup.nworkers)
		return 0;
	{
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);

		if (getsockname(sup.listen_fds[0], (struct sockaddr *)&ss, &sl) == -1) {
			buf_printf(errors, "workers: getsockname() on the listener "
			    "failed: %s\n", strerror(errno));
			return -1;
		}
		port = ntohs(ss.ss_family == AF_INET6 ?
		    ((struct sockaddr_in6 *)&ss)->sin6_port :
		    ((struct sockaddr_in *)&ss)->sin_port);
	}
	for (i = sup.nworkers; i < want; i++) {
		sup.listen_fds[i] = sup_listen(sup.cfg->http_server_address, port,
		    1, NULL, errors);
		if (sup.listen_fds[i] == -1) {
			while (i-- > sup.nworkers) {
				close(sup.listen_fds[i]);
				sup.listen_fds[i] = -1;
			}
			return -1;
		}
	}
	return 0;
}

/*
 * Applies the new worker count (sup_resize_prepare() said yes): stops the
 * surplus workers, or starts the new ones on the listeners it opened.  The
 * workers to wait for are counted in sup.reload.waiting.
 */
static void
sup_resize_apply(unsigned want)
{
	static const uint64_t one = 1;
	unsigned old = sup.nworkers, i;

	if (want == old)
		return;
	buf_printf(&sup.reload.report, "workers: %u -> %u\n", old, want);
	log_info("worker count %u -> %u", old, want);
	sup.nworkers = want;
	if (shm_set_active_workers(sup.shm, want) == -1)
		ASSERT(0);
	/* The broker reads the request rings of the active count. */
	if (write(shm_broker_eventfd(sup.shm), &one, sizeof(one)) == -1 &&
	    errno != EAGAIN)
		log_warn("write(broker eventfd): %s", strerror(errno));
	for (i = want; i < old; i++) {
		struct sup_child *c = &sup.children[i];

		c->retiring = 1;
		evtimer_del(c->respawn_ev);
		if (c->pid == 0) {
			sup_retire_gone(c);
			continue;
		}
		log_info("stopping %s (pid %ld): the worker count is now %u",
		    c->name, (long)c->pid, want);
		kill(c->pid, SIGTERM);
		c->resize_pending = 1;
		sup.reload.waiting++;
	}
	for (i = old; i < want; i++) {
		struct sup_child *c = &sup.children[i];

		c->failures = 0;
		c->state = SUP_CHILD_DOWN;
		if (sup_spawn(c) == 0) {
			c->resize_pending = 1;
			sup.reload.waiting++;
		} else {
			buf_printf(&sup.reload.report, "%s: cannot start it at once; "
			    "it is respawned later\n", c->name);
		}
	}
}

/* ---- rolling restart onto new listeners ---- */

/* Closes the supervisor's copy of old listener i unless it is kept. */
static void
sup_roll_close_old(unsigned i)
{
	if (sup.roll.old_fds == NULL || sup.roll.old_fds[i] == -1)
		return;
	if (sup.roll.old_fds[i] != sup.listen_fds[i])
		close(sup.roll.old_fds[i]);
	sup.roll.old_fds[i] = -1;
}

/* Ends the rolling restart: old listeners closed, the reload answered. */
static void
sup_roll_finish(void)
{
	char where[300];

	evtimer_del(sup.roll.timer_ev);
	for (unsigned i = 0; i < sup.max_workers; i++)
		sup_roll_close_old(i);
	free(sup.roll.old_fds);
	sup.roll.old_fds = NULL;
	if (sup.roll.old_internal != -1 &&
	    sup.roll.old_internal != sup.internal_fd)
		close(sup.roll.old_internal);
	sup.roll.old_internal = -1;
	sup.roll.active = 0;
	sup_format_addr(where, sizeof(where),
	    sup.cfg->http_server_address[0] != '\0' ?
	    sup.cfg->http_server_address : "0.0.0.0",
	    sup.cfg->http_server_port);
	if (sup.roll.restarted < sup.nworkers)
		sup.reload.failed = 1;
	buf_printf(&sup.reload.report, "listeners changed (now %s%s%s): "
	    "%u of %u workers restarted one at a time on the new sockets\n",
	    where, sup.internal_fd != -1 ? ", internal port " : "",
	    sup.internal_fd != -1 ? sup.cfg->http_server_internal_port : "",
	    sup.roll.restarted, sup.nworkers);
	sup_reload_finish();
}

/*
 * Restarts worker slot roll.next, or the first after it that runs: SIGTERM
 * (its clients get the shutdown disconnect and reconnect to the other
 * workers), then sup_roll_exited() forks its replacement on the new
 * listener and sup_roll_ready() moves to the next slot.  A slot that is
 * down is skipped: its respawn gets the new listener anyway.
 */
static void
sup_roll_step(void)
{
	struct timeval tv;

	while (sup.roll.next < sup.nworkers) {
		struct sup_child *c = &sup.children[sup.roll.next];

		if (c->pid != 0)
			break;
		sup_roll_close_old(sup.roll.next);
		sup.roll.next++;
	}
	if (sup.roll.next == sup.nworkers) {
		sup_roll_finish();
		return;
	}
	struct sup_child *c = &sup.children[sup.roll.next];

	sup.roll.starting = 0;
	sup.roll.old_pid = c->pid;
	log_info("restarting %s (pid %ld) on the new listeners", c->name,
	    (long)c->pid);
	kill(c->pid, SIGTERM);
	sup_ms_to_tv(sup_stop_budget_ms(), &tv);
	evtimer_add(sup.roll.timer_ev, &tv);
}

/* The worker being restarted exited: fork its replacement. */
static void
sup_roll_exited(struct sup_child *c)
{
	struct timeval tv;

	evtimer_del(sup.roll.timer_ev);
	sup_roll_close_old(c->worker_id);
	c->failures = 0;
	sup.roll.starting = 1;
	if (sup_spawn(c) == -1) {
		/* Logged; a respawn is scheduled with the new listener. */
		buf_printf(&sup.reload.report, "%s: cannot start it again at "
		    "once; it is respawned later\n", c->name);
		sup.roll.next++;
		sup_roll_step();
		return;
	}
	sup_ms_to_tv(SUP_RELOAD_TIMEOUT_MS, &tv);
	evtimer_add(sup.roll.timer_ev, &tv);
}

/* READY from c: if it is the replacement being waited for, go on. */
static void
sup_roll_ready(struct sup_child *c)
{
	if (!sup.roll.active || !sup.roll.starting ||
	    c->role != ROLE_WORKER || c->worker_id != sup.roll.next)
		return;
	evtimer_del(sup.roll.timer_ev);
	sup.roll.restarted++;
	sup.roll.next++;
	sup_roll_step();
}

/* The replacement died before READY: report it and go on. */
static void
sup_roll_lost(struct sup_child *c)
{
	evtimer_del(sup.roll.timer_ev);
	buf_printf(&sup.reload.report, "%s exited before it was ready on the "
	    "new listeners; it is respawned\n", c->name);
	sup.roll.next++;
	sup_roll_step();
}

static void
sup_on_roll_timer(evutil_socket_t fd, short what, void *arg)
{
	struct sup_child *c;

	if (!sup.roll.active || sup.roll.next >= sup.nworkers)
		return;
	c = &sup.children[sup.roll.next];
	if (!sup.roll.starting) {
		/* Its exit, reaped, calls sup_roll_exited(). */
		log_warn("%s (pid %ld) still running %ld ms after SIGTERM: "
		    "killing it", c->name, (long)sup.roll.old_pid,
		    sup_stop_budget_ms());
		kill(sup.roll.old_pid, SIGKILL);
		return;
	}
	buf_printf(&sup.reload.report, "%s: not ready on the new listeners "
	    "within %d ms; going on with the next worker\n", c->name,
	    SUP_RELOAD_TIMEOUT_MS);
	sup.roll.next++;
	sup_roll_step();
}

/* Stops a rolling restart in progress (the server stops) and answers. */
static void
sup_roll_abort(const char *why)
{
	if (!sup.roll.active)
		return;
	buf_printf(&sup.reload.report, "%s: the restart of the workers on the "
	    "new listeners was not finished\n", why);
	sup.reload.failed = 1;
	sup_roll_finish();
}

/*
 * Reloads the configuration (see the file comment); conn is the control
 * connection to answer, or NULL (SIGHUP: the result is only logged).
 */
static void
sup_reload(struct ctl_conn *conn)
{
	const char *name = sup.config_path != NULL ? sup.config_path :
	    "(defaults and environment)";
	struct buf errors = BUF_INIT, restart = BUF_INIT, payload = BUF_INIT;
	struct ipc_reload req;
	struct config *n;
	enum log_level lvl;
	int *new_fds = NULL, new_internal = -1, listen_failed = 0;
	unsigned want = sup.nworkers;

	if (sup.reload.active || sup.phase != SUP_RUNNING) {
		const char *why = sup.reload.active ?
		    "a reload is already in progress" : "the server is stopping";

		log_warn("reload refused: %s", why);
		if (conn != NULL)
			ctl_reply(conn, sup.reload.active ? CTL_STATUS_BUSY :
			    CTL_STATUS_FAILED, why, strlen(why));
		return;
	}
	log_info("reloading configuration %s", name);
	n = reload_load_ex(sup.config_path, sup.cfg, &errors, &restart,
	    sup.cli_listeners ? 0 : RELOAD_LISTENERS);
	if (n != NULL) {
		want = config_workers(n);
		if (sup_resize_prepare(n, want, &errors) == -1) {
			config_free(n);
			n = NULL;
		}
	}
	if (n != NULL && reload_listeners_differ(sup.cfg, n)) {
		/* New sockets first: if one cannot be opened, nothing changes. */
		new_fds = xcalloc(sup.max_workers, sizeof(*new_fds));
		for (unsigned i = sup.nworkers; i < sup.max_workers; i++)
			new_fds[i] = -1;
		if (sup_listeners_open(n, sup.nworkers, sup.cfg, sup.listen_fds,
		    sup.internal_fd, new_fds, &new_internal, &errors) == -1) {
			free(new_fds);
			new_fds = NULL;
			config_free(n);
			n = NULL;
			listen_failed = 1;
		}
	}
	if (n == NULL) {
		if (listen_failed)
			buf_printf(&errors, "configuration %s: cannot open the new "
			    "listeners; nothing changed", name);
		else
			buf_printf(&errors, "configuration %s is invalid; nothing "
			    "changed", name);
		sup_log_lines(LOG_LVL_ERROR, buf_cstr(&errors));
		if (conn != NULL)
			ctl_reply(conn, CTL_STATUS_FAILED, errors.data, errors.len);
		buf_free(&errors);
		buf_free(&restart);
		return;
	}
	if (sup.notified_ready)
		(void)sdnotify_reloading();
	sup.reloaded = xrealloc(sup.reloaded,
	    (sup.nreloaded + 1) * sizeof(*sup.reloaded));
	sup.reloaded[sup.nreloaded++] = n;
	sup.cfg = n;
	heritage.cfg = n;
	if (log_level_parse(n->log_level, &lvl) == 0)
		log_set_level(lvl);
	log_set_json(n->log_json);

	sup.reload.active = 1;
	sup.reload.seq++;
	sup.reload.conn = conn;
	sup.reload.failed = 0;
	sup.reload.waiting = 0;
	buf_reset(&sup.reload.report);
	buf_reset(&sup.reload.restart);
	buf_append(&sup.reload.restart, restart.data, restart.len);
	if (new_fds != NULL) {
		/* Children forked from now on get the new listeners. */
		sup.roll.active = 1;
		sup.roll.next = 0;
		sup.roll.starting = 0;
		sup.roll.restarted = 0;
		sup.roll.old_fds = sup.listen_fds;
		sup.roll.old_internal = sup.internal_fd;
		sup.listen_fds = new_fds;
		sup.listen_fd = new_fds[0];
		sup.internal_fd = new_internal;
		heritage.listen_fd = sup.listen_fd;
		heritage.internal_fd = sup.internal_fd;
	}

	req.seq = sup.reload.seq;
	buf_append(&payload, &req, sizeof(req));
	if (sup.config_path != NULL)
		buf_puts(&payload, sup.config_path);
	for (unsigned i = 0; i <= sup.max_workers; i++) {
		struct sup_child *c = &sup.children[i];

		if (c->pid == 0 || c->ipc_fd == -1 || c->retiring)
			continue;   /* a respawn gets heritage.cfg */
		if (c->role == ROLE_WORKER && c->worker_id >= want)
			continue;   /* stopped by sup_resize_apply() */
		if (sup.roll.active && c->role == ROLE_WORKER)
			continue;   /* restarted with it by sup_roll_step() */
		if (ipc_send(c->ipc_fd, IPC_RELOAD, payload.data,
		    payload.len) == -1) {
			sup.reload.failed = 1;
			buf_printf(&sup.reload.report, "%s: cannot send it the "
			    "reload: %s\n", c->name, strerror(errno));
			continue;
		}
		/* The broker keeps no configuration of its own yet: only
		 * workers are waited for. */
		if (c->role == ROLE_WORKER) {
			c->reload_pending = 1;
			sup.reload.waiting++;
		}
	}
	buf_free(&payload);
	buf_free(&errors);
	buf_free(&restart);
	/* After IPC_RELOAD: new workers start with heritage.cfg = n. */
	sup_resize_apply(want);
	if (sup.roll.active) {
		sup_roll_step();
		return;
	}
	if (sup.reload.waiting == 0) {
		sup_reload_finish();
		return;
	}
	{
		struct timeval tv;

		sup_ms_to_tv(SUP_RELOAD_TIMEOUT_MS, &tv);
		evtimer_add(sup.reload.timeout_ev, &tv);
	}
}

/* ---- control socket commands ---- */

static const char *
sup_role_name(enum heritage_role r)
{
	return r == ROLE_BROKER ? "broker" : r == ROLE_WORKER ? "worker" :
	    "supervisor";
}

/* Fan-out records worker i has still to read; the broker: requests unread. */
static uint64_t
sup_ring_lag(const struct sup_child *c)
{
	uint64_t lag = 0;

	if (c->role == ROLE_WORKER) {
		struct ring_shm *r = shm_fanout(sup.shm);
		uint64_t head = ring_head(r), seq = ring_reader_seq(r, c->worker_id);

		return head > seq ? head - seq : 0;
	}
	for (unsigned i = 0; i < sup.max_workers; i++) {
		struct ring_shm *r = shm_request(sup.shm, i);
		uint64_t head = ring_head(r), seq = ring_reader_seq(r, 0);

		lag += head > seq ? head - seq : 0;
	}
	return lag;
}

static void
sup_ctl_status(struct buf *out, int json)
{
	long up = sup_ms_since(&sup.started) / 1000;
	const char *cfgname = sup.config_path != NULL ? sup.config_path : "";

	if (json) {
		buf_printf(out, "{\"supervisor\":{\"pid\":%ld,\"state\":\"%s\","
		    "\"uptime\":%ld,\"version\":\"%s\",\"workers\":%u,"
		    "\"max_workers\":%u,\"config\":", (long)sup.pid,
		    sup_phase_names[sup.phase], up, PACKAGE_VERSION, sup.nworkers,
		    sup.max_workers);
		json_put_string(out, cfgname, strlen(cfgname));
		buf_puts(out, "},\"processes\":[");
	} else {
		buf_printf(out, "supervisor pid %ld, %s, up %lds, %u worker%s "
		    "(of %u slots), config %s\n", (long)sup.pid,
		    sup_phase_names[sup.phase], up, sup.nworkers,
		    sup.nworkers == 1 ? "" : "s", sup.max_workers,
		    cfgname[0] != '\0' ? cfgname : "(none)");
		buf_printf(out, "%-10s %8s %-9s %8s %8s %8s %9s %9s %7s\n",
		    "PROCESS", "PID", "STATE", "UPTIME", "CONNS", "SUBS",
		    "RING_LAG", "OVERRUNS", "SPAWNS");
	}
	/* The active workers, any a reload is still stopping, the broker. */
	for (unsigned i = 0, first = 1; i <= sup.max_workers; i++) {
		const struct sup_child *c = &sup.children[i];
		struct proc_slot_shm *slot;

		if (i < sup.max_workers && i >= sup.nworkers && c->pid == 0)
			continue;
		slot = shm_slot(sup.shm, i);
		int worker = c->role == ROLE_WORKER, up_ = c->pid != 0;
		uint64_t conns = worker ? atomic_load_explicit(&slot->connections,
		    memory_order_relaxed) : 0;
		uint64_t subs = worker ? atomic_load_explicit(&slot->subscriptions,
		    memory_order_relaxed) : 0;
		uint64_t overruns = atomic_load_explicit(&slot->ring_overruns,
		    memory_order_relaxed);
		uint64_t lag = up_ ? sup_ring_lag(c) : 0;
		long cup = up_ ? sup_ms_since(&c->started) / 1000 : 0;

		if (json) {
			buf_printf(out, "%s{\"name\":\"%s\",\"role\":\"%s\","
			    "\"pid\":%ld,\"state\":\"%s\",\"uptime\":%ld,",
			    first ? "" : ",", c->name, sup_role_name(c->role),
			    (long)c->pid, sup_child_state_names[c->state], cup);
			if (worker)
				buf_printf(out, "\"id\":%u,\"connections\":%llu,"
				    "\"subscriptions\":%llu,", c->worker_id,
				    (unsigned long long)conns,
				    (unsigned long long)subs);
			buf_printf(out, "\"ring_lag\":%llu,\"ring_overruns\":%llu,"
			    "\"spawns\":%u}", (unsigned long long)lag,
			    (unsigned long long)overruns, c->generation);
			first = 0;
			continue;
		}
		char pid[16], upt[24], cs[24], ss[24];

		snprintf(pid, sizeof(pid), up_ ? "%ld" : "-", (long)c->pid);
		snprintf(upt, sizeof(upt), up_ ? "%lds" : "-", cup);
		snprintf(cs, sizeof(cs), worker ? "%llu" : "-",
		    (unsigned long long)conns);
		snprintf(ss, sizeof(ss), worker ? "%llu" : "-",
		    (unsigned long long)subs);
		buf_printf(out, "%-10s %8s %-9s %8s %8s %8s %9llu %9llu %7u\n",
		    c->name, pid, sup_child_state_names[c->state], upt, cs, ss,
		    (unsigned long long)lag, (unsigned long long)overruns,
		    c->generation);
	}
	if (json)
		buf_puts(out, "]}");
	else if (out->len > 0)
		out->len--;     /* the protocol adds the last newline */
}

static void
sup_ctl_reload(struct ctl_conn *c)
{
	sup_reload(c);
}

static void
sup_ctl_stop(void)
{
	sup_stop("stop requested on the control socket");
}

static void
sup_ctl_reopen_logs(struct buf *out)
{
	buf_puts(out, "logging goes to standard error: nothing to reopen");
}

static const struct ctl_ops sup_ctl_ops = {
	.status = sup_ctl_status,
	.reload = sup_ctl_reload,
	.stop = sup_ctl_stop,
	.reopen_logs = sup_ctl_reopen_logs,
};

/* ---- signals ---- */

static void
sup_on_signal(evutil_socket_t sig, short what, void *arg)
{
	char name[32];

	switch (sig) {
	case SIGCHLD:
		sup_reap();
		break;
	case SIGTERM:
	case SIGINT:
		sup_stop(sup_signame((int)sig, name, sizeof(name)));
		break;
	case SIGHUP:
		/* sup_reload() tells systemd RELOADING=1 / READY=1. */
		sup_reload(NULL);
		break;
	case SIGUSR1:
		log_info("SIGUSR1: reopen logs: logging goes to stderr, nothing to reopen");
		break;
	default:
		break;
	}
}

/* ---- run ---- */

static int
sup_setup_events(void)
{
	static const int sigs[] = { SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGUSR1 };

	sup.base = event_base_new();
	if (sup.base == NULL) {
		log_error("event_base_new() failed");
		return -1;
	}
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		sup.sig_ev[i] = evsignal_new(sup.base, sigs[i], sup_on_signal,
		    NULL);
		if (sup.sig_ev[i] == NULL || evsignal_add(sup.sig_ev[i], NULL) == -1) {
			log_error("cannot watch signal %d", sigs[i]);
			return -1;
		}
	}
	sup.stop_ev = evtimer_new(sup.base, sup_on_stop_timer, NULL);
	sup.reload.timeout_ev = evtimer_new(sup.base, sup_on_reload_timeout,
	    NULL);
	sup.roll.timer_ev = evtimer_new(sup.base, sup_on_roll_timer, NULL);
	if (sup.stop_ev == NULL || sup.reload.timeout_ev == NULL ||
	    sup.roll.timer_ev == NULL) {
		log_error("evtimer_new() failed");
		return -1;
	}
	return 0;
}

static void
sup_init_children(void)
{
	sup.children = xcalloc(sup.max_workers + 1, sizeof(*sup.children));
	for (unsigned i = 0; i <= sup.max_workers; i++) {
		struct sup_child *c = &sup.children[i];

		c->role = i == sup.max_workers ? ROLE_BROKER : ROLE_WORKER;
		c->worker_id = i;
		if (c->role == ROLE_BROKER)
			snprintf(c->name, sizeof(c->name), "broker");
		else
			snprintf(c->name, sizeof(c->name), "worker %u", i);
		c->ipc_fd = -1;
		c->respawn_ev = evtimer_new(sup.base, sup_on_respawn, c);
		ASSERT(c->respawn_ev != NULL);
	}
}

static void
sup_cleanup(void)
{
	if (sup.pid_file != NULL && unlink(sup.pid_file) == -1 &&
	    errno != ENOENT)
		log_warn("cannot remove pid file %s: %s", sup.pid_file,
		    strerror(errno));
	sup.pid_file = NULL;
	if (sup.children != NULL) {
		for (unsigned i = 0; i <= sup.max_workers; i++) {
			sup_close_ipc(&sup.children[i]);
			if (sup.children[i].respawn_ev != NULL)
				event_free(sup.children[i].respawn_ev);
		}
		free(sup.children);
		sup.children = NULL;
	}
	for (size_t i = 0; i < sizeof(sup.sig_ev) / sizeof(sup.sig_ev[0]); i++) {
		if (sup.sig_ev[i] != NULL)
			event_free(sup.sig_ev[i]);
		sup.sig_ev[i] = NULL;
	}
	if (sup.stop_ev != NULL)
		event_free(sup.stop_ev);
	sup.stop_ev = NULL;
	/* A reload still waiting gets no answer: its connection closes. */
	sup.reload.active = 0;
	sup.reload.conn = NULL;
	ctl_close();
	if (sup.reload.timeout_ev != NULL)
		event_free(sup.reload.timeout_ev);
	sup.reload.timeout_ev = NULL;
	if (sup.roll.timer_ev != NULL)
		event_free(sup.roll.timer_ev);
	sup.roll.timer_ev = NULL;
	sup.roll.active = 0;
	for (unsigned i = 0; sup.roll.old_fds != NULL && i < sup.max_workers; i++)
		sup_roll_close_old(i);
	free(sup.roll.old_fds);
	sup.roll.old_fds = NULL;
	if (sup.roll.old_internal != -1 &&
	    sup.roll.old_internal != sup.internal_fd)
		close(sup.roll.old_internal);
	sup.roll.old_internal = -1;
	buf_free(&sup.reload.report);
	buf_free(&sup.reload.restart);
	if (sup.base != NULL)
		event_base_free(sup.base);
	sup.base = NULL;
	if (sup.shm != NULL)
		shm_destroy(sup.shm);
	sup.shm = NULL;
	for (unsigned i = 0; sup.listen_fds != NULL && i < sup.max_workers; i++)
		if (sup.listen_fds[i] != -1)
			close(sup.listen_fds[i]);
	free(sup.listen_fds);
	sup.listen_fds = NULL;
	sup.listen_fd = -1;
	if (sup.internal_fd != -1)
		close(sup.internal_fd);
	sup.internal_fd = -1;
	if (sup.grpc_fd != -1)
		close(sup.grpc_fd);
	sup.grpc_fd = -1;
	/* Every child is gone: the configurations of reloads can go. */
	for (size_t i = 0; i < sup.nreloaded; i++)
		config_free(sup.reloaded[i]);
	free(sup.reloaded);
	sup.reloaded = NULL;
	sup.nreloaded = 0;
	sup.cfg = NULL;
	heritage.cfg = NULL;
}

int
sup_run(struct config *cfg, const char *config_path)
{
	struct shm_params params;

	memset(&sup, 0, sizeof(sup));
	sup.cfg = cfg;
	sup.config_path = config_path;
	sup.listen_fd = -1;
	sup.internal_fd = -1;
	sup.grpc_fd = -1;
	sup.roll.old_internal = -1;
	sup.pid = getpid();
	clock_gettime(CLOCK_MONOTONIC, &sup.started);
	sup.nworkers = config_workers(cfg);
	ASSERT(sup.nworkers > 0);
	sup.max_workers = sup_max_workers(sup.nworkers);
	log_set_role("supervisor");
	proctitle_set("centrifugo: supervisor", NULL);
	signal(SIGPIPE, SIG_IGN);

	sup.listen_fds = xcalloc(sup.max_workers, sizeof(*sup.listen_fds));
	for (unsigned i = 0; i < sup.max_workers; i++)
		sup.listen_fds[i] = -1;
	if (sup_listeners_open(cfg, sup.nworkers, NULL, NULL, -1,
	    sup.listen_fds, &sup.internal_fd, NULL) == -1)
		goto fail;
	sup.listen_fd = sup.listen_fds[0];
	/* The GRPC API listener: one socket that every worker watches (the
	 * grpc_api options are restart-only, so it never changes). */
	if (cfg->grpc_api_enabled) {
		sup.grpc_fd = sup_listen(cfg->grpc_api_address,
		    cfg->grpc_api_port, 0, NULL, NULL);
		if (sup.grpc_fd == -1)
			goto fail;
	}
	sup.cli_listeners = sup_cli_listeners(cfg, config_path);
	sup_check_nofile(cfg);
	memset(&params, 0, sizeof(params));
	params.nworkers = sup.nworkers;
	params.max_workers = sup.max_workers;
	params.fanout_bytes = SUP_FANOUT_BYTES;
	params.request_bytes = SUP_REQUEST_BYTES;
	params.reply_bytes = SUP_REPLY_BYTES;
	sup.shm = shm_create(&params);
	if (sup.shm == NULL) {
		log_error("cannot create the shared memory for %u workers",
		    sup.nworkers);
		goto fail;
	}
	if (sup_setup_events() == -1)
		goto fail;
	if (cfg->pid_file != NULL && cfg->pid_file[0] != '\0') {
		if (sup_write_pid_file(cfg->pid_file) == -1)
			goto fail;
		sup.pid_file = cfg->pid_file;
	}

	heritage.cfg = cfg;
	heritage.shm = sup.shm;
	heritage.listen_fd = sup.listen_fd;
	heritage.internal_fd = sup.internal_fd;
	heritage.grpc_fd = sup.grpc_fd;
	heritage.max_workers = sup.max_workers;
	heritage.role = ROLE_SUPERVISOR;
	heritage.ipc_fd = -1;

	sup_init_children();
	/* Never fatal: without it the server runs, only centrifugo-ctl cannot
	 * reach it. */
	(void)ctl_open(sup.base, cfg->ctl_socket, SUP_CTL_SOCKET_MODE,
	    &sup_ctl_ops);
	log_info("starting the broker and %u worker%s (%u worker slots)",
	    sup.nworkers, sup.nworkers == 1 ? "" : "s", sup.max_workers);
	sup_spawn(sup_broker());
	for (unsigned i = 0; i < sup.nworkers && sup.phase == SUP_RUNNING; i++)
		sup_spawn(&sup.children[i]);

	if (event_base_dispatch(sup.base) == -1) {
		log_error("event_base_dispatch() failed");
		sup_kill_all(SIGKILL);
		sup.exit_status = 1;
	}
	sup_cleanup();
	log_info("stopped");
	return sup.exit_status;
fail:
	sup_cleanup();
	return 1;
}
