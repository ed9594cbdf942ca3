// The API's view of one peer slot (v1::Peer): the state the hub has
// published, from its SlotRecord, plus readings taken from the segment when
// the view is built (heartbeat and its age, staleness, ring occupancy).
//
// Thread safety: the caller holds whatever guards `record`; the segment
// readings are lock-free loads of shared words, untrusted and only reported.
#ifndef SHMHUB_SERVER_HUB_PEER_VIEW_H_
#define SHMHUB_SERVER_HUB_PEER_VIEW_H_

#include <cstdint>

#include "server/hub/slot_record.h"
#include "shm/segment.h"
#include "shmhub/v1/hub.pb.h"

namespace shmhub::server {

// `now_ns` is CLOCK_MONOTONIC; `segment` is the host's segment, whose
// max_guests covers record.peer_id.
v1::Peer BuildPeerView(const SlotRecord& record, const shm::Segment& segment, uint64_t now_ns);

// Bytes committed and not yet consumed in each of a peer's rings. The ring
// words are guest-writable; each value is clamped to the ring's trusted
// capacity (BipBuffer::Occupancy), so a hostile header yields a number in
// [0, capacity], never garbage. Zero for both when `peer_id` is outside
// 1..segment.layout().max_guests.
struct RingOccupancy {
  uint32_t guest_to_host = 0;
  uint32_t host_to_guest = 0;
};
RingOccupancy ReadRingOccupancy(const shm::Segment& segment, uint32_t peer_id);

}  // namespace shmhub::server

#endif  // SHMHUB_SERVER_HUB_PEER_VIEW_H_
