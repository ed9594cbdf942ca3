#!/usr/bin/env bash
# Runs every libFuzzer target built in BUILD_DIR/fuzz for SECONDS each.
# A target's corpus lives in BUILD_DIR/fuzz-corpus/<name>; when a target has
# a seed directory BUILD_DIR/fuzz/<name>.seeds (made by the build), it is
# merged in first. Exits non-zero on the first crash, leak or timeout.
set -euo pipefail
BUILD_DIR="${1:?usage: run_fuzzers.sh BUILD_DIR SECONDS}"
SECONDS_EACH="${2:?usage: run_fuzzers.sh BUILD_DIR SECONDS}"

shopt -s nullglob
targets=("$BUILD_DIR"/fuzz/*_fuzzer)
if ((${#targets[@]} == 0)); then
  echo "run_fuzzers: no fuzz targets in $BUILD_DIR/fuzz" >&2
  exit 1
fi
for target in "${targets[@]}"; do
  name="$(basename "$target")"
  corpus="$BUILD_DIR/fuzz-corpus/$name"
  mkdir -p "$corpus"
  seeds=()
  if [[ -d "$target.seeds" ]]; then seeds=("$target.seeds"); fi
  echo "--- fuzzing $name for ${SECONDS_EACH}s"
  log="$BUILD_DIR/fuzz-corpus/$name.log"
  rc=0
  "$target" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$BUILD_DIR/fuzz-corpus/$name-" \
    "$corpus" "${seeds[@]}" > "$log" 2>&1 || rc=$?
  tail -n 20 "$log"
  if ((rc != 0)); then
    echo "run_fuzzers: $name failed (exit $rc); artifacts in $BUILD_DIR/fuzz-corpus" >&2
    exit "$rc"
  fi
done
echo "run_fuzzers: ${#targets[@]} targets ran ${SECONDS_EACH}s each without a finding"
