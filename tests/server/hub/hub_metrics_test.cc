// HubMetrics: every label value exists at 0 from the start, events are
// counted by kind and detector, recovery and detection latencies land in
// histograms whose buckets follow the heartbeat interval and crash timeout,
// and build_info names the version.
#include "server/hub/hub_metrics.h"

#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/base/proto_time.h"
#include "server/hub/peer_events.h"
#include "tests/server/metric_families.h"

namespace shmhub::server {
namespace {

using ::shmhub::server::testing::FindSeries;
using ::shmhub::server::testing::Value;
using ::testing::Contains;
using ::testing::DoubleEq;
using ::testing::Each;
using ::testing::Pointwise;

constexpr absl::Duration kInterval = absl::Milliseconds(100);
constexpr absl::Duration kTimeout = absl::Seconds(1);

const std::vector<std::string> kKinds = {
    "reserved",      "reservation_expired", "released",      "attached",
    "stale",         "fresh",               "goodbye",       "crashed",
    "recovered",     "evicted",             "host_shutdown", "host_attached",
    "host_detached", "host_unresponsive"};
const std::vector<std::string> kDetectors = {"heartbeat", "doorbell", "process_exit",
                                             "invalid_state"};
const std::vector<std::string> kOutcomes = {"granted", "replayed", "no_free_slot",
                                            "claimed", "expired",  "released"};

v1::PeerEvent Crashed(v1::Detector detector) {
  return MakeCrashedEvent({1, 1}, detector, std::nullopt, "test");
}

v1::PeerEvent Recovered(absl::Duration took) {
  v1::PeerEvent event = MakePeerEvent(v1::EVENT_KIND_RECOVERED, {1, 1});
  *event.mutable_recovery()->mutable_duration() = ToProtoDuration(took);
  return event;
}

// The cumulative count of the bucket with upper bound `le`; -1 if absent.
double BucketCount(const prometheus::ClientMetric& histogram, double le) {
  for (const prometheus::ClientMetric::Bucket& bucket : histogram.histogram.bucket) {
    if (bucket.upper_bound == le) return static_cast<double>(bucket.cumulative_count);
  }
  return -1;
}

bool StrictlyAscending(const std::vector<double>& bounds) {
  for (size_t i = 1; i < bounds.size(); ++i) {
    if (!(bounds[i - 1] < bounds[i])) return false;
  }
  return !bounds.empty();
}

TEST(HubMetricsTest, EveryKindDetectorAndOutcomeSeriesExistsAtZeroFromTheStart) {
  HubMetrics metrics(kInterval, kTimeout);
  const auto families = metrics.registry()->Collect();
  for (const std::string& kind : kKinds) {
    EXPECT_EQ(Value(families, "shmhub_events_total", {{"kind", kind}}), 0.0) << kind;
  }
  for (const std::string& detector : kDetectors) {
    EXPECT_EQ(Value(families, "shmhub_crashes_total", {{"detector", detector}}), 0.0) << detector;
  }
  for (const std::string& outcome : kOutcomes) {
    EXPECT_EQ(Value(families, "shmhub_reservations_total", {{"outcome", outcome}}), 0.0) << outcome;
  }
  EXPECT_EQ(Value(families, "shmhub_watch_resyncs_total"), 0.0);
  ASSERT_NE(FindSeries(families, "shmhub_crash_detection_seconds"), nullptr);
  ASSERT_NE(FindSeries(families, "shmhub_recovery_seconds"), nullptr);
  EXPECT_EQ(FindSeries(families, "shmhub_recovery_seconds")->histogram.sample_count, 0u);
  // No UNSPECIFIED series: nothing is ever counted under it.
  EXPECT_EQ(Value(families, "shmhub_events_total", {{"kind", "unspecified"}}), std::nullopt);
  EXPECT_EQ(Value(families, "shmhub_crashes_total", {{"detector", "unspecified"}}), std::nullopt);
}

TEST(HubMetricsTest, HostApplicationGaugeAndAckTimeoutCounterFollowTheirCalls) {
  HubMetrics metrics(kInterval, kTimeout);
  auto families = metrics.registry()->Collect();
  EXPECT_EQ(Value(families, "shmhub_host_registered"), 0.0);
  EXPECT_EQ(Value(families, "shmhub_host_ack_timeouts_total"), 0.0);
  metrics.SetHostRegistered(true);
  metrics.CountHostAckTimeout();
  metrics.CountHostAckTimeout();
  families = metrics.registry()->Collect();
  EXPECT_EQ(Value(families, "shmhub_host_registered"), 1.0);
  EXPECT_EQ(Value(families, "shmhub_host_ack_timeouts_total"), 2.0);
  metrics.SetHostRegistered(false);
  EXPECT_EQ(Value(metrics.registry()->Collect(), "shmhub_host_registered"), 0.0);
}

TEST(HubMetricsTest, EventsAreCountedByKindAndCrashesByTheirDetector) {
  HubMetrics metrics(kInterval, kTimeout);
  metrics.OnEvent(MakePeerEvent(v1::EVENT_KIND_RESERVED, {1, 1}));
  metrics.OnEvent(MakePeerEvent(v1::EVENT_KIND_RESERVED, {2, 1}));
  metrics.OnEvent(MakePeerEvent(v1::EVENT_KIND_RESERVATION_EXPIRED, {2, 1}));
  metrics.OnEvent(MakeHubEvent(v1::EVENT_KIND_HOST_SHUTDOWN));
  metrics.OnEvent(Crashed(v1::DETECTOR_HEARTBEAT));
  metrics.OnEvent(Crashed(v1::DETECTOR_HEARTBEAT));
  metrics.OnEvent(Crashed(v1::DETECTOR_PROCESS_EXIT));
  metrics.OnEvent(Crashed(v1::DETECTOR_INVALID_STATE));

  const auto families = metrics.registry()->Collect();
  EXPECT_EQ(Value(families, "shmhub_events_total", {{"kind", "reserved"}}), 2.0);
  EXPECT_EQ(Value(families, "shmhub_events_total", {{"kind", "reservation_expired"}}), 1.0);
  EXPECT_EQ(Value(families, "shmhub_events_total", {{"kind", "host_shutdown"}}), 1.0);
  EXPECT_EQ(Value(families, "shmhub_events_total", {{"kind", "crashed"}}), 4.0);
  EXPECT_EQ(Value(families, "shmhub_events_total", {{"kind", "released"}}), 0.0);
  EXPECT_EQ(Value(families, "shmhub_crashes_total", {{"detector", "heartbeat"}}), 2.0);
  EXPECT_EQ(Value(families, "shmhub_crashes_total", {{"detector", "process_exit"}}), 1.0);
  EXPECT_EQ(Value(families, "shmhub_crashes_total", {{"detector", "invalid_state"}}), 1.0);
  EXPECT_EQ(Value(families, "shmhub_crashes_total", {{"detector", "doorbell"}}), 0.0);
}

TEST(HubMetricsTest, KindsAndDetectorsThisBuildDoesNotKnowAreNotCounted) {
  HubMetrics metrics(kInterval, kTimeout);
  v1::PeerEvent unknown = MakePeerEvent(static_cast<v1::EventKind>(99), {1, 1});
  metrics.OnEvent(unknown);
  metrics.OnEvent(MakeCrashedEvent({1, 1}, static_cast<v1::Detector>(77), std::nullopt, "future"));
  metrics.OnEvent(Crashed(v1::DETECTOR_UNSPECIFIED));
  const auto families = metrics.registry()->Collect();
  EXPECT_EQ(Value(families, "shmhub_events_total", {{"kind", "crashed"}}), 2.0);
  for (const std::string& detector : kDetectors) {
    EXPECT_EQ(Value(families, "shmhub_crashes_total", {{"detector", detector}}), 0.0) << detector;
  }
}

TEST(HubMetricsTest, RecoveredEventsPutTheirRecoveryDurationInTheRecoveryHistogram) {
  HubMetrics metrics(kInterval, kTimeout);
  metrics.OnEvent(Recovered(absl::Microseconds(300)));
  metrics.OnEvent(Recovered(absl::Milliseconds(30)));
  // Emptied outside shmhubd: RECOVERED without a report, so no duration.
  metrics.OnEvent(MakePeerEvent(v1::EVENT_KIND_RECOVERED, {2, 1}, "emptied outside shmhubd"));

  const auto families = metrics.registry()->Collect();
  EXPECT_EQ(Value(families, "shmhub_events_total", {{"kind", "recovered"}}), 3.0);
  const prometheus::ClientMetric* recovery = FindSeries(families, "shmhub_recovery_seconds");
  ASSERT_NE(recovery, nullptr);
  EXPECT_EQ(recovery->histogram.sample_count, 2u);
  EXPECT_THAT(recovery->histogram.sample_sum, DoubleEq(0.0303));
  EXPECT_EQ(BucketCount(*recovery, 0.00025), 0);
  EXPECT_EQ(BucketCount(*recovery, 0.0005), 1);
  EXPECT_EQ(BucketCount(*recovery, 0.025), 1);
  EXPECT_EQ(BucketCount(*recovery, 0.05), 2);
}

TEST(HubMetricsTest, CrashDetectionLatenciesLandInTheBucketsAroundTheTimeout) {
  HubMetrics metrics(kInterval, kTimeout);
  metrics.ObserveCrashDetection(absl::Milliseconds(3));     // a kernel detector
  metrics.ObserveCrashDetection(absl::Milliseconds(1020));  // heartbeat, one scan late
  const auto families = metrics.registry()->Collect();
  const prometheus::ClientMetric* detection =
      FindSeries(families, "shmhub_crash_detection_seconds");
  ASSERT_NE(detection, nullptr);
  EXPECT_EQ(detection->histogram.sample_count, 2u);
  EXPECT_EQ(BucketCount(*detection, 0.0025), 0);
  EXPECT_EQ(BucketCount(*detection, 0.005), 1);
  EXPECT_EQ(BucketCount(*detection, 1.0), 1);
  EXPECT_EQ(BucketCount(*detection, 1.025), 2);
}

TEST(HubMetricsTest, ReservationOutcomesAndResyncsAreCountedUnderTheirLabels) {
  HubMetrics metrics(kInterval, kTimeout);
  metrics.CountReservation(ReservationOutcome::kGranted);
  metrics.CountReservation(ReservationOutcome::kGranted);
  metrics.CountReservation(ReservationOutcome::kReplayed);
  metrics.CountReservation(ReservationOutcome::kNoFreeSlot);
  metrics.CountReservation(ReservationOutcome::kClaimed);
  metrics.CountReservation(ReservationOutcome::kExpired);
  metrics.CountReservation(ReservationOutcome::kReleased);
  metrics.CountReservation(ReservationOutcome::kReleased);
  metrics.CountReservation(ReservationOutcome::kReleased);
  metrics.CountResync();
  const auto families = metrics.registry()->Collect();
  EXPECT_EQ(Value(families, "shmhub_reservations_total", {{"outcome", "granted"}}), 2.0);
  EXPECT_EQ(Value(families, "shmhub_reservations_total", {{"outcome", "replayed"}}), 1.0);
  EXPECT_EQ(Value(families, "shmhub_reservations_total", {{"outcome", "no_free_slot"}}), 1.0);
  EXPECT_EQ(Value(families, "shmhub_reservations_total", {{"outcome", "claimed"}}), 1.0);
  EXPECT_EQ(Value(families, "shmhub_reservations_total", {{"outcome", "expired"}}), 1.0);
  EXPECT_EQ(Value(families, "shmhub_reservations_total", {{"outcome", "released"}}), 3.0);
  EXPECT_EQ(Value(families, "shmhub_watch_resyncs_total"), 1.0);
}

TEST(HubMetricsTest, BuildInfoIsOneAndNamesTheVersion) {
  HubMetrics metrics(kInterval, kTimeout);
  const auto families = metrics.registry()->Collect();
  EXPECT_EQ(Value(families, "shmhub_build_info", {{"version", SHMHUB_VERSION}}), 1.0);
}

struct Timing {
  absl::Duration interval;
  absl::Duration timeout;
};

TEST(HubMetricsTest, CrashDetectionBucketsAscendAndCoverKernelDetectorsAndIntervalSteps) {
  for (const Timing t : {Timing{absl::Milliseconds(1), absl::Milliseconds(3)},
                         Timing{absl::Milliseconds(20), absl::Milliseconds(300)},
                         Timing{absl::Milliseconds(100), absl::Seconds(1)},
                         Timing{absl::Seconds(10), absl::Minutes(1)}}) {
    SCOPED_TRACE(
        absl::StrCat(absl::FormatDuration(t.interval), " / ", absl::FormatDuration(t.timeout)));
    const std::vector<double> bounds = CrashDetectionBuckets(t.interval, t.timeout);
    EXPECT_TRUE(StrictlyAscending(bounds));
    const double interval = absl::ToDoubleSeconds(t.interval);
    const double timeout = absl::ToDoubleSeconds(t.timeout);
    for (const double kernel : {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05}) {
      EXPECT_THAT(bounds, Contains(DoubleEq(kernel)));
    }
    EXPECT_THAT(bounds, Contains(DoubleEq(interval)));
    EXPECT_THAT(bounds, Contains(DoubleEq(2 * interval)));  // staleness threshold
    for (const double quarters : {0.0, 1.0, 2.0, 4.0, 8.0, 16.0}) {
      EXPECT_THAT(bounds, Contains(DoubleEq(timeout + quarters * interval / 4)));
    }
    EXPECT_THAT(bounds, Contains(DoubleEq(4 * timeout)));
  }
}

TEST(HubMetricsTest, CrashDetectionBucketsStayFiniteForAnEndlessCrashTimeout) {
  const std::vector<double> bounds =
      CrashDetectionBuckets(absl::Hours(1), absl::InfiniteDuration());
  EXPECT_TRUE(StrictlyAscending(bounds));
  EXPECT_THAT(bounds, Each(::testing::Truly([](double b) { return std::isfinite(b); })));
  EXPECT_DOUBLE_EQ(bounds.back(), 7200.0);  // 2 x interval; every timeout step is infinite
}

TEST(HubMetricsTest, RecoveryBucketsRunFromTenMicrosecondsToTheInterval) {
  for (const absl::Duration interval :
       {absl::Milliseconds(1), absl::Milliseconds(20), absl::Milliseconds(100), absl::Hours(1)}) {
    SCOPED_TRACE(absl::FormatDuration(interval));
    const std::vector<double> bounds = RecoveryBuckets(interval);
    EXPECT_TRUE(StrictlyAscending(bounds));
    EXPECT_DOUBLE_EQ(bounds.front(), 0.00001);
    EXPECT_DOUBLE_EQ(bounds.back(), absl::ToDoubleSeconds(interval));
  }
  EXPECT_THAT(
      RecoveryBuckets(absl::Milliseconds(100)),
      Pointwise(DoubleEq(), std::vector<double>{0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005,
                                                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1}));
}

}  // namespace
}  // namespace shmhub::server
