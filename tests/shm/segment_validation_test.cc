#include "shm/segment_validation.h"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <iterator>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "shm/format.h"
#include "shm/peer_table.h"
#include "shm/segment.h"
#include "shm/shm_error.h"
#include "tests/shm/spec_configs.h"
#include "tests/testing/temp_dir.h"

namespace shmhub::shm {
namespace {

using ::shmhub::testing::TempDir;

// A segment's bytes in a heap block of exactly their length, so that
// AddressSanitizer flags a read one byte past the end. new[] of uint8_t is
// aligned for any fundamental type, which covers the 8-byte atomics.
class Bytes {
 public:
  explicit Bytes(const std::vector<uint8_t>& v) : size_(v.size()), data_(new uint8_t[v.size()]) {
    if (size_ != 0) std::memcpy(data_.get(), v.data(), size_);
  }
  absl::Span<const uint8_t> span() const { return {data_.get(), size_}; }

 private:
  size_t size_;
  std::unique_ptr<uint8_t[]> data_;
};

absl::StatusOr<SegmentLayout> Validate(const std::vector<uint8_t>& file) {
  Bytes bytes(file);
  return ValidateSegment(bytes.span(), file.size());
}

// A freshly created segment's whole file.
std::vector<uint8_t> CreatedBytes(const SegmentConfig& config) {
  TempDir dir;
  absl::StatusOr<std::unique_ptr<Segment>> seg = Segment::Create(dir.File("seg"), config);
  EXPECT_TRUE(seg.ok()) << seg.status();
  if (!seg.ok()) return {};
  return std::vector<uint8_t>((*seg)->base(), (*seg)->base() + (*seg)->mapped_size());
}

// 768 bytes: small enough to try every truncation with an exact-size copy.
SegmentConfig TinyConfig() {
  SegmentConfig c;
  c.max_guests = 1;
  c.ring_capacity = 64;
  c.classes = {{8, 1}};
  c.max_payload_size = 64;
  return c;
}

template <typename T>
void Put(std::vector<uint8_t>& b, uint64_t offset, T v) {
  std::memcpy(b.data() + offset, &v, sizeof(T));
}

template <typename T>
T Get(const std::vector<uint8_t>& b, uint64_t offset) {
  T v;
  std::memcpy(&v, b.data() + offset, sizeof(T));
  return v;
}

constexpr uint64_t kTotal41 = 206528;
constexpr uint64_t kPool41 = 132480;

// Offsets in the §4.1 segment.
constexpr uint64_t kVersionAt = offsetof(SegmentHeader, version);
constexpr uint64_t kHeaderSizeAt = offsetof(SegmentHeader, header_size);
constexpr uint64_t kTotalAt = offsetof(SegmentHeader, total_size);
constexpr uint64_t kMaxGuestsAt = offsetof(SegmentHeader, max_guests);
constexpr uint64_t kCapacityAt = offsetof(SegmentHeader, bipbuf_capacity);
constexpr uint64_t kPeerTableAt = offsetof(SegmentHeader, peer_table_offset);
constexpr uint64_t kPoolAt = offsetof(SegmentHeader, var_pool_offset);
constexpr uint64_t kClassesAt = offsetof(SegmentHeader, num_var_slot_classes);
constexpr uint64_t kCurrentAt = offsetof(SegmentHeader, current_size);
uint64_t ClassAt(uint32_t k) { return kPool41 + kClassHeaderSize * k; }
uint64_t RingOffsetAt(uint32_t peer_id) {
  return kPeerTableOffset + kPeerEntrySize * (peer_id - 1) + offsetof(PeerEntry, ring_offset);
}

struct Corruption {
  std::string name;
  std::function<void(std::vector<uint8_t>&)> apply;
  ShmErrc errc;
};

// C-H8, plus the boundaries next to each item. Applied to the §4.1 segment.
std::vector<Corruption> Corruptions() {
  std::vector<Corruption> t;
  for (size_t len : {0, 1, 8, 64, 127}) {
    t.push_back({"file of " + std::to_string(len) + " bytes",
                 [len](auto& b) { b.resize(len); }, ShmErrc::kFileTooSmall});
  }
  t.push_back({"magic all zero", [](auto& b) { Put<uint64_t>(b, 0, 0); },
               ShmErrc::kNotInitialised});
  for (int i = 0; i < 8; ++i) {
    t.push_back({"magic byte " + std::to_string(i) + " flipped",
                 [i](auto& b) { b[i] ^= 0x01; }, ShmErrc::kBadMagic});
  }
  t.push_back({"magic of a later format, 8", [](auto& b) { b[7] = 0x08; }, ShmErrc::kBadMagic});
  t.push_back({"magic all ones", [](auto& b) { Put<uint64_t>(b, 0, UINT64_MAX); },
               ShmErrc::kBadMagic});
  for (uint32_t v : {0u, 6u, 8u}) {
    t.push_back({"version " + std::to_string(v), [v](auto& b) { Put(b, kVersionAt, v); },
                 ShmErrc::kBadVersion});
  }
  for (uint32_t v : {0u, 64u, 127u, 129u}) {
    t.push_back({"header_size " + std::to_string(v), [v](auto& b) { Put(b, kHeaderSizeAt, v); },
                 ShmErrc::kBadHeaderSize});
  }
  for (uint32_t v : {0u, 256u, UINT32_MAX}) {
    t.push_back({"max_guests " + std::to_string(v), [v](auto& b) { Put(b, kMaxGuestsAt, v); },
                 ShmErrc::kBadMaxGuests});
  }
  for (uint32_t v : {0u, (1u << 31) + 1, UINT32_MAX}) {
    t.push_back({"bipbuf_capacity " + std::to_string(v), [v](auto& b) { Put(b, kCapacityAt, v); },
                 ShmErrc::kBadRingCapacity});
  }
  for (uint32_t v : {0u, 257u, UINT32_MAX}) {
    t.push_back({"num_var_slot_classes " + std::to_string(v),
                 [v](auto& b) { Put(b, kClassesAt, v); }, ShmErrc::kBadClassCount});
  }
  for (uint64_t v : {uint64_t{0}, uint64_t{64}, uint64_t{129}, UINT64_MAX}) {
    t.push_back({"peer_table_offset " + std::to_string(v),
                 [v](auto& b) { Put(b, kPeerTableAt, v); }, ShmErrc::kBadPeerTableOffset});
  }
  for (uint64_t v : {kTotal41 - 64, kTotal41 - 127, kTotal41, uint64_t{1} << 63,
                     UINT64_MAX - 63, UINT64_MAX}) {
    t.push_back({"class table at var_pool_offset " + std::to_string(v),
                 [v](auto& b) { Put(b, kPoolAt, v); }, ShmErrc::kClassTableOutOfBounds});
  }
  t.push_back({"file ends inside the class table", [](auto& b) { b.resize(kPool41 + 127); },
               ShmErrc::kClassTableOutOfBounds});
  t.push_back({"class 0 slot_size 0", [](auto& b) { Put<uint32_t>(b, ClassAt(0), 0); },
               ShmErrc::kBadSlotClass});
  t.push_back({"class 1 slot_size 0", [](auto& b) { Put<uint32_t>(b, ClassAt(1), 0); },
               ShmErrc::kBadSlotClass});
  t.push_back({"class 0 slot_count 0", [](auto& b) { Put<uint32_t>(b, ClassAt(0) + 4, 0); },
               ShmErrc::kBadSlotClass});
  t.push_back({"class 1 slot_count 0xFFFFFFFF",
               [](auto& b) { Put<uint32_t>(b, ClassAt(1) + 4, kSlotEnd); },
               ShmErrc::kBadSlotClass});
  t.push_back({"class sizes overflow 64 bits",
               [](auto& b) {
                 Put<uint32_t>(b, ClassAt(0), UINT32_MAX);
                 Put<uint32_t>(b, ClassAt(0) + 4, kMaxSlotCount);
               },
               ShmErrc::kLayoutOverflow});
  // The class headers move along, so discovery finds the same classes.
  for (int64_t delta : {64, -64}) {
    t.push_back({"var_pool_offset " + std::to_string(delta),
                 [delta](auto& b) {
                   const uint64_t moved = kPool41 + static_cast<uint64_t>(delta);
                   std::memmove(b.data() + moved, b.data() + kPool41, 2 * kClassHeaderSize);
                   Put<uint64_t>(b, kPoolAt, moved);
                 },
                 ShmErrc::kNonCanonicalLayout});
  }
  t.push_back({"total_size + 64", [](auto& b) { Put<uint64_t>(b, kTotalAt, kTotal41 + 64); },
               ShmErrc::kNonCanonicalLayout});
  t.push_back({"total_size - 1", [](auto& b) { Put<uint64_t>(b, kTotalAt, kTotal41 - 1); },
               ShmErrc::kNonCanonicalLayout});
  t.push_back({"class 0 slot_count 7 (a smaller canonical total)",
               [](auto& b) { Put<uint32_t>(b, ClassAt(0) + 4, 7); },
               ShmErrc::kNonCanonicalLayout});
  t.push_back({"bipbuf_capacity 2^31 (in range, not canonical)",
               [](auto& b) { Put<uint32_t>(b, kCapacityAt, 1u << 31); },
               ShmErrc::kNonCanonicalLayout});
  t.push_back({"current_size 0", [](auto& b) { Put<uint64_t>(b, kCurrentAt, 0); },
               ShmErrc::kBadCurrentSize});
  t.push_back({"current_size total - 1", [](auto& b) { Put<uint64_t>(b, kCurrentAt, kTotal41 - 1); },
               ShmErrc::kBadCurrentSize});
  t.push_back({"current_size total + 64", [](auto& b) { Put<uint64_t>(b, kCurrentAt, kTotal41 + 64); },
               ShmErrc::kFileShorterThanSegment});
  t.push_back({"current_size all ones", [](auto& b) { Put<uint64_t>(b, kCurrentAt, UINT64_MAX); },
               ShmErrc::kFileShorterThanSegment});
  t.push_back({"file one byte shorter than current_size", [](auto& b) { b.resize(kTotal41 - 1); },
               ShmErrc::kFileShorterThanSegment});
  for (uint32_t peer : {1u, 3u, 4u}) {
    t.push_back({"peer " + std::to_string(peer) + " ring_offset + 64",
                 [peer](auto& b) {
                   Put(b, RingOffsetAt(peer), Get<uint64_t>(b, RingOffsetAt(peer)) + 64);
                 },
                 ShmErrc::kBadRingOffset});
  }
  t.push_back({"peer 2 ring_offset - 64",
               [](auto& b) { Put(b, RingOffsetAt(2), Get<uint64_t>(b, RingOffsetAt(2)) - 64); },
               ShmErrc::kBadRingOffset});
  t.push_back({"peer 4 ring_offset all ones",
               [](auto& b) { Put<uint64_t>(b, RingOffsetAt(4), UINT64_MAX); },
               ShmErrc::kBadRingOffset});
  // Ring headers of §4.1: G->H of peer 1 at 384, H->G of peer 2 at 49920,
  // H->G of peer 4 at 115968; capacity at +8.
  for (uint64_t ring : {uint64_t{384}, uint64_t{49920}, uint64_t{115968}}) {
    for (uint32_t cap : {0u, 16383u, 16385u}) {
      t.push_back({"ring header at " + std::to_string(ring) + " capacity " + std::to_string(cap),
                   [ring, cap](auto& b) { Put(b, ring + offsetof(RingHeader, capacity), cap); },
                   ShmErrc::kRingCapacityMismatch});
    }
  }
  return t;
}

TEST(SegmentValidation, TheCreatedSection41SegmentIsValid) {
  std::vector<uint8_t> file = CreatedBytes(Section41Config());
  absl::StatusOr<SegmentLayout> layout = Validate(file);
  ASSERT_TRUE(layout.ok()) << layout.status();
  EXPECT_EQ(layout->total_size, kTotal41);
  EXPECT_EQ(layout->var_pool_offset, kPool41);
  EXPECT_EQ(layout->max_guests, 4u);
  EXPECT_EQ(layout->ring_capacity, 16384u);
  ASSERT_EQ(layout->classes.size(), 2u);
  EXPECT_EQ(layout->classes[1].config, (SlotClassConfig{16384, 4}));
  EXPECT_EQ(layout->classes[1].data_offset, 140992u);
}

TEST(SegmentValidation, C_H8_EveryCorruptionIsRefusedWithItsOwnError) {
  const std::vector<uint8_t> good = CreatedBytes(Section41Config());
  ASSERT_EQ(good.size(), kTotal41);
  for (const Corruption& c : Corruptions()) {
    std::vector<uint8_t> file = good;
    c.apply(file);
    absl::StatusOr<SegmentLayout> r = Validate(file);
    EXPECT_EQ(ShmErrcOf(r.status()), c.errc)
        << c.name << ": got " << r.status() << ", want " << ShmErrcName(c.errc);
    EXPECT_FALSE(r.status().message().empty()) << c.name;
  }
}

TEST(SegmentValidation, C_H8_AttachRefusesEveryCorruptionOfARealFile) {
  const std::vector<uint8_t> good = CreatedBytes(Section41Config());
  TempDir dir;
  int n = 0;
  for (const Corruption& c : Corruptions()) {
    std::vector<uint8_t> file = good;
    c.apply(file);
    const std::string path = dir.File("bad" + std::to_string(n++));
    FILE* f = std::fopen(path.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(std::fwrite(file.data(), 1, file.size(), f), file.size());
    std::fclose(f);
    absl::StatusOr<std::unique_ptr<Segment>> seg = Segment::Attach(path);
    EXPECT_EQ(ShmErrcOf(seg.status()), c.errc) << c.name << ": got " << seg.status();
  }
}

TEST(SegmentValidation, C_H8_MessagesNameTheFieldAndItsValue) {
  std::vector<uint8_t> file = CreatedBytes(Section41Config());
  Put<uint32_t>(file, kMaxGuestsAt, 256);
  EXPECT_EQ(Validate(file).status().message(), "max_guests 256 is outside 1..255");
  file = CreatedBytes(Section41Config());
  Put<uint32_t>(file, 115968 + 8, 16383);
  const std::string msg(Validate(file).status().message());
  EXPECT_NE(msg.find("capacity 16383"), std::string::npos) << msg;
  EXPECT_NE(msg.find("bipbuf_capacity 16384"), std::string::npos) << msg;
  EXPECT_NE(msg.find("peer 4"), std::string::npos) << msg;
  file = CreatedBytes(Section41Config());
  Put<uint64_t>(file, 0, 0);
  EXPECT_NE(std::string(Validate(file).status().message()).find("not initialised"),
            std::string::npos);
  file[0] = 1;
  EXPECT_NE(std::string(Validate(file).status().message()).find("not a hub segment"),
            std::string::npos);
}

// The §3 order: applying one failure per step, from the last step backwards,
// each newly added (earlier) failure becomes the one reported.
TEST(SegmentValidation, C_H8_TheEarliestFailingStepIsReported) {
  std::vector<uint8_t> file = CreatedBytes(Section41Config());
  ASSERT_EQ(file.size(), kTotal41);
  const Corruption steps[] = {
      {"13b ring capacity", [](auto& b) { Put<uint32_t>(b, 115968 + 8, 1); },
       ShmErrc::kRingCapacityMismatch},
      {"13a ring offset", [](auto& b) { Put<uint64_t>(b, RingOffsetAt(4), 0); },
       ShmErrc::kBadRingOffset},
      {"12b file shorter", [](auto& b) { b.resize(kTotal41 - 64); },
       ShmErrc::kFileShorterThanSegment},
      {"12a current_size", [](auto& b) { Put<uint64_t>(b, kCurrentAt, kTotal41 - 64); },
       ShmErrc::kBadCurrentSize},
      {"11 total_size", [](auto& b) { Put<uint64_t>(b, kTotalAt, 1); },
       ShmErrc::kNonCanonicalLayout},
      {"10b overflow",
       [](auto& b) {
         Put<uint32_t>(b, ClassAt(1), UINT32_MAX);
         Put<uint32_t>(b, ClassAt(1) + 4, kMaxSlotCount);
       },
       ShmErrc::kLayoutOverflow},
      {"10a slot class", [](auto& b) { Put<uint32_t>(b, ClassAt(0), 0); }, ShmErrc::kBadSlotClass},
      {"9 class table", [](auto& b) { Put<uint64_t>(b, kPoolAt, UINT64_MAX); },
       ShmErrc::kClassTableOutOfBounds},
      {"8 peer table", [](auto& b) { Put<uint64_t>(b, kPeerTableAt, 0); },
       ShmErrc::kBadPeerTableOffset},
      {"7 class count", [](auto& b) { Put<uint32_t>(b, kClassesAt, 0); }, ShmErrc::kBadClassCount},
      {"6 capacity", [](auto& b) { Put<uint32_t>(b, kCapacityAt, 0); }, ShmErrc::kBadRingCapacity},
      {"5 max_guests", [](auto& b) { Put<uint32_t>(b, kMaxGuestsAt, 0); }, ShmErrc::kBadMaxGuests},
      {"4 header_size", [](auto& b) { Put<uint32_t>(b, kHeaderSizeAt, 0); },
       ShmErrc::kBadHeaderSize},
      {"3 version", [](auto& b) { Put<uint32_t>(b, kVersionAt, 0); }, ShmErrc::kBadVersion},
      {"2b magic", [](auto& b) { b[7] = 0; }, ShmErrc::kBadMagic},
      {"2a magic zero", [](auto& b) { Put<uint64_t>(b, 0, 0); }, ShmErrc::kNotInitialised},
      {"1 file size", [](auto& b) { b.resize(100); }, ShmErrc::kFileTooSmall},
  };
  for (const Corruption& step : steps) {
    step.apply(file);
    EXPECT_EQ(ShmErrcOf(Validate(file).status()), step.errc) << "after adding step " << step.name;
  }
}

TEST(SegmentValidation, C_H9_GarbageStateWordDoesNotFailAttach) {
  TempDir dir;
  absl::StatusOr<std::unique_ptr<Segment>> host = Segment::Create(dir.File("seg"), Section41Config());
  ASSERT_TRUE(host.ok()) << host.status();
  const uint64_t entry2 = kPeerTableOffset + kPeerEntrySize * 1;
  uint32_t seven = 7;
  std::memcpy((*host)->base() + entry2 + offsetof(PeerEntry, state), &seven, 4);

  std::vector<uint8_t> file((*host)->base(), (*host)->base() + (*host)->mapped_size());
  EXPECT_TRUE(Validate(file).ok());
  absl::StatusOr<std::unique_ptr<Segment>> guest = Segment::Attach(dir.File("seg"));
  ASSERT_TRUE(guest.ok()) << guest.status();
  absl::StatusOr<PeerEntryView> entry = (*guest)->peers().Entry(2);
  ASSERT_TRUE(entry.ok()) << entry.status();
  const StateReading state = entry->State();
  EXPECT_FALSE(state.valid);
  EXPECT_EQ(state.raw, 7u);
  // The other entries read normally.
  absl::StatusOr<PeerEntryView> entry1 = (*guest)->peers().Entry(1);
  ASSERT_TRUE(entry1.ok());
  EXPECT_TRUE(entry1->State().Is(PeerState::kEmpty));
}

TEST(SegmentValidation, ReservedBytesAreNotChecked) {
  std::vector<uint8_t> file = CreatedBytes(Section41Config());
  for (uint64_t i = 80; i < 128; ++i) file[i] = 0xEE;                     // header reserved
  for (uint64_t i = 128 + 24; i < 128 + 64; ++i) file[i] = 0xEE;          // entry 1 reserved
  for (uint64_t i = 384 + 12; i < 384 + 64; ++i) file[i] = 0xEE;          // ring pad0
  for (uint64_t i = ClassAt(0) + 16; i < ClassAt(0) + 64; ++i) file[i] = 0xEE;  // class pad
  EXPECT_TRUE(Validate(file).ok());
}

// ---- Hostile input: never a read outside the bytes given ------------------------

TEST(SegmentValidation, C_H10_EveryTruncationIsRefusedByTheRightStep) {
  const std::vector<uint8_t> good = CreatedBytes(TinyConfig());
  absl::StatusOr<SegmentLayout> full = Validate(good);
  ASSERT_TRUE(full.ok()) << full.status();
  const uint64_t table_end = full->var_pool_offset + kClassHeaderSize;
  ASSERT_EQ(good.size(), full->total_size);
  for (size_t len = 0; len < good.size(); ++len) {
    std::vector<uint8_t> file(good.begin(), good.begin() + static_cast<ptrdiff_t>(len));
    const ShmErrc want = len < kHeaderSize   ? ShmErrc::kFileTooSmall
                         : len < table_end ? ShmErrc::kClassTableOutOfBounds
                                           : ShmErrc::kFileShorterThanSegment;
    EXPECT_EQ(ShmErrcOf(Validate(file).status()), want) << "length " << len;
    // A mapping shorter than the size fstat reported counts as the shorter file.
    Bytes bytes(file);
    EXPECT_EQ(ShmErrcOf(ValidateSegment(bytes.span(), good.size()).status()), want)
        << "mapped length " << len;
  }
  // A file longer than the segment is fine (a grown one, §16).
  std::vector<uint8_t> longer = good;
  longer.resize(good.size() + 100);
  EXPECT_TRUE(Validate(longer).ok());
}

TEST(SegmentValidation, C_H10_AbsurdOffsetsAndSizesAreRefusedWithoutReadingThem) {
  const std::vector<uint8_t> good = CreatedBytes(TinyConfig());
  const uint64_t pool = Get<uint64_t>(good, kPoolAt);
  struct Case {
    uint64_t at;
    uint64_t value;
    ShmErrc errc;
  };
  const Case cases[] = {
      {kPoolAt, UINT64_MAX, ShmErrc::kClassTableOutOfBounds},
      {kPoolAt, UINT64_MAX - 63, ShmErrc::kClassTableOutOfBounds},
      {kPoolAt, uint64_t{1} << 63, ShmErrc::kClassTableOutOfBounds},
      {kPoolAt, good.size() - 63, ShmErrc::kClassTableOutOfBounds},
      {kPoolAt, good.size() - 64, ShmErrc::kBadSlotClass},  // in bounds: reads zeros
      {kPoolAt, 0, ShmErrc::kNonCanonicalLayout},           // the header as a class
      {kTotalAt, UINT64_MAX, ShmErrc::kNonCanonicalLayout},
      {kCurrentAt, UINT64_MAX, ShmErrc::kFileShorterThanSegment},
      {kCurrentAt, uint64_t{1} << 63, ShmErrc::kFileShorterThanSegment},
      {RingOffsetAt(1), UINT64_MAX, ShmErrc::kBadRingOffset},
      {RingOffsetAt(1), pool, ShmErrc::kBadRingOffset},
  };
  for (const Case& c : cases) {
    std::vector<uint8_t> file = good;
    Put(file, c.at, c.value);
    EXPECT_EQ(ShmErrcOf(Validate(file).status()), c.errc)
        << "offset " << c.at << " = " << c.value;
  }
  // The largest in-range geometry in a tiny file: refused by bounds, not read.
  std::vector<uint8_t> file = good;
  Put<uint32_t>(file, kMaxGuestsAt, kMaxGuests);
  Put<uint32_t>(file, kCapacityAt, 1u << 31);
  Put<uint32_t>(file, kClassesAt, kMaxSlotClasses);
  EXPECT_EQ(ShmErrcOf(Validate(file).status()), ShmErrc::kClassTableOutOfBounds);
}

TEST(SegmentValidation, C_H10_RandomMutationsNeverCrashOrReadOutOfBounds) {
  const std::vector<uint8_t> good = CreatedBytes(TinyConfig());
  std::mt19937_64 rng(0xC0FFEEu);
  // Bytes that matter most: the header, entry 1, the ring headers, class 0.
  const uint64_t hot[] = {0, 8, 12, 16, 32, 36, 40, 48, 68, 72, 144, 192, 200, 384, 392, 576, 580};
  int accepted = 0;
  for (int iter = 0; iter < 20000; ++iter) {
    std::vector<uint8_t> file = good;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      const uint64_t at = (rng() % 2 == 0) ? hot[rng() % std::size(hot)] + rng() % 8
                                           : rng() % file.size();
      if (at < file.size()) file[at] = static_cast<uint8_t>(rng());
    }
    if (rng() % 8 == 0) file.resize(rng() % (file.size() + 1));
    absl::StatusOr<SegmentLayout> r = Validate(file);
    if (r.ok()) {
      ++accepted;
      // Whatever is accepted is internally consistent with the bytes.
      EXPECT_LE(r->total_size, file.size());
      EXPECT_EQ(r->total_size, Get<uint64_t>(file, kTotalAt));
    } else {
      EXPECT_NE(ShmErrcOf(r.status()), ShmErrc::kNone) << r.status();
    }
  }
  // Mutations of unchecked bytes (reserved, data) must still be accepted.
  EXPECT_GT(accepted, 1000);
}

}  // namespace
}  // namespace shmhub::shm
