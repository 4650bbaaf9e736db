/*
 * centrifugo-ctl.c - the control client for a running centrifugo.
 *
 * A stand-alone command run by an operator, never by the daemon.  For now
 * it only knows `version`; the commands that talk to the supervisor's
 * control socket (status, reload, stats...) come with a later release.
 */
#include <stdio.h>
#include <string.h>

#include "build-config.h"

static void
ctl_version(void)
{
	printf("centrifugo %s (compatible with Centrifugo %s)\n",
	    PACKAGE_VERSION, CENTRIFUGO_COMPAT_VERSION);
}

static void
ctl_usage(FILE *f)
{
	fprintf(f,
	    "Usage: centrifugo-ctl COMMAND\n"
	    "\n"
	    "Commands:\n"
	    "  version          print the version and exit\n"
	    "\n"
	    "Options:\n"
	    "  -v, --version    same as `version'\n"
	    "  -h, --help       print this help and exit\n"
	    "\n"
	    "The commands that control a running server through its control\n"
	    "socket (status, reload, stats) come with a later release.\n"
	    "See centrifugo-ctl(1).\n");
}

int
main(int argc, char **argv)
{
	const char *cmd;

	if (argc < 2) {
		ctl_usage(stderr);
		return 2;
	}
	cmd = argv[1];
	if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 ||
	    strcmp(cmd, "help") == 0) {
		ctl_usage(stdout);
		return 0;
	}
	if (strcmp(cmd, "-v") == 0 || strcmp(cmd, "--version") == 0 ||
	    strcmp(cmd, "version") == 0) {
		if (argc > 2) {
			fprintf(stderr, "centrifugo-ctl: %s takes no arguments\n",
			    cmd);
			return 2;
		}
		ctl_version();
		return 0;
	}
	fprintf(stderr, "centrifugo-ctl: unknown command '%s' (try "
	    "'centrifugo-ctl --help')\n", cmd);
	return 2;
}
