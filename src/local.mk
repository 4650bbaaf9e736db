# src/: the daemon, its modules (as one internal library the unit tests link)
# and the control client.

CF_LIBS = $(LIBEVENT_LIBS) $(LWS_LIBS) $(LIBUV_LIBS) $(MSGPACK_LIBS) \
	$(LIBCONFIG_LIBS) $(JANSSON_LIBS) $(LIBJWT_LIBS) $(OPENSSL_LIBS) \
	$(PROTOBUF_C_LIBS) $(HIREDIS_LIBS) $(LIBNATS_LIBS) $(LIBNGHTTP2_LIBS) \
	$(ZLIB_LIBS) -lm
CF_DEP_CFLAGS = $(LIBEVENT_CFLAGS) $(LWS_CFLAGS) $(LIBUV_CFLAGS) \
	$(MSGPACK_CFLAGS) $(LIBCONFIG_CFLAGS) $(JANSSON_CFLAGS) \
	$(LIBJWT_CFLAGS) $(OPENSSL_CFLAGS) $(PROTOBUF_C_CFLAGS) \
	$(HIREDIS_CFLAGS) $(LIBNATS_CFLAGS) $(LIBNGHTTP2_CFLAGS) \
	$(ZLIB_CFLAGS) -I$(top_builddir)/src

noinst_LIBRARIES += src/libcentrifugo.a
src_libcentrifugo_a_CFLAGS = $(AM_CFLAGS) $(CF_DEP_CFLAGS)
src_libcentrifugo_a_SOURCES = \
	src/api.c src/api.h \
	src/auth.c src/auth.h \
	src/b64.c src/b64.h \
	src/broker.c src/broker.h \
	src/buf.c src/buf.h \
	src/client.c src/client.h \
	src/cluster.c src/cluster.h \
	src/codec.c src/codec.h \
	src/config.c src/config.h src/config_tbl.h \
	src/ctl.c src/ctl.h \
	src/engine.h \
	src/engine_memory.c \
	src/engine_nats.c \
	src/engine_redis.c \
	src/heritage.h \
	src/glob.c src/glob.h \
	src/grpc_api.c src/grpc_api.h \
	src/htab.c src/htab.h \
	src/hub.c src/hub.h \
	src/ipc.c src/ipc.h \
	src/json.c src/json.h \
	src/jwks.c src/jwks.h \
	src/log.c src/log.h \
	src/loop.c src/loop.h \
	src/metrics.c src/metrics.h \
	src/msg.c src/msg.h \
	src/node.c src/node.h \
	src/pem.c src/pem.h \
	src/proctitle.c src/proctitle.h \
	src/proto.c src/proto.h \
	src/proto_pb.c src/proto_pb.h \
	src/redis_addr.c src/redis_addr.h \
	src/redis_loop.c src/redis_loop.h \
	src/reload.c src/reload.h \
	src/ring.c src/ring.h \
	src/sdnotify.c src/sdnotify.h \
	src/shm.c src/shm.h \
	src/supervisor.c src/supervisor.h \
	src/vmb.h \
	src/tls_tunnel.c src/tls_tunnel.h \
	src/wheel.c src/wheel.h \
	src/worker.c src/worker.h \
	src/xmalloc.c src/xmalloc.h
nodist_src_libcentrifugo_a_SOURCES = src/client.pb-c.c src/client.pb-c.h \
	src/api.pb-c.c src/api.pb-c.h

# The client protocol's Protobuf schema: protoc-c writes its C code into the
# build tree (never the source tree) before anything that includes it.
# BUILT_SOURCES is first set here (src/local.mk is included first): other
# fragments append with +=.
BUILT_SOURCES = src/client.pb-c.c src/client.pb-c.h
CLEANFILES += src/client.pb-c.c src/client.pb-c.h
EXTRA_DIST += src/client.proto
src/client.pb-c.c: $(srcdir)/src/client.proto
	$(AM_V_GEN)$(MKDIR_P) src && $(PROTOC_C) --proto_path=$(srcdir)/src \
	    --c_out=src $(srcdir)/src/client.proto
src/client.pb-c.h: src/client.pb-c.c
	@test -f $@ || { rm -f src/client.pb-c.c; \
	    $(MAKE) $(AM_MAKEFLAGS) src/client.pb-c.c; }

# The GRPC server API's messages (grpc_api.c), the same way.
BUILT_SOURCES += src/api.pb-c.c src/api.pb-c.h
CLEANFILES += src/api.pb-c.c src/api.pb-c.h
EXTRA_DIST += src/api.proto
src/api.pb-c.c: $(srcdir)/src/api.proto
	$(AM_V_GEN)$(MKDIR_P) src && $(PROTOC_C) --proto_path=$(srcdir)/src \
	    --c_out=src $(srcdir)/src/api.proto
src/api.pb-c.h: src/api.pb-c.c
	@test -f $@ || { rm -f src/api.pb-c.c; \
	    $(MAKE) $(AM_MAKEFLAGS) src/api.pb-c.c; }

bin_PROGRAMS += src/centrifugo src/centrifugo-ctl

src_centrifugo_SOURCES = src/main.c
src_centrifugo_CFLAGS = $(AM_CFLAGS) $(CF_DEP_CFLAGS)
src_centrifugo_LDADD = src/libcentrifugo.a $(CF_LIBS)

src_centrifugo_ctl_SOURCES = src/ctl/centrifugo-ctl.c
src_centrifugo_ctl_CFLAGS = $(AM_CFLAGS) $(CF_DEP_CFLAGS)
src_centrifugo_ctl_LDADD = src/libcentrifugo.a $(CF_LIBS)

# The load generator (bench/ scripts drive it; see centrifugo-bench(1)).
bin_PROGRAMS += src/centrifugo-bench
# It needs only buf, xmalloc and log, so it does not wait for the library.
src_centrifugo_bench_SOURCES = src/bench/centrifugo-bench.c src/b64.c \
	src/buf.c src/log.c src/xmalloc.c
src_centrifugo_bench_CFLAGS = $(AM_CFLAGS) $(OPENSSL_CFLAGS)
src_centrifugo_bench_LDADD = $(OPENSSL_LIBS)

# The floor server: the least a server can do for the bench's shapes, run by
# bench/run.sh to measure what the kernel costs alone (not installed).
noinst_PROGRAMS += src/floor-server
src_floor_server_SOURCES = src/bench/floor-server.c src/b64.c src/buf.c \
	src/log.c src/xmalloc.c
src_floor_server_CFLAGS = $(AM_CFLAGS) $(OPENSSL_CFLAGS)
src_floor_server_LDADD = $(OPENSSL_LIBS)
