#include "shm/layout.h"

#include "absl/strings/str_cat.h"
#include "shm/format.h"
#include "shm/shm_error.h"

namespace shmhub::shm {
namespace {

// a + b and a * b into *out; false on u64 overflow.
bool AddOk(uint64_t a, uint64_t b, uint64_t* out) { return !__builtin_add_overflow(a, b, out); }
bool MulOk(uint64_t a, uint64_t b, uint64_t* out) { return !__builtin_mul_overflow(a, b, out); }

// align64 of x into *out without wrapping past 2^64.
bool Align64Ok(uint64_t x, uint64_t* out) {
  if (x > UINT64_MAX - 63) return false;
  *out = Align64(x);
  return true;
}

absl::Status Overflow(absl::string_view what) {
  return ShmError(ShmErrc::kLayoutOverflow,
                  absl::StrCat("segment layout overflows 64 bits at ", what));
}

}  // namespace

uint64_t SegmentLayout::EntryOffset(uint32_t index) const {
  return kPeerTableOffset + kPeerEntrySize * index;
}

uint64_t SegmentLayout::RingOffset(uint32_t index) const {
  return ring_base + pair_stride * index;
}

uint64_t SegmentLayout::GuestToHostHeader(uint32_t index) const { return RingOffset(index); }

uint64_t SegmentLayout::HostToGuestHeader(uint32_t index) const {
  return RingOffset(index) + ring_stride;
}

uint64_t SegmentLayout::SlotDataOffset(uint32_t k, uint32_t slot) const {
  return classes[k].data_offset + uint64_t{classes[k].config.slot_size} * slot;
}

uint64_t SegmentLayout::SlotMetaOffset(uint32_t k, uint32_t slot) const {
  return classes[k].meta_offset + kSlotMetaSize * slot;
}

absl::StatusOr<SegmentLayout> ComputeLayout(uint32_t max_guests, uint32_t ring_capacity,
                                            absl::Span<const SlotClassConfig> classes) {
  if (max_guests < 1 || max_guests > kMaxGuests) {
    return ShmError(ShmErrc::kBadMaxGuests,
                    absl::StrCat("max_guests ", max_guests, " is outside 1..", kMaxGuests));
  }
  if (ring_capacity < 1 || ring_capacity > kMaxRingCapacity) {
    return ShmError(ShmErrc::kBadRingCapacity,
                    absl::StrCat("bipbuf_capacity ", ring_capacity, " is outside 1..2^31"));
  }
  if (classes.empty() || classes.size() > kMaxSlotClasses) {
    return ShmError(ShmErrc::kBadClassCount,
                    absl::StrCat("num_var_slot_classes ", classes.size(), " is outside 1..",
                                 kMaxSlotClasses));
  }
  SegmentLayout l;
  l.max_guests = max_guests;
  l.ring_capacity = ring_capacity;
  // With G <= 255 and C <= 2^31 the ring area stays far below 2^64.
  l.ring_base = kPeerTableOffset + kPeerEntrySize * max_guests;
  l.ring_stride = Align64(kRingHeaderSize + ring_capacity);
  l.pair_stride = 2 * l.ring_stride;
  l.var_pool_offset = Align64(l.ring_base + uint64_t{max_guests} * l.pair_stride);

  uint64_t cursor = Align64(kClassHeaderSize * classes.size());
  l.classes.reserve(classes.size());
  for (size_t k = 0; k < classes.size(); ++k) {
    const SlotClassConfig& c = classes[k];
    if (c.slot_size == 0 || c.slot_count == 0 || c.slot_count > kMaxSlotCount) {
      return ShmError(ShmErrc::kBadSlotClass,
                      absl::StrCat("slot class ", k, " has slot_size ", c.slot_size,
                                   " and slot_count ", c.slot_count,
                                   "; both must be non-zero and slot_count below 0xFFFFFFFF"));
    }
    SlotClassLayout cl;
    cl.config = c;
    cl.header_offset = l.var_pool_offset + kClassHeaderSize * k;
    uint64_t meta_bytes = kSlotMetaSize * c.slot_count;  // < 2^36, cannot overflow
    uint64_t data_bytes = 0;
    uint64_t meta_end = 0;
    uint64_t data_end = 0;
    if (!MulOk(c.slot_size, c.slot_count, &data_bytes)) return Overflow("slot data size");
    cl.meta_offset = cursor;
    if (!AddOk(cursor, meta_bytes, &meta_end) || !Align64Ok(meta_end, &cursor)) {
      return Overflow(absl::StrCat("class ", k, " metadata"));
    }
    cl.data_offset = cursor;
    if (!AddOk(cursor, data_bytes, &data_end) || !Align64Ok(data_end, &cursor)) {
      return Overflow(absl::StrCat("class ", k, " data"));
    }
    l.classes.push_back(cl);
  }
  l.pool_size = cursor;
  if (!AddOk(l.var_pool_offset, l.pool_size, &l.total_size)) return Overflow("total_size");
  // Class offsets so far are relative to the pool; make them absolute.
  for (SlotClassLayout& cl : l.classes) {
    cl.meta_offset += l.var_pool_offset;
    cl.data_offset += l.var_pool_offset;
  }
  return l;
}

}  // namespace shmhub::shm
