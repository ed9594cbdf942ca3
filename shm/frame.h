// Entry framing inside a ring (segment-format.md §7): the bytes of inline,
// SLOT_REF and MMAP_REF entries, the length prefix a SLOT_REF slot carries
// (§7.5), and the sender's choice of tier (§7.6 with D-3).
//
// Contract
//  * A pure codec over byte spans: nothing here touches a ring header or
//    allocates. The producer writes an entry into the span a BipBuffer grant
//    returned and then commits the entry's length; the consumer parses the
//    span TryRead returned and then releases Frame::total_len. Committing and
//    releasing are the caller's job (§7.8, §7.7 step 6).
//  * Readers treat their input as hostile shared memory (§1.7): every field
//    is copied out with memcpy exactly once (entries are only 4-byte aligned),
//    the copy is validated, and nothing past the end of the span is read.
//    Spans a reader returns (an inline payload, a slot payload) still point
//    into shared memory: a consumer that needs stable bytes copies them.
//  * Every refusal of the reader has its own ShmErrc, so the daemon can report
//    exactly which rule a guest broke. A malformed entry is a protocol error
//    of its producer; the caller releases nothing and never skips bytes to
//    "resync" (§7.7).
//  * Thread-safety: every function is reentrant. Concurrent writes to the
//    same bytes are the caller's problem (the ring's single-producer rule).
#ifndef SHMHUB_SHM_FRAME_H_
#define SHMHUB_SHM_FRAME_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "shm/format.h"
#include "shm/slot_ref.h"

namespace shmhub::shm {

// The largest payload an inline entry can describe: inline_len is a u16, and
// a longer payload would be read back truncated by a Rust reader.
inline constexpr uint32_t kMaxInlinePayload = 0xFFFF;

// Size of the little-endian length prefix at the start of a slot (§7.5).
inline constexpr uint32_t kSlotLengthPrefixSize = 4;

enum class FrameKind : uint8_t {
  kInline,
  kSlotRef,
  kMmapRef,
};

// Where an MMAP_REF payload lives: `payload_len` bytes at `map_offset` of the
// mapping the sender announced as (`map_id`, `map_generation`) (§7.4, §9).
struct MmapRef {
  uint32_t map_id = 0;
  uint32_t map_generation = 0;
  uint64_t map_offset = 0;
  uint32_t payload_len = 0;

  friend bool operator==(const MmapRef&, const MmapRef&) = default;
};

// One parsed entry. Only the member named by `kind` is meaningful.
struct Frame {
  FrameKind kind = FrameKind::kInline;
  // The entry's length: what the consumer passes to BipBuffer::Release. For
  // reference entries it may exceed 20 / 32 bytes.
  uint32_t total_len = 0;
  // kInline: the payload, pointing into the parsed span (shared memory).
  absl::Span<const uint8_t> inline_payload;
  SlotRef slot_ref;  // kSlotRef
  MmapRef mmap_ref;  // kMmapRef
};

// What the inline writer stores in header bytes 6..7.
enum class InlineLenField : uint8_t {
  // The payload length, as the Rust writer does (§7.8). Use this.
  kPayloadLength,
  // Zero, as the spec text (bytes 5..7 "reserved") and the reference vector
  // frame_inline.bin have it. A reader then returns total_len - 8 bytes,
  // padding included, so this form is lossless only for payloads whose
  // length is a multiple of 4. It exists to reproduce that vector (C-X2).
  kZero,
};

// align4(8 + payload_len): the length of the inline entry carrying
// `payload_len` bytes (§7.2). Requires payload_len <= kMaxInlinePayload; no
// longer payload can be sent inline.
constexpr uint32_t InlineFrameSize(uint32_t payload_len) {
  return (kFrameHeaderSize + payload_len + 3u) & ~3u;
}

// ---- Writers (§7.8) -------------------------------------------------------
// Each writes exactly its entry's length at the start of `dst` (the granted
// span; it may be longer) and nothing beyond. They refuse, with
// kPayloadTooLarge and `dst` untouched, an entry that does not fit in `dst`.

// Header (InlineFrameSize(len), 0, 0, len), the payload, zero padding.
// Refuses payloads over kMaxInlinePayload (kPayloadTooLarge), whatever the
// form of bytes 6..7.
absl::Status WriteInlineFrame(
    absl::Span<uint8_t> dst, absl::Span<const uint8_t> payload,
    InlineLenField len_field = InlineLenField::kPayloadLength);

// Header (20, 0x01, 0, 0) and the 12-byte body with its reserved bytes 0.
absl::Status WriteSlotRefFrame(absl::Span<uint8_t> dst, const SlotRef& ref);

// Header (32, 0x02, 0, 0) and the 24-byte body with its reserved word 0.
absl::Status WriteMmapRefFrame(absl::Span<uint8_t> dst, const MmapRef& ref);

// ---- Reader (§7.7) ----------------------------------------------------------

// Parses the entry at the start of `readable` (a TryRead span; an entry never
// crosses the wrap, so it must lie wholly inside). Refusals, in the order the
// spec checks them:
//   kFrameIncomplete    fewer than 8 bytes: an empty span has nothing to
//                       read; a non-empty one from TryRead means a broken
//                       producer, since producers commit whole entries
//   kFrameBadLength     total_len < 8, not a multiple of 4, or > the span
//   kFrameBothFlags     flag bits 0x01 and 0x02 both set
//   kFrameShortSlotRef  SLOT_REF with total_len < 20
//   kFrameShortMmapRef  MMAP_REF with total_len < 32
//   kFrameBadInlineLen  inline with inline_len != 0 and 8 + inline_len > total_len
// Like Rust, other flag bits and all reserved bytes are ignored, and a
// reference entry longer than its body is accepted. An inline entry
// with inline_len 0 carries [8, total_len), padding included.
absl::StatusOr<Frame> ParseFrame(absl::Span<const uint8_t> readable);

// ---- Slot contents of a SLOT_REF payload (§7.5) [A-4] --------------------

// The slot size a payload of `payload_len` bytes needs: the length prefix
// plus the payload. This is what the sender asks the pool for.
constexpr uint64_t SlotBytesFor(uint32_t payload_len) {
  return uint64_t{kSlotLengthPrefixSize} + payload_len;
}

// Stores the LE u32 length and then the payload at the start of `slot`; the
// rest of the slot is left as it is. kPayloadTooLarge, slot untouched, when
// the slot is shorter than SlotBytesFor(payload.size()).
absl::Status WriteSlotPayload(absl::Span<uint8_t> slot,
                              absl::Span<const uint8_t> payload);

// The payload [4, 4 + len) of `slot` (the whole slot, slot_size bytes).
// kSlotBadLength when the slot is shorter than 4 bytes or the stored length
// exceeds slot_size - 4. Rust frees the slot in both cases; so should the
// caller.
absl::StatusOr<absl::Span<const uint8_t>> ReadSlotPayload(
    absl::Span<const uint8_t> slot);

// ---- Choosing a tier (§7.6) ---------------------------------------------------

// The sender's view of the segment, from its own trusted configuration.
struct TierPolicy {
  // The effective threshold: a stored 0 already replaced by
  // kDefaultInlineThreshold.
  uint32_t inline_threshold = kDefaultInlineThreshold;
  uint32_t max_payload_size = 0;
  uint32_t ring_capacity = 0;  // bytes per direction
  uint32_t max_slot_size = 0;  // largest class's slot_size; 0 if no classes
};

// Rust's rule, [A-4] with the D-3 guards:
//   len > max_payload_size                        -> kPayloadTooLarge
//   len <= inline_threshold, len <= 65535 and
//     InlineFrameSize(len) <= ring_capacity / 2    -> kInline
//   len + 4 <= max_slot_size                       -> kSlotRef
//   otherwise                                      -> kMmapRef
// The capacity/2 guard is what lets every inline entry be granted into an
// empty ring wherever its indexes stand (§6.3), so a sender never needs a
// consumer reset before an inline entry fits.
absl::StatusOr<FrameKind> ChooseTier(uint32_t payload_len,
                                     const TierPolicy& policy);

}  // namespace shmhub::shm

#endif  // SHMHUB_SHM_FRAME_H_
