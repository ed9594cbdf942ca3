// SpinLock: mutual exclusion between threads that contend for it, including
// more threads than this machine has CPUs (a holder preempted while others
// spin must still get to finish: the waiters yield).
#include "client/link/spin_lock.h"

#include <cstdint>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace shmhub::client {
namespace {

TEST(SpinLock, ContendingThreadsNeverLoseAnUpdateMadeUnderTheLock) {
  constexpr int kThreads = 4;
  constexpr int kIncrements = 100'000;
  SpinLock lock;
  // Two words updated non-atomically under the lock: a lost update or a torn
  // pair shows up in the totals.
  uint64_t count = 0;
  uint64_t shadow = 0;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kIncrements; ++i) {
        SpinLockHolder holder(&lock);
        const uint64_t seen = count;
        count = seen + 1;
        shadow += 1;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(count, uint64_t{kThreads} * kIncrements);
  EXPECT_EQ(shadow, count);
}

}  // namespace
}  // namespace shmhub::client
