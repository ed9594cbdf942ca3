#include "server/hub/slot_state.h"

#include <optional>
#include <string>

#include "server/base/proto_time.h"

namespace shmhub::server {

state::v1::Slot SlotToState(const SlotRecord& record, uint32_t epoch_floor) {
  state::v1::Slot slot;
  slot.set_peer_id(record.peer_id);
  slot.set_state(record.state);
  slot.set_epoch(record.epoch);
  slot.set_epoch_floor(epoch_floor);
  slot.set_raw_state(record.raw_state);
  if (record.reservation.has_value()) {
    const SlotReservation& r = *record.reservation;
    state::v1::Reservation* out = slot.mutable_reservation();
    out->set_owner(r.owner);
    out->mutable_labels()->insert(r.labels.begin(), r.labels.end());
    out->set_request_id(r.request_id);
    *out->mutable_lease_ttl() = ToProtoDuration(r.lease_ttl);
    *out->mutable_lease_expires_at() = ToProtoTimestamp(r.lease_expires_at);
    out->set_lease_deadline_ns(r.lease_deadline_ns);
  }
  slot.set_pid(record.pid);
  slot.set_pid_start_time(record.pid_start_time);
  slot.set_process_watched(record.process_watched);
  slot.set_doorbell_watched(record.doorbell_watched);
  slot.set_last_detector(record.last_detector);
  // state_since is left unset: its wall-clock second changes nothing a
  // successor needs, and leaving it out keeps unchanged slots unwritten.
  return slot;
}

void RestoreSlot(const state::v1::Slot& slot, SlotRecord* record) {
  if (!v1::PeerState_IsValid(slot.state())) return;
  record->state = slot.state();
  record->epoch = slot.epoch();
  record->raw_state = slot.raw_state();
  record->reservation.reset();
  if (slot.has_reservation()) {
    const state::v1::Reservation& r = slot.reservation();
    const std::optional<absl::Duration> ttl = FromProtoDuration(r.lease_ttl());
    const std::optional<absl::Time> expires = FromProtoTimestamp(r.lease_expires_at());
    if (ttl.has_value() && expires.has_value()) {
      record->reservation = SlotReservation{
          .owner = r.owner(),
          .labels = {r.labels().begin(), r.labels().end()},
          .request_id = r.request_id(),
          .lease_ttl = *ttl,
          .lease_expires_at = *expires,
          .lease_deadline_ns = r.lease_deadline_ns(),
      };
    }
  }
  record->pid = slot.pid();
  record->pid_start_time = slot.pid_start_time();
  record->process_watched = slot.process_watched();
  record->doorbell_watched = slot.doorbell_watched();
  if (v1::Detector_IsValid(slot.last_detector())) record->last_detector = slot.last_detector();
}

}  // namespace shmhub::server
