/*
 * proctitle.c - rewrite the argv/environ area so ps shows what a process
 * is (see proctitle.h).  Runs in every process: main() prepares the area
 * in the supervisor, children inherit it across fork and retitle it.
 */
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "log.h"
#include "proctitle.h"
#include "xmalloc.h"

extern char **environ;

/*
 * [proctitle_start, proctitle_end) is the contiguous run of argv and
 * environment strings the kernel laid out at exec; NULL until init.
 */
static char *proctitle_start;
static char *proctitle_end;

void
proctitle_init(int argc, char **argv)
{
	char *start, *end;
	char **env;
	size_t n;

	if (argc < 1 || argv[0] == NULL)
		return;
	/* Only strings that follow each other without a gap can be reused. */
	end = argv[0] + strlen(argv[0]) + 1;
	for (int i = 1; i < argc; i++) {
		if (argv[i] != end)
			break;
		end = argv[i] + strlen(argv[i]) + 1;
	}
	for (n = 0; environ[n] != NULL; n++) {
		if (environ[n] == end)
			end = environ[n] + strlen(environ[n]) + 1;
	}
	/* Move the environment out of the area (a new array: the old one
	 * lies on the stack and has no room to grow anyway). */
	env = xcalloc(n + 1, sizeof(*env));
	for (size_t i = 0; i < n; i++)
		env[i] = xstrdup(environ[i]);
	environ = env;
	start = argv[0];
	for (int i = 0; i < argc; i++)
		argv[i] = xstrdup(argv[i]);
	proctitle_start = start;
	proctitle_end = end;
}

void
proctitle_set(const char *title, const char *comm)
{
	size_t cap, len;

	if (comm != NULL && prctl(PR_SET_NAME, comm, 0, 0, 0) == -1)
		log_debug("prctl(PR_SET_NAME) failed");
	if (proctitle_start == NULL)
		return;
	cap = (size_t)(proctitle_end - proctitle_start);
	len = strlen(title);
	if (len > cap - 1)
		len = cap - 1;
	memcpy(proctitle_start, title, len);
	/* NUL padding: ps stops at the title and shows nothing after it. */
	memset(proctitle_start + len, '\0', cap - len);
}
