/*
 * log.h - leveled logging to stderr, every line tagged with role and pid.
 * Used by every process.  log_fatal() exits 1, log_panic() aborts.
 */
#ifndef CENTRIFUGO_LOG_H
#define CENTRIFUGO_LOG_H

#include <stdarg.h>

enum log_level {
	LOG_LVL_DEBUG = 0,
	LOG_LVL_INFO,
	LOG_LVL_NOTICE,
	LOG_LVL_WARN,
	LOG_LVL_ERROR,
	LOG_LVL_FATAL,
	LOG_LVL_PANIC,
	LOG_LVL_NONE
};

/* Role shown in every line ("supervisor", "worker 0", "broker", ...). */
void log_set_role(const char *role);
void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* Parse "debug", "info", "warn", "error", "none" ...; returns -1 if unknown. */
int log_level_parse(const char *name, enum log_level *out);
/* JSON lines instead of plain text. */
void log_set_json(int on);

void log_msg(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void log_vmsg(enum log_level level, const char *fmt, va_list ap);

#define log_debug(...) do { if (log_get_level() <= LOG_LVL_DEBUG) log_msg(LOG_LVL_DEBUG, __VA_ARGS__); } while (0)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_LVL_NOTICE, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)

void log_fatal(const char *fmt, ...)
	__attribute__((format(printf, 1, 2), noreturn));
void log_panic(const char *fmt, ...)
	__attribute__((format(printf, 1, 2), noreturn));

/* Cheap assertion that stays on in release builds. */
#define ASSERT(e) do { if (!(e)) log_panic("assertion failed: %s (%s:%d)", #e, __FILE__, __LINE__); } while (0)

#endif
