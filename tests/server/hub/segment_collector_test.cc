// SegmentCollector against a real PeerHub and segment, with real guests
// (client/guest's Guest, in-process, heartbeat thread included) and hostile
// words written through a second mapping, as a broken guest process would.
// Time is driven by calling Scan(); every wait polls with a deadline.
#include "server/hub/segment_collector.h"

#include <atomic>
#include <cmath>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/guest/guest.h"
#include "gtest/gtest.h"
#include "server/base/monotonic_clock.h"
#include "server/config/hub_config.h"
#include "server/hub/event_journal.h"
#include "server/hub/hub_metrics.h"
#include "server/hub/peer_hub.h"
#include "shm/format.h"
#include "shm/segment.h"
#include "shm/var_slot_pool.h"
#include "tests/server/metric_families.h"
#include "tests/testing/temp_dir.h"

namespace shmhub::server {
namespace {

using ::prometheus::MetricFamily;
using ::shmhub::server::testing::DescribeFamily;
using ::shmhub::server::testing::FindFamily;
using ::shmhub::server::testing::LabelsOf;
using ::shmhub::server::testing::Value;

using Families = std::vector<MetricFamily>;

constexpr uint32_t kMaxGuests = 3;
constexpr uint32_t kRingBytes = 4096;
// Long enough that a loaded machine still sees a heartbeat younger than
// one interval on some scrape; the crash timeout is out of every test's way.
constexpr absl::Duration kInterval = absl::Milliseconds(50);
constexpr absl::Duration kCrashTimeout = absl::Seconds(60);
constexpr absl::Duration kWaitLimit = absl::Seconds(10);

const std::vector<std::string> kPeerFamilies = {
    "shmhub_peer_heartbeat_age_seconds", "shmhub_peer_heartbeat_stale",
    "shmhub_peer_detector_armed", "shmhub_peer_unmonitored", "shmhub_ring_used_bytes"};

HubConfig TestConfig(const shmhub::testing::TempDir& dir) {
  HubConfig config;
  config.segment_path = dir.File("hub");
  config.max_guests = kMaxGuests;
  config.ring_bytes = kRingBytes;
  config.slot_classes = {{64, 16}, {1024, 4}};
  config.heartbeat_interval = kInterval;
  config.crash_timeout = kCrashTimeout;
  config.metrics_listen.clear();
  return config;
}

// How many series of the per-peer families name `peer_id`.
int SeriesOfPeer(const Families& families, uint32_t peer_id) {
  int found = 0;
  for (const std::string& name : kPeerFamilies) {
    const MetricFamily* family = FindFamily(families, name);
    if (family == nullptr) continue;
    for (const prometheus::ClientMetric& metric : family->metric) {
      if (LabelsOf(metric).at("peer_id") == std::to_string(peer_id)) ++found;
    }
  }
  return found;
}

class SegmentCollectorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<PeerHub>> hub =
        PeerHub::Create(TestConfig(dir_), &journal_, &metrics_);
    ASSERT_TRUE(hub.ok()) << hub.status();
    hub_ = *std::move(hub);
    collector_ = std::make_unique<SegmentCollector>(*hub_, journal_);
    absl::StatusOr<std::unique_ptr<shm::Segment>> raw = shm::Segment::Attach(dir_.File("hub"));
    ASSERT_TRUE(raw.ok()) << raw.status();
    raw_ = *std::move(raw);
  }

  // A guest process's side, in-process: claims a fresh reservation.
  std::unique_ptr<client::Guest> AttachGuest(bool heartbeat) {
    ReserveRequest request;
    request.lease_ttl = absl::Seconds(30);
    absl::StatusOr<Reservation> reservation = hub_->Reserve(request);
    EXPECT_TRUE(reservation.ok()) << reservation.status();
    if (!reservation.ok()) return nullptr;
    client::GuestOptions options;
    options.segment_path = dir_.File("hub");
    options.peer_id = reservation->peer_id;
    options.expected_epoch = reservation->epoch;
    options.heartbeat = heartbeat;
    absl::StatusOr<std::unique_ptr<client::Guest>> guest = client::Guest::Attach(options);
    EXPECT_TRUE(guest.ok()) << guest.status();
    if (!guest.ok()) return nullptr;
    hub_->Scan();  // publishes ATTACHED
    return *std::move(guest);
  }

  // Scans and scrapes until `done` holds for a scrape or kWaitLimit passes;
  // returns the last scrape. `between` runs before each scan.
  Families ScrapeUntil(const std::function<bool(const Families&)>& done,
                       const std::function<void()>& between = {}) {
    const absl::Time deadline = absl::Now() + kWaitLimit;
    while (true) {
      if (between) between();
      hub_->Scan();
      Families families = collector_->Collect();
      if (done(families) || absl::Now() >= deadline) return families;
      absl::SleepFor(absl::Milliseconds(2));
    }
  }

  shm::RingHeader& RawRingHeader(uint64_t offset) {
    return *reinterpret_cast<shm::RingHeader*>(raw_->base() + offset);
  }

  shmhub::testing::TempDir dir_;
  // Teardown order: mappings and the collector before the hub, the hub
  // before the journal and metrics it writes to.
  EventJournal journal_{"collector-test", 4096};
  HubMetrics metrics_{kInterval, kCrashTimeout};
  std::unique_ptr<PeerHub> hub_;
  std::unique_ptr<SegmentCollector> collector_;
  std::unique_ptr<shm::Segment> raw_;
};

TEST_F(SegmentCollectorTest, PeersCountsEverySlotByPublishedStateWithAllFiveStatesPresent) {
  Families families = collector_->Collect();
  EXPECT_EQ(Value(families, "shmhub_peers", {{"state", "empty"}}), kMaxGuests);
  for (const std::string state : {"reserved", "attached", "goodbye", "corrupt"}) {
    EXPECT_EQ(Value(families, "shmhub_peers", {{"state", state}}), 0.0) << state;
  }
  std::unique_ptr<client::Guest> guest = AttachGuest(/*heartbeat=*/false);
  ASSERT_NE(guest, nullptr);
  ReserveRequest request;
  request.lease_ttl = absl::Seconds(30);
  ASSERT_TRUE(hub_->Reserve(request).ok());
  families = collector_->Collect();
  EXPECT_EQ(Value(families, "shmhub_peers", {{"state", "empty"}}), kMaxGuests - 2);
  EXPECT_EQ(Value(families, "shmhub_peers", {{"state", "reserved"}}), 1.0);
  EXPECT_EQ(Value(families, "shmhub_peers", {{"state", "attached"}}), 1.0);
  // An Empty slot has no per-peer series at all.
  EXPECT_EQ(SeriesOfPeer(families, kMaxGuests), 0);
}

TEST_F(SegmentCollectorTest, ALiveGuestsHeartbeatAgeIsBelowTheIntervalAndItIsNotStale) {
  std::unique_ptr<client::Guest> guest = AttachGuest(/*heartbeat=*/true);
  ASSERT_NE(guest, nullptr);
  const std::string id = std::to_string(guest->peer_id());
  const Families families = ScrapeUntil([&](const Families& f) {
    const std::optional<double> age =
        Value(f, "shmhub_peer_heartbeat_age_seconds", {{"peer_id", id}});
    return age.has_value() && *age < absl::ToDoubleSeconds(kInterval);
  });
  const std::optional<double> age =
      Value(families, "shmhub_peer_heartbeat_age_seconds", {{"peer_id", id}});
  ASSERT_TRUE(age.has_value()) << DescribeFamily(families, "shmhub_peer_heartbeat_age_seconds");
  EXPECT_GE(*age, 0.0);
  EXPECT_LT(*age, absl::ToDoubleSeconds(kInterval));
  EXPECT_EQ(Value(families, "shmhub_peer_heartbeat_stale", {{"peer_id", id}}), 0.0);
  EXPECT_EQ(
      Value(families, "shmhub_peer_detector_armed", {{"peer_id", id}, {"detector", "heartbeat"}}),
      1.0);
  EXPECT_EQ(Value(families, "shmhub_peer_unmonitored", {{"peer_id", id}}), 0.0);
  EXPECT_EQ(
      Value(families, "shmhub_ring_used_bytes", {{"peer_id", id}, {"direction", "guest_to_host"}}),
      0.0);
  EXPECT_EQ(
      Value(families, "shmhub_ring_used_bytes", {{"peer_id", id}, {"direction", "host_to_guest"}}),
      0.0);
}

TEST_F(SegmentCollectorTest, StaleFlipsToOneWhenHeartbeatsStop) {
  // The test writes this guest's heartbeats, so it can stop them.
  std::unique_ptr<client::Guest> guest = AttachGuest(/*heartbeat=*/false);
  ASSERT_NE(guest, nullptr);
  const uint32_t peer_id = guest->peer_id();
  const std::string id = std::to_string(peer_id);
  auto heartbeat = [&] {
    guest->segment()->peers().Entry(peer_id)->UpdateHeartbeat(MonotonicNowNs());
  };
  auto stale_is = [&](double expected) {
    return [&, expected](const Families& f) {
      return Value(f, "shmhub_peer_heartbeat_stale", {{"peer_id", id}}) == expected;
    };
  };

  Families families = ScrapeUntil(stale_is(0), heartbeat);
  ASSERT_EQ(Value(families, "shmhub_peer_heartbeat_stale", {{"peer_id", id}}), 0.0)
      << DescribeFamily(families, "shmhub_peer_heartbeat_stale");

  families = ScrapeUntil(stale_is(1));
  ASSERT_EQ(Value(families, "shmhub_peer_heartbeat_stale", {{"peer_id", id}}), 1.0)
      << DescribeFamily(families, "shmhub_peer_heartbeat_stale");
  // STALE means silent for over twice the interval, and the age says so.
  const std::optional<double> age =
      Value(families, "shmhub_peer_heartbeat_age_seconds", {{"peer_id", id}});
  ASSERT_TRUE(age.has_value());
  EXPECT_GT(*age, 2 * absl::ToDoubleSeconds(kInterval));
  // Still attached and monitored: stale is not crashed.
  EXPECT_EQ(Value(families, "shmhub_peers", {{"state", "attached"}}), 1.0);
}

TEST_F(SegmentCollectorTest, AGuestThatNeverHeartbeatsIsUnmonitoredWithNoAgeAndNoDetector) {
  std::unique_ptr<client::Guest> guest = AttachGuest(/*heartbeat=*/false);
  ASSERT_NE(guest, nullptr);
  const std::string id = std::to_string(guest->peer_id());
  const Families families = collector_->Collect();
  EXPECT_EQ(Value(families, "shmhub_peer_unmonitored", {{"peer_id", id}}), 1.0);
  EXPECT_EQ(Value(families, "shmhub_peer_heartbeat_stale", {{"peer_id", id}}), 0.0);
  EXPECT_EQ(Value(families, "shmhub_peer_heartbeat_age_seconds", {{"peer_id", id}}), std::nullopt);
  EXPECT_EQ(FindFamily(families, "shmhub_peer_detector_armed"), nullptr)
      << "a family without series is left out";
}

TEST_F(SegmentCollectorTest, ASlotsSeriesDisappearOnceItsGuestIsRecovered) {
  std::unique_ptr<client::Guest> guest = AttachGuest(/*heartbeat=*/true);
  ASSERT_NE(guest, nullptr);
  const uint32_t peer_id = guest->peer_id();
  // Age, stale, armed{heartbeat}, unmonitored and one per ring.
  Families families = ScrapeUntil([&](const Families& f) { return SeriesOfPeer(f, peer_id) == 6; });
  ASSERT_EQ(SeriesOfPeer(families, peer_id), 6)
      << DescribeFamily(families, "shmhub_ring_used_bytes");

  ASSERT_TRUE(guest->Goodbye().ok());
  families = ScrapeUntil([&](const Families& f) { return SeriesOfPeer(f, peer_id) == 0; });
  EXPECT_EQ(SeriesOfPeer(families, peer_id), 0)
      << DescribeFamily(families, "shmhub_peer_heartbeat_stale");
  EXPECT_EQ(Value(families, "shmhub_peers", {{"state", "empty"}}), kMaxGuests);
  EXPECT_EQ(Value(metrics_.registry()->Collect(), "shmhub_events_total", {{"kind", "recovered"}}),
            1.0);
}

TEST_F(SegmentCollectorTest, HostileRingWordsAndHeartbeatsYieldBoundedFiniteValues) {
  std::unique_ptr<client::Guest> guest = AttachGuest(/*heartbeat=*/false);
  ASSERT_NE(guest, nullptr);
  const uint32_t peer_id = guest->peer_id();
  const std::string id = std::to_string(peer_id);
  const shm::SegmentLayout& layout = raw_->layout();
  shm::RingHeader& to_host = RawRingHeader(layout.GuestToHostHeader(peer_id - 1));
  shm::RingHeader& to_guest = RawRingHeader(layout.HostToGuestHeader(peer_id - 1));
  struct Words {
    uint32_t write, watermark, read, capacity;
  };
  // Indexes far beyond the capacity, wrapped with read past the watermark,
  // and a lying capacity field.
  for (const Words w :
       {Words{0xFFFFFFFFu, 0xFFFFFFF0u, 3, kRingBytes}, Words{kRingBytes + 100, 0, 0, 0xFFFFFFFFu},
        Words{5, 0xFFFFFFFFu, 0xFFFFFFFFu, 1}, Words{0, 7, 9, kRingBytes}}) {
    for (shm::RingHeader* header : {&to_host, &to_guest}) {
      std::atomic_ref<uint32_t>(header->write).store(w.write, std::memory_order_relaxed);
      std::atomic_ref<uint32_t>(header->watermark).store(w.watermark, std::memory_order_relaxed);
      std::atomic_ref<uint32_t>(header->read).store(w.read, std::memory_order_relaxed);
      std::atomic_ref<uint32_t>(header->capacity).store(w.capacity, std::memory_order_relaxed);
    }
    const Families families = collector_->Collect();
    for (const std::string direction : {"guest_to_host", "host_to_guest"}) {
      const std::optional<double> used =
          Value(families, "shmhub_ring_used_bytes", {{"peer_id", id}, {"direction", direction}});
      ASSERT_TRUE(used.has_value()) << direction;
      EXPECT_GE(*used, 0.0) << direction << " write=" << w.write << " read=" << w.read;
      EXPECT_LE(*used, kRingBytes) << direction << " write=" << w.write << " read=" << w.read;
    }
  }

  // A heartbeat from the far future reads as just written; one from the
  // distant past as a large but finite age. (No scan runs: the hub would
  // rightly crash this guest.)
  shm::PeerEntryView entry = *raw_->peers().Entry(peer_id);
  entry.UpdateHeartbeat(UINT64_MAX);
  EXPECT_EQ(Value(collector_->Collect(), "shmhub_peer_heartbeat_age_seconds", {{"peer_id", id}}),
            0.0);
  entry.UpdateHeartbeat(1);
  const std::optional<double> age =
      Value(collector_->Collect(), "shmhub_peer_heartbeat_age_seconds", {{"peer_id", id}});
  ASSERT_TRUE(age.has_value());
  EXPECT_TRUE(std::isfinite(*age));
  EXPECT_GT(*age, 0.0);
}

TEST_F(SegmentCollectorTest, ACorruptFreeStackLeavesOutOnlyThatClassesFreeCount) {
  Families families = collector_->Collect();
  EXPECT_EQ(Value(families, "shmhub_varslot_free", {{"class", "64"}}), 16.0);
  EXPECT_EQ(Value(families, "shmhub_varslot_free", {{"class", "1024"}}), 4.0);
  EXPECT_EQ(Value(families, "shmhub_varslot_capacity", {{"class", "64"}}), 16.0);
  EXPECT_EQ(Value(families, "shmhub_varslot_capacity", {{"class", "1024"}}), 4.0);

  // A guest allocates one slot: the free count follows.
  absl::StatusOr<shm::SlotRef> slot = raw_->pool().Allocate(1000, 1);
  ASSERT_TRUE(slot.ok()) << slot.status();
  EXPECT_EQ(Value(collector_->Collect(), "shmhub_varslot_free", {{"class", "1024"}}), 3.0);

  // A head index beyond the class: no number can be trusted for it.
  auto* header =
      reinterpret_cast<shm::ClassHeader*>(raw_->base() + raw_->layout().classes[0].header_offset);
  std::atomic_ref<uint64_t>(header->free_head)
      .store(shm::PackFreeHead(1000, 0), std::memory_order_release);
  families = collector_->Collect();
  EXPECT_EQ(Value(families, "shmhub_varslot_free", {{"class", "64"}}), std::nullopt);
  EXPECT_EQ(Value(families, "shmhub_varslot_capacity", {{"class", "64"}}), 16.0);
  EXPECT_EQ(Value(families, "shmhub_varslot_free", {{"class", "1024"}}), 3.0);
}

TEST_F(SegmentCollectorTest, WatchersCountsTheJournalsSubscriptions) {
  EXPECT_EQ(Value(collector_->Collect(), "shmhub_watchers"), 0.0);
  EventJournal::SubscribeResult first = journal_.Subscribe(0, 16, [] {});
  EventJournal::SubscribeResult second = journal_.Subscribe(0, 16, [] {});
  ASSERT_NE(first.subscription, nullptr);
  ASSERT_NE(second.subscription, nullptr);
  EXPECT_EQ(Value(collector_->Collect(), "shmhub_watchers"), 2.0);
  second.subscription.reset();
  EXPECT_EQ(Value(collector_->Collect(), "shmhub_watchers"), 1.0);
}

}  // namespace
}  // namespace shmhub::server
