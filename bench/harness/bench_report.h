// BenchReport: the results of one driver run — every sample of every
// measurement, the summaries derived from them and the issue's target
// ratios — written as one JSON document and as a short text table.
//
// Summaries: a throughput series is summarised by the median of its
// repetitions (the middle sample by elapsed time), a round-trip series by
// the percentiles of all its repetitions' samples pooled. Ratios are formed
// from those summaries; each also lists the ratio within every single
// repetition, where both sides ran back to back, so a reader can see how
// much the machine's noise moved it.
#ifndef SHMHUB_BENCH_HARNESS_BENCH_REPORT_H_
#define SHMHUB_BENCH_HARNESS_BENCH_REPORT_H_

#include <cstdint>
#include <deque>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "bench/harness/json_writer.h"
#include "bench/harness/latency_summary.h"
#include "bench/harness/workload.h"

namespace shmhub::bench {

struct ThroughputSeries {
  std::string transport;  // "link", "socketpair", "memcpy"
  uint32_t payload_bytes = 0;
  std::string detail;     // e.g. the link's tier for this size
  uint64_t frames = 0;    // per repetition
  // One per repetition, in run order; nullopt where that repetition failed.
  std::vector<std::optional<ThroughputSample>> samples;
  std::vector<std::string> errors;

  // The median successful sample by elapsed time; nullopt if none.
  std::optional<ThroughputSample> Median() const;
};

struct RoundTripSeries {
  std::string transport;
  uint32_t payload_bytes = 0;
  std::vector<std::optional<RoundTripSamples>> repetitions;
  std::vector<std::string> errors;

  // All successful repetitions' samples pooled.
  LatencySummary Pooled() const;
};

// A target ratio: `value` = numerator / denominator, met when value >=
// target. `issue_target` is false for a comparison reported beside the
// issue's three (the same bar against a stronger baseline).
struct TargetRatio {
  std::string name;
  std::string definition;
  double target = 0;
  bool issue_target = true;
  std::optional<double> value;  // nullopt when a side has no result
  std::vector<std::optional<double>> per_repetition;

  bool met() const { return value.has_value() && *value >= target; }
};

class BenchReport {
 public:
  // The series for (transport, payload), created empty on first use. The
  // reference stays valid for the report's life: series live in deques,
  // which never move their elements when they grow.
  ThroughputSeries& Throughput(const std::string& transport, uint32_t payload_bytes);
  RoundTripSeries& RoundTrip(const std::string& transport, uint32_t payload_bytes);
  const ThroughputSeries* FindThroughput(const std::string& transport,
                                         uint32_t payload_bytes) const;
  const RoundTripSeries* FindRoundTrip(const std::string& transport, uint32_t payload_bytes) const;

  // The issue's three targets, then the informational ones, from the series
  // recorded so far.
  std::vector<TargetRatio> Targets() const;
  bool HasErrors() const;

  // The "throughput", "round_trip", "ratios" and "errors" members of the
  // result document (the caller writes the surrounding object).
  void WriteJson(JsonWriter& json) const;
  void PrintTable(std::ostream& out) const;

 private:
  std::deque<ThroughputSeries> throughput_;
  std::deque<RoundTripSeries> round_trip_;
};

}  // namespace shmhub::bench

#endif  // SHMHUB_BENCH_HARNESS_BENCH_REPORT_H_
