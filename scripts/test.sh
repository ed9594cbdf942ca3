#!/usr/bin/env bash
# Installs what is missing, then builds and runs every test shmhub has:
#   1. the normal build (RelWithDebInfo): every ctest label (unit, integration, slow)
#   2. the Release build of the shipped binaries (what the image and users
#      build), so that configuration keeps building
#   3. AddressSanitizer + UndefinedBehaviorSanitizer build: every test
#   4. ThreadSanitizer build: the shm/ unit and integration tests. Debian's
#      Abseil is not TSan-instrumented, so absl::Mutex users (server/,
#      client/) would only show false races; they run under 1 and 3.
#   5. clang + libFuzzer build: each fuzz target for SHMHUB_FUZZ_SECONDS (default 30)
# Every build treats warnings in our own code as errors (SHMHUB_WERROR);
# a plain cmake build does not. Stops at the first failing stage. Set
# SHMHUB_TEST_STAGES to a subset, e.g. "default asan", to run fewer.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STAGES="${SHMHUB_TEST_STAGES:-default release asan tsan fuzz}"
SHIPPED_BINARIES=(shmhubd shmhubctl shmhub-guest echo_host echo_guest)
FUZZ_SECONDS="${SHMHUB_FUZZ_SECONDS:-30}"
JOBS="${SHMHUB_JOBS:-$(nproc)}"

"$ROOT/scripts/install-deps.sh"

configure() {  # configure DIR [cmake args...]
  local dir="$1"; shift
  cmake -S "$ROOT" -B "$dir" -G Ninja -DSHMHUB_WERROR=ON "$@" > "$dir.configure.log" 2>&1 \
    || { cat "$dir.configure.log"; return 1; }
}

build() {  # build DIR [cmake args...]: configure, then build everything
  configure "$@"
  cmake --build "$1" -j "$JOBS"
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
    release)
      configure "$ROOT/build-release" -DCMAKE_BUILD_TYPE=Release
      cmake --build "$ROOT/build-release" -j "$JOBS" --target "${SHIPPED_BINARIES[@]}"
      "$ROOT/build-release/server/shmhubd" --version
      ;;
    asan)
      build "$ROOT/build-asan" -DCMAKE_BUILD_TYPE=Debug -DSHMHUB_SANITIZE="address;undefined"
      ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
        run_ctest "$ROOT/build-asan"
      ;;
    tsan)
      configure "$ROOT/build-tsan" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSHMHUB_SANITIZE=thread
      cmake --build "$ROOT/build-tsan" -j "$JOBS" --target shmhub_shm_tests
      TSAN_OPTIONS="halt_on_error=1 suppressions=$ROOT/tests/tsan.supp" \
        run_ctest "$ROOT/build-tsan" -R '^shm/' -LE slow
      ;;
    fuzz)
      configure "$ROOT/build-fuzz" -DCMAKE_CXX_COMPILER=clang++ -DSHMHUB_BUILD_FUZZERS=ON \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo
      cmake --build "$ROOT/build-fuzz" -j "$JOBS" --target shmhub_fuzzers
      "$ROOT/fuzz/run_fuzzers.sh" "$ROOT/build-fuzz" "$FUZZ_SECONDS"
      ;;
    *)
      echo "unknown stage '$stage' (known: default release asan tsan fuzz)" >&2
      exit 2
      ;;
  esac
done
echo "=== shmhub: all test stages passed ($STAGES)"
