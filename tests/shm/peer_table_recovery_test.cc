// The fenced entry transitions the recovery procedure (§14) is built on:
// CheckPair, BeginRecovery (step 1) and FinishRecovery (step 6), each
// outcome on a single 64-aligned entry. "Changes nothing" compares all 64
// bytes of the entry.
#include <cstdint>
#include <cstring>
#include <string>

#include "gtest/gtest.h"
#include "shm/format.h"
#include "shm/peer_table.h"
#include "shm/shm_error.h"

namespace shmhub::shm {
namespace {

constexpr uint64_t kRingOffset = 0x4C0;
constexpr uint64_t kHeartbeat = 0x1122334455667788;
constexpr uint32_t kEpoch = 7;
constexpr uint32_t kInvalidWord = 7;

// An entry laid out like in a segment, with every field set, so a test can
// tell which bytes an operation touched.
struct EntryBox {
  EntryBox(uint32_t state_word, uint32_t epoch) {
    view.Init(kRingOffset);
    std::memset(entry.reserved, 0x5C, sizeof(entry.reserved));  // a guest's junk
    entry.state = state_word;
    entry.epoch = epoch;
    entry.last_heartbeat = kHeartbeat;
  }

  alignas(64) PeerEntry entry;
  PeerEntryView view{&entry};
};

uint32_t Word(PeerState state) { return static_cast<uint32_t>(state); }

PeerEntry Copy(const PeerEntry& entry) {
  PeerEntry copy;
  std::memcpy(&copy, &entry, sizeof(copy));
  return copy;
}

::testing::AssertionResult SameBytes(const PeerEntry& expected, const PeerEntry& actual) {
  const auto* e = reinterpret_cast<const uint8_t*>(&expected);
  const auto* a = reinterpret_cast<const uint8_t*>(&actual);
  for (size_t i = 0; i < sizeof(PeerEntry); ++i) {
    if (e[i] != a[i]) {
      return ::testing::AssertionFailure()
             << "entry byte " << i << " is " << int{a[i]} << ", expected " << int{e[i]};
    }
  }
  return ::testing::AssertionSuccess();
}

// ---- CheckPair ----------------------------------------------------------------

TEST(PeerEntryRecovery, CheckPairAcceptsOnlyTheExactPairAndNeverWrites) {
  EntryBox box(Word(PeerState::kGoodbye), kEpoch);
  const PeerEntry before = Copy(box.entry);

  EXPECT_TRUE(box.view.CheckPair(PeerState::kGoodbye, kEpoch).ok());

  absl::Status other_state = box.view.CheckPair(PeerState::kAttached, kEpoch);
  EXPECT_EQ(ShmErrcOf(other_state), ShmErrc::kWrongState) << other_state;
  EXPECT_EQ(std::string(other_state.message()),
            "peer entry is Goodbye (epoch 7), expected Attached (epoch 7)");

  absl::Status other_epoch = box.view.CheckPair(PeerState::kGoodbye, kEpoch + 1);
  EXPECT_EQ(ShmErrcOf(other_epoch), ShmErrc::kStaleEpoch) << other_epoch;

  absl::Status neither = box.view.CheckPair(PeerState::kEmpty, kEpoch + 1);
  EXPECT_EQ(ShmErrcOf(neither), ShmErrc::kWrongState) << neither;

  EXPECT_TRUE(SameBytes(before, box.entry));
}

TEST(PeerEntryRecovery, CheckPairReportsAnInvalidStateWordWithItsRawValue) {
  EntryBox box(kInvalidWord, kEpoch);
  const PeerEntry before = Copy(box.entry);
  absl::Status checked = box.view.CheckPair(PeerState::kGoodbye, kEpoch);
  EXPECT_EQ(ShmErrcOf(checked), ShmErrc::kInvalidState) << checked;
  EXPECT_EQ(std::string(checked.message()),
            "peer entry holds invalid state word 7 (epoch 7), expected Goodbye (epoch 7)");
  EXPECT_TRUE(SameBytes(before, box.entry));
}

// ---- BeginRecovery (step 1) ------------------------------------------------------

TEST(PeerEntryRecovery, BeginRecoveryFencesAnAttachedEntryIntoGoodbye) {
  EntryBox box(Word(PeerState::kAttached), kEpoch);
  PeerEntry expected = Copy(box.entry);
  expected.state = Word(PeerState::kGoodbye);  // the state word and nothing else
  absl::Status begun = box.view.BeginRecovery(kEpoch);
  ASSERT_TRUE(begun.ok()) << begun;
  EXPECT_TRUE(SameBytes(expected, box.entry));
}

TEST(PeerEntryRecovery, BeginRecoveryAcceptsAGoodbyeEntryAsItIs) {
  // A guest that left gracefully is recovered the same way (§14, last line).
  EntryBox box(Word(PeerState::kGoodbye), kEpoch);
  const PeerEntry before = Copy(box.entry);
  absl::Status begun = box.view.BeginRecovery(kEpoch);
  ASSERT_TRUE(begun.ok()) << begun;
  EXPECT_TRUE(SameBytes(before, box.entry));
}

TEST(PeerEntryRecovery, BeginRecoveryFencesAnInvalidStateWordIntoGoodbye) {
  // §13: an invalid state word is a corrupt entry to recover.
  EntryBox box(kInvalidWord, kEpoch);
  PeerEntry expected = Copy(box.entry);
  expected.state = Word(PeerState::kGoodbye);
  absl::Status begun = box.view.BeginRecovery(kEpoch);
  ASSERT_TRUE(begun.ok()) << begun;
  EXPECT_TRUE(SameBytes(expected, box.entry));
}

TEST(PeerEntryRecovery, BeginRecoveryRefusesEmptyAndReservedWithWrongState) {
  for (PeerState state : {PeerState::kEmpty, PeerState::kReserved}) {
    for (uint32_t epoch : {kEpoch, kEpoch + 1}) {
      SCOPED_TRACE(std::string(PeerStateName(state)) + " epoch " + std::to_string(epoch));
      EntryBox box(Word(state), epoch);
      const PeerEntry before = Copy(box.entry);
      absl::Status begun = box.view.BeginRecovery(kEpoch);
      EXPECT_EQ(ShmErrcOf(begun), ShmErrc::kWrongState) << begun;
      EXPECT_TRUE(SameBytes(before, box.entry));
    }
  }
  EntryBox reserved(Word(PeerState::kReserved), kEpoch);
  EXPECT_EQ(std::string(reserved.view.BeginRecovery(kEpoch).message()),
            "peer entry is Reserved (epoch 7), expected Attached, Goodbye or an invalid state "
            "word (epoch 7) to recover");
}

TEST(PeerEntryRecovery, BeginRecoveryRefusesAnyOtherEpochWithStaleEpoch) {
  // Every recoverable state, so the epoch check cannot hide behind a state
  // check: a Goodbye or invalid entry of a newer occupancy is just as stale.
  for (uint32_t word : {Word(PeerState::kAttached), Word(PeerState::kGoodbye), kInvalidWord}) {
    SCOPED_TRACE("state word " + std::to_string(word));
    EntryBox box(word, kEpoch + 1);
    const PeerEntry before = Copy(box.entry);
    absl::Status begun = box.view.BeginRecovery(kEpoch);
    EXPECT_EQ(ShmErrcOf(begun), ShmErrc::kStaleEpoch) << begun;
    EXPECT_TRUE(SameBytes(before, box.entry));
  }
  EntryBox goodbye(Word(PeerState::kGoodbye), kEpoch + 1);
  EXPECT_EQ(std::string(goodbye.view.BeginRecovery(kEpoch).message()),
            "stale epoch: peer entry is Goodbye (epoch 8), recovery was asked for epoch 7");
}

// ---- FinishRecovery (step 6) -----------------------------------------------------

TEST(PeerEntryRecovery, FinishRecoveryEmptiesTheEntryZeroesHeartbeatAndKeepsEpoch) {
  EntryBox box(Word(PeerState::kGoodbye), kEpoch);
  PeerEntry expected = Copy(box.entry);
  expected.state = Word(PeerState::kEmpty);
  expected.last_heartbeat = 0;
  absl::Status finished = box.view.FinishRecovery(kEpoch);
  ASSERT_TRUE(finished.ok()) << finished;
  // Epoch, ring_offset and the reserved bytes stay as they were.
  EXPECT_TRUE(SameBytes(expected, box.entry));
}

TEST(PeerEntryRecovery, FinishRecoveryOnAnyOtherPairFailsAndChangesNothing) {
  struct Case {
    uint32_t state_word;
    uint32_t epoch;
    ShmErrc errc;
  };
  const Case cases[] = {
      {Word(PeerState::kGoodbye), kEpoch + 1, ShmErrc::kStaleEpoch},
      {Word(PeerState::kAttached), kEpoch, ShmErrc::kWrongState},
      {Word(PeerState::kEmpty), kEpoch, ShmErrc::kWrongState},
      {Word(PeerState::kReserved), kEpoch, ShmErrc::kWrongState},
      {kInvalidWord, kEpoch, ShmErrc::kInvalidState},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE("state word " + std::to_string(c.state_word) + " epoch " +
                 std::to_string(c.epoch));
    EntryBox box(c.state_word, c.epoch);
    const PeerEntry before = Copy(box.entry);
    absl::Status finished = box.view.FinishRecovery(kEpoch);
    EXPECT_EQ(ShmErrcOf(finished), c.errc) << finished;
    // In particular the heartbeat: it may belong to whoever holds the entry.
    EXPECT_TRUE(SameBytes(before, box.entry));
  }
}

}  // namespace
}  // namespace shmhub::shm
