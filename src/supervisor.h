/*
 * supervisor.h - the supervisor process: listening socket, shared memory,
 * forking and respawning the broker and the workers, signals.
 */
#ifndef CENTRIFUGO_SUPERVISOR_H
#define CENTRIFUGO_SUPERVISOR_H

struct config;

/*
 * Exit status of a child that can never work (bad environment, a port it
 * cannot use...): the supervisor does not respawn it.  When the broker
 * exits with it, or every worker did, the whole server stops and the
 * supervisor also exits with it.
 */
#define SUP_EXIT_FATAL 2

/*
 * Runs the server in the calling process, which becomes the supervisor:
 * opens the listening socket, creates the shared memory, writes the pid
 * file, forks the broker and config_workers(cfg) workers and keeps them
 * running until SIGTERM/SIGINT (or until the broker cannot run).  Children
 * run broker_main()/worker_main() and never return from here.
 * `cfg` stays owned by the caller and must outlive the call (children get
 * it through heritage.cfg); `config_path` (NULL: no file, defaults and
 * environment only) is re-validated on SIGHUP.
 * Returns the process exit status: 0 after a graceful stop, 1 if the
 * server could not start (already logged), SUP_EXIT_FATAL if it stopped
 * because a child can never work.  Call once per process.
 */
int sup_run(struct config *cfg, const char *config_path);

#endif
