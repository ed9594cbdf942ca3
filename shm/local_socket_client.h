// The client side of shmhubd's local Unix socket (format §11): connecting
// and writing a request, shared by guests (VSH1 bootstrap) and the host
// application (SHH1 registration).
//
// The socket is close-on-exec: a child holding a copy of a connection (or
// of the fds that come over it) would hide our death from the daemon, which
// watches hang-ups. Thread-safe (no state).
#ifndef SHMHUB_SHM_LOCAL_SOCKET_CLIENT_H_
#define SHMHUB_SHM_LOCAL_SOCKET_CLIENT_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "shm/poll_fd.h"
#include "shm/unique_fd.h"

namespace shmhub::shm {

// A blocking AF_UNIX stream connection to `path`. A Unix connect completes
// at once or fails with EAGAIN when the listener's backlog is full; that is
// retried every millisecond until `deadline`. INVALID_ARGUMENT for a path
// too long for sun_path; UNAVAILABLE (naming --socket) when nothing accepts
// there.
absl::StatusOr<UniqueFd> ConnectLocalSocket(const std::string& path, Deadline deadline);

// Writes all of `bytes` (MSG_NOSIGNAL, EINTR retried). UNAVAILABLE when the
// other end is gone.
absl::Status SendAllBytes(int socket, absl::Span<const uint8_t> bytes);

}  // namespace shmhub::shm

#endif  // SHMHUB_SHM_LOCAL_SOCKET_CLIENT_H_
