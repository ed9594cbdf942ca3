#!/usr/bin/env bash
# Installs what is missing, then builds and runs every test shmhub has:
#   1. the normal build (RelWithDebInfo): every ctest label (unit, integration, slow)
#   2. AddressSanitizer + UndefinedBehaviorSanitizer build: every test
#   3. ThreadSanitizer build: the unit and integration tests (the slow
#      million-frame streams are exercised by 1 and 2; under TSan they only
#      add minutes, not coverage)
#   4. clang + libFuzzer build: each fuzz target for SHMHUB_FUZZ_SECONDS (default 30)
# Stops at the first failing stage. Set SHMHUB_TEST_STAGES to a subset,
# e.g. "default asan", to run fewer.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STAGES="${SHMHUB_TEST_STAGES:-default asan tsan fuzz}"
FUZZ_SECONDS="${SHMHUB_FUZZ_SECONDS:-30}"
JOBS="${SHMHUB_JOBS:-$(nproc)}"

"$ROOT/scripts/install-deps.sh"

build() {  # build DIR [cmake args...]
  local dir="$1"; shift
  cmake -S "$ROOT" -B "$dir" -G Ninja "$@" > "$dir.configure.log" 2>&1 \
    || { cat "$dir.configure.log"; return 1; }
  cmake --build "$dir" -j "$JOBS"
}

run_ctest() {  # run_ctest DIR [ctest args...]
  local dir="$1"; shift
  ctest --test-dir "$dir" --output-on-failure -j "$JOBS" "$@"
}

for stage in $STAGES; do
  echo "=== shmhub test stage: $stage"
  case "$stage" in
    default)
      build "$ROOT/build"
      run_ctest "$ROOT/build"
      ;;
    asan)
      build "$ROOT/build-asan" -DCMAKE_BUILD_TYPE=Debug -DSHMHUB_SANITIZE="address;undefined"
      ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
        run_ctest "$ROOT/build-asan"
      ;;
    tsan)
      build "$ROOT/build-tsan" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSHMHUB_SANITIZE=thread
      TSAN_OPTIONS="halt_on_error=1 suppressions=$ROOT/tests/tsan.supp" \
        run_ctest "$ROOT/build-tsan" -LE slow
      ;;
    fuzz)
      build "$ROOT/build-fuzz" -DCMAKE_CXX_COMPILER=clang++ -DSHMHUB_BUILD_FUZZERS=ON \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo
      "$ROOT/fuzz/run_fuzzers.sh" "$ROOT/build-fuzz" "$FUZZ_SECONDS"
      ;;
    *)
      echo "unknown stage '$stage' (known: default asan tsan fuzz)" >&2
      exit 2
      ;;
  esac
done
echo "=== shmhub: all test stages passed ($STAGES)"
