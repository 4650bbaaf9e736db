/*
 * sdnotify.h - service readiness notification to systemd (sd_notify(3)
 * protocol), without libsystemd.
 *
 * When systemd starts a Type=notify service it puts the path of a datagram
 * socket in $NOTIFY_SOCKET; the main process sends it newline-separated
 * VAR=VALUE assignments: READY=1 once it serves, RELOADING=1 then READY=1
 * around a reload, STOPPING=1 when it begins to stop.  A path starting
 * with '@' names a socket in the abstract namespace.  Without
 * $NOTIFY_SOCKET (not started by systemd) every call does nothing.
 *
 * Used by the supervisor only: systemd accepts messages from the main
 * process (NotifyAccess=main), and children never call it.
 */
#ifndef CENTRIFUGO_SDNOTIFY_H
#define CENTRIFUGO_SDNOTIFY_H

/*
 * Sends `state` (e.g. "READY=1" or "READY=1\nSTATUS=serving") as one
 * datagram to $NOTIFY_SOCKET.  Returns 1 when sent, 0 when $NOTIFY_SOCKET
 * is unset or empty (nothing to do), -1 with errno set on failure
 * (EINVAL: unusable address or empty state; otherwise socket()/sendto()'s
 * errno).  Never logs; the caller decides whether a failure matters.
 */
int sdnotify_send(const char *state);

/*
 * Like sdnotify_send() with a printf-style message; -1 with errno
 * EMSGSIZE if the formatted message exceeds SDNOTIFY_MAX bytes.
 */
#define SDNOTIFY_MAX 1024
int sdnotify_printf(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

/*
 * Reload helper: sends "RELOADING=1" with MONOTONIC_USEC (the current
 * CLOCK_MONOTONIC time in microseconds, which Type=notify-reload needs and
 * Type=notify ignores).  Same return values as sdnotify_send().
 */
int sdnotify_reloading(void);

#endif
