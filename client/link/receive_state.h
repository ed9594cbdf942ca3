// ReceiveState: the consuming half of a RingLink and the bookkeeping of the
// zero-copy views it hands out. The RingLink owns it; when the link goes
// while views are still out, Orphan hands that ownership to the state
// itself, and the last view's release ends it — so it, and the mappings its
// views point into, outlive the RingLink until the last view is released,
// without a reference count touched on every frame.
//
// Reading ahead of `read`. A view keeps its ring bytes (and everything after
// them) reserved, so the shared `read` index only moves when the oldest
// views are released. The receiver parses ahead of it: `lead_` counts the
// bytes of entries handed out but not yet given back, and new entries are
// parsed from TryRead's span at that offset. The span is kept between
// calls and TryRead (whose load of the producer's `write` is a cache miss
// whenever the producer is busy) runs again only once it is used up. TryRead's span stops at the
// wrap, so while a view of a wrapped ring's tail is held, entries at the
// front stay unread until it is released.
//
// Validation (format §7.7, §8, §9.3; everything is hostile input):
//  * framing by shm::ParseFrame;
//  * SLOT_REF: class, slot and extent in range, the slot Allocated with the
//    entry's generation and owned by the sender (the peer id for a host
//    link, 0 for a guest link), and its length prefix within the slot
//    (a bad prefix frees the slot first, as Rust does);
//  * MMAP_REF: a mapping-control socket exists, the key is known (an unknown
//    key is retried, draining the socket, for kUnknownKeyPatience, §9.3)
//    and the bytes lie inside the mapping.
// The first violation breaks the link with DATA_LOSS; nothing is released or
// skipped after it (§7.7: no resync).
//
// Releasing. A view's release frees its slot at once (any order) and gives
// ring bytes back in ring order, in chunks: once capacity/8 bytes are owed
// (at a Release or the next Take). The rest goes back early only where
// waiting would stall someone: at once when a MMAP_REF entry is among them
// (its sender reuses the region only once the ring has moved past it); when
// a wrapped ring's tail is all released (its front is readable only after
// that); and all of it before the receiving thread sleeps (GiveBackOwed, run
// by LinkCore::WaitUntil's before_sleep), when TryReceive finds nothing,
// when the link is closed, and at the last view of a closed link.
// Why chunks: a busy stream then moves the shared `read` word once per
// chunk, so the producer's look at it (its doorbell rule, ring_progress.h)
// stays a cache hit and sees a consumer that is "behind" and needs no ring,
// while a consumer about to sleep has caught up in `read` and gets one. A
// producer blocked on a full ring gets its room back a chunk at a time too,
// with one ring per chunk: a consumer slower than its producer keeps the
// ring full, and per-frame give-back would then cost a system call per
// frame exactly when the consumer is the bottleneck. Owed bytes alone never
// block the producer (a chunk is far larger than the largest entry).
// Each ring release is followed by a seq_cst fence and a look at the
// producer's indexes: if the largest entry the producer can write would not
// have fitted before our release, it may be blocked on a full ring and we
// ring it (the consumer's half of the Dekker handshake whose producer half
// is "fail to grant, fence, re-try, sleep"). With LinkOptions::always_ring
// every ring release rings (§10: "after consuming entries").
// A freed slot rings when its class's free stack was empty as our push
// landed (the slot's next_free reads kSlotEnd afterwards): a sender that
// found the class exhausted may be asleep for exactly that. That covers our
// own peer's sender; a sender of another peer waiting on the same shared
// class is woken by its own link's frees or its bounded re-checks.
// Ring bytes are given back, and entries read, only while the link is
// neither stopped nor broken and our entry still holds our epoch, Attached
// or Goodbye (the peer left but recovery has not run): after that recovery
// may reset the rings for a new occupant. Slots are freed regardless (the
// generation check makes a late free harmless); a free that fails on a live
// link means the peer freed our slot, which breaks the link.
//
// Thread-safety: one thread receives at a time (RingLink's rule); Release
// may run on any thread, concurrently with receiving. A SpinLock orders
// them (spin_lock.h: the critical sections are short and rarely contended).
#ifndef SHMHUB_CLIENT_LINK_RECEIVE_STATE_H_
#define SHMHUB_CLIENT_LINK_RECEIVE_STATE_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "client/link/link_core.h"
#include "client/link/spin_lock.h"
#include "shm/bip_buffer.h"
#include "shm/frame.h"
#include "shm/mapping_table.h"
#include "shm/slot_ref.h"
#include "shm/unique_fd.h"
#include "shm/var_slot_pool.h"

namespace shmhub::client {

class ReceiveState {
 public:
  // §9.3: how long an MMAP_REF naming a key not yet announced is retried.
  static constexpr absl::Duration kUnknownKeyPatience = absl::Seconds(2);

  // `mapping_control` may be empty: a received MMAP_REF is then DATA_LOSS.
  ReceiveState(std::shared_ptr<LinkCore> core, shm::UniqueFd mapping_control);
  ReceiveState(const ReceiveState&) = delete;
  ReceiveState& operator=(const ReceiveState&) = delete;

  // A view just parsed: its payload and its token for Release.
  struct View {
    absl::Span<const uint8_t> data;
    uint64_t token;
  };

  // Parses up to `max` entries that are ready now and passes each to `sink`.
  // Returns how many; 0 when nothing is ready. DATA_LOSS (and the link
  // broken) on hostile input.
  absl::StatusOr<size_t> Take(size_t max, absl::FunctionRef<void(const View&)> sink);

  // Gives the view `token` back. Idempotent per token. May destroy the
  // state (an orphan's last view): the caller must not touch it afterwards.
  void Release(uint64_t token);

  // The owner lets go of `state`: destroyed now if no view is out,
  // otherwise at the release of the last one.
  static void Orphan(std::shared_ptr<ReceiveState> state);

  // Gives every owed ring byte back now (rings the producer if it may be
  // waiting for that room). The receiving thread calls it before it sleeps.
  void GiveBackOwed();

  size_t outstanding() const;
  LinkCore& core() const { return *core_; }

 private:
  // Built in place in held_ (a temporary assembled field by field and then
  // copied costs store-forwarding stalls on every frame).
  struct Held {
    Held(uint32_t entry_len, bool is_mmap, bool is_slot, const shm::SlotRef& slot_ref)
        : total_len(entry_len), released(false), mmap(is_mmap), has_slot(is_slot),
          slot(slot_ref) {}
    uint32_t total_len;
    bool released;
    bool mmap;  // a MMAP_REF: its sender waits for the ring to pass it
    bool has_slot;  // a SLOT_REF: `slot` is freed at the release
    shm::SlotRef slot;
  };

  // Validates one parsed entry and finds its payload. nullopt: an MMAP_REF
  // whose key is not known yet (not ready).
  absl::StatusOr<std::optional<absl::Span<const uint8_t>>> Resolve(const shm::Frame& frame)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<absl::Span<const uint8_t>> ResolveSlot(const shm::SlotRef& ref)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<std::optional<absl::Span<const uint8_t>>> ResolveMmap(const shm::MmapRef& ref)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Breaks the link with DATA_LOSS naming the entry at `lead_`.
  absl::Status Corrupt(absl::string_view why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<size_t> TakeLocked(size_t max, absl::FunctionRef<void(const View&)> sink,
                                    bool* ring);
  // Gives unreturned_ bytes back to the ring if the link may still touch
  // it; true when the producer may be waiting for that room.
  bool GiveBackRingBytes() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether the owed bytes are worth a ring release now (a chunk, or a
  // MMAP_REF among them).
  bool ShouldGiveBack() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::shared_ptr<LinkCore> core_;
  shm::VarSlotPool pool_;
  const uint32_t expected_owner_;
  // The largest entry the producer writes (§7.6 with the segment's policy,
  // at least a MMAP_REF): the room it may be waiting for.
  const uint32_t largest_entry_;
  // Owed bytes worth one ring release: capacity/8.
  const uint32_t give_back_chunk_;
  shm::RingHeader* const header_;

  mutable SpinLock mu_;
  shm::BipBuffer ring_ ABSL_GUARDED_BY(mu_);
  std::optional<shm::MappingReceiver> mappings_ ABSL_GUARDED_BY(mu_);
  // Views not yet given back to the ring, oldest first; front is token
  // first_token_.
  std::deque<Held> held_ ABSL_GUARDED_BY(mu_);
  uint64_t first_token_ ABSL_GUARDED_BY(mu_) = 1;
  // The bytes from `read` known to be readable (TryRead's span when last
  // loaded): entries are parsed from it until it is used up, and only then
  // is `write` loaded again.
  absl::Span<const uint8_t> readable_ ABSL_GUARDED_BY(mu_);
  // Bytes from `read` to the next entry to parse: unreturned_ plus the
  // held_ entries.
  uint32_t lead_ ABSL_GUARDED_BY(mu_) = 0;
  // Bytes of released views not yet given back to the ring (the D-2 guard
  // stalled, or the link may no longer touch the ring).
  uint32_t unreturned_ ABSL_GUARDED_BY(mu_) = 0;
  // Whether a MMAP_REF entry is among the unreturned_ bytes.
  bool unreturned_mmap_ ABSL_GUARDED_BY(mu_) = false;
  size_t outstanding_ ABSL_GUARDED_BY(mu_) = 0;
  // Set by Orphan while views are out: the state owns itself until the last
  // one is released.
  std::shared_ptr<ReceiveState> self_ ABSL_GUARDED_BY(mu_);
  // When the entry at lead_ was first seen naming an unknown mapping.
  std::optional<absl::Time> unknown_key_since_ ABSL_GUARDED_BY(mu_);
};

}  // namespace shmhub::client

#endif  // SHMHUB_CLIENT_LINK_RECEIVE_STATE_H_
