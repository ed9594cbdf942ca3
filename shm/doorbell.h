// Doorbell: one end of the wake-up socketpair between the host and a guest
// (format §10).
//
// The pair is AF_UNIX SOCK_STREAM, non-blocking and close-on-exec. A ring
// is one byte; its value means nothing. Several rings before a wait collapse
// into one wake-up, and a full socket buffer means a wake-up is already
// pending, so Signal() reports it as kBufferFull, not as an error.
//
// Death detection: the host end reports kPeerClosed only when EVERY copy of
// the guest end is closed. The host must therefore close its copy of the
// guest end once it has handed it over, and every other descriptor it owns
// must be close-on-exec, or an unrelated child keeps a dead guest looking
// alive. Only a guest end may be made inheritable (ClearCloexec), and only
// just before spawning the guest.
//
// Every send uses MSG_NOSIGNAL: ringing a dead guest must not kill the
// daemon with SIGPIPE. Every wait is bounded by a timeout; EINTR is retried.
//
// Thread-safety: Signal() may run concurrently with Wait()/Drain() on the
// same object (they are independent system calls on one descriptor). Moving,
// Release() and destruction need a single owner.
#ifndef SHMHUB_SHM_DOORBELL_H_
#define SHMHUB_SHM_DOORBELL_H_

#include <chrono>
#include <cstddef>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "shm/unique_fd.h"

namespace shmhub::shm {

// Which side of the pair a Doorbell is. Only kGuest may lose FD_CLOEXEC.
enum class DoorbellEnd { kHost, kGuest };

enum class SignalResult {
  kSent,        // the byte was queued
  kBufferFull,  // nothing queued, but a wake-up is already pending: as good as sent
};

enum class WaitResult {
  kWoken,     // at least one ring arrived (or a wake-up was pending); drained
  kTimedOut,  // nothing arrived before the timeout
};

class Doorbell {
 public:
  // A new pair: first the host end, then the guest end. Both are
  // SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC.
  static absl::StatusOr<std::pair<Doorbell, Doorbell>> CreatePair();

  // Adopts an end received by other means (bootstrap, inheritance). Its
  // O_NONBLOCK and FD_CLOEXEC flags are left as they are.
  Doorbell(DoorbellEnd end, UniqueFd fd) : end_(end), fd_(std::move(fd)) {}

  Doorbell(Doorbell&&) noexcept = default;
  Doorbell& operator=(Doorbell&&) noexcept = default;
  Doorbell(const Doorbell&) = delete;
  Doorbell& operator=(const Doorbell&) = delete;

  // Rings the other end: one byte, MSG_DONTWAIT | MSG_NOSIGNAL. kPeerDead
  // when the other end is gone (EPIPE, ECONNRESET, ENOTCONN or a 0 return);
  // kIo for any other failure, such as EBADF on a released doorbell (Rust
  // counts those as peer death too; the caller decides).
  absl::StatusOr<SignalResult> Signal() const;

  // Waits up to `timeout` for a ring (poll POLLIN | POLLRDHUP), then drains
  // the socket. kPeerClosed once the other end is closed; bytes queued before
  // the close are drained first and then the close is reported. A timeout of
  // zero only checks. kIo on a released doorbell or a poll/recv failure.
  absl::StatusOr<WaitResult> Wait(std::chrono::milliseconds timeout) const;

  // Reads and discards queued rings until recv reports EAGAIN, at most
  // kMaxDrainBytes per call (a peer that rings without pause cannot keep us
  // here; what is left wakes the next Wait at once). Returns the number of
  // bytes discarded, kPeerClosed at end of stream. Meant for non-blocking
  // ends: on a blocking descriptor every recv waits for data, so it returns
  // only at the close or the byte bound.
  absl::StatusOr<size_t> Drain() const;

  // Makes this end survive exec. Allowed only on a guest end (kWrongState on
  // the host end, which must never leak into a child).
  absl::Status ClearCloexec() const;

  DoorbellEnd end() const { return end_; }
  int fd() const { return fd_.get(); }
  // Hands the descriptor over; this Doorbell is empty afterwards.
  UniqueFd Release() { return std::move(fd_); }

  static constexpr size_t kMaxDrainBytes = 64 * 1024;

 private:
  DoorbellEnd end_;
  UniqueFd fd_;
};

}  // namespace shmhub::shm

#endif  // SHMHUB_SHM_DOORBELL_H_
