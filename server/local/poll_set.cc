#include "server/local/poll_set.h"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace shmhub::server {

size_t PollSet::Add(int fd, short events) {
  fds_.push_back({fd, events, 0});
  return fds_.size() - 1;
}

absl::Status PollSet::Wait(absl::Time deadline, absl::Duration longest) {
  for (struct pollfd& entry : fds_) entry.revents = 0;
  // Rounded up, so the loop wakes at or after the deadline, never just before.
  const int timeout_ms = static_cast<int>(
      std::clamp<int64_t>(absl::ToInt64Milliseconds(deadline - absl::Now()) + 1, 0,
                          absl::ToInt64Milliseconds(longest)));
  if (::poll(fds_.data(), fds_.size(), timeout_ms) < 0 && errno != EINTR) {
    return absl::InternalError(absl::StrCat("poll failed: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace shmhub::server
