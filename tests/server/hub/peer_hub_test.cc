// PeerHub against a real segment in a private /dev/shm directory and a real
// EventJournal. Guests are played in-process through their own Segment
// attach (a second mapping of the same file), which is what a guest process
// does; time is driven by calling Scan() with short configured intervals.
#include "server/hub/peer_hub.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <deque>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/base/monotonic_clock.h"
#include "server/base/proto_time.h"
#include "server/config/hub_config.h"
#include "server/hub/event_journal.h"
#include "server/hub/hub_metrics.h"
#include "shm/format.h"
#include "shm/peer_table.h"
#include "shm/segment.h"
#include "shm/shm_error.h"
#include "tests/server/hub/peer_hub_fixture.h"
#include "tests/testing/temp_dir.h"

namespace shmhub::server {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

using hubtest::Kinds;
using hubtest::kMaxGuests;
using hubtest::PeerHubTest;
using hubtest::RawEpochWord;
using hubtest::RawStateWord;
using hubtest::TestConfig;

// ---- Segment ownership ----------------------------------------------------------

TEST_F(PeerHubTest, CreateLaysOutTheConfiguredSegmentWithMode0660) {
  const v1::GetSegmentInfoResponse info = hub_->SegmentInfo();
  EXPECT_EQ(info.segment_path(), dir_.File("hub"));
  EXPECT_EQ(info.format_version(), 7u);
  EXPECT_EQ(info.max_guests(), kMaxGuests);
  EXPECT_EQ(info.ring_capacity_bytes(), 4096u);
  EXPECT_EQ(info.total_size_bytes(), guest_->layout().total_size);
  EXPECT_EQ(info.current_size_bytes(), guest_->layout().total_size);
  EXPECT_EQ(info.max_payload_size_bytes(), uint32_t{1} << 20);
  EXPECT_EQ(info.inline_threshold_bytes(), guest_->EffectiveInlineThreshold());
  EXPECT_EQ(FromProtoDuration(info.heartbeat_interval()), absl::Milliseconds(10));
  EXPECT_EQ(FromProtoDuration(info.crash_timeout()), absl::Milliseconds(100));
  EXPECT_FALSE(info.require_heartbeat());
  ASSERT_EQ(info.slot_classes_size(), 2);
  EXPECT_EQ(info.slot_classes(0).slot_size_bytes(), 64u);
  EXPECT_EQ(info.slot_classes(1).slot_count(), 4u);
  EXPECT_EQ(info.hub_instance_id(), "test-instance");
  EXPECT_EQ(info.version(), SHMHUB_VERSION);
  EXPECT_GT(info.started_at().seconds(), 0);
  // The guest validated the header the hub wrote.
  EXPECT_EQ(guest_->heartbeat_interval_ns(), 10'000'000u);
  EXPECT_EQ(guest_->layout().max_guests, kMaxGuests);
  struct stat st {};
  ASSERT_EQ(::stat(dir_.File("hub").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0660u);
}

TEST_F(PeerHubTest, CreateRefusesALiveSegmentAndNamesThePath) {
  EventJournal other_journal("other", 64);
  absl::StatusOr<std::unique_ptr<PeerHub>> second =
      PeerHub::Create(TestConfig(dir_), &other_journal, &metrics_);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(shm::ShmErrcOf(second.status()), shm::ShmErrc::kLiveSegment);
  EXPECT_THAT(second.status().message(), HasSubstr(dir_.File("hub")));
  // The live segment is untouched.
  EXPECT_TRUE(hub_->Reserve(Request()).ok());
}

TEST_F(PeerHubTest, CreateReplacesAStaleFileAndDestructionRemovesTheSegment) {
  guest_.reset();
  subscription_.reset();
  hub_.reset();
  EXPECT_NE(::access(dir_.File("hub").c_str(), F_OK), 0) << "the hub left its segment behind";

  // A crashed daemon's leftover: a file nobody holds the lock of.
  const std::string path = dir_.File("hub");
  FILE* stale = std::fopen(path.c_str(), "w");
  ASSERT_NE(stale, nullptr);
  std::fputs("left behind by a crashed shmhubd", stale);
  std::fclose(stale);
  Start(TestConfig(dir_));
  EXPECT_TRUE(hub_->Reserve(Request()).ok());
}

// ---- Reserve / Release / Evict -------------------------------------------------------

TEST_F(PeerHubTest, ReserveTakesTheLowestEmptySlotAndPublishesReserved) {
  const Reservation first = MustReserve(Request(absl::Seconds(30)));
  EXPECT_EQ(first.peer_id, 1u);
  EXPECT_EQ(first.epoch, 1u);
  EXPECT_FALSE(first.replayed);
  EXPECT_GE(first.lease_expires_at, absl::Now() + absl::Seconds(29));
  EXPECT_EQ(GuestEntry(1).LoadPair(),
            shm::PeerPair(shm::StateReading::FromRaw(3), 1u));  // Reserved, epoch 1

  const std::vector<v1::PeerEvent> events = NewEvents();
  ASSERT_THAT(Kinds(events), ElementsAre(v1::EVENT_KIND_RESERVED));
  EXPECT_EQ(events[0].peer_id(), 1u);
  EXPECT_EQ(events[0].epoch(), 1u);
  EXPECT_EQ(events[0].owner(), "orchestrator-a");
  EXPECT_EQ(events[0].labels().at("job"), "render");

  const v1::Peer peer = MustGetPeer(1);
  EXPECT_EQ(peer.state(), v1::PEER_STATE_RESERVED);
  EXPECT_EQ(peer.owner(), "orchestrator-a");
  EXPECT_EQ(peer.labels().at("team"), "video");
  EXPECT_TRUE(peer.has_lease_expires_at());
  EXPECT_FALSE(peer.unmonitored()) << "only an attached guest can be unmonitored";

  EXPECT_EQ(MustReserve(Request()).peer_id, 2u);
}

TEST_F(PeerHubTest, RetriedRequestIdReturnsTheSameReservationWithoutANewEvent) {
  const Reservation first = MustReserve(Request(absl::Seconds(30), "req-1"));
  NewEvents();
  const Reservation retry = MustReserve(Request(absl::Seconds(30), "req-1"));
  EXPECT_TRUE(retry.replayed);
  EXPECT_EQ(retry.peer_id, first.peer_id);
  EXPECT_EQ(retry.epoch, first.epoch);
  EXPECT_EQ(retry.lease_expires_at, first.lease_expires_at);
  EXPECT_THAT(NewEvents(), IsEmpty());

  // Another id takes another slot; an empty id is never replayed.
  EXPECT_EQ(MustReserve(Request(absl::Seconds(30), "req-2")).peer_id, 2u);
  EXPECT_EQ(MustReserve(Request()).peer_id, 3u);
  EXPECT_EQ(MustReserve(Request()).peer_id, 4u);
}

TEST_F(PeerHubTest, RequestIdReplaysWhileTheClaimedOccupancyLastsAndNotAfter) {
  const Reservation first = MustReserve(Request(absl::Seconds(30), "req-1"));
  ASSERT_TRUE(GuestEntry(first.peer_id).ClaimFenced(first.epoch).ok());
  hub_->Scan();
  const Reservation while_attached = MustReserve(Request(absl::Seconds(30), "req-1"));
  EXPECT_TRUE(while_attached.replayed);
  EXPECT_EQ(while_attached.peer_id, first.peer_id);
  EXPECT_EQ(while_attached.epoch, first.epoch);

  ASSERT_TRUE(hub_->Evict({first.peer_id, first.epoch}, "test").ok());
  const Reservation after = MustReserve(Request(absl::Seconds(30), "req-1"));
  EXPECT_FALSE(after.replayed);
  EXPECT_EQ(after.peer_id, first.peer_id);
  EXPECT_EQ(after.epoch, first.epoch + 1);
}

TEST_F(PeerHubTest, ReserveWithEverySlotOccupiedIsResourceExhausted) {
  for (uint32_t i = 0; i < kMaxGuests; ++i) MustReserve(Request());
  NewEvents();
  absl::StatusOr<Reservation> none = hub_->Reserve(Request());
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(none.status().message(), HasSubstr("all 4 peer slots are occupied"));
  EXPECT_THAT(NewEvents(), IsEmpty());
}

TEST_F(PeerHubTest, ReserveSkipsASlotAGuestTookDirectlySinceTheLastScan) {
  ASSERT_TRUE(guest_->peers().AttachFirstFree().ok());  // peer 1, not yet published
  EXPECT_EQ(MustReserve(Request()).peer_id, 2u);
}

TEST_F(PeerHubTest, ReleaseEmptiesTheReservedSlotAndPublishesReleased) {
  const Reservation r = MustReserve(Request(absl::Seconds(30), "req-1"));
  NewEvents();
  ASSERT_TRUE(hub_->Release({r.peer_id, r.epoch}).ok());
  const std::vector<v1::PeerEvent> events = NewEvents();
  ASSERT_THAT(Kinds(events), ElementsAre(v1::EVENT_KIND_RELEASED));
  EXPECT_EQ(events[0].peer_id(), r.peer_id);
  EXPECT_EQ(events[0].epoch(), r.epoch);
  EXPECT_TRUE(GuestEntry(r.peer_id).State().Is(shm::PeerState::kEmpty));
  EXPECT_EQ(GuestEntry(r.peer_id).Epoch(), r.epoch);
  const v1::Peer peer = MustGetPeer(r.peer_id);
  EXPECT_EQ(peer.state(), v1::PEER_STATE_EMPTY);
  EXPECT_TRUE(peer.owner().empty());
  EXPECT_FALSE(MustReserve(Request(absl::Seconds(30), "req-1")).replayed);
}

TEST_F(PeerHubTest, ReleaseWithAStaleEpochFailsAndChangesNothing) {
  const Reservation r = MustReserve(Request());
  NewEvents();
  const absl::Status status = hub_->Release({r.peer_id, r.epoch + 1});
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("Reserved at epoch 1, not Reserved at epoch 2"));
  EXPECT_TRUE(GuestEntry(r.peer_id).State().Is(shm::PeerState::kReserved));
  EXPECT_EQ(MustGetPeer(r.peer_id).state(), v1::PEER_STATE_RESERVED);
  EXPECT_THAT(NewEvents(), IsEmpty());
}

TEST_F(PeerHubTest, ReleaseOfAnAttachedGuestPointsToEvictPeer) {
  const Reservation r = AttachedGuest();
  const absl::Status status = hub_->Release({r.peer_id, r.epoch});
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("is Attached at epoch 1"));
  EXPECT_THAT(status.message(), HasSubstr("use EvictPeer"));
  EXPECT_TRUE(GuestEntry(r.peer_id).State().Is(shm::PeerState::kAttached));
  EXPECT_THAT(NewEvents(), IsEmpty());
}

TEST_F(PeerHubTest, ReleaseRacingAClaimReportsTheSegmentStateAndLeavesTheClaim) {
  const Reservation r = MustReserve(Request());
  ASSERT_TRUE(GuestEntry(r.peer_id).ClaimFenced(r.epoch).ok());  // not yet scanned
  const absl::Status status = hub_->Release({r.peer_id, r.epoch});
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("Attached at epoch 1 in the segment"));
  EXPECT_THAT(status.message(), HasSubstr("use EvictPeer"));
  EXPECT_TRUE(GuestEntry(r.peer_id).State().Is(shm::PeerState::kAttached));
  hub_->Scan();
  EXPECT_THAT(Kinds(NewEvents()), ElementsAre(v1::EVENT_KIND_RESERVED, v1::EVENT_KIND_ATTACHED));
}

TEST_F(PeerHubTest, PeerIdsOutsideTheTableAreNotFound) {
  for (const uint32_t peer_id : {0u, kMaxGuests + 1, 255u, 256u}) {
    EXPECT_EQ(hub_->Release({peer_id, 1}).code(), absl::StatusCode::kNotFound) << peer_id;
    EXPECT_EQ(hub_->Evict({peer_id, 1}, "").status().code(), absl::StatusCode::kNotFound)
        << peer_id;
    EXPECT_EQ(hub_->GetPeer(peer_id).status().code(), absl::StatusCode::kNotFound) << peer_id;
  }
  EXPECT_THAT(hub_->GetPeer(5).status().message(), HasSubstr("slots 1..4"));
}

TEST_F(PeerHubTest, EvictRecoversTheGuestAndTheSlotIsReusableAtTheNextEpoch) {
  const Reservation r = AttachedGuest();
  // The guest holds a pool slot of its own; recovery must give it back.
  ASSERT_TRUE(guest_->pool().Allocate(32, r.peer_id).ok());
  absl::StatusOr<uint32_t> free_before = guest_->pool().FreeCount(0);
  ASSERT_TRUE(free_before.ok());

  absl::StatusOr<std::optional<shm::RecoveryReport>> report =
      hub_->Evict({r.peer_id, r.epoch}, "draining node");
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_TRUE(report->has_value()) << "no host application: recovery runs at once";
  EXPECT_EQ((*report)->slots_reclaimed_by_owner, 1u);
  EXPECT_EQ(*guest_->pool().FreeCount(0), *free_before + 1);

  const std::vector<v1::PeerEvent> events = NewEvents();
  ASSERT_THAT(Kinds(events), ElementsAre(v1::EVENT_KIND_EVICTED, v1::EVENT_KIND_RECOVERED));
  EXPECT_EQ(events[0].reason(), "draining node");
  EXPECT_EQ(events[1].epoch(), r.epoch);
  EXPECT_EQ(events[1].recovery().slots_reclaimed_by_owner(), 1u);
  EXPECT_TRUE(events[1].recovery().has_duration());
  EXPECT_EQ(GuestEntry(r.peer_id).LoadPair(),
            shm::PeerPair(shm::StateReading::FromRaw(0), r.epoch));
  EXPECT_EQ(MustGetPeer(r.peer_id).state(), v1::PEER_STATE_EMPTY);

  const Reservation next = MustReserve(Request());
  EXPECT_EQ(next.peer_id, r.peer_id);
  EXPECT_EQ(next.epoch, r.epoch + 1);
}

TEST_F(PeerHubTest, EvictOfAReservationOrAStaleEpochFailsAndChangesNothing) {
  const Reservation reserved = MustReserve(Request());
  absl::Status status = hub_->Evict({reserved.peer_id, reserved.epoch}, "").status();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("use ReleasePeer"));
  EXPECT_THAT(Kinds(NewEvents()), ElementsAre(v1::EVENT_KIND_RESERVED));

  const Reservation attached = AttachedGuest();
  status = hub_->Evict({attached.peer_id, attached.epoch + 7}, "").status();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("Attached at epoch 1, not Attached at epoch 8"));

  status = hub_->Evict({3, 0}, "").status();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("is Empty"));

  EXPECT_TRUE(GuestEntry(reserved.peer_id).State().Is(shm::PeerState::kReserved));
  EXPECT_TRUE(GuestEntry(attached.peer_id).State().Is(shm::PeerState::kAttached));
  EXPECT_THAT(NewEvents(), IsEmpty());
}

TEST_F(PeerHubTest, BeginShutdownPublishesHostShutdownOnceRaisesHostGoodbyeAndRefusesMutations) {
  const Reservation r = AttachedGuest();
  hub_->BeginShutdown();
  hub_->BeginShutdown();
  EXPECT_TRUE(hub_->shutting_down());
  const std::vector<v1::PeerEvent> events = NewEvents();
  ASSERT_THAT(Kinds(events), ElementsAre(v1::EVENT_KIND_HOST_SHUTDOWN));
  EXPECT_EQ(events[0].peer_id(), 0u);
  EXPECT_TRUE(guest_->HostGoodbye());

  for (const absl::Status& status :
       {hub_->Reserve(Request()).status(), hub_->Release({r.peer_id, r.epoch}),
        hub_->Evict({r.peer_id, r.epoch}, "").status()}) {
    EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
    EXPECT_EQ(status.message(), "shmhubd is shutting down");
  }
  // Nothing follows HOST_SHUTDOWN, not even a guest's goodbye; views still work.
  GuestEntry(r.peer_id).SetGoodbye();
  hub_->Scan();
  EXPECT_THAT(NewEvents(), IsEmpty());
  EXPECT_EQ(MustGetPeer(r.peer_id).state(), v1::PEER_STATE_ATTACHED);
}

// ---- Scan: reservations and attaches ---------------------------------------------

TEST_F(PeerHubTest, AnUnclaimedReservationExpiresWhenItsLeaseRunsOut) {
  const Reservation r = MustReserve(Request(absl::Milliseconds(20), "req-1"));
  absl::SleepFor(absl::Milliseconds(40));
  hub_->Scan();
  const std::vector<v1::PeerEvent> events = NewEvents();
  ASSERT_THAT(Kinds(events),
              ElementsAre(v1::EVENT_KIND_RESERVED, v1::EVENT_KIND_RESERVATION_EXPIRED));
  EXPECT_EQ(events[1].peer_id(), r.peer_id);
  EXPECT_EQ(events[1].epoch(), r.epoch);
  EXPECT_TRUE(GuestEntry(r.peer_id).State().Is(shm::PeerState::kEmpty));
  EXPECT_EQ(MustGetPeer(r.peer_id).state(), v1::PEER_STATE_EMPTY);
  // The guest that arrives late cannot claim the expired epoch.
  EXPECT_FALSE(GuestEntry(r.peer_id).ClaimFenced(r.epoch).ok());
  EXPECT_FALSE(MustReserve(Request(absl::Seconds(30), "req-1")).replayed);
  hub_->Scan();
  EXPECT_THAT(Kinds(NewEvents()), ElementsAre(v1::EVENT_KIND_RESERVED));
}

TEST_F(PeerHubTest, AReservationWithTimeLeftIsNotExpired) {
  MustReserve(Request(absl::Seconds(30)));
  hub_->Scan();
  hub_->Scan();
  EXPECT_THAT(Kinds(NewEvents()), ElementsAre(v1::EVENT_KIND_RESERVED));
}

TEST_F(PeerHubTest, AClaimIsPublishedAttachedAtTheNextScanWithTheReservationEpoch) {
  const Reservation r = MustReserve(Request(absl::Milliseconds(20)));
  ASSERT_TRUE(GuestEntry(r.peer_id).ClaimFenced(r.epoch).ok());
  // Published state until the scan: still Reserved.
  EXPECT_EQ(MustGetPeer(r.peer_id).state(), v1::PEER_STATE_RESERVED);
  // The lease has run out by the scan, but the claim came first.
  absl::SleepFor(absl::Milliseconds(40));
  hub_->Scan();
  const std::vector<v1::PeerEvent> events = NewEvents();
  ASSERT_THAT(Kinds(events), ElementsAre(v1::EVENT_KIND_RESERVED, v1::EVENT_KIND_ATTACHED));
  EXPECT_EQ(events[1].epoch(), r.epoch);
  const v1::Peer peer = MustGetPeer(r.peer_id);
  EXPECT_EQ(peer.state(), v1::PEER_STATE_ATTACHED);
  EXPECT_EQ(peer.epoch(), r.epoch);
  EXPECT_EQ(peer.owner(), "orchestrator-a");
  EXPECT_FALSE(peer.has_lease_expires_at());
  EXPECT_TRUE(peer.unmonitored());
  EXPECT_THAT(peer.armed_detectors(), IsEmpty());
  hub_->Scan();
  EXPECT_THAT(NewEvents(), IsEmpty());
}

TEST_F(PeerHubTest, ADirectAttachIsPublishedOnlyAfterTheD1ReRead) {
  absl::StatusOr<shm::Occupancy> taken = guest_->peers().AttachFirstFree();
  ASSERT_TRUE(taken.ok());
  hub_->Scan();
  EXPECT_THAT(NewEvents(), IsEmpty()) << "published without re-reading the pair";
  EXPECT_EQ(MustGetPeer(taken->peer_id).state(), v1::PEER_STATE_EMPTY);
  hub_->Scan();
  const std::vector<v1::PeerEvent> events = NewEvents();
  ASSERT_THAT(Kinds(events), ElementsAre(v1::EVENT_KIND_ATTACHED));
  EXPECT_EQ(events[0].peer_id(), taken->peer_id);
  EXPECT_EQ(events[0].epoch(), taken->epoch);
  const v1::Peer peer = MustGetPeer(taken->peer_id);
  EXPECT_EQ(peer.state(), v1::PEER_STATE_ATTACHED);
  EXPECT_TRUE(peer.owner().empty());
}

TEST_F(PeerHubTest, ALateRustEpochBumpIsAdoptedBeforePublishing) {
  // A Rust try_attach: the state CAS lands, the epoch bump comes after.
  RawStateWord(*guest_, 2).store(1);  // Attached, epoch still 0
  hub_->Scan();
  RawEpochWord(*guest_, 2).fetch_add(1);
  hub_->Scan();
  const std::vector<v1::PeerEvent> events = NewEvents();
  ASSERT_THAT(Kinds(events), ElementsAre(v1::EVENT_KIND_ATTACHED));
  EXPECT_EQ(events[0].peer_id(), 2u);
  EXPECT_EQ(events[0].epoch(), 1u);
  EXPECT_EQ(MustGetPeer(2).epoch(), 1u);
  hub_->Scan();
  EXPECT_THAT(NewEvents(), IsEmpty());
}

TEST_F(PeerHubTest, AGuestSeenOnlyAfterItLeftIsPublishedAttachedThenGoodbyeAndRecovered) {
  absl::StatusOr<shm::Occupancy> taken = guest_->peers().AttachFirstFree();
  ASSERT_TRUE(taken.ok());
  GuestEntry(taken->peer_id).SetGoodbye();
  hub_->Scan();
  hub_->Scan();
  const std::vector<v1::PeerEvent> events = NewEvents();
  ASSERT_THAT(Kinds(events), ElementsAre(v1::EVENT_KIND_ATTACHED, v1::EVENT_KIND_GOODBYE,
                                         v1::EVENT_KIND_RECOVERED));
  for (const v1::PeerEvent& event : events) EXPECT_EQ(event.epoch(), taken->epoch);
  EXPECT_TRUE(GuestEntry(taken->peer_id).State().Is(shm::PeerState::kEmpty));
}

TEST_F(PeerHubTest, AnOrderlyGoodbyeIsRecoveredAndTheSlotEmptied) {
  const Reservation r = AttachedGuest();
  GuestEntry(r.peer_id).SetGoodbye();
  hub_->Scan();
  const std::vector<v1::PeerEvent> events = NewEvents();
  ASSERT_THAT(Kinds(events), ElementsAre(v1::EVENT_KIND_GOODBYE, v1::EVENT_KIND_RECOVERED));
  EXPECT_EQ(events[0].epoch(), r.epoch);
  EXPECT_TRUE(events[1].has_recovery());
  EXPECT_EQ(GuestEntry(r.peer_id).LoadPair(),
            shm::PeerPair(shm::StateReading::FromRaw(0), r.epoch));
  const v1::Peer peer = MustGetPeer(r.peer_id);
  EXPECT_EQ(peer.state(), v1::PEER_STATE_EMPTY);
  EXPECT_EQ(peer.last_detector(), v1::DETECTOR_UNSPECIFIED) << "a goodbye is not a crash";
}

// ---- Scan: heartbeats -----------------------------------------------------------------

TEST_F(PeerHubTest, AGuestThatNeverHeartbeatsIsUnmonitoredNeverStaleNorCrashed) {
  const Reservation r = AttachedGuest();
  absl::SleepFor(absl::Milliseconds(150));  // past 2 x interval and the crash timeout
  hub_->Scan();
  hub_->Scan();
  EXPECT_THAT(NewEvents(), IsEmpty());
  const v1::Peer peer = MustGetPeer(r.peer_id);
  EXPECT_EQ(peer.state(), v1::PEER_STATE_ATTACHED);
  EXPECT_TRUE(peer.unmonitored());
  EXPECT_THAT(peer.armed_detectors(), IsEmpty());
  EXPECT_FALSE(peer.stale());
  EXPECT_EQ(peer.last_heartbeat_ns(), 0u);
  EXPECT_FALSE(peer.has_heartbeat_age());
}

TEST_F(PeerHubTest, TheFirstHeartbeatArmsTheHeartbeatDetector) {
  const Reservation r = AttachedGuest();
  Heartbeat(r.peer_id);
  hub_->Scan();
  EXPECT_THAT(NewEvents(), IsEmpty());
  const v1::Peer peer = MustGetPeer(r.peer_id);
  EXPECT_THAT(peer.armed_detectors(), ElementsAre(v1::DETECTOR_HEARTBEAT));
  EXPECT_FALSE(peer.unmonitored());
  EXPECT_GT(peer.last_heartbeat_ns(), 0u);
  EXPECT_TRUE(peer.has_heartbeat_age());
}

TEST_F(PeerHubTest, AQuietGuestTurnsStaleOnceAndFreshOnceWhenHeartbeatsResume) {
  HubConfig config = TestConfig(dir_);
  config.crash_timeout = absl::Seconds(30);  // this test is about STALE, never CRASHED
  guest_.reset();
  Start(config);
  const Reservation r = AttachedGuest();
  Heartbeat(r.peer_id);
  hub_->Scan();
  absl::SleepFor(absl::Milliseconds(30));  // > 2 x 10ms
  hub_->Scan();
  hub_->Scan();
  std::vector<v1::PeerEvent> events = NewEvents();
  ASSERT_THAT(Kinds(events), ElementsAre(v1::EVENT_KIND_STALE));
  EXPECT_EQ(events[0].epoch(), r.epoch);
  ASSERT_TRUE(events[0].has_heartbeat_age());
  EXPECT_GT(*FromProtoDuration(events[0].heartbeat_age()), absl::Milliseconds(20));
  EXPECT_TRUE(MustGetPeer(r.peer_id).stale());

  Heartbeat(r.peer_id);
  hub_->Scan();
  hub_->Scan();
  events = NewEvents();
  ASSERT_THAT(Kinds(events), ElementsAre(v1::EVENT_KIND_FRESH));
  EXPECT_EQ(events[0].epoch(), r.epoch);
  EXPECT_FALSE(MustGetPeer(r.peer_id).stale());
}

TEST_F(PeerHubTest, SilencePastTheCrashTimeoutCrashesRecoversAndFreesTheSlotForANewEpoch) {
  const Reservation r = AttachedGuest();
  Heartbeat(r.peer_id);
  hub_->Scan();
  absl::SleepFor(absl::Milliseconds(150));  // > crash timeout of 100ms
  hub_->Scan();
  const std::vector<v1::PeerEvent> events = NewEvents();
  ASSERT_THAT(Kinds(events),
              ElementsAre(v1::EVENT_KIND_STALE, v1::EVENT_KIND_CRASHED, v1::EVENT_KIND_RECOVERED));
  const v1::PeerEvent& crashed = events[1];
  EXPECT_EQ(crashed.peer_id(), r.peer_id);
  EXPECT_EQ(crashed.epoch(), r.epoch);
  EXPECT_EQ(crashed.detector(), v1::DETECTOR_HEARTBEAT);
  ASSERT_TRUE(crashed.has_heartbeat_age());
  EXPECT_GT(*FromProtoDuration(crashed.heartbeat_age()), absl::Milliseconds(100));
  EXPECT_EQ(events[2].epoch(), r.epoch);
  EXPECT_TRUE(GuestEntry(r.peer_id).State().Is(shm::PeerState::kEmpty));
  EXPECT_EQ(GuestEntry(r.peer_id).LastHeartbeat(), 0u);

  const v1::Peer peer = MustGetPeer(r.peer_id);
  EXPECT_EQ(peer.state(), v1::PEER_STATE_EMPTY);
  EXPECT_EQ(peer.last_detector(), v1::DETECTOR_HEARTBEAT);
  EXPECT_THAT(peer.armed_detectors(), IsEmpty());

  const Reservation next = MustReserve(Request());
  EXPECT_EQ(next.peer_id, r.peer_id);
  EXPECT_EQ(next.epoch, r.epoch + 1);
  hub_->Scan();
  EXPECT_THAT(Kinds(NewEvents()), ElementsAre(v1::EVENT_KIND_RESERVED));
}

TEST_F(PeerHubTest, RequireHeartbeatArmsAtAttachAndCrashesAGuestSilentPastTheGrace) {
  HubConfig config = TestConfig(dir_);
  config.require_heartbeat = true;
  config.heartbeat_grace = absl::Milliseconds(50);
  guest_.reset();
  Start(config);
  const Reservation r = AttachedGuest();  // that scan did not crash it
  const v1::Peer peer = MustGetPeer(r.peer_id);
  EXPECT_THAT(peer.armed_detectors(), ElementsAre(v1::DETECTOR_HEARTBEAT));
  EXPECT_FALSE(peer.unmonitored());
  EXPECT_FALSE(peer.stale()) << "no STALE before a first heartbeat";

  absl::SleepFor(absl::Milliseconds(80));
  hub_->Scan();
  const std::vector<v1::PeerEvent> events = NewEvents();
  ASSERT_THAT(Kinds(events), ElementsAre(v1::EVENT_KIND_CRASHED, v1::EVENT_KIND_RECOVERED));
  EXPECT_EQ(events[0].detector(), v1::DETECTOR_HEARTBEAT);
  EXPECT_FALSE(events[0].has_heartbeat_age()) << "the guest wrote no heartbeat";
  EXPECT_EQ(MustGetPeer(r.peer_id).last_detector(), v1::DETECTOR_HEARTBEAT);
}

TEST_F(PeerHubTest, RequireHeartbeatKeepsAGuestThatHeartbeatsWithinTheGrace) {
  HubConfig config = TestConfig(dir_);
  config.require_heartbeat = true;
  config.heartbeat_grace = absl::Milliseconds(50);
  config.crash_timeout = absl::Seconds(30);
  guest_.reset();
  Start(config);
  const Reservation r = AttachedGuest();
  Heartbeat(r.peer_id);
  hub_->Scan();
  absl::SleepFor(absl::Milliseconds(80));  // past the grace
  Heartbeat(r.peer_id);
  hub_->Scan();
  EXPECT_THAT(NewEvents(), IsEmpty());
  EXPECT_EQ(MustGetPeer(r.peer_id).state(), v1::PEER_STATE_ATTACHED);
}

// ---- Scan: corrupt and foreign transitions --------------------------------------------

TEST_F(PeerHubTest, AnInvalidStateWordCrashesWithInvalidStateAndIsRecovered) {
  const Reservation r = AttachedGuest();
  RawStateWord(*guest_, r.peer_id).store(7);
  hub_->Scan();
  const std::vector<v1::PeerEvent> events = NewEvents();
  ASSERT_THAT(Kinds(events), ElementsAre(v1::EVENT_KIND_CRASHED, v1::EVENT_KIND_RECOVERED));
  EXPECT_EQ(events[0].detector(), v1::DETECTOR_INVALID_STATE);
  EXPECT_EQ(events[0].epoch(), r.epoch);
  EXPECT_FALSE(events[0].has_heartbeat_age());
  EXPECT_THAT(events[0].reason(), HasSubstr("7"));
  EXPECT_EQ(GuestEntry(r.peer_id).LoadPair(),
            shm::PeerPair(shm::StateReading::FromRaw(0), r.epoch));
  const v1::Peer peer = MustGetPeer(r.peer_id);
  EXPECT_EQ(peer.state(), v1::PEER_STATE_EMPTY);
  EXPECT_EQ(peer.last_detector(), v1::DETECTOR_INVALID_STATE);
  hub_->Scan();
  EXPECT_THAT(NewEvents(), IsEmpty());
}

TEST_F(PeerHubTest, ASlotEmptiedBehindTheHubsBackIsPublishedAsEndedWithoutARecoveryReport) {
  const Reservation r = AttachedGuest();
  GuestEntry(r.peer_id).Reset();  // a Rust guest may call reset() itself
  hub_->Scan();
  const std::vector<v1::PeerEvent> events = NewEvents();
  ASSERT_THAT(Kinds(events), ElementsAre(v1::EVENT_KIND_GOODBYE, v1::EVENT_KIND_RECOVERED));
  EXPECT_FALSE(events[1].has_recovery()) << "shmhubd reclaimed nothing and must not claim it did";
  EXPECT_THAT(events[1].reason(), HasSubstr("outside shmhubd"));
  EXPECT_EQ(MustGetPeer(r.peer_id).state(), v1::PEER_STATE_EMPTY);
}

TEST_F(PeerHubTest, AnAttachedSlotWhoseEpochMovesIsPublishedAsTheNewOccupancy) {
  const Reservation r = AttachedGuest();
  RawEpochWord(*guest_, r.peer_id).store(r.epoch + 5);
  hub_->Scan();
  EXPECT_THAT(NewEvents(), IsEmpty()) << "the D-1 re-read applies here too";
  hub_->Scan();
  const std::vector<v1::PeerEvent> events = NewEvents();
  ASSERT_THAT(Kinds(events), ElementsAre(v1::EVENT_KIND_ATTACHED));
  EXPECT_EQ(events[0].epoch(), r.epoch + 5);
  EXPECT_THAT(events[0].reason(), HasSubstr("replaces epoch 1"));
  const v1::Peer peer = MustGetPeer(r.peer_id);
  EXPECT_EQ(peer.epoch(), r.epoch + 5);
  EXPECT_TRUE(peer.owner().empty()) << "the old reservation does not carry over";
}

TEST_F(PeerHubTest, AReservationMadeOutsideTheHubGetsTheDefaultLease) {
  ASSERT_TRUE(guest_->peers().ReserveFirstFree().ok());
  hub_->Scan();
  hub_->Scan();
  const std::vector<v1::PeerEvent> events = NewEvents();
  ASSERT_THAT(Kinds(events), ElementsAre(v1::EVENT_KIND_RESERVED));
  EXPECT_TRUE(events[0].owner().empty());
  const v1::Peer peer = MustGetPeer(1);
  EXPECT_EQ(peer.state(), v1::PEER_STATE_RESERVED);
  ASSERT_TRUE(peer.has_lease_expires_at());
  EXPECT_GT(peer.lease_expires_at().seconds(),
            absl::ToUnixSeconds(absl::Now() + absl::Seconds(20)));
}

// ---- Views and ordering ----------------------------------------------------------------

TEST_F(PeerHubTest, ViewsReportRingOccupancyAndListPeersSkipsEmptySlotsUnlessAsked) {
  const Reservation r = AttachedGuest();
  shm::BipBuffer ring = guest_->GuestToHostRing(r.peer_id - 1);
  ASSERT_TRUE(ring.TryGrant(64).ok());
  ASSERT_TRUE(ring.Commit(64).ok());
  const v1::Peer peer = MustGetPeer(r.peer_id);
  EXPECT_EQ(peer.guest_to_host_used_bytes(), 64u);
  EXPECT_EQ(peer.host_to_guest_used_bytes(), 0u);
  EXPECT_EQ(peer.pid(), 0u);
  EXPECT_TRUE(peer.has_state_since());

  std::vector<v1::Peer> occupied = hub_->ListPeers(false);
  ASSERT_EQ(occupied.size(), 1u);
  EXPECT_EQ(occupied[0].peer_id(), r.peer_id);
  std::vector<v1::Peer> all = hub_->ListPeers(true);
  ASSERT_EQ(all.size(), kMaxGuests);
  for (uint32_t i = 0; i < kMaxGuests; ++i) EXPECT_EQ(all[i].peer_id(), i + 1);
}

TEST_F(PeerHubTest, EveryTransitionIsPublishedExactlyOnceInSequenceOrder) {
  const Reservation r = MustReserve(Request());
  hub_->Scan();
  ASSERT_TRUE(GuestEntry(r.peer_id).ClaimFenced(r.epoch).ok());
  hub_->Scan();
  hub_->Scan();
  Heartbeat(r.peer_id);
  hub_->Scan();
  GuestEntry(r.peer_id).SetGoodbye();
  hub_->Scan();
  hub_->Scan();
  const Reservation second = MustReserve(Request());
  ASSERT_TRUE(hub_->Release({second.peer_id, second.epoch}).ok());
  hub_->Scan();

  const std::vector<v1::PeerEvent> events = NewEvents();
  ASSERT_THAT(Kinds(events), ElementsAre(v1::EVENT_KIND_RESERVED, v1::EVENT_KIND_ATTACHED,
                                         v1::EVENT_KIND_GOODBYE, v1::EVENT_KIND_RECOVERED,
                                         v1::EVENT_KIND_RESERVED, v1::EVENT_KIND_RELEASED));
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(events[i].sequence(), i + 1);
    EXPECT_EQ(events[i].hub_instance_id(), "test-instance");
    EXPECT_EQ(events[i].peer_id(), r.peer_id);
  }
  EXPECT_EQ(events[3].epoch(), r.epoch);
  EXPECT_EQ(events[4].epoch(), r.epoch + 1);
  EXPECT_EQ(journal_->last_sequence(), events.size());
}

// A watcher that applies every event up to a snapshot's sequence must arrive
// at the snapshot's states, even while RPCs change slots concurrently.
TEST_F(PeerHubTest, ASnapshotIsExactAsOfItsSequenceUnderConcurrentChanges) {
  std::atomic<bool> snapshotting = false;
  std::atomic<bool> churning = true;
  std::thread churn([this, &snapshotting, &churning] {
    while (!snapshotting) std::this_thread::yield();
    std::deque<Reservation> held;
    for (int i = 0; i < 500; ++i) {
      absl::StatusOr<Reservation> r = hub_->Reserve(Request());
      if (r.ok()) held.push_back(*r);
      if (held.size() > 2) {
        EXPECT_TRUE(hub_->Release(held.front().occupancy()).ok());
        held.pop_front();
      }
    }
    churning = false;
  });
  std::vector<v1::Snapshot> snapshots;
  snapshotting = true;
  while (churning) snapshots.push_back(hub_->Snapshot());
  churn.join();
  const std::vector<v1::PeerEvent> events = NewEvents();

  // Snapshots were taken one after another, so one replay cursor serves all.
  std::map<uint32_t, std::pair<v1::PeerState, uint32_t>> replayed;
  for (uint32_t id = 1; id <= kMaxGuests; ++id) replayed[id] = {v1::PEER_STATE_EMPTY, 0};
  uint64_t applied = 0;
  for (const v1::Snapshot& snapshot : snapshots) {
    ASSERT_EQ(snapshot.hub_instance_id(), "test-instance");
    ASSERT_EQ(snapshot.peers_size(), static_cast<int>(kMaxGuests));
    ASSERT_GE(snapshot.sequence(), applied);
    ASSERT_LE(snapshot.sequence(), events.size());
    for (; applied < snapshot.sequence(); ++applied) {
      const v1::PeerEvent& event = events[applied];
      replayed[event.peer_id()] = {
          event.kind() == v1::EVENT_KIND_RESERVED ? v1::PEER_STATE_RESERVED : v1::PEER_STATE_EMPTY,
          event.epoch()};
    }
    for (const v1::Peer& peer : snapshot.peers()) {
      ASSERT_EQ(peer.state(), replayed[peer.peer_id()].first)
          << "peer " << peer.peer_id() << " at sequence " << snapshot.sequence();
      ASSERT_EQ(peer.epoch(), replayed[peer.peer_id()].second)
          << "peer " << peer.peer_id() << " at sequence " << snapshot.sequence();
    }
  }
}

}  // namespace
}  // namespace shmhub::server
