/*
 * log.c - leveled logging.  Every process writes to stderr (journald or the
 * terminal picks it up); a line carries time, level, role and pid.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static const char *log_role = "centrifugo";
static enum log_level log_level = LOG_LVL_INFO;
static int log_json;

static const char *const log_level_names[] = {
	[LOG_LVL_DEBUG] = "debug",
	[LOG_LVL_INFO] = "info",
	[LOG_LVL_NOTICE] = "notice",
	[LOG_LVL_WARN] = "warn",
	[LOG_LVL_ERROR] = "error",
	[LOG_LVL_FATAL] = "fatal",
	[LOG_LVL_PANIC] = "panic",
	[LOG_LVL_NONE] = "none",
};

void
log_set_role(const char *role)
{
	log_role = role;
}

void
log_set_level(enum log_level level)
{
	log_level = level;
}

enum log_level
log_get_level(void)
{
	return log_level;
}

void
log_set_json(int on)
{
	log_json = on;
}

int
log_level_parse(const char *name, enum log_level *out)
{
	for (int i = 0; i <= LOG_LVL_NONE; i++) {
		if (strcasecmp(name, log_level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	if (strcasecmp(name, "warning") == 0) {
		*out = LOG_LVL_WARN;
		return 0;
	}
	if (strcasecmp(name, "trace") == 0) {
		*out = LOG_LVL_DEBUG;
		return 0;
	}
	return -1;
}

/* Escape for a JSON string value; output is truncated, never overrun. */
static void
log_json_escape(char *dst, size_t cap, const char *src)
{
	size_t n = 0;

	for (; *src && n + 7 < cap; src++) {
		unsigned char c = (unsigned char)*src;
		if (c == '"' || c == '\\') {
			dst[n++] = '\\';
			dst[n++] = (char)c;
		} else if (c < 0x20) {
			n += (size_t)snprintf(dst + n, cap - n, "\\u%04x", c);
		} else {
			dst[n++] = (char)c;
		}
	}
	dst[n] = '\0';
}

void
log_vmsg(enum log_level level, const char *fmt, va_list ap)
{
	char text[2048], line[4608], stamp[32];
	struct timeval tv;
	struct tm tm;
	int n;

	if (level < log_level)
		return;
	vsnprintf(text, sizeof(text), fmt, ap);
	gettimeofday(&tv, NULL);
	localtime_r(&tv.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S", &tm);
	if (log_json) {
		char esc[4200];
		log_json_escape(esc, sizeof(esc), text);
		n = snprintf(line, sizeof(line),
		    "{\"time\":\"%s.%03ld\",\"level\":\"%s\",\"role\":\"%s\",\"pid\":%ld,\"message\":\"%s\"}\n",
		    stamp, (long)(tv.tv_usec / 1000), log_level_names[level], log_role,
		    (long)getpid(), esc);
	} else {
		n = snprintf(line, sizeof(line), "%s.%03ld [%s] %s[%ld]: %s\n", stamp,
		    (long)(tv.tv_usec / 1000), log_level_names[level], log_role,
		    (long)getpid(), text);
	}
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line))
		n = sizeof(line) - 1;
	/* One write() per line keeps lines of several processes whole. */
	if (write(STDERR_FILENO, line, (size_t)n) < 0)
		return;
}

void
log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(level, fmt, ap);
	va_end(ap);
}

void
log_fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(LOG_LVL_FATAL, fmt, ap);
	va_end(ap);
	exit(1);
}

void
log_panic(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(LOG_LVL_PANIC, fmt, ap);
	va_end(ap);
	abort();
}
