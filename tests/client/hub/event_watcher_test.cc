// EventWatcher's own logic — delivery, position tracking, resume after a
// broken stream, Resync passed through, backoff, giving up, stopping —
// against a ScriptedHub that breaks streams exactly where a test wants.
// The real daemon's side of resume and resync is tested in tests/e2e.
#include "client/hub/event_watcher.h"

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/hub/hub_client.h"
#include "gtest/gtest.h"
#include "tests/client/hub/scripted_hub.h"

namespace shmhub::client {
namespace {

using ::shmhub::testing::ScriptedHub;
using ::shmhub::testing::WatchScript;

constexpr absl::Duration kWaitLimit = absl::Seconds(10);

v1::WatchEventsResponse Event(uint64_t sequence, const std::string& instance,
                              v1::EventKind kind = v1::EVENT_KIND_ATTACHED) {
  v1::WatchEventsResponse response;
  response.mutable_event()->set_sequence(sequence);
  response.mutable_event()->set_hub_instance_id(instance);
  response.mutable_event()->set_kind(kind);
  return response;
}

v1::WatchEventsResponse Snapshot(uint64_t sequence, const std::string& instance) {
  v1::WatchEventsResponse response;
  response.mutable_snapshot()->set_sequence(sequence);
  response.mutable_snapshot()->set_hub_instance_id(instance);
  return response;
}

v1::WatchEventsResponse Progress(uint64_t sequence, const std::string& instance) {
  v1::WatchEventsResponse response;
  response.mutable_progress()->set_sequence(sequence);
  response.mutable_progress()->set_hub_instance_id(instance);
  return response;
}

v1::WatchEventsResponse Resync(v1::Resync::Reason reason) {
  v1::WatchEventsResponse response;
  response.mutable_resync()->set_reason(reason);
  return response;
}

bool Eventually(const std::function<bool()>& condition) {
  const absl::Time deadline = absl::Now() + kWaitLimit;
  while (absl::Now() < deadline) {
    if (condition()) return true;
    absl::SleepFor(absl::Milliseconds(2));
  }
  return condition();
}

// Records what the watcher hands to its callbacks.
class Recorder {
 public:
  EventWatcher::ResponseCallback OnResponse() {
    return [this](const v1::WatchEventsResponse& response) {
      absl::MutexLock lock(&mu_);
      responses_.push_back(response);
    };
  }
  EventWatcher::StreamEndCallback OnStreamEnd() {
    return [this](const absl::Status& status, absl::Duration retry_in) {
      absl::MutexLock lock(&mu_);
      ends_.push_back({status, retry_in});
    };
  }
  std::vector<v1::WatchEventsResponse> responses() const {
    absl::MutexLock lock(&mu_);
    return responses_;
  }
  struct End {
    absl::Status status;
    absl::Duration retry_in;
  };
  std::vector<End> ends() const {
    absl::MutexLock lock(&mu_);
    return ends_;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<v1::WatchEventsResponse> responses_ ABSL_GUARDED_BY(mu_);
  std::vector<End> ends_ ABSL_GUARDED_BY(mu_);
};

class EventWatcherTest : public ::testing::Test {
 protected:
  std::unique_ptr<EventWatcher> StartWatcher(EventWatcherOptions options) {
    options.initial_backoff = absl::Milliseconds(5);
    options.max_backoff = absl::Milliseconds(20);
    auto watcher = std::make_unique<EventWatcher>(MakeHubChannel(hub_.target()), options,
                                                  recorder_.OnResponse(), recorder_.OnStreamEnd());
    watcher->Start();
    return watcher;
  }

  ScriptedHub hub_;
  Recorder recorder_;
};

TEST_F(EventWatcherTest, DeliversEveryResponseInOrderAndTracksThePosition) {
  hub_.QueueWatch({{Snapshot(5, "A"), Event(6, "A"), Progress(9, "A")}, true});
  EventWatcherOptions options;
  options.snapshot_first = true;
  std::unique_ptr<EventWatcher> watcher = StartWatcher(options);

  ASSERT_TRUE(Eventually([&] { return recorder_.responses().size() == 3; }));
  const std::vector<v1::WatchEventsResponse> got = recorder_.responses();
  EXPECT_TRUE(got[0].has_snapshot());
  EXPECT_EQ(got[1].event().sequence(), 6u);
  EXPECT_TRUE(got[2].has_progress());
  ASSERT_TRUE(watcher->position().has_value());
  EXPECT_EQ(watcher->position()->sequence, 9u);
  EXPECT_EQ(watcher->position()->hub_instance_id, "A");
  ASSERT_EQ(hub_.watch_requests().size(), 1u);
  EXPECT_TRUE(hub_.watch_requests()[0].snapshot_first());
  EXPECT_FALSE(hub_.watch_requests()[0].has_resume_after_sequence());
}

TEST_F(EventWatcherTest, ResumesAfterABrokenStreamFromTheLastSequenceAndInstance) {
  hub_.QueueWatch({{Event(3, "A"), Event(4, "A")}, false, grpc::Status(grpc::UNAVAILABLE, "gone")});
  hub_.QueueWatch({{Event(5, "A")}, true});
  EventWatcherOptions options;
  options.snapshot_first = true;
  std::unique_ptr<EventWatcher> watcher = StartWatcher(options);

  ASSERT_TRUE(Eventually([&] { return recorder_.responses().size() == 3; }));
  const std::vector<v1::WatchEventsRequest> requests = hub_.watch_requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_TRUE(requests[1].has_resume_after_sequence());
  EXPECT_EQ(requests[1].resume_after_sequence(), 4u);
  EXPECT_EQ(requests[1].hub_instance_id(), "A");
  EXPECT_FALSE(requests[1].snapshot_first());
  ASSERT_GE(recorder_.ends().size(), 1u);
  EXPECT_EQ(recorder_.ends()[0].status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(recorder_.ends()[0].status.message(), "gone");
  EXPECT_EQ(watcher->streams_opened(), 2);
}

TEST_F(EventWatcherTest, AStreamTheDaemonClosesIsResumedToo) {
  hub_.QueueWatch({{Event(7, "A", v1::EVENT_KIND_HOST_SHUTDOWN)}, false});
  hub_.QueueWatch({{}, true});
  std::unique_ptr<EventWatcher> watcher = StartWatcher({});

  ASSERT_TRUE(Eventually([&] { return hub_.watch_requests().size() == 2; }));
  EXPECT_EQ(hub_.watch_requests()[1].resume_after_sequence(), 7u);
  ASSERT_GE(recorder_.ends().size(), 1u);
  EXPECT_TRUE(recorder_.ends()[0].status.ok());
}

TEST_F(EventWatcherTest, ResyncReachesTheCallbackAndTheSnapshotAfterItBecomesThePosition) {
  hub_.QueueWatch({{Event(10, "A")}, false, grpc::Status(grpc::UNAVAILABLE, "restart")});
  hub_.QueueWatch({{Resync(v1::Resync::REASON_INSTANCE_CHANGED), Snapshot(2, "B")},
                   false,
                   grpc::Status(grpc::UNAVAILABLE, "again")});
  hub_.QueueWatch({{}, true});
  std::unique_ptr<EventWatcher> watcher = StartWatcher({});

  ASSERT_TRUE(Eventually([&] { return hub_.watch_requests().size() == 3; }));
  const std::vector<v1::WatchEventsResponse> got = recorder_.responses();
  ASSERT_EQ(got.size(), 3u);
  EXPECT_TRUE(got[1].has_resync());
  EXPECT_EQ(got[1].resync().reason(), v1::Resync::REASON_INSTANCE_CHANGED);
  EXPECT_TRUE(got[2].has_snapshot());
  const std::vector<v1::WatchEventsRequest> requests = hub_.watch_requests();
  EXPECT_EQ(requests[1].resume_after_sequence(), 10u);
  EXPECT_EQ(requests[1].hub_instance_id(), "A");
  EXPECT_EQ(requests[2].resume_after_sequence(), 2u);
  EXPECT_EQ(requests[2].hub_instance_id(), "B");
}

TEST_F(EventWatcherTest, WithoutAPositionTheOriginalRequestIsRepeated) {
  hub_.QueueWatch({{}, false, grpc::Status(grpc::UNAVAILABLE, "not yet")});
  hub_.QueueWatch({{}, true});
  EventWatcherOptions options;
  options.snapshot_first = true;
  options.resume_after_sequence = 7;
  options.hub_instance_id = "A";
  std::unique_ptr<EventWatcher> watcher = StartWatcher(options);

  ASSERT_TRUE(Eventually([&] { return hub_.watch_requests().size() == 2; }));
  for (const v1::WatchEventsRequest& request : hub_.watch_requests()) {
    EXPECT_TRUE(request.snapshot_first());
    EXPECT_EQ(request.resume_after_sequence(), 7u);
    EXPECT_EQ(request.hub_instance_id(), "A");
  }
  EXPECT_FALSE(watcher->position().has_value());
}

TEST_F(EventWatcherTest, BackoffDoublesUpToTheBoundAndStartsOverAfterADelivery) {
  for (int i = 0; i < 4; ++i) {
    hub_.QueueWatch({{}, false, grpc::Status(grpc::UNAVAILABLE, "down")});
  }
  hub_.QueueWatch({{Event(1, "A")}, false, grpc::Status(grpc::UNAVAILABLE, "down")});
  hub_.QueueWatch({{}, true});
  std::unique_ptr<EventWatcher> watcher = StartWatcher({});

  ASSERT_TRUE(Eventually([&] { return hub_.watch_requests().size() == 6; }));
  const std::vector<Recorder::End> ends = recorder_.ends();
  ASSERT_EQ(ends.size(), 5u);
  EXPECT_EQ(ends[0].retry_in, absl::Milliseconds(5));
  EXPECT_EQ(ends[1].retry_in, absl::Milliseconds(10));
  EXPECT_EQ(ends[2].retry_in, absl::Milliseconds(20));
  EXPECT_EQ(ends[3].retry_in, absl::Milliseconds(20));
  EXPECT_EQ(ends[4].retry_in, absl::Milliseconds(5));
}

TEST_F(EventWatcherTest, GivesUpOnACodeNoRetryCanFix) {
  hub_.QueueWatch({{}, false, grpc::Status(grpc::INVALID_ARGUMENT, "bad resume point")});
  std::unique_ptr<EventWatcher> watcher = StartWatcher({});

  ASSERT_TRUE(watcher->WaitUntilDone(kWaitLimit));
  EXPECT_EQ(watcher->final_status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(watcher->final_status().message(), "bad resume point");
  EXPECT_EQ(watcher->streams_opened(), 1);
  ASSERT_EQ(recorder_.ends().size(), 1u);
  EXPECT_EQ(recorder_.ends()[0].retry_in, absl::InfiniteDuration());
}

TEST_F(EventWatcherTest, StopCancelsTheOpenStreamAndNoCallbackRunsAfterIt) {
  hub_.QueueWatch({{Event(1, "A")}, true});
  std::unique_ptr<EventWatcher> watcher = StartWatcher({});
  ASSERT_TRUE(Eventually([&] { return recorder_.responses().size() == 1; }));

  watcher->Stop();

  EXPECT_TRUE(watcher->Done());
  EXPECT_TRUE(watcher->final_status().ok());
  EXPECT_TRUE(recorder_.ends().empty());  // a requested stop is no stream end
  EXPECT_EQ(watcher->streams_opened(), 1);
}

TEST_F(EventWatcherTest, WaitsQuietlyForADaemonThatIsNotUpAndStopEndsTheWait) {
  Recorder recorder;
  EventWatcher watcher(MakeHubChannel(absl::StrCat("127.0.0.1:", ScriptedHub::FreePort())), {},
                       recorder.OnResponse(), recorder.OnStreamEnd());
  watcher.Start();
  absl::SleepFor(absl::Milliseconds(300));

  watcher.Stop();

  EXPECT_TRUE(watcher.Done());
  EXPECT_EQ(watcher.streams_opened(), 1);
  EXPECT_TRUE(recorder.ends().empty());
  EXPECT_TRUE(recorder.responses().empty());
}

TEST_F(EventWatcherTest, ConnectsAsSoonAsTheDaemonStartsListening) {
  const int port = ScriptedHub::FreePort();
  Recorder recorder;
  EventWatcher watcher(MakeHubChannel(absl::StrCat("127.0.0.1:", port)), {},
                       recorder.OnResponse(), recorder.OnStreamEnd());
  watcher.Start();
  absl::SleepFor(absl::Milliseconds(300));

  ScriptedHub late(port);
  late.QueueWatch({{Event(1, "A")}, true});

  EXPECT_TRUE(Eventually([&] { return recorder.responses().size() == 1; }));
  watcher.Stop();
}

TEST_F(EventWatcherTest, RequestStopFromTheCallbackEndsTheWatcher) {
  hub_.QueueWatch({{Event(1, "A"), Event(2, "A", v1::EVENT_KIND_HOST_SHUTDOWN)}, true});
  EventWatcher* self = nullptr;
  auto watcher = std::make_unique<EventWatcher>(
      MakeHubChannel(hub_.target()), EventWatcherOptions{},
      [&self](const v1::WatchEventsResponse& response) {
        if (response.event().kind() == v1::EVENT_KIND_HOST_SHUTDOWN) self->RequestStop();
      });
  self = watcher.get();
  watcher->Start();

  EXPECT_TRUE(watcher->WaitUntilDone(kWaitLimit));
  EXPECT_EQ(watcher->position()->sequence, 2u);
}

}  // namespace
}  // namespace shmhub::client
