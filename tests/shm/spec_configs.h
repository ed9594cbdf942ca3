// Segment configurations of segment-format.md's worked examples, shared by
// the shm/ tests that check bytes against them.
#ifndef SHMHUB_TESTS_SHM_SPEC_CONFIGS_H_
#define SHMHUB_TESTS_SHM_SPEC_CONFIGS_H_

#include "shm/segment.h"

namespace shmhub::shm {

// The configuration of §4.1 (the canonical byte-exact example).
inline SegmentConfig Section41Config() {
  SegmentConfig c;
  c.max_guests = 4;
  c.ring_capacity = 16384;
  c.classes = {{1024, 8}, {16384, 4}};
  c.max_payload_size = 65536;
  c.inline_threshold = 0;
  c.heartbeat_interval_ns = 100'000'000;
  return c;
}

}  // namespace shmhub::shm

#endif  // SHMHUB_TESTS_SHM_SPEC_CONFIGS_H_
