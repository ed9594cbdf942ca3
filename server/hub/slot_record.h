// SlotRecord: what shmhubd has published about one peer slot, and the
// liveness bookkeeping for its current occupancy.
//
// The segment holds the truth that guests change; the record holds what the
// event stream has told watchers. PeerHub moves a record only together with
// the event that announces the move, so a record is always the state a
// watcher that applied every event so far would have.
//
// Thread safety: none; PeerHub guards every record with its mutex.
#ifndef SHMHUB_SERVER_HUB_SLOT_RECORD_H_
#define SHMHUB_SERVER_HUB_SLOT_RECORD_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "shm/occupancy.h"
#include "shm/peer_table.h"
#include "shmhub/v1/hub.pb.h"

namespace shmhub::server {

// A reservation, kept from RESERVED until the slot is Empty again (owner
// and labels stay visible while the guest that claimed it runs).
struct SlotReservation {
  std::string owner;
  std::map<std::string, std::string> labels;
  std::string request_id;  // empty: not idempotent
  absl::Duration lease_ttl;
  absl::Time lease_expires_at;     // for people: wall clock
  uint64_t lease_deadline_ns = 0;  // decides expiry: CLOCK_MONOTONIC, immune to clock steps
};

struct SlotRecord {
  SlotRecord(uint32_t id, uint32_t initial_epoch, absl::Time now);

  // Moves to `new_state` of the same occupancy and restarts state_since.
  void Enter(v1::PeerState new_state, absl::Time now);
  // Empty at `new_epoch`: forgets the occupancy (reservation, liveness,
  // corrupt word) but keeps the slot's history (last_detector).
  void BecomeEmpty(uint32_t new_epoch, absl::Time now);
  // Starts a fresh occupancy at `new_epoch` in `new_state`, as Empty would
  // have left it.
  void BeginOccupancy(v1::PeerState new_state, uint32_t new_epoch, absl::Time now);

  // The detectors watching the guest. Only an Attached guest is watched.
  std::vector<v1::Detector> ArmedDetectors() const;
  bool occupied() const { return state != v1::PEER_STATE_EMPTY; }
  shm::Occupancy occupancy() const { return {peer_id, epoch}; }
  // Whether the slot is still occupied (in any state but Empty) by
  // `occupancy`: false once that occupancy has ended, whatever came after.
  bool Holds(const shm::Occupancy& other) const { return occupied() && occupancy() == other; }
  // Goodbye or Corrupt: the daemon owes the slot a recovery.
  bool recovering() const {
    return state == v1::PEER_STATE_GOODBYE || state == v1::PEER_STATE_CORRUPT;
  }

  uint32_t peer_id;

  // Published state.
  v1::PeerState state = v1::PEER_STATE_EMPTY;
  uint32_t epoch;
  uint32_t raw_state = 0;  // the invalid word while state is CORRUPT
  absl::Time state_since;
  std::optional<SlotReservation> reservation;

  // Liveness of the current occupancy. The heartbeat detector is armed at
  // the first non-zero heartbeat, or at attach with --require_heartbeat
  // (format §13, A-19); `heartbeat_seen` tells the two apart.
  uint64_t attach_seen_ns = 0;  // CLOCK_MONOTONIC when ATTACHED was published
  bool heartbeat_armed = false;
  bool heartbeat_seen = false;
  bool stale = false;  // STALE published and no FRESH since

  // Kernel-backed detectors of a guest that bootstrapped over the local
  // socket (LocalSocketServer watches the fds; the record only says so).
  bool doorbell_watched = false;  // the daemon holds the host end of its doorbell
  bool process_watched = false;   // a pidfd of the connected process is polled
  uint32_t pid = 0;               // SO_PEERCRED's pid; 0 when unknown
  uint64_t pid_start_time = 0;    // its /proc/<pid>/stat start time; 0 when unknown
  // A heartbeat crash was held back because the process is alive (logged
  // once per stale spell).
  bool heartbeat_crash_deferred = false;

  // The detector that last declared a guest of this slot crashed.
  v1::Detector last_detector = v1::DETECTOR_UNSPECIFIED;

  // D-1: a pair written by another process, seen on one pass and confirmed
  // (or replaced) on the next.
  std::optional<shm::PeerPair> unconfirmed;

  // Consecutive failed recoveries of this occupancy, to keep retries from
  // flooding the log.
  uint32_t failed_recoveries = 0;

  // The epoch the segment held when this daemon adopted it from an earlier
  // one: an occupancy at that epoch is one the predecessor served.
  std::optional<uint32_t> adopted_epoch;
  bool FoundAtAdoption() const { return adopted_epoch == epoch; }
};

}  // namespace shmhub::server

#endif  // SHMHUB_SERVER_HUB_SLOT_RECORD_H_
