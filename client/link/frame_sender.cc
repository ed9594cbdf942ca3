#include "client/link/frame_sender.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/link/asymmetric_fence.h"
#include "client/link/ring_geometry.h"
#include "shm/format.h"
#include "shm/shm_error.h"

namespace shmhub::client {
namespace {

shm::TierPolicy PolicyOf(const shm::Segment& segment) {
  uint32_t max_slot = 0;
  for (const shm::SlotClassLayout& cl : segment.layout().classes) {
    max_slot = std::max(max_slot, cl.config.slot_size);
  }
  return shm::TierPolicy{segment.EffectiveInlineThreshold(), segment.max_payload_size(),
                         segment.layout().ring_capacity, max_slot};
}

absl::Status WouldBlock(absl::string_view what) {
  return absl::ResourceExhaustedError(absl::StrCat(what, "; TrySend does not wait"));
}

}  // namespace

FrameSender::FrameSender(LinkCore& core, shm::UniqueFd mapping_control)
    : core_(core),
      ring_(SendRing(core.segment(), core.side(), core.peer_id())),
      ring_data_(RingData(core.segment(), SendRingHeaderOffset(core.segment(), core.side(),
                                                               core.peer_id()))),
      progress_(RingHeaderAt(core.segment(),
                             SendRingHeaderOffset(core.segment(), core.side(), core.peer_id())),
                core.segment().layout().ring_capacity),
      pool_(core.segment().pool()),
      owner_(core.side() == LinkSide::kGuest ? core.peer_id() : shm::kHostPeerId),
      policy_(PolicyOf(core.segment())) {
  if (mapping_control.valid()) regions_.emplace(std::move(mapping_control));
}

absl::Status FrameSender::LinkError(const absl::Status& status) {
  switch (shm::ShmErrcOf(status)) {
    case shm::ShmErrc::kRingCorrupt:
    case shm::ShmErrc::kRingOutOfRange:
    case shm::ShmErrc::kPoolCorrupt:
      return core_.Fail(absl::DataLossError(
          absl::StrCat(core_.name(), ": the segment is corrupt: ", status.message())));
    case shm::ShmErrc::kMappingPeerClosed:
      core_.MarkGone(status);
      return core_.CheckPeer();
    default:
      return absl::Status(status.code(), absl::StrCat(core_.name(), ": ", status.message()));
  }
}

absl::Status FrameSender::Retry(absl::Time deadline, bool may_wait,
                                absl::FunctionRef<absl::StatusOr<bool>()> attempt) {
  if (may_wait) return core_.WaitUntil(deadline, attempt);
  absl::StatusOr<bool> done = attempt();
  if (!done.ok()) return done.status();
  return *done ? absl::OkStatus() : WouldBlock(absl::StrCat(core_.name(), ": no room now"));
}

absl::StatusOr<bool> FrameSender::TryGrantOnce(uint32_t n, absl::Span<uint8_t>* span,
                                               uint64_t* start) {
  const uint32_t write_before = progress_.LoadWrite();
  absl::StatusOr<absl::Span<uint8_t>> granted = ring_.TryGrant(n);
  if (granted.ok()) {
    *span = *granted;
    *start = progress_.OnGranted(write_before,
                                 static_cast<uint32_t>(granted->data() - ring_data_));
    return true;
  }
  if (shm::ShmErrcOf(granted.status()) != shm::ShmErrc::kRingFull) {
    return LinkError(granted.status());
  }
  // §10: a failed grant that published a wrap needs the consumer to drain
  // the tail and reset before the entry can fit; wake it for that.
  if (progress_.OnGrantFailed(write_before)) core_.RingPeer();
  // About to wait: the consumer may be asleep on entries of this batch.
  FlushDoorbell();
  return false;
}

absl::Status FrameSender::Commit(uint32_t n, uint64_t start) {
  if (absl::Status committed = ring_.Commit(n); !committed.ok()) return LinkError(committed);
  if (!pending_) {
    pending_ = true;
    pending_begin_ = start;
  }
  pending_end_ = start + n;
  return absl::OkStatus();
}

void FrameSender::FlushDoorbell() {
  if (!pending_) return;
  pending_ = false;
  if (!core_.has_doorbell()) return;
  if (core_.always_ring()) {
    core_.RingPeer();
    return;
  }
  // The producer's half of the Dekker handshake, the light one: it runs on
  // every frame, the consumer's heavy half only before it sleeps
  // (asymmetric_fence.h). Our commits (the release stores of `write` above)
  // are ordered before the load of the consumer's position, and the
  // consumer orders its last release of `read` before its re-load of
  // `write`. So either we see it caught up with us (and ring), or it sees
  // our entries before it sleeps.
  AsymmetricFence::Light();
  const RingProgress::ConsumerPosition consumer = progress_.LoadConsumer();
  auto inside = [&](uint64_t position) {
    return position >= pending_begin_ && position < pending_end_;
  };
  if (inside(consumer.lo) || inside(consumer.hi)) core_.RingPeer();
}

absl::Status FrameSender::Send(absl::Span<const uint8_t> payload, absl::Time deadline,
                               bool may_wait) {
  absl::Status sent = SendFrame(payload, deadline, may_wait);
  FlushDoorbell();
  return sent;
}

absl::StatusOr<size_t> FrameSender::SendBatch(
    absl::Span<const absl::Span<const uint8_t>> payloads, absl::Time deadline) {
  size_t sent = 0;
  absl::Status status = absl::OkStatus();
  for (absl::Span<const uint8_t> payload : payloads) {
    status = SendFrame(payload, deadline, /*may_wait=*/true);
    if (!status.ok()) break;
    ++sent;
  }
  FlushDoorbell();
  if (status.ok()) return sent;
  return absl::Status(status.code(), absl::StrCat(status.message(), " (", sent, " of ",
                                                  payloads.size(), " frames were sent)"));
}

absl::Status FrameSender::SendFrame(absl::Span<const uint8_t> payload, absl::Time deadline,
                                    bool may_wait) {
  if (absl::Status peer = core_.CheckPeer(); !peer.ok()) return peer;
  if (payload.size() > UINT32_MAX) {
    return absl::InvalidArgumentError(
        absl::StrCat(core_.name(), ": payload of ", payload.size(), " bytes is too large"));
  }
  absl::StatusOr<shm::FrameKind> tier =
      shm::ChooseTier(static_cast<uint32_t>(payload.size()), policy_);
  if (!tier.ok()) return LinkError(tier.status());
  switch (*tier) {
    case shm::FrameKind::kInline:
      return SendInline(payload, deadline, may_wait);
    case shm::FrameKind::kSlotRef:
      return SendSlot(payload, deadline, may_wait);
    case shm::FrameKind::kMmapRef:
      return SendMmap(payload, deadline, may_wait);
  }
  return absl::InternalError("unknown tier");
}

absl::Status FrameSender::SendInline(absl::Span<const uint8_t> payload, absl::Time deadline,
                                     bool may_wait) {
  const uint32_t n = shm::InlineFrameSize(static_cast<uint32_t>(payload.size()));
  absl::Span<uint8_t> span;
  uint64_t start = 0;
  absl::Status granted =
      Retry(deadline, may_wait, [&]() { return TryGrantOnce(n, &span, &start); });
  if (!granted.ok()) return granted;
  if (absl::Status written = shm::WriteInlineFrame(span, payload); !written.ok()) {
    return LinkError(written);
  }
  return Commit(n, start);
}

absl::Status FrameSender::SendSlot(absl::Span<const uint8_t> payload, absl::Time deadline,
                                   bool may_wait) {
  const uint32_t size =
      static_cast<uint32_t>(shm::SlotBytesFor(static_cast<uint32_t>(payload.size())));
  shm::SlotRef ref;
  absl::Status allocated = Retry(deadline, may_wait, [&]() -> absl::StatusOr<bool> {
    absl::StatusOr<shm::SlotRef> got = pool_.Allocate(size, owner_);
    if (got.ok()) {
      ref = *got;
      return true;
    }
    if (shm::ShmErrcOf(got.status()) != shm::ShmErrc::kPoolExhausted) {
      return LinkError(got.status());
    }
    // About to wait: the consumer may be asleep on entries of this batch,
    // and it is the one that frees slots (and rings us when it does).
    FlushDoorbell();
    return false;
  });
  if (!allocated.ok()) return allocated;

  absl::StatusOr<absl::Span<uint8_t>> slot = pool_.SlotData(ref);
  absl::Status status = slot.ok() ? shm::WriteSlotPayload(*slot, payload) : slot.status();
  absl::Span<uint8_t> span;
  uint64_t start = 0;
  if (status.ok()) {
    status = Retry(deadline, may_wait, [&]() {
      return TryGrantOnce(shm::kSlotRefFrameSize, &span, &start);
    });
  }
  if (!status.ok()) {
    // Nothing names the slot yet: give it back, so a failed send sent
    // nothing. A failing free means someone else freed our slot.
    if (absl::Status freed = pool_.Free(ref); !freed.ok()) {
      return core_.Fail(absl::DataLossError(absl::StrCat(
          core_.name(), ": a slot we had just allocated was freed under us: ", freed.message())));
    }
    return status;
  }
  if (absl::Status written = shm::WriteSlotRefFrame(span, ref); !written.ok()) {
    return LinkError(written);
  }
  return Commit(shm::kSlotRefFrameSize, start);
}

absl::Status FrameSender::SendMmap(absl::Span<const uint8_t> payload, absl::Time deadline,
                                   bool may_wait) {
  if (!regions_.has_value()) {
    return absl::ResourceExhaustedError(absl::StrCat(
        core_.name(), ": a payload of ", payload.size(),
        " bytes does not fit a pool slot and the link has no mapping-control socket for "
        "MMAP_REF"));
  }
  const uint32_t len = static_cast<uint32_t>(payload.size());
  MmapRegionSender::Placement placement;
  absl::Status placed = Retry(deadline, may_wait, [&]() -> absl::StatusOr<bool> {
    // Acquire loads inside; no fence: an old position only delays reuse.
    absl::StatusOr<std::optional<MmapRegionSender::Placement>> got =
        regions_->Place(len, progress_.LoadConsumer().lo);
    if (!got.ok()) return LinkError(got.status());
    if (got->has_value()) {
      placement = **got;
      return true;
    }
    // Regions free up as the consumer releases entries; it may be asleep
    // on ours.
    FlushDoorbell();
    return false;
  });
  if (!placed.ok()) return placed;
  std::memcpy(placement.bytes.data(), payload.data(), payload.size());

  absl::Span<uint8_t> span;
  uint64_t start = 0;
  absl::Status granted = Retry(deadline, may_wait, [&]() {
    return TryGrantOnce(shm::kMmapRefFrameSize, &span, &start);
  });
  // An untracked placement is simply reused later: nothing names it.
  if (!granted.ok()) return granted;
  const shm::MmapRef ref{placement.map_id, 0, placement.offset, len};
  if (absl::Status written = shm::WriteMmapRefFrame(span, ref); !written.ok()) {
    return LinkError(written);
  }
  if (absl::Status committed = Commit(shm::kMmapRefFrameSize, start); !committed.ok()) {
    return committed;
  }
  regions_->Track(placement, start + shm::kMmapRefFrameSize);
  return absl::OkStatus();
}

}  // namespace shmhub::client
