#include "shm/peer_table.h"

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <limits>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "shm/format.h"
#include "shm/shm_error.h"

namespace shmhub::shm {
namespace {

using ::testing::HasSubstr;

constexpr uint64_t kRingOffset = 0x4C0;
constexpr uint64_t kSecond = 1'000'000'000;

constexpr std::array<PeerState, 4> kAllStates = {PeerState::kEmpty, PeerState::kAttached,
                                                 PeerState::kGoodbye, PeerState::kReserved};

// One entry laid out like in a segment (64-aligned), initialised, with its
// state and epoch words then set directly, before any other thread sees it.
struct EntryBox {
  explicit EntryBox(PeerState state = PeerState::kEmpty, uint32_t epoch = 0) {
    std::memset(&entry, 0xAB, sizeof(entry));  // Init must clear all of it
    view.Init(kRingOffset);
    entry.state = static_cast<uint32_t>(state);
    entry.epoch = epoch;
  }

  alignas(64) PeerEntry entry;
  PeerEntryView view{&entry};
};

PeerEntry Snapshot(const PeerEntry& entry) {
  PeerEntry copy;
  std::memcpy(&copy, &entry, sizeof(copy));
  return copy;
}

// "Unchanged" in §18: every byte of the entry is the same.
::testing::AssertionResult BytesUnchanged(const PeerEntry& before, const PeerEntry& after) {
  if (std::memcmp(&before, &after, sizeof(PeerEntry)) == 0) return ::testing::AssertionSuccess();
  const auto* b = reinterpret_cast<const uint8_t*>(&before);
  const auto* a = reinterpret_cast<const uint8_t*>(&after);
  size_t i = 0;
  while (b[i] == a[i]) ++i;
  return ::testing::AssertionFailure()
         << "entry byte " << i << " changed from " << int{b[i]} << " to " << int{a[i]};
}

std::string Name(PeerState state) { return std::string(PeerStateName(state)); }

TEST(PeerEntry, C_P1_InitZeroesEverythingButRingOffset) {
  EntryBox box;
  // Overwrite with a pattern again to make sure Init itself does the work.
  std::memset(&box.entry, 0x5A, sizeof(box.entry));
  box.view.Init(kRingOffset);

  EXPECT_EQ(box.view.State(), StateReading::FromRaw(0));
  EXPECT_TRUE(box.view.State().Is(PeerState::kEmpty));
  EXPECT_EQ(box.view.Epoch(), 0u);
  EXPECT_EQ(box.view.LastHeartbeat(), 0u);
  EXPECT_EQ(box.view.RingOffset(), kRingOffset);
  for (size_t i = 0; i < sizeof(box.entry.reserved); ++i) {
    EXPECT_EQ(box.entry.reserved[i], 0) << "reserved byte " << i;
  }
  // Byte-exact: 16 zero bytes, then the little-endian offset, then zeros.
  std::array<uint8_t, 64> expected{};
  std::memcpy(&expected[16], &kRingOffset, sizeof(kRingOffset));
  EXPECT_EQ(std::memcmp(&box.entry, expected.data(), expected.size()), 0);
}

TEST(PeerEntry, C_P2_AttachOnEmptyGivesAttachedAndEpochOne) {
  EntryBox box;
  absl::StatusOr<uint32_t> epoch = box.view.TryAttach();
  ASSERT_TRUE(epoch.ok()) << epoch.status();
  EXPECT_EQ(*epoch, 1u);
  EXPECT_TRUE(box.view.State().Is(PeerState::kAttached));
  EXPECT_EQ(box.view.Epoch(), 1u);
  // The 64-bit CAS lands state at offset 0 and epoch at offset 4 (§5.1).
  const uint8_t expected[8] = {1, 0, 0, 0, 1, 0, 0, 0};
  EXPECT_EQ(std::memcmp(&box.entry, expected, sizeof(expected)), 0);
}

TEST(PeerEntry, C_P3_AttachOnOccupiedFailsReportsStateAndChangesNothing) {
  for (PeerState state : {PeerState::kAttached, PeerState::kGoodbye, PeerState::kReserved}) {
    SCOPED_TRACE(Name(state));
    EntryBox box(state, 5);
    const PeerEntry before = Snapshot(box.entry);
    absl::StatusOr<uint32_t> epoch = box.view.TryAttach();
    ASSERT_FALSE(epoch.ok());
    EXPECT_EQ(ShmErrcOf(epoch.status()), ShmErrc::kWrongState);
    EXPECT_EQ(epoch.status().message(),
              "peer entry is " + Name(state) + " (epoch 5), expected Empty");
    EXPECT_TRUE(BytesUnchanged(before, box.entry));
    EXPECT_EQ(box.view.Epoch(), 5u);
  }
}

TEST(PeerEntry, C_P4_ReserveOnEmptyGivesReservedAndReturnsNewEpoch) {
  EntryBox fresh;
  absl::StatusOr<uint32_t> epoch = fresh.view.TryReserve();
  ASSERT_TRUE(epoch.ok()) << epoch.status();
  EXPECT_EQ(*epoch, 1u);
  EXPECT_TRUE(fresh.view.State().Is(PeerState::kReserved));

  EntryBox reused(PeerState::kEmpty, 41);
  epoch = reused.view.TryReserve();
  ASSERT_TRUE(epoch.ok()) << epoch.status();
  EXPECT_EQ(*epoch, 42u);
  EXPECT_EQ(reused.view.LoadPair(), PeerPair(StateReading::FromRaw(3), 42u));
}

TEST(PeerEntry, C_P5_ReserveOnOccupiedFailsReportsStateAndChangesNothing) {
  for (PeerState state : {PeerState::kAttached, PeerState::kGoodbye, PeerState::kReserved}) {
    SCOPED_TRACE(Name(state));
    EntryBox box(state, 9);
    const PeerEntry before = Snapshot(box.entry);
    absl::StatusOr<uint32_t> epoch = box.view.TryReserve();
    ASSERT_FALSE(epoch.ok());
    EXPECT_EQ(ShmErrcOf(epoch.status()), ShmErrc::kWrongState);
    EXPECT_EQ(epoch.status().message(),
              "peer entry is " + Name(state) + " (epoch 9), expected Empty");
    EXPECT_TRUE(BytesUnchanged(before, box.entry));
  }
}

TEST(PeerEntry, C_P6_ClaimReservedGivesAttachedWithEpochUnchanged) {
  EntryBox box;
  ASSERT_EQ(box.view.TryReserve().value(), 1u);
  absl::Status claim = box.view.TryClaimReserved();
  ASSERT_TRUE(claim.ok()) << claim;
  EXPECT_TRUE(box.view.State().Is(PeerState::kAttached));
  EXPECT_EQ(box.view.Epoch(), 1u);
}

TEST(PeerEntry, C_P7_ClaimOnNonReservedFailsAndReportsState) {
  for (PeerState state : {PeerState::kEmpty, PeerState::kAttached, PeerState::kGoodbye}) {
    SCOPED_TRACE(Name(state));
    EntryBox box(state, 3);
    const PeerEntry before = Snapshot(box.entry);
    absl::Status claim = box.view.TryClaimReserved();
    EXPECT_EQ(ShmErrcOf(claim), ShmErrc::kWrongState);
    EXPECT_EQ(claim.message(), "peer entry is " + Name(state) + " (epoch 3), expected Reserved");
    EXPECT_TRUE(BytesUnchanged(before, box.entry));
  }
}

TEST(PeerEntry, C_P8_ReleaseReservedEmptiesOnlyAReservedEntry) {
  EntryBox reserved(PeerState::kReserved, 4);
  reserved.view.UpdateHeartbeat(777);
  PeerEntry expected = Snapshot(reserved.entry);
  expected.state = static_cast<uint32_t>(PeerState::kEmpty);
  reserved.view.ReleaseReserved();
  EXPECT_TRUE(BytesUnchanged(expected, reserved.entry));  // only the state moved
  EXPECT_EQ(reserved.view.Epoch(), 4u);

  for (PeerState state : {PeerState::kEmpty, PeerState::kAttached, PeerState::kGoodbye}) {
    SCOPED_TRACE(Name(state));
    EntryBox box(state, 4);
    const PeerEntry before = Snapshot(box.entry);
    box.view.ReleaseReserved();
    EXPECT_TRUE(BytesUnchanged(before, box.entry));
  }
}

TEST(PeerEntry, C_P9_SetGoodbyeFromEveryStateKeepsTheEpoch) {
  for (PeerState state : kAllStates) {
    SCOPED_TRACE(Name(state));
    EntryBox box(state, 6);
    box.view.SetGoodbye();
    EXPECT_TRUE(box.view.State().Is(PeerState::kGoodbye));
    EXPECT_EQ(box.view.Epoch(), 6u);
  }
}

TEST(PeerEntry, C_P10_ResetGivesEmptyAndZeroHeartbeatAndKeepsEpoch) {
  EntryBox box;
  ASSERT_EQ(box.view.TryAttach().value(), 1u);
  box.view.UpdateHeartbeat(999999);
  box.view.Reset();
  EXPECT_TRUE(box.view.State().Is(PeerState::kEmpty));
  EXPECT_EQ(box.view.LastHeartbeat(), 0u);
  EXPECT_EQ(box.view.Epoch(), 1u);
  EXPECT_EQ(box.view.RingOffset(), kRingOffset);
}

TEST(PeerEntry, C_P11_LastHeartbeatReturnsTheUpdatedValue) {
  EntryBox box;
  for (uint64_t t :
       {uint64_t{1}, uint64_t{123456789012345}, std::numeric_limits<uint64_t>::max()}) {
    box.view.UpdateHeartbeat(t);
    EXPECT_EQ(box.view.LastHeartbeat(), t);
    EXPECT_EQ(box.entry.last_heartbeat, t);  // the word at offset 8
  }
}

TEST(PeerEntry, C_P12_StalenessIsStrictlyMoreThanTwoIntervals) {
  EntryBox box;  // last = 0
  EXPECT_TRUE(box.view.IsHeartbeatStale(2 * kSecond + kSecond / 2, kSecond));
  EXPECT_FALSE(box.view.IsHeartbeatStale(kSecond * 19 / 10, kSecond));
  EXPECT_FALSE(box.view.IsHeartbeatStale(2 * kSecond, kSecond));
  EXPECT_TRUE(box.view.IsHeartbeatStale(2 * kSecond + 1, kSecond));
}

TEST(PeerEntry, C_P13_IntervalZeroIsNeverStale) {
  EntryBox box;
  EXPECT_FALSE(box.view.IsHeartbeatStale(std::numeric_limits<uint64_t>::max(), 0));
  box.view.UpdateHeartbeat(5);
  EXPECT_FALSE(box.view.IsHeartbeatStale(std::numeric_limits<uint64_t>::max(), 0));
}

TEST(PeerEntry, C_P14_HeartbeatLaterThanNowIsNotStale) {
  EntryBox box;
  box.view.UpdateHeartbeat(10 * kSecond);
  EXPECT_FALSE(box.view.IsHeartbeatStale(kSecond, 1));
  EXPECT_FALSE(box.view.IsHeartbeatStale(0, 1));
}

TEST(PeerEntry, C_P15_HugeIntervalSaturatesAndIsNeverStale) {
  EntryBox box;
  constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
  constexpr uint64_t kTwoTo63 = uint64_t{1} << 63;
  // Rust would wrap 2 * 2^63 to 0 and call any elapsed time stale.
  EXPECT_FALSE(box.view.IsHeartbeatStale(kMax, kTwoTo63));
  EXPECT_FALSE(box.view.IsHeartbeatStale(1, kTwoTo63));
  EXPECT_FALSE(box.view.IsHeartbeatStale(kMax, kMax));
  // Just below the overflow the doubled value is exact: 2^64 - 2 < 2^64 - 1.
  EXPECT_TRUE(box.view.IsHeartbeatStale(kMax, kTwoTo63 - 1));
}

TEST(PeerTable, C_P16_PeerIdsAreIndexPlusOneWithinTheSegmentsMaxGuests) {
  EXPECT_EQ(PeerTable::IndexToPeerId(0).value(), 1u);
  EXPECT_EQ(PeerTable::PeerIdToIndex(1).value(), 0u);
  EXPECT_EQ(PeerTable::PeerIdToIndex(5).value(), 4u);
  EXPECT_EQ(PeerTable::IndexToPeerId(4).value(), 5u);
  EXPECT_EQ(PeerTable::IndexToPeerId(254).value(), 255u);
  EXPECT_EQ(PeerTable::PeerIdToIndex(255).value(), 254u);
  EXPECT_EQ(ShmErrcOf(PeerTable::IndexToPeerId(255).status()), ShmErrc::kInvalidPeerId);
  EXPECT_EQ(ShmErrcOf(PeerTable::IndexToPeerId(0xFFFFFFFF).status()), ShmErrc::kInvalidPeerId);
  EXPECT_EQ(ShmErrcOf(PeerTable::PeerIdToIndex(0).status()), ShmErrc::kInvalidPeerId);
  EXPECT_EQ(ShmErrcOf(PeerTable::PeerIdToIndex(256).status()), ShmErrc::kInvalidPeerId);

  alignas(64) PeerEntry entries[4] = {};
  PeerTable table(entries, 4);
  EXPECT_EQ(table.max_guests(), 4u);
  absl::StatusOr<PeerEntryView> entry = table.Entry(4);
  ASSERT_TRUE(entry.ok()) << entry.status();
  ASSERT_TRUE(entry->TryAttach().ok());
  EXPECT_EQ(entries[3].state, static_cast<uint32_t>(PeerState::kAttached));  // id 4 = index 3
  EXPECT_EQ(ShmErrcOf(table.Entry(0).status()), ShmErrc::kInvalidPeerId);
  absl::Status beyond = table.Entry(5).status();
  EXPECT_EQ(ShmErrcOf(beyond), ShmErrc::kInvalidPeerId);
  EXPECT_THAT(std::string(beyond.message()), HasSubstr("max_guests 4"));
}

TEST(PeerEntry, C_P17_EachNewOccupancyIncrementsTheEpoch) {
  EntryBox reserve;
  EXPECT_EQ(reserve.view.TryReserve().value(), 1u);
  reserve.view.ReleaseReserved();
  EXPECT_EQ(reserve.view.TryReserve().value(), 2u);

  EntryBox attach;
  EXPECT_EQ(attach.view.TryAttach().value(), 1u);
  attach.view.Reset();
  EXPECT_EQ(attach.view.TryAttach().value(), 2u);
}

TEST(PeerEntry, C_P18_EpochWrapsToZero) {
  EntryBox reserve(PeerState::kEmpty, 0xFFFFFFFF);
  EXPECT_EQ(reserve.view.TryReserve().value(), 0u);
  EXPECT_EQ(reserve.view.LoadPair(), PeerPair(StateReading::FromRaw(3), 0u));

  EntryBox attach(PeerState::kEmpty, 0xFFFFFFFF);
  EXPECT_EQ(attach.view.TryAttach().value(), 0u);
  EXPECT_EQ(attach.view.LoadPair(), PeerPair(StateReading::FromRaw(1), 0u));
}

// Shared body of the three C-P19 tests: `op` must turn (from, E) into
// (to, E), and refuse a stale epoch and every other state, unchanged.
void CheckFencedOp(PeerState from, PeerState to, absl::Status (PeerEntryView::*op)(uint32_t)) {
  constexpr uint32_t kEpoch = 7;
  {
    EntryBox box(from, kEpoch);
    box.view.UpdateHeartbeat(1234);
    PeerEntry expected = Snapshot(box.entry);
    expected.state = static_cast<uint32_t>(to);
    absl::Status ok = (box.view.*op)(kEpoch);
    ASSERT_TRUE(ok.ok()) << ok;
    EXPECT_TRUE(BytesUnchanged(expected, box.entry));  // only the state moved
  }
  {
    EntryBox box(from, kEpoch);
    const PeerEntry before = Snapshot(box.entry);
    absl::Status stale = (box.view.*op)(kEpoch - 1);
    EXPECT_EQ(ShmErrcOf(stale), ShmErrc::kStaleEpoch);
    EXPECT_EQ(stale.message(), "stale epoch: peer entry is " + Name(from) +
                                   " (epoch 7), expected " + Name(from) + " (epoch 6)");
    EXPECT_TRUE(BytesUnchanged(before, box.entry));
  }
  for (PeerState other : kAllStates) {
    if (other == from) continue;
    SCOPED_TRACE(Name(other));
    // Same epoch and a stale one: a wrong state is reported as such first.
    for (uint32_t fence : {kEpoch, kEpoch + 1}) {
      EntryBox box(other, kEpoch);
      const PeerEntry before = Snapshot(box.entry);
      absl::Status wrong = (box.view.*op)(fence);
      EXPECT_EQ(ShmErrcOf(wrong), ShmErrc::kWrongState);
      EXPECT_EQ(wrong.message(), "peer entry is " + Name(other) + " (epoch 7), expected " +
                                     Name(from) + " (epoch " + std::to_string(fence) + ")");
      EXPECT_TRUE(BytesUnchanged(before, box.entry));
    }
  }
}

TEST(PeerEntry, C_P19_ClaimFencedNeedsReservedAndTheSameEpoch) {
  CheckFencedOp(PeerState::kReserved, PeerState::kAttached, &PeerEntryView::ClaimFenced);
}

TEST(PeerEntry, C_P19_ReleaseFencedNeedsReservedAndTheSameEpoch) {
  CheckFencedOp(PeerState::kReserved, PeerState::kEmpty, &PeerEntryView::ReleaseFenced);
}

TEST(PeerEntry, C_P19_GoodbyeFencedNeedsAttachedAndTheSameEpoch) {
  CheckFencedOp(PeerState::kAttached, PeerState::kGoodbye, &PeerEntryView::GoodbyeFenced);
}

TEST(PeerEntry, C_P20_InvalidStateWordIsReportedWithItsRawValue) {
  EntryBox box;
  box.entry.state = 7;
  box.entry.epoch = 2;
  const PeerEntry before = Snapshot(box.entry);

  const StateReading state = box.view.State();
  EXPECT_FALSE(state.valid);
  EXPECT_EQ(state.raw, 7u);
  EXPECT_FALSE(state.Is(PeerState::kEmpty));  // Rust would call it Empty
  EXPECT_EQ(PeerStateName(state.state), "Invalid");
  EXPECT_EQ(box.view.LoadPair(), PeerPair(state, 2u));

  absl::StatusOr<uint32_t> attach = box.view.TryAttach();
  EXPECT_EQ(ShmErrcOf(attach.status()), ShmErrc::kInvalidState);
  EXPECT_EQ(attach.status().message(),
            "peer entry holds invalid state word 7 (epoch 2), expected Empty");
  absl::StatusOr<uint32_t> reserve = box.view.TryReserve();
  EXPECT_EQ(ShmErrcOf(reserve.status()), ShmErrc::kInvalidState);
  EXPECT_THAT(std::string(reserve.status().message()), HasSubstr("invalid state word 7"));
  absl::Status claim = box.view.TryClaimReserved();
  EXPECT_EQ(ShmErrcOf(claim), ShmErrc::kInvalidState);
  EXPECT_EQ(claim.message(), "peer entry holds invalid state word 7 (epoch 2), expected Reserved");
  box.view.ReleaseReserved();
  for (auto op : {&PeerEntryView::ClaimFenced, &PeerEntryView::ReleaseFenced,
                  &PeerEntryView::GoodbyeFenced}) {
    absl::Status fenced = (box.view.*op)(2);
    EXPECT_EQ(ShmErrcOf(fenced), ShmErrc::kInvalidState);
    EXPECT_THAT(std::string(fenced.message()), HasSubstr("invalid state word 7 (epoch 2)"));
  }
  EXPECT_TRUE(BytesUnchanged(before, box.entry));

  // The largest raw value too, and the first invalid one.
  box.entry.state = 0xFFFFFFFF;
  EXPECT_EQ(box.view.State(),
            (StateReading{false, static_cast<PeerState>(0xFFFFFFFF), 0xFFFFFFFF}));
  box.entry.state = 4;
  EXPECT_FALSE(box.view.State().valid);
}

TEST(PeerTable, C_P21_FreeEntrySearchTakesTheLowestEmptyEntry) {
  alignas(64) PeerEntry entries[6];
  for (PeerEntry& entry : entries) PeerEntryView(&entry).Init(kRingOffset);
  // Only the first 5 entries belong to the table; the 6th must never be taken.
  PeerTable table(entries, 5);

  absl::StatusOr<Occupancy> taken = table.AttachFirstFree();
  ASSERT_TRUE(taken.ok()) << taken.status();
  EXPECT_EQ(taken->peer_id, 1u);
  EXPECT_EQ(taken->epoch, 1u);

  // Occupied entries and a corrupt one are skipped.
  entries[1].state = static_cast<uint32_t>(PeerState::kGoodbye);
  entries[2].state = 9;
  entries[3].epoch = 40;
  taken = table.ReserveFirstFree();
  ASSERT_TRUE(taken.ok()) << taken.status();
  EXPECT_EQ(taken->peer_id, 4u);
  EXPECT_EQ(taken->epoch, 41u);
  EXPECT_TRUE(PeerEntryView(&entries[3]).State().Is(PeerState::kReserved));

  // A lower entry freed again is preferred to a higher one.
  PeerEntryView(&entries[0]).Reset();
  taken = table.ReserveFirstFree();
  ASSERT_TRUE(taken.ok()) << taken.status();
  EXPECT_EQ(taken->peer_id, 1u);
  EXPECT_EQ(taken->epoch, 2u);

  taken = table.AttachFirstFree();
  ASSERT_TRUE(taken.ok()) << taken.status();
  EXPECT_EQ(taken->peer_id, 5u);

  const PeerEntry before_last = Snapshot(entries[5]);
  for (auto search : {&PeerTable::AttachFirstFree, &PeerTable::ReserveFirstFree}) {
    absl::StatusOr<Occupancy> none = (table.*search)();
    EXPECT_EQ(ShmErrcOf(none.status()), ShmErrc::kNoFreeEntry);
  }
  EXPECT_TRUE(BytesUnchanged(before_last, entries[5]));
}

TEST(PeerEntry, D1_LoadPairReadsStateAndEpochAsOneWord) {
  EntryBox box;
  const uint8_t bytes[8] = {3, 0, 0, 0, 0x78, 0x56, 0x34, 0x12};
  std::memcpy(&box.entry, bytes, sizeof(bytes));
  EXPECT_EQ(box.view.LoadPair(), PeerPair(StateReading::FromRaw(3), 0x12345678u));
  EXPECT_EQ(box.view.State(), StateReading::FromRaw(3));
  EXPECT_EQ(box.view.Epoch(), 0x12345678u);
}

TEST(PeerEntry, D1_LateEpochBumpOfARustPeerIsAdoptedOnlyForTheSameOccupancy) {
  auto pair = [](uint32_t state, uint32_t epoch) {
    return PeerPair(StateReading::FromRaw(state), epoch);
  };
  EXPECT_TRUE(IsLateEpochBump(pair(1, 4), pair(1, 5)));
  EXPECT_TRUE(IsLateEpochBump(pair(3, 4), pair(3, 5)));
  EXPECT_TRUE(IsLateEpochBump(pair(2, 4), pair(2, 5)));
  EXPECT_TRUE(IsLateEpochBump(pair(1, 0xFFFFFFFF), pair(1, 0)));
  EXPECT_FALSE(IsLateEpochBump(pair(1, 4), pair(1, 4)));  // nothing to adopt
  EXPECT_FALSE(IsLateEpochBump(pair(1, 4), pair(1, 6)));  // recycled in between
  EXPECT_FALSE(IsLateEpochBump(pair(3, 4), pair(1, 5)));  // state moved on
  EXPECT_FALSE(IsLateEpochBump(pair(0, 4), pair(0, 5)));  // Empty names no occupancy
  EXPECT_FALSE(IsLateEpochBump(pair(7, 4), pair(7, 5)));  // corrupt
}

// D-1: a CAS lost while the entry stays Empty is retried with the epoch it
// observed, not reported. A second thread keeps moving the epoch underneath
// (as other processes taking the entry and giving it back between our load
// and our CAS would), so takes lose CASes now and then. It moves the epoch
// at most kBurst times per completed take, far below the retry bound
// however the threads are scheduled, so every take must succeed; a take
// that gave up on its first lost CAS fails.
TEST(PeerEntry, D1_TakeRetriesWhileTheEntryStaysEmpty) {
  constexpr int kBumps = 2000000;
  constexpr int kBurst = 8;
  EntryBox box;
  std::atomic<int> bumps{0};
  std::atomic<int> takes{0};
  std::atomic<bool> stop{false};
  std::thread bumper([&] {
    int seen_takes = 0;
    int burst = 0;
    for (int i = 0; i < kBumps && !stop.load(std::memory_order_acquire);) {
      const int now_takes = takes.load(std::memory_order_acquire);
      if (now_takes != seen_takes) {
        seen_takes = now_takes;
        burst = 0;
      }
      if (burst == kBurst) {
        std::this_thread::yield();
        continue;
      }
      std::atomic_ref<uint32_t>(box.entry.epoch).fetch_add(1, std::memory_order_acq_rel);
      ++burst;
      bumps.store(++i, std::memory_order_release);
    }
  });
  // Take and give back for as long as the bumper runs. On a busy machine
  // the two threads may share a core and crawl, hence the time cap.
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
  absl::Status failure;
  while (bumps.load(std::memory_order_acquire) < kBumps &&
         std::chrono::steady_clock::now() < give_up) {
    absl::StatusOr<uint32_t> epoch = box.view.TryAttach();
    if (!epoch.ok()) {
      failure = epoch.status();
      break;
    }
    box.view.Reset();
    takes.fetch_add(1, std::memory_order_acq_rel);
  }
  stop.store(true, std::memory_order_release);
  bumper.join();
  EXPECT_TRUE(failure.ok()) << "take " << takes.load() << ": " << failure;
  EXPECT_GT(takes.load(), 0);
}

// D-8 under real contention: every racer scans the same table at once, so
// racers that run at the same moment lose CASes; each must still end up with
// an entry of its own because there are as many entries as racers. A search
// that gave up after a lost CAS (Rust, A-23) fails this.
TEST(PeerTable, D8_SearchKeepsScanningAfterLosingARace) {
  constexpr int kThreads = 4;
  constexpr int kRounds = 2000;
  alignas(64) PeerEntry entries[kThreads];
  for (PeerEntry& entry : entries) PeerEntryView(&entry).Init(kRingOffset);
  PeerTable table(entries, kThreads);

  // Round r starts when `gate` reaches r; a racer then counts itself into
  // `arrived` and waits for the others, so all of them scan together.
  std::atomic<int> gate{0};
  std::atomic<int> arrived{0};
  std::atomic<int> finished{0};
  std::array<absl::StatusOr<Occupancy>, kThreads> results;
  std::vector<std::thread> racers;
  for (int t = 0; t < kThreads; ++t) {
    racers.emplace_back([&, t] {
      for (int round = 1; round <= kRounds; ++round) {
        while (gate.load(std::memory_order_acquire) < round) std::this_thread::yield();
        arrived.fetch_add(1, std::memory_order_acq_rel);
        while (arrived.load(std::memory_order_acquire) < round * kThreads) {
          std::this_thread::yield();
        }
        results[t] = (t + round) % 2 == 0 ? table.AttachFirstFree() : table.ReserveFirstFree();
        finished.fetch_add(1, std::memory_order_acq_rel);
      }
    });
  }

  std::string failure;
  for (int round = 1; round <= kRounds && failure.empty(); ++round) {
    gate.store(round, std::memory_order_release);
    while (finished.load(std::memory_order_acquire) < round * kThreads) {
      std::this_thread::yield();
    }
    std::set<uint32_t> ids;
    for (const absl::StatusOr<Occupancy>& result : results) {
      if (!result.ok()) {
        failure = absl::StrCat("round ", round, ": ", result.status().ToString());
      } else if (result->epoch != static_cast<uint32_t>(round)) {
        failure = absl::StrCat("round ", round, ": epoch ", result->epoch);
      } else {
        ids.insert(result->peer_id);
      }
    }
    if (failure.empty() && ids.size() != kThreads) {
      failure = absl::StrCat("round ", round, ": only ", ids.size(), " distinct entries");
    }
    for (PeerEntry& entry : entries) PeerEntryView(&entry).Reset();
  }
  // After a failure the racers run through the remaining rounds at once:
  // the table stays full, so each search ends quickly with kNoFreeEntry.
  gate.store(kRounds, std::memory_order_release);
  for (std::thread& racer : racers) racer.join();
  EXPECT_EQ(failure, "");
}

}  // namespace
}  // namespace shmhub::shm
