/*
 * centrifugo-bench.c - load generator for centrifugo (and, with --nchan, for
 * nginx + nchan), in the spirit of redis-benchmark.
 *
 * Runs as its own single-threaded process on one epoll loop; it is not part
 * of the daemon.  It opens N WebSocket connections at a set rate (hand-written
 * client framing: masking, fragments, large frames, ping/pong, close),
 * connects and subscribes them round-robin to C channels (JSON or Protobuf
 * client protocol, anonymous or with an HS256 token), publishes P messages/s for T
 * seconds through the HTTP API over a few keep-alive connections, and
 * measures what arrives: delivered, lost, reordered, latency histogram.
 * Given the server's top pid it samples /proc for the resident memory and
 * CPU time of the whole server process tree.  Loopback addresses only.
 *
 * Phases: connect -> settle (memory sample) -> publish or idle -> drain ->
 * (slow readers resume reading) -> report.  Everything is bounded in count
 * and time.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "b64.h"
#include "buf.h"
#include "xmalloc.h"

#define BENCH_MAX_CONNS 200000
#define BENCH_MAX_CHANNELS 100000
#define BENCH_MAX_PUBCONNS 64
#define BENCH_MAX_MSG (64u << 20)      /* largest WebSocket message accepted */
#define BENCH_MAX_PAYLOAD (1u << 20)
#define BENCH_PUBQ 65536               /* per publisher backlog bound */
#define BENCH_RDBUF (256 * 1024)
#define BENCH_HS_TIMEOUT_NS (10ull * 1000000000ull)
#define NS 1000000000ull

/* ---------------------------------------------------------------- options */

struct bench_opts {
	const char *url;
	const char *api_url;
	const char *api_key;
	const char *token_secret;
	const char *chan_prefix;
	long nconns;
	double rate;
	long nchans;
	double pubs;
	double seconds;
	long payload;
	long pid;
	long slow;
	long slow_rcvbuf;
	long pubconns;
	long pipeline;
	long max_pending;
	double drain;
	int idle;
	int nchan;
	int protobuf;           /* --format protobuf: binary frames, varint-delimited */
	int quiet;
	int pipeline_strict;
};

static struct bench_opts opt = {
	.url = "ws://127.0.0.1:8000/connection/websocket",
	.api_key = "",
	.chan_prefix = "bench",
	.nconns = 100,
	.rate = 1000,
	.nchans = 10,
	.pubs = 100,
	.seconds = 10,
	.payload = 128,
	.pubconns = 4,
	.pipeline = 1,
	.max_pending = 256,
	.drain = 3,
	.slow_rcvbuf = 4096,
};

/* ---------------------------------------------------------------- helpers */

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS + (uint64_t)ts.tv_nsec;
}

static void
die(const char *fmt, ...)
{
	va_list ap;

	fputs("centrifugo-bench: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t
rng32(void)
{
	uint64_t x = rng_state;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	rng_state = x;
	return (uint32_t)(x >> 16);
}

/* Parses an unsigned decimal at p[0..n); returns digits consumed (0 = none). */
static size_t
parse_u64(const char *p, size_t n, uint64_t *out)
{
	size_t i = 0;
	uint64_t v = 0;

	while (i < n && p[i] >= '0' && p[i] <= '9' && i < 20)
		v = v * 10 + (uint64_t)(p[i++] - '0');
	*out = v;
	return i;
}

/* --------------------------------------------------------------- histogram */

/*
 * Log-linear latency histogram in microseconds: exact below 64 µs, then 32
 * sub-buckets per power of two (about 3% resolution).  Fixed array, no
 * allocation per sample.
 */
#define HIST_SUB 32
#define HIST_N (64 + 40 * HIST_SUB)

struct hist {
	uint64_t count;
	uint64_t max;
	uint64_t sum;
	uint64_t b[HIST_N];
};

static unsigned
hist_index(uint64_t v)
{
	int msb, shift;
	unsigned idx;

	if (v < 64)
		return (unsigned)v;
	msb = 63 - __builtin_clzll(v);
	shift = msb - 5;
	idx = 64 + (unsigned)(shift - 1) * HIST_SUB + (unsigned)((v >> shift) - HIST_SUB);
	return idx < HIST_N ? idx : HIST_N - 1;
}

/* Upper bound of the values counted in bucket idx. */
static uint64_t
hist_value(unsigned idx)
{
	unsigned shift, sub;

	if (idx < 64)
		return idx;
	shift = (idx - 64) / HIST_SUB + 1;
	sub = (idx - 64) % HIST_SUB + HIST_SUB;
	return (((uint64_t)sub + 1) << shift) - 1;
}

static void
hist_add(struct hist *h, uint64_t us)
{
	h->b[hist_index(us)]++;
	h->count++;
	h->sum += us;
	if (us > h->max)
		h->max = us;
}

static uint64_t
hist_pct(const struct hist *h, double pct)
{
	uint64_t want, seen = 0;
	unsigned i;

	if (h->count == 0)
		return 0;
	want = (uint64_t)((double)h->count * pct / 100.0 + 0.5);
	if (want < 1)
		want = 1;
	for (i = 0; i < HIST_N; i++) {
		seen += h->b[i];
		if (seen >= want) {
			uint64_t v = hist_value(i);
			return v < h->max ? v : h->max;
		}
	}
	return h->max;
}

/* ------------------------------------------------------- /proc sampling */

struct proc_sample {
	int nproc;
	uint64_t rss_kb;
	uint64_t pss_kb;
	uint64_t ticks;
	uint64_t run_ns;    /* from schedstat; 0 when unavailable */
	int ok;
};

/* CPU time of every thread of pid, in ns, from /proc/PID/task/TID/schedstat. */
static uint64_t
proc_run_ns(pid_t pid)
{
	char path[300];
	struct dirent *d;
	uint64_t sum = 0;
	DIR *dir;

	snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
	dir = opendir(path);
	if (dir == NULL)
		return 0;
	while ((d = readdir(dir)) != NULL) {
		unsigned long long ns = 0;
		FILE *f;

		if (!isdigit((unsigned char)d->d_name[0]))
			continue;
		snprintf(path, sizeof path, "/proc/%d/task/%s/schedstat", (int)pid, d->d_name);
		f = fopen(path, "r");
		if (f == NULL)
			continue;
		if (fscanf(f, "%llu", &ns) == 1)
			sum += ns;
		fclose(f);
	}
	closedir(dir);
	return sum;
}

static uint64_t
status_field_kb(const char *path, const char *key)
{
	char line[256];
	size_t kl = strlen(key);
	uint64_t v = 0;
	FILE *f = fopen(path, "r");

	if (f == NULL)
		return 0;
	while (fgets(line, sizeof line, f) != NULL) {
		if (strncmp(line, key, kl) == 0) {
			v = strtoull(line + kl, NULL, 10);
			break;
		}
	}
	fclose(f);
	return v;
}

/*
 * Samples the process tree rooted at root: sum of VmRSS, of Pss (from
 * smaps_rollup when readable) and of utime+stime in clock ticks.
 */
static void
proc_tree_sample(pid_t root, struct proc_sample *s)
{
	struct ent { pid_t pid, ppid; uint64_t ticks; int in; } *e = NULL;
	size_t n = 0, cap = 0, i;
	struct dirent *d;
	DIR *dir;
	int changed;

	memset(s, 0, sizeof *s);
	if (root <= 0)
		return;
	dir = opendir("/proc");
	if (dir == NULL)
		return;
	while ((d = readdir(dir)) != NULL) {
		char path[300], line[1024], *p;
		unsigned long ut = 0, st = 0;
		int ppid = 0;
		FILE *f;

		if (!isdigit((unsigned char)d->d_name[0]))
			continue;
		snprintf(path, sizeof path, "/proc/%s/stat", d->d_name);
		f = fopen(path, "r");
		if (f == NULL)
			continue;
		p = fgets(line, sizeof line, f);
		fclose(f);
		if (p == NULL || (p = strrchr(line, ')')) == NULL)
			continue;
		/* after ") ": state ppid pgrp session tty tpgid flags minflt
		 * cminflt majflt cmajflt utime stime */
		if (sscanf(p + 2, "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
		    &ppid, &ut, &st) != 3)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 256;
			e = xrealloc(e, cap * sizeof *e);
		}
		e[n].pid = (pid_t)atoi(d->d_name);
		e[n].ppid = ppid;
		e[n].ticks = ut + st;
		e[n].in = e[n].pid == root;
		n++;
	}
	closedir(dir);
	do {
		changed = 0;
		for (i = 0; i < n; i++) {
			size_t j;

			if (e[i].in)
				continue;
			for (j = 0; j < n; j++) {
				if (e[j].in && e[j].pid == e[i].ppid) {
					e[i].in = 1;
					changed = 1;
					break;
				}
			}
		}
	} while (changed);
	for (i = 0; i < n; i++) {
		char path[64];
		uint64_t pss;

		if (!e[i].in)
			continue;
		s->nproc++;
		s->ticks += e[i].ticks;
		s->run_ns += proc_run_ns(e[i].pid);
		snprintf(path, sizeof path, "/proc/%d/status", (int)e[i].pid);
		s->rss_kb += status_field_kb(path, "VmRSS:");
		snprintf(path, sizeof path, "/proc/%d/smaps_rollup", (int)e[i].pid);
		pss = status_field_kb(path, "Pss:");
		s->pss_kb += pss;
	}
	s->ok = s->nproc > 0;
	free(e);
}

/* ------------------------------------------------------------ addresses */

struct endpoint {
	struct sockaddr_storage sa;
	socklen_t salen;
	char host[160];     /* Host header value, host:port */
	char path[512];
};

/* Parses scheme://host[:port]/path; refuses anything but loopback. */
static void
endpoint_parse(struct endpoint *ep, const char *url, const char *scheme)
{
	char host[128], port[16] = "80";
	const char *p, *slash, *colon, *hend;
	struct addrinfo hints, *res;
	size_t sl = strlen(scheme);
	int rc;

	memset(ep, 0, sizeof *ep);
	if (strncmp(url, scheme, sl) != 0 || strncmp(url + sl, "://", 3) != 0)
		die("URL %s: expected %s://host:port/path", url, scheme);
	p = url + sl + 3;
	slash = strchr(p, '/');
	hend = slash ? slash : p + strlen(p);
	colon = memchr(p, ':', (size_t)(hend - p));
	if ((colon ? colon : hend) - p <= 0 || (colon ? colon : hend) - p >= (long)sizeof host)
		die("URL %s: bad host", url);
	memcpy(host, p, (size_t)((colon ? colon : hend) - p));
	host[(colon ? colon : hend) - p] = 0;
	if (colon) {
		if (hend - colon - 1 <= 0 || hend - colon - 1 >= (long)sizeof port)
			die("URL %s: bad port", url);
		memcpy(port, colon + 1, (size_t)(hend - colon - 1));
		port[hend - colon - 1] = 0;
	}
	snprintf(ep->host, sizeof ep->host, "%s:%s", host, port);
	snprintf(ep->path, sizeof ep->path, "%s", slash ? slash : "/");
	memset(&hints, 0, sizeof hints);
	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0)
		die("URL %s: %s", url, gai_strerror(rc));
	memcpy(&ep->sa, res->ai_addr, res->ai_addrlen);
	ep->salen = res->ai_addrlen;
	freeaddrinfo(res);
	if (ep->sa.ss_family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ep->sa;
		if ((ntohl(sin->sin_addr.s_addr) >> 24) != 127)
			die("URL %s: only loopback addresses are allowed", url);
	} else if (ep->sa.ss_family == AF_INET6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ep->sa;
		if (!IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr))
			die("URL %s: only loopback addresses are allowed", url);
	} else {
		die("URL %s: unsupported address family", url);
	}
}

/* Non-blocking connect; returns the fd or -1 with errno set. */
static int
endpoint_connect(const struct endpoint *ep, int rcvbuf)
{
	int fd = socket(ep->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;

	if (fd < 0)
		return -1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (rcvbuf > 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
	if (connect(fd, (const struct sockaddr *)&ep->sa, ep->salen) < 0 &&
	    errno != EINPROGRESS) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/* Closes with RST so that no TIME_WAIT state eats loopback ports. */
static void
close_hard(int fd)
{
	struct linger lg = { 1, 0 };

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
	close(fd);
}

/* ------------------------------------------------------------ state */

enum ws_state {
	WS_NEW = 0,         /* not started */
	WS_CONNECTING,      /* TCP connect in progress */
	WS_UPGRADING,       /* HTTP upgrade sent, waiting for 101 */
	WS_SUBSCRIBING,     /* connect+subscribe sent, waiting for replies */
	WS_READY,           /* subscribed: counting publications */
	WS_FAILED,          /* never became ready */
	WS_CLOSED,          /* was ready, then closed by the server or an error */
};

struct wsconn {
	int fd;
	uint8_t state;
	uint8_t pong;       /* connect result said pong:true */
	uint8_t slow;       /* stops reading once subscribed */
	uint8_t msg_op;     /* opcode of the message being reassembled */
	uint8_t reading;    /* EPOLLIN registered */
	uint8_t out_wait;   /* EPOLLOUT registered */
	uint8_t got_close;
	uint32_t chan;
	uint64_t t_start;
	uint64_t last_seq;
	uint64_t seen;      /* bit i: publication last_seq - i arrived */
	struct buf in;      /* unparsed bytes (only when a frame is partial) */
	struct buf msg;     /* fragmented message being reassembled */
	struct buf out;     /* unsent bytes */
};

struct pubreq {
	uint32_t chan;
	uint64_t seq;
};

struct pubconn {
	int fd;
	int connected;
	int out_wait;
	struct buf out;
	struct buf in;
	uint32_t *q;                    /* pending channel indexes (ring) */
	size_t qhead, qlen;
	struct pubreq inflight[64];     /* ring of requests awaiting replies */
	unsigned ihead, ilen;
	uint64_t retry_at;              /* reconnect backoff */
};

enum phase {
	PH_CONNECT = 0,
	PH_SETTLE,
	PH_PUBLISH,
	PH_IDLE,
	PH_DRAIN,
	PH_SLOW,
	PH_DONE,
};

static const char *const phase_name[] = {
	"connect", "settle", "publish", "idle", "drain", "slow", "done",
};

struct stats {
	uint64_t conns_started, conns_ok, conns_failed, conns_closed;
	uint64_t slow_cut, slow_open;
	uint64_t pubs_sent, pubs_ok, pubs_failed, pubs_dropped;
	uint64_t delivered, lost_gap, lost_end, reordered, duplicated, wrong_chan, bad_msg;
	uint64_t pings, pongs, disconnect_pushes;
	uint64_t expected;
	struct hist lat;
	struct hist lat_sec;
	uint64_t max_pub_backlog;
};

static struct endpoint ws_ep, api_ep;
static struct wsconn *conns;
static struct pubconn pubc[BENCH_MAX_PUBCONNS];
static uint64_t *chan_seq;      /* last sequence sent per channel */
static uint64_t *chan_ok_max;   /* highest acknowledged sequence per channel */
static uint32_t *chan_readers;  /* ready, reading connections per channel */
static struct stats st;
static int epfd;
static enum phase phase;
static long next_conn;          /* index of the next connection to start */
static long pending;            /* connections between start and ready/failed */
static uint64_t t_begin, t_pub_start, t_pub_end;
static uint64_t pubs_scheduled;
static char *rdbuf;
static char first_error[256];
static volatile sig_atomic_t interrupted;

#define TAG_PUB (1ull << 40)

static void
note_error(const char *fmt, ...)
{
	va_list ap;

	if (first_error[0])
		return;
	va_start(ap, fmt);
	vsnprintf(first_error, sizeof first_error, fmt, ap);
	va_end(ap);
}

static void
ep_set(int fd, uint64_t tag, uint32_t events, int add)
{
	struct epoll_event ev;

	ev.events = events;
	ev.data.u64 = tag;
	if (epoll_ctl(epfd, add ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &ev) < 0)
		die("epoll_ctl(%d): %s", fd, strerror(errno));
}

/* ------------------------------------------------------- payloads, tokens */

/* Appends the publication body: {"b":[seq,chan,ts],"p":"xx..."}, padded. */
static void
payload_build(struct buf *b, uint32_t chan, uint64_t seq, uint64_t ts)
{
	size_t start = b->len, used;
	long pad;

	buf_printf(b, "{\"b\":[%" PRIu64 ",%u,%" PRIu64 "],\"p\":\"", seq, chan, ts);
	used = b->len - start + 2;
	pad = opt.payload - (long)used;
	if (pad > 0) {
		buf_reserve(b, (size_t)pad);
		memset(b->data + b->len, 'x', (size_t)pad);
		b->len += (size_t)pad;
	}
	buf_puts(b, "\"}");
}

static void
chan_name(struct buf *b, uint32_t chan)
{
	buf_printf(b, "%s%u", opt.chan_prefix, chan);
}

/* HS256 JWT {"sub":"bench<i>"}; appended to b. */
static void
token_build(struct buf *b, long i)
{
	struct buf hp = BUF_INIT, js = BUF_INIT;
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	static const char hdr[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";

	b64_encode(hdr, sizeof hdr - 1, 1, &hp);
	buf_putc(&hp, '.');
	buf_printf(&js, "{\"sub\":\"bench%ld\"}", i);
	b64_encode(js.data, js.len, 1, &hp);
	if (HMAC(EVP_sha256(), opt.token_secret, (int)strlen(opt.token_secret),
	    (const unsigned char *)hp.data, hp.len, mac, &maclen) == NULL)
		die("HMAC failed");
	buf_append(b, hp.data, hp.len);
	buf_putc(b, '.');
	b64_encode(mac, maclen, 1, b);
	buf_free(&hp);
	buf_free(&js);
}

/* ------------------------------------------------------- WebSocket client */

static void ws_fail(struct wsconn *c, const char *why);

static void
ws_key(long i, struct buf *out)
{
	unsigned char raw[16];
	uint64_t x = (uint64_t)i * 0x9e3779b97f4a7c15ull + 12345;
	int k;

	for (k = 0; k < 16; k++) {
		x ^= x << 13; x ^= x >> 7; x ^= x << 17;
		raw[k] = (unsigned char)x;
	}
	b64_encode(raw, sizeof raw, 0, out);
}

static int
ws_flush(struct wsconn *c)
{
	while (c->out.len > 0) {
		ssize_t w = send(c->fd, c->out.data, c->out.len, MSG_NOSIGNAL);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			return -1;
		}
		memmove(c->out.data, c->out.data + w, c->out.len - (size_t)w);
		c->out.len -= (size_t)w;
	}
	if ((c->out.len > 0) != c->out_wait) {
		c->out_wait = c->out.len > 0;
		ep_set(c->fd, (uint64_t)(c - conns),
		    (c->reading ? EPOLLIN : 0) | EPOLLRDHUP | (c->out_wait ? EPOLLOUT : 0), 0);
	}
	if (c->out.len == 0 && c->out.cap > 4096)
		buf_free(&c->out);
	return 0;
}

/* Queues one masked frame (client frames must be masked, RFC 6455 5.3). */
static void
ws_frame(struct wsconn *c, int op, const void *p, size_t n)
{
	unsigned char hdr[14];
	size_t h = 0, i;
	uint32_t m = rng32();
	unsigned char mk[4] = { (unsigned char)m, (unsigned char)(m >> 8),
		(unsigned char)(m >> 16), (unsigned char)(m >> 24) };
	const unsigned char *src = p;
	unsigned char *dst;

	hdr[h++] = (unsigned char)(0x80 | op);
	if (n < 126) {
		hdr[h++] = (unsigned char)(0x80 | n);
	} else if (n < 65536) {
		hdr[h++] = 0x80 | 126;
		hdr[h++] = (unsigned char)(n >> 8);
		hdr[h++] = (unsigned char)n;
	} else {
		int k;
		hdr[h++] = 0x80 | 127;
		for (k = 7; k >= 0; k--)
			hdr[h++] = (unsigned char)((uint64_t)n >> (k * 8));
	}
	memcpy(hdr + h, mk, 4);
	h += 4;
	buf_append(&c->out, hdr, h);
	buf_reserve(&c->out, n);
	dst = (unsigned char *)c->out.data + c->out.len;
	for (i = 0; i < n; i++)
		dst[i] = src[i] ^ mk[i & 3];
	c->out.len += n;
}

static void
ws_stop_reading(struct wsconn *c)
{
	c->reading = 0;
	ep_set(c->fd, (uint64_t)(c - conns), EPOLLRDHUP | (c->out_wait ? EPOLLOUT : 0), 0);
}

static void
ws_became_ready(struct wsconn *c)
{
	c->state = WS_READY;
	pending--;
	st.conns_ok++;
	if (!c->slow)
		chan_readers[c->chan]++;
	else
		ws_stop_reading(c);
}

static void
ws_fail(struct wsconn *c, const char *why)
{
	if (c->state == WS_READY) {
		if (c->slow) {
			st.slow_cut++;
		} else {
			st.conns_closed++;
			chan_readers[c->chan]--;
			note_error("connection %ld closed: %s", (long)(c - conns), why);
		}
		c->state = WS_CLOSED;
	} else if (c->state != WS_FAILED && c->state != WS_CLOSED) {
		st.conns_failed++;
		pending--;
		c->state = WS_FAILED;
		note_error("connection %ld failed: %s", (long)(c - conns), why);
	}
	if (c->fd >= 0) {
		close_hard(c->fd);
		c->fd = -1;
	}
	buf_free(&c->in);
	buf_free(&c->msg);
	buf_free(&c->out);
}

static void
ws_start(long i)
{
	struct wsconn *c = &conns[i];

	c->chan = (uint32_t)(i % opt.nchans);
	c->slow = opt.slow > 0 && i >= opt.nconns - opt.slow;
	c->t_start = now_ns();
	c->fd = endpoint_connect(&ws_ep, c->slow ? (int)opt.slow_rcvbuf : 0);
	st.conns_started++;
	pending++;
	c->state = WS_CONNECTING;
	if (c->fd < 0) {
		ws_fail(c, strerror(errno));
		return;
	}
	c->reading = 1;
	c->out_wait = 1;
	ep_set(c->fd, (uint64_t)i, EPOLLIN | EPOLLOUT | EPOLLRDHUP, 1);
}

static void
ws_send_upgrade(struct wsconn *c)
{
	struct buf *o = &c->out;

	buf_puts(o, "GET ");
	buf_puts(o, ws_ep.path);
	if (opt.nchan)
		chan_name(o, c->chan);
	else if (opt.protobuf)
		buf_puts(o, strchr(ws_ep.path, '?') ? "&format=protobuf" : "?format=protobuf");
	buf_puts(o, " HTTP/1.1\r\nHost: ");
	buf_puts(o, ws_ep.host);
	buf_puts(o, "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
	    "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ");
	ws_key(c - conns, o);
	buf_puts(o, "\r\n\r\n");
	c->state = WS_UPGRADING;
}

/* ---------------------------------------------- protobuf client protocol */

static void
pb_varint(struct buf *b, uint64_t v)
{
	while (v >= 0x80) {
		buf_putc(b, (char)(v | 0x80));
		v >>= 7;
	}
	buf_putc(b, (char)v);
}

/* Appends field `num` of wire type LEN holding p[0..n). */
static void
pb_bytes(struct buf *b, unsigned num, const void *p, size_t n)
{
	pb_varint(b, (uint64_t)num << 3 | 2);
	pb_varint(b, n);
	buf_append(b, p, n);
}

/* Reads a varint at *off in p[0..n); 0 on success, -1 if malformed. */
static int
pb_read_varint(const unsigned char *p, size_t n, size_t *off, uint64_t *v)
{
	unsigned shift = 0;

	*v = 0;
	while (*off < n && shift < 64) {
		unsigned char b = p[(*off)++];

		*v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return 0;
		shift += 7;
	}
	return -1;
}

/*
 * Next field of a message: its number, and for LEN fields where its bytes
 * are (*val = 0 then), for varints its value.  Returns 1 for a field, 0 at
 * the end, -1 if malformed.  Fixed-width fields are skipped over.
 */
static int
pb_next(const unsigned char *p, size_t n, size_t *off, unsigned *num,
    const unsigned char **data, size_t *len, uint64_t *val)
{
	uint64_t key, v;

	for (;;) {
		if (*off == n)
			return 0;
		if (pb_read_varint(p, n, off, &key) < 0)
			return -1;
		*num = (unsigned)(key >> 3);
		*data = NULL;
		*len = 0;
		switch (key & 7) {
		case 0:
			if (pb_read_varint(p, n, off, val) < 0)
				return -1;
			return 1;
		case 2:
			if (pb_read_varint(p, n, off, &v) < 0 || v > n - *off)
				return -1;
			*data = p + *off;
			*len = (size_t)v;
			*off += (size_t)v;
			*val = 0;
			return 1;
		case 1:
			if (n - *off < 8)
				return -1;
			*off += 8;
			break;
		case 5:
			if (n - *off < 4)
				return -1;
			*off += 4;
			break;
		default:
			return -1;
		}
	}
}

/* The LEN field `want` of message p[0..n), or NULL. */
static const unsigned char *
pb_field(const unsigned char *p, size_t n, unsigned want, size_t *len)
{
	const unsigned char *d;
	size_t off = 0, l;
	unsigned num;
	uint64_t v;

	while (pb_next(p, n, &off, &num, &d, &l, &v) == 1)
		if (num == want && d != NULL) {
			*len = l;
			return d;
		}
	return NULL;
}

/* Command{id:1, connect:{token}} and Command{id:2, subscribe:{channel}}. */
static void
pb_connect_subscribe(struct wsconn *c, struct buf *f)
{
	struct buf cmd = BUF_INIT, req = BUF_INIT, tok = BUF_INIT;

	if (opt.token_secret != NULL) {
		token_build(&tok, c - conns);
		pb_bytes(&req, 1, tok.data, tok.len);           /* ConnectRequest.token */
	}
	pb_varint(&cmd, 1 << 3);                                /* Command.id = 1 */
	pb_varint(&cmd, 1);
	pb_bytes(&cmd, 4, req.data, req.len);                   /* Command.connect */
	pb_varint(f, cmd.len);
	buf_append(f, cmd.data, cmd.len);
	buf_reset(&cmd);
	buf_reset(&req);
	buf_reset(&tok);
	chan_name(&tok, c->chan);
	pb_bytes(&req, 1, tok.data, tok.len);                   /* SubscribeRequest.channel */
	pb_varint(&cmd, 1 << 3);                                /* Command.id = 2 */
	pb_varint(&cmd, 2);
	pb_bytes(&cmd, 5, req.data, req.len);                   /* Command.subscribe */
	pb_varint(f, cmd.len);
	buf_append(f, cmd.data, cmd.len);
	buf_free(&cmd);
	buf_free(&req);
	buf_free(&tok);
}

static void ws_on_publication(struct wsconn *c, const char *p, size_t n, uint64_t now);

/* One Reply of the Protobuf protocol (an empty one is a ping). */
static void
pb_on_reply(struct wsconn *c, const unsigned char *p, size_t n, uint64_t now)
{
	const unsigned char *d, *push = NULL, *err = NULL, *conn = NULL;
	size_t off = 0, l, pushlen = 0, connlen = 0, errlen = 0;
	int subscribed = 0, r;
	uint64_t v, id = 0;
	unsigned num;

	if (n == 0) {
		st.pings++;
		if (c->pong) {
			static const char empty_command = 0;    /* its length, 0 */

			ws_frame(c, 2, &empty_command, 1);
			st.pongs++;
		}
		return;
	}
	while ((r = pb_next(p, n, &off, &num, &d, &l, &v)) == 1) {
		if (num == 1 && d == NULL)
			id = v;
		else if (num == 2 && d != NULL)
			err = d, errlen = l;
		else if (num == 4 && d != NULL)
			push = d, pushlen = l;
		else if (num == 5 && d != NULL)
			conn = d, connlen = l;
		else if (num == 6 && d != NULL)
			subscribed = 1;
	}
	if (r < 0) {
		st.bad_msg++;
		return;
	}
	if (err != NULL) {
		const unsigned char *msg;
		uint64_t code = 0;
		char why[200];

		off = 0;
		while (pb_next(err, errlen, &off, &num, &d, &l, &v) == 1 && code == 0)
			if (num == 1 && d == NULL)
				code = v;
		l = 0;
		msg = pb_field(err, errlen, 2, &l);
		snprintf(why, sizeof why, "reply %" PRIu64 " error %" PRIu64 " %.*s", id, code,
		    (int)(l > 120 ? 120 : l), msg ? (const char *)msg : "");
		ws_fail(c, why);
		return;
	}
	if (push != NULL) {
		const unsigned char *pub = pb_field(push, pushlen, 4, &l);

		if (pub != NULL && (d = pb_field(pub, l, 4, &l)) != NULL)
			ws_on_publication(c, (const char *)d, l, now);
		else if (pb_field(push, pushlen, 11, &l) != NULL)
			st.disconnect_pushes++;
		else if (pub != NULL)
			st.bad_msg++;
		return;
	}
	if (id == 1 && conn != NULL) {
		size_t o = 0;

		while (pb_next(conn, connlen, &o, &num, &d, &l, &v) == 1)
			if (num == 8 && d == NULL)
				c->pong = v != 0;           /* ConnectResult.pong */
	} else if (id == 2 && subscribed && c->state == WS_SUBSCRIBING) {
		ws_became_ready(c);
	}
}

/* A binary message: varint-delimited Replies. */
static void
pb_on_message(struct wsconn *c, const char *p, size_t n, uint64_t now)
{
	const unsigned char *u = (const unsigned char *)p;
	size_t off = 0;
	uint64_t len;

	while (off < n) {
		if (pb_read_varint(u, n, &off, &len) < 0 || len > n - off) {
			ws_fail(c, "malformed Protobuf reply stream");
			return;
		}
		pb_on_reply(c, u + off, (size_t)len, now);
		if (c->fd < 0)
			return;
		off += (size_t)len;
	}
}

static void
ws_send_subscribe(struct wsconn *c)
{
	struct buf f = BUF_INIT;

	if (opt.protobuf) {
		pb_connect_subscribe(c, &f);
		ws_frame(c, 2, f.data, f.len);
		buf_free(&f);
		c->state = WS_SUBSCRIBING;
		return;
	}
	buf_puts(&f, "{\"connect\":{");
	if (opt.token_secret != NULL) {
		buf_puts(&f, "\"token\":\"");
		token_build(&f, c - conns);
		buf_puts(&f, "\"");
	}
	buf_puts(&f, "},\"id\":1}\n{\"subscribe\":{\"channel\":\"");
	chan_name(&f, c->chan);
	buf_puts(&f, "\"},\"id\":2}");
	ws_frame(c, 1, f.data, f.len);
	buf_free(&f);
	c->state = WS_SUBSCRIBING;
}

/* One publication body as received (JSON data of a push, or an nchan message). */
static void
ws_on_publication(struct wsconn *c, const char *p, size_t n, uint64_t now)
{
	const char *m = memmem(p, n, "\"b\":[", 5);
	uint64_t seq, ch, ts;
	size_t k, off;

	if (m == NULL) {
		st.bad_msg++;
		return;
	}
	off = (size_t)(m - p) + 5;
	if ((k = parse_u64(p + off, n - off, &seq)) == 0 || off + k >= n || p[off + k] != ',')
		goto bad;
	off += k + 1;
	if ((k = parse_u64(p + off, n - off, &ch)) == 0 || off + k >= n || p[off + k] != ',')
		goto bad;
	off += k + 1;
	if ((k = parse_u64(p + off, n - off, &ts)) == 0)
		goto bad;
	if (ch != c->chan) {
		st.wrong_chan++;
		return;
	}
	if (c->slow)
		return;
	st.delivered++;
	if (now > ts) {
		hist_add(&st.lat, (now - ts) / 1000);
		hist_add(&st.lat_sec, (now - ts) / 1000);
	} else {
		hist_add(&st.lat, 0);
		hist_add(&st.lat_sec, 0);
	}
	if (seq > c->last_seq) {
		uint64_t d = seq - c->last_seq;

		st.lost_gap += d - 1;
		c->seen = d >= 64 ? 1 : (c->seen << d) | 1;
		c->last_seq = seq;
	} else {
		uint64_t d = c->last_seq - seq;

		if (d < 64 && (c->seen >> d & 1)) {
			st.duplicated++;
		} else {
			/* late: it was counted as a gap when a newer one came */
			st.reordered++;
			if (d < 64) {
				c->seen |= 1ull << d;
				st.lost_gap--;
			}
		}
	}
	return;
bad:
	st.bad_msg++;
}

/* One line of the JSON client protocol (reply, push or ping). */
static void
ws_on_line(struct wsconn *c, const char *p, size_t n, uint64_t now)
{
	uint64_t id = 0;
	const char *m;

	if (n == 2 && p[0] == '{' && p[1] == '}') {
		st.pings++;
		if (c->pong) {
			ws_frame(c, 1, "{}", 2);
			st.pongs++;
		}
		return;
	}
	if (n >= 8 && memcmp(p, "{\"push\":", 8) == 0) {
		if (memmem(p, n, "\"pub\":", 6) != NULL)
			ws_on_publication(c, p, n, now);
		else if (memmem(p, n, "\"disconnect\":", 13) != NULL)
			st.disconnect_pushes++;
		return;
	}
	m = memmem(p, n, "\"id\":", 5);
	if (m != NULL)
		parse_u64(m + 5, n - (size_t)(m + 5 - p), &id);
	if (memmem(p, n, "\"error\":", 8) != NULL) {
		char why[200];
		snprintf(why, sizeof why, "reply %.*s", (int)(n > 150 ? 150 : n), p);
		ws_fail(c, why);
		return;
	}
	if (id == 1) {
		if (memmem(p, n, "\"pong\":true", 11) != NULL)
			c->pong = 1;
	} else if (id == 2 && c->state == WS_SUBSCRIBING) {
		ws_became_ready(c);
	}
}

static void
ws_on_message(struct wsconn *c, const char *p, size_t n, uint64_t now)
{
	size_t s = 0, i;

	if (opt.nchan) {
		ws_on_publication(c, p, n, now);
		return;
	}
	if (opt.protobuf) {
		pb_on_message(c, p, n, now);
		return;
	}
	for (i = 0; i <= n; i++) {
		if (i == n || p[i] == '\n') {
			if (i > s)
				ws_on_line(c, p + s, i - s, now);
			if (c->fd < 0)
				return;
			s = i + 1;
		}
	}
}

/*
 * Parses complete frames from p[0..n); returns bytes consumed or -1 when the
 * connection was failed.
 */
static long
ws_parse_frames(struct wsconn *c, const char *p, size_t n, uint64_t now)
{
	size_t off = 0;

	while (n - off >= 2) {
		const unsigned char *h = (const unsigned char *)p + off;
		int fin = h[0] & 0x80, op = h[0] & 0x0f, masked = h[1] & 0x80;
		uint64_t len = h[1] & 0x7f;
		size_t hl = 2;
		char *payload;

		if (len == 126) {
			if (n - off < 4)
				break;
			len = (uint64_t)h[2] << 8 | h[3];
			hl = 4;
		} else if (len == 127) {
			int k;
			if (n - off < 10)
				break;
			len = 0;
			for (k = 0; k < 8; k++)
				len = len << 8 | h[2 + k];
			hl = 10;
		}
		if (masked)
			hl += 4;
		if (len > BENCH_MAX_MSG) {
			ws_fail(c, "frame too large");
			return -1;
		}
		if (n - off < hl + len)
			break;
		payload = (char *)p + off + hl;
		if (masked) {
			const unsigned char *mk = h + hl - 4;
			uint64_t i;
			for (i = 0; i < len; i++)
				payload[i] ^= (char)mk[i & 3];
		}
		off += hl + (size_t)len;
		if (op >= 8) {
			if (!fin || len > 125) {
				ws_fail(c, "bad control frame");
				return -1;
			}
			if (op == 8) {
				char why[160];
				unsigned code = len >= 2 ?
				    ((unsigned char)payload[0] << 8 | (unsigned char)payload[1]) : 0;
				snprintf(why, sizeof why, "close frame %u %.*s", code,
				    (int)(len > 2 ? len - 2 : 0), payload + 2);
				c->got_close = 1;
				ws_frame(c, 8, payload, len >= 2 ? 2 : 0);
				ws_flush(c);
				ws_fail(c, why);
				return -1;
			} else if (op == 9) {
				ws_frame(c, 10, payload, (size_t)len);
			} else if (op != 10) {
				ws_fail(c, "unknown control opcode");
				return -1;
			}
			continue;
		}
		if (op == 0) {
			if (c->msg_op == 0) {
				ws_fail(c, "continuation without a message");
				return -1;
			}
			if (c->msg.len + len > BENCH_MAX_MSG) {
				ws_fail(c, "message too large");
				return -1;
			}
			buf_append(&c->msg, payload, (size_t)len);
			if (fin) {
				ws_on_message(c, c->msg.data, c->msg.len, now);
				if (c->fd < 0)
					return -1;
				buf_free(&c->msg);
				c->msg_op = 0;
			}
		} else if (op == 1 || op == 2) {
			if (c->msg_op != 0) {
				ws_fail(c, "new message inside a fragmented one");
				return -1;
			}
			if (fin) {
				ws_on_message(c, payload, (size_t)len, now);
				if (c->fd < 0)
					return -1;
			} else {
				c->msg_op = (uint8_t)op;
				buf_append(&c->msg, payload, (size_t)len);
			}
		} else {
			ws_fail(c, "unknown data opcode");
			return -1;
		}
	}
	return (long)off;
}

/* Parses the 101 response in c->in; returns bytes used, 0 if incomplete, -1 failed. */
static long
ws_parse_upgrade(struct wsconn *c)
{
	char *end = memmem(c->in.data, c->in.len, "\r\n\r\n", 4);
	struct buf key = BUF_INIT, acc = BUF_INIT;
	unsigned char sha[SHA_DIGEST_LENGTH];
	const char *h;
	int ok;

	if (end == NULL) {
		if (c->in.len > 16384) {
			ws_fail(c, "upgrade response too large");
			return -1;
		}
		return 0;
	}
	*end = 0;
	if (strncmp(c->in.data, "HTTP/1.1 101", 12) != 0) {
		char why[128];
		char *eol = strchr(c->in.data, '\r');
		if (eol)
			*eol = 0;
		snprintf(why, sizeof why, "upgrade refused: %.100s", c->in.data);
		ws_fail(c, why);
		return -1;
	}
	ws_key(c - conns, &key);
	buf_puts(&key, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
	SHA1((const unsigned char *)key.data, key.len, sha);
	b64_encode(sha, sizeof sha, 0, &acc);
	h = strcasestr(c->in.data, "\nSec-WebSocket-Accept:");
	ok = 0;
	if (h != NULL) {
		h += 22;
		while (*h == ' ')
			h++;
		ok = strncmp(h, acc.data, acc.len) == 0;
	}
	buf_free(&key);
	buf_free(&acc);
	if (!ok) {
		ws_fail(c, "bad or missing Sec-WebSocket-Accept");
		return -1;
	}
	if (opt.nchan)
		ws_became_ready(c);
	else
		ws_send_subscribe(c);
	return end + 4 - c->in.data;
}

static void
ws_on_data(struct wsconn *c, const char *p, size_t n, uint64_t now)
{
	long used;

	if (c->in.len == 0 && c->state != WS_UPGRADING) {
		used = ws_parse_frames(c, p, n, now);
		if (used < 0)
			return;
		if ((size_t)used < n)
			buf_append(&c->in, p + used, n - (size_t)used);
		return;
	}
	buf_append(&c->in, p, n);
	if (c->state == WS_UPGRADING) {
		used = ws_parse_upgrade(c);
		if (used <= 0)
			return;
		memmove(c->in.data, c->in.data + used, c->in.len - (size_t)used);
		c->in.len -= (size_t)used;
	}
	used = ws_parse_frames(c, c->in.data, c->in.len, now);
	if (used < 0)
		return;
	memmove(c->in.data, c->in.data + used, c->in.len - (size_t)used);
	c->in.len -= (size_t)used;
	if (c->in.len == 0 && c->in.cap > 65536)
		buf_free(&c->in);
}

static void
ws_event(struct wsconn *c, uint32_t ev)
{
	if (c->fd < 0)
		return;
	if (c->state == WS_CONNECTING && (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
		int err = 0;
		socklen_t el = sizeof err;

		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
		if (err != 0) {
			ws_fail(c, strerror(err));
			return;
		}
		ws_send_upgrade(c);
	}
	if ((ev & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP)) && c->reading) {
		uint64_t now = now_ns();
		int rounds = 0;

		for (;;) {
			ssize_t r = recv(c->fd, rdbuf, BENCH_RDBUF, 0);

			if (r > 0) {
				ws_on_data(c, rdbuf, (size_t)r, now);
				if (c->fd < 0)
					return;
				if ((size_t)r < BENCH_RDBUF || ++rounds >= 4)
					break;
				continue;
			}
			if (r == 0) {
				ws_fail(c, "EOF");
				return;
			}
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			ws_fail(c, strerror(errno));
			return;
		}
	} else if ((ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) && !c->reading) {
		/* a non-reading (slow) connection: the peer hung up */
		ws_fail(c, "hang-up while not reading");
		return;
	}
	if (c->fd >= 0 && ws_flush(c) < 0)
		ws_fail(c, strerror(errno));
}

/* ------------------------------------------------------------ publisher */

static void
pub_connect(struct pubconn *pc, int idx)
{
	pc->fd = endpoint_connect(&api_ep, 0);
	if (pc->fd < 0) {
		note_error("publisher connect: %s", strerror(errno));
		return;
	}
	pc->connected = 0;
	pc->out_wait = 1;
	ep_set(pc->fd, TAG_PUB | (uint64_t)idx, EPOLLIN | EPOLLOUT | EPOLLRDHUP, 1);
}

static void
pub_close(struct pubconn *pc, const char *why)
{
	if (pc->fd >= 0) {
		close_hard(pc->fd);
		pc->fd = -1;
	}
	if (pc->ilen > 0)
		note_error("publisher connection lost with %u requests in flight: %s", pc->ilen, why);
	st.pubs_failed += pc->ilen;
	pc->ilen = 0;
	pc->connected = 0;
	buf_reset(&pc->in);
	buf_reset(&pc->out);
}

static int
pub_flush(struct pubconn *pc, int idx)
{
	while (pc->out.len > 0) {
		ssize_t w = send(pc->fd, pc->out.data, pc->out.len, MSG_NOSIGNAL);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			return -1;
		}
		memmove(pc->out.data, pc->out.data + w, pc->out.len - (size_t)w);
		pc->out.len -= (size_t)w;
	}
	if ((pc->out.len > 0) != pc->out_wait) {
		pc->out_wait = pc->out.len > 0;
		ep_set(pc->fd, TAG_PUB | (uint64_t)idx,
		    EPOLLIN | EPOLLRDHUP | (pc->out_wait ? EPOLLOUT : 0), 0);
	}
	return 0;
}

/* Sends queued publications while the pipeline has room. */
static void
pub_pump(struct pubconn *pc, int idx)
{
	struct buf body = BUF_INIT;

	if (pc->fd < 0 && pc->qlen > 0 && now_ns() >= pc->retry_at) {
		pc->retry_at = now_ns() + NS / 10;
		pub_connect(pc, idx);
	}
	if (pc->fd < 0 || !pc->connected)
		return;
	while (pc->qlen > 0 && pc->ilen < (unsigned)opt.pipeline) {
		uint32_t ch = pc->q[pc->qhead];
		uint64_t seq = ++chan_seq[ch];
		struct pubreq *r;

		pc->qhead = (pc->qhead + 1) % BENCH_PUBQ;
		pc->qlen--;
		buf_reset(&body);
		if (!opt.nchan) {
			buf_puts(&body, "{\"channel\":\"");
			chan_name(&body, ch);
			buf_puts(&body, "\",\"data\":");
		}
		payload_build(&body, ch, seq, now_ns());
		if (!opt.nchan)
			buf_putc(&body, '}');
		buf_puts(&pc->out, "POST ");
		buf_puts(&pc->out, api_ep.path);
		if (opt.nchan)
			chan_name(&pc->out, ch);
		buf_printf(&pc->out, " HTTP/1.1\r\nHost: %s\r\n", api_ep.host);
		if (!opt.nchan)
			buf_printf(&pc->out, "X-API-Key: %s\r\nContent-Type: application/json\r\n",
			    opt.api_key);
		buf_printf(&pc->out, "Content-Length: %zu\r\n\r\n", body.len);
		buf_append(&pc->out, body.data, body.len);
		r = &pc->inflight[(pc->ihead + pc->ilen) % 64];
		r->chan = ch;
		r->seq = seq;
		pc->ilen++;
		st.pubs_sent++;
	}
	buf_free(&body);
	if (pub_flush(pc, idx) < 0)
		pub_close(pc, strerror(errno));
}

/*
 * Parses one HTTP response at the start of pc->in.  Returns bytes used,
 * 0 if incomplete, -1 if malformed; *ok says whether it reports success,
 * *close whether the server will close the connection.
 */
static long
pub_parse_response(struct pubconn *pc, int *ok, int *cclose)
{
	char *p = pc->in.data, *hend, *line, *body;
	size_t n = pc->in.len, bl = 0;
	long clen = -1;
	int status, chunked = 0;

	if (n == 0 || (hend = memmem(p, n, "\r\n\r\n", 4)) == NULL)
		return n > 65536 ? -1 : 0;
	if (n < 12 || strncmp(p, "HTTP/1.", 7) != 0)
		return -1;
	status = atoi(p + 9);
	*cclose = 0;
	for (line = memchr(p, '\n', (size_t)(hend - p)); line && line < hend;
	    line = memchr(line + 1, '\n', (size_t)(hend - line))) {
		const char *l = line + 1;
		if (strncasecmp(l, "Content-Length:", 15) == 0)
			clen = strtol(l + 15, NULL, 10);
		else if (strncasecmp(l, "Transfer-Encoding:", 18) == 0 &&
		    strncasecmp(l + 18 + strspn(l + 18, " "), "chunked", 7) == 0)
			chunked = 1;
		else if (strncasecmp(l, "Connection:", 11) == 0 &&
		    strncasecmp(l + 11 + strspn(l + 11, " "), "close", 5) == 0)
			*cclose = 1;
	}
	body = hend + 4;
	if (chunked) {
		char *q = body;
		for (;;) {
			char *eol = memmem(q, n - (size_t)(q - p), "\r\n", 2);
			unsigned long sz;
			if (eol == NULL)
				return 0;
			sz = strtoul(q, NULL, 16);
			if (sz == 0) {
				char *fin = memmem(eol, n - (size_t)(eol - p), "\r\n\r\n", 4);
				if (fin == NULL)
					return 0;
				bl = (size_t)(eol - body);
				q = fin + 4;
				break;
			}
			if ((size_t)(eol + 2 - p) + sz + 2 > n)
				return 0;
			q = eol + 2 + sz + 2;
		}
		*ok = status >= 200 && status < 300 &&
		    memmem(body, bl, "\"error\"", 7) == NULL;
		return q - p;
	}
	if (clen < 0)
		clen = (status == 204 || status == 304) ? 0 : -1;
	if (clen < 0) {
		/* body until close: wait for EOF (handled by the caller) */
		*cclose = 1;
		return 0;
	}
	if ((size_t)(body - p) + (size_t)clen > n)
		return 0;
	bl = (size_t)clen;
	*ok = status >= 200 && status < 300 && memmem(body, bl, "\"error\"", 7) == NULL;
	if (!*ok)
		note_error("publish answered %d: %.*s", status, (int)(bl > 120 ? 120 : bl), body);
	return (long)(body - p) + clen;
}

static void
pub_event(struct pubconn *pc, int idx, uint32_t ev)
{
	if (pc->fd < 0)
		return;
	if (!pc->connected && (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
		int err = 0;
		socklen_t el = sizeof err;

		getsockopt(pc->fd, SOL_SOCKET, SO_ERROR, &err, &el);
		if (err != 0) {
			pub_close(pc, strerror(err));
			return;
		}
		pc->connected = 1;
	}
	if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) {
		for (;;) {
			ssize_t r;

			buf_reserve(&pc->in, 16384);
			r = recv(pc->fd, pc->in.data + pc->in.len, 16384, 0);
			if (r > 0) {
				pc->in.len += (size_t)r;
				continue;
			}
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0 && errno == EAGAIN)
				break;
			pub_close(pc, r == 0 ? "EOF" : strerror(errno));
			return;
		}
		for (;;) {
			int ok = 0, cclose = 0;
			long used = pub_parse_response(pc, &ok, &cclose);

			if (used < 0) {
				pub_close(pc, "malformed HTTP response");
				return;
			}
			if (used == 0)
				break;
			memmove(pc->in.data, pc->in.data + used, pc->in.len - (size_t)used);
			pc->in.len -= (size_t)used;
			if (pc->ilen == 0) {
				pub_close(pc, "unexpected HTTP response");
				return;
			}
			if (ok) {
				struct pubreq *r = &pc->inflight[pc->ihead];
				st.pubs_ok++;
				if (r->seq > chan_ok_max[r->chan])
					chan_ok_max[r->chan] = r->seq;
			} else {
				st.pubs_failed++;
			}
			pc->ihead = (pc->ihead + 1) % 64;
			pc->ilen--;
			if (cclose) {
				pub_close(pc, "server closed keep-alive");
				return;
			}
		}
	}
	pub_pump(pc, idx);
}

static void
pub_schedule(uint64_t now)
{
	uint64_t due = (uint64_t)((double)(now - t_pub_start) / 1e9 * opt.pubs);
	int i;

	while (pubs_scheduled < due) {
		uint32_t ch = (uint32_t)(pubs_scheduled % (uint64_t)opt.nchans);
		struct pubconn *pc;

		if (opt.nchans >= opt.pubconns || opt.pipeline_strict) {
			/* a channel always goes through the same connection: keeps order */
			pc = &pubc[ch % (uint32_t)opt.pubconns];
		} else {
			/* fewer channels than connections: spread a channel over its
			 * connections (j % nchans == ch), least loaded first; the
			 * server may then order two concurrent requests either way */
			long j;

			pc = &pubc[ch];
			for (j = ch; j < opt.pubconns; j += opt.nchans)
				if (pubc[j].qlen + pubc[j].ilen < pc->qlen + pc->ilen)
					pc = &pubc[j];
		}

		pubs_scheduled++;
		if (pc->qlen >= BENCH_PUBQ) {
			st.pubs_dropped++;
			continue;
		}
		pc->q[(pc->qhead + pc->qlen) % BENCH_PUBQ] = ch;
		pc->qlen++;
		if (pc->qlen > st.max_pub_backlog)
			st.max_pub_backlog = pc->qlen;
	}
	for (i = 0; i < opt.pubconns; i++)
		pub_pump(&pubc[i], i);
}

/* ------------------------------------------------------------ main loop */

static void
on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

/* Whether every channel goes through one publisher connection (order kept). */
static int
pub_ordered(void)
{
	return opt.nchans >= opt.pubconns || opt.pipeline_strict;
}

static size_t
pub_backlog(void)
{
	size_t n = 0;
	int i;

	for (i = 0; i < opt.pubconns; i++)
		n += pubc[i].qlen;
	return n;
}

static void
progress(uint64_t now)
{
	if (opt.quiet)
		return;
	fprintf(stderr, "[%5.1fs] %-7s conns %" PRIu64 "/%ld ok %" PRIu64 " fail %" PRIu64
	    " closed %" PRIu64 " | pubs %" PRIu64 " ok %" PRIu64 " | delivered %" PRIu64
	    " lost %" PRIu64 " reord %" PRIu64 " | p99 %.2f ms (last s)%s\n",
	    (double)(now - t_begin) / 1e9, phase_name[phase], st.conns_started, opt.nconns,
	    st.conns_ok, st.conns_failed, st.conns_closed + st.slow_cut, st.pubs_sent,
	    st.pubs_ok, st.delivered, st.lost_gap, st.reordered,
	    (double)hist_pct(&st.lat_sec, 99) / 1000.0,
	    pub_backlog() > 0 ? " | publisher behind" : "");
	memset(&st.lat_sec, 0, sizeof st.lat_sec);
}

static void
check_handshake_timeouts(uint64_t now)
{
	long i;

	for (i = 0; i < next_conn; i++) {
		struct wsconn *c = &conns[i];
		if (c->state >= WS_CONNECTING && c->state <= WS_SUBSCRIBING &&
		    now > c->t_start && now - c->t_start > BENCH_HS_TIMEOUT_NS)
			ws_fail(c, "timed out before subscribed");
	}
}

/* Runs the loop until deadline or until done() says so. */
static void
loop_run(uint64_t deadline, int (*done)(void))
{
	static struct epoll_event evs[1024];
	static uint64_t next_progress, next_timeout_check;
	uint64_t now = now_ns();

	if (next_progress == 0)
		next_progress = now + NS;
	while (!interrupted && now < deadline && !(done && done())) {
		int n, i, tmo;
		uint64_t wake = deadline < next_progress ? deadline : next_progress;

		if (phase == PH_CONNECT && next_conn < opt.nconns) {
			uint64_t t = t_begin + (uint64_t)((double)(next_conn + 1) / opt.rate * 1e9);
			if (t < wake)
				wake = t;
		}
		if (phase == PH_PUBLISH) {
			uint64_t t = t_pub_start +
			    (uint64_t)((double)(pubs_scheduled + 1) / opt.pubs * 1e9);
			if (t < wake)
				wake = t;
		}
		tmo = wake > now ? (int)((wake - now + 999999) / 1000000) : 0;
		n = epoll_wait(epfd, evs, 1024, tmo);
		if (n < 0 && errno != EINTR)
			die("epoll_wait: %s", strerror(errno));
		for (i = 0; i < n; i++) {
			uint64_t tag = evs[i].data.u64;
			if (tag & TAG_PUB)
				pub_event(&pubc[tag & 0xff], (int)(tag & 0xff), evs[i].events);
			else
				ws_event(&conns[tag], evs[i].events);
		}
		now = now_ns();
		if (phase == PH_CONNECT) {
			while (next_conn < opt.nconns && pending < opt.max_pending &&
			    (double)(now - t_begin) / 1e9 * opt.rate >= (double)next_conn)
				ws_start(next_conn++);
		}
		if (phase == PH_PUBLISH)
			pub_schedule(now);
		if (now >= next_progress) {
			progress(now);
			next_progress += NS;
			if (next_progress < now)
				next_progress = now + NS;
		}
		if (now >= next_timeout_check) {
			check_handshake_timeouts(now);
			next_timeout_check = now + NS / 4;
		}
	}
}

static int
connect_done(void)
{
	return next_conn >= opt.nconns && pending == 0;
}

static uint64_t
expected_remaining(void)
{
	uint64_t want = 0;
	long i;

	for (i = 0; i < opt.nconns; i++) {
		const struct wsconn *c = &conns[i];
		if (c->state == WS_READY && !c->slow && chan_ok_max[c->chan] > c->last_seq)
			want += chan_ok_max[c->chan] - c->last_seq;
	}
	return want;
}

static int
drain_done(void)
{
	int i;

	for (i = 0; i < opt.pubconns; i++)
		if (pubc[i].ilen > 0 || pubc[i].qlen > 0)
			return 0;
	return expected_remaining() == 0;
}

static int
slow_done(void)
{
	long i;

	for (i = 0; i < opt.nconns; i++)
		if (conns[i].slow && conns[i].state == WS_READY)
			return 0;
	return 1;
}

static void
raise_nofile(long need)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		die("getrlimit: %s", strerror(errno));
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < (rlim_t)need) {
		struct rlimit want = { (rlim_t)need, (rlim_t)need };
		if (setrlimit(RLIMIT_NOFILE, &want) == 0)
			return;
		die("need %ld file descriptors, hard limit is %lu (raise ulimit -n)",
		    need, (unsigned long)rl.rlim_max);
	}
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		die("setrlimit: %s", strerror(errno));
}

static void
usage(FILE *f)
{
	fprintf(f,
"usage: centrifugo-bench [options]\n"
"  --url URL             WebSocket URL (default ws://127.0.0.1:8000/connection/websocket;\n"
"                        with --nchan the channel name is appended)\n"
"  --api-url URL         publish URL (default http://<same host>/api/publish;\n"
"                        with --nchan e.g. http://127.0.0.1:8080/pub/)\n"
"  --api-key KEY         X-API-Key header for the server API\n"
"  -n, --conns N         connections (default 100)\n"
"  --rate R              new connections per second (default 1000)\n"
"  -c, --channels C      channels, connections assigned round-robin (default 10)\n"
"  -p, --pubs P          publications per second in total (default 100)\n"
"  -t, --time T          seconds of publishing (or idling) (default 10)\n"
"  --payload-size B      publication payload bytes (default 128)\n"
"  --pid PID             server's top process: sample memory and CPU of its tree\n"
"  --token-secret S      connect with HS256 tokens signed with S (default anonymous)\n"
"  --idle                no publications: measure idle CPU and memory\n"
"  --slow-readers K      the last K connections stop reading once subscribed\n"
"  --slow-rcvbuf B       SO_RCVBUF of slow readers (default 4096)\n"
"  --format F            client protocol format: json (default) or protobuf\n"
"  --nchan               speak nchan (nginx) instead of the centrifugo protocol\n"
"  --pub-conns N         HTTP keep-alive publisher connections (default 4)\n"
"  --pipeline D          requests in flight per publisher connection (default 1)\n"
"  --max-pending N       handshakes in progress at once (default 256)\n"
"  --strict-order        one publisher connection per channel even when there\n"
"                        are fewer channels than --pub-conns (default: spread)\n"
"  --drain S             seconds to wait for stragglers after publishing (default 3)\n"
"  --channel-prefix P    channel name prefix (default bench)\n"
"  -q, --quiet           no progress lines\n"
"  -h, --help            this help\n");
}

static double
num_arg(const char *name, const char *s, double lo, double hi)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || *end != 0 || v < lo || v > hi)
		die("%s: '%s' is not a number in [%g, %g]", name, s, lo, hi);
	return v;
}

static void
parse_args(int argc, char **argv)
{
	enum { O_URL = 256, O_API, O_KEY, O_RATE, O_PAYLOAD, O_PID, O_SECRET, O_IDLE,
		O_SLOW, O_RCVBUF, O_NCHAN, O_PUBC, O_PIPE, O_PENDING, O_DRAIN, O_PREFIX, O_STRICT, O_FORMAT };
	static const struct option lo[] = {
		{ "url", required_argument, NULL, O_URL },
		{ "api-url", required_argument, NULL, O_API },
		{ "api-key", required_argument, NULL, O_KEY },
		{ "conns", required_argument, NULL, 'n' },
		{ "rate", required_argument, NULL, O_RATE },
		{ "channels", required_argument, NULL, 'c' },
		{ "pubs", required_argument, NULL, 'p' },
		{ "time", required_argument, NULL, 't' },
		{ "payload-size", required_argument, NULL, O_PAYLOAD },
		{ "pid", required_argument, NULL, O_PID },
		{ "token-secret", required_argument, NULL, O_SECRET },
		{ "idle", no_argument, NULL, O_IDLE },
		{ "slow-readers", required_argument, NULL, O_SLOW },
		{ "slow-rcvbuf", required_argument, NULL, O_RCVBUF },
		{ "nchan", no_argument, NULL, O_NCHAN },
		{ "format", required_argument, NULL, O_FORMAT },
		{ "pub-conns", required_argument, NULL, O_PUBC },
		{ "pipeline", required_argument, NULL, O_PIPE },
		{ "max-pending", required_argument, NULL, O_PENDING },
		{ "drain", required_argument, NULL, O_DRAIN },
		{ "strict-order", no_argument, NULL, O_STRICT },
		{ "channel-prefix", required_argument, NULL, O_PREFIX },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	while ((ch = getopt_long(argc, argv, "n:c:p:t:qh", lo, NULL)) != -1) {
		switch (ch) {
		case O_URL: opt.url = optarg; break;
		case O_API: opt.api_url = optarg; break;
		case O_KEY: opt.api_key = optarg; break;
		case 'n': opt.nconns = (long)num_arg("-n", optarg, 1, BENCH_MAX_CONNS); break;
		case O_RATE: opt.rate = num_arg("--rate", optarg, 1, 1e6); break;
		case 'c': opt.nchans = (long)num_arg("-c", optarg, 1, BENCH_MAX_CHANNELS); break;
		case 'p': opt.pubs = num_arg("-p", optarg, 0.1, 1e6); break;
		case 't': opt.seconds = num_arg("-t", optarg, 0.1, 3600); break;
		case O_PAYLOAD: opt.payload = (long)num_arg("--payload-size", optarg, 1, BENCH_MAX_PAYLOAD); break;
		case O_PID: opt.pid = (long)num_arg("--pid", optarg, 1, 1 << 30); break;
		case O_SECRET: opt.token_secret = optarg; break;
		case O_IDLE: opt.idle = 1; break;
		case O_SLOW: opt.slow = (long)num_arg("--slow-readers", optarg, 0, BENCH_MAX_CONNS); break;
		case O_RCVBUF: opt.slow_rcvbuf = (long)num_arg("--slow-rcvbuf", optarg, 0, 1 << 26); break;
		case O_NCHAN: opt.nchan = 1; break;
		case O_FORMAT:
			if (strcmp(optarg, "json") == 0)
				opt.protobuf = 0;
			else if (strcmp(optarg, "protobuf") == 0)
				opt.protobuf = 1;
			else
				die("--format: '%s' is not json or protobuf", optarg);
			break;
		case O_PUBC: opt.pubconns = (long)num_arg("--pub-conns", optarg, 1, BENCH_MAX_PUBCONNS); break;
		case O_PIPE: opt.pipeline = (long)num_arg("--pipeline", optarg, 1, 64); break;
		case O_PENDING: opt.max_pending = (long)num_arg("--max-pending", optarg, 1, 100000); break;
		case O_DRAIN: opt.drain = num_arg("--drain", optarg, 0, 600); break;
		case O_PREFIX:
			if (optarg[0] == 0 || strlen(optarg) > 200 ||
			    strspn(optarg, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") != strlen(optarg))
				die("--channel-prefix: use 1-200 letters, digits, '_' or '-'");
			opt.chan_prefix = optarg;
			break;
		case O_STRICT: opt.pipeline_strict = 1; break;
		case 'q': opt.quiet = 1; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); exit(1);
		}
	}
	if (optind != argc)
		die("unexpected argument '%s' (see --help)", argv[optind]);
	if (opt.slow > opt.nconns)
		die("--slow-readers %ld is more than -n %ld", opt.slow, opt.nconns);
	if (opt.nchans > opt.nconns)
		opt.nchans = opt.nconns;
	if (opt.nchan && opt.protobuf)
		die("--format protobuf is the centrifugo protocol's; nchan has none");
}

/* ------------------------------------------------------------ main */

/* CPU µs of the tree between two samples: schedstat when both have it. */
static double
cpu_us_between(const struct proc_sample *a, const struct proc_sample *b, double hz)
{
	if (a->run_ns > 0 && b->run_ns >= a->run_ns)
		return (double)(b->run_ns - a->run_ns) / 1e3;
	return (double)(b->ticks - a->ticks) * 1e6 / hz;
}

int
main(int argc, char **argv)
{
	struct proc_sample s_before, s_conn_start, s_conn_end, s_after, s_pub_start, s_pub_end;
	struct rusage ru;
	uint64_t t_conn_end, t_phase_end, deadline;
	double hz = (double)sysconf(_SC_CLK_TCK), cpu_conn_us, cpu_pub_us, pub_secs;
	double bytes_per_conn = 0, pss_per_conn = 0;
	long i, readers = 0;
	uint64_t lost = 0;
	int rc = 0;

	parse_args(argc, argv);
	endpoint_parse(&ws_ep, opt.url, "ws");
	if (opt.api_url == NULL) {
		static char def[700];
		if (opt.nchan)
			die("--nchan needs --api-url (e.g. http://127.0.0.1:8080/pub/)");
		snprintf(def, sizeof def, "http://%s/api/publish", ws_ep.host);
		opt.api_url = def;
	}
	if (!opt.idle)
		endpoint_parse(&api_ep, opt.api_url, "http");
	raise_nofile(opt.nconns + opt.pubconns + 64);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	rng_state ^= (uint64_t)getpid() << 32 ^ now_ns();

	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd < 0)
		die("epoll_create1: %s", strerror(errno));
	rdbuf = xmalloc(BENCH_RDBUF);
	conns = xcalloc((size_t)opt.nconns, sizeof *conns);
	for (i = 0; i < opt.nconns; i++)
		conns[i].fd = -1;
	chan_seq = xcalloc((size_t)opt.nchans, sizeof *chan_seq);
	chan_ok_max = xcalloc((size_t)opt.nchans, sizeof *chan_ok_max);
	chan_readers = xcalloc((size_t)opt.nchans, sizeof *chan_readers);
	for (i = 0; i < opt.pubconns; i++) {
		pubc[i].fd = -1;
		pubc[i].q = xmalloc(BENCH_PUBQ * sizeof *pubc[i].q);
	}

	fprintf(stderr, "centrifugo-bench: %s, %ld connections at %.0f/s in %ld channels, "
	    "%s for %.1f s, payload %ld B%s%s%s\n", opt.nchan ? "nchan" : "centrifugo",
	    opt.nconns, opt.rate, opt.nchans, opt.idle ? "idle" : "publishing",
	    opt.seconds, opt.payload, opt.protobuf ? ", protobuf" : "",
	    opt.token_secret ? ", token auth" : "",
	    opt.slow ? ", with slow readers" : "");
	if (!opt.idle)
		fprintf(stderr, "centrifugo-bench: %.1f publications/s to %s\n", opt.pubs, opt.api_url);

	/* connect */
	proc_tree_sample((pid_t)opt.pid, &s_before);
	s_conn_start = s_before;
	t_begin = now_ns();
	phase = PH_CONNECT;
	deadline = t_begin + (uint64_t)(((double)opt.nconns / opt.rate + 30) * 1e9);
	loop_run(deadline, connect_done);
	t_conn_end = now_ns();
	proc_tree_sample((pid_t)opt.pid, &s_conn_end);
	for (i = 0; i < opt.nconns; i++)
		if (conns[i].state == WS_READY && !conns[i].slow)
			readers++;

	/* settle, then the memory sample */
	phase = PH_SETTLE;
	loop_run(now_ns() + NS, NULL);
	proc_tree_sample((pid_t)opt.pid, &s_after);

	/* publish or idle */
	phase = opt.idle ? PH_IDLE : PH_PUBLISH;
	s_pub_start = s_after;
	t_pub_start = now_ns();
	loop_run(t_pub_start + (uint64_t)(opt.seconds * 1e9), NULL);
	proc_tree_sample((pid_t)opt.pid, &s_pub_end);
	t_pub_end = now_ns();
	/* what the publishers could not send in time is not sent at all */
	for (i = 0; i < opt.pubconns; i++) {
		st.pubs_dropped += pubc[i].qlen;
		pubc[i].qlen = 0;
	}

	/* drain */
	phase = PH_DRAIN;
	if (!opt.idle)
		loop_run(now_ns() + (uint64_t)(opt.drain * 1e9), drain_done);
	t_phase_end = now_ns();
	for (i = 0; i < opt.nconns; i++) {
		struct wsconn *c = &conns[i];
		/* what a connection closed early missed counts as lost too */
		if ((c->state == WS_READY || c->state == WS_CLOSED) && !c->slow &&
		    chan_ok_max[c->chan] > c->last_seq)
			st.lost_end += chan_ok_max[c->chan] - c->last_seq;
	}

	/* slow readers read again: were they cut off? */
	if (opt.slow > 0) {
		phase = PH_SLOW;
		for (i = 0; i < opt.nconns; i++) {
			struct wsconn *c = &conns[i];
			if (c->slow && c->state == WS_READY) {
				c->reading = 1;
				ep_set(c->fd, (uint64_t)i, EPOLLIN | EPOLLRDHUP |
				    (c->out_wait ? EPOLLOUT : 0), 0);
			}
		}
		loop_run(now_ns() + 3 * NS, slow_done);
		for (i = 0; i < opt.nconns; i++)
			if (conns[i].slow && conns[i].state == WS_READY)
				st.slow_open++;
	}
	phase = PH_DONE;

	for (i = 0; i < opt.nconns; i++) {
		if (conns[i].fd >= 0) {
			if (conns[i].state == WS_READY) {
				ws_frame(&conns[i], 8, "\x03\xe8", 2);
				(void)send(conns[i].fd, conns[i].out.data, conns[i].out.len,
				    MSG_NOSIGNAL | MSG_DONTWAIT);
			}
			close_hard(conns[i].fd);
		}
		buf_free(&conns[i].in);
		buf_free(&conns[i].msg);
		buf_free(&conns[i].out);
	}
	for (i = 0; i < opt.pubconns; i++)
		if (pubc[i].fd >= 0)
			close_hard(pubc[i].fd);

	/* report */
	for (i = 0; i < opt.nconns; i++) {
		const struct wsconn *c = &conns[i];
		if (!c->slow && (c->state == WS_READY || c->state == WS_CLOSED))
			st.expected += chan_ok_max[c->chan];
	}
	cpu_conn_us = cpu_us_between(&s_conn_start, &s_conn_end, hz);
	cpu_pub_us = cpu_us_between(&s_pub_start, &s_pub_end, hz);
	/* exact: each connection sees each acknowledged publication once */
	if (st.expected > st.delivered - st.duplicated)
		lost = st.expected - (st.delivered - st.duplicated);
	pub_secs = (double)(t_pub_end - t_pub_start) / 1e9;
	if (st.conns_ok > 0 && s_after.ok) {
		bytes_per_conn = ((double)s_after.rss_kb - (double)s_before.rss_kb) * 1024.0 /
		    (double)st.conns_ok;
		pss_per_conn = ((double)s_after.pss_kb - (double)s_before.pss_kb) * 1024.0 /
		    (double)st.conns_ok;
	}
	getrusage(RUSAGE_SELF, &ru);

	printf("\n== centrifugo-bench summary (%s) ==\n", opt.nchan ? "nchan" : "centrifugo");
	printf("connections: %ld wanted, %" PRIu64 " subscribed, %" PRIu64 " failed, %" PRIu64
	    " closed early, connect phase %.2f s\n", opt.nconns, st.conns_ok, st.conns_failed,
	    st.conns_closed, (double)(t_conn_end - t_begin) / 1e9);
	if (!opt.idle) {
		printf("publications: %" PRIu64 " sent, %" PRIu64 " ok, %" PRIu64 " failed, %" PRIu64
		    " not sent (publisher behind; backlog max %" PRIu64 ") in %.2f s\n", st.pubs_sent, st.pubs_ok,
		    st.pubs_failed, st.pubs_dropped, st.max_pub_backlog, pub_secs);
		printf("messages: %" PRIu64 " delivered of %" PRIu64 " expected, %" PRIu64
		    " lost (seen as %" PRIu64 " in gaps, %" PRIu64 " missing at end), %" PRIu64
		    " reordered%s, %" PRIu64 " duplicated, %" PRIu64 " wrong channel, %" PRIu64
		    " unparsed\n",
		    st.delivered, st.expected, lost, st.lost_gap, st.lost_end,
		    st.reordered, pub_ordered() ? "" : " (publisher spreads channels: races possible)",
		    st.duplicated, st.wrong_chan, st.bad_msg);
		printf("delivery rate: %.0f msg/s\n", (double)st.delivered /
		    ((double)(t_phase_end - t_pub_start) / 1e9));
		printf("latency ms: p50 %.3f p90 %.3f p99 %.3f p99.9 %.3f max %.3f (n=%" PRIu64 ")\n",
		    (double)hist_pct(&st.lat, 50) / 1e3, (double)hist_pct(&st.lat, 90) / 1e3,
		    (double)hist_pct(&st.lat, 99) / 1e3, (double)hist_pct(&st.lat, 99.9) / 1e3,
		    (double)st.lat.max / 1e3, st.lat.count);
	}
	printf("pings: %" PRIu64 " received, %" PRIu64 " answered\n", st.pings, st.pongs);
	if (opt.slow > 0)
		printf("slow readers: %ld, %" PRIu64 " cut off by the server, %" PRIu64
		    " still open\n", opt.slow, st.slow_cut, st.slow_open);
	if (s_before.ok) {
		printf("server tree (%d processes): RSS %" PRIu64 " -> %" PRIu64 " KB (%.0f B/conn),"
		    " PSS %" PRIu64 " -> %" PRIu64 " KB (%.0f B/conn)\n", s_after.nproc,
		    s_before.rss_kb, s_after.rss_kb, bytes_per_conn, s_before.pss_kb,
		    s_after.pss_kb, pss_per_conn);
		printf("server CPU: connect %.0f ms (%.1f us/conn), %s %.0f ms",
		    cpu_conn_us / 1e3, st.conns_ok ? cpu_conn_us / (double)st.conns_ok : 0.0,
		    opt.idle ? "idle" : "publish", cpu_pub_us / 1e3);
		if (opt.idle)
			printf(" (%.3f us/conn/s)\n", st.conns_ok ?
			    cpu_pub_us / (double)st.conns_ok / pub_secs : 0.0);
		else
			printf(" (%.2f us/delivered msg)\n",
			    st.delivered ? cpu_pub_us / (double)st.delivered : 0.0);
	}
	printf("bench CPU: %.2f s user, %.2f s system\n",
	    (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6,
	    (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6);
	if (first_error[0])
		printf("first error: %s\n", first_error);

	printf("RESULT target=%s format=%s mode=%s conns=%ld subscribed=%" PRIu64 " conn_failed=%" PRIu64
	    " conn_closed=%" PRIu64 " channels=%ld readers=%ld pubs_per_s=%.1f seconds=%.1f"
	    " payload=%ld pubs_sent=%" PRIu64 " pubs_ok=%" PRIu64 " pubs_failed=%" PRIu64
	    " delivered=%" PRIu64 " expected=%" PRIu64 " lost=%" PRIu64 " reordered=%" PRIu64
	    " duplicated=%" PRIu64 " pub_ordered=%d pubs_not_sent=%" PRIu64
	    " delivery_rate=%.0f lat_p50_us=%" PRIu64 " lat_p90_us=%" PRIu64
	    " lat_p99_us=%" PRIu64 " lat_p999_us=%" PRIu64 " lat_max_us=%" PRIu64
	    " pings=%" PRIu64 " slow=%ld slow_cut=%" PRIu64,
	    opt.nchan ? "nchan" : "centrifugo", opt.nchan ? "nchan" : opt.protobuf ? "protobuf" : "json",
	    opt.idle ? "idle" : opt.slow ? "slow" : "publish",
	    opt.nconns, st.conns_ok, st.conns_failed, st.conns_closed, opt.nchans, readers,
	    opt.idle ? 0.0 : opt.pubs, opt.seconds, opt.payload, st.pubs_sent, st.pubs_ok,
	    st.pubs_failed, st.delivered, st.expected, lost, st.reordered,
	    st.duplicated, pub_ordered(), st.pubs_dropped,
	    (double)st.delivered / ((double)(t_phase_end - t_pub_start) / 1e9),
	    hist_pct(&st.lat, 50), hist_pct(&st.lat, 90), hist_pct(&st.lat, 99),
	    hist_pct(&st.lat, 99.9), st.lat.max, st.pings, opt.slow, st.slow_cut);
	if (s_before.ok)
		printf(" server_procs=%d rss_before_kb=%" PRIu64 " rss_after_kb=%" PRIu64
		    " bytes_per_conn=%.0f pss_before_kb=%" PRIu64 " pss_after_kb=%" PRIu64
		    " pss_bytes_per_conn=%.0f cpu_connect_ticks=%" PRIu64 " cpu_us_per_conn=%.1f"
		    " cpu_phase_ticks=%" PRIu64 " %s=%.3f",
		    s_after.nproc, s_before.rss_kb, s_after.rss_kb, bytes_per_conn,
		    s_before.pss_kb, s_after.pss_kb, pss_per_conn,
		    s_conn_end.ticks - s_conn_start.ticks,
		    st.conns_ok ? cpu_conn_us / (double)st.conns_ok : 0.0,
		    s_pub_end.ticks - s_pub_start.ticks,
		    opt.idle ? "cpu_us_per_conn_s" : "cpu_us_per_msg",
		    opt.idle ? (st.conns_ok ? cpu_pub_us / (double)st.conns_ok / pub_secs : 0.0) :
		    (st.delivered ? cpu_pub_us / (double)st.delivered : 0.0));
	printf(" cpu_source=%s clk_tck=%.0f\n", s_pub_end.run_ns ? "schedstat" : "ticks", hz);
	fflush(stdout);

	if (interrupted)
		rc = 130;
	else if (st.conns_ok == 0)
		rc = 1;
	else if (st.conns_failed > 0 || st.conns_closed > 0 || lost > 0 ||
	    (st.reordered > 0 && pub_ordered()) || st.duplicated > 0 || st.pubs_failed > 0)
		rc = 2;
	for (i = 0; i < opt.pubconns; i++) {
		buf_free(&pubc[i].in);
		buf_free(&pubc[i].out);
		free(pubc[i].q);
	}
	free(conns);
	free(chan_seq);
	free(chan_ok_max);
	free(chan_readers);
	free(rdbuf);
	close(epfd);
	return rc;
}
