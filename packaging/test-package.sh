#!/bin/sh
# packaging/test-package.sh - builds the Debian package and tests it
# installed: the files, the conffile and its generated secrets, the system
# user, the systemd unit; then runs the daemon from the installed files,
# checks sd_notify READY=1 (and RELOADING=1/READY=1 on SIGHUP, STOPPING=1 on
# SIGTERM), `centrifugo-ctl status` (or `version` while status does not
# exist), a publish round trip from the HTTP API to a WebSocket subscriber;
# finally purges the package and checks that nothing is left.
#
# Run as root on Debian 12 from anywhere in the source tree, after the
# packages of packaging/build-deps are installed:
#
#     packaging/test-package.sh [--rev REV | --worktree] [--check] [--deb FILE]
#
#   --rev REV   package the commit REV (default: HEAD, `git archive HEAD`)
#   --worktree  package the working tree's tracked files as they are now
#   --check     let the package build run the unit tests (default: nocheck,
#               test/check-all runs them already)
#   --deb FILE  test this already built .deb: no build, no lintian
#
# Without systemd (a container) the daemon is started the way the unit
# starts it: as the centrifugo user, with a runtime directory for the
# control socket made as RuntimeDirectory= makes /run/centrifugo (but
# private to the test), and NOTIFY_SOCKET pointing at a datagram socket
# this script listens on, which checks the sender is the main pid.  With systemd, `systemctl start` is used.
# It refuses to run when a centrifugo package is already installed.
# Exits non-zero on the first failure, saying which check failed.
set -eu

PKG=centrifugo
CONF=/etc/centrifugo/centrifugo.conf
# Build and test tools, installed when missing.
TOOLS="debhelper devscripts dpkg-dev fakeroot lintian curl python3 util-linux"

top=$(cd "$(dirname "$0")/.." && pwd)
use_worktree=
rev=HEAD
nocheck=nocheck
prebuilt=
while [ $# -gt 0 ]; do
	case $1 in
	--worktree) use_worktree=1 ;;
	--check) nocheck= ;;
	--rev) [ $# -ge 2 ] || { echo "$0: --rev needs a commit" >&2; exit 2; }
		rev=$2; shift ;;
	--deb) [ $# -ge 2 ] || { echo "$0: --deb needs a file" >&2; exit 2; }
		prebuilt=$(realpath "$2"); shift ;;
	*) echo "usage: $0 [--rev REV | --worktree] [--check] [--deb FILE]" >&2; exit 2 ;;
	esac
	shift
done

start_time=$(date +%s)
step() { echo "==== $(( $(date +%s) - start_time ))s: $*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || fail "run as root (it installs and purges the package)"
if dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null | grep -q installed; then
	fail "a $PKG package is already installed; remove it first (apt-get purge $PKG)"
fi

missing=
for p in $TOOLS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
	    missing="$missing $p"
done
if [ -n "$missing" ]; then
	step "installing$missing"
	apt-get install -y --no-install-recommends $missing
fi

tmp=$(mktemp -d /tmp/centrifugo-pkgtest.XXXXXX)
daemon_pid=
listener_pid=
sub_pid=
installed=
ctl_socket=
cleanup() {
	rc=$?
	set +e
	for p in $sub_pid $listener_pid; do
		kill "$p" 2>/dev/null
	done
	if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
		kill -TERM "$daemon_pid"
		sleep 2
		kill -KILL "$daemon_pid" 2>/dev/null
	fi
	if [ $rc -ne 0 ] && [ -s "$tmp/sub.err" ]; then
		echo "---- WebSocket subscriber"
		cat "$tmp/sub.err"
	fi
	if [ $rc -ne 0 ] && [ -f "$tmp/daemon.log" ]; then
		echo "---- daemon log (last 40 lines)"
		tail -n 40 "$tmp/daemon.log"
	fi
	if [ -n "$installed" ]; then
		apt-get purge -y "$PKG" >/dev/null 2>&1
	fi
	rm -rf "$tmp"
	[ $rc -eq 0 ] || echo "package test FAILED after $(( $(date +%s) - start_time ))s" >&2
	exit $rc
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# ---- build ----------------------------------------------------------------

# Builds the package from a copy of the tree; sets deb and changes.
build_package() {
	step "copying the source tree${use_worktree:+ (working tree)}${use_worktree:-" ($rev)"} to $tmp/src"
	mkdir -p "$tmp/src"
	cd "$top"
	if [ -e .git ] && command -v git >/dev/null 2>&1; then
		if [ -n "$use_worktree" ]; then
			git ls-files -z | tar --null --ignore-failed-read -T - -cf - 2>/dev/null |
			    tar -x -C "$tmp/src"
		else
			git archive "$rev" | tar -x -C "$tmp/src" ||
			    fail "git archive $rev"
		fi
	else
		# Not a git checkout (a release tarball): everything but build output.
		tar --exclude=./build --exclude=./debian -cf - . | tar -x -C "$tmp/src"
	fi
	[ -d "$tmp/src/packaging/debian" ] || fail "no packaging/debian in the tree"
	rm -rf "$tmp/src/debian"
	cp -r "$tmp/src/packaging/debian" "$tmp/src/debian"

	step "dpkg-buildpackage -us -uc -b${nocheck:+ (nocheck)}"
	cd "$tmp/src"
	dpkg-checkbuilddeps || fail "build dependencies missing: apt-get install \$(cat packaging/build-deps)"
	if ! DEB_BUILD_OPTIONS="$nocheck" dpkg-buildpackage -us -uc -b >"$tmp/build.log" 2>&1; then
		tail -n 60 "$tmp/build.log"
		fail "dpkg-buildpackage failed (log above)"
	fi
	deb=$(ls "$tmp"/${PKG}_*.deb)
	changes=$(ls "$tmp"/${PKG}_*.changes)
	echo "built $(basename "$deb")"
	# With --check: the unit test summary of the build.
	grep -E '^# (TOTAL|PASS|FAIL|ERROR):' "$tmp/build.log" || true

	step "lintian"
	# Errors fail the test; warnings and the rest are shown.
	lintian --fail-on error --display-info --pedantic "$changes" 2>&1 |
	    grep -v 'running with root privileges is not recommended' |
	    tee "$tmp/lintian.log" || true
	if grep -q '^E:' "$tmp/lintian.log"; then
		fail "lintian reports errors"
	fi
	echo "lintian: $(grep -c '^E:' "$tmp/lintian.log") errors, $(grep -c '^W:' "$tmp/lintian.log") warnings"
}

if [ -n "$prebuilt" ]; then
	deb=$prebuilt
else
	build_package
fi

# ---- install ----------------------------------------------------------------

step "apt-get install $(basename "$deb")"
installed=1
apt-get install -y --no-install-recommends "$deb" >"$tmp/install.log" 2>&1 || {
	cat "$tmp/install.log"; fail "apt-get install failed"; }
dpkg-query -L "$PKG" >"$tmp/files"

step "checking the installed files"
for f in /usr/bin/centrifugo /usr/bin/centrifugo-ctl; do
	[ -x "$f" ] || fail "$f missing"
done
for f in /usr/share/man/man8/centrifugo.8.gz /usr/share/man/man5/centrifugo.conf.5.gz \
    /usr/share/man/man1/centrifugo-ctl.1.gz /usr/share/doc/$PKG/copyright; do
	[ -f "$f" ] || fail "$f missing"
done
unit=
for d in /lib/systemd/system /usr/lib/systemd/system; do
	[ -f "$d/$PKG.service" ] && unit="$d/$PKG.service"
done
[ -n "$unit" ] || fail "systemd unit $PKG.service not installed"
for want in 'Type=notify' 'ExecReload=/bin/kill -HUP $MAINPID' 'User=centrifugo' \
    'RuntimeDirectory=centrifugo' 'NoNewPrivileges=yes' 'ProtectSystem=strict' \
    'PrivateTmp=yes' 'Restart=on-failure'; do
	grep -qxF "$want" "$unit" || fail "$unit lacks $want"
done
grep -q '^LimitNOFILE=' "$unit" || fail "$unit lacks LimitNOFILE"
if command -v systemd-analyze >/dev/null 2>&1; then
	systemd-analyze verify "$unit" || fail "systemd-analyze verify $unit"
fi
dpkg-query -W -f='${Conffiles}\n' "$PKG" | grep -q " $CONF " ||
    fail "$CONF is not a conffile"
getent passwd centrifugo >/dev/null || fail "no centrifugo system user"
[ "$(id -u centrifugo)" -lt 1000 ] || fail "centrifugo is not a system user"

step "checking the generated secrets"
grep -q 'change-me' "$CONF" && fail "placeholders left in $CONF"
secret_of() {   # $1: option name; prints the quoted value on its line
	sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*\"\([^\"]*\)\".*/\1/p" "$CONF" | head -n 1
}
hmac=$(secret_of hmac_secret_key)
apikey=$(secret_of key)
echo "$hmac" | grep -Eq '^[0-9a-f]{64}$' || fail "hmac_secret_key is not 64 random hex digits: '$hmac'"
echo "$apikey" | grep -Eq '^[0-9a-f]{64}$' || fail "http_api.key is not 64 random hex digits: '$apikey'"
[ "$hmac" != "$apikey" ] || fail "the two secrets are equal"
[ "$(stat -c '%U:%G %a' "$CONF")" = "root:centrifugo 640" ] ||
    fail "$CONF is $(stat -c '%U:%G %a' "$CONF"), want root:centrifugo 640"
setpriv --reuid=centrifugo --regid=centrifugo --init-groups \
    /usr/bin/centrifugo -t -c "$CONF" >"$tmp/t.log" 2>&1 || {
	cat "$tmp/t.log"; fail "centrifugo -t -c $CONF as the centrifugo user"; }

step "reinstalling: the secrets must stay"
dpkg -i "$deb" >"$tmp/reinstall.log" 2>&1 || { cat "$tmp/reinstall.log"; fail "dpkg -i (reinstall)"; }
[ "$(secret_of key)" = "$apikey" ] || fail "reinstalling changed http_api.key"
[ "$(secret_of hmac_secret_key)" = "$hmac" ] || fail "reinstalling changed hmac_secret_key"

# ---- run ------------------------------------------------------------------

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"

# Receives sd_notify datagrams like systemd does; one line per message:
# sender pid (from SCM_CREDENTIALS), then the assignments joined by '|'.
cat >"$tmp/notify-listener.py" <<'EOF'
import os, socket, struct, sys
path, out = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
s.bind(path)
os.chmod(path, 0o666)
with open(out, "a") as f:
    f.write("listening\n"); f.flush()
    while True:
        msg, anc, _, _ = s.recvmsg(4096, socket.CMSG_SPACE(12))
        pid = 0
        for level, typ, data in anc:
            if level == socket.SOL_SOCKET and typ == socket.SCM_CREDENTIALS:
                pid = struct.unpack("iII", data[:12])[0]
        f.write("%d %s\n" % (pid, msg.decode(errors="replace").replace("\n", "|")))
        f.flush()
EOF

# A raw WebSocket client speaking Centrifugo's JSON protocol: connect with
# an HS256 connection token signed with the generated hmac_secret_key (the
# shipped configuration lets no anonymous client subscribe), subscribe to a
# channel, print "subscribed", then wait for one publication and print its
# data.  Exit 1 on any error or after 20 s.
cat >"$tmp/ws-sub.py" <<'EOF'
import base64, hashlib, hmac, json, os, socket, struct, sys, time
port, channel, secret = int(sys.argv[1]), sys.argv[2], sys.argv[3]

def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

def hs256(claims):
    signing = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + \
        b64url(json.dumps(claims).encode())
    sig = hmac.new(secret.encode(), signing.encode(), hashlib.sha256).digest()
    return signing + "." + b64url(sig)

s = socket.create_connection(("127.0.0.1", port), timeout=20)
key = base64.b64encode(os.urandom(16)).decode()
s.sendall(("GET /connection/websocket HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
           "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
           "Sec-WebSocket-Version: 13\r\n\r\n" % (port, key)).encode())
buf = b""
while b"\r\n\r\n" not in buf:
    chunk = s.recv(4096)
    if not chunk:
        sys.exit("handshake: connection closed")
    buf += chunk
head, buf = buf.split(b"\r\n\r\n", 1)
if b" 101 " not in head.split(b"\r\n")[0]:
    sys.exit("handshake: " + head.split(b"\r\n")[0].decode())

def send(obj, opcode=1):
    data = json.dumps(obj).encode() if opcode == 1 else obj
    mask = os.urandom(4)
    n = len(data)
    hdr = bytes([0x80 | opcode])
    hdr += bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack("!H", n)
    s.sendall(hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

def need(n):
    global buf
    while len(buf) < n:
        chunk = s.recv(65536)
        if not chunk:
            sys.exit("connection closed by the server")
        buf += chunk
    out, buf = buf[:n], buf[n:]
    return out

def messages():
    msg = b""
    while True:
        b0, b1 = need(2)
        n = b1 & 0x7f
        if n == 126: n = struct.unpack("!H", need(2))[0]
        elif n == 127: n = struct.unpack("!Q", need(8))[0]
        payload = need(n)
        op = b0 & 0x0f
        if op == 8:
            sys.exit("close frame: %r" % payload)
        if op == 9:
            send(payload, 10); continue
        if op in (1, 2, 0):
            msg += payload
            if b0 & 0x80:
                for line in msg.decode().split("\n"):
                    if line.strip():
                        yield json.loads(line)
                msg = b""

replies = messages()
send({"id": 1, "connect": {"token": hs256({"sub": "pkgtest", "exp": int(time.time()) + 600})}})
send({"id": 2, "subscribe": {"channel": channel}})
for r in replies:
    if r == {}:
        send({}); continue
    if "error" in r:
        sys.exit("error reply: %r" % r)
    if r.get("id") == 2:
        print("subscribed", flush=True)
    elif "push" in r and "pub" in r["push"]:
        print(json.dumps(r["push"]["pub"]["data"], sort_keys=True), flush=True)
        sys.exit(0)
EOF

notify_log=$tmp/notify.log
wait_for() {    # $1: seconds, $2: description, $3...: command that must succeed
	t=$1; what=$2; shift 2
	while ! "$@" >/dev/null 2>&1; do
		t=$((t - 1))
		[ $t -gt 0 ] || fail "timed out waiting for $what"
		[ -z "$daemon_pid" ] || kill -0 "$daemon_pid" 2>/dev/null ||
		    fail "the daemon exited while waiting for $what"
		sleep 1
	done
}
# Prints the number of the first notify log line matching $1 after line $2.
notify_line() {
	awk -v re="$1" -v after="$2" 'NR > after && $0 ~ re { print NR; exit }' "$notify_log"
}
has_notify() { [ -n "$(notify_line "$1" "${2:-0}")" ]; }

systemd=
if command -v systemctl >/dev/null 2>&1 &&
    systemctl is-system-running 2>/dev/null | grep -Eq 'running|degraded|starting'; then
	systemd=1
fi

if [ -n "$systemd" ]; then
	step "systemd is running: systemctl start $PKG (port $port)"
	mkdir -p /run/systemd/system/$PKG.service.d
	printf '[Service]\nEnvironment=CENTRIFUGO_HTTP_SERVER_PORT=%s CENTRIFUGO_WORKERS=2\n' \
	    "$port" >/run/systemd/system/$PKG.service.d/test.conf
	systemctl daemon-reload
	# Type=notify: start returns once READY=1 arrived.
	systemctl restart $PKG || { journalctl -u $PKG -n 40 --no-pager; fail "systemctl start"; }
	systemctl is-active --quiet $PKG || fail "$PKG not active"
	daemon_pid=$(systemctl show -p MainPID --value $PKG)
else
	step "no systemd: starting /usr/bin/centrifugo as centrifugo (port $port)"
	python3 "$tmp/notify-listener.py" "$tmp/notify.sock" "$notify_log" &
	listener_pid=$!
	chmod 0711 "$tmp"
	wait_for 10 "the notify listener" grep -q listening "$notify_log"
	# What RuntimeDirectory=centrifugo and RuntimeDirectoryMode=0750 make,
	# in a private place: /run/centrifugo may belong to another server
	# started by hand or by the integration tests.
	install -d -o centrifugo -g centrifugo -m 0750 "$tmp/run"
	ctl_socket=$tmp/run/centrifugo.sock
	setpriv --reuid=centrifugo --regid=centrifugo --init-groups --no-new-privs \
	    env NOTIFY_SOCKET="$tmp/notify.sock" CENTRIFUGO_HTTP_SERVER_PORT="$port" \
	    CENTRIFUGO_CTL_SOCKET="$ctl_socket" \
	    CENTRIFUGO_WORKERS=2 /usr/bin/centrifugo -c "$CONF" \
	    >"$tmp/daemon.log" 2>&1 &
	daemon_pid=$!
	wait_for 30 "READY=1 from the supervisor" has_notify '[ |]READY=1'
	ready=$(notify_line '[ |]READY=1' 0)
	line=$(sed -n "${ready}p" "$notify_log")
	echo "notify: $line"
	[ "${line%% *}" = "$daemon_pid" ] ||
	    fail "READY=1 came from pid ${line%% *}, not the main pid $daemon_pid"
	echo "$line" | grep -q "MAINPID=$daemon_pid" || fail "READY=1 without MAINPID=$daemon_pid"
	[ "$(stat -c %U /proc/$daemon_pid)" = centrifugo ] || fail "the daemon does not run as centrifugo"
fi
echo "daemon pid $daemon_pid"

step "GET /health"
curl -fsS "$base/health" >/dev/null || fail "GET /health"

step "centrifugo-ctl"
ctl_has_status=
if { /usr/bin/centrifugo-ctl --help; /usr/bin/centrifugo-ctl help; } 2>&1 |
    grep -qw status; then
	ctl_has_status=1
	/usr/bin/centrifugo-ctl ${ctl_socket:+-s "$ctl_socket"} status ||
	    fail "centrifugo-ctl status"
else
	echo "(centrifugo-ctl has no status command yet: checking version)"
	/usr/bin/centrifugo-ctl version || fail "centrifugo-ctl version"
fi

step "publish round trip: HTTP API -> WebSocket subscriber"
python3 "$tmp/ws-sub.py" "$port" pkgtest "$hmac" >"$tmp/sub.out" 2>"$tmp/sub.err" &
sub_pid=$!
wait_for 20 "the WebSocket subscription" grep -q subscribed "$tmp/sub.out"
code=$(curl -sS -o "$tmp/bad.out" -w '%{http_code}' -X POST -H 'X-API-Key: wrong' \
    -H 'Content-Type: application/json' -d '{"channel":"pkgtest","data":{}}' "$base/api/publish")
[ "$code" = 401 ] || fail "publish with a wrong API key answered $code, want 401"
curl -fsS -X POST -H "X-API-Key: $apikey" -H 'Content-Type: application/json' \
    -d '{"channel":"pkgtest","data":{"text":"from the package test"}}' \
    "$base/api/publish" >"$tmp/pub.out" || fail "POST /api/publish"
echo "publish reply: $(cat "$tmp/pub.out")"
grep -q '"error"' "$tmp/pub.out" && fail "publish answered an error"
if ! wait "$sub_pid"; then
	sub_pid=
	cat "$tmp/sub.err" >&2
	fail "the subscriber did not get the publication"
fi
sub_pid=
[ "$(tail -n 1 "$tmp/sub.out")" = '{"text": "from the package test"}' ] ||
    fail "the subscriber got $(tail -n 1 "$tmp/sub.out")"
echo "subscriber got: $(tail -n 1 "$tmp/sub.out")"

if [ -n "$systemd" ]; then
	step "systemctl reload / stop"
	systemctl reload $PKG || fail "systemctl reload"
	systemctl is-active --quiet $PKG || fail "$PKG not active after reload"
	systemctl stop $PKG || fail "systemctl stop"
	rm -rf /run/systemd/system/$PKG.service.d
	systemctl daemon-reload
	daemon_pid=
else
	step "SIGHUP: RELOADING=1 then READY=1"
	last=$(wc -l <"$notify_log")
	kill -HUP "$daemon_pid"
	wait_for 20 "RELOADING=1" has_notify '[ |]RELOADING=1' "$last"
	reloading=$(notify_line '[ |]RELOADING=1' "$last")
	wait_for 20 "READY=1 after RELOADING=1" has_notify '[ |]READY=1' "$reloading"
	curl -fsS "$base/health" >/dev/null || fail "GET /health after SIGHUP"
	if [ -n "$ctl_has_status" ]; then
		step "centrifugo-ctl reload: RELOADING=1 then READY=1"
		last=$(wc -l <"$notify_log")
		/usr/bin/centrifugo-ctl -s "$ctl_socket" reload || fail "centrifugo-ctl reload"
		wait_for 20 "RELOADING=1" has_notify '[ |]RELOADING=1' "$last"
		reloading=$(notify_line '[ |]RELOADING=1' "$last")
		wait_for 20 "READY=1 after RELOADING=1" has_notify '[ |]READY=1' "$reloading"
	fi

	step "SIGTERM: STOPPING=1 and a clean exit"
	kill -TERM "$daemon_pid"
	wait_for 20 "STOPPING=1" has_notify '[ |]STOPPING=1'
	status=0
	wait "$daemon_pid" || status=$?
	daemon_pid=
	[ $status -eq 0 ] || fail "the daemon exited with status $status after SIGTERM"
fi

# ---- purge ------------------------------------------------------------------

step "apt-get purge $PKG"
apt-get purge -y "$PKG" >"$tmp/purge.log" 2>&1 || { cat "$tmp/purge.log"; fail "apt-get purge"; }
installed=
if dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null | grep -q installed; then
	fail "$PKG still installed after purge"
fi
left=
while read -r f; do
	# Directories shared with other packages (/usr/bin, ...) stay.
	[ -e "$f" ] && [ ! -d "$f" ] && left="$left $f"
done <"$tmp/files"
[ -z "$left" ] || fail "left after purge:$left"
[ ! -e /etc/centrifugo ] || fail "/etc/centrifugo left after purge: $(ls -A /etc/centrifugo)"
[ ! -e /etc/systemd/system/multi-user.target.wants/$PKG.service ] ||
    fail "the unit's enablement symlink is left after purge"
echo "nothing left (the centrifugo system user stays, as Debian policy wants)"

step "package test passed"
