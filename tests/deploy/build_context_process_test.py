"""The build context .dockerignore leaves is enough to build the image: the
files `docker build -f deploy/docker/Dockerfile .` would send are copied to
a temporary directory (.dockerignore's patterns applied the way Docker
applies them), and the README's configure command must succeed there. The
build trees, VCS data and caches .dockerignore exists for stay out."""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deploy_files  # noqa: E402


def dockerignore_patterns():
    patterns = []
    for line in deploy_files.read(deploy_files.DOCKERIGNORE).splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            patterns.append(line.lstrip("/"))
    return patterns


def pattern_regex(pattern):
    """Docker's matching (Go filepath.Match plus **): * and ? stop at '/',
    ** crosses directories."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


class Ignore:
    def __init__(self, patterns):
        self.regexes = [pattern_regex(p) for p in patterns]

    def excludes(self, relative):
        """A path is excluded when it, or a directory above it, matches."""
        parts = relative.split("/")
        prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
        return any(r.fullmatch(p) for r in self.regexes for p in prefixes)


def context_files(ignore):
    """Relative paths of the files Docker would send."""
    files = []
    for directory, subdirs, names in os.walk(deploy_files.ROOT):
        relative_dir = os.path.relpath(directory, deploy_files.ROOT)
        prefix = "" if relative_dir == "." else relative_dir + "/"
        subdirs[:] = [d for d in subdirs if not ignore.excludes(prefix + d)]
        files += [prefix + n for n in names if not ignore.excludes(prefix + n)]
    return files


class BuildContextProcessTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        patterns = dockerignore_patterns()
        assert not any(p.startswith("!") for p in patterns), "exceptions are not modelled"
        cls.ignore = Ignore(patterns)

    def test_pattern_matching_follows_docker(self):
        ignore = Ignore(["build-*", "**/__pycache__", "fuzz"])
        self.assertTrue(ignore.excludes("build-asan/x/y.o"))
        self.assertTrue(ignore.excludes("tests/deploy/__pycache__/a.pyc"))
        self.assertTrue(ignore.excludes("__pycache__"))
        self.assertTrue(ignore.excludes("fuzz/CMakeLists.txt"))
        self.assertFalse(ignore.excludes("build_tools/x"))
        self.assertFalse(ignore.excludes("server/build-x"))
        self.assertFalse(ignore.excludes("tests/fuzz"))

    def test_build_trees_vcs_and_caches_stay_out(self):
        for path in (".git/HEAD", "build/CMakeCache.txt", "build-deploy/build.ninja",
                     "build-asan.configure.log", "tests/deploy/__pycache__/x.pyc"):
            with self.subTest(path=path):
                self.assertTrue(self.ignore.excludes(path))

    def test_files_the_dockerfile_copies_by_name_are_in_the_context(self):
        build = deploy_files.dockerfile_stages()["build"]
        for args in build.all("COPY"):
            sources = args.split()[:-1]
            for source in sources:
                if source != ".":
                    with self.subTest(source=source):
                        self.assertFalse(self.ignore.excludes(source))
                        self.assertTrue(os.path.exists(os.path.join(deploy_files.ROOT, source)))

    def test_readme_configure_command_succeeds_in_the_context(self):
        files = context_files(self.ignore)
        self.assertIn("CMakeLists.txt", files)
        (configure,) = [c for c in deploy_files.readme_build_commands()
                        if c.startswith("cmake -S")]
        with tempfile.TemporaryDirectory(prefix="shmhub-context-") as tmp:
            source = os.path.join(tmp, "src")
            for relative in files:
                target = os.path.join(source, relative)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                shutil.copy2(os.path.join(deploy_files.ROOT, relative), target)
            result = subprocess.run(configure.split(), cwd=source, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True, check=False,
                                    timeout=100)
            self.assertEqual(result.returncode, 0, result.stdout[-4000:])


if __name__ == "__main__":
    unittest.main()
