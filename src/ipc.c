/*
 * ipc.c - the supervisor <-> child command channel (see ipc.h).
 *
 * Runs in every process: the supervisor makes the pairs and reads READY
 * messages from its ends; children send READY and watch their end for the
 * supervisor's death.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <event2/event.h>

#include "heritage.h"
#include "ipc.h"
#include "log.h"

static const char *const ipc_type_names[] = {
	[IPC_NONE] = "none",
	[IPC_READY] = "ready",
	[IPC_RELOAD] = "reload",
	[IPC_RELOAD_DONE] = "reload-done",
};

const char *
ipc_type_name(uint32_t type)
{
	if (type >= IPC_TYPE_COUNT || ipc_type_names[type] == NULL)
		return "unknown";
	return ipc_type_names[type];
}

int
ipc_pair(int fds[2])
{
	int flags;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) == -1)
		return -1;
	flags = fcntl(fds[0], F_GETFL);
	if (flags == -1 || fcntl(fds[0], F_SETFL, flags | O_NONBLOCK) == -1) {
		int saved = errno;
		close(fds[0]);
		close(fds[1]);
		fds[0] = fds[1] = -1;
		errno = saved;
		return -1;
	}
	return 0;
}

int
ipc_send(int fd, uint32_t type, const void *payload, size_t len)
{
	struct ipc_hdr hdr;
	struct iovec iov[2];
	struct msghdr mh;
	ssize_t n;

	if (len > IPC_PAYLOAD_MAX) {
		errno = EMSGSIZE;
		return -1;
	}
	hdr.type = type;
	hdr.len = (uint32_t)len;
	iov[0].iov_base = &hdr;
	iov[0].iov_len = sizeof(hdr);
	iov[1].iov_base = (void *)payload;
	iov[1].iov_len = len;
	memset(&mh, 0, sizeof(mh));
	mh.msg_iov = iov;
	mh.msg_iovlen = len > 0 ? 2 : 1;
	do {
		n = sendmsg(fd, &mh, MSG_NOSIGNAL);
	} while (n == -1 && errno == EINTR);
	if (n == -1)
		return -1;
	/* SEQPACKET sends all or nothing. */
	ASSERT((size_t)n == sizeof(hdr) + len);
	return 0;
}

int
ipc_recv(int fd, struct ipc_msg *msg)
{
	struct iovec iov;
	struct msghdr mh;
	ssize_t n;

	iov.iov_base = msg;
	iov.iov_len = sizeof(*msg);
	memset(&mh, 0, sizeof(mh));
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	do {
		n = recvmsg(fd, &mh, 0);
	} while (n == -1 && errno == EINTR);
	if (n == -1)
		return -1;
	/* We never send an empty datagram, so 0 can only mean EOF. */
	if (n == 0)
		return 0;
	if ((mh.msg_flags & MSG_TRUNC) || (size_t)n < sizeof(msg->hdr) ||
	    msg->hdr.len != (size_t)n - sizeof(msg->hdr)) {
		errno = EBADMSG;
		return -1;
	}
	return 1;
}

int
ipc_child_ready(void)
{
	if (ipc_send(heritage.ipc_fd, IPC_READY, NULL, 0) == -1) {
		log_error("ipc_child_ready: sendmsg() on fd %d failed: %s",
		    heritage.ipc_fd, strerror(errno));
		return -1;
	}
	return 0;
}

/* Child-side watch state: one per process. */
static struct event *ipc_watch_ev;
static void (*ipc_watch_on_eof)(void *arg);
static void *ipc_watch_arg;
/* Routes set by ipc_child_handle(), indexed by type. */
static struct {
	ipc_handler_fn fn;
	void *arg;
} ipc_routes[IPC_TYPE_COUNT];

int
ipc_child_handle(uint32_t type, ipc_handler_fn fn, void *arg)
{
	if (type == IPC_NONE || type >= IPC_TYPE_COUNT) {
		errno = EINVAL;
		return -1;
	}
	ipc_routes[type].fn = fn;
	ipc_routes[type].arg = arg;
	return 0;
}

static void
ipc_child_on_read(evutil_socket_t fd, short what, void *arg)
{
	struct event_base *base = arg;
	struct ipc_msg msg;
	int rc;

	/* The child's end is blocking: read the one message poll promised. */
	rc = ipc_recv(fd, &msg);
	if (rc == 1) {
		if (msg.hdr.type > IPC_NONE && msg.hdr.type < IPC_TYPE_COUNT &&
		    ipc_routes[msg.hdr.type].fn != NULL) {
			ipc_routes[msg.hdr.type].fn(&msg,
			    ipc_routes[msg.hdr.type].arg);
			return;
		}
		log_debug("ignoring ipc message %s from the supervisor",
		    ipc_type_name(msg.hdr.type));
		return;
	}
	if (rc == -1 && errno == EBADMSG) {
		log_warn("dropping a malformed ipc message from the supervisor");
		return;
	}
	if (rc == -1 && errno == EAGAIN)
		return;
	if (rc == -1)
		log_error("recvmsg() on ipc fd %d failed: %s", (int)fd,
		    strerror(errno));
	/* End of file (or a broken channel): the supervisor is gone. */
	log_warn("the supervisor has gone away, stopping");
	event_del(ipc_watch_ev);
	if (ipc_watch_on_eof != NULL)
		ipc_watch_on_eof(ipc_watch_arg);
	else
		event_base_loopbreak(base);
}

int
ipc_child_watch_cb(struct event_base *base, void (*on_eof)(void *arg),
    void *arg)
{
	ASSERT(ipc_watch_ev == NULL);
	ipc_watch_on_eof = on_eof;
	ipc_watch_arg = arg;
	ipc_watch_ev = event_new(base, heritage.ipc_fd, EV_READ | EV_PERSIST,
	    ipc_child_on_read, base);
	if (ipc_watch_ev == NULL || event_add(ipc_watch_ev, NULL) == -1) {
		log_error("ipc_child_watch: cannot watch ipc fd %d",
		    heritage.ipc_fd);
		ipc_child_unwatch();
		return -1;
	}
	return 0;
}

int
ipc_child_watch(struct event_base *base, void (*on_eof)(void *arg),
    void *arg)
{
	return ipc_child_watch_cb(base, on_eof, arg);
}

void
ipc_child_unwatch(void)
{
	if (ipc_watch_ev != NULL)
		event_free(ipc_watch_ev);
	ipc_watch_ev = NULL;
}
