/*
 * proctitle.h - process titles shown by ps(1): "centrifugo: supervisor",
 * "centrifugo: worker 0", "centrifugo: broker".
 *
 * Linux shows /proc/PID/cmdline, which is the memory holding argv[] and,
 * right after it, environ[].  proctitle_init() moves those strings to the
 * heap so the original area can be overwritten with a title.  Used by
 * main() (init) and by the supervisor in each process it forks (set).
 */
#ifndef CENTRIFUGO_PROCTITLE_H
#define CENTRIFUGO_PROCTITLE_H

/*
 * Call once, first thing in main(), before anything reads argv[] or the
 * environment.  Copies every argv[i] and the environment strings to the
 * heap and points argv[] and environ at the copies (which stay valid for
 * the life of the process and are never freed), so callers keep using
 * argv[] as usual.
 */
void proctitle_init(int argc, char **argv);

/*
 * Sets the title shown by ps to `title` (truncated to the space argv and
 * the environment occupied at start) and, when comm is not NULL, the
 * thread name shown by top and used by pgrep (PR_SET_NAME, at most 15
 * bytes).  Without proctitle_init() only the thread name changes.
 */
void proctitle_set(const char *title, const char *comm);

#endif
