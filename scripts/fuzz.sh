#!/bin/sh
# scripts/fuzz.sh - build the libFuzzer targets (clang, ASan + UBSan) and run
# each for a number of seconds.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]    default: 60 seconds, targets idx csv safetensors png jpeg transform api
#
# Builds in build-fuzz/ (meson -Dfuzz=true).  Each target starts from its seed
# corpus fuzz/corpus/<target>/ and keeps what it discovers in
# build-fuzz/corpus-<target>/ (not committed).  A crash or leak is written to
# build-fuzz/crash-<target>-*; the script prints each target's executions and
# exits non-zero if any target found something.  FUZZ_SEED=n fixes libFuzzer's
# seed and FUZZ_RUNS=n stops each target after n inputs (then SECONDS is only a
# cap): CI uses both, so that its run is the same on every machine and a merge
# is never refused for a finding of chance; long runs for new findings leave
# them unset.  Reproduce a finding with
#   build-fuzz/fuzz/fuzz_<target> build-fuzz/crash-<target>-<hash>
# Needs clang and its runtime (Debian: apt-get install clang libclang-rt-14-dev).
set -eu
cd "$(dirname "$0")/.."
SECS=${1:-60}
[ $# -gt 0 ] && shift
TARGETS=${*:-idx csv safetensors png jpeg transform api}
BUILD=${BUILD_DIR:-build-fuzz}

command -v clang >/dev/null 2>&1 || { echo "fuzz.sh: needs clang (apt-get install clang libclang-rt-14-dev)" >&2; exit 1; }
if [ ! -f "$BUILD/build.ninja" ]; then
    CC=clang meson setup "$BUILD" -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false \
        -Dbuildtype=debugoptimized >/dev/null
fi
for t in $TARGETS; do ninja -C "$BUILD" "fuzz/fuzz_$t" >/dev/null; done

export ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
status=0
for t in $TARGETS; do
    mkdir -p "$BUILD/corpus-$t"
    log="$BUILD/fuzz-$t.log"
    if "$BUILD/fuzz/fuzz_$t" -max_total_time="$SECS" -seed="${FUZZ_SEED:-0}" -runs="${FUZZ_RUNS:--1}" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$BUILD/crash-$t-" "$BUILD/corpus-$t" "fuzz/corpus/$t" >"$log" 2>&1; then
        result="no findings"
    else
        result="FOUND a problem (see $log and $BUILD/crash-$t-*)"
        status=1
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    corpus=$(ls "$BUILD/corpus-$t" | wc -l)
    echo "fuzz_$t: ${execs:-?} executions${FUZZ_SEED:+ from seed $FUZZ_SEED} in at most ${SECS}s, corpus $corpus inputs, $result"
done
exit $status
