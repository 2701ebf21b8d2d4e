# Helpers shared by the bench/ scripts: build, start services on loopback,
# put nginx in front of them, run h2load and read its numbers. Sourced, not run.
#
# The caller sets $work (a scratch directory) before calling these, and
# installs bench_cleanup as its EXIT trap.

bench_pids=()

bench_cleanup() {
	local pid
	for pid in "${bench_pids[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${bench_pids[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	bench_pids=()
	if [ "${KEEP:-0}" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi
}

# bench_build DIR TARGET...: an optimised build of just the targets needed.
bench_build() {
	local dir=$1
	shift
	if [ ! -d "$dir/meson-private" ]; then
		# -O3 makes GCC see an impossible overflow in praefect/config.c's
		# duration printer (stringop-overflow): a warning there, not an error
		meson setup "$dir" -Dbuildtype=release -Db_ndebug=true \
			-Dc_args=-Wno-error=stringop-overflow >"$work/meson-setup.log" 2>&1 ||
			{ cat "$work/meson-setup.log"; return 1; }
	fi
	ninja -C "$dir" "$@" >"$work/ninja.log" 2>&1 || { cat "$work/ninja.log"; return 1; }
}

# bench_free_port: a TCP port on 127.0.0.1 that was free a moment ago.
bench_free_port() {
	/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# bench_gitaly NAME LISTEN: start a gitaly node ($build) with one storage
# NAME under $work/NAME, token "node", hooks and gitaly-ssh from $work/bin,
# listening as the TOML line LISTEN says (socket_path = "..." or
# listen_addr = "..."). Its pid goes to bench_pids and bench_gitaly_pid[NAME].
# Not called in $(...): the pid must reach this shell.
declare -A bench_gitaly_pid
bench_gitaly() {
	local name=$1 listen=$2
	mkdir -p "$work/$name/storage"
	cat >"$work/$name/config.toml" <<-CFG
		$listen
		bin_dir = "$work/bin"
		runtime_dir = "$work/$name/run"
		[[storage]]
		name = "$name"
		path = "$work/$name/storage"
		[auth]
		token = "node"
		[logging]
		level = "warn"
	CFG
	"$build/gitaly/gitaly" "$work/$name/config.toml" >"$work/$name/log" 2>&1 &
	bench_pids+=($!)
	bench_gitaly_pid[$name]=$!
}

# bench_praefect_config LISTEN STORAGE=ADDRESS...: write $work/praefect.toml,
# listening as the TOML line LISTEN says, token "praefect", its database in
# $work, and one virtual storage "default" over the given nodes (token "node").
bench_praefect_config() {
	local listen=$1 node
	shift
	cat >"$work/praefect.toml" <<-CFG
		$listen
		[auth]
		token = "praefect"
		[logging]
		level = "warn"
		[database]
		sqlite_path = "$work/praefect.db"
		[[virtual_storage]]
		name = "default"
	CFG
	for node in "$@"; do
		printf '[[virtual_storage.node]]\nstorage = "%s"\naddress = "%s"\ntoken = "node"\n' \
			"${node%%=*}" "${node#*=}" >>"$work/praefect.toml"
	done
}

# bench_start NAME CMD...: start CMD in the background (output in
# $work/NAME.out and .log) and wait for its first "listening <addr>" line;
# sets $bench_addr to that address.
bench_start() {
	local name=$1 i pid
	shift
	"$@" >"$work/$name.out" 2>"$work/$name.log" &
	pid=$!
	bench_pids+=("$pid")
	for i in $(seq 100); do
		bench_addr=$(sed -n 's/^listening //p' "$work/$name.out" | head -n 1)
		[ -z "$bench_addr" ] || return 0
		kill -0 "$pid" 2>/dev/null || { cat "$work/$name.log" >&2; return 1; }
		sleep 0.1
	done
	echo "$name did not start listening" >&2
	return 1
}

# bench_nginx_grpc UPSTREAM: Debian's nginx, one worker, listening with
# HTTP/2 on a free loopback port and passing every request to UPSTREAM
# (host:port) with grpc_pass; its prefix, pid file and logs stay in
# $work/nginx. Sets $bench_addr to nginx's address.
bench_nginx_grpc() {
	local upstream=$1 dir=$work/nginx port user_line= i pid
	mkdir -p "$dir/tmp"
	port=$(bench_free_port)
	# Workers drop to "nobody" unless told otherwise when the master is root.
	[ "$(id -u)" -ne 0 ] || user_line="user root;"
	cat >"$dir/nginx.conf" <<-EOF
		$user_line
		worker_processes 1;
		daemon off;
		pid $dir/nginx.pid;
		error_log $dir/error.log warn;
		events { worker_connections 4096; }
		http {
		    access_log off;
		    client_body_temp_path $dir/tmp/body;
		    proxy_temp_path $dir/tmp/proxy;
		    fastcgi_temp_path $dir/tmp/fastcgi;
		    uwsgi_temp_path $dir/tmp/uwsgi;
		    scgi_temp_path $dir/tmp/scgi;
		    # Never close a benchmark connection for having served "enough".
		    keepalive_requests 1000000000;
		    upstream backend {
		        server $upstream;
		        keepalive 256;
		        keepalive_requests 1000000000;
		    }
		    server {
		        listen 127.0.0.1:$port http2;
		        location / {
		            grpc_pass grpc://backend;
		        }
		    }
		}
	EOF
	/usr/sbin/nginx -p "$dir" -c "$dir/nginx.conf" >"$dir/stdout.log" 2>&1 &
	pid=$!
	bench_pids+=("$pid")
	for i in $(seq 100); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			bench_addr=127.0.0.1:$port
			return 0
		fi
		kill -0 "$pid" 2>/dev/null || { cat "$dir/stdout.log" "$dir/error.log" >&2 2>/dev/null; return 1; }
		sleep 0.1
	done
	echo "nginx did not start listening on 127.0.0.1:$port" >&2
	return 1
}

# bench_grpc_check URL BODY: one call with nghttp; fails unless the trailers
# say grpc-status 0 (h2load alone counts any HTTP 200 as a success).
bench_grpc_check() {
	local out
	out=$(nghttp -v -H 'content-type: application/grpc' -H 'te: trailers' -d "$2" "$1" 2>&1 | tr -d '\000') || true
	if ! grep -q 'grpc-status: 0' <<<"$out"; then
		echo "call to $1 did not end with grpc-status 0:" >&2
		grep -E 'recv|:status|grpc-' <<<"$out" | head -n 20 >&2
		return 1
	fi
}

# bench_h2load URL BODY SECONDS H2LOAD-ARGS...: run h2load for SECONDS (after
# a one-second warm-up) and print "calls/s succeeded failed".
bench_h2load() {
	local url=$1 body=$2 secs=$3 out rate ok failed
	shift 3
	out=$(h2load -D "$secs" --warm-up-time=1 -t 1 -d "$body" \
		-H 'content-type: application/grpc' -H 'te: trailers' "$@" "$url" 2>&1) ||
		{ echo "$out" >&2; return 1; }
	rate=$(sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p' <<<"$out")
	ok=$(sed -n 's/^requests: .* \([0-9][0-9]*\) succeeded, \([0-9][0-9]*\) failed.*/\1/p' <<<"$out")
	failed=$(sed -n 's/^requests: .* \([0-9][0-9]*\) succeeded, \([0-9][0-9]*\) failed.*/\2/p' <<<"$out")
	[ -n "$rate" ] || { echo "$out" >&2; return 1; }
	echo "$rate ${ok:-0} ${failed:-0}"
}
