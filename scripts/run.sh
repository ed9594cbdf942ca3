#!/usr/bin/env bash
# Installs what is missing, builds, and runs shmhubd on its defaults:
# segment /dev/shm/shmhub, gRPC on 127.0.0.1:50051. Extra arguments are
# passed to shmhubd (see `build/server/shmhubd --help`). Ctrl-C stops it
# cleanly: watchers get HOST_SHUTDOWN and the segment file is removed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

"$ROOT/scripts/install-deps.sh"
cmake -S "$ROOT" -B "$ROOT/build" -G Ninja > "$ROOT/build.configure.log" 2>&1 \
  || { cat "$ROOT/build.configure.log"; exit 1; }
cmake --build "$ROOT/build" -j "$(nproc)" --target shmhubd shmhubctl shmhub-guest
exec "$ROOT/build/server/shmhubd" "$@"
