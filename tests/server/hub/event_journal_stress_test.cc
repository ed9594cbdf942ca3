// EventJournal under threads: appenders racing each other, subscriptions
// created, drained and woken on other threads. Every subscription must see
// the one journal order, with no gap and no duplicate; a subscription that
// falls behind must be told (kOverflowed), never skipped ahead.
//
// Consumers only re-drain after a wake (or to subscribe), so a missing wake
// stalls them and fails the test at its deadline.
#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "server/hub/event_journal.h"

namespace shmhub::server {
namespace {

using Pull = EventJournal::Subscription::Pull;

constexpr uint32_t kAppenders = 2;
constexpr uint32_t kEventsPerAppender = 5000;
constexpr uint64_t kTotalEvents = uint64_t{kAppenders} * kEventsPerAppender;
// Small, so history is pruned many times over during the run.
constexpr uint32_t kCapacity = 256;
constexpr absl::Duration kDeadline = absl::Seconds(60);

// Which appender made an event and its index there, packed into one value.
uint64_t EventId(const v1::PeerEvent& event) {
  return (uint64_t{event.peer_id()} << 32) | event.epoch();
}

void AppendAll(EventJournal& journal, uint32_t appender, uint32_t first, uint32_t last) {
  for (uint32_t i = first; i <= last; ++i) {
    v1::PeerEvent event;
    event.set_peer_id(appender);
    event.set_epoch(i);
    event.set_kind(v1::EVENT_KIND_RESERVED);
    journal.Append(std::move(event));
  }
}

// One subscription and what it delivered.
struct Watcher {
  std::unique_ptr<EventJournal::Subscription> subscription;
  uint64_t after = 0;
  std::vector<uint64_t> ids;  // ids[i] is the event with sequence after + 1 + i
  uint64_t gaps_or_duplicates = 0;
  bool overflowed = false;

  // Pulls until nothing is pending, the subscription overflowed, or
  // `max_events` were pulled.
  void PullUpTo(uint64_t max_events) {
    v1::PeerEvent event;
    for (uint64_t pulled = 0; pulled < max_events; ++pulled) {
      const Pull pull = subscription->Next(&event);
      if (pull == Pull::kOverflowed) overflowed = true;
      if (pull != Pull::kEvent) break;
      if (event.sequence() != after + 1 + ids.size()) ++gaps_or_duplicates;
      ids.push_back(EventId(event));
    }
  }
};

// Counts wakes for one consumer thread. Wake only bumps an atomic: it runs
// under the journal's lock and must not block.
struct WakeCounter {
  std::atomic<uint64_t> wakes{0};
  std::function<void()> Callback() {
    // Release pairs with the acquire in WaitForChange; the events themselves
    // are ordered by the subscription's mutex, this orders only the count.
    return [this] { wakes.fetch_add(1, std::memory_order_release); };
  }
  // Waits until the count differs from `seen`, `also` holds, or the deadline.
  bool WaitForChange(uint64_t seen, absl::Time deadline, const std::function<bool()>& also) {
    while (wakes.load(std::memory_order_acquire) == seen) {
      if (also()) return true;
      if (absl::Now() >= deadline) return false;
      absl::SleepFor(absl::Microseconds(50));
    }
    return true;
  }
};

// 200 subscriptions on 4 threads. Half subscribe before the first event
// (after 0); the other half subscribe from their threads while the
// appenders are paused at the halfway point (after kTotalEvents / 2). Two
// appenders write kEventsPerAppender events each.
TEST(EventJournalStressTest, TwoHundredSubscriptionsSeeOneOrderWithoutGapOrDuplicate) {
  constexpr int kConsumers = 4;
  constexpr int kEarlyPerConsumer = 25;
  constexpr int kLatePerConsumer = 25;
  constexpr uint32_t kQueueLimit = kTotalEvents;  // fast watchers never overflow

  EventJournal journal("stress-instance", kCapacity);
  const absl::Time deadline = absl::Now() + kDeadline;
  std::vector<WakeCounter> counters(kConsumers);
  std::vector<std::vector<Watcher>> watchers(kConsumers);
  std::atomic<int> early_subscribed{0};
  std::atomic<int> late_subscribed{0};
  std::atomic<int> failed_subscribes{0};
  std::atomic<bool> timed_out{false};

  auto wait_for = [&](const std::atomic<int>& count, int target) {
    while (count.load() < target && absl::Now() < deadline) absl::SleepFor(absl::Microseconds(50));
    return count.load() >= target;
  };

  std::vector<std::thread> consumers;
  for (int c = 0; c < kConsumers; ++c) {
    consumers.emplace_back([&, c] {
      std::vector<Watcher>& mine = watchers[c];
      auto subscribe = [&](uint64_t after) {
        EventJournal::SubscribeResult result =
            journal.Subscribe(after, kQueueLimit, counters[c].Callback());
        if (result.subscription == nullptr) {
          failed_subscribes.fetch_add(1);
          return;
        }
        Watcher watcher;
        watcher.subscription = std::move(result.subscription);
        watcher.after = after;
        mine.push_back(std::move(watcher));
      };
      for (int i = 0; i < kEarlyPerConsumer; ++i) subscribe(0);
      early_subscribed.fetch_add(1);

      bool late_done = false;
      auto late_due = [&] { return !late_done && journal.last_sequence() >= kTotalEvents / 2; };
      while (true) {
        const uint64_t seen = counters[c].wakes.load(std::memory_order_acquire);
        if (late_due()) {
          // The appenders are paused, so last_sequence() is exactly halfway.
          const uint64_t after = journal.last_sequence();
          for (int i = 0; i < kLatePerConsumer; ++i) subscribe(after);
          late_done = true;
          late_subscribed.fetch_add(1);
        }
        bool complete = late_done;
        for (Watcher& watcher : mine) {
          watcher.PullUpTo(UINT64_MAX);
          if (watcher.subscription->delivered_through() != kTotalEvents) complete = false;
        }
        if (complete) break;
        if (!counters[c].WaitForChange(seen, deadline, late_due)) {
          timed_out.store(true);
          break;
        }
      }
    });
  }

  std::vector<std::thread> appenders;
  std::atomic<bool> appenders_gave_up{false};
  for (uint32_t a = 1; a <= kAppenders; ++a) {
    appenders.emplace_back([&, a] {
      if (!wait_for(early_subscribed, kConsumers)) appenders_gave_up.store(true);
      AppendAll(journal, a, 1, kEventsPerAppender / 2);
      // Hold the second half back until every late subscription exists, so
      // those start exactly at the halfway sequence.
      if (!wait_for(late_subscribed, kConsumers)) appenders_gave_up.store(true);
      AppendAll(journal, a, kEventsPerAppender / 2 + 1, kEventsPerAppender);
    });
  }
  for (std::thread& t : appenders) t.join();
  for (std::thread& t : consumers) t.join();

  ASSERT_FALSE(appenders_gave_up.load()) << "subscriptions not in place within the deadline";
  ASSERT_FALSE(timed_out.load()) << "a consumer stalled: a wake was missed or events were lost";
  ASSERT_EQ(failed_subscribes.load(), 0);
  ASSERT_EQ(journal.last_sequence(), kTotalEvents);
  EXPECT_EQ(journal.oldest_sequence(), kTotalEvents - kCapacity + 1);
  EXPECT_EQ(journal.subscription_count(),
            static_cast<size_t>(kConsumers * (kEarlyPerConsumer + kLatePerConsumer)));

  // The reference order is the first early watcher's; it must hold each
  // appender's events once, in the order that appender made them.
  const std::vector<uint64_t>& reference = watchers[0][0].ids;
  ASSERT_EQ(reference.size(), kTotalEvents);
  std::vector<uint32_t> next_index(kAppenders + 1, 1);
  for (uint64_t id : reference) {
    const uint32_t appender = static_cast<uint32_t>(id >> 32);
    ASSERT_GE(appender, 1u);
    ASSERT_LE(appender, kAppenders);
    ASSERT_EQ(static_cast<uint32_t>(id), next_index[appender]) << "appender " << appender;
    ++next_index[appender];
  }

  size_t checked = 0;
  for (int c = 0; c < kConsumers; ++c) {
    ASSERT_EQ(watchers[c].size(), static_cast<size_t>(kEarlyPerConsumer + kLatePerConsumer));
    EXPECT_GT(counters[c].wakes.load(), 0u);
    for (const Watcher& watcher : watchers[c]) {
      SCOPED_TRACE(testing::Message() << "consumer " << c << " after " << watcher.after);
      EXPECT_TRUE(watcher.after == 0 || watcher.after == kTotalEvents / 2);
      EXPECT_EQ(watcher.gaps_or_duplicates, 0u);
      EXPECT_FALSE(watcher.overflowed);
      ASSERT_EQ(watcher.ids.size(), kTotalEvents - watcher.after);
      EXPECT_TRUE(std::equal(watcher.ids.begin(), watcher.ids.end(),
                             reference.begin() + static_cast<std::ptrdiff_t>(watcher.after)));
      ++checked;
    }
  }
  EXPECT_EQ(checked, 200u);
}

// Slow subscriptions (queue limit 8) while two appenders run. The throttled
// ones may or may not keep up; the idle ones cannot. Either way, what each
// delivered is a contiguous run from sequence 1, ending either at the last
// event or in kOverflowed.
TEST(EventJournalStressTest, SlowSubscriptionsOverflowInsteadOfSkippingEvents) {
  constexpr int kThrottled = 10;
  constexpr int kIdle = 10;
  constexpr uint32_t kQueueLimit = 8;

  EventJournal journal("stress-instance", kCapacity);
  WakeCounter counter;
  std::vector<Watcher> throttled(kThrottled);
  std::vector<Watcher> idle(kIdle);
  for (std::vector<Watcher>* group : {&throttled, &idle}) {
    for (Watcher& watcher : *group) {
      watcher.subscription = journal.Subscribe(0, kQueueLimit, counter.Callback()).subscription;
      ASSERT_NE(watcher.subscription, nullptr);
    }
  }

  std::atomic<int> appenders_done{0};
  std::vector<std::thread> appenders;
  for (uint32_t a = 1; a <= kAppenders; ++a) {
    appenders.emplace_back([&, a] {
      AppendAll(journal, a, 1, kEventsPerAppender);
      appenders_done.fetch_add(1);
    });
  }
  // While the appenders run: one event per throttled watcher per pass, with
  // a pause between passes. Their work is bounded, so this loop is too.
  while (appenders_done.load() < static_cast<int>(kAppenders)) {
    for (Watcher& watcher : throttled) watcher.PullUpTo(1);
    absl::SleepFor(absl::Microseconds(100));
  }
  for (std::thread& t : appenders) t.join();
  // Nothing is appended any more: one full drain is final.
  for (std::vector<Watcher>* group : {&throttled, &idle}) {
    for (Watcher& watcher : *group) watcher.PullUpTo(UINT64_MAX);
  }

  int overflowed = 0;
  for (std::vector<Watcher>* group : {&throttled, &idle}) {
    for (Watcher& watcher : *group) {
      EXPECT_EQ(watcher.gaps_or_duplicates, 0u);
      const uint64_t delivered = watcher.subscription->delivered_through();
      EXPECT_EQ(delivered, watcher.ids.size());
      if (watcher.overflowed) {
        ++overflowed;
        // The event that overflowed it was never delivered.
        EXPECT_LT(delivered, kTotalEvents);
        v1::PeerEvent event;
        EXPECT_EQ(watcher.subscription->Next(&event), Pull::kOverflowed);
      } else {
        EXPECT_EQ(delivered, kTotalEvents);
      }
    }
  }
  for (const Watcher& watcher : idle) {
    EXPECT_TRUE(watcher.overflowed);
    EXPECT_TRUE(watcher.ids.empty());
  }
  EXPECT_GT(counter.wakes.load(), 0u);
  RecordProperty("overflowed", overflowed);
}

}  // namespace
}  // namespace shmhub::server
