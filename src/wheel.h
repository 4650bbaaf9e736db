/*
 * wheel.h - a hashed timing wheel: one libevent timer per worker drives the
 * deadlines of every connection (stale, ping, pong check), so an idle
 * connection costs a list node, not a timer.  Resolution WHEEL_TICK_MS: a
 * deadline fires no earlier than asked and at most one tick late.  The timer
 * is one-shot, armed for the first tick whose slot holds a node, so a wheel
 * with nothing due does not wake the process every tick.
 * Process-local (worker).
 */
#ifndef CENTRIFUGO_WHEEL_H
#define CENTRIFUGO_WHEEL_H

#include <stdint.h>

struct event_base;
struct event;

#define WHEEL_TICK_MS 100
#define WHEEL_SLOTS 1024

struct wheel_node {
	struct wheel_node *next, *prev;   /* NULL/NULL when not armed */
	uint64_t due;                     /* absolute tick */
	void (*fire)(struct wheel_node *n);
};

struct wheel {
	struct wheel_node slots[WHEEL_SLOTS];  /* list heads */
	uint64_t now;                          /* current tick */
	uint64_t start_ms;                     /* monotonic ms of tick 0 */
	uint64_t timer_tick;                   /* tick ev is armed for, or
						  UINT64_MAX: not armed */
	int in_run;                            /* inside wheel_run() */
	struct event *ev;                      /* one-shot timer */
};

/* Creates the (one-shot) timer on base; it is armed by wheel_arm(). */
void wheel_init(struct wheel *w, struct event_base *base);
void wheel_free(struct wheel *w);
void wheel_node_init(struct wheel_node *n, void (*fire)(struct wheel_node *));
/* (Re)arms n to fire after delay_ms (rounded up to a tick). */
void wheel_arm(struct wheel *w, struct wheel_node *n, int64_t delay_ms);
void wheel_disarm(struct wheel_node *n);
static inline int wheel_armed(const struct wheel_node *n) { return n->next != 0; }
/* Monotonic clock in milliseconds. */
uint64_t wheel_now_ms(void);
/* Advances to the current time, firing what is due, then re-arms the timer
 * for the next non-empty slot (the timer calls it; calling it early is
 * harmless). */
void wheel_run(struct wheel *w);

#endif
