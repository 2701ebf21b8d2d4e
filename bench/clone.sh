#!/usr/bin/env bash
# git clone and git push of a large repository: straight from disk, through one
# gitaly (gitaly-ssh), and through praefect in front of three gitaly nodes. One
# run, ratios printed, with gitaly's and praefect's peak RSS and CPU seconds.
#
# usage: bench/clone.sh   env: BENCH_REPO_MB (default 500), BUILD_DIR (build-bench), KEEP=1
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

mb=${BENCH_REPO_MB:-500}
build=$(realpath -m "${BUILD_DIR:-build-bench}")
work=$(mktemp -d /tmp/bench-clone.XXXXXX)
trap bench_cleanup EXIT
trap 'exit 130' INT TERM
export GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_SYSTEM=/dev/null
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@example.com GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@example.com

echo "building in $build (release)"
bench_build "$build" gitaly/gitaly praefect/praefect gitaly-ssh/gitaly-ssh gitaly-hooks/gitaly-hooks
mkdir -p "$work/bin"
ln -s "$build/gitaly-hooks/gitaly-hooks" "$build/gitaly-ssh/gitaly-ssh" "$work/bin/"

# The source repository: random (incompressible) files in several commits, cached between runs.
src=/tmp/bench-repo-${mb}mb.git
if [ ! -d "$src" ]; then
	echo "generating a ${mb} MB repository in $src (once)"
	w=$(mktemp -d /tmp/bench-gen.XXXXXX)
	git init -q -b main "$w"
	for c in $(seq 10); do
		for f in $(seq 5); do head -c $((mb * 1024 * 1024 / 50)) /dev/urandom >"$w/c$c-f$f.bin"; done
		git -C "$w" add -A && git -C "$w" -c core.compression=0 commit -q -m "commit $c"
	done
	git clone -q --bare "$w" "$src.tmp" && mv "$src.tmp" "$src"
	rm -rf "$w"
fi
size=$(du -sm "$src" | cut -f1)

nodes=()
for n in gitaly-1 gitaly-2 gitaly-3; do
	bench_gitaly $n "socket_path = \"$work/$n/sock\""
	nodes+=("$n=unix:$work/$n/sock")
done
pid_gitaly_1=${bench_gitaly_pid[gitaly-1]}
bench_praefect_config "socket_path = \"$work/praefect.sock\"" "${nodes[@]}"
sleep 0.5
"$build/praefect/praefect" -config "$work/praefect.toml" >"$work/praefect.log" 2>&1 &
praefect_pid=$!
bench_pids+=($praefect_pid)
for i in $(seq 100); do [ -S "$work/praefect.sock" ] && break; sleep 0.1; done

ssh_env() { # ADDRESS TOKEN STORAGE PATH VERB
	export GIT_SSH_COMMAND="$work/bin/gitaly-ssh $5" GIT_SSH_VARIANT=simple GITALY_ADDRESS=$1 GITALY_TOKEN=$2
	if [ "$5" = receive-pack ]; then
		export GITALY_PAYLOAD="{\"repository\":{\"storageName\":\"$3\",\"relativePath\":\"$4\",\"glRepository\":\"project-1\"},\"glId\":\"user-1\",\"glRepository\":\"project-1\"}"
	else
		export GITALY_PAYLOAD="{\"repository\":{\"storageName\":\"$3\",\"relativePath\":\"$4\"}}"
	fi
}
timed() { # command... -> seconds on stdout
	local t0 t1
	t0=$(date +%s.%N)
	"$@" >/dev/null 2>&1
	t1=$(date +%s.%N)
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }'
}
cpu_s() { awk '{ printf "%.2f", ($14 + $15) / 100 }' "/proc/$1/stat"; }
hwm_mb() { awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }

# direct gitaly: the repository in gitaly-1's storage
cp -r "$src" "$work/gitaly-1/storage/big.git"
# praefect: create it through praefect, then push (the push is itself measured)
/usr/bin/python3 - "$work" <<'PY'
import sys
sys.path.insert(0, "t/integration/gitaly")
from gitaly_itest import pb, pb_grpc, auth_md
import grpc
ch = grpc.insecure_channel("unix:%s/praefect.sock" % sys.argv[1])
pb_grpc("repository").RepositoryServiceStub(ch).CreateRepository(pb("repository").CreateRepositoryRequest(
    repository=pb("shared").Repository(storage_name="default", relative_path="big.git")), metadata=auth_md("praefect"), timeout=30)
PY
git init -q --bare "$work/gitaly-2/storage/pushed.git"
git init -q --bare "$work/local-push.git"

echo "repository: ${size} MB on disk; times are wall seconds"
echo
t_direct=$(timed git clone -q --bare --no-local "$src" "$work/c-direct.git")
c0=$(cpu_s "$pid_gitaly_1")
ssh_env "unix:$work/gitaly-1/sock" node gitaly-1 big.git upload-pack
t_gitaly=$(timed git clone -q --bare ssh://gitaly/big.git "$work/c-gitaly.git")
c_gitaly=$(awk -v a="$c0" -v b="$(cpu_s "$pid_gitaly_1")" 'BEGIN { printf "%.2f", b - a }')

t_lpush=$(timed git -C "$src" push -q "$work/local-push.git" main)
ssh_env "unix:$work/gitaly-2/sock" node gitaly-2 pushed.git receive-pack
t_gpush=$(timed git -C "$src" push -q ssh://gitaly/pushed.git main)

p0=$(cpu_s "$praefect_pid")
ssh_env "unix:$work/praefect.sock" praefect default big.git receive-pack
t_ppush=$(timed git -C "$src" push -q ssh://gitaly/big.git main)
ssh_env "unix:$work/praefect.sock" praefect default big.git upload-pack
t_pclone=$(timed git clone -q --bare ssh://gitaly/big.git "$work/c-praefect.git")
p_cpu=$(awk -v a="$p0" -v b="$(cpu_s "$praefect_pid")" 'BEGIN { printf "%.2f", b - a }')
for c in c-direct c-gitaly c-praefect; do
	[ "$(git -C "$work/$c.git" rev-parse main)" = "$(git -C "$src" rev-parse main)" ] || { echo "$c: wrong content"; exit 1; }
done

r() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
printf '%-34s %8s %8s\n' "operation" "seconds" "ratio"
printf '%-34s %8s %8s\n' "clone, git --no-local from disk" "$t_direct" "1.00"
printf '%-34s %8s %8s\n' "clone through gitaly (gitaly-ssh)" "$t_gitaly" "$(r "$t_gitaly" "$t_direct")"
printf '%-34s %8s %8s\n' "clone through praefect" "$t_pclone" "$(r "$t_pclone" "$t_direct")"
printf '%-34s %8s %8s\n' "push, local bare repository" "$t_lpush" "1.00"
printf '%-34s %8s %8s\n' "push through gitaly (gitaly-ssh)" "$t_gpush" "$(r "$t_gpush" "$t_lpush")"
printf '%-34s %8s %8s\n' "push through praefect" "$t_ppush" "$(r "$t_ppush" "$t_lpush")"
echo
echo "gitaly (serving the clone): peak RSS $(hwm_mb "$pid_gitaly_1") MB, ${c_gitaly} CPU s during the clone"
gb=$(awk -v m="$size" 'BEGIN { printf "%.3f", m * 2 / 1024 }')
echo "praefect: peak RSS $(hwm_mb "$praefect_pid") MB, ${p_cpu} CPU s for ${gb} GB proxied (push + clone) = $(awk -v c="$p_cpu" -v g="$gb" 'BEGIN { printf "%.2f", c / g }') CPU s/GB"
