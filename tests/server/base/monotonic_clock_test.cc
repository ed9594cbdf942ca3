// The daemon's clock helpers: the heartbeat clock and saturating arithmetic.
#include "server/base/monotonic_clock.h"

#include <time.h>

#include <cstdint>
#include <limits>

#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace shmhub::server {
namespace {

TEST(MonotonicClockTest, ReadsTheClockGuestsWriteHeartbeatsWith) {
  timespec ts{};
  ASSERT_EQ(::clock_gettime(CLOCK_MONOTONIC, &ts), 0);
  const uint64_t before = static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000u + ts.tv_nsec;
  const uint64_t now = MonotonicNowNs();
  ASSERT_EQ(::clock_gettime(CLOCK_MONOTONIC, &ts), 0);
  const uint64_t after = static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000u + ts.tv_nsec;
  EXPECT_LE(before, now);
  EXPECT_LE(now, after);
}

TEST(MonotonicClockTest, ElapsedTreatsAReadingFromTheFutureAsJustWritten) {
  EXPECT_EQ(ElapsedNs(100, 250), 150u);
  EXPECT_EQ(ElapsedNs(250, 100), 0u);
  EXPECT_EQ(ElapsedNs(0, std::numeric_limits<uint64_t>::max()),
            std::numeric_limits<uint64_t>::max());
}

TEST(MonotonicClockTest, ToNsClampsNegativeToZeroAndInfiniteToTheMaximum) {
  EXPECT_EQ(ToNs(absl::Milliseconds(15)), 15'000'000u);
  EXPECT_EQ(ToNs(-absl::Seconds(1)), 0u);
  EXPECT_EQ(ToNs(absl::InfiniteDuration()), std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(ToNs(absl::Hours(24 * 365 * 1000)), std::numeric_limits<uint64_t>::max());
}

}  // namespace
}  // namespace shmhub::server
