// A peer SIGKILLed mid-transfer: the survivor's blocked calls (a Receive on
// an empty ring and a Send into a full one, on two threads) return
// UNAVAILABLE as soon as the doorbell hangs up — long before their
// deadlines — and after recovery (shm::RecoverPeer, as shmhubd runs it) the
// slot is claimed by a new process and carries frames again, with every
// pool slot back. Both ways round: the guest killed under the host, and the
// host application killed under the guest.
#include <signal.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/host/host_link.h"
#include "client/link/ring_link.h"
#include "gtest/gtest.h"
#include "shm/peer_recovery.h"
#include "shm/peer_table.h"
#include "shm/segment.h"
#include "tests/client/link/process_util.h"
#include "tests/client/link/test_util.h"
#include "tests/testing/child_process.h"
#include "tests/testing/temp_dir.h"

namespace shmhub::client {
namespace {

using link_test::Bytes;
using link_test::Checksum;
using link_test::Pattern;

// Far beyond what any step needs: a call that only returns at this deadline
// has missed the hang-up, and the test sees DEADLINE_EXCEEDED.
constexpr absl::Duration kBlockBound = absl::Seconds(60);
constexpr absl::Duration kStepBound = absl::Seconds(20);
constexpr uint8_t kReady = 100;

// Sizes across the tiers: inline, SLOT_REF, MMAP_REF.
size_t SizeOf(uint64_t i) {
  static constexpr size_t kSizes[] = {64, 1000, 3000, 200, 100000};
  return kSizes[i % 5];
}

std::unique_ptr<RingLink> MakeLink(shm::Segment* segment, uint32_t peer_id, uint32_t epoch,
                                   LinkSide side, link_test::PeerChannels& channels) {
  absl::StatusOr<std::unique_ptr<RingLink>> link =
      side == LinkSide::kHost
          ? HostLink::Create(segment, {peer_id, epoch}, std::move(channels.host_doorbell),
                             std::move(channels.host_mapping))
          : RingLink::Create(LinkEndpoints{segment, peer_id, epoch, LinkSide::kGuest,
                                           std::move(channels.guest_doorbell),
                                           std::move(channels.guest_mapping)});
  if (!link.ok()) {
    std::fprintf(stderr, "link: %s\n", link.status().ToString().c_str());
    return nullptr;
  }
  return *std::move(link);
}

// The child's half of one occupancy: maps the segment itself, claims the
// entry when it plays the guest, sends `count` frames, reports kReady, and
// then either sleeps until killed or (`echo`) receives `count` frames,
// checks them, and exits 0.
int ChildPeer(const std::string& path, uint32_t peer_id, uint32_t epoch, LinkSide side,
              link_test::PeerChannels& channels, const link_test::ResultPipe& verdict,
              int count, bool echo) {
  if (side == LinkSide::kHost) {
    channels.KeepHostEnds();
  } else {
    channels.KeepGuestEnds();
  }
  absl::StatusOr<std::unique_ptr<shm::Segment>> mine = shm::Segment::Attach(path);
  if (!mine.ok()) return 2;
  if (side == LinkSide::kGuest && !(*mine)->peers().Entry(peer_id)->ClaimFenced(epoch).ok()) {
    return 3;
  }
  if (side == LinkSide::kHost &&
      !link_test::AwaitAttached(**mine, peer_id, epoch, kStepBound)) {
    return 4;
  }
  std::unique_ptr<RingLink> link = MakeLink(mine->get(), peer_id, epoch, side, channels);
  if (link == nullptr) return 5;
  for (int i = 0; i < count; ++i) {
    if (!link->Send(Bytes(Pattern(i, SizeOf(i))), absl::Now() + kStepBound).ok()) return 6;
  }
  verdict.Report(kReady);
  if (!echo) {
    // Holds everything until the parent kills us; exits on its own only if
    // the parent never does.
    absl::SleepFor(kBlockBound);
    return 9;
  }
  for (int i = 0; i < count; ++i) {
    absl::StatusOr<ReceivedFrame> frame = link->Receive(absl::Now() + kStepBound);
    if (!frame.ok()) return 7;
    if (Checksum(frame->data()) != Checksum(Bytes(Pattern(1000 + i, SizeOf(i))))) return 8;
  }
  link.reset();
  return 0;
}

class PeerCrashTest : public ::testing::TestWithParam<LinkSide> {
 protected:
  // The side the parent plays; the child plays the other one.
  LinkSide Survivor() const { return GetParam(); }
  LinkSide Victim() const {
    return Survivor() == LinkSide::kHost ? LinkSide::kGuest : LinkSide::kHost;
  }

  void SetUp() override {
    shm::SegmentConfig config = link_test::SmallConfig();
    config.max_guests = 1;
    absl::StatusOr<std::unique_ptr<shm::Segment>> segment =
        shm::Segment::Create(dir_.File("segment"), config);
    ASSERT_TRUE(segment.ok()) << segment.status();
    segment_ = *std::move(segment);
  }

  // Reserves the entry (as the daemon would for a bootstrapping guest).
  shm::Occupancy Reserve() {
    absl::StatusOr<shm::Occupancy> taken = segment_->peers().ReserveFirstFree();
    EXPECT_TRUE(taken.ok()) << taken.status();
    return taken.ok() ? *taken : shm::Occupancy{0, 0};
  }

  // The parent's link: as the guest it claims the entry first.
  std::unique_ptr<RingLink> SurvivorLink(const shm::Occupancy& slot,
                                         link_test::PeerChannels& channels) {
    if (Survivor() == LinkSide::kGuest) {
      EXPECT_TRUE(segment_->peers().Entry(slot.peer_id)->ClaimFenced(slot.epoch).ok());
      channels.KeepGuestEnds();
    } else {
      channels.KeepHostEnds();
      EXPECT_TRUE(link_test::AwaitAttached(*segment_, slot.peer_id, slot.epoch, kStepBound));
    }
    return MakeLink(segment_.get(), slot.peer_id, slot.epoch, Survivor(), channels);
  }

  shmhub::testing::TempDir dir_;
  std::unique_ptr<shm::Segment> segment_;
};

TEST_P(PeerCrashTest, BlockedCallsFailPromptlyAndTheSlotIsReusableAfterRecovery) {
  constexpr int kFrames = 20;
  const std::string path = dir_.File("segment");
  const shm::Occupancy slot = Reserve();
  link_test::PeerChannels channels = link_test::PeerChannels::Make();
  link_test::ResultPipe verdict;
  std::optional<shmhub::testing::ChildProcess> victim;
  victim.emplace([&] {
    return ChildPeer(path, slot.peer_id, slot.epoch, Victim(), channels, verdict, kFrames,
                     /*echo=*/false);
  });
  verdict.CloseWriteEnd();
  std::unique_ptr<RingLink> link = SurvivorLink(slot, channels);
  ASSERT_NE(link, nullptr);
  ASSERT_EQ(verdict.Await(kStepBound), std::optional<uint8_t>(kReady));
  for (int i = 0; i < kFrames; ++i) {
    absl::StatusOr<ReceivedFrame> frame = link->Receive(absl::Now() + kStepBound);
    ASSERT_TRUE(frame.ok()) << frame.status();
    EXPECT_EQ(Checksum(frame->data()), Checksum(Bytes(Pattern(i, SizeOf(i)))));
  }

  // One thread blocks receiving (nothing more comes), another sending into
  // a ring the victim never drains.
  absl::Status receive_status;
  absl::Status send_status;
  std::thread receiver(
      [&] { receive_status = link->Receive(absl::Now() + kBlockBound).status(); });
  std::thread sender([&] {
    for (int i = 0; (send_status = link->Send(Bytes(Pattern(i, 200)),
                                              absl::Now() + kBlockBound))
                        .ok();
         ++i) {
    }
  });
  // The sender fills the ring (19 frames of 208 bytes) and then blocks.
  const shm::BipBuffer sent_ring = Survivor() == LinkSide::kHost
                                       ? segment_->HostToGuestRing(slot.peer_id - 1)
                                       : segment_->GuestToHostRing(slot.peer_id - 1);
  const absl::Time fill_by = absl::Now() + kStepBound;
  while (sent_ring.Occupancy() < 19 * 208 && absl::Now() < fill_by) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  EXPECT_EQ(sent_ring.Occupancy(), 19u * 208u);
  victim->Signal(SIGKILL);
  EXPECT_EQ(victim->Wait(), 128 + SIGKILL);
  receiver.join();
  sender.join();
  EXPECT_EQ(receive_status.code(), absl::StatusCode::kUnavailable) << receive_status;
  EXPECT_EQ(send_status.code(), absl::StatusCode::kUnavailable) << send_status;

  // Recovery as the daemon runs it: the host side stops using the rings and
  // holds no views; the guest side has left (its link is gone).
  link->Stop();
  EXPECT_EQ(link->outstanding_views(), 0u);
  link.reset();
  absl::StatusOr<shm::RecoveryReport> report =
      shm::RecoverPeer(*segment_, {slot.peer_id, slot.epoch});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->ProblemCount(), 0u);
  link_test::ExpectPoolFull(*segment_);

  // The slot is reused by a new occupancy: frames both ways.
  const shm::Occupancy again = Reserve();
  EXPECT_EQ(again.peer_id, slot.peer_id);
  EXPECT_NE(again.epoch, slot.epoch);
  link_test::PeerChannels fresh = link_test::PeerChannels::Make();
  link_test::ResultPipe fresh_verdict;
  shmhub::testing::ChildProcess peer([&] {
    return ChildPeer(path, again.peer_id, again.epoch, Victim(), fresh, fresh_verdict, kFrames,
                     /*echo=*/true);
  });
  fresh_verdict.CloseWriteEnd();
  std::unique_ptr<RingLink> second = SurvivorLink(again, fresh);
  ASSERT_NE(second, nullptr);
  ASSERT_EQ(fresh_verdict.Await(kStepBound), std::optional<uint8_t>(kReady));
  for (int i = 0; i < kFrames; ++i) {
    absl::StatusOr<ReceivedFrame> frame = second->Receive(absl::Now() + kStepBound);
    ASSERT_TRUE(frame.ok()) << frame.status();
    EXPECT_EQ(Checksum(frame->data()), Checksum(Bytes(Pattern(i, SizeOf(i)))));
  }
  for (int i = 0; i < kFrames; ++i) {
    ASSERT_TRUE(second->Send(Bytes(Pattern(1000 + i, SizeOf(i))), absl::Now() + kStepBound).ok());
  }
  EXPECT_EQ(peer.Wait(), 0);
  second.reset();
  EXPECT_TRUE(segment_->GuestToHostRing(slot.peer_id - 1).IsEmpty());
  EXPECT_TRUE(segment_->HostToGuestRing(slot.peer_id - 1).IsEmpty());
  link_test::ExpectPoolFull(*segment_);
}

std::string SideName(const ::testing::TestParamInfo<LinkSide>& param) {
  return param.param == LinkSide::kHost ? "GuestKilledUnderTheHost" : "HostKilledUnderTheGuest";
}

INSTANTIATE_TEST_SUITE_P(Sides, PeerCrashTest,
                         ::testing::Values(LinkSide::kHost, LinkSide::kGuest), SideName);

}  // namespace
}  // namespace shmhub::client
