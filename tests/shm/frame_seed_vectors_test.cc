// C-X2: the reference implementation's entry vectors (read at run time from
// ../shared/seed-vectors/, never copied in) parse to the values its README
// gives, and our writers reproduce them byte for byte.
#include <cstdint>
#include <cstring>
#include <string>

#include "gtest/gtest.h"
#include "shm/format.h"
#include "shm/frame.h"
#include "shm/shm_error.h"
#include "tests/testing/seed_vectors.h"

namespace shmhub::shm {
namespace {

absl::Span<const uint8_t> AsBytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

std::string AsString(absl::Span<const uint8_t> bytes) {
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

// Writes one entry with `write` into a buffer of stale bytes and returns the
// first `size` bytes.
template <typename WriteFn>
std::string Written(uint32_t size, WriteFn write) {
  std::string buffer(size, '\xAA');
  absl::Span<uint8_t> dst(reinterpret_cast<uint8_t*>(buffer.data()), buffer.size());
  const absl::Status status = write(dst);
  EXPECT_TRUE(status.ok()) << status;
  return buffer;
}

TEST(FrameSeedVectors, C_X2_FrameHeaderVectorIsA20ByteSlotRefHeader) {
  SHMHUB_LOAD_SEED_VECTOR_OR_SKIP(header_bin, "frame_header.bin");
  ASSERT_EQ(header_bin.size(), kFrameHeaderSize);
  FrameHeader header;
  std::memcpy(&header, header_bin.data(), sizeof header);
  EXPECT_EQ(header.total_len, 20u);
  EXPECT_EQ(header.flags, kFrameFlagSlotRef);
  EXPECT_EQ(header.reserved, 0);
  EXPECT_EQ(header.inline_len, 0);

  // On its own the header promises 12 bytes the span does not hold; the
  // reader refuses rather than read past it.
  EXPECT_EQ(ShmErrcOf(ParseFrame(AsBytes(header_bin)).status()), ShmErrc::kFrameBadLength);

  // Our writer's header is the same 8 bytes.
  const std::string written = Written(kSlotRefFrameSize, [](absl::Span<uint8_t> dst) {
    return WriteSlotRefFrame(dst, SlotRef{2, 1, 42, 7});
  });
  EXPECT_EQ(written.substr(0, kFrameHeaderSize), header_bin);
}

TEST(FrameSeedVectors, C_X2_SlotRefVectorsParseToClass2Extent1Slot42Gen7AndAreReproduced) {
  SHMHUB_LOAD_SEED_VECTOR_OR_SKIP(header_bin, "frame_header.bin");
  SHMHUB_LOAD_SEED_VECTOR_OR_SKIP(body_bin, "slot_ref.bin");
  SHMHUB_LOAD_SEED_VECTOR_OR_SKIP(frame_bin, "frame_slot_ref.bin");
  ASSERT_EQ(body_bin.size(), sizeof(SlotRefBody));
  ASSERT_EQ(frame_bin.size(), kSlotRefFrameSize);
  EXPECT_EQ(frame_bin, header_bin + body_bin);

  absl::StatusOr<Frame> frame = ParseFrame(AsBytes(frame_bin));
  ASSERT_TRUE(frame.ok()) << frame.status();
  EXPECT_EQ(frame->kind, FrameKind::kSlotRef);
  EXPECT_EQ(frame->total_len, 20u);
  EXPECT_EQ(frame->slot_ref, (SlotRef{2, 1, 42, 7}));

  const std::string written = Written(kSlotRefFrameSize, [](absl::Span<uint8_t> dst) {
    return WriteSlotRefFrame(dst, SlotRef{2, 1, 42, 7});
  });
  EXPECT_EQ(written, frame_bin);
  EXPECT_EQ(written.substr(kFrameHeaderSize), body_bin);
}

TEST(FrameSeedVectors, C_X2_InlineVectorParsesWithZeroInlineLenAndIsReproducedInThatForm) {
  SHMHUB_LOAD_SEED_VECTOR_OR_SKIP(inline_bin, "frame_inline.bin");
  ASSERT_EQ(inline_bin.size(), 20u);

  // Bytes 6..7 are zero, so the payload runs to total_len: the 9 bytes
  // "swift-shm" and the 3 zero padding bytes.
  absl::StatusOr<Frame> frame = ParseFrame(AsBytes(inline_bin));
  ASSERT_TRUE(frame.ok()) << frame.status();
  EXPECT_EQ(frame->kind, FrameKind::kInline);
  EXPECT_EQ(frame->total_len, 20u);
  EXPECT_EQ(AsString(frame->inline_payload), std::string("swift-shm\0\0\0", 12));

  const std::string zero_form = Written(20, [](absl::Span<uint8_t> dst) {
    return WriteInlineFrame(dst, AsBytes(std::string("swift-shm")), InlineLenField::kZero);
  });
  EXPECT_EQ(zero_form, inline_bin);

  // The Rust writer's live form differs only in bytes 6..7 and reads back
  // exactly the 9 payload bytes.
  const std::string live_form = Written(20, [](absl::Span<uint8_t> dst) {
    return WriteInlineFrame(dst, AsBytes(std::string("swift-shm")));
  });
  std::string expected_live = inline_bin;
  expected_live[6] = 9;
  EXPECT_EQ(live_form, expected_live);
  absl::StatusOr<Frame> live = ParseFrame(AsBytes(live_form));
  ASSERT_TRUE(live.ok()) << live.status();
  EXPECT_EQ(AsString(live->inline_payload), "swift-shm");
}

TEST(FrameSeedVectors, C_X2_MmapRefVectorParsesToId9Gen3Offset4096Len8192AndIsReproduced) {
  SHMHUB_LOAD_SEED_VECTOR_OR_SKIP(mmap_bin, "frame_mmap_ref.bin");
  ASSERT_EQ(mmap_bin.size(), kMmapRefFrameSize);

  absl::StatusOr<Frame> frame = ParseFrame(AsBytes(mmap_bin));
  ASSERT_TRUE(frame.ok()) << frame.status();
  EXPECT_EQ(frame->kind, FrameKind::kMmapRef);
  EXPECT_EQ(frame->total_len, 32u);
  EXPECT_EQ(frame->mmap_ref, (MmapRef{9, 3, 4096, 8192}));

  const std::string written = Written(kMmapRefFrameSize, [](absl::Span<uint8_t> dst) {
    return WriteMmapRefFrame(dst, MmapRef{9, 3, 4096, 8192});
  });
  EXPECT_EQ(written, mmap_bin);
}

}  // namespace
}  // namespace shmhub::shm
