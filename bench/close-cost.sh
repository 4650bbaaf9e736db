#!/bin/bash
# bench/close-cost.sh - CPU a worker spends per closed connection, by the
# size of libwebsockets' descriptor table.  lws sizes that table from
# sysconf(_SC_OPEN_MAX) when the worker creates its context and scans it
# whole on every close (doc/BENCHMARKS.md, "Closing").  For each size given,
# a server with one worker is started with a preloaded shim
# (test/integration/lib/open_max_shim.c) that makes
# sysconf(_SC_OPEN_MAX) answer that size (so sizes above this machine's
# hard limit can be measured), centrifugo-bench opens N idle subscribed
# connections and exits, and the worker's CPU from the bench's RESULT line
# to 3 s after its exit, divided by N, is printed.
#
# usage: bench/close-cost.sh [-n connections] [table size...]
#   default: -n 5000, sizes 1048576 65536 20000
# Environment: CENTRIFUGO, BENCH (binaries), PORT (default 18650), CC;
#   KEEP=1 keeps the temporary directory (server log, shim).
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
CENTRIFUGO=${CENTRIFUGO:-$top/src/centrifugo}
BENCH=${BENCH:-$top/src/centrifugo-bench}
PORT=${PORT:-18650}
N=5000
while getopts n: o; do
	case $o in
	n) N=$OPTARG ;;
	*) echo "usage: $0 [-n connections] [table size...]" >&2; exit 1 ;;
	esac
done
shift $((OPTIND - 1))
SIZES=${*:-1048576 65536 20000}
for f in "$CENTRIFUGO" "$BENCH"; do
	[ -x "$f" ] || { echo "$0: $f not built (run make)" >&2; exit 1; }
done

tmp=$(mktemp -d)
srvpid=
cleanup() {
	[ -z "$srvpid" ] || { kill "$srvpid" 2>/dev/null; wait "$srvpid" 2>/dev/null; } || true
	[ -z "${KEEP:-}" ] && rm -rf "$tmp" || echo "kept $tmp" >&2
}
trap cleanup EXIT

${CC:-cc} -shared -fPIC -O2 -o "$tmp/shim.so" \
	"$top/test/integration/lib/open_max_shim.c" -ldl

cat > "$tmp/c.conf" <<CONF
http_server = { address = "127.0.0.1"; port = $PORT; };
workers = 1;
log = { level = "warn"; };
client = { allow_anonymous_connect_without_token = true;
           allowed_origins = ["*"]; };
channel = { without_namespace = { allow_subscribe_for_client = true;
                                  allow_subscribe_for_anonymous = true; }; };
CONF

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
for size in $SIZES; do
	LD_PRELOAD="$tmp/shim.so" OPEN_MAX_SHIM=$size \
		"$CENTRIFUGO" -c "$tmp/c.conf" >> "$tmp/log" 2>&1 &
	srvpid=$!
	w=
	for _ in $(seq 100); do
		w=$(pgrep -P "$srvpid" -f "centrifugo: worker 0" || true)
		[ -n "$w" ] && (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
		sleep 0.1
	done
	[ -n "$w" ] || { echo "$0: the server did not start; log:" >&2; cat "$tmp/log" >&2; exit 1; }
	cpu() { awk '{ print $1 }' "/proc/$w/schedstat"; }
	rm -f "$tmp/fifo"
	mkfifo "$tmp/fifo"
	"$BENCH" --url "ws://127.0.0.1:$PORT/connection/websocket" -n "$N" \
		--rate 2000 -c 10 --idle -t 2 -q > "$tmp/fifo" &
	bpid=$!
	c0=
	while read -r line; do
		case $line in RESULT*) c0=$(cpu); break ;; esac
	done < "$tmp/fifo"
	wait "$bpid" || true
	[ -n "$c0" ] || { echo "$0: no RESULT line from the bench" >&2; exit 1; }
	sleep 3
	c1=$(cpu)
	awk -v s="$size" -v n="$N" -v a="$c0" -v b="$c1" \
		'BEGIN { printf "table=%d conns=%d close_us_per_conn=%.1f\n", s, n, (b - a) / 1000 / n }'
	kill "$srvpid"
	wait "$srvpid" 2>/dev/null || true
	srvpid=
done
