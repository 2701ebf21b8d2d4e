#!/usr/bin/env bash
# Unary gRPC calls per second against the test server's echo, directly and
# through Debian's nginx (grpc_pass), multiplexed and sequential. See README.md.
#
# usage: bench/grpc-unary.sh      env: BENCH_SECONDS (default 5 per run),
#                                      PAYLOAD (request payload bytes, default 16),
#                                      BUILD_DIR (default build-bench), KEEP=1
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

secs=${BENCH_SECONDS:-5}
payload=${PAYLOAD:-16}
build=$(realpath -m "${BUILD_DIR:-build-bench}")
method=/testsvc.Test/Unary

# name|h2load arguments: add a line to measure another load shape.
loads=(
	"8 conns x 16 streams|-c 8 -m 16"
	"64 conns x 1 stream|-c 64 -m 1"
	"1 conn, sequential|-c 1 -m 1"
)

work=$(mktemp -d /tmp/bench-grpc-unary.XXXXXX)
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

echo "building grpc-testserver in $build (release)"
bench_build "$build" t/integration/grpc-testserver

# The request body: one gRPC frame (uncompressed, 4-byte big-endian length)
# holding testsvc.UnaryRequest { payload = PAYLOAD bytes }, encoded by hand.
/usr/bin/python3 - "$payload" "$work/request.bin" <<'EOF'
import struct, sys
n = int(sys.argv[1])
def varint(v):
    out = b''
    while True:
        b, v = v & 0x7f, v >> 7
        out += bytes([b | (0x80 if v else 0)])
        if not v:
            return out
msg = b'\x0a' + varint(n) + b'x' * n if n else b''
open(sys.argv[2], 'wb').write(b'\x00' + struct.pack('>I', len(msg)) + msg)
EOF

bench_start testserver "$build/t/integration/grpc-testserver" 127.0.0.1:0
direct=$bench_addr
bench_nginx_grpc "$direct"
proxied=$bench_addr

for target in "$direct" "$proxied"; do
	bench_grpc_check "http://$target$method" "$work/request.bin"
done
echo "server on $direct, nginx on $proxied; both answer grpc-status 0"
echo "each run: ${secs}s after 1s warm-up, h2load with 1 thread, payload ${payload} bytes"
echo

printf '%-24s %14s %14s %13s\n' "load" "direct calls/s" "nginx calls/s" "nginx/direct"
warn=
for load in "${loads[@]}"; do
	name=${load%%|*}
	read -ra args <<<"${load#*|}"
	out=$(bench_h2load "http://$direct$method" "$work/request.bin" "$secs" "${args[@]}")
	read -r d_rate d_ok d_failed <<<"$out"
	out=$(bench_h2load "http://$proxied$method" "$work/request.bin" "$secs" "${args[@]}")
	read -r n_rate n_ok n_failed <<<"$out"
	ratio=$(awk -v d="$d_rate" -v n="$n_rate" 'BEGIN { if (d > 0) printf "%.2f", n / d; else print "-" }')
	printf '%-24s %14.0f %14.0f %13s\n' "$name" "$d_rate" "$n_rate" "$ratio"
	[ "$d_failed" = 0 ] && [ "$n_failed" = 0 ] || warn="$warn
  $name: failed calls: direct $d_failed (of $((d_ok + d_failed))), nginx $n_failed (of $((n_ok + n_failed)))"
done
if [ -n "$warn" ]; then
	echo "warning: some calls failed:$warn"
	exit 1
fi
