#!/usr/bin/env bash
# Run every test: unit and integration suites in a plain and a sanitizer build,
# then a short smoke run of every libFuzzer target.
#
# usage: tools/test.sh [plain] [asan] [fuzz]     (no argument: all three)
#
# Environment:
#   BUILD_PREFIX   build directory prefix (default "build": build, build-asan,
#                  build-fuzz); set it to keep out of someone else's trees
#   FUZZ_SECONDS   how long each fuzz target runs (default 15)
#   PYTEST_ARGS    extra arguments for pytest (e.g. "-k health -x")
#   PYTEST_WORKERS parallel pytest workers (default 3; 1 runs serially)
#   GITALYC_STORES the praefect suite's stores (default both; the asan pass: sqlite)
#
# Works on a fresh clone: each tree is configured (or reconfigured) here. The
# last line is "summary: N passed, N failed"; the exit status is non-zero when
# anything failed, including a suite that collected no test.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

prefix=$(realpath -m "${BUILD_PREFIX:-build}")
fuzz_seconds=${FUZZ_SECONDS:-15}
python=/usr/bin/python3   # Debian's, which has grpcio; not whatever is first on PATH

# Any sanitizer report fails the run: UBSan reports would otherwise only print.
export ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:print_summary=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:print_summary=1
export LSAN_OPTIONS=print_suppressions=0
export PYTHONDONTWRITEBYTECODE=1

t_start=$SECONDS
n_passed=0
n_failed=0
n_skipped=0
report=()

section() {
	printf '\n========== %s ==========\n' "$*"
}

# step NAME COUNT-FUNCTION CMD...: run CMD with errexit on, in a subshell so
# that a failing step does not stop the others; then COUNT-FUNCTION adds the
# tests it ran to the totals. CMD's status is left in $last_rc. Never call
# step in a condition (if, ||, &&): bash would then ignore errexit inside CMD.
last_rc=0
step() {
	local name=$1 counter=$2 t0=$SECONDS
	shift 2
	printf '\n--- %s\n' "$name"
	set +e
	(set -e; "$@")
	last_rc=$?
	set -e
	"$counter" "$last_rc"
	if [ "$last_rc" -eq 0 ]; then
		report+=("ok    $name ($((SECONDS - t0))s)")
	else
		report+=("FAIL  $name ($((SECONDS - t0))s, exit $last_rc)")
	fi
}

# A step that is not a test (configure, build) counts only when it fails.
count_step() {
	[ "$1" -eq 0 ] || n_failed=$((n_failed + 1))
}

# A fuzz target that survived its time counts as one test.
count_one() {
	if [ "$1" -eq 0 ]; then n_passed=$((n_passed + 1)); else n_failed=$((n_failed + 1)); fi
}

# Count the testcases of the JUnit file in $junit; a missing file (the runner
# died or collected nothing) is one failure whatever the exit status.
junit=
count_junit() {
	local rc=$1 counts p f s
	if [ -z "$junit" ] || [ ! -s "$junit" ]; then
		n_failed=$((n_failed + 1))
		return
	fi
	counts=$("$python" - "$junit" <<-'EOF'
		import sys, xml.etree.ElementTree as ET
		p = f = s = 0
		for tc in ET.parse(sys.argv[1]).getroot().iter('testcase'):
		    tags = {c.tag for c in tc}
		    if tags & {'failure', 'error'}: f += 1
		    elif 'skipped' in tags: s += 1
		    else: p += 1
		print(p, f, s)
	EOF
	) || counts="0 1 0"
	read -r p f s <<<"$counts"
	# A runner that failed without a failing testcase still failed.
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
	n_passed=$((n_passed + p))
	n_failed=$((n_failed + f))
	n_skipped=$((n_skipped + s))
}

# configure DIR [meson options...]: set up a tree, or reconfigure an existing
# one with the same options (starting over if that fails).
configure() {
	local dir=$1 log rc=0
	shift
	log=$(mktemp)
	if [ -d "$dir/meson-private" ]; then
		meson setup --reconfigure "$dir" "$@" >"$log" 2>&1 ||
			meson setup --wipe "$dir" "$@" >"$log" 2>&1 || rc=$?
	else
		rm -rf "$dir"
		meson setup "$dir" "$@" >"$log" 2>&1 || rc=$?
	fi
	if [ "$rc" -eq 0 ]; then echo "configured $dir: $*"; else cat "$log"; fi
	rm -f "$log"
	return "$rc"
}

configure_clang() {
	CC=clang configure "$@"
}

# ninja TREE [TARGET...]: build quietly; on failure show the end of the log,
# where the compiler's errors are.
ninja_quiet() {
	local dir=$1 log=$1/meson-logs/ninja-test.sh.log
	shift
	if ninja -C "$dir" "$@" >"$log" 2>&1; then
		tail -n 1 "$log"
	else
		grep -v '^\[[0-9]*/[0-9]*\] ' "$log" | tail -n 100
		return 1
	fi
}

build_all() {
	ninja_quiet "$1"
}

unit_tests() {
	meson test -C "$1" --print-errorlogs "${@:2}"
}

integration_tests() {
	local dir=$1 rc=0 par=()
	[ -d t/integration ] || { echo "no t/integration"; return 1; }
	# Most of the time is spent waiting on git and servers: run tests side by
	# side (pytest-xdist, PYTEST_WORKERS, default 3); tests that measure timing
	# share one worker (xdist_group "timing").
	if "$python" -c 'import xdist' 2>/dev/null && [ "${PYTEST_WORKERS:-3}" != 1 ]; then
		par=(-n "${PYTEST_WORKERS:-3}" --dist loadgroup)
	fi
	# shellcheck disable=SC2086 # PYTEST_ARGS is a list of words on purpose
	# a short --basetemp: test paths hold Unix sockets (at most 108 bytes)
	local base
	base=$(mktemp -d /tmp/pt.XXXXXX)
	BUILD_DIR="$dir" timeout 1500 "$python" -m pytest -q "${par[@]}" --basetemp="$base" \
		--junitxml="$dir/meson-logs/pytest.junit.xml" ${PYTEST_ARGS:-} t/integration || rc=$?
	rm -rf "$base"
	# 5 is "no tests collected": a suite that tests nothing is a failure.
	[ "$rc" -ne 5 ] || echo "pytest collected no test"
	return "$rc"
}

# Build and test one tree: plain or with sanitizers.
run_tree() {
	local kind=$1 dir=$2
	shift 2
	section "$kind: ${dir#"$root"/}"
	step "$kind: configure" count_step configure "$dir" "$@"
	[ "$last_rc" -eq 0 ] || return 0
	step "$kind: build" count_step build_all "$dir"
	[ "$last_rc" -eq 0 ] || return 0
	local mult=1
	[ "$kind" = plain ] || mult=4
	junit=$dir/meson-logs/testlog.junit.xml
	rm -f "$junit"
	step "$kind: unit tests" count_junit unit_tests "$dir" --timeout-multiplier "$mult"
	junit=$dir/meson-logs/pytest.junit.xml
	rm -f "$junit"
	step "$kind: integration tests" count_junit integration_tests "$dir"
}

fuzz_targets() {
	# Only the fuzz targets: the rest of the tree is built and tested above.
	"$python" - "$1" <<-'EOF'
		import json, os, subprocess, sys
		out = subprocess.run(['meson', 'introspect', '--targets', sys.argv[1]],
		                     check=True, capture_output=True, text=True).stdout
		for t in json.loads(out):
		    if t['type'] == 'executable' and t['name'].startswith('fuzz_'):
		        print(os.path.relpath(t['filename'][0], sys.argv[1]))
	EOF
}

build_fuzz() {
	local dir=$1 targets
	targets=$(fuzz_targets "$dir")
	[ -n "$targets" ] || { echo "no fuzz target defined"; return 1; }
	# shellcheck disable=SC2086
	ninja_quiet "$dir" $targets
}

# fuzz_one EXE: run a libFuzzer target for $fuzz_seconds on a scratch corpus
# seeded from fuzz/corpus/NAME when it exists; any crash, leak, sanitizer
# report or timeout fails it.
fuzz_one() {
	local exe=$1 name log corpus rc=0
	name=$(basename "$exe")
	corpus=$(mktemp -d)
	log=$(dirname "$exe")/$name.smoke.log
	local seeds=()
	[ -d "fuzz/corpus/$name" ] && seeds=("fuzz/corpus/$name")
	timeout $((fuzz_seconds + 120)) "$exe" -max_total_time="$fuzz_seconds" -timeout=10 \
		-rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$(dirname "$exe")/$name-" \
		"$corpus" "${seeds[@]}" >"$log" 2>&1 || rc=$?
	rm -rf "$corpus"
	if [ "$rc" -ne 0 ]; then
		tail -n 60 "$log"
		echo "$name failed (exit $rc); log: $log"
		return "$rc"
	fi
	grep -E '^stat::number_of_executed_units|^Done [0-9]+ runs' "$log" | tail -n 1 || true
}

run_fuzz() {
	local dir=$1
	section "fuzz: ${dir#"$root"/} (${fuzz_seconds}s per target)"
	# -Dfuzzing=true also compiles every library with -fsanitize=fuzzer-no-link
	# (meson.build), so libFuzzer gets coverage feedback from lib/ too.
	step "fuzz: configure" count_step configure_clang "$dir" \
		-Dfuzzing=true -Db_sanitize=address,undefined -Db_lundef=false
	[ "$last_rc" -eq 0 ] || return 0
	step "fuzz: build" count_step build_fuzz "$dir"
	[ "$last_rc" -eq 0 ] || return 0
	# The targets this tree defines, not whatever fuzz_* a former build left.
	local exe
	for exe in $(fuzz_targets "$dir"); do
		step "fuzz: $(basename "$exe")" count_one fuzz_one "$dir/$exe"
	done
}

kinds=("$@")
[ ${#kinds[@]} -gt 0 ] || kinds=(plain asan fuzz)
for kind in "${kinds[@]}"; do
	case $kind in
	plain) run_tree plain "$prefix" -Dbuildtype=debugoptimized -Db_sanitize=none -Dfuzzing=false ;;
	# Under the sanitizers the praefect suite runs on SQLite (plus its both_stores tests on
	# PostgreSQL): the store-independent C is the same, and the plain pass runs it all on both.
	asan) GITALYC_STORES=${GITALYC_STORES:-sqlite} run_tree asan "$prefix-asan" -Dbuildtype=debugoptimized -Db_sanitize=address,undefined \
		-Db_lundef=false -Dfuzzing=false ;;
	fuzz) run_fuzz "$prefix-fuzz" ;;
	*) echo "usage: tools/test.sh [plain] [asan] [fuzz]" >&2; exit 2 ;;
	esac
done

section "summary"
printf '%s\n' "${report[@]}"
elapsed=$((SECONDS - t_start))
printf 'total time: %dm%02ds\n' $((elapsed / 60)) $((elapsed % 60))
if [ "$n_skipped" -gt 0 ]; then
	echo "summary: $n_passed passed, $n_failed failed, $n_skipped skipped"
else
	echo "summary: $n_passed passed, $n_failed failed"
fi
[ "$n_failed" -eq 0 ]
