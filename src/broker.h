/*
 * broker.h - the broker process: the single writer of the fan-out ring and
 * the one place that orders publications (offsets, epochs) and keeps
 * history (memory engine).
 */
#ifndef CENTRIFUGO_BROKER_H
#define CENTRIFUGO_BROKER_H

/* Runs the broker in the child after fork (heritage filled); returns the
 * process exit status. */
int broker_main(void);

#endif
