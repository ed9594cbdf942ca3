#include "shm/local_socket_client.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace shmhub::shm {

absl::StatusOr<UniqueFd> ConnectLocalSocket(const std::string& path, Deadline deadline) {
  struct sockaddr_un address {};
  if (path.size() >= sizeof(address.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("socket path ", path, " is too long"));
  }
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  while (true) {
    UniqueFd socket(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!socket.valid()) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
    if (::connect(socket.get(), reinterpret_cast<const struct sockaddr*>(&address),
                  sizeof(address)) == 0) {
      return socket;
    }
    const int err = errno;
    if ((err == EAGAIN || err == EINTR) && std::chrono::steady_clock::now() < deadline) {
      ::usleep(1000);
      continue;
    }
    return absl::UnavailableError(absl::StrCat("cannot connect to ", path, ": ",
                                               std::strerror(err),
                                               " (is shmhubd running with --socket=", path, "?)"));
  }
}

absl::Status SendAllBytes(int socket, absl::Span<const uint8_t> bytes) {
  while (!bytes.empty()) {
    const ssize_t sent = ::send(socket, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (sent < 0 && errno == EINTR) continue;
    if (sent <= 0) return absl::UnavailableError(absl::StrCat("send: ", std::strerror(errno)));
    bytes.remove_prefix(static_cast<size_t>(sent));
  }
  return absl::OkStatus();
}

}  // namespace shmhub::shm
