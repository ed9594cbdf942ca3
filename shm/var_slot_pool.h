// The VarSlotPool of a hub segment (format §8): per class, a lock-free
// Treiber stack of free slots shared by every process that maps the segment.
//
// Each class has a 64-byte ClassHeader whose `free_head` packs
// (tag << 32) | index of the top free slot, and one SlotMeta per slot holding
// its generation, state, owner and the next free slot. Allocation pops a slot
// and bumps its generation; free checks the generation, flips the state with
// a CAS (D-4) and pushes the slot back. The tag, +1 on every pop and push,
// defeats ABA on the head.
//
// Trust: the SegmentLayout handed in is trusted (the host's own, or one an
// attacher recomputed from validated header fields); the pool keeps its own
// copy of the class table and never rereads slot_size / slot_count from the
// segment. Every free_head word and every SlotMeta word is guest-writable:
// each is loaded once, indexes are checked against the trusted slot_count
// before use, and every loop driven by them is bounded and reports
// kPoolCorrupt when the bound is exceeded (§1.7). A hostile peer can make
// operations fail or leak slots; it cannot make them hang or touch memory
// outside the pool.
//
// Thread and process safety: after construction the object is immutable, so
// any number of threads and processes may call Allocate, Free, SlotData and
// Meta concurrently. FreeCount walks the stack without locking and is exact
// only while nobody allocates or frees (tests, offline audits, §8.9).
//
// Ownership: the pool does not own the mapping; `segment_base` must outlive
// it and be 64-byte aligned (any mmap is).
#ifndef SHMHUB_SHM_VAR_SLOT_POOL_H_
#define SHMHUB_SHM_VAR_SLOT_POOL_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "shm/format.h"
#include "shm/layout.h"
#include "shm/slot_ref.h"

namespace shmhub::shm {

// The four metadata words of one slot, each loaded once with acquire. The
// words are loaded one by one, so the snapshot is not atomic as a whole.
struct SlotMetaSnapshot {
  uint32_t generation;
  uint32_t state;
  uint32_t owner_peer;
  uint32_t next_free;
};

// pack(idx, tag) and its inverse (§8.1).
constexpr uint64_t PackFreeHead(uint32_t index, uint32_t tag) {
  return (uint64_t{tag} << 32) | index;
}
constexpr uint32_t FreeHeadIndex(uint64_t head) { return static_cast<uint32_t>(head); }
constexpr uint32_t FreeHeadTag(uint64_t head) { return static_cast<uint32_t>(head >> 32); }

class VarSlotPool {
 public:
  // `layout` must describe the mapping at `segment_base` (at least
  // layout.total_size bytes). Copies the class table.
  VarSlotPool(uint8_t* segment_base, const SegmentLayout& layout);

  // Creator-side initialisation on zeroed memory (§8.2): writes every class
  // header (slot_size, slot_count, free_head = pack(0, 0)) and every slot's
  // metadata (generation, state and owner 0; next_free = j + 1, the last
  // slot kSlotEnd). Runs before the segment is published; the release store
  // of the header's magic (D-5) publishes these writes. Does not check the
  // creator's class rules (ascending sizes, slot_size >= 8): Segment::Create
  // does.
  static void Format(uint8_t* segment_base, const SegmentLayout& layout);

  // Pops a slot from the first class, in index order, whose slot_size is at
  // least `size` and whose stack is not empty (§8.4; classes too small are
  // skipped, D-9). The slot comes back Allocated, owned by `owner_peer`,
  // with its generation incremented.
  // Errors: kNoClass (no class is large enough: the sender should use
  // MMAP_REF), kPoolExhausted (every candidate is empty: backpressure),
  // kPoolCorrupt (a head index is out of range; the popped slot reads
  // Allocated, so the stack has a cycle or holds a slot twice; or a head
  // kept changing beyond any honest contention). A corrupt class fails the
  // whole call rather than falling through to the next class, so the
  // corruption is reported, not hidden.
  absl::StatusOr<SlotRef> Allocate(uint32_t size, uint32_t owner_peer);

  // Returns the slot `ref` names to its class's stack (§8.6 with D-4). The
  // generation is not changed. Errors: kBadSlotRef (class, extent or slot
  // index out of range; no memory touched), kDoubleFree (the generation
  // differs or the slot is not Allocated; nothing changed), kPoolCorrupt
  // (the push could not complete within the bound; the slot is lost, as in
  // the crash windows of §8.9).
  absl::Status Free(const SlotRef& ref);

  // Frees every slot that reads Allocated and owned by `peer_id`, in class
  // and slot order, and returns how many frees succeeded (§8.8). Only for a
  // guest confirmed dead. Peer id 0 is refused (returns 0): owner 0 marks the
  // host's own slots and slots caught in the crash windows of §8.9, and
  // freeing those would free live host data.
  uint32_t ReclaimPeerSlots(uint32_t peer_id);

  // The `slot_size` bytes of the slot `ref` names. Checks the indexes only,
  // not the generation or state: the caller validates those. kBadSlotRef.
  absl::StatusOr<absl::Span<uint8_t>> SlotData(const SlotRef& ref) const;

  // The metadata of slot `slot_idx` of class `class_idx`. kBadSlotRef.
  absl::StatusOr<SlotMetaSnapshot> Meta(uint32_t class_idx, uint32_t slot_idx) const;

  // Length of class `class_idx`'s free stack, walked from the head through
  // at most slot_count links. kBadSlotRef for a bad class; kPoolCorrupt for
  // an index out of range or a stack longer than slot_count (a cycle).
  absl::StatusOr<uint32_t> FreeCount(uint32_t class_idx) const;

  // The raw free_head word of a class (acquire), for tests and metrics.
  // Requires class_idx < num_classes().
  uint64_t FreeHead(uint32_t class_idx) const;

  uint32_t num_classes() const { return static_cast<uint32_t>(classes_.size()); }
  // Requires class_idx < num_classes().
  const SlotClassConfig& class_config(uint32_t class_idx) const;

 private:
  // Result of popping one class: a slot index, kSlotEnd when empty.
  absl::StatusOr<uint32_t> Pop(uint32_t class_idx);
  absl::Status Push(uint32_t class_idx, uint32_t slot_idx);
  absl::Status CheckSlot(uint32_t class_idx, uint32_t slot_idx) const;
  absl::Status CheckRef(const SlotRef& ref) const;
  uint64_t& HeadWord(uint32_t class_idx) const;
  SlotMeta& MetaAt(uint32_t class_idx, uint32_t slot_idx) const;

  uint8_t* base_;
  std::vector<SlotClassLayout> classes_;
};

}  // namespace shmhub::shm

#endif  // SHMHUB_SHM_VAR_SLOT_POOL_H_
