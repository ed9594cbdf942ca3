#include "client/ctl/segment_inspector.h"

#include <time.h>

#include <atomic>
#include <limits>
#include <memory>

#include "absl/strings/str_cat.h"
#include "shm/bip_buffer.h"
#include "shm/format.h"
#include "shm/var_slot_pool.h"

namespace shmhub::ctl {

uint64_t MonotonicNowNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<uint64_t>(ts.tv_nsec);
}

SegmentInspection InspectSegment(const shm::Segment& segment, uint64_t now_ns) {
  const shm::SegmentLayout& layout = segment.layout();
  SegmentInspection out;
  out.path = segment.path();
  out.format_version = segment.header().version;
  out.total_size_bytes = layout.total_size;
  // current_size is an atomic word of the shared header (§16); the mapping
  // is writable, Segment only hands out a const view of it.
  auto* header = reinterpret_cast<shm::SegmentHeader*>(segment.base());
  out.current_size_bytes =
      std::atomic_ref<uint64_t>(header->current_size).load(std::memory_order_acquire);
  out.max_guests = layout.max_guests;
  out.ring_capacity_bytes = layout.ring_capacity;
  out.max_payload_size_bytes = segment.max_payload_size();
  out.inline_threshold_bytes = segment.EffectiveInlineThreshold();
  out.heartbeat_interval_ns = segment.heartbeat_interval_ns();
  out.host_goodbye = segment.HostGoodbye();

  shm::PeerTable peers = segment.peers();
  for (uint32_t index = 0; index < layout.max_guests; ++index) {
    const uint32_t peer_id = index + 1;
    absl::StatusOr<shm::PeerEntryView> entry = peers.Entry(peer_id);
    if (!entry.ok()) continue;  // cannot happen below max_guests
    InspectedPeer peer;
    peer.peer_id = peer_id;
    const shm::PeerPair pair = entry->LoadPair();
    peer.state = pair.first;
    peer.epoch = pair.second;
    peer.last_heartbeat_ns = entry->LastHeartbeat();
    if (peer.last_heartbeat_ns != 0 && peer.last_heartbeat_ns <= now_ns) {
      const uint64_t age_ns = now_ns - peer.last_heartbeat_ns;
      peer.heartbeat_age =
          age_ns > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())
              ? absl::InfiniteDuration()
              : absl::Nanoseconds(static_cast<int64_t>(age_ns));
      peer.stale = entry->IsHeartbeatStale(now_ns, out.heartbeat_interval_ns);
    }
    peer.guest_to_host_used_bytes = segment.GuestToHostRing(index).Occupancy();
    peer.host_to_guest_used_bytes = segment.HostToGuestRing(index).Occupancy();
    out.peers.push_back(peer);
  }

  shm::VarSlotPool pool = segment.pool();
  for (uint32_t k = 0; k < pool.num_classes(); ++k) {
    InspectedSlotClass slot_class;
    slot_class.class_index = k;
    slot_class.slot_size_bytes = pool.class_config(k).slot_size;
    slot_class.slot_count = pool.class_config(k).slot_count;
    slot_class.free_slots = pool.FreeCount(k);
    out.slot_classes.push_back(slot_class);
  }
  return out;
}

absl::StatusOr<SegmentInspection> InspectSegmentFile(const std::string& path) {
  absl::StatusOr<std::unique_ptr<shm::Segment>> segment = shm::Segment::Attach(path);
  if (!segment.ok()) {
    return absl::Status(segment.status().code(),
                        absl::StrCat("cannot inspect ", path, ": ", segment.status().message()));
  }
  return InspectSegment(**segment, MonotonicNowNs());
}

}  // namespace shmhub::ctl
