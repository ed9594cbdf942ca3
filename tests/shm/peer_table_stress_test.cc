// C-P22: real processes racing for the entries of one MAP_SHARED peer table.
//
// Eight forked children and the parent share one anonymous MAP_SHARED
// mapping that holds the table and a small control block. In each round the
// parent opens the gate, every child takes entries (alternating
// ReserveFirstFree and AttachFirstFree, so both kinds of take race on the
// same entries) until none is left, and records what it got. Rounds
// alternate between turn-taking and free-for-all (see RunChild). The parent
// then checks that every entry was taken exactly once, with an epoch one
// above the previous round's, hands every entry back with a fenced
// operation, and starts the next round. Every wait has a deadline, so a
// stuck or dead child fails the test instead of hanging it.
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "shm/format.h"
#include "shm/peer_table.h"
#include "shm/shm_error.h"
#include "tests/testing/child_process.h"

namespace shmhub::shm {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kProcesses = 8;
constexpr uint32_t kEntries = kMaxGuests;  // a full-size table
constexpr uint32_t kRounds = 1000;
// Whole-test budget; a round normally takes well under a millisecond.
constexpr auto kBudget = std::chrono::seconds(20);

// Child exit codes, so a failure says what went wrong.
enum ChildExit : int {
  kChildOk = 0,
  kChildTimedOut = 10,
  kChildUnexpectedError = 11,
  kChildTookTooMany = 12,
};

struct Take {
  uint32_t peer_id;
  uint32_t epoch;
  uint32_t state;  // PeerState the child put the entry in
};

// Lives in the shared mapping; zero-filled by mmap.
struct Shared {
  alignas(64) PeerEntry entries[kEntries];
  // Round the parent has opened (1-based).
  alignas(64) uint32_t gate;
  // Children that have entered a round, summed over all rounds: a child
  // starts taking only once all eight are in (arrived == round * 8), so no
  // child can finish a round before the others are ready to race it.
  alignas(64) uint32_t arrived;
  // Last round each child finished; its takes are published with it.
  alignas(64) uint32_t finished[kProcesses];
  uint32_t take_count[kProcesses];
  Take takes[kProcesses][kEntries];
};

uint32_t LoadAcquire(uint32_t& word) {
  return std::atomic_ref<uint32_t>(word).load(std::memory_order_acquire);
}

void StoreRelease(uint32_t& word, uint32_t value) {
  std::atomic_ref<uint32_t>(word).store(value, std::memory_order_release);
}

// Spins until `word` reaches `value`, yielding because there are more
// processes than cores.
bool WaitFor(uint32_t& word, uint32_t value, Clock::time_point deadline) {
  while (LoadAcquire(word) < value) {
    if (Clock::now() > deadline) return false;
    sched_yield();
  }
  return true;
}

// The exit code (or 128 + signal) of `pid` if it has already ended, without
// reaping it (WNOWAIT), so ChildProcess::Wait still can.
std::optional<int> EndedEarly(pid_t pid) {
  siginfo_t info = {};
  if (waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0 ||
      info.si_pid == 0) {
    return std::nullopt;
  }
  return info.si_code == CLD_EXITED ? info.si_status : 128 + info.si_status;
}

// The parent's wait for `child` to finish `round`: fails fast, with the
// child's exit code, when the child is gone, and at the deadline.
::testing::AssertionResult RoundFinished(Shared* shared, int child, pid_t pid, uint32_t round,
                                         Clock::time_point deadline) {
  while (LoadAcquire(shared->finished[child]) < round) {
    if (std::optional<int> code = EndedEarly(pid)) {
      return ::testing::AssertionFailure()
             << "child " << child << " ended during round " << round << " with code " << *code;
    }
    if (Clock::now() > deadline) {
      return ::testing::AssertionFailure()
             << "child " << child << " did not finish round " << round << " in time";
    }
    sched_yield();
  }
  return ::testing::AssertionSuccess();
}

int RunChild(Shared* shared, int child, Clock::time_point deadline) {
  PeerTable table(shared->entries, kEntries);
  for (uint32_t round = 1; round <= kRounds; ++round) {
    if (!WaitFor(shared->gate, round, deadline)) return kChildTimedOut;
    std::atomic_ref<uint32_t>(shared->arrived).fetch_add(1, std::memory_order_acq_rel);
    if (!WaitFor(shared->arrived, round * kProcesses, deadline)) return kChildTimedOut;
    uint32_t count = 0;
    for (uint32_t attempt = 0;; ++attempt) {
      const bool attach = (child + round + attempt) % 2 == 0;
      absl::StatusOr<Occupancy> taken =
          attach ? table.AttachFirstFree() : table.ReserveFirstFree();
      if (!taken.ok()) {
        if (ShmErrcOf(taken.status()) == ShmErrc::kNoFreeEntry) break;
        return kChildUnexpectedError;
      }
      if (count == kEntries) return kChildTookTooMany;
      shared->takes[child][count++] = {
          taken->peer_id, taken->epoch,
          static_cast<uint32_t>(attach ? PeerState::kAttached : PeerState::kReserved)};
      // Relay rounds (even): yield after each take, so all eight children
      // take turns scanning the table; on a small machine a child would
      // otherwise empty it within one time slice. Sprint rounds (odd): no
      // yield, so the children that are on a CPU at the same time collide
      // on the same entries and lose CASes (D-8).
      if (round % 2 == 0) sched_yield();
    }
    shared->take_count[child] = count;
    // Release publishes the takes and the count to the parent.
    StoreRelease(shared->finished[child], round);
  }
  return kChildOk;
}

TEST(PeerTableStress, C_P22_EightProcessesTakeEveryEntryExactlyOncePerRound) {
  void* memory =
      mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(memory, MAP_FAILED);
  std::unique_ptr<void, void (*)(void*)> unmap(memory, [](void* p) { munmap(p, sizeof(Shared)); });
  auto* shared = static_cast<Shared*>(memory);
  for (uint32_t i = 0; i < kEntries; ++i) {
    PeerEntryView(&shared->entries[i]).Init(0x10000 + uint64_t{i} * 0x1000);
  }
  PeerTable table(shared->entries, kEntries);

  const Clock::time_point deadline = Clock::now() + kBudget;
  std::vector<std::unique_ptr<testing::ChildProcess>> children;
  for (int child = 0; child < kProcesses; ++child) {
    children.push_back(std::make_unique<testing::ChildProcess>(
        [shared, child, deadline] { return RunChild(shared, child, deadline); }));
  }

  std::array<uint32_t, kEntries + 1> last_epoch{};  // by peer id; all start at 0
  for (uint32_t round = 1; round <= kRounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    StoreRelease(shared->gate, round);
    for (int child = 0; child < kProcesses; ++child) {
      ASSERT_TRUE(RoundFinished(shared, child, children[child]->pid(), round, deadline));
    }

    std::array<int, kEntries + 1> times_taken{};
    for (int child = 0; child < kProcesses; ++child) {
      const uint32_t count = shared->take_count[child];
      ASSERT_LE(count, kEntries);
      for (uint32_t k = 0; k < count; ++k) {
        const Take take = shared->takes[child][k];
        ASSERT_GE(take.peer_id, 1u);
        ASSERT_LE(take.peer_id, kEntries);
        ++times_taken[take.peer_id];
        // Exactly one take per entry per round: the epoch goes up by one.
        ASSERT_EQ(take.epoch, last_epoch[take.peer_id] + 1) << "peer " << take.peer_id;
        last_epoch[take.peer_id] = take.epoch;
        const PeerEntryView entry = table.Entry(take.peer_id).value();
        ASSERT_EQ(entry.LoadPair(), PeerPair(StateReading::FromRaw(take.state), take.epoch))
            << "peer " << take.peer_id;
      }
    }
    for (uint32_t id = 1; id <= kEntries; ++id) {
      ASSERT_EQ(times_taken[id], 1) << "peer " << id;
    }

    // Hand every entry back, fenced on the epoch its taker got.
    for (uint32_t id = 1; id <= kEntries; ++id) {
      PeerEntryView entry = table.Entry(id).value();
      if (entry.State().Is(PeerState::kReserved)) {
        ASSERT_TRUE(entry.ReleaseFenced(last_epoch[id]).ok()) << "peer " << id;
      } else {
        ASSERT_TRUE(entry.GoodbyeFenced(last_epoch[id]).ok()) << "peer " << id;
        entry.Reset();
      }
    }
  }

  for (int child = 0; child < kProcesses; ++child) {
    EXPECT_EQ(children[child]->Wait(), kChildOk) << "child " << child;
  }
  for (uint32_t id = 1; id <= kEntries; ++id) {
    EXPECT_EQ(last_epoch[id], kRounds) << "peer " << id;
  }
  EXPECT_LT(Clock::now(), deadline);
}

}  // namespace
}  // namespace shmhub::shm
