/*
 * redis_loop.c - hiredis on a libevent loop (see redis_loop.h).
 */
#include <stdlib.h>

#include <event2/event.h>
#include <event2/event_struct.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>

#include "redis_loop.h"
#include "xmalloc.h"

struct redis_loop_ev {
	redisAsyncContext *ac;
	struct event rev;               /* readable: persistent */
	struct event wev;               /* writable: only while a write blocks */
	struct event flush;             /* no fd: "write now", made active */
	int reading, wev_armed, flush_pending;
};

/* The context whose output is being written: an addWrite() from inside
 * that write means the socket is full. */
static struct redis_loop_ev *writing;

static void
redis_loop_write(struct redis_loop_ev *e)
{
	redisAsyncContext *ac = e->ac;

	writing = e;
	redisAsyncHandleWrite(ac);      /* may free e (a failed write) */
	writing = NULL;
}

static void
redis_loop_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct redis_loop_ev *e = arg;

	redisAsyncHandleRead(e->ac);
}

static void
redis_loop_write_cb(evutil_socket_t fd, short what, void *arg)
{
	redis_loop_write(arg);
}

static void
redis_loop_flush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct redis_loop_ev *e = arg;

	e->flush_pending = 0;
	redis_loop_write(e);
}

static void
redis_loop_add_read(void *p)
{
	struct redis_loop_ev *e = p;

	if (!e->reading) {
		event_add(&e->rev, NULL);
		e->reading = 1;
	}
}

static void
redis_loop_del_read(void *p)
{
	struct redis_loop_ev *e = p;

	if (e->reading) {
		event_del(&e->rev);
		e->reading = 0;
	}
}

static void
redis_loop_add_write(void *p)
{
	struct redis_loop_ev *e = p;

	if (writing == e || !(e->ac->c.flags & REDIS_CONNECTED)) {
		/* The socket is full, or connect() has not finished. */
		if (!e->wev_armed) {
			event_add(&e->wev, NULL);
			e->wev_armed = 1;
		}
	} else if (!e->wev_armed && !e->flush_pending) {
		e->flush_pending = 1;
		event_active(&e->flush, EV_WRITE, 0);
	}
}

static void
redis_loop_del_write(void *p)
{
	struct redis_loop_ev *e = p;

	if (e->wev_armed) {
		event_del(&e->wev);
		e->wev_armed = 0;
	}
}

static void
redis_loop_cleanup(void *p)
{
	struct redis_loop_ev *e = p;

	event_del(&e->rev);
	event_del(&e->wev);
	event_del(&e->flush);
	if (writing == e)
		writing = NULL;
	free(e);
}

int
redis_loop_attach(redisAsyncContext *ac, struct event_base *base)
{
	struct redis_loop_ev *e;

	if (ac->ev.data != NULL)
		return REDIS_ERR;
	e = xcalloc(1, sizeof(*e));
	e->ac = ac;
	event_assign(&e->rev, base, ac->c.fd, EV_READ | EV_PERSIST, redis_loop_read_cb, e);
	event_assign(&e->wev, base, ac->c.fd, EV_WRITE | EV_PERSIST, redis_loop_write_cb, e);
	event_assign(&e->flush, base, -1, 0, redis_loop_flush_cb, e);
	ac->ev.addRead = redis_loop_add_read;
	ac->ev.delRead = redis_loop_del_read;
	ac->ev.addWrite = redis_loop_add_write;
	ac->ev.delWrite = redis_loop_del_write;
	ac->ev.cleanup = redis_loop_cleanup;
	ac->ev.data = e;
	/* As hiredis's adapter: both at once, the write side to learn when
	 * connect() is done. */
	redis_loop_add_read(e);
	e->wev_armed = 1;
	event_add(&e->wev, NULL);
	return REDIS_OK;
}
