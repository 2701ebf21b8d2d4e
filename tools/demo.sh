#!/usr/bin/env bash
# Build the project, start a local service on Unix sockets in a scratch
# directory, talk to it with a real gRPC client (Python grpcio), and stop it.
#
# usage: tools/demo.sh            (BUILD_DIR=build by default; KEEP=1 keeps
#                                  the scratch directory and its logs)
#
# Today the service is the gRPC core's test server; the same steps (build,
# start_service, wait for "listening", call, stop) will bring up three gitaly
# nodes behind praefect.
set -euo pipefail
cd "$(dirname "$0")/.."
build=$(realpath -m "${BUILD_DIR:-build}")
python=/usr/bin/python3   # Debian's, which has grpcio

work=$(mktemp -d /tmp/gitaly-demo.XXXXXX)
pids=()
names=()

cleanup() {
	local pid
	for pid in "${pids[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${pids[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	if [ "${KEEP:-0}" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() {
	printf '\n==> %s\n' "$*"
}

build_targets() {
	say "building ${build#"$PWD"/} ($*)"
	if [ ! -d "$build/meson-private" ]; then
		meson setup "$build" -Dbuildtype=debugoptimized >"$work/meson-setup.log" 2>&1 ||
			{ cat "$work/meson-setup.log"; exit 1; }
	fi
	ninja -C "$build" "$@" | tail -n 1
}

# start_service NAME N CMD...: run CMD in the background with its output in
# $work/NAME.{out,log}, and wait until it has printed N "listening <addr>"
# lines. Sets $addrs to the bound addresses.
start_service() {
	local name=$1 want=$2 i pid
	shift 2
	"$@" >"$work/$name.out" 2>"$work/$name.log" &
	pid=$!
	pids+=("$pid")
	names+=("$name")
	for i in $(seq 100); do
		if [ "$(grep -c '^listening ' "$work/$name.out" || true)" -ge "$want" ]; then
			addrs=$(sed -n 's/^listening //p' "$work/$name.out")
			echo "$name (pid $pid) listening on ${addrs//$'\n'/ }"
			return 0
		fi
		if ! kill -0 "$pid" 2>/dev/null; then
			echo "$name exited before listening:" >&2
			cat "$work/$name.log" >&2
			exit 1
		fi
		sleep 0.1
	done
	echo "$name did not start listening in 10s:" >&2
	cat "$work/$name.log" >&2
	exit 1
}

# stop_services: SIGTERM each service and check it shut down cleanly.
stop_services() {
	local i rc
	for i in "${!pids[@]}"; do
		kill -TERM "${pids[$i]}"
		rc=0
		wait "${pids[$i]}" || rc=$?
		echo "${names[$i]} stopped (exit $rc)"
		[ "$rc" -eq 0 ] || { cat "$work/${names[$i]}.log" >&2; exit 1; }
	done
	pids=()
}

# Python stubs for the protos the client needs, generated into the scratch dir.
gen_python() {
	mkdir -p "$work/py"
	protoc --proto_path=proto --proto_path=t/integration --python_out="$work/py" \
		health.proto testsvc.proto
}

# call_service ADDR: a health check and a unary echo through grpcio.
call_service() {
	PYTHONPATH="$work/py" PYTHONDONTWRITEBYTECODE=1 "$python" - "$1" <<-'EOF'
		import sys, grpc
		import health_pb2, testsvc_pb2
		target = sys.argv[1]
		with grpc.insecure_channel(target) as ch:
		    check = ch.unary_unary('/grpc.health.v1.Health/Check',
		        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
		        response_deserializer=health_pb2.HealthCheckResponse.FromString)
		    resp = check(health_pb2.HealthCheckRequest(), timeout=5)
		    status = health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
		    print(f"health check on {target}: {status}")
		    unary = ch.unary_unary('/testsvc.Test/Unary',
		        request_serializer=testsvc_pb2.UnaryRequest.SerializeToString,
		        response_deserializer=testsvc_pb2.UnaryResponse.FromString)
		    payload = b'hello from tools/demo.sh'
		    echo = unary(testsvc_pb2.UnaryRequest(payload=payload), timeout=5)
		    print(f"unary echo: {echo.payload.decode()!r}")
		    sys.exit(0 if status == 'SERVING' and echo.payload == payload else 1)
	EOF
}

build_targets t/integration/grpc-testserver
gen_python

say "starting the test server"
start_service testserver 1 "$build/t/integration/grpc-testserver" "unix:$work/test.sock"
server_addr=$addrs

say "calling it"
call_service "$server_addr"

say "stopping"
stop_services
say "demo finished"
