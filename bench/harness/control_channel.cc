#include "bench/harness/control_channel.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace shmhub::bench {
namespace {

absl::Status Errno(absl::string_view what) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(errno)));
}

}  // namespace

absl::Status ControlEnd::Send(absl::string_view message) const {
  if (message.size() > kMaxMessage) {
    return absl::InvalidArgumentError(absl::StrCat("control message of ", message.size(), " bytes"));
  }
  const uint32_t len = static_cast<uint32_t>(message.size());
  char buf[sizeof(len) + kMaxMessage];
  std::memcpy(buf, &len, sizeof(len));  // the format is little-endian; so is x86
  std::memcpy(buf + sizeof(len), message.data(), message.size());
  const size_t total = sizeof(len) + message.size();
  for (;;) {
    const ssize_t n = ::write(write_.get(), buf, total);
    if (n == static_cast<ssize_t>(total)) return absl::OkStatus();
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EPIPE) return absl::UnavailableError("control peer gone");
    if (n < 0) return Errno("write(control)");
    // Below PIPE_BUF a pipe write is all or nothing, so a short one is a bug.
    return absl::InternalError(absl::StrCat("short control write: ", n, " of ", total));
  }
}

absl::Status ControlEnd::ReadExactly(char* dst, size_t n, shm::Deadline deadline) const {
  size_t done = 0;
  while (done < n) {
    absl::StatusOr<short> revents = shm::PollFd(read_.get(), POLLIN, deadline);
    if (!revents.ok()) return revents.status();
    if (*revents == 0) return absl::DeadlineExceededError("no control message before the deadline");
    const ssize_t got = ::read(read_.get(), dst + done, n - done);
    if (got == 0) return absl::UnavailableError("control peer closed its end");
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return Errno("read(control)");
    done += static_cast<size_t>(got);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ControlEnd::Receive(shm::Deadline deadline) const {
  uint32_t len = 0;
  char len_bytes[sizeof(len)];
  if (absl::Status s = ReadExactly(len_bytes, sizeof(len_bytes), deadline); !s.ok()) return s;
  std::memcpy(&len, len_bytes, sizeof(len));
  if (len > kMaxMessage) return absl::DataLossError(absl::StrCat("control length ", len));
  std::string message(len, '\0');
  if (absl::Status s = ReadExactly(message.data(), len, deadline); !s.ok()) return s;
  return message;
}

absl::StatusOr<ControlChannel> ControlChannel::Create() {
  ControlChannel channel;
  int to_child[2];
  int to_parent[2];
  if (::pipe2(to_child, O_CLOEXEC) != 0) return Errno("pipe2");
  channel.to_child_read_.Reset(to_child[0]);
  channel.to_child_write_.Reset(to_child[1]);
  if (::pipe2(to_parent, O_CLOEXEC) != 0) return Errno("pipe2");
  channel.to_parent_read_.Reset(to_parent[0]);
  channel.to_parent_write_.Reset(to_parent[1]);
  return channel;
}

ControlEnd ControlChannel::ParentEnd() {
  to_child_read_.Reset();
  to_parent_write_.Reset();
  return ControlEnd(std::move(to_parent_read_), std::move(to_child_write_));
}

ControlEnd ControlChannel::ChildEnd() {
  to_child_write_.Reset();
  to_parent_read_.Reset();
  return ControlEnd(std::move(to_child_read_), std::move(to_parent_write_));
}

}  // namespace shmhub::bench
