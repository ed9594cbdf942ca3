#include "bench/harness/latency_summary.h"

#include <algorithm>
#include <cmath>

namespace shmhub::bench {

int64_t NearestRank(const std::vector<int64_t>& sorted_ns, double p) {
  const double n = static_cast<double>(sorted_ns.size());
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * n));
  rank = std::clamp<size_t>(rank, 1, sorted_ns.size());
  return sorted_ns[rank - 1];
}

LatencySummary Summarize(std::vector<int64_t>& samples_ns) {
  LatencySummary s;
  if (samples_ns.empty()) return s;
  std::sort(samples_ns.begin(), samples_ns.end());
  s.count = samples_ns.size();
  s.min_ns = samples_ns.front();
  s.max_ns = samples_ns.back();
  s.p50_ns = NearestRank(samples_ns, 50);
  s.p90_ns = NearestRank(samples_ns, 90);
  s.p99_ns = NearestRank(samples_ns, 99);
  s.p999_ns = NearestRank(samples_ns, 99.9);
  double sum = 0;
  for (int64_t v : samples_ns) sum += static_cast<double>(v);
  s.mean_ns = sum / static_cast<double>(s.count);
  return s;
}

}  // namespace shmhub::bench
