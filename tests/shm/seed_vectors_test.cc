// Cross-implementation checks against the reference implementation's golden
// segment (../shared/seed-vectors/README.md). The vectors are read at run
// time and never copied into this repository.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

#include "gtest/gtest.h"
#include "shm/format.h"
#include "shm/peer_table.h"
#include "shm/segment.h"
#include "shm/shm_error.h"
#include "tests/testing/seed_vectors.h"
#include "tests/testing/temp_dir.h"

namespace shmhub::shm {
namespace {

using ::shmhub::testing::TempDir;

// The configuration segment_layout.bin was made with (README).
SegmentConfig SeedConfig() {
  SegmentConfig c;
  c.max_guests = 2;
  c.ring_capacity = 128;
  c.classes = {{1024, 4}, {16384, 2}};
  c.max_payload_size = 1024;
  c.inline_threshold = 256;
  c.heartbeat_interval_ns = 1'000'000;
  return c;
}

constexpr uint32_t kPatchedEpoch = 7;
constexpr uint64_t kPatchedHeartbeat = 12'345'678;

// The README's patch: entry 1 overwritten with Attached, epoch 7 and
// last_heartbeat 12,345,678 (ring_offset and reserved bytes kept).
void PatchEntry1(uint8_t* base) {
  const uint32_t state = static_cast<uint32_t>(PeerState::kAttached);
  std::memcpy(base + kPeerTableOffset + offsetof(PeerEntry, state), &state, 4);
  std::memcpy(base + kPeerTableOffset + offsetof(PeerEntry, epoch), &kPatchedEpoch, 4);
  std::memcpy(base + kPeerTableOffset + offsetof(PeerEntry, last_heartbeat), &kPatchedHeartbeat,
              8);
}

// Index of the first differing byte, or -1.
int64_t FirstDifference(const uint8_t* a, const uint8_t* b, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (a[i] != b[i]) return static_cast<int64_t>(i);
  }
  return -1;
}

TEST(SeedVectors, C_X1_CreatedSegmentIsByteIdenticalToTheReference) {
  SHMHUB_LOAD_SEED_VECTOR_OR_SKIP(layout_bin, "segment_layout.bin");
  SHMHUB_LOAD_SEED_VECTOR_OR_SKIP(header_bin, "segment_header.bin");
  ASSERT_EQ(layout_bin.size(), 38400u);
  ASSERT_EQ(header_bin.size(), 128u);
  TempDir dir;
  absl::StatusOr<std::unique_ptr<Segment>> seg = Segment::Create(dir.File("seg"), SeedConfig());
  ASSERT_TRUE(seg.ok()) << seg.status();
  uint8_t* base = (*seg)->base();
  ASSERT_EQ((*seg)->mapped_size(), layout_bin.size());

  EXPECT_EQ(FirstDifference(base, reinterpret_cast<const uint8_t*>(header_bin.data()), 128), -1)
      << "created header differs from segment_header.bin";
  PatchEntry1(base);
  EXPECT_EQ(FirstDifference(base, reinterpret_cast<const uint8_t*>(layout_bin.data()),
                            layout_bin.size()),
            -1)
      << "created segment differs from segment_layout.bin";
  EXPECT_EQ(std::memcmp(layout_bin.data(), header_bin.data(), 128), 0);
}

TEST(SeedVectors, C_X3_AttachAcceptsTheReferenceSegmentAndSeesOnePeer) {
  SHMHUB_LOAD_SEED_VECTOR_OR_SKIP(layout_bin, "segment_layout.bin");
  TempDir dir;
  const std::string path = dir.File("reference.seg");
  FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(std::fwrite(layout_bin.data(), 1, layout_bin.size(), f), layout_bin.size());
  ASSERT_EQ(std::fclose(f), 0);

  absl::StatusOr<std::unique_ptr<Segment>> attached = Segment::Attach(path);
  ASSERT_TRUE(attached.ok()) << attached.status();
  const Segment& seg = **attached;
  const SegmentLayout& l = seg.layout();
  EXPECT_EQ(l.max_guests, 2u);
  EXPECT_EQ(l.ring_capacity, 128u);
  EXPECT_EQ(l.total_size, 38400u);
  ASSERT_EQ(l.classes.size(), 2u);
  EXPECT_EQ(l.classes[0].config, (SlotClassConfig{1024, 4}));
  EXPECT_EQ(l.classes[1].config, (SlotClassConfig{16384, 2}));
  EXPECT_EQ(seg.max_payload_size(), 1024u);
  EXPECT_EQ(seg.EffectiveInlineThreshold(), 256u);
  EXPECT_EQ(seg.heartbeat_interval_ns(), 1'000'000u);
  EXPECT_FALSE(seg.HostGoodbye());

  PeerTable peers = seg.peers();
  absl::StatusOr<PeerEntryView> one = peers.Entry(1);
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_TRUE(one->State().Is(PeerState::kAttached));
  EXPECT_EQ(one->Epoch(), kPatchedEpoch);
  EXPECT_EQ(one->LastHeartbeat(), kPatchedHeartbeat);
  absl::StatusOr<PeerEntryView> two = peers.Entry(2);
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_TRUE(two->State().Is(PeerState::kEmpty));
  EXPECT_EQ(two->Epoch(), 0u);
  EXPECT_EQ(two->LastHeartbeat(), 0u);

  for (uint32_t i = 0; i < 2; ++i) {
    for (BipBuffer ring : {seg.GuestToHostRing(i), seg.HostToGuestRing(i)}) {
      EXPECT_TRUE(ring.CheckHeader().ok()) << "peer index " << i;
      EXPECT_TRUE(ring.IsEmpty()) << "peer index " << i;
      EXPECT_EQ(ring.Occupancy(), 0u);
    }
  }

  VarSlotPool pool = seg.pool();
  for (uint32_t k = 0; k < 2; ++k) {
    EXPECT_EQ(pool.FreeHead(k), PackFreeHead(0, 0)) << "class " << k;
    absl::StatusOr<uint32_t> free = pool.FreeCount(k);
    ASSERT_TRUE(free.ok()) << free.status();
    EXPECT_EQ(*free, l.classes[k].config.slot_count) << "class " << k;
    for (uint32_t j = 0; j < l.classes[k].config.slot_count; ++j) {
      absl::StatusOr<SlotMetaSnapshot> meta = pool.Meta(k, j);
      ASSERT_TRUE(meta.ok());
      EXPECT_EQ(meta->generation, 0u);
      EXPECT_EQ(meta->state, kSlotFree);
      EXPECT_EQ(meta->owner_peer, 0u);
    }
  }
}

}  // namespace
}  // namespace shmhub::shm
