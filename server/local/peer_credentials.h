// PeerCredentials: who is on the other end of a connected local socket, as
// the kernel vouches for it, and a pidfd to learn when that process exits
// (format §13, the process-exit detector).
//
// The pidfd is taken while the peer is still connected, so it cannot name a
// recycled pid: SO_PEERPIDFD (Linux 6.5+) hands it over directly and works
// across PID namespaces; on older kernels pidfd_open() on SO_PEERCRED's pid
// does, but only when that pid is visible in our namespace (SO_PEERCRED
// reports 0 across namespaces, and then there is no pidfd).
//
// Thread safety: a value type; one owner.
#ifndef SHMHUB_SERVER_LOCAL_PEER_CREDENTIALS_H_
#define SHMHUB_SERVER_LOCAL_PEER_CREDENTIALS_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "shm/unique_fd.h"

namespace shmhub::server {

struct PeerCredentials {
  uint32_t pid = 0;  // in our PID namespace; 0 when the peer's is not visible
  uint32_t uid = 0;
  uint32_t gid = 0;
  // /proc/<pid>/stat's start time (field 22), which with the pid names the
  // process for good; 0 when unknown.
  uint64_t start_time = 0;
  shm::UniqueFd pidfd;  // invalid when the kernel could give none

  // "pid 123 uid 1000" (or "pid unknown uid 1000"), for logs and owners.
  std::string Describe() const;
};

// SO_PEERCRED, then SO_PEERPIDFD or pidfd_open. INTERNAL when the socket
// has no credentials (it is not a connected Unix socket); a missing pidfd
// is not an error.
absl::StatusOr<PeerCredentials> ReadPeerCredentials(int connected_socket);

// /proc/<pid>/stat's start time, in clock ticks since boot; nothing when the
// process is not visible.
std::optional<uint64_t> ProcessStartTime(uint32_t pid);
// A pidfd of `pid` if that pid still names the process that started at
// `start_time` (a guest recorded by an earlier daemon); NOT_FOUND saying
// why not (it exited, or the pid now names another process).
absl::StatusOr<shm::UniqueFd> OpenProcessIfStillIt(uint32_t pid, uint64_t start_time);

}  // namespace shmhub::server

#endif  // SHMHUB_SERVER_LOCAL_PEER_CREDENTIALS_H_
