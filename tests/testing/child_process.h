// A real child process made with fork(), for tests that need separate address
// spaces, real SIGKILLs and real process exits.
//
// The child runs `body` and exits with its return value through _exit(), so
// it never runs the parent's gtest teardown or atexit handlers. Only
// async-signal-safe work is guaranteed in the child of a threaded parent; our
// shm/ tests start no threads before forking.
#ifndef SHMHUB_TESTS_TESTING_CHILD_PROCESS_H_
#define SHMHUB_TESTS_TESTING_CHILD_PROCESS_H_

#include <sys/types.h>

#include <functional>

namespace shmhub::testing {

class ChildProcess {
 public:
  explicit ChildProcess(const std::function<int()>& body);
  // Kills (SIGKILL) and reaps the child if it is still running.
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  void Signal(int sig) const;
  // Waits for the child and returns its exit code, or 128 + signal number
  // when it was killed by a signal (the shell's convention).
  int Wait();

 private:
  pid_t pid_ = -1;
  bool reaped_ = false;
  int status_ = 0;
};

}  // namespace shmhub::testing

#endif  // SHMHUB_TESTS_TESTING_CHILD_PROCESS_H_
