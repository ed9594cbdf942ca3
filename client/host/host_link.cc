#include "client/host/host_link.h"

#include <utility>

namespace shmhub::client {

absl::StatusOr<std::unique_ptr<RingLink>> HostLink::Create(shm::Segment* segment,
                                                           const shm::Occupancy& occupancy,
                                                           std::optional<shm::Doorbell> doorbell,
                                                           shm::UniqueFd mapping_control,
                                                           LinkOptions options) {
  LinkEndpoints endpoints;
  endpoints.segment = segment;
  endpoints.peer_id = occupancy.peer_id;
  endpoints.epoch = occupancy.epoch;
  endpoints.side = LinkSide::kHost;
  endpoints.doorbell = std::move(doorbell);
  endpoints.mapping_control = std::move(mapping_control);
  return RingLink::Create(std::move(endpoints), options);
}

}  // namespace shmhub::client
