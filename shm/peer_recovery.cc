#include "shm/peer_recovery.h"

#include <algorithm>
#include <atomic>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "shm/bip_buffer.h"
#include "shm/format.h"
#include "shm/frame.h"
#include "shm/layout.h"
#include "shm/peer_table.h"
#include "shm/shm_error.h"
#include "shm/var_slot_pool.h"

namespace shmhub::shm {
namespace {

// A guest that floods its ring with garbage must not flood the daemon's log.
constexpr size_t kMaxProblemLines = 16;

void NoteProblem(RecoveryReport& report, std::string line) {
  if (report.problems.size() < kMaxProblemLines) report.problems.push_back(std::move(line));
}

std::string RefName(const SlotRef& ref) {
  return absl::StrCat("class ", ref.class_idx, " slot ", ref.slot_idx, " extent ", ref.extent_idx,
                      " generation ", ref.generation);
}

// Step 2 for one SLOT_REF: free it only if it names a host-owned slot of the
// current generation (D-10), so a guest that scribbled on its own H->G ring
// cannot make the daemon free another peer's slot.
void FreeHostSlot(VarSlotPool& pool, const SlotRef& ref, RecoveryReport& report) {
  if (ref.extent_idx != 0) {
    ++report.bad_slot_refs;
    NoteProblem(report, absl::StrCat("host->guest SLOT_REF ", RefName(ref), ": extent must be 0"));
    return;
  }
  absl::StatusOr<SlotMetaSnapshot> meta = pool.Meta(ref.class_idx, ref.slot_idx);
  if (!meta.ok()) {
    ++report.bad_slot_refs;
    NoteProblem(report, absl::StrCat("host->guest SLOT_REF ", RefName(ref), ": ",
                                     meta.status().message()));
    return;
  }
  if (meta->owner_peer != kHostPeerId) {
    ++report.foreign_slot_refs;
    NoteProblem(report, absl::StrCat("host->guest SLOT_REF ", RefName(ref),
                                     " names a slot owned by peer ", meta->owner_peer,
                                     ", not the host; left alone"));
    return;
  }
  if (absl::Status freed = pool.Free(ref); !freed.ok()) {
    ++report.stale_slot_refs;
    NoteProblem(report,
                absl::StrCat("host->guest SLOT_REF ", RefName(ref), ": ", freed.message()));
    return;
  }
  ++report.slots_freed_from_ring;
}

// Step 2: consume the host->guest ring as its consumer, freeing the host
// slots in flight to the dead guest; they are recorded nowhere else.
void DrainHostToGuest(BipBuffer& ring, VarSlotPool& pool, RecoveryReport& report) {
  if (absl::Status header = ring.CheckHeader(); !header.ok()) {
    report.host_to_guest_corrupt = true;
    NoteProblem(report, absl::StrCat("host->guest ring header: ", header.message(),
                                     "; drain skipped"));
    return;
  }
  // Every entry is at least 8 bytes, so a legitimate ring never holds more.
  const uint32_t max_entries = std::max<uint32_t>(1, ring.capacity() / kFrameHeaderSize);
  while (true) {
    absl::StatusOr<absl::Span<const uint8_t>> readable = ring.TryRead();
    if (!readable.ok()) {
      ++report.invalid_entries;
      NoteProblem(report, absl::StrCat("host->guest ring: ", readable.status().message()));
      return;
    }
    if (readable->empty()) return;
    if (report.entries_scanned == max_entries) {
      report.drain_bound_reached = true;
      NoteProblem(report, absl::StrCat("host->guest ring: stopped after ", max_entries,
                                       " entries, more than the ring can hold"));
      return;
    }
    absl::StatusOr<Frame> frame = ParseFrame(*readable);
    if (!frame.ok()) {
      ++report.invalid_entries;
      NoteProblem(report, absl::StrCat("host->guest entry ", report.entries_scanned, ": ",
                                       frame.status().message(), "; drain stopped"));
      return;
    }
    ++report.entries_scanned;
    switch (frame->kind) {
      case FrameKind::kSlotRef:
        FreeHostSlot(pool, frame->slot_ref, report);
        break;
      case FrameKind::kMmapRef:
        ++report.mmap_refs_seen;
        break;
      case FrameKind::kInline:
        ++report.inline_entries_seen;
        break;
    }
    if (absl::Status released = ring.Release(frame->total_len); !released.ok()) {
      ++report.invalid_entries;
      NoteProblem(report, absl::StrCat("host->guest ring: ", released.message()));
      return;
    }
  }
}

// Part of step 3. Each ring's capacity and the entry's ring_offset are plain
// fields the creator wrote once (§1.5), but the guest could write them too.
// Left scribbled, they would outlive the guest: our attach checks them for
// every entry (§3 step 13) and would lock every new guest out of the whole
// segment, and a Rust guest takes a ring's bounds from its capacity field.
// The host writes back its own values, which are the bytes the creator
// wrote, so an honest ring's capacity is kept as §6.7 requires.
void RestoreGeometry(const Segment& segment, uint32_t index, RecoveryReport& report) {
  const SegmentLayout& layout = segment.layout();
  for (const uint64_t offset : {layout.HostToGuestHeader(index), layout.GuestToHostHeader(index)}) {
    auto* header = reinterpret_cast<RingHeader*>(segment.base() + offset);
    // Relaxed load and store: the word publishes nothing, and the release
    // CAS to Empty in step 6 orders the store before the next occupancy.
    std::atomic_ref<uint32_t> capacity(header->capacity);
    const uint32_t seen = capacity.load(std::memory_order_relaxed);
    if (seen == layout.ring_capacity) continue;
    capacity.store(layout.ring_capacity, std::memory_order_relaxed);
    NoteProblem(report, absl::StrCat("ring header at ", offset, ": capacity ", seen,
                                     " restored to ", layout.ring_capacity));
  }
  auto* entry = reinterpret_cast<PeerEntry*>(segment.base() + layout.EntryOffset(index));
  // Relaxed, as for the capacities.
  std::atomic_ref<uint64_t> ring_offset(entry->ring_offset);
  const uint64_t seen = ring_offset.load(std::memory_order_relaxed);
  if (seen == layout.RingOffset(index)) return;
  ring_offset.store(layout.RingOffset(index), std::memory_order_relaxed);
  NoteProblem(report, absl::StrCat("peer entry ring_offset ", seen, " restored to ",
                                   layout.RingOffset(index)));
}

}  // namespace

uint32_t RecoveryReport::ProblemCount() const {
  return (host_to_guest_corrupt ? 1 : 0) + invalid_entries + bad_slot_refs + foreign_slot_refs +
         stale_slot_refs + (drain_bound_reached ? 1 : 0);
}

absl::StatusOr<RecoveryReport> RecoverPeer(const Segment& segment, const Occupancy& occupancy,
                                           const RecoveryHooks& hooks) {
  const uint32_t peer_id = occupancy.peer_id;
  const uint32_t epoch = occupancy.epoch;
  if (!segment.is_host()) {
    return ShmError(ShmErrc::kWrongState, "only the segment's host may recover a peer");
  }
  absl::StatusOr<PeerEntryView> entry = segment.peers().Entry(peer_id);
  if (!entry.ok()) return entry.status();
  const uint32_t index = peer_id - 1;

  RecoveryReport report;
  report.peer_id = peer_id;
  report.epoch = epoch;
  auto done = [&](RecoveryStep step) {
    if (hooks.after_step) hooks.after_step(step);
  };
  // Re-checked before every later step: only the host moves an entry out of
  // Goodbye, so a mismatch means a broken guest scribbled on the entry or a
  // second recovery ran; either way we must stop touching this occupancy.
  auto still_ours = [&]() { return entry->CheckPair(PeerState::kGoodbye, epoch); };

  // 1. Goodbye: nothing may treat the entry as live or claimable meanwhile.
  if (absl::Status begun = entry->BeginRecovery(epoch); !begun.ok()) return begun;
  done(RecoveryStep::kGoodbye);

  // 2. Drain host->guest as its consumer.
  if (absl::Status ours = still_ours(); !ours.ok()) return ours;
  VarSlotPool pool = segment.pool();
  BipBuffer host_to_guest = segment.HostToGuestRing(index);
  DrainHostToGuest(host_to_guest, pool, report);
  done(RecoveryStep::kDrainHostToGuest);

  // 3. Reset both rings, host->guest first, before any slot goes back to a
  //    free stack, so no ring entry can name a slot someone else now holds.
  if (absl::Status ours = still_ours(); !ours.ok()) return ours;
  host_to_guest.Reset();
  segment.GuestToHostRing(index).Reset();
  RestoreGeometry(segment, index, report);
  done(RecoveryStep::kResetRings);

  // 4. Reclaim every slot the peer allocated itself.
  if (absl::Status ours = still_ours(); !ours.ok()) return ours;
  report.slots_reclaimed_by_owner = pool.ReclaimPeerSlots(peer_id);
  done(RecoveryStep::kReclaimSlots);

  // 5. Mapping leases live outside the segment, with the data plane.
  if (absl::Status ours = still_ours(); !ours.ok()) return ours;
  if (hooks.drop_mapping_leases) report.mapping_leases_dropped = hooks.drop_mapping_leases(peer_id);
  done(RecoveryStep::kDropMappingLeases);

  // 6. Empty last: it means "reusable", so everything above must be done.
  if (absl::Status finished = entry->FinishRecovery(epoch); !finished.ok()) return finished;
  done(RecoveryStep::kEmpty);
  return report;
}

}  // namespace shmhub::shm
