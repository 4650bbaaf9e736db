/*
 * ctl.c - the control socket server (see ctl.h), run by the supervisor in
 * its libevent loop.
 *
 * One listening unix socket; each accepted connection is a bufferevent that
 * reads request lines, looks the command up in ctl_cmds[] and writes one
 * reply per request.  While a command is pending (reload waits for the
 * workers) the connection reads nothing more; if the peer goes away
 * meanwhile the connection is kept, marked gone, until its ctl_reply().
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "build-config.h"
#include "buf.h"
#include "ctl.h"
#include "log.h"
#include "xmalloc.h"

#define CTL_MAGIC 0x43544c43u    /* "CTLC" */
#define CTL_MAX_ARGS 16
#define CTL_IDLE_TIMEOUT_S 300
#define CTL_BACKLOG 16

struct ctl_conn {
	uint32_t magic;
	struct ctl_conn *next;
	struct bufferevent *bev;    /* NULL once the peer is gone */
	int busy;                   /* a command waits for ctl_reply() */
	int in_dispatch;            /* inside ctl_process() */
	int closing;                /* close once the output is written */
};

struct ctl_cmd {
	const char *name;
	const char *args;           /* usage of the arguments, "" for none */
	const char *help;
	int min_args, max_args;
	void (*fn)(struct ctl_conn *c, int argc, char **argv);
};

static struct {
	struct event_base *base;
	const struct ctl_ops *ops;
	int fd;
	struct event *listen_ev;
	char *path;
	dev_t dev;                  /* of the socket file we made */
	ino_t ino;
	struct ctl_conn *conns;
} ctl = { .fd = -1 };

static void ctl_process(struct ctl_conn *c);

/* ---- commands ---- */

static void ctl_cmd_help(struct ctl_conn *c, int argc, char **argv);
static void ctl_cmd_status(struct ctl_conn *c, int argc, char **argv);
static void ctl_cmd_reload(struct ctl_conn *c, int argc, char **argv);
static void ctl_cmd_stop(struct ctl_conn *c, int argc, char **argv);
static void ctl_cmd_reopen_logs(struct ctl_conn *c, int argc, char **argv);
static void ctl_cmd_version(struct ctl_conn *c, int argc, char **argv);

/* Every command of the control socket, with its help (one place). */
static const struct ctl_cmd ctl_cmds[] = {
	{ "status", "[json]",
	  "supervisor, broker and workers: pid, state, uptime, connections, "
	  "subscriptions, ring lag", 0, 1, ctl_cmd_status },
	{ "reload", "",
	  "re-read and validate the configuration file, apply it without "
	  "dropping connections (new listeners: workers restarted one at a "
	  "time); answers every error", 0, 0, ctl_cmd_reload },
	{ "stop", "",
	  "graceful stop, as SIGTERM: clients get the shutdown disconnect",
	  0, 0, ctl_cmd_stop },
	{ "reopen-logs", "", "reopen log files, as SIGUSR1", 0, 0,
	  ctl_cmd_reopen_logs },
	{ "version", "", "the server's version", 0, 0, ctl_cmd_version },
	{ "help", "", "this list", 0, 0, ctl_cmd_help },
};

#define CTL_NCMDS (sizeof(ctl_cmds) / sizeof(ctl_cmds[0]))

void
ctl_write_help(struct buf *out)
{
	for (size_t i = 0; i < CTL_NCMDS; i++) {
		char left[40];

		snprintf(left, sizeof(left), "%s%s%s", ctl_cmds[i].name,
		    ctl_cmds[i].args[0] != '\0' ? " " : "", ctl_cmds[i].args);
		buf_printf(out, "  %-20s %s\n", left, ctl_cmds[i].help);
	}
}

static void
ctl_cmd_help(struct ctl_conn *c, int argc, char **argv)
{
	struct buf out = BUF_INIT;

	ctl_write_help(&out);
	if (out.len > 0)
		out.len--;          /* the protocol adds the last newline */
	ctl_reply(c, CTL_STATUS_OK, out.data, out.len);
	buf_free(&out);
}

static void
ctl_cmd_status(struct ctl_conn *c, int argc, char **argv)
{
	struct buf out = BUF_INIT;
	int json = 0;

	if (argc == 2) {
		if (strcmp(argv[1], "json") != 0) {
			static const char usage[] = "usage: status [json]";

			ctl_reply(c, CTL_STATUS_USAGE, usage, sizeof(usage) - 1);
			return;
		}
		json = 1;
	}
	ctl.ops->status(&out, json);
	ctl_reply(c, CTL_STATUS_OK, out.data, out.len);
	buf_free(&out);
}

static void
ctl_cmd_reload(struct ctl_conn *c, int argc, char **argv)
{
	ctl.ops->reload(c);
}

static void
ctl_cmd_stop(struct ctl_conn *c, int argc, char **argv)
{
	static const char msg[] = "stopping";

	ctl_reply(c, CTL_STATUS_OK, msg, sizeof(msg) - 1);
	ctl.ops->stop();
}

static void
ctl_cmd_reopen_logs(struct ctl_conn *c, int argc, char **argv)
{
	struct buf out = BUF_INIT;

	ctl.ops->reopen_logs(&out);
	ctl_reply(c, CTL_STATUS_OK, out.data, out.len);
	buf_free(&out);
}

static void
ctl_cmd_version(struct ctl_conn *c, int argc, char **argv)
{
	struct buf out = BUF_INIT;

	buf_printf(&out, "centrifugo %s (compatible with Centrifugo %s)",
	    PACKAGE_VERSION, CENTRIFUGO_COMPAT_VERSION);
	ctl_reply(c, CTL_STATUS_OK, out.data, out.len);
	buf_free(&out);
}

/* ---- connections ---- */

static void
ctl_conn_free(struct ctl_conn *c)
{
	struct ctl_conn **pp;

	ASSERT(c->magic == CTL_MAGIC);
	for (pp = &ctl.conns; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	if (c->bev != NULL)
		bufferevent_free(c->bev);
	c->magic = 0;
	free(c);
}

/* The peer is gone (or misbehaved): free now, or once its reply comes. */
static void
ctl_conn_drop(struct ctl_conn *c)
{
	if (c->busy && c->bev != NULL) {
		bufferevent_free(c->bev);
		c->bev = NULL;
		return;
	}
	if (!c->in_dispatch)
		ctl_conn_free(c);
	else
		c->closing = 1;
}

void
ctl_reply(struct ctl_conn *c, int status, const char *body, size_t len)
{
	char hdr[CTL_HEADER_LEN + 1];

	ASSERT(c != NULL && c->magic == CTL_MAGIC);
	ASSERT(status >= 100 && status <= 999 && len <= CTL_BODY_MAX);
	c->busy = 0;
	if (c->bev == NULL) {
		/* The peer left while the command ran. */
		if (!c->in_dispatch)
			ctl_conn_free(c);
		else
			c->closing = 1;
		return;
	}
	snprintf(hdr, sizeof(hdr), "%03d %-8zu\n", status, len);
	if (bufferevent_write(c->bev, hdr, CTL_HEADER_LEN) == -1 ||
	    (len > 0 && bufferevent_write(c->bev, body, len) == -1) ||
	    bufferevent_write(c->bev, "\n", 1) == -1) {
		log_warn("control socket: cannot queue a reply");
		c->closing = 1;
	}
	if (!c->in_dispatch)
		ctl_process(c);
}

/* Splits line into blank-separated words.  Returns the count, -1 if too many. */
static int
ctl_split(char *line, char **argv)
{
	int argc = 0;
	char *save = NULL, *w;

	for (w = strtok_r(line, " \t", &save); w != NULL;
	    w = strtok_r(NULL, " \t", &save)) {
		if (argc == CTL_MAX_ARGS)
			return -1;
		argv[argc++] = w;
	}
	return argc;
}

static void
ctl_dispatch(struct ctl_conn *c, char *line)
{
	char *argv[CTL_MAX_ARGS];
	struct buf out = BUF_INIT;
	int argc = ctl_split(line, argv);

	if (argc == 0)
		return;             /* empty line: nothing to answer */
	c->busy = 1;
	if (argc < 0) {
		buf_printf(&out, "too many arguments (at most %d)",
		    CTL_MAX_ARGS - 1);
		ctl_reply(c, CTL_STATUS_USAGE, out.data, out.len);
		buf_free(&out);
		return;
	}
	for (size_t i = 0; i < CTL_NCMDS; i++) {
		const struct ctl_cmd *cmd = &ctl_cmds[i];

		if (strcmp(argv[0], cmd->name) != 0)
			continue;
		if (argc - 1 < cmd->min_args || argc - 1 > cmd->max_args) {
			buf_printf(&out, "usage: %s%s%s", cmd->name,
			    cmd->args[0] != '\0' ? " " : "", cmd->args);
			ctl_reply(c, CTL_STATUS_USAGE, out.data, out.len);
			buf_free(&out);
			return;
		}
		log_info("control socket: %s", cmd->name);
		cmd->fn(c, argc, argv);
		return;
	}
	buf_printf(&out, "unknown command '%.64s'; try 'help'", argv[0]);
	ctl_reply(c, CTL_STATUS_UNKNOWN, out.data, out.len);
	buf_free(&out);
}

/* Answers every complete request line, unless one is pending. */
static void
ctl_process(struct ctl_conn *c)
{
	struct evbuffer *in;
	char *line;
	size_t n;

	c->in_dispatch = 1;
	while (!c->busy && !c->closing && c->bev != NULL) {
		in = bufferevent_get_input(c->bev);
		line = evbuffer_readln(in, &n, EVBUFFER_EOL_LF);
		if (line == NULL) {
			if (evbuffer_get_length(in) >= CTL_LINE_MAX) {
				static const char msg[] = "request line too long";

				c->busy = 1;
				ctl_reply(c, CTL_STATUS_TOOLONG, msg,
				    sizeof(msg) - 1);
				c->closing = 1;
			}
			break;
		}
		if (n > 0 && line[n - 1] == '\r')
			line[--n] = '\0';
		if (n >= CTL_LINE_MAX || strlen(line) != n) {
			static const char msg[] = "malformed request line";

			free(line);
			c->busy = 1;
			ctl_reply(c, CTL_STATUS_TOOLONG, msg, sizeof(msg) - 1);
			c->closing = 1;
			break;
		}
		ctl_dispatch(c, line);
		free(line);
	}
	c->in_dispatch = 0;
	if (c->bev == NULL) {
		if (!c->busy)
			ctl_conn_free(c);
		return;
	}
	if (c->closing) {
		/* Close once the reply is written (ctl_on_write). */
		bufferevent_disable(c->bev, EV_READ);
		if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
			ctl_conn_free(c);
		return;
	}
	if (c->busy)
		bufferevent_disable(c->bev, EV_READ);
	else
		bufferevent_enable(c->bev, EV_READ);
}

static void
ctl_on_read(struct bufferevent *bev, void *arg)
{
	ctl_process(arg);
}

static void
ctl_on_write(struct bufferevent *bev, void *arg)
{
	struct ctl_conn *c = arg;

	if (c->closing)
		ctl_conn_free(c);
}

static void
ctl_on_event(struct bufferevent *bev, short what, void *arg)
{
	struct ctl_conn *c = arg;

	if (what & BEV_EVENT_ERROR)
		log_debug("control connection: %s",
		    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	ctl_conn_drop(c);
}

static void
ctl_on_accept(evutil_socket_t lfd, short what, void *arg)
{
	struct timeval idle = { CTL_IDLE_TIMEOUT_S, 0 };

	for (;;) {
		struct ctl_conn *c;
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd == -1) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				log_warn("control socket %s: accept4() failed: %s",
				    ctl.path, strerror(errno));
			return;
		}
		c = xcalloc(1, sizeof(*c));
		c->magic = CTL_MAGIC;
		c->bev = bufferevent_socket_new(ctl.base, fd,
		    BEV_OPT_CLOSE_ON_FREE);
		if (c->bev == NULL) {
			log_warn("control socket %s: bufferevent_socket_new() failed",
			    ctl.path);
			close(fd);
			free(c);
			continue;
		}
		bufferevent_setcb(c->bev, ctl_on_read, ctl_on_write,
		    ctl_on_event, c);
		bufferevent_set_timeouts(c->bev, &idle, NULL);
		bufferevent_enable(c->bev, EV_READ);
		c->next = ctl.conns;
		ctl.conns = c;
	}
}

/* ---- the socket ---- */

int
ctl_parse_mode(const char *s, unsigned *mode)
{
	char *end;
	unsigned long v;

	if (s == NULL || *s < '0' || *s > '7')
		return -1;
	errno = 0;
	v = strtoul(s, &end, 8);
	if (errno != 0 || *end != '\0' || v > 07777)
		return -1;
	*mode = (unsigned)v;
	return 0;
}

/* mkdir -p of path's directory (0755).  Returns 0 or -1 (logged). */
static int
ctl_make_dir(const char *path)
{
	char *dir = xstrdup(path), *p;
	int rc = 0;

	p = strrchr(dir, '/');
	if (p == NULL || p == dir) {
		free(dir);
		return 0;
	}
	*p = '\0';
	for (p = dir + 1; rc == 0; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char saved = *p;

		*p = '\0';
		if (mkdir(dir, 0755) == -1 && errno != EEXIST) {
			log_error("control socket %s: mkdir(%s) failed: %s", path,
			    dir, strerror(errno));
			rc = -1;
		}
		*p = saved;
		if (saved == '\0')
			break;
	}
	free(dir);
	return rc;
}

/*
 * A file is already at path: a live server's socket (-1, logged), a stale
 * socket (removed, 0) or something else (-1, logged).
 */
static int
ctl_clear_path(const char *path, const struct sockaddr_un *sa)
{
	struct stat st;
	int fd, rc;

	if (lstat(path, &st) == -1)
		return errno == ENOENT ? 0 : -1;
	if (!S_ISSOCK(st.st_mode)) {
		log_error("control socket %s: the path exists and is not a socket: "
		    "not touching it", path);
		return -1;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		log_error("control socket %s: socket() failed: %s", path,
		    strerror(errno));
		return -1;
	}
	rc = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
	close(fd);
	if (rc == 0) {
		log_error("control socket %s: another server is answering on it",
		    path);
		return -1;
	}
	if (errno != ECONNREFUSED) {
		log_error("control socket %s: cannot tell whether it is in use: "
		    "connect() failed: %s", path, strerror(errno));
		return -1;
	}
	if (unlink(path) == -1 && errno != ENOENT) {
		log_error("control socket %s: cannot remove the stale socket: "
		    "unlink() failed: %s", path, strerror(errno));
		return -1;
	}
	log_info("control socket %s: removed a stale socket file", path);
	return 0;
}

int
ctl_open(struct event_base *base, const char *path, unsigned mode,
    const struct ctl_ops *ops)
{
	struct sockaddr_un sa;
	struct stat st;
	const char *call;
	int fd;

	ASSERT(ctl.fd == -1 && ctl.path == NULL);
	if (path == NULL || path[0] == '\0') {
		log_info("ctl.socket is empty: no control socket");
		return -1;
	}
	if (strlen(path) >= sizeof(sa.sun_path)) {
		log_error("control socket %s: path longer than %zu bytes: running "
		    "without a control socket", path, sizeof(sa.sun_path) - 1);
		return -1;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, path, strlen(path));
	if (ctl_make_dir(path) == -1 || ctl_clear_path(path, &sa) == -1)
		goto nosock;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		call = "socket";
		goto fail;
	}
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1) {
		call = "bind";
		goto fail_close;
	}
	if (chmod(path, mode) == -1) {
		call = "chmod";
		goto fail_unlink;
	}
	if (stat(path, &st) == -1) {
		call = "stat";
		goto fail_unlink;
	}
	if (listen(fd, CTL_BACKLOG) == -1) {
		call = "listen";
		goto fail_unlink;
	}
	ctl.listen_ev = event_new(base, fd, EV_READ | EV_PERSIST, ctl_on_accept,
	    NULL);
	if (ctl.listen_ev == NULL || event_add(ctl.listen_ev, NULL) == -1) {
		if (ctl.listen_ev != NULL)
			event_free(ctl.listen_ev);
		ctl.listen_ev = NULL;
		errno = ENOMEM;
		call = "event_add";
		goto fail_unlink;
	}
	ctl.base = base;
	ctl.ops = ops;
	ctl.fd = fd;
	ctl.path = xstrdup(path);
	ctl.dev = st.st_dev;
	ctl.ino = st.st_ino;
	log_info("control socket %s (mode %04o)", path, mode);
	return 0;

fail_unlink:
	{
		int saved = errno;

		unlink(path);
		errno = saved;
	}
fail_close:
	{
		int saved = errno;

		close(fd);
		errno = saved;
	}
fail:
	log_error("control socket %s: %s() failed: %s", path, call,
	    strerror(errno));
nosock:
	log_warn("running without a control socket");
	return -1;
}

void
ctl_close(void)
{
	struct stat st;

	while (ctl.conns != NULL) {
		struct ctl_conn *c = ctl.conns;

		/* Best effort: a reply queued just before the stop. */
		if (c->bev != NULL)
			evbuffer_write(bufferevent_get_output(c->bev),
			    bufferevent_getfd(c->bev));
		ctl_conn_free(c);
	}
	if (ctl.listen_ev != NULL)
		event_free(ctl.listen_ev);
	ctl.listen_ev = NULL;
	if (ctl.fd != -1)
		close(ctl.fd);
	ctl.fd = -1;
	/* Remove the file only if it is still the one we made. */
	if (ctl.path != NULL && stat(ctl.path, &st) == 0 &&
	    st.st_dev == ctl.dev && st.st_ino == ctl.ino &&
	    unlink(ctl.path) == -1)
		log_warn("control socket %s: unlink() failed: %s", ctl.path,
		    strerror(errno));
	free(ctl.path);
	ctl.path = NULL;
	ctl.base = NULL;
}

void
ctl_close_in_child(void)
{
	if (ctl.fd != -1)
		close(ctl.fd);
	ctl.fd = -1;
	for (struct ctl_conn *c = ctl.conns; c != NULL; c = c->next) {
		if (c->bev != NULL)
			close(bufferevent_getfd(c->bev));
	}
	/* The structures belong to the supervisor's event base, which the
	 * child drops: forget them without freeing. */
	ctl.conns = NULL;
	ctl.listen_ev = NULL;
	free(ctl.path);
	ctl.path = NULL;
}
