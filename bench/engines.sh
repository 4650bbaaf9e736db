#!/bin/bash
# bench/engines.sh - what the Redis engine costs: the same publish shape
# against one node with the memory engine, one with the Redis engine (a
# redis-server started here on a loopback port) and one with the Redis
# engine over TLS (the same redis-server's TLS port, certificates made here
# with openssl), 2 workers each.  Prints the RESULT lines and the CPU
# redis-server spent.
#
# usage: bench/engines.sh [-t seconds]
# Environment: CENTRIFUGO, BENCH (binaries), PORT (default 18700;
#   redis-server uses PORT+1 and PORT+2 for TLS), REDIS_SERVER (default
#   redis-server).
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
CENTRIFUGO=${CENTRIFUGO:-$top/src/centrifugo}
BENCH=${BENCH:-$top/src/centrifugo-bench}
REDIS_SERVER=${REDIS_SERVER:-redis-server}
PORT=${PORT:-18700}
RPORT=$((PORT + 1))
TPORT=$((PORT + 2))
SECS=10
while getopts t: o; do
	case $o in
	t) SECS=$OPTARG ;;
	*) echo "usage: $0 [-t seconds]" >&2; exit 1 ;;
	esac
done
command -v "$REDIS_SERVER" >/dev/null || { echo "$0: $REDIS_SERVER not found (apt-get install redis-server)" >&2; exit 1; }

tmp=$(mktemp -d /tmp/cf-engines.XXXXXX)
srv= redis=
cleanup() {
	[ -n "$srv" ] && { kill "$srv" 2>/dev/null || true; wait "$srv" 2>/dev/null || true; }
	[ -n "$redis" ] && { kill "$redis" 2>/dev/null || true; wait "$redis" 2>/dev/null || true; }
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A CA and a certificate for 127.0.0.1, for the TLS port.
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tmp/ca.key" -out "$tmp/ca.crt" \
    -days 1 -subj "/CN=bench CA" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout "$tmp/redis.key" -out "$tmp/redis.csr" \
    -subj "/CN=127.0.0.1" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' > "$tmp/ext.cnf"
openssl x509 -req -in "$tmp/redis.csr" -CA "$tmp/ca.crt" -CAkey "$tmp/ca.key" -CAcreateserial \
    -out "$tmp/redis.crt" -days 1 -extfile "$tmp/ext.cnf" 2>/dev/null

"$REDIS_SERVER" --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp" \
    --tls-port "$TPORT" --tls-cert-file "$tmp/redis.crt" --tls-key-file "$tmp/redis.key" \
    --tls-ca-cert-file "$tmp/ca.crt" --tls-auth-clients no --logfile "$tmp/redis.log" &
redis=$!
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

for engine in memory redis redis-tls; do
	case $engine in
	memory) type=memory addr="127.0.0.1:$RPORT" ;;
	redis) type=redis addr="127.0.0.1:$RPORT" ;;
	redis-tls) type=redis addr="rediss://127.0.0.1:$TPORT" ;;
	esac
	cat > "$tmp/$engine.conf" <<CONF
http_server = { port = $PORT; };
workers = 2;
ctl = { socket = "$tmp/$engine.sock"; };
http_api = { key = "bench"; };
client = { insecure = true; };
log = { level = "warn"; };
engine = { type = "$type"; redis = { address = "$addr"; prefix = "bench";
           tls = { server_ca_pem = "$tmp/ca.crt"; }; }; };
CONF
	"$CENTRIFUGO" -c "$tmp/$engine.conf" 2> "$tmp/$engine.log" &
	srv=$!
	for _ in $(seq 50); do
		curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
		sleep 0.1
	done
	r0=$(ticks "$redis")
	echo "# $engine engine: $BENCH -q -n 2000 -c 20 -p 200 -t $SECS --pid $srv"
	"$BENCH" -q --url "ws://127.0.0.1:$PORT/connection/websocket" --api-key bench \
	    -n 2000 -c 20 -p 200 -t "$SECS" --pid "$srv" | tail -n 1
	r1=$(ticks "$redis")
	echo "# redis-server CPU during the $engine run: $(( (r1 - r0) * 1000 / $(getconf CLK_TCK) )) ms"
	kill "$srv"
	wait "$srv" 2>/dev/null || true
	srv=
done
