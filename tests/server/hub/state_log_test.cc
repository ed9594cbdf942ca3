// StateLog on real files: what it restores, what it refuses to restore from
// a torn or damaged file, and that it stays bounded however long it runs.
#include "server/hub/state_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"

namespace shmhub::server {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

constexpr uint32_t kCapacity = 8;
constexpr uint32_t kMaxGuests = 4;

v1::PeerEvent Event(uint64_t sequence) {
  v1::PeerEvent event;
  event.set_sequence(sequence);
  event.set_kind(v1::EVENT_KIND_RESERVED);
  event.set_peer_id(1);
  event.set_epoch(static_cast<uint32_t>(sequence));
  return event;
}

state::v1::Slot Slot(uint32_t peer_id, uint32_t epoch, const std::string& request_id = "") {
  state::v1::Slot slot;
  slot.set_peer_id(peer_id);
  slot.set_state(v1::PEER_STATE_RESERVED);
  slot.set_epoch(epoch);
  slot.set_epoch_floor(epoch);
  if (!request_id.empty()) slot.mutable_reservation()->set_request_id(request_id);
  return slot;
}

uint64_t FileSize(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

class StateLogTest : public ::testing::Test {
 protected:
  std::unique_ptr<StateLog> Open(RestoredState* restored) {
    absl::StatusOr<std::unique_ptr<StateLog>> log =
        StateLog::Open(path_, kCapacity, kMaxGuests, "fresh-id", restored);
    EXPECT_TRUE(log.ok()) << log.status();
    return log.ok() ? *std::move(log) : nullptr;
  }

  shmhub::testing::TempDir dir_;
  const std::string path_ = dir_.File("segment.state");
};

TEST_F(StateLogTest, AMissingLogRestoresNothingAndStartsTheFallbackInstanceMode0600) {
  RestoredState restored;
  std::unique_ptr<StateLog> log = Open(&restored);
  ASSERT_NE(log, nullptr);
  EXPECT_TRUE(restored.hub_instance_id.empty());
  EXPECT_EQ(restored.last_sequence, 0u);
  EXPECT_THAT(restored.events, IsEmpty());
  EXPECT_THAT(restored.problems, IsEmpty());
  EXPECT_EQ(log->hub_instance_id(), "fresh-id");
  struct stat st {};
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
}

TEST_F(StateLogTest, ASuccessorRestoresTheInstanceTheEventTailAndTheLatestSlots) {
  {
    RestoredState first;
    std::unique_ptr<StateLog> log = Open(&first);
    for (uint64_t s = 1; s <= 3; ++s) ASSERT_TRUE(log->AppendEvent(Event(s)).ok());
    ASSERT_TRUE(log->AppendSlot(Slot(2, 5, "job-1")).ok());
    ASSERT_TRUE(log->AppendSlot(Slot(2, 6, "job-2")).ok());
    ASSERT_TRUE(log->AppendSlot(Slot(3, 1)).ok());
  }
  RestoredState restored;
  std::unique_ptr<StateLog> log = Open(&restored);
  EXPECT_EQ(restored.hub_instance_id, "fresh-id");
  EXPECT_EQ(log->hub_instance_id(), "fresh-id");
  EXPECT_EQ(restored.last_sequence, 3u);
  ASSERT_THAT(restored.events, SizeIs(3));
  EXPECT_EQ(restored.events.front().sequence(), 1u);
  ASSERT_EQ(restored.slots.size(), 2u);
  EXPECT_EQ(restored.slots.at(2).epoch(), 6u);
  EXPECT_EQ(restored.slots.at(2).reservation().request_id(), "job-2");
  EXPECT_THAT(restored.problems, IsEmpty());
}

TEST_F(StateLogTest, OnlyTheNewestJournalCapacityEventsAreKeptAndTheSequenceContinues) {
  {
    RestoredState first;
    std::unique_ptr<StateLog> log = Open(&first);
    for (uint64_t s = 1; s <= 20; ++s) ASSERT_TRUE(log->AppendEvent(Event(s)).ok());
  }
  RestoredState restored;
  Open(&restored);
  EXPECT_EQ(restored.last_sequence, 20u);
  ASSERT_THAT(restored.events, SizeIs(kCapacity));
  EXPECT_EQ(restored.events.front().sequence(), 20u - kCapacity + 1);
  // And again, from the compacted file: nothing lost, nothing repeated.
  RestoredState again;
  Open(&again);
  EXPECT_EQ(again.last_sequence, 20u);
  EXPECT_THAT(again.events, SizeIs(kCapacity));
}

TEST_F(StateLogTest, ATornLastRecordIsDroppedAndEverythingBeforeItRestored) {
  {
    RestoredState first;
    std::unique_ptr<StateLog> log = Open(&first);
    for (uint64_t s = 1; s <= 4; ++s) ASSERT_TRUE(log->AppendEvent(Event(s)).ok());
  }
  ASSERT_EQ(::truncate(path_.c_str(), static_cast<off_t>(FileSize(path_) - 3)), 0);
  RestoredState restored;
  Open(&restored);
  EXPECT_EQ(restored.hub_instance_id, "fresh-id");
  EXPECT_EQ(restored.last_sequence, 3u);
  ASSERT_THAT(restored.problems, SizeIs(1));
  EXPECT_THAT(restored.problems[0], HasSubstr("torn last write"));
}

TEST_F(StateLogTest, AFlippedByteStopsTheRestoreAtThatRecord) {
  {
    RestoredState first;
    std::unique_ptr<StateLog> log = Open(&first);
    for (uint64_t s = 1; s <= 4; ++s) ASSERT_TRUE(log->AppendEvent(Event(s)).ok());
  }
  const uint64_t size = FileSize(path_);
  const int fd = ::open(path_.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  char byte = 0;
  ASSERT_EQ(::pread(fd, &byte, 1, static_cast<off_t>(size - 2)), 1);
  byte = static_cast<char>(byte ^ 0x40);
  ASSERT_EQ(::pwrite(fd, &byte, 1, static_cast<off_t>(size - 2)), 1);
  ::close(fd);
  RestoredState restored;
  Open(&restored);
  EXPECT_EQ(restored.last_sequence, 3u);
  ASSERT_THAT(restored.problems, SizeIs(1));
  EXPECT_THAT(restored.problems[0], HasSubstr("checksum"));
}

TEST_F(StateLogTest, AFileThatIsNotALogRestoresNothingAndSaysSo) {
  const int fd = ::open(path_.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  ASSERT_GE(fd, 0);
  const std::string junk(4096, 'x');
  ASSERT_EQ(::write(fd, junk.data(), junk.size()), static_cast<ssize_t>(junk.size()));
  ::close(fd);
  RestoredState restored;
  std::unique_ptr<StateLog> log = Open(&restored);
  ASSERT_NE(log, nullptr);
  EXPECT_TRUE(restored.hub_instance_id.empty());
  EXPECT_THAT(restored.problems, SizeIs(1));
  EXPECT_EQ(log->hub_instance_id(), "fresh-id");
}

TEST_F(StateLogTest, AGapInTheEventSequenceEndsTheTailBeforeIt) {
  {
    RestoredState first;
    std::unique_ptr<StateLog> log = Open(&first);
    ASSERT_TRUE(log->AppendEvent(Event(1)).ok());
    ASSERT_TRUE(log->AppendEvent(Event(2)).ok());
    ASSERT_TRUE(log->AppendEvent(Event(5)).ok());
  }
  RestoredState restored;
  Open(&restored);
  EXPECT_EQ(restored.last_sequence, 2u);
  ASSERT_THAT(restored.problems, SizeIs(1));
  EXPECT_THAT(restored.problems[0], HasSubstr("sequence 5 where 3 was due"));
}

TEST_F(StateLogTest, AnUnchangedSlotIsNotWrittenAgainAndALongRunStaysBounded) {
  RestoredState first;
  std::unique_ptr<StateLog> log = Open(&first);
  ASSERT_TRUE(log->AppendSlot(Slot(1, 1)).ok());
  const uint64_t after_one = FileSize(path_);
  ASSERT_TRUE(log->AppendSlot(Slot(1, 1)).ok());
  EXPECT_EQ(FileSize(path_), after_one);
  for (uint64_t s = 1; s <= 20000; ++s) {
    ASSERT_TRUE(log->AppendEvent(Event(s)).ok());
    ASSERT_TRUE(log->AppendSlot(Slot(1 + s % kMaxGuests, static_cast<uint32_t>(s))).ok());
  }
  EXPECT_LT(FileSize(path_), 1u << 20) << "compaction keeps the log bounded";
  log.reset();
  RestoredState restored;
  Open(&restored);
  EXPECT_EQ(restored.last_sequence, 20000u);
  EXPECT_EQ(restored.slots.size(), kMaxGuests);
  EXPECT_THAT(restored.problems, IsEmpty());
}

TEST_F(StateLogTest, SlotsOutsideTheTableAreNotRestored) {
  {
    RestoredState first;
    std::unique_ptr<StateLog> log = Open(&first);
    ASSERT_TRUE(log->AppendSlot(Slot(0, 1)).ok());
    ASSERT_TRUE(log->AppendSlot(Slot(kMaxGuests + 1, 1)).ok());
    ASSERT_TRUE(log->AppendSlot(Slot(kMaxGuests, 1)).ok());
  }
  RestoredState restored;
  Open(&restored);
  EXPECT_THAT(restored.slots, ElementsAre(::testing::Key(kMaxGuests)));
}

}  // namespace
}  // namespace shmhub::server
