#include "shm/frame.h"

#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "shm/layout.h"
#include "shm/shm_error.h"

namespace shmhub::shm {
namespace {

// The end of every ring drain that parses entry after entry out of one
// TryRead span: cached so the common case does not allocate.
const absl::Status& IncompleteStatus() {
  static const absl::Status* const status = new absl::Status(ShmError(
      ShmErrc::kFrameIncomplete, "fewer than 8 readable bytes: no complete entry"));
  return *status;
}

absl::Status DoesNotFit(absl::string_view what, uint64_t needed, size_t available) {
  return ShmError(ShmErrc::kPayloadTooLarge,
                  absl::StrCat(what, " needs ", needed, " bytes, the destination has ",
                               available));
}

void StoreHeader(uint8_t* dst, uint32_t total_len, uint8_t flags, uint16_t inline_len) {
  FrameHeader header{};
  header.total_len = total_len;
  header.flags = flags;
  header.inline_len = inline_len;
  std::memcpy(dst, &header, sizeof header);
}

}  // namespace

absl::Status WriteInlineFrame(absl::Span<uint8_t> dst, absl::Span<const uint8_t> payload,
                              InlineLenField len_field) {
  if (payload.size() > kMaxInlinePayload) {
    return ShmError(ShmErrc::kPayloadTooLarge,
                    absl::StrCat("inline payload of ", payload.size(),
                                 " bytes exceeds the u16 inline_len (max ",
                                 kMaxInlinePayload, ")"));
  }
  const uint32_t len = static_cast<uint32_t>(payload.size());
  const uint32_t total_len = InlineFrameSize(len);
  if (dst.size() < total_len) return DoesNotFit("inline entry", total_len, dst.size());

  const uint16_t inline_len =
      len_field == InlineLenField::kPayloadLength ? static_cast<uint16_t>(len) : 0;
  StoreHeader(dst.data(), total_len, 0, inline_len);
  if (len != 0) std::memcpy(dst.data() + kFrameHeaderSize, payload.data(), len);
  // Padding is zero on the wire (§7.2); the granted bytes may hold old data.
  std::memset(dst.data() + kFrameHeaderSize + len, 0, total_len - kFrameHeaderSize - len);
  return absl::OkStatus();
}

absl::Status WriteSlotRefFrame(absl::Span<uint8_t> dst, const SlotRef& ref) {
  if (dst.size() < kSlotRefFrameSize) {
    return DoesNotFit("SLOT_REF entry", kSlotRefFrameSize, dst.size());
  }
  SlotRefBody body{};
  body.class_idx = ref.class_idx;
  body.extent_idx = ref.extent_idx;
  body.slot_idx = ref.slot_idx;
  body.generation = ref.generation;
  StoreHeader(dst.data(), kSlotRefFrameSize, kFrameFlagSlotRef, 0);
  std::memcpy(dst.data() + kFrameHeaderSize, &body, sizeof body);
  return absl::OkStatus();
}

absl::Status WriteMmapRefFrame(absl::Span<uint8_t> dst, const MmapRef& ref) {
  if (dst.size() < kMmapRefFrameSize) {
    return DoesNotFit("MMAP_REF entry", kMmapRefFrameSize, dst.size());
  }
  MmapRefBody body{};
  body.map_id = ref.map_id;
  body.map_generation = ref.map_generation;
  body.map_offset = ref.map_offset;
  body.payload_len = ref.payload_len;
  StoreHeader(dst.data(), kMmapRefFrameSize, kFrameFlagMmapRef, 0);
  std::memcpy(dst.data() + kFrameHeaderSize, &body, sizeof body);
  return absl::OkStatus();
}

absl::StatusOr<Frame> ParseFrame(absl::Span<const uint8_t> readable) {
  if (readable.size() < kFrameHeaderSize) return IncompleteStatus();
  // One copy of the header; the producer may rewrite the ring bytes at any
  // time, so only the copy is validated and used (§1.7).
  FrameHeader header;
  std::memcpy(&header, readable.data(), sizeof header);
  const uint32_t total_len = header.total_len;
  if (total_len < kFrameHeaderSize) {
    return ShmError(ShmErrc::kFrameBadLength,
                    absl::StrCat("entry total_len ", total_len, " is below the 8-byte header"));
  }
  if (total_len % 4 != 0) {
    return ShmError(ShmErrc::kFrameBadLength,
                    absl::StrCat("entry total_len ", total_len, " is not a multiple of 4"));
  }
  if (total_len > readable.size()) {
    return ShmError(ShmErrc::kFrameBadLength,
                    absl::StrCat("entry total_len ", total_len, " exceeds the ",
                                 readable.size(), " readable bytes"));
  }

  const bool slot_ref = (header.flags & kFrameFlagSlotRef) != 0;
  const bool mmap_ref = (header.flags & kFrameFlagMmapRef) != 0;
  if (slot_ref && mmap_ref) {
    return ShmError(ShmErrc::kFrameBothFlags,
                    absl::StrCat("entry flags 0x", absl::Hex(header.flags),
                                 " set both SLOT_REF and MMAP_REF"));
  }

  Frame frame;
  frame.total_len = total_len;
  if (slot_ref) {
    if (total_len < kSlotRefFrameSize) {
      return ShmError(ShmErrc::kFrameShortSlotRef,
                      absl::StrCat("SLOT_REF entry total_len ", total_len, " is below 20"));
    }
    SlotRefBody body;
    std::memcpy(&body, readable.data() + kFrameHeaderSize, sizeof body);
    frame.kind = FrameKind::kSlotRef;
    frame.slot_ref = SlotRef{body.class_idx, body.extent_idx, body.slot_idx, body.generation};
    return frame;
  }
  if (mmap_ref) {
    if (total_len < kMmapRefFrameSize) {
      return ShmError(ShmErrc::kFrameShortMmapRef,
                      absl::StrCat("MMAP_REF entry total_len ", total_len, " is below 32"));
    }
    MmapRefBody body;
    std::memcpy(&body, readable.data() + kFrameHeaderSize, sizeof body);
    frame.kind = FrameKind::kMmapRef;
    frame.mmap_ref = MmapRef{body.map_id, body.map_generation, body.map_offset, body.payload_len};
    return frame;
  }

  frame.kind = FrameKind::kInline;
  // inline_len 0 is the spec text's "reserved" form: the payload runs to the
  // end of the entry, padding included.
  const uint32_t payload_len =
      header.inline_len != 0 ? header.inline_len : total_len - kFrameHeaderSize;
  if (payload_len > total_len - kFrameHeaderSize) {
    return ShmError(ShmErrc::kFrameBadInlineLen,
                    absl::StrCat("inline_len ", header.inline_len,
                                 " does not fit in an entry of total_len ", total_len));
  }
  frame.inline_payload = readable.subspan(kFrameHeaderSize, payload_len);
  return frame;
}

absl::Status WriteSlotPayload(absl::Span<uint8_t> slot, absl::Span<const uint8_t> payload) {
  if (payload.size() > std::numeric_limits<uint32_t>::max() ||
      SlotBytesFor(static_cast<uint32_t>(payload.size())) > slot.size()) {
    return DoesNotFit("slot payload with its length prefix",
                      uint64_t{kSlotLengthPrefixSize} + payload.size(), slot.size());
  }
  const uint32_t len = static_cast<uint32_t>(payload.size());
  std::memcpy(slot.data(), &len, sizeof len);
  if (len != 0) std::memcpy(slot.data() + kSlotLengthPrefixSize, payload.data(), len);
  return absl::OkStatus();
}

absl::StatusOr<absl::Span<const uint8_t>> ReadSlotPayload(absl::Span<const uint8_t> slot) {
  if (slot.size() < kSlotLengthPrefixSize) {
    return ShmError(ShmErrc::kSlotBadLength,
                    absl::StrCat("slot of ", slot.size(), " bytes cannot hold the length prefix"));
  }
  // Loaded once: the sender may still scribble on the slot (§1.7).
  uint32_t len;
  std::memcpy(&len, slot.data(), sizeof len);
  if (len > slot.size() - kSlotLengthPrefixSize) {
    return ShmError(ShmErrc::kSlotBadLength,
                    absl::StrCat("slot length prefix ", len, " exceeds slot_size ",
                                 slot.size(), " - 4"));
  }
  return slot.subspan(kSlotLengthPrefixSize, len);
}

absl::StatusOr<FrameKind> ChooseTier(uint32_t payload_len, const TierPolicy& policy) {
  if (payload_len > policy.max_payload_size) {
    return ShmError(ShmErrc::kPayloadTooLarge,
                    absl::StrCat("payload of ", payload_len, " bytes exceeds max_payload_size ",
                                 policy.max_payload_size));
  }
  // Rust compares the bare payload length with the threshold; D-3 adds
  // the u16 limit and the half-ring limit.
  if (payload_len <= policy.inline_threshold && payload_len <= kMaxInlinePayload &&
      Align4(uint64_t{kFrameHeaderSize} + payload_len) <= policy.ring_capacity / 2) {
    return FrameKind::kInline;
  }
  if (SlotBytesFor(payload_len) <= policy.max_slot_size) return FrameKind::kSlotRef;
  return FrameKind::kMmapRef;
}

}  // namespace shmhub::shm
