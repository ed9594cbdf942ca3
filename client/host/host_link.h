// HostLink: the host application's end of one attached peer's ring pair
// (format §6–§9) — the RingLink that sends host->guest and receives
// guest->host for the occupancy (peer_id, epoch).
//
// Built from the host application's mapping of the segment (attached from
// the fd shmhubd sends at registration; it must outlive the link and every
// view), the peer's id and epoch as the daemon announced them, and, for a
// guest that bootstrapped over the daemon's local socket, duplicates of the
// host ends of its doorbell and mapping-control socket. Slots this side
// allocates for SLOT_REF payloads are owned by kHostPeerId (0), as §8.1 and
// the recovery procedure (§14 step 2) expect; received SLOT_REFs must name
// slots owned by the peer.
//
// Recovery handshake (client/host/host_app.h): on PEER_RECOVERING the host
// application calls Stop() (blocked and later calls fail with ABORTED and
// nothing of the link touches the rings again), waits until
// outstanding_views() is 0 (releasing a view then frees its slot but gives
// no ring bytes back), and only then acknowledges.
//
// Thread-safety: that of RingLink.
#ifndef SHMHUB_CLIENT_HOST_HOST_LINK_H_
#define SHMHUB_CLIENT_HOST_HOST_LINK_H_

#include <cstdint>
#include <memory>
#include <optional>

#include "absl/status/statusor.h"
#include "client/link/ring_link.h"
#include "shm/doorbell.h"
#include "shm/occupancy.h"
#include "shm/segment.h"
#include "shm/unique_fd.h"

namespace shmhub::client {

class HostLink {
 public:
  // `doorbell` is the host end (DoorbellEnd::kHost) or nullopt;
  // `mapping_control` the host end of the mapping-control socket or empty.
  // RingLink::Create's errors: INVALID_ARGUMENT for a peer id outside the
  // segment, FAILED_PRECONDITION when the entry does not hold `occupancy`
  // Attached.
  static absl::StatusOr<std::unique_ptr<RingLink>> Create(shm::Segment* segment,
                                                          const shm::Occupancy& occupancy,
                                                          std::optional<shm::Doorbell> doorbell,
                                                          shm::UniqueFd mapping_control,
                                                          LinkOptions options = {});

  HostLink() = delete;
};

}  // namespace shmhub::client

namespace shmhub {
using HostLink = client::HostLink;
}  // namespace shmhub

#endif  // SHMHUB_CLIENT_HOST_HOST_LINK_H_
