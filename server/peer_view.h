// The API's view of one peer slot (v1::Peer): the state the hub has
// published, from its SlotRecord, plus readings taken from the segment when
// the view is built (heartbeat and its age, staleness, ring occupancy).
//
// Thread safety: the caller holds whatever guards `record`; the segment
// readings are lock-free loads of shared words, untrusted and only reported.
#ifndef SHMHUB_SERVER_PEER_VIEW_H_
#define SHMHUB_SERVER_PEER_VIEW_H_

#include <cstdint>

#include "server/slot_record.h"
#include "shm/segment.h"
#include "shmhub/v1/hub.pb.h"

namespace shmhub::server {

// `now_ns` is CLOCK_MONOTONIC; `segment` is the host's segment, whose
// max_guests covers record.peer_id.
v1::Peer BuildPeerView(const SlotRecord& record, const shm::Segment& segment, uint64_t now_ns);

}  // namespace shmhub::server

#endif  // SHMHUB_SERVER_PEER_VIEW_H_
