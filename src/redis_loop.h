/*
 * redis_loop.h - hiredis's asynchronous contexts on the broker's libevent
 * loop, without hiredis's own libevent adapter: that one re-adds its read
 * event after every read and adds and removes its write event around every
 * command, four epoll_ctl() calls and an extra epoll_wait() per command and
 * answer.  Here the read event stays armed, and a command is written from
 * the loop's queue of active events as soon as the current callback
 * returns; the fd is watched for writability only while a write would
 * block (and while connecting).
 */
#ifndef CENTRIFUGO_REDIS_LOOP_H
#define CENTRIFUGO_REDIS_LOOP_H

#include <hiredis/async.h>

struct event_base;

/* As redisLibeventAttach(): REDIS_OK or REDIS_ERR. */
int redis_loop_attach(redisAsyncContext *ac, struct event_base *base);

#endif
