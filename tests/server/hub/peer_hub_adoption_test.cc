// A PeerHub that adopts the segment an earlier PeerHub left at its path
// (handed over, or killed), and one that must replace it instead: the
// occupancies kept, the geometry refused or reset, epochs that never come
// back, and a guest that died meanwhile reported as found at adoption. A
// real segment; the guest's side is played through its own mapping.
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/base/monotonic_clock.h"
#include "server/hub/peer_hub.h"
#include "shm/format.h"
#include "shm/occupancy.h"
#include "tests/server/hub/peer_hub_fixture.h"

namespace shmhub::server {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using hubtest::Kinds;
using hubtest::PeerHubTest;

class PeerHubAdoptionTest : public PeerHubTest {
 protected:
  // The running hub hands over (as shmhubd --stop_mode=handover does) and a
  // new one starts on `config`.
  absl::StatusOr<std::unique_ptr<PeerHub>> HandOverTo(const HubConfig& config) {
    hub_->BeginHandover();
    subscription_.reset();
    hub_.reset();
    journal_ = std::make_unique<EventJournal>("next-instance", 4096);
    EventJournal::SubscribeResult subscribed = journal_->Subscribe(0, 1 << 20, [] {});
    subscription_ = std::move(subscribed.subscription);
    return PeerHub::Create(config, journal_.get(), &metrics_);
  }
  void ScanTwice() {  // D-1: a pair another process wrote is confirmed on the next pass
    hub_->Scan();
    hub_->Scan();
  }
};

TEST_F(PeerHubAdoptionTest, AnAttachedGuestKeepsItsSlotAndEpochAcrossAHandover) {
  const Reservation guest = AttachedGuest();
  Heartbeat(guest.peer_id);
  absl::StatusOr<std::unique_ptr<PeerHub>> next = HandOverTo(hubtest::TestConfig(dir_));
  ASSERT_TRUE(next.ok()) << next.status();
  hub_ = *std::move(next);
  EXPECT_TRUE(hub_->adopted());
  Heartbeat(guest.peer_id);
  ScanTwice();
  const std::vector<v1::PeerEvent> events = NewEvents();
  ASSERT_THAT(Kinds(events), ElementsAre(v1::EVENT_KIND_ATTACHED));
  EXPECT_EQ(events[0].peer_id(), guest.peer_id);
  EXPECT_EQ(events[0].epoch(), guest.epoch);
  EXPECT_THAT(events[0].reason(), HasSubstr("found attached at adoption"));
  const v1::Peer peer = MustGetPeer(guest.peer_id);
  EXPECT_EQ(peer.state(), v1::PEER_STATE_ATTACHED);
  EXPECT_EQ(peer.epoch(), guest.epoch);
  EXPECT_TRUE(GuestEntry(guest.peer_id).LoadPair().first.Is(shm::PeerState::kAttached));
}

TEST_F(PeerHubAdoptionTest, AGuestSilentSinceBeforeTheHandoverIsCrashedAsFoundAtAdoption) {
  const Reservation guest = AttachedGuest();
  Heartbeat(guest.peer_id);
  hub_->BeginHandover();
  // The guest dies while no daemon runs: silent past the 100 ms crash timeout.
  absl::SleepFor(absl::Milliseconds(150));
  absl::StatusOr<std::unique_ptr<PeerHub>> next = HandOverTo(hubtest::TestConfig(dir_));
  ASSERT_TRUE(next.ok()) << next.status();
  hub_ = *std::move(next);
  ScanTwice();
  hub_->Scan();
  const std::vector<v1::PeerEvent> events = NewEvents();
  ASSERT_THAT(Kinds(events), ::testing::IsSupersetOf({v1::EVENT_KIND_CRASHED,
                                                      v1::EVENT_KIND_RECOVERED}));
  for (const v1::PeerEvent& event : events) {
    if (event.kind() != v1::EVENT_KIND_CRASHED) continue;
    EXPECT_EQ(event.epoch(), guest.epoch);
    EXPECT_THAT(event.reason(), HasSubstr("found at adoption"));
  }
  EXPECT_EQ(MustGetPeer(guest.peer_id).state(), v1::PEER_STATE_EMPTY);
}

TEST_F(PeerHubAdoptionTest, AnotherGeometryIsRefusedNamingTheFlagAndBothValues) {
  AttachedGuest();
  HubConfig other = hubtest::TestConfig(dir_);
  other.max_guests = 8;
  other.ring_bytes = 8192;
  absl::StatusOr<std::unique_ptr<PeerHub>> next = HandOverTo(other);
  ASSERT_EQ(next.status().code(), absl::StatusCode::kFailedPrecondition) << next.status();
  EXPECT_THAT(next.status().message(), HasSubstr("--max_guests"));
  EXPECT_THAT(next.status().message(), HasSubstr("the segment has 4, this daemon 8"));
  EXPECT_THAT(next.status().message(), HasSubstr("--ring_bytes"));
  EXPECT_THAT(next.status().message(), HasSubstr("--reset_segment"));
  EXPECT_FALSE(guest_->HostGoodbye()) << "a refused start leaves the guests alone";
}

TEST_F(PeerHubAdoptionTest, ResetReplacesTheSegmentTellsItsGuestsAndNeverReusesAnEpoch) {
  const Reservation old = AttachedGuest();
  HubConfig other = hubtest::TestConfig(dir_);
  other.max_guests = 8;
  other.reset_segment = true;
  absl::StatusOr<std::unique_ptr<PeerHub>> next = HandOverTo(other);
  ASSERT_TRUE(next.ok()) << next.status();
  hub_ = *std::move(next);
  EXPECT_FALSE(hub_->adopted());
  EXPECT_TRUE(guest_->HostGoodbye()) << "the old segment's guests are told to leave";
  const Reservation fresh = MustReserve(Request());
  EXPECT_EQ(fresh.peer_id, old.peer_id);
  EXPECT_GT(fresh.epoch, old.epoch) << "(peer, epoch) pairs never come back";
  EXPECT_EQ(hub_->SegmentInfo().max_guests(), 8u);
}

TEST_F(PeerHubAdoptionTest, ASegmentWhoseHostSaidGoodbyeIsReplacedNotAdopted) {
  const Reservation old = AttachedGuest();
  // As a daemon killed between raising host_goodbye and removing the file
  // leaves it: its guests are already leaving.
  std::atomic_ref<uint32_t>(
      reinterpret_cast<shm::SegmentHeader*>(guest_->base())->host_goodbye)
      .store(1, std::memory_order_release);
  absl::StatusOr<std::unique_ptr<PeerHub>> next = HandOverTo(hubtest::TestConfig(dir_));
  ASSERT_TRUE(next.ok()) << next.status();
  hub_ = *std::move(next);
  EXPECT_FALSE(hub_->adopted());
  const Reservation fresh = MustReserve(Request());
  EXPECT_EQ(fresh.peer_id, old.peer_id);
  EXPECT_GT(fresh.epoch, old.epoch);
}

}  // namespace
}  // namespace shmhub::server
