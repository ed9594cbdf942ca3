#!/usr/bin/python3
"""A small orchestrator: keeps one guest running on a shmhub node.

It reserves a slot over gRPC, launches shmhub-guest to claim it, watches the
daemon's events (resuming after the last sequence it saw whenever the stream
breaks) and relaunches the guest when its occupancy ends: the daemon reports
it CRASHED (or GOODBYE, EVICTED), the process exits, or the daemon itself
restarts (HOST_SHUTDOWN, or a resume that finds a new hub instance).

  /usr/bin/python3 examples/orchestrator.py --hub=127.0.0.1:50051 \\
      --guest=build/client/shmhub-guest

Needs Debian's python3-grpcio and protobuf-compiler-grpc; the stubs are
generated from proto/ at start (shmhub_stubs.py). The guest attaches by path,
so it must see the segment at the path the daemon reports (same host, or the
same volume). One line per step on stdout:

  hub HOST:PORT instance=ID segment=PATH
  launched guest pid=P peer_id=N epoch=E
  attached peer_id=N epoch=E
  crashed peer_id=N epoch=E detector=HEARTBEAT
  relaunched guest pid=P peer_id=N epoch=E after=CRASHED relaunch=K
  done relaunches=K                              (with --relaunches=K)

SIGTERM or SIGINT stops the guest in order (its goodbye) and exits 0.
Exit status 1: the hub stayed unreachable (or without a free slot) for
--hub_timeout, or refused a call.
"""

import argparse
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shmhub_stubs  # noqa: E402

import grpc  # noqa: E402

hub_pb2, hub_pb2_grpc = shmhub_stubs.load()

RPC_TIMEOUT_SECONDS = 5
# How long a stopped guest gets to say goodbye before SIGKILL.
GUEST_STOP_SECONDS = 5
BACKOFF_FIRST_SECONDS = 0.2
BACKOFF_MAX_SECONDS = 2.0

RETRIED_CODES = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED}

# Kinds that end the occupancy a guest holds.
ENDING_KINDS = {hub_pb2.EVENT_KIND_CRASHED, hub_pb2.EVENT_KIND_GOODBYE,
                hub_pb2.EVENT_KIND_EVICTED, hub_pb2.EVENT_KIND_RESERVATION_EXPIRED,
                hub_pb2.EVENT_KIND_RELEASED}


_say_lock = threading.Lock()


def say(line):
    """One whole line on stdout, also when both threads speak at once."""
    with _say_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def kind_name(kind):
    return hub_pb2.EventKind.Name(kind).replace("EVENT_KIND_", "")


class HubUnreachable(Exception):
    pass


class Stopping(Exception):
    """SIGTERM or SIGINT arrived while waiting for the hub."""


class EventWatcher(threading.Thread):
    """Streams WatchEvents into a queue. The first call asks for a snapshot;
    after a break it resumes after the last sequence seen on the same hub
    instance, so no event is missed. The daemon answers a resume it cannot
    serve (history pruned, or a new instance after a restart) with RESYNC and
    a fresh snapshot. Queue items: ("snapshot", Snapshot) and
    ("event", PeerEvent)."""

    def __init__(self, stub, out):
        super().__init__(daemon=True)
        self._stub = stub
        self._out = out
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._call = None

    def stop(self):
        self._stopped.set()
        with self._lock:
            if self._call is not None:
                self._call.cancel()

    def run(self):
        instance, resume_after = "", None
        backoff = BACKOFF_FIRST_SECONDS
        while not self._stopped.is_set():
            request = hub_pb2.WatchEventsRequest(snapshot_first=resume_after is None,
                                                 hub_instance_id=instance)
            if resume_after is not None:
                request.resume_after_sequence = resume_after
            with self._lock:
                if self._stopped.is_set():
                    return
                self._call = self._stub.WatchEvents(request)
            try:
                for response in self._call:
                    backoff = BACKOFF_FIRST_SECONDS
                    which = response.WhichOneof("message")
                    if which == "snapshot":
                        instance = response.snapshot.hub_instance_id
                        resume_after = response.snapshot.sequence
                        self._out.put(("snapshot", response.snapshot))
                    elif which == "event":
                        resume_after = response.event.sequence
                        self._out.put(("event", response.event))
                    elif which == "progress":
                        resume_after = response.progress.sequence
                    elif which == "resync":
                        say("watch resync: %s" % hub_pb2.Resync.Reason.Name(response.resync.reason))
                # The daemon ends streams when it shuts down; resume below.
            except grpc.RpcError as error:
                if self._stopped.is_set():
                    return
                say("watch interrupted (%s); resuming after sequence %s"
                    % (error.code().name, resume_after))
            self._stopped.wait(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_SECONDS)


class Orchestrator:
    def __init__(self, args):
        self.args = args
        self.channel = grpc.insecure_channel(args.hub)
        self.stub = hub_pb2_grpc.PeerHubStub(self.channel)
        self.events = queue.Queue()
        self.watcher = EventWatcher(self.stub, self.events)
        self.info = None
        self.guest = None            # subprocess.Popen of the current guest
        self.occupancy = None        # (peer_id, epoch, hub instance) it holds
        self.attached = False
        self.attach_deadline = 0.0
        self.exited_at = None        # when the guest process was seen to exit
        self.relaunches = 0
        self.stopping = threading.Event()
        self.stop_signal = None      # set by the SIGTERM/SIGINT handler

    # --- gRPC, retried while the daemon is away --------------------------
    def call(self, what, rpc):
        """Runs rpc() until it succeeds. UNAVAILABLE (the daemon is
        restarting) and RESOURCE_EXHAUSTED (no slot free until a crashed one
        is recovered) are retried with backoff for up to --hub_timeout;
        anything else is raised."""
        deadline = time.monotonic() + self.args.hub_timeout
        backoff = BACKOFF_FIRST_SECONDS
        while True:
            if self.stopping.is_set():
                raise Stopping()
            try:
                return rpc()
            except grpc.RpcError as error:
                if error.code() not in RETRIED_CODES:
                    raise
                if time.monotonic() + backoff > deadline:
                    raise HubUnreachable("%s kept failing with %s for %ss (hub %s)"
                                         % (what, error.code().name, self.args.hub_timeout,
                                            self.args.hub)) from error
            time.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_SECONDS)

    def reserve(self):
        self.info = self.call("GetSegmentInfo", lambda: self.stub.GetSegmentInfo(
            hub_pb2.GetSegmentInfoRequest(), timeout=RPC_TIMEOUT_SECONDS))
        request = hub_pb2.ReservePeerRequest(owner=self.args.owner,
                                             request_id=str(uuid.uuid4()))
        request.lease_ttl.FromSeconds(self.args.lease_ttl)
        # Retrying with the same request_id returns the same reservation, so
        # a reply lost to a broken connection does not take a second slot.
        reservation = self.call("ReservePeer", lambda: self.stub.ReservePeer(
            request, timeout=RPC_TIMEOUT_SECONDS))
        return reservation, self.info.hub_instance_id

    # --- the guest process ------------------------------------------------
    def launch(self, after=None):
        reservation, instance = self.reserve()
        argv = [self.args.guest, "--segment=" + reservation.segment_path,
                "--peer_id=%d" % reservation.peer_id, "--epoch=%d" % reservation.epoch]
        argv += self.args.guest_arg
        self.guest = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
        self.occupancy = (reservation.peer_id, reservation.epoch, instance)
        self.attached = False
        self.exited_at = None
        self.attach_deadline = time.monotonic() + self.args.attach_timeout
        where = "pid=%d peer_id=%d epoch=%d" % (self.guest.pid, reservation.peer_id,
                                                 reservation.epoch)
        if after is None:
            say("launched guest " + where)
        else:
            self.relaunches += 1
            say("relaunched guest %s after=%s relaunch=%d" % (where, after, self.relaunches))

    def stop_guest(self, sig=signal.SIGTERM):
        if self.guest is None:
            return
        if self.guest.poll() is None:
            self.guest.send_signal(sig)
            try:
                self.guest.wait(timeout=GUEST_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.guest.kill()
                self.guest.wait()
        self.guest = None

    def relaunch(self, after):
        # A guest whose occupancy ended is dead or must not go on using the
        # slot (a wedged process crashed by heartbeat); SIGKILL, no goodbye.
        self.stop_guest(signal.SIGKILL)
        self.launch(after=after)

    # --- events -----------------------------------------------------------
    def ours(self, event):
        return (self.occupancy is not None and event.hub_instance_id == self.occupancy[2]
                and (event.peer_id, event.epoch) == self.occupancy[:2])

    def on_event(self, event):
        if event.kind == hub_pb2.EVENT_KIND_HOST_SHUTDOWN:
            say("hub shutting down (instance %s)" % event.hub_instance_id)
            return None
        if not self.ours(event):
            return None
        peer = "peer_id=%d epoch=%d" % (event.peer_id, event.epoch)
        if event.kind == hub_pb2.EVENT_KIND_ATTACHED:
            self.attached = True
            say("attached " + peer)
            return None
        if event.kind == hub_pb2.EVENT_KIND_CRASHED:
            say("crashed %s detector=%s" % (peer, hub_pb2.Detector.Name(event.detector)
                                            .replace("DETECTOR_", "")))
        elif event.kind in ENDING_KINDS:
            say("%s %s" % (kind_name(event.kind).lower(), peer))
        return kind_name(event.kind) if event.kind in ENDING_KINDS else None

    def on_snapshot(self, snapshot):
        """A snapshot starts every stream and follows every RESYNC: events
        may have been missed, so it says where our occupancy stands."""
        if self.occupancy is None:
            return None
        peer_id, epoch, instance = self.occupancy
        if snapshot.hub_instance_id != instance:
            say("hub restarted: instance %s -> %s" % (instance, snapshot.hub_instance_id))
            return "HUB_RESTARTED"
        for peer in snapshot.peers:
            if peer.peer_id != peer_id:
                continue
            if peer.epoch != epoch or peer.state == hub_pb2.PEER_STATE_EMPTY:
                say("peer_id=%d epoch=%d ended while the watch was away" % (peer_id, epoch))
                return "LOST"
            if peer.state == hub_pb2.PEER_STATE_ATTACHED and not self.attached:
                self.attached = True
                say("attached peer_id=%d epoch=%d" % (peer_id, epoch))
        return None

    def next_item(self, timeout):
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            return None

    def step(self):
        """Handles one watch item (or 100 ms of none); returns why the guest
        must be relaunched, or None."""
        item = self.next_item(0.1)
        if item is not None:
            what, value = item
            reason = self.on_event(value) if what == "event" else self.on_snapshot(value)
            if reason is not None:
                return reason
        if self.guest is not None and self.guest.poll() is not None:
            # The daemon reports why the occupancy ended (CRASHED after its
            # detectors fire, GOODBYE, ...); wait that long for the verdict,
            # then relaunch anyway.
            if self.exited_at is None:
                self.exited_at = time.monotonic()
                say("guest pid=%d exited status=%d" % (self.guest.pid, self.guest.returncode))
            elif time.monotonic() - self.exited_at > self.verdict_seconds():
                return "EXITED"
        if (self.guest is not None and not self.attached and self.exited_at is None
                and time.monotonic() > self.attach_deadline):
            say("guest pid=%d did not attach within %ss" % (self.guest.pid,
                                                             self.args.attach_timeout))
            return "ATTACH_TIMEOUT"
        return None

    def verdict_seconds(self):
        crash_timeout = self.info.crash_timeout.ToTimedelta().total_seconds() if self.info else 1
        return crash_timeout + 2.0

    def done(self):
        return (self.args.relaunches > 0 and self.relaunches >= self.args.relaunches
                and self.attached)

    def wait_for_first_snapshot(self):
        # Launching only once the stream is open means the guest's ATTACHED
        # event cannot fall before it.
        deadline = time.monotonic() + self.args.hub_timeout
        while time.monotonic() < deadline:
            if self.stopping.is_set():
                raise Stopping()
            item = self.next_item(0.1)
            if item is not None and item[0] == "snapshot":
                return
        raise HubUnreachable("no WatchEvents snapshot from %s within %ss"
                             % (self.args.hub, self.args.hub_timeout))

    def run(self):
        info = self.call("GetSegmentInfo", lambda: self.stub.GetSegmentInfo(
            hub_pb2.GetSegmentInfoRequest(), timeout=RPC_TIMEOUT_SECONDS))
        say("hub %s instance=%s segment=%s" % (self.args.hub, info.hub_instance_id,
                                               info.segment_path))
        self.watcher.start()
        self.wait_for_first_snapshot()
        self.launch()
        while not self.stopping.is_set():
            reason = self.step()
            if reason is not None:
                self.relaunch(after=reason)
            if self.done():
                say("done relaunches=%d" % self.relaunches)
                break

    def close(self):
        self.stopping.set()
        self.stop_guest()
        self.watcher.stop()
        self.channel.close()


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Keep one shmhub guest running: reserve, launch, watch, relaunch.")
    parser.add_argument("--hub", default="127.0.0.1:50051", help="shmhubd's gRPC address")
    parser.add_argument("--guest", default="shmhub-guest",
                        help="guest program; gets --segment, --peer_id and --epoch")
    parser.add_argument("--guest_arg", action="append", default=[],
                        help="extra argument for the guest (repeat for more)")
    parser.add_argument("--owner", default="orchestrator.py", help="reservation owner")
    parser.add_argument("--lease_ttl", type=int, default=30,
                        help="seconds the guest has to claim its reservation")
    parser.add_argument("--attach_timeout", type=float, default=10,
                        help="seconds until a launched guest that has not attached is replaced")
    parser.add_argument("--hub_timeout", type=float, default=60,
                        help="seconds to keep retrying while the hub is unreachable")
    parser.add_argument("--relaunches", type=int, default=0,
                        help="exit 0 once this many relaunched guests attached (0: run forever)")
    return parser.parse_args(argv)


def main(argv):
    args = parse_args(argv)
    orchestrator = Orchestrator(args)

    def on_signal(signum, _frame):
        # Only a flag: the handler runs on the main thread, which may be
        # inside say() holding its lock.
        orchestrator.stop_signal = signal.Signals(signum).name
        orchestrator.stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        orchestrator.run()
    except Stopping:
        pass
    except HubUnreachable as error:
        print("orchestrator: %s" % error, file=sys.stderr, flush=True)
        return 1
    except grpc.RpcError as error:
        print("orchestrator: %s: %s" % (error.code().name, error.details()), file=sys.stderr,
              flush=True)
        return 1
    finally:
        if orchestrator.stop_signal:
            say("stopping on " + orchestrator.stop_signal)
        orchestrator.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
