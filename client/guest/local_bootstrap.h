// LocalBootstrap: a guest's side of shmhubd's local socket (format §11.1).
//
// The guest connects, sends "VSH1" and receives, in one response, its peer
// id and four fds: its doorbell end, the segment file, and the mapping-
// control socket twice (receive, send). The daemon has already reserved the
// slot for this connection; the guest maps the segment from the fd (no
// path lookup, so it works from another mount namespace) and then claims
// the Reserved entry. Holding the doorbell end is what lets the daemon see
// the guest die the moment its process does: keep it open for as long as
// the slot is held, and never let a child inherit it (it is close-on-exec).
//
// Thread safety: a function; the result has one owner.
#ifndef SHMHUB_CLIENT_GUEST_LOCAL_BOOTSTRAP_H_
#define SHMHUB_CLIENT_GUEST_LOCAL_BOOTSTRAP_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "shm/doorbell.h"
#include "shm/segment.h"
#include "shm/unique_fd.h"

namespace shmhub::client {

// The sockets a bootstrapped guest shares with the daemon.
struct LocalChannels {
  shm::Doorbell doorbell{shm::DoorbellEnd::kGuest, shm::UniqueFd()};
  shm::UniqueFd mapping_control_receive;
  shm::UniqueFd mapping_control_send;
};

struct BootstrappedSlot {
  uint32_t peer_id = 0;
  std::string segment_path;  // as the daemon reported it, for messages
  std::unique_ptr<shm::Segment> segment;
  LocalChannels channels;
};

// Everything (connect, request, response, mapping) within `timeout`.
// Errors: UNAVAILABLE when nothing listens at `socket_path` (is shmhubd
// running with this --socket?); the daemon's own refusal (no free slot,
// shutting down) as FAILED_PRECONDITION with its message; the shm/
// bootstrap and segment errors otherwise.
absl::StatusOr<BootstrappedSlot> BootstrapOverLocalSocket(const std::string& socket_path,
                                                          absl::Duration timeout);

}  // namespace shmhub::client

#endif  // SHMHUB_CLIENT_GUEST_LOCAL_BOOTSTRAP_H_
