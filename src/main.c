/*
 * main.c - the centrifugo daemon's entry point: command-line options,
 * `-t` configuration check, then the supervisor (supervisor.c).
 *
 * Runs in the first process only; children are forked by the supervisor
 * and never come back here.  Precedence (spec config.md 1.1): defaults,
 * then the file, then CENTRIFUGO_* variables (both done by config_load),
 * then the command-line flags given here.
 */
#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "build-config.h"
#include "buf.h"
#include "config.h"
#include "log.h"
#include "proctitle.h"
#include "supervisor.h"
#include "xmalloc.h"

#define MAIN_DEFAULT_CONFIG "/etc/centrifugo/centrifugo.conf"

/* Flags that override the file; NULL when not given. */
struct main_overrides {
	const char *address;
	const char *port;
	const char *pid_file;
	const char *log_level;
};

static void
main_version(void)
{
	printf("centrifugo %s (compatible with Centrifugo %s)\n",
	    PACKAGE_VERSION, CENTRIFUGO_COMPAT_VERSION);
}

static void
main_usage(FILE *f)
{
	fprintf(f,
	    "Usage: centrifugo [options]\n"
	    "       centrifugo -t [-c FILE]\n"
	    "       centrifugo -v\n"
	    "\n"
	    "A real-time messaging server compatible with Centrifugo %s.\n"
	    "\n"
	    "Options:\n"
	    "  -c, --config FILE                configuration file (default %s)\n"
	    "  -t, --test                       check the configuration and exit\n"
	    "  -a, --http_server.address ADDR   interface to listen on (\"\" = all)\n"
	    "  -p, --http_server.port PORT      port to listen on\n"
	    "      --pid_file FILE              write the supervisor's pid to FILE\n"
	    "      --log.level LEVEL            none, trace, debug, info, warn or error\n"
	    "  -v, --version                    print the version and exit\n"
	    "  -h, --help                       print this help and exit\n"
	    "\n"
	    "Commands: `version' (same as -v), `checkconfig' (same as -t).\n"
	    "Flags override the file and CENTRIFUGO_* environment variables.\n"
	    "See centrifugo(8) and centrifugo.conf(5).\n",
	    CENTRIFUGO_COMPAT_VERSION, MAIN_DEFAULT_CONFIG);
}

/* Prints the "FILE:LINE: message" lines config_load collected. */
static void
main_print_errors(struct buf *errors)
{
	const char *text = buf_cstr(errors);
	size_t len = strlen(text);

	if (len == 0)
		return;
	fputs(text, stderr);
	if (text[len - 1] != '\n')
		fputc('\n', stderr);
}

/* Strict 0..65535; returns 0 or -1. */
static int
main_parse_port(const char *s, int64_t *out)
{
	char *end;
	long long v;

	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < 0 || v > 65535)
		return -1;
	*out = v;
	return 0;
}

/*
 * Applies the command-line overrides to cfg.  Returns 0, or -1 after
 * printing what is wrong.
 */
static int
main_apply_overrides(struct config *cfg, const struct main_overrides *o)
{
	enum log_level lvl;

	if (o->port != NULL &&
	    main_parse_port(o->port, &cfg->http_server_port) == -1) {
		fprintf(stderr, "centrifugo: invalid --http_server.port '%s': "
		    "expected a number from 0 to 65535\n", o->port);
		return -1;
	}
	if (o->address != NULL) {
		free(cfg->http_server_address);
		cfg->http_server_address = xstrdup(o->address);
	}
	if (o->pid_file != NULL) {
		free(cfg->pid_file);
		cfg->pid_file = xstrdup(o->pid_file);
	}
	if (o->log_level != NULL) {
		if (log_level_parse(o->log_level, &lvl) == -1) {
			fprintf(stderr, "centrifugo: invalid --log.level '%s': "
			    "expected none, trace, debug, info, warn or error\n",
			    o->log_level);
			return -1;
		}
		free(cfg->log_level);
		cfg->log_level = xstrdup(o->log_level);
	}
	return 0;
}

/*
 * Loads and validates the configuration and applies the flags.  A missing
 * file is only a warning when running (defaults and environment apply, as
 * in Centrifugo) but an error for a check.  Returns the config (caller
 * frees) and in *loaded the file read (path, or NULL when none), or NULL
 * after printing every error.
 */
static struct config *
main_load(const char *path, const struct main_overrides *o, int check,
    const char **loaded)
{
	struct buf errors = BUF_INIT;
	struct config *cfg = NULL;
	const char *load_path = path;

	if (access(path, F_OK) == -1 && errno == ENOENT) {
		if (check) {
			fprintf(stderr, "centrifugo: configuration file %s "
			    "not found\n", path);
			return NULL;
		}
		log_warn("configuration file %s not found: using defaults and "
		    "CENTRIFUGO_* environment variables", path);
		load_path = NULL;
	}
	if (config_load(load_path, &cfg, &errors) == -1) {
		main_print_errors(&errors);
		buf_free(&errors);
		return NULL;
	}
	buf_free(&errors);
	*loaded = load_path;
	if (main_apply_overrides(cfg, o) == -1) {
		config_free(cfg);
		return NULL;
	}
	return cfg;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "test", no_argument, NULL, 't' },
		{ "version", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ "http_server.address", required_argument, NULL, 'a' },
		{ "http_server.port", required_argument, NULL, 'p' },
		{ "pid_file", required_argument, NULL, 'P' },
		{ "log.level", required_argument, NULL, 'L' },
		{ NULL, 0, NULL, 0 }
	};
	struct main_overrides o = { NULL, NULL, NULL, NULL };
	const char *path = MAIN_DEFAULT_CONFIG, *loaded = NULL;
	struct config *cfg;
	enum log_level lvl;
	int check = 0, opt, status;

	/* Before anything keeps a pointer into argv or the environment. */
	proctitle_init(argc, argv);
	log_set_role("centrifugo");

	while ((opt = getopt_long(argc, argv, "c:tvha:p:", longopts,
	    NULL)) != -1) {
		switch (opt) {
		case 'c':
			path = optarg;
			break;
		case 't':
			check = 1;
			break;
		case 'v':
			main_version();
			return 0;
		case 'h':
			main_usage(stdout);
			return 0;
		case 'a':
			o.address = optarg;
			break;
		case 'p':
			o.port = optarg;
			break;
		case 'P':
			o.pid_file = optarg;
			break;
		case 'L':
			o.log_level = optarg;
			break;
		default:
			fprintf(stderr, "Try 'centrifugo --help'.\n");
			return 1;
		}
	}
	if (optind < argc) {
		if (strcmp(argv[optind], "version") == 0 && optind + 1 == argc) {
			main_version();
			return 0;
		}
		if (strcmp(argv[optind], "checkconfig") == 0 &&
		    optind + 1 == argc) {
			check = 1;
		} else {
			fprintf(stderr, "centrifugo: unexpected argument '%s'; "
			    "try 'centrifugo --help'\n", argv[optind]);
			return 1;
		}
	}

	cfg = main_load(path, &o, check, &loaded);
	if (cfg == NULL) {
		if (check)
			fprintf(stderr, "configuration %s is invalid\n", path);
		return 1;
	}
	if (check) {
		printf("configuration %s is valid\n", path);
		config_free(cfg);
		return 0;
	}

	if (log_level_parse(cfg->log_level, &lvl) == 0)
		log_set_level(lvl);
	else
		log_warn("unknown log.level '%s': keeping info", cfg->log_level);
	log_set_json(cfg->log_json);

	status = sup_run(cfg, loaded);
	config_free(cfg);
	return status;
}
