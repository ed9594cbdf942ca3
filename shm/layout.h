// Layout arithmetic of a hub segment (format §4): where every entry, ring,
// class header, metadata array and slot lives, computed from the geometry
// alone. The host computes this once from its own configuration and never
// trusts the header again; an attacher computes it from validated header
// fields and compares it with what the segment claims.
#ifndef SHMHUB_SHM_LAYOUT_H_
#define SHMHUB_SHM_LAYOUT_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace shmhub::shm {

// One slot class as configured: `slot_count` slots of `slot_size` bytes.
struct SlotClassConfig {
  uint32_t slot_size = 0;
  uint32_t slot_count = 0;

  friend bool operator==(const SlotClassConfig&, const SlotClassConfig&) = default;
};

// Absolute offsets (from the segment base) of one class's regions.
struct SlotClassLayout {
  SlotClassConfig config;
  uint64_t header_offset = 0;  // 64-byte ClassHeader
  uint64_t meta_offset = 0;    // slot_count SlotMeta records
  uint64_t data_offset = 0;    // slot_count * slot_size bytes, slots packed
};

struct SegmentLayout {
  uint32_t max_guests = 0;
  uint32_t ring_capacity = 0;  // bipbuf_capacity, per direction
  uint64_t ring_base = 0;      // first ring pair, right after the peer table
  uint64_t ring_stride = 0;    // align64(128 + capacity): one ring
  uint64_t pair_stride = 0;    // two rings
  uint64_t var_pool_offset = 0;
  uint64_t pool_size = 0;
  uint64_t total_size = 0;
  std::vector<SlotClassLayout> classes;

  // All of these take a peer *index* (peer_id - 1) below max_guests.
  uint64_t EntryOffset(uint32_t index) const;
  uint64_t RingOffset(uint32_t index) const;          // = guest->host header
  uint64_t GuestToHostHeader(uint32_t index) const;   // data at +128
  uint64_t HostToGuestHeader(uint32_t index) const;   // data at +128
  // Offset of slot `slot` of class `k`'s data and of its metadata record.
  uint64_t SlotDataOffset(uint32_t k, uint32_t slot) const;
  uint64_t SlotMetaOffset(uint32_t k, uint32_t slot) const;
};

constexpr uint64_t Align4(uint64_t n) { return (n + 3) & ~uint64_t{3}; }
constexpr uint64_t Align64(uint64_t n) { return (n + 63) & ~uint64_t{63}; }

// Computes the layout with the arithmetic checked for 64-bit overflow.
// Refuses (kBadConfig / kLayoutOverflow / kBadMaxGuests / kBadRingCapacity /
// kBadClassCount / kBadSlotClass) inputs the format cannot express. Class
// order is not checked here: attach accepts any order the Rust crate
// accepts; the creator's stricter rules live in Segment::Create.
absl::StatusOr<SegmentLayout> ComputeLayout(uint32_t max_guests, uint32_t ring_capacity,
                                            absl::Span<const SlotClassConfig> classes);

}  // namespace shmhub::shm

#endif  // SHMHUB_SHM_LAYOUT_H_
