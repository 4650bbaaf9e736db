/*
 * wheel.c - hashed timing wheel (see wheel.h).  Nodes far in the future sit
 * in their slot and are skipped until their tick comes round.
 *
 * The libevent timer is one-shot and armed for the first tick after the
 * current one whose slot is not empty (found by scanning at most
 * WHEEL_SLOTS list heads after each run), or for a newly armed node's tick
 * when that is earlier.  That tick is never later than the earliest due
 * node's (a node's slot is visited at or before its due tick), so nothing
 * fires late; a slot holding only nodes of a later round, or a node disarmed
 * meanwhile (wheel_disarm() does not know its wheel), costs one spurious
 * wake-up.  A worker with no connections does not wake at all; with many,
 * every tick usually has something due, as before.
 */
#include <stdint.h>
#include <time.h>

#include <event2/event.h>

#include "log.h"
#include "wheel.h"

uint64_t
wheel_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void
wheel_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	wheel_run(arg);
}

/* Arms the timer to fire when tick begins (now_ms: the current time). */
static void
wheel_schedule(struct wheel *w, uint64_t tick, uint64_t now_ms)
{
	uint64_t at = w->start_ms + tick * WHEEL_TICK_MS;
	uint64_t ms = at > now_ms ? at - now_ms : 0;
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };

	if (event_add(w->ev, &tv) != 0)
		log_panic("event_add(wheel timer) failed");
	w->timer_tick = tick;
}

void
wheel_init(struct wheel *w, struct event_base *base)
{
	for (int i = 0; i < WHEEL_SLOTS; i++)
		w->slots[i].next = w->slots[i].prev = &w->slots[i];
	w->start_ms = wheel_now_ms();
	w->now = 0;
	w->timer_tick = UINT64_MAX;
	w->in_run = 0;
	w->ev = evtimer_new(base, wheel_timer_cb, w);
	if (w->ev == NULL)
		log_fatal("evtimer_new(wheel timer) failed");
}

void
wheel_free(struct wheel *w)
{
	if (w->ev)
		event_free(w->ev);
	w->ev = NULL;
}

void
wheel_node_init(struct wheel_node *n, void (*fire)(struct wheel_node *))
{
	n->next = n->prev = NULL;
	n->due = 0;
	n->fire = fire;
}

void
wheel_disarm(struct wheel_node *n)
{
	if (n->next == NULL)
		return;
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->next = n->prev = NULL;
}

void
wheel_arm(struct wheel *w, struct wheel_node *n, int64_t delay_ms)
{
	uint64_t now_ms = wheel_now_ms();
	uint64_t elapsed = now_ms - w->start_ms;
	struct wheel_node *head;

	wheel_disarm(n);
	if (delay_ms < 0)
		delay_ms = 0;
	/*
	 * Deadlines count from real time, not from the last processed tick:
	 * the first tick that begins at or after elapsed + delay_ms (+1 for
	 * the milliseconds wheel_now_ms() truncated), so it never fires early
	 * and at most a tick (+1 ms) late.
	 */
	n->due = (elapsed + (uint64_t)delay_ms + 1 + WHEEL_TICK_MS - 1) /
		 WHEEL_TICK_MS;
	if (n->due <= w->now)
		n->due = w->now + 1;
	head = &w->slots[n->due % WHEEL_SLOTS];
	n->next = head;
	n->prev = head->prev;
	head->prev->next = n;
	head->prev = n;
	/* wheel_run() re-arms the timer itself when it is done. */
	if (!w->in_run && n->due < w->timer_tick)
		wheel_schedule(w, n->due, now_ms);
}

void
wheel_run(struct wheel *w)
{
	uint64_t now_ms = wheel_now_ms();
	uint64_t target = (now_ms - w->start_ms) / WHEEL_TICK_MS;
	uint64_t t;

	w->in_run = 1;
	while (w->now < target) {
		struct wheel_node *head, *n, *next;

		w->now++;
		head = &w->slots[w->now % WHEEL_SLOTS];
		for (n = head->next; n != head; n = next) {
			next = n->next;
			if (n->due > w->now)
				continue;
			wheel_disarm(n);
			/* fire may re-arm n (into another slot or a later round)
			 * or free it; next was taken before. */
			n->fire(n);
			/* fire may also disarm the saved next; restart then. */
			if (next != head && next->next == NULL)
				next = head->next;
		}
	}
	w->in_run = 0;

	/* The next tick with a non-empty slot, if any. */
	w->timer_tick = UINT64_MAX;
	for (t = w->now + 1; t <= w->now + WHEEL_SLOTS; t++) {
		const struct wheel_node *head = &w->slots[t % WHEEL_SLOTS];

		if (head->next != head) {
			wheel_schedule(w, t, now_ms);
			return;
		}
	}
	event_del(w->ev);
}
