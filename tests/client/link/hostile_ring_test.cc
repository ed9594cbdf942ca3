// A hostile peer writes corrupt ring entries, slot references, mapping
// references and ring indexes; the receiving link must report DATA_LOSS for
// each, stay broken, and never touch memory it should not (this binary also
// runs under ASan+UBSan). Both directions: a hostile host against a guest
// link, a hostile guest against a host link.
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/link/ring_link.h"
#include "gtest/gtest.h"
#include "shm/bip_buffer.h"
#include "shm/format.h"
#include "shm/frame.h"
#include "shm/mapping_control.h"
#include "shm/slot_ref.h"
#include "shm/var_slot_pool.h"
#include "tests/client/link/test_util.h"

namespace shmhub::client {
namespace {

using link_test::Bytes;
using link_test::Copy;
using link_test::Pattern;

absl::Time Soon() { return absl::Now() + absl::Seconds(10); }

// The peer that writes into the victim's receive ring, with the shm/
// primitives and raw stores: what a buggy or malicious process can do.
class HostileWriter {
 public:
  HostileWriter(shm::Segment& segment, LinkSide victim, uint32_t peer_id, int mapping_fd)
      : segment_(segment),
        header_offset_(victim == LinkSide::kGuest
                           ? segment.layout().HostToGuestHeader(peer_id - 1)
                           : segment.layout().GuestToHostHeader(peer_id - 1)),
        ring_(victim == LinkSide::kGuest ? segment.HostToGuestRing(peer_id - 1)
                                         : segment.GuestToHostRing(peer_id - 1)),
        pool_(segment.pool()),
        owner_(victim == LinkSide::kGuest ? shm::kHostPeerId : peer_id),
        mapping_fd_(mapping_fd) {}

  uint32_t owner() const { return owner_; }
  shm::VarSlotPool& pool() { return pool_; }

  // Commits `bytes` as they are.
  void Raw(const std::vector<uint8_t>& bytes) {
    absl::StatusOr<absl::Span<uint8_t>> grant = ring_.TryGrant(static_cast<uint32_t>(bytes.size()));
    ASSERT_TRUE(grant.ok()) << grant.status();
    std::memcpy(grant->data(), bytes.data(), bytes.size());
    ASSERT_TRUE(ring_.Commit(static_cast<uint32_t>(bytes.size())).ok());
  }

  // An entry header claiming `total_len`, followed by zeros up to `commit`.
  void Entry(uint32_t total_len, uint8_t flags, uint16_t inline_len, uint32_t commit) {
    std::vector<uint8_t> bytes(commit, 0);
    shm::FrameHeader header{total_len, flags, 0, inline_len};
    std::memcpy(bytes.data(), &header, std::min<size_t>(commit, sizeof(header)));
    Raw(bytes);
  }

  void SlotRefEntry(const shm::SlotRef& ref) {
    std::vector<uint8_t> bytes(shm::kSlotRefFrameSize);
    ASSERT_TRUE(shm::WriteSlotRefFrame(absl::MakeSpan(bytes), ref).ok());
    Raw(bytes);
  }

  void MmapRefEntry(const shm::MmapRef& ref) {
    std::vector<uint8_t> bytes(shm::kMmapRefFrameSize);
    ASSERT_TRUE(shm::WriteMmapRefFrame(absl::MakeSpan(bytes), ref).ok());
    Raw(bytes);
  }

  void InlineEntry(const std::vector<uint8_t>& payload) {
    std::vector<uint8_t> bytes(shm::InlineFrameSize(static_cast<uint32_t>(payload.size())));
    ASSERT_TRUE(shm::WriteInlineFrame(absl::MakeSpan(bytes), Bytes(payload)).ok());
    Raw(bytes);
  }

  // A slot allocated for `owner` holding `payload` behind its prefix.
  shm::SlotRef Slot(uint32_t size, uint32_t owner, const std::vector<uint8_t>& payload) {
    absl::StatusOr<shm::SlotRef> ref = pool_.Allocate(size, owner);
    EXPECT_TRUE(ref.ok()) << ref.status();
    absl::StatusOr<absl::Span<uint8_t>> slot = pool_.SlotData(*ref);
    EXPECT_TRUE(slot.ok());
    EXPECT_TRUE(shm::WriteSlotPayload(*slot, Bytes(payload)).ok());
    return *ref;
  }

  // Announces a memfd region of `length` bytes as (map_id, 0).
  void Announce(uint32_t map_id, uint64_t length) {
    shm::UniqueFd fd(::memfd_create("hostile-region", MFD_CLOEXEC));
    ASSERT_TRUE(fd.valid());
    ASSERT_EQ(::ftruncate(fd.get(), static_cast<off_t>(length)), 0);
    ASSERT_TRUE(shm::SendMappingControl(mapping_fd_, {map_id, 0, length}, fd.get()).ok());
  }

  // Raw stores into the ring header, as a hostile process can make.
  void StoreWrite(uint32_t v) { Store(offsetof(shm::RingHeader, write), v); }
  void StoreWatermark(uint32_t v) { Store(offsetof(shm::RingHeader, watermark), v); }
  void StoreRead(uint32_t v) { Store(offsetof(shm::RingHeader, read), v); }

 private:
  void Store(size_t field, uint32_t v) {
    auto* word = reinterpret_cast<uint32_t*>(segment_.base() + header_offset_ + field);
    // Release: as the ring's own producer or consumer stores its words.
    std::atomic_ref<uint32_t>(*word).store(v, std::memory_order_release);
  }

  shm::Segment& segment_;
  const uint64_t header_offset_;
  shm::BipBuffer ring_;
  shm::VarSlotPool pool_;
  const uint32_t owner_;
  const int mapping_fd_;
};

struct HostileCase {
  const char* name;
  std::function<void(HostileWriter&)> write;
  bool mapping_control = true;
};

const std::vector<HostileCase>& Cases() {
  static const auto* const kCases = new std::vector<HostileCase>{
      {"TotalLenBelowTheHeader", [](HostileWriter& w) { w.Entry(4, 0, 0, 8); }},
      {"TotalLenNotAMultipleOf4", [](HostileWriter& w) { w.Entry(10, 0, 0, 12); }},
      {"TotalLenBeyondTheCommittedBytes", [](HostileWriter& w) { w.Entry(64, 0, 0, 16); }},
      {"BothReferenceFlags", [](HostileWriter& w) { w.Entry(32, 3, 0, 32); }},
      {"SlotRefShorterThan20Bytes", [](HostileWriter& w) { w.Entry(16, 1, 0, 16); }},
      {"MmapRefShorterThan32Bytes", [](HostileWriter& w) { w.Entry(24, 2, 0, 24); }},
      {"InlineLenBeyondTheEntry", [](HostileWriter& w) { w.Entry(12, 0, 100, 12); }},
      {"FewerBytesThanAnEntryHeader", [](HostileWriter& w) { w.Raw({8, 0, 0, 0}); }},
      {"SlotClassOutOfRange", [](HostileWriter& w) { w.SlotRefEntry({9, 0, 0, 1}); }},
      {"SlotIndexOutOfRange", [](HostileWriter& w) { w.SlotRefEntry({0, 0, 100, 1}); }},
      {"SlotExtentNotZero",
       [](HostileWriter& w) {
         shm::SlotRef ref = w.Slot(40, w.owner(), Pattern(1, 20));
         ref.extent_idx = 1;
         w.SlotRefEntry(ref);
       }},
      {"SlotNeverAllocated", [](HostileWriter& w) { w.SlotRefEntry({0, 0, 3, 0}); }},
      {"SlotGenerationStale",
       [](HostileWriter& w) {
         shm::SlotRef ref = w.Slot(40, w.owner(), Pattern(1, 20));
         ref.generation += 1;
         w.SlotRefEntry(ref);
       }},
      {"SlotAlreadyFreedBySender",
       [](HostileWriter& w) {
         const shm::SlotRef ref = w.Slot(40, w.owner(), Pattern(1, 20));
         ASSERT_TRUE(w.pool().Free(ref).ok());
         w.SlotRefEntry(ref);
       }},
      {"SlotOwnedByAnotherPeer",
       [](HostileWriter& w) { w.SlotRefEntry(w.Slot(40, 2, Pattern(1, 20))); }},
      {"SlotLengthPrefixBeyondTheSlot",
       [](HostileWriter& w) {
         const shm::SlotRef ref = w.Slot(40, w.owner(), Pattern(1, 20));
         absl::Span<uint8_t> slot = *w.pool().SlotData(ref);
         const uint32_t len = static_cast<uint32_t>(slot.size()) - 3;  // one past the room
         std::memcpy(slot.data(), &len, sizeof(len));
         w.SlotRefEntry(ref);
       }},
      {"MmapRefWithoutAMappingControlSocket",
       [](HostileWriter& w) { w.MmapRefEntry({0, 0, 0, 16}); }, /*mapping_control=*/false},
      {"MmapRefToAKeyNeverAnnounced", [](HostileWriter& w) { w.MmapRefEntry({77, 0, 0, 16}); }},
      {"MmapRefBeyondTheMapping",
       [](HostileWriter& w) {
         w.Announce(0, 4096);
         w.MmapRefEntry({0, 0, 4000, 200});
       }},
      {"MmapRefWhoseEndOverflows",
       [](HostileWriter& w) {
         w.Announce(0, 4096);
         w.MmapRefEntry({0, 0, UINT64_MAX - 10, 100});
       }},
      {"WriteIndexBeyondTheCapacity", [](HostileWriter& w) { w.StoreWrite(4096 + 4); }},
      {"ReadIndexAheadOfWriteUnwrapped",
       [](HostileWriter& w) {
         w.InlineEntry(Pattern(1, 8));
         w.StoreRead(20);
       }},
      {"WrappedWithReadBeyondTheWatermark",
       [](HostileWriter& w) {
         w.StoreWatermark(64);
         w.StoreRead(128);
         w.StoreWrite(8);
       }},
  };
  return *kCases;
}

class HostileRingTest
    : public link_test::LinkPairFixture,
      public ::testing::WithParamInterface<std::tuple<size_t, LinkSide>> {
 protected:
  const HostileCase& Case() const { return Cases()[std::get<0>(GetParam())]; }
  LinkSide Victim() const { return std::get<1>(GetParam()); }
  RingLink& VictimLink() { return Victim() == LinkSide::kGuest ? *guest_ : *host_; }
  HostileWriter Writer() {
    // The hostile side sends announcements from its own end.
    const int fd = Victim() == LinkSide::kGuest ? host_mapping_.get() : guest_mapping_.get();
    return HostileWriter(*segment_, Victim(), peer_id_, fd);
  }
};

TEST_P(HostileRingTest, ReceiverReportsDataLossAndStaysBroken) {
  link_test::PairOptions options;
  options.mapping_control = Case().mapping_control;
  Build(options);
  HostileWriter writer = Writer();
  Case().write(writer);
  ASSERT_FALSE(::testing::Test::HasFatalFailure());

  absl::Status first = VictimLink().Receive(Soon()).status();
  EXPECT_EQ(first.code(), absl::StatusCode::kDataLoss) << first;
  EXPECT_EQ(VictimLink().Receive(Soon()).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(VictimLink().TryReceive().status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(VictimLink().TrySend(Bytes(Pattern(0, 8))).code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(VictimLink().outstanding_views(), 0u);
}

std::string CaseName(const ::testing::TestParamInfo<std::tuple<size_t, LinkSide>>& info) {
  return std::string(Cases()[std::get<0>(info.param)].name) +
         (std::get<1>(info.param) == LinkSide::kGuest ? "_AtGuest" : "_AtHost");
}

INSTANTIATE_TEST_SUITE_P(Table, HostileRingTest,
                         ::testing::Combine(::testing::Range<size_t>(0, Cases().size()),
                                            ::testing::Values(LinkSide::kGuest, LinkSide::kHost)),
                         CaseName);

class HostileSideTest : public link_test::LinkPairFixture {};

TEST_F(HostileSideTest, FramesBeforeACorruptEntryAreDeliveredIntact) {
  Build();
  HostileWriter writer(*segment_, LinkSide::kHost, peer_id_, guest_mapping_.get());
  ASSERT_TRUE(guest_->Send(Bytes(Pattern(1, 100)), Soon()).ok());
  ASSERT_TRUE(guest_->Send(Bytes(Pattern(2, 1000)), Soon()).ok());
  writer.Entry(32, 3, 0, 32);
  absl::StatusOr<std::vector<ReceivedFrame>> frames = host_->ReceiveBatch(10, Soon());
  ASSERT_TRUE(frames.ok()) << frames.status();
  ASSERT_EQ(frames->size(), 2u);
  EXPECT_EQ(Copy((*frames)[0].data()), Pattern(1, 100));
  EXPECT_EQ(Copy((*frames)[1].data()), Pattern(2, 1000));
  EXPECT_EQ(host_->Receive(Soon()).status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(HostileSideTest, ASlotWithABadLengthPrefixIsFreedLikeRustDoes) {
  Build();
  HostileWriter writer(*segment_, LinkSide::kHost, peer_id_, guest_mapping_.get());
  const shm::SlotRef ref = writer.Slot(40, peer_id_, Pattern(1, 20));
  absl::Span<uint8_t> slot = *writer.pool().SlotData(ref);
  const uint32_t len = 1000;
  std::memcpy(slot.data(), &len, sizeof(len));
  writer.SlotRefEntry(ref);
  EXPECT_EQ(host_->Receive(Soon()).status().code(), absl::StatusCode::kDataLoss);
  link_test::ExpectPoolFull(*segment_);
}

TEST_F(HostileSideTest, APeerThatFreesASlotWeHoldBreaksTheLink) {
  Build();
  ASSERT_TRUE(guest_->Send(Bytes(Pattern(1, 1000)), Soon()).ok());
  absl::StatusOr<ReceivedFrame> frame = host_->Receive(Soon());
  ASSERT_TRUE(frame.ok()) << frame.status();
  // The guest frees the slot it handed over (generation 1, the first use).
  shm::VarSlotPool pool = segment_->pool();
  ASSERT_TRUE(pool.Free(shm::SlotRef{1, 0, 0, 1}).ok());
  frame->Release();
  EXPECT_EQ(host_->TryReceive().status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(HostileSideTest, ACorruptConsumerIndexMakesTheSenderReportDataLoss) {
  Build();
  // The guest (consumer of host->guest) scribbles its read index.
  HostileWriter writer(*segment_, LinkSide::kGuest, peer_id_, host_mapping_.get());
  writer.StoreRead(1u << 30);
  EXPECT_EQ(host_->Send(Bytes(Pattern(0, 100)), Soon()).code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(host_->Send(Bytes(Pattern(0, 100)), Soon()).code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace shmhub::client
