/*
 * sdnotify.c - the sd_notify(3) datagram protocol, written out: one
 * AF_UNIX SOCK_DGRAM datagram per message to the socket named by
 * $NOTIFY_SOCKET (a filesystem path, or '@' + an abstract name).
 *
 * Runs in the supervisor (see sdnotify.h).  A fresh socket per message:
 * messages are rare (start, reload, stop), and no descriptor is kept that
 * a forked child could inherit.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "sdnotify.h"

/*
 * Fills *sa from a $NOTIFY_SOCKET value and returns the address length to
 * pass to sendto(), or 0 if the value cannot be an AF_UNIX address.
 */
static socklen_t
sdnotify_addr(const char *path, struct sockaddr_un *sa)
{
	size_t len = strlen(path);

	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (path[0] == '@') {
		/* Abstract: a leading NUL, then the name; no terminator. */
		if (len < 2 || len > sizeof(sa->sun_path))
			return 0;
		memcpy(sa->sun_path + 1, path + 1, len - 1);
		return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
	}
	if (path[0] != '/' || len >= sizeof(sa->sun_path))
		return 0;
	memcpy(sa->sun_path, path, len);
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
}

int
sdnotify_send(const char *state)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa;
	socklen_t salen;
	size_t len;
	ssize_t n;
	int fd, saved;

	if (path == NULL || path[0] == '\0')
		return 0;
	if (state == NULL || (len = strlen(state)) == 0) {
		errno = EINVAL;
		return -1;
	}
	salen = sdnotify_addr(path, &sa);
	if (salen == 0) {
		errno = EINVAL;
		return -1;
	}
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -1;
	do
		n = sendto(fd, state, len, MSG_NOSIGNAL,
		    (const struct sockaddr *)&sa, salen);
	while (n == -1 && errno == EINTR);
	saved = errno;
	close(fd);
	if (n == -1) {
		errno = saved;
		return -1;
	}
	if ((size_t)n != len) {
		errno = EMSGSIZE;
		return -1;
	}
	return 1;
}

int
sdnotify_printf(const char *fmt, ...)
{
	char msg[SDNOTIFY_MAX + 1];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n > SDNOTIFY_MAX) {
		errno = EMSGSIZE;
		return -1;
	}
	return sdnotify_send(msg);
}

int
sdnotify_reloading(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) == -1)
		return sdnotify_send("RELOADING=1");
	return sdnotify_printf("RELOADING=1\nMONOTONIC_USEC=%llu",
	    (unsigned long long)ts.tv_sec * 1000000ULL +
	    (unsigned long long)ts.tv_nsec / 1000ULL);
}
