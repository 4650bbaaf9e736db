/*
 * ctl.h - the supervisor's control socket, spoken to by centrifugo-ctl(1).
 *
 * A unix stream socket (ctl.socket).  A request is one line, a command and
 * its arguments separated by blanks, ended by '\n'.  A reply is, as in
 * varnish's vcli: a header line "SSS LLLLLLLL\n" (status, three digits;
 * body length in bytes, decimal, left-aligned and blank-padded to eight
 * characters), then the body, then '\n'.  A connection may carry several
 * requests, answered in order; the server closes it when it stops.
 *
 * The commands and their help texts are one table in ctl.c (haproxy
 * cli.c); what they do in the supervisor comes through struct ctl_ops.
 */
#ifndef CENTRIFUGO_CTL_H
#define CENTRIFUGO_CTL_H

#include <stddef.h>

struct buf;
struct event_base;

/* Reply status codes. */
#define CTL_STATUS_OK 200        /* done; the body says what */
#define CTL_STATUS_UNKNOWN 101   /* no such command */
#define CTL_STATUS_USAGE 104     /* wrong arguments; the body has the usage */
#define CTL_STATUS_FAILED 300    /* ran and failed (reload: the errors) */
#define CTL_STATUS_BUSY 301      /* cannot now (another reload running) */
#define CTL_STATUS_TOOLONG 400   /* request line longer than CTL_LINE_MAX */

/* Longest request line, '\n' included. */
#define CTL_LINE_MAX 4096
/* Bytes of the reply header line, '\n' included. */
#define CTL_HEADER_LEN 13
/* Largest body the server sends (the client refuses bigger ones). */
#define CTL_BODY_MAX (16u << 20)

/* The compiled-in default of ctl.socket. */
#define CTL_DEFAULT_SOCKET "/run/centrifugo/centrifugo.sock"

/* One control connection; owned by ctl.c. */
struct ctl_conn;

/*
 * What the commands do, supplied by the supervisor.  Each is called from
 * the supervisor's loop.  status/reopen_logs append their body to out.
 * reload must answer, now or later, with exactly one ctl_reply(c, ...).
 * stop starts the graceful stop (its reply is sent before it is called).
 */
struct ctl_ops {
	void (*status)(struct buf *out, int json);
	void (*reload)(struct ctl_conn *c);
	void (*stop)(void);
	void (*reopen_logs)(struct buf *out);
};

/*
 * Serves the control socket at `path` on `base`: creates the directory if
 * missing (0755), removes a stale socket file (one nobody answers on),
 * binds, sets `mode` on the file, listens.  Never fatal: on any failure it
 * logs why (path, call, errno text) and returns -1, and the server runs
 * without a control socket.  `ops` must outlive ctl_close().  Supervisor
 * only, once.
 */
int ctl_open(struct event_base *base, const char *path, unsigned mode,
    const struct ctl_ops *ops);

/*
 * Answers the command pending on c with `status` and body[0..len) (copied).
 * The reply to a reload; other commands are answered inside ctl.c.  If the
 * peer has gone meanwhile the reply is dropped and c freed here.
 */
void ctl_reply(struct ctl_conn *c, int status, const char *body, size_t len);

/*
 * Flushes what it can of pending replies, closes every connection and the
 * socket and removes the socket file (if it is still ours).  Safe to call
 * when ctl_open failed or was never called.
 */
void ctl_close(void);

/*
 * In a child just forked from the supervisor: closes the inherited socket
 * and connection descriptors without touching the file or the event base.
 */
void ctl_close_in_child(void);

/*
 * Appends one line per command, "  NAME ARGS  HELP", from the table
 * (centrifugo-ctl's usage reuses it).
 */
void ctl_write_help(struct buf *out);

/*
 * Parses a mode written in octal ("0660", "660").  Returns 0 and *mode,
 * or -1 if it is not an octal number up to 07777.
 */
int ctl_parse_mode(const char *s, unsigned *mode);

#endif
