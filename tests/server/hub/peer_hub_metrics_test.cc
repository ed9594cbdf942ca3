// What PeerHub feeds into HubMetrics, and its lock-free mirror of the
// published slots: against a real segment and journal, with guests played
// through their own mapping of the segment and time driven by Scan().
#include <atomic>
#include <map>
#include <memory>
#include <string>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "server/base/monotonic_clock.h"
#include "server/config/hub_config.h"
#include "server/hub/event_journal.h"
#include "server/hub/hub_metrics.h"
#include "server/hub/peer_events.h"
#include "server/hub/peer_hub.h"
#include "shm/format.h"
#include "shm/peer_table.h"
#include "shm/segment.h"
#include "tests/server/metric_families.h"
#include "tests/testing/temp_dir.h"

namespace shmhub::server {
namespace {

using ::shmhub::server::testing::FindSeries;
using ::shmhub::server::testing::Value;

constexpr uint32_t kMaxGuests = 2;
constexpr absl::Duration kInterval = absl::Milliseconds(10);

HubConfig TestConfig(const shmhub::testing::TempDir& dir, absl::Duration crash_timeout) {
  HubConfig config;
  config.segment_path = dir.File("hub");
  config.max_guests = kMaxGuests;
  config.ring_bytes = 4096;
  config.slot_classes = {{64, 16}};
  config.heartbeat_interval = kInterval;
  config.crash_timeout = crash_timeout;
  config.metrics_listen.clear();
  return config;
}

class PeerHubMetricsTest : public ::testing::Test {
 protected:
  // A crash timeout far beyond any test's pauses, so only the tests that
  // wait it out on purpose see a heartbeat crash.
  void SetUp() override { Start(absl::Seconds(30)); }

  void Start(absl::Duration crash_timeout) {
    subscription_.reset();
    guest_.reset();
    hub_.reset();
    metrics_ = std::make_unique<HubMetrics>(kInterval, crash_timeout);
    journal_ = std::make_unique<EventJournal>("metrics-test", 4096);
    absl::StatusOr<std::unique_ptr<PeerHub>> hub =
        PeerHub::Create(TestConfig(dir_, crash_timeout), journal_.get(), metrics_.get());
    ASSERT_TRUE(hub.ok()) << hub.status();
    hub_ = *std::move(hub);
    EventJournal::SubscribeResult subscribed = journal_->Subscribe(0, 1 << 20, [] {});
    ASSERT_NE(subscribed.subscription, nullptr);
    subscription_ = std::move(subscribed.subscription);
    absl::StatusOr<std::unique_ptr<shm::Segment>> guest = shm::Segment::Attach(dir_.File("hub"));
    ASSERT_TRUE(guest.ok()) << guest.status();
    guest_ = *std::move(guest);
  }

  absl::StatusOr<Reservation> Reserve(std::string request_id = "",
                                      absl::Duration ttl = absl::Seconds(30)) {
    ReserveRequest request;
    request.lease_ttl = ttl;
    request.owner = "metrics-test";
    request.request_id = std::move(request_id);
    return hub_->Reserve(request);
  }

  shm::PeerEntryView GuestEntry(uint32_t peer_id) { return *guest_->peers().Entry(peer_id); }
  void Heartbeat(uint32_t peer_id) { GuestEntry(peer_id).UpdateHeartbeat(MonotonicNowNs()); }

  // A reserved slot claimed by a guest that has heartbeated once, published.
  Reservation AttachedGuest() {
    absl::StatusOr<Reservation> r = Reserve();
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return Reservation{};
    EXPECT_TRUE(GuestEntry(r->peer_id).ClaimFenced(r->epoch).ok());
    Heartbeat(r->peer_id);
    hub_->Scan();
    return *r;
  }

  double Outcome(const std::string& outcome) {
    return Value(metrics_->registry()->Collect(), "shmhub_reservations_total",
                 {{"outcome", outcome}})
        .value_or(-1);
  }

  shmhub::testing::TempDir dir_;
  // Teardown order: the subscription before the journal, the guest's
  // mapping before the hub removes the file, the hub before its metrics.
  std::unique_ptr<HubMetrics> metrics_;
  std::unique_ptr<EventJournal> journal_;
  std::unique_ptr<PeerHub> hub_;
  std::unique_ptr<EventJournal::Subscription> subscription_;
  std::unique_ptr<shm::Segment> guest_;
};

TEST_F(PeerHubMetricsTest, ReserveCountsGrantedReplayedAndNoFreeSlot) {
  ASSERT_TRUE(Reserve("job-1").ok());
  absl::StatusOr<Reservation> replay = Reserve("job-1");
  ASSERT_TRUE(replay.ok());
  EXPECT_TRUE(replay->replayed);
  ASSERT_TRUE(Reserve().ok());
  EXPECT_EQ(Reserve().status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(Outcome("granted"), 2);
  EXPECT_EQ(Outcome("replayed"), 1);
  EXPECT_EQ(Outcome("no_free_slot"), 1);
}

TEST_F(PeerHubMetricsTest, ReservationsEndAsReleasedExpiredOrClaimed) {
  absl::StatusOr<Reservation> released = Reserve();
  ASSERT_TRUE(released.ok());
  ASSERT_TRUE(hub_->Release({released->peer_id, released->epoch}).ok());
  EXPECT_EQ(Outcome("released"), 1);

  ASSERT_TRUE(Reserve("", absl::Milliseconds(1)).ok());
  absl::SleepFor(absl::Milliseconds(5));  // the lease is over once this returns
  hub_->Scan();
  EXPECT_EQ(Outcome("expired"), 1);

  AttachedGuest();
  EXPECT_EQ(Outcome("claimed"), 1);
  EXPECT_EQ(Outcome("granted"), 3);
}

TEST_F(PeerHubMetricsTest, EveryPublishedEventIsCountedUnderItsKind) {
  const Reservation attached = AttachedGuest();
  absl::StatusOr<Reservation> reserved = Reserve();
  ASSERT_TRUE(reserved.ok());
  ASSERT_TRUE(hub_->Release({reserved->peer_id, reserved->epoch}).ok());
  ASSERT_TRUE(hub_->Evict({attached.peer_id, attached.epoch}, "test").ok());
  hub_->BeginShutdown();

  std::map<std::string, double> published;
  v1::PeerEvent event;
  while (subscription_->Next(&event) == EventJournal::Subscription::Pull::kEvent) {
    ++published[EnumLabelValue(v1::EventKind_Name(event.kind()), "EVENT_KIND_")];
  }
  ASSERT_EQ(published.size(), 6u);  // reserved attached released evicted recovered host_shutdown
  const auto families = metrics_->registry()->Collect();
  for (const auto& [kind, count] : published) {
    EXPECT_EQ(Value(families, "shmhub_events_total", {{"kind", kind}}), count) << kind;
  }
}

TEST_F(PeerHubMetricsTest, AHeartbeatCrashObservesTheSilenceAsDetectionLatency) {
  const absl::Duration timeout = absl::Milliseconds(50);
  Start(timeout);
  AttachedGuest();
  // Only the guest's silence matters: once this sleep is over it exceeds
  // the crash timeout, however slow the machine.
  absl::SleepFor(timeout + absl::Milliseconds(10));
  hub_->Scan();

  const auto families = metrics_->registry()->Collect();
  EXPECT_EQ(Value(families, "shmhub_crashes_total", {{"detector", "heartbeat"}}), 1.0);
  const prometheus::ClientMetric* detection =
      FindSeries(families, "shmhub_crash_detection_seconds");
  ASSERT_NE(detection, nullptr);
  EXPECT_EQ(detection->histogram.sample_count, 1u);
  EXPECT_GT(detection->histogram.sample_sum, absl::ToDoubleSeconds(timeout));
  const prometheus::ClientMetric* recovery = FindSeries(families, "shmhub_recovery_seconds");
  ASSERT_NE(recovery, nullptr);
  EXPECT_EQ(recovery->histogram.sample_count, 1u);
}

TEST_F(PeerHubMetricsTest, AnInvalidStateCrashCountsItsDetectorButObservesNoLatency) {
  const Reservation r = AttachedGuest();
  auto* entry = reinterpret_cast<shm::PeerEntry*>(guest_->base() +
                                                  guest_->layout().EntryOffset(r.peer_id - 1));
  std::atomic_ref<uint32_t>(entry->state).store(9, std::memory_order_release);
  hub_->Scan();

  const auto families = metrics_->registry()->Collect();
  EXPECT_EQ(Value(families, "shmhub_crashes_total", {{"detector", "invalid_state"}}), 1.0);
  const prometheus::ClientMetric* detection =
      FindSeries(families, "shmhub_crash_detection_seconds");
  ASSERT_NE(detection, nullptr);
  EXPECT_EQ(detection->histogram.sample_count, 0u);
}

TEST_F(PeerHubMetricsTest, PublishedSlotStateFollowsEveryChangeOfTheRecords) {
  EXPECT_EQ(hub_->PublishedSlotState(1).state, v1::PEER_STATE_EMPTY);

  absl::StatusOr<Reservation> r = Reserve();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(hub_->PublishedSlotState(r->peer_id).state, v1::PEER_STATE_RESERVED);
  EXPECT_EQ(hub_->PublishedSlotState(r->peer_id).armed_detectors, 0u);

  ASSERT_TRUE(GuestEntry(r->peer_id).ClaimFenced(r->epoch).ok());
  // The guest's claim is not published until a scan sees it.
  EXPECT_EQ(hub_->PublishedSlotState(r->peer_id).state, v1::PEER_STATE_RESERVED);
  hub_->Scan();
  PublishedSlot slot = hub_->PublishedSlotState(r->peer_id);
  EXPECT_EQ(slot.state, v1::PEER_STATE_ATTACHED);
  EXPECT_EQ(slot.armed_detectors, 0u) << "no heartbeat yet: unmonitored";

  Heartbeat(r->peer_id);
  hub_->Scan();
  slot = hub_->PublishedSlotState(r->peer_id);
  EXPECT_EQ(slot.armed_detectors, 1u << v1::DETECTOR_HEARTBEAT);
  EXPECT_FALSE(slot.stale);

  // Past 2 x interval without a heartbeat (the crash timeout is 30 s).
  absl::SleepFor(2 * kInterval + absl::Milliseconds(5));
  hub_->Scan();
  EXPECT_TRUE(hub_->PublishedSlotState(r->peer_id).stale);
  Heartbeat(r->peer_id);
  hub_->Scan();
  EXPECT_FALSE(hub_->PublishedSlotState(r->peer_id).stale);

  ASSERT_TRUE(hub_->Evict({r->peer_id, r->epoch}, "test").ok());
  EXPECT_EQ(hub_->PublishedSlotState(r->peer_id).state, v1::PEER_STATE_EMPTY);
  EXPECT_EQ(hub_->PublishedSlotState(0).state, v1::PEER_STATE_EMPTY);
  EXPECT_EQ(hub_->PublishedSlotState(kMaxGuests + 1).state, v1::PEER_STATE_EMPTY);
}

}  // namespace
}  // namespace shmhub::server
