// PeerHub's entry points for guests on the local socket
// (peer_hub_local.cc), called directly as the socket server's loop calls
// them: reservations for guests that bootstrap (format §11), and what a
// doorbell hang-up or a process exit does to each state of the slot (§13).
// A real segment; the guest's side is played through its own mapping.
#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/hub/peer_hub.h"
#include "shm/occupancy.h"
#include "tests/server/hub/peer_hub_fixture.h"

namespace shmhub::server {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;
using hubtest::Kinds;
using hubtest::PeerHubTest;

using PeerHubLocalTest = PeerHubTest;

LocalGuest SocketGuest(std::string session_id = "", bool process_watched = true) {
  LocalGuest guest;
  guest.session_id = std::move(session_id);
  guest.pid = 4242;
  guest.uid = 1000;
  guest.process_watched = process_watched;
  return guest;
}

TEST_F(PeerHubLocalTest, AGuestWithoutASessionIdGetsAFreshSlotOwnedByTheLocalSocket) {
  absl::StatusOr<Reservation> reservation = hub_->ReserveForLocalGuest(SocketGuest());
  ASSERT_TRUE(reservation.ok()) << reservation.status();
  EXPECT_EQ(reservation->peer_id, 1u);
  EXPECT_FALSE(reservation->replayed);
  const std::vector<v1::PeerEvent> events = NewEvents();
  ASSERT_THAT(Kinds(events), ElementsAre(v1::EVENT_KIND_RESERVED));
  EXPECT_EQ(events[0].owner(), "local-socket");
  EXPECT_THAT(events[0].labels(),
              UnorderedElementsAre(::testing::Pair("pid", "4242"), ::testing::Pair("uid", "1000")));
  const v1::Peer peer = MustGetPeer(reservation->peer_id);
  EXPECT_EQ(peer.state(), v1::PEER_STATE_RESERVED);
  EXPECT_EQ(peer.pid(), 4242u);
  EXPECT_THAT(peer.armed_detectors(), IsEmpty()) << "only an Attached guest is watched";
}

TEST_F(PeerHubLocalTest, OnceClaimedTheGuestIsWatchedByItsDoorbellAndItsProcess) {
  const Reservation reservation = *hub_->ReserveForLocalGuest(SocketGuest());
  ASSERT_TRUE(GuestEntry(reservation.peer_id).ClaimFenced(reservation.epoch).ok());
  hub_->Scan();
  EXPECT_THAT(MustGetPeer(reservation.peer_id).armed_detectors(),
              ElementsAre(v1::DETECTOR_DOORBELL, v1::DETECTOR_PROCESS_EXIT));
}

TEST_F(PeerHubLocalTest, WithoutAPidfdOnlyTheDoorbellIsArmed) {
  const Reservation reservation =
      *hub_->ReserveForLocalGuest(SocketGuest("", /*process_watched=*/false));
  ASSERT_TRUE(GuestEntry(reservation.peer_id).ClaimFenced(reservation.epoch).ok());
  hub_->Scan();
  EXPECT_THAT(MustGetPeer(reservation.peer_id).armed_detectors(),
              ElementsAre(v1::DETECTOR_DOORBELL));
}

TEST_F(PeerHubLocalTest, ASessionIdNamingAReservationHandsThatOccupancyOver) {
  const Reservation reserved = MustReserve(Request(absl::Seconds(30), "job-7"));
  NewEvents();
  absl::StatusOr<Reservation> handed = hub_->ReserveForLocalGuest(SocketGuest("job-7"));
  ASSERT_TRUE(handed.ok()) << handed.status();
  EXPECT_EQ(handed->occupancy(), reserved.occupancy());
  EXPECT_EQ(handed->lease_expires_at, reserved.lease_expires_at);
  EXPECT_THAT(NewEvents(), IsEmpty()) << "a hand-over is no new reservation";
  EXPECT_EQ(MustGetPeer(reserved.peer_id).pid(), 4242u);
}

TEST_F(PeerHubLocalTest, ASessionIdNamingNoReservationIsNotFoundAndSaysWhatToDo) {
  absl::StatusOr<Reservation> handed = hub_->ReserveForLocalGuest(SocketGuest("nobody"));
  EXPECT_EQ(handed.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(handed.status().message(), HasSubstr("ReservePeer"));
  EXPECT_THAT(NewEvents(), IsEmpty());
}

TEST_F(PeerHubLocalTest, ASessionIdOfAClaimedReservationIsAFailedPrecondition) {
  const Reservation reserved = MustReserve(Request(absl::Seconds(30), "job-8"));
  ASSERT_TRUE(GuestEntry(reserved.peer_id).ClaimFenced(reserved.epoch).ok());
  hub_->Scan();
  absl::StatusOr<Reservation> handed = hub_->ReserveForLocalGuest(SocketGuest("job-8"));
  EXPECT_EQ(handed.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(handed.status().message(), HasSubstr("no longer Reserved"));
}

TEST_F(PeerHubLocalTest, ADoorbellHangUpOfAnAttachedGuestCrashesAndRecoversIt) {
  const Reservation reservation = *hub_->ReserveForLocalGuest(SocketGuest());
  ASSERT_TRUE(GuestEntry(reservation.peer_id).ClaimFenced(reservation.epoch).ok());
  hub_->Scan();
  NewEvents();
  hub_->OnLocalGuestGone(reservation.occupancy(), v1::DETECTOR_DOORBELL, absl::Milliseconds(3));
  const std::vector<v1::PeerEvent> events = NewEvents();
  ASSERT_THAT(Kinds(events), ElementsAre(v1::EVENT_KIND_CRASHED, v1::EVENT_KIND_RECOVERED));
  EXPECT_EQ(events[0].detector(), v1::DETECTOR_DOORBELL);
  EXPECT_THAT(events[0].reason(), HasSubstr("doorbell hung up"));
  EXPECT_EQ(MustGetPeer(reservation.peer_id).state(), v1::PEER_STATE_EMPTY);
  EXPECT_FALSE(hub_->IsCurrentOccupancy(reservation.occupancy()));
}

TEST_F(PeerHubLocalTest, AProcessExitNamesTheProcessDetectorAndThePid) {
  const Reservation reservation = *hub_->ReserveForLocalGuest(SocketGuest());
  ASSERT_TRUE(GuestEntry(reservation.peer_id).ClaimFenced(reservation.epoch).ok());
  hub_->Scan();
  NewEvents();
  hub_->OnLocalGuestGone(reservation.occupancy(), v1::DETECTOR_PROCESS_EXIT, absl::ZeroDuration());
  const std::vector<v1::PeerEvent> events = NewEvents();
  ASSERT_THAT(Kinds(events), ElementsAre(v1::EVENT_KIND_CRASHED, v1::EVENT_KIND_RECOVERED));
  EXPECT_EQ(events[0].detector(), v1::DETECTOR_PROCESS_EXIT);
  EXPECT_THAT(events[0].reason(), HasSubstr("pid 4242 exited"));
}

TEST_F(PeerHubLocalTest, AGuestThatLeavesBeforeClaimingReleasesItsReservation) {
  const Reservation reservation = *hub_->ReserveForLocalGuest(SocketGuest());
  NewEvents();
  hub_->OnLocalGuestGone(reservation.occupancy(), v1::DETECTOR_DOORBELL, absl::ZeroDuration());
  const std::vector<v1::PeerEvent> events = NewEvents();
  ASSERT_THAT(Kinds(events), ElementsAre(v1::EVENT_KIND_RELEASED));
  EXPECT_THAT(events[0].reason(), HasSubstr("left before claiming"));
  EXPECT_EQ(MustGetPeer(reservation.peer_id).state(), v1::PEER_STATE_EMPTY);
}

TEST_F(PeerHubLocalTest, AGoodbyeStoredBeforeTheHangUpIsReportedAsGoodbyeNotACrash) {
  const Reservation reservation = *hub_->ReserveForLocalGuest(SocketGuest());
  ASSERT_TRUE(GuestEntry(reservation.peer_id).ClaimFenced(reservation.epoch).ok());
  hub_->Scan();
  NewEvents();
  ASSERT_TRUE(GuestEntry(reservation.peer_id).GoodbyeFenced(reservation.epoch).ok());
  hub_->OnLocalGuestGone(reservation.occupancy(), v1::DETECTOR_DOORBELL, absl::ZeroDuration());
  EXPECT_THAT(Kinds(NewEvents()), ElementsAre(v1::EVENT_KIND_GOODBYE, v1::EVENT_KIND_RECOVERED));
}

TEST_F(PeerHubLocalTest, AReportAboutAnEndedOccupancyChangesNothing) {
  const Reservation first = *hub_->ReserveForLocalGuest(SocketGuest());
  ASSERT_TRUE(hub_->Release(first.occupancy()).ok());
  const Reservation second = MustReserve(Request());
  ASSERT_EQ(second.peer_id, first.peer_id);
  ASSERT_NE(second.epoch, first.epoch);
  NewEvents();
  hub_->OnLocalGuestGone(first.occupancy(), v1::DETECTOR_DOORBELL, absl::ZeroDuration());
  EXPECT_THAT(NewEvents(), IsEmpty());
  EXPECT_TRUE(hub_->IsCurrentOccupancy(second.occupancy()));
  EXPECT_FALSE(hub_->IsCurrentOccupancy(first.occupancy()));
  EXPECT_EQ(MustGetPeer(second.peer_id).state(), v1::PEER_STATE_RESERVED);
}

TEST_F(PeerHubLocalTest, IsCurrentOccupancyIsFalseForPeerIdsOutsideTheTable) {
  EXPECT_FALSE(hub_->IsCurrentOccupancy(shm::Occupancy{0, 1}));
  EXPECT_FALSE(hub_->IsCurrentOccupancy(shm::Occupancy{hubtest::kMaxGuests + 1, 1}));
}

TEST_F(PeerHubLocalTest, AfterShutdownNoLocalGuestIsReservedAndReportsAreIgnored) {
  const Reservation reservation = *hub_->ReserveForLocalGuest(SocketGuest());
  hub_->BeginShutdown();
  NewEvents();
  absl::StatusOr<Reservation> refused = hub_->ReserveForLocalGuest(SocketGuest());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(refused.status().message(), HasSubstr("shutting down"));
  hub_->OnLocalGuestGone(reservation.occupancy(), v1::DETECTOR_DOORBELL, absl::ZeroDuration());
  EXPECT_THAT(NewEvents(), IsEmpty());
}

}  // namespace
}  // namespace shmhub::server
