/*
 * check_config.c - unit tests of the configuration module (src/config.c):
 * defaults, a valid file, every kind of invalid input (each must give a
 * FILE:LINE error, never a crash), environment overrides, the duration
 * parser, namespace resolution, the bundled etc/centrifugo.conf and the
 * generated part of man/centrifugo.conf.5.
 *
 * Files of the source tree are found through TOP_SRCDIR (default ".").
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include "buf.h"
#include "config.h"
#include "redis_addr.h"

static char conf_path[64];

/* Writes `text` to a fresh temporary file; its name is in conf_path. */
static const char *
write_conf(const char *text)
{
	int fd;
	size_t n = strlen(text);

	snprintf(conf_path, sizeof conf_path, "/tmp/check_config.XXXXXX");
	fd = mkstemp(conf_path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, n), (ssize_t)n);
	close(fd);
	return conf_path;
}

/* Loads `text`; returns config_load's result, errors in *err (caller frees). */
static int
load_text(const char *text, struct config **cfg, struct buf *err)
{
	int rc;

	buf_init(err);
	rc = config_load(write_conf(text), cfg, err);
	unlink(conf_path);
	if (rc == 0)
		ck_assert_ptr_nonnull(*cfg);
	else
		ck_assert_ptr_null(*cfg);
	return rc;
}

/* The file must fail and the errors must contain "FILE:LINE: ...needle". */
static void
expect_error(const char *text, int line, const char *needle)
{
	struct config *cfg = NULL;
	struct buf err;
	char where[128];
	const char *e;

	ck_assert_int_eq(load_text(text, &cfg, &err), -1);
	e = buf_cstr(&err);
	snprintf(where, sizeof where, "%s:%d: ", conf_path, line);
	ck_assert_msg(strstr(e, where) != NULL, "no error at line %d in:\n%s", line, e);
	ck_assert_msg(strstr(e, needle) != NULL, "'%s' not in:\n%s", needle, e);
	buf_free(&err);
}

static int
count_lines(const char *s)
{
	int n = 0;

	for (; *s != '\0'; s++)
		n += *s == '\n';
	return n;
}

static const char *
top_srcdir(void)
{
	const char *d = getenv("TOP_SRCDIR");

	return d != NULL && *d != '\0' ? d : ".";
}

/* ---- defaults ---- */

START_TEST(test_defaults)
{
	struct config *cfg = config_defaults();

	ck_assert_uint_eq(cfg->magic, CONFIG_MAGIC);
	ck_assert_int_eq(cfg->http_server_port, 8000);
	ck_assert_str_eq(cfg->http_server_address, "");
	ck_assert_int_eq(cfg->workers, 0);
	ck_assert_int_eq(cfg->worker_rlimit_nofile, 65536);
	ck_assert_str_eq(cfg->log_level, "info");
	ck_assert_int_eq(cfg->log_json, 0);
	ck_assert_str_eq(cfg->engine_type, "memory");
	ck_assert_int_eq(cfg->client_ping_interval, 25000);
	ck_assert_int_eq(cfg->client_pong_timeout, 8000);
	ck_assert_int_eq(cfg->client_stale_close_delay, 10000);
	ck_assert_int_eq(cfg->client_expired_close_delay, 25000);
	ck_assert_int_eq(cfg->client_presence_update_interval, 27000);
	ck_assert_int_eq(cfg->client_channel_limit, 128);
	ck_assert_int_eq(cfg->client_queue_max_size, 1048576);
	ck_assert_int_eq(cfg->client_write_delay, 0);
	ck_assert_int_eq(cfg->client_history_max_publication_limit, 300);
	ck_assert_int_eq(cfg->client_allow_anonymous_connect_without_token, 0);
	ck_assert_uint_eq(cfg->client_allowed_origins.n, 0);
	ck_assert_str_eq(cfg->client_token_hmac_secret_key, "");
	ck_assert_int_eq(cfg->websocket_message_size_limit, 65536);
	ck_assert_int_eq(cfg->websocket_write_timeout, 1000);
	ck_assert_str_eq(cfg->websocket_handler_prefix, "/connection/websocket");
	ck_assert_str_eq(cfg->http_api_handler_prefix, "/api");
	ck_assert_str_eq(cfg->http_api_key, "");
	ck_assert_int_eq(cfg->shutdown_timeout, 30000);
	ck_assert_str_eq(cfg->ctl_socket, "/run/centrifugo/centrifugo.sock");
	ck_assert_int_eq(cfg->channel_max_length, 255);
	ck_assert_str_eq(cfg->channel_private_prefix, "$");
	ck_assert_str_eq(cfg->channel_namespace_boundary, ":");
	ck_assert_str_eq(cfg->channel_user_boundary, "#");
	ck_assert_str_eq(cfg->channel_user_separator, ",");
	ck_assert_int_eq(cfg->channel_history_meta_ttl, 720LL * 3600 * 1000);
	ck_assert_str_eq(cfg->without_namespace.name, "");
	ck_assert_int_eq(cfg->without_namespace.presence, 0);
	ck_assert_int_eq(cfg->without_namespace.history_size, 0);
	ck_assert_int_eq(cfg->without_namespace.has_regex, 0);
	ck_assert_uint_eq(cfg->n_namespaces, 0);
	ck_assert_ptr_null(cfg->namespaces);
	config_free(cfg);
	config_free(NULL);
}
END_TEST

START_TEST(test_no_file)
{
	struct config *cfg = NULL;
	struct buf err = BUF_INIT;

	unsetenv("CENTRIFUGO_HTTP_SERVER_PORT");
	ck_assert_int_eq(config_load(NULL, &cfg, &err), 0);
	ck_assert_int_eq(cfg->http_server_port, 8000);
	config_free(cfg);
	buf_free(&err);
}
END_TEST

/* ---- valid file ---- */

static const char valid_conf[] =
    "# comment\n"
    "http_server = { address = \"127.0.0.1\"; port = 8100; internal_port = \"9100\"; };\n"
    "Workers = 3;\n"
    "log = { level = \"debug\"; json = true; };\n"
    "client = {\n"
    "  insecure = false;\n"
    "  allow_anonymous_connect_without_token = true;\n"
    "  token = { hmac_secret_key = \"secret\"; user_id_claim = \"user_id\";\n"
    "    hmac_previous_secret_key_valid_until = 1700000000000L; };\n"
    "  subscription_token = { enabled = true; hmac_secret_key = \"sub\"; };\n"
    "  allowed_origins = [\"https://a.example\", \"https://b.example\"];\n"
    "  ping_interval = \"1m30s\"; pong_timeout = \"500ms\";\n"
    "  queue_max_size = 4096; channel_limit = 0; write_delay = \"20ms\";\n"
    "  subscribe_to_user_personal_channel = { enabled = true;\n"
    "    personal_channel_namespace = \"chat\"; single_connection = true; };\n"
    "};\n"
    "websocket = { message_size_limit = 1024; write_timeout = \"2s\"; };\n"
    "http_api = { key = \"apikey\"; insecure = true; error_mode = \"transport\"; };\n"
    "health = { enabled = true; };\n"
    "node = { name = \"n1\"; };\n"
    "shutdown = { timeout = 0; };\n"
    "ctl = { socket = \"/tmp/c.sock\"; };\n"
    "channel = {\n"
    "  history_meta_ttl = \"1h\";\n"
    "  publication_data_format = \"json\";\n"
    "  without_namespace = { allow_subscribe_for_client = true; };\n"
    "  namespaces = (\n"
    "    { name = \"chat\"; presence = true; history_size = 10; history_ttl = \"300s\";\n"
    "      force_recovery = true; force_recovery_mode = \"cache\"; auto_cache_recover = true;\n"
    "      allowed_delta_types = [\"fossil\"]; channel_regex = \"^[a-z]+$\"; },\n"
    "    { name = \"my-ns.x\"; allow_publish_for_client = true; history_meta_ttl = \"2h\";\n"
    "      publication_data_format = \"binary\"; }\n"
    "  );\n"
    "};\n";

START_TEST(test_valid_file)
{
	struct config *cfg = NULL;
	struct buf err;
	const struct chan_opts *co;

	ck_assert_msg(load_text(valid_conf, &cfg, &err) == 0, "errors: %s", buf_cstr(&err));
	ck_assert_uint_eq(err.len, 0);
	ck_assert_str_eq(cfg->path, conf_path);
	ck_assert_str_eq(cfg->http_server_address, "127.0.0.1");
	ck_assert_int_eq(cfg->http_server_port, 8100);
	ck_assert_str_eq(cfg->http_server_internal_port, "9100");
	ck_assert_int_eq(cfg->workers, 3);
	ck_assert_uint_eq(config_workers(cfg), 3);
	ck_assert_str_eq(cfg->log_level, "debug");
	ck_assert_int_eq(cfg->log_json, 1);
	ck_assert_int_eq(cfg->client_allow_anonymous_connect_without_token, 1);
	ck_assert_str_eq(cfg->client_token_hmac_secret_key, "secret");
	ck_assert_str_eq(cfg->client_token_user_id_claim, "user_id");
	ck_assert_int_eq(cfg->client_token_hmac_previous_secret_key_valid_until, 1700000000000LL);
	ck_assert_int_eq(cfg->client_subscription_token_enabled, 1);
	ck_assert_str_eq(cfg->client_subscription_token_hmac_secret_key, "sub");
	ck_assert_uint_eq(cfg->client_allowed_origins.n, 2);
	ck_assert_str_eq(cfg->client_allowed_origins.v[0], "https://a.example");
	ck_assert_str_eq(cfg->client_allowed_origins.v[1], "https://b.example");
	ck_assert_int_eq(cfg->client_ping_interval, 90000);
	ck_assert_int_eq(cfg->client_pong_timeout, 500);
	ck_assert_int_eq(cfg->client_queue_max_size, 4096);
	ck_assert_int_eq(cfg->client_write_delay, 20);
	ck_assert_int_eq(cfg->client_channel_limit, 0);
	ck_assert_int_eq(cfg->websocket_message_size_limit, 1024);
	ck_assert_int_eq(cfg->websocket_write_timeout, 2000);
	ck_assert_str_eq(cfg->http_api_key, "apikey");
	ck_assert_int_eq(cfg->http_api_insecure, 1);
	ck_assert_str_eq(cfg->http_api_error_mode, "transport");
	ck_assert_int_eq(cfg->health_enabled, 1);
	ck_assert_str_eq(cfg->node_name, "n1");
	ck_assert_int_eq(cfg->shutdown_timeout, 0);
	ck_assert_str_eq(cfg->ctl_socket, "/tmp/c.sock");
	ck_assert_int_eq(cfg->channel_history_meta_ttl, 3600000);

	ck_assert_int_eq(cfg->without_namespace.allow_subscribe_for_client, 1);
	ck_assert_int_eq(cfg->without_namespace.history_meta_ttl, 3600000);   /* inherited */
	ck_assert_str_eq(cfg->without_namespace.publication_data_format, "json");

	ck_assert_uint_eq(cfg->n_namespaces, 2);
	co = &cfg->namespaces[0];
	ck_assert_str_eq(co->name, "chat");
	ck_assert_int_eq(co->presence, 1);
	ck_assert_int_eq(co->history_size, 10);
	ck_assert_int_eq(co->history_ttl, 300000);
	ck_assert_int_eq(co->force_recovery, 1);
	ck_assert_str_eq(co->force_recovery_mode, "cache");
	ck_assert_uint_eq(co->allowed_delta_types.n, 1);
	ck_assert_str_eq(co->allowed_delta_types.v[0], "fossil");
	ck_assert_int_eq(co->has_regex, 1);
	ck_assert_int_eq(regexec(&co->regex, "room", 0, NULL, 0), 0);
	ck_assert_int_ne(regexec(&co->regex, "Room1", 0, NULL, 0), 0);
	co = &cfg->namespaces[1];
	ck_assert_str_eq(co->name, "my-ns.x");
	ck_assert_int_eq(co->allow_publish_for_client, 1);
	ck_assert_int_eq(co->presence, 0);
	ck_assert_int_eq(co->history_meta_ttl, 7200000);
	ck_assert_str_eq(co->publication_data_format, "binary");
	config_free(cfg);
	buf_free(&err);
}
END_TEST

START_TEST(test_bundled_conf)
{
	char path[4096];
	struct config *cfg = NULL;
	struct buf err = BUF_INIT;
	const struct chan_opts *co;
	int unknown;

	snprintf(path, sizeof path, "%s/etc/centrifugo.conf", top_srcdir());
	ck_assert_msg(config_load(path, &cfg, &err) == 0, "%s: %s", path, buf_cstr(&err));
	ck_assert_int_eq(cfg->http_server_port, 8000);
	ck_assert_int_eq(cfg->workers, 0);
	ck_assert_str_eq(cfg->engine_type, "memory");
	ck_assert_int_eq(cfg->client_allow_anonymous_connect_without_token, 1);
	ck_assert_uint_eq(cfg->client_allowed_origins.n, 1);
	ck_assert_str_eq(cfg->client_allowed_origins.v[0], "*");
	ck_assert_ptr_nonnull(strstr(cfg->client_token_hmac_secret_key, "change-me"));
	ck_assert_ptr_nonnull(strstr(cfg->http_api_key, "change-me"));
	ck_assert_int_eq(cfg->without_namespace.allow_subscribe_for_client, 1);
	co = config_chan_opts(cfg, "chat:room", 9, &unknown);
	ck_assert_ptr_nonnull(co);
	ck_assert_str_eq(co->name, "chat");
	ck_assert_int_eq(co->presence, 1);
	ck_assert_int_gt(co->history_size, 0);
	ck_assert_int_gt(co->history_ttl, 0);
	config_free(cfg);
	buf_free(&err);
}
END_TEST

/* ---- invalid files ---- */

START_TEST(test_missing_file)
{
	struct config *cfg = (struct config *)1;
	struct buf err = BUF_INIT;

	ck_assert_int_eq(config_load("/nonexistent/dir/centrifugo.conf", &cfg, &err), -1);
	ck_assert_ptr_null(cfg);
	ck_assert_ptr_nonnull(strstr(buf_cstr(&err), "/nonexistent/dir/centrifugo.conf: cannot open"));
	buf_free(&err);
}
END_TEST

START_TEST(test_syntax_error)
{
	expect_error("workers = 1;\nlog = {\n  level = ;\n};\n", 3, "syntax error");
	expect_error("workers = 1;\nlog = { level = \"info\"\n", 3, "error");
	expect_error("workers = 1;\nworkers = 2;\n", 2, "duplicate");
}
END_TEST

START_TEST(test_unknown_options)
{
	expect_error("workers = 1;\nfoo = 1;\n", 2, "unknown option 'foo'");
	expect_error("client = {\n  ping_interval = \"20s\";\n  pingg_interval = \"1s\";\n};\n",
	    3, "unknown option 'client.pingg_interval'");
	expect_error("client = { token = {\n hmac_secret = \"x\"; }; };\n", 2,
	    "unknown option 'client.token.hmac_secret'");
	expect_error("channel = { without_namespace = {\n presense = true; }; };\n", 2,
	    "unknown option 'channel.without_namespace.presense'");
	expect_error("channel = { namespaces = (\n { name = \"chat\";\n  presense = true; }\n ); };\n", 3,
	    "unknown option 'channel.namespaces[0].presense'");
	/* A scalar where a section is expected. */
	expect_error("\nclient = 5;\n", 2, "'client' must be a group");
}
END_TEST

START_TEST(test_wrong_types)
{
	expect_error("http_server = { port = \"8000\"; };\n", 1, "'http_server.port' must be an integer, got a string");
	expect_error("\nclient = { insecure = 1; };\n", 2, "'client.insecure' must be a boolean, got an integer");
	expect_error("http_api = { key = 5; };\n", 1, "'http_api.key' must be a string");
	expect_error("client = { allowed_origins = 5; };\n", 1, "'client.allowed_origins' must be a list of strings, got an integer");
	expect_error("client = { allowed_origins = [1, 2]; };\n", 1, "item 1 must be a string");
	expect_error("workers = 1.5;\n", 1, "must be an integer, got a float");
	expect_error("workers = { };\n", 1, "must be an integer, got a group");
	expect_error("channel = { namespaces = { name = \"chat\"; }; };\n", 1, "must be a list of groups");
	expect_error("channel = { namespaces = ( 5 ); };\n", 1, "channel.namespaces[0] must be a group");
	expect_error("channel = { namespaces = ( { name = 5; } ); };\n", 1, "must be a string");
}
END_TEST

START_TEST(test_out_of_bounds)
{
	expect_error("http_server = { port = 70000; };\n", 1, "'http_server.port': 70000 is out of range 0..65535");
	expect_error("http_server = { port = -1; };\n", 1, "out of range");
	expect_error("\n\nworkers = 257;\n", 3, "'workers': 257 is out of range 0..256");
	expect_error("worker_rlimit_nofile = 100;\n", 1, "'worker_rlimit_nofile': 100 is out of range 1024..16777216");
	expect_error("client = { channel_limit = -5; };\n", 1, "out of range");
	expect_error("websocket = { compression_level = 10; };\n", 1, "out of range 1..9");
	expect_error("http_server = { internal_port = \"99999\"; };\n", 1, "not a port number");
	expect_error("http_server = { internal_port = \"abc\"; };\n", 1, "not a port number");
	expect_error("channel = { namespace_boundary = \"\"; };\n", 1, "at least 1 characters");
	expect_error("client = { presence_update_interval = \"0\"; };\n", 1, "below the minimum");
	expect_error("client = { stale_close_delay = \"-1s\"; };\n", 1, "negative duration not allowed");
	expect_error("\nclient = { write_delay = \"61s\"; };\n", 2,
	    "'client.write_delay': duration 1m1s is above the maximum 1m");
	expect_error("client = { write_delay = \"-10ms\"; };\n", 1, "negative duration not allowed");
	expect_error("client = { write_delay = \"10\"; };\n", 1, "invalid duration");
}
END_TEST

START_TEST(test_bad_values)
{
	expect_error("client = { ping_interval = \"abc\"; };\n", 1, "invalid duration \"abc\"");
	expect_error("client = { ping_interval = \"10x\"; };\n", 1, "invalid duration \"10x\"");
	expect_error("client = { ping_interval = \"\"; };\n", 1, "invalid duration");
	expect_error("client = { ping_interval = 25; };\n", 1, "a duration must be a string");
	expect_error("log = { level = \"loud\"; };\n", 1, "'log.level': invalid value \"loud\"");
	expect_error("engine = { type = \"redis\"; redis = { address = \"not a host:port\"; }; };\n", 1,
	    "'engine.redis.address': \"not a host:port\": the port must be a number");
	expect_error("engine = { type = \"redis\"; redis = { address = [\"redis+cluster://h:1\"]; }; };\n", 1,
	    "redis+cluster:// addresses (Sentinel, Cluster) are not supported");
	expect_error("engine = { type = \"redis\"; redis = {\n address = \"unix:///r.sock\";\n"
	    " tls = { enabled = true; }; }; };\n", 3,
	    "'engine.redis.tls.enabled': the unix socket address \"unix:///r.sock\" cannot use TLS");
	expect_error("engine = { type = \"redis\"; redis = { address = \"rediss://h:1\";\n"
	    " tls = { server_ca_pem = \"/no/such/ca\"; }; }; };\n", 2,
	    "option 'engine.redis.tls.server_ca_pem': not PEM, not base64 PEM, and cannot open as a file");
	expect_error("engine = { type = \"redis\"; redis = { address = [\"h:1\", \"redis://h:2/x\"]; }; };\n", 1,
	    "the database after '/' must be a number");
	expect_error("engine = { type = \"redis\"; redis = { address = \"unix://rel\"; }; };\n", 1,
	    "absolute path");
	expect_error("engine = { type = \"redis\"; redis = { address = \"ftp://h\"; }; };\n", 1,
	    "unknown address scheme");
	expect_error("engine = { type = \"redis\"; redis = { address = [ ]; }; };\n", 1,
	    "at least one address");
	expect_error("engine = { type = \"redis\"; };\nbroker = { enabled = true; type = \"nats\"; };\n", 2,
	    "not supported (choose one)");
	expect_error("broker = { type = \"kafka\"; };\n", 1, "invalid value \"kafka\"");
	expect_error("engine = { type = \"redis\"; redis = { sentinel_address = [\"s1:26379\"]; }; };\n", 1,
	    "needs engine.redis.sentinel_master_name");
	expect_error("engine = { type = \"redis\"; redis = { sentinel_address = [\"s1:26379,:1\"];\n"
	    " sentinel_master_name = \"m\"; }; };\n", 1, "'engine.redis.sentinel_address': \"s1:26379,:1\": no host name");
	expect_error("engine = { type = \"nats\"; };\n", 1, "invalid value \"nats\"");
	expect_error("http_api = { error_mode = \"custom\"; };\n", 1, "invalid value \"custom\"");
	expect_error("client = { token = { user_id_claim = \"user-id\"; }; };\n", 1, "user_id_claim");
	expect_error("channel = { history_meta_ttl = \"1500ms\"; };\n", 1, "whole seconds");
	expect_error("channel = { without_namespace = { allowed_delta_types = [\"xdelta\"]; }; };\n", 1,
	    "invalid item \"xdelta\"");
}
END_TEST

START_TEST(test_redis_engine)
{
	struct config *cfg = NULL;
	struct buf err;
	struct redis_addr a;
	char why[200];

	ck_assert_int_eq(load_text("engine = { type = \"redis\"; redis = { address = \"127.0.0.1:7000\"; "
	    "prefix = \"p\"; presence_ttl = \"3s\"; }; };\n", &cfg, &err), 0);
	ck_assert_str_eq(cfg->engine_type, "redis");
	ck_assert_uint_eq(cfg->engine_redis_address.n, 1);
	ck_assert_str_eq(cfg->engine_redis_address.v[0], "127.0.0.1:7000");
	ck_assert_int_eq(cfg->engine_redis_presence_ttl, 3000);
	config_free(cfg);
	buf_free(&err);

	ck_assert_int_eq(redis_addr_parse("redis://u:pw@example.org:6380/3", &a, why, sizeof(why)), 0);
	ck_assert_str_eq(a.host, "example.org");
	ck_assert_int_eq(a.port, 6380);
	ck_assert_str_eq(a.user, "u");
	ck_assert_str_eq(a.password, "pw");
	ck_assert_int_eq(a.db, 3);
	redis_addr_free(&a);
	ck_assert_int_eq(redis_addr_parse("localhost", &a, why, sizeof(why)), 0);
	ck_assert_int_eq(a.port, 6379);
	ck_assert_int_eq(a.db, -1);
	ck_assert_ptr_null(a.password);
	redis_addr_free(&a);
	ck_assert_int_eq(redis_addr_parse("unix:///run/redis.sock", &a, why, sizeof(why)), 0);
	ck_assert_str_eq(a.path, "/run/redis.sock");
	ck_assert_ptr_null(a.host);
	redis_addr_free(&a);
	ck_assert_int_eq(redis_addr_parse(":6379", &a, why, sizeof(why)), -1);
	ck_assert_int_eq(redis_addr_parse("h:0", &a, why, sizeof(why)), -1);
	ck_assert_int_eq(redis_addr_parse("h:123456", &a, why, sizeof(why)), -1);
	ck_assert_int_eq(redis_addr_parse("redis+sentinel://h:1", &a, why, sizeof(why)), -1);
}
END_TEST

START_TEST(test_ping_pong)
{
	struct config *cfg = NULL;
	struct buf err;

	expect_error("client = {\n ping_interval = \"5s\";\n pong_timeout = \"5s\"; };\n", 2,
	    "must be greater than client.pong_timeout");
	expect_error("client = { pong_timeout = \"30s\"; };\n", 1, "must be greater than");
	/* Disabled pings or pongs skip the check. */
	ck_assert_int_eq(load_text("client = { ping_interval = \"-1\"; pong_timeout = \"30s\"; };\n", &cfg, &err), 0);
	ck_assert_int_eq(cfg->client_ping_interval, -1);
	config_free(cfg);
	buf_free(&err);
	ck_assert_int_eq(load_text("client = { pong_timeout = \"-1s\"; };\n", &cfg, &err), 0);
	ck_assert_int_eq(cfg->client_pong_timeout, -1);
	config_free(cfg);
	buf_free(&err);
	ck_assert_int_eq(load_text("client = { pong_timeout = -1; ping_interval = 0; };\n", &cfg, &err), 0);
	ck_assert_int_eq(cfg->client_pong_timeout, -1);
	ck_assert_int_eq(cfg->client_ping_interval, 25000);   /* 0 = the default */
	config_free(cfg);
	buf_free(&err);
}
END_TEST

START_TEST(test_namespace_errors)
{
	expect_error("channel = { namespaces = (\n { name = \"c\"; }\n ); };\n", 2, "invalid namespace name \"c\"");
	expect_error("channel = { namespaces = (\n { name = \"a b\"; }\n ); };\n", 2, "invalid namespace name");
	expect_error("channel = { namespaces = (\n { name = \"chat\"; },\n { name = \"chat\"; }\n ); };\n", 3,
	    "duplicate namespace name \"chat\"");
	expect_error("channel = { namespaces = (\n { presence = true; }\n ); };\n", 2, "channel.namespaces[0] has no name");
	expect_error("channel = { namespaces = (\n { name = \"chat\";\n  history_size = 10; }\n ); };\n", 3,
	    "history_size and history_ttl must be both set or both zero");
	expect_error("channel = { namespaces = (\n { name = \"chat\";\n  history_ttl = \"10s\"; }\n ); };\n", 3,
	    "both set or both zero");
	expect_error("channel = { without_namespace = {\n force_recovery = true; }; };\n", 2,
	    "force_recovery needs history");
	expect_error("channel = { namespaces = (\n { name = \"chat\";\n  channel_regex = \"([a-z\"; }\n ); };\n", 3,
	    "channel_regex \"([a-z\" does not compile");
	expect_error("channel = { namespaces = ( { name = \"chat\";\n history_size = 1;\n history_ttl = \"2h\";\n"
	    " history_meta_ttl = \"1h\"; } ); };\n", 3, "exceeds history_meta_ttl");
	expect_error("channel = { namespaces = ( { name = \"chat\";\n force_recovery_mode = \"fast\"; } ); };\n", 2,
	    "invalid value \"fast\"");
	expect_error("channel = { without_namespace = {\n auto_cache_recover = true; }; };\n", 2,
	    "auto_cache_recover needs");
	expect_error("client = { subscribe_to_user_personal_channel = { enabled = true;\n"
	    " personal_channel_namespace = \"nope\"; }; };\n", 2, "namespace \"nope\" does not exist");
	expect_error("client = { subscribe_to_user_personal_channel = {\n enabled = true;\n"
	    " single_connection = true; }; };\n", 2, "needs presence");
}
END_TEST

START_TEST(test_all_errors_in_one_pass)
{
	struct config *cfg = NULL;
	struct buf err;
	const char *e;

	ck_assert_int_eq(load_text(
	    "http_server = { port = 70000; };\n"
	    "workers = \"x\";\n"
	    "bogus = 1;\n"
	    "client = { ping_interval = \"10x\"; };\n"
	    "channel = { namespaces = ( { name = \"c\"; history_size = 1; } ); };\n",
	    &cfg, &err), -1);
	e = buf_cstr(&err);
	ck_assert_int_ge(count_lines(e), 6);
	for (int line = 1; line <= 5; line++) {
		char where[128];

		snprintf(where, sizeof where, "%s:%d: ", conf_path, line);
		ck_assert_msg(strstr(e, where) != NULL, "line %d missing in:\n%s", line, e);
	}
	buf_free(&err);
}
END_TEST

/* ---- environment ---- */

START_TEST(test_env_overrides)
{
	struct config *cfg = NULL;
	struct buf err;

	setenv("CENTRIFUGO_HTTP_SERVER_PORT", "9000", 1);
	setenv("CENTRIFUGO_CLIENT_ALLOWED_ORIGINS", "https://a  https://b ", 1);
	setenv("CENTRIFUGO_CLIENT_INSECURE", "true", 1);
	setenv("CENTRIFUGO_CLIENT_PING_INTERVAL", "1m", 1);
	setenv("CENTRIFUGO_CLIENT_TOKEN_HMAC_SECRET_KEY", "envsecret", 1);
	setenv("CENTRIFUGO_WORKERS", "0x10", 1);
	setenv("CENTRIFUGO_LOG_LEVEL", "", 1);             /* empty = unset */
	setenv("CENTRIFUGO_CHANNEL_WITHOUT_NAMESPACE_PRESENCE", "1", 1);
	setenv("CENTRIFUGO_SOMETHING_UNKNOWN", "x", 1);     /* warning only */
	setenv("CENTRIFUGO_CHAT_SERVICE_PORT", "80", 1);    /* kubernetes, ignored */
	ck_assert_msg(load_text("http_server = { port = 8001; };\nlog = { level = \"error\"; };\n"
	    "client = { insecure = false; };\n", &cfg, &err) == 0, "%s", buf_cstr(&err));
	ck_assert_int_eq(cfg->http_server_port, 9000);
	ck_assert_uint_eq(cfg->client_allowed_origins.n, 2);
	ck_assert_str_eq(cfg->client_allowed_origins.v[0], "https://a");
	ck_assert_str_eq(cfg->client_allowed_origins.v[1], "https://b");
	ck_assert_int_eq(cfg->client_insecure, 1);
	ck_assert_int_eq(cfg->client_ping_interval, 60000);
	ck_assert_str_eq(cfg->client_token_hmac_secret_key, "envsecret");
	ck_assert_int_eq(cfg->workers, 16);
	ck_assert_str_eq(cfg->log_level, "error");
	ck_assert_int_eq(cfg->without_namespace.presence, 1);
	config_free(cfg);
	buf_free(&err);
}
END_TEST

START_TEST(test_env_namespaces)
{
	struct config *cfg = NULL;
	struct buf err;

	setenv("CENTRIFUGO_CHANNEL_NAMESPACES",
	    "[{\"name\":\"ns1\",\"presence\":true,\"history_size\":5,\"history_ttl\":\"60s\","
	    "\"allowed_delta_types\":[\"fossil\"]},{\"name\":\"my-ns.x\"}]", 1);
	setenv("CENTRIFUGO_CHANNEL_NAMESPACES_NS1_JOIN_LEAVE", "true", 1);
	setenv("CENTRIFUGO_CHANNEL_NAMESPACES_MY_NS_X_HISTORY_SIZE", "7", 1);
	setenv("CENTRIFUGO_CHANNEL_NAMESPACES_MY_NS_X_HISTORY_TTL", "2m", 1);
	ck_assert_msg(load_text("channel = { namespaces = ( { name = \"file\"; } ); };\n", &cfg, &err) == 0,
	    "%s", buf_cstr(&err));
	ck_assert_uint_eq(cfg->n_namespaces, 2);   /* the env array replaced the file's */
	ck_assert_str_eq(cfg->namespaces[0].name, "ns1");
	ck_assert_int_eq(cfg->namespaces[0].presence, 1);
	ck_assert_int_eq(cfg->namespaces[0].join_leave, 1);
	ck_assert_int_eq(cfg->namespaces[0].history_size, 5);
	ck_assert_int_eq(cfg->namespaces[0].history_ttl, 60000);
	ck_assert_uint_eq(cfg->namespaces[0].allowed_delta_types.n, 1);
	ck_assert_str_eq(cfg->namespaces[1].name, "my-ns.x");
	ck_assert_int_eq(cfg->namespaces[1].history_size, 7);
	ck_assert_int_eq(cfg->namespaces[1].history_ttl, 120000);
	config_free(cfg);
	buf_free(&err);
}
END_TEST

START_TEST(test_env_item_override_of_file)
{
	struct config *cfg = NULL;
	struct buf err;

	setenv("CENTRIFUGO_CHANNEL_NAMESPACES_CHAT_PRESENCE", "t", 1);
	setenv("CENTRIFUGO_CHANNEL_NAMESPACES_NOPE_PRESENCE", "t", 1);   /* no such item: warning */
	ck_assert_msg(load_text("channel = { namespaces = ( { name = \"chat\"; presence = false; } ); };\n",
	    &cfg, &err) == 0, "%s", buf_cstr(&err));
	ck_assert_int_eq(cfg->namespaces[0].presence, 1);
	config_free(cfg);
	buf_free(&err);
}
END_TEST

static void
expect_env_error(const char *var, const char *val, const char *needle)
{
	struct config *cfg = NULL;
	struct buf err;
	char where[256];

	setenv(var, val, 1);
	ck_assert_int_eq(load_text("workers = 1;\n", &cfg, &err), -1);
	snprintf(where, sizeof where, "environment %s: ", var);
	ck_assert_msg(strstr(buf_cstr(&err), where) != NULL, "'%s' not in: %s", where, buf_cstr(&err));
	ck_assert_msg(strstr(buf_cstr(&err), needle) != NULL, "'%s' not in: %s", needle, buf_cstr(&err));
	buf_free(&err);
	unsetenv(var);
}

START_TEST(test_env_bad_values)
{
	expect_env_error("CENTRIFUGO_HTTP_SERVER_PORT", "abc", "invalid integer \"abc\"");
	expect_env_error("CENTRIFUGO_HTTP_SERVER_PORT", "8000x", "invalid integer");
	expect_env_error("CENTRIFUGO_HTTP_SERVER_PORT", "99999", "out of range");
	expect_env_error("CENTRIFUGO_CLIENT_INSECURE", "yes", "invalid boolean \"yes\"");
	expect_env_error("CENTRIFUGO_CLIENT_PING_INTERVAL", "25", "invalid duration");
	expect_env_error("CENTRIFUGO_LOG_LEVEL", "loud", "invalid value");
	expect_env_error("CENTRIFUGO_CHANNEL_NAMESPACES", "[{\"name\":", "invalid JSON");
	expect_env_error("CENTRIFUGO_CHANNEL_NAMESPACES", "{\"name\":\"x\"}", "JSON array");
	expect_env_error("CENTRIFUGO_CHANNEL_NAMESPACES", "[{\"name\":\"chat\",\"presense\":true}]",
	    "unknown option 'channel.namespaces[0].presense'");
	expect_env_error("CENTRIFUGO_CHANNEL_NAMESPACES", "[{\"name\":\"chat\",\"presence\":1}]",
	    "must be a JSON boolean");
	expect_env_error("CENTRIFUGO_CHANNEL_NAMESPACES", "[{\"name\":\"x\"}]", "invalid namespace name");
	expect_env_error("CENTRIFUGO_CHANNEL_NAMESPACES", "[5]", "channel.namespaces[0] must be a JSON object");
}
END_TEST

/* ---- durations ---- */

START_TEST(test_parse_duration)
{
	static const struct {
		const char *s;
		int rc;
		int64_t ms;
	} cases[] = {
		{ "25s", 0, 25000 }, { "500ms", 0, 500 }, { "1m30s", 0, 90000 }, { "1h", 0, 3600000 },
		{ "720h", 0, 2592000000LL }, { "0", 0, 0 }, { "-1", 0, -1 }, { "-1s", 0, -1000 },
		{ "1.5h", 0, 5400000 }, { ".5s", 0, 500 }, { "100us", 0, 1 }, { "2000000ns", 0, 2 },
		{ "1h1m1s1ms", 0, 3661001 }, { "+5s", 0, 5000 }, { "-0", 0, 0 },
		{ "2562047h", 0, 2562047LL * 3600000 },
		{ "", -1, 0 }, { "abc", -1, 0 }, { "10x", -1, 0 }, { "10", -1, 0 }, { "s", -1, 0 },
		{ "1.s5", -1, 0 }, { "-", -1, 0 }, { "5 s", -1, 0 }, { "1s ", -1, 0 },
		{ "2562048h", -1, 0 }, { "99999999999999999999s", -1, 0 },
		{ "9223372036854775808ns", -1, 0 },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		int64_t ms = 12345;
		int rc = config_parse_duration(cases[i].s, &ms);

		ck_assert_msg(rc == cases[i].rc, "\"%s\": rc %d", cases[i].s, rc);
		if (rc == 0)
			ck_assert_msg(ms == cases[i].ms, "\"%s\": %lld ms", cases[i].s, (long long)ms);
	}
	ck_assert_int_eq(config_parse_duration(NULL, &(int64_t){ 0 }), -1);
}
END_TEST

/* ---- namespace resolution ---- */

START_TEST(test_chan_opts)
{
	struct config *cfg = NULL;
	struct buf err;
	const struct chan_opts *co;
	int unknown = 7;

	ck_assert_int_eq(load_text("channel = { without_namespace = { presence = true; };\n"
	    "namespaces = ( { name = \"chat\"; join_leave = true; }, { name = \"chat2\"; } ); };\n",
	    &cfg, &err), 0);
	co = config_chan_opts(cfg, "chat:room", strlen("chat:room"), &unknown);
	ck_assert_ptr_eq(co, &cfg->namespaces[0]);
	ck_assert_int_eq(unknown, 0);
	co = config_chan_opts(cfg, "$chat:x", 7, &unknown);
	ck_assert_ptr_eq(co, &cfg->namespaces[0]);
	co = config_chan_opts(cfg, "chat2:a:b", 9, &unknown);
	ck_assert_ptr_eq(co, &cfg->namespaces[1]);
	co = config_chan_opts(cfg, "room", 4, &unknown);
	ck_assert_ptr_eq(co, &cfg->without_namespace);
	ck_assert_int_eq(co->presence, 1);
	co = config_chan_opts(cfg, "$room", 5, &unknown);
	ck_assert_ptr_eq(co, &cfg->without_namespace);
	co = config_chan_opts(cfg, "news#42", 7, &unknown);
	ck_assert_ptr_eq(co, &cfg->without_namespace);
	/* Length, not NUL, bounds the channel: "chat:room" cut to "chat". */
	co = config_chan_opts(cfg, "chat:room", 4, &unknown);
	ck_assert_ptr_eq(co, &cfg->without_namespace);
	co = config_chan_opts(cfg, "nope:x", 6, &unknown);
	ck_assert_ptr_null(co);
	ck_assert_int_eq(unknown, 1);
	co = config_chan_opts(cfg, "cha:x", 5, &unknown);   /* prefix of a name */
	ck_assert_ptr_null(co);
	ck_assert_int_eq(unknown, 1);
	config_free(cfg);
	buf_free(&err);
}
END_TEST

START_TEST(test_custom_boundaries)
{
	struct config *cfg = NULL;
	struct buf err;
	int unknown;

	ck_assert_int_eq(load_text("channel = { private_prefix = \"priv-\"; namespace_boundary = \"::\";\n"
	    "namespaces = ( { name = \"ab\"; } ); };\n", &cfg, &err), 0);
	ck_assert_ptr_eq(config_chan_opts(cfg, "priv-ab::x", 10, &unknown), &cfg->namespaces[0]);
	ck_assert_ptr_eq(config_chan_opts(cfg, "ab:x", 4, &unknown), &cfg->without_namespace);
	config_free(cfg);
	buf_free(&err);
}
END_TEST

/* ---- misc ---- */

START_TEST(test_workers_and_restart_changes)
{
	struct config *a = config_defaults(), *b = config_defaults();
	struct buf names = BUF_INIT;

	ck_assert_uint_ge(config_workers(a), 1);
	ck_assert_int_eq(config_restart_changes(a, b, &names), 0);
	b->http_server_port = 9000;
	free(b->client_token_hmac_secret_key);     /* reloadable: not reported */
	b->client_token_hmac_secret_key = strdup("x");
	b->without_namespace.presence = 1;
	ck_assert_int_eq(config_restart_changes(a, b, &names), 1);
	ck_assert_str_eq(buf_cstr(&names), "http_server.port");
	config_free(a);
	config_free(b);
	buf_free(&names);
}
END_TEST

static char *
read_all(FILE *f)
{
	struct buf b = BUF_INIT;
	char chunk[4096];
	size_t n;

	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
		buf_append(&b, chunk, n);
	buf_cstr(&b);
	return buf_steal(&b, &n);
}

/* man/centrifugo.conf.5 must hold the current generated option list. */
START_TEST(test_man_page_in_sync)
{
	char path[4096], needle[256];
	FILE *f, *gen;
	char *page, *opts;

	snprintf(path, sizeof path, "%s/man/centrifugo.conf.5", top_srcdir());
	f = fopen(path, "r");
	if (f == NULL) {
		fprintf(stderr, "check_config: %s not found, man page check skipped\n", path);
		return;
	}
	page = read_all(f);
	fclose(f);
	gen = tmpfile();
	ck_assert_ptr_nonnull(gen);
	config_write_man_options(gen);
	rewind(gen);
	opts = read_all(gen);
	fclose(gen);

#define CONFIG_OPT(m, p, t, d, lo, hi, ch, fl, doc) \
	snprintf(needle, sizeof needle, "\n.B %s\n", p); \
	ck_assert_msg(strstr(opts, needle) != NULL, "option %s not generated", p); \
	ck_assert_msg(strstr(page, needle) != NULL, "option %s missing from %s", p, path);
#define CHAN_OPT(m, t, d, lo, hi, ch, fl, doc) \
	snprintf(needle, sizeof needle, "\n.B %s\n", #m); \
	ck_assert_msg(strstr(page, needle) != NULL, "channel option %s missing from %s", #m, path);
#include "config_tbl.h"
#undef CONFIG_OPT
#undef CHAN_OPT

	ck_assert_msg(strstr(page, opts) != NULL,
	    "%s is out of date: regenerate its OPTIONS part with config_write_man_options()", path);
	free(page);
	free(opts);
}
END_TEST

static Suite *
config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 10);
	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_no_file);
	tcase_add_test(tc, test_valid_file);
	tcase_add_test(tc, test_bundled_conf);
	tcase_add_test(tc, test_missing_file);
	tcase_add_test(tc, test_syntax_error);
	tcase_add_test(tc, test_unknown_options);
	tcase_add_test(tc, test_wrong_types);
	tcase_add_test(tc, test_out_of_bounds);
	tcase_add_test(tc, test_bad_values);
	tcase_add_test(tc, test_ping_pong);
	tcase_add_test(tc, test_redis_engine);
	tcase_add_test(tc, test_namespace_errors);
	tcase_add_test(tc, test_all_errors_in_one_pass);
	tcase_add_test(tc, test_env_overrides);
	tcase_add_test(tc, test_env_namespaces);
	tcase_add_test(tc, test_env_item_override_of_file);
	tcase_add_test(tc, test_env_bad_values);
	tcase_add_test(tc, test_parse_duration);
	tcase_add_test(tc, test_chan_opts);
	tcase_add_test(tc, test_custom_boundaries);
	tcase_add_test(tc, test_workers_and_restart_changes);
	tcase_add_test(tc, test_man_page_in_sync);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(config_suite());
	int failed;

	srunner_set_fork_status(sr, CK_FORK);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
