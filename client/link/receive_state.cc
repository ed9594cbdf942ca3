#include "client/link/receive_state.h"

#include <algorithm>
#include <atomic>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/link/ring_geometry.h"
#include "shm/format.h"
#include "shm/shm_error.h"

namespace shmhub::client {
namespace {

// The largest entry a producer of this segment writes: an inline entry at
// the threshold (capped by the u16 length and the ring), or a MMAP_REF.
uint32_t LargestEntry(const shm::Segment& segment) {
  const uint32_t inline_payload =
      std::min(segment.EffectiveInlineThreshold(), shm::kMaxInlinePayload);
  const uint32_t inline_entry =
      std::min(shm::InlineFrameSize(inline_payload), segment.layout().ring_capacity);
  return std::max(inline_entry, shm::kMmapRefFrameSize);
}

// Whether a grant of `n` bytes could have succeeded with the producer's
// `write` and the consumer's `read` (§6.3's rule, as BipBuffer::CanGrant).
bool Fits(uint64_t write, uint64_t read, uint64_t n, uint64_t capacity) {
  if (write >= read) return capacity - write >= n || (read != 0 && n < read);
  return write + n < read;
}

const char* SideRing(LinkSide side) {
  return side == LinkSide::kGuest ? "host->guest" : "guest->host";
}

}  // namespace

ReceiveState::ReceiveState(std::shared_ptr<LinkCore> core, shm::UniqueFd mapping_control)
    : core_(std::move(core)),
      pool_(core_->segment().pool()),
      expected_owner_(core_->side() == LinkSide::kGuest ? shm::kHostPeerId : core_->peer_id()),
      largest_entry_(LargestEntry(core_->segment())),
      give_back_chunk_(core_->segment().layout().ring_capacity / 8),
      header_(RingHeaderAt(core_->segment(), ReceiveRingHeaderOffset(
                                                  core_->segment(), core_->side(),
                                                  core_->peer_id()))),
      ring_(ReceiveRing(core_->segment(), core_->side(), core_->peer_id())) {
  if (mapping_control.valid()) mappings_.emplace(std::move(mapping_control));
}

size_t ReceiveState::outstanding() const {
  SpinLockHolder lock(&mu_);
  return outstanding_;
}

absl::Status ReceiveState::Corrupt(absl::string_view why) {
  return core_->Fail(absl::DataLossError(
      absl::StrCat(core_->name(), ": corrupt ", SideRing(core_->side()), " entry ", lead_,
                   " bytes past the read index: ", why)));
}

absl::StatusOr<absl::Span<const uint8_t>> ReceiveState::ResolveSlot(const shm::SlotRef& ref) {
  absl::StatusOr<absl::Span<uint8_t>> slot = pool_.SlotData(ref);
  if (!slot.ok()) return Corrupt(slot.status().message());
  absl::StatusOr<shm::SlotMetaSnapshot> meta = pool_.Meta(ref.class_idx, ref.slot_idx);
  if (!meta.ok()) return Corrupt(meta.status().message());
  if (meta->state != shm::kSlotAllocated || meta->generation != ref.generation) {
    return Corrupt(absl::StrCat("SLOT_REF names slot ", ref.slot_idx, " of class ",
                                uint32_t{ref.class_idx}, " generation ", ref.generation,
                                ", which is in state ", meta->state, " at generation ",
                                meta->generation));
  }
  if (meta->owner_peer != expected_owner_) {
    return Corrupt(absl::StrCat("SLOT_REF names slot ", ref.slot_idx, " of class ",
                                uint32_t{ref.class_idx}, ", owned by peer ", meta->owner_peer,
                                ", not by the sender (", expected_owner_, ")"));
  }
  absl::StatusOr<absl::Span<const uint8_t>> payload = shm::ReadSlotPayload(*slot);
  if (!payload.ok()) {
    // Rust frees a slot whose length prefix is bad; the slot is the
    // sender's and was handed to us, so it is ours to free.
    pool_.Free(ref).IgnoreError();
    return Corrupt(payload.status().message());
  }
  return *payload;
}

absl::StatusOr<std::optional<absl::Span<const uint8_t>>> ReceiveState::ResolveMmap(
    const shm::MmapRef& ref) {
  if (!mappings_.has_value()) {
    return Corrupt("MMAP_REF on a link without a mapping-control socket");
  }
  absl::StatusOr<absl::Span<const uint8_t>> bytes =
      mappings_->Resolve(ref.map_id, ref.map_generation, ref.map_offset, ref.payload_len);
  if (bytes.ok()) {
    unknown_key_since_.reset();
    return std::optional<absl::Span<const uint8_t>>(*bytes);
  }
  if (shm::ShmErrcOf(bytes.status()) == shm::ShmErrc::kMappingUnknownKey) {
    // §9.3: the announcement may still be on its way; keep draining.
    const absl::Time now = absl::Now();
    if (!unknown_key_since_.has_value()) unknown_key_since_ = now;
    if (now - *unknown_key_since_ < kUnknownKeyPatience) return std::nullopt;
  }
  return Corrupt(bytes.status().message());
}

absl::StatusOr<std::optional<absl::Span<const uint8_t>>> ReceiveState::Resolve(
    const shm::Frame& frame) {
  switch (frame.kind) {
    case shm::FrameKind::kInline:
      return std::optional<absl::Span<const uint8_t>>(frame.inline_payload);
    case shm::FrameKind::kSlotRef: {
      absl::StatusOr<absl::Span<const uint8_t>> payload = ResolveSlot(frame.slot_ref);
      if (!payload.ok()) return payload.status();
      return std::optional<absl::Span<const uint8_t>>(*payload);
    }
    case shm::FrameKind::kMmapRef:
      return ResolveMmap(frame.mmap_ref);
  }
  return Corrupt("unknown frame kind");
}

absl::StatusOr<size_t> ReceiveState::Take(size_t max, absl::FunctionRef<void(const View&)> sink) {
  bool ring = false;
  absl::StatusOr<size_t> taken = TakeLocked(max, sink, &ring);
  if (ring) core_->RingPeer();
  return taken;
}

absl::StatusOr<size_t> ReceiveState::TakeLocked(size_t max,
                                                absl::FunctionRef<void(const View&)> sink,
                                                bool* ring) {
  SpinLockHolder lock(&mu_);
  if (absl::Status open = core_->CheckOpen(); !open.ok()) return open;
  // Once recovery may have reset the rings (or a new occupant owns them)
  // there is nothing of ours to read; the caller's CheckPeer says why.
  if (!core_->RingsStillOurs()) return 0;
  if (ShouldGiveBack()) *ring = GiveBackRingBytes();
  size_t taken = 0;
  for (;;) {
    if (readable_.size() <= lead_) {
      // Everything we knew to be readable is parsed: look at `write` again
      // (the load that misses in the cache when the producer is busy, so
      // it is made once per burst of entries, not once per entry).
      absl::StatusOr<absl::Span<const uint8_t>> readable = ring_.TryRead();
      if (!readable.ok()) {
        // The producer is between its two wrap stores: nothing more yet.
        if (shm::ShmErrcOf(readable.status()) == shm::ShmErrc::kRingStalled) return taken;
        absl::Status corrupt = Corrupt(readable.status().message());
        return taken != 0 ? absl::StatusOr<size_t>(taken) : corrupt;
      }
      if (readable->size() < lead_) {
        absl::Status corrupt = Corrupt(absl::StrCat(
            "the readable span shrank to ", readable->size(), " bytes under entries we hold"));
        return taken != 0 ? absl::StatusOr<size_t>(taken) : corrupt;
      }
      readable_ = *readable;
      if (readable_.size() == lead_) {
        // Nothing new. A wrapped ring's span ends at the watermark, and the
        // front becomes readable only once the whole tail is given back.
        // When every entry of the tail has been released already, give it
        // back now instead of at the next chunk (which, with nothing
        // readable, would never come before the receiver sleeps): once per
        // lap.
        // Acquire: as TryRead loads the watermark; a stale 0 only defers
        // this.
        if (lead_ == 0 || unreturned_ != lead_ ||
            shm::AtomicWord(header_->watermark).load(std::memory_order_acquire) == 0) {
          return taken;
        }
        *ring = GiveBackRingBytes() || *ring;
        if (unreturned_ != 0) return taken;  // stalled or halted: retried later
        continue;
      }
    }
    while (taken < max && readable_.size() > lead_) {
      absl::StatusOr<shm::Frame> frame = shm::ParseFrame(readable_.subspan(lead_));
      absl::StatusOr<std::optional<absl::Span<const uint8_t>>> payload =
          frame.ok() ? Resolve(*frame) : Corrupt(frame.status().message());
      // Frames before a corrupt one are still delivered; the link is broken
      // already, so the next call reports it.
      if (!payload.ok()) return taken != 0 ? absl::StatusOr<size_t>(taken) : payload.status();
      if (!payload->has_value()) return taken;
      held_.emplace_back(frame->total_len, frame->kind == shm::FrameKind::kMmapRef,
                         frame->kind == shm::FrameKind::kSlotRef, frame->slot_ref);
      lead_ += frame->total_len;
      ++outstanding_;
      ++taken;
      sink(View{**payload, first_token_ + held_.size() - 1});
    }
    if (taken == max) return taken;
  }
}

bool ReceiveState::GiveBackRingBytes() {
  if (unreturned_ == 0 || core_->Halted() || !core_->RingsStillOurs()) return false;
  // Relaxed: our own word, read before our release changes it.
  const uint32_t read_before = shm::AtomicWord(header_->read).load(std::memory_order_relaxed);
  if (absl::Status released = ring_.Release(unreturned_); !released.ok()) {
    // kRingStalled: the producer's wrap is not visible yet (§6.8); the
    // bytes stay owed and the next Take or Release gives them back.
    if (shm::ShmErrcOf(released) != shm::ShmErrc::kRingStalled) {
      Corrupt(released.message()).IgnoreError();
    }
    return false;
  }
  // Relaxed: our own word. Unless the release reset a wrapped ring, the
  // span we know to be readable starts that much later now.
  const uint32_t read_after = shm::AtomicWord(header_->read).load(std::memory_order_relaxed);
  if (read_after == read_before + unreturned_ && unreturned_ <= readable_.size()) {
    readable_ = readable_.subspan(unreturned_);
  } else {
    readable_ = {};
  }
  lead_ -= unreturned_;
  unreturned_ = 0;
  unreturned_mmap_ = false;
  if (core_->always_ring()) return true;
  // Seq_cst: the consumer's half of the Dekker handshake. Our release of
  // `read` is ordered before the loads of the producer's indexes below, and
  // the producer orders its failed grant's loads after a fence too: either
  // it sees our release on its re-try, or we see the indexes it failed with.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  // Acquire, write before watermark as a consumer loads them (§6.5).
  const uint32_t write = shm::AtomicWord(header_->write).load(std::memory_order_acquire);
  const uint32_t watermark = shm::AtomicWord(header_->watermark).load(std::memory_order_acquire);
  const uint32_t capacity = ring_.capacity();
  // A wrapped ring whose write is not below our old read is between the
  // producer's two wrap stores: it may be waiting, ring.
  if (watermark != 0 && write >= read_before) return true;
  if (write > capacity || read_before > capacity) return true;
  return !Fits(write, read_before, largest_entry_, capacity);
}

bool ReceiveState::ShouldGiveBack() const {
  return unreturned_ != 0 && (unreturned_mmap_ || unreturned_ >= give_back_chunk_);
}

void ReceiveState::GiveBackOwed() {
  bool ring = false;
  {
    SpinLockHolder lock(&mu_);
    ring = GiveBackRingBytes();
  }
  if (ring) core_->RingPeer();
}

void ReceiveState::Orphan(std::shared_ptr<ReceiveState> state) {
  ReceiveState* const raw = state.get();
  SpinLockHolder lock(&raw->mu_);
  // With no view out, `state` (a parameter, so destroyed after the holder
  // lets go of the lock) ends it.
  if (raw->outstanding_ != 0) raw->self_ = std::move(state);
}

void ReceiveState::Release(uint64_t token) {
  // Destroyed last, after the lock is let go and the ring is rung: it may
  // hold the last reference to this state.
  std::shared_ptr<ReceiveState> last_reference;
  bool ring = false;
  {
    SpinLockHolder lock(&mu_);
    if (token < first_token_ || token - first_token_ >= held_.size()) return;
    Held& held = held_[token - first_token_];
    if (held.released) return;
    held.released = true;
    --outstanding_;
    if (held.has_slot) {
      if (absl::Status freed = pool_.Free(held.slot); freed.ok()) {
        absl::StatusOr<shm::SlotMetaSnapshot> meta =
            pool_.Meta(held.slot.class_idx, held.slot.slot_idx);
        ring = meta.ok() && meta->next_free == shm::kSlotEnd;
      } else if (!core_->Halted() && core_->RingsStillOurs()) {
        core_->Fail(absl::DataLossError(absl::StrCat(
                        core_->name(), ": a slot we held was freed by someone else: ",
                        freed.message())))
            .IgnoreError();
      }
    }
    while (!held_.empty() && held_.front().released) {
      unreturned_ += held_.front().total_len;
      unreturned_mmap_ = unreturned_mmap_ || held_.front().mmap;
      held_.pop_front();
      ++first_token_;
    }
    // A closed link takes no more Receive calls (nor their sleeps, which
    // give owed bytes back): its last view gives them back.
    if (ShouldGiveBack() || (outstanding_ == 0 && core_->Closed())) {
      ring = GiveBackRingBytes() || ring;
    }
    if (outstanding_ == 0) last_reference = std::move(self_);
  }
  if (ring) core_->RingPeer();
}

}  // namespace shmhub::client
