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

// Every ShmErrc, once: X(name, canonical code). The canonical code tells
// callers what to do; the ShmErrc says what failed. Corrupt shared memory
// is DATA_LOSS: the peer that owns it is broken.
#define SHMHUB_SHM_ERRCS(X)                                                                  \
  /* Segment file and attach validation (§3, §15). One value per check. */                   \
  X(kIo, kInternal) /* a system call failed (errno in the message) */                        \
  X(kSymlink, kInvalidArgument) /* the segment path is a symlink */                          \
  X(kNotRegularFile, kInvalidArgument) /* the segment path is not a regular file */          \
  X(kLiveSegment, kAlreadyExists) /* another host holds the segment's lock */                \
  X(kFileTooSmall, kDataLoss) /* file shorter than the 128-byte header */                    \
  X(kNotInitialised, kUnavailable) /* magic is all zero */                                   \
  X(kBadMagic, kDataLoss) /* magic differs in any byte */                                    \
  X(kBadVersion, kDataLoss) /* version != 7 */                                               \
  X(kBadHeaderSize, kDataLoss) /* header_size != 128 */                                      \
  X(kBadMaxGuests, kDataLoss) /* max_guests outside 1..255 */                                \
  X(kBadRingCapacity, kDataLoss) /* bipbuf_capacity outside 1..2^31 */                       \
  X(kBadClassCount, kDataLoss) /* num_var_slot_classes outside 1..256 */                     \
  X(kBadPeerTableOffset, kDataLoss) /* peer_table_offset != 128 */                           \
  X(kClassTableOutOfBounds, kDataLoss) /* class header table runs past the file */           \
  X(kBadSlotClass, kDataLoss) /* slot_size 0, slot_count 0 or all-ones */                    \
  X(kLayoutOverflow, kDataLoss) /* layout arithmetic overflows 64 bits */                    \
  X(kNonCanonicalLayout, kDataLoss) /* var_pool_offset or total_size not canonical */        \
  X(kBadCurrentSize, kDataLoss) /* current_size < total_size */                              \
  X(kFileShorterThanSegment, kDataLoss) /* file shorter than current_size */                 \
  X(kBadRingOffset, kDataLoss) /* an entry's ring_offset is not canonical */                 \
  X(kRingCapacityMismatch, kDataLoss) /* a ring header's capacity != bipbuf_capacity */      \
  X(kBadConfig, kInvalidArgument) /* creation parameters refused */                          \
  /* Peer table (§5). */                                                                     \
  X(kInvalidPeerId, kInvalidArgument) /* id 0, > 255, or > max_guests */                     \
  X(kWrongState, kFailedPrecondition) /* the entry is not in the state the op needs */       \
  X(kInvalidState, kFailedPrecondition) /* the state word holds no valid state */            \
  X(kStaleEpoch, kFailedPrecondition) /* fenced op: the epoch moved on */                    \
  X(kNoFreeEntry, kResourceExhausted) /* no Empty entry left */                              \
  /* BipBuffer (§6). */                                                                      \
  X(kRingFull, kResourceExhausted) /* backpressure, not an error of the peer */              \
  X(kRingCorrupt, kDataLoss) /* header words outside every legal state */                    \
  X(kRingStalled, kUnavailable) /* producer's wrap not visible within the bound */           \
  X(kRingOutOfRange, kOutOfRange) /* commit/release beyond capacity */                       \
  /* Framing (§7). */                                                                        \
  X(kFrameIncomplete, kUnavailable) /* fewer than 8 bytes readable */                        \
  X(kFrameBadLength, kDataLoss) /* total_len < 8, not a multiple of 4, > span */             \
  X(kFrameBothFlags, kDataLoss) /* SLOT_REF and MMAP_REF both set */                         \
  X(kFrameShortSlotRef, kDataLoss) /* SLOT_REF with total_len < 20 */                        \
  X(kFrameShortMmapRef, kDataLoss) /* MMAP_REF with total_len < 32 */                        \
  X(kFrameBadInlineLen, kDataLoss) /* 8 + inline_len > total_len */                          \
  X(kPayloadTooLarge, kInvalidArgument) /* len > max_payload_size */                         \
  X(kSlotBadLength, kDataLoss) /* slot length prefix > slot_size - 4 */                      \
  /* VarSlotPool (§8). */                                                                    \
  X(kNoClass, kInvalidArgument) /* no class large enough */                                  \
  X(kPoolExhausted, kResourceExhausted) /* every candidate class is empty */                 \
  X(kDoubleFree, kFailedPrecondition) /* state not Allocated or generation moved */          \
  X(kBadSlotRef, kInvalidArgument) /* class/extent/slot index out of range */                \
  X(kPoolCorrupt, kDataLoss) /* free list index out of range, or a cycle */                  \
  /* Mapping control (§9). */                                                                \
  X(kMappingInvalidLength, kDataLoss)                                                        \
  X(kMappingPeerClosed, kUnavailable)                                                        \
  X(kMappingControlTruncated, kDataLoss)                                                     \
  X(kMappingNoFd, kDataLoss)                                                                 \
  X(kMappingUnknownKey, kInvalidArgument)                                                    \
  X(kMappingOverflow, kInvalidArgument)                                                      \
  X(kMappingOutOfBounds, kInvalidArgument)                                                   \
  /* Doorbell (§10). */                                                                      \
  X(kPeerDead, kUnavailable)                                                                 \
  X(kPeerClosed, kUnavailable)                                                               \
  /* Bootstrap (§11). */                                                                     \
  X(kBootstrapTruncated, kDataLoss)                                                          \
  X(kBootstrapInvalidMagic, kDataLoss)                                                       \
  X(kBootstrapUnknownStatus, kDataLoss)                                                      \
  X(kBootstrapLengthMismatch, kDataLoss)                                                     \
  X(kBootstrapBadPeerId, kDataLoss)                                                          \
  X(kBootstrapPayloadTooLarge, kInvalidArgument)                                             \
  X(kBootstrapBadFdCount, kDataLoss)                                                         \
  X(kBootstrapControlTruncated, kDataLoss)                                                   \
  X(kBootstrapBadFields, kDataLoss)                                                          \
  /* Host application control (ours, not in the format; shm/host_control.h). */              \
  X(kHostControlClosed, kUnavailable) /* the other side closed at a record boundary */       \
  X(kHostRecordTruncated, kDataLoss) /* not a whole 16-byte record (or closed mid-record) */ \
  X(kHostRecordUnknownType, kDataLoss) /* a type no side sends */                            \
  X(kHostRecordWrongSender, kDataLoss) /* a type the other side may not send */              \
  X(kHostRecordBadField, kDataLoss) /* peer id, epoch or arg out of range for the type */    \
  X(kHostRecordBadFdCount, kDataLoss) /* fds not those the record carries, or late */        \
  X(kHostRecordControlTruncated, kDataLoss) /* the kernel cut the control data */

enum class ShmErrc : int {
  kNone = 0,  // the status is OK, or carries no ShmErrc payload
#define SHMHUB_SHM_ERRC_ENUMERATOR(name, code) name,
  SHMHUB_SHM_ERRCS(SHMHUB_SHM_ERRC_ENUMERATOR)
#undef SHMHUB_SHM_ERRC_ENUMERATOR
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
