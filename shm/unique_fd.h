// UniqueFd: sole ownership of one file descriptor, closed on destruction.
//
// Move-only, like std::unique_ptr. Every descriptor shm/ creates or receives
// is held in one of these from the moment it exists, so no error path can
// leak it (§17.2 D-11: fds are closed on every error path). Not thread-safe:
// one owner at a time; the descriptor itself may be used from several
// threads as the kernel allows.
#ifndef SHMHUB_SHM_UNIQUE_FD_H_
#define SHMHUB_SHM_UNIQUE_FD_H_

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "absl/status/statusor.h"
#include "shm/shm_error.h"

namespace shmhub::shm {

class UniqueFd {
 public:
  UniqueFd() = default;
  // Takes ownership of `fd` (-1 for none).
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { Reset(); }

  UniqueFd(UniqueFd&& other) noexcept : fd_(other.Release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) Reset(other.Release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }

  // Gives up ownership without closing; returns the descriptor (or -1).
  int Release() { return std::exchange(fd_, -1); }

  // Closes the current descriptor, if any, and takes ownership of `fd`.
  // close() is not retried on EINTR: on Linux the descriptor is released
  // even then, and a retry could close a number another thread reused.
  void Reset(int fd = -1) {
    const int old = std::exchange(fd_, fd);
    if (old >= 0) ::close(old);
  }

 private:
  int fd_ = -1;
};

// A close-on-exec duplicate of `fd` (F_DUPFD_CLOEXEC), for handing one
// socket out as two handles (§9.2: separate send and receive fds).
inline absl::StatusOr<UniqueFd> DupCloexec(int fd) {
  const int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) return ShmIoError("fcntl(F_DUPFD_CLOEXEC)", errno);
  return UniqueFd(copy);
}

}  // namespace shmhub::shm

#endif  // SHMHUB_SHM_UNIQUE_FD_H_
