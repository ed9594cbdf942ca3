"""Real shmhub processes for the Python tests (tests/deploy, tests/examples):
a child whose stdout lines can be awaited with a deadline, shmhubd started
on ephemeral 127.0.0.1 ports, and a plain HTTP GET.

Binaries come from the environment the ctest entry sets (SHMHUBD,
SHMHUBCTL, SHMHUB_GUEST: $<TARGET_FILE:...>). Every wait is bounded and
every child is killed and reaped by stop()."""

import os
import queue
import re
import signal
import subprocess
import threading
import time
import urllib.request

WAIT_SECONDS = 30
_LISTENING = re.compile(r"^shmhubd listening on (\S+) segment=(\S*) instance=(\S*) "
                        r"socket=(\S*) metrics=(\S*)$")


def binary(variable):
    """The path in environment variable `variable`; fails loudly if unset."""
    path = os.environ.get(variable)
    if not path:
        raise RuntimeError("%s is not set: run this test through ctest" % variable)
    return path


class Child:
    """A child process; stdout is read line by line on a thread so waits
    can have deadlines. stderr goes to a file, read back for messages."""

    def __init__(self, argv, stderr_path, env=None):
        self.argv = list(argv)
        self.stderr_path = stderr_path
        self.lines = []
        self._queue = queue.Queue()
        with open(stderr_path, "w", encoding="utf-8") as stderr:
            self.process = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=stderr,
                                            stdin=subprocess.DEVNULL, text=True, env=env)
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()

    def _pump(self):
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    @property
    def pid(self):
        return self.process.pid

    def wait_for_line(self, pattern, timeout=WAIT_SECONDS):
        """The first not yet consumed line matching regex `pattern`, or None
        when the deadline passes or stdout ends first."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                return None
            if line is None:
                self._queue.put(None)  # keep reporting the end
                return None
            self.lines.append(line)
            if regex.search(line):
                return line

    def stderr(self):
        with open(self.stderr_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def transcript(self):
        return "argv: %s\nstdout:\n%s\nstderr:\n%s" % (
            " ".join(self.argv), "\n".join(self.lines), self.stderr())

    def wait(self, timeout=WAIT_SECONDS):
        """The exit status, or None if still running at the deadline."""
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig=signal.SIGTERM, timeout=WAIT_SECONDS):
        """Sends `sig`, waits up to `timeout`, then SIGKILLs; returns the
        exit status."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            if self.wait(timeout) is None:
                self.process.kill()
        status = self.process.wait(timeout=WAIT_SECONDS)
        # stdout ends with the process (unless a grandchild holds it open).
        self._pump_thread.join(timeout=WAIT_SECONDS)
        if not self._pump_thread.is_alive():
            self.process.stdout.close()
        return status


class Daemon(Child):
    """shmhubd with `args`, started and waited for: grpc, segment, instance,
    socket and metrics hold the fields of its start line."""

    def __init__(self, args, stderr_path):
        super().__init__([binary("SHMHUBD")] + list(args), stderr_path)
        line = self.wait_for_line(r"^shmhubd listening on ")
        if line is None:
            self.stop(signal.SIGKILL)
            raise RuntimeError("shmhubd did not start\n" + self.transcript())
        self.grpc, self.segment, self.instance, self.socket, self.metrics = \
            _LISTENING.match(line).groups()


def http_get(url, timeout=10):
    """(status, body) of a GET on a 127.0.0.1 URL, never through a proxy
    the environment may name."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout) as response:
        return response.status, response.read().decode("utf-8", errors="replace")
