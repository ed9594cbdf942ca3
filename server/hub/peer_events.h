// Building the PeerEvents PeerHub publishes, and the log line for each.
//
// Thread safety: pure functions.
#ifndef SHMHUB_SERVER_PEER_EVENTS_H_
#define SHMHUB_SERVER_PEER_EVENTS_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/time/time.h"
#include "shm/peer_recovery.h"
#include "shmhub/v1/hub.pb.h"

namespace shmhub::server {

// An event about occupancy `epoch` of `peer_id` (0 for hub-wide events).
// The journal stamps sequence, time and instance id.
v1::PeerEvent MakePeerEvent(v1::EventKind kind, uint32_t peer_id, uint32_t epoch,
                            std::string reason = {});

// CRASHED named by `detector`. `heartbeat_age_ns` is unset when the guest
// had written no heartbeat.
v1::PeerEvent MakeCrashedEvent(uint32_t peer_id, uint32_t epoch, v1::Detector detector,
                               std::optional<uint64_t> heartbeat_age_ns, std::string reason);

// What format §14 reclaimed, as the API reports it; `duration` is how long
// the procedure took.
v1::RecoveryReport RecoveryReportToProto(const shm::RecoveryReport& report,
                                         absl::Duration duration);

// One line for the daemon's log, e.g.
// "peer 3 epoch 7: CRASHED by HEARTBEAT, heartbeat age 1.2s (reason)".
std::string DescribePeerEvent(const v1::PeerEvent& event);

}  // namespace shmhub::server

#endif  // SHMHUB_SERVER_PEER_EVENTS_H_
