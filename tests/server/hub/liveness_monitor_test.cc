// LivenessMonitor drives a real PeerHub: its scans are observed through what
// only a scan publishes (a lease expiring), and its stop through a monitor
// whose interval is far longer than any test.
#include "server/hub/liveness_monitor.h"

#include <memory>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "server/config/hub_config.h"
#include "server/hub/event_journal.h"
#include "server/hub/hub_metrics.h"
#include "server/hub/peer_hub.h"
#include "tests/testing/temp_dir.h"

namespace shmhub::server {
namespace {

class LivenessMonitorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    HubConfig config;
    config.segment_path = dir_.File("hub");
    config.max_guests = 2;
    config.ring_bytes = 1024;
    config.slot_classes = {{64, 4}};
    config.heartbeat_interval = absl::Milliseconds(10);
    config.crash_timeout = absl::Milliseconds(100);
    absl::StatusOr<std::unique_ptr<PeerHub>> hub = PeerHub::Create(config, &journal_, &metrics_);
    ASSERT_TRUE(hub.ok()) << hub.status();
    hub_ = *std::move(hub);
  }

  // An unclaimed reservation that only a Scan() can expire.
  void ReserveBriefly() {
    ReserveRequest request;
    request.lease_ttl = absl::Milliseconds(1);
    ASSERT_TRUE(hub_->Reserve(request).ok());
  }

  size_t CountExpired() {
    EventJournal::SubscribeResult subscribed = journal_.Subscribe(0, 1 << 16, [] {});
    size_t expired = 0;
    v1::PeerEvent event;
    while (subscribed.subscription->Next(&event) == EventJournal::Subscription::Pull::kEvent) {
      if (event.kind() == v1::EVENT_KIND_RESERVATION_EXPIRED) ++expired;
    }
    return expired;
  }

  shmhub::testing::TempDir dir_;
  EventJournal journal_{"monitor-test", 1024};
  HubMetrics metrics_{absl::Milliseconds(10), absl::Milliseconds(100)};
  std::unique_ptr<PeerHub> hub_;
};

TEST_F(LivenessMonitorTest, ScansRepeatedlyUntilStoppedAndNeverAfter) {
  LivenessMonitor monitor(*hub_, absl::Milliseconds(2));
  // Two expiries need two scans at least a lease apart.
  for (size_t want = 1; want <= 2; ++want) {
    ReserveBriefly();
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (CountExpired() < want && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(2));
    ASSERT_EQ(CountExpired(), want) << "the monitor did not scan within 10s";
  }

  monitor.Stop();
  ReserveBriefly();
  absl::SleepFor(absl::Milliseconds(50));  // 25 intervals
  EXPECT_EQ(CountExpired(), 2u) << "a scan ran after Stop() returned";
}

TEST_F(LivenessMonitorTest, StopWakesTheThreadInsteadOfWaitingOutTheInterval) {
  // Leaked on failure: a monitor stuck in Stop() must not hang the test in a
  // destructor too.
  auto* monitor = new LivenessMonitor(*hub_, absl::Hours(1));
  auto stopped = std::make_shared<absl::Notification>();
  std::thread stopper([monitor, stopped] {
    monitor->Stop();
    stopped->Notify();
  });
  if (!stopped->WaitForNotificationWithTimeout(absl::Seconds(10))) {
    stopper.detach();
    FAIL() << "Stop() waited for the 1h interval";
  }
  stopper.join();
  delete monitor;
  EXPECT_EQ(CountExpired(), 0u);
}

TEST_F(LivenessMonitorTest, StopFromSeveralThreadsAndThenTheDestructorIsSafe) {
  LivenessMonitor monitor(*hub_, absl::Milliseconds(1));
  std::vector<std::thread> stoppers;
  for (int i = 0; i < 4; ++i) stoppers.emplace_back([&monitor] { monitor.Stop(); });
  for (std::thread& stopper : stoppers) stopper.join();
  monitor.Stop();
}

}  // namespace
}  // namespace shmhub::server
