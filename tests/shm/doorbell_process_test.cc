// C-D8 with a real guest process: SIGKILL it and watch the host end.
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <utility>

#include "gtest/gtest.h"
#include "shm/doorbell.h"
#include "shm/poll_fd.h"
#include "shm/shm_error.h"
#include "tests/testing/child_process.h"

namespace shmhub::shm {
namespace {

using std::chrono::milliseconds;

constexpr milliseconds kLongWait{5000};

TEST(DoorbellProcess, C_D8_SigkilledGuestMakesTheHostEndReportHangUp) {
  absl::StatusOr<std::pair<Doorbell, Doorbell>> pair = Doorbell::CreatePair();
  ASSERT_TRUE(pair.ok()) << pair.status();
  Doorbell host = std::move(pair->first);
  Doorbell guest = std::move(pair->second);

  shmhub::testing::ChildProcess child([&]() -> int {
    host.Release().Reset();
    // Ring until the host has answered, so the parent knows we run, then
    // sleep until killed; pause() is bounded by the parent's SIGKILL and by
    // ChildProcess's destructor.
    if (!guest.Signal().ok()) return 1;
    absl::StatusOr<WaitResult> answer = guest.Wait(kLongWait);
    if (!answer.ok() || *answer != WaitResult::kWoken) return 2;
    for (;;) ::pause();
  });
  // §10 rule 1: the host closes its copy of the guest end once handed over.
  guest.Release().Reset();

  ASSERT_EQ(*host.Wait(kLongWait), WaitResult::kWoken);
  ASSERT_EQ(*host.Signal(), SignalResult::kSent);
  // Alive: no hang-up while the guest runs.
  EXPECT_EQ(*host.Wait(milliseconds(100)), WaitResult::kTimedOut);

  child.Signal(SIGKILL);
  // The kernel closes the guest's descriptors before the exit is reported,
  // but the poll below does not rely on that: it waits for the hang-up.
  absl::StatusOr<short> revents = PollFd(host.fd(), POLLIN | POLLRDHUP, DeadlineAfter(kLongWait));
  ASSERT_TRUE(revents.ok()) << revents.status();
  EXPECT_NE(*revents & (POLLHUP | POLLRDHUP), 0) << "revents " << *revents;

  absl::StatusOr<WaitResult> waited = host.Wait(kLongWait);
  EXPECT_EQ(ShmErrcOf(waited.status()), ShmErrc::kPeerClosed) << waited.status();
  absl::StatusOr<SignalResult> rung = host.Signal();
  EXPECT_EQ(ShmErrcOf(rung.status()), ShmErrc::kPeerDead) << rung.status();
  EXPECT_EQ(child.Wait(), 128 + SIGKILL);
}

}  // namespace
}  // namespace shmhub::shm
