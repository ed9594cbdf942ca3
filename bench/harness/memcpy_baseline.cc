#include "bench/harness/memcpy_baseline.h"

#include <cstdint>
#include <cstring>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "bench/harness/payload_stamp.h"

namespace shmhub::bench {
namespace {

// Tells the compiler that memory at `p` may be read by anyone, so the copy
// into it cannot be elided or merged across iterations (what Google
// Benchmark's DoNotOptimize + ClobberMemory do).
inline void Escape(void* p) { asm volatile("" : : "g"(p) : "memory"); }

}  // namespace

absl::StatusOr<ThroughputSample> MemcpyThroughput(const ThroughputWorkload& workload) {
  if (workload.payload_bytes < kMinPayload) return absl::InvalidArgumentError("payload < 8 bytes");
  std::vector<uint8_t> source(workload.payload_bytes, 0xA5);
  std::vector<uint8_t> destination(workload.payload_bytes, 0);
  Escape(source.data());
  uint64_t sum = 0;
  const int64_t start = NowNs();
  for (uint64_t i = 0; i < workload.frames; ++i) {
    Stamp(absl::MakeSpan(source), i);
    std::memcpy(destination.data(), source.data(), source.size());
    Escape(destination.data());
    if (ReadStamp(destination) != i) {
      return absl::InternalError(absl::StrCat("memcpy lost frame ", i));
    }
    if (workload.read_payload) sum += SumWords(destination);
  }
  const int64_t elapsed = NowNs() - start;
  KeepAlive(sum);
  return ThroughputSample{workload.frames, workload.frames * workload.payload_bytes, elapsed};
}

}  // namespace shmhub::bench
