"""Python gRPC stubs for shmhub.v1, generated from proto/ when asked for.

Nothing is checked in or installed: protoc and the gRPC Python plugin of
Debian's protobuf-compiler-grpc turn proto/shmhub/v1/hub.proto into
hub_pb2.py and hub_pb2_grpc.py (the Python runtime is python3-grpcio and
python3-protobuf). Run with /usr/bin/python3, which sees those packages.

  import shmhub_stubs
  hub_pb2, hub_pb2_grpc = shmhub_stubs.load()

As a program it writes the stubs into a directory instead, for callers that
put that directory on their own sys.path (tests/e2e does):

  /usr/bin/python3 shmhub_stubs.py OUT_DIR [PROTO_DIR]
"""

import importlib
import os
import shutil
import subprocess
import sys
import tempfile

DEFAULT_PROTO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "proto")
HUB_PROTO = "shmhub/v1/hub.proto"
# google/protobuf/{duration,timestamp}.proto, which hub.proto imports.
WELL_KNOWN_PROTO_DIR = "/usr/include"


def _tool(name):
    path = shutil.which(name) or os.path.join("/usr/bin", name)
    if not os.path.exists(path):
        raise RuntimeError("%s not found: install protobuf-compiler-grpc and protobuf-compiler "
                           "(scripts/install-deps.sh)" % name)
    return path


def generate(out_dir, proto_dir=DEFAULT_PROTO_DIR):
    """Writes shmhub/v1/hub_pb2.py and hub_pb2_grpc.py under out_dir."""
    result = subprocess.run(
        [_tool("protoc"), "-I" + proto_dir, "-I" + WELL_KNOWN_PROTO_DIR,
         "--python_out=" + out_dir, "--grpc_out=" + out_dir,
         "--plugin=protoc-gen-grpc=" + _tool("grpc_python_plugin"), HUB_PROTO],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise RuntimeError("protoc failed on %s: %s" % (HUB_PROTO, result.stderr.strip()))


def load(proto_dir=DEFAULT_PROTO_DIR):
    """Generates the stubs into a temporary directory, imports them and
    returns (hub_pb2, hub_pb2_grpc). The directory is gone afterwards: the
    modules are in memory once imported."""
    with tempfile.TemporaryDirectory(prefix="shmhub-stubs-") as out_dir:
        generate(out_dir, proto_dir)
        sys.path.insert(0, out_dir)
        try:
            hub_pb2 = importlib.import_module("shmhub.v1.hub_pb2")
            hub_pb2_grpc = importlib.import_module("shmhub.v1.hub_pb2_grpc")
        finally:
            sys.path.remove(out_dir)
    return hub_pb2, hub_pb2_grpc


def main(argv):
    if len(argv) not in (2, 3):
        print("usage: shmhub_stubs.py OUT_DIR [PROTO_DIR]", file=sys.stderr)
        return 2
    try:
        generate(*argv[1:])
    except RuntimeError as error:
        print("shmhub_stubs: %s" % error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
