"""examples/orchestrator.py against a real shmhubd on an ephemeral
127.0.0.1 port, with the real shmhub-guest it launches itself:

- its guest is SIGKILLed: the daemon reports CRASHED and the orchestrator
  relaunches a guest that attaches again;
- the daemon is SIGKILLed and a new one started on the same address and
  segment: it adopts the segment and continues the hub instance, the
  orchestrator's watch resumes after its last event, and the guest rides
  through;
- the daemon is SIGKILLed and its segment and state removed before a new one
  starts: the orchestrator's watch resumes, finds a new hub instance, kills
  the guest left running on the old segment and relaunches one.

Run by Debian's /usr/bin/python3 (python3-grpcio); the orchestrator
generates its stubs from proto/ itself."""

import os
import re
import signal
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "testing"))
from shmhub_processes import WAIT_SECONDS, Child, Daemon, binary  # noqa: E402

ORCHESTRATOR = os.path.join(HERE, "..", "..", "examples", "orchestrator.py")
LAUNCHED = r"^(?:launched|relaunched) guest pid=(\d+) peer_id=(\d+) epoch=(\d+)"


def alive(pid):
    """Whether `pid` is a live (not zombie) process."""
    try:
        with open("/proc/%d/stat" % pid, encoding="utf-8") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def parent_of(pid):
    with open("/proc/%d/stat" % pid, encoding="utf-8") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


class OrchestratorProcessTest(unittest.TestCase):
    def setUp(self):
        tmp = tempfile.TemporaryDirectory(prefix="shmhub-orchestrator-")
        self.addCleanup(tmp.cleanup)
        self.tmp = tmp.name
        self.daemons = 0

    def start_daemon(self, listen="127.0.0.1:0"):
        self.daemons += 1
        daemon = Daemon(["--listen=" + listen, "--metrics_listen=",
                         "--segment=%s/segment" % self.tmp, "--socket=%s/hub.sock" % self.tmp,
                         "--max_guests=2", "--heartbeat_interval=20ms", "--crash_timeout=400ms",
                         "--shutdown_grace=2s"],
                        os.path.join(self.tmp, "shmhubd-%d.err" % self.daemons))
        self.addCleanup(daemon.stop, signal.SIGKILL)
        return daemon

    def start_orchestrator(self, daemon, relaunches=1):
        orchestrator = Child(
            ["/usr/bin/python3", "-B", ORCHESTRATOR, "--hub=" + daemon.grpc,
             "--guest=" + binary("SHMHUB_GUEST"), "--guest_arg=--heartbeat_interval=20ms",
             "--relaunches=%d" % relaunches, "--hub_timeout=%d" % WAIT_SECONDS],
            os.path.join(self.tmp, "orchestrator.err"))
        self.addCleanup(orchestrator.stop, signal.SIGKILL)
        return orchestrator

    def expect(self, child, pattern, *others):
        line = child.wait_for_line(pattern)
        context = "\n\n".join(c.transcript() for c in (child,) + others)
        self.assertIsNotNone(line, "no line matching %r\n%s" % (pattern, context))
        return re.search(pattern, line)

    def expect_guest_attached(self, orchestrator, *others):
        """The next launched guest: its pid, after checking it is the
        orchestrator's child and the daemon reported it ATTACHED."""
        launched = self.expect(orchestrator, LAUNCHED, *others)
        pid, peer_id, epoch = (int(g) for g in launched.groups())
        self.assertEqual(parent_of(pid), orchestrator.pid)
        self.expect(orchestrator, r"^attached peer_id=%d epoch=%d$" % (peer_id, epoch), *others)
        return pid, launched.string

    def test_killed_guest_is_reported_crashed_and_relaunched(self):
        daemon = self.start_daemon()
        orchestrator = self.start_orchestrator(daemon)
        pid, launched = self.expect_guest_attached(orchestrator, daemon)
        self.assertTrue(launched.startswith("launched "))
        peer = re.search(r"peer_id=\d+ epoch=\d+", launched).group(0)

        os.kill(pid, signal.SIGKILL)
        self.expect(orchestrator, r"^crashed %s detector=HEARTBEAT$" % peer, daemon)
        new_pid, relaunched = self.expect_guest_attached(orchestrator, daemon)
        self.assertIn("after=CRASHED relaunch=1", relaunched)
        self.assertNotEqual(new_pid, pid)
        self.expect(orchestrator, r"^done relaunches=1$", daemon)
        self.assertEqual(orchestrator.wait(), 0, orchestrator.transcript())
        self.assertFalse(alive(new_pid), "the orchestrator left its guest running")

    def test_restarted_daemon_adopts_the_segment_and_the_guest_rides_through(self):
        first = self.start_daemon()
        orchestrator = self.start_orchestrator(first)
        guest, _ = self.expect_guest_attached(orchestrator, first)

        first.stop(signal.SIGKILL)
        second = self.start_daemon_on(first.grpc)
        self.assertEqual(second.instance, first.instance)
        self.expect(orchestrator, r"^watch interrupted \(UNAVAILABLE\); resuming after "
                    r"sequence \d+$", second)
        # Two crash timeouts on the new daemon: the guest keeps heartbeating
        # into the adopted segment, nothing ends its occupancy.
        time.sleep(1.0)
        self.assertTrue(alive(guest), "the guest did not ride through the restart")
        self.assertNotRegex(orchestrator.transcript(), r"relaunched|resync|crashed")
        orchestrator.process.send_signal(signal.SIGTERM)
        self.assertEqual(orchestrator.wait(), 0, orchestrator.transcript())

    def test_restarted_daemon_without_its_state_gets_a_relaunched_guest_and_the_orphan_is_killed(self):
        first = self.start_daemon()
        orchestrator = self.start_orchestrator(first)
        orphan, _ = self.expect_guest_attached(orchestrator, first)

        # A crash, and the segment and its state removed by hand: the guest
        # attached by path stays up on a segment nobody watches any more,
        # and the next daemon starts a new instance.
        first.stop(signal.SIGKILL)
        for name in ("segment", "segment.state"):
            os.unlink(os.path.join(self.tmp, name))
        second = self.start_daemon_on(first.grpc)
        self.assertNotEqual(second.instance, first.instance)
        self.expect(orchestrator, r"^watch interrupted \(UNAVAILABLE\); resuming after "
                    r"sequence \d+$", second)
        self.expect(orchestrator, r"^watch resync: REASON_INSTANCE_CHANGED$", second)
        self.expect(orchestrator, r"^hub restarted: instance %s -> %s$"
                    % (first.instance, second.instance), second)
        new_pid, relaunched = self.expect_guest_attached(orchestrator, second)
        self.assertIn("after=HUB_RESTARTED relaunch=1", relaunched)
        self.assertFalse(alive(orphan), "the guest on the old segment is still running")
        self.expect(orchestrator, r"^done relaunches=1$", second)
        self.assertEqual(orchestrator.wait(), 0, orchestrator.transcript())
        self.assertFalse(alive(new_pid))

    def test_sigterm_stops_the_guest_in_order_and_exits_zero(self):
        daemon = self.start_daemon()
        orchestrator = self.start_orchestrator(daemon, relaunches=0)
        pid, _ = self.expect_guest_attached(orchestrator, daemon)
        orchestrator.process.send_signal(signal.SIGTERM)
        self.expect(orchestrator, r"^stopping on SIGTERM$", daemon)
        self.assertEqual(orchestrator.wait(), 0, orchestrator.transcript())
        self.assertFalse(alive(pid))
        # The guest left in order: no crash, no relaunch.
        self.assertFalse([line for line in orchestrator.lines
                          if line.startswith(("crashed", "relaunched"))], orchestrator.lines)

    def start_daemon_on(self, address):
        """A daemon on `address`, retried while the old one's port is not
        yet free again (bounded)."""
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            try:
                return self.start_daemon(address)
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.2)


if __name__ == "__main__":
    unittest.main()
