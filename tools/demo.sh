#!/usr/bin/env bash
# The main job: build everything, start a local Gitaly Cluster (three gitaly
# nodes behind praefect with its embedded SQLite store, all on Unix sockets in
# a scratch directory), push a repository into it with real git, clone it back,
# show the cluster's view, and stop.
#
# usage: tools/demo.sh      env: BUILD_DIR (default build), KEEP=1 keeps the
#                           scratch directory (configs, logs, storages)
set -euo pipefail
cd "$(dirname "$0")/.."
build=$(realpath -m "${BUILD_DIR:-build}")
python=/usr/bin/python3   # Debian's, which has grpcio

work=$(mktemp -d /tmp/gitaly-demo.XXXXXX)
pids=()

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

say() { printf '\n==> %s\n' "$*"; }

say "building ${build#"$PWD"/}"
if [ ! -d "$build/meson-private" ]; then
	meson setup "$build" -Dbuildtype=debugoptimized >"$work/meson-setup.log" 2>&1 ||
		{ cat "$work/meson-setup.log"; exit 1; }
fi
ninja -C "$build" gitaly/gitaly praefect/praefect gitaly-ssh/gitaly-ssh gitaly-hooks/gitaly-hooks | tail -n 1

# All helper binaries in one bin_dir, as upstream's bin_dir holds them.
mkdir -p "$work/bin"
for b in gitaly/gitaly praefect/praefect gitaly-ssh/gitaly-ssh gitaly-hooks/gitaly-hooks; do
	ln -s "$build/$b" "$work/bin/"
done

wait_for_socket() { # NAME PID SOCKET LOG
	local i
	for i in $(seq 150); do
		[ -S "$3" ] && return 0
		kill -0 "$2" 2>/dev/null || { echo "$1 exited:"; cat "$4"; exit 1; }
		sleep 0.1
	done
	echo "$1 did not start:"; cat "$4"; exit 1
}

say "starting three gitaly nodes"
for n in 1 2 3; do
	d=$work/gitaly-$n
	mkdir -p "$d/storage"
	cat >"$d/config.toml" <<-EOF
		socket_path = "$d/gitaly.socket"
		bin_dir = "$work/bin"
		runtime_dir = "$d/run"

		[[storage]]
		name = "gitaly-$n"
		path = "$d/storage"

		[auth]
		token = "node-secret"

		[logging]
		format = "json"
	EOF
	"$work/bin/gitaly" "$d/config.toml" >"$d/log" 2>&1 &
	pids+=($!)
	wait_for_socket "gitaly-$n" $! "$d/gitaly.socket" "$d/log"
	echo "gitaly-$n (pid $!) on unix:$d/gitaly.socket"
done

say "starting praefect in front of them"
cat >"$work/praefect.toml" <<EOF
socket_path = "$work/praefect.socket"

[auth]
token = "praefect-secret"

[logging]
format = "json"

[database]
sqlite_path = "$work/praefect.db"

[[virtual_storage]]
name = "default"
EOF
for n in 1 2 3; do
	printf '\n[[virtual_storage.node]]\nstorage = "gitaly-%s"\naddress = "unix:%s"\ntoken = "node-secret"\n' \
		$n "$work/gitaly-$n/gitaly.socket" >>"$work/praefect.toml"
done
"$work/bin/praefect" -config "$work/praefect.toml" >"$work/praefect.log" 2>&1 &
pids+=($!)
wait_for_socket praefect $! "$work/praefect.socket" "$work/praefect.log"
echo "praefect (pid $!) on unix:$work/praefect.socket"

say "creating the repository demo/project.git through praefect (RepositoryService/CreateRepository)"
$python - "$work/praefect.socket" <<'PY'
import sys
sys.path.insert(0, "t/integration/gitaly")
from gitaly_itest import pb, pb_grpc, auth_md
import grpc
ch = grpc.insecure_channel("unix:" + sys.argv[1])
repo = pb("shared").Repository(storage_name="default", relative_path="demo/project.git")
pb_grpc("repository").RepositoryServiceStub(ch).CreateRepository(
    pb("repository").CreateRepositoryRequest(repository=repo), metadata=auth_md("praefect-secret"), timeout=30)
print("created")
PY

export GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_SYSTEM=/dev/null
export GIT_AUTHOR_NAME=Demo GIT_AUTHOR_EMAIL=demo@example.com GIT_COMMITTER_NAME=Demo GIT_COMMITTER_EMAIL=demo@example.com
gitaly_ssh() { # VERB: git talks to praefect through gitaly-ssh, as GitLab's helpers do
	export GIT_SSH_COMMAND="$work/bin/gitaly-ssh $1" GIT_SSH_VARIANT=simple
	export GITALY_ADDRESS="unix:$work/praefect.socket" GITALY_TOKEN=praefect-secret
	export GITALY_PAYLOAD='{"repository":{"storageName":"default","relativePath":"demo/project.git","glRepository":"project-1"},"glId":"user-1","glUsername":"demo","glRepository":"project-1"}'
	[ "$1" = receive-pack ] || export GITALY_PAYLOAD='{"repository":{"storageName":"default","relativePath":"demo/project.git"}}'
}

say "git push (three branches and a tag) through praefect"
src=$work/src
git init -q -b main "$src"
for b in main feature/login bugfix; do
	git -C "$src" checkout -q -B "$b"
	echo "work on $b" >"$src/${b//\//-}.txt"
	git -C "$src" add -A
	git -C "$src" commit -q -m "commit on $b"
done
git -C "$src" tag -a v1.0 -m "release 1.0" main
gitaly_ssh receive-pack
git -C "$src" push ssh://gitaly/project.git --all
git -C "$src" push -q ssh://gitaly/project.git --tags

say "git clone through praefect"
gitaly_ssh upload-pack
git clone -q --bare ssh://gitaly/project.git "$work/clone.git"
if [ "$(git -C "$src" for-each-ref --format='%(objectname) %(refname)' refs/heads refs/tags)" != \
     "$(git -C "$work/clone.git" for-each-ref --format='%(objectname) %(refname)' refs/heads refs/tags)" ]; then
	echo "the clone's refs differ from what was pushed" >&2
	exit 1
fi
git -C "$work/clone.git" fsck --no-progress
echo "cloned: refs identical to what was pushed, fsck clean"

say "waiting until every node holds the repository at the same generation"
$python - "$work/praefect.socket" <<'PY'
import sys, time
sys.path.insert(0, "t/integration/gitaly")
from gitaly_itest import pb, pb_grpc, auth_md
import grpc
ch = grpc.insecure_channel("unix:" + sys.argv[1])
info = pb_grpc("praefect").PraefectInfoServiceStub(ch)
q = pb("praefect").GetRepositoryMetadataRequest(path=pb("praefect").GetRepositoryMetadataRequest.Path(
    virtual_storage="default", relative_path="demo/project.git"))
for _ in range(200):
    m = info.GetRepositoryMetadata(q, metadata=auth_md("praefect-secret"))
    if len(m.replicas) == 3 and all(r.generation == m.generation for r in m.replicas):
        break
    time.sleep(0.1)
else:
    sys.exit("replicas did not converge")
print("replica path %s, primary %s, generation %d" % (m.replica_path, m.primary, m.generation))
for r in m.replicas:
    print("  %s: generation %d%s" % (r.storage, r.generation, "" if r.healthy else " (unhealthy)"))
PY

say "praefect -config praefect.toml list-storages"
"$work/bin/praefect" -config "$work/praefect.toml" list-storages
say "praefect -config praefect.toml dataloss"
"$work/bin/praefect" -config "$work/praefect.toml" dataloss

say "stopping"
for pid in "${pids[@]}"; do kill -TERM "$pid"; done
for pid in "${pids[@]}"; do wait "$pid" || true; done
pids=()
echo "done: pushed and cloned through a three-node Gitaly Cluster"
