#!/bin/sh
# Integration tests: the real server binary driven by the official
# centrifuge-js SDK and raw WebSockets under Node's built-in test runner.
#
# Run by `make check` (which sets CENTRIFUGO_BIN, TOP_SRCDIR, TOP_BUILDDIR) or
# by hand from anywhere: test/integration/run.sh [node --test args / files].
# npm dependencies are installed into the build tree, never into the source
# tree, so this works on a read-only source tree (make distcheck).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
TOP_SRCDIR=${TOP_SRCDIR:-$(cd "$here/../.." && pwd)}
TOP_BUILDDIR=${TOP_BUILDDIR:-$TOP_SRCDIR}
CENTRIFUGO_BIN=${CENTRIFUGO_BIN:-$TOP_BUILDDIR/src/centrifugo}
export TOP_SRCDIR TOP_BUILDDIR CENTRIFUGO_BIN

# test/check-all skips the suite inside `make distcheck` (77 = skipped):
# it already ran in the plain and the sanitizer builds.
if [ -n "${CENTRIFUGO_SKIP_INTEGRATION:-}" ]; then
	echo "run.sh: skipped (CENTRIFUGO_SKIP_INTEGRATION is set)"
	exit 77
fi

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	echo "run.sh: node and npm are required for the integration tests" >&2
	exit 1
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
	echo "run.sh: Node.js >= 20 required (found $(node --version))" >&2
	exit 1
fi
if [ ! -x "$CENTRIFUGO_BIN" ]; then
	echo "run.sh: server binary not found or not executable: $CENTRIFUGO_BIN" >&2
	exit 1
fi

# Install the pinned SDK and ws into the build tree when missing or when
# the lock file changed.
nodedir=$TOP_BUILDDIR/test/integration-node
stamp=$nodedir/.installed-package-lock.json
mkdir -p "$nodedir"
if [ ! -d "$nodedir/node_modules" ] || ! cmp -s "$here/package-lock.json" "$stamp"; then
	rm -rf "$nodedir/node_modules" "$stamp"
	# cat, not cp: the copies must be writable even from a read-only source.
	rm -f "$nodedir/package.json" "$nodedir/package-lock.json"
	cat "$here/package.json" > "$nodedir/package.json"
	cat "$here/package-lock.json" > "$nodedir/package-lock.json"
	(cd "$nodedir" && npm ci --no-audit --no-fund --loglevel=error)
	cat "$here/package-lock.json" > "$stamp"
fi

# Let the tests' require('centrifuge') / require('ws') resolve from there.
NODE_PATH=$nodedir/node_modules${NODE_PATH:+:$NODE_PATH}
export NODE_PATH

if [ $# -eq 0 ]; then
	set -- "$here"/*.test.js
fi

echo "run.sh: server binary $CENTRIFUGO_BIN"
echo "run.sh: $(node --version), centrifuge $(node -p "require('$nodedir/node_modules/centrifuge/package.json').version"), ws $(node -p "require('$nodedir/node_modules/ws/package.json').version")"

status=0
node --test --test-concurrency=1 --test-reporter=spec "$@" || status=$?
exit $status
