"""A Python orchestrator driving shmhubd through stubs generated from hub.proto.

Usage: python_orchestrator.py STUBS_DIR HUB_TARGET GUEST_BINARY SEGMENT_PATH

Reserves a slot, starts shmhub-guest to claim it, checks ListPeers shows it
ATTACHED, then SIGKILLs the guest and waits on WatchEvents for CRASHED and
RECOVERED of that occupancy. Every wait has a deadline. On success the last
stdout line is `orchestrator ok peer_id=N epoch=E`; any failure exits 1 with
the reason on stderr. The guest is always killed and reaped before exiting.
"""

import queue
import signal
import subprocess
import sys
import threading
import time

WAIT_SECONDS = 20


def fail(message):
    print("orchestrator failed: " + message, file=sys.stderr, flush=True)
    sys.exit(1)


def main():
    if len(sys.argv) != 5:
        fail("usage: python_orchestrator.py STUBS_DIR HUB_TARGET GUEST_BINARY SEGMENT_PATH")
    stubs_dir, target, guest_binary, segment = sys.argv[1:]
    sys.path.insert(0, stubs_dir)
    import grpc
    from shmhub.v1 import hub_pb2, hub_pb2_grpc

    channel = grpc.insecure_channel(target)
    stub = hub_pb2_grpc.PeerHubStub(channel)
    info = stub.GetSegmentInfo(hub_pb2.GetSegmentInfoRequest(), timeout=WAIT_SECONDS)

    # Watch from the instance's first event so nothing between now and the
    # stream's start is missed.
    events = queue.Queue()
    stream = stub.WatchEvents(
        hub_pb2.WatchEventsRequest(resume_after_sequence=0,
                                   hub_instance_id=info.hub_instance_id))

    def pump():
        try:
            for response in stream:
                if response.HasField("event"):
                    events.put(response.event)
        except grpc.RpcError:
            pass  # cancelled at the end of main()

    threading.Thread(target=pump, daemon=True).start()

    reservation = stub.ReservePeer(hub_pb2.ReservePeerRequest(owner="python-e2e"),
                                   timeout=WAIT_SECONDS)
    peer_id, epoch = reservation.peer_id, reservation.epoch

    guest = subprocess.Popen(
        [guest_binary, "--segment=" + segment, "--peer_id=%d" % peer_id,
         "--epoch=%d" % epoch, "--heartbeat_interval=20ms"],
        stdout=subprocess.PIPE, text=True)
    try:
        line = guest.stdout.readline()
        if not line.startswith("attached "):
            fail("guest did not attach, said %r" % line)

        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            peers = stub.ListPeers(hub_pb2.ListPeersRequest(), timeout=WAIT_SECONDS).peers
            mine = [p for p in peers if p.peer_id == peer_id and p.epoch == epoch]
            if mine and mine[0].state == hub_pb2.PEER_STATE_ATTACHED:
                break
            if time.monotonic() > deadline:
                fail("ListPeers never showed peer %d ATTACHED: %s" % (peer_id, peers))
            time.sleep(0.02)

        guest.send_signal(signal.SIGKILL)
        guest.wait(timeout=WAIT_SECONDS)

        wanted = [hub_pb2.EVENT_KIND_CRASHED, hub_pb2.EVENT_KIND_RECOVERED]
        deadline = time.monotonic() + WAIT_SECONDS
        while wanted:
            left = deadline - time.monotonic()
            if left <= 0:
                fail("no %s for peer %d" % (hub_pb2.EventKind.Name(wanted[0]), peer_id))
            try:
                event = events.get(timeout=left)
            except queue.Empty:
                continue
            if event.peer_id == peer_id and event.epoch == epoch and event.kind == wanted[0]:
                wanted.pop(0)
    finally:
        if guest.poll() is None:
            guest.kill()
            guest.wait()
        stream.cancel()
        channel.close()

    print("orchestrator ok peer_id=%d epoch=%d" % (peer_id, epoch), flush=True)


if __name__ == "__main__":
    main()
