// WatchEvents end to end over real loopback gRPC against an in-process
// server: snapshot-first, resume, every kind of Resync, progress on idle
// streams, the watcher limit, many concurrent watchers, and shutdown.
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/support/channel_arguments.h"
#include "gtest/gtest.h"
#include "shm/segment.h"
#include "tests/server/in_process_hub.h"

namespace shmhub::server {
namespace {

using ::shmhub::server::testing::InProcessHub;
using ::shmhub::server::testing::TestWatcher;
using ::testing::HasSubstr;

v1::WatchEventsRequest FromNow() { return v1::WatchEventsRequest(); }

v1::WatchEventsRequest SnapshotFirst() {
  v1::WatchEventsRequest request;
  request.set_snapshot_first(true);
  return request;
}

v1::WatchEventsRequest ResumeAfter(uint64_t sequence, const std::string& instance) {
  v1::WatchEventsRequest request;
  request.set_resume_after_sequence(sequence);
  request.set_hub_instance_id(instance);
  return request;
}

// Polls `condition` until it holds or `timeout` passes.
template <typename Condition>
bool WaitFor(Condition condition, absl::Duration timeout = absl::Seconds(10)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!condition()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(2));
  }
  return true;
}

// Takes the next non-Progress message and checks it is the event `sequence`.
void ExpectEvent(TestWatcher& watcher, uint64_t sequence, v1::EventKind kind) {
  std::optional<v1::WatchEventsResponse> message = watcher.NextNonProgress();
  ASSERT_TRUE(message.has_value()) << "no event " << sequence;
  ASSERT_TRUE(message->has_event()) << message->DebugString();
  EXPECT_EQ(message->event().sequence(), sequence);
  EXPECT_EQ(message->event().kind(), kind);
}

// Takes the next non-Progress message and checks it is a Resync for `reason`
// followed by a Snapshot; returns the snapshot.
v1::Snapshot ExpectResyncThenSnapshot(TestWatcher& watcher, v1::Resync::Reason reason) {
  std::optional<v1::WatchEventsResponse> resync = watcher.NextNonProgress();
  EXPECT_TRUE(resync.has_value() && resync->has_resync())
      << (resync.has_value() ? resync->DebugString() : "nothing");
  if (!resync.has_value() || !resync->has_resync()) return {};
  EXPECT_EQ(resync->resync().reason(), reason) << resync->DebugString();
  EXPECT_FALSE(resync->resync().message().empty());
  std::optional<v1::WatchEventsResponse> snapshot = watcher.NextNonProgress();
  EXPECT_TRUE(snapshot.has_value() && snapshot->has_snapshot());
  if (!snapshot.has_value() || !snapshot->has_snapshot()) return {};
  return snapshot->snapshot();
}

TEST(WatchEventsTest, SnapshotFirstSendsTheSnapshotThenTheEventsAfterIt) {
  InProcessHub hub;
  ASSERT_TRUE(hub.ok());
  v1::ReservePeerResponse reserved = hub.Reserve();  // event 1
  TestWatcher watcher(hub.stub(), SnapshotFirst());
  std::optional<v1::WatchEventsResponse> first = watcher.Next();
  ASSERT_TRUE(first.has_value());
  ASSERT_TRUE(first->has_snapshot()) << first->DebugString();
  EXPECT_EQ(first->snapshot().sequence(), 1u);
  EXPECT_EQ(first->snapshot().hub_instance_id(), hub.server().hub_instance_id());
  ASSERT_EQ(first->snapshot().peers_size(), 8);
  EXPECT_EQ(first->snapshot().peers(0).state(), v1::PEER_STATE_RESERVED);

  hub.Release(reserved.peer_id(), reserved.epoch());  // event 2
  ExpectEvent(watcher, 2, v1::EVENT_KIND_RELEASED);
}

TEST(WatchEventsTest, WatchingFromNowGetsOnlyLaterEvents) {
  InProcessHub hub;
  ASSERT_TRUE(hub.ok());
  hub.ReserveAndRelease();  // events 1, 2
  TestWatcher watcher(hub.stub(), FromNow());
  ASSERT_TRUE(WaitFor([&] { return hub.server().service().watcher_count() == 1; }));
  hub.Reserve();  // event 3
  ExpectEvent(watcher, 3, v1::EVENT_KIND_RESERVED);
}

TEST(WatchEventsTest, ResumeAfterNGetsExactlyTheEventsAfterN) {
  InProcessHub hub;
  ASSERT_TRUE(hub.ok());
  for (int i = 0; i < 5; ++i) hub.ReserveAndRelease();  // events 1..10
  const std::string instance = hub.server().hub_instance_id();

  TestWatcher from_four(hub.stub(), ResumeAfter(4, instance));
  for (uint64_t sequence = 5; sequence <= 10; ++sequence) {
    ExpectEvent(from_four, sequence,
                sequence % 2 == 1 ? v1::EVENT_KIND_RESERVED : v1::EVENT_KIND_RELEASED);
  }
  TestWatcher from_start(hub.stub(), ResumeAfter(0, instance));
  for (uint64_t sequence = 1; sequence <= 10; ++sequence) {
    ExpectEvent(from_start, sequence,
                sequence % 2 == 1 ? v1::EVENT_KIND_RESERVED : v1::EVENT_KIND_RELEASED);
  }
  // Nothing else is pending: the next event is the next one made.
  hub.Reserve();  // event 11
  ExpectEvent(from_four, 11, v1::EVENT_KIND_RESERVED);
  ExpectEvent(from_start, 11, v1::EVENT_KIND_RESERVED);
}

TEST(WatchEventsTest, ResumeWithoutAnInstanceIdIsTakenAsThisInstance) {
  InProcessHub hub;
  ASSERT_TRUE(hub.ok());
  hub.ReserveAndRelease();  // events 1, 2
  TestWatcher watcher(hub.stub(), ResumeAfter(1, ""));
  ExpectEvent(watcher, 2, v1::EVENT_KIND_RELEASED);
}

TEST(WatchEventsTest, ResumeFromPrunedHistoryGetsResyncThenASnapshot) {
  InProcessHub hub([](HubConfig& config) { config.journal_capacity = 16; });
  ASSERT_TRUE(hub.ok());
  for (int i = 0; i < 20; ++i) hub.ReserveAndRelease();  // events 1..40; 25..40 held
  TestWatcher watcher(hub.stub(), ResumeAfter(2, hub.server().hub_instance_id()));
  std::optional<v1::WatchEventsResponse> resync = watcher.NextNonProgress();
  ASSERT_TRUE(resync.has_value() && resync->has_resync());
  EXPECT_EQ(resync->resync().reason(), v1::Resync::REASON_HISTORY_PRUNED);
  EXPECT_EQ(resync->resync().oldest_available_sequence(), 25u);
  std::optional<v1::WatchEventsResponse> snapshot = watcher.NextNonProgress();
  ASSERT_TRUE(snapshot.has_value() && snapshot->has_snapshot());
  EXPECT_EQ(snapshot->snapshot().sequence(), 40u);
  hub.Reserve();  // event 41
  ExpectEvent(watcher, 41, v1::EVENT_KIND_RESERVED);
}

TEST(WatchEventsTest, ResumeAheadOfThisInstanceGetsResyncThenASnapshot) {
  InProcessHub hub;
  ASSERT_TRUE(hub.ok());
  hub.ReserveAndRelease();  // events 1, 2
  TestWatcher watcher(hub.stub(), ResumeAfter(1000, hub.server().hub_instance_id()));
  v1::Snapshot snapshot = ExpectResyncThenSnapshot(watcher, v1::Resync::REASON_SEQUENCE_AHEAD);
  EXPECT_EQ(snapshot.sequence(), 2u);
}

TEST(WatchEventsTest, ResumeFromAnotherInstanceGetsResyncInstanceChangedThenASnapshot) {
  InProcessHub hub;
  ASSERT_TRUE(hub.ok());
  hub.ReserveAndRelease();  // events 1, 2
  TestWatcher watcher(hub.stub(), ResumeAfter(1, "0123456789abcdef-not-this-one"));
  v1::Snapshot snapshot = ExpectResyncThenSnapshot(watcher, v1::Resync::REASON_INSTANCE_CHANGED);
  EXPECT_EQ(snapshot.sequence(), 2u);
  EXPECT_EQ(snapshot.hub_instance_id(), hub.server().hub_instance_id());
  hub.Reserve();  // event 3
  ExpectEvent(watcher, 3, v1::EVENT_KIND_RESERVED);
}

TEST(WatchEventsTest, SlowWatcherGetsResyncAndSnapshotAndNeverAGap) {
  InProcessHub hub([](HubConfig& config) {
    config.watcher_queue = 4;
    config.journal_capacity = 1 << 16;
  });
  ASSERT_TRUE(hub.ok());
  // A client that reads nothing for a while: once gRPC's flow-control
  // window is full the server cannot write, and the watcher's queue of 4
  // overflows. Big labels fill the window with few events.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(hub.server().address(), grpc::InsecureChannelCredentials(), args);
  std::unique_ptr<v1::PeerHub::Stub> stub = v1::PeerHub::NewStub(channel);
  TestWatcher watcher(*stub, SnapshotFirst(), /*start_paused=*/true);
  ASSERT_TRUE(WaitFor([&] { return hub.server().service().watcher_count() == 1; }));

  v1::ReservePeerRequest big;
  for (int i = 0; i < 32; ++i)
    (*big.mutable_labels())[absl::StrCat("label", i)] = std::string(256, 'x');
  for (int i = 0; i < 300; ++i) {
    v1::ReservePeerResponse r = hub.Reserve(big);
    hub.Release(r.peer_id(), r.epoch());
  }
  const uint64_t last = hub.server().journal().last_sequence();
  watcher.Resume();

  // Every event after the current position arrives, in order; a Resync is
  // always followed by a Snapshot that does not go back in time.
  uint64_t next = 0;  // sequence expected next, 0 before the first snapshot
  int resyncs = 0;
  bool want_snapshot = true;
  while (next <= last) {
    std::optional<v1::WatchEventsResponse> message = watcher.NextNonProgress();
    ASSERT_TRUE(message.has_value()) << "stream stalled expecting sequence " << next;
    if (message->has_resync()) {
      EXPECT_EQ(message->resync().reason(), v1::Resync::REASON_SLOW_WATCHER);
      ++resyncs;
      want_snapshot = true;
    } else if (message->has_snapshot()) {
      ASSERT_TRUE(want_snapshot) << "a snapshot without a resync";
      ASSERT_GE(message->snapshot().sequence() + 1, next) << "snapshot went back in time";
      next = message->snapshot().sequence() + 1;
      want_snapshot = false;
    } else {
      ASSERT_FALSE(want_snapshot) << "an event between a resync and its snapshot";
      ASSERT_EQ(message->event().sequence(), next) << "a gap in the event stream";
      ++next;
    }
  }
  EXPECT_GE(resyncs, 1);
}

TEST(WatchEventsTest, IdleStreamGetsProgressWithTheCurrentSequence) {
  InProcessHub hub(
      [](HubConfig& config) { config.watch_progress_interval = absl::Milliseconds(50); });
  ASSERT_TRUE(hub.ok());
  hub.ReserveAndRelease();  // events 1, 2
  TestWatcher watcher(hub.stub(), FromNow());
  std::optional<v1::WatchEventsResponse> progress = watcher.Next();
  ASSERT_TRUE(progress.has_value() && progress->has_progress());
  EXPECT_EQ(progress->progress().sequence(), 2u);
  EXPECT_EQ(progress->progress().hub_instance_id(), hub.server().hub_instance_id());
  EXPECT_TRUE(progress->progress().has_time());

  hub.Reserve();  // event 3
  ExpectEvent(watcher, 3, v1::EVENT_KIND_RESERVED);
  // Progress keeps coming while idle, now carrying 3.
  for (int i = 0; i < 3; ++i) {
    progress = watcher.Next();
    ASSERT_TRUE(progress.has_value() && progress->has_progress());
    EXPECT_EQ(progress->progress().sequence(), 3u);
  }
}

TEST(WatchEventsTest, WatchersBeyondMaxWatchersGetResourceExhausted) {
  InProcessHub hub([](HubConfig& config) { config.max_watchers = 2; });
  ASSERT_TRUE(hub.ok());
  auto first = std::make_unique<TestWatcher>(hub.stub(), SnapshotFirst());
  TestWatcher second(hub.stub(), SnapshotFirst());
  ASSERT_TRUE(first->Next().has_value());
  ASSERT_TRUE(second.Next().has_value());

  TestWatcher refused(hub.stub(), SnapshotFirst());
  std::optional<grpc::Status> status = refused.Status();
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(status->error_message(), HasSubstr("--max_watchers is 2"));
  EXPECT_FALSE(refused.Next(absl::ZeroDuration()).has_value());

  // A closed stream frees its place.
  first.reset();
  ASSERT_TRUE(WaitFor([&] { return hub.server().service().watcher_count() == 1; }));
  TestWatcher admitted(hub.stub(), SnapshotFirst());
  std::optional<v1::WatchEventsResponse> snapshot = admitted.Next();
  ASSERT_TRUE(snapshot.has_value());
  EXPECT_TRUE(snapshot->has_snapshot());
}

TEST(WatchEventsTest, CancelledStreamsAreCleanedUp) {
  InProcessHub hub;
  ASSERT_TRUE(hub.ok());
  std::vector<std::unique_ptr<TestWatcher>> watchers;
  for (int i = 0; i < 10; ++i) {
    watchers.push_back(std::make_unique<TestWatcher>(hub.stub(), SnapshotFirst()));
  }
  for (auto& watcher : watchers) ASSERT_TRUE(watcher->Next().has_value());
  EXPECT_EQ(hub.server().service().watcher_count(), 10u);
  for (auto& watcher : watchers) watcher->Cancel();
  EXPECT_TRUE(WaitFor([&] { return hub.server().service().watcher_count() == 0; }));
  // Events with no watchers left are fine.
  hub.ReserveAndRelease();
}

TEST(WatchEventsTest, TwoHundredConcurrentWatchersAllSeeTheSameOrderedSequence) {
  constexpr int kWatchers = 200;
  InProcessHub hub;
  ASSERT_TRUE(hub.ok());
  std::vector<std::unique_ptr<TestWatcher>> watchers;
  std::vector<uint64_t> start(kWatchers);
  for (int i = 0; i < kWatchers; ++i) {
    watchers.push_back(std::make_unique<TestWatcher>(hub.stub(), SnapshotFirst()));
  }
  // Events start while watchers are still connecting: each one's snapshot
  // says where its events begin.
  std::vector<std::thread> makers;
  for (int t = 0; t < 4; ++t) {
    makers.emplace_back([&hub] {
      for (int i = 0; i < 25; ++i) hub.ReserveAndRelease();
    });
  }
  for (int i = 0; i < kWatchers; ++i) {
    std::optional<v1::WatchEventsResponse> snapshot = watchers[i]->Next();
    ASSERT_TRUE(snapshot.has_value() && snapshot->has_snapshot()) << "watcher " << i;
    start[i] = snapshot->snapshot().sequence();
  }
  for (std::thread& maker : makers) maker.join();
  const uint64_t last = hub.server().journal().last_sequence();
  ASSERT_EQ(last, 200u);

  // What the journal says happened, event by event.
  std::vector<std::tuple<uint64_t, v1::EventKind, uint32_t, uint32_t>> truth;
  TestWatcher replay(hub.stub(), ResumeAfter(0, hub.server().hub_instance_id()));
  for (uint64_t sequence = 1; sequence <= last; ++sequence) {
    std::optional<v1::WatchEventsResponse> m = replay.NextNonProgress();
    ASSERT_TRUE(m.has_value() && m->has_event());
    ASSERT_EQ(m->event().sequence(), sequence);
    truth.emplace_back(sequence, m->event().kind(), m->event().peer_id(), m->event().epoch());
  }
  for (int i = 0; i < kWatchers; ++i) {
    SCOPED_TRACE(absl::StrCat("watcher ", i));
    for (uint64_t sequence = start[i] + 1; sequence <= last; ++sequence) {
      std::optional<v1::WatchEventsResponse> m = watchers[i]->NextNonProgress();
      ASSERT_TRUE(m.has_value() && m->has_event());
      ASSERT_EQ(std::make_tuple(m->event().sequence(), m->event().kind(), m->event().peer_id(),
                                m->event().epoch()),
                truth[sequence - 1]);
    }
  }
}

TEST(WatchEventsTest, ShutdownDeliversHostShutdownEndsStreamsAndRemovesTheSegment) {
  InProcessHub hub;
  ASSERT_TRUE(hub.ok());
  const std::string path = hub.config().segment_path;
  absl::StatusOr<std::unique_ptr<shm::Segment>> guest = shm::Segment::Attach(path);
  ASSERT_TRUE(guest.ok()) << guest.status();
  std::vector<std::unique_ptr<TestWatcher>> watchers;
  for (int i = 0; i < 3; ++i) {
    watchers.push_back(std::make_unique<TestWatcher>(hub.stub(), SnapshotFirst()));
    ASSERT_TRUE(watchers.back()->Next().has_value());
  }
  hub.server().Shutdown();
  for (auto& watcher : watchers) {
    std::optional<v1::WatchEventsResponse> last = watcher->NextNonProgress();
    ASSERT_TRUE(last.has_value() && last->has_event());
    EXPECT_EQ(last->event().kind(), v1::EVENT_KIND_HOST_SHUTDOWN);
    std::optional<grpc::Status> status = watcher->Status();
    ASSERT_TRUE(status.has_value());
    EXPECT_TRUE(status->ok()) << status->error_message();
    EXPECT_FALSE(watcher->Next(absl::ZeroDuration()).has_value());
  }
  EXPECT_TRUE((*guest)->HostGoodbye());
  EXPECT_EQ(access(path.c_str(), F_OK), -1);
  EXPECT_EQ(errno, ENOENT);
}

TEST(WatchEventsTest, NewWatchAfterShutdownBeganIsUnavailable) {
  InProcessHub hub;
  ASSERT_TRUE(hub.ok());
  TestWatcher before(hub.stub(), SnapshotFirst());
  ASSERT_TRUE(before.Next().has_value());
  hub.server().hub().BeginShutdown();
  std::optional<v1::WatchEventsResponse> goodbye = before.NextNonProgress();
  ASSERT_TRUE(goodbye.has_value() && goodbye->has_event());
  EXPECT_EQ(goodbye->event().kind(), v1::EVENT_KIND_HOST_SHUTDOWN);

  for (const v1::WatchEventsRequest& request :
       {FromNow(), SnapshotFirst(), ResumeAfter(0, hub.server().hub_instance_id())}) {
    TestWatcher after(hub.stub(), request);
    std::optional<grpc::Status> status = after.Status();
    ASSERT_TRUE(status.has_value());
    EXPECT_EQ(status->error_code(), grpc::StatusCode::UNAVAILABLE) << status->error_message();
  }
}

}  // namespace
}  // namespace shmhub::server
