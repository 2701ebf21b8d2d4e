#!/usr/bin/env bash
# Cheap unary reads (CommitService/FindCommit on a pushed commit,
# RefService/RefExists, RefService/FindBranch, and FindDefaultBranchName for
# reference) straight to one gitaly, through praefect (three gitaly nodes
# behind it) and through nginx grpc_pass in front of the same gitaly, at
# concurrency 1, 16 and 64. One run, ratios printed. See README.md.
#
# usage: bench/cheap-unary.sh   env: BENCH_SECONDS (default 3), BUILD_DIR (build-bench),
#                                    CONCURRENCY ("1 16 64"), RPCS (all), KEEP=1,
#                                    COST_SECONDS (default 2; 0 skips the cost lines)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

secs=${BENCH_SECONDS:-3}
build=$(realpath -m "${BUILD_DIR:-build-bench}")
concurrency=${CONCURRENCY:-1 16 64}
rpcs=${RPCS:-FindCommit RefExists FindBranch FindDefaultBranchName}
work=$(mktemp -d /tmp/bench-cheap.XXXXXX)
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

echo "building in $build (release)"
bench_build "$build" gitaly/gitaly praefect/praefect gitaly-ssh/gitaly-ssh gitaly-hooks/gitaly-hooks bench/unary-load
mkdir -p "$work/bin"
ln -s "$build/gitaly-hooks/gitaly-hooks" "$build/gitaly-ssh/gitaly-ssh" "$work/bin/"

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
praefect_pid=$!
for i in $(seq 100); do grep -q "listening on" "$work/praefect.log" && break; sleep 0.1; done

# Create the repository through praefect, push one commit to it with git over
# gitaly-ssh (so all three replicas vote and get it), wait until the replicas
# agree, and write one request body per RPC and path.
/usr/bin/python3 - "$work" "127.0.0.1:$pport" "$build" <<'PY'
import json, os, subprocess, sys, time
sys.path.insert(0, "t/integration/gitaly")
from gitaly_itest import pb, pb_grpc, auth_md, git
import grpc
work, target, build = sys.argv[1:4]
ch = grpc.insecure_channel(target)
md = auth_md("praefect")
rel = "bench/project.git"
repo = pb("shared").Repository(storage_name="default", relative_path=rel)
pb_grpc("repository").RepositoryServiceStub(ch).CreateRepository(
    pb("repository").CreateRepositoryRequest(repository=repo), metadata=md, timeout=30)
src = os.path.join(work, "src")
git("init", "-q", "-b", "main", src)
with open(os.path.join(src, "README.md"), "w") as f:
    f.write("hello\n")
git("add", "-A", cwd=src)
git("commit", "-q", "-m", "pushed commit", cwd=src)
oid = git("rev-parse", "HEAD", cwd=src).strip()
payload = {"repository": {"storageName": "default", "relativePath": rel, "glRepository": "project-1"},
           "glId": "user-1", "glRepository": "project-1"}
env = dict(os.environ, GIT_SSH_COMMAND=os.path.join(build, "gitaly-ssh", "gitaly-ssh") + " receive-pack",
           GIT_SSH_VARIANT="simple", GITALY_PAYLOAD=json.dumps(payload),
           GITALY_ADDRESS="tcp://" + target, GITALY_TOKEN="praefect")
subprocess.run(["git", "push", "-q", "ssh://gitaly/x.git", "main"], cwd=src, env=env, check=True)
info = pb_grpc("praefect").PraefectInfoServiceStub(ch)
q = pb("praefect").GetRepositoryMetadataRequest(path=pb("praefect").GetRepositoryMetadataRequest.Path(
    virtual_storage="default", relative_path=rel))
for _ in range(300):
    m = info.GetRepositoryMetadata(q, metadata=md)
    if len(m.replicas) == 3 and all(r.generation == m.generation for r in m.replicas):
        break
    time.sleep(0.1)
else:
    sys.exit("replicas did not get in sync")
direct = pb("shared").Repository(storage_name=m.primary, relative_path=m.replica_path)
reqs = {
    "FindCommit": lambda r: pb("commit").FindCommitRequest(repository=r, revision=oid.encode()),
    "RefExists": lambda r: pb("ref").RefExistsRequest(repository=r, ref=b"refs/heads/main"),
    "FindBranch": lambda r: pb("ref").FindBranchRequest(repository=r, name=b"main"),
    "FindDefaultBranchName": lambda r: pb("ref").FindDefaultBranchNameRequest(repository=r),
}
# every body answers on both paths before anything is measured
stubs = {"FindCommit": pb_grpc("commit").CommitServiceStub(ch), "RefExists": pb_grpc("ref").RefServiceStub(ch),
         "FindBranch": pb_grpc("ref").RefServiceStub(ch), "FindDefaultBranchName": pb_grpc("ref").RefServiceStub(ch)}
got = stubs["FindCommit"].FindCommit(reqs["FindCommit"](repo), metadata=md)
assert got.commit.id == oid, got
assert stubs["RefExists"].RefExists(reqs["RefExists"](repo), metadata=md).value
assert stubs["FindBranch"].FindBranch(reqs["FindBranch"](repo), metadata=md).branch.target_commit.id == oid
for name, make in reqs.items():
    open(os.path.join(work, name + ".praefect.bin"), "wb").write(make(repo).SerializeToString())
    open(os.path.join(work, name + ".direct.bin"), "wb").write(make(direct).SerializeToString())
open(os.path.join(work, "primary"), "w").write(m.primary)
PY
primary=$(cat "$work/primary")
bench_nginx_grpc "${addr[$primary]}"
nginx=$bench_addr
declare -A service=([FindCommit]=CommitService [RefExists]=RefService [FindBranch]=RefService [FindDefaultBranchName]=RefService)

echo "gitaly $primary on ${addr[$primary]}, praefect on 127.0.0.1:$pport, nginx on $nginx"
echo "each run: ${secs}s, one HTTP/2 connection from bench/unary-load (C client); load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo
printf '%-22s %5s %-9s %9s %8s %8s %9s %9s\n' "rpc" "conc" "path" "calls/s" "p50 us" "p99 us" "vs direct" "+p50 us"
failed=0
for rpc in $rpcs; do
	method=/gitaly.${service[$rpc]}/$rpc
	for c in $concurrency; do
		read -r d_rate d_p50 d_p99 d_err < <("$build/bench/unary-load" "tcp://${addr[$primary]}" "$method" "$work/$rpc.direct.bin" "$secs" "$c" node)
		read -r p_rate p_p50 p_p99 p_err < <("$build/bench/unary-load" "tcp://127.0.0.1:$pport" "$method" "$work/$rpc.praefect.bin" "$secs" "$c" praefect)
		read -r n_rate n_p50 n_p99 n_err < <("$build/bench/unary-load" "tcp://$nginx" "$method" "$work/$rpc.direct.bin" "$secs" "$c" node)
		for row in "direct $d_rate $d_p50 $d_p99 $d_err" "praefect $p_rate $p_p50 $p_p99 $p_err" "nginx $n_rate $n_p50 $n_p99 $n_err"; do
			read -r name rate p50 p99 err <<<"$row"
			ratio=$(awk -v d="$d_rate" -v r="$rate" 'BEGIN { printf "%.2f", (d > 0 ? r / d : 0) }')
			added=$(awk -v d="$d_p50" -v p="$p50" 'BEGIN { printf "%+d", p - d }')
			printf '%-22s %5s %-9s %9s %8s %8s %9s %9s\n' "$rpc" "$c" "$name" "$rate" "$p50" "$p99" "$ratio" "$added"
			[ "$err" = 0 ] || { echo "  ($err failed calls)"; failed=1; }
		done
	done
done

# Cost per call, which load on the machine changes less than rates: CPU time
# of praefect and of the primary from /proc/PID/task/*/schedstat (ns on CPU)
# over a FindCommit run at concurrency 1, direct and through praefect; then
# praefect's system calls under `strace -c -f` (strace slows it; the count
# per call is what matters). Each is measured once more over the same time
# with no calls and that background (health checks, store writes) is
# subtracted before dividing by the calls.
cost_secs=${COST_SECONDS:-2}
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%d", s }'; }
cost_run() { # TARGET BODY SECRET -> sets calls
	local rate rest
	read -r rate rest < <("$build/bench/unary-load" "$1" /gitaly.CommitService/FindCommit "$2" "$cost_secs" 1 "$3")
	calls=$(awk -v r="$rate" -v s="$cost_secs" 'BEGIN { printf "%d", r * s }')
}
strace_counts() { # OUT CMD...: praefect's syscall counts while CMD runs, "name count" lines
	local out=$1 spid
	shift
	strace -c -f -p "$praefect_pid" -o "$out.raw" 2>/dev/null &
	spid=$!
	sleep 0.5
	"$@"
	kill -INT "$spid"
	wait "$spid" 2>/dev/null || true
	# rows: % time, seconds, usecs/call, calls, [errors], syscall
	awk '$1 ~ /^[0-9.]+$/ && $NF != "total" { print $NF, $4 }' "$out.raw" >"$out"
}
if [ "$cost_secs" != 0 ] && [[ " $rpcs " == *" FindCommit "* ]]; then
	gpid=${bench_gitaly_pid[$primary]}
	echo
	p0=$(cpu_ns "$praefect_pid") g0=$(cpu_ns "$gpid")
	sleep "$cost_secs"
	p1=$(cpu_ns "$praefect_pid") g1=$(cpu_ns "$gpid")
	pidle=$((p1 - p0)) gidle=$((g1 - g0))
	g0=$(cpu_ns "$gpid")
	cost_run "tcp://${addr[$primary]}" "$work/FindCommit.direct.bin" node
	g1=$(cpu_ns "$gpid")
	awk -v c="$calls" -v g="$((g1 - g0 - gidle))" 'BEGIN { printf "cost FindCommit direct:   %d calls, gitaly %.0f us CPU/call\n", c, g / 1e3 / (c ? c : 1) }'
	p0=$(cpu_ns "$praefect_pid") g0=$(cpu_ns "$gpid")
	cost_run "tcp://127.0.0.1:$pport" "$work/FindCommit.praefect.bin" praefect
	p1=$(cpu_ns "$praefect_pid") g1=$(cpu_ns "$gpid")
	awk -v c="$calls" -v p="$((p1 - p0 - pidle))" -v g="$((g1 - g0 - gidle))" 'BEGIN { printf "cost FindCommit praefect: %d calls, praefect %.0f us CPU/call, gitaly %.0f us CPU/call\n", c, p / 1e3 / (c ? c : 1), g / 1e3 / (c ? c : 1) }'
	if command -v strace >/dev/null; then
		strace_counts "$work/strace.idle" sleep "$cost_secs"
		strace_counts "$work/strace.load" cost_run "tcp://127.0.0.1:$pport" "$work/FindCommit.praefect.bin" praefect
		awk -v c="$calls" 'FNR == NR { idle[$1] = $2; next }
			{ n = $2 - idle[$1]; if (n < 0) n = 0; total += n
			  if (n / (c ? c : 1) >= 0.05) parts = parts sprintf(" %s %.1f", $1, n / (c ? c : 1)) }
			END { printf "syscalls FindCommit praefect: %d calls under strace, %.1f per call:%s\n", c, total / (c ? c : 1), parts }' \
			"$work/strace.idle" "$work/strace.load"
	fi
fi
[ "$failed" = 0 ] || { echo "warning: some calls failed (logs: KEEP=1)"; exit 1; }
