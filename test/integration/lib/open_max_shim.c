/*
 * open_max_shim.c - preloaded (LD_PRELOAD) into the server, makes
 * sysconf(_SC_OPEN_MAX) answer $OPEN_MAX_SHIM instead of the soft
 * RLIMIT_NOFILE.  libwebsockets sizes its descriptor table by that answer,
 * so tables smaller or larger than the machine's limits can be tried:
 * limits.test.js (a table of 64) and bench/close-cost.sh (up to 1048576).
 * Without OPEN_MAX_SHIM in the environment it changes nothing.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <unistd.h>

long
sysconf(int name)
{
	static long (*real)(int);
	const char *v = getenv("OPEN_MAX_SHIM");

	if (name == _SC_OPEN_MAX && v != NULL)
		return atol(v);
	if (real == NULL)
		real = (long (*)(int))dlsym(RTLD_NEXT, "sysconf");
	return real(name);
}
