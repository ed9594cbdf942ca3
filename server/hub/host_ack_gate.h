// HostAckGate: the daemon's bookkeeping for the recovery handshake with the
// registered data-plane host application (docs/host-protocol.md): which
// occupancies the host has been told about, which recoveries wait for its
// RECOVERY_READY and until when, and the records the daemon owes it, in
// the order it must send them.
//
// Format §14's precondition is that nothing on the host side still uses a
// peer's rings or holds its pool slots when recovery starts. The daemon is
// not that host side; the host application is. So a recovery of an
// occupancy the host knows (it was sent PEER_ATTACHED) first sends
// PEER_RECOVERING and waits, without blocking anyone, until the host
// answers RECOVERY_READY or --host_ack_timeout passes; occupancies the host
// never heard of recover at once, as they do with no host registered.
//
// Per slot:
//   unknown --Announce--> announced --BeginRecovery--> awaiting ack
//   awaiting ack --Acknowledge, or the deadline (kTimedOut)--> unknown
//   announced or awaiting, the occupancy ends some other way (Reconcile,
//     or a newer occupancy is announced) --> PEER_RECOVERING(kVanished), unknown
//   Orphan --> orphaned: never announced, until that occupancy ends
//
// PeerHub owns one and calls it under its mutex; LocalSocketServer takes
// the records (TakeNotices) on its own thread and writes them to the host.
// Queuing a record calls the notice callback, if one is set, with which
// that thread wakes itself (an eventfd write); nothing here blocks or does
// I/O of its own.
//
// Thread safety: none; the owner serialises every call.
#ifndef SHMHUB_SERVER_HUB_HOST_ACK_GATE_H_
#define SHMHUB_SERVER_HUB_HOST_ACK_GATE_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "shm/host_control.h"
#include "shm/occupancy.h"

namespace shmhub::server {

class HostAckGate {
 public:
  // Slots 1..max_guests; an acknowledgement is awaited for `ack_timeout`.
  HostAckGate(uint32_t max_guests, absl::Duration ack_timeout);

  HostAckGate(const HostAckGate&) = delete;
  HostAckGate& operator=(const HostAckGate&) = delete;

  // Called whenever a record is queued, so whoever takes the records
  // (TakeNotices) knows to; empty for none. It runs inside the owner's
  // serialisation and must not call back into the gate.
  void set_notice_callback(std::function<void()> callback) { on_notice_ = std::move(callback); }

  bool registered() const { return registered_; }
  // A host application registered; records queued from now on are for it.
  void Register();
  // It is gone: its queued records are dropped, everything it was told is
  // forgotten, and the occupancies whose recovery waited for it are
  // returned (its acknowledgement counts as given: they may recover now).
  std::vector<shm::Occupancy> Unregister();

  // `occupancy` is Attached: queues PEER_ATTACHED (arg 0; the socket server
  // adds the descriptors it holds), unless no host is registered, it was
  // already told, or the occupancy is orphaned. A different occupancy of the
  // same slot that the host still knows gets PEER_RECOVERING(kVanished)
  // first, so the host never holds two links for one slot.
  void Announce(const shm::Occupancy& occupancy);
  // The host application's death cut `occupancy` off from the data plane
  // (its doorbell was shut down): it is never announced to a later host.
  void Orphan(const shm::Occupancy& occupancy);

  // A host application that served the segment under an earlier daemon may
  // register until CLOCK_MONOTONIC `deadline_ns`: until it does, or then,
  // every recovery waits (BeginRecovery says kWait), so nothing it may still
  // hold is freed under it.
  void ExpectHostUntil(uint64_t deadline_ns);
  // The registered host says it serves `occupancy` (PEER_HANDBACK): it is
  // known as if announced, with no PEER_ATTACHED sent. False with no host
  // registered.
  bool Known(const shm::Occupancy& occupancy);
  // The registered host says it serves `occupancy`, which has ended: it is
  // told PEER_RECOVERING(kVanished), and nothing is awaited.
  void Disown(const shm::Occupancy& occupancy);

  enum class Verdict {
    kRecoverNow,  // the host does not know the occupancy, or has acknowledged
    kWait,        // PEER_RECOVERING is out; the acknowledgement is awaited
    kTimedOut,    // the wait passed its deadline just now; recover anyway
  };
  // Asked before every attempt to recover `occupancy` at CLOCK_MONOTONIC
  // `now_ns`. The first ask about an occupancy the host knows queues
  // PEER_RECOVERING(`departure`) and starts the deadline; kTimedOut is
  // returned once, after which the occupancy is forgotten (kRecoverNow).
  Verdict BeginRecovery(const shm::Occupancy& occupancy, shm::PeerDeparture departure,
                        uint64_t now_ns);
  // RECOVERY_READY for `occupancy`: true when a recovery was waiting for it
  // (it may run now). Late, repeated or unsolicited ones return false.
  bool Acknowledge(const shm::Occupancy& occupancy);
  // The slot of `peer_id` now holds the occupancy at `live_epoch` (Attached,
  // Goodbye or Corrupt), or none. Forgets what no longer matches; an
  // occupancy the host knows that ended without PEER_RECOVERING gets one
  // (kVanished), with no acknowledgement awaited.
  void Reconcile(uint32_t peer_id, std::optional<uint32_t> live_epoch);

  // The records queued since the last call, in order.
  std::vector<shm::HostRecord> TakeNotices();

 private:
  enum class Phase { kUnknown, kAnnounced, kAwaitingAck, kOrphaned };
  struct Slot {
    Phase phase = Phase::kUnknown;
    uint32_t epoch = 0;
    uint64_t deadline_ns = 0;  // kAwaitingAck
  };

  // Null for ids outside 1..max_guests.
  Slot* SlotOf(uint32_t peer_id);
  void Queue(const shm::HostRecord& record);

  const uint64_t ack_timeout_ns_;
  std::vector<Slot> slots_;  // slots_[i] is peer i + 1
  bool registered_ = false;
  uint64_t expect_host_until_ns_ = 0;
  std::vector<shm::HostRecord> notices_;
  std::function<void()> on_notice_;
};

}  // namespace shmhub::server

#endif  // SHMHUB_SERVER_HUB_HOST_ACK_GATE_H_
