// Offline inspection of a hub segment file, for `shmhubctl inspect PATH`:
// what the header says, what every peer entry holds, how full every ring
// is and how many pool slots each class has free. Needs no daemon; works on
// a live segment and on one a crashed daemon left behind.
//
// Reading only: the segment is attached like a guest attaches (full §3
// validation, so a corrupt file is refused with the validation error) and
// nothing is written to it. The file's contents are untrusted: every value
// reported comes from the shm/ views, which check what they read; a state
// word outside 0..3 is reported with its raw value, a corrupt free list as
// an error for that class instead of a count. On a live segment the values
// are a snapshot taken word by word, not one consistent instant.
#ifndef SHMHUB_CLIENT_CTL_SEGMENT_INSPECTOR_H_
#define SHMHUB_CLIENT_CTL_SEGMENT_INSPECTOR_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "shm/peer_table.h"
#include "shm/segment.h"

namespace shmhub::ctl {

struct InspectedPeer {
  uint32_t peer_id = 0;
  shm::StateReading state{};
  uint32_t epoch = 0;
  // CLOCK_MONOTONIC ns; 0 when the guest wrote none.
  uint64_t last_heartbeat_ns = 0;
  // now - last heartbeat; unset when there is none, or when it lies in the
  // future of this machine's clock (a hostile or foreign writer).
  std::optional<absl::Duration> heartbeat_age;
  // The format's rule (§5.5): age > 2 x the header's interval.
  bool stale = false;
  uint32_t guest_to_host_used_bytes = 0;
  uint32_t host_to_guest_used_bytes = 0;
};

struct InspectedSlotClass {
  uint32_t class_index = 0;
  uint32_t slot_size_bytes = 0;
  uint32_t slot_count = 0;
  // Length of the free stack, or why it could not be walked (kPoolCorrupt).
  absl::StatusOr<uint32_t> free_slots = 0u;
};

struct SegmentInspection {
  std::string path;
  uint32_t format_version = 0;
  uint64_t total_size_bytes = 0;
  uint64_t current_size_bytes = 0;
  uint32_t max_guests = 0;
  uint32_t ring_capacity_bytes = 0;
  uint32_t max_payload_size_bytes = 0;
  // The effective threshold (a header value of 0 means the default, 256).
  uint32_t inline_threshold_bytes = 0;
  // 0: heartbeats off.
  uint64_t heartbeat_interval_ns = 0;
  bool host_goodbye = false;
  // Every entry of the table, in peer id order.
  std::vector<InspectedPeer> peers;
  std::vector<InspectedSlotClass> slot_classes;
};

// Reads `segment` as of `now_ns` (CLOCK_MONOTONIC), which heartbeat ages
// and staleness are measured against.
SegmentInspection InspectSegment(const shm::Segment& segment, uint64_t now_ns);

// Attaches the file at `path` as a guest would (writing nothing) and
// inspects it now.
// Errors are those of shm::Segment::Attach, prefixed with the path.
absl::StatusOr<SegmentInspection> InspectSegmentFile(const std::string& path);

// CLOCK_MONOTONIC now, in nanoseconds: the clock heartbeats use.
uint64_t MonotonicNowNs();

}  // namespace shmhub::ctl

#endif  // SHMHUB_CLIENT_CTL_SEGMENT_INSPECTOR_H_
