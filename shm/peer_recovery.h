// The crash-recovery procedure for one peer entry (format §14, D-10): the
// only way an occupied entry becomes Empty again after its guest crashed,
// said goodbye, or was evicted.
//
// Precondition (§14): nothing on the host side still uses this peer's rings
// (no thread produces into its host->guest ring or consumes its guest->host
// ring), and the host holds no reference to slots it received from this
// peer. Violating it lets step 4 free slots under the host.
//
// The steps run in the format's order — Goodbye, drain host->guest, reset
// both rings (host->guest first), reclaim the peer's slots, drop mapping
// leases, Empty — and before every step the entry's (state, epoch) pair is
// re-checked, so a slot is never cleaned twice or cleaned after a new guest
// took it. Only shmhubd calls this, and only on its own (host) segment.
//
// Everything read from the rings is hostile: the host->guest header is
// validated before draining (a corrupt one skips step 2 and recovery still
// completes steps 3 to 6), at most capacity/8 entries are processed, and a
// SLOT_REF frees a slot only if it is in range, extent 0, owned by the host
// (owner 0) and of the current generation. Each problem is counted in the
// report, never fatal.
#ifndef SHMHUB_SHM_PEER_RECOVERY_H_
#define SHMHUB_SHM_PEER_RECOVERY_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "shm/occupancy.h"
#include "shm/segment.h"

namespace shmhub::shm {

enum class RecoveryStep : uint8_t {
  kGoodbye = 1,
  kDrainHostToGuest = 2,
  kResetRings = 3,
  kReclaimSlots = 4,
  kDropMappingLeases = 5,
  kEmpty = 6,
};

struct RecoveryReport {
  uint32_t peer_id = 0;
  uint32_t epoch = 0;
  // Step 2: host->guest entries consumed, and what they named.
  uint32_t entries_scanned = 0;
  uint32_t slots_freed_from_ring = 0;
  uint32_t mmap_refs_seen = 0;
  uint32_t inline_entries_seen = 0;
  // Step 2 problems. An invalid entry (bad framing) ends the drain.
  bool host_to_guest_corrupt = false;  // header failed validation; drain skipped
  uint32_t invalid_entries = 0;
  uint32_t bad_slot_refs = 0;      // class, slot or extent out of range
  uint32_t foreign_slot_refs = 0;  // names a slot the host does not own
  uint32_t stale_slot_refs = 0;    // slot not allocated or generation moved
  bool drain_bound_reached = false;
  // Step 4 and 5.
  uint32_t slots_reclaimed_by_owner = 0;
  uint32_t mapping_leases_dropped = 0;
  // One human-readable line per problem above, for the daemon's log.
  std::vector<std::string> problems;

  uint32_t ProblemCount() const;
};

struct RecoveryHooks {
  // Step 5: drops the mapping-registry leases held for this peer and returns
  // how many. The segment keeps no lease registry; the data plane's
  // host side does. Unset: nothing to drop.
  std::function<uint32_t(uint32_t peer_id)> drop_mapping_leases;
  // Called after each completed step, for logs, timing and tests.
  std::function<void(RecoveryStep step)> after_step;
};

// Recovers `occupancy`. The entry must be Attached, Goodbye or hold an
// invalid state word, with that epoch.
// Errors, each leaving the entry as the failed check found it:
// kWrongState (not a host segment; entry Empty or Reserved),
// kInvalidPeerId, kStaleEpoch (the epoch is not `epoch`, at the start or at
// any later step).
absl::StatusOr<RecoveryReport> RecoverPeer(const Segment& segment, const Occupancy& occupancy,
                                           const RecoveryHooks& hooks = {});

}  // namespace shmhub::shm

#endif  // SHMHUB_SHM_PEER_RECOVERY_H_
