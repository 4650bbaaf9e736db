/*
 * config.h - the parsed configuration.
 *
 * The supervisor loads it (config_load) at start and on SIGHUP; children
 * inherit the supervisor's struct config across fork and only read it.
 * Every option is declared once in config_tbl.h, which generates the
 * members of struct config and struct chan_opts below.
 */
#ifndef CENTRIFUGO_CONFIG_H
#define CENTRIFUGO_CONFIG_H

#include <regex.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct buf;
struct tls_client_conf;

/* Option flags (config_tbl.h). */
#define CFG_RESTART   0x0u  /* a change needs a restart */
#define CFG_RELOAD    0x1u  /* applied by a reload (SIGHUP) */
#define CFG_NEGOFF    0x2u  /* duration: negative disables (-1), 0 = default */
#define CFG_WHOLESEC  0x4u  /* duration: whole seconds only */

/* A list of strings (STRLIST options); v[0..n) are never NULL. */
struct config_strlist {
	char **v;
	size_t n;
};

/* C type of each option type of config_tbl.h. */
#define CFG_CTYPE_BOOL      int             /* 0 or 1 */
#define CFG_CTYPE_INT       int64_t
#define CFG_CTYPE_INT64     int64_t
#define CFG_CTYPE_DURATION  int64_t         /* milliseconds, -1 = disabled */
#define CFG_CTYPE_STRING    char *          /* never NULL, "" when unset */
#define CFG_CTYPE_STRLIST   struct config_strlist

/*
 * Channel options (spec config.md 2.7) of channel.without_namespace or of one
 * channel.namespaces item.  After config_load, history_meta_ttl and
 * publication_data_format hold the effective values (inherited from
 * channel.* when not set in the namespace).
 */
struct chan_opts {
	char *name;                 /* namespace name, "" for without_namespace */
#define CHAN_OPT(m, t, d, lo, hi, ch, fl, doc) CFG_CTYPE_##t m;
#include "config_tbl.h"
#undef CHAN_OPT
	int has_regex;              /* channel_regex set: regex is compiled */
	regex_t regex;              /* POSIX extended, REG_NOSUB */
};

#define CONFIG_MAGIC 0x43464731u   /* "CFG1" */

struct config {
	uint32_t magic;
#define CONFIG_OPT(m, p, t, d, lo, hi, ch, fl, doc) CFG_CTYPE_##t m;
#include "config_tbl.h"
#undef CONFIG_OPT
	struct chan_opts without_namespace;
	struct chan_opts *namespaces;   /* n_namespaces items, file order */
	size_t n_namespaces;
	char *path;                     /* file it was loaded from, "" if none */
};

/*
 * Loads `path` (libconfig syntax; NULL = no file, defaults and environment
 * only), applies CENTRIFUGO_* environment overrides, fills in defaults and
 * validates everything.  Returns 0 and a new config in *out (the caller frees
 * it with config_free), or -1 with every error found appended to `errors`,
 * one per line, "FILE:LINE: message" or "environment VAR: message".
 * Unknown CENTRIFUGO_* variables are logged with log_warn, not errors.
 */
int config_load(const char *path, struct config **out, struct buf *errors);

/* A new config holding every default and no namespace; free with config_free. */
struct config *config_defaults(void);

/* Frees cfg and everything it owns; NULL is accepted. */
void config_free(struct config *cfg);

/*
 * Options of `channel` (len bytes, need not be NUL-terminated): strips the
 * private prefix, takes the part before the first namespace boundary as the
 * namespace.  Returns the namespace's options (or without_namespace), or
 * NULL with *unknown_ns = 1 when the namespace does not exist.  The result
 * lives as long as cfg.
 */
const struct chan_opts *config_chan_opts(const struct config *cfg,
    const char *channel, size_t len, int *unknown_ns);

/*
 * Parses a Centrifugo (Go) duration: "25s", "500ms", "1m30s", "1.5h", units
 * ns us ms s m h, optional sign; "0" and "-1" need no unit.  Sub-millisecond
 * non-zero values round to +-1 ms.  Returns 0 and *ms, or -1 if malformed or
 * beyond the range of Go's durations (about 292 years).
 */
int config_parse_duration(const char *s, int64_t *ms);

/* The engine.redis.tls options as a TLS client configuration (strings live
 * as long as cfg). */
void config_redis_tls(const struct config *cfg, struct tls_client_conf *t);

/* Worker process count: `workers`, or the number of online CPUs when 0. */
unsigned config_workers(const struct config *cfg);

/*
 * Compares the restart-only options of two configs (for reload): appends the
 * path of each that differs to `names` (space-separated) and returns how
 * many differ.  Reloadable options (tokens, channel options) are ignored.
 */
int config_restart_changes(const struct config *a, const struct config *b,
    struct buf *names);

/*
 * Writes the option list of centrifugo.conf(5), in man(7) macros, from the
 * table: one .SS per section, one .TP per option with type, default, bounds
 * and whether a reload applies it.
 */
void config_write_man_options(FILE *f);

#endif
