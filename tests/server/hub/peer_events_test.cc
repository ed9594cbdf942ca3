// The events PeerHub publishes and the log lines it writes for them.
#include "server/hub/peer_events.h"

#include <string>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/base/proto_time.h"

namespace shmhub::server {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(PeerEventsTest, CrashedCarriesTheDetectorAndAHeartbeatAgeOnlyWhenThereWasAHeartbeat) {
  const v1::PeerEvent with_age =
      MakeCrashedEvent({3, 7}, v1::DETECTOR_HEARTBEAT, 1'500'000'000u, "silent");
  EXPECT_EQ(with_age.kind(), v1::EVENT_KIND_CRASHED);
  EXPECT_EQ(with_age.peer_id(), 3u);
  EXPECT_EQ(with_age.epoch(), 7u);
  EXPECT_EQ(with_age.detector(), v1::DETECTOR_HEARTBEAT);
  ASSERT_TRUE(with_age.has_heartbeat_age());
  EXPECT_EQ(FromProtoDuration(with_age.heartbeat_age()), absl::Milliseconds(1500));

  const v1::PeerEvent without_age =
      MakeCrashedEvent({3, 7}, v1::DETECTOR_INVALID_STATE, std::nullopt, "state word 9");
  EXPECT_FALSE(without_age.has_heartbeat_age());
}

TEST(PeerEventsTest, RecoveryReportKeepsEveryCountAndTheProblemTotal) {
  shm::RecoveryReport report;
  report.entries_scanned = 5;
  report.slots_freed_from_ring = 2;
  report.slots_reclaimed_by_owner = 4;
  report.mapping_leases_dropped = 1;
  report.invalid_entries = 1;
  report.foreign_slot_refs = 2;
  const v1::RecoveryReport out = RecoveryReportToProto(report, absl::Milliseconds(3));
  EXPECT_EQ(out.ring_entries_scanned(), 5u);
  EXPECT_EQ(out.slots_freed_from_ring(), 2u);
  EXPECT_EQ(out.slots_reclaimed_by_owner(), 4u);
  EXPECT_EQ(out.mapping_leases_dropped(), 1u);
  EXPECT_EQ(out.problems(), 3u);
  EXPECT_EQ(FromProtoDuration(out.duration()), absl::Milliseconds(3));
}

TEST(PeerEventsTest, TheLogLineNamesPeerEpochKindAndDetector) {
  const std::string line = DescribePeerEvent(
      MakeCrashedEvent({3, 7}, v1::DETECTOR_HEARTBEAT, 1'500'000'000u, "silent for 1.5s"));
  EXPECT_EQ(line, "peer 3 epoch 7: CRASHED by HEARTBEAT, heartbeat age 1.5s (silent for 1.5s)");
  EXPECT_EQ(DescribePeerEvent(MakeHubEvent(v1::EVENT_KIND_HOST_SHUTDOWN)),
            "hub: HOST_SHUTDOWN");
}

TEST(PeerEventsTest, ClientTextIsEscapedSoOneEventStaysOneLogLine) {
  v1::PeerEvent event = MakePeerEvent(v1::EVENT_KIND_EVICTED, {2, 4}, "bad\nguest\x01");
  event.set_owner("team\r\nFAKE LOG LINE");
  const std::string line = DescribePeerEvent(event);
  EXPECT_THAT(line, Not(HasSubstr("\n")));
  EXPECT_THAT(line, Not(HasSubstr("\r")));
  EXPECT_THAT(line, HasSubstr("bad\\nguest\\x01"));
  EXPECT_THAT(line, HasSubstr("team\\r\\nFAKE LOG LINE"));
}

}  // namespace
}  // namespace shmhub::server
