// LatencySummary: percentiles of a set of round-trip samples.
//
// Percentiles use the nearest-rank rule on the sorted samples (the value at
// rank ceil(p/100 * n)), so every reported number is a latency that was
// actually measured, never an interpolation. p99.9 needs at least 1000
// samples to mean anything; `count` is reported so readers can judge.
#ifndef SHMHUB_BENCH_HARNESS_LATENCY_SUMMARY_H_
#define SHMHUB_BENCH_HARNESS_LATENCY_SUMMARY_H_

#include <cstddef>
#include <cstdint>
#include <vector>

namespace shmhub::bench {

struct LatencySummary {
  size_t count = 0;
  int64_t min_ns = 0;
  int64_t p50_ns = 0;
  int64_t p90_ns = 0;
  int64_t p99_ns = 0;
  int64_t p999_ns = 0;
  int64_t max_ns = 0;
  double mean_ns = 0;
};

// Sorts `samples_ns` in place. All zeros for an empty set.
LatencySummary Summarize(std::vector<int64_t>& samples_ns);

// The nearest-rank percentile `p` (0 < p <= 100) of sorted, non-empty samples.
int64_t NearestRank(const std::vector<int64_t>& sorted_ns, double p);

}  // namespace shmhub::bench

#endif  // SHMHUB_BENCH_HARNESS_LATENCY_SUMMARY_H_
