#include "shm/layout.h"

#include <cstdint>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "shm/format.h"
#include "shm/shm_error.h"

namespace shmhub::shm {
namespace {

SegmentLayout MustCompute(uint32_t guests, uint32_t capacity,
                          const std::vector<SlotClassConfig>& classes) {
  absl::StatusOr<SegmentLayout> layout = ComputeLayout(guests, capacity, classes);
  EXPECT_TRUE(layout.ok()) << layout.status();
  return layout.ok() ? *layout : SegmentLayout{};
}

// Pool-relative (meta, data) offsets of class k, as the §4.3 vectors list them.
std::pair<uint64_t, uint64_t> RelativeClassOffsets(const SegmentLayout& l, uint32_t k) {
  return {l.classes[k].meta_offset - l.var_pool_offset,
          l.classes[k].data_offset - l.var_pool_offset};
}

TEST(Layout, C_L1_WorkedExampleMatchesEveryOffsetOfSection4_1) {
  SegmentLayout l = MustCompute(4, 16384, {{1024, 8}, {16384, 4}});
  EXPECT_EQ(l.ring_stride, 16512u);
  EXPECT_EQ(l.pair_stride, 33024u);
  EXPECT_EQ(l.ring_base, 384u);
  EXPECT_EQ(l.var_pool_offset, 132480u);

  // peer id, entry, ring_offset = G->H header, G->H data, H->G header,
  // H->G data, pair end: the rows of the first §4.1 table.
  const uint64_t rows[4][7] = {
      {1, 128, 384, 512, 16896, 17024, 33408},
      {2, 192, 33408, 33536, 49920, 50048, 66432},
      {3, 256, 66432, 66560, 82944, 83072, 99456},
      {4, 320, 99456, 99584, 115968, 116096, 132480},
  };
  for (const auto& row : rows) {
    const uint32_t i = static_cast<uint32_t>(row[0] - 1);
    EXPECT_EQ(l.EntryOffset(i), row[1]) << "peer " << row[0];
    EXPECT_EQ(l.RingOffset(i), row[2]) << "peer " << row[0];
    EXPECT_EQ(l.GuestToHostHeader(i), row[2]) << "peer " << row[0];
    EXPECT_EQ(l.GuestToHostHeader(i) + kRingHeaderSize, row[3]) << "peer " << row[0];
    EXPECT_EQ(l.HostToGuestHeader(i), row[4]) << "peer " << row[0];
    EXPECT_EQ(l.HostToGuestHeader(i) + kRingHeaderSize, row[5]) << "peer " << row[0];
    EXPECT_EQ(l.RingOffset(i) + l.pair_stride, row[6]) << "peer " << row[0];
  }

  ASSERT_EQ(l.classes.size(), 2u);
  EXPECT_EQ(l.classes[0].config, (SlotClassConfig{1024, 8}));
  EXPECT_EQ(l.classes[0].header_offset, 132480u);
  EXPECT_EQ(l.classes[0].meta_offset, 132608u);
  EXPECT_EQ(l.classes[0].data_offset, 132736u);
  EXPECT_EQ(l.classes[1].config, (SlotClassConfig{16384, 4}));
  EXPECT_EQ(l.classes[1].header_offset, 132544u);
  EXPECT_EQ(l.classes[1].meta_offset, 140928u);
  EXPECT_EQ(l.classes[1].data_offset, 140992u);
  EXPECT_EQ(RelativeClassOffsets(l, 0), std::make_pair(uint64_t{128}, uint64_t{256}));
  EXPECT_EQ(RelativeClassOffsets(l, 1), std::make_pair(uint64_t{8448}, uint64_t{8512}));

  EXPECT_EQ(l.pool_size, 74048u);
  EXPECT_EQ(l.total_size, 206528u);
  EXPECT_EQ(l.SlotMetaOffset(0, 3), 132656u);
  EXPECT_EQ(l.SlotDataOffset(0, 3), 135808u);
}

TEST(Layout, C_L2_CapacityNotAMultipleOf64MatchesSection4_2) {
  SegmentLayout l = MustCompute(3, 1000, {{100, 3}, {300, 5}});
  EXPECT_EQ(l.ring_stride, 1152u);
  EXPECT_EQ(l.pair_stride, 2304u);
  EXPECT_EQ(l.ring_base, 320u);
  EXPECT_EQ(l.RingOffset(0), 320u);
  EXPECT_EQ(l.RingOffset(1), 2624u);
  EXPECT_EQ(l.RingOffset(2), 4928u);
  EXPECT_EQ(l.HostToGuestHeader(0), 1472u);
  EXPECT_EQ(l.HostToGuestHeader(1), 3776u);
  EXPECT_EQ(l.HostToGuestHeader(2), 6080u);
  EXPECT_EQ(l.var_pool_offset, 7232u);
  ASSERT_EQ(l.classes.size(), 2u);
  EXPECT_EQ(RelativeClassOffsets(l, 0), std::make_pair(uint64_t{128}, uint64_t{192}));
  EXPECT_EQ(RelativeClassOffsets(l, 1), std::make_pair(uint64_t{512}, uint64_t{640}));
  EXPECT_EQ(l.pool_size, 2176u);
  EXPECT_EQ(l.total_size, 9408u);
}

TEST(Layout, C_L3_MoreVectorsOfSection4_3Match) {
  SegmentLayout a = MustCompute(4, 4096, {{1024, 8}, {16384, 4}});
  EXPECT_EQ(a.ring_stride, 4224u);
  EXPECT_EQ(a.var_pool_offset, 34176u);
  EXPECT_EQ(a.total_size, 108224u);

  SegmentLayout b = MustCompute(1, 65536, {{4096, 8}});
  EXPECT_EQ(b.var_pool_offset, 131520u);
  EXPECT_EQ(RelativeClassOffsets(b, 0), std::make_pair(uint64_t{64}, uint64_t{192}));
  EXPECT_EQ(b.total_size, 164480u);

  // "Pool alone": the pool does not depend on the ring geometry.
  for (uint32_t guests : {1u, 7u}) {
    SegmentLayout c = MustCompute(guests, 100, {{1024, 8}, {16384, 4}, {262144, 2}});
    ASSERT_EQ(c.classes.size(), 3u);
    EXPECT_EQ(RelativeClassOffsets(c, 0), std::make_pair(uint64_t{192}, uint64_t{320}));
    EXPECT_EQ(RelativeClassOffsets(c, 1), std::make_pair(uint64_t{8512}, uint64_t{8576}));
    EXPECT_EQ(RelativeClassOffsets(c, 2), std::make_pair(uint64_t{74112}, uint64_t{74176}));
    EXPECT_EQ(c.pool_size, 598464u);

    SegmentLayout d = MustCompute(guests, 100, {{64, 2}});
    EXPECT_EQ(RelativeClassOffsets(d, 0), std::make_pair(uint64_t{64}, uint64_t{128}));
    EXPECT_EQ(d.pool_size, 256u);
  }
}

// §4 evaluated in 128 bits: the oracle for C-L4. Returns false exactly when
// some intermediate value does not fit in 64 bits.
bool ReferenceTotal(uint32_t guests, uint32_t capacity, const std::vector<SlotClassConfig>& cls,
                    uint64_t* total) {
  __extension__ typedef unsigned __int128 u128;  // exact, never wraps here
  const u128 max = UINT64_MAX;
  auto align64 = [](u128 x) { return (x + 63) / 64 * 64; };
  const u128 ring_base = 128 + u128{64} * guests;
  const u128 pair_stride = 2 * align64(128 + u128{capacity});
  const u128 pool = align64(ring_base + guests * pair_stride);
  u128 cursor = align64(u128{64} * cls.size());
  for (const SlotClassConfig& c : cls) {
    cursor = align64(cursor + u128{16} * c.slot_count);
    if (cursor > max) return false;
    cursor = align64(cursor + u128{c.slot_size} * c.slot_count);
    if (cursor > max) return false;
  }
  if (pool + cursor > max) return false;
  *total = static_cast<uint64_t>(pool + cursor);
  return true;
}

uint32_t RandomU32(std::mt19937_64& rng, uint32_t lo, uint32_t hi) {
  return std::uniform_int_distribution<uint32_t>(lo, hi)(rng);
}

// Mostly small values, sometimes anything up to `hi`, so that both ordinary
// layouts and the overflow boundary get exercised.
uint32_t SkewedU32(std::mt19937_64& rng, uint32_t lo, uint32_t small_hi, uint32_t hi) {
  return RandomU32(rng, 0, 3) == 0 ? RandomU32(rng, lo, hi) : RandomU32(rng, lo, small_hi);
}

TEST(Layout, C_L4_RandomLayoutsAreAlignedOrderedAndNeverOverflowSilently) {
  std::mt19937_64 rng(0x5e6d1a40u);
  int accepted = 0;
  int refused = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    const uint32_t guests = RandomU32(rng, 1, kMaxGuests);
    const uint32_t capacity =
        SkewedU32(rng, 1, 1 << 16, static_cast<uint32_t>(kMaxRingCapacity));
    std::vector<SlotClassConfig> classes(SkewedU32(rng, 1, 4, kMaxSlotClasses));
    for (SlotClassConfig& c : classes) {
      c.slot_size = SkewedU32(rng, 1, 1 << 16, UINT32_MAX);
      c.slot_count = SkewedU32(rng, 1, 64, kMaxSlotCount);
    }
    SCOPED_TRACE(::testing::Message() << "iteration " << iter << " G=" << guests
                                      << " C=" << capacity << " n=" << classes.size());
    uint64_t expected_total = 0;
    const bool fits = ReferenceTotal(guests, capacity, classes, &expected_total);
    absl::StatusOr<SegmentLayout> result = ComputeLayout(guests, capacity, classes);
    if (!fits) {
      ++refused;
      ASSERT_FALSE(result.ok());
      EXPECT_EQ(ShmErrcOf(result.status()), ShmErrc::kLayoutOverflow);
      continue;
    }
    ++accepted;
    ASSERT_TRUE(result.ok()) << result.status();
    const SegmentLayout& l = *result;
    EXPECT_EQ(l.total_size, expected_total);

    // Entries, then ring pairs in peer order, then the pool.
    uint64_t end = l.EntryOffset(guests - 1) + kPeerEntrySize;
    ASSERT_LE(end, l.ring_base);
    for (uint32_t i = 0; i < guests; ++i) {
      const uint64_t g2h = l.GuestToHostHeader(i);
      const uint64_t h2g = l.HostToGuestHeader(i);
      ASSERT_EQ(g2h % 64, 0u) << "peer index " << i;
      ASSERT_EQ(h2g % 64, 0u) << "peer index " << i;
      ASSERT_GE(g2h, end);
      ASSERT_GE(h2g, g2h + kRingHeaderSize + capacity);
      end = h2g + kRingHeaderSize + capacity;
    }
    ASSERT_EQ(l.var_pool_offset % 64, 0u);
    ASSERT_GE(l.var_pool_offset, end);

    // Class headers, then per class its metadata array and its data.
    end = l.var_pool_offset + kClassHeaderSize * classes.size();
    for (uint32_t k = 0; k < classes.size(); ++k) {
      const SlotClassLayout& c = l.classes[k];
      ASSERT_EQ(c.config, classes[k]);
      ASSERT_EQ(c.header_offset, l.var_pool_offset + kClassHeaderSize * k);
      ASSERT_EQ(c.header_offset % 64, 0u);
      ASSERT_EQ(c.meta_offset % 64, 0u) << "class " << k;
      ASSERT_EQ(c.data_offset % 64, 0u) << "class " << k;
      ASSERT_GE(c.meta_offset, end) << "class " << k;
      ASSERT_GE(c.data_offset, c.meta_offset + kSlotMetaSize * c.config.slot_count);
      end = c.data_offset + uint64_t{c.config.slot_size} * c.config.slot_count;
    }
    // The segment ends at the last data array, padded to 64.
    EXPECT_EQ(l.total_size, Align64(end));
    EXPECT_EQ(l.total_size, l.var_pool_offset + l.pool_size);
  }
  // Both outcomes must actually have been exercised.
  EXPECT_GT(accepted, 1000);
  EXPECT_GT(refused, 10);
}

TEST(Layout, C_L4_OutOfRangeInputsAreRefused) {
  const std::vector<SlotClassConfig> one = {{64, 2}};
  EXPECT_EQ(ShmErrcOf(ComputeLayout(0, 64, one).status()), ShmErrc::kBadMaxGuests);
  EXPECT_EQ(ShmErrcOf(ComputeLayout(256, 64, one).status()), ShmErrc::kBadMaxGuests);
  EXPECT_EQ(ShmErrcOf(ComputeLayout(1, 0, one).status()), ShmErrc::kBadRingCapacity);
  EXPECT_EQ(ShmErrcOf(ComputeLayout(1, (1u << 31) + 1, one).status()), ShmErrc::kBadRingCapacity);
  EXPECT_TRUE(ComputeLayout(1, 1u << 31, one).ok());
  EXPECT_EQ(ShmErrcOf(ComputeLayout(1, 64, {}).status()), ShmErrc::kBadClassCount);
  EXPECT_EQ(ShmErrcOf(ComputeLayout(1, 64, std::vector<SlotClassConfig>(257, {64, 1})).status()),
            ShmErrc::kBadClassCount);
  EXPECT_EQ(ShmErrcOf(ComputeLayout(1, 64, {{0, 1}}).status()), ShmErrc::kBadSlotClass);
  EXPECT_EQ(ShmErrcOf(ComputeLayout(1, 64, {{64, 0}}).status()), ShmErrc::kBadSlotClass);
  EXPECT_EQ(ShmErrcOf(ComputeLayout(1, 64, {{64, kSlotEnd}}).status()), ShmErrc::kBadSlotClass);
  // One class of 2^31 slots of 2^32-1 bytes fits in 64 bits; two do not,
  // and neither does one class of the largest size and count.
  const SlotClassConfig huge = {UINT32_MAX, 1u << 31};
  EXPECT_TRUE(ComputeLayout(1, 64, {huge}).ok());
  EXPECT_EQ(ShmErrcOf(ComputeLayout(1, 64, {huge, huge}).status()), ShmErrc::kLayoutOverflow);
  EXPECT_EQ(ShmErrcOf(ComputeLayout(1, 64, {{UINT32_MAX, kMaxSlotCount}}).status()),
            ShmErrc::kLayoutOverflow);
}

TEST(Layout, C_L5_HostToGuestHeaderIsOneAlignedRingStrideAfterRingOffset) {
  for (uint32_t capacity : {1u, 8u, 63u, 64u, 65u, 100u, 1000u, 4096u, 16383u, 1u << 31}) {
    SegmentLayout l = MustCompute(3, capacity, {{64, 1}});
    const uint64_t stride = Align64(kRingHeaderSize + capacity);
    for (uint32_t i = 0; i < 3; ++i) {
      EXPECT_EQ(l.HostToGuestHeader(i), l.RingOffset(i) + stride) << "capacity " << capacity;
      EXPECT_EQ(l.RingOffset(i), l.ring_base + 2 * stride * i) << "capacity " << capacity;
    }
    if (capacity % 64 != 0) {
      // Not packed right after the G->H data (A-11a).
      EXPECT_NE(l.HostToGuestHeader(0), l.RingOffset(0) + kRingHeaderSize + capacity);
    }
  }
}

}  // namespace
}  // namespace shmhub::shm
