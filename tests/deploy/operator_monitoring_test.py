"""The Prometheus operator's objects in deploy/kubernetes/base say what
deploy/prometheus/ says: the PrometheusRule's groups are the rules file's
groups, the ServiceMonitor scrapes like the "shmhub" job of prometheus.yml
and yields job="shmhub" (which ShmhubDaemonDown watches), and both files are
what generate_monitoring.py writes today."""

import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deploy_files  # noqa: E402

PROMETHEUS_DIR = os.path.join(deploy_files.DEPLOY, "prometheus")
GENERATOR = os.path.join(deploy_files.KUBERNETES, "generate_monitoring.py")


class OperatorMonitoringTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.objects = deploy_files.kubernetes_objects(deploy_files.BASE)
        cls.rules = deploy_files.load_yaml_documents(
            os.path.join(PROMETHEUS_DIR, "shmhub-rules.yml"))[0]
        cls.config = deploy_files.load_yaml_documents(
            os.path.join(PROMETHEUS_DIR, "prometheus.yml"))[0]

    def one(self, kind):
        (obj,) = [o for (k, _), o in self.objects.items() if k == kind]
        return obj

    def test_prometheus_rule_groups_equal_the_rules_files_groups(self):
        rule = self.one("PrometheusRule")
        self.assertEqual(rule["spec"]["groups"], self.rules["groups"])
        self.assertEqual(set(rule["spec"]), {"groups"})

    def test_generated_files_are_what_the_generator_writes_now(self):
        result = subprocess.run([sys.executable, "-B", GENERATOR, "--check"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                check=False, timeout=60)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    def test_service_monitor_scrapes_like_the_shipped_job(self):
        (job,) = [j for j in self.config["scrape_configs"] if j["job_name"] == "shmhub"]
        (endpoint,) = self.one("ServiceMonitor")["spec"]["endpoints"]
        self.assertEqual(endpoint["interval"], job["scrape_interval"])
        self.assertEqual(endpoint["scrapeTimeout"], job["scrape_timeout"])
        self.assertEqual(endpoint["path"], job.get("metrics_path", "/metrics"))

    def test_service_monitor_selects_the_service_and_names_the_job_shmhub(self):
        monitor = self.one("ServiceMonitor")["spec"]
        service = self.objects[("Service", "shmhubd")]
        labels = service["metadata"]["labels"]
        self.assertTrue(all(labels.get(k) == v
                            for k, v in monitor["selector"]["matchLabels"].items()))
        self.assertIn(monitor["endpoints"][0]["port"],
                      [p["name"] for p in service["spec"]["ports"]])
        # The operator names the job after this Service label's value.
        self.assertEqual(labels[monitor["jobLabel"]], "shmhub")


if __name__ == "__main__":
    unittest.main()
