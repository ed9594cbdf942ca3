"""deploy/docker/Dockerfile builds what the README says and ships what the
binaries need: its build stage runs exactly the README's Deploy commands,
the runtime stage installs exactly the Debian packages that own the shared
libraries `ldd` finds in the binaries it copies (mapped with `dpkg -S`), it
copies the binaries the build stage builds, runs as a non-root numeric
user, health-checks through `shmhubctl health`, and carries OCI labels.

No container engine runs here, so the image itself is never built; the
binaries compared are the ones ctest's build tree holds (SHMHUBD, SHMHUBCTL,
SHMHUB_GUEST, ECHO_HOST, ECHO_GUEST), built from the same sources on the
same Debian release."""

import os
import re
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "testing"))
import deploy_files  # noqa: E402
from shmhub_processes import binary  # noqa: E402

# Binary name in the image -> environment variable with the build tree's copy.
SHIPPED = {"shmhubd": "SHMHUBD", "shmhubctl": "SHMHUBCTL", "shmhub-guest": "SHMHUB_GUEST",
           "echo_host": "ECHO_HOST", "echo_guest": "ECHO_GUEST"}


def shared_libraries(path):
    """Absolute paths of the shared libraries `ldd path` resolves."""
    out = subprocess.run(["ldd", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, check=True, timeout=30).stdout
    libraries = []
    for line in out.splitlines():
        if "not found" in line:
            raise AssertionError("ldd %s: %s" % (path, line.strip()))
        match = re.search(r"(?:=> )?(/\S+) \(0x", line)
        if match:
            libraries.append(match.group(1))
    return libraries


def path_variants(library):
    """With merged /usr a library may be registered under /lib or /usr/lib,
    or only under its real path."""
    variants = []
    for path in (library, os.path.realpath(library)):
        variants += [path, path[len("/usr"):] if path.startswith("/usr/") else "/usr" + path]
    return variants


def owning_packages(libraries):
    """{library: set of Debian packages that installed it}, from one
    `dpkg -S` over every path variant."""
    variants = sorted({v for library in libraries for v in path_variants(library)})
    # Exit status 1 just means some variants are not registered.
    out = subprocess.run(["dpkg", "-S"] + variants, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, check=False, timeout=60).stdout
    owners_of = {}
    for line in out.splitlines():
        owners, _, path = line.rpartition(": ")
        owners_of[path] = {owner.strip().split(":")[0] for owner in owners.split(",")}
    result = {}
    for library in libraries:
        found = [owners_of[v] for v in path_variants(library) if v in owners_of]
        if not found:
            raise AssertionError("no Debian package owns %s" % library)
        result[library] = found[0]
    return result


class ContainerImageTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.stages = deploy_files.dockerfile_stages()
        cls.build = cls.stages["build"]
        cls.runtime = cls.stages["runtime"]

    def test_stages_are_build_then_runtime(self):
        self.assertEqual(list(self.stages), ["build", "runtime"])

    def test_build_stage_runs_exactly_the_readme_deploy_build_commands(self):
        readme = deploy_files.readme_build_commands()
        self.assertTrue(readme)
        self.assertEqual(self.build.all("RUN"), readme)

    def test_build_stage_copies_the_install_script_before_running_it(self):
        # The install script must be in the image before the first RUN uses it.
        first_run = [name for name, _ in self.build.instructions].index("RUN")
        copied = [args.split()[0] for name, args in self.build.instructions[:first_run]
                  if name == "COPY"]
        self.assertIn("scripts/install-deps.sh", copied)

    def shipped_binaries(self):
        """{image path: build-stage path} of the runtime stage's COPY --from=build."""
        shipped = {}
        for args in self.runtime.all("COPY"):
            words = args.split()
            if words[0] != "--from=build":
                continue
            destination = words[-1]
            for source in words[1:-1]:
                shipped[os.path.join(destination, os.path.basename(source))] = source
        return shipped

    def test_runtime_copies_each_binary_the_build_stage_builds(self):
        shipped = self.shipped_binaries()
        self.assertEqual({os.path.basename(p) for p in shipped}, set(SHIPPED))
        (build_command,) = [c for c in self.build.all("RUN") if "--target" in c]
        targets = build_command.split("--target", 1)[1].split()
        self.assertEqual(set(targets), set(SHIPPED))
        build_dir = re.search(r"--build (\S+)", build_command).group(1)
        for source in shipped.values():
            with self.subTest(source=source):
                # /src/<build dir>/<folder>/<binary>, as the build tree lays it out.
                relative = os.path.relpath(source, "/src")
                self.assertTrue(relative.startswith(build_dir + "/"), source)
                folder = os.path.dirname(relative[len(build_dir) + 1:])
                built = binary(SHIPPED[os.path.basename(source)])
                self.assertEqual(os.path.basename(os.path.dirname(built)), folder)

    def test_runtime_packages_are_exactly_the_owners_of_the_linked_libraries(self):
        (install,) = [args for args in self.runtime.all("RUN") if "apt-get install" in args]
        listed = deploy_files.apt_install_packages(install)
        self.assertEqual(len(listed), len(set(listed)), "duplicates in " + install)
        libraries = set()
        for name, variable in SHIPPED.items():
            linked = shared_libraries(binary(variable))
            self.assertTrue(linked, name)
            libraries.update(linked)
        needed = set().union(*owning_packages(sorted(libraries)).values())
        self.assertEqual(sorted(listed), sorted(needed))

    def test_runtime_cleans_apt_lists_in_the_same_layer(self):
        (install,) = [args for args in self.runtime.all("RUN") if "apt-get install" in args]
        self.assertIn("--no-install-recommends", install)
        self.assertIn("rm -rf /var/lib/apt/lists/*", install)

    def test_runs_as_a_non_root_numeric_user(self):
        user = self.runtime.one("USER")
        self.assertRegex(user, r"^\d+:\d+$")
        uid, gid = (int(x) for x in user.split(":"))
        self.assertNotEqual(uid, 0)
        self.assertNotEqual(gid, 0)
        # The user the image creates is that one.
        created = " ".join(self.runtime.all("RUN"))
        self.assertIn("--uid %d" % uid, created)
        self.assertIn("--gid %d" % gid, created)

    def test_healthcheck_asks_the_daemons_grpc_health_service_with_shmhubctl(self):
        options, argv = deploy_files.healthcheck_command(self.runtime)
        self.assertEqual(os.path.basename(argv[0]), "shmhubctl")
        self.assertIn(argv[0], self.shipped_binaries())
        self.assertEqual(argv[-1], "health")
        self.assertTrue(any(o.startswith("--timeout=") for o in options))

    def test_entrypoint_is_the_shipped_daemon(self):
        entrypoint = deploy_files.exec_form(self.runtime.one("ENTRYPOINT"))
        self.assertEqual(len(entrypoint), 1)
        self.assertIn(entrypoint[0], self.shipped_binaries())
        self.assertEqual(os.path.basename(entrypoint[0]), "shmhubd")

    def test_oci_labels_name_the_image_and_its_version(self):
        labels = dict(re.findall(r'(org\.opencontainers\.image\.[a-z.]+)="([^"]*)"',
                                 " ".join(self.runtime.all("LABEL"))))
        for key in ("title", "description", "version", "revision", "created", "base.name"):
            self.assertIn("org.opencontainers.image." + key, labels)
        version_default = re.search(r"^VERSION=(\S+)$", "\n".join(self.runtime.all("ARG")),
                                    re.MULTILINE).group(1)
        project = re.search(r"project\(shmhub VERSION (\S+)",
                            deploy_files.read(os.path.join(deploy_files.ROOT, "CMakeLists.txt")))
        self.assertEqual(version_default, project.group(1))

    def test_exposed_ports_are_the_default_cmds_listen_ports(self):
        cmd = deploy_files.flag_values(deploy_files.exec_form(self.runtime.one("CMD")))
        exposed = {int(p) for p in self.runtime.one("EXPOSE").split()}
        self.assertEqual(exposed, {deploy_files.port_of(cmd["listen"]),
                                   deploy_files.port_of(cmd["metrics_listen"])})


if __name__ == "__main__":
    unittest.main()
