// WatchedGuests driven on the test's thread against a real PeerHub and
// segment: real doorbell socketpairs whose guest ends the test closes, as
// the kernel does when a guest process dies.
#include "server/local/watched_guests.h"

#include <poll.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/local/poll_set.h"
#include "shm/doorbell.h"
#include "shm/occupancy.h"
#include "tests/server/local/watched_guests_fixture.h"

namespace shmhub::server {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::SizeIs;
using hubtest::Kinds;

class WatchedGuestsTest : public localtest::WatchedGuestsFixture {
 protected:
  // One turn of the loop for the guests.
  void Turn() {
    PollSet polled;
    guests_->AddTo(polled);
    ASSERT_TRUE(polled.Wait(absl::Now() + absl::Milliseconds(200), absl::Seconds(1)).ok());
    guests_->HandleEvents(polled, absl::Now());
  }
};

// Whether the guest end sees its doorbell hang up (within 5 s).
bool HangsUp(const shm::Doorbell& guest_end) {
  absl::StatusOr<shm::WaitResult> waited = guest_end.Wait(std::chrono::milliseconds(5000));
  return !waited.ok();
}

TEST_F(WatchedGuestsTest, AGuestWhoseDoorbellHangsUpIsReportedCrashedAndNoLongerWatched) {
  shm::Occupancy occupancy;
  std::optional<shm::Doorbell> guest_end = AttachedLocalGuest(&occupancy);
  Turn();
  EXPECT_THAT(NewEvents(), IsEmpty()) << "a live guest is only watched";
  EXPECT_EQ(guests_->size(), 1u);
  guest_end.reset();  // the guest died: the kernel closed its end
  Turn();
  const std::vector<v1::PeerEvent> events = NewEvents();
  ASSERT_THAT(Kinds(events), ElementsAre(v1::EVENT_KIND_CRASHED, v1::EVENT_KIND_RECOVERED));
  EXPECT_EQ(events[0].detector(), v1::DETECTOR_DOORBELL);
  EXPECT_EQ(events[0].peer_id(), occupancy.peer_id);
  EXPECT_EQ(guests_->size(), 0u);
}

TEST_F(WatchedGuestsTest, RingsQueuedOnTheDoorbellAreNotAHangUp) {
  shm::Occupancy occupancy;
  const shm::Doorbell guest_end = AttachedLocalGuest(&occupancy);
  ASSERT_TRUE(guest_end.Signal().ok());
  Turn();
  EXPECT_THAT(NewEvents(), IsEmpty());
  EXPECT_EQ(guests_->size(), 1u);
}

TEST_F(WatchedGuestsTest, SharingGivesTheHostCopiesOfBothHostEndsOfThatGuestOnly) {
  shm::Occupancy occupancy;
  const shm::Doorbell guest_end = AttachedLocalGuest(&occupancy);
  EXPECT_THAT(guests_->ShareWithHost(occupancy), SizeIs(2));
  EXPECT_THAT(guests_->ShareWithHost({occupancy.peer_id, occupancy.epoch + 1}), IsEmpty());
  EXPECT_THAT(guests_->ShareWithHost({occupancy.peer_id + 1, occupancy.epoch}), IsEmpty());
}

TEST_F(WatchedGuestsTest, CuttingOffTheHostHangsUpTheSharedDoorbellsAndReportsNoCrash) {
  shm::Occupancy shared;
  const shm::Doorbell shared_end = AttachedLocalGuest(&shared);
  shm::Occupancy unshared;
  const shm::Doorbell unshared_end = AttachedLocalGuest(&unshared);
  std::vector<shm::UniqueFd> host_copies = guests_->ShareWithHost(shared);
  ASSERT_THAT(host_copies, SizeIs(2));
  EXPECT_THAT(guests_->CutOffFromHost(), ElementsAre(shared));
  // Even with the host's copy still open, shutdown(2) hangs the guest up.
  EXPECT_TRUE(HangsUp(shared_end));
  Turn();
  EXPECT_THAT(NewEvents(), IsEmpty()) << "the hang-up we caused says nothing of the guest";
  EXPECT_EQ(guests_->size(), 1u) << "a guest left with nothing to watch is dropped";
  EXPECT_THAT(guests_->CutOffFromHost(), IsEmpty());
}

TEST_F(WatchedGuestsTest, PruneDropsGuestsWhoseOccupancyEndedSomeOtherWay) {
  shm::Occupancy first;
  const shm::Doorbell first_end = AttachedLocalGuest(&first);
  shm::Occupancy second;
  const shm::Doorbell second_end = AttachedLocalGuest(&second);
  ASSERT_TRUE(hub_->Evict(first, "test").ok());
  guests_->Prune();
  EXPECT_EQ(guests_->size(), 1u);
  EXPECT_THAT(guests_->ShareWithHost(first), IsEmpty());
  EXPECT_THAT(guests_->ShareWithHost(second), SizeIs(2));
}

TEST_F(WatchedGuestsTest, AtShutdownEveryGuestIsRungThenHungUp) {
  shm::Occupancy occupancy;
  const shm::Doorbell guest_end = AttachedLocalGuest(&occupancy);
  guests_->RingAndForgetAll();
  EXPECT_EQ(guests_->size(), 0u);
  uint8_t bytes[8];
  EXPECT_EQ(::recv(guest_end.fd(), bytes, sizeof(bytes), MSG_DONTWAIT), 1) << "the ring first";
  EXPECT_EQ(::recv(guest_end.fd(), bytes, sizeof(bytes), MSG_DONTWAIT), 0) << "then the hang-up";
}

}  // namespace
}  // namespace shmhub::server
