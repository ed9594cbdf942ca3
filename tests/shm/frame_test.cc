#include "shm/frame.h"

#include <array>
#include <cstdint>
#include <cstring>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "shm/bip_buffer.h"
#include "shm/format.h"
#include "shm/shm_error.h"

namespace shmhub::shm {
namespace {

using Bytes = std::vector<uint8_t>;

absl::Span<const uint8_t> AsBytes(absl::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

std::string AsString(absl::Span<const uint8_t> bytes) {
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

uint32_t LoadU32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

template <typename T>
ShmErrc ErrcOf(const absl::StatusOr<T>& result) {
  return ShmErrcOf(result.status());
}

// A ring in process memory: a 64-aligned header and exactly `capacity` data
// bytes, so ASan flags any access past the ring.
class LocalRing {
 public:
  explicit LocalRing(uint32_t capacity)
      : data_(capacity), ring_(&header_, data_.data(), capacity) {
    BipBuffer::Init(&header_, capacity);
  }
  LocalRing(const LocalRing&) = delete;
  LocalRing& operator=(const LocalRing&) = delete;

  BipBuffer& ring() { return ring_; }
  RingHeader& header() { return header_; }

  // An empty ring whose indexes both stand at `position` (state S1).
  void SetEmptyAt(uint32_t position) {
    header_.write = position;
    header_.read = position;
    header_.watermark = 0;
  }

  std::array<uint8_t, sizeof(RingHeader)> HeaderBytes() const {
    std::array<uint8_t, sizeof(RingHeader)> bytes;
    std::memcpy(bytes.data(), &header_, sizeof header_);
    return bytes;
  }

  // Grants, fills and commits `bytes` as one unit.
  void Put(const Bytes& bytes) {
    absl::StatusOr<absl::Span<uint8_t>> grant =
        ring_.TryGrant(static_cast<uint32_t>(bytes.size()));
    ASSERT_TRUE(grant.ok()) << grant.status();
    std::memcpy(grant->data(), bytes.data(), bytes.size());
    ASSERT_TRUE(ring_.Commit(static_cast<uint32_t>(bytes.size())).ok());
  }

 private:
  alignas(64) RingHeader header_{};
  std::vector<uint8_t> data_;
  BipBuffer ring_;
};

// The §7.9 vectors.
const Bytes kHelloVector = {0x10, 0, 0, 0, 0, 0, 5, 0, 'h', 'e', 'l', 'l', 'o', 0, 0, 0};
const Bytes kEmptyVector = {0x08, 0, 0, 0, 0, 0, 0, 0};
const Bytes kSlotRefVector = {0x14, 0, 0, 0, 0x01, 0, 0, 0, 0x02, 0, 0, 0,
                              0x07, 0, 0, 0, 0x2a, 0, 0, 0};
const Bytes kMmapRefVector = {0x20, 0, 0, 0, 0x02, 0, 0, 0, 0x05, 0, 0, 0, 0x0b, 0, 0, 0,
                              0x00, 0x10, 0, 0, 0, 0, 0, 0, 0x00, 0x04, 0, 0, 0, 0, 0, 0};

TEST(Frame, C_F1_FlagsAre1And2AndReferenceEntriesAre20And32Bytes) {
  EXPECT_EQ(kFrameFlagSlotRef, 0x01);
  EXPECT_EQ(kFrameFlagMmapRef, 0x02);
  EXPECT_EQ(kSlotRefFrameSize, 20u);
  EXPECT_EQ(kMmapRefFrameSize, 32u);

  // The writers stamp those values and write nothing past the entry.
  Bytes slot(kSlotRefFrameSize + 8, 0xEE);
  ASSERT_TRUE(WriteSlotRefFrame(absl::MakeSpan(slot), SlotRef{1, 0, 2, 3}).ok());
  EXPECT_EQ(LoadU32(slot.data()), 20u);
  EXPECT_EQ(slot[4], 0x01);
  EXPECT_EQ(Bytes(slot.begin() + 20, slot.end()), Bytes(8, 0xEE));

  Bytes mmap(kMmapRefFrameSize + 8, 0xEE);
  ASSERT_TRUE(WriteMmapRefFrame(absl::MakeSpan(mmap), MmapRef{1, 2, 3, 4}).ok());
  EXPECT_EQ(LoadU32(mmap.data()), 32u);
  EXPECT_EQ(mmap[4], 0x02);
  EXPECT_EQ(Bytes(mmap.begin() + 32, mmap.end()), Bytes(8, 0xEE));

  // A destination one byte short is refused and left alone.
  Bytes short_dst(kSlotRefFrameSize - 1, 0xEE);
  EXPECT_EQ(ShmErrcOf(WriteSlotRefFrame(absl::MakeSpan(short_dst), SlotRef{})),
            ShmErrc::kPayloadTooLarge);
  EXPECT_EQ(short_dst, Bytes(kSlotRefFrameSize - 1, 0xEE));
  Bytes short_mmap(kMmapRefFrameSize - 1, 0xEE);
  EXPECT_EQ(ShmErrcOf(WriteMmapRefFrame(absl::MakeSpan(short_mmap), MmapRef{})),
            ShmErrc::kPayloadTooLarge);
  EXPECT_EQ(short_mmap, Bytes(kMmapRefFrameSize - 1, 0xEE));
}

TEST(Frame, C_F2_InlineEntryLengthIsAlign4Of8PlusPayload) {
  EXPECT_EQ(InlineFrameSize(5), 16u);
  EXPECT_EQ(InlineFrameSize(0), 8u);
  EXPECT_EQ(InlineFrameSize(12), 20u);
  EXPECT_EQ(InlineFrameSize(4), 12u);
  EXPECT_EQ(InlineFrameSize(kMaxInlinePayload), 65544u);

  // The writer stores that length and needs exactly that many bytes.
  for (uint32_t len = 0; len <= 64; ++len) {
    const Bytes payload(len, 0x5A);
    Bytes exact(InlineFrameSize(len));
    ASSERT_TRUE(WriteInlineFrame(absl::MakeSpan(exact), payload).ok()) << len;
    EXPECT_EQ(LoadU32(exact.data()), InlineFrameSize(len)) << len;
    Bytes short_dst(InlineFrameSize(len) - 1, 0xEE);
    EXPECT_EQ(ShmErrcOf(WriteInlineFrame(absl::MakeSpan(short_dst), payload)),
              ShmErrc::kPayloadTooLarge)
        << len;
    EXPECT_EQ(short_dst, Bytes(InlineFrameSize(len) - 1, 0xEE)) << len;
  }
}

TEST(Frame, C_F3_InlineWriterProducesTheSection7_9VectorsWithZeroPadding) {
  // Stale bytes in the grant must not leak into the padding.
  Bytes hello(kHelloVector.size() + 4, 0xAA);
  ASSERT_TRUE(WriteInlineFrame(absl::MakeSpan(hello), AsBytes("hello")).ok());
  EXPECT_EQ(Bytes(hello.begin(), hello.begin() + 16), kHelloVector);
  EXPECT_EQ(Bytes(hello.begin() + 16, hello.end()), Bytes(4, 0xAA));

  Bytes empty(kEmptyVector.size(), 0xAA);
  ASSERT_TRUE(WriteInlineFrame(absl::MakeSpan(empty), {}).ok());
  EXPECT_EQ(empty, kEmptyVector);

  // The u16 inline_len bounds what an inline entry can carry.
  const Bytes too_long(kMaxInlinePayload + 1, 0x01);
  Bytes big(InlineFrameSize(kMaxInlinePayload) + 8, 0xAA);
  EXPECT_EQ(ShmErrcOf(WriteInlineFrame(absl::MakeSpan(big), too_long)),
            ShmErrc::kPayloadTooLarge);
  EXPECT_EQ(big, Bytes(big.size(), 0xAA));
  const Bytes longest(kMaxInlinePayload, 0x01);
  ASSERT_TRUE(WriteInlineFrame(absl::MakeSpan(big), longest).ok());
  EXPECT_EQ(big[6], 0xFF);
  EXPECT_EQ(big[7], 0xFF);
}

TEST(Frame, C_F4_InlineReaderUsesInlineLenOrTotalLenMinus8AndRefusesOverlongInlineLen) {
  absl::StatusOr<Frame> hello = ParseFrame(kHelloVector);
  ASSERT_TRUE(hello.ok()) << hello.status();
  EXPECT_EQ(hello->kind, FrameKind::kInline);
  EXPECT_EQ(hello->total_len, 16u);
  EXPECT_EQ(AsString(hello->inline_payload), "hello");
  EXPECT_EQ(hello->inline_payload.data(), kHelloVector.data() + 8);

  // inline_len 0: the payload is [8, total_len), padding included.
  Bytes zero_len = kHelloVector;
  zero_len[6] = 0;
  absl::StatusOr<Frame> whole = ParseFrame(zero_len);
  ASSERT_TRUE(whole.ok()) << whole.status();
  EXPECT_EQ(AsString(whole->inline_payload), std::string("hello\0\0\0", 8));

  absl::StatusOr<Frame> empty = ParseFrame(kEmptyVector);
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_TRUE(empty->inline_payload.empty());

  // inline_len may be as long as total_len - 8, not one byte more.
  Bytes full = kHelloVector;
  full[6] = 8;
  absl::StatusOr<Frame> exact = ParseFrame(full);
  ASSERT_TRUE(exact.ok()) << exact.status();
  EXPECT_EQ(exact->inline_payload.size(), 8u);
  for (uint16_t inline_len : {uint16_t{9}, uint16_t{0xFFFF}}) {
    Bytes overlong = kHelloVector;
    std::memcpy(overlong.data() + 6, &inline_len, sizeof inline_len);
    EXPECT_EQ(ErrcOf(ParseFrame(overlong)), ShmErrc::kFrameBadInlineLen) << inline_len;
  }
  // The span beyond total_len belongs to the next entry, not to this payload.
  Bytes followed = kHelloVector;
  followed[6] = 0;
  followed.insert(followed.end(), kEmptyVector.begin(), kEmptyVector.end());
  absl::StatusOr<Frame> first = ParseFrame(followed);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->inline_payload.size(), 8u);
}

TEST(Frame, C_F5_SlotRefMatchesVectorAndA24ByteEntryDecodes20BytesAndReleases24) {
  Bytes written(kSlotRefFrameSize, 0xAA);
  ASSERT_TRUE(WriteSlotRefFrame(absl::MakeSpan(written), SlotRef{2, 0, 7, 42}).ok());
  EXPECT_EQ(written, kSlotRefVector);

  absl::StatusOr<Frame> parsed = ParseFrame(kSlotRefVector);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->kind, FrameKind::kSlotRef);
  EXPECT_EQ(parsed->total_len, 20u);
  EXPECT_EQ(parsed->slot_ref, (SlotRef{2, 0, 7, 42}));

  // Longer than 20: Rust reads the first 20 bytes and releases total_len.
  Bytes longer = kSlotRefVector;
  longer[0] = 24;
  longer.insert(longer.end(), {0xFF, 0xFF, 0xFF, 0xFF});
  LocalRing ring(64);
  ring.Put(longer);
  absl::StatusOr<absl::Span<const uint8_t>> readable = ring.ring().TryRead();
  ASSERT_TRUE(readable.ok()) << readable.status();
  ASSERT_EQ(readable->size(), 24u);
  absl::StatusOr<Frame> long_frame = ParseFrame(*readable);
  ASSERT_TRUE(long_frame.ok()) << long_frame.status();
  EXPECT_EQ(long_frame->kind, FrameKind::kSlotRef);
  EXPECT_EQ(long_frame->slot_ref, (SlotRef{2, 0, 7, 42}));
  EXPECT_EQ(long_frame->total_len, 24u);
  ASSERT_TRUE(ring.ring().Release(long_frame->total_len).ok());
  EXPECT_TRUE(ring.ring().IsEmpty());
}

TEST(Frame, C_F6_MmapRefMatchesVectorAndMapOffsetRoundTripsAtA4ButNot8AlignedAddress) {
  Bytes written(kMmapRefFrameSize, 0xAA);
  ASSERT_TRUE(WriteMmapRefFrame(absl::MakeSpan(written), MmapRef{5, 11, 4096, 1024}).ok());
  EXPECT_EQ(written, kMmapRefVector);

  absl::StatusOr<Frame> parsed = ParseFrame(kMmapRefVector);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->kind, FrameKind::kMmapRef);
  EXPECT_EQ(parsed->total_len, 32u);
  EXPECT_EQ(parsed->mmap_ref, (MmapRef{5, 11, 4096, 1024}));

  // Entries are only 4-aligned, so map_offset (entry offset 16) may sit on an
  // address that is not 8-aligned; UBSan checks no access assumes it is.
  alignas(8) std::array<uint8_t, 4 + kMmapRefFrameSize> storage{};
  const absl::Span<uint8_t> at4 = absl::MakeSpan(storage).subspan(4);
  ASSERT_NE(reinterpret_cast<uintptr_t>(at4.data() + 16) % 8, 0u);
  const MmapRef ref{0xA1B2C3D4, 0x01020304, 0x0123456789ABCDEFULL, 0xFFFFFFFF};
  ASSERT_TRUE(WriteMmapRefFrame(at4, ref).ok());
  const Bytes expected_offset = {0xEF, 0xCD, 0xAB, 0x89, 0x67, 0x45, 0x23, 0x01};
  EXPECT_EQ(Bytes(at4.begin() + 16, at4.begin() + 24), expected_offset);
  absl::StatusOr<Frame> round_trip = ParseFrame(at4);
  ASSERT_TRUE(round_trip.ok()) << round_trip.status();
  EXPECT_EQ(round_trip->mmap_ref, ref);
}

TEST(Frame, C_F7_EachMalformedEntryIsRefusedWithItsOwnErrorAndReleasesNothing) {
  struct Case {
    const char* what;
    Bytes entry;  // the whole readable span
    ShmErrc errc;
  };
  auto header = [](uint32_t total_len, uint8_t flags, size_t span) {
    Bytes bytes(span, 0);
    std::memcpy(bytes.data(), &total_len, sizeof total_len);
    bytes[4] = flags;
    return bytes;
  };
  const std::vector<Case> cases = {
      {"both flags", header(32, 0x03, 32), ShmErrc::kFrameBothFlags},
      {"total_len 9", header(9, 0, 12), ShmErrc::kFrameBadLength},
      {"total_len 4", header(4, 0, 8), ShmErrc::kFrameBadLength},
      {"12-byte span, total_len 0", header(0, 0, 12), ShmErrc::kFrameBadLength},
      {"total_len beyond the span", header(16, 0, 12), ShmErrc::kFrameBadLength},
      {"SLOT_REF of 16", header(16, kFrameFlagSlotRef, 16), ShmErrc::kFrameShortSlotRef},
      {"MMAP_REF of 28", header(28, kFrameFlagMmapRef, 28), ShmErrc::kFrameShortMmapRef},
      {"fewer than 8 bytes", Bytes{8, 0, 0, 0}, ShmErrc::kFrameIncomplete},
  };

  std::set<std::string> messages;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    // Through a real ring: a refused entry leaves every header byte as it
    // was, and the same bytes stay readable (the reader never skips).
    LocalRing ring(64);
    ring.Put(c.entry);
    const auto before = ring.HeaderBytes();
    absl::StatusOr<absl::Span<const uint8_t>> readable = ring.ring().TryRead();
    ASSERT_TRUE(readable.ok()) << readable.status();
    absl::StatusOr<Frame> frame = ParseFrame(*readable);
    EXPECT_EQ(ErrcOf(frame), c.errc) << frame.status();
    messages.insert(std::string(frame.status().message()));
    EXPECT_EQ(ring.HeaderBytes(), before);
    absl::StatusOr<absl::Span<const uint8_t>> again = ring.ring().TryRead();
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_EQ(again->data(), readable->data());
    EXPECT_EQ(again->size(), c.entry.size());
  }
  // Refusals sharing kFrameBadLength still say which rule was broken.
  EXPECT_EQ(messages.size(), cases.size());
}

TEST(Frame, C_F8_InlineWriterAloneFitsOneEmptyEntryInCapacity8ThenRingIsFull) {
  LocalRing ring(8);
  absl::StatusOr<absl::Span<uint8_t>> grant = ring.ring().TryGrant(InlineFrameSize(0));
  ASSERT_TRUE(grant.ok()) << grant.status();
  ASSERT_TRUE(WriteInlineFrame(*grant, {}).ok());
  ASSERT_TRUE(ring.ring().Commit(InlineFrameSize(0)).ok());

  absl::StatusOr<absl::Span<uint8_t>> second = ring.ring().TryGrant(InlineFrameSize(0));
  EXPECT_EQ(ErrcOf(second), ShmErrc::kRingFull);

  absl::StatusOr<absl::Span<const uint8_t>> readable = ring.ring().TryRead();
  ASSERT_TRUE(readable.ok()) << readable.status();
  EXPECT_EQ(Bytes(readable->begin(), readable->end()), kEmptyVector);

  // The tier policy would not have sent this entry inline: 8 > capacity / 2.
  absl::StatusOr<FrameKind> tier = ChooseTier(0, TierPolicy{256, 1024, 8, 0});
  ASSERT_TRUE(tier.ok()) << tier.status();
  EXPECT_EQ(*tier, FrameKind::kMmapRef);
}

TEST(Frame, C_F9_TwoInlineEntriesAreReadBackInOrderAndTheRingIsThenEmpty) {
  LocalRing ring(64);
  const std::vector<std::string> sent = {"first", "the second one"};
  for (const std::string& payload : sent) {
    const uint32_t size = InlineFrameSize(static_cast<uint32_t>(payload.size()));
    absl::StatusOr<absl::Span<uint8_t>> grant = ring.ring().TryGrant(size);
    ASSERT_TRUE(grant.ok()) << grant.status();
    ASSERT_TRUE(WriteInlineFrame(*grant, AsBytes(payload)).ok());
    ASSERT_TRUE(ring.ring().Commit(size).ok());
  }

  std::vector<std::string> received;
  for (int i = 0; i < 4; ++i) {  // a bound: two entries, then "empty"
    absl::StatusOr<absl::Span<const uint8_t>> readable = ring.ring().TryRead();
    ASSERT_TRUE(readable.ok()) << readable.status();
    if (readable->empty()) break;
    absl::StatusOr<Frame> frame = ParseFrame(*readable);
    ASSERT_TRUE(frame.ok()) << frame.status();
    ASSERT_EQ(frame->kind, FrameKind::kInline);
    received.push_back(AsString(frame->inline_payload));
    ASSERT_TRUE(ring.ring().Release(frame->total_len).ok());
  }
  EXPECT_EQ(received, sent);
  EXPECT_TRUE(ring.ring().IsEmpty());
}

TEST(Frame, C_F10_SlotHoldsLeLengthThenPayloadAndReaderRefusesBadLengths) {
  EXPECT_EQ(SlotBytesFor(5), 9u);

  Bytes slot(16, 0xCC);
  ASSERT_TRUE(WriteSlotPayload(absl::MakeSpan(slot), AsBytes("abc")).ok());
  const Bytes expected = {3, 0, 0, 0, 'a', 'b', 'c', 0xCC, 0xCC, 0xCC, 0xCC, 0xCC,
                          0xCC, 0xCC, 0xCC, 0xCC};
  EXPECT_EQ(slot, expected);
  absl::StatusOr<absl::Span<const uint8_t>> read = ReadSlotPayload(slot);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(AsString(*read), "abc");
  EXPECT_EQ(read->data(), slot.data() + 4);

  // The writer fills a slot exactly and refuses one byte more, untouched.
  const Bytes twelve(12, 0x11);
  ASSERT_TRUE(WriteSlotPayload(absl::MakeSpan(slot), twelve).ok());
  absl::StatusOr<absl::Span<const uint8_t>> full = ReadSlotPayload(slot);
  ASSERT_TRUE(full.ok()) << full.status();
  EXPECT_EQ(Bytes(full->begin(), full->end()), twelve);
  const Bytes before = slot;
  EXPECT_EQ(ShmErrcOf(WriteSlotPayload(absl::MakeSpan(slot), Bytes(13, 0x22))),
            ShmErrc::kPayloadTooLarge);
  EXPECT_EQ(slot, before);

  // The receiver: a length one beyond slot_size - 4 and slots under 4 bytes.
  for (uint32_t len : {13u, 0xFFFFFFFFu}) {
    std::memcpy(slot.data(), &len, sizeof len);
    EXPECT_EQ(ErrcOf(ReadSlotPayload(slot)), ShmErrc::kSlotBadLength) << len;
  }
  for (size_t size = 0; size < 4; ++size) {
    const Bytes tiny(size, 0);
    EXPECT_EQ(ErrcOf(ReadSlotPayload(tiny)), ShmErrc::kSlotBadLength) << size;
  }
  const Bytes prefix_only(4, 0);
  absl::StatusOr<absl::Span<const uint8_t>> none = ReadSlotPayload(prefix_only);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_TRUE(none->empty());
}

FrameKind MustChoose(uint32_t len, const TierPolicy& policy) {
  absl::StatusOr<FrameKind> tier = ChooseTier(len, policy);
  EXPECT_TRUE(tier.ok()) << "len " << len << ": " << tier.status();
  return tier.ok() ? *tier : FrameKind::kInline;
}

TEST(Frame, C_F11_TierFollowsThresholdThenLargestSlotMinus4ThenMmap) {
  const TierPolicy policy{/*inline_threshold=*/32, /*max_payload_size=*/1 << 20,
                          /*ring_capacity=*/4096, /*max_slot_size=*/64};
  EXPECT_EQ(MustChoose(5, policy), FrameKind::kInline);
  EXPECT_EQ(MustChoose(32, policy), FrameKind::kInline);
  EXPECT_EQ(MustChoose(33, policy), FrameKind::kSlotRef);
  EXPECT_EQ(MustChoose(60, policy), FrameKind::kSlotRef);
  EXPECT_EQ(MustChoose(61, policy), FrameKind::kMmapRef);
  EXPECT_EQ(MustChoose(1 << 20, policy), FrameKind::kMmapRef);
  EXPECT_EQ(ErrcOf(ChooseTier((1 << 20) + 1, policy)), ShmErrc::kPayloadTooLarge);
  EXPECT_EQ(ErrcOf(ChooseTier(0xFFFFFFFF, policy)), ShmErrc::kPayloadTooLarge);
}

TEST(Frame, C_F12_NeverInlinesPayloadsOver65535BytesOrEntriesOverHalfTheRing) {
  // The threshold and the ring would both allow 65536 bytes inline.
  TierPolicy policy{/*inline_threshold=*/1 << 20, /*max_payload_size=*/1 << 20,
                    /*ring_capacity=*/1 << 20, /*max_slot_size=*/1 << 18};
  EXPECT_EQ(MustChoose(65535, policy), FrameKind::kInline);
  EXPECT_EQ(MustChoose(65536, policy), FrameKind::kSlotRef);
  policy.max_slot_size = 1024;
  EXPECT_EQ(MustChoose(65536, policy), FrameKind::kMmapRef);

  // capacity 64: a 32-byte entry (24-byte payload) is inline, 36 is not.
  policy = TierPolicy{/*inline_threshold=*/256, /*max_payload_size=*/1024,
                      /*ring_capacity=*/64, /*max_slot_size=*/128};
  EXPECT_EQ(MustChoose(24, policy), FrameKind::kInline);
  EXPECT_EQ(MustChoose(25, policy), FrameKind::kSlotRef);
  policy.ring_capacity = 65;  // capacity / 2 rounds down
  EXPECT_EQ(MustChoose(24, policy), FrameKind::kInline);
  EXPECT_EQ(MustChoose(25, policy), FrameKind::kSlotRef);
}

// Grants, writes, commits, reads back and releases one inline entry of
// `payload_len` bytes on an empty ring whose indexes stand at `position`.
void ExpectInlineRoundTripAt(LocalRing& ring, uint32_t position, uint32_t payload_len) {
  SCOPED_TRACE(::testing::Message() << "capacity " << ring.ring().capacity() << " position "
                                    << position << " payload " << payload_len);
  ring.SetEmptyAt(position);
  Bytes payload(payload_len);
  for (uint32_t i = 0; i < payload_len; ++i) payload[i] = static_cast<uint8_t>(position + i);
  const uint32_t size = InlineFrameSize(payload_len);
  absl::StatusOr<absl::Span<uint8_t>> grant = ring.ring().TryGrant(size);
  ASSERT_TRUE(grant.ok()) << grant.status();
  ASSERT_TRUE(WriteInlineFrame(*grant, payload).ok());
  ASSERT_TRUE(ring.ring().Commit(size).ok());
  absl::StatusOr<absl::Span<const uint8_t>> readable = ring.ring().TryRead();
  ASSERT_TRUE(readable.ok()) << readable.status();
  absl::StatusOr<Frame> frame = ParseFrame(*readable);
  ASSERT_TRUE(frame.ok()) << frame.status();
  EXPECT_EQ(Bytes(frame->inline_payload.begin(), frame->inline_payload.end()), payload);
  ASSERT_TRUE(ring.ring().Release(frame->total_len).ok());
  EXPECT_TRUE(ring.ring().IsEmpty());
}

TEST(Frame, C_F12_EmptyRingGrantsEveryEntryUpToHalfCapacityAtEveryPosition) {
  // Exhaustive over positions and sizes for small rings, odd ones included.
  for (uint32_t capacity : {16u, 17u, 64u, 100u, 130u}) {
    LocalRing ring(capacity);
    for (uint32_t position = 0; position <= capacity; ++position) {
      for (uint32_t n = 1; n <= capacity / 2; ++n) {
        ring.SetEmptyAt(position);
        EXPECT_TRUE(ring.ring().TryGrant(n).ok())
            << "capacity " << capacity << " position " << position << " n " << n;
      }
    }
    // Every payload the policy sends inline round-trips from every position.
    const TierPolicy policy{/*inline_threshold=*/1 << 16, /*max_payload_size=*/1 << 16,
                            capacity, /*max_slot_size=*/1 << 16};
    uint32_t inline_lengths = 0;
    for (uint32_t len = 0; len <= capacity; ++len) {
      if (MustChoose(len, policy) != FrameKind::kInline) continue;
      ++inline_lengths;
      for (uint32_t position = 0; position <= capacity; ++position) {
        ExpectInlineRoundTripAt(ring, position, len);
      }
    }
    EXPECT_GT(inline_lengths, 0u) << capacity;
  }

  // Random positions and sizes on a realistic ring.
  constexpr uint32_t kCapacity = 4096;
  LocalRing ring(kCapacity);
  std::mt19937 rng(0x5eed);
  for (int i = 0; i < 2000; ++i) {
    const uint32_t position = std::uniform_int_distribution<uint32_t>(0, kCapacity)(rng);
    const uint32_t n = std::uniform_int_distribution<uint32_t>(1, kCapacity / 2)(rng);
    ring.SetEmptyAt(position);
    EXPECT_TRUE(ring.ring().TryGrant(n).ok()) << "position " << position << " n " << n;
    const uint32_t len =
        std::uniform_int_distribution<uint32_t>(0, kCapacity / 2 - kFrameHeaderSize)(rng);
    ExpectInlineRoundTripAt(ring, position, len);
  }
}

}  // namespace
}  // namespace shmhub::shm
