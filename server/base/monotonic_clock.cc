#include "server/base/monotonic_clock.h"

#include <time.h>

#include <cstdint>
#include <limits>

namespace shmhub::server {

uint64_t MonotonicNowNs() {
  timespec ts{};
  // Cannot fail for CLOCK_MONOTONIC with a valid pointer.
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<uint64_t>(ts.tv_nsec);
}

uint64_t ToNs(absl::Duration duration) {
  if (duration <= absl::ZeroDuration()) return 0;
  if (duration >= absl::Nanoseconds(std::numeric_limits<int64_t>::max())) {
    return std::numeric_limits<uint64_t>::max();
  }
  return static_cast<uint64_t>(absl::ToInt64Nanoseconds(duration));
}

}  // namespace shmhub::server
