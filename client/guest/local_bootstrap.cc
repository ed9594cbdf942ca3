#include "client/guest/local_bootstrap.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "shm/bootstrap.h"
#include "shm/local_socket_client.h"
#include "shm/poll_fd.h"

namespace shmhub::client {

absl::StatusOr<BootstrappedSlot> BootstrapOverLocalSocket(const std::string& socket_path,
                                                          absl::Duration timeout) {
  const std::chrono::milliseconds budget(absl::ToInt64Milliseconds(timeout));
  const shm::Deadline deadline = shm::DeadlineAfter(budget);
  absl::StatusOr<shm::UniqueFd> socket = shm::ConnectLocalSocket(socket_path, deadline);
  if (!socket.ok()) return socket.status();
  const auto request = shm::EncodeVoxRequest();
  if (absl::Status sent = shm::SendAllBytes(socket->get(), request); !sent.ok()) {
    return absl::UnavailableError(
        absl::StrCat("sending the bootstrap request to ", socket_path, ": ", sent.message()));
  }
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
  absl::StatusOr<shm::ReceivedBootstrapResponse> received = shm::ReceiveBootstrapResponse(
      socket->get(), shm::BootstrapDialect::kVox, std::max(left, std::chrono::milliseconds(0)));
  if (!received.ok()) {
    return absl::Status(received.status().code(),
                        absl::StrCat("bootstrap over ", socket_path, ": ",
                                     received.status().message()));
  }
  if (received->response.status != shm::BootstrapStatus::kSuccess) {
    return absl::FailedPreconditionError(absl::StrCat(
        "shmhubd at ", socket_path, " refused the guest: ", received->response.payload));
  }
  // §11.1 order: doorbell, segment, mapping-control receive, send.
  std::vector<shm::UniqueFd>& fds = received->fds;
  absl::StatusOr<std::unique_ptr<shm::Segment>> segment = shm::Segment::AttachFd(fds[1].get());
  if (!segment.ok()) {
    return absl::Status(segment.status().code(),
                        absl::StrCat("mapping the segment shmhubd sent (",
                                     received->response.payload, "): ", segment.status().message()));
  }
  BootstrappedSlot slot;
  slot.peer_id = received->response.peer_id;
  slot.segment_path = received->response.payload;
  slot.segment = *std::move(segment);
  slot.channels.doorbell = shm::Doorbell(shm::DoorbellEnd::kGuest, std::move(fds[0]));
  slot.channels.mapping_control_receive = std::move(fds[2]);
  slot.channels.mapping_control_send = std::move(fds[3]);
  return slot;
}

}  // namespace shmhub::client
