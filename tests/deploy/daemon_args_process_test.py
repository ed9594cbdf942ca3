"""shmhubd's arguments in the image (ENTRYPOINT + CMD), compose.yaml, the
Kubernetes DaemonSet and the example overlay's patch agree with the daemon
and with the files around them.

For each, the real shmhubd is started with exactly those arguments, except
that the --segment and --socket paths are moved under a temporary directory
and --listen / --metrics_listen become 127.0.0.1:0 (free ports); then the
image's own HEALTHCHECK command (its --hub pointed at the chosen port) must
report SERVING, /metrics must answer, and the example guests of compose and
Kubernetes, run with their exact arguments (the socket path moved the same
way), must attach. Around that: every flag is one `shmhubd --help` lists;
the ports the arguments name are the ones published, probed, scraped and
health-checked; the segment and socket directories are the mounted volumes;
compose's echo host and guest, run with their exact arguments, exchange and
check echoes through the daemon;
the compose tmpfs holds two segments of the size the daemon really creates,
which is also the size the files' comments state."""

import os
import re
import signal
import stat
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "testing"))
import deploy_files  # noqa: E402
from shmhub_processes import Child, Daemon, binary, http_get  # noqa: E402

# Binaries the image installs -> the build tree's copies.
IMAGE_BINARIES = {"shmhubd": "SHMHUBD", "shmhubctl": "SHMHUBCTL", "shmhub-guest": "SHMHUB_GUEST",
                  "echo_host": "ECHO_HOST", "echo_guest": "ECHO_GUEST"}
PATH_FLAGS = ("segment", "socket")
ADDRESS_FLAGS = ("listen", "metrics_listen")


def local_binary(image_path):
    return binary(IMAGE_BINARIES[os.path.basename(image_path)])


def localize(args, root):
    """`args` with path flags moved under `root` (parents created, mode 0750
    as the volumes are) and address flags on free 127.0.0.1 ports."""
    localized = []
    for arg in args:
        flag, value = arg[2:].split("=", 1)
        if flag in PATH_FLAGS and value:
            value = root + value
            os.makedirs(os.path.dirname(value), mode=0o750, exist_ok=True)
        elif flag in ADDRESS_FLAGS and value:
            value = "127.0.0.1:0"
        localized.append("--%s=%s" % (flag, value))
    return localized


def help_flags():
    out = subprocess.run([binary("SHMHUBD"), "--help"], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, check=False, timeout=30).stdout
    return set(re.findall(r"^\s+--([a-z_]+) \(", out, re.MULTILINE))


def segment_sizes_stated(path):
    """Byte counts a file's comments state as "a segment of N bytes"."""
    text = deploy_files.read(path)
    return [int(n.replace(",", "")) for n in
            re.findall(r"segment of ([0-9,]+)\s*(?:#\s*)?bytes", text)]


def tmpfs_size_bytes(options):
    size = dict(o.split("=") for o in options.split(","))["size"]
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    return int(size[:-1]) * units[size[-1]] if size[-1] in units else int(size)


class DaemonArgsProcessTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.runtime = deploy_files.dockerfile_stages()["runtime"]
        cls.entrypoint = deploy_files.exec_form(cls.runtime.one("ENTRYPOINT"))
        cls.image_cmd = deploy_files.exec_form(cls.runtime.one("CMD"))
        _, cls.healthcheck = deploy_files.healthcheck_command(cls.runtime)
        cls.compose = deploy_files.compose()
        cls.base = deploy_files.kubernetes_objects(deploy_files.BASE)
        cls.overlay = deploy_files.kubernetes_objects(deploy_files.OVERLAY)
        cls.daemon_pod = cls.base[("DaemonSet", "shmhubd")]["spec"]["template"]["spec"]
        cls.known_flags = help_flags()

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="shmhub-deploy-")
        self.addCleanup(self.tmp.cleanup)
        self.root = self.tmp.name

    # --- running the real daemon -------------------------------------------

    def start_daemon(self, argv, name):
        """Starts argv (the image's ENTRYPOINT + arguments), localized."""
        self.assertEqual(argv[0], self.entrypoint[0])
        unknown = set(deploy_files.flag_values(argv[1:])) - self.known_flags
        self.assertFalse(unknown, "flags shmhubd --help does not list")
        args = localize(argv[1:], self.root)
        daemon = Daemon(args, os.path.join(self.root, name + ".err"))
        self.addCleanup(daemon.stop, signal.SIGKILL)
        flags = deploy_files.flag_values(args)
        self.assertEqual(daemon.segment, flags["segment"])
        self.assertEqual(daemon.socket, flags["socket"])
        return daemon

    def assert_serves(self, daemon):
        # The image's HEALTHCHECK, pointed at the port the daemon picked.
        check = [local_binary(self.healthcheck[0])] + [
            "--hub=" + daemon.grpc if a.startswith("--hub=") else a for a in self.healthcheck[1:]]
        result = subprocess.run(check, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                check=False, timeout=30)
        self.assertEqual(result.returncode, 0, result.stderr + daemon.transcript())
        self.assertIn("SERVING", result.stdout)
        status, body = http_get("http://%s/metrics" % daemon.metrics)
        self.assertEqual(status, 200)
        self.assertIn("shmhub_build_info", body)
        # Guests share these through group 10001 (docs/operations.md).
        for path in (daemon.segment, daemon.socket):
            self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o660, path)

    def start_container_process(self, argv, name):
        """A container's argv (image binary, paths localized)."""
        child = Child([local_binary(argv[0])] + localize(argv[1:], self.root),
                      os.path.join(self.root, name + ".err"))
        self.addCleanup(child.stop, signal.SIGKILL)
        return child

    def expect_line(self, child, pattern):
        self.assertIsNotNone(child.wait_for_line(pattern), child.transcript())

    def assert_guest_attaches(self, argv, name):
        """Runs shmhub-guest as a container would until it attaches, then
        stops it in order."""
        self.assertEqual(os.path.basename(argv[0]), "shmhub-guest")
        guest = self.start_container_process(argv, name)
        self.expect_line(guest, r"^attached peer_id=\d+ epoch=\d+")
        self.assertEqual(guest.stop(signal.SIGTERM), 0, guest.transcript())

    def assert_echo_pair_works(self, host_argv, guest_argv):
        """Runs the echo host and guest as their containers would: the host
        registers, the guest attaches and its first round of echoes comes
        back whole; both then stop in order."""
        self.assertEqual(os.path.basename(host_argv[0]), "echo_host")
        self.assertEqual(os.path.basename(guest_argv[0]), "echo_guest")
        host = self.start_container_process(host_argv, "echo-host")
        self.expect_line(host, r"^echo_host registered$")
        guest = self.start_container_process(guest_argv, "echo-guest")
        self.expect_line(guest, r"^attached peer_id=\d+ epoch=\d+$")
        self.expect_line(guest, r"^echoing peer_id=\d+ epoch=\d+$")
        self.assertEqual(guest.stop(signal.SIGTERM), 0, guest.transcript())
        self.assertEqual(host.stop(signal.SIGTERM), 0, host.transcript())

    def assert_shmhubd_stops_cleanly(self, daemon):
        """Every shipped configuration stops with --stop_mode=handover: exit 0,
        the segment and its state log left for the next daemon, the path's
        lock released and removed."""
        self.assertEqual(daemon.stop(signal.SIGTERM), 0, daemon.transcript())
        self.assertTrue(os.path.exists(daemon.segment), "handover removed the segment")
        self.assertTrue(os.path.exists(daemon.segment + ".state"))
        self.assertFalse(os.path.exists(daemon.segment + ".lock"))

    # --- the four argument lists ---------------------------------------------

    def test_image_default_arguments_serve_health_and_metrics(self):
        flags = deploy_files.flag_values(self.image_cmd)
        self.assertEqual(deploy_files.port_of(flags["listen"]),
                         deploy_files.port_of(self.healthcheck_hub()))
        # The README's `docker run` mounts a tmpfs on both directories.
        mounted = re.findall(r"--tmpfs (/\S+?):", deploy_files.readme_section("Deploy"))
        self.assertEqual(sorted(mounted), sorted(os.path.dirname(flags[f]) for f in PATH_FLAGS))
        daemon = self.start_daemon(self.entrypoint + self.image_cmd, "image")
        self.assert_serves(daemon)
        self.assert_shmhubd_stops_cleanly(daemon)

    def healthcheck_hub(self):
        (hub,) = [a.split("=", 1)[1] for a in self.healthcheck if a.startswith("--hub=")]
        return hub

    def test_compose_arguments_ports_volumes_and_guest_agree_with_the_daemon(self):
        services = self.compose["services"]
        shmhubd = services["shmhubd"]
        self.assertNotIn("entrypoint", shmhubd)  # the image's
        flags = deploy_files.flag_values(shmhubd["command"])
        # gRPC published by the namespace holder, health-checked by the image.
        network_owner = shmhubd["network_mode"].split(":", 1)[1]
        published = [int(p.split(":")[-1]) for p in services[network_owner]["ports"]]
        self.assertIn(deploy_files.port_of(flags["listen"]), published)
        self.assertEqual(deploy_files.port_of(flags["listen"]),
                         deploy_files.port_of(self.healthcheck_hub()))
        # Prometheus shares the namespace and scrapes the shipped target.
        self.assertEqual(services["prometheus"]["network_mode"], shmhubd["network_mode"])
        config = deploy_files.load_yaml_documents(
            os.path.join(deploy_files.DEPLOY, "prometheus", "prometheus.yml"))[0]
        (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "shmhub"]
        self.assertEqual(job["static_configs"][0]["targets"], [flags["metrics_listen"]])
        self.assertIn(9090, published)
        # Segment and socket directories are the two volumes.
        mounts = dict(reversed(v.split(":")[:2]) for v in shmhubd["volumes"])
        for flag in PATH_FLAGS:
            self.assertIn(os.path.dirname(flags[flag]), mounts, flag)
        host, guest = services["echo-host"], services["example-guest"]
        for client in (host, guest):
            client_mounts = dict(reversed(v.split(":")[:2]) for v in client["volumes"])
            self.assertEqual(deploy_files.flag_values(client["command"])["socket"],
                             flags["socket"])
            self.assertEqual(client_mounts[os.path.dirname(flags["socket"])],
                             mounts[os.path.dirname(flags["socket"])])

        daemon = self.start_daemon(self.entrypoint + shmhubd["command"], "compose")
        self.assert_serves(daemon)
        self.assert_echo_pair_works(host["entrypoint"] + host["command"],
                                    guest["entrypoint"] + guest["command"])
        # The segment tmpfs holds two segments of the size shmhubd made.
        size = os.stat(daemon.segment).st_size
        options = self.compose["volumes"][mounts[os.path.dirname(flags["segment"])]]
        self.assertGreaterEqual(tmpfs_size_bytes(options["driver_opts"]["o"]), 2 * size)
        self.assertEqual(segment_sizes_stated(deploy_files.COMPOSE), [size])
        self.assert_shmhubd_stops_cleanly(daemon)

    def check_kubernetes_container(self, container, volumes):
        """Ports, probes and mounts of a shmhubd container in a DaemonSet."""
        self.assertNotIn("command", container)  # the image's ENTRYPOINT
        flags = deploy_files.flag_values(container["args"])
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        self.assertEqual(ports, {"grpc": deploy_files.port_of(flags["listen"]),
                                 "metrics": deploy_files.port_of(flags["metrics_listen"])})
        # Reachable on the pod IP (Service, probes, Prometheus).
        for flag in ADDRESS_FLAGS:
            self.assertTrue(flags[flag].startswith("0.0.0.0:"), flag)
        for probe in ("readinessProbe", "livenessProbe"):
            self.assertEqual(container[probe]["grpc"]["port"], ports["grpc"], probe)
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        for flag in PATH_FLAGS:
            directory = os.path.dirname(flags[flag])
            self.assertIn(directory, mounts, flag)
            # Same path on the node and in the container, so guests that
            # mount it see the daemon's paths.
            self.assertEqual(volumes[mounts[directory]]["hostPath"]["path"], directory)
        return flags

    def kubernetes_guest_argv(self):
        guest = deploy_files.containers(self.overlay[("Pod", "shmhub-example-guest")]["spec"])
        (container,) = guest.values()
        return container["command"] + container["args"]

    def test_kubernetes_daemonset_arguments_serve_and_the_example_guest_attaches(self):
        container = deploy_files.containers(self.daemon_pod)["shmhubd"]
        volumes = {v["name"]: v for v in self.daemon_pod["volumes"]}
        flags = self.check_kubernetes_container(container, volumes)
        guest_argv = self.kubernetes_guest_argv()
        self.assertEqual(deploy_files.flag_values(guest_argv[1:])["socket"], flags["socket"])
        daemon = self.start_daemon(self.entrypoint + container["args"], "daemonset")
        self.assert_serves(daemon)
        self.assert_guest_attaches(guest_argv, "pod-guest")
        self.assert_shmhubd_stops_cleanly(daemon)

    def test_example_overlay_arguments_serve_with_their_geometry(self):
        (patch,) = deploy_files.load_yaml_documents(
            os.path.join(deploy_files.OVERLAY, "daemonset-patch.yaml"))
        container = dict(deploy_files.containers(self.daemon_pod)["shmhubd"])
        container.update(deploy_files.containers(patch["spec"]["template"]["spec"])["shmhubd"])
        volumes = {v["name"]: v for v in self.daemon_pod["volumes"]}
        self.check_kubernetes_container(container, volumes)
        daemon = self.start_daemon(self.entrypoint + container["args"], "overlay")
        self.assert_serves(daemon)
        self.assert_guest_attaches(self.kubernetes_guest_argv(), "overlay-guest")
        stated = segment_sizes_stated(os.path.join(deploy_files.OVERLAY, "daemonset-patch.yaml"))
        self.assertEqual(stated, [os.stat(daemon.segment).st_size])
        self.assert_shmhubd_stops_cleanly(daemon)


if __name__ == "__main__":
    unittest.main()
