/*
 * config_tbl.h - every configuration option, declared exactly once.
 *
 * No include guard on purpose: a user defines CONFIG_OPT and/or CHAN_OPT,
 * includes this file, and undefines them again (varnish include/tbl/
 * params.h style).  config.h builds struct config and struct chan_opts from
 * it; config.c builds its descriptor tables (parsing, defaults, validation,
 * environment names) and the option list of centrifugo.conf(5).
 *
 * CONFIG_OPT(member, path, type, default, min, max, choices, flags, doc)
 *   member   struct config member: the path with '.' replaced by '_'
 *   path     dotted option name as written in the file
 *   type     BOOL, INT, INT64, DURATION, STRING or STRLIST
 *   default  the default, written as the environment form of the value
 *            ("true", "8000", "25s", "info", space-separated list)
 *   min, max INT/INT64: value bounds.  DURATION: bounds in milliseconds.
 *            STRING: length bounds (max 0 = unlimited).  Unused otherwise.
 *   choices  NULL, or the allowed values separated by '|' (an empty
 *            alternative, as in "|transport", allows ""); for STRLIST
 *            every item must be one of them
 *   flags    CFG_RELOAD (applied by SIGHUP) or CFG_RESTART, plus
 *            CFG_NEGOFF (negative duration = disabled, stored as -1;
 *            0 = the default) and CFG_WHOLESEC (whole seconds only)
 *   doc      one or more sentences for centrifugo.conf(5)
 *
 * CHAN_OPT(name, type, default, min, max, choices, flags, doc) is one option
 * of the channel options object (spec config.md 2.7), used for
 * channel.without_namespace and every channel.namespaces item (which also
 * has a `name`, handled by config.c).  The member of struct chan_opts is
 * `name`.  All channel options are reloadable.
 */

#ifdef CONFIG_OPT

/* http_server */
CONFIG_OPT(http_server_address, "http_server.address", STRING, "", 0, 0, NULL, CFG_RESTART,
	"Interface to listen on for the client-facing server. Empty means all interfaces.")
CONFIG_OPT(http_server_port, "http_server.port", INT, "8000", 0, 65535, NULL, CFG_RESTART,
	"TCP port of the main HTTP server.")
CONFIG_OPT(http_server_internal_address, "http_server.internal_address", STRING, "", 0, 0, NULL, CFG_RESTART,
	"Interface for internal endpoints (server API, metrics, health). Empty means reuse http_server.address.")
CONFIG_OPT(http_server_internal_port, "http_server.internal_port", STRING, "", 0, 5, NULL, CFG_RESTART,
	"Separate port, written as a string, for internal endpoints. Empty means the same port as http_server.port.")

/* log */
CONFIG_OPT(log_level, "log.level", STRING, "info", 0, 0, "none|trace|debug|info|warn|error", CFG_RELOAD,
	"Minimum level of log lines: none, trace, debug, info, warn or error.")
CONFIG_OPT(log_file, "log.file", STRING, "", 0, 0, NULL, CFG_RESTART,
	"Write logs to this file instead of standard error.")
CONFIG_OPT(log_json, "log.json", BOOL, "false", 0, 0, NULL, CFG_RELOAD,
	"Write log lines as JSON objects (an addition of this implementation).")

/* top-level scalars; workers is our own */
CONFIG_OPT(workers, "workers", INT, "0", 0, 256, NULL, CFG_RELOAD,
	"Number of worker processes serving connections. 0 means one per online CPU (an addition of this implementation). A reload may change it within the worker slots the shared memory is made with at start, max(workers, 2 x online CPUs, 16) but at most 64: new workers start on their own listeners, surplus ones stop as on a graceful stop (their clients get 3001 and reconnect to the others), the other workers keep their connections. A higher count is refused and needs a restart.")
CONFIG_OPT(worker_rlimit_nofile, "worker_rlimit_nofile", INT, "65536", 1024, 16777216, NULL, CFG_RESTART,
	"Soft limit on open file descriptors (RLIMIT_NOFILE) each worker process sets for itself, capped by the hard limit it inherits (an addition of this implementation, named after nginx's). It bounds the connections one worker holds: at the limit accept() fails with EMFILE, the worker logs it and stops accepting for a second, and the other workers and the open connections carry on. It also sizes libwebsockets' descriptor table, which the library scans whole on every closed connection, about half a nanosecond per slot: a worker left with the systemd unit's LimitNOFILE of 1048576 spends about 600 us of CPU per close, one at 65536 about 30 us (measured, see doc/BENCHMARKS.md). Raise it only for more connections per worker than that.")
CONFIG_OPT(pid_file, "pid_file", STRING, "", 0, 0, NULL, CFG_RESTART,
	"Write the supervisor's process ID to this file.")

CONFIG_OPT(enable_unreleased_features, "enable_unreleased_features", BOOL, "false", 0, 0, NULL, CFG_RESTART,
	"Allow experimental unreleased features.")

/* ctl (our own) */
CONFIG_OPT(ctl_socket, "ctl.socket", STRING, "/run/centrifugo/centrifugo.sock", 0, 107, NULL, CFG_RESTART,
	"Path of the unix control socket used by centrifugo-ctl (an addition of this implementation).")

/* engine */
CONFIG_OPT(engine_type, "engine.type", STRING, "memory", 0, 0, "memory|redis", CFG_RESTART,
	"Engine ordering publications and keeping history and presence: memory (a single node) or redis (several nodes sharing one Redis setup: PUB/SUB, history streams, presence, node discovery).")
CONFIG_OPT(engine_redis_address, "engine.redis.address", STRLIST, "redis://127.0.0.1:6379", 0, 0, NULL, CFG_RESTART,
	"Redis addresses: host:port, redis://[user:password@]host:port[/db], rediss://... (the same over TLS, see engine.redis.tls) or unix:///path/to/socket. A single string or a list; several entries shard channels over several Redis servers (consistent hashing by channel; every node must list them in the same order). Sentinel and Cluster addresses are refused (use sentinel_address for Sentinel).")
CONFIG_OPT(engine_redis_sentinel_address, "engine.redis.sentinel_address", STRLIST, "", 0, 0, NULL, CFG_RESTART,
	"Redis Sentinel mode, taking precedence over address: each entry is one shard, written as its sentinels' host:port separated by commas. The master of sentinel_master_name is asked from them before every (re)connection, so a failover is followed.")
CONFIG_OPT(engine_redis_sentinel_master_name, "engine.redis.sentinel_master_name", STRING, "", 0, 0, NULL, CFG_RESTART,
	"Name of the master set the sentinels monitor (needed with sentinel_address).")
CONFIG_OPT(engine_redis_sentinel_user, "engine.redis.sentinel_user", STRING, "", 0, 0, NULL, CFG_RESTART,
	"User name for the sentinels (AUTH user password).")
CONFIG_OPT(engine_redis_sentinel_password, "engine.redis.sentinel_password", STRING, "", 0, 0, NULL, CFG_RESTART,
	"Password for the sentinels.")
CONFIG_OPT(engine_redis_prefix, "engine.redis.prefix", STRING, "centrifugo", 1, 0, NULL, CFG_RESTART,
	"Prefix of every Redis key and PUB/SUB channel name. Distinct installations sharing one Redis need distinct prefixes.")
CONFIG_OPT(engine_redis_user, "engine.redis.user", STRING, "", 0, 0, NULL, CFG_RESTART,
	"Redis ACL user name (AUTH user password). An address's own credentials win.")
CONFIG_OPT(engine_redis_password, "engine.redis.password", STRING, "", 0, 0, NULL, CFG_RESTART,
	"Redis password. An address's own credentials win.")
CONFIG_OPT(engine_redis_db, "engine.redis.db", INT, "0", 0, 1000000, NULL, CFG_RESTART,
	"Redis logical database for keys (PUB/SUB ignores databases: use distinct prefixes instead). An address's /db wins.")
CONFIG_OPT(engine_redis_connect_timeout, "engine.redis.connect_timeout", DURATION, "1s", 1, INT64_MAX, NULL, CFG_RESTART,
	"Time limit for establishing a Redis connection.")
CONFIG_OPT(engine_redis_io_timeout, "engine.redis.io_timeout", DURATION, "4s", 1, INT64_MAX, NULL, CFG_RESTART,
	"Time limit for a Redis command's answer; a connection that exceeds it is closed and re-established, and the waiting requests fail with an internal error.")
CONFIG_OPT(engine_redis_tls_enabled, "engine.redis.tls.enabled", BOOL, "false", 0, 0, NULL, CFG_RESTART,
	"Talk TLS to every Redis address (a rediss:// address does for itself). hiredis in Debian 12 has no TLS: the broker carries each Redis connection over TLS itself (OpenSSL), through a private unix socket that exists only while the connection is made. Unix socket addresses cannot use it; the sentinels are always asked over plain TCP.")
CONFIG_OPT(engine_redis_tls_cert_pem, "engine.redis.tls.cert_pem", STRING, "", 0, 0, NULL, CFG_RESTART,
	"Client certificate for Redis servers that ask for one (tls-auth-clients): inline PEM text, base64 of it, or the path of a PEM file. Needs key_pem.")
CONFIG_OPT(engine_redis_tls_key_pem, "engine.redis.tls.key_pem", STRING, "", 0, 0, NULL, CFG_RESTART,
	"Private key of cert_pem (unencrypted), in the same three forms.")
CONFIG_OPT(engine_redis_tls_server_ca_pem, "engine.redis.tls.server_ca_pem", STRING, "", 0, 0, NULL, CFG_RESTART,
	"CA certificates the Redis server's certificate must chain to, in the same three forms. Empty means the system's CA certificates.")
CONFIG_OPT(engine_redis_tls_server_name, "engine.redis.tls.server_name", STRING, "", 0, 0, NULL, CFG_RESTART,
	"Name the Redis server's certificate must carry, also sent as SNI. Empty means the address's host (a name, or an IP address matched against the certificate's IP addresses).")
CONFIG_OPT(engine_redis_tls_insecure_skip_verify, "engine.redis.tls.insecure_skip_verify", BOOL, "false", 0, 0, NULL, CFG_RESTART,
	"Accept any certificate from the Redis server, unchecked. For tests only.")
CONFIG_OPT(engine_redis_presence_ttl, "engine.redis.presence_ttl", DURATION, "60s", 1000, INT64_MAX, NULL, CFG_RESTART | CFG_WHOLESEC,
	"How long a presence entry lives in Redis without being refreshed (every client.presence_update_interval) by its node: the clients of a node that died disappear from presence after this time.")

/* broker (a separate broker instead of the engine's PUB/SUB) */
CONFIG_OPT(broker_enabled, "broker.enabled", BOOL, "false", 0, 0, NULL, CFG_RESTART,
	"Use the broker configured below for PUB/SUB instead of the engine's.")
CONFIG_OPT(broker_type, "broker.type", STRING, "memory", 0, 0, "memory|nats", CFG_RESTART,
	"Broker type: memory or nats (publications and control messages through NATS, at most once; no history, recovery or positioning; presence stays on each node).")
CONFIG_OPT(broker_nats_url, "broker.nats.url", STRING, "nats://localhost:4222", 1, 0, NULL, CFG_RESTART,
	"NATS server URL; credentials may be embedded (nats://user:password@host:4222).")
CONFIG_OPT(broker_nats_prefix, "broker.nats.prefix", STRING, "centrifugo", 1, 0, NULL, CFG_RESTART,
	"Prefix of the NATS subjects: <prefix>.client.<channel>, <prefix>.control.")
CONFIG_OPT(broker_nats_dial_timeout, "broker.nats.dial_timeout", DURATION, "1s", 1, INT64_MAX, NULL, CFG_RESTART,
	"Time limit for connecting to NATS.")
CONFIG_OPT(broker_nats_write_timeout, "broker.nats.write_timeout", DURATION, "1s", 1, INT64_MAX, NULL, CFG_RESTART,
	"Time limit for flushing to NATS.")

/* node, shutdown */
CONFIG_OPT(node_name, "node.name", STRING, "", 0, 0, NULL, CFG_RESTART,
	"Human-readable node name shown by the info API. Empty means hostname_port.")
CONFIG_OPT(node_info_metrics_aggregate_interval, "node.info_metrics_aggregate_interval", DURATION, "60s", 1000, INT64_MAX, NULL, CFG_RESTART,
	"Period over which metrics are aggregated for the info API.")
CONFIG_OPT(shutdown_timeout, "shutdown.timeout", DURATION, "30s", 0, INT64_MAX, NULL, CFG_RESTART,
	"Maximum graceful shutdown time after SIGTERM or SIGINT before the server exits anyway.")

/* client */
CONFIG_OPT(client_allowed_origins, "client.allowed_origins", STRLIST, "", 0, 0, NULL, CFG_RESTART,
	"Allowed Origin patterns of browser connections; * matches any run of characters and [\"*\"] allows any origin. Requests without an Origin header always pass.")
CONFIG_OPT(client_allow_anonymous_connect_without_token, "client.allow_anonymous_connect_without_token", BOOL, "false", 0, 0, NULL, CFG_RESTART,
	"Accept connections without a token as anonymous (empty user ID).")
CONFIG_OPT(client_disallow_anonymous_connection_tokens, "client.disallow_anonymous_connection_tokens", BOOL, "false", 0, 0, NULL, CFG_RESTART,
	"Reject valid connection tokens whose user ID is empty.")
CONFIG_OPT(client_insecure, "client.insecure", BOOL, "false", 0, 0, NULL, CFG_RESTART,
	"Development mode: no authentication required and permission checks relaxed. Never use in production.")
CONFIG_OPT(client_ping_interval, "client.ping_interval", DURATION, "25s", 0, INT64_MAX, NULL, CFG_RESTART | CFG_NEGOFF,
	"Period of server-to-client pings. Must be greater than client.pong_timeout. A negative value such as -1 disables pings.")
CONFIG_OPT(client_pong_timeout, "client.pong_timeout", DURATION, "8s", 0, INT64_MAX, NULL, CFG_RESTART | CFG_NEGOFF,
	"Time to wait for a pong before disconnecting the client. A negative value disables the check.")
CONFIG_OPT(client_expired_close_delay, "client.expired_close_delay", DURATION, "25s", 0, INT64_MAX, NULL, CFG_RESTART,
	"Grace period after a connection expires for the client to refresh before it is closed.")
CONFIG_OPT(client_expired_sub_close_delay, "client.expired_sub_close_delay", DURATION, "25s", 0, INT64_MAX, NULL, CFG_RESTART,
	"Grace period after a subscription expires for the client to refresh it.")
CONFIG_OPT(client_stale_close_delay, "client.stale_close_delay", DURATION, "10s", 0, INT64_MAX, NULL, CFG_RESTART,
	"Close connections that have not sent a valid connect command within this time.")
CONFIG_OPT(client_channel_limit, "client.channel_limit", INT, "128", 0, INT32_MAX, NULL, CFG_RESTART,
	"Maximum number of simultaneous subscriptions of one connection.")
CONFIG_OPT(client_queue_max_size, "client.queue_max_size", INT, "1048576", 0, INT64_MAX, NULL, CFG_RESTART,
	"Cap in bytes of a connection's outgoing queue. A client whose queue overflows is disconnected as slow.")
CONFIG_OPT(client_write_delay, "client.write_delay", DURATION, "0", 0, 60000, NULL, CFG_RELOAD,
	"Time during which further messages to a connection that was just written to are collected, then sent together in one WebSocket frame (JSON lines, or length-delimited Protobuf) with one system call: trades up to this much delivery latency for less CPU when connections get many messages per second. Adaptive: a connection whose last write is older than this is written at once, so connections that get a message now and then are not delayed; replies to commands are never held (pushes queued before a reply go with it, in order). 0 writes every connection as soon as possible. At most 60s.")
CONFIG_OPT(client_presence_update_interval, "client.presence_update_interval", DURATION, "27s", 1, INT64_MAX, NULL, CFG_RESTART,
	"How often each connection refreshes its presence entries.")
CONFIG_OPT(client_concurrency, "client.concurrency", INT, "0", 0, INT32_MAX, NULL, CFG_RESTART,
	"Maximum number of commands of one connection processed in parallel. 0 or 1 means sequential.")
CONFIG_OPT(client_channel_position_check_delay, "client.channel_position_check_delay", DURATION, "40s", 0, INT64_MAX, NULL, CFG_RESTART,
	"Interval of stream position checks of positioned subscriptions.")
CONFIG_OPT(client_channel_position_max_time_lag, "client.channel_position_max_time_lag", DURATION, "0", 0, INT64_MAX, NULL, CFG_RESTART,
	"When positive, a publication lag above this also counts as a lost position.")
CONFIG_OPT(client_connection_limit, "client.connection_limit", INT, "0", 0, INT64_MAX, NULL, CFG_RELOAD,
	"Maximum number of concurrent client connections of the node (all workers together; a connection counts once its connect command succeeded). When reached, a new WebSocket upgrade is answered HTTP 503 with an empty body and counted in centrifugo_node_client_connection_limit; existing connections are untouched. 0 means unlimited.")
CONFIG_OPT(client_user_connection_limit, "client.user_connection_limit", INT, "0", 0, INT64_MAX, NULL, CFG_RESTART,
	"Maximum number of connections of one user ID on the node. 0 means unlimited.")
CONFIG_OPT(client_connection_rate_limit, "client.connection_rate_limit", INT, "0", 0, INT64_MAX, NULL, CFG_RELOAD,
	"Maximum number of new WebSocket connection requests per second on the node (all workers together, counted in fixed one-second windows). Requests beyond it are answered HTTP 503 with an empty body. 0 means unlimited.")
CONFIG_OPT(client_connect_include_server_time, "client.connect_include_server_time", BOOL, "false", 0, 0, NULL, CFG_RESTART,
	"Add the server time (Unix milliseconds) to the connect reply.")
CONFIG_OPT(client_history_max_publication_limit, "client.history_max_publication_limit", INT, "300", 0, INT32_MAX, NULL, CFG_RESTART,
	"Maximum number of publications returned by one client history call.")
CONFIG_OPT(client_recovery_max_publication_limit, "client.recovery_max_publication_limit", INT, "300", 0, INT32_MAX, NULL, CFG_RESTART,
	"Maximum number of publications returned by one recovery.")
CONFIG_OPT(client_insecure_skip_token_signature_verify, "client.insecure_skip_token_signature_verify", BOOL, "false", 0, 0, NULL, CFG_RESTART,
	"Accept token claims without verifying the signature. Insecure, development only.")
CONFIG_OPT(client_user_id_http_header, "client.user_id_http_header", STRING, "", 0, 0, NULL, CFG_RESTART,
	"Take the user ID from this request header (trusted authenticating proxy in front).")
CONFIG_OPT(client_subscribe_to_user_personal_channel_enabled, "client.subscribe_to_user_personal_channel.enabled", BOOL, "false", 0, 0, NULL, CFG_RESTART,
	"Subscribe every non-anonymous connection to its personal channel [namespace:]#user on the server side.")
CONFIG_OPT(client_subscribe_to_user_personal_channel_personal_channel_namespace, "client.subscribe_to_user_personal_channel.personal_channel_namespace", STRING, "", 0, 0, NULL, CFG_RESTART,
	"Namespace of the personal channel, which must exist. Empty means no namespace.")
CONFIG_OPT(client_subscribe_to_user_personal_channel_single_connection, "client.subscribe_to_user_personal_channel.single_connection", BOOL, "false", 0, 0, NULL, CFG_RESTART,
	"Keep a single connection per user by disconnecting older ones. Needs presence in the personal channel namespace.")

/* client.token: connection tokens (and subscription tokens unless client.subscription_token.enabled) */
CONFIG_OPT(client_token_hmac_secret_key, "client.token.hmac_secret_key", STRING, "", 0, 0, NULL, CFG_RELOAD,
	"Shared secret of HS256, HS384 and HS512 connection tokens.")
CONFIG_OPT(client_token_hmac_previous_secret_key, "client.token.hmac_previous_secret_key", STRING, "", 0, 0, NULL, CFG_RELOAD,
	"Previous HMAC secret, still accepted during a key rotation.")
CONFIG_OPT(client_token_hmac_previous_secret_key_valid_until, "client.token.hmac_previous_secret_key_valid_until", INT64, "0", 0, INT64_MAX, NULL, CFG_RELOAD,
	"Unix time in seconds after which the previous HMAC secret is no longer accepted.")
CONFIG_OPT(client_token_rsa_public_key, "client.token.rsa_public_key", STRING, "", 0, 0, NULL, CFG_RELOAD,
	"PEM public key of RS256, RS384 and RS512 tokens.")
CONFIG_OPT(client_token_ecdsa_public_key, "client.token.ecdsa_public_key", STRING, "", 0, 0, NULL, CFG_RELOAD,
	"PEM public key of ES256, ES384 and ES512 tokens.")
CONFIG_OPT(client_token_jwks_public_endpoint, "client.token.jwks_public_endpoint", STRING, "", 0, 0, NULL, CFG_RELOAD,
	"JWKS URL to fetch verification keys from.")
CONFIG_OPT(client_token_audience, "client.token.audience", STRING, "", 0, 0, NULL, CFG_RELOAD,
	"When set, the aud claim must equal it.")
CONFIG_OPT(client_token_audience_regex, "client.token.audience_regex", STRING, "", 0, 0, NULL, CFG_RELOAD,
	"When set, the aud claim must match this regular expression.")
CONFIG_OPT(client_token_issuer, "client.token.issuer", STRING, "", 0, 0, NULL, CFG_RELOAD,
	"When set, the iss claim must equal it.")
CONFIG_OPT(client_token_issuer_regex, "client.token.issuer_regex", STRING, "", 0, 0, NULL, CFG_RELOAD,
	"When set, the iss claim must match this regular expression.")
CONFIG_OPT(client_token_user_id_claim, "client.token.user_id_claim", STRING, "", 0, 0, NULL, CFG_RELOAD,
	"Claim carrying the user ID instead of sub (letters and underscores only).")
CONFIG_OPT(client_token_insecure_skip_jwks_endpoint_safety_check, "client.token.insecure_skip_jwks_endpoint_safety_check", BOOL, "false", 0, 0, NULL, CFG_RELOAD,
	"Skip the safety check of templated JWKS endpoints. Insecure.")

/* client.subscription_token: separate settings for subscription tokens */
CONFIG_OPT(client_subscription_token_enabled, "client.subscription_token.enabled", BOOL, "false", 0, 0, NULL, CFG_RELOAD,
	"Verify subscription tokens with client.subscription_token instead of client.token.")
CONFIG_OPT(client_subscription_token_hmac_secret_key, "client.subscription_token.hmac_secret_key", STRING, "", 0, 0, NULL, CFG_RELOAD,
	"Shared secret of HMAC subscription tokens.")
CONFIG_OPT(client_subscription_token_hmac_previous_secret_key, "client.subscription_token.hmac_previous_secret_key", STRING, "", 0, 0, NULL, CFG_RELOAD,
	"Previous HMAC secret of subscription tokens, accepted during a key rotation.")
CONFIG_OPT(client_subscription_token_hmac_previous_secret_key_valid_until, "client.subscription_token.hmac_previous_secret_key_valid_until", INT64, "0", 0, INT64_MAX, NULL, CFG_RELOAD,
	"Unix time in seconds after which the previous subscription HMAC secret is no longer accepted.")
CONFIG_OPT(client_subscription_token_rsa_public_key, "client.subscription_token.rsa_public_key", STRING, "", 0, 0, NULL, CFG_RELOAD,
	"PEM public key of RSA subscription tokens.")
CONFIG_OPT(client_subscription_token_ecdsa_public_key, "client.subscription_token.ecdsa_public_key", STRING, "", 0, 0, NULL, CFG_RELOAD,
	"PEM public key of ECDSA subscription tokens.")
CONFIG_OPT(client_subscription_token_jwks_public_endpoint, "client.subscription_token.jwks_public_endpoint", STRING, "", 0, 0, NULL, CFG_RELOAD,
	"JWKS URL to fetch subscription token keys from.")
CONFIG_OPT(client_subscription_token_audience, "client.subscription_token.audience", STRING, "", 0, 0, NULL, CFG_RELOAD,
	"When set, the aud claim of subscription tokens must equal it.")
CONFIG_OPT(client_subscription_token_audience_regex, "client.subscription_token.audience_regex", STRING, "", 0, 0, NULL, CFG_RELOAD,
	"When set, the aud claim of subscription tokens must match this regular expression.")
CONFIG_OPT(client_subscription_token_issuer, "client.subscription_token.issuer", STRING, "", 0, 0, NULL, CFG_RELOAD,
	"When set, the iss claim of subscription tokens must equal it.")
CONFIG_OPT(client_subscription_token_issuer_regex, "client.subscription_token.issuer_regex", STRING, "", 0, 0, NULL, CFG_RELOAD,
	"When set, the iss claim of subscription tokens must match this regular expression.")
CONFIG_OPT(client_subscription_token_user_id_claim, "client.subscription_token.user_id_claim", STRING, "", 0, 0, NULL, CFG_RELOAD,
	"Claim carrying the user ID of subscription tokens instead of sub.")
CONFIG_OPT(client_subscription_token_insecure_skip_jwks_endpoint_safety_check, "client.subscription_token.insecure_skip_jwks_endpoint_safety_check", BOOL, "false", 0, 0, NULL, CFG_RELOAD,
	"Skip the safety check of templated JWKS endpoints of subscription tokens. Insecure.")

/* channel (the options objects are channel.without_namespace and channel.namespaces) */
CONFIG_OPT(channel_max_length, "channel.max_length", INT, "255", 1, 65535, NULL, CFG_RELOAD,
	"Maximum length of a channel name in bytes.")
CONFIG_OPT(channel_private_prefix, "channel.private_prefix", STRING, "$", 0, 0, NULL, CFG_RELOAD,
	"Prefix of private channels, which always require a subscription token.")
CONFIG_OPT(channel_namespace_boundary, "channel.namespace_boundary", STRING, ":", 1, 0, NULL, CFG_RELOAD,
	"Separator between the namespace and the rest of a channel name.")
CONFIG_OPT(channel_user_boundary, "channel.user_boundary", STRING, "#", 1, 0, NULL, CFG_RELOAD,
	"Separator introducing the allowed users of a user-limited channel.")
CONFIG_OPT(channel_user_separator, "channel.user_separator", STRING, ",", 1, 0, NULL, CFG_RELOAD,
	"Separator between the user IDs of a user-limited channel.")
CONFIG_OPT(channel_history_meta_ttl, "channel.history_meta_ttl", DURATION, "720h", 0, INT64_MAX, NULL, CFG_RELOAD | CFG_WHOLESEC,
	"Default lifetime of history stream metadata (top offset and epoch). Whole seconds.")
CONFIG_OPT(channel_publication_data_format, "channel.publication_data_format", STRING, "", 0, 0, "|json|json_object|binary", CFG_RELOAD,
	"Default publication_data_format of all namespaces.")

/* websocket */
CONFIG_OPT(websocket_disabled, "websocket.disabled", BOOL, "false", 0, 0, NULL, CFG_RESTART,
	"Do not serve the bidirectional WebSocket endpoint.")
CONFIG_OPT(websocket_handler_prefix, "websocket.handler_prefix", STRING, "/connection/websocket", 1, 0, NULL, CFG_RESTART,
	"Path of the WebSocket endpoint.")
CONFIG_OPT(websocket_message_size_limit, "websocket.message_size_limit", INT, "65536", 0, INT32_MAX, NULL, CFG_RESTART,
	"Maximum size in bytes of an incoming WebSocket message.")
CONFIG_OPT(websocket_write_timeout, "websocket.write_timeout", DURATION, "1000ms", 0, INT64_MAX, NULL, CFG_RESTART,
	"Maximum time of one write to a connection.")
CONFIG_OPT(websocket_compression, "websocket.compression", BOOL, "false", 0, 0, NULL, CFG_RESTART,
	"Negotiate permessage-deflate compression.")
CONFIG_OPT(websocket_compression_min_size, "websocket.compression_min_size", INT, "0", 0, INT32_MAX, NULL, CFG_RESTART,
	"Only compress messages at least this many bytes long.")
CONFIG_OPT(websocket_compression_level, "websocket.compression_level", INT, "1", 1, 9, NULL, CFG_RESTART,
	"Deflate compression level.")
CONFIG_OPT(websocket_read_buffer_size, "websocket.read_buffer_size", INT, "0", 0, INT32_MAX, NULL, CFG_RESTART,
	"Per-connection read buffer size in bytes. 0 means the library default.")
CONFIG_OPT(websocket_write_buffer_size, "websocket.write_buffer_size", INT, "0", 0, INT32_MAX, NULL, CFG_RESTART,
	"Per-connection write buffer size in bytes. 0 means the library default.")
CONFIG_OPT(websocket_use_write_buffer_pool, "websocket.use_write_buffer_pool", BOOL, "false", 0, 0, NULL, CFG_RESTART,
	"Share write buffers between connections.")
CONFIG_OPT(websocket_decompressed_message_size_limit, "websocket.decompressed_message_size_limit", INT, "0", 0, INT32_MAX, NULL, CFG_RESTART,
	"Maximum size of a message after decompression. 0 means ten times websocket.message_size_limit.")

/* http_api */
CONFIG_OPT(http_api_disabled, "http_api.disabled", BOOL, "false", 0, 0, NULL, CFG_RESTART,
	"Do not serve the HTTP server API.")
CONFIG_OPT(http_api_handler_prefix, "http_api.handler_prefix", STRING, "/api", 1, 0, NULL, CFG_RESTART,
	"Path prefix of the server API (/api and /api/method).")
CONFIG_OPT(http_api_key, "http_api.key", STRING, "", 0, 0, NULL, CFG_RESTART,
	"API key required in X-API-Key, Authorization: apikey KEY or the api_key query parameter. An empty key without http_api.insecure rejects every call.")
CONFIG_OPT(http_api_insecure, "http_api.insecure", BOOL, "false", 0, 0, NULL, CFG_RESTART,
	"Skip the API key check entirely.")
CONFIG_OPT(http_api_error_mode, "http_api.error_mode", STRING, "", 0, 0, "|transport", CFG_RESTART,
	"Empty: errors in the response body with HTTP 200. transport: errors as HTTP status codes.")
CONFIG_OPT(http_api_external, "http_api.external", BOOL, "false", 0, 0, NULL, CFG_RESTART,
	"Serve the API on the external port instead of the internal one.")

/* grpc_api */
CONFIG_OPT(grpc_api_enabled, "grpc_api.enabled", BOOL, "false", 0, 0, NULL, CFG_RESTART,
	"Serve the GRPC server API (service centrifugal.centrifugo.api.CentrifugoApi) on its own listener, as plaintext HTTP/2 (h2c with prior knowledge). grpc_api.tls is refused: terminate TLS in front of the server.")
CONFIG_OPT(grpc_api_address, "grpc_api.address", STRING, "", 0, 0, NULL, CFG_RESTART,
	"Interface the GRPC API listens on. Empty means all interfaces.")
CONFIG_OPT(grpc_api_port, "grpc_api.port", INT, "10000", 0, 65535, NULL, CFG_RESTART,
	"TCP port of the GRPC API.")
CONFIG_OPT(grpc_api_key, "grpc_api.key", STRING, "", 0, 0, NULL, CFG_RESTART,
	"If set, every GRPC call must carry the metadata authorization: apikey KEY, or fails with status UNAUTHENTICATED. Empty means no authentication at all.")
CONFIG_OPT(grpc_api_error_mode, "grpc_api.error_mode", STRING, "", 0, 0, "|transport", CFG_RESTART,
	"Empty: errors in the error field of the response with status OK. transport: errors as GRPC status codes (also per call with the metadata x-centrifugo-error-mode: transport).")
CONFIG_OPT(grpc_api_max_receive_message_size, "grpc_api.max_receive_message_size", INT, "0", 0, INT32_MAX, NULL, CFG_RESTART,
	"Largest request message in bytes, after gzip decompression; larger ones fail with RESOURCE_EXHAUSTED. 0 means 4194304 (4 MiB).")

/* operational endpoints */
CONFIG_OPT(prometheus_enabled, "prometheus.enabled", BOOL, "false", 0, 0, NULL, CFG_RESTART,
	"Expose Prometheus metrics on the internal port.")
CONFIG_OPT(prometheus_handler_prefix, "prometheus.handler_prefix", STRING, "/metrics", 1, 0, NULL, CFG_RESTART,
	"Path of the metrics endpoint.")
CONFIG_OPT(health_enabled, "health.enabled", BOOL, "false", 0, 0, NULL, CFG_RESTART,
	"Serve a health endpoint answering {} with status 200.")
CONFIG_OPT(health_handler_prefix, "health.handler_prefix", STRING, "/health", 1, 0, NULL, CFG_RESTART,
	"Path of the health endpoint.")

#endif /* CONFIG_OPT */

#ifdef CHAN_OPT

CHAN_OPT(presence, BOOL, "false", 0, 0, NULL, CFG_RELOAD,
	"Keep online presence (who is subscribed) of the channels.")
CHAN_OPT(join_leave, BOOL, "false", 0, 0, NULL, CFG_RELOAD,
	"Send join and leave events when clients subscribe and unsubscribe.")
CHAN_OPT(force_push_join_leave, BOOL, "false", 0, 0, NULL, CFG_RELOAD,
	"Deliver join and leave events to every subscriber without a client-side opt-in.")
CHAN_OPT(history_size, INT, "0", 0, INT32_MAX, NULL, CFG_RELOAD,
	"Maximum number of publications kept in a channel's history stream. History is on when history_size and history_ttl are both positive; setting only one is an error.")
CHAN_OPT(history_ttl, DURATION, "0", 0, INT64_MAX, NULL, CFG_RELOAD | CFG_WHOLESEC,
	"How long publications stay in the history stream. Whole seconds, not above the effective history_meta_ttl.")
CHAN_OPT(history_meta_ttl, DURATION, "0", 0, INT64_MAX, NULL, CFG_RELOAD | CFG_WHOLESEC,
	"Lifetime of the stream metadata. 0 means channel.history_meta_ttl. Whole seconds.")
CHAN_OPT(force_positioning, BOOL, "false", 0, 0, NULL, CFG_RELOAD,
	"Make every subscription positioned: a client that lost its position in the stream is disconnected.")
CHAN_OPT(allow_positioning, BOOL, "false", 0, 0, NULL, CFG_RELOAD,
	"Let clients ask for positioning themselves.")
CHAN_OPT(force_recovery, BOOL, "false", 0, 0, NULL, CFG_RELOAD,
	"Make every subscription recoverable. Needs history.")
CHAN_OPT(allow_recovery, BOOL, "false", 0, 0, NULL, CFG_RELOAD,
	"Let clients ask for recovery themselves.")
CHAN_OPT(force_recovery_mode, STRING, "", 0, 0, "|stream|cache", CFG_RELOAD,
	"Recovery mode: stream (the default, replay missed publications) or cache (deliver only the latest publication).")
CHAN_OPT(auto_cache_recover, BOOL, "false", 0, 0, NULL, CFG_RELOAD,
	"Deliver the latest publication on every subscribe. Needs force_recovery with force_recovery_mode cache.")
CHAN_OPT(allowed_delta_types, STRLIST, "", 0, 0, "fossil", CFG_RELOAD,
	"Delta compression types subscribers may negotiate; only fossil exists. Empty disables delta compression.")
CHAN_OPT(delta_publish, BOOL, "false", 0, 0, NULL, CFG_RELOAD,
	"Treat every publication as delta-eligible.")
CHAN_OPT(allow_tags_filter, BOOL, "false", 0, 0, NULL, CFG_RELOAD,
	"Let subscribers filter publications by tags.")
CHAN_OPT(allow_subscribe_for_client, BOOL, "false", 0, 0, NULL, CFG_RELOAD,
	"Authenticated connections may subscribe without a subscription token. Private channels still need one.")
CHAN_OPT(allow_subscribe_for_anonymous, BOOL, "false", 0, 0, NULL, CFG_RELOAD,
	"Anonymous connections may subscribe too (together with allow_subscribe_for_client).")
CHAN_OPT(allow_publish_for_subscriber, BOOL, "false", 0, 0, NULL, CFG_RELOAD,
	"A connection may publish into a channel it is subscribed to.")
CHAN_OPT(allow_publish_for_client, BOOL, "false", 0, 0, NULL, CFG_RELOAD,
	"Any authenticated connection may publish, subscribed or not.")
CHAN_OPT(allow_publish_for_anonymous, BOOL, "false", 0, 0, NULL, CFG_RELOAD,
	"Anonymous connections may publish (together with one of the two options above).")
CHAN_OPT(allow_presence_for_subscriber, BOOL, "false", 0, 0, NULL, CFG_RELOAD,
	"Subscribers may ask for presence of the channel.")
CHAN_OPT(allow_presence_for_client, BOOL, "false", 0, 0, NULL, CFG_RELOAD,
	"Any authenticated connection may ask for presence.")
CHAN_OPT(allow_presence_for_anonymous, BOOL, "false", 0, 0, NULL, CFG_RELOAD,
	"Anonymous connections may ask for presence.")
CHAN_OPT(allow_history_for_subscriber, BOOL, "false", 0, 0, NULL, CFG_RELOAD,
	"Subscribers may ask for history of the channel.")
CHAN_OPT(allow_history_for_client, BOOL, "false", 0, 0, NULL, CFG_RELOAD,
	"Any authenticated connection may ask for history.")
CHAN_OPT(allow_history_for_anonymous, BOOL, "false", 0, 0, NULL, CFG_RELOAD,
	"Anonymous connections may ask for history.")
CHAN_OPT(allow_user_limited_channels, BOOL, "false", 0, 0, NULL, CFG_RELOAD,
	"Enable user-limited channels such as news#42 or dialog#1,2: only the listed users may subscribe.")
CHAN_OPT(channel_regex, STRING, "", 0, 0, NULL, CFG_RELOAD,
	"POSIX extended regular expression the channel name after the namespace must match for client-side subscriptions.")
CHAN_OPT(publication_data_format, STRING, "", 0, 0, "|json|json_object|binary", CFG_RELOAD,
	"Publication payload check: empty (reject empty payloads, the default, inherits channel.publication_data_format), json, json_object or binary.")

#endif /* CHAN_OPT */
