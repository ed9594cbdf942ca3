// A guest's whole life as the daemon reports it on WatchEvents: a real
// shmhubd on an ephemeral 127.0.0.1 port with short liveness intervals, its
// segment in a TempDir, and real shmhub-guest processes that are SIGKILLed,
// SIGSTOPped and SIGTERMed. Every wait has a deadline; every process is
// killed and reaped when its test ends.
#include <signal.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "shmhub/v1/hub.pb.h"
#include "tests/e2e/running_hub.h"
#include "tests/testing/spawned_process.h"

namespace shmhub {
namespace {

using ::shmhub::testing::GuestSlot;
using ::shmhub::testing::ReserveSlot;
using ::shmhub::testing::SpawnedProcess;
using ::shmhub::testing::StartClaimingGuest;
using ::shmhub::testing::StartShmhubGuest;
using ::shmhub::testing::WatchedHubTest;
using v1::EventKind;
using v1::PeerEvent;

// Liveness settings: STALE after 2 x 20ms without a heartbeat, CRASHED after
// 1s. The crash timeout is generous so a briefly stopped guest on a busy
// machine is still only STALE.
constexpr absl::Duration kCrashTimeout = absl::Seconds(1);

class PeerLifecycleProcessTest : public WatchedHubTest {
 protected:
  void SetUp() override {
    StartWatchedHub(
        {.flags = {"--max_guests=1", "--heartbeat_interval=20ms",
                   absl::StrCat("--crash_timeout=", absl::FormatDuration(kCrashTimeout))}});
  }

  v1::ReservePeerResponse Reserve(std::optional<absl::Duration> lease_ttl = std::nullopt) {
    return ReserveSlot(*hub_, "lifecycle-e2e", lease_ttl);
  }

  // A shmhub-guest claiming `reservation`, once it reports it is attached.
  std::unique_ptr<SpawnedProcess> StartGuest(const v1::ReservePeerResponse& reservation) {
    return StartClaimingGuest(dir_, endpoints_.segment_path, reservation,
                              absl::StrCat("guest", ++guests_, ".err"));
  }

  // A shmhub-guest that bootstraps over the daemon's local socket, once it
  // reports the slot the daemon gave it. Without heartbeats only the
  // kernel detectors (doorbell, process exit) watch it.
  std::unique_ptr<SpawnedProcess> StartLocalGuest(bool heartbeat, v1::ReservePeerResponse* slot) {
    GuestSlot attached;
    std::unique_ptr<SpawnedProcess> guest =
        StartShmhubGuest(dir_,
                         {"--socket=" + endpoints_.socket_path,
                          heartbeat ? "--heartbeat_interval=20ms" : "--heartbeat=false"},
                         absl::StrCat("guest", ++guests_, ".err"), &attached);
    slot->set_peer_id(attached.peer_id);
    slot->set_epoch(attached.epoch);
    return guest;
  }

  // Expects the next `kind` event for the reservation's occupancy.
  std::optional<PeerEvent> Expect(const v1::ReservePeerResponse& reservation, EventKind kind) {
    std::optional<PeerEvent> event = ExpectEvent(reservation.peer_id(), kind, &cursor_);
    if (event.has_value()) {
      EXPECT_EQ(event->epoch(), reservation.epoch());
    }
    return event;
  }

  size_t cursor_ = 0;
  int guests_ = 0;
};

TEST_F(PeerLifecycleProcessTest, KilledGuestIsDetectedByHeartbeatRecoveredAndSlotReused) {
  const v1::ReservePeerResponse first = Reserve();
  std::unique_ptr<SpawnedProcess> guest = StartGuest(first);
  ASSERT_TRUE(Expect(first, v1::EVENT_KIND_ATTACHED).has_value());

  guest->Signal(SIGKILL);
  ASSERT_EQ(guest->Wait(), 128 + SIGKILL);
  ASSERT_TRUE(Expect(first, v1::EVENT_KIND_STALE).has_value());
  const std::optional<PeerEvent> crashed = Expect(first, v1::EVENT_KIND_CRASHED);
  ASSERT_TRUE(crashed.has_value());
  EXPECT_EQ(crashed->detector(), v1::DETECTOR_HEARTBEAT);
  ASSERT_TRUE(Expect(first, v1::EVENT_KIND_RECOVERED).has_value());

  // --max_guests=1: the only slot must be free again, under a new epoch.
  const v1::ReservePeerResponse second = Reserve();
  EXPECT_EQ(second.peer_id(), first.peer_id());
  EXPECT_NE(second.epoch(), first.epoch());
  std::unique_ptr<SpawnedProcess> next_guest = StartGuest(second);
  EXPECT_TRUE(Expect(second, v1::EVENT_KIND_ATTACHED).has_value());
}

TEST_F(PeerLifecycleProcessTest, BrieflyStoppedGuestGoesStaleThenFreshWithoutCrash) {
  const v1::ReservePeerResponse reservation = Reserve();
  std::unique_ptr<SpawnedProcess> guest = StartGuest(reservation);
  ASSERT_TRUE(Expect(reservation, v1::EVENT_KIND_ATTACHED).has_value());

  guest->Signal(SIGSTOP);
  // Stopped far longer than 2 x 20ms, far shorter than the 1s crash timeout.
  const std::optional<PeerEvent> stale =
      log_.WaitFor(reservation.peer_id(), v1::EVENT_KIND_STALE, &cursor_, kCrashTimeout / 4);
  guest->Signal(SIGCONT);
  ASSERT_TRUE(stale.has_value()) << "no STALE while stopped; events:" << log_.Describe();
  ASSERT_TRUE(Expect(reservation, v1::EVENT_KIND_FRESH).has_value());
  EXPECT_EQ(log_.Count(reservation.peer_id(), v1::EVENT_KIND_CRASHED), 0u) << log_.Describe();

  guest->Signal(SIGTERM);
  EXPECT_EQ(guest->Wait(), 0) << guest->Stderr();
}

TEST_F(PeerLifecycleProcessTest, GuestStoppedPastCrashTimeoutIsCrashed) {
  const v1::ReservePeerResponse reservation = Reserve();
  std::unique_ptr<SpawnedProcess> guest = StartGuest(reservation);
  ASSERT_TRUE(Expect(reservation, v1::EVENT_KIND_ATTACHED).has_value());

  guest->Signal(SIGSTOP);
  ASSERT_TRUE(Expect(reservation, v1::EVENT_KIND_STALE).has_value());
  const std::optional<PeerEvent> crashed = Expect(reservation, v1::EVENT_KIND_CRASHED);
  ASSERT_TRUE(crashed.has_value());
  EXPECT_EQ(crashed->detector(), v1::DETECTOR_HEARTBEAT);
  guest->Signal(SIGKILL);
  EXPECT_EQ(guest->Wait(), 128 + SIGKILL);
}

TEST_F(PeerLifecycleProcessTest, TerminatedGuestSaysGoodbyeAndSlotIsRecovered) {
  const v1::ReservePeerResponse reservation = Reserve();
  std::unique_ptr<SpawnedProcess> guest = StartGuest(reservation);
  ASSERT_TRUE(Expect(reservation, v1::EVENT_KIND_ATTACHED).has_value());

  guest->Signal(SIGTERM);
  EXPECT_TRUE(guest->WaitForLine("goodbye ").has_value()) << guest->Stderr();
  EXPECT_EQ(guest->Wait(), 0) << guest->Stderr();
  ASSERT_TRUE(Expect(reservation, v1::EVENT_KIND_GOODBYE).has_value());
  ASSERT_TRUE(Expect(reservation, v1::EVENT_KIND_RECOVERED).has_value());
  EXPECT_EQ(log_.Count(reservation.peer_id(), v1::EVENT_KIND_CRASHED), 0u) << log_.Describe();
}

TEST_F(PeerLifecycleProcessTest, UnclaimedReservationExpiresAfterItsLease) {
  const v1::ReservePeerResponse reservation = Reserve(absl::Milliseconds(100));
  ASSERT_TRUE(Expect(reservation, v1::EVENT_KIND_RESERVED).has_value());
  ASSERT_TRUE(Expect(reservation, v1::EVENT_KIND_RESERVATION_EXPIRED).has_value());

  // The slot is free again: the only slot can be reserved anew.
  const v1::ReservePeerResponse next = Reserve();
  EXPECT_EQ(next.peer_id(), reservation.peer_id());
}

TEST_F(PeerLifecycleProcessTest, LocalSocketGuestIsWatchedByDoorbellAndProcessExitAndShowsItsPid) {
  v1::ReservePeerResponse slot;
  std::unique_ptr<SpawnedProcess> guest = StartLocalGuest(/*heartbeat=*/false, &slot);
  ASSERT_TRUE(Expect(slot, v1::EVENT_KIND_RESERVED).has_value());
  ASSERT_TRUE(Expect(slot, v1::EVENT_KIND_ATTACHED).has_value());

  const auto reply = hub_->GetPeer(slot.peer_id());
  ASSERT_TRUE(reply.ok()) << reply.status();
  const v1::Peer& peer = reply->peer();
  EXPECT_EQ(peer.pid(), static_cast<uint32_t>(guest->pid()));
  EXPECT_EQ(peer.owner(), "local-socket");
  std::vector<v1::Detector> armed;
  for (const int detector : peer.armed_detectors()) {
    armed.push_back(static_cast<v1::Detector>(detector));
  }
  EXPECT_EQ(armed, (std::vector<v1::Detector>{v1::DETECTOR_DOORBELL, v1::DETECTOR_PROCESS_EXIT}));
  EXPECT_FALSE(peer.unmonitored());
}

TEST_F(PeerLifecycleProcessTest, KilledLocalSocketGuestIsCrashedByAKernelDetectorWithoutHeartbeats) {
  v1::ReservePeerResponse slot;
  std::unique_ptr<SpawnedProcess> guest = StartLocalGuest(/*heartbeat=*/false, &slot);
  ASSERT_TRUE(Expect(slot, v1::EVENT_KIND_ATTACHED).has_value());

  // The guest never heartbeats, so the heartbeat detector is not armed and
  // only the doorbell hang-up or the pidfd can notice the kill.
  guest->Signal(SIGKILL);
  ASSERT_EQ(guest->Wait(), 128 + SIGKILL);
  const std::optional<PeerEvent> crashed = Expect(slot, v1::EVENT_KIND_CRASHED);
  ASSERT_TRUE(crashed.has_value());
  EXPECT_TRUE(crashed->detector() == v1::DETECTOR_DOORBELL ||
              crashed->detector() == v1::DETECTOR_PROCESS_EXIT)
      << v1::Detector_Name(crashed->detector());
  ASSERT_TRUE(Expect(slot, v1::EVENT_KIND_RECOVERED).has_value());
  EXPECT_EQ(log_.Count(slot.peer_id(), v1::EVENT_KIND_STALE), 0u) << log_.Describe();

  // The slot serves the next local guest under a new epoch.
  v1::ReservePeerResponse next;
  std::unique_ptr<SpawnedProcess> next_guest = StartLocalGuest(/*heartbeat=*/false, &next);
  EXPECT_EQ(next.peer_id(), slot.peer_id());
  EXPECT_NE(next.epoch(), slot.epoch());
}

TEST_F(PeerLifecycleProcessTest, StoppedLocalSocketGuestStaysStalePastTheCrashTimeoutWhileItLives) {
  v1::ReservePeerResponse slot;
  std::unique_ptr<SpawnedProcess> guest = StartLocalGuest(/*heartbeat=*/true, &slot);
  ASSERT_TRUE(Expect(slot, v1::EVENT_KIND_ATTACHED).has_value());

  guest->Signal(SIGSTOP);
  ASSERT_TRUE(Expect(slot, v1::EVENT_KIND_STALE).has_value());
  // Twice the crash timeout of silence: a guest attached by path would have
  // been crashed by now; this one's pidfd says it is alive.
  EXPECT_FALSE(
      log_.WaitFor(slot.peer_id(), v1::EVENT_KIND_CRASHED, &cursor_, 2 * kCrashTimeout).has_value())
      << log_.Describe();
  guest->Signal(SIGCONT);
  ASSERT_TRUE(Expect(slot, v1::EVENT_KIND_FRESH).has_value());

  guest->Signal(SIGTERM);
  EXPECT_EQ(guest->Wait(), 0) << guest->Stderr();
  ASSERT_TRUE(Expect(slot, v1::EVENT_KIND_GOODBYE).has_value());
  ASSERT_TRUE(Expect(slot, v1::EVENT_KIND_RECOVERED).has_value());
  EXPECT_EQ(log_.Count(slot.peer_id(), v1::EVENT_KIND_CRASHED), 0u) << log_.Describe();
}

}  // namespace
}  // namespace shmhub
