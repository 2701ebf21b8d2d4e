#!/usr/bin/env bash
# Install every Debian 12 package the build, tests, fuzzing, demo and benches need.
#
# Idempotent and quiet: when everything is already installed it changes nothing
# and does not even refresh the package lists. Runs as root (or through sudo).
set -euo pipefail

packages=(
	# build
	meson ninja-build pkg-config gcc git
	# libraries we link against
	libuv1-dev libnghttp2-dev libssl-dev
	libprotobuf-c-dev protobuf-c-compiler protobuf-compiler libprotobuf-dev
	libsqlite3-dev libpq-dev libjansson-dev libmicrohttpd-dev libcurl4-openssl-dev
	# unit tests
	libcmocka-dev
	# integration tests: a real gRPC client in Python (Debian's, not pip's)
	python3 python3-grpcio python3-protobuf python3-pytest python3-pytest-xdist protobuf-compiler-grpc
	# the metrics tests scrape both daemons with a real Prometheus
	prometheus
	# the status page test loads praefect's page in headless Chromium
	chromium
	# the PostgreSQL store's tests start a real PostgreSQL 15 (t/integration/pg_server.py)
	postgresql-15
	# fuzzing: clang with libFuzzer and the sanitizer runtimes
	clang libclang-rt-14-dev
	# benches and the demo: h2load/nghttp, nginx (its grpc_pass), hyperfine
	nghttp2-client nginx hyperfine procps
	# several praefects behind one balancer (t/integration/praefect/test_multi_praefect.py)
	haproxy
	# GPG signing keys and signed commits (t/integration/gitaly/test_commit_signer.py)
	gnupg
)

missing=()
for p in "${packages[@]}"; do
	status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
	[ "$status" = installed ] || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
	echo "deps: all ${#packages[@]} packages present"
	exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null || { echo "deps: run as root (missing: ${missing[*]})" >&2; exit 1; }
	sudo=(sudo)
fi

echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends \
	-o Dpkg::Use-Pty=0 -o Dpkg::Options::=--force-confold "${missing[@]}" >/dev/null
echo "deps: done"
