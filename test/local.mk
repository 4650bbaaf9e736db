# test/: Check unit tests (test/unit) and integration tests that drive the
# real binary with the real centrifuge SDK under Node (test/integration).

UNIT_CFLAGS = $(AM_CFLAGS) $(CF_DEP_CFLAGS) $(CHECK_CFLAGS)
UNIT_LDADD = src/libcentrifugo.a $(CF_LIBS) $(CHECK_LIBS)

UNIT_TESTS = \
	test/unit/check_auth \
	test/unit/check_config \
	test/unit/check_engine \
	test/unit/check_glob \
	test/unit/check_json \
	test/unit/check_proto \
	test/unit/check_proto_pb \
	test/unit/check_ring \
	test/unit/check_tls

check_PROGRAMS += $(UNIT_TESTS)
TESTS += $(UNIT_TESTS) test/integration/run.sh

test_unit_check_auth_SOURCES = test/unit/check_auth.c
test_unit_check_auth_CFLAGS = $(UNIT_CFLAGS)
test_unit_check_auth_LDADD = $(UNIT_LDADD)
test_unit_check_config_SOURCES = test/unit/check_config.c
test_unit_check_config_CFLAGS = $(UNIT_CFLAGS)
test_unit_check_config_LDADD = $(UNIT_LDADD)
test_unit_check_engine_SOURCES = test/unit/check_engine.c
test_unit_check_engine_CFLAGS = $(UNIT_CFLAGS)
test_unit_check_engine_LDADD = $(UNIT_LDADD)
test_unit_check_glob_SOURCES = test/unit/check_glob.c
test_unit_check_glob_CFLAGS = $(UNIT_CFLAGS)
test_unit_check_glob_LDADD = $(UNIT_LDADD)
test_unit_check_json_SOURCES = test/unit/check_json.c
test_unit_check_json_CFLAGS = $(UNIT_CFLAGS)
test_unit_check_json_LDADD = $(UNIT_LDADD)
test_unit_check_proto_SOURCES = test/unit/check_proto.c
test_unit_check_proto_CFLAGS = $(UNIT_CFLAGS)
test_unit_check_proto_LDADD = $(UNIT_LDADD)
test_unit_check_proto_pb_SOURCES = test/unit/check_proto_pb.c
test_unit_check_proto_pb_CFLAGS = $(UNIT_CFLAGS)
test_unit_check_proto_pb_LDADD = $(UNIT_LDADD)
test_unit_check_ring_SOURCES = test/unit/check_ring.c
test_unit_check_ring_CFLAGS = $(UNIT_CFLAGS)
test_unit_check_ring_LDADD = $(UNIT_LDADD)
test_unit_check_tls_SOURCES = test/unit/check_tls.c
test_unit_check_tls_CFLAGS = $(UNIT_CFLAGS)
test_unit_check_tls_LDADD = $(UNIT_LDADD)

# The integration runner finds the binary and the sources through these.
AM_TESTS_ENVIRONMENT = \
	CENTRIFUGO_BIN=$(abs_top_builddir)/src/centrifugo; export CENTRIFUGO_BIN; \
	TOP_SRCDIR=$(abs_top_srcdir); export TOP_SRCDIR; \
	TOP_BUILDDIR=$(abs_top_builddir); export TOP_BUILDDIR;

EXTRA_DIST += test/unit/README

# The integration suite is distributed file by file from the source tree: a
# build tree has a test/integration of its own (logs, npm modules) that must
# not end up in the tarball.
dist-hook:
	$(MKDIR_P) $(distdir)/test/integration/lib
	cp -p $(srcdir)/test/integration/*.js $(srcdir)/test/integration/*.json \
	    $(srcdir)/test/integration/run.sh $(srcdir)/test/integration/README.md \
	    $(distdir)/test/integration/
	cp -p $(srcdir)/test/integration/lib/*.js \
	    $(srcdir)/test/integration/lib/*.c $(distdir)/test/integration/lib/

# npm dependencies of the integration tests live in the build tree.
clean-local:
	rm -rf test/integration-node
