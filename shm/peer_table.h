// The peer table of a hub segment (format §5): `max_guests` 64-byte entries
// at offset 128, one per guest, holding the guest's state, the epoch that
// names its current occupancy, its heartbeat and the offset of its rings.
//
// PeerEntryView and PeerTable are non-owning views: they hold a pointer into
// a mapping that the caller keeps alive for as long as any view is used.
// They keep no state of their own, so any number of threads and processes
// may call any method on the same entry concurrently. Every shared word is
// accessed through std::atomic_ref and every state change is one CAS or one
// store, with the orders of §5.4.
//
// The table is hostile input (§1.7): a guest can write any word at any time.
// Each method loads a word once and works on the copy; a state word outside
// 0..3 is reported as invalid with its raw value instead of being read as
// Empty like Rust does; CAS retry loops are bounded, so a guest that
// flips words forever costs the caller an error, never a hang.
//
// Epochs (§5.3, D-1): the epoch goes up by one exactly when an Empty entry
// becomes occupied (TryAttach, TryReserve). Ours change state and epoch in
// one 64-bit CAS, so (peer_id, epoch) names one occupancy and the *Fenced
// operations act on that occupancy only. Rust peers bump the epoch in a
// second step; IsLateEpochBump below is the daemon's rule for that window.
#ifndef SHMHUB_SHM_PEER_TABLE_H_
#define SHMHUB_SHM_PEER_TABLE_H_

#include <cstdint>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "shm/format.h"
#include "shm/occupancy.h"

namespace shmhub::shm {

// "Empty", "Attached", "Goodbye", "Reserved"; "Invalid" for any other value.
absl::string_view PeerStateName(PeerState state);

// One reading of a state word. `raw` is the word as loaded and `state` is
// always static_cast<PeerState>(raw), so comparing `state` with a named
// state is false for an invalid word; `valid` says whether raw is 0..3.
struct StateReading {
  bool valid;
  PeerState state;
  uint32_t raw;

  static StateReading FromRaw(uint32_t raw);
  // True when the word is valid and equals `s`.
  bool Is(PeerState s) const { return valid && state == s; }

  friend bool operator==(const StateReading&, const StateReading&) = default;
};

// The state and epoch words read together as one 64-bit load (§1.6).
using PeerPair = std::pair<StateReading, uint32_t>;

// Non-owning view over one PeerEntry. `entry` must be 8-byte aligned (the
// format places entries 64-aligned) and stay mapped while the view is used.
//
// Failures carry ShmErrc kWrongState (the entry is in another state),
// kInvalidState (the state word is not 0..3) or kStaleEpoch (a fenced op's
// epoch is not the entry's, or the epoch kept moving under a retry loop).
// Messages name the observed state and epoch and the expected ones, e.g.
// "peer entry is Attached (epoch 3), expected Reserved".
class PeerEntryView {
 public:
  explicit PeerEntryView(PeerEntry* entry) : entry_(entry) {}

  // Creator only, before the segment is published (§5.4 init): zeroes the
  // whole entry with plain stores and sets `ring_offset`, and the epoch the
  // Empty entry starts at (0 but for a path whose earlier segments handed
  // out epochs: SegmentConfig::initial_epochs).
  void Init(uint64_t ring_offset, uint32_t epoch = 0);

  // Acquire loads of single words.
  StateReading State() const;
  uint32_t Epoch() const;
  // State and epoch as one consistent 64-bit acquire load (§1.6).
  PeerPair LoadPair() const;

  // D-1: one 64-bit CAS (Empty, e) -> (Attached, e+1), retried while the
  // entry stays Empty but its epoch moves. Returns the new epoch (wrapping).
  // Changes nothing on failure: kWrongState / kInvalidState for any other
  // observed state, kStaleEpoch when the epoch moved on every one of a
  // bounded number of attempts.
  absl::StatusOr<uint32_t> TryAttach();
  // Same as TryAttach with Reserved as the new state.
  absl::StatusOr<uint32_t> TryReserve();
  // CAS Reserved -> Attached, epoch unchanged. kWrongState or
  // kInvalidState when the entry is not Reserved; nothing changes then.
  absl::Status TryClaimReserved();
  // CAS Reserved -> Empty, epoch unchanged; a no-op in any other state
  // (Rust ignores the result, and so may the caller).
  void ReleaseReserved();
  // Stores Goodbye from any state, epoch unchanged.
  void SetGoodbye();
  // Heartbeat 0, then state Empty (in that order, so a new occupant never
  // sees the previous one's heartbeat); epoch unchanged.
  void Reset();

  void UpdateHeartbeat(uint64_t now_ns);
  uint64_t LastHeartbeat() const;
  // §5.5: false when interval_ns is 0; otherwise
  // saturating(now - last) > saturating(2 * interval_ns) (D-14: an interval
  // of 2^63 or more is never stale instead of wrapping like Rust).
  bool IsHeartbeatStale(uint64_t now_ns, uint64_t interval_ns) const;

  // Fenced transitions (D-1): one 64-bit CAS that succeeds only on the exact
  // pair (from, epoch). On failure nothing changes and the error says why,
  // checked in this order: kInvalidState (state word not 0..3), kWrongState
  // (another state), kStaleEpoch (right state, other epoch).
  absl::Status ClaimFenced(uint32_t epoch);    // (Reserved, E) -> (Attached, E)
  absl::Status ReleaseFenced(uint32_t epoch);  // (Reserved, E) -> (Empty, E)
  absl::Status GoodbyeFenced(uint32_t epoch);  // (Attached, E) -> (Goodbye, E)

  // OK when the pair is exactly (state, epoch); otherwise the classified
  // error of the fenced operations. One 64-bit acquire load.
  absl::Status CheckPair(PeerState state, uint32_t epoch) const;

  // Recovery (§14), host only. BeginRecovery fences occupancy `epoch` into
  // Goodbye from Attached, Goodbye or an invalid state word (step 1); it
  // refuses Empty and Reserved (kWrongState) and any other epoch
  // (kStaleEpoch), changing nothing. FinishRecovery is step 6: heartbeat 0,
  // then (Goodbye, E) -> (Empty, E); the epoch is kept.
  absl::Status BeginRecovery(uint32_t epoch);
  absl::Status FinishRecovery(uint32_t epoch);

  // The stored ring_offset, untrusted: the host uses its own layout instead,
  // a guest validates it against the layout (§3) before use.
  uint64_t RingOffset() const;

 private:
  absl::StatusOr<uint32_t> TakeEmpty(PeerState target);
  absl::Status Fenced(PeerState from, PeerState to, uint32_t epoch);

  PeerEntry* entry_;
};

// D-1, Rust peers' window: a Rust try_attach / try_reserve stores the new
// state before it bumps the epoch, so an observer can read (new state, old
// epoch). When the daemon has seen a transition made by another process as
// `seen`, it re-reads the pair as `next` on its next pass; this returns true
// when `next` is that same occupancy with the epoch bump landed (same
// occupied state, epoch exactly one higher, wrapping), in which case the
// daemon adopts next's epoch before fencing on it or publishing it. An
// Empty or invalid state names no occupancy and never qualifies.
bool IsLateEpochBump(const PeerPair& seen, const PeerPair& next);

// Non-owning view over the whole table: `entries` points at the entry of
// peer 1 (segment offset 128) and `max_guests` is the caller's trusted copy
// of the geometry (the host's config, or a validated header value), at most
// kMaxGuests. Entry ids are checked against both limits, so no method
// reaches past the table. Thread- and process-safe like PeerEntryView.
class PeerTable {
 public:
  PeerTable(PeerEntry* entries, uint32_t max_guests) : entries_(entries), max_guests_(max_guests) {}

  // §5.2: peer_id = index + 1. Index 255 or more, and id 0 (the host) or
  // above 255, are kInvalidPeerId.
  static absl::StatusOr<uint32_t> IndexToPeerId(uint32_t index);
  static absl::StatusOr<uint32_t> PeerIdToIndex(uint32_t peer_id);

  // The entry of `peer_id`; kInvalidPeerId also when peer_id > max_guests.
  absl::StatusOr<PeerEntryView> Entry(uint32_t peer_id) const;
  uint32_t max_guests() const { return max_guests_; }

  // D-8: scan ids upward and take the first entry that is Empty with
  // TryAttach / TryReserve; an entry lost to another process does not end
  // the scan. kNoFreeEntry when no entry was Empty as the scan passed it.
  absl::StatusOr<Occupancy> AttachFirstFree();
  absl::StatusOr<Occupancy> ReserveFirstFree();

 private:
  absl::StatusOr<Occupancy> TakeFirstFree(PeerState target);

  PeerEntry* entries_;
  uint32_t max_guests_;
};

}  // namespace shmhub::shm

#endif  // SHMHUB_SHM_PEER_TABLE_H_
