// The clock guests write heartbeats with (format §5.5): CLOCK_MONOTONIC in
// nanoseconds. The daemon measures heartbeat ages, leases and grace periods
// on it too, so a step of the wall clock never expires or crashes anything.
//
// Thread safety: safe from any thread.
#ifndef SHMHUB_SERVER_BASE_MONOTONIC_CLOCK_H_
#define SHMHUB_SERVER_BASE_MONOTONIC_CLOCK_H_

#include <cstdint>

#include "absl/time/time.h"

namespace shmhub::server {

uint64_t MonotonicNowNs();

// `later - earlier`, or 0 when `earlier` is later (a heartbeat from the
// future is treated as just written, like the format's saturating rule).
inline uint64_t ElapsedNs(uint64_t earlier, uint64_t later) {
  return later > earlier ? later - earlier : 0;
}

// A non-negative duration in nanoseconds, saturating at UINT64_MAX.
uint64_t ToNs(absl::Duration duration);

}  // namespace shmhub::server

#endif  // SHMHUB_SERVER_BASE_MONOTONIC_CLOCK_H_
