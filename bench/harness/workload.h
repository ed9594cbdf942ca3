// What one measurement runs and what it yields, shared by every transport
// (the link, the socketpair baseline, the memcpy baseline) so their numbers
// are computed the same way.
//
// Throughput: `frames` payloads of `payload_bytes` each, sent back to back
// by one process and received by the other; the receiving side times from
// "go" to its last frame. A receiver checks each frame's stamp (its first
// 8 bytes); with `read_payload` it also reads every byte of it, as an
// application consuming the data would (the link hands out a view, so
// without this its receiver never pulls the bytes into its core's cache). Bytes counted are payload bytes only (no length
// prefix, entry header or slot prefix). GB/s is 10^9 bytes per second.
//
// Round trip: one payload of `payload_bytes` sent, echoed, received back,
// timed per iteration; the first `warmup` iterations are dropped. The run
// ends after `max_iterations` or once `time_budget` has passed, whichever
// comes first (checked every iteration, so it overruns by one round trip).
//
// `timeout` bounds every wait of the measurement: a stalled peer turns the
// measurement into an error, never a hang. `child_cpu`, when not -1, pins
// the forked child to that CPU (the driver pins itself with --pin_cpus).
#ifndef SHMHUB_BENCH_HARNESS_WORKLOAD_H_
#define SHMHUB_BENCH_HARNESS_WORKLOAD_H_

#include <chrono>
#include <cstdint>
#include <vector>

namespace shmhub::bench {

struct ThroughputWorkload {
  uint32_t payload_bytes = 0;  // >= kMinPayload (payload_stamp.h)
  uint64_t frames = 0;
  std::chrono::milliseconds timeout{30'000};
  int child_cpu = -1;
  bool read_payload = false;
};

struct ThroughputSample {
  uint64_t frames = 0;
  uint64_t payload_bytes = 0;  // frames * payload size
  int64_t elapsed_ns = 0;

  double Seconds() const { return static_cast<double>(elapsed_ns) / 1e9; }
  double FramesPerSecond() const {
    return elapsed_ns > 0 ? static_cast<double>(frames) / Seconds() : 0;
  }
  double GigabytesPerSecond() const {
    return elapsed_ns > 0 ? static_cast<double>(payload_bytes) / Seconds() / 1e9 : 0;
  }
};

struct RoundTripWorkload {
  uint32_t payload_bytes = 64;
  uint64_t warmup = 1000;
  uint64_t max_iterations = 100'000;
  std::chrono::milliseconds time_budget{2'000};
  std::chrono::milliseconds timeout{30'000};
  int child_cpu = -1;
};

// Nanoseconds per measured round trip, in the order they happened.
using RoundTripSamples = std::vector<int64_t>;

// Monotonic nanoseconds (CLOCK_MONOTONIC via steady_clock, system-wide, so
// both processes of a measurement read the same clock).
inline int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace shmhub::bench

#endif  // SHMHUB_BENCH_HARNESS_WORKLOAD_H_
