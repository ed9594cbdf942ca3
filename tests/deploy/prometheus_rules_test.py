"""The shipped Prometheus files agree with each other and with the metric
contract: deploy/prometheus/prometheus.yml scrapes shmhubd's default
--metrics_listen address and loads shmhub-rules.yml; every alert README.md lists
asks for exists, is labelled and annotated, queries only exported metrics,
and has a firing and a quiet case in shmhub-rules.test.yml. promtool itself
(check config, check rules, test rules) runs as separate ctest entries."""

import os
import re
import sys
import unittest

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from metric_contract import exported_names  # noqa: E402
from promql_metric_names import metric_names  # noqa: E402

PROMETHEUS_DIR = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "deploy", "prometheus")

EXPECTED_ALERTS = {
    "ShmhubPeerHeartbeatStale",
    "ShmhubCrashRateHigh",
    "ShmhubPeerSlotsNearlyFull",
    "ShmhubReservationsExpiringUnclaimed",
    "ShmhubDaemonDown",
}


def load(name):
    with open(os.path.join(PROMETHEUS_DIR, name), encoding="utf-8") as f:
        return yaml.safe_load(f)


def all_rules(rules_file):
    return [rule for group in rules_file["groups"] for rule in group["rules"]]


class PrometheusRulesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.config = load("prometheus.yml")
        cls.rules = all_rules(load("shmhub-rules.yml"))
        cls.tests = load("shmhub-rules.test.yml")

    def test_scrape_config_targets_default_metrics_address_and_loads_rules(self):
        jobs = {job["job_name"]: job for job in self.config["scrape_configs"]}
        self.assertIn("shmhub", jobs)
        targets = [t for sc in jobs["shmhub"]["static_configs"] for t in sc["targets"]]
        self.assertEqual(targets, ["127.0.0.1:9464"])  # HubConfig's metrics_listen default
        self.assertEqual(self.config["rule_files"], ["shmhub-rules.yml"])

    def test_rules_define_exactly_the_issue_alerts(self):
        alerts = [rule["alert"] for rule in self.rules if "alert" in rule]
        self.assertEqual(sorted(alerts), sorted(EXPECTED_ALERTS))

    def test_every_alert_has_severity_for_summary_and_description(self):
        for rule in self.rules:
            if "alert" not in rule:
                continue
            with self.subTest(alert=rule["alert"]):
                self.assertIn(rule.get("labels", {}).get("severity"), {"warning", "critical"})
                self.assertIn("for", rule)
                annotations = rule.get("annotations", {})
                self.assertTrue(annotations.get("summary"))
                self.assertTrue(annotations.get("description"))

    def test_rules_query_only_exported_metrics(self):
        recorded = {rule["record"] for rule in self.rules if "record" in rule}
        allowed = exported_names() | recorded
        for rule in self.rules:
            name = rule.get("alert", rule.get("record"))
            with self.subTest(rule=name):
                used = metric_names(rule["expr"])
                self.assertTrue(used, "no metric found in " + rule["expr"])
                self.assertLessEqual(used, allowed)

    def test_daemon_down_watches_the_shipped_scrape_job(self):
        (rule,) = [r for r in self.rules if r.get("alert") == "ShmhubDaemonDown"]
        watched = set(re.findall(r'up\{job="([^"]*)"\}', rule["expr"]))
        self.assertEqual(watched, {"shmhub"})
        self.assertIn("shmhub", {job["job_name"] for job in self.config["scrape_configs"]})

    def test_every_alert_has_a_firing_and_a_quiet_promtool_case(self):
        self.assertEqual(self.tests["rule_files"], ["shmhub-rules.yml"])
        firing, quiet = set(), set()
        for case in self.tests["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
        self.assertEqual(firing, EXPECTED_ALERTS)
        self.assertEqual(quiet, EXPECTED_ALERTS)


if __name__ == "__main__":
    unittest.main()
