#include "shm/segment_validation.h"

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "shm/format.h"
#include "shm/shm_error.h"

namespace shmhub::shm {
namespace {

// One plain (non-atomic) load of a T at `offset`; the caller has checked
// that offset + sizeof(T) lies inside the mapping. memcpy because entries
// of hostile segments need not be aligned for T.
template <typename T>
T LoadPlain(const uint8_t* base, uint64_t offset) {
  T value;
  std::memcpy(&value, base + offset, sizeof(T));
  return value;
}

// One acquire load of the 64-bit word at `offset` (8-aligned by the format
// and by the caller's contract). atomic_ref needs a non-const referent in
// C++20; a load never writes through it.
uint64_t LoadAcquire64(const uint8_t* base, uint64_t offset) {
  auto* word = static_cast<uint64_t*>(static_cast<void*>(const_cast<uint8_t*>(base + offset)));
  return std::atomic_ref<uint64_t>(*word).load(std::memory_order_acquire);
}

}  // namespace

absl::StatusOr<SegmentLayout> ValidateSegment(absl::Span<const uint8_t> mapped,
                                              uint64_t file_size) {
  const uint8_t* base = mapped.data();
  // Everything below checks against `size`, so no read leaves `mapped`.
  const uint64_t size = std::min<uint64_t>(file_size, mapped.size());

  // Step 1.
  if (size < kHeaderSize) {
    return ShmError(ShmErrc::kFileTooSmall,
                    absl::StrCat("file size ", size, " is smaller than the ", kHeaderSize,
                                 "-byte segment header"));
  }

  // Step 2. Acquire pairs with the creator's release store of the magic
  // (D-5): every header, entry, ring and pool byte written before it is
  // visible to the loads below.
  const uint64_t magic = LoadAcquire64(base, offsetof(SegmentHeader, magic));
  if (magic == 0) {
    return ShmError(ShmErrc::kNotInitialised,
                    "segment not initialised yet: magic is all zero");
  }
  if (magic != kMagic) {
    return ShmError(ShmErrc::kBadMagic,
                    absl::StrCat("not a hub segment: magic 0x", absl::Hex(magic, absl::kZeroPad16),
                                 " != 0x", absl::Hex(kMagic, absl::kZeroPad16)));
  }

  // Steps 3 to 8: plain header fields, each loaded once.
  const auto version = LoadPlain<uint32_t>(base, offsetof(SegmentHeader, version));
  if (version != kVersion) {
    return ShmError(ShmErrc::kBadVersion,
                    absl::StrCat("version ", version, " != ", kVersion));
  }
  const auto header_size = LoadPlain<uint32_t>(base, offsetof(SegmentHeader, header_size));
  if (header_size != kHeaderSize) {
    return ShmError(ShmErrc::kBadHeaderSize,
                    absl::StrCat("header_size ", header_size, " != ", kHeaderSize));
  }
  const auto max_guests = LoadPlain<uint32_t>(base, offsetof(SegmentHeader, max_guests));
  if (max_guests < 1 || max_guests > kMaxGuests) {
    return ShmError(ShmErrc::kBadMaxGuests,
                    absl::StrCat("max_guests ", max_guests, " is outside 1..", kMaxGuests));
  }
  const auto capacity = LoadPlain<uint32_t>(base, offsetof(SegmentHeader, bipbuf_capacity));
  if (capacity < 1 || capacity > kMaxRingCapacity) {
    return ShmError(ShmErrc::kBadRingCapacity,
                    absl::StrCat("bipbuf_capacity ", capacity, " is outside 1..2^31"));
  }
  const auto class_count =
      LoadPlain<uint32_t>(base, offsetof(SegmentHeader, num_var_slot_classes));
  if (class_count < 1 || class_count > kMaxSlotClasses) {
    return ShmError(ShmErrc::kBadClassCount,
                    absl::StrCat("num_var_slot_classes ", class_count, " is outside 1..",
                                 kMaxSlotClasses));
  }
  const auto peer_table_offset =
      LoadPlain<uint64_t>(base, offsetof(SegmentHeader, peer_table_offset));
  if (peer_table_offset != kPeerTableOffset) {
    return ShmError(ShmErrc::kBadPeerTableOffset,
                    absl::StrCat("peer_table_offset ", peer_table_offset, " != ",
                                 kPeerTableOffset));
  }

  // Step 9, before any class header is read. class_count <= 256 keeps the
  // table length small; only the guest's var_pool_offset can overflow.
  const auto var_pool_offset =
      LoadPlain<uint64_t>(base, offsetof(SegmentHeader, var_pool_offset));
  const uint64_t table_bytes = kClassHeaderSize * class_count;
  uint64_t table_end = 0;
  if (__builtin_add_overflow(var_pool_offset, table_bytes, &table_end) || table_end > size) {
    return ShmError(ShmErrc::kClassTableOutOfBounds,
                    absl::StrCat("class header table at var_pool_offset ", var_pool_offset,
                                 " with ", class_count, " classes (", table_bytes,
                                 " bytes) runs past the file size ", size));
  }

  // Step 10: every class, then the arithmetic (§8.3 discovery).
  std::vector<SlotClassConfig> classes(class_count);
  for (uint32_t k = 0; k < class_count; ++k) {
    const uint64_t at = var_pool_offset + kClassHeaderSize * k;
    classes[k].slot_size = LoadPlain<uint32_t>(base, at + offsetof(ClassHeader, slot_size));
    classes[k].slot_count = LoadPlain<uint32_t>(base, at + offsetof(ClassHeader, slot_count));
    if (classes[k].slot_size == 0 || classes[k].slot_count == 0 ||
        classes[k].slot_count > kMaxSlotCount) {
      return ShmError(ShmErrc::kBadSlotClass,
                      absl::StrCat("slot class ", k, " has slot_size ", classes[k].slot_size,
                                   " and slot_count ", classes[k].slot_count,
                                   "; need slot_size >= 1 and 1 <= slot_count <= ",
                                   kMaxSlotCount));
    }
  }
  // Every input is in range now, so the only error left is kLayoutOverflow.
  absl::StatusOr<SegmentLayout> layout = ComputeLayout(max_guests, capacity, classes);
  if (!layout.ok()) return layout.status();

  // Step 11.
  if (var_pool_offset != layout->var_pool_offset) {
    return ShmError(ShmErrc::kNonCanonicalLayout,
                    absl::StrCat("var_pool_offset ", var_pool_offset, " != canonical ",
                                 layout->var_pool_offset));
  }
  const auto total_size = LoadPlain<uint64_t>(base, offsetof(SegmentHeader, total_size));
  if (total_size != layout->total_size) {
    return ShmError(ShmErrc::kNonCanonicalLayout,
                    absl::StrCat("total_size ", total_size, " != canonical ",
                                 layout->total_size));
  }

  // Step 12. Acquire pairs with the host's release store after a grow (§16).
  const uint64_t current_size = LoadAcquire64(base, offsetof(SegmentHeader, current_size));
  if (current_size < total_size) {
    return ShmError(ShmErrc::kBadCurrentSize,
                    absl::StrCat("current_size ", current_size, " < total_size ", total_size));
  }
  if (current_size > size) {
    return ShmError(ShmErrc::kFileShorterThanSegment,
                    absl::StrCat("file size ", size, " < current_size ", current_size));
  }

  // Step 13. Every entry and ring header lies below total_size <= size.
  for (uint32_t i = 0; i < max_guests; ++i) {
    const auto ring_offset =
        LoadPlain<uint64_t>(base, layout->EntryOffset(i) + offsetof(PeerEntry, ring_offset));
    if (ring_offset != layout->RingOffset(i)) {
      return ShmError(ShmErrc::kBadRingOffset,
                      absl::StrCat("peer entry ", i + 1, " ring_offset ", ring_offset,
                                   " != canonical ", layout->RingOffset(i)));
    }
    for (const uint64_t ring : {layout->GuestToHostHeader(i), layout->HostToGuestHeader(i)}) {
      const auto ring_capacity = LoadPlain<uint32_t>(base, ring + offsetof(RingHeader, capacity));
      if (ring_capacity != capacity) {
        return ShmError(ShmErrc::kRingCapacityMismatch,
                        absl::StrCat("ring header at ", ring, " (peer ", i + 1, ") capacity ",
                                     ring_capacity, " != bipbuf_capacity ", capacity));
      }
    }
  }
  return layout;
}

}  // namespace shmhub::shm
