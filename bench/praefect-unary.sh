#!/usr/bin/env bash
# Unary accessor calls (RefService/FindDefaultBranchName): straight to one
# gitaly, through praefect (three gitaly nodes behind it), and through nginx
# grpc_pass in front of the same gitaly. One run, ratios printed. See README.md.
#
# usage: bench/praefect-unary.sh   env: BENCH_SECONDS (default 5), BUILD_DIR (build-bench), KEEP=1
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

secs=${BENCH_SECONDS:-5}
build=$(realpath -m "${BUILD_DIR:-build-bench}")
work=$(mktemp -d /tmp/bench-praefect.XXXXXX)
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

echo "building in $build (release)"
bench_build "$build" gitaly/gitaly praefect/praefect gitaly-ssh/gitaly-ssh gitaly-hooks/gitaly-hooks bench/unary-load
mkdir -p "$work/bin"
ln -s "$build/gitaly-hooks/gitaly-hooks" "$build/gitaly-ssh/gitaly-ssh" "$work/bin/"

# Three nodes on free TCP ports (addr[NAME]), praefect in front of them.
declare -A addr
nodes=()
for n in gitaly-1 gitaly-2 gitaly-3; do
	addr[$n]="127.0.0.1:$(bench_free_port)"
	bench_gitaly $n "listen_addr = \"${addr[$n]}\""
	nodes+=("$n=tcp://${addr[$n]}")
done
pport=$(bench_free_port)
bench_praefect_config "listen_addr = \"127.0.0.1:$pport\"" "${nodes[@]}"
sleep 0.5
"$build/praefect/praefect" -config "$work/praefect.toml" >"$work/praefect.log" 2>&1 &
bench_pids+=($!)
for i in $(seq 100); do grep -q "listening on" "$work/praefect.log" && break; sleep 0.1; done

# Create the repository through praefect, wait until all replicas are in sync,
# and write the two request bodies (virtual path for praefect, replica path for gitaly).
/usr/bin/python3 - "$work" "127.0.0.1:$pport" <<'PY'
import os, sys, time
sys.path.insert(0, "t/integration/gitaly")
from gitaly_itest import pb, pb_grpc, auth_md
import grpc
work, target = sys.argv[1], sys.argv[2]
ch = grpc.insecure_channel(target)
md = auth_md("praefect")
repo = pb("shared").Repository(storage_name="default", relative_path="bench/project.git")
pb_grpc("repository").RepositoryServiceStub(ch).CreateRepository(
    pb("repository").CreateRepositoryRequest(repository=repo), metadata=md, timeout=30)
info = pb_grpc("praefect").PraefectInfoServiceStub(ch)
q = pb("praefect").GetRepositoryMetadataRequest(path=pb("praefect").GetRepositoryMetadataRequest.Path(
    virtual_storage="default", relative_path="bench/project.git"))
for _ in range(300):
    m = info.GetRepositoryMetadata(q, metadata=md)
    if len(m.replicas) == 3 and all(r.generation == m.generation for r in m.replicas):
        break
    time.sleep(0.1)
else:
    sys.exit("replicas did not get in sync")
req = pb("ref").FindDefaultBranchNameRequest
open(os.path.join(work, "via-praefect.bin"), "wb").write(req(repository=repo).SerializeToString())
direct = pb("shared").Repository(storage_name=m.primary, relative_path=m.replica_path)
open(os.path.join(work, "direct.bin"), "wb").write(req(repository=direct).SerializeToString())
open(os.path.join(work, "primary"), "w").write(m.primary)
PY
primary=$(cat "$work/primary")
bench_nginx_grpc "${addr[$primary]}"
nginx=$bench_addr
method=/gitaly.RefService/FindDefaultBranchName

echo "gitaly $primary on ${addr[$primary]}, praefect on 127.0.0.1:$pport, nginx on $nginx"
echo "each run: ${secs}s, one HTTP/2 connection from bench/unary-load (C client)"
echo
printf '%-14s %-10s %10s %9s %9s %8s\n' "concurrency" "path" "calls/s" "p50 us" "p99 us" "vs direct"
for c in 1 16; do
	read -r d_rate d_p50 d_p99 d_err < <("$build/bench/unary-load" "tcp://${addr[$primary]}" $method "$work/direct.bin" "$secs" $c node)
	read -r p_rate p_p50 p_p99 p_err < <("$build/bench/unary-load" "tcp://127.0.0.1:$pport" $method "$work/via-praefect.bin" "$secs" $c praefect)
	read -r n_rate n_p50 n_p99 n_err < <("$build/bench/unary-load" "tcp://$nginx" $method "$work/direct.bin" "$secs" $c node)
	for row in "direct $d_rate $d_p50 $d_p99 $d_err" "praefect $p_rate $p_p50 $p_p99 $p_err" "nginx $n_rate $n_p50 $n_p99 $n_err"; do
		read -r name rate p50 p99 err <<<"$row"
		ratio=$(awk -v d="$d_rate" -v r="$rate" 'BEGIN { printf "%.2f", (d > 0 ? r / d : 0) }')
		printf '%-14s %-10s %10s %9s %9s %8s\n' "$c" "$name" "$rate" "$p50" "$p99" "$ratio"
		[ "$err" = 0 ] || echo "  ($err failed calls)"
	done
done
