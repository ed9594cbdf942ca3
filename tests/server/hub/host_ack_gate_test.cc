// HostAckGate's bookkeeping on its own: what the host application is told,
// in which order, and which recoveries wait for it and until when. Time is
// the CLOCK_MONOTONIC value the caller passes.
#include "server/hub/host_ack_gate.h"

#include <cstdint>
#include <vector>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "shm/host_control.h"

namespace shmhub::server {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using Verdict = HostAckGate::Verdict;

constexpr uint32_t kSlots = 4;
constexpr absl::Duration kTimeout = absl::Seconds(2);
constexpr uint64_t kSecond = 1'000'000'000;

shm::HostRecord Attached(uint32_t peer, uint32_t epoch) {
  return shm::PeerAttachedRecord({peer, epoch}, 0);
}
shm::HostRecord Recovering(uint32_t peer, uint32_t epoch, shm::PeerDeparture why) {
  return shm::PeerRecoveringRecord({peer, epoch}, why);
}

class HostAckGateTest : public ::testing::Test {
 protected:
  HostAckGate gate_{kSlots, kTimeout};
};

TEST_F(HostAckGateTest, WithoutAHostNothingIsToldAndEveryRecoveryRunsAtOnce) {
  gate_.Announce({1, 5});
  EXPECT_EQ(gate_.BeginRecovery({1, 5}, shm::PeerDeparture::kCrashed, 0), Verdict::kRecoverNow);
  EXPECT_THAT(gate_.TakeNotices(), IsEmpty());
}

TEST_F(HostAckGateTest, AnnouncedOccupancyRecoversOnlyAfterItsAcknowledgement) {
  gate_.Register();
  gate_.Announce({2, 7});
  EXPECT_EQ(gate_.BeginRecovery({2, 7}, shm::PeerDeparture::kLeft, 10), Verdict::kWait);
  EXPECT_EQ(gate_.BeginRecovery({2, 7}, shm::PeerDeparture::kLeft, 20), Verdict::kWait);
  EXPECT_THAT(gate_.TakeNotices(),
              ElementsAre(Attached(2, 7), Recovering(2, 7, shm::PeerDeparture::kLeft)));
  EXPECT_FALSE(gate_.Acknowledge({2, 6})) << "another occupancy's acknowledgement";
  EXPECT_TRUE(gate_.Acknowledge({2, 7}));
  EXPECT_FALSE(gate_.Acknowledge({2, 7})) << "a repeated acknowledgement";
  EXPECT_EQ(gate_.BeginRecovery({2, 7}, shm::PeerDeparture::kLeft, 30), Verdict::kRecoverNow);
  EXPECT_THAT(gate_.TakeNotices(), IsEmpty());
}

TEST_F(HostAckGateTest, UnacknowledgedRecoveryTimesOutOnceAtItsDeadline) {
  gate_.Register();
  gate_.Announce({1, 1});
  const uint64_t start = 5 * kSecond;
  EXPECT_EQ(gate_.BeginRecovery({1, 1}, shm::PeerDeparture::kEvicted, start), Verdict::kWait);
  const uint64_t deadline = start + 2 * kSecond;
  EXPECT_EQ(gate_.BeginRecovery({1, 1}, shm::PeerDeparture::kEvicted, deadline - 1),
            Verdict::kWait);
  EXPECT_EQ(gate_.BeginRecovery({1, 1}, shm::PeerDeparture::kEvicted, deadline),
            Verdict::kTimedOut);
  EXPECT_EQ(gate_.BeginRecovery({1, 1}, shm::PeerDeparture::kEvicted, deadline + 1),
            Verdict::kRecoverNow);
  EXPECT_FALSE(gate_.Acknowledge({1, 1})) << "too late: the recovery already went ahead";
}

TEST_F(HostAckGateTest, HugeTimeoutSaturatesInsteadOfWrappingIntoThePast) {
  HostAckGate gate(kSlots, absl::InfiniteDuration());
  gate.Register();
  gate.Announce({1, 1});
  EXPECT_EQ(gate.BeginRecovery({1, 1}, shm::PeerDeparture::kCrashed, UINT64_MAX - 10),
            Verdict::kWait);
  EXPECT_EQ(gate.BeginRecovery({1, 1}, shm::PeerDeparture::kCrashed, UINT64_MAX - 1),
            Verdict::kWait);
}

TEST_F(HostAckGateTest, OccupancyTheHostNeverHeardOfRecoversAtOnce) {
  gate_.Register();
  gate_.Announce({1, 3});
  EXPECT_EQ(gate_.BeginRecovery({1, 2}, shm::PeerDeparture::kCrashed, 0), Verdict::kRecoverNow);
  EXPECT_EQ(gate_.BeginRecovery({2, 3}, shm::PeerDeparture::kCrashed, 0), Verdict::kRecoverNow);
  EXPECT_THAT(gate_.TakeNotices(), ElementsAre(Attached(1, 3)));
}

TEST_F(HostAckGateTest, AnnouncingTwiceTellsTheHostOnce) {
  gate_.Register();
  gate_.Announce({3, 1});
  gate_.Announce({3, 1});
  EXPECT_THAT(gate_.TakeNotices(), ElementsAre(Attached(3, 1)));
}

TEST_F(HostAckGateTest, NewOccupancyOfAKnownSlotEndsTheOldOneFirst) {
  gate_.Register();
  gate_.Announce({1, 1});
  gate_.Announce({1, 2});
  EXPECT_THAT(gate_.TakeNotices(),
              ElementsAre(Attached(1, 1), Recovering(1, 1, shm::PeerDeparture::kVanished),
                          Attached(1, 2)));
}

TEST_F(HostAckGateTest, OccupancyThatEndsWithoutRecoveryIsReportedVanished) {
  gate_.Register();
  gate_.Announce({1, 4});
  gate_.Announce({2, 4});
  gate_.Reconcile(1, 4);  // still live: nothing
  gate_.Reconcile(1, std::nullopt);
  gate_.Reconcile(2, 5);
  EXPECT_THAT(gate_.TakeNotices(),
              ElementsAre(Attached(1, 4), Attached(2, 4),
                          Recovering(1, 4, shm::PeerDeparture::kVanished),
                          Recovering(2, 4, shm::PeerDeparture::kVanished)));
  EXPECT_EQ(gate_.BeginRecovery({1, 4}, shm::PeerDeparture::kLeft, 0), Verdict::kRecoverNow);
}

TEST_F(HostAckGateTest, WaitingRecoveryWhoseSlotWasEmptiedOutsideIsForgottenQuietly) {
  gate_.Register();
  gate_.Announce({1, 4});
  EXPECT_EQ(gate_.BeginRecovery({1, 4}, shm::PeerDeparture::kLeft, 0), Verdict::kWait);
  gate_.TakeNotices();
  gate_.Reconcile(1, std::nullopt);
  EXPECT_THAT(gate_.TakeNotices(), IsEmpty());
  EXPECT_FALSE(gate_.Acknowledge({1, 4}));
}

TEST_F(HostAckGateTest, UnregisterDropsQueuedRecordsAndReturnsTheRecoveriesThatWaited) {
  gate_.Register();
  gate_.Announce({1, 1});
  gate_.Announce({2, 1});
  gate_.Announce({3, 1});
  EXPECT_EQ(gate_.BeginRecovery({1, 1}, shm::PeerDeparture::kCrashed, 0), Verdict::kWait);
  EXPECT_EQ(gate_.BeginRecovery({3, 1}, shm::PeerDeparture::kLeft, 0), Verdict::kWait);
  EXPECT_THAT(gate_.Unregister(), ElementsAre(shm::Occupancy{1, 1}, shm::Occupancy{3, 1}));
  EXPECT_FALSE(gate_.registered());
  EXPECT_THAT(gate_.TakeNotices(), IsEmpty());
  // Everything the old host knew is forgotten.
  EXPECT_EQ(gate_.BeginRecovery({2, 1}, shm::PeerDeparture::kLeft, 0), Verdict::kRecoverNow);

  gate_.Register();
  gate_.Announce({2, 1});
  EXPECT_THAT(gate_.TakeNotices(), ElementsAre(Attached(2, 1)));
}

TEST_F(HostAckGateTest, OrphanIsNeverAnnouncedAgainUntilItsOccupancyEnds) {
  gate_.Register();
  gate_.Announce({1, 9});
  gate_.Unregister();
  gate_.Orphan({1, 9});
  gate_.Register();
  gate_.Announce({1, 9});
  EXPECT_EQ(gate_.BeginRecovery({1, 9}, shm::PeerDeparture::kLeft, 0), Verdict::kRecoverNow);
  EXPECT_THAT(gate_.TakeNotices(), IsEmpty());

  gate_.Reconcile(1, std::nullopt);
  gate_.Announce({1, 10});
  EXPECT_THAT(gate_.TakeNotices(), ElementsAre(Attached(1, 10)));
}

TEST_F(HostAckGateTest, PeerIdsOutsideTheTableAreIgnored) {
  gate_.Register();
  gate_.Announce({0, 1});
  gate_.Announce({kSlots + 1, 1});
  gate_.Orphan({kSlots + 1, 1});
  gate_.Reconcile(0, 1);
  EXPECT_EQ(gate_.BeginRecovery({kSlots + 1, 1}, shm::PeerDeparture::kLeft, 0),
            Verdict::kRecoverNow);
  EXPECT_FALSE(gate_.Acknowledge({0, 1}));
  EXPECT_THAT(gate_.TakeNotices(), IsEmpty());
}

TEST_F(HostAckGateTest, EveryQueuedRecordCallsTheNoticeCallback) {
  int calls = 0;
  gate_.set_notice_callback([&calls] { ++calls; });
  gate_.Register();
  gate_.Announce({1, 1});
  gate_.BeginRecovery({1, 1}, shm::PeerDeparture::kCrashed, 0);
  EXPECT_EQ(calls, 2);
  gate_.set_notice_callback({});
  gate_.Announce({2, 1});
  EXPECT_EQ(calls, 2) << "called after the callback was cleared";
  EXPECT_EQ(gate_.TakeNotices().size(), 3u);
}

}  // namespace
}  // namespace shmhub::server
