// WatchDispatcher on its own, with a real EventJournal: the stream limit,
// closing, journal wakes and ticks reaching the pumps, and Unregister
// never returning while the stream's pump still runs.
#include "server/rpc/watch_dispatcher.h"

#include <atomic>
#include <memory>
#include <thread>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/hub/event_journal.h"

namespace shmhub::server {
namespace {

using ::testing::HasSubstr;

template <typename Condition>
bool WaitFor(Condition condition, absl::Duration timeout = absl::Seconds(10)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!condition()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(1));
  }
  return true;
}

TEST(WatchDispatcherTest, RefusesStreamsBeyondTheLimitAndAfterClose) {
  EventJournal journal("instance", 16);
  WatchDispatcher dispatcher(&journal, 2, absl::Seconds(10));
  absl::StatusOr<uint64_t> a = dispatcher.Register([] {});
  absl::StatusOr<uint64_t> b = dispatcher.Register([] {});
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(*a, 0u);
  EXPECT_NE(*a, *b);
  absl::StatusOr<uint64_t> c = dispatcher.Register([] {});
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(c.status().message(), HasSubstr("--max_watchers is 2"));

  dispatcher.Unregister(*a);
  EXPECT_EQ(dispatcher.size(), 1u);
  dispatcher.Close();
  absl::StatusOr<uint64_t> d = dispatcher.Register([] {});
  EXPECT_EQ(d.status().code(), absl::StatusCode::kUnavailable);
  dispatcher.Unregister(*b);
  EXPECT_TRUE(dispatcher.WaitUntilEmpty(absl::Now()));
}

TEST(WatchDispatcherTest, JournalWakesRunTheStreamsPumpOnTheDispatcherThread) {
  EventJournal journal("instance", 16);
  WatchDispatcher dispatcher(&journal, 4, absl::Seconds(10));
  std::atomic<int> pumps{0};
  absl::StatusOr<uint64_t> id = dispatcher.Register([&pumps] {
    pumps.fetch_add(1, std::memory_order_relaxed);  // a counter only
  });
  ASSERT_TRUE(id.ok());
  EventJournal::SubscribeResult sub =
      journal.Subscribe(0, 8, [&dispatcher, id = *id] { dispatcher.MarkReady(id); });
  ASSERT_NE(sub.subscription, nullptr);
  journal.Append(v1::PeerEvent());
  EXPECT_TRUE(WaitFor([&] { return pumps.load(std::memory_order_relaxed) >= 1; }));
  sub.subscription.reset();
  dispatcher.Unregister(*id);
}

TEST(WatchDispatcherTest, TicksWakeEveryStream) {
  EventJournal journal("instance", 16);
  WatchDispatcher dispatcher(&journal, 4, absl::Milliseconds(5));
  std::atomic<int> pumps{0};
  absl::StatusOr<uint64_t> id =
      dispatcher.Register([&pumps] { pumps.fetch_add(1, std::memory_order_relaxed); });
  ASSERT_TRUE(id.ok());
  EventJournal::SubscribeResult sub =
      journal.Subscribe(0, 8, [&dispatcher, id = *id] { dispatcher.MarkReady(id); });
  ASSERT_NE(sub.subscription, nullptr);
  // No event is appended: only ticks can run the pump, repeatedly.
  EXPECT_TRUE(WaitFor([&] { return pumps.load(std::memory_order_relaxed) >= 3; }));
  sub.subscription.reset();
  dispatcher.Unregister(*id);
}

TEST(WatchDispatcherTest, UnregisterWaitsForARunningPumpAndUnknownIdsAreIgnored) {
  EventJournal journal("instance", 16);
  WatchDispatcher dispatcher(&journal, 4, absl::Seconds(10));
  absl::Notification pump_entered;
  absl::Notification release_pump;
  std::atomic<bool> pump_finished{false};
  absl::StatusOr<uint64_t> id = dispatcher.Register([&] {
    if (pump_entered.HasBeenNotified()) return;
    pump_entered.Notify();
    release_pump.WaitForNotification();
    pump_finished.store(true, std::memory_order_release);  // read after Unregister
  });
  ASSERT_TRUE(id.ok());
  dispatcher.MarkReady(*id + 1000);  // no such stream
  dispatcher.MarkReady(*id);
  ASSERT_TRUE(pump_entered.WaitForNotificationWithTimeout(absl::Seconds(10)));

  std::atomic<bool> unregistered{false};
  std::thread unregister([&] {
    dispatcher.Unregister(*id);
    unregistered.store(true, std::memory_order_release);
  });
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_FALSE(unregistered.load(std::memory_order_acquire));
  release_pump.Notify();
  unregister.join();
  EXPECT_TRUE(pump_finished.load(std::memory_order_acquire));
  EXPECT_EQ(dispatcher.size(), 0u);
}

TEST(WatchDispatcherTest, APumpMayUnregisterItsOwnStream) {
  EventJournal journal("instance", 16);
  WatchDispatcher dispatcher(&journal, 4, absl::Seconds(10));
  absl::Notification done;
  uint64_t self = 0;
  absl::Notification registered;
  absl::StatusOr<uint64_t> id = dispatcher.Register([&] {
    registered.WaitForNotification();
    dispatcher.Unregister(self);
    done.Notify();
  });
  ASSERT_TRUE(id.ok());
  self = *id;
  registered.Notify();
  dispatcher.MarkReady(*id);
  EXPECT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_TRUE(dispatcher.WaitUntilEmpty(absl::Now() + absl::Seconds(10)));
}

}  // namespace
}  // namespace shmhub::server
