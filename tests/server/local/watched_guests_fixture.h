// A PeerHub test (tests/server/hub/peer_hub_fixture.h) with the local
// socket's WatchedGuests beside it, and local guests that bootstrapped and
// claimed their slot: the hub reserved the slot as the socket server's
// BootstrapGuest does, the guest's side claimed it through its own
// mapping, and the daemon's ends of its doorbell and mapping-control pair
// are watched. The guest's doorbell end is the test's to close, as the
// kernel does when a guest process dies.
#ifndef SHMHUB_TESTS_SERVER_LOCAL_WATCHED_GUESTS_FIXTURE_H_
#define SHMHUB_TESTS_SERVER_LOCAL_WATCHED_GUESTS_FIXTURE_H_

#include <memory>
#include <utility>

#include "absl/status/statusor.h"
#include "gtest/gtest.h"
#include "server/hub/peer_hub.h"
#include "server/local/watched_guests.h"
#include "shm/doorbell.h"
#include "shm/mapping_control.h"
#include "shm/occupancy.h"
#include "tests/server/hub/peer_hub_fixture.h"

namespace shmhub::server::localtest {

class WatchedGuestsFixture : public hubtest::PeerHubTest {
 protected:
  void SetUp() override {
    PeerHubTest::SetUp();
    guests_ = std::make_unique<WatchedGuests>(hub_.get());
  }
  // Before the hub goes: what it watches are the hub's occupancies.
  void TearDown() override { guests_.reset(); }

  // A local guest, reserved, claimed, published ATTACHED by a Scan and
  // watched; sets `occupancy` and returns the guest's doorbell end. Events
  // up to here are consumed.
  shm::Doorbell AttachedLocalGuest(shm::Occupancy* occupancy) {
    LocalGuest who;
    who.pid = 77;
    absl::StatusOr<Reservation> reservation = hub_->ReserveForLocalGuest(who);
    EXPECT_TRUE(reservation.ok()) << reservation.status();
    *occupancy = reservation->occupancy();
    auto doorbells = shm::Doorbell::CreatePair();
    auto mapping = shm::CreateMappingControlPair();
    EXPECT_TRUE(doorbells.ok() && mapping.ok());
    guests_->Add(WatchedGuest{.occupancy = *occupancy,
                              .doorbell = std::move(doorbells->first),
                              .pidfd = {},
                              .mapping_control = std::move(mapping->first)});
    EXPECT_TRUE(GuestEntry(occupancy->peer_id).ClaimFenced(occupancy->epoch).ok());
    hub_->Scan();
    NewEvents();
    return std::move(doorbells->second);
  }

  std::unique_ptr<WatchedGuests> guests_;
};

}  // namespace shmhub::server::localtest

#endif  // SHMHUB_TESTS_SERVER_LOCAL_WATCHED_GUESTS_FIXTURE_H_
