// Error identity for the shm/ layer.
//
// Every failure in shm/ is an absl::Status whose canonical code says what a
// caller can do about it (retry, fix input, give up on the peer) and whose
// ShmErrc payload says exactly which check failed, so tests and the daemon
// can tell, say, "ring full" (backpressure) from "ring corrupt" (evict the
// guest) without parsing messages. Messages name the field and its value.
#ifndef SHMHUB_SHM_SHM_ERROR_H_
#define SHMHUB_SHM_SHM_ERROR_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace shmhub::shm {

enum class ShmErrc : int {
  kNone = 0,  // the status is OK, or carries no ShmErrc payload

  // Segment file and attach validation (§3, §15). One value per check.
  kIo,                       // a system call failed (errno in the message)
  kSymlink,                  // the segment path is a symlink
  kNotRegularFile,           // the segment path is not a regular file
  kLiveSegment,              // another host holds the segment's lock
  kFileTooSmall,             // file shorter than the 128-byte header
  kNotInitialised,           // magic is all zero
  kBadMagic,                 // magic differs in any byte
  kBadVersion,               // version != 7
  kBadHeaderSize,            // header_size != 128
  kBadMaxGuests,             // max_guests outside 1..255
  kBadRingCapacity,          // bipbuf_capacity outside 1..2^31
  kBadClassCount,            // num_var_slot_classes outside 1..256
  kBadPeerTableOffset,       // peer_table_offset != 128
  kClassTableOutOfBounds,    // class header table runs past the file
  kBadSlotClass,             // slot_size 0, slot_count 0 or all-ones
  kLayoutOverflow,           // layout arithmetic overflows 64 bits
  kNonCanonicalLayout,       // var_pool_offset or total_size not canonical
  kBadCurrentSize,           // current_size < total_size
  kFileShorterThanSegment,   // file shorter than current_size
  kBadRingOffset,            // an entry's ring_offset is not canonical
  kRingCapacityMismatch,     // a ring header's capacity != bipbuf_capacity
  kBadConfig,                // creation parameters refused

  // Peer table (§5).
  kInvalidPeerId,            // id 0, > 255, or > max_guests
  kWrongState,               // the entry is not in the state the op needs
  kInvalidState,             // the state word holds no valid state
  kStaleEpoch,               // fenced op: the epoch moved on
  kNoFreeEntry,              // no Empty entry left

  // BipBuffer (§6).
  kRingFull,                 // backpressure, not an error of the peer
  kRingCorrupt,              // header words outside every legal state
  kRingStalled,              // producer's wrap not visible within the bound
  kRingOutOfRange,           // commit/release beyond capacity

  // Framing (§7).
  kFrameIncomplete,          // fewer than 8 bytes readable
  kFrameBadLength,           // total_len < 8, not a multiple of 4, > span
  kFrameBothFlags,           // SLOT_REF and MMAP_REF both set
  kFrameShortSlotRef,        // SLOT_REF with total_len < 20
  kFrameShortMmapRef,        // MMAP_REF with total_len < 32
  kFrameBadInlineLen,        // 8 + inline_len > total_len
  kPayloadTooLarge,          // len > max_payload_size
  kSlotBadLength,            // slot length prefix > slot_size - 4

  // VarSlotPool (§8).
  kNoClass,                  // no class large enough
  kPoolExhausted,            // every candidate class is empty
  kDoubleFree,               // state not Allocated or generation moved
  kBadSlotRef,               // class/extent/slot index out of range
  kPoolCorrupt,              // free list index out of range, or a cycle

  // Mapping control (§9).
  kMappingInvalidLength,
  kMappingPeerClosed,
  kMappingControlTruncated,
  kMappingNoFd,
  kMappingUnknownKey,
  kMappingOverflow,
  kMappingOutOfBounds,

  // Doorbell (§10).
  kPeerDead,
  kPeerClosed,

  // Bootstrap (§11).
  kBootstrapTruncated,
  kBootstrapInvalidMagic,
  kBootstrapUnknownStatus,
  kBootstrapLengthMismatch,
  kBootstrapBadPeerId,
  kBootstrapPayloadTooLarge,
  kBootstrapBadFdCount,
  kBootstrapControlTruncated,
  kBootstrapBadFields,

  // Host application control (ours, not in the format; shm/host_control.h).
  kHostControlClosed,           // the other side closed at a record boundary
  kHostRecordTruncated,         // not a whole 16-byte record (or closed mid-record)
  kHostRecordUnknownType,       // a type no side sends
  kHostRecordWrongSender,       // a type the other side may not send
  kHostRecordBadField,          // peer id, epoch or arg out of range for the type
  kHostRecordBadFdCount,        // fds not those the record carries, or late
  kHostRecordControlTruncated,  // the kernel cut the control data
};

// Returns a non-OK status with the canonical code that fits `errc` and
// `errc` attached as a payload. `errc` must not be kNone.
absl::Status ShmError(ShmErrc errc, absl::string_view message);

// The ShmErrc carried by `status`, or kNone for OK and foreign statuses.
ShmErrc ShmErrcOf(const absl::Status& status);

// Stable, greppable name such as "kRingFull".
absl::string_view ShmErrcName(ShmErrc errc);

// "what: message", keeping the code and every payload (the ShmErrc), so a
// caller several layers up can still tell errors apart with ShmErrcOf.
absl::Status Annotate(const absl::Status& status, absl::string_view what);

// errno rendered for messages: "open(/dev/shm/x): Permission denied".
absl::Status ShmIoError(absl::string_view what, int err);

}  // namespace shmhub::shm

#endif  // SHMHUB_SHM_SHM_ERROR_H_
