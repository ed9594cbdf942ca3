"""deploy/grafana/shmhub-dashboard.json is a dashboard Grafana can import
into any installation: valid JSON, the Prometheus data source chosen through
a template variable (never a fixed uid), unique panel ids on a 24-column
grid, and queries that select only metrics shmhubd exports, covering the
views an operator needs (README.md, "Dashboard")."""

import json
import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from metric_contract import exported_names  # noqa: E402
from promql_metric_names import metric_names  # noqa: E402

DASHBOARD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "deploy",
                         "grafana", "shmhub-dashboard.json")
DATASOURCE_UID = "${datasource}"

# Grafana's label_values(selector, label) variable query: only the selector
# is PromQL.
_LABEL_VALUES = re.compile(r"^\s*label_values\((.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*$")

# What each view an operator needs must query.
REQUIRED_METRICS = {
    "per-peer heartbeat age": "shmhub_peer_heartbeat_age_seconds",
    "stale peers": "shmhub_peer_heartbeat_stale",
    "crashes by detector": "shmhub_crashes_total",
    "peers by state": "shmhub_peers",
    "ring occupancy": "shmhub_ring_used_bytes",
    "slot pool free": "shmhub_varslot_free",
    "RPC rate": "grpc_server_handled_total",
    "RPC latency": "grpc_server_handling_seconds_bucket",
    "reservations by outcome": "shmhub_reservations_total",
}


def panels_of(dashboard):
    """Every panel, including those nested in collapsed rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def queries_of(dashboard):
    """(where, PromQL) for every panel target and query variable."""
    for panel in panels_of(dashboard):
        for target in panel.get("targets", []):
            yield ("panel %r %s" % (panel["title"], target["refId"]), target["expr"])
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]
        text = query["query"] if isinstance(query, dict) else query
        match = _LABEL_VALUES.match(text)
        yield ("variable " + variable["name"], match.group(1) if match else text)


class GrafanaDashboardTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(DASHBOARD, encoding="utf-8") as f:
            cls.dashboard = json.load(f)

    def test_datasource_is_a_prometheus_template_variable(self):
        variables = {v["name"]: v for v in self.dashboard["templating"]["list"]}
        self.assertEqual(variables["datasource"]["type"], "datasource")
        self.assertEqual(variables["datasource"]["query"], "prometheus")

    def test_every_panel_target_and_variable_uses_the_datasource_variable(self):
        users = [("panel %r" % p["title"], p) for p in panels_of(self.dashboard)
                 if p["type"] != "row"]
        users += [("panel %r target" % p["title"], t) for p in panels_of(self.dashboard)
                  for t in p.get("targets", [])]
        users += [("variable " + v["name"], v) for v in self.dashboard["templating"]["list"]
                  if v["type"] == "query"]
        self.assertTrue(users)
        for where, user in users:
            with self.subTest(where=where):
                self.assertEqual(user.get("datasource"),
                                 {"type": "prometheus", "uid": DATASOURCE_UID})

    def test_panel_ids_are_unique_and_fit_the_grid(self):
        panels = list(panels_of(self.dashboard))
        ids = [p["id"] for p in panels]
        self.assertEqual(len(ids), len(set(ids)))
        for panel in panels:
            with self.subTest(panel=panel["title"]):
                grid = panel["gridPos"]
                self.assertGreater(grid["w"], 0)
                self.assertGreater(grid["h"], 0)
                self.assertLessEqual(grid["x"] + grid["w"], 24)

    def test_queries_select_only_exported_metrics(self):
        allowed = exported_names()
        queries = list(queries_of(self.dashboard))
        self.assertTrue(queries)
        for where, expr in queries:
            with self.subTest(where=where):
                used = metric_names(expr)
                self.assertTrue(used, "no metric found in " + expr)
                self.assertLessEqual(used, allowed, expr)

    def test_dashboard_covers_every_view_the_issue_asks_for(self):
        used = set()
        for _, expr in queries_of(self.dashboard):
            used |= metric_names(expr)
        for view, metric in REQUIRED_METRICS.items():
            with self.subTest(view=view):
                self.assertIn(metric, used)

    def test_rpc_latency_is_a_histogram_quantile_over_handling_seconds(self):
        exprs = [expr for _, expr in queries_of(self.dashboard)]
        self.assertTrue(any("histogram_quantile(" in e and
                            "grpc_server_handling_seconds_bucket" in e for e in exprs))


if __name__ == "__main__":
    unittest.main()
