#include "shm/doorbell.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "shm/poll_fd.h"
#include "shm/shm_error.h"

namespace shmhub::shm {
namespace {

// Rust rings with 0x01; the receiver ignores the value.
constexpr uint8_t kRingByte = 0x01;

absl::Status PeerClosed(absl::string_view how) {
  return ShmError(ShmErrc::kPeerClosed, absl::StrCat("doorbell peer closed (", how, ")"));
}

}  // namespace

absl::StatusOr<std::pair<Doorbell, Doorbell>> Doorbell::CreatePair() {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) {
    return ShmIoError("socketpair(doorbell)", errno);
  }
  return std::make_pair(Doorbell(DoorbellEnd::kHost, UniqueFd(sv[0])),
                        Doorbell(DoorbellEnd::kGuest, UniqueFd(sv[1])));
}

absl::StatusOr<SignalResult> Doorbell::Signal() const {
  for (;;) {
    const ssize_t n = ::send(fd_.get(), &kRingByte, 1, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) return SignalResult::kSent;
    if (n == 0) return ShmError(ShmErrc::kPeerDead, "doorbell send returned 0");
    switch (errno) {
      case EINTR:
        continue;
      case EAGAIN:  // == EWOULDBLOCK on Linux
      case ENOBUFS:
        return SignalResult::kBufferFull;
      case EPIPE:
      case ECONNRESET:
      case ENOTCONN:
        return ShmError(ShmErrc::kPeerDead, absl::StrCat("doorbell send: ", std::strerror(errno)));
      default:
        return ShmIoError("send(doorbell)", errno);
    }
  }
}

absl::StatusOr<size_t> Doorbell::Drain() const {
  uint8_t buf[256];
  size_t drained = 0;
  while (drained < kMaxDrainBytes) {
    const ssize_t n = ::recv(fd_.get(), buf, sizeof(buf), 0);
    if (n > 0) {
      drained += static_cast<size_t>(n);
      continue;
    }
    if (n == 0) return PeerClosed("end of stream");
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) break;
    if (errno == ECONNRESET) return PeerClosed("connection reset");
    return ShmIoError("recv(doorbell)", errno);
  }
  return drained;
}

absl::StatusOr<WaitResult> Doorbell::Wait(std::chrono::milliseconds timeout) const {
  // poll() silently skips a negative fd and would just sleep out the timeout.
  if (!fd_.valid()) return ShmIoError("poll(doorbell)", EBADF);
  absl::StatusOr<short> revents = PollFd(fd_.get(), POLLIN | POLLRDHUP, DeadlineAfter(timeout));
  if (!revents.ok()) return revents.status();
  if (*revents == 0) return WaitResult::kTimedOut;
  if (*revents & POLLNVAL) return ShmIoError("poll(doorbell)", EBADF);
  absl::StatusOr<size_t> drained = Drain();
  if (!drained.ok()) return drained.status();
  // A hang-up whose end of stream the drain did not reach (it stopped at its
  // byte bound) shows up again on the next Wait. One that produced no bytes
  // and no end of stream would make every Wait return at once, so report it.
  if ((*revents & (POLLHUP | POLLERR | POLLRDHUP)) != 0 && *drained == 0) {
    return PeerClosed("poll reported hang-up");
  }
  return WaitResult::kWoken;
}

absl::Status Doorbell::ClearCloexec() const {
  if (end_ != DoorbellEnd::kGuest) {
    return ShmError(ShmErrc::kWrongState,
                    "only the guest end of a doorbell may be made inheritable");
  }
  const int flags = ::fcntl(fd_.get(), F_GETFD);
  if (flags < 0) return ShmIoError("fcntl(F_GETFD)", errno);
  if (::fcntl(fd_.get(), F_SETFD, flags & ~FD_CLOEXEC) != 0) {
    return ShmIoError("fcntl(F_SETFD)", errno);
  }
  return absl::OkStatus();
}

}  // namespace shmhub::shm
