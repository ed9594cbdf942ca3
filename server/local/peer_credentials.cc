#include "server/local/peer_credentials.h"

#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

// Debian 12's headers predate SO_PEERPIDFD; the value is the kernel's ABI
// (asm-generic/socket.h) and older kernels answer ENOPROTOOPT.
#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

namespace shmhub::server {

std::string PeerCredentials::Describe() const {
  return absl::StrCat("pid ", pid == 0 ? std::string("unknown") : absl::StrCat(pid), " uid ", uid);
}

absl::StatusOr<PeerCredentials> ReadPeerCredentials(int connected_socket) {
  struct ucred cred {};
  socklen_t length = sizeof(cred);
  if (::getsockopt(connected_socket, SOL_SOCKET, SO_PEERCRED, &cred, &length) != 0) {
    return absl::InternalError(absl::StrCat("SO_PEERCRED: ", std::strerror(errno)));
  }
  PeerCredentials credentials;
  credentials.pid = cred.pid > 0 ? static_cast<uint32_t>(cred.pid) : 0;
  credentials.uid = cred.uid;
  credentials.gid = cred.gid;

  int pidfd = -1;
  length = sizeof(pidfd);
  if (::getsockopt(connected_socket, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &length) == 0 &&
      pidfd >= 0) {
    credentials.pidfd = shm::UniqueFd(pidfd);
  } else if (credentials.pid != 0) {
    // Through syscall(): Debian 12's <sys/pidfd.h> declares pidfd_open
    // without C linkage. Its fds are close-on-exec by definition.
    credentials.pidfd = shm::UniqueFd(
        static_cast<int>(::syscall(SYS_pidfd_open, static_cast<pid_t>(credentials.pid), 0)));
  }
  return credentials;
}

}  // namespace shmhub::server
