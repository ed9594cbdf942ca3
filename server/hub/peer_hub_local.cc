// PeerHub's side of the local socket: reservations for guests that
// bootstrap over it, and what happens when their doorbell hangs up or their
// process exits (format §11, §13; LocalSocketServer watches the fds).
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/base/log.h"
#include "server/base/monotonic_clock.h"
#include "server/base/shutting_down.h"
#include "server/hub/peer_events.h"
#include "server/hub/peer_hub.h"

namespace shmhub::server {
namespace {

std::string DescribePid(uint32_t pid) {
  return pid == 0 ? std::string("its process (pid not visible here)") : absl::StrCat("pid ", pid);
}

}  // namespace

absl::StatusOr<Reservation> PeerHub::ReserveForLocalGuest(const LocalGuest& guest) {
  std::optional<Reservation> granted;
  if (guest.session_id.empty()) {
    ReserveRequest request;
    request.lease_ttl = config_.default_lease_ttl;
    request.owner = "local-socket";
    request.labels = {{"pid", absl::StrCat(guest.pid)}, {"uid", absl::StrCat(guest.uid)}};
    absl::StatusOr<Reservation> reservation = Reserve(request);
    if (!reservation.ok()) return reservation.status();
    granted = *reservation;
  }
  MutationLock lock(this);
  if (shutting_down_) return StoppedError();
  SlotRecord* record = nullptr;
  if (granted.has_value()) {
    record = FindRecord(granted->peer_id);
  } else {
    record = FindByRequestId(guest.session_id);
    if (record == nullptr) {
      return absl::NotFoundError(
          absl::StrCat("no reservation has request id \"", guest.session_id,
                       "\"; reserve one with ReservePeer first (the RSH0 session id is the "
                       "ReservePeer request_id)"));
    }
    if (record->state != v1::PEER_STATE_RESERVED) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the reservation with request id \"", guest.session_id, "\" (peer ", record->peer_id,
          ") is no longer Reserved; a guest has claimed it or it is being recovered"));
    }
    granted = Reservation{.peer_id = record->peer_id,
                          .epoch = record->epoch,
                          .lease_expires_at = record->reservation->lease_expires_at,
                          .replayed = false};
  }
  // A scan between Reserve and here may have moved the slot on (it cannot
  // in practice: the lease is far longer), and then there is nothing to arm.
  if (record == nullptr || !record->Holds(granted->occupancy()) ||
      record->state != v1::PEER_STATE_RESERVED) {
    return absl::AbortedError(absl::StrCat("peer ", granted->peer_id,
                                           " changed while it was being reserved; try again"));
  }
  record->doorbell_watched = true;
  record->process_watched = guest.process_watched;
  record->pid = guest.pid;
  record->pid_start_time = guest.pid_start_time;
  return *granted;
}

void PeerHub::OnLocalGuestGone(const shm::Occupancy& occupancy, v1::Detector detector,
                               absl::Duration since) {
  const uint32_t peer_id = occupancy.peer_id;
  const uint32_t epoch = occupancy.epoch;
  MutationLock lock(this);
  if (shutting_down_) return;
  SlotRecord* record = FindHolder(occupancy);
  if (record == nullptr) return;
  const uint64_t now_ns = MonotonicNowNs();
  // Publish whatever the guest did before it went (claimed, left in order)
  // as the scan would, so the event names what really happened.
  ScanSlot(*record, now_ns);
  if (!record->Holds(occupancy)) return;
  const std::string who = DescribePid(record->pid);
  const std::string evidence =
      detector == v1::DETECTOR_DOORBELL
          ? std::string("doorbell hung up: every copy of the guest end is closed")
          : absl::StrCat(who, " exited");
  switch (record->state) {
    case v1::PEER_STATE_RESERVED: {
      shm::PeerEntryView entry = EntryOf(peer_id);
      if (!entry.ReleaseFenced(epoch).ok()) return;  // the next scan reconciles
      Publish(MakePeerEvent(v1::EVENT_KIND_RELEASED, occupancy,
                            absl::StrCat("the local guest (", who, ") left before claiming: ",
                                         evidence)));
      metrics_->CountReservation(ReservationOutcome::kReleased);
      record->BecomeEmpty(epoch, absl::Now());
      return;
    }
    case v1::PEER_STATE_ATTACHED: {
      const uint64_t heartbeat = EntryOf(peer_id).LastHeartbeat();
      // The kernel reported the exit `since` ago: that is the detection
      // latency shmhub_crash_detection_seconds measures.
      CrashAndRecover(*record, detector,
                      heartbeat == 0 ? std::nullopt : std::optional(ElapsedNs(heartbeat, now_ns)),
                      since, evidence);
      return;
    }
    default:
      return;  // Goodbye or Corrupt: its recovery is already under way
  }
}

std::vector<PeerHub::AdoptedLocalGuest> PeerHub::AdoptedLocalGuests() const {
  absl::MutexLock lock(&mu_);
  std::vector<AdoptedLocalGuest> guests;
  for (const SlotRecord& record : slots_) {
    if (record.occupied() && record.FoundAtAdoption() && record.pid != 0 &&
        record.pid_start_time != 0) {
      guests.push_back({record.occupancy(), record.pid, record.pid_start_time});
    }
  }
  return guests;
}

void PeerHub::RearmProcessDetector(const shm::Occupancy& occupancy) {
  MutationLock lock(this);
  if (SlotRecord* record = FindHolder(occupancy); record != nullptr) record->process_watched = true;
}

bool PeerHub::IsCurrentOccupancy(const shm::Occupancy& occupancy) const {
  absl::MutexLock lock(&mu_);
  const SlotRecord* record = FindRecord(occupancy.peer_id);
  return record != nullptr && record->Holds(occupancy);
}

}  // namespace shmhub::server
