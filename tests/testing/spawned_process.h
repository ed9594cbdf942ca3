// SpawnedProcess: a real program run as a child process for end-to-end
// tests, with stdout on a pipe read line by line under a deadline and stderr
// in a file. Header-only so that only the e2e tests that use it depend on
// it. Not thread-safe: one test thread owns each instance.
#ifndef SHMHUB_TESTS_TESTING_SPAWNED_PROCESS_H_
#define SHMHUB_TESTS_TESTING_SPAWNED_PROCESS_H_

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

extern char** environ;

namespace shmhub::testing {

inline constexpr absl::Duration kProcessWaitLimit = absl::Seconds(20);

// A child process running `argv` with stdout on a pipe we read line by
// line and stderr in a file. Killed (SIGKILL) and reaped on destruction.
class SpawnedProcess {
 public:
  SpawnedProcess(const std::vector<std::string>& argv, const std::string& stderr_path)
      : stderr_path_(stderr_path) {
    int out[2];
    if (pipe2(out, O_CLOEXEC) != 0) {
      ADD_FAILURE() << "pipe2: " << std::strerror(errno);
      return;
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, stderr_path.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0600);
    std::vector<char*> args;
    for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
    args.push_back(nullptr);
    const int err = posix_spawn(&pid_, args[0], &actions, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    close(out[1]);
    stdout_fd_ = out[0];
    if (err != 0) {
      ADD_FAILURE() << "posix_spawn " << argv[0] << ": " << std::strerror(err);
      pid_ = -1;
    }
  }
  ~SpawnedProcess() {
    if (pid_ > 0 && !exit_code_.has_value()) {
      kill(pid_, SIGKILL);
      int status = 0;
      waitpid(pid_, &status, 0);
    }
    if (stdout_fd_ >= 0) close(stdout_fd_);
  }
  SpawnedProcess(const SpawnedProcess&) = delete;
  SpawnedProcess& operator=(const SpawnedProcess&) = delete;

  pid_t pid() const { return pid_; }
  void Signal(int sig) const { kill(pid_, sig); }

  // The next stdout line containing `needle`, skipping others (they stay in
  // lines()); nullopt when the deadline passes or stdout closes first.
  std::optional<std::string> WaitForLine(absl::string_view needle,
                                         absl::Duration timeout = kProcessWaitLimit) {
    const absl::Time deadline = absl::Now() + timeout;
    while (true) {
      while (next_ < lines_.size()) {
        const std::string& line = lines_[next_++];
        if (absl::StrContains(line, needle)) return line;
      }
      if (!ReadMore(deadline)) return std::nullopt;
    }
  }
  const std::vector<std::string>& lines() const { return lines_; }

  // Exit code (128 + signal when killed), or nullopt after the deadline.
  std::optional<int> Wait(absl::Duration timeout = kProcessWaitLimit) {
    const absl::Time deadline = absl::Now() + timeout;
    while (!exit_code_.has_value()) {
      int status = 0;
      const pid_t got = waitpid(pid_, &status, WNOHANG);
      if (got == pid_) {
        exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      } else if (absl::Now() >= deadline) {
        return std::nullopt;
      } else {
        absl::SleepFor(absl::Milliseconds(5));
      }
    }
    return exit_code_;
  }

  // Everything on stdout until it closes (for short-lived commands).
  std::string DrainStdout(absl::Duration timeout = kProcessWaitLimit) {
    const absl::Time deadline = absl::Now() + timeout;
    while (ReadMore(deadline)) {
    }
    std::string all;
    for (const std::string& line : lines_) absl::StrAppend(&all, line, "\n");
    return all + partial_;
  }

  std::string Stderr() const {
    std::ifstream in(stderr_path_);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }

 private:
  // Reads what is available; false on EOF or when the deadline passes.
  bool ReadMore(absl::Time deadline) {
    if (stdout_fd_ < 0) return false;
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return false;
    pollfd pfd{stdout_fd_, POLLIN, 0};
    const int ready = poll(&pfd, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
    if (ready <= 0) return ready == 0 ? absl::Now() < deadline : errno == EINTR;
    char buf[4096];
    const ssize_t n = read(stdout_fd_, buf, sizeof(buf));
    if (n <= 0) {
      close(stdout_fd_);
      stdout_fd_ = -1;
      return false;
    }
    partial_.append(buf, static_cast<size_t>(n));
    size_t newline;
    while ((newline = partial_.find('\n')) != std::string::npos) {
      lines_.push_back(partial_.substr(0, newline));
      partial_.erase(0, newline + 1);
    }
    return true;
  }

  std::string stderr_path_;
  pid_t pid_ = -1;
  int stdout_fd_ = -1;
  std::optional<int> exit_code_;
  std::vector<std::string> lines_;
  size_t next_ = 0;
  std::string partial_;
};

}  // namespace shmhub::testing

#endif  // SHMHUB_TESTS_TESTING_SPAWNED_PROCESS_H_
