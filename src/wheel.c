/*
 * wheel.c - hashed timing wheel (see wheel.h).  Nodes far in the future sit
 * in their slot and are skipped until their tick comes round.
 */
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
	wheel_run(arg);
}

void
wheel_init(struct wheel *w, struct event_base *base)
{
	struct timeval tv = { 0, WHEEL_TICK_MS * 1000 };

	for (int i = 0; i < WHEEL_SLOTS; i++)
		w->slots[i].next = w->slots[i].prev = &w->slots[i];
	w->start_ms = wheel_now_ms();
	w->now = 0;
	w->ev = event_new(base, -1, EV_PERSIST, wheel_timer_cb, w);
	if (w->ev == NULL || event_add(w->ev, &tv) != 0)
		log_fatal("event_add(wheel timer) failed");
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
	uint64_t ticks, elapsed = wheel_now_ms() - w->start_ms;
	struct wheel_node *head;

	wheel_disarm(n);
	if (delay_ms < 0)
		delay_ms = 0;
	ticks = (uint64_t)(delay_ms + WHEEL_TICK_MS - 1) / WHEEL_TICK_MS;
	if (ticks == 0)
		ticks = 1;
	/* Deadlines count from real time, not from the last processed tick. */
	n->due = elapsed / WHEEL_TICK_MS + ticks;
	if (n->due <= w->now)
		n->due = w->now + 1;
	head = &w->slots[n->due % WHEEL_SLOTS];
	n->next = head;
	n->prev = head->prev;
	head->prev->next = n;
	head->prev = n;
}

void
wheel_run(struct wheel *w)
{
	uint64_t target = (wheel_now_ms() - w->start_ms) / WHEEL_TICK_MS;

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
}
