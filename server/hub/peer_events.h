// Building the PeerEvents PeerHub publishes, and the log line for each.
//
// Thread safety: pure functions.
#ifndef SHMHUB_SERVER_HUB_PEER_EVENTS_H_
#define SHMHUB_SERVER_HUB_PEER_EVENTS_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/time/time.h"
#include "shm/occupancy.h"
#include "shm/peer_recovery.h"
#include "shmhub/v1/hub.pb.h"

namespace shmhub::server {

// An event about `occupancy`. The journal stamps sequence, time and
// instance id.
v1::PeerEvent MakePeerEvent(v1::EventKind kind, const shm::Occupancy& occupancy,
                            std::string reason = {});
// A hub-wide event (HOST_*): peer id and epoch 0.
v1::PeerEvent MakeHubEvent(v1::EventKind kind, std::string reason = {});

// CRASHED named by `detector`. `heartbeat_age_ns` is unset when the guest
// had written no heartbeat.
v1::PeerEvent MakeCrashedEvent(const shm::Occupancy& occupancy, v1::Detector detector,
                               std::optional<uint64_t> heartbeat_age_ns, std::string reason);

// What format §14 reclaimed, as the API reports it; `duration` is how long
// the procedure took.
v1::RecoveryReport RecoveryReportToProto(const shm::RecoveryReport& report,
                                         absl::Duration duration);

// One line for the daemon's log, e.g.
// "peer 3 epoch 7: CRASHED by HEARTBEAT, heartbeat age 1.2s (reason)".
std::string DescribePeerEvent(const v1::PeerEvent& event);

}  // namespace shmhub::server

#endif  // SHMHUB_SERVER_HUB_PEER_EVENTS_H_
