// ControlChannel: the out-of-band messages between the two processes of a
// benchmark ("ready", "go", "done", or an error text), kept off the data
// path being measured.
//
// Two pipes are made before fork(); afterwards each process keeps its ends
// with ParentEnd()/ChildEnd(), which close the other process's ends so that
// a process that dies shows up as end-of-file instead of a hang. A message
// is a little-endian u32 length and at most kMaxMessage bytes, written with
// one write() (atomic on a pipe below PIPE_BUF).
//
// Every Receive is bounded by its deadline. A length above kMaxMessage is
// refused (the other side is broken) rather than trusted. Not thread-safe.
#ifndef SHMHUB_BENCH_HARNESS_CONTROL_CHANNEL_H_
#define SHMHUB_BENCH_HARNESS_CONTROL_CHANNEL_H_

#include <cstddef>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "shm/poll_fd.h"
#include "shm/unique_fd.h"

namespace shmhub::bench {

// One process's side: it reads what the other writes and vice versa.
class ControlEnd {
 public:
  static constexpr size_t kMaxMessage = 1024;

  ControlEnd() = default;
  ControlEnd(shm::UniqueFd read, shm::UniqueFd write)
      : read_(std::move(read)), write_(std::move(write)) {}

  // INVALID_ARGUMENT above kMaxMessage; UNAVAILABLE when the other side is
  // gone (EPIPE: SIGPIPE is suppressed by the caller ignoring it).
  absl::Status Send(absl::string_view message) const;
  // The next message. DEADLINE_EXCEEDED at the deadline, UNAVAILABLE at
  // end-of-file (the other process exited), DATA_LOSS for a bad length.
  absl::StatusOr<std::string> Receive(shm::Deadline deadline) const;

 private:
  absl::Status ReadExactly(char* dst, size_t n, shm::Deadline deadline) const;

  shm::UniqueFd read_;
  shm::UniqueFd write_;
};

class ControlChannel {
 public:
  // Both pipes, close-on-exec.
  static absl::StatusOr<ControlChannel> Create();

  // Call exactly one of these, after fork(), in the matching process.
  ControlEnd ParentEnd();
  ControlEnd ChildEnd();

 private:
  ControlChannel() = default;

  shm::UniqueFd to_child_read_, to_child_write_;
  shm::UniqueFd to_parent_read_, to_parent_write_;
};

}  // namespace shmhub::bench

#endif  // SHMHUB_BENCH_HARNESS_CONTROL_CHANNEL_H_
