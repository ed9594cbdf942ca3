#include "shm/peer_table.h"

#include <atomic>
#include <cstring>
#include <limits>
#include <string>

#include "absl/strings/str_cat.h"
#include "shm/shm_error.h"

namespace shmhub::shm {
namespace {

// How many CASes in a row a take may lose while the entry stays Empty. A
// strong CAS on the pair fails only when another process changed the pair
// between our load and our CAS. While the entry stays Empty that takes a
// whole take-and-give-back by someone else per lost attempt, so an honest
// table practically never loses this many in a row; a guest rewriting the
// epoch in a loop does, and then we give up rather than spin with it.
constexpr int kMaxLostTakeCas = 64;

constexpr uint64_t PackPair(PeerState state, uint32_t epoch) {
  return uint64_t{static_cast<uint32_t>(state)} | (uint64_t{epoch} << 32);
}
constexpr uint32_t PairStateWord(uint64_t pair) { return static_cast<uint32_t>(pair); }
constexpr uint32_t PairEpoch(uint64_t pair) { return static_cast<uint32_t>(pair >> 32); }

// Mixed-size access (§1.6): the 8 bytes at offset 0 of the entry are the u32
// state followed by the u32 epoch, and here we access them as one
// little-endian u64, while Rust peers (and the single-word methods below)
// access the same bytes as two u32 atomics. Aligned accesses of either size
// are single-copy atomic and coherent with each other on x86-64 and AArch64,
// which is all we rely on; ISO C++ does not define this, which is why every
// 64-bit access to the pair goes through this one function. The entry is
// 8-aligned (static_asserts in format.h), as atomic_ref<uint64_t> requires.
std::atomic_ref<uint64_t> PairWord(PeerEntry* entry) {
  return std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(entry));
}

// "Attached (epoch 3)" or "invalid state word 7 (epoch 3)".
std::string DescribeObserved(const StateReading& state, uint32_t epoch) {
  if (!state.valid) return absl::StrCat("invalid state word ", state.raw, " (epoch ", epoch, ")");
  return absl::StrCat(PeerStateName(state.state), " (epoch ", epoch, ")");
}

// The error of an unfenced operation that found `observed` instead of
// `expected`.
absl::Status UnexpectedState(const StateReading& observed, uint32_t epoch, PeerState expected) {
  const ShmErrc errc = observed.valid ? ShmErrc::kWrongState : ShmErrc::kInvalidState;
  const absl::string_view verb = observed.valid ? "is " : "holds ";
  return ShmError(errc, absl::StrCat("peer entry ", verb, DescribeObserved(observed, epoch),
                                     ", expected ", PeerStateName(expected)));
}


// The error for finding the pair `observed` where (expected, epoch) was
// required, classified in a fixed order: kInvalidState (state word not
// 0..3), kWrongState (another state), kStaleEpoch (right state, other epoch).
absl::Status PairMismatch(uint64_t observed, PeerState expected, uint32_t epoch) {
  const StateReading state = StateReading::FromRaw(PairStateWord(observed));
  const uint32_t observed_epoch = PairEpoch(observed);
  const std::string wanted = absl::StrCat(PeerStateName(expected), " (epoch ", epoch, ")");
  if (!state.valid) {
    return ShmError(ShmErrc::kInvalidState,
                    absl::StrCat("peer entry holds ", DescribeObserved(state, observed_epoch),
                                 ", expected ", wanted));
  }
  if (state.state != expected) {
    return ShmError(ShmErrc::kWrongState,
                    absl::StrCat("peer entry is ", DescribeObserved(state, observed_epoch),
                                 ", expected ", wanted));
  }
  return ShmError(ShmErrc::kStaleEpoch,
                  absl::StrCat("stale epoch: peer entry is ",
                               DescribeObserved(state, observed_epoch), ", expected ", wanted));
}

}  // namespace

absl::string_view PeerStateName(PeerState state) {
  switch (state) {
    case PeerState::kEmpty:
      return "Empty";
    case PeerState::kAttached:
      return "Attached";
    case PeerState::kGoodbye:
      return "Goodbye";
    case PeerState::kReserved:
      return "Reserved";
  }
  return "Invalid";
}

StateReading StateReading::FromRaw(uint32_t raw) {
  return StateReading{raw <= static_cast<uint32_t>(PeerState::kReserved),
                      static_cast<PeerState>(raw), raw};
}

void PeerEntryView::Init(uint64_t ring_offset, uint32_t epoch) {
  // Plain stores are enough: nobody else can see the entry until the
  // creator's release store of the magic publishes the segment (D-5).
  std::memset(entry_, 0, sizeof(PeerEntry));
  entry_->epoch = epoch;
  entry_->ring_offset = ring_offset;
}

StateReading PeerEntryView::State() const {
  // Acquire pairs with the release half of whichever CAS or store set the
  // state, so the caller sees what the entry's previous holder did.
  return StateReading::FromRaw(
      std::atomic_ref<uint32_t>(entry_->state).load(std::memory_order_acquire));
}

uint32_t PeerEntryView::Epoch() const {
  // Acquire, as for the state: the epoch is published by the same CAS.
  return std::atomic_ref<uint32_t>(entry_->epoch).load(std::memory_order_acquire);
}

PeerPair PeerEntryView::LoadPair() const {
  // One 64-bit acquire load (see PairWord), so state and epoch come from the
  // same moment.
  const uint64_t pair = PairWord(entry_).load(std::memory_order_acquire);
  return {StateReading::FromRaw(PairStateWord(pair)), PairEpoch(pair)};
}

absl::StatusOr<uint32_t> PeerEntryView::TakeEmpty(PeerState target) {
  // The state|epoch pair as one 64-bit word (mixed-size access, see PairWord).
  auto pair = PairWord(entry_);
  // Acquire: if the entry is Empty we are about to build on what its last
  // holder left behind.
  uint64_t observed = pair.load(std::memory_order_acquire);
  for (int lost = 0;; ++lost) {
    const StateReading state = StateReading::FromRaw(PairStateWord(observed));
    const uint32_t epoch = PairEpoch(observed);
    if (!state.Is(PeerState::kEmpty)) return UnexpectedState(state, epoch, PeerState::kEmpty);
    if (lost == kMaxLostTakeCas) {
      return ShmError(ShmErrc::kStaleEpoch,
                      absl::StrCat("peer entry epoch kept moving: lost ", lost,
                                   " CAS attempts in a row to take it, last observed ",
                                   DescribeObserved(state, epoch), ", expected Empty"));
    }
    // Unsigned wrap is the format's rule (§5.3, C-P18).
    const uint32_t new_epoch = epoch + 1;
    // acq_rel on success: release publishes our occupancy to the next
    // reader of the pair, acquire sees the previous holder's writes. Acquire
    // on failure: `observed` is re-examined above. Strong, so every failure
    // is a real change and counts against the bound.
    if (pair.compare_exchange_strong(observed, PackPair(target, new_epoch),
                                     std::memory_order_acq_rel, std::memory_order_acquire)) {
      return new_epoch;
    }
  }
}

absl::StatusOr<uint32_t> PeerEntryView::TryAttach() { return TakeEmpty(PeerState::kAttached); }

absl::StatusOr<uint32_t> PeerEntryView::TryReserve() { return TakeEmpty(PeerState::kReserved); }

absl::Status PeerEntryView::TryClaimReserved() {
  // [R] a 32-bit CAS on the state alone: the epoch is not part of the
  // transition, so a single attempt decides it and no loop is needed.
  uint32_t observed = static_cast<uint32_t>(PeerState::kReserved);
  // acq_rel / acq as in §5.4: the claimer sees the reserver's writes and
  // publishes its own to the next reader of the state.
  if (std::atomic_ref<uint32_t>(entry_->state)
          .compare_exchange_strong(observed, static_cast<uint32_t>(PeerState::kAttached),
                                   std::memory_order_acq_rel, std::memory_order_acquire)) {
    return absl::OkStatus();
  }
  // The epoch is a separate load, only for the message: it can be from a
  // slightly later moment than `observed`.
  return UnexpectedState(StateReading::FromRaw(observed), Epoch(), PeerState::kReserved);
}

void PeerEntryView::ReleaseReserved() {
  uint32_t expected = static_cast<uint32_t>(PeerState::kReserved);
  // acq_rel / acq as in §5.4. Failure means "not Reserved", which is the
  // documented no-op, so the result is deliberately unused.
  std::atomic_ref<uint32_t>(entry_->state)
      .compare_exchange_strong(expected, static_cast<uint32_t>(PeerState::kEmpty),
                               std::memory_order_acq_rel, std::memory_order_acquire);
}

void PeerEntryView::SetGoodbye() {
  // Release: whatever the leaver wrote before saying Goodbye (ring
  // progress, frees) is visible to whoever acquires the state next.
  std::atomic_ref<uint32_t>(entry_->state)
      .store(static_cast<uint32_t>(PeerState::kGoodbye), std::memory_order_release);
}

void PeerEntryView::Reset() {
  // Two release stores in this order: a process that acquires Empty then
  // also sees the zeroed heartbeat, so a new occupant never inherits the
  // previous one's timestamp.
  std::atomic_ref<uint64_t>(entry_->last_heartbeat).store(0, std::memory_order_release);
  std::atomic_ref<uint32_t>(entry_->state)
      .store(static_cast<uint32_t>(PeerState::kEmpty), std::memory_order_release);
}

void PeerEntryView::UpdateHeartbeat(uint64_t now_ns) {
  // Release as in Rust; nothing is published under the timestamp, so this
  // is stronger than needed.
  std::atomic_ref<uint64_t>(entry_->last_heartbeat).store(now_ns, std::memory_order_release);
}

uint64_t PeerEntryView::LastHeartbeat() const {
  // Acquire, pairing with UpdateHeartbeat's release (Rust's orders).
  return std::atomic_ref<uint64_t>(entry_->last_heartbeat).load(std::memory_order_acquire);
}

bool PeerEntryView::IsHeartbeatStale(uint64_t now_ns, uint64_t interval_ns) const {
  if (interval_ns == 0) return false;
  const uint64_t last = LastHeartbeat();
  // A heartbeat from the future (clock skew, or a guest's junk) is elapsed 0.
  const uint64_t elapsed = now_ns > last ? now_ns - last : 0;
  // D-14: saturate instead of wrapping, so a huge interval is never stale.
  constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
  const uint64_t limit = interval_ns > kMax / 2 ? kMax : 2 * interval_ns;
  return elapsed > limit;
}

absl::Status PeerEntryView::Fenced(PeerState from, PeerState to, uint32_t epoch) {
  uint64_t observed = PackPair(from, epoch);
  // One strong 64-bit CAS (see PairWord): the expected pair is fully given,
  // so a failure is a real mismatch and there is nothing to retry. acq_rel /
  // acq as for every state transition (§5.6).
  if (PairWord(entry_).compare_exchange_strong(
          observed, PackPair(to, epoch), std::memory_order_acq_rel, std::memory_order_acquire)) {
    return absl::OkStatus();
  }
  return PairMismatch(observed, from, epoch);
}

absl::Status PeerEntryView::ClaimFenced(uint32_t epoch) {
  return Fenced(PeerState::kReserved, PeerState::kAttached, epoch);
}

absl::Status PeerEntryView::ReleaseFenced(uint32_t epoch) {
  return Fenced(PeerState::kReserved, PeerState::kEmpty, epoch);
}

absl::Status PeerEntryView::GoodbyeFenced(uint32_t epoch) {
  return Fenced(PeerState::kAttached, PeerState::kGoodbye, epoch);
}

absl::Status PeerEntryView::CheckPair(PeerState state, uint32_t epoch) const {
  // One acquire load of the pair (see PairWord), so state and epoch agree.
  const uint64_t observed = PairWord(entry_).load(std::memory_order_acquire);
  if (observed == PackPair(state, epoch)) return absl::OkStatus();
  return PairMismatch(observed, state, epoch);
}

absl::Status PeerEntryView::BeginRecovery(uint32_t epoch) {
  // A guest may legitimately move Attached -> Goodbye between our load and
  // our CAS; each lost CAS means the pair changed, so a few attempts cover
  // every honest interleaving and a guest flipping words in a loop gets an
  // error instead of a spinning daemon.
  constexpr int kMaxAttempts = 8;
  uint64_t observed = PairWord(entry_).load(std::memory_order_acquire);
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    const StateReading state = StateReading::FromRaw(PairStateWord(observed));
    const uint32_t observed_epoch = PairEpoch(observed);
    // Classified state first, then epoch, like the fenced operations. Empty
    // and Reserved hold no occupancy that crashed; PairMismatch cannot say
    // this, since three states (and invalid words) are acceptable here.
    if (state.Is(PeerState::kEmpty) || state.Is(PeerState::kReserved)) {
      return ShmError(ShmErrc::kWrongState,
                      absl::StrCat("peer entry is ", DescribeObserved(state, observed_epoch),
                                   ", expected Attached, Goodbye or an invalid state word (epoch ",
                                   epoch, ") to recover"));
    }
    if (observed_epoch != epoch) {
      return ShmError(ShmErrc::kStaleEpoch,
                      absl::StrCat("stale epoch: peer entry is ",
                                   DescribeObserved(state, observed_epoch),
                                   ", recovery was asked for epoch ", epoch));
    }
    if (state.Is(PeerState::kGoodbye)) return absl::OkStatus();
    // Attached or an invalid word, with our epoch: fence it into Goodbye.
    // acq_rel / acq as for every state transition (§5.6); on failure
    // `observed` is reloaded and reclassified.
    if (PairWord(entry_).compare_exchange_strong(observed, PackPair(PeerState::kGoodbye, epoch),
                                                 std::memory_order_acq_rel,
                                                 std::memory_order_acquire)) {
      return absl::OkStatus();
    }
  }
  return ShmError(ShmErrc::kStaleEpoch,
                  absl::StrCat("peer entry kept changing while recovery tried to fence epoch ",
                               epoch, "; last seen ",
                               DescribeObserved(StateReading::FromRaw(PairStateWord(observed)),
                                                PairEpoch(observed))));
}

absl::Status PeerEntryView::FinishRecovery(uint32_t epoch) {
  // Check the pair before touching the heartbeat, so a refused finish leaves
  // the entry as it found it. Only the host moves an entry out of Goodbye,
  // one recovery per peer at a time, so between this check and the CAS below
  // the pair can change only through a guest scribbling on its own entry:
  // the heartbeat we then zero is that guest's, never a newer occupancy's.
  if (absl::Status ours = CheckPair(PeerState::kGoodbye, epoch); !ours.ok()) return ours;
  // Heartbeat first, as Reset() does, so the next occupant never sees the
  // previous one's heartbeat; release pairs with a reader's acquire load.
  std::atomic_ref<uint64_t>(entry_->last_heartbeat).store(0, std::memory_order_release);
  return Fenced(PeerState::kGoodbye, PeerState::kEmpty, epoch);
}

uint64_t PeerEntryView::RingOffset() const {
  // A plain field in the format, but a guest may rewrite it at any time.
  // A relaxed atomic load is still a plain load on our targets and makes
  // sure the compiler reads it exactly once and untorn, so the caller's
  // copy is the value it validates.
  return std::atomic_ref<uint64_t>(entry_->ring_offset).load(std::memory_order_relaxed);
}

bool IsLateEpochBump(const PeerPair& seen, const PeerPair& next) {
  const StateReading& state = seen.first;
  if (!state.valid || state.state == PeerState::kEmpty) return false;
  return next.first == state && next.second == seen.second + 1;  // wraps like the epoch
}

absl::StatusOr<uint32_t> PeerTable::IndexToPeerId(uint32_t index) {
  if (index >= kMaxGuests) {
    return ShmError(ShmErrc::kInvalidPeerId,
                    absl::StrCat("peer index ", index, " is outside 0..", kMaxGuests - 1));
  }
  return index + 1;
}

absl::StatusOr<uint32_t> PeerTable::PeerIdToIndex(uint32_t peer_id) {
  if (peer_id == kHostPeerId || peer_id > kMaxGuests) {
    return ShmError(ShmErrc::kInvalidPeerId,
                    absl::StrCat("peer id ", peer_id, " is outside 1..", kMaxGuests));
  }
  return peer_id - 1;
}

absl::StatusOr<PeerEntryView> PeerTable::Entry(uint32_t peer_id) const {
  absl::StatusOr<uint32_t> index = PeerIdToIndex(peer_id);
  if (!index.ok()) return index.status();
  if (peer_id > max_guests_) {
    return ShmError(ShmErrc::kInvalidPeerId,
                    absl::StrCat("peer id ", peer_id, " exceeds max_guests ", max_guests_));
  }
  return PeerEntryView(entries_ + *index);
}

absl::StatusOr<Occupancy> PeerTable::TakeFirstFree(PeerState target) {
  const uint32_t limit = max_guests_ < kMaxGuests ? max_guests_ : kMaxGuests;
  for (uint32_t index = 0; index < limit; ++index) {
    PeerEntryView entry(entries_ + index);
    // A cheap look first, so occupied entries cost no error message.
    if (!entry.State().Is(PeerState::kEmpty)) continue;
    absl::StatusOr<uint32_t> epoch =
        target == PeerState::kAttached ? entry.TryAttach() : entry.TryReserve();
    // D-8: an entry lost to another process does not end the scan.
    if (epoch.ok()) return Occupancy{index + 1, *epoch};
  }
  return ShmError(ShmErrc::kNoFreeEntry,
                  absl::StrCat("no Empty peer entry among the ", limit, " of the table"));
}

absl::StatusOr<Occupancy> PeerTable::AttachFirstFree() {
  return TakeFirstFree(PeerState::kAttached);
}

absl::StatusOr<Occupancy> PeerTable::ReserveFirstFree() {
  return TakeFirstFree(PeerState::kReserved);
}

}  // namespace shmhub::shm
