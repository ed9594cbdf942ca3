// EventJournal: sequence stamping, bounded history, resume points, resyncs,
// bounded subscription queues and wake-ups, one thread at a time except for
// the last test (destruction racing appends; meant for TSan and ASan).
#include "server/hub/event_journal.h"

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace shmhub::server {
namespace {

using Pull = EventJournal::Subscription::Pull;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::IsEmpty;

constexpr char kInstance[] = "instance-7f3a";

v1::PeerEvent MakeEvent(uint32_t peer_id) {
  v1::PeerEvent event;
  event.set_peer_id(peer_id);
  event.set_epoch(peer_id * 10);
  event.set_kind(v1::EVENT_KIND_ATTACHED);
  return event;
}

void AppendEvents(EventJournal& journal, uint32_t count) {
  for (uint32_t i = 0; i < count; ++i) journal.Append(MakeEvent(i + 1));
}

// Pulls until the subscription is not kEvent; returns the sequences pulled.
// `last` receives the final Pull.
std::vector<uint64_t> Drain(EventJournal::Subscription& subscription, Pull* last = nullptr) {
  std::vector<uint64_t> sequences;
  v1::PeerEvent event;
  Pull pull;
  while ((pull = subscription.Next(&event)) == Pull::kEvent) sequences.push_back(event.sequence());
  if (last != nullptr) *last = pull;
  return sequences;
}

std::vector<uint64_t> Range(uint64_t first, uint64_t last) {
  std::vector<uint64_t> sequences;
  for (uint64_t s = first; s <= last; ++s) sequences.push_back(s);
  return sequences;
}

std::unique_ptr<EventJournal::Subscription> MustSubscribe(EventJournal& journal, uint64_t after,
                                                          uint32_t queue_limit = 1024,
                                                          std::function<void()> wake = [] {}) {
  EventJournal::SubscribeResult result = journal.Subscribe(after, queue_limit, std::move(wake));
  EXPECT_FALSE(result.resync.has_value())
      << "unexpected resync: " << result.resync->ShortDebugString();
  EXPECT_NE(result.subscription, nullptr);
  return std::move(result.subscription);
}

TEST(EventJournalTest, EmptyJournalHasLastSequenceZeroAndOldestOne) {
  EventJournal journal(kInstance, 16);
  EXPECT_EQ(journal.last_sequence(), 0u);
  EXPECT_EQ(journal.oldest_sequence(), 1u);
  EXPECT_EQ(journal.subscription_count(), 0u);
  EXPECT_EQ(journal.hub_instance_id(), kInstance);
}

TEST(EventJournalTest, SequencesStartAtOneAndIncreaseByOneWithInstanceIdAndTime) {
  EventJournal journal(kInstance, 16);
  const absl::Time before = absl::Now();
  EXPECT_EQ(journal.Append(MakeEvent(3)), 1u);
  EXPECT_EQ(journal.Append(MakeEvent(4)), 2u);
  EXPECT_EQ(journal.Append(MakeEvent(5)), 3u);
  const absl::Time after = absl::Now();
  EXPECT_EQ(journal.last_sequence(), 3u);
  EXPECT_EQ(journal.oldest_sequence(), 1u);

  auto subscription = MustSubscribe(journal, 0);
  v1::PeerEvent event;
  absl::Time previous = absl::InfinitePast();
  for (uint64_t expected = 1; expected <= 3; ++expected) {
    ASSERT_EQ(subscription->Next(&event), Pull::kEvent);
    EXPECT_EQ(event.sequence(), expected);
    EXPECT_EQ(event.hub_instance_id(), kInstance);
    // The caller's fields survive stamping.
    EXPECT_EQ(event.peer_id(), expected + 2);
    EXPECT_EQ(event.epoch(), (expected + 2) * 10);
    EXPECT_EQ(event.kind(), v1::EVENT_KIND_ATTACHED);
    ASSERT_TRUE(event.has_time());
    EXPECT_GE(event.time().nanos(), 0);
    EXPECT_LT(event.time().nanos(), 1'000'000'000);
    const absl::Time stamped =
        absl::FromUnixSeconds(event.time().seconds()) + absl::Nanoseconds(event.time().nanos());
    EXPECT_GE(stamped, absl::FromUnixNanos(absl::ToUnixNanos(before)));
    EXPECT_LE(stamped, after);
    EXPECT_GE(stamped, previous);
    previous = stamped;
  }
  EXPECT_EQ(subscription->Next(&event), Pull::kEmpty);
}

TEST(EventJournalTest, AppendOverwritesSequenceInstanceAndTimeSetByTheCaller) {
  EventJournal journal(kInstance, 16);
  v1::PeerEvent forged = MakeEvent(1);
  forged.set_sequence(99);
  forged.set_hub_instance_id("other");
  forged.mutable_time()->set_seconds(1);
  EXPECT_EQ(journal.Append(forged), 1u);

  auto subscription = MustSubscribe(journal, 0);
  v1::PeerEvent event;
  ASSERT_EQ(subscription->Next(&event), Pull::kEvent);
  EXPECT_EQ(event.sequence(), 1u);
  EXPECT_EQ(event.hub_instance_id(), kInstance);
  EXPECT_GT(event.time().seconds(), 1);
}

TEST(EventJournalTest, HistoryKeepsOnlyTheLastCapacityEvents) {
  EventJournal journal(kInstance, 4);
  AppendEvents(journal, 10);
  EXPECT_EQ(journal.last_sequence(), 10u);
  EXPECT_EQ(journal.oldest_sequence(), 7u);
  auto subscription = MustSubscribe(journal, 6);
  EXPECT_THAT(Drain(*subscription), ElementsAre(7, 8, 9, 10));
}

TEST(EventJournalTest, ResumeAfterNDeliversExactlyTheLaterHistoryThenLiveEvents) {
  EventJournal journal(kInstance, 16);
  AppendEvents(journal, 8);
  auto subscription = MustSubscribe(journal, 5);
  EXPECT_EQ(subscription->delivered_through(), 5u);
  EXPECT_THAT(Drain(*subscription), ElementsAre(6, 7, 8));
  journal.Append(MakeEvent(9));
  journal.Append(MakeEvent(10));
  EXPECT_THAT(Drain(*subscription), ElementsAre(9, 10));
  EXPECT_EQ(subscription->delivered_through(), 10u);
}

TEST(EventJournalTest, ResumeAtLastSequenceDeliversOnlyLiveEvents) {
  EventJournal journal(kInstance, 16);
  AppendEvents(journal, 8);
  auto subscription = MustSubscribe(journal, 8);
  Pull last;
  EXPECT_THAT(Drain(*subscription, &last), IsEmpty());
  EXPECT_EQ(last, Pull::kEmpty);
  journal.Append(MakeEvent(1));
  EXPECT_THAT(Drain(*subscription), ElementsAre(9));
}

TEST(EventJournalTest, ResumeFromZeroWithFullHistoryDeliversEveryEvent) {
  EventJournal journal(kInstance, 16);
  AppendEvents(journal, 16);
  EXPECT_EQ(journal.oldest_sequence(), 1u);
  auto subscription = MustSubscribe(journal, 0);
  EXPECT_THAT(Drain(*subscription), ElementsAreArray(Range(1, 16)));
}

TEST(EventJournalTest, ResumeFromZeroOnAnEmptyJournalDeliversLiveEvents) {
  EventJournal journal(kInstance, 16);
  auto subscription = MustSubscribe(journal, 0);
  EXPECT_THAT(Drain(*subscription), IsEmpty());
  AppendEvents(journal, 2);
  EXPECT_THAT(Drain(*subscription), ElementsAre(1, 2));
}

TEST(EventJournalTest, ResumeJustBeforeTheOldestHeldEventIsNotPruned) {
  EventJournal journal(kInstance, 4);
  AppendEvents(journal, 10);  // holds 7..10
  auto subscription = MustSubscribe(journal, 6);
  EXPECT_THAT(Drain(*subscription), ElementsAre(7, 8, 9, 10));
}

TEST(EventJournalTest, ResumeIntoPrunedHistoryReturnsHistoryPrunedWithTheOldestSequence) {
  EventJournal journal(kInstance, 4);
  AppendEvents(journal, 10);  // holds 7..10
  for (uint64_t after : {0u, 1u, 5u}) {
    EventJournal::SubscribeResult result = journal.Subscribe(after, 1024, [] {});
    EXPECT_EQ(result.subscription, nullptr) << "after " << after;
    ASSERT_TRUE(result.resync.has_value()) << "after " << after;
    EXPECT_EQ(result.resync->reason(), v1::Resync::REASON_HISTORY_PRUNED);
    EXPECT_EQ(result.resync->oldest_available_sequence(), 7u);
    EXPECT_THAT(result.resync->message(), ::testing::HasSubstr("pruned"));
  }
  EXPECT_EQ(journal.subscription_count(), 0u);
}

TEST(EventJournalTest, ResumeAheadOfTheLastSequenceReturnsSequenceAhead) {
  EventJournal journal(kInstance, 16);
  AppendEvents(journal, 3);
  for (uint64_t after : {4u, 1000u}) {
    EventJournal::SubscribeResult result = journal.Subscribe(after, 1024, [] {});
    EXPECT_EQ(result.subscription, nullptr);
    ASSERT_TRUE(result.resync.has_value());
    EXPECT_EQ(result.resync->reason(), v1::Resync::REASON_SEQUENCE_AHEAD);
    EXPECT_EQ(result.resync->oldest_available_sequence(), 1u);
    EXPECT_THAT(result.resync->message(), ::testing::HasSubstr("ahead"));
  }
}

TEST(EventJournalTest, ResumeOnAnEmptyJournalAfterAnySequenceIsAhead) {
  EventJournal journal(kInstance, 16);
  EventJournal::SubscribeResult result = journal.Subscribe(1, 1024, [] {});
  ASSERT_TRUE(result.resync.has_value());
  EXPECT_EQ(result.resync->reason(), v1::Resync::REASON_SEQUENCE_AHEAD);
}

TEST(EventJournalTest, ResumeWithMoreHeldEventsThanTheQueueLimitReturnsSlowWatcher) {
  EventJournal journal(kInstance, 16);
  AppendEvents(journal, 10);
  EventJournal::SubscribeResult result = journal.Subscribe(5, 4, [] {});  // backlog 5 > 4
  EXPECT_EQ(result.subscription, nullptr);
  ASSERT_TRUE(result.resync.has_value());
  EXPECT_EQ(result.resync->reason(), v1::Resync::REASON_SLOW_WATCHER);
  EXPECT_EQ(result.resync->oldest_available_sequence(), 1u);
  EXPECT_THAT(result.resync->message(), ::testing::HasSubstr("queue limit of 4"));

  auto fits = MustSubscribe(journal, 6, 4);  // backlog 4 == limit
  EXPECT_THAT(Drain(*fits), ElementsAre(7, 8, 9, 10));
}

TEST(EventJournalTest, SubscriptionHoldsExactlyQueueLimitUndeliveredEvents) {
  EventJournal journal(kInstance, 64);
  auto subscription = MustSubscribe(journal, 0, 4);
  AppendEvents(journal, 4);
  Pull last;
  EXPECT_THAT(Drain(*subscription, &last), ElementsAre(1, 2, 3, 4));
  EXPECT_EQ(last, Pull::kEmpty);
}

TEST(EventJournalTest, SlowSubscriptionOverflowsAtQueueLimitPlusOneWithoutAGap) {
  EventJournal journal(kInstance, 64);
  int wakes = 0;
  auto subscription = MustSubscribe(journal, 0, 4, [&wakes] { ++wakes; });
  AppendEvents(journal, 4);
  v1::PeerEvent event;
  ASSERT_EQ(subscription->Next(&event), Pull::kEvent);
  EXPECT_EQ(event.sequence(), 1u);
  ASSERT_EQ(subscription->Next(&event), Pull::kEvent);
  EXPECT_EQ(event.sequence(), 2u);
  // Pending: 3, 4. Two more fill the queue; the third would be a fifth.
  AppendEvents(journal, 2);
  EXPECT_EQ(wakes, 6);
  journal.Append(MakeEvent(7));  // sequence 7 does not fit
  EXPECT_EQ(wakes, 7) << "overflow must wake the watcher";
  EXPECT_EQ(subscription->Next(&event), Pull::kOverflowed);
  EXPECT_EQ(subscription->delivered_through(), 2u);
  // Overflow is permanent: later events never reappear after the gap.
  AppendEvents(journal, 3);
  EXPECT_EQ(subscription->Next(&event), Pull::kOverflowed);
  EXPECT_EQ(subscription->Next(&event), Pull::kOverflowed);
  EXPECT_EQ(wakes, 7) << "an overflowed subscription gains nothing to wake for";
}

TEST(EventJournalTest, OverflowDoesNotAffectOtherSubscriptions) {
  EventJournal journal(kInstance, 64);
  auto slow = MustSubscribe(journal, 0, 2);
  auto fast = MustSubscribe(journal, 0, 64);
  AppendEvents(journal, 5);
  Pull last;
  EXPECT_THAT(Drain(*slow, &last), IsEmpty());
  EXPECT_EQ(last, Pull::kOverflowed);
  EXPECT_THAT(Drain(*fast, &last), ElementsAre(1, 2, 3, 4, 5));
  EXPECT_EQ(last, Pull::kEmpty);
}

TEST(EventJournalTest, WakeIsCalledForEveryAppendAndByWakeAllButNotForTheInitialBacklog) {
  EventJournal journal(kInstance, 16);
  AppendEvents(journal, 3);
  int wakes_a = 0;
  int wakes_b = 0;
  auto a = MustSubscribe(journal, 0, 16, [&wakes_a] { ++wakes_a; });
  auto b = MustSubscribe(journal, 3, 16, [&wakes_b] { ++wakes_b; });
  EXPECT_EQ(wakes_a, 0);
  EXPECT_EQ(wakes_b, 0);
  AppendEvents(journal, 2);
  EXPECT_EQ(wakes_a, 2);
  EXPECT_EQ(wakes_b, 2);
  journal.WakeAll();
  EXPECT_EQ(wakes_a, 3);
  EXPECT_EQ(wakes_b, 3);
}

TEST(EventJournalTest, DestroyedSubscriptionIsNeitherCountedNorWoken) {
  EventJournal journal(kInstance, 16);
  int wakes_kept = 0;
  int wakes_dropped = 0;
  auto kept = MustSubscribe(journal, 0, 16, [&wakes_kept] { ++wakes_kept; });
  auto dropped = MustSubscribe(journal, 0, 16, [&wakes_dropped] { ++wakes_dropped; });
  auto third = MustSubscribe(journal, 0, 16);
  EXPECT_EQ(journal.subscription_count(), 3u);
  dropped.reset();
  EXPECT_EQ(journal.subscription_count(), 2u);
  journal.Append(MakeEvent(1));
  journal.WakeAll();
  EXPECT_EQ(wakes_dropped, 0);
  EXPECT_EQ(wakes_kept, 2);
  EXPECT_THAT(Drain(*kept), ElementsAre(1));
  EXPECT_THAT(Drain(*third), ElementsAre(1));
  third.reset();
  kept.reset();
  EXPECT_EQ(journal.subscription_count(), 0u);
}

TEST(EventJournalTest, ResyncedSubscribeRegistersNothing) {
  EventJournal journal(kInstance, 16);
  AppendEvents(journal, 2);
  int wakes = 0;
  EventJournal::SubscribeResult result = journal.Subscribe(9, 16, [&wakes] { ++wakes; });
  ASSERT_TRUE(result.resync.has_value());
  EXPECT_EQ(journal.subscription_count(), 0u);
  journal.Append(MakeEvent(1));
  journal.WakeAll();
  EXPECT_EQ(wakes, 0);
}

// A subscription is destroyed while another thread appends. Each wake checks
// that its subscription is still alive; a wake after the destructor returned
// (or a race on the journal's subscriber list, which TSan reports) fails.
TEST(EventJournalTest, DestroyingASubscriptionWhileAnotherThreadAppendsIsSafe) {
  // Room for many appends between reading last_sequence() and subscribing.
  EventJournal journal(kInstance, 1 << 16);
  std::atomic<bool> stop{false};
  std::atomic<int> wakes_after_destruction{0};
  std::thread appender([&] {
    while (!stop.load(std::memory_order_relaxed)) {
      journal.Append(MakeEvent(1));
      std::this_thread::yield();  // let the other thread at the lock too
    }
  });

  constexpr int kRounds = 2000;
  for (int round = 0; round < kRounds; ++round) {
    auto destroyed = std::make_shared<std::atomic<bool>>(false);
    auto woken = std::make_shared<std::atomic<bool>>(false);
    auto wake = [destroyed, woken, &wakes_after_destruction] {
      // Acquire pairs with the release below.
      if (destroyed->load(std::memory_order_acquire)) wakes_after_destruction.fetch_add(1);
      woken->store(true, std::memory_order_relaxed);
    };
    // The appender may prune past last_sequence() before Subscribe runs;
    // that resync is correct and not what this test is about, so retry.
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    std::unique_ptr<EventJournal::Subscription> subscription;
    while (subscription == nullptr && absl::Now() < deadline) {
      subscription = journal.Subscribe(journal.last_sequence(), 1 << 20, wake).subscription;
    }
    // Destroy only once appends are reaching this subscription, so the
    // destructor really races Append.
    while (subscription != nullptr && !woken->load(std::memory_order_relaxed) &&
           absl::Now() < deadline) {
      std::this_thread::yield();
    }
    if (subscription == nullptr || !woken->load(std::memory_order_relaxed)) {
      ADD_FAILURE() << "no subscription woken within 10 s in round " << round;
      break;  // still join the appender below
    }
    v1::PeerEvent event;
    EXPECT_EQ(subscription->Next(&event), Pull::kEvent);
    subscription.reset();
    // Release: a wake that still ran would see it.
    destroyed->store(true, std::memory_order_release);
  }
  stop.store(true, std::memory_order_relaxed);
  appender.join();

  EXPECT_EQ(wakes_after_destruction.load(), 0);
  EXPECT_EQ(journal.subscription_count(), 0u);
}

}  // namespace
}  // namespace shmhub::server
