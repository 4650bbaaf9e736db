# src/: the daemon, its modules (as one internal library the unit tests link)
# and the control client.

CF_LIBS = $(LIBEVENT_LIBS) $(LWS_LIBS) $(LIBUV_LIBS) $(MSGPACK_LIBS) \
	$(LIBCONFIG_LIBS) $(JANSSON_LIBS) $(LIBJWT_LIBS) $(OPENSSL_LIBS) -lm
CF_DEP_CFLAGS = $(LIBEVENT_CFLAGS) $(LWS_CFLAGS) $(LIBUV_CFLAGS) \
	$(MSGPACK_CFLAGS) $(LIBCONFIG_CFLAGS) $(JANSSON_CFLAGS) \
	$(LIBJWT_CFLAGS) $(OPENSSL_CFLAGS)

noinst_LIBRARIES += src/libcentrifugo.a
src_libcentrifugo_a_CFLAGS = $(AM_CFLAGS) $(CF_DEP_CFLAGS)
src_libcentrifugo_a_SOURCES = \
	src/api.c src/api.h \
	src/auth.c src/auth.h \
	src/b64.c src/b64.h \
	src/broker.c src/broker.h \
	src/buf.c src/buf.h \
	src/client.c src/client.h \
	src/config.c src/config.h src/config_tbl.h \
	src/heritage.h \
	src/htab.c src/htab.h \
	src/hub.c src/hub.h \
	src/ipc.c src/ipc.h \
	src/json.c src/json.h \
	src/log.c src/log.h \
	src/loop.c src/loop.h \
	src/msg.c src/msg.h \
	src/proctitle.c src/proctitle.h \
	src/proto.c src/proto.h \
	src/ring.c src/ring.h \
	src/shm.c src/shm.h \
	src/supervisor.c src/supervisor.h \
	src/vmb.h \
	src/wheel.c src/wheel.h \
	src/worker.c src/worker.h \
	src/xmalloc.c src/xmalloc.h

bin_PROGRAMS += src/centrifugo src/centrifugo-ctl

src_centrifugo_SOURCES = src/main.c
src_centrifugo_CFLAGS = $(AM_CFLAGS) $(CF_DEP_CFLAGS)
src_centrifugo_LDADD = src/libcentrifugo.a $(CF_LIBS)

src_centrifugo_ctl_SOURCES = src/ctl/centrifugo-ctl.c
src_centrifugo_ctl_CFLAGS = $(AM_CFLAGS) $(CF_DEP_CFLAGS)
src_centrifugo_ctl_LDADD = src/libcentrifugo.a $(CF_LIBS)

# The load generator (bench/ scripts drive it; see centrifugo-bench(1)).
bin_PROGRAMS += src/centrifugo-bench
src_centrifugo_bench_SOURCES = src/bench/centrifugo-bench.c
src_centrifugo_bench_CFLAGS = $(AM_CFLAGS) $(OPENSSL_CFLAGS)
src_centrifugo_bench_LDADD = src/libcentrifugo.a $(OPENSSL_LIBS)
