// Helpers for the socket-level tests (doorbell, mapping control, bootstrap):
// counting signals, listing open descriptors, sending hand-made messages
// with descriptors, and watching which system call a thread is blocked in.
#ifndef SHMHUB_TESTS_SHM_SOCKET_TEST_UTIL_H_
#define SHMHUB_TESTS_SHM_SOCKET_TEST_UTIL_H_

#include <dirent.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/types/span.h"
#include "shm/scm_rights.h"
#include "shm/unique_fd.h"

namespace shmhub::shm::socket_test {

// Installs a handler that only counts deliveries of `Sig`, without
// SA_RESTART, so a blocked system call returns EINTR. Restores the previous
// disposition on destruction.
template <int Sig>
class SignalCounter {
 public:
  SignalCounter() {
    count_.store(0, std::memory_order_relaxed);
    struct sigaction sa = {};
    sa.sa_handler = &SignalCounter::Handle;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART
    ::sigaction(Sig, &sa, &old_);
  }
  ~SignalCounter() { ::sigaction(Sig, &old_, nullptr); }
  SignalCounter(const SignalCounter&) = delete;
  SignalCounter& operator=(const SignalCounter&) = delete;

  int count() const { return count_.load(std::memory_order_acquire); }

 private:
  static void Handle(int) { count_.fetch_add(1, std::memory_order_acq_rel); }

  static inline std::atomic<int> count_{0};
  struct sigaction old_ = {};
};

// The descriptors open in this process right now (from /proc/self/fd).
inline std::set<int> OpenFds() {
  std::set<int> fds;
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return fds;
  const int self = ::dirfd(dir);
  while (struct dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    const int fd = std::atoi(entry->d_name);
    if (fd != self) fds.insert(fd);
  }
  ::closedir(dir);
  return fds;
}

// One sendmsg of `bytes` with `fds` attached (none if empty). Returns what
// sendmsg returned; MSG_NOSIGNAL so a closed peer cannot kill the test.
inline ssize_t SendWithFds(int socket_fd, absl::Span<const uint8_t> bytes,
                           absl::Span<const int> fds) {
  struct iovec iov = {const_cast<uint8_t*>(bytes.data()), bytes.size()};
  struct msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  std::vector<uint64_t> control((ScmRightsSpace(fds.size()) + 7) / 8 + 1);
  PackScmRights(
      fds,
      absl::MakeSpan(reinterpret_cast<uint8_t*>(control.data()), control.size() * sizeof(uint64_t)),
      &msg);
  return ::sendmsg(socket_fd, &msg, MSG_NOSIGNAL);
}

// A close-on-exec memfd holding `content`.
inline UniqueFd MemfdWith(const std::string& content) {
  UniqueFd fd(::memfd_create("shmhub-test", MFD_CLOEXEC));
  if (fd.valid() && !content.empty()) {
    if (::write(fd.get(), content.data(), content.size()) != static_cast<ssize_t>(content.size())) {
      fd.Reset();
    }
  }
  return fd;
}

// The system call number thread `tid` of this process is blocked in, or -1
// when it is running or the file cannot be read.
inline long BlockedSyscall(pid_t tid) {
  std::ifstream in("/proc/self/task/" + std::to_string(tid) + "/syscall");
  std::string first;
  if (!(in >> first) || first == "running") return -1;
  char* end = nullptr;
  const long nr = std::strtol(first.c_str(), &end, 10);
  return (end != nullptr && *end == '\0') ? nr : -1;
}

inline bool IsPollSyscall(long nr) {
#ifdef SYS_poll
  if (nr == SYS_poll) return true;
#endif
  return nr == SYS_ppoll;
}

inline bool IsRecvSyscall(long nr) {
#ifdef SYS_recv
  if (nr == SYS_recv) return true;
#endif
  return nr == SYS_recvfrom || nr == SYS_recvmsg;
}

// Polls `condition` every millisecond until it holds or `limit` passes.
inline bool WaitFor(const std::function<bool()>& condition, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

}  // namespace shmhub::shm::socket_test

#endif  // SHMHUB_TESTS_SHM_SOCKET_TEST_UTIL_H_
