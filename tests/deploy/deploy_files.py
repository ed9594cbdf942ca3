"""Readers for the deployment files the tests in this folder compare with
each other and with the daemon: the Dockerfile's stages, the README's
Deploy commands, the compose file, the Kubernetes manifests, and shmhubd's
arguments in each of them."""

import glob
import json
import os
import re
import shlex

import yaml

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
DEPLOY = os.path.join(ROOT, "deploy")
DOCKERFILE = os.path.join(DEPLOY, "docker", "Dockerfile")
DOCKERIGNORE = os.path.join(ROOT, ".dockerignore")
COMPOSE = os.path.join(DEPLOY, "compose.yaml")
KUBERNETES = os.path.join(DEPLOY, "kubernetes")
BASE = os.path.join(KUBERNETES, "base")
OVERLAY = os.path.join(KUBERNETES, "overlays", "example")
README = os.path.join(ROOT, "README.md")


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def load_yaml_documents(path):
    return [doc for doc in yaml.safe_load_all(read(path)) if doc is not None]


def yaml_files():
    """Every YAML file under deploy/."""
    files = glob.glob(os.path.join(DEPLOY, "**", "*.yaml"), recursive=True)
    files += glob.glob(os.path.join(DEPLOY, "**", "*.yml"), recursive=True)
    return sorted(files)


# --- Dockerfile -----------------------------------------------------------

class Stage:
    def __init__(self, name):
        self.name = name
        self.instructions = []   # (INSTRUCTION, arguments text)

    def all(self, instruction):
        return [args for name, args in self.instructions if name == instruction]

    def one(self, instruction):
        found = self.all(instruction)
        if len(found) != 1:
            raise AssertionError("stage %s has %d %s instructions" % (self.name, len(found),
                                                                     instruction))
        return found[0]


def dockerfile_stages(path=DOCKERFILE):
    """{stage name: Stage}, instructions with comments dropped and line
    continuations joined."""
    logical, current = [], ""
    for raw in read(path).splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    stages = {}
    stage = None
    for line in logical:
        name, _, args = line.partition(" ")
        name, args = name.upper(), " ".join(args.split())
        if name == "FROM":
            match = re.fullmatch(r"\S+ AS (\S+)", args, re.IGNORECASE)
            stage = Stage(match.group(1) if match else str(len(stages)))
            stages[stage.name] = stage
        elif stage is not None:
            stage.instructions.append((name, args))
    return stages


def exec_form(args):
    """A JSON-array instruction argument (ENTRYPOINT, CMD, HEALTHCHECK CMD)."""
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def healthcheck_command(stage):
    """(options, argv) of the stage's HEALTHCHECK ... CMD [...]."""
    text = stage.one("HEALTHCHECK")
    options, _, command = text.partition("CMD ")
    return options.split(), exec_form(command)


def apt_install_packages(run_args):
    """The package names of the `apt-get install` in one RUN line."""
    packages = []
    for command in run_args.split("&&"):
        words = shlex.split(command)
        if words[:2] == ["apt-get", "install"]:
            packages += [w for w in words[2:] if not w.startswith("-")]
    return packages


# --- README ---------------------------------------------------------------

def readme_section(title):
    """The text of README.md's `## title` section."""
    match = re.search(r"^## %s\n(.*?)(?=^## |\Z)" % re.escape(title), read(README),
                      re.MULTILINE | re.DOTALL)
    if not match:
        raise AssertionError("README.md has no '## %s' section" % title)
    return match.group(1)


def readme_build_commands():
    """The commands of the first ```sh block of the README's Deploy
    section (the commands that build what the image ships), comments and
    trailing comments removed."""
    match = re.search(r"^```sh\n(.*?)^```", readme_section("Deploy"), re.MULTILINE | re.DOTALL)
    if not match:
        raise AssertionError("README.md's Deploy section has no ```sh block")
    commands = []
    for line in match.group(1).splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        if line and not line.startswith("#"):
            commands.append(" ".join(line.split()))
    return commands


# --- compose and Kubernetes ----------------------------------------------

def compose():
    return load_yaml_documents(COMPOSE)[0]


def kubernetes_objects(directory):
    """{(kind, name): object} of every manifest a kustomization lists as a
    resource in `directory` (not patches), following directory resources."""
    kustomization = load_yaml_documents(os.path.join(directory, "kustomization.yaml"))[0]
    objects = {}
    for resource in kustomization["resources"]:
        path = os.path.normpath(os.path.join(directory, resource))
        if os.path.isdir(path):
            objects.update(kubernetes_objects(path))
            continue
        for doc in load_yaml_documents(path):
            objects[(doc["kind"], doc["metadata"]["name"])] = doc
    return objects


def kustomization(directory):
    return load_yaml_documents(os.path.join(directory, "kustomization.yaml"))[0]


def containers(pod_spec):
    return {c["name"]: c for c in pod_spec.get("containers", [])}


def flag_values(args):
    """{flag: value} of --flag=value arguments."""
    values = {}
    for arg in args:
        match = re.fullmatch(r"--([a-z_]+)=(.*)", arg)
        assert match, "argument %r is not --flag=value" % arg
        values[match.group(1)] = match.group(2)
    return values


def port_of(address):
    return int(address.rsplit(":", 1)[1])
