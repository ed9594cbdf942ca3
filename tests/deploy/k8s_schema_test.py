"""k8s_schema reports every kind of mistake it is meant to catch, so the
manifest checks in manifests_test.py cannot pass by checking nothing."""

import copy
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import k8s_schema  # noqa: E402

DAEMON_SET = {
    "apiVersion": "apps/v1",
    "kind": "DaemonSet",
    "metadata": {"name": "d", "labels": {"app.kubernetes.io/name": "x"}},
    "spec": {
        "selector": {"matchLabels": {"app.kubernetes.io/name": "x"}},
        "template": {
            "metadata": {"labels": {"app.kubernetes.io/name": "x"}},
            "spec": {
                "containers": [{
                    "name": "c", "image": "i:1", "args": ["--a"],
                    "ports": [{"name": "grpc", "containerPort": 50051, "protocol": "TCP"}],
                    "readinessProbe": {"grpc": {"port": 50051}, "periodSeconds": 5},
                    "resources": {"requests": {"cpu": "50m", "memory": "64Mi"},
                                  "limits": {"cpu": 1}},
                    "securityContext": {"capabilities": {"drop": ["ALL"]}},
                    "volumeMounts": [{"name": "v", "mountPath": "/v"}],
                }],
                "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                "volumes": [{"name": "v", "hostPath": {"path": "/v", "type": "Directory"}}],
            },
        },
    },
}


def mutated(change):
    document = copy.deepcopy(DAEMON_SET)
    change(document)
    return document


def container(document):
    return document["spec"]["template"]["spec"]["containers"][0]


class K8sSchemaTest(unittest.TestCase):
    def assertOneProblem(self, document, path, words):
        problems = k8s_schema.validate(document)
        self.assertEqual(len(problems), 1, problems)
        self.assertTrue(problems[0].startswith(path), problems)
        self.assertIn(words, problems[0])

    def test_valid_daemonset_has_no_problems(self):
        self.assertEqual(k8s_schema.validate(DAEMON_SET), [])

    def test_misspelt_field_is_unknown(self):
        def change(d):
            container(d)["readinessProb"] = container(d).pop("readinessProbe")
        self.assertOneProblem(mutated(change), "DaemonSet.spec.template.spec.containers[0]"
                              ".readinessProb", "unknown field")

    def test_field_at_the_wrong_level_is_unknown(self):
        def change(d):
            d["spec"]["containers"] = d["spec"]["template"]["spec"]["containers"]
        self.assertOneProblem(mutated(change), "DaemonSet.spec.containers", "unknown field")

    def test_missing_required_field_is_reported(self):
        self.assertOneProblem(mutated(lambda d: d["spec"].pop("selector")),
                              "DaemonSet.spec.selector", "required")
        self.assertOneProblem(mutated(lambda d: container(d).pop("image")),
                              "DaemonSet.spec.template.spec.containers[0].image", "required")

    def test_wrong_types_are_reported(self):
        def change(d):
            container(d)["args"] = "--a --b"
        self.assertOneProblem(mutated(change), "DaemonSet.spec.template.spec.containers[0].args",
                              "must be a list")

        def change_port(d):
            container(d)["ports"][0]["containerPort"] = "50051"
        self.assertOneProblem(mutated(change_port), "DaemonSet.spec.template.spec."
                              "containers[0].ports[0].containerPort", "port number")

    def test_enumerations_ranges_and_formats_are_enforced(self):
        cases = [
            (lambda d: d["spec"]["template"]["spec"]["volumes"][0]["hostPath"]
             .update(type="Dir"), "must be one of"),
            (lambda d: container(d)["ports"][0].update(containerPort=70000), "port number"),
            (lambda d: container(d)["resources"]["limits"].update(memory="256MB"),
             "resource quantity"),
            (lambda d: container(d)["ports"][0].update(name="gRPC_port"), "IANA service name"),
            (lambda d: d["metadata"].update(name="Shmhubd"), "DNS-1123"),
            (lambda d: container(d)["securityContext"]["capabilities"]
             .update(drop=["cap_net_raw"]), "capability name"),
            (lambda d: d["metadata"]["labels"].update({"app": "a b"}), "label value"),
        ]
        for change, words in cases:
            with self.subTest(words=words):
                problems = k8s_schema.validate(mutated(change))
                self.assertEqual(len(problems), 1, problems)
                self.assertIn(words, problems[0])

    def test_unknown_kind_is_a_problem(self):
        problems = k8s_schema.validate({"apiVersion": "apps/v1", "kind": "Deployment",
                                        "metadata": {"name": "x"}})
        self.assertEqual(len(problems), 1)
        self.assertIn("no schema", problems[0])

    def test_patch_needs_no_required_fields_but_checks_the_ones_it_has(self):
        patch = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "d"},
                 "spec": {"template": {"spec": {"containers": [{"name": "c", "args": []}]}}}}
        self.assertEqual(k8s_schema.validate(patch, patch=True), [])
        patch["spec"]["template"]["spec"]["containers"][0]["arg"] = []
        self.assertEqual(len(k8s_schema.validate(patch, patch=True)), 1)
        del patch["metadata"]["name"]
        self.assertIn("must name its target", k8s_schema.validate(patch, patch=True)[0])

    def test_kustomization_fields_are_checked(self):
        good = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                "resources": ["a.yaml"], "patches": [{"path": "p.yaml"}]}
        self.assertEqual(k8s_schema.validate_kustomization(good), [])
        bad = dict(good, patchesStrategicMerge=["p.yaml"])
        self.assertEqual(len(k8s_schema.validate_kustomization(bad)), 1)


if __name__ == "__main__":
    unittest.main()
