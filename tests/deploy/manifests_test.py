"""The compose file and the Kubernetes manifests are well formed and hold
together: every YAML file under deploy/ parses; every Kubernetes object
passes k8s_schema's check of the fields it uses; the kustomizations name
files that exist and patch objects the base has (and, where kubectl is
installed, render); selectors, named ports, volumes and images line up
across objects; every container is non-root, unprivileged and bounded; and
the compose services are hardened the same way. Ports, paths and flags are
checked against the real daemon in daemon_args_process_test.py."""

import os
import shutil
import subprocess
import sys
import unittest

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deploy_files  # noqa: E402
import k8s_schema  # noqa: E402

DAEMON_LABELS = {"app.kubernetes.io/name": "shmhub", "app.kubernetes.io/component": "daemon"}


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


def pod_specs(objects):
    """(where, pod spec) of every DaemonSet and Pod."""
    for (kind, name), obj in sorted(objects.items()):
        if kind == "DaemonSet":
            yield "DaemonSet/" + name, obj["spec"]["template"]["spec"]
        elif kind == "Pod":
            yield "Pod/" + name, obj["spec"]


def effective(pod_spec, container, field):
    """A securityContext field as the kubelet applies it: the container's
    value, else the pod's."""
    value = container.get("securityContext", {}).get(field)
    return pod_spec.get("securityContext", {}).get(field) if value is None else value


class ManifestsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.base = deploy_files.kubernetes_objects(deploy_files.BASE)
        cls.overlay = deploy_files.kubernetes_objects(deploy_files.OVERLAY)
        cls.daemonset = cls.base[("DaemonSet", "shmhubd")]
        cls.daemon_pod = cls.daemonset["spec"]["template"]["spec"]
        cls.guest_pod = cls.overlay[("Pod", "shmhub-example-guest")]["spec"]
        cls.compose = deploy_files.compose()

    def test_every_yaml_file_under_deploy_parses(self):
        files = deploy_files.yaml_files()
        self.assertIn(deploy_files.COMPOSE, files)
        for path in files:
            with self.subTest(path=os.path.relpath(path, deploy_files.ROOT)):
                self.assertTrue(deploy_files.load_yaml_documents(path))

    def test_every_kubernetes_object_passes_the_schema_check(self):
        objects = list(self.overlay.values())
        self.assertGreaterEqual({k for k, _ in self.overlay}, {
            "DaemonSet", "Service", "NetworkPolicy", "ServiceMonitor", "PrometheusRule", "Pod",
            "Namespace", "ServiceAccount"})
        for obj in objects:
            with self.subTest(object="%s/%s" % (obj["kind"], obj["metadata"]["name"])):
                self.assertEqual(k8s_schema.validate(obj), [])

    def test_kustomizations_and_patches_pass_the_schema_check(self):
        for directory in (deploy_files.BASE, deploy_files.OVERLAY):
            kustomization = deploy_files.kustomization(directory)
            with self.subTest(kustomization=os.path.relpath(directory, deploy_files.ROOT)):
                self.assertEqual(k8s_schema.validate_kustomization(kustomization), [])
            for patch in kustomization.get("patches", []):
                for doc in deploy_files.load_yaml_documents(os.path.join(directory,
                                                                         patch["path"])):
                    with self.subTest(patch=patch["path"]):
                        self.assertEqual(k8s_schema.validate(doc, patch=True), [])

    def test_kustomizations_list_existing_files_and_patch_existing_objects(self):
        for directory in (deploy_files.BASE, deploy_files.OVERLAY):
            kustomization = deploy_files.kustomization(directory)
            for entry in kustomization["resources"]:
                with self.subTest(resource=entry):
                    self.assertTrue(os.path.exists(os.path.join(directory, entry)))
            for patch in kustomization.get("patches", []):
                for doc in deploy_files.load_yaml_documents(os.path.join(directory,
                                                                         patch["path"])):
                    with self.subTest(patch=patch["path"]):
                        self.assertIn((doc["kind"], doc["metadata"]["name"]), self.overlay)
        # Every manifest in base/ is listed (none forgotten).
        listed = set(deploy_files.kustomization(deploy_files.BASE)["resources"])
        on_disk = {f for f in os.listdir(deploy_files.BASE)
                   if f.endswith(".yaml") and f != "kustomization.yaml"}
        self.assertEqual(listed, on_disk)

    def test_overlay_image_replaces_the_image_every_container_uses(self):
        (image,) = deploy_files.kustomization(deploy_files.OVERLAY)["images"]
        for where, spec in pod_specs(self.overlay):
            for container in spec.get("initContainers", []) + spec["containers"]:
                with self.subTest(container=where + "/" + container["name"]):
                    self.assertEqual(container["image"].split(":")[0], image["name"])

    def test_kustomize_renders_the_overlay_with_image_and_patch_applied(self):
        kubectl = shutil.which("kubectl")
        if kubectl is None:
            self.skipTest("kubectl is not installed (not in Debian 12); the structural checks "
                          "above still ran")
        out = subprocess.run([kubectl, "kustomize", deploy_files.OVERLAY], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, check=False, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        rendered = [doc for doc in yaml.safe_load_all(out.stdout) if doc]
        self.assertEqual({(d["kind"], d["metadata"]["name"]) for d in rendered},
                         set(self.overlay))
        (image,) = deploy_files.kustomization(deploy_files.OVERLAY)["images"]
        (patch,) = deploy_files.load_yaml_documents(
            os.path.join(deploy_files.OVERLAY, "daemonset-patch.yaml"))
        for doc in rendered:
            with self.subTest(object="%s/%s" % (doc["kind"], doc["metadata"]["name"])):
                self.assertEqual(k8s_schema.validate(doc), [])
                if doc["kind"] != "Namespace":
                    self.assertEqual(doc["metadata"]["namespace"], "shmhub")
            if doc["kind"] == "DaemonSet":
                daemon = deploy_files.containers(doc["spec"]["template"]["spec"])["shmhubd"]
                self.assertEqual(daemon["image"], "%s:%s" % (image["newName"], image["newTag"]))
                patched = deploy_files.containers(patch["spec"]["template"]["spec"])["shmhubd"]
                self.assertEqual(daemon["args"], patched["args"])

    def test_daemonset_selects_its_own_pods(self):
        selector = self.daemonset["spec"]["selector"]["matchLabels"]
        self.assertEqual(selector, DAEMON_LABELS)
        self.assertTrue(selects(selector, self.daemonset["spec"]["template"]["metadata"]["labels"]))

    def test_service_selects_daemon_pods_and_targets_their_named_ports(self):
        service = self.base[("Service", "shmhubd")]
        self.assertTrue(selects(service["spec"]["selector"],
                                self.daemonset["spec"]["template"]["metadata"]["labels"]))
        self.assertEqual(service["spec"]["clusterIP"], "None")  # one endpoint per node
        ports = {p["name"]: p for p in deploy_files.containers(self.daemon_pod)["shmhubd"]["ports"]}
        self.assertEqual({p["targetPort"] for p in service["spec"]["ports"]}, set(ports))
        for port in service["spec"]["ports"]:
            self.assertEqual(port["port"], ports[port["targetPort"]]["containerPort"])

    def test_network_policy_admits_only_orchestrators_to_grpc_and_prometheus_to_metrics(self):
        policy = self.base[("NetworkPolicy", "shmhubd")]["spec"]
        self.assertTrue(selects(policy["podSelector"]["matchLabels"],
                                self.daemonset["spec"]["template"]["metadata"]["labels"]))
        # Egress listed with no rules: shmhubd opens no connections.
        self.assertEqual(sorted(policy["policyTypes"]), ["Egress", "Ingress"])
        self.assertNotIn("egress", policy)
        admitted = {}
        for rule in policy["ingress"]:
            self.assertTrue(rule.get("from"), "a rule without 'from' admits everyone")
            for port in rule["ports"]:
                admitted[port["port"]] = [peer["podSelector"]["matchLabels"]
                                          for peer in rule["from"]]
        self.assertEqual(admitted, {"grpc": [{"shmhub-orchestrator": "true"}],
                                    "metrics": [{"app.kubernetes.io/name": "prometheus"}]})
        container_ports = {p["name"] for p in
                           deploy_files.containers(self.daemon_pod)["shmhubd"]["ports"]}
        self.assertLessEqual(set(admitted), container_ports)

    def test_pods_are_non_root_unprivileged_read_only_with_runtime_default_seccomp(self):
        for where, spec in pod_specs(self.overlay):
            self.assertEqual(spec["securityContext"]["seccompProfile"]["type"], "RuntimeDefault")
            self.assertFalse(spec.get("automountServiceAccountToken", True), where)
            for flag in ("hostNetwork", "hostPID", "hostIPC"):
                self.assertFalse(spec.get(flag, False), where)
            for container in spec["containers"]:
                with self.subTest(container=where + "/" + container["name"]):
                    self.assertTrue(effective(spec, container, "runAsNonRoot"))
                    self.assertNotEqual(effective(spec, container, "runAsUser"), 0)
                    self.assertIs(effective(spec, container, "allowPrivilegeEscalation"), False)
                    self.assertIs(effective(spec, container, "readOnlyRootFilesystem"), True)
                    self.assertFalse(effective(spec, container, "privileged") or False)
                    capabilities = container["securityContext"]["capabilities"]
                    self.assertEqual(capabilities["drop"], ["ALL"])
                    self.assertNotIn("add", capabilities)

    def test_only_the_init_container_is_root_and_it_may_only_chown(self):
        (init,) = self.daemon_pod["initContainers"]
        context = init["securityContext"]
        self.assertEqual(context["capabilities"], {"drop": ["ALL"], "add": ["CHOWN", "FOWNER"]})
        self.assertIs(context["allowPrivilegeEscalation"], False)
        self.assertIs(context["readOnlyRootFilesystem"], True)
        # It changes exactly the directories it mounts, to the daemon's uid/gid.
        command = init["command"]
        mounted = sorted(m["mountPath"] for m in init["volumeMounts"])
        self.assertEqual(sorted(a for a in command if a.startswith("/")), mounted)
        owner = [command[command.index("-o") + 1], command[command.index("-g") + 1]]
        pod_context = self.daemon_pod["securityContext"]
        self.assertEqual(owner, [str(pod_context["runAsUser"]), str(pod_context["runAsGroup"])])

    def test_every_container_has_requests_and_limits(self):
        for where, spec in pod_specs(self.overlay):
            for container in spec.get("initContainers", []) + spec["containers"]:
                with self.subTest(container=where + "/" + container["name"]):
                    resources = container["resources"]
                    self.assertEqual(set(resources["requests"]), {"cpu", "memory"})
                    self.assertEqual(set(resources["limits"]), {"cpu", "memory"})

    def test_daemon_probes_ask_grpc_health(self):
        daemon = deploy_files.containers(self.daemon_pod)["shmhubd"]
        for probe in ("readinessProbe", "livenessProbe"):
            self.assertIn("grpc", daemon[probe], probe)

    def test_volume_mounts_name_declared_volumes(self):
        for where, spec in pod_specs(self.overlay):
            volumes = {v["name"] for v in spec.get("volumes", [])}
            for container in spec.get("initContainers", []) + spec["containers"]:
                for mount in container.get("volumeMounts", []):
                    with self.subTest(mount=where + "/" + mount["name"]):
                        self.assertIn(mount["name"], volumes)

    def test_guest_pod_shares_the_daemons_socket_directory_and_group(self):
        def host_dirs(spec):
            return {v["hostPath"]["path"]: v for v in spec["volumes"]}
        daemon_dirs, guest_dirs = host_dirs(self.daemon_pod), host_dirs(self.guest_pod)
        self.assertLessEqual(set(guest_dirs), set(daemon_dirs))
        for path in guest_dirs:
            # The guest never creates it: it waits for the daemon's.
            self.assertEqual(guest_dirs[path]["hostPath"]["type"], "Directory")
        self.assertIn(self.daemon_pod["securityContext"]["runAsGroup"],
                      self.guest_pod["securityContext"]["supplementalGroups"])
        self.assertNotEqual(self.guest_pod["securityContext"]["runAsUser"],
                            self.daemon_pod["securityContext"]["runAsUser"])

    def test_compose_services_are_read_only_without_capabilities_or_new_privileges(self):
        for name, service in self.compose["services"].items():
            with self.subTest(service=name):
                self.assertIs(service["read_only"], True)
                self.assertEqual(service["cap_drop"], ["ALL"])
                self.assertNotIn("cap_add", service)
                self.assertIn("no-new-privileges:true", service["security_opt"])
                self.assertFalse(service.get("privileged", False))

    def test_compose_prometheus_mounts_the_shipped_files_unchanged(self):
        prometheus = self.compose["services"]["prometheus"]
        mounts = {}
        for volume in prometheus["volumes"]:
            source, destination = volume.split(":")[:2]
            mounts[destination] = source
        config_flag = [a for a in prometheus["command"] if a.startswith("--config.file=")][0]
        config = config_flag.split("=", 1)[1]
        compose_dir = os.path.dirname(deploy_files.COMPOSE)
        shipped = os.path.join(deploy_files.DEPLOY, "prometheus", "prometheus.yml")
        self.assertEqual(os.path.normpath(os.path.join(compose_dir, mounts[config])), shipped)
        # Every rule file the configuration names sits where it looks for it.
        for rule_file in deploy_files.load_yaml_documents(shipped)[0]["rule_files"]:
            in_container = os.path.join(os.path.dirname(config), rule_file)
            self.assertIn(in_container, mounts)
            self.assertEqual(os.path.normpath(os.path.join(compose_dir, mounts[in_container])),
                             os.path.join(deploy_files.DEPLOY, "prometheus", rule_file))

    def test_compose_clients_run_as_their_own_users_in_the_daemons_group(self):
        uid, gid = deploy_files.dockerfile_stages()["runtime"].one("USER").split(":")
        clients = [self.compose["services"][name] for name in ("echo-host", "example-guest")]
        users = [client["user"].split(":")[0] for client in clients]
        self.assertNotIn(uid, users)
        self.assertEqual(len(set(users)), len(users))
        for client in clients:
            self.assertIn(gid, client["group_add"])
            self.assertEqual(client["network_mode"], "none")
        for name in ("shmhub-segment", "shmhub-socket"):
            options = dict(o.split("=") for o in
                           self.compose["volumes"][name]["driver_opts"]["o"].split(","))
            with self.subTest(volume=name):
                self.assertEqual(self.compose["volumes"][name]["driver_opts"]["type"], "tmpfs")
                self.assertEqual((options["uid"], options["gid"], options["mode"]),
                                 (uid, gid, "0750"))

    def test_compose_publishes_grpc_only_on_the_hosts_loopback(self):
        for name, service in self.compose["services"].items():
            for port in service.get("ports", []):
                with self.subTest(service=name, port=port):
                    self.assertTrue(port.startswith("127.0.0.1:"))


if __name__ == "__main__":
    unittest.main()
