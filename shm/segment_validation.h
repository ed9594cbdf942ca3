// Attach-time validation of a hub segment (format §3 "Validation when
// attaching", D-6).
//
// A guest, the fuzz target and any daemon code that reopens a segment run
// every mapped segment through ValidateSegment before touching it. The result
// is the layout recomputed from validated header fields (§4, §8.3): the only
// geometry a caller may trust afterwards. The header itself stays hostile and
// may change at any moment after validation returns.
#ifndef SHMHUB_SHM_SEGMENT_VALIDATION_H_
#define SHMHUB_SHM_SEGMENT_VALIDATION_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "shm/layout.h"

namespace shmhub::shm {

// Runs the §3 checks in their order and stops at the first failure, which
// carries its own ShmErrc (kFileTooSmall, kNotInitialised, kBadMagic,
// kBadVersion, kBadHeaderSize, kBadMaxGuests, kBadRingCapacity,
// kBadClassCount, kBadPeerTableOffset, kClassTableOutOfBounds, kBadSlotClass,
// kLayoutOverflow, kNonCanonicalLayout, kBadCurrentSize,
// kFileShorterThanSegment, kBadRingOffset, kRingCapacityMismatch) and a
// message naming the field and its value.
//
// `mapped` is the mapping of the file and `file_size` the size fstat reported.
// Bytes outside `mapped` are never read: should the mapping be shorter than
// `file_size`, the file counts as only `mapped.size()` bytes long.
// `mapped.data()` must be 8-byte aligned (any mmap is), because the magic
// and current_size are read as 64-bit atomics.
//
// Pure over bytes: no system calls, no writes. Every guest-writable value is
// loaded exactly once; the magic with one 64-bit acquire load that pairs with
// the creator's release store (D-5), current_size with acquire (§16). Peer
// state words and reserved bytes are not checked (§3 steps 14, 15).
// Safe to call while other processes write the segment.
absl::StatusOr<SegmentLayout> ValidateSegment(absl::Span<const uint8_t> mapped,
                                              uint64_t file_size);

}  // namespace shmhub::shm

#endif  // SHMHUB_SHM_SEGMENT_VALIDATION_H_
