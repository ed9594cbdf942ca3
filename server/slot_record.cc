#include "server/slot_record.h"

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
  unconfirmed.reset();
  failed_recoveries = 0;
}

std::vector<v1::Detector> SlotRecord::ArmedDetectors() const {
  // The doorbell and process-exit detectors arrive with the local socket;
  // until then the heartbeat is the only one that can be armed.
  std::vector<v1::Detector> armed;
  if (state == v1::PEER_STATE_ATTACHED && heartbeat_armed) armed.push_back(v1::DETECTOR_HEARTBEAT);
  return armed;
}

}  // namespace shmhub::server
