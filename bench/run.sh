#!/bin/bash
# bench/run.sh - run the standard shapes (doc/BENCHMARKS.md) with
# centrifugo-bench against our server, against nginx + nchan and against the
# floor server (src/bench/floor-server.c: the least any server can do for
# the same exchanges), on loopback ports, with configurations generated in a
# temporary directory, and write the results table into doc/BENCHMARKS.md.
#
# usage: bench/run.sh [-t seconds] [-o file] [shape...]
#   shapes: light idle burst slow light1w trickle trickle1w light.pb
#       burst.pb (default: all); SHAPE1w runs our server only, with one
#       worker; trickle is IDLE's connect phase at 250 connections/s;
#       SHAPE.pb runs our server only, with the Protobuf client protocol;
#       SHAPE/DELAY (e.g. burst/20ms) runs our server only, with
#       client.write_delay = DELAY
#   -t  seconds of publishing per run (default 15)
#   -o  Markdown file whose results section is replaced (default
#       doc/BENCHMARKS.md; "-" prints the table only)
# Environment: CENTRIFUGO (server binary, default src/centrifugo),
#   BENCH (default src/centrifugo-bench), FLOOR (default src/floor-server),
#   NGINX (default nginx), PORT (default 18600; nginx uses PORT+100, the
#   floor server PORT+200), NO_NCHAN=1 to skip nchan, NO_FLOOR=1 to skip
#   the floor server.
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
CENTRIFUGO=${CENTRIFUGO:-$top/src/centrifugo}
BENCH=${BENCH:-$top/src/centrifugo-bench}
FLOOR=${FLOOR:-$top/src/floor-server}
NGINX=${NGINX:-nginx}
PORT=${PORT:-18600}
NPORT=$((PORT + 100))
FPORT=$((PORT + 200))
SECS=15
OUT=doc/BENCHMARKS.md

while getopts t:o: o; do
	case $o in
	t) SECS=$OPTARG ;;
	o) OUT=$OPTARG ;;
	*) echo "usage: $0 [-t seconds] [-o file] [shape...]" >&2; exit 1 ;;
	esac
done
shift $((OPTIND - 1))
SHAPES=${*:-light idle burst slow light1w trickle trickle1w light.pb burst.pb}

for f in "$CENTRIFUGO" "$BENCH" "$FLOOR"; do
	[ -x "$f" ] || { echo "$0: $f not built (run make)" >&2; exit 1; }
done
NCHAN_MOD=/usr/lib/nginx/modules/ngx_nchan_module.so
if [ "${NO_NCHAN:-0}" != 1 ] && { ! command -v "$NGINX" >/dev/null || [ ! -f $NCHAN_MOD ]; }; then
	echo "$0: nginx or $NCHAN_MOD missing (apt-get install nginx-light libnginx-mod-nchan), skipping nchan" >&2
	NO_NCHAN=1
fi

# 10,000 connections need 10,000+ descriptors on both sides.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)

tmp=$(mktemp -d /tmp/cf-bench.XXXXXX)
srvpid=
cleanup() {
	if [ -n "$srvpid" ]; then
		kill "$srvpid" 2>/dev/null || true
		wait "$srvpid" 2>/dev/null || true
	fi
	srvpid=
}
trap 'cleanup; rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

wait_port() { # port
	i=0
	while ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
		i=$((i + 1))
		[ $i -lt 100 ] || { echo "$0: nothing listens on port $1" >&2; return 1; }
		sleep 0.1
	done
}

start_centrifugo() { # workers [write_delay]
	cat > "$tmp/centrifugo.conf" <<CONF
http_server = { address = "127.0.0.1"; port = $PORT; };
workers = $1;
log = { level = "warn"; };
client = { allow_anonymous_connect_without_token = true;
           token = { hmac_secret_key = "secret"; };
           allowed_origins = ["*"]; queue_max_size = 1048576;
           write_delay = "${2:-0}"; };
http_api = { key = "key"; };
channel = { without_namespace = { allow_subscribe_for_client = true;
                                  allow_subscribe_for_anonymous = true; }; };
CONF
	"$CENTRIFUGO" -c "$tmp/centrifugo.conf" >> "$tmp/centrifugo.log" 2>&1 &
	srvpid=$!
	wait_port $PORT
}

start_nchan() {
	mkdir -p "$tmp/nginx"
	cat > "$tmp/nginx/nginx.conf" <<CONF
load_module $NCHAN_MOD;
worker_processes 2;
worker_rlimit_nofile $NOFILE;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
daemon off;
events { worker_connections $NOFILE; use epoll; multi_accept on; }
http {
  access_log off;
  client_body_temp_path $tmp/nginx/body;
  proxy_temp_path $tmp/nginx/proxy;
  fastcgi_temp_path $tmp/nginx/fastcgi;
  uwsgi_temp_path $tmp/nginx/uwsgi;
  scgi_temp_path $tmp/nginx/scgi;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$NPORT backlog=4096;
    location ~ ^/sub/(\w+)\$ { nchan_subscriber websocket; nchan_channel_id \$1; }
    location ~ ^/pub/(\w+)\$ { nchan_publisher; nchan_channel_id \$1; }
  }
}
CONF
	"$NGINX" -c "$tmp/nginx/nginx.conf" -p "$tmp/nginx" >> "$tmp/nginx/out.log" 2>&1 &
	srvpid=$!
	wait_port $NPORT
}

start_floor() {
	"$FLOOR" $FPORT >> "$tmp/floor.log" 2>&1 &
	srvpid=$!
	wait_port $FPORT
}

shape_args() { # shape -> bench arguments (without target)
	case ${1%%[/.]*} in
	light | light1w) echo "-n 5000 --rate 2000 -c 50 -p 250 -t $SECS" ;;
	idle) echo "-n 10000 --rate 2000 -c 100 --idle -t $SECS" ;;
	trickle | trickle1w) echo "-n 2000 --rate 250 -c 100 --idle -t 1" ;;
	burst) echo "-n 200 --rate 1000 -c 1 -p 400 -t $SECS" ;;
	slow) echo "-n 200 --rate 1000 -c 1 -p 200 --payload-size 2048 --slow-readers 20 -t $SECS" ;;
	*) echo "$0: unknown shape $1" >&2; exit 1 ;;
	esac
}

results="$tmp/results"
: > "$results"

run() { # shape[/write_delay | .pb] target
	args=$(shape_args "$1")
	wd=
	case $1 in */*) wd=${1#*/} ;; esac
	case $1 in *.pb) args="--format protobuf $args" ;; esac
	if [ "$2" = centrifugo ]; then
		w=2
		case ${1%%/*} in *1w) w=1 ;; esac
		start_centrifugo $w "$wd"
		cmd="centrifugo-bench --url ws://127.0.0.1:$PORT/connection/websocket --api-key key $args --pid $srvpid"
	elif [ "$2" = floor ]; then
		start_floor
		cmd="centrifugo-bench --url ws://127.0.0.1:$FPORT/connection/websocket $args --pid $srvpid"
	else
		start_nchan
		cmd="centrifugo-bench --nchan --url ws://127.0.0.1:$NPORT/sub/ --api-url http://127.0.0.1:$NPORT/pub/ $args --pid $srvpid"
	fi
	sleep 1
	echo "== $1 / $2: $cmd" >&2
	# shellcheck disable=SC2086
	line=$("$BENCH" ${cmd#centrifugo-bench } | grep '^RESULT ' || true)
	cleanup
	sleep 2
	[ -n "$line" ] || line="RESULT failed=1"
	echo "$1|$2|$cmd|$line" >> "$results"
	echo "$line" >&2
}

for s in $SHAPES; do
	shape_args "$s" > /dev/null
	run "$s" centrifugo
	case $s in *1w | slow | */* | *.pb) continue ;; esac
	[ "${NO_NCHAN:-0}" = 1 ] || run "$s" nchan
	[ "${NO_FLOOR:-0}" = 1 ] || run "$s" floor
done

kv() { # key line
	echo "$2" | tr ' ' '\n' | sed -n "s/^$1=//p" | head -1
}

table="$tmp/table.md"
{
	echo "Run $(date -u '+%Y-%m-%d %H:%M UTC') on $(nproc) cores, $(uname -sr), ${SECS} s per run, by \`bench/run.sh\`."
	echo
	echo "| shape | server | subscribed / failed | delivered / expected | lost | reord. | p50 ms | p99 ms | p99.9 ms | max ms | RSS B/conn | PSS B/conn | CPU µs/connect | CPU µs/msg | CPU µs/conn/s | slow cut |"
	echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
	while IFS='|' read -r shape target cmd line; do
		ms() { v=$(kv "$1" "$line"); [ -n "$v" ] && awk "BEGIN{printf \"%.2f\", $v/1000}" || echo -; }
		if [ "$(kv mode "$line")" = idle ]; then
			lat="- | - | - | -"; msg="-"; cs=$(kv cpu_us_per_conn_s "$line")
			del="-"
		else
			lat="$(ms lat_p50_us) | $(ms lat_p99_us) | $(ms lat_p999_us) | $(ms lat_max_us)"
			msg=$(kv cpu_us_per_msg "$line"); cs="-"
			del="$(kv delivered "$line") / $(kv expected "$line")"
		fi
		slow=-
		[ "$(kv mode "$line")" = slow ] && slow="$(kv slow_cut "$line") / $(kv slow "$line")"
		echo "| $shape | $target | $(kv subscribed "$line") / $(kv conn_failed "$line") | $del | $(kv lost "$line") | $(kv reordered "$line") | $lat | $(kv bytes_per_conn "$line") | $(kv pss_bytes_per_conn "$line") | $(kv cpu_us_per_conn "$line") | $msg | $cs | $slow |"
	done < "$results"
	echo
	echo "Commands (\`--pid\` is the server's supervisor / nginx master of that run):"
	echo
	echo '```'
	while IFS='|' read -r shape target cmd line; do
		case $shape in
		*/*) echo "# ${shape%%/*}, $target with client.write_delay = \"${shape#*/}\"" ;;
		*) echo "# $shape, $target" ;;
		esac
		echo "$cmd"
	done < "$results"
	echo '```'
	echo
	echo "Raw result lines:"
	echo
	echo '```'
	while IFS='|' read -r shape target cmd line; do
		echo "$line"
	done < "$results"
	echo '```'
} > "$table"

if [ "$OUT" = - ]; then
	cat "$table"
	exit 0
fi
[ -f "$OUT" ] || printf '# Benchmarks\n\n<!-- BEGIN RESULTS -->\n<!-- END RESULTS -->\n' > "$OUT"
grep -q '^<!-- BEGIN RESULTS -->' "$OUT" ||
	printf '\n<!-- BEGIN RESULTS -->\n<!-- END RESULTS -->\n' >> "$OUT"
awk -v tf="$table" '
	/^<!-- BEGIN RESULTS -->/ { print; while ((getline l < tf) > 0) print l; skip = 1; next }
	/^<!-- END RESULTS -->/ { skip = 0 }
	!skip { print }
' "$OUT" > "$tmp/out.md"
cat "$tmp/out.md" > "$OUT"
echo "$0: results written to $OUT" >&2
