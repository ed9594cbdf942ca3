#include "shm/var_slot_pool.h"

#include <atomic>
#include <cstddef>

#include "absl/base/macros.h"
#include "absl/strings/str_cat.h"
#include "shm/shm_error.h"

namespace shmhub::shm {
namespace {

// The (generation, state) pair of a SlotMeta as one 64-bit word, little-endian:
// generation in the low half. SlotMeta records are 16 bytes at 64-aligned
// metadata arrays, so the pair is 8-byte aligned.
static_assert(offsetof(SlotMeta, generation) == 0 && offsetof(SlotMeta, state) == 4);
std::atomic_ref<uint64_t> GenerationStateWord(SlotMeta& meta) {
  return std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(&meta));
}
constexpr uint64_t PackGenerationState(uint32_t generation, uint32_t state) {
  return (uint64_t{state} << 32) | generation;
}

// Bound on the CAS attempts of one pop or one push. A CAS on free_head fails
// only when another pop or push succeeded between our load and our CAS, a
// window of a few instructions. Even 255 guests and the host hammering one
// class cannot plausibly win 2^16 of those windows in a row; a head that
// keeps changing that long is being rewritten by a hostile peer. The bound
// costs at most a few milliseconds before we give up.
constexpr uint32_t kMaxCasAttempts = uint32_t{1} << 16;

// Allocate fails with these on the data path, often (backpressure, payloads
// that go to MMAP_REF); copying a prebuilt status is a refcount bump instead
// of an allocation.
const absl::Status& ExhaustedStatus() {
  static const absl::Status* const kStatus = new absl::Status(
      ShmError(ShmErrc::kPoolExhausted, "every slot class large enough for the request is empty"));
  return *kStatus;
}

const absl::Status& NoClassStatus() {
  static const absl::Status* const kStatus = new absl::Status(
      ShmError(ShmErrc::kNoClass, "no slot class is large enough for the request"));
  return *kStatus;
}

}  // namespace

VarSlotPool::VarSlotPool(uint8_t* segment_base, const SegmentLayout& layout)
    : base_(segment_base), classes_(layout.classes) {}

void VarSlotPool::Format(uint8_t* segment_base, const SegmentLayout& layout) {
  for (const SlotClassLayout& cl : layout.classes) {
    auto* header = reinterpret_cast<ClassHeader*>(segment_base + cl.header_offset);
    header->slot_size = cl.config.slot_size;
    header->slot_count = cl.config.slot_count;
    // relaxed: nobody else can see the segment yet; the release store of the
    // magic (D-5) publishes this and every store below.
    std::atomic_ref<uint64_t>(header->free_head)
        .store(PackFreeHead(0, 0), std::memory_order_relaxed);
    auto* meta = reinterpret_cast<SlotMeta*>(segment_base + cl.meta_offset);
    const uint32_t count = cl.config.slot_count;
    for (uint32_t j = 0; j < count; ++j) {
      // relaxed: unpublished, as above.
      std::atomic_ref<uint32_t>(meta[j].generation).store(0, std::memory_order_relaxed);
      std::atomic_ref<uint32_t>(meta[j].state).store(kSlotFree, std::memory_order_relaxed);
      std::atomic_ref<uint32_t>(meta[j].owner_peer).store(0, std::memory_order_relaxed);
      std::atomic_ref<uint32_t>(meta[j].next_free)
          .store(j + 1 < count ? j + 1 : kSlotEnd, std::memory_order_relaxed);
    }
  }
}

uint64_t& VarSlotPool::HeadWord(uint32_t class_idx) const {
  return reinterpret_cast<ClassHeader*>(base_ + classes_[class_idx].header_offset)->free_head;
}

SlotMeta& VarSlotPool::MetaAt(uint32_t class_idx, uint32_t slot_idx) const {
  return reinterpret_cast<SlotMeta*>(base_ + classes_[class_idx].meta_offset)[slot_idx];
}

absl::StatusOr<uint32_t> VarSlotPool::Pop(uint32_t class_idx) {
  const uint32_t count = classes_[class_idx].config.slot_count;
  std::atomic_ref<uint64_t> head(HeadWord(class_idx));
  for (uint32_t attempt = 0; attempt < kMaxCasAttempts; ++attempt) {
    // acquire: pairs with the release half of the CAS that pushed the head
    // slot, so the pusher's next_free store is visible to the load below.
    const uint64_t h = head.load(std::memory_order_acquire);
    const uint32_t idx = FreeHeadIndex(h);
    if (idx == kSlotEnd) return kSlotEnd;
    if (idx >= count) {
      return ShmError(ShmErrc::kPoolCorrupt,
                      absl::StrCat("free_head of slot class ", class_idx, " names slot ", idx,
                                   " but the class has ", count, " slots"));
    }
    // acquire: the value may be stale if idx was popped meanwhile; the tag
    // makes the CAS below fail in that case, so a stale nx is never used.
    const uint32_t nx =
        std::atomic_ref<uint32_t>(MetaAt(class_idx, idx).next_free).load(std::memory_order_acquire);
    uint64_t expected = h;
    // acq_rel on success: acquire orders our later metadata writes after the
    // pop, release publishes the new head; acquire on failure: we reload.
    if (!head.compare_exchange_strong(expected, PackFreeHead(nx, FreeHeadTag(h) + 1),
                                      std::memory_order_acq_rel, std::memory_order_acquire)) {
      continue;
    }
    // Not in the spec's pop: a slot on the free stack was freed (state 0)
    // before it was pushed, and only we can allocate it now that we popped
    // it. Reading Allocated means the stack is corrupt (a cycle, or a Rust
    // peer's racing double free pushed it twice, A-25): handing it out would
    // give one slot two holders. The slot stays off the stack; its holder
    // still owns it. Acquire: pairs with the freer's state CAS.
    const uint32_t state =
        std::atomic_ref<uint32_t>(MetaAt(class_idx, idx).state).load(std::memory_order_acquire);
    if (state != kSlotFree) {
      return ShmError(ShmErrc::kPoolCorrupt,
                      absl::StrCat("slot ", idx, " of class ", class_idx,
                                   " was on the free stack but has state ", state));
    }
    return idx;
  }
  return ShmError(ShmErrc::kPoolCorrupt,
                  absl::StrCat("free_head of slot class ", class_idx, " changed during ",
                               kMaxCasAttempts, " pop attempts in a row"));
}

absl::Status VarSlotPool::Push(uint32_t class_idx, uint32_t slot_idx) {
  std::atomic_ref<uint64_t> head(HeadWord(class_idx));
  std::atomic_ref<uint32_t> next_free(MetaAt(class_idx, slot_idx).next_free);
  for (uint32_t attempt = 0; attempt < kMaxCasAttempts; ++attempt) {
    // acquire: the head we link below must be at least as new as our view.
    const uint64_t h = head.load(std::memory_order_acquire);
    // release: with the CAS's release below, a popper that acquires the new
    // head sees this link. Not validated here: a bad index surfaces as
    // kPoolCorrupt when it becomes the head (§8.5).
    next_free.store(FreeHeadIndex(h), std::memory_order_release);
    uint64_t expected = h;
    // acq_rel on success: release publishes the link and the state/owner
    // stores before it; acquire on failure: we reload and relink.
    if (head.compare_exchange_strong(expected, PackFreeHead(slot_idx, FreeHeadTag(h) + 1),
                                     std::memory_order_acq_rel, std::memory_order_acquire)) {
      return absl::OkStatus();
    }
  }
  return ShmError(
      ShmErrc::kPoolCorrupt,
      absl::StrCat("free_head of slot class ", class_idx, " changed during ", kMaxCasAttempts,
                   " push attempts in a row; slot ", slot_idx, " is lost"));
}

absl::StatusOr<SlotRef> VarSlotPool::Allocate(uint32_t size, uint32_t owner_peer) {
  bool any_class_fits = false;
  for (uint32_t k = 0; k < classes_.size(); ++k) {
    // D-9: skip, rather than assume away, classes smaller than the request.
    if (classes_[k].config.slot_size < size) continue;
    any_class_fits = true;
    absl::StatusOr<uint32_t> idx = Pop(k);
    if (!idx.ok()) return idx.status();
    if (*idx == kSlotEnd) continue;
    SlotMeta& meta = MetaAt(k, *idx);
    // acq_rel: the generation is the reference's identity; ordering it after
    // the pop and before the state store lets a freer that reads state 1
    // also read this generation.
    const uint32_t generation =
        std::atomic_ref<uint32_t>(meta.generation).fetch_add(1, std::memory_order_acq_rel) + 1;
    // release: a freer or reclaimer that acquires state 1 sees the new
    // generation.
    std::atomic_ref<uint32_t>(meta.state).store(kSlotAllocated, std::memory_order_release);
    // release: a reclaimer that acquires our owner id sees state 1 as well.
    std::atomic_ref<uint32_t>(meta.owner_peer).store(owner_peer, std::memory_order_release);
    return SlotRef{static_cast<uint8_t>(k), 0, *idx, generation};
  }
  return any_class_fits ? ExhaustedStatus() : NoClassStatus();
}

absl::Status VarSlotPool::CheckSlot(uint32_t class_idx, uint32_t slot_idx) const {
  if (class_idx >= classes_.size()) {
    return ShmError(ShmErrc::kBadSlotRef,
                    absl::StrCat("slot class ", class_idx, " is outside the pool's ",
                                 classes_.size(), " classes"));
  }
  const uint32_t count = classes_[class_idx].config.slot_count;
  if (slot_idx >= count) {
    return ShmError(ShmErrc::kBadSlotRef, absl::StrCat("slot ", slot_idx, " is outside class ",
                                                       class_idx, "'s ", count, " slots"));
  }
  return absl::OkStatus();
}

absl::Status VarSlotPool::CheckRef(const SlotRef& ref) const {
  if (ref.extent_idx != 0) {
    return ShmError(ShmErrc::kBadSlotRef,
                    absl::StrCat("slot reference names extent ", uint32_t{ref.extent_idx},
                                 "; only extent 0 exists"));
  }
  return CheckSlot(ref.class_idx, ref.slot_idx);
}

absl::Status VarSlotPool::Free(const SlotRef& ref) {
  if (absl::Status s = CheckRef(ref); !s.ok()) return s;
  SlotMeta& meta = MetaAt(ref.class_idx, ref.slot_idx);
  // D-4, tightened: generation (offset 0) and state (offset 4) are adjacent
  // words of an 8-byte-aligned record, so one 64-bit CAS requires "still this
  // generation AND still Allocated" while flipping the state. A CAS on the
  // state alone would let a stale reference free a slot that was freed and
  // re-allocated between our generation check and the CAS. Same bytes as
  // Rust's store; Rust peers access them as two 32-bit atomics (format §1.6,
  // mixed-size access). acq_rel on success: only one freer wins and its later
  // stores are ordered after the flip; acquire on failure: we only report.
  uint64_t expected = PackGenerationState(ref.generation, kSlotAllocated);
  if (!GenerationStateWord(meta).compare_exchange_strong(
          expected, PackGenerationState(ref.generation, kSlotFree), std::memory_order_acq_rel,
          std::memory_order_acquire)) {
    return ShmError(ShmErrc::kDoubleFree,
                    absl::StrCat("slot ", ref.slot_idx, " of class ", uint32_t{ref.class_idx},
                                 " has generation ", static_cast<uint32_t>(expected),
                                 " and state ", static_cast<uint32_t>(expected >> 32),
                                 "; the reference has generation ", ref.generation,
                                 " and needs state Allocated"));
  }
  // release: published to the next allocator by the push CAS.
  std::atomic_ref<uint32_t>(meta.owner_peer).store(0, std::memory_order_release);
  return Push(ref.class_idx, ref.slot_idx);
}

uint32_t VarSlotPool::ReclaimPeerSlots(uint32_t peer_id) {
  if (peer_id == kHostPeerId) return 0;
  uint32_t reclaimed = 0;
  for (uint32_t k = 0; k < classes_.size(); ++k) {
    const uint32_t count = classes_[k].config.slot_count;
    for (uint32_t j = 0; j < count; ++j) {
      SlotMeta& meta = MetaAt(k, j);
      // acquire on all three: pair with the allocator's release stores.
      if (std::atomic_ref<uint32_t>(meta.owner_peer).load(std::memory_order_acquire) != peer_id) {
        continue;
      }
      if (std::atomic_ref<uint32_t>(meta.state).load(std::memory_order_acquire) != kSlotAllocated) {
        continue;
      }
      const uint32_t generation =
          std::atomic_ref<uint32_t>(meta.generation).load(std::memory_order_acquire);
      // A DoubleFree means someone else freed the slot first: nothing to do.
      if (Free(SlotRef{static_cast<uint8_t>(k), 0, j, generation}).ok()) ++reclaimed;
    }
  }
  return reclaimed;
}

absl::StatusOr<absl::Span<uint8_t>> VarSlotPool::SlotData(const SlotRef& ref) const {
  if (absl::Status s = CheckRef(ref); !s.ok()) return s;
  const SlotClassLayout& cl = classes_[ref.class_idx];
  // slot_idx < slot_count and the layout's checked arithmetic bound this
  // offset by total_size.
  const uint64_t offset = cl.data_offset + uint64_t{cl.config.slot_size} * ref.slot_idx;
  return absl::Span<uint8_t>(base_ + offset, cl.config.slot_size);
}

absl::StatusOr<SlotMetaSnapshot> VarSlotPool::Meta(uint32_t class_idx, uint32_t slot_idx) const {
  if (absl::Status s = CheckSlot(class_idx, slot_idx); !s.ok()) return s;
  SlotMeta& meta = MetaAt(class_idx, slot_idx);
  // acquire: pairs with the release stores of allocate and free.
  return SlotMetaSnapshot{
      std::atomic_ref<uint32_t>(meta.generation).load(std::memory_order_acquire),
      std::atomic_ref<uint32_t>(meta.state).load(std::memory_order_acquire),
      std::atomic_ref<uint32_t>(meta.owner_peer).load(std::memory_order_acquire),
      std::atomic_ref<uint32_t>(meta.next_free).load(std::memory_order_acquire),
  };
}

absl::StatusOr<uint32_t> VarSlotPool::FreeCount(uint32_t class_idx) const {
  if (class_idx >= classes_.size()) {
    return ShmError(
        ShmErrc::kBadSlotRef,
        absl::StrCat("class ", class_idx, " is outside the pool's ", classes_.size(), " classes"));
  }
  const uint32_t count = classes_[class_idx].config.slot_count;
  // acquire: pairs with the release half of the last push or pop.
  uint32_t idx =
      FreeHeadIndex(std::atomic_ref<uint64_t>(HeadWord(class_idx)).load(std::memory_order_acquire));
  // A sound stack holds each slot at most once, so it has at most
  // slot_count links; one more means a cycle. The walk is bounded by that.
  uint32_t length = 0;
  while (idx != kSlotEnd) {
    if (idx >= count) {
      return ShmError(ShmErrc::kPoolCorrupt,
                      absl::StrCat("free stack of slot class ", class_idx, " links slot ", idx,
                                   " but the class has ", count, " slots"));
    }
    if (length == count) {
      return ShmError(ShmErrc::kPoolCorrupt,
                      absl::StrCat("free stack of slot class ", class_idx, " has more than ", count,
                                   " links: it contains a cycle"));
    }
    ++length;
    // acquire: pairs with the pusher's release store of the link.
    idx =
        std::atomic_ref<uint32_t>(MetaAt(class_idx, idx).next_free).load(std::memory_order_acquire);
  }
  return length;
}

uint64_t VarSlotPool::FreeHead(uint32_t class_idx) const {
  ABSL_HARDENING_ASSERT(class_idx < classes_.size());
  // acquire: a caller that then reads metadata sees what the head publishes.
  return std::atomic_ref<uint64_t>(HeadWord(class_idx)).load(std::memory_order_acquire);
}

const SlotClassConfig& VarSlotPool::class_config(uint32_t class_idx) const {
  ABSL_HARDENING_ASSERT(class_idx < classes_.size());
  return classes_[class_idx].config;
}

}  // namespace shmhub::shm
