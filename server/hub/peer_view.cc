#include "server/hub/peer_view.h"

#include "absl/time/time.h"
#include "server/base/monotonic_clock.h"
#include "server/base/proto_time.h"
#include "shm/peer_table.h"

namespace shmhub::server {

v1::Peer BuildPeerView(const SlotRecord& record, const shm::Segment& segment, uint64_t now_ns) {
  v1::Peer peer;
  peer.set_peer_id(record.peer_id);
  peer.set_epoch(record.epoch);
  peer.set_state(record.state);
  if (record.state == v1::PEER_STATE_CORRUPT) peer.set_raw_state(record.raw_state);
  *peer.mutable_state_since() = ToProtoTimestamp(record.state_since);
  peer.set_last_detector(record.last_detector);

  const shm::PeerEntryView entry = *segment.peers().Entry(record.peer_id);
  const uint64_t last_heartbeat = entry.LastHeartbeat();
  peer.set_last_heartbeat_ns(last_heartbeat);
  if (last_heartbeat != 0) {
    *peer.mutable_heartbeat_age() =
        ToProtoDuration(absl::Nanoseconds(ElapsedNs(last_heartbeat, now_ns)));
  }
  const std::vector<v1::Detector> armed = record.ArmedDetectors();
  for (const v1::Detector detector : armed) peer.add_armed_detectors(detector);
  peer.set_unmonitored(record.state == v1::PEER_STATE_ATTACHED && armed.empty());
  // The format's rule applies only once the detector is armed: a guest that
  // never heartbeats is not stale, just unmonitored.
  peer.set_stale(record.state == v1::PEER_STATE_ATTACHED && record.heartbeat_seen &&
                 entry.IsHeartbeatStale(now_ns, segment.heartbeat_interval_ns()));

  const RingOccupancy rings = ReadRingOccupancy(segment, record.peer_id);
  peer.set_guest_to_host_used_bytes(rings.guest_to_host);
  peer.set_host_to_guest_used_bytes(rings.host_to_guest);

  if (record.reservation.has_value()) {
    const SlotReservation& reservation = *record.reservation;
    peer.set_owner(reservation.owner);
    peer.mutable_labels()->insert(reservation.labels.begin(), reservation.labels.end());
    if (record.state == v1::PEER_STATE_RESERVED) {
      *peer.mutable_lease_expires_at() = ToProtoTimestamp(reservation.lease_expires_at);
    }
  }
  // Known only for guests that bootstrapped over the local socket.
  peer.set_pid(record.pid);
  return peer;
}

RingOccupancy ReadRingOccupancy(const shm::Segment& segment, uint32_t peer_id) {
  if (peer_id == 0 || peer_id > segment.layout().max_guests) return RingOccupancy{};
  const uint32_t index = peer_id - 1;
  return RingOccupancy{.guest_to_host = segment.GuestToHostRing(index).Occupancy(),
                       .host_to_guest = segment.HostToGuestRing(index).Occupancy()};
}

}  // namespace shmhub::server
