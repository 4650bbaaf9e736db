/*
 * centrifugo-ctl.c - the control client for centrifugo, run by an operator
 * (or a script), never by the daemon.  See centrifugo-ctl(1).
 *
 * Three kinds of commands, one table (ctl_cmds[]):
 *  - socket commands (status, reload, stop, reopen-logs) send one request
 *    line to the supervisor's control socket and print its reply (ctl.h);
 *  - local commands (check-config, gentoken, checktoken, genconfig,
 *    version, help) need only the configuration file;
 *  - API commands (publish, broadcast, presence, history, channels, info,
 *    disconnect, unsubscribe) POST to the server API named by the
 *    configuration, over a plain HTTP/1.1 socket.
 * Exit status: 0 success, 1 the command failed, 2 usage error, 3 the
 * daemon or its API could not be reached.  On failure exactly one line
 * goes to standard error; details (config errors) go to standard output.
 */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "build-config.h"
#include "auth.h"
#include "b64.h"
#include "buf.h"
#include "config.h"
#include "ctl.h"
#include "json.h"
#include "log.h"
#include "reload.h"
#include "xmalloc.h"

#define CLI_DEFAULT_CONFIG "/etc/centrifugo/centrifugo.conf"
#define CLI_EXIT_OK 0
#define CLI_EXIT_FAIL 1
#define CLI_EXIT_USAGE 2
#define CLI_EXIT_UNREACHABLE 3
#define CLI_SOCKET_TIMEOUT_S 30
#define CLI_STOP_WAIT_S 60
#define CLI_HTTP_TIMEOUT_S 15
#define CLI_HTTP_MAX (64u << 20)
#define CLI_DEFAULT_TTL 604800

/* Options of the command line (any command may ignore some). */
static struct {
	const char *config;     /* -c; NULL = not given */
	const char *socket;     /* -s; NULL = from the config or default */
	const char *user;       /* gentoken -u */
	long long ttl;          /* gentoken -t */
	int json;
	int quiet;
} opt = { .ttl = CLI_DEFAULT_TTL };

enum cli_kind {
	CLI_LOCAL = 0,
	CLI_SOCKET,
	CLI_API
};

struct cli_cmd {
	const char *name;
	enum cli_kind kind;
	const char *args;
	const char *help;
	int min_args, max_args;   /* max -1: unlimited */
	int (*fn)(const struct cli_cmd *cmd, int argc, char **argv);
};

/* ---- output ---- */

/* The one-line reason of a failure, on stderr (or as JSON on stdout). */
static int __attribute__((format(printf, 2, 3)))
cli_fail(int status, const char *fmt, ...)
{
	struct buf msg = BUF_INIT;
	va_list ap;
	char *nl;

	va_start(ap, fmt);
	{
		char tmp[1024];

		vsnprintf(tmp, sizeof(tmp), fmt, ap);
		buf_puts(&msg, tmp);
	}
	va_end(ap);
	/* One line, whatever the text held. */
	while ((nl = memchr(msg.data, '\n', msg.len)) != NULL)
		*nl = ' ';
	if (opt.json) {
		struct buf out = BUF_INIT;

		buf_puts(&out, "{\"ok\":false,\"error\":");
		json_put_string(&out, msg.data, msg.len);
		buf_puts(&out, "}\n");
		fwrite(out.data, 1, out.len, stdout);
		buf_free(&out);
	}
	fprintf(stderr, "centrifugo-ctl: %s\n", buf_cstr(&msg));
	buf_free(&msg);
	return status;
}

/* {"ok":true,"message":TEXT} or TEXT, on stdout. */
static void
cli_ok_text(const char *text, size_t len)
{
	if (opt.json) {
		struct buf out = BUF_INIT;

		buf_puts(&out, "{\"ok\":true,\"message\":");
		json_put_string(&out, text, len);
		buf_puts(&out, "}\n");
		fwrite(out.data, 1, out.len, stdout);
		buf_free(&out);
	} else if (len > 0) {
		fwrite(text, 1, len, stdout);
		if (text[len - 1] != '\n')
			putchar('\n');
	}
}

/*
 * A failure whose body has several lines (config errors): every line but
 * the last to stdout (or as "details" in JSON), the last one as the reason.
 */
static int
cli_fail_body(int status, const char *prefix, const char *body, size_t len)
{
	const char *last;
	size_t n = len;

	while (n > 0 && body[n - 1] == '\n')
		n--;
	last = body + n;
	while (last > body && last[-1] != '\n')
		last--;
	if (opt.json) {
		struct buf out = BUF_INIT;
		const char *p = body;

		buf_puts(&out, "{\"ok\":false,\"error\":");
		json_put_string(&out, last, (size_t)(body + n - last));
		buf_puts(&out, ",\"details\":[");
		while (p < last) {
			const char *nl = memchr(p, '\n', (size_t)(last - p));

			if (p != body)
				buf_putc(&out, ',');
			json_put_string(&out, p, (size_t)(nl - p));
			p = nl + 1;
		}
		buf_puts(&out, "]}\n");
		fwrite(out.data, 1, out.len, stdout);
		buf_free(&out);
	} else if (last > body) {
		fwrite(body, 1, (size_t)(last - body), stdout);
	}
	fprintf(stderr, "centrifugo-ctl: %s%.*s\n", prefix,
	    (int)(body + n - last), last);
	return status;
}

/* ---- configuration ---- */

/*
 * Loads the configuration: -c FILE, else `path` when not NULL, else the
 * default file.  `required`: a missing default file is an error too
 * (otherwise defaults apply).  Returns the config, or NULL after cli_fail()
 * (*status set).
 */
static struct config *
cli_load(const char *path, int required, int *status)
{
	struct buf errors = BUF_INIT;
	struct config *cfg = NULL;
	const char *file = path != NULL ? path : opt.config != NULL ?
	    opt.config : CLI_DEFAULT_CONFIG;
	int given = path != NULL || opt.config != NULL;

	if (access(file, F_OK) == -1 && errno == ENOENT) {
		if (given || required) {
			*status = cli_fail(CLI_EXIT_FAIL, "configuration file %s "
			    "not found", file);
			return NULL;
		}
		return config_defaults();
	}
	if (config_load(file, &cfg, &errors) == -1) {
		buf_printf(&errors, "configuration %s is invalid", file);
		*status = cli_fail_body(CLI_EXIT_FAIL, "", errors.data,
		    errors.len);
		buf_free(&errors);
		return NULL;
	}
	buf_free(&errors);
	return cfg;
}

/* ---- the control socket ---- */

/* -s, else ctl.socket of -c FILE (or of the default file), else compiled. */
static const char *
cli_socket_path(char **owned, int *status)
{
	struct config *cfg;

	*owned = NULL;
	if (opt.socket != NULL)
		return opt.socket;
	if (opt.config == NULL && access(CLI_DEFAULT_CONFIG, R_OK) == -1)
		return CTL_DEFAULT_SOCKET;
	cfg = cli_load(NULL, 0, status);
	if (cfg == NULL)
		return NULL;
	*owned = xstrdup(cfg->ctl_socket[0] != '\0' ? cfg->ctl_socket :
	    CTL_DEFAULT_SOCKET);
	config_free(cfg);
	return *owned;
}

/* Connects to the control socket; -1 after cli_fail() (*status set). */
static int
cli_connect_ctl(const char *path, int *status)
{
	struct sockaddr_un sa;
	struct timeval tv = { CLI_SOCKET_TIMEOUT_S, 0 };
	int fd, err;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		*status = cli_fail(CLI_EXIT_USAGE, "control socket path %s is "
		    "too long", path);
		return -1;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, path, strlen(path));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		*status = cli_fail(CLI_EXIT_FAIL, "socket() failed: %s",
		    strerror(errno));
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
		return fd;
	err = errno;
	close(fd);
	switch (err) {
	case ENOENT:
		*status = cli_fail(CLI_EXIT_UNREACHABLE, "no control socket at %s: "
		    "centrifugo is not running, or its ctl.socket is elsewhere "
		    "(use -s PATH or -c FILE)", path);
		break;
	case ECONNREFUSED:
		*status = cli_fail(CLI_EXIT_UNREACHABLE, "nothing answers on %s: "
		    "centrifugo is not running (stale socket file)", path);
		break;
	case EACCES:
	case EPERM:
		*status = cli_fail(CLI_EXIT_UNREACHABLE, "permission denied on %s: "
		    "run as root or as a member of the socket's group", path);
		break;
	case ENOTDIR:
	case ENOTSOCK:
		*status = cli_fail(CLI_EXIT_UNREACHABLE, "%s is not a socket", path);
		break;
	default:
		*status = cli_fail(CLI_EXIT_UNREACHABLE, "cannot connect to %s: %s",
		    path, strerror(err));
		break;
	}
	return -1;
}

/* Reads exactly n bytes.  Returns 0, or -1 (errno; 0 at end of file). */
static int
cli_read_full(int fd, void *p, size_t n)
{
	char *c = p;

	while (n > 0) {
		ssize_t r = read(fd, c, n);

		if (r == -1 && errno == EINTR)
			continue;
		if (r <= 0) {
			if (r == 0)
				errno = 0;
			return -1;
		}
		c += r;
		n -= (size_t)r;
	}
	return 0;
}

static int
cli_write_full(int fd, const void *p, size_t n)
{
	const char *c = p;

	while (n > 0) {
		ssize_t w = send(fd, c, n, MSG_NOSIGNAL);

		if (w == -1 && errno == EINTR)
			continue;
		if (w == -1)
			return -1;
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

static const char *
cli_io_error(void)
{
	if (errno == 0)
		return "the server closed the connection";
	if (errno == EAGAIN || errno == EWOULDBLOCK)
		return "no answer in time";
	return strerror(errno);
}

/*
 * Sends `request` (one line, no '\n') and reads the reply: *code and the
 * body in `body`.  Returns 0, or -1 after cli_fail() (*status set).
 */
static int
cli_ctl_call(int fd, const char *path, const char *request, int *code,
    struct buf *body, int *status)
{
	char hdr[CTL_HEADER_LEN + 1], *end;
	unsigned long len;
	struct buf line = BUF_INIT;
	int rc;

	buf_puts(&line, request);
	buf_putc(&line, '\n');
	rc = cli_write_full(fd, line.data, line.len);
	buf_free(&line);
	if (rc == -1) {
		*status = cli_fail(CLI_EXIT_UNREACHABLE, "cannot send to %s: %s",
		    path, strerror(errno));
		return -1;
	}
	if (cli_read_full(fd, hdr, CTL_HEADER_LEN) == -1) {
		*status = cli_fail(CLI_EXIT_UNREACHABLE, "no reply from %s: %s",
		    path, cli_io_error());
		return -1;
	}
	hdr[CTL_HEADER_LEN] = '\0';
	errno = 0;
	len = strtoul(hdr + 4, &end, 10);
	if (hdr[3] != ' ' || hdr[CTL_HEADER_LEN - 1] != '\n' ||
	    sscanf(hdr, "%3d", code) != 1 || *code < 100 || errno != 0 ||
	    len > CTL_BODY_MAX || (*end != ' ' && *end != '\n')) {
		*status = cli_fail(CLI_EXIT_FAIL, "malformed reply header from %s",
		    path);
		return -1;
	}
	buf_reset(body);
	buf_reserve(body, len + 1);
	if (cli_read_full(fd, body->data, len + 1) == -1) {
		*status = cli_fail(CLI_EXIT_UNREACHABLE, "truncated reply from %s: %s",
		    path, cli_io_error());
		return -1;
	}
	body->len = len;
	return 0;
}

/* stop: the supervisor closes the connection when it has stopped. */
static int
cli_wait_eof(int fd)
{
	struct timeval tv = { CLI_STOP_WAIT_S, 0 };
	char c;
	ssize_t r;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	do {
		r = read(fd, &c, 1);
	} while (r > 0 || (r == -1 && errno == EINTR));
	return r == 0 ? 0 : -1;
}

static int
cli_cmd_socket(const struct cli_cmd *cmd, int argc, char **argv)
{
	struct buf body = BUF_INIT, request = BUF_INIT;
	char *owned;
	const char *path;
	int status = CLI_EXIT_OK, code, fd;

	path = cli_socket_path(&owned, &status);
	if (path == NULL)
		return status;
	fd = cli_connect_ctl(path, &status);
	if (fd == -1)
		goto out;
	buf_puts(&request, cmd->name);
	if (strcmp(cmd->name, "status") == 0 && opt.json)
		buf_puts(&request, " json");
	if (cli_ctl_call(fd, path, buf_cstr(&request), &code, &body,
	    &status) == -1)
		goto out_close;
	if (code != CTL_STATUS_OK) {
		char prefix[64];

		snprintf(prefix, sizeof(prefix), "%s: ", cmd->name);
		status = cli_fail_body(CLI_EXIT_FAIL, prefix, body.data, body.len);
		goto out_close;
	}
	if (strcmp(cmd->name, "status") == 0 && opt.json) {
		fwrite(body.data, 1, body.len, stdout);
		putchar('\n');
	} else if (strcmp(cmd->name, "stop") == 0) {
		if (cli_wait_eof(fd) == -1) {
			status = cli_fail(CLI_EXIT_FAIL, "stop: asked, but the "
			    "server was still running after %d s", CLI_STOP_WAIT_S);
			goto out_close;
		}
		cli_ok_text("stopped", 7);
	} else {
		cli_ok_text(body.data, body.len);
	}
out_close:
	close(fd);
out:
	buf_free(&body);
	buf_free(&request);
	free(owned);
	return status;
}

/* ---- local commands ---- */

static int
cli_cmd_check_config(const struct cli_cmd *cmd, int argc, char **argv)
{
	const char *file = argc > 1 ? argv[1] : opt.config != NULL ?
	    opt.config : CLI_DEFAULT_CONFIG;
	struct buf errors = BUF_INIT, msg = BUF_INIT;
	struct config *dflt, *cfg;
	int status;

	if (access(file, F_OK) == -1 && errno == ENOENT)
		return cli_fail(CLI_EXIT_FAIL, "configuration file %s not found",
		    file);
	/* What a reload would check: the file plus the token keys. */
	dflt = config_defaults();
	cfg = reload_load(file, dflt, &errors, NULL);
	config_free(dflt);
	if (cfg == NULL) {
		buf_printf(&errors, "configuration %s is invalid", file);
		status = cli_fail_body(CLI_EXIT_FAIL, "", errors.data, errors.len);
		buf_free(&errors);
		return status;
	}
	config_free(cfg);
	buf_printf(&msg, "configuration %s is valid", file);
	cli_ok_text(msg.data, msg.len);
	buf_free(&msg);
	buf_free(&errors);
	return CLI_EXIT_OK;
}

static int
cli_cmd_gentoken(const struct cli_cmd *cmd, int argc, char **argv)
{
	struct buf claims = BUF_INIT, out = BUF_INIT;
	const char *user = opt.user != NULL ? opt.user : "";
	const char *claim;
	struct config *cfg;
	char *token;
	long long now = (long long)time(NULL);
	int status = CLI_EXIT_OK;

	cfg = cli_load(NULL, 1, &status);
	if (cfg == NULL)
		return status;
	if (cfg->client_token_hmac_secret_key[0] == '\0') {
		config_free(cfg);
		return cli_fail(CLI_EXIT_FAIL, "no client.token.hmac_secret_key in "
		    "the configuration: cannot sign an HS256 token");
	}
	claim = cfg->client_token_user_id_claim[0] != '\0' ?
	    cfg->client_token_user_id_claim : "sub";
	buf_putc(&claims, '{');
	json_put_string(&claims, claim, strlen(claim));
	buf_putc(&claims, ':');
	json_put_string(&claims, user, strlen(user));
	buf_printf(&claims, ",\"iat\":%lld", now);
	if (opt.ttl > 0)
		buf_printf(&claims, ",\"exp\":%lld", now + opt.ttl);
	buf_putc(&claims, '}');
	token = auth_make_hmac("HS256", cfg->client_token_hmac_secret_key,
	    buf_cstr(&claims));
	config_free(cfg);
	if (token == NULL) {
		buf_free(&claims);
		return cli_fail(CLI_EXIT_FAIL, "cannot sign the token");
	}
	if (opt.json) {
		buf_puts(&out, "{\"ok\":true,\"token\":");
		json_put_string(&out, token, strlen(token));
		buf_puts(&out, ",\"user\":");
		json_put_string(&out, user, strlen(user));
		if (opt.ttl > 0)
			buf_printf(&out, ",\"exp\":%lld", now + opt.ttl);
		buf_puts(&out, "}\n");
		fwrite(out.data, 1, out.len, stdout);
	} else if (opt.quiet) {
		printf("%s\n", token);
	} else {
		if (opt.ttl > 0)
			printf("HMAC SHA-256 JWT for user \"%s\" with expiration "
			    "TTL %llds:\n%s\n", user, opt.ttl, token);
		else
			printf("HMAC SHA-256 JWT for user \"%s\" without "
			    "expiration:\n%s\n", user, token);
	}
	free(token);
	buf_free(&claims);
	buf_free(&out);
	return CLI_EXIT_OK;
}

static int
cli_cmd_checktoken(const struct cli_cmd *cmd, int argc, char **argv)
{
	struct auth_keys k;
	struct auth_verifier *v;
	struct auth_conn_claims claims;
	struct buf why = BUF_INIT, err = BUF_INIT, payload = BUF_INIT;
	struct buf out = BUF_INIT;
	struct config *cfg;
	const char *token = argv[1], *dot1, *dot2;
	enum auth_result r;
	int status = CLI_EXIT_OK;

	cfg = cli_load(NULL, 1, &status);
	if (cfg == NULL)
		return status;
	reload_token_keys(cfg, 0, &k);
	v = auth_verifier_new(&k, &err);
	if (v == NULL) {
		config_free(cfg);
		status = cli_fail(CLI_EXIT_FAIL, "client.token: %s", buf_cstr(&err));
		buf_free(&err);
		return status;
	}
	r = auth_verify_connection(v, token, strlen(token),
	    (int64_t)time(NULL), &claims, &why);
	auth_verifier_free(v);
	config_free(cfg);
	buf_free(&err);
	if (r != AUTH_OK) {
		status = cli_fail(CLI_EXIT_FAIL, "token is %s: %s",
		    r == AUTH_EXPIRED ? "expired" : "invalid",
		    why.len > 0 ? buf_cstr(&why) : auth_result_name(r));
		buf_free(&why);
		return status;
	}
	/* The claims exactly as the token carries them. */
	dot1 = strchr(token, '.');
	dot2 = dot1 != NULL ? strchr(dot1 + 1, '.') : NULL;
	if (dot2 == NULL || b64_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), 1,
	    &payload) == -1 || json_validate(payload.data, payload.len, NULL) == -1) {
		buf_reset(&payload);
		buf_puts(&payload, "{}");
	}
	if (opt.json) {
		buf_puts(&out, "{\"ok\":true,\"valid\":true,\"user\":");
		json_put_string(&out, claims.user, strlen(claims.user));
		buf_puts(&out, ",\"claims\":");
		json_put_raw(&out, payload.data, payload.len);
		buf_puts(&out, "}\n");
		fwrite(out.data, 1, out.len, stdout);
	} else {
		int64_t exp = auth_expiry(claims.has_expire_at, claims.expire_at,
		    claims.has_exp, claims.exp);

		printf("valid connection token for user \"%s\", ", claims.user);
		if (exp == 0) {
			printf("no expiration\n");
		} else {
			char when[64];
			time_t t = (time_t)exp;
			struct tm tm;

			strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC",
			    gmtime_r(&t, &tm));
			printf("expires %s\n", when);
		}
		printf("claims: %.*s\n", (int)payload.len, payload.data);
	}
	auth_conn_claims_free(&claims);
	buf_free(&why);
	buf_free(&payload);
	buf_free(&out);
	return CLI_EXIT_OK;
}

/* URL-safe base64 of n random bytes into out.  Returns 0 or -1. */
static int
cli_random_secret(size_t n, struct buf *out)
{
	unsigned char rnd[64];
	size_t got = 0;

	ASSERT(n <= sizeof(rnd));
	while (got < n) {
		ssize_t r = getrandom(rnd + got, n - got, 0);

		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1)
			return -1;
		got += (size_t)r;
	}
	b64_encode(rnd, n, 1, out);
	return 0;
}

static int
cli_cmd_genconfig(const struct cli_cmd *cmd, int argc, char **argv)
{
	struct buf hmac = BUF_INIT, key = BUF_INIT;

	if (cli_random_secret(64, &hmac) == -1 ||
	    cli_random_secret(64, &key) == -1) {
		buf_free(&hmac);
		buf_free(&key);
		return cli_fail(CLI_EXIT_FAIL, "getrandom() failed: %s",
		    strerror(errno));
	}
	printf("# centrifugo configuration (libconfig syntax), generated by\n"
	    "# centrifugo-ctl genconfig.  Every option: centrifugo.conf(5).\n"
	    "\n"
	    "http_server = {\n"
	    "  address = \"\";\n"
	    "  port = 8000;\n"
	    "};\n"
	    "\n"
	    "client = {\n"
	    "  token = {\n"
	    "    hmac_secret_key = \"%s\";\n"
	    "  };\n"
	    "  allowed_origins = [];\n"
	    "};\n"
	    "\n"
	    "http_api = {\n"
	    "  key = \"%s\";\n"
	    "};\n"
	    "\n"
	    "ctl = {\n"
	    "  socket = \"%s\";\n"
	    "};\n", buf_cstr(&hmac), buf_cstr(&key), CTL_DEFAULT_SOCKET);
	buf_free(&hmac);
	buf_free(&key);
	return CLI_EXIT_OK;
}

static int
cli_cmd_version(const struct cli_cmd *cmd, int argc, char **argv)
{
	if (opt.json)
		printf("{\"ok\":true,\"version\":\"%s\",\"compatible_with\":\"%s\"}\n",
		    PACKAGE_VERSION, CENTRIFUGO_COMPAT_VERSION);
	else
		printf("centrifugo-ctl %s (compatible with Centrifugo %s)\n",
		    PACKAGE_VERSION, CENTRIFUGO_COMPAT_VERSION);
	return CLI_EXIT_OK;
}

static int cli_cmd_help(const struct cli_cmd *cmd, int argc, char **argv);

/* ---- the server API over HTTP/1.1 ---- */

/* Host and port of the API: the internal listener if configured. */
static void
cli_api_target(const struct config *cfg, char *host, size_t hcap,
    char *port, size_t pcap)
{
	const char *h = cfg->http_server_internal_address[0] != '\0' ?
	    cfg->http_server_internal_address : cfg->http_server_address;

	if (h[0] == '\0' || strcmp(h, "0.0.0.0") == 0)
		h = "127.0.0.1";
	else if (strcmp(h, "::") == 0)
		h = "::1";
	snprintf(host, hcap, "%s", h);
	if (cfg->http_server_internal_port[0] != '\0')
		snprintf(port, pcap, "%s", cfg->http_server_internal_port);
	else
		snprintf(port, pcap, "%lld", (long long)cfg->http_server_port);
}

/* Connects to host:port; -1 after cli_fail() (*status set). */
static int
cli_connect_tcp(const char *host, const char *port, int *status)
{
	struct addrinfo hints, *res, *ai;
	struct timeval tv = { CLI_HTTP_TIMEOUT_S, 0 };
	int fd = -1, err = 0, rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0) {
		*status = cli_fail(CLI_EXIT_UNREACHABLE, "cannot resolve %s:%s: %s",
		    host, port, gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
		    ai->ai_protocol);
		if (fd == -1) {
			err = errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		err = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd == -1)
		*status = cli_fail(CLI_EXIT_UNREACHABLE, "cannot connect to the "
		    "server API at %s:%s: %s (is centrifugo running?)", host, port,
		    strerror(err));
	return fd;
}

/* Decodes a chunked body in place.  Returns 0 or -1. */
static int
cli_unchunk(struct buf *b, size_t off)
{
	size_t in = off, out = off;

	for (;;) {
		char *end;
		unsigned long n;

		if (in >= b->len)
			return -1;
		n = strtoul(b->data + in, &end, 16);
		end = strstr(end, "\r\n");
		if (end == NULL)
			return -1;
		in = (size_t)(end - b->data) + 2;
		if (n == 0)
			break;
		if (n > b->len - in)
			return -1;
		memmove(b->data + out, b->data + in, n);
		out += n;
		in += n + 2;
	}
	b->len = out;
	return 0;
}

/*
 * POSTs body to the API method; *http gets the status code, resp the
 * response body.  Returns 0, or -1 after cli_fail() (*status set).
 */
static int
cli_api_post(const struct config *cfg, const char *method, const struct buf *body,
    int *http, struct buf *resp, int *status)
{
	char host[256], port[16], *hdr_end, *cl;
	struct buf req = BUF_INIT;
	size_t hlen;
	int fd;

	cli_api_target(cfg, host, sizeof(host), port, sizeof(port));
	fd = cli_connect_tcp(host, port, status);
	if (fd == -1)
		return -1;
	buf_printf(&req, "POST %s/%s HTTP/1.1\r\n"
	    "Host: %s%s%s:%s\r\n"
	    "User-Agent: centrifugo-ctl/%s\r\n"
	    "Content-Type: application/json\r\n"
	    "Content-Length: %zu\r\n"
	    "Connection: close\r\n",
	    cfg->http_api_handler_prefix, method,
	    strchr(host, ':') != NULL ? "[" : "", host,
	    strchr(host, ':') != NULL ? "]" : "", port, PACKAGE_VERSION,
	    body->len);
	if (cfg->http_api_key[0] != '\0')
		buf_printf(&req, "X-API-Key: %s\r\n", cfg->http_api_key);
	buf_puts(&req, "\r\n");
	buf_append(&req, body->data, body->len);
	if (cli_write_full(fd, req.data, req.len) == -1) {
		*status = cli_fail(CLI_EXIT_UNREACHABLE, "cannot send to %s:%s: %s",
		    host, port, strerror(errno));
		goto fail;
	}
	/* Connection: close: the response ends at end of file. */
	buf_reset(resp);
	for (;;) {
		ssize_t r;

		buf_reserve(resp, 4096);
		r = read(fd, resp->data + resp->len, resp->cap - resp->len);
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1) {
			*status = cli_fail(CLI_EXIT_UNREACHABLE, "reading the answer "
			    "of %s:%s: %s", host, port, cli_io_error());
			goto fail;
		}
		if (r == 0)
			break;
		resp->len += (size_t)r;
		if (resp->len > CLI_HTTP_MAX) {
			*status = cli_fail(CLI_EXIT_FAIL, "answer of %s:%s too large",
			    host, port);
			goto fail;
		}
	}
	close(fd);
	buf_free(&req);
	buf_cstr(resp);
	if (sscanf(buf_cstr(resp), "HTTP/1.%*d %3d", http) != 1 ||
	    (hdr_end = strstr(resp->data, "\r\n\r\n")) == NULL) {
		*status = cli_fail(CLI_EXIT_FAIL, "malformed HTTP answer from %s:%s",
		    host, port);
		return -1;
	}
	hlen = (size_t)(hdr_end - resp->data) + 4;
	*hdr_end = '\0';
	cl = strcasestr(resp->data, "\r\ntransfer-encoding: chunked");
	*hdr_end = '\r';
	if (cl != NULL && cli_unchunk(resp, hlen) == -1) {
		*status = cli_fail(CLI_EXIT_FAIL, "malformed chunked answer from "
		    "%s:%s", host, port);
		return -1;
	}
	memmove(resp->data, resp->data + hlen, resp->len - hlen);
	resp->len -= hlen;
	return 0;
fail:
	close(fd);
	buf_free(&req);
	return -1;
}

/* A JSON argument from the command line; -1 after cli_fail(). */
static int
cli_json_arg(const char *what, const char *text, int *status)
{
	struct json_err err;

	if (json_validate(text, strlen(text), &err) == 0)
		return 0;
	*status = cli_fail(CLI_EXIT_USAGE, "%s is not valid JSON: %s at byte %zu",
	    what, err.msg, err.off);
	return -1;
}

/* Finds member `name` of the object v; 1 found, 0 not. */
static int
cli_json_member(const struct json_val *v, const char *name,
    struct json_val *out)
{
	struct json_iter it;
	struct json_val k;

	if (v->type != JSON_OBJECT || json_iter_init(&it, v->p, v->len) == -1)
		return 0;
	while (json_iter_next(&it, &k, out) == 1) {
		if (json_str_eq(&k, name))
			return 1;
	}
	return 0;
}

static int
cli_cmd_api(const struct cli_cmd *cmd, int argc, char **argv)
{
	struct buf body = BUF_INIT, resp = BUF_INIT;
	struct json_val top, e, code, msg;
	struct config *cfg;
	int status = CLI_EXIT_OK, http;

	/* The request body of each method, as the server API defines it. */
	buf_putc(&body, '{');
	if (strcmp(cmd->name, "publish") == 0) {
		if (cli_json_arg("the data", argv[2], &status) == -1)
			goto out;
		buf_puts(&body, "\"channel\":");
		json_put_string(&body, argv[1], strlen(argv[1]));
		buf_puts(&body, ",\"data\":");
		json_put_raw(&body, argv[2], strlen(argv[2]));
	} else if (strcmp(cmd->name, "broadcast") == 0) {
		if (cli_json_arg("the data", argv[1], &status) == -1)
			goto out;
		buf_puts(&body, "\"channels\":[");
		for (int i = 2; i < argc; i++) {
			if (i > 2)
				buf_putc(&body, ',');
			json_put_string(&body, argv[i], strlen(argv[i]));
		}
		buf_puts(&body, "],\"data\":");
		json_put_raw(&body, argv[1], strlen(argv[1]));
	} else if (strcmp(cmd->name, "presence") == 0 ||
	    strcmp(cmd->name, "history") == 0) {
		buf_puts(&body, "\"channel\":");
		json_put_string(&body, argv[1], strlen(argv[1]));
		if (strcmp(cmd->name, "history") == 0)
			buf_puts(&body, ",\"limit\":-1");
	} else if (strcmp(cmd->name, "channels") == 0) {
		if (argc > 1) {
			buf_puts(&body, "\"pattern\":");
			json_put_string(&body, argv[1], strlen(argv[1]));
		}
	} else if (strcmp(cmd->name, "disconnect") == 0) {
		buf_puts(&body, "\"user\":");
		json_put_string(&body, argv[1], strlen(argv[1]));
	} else if (strcmp(cmd->name, "unsubscribe") == 0) {
		buf_puts(&body, "\"user\":");
		json_put_string(&body, argv[1], strlen(argv[1]));
		buf_puts(&body, ",\"channel\":");
		json_put_string(&body, argv[2], strlen(argv[2]));
	}
	buf_putc(&body, '}');

	cfg = cli_load(NULL, 0, &status);
	if (cfg == NULL)
		goto out;
	if (cli_api_post(cfg, cmd->name, &body, &http, &resp, &status) == -1) {
		config_free(cfg);
		goto out;
	}
	config_free(cfg);
	while (resp.len > 0 && (resp.data[resp.len - 1] == '\n' ||
	    resp.data[resp.len - 1] == '\r'))
		resp.len--;
	if (http != 200) {
		status = cli_fail(CLI_EXIT_FAIL, "%s: HTTP %d%s%.*s", cmd->name,
		    http, resp.len > 0 ? ": " : "",
		    (int)(resp.len > 200 ? 200 : resp.len), resp.data);
		goto out;
	}
	if (json_parse(resp.data, resp.len, &top, NULL) == 0 &&
	    cli_json_member(&top, "error", &e) && e.type == JSON_OBJECT) {
		const char *m = "";
		size_t ml = 0;

		if (cli_json_member(&e, "message", &msg) && msg.type == JSON_STRING) {
			m = msg.p + 1;
			ml = msg.len - 2;
		}
		if (opt.json) {
			fwrite(resp.data, 1, resp.len, stdout);
			putchar('\n');
		}
		fprintf(stderr, "centrifugo-ctl: %s: error %.*s: %.*s\n",
		    cmd->name, cli_json_member(&e, "code", &code) ?
		    (int)code.len : 1, cli_json_member(&e, "code", &code) ?
		    code.p : "?", (int)ml, m);
		status = CLI_EXIT_FAIL;
		goto out;
	}
	fwrite(resp.data, 1, resp.len, stdout);
	putchar('\n');
out:
	buf_free(&body);
	buf_free(&resp);
	return status;
}

/* ---- the table ---- */

static const struct cli_cmd cli_cmds[] = {
	{ "status", CLI_SOCKET, "", NULL, 0, 0, cli_cmd_socket },
	{ "reload", CLI_SOCKET, "", NULL, 0, 0, cli_cmd_socket },
	{ "stop", CLI_SOCKET, "", NULL, 0, 0, cli_cmd_socket },
	{ "reopen-logs", CLI_SOCKET, "", NULL, 0, 0, cli_cmd_socket },
	{ "check-config", CLI_LOCAL, "[FILE]",
	  "validate FILE (default: -c or " CLI_DEFAULT_CONFIG ")", 0, 1,
	  cli_cmd_check_config },
	{ "gentoken", CLI_LOCAL, "[-u USER] [-t TTL]",
	  "HS256 connection token signed with client.token.hmac_secret_key",
	  0, 0, cli_cmd_gentoken },
	{ "checktoken", CLI_LOCAL, "TOKEN",
	  "verify a connection token with the configuration", 1, 1,
	  cli_cmd_checktoken },
	{ "genconfig", CLI_LOCAL, "",
	  "print a new configuration with random secrets", 0, 0,
	  cli_cmd_genconfig },
	{ "version", CLI_LOCAL, "", "print the version", 0, 0,
	  cli_cmd_version },
	{ "help", CLI_LOCAL, "", "print this help", 0, 0, cli_cmd_help },
	{ "publish", CLI_API, "CHANNEL JSON", "publish JSON into CHANNEL", 2, 2,
	  cli_cmd_api },
	{ "broadcast", CLI_API, "JSON CHANNEL...",
	  "publish JSON into every CHANNEL", 2, -1, cli_cmd_api },
	{ "presence", CLI_API, "CHANNEL", "clients subscribed to CHANNEL", 1, 1,
	  cli_cmd_api },
	{ "history", CLI_API, "CHANNEL", "publications kept for CHANNEL", 1, 1,
	  cli_cmd_api },
	{ "channels", CLI_API, "[PATTERN]", "active channels", 0, 1,
	  cli_cmd_api },
	{ "info", CLI_API, "", "information about the running nodes", 0, 0,
	  cli_cmd_api },
	{ "disconnect", CLI_API, "USER", "disconnect every connection of USER",
	  1, 1, cli_cmd_api },
	{ "unsubscribe", CLI_API, "USER CHANNEL",
	  "unsubscribe USER from CHANNEL", 2, 2, cli_cmd_api },
};

#define CLI_NCMDS (sizeof(cli_cmds) / sizeof(cli_cmds[0]))

static void
cli_usage(FILE *f)
{
	struct buf srv = BUF_INIT;

	fprintf(f, "Usage: centrifugo-ctl [OPTIONS] COMMAND [ARGS]\n\n"
	    "Commands sent to the running server's control socket:\n");
	ctl_write_help(&srv);
	fputs(buf_cstr(&srv), f);
	buf_free(&srv);
	fprintf(f, "\nLocal commands:\n");
	for (size_t i = 0; i < CLI_NCMDS; i++) {
		char left[40];

		if (cli_cmds[i].kind != CLI_LOCAL)
			continue;
		snprintf(left, sizeof(left), "%s %s", cli_cmds[i].name,
		    cli_cmds[i].args);
		fprintf(f, "  %-20s %s\n", left, cli_cmds[i].help);
	}
	fprintf(f, "\nServer API commands (HTTP API of the server in the "
	    "configuration):\n");
	for (size_t i = 0; i < CLI_NCMDS; i++) {
		char left[40];

		if (cli_cmds[i].kind != CLI_API)
			continue;
		snprintf(left, sizeof(left), "%s %s", cli_cmds[i].name,
		    cli_cmds[i].args);
		fprintf(f, "  %-20s %s\n", left, cli_cmds[i].help);
	}
	fprintf(f, "\nOptions:\n"
	    "  -c, --config FILE   configuration file (default %s)\n"
	    "  -s, --socket PATH   control socket (default: ctl.socket of the "
	    "configuration,\n"
	    "                      else %s)\n"
	    "  -u, --user USER     gentoken: user ID (default: anonymous)\n"
	    "  -t, --ttl SECONDS   gentoken: lifetime (default %d; 0: no exp)\n"
	    "  -q, --quiet         gentoken: print only the token\n"
	    "  -j, --json          JSON output for scripts\n"
	    "  -v, --version       same as `version'\n"
	    "  -h, --help          print this help\n"
	    "\nExit status: 0 success, 1 failure, 2 usage error, 3 server not "
	    "reachable.\nSee centrifugo-ctl(1).\n", CLI_DEFAULT_CONFIG,
	    CTL_DEFAULT_SOCKET, CLI_DEFAULT_TTL);
}

static int
cli_cmd_help(const struct cli_cmd *cmd, int argc, char **argv)
{
	cli_usage(stdout);
	return CLI_EXIT_OK;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "socket", required_argument, NULL, 's' },
		{ "user", required_argument, NULL, 'u' },
		{ "ttl", required_argument, NULL, 't' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "json", no_argument, NULL, 'j' },
		{ "version", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	const struct cli_cmd *cmd = NULL;
	int o, nargs;
	char *end;

	log_set_role("centrifugo-ctl");
	log_set_level(LOG_LVL_WARN);
	while ((o = getopt_long(argc, argv, "c:s:u:t:qjvh", longopts,
	    NULL)) != -1) {
		switch (o) {
		case 'c':
			opt.config = optarg;
			break;
		case 's':
			opt.socket = optarg;
			break;
		case 'u':
			opt.user = optarg;
			break;
		case 't':
			errno = 0;
			opt.ttl = strtoll(optarg, &end, 10);
			if (errno != 0 || *end != '\0' || end == optarg)
				return cli_fail(CLI_EXIT_USAGE, "invalid --ttl '%s': "
				    "expected whole seconds", optarg);
			break;
		case 'q':
			opt.quiet = 1;
			break;
		case 'j':
			opt.json = 1;
			break;
		case 'v':
			return cli_cmd_version(NULL, 0, NULL);
		case 'h':
			cli_usage(stdout);
			return CLI_EXIT_OK;
		default:
			return cli_fail(CLI_EXIT_USAGE, "bad option; try "
			    "'centrifugo-ctl --help'");
		}
	}
	if (optind >= argc) {
		cli_usage(stderr);
		return CLI_EXIT_USAGE;
	}
	for (size_t i = 0; i < CLI_NCMDS; i++) {
		if (strcmp(argv[optind], cli_cmds[i].name) == 0)
			cmd = &cli_cmds[i];
	}
	if (cmd == NULL)
		return cli_fail(CLI_EXIT_USAGE, "unknown command '%s' (try "
		    "'centrifugo-ctl --help')", argv[optind]);
	nargs = argc - optind - 1;
	if (nargs < cmd->min_args || (cmd->max_args >= 0 &&
	    nargs > cmd->max_args))
		return cli_fail(CLI_EXIT_USAGE, "usage: centrifugo-ctl %s%s%s",
		    cmd->name, cmd->args[0] != '\0' ? " " : "", cmd->args);
	return cmd->fn(cmd, argc - optind, argv + optind);
}
