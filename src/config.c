/*
 * config.c - configuration: defaults, libconfig file, CENTRIFUGO_*
 * environment overrides, validation, channel namespace resolution and the
 * option list of centrifugo.conf(5).
 *
 * Runs in the supervisor (at start, on reload and for `centrifugo -t`);
 * children only read the struct config they inherit.  Everything is driven
 * by the descriptor tables built from config_tbl.h, so an option added there
 * is parsed, defaulted, overridable from the environment, bounds-checked and
 * documented without touching this file.  Errors are collected, never
 * fatal: every problem of a file is reported in one pass, each naming its
 * FILE:LINE (or environment variable) and the option.
 */
#include <ctype.h>
#include <errno.h>
#include <regex.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <jansson.h>
#include <libconfig.h>

#include "buf.h"
#include "config.h"
#include "log.h"
#include "redis_addr.h"
#include "tls_tunnel.h"
#include "xmalloc.h"

extern char **environ;

enum cfg_type {
	CFG_TYPE_BOOL = 0,
	CFG_TYPE_INT,
	CFG_TYPE_INT64,
	CFG_TYPE_DURATION,
	CFG_TYPE_STRING,
	CFG_TYPE_STRLIST
};

static const char *const cfg_type_names[] = {
	[CFG_TYPE_BOOL] = "boolean",
	[CFG_TYPE_INT] = "integer",
	[CFG_TYPE_INT64] = "integer",
	[CFG_TYPE_DURATION] = "duration",
	[CFG_TYPE_STRING] = "string",
	[CFG_TYPE_STRLIST] = "string list",
};

/* One option: a row of config_tbl.h plus where its value lives. */
struct cfg_desc {
	const char *path;
	enum cfg_type type;
	size_t off;             /* in struct config or struct chan_opts */
	const char *def;
	int64_t min, max;
	const char *choices;
	unsigned flags;
	const char *doc;
};

static const struct cfg_desc config_descs[] = {
#define CONFIG_OPT(m, p, t, d, lo, hi, ch, fl, doc) \
	{ p, CFG_TYPE_##t, offsetof(struct config, m), d, lo, hi, ch, fl, doc },
#include "config_tbl.h"
#undef CONFIG_OPT
};
#define N_CONFIG_DESCS (sizeof config_descs / sizeof config_descs[0])

static const struct cfg_desc chan_descs[] = {
#define CHAN_OPT(m, t, d, lo, hi, ch, fl, doc) \
	{ #m, CFG_TYPE_##t, offsetof(struct chan_opts, m), d, lo, hi, ch, fl, doc },
#include "config_tbl.h"
#undef CHAN_OPT
};
#define N_CHAN_DESCS (sizeof chan_descs / sizeof chan_descs[0])

/* Indexes into the tables, for validation messages. */
enum config_idx {
#define CONFIG_OPT(m, p, t, d, lo, hi, ch, fl, doc) CI_##m,
#include "config_tbl.h"
#undef CONFIG_OPT
	CI_COUNT_
};

enum chan_idx {
#define CHAN_OPT(m, t, d, lo, hi, ch, fl, doc) CHI_##m,
#include "config_tbl.h"
#undef CHAN_OPT
	CHI_COUNT_
};

/* Where a value came from: a file line, an environment variable, or neither (default). */
struct origin {
	int line;
	const char *env;        /* owned by the loader's envnames */
};

struct chan_src {
	struct origin item;     /* the options group itself */
	struct origin opt[N_CHAN_DESCS];
};

/* State of one config_load() call. */
struct loader {
	const char *file;       /* for messages */
	struct buf *errors;
	int nerr;
	struct origin top[N_CONFIG_DESCS];
	struct chan_src wo;     /* channel.without_namespace */
	struct chan_src *ns;    /* parallel to cfg->namespaces */
	char **envnames;
	size_t n_envnames;
};

static void ld_err(struct loader *ld, const struct origin *o, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void
ld_err(struct loader *ld, const struct origin *o, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (o != NULL && o->env != NULL)
		buf_printf(ld->errors, "environment %s: %s\n", o->env, msg);
	else if (o != NULL && o->line > 0)
		buf_printf(ld->errors, "%s:%d: %s\n", ld->file, o->line, msg);
	else
		buf_printf(ld->errors, "%s: %s\n", ld->file, msg);
	ld->nerr++;
}

/* An origin naming environment variable `name` (copied, freed with the loader). */
static struct origin
ld_env_origin(struct loader *ld, const char *name, size_t len)
{
	struct origin o = { 0, NULL };

	ld->envnames = xrealloc(ld->envnames, (ld->n_envnames + 1) * sizeof *ld->envnames);
	ld->envnames[ld->n_envnames] = xstrndup(name, len);
	o.env = ld->envnames[ld->n_envnames++];
	return o;
}

/* ---- durations ---- */

int
config_parse_duration(const char *s, int64_t *ms)
{
	static const struct {
		const char *name;
		uint64_t ns;
	} units[] = {
		{ "ns", 1 }, { "us", 1000 }, { "\xc2\xb5s", 1000 }, { "\xce\xbcs", 1000 },
		{ "ms", 1000000 }, { "s", 1000000000ULL }, { "m", 60000000000ULL },
		{ "h", 3600000000000ULL },
	};
	const unsigned __int128 limit = (unsigned __int128)1 << 63;
	unsigned __int128 total = 0;
	const char *p = s;
	int neg = 0;
	int64_t v;

	if (s == NULL || *s == '\0')
		return -1;
	if (*p == '-' || *p == '+')
		neg = *p++ == '-';
	if (strcmp(p, "0") == 0) {
		*ms = 0;
		return 0;
	}
	if (neg && strcmp(p, "1") == 0) {
		*ms = -1;
		return 0;
	}
	if (*p == '\0')
		return -1;
	while (*p != '\0') {
		unsigned __int128 ip = 0, frac = 0, scale = 1;
		uint64_t unit = 0;
		int digits = 0;

		for (; isdigit((unsigned char)*p); p++, digits++) {
			ip = ip * 10 + (unsigned)(*p - '0');
			if (ip > limit)
				return -1;
		}
		if (*p == '.') {
			for (p++; isdigit((unsigned char)*p); p++, digits++) {
				if (scale < 1000000000000000000ULL) {
					frac = frac * 10 + (unsigned)(*p - '0');
					scale *= 10;
				}
			}
		}
		if (digits == 0)
			return -1;
		for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
			size_t n = strlen(units[i].name);

			if (strncmp(p, units[i].name, n) == 0) {
				unit = units[i].ns;
				p += n;
				break;
			}
		}
		if (unit == 0)
			return -1;
		total += ip * unit + frac * unit / scale;
		if (total > limit)
			return -1;
	}
	if (!neg && total == limit)
		return -1;
	v = (int64_t)(total / 1000000);
	if (v == 0 && total != 0)
		v = 1;
	*ms = neg ? -v : v;
	return 0;
}

/* Formats a millisecond duration the way it would be written ("25s", "1m30s", "500ms"). */
static void
fmt_duration(char *out, size_t cap, int64_t ms)
{
	size_t n = 0;
	uint64_t v;

	if (ms == 0) {
		snprintf(out, cap, "0");
		return;
	}
	if (ms < 0) {
		n += (size_t)snprintf(out, cap, "-");
		v = (uint64_t)0 - (uint64_t)ms;
	} else
		v = (uint64_t)ms;
	if (v % 1000 != 0) {
		snprintf(out + n, cap - n, "%llums", (unsigned long long)v);
		return;
	}
	v /= 1000;
	if (v >= 3600)
		n += (size_t)snprintf(out + n, cap - n, "%lluh", (unsigned long long)(v / 3600));
	if (n < cap && v % 3600 >= 60)
		n += (size_t)snprintf(out + n, cap - n, "%llum", (unsigned long long)(v % 3600 / 60));
	if (n < cap && v % 60 != 0)
		snprintf(out + n, cap - n, "%llus", (unsigned long long)(v % 60));
}

/* ---- storing values (all sources end here; each checks the table's bounds) ---- */

#define FIELD(base, d, T) ((T *)(void *)((char *)(base) + (d)->off))

/* Is `s` one of d->choices ('|'-separated; an empty alternative allows "")? */
static int
in_choices(const char *choices, const char *s)
{
	size_t n = strlen(s);

	for (const char *c = choices;;) {
		const char *e = strchr(c, '|');
		size_t len = e != NULL ? (size_t)(e - c) : strlen(c);

		if (len == n && strncmp(c, s, n) == 0)
			return 1;
		if (e == NULL)
			return 0;
		c = e + 1;
	}
}

/* Human list of choices for messages: "a, b or c" (the empty choice as ""). */
static void
choices_text(struct buf *b, const char *choices)
{
	int first = 1;

	for (const char *c = choices;;) {
		const char *e = strchr(c, '|');
		size_t len = e != NULL ? (size_t)(e - c) : strlen(c);

		if (!first)
			buf_puts(b, e == NULL ? " or " : ", ");
		first = 0;
		if (len == 0)
			buf_puts(b, "\"\"");
		else
			buf_append(b, c, len);
		if (e == NULL)
			break;
		c = e + 1;
	}
}

static void
store_bool(void *base, const struct cfg_desc *d, int v)
{
	*FIELD(base, d, int) = v != 0;
}

static void
store_int(struct loader *ld, void *base, const struct cfg_desc *d,
    const char *label, const struct origin *o, int64_t v)
{
	if (v < d->min || v > d->max) {
		ld_err(ld, o, "option '%s': %lld is out of range %lld..%lld", label,
		    (long long)v, (long long)d->min, (long long)d->max);
		return;
	}
	*FIELD(base, d, int64_t) = v;
}

static void
store_duration(struct loader *ld, void *base, const struct cfg_desc *d,
    const char *label, const struct origin *o, int64_t ms)
{
	char a[64], b[64];

	if (d->flags & CFG_NEGOFF) {
		if (ms < 0)
			ms = -1;
		else if (ms == 0)
			(void)config_parse_duration(d->def, &ms);
	}
	if (ms < 0 && !(d->flags & CFG_NEGOFF)) {
		ld_err(ld, o, "option '%s': negative duration not allowed", label);
		return;
	}
	if (ms >= 0 && (ms < d->min || ms > d->max)) {
		fmt_duration(a, sizeof a, ms < d->min ? d->min : d->max);
		fmt_duration(b, sizeof b, ms);
		ld_err(ld, o, "option '%s': duration %s is %s %s", label, b,
		    ms < d->min ? "below the minimum" : "above the maximum", a);
		return;
	}
	if ((d->flags & CFG_WHOLESEC) && ms > 0 && ms % 1000 != 0) {
		ld_err(ld, o, "option '%s': duration must be whole seconds", label);
		return;
	}
	*FIELD(base, d, int64_t) = ms;
}

static void
store_string(struct loader *ld, void *base, const struct cfg_desc *d,
    const char *label, const struct origin *o, const char *s)
{
	size_t n = strlen(s);
	char **field = FIELD(base, d, char *);

	if (d->choices != NULL && !in_choices(d->choices, s)) {
		struct buf b = BUF_INIT;

		choices_text(&b, d->choices);
		ld_err(ld, o, "option '%s': invalid value \"%s\" (expected %s)", label, s, buf_cstr(&b));
		buf_free(&b);
		return;
	}
	if ((int64_t)n < d->min) {
		ld_err(ld, o, "option '%s': must be at least %lld characters long", label, (long long)d->min);
		return;
	}
	if (d->max > 0 && (int64_t)n > d->max) {
		ld_err(ld, o, "option '%s': must be at most %lld characters long", label, (long long)d->max);
		return;
	}
	free(*field);
	*field = xstrdup(s);
}

static void
strlist_free(struct config_strlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

/* Takes over `l` (its strings are freed here on error). */
static void
store_strlist(struct loader *ld, void *base, const struct cfg_desc *d,
    const char *label, const struct origin *o, struct config_strlist *l)
{
	struct config_strlist *field = FIELD(base, d, struct config_strlist);

	if (d->choices != NULL) {
		for (size_t i = 0; i < l->n; i++) {
			if (!in_choices(d->choices, l->v[i])) {
				struct buf b = BUF_INIT;

				choices_text(&b, d->choices);
				ld_err(ld, o, "option '%s': invalid item \"%s\" (expected %s)",
				    label, l->v[i], buf_cstr(&b));
				buf_free(&b);
				strlist_free(l);
				return;
			}
		}
	}
	strlist_free(field);
	*field = *l;
	l->v = NULL;
	l->n = 0;
}

static void
strlist_add(struct config_strlist *l, const char *s, size_t len)
{
	l->v = xrealloc(l->v, (l->n + 1) * sizeof *l->v);
	l->v[l->n++] = xstrndup(s, len);
}

/* ---- values from strings: defaults and environment ---- */

/* Go strconv.ParseBool. */
static int
parse_bool(const char *s, int *v)
{
	static const char *const yes[] = { "1", "t", "T", "true", "TRUE", "True" };
	static const char *const no[] = { "0", "f", "F", "false", "FALSE", "False" };

	for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
		if (strcmp(s, yes[i]) == 0) {
			*v = 1;
			return 0;
		}
		if (strcmp(s, no[i]) == 0) {
			*v = 0;
			return 0;
		}
	}
	return -1;
}

/* Integer with base prefix detection (0x.., 0..); whole string, no overflow. */
static int
parse_int(const char *s, int64_t *v)
{
	char *end;
	long long x;

	if (!isdigit((unsigned char)*s) && *s != '-' && *s != '+')
		return -1;
	errno = 0;
	x = strtoll(s, &end, 0);
	if (errno != 0 || end == s || *end != '\0')
		return -1;
	*v = x;
	return 0;
}

static void
set_from_string(struct loader *ld, void *base, const struct cfg_desc *d,
    const char *label, const struct origin *o, const char *s)
{
	int b;
	int64_t v;
	struct config_strlist l = { NULL, 0 };

	switch (d->type) {
	case CFG_TYPE_BOOL:
		if (parse_bool(s, &b) < 0)
			ld_err(ld, o, "option '%s': invalid boolean \"%s\"", label, s);
		else
			store_bool(base, d, b);
		break;
	case CFG_TYPE_INT:
	case CFG_TYPE_INT64:
		if (parse_int(s, &v) < 0)
			ld_err(ld, o, "option '%s': invalid integer \"%s\"", label, s);
		else
			store_int(ld, base, d, label, o, v);
		break;
	case CFG_TYPE_DURATION:
		if (config_parse_duration(s, &v) < 0)
			ld_err(ld, o, "option '%s': invalid duration \"%s\" (use e.g. \"25s\", \"500ms\", \"1m30s\")", label, s);
		else
			store_duration(ld, base, d, label, o, v);
		break;
	case CFG_TYPE_STRING:
		store_string(ld, base, d, label, o, s);
		break;
	case CFG_TYPE_STRLIST:
		for (const char *p = s; *p != '\0';) {
			size_t n;

			while (isspace((unsigned char)*p))
				p++;
			for (n = 0; p[n] != '\0' && !isspace((unsigned char)p[n]); n++)
				;
			if (n > 0)
				strlist_add(&l, p, n);
			p += n;
		}
		store_strlist(ld, base, d, label, o, &l);
		break;
	}
}

/* ---- values from the file ---- */

static const char *
setting_type_name(const config_setting_t *s)
{
	switch (config_setting_type(s)) {
	case CONFIG_TYPE_GROUP: return "a group";
	case CONFIG_TYPE_INT: return "an integer";
	case CONFIG_TYPE_INT64: return "an integer";
	case CONFIG_TYPE_FLOAT: return "a float";
	case CONFIG_TYPE_STRING: return "a string";
	case CONFIG_TYPE_BOOL: return "a boolean";
	case CONFIG_TYPE_ARRAY: return "an array";
	case CONFIG_TYPE_LIST: return "a list";
	default: return "nothing";
	}
}

static int
setting_is_int(const config_setting_t *s)
{
	int t = config_setting_type(s);

	return t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64;
}

static void
set_from_setting(struct loader *ld, void *base, const struct cfg_desc *d,
    const char *label, const struct origin *o, const config_setting_t *s)
{
	int t = config_setting_type(s);
	int64_t v;

	switch (d->type) {
	case CFG_TYPE_BOOL:
		if (t != CONFIG_TYPE_BOOL)
			break;
		store_bool(base, d, config_setting_get_bool(s));
		return;
	case CFG_TYPE_INT:
	case CFG_TYPE_INT64:
		if (!setting_is_int(s))
			break;
		store_int(ld, base, d, label, o, config_setting_get_int64(s));
		return;
	case CFG_TYPE_DURATION:
		if (setting_is_int(s)) {
			v = config_setting_get_int64(s);
			if (v == 0 || (v == -1 && (d->flags & CFG_NEGOFF))) {
				store_duration(ld, base, d, label, o, v);
				return;
			}
			ld_err(ld, o, "option '%s': a duration must be a string such as \"25s\" or \"500ms\", got the integer %lld",
			    label, (long long)v);
			return;
		}
		if (t != CONFIG_TYPE_STRING)
			break;
		set_from_string(ld, base, d, label, o, config_setting_get_string(s));
		return;
	case CFG_TYPE_STRING:
		if (t != CONFIG_TYPE_STRING)
			break;
		store_string(ld, base, d, label, o, config_setting_get_string(s));
		return;
	case CFG_TYPE_STRLIST: {
		struct config_strlist l = { NULL, 0 };
		int n;

		if (t == CONFIG_TYPE_STRING) {
			/* One string stands for a list of one (as Centrifugo's
			 * address options allow). */
			const char *one = config_setting_get_string(s);
			strlist_add(&l, one, strlen(one));
			store_strlist(ld, base, d, label, o, &l);
			return;
		}
		if (t != CONFIG_TYPE_ARRAY && t != CONFIG_TYPE_LIST)
			break;
		n = config_setting_length(s);
		for (int i = 0; i < n; i++) {
			const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);

			if (config_setting_type(e) != CONFIG_TYPE_STRING) {
				ld_err(ld, o, "option '%s': item %d must be a string, got %s",
				    label, i + 1, setting_type_name(e));
				strlist_free(&l);
				return;
			}
			strlist_add(&l, config_setting_get_string(e), strlen(config_setting_get_string(e)));
		}
		store_strlist(ld, base, d, label, o, &l);
		return;
	}
	}
	ld_err(ld, o, "option '%s' must be %s %s, got %s", label,
	    d->type == CFG_TYPE_INT || d->type == CFG_TYPE_INT64 ? "an" : "a",
	    d->type == CFG_TYPE_STRLIST ? "list of strings" : cfg_type_names[d->type],
	    setting_type_name(s));
}

/* ---- values from JSON (CENTRIFUGO_CHANNEL_NAMESPACES) ---- */

static void
set_from_json(struct loader *ld, void *base, const struct cfg_desc *d,
    const char *label, const struct origin *o, json_t *j)
{
	switch (d->type) {
	case CFG_TYPE_BOOL:
		if (!json_is_boolean(j))
			break;
		store_bool(base, d, json_is_true(j));
		return;
	case CFG_TYPE_INT:
	case CFG_TYPE_INT64:
		if (!json_is_integer(j))
			break;
		store_int(ld, base, d, label, o, json_integer_value(j));
		return;
	case CFG_TYPE_DURATION:
		if (json_is_integer(j) && json_integer_value(j) == 0) {
			store_duration(ld, base, d, label, o, 0);
			return;
		}
		if (!json_is_string(j))
			break;
		set_from_string(ld, base, d, label, o, json_string_value(j));
		return;
	case CFG_TYPE_STRING:
		if (!json_is_string(j))
			break;
		store_string(ld, base, d, label, o, json_string_value(j));
		return;
	case CFG_TYPE_STRLIST: {
		struct config_strlist l = { NULL, 0 };
		size_t i;
		json_t *e;

		if (!json_is_array(j))
			break;
		json_array_foreach(j, i, e) {
			if (!json_is_string(e)) {
				ld_err(ld, o, "option '%s': item %zu must be a string", label, i + 1);
				strlist_free(&l);
				return;
			}
			strlist_add(&l, json_string_value(e), json_string_length(e));
		}
		store_strlist(ld, base, d, label, o, &l);
		return;
	}
	}
	ld_err(ld, o, "option '%s' must be a JSON %s", label,
	    d->type == CFG_TYPE_STRLIST ? "array of strings" : cfg_type_names[d->type]);
}

/* ---- defaults, free ---- */

static void
apply_defaults(struct loader *ld, void *base, const struct cfg_desc *descs, size_t n)
{
	struct origin o = { 0, NULL };

	for (size_t i = 0; i < n; i++) {
		/* Strings are never NULL, even if a default were rejected. */
		if (descs[i].type == CFG_TYPE_STRING && *FIELD(base, &descs[i], char *) == NULL)
			*FIELD(base, &descs[i], char *) = xstrdup("");
		set_from_string(ld, base, &descs[i], descs[i].path, &o, descs[i].def);
	}
}

static void
free_fields(void *base, const struct cfg_desc *descs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (descs[i].type == CFG_TYPE_STRING) {
			free(*FIELD(base, &descs[i], char *));
			*FIELD(base, &descs[i], char *) = NULL;
		} else if (descs[i].type == CFG_TYPE_STRLIST)
			strlist_free(FIELD(base, &descs[i], struct config_strlist));
	}
}

static void
chan_opts_init(struct loader *ld, struct chan_opts *co)
{
	memset(co, 0, sizeof *co);
	co->name = xstrdup("");
	apply_defaults(ld, co, chan_descs, N_CHAN_DESCS);
}

static void
chan_opts_free(struct chan_opts *co)
{
	free_fields(co, chan_descs, N_CHAN_DESCS);
	free(co->name);
	co->name = NULL;
	if (co->has_regex)
		regfree(&co->regex);
	co->has_regex = 0;
}

static void
free_namespaces(struct config *cfg)
{
	for (size_t i = 0; i < cfg->n_namespaces; i++)
		chan_opts_free(&cfg->namespaces[i]);
	free(cfg->namespaces);
	cfg->namespaces = NULL;
	cfg->n_namespaces = 0;
}

static struct config *
defaults_into(struct loader *ld)
{
	struct config *cfg = xcalloc(1, sizeof *cfg);

	cfg->magic = CONFIG_MAGIC;
	cfg->path = xstrdup("");
	apply_defaults(ld, cfg, config_descs, N_CONFIG_DESCS);
	chan_opts_init(ld, &cfg->without_namespace);
	return cfg;
}

struct config *
config_defaults(void)
{
	struct buf errors = BUF_INIT;
	struct loader ld;
	struct config *cfg;

	memset(&ld, 0, sizeof ld);
	ld.file = "defaults";
	ld.errors = &errors;
	cfg = defaults_into(&ld);
	if (ld.nerr != 0)
		log_panic("config_tbl.h has an invalid default: %s", buf_cstr(&errors));
	buf_free(&errors);
	return cfg;
}

void
config_free(struct config *cfg)
{
	if (cfg == NULL)
		return;
	ASSERT(cfg->magic == CONFIG_MAGIC);
	free_fields(cfg, config_descs, N_CONFIG_DESCS);
	chan_opts_free(&cfg->without_namespace);
	free_namespaces(cfg);
	free(cfg->path);
	cfg->magic = 0;
	free(cfg);
}

/* ---- walking the file ---- */

/* Keys are case-insensitive, as in Centrifugo (its parser lower-cases them). */
static void
lower(char *s)
{
	for (; *s != '\0'; s++)
		*s = (char)tolower((unsigned char)*s);
}

static int
desc_find(const struct cfg_desc *descs, size_t n, const char *path)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(descs[i].path, path) == 0)
			return (int)i;
	return -1;
}

/* Is `path` a section, i.e. a prefix "path." of some option? */
static int
is_section(const char *path)
{
	size_t n = strlen(path);

	for (size_t i = 0; i < N_CONFIG_DESCS; i++)
		if (strncmp(config_descs[i].path, path, n) == 0 && config_descs[i].path[n] == '.')
			return 1;
	return 0;
}

static struct chan_opts *
add_namespace(struct loader *ld, struct config *cfg, const struct origin *item)
{
	struct chan_opts *co;

	cfg->namespaces = xrealloc(cfg->namespaces, (cfg->n_namespaces + 1) * sizeof *cfg->namespaces);
	ld->ns = xrealloc(ld->ns, (cfg->n_namespaces + 1) * sizeof *ld->ns);
	memset(&ld->ns[cfg->n_namespaces], 0, sizeof ld->ns[0]);
	ld->ns[cfg->n_namespaces].item = *item;
	co = &cfg->namespaces[cfg->n_namespaces++];
	chan_opts_init(ld, co);
	return co;
}

static void
parse_chan_group(struct loader *ld, struct chan_opts *co, struct chan_src *src,
    const config_setting_t *g, const char *label, int is_item)
{
	int n = config_setting_length(g);
	char full[512];

	for (int i = 0; i < n; i++) {
		const config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
		const char *name = config_setting_name(s);
		struct origin o = { config_setting_source_line(s), NULL };
		int idx;

		snprintf(full, sizeof full, "%s.%s", label, name);
		lower(full);
		name = full + strlen(label) + 1;
		if (is_item && strcmp(name, "name") == 0) {
			if (config_setting_type(s) != CONFIG_TYPE_STRING) {
				ld_err(ld, &o, "option '%s' must be a string, got %s", full, setting_type_name(s));
				continue;
			}
			free(co->name);
			co->name = xstrdup(config_setting_get_string(s));
			continue;
		}
		idx = desc_find(chan_descs, N_CHAN_DESCS, name);
		if (idx < 0) {
			ld_err(ld, &o, "unknown option '%s'", full);
			continue;
		}
		src->opt[idx] = o;
		set_from_setting(ld, co, &chan_descs[idx], full, &o, s);
	}
}

static void
parse_namespaces(struct loader *ld, struct config *cfg, const config_setting_t *list)
{
	struct origin lo = { config_setting_source_line(list), NULL };
	int t = config_setting_type(list);
	int n;

	if (t != CONFIG_TYPE_LIST && t != CONFIG_TYPE_ARRAY) {
		ld_err(ld, &lo, "option 'channel.namespaces' must be a list of groups, got %s",
		    setting_type_name(list));
		return;
	}
	n = config_setting_length(list);
	for (int i = 0; i < n; i++) {
		const config_setting_t *g = config_setting_get_elem(list, (unsigned)i);
		struct origin o = { config_setting_source_line(g), NULL };
		struct chan_opts *co;
		char label[64];

		if (config_setting_type(g) != CONFIG_TYPE_GROUP) {
			ld_err(ld, &o, "channel.namespaces[%d] must be a group { name = \"...\"; ... }, got %s",
			    i, setting_type_name(g));
			continue;
		}
		co = add_namespace(ld, cfg, &o);
		snprintf(label, sizeof label, "channel.namespaces[%d]", i);
		parse_chan_group(ld, co, &ld->ns[cfg->n_namespaces - 1], g, label, 1);
	}
}

static const char grpc_tls_refused[] =
    "option 'grpc_api.tls': TLS for the GRPC API is not supported (it serves "
    "plaintext HTTP/2 only); terminate TLS in front of the server";

/*
 * grpc_api.tls: refused, except for a group that is empty or only says
 * `enabled = false` (as configurations written for Centrifugo may).
 */
static void
check_grpc_tls(struct loader *ld, const struct origin *o, const config_setting_t *s)
{
	int n;

	if (config_setting_type(s) == CONFIG_TYPE_GROUP) {
		n = config_setting_length(s);
		for (int i = 0; i < n; i++) {
			const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);

			if (strcasecmp(config_setting_name(e), "enabled") != 0 ||
			    config_setting_type(e) != CONFIG_TYPE_BOOL ||
			    config_setting_get_bool(e))
				break;
			if (i == n - 1)
				return;
		}
		if (n == 0)
			return;
	}
	ld_err(ld, o, "%s", grpc_tls_refused);
}

static void
walk_group(struct loader *ld, struct config *cfg, const config_setting_t *g, const char *prefix)
{
	int n = config_setting_length(g);

	for (int i = 0; i < n; i++) {
		const config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
		struct origin o = { config_setting_source_line(s), NULL };
		char path[512];
		int idx;

		snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", config_setting_name(s));
		lower(path);
		if (strcmp(path, "channel.without_namespace") == 0) {
			if (config_setting_type(s) != CONFIG_TYPE_GROUP) {
				ld_err(ld, &o, "option '%s' must be a group, got %s", path, setting_type_name(s));
				continue;
			}
			ld->wo.item = o;
			parse_chan_group(ld, &cfg->without_namespace, &ld->wo, s, path, 0);
			continue;
		}
		if (strcmp(path, "channel.namespaces") == 0) {
			free_namespaces(cfg);
			parse_namespaces(ld, cfg, s);
			continue;
		}
		if (strcmp(path, "grpc_api.tls") == 0) {
			check_grpc_tls(ld, &o, s);
			continue;
		}
		idx = desc_find(config_descs, N_CONFIG_DESCS, path);
		if (idx >= 0) {
			ld->top[idx] = o;
			set_from_setting(ld, cfg, &config_descs[idx], path, &o, s);
		} else if (is_section(path) || strcmp(path, "channel") == 0) {
			if (config_setting_type(s) != CONFIG_TYPE_GROUP)
				ld_err(ld, &o, "'%s' must be a group { ... }, got %s", path, setting_type_name(s));
			else
				walk_group(ld, cfg, s, path);
		} else
			ld_err(ld, &o, "unknown option '%s'", path);
	}
}

static void
load_file(struct loader *ld, struct config *cfg, const char *path)
{
	config_t lc;
	FILE *f;

	f = fopen(path, "r");
	if (f == NULL) {
		ld_err(ld, NULL, "cannot open: %s", strerror(errno));
		return;
	}
	fclose(f);
	config_init(&lc);
	if (config_read_file(&lc, path) != CONFIG_TRUE) {
		struct origin o = { config_error_line(&lc), NULL };

		if (config_error_type(&lc) == CONFIG_ERR_FILE_IO)
			ld_err(ld, NULL, "cannot read the file");
		else if (config_error_file(&lc) != NULL && strcmp(config_error_file(&lc), path) != 0) {
			/* An error inside an @include'd file. */
			buf_printf(ld->errors, "%s:%d: %s\n", config_error_file(&lc),
			    config_error_line(&lc), config_error_text(&lc));
			ld->nerr++;
		} else
			ld_err(ld, &o, "%s", config_error_text(&lc));
		config_destroy(&lc);
		return;
	}
	walk_group(ld, cfg, config_root_setting(&lc), "");
	config_destroy(&lc);
}

/* ---- environment ---- */

/* "CENTRIFUGO_" + upper(path) with '.', '-' -> '_'. */
static void
env_name(char *out, size_t cap, const char *prefix, const char *path)
{
	size_t n = (size_t)snprintf(out, cap, "%s", prefix);

	for (; *path != '\0' && n + 1 < cap; path++)
		out[n++] = *path == '.' || *path == '-' ? '_' : (char)toupper((unsigned char)*path);
	out[n] = '\0';
}

static int
env_is_exempt(const char *name)
{
	static const char *const re_src = "^CENTRIFUGO(_[A-Z0-9_]+)?_(PORT|SERVICE_)";
	regex_t re;
	int hit;

	if (strncmp(name, "CENTRIFUGO_VAR_", 15) == 0)
		return 1;
	if (regcomp(&re, re_src, REG_EXTENDED | REG_NOSUB) != 0)
		return 0;
	hit = regexec(&re, name, 0, NULL, 0) == 0;
	regfree(&re);
	return hit;
}

static void
env_namespaces_json(struct loader *ld, struct config *cfg, const struct origin *o, const char *val)
{
	json_error_t jerr;
	json_t *root, *item;
	size_t i;

	root = json_loads(val, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL) {
		ld_err(ld, o, "invalid JSON (%s at position %d)", jerr.text, jerr.position);
		return;
	}
	if (!json_is_array(root)) {
		ld_err(ld, o, "must be a JSON array of namespace objects");
		json_decref(root);
		return;
	}
	free_namespaces(cfg);
	free(ld->ns);
	ld->ns = NULL;
	json_array_foreach(root, i, item) {
		struct chan_opts *co;
		const char *key;
		json_t *v;
		char label[64], full[512];

		if (!json_is_object(item)) {
			ld_err(ld, o, "channel.namespaces[%zu] must be a JSON object", i);
			continue;
		}
		co = add_namespace(ld, cfg, o);
		snprintf(label, sizeof label, "channel.namespaces[%zu]", i);
		json_object_foreach(item, key, v) {
			int idx;

			snprintf(full, sizeof full, "%s.%s", label, key);
			if (strcmp(key, "name") == 0) {
				if (!json_is_string(v)) {
					ld_err(ld, o, "option '%s' must be a string", full);
					continue;
				}
				free(co->name);
				co->name = xstrdup(json_string_value(v));
				continue;
			}
			idx = desc_find(chan_descs, N_CHAN_DESCS, key);
			if (idx < 0) {
				ld_err(ld, o, "unknown option '%s'", full);
				continue;
			}
			ld->ns[cfg->n_namespaces - 1].opt[idx] = *o;
			set_from_json(ld, co, &chan_descs[idx], full, o, v);
		}
	}
	json_decref(root);
}

/* Channel option named by the upper-cased `rest` ("HISTORY_SIZE"), or -1. */
static int
chan_env_find(const char *rest)
{
	char n[128];

	for (size_t i = 0; i < N_CHAN_DESCS; i++) {
		env_name(n, sizeof n, "", chan_descs[i].path);
		if (strcmp(n, rest) == 0)
			return (int)i;
	}
	return -1;
}

/* Returns 1 if `name` was a known variable (applied unless empty). */
static int
env_apply_one(struct loader *ld, struct config *cfg, const char *name, size_t nlen, const char *val)
{
	static const char wo_prefix[] = "CENTRIFUGO_CHANNEL_WITHOUT_NAMESPACE_";
	static const char ns_prefix[] = "CENTRIFUGO_CHANNEL_NAMESPACES_";
	char n[256], var[256];
	struct origin o;
	int idx;

	if (nlen >= sizeof var)
		return 0;
	memcpy(var, name, nlen);
	var[nlen] = '\0';
	for (size_t i = 0; i < N_CONFIG_DESCS; i++) {
		env_name(n, sizeof n, "CENTRIFUGO_", config_descs[i].path);
		if (strcmp(n, var) != 0)
			continue;
		if (*val != '\0') {
			o = ld_env_origin(ld, name, nlen);
			ld->top[i] = o;
			set_from_string(ld, cfg, &config_descs[i], config_descs[i].path, &o, val);
		}
		return 1;
	}
	if (strncmp(var, wo_prefix, sizeof wo_prefix - 1) == 0) {
		idx = chan_env_find(var + sizeof wo_prefix - 1);
		if (idx < 0)
			return 0;
		if (*val != '\0') {
			o = ld_env_origin(ld, name, nlen);
			ld->wo.opt[idx] = o;
			snprintf(n, sizeof n, "channel.without_namespace.%s", chan_descs[idx].path);
			set_from_string(ld, &cfg->without_namespace, &chan_descs[idx], n, &o, val);
		}
		return 1;
	}
	if (strncmp(var, ns_prefix, sizeof ns_prefix - 1) == 0) {
		const char *rest = var + sizeof ns_prefix - 1;
		int found = 0;

		for (size_t i = 0; i < cfg->n_namespaces; i++) {
			size_t l;

			env_name(n, sizeof n, "", cfg->namespaces[i].name);
			l = strlen(n);
			if (l == 0 || strncmp(rest, n, l) != 0 || rest[l] != '_')
				continue;
			idx = chan_env_find(rest + l + 1);
			if (idx < 0)
				continue;
			found = 1;
			if (*val != '\0') {
				char full[512];

				o = ld_env_origin(ld, name, nlen);
				ld->ns[i].opt[idx] = o;
				snprintf(full, sizeof full, "channel.namespaces[%s].%s",
				    cfg->namespaces[i].name, chan_descs[idx].path);
				set_from_string(ld, &cfg->namespaces[i], &chan_descs[idx], full, &o, val);
			}
		}
		return found;
	}
	return 0;
}

static void
load_env(struct loader *ld, struct config *cfg)
{
	static const char nsvar[] = "CENTRIFUGO_CHANNEL_NAMESPACES";
	static const char tlsvar[] = "CENTRIFUGO_GRPC_API_TLS_ENABLED";

	/* The whole namespaces array first: per-item overrides apply to its items. */
	for (char **e = environ; *e != NULL; e++) {
		if (strncmp(*e, nsvar, sizeof nsvar - 1) == 0 && (*e)[sizeof nsvar - 1] == '=') {
			const char *val = *e + sizeof nsvar;

			if (*val != '\0') {
				struct origin o = ld_env_origin(ld, *e, sizeof nsvar - 1);

				env_namespaces_json(ld, cfg, &o, val);
			}
		}
	}
	for (char **e = environ; *e != NULL; e++) {
		const char *eq = strchr(*e, '=');
		size_t nlen;

		if (strncmp(*e, "CENTRIFUGO_", 11) != 0 || eq == NULL)
			continue;
		nlen = (size_t)(eq - *e);
		if (nlen == sizeof nsvar - 1 && strncmp(*e, nsvar, nlen) == 0)
			continue;
		if (env_apply_one(ld, cfg, *e, nlen, eq + 1))
			continue;
		if (nlen == sizeof tlsvar - 1 && strncmp(*e, tlsvar, nlen) == 0) {
			if (strcmp(eq + 1, "") != 0 && strcmp(eq + 1, "false") != 0) {
				struct origin o = ld_env_origin(ld, *e, nlen);

				ld_err(ld, &o, "%s", grpc_tls_refused);
			}
			continue;
		}
		{
			char *name = xstrndup(*e, nlen);

			if (!env_is_exempt(name))
				log_warn("config: unknown environment variable %s ignored", name);
			free(name);
		}
	}
}

/* ---- validation ---- */

static const struct origin *
chan_origin(const struct chan_src *s, int idx)
{
	const struct origin *o = &s->opt[idx];

	return o->line > 0 || o->env != NULL ? o : &s->item;
}

static int
valid_ns_name(const char *s)
{
	size_t n = 0;

	for (; s[n] != '\0'; n++)
		if (!isalnum((unsigned char)s[n]) && s[n] != '-' && s[n] != '_' && s[n] != '.')
			return 0;
	return n >= 2;
}

static void
validate_chan(struct loader *ld, const struct config *cfg, struct chan_opts *co,
    const struct chan_src *src, const char *label)
{
	char a[64], b[64];
	int rc;

	/* Inherit channel-level defaults. */
	if (co->history_meta_ttl == 0)
		co->history_meta_ttl = cfg->channel_history_meta_ttl;
	if (co->publication_data_format[0] == '\0' && cfg->channel_publication_data_format[0] != '\0') {
		free(co->publication_data_format);
		co->publication_data_format = xstrdup(cfg->channel_publication_data_format);
	}

	if ((co->history_size > 0) != (co->history_ttl > 0)) {
		ld_err(ld, chan_origin(src, co->history_size > 0 ? CHI_history_size : CHI_history_ttl),
		    "%s: history_size and history_ttl must be both set or both zero", label);
	}
	if (co->history_ttl > 0 && co->history_meta_ttl > 0 && co->history_ttl > co->history_meta_ttl) {
		fmt_duration(a, sizeof a, co->history_ttl);
		fmt_duration(b, sizeof b, co->history_meta_ttl);
		ld_err(ld, chan_origin(src, CHI_history_ttl),
		    "%s: history_ttl %s exceeds history_meta_ttl %s", label, a, b);
	}
	if (co->force_recovery && (co->history_size == 0 || co->history_ttl == 0))
		ld_err(ld, chan_origin(src, CHI_force_recovery),
		    "%s: force_recovery needs history (history_size and history_ttl)", label);
	if (co->auto_cache_recover && (!co->force_recovery || strcmp(co->force_recovery_mode, "cache") != 0))
		ld_err(ld, chan_origin(src, CHI_auto_cache_recover),
		    "%s: auto_cache_recover needs force_recovery and force_recovery_mode \"cache\"", label);
	if (co->channel_regex[0] != '\0') {
		rc = regcomp(&co->regex, co->channel_regex, REG_EXTENDED | REG_NOSUB);
		if (rc != 0) {
			char why[128];

			regerror(rc, &co->regex, why, sizeof why);
			ld_err(ld, chan_origin(src, CHI_channel_regex),
			    "%s: channel_regex \"%s\" does not compile: %s", label, co->channel_regex, why);
		} else
			co->has_regex = 1;
	}
}

static int
valid_claim(const char *s)
{
	for (; *s != '\0'; s++)
		if (!isalpha((unsigned char)*s) && *s != '_')
			return 0;
	return 1;
}

/* The TLS settings of the Redis engine: a context is built (and dropped)
 * so that every PEM value is read and checked here. */
static void
validate_redis_tls(struct loader *ld, const struct config *cfg)
{
	static const enum config_idx at[] = {
		[TLS_F_OBJECT] = CI_engine_redis_tls_enabled,
		[TLS_F_CERT] = CI_engine_redis_tls_cert_pem,
		[TLS_F_KEY] = CI_engine_redis_tls_key_pem,
		[TLS_F_CA] = CI_engine_redis_tls_server_ca_pem,
	};
	struct tls_client_conf t;
	struct buf err = BUF_INIT;
	enum tls_conf_field bad;
	SSL_CTX *ctx;

	config_redis_tls(cfg, &t);
	ctx = tls_client_ctx_new(&t, &err, &bad);
	if (ctx == NULL)
		ld_err(ld, &ld->top[at[bad]], "%s", buf_cstr(&err));
	SSL_CTX_free(ctx);
	buf_free(&err);
}

void
config_redis_tls(const struct config *cfg, struct tls_client_conf *t)
{
	t->opt = "engine.redis.tls";
	t->cert_pem = cfg->engine_redis_tls_cert_pem;
	t->key_pem = cfg->engine_redis_tls_key_pem;
	t->server_ca_pem = cfg->engine_redis_tls_server_ca_pem;
	t->server_name = cfg->engine_redis_tls_server_name;
	t->insecure_skip_verify = cfg->engine_redis_tls_insecure_skip_verify;
}

static void
validate(struct loader *ld, struct config *cfg)
{
	char a[64], b[64];

	if (strcmp(cfg->engine_type, "redis") == 0) {
		struct redis_addr ra;
		char why[200];

		for (size_t i = 0; i < cfg->engine_redis_sentinel_address.n; i++) {
			struct redis_addr *list = NULL;
			size_t n = 0;
			if (redis_sentinels_parse(cfg->engine_redis_sentinel_address.v[i], &list, &n,
			    why, sizeof(why)) != 0)
				ld_err(ld, &ld->top[CI_engine_redis_sentinel_address],
				    "option 'engine.redis.sentinel_address': \"%s\": %s",
				    cfg->engine_redis_sentinel_address.v[i], why);
			redis_sentinels_free(list, n);
		}
		if (cfg->engine_redis_sentinel_address.n && cfg->engine_redis_sentinel_master_name[0] == '\0')
			ld_err(ld, &ld->top[CI_engine_redis_sentinel_address],
			    "option 'engine.redis.sentinel_address' needs engine.redis.sentinel_master_name");
		if (cfg->engine_redis_address.n == 0 && cfg->engine_redis_sentinel_address.n == 0)
			ld_err(ld, &ld->top[CI_engine_redis_address],
			    "option 'engine.redis.address': at least one address is needed");
		int tls = cfg->engine_redis_tls_enabled;
		for (size_t i = 0; i < cfg->engine_redis_address.n; i++) {
			if (redis_addr_parse(cfg->engine_redis_address.v[i], &ra, why, sizeof(why)) != 0) {
				ld_err(ld, &ld->top[CI_engine_redis_address],
				    "option 'engine.redis.address': \"%s\": %s",
				    cfg->engine_redis_address.v[i], why);
				continue;
			}
			if (ra.path != NULL && cfg->engine_redis_tls_enabled)
				ld_err(ld, &ld->top[CI_engine_redis_tls_enabled],
				    "option 'engine.redis.tls.enabled': the unix socket address \"%s\" cannot use TLS",
				    cfg->engine_redis_address.v[i]);
			tls |= ra.tls;
			redis_addr_free(&ra);
		}
		if (tls)
			validate_redis_tls(ld, cfg);
		if (cfg->broker_enabled && strcmp(cfg->broker_type, "nats") == 0)
			ld_err(ld, &ld->top[CI_broker_type],
			    "option 'broker.type': \"nats\" together with engine.type \"redis\" is not supported (choose one)");
	}
	if (cfg->http_server_internal_port[0] != '\0') {
		int64_t p;

		if (parse_int(cfg->http_server_internal_port, &p) < 0 || p < 0 || p > 65535)
			ld_err(ld, &ld->top[CI_http_server_internal_port],
			    "option 'http_server.internal_port': \"%s\" is not a port number 0..65535",
			    cfg->http_server_internal_port);
	}
	if (cfg->client_ping_interval > 0 && cfg->client_pong_timeout > 0 &&
	    cfg->client_ping_interval <= cfg->client_pong_timeout) {
		const struct origin *o = ld->top[CI_client_ping_interval].line > 0 ||
		    ld->top[CI_client_ping_interval].env != NULL ?
		    &ld->top[CI_client_ping_interval] : &ld->top[CI_client_pong_timeout];

		fmt_duration(a, sizeof a, cfg->client_ping_interval);
		fmt_duration(b, sizeof b, cfg->client_pong_timeout);
		ld_err(ld, o, "option 'client.ping_interval' (%s) must be greater than client.pong_timeout (%s)", a, b);
	}
	if (!valid_claim(cfg->client_token_user_id_claim))
		ld_err(ld, &ld->top[CI_client_token_user_id_claim],
		    "option 'client.token.user_id_claim': only letters and '_' allowed");
	if (!valid_claim(cfg->client_subscription_token_user_id_claim))
		ld_err(ld, &ld->top[CI_client_subscription_token_user_id_claim],
		    "option 'client.subscription_token.user_id_claim': only letters and '_' allowed");

	validate_chan(ld, cfg, &cfg->without_namespace, &ld->wo, "channel.without_namespace");
	for (size_t i = 0; i < cfg->n_namespaces; i++) {
		struct chan_opts *co = &cfg->namespaces[i];
		const struct origin *o = &ld->ns[i].item;
		char label[300];

		if (co->name[0] == '\0') {
			ld_err(ld, o, "channel.namespaces[%zu] has no name", i);
			snprintf(label, sizeof label, "channel.namespaces[%zu]", i);
		} else {
			if (!valid_ns_name(co->name))
				ld_err(ld, o, "invalid namespace name \"%s\" (must match ^[-a-zA-Z0-9_.]{2,}$)", co->name);
			for (size_t j = 0; j < i; j++)
				if (strcmp(cfg->namespaces[j].name, co->name) == 0) {
					ld_err(ld, o, "duplicate namespace name \"%s\"", co->name);
					break;
				}
			snprintf(label, sizeof label, "namespace \"%s\"", co->name);
		}
		validate_chan(ld, cfg, co, &ld->ns[i], label);
	}

	if (cfg->client_subscribe_to_user_personal_channel_enabled) {
		const char *ns = cfg->client_subscribe_to_user_personal_channel_personal_channel_namespace;
		const struct chan_opts *co = &cfg->without_namespace;
		const struct origin *o = &ld->top[CI_client_subscribe_to_user_personal_channel_enabled];

		if (ns[0] != '\0') {
			co = NULL;
			for (size_t i = 0; i < cfg->n_namespaces; i++)
				if (strcmp(cfg->namespaces[i].name, ns) == 0)
					co = &cfg->namespaces[i];
			if (co == NULL)
				ld_err(ld, &ld->top[CI_client_subscribe_to_user_personal_channel_personal_channel_namespace],
				    "option 'client.subscribe_to_user_personal_channel.personal_channel_namespace': namespace \"%s\" does not exist", ns);
		}
		if (co != NULL && cfg->client_subscribe_to_user_personal_channel_single_connection && !co->presence)
			ld_err(ld, o, "option 'client.subscribe_to_user_personal_channel.single_connection' needs presence in the personal channel namespace");
	}
}

int
config_load(const char *path, struct config **out, struct buf *errors)
{
	struct loader ld;
	struct config *cfg;
	int rc = 0;

	memset(&ld, 0, sizeof ld);
	ld.file = path != NULL ? path : "defaults";
	ld.errors = errors;
	cfg = defaults_into(&ld);
	ASSERT(ld.nerr == 0);
	if (path != NULL) {
		free(cfg->path);
		cfg->path = xstrdup(path);
		load_file(&ld, cfg, path);
	}
	load_env(&ld, cfg);
	validate(&ld, cfg);
	if (ld.nerr != 0) {
		config_free(cfg);
		cfg = NULL;
		rc = -1;
	}
	*out = cfg;
	for (size_t i = 0; i < ld.n_envnames; i++)
		free(ld.envnames[i]);
	free(ld.envnames);
	free(ld.ns);
	return rc;
}

/* ---- queries ---- */

const struct chan_opts *
config_chan_opts(const struct config *cfg, const char *channel, size_t len, int *unknown_ns)
{
	size_t pl = strlen(cfg->channel_private_prefix);
	size_t bl = strlen(cfg->channel_namespace_boundary);
	const char *b;
	size_t nl;

	*unknown_ns = 0;
	if (pl > 0 && len >= pl && memcmp(channel, cfg->channel_private_prefix, pl) == 0) {
		channel += pl;
		len -= pl;
	}
	b = bl > 0 ? memmem(channel, len, cfg->channel_namespace_boundary, bl) : NULL;
	if (b == NULL || b == channel)
		return &cfg->without_namespace;
	nl = (size_t)(b - channel);
	for (size_t i = 0; i < cfg->n_namespaces; i++) {
		const struct chan_opts *co = &cfg->namespaces[i];

		if (strncmp(co->name, channel, nl) == 0 && co->name[nl] == '\0')
			return co;
	}
	*unknown_ns = 1;
	return NULL;
}

unsigned
config_workers(const struct config *cfg)
{
	long n;

	if (cfg->workers > 0)
		return (unsigned)cfg->workers;
	n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (unsigned)n : 1;
}

static int
value_equal(const void *a, const void *b, const struct cfg_desc *d)
{
	switch (d->type) {
	case CFG_TYPE_BOOL:
		return *FIELD(a, d, const int) == *FIELD(b, d, const int);
	case CFG_TYPE_INT:
	case CFG_TYPE_INT64:
	case CFG_TYPE_DURATION:
		return *FIELD(a, d, const int64_t) == *FIELD(b, d, const int64_t);
	case CFG_TYPE_STRING:
		return strcmp(*FIELD(a, d, char *const), *FIELD(b, d, char *const)) == 0;
	case CFG_TYPE_STRLIST: {
		const struct config_strlist *x = FIELD(a, d, const struct config_strlist);
		const struct config_strlist *y = FIELD(b, d, const struct config_strlist);

		if (x->n != y->n)
			return 0;
		for (size_t i = 0; i < x->n; i++)
			if (strcmp(x->v[i], y->v[i]) != 0)
				return 0;
		return 1;
	}
	}
	return 0;
}

int
config_restart_changes(const struct config *a, const struct config *b, struct buf *names)
{
	int n = 0;

	ASSERT(a->magic == CONFIG_MAGIC && b->magic == CONFIG_MAGIC);
	for (size_t i = 0; i < N_CONFIG_DESCS; i++) {
		if (config_descs[i].flags & CFG_RELOAD)
			continue;
		if (!value_equal(a, b, &config_descs[i])) {
			if (n++ > 0)
				buf_putc(names, ' ');
			buf_puts(names, config_descs[i].path);
		}
	}
	return n;
}

/* ---- centrifugo.conf(5) ---- */

/* Writes text for a man(7) text line: escapes '\', protects a leading '.' or '\''. */
static void
man_text(FILE *f, const char *s, size_t n)
{
	if (n > 0 && (s[0] == '.' || s[0] == '\''))
		fputs("\\&", f);
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\\')
			fputs("\\e", f);
		else
			fputc(s[i], f);
	}
}

/*
 * Text for man(7): one sentence per line, lines wrapped at spaces to stay
 * under 80 bytes (mandoc -Tlint style).
 */
static void
man_doc(FILE *f, const char *doc)
{
	while (*doc != '\0') {
		const char *e = strstr(doc, ". ");
		size_t n = e != NULL ? (size_t)(e - doc) + 1 : strlen(doc);

		while (n > 72) {
			size_t cut = 72;

			while (cut > 0 && doc[cut] != ' ')
				cut--;
			if (cut == 0)
				break;
			man_text(f, doc, cut);
			fputc('\n', f);
			doc += cut + 1;
			n -= cut + 1;
		}
		man_text(f, doc, n);
		fputc('\n', f);
		doc += n;
		while (*doc == ' ')
			doc++;
	}
}

static void
man_option(FILE *f, const char *name, const struct cfg_desc *d, int show_reload)
{
	struct buf b = BUF_INIT;
	char dur[64];

	fprintf(f, ".TP\n.B %s\n", name);
	buf_printf(&b, "Type: %s; default: ", cfg_type_names[d->type]);
	if (d->type == CFG_TYPE_STRING)
		buf_printf(&b, "\"%s\"", d->def);
	else if (d->type == CFG_TYPE_STRLIST)
		buf_puts(&b, *d->def != '\0' ? d->def : "empty");
	else
		buf_puts(&b, d->def);
	if ((d->type == CFG_TYPE_INT || d->type == CFG_TYPE_INT64) &&
	    (d->min != 0 || d->max < INT32_MAX))
		buf_printf(&b, "; range: %lld to %lld", (long long)d->min, (long long)d->max);
	if (d->type == CFG_TYPE_DURATION && d->min > 0) {
		fmt_duration(dur, sizeof dur, d->min);
		buf_printf(&b, "; at least %s", dur);
	}
	if (d->type == CFG_TYPE_DURATION && (d->flags & CFG_NEGOFF))
		buf_puts(&b, "; negative disables, 0 means the default");
	if (d->flags & CFG_WHOLESEC)
		buf_puts(&b, "; whole seconds");
	if (d->type == CFG_TYPE_STRING && d->min > 0)
		buf_puts(&b, "; not empty");
	if (d->type == CFG_TYPE_STRING && d->max > 0)
		buf_printf(&b, "; at most %lld characters", (long long)d->max);
	if (d->choices != NULL) {
		buf_puts(&b, d->type == CFG_TYPE_STRLIST ? "; items: " : "; one of: ");
		choices_text(&b, d->choices);
	}
	if (show_reload)
		buf_puts(&b, d->flags & CFG_RELOAD ? "; applied by reload" : "; needs a restart");
	buf_putc(&b, '.');
	man_doc(f, buf_cstr(&b));
	buf_free(&b);
	fputs(".br\n", f);
	man_doc(f, d->doc);
}

void
config_write_man_options(FILE *f)
{
	const char *prev = NULL;
	size_t prevlen = 0;

	for (size_t i = 0; i < N_CONFIG_DESCS; i++) {
		const char *p = config_descs[i].path;
		const char *dot = strrchr(p, '.');
		size_t len = dot != NULL ? (size_t)(dot - p) : 0;

		if (prev == NULL || len != prevlen || strncmp(p, prev, len) != 0) {
			if (len == 0)
				fputs(".SS Top-level options\n", f);
			else
				fprintf(f, ".SS %.*s\n", (int)len, p);
			prev = p;
			prevlen = len;
		}
		man_option(f, p, &config_descs[i], 1);
	}
	fputs(".SS Channel options\n"
	    "These options appear in\n"
	    ".B channel.without_namespace\n"
	    "and in every item of\n"
	    ".BR channel.namespaces ,\n"
	    "which also needs a\n"
	    ".BR name .\n"
	    "All are applied by a reload.\n", f);
	fputs(".TP\n.B name\nType: string.\n.br\n"
	    "Namespace name, only in channel.namespaces items: at least two of\n"
	    "a\\(enz, A\\(enZ, 0\\(en9, -, _ and .; unique.\n", f);
	for (size_t i = 0; i < N_CHAN_DESCS; i++)
		man_option(f, chan_descs[i].path, &chan_descs[i], 0);
}
