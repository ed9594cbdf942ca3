#include "client/guest/guest_link.h"

#include <optional>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace shmhub::client {

absl::StatusOr<std::unique_ptr<RingLink>> GuestLink::Create(Guest& guest, LinkOptions options) {
  shm::Segment* segment = guest.segment();
  if (segment == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "guest link of peer ", guest.peer_id(), ": the guest has already said Goodbye"));
  }
  absl::StatusOr<std::optional<LocalChannels>> channels = guest.DupLocalChannels();
  if (!channels.ok()) return channels.status();
  LinkEndpoints endpoints;
  endpoints.segment = segment;
  endpoints.peer_id = guest.peer_id();
  endpoints.epoch = guest.epoch();
  endpoints.side = LinkSide::kGuest;
  if (channels->has_value()) {
    endpoints.doorbell = std::move((*channels)->doorbell);
    endpoints.mapping_control = std::move((*channels)->mapping_control_receive);
  }
  return RingLink::Create(std::move(endpoints), options);
}

}  // namespace shmhub::client
