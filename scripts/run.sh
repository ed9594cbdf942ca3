#!/usr/bin/env bash
# Installs what is missing, builds, and runs shmhub on its defaults.
# Until shmhubd lands (issue #3) this runs the segment demo: it creates a hub
# segment with the daemon's default geometry at /dev/shm/shmhub, reports its
# layout, and removes it again. Extra arguments are passed through.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

"$ROOT/scripts/install-deps.sh"
cmake -S "$ROOT" -B "$ROOT/build" -G Ninja > "$ROOT/build.configure.log" 2>&1 \
  || { cat "$ROOT/build.configure.log"; exit 1; }
cmake --build "$ROOT/build" -j "$(nproc)" --target segment_demo
exec "$ROOT/build/examples/segment_demo" "$@"
