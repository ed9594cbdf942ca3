#include "bench/harness/stream_frames.h"

#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace shmhub::bench {
namespace {

constexpr size_t kLengthPrefix = sizeof(uint32_t);

absl::Status Errno(absl::string_view what, int err) {
  if (err == EAGAIN || err == EWOULDBLOCK) {
    return absl::DeadlineExceededError(absl::StrCat(what, ": socket timeout"));
  }
  if (err == EPIPE || err == ECONNRESET) {
    return absl::UnavailableError(absl::StrCat(what, ": peer gone"));
  }
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(err)));
}

absl::Status SetTimeout(int fd, int option, std::chrono::milliseconds timeout) {
  struct timeval tv;
  tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
  if (::setsockopt(fd, SOL_SOCKET, option, &tv, sizeof(tv)) != 0) {
    return Errno("setsockopt(timeout)", errno);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::pair<shm::UniqueFd, shm::UniqueFd>> CreateStreamPair(
    std::chrono::milliseconds timeout) {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    return Errno("socketpair", errno);
  }
  std::pair<shm::UniqueFd, shm::UniqueFd> pair{shm::UniqueFd(fds[0]), shm::UniqueFd(fds[1])};
  for (int fd : {fds[0], fds[1]}) {
    if (absl::Status s = SetTimeout(fd, SO_SNDTIMEO, timeout); !s.ok()) return s;
    if (absl::Status s = SetTimeout(fd, SO_RCVTIMEO, timeout); !s.ok()) return s;
  }
  return pair;
}

int SendBufferBytes(int fd) {
  int value = 0;
  socklen_t len = sizeof(value);
  if (::getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &value, &len) != 0) return 0;
  return value;
}

absl::Status StreamFrameWriter::Write(absl::Span<const uint8_t> payload) {
  // The x86 byte order is the wire's little-endian order.
  const uint32_t len = static_cast<uint32_t>(payload.size());
  uint8_t prefix[kLengthPrefix];
  std::memcpy(prefix, &len, sizeof(len));
  struct iovec iov[2] = {
      {prefix, kLengthPrefix},
      {const_cast<uint8_t*>(payload.data()), payload.size()},
  };
  struct iovec* next = iov;
  int count = 2;
  while (count > 0) {
    const ssize_t n = ::writev(fd_, next, count);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno("writev", errno);
    }
    // Skip what the kernel took, possibly part of one iovec.
    size_t written = static_cast<size_t>(n);
    while (count > 0 && written >= next->iov_len) {
      written -= next->iov_len;
      ++next;
      --count;
    }
    if (count > 0) {
      next->iov_base = static_cast<uint8_t*>(next->iov_base) + written;
      next->iov_len -= written;
    }
  }
  return absl::OkStatus();
}

StreamFrameReader::StreamFrameReader(
    int fd, uint32_t max_payload,
    std::optional<std::chrono::steady_clock::time_point> busy_poll_until)
    : fd_(fd),
      max_payload_(max_payload),
      busy_poll_until_(busy_poll_until),
      buffer_(std::max(kReadChunk, kLengthPrefix + size_t{max_payload})) {}

absl::Status StreamFrameReader::Fill(size_t need) {
  if (buffer_.size() - begin_ < need) {
    // Move the partial frame to the front so the whole frame fits.
    std::memmove(buffer_.data(), buffer_.data() + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
  }
  const int flags = busy_poll_until_.has_value() ? MSG_DONTWAIT : 0;
  for (uint64_t attempt = 1;; ++attempt) {
    const ssize_t n = ::recv(fd_, buffer_.data() + end_, buffer_.size() - end_, flags);
    if (n > 0) {
      end_ += static_cast<size_t>(n);
      return absl::OkStatus();
    }
    if (n == 0) return absl::UnavailableError("socket peer closed");
    if (errno == EINTR) continue;
    if (busy_poll_until_.has_value() && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      // Reading the clock costs less than the recv; every 64th is enough.
      if (attempt % 64 == 0 && std::chrono::steady_clock::now() >= *busy_poll_until_) {
        return absl::DeadlineExceededError("busy poll: no data before the deadline");
      }
      continue;
    }
    return Errno("recv", errno);
  }
}

absl::StatusOr<absl::Span<const uint8_t>> StreamFrameReader::Next() {
  while (end_ - begin_ < kLengthPrefix) {
    if (absl::Status s = Fill(kLengthPrefix); !s.ok()) return s;
  }
  uint32_t len = 0;
  std::memcpy(&len, buffer_.data() + begin_, sizeof(len));
  if (len > max_payload_) {
    return absl::DataLossError(absl::StrCat("frame length ", len, " over ", max_payload_));
  }
  const size_t frame = kLengthPrefix + len;
  while (end_ - begin_ < frame) {
    if (absl::Status s = Fill(frame); !s.ok()) return s;
  }
  const uint8_t* payload = buffer_.data() + begin_ + kLengthPrefix;
  begin_ += frame;
  if (begin_ == end_) begin_ = end_ = 0;  // empty: restart at the front for free
  return absl::Span<const uint8_t>(payload, len);
}

}  // namespace shmhub::bench
