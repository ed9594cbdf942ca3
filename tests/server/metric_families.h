// Reading values out of collected Prometheus families (what a Collectable's
// Collect() returns) in tests: a series is named by its family and its
// complete label set, so a test never matches a series by accident.
#ifndef SHMHUB_TESTS_SERVER_METRIC_FAMILIES_H_
#define SHMHUB_TESTS_SERVER_METRIC_FAMILIES_H_

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "prometheus/client_metric.h"
#include "prometheus/metric_family.h"
#include "prometheus/metric_type.h"

namespace shmhub::server::testing {

using Labels = std::map<std::string, std::string>;

inline const prometheus::MetricFamily* FindFamily(
    const std::vector<prometheus::MetricFamily>& families, const std::string& name) {
  for (const prometheus::MetricFamily& family : families) {
    if (family.name == name) return &family;
  }
  return nullptr;
}

inline Labels LabelsOf(const prometheus::ClientMetric& metric) {
  Labels labels;
  for (const prometheus::ClientMetric::Label& label : metric.label) {
    labels[label.name] = label.value;
  }
  return labels;
}

// The series of family `name` whose labels are exactly `labels`.
inline const prometheus::ClientMetric* FindSeries(
    const std::vector<prometheus::MetricFamily>& families, const std::string& name,
    const Labels& labels = {}) {
  const prometheus::MetricFamily* family = FindFamily(families, name);
  if (family == nullptr) return nullptr;
  for (const prometheus::ClientMetric& metric : family->metric) {
    if (LabelsOf(metric) == labels) return &metric;
  }
  return nullptr;
}

// A counter's or gauge's value; nothing when the series does not exist.
inline std::optional<double> Value(const std::vector<prometheus::MetricFamily>& families,
                                   const std::string& name, const Labels& labels = {}) {
  const prometheus::MetricFamily* family = FindFamily(families, name);
  const prometheus::ClientMetric* series = FindSeries(families, name, labels);
  if (series == nullptr) return std::nullopt;
  return family->type == prometheus::MetricType::Counter ? series->counter.value
                                                         : series->gauge.value;
}

// Every label set of family `name`, e.g. to show what exists on failure.
inline std::string DescribeFamily(const std::vector<prometheus::MetricFamily>& families,
                                  const std::string& name) {
  const prometheus::MetricFamily* family = FindFamily(families, name);
  if (family == nullptr) return name + ": no such family";
  std::string out = name + ":";
  for (const prometheus::ClientMetric& metric : family->metric) {
    absl::StrAppend(&out, "\n  {");
    for (const auto& [label, value] : LabelsOf(metric)) {
      absl::StrAppend(&out, label, "=\"", value, "\" ");
    }
    absl::StrAppend(&out, "} ", metric.gauge.value, " / ", metric.counter.value);
  }
  return out;
}

}  // namespace shmhub::server::testing

#endif  // SHMHUB_TESTS_SERVER_METRIC_FAMILIES_H_
