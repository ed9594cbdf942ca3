// ForkedChild: the second process of a two-process benchmark, made with
// fork() so both sides run the same binary and share the setup code.
//
// Contract
//  * Fork only from a process that has started no threads: the child runs
//    `body` (which may allocate, open files and map memory) and then leaves
//    with _exit(body's return value), so it never runs the parent's atexit
//    handlers or destructors (the parent's host Segment, for one, removes
//    its file when destroyed).
//  * Every wait is bounded: WaitExit gives up at its deadline, and the
//    destructor SIGKILLs and reaps a child still running, so a wedged child
//    costs the benchmark an error, never a hang or a zombie.
// Not thread-safe; one owner.
#ifndef SHMHUB_BENCH_HARNESS_FORKED_CHILD_H_
#define SHMHUB_BENCH_HARNESS_FORKED_CHILD_H_

#include <sys/types.h>

#include <functional>

#include "absl/status/statusor.h"
#include "shm/poll_fd.h"

namespace shmhub::bench {

class ForkedChild {
 public:
  // Forks and runs `body` in the child. INTERNAL when fork() fails.
  static absl::StatusOr<ForkedChild> Start(const std::function<int()>& body);

  ForkedChild(ForkedChild&& other) noexcept;
  ForkedChild& operator=(ForkedChild&&) = delete;
  ForkedChild(const ForkedChild&) = delete;
  ForkedChild& operator=(const ForkedChild&) = delete;
  ~ForkedChild();

  // Waits until the child exits or `deadline` passes. Returns its exit code,
  // or 128 + the signal number when a signal ended it (the shell's rule).
  // DEADLINE_EXCEEDED when it is still running at the deadline (it is then
  // left running; the destructor kills it).
  absl::StatusOr<int> WaitExit(shm::Deadline deadline);

  pid_t pid() const { return pid_; }

 private:
  explicit ForkedChild(pid_t pid) : pid_(pid) {}

  pid_t pid_ = -1;
  bool reaped_ = false;
};

}  // namespace shmhub::bench

#endif  // SHMHUB_BENCH_HARNESS_FORKED_CHILD_H_
