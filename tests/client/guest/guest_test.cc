// Guest against a real segment in a TempDir: this test process plays the
// host (it creates the segment and drives the peer table the way shmhubd
// would), the Guest under test maps the same file a second time.
#include "client/guest/guest.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "shm/format.h"
#include "shm/peer_table.h"
#include "shm/segment.h"
#include "shm/shm_error.h"
#include "tests/testing/temp_dir.h"

namespace shmhub::client {
namespace {

using ::shmhub::shm::PeerEntryView;
using ::shmhub::shm::PeerState;
using ::shmhub::shm::Segment;
using ::shmhub::shm::SegmentConfig;
using ::shmhub::shm::ShmErrc;
using ::shmhub::shm::ShmErrcOf;
using ::shmhub::testing::TempDir;

constexpr absl::Duration kInterval = absl::Milliseconds(20);
constexpr absl::Duration kWaitLimit = absl::Seconds(10);

SegmentConfig TestConfig(uint64_t heartbeat_interval_ns) {
  SegmentConfig c;
  c.max_guests = 3;
  c.ring_capacity = 4096;
  c.classes = {{256, 4}};
  c.max_payload_size = 4096;
  c.heartbeat_interval_ns = heartbeat_interval_ns;
  return c;
}

// Polls `condition` until it holds or kWaitLimit passes.
bool Eventually(const std::function<bool()>& condition) {
  const absl::Time deadline = absl::Now() + kWaitLimit;
  while (absl::Now() < deadline) {
    if (condition()) return true;
    absl::SleepFor(absl::Milliseconds(2));
  }
  return condition();
}

class GuestTest : public ::testing::Test {
 protected:
  void SetUp() override { CreateHost(absl::ToInt64Nanoseconds(kInterval)); }

  void CreateHost(uint64_t heartbeat_interval_ns) {
    host_.reset();
    absl::StatusOr<std::unique_ptr<Segment>> host =
        Segment::Create(path_, TestConfig(heartbeat_interval_ns));
    ASSERT_TRUE(host.ok()) << host.status();
    host_ = *std::move(host);
  }

  PeerEntryView HostEntry(uint32_t peer_id) {
    absl::StatusOr<PeerEntryView> entry = host_->peers().Entry(peer_id);
    EXPECT_TRUE(entry.ok()) << entry.status();
    return *entry;
  }

  // The host's ReservePeer: the lowest Empty slot becomes Reserved.
  shm::Occupancy Reserve() {
    absl::StatusOr<shm::Occupancy> taken = host_->peers().ReserveFirstFree();
    EXPECT_TRUE(taken.ok()) << taken.status();
    return *taken;
  }

  GuestOptions Claim(const shm::Occupancy& reserved) const {
    GuestOptions options;
    options.segment_path = path_;
    options.peer_id = reserved.peer_id;
    options.expected_epoch = reserved.epoch;
    return options;
  }

  GuestOptions Direct() const {
    GuestOptions options;
    options.segment_path = path_;
    return options;
  }

  static std::unique_ptr<Guest> MustAttach(const GuestOptions& options) {
    absl::StatusOr<std::unique_ptr<Guest>> guest = Guest::Attach(options);
    EXPECT_TRUE(guest.ok()) << guest.status();
    return guest.ok() ? *std::move(guest) : nullptr;
  }

  TempDir dir_;
  const std::string path_ = dir_.File("hub");
  std::unique_ptr<Segment> host_;
};

TEST_F(GuestTest, ClaimWithTheReservedEpochAttaches) {
  const shm::Occupancy reserved = Reserve();
  std::unique_ptr<Guest> guest = MustAttach(Claim(reserved));
  ASSERT_NE(guest, nullptr);

  EXPECT_EQ(guest->peer_id(), reserved.peer_id);
  EXPECT_EQ(guest->epoch(), reserved.epoch);
  EXPECT_TRUE(guest->StillAttached());
  EXPECT_TRUE(HostEntry(reserved.peer_id).CheckPair(PeerState::kAttached, reserved.epoch).ok());
}

TEST_F(GuestTest, ClaimWithAWrongEpochFailsStaleAndChangesNothing) {
  const shm::Occupancy reserved = Reserve();
  GuestOptions options = Claim(reserved);
  options.expected_epoch = reserved.epoch + 1;

  absl::StatusOr<std::unique_ptr<Guest>> guest = Guest::Attach(options);

  ASSERT_FALSE(guest.ok());
  EXPECT_EQ(guest.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ShmErrcOf(guest.status()), ShmErrc::kStaleEpoch);
  EXPECT_NE(guest.status().message().find(path_), absl::string_view::npos) << guest.status();
  PeerEntryView entry = HostEntry(reserved.peer_id);
  EXPECT_TRUE(entry.CheckPair(PeerState::kReserved, reserved.epoch).ok());
  EXPECT_EQ(entry.LastHeartbeat(), 0u);
}

TEST_F(GuestTest, ClaimOfASlotThatIsNotReservedFailsWrongState) {
  GuestOptions options = Direct();
  options.peer_id = 2;
  options.expected_epoch = 0;

  absl::StatusOr<std::unique_ptr<Guest>> guest = Guest::Attach(options);

  ASSERT_FALSE(guest.ok());
  EXPECT_EQ(ShmErrcOf(guest.status()), ShmErrc::kWrongState);
  EXPECT_TRUE(HostEntry(2).State().Is(PeerState::kEmpty));
}

TEST_F(GuestTest, ClaimOfAPeerIdBeyondTheTableFailsInvalidPeerId) {
  GuestOptions options = Direct();
  options.peer_id = 4;  // max_guests is 3
  options.expected_epoch = 1;

  absl::StatusOr<std::unique_ptr<Guest>> guest = Guest::Attach(options);

  ASSERT_FALSE(guest.ok());
  EXPECT_EQ(guest.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ShmErrcOf(guest.status()), ShmErrc::kInvalidPeerId);
}

TEST_F(GuestTest, DirectAttachTakesTheLowestEmptySlotAndBumpsItsEpoch) {
  const shm::Occupancy reserved = Reserve();  // slot 1 is taken
  const uint32_t epoch_before = HostEntry(2).Epoch();

  std::unique_ptr<Guest> guest = MustAttach(Direct());
  ASSERT_NE(guest, nullptr);

  EXPECT_EQ(reserved.peer_id, 1u);
  EXPECT_EQ(guest->peer_id(), 2u);
  EXPECT_EQ(guest->epoch(), epoch_before + 1);
  EXPECT_TRUE(HostEntry(2).CheckPair(PeerState::kAttached, guest->epoch()).ok());
}

TEST_F(GuestTest, DirectAttachWithEverySlotTakenFailsNoFreeEntry) {
  for (int i = 0; i < 3; ++i) Reserve();

  absl::StatusOr<std::unique_ptr<Guest>> guest = Guest::Attach(Direct());

  ASSERT_FALSE(guest.ok());
  EXPECT_EQ(guest.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(ShmErrcOf(guest.status()), ShmErrc::kNoFreeEntry);
}

TEST_F(GuestTest, InconsistentOptionsAreRefusedBeforeTouchingTheSegment) {
  GuestOptions no_epoch = Direct();
  no_epoch.peer_id = 1;
  GuestOptions epoch_without_peer = Direct();
  epoch_without_peer.expected_epoch = 1;
  GuestOptions zero_interval = Direct();
  zero_interval.heartbeat_interval = absl::ZeroDuration();
  GuestOptions no_path;

  for (const GuestOptions& options : {no_epoch, epoch_without_peer, zero_interval, no_path}) {
    absl::StatusOr<std::unique_ptr<Guest>> guest = Guest::Attach(options);
    ASSERT_FALSE(guest.ok());
    EXPECT_EQ(guest.status().code(), absl::StatusCode::kInvalidArgument) << guest.status();
  }
  for (uint32_t id = 1; id <= 3; ++id) EXPECT_TRUE(HostEntry(id).State().Is(PeerState::kEmpty));
}

TEST_F(GuestTest, AttachToAMissingSegmentFailsNamingThePath) {
  GuestOptions options = Direct();
  options.segment_path = dir_.File("absent");

  absl::StatusOr<std::unique_ptr<Guest>> guest = Guest::Attach(options);

  ASSERT_FALSE(guest.ok());
  EXPECT_EQ(ShmErrcOf(guest.status()), ShmErrc::kIo);
  EXPECT_NE(guest.status().message().find("absent"), absl::string_view::npos) << guest.status();
}

TEST_F(GuestTest, NoSlotIsTakenOnceTheHostRaisedHostGoodbye) {
  const shm::Occupancy reserved = Reserve();
  host_->SetHostGoodbye();

  absl::StatusOr<std::unique_ptr<Guest>> claimed = Guest::Attach(Claim(reserved));
  absl::StatusOr<std::unique_ptr<Guest>> direct = Guest::Attach(Direct());

  ASSERT_FALSE(claimed.ok());
  EXPECT_EQ(claimed.status().code(), absl::StatusCode::kUnavailable);
  ASSERT_FALSE(direct.ok());
  EXPECT_EQ(direct.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(HostEntry(reserved.peer_id).CheckPair(PeerState::kReserved, reserved.epoch).ok());
  EXPECT_TRUE(HostEntry(2).State().Is(PeerState::kEmpty));
}

TEST_F(GuestTest, FirstHeartbeatIsWrittenBeforeAttachReturnsAndThenAdvances) {
  std::unique_ptr<Guest> guest = MustAttach(Claim(Reserve()));
  ASSERT_NE(guest, nullptr);
  PeerEntryView entry = HostEntry(guest->peer_id());

  const uint64_t first = entry.LastHeartbeat();

  EXPECT_NE(first, 0u);
  EXPECT_EQ(guest->heartbeat_interval(), kInterval);  // the header's
  EXPECT_EQ(guest->heartbeat_state(), HeartbeatState::kRunning);
  EXPECT_TRUE(Eventually([&] { return entry.LastHeartbeat() > first; }));
}

TEST_F(GuestTest, NoHeartbeatsWhenTheHeaderIntervalIsZero) {
  CreateHost(0);
  std::unique_ptr<Guest> guest = MustAttach(Claim(Reserve()));
  ASSERT_NE(guest, nullptr);

  absl::SleepFor(5 * kInterval);

  EXPECT_EQ(guest->heartbeat_state(), HeartbeatState::kDisabled);
  EXPECT_EQ(guest->heartbeat_interval(), absl::ZeroDuration());
  EXPECT_EQ(HostEntry(guest->peer_id()).LastHeartbeat(), 0u);
}

TEST_F(GuestTest, AnExplicitIntervalOverridesTheHeader) {
  CreateHost(0);
  GuestOptions options = Claim(Reserve());
  options.heartbeat_interval = kInterval;
  std::unique_ptr<Guest> guest = MustAttach(options);
  ASSERT_NE(guest, nullptr);
  PeerEntryView entry = HostEntry(guest->peer_id());
  const uint64_t first = entry.LastHeartbeat();

  EXPECT_NE(first, 0u);
  EXPECT_TRUE(Eventually([&] { return entry.LastHeartbeat() > first; }));
}

TEST_F(GuestTest, HeartbeatOptionOffWritesNoHeartbeat) {
  GuestOptions options = Claim(Reserve());
  options.heartbeat = false;
  std::unique_ptr<Guest> guest = MustAttach(options);
  ASSERT_NE(guest, nullptr);

  absl::SleepFor(5 * kInterval);

  EXPECT_EQ(guest->heartbeat_state(), HeartbeatState::kDisabled);
  EXPECT_EQ(HostEntry(guest->peer_id()).LastHeartbeat(), 0u);
}

TEST_F(GuestTest, GoodbyeLeavesTheEntryGoodbyeWithTheEpochKept) {
  const shm::Occupancy reserved = Reserve();
  std::unique_ptr<Guest> guest = MustAttach(Claim(reserved));
  ASSERT_NE(guest, nullptr);

  const absl::Status goodbye = guest->Goodbye();

  EXPECT_TRUE(goodbye.ok()) << goodbye;
  EXPECT_TRUE(HostEntry(reserved.peer_id).CheckPair(PeerState::kGoodbye, reserved.epoch).ok());
  EXPECT_EQ(guest->heartbeat_state(), HeartbeatState::kStopped);
  EXPECT_EQ(guest->segment(), nullptr);  // unmapped
  EXPECT_FALSE(guest->StillAttached());
  EXPECT_FALSE(guest->HostGoodbye());
  EXPECT_TRUE(guest->Goodbye().ok());  // idempotent
}

TEST_F(GuestTest, HeartbeatsStopAtGoodbye) {
  std::unique_ptr<Guest> guest = MustAttach(Claim(Reserve()));
  ASSERT_NE(guest, nullptr);
  PeerEntryView entry = HostEntry(guest->peer_id());
  ASSERT_TRUE(guest->Goodbye().ok());
  const uint64_t last = entry.LastHeartbeat();

  absl::SleepFor(5 * kInterval);

  EXPECT_EQ(entry.LastHeartbeat(), last);
}

TEST_F(GuestTest, DestructorSaysGoodbye) {
  const shm::Occupancy reserved = Reserve();
  MustAttach(Claim(reserved)).reset();

  EXPECT_TRUE(HostEntry(reserved.peer_id).CheckPair(PeerState::kGoodbye, reserved.epoch).ok());
}

TEST_F(GuestTest, GoodbyeAfterTheSlotMovedOnWritesNothing) {
  const shm::Occupancy reserved = Reserve();
  std::unique_ptr<Guest> guest = MustAttach(Claim(reserved));
  ASSERT_NE(guest, nullptr);
  // The daemon recovers the slot (e.g. after an eviction) and hands it to
  // someone else.
  PeerEntryView entry = HostEntry(reserved.peer_id);
  ASSERT_TRUE(entry.BeginRecovery(reserved.epoch).ok());
  ASSERT_TRUE(entry.FinishRecovery(reserved.epoch).ok());
  const shm::Occupancy next = Reserve();
  ASSERT_EQ(next.peer_id, reserved.peer_id);

  const absl::Status goodbye = guest->Goodbye();

  EXPECT_FALSE(goodbye.ok());
  EXPECT_EQ(ShmErrcOf(goodbye), ShmErrc::kWrongState) << goodbye;
  EXPECT_TRUE(entry.CheckPair(PeerState::kReserved, next.epoch).ok());
}

TEST_F(GuestTest, HeartbeatThreadStopsWhenTheHostRaisesHostGoodbye) {
  std::unique_ptr<Guest> guest = MustAttach(Claim(Reserve()));
  ASSERT_NE(guest, nullptr);
  PeerEntryView entry = HostEntry(guest->peer_id());

  host_->SetHostGoodbye();

  EXPECT_TRUE(guest->HostGoodbye());
  ASSERT_TRUE(Eventually([&] { return guest->heartbeat_state() == HeartbeatState::kHostGoodbye; }));
  const uint64_t last = entry.LastHeartbeat();
  absl::SleepFor(5 * kInterval);
  EXPECT_EQ(entry.LastHeartbeat(), last);
  EXPECT_TRUE(guest->StillAttached());  // only the heartbeats stopped
}

TEST_F(GuestTest, HeartbeatThreadStopsWhenSomeoneElseResetsTheEntry) {
  const shm::Occupancy reserved = Reserve();
  std::unique_ptr<Guest> guest = MustAttach(Claim(reserved));
  ASSERT_NE(guest, nullptr);
  PeerEntryView entry = HostEntry(reserved.peer_id);

  // The daemon's recovery: fence the occupancy into Goodbye, then (once the
  // guest's thread has noticed) zero the heartbeat and empty the slot.
  ASSERT_TRUE(entry.BeginRecovery(reserved.epoch).ok());
  ASSERT_TRUE(Eventually([&] { return guest->heartbeat_state() == HeartbeatState::kLostSlot; }));
  ASSERT_TRUE(entry.FinishRecovery(reserved.epoch).ok());
  absl::SleepFor(5 * kInterval);

  EXPECT_EQ(entry.LastHeartbeat(), 0u);
  EXPECT_FALSE(guest->StillAttached());
  EXPECT_TRUE(entry.CheckPair(PeerState::kEmpty, reserved.epoch).ok());
}

TEST_F(GuestTest, ConcurrentGoodbyesAndAccessorsAreSafeAndAgree) {
  std::unique_ptr<Guest> guest = MustAttach(Claim(Reserve()));
  ASSERT_NE(guest, nullptr);
  std::vector<absl::Status> results(4);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < results.size(); ++i) {
    threads.emplace_back([&, i] {
      guest->StillAttached();
      guest->HostGoodbye();
      results[i] = guest->Goodbye();
      guest->StillAttached();
    });
  }
  for (std::thread& t : threads) t.join();

  for (const absl::Status& result : results) EXPECT_TRUE(result.ok()) << result;
  EXPECT_TRUE(HostEntry(guest->peer_id()).State().Is(PeerState::kGoodbye));
}

}  // namespace
}  // namespace shmhub::client
