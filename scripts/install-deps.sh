#!/usr/bin/env bash
# Installs the Debian 12 packages shmhub needs to build, test and run.
# Idempotent: packages already present are not reinstalled, and apt is not
# touched at all when nothing is missing.
set -euo pipefail

PACKAGES=(
  # build
  g++ cmake ninja-build make pkg-config
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler grpc-proto
  libabsl-dev prometheus-cpp-dev libgtest-dev libgmock-dev libbenchmark-dev
  # sanitizer and fuzz builds (clang + its runtimes)
  clang libclang-rt-14-dev
  # real peers used by the end-to-end and deploy/ tests
  prometheus python3-grpcio python3-protobuf python3-yaml curl
  # validates deploy/compose.yaml against the Compose schema (no engine needed)
  docker-compose
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "install-deps: installing ${missing[*]}" >&2
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
