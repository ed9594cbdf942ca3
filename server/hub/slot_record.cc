#include "server/hub/slot_record.h"

namespace shmhub::server {

SlotRecord::SlotRecord(uint32_t id, uint32_t initial_epoch, absl::Time now)
    : peer_id(id), epoch(initial_epoch), state_since(now) {}

void SlotRecord::Enter(v1::PeerState new_state, absl::Time now) {
  state = new_state;
  state_since = now;
}

void SlotRecord::BecomeEmpty(uint32_t new_epoch, absl::Time now) {
  BeginOccupancy(v1::PEER_STATE_EMPTY, new_epoch, now);
}

void SlotRecord::BeginOccupancy(v1::PeerState new_state, uint32_t new_epoch, absl::Time now) {
  Enter(new_state, now);
  epoch = new_epoch;
  raw_state = 0;
  reservation.reset();
  attach_seen_ns = 0;
  heartbeat_armed = false;
  heartbeat_seen = false;
  stale = false;
  doorbell_watched = false;
  process_watched = false;
  pid = 0;
  pid_start_time = 0;
  heartbeat_crash_deferred = false;
  unconfirmed.reset();
  failed_recoveries = 0;
}

std::vector<v1::Detector> SlotRecord::ArmedDetectors() const {
  std::vector<v1::Detector> armed;
  if (state != v1::PEER_STATE_ATTACHED) return armed;
  if (heartbeat_armed) armed.push_back(v1::DETECTOR_HEARTBEAT);
  if (doorbell_watched) armed.push_back(v1::DETECTOR_DOORBELL);
  if (process_watched) armed.push_back(v1::DETECTOR_PROCESS_EXIT);
  return armed;
}

}  // namespace shmhub::server
