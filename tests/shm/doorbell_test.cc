#include "shm/doorbell.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <thread>
#include <utility>

#include "gtest/gtest.h"
#include "shm/shm_error.h"
#include "tests/shm/socket_test_util.h"
#include "tests/testing/child_process.h"

namespace shmhub::shm {
namespace {

using socket_test::BlockedSyscall;
using socket_test::IsPollSyscall;
using socket_test::IsRecvSyscall;
using socket_test::SignalCounter;
using socket_test::WaitFor;
using std::chrono::milliseconds;

constexpr milliseconds kLongWait{5000};  // upper bound for waits that should succeed
constexpr milliseconds kShortWait{200};  // how long "nothing happens" is watched

std::pair<Doorbell, Doorbell> MakePair() {
  absl::StatusOr<std::pair<Doorbell, Doorbell>> pair = Doorbell::CreatePair();
  EXPECT_TRUE(pair.ok()) << pair.status();
  return *std::move(pair);
}

int SockOpt(int fd, int option) {
  int value = -1;
  socklen_t len = sizeof(value);
  EXPECT_EQ(::getsockopt(fd, SOL_SOCKET, option, &value, &len), 0);
  return value;
}

bool HasCloexec(int fd) { return (::fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0; }
bool IsNonBlocking(int fd) { return (::fcntl(fd, F_GETFL) & O_NONBLOCK) != 0; }

int Queued(int fd) {
  int bytes = -1;
  EXPECT_EQ(::ioctl(fd, FIONREAD, &bytes), 0);
  return bytes;
}

TEST(Doorbell, C_D1_PairIsNonBlockingUnixStreamAndOnlyGuestEndCanBeInherited) {
  auto [host, guest] = MakePair();
  EXPECT_EQ(host.end(), DoorbellEnd::kHost);
  EXPECT_EQ(guest.end(), DoorbellEnd::kGuest);
  for (const Doorbell* end : {&host, &guest}) {
    EXPECT_EQ(SockOpt(end->fd(), SO_DOMAIN), AF_UNIX);
    EXPECT_EQ(SockOpt(end->fd(), SO_TYPE), SOCK_STREAM);
    EXPECT_TRUE(IsNonBlocking(end->fd()));
    EXPECT_TRUE(HasCloexec(end->fd()));
  }

  absl::Status host_clear = host.ClearCloexec();
  EXPECT_EQ(ShmErrcOf(host_clear), ShmErrc::kWrongState) << host_clear;
  EXPECT_TRUE(HasCloexec(host.fd()));

  ASSERT_TRUE(guest.ClearCloexec().ok());
  EXPECT_FALSE(HasCloexec(guest.fd()));
  EXPECT_TRUE(HasCloexec(host.fd()));
}

TEST(Doorbell, C_D2_SignalWakesTheOtherSideInBothDirectionsAndDrainEmpties) {
  auto [host, guest] = MakePair();

  EXPECT_EQ(*guest.Wait(milliseconds(0)), WaitResult::kTimedOut);
  ASSERT_EQ(*host.Signal(), SignalResult::kSent);
  EXPECT_EQ(*guest.Wait(kLongWait), WaitResult::kWoken);
  EXPECT_EQ(Queued(guest.fd()), 0);
  EXPECT_EQ(*guest.Wait(milliseconds(0)), WaitResult::kTimedOut);

  ASSERT_EQ(*guest.Signal(), SignalResult::kSent);
  EXPECT_EQ(*host.Wait(kLongWait), WaitResult::kWoken);
  EXPECT_EQ(Queued(host.fd()), 0);

  for (int i = 0; i < 5; ++i) ASSERT_EQ(*host.Signal(), SignalResult::kSent);
  EXPECT_EQ(Queued(guest.fd()), 5);
  absl::StatusOr<size_t> drained = guest.Drain();
  ASSERT_TRUE(drained.ok()) << drained.status();
  EXPECT_EQ(*drained, 5u);
  EXPECT_EQ(Queued(guest.fd()), 0);
  EXPECT_EQ(*guest.Drain(), 0u);
}

TEST(Doorbell, C_D3_SignalAfterPeerClosedReportsPeerDeadWithoutSigpipe) {
  SignalCounter<SIGPIPE> sigpipes;
  auto [host, guest] = MakePair();
  guest.Release().Reset();

  absl::StatusOr<SignalResult> result = host.Signal();
  EXPECT_EQ(ShmErrcOf(result.status()), ShmErrc::kPeerDead) << result.status();
  EXPECT_EQ(ShmErrcOf(host.Signal().status()), ShmErrc::kPeerDead);
  EXPECT_EQ(sigpipes.count(), 0);

  // The same send without MSG_NOSIGNAL does raise SIGPIPE, so the counter
  // above would have seen one had Signal() left the flag out.
  const uint8_t byte = 1;
  EXPECT_LT(::send(host.fd(), &byte, 1, MSG_DONTWAIT), 0);
  EXPECT_EQ(sigpipes.count(), 1);
}

TEST(Doorbell, C_D4_WaitAfterPeerClosedDrainsQueuedBytesThenReportsPeerClosed) {
  auto [host, guest] = MakePair();
  for (int i = 0; i < 3; ++i) ASSERT_EQ(*host.Signal(), SignalResult::kSent);
  host.Release().Reset();
  EXPECT_EQ(Queued(guest.fd()), 3);

  absl::StatusOr<WaitResult> result = guest.Wait(kLongWait);
  EXPECT_EQ(ShmErrcOf(result.status()), ShmErrc::kPeerClosed) << result.status();
  EXPECT_EQ(Queued(guest.fd()), 0);
  // The close stays visible; it is not a one-off event.
  EXPECT_EQ(ShmErrcOf(guest.Wait(kLongWait).status()), ShmErrc::kPeerClosed);
  EXPECT_EQ(ShmErrcOf(guest.Drain().status()), ShmErrc::kPeerClosed);
}

TEST(Doorbell, C_D5_FullSocketBufferReportsBufferFullNotAnError) {
  auto [host, guest] = MakePair();
  constexpr size_t kBound = 1 << 20;
  size_t sent = 0;
  std::optional<SignalResult> last;
  for (size_t i = 0; i < kBound; ++i) {
    absl::StatusOr<SignalResult> result = host.Signal();
    ASSERT_TRUE(result.ok()) << result.status();
    last = *result;
    if (*result == SignalResult::kBufferFull) break;
    ++sent;
  }
  ASSERT_EQ(last, SignalResult::kBufferFull) << "buffer never filled after " << sent;
  EXPECT_GT(sent, 0u);
  EXPECT_EQ(*host.Signal(), SignalResult::kBufferFull);

  // Every ring that was reported sent is there to be drained.
  size_t drained = 0;
  for (int i = 0; i < 1024; ++i) {
    absl::StatusOr<size_t> n = guest.Drain();
    ASSERT_TRUE(n.ok()) << n.status();
    if (*n == 0) break;
    drained += *n;
  }
  EXPECT_EQ(drained, sent);
  EXPECT_EQ(*host.Signal(), SignalResult::kSent);
}

// Runs `body` on a thread and returns its kernel thread id once it is known.
class BlockedThread {
 public:
  template <typename F>
  explicit BlockedThread(F body)
      : thread_([this, body]() mutable {
          tid_.store(::gettid(), std::memory_order_release);
          body();
        }) {
    WaitFor([this] { return tid_.load(std::memory_order_acquire) != 0; }, kLongWait);
  }
  ~BlockedThread() { thread_.join(); }

  pid_t tid() const { return tid_.load(std::memory_order_acquire); }
  pthread_t handle() { return thread_.native_handle(); }

 private:
  std::atomic<pid_t> tid_{0};
  std::thread thread_;
};

TEST(Doorbell, C_D6_WaitRetriesAfterEintrInPoll) {
  SignalCounter<SIGUSR1> interrupts;
  auto [host, guest] = MakePair();
  std::optional<absl::StatusOr<WaitResult>> result;
  {
    BlockedThread waiter([&guest, &result] { result = guest.Wait(kLongWait); });
    ASSERT_TRUE(WaitFor([&] { return IsPollSyscall(BlockedSyscall(waiter.tid())); }, kLongWait));
    ASSERT_EQ(::pthread_kill(waiter.handle(), SIGUSR1), 0);
    ASSERT_TRUE(WaitFor([&] { return interrupts.count() == 1; }, kLongWait));
    // Interrupted, it must go back to waiting rather than return.
    ASSERT_TRUE(WaitFor([&] { return IsPollSyscall(BlockedSyscall(waiter.tid())); }, kLongWait));
    ASSERT_EQ(*host.Signal(), SignalResult::kSent);
  }
  ASSERT_TRUE(result.has_value());
  ASSERT_TRUE(result->ok()) << result->status();
  EXPECT_EQ(**result, WaitResult::kWoken);
}

TEST(Doorbell, C_D6_DrainRetriesAfterEintrInRecvOnBlockingSocket) {
  SignalCounter<SIGUSR1> interrupts;
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);  // blocking
  Doorbell blocking(DoorbellEnd::kGuest, UniqueFd(sv[0]));
  UniqueFd other(sv[1]);
  ASSERT_FALSE(IsNonBlocking(blocking.fd()));
  std::optional<absl::StatusOr<size_t>> result;
  {
    BlockedThread drainer([&blocking, &result] { result = blocking.Drain(); });
    ASSERT_TRUE(WaitFor([&] { return IsRecvSyscall(BlockedSyscall(drainer.tid())); }, kLongWait));
    ASSERT_EQ(::pthread_kill(drainer.handle(), SIGUSR1), 0);
    ASSERT_TRUE(WaitFor([&] { return interrupts.count() == 1; }, kLongWait));
    ASSERT_TRUE(WaitFor([&] { return IsRecvSyscall(BlockedSyscall(drainer.tid())); }, kLongWait));
    // A blocking drain ends only at end of stream: ring, then hang up.
    const uint8_t rings[3] = {1, 1, 1};
    ASSERT_EQ(::send(other.get(), rings, sizeof(rings), MSG_NOSIGNAL), 3);
    other.Reset();
  }
  ASSERT_TRUE(result.has_value());
  // EINTR would have surfaced as kIo; a retried recv reads on to the close.
  EXPECT_EQ(ShmErrcOf(result->status()), ShmErrc::kPeerClosed) << result->status();
  EXPECT_EQ(Queued(blocking.fd()), 0);
}

TEST(Doorbell, C_D7_ClearCloexecClearsFdCloexecAndKeepsNonBlocking) {
  auto [host, guest] = MakePair();
  ASSERT_TRUE(HasCloexec(guest.fd()));
  ASSERT_TRUE(guest.ClearCloexec().ok());
  EXPECT_EQ(::fcntl(guest.fd(), F_GETFD) & FD_CLOEXEC, 0);
  EXPECT_TRUE(IsNonBlocking(guest.fd()));
  // Idempotent.
  ASSERT_TRUE(guest.ClearCloexec().ok());
  EXPECT_FALSE(HasCloexec(guest.fd()));
}

TEST(Doorbell, C_D9_HostCopyOfGuestEndHidesTheGuestsDeath) {
  auto [host, guest] = MakePair();
  shmhub::testing::ChildProcess child([&]() -> int {
    host.Release().Reset();  // a guest keeps only its own end
    if (!guest.Signal().ok()) return 1;
    ::pause();
    return 0;
  });
  // Rule 1 of §10 broken on purpose: the host keeps `guest` open.
  ASSERT_EQ(*host.Wait(kLongWait), WaitResult::kWoken);
  child.Signal(SIGKILL);
  EXPECT_EQ(child.Wait(), 128 + SIGKILL);

  EXPECT_EQ(*host.Wait(kShortWait), WaitResult::kTimedOut);
  EXPECT_EQ(*host.Signal(), SignalResult::kSent);

  // Closing the host's copy is what lets the hang-up through.
  guest.Release().Reset();
  absl::StatusOr<WaitResult> after = host.Wait(kLongWait);
  EXPECT_EQ(ShmErrcOf(after.status()), ShmErrc::kPeerClosed) << after.status();
}

}  // namespace
}  // namespace shmhub::shm
