/*
 * wheel.h - a hashed timing wheel: one libevent timer per worker drives the
 * deadlines of every connection (stale, ping, pong check), so an idle
 * connection costs a list node, not a timer.  Resolution WHEEL_TICK_MS.
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
	struct event *ev;
};

/* Arms the periodic timer on base. */
void wheel_init(struct wheel *w, struct event_base *base);
void wheel_free(struct wheel *w);
void wheel_node_init(struct wheel_node *n, void (*fire)(struct wheel_node *));
/* (Re)arms n to fire after delay_ms (rounded up to a tick). */
void wheel_arm(struct wheel *w, struct wheel_node *n, int64_t delay_ms);
void wheel_disarm(struct wheel_node *n);
static inline int wheel_armed(const struct wheel_node *n) { return n->next != 0; }
/* Monotonic clock in milliseconds. */
uint64_t wheel_now_ms(void);
/* Advances to the current time, firing what is due (the timer calls it). */
void wheel_run(struct wheel *w);

#endif
