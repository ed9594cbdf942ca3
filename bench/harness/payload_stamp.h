// A frame's sequence number, stamped into its first 8 bytes by the sender
// and checked by the receiver, so every benchmark also proves that nothing
// was lost, duplicated or reordered, at the cost of one 8-byte store and
// load per frame on every transport alike.
#ifndef SHMHUB_BENCH_HARNESS_PAYLOAD_STAMP_H_
#define SHMHUB_BENCH_HARNESS_PAYLOAD_STAMP_H_

#include <cstdint>
#include <cstring>

#include "absl/types/span.h"

namespace shmhub::bench {

// The smallest payload the benchmarks send: it holds the stamp.
inline constexpr size_t kMinPayload = sizeof(uint64_t);

// A sequence number no data frame uses: it tells an echoing child to stop.
inline constexpr uint64_t kStopStamp = ~uint64_t{0};

// Requires payload.size() >= kMinPayload.
inline void Stamp(absl::Span<uint8_t> payload, uint64_t sequence) {
  std::memcpy(payload.data(), &sequence, sizeof(sequence));
}

// The stamp of a received payload; kStopStamp for one too short to hold one
// (which no sender of ours produces, so it fails every sequence check).
inline uint64_t ReadStamp(absl::Span<const uint8_t> payload) {
  if (payload.size() < kMinPayload) return kStopStamp;
  uint64_t sequence = 0;
  std::memcpy(&sequence, payload.data(), sizeof(sequence));
  return sequence;
}

// Reads every byte of `payload` (as 8-byte words, the tail bytewise) and
// returns their sum, for receivers told to consume what they receive
// (ThroughputWorkload::read_payload) rather than only check the stamp.
inline uint64_t SumWords(absl::Span<const uint8_t> payload) {
  uint64_t sum = 0;
  size_t i = 0;
  for (; i + sizeof(uint64_t) <= payload.size(); i += sizeof(uint64_t)) {
    uint64_t word = 0;
    std::memcpy(&word, payload.data() + i, sizeof(word));
    sum += word;
  }
  for (; i < payload.size(); ++i) sum += payload[i];
  return sum;
}

// Makes `value` observable, so the reads that produced it cannot be elided.
inline void KeepAlive(uint64_t value) { asm volatile("" : : "r"(value)); }

}  // namespace shmhub::bench

#endif  // SHMHUB_BENCH_HARNESS_PAYLOAD_STAMP_H_
