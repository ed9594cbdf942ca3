// Guest: one guest process's occupancy of a peer slot in a hub segment — the
// control side of libshmhub_guest (attach or claim, heartbeat, goodbye). The
// data plane (rings, frames, slot pool) is layered on top of segment().
//
// Attach maps the segment at `segment_path` (full §3 validation) and takes a
// slot in one of three ways:
//  * peer_id != 0: the slot was reserved for us through the daemon
//    (ReservePeer); we claim it with one fenced CAS (Reserved, epoch) ->
//    (Attached, epoch). A wrong epoch or state changes nothing and fails with
//    the shm/ error (ShmErrc kStaleEpoch, kWrongState, kInvalidState; code
//    FAILED_PRECONDITION) — the reservation may have expired or been
//    released.
//  * peer_id == 0: no reservation; we take the lowest Empty slot (D-8),
//    which bumps its epoch. kNoFreeEntry (RESOURCE_EXHAUSTED) when none is.
//  * socket_path set: bootstrap over shmhubd's local socket
//    (local_bootstrap.h). The daemon reserves a slot for us and sends the
//    segment and our doorbell; we claim the slot at the epoch we find it
//    Reserved at. The daemon then sees us crash at once (doorbell hang-up,
//    process exit), not only through heartbeats. The doorbell is held until
//    Goodbye() has stored Goodbye, so an orderly leave is never mistaken
//    for a crash.
//
// Neither is tried when the host has raised host_goodbye (UNAVAILABLE).
//
// From then on (peer_id, epoch) names our occupancy. Every later write to
// our entry is fenced on that pair, so a guest that the daemon has evicted
// or recovered (and whose slot may already belong to someone else) never
// touches the slot again; only heartbeats are plain stores, written after a
// check of the pair (see the heartbeat thread below).
//
// Heartbeats (§5.5, §13): when enabled, a thread stores CLOCK_MONOTONIC
// nanoseconds into our entry at the interval, the first one before Attach
// returns so the daemon arms its heartbeat detector at once. It stops by
// itself when the host raises host_goodbye, or when our entry no longer
// holds (Attached, epoch) (evicted, recovered or scribbled on). A check and
// the following store are two steps, so a heartbeat can land in an entry the
// daemon emptied in between: the daemon zeroes the heartbeat at its next
// recovery of the slot, and the window is a few instructions wide.
//
// Goodbye() is the orderly leave: stop heartbeats, mark our entry Goodbye
// (fenced: only if it still holds our pair), unmap. The daemon sees the
// Goodbye, recovers the slot and empties it. The destructor calls Goodbye().
//
// Thread safety: every method may be called from any thread, concurrently.
// segment() returns a pointer that stays valid until Goodbye() starts;
// callers that use it from several threads must not race it with Goodbye().
#ifndef SHMHUB_CLIENT_GUEST_GUEST_H_
#define SHMHUB_CLIENT_GUEST_GUEST_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "client/guest/local_bootstrap.h"
#include "shm/segment.h"

namespace shmhub::client {

struct GuestOptions {
  // The segment file the daemon created, e.g. "/dev/shm/shmhub". Must be
  // empty with socket_path.
  std::string segment_path;
  // shmhubd's local socket (its --socket). With it, peer_id must be 0 and
  // expected_epoch unset: the daemon picks the slot.
  std::string socket_path;
  // Bounds the whole bootstrap over socket_path.
  absl::Duration bootstrap_timeout = absl::Seconds(5);
  // 1..max_guests: claim this reserved slot (needs expected_epoch).
  // 0: attach to the lowest Empty slot without a reservation.
  uint32_t peer_id = 0;
  // The epoch ReservePeer returned. Required when peer_id != 0; must be
  // unset when peer_id == 0 (the epoch is then the one the attach creates).
  std::optional<uint32_t> expected_epoch;
  // Run the heartbeat thread.
  bool heartbeat = true;
  // Heartbeat period. Unset: the segment header's interval, and no
  // heartbeats when that is 0 (the host turned them off). When set it must
  // be positive; it then applies even if the header says 0. Either way a
  // period below 1ms is raised to 1ms, so a header cannot make us spin.
  std::optional<absl::Duration> heartbeat_interval;
};

// Why the heartbeat thread is not (or no longer) running.
enum class HeartbeatState {
  kDisabled,     // heartbeats were not requested, or the interval is 0
  kRunning,
  kStopped,      // Goodbye() stopped it
  kHostGoodbye,  // the host raised host_goodbye
  kLostSlot,     // our entry no longer holds (Attached, epoch)
};

// "disabled", "running", "stopped", "host_goodbye", "lost_slot".
const char* HeartbeatStateName(HeartbeatState state);

class Guest {
 public:
  // Errors: INVALID_ARGUMENT for inconsistent options; the shm/ errors of
  // Segment::Attach (path, validation), of the claim or of the direct attach
  // (see the file comment), each prefixed with what was being done.
  static absl::StatusOr<std::unique_ptr<Guest>> Attach(const GuestOptions& options);

  ~Guest();
  Guest(const Guest&) = delete;
  Guest& operator=(const Guest&) = delete;

  // The orderly leave described above. Returns OK when our entry went from
  // (Attached, epoch) to (Goodbye, epoch); otherwise the fenced operation's
  // error (the slot had already moved on, nothing was written). The segment
  // is unmapped either way. Later calls do nothing and return the first
  // call's result.
  absl::Status Goodbye();

  uint32_t peer_id() const { return peer_id_; }
  uint32_t epoch() const { return epoch_; }
  // Whether we bootstrapped over the daemon's local socket.
  bool bootstrapped_locally() const { return bootstrapped_locally_; }
  // Close-on-exec duplicates of the doorbell end and the mapping-control
  // socket the daemon sent at bootstrap, for a data-plane link
  // (guest_link.h); nullopt when we attached by path or after Goodbye().
  // A duplicate keeps the doorbell open: the daemon sees our hang-up only
  // once it is closed too, so a link must not outlive the process's wish to
  // hold the slot (a crash closes everything at once).
  absl::StatusOr<std::optional<LocalChannels>> DupLocalChannels();
  // The heartbeat period in use; zero when heartbeats are off.
  absl::Duration heartbeat_interval() const { return heartbeat_interval_; }
  // Valid until Goodbye() starts; nullptr afterwards.
  shm::Segment* segment() const;

  // The host's host_goodbye flag; false after Goodbye() (nothing mapped).
  bool HostGoodbye() const;
  // Whether our entry still holds (Attached, epoch); false after Goodbye().
  bool StillAttached() const;
  HeartbeatState heartbeat_state() const;

 private:
  Guest(std::unique_ptr<shm::Segment> segment, uint32_t peer_id, uint32_t epoch,
        absl::Duration heartbeat_interval, std::optional<LocalChannels> channels);
  void StartHeartbeat();
  void HeartbeatLoop();
  // One check-then-store; returns the state the loop should go on in.
  HeartbeatState HeartbeatOnce();

  const uint32_t peer_id_;
  const uint32_t epoch_;
  const absl::Duration heartbeat_interval_;
  const bool bootstrapped_locally_;

  // Readers (accessors) share the mapping; Goodbye takes it exclusively
  // to unmap, so no reader ever touches an unmapped segment.
  mutable absl::Mutex segment_mu_;
  std::unique_ptr<shm::Segment> segment_ ABSL_GUARDED_BY(segment_mu_);

  // Serialises Goodbye callers; holds the first call's result.
  absl::Mutex goodbye_mu_;
  std::optional<absl::Status> goodbye_result_ ABSL_GUARDED_BY(goodbye_mu_);
  // Closed by Goodbye() after the Goodbye store (see the file comment).
  std::optional<LocalChannels> channels_ ABSL_GUARDED_BY(goodbye_mu_);

  absl::Notification stop_heartbeat_;
  std::thread heartbeat_thread_;
  // Written by the heartbeat thread and Goodbye, read by anyone; relaxed is
  // enough because it is a report only and orders no other memory.
  std::atomic<HeartbeatState> heartbeat_state_{HeartbeatState::kDisabled};
};

}  // namespace shmhub::client

#endif  // SHMHUB_CLIENT_GUEST_GUEST_H_
