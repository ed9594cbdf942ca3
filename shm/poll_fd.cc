#include "shm/poll_fd.h"

#include <poll.h>

#include <cerrno>
#include <climits>

#include "shm/shm_error.h"

namespace shmhub::shm {

Deadline DeadlineAfter(std::chrono::milliseconds timeout) {
  const Deadline now = std::chrono::steady_clock::now();
  if (timeout <= std::chrono::milliseconds::zero()) return now;
  if (timeout >= std::chrono::duration_cast<std::chrono::milliseconds>(Deadline::max() - now)) {
    return Deadline::max();
  }
  return now + timeout;
}

absl::StatusOr<short> PollFd(int fd, short events, Deadline deadline) {
  for (;;) {
    const Deadline now = std::chrono::steady_clock::now();
    int timeout_ms = 0;
    if (deadline > now) {
      // Round up: rounding down would wake just before the deadline and
      // spin through zero-timeout polls until it passes.
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - now);
      timeout_ms = left.count() > INT_MAX ? INT_MAX : static_cast<int>(left.count());
    }
    struct pollfd pfd = {fd, events, 0};
    const int n = ::poll(&pfd, 1, timeout_ms);
    if (n > 0) return pfd.revents;
    if (n == 0) {
      // poll's own timeout may be the INT_MAX clamp, not the deadline.
      if (std::chrono::steady_clock::now() >= deadline) return static_cast<short>(0);
      continue;
    }
    if (errno != EINTR) return ShmIoError("poll", errno);
  }
}

}  // namespace shmhub::shm
