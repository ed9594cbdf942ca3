"""promql_metric_names finds exactly the names a query selects, so the
contract checks over the rules and dashboard cannot pass by finding none."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from promql_metric_names import metric_names  # noqa: E402


class MetricNamesTest(unittest.TestCase):
    def test_bare_selector_is_a_name(self):
        self.assertEqual(metric_names("up"), {"up"})

    def test_label_matcher_values_and_label_names_are_not_names(self):
        self.assertEqual(
            metric_names('shmhub_peers{state="empty", job=~"shmhub_peers_x|other"}'),
            {"shmhub_peers"})

    def test_functions_aggregations_and_grouping_labels_are_not_names(self):
        self.assertEqual(
            metric_names("sum by (job, instance) (rate(shmhub_crashes_total[5m])) * 60 > 1"),
            {"shmhub_crashes_total"})
        self.assertEqual(metric_names("sum(rate(a_total[1m])) without (peer_id)"), {"a_total"})

    def test_both_sides_of_binary_operators_are_names(self):
        self.assertEqual(
            metric_names("a_total / on (instance) group_left (version) b_info "
                         "and c unless d > bool e"),
            {"a_total", "b_info", "c", "d", "e"})

    def test_histogram_quantile_selects_the_bucket_series(self):
        self.assertEqual(
            metric_names("histogram_quantile(0.99, sum by (le) "
                         "(rate(grpc_server_handling_seconds_bucket[5m])))"),
            {"grpc_server_handling_seconds_bucket"})

    def test_numbers_durations_and_offsets_are_not_names(self):
        self.assertEqual(metric_names("x offset 5m > 1e3 + 0x1f - Inf + NaN"), {"x"})
        self.assertEqual(metric_names("max_over_time(x[1h:5m])"), {"x"})

    def test_grafana_variables_are_dropped(self):
        self.assertEqual(
            metric_names('rate(x_total{instance=~"$instance"}[$__rate_interval]) '
                         '* ${multiplier} + [[legacy]]'),
            {"x_total"})

    def test_name_matcher_is_a_name(self):
        self.assertEqual(metric_names('{__name__="shmhub_watchers"}'), {"shmhub_watchers"})

    def test_absent_and_vector_are_functions(self):
        self.assertEqual(metric_names('up == 0 or absent(up{job="shmhub"}) or vector(0)'),
                         {"up"})


if __name__ == "__main__":
    unittest.main()
