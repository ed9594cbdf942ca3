#include "server/local/peer_credentials.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

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
  if (credentials.pid != 0) credentials.start_time = ProcessStartTime(credentials.pid).value_or(0);
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

std::optional<uint64_t> ProcessStartTime(uint32_t pid) {
  const std::string path = absl::StrCat("/proc/", pid, "/stat");
  shm::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return std::nullopt;
  char buffer[1024];
  const ssize_t n = ::read(fd.get(), buffer, sizeof(buffer) - 1);
  if (n <= 0) return std::nullopt;
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so
  // the fields start after the last ')'. Field 22 is the 20th after it.
  const absl::string_view stat(buffer, static_cast<size_t>(n));
  const size_t close = stat.rfind(')');
  if (close == absl::string_view::npos) return std::nullopt;
  std::vector<absl::string_view> fields =
      absl::StrSplit(stat.substr(close + 1), ' ', absl::SkipEmpty());
  uint64_t start_time = 0;
  if (fields.size() < 20 || !absl::SimpleAtoi(fields[19], &start_time)) return std::nullopt;
  return start_time;
}

absl::StatusOr<shm::UniqueFd> OpenProcessIfStillIt(uint32_t pid, uint64_t start_time) {
  shm::UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, static_cast<pid_t>(pid), 0)));
  if (!pidfd.valid()) {
    return absl::NotFoundError(absl::StrCat("pid ", pid, " is gone (", std::strerror(errno), ")"));
  }
  // Checked after the pidfd is open: it names the process that had the pid
  // then, and the start time says whether that is still the guest.
  const std::optional<uint64_t> now = ProcessStartTime(pid);
  if (!now.has_value() || *now != start_time) {
    return absl::NotFoundError(absl::StrCat("pid ", pid, " is another process now (start time ",
                                            now.value_or(0), ", the guest's was ", start_time,
                                            ")"));
  }
  return pidfd;
}

}  // namespace shmhub::server
