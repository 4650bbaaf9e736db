/*
 * floor-server.c - the least a server can do for centrifugo-bench's shapes,
 * to measure what the kernel and the machine cost on their own.
 *
 * One process, one epoll loop, no library but OpenSSL's SHA-1.  It answers
 * exactly what centrifugo-bench sends and nothing more: the WebSocket
 * upgrade (a fixed 101 with the accept key), one frame holding the connect
 * and subscribe commands (one frame back with both replies, nothing
 * checked), and POST /api/publish (the push frame is built once and sent to
 * each subscriber of the channel with one send() each; then 200 with an
 * empty result).  No pings, no history, no presence, no tokens, no
 * validation beyond what keeps it from crashing on the bench's own input.
 * Connections wait for the upgrade request with TCP_DEFER_ACCEPT and have
 * TCP_NODELAY, as the server's do.
 *
 * Whatever CPU centrifugo-bench measures for it per connect and per
 * delivered message is the floor below which no server doing the same
 * exchanges on this machine can go: bench/run.sh runs it next to our server
 * and nginx + nchan.  Not installed; loopback only.
 *
 * usage: floor-server PORT
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/sha.h>

#include "b64.h"
#include "buf.h"
#include "xmalloc.h"

#define FLOOR_MAX_CHANNELS 4096
#define FLOOR_MAX_HEADER 16384
#define FLOOR_MAX_FRAME (1u << 20)
#define FLOOR_RDBUF 65536

enum conn_kind { CONN_HTTP = 0, CONN_WS = 1 };

struct conn {
	int fd;
	enum conn_kind kind;
	int chan;               /* channel index, -1 when not subscribed */
	size_t slot;            /* index in that channel's subscriber array */
	int out_wait;           /* EPOLLOUT armed */
	struct buf in, out;
};

struct channel {
	char *name;
	struct conn **subs;
	size_t n, cap;
	uint64_t offset;
};

static int epfd;
static struct conn **conns;     /* by fd */
static size_t nconns_cap;
static struct channel chans[FLOOR_MAX_CHANNELS];
static int nchans;
static char rdbuf[FLOOR_RDBUF];

static void
die(const char *what)
{
	fprintf(stderr, "floor-server: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int
chan_find(const char *name, size_t len, int create)
{
	int i;

	for (i = 0; i < nchans; i++)
		if (strlen(chans[i].name) == len && memcmp(chans[i].name, name, len) == 0)
			return i;
	if (!create || nchans == FLOOR_MAX_CHANNELS)
		return -1;
	chans[nchans].name = xstrndup(name, len);
	return nchans++;
}

static void
chan_add(struct conn *c, int ch)
{
	struct channel *k = &chans[ch];

	if (c->chan >= 0)
		return;         /* one channel per connection is all the bench uses */
	if (k->n == k->cap) {
		k->cap = k->cap ? k->cap * 2 : 64;
		k->subs = xrealloc(k->subs, k->cap * sizeof *k->subs);
	}
	c->chan = ch;
	c->slot = k->n;
	k->subs[k->n++] = c;
}

static void
chan_remove(struct conn *c)
{
	struct channel *k;

	if (c->chan < 0)
		return;
	k = &chans[c->chan];
	k->subs[c->slot] = k->subs[--k->n];
	k->subs[c->slot]->slot = c->slot;
	c->chan = -1;
}

static void
conn_close(struct conn *c)
{
	chan_remove(c);
	close(c->fd);           /* also leaves the epoll set */
	conns[c->fd] = NULL;
	buf_free(&c->in);
	buf_free(&c->out);
	free(c);
}

static void
conn_want_out(struct conn *c, int on)
{
	struct epoll_event ev = { .events = EPOLLIN | (on ? EPOLLOUT : 0), .data.fd = c->fd };

	if (c->out_wait == on)
		return;
	c->out_wait = on;
	if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
		die("epoll_ctl(MOD)");
}

/* Sends p[0..n) now if nothing waits before it, queues the rest. */
static int
conn_send(struct conn *c, const void *p, size_t n)
{
	ssize_t w = 0;

	if (c->out.len == 0) {
		w = send(c->fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno != EAGAIN && errno != EINTR)
			return -1;
		if (w < 0)
			w = 0;
	}
	if ((size_t)w < n) {
		buf_append(&c->out, (const char *)p + w, n - (size_t)w);
		conn_want_out(c, 1);
	}
	return 0;
}

static int
conn_flush(struct conn *c)
{
	while (c->out.len > 0) {
		ssize_t w = send(c->fd, c->out.data, c->out.len, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN)
			return 0;
		if (w < 0)
			return -1;
		memmove(c->out.data, c->out.data + w, c->out.len - (size_t)w);
		c->out.len -= (size_t)w;
	}
	conn_want_out(c, 0);
	return 0;
}

static void
ws_header(struct buf *b, int op, size_t n)
{
	unsigned char h[4] = { (unsigned char)(0x80 | op), 0, 0, 0 };

	if (n < 126) {
		h[1] = (unsigned char)n;
		buf_append(b, h, 2);
	} else {
		h[1] = 126;
		h[2] = (unsigned char)(n >> 8);
		h[3] = (unsigned char)n;
		buf_append(b, h, 4);    /* n < 64 KiB: every frame built here */
	}
}

/* Finds "key": in p[0..n) and returns where its value starts, or NULL. */
static const char *
json_after(const char *p, size_t n, const char *key)
{
	const char *m = memmem(p, n, key, strlen(key));

	return m ? m + strlen(key) : NULL;
}

/* One line of the client protocol: connect and subscribe get replies. */
static void
ws_line(struct conn *c, const char *p, size_t n, struct buf *reply)
{
	const char *v = json_after(p, n, "\"id\":");
	unsigned long id = v ? strtoul(v, NULL, 10) : 0;

	if (id == 0)
		return;         /* a pong, or nothing the bench sends */
	if (reply->len > 0)
		buf_putc(reply, '\n');
	if (json_after(p, n, "\"connect\":") != NULL) {
		buf_printf(reply, "{\"id\":%lu,\"connect\":{\"client\":\"floor-%d\","
		    "\"version\":\"0.0.0\"}}", id, c->fd);
	} else if ((v = json_after(p, n, "\"channel\":\"")) != NULL &&
	    json_after(p, n, "\"subscribe\":") != NULL) {
		const char *e = memchr(v, '"', n - (size_t)(v - p));
		int ch = e ? chan_find(v, (size_t)(e - v), 1) : -1;

		if (ch < 0)
			buf_printf(reply, "{\"id\":%lu,\"error\":{\"code\":107,"
			    "\"message\":\"bad request\"}}", id);
		else {
			chan_add(c, ch);
			buf_printf(reply, "{\"id\":%lu,\"subscribe\":{}}", id);
		}
	} else {
		buf_printf(reply, "{\"id\":%lu,\"error\":{\"code\":107,"
		    "\"message\":\"bad request\"}}", id);
	}
}

/* Client frames in c->in; returns -1 when the connection is to be closed. */
static int
ws_input(struct conn *c)
{
	size_t off = 0;
	int rc = 0;

	while (c->in.len - off >= 6) {
		unsigned char *h = (unsigned char *)c->in.data + off;
		size_t hl = 2, len = h[1] & 0x7f, i, s;
		int op = h[0] & 0x0f;
		unsigned char *mask, *pl;

		if (!(h[1] & 0x80) || !(h[0] & 0x80) || len == 127)
			return -1;      /* unmasked, fragmented or huge: not the bench */
		if (len == 126) {
			if (c->in.len - off < 8)
				break;
			len = (size_t)h[2] << 8 | h[3];
			hl = 4;
		}
		if (c->in.len - off < hl + 4 + len)
			break;
		mask = h + hl;
		pl = mask + 4;
		for (i = 0; i < len; i++)
			pl[i] ^= mask[i & 3];
		off += hl + 4 + len;
		if (op == 8)
			return -1;
		if (op == 9) {
			struct buf f = BUF_INIT;

			ws_header(&f, 10, len);
			buf_append(&f, pl, len);
			rc = conn_send(c, f.data, f.len);
			buf_free(&f);
		} else if (op == 1 || op == 2) {
			struct buf reply = BUF_INIT, f = BUF_INIT;

			for (s = 0, i = 0; i <= len; i++) {
				if (i == len || pl[i] == '\n') {
					if (i > s)
						ws_line(c, (const char *)pl + s, i - s, &reply);
					s = i + 1;
				}
			}
			if (reply.len > 0) {
				ws_header(&f, 1, reply.len);
				buf_append(&f, reply.data, reply.len);
				rc = conn_send(c, f.data, f.len);
			}
			buf_free(&reply);
			buf_free(&f);
		}
		if (rc < 0)
			return -1;
	}
	memmove(c->in.data, c->in.data + off, c->in.len - off);
	c->in.len -= off;
	return 0;
}

static int
http_upgrade(struct conn *c, const char *hdr, size_t hlen)
{
	static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
	const char *k = json_after(hdr, hlen, "Sec-WebSocket-Key:");
	unsigned char sha[SHA_DIGEST_LENGTH];
	char key[128];
	size_t n = 0;
	struct buf acc = BUF_INIT, r = BUF_INIT;
	int rc;

	if (k == NULL)
		return -1;
	while (*k == ' ')
		k++;
	while (n < 64 && k[n] != '\r' && k[n] != ' ')
		n++;
	memcpy(key, k, n);
	memcpy(key + n, guid, sizeof guid - 1);
	SHA1((unsigned char *)key, n + sizeof guid - 1, sha);
	b64_encode(sha, sizeof sha, 0, &acc);
	buf_printf(&r, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
	    "Connection: Upgrade\r\nSec-WebSocket-Accept: %.*s\r\n\r\n",
	    (int)acc.len, acc.data);
	rc = conn_send(c, r.data, r.len);
	buf_free(&acc);
	buf_free(&r);
	c->kind = CONN_WS;
	return rc;
}

/* POST /api/publish {"channel":"...","data":...}: fan out, then answer. */
static int
http_publish(struct conn *c, const char *body, size_t blen)
{
	static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
	    "Content-Length: 13\r\n\r\n{\"result\":{}}";
	const char *v = json_after(body, blen, "\"channel\":\"");
	const char *d = json_after(body, blen, "\"data\":");
	const char *e = v ? memchr(v, '"', blen - (size_t)(v - body)) : NULL;
	int ch = e ? chan_find(v, (size_t)(e - v), 0) : -1;

	if (v == NULL || e == NULL || d == NULL || body[blen - 1] != '}')
		return -1;
	if (ch >= 0) {
		struct channel *k = &chans[ch];
		struct buf push = BUF_INIT, f = BUF_INIT;
		size_t i, dlen = (size_t)(body + blen - 1 - d);

		buf_printf(&push, "{\"push\":{\"channel\":\"%s\",\"pub\":{\"data\":", k->name);
		buf_append(&push, d, dlen);
		buf_printf(&push, ",\"offset\":%llu}}}", (unsigned long long)++k->offset);
		ws_header(&f, 1, push.len);
		buf_append(&f, push.data, push.len);
		for (i = 0; i < k->n; ) {
			struct conn *s = k->subs[i];

			if (conn_send(s, f.data, f.len) < 0)
				conn_close(s);  /* the last one moved into slot i */
			else
				i++;
		}
		buf_free(&push);
		buf_free(&f);
	}
	return conn_send(c, ok, sizeof ok - 1);
}

/* Requests in c->in (pipelined ones too); -1 closes the connection. */
static int
http_input(struct conn *c)
{
	while (c->kind == CONN_HTTP && c->in.len > 0) {
		char *h = c->in.data, *end = memmem(h, c->in.len, "\r\n\r\n", 4);
		const char *cl;
		size_t hlen, blen = 0;

		if (end == NULL)
			return c->in.len > FLOOR_MAX_HEADER ? -1 : 0;
		hlen = (size_t)(end - h) + 4;
		cl = json_after(h, hlen, "Content-Length:");
		if (cl != NULL)
			blen = strtoul(cl, NULL, 10);
		if (blen > FLOOR_MAX_FRAME)
			return -1;
		if (c->in.len < hlen + blen)
			return 0;
		if (strncmp(h, "GET ", 4) == 0) {
			if (http_upgrade(c, h, hlen) < 0)
				return -1;
		} else if (strncmp(h, "POST ", 5) == 0 && blen > 0) {
			if (http_publish(c, h + hlen, blen) < 0)
				return -1;
		} else {
			return -1;
		}
		memmove(h, h + hlen + blen, c->in.len - hlen - blen);
		c->in.len -= hlen + blen;
	}
	return c->kind == CONN_WS ? ws_input(c) : 0;
}

static void
conn_read(struct conn *c)
{
	for (;;) {
		ssize_t r = recv(c->fd, rdbuf, sizeof rdbuf, 0);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno == EAGAIN)
			break;
		if (r <= 0) {
			conn_close(c);
			return;
		}
		buf_append(&c->in, rdbuf, (size_t)r);
		if ((size_t)r < sizeof rdbuf)
			break;
	}
	if ((c->kind == CONN_HTTP ? http_input(c) : ws_input(c)) < 0 ||
	    c->in.len > FLOOR_MAX_FRAME)
		conn_close(c);
	else if (c->in.len == 0)
		buf_free(&c->in);       /* an idle connection holds no buffer */
}

static void
conn_accept(int lfd)
{
	for (;;) {
		struct epoll_event ev = { .events = EPOLLIN };
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct conn *c;

		if (fd < 0) {
			if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
				return;
			die("accept4");
		}
		if ((size_t)fd >= nconns_cap) {
			size_t cap = (size_t)fd * 2 + 64;

			conns = xrealloc(conns, cap * sizeof *conns);
			memset(conns + nconns_cap, 0, (cap - nconns_cap) * sizeof *conns);
			nconns_cap = cap;
		}
		c = xcalloc(1, sizeof *c);
		c->fd = fd;
		c->chan = -1;
		conns[fd] = c;
		ev.data.fd = fd;
		if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
			die("epoll_ctl(ADD)");
		/* with TCP_DEFER_ACCEPT the upgrade request is already here */
		conn_read(c);
	}
}

int
main(int argc, char **argv)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	struct epoll_event ev = { .events = EPOLLIN }, evs[256];
	struct rlimit rl;
	int lfd, one = 1, defer = 1;
	long port;

	if (argc != 2 || (port = strtol(argv[1], NULL, 10)) <= 0 || port > 65535) {
		fprintf(stderr, "usage: floor-server PORT\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0)
		die("socket");
	(void)setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	(void)setsockopt(lfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	(void)setsockopt(lfd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer, sizeof defer);
	if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0)
		die("bind");
	if (listen(lfd, 4096) < 0)
		die("listen");
	if ((epfd = epoll_create1(EPOLL_CLOEXEC)) < 0)
		die("epoll_create1");
	ev.data.fd = lfd;
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev) < 0)
		die("epoll_ctl(ADD listener)");
	for (;;) {
		int n = epoll_wait(epfd, evs, 256, -1), i;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("epoll_wait");
		for (i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			struct conn *c;

			if (fd == lfd) {
				conn_accept(lfd);
				continue;
			}
			if ((size_t)fd >= nconns_cap || (c = conns[fd]) == NULL)
				continue;       /* closed earlier in this batch */
			if ((evs[i].events & EPOLLOUT) && conn_flush(c) < 0) {
				conn_close(c);
				continue;
			}
			if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
				conn_read(c);
		}
	}
}
