// A PeerHub that adopts the segment an earlier PeerHub left at its path
// (handed over, or killed), and one that must replace it instead: the
// occupancies kept, the geometry refused or reset, epochs that never come
// back, and a guest that died meanwhile reported as found at adoption. A
// real segment; the guest's side is played through its own mapping.
#include <atomic>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/base/monotonic_clock.h"
#include "server/hub/event_journal.h"
#include "server/hub/hub_metrics.h"
#include "server/hub/peer_hub.h"
#include "server/hub/state_log.h"
#include "shm/format.h"
#include "shm/occupancy.h"
#include "shm/path_lock.h"
#include "tests/server/hub/peer_hub_fixture.h"
#include "tests/testing/temp_dir.h"

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
  HubConfig config = hubtest::TestConfig(dir_);
  config.host_ack_timeout = absl::Milliseconds(50);
  absl::StatusOr<std::unique_ptr<PeerHub>> next = HandOverTo(config);
  ASSERT_TRUE(next.ok()) << next.status();
  hub_ = *std::move(next);
  ScanTwice();
  std::vector<v1::PeerEvent> events = NewEvents();
  ASSERT_THAT(Kinds(events), ::testing::Contains(v1::EVENT_KIND_CRASHED));
  EXPECT_THAT(Kinds(events), ::testing::Not(::testing::Contains(v1::EVENT_KIND_RECOVERED)))
      << "the recovery waits for a host application that may come back";
  // No host application registers within --host_ack_timeout: recovered.
  absl::SleepFor(absl::Milliseconds(60));
  hub_->Scan();
  for (const v1::PeerEvent& event : NewEvents()) events.push_back(event);
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

// A daemon as HubServer assembles one: the path's lock, the state log
// beside the segment, a journal that continues the log's and persists to it.
class PeerHubWithStateLog {
 public:
  PeerHubWithStateLog(const HubConfig& config, HubMetrics* metrics) {
    absl::StatusOr<shm::PathLock> lock = shm::PathLock::Acquire(config.segment_path);
    EXPECT_TRUE(lock.ok()) << lock.status();
    absl::StatusOr<std::unique_ptr<StateLog>> log =
        StateLog::Open(config.segment_path + ".state", 4096, config.max_guests, "first-instance",
                       &restored);
    EXPECT_TRUE(log.ok()) << log.status();
    log_ = *std::move(log);
    journal = std::make_unique<EventJournal>(log_->hub_instance_id(), 4096, restored.events,
                                             restored.last_sequence);
    journal->SetPersistHook(
        [log = log_.get()](const v1::PeerEvent& event) { log->AppendEvent(event).IgnoreError(); });
    subscription = journal->Subscribe(restored.last_sequence, 1 << 20, [] {}).subscription;
    HubRestore restore;
    restore.lock = *std::move(lock);
    restore.slots = restored.slots;
    restore.state_log = log_.get();
    absl::StatusOr<std::unique_ptr<PeerHub>> created =
        PeerHub::Create(config, journal.get(), metrics, std::move(restore));
    EXPECT_TRUE(created.ok()) << created.status();
    hub = *std::move(created);
  }
  ~PeerHubWithStateLog() {
    subscription.reset();
    hub.reset();
  }
  std::vector<v1::PeerEvent> NewEvents() {
    std::vector<v1::PeerEvent> events;
    v1::PeerEvent event;
    while (subscription->Next(&event) == EventJournal::Subscription::Pull::kEvent) {
      events.push_back(event);
    }
    return events;
  }

  RestoredState restored;
  std::unique_ptr<EventJournal> journal;
  std::unique_ptr<EventJournal::Subscription> subscription;
  std::unique_ptr<PeerHub> hub;

 private:
  std::unique_ptr<StateLog> log_;
};

TEST(PeerHubStateLogTest, AReservationKeepsItsLeaseOwnerAndRequestIdAcrossAHandover) {
  shmhub::testing::TempDir dir;
  const HubConfig config = hubtest::TestConfig(dir);
  HubMetrics metrics(absl::Milliseconds(10), absl::Milliseconds(100));
  Reservation reserved;
  uint64_t last_sequence = 0;
  {
    PeerHubWithStateLog first(config, &metrics);
    ReserveRequest request;
    request.lease_ttl = absl::Seconds(30);
    request.owner = "orchestrator-a";
    request.labels = {{"job", "render"}};
    request.request_id = "job-9";
    absl::StatusOr<Reservation> made = first.hub->Reserve(request);
    ASSERT_TRUE(made.ok()) << made.status();
    reserved = *made;
    last_sequence = first.journal->last_sequence();
    first.hub->BeginHandover();
  }
  PeerHubWithStateLog second(config, &metrics);
  EXPECT_EQ(second.journal->hub_instance_id(), "first-instance");
  EXPECT_EQ(second.journal->last_sequence(), last_sequence);
  second.hub->Scan();
  second.hub->Scan();
  EXPECT_THAT(second.NewEvents(), IsEmpty()) << "nothing changed while no daemon ran";
  const v1::Peer peer = *second.hub->GetPeer(reserved.peer_id);
  EXPECT_EQ(peer.state(), v1::PEER_STATE_RESERVED);
  EXPECT_EQ(peer.epoch(), reserved.epoch);
  EXPECT_EQ(peer.owner(), "orchestrator-a");
  EXPECT_THAT(peer.labels(), ElementsAre(::testing::Pair("job", "render")));
  ReserveRequest again;
  again.lease_ttl = absl::Seconds(30);
  again.request_id = "job-9";
  absl::StatusOr<Reservation> replay = second.hub->Reserve(again);
  ASSERT_TRUE(replay.ok()) << replay.status();
  EXPECT_TRUE(replay->replayed);
  EXPECT_EQ(replay->occupancy(), reserved.occupancy());
  EXPECT_EQ(replay->lease_expires_at, reserved.lease_expires_at)
      << "the remaining lease, not a new one";
}

TEST(PeerHubStateLogTest, EpochsNeverRepeatAcrossRestartsWithResetsInBetween) {
  shmhub::testing::TempDir dir;
  HubMetrics metrics(absl::Milliseconds(10), absl::Milliseconds(100));
  std::set<std::pair<uint32_t, uint32_t>> issued;
  for (int restart = 0; restart < 20; ++restart) {
    HubConfig config = hubtest::TestConfig(dir);
    // Every other restart changes the geometry and resets the segment.
    config.max_guests = restart % 2 == 0 ? 4 : 3;
    config.reset_segment = true;
    PeerHubWithStateLog daemon(config, &metrics);
    ASSERT_NE(daemon.hub, nullptr);
    for (int i = 0; i < 3; ++i) {
      absl::StatusOr<Reservation> r = daemon.hub->Reserve([] {
        ReserveRequest request;
        request.lease_ttl = absl::Seconds(30);
        return request;
      }());
      ASSERT_TRUE(r.ok()) << r.status();
      EXPECT_TRUE(issued.insert({r->peer_id, r->epoch}).second)
          << "(" << r->peer_id << ", " << r->epoch << ") issued twice, restart " << restart;
      if (i < 2) {
        ASSERT_TRUE(daemon.hub->Release(r->occupancy()).ok());
      }
    }
    daemon.hub->BeginHandover();
  }
}

}  // namespace
}  // namespace shmhub::server
