// Bounded, EINTR-safe waiting on one descriptor.
//
// Every wait in shm/ has a deadline: a peer that never writes must cost the
// caller a timeout, never a hang. A signal that interrupts poll() restarts it
// with whatever time is left, so a handler installed without SA_RESTART
// neither shortens nor lengthens the wait. Thread-safe (no state).
#ifndef SHMHUB_SHM_POLL_FD_H_
#define SHMHUB_SHM_POLL_FD_H_

#include <chrono>

#include "absl/status/statusor.h"

namespace shmhub::shm {

using Deadline = std::chrono::steady_clock::time_point;

// now + timeout, saturating instead of overflowing for huge timeouts. A
// negative timeout is a deadline that has already passed.
Deadline DeadlineAfter(std::chrono::milliseconds timeout);

// poll()s `fd` for `events` until an event arrives or `deadline` passes.
// Returns the revents word (which may hold POLLHUP, POLLERR or POLLNVAL even
// if not asked for), or 0 when the deadline passed first. A deadline already
// in the past still polls once without blocking. kIo if poll() fails.
absl::StatusOr<short> PollFd(int fd, short events, Deadline deadline);

}  // namespace shmhub::shm

#endif  // SHMHUB_SHM_POLL_FD_H_
