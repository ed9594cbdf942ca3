#include "shm/segment.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "shm/format.h"
#include "shm/segment_file.h"
#include "shm/shm_error.h"
#include "tests/shm/spec_configs.h"
#include "tests/testing/child_process.h"
#include "tests/testing/temp_dir.h"

namespace shmhub::shm {
namespace {

using ::shmhub::testing::ChildProcess;
using ::shmhub::testing::TempDir;

// The configuration of §4.2: ring padding and pool alignment gaps everywhere.
SegmentConfig Section42Config() {
  SegmentConfig c;
  c.max_guests = 3;
  c.ring_capacity = 1000;
  c.classes = {{100, 3}, {300, 5}};
  c.max_payload_size = 4096;
  return c;
}

std::unique_ptr<Segment> MustCreate(const std::string& path, const SegmentConfig& config) {
  absl::StatusOr<std::unique_ptr<Segment>> s = Segment::Create(path, config);
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? *std::move(s) : nullptr;
}

std::unique_ptr<Segment> MustAttach(const std::string& path) {
  absl::StatusOr<std::unique_ptr<Segment>> s = Segment::Attach(path);
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? *std::move(s) : nullptr;
}

template <typename T>
T Read(const uint8_t* base, uint64_t offset) {
  T v;
  std::memcpy(&v, base + offset, sizeof(T));
  return v;
}

template <typename T>
void Write(uint8_t* base, uint64_t offset, T v) {
  std::memcpy(base + offset, &v, sizeof(T));
}

struct stat StatPath(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path << ": " << std::strerror(errno);
  return st;
}

bool Exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

std::vector<std::string> DirEntries(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    names.push_back(e.path().filename().string());
  }
  return names;
}

// Waits up to 10 s for one byte on `fd`; -1 on timeout or EOF.
int ReadByteWithDeadline(int fd) {
  struct pollfd p = {fd, POLLIN, 0};
  if (::poll(&p, 1, 10'000) != 1) return -1;
  uint8_t b = 0;
  return ::read(fd, &b, 1) == 1 ? b : -1;
}

// ---- Header (H) ---------------------------------------------------------------

TEST(Segment, C_H1_HeaderIs128BytesWithEveryFieldAtItsOffset) {
  static_assert(sizeof(SegmentHeader) == 128);
  TempDir dir;
  SegmentConfig c;
  c.max_guests = 3;
  c.ring_capacity = 1000;
  c.classes = {{16, 2}, {64, 3}, {256, 1}};
  c.max_payload_size = 0x11223344;
  c.inline_threshold = 0x55;
  c.heartbeat_interval_ns = 0x0102030405060708;
  auto seg = MustCreate(dir.File("seg"), c);
  ASSERT_NE(seg, nullptr);
  const uint8_t* b = seg->base();
  const SegmentLayout& l = seg->layout();
  EXPECT_EQ(Read<uint64_t>(b, 0), kMagic);
  EXPECT_EQ(Read<uint32_t>(b, 8), 7u);
  EXPECT_EQ(Read<uint32_t>(b, 12), 128u);
  EXPECT_EQ(Read<uint64_t>(b, 16), l.total_size);
  EXPECT_EQ(Read<uint32_t>(b, 24), 0x11223344u);
  EXPECT_EQ(Read<uint32_t>(b, 28), 0x55u);
  EXPECT_EQ(Read<uint32_t>(b, 32), 3u);
  EXPECT_EQ(Read<uint32_t>(b, 36), 1000u);
  EXPECT_EQ(Read<uint64_t>(b, 40), 128u);
  EXPECT_EQ(Read<uint64_t>(b, 48), l.var_pool_offset);
  EXPECT_EQ(Read<uint64_t>(b, 56), 0x0102030405060708u);
  EXPECT_EQ(Read<uint32_t>(b, 64), 0u);
  EXPECT_EQ(Read<uint32_t>(b, 68), 3u);
  EXPECT_EQ(Read<uint64_t>(b, 72), l.total_size);
  // The struct view agrees with the raw offsets.
  EXPECT_EQ(seg->header().max_payload_size, 0x11223344u);
  EXPECT_EQ(seg->header().heartbeat_interval_ns, 0x0102030405060708u);
  EXPECT_EQ(seg->header().var_pool_offset, l.var_pool_offset);
}

TEST(Segment, C_H2_Section41HeaderEqualsTheDumpByteForByte) {
  // §4.1, "Header bytes for this layout".
  const uint8_t expected[128] = {
      0x54, 0x45, 0x4c, 0x58, 0x48, 0x55, 0x42, 0x07, 0x07, 0x00, 0x00, 0x00, 0x80, 0x00, 0x00, 0x00,
      0xc0, 0x26, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x04, 0x00, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x80, 0x05, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xe1, 0xf5, 0x05, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0xc0, 0x26, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00,
      // 0x50..0x7f: all zero
  };
  TempDir dir;
  auto seg = MustCreate(dir.File("seg"), Section41Config());
  ASSERT_NE(seg, nullptr);
  const uint8_t* b = seg->base();
  const uint8_t magic[8] = {0x54, 0x45, 0x4C, 0x58, 0x48, 0x55, 0x42, 0x07};
  EXPECT_EQ(std::memcmp(b, magic, 8), 0);
  for (size_t i = 0; i < 128; ++i) {
    EXPECT_EQ(b[i], expected[i]) << "header byte 0x" << std::hex << i;
  }

  // Peer entry 1 right after creation: 00 x16 | 80 01 00 00 00 00 00 00 | 00 x40.
  uint8_t entry1[64] = {};
  entry1[16] = 0x80;
  entry1[17] = 0x01;
  EXPECT_EQ(std::memcmp(b + 0x80, entry1, 64), 0);
  // Class headers: 00 04 00 00 08 00 00 00 / 00 40 00 00 04 00 00 00, then 56 zeros.
  uint8_t class0[64] = {0x00, 0x04, 0x00, 0x00, 0x08};
  uint8_t class1[64] = {0x00, 0x40, 0x00, 0x00, 0x04};
  EXPECT_EQ(std::memcmp(b + 132480, class0, 64), 0);
  EXPECT_EQ(std::memcmp(b + 132544, class1, 64), 0);
  // Every ring header: only bytes 8..11 non-zero, 00 40 00 00.
  uint8_t ring[128] = {};
  ring[9] = 0x40;
  for (uint32_t i = 0; i < 4; ++i) {
    EXPECT_EQ(std::memcmp(b + seg->layout().GuestToHostHeader(i), ring, 128), 0) << i;
    EXPECT_EQ(std::memcmp(b + seg->layout().HostToGuestHeader(i), ring, 128), 0) << i;
  }
}

TEST(Segment, C_H3_TotalCurrentAndFileSizeAllEqualTheLayoutTotal) {
  TempDir dir;
  auto seg = MustCreate(dir.File("seg"), Section41Config());
  ASSERT_NE(seg, nullptr);
  EXPECT_EQ(seg->header().total_size, 206528u);
  EXPECT_EQ(seg->header().current_size, 206528u);
  EXPECT_EQ(static_cast<uint64_t>(StatPath(dir.File("seg")).st_size), 206528u);
  EXPECT_EQ(seg->layout().total_size, 206528u);
  EXPECT_EQ(seg->mapped_size(), 206528u);
}

TEST(Segment, C_H4_InlineThresholdZeroMeans256AndOtherValuesAreKept) {
  TempDir dir;
  SegmentConfig c = Section42Config();
  c.inline_threshold = 0;
  auto zero = MustCreate(dir.File("zero"), c);
  c.inline_threshold = 100;
  auto hundred = MustCreate(dir.File("hundred"), c);
  ASSERT_NE(zero, nullptr);
  ASSERT_NE(hundred, nullptr);
  EXPECT_EQ(Read<uint32_t>(zero->base(), 28), 0u);
  EXPECT_EQ(zero->EffectiveInlineThreshold(), 256u);
  EXPECT_EQ(Read<uint32_t>(hundred->base(), 28), 100u);
  EXPECT_EQ(hundred->EffectiveInlineThreshold(), 100u);
  // A guest derives the same from the stored bytes.
  auto zero_guest = MustAttach(dir.File("zero"));
  auto hundred_guest = MustAttach(dir.File("hundred"));
  ASSERT_NE(zero_guest, nullptr);
  ASSERT_NE(hundred_guest, nullptr);
  EXPECT_EQ(zero_guest->EffectiveInlineThreshold(), 256u);
  EXPECT_EQ(hundred_guest->EffectiveInlineThreshold(), 100u);
}

TEST(Segment, C_H5_Offset68HoldsTheNumberOfClasses) {
  TempDir dir;
  for (uint32_t n : {1u, 2u, 5u}) {
    SegmentConfig c = Section42Config();
    c.classes.clear();
    for (uint32_t k = 0; k < n; ++k) c.classes.push_back({16u << k, 2});
    const std::string path = dir.File("seg" + std::to_string(n));
    auto seg = MustCreate(path, c);
    ASSERT_NE(seg, nullptr);
    EXPECT_EQ(Read<uint32_t>(seg->base(), 68), n);
    auto guest = MustAttach(path);
    ASSERT_NE(guest, nullptr);
    EXPECT_EQ(guest->layout().classes.size(), n);
  }
}

TEST(Segment, C_H6_HostGoodbyeStartsZeroAndSetGoodbyeStoresOneSeenByGuest) {
  TempDir dir;
  auto host = MustCreate(dir.File("seg"), Section42Config());
  ASSERT_NE(host, nullptr);
  auto guest = MustAttach(dir.File("seg"));
  ASSERT_NE(guest, nullptr);
  EXPECT_EQ(Read<uint32_t>(host->base(), 64), 0u);
  EXPECT_FALSE(guest->HostGoodbye());
  EXPECT_FALSE(host->HostGoodbye());
  host->SetHostGoodbye();
  EXPECT_TRUE(guest->HostGoodbye());
  EXPECT_EQ(Read<uint32_t>(guest->base(), 64), 1u);
  // Any non-zero value counts (Rust tests `!= 0`).
  Write<uint32_t>(host->base(), 64, 0x80000000u);
  EXPECT_TRUE(guest->HostGoodbye());
}

void ExpectZero(const uint8_t* b, uint64_t from, uint64_t to, const std::string& what) {
  for (uint64_t i = from; i < to; ++i) {
    if (b[i] != 0) {
      ADD_FAILURE() << what << ": byte at " << i << " is " << int{b[i]};
      return;
    }
  }
}

TEST(Segment, C_H7_EveryReservedAndPaddingByteIsZero) {
  TempDir dir;
  auto seg = MustCreate(dir.File("seg"), Section42Config());
  ASSERT_NE(seg, nullptr);
  const uint8_t* b = seg->base();
  const SegmentLayout& l = seg->layout();

  ExpectZero(b, 80, 128, "header reserved 80..127");
  for (uint32_t i = 0; i < l.max_guests; ++i) {
    const std::string peer = " of peer " + std::to_string(i + 1);
    ExpectZero(b, l.EntryOffset(i) + 24, l.EntryOffset(i) + 64, "entry reserved" + peer);
    for (uint64_t ring : {l.GuestToHostHeader(i), l.HostToGuestHeader(i)}) {
      ExpectZero(b, ring + 12, ring + 64, "ring pad0" + peer);
      ExpectZero(b, ring + 68, ring + 128, "ring pad1" + peer);
      // C = 1000 is not a multiple of 64: 24 bytes pad each ring.
      ExpectZero(b, ring + 128 + l.ring_capacity, ring + l.ring_stride, "ring tail pad" + peer);
    }
  }
  uint64_t end = l.var_pool_offset + kClassHeaderSize * l.classes.size();
  for (size_t k = 0; k < l.classes.size(); ++k) {
    const SlotClassLayout& c = l.classes[k];
    const std::string cls = " of class " + std::to_string(k);
    ExpectZero(b, c.header_offset + 16, c.header_offset + 64, "class header pad" + cls);
    ExpectZero(b, end, c.meta_offset, "pool gap before the metadata" + cls);
    const uint64_t meta_end = c.meta_offset + kSlotMetaSize * c.config.slot_count;
    ExpectZero(b, meta_end, c.data_offset, "pool gap after the metadata" + cls);
    end = c.data_offset + uint64_t{c.config.slot_size} * c.config.slot_count;
  }
  ExpectZero(b, end, l.total_size, "pool gap after the last data array");
  ASSERT_LT(end, l.total_size) << "the configuration must have a final gap to test";

  // Stronger: outside the fields creation sets, the whole file is zero.
  std::vector<bool> set(l.total_size, false);
  auto mark = [&](uint64_t from, uint64_t len) {
    for (uint64_t i = from; i < from + len; ++i) set[i] = true;
  };
  mark(0, 80);
  for (uint32_t i = 0; i < l.max_guests; ++i) {
    mark(l.EntryOffset(i) + 16, 8);  // ring_offset
    mark(l.GuestToHostHeader(i) + 8, 4);
    mark(l.HostToGuestHeader(i) + 8, 4);
  }
  for (const SlotClassLayout& c : l.classes) {
    mark(c.header_offset, 8);  // slot_size, slot_count
    for (uint32_t j = 0; j < c.config.slot_count; ++j) {
      mark(c.meta_offset + kSlotMetaSize * j + 12, 4);  // next_free
    }
  }
  for (uint64_t i = 0; i < l.total_size; ++i) {
    if (!set[i] && b[i] != 0) {
      ADD_FAILURE() << "byte " << i << " outside every creation field is " << int{b[i]};
      break;
    }
  }
}

// ---- Creation rules -------------------------------------------------------------

TEST(Segment, C_V16_CreatorRefusesClassesThatAreNotAscending) {
  TempDir dir;
  SegmentConfig c = Section42Config();
  c.classes = {{300, 5}, {100, 3}};
  EXPECT_EQ(ShmErrcOf(Segment::Create(dir.File("seg"), c).status()), ShmErrc::kBadConfig);
  c.classes = {{100, 3}, {100, 5}};
  EXPECT_EQ(ShmErrcOf(Segment::Create(dir.File("seg"), c).status()), ShmErrc::kBadConfig);
  EXPECT_TRUE(DirEntries(dir.path()).empty());
}

TEST(Segment, CreatorRefusesConfigurationsOutsideItsRulesAndLeavesNoFile) {
  TempDir dir;
  struct Case {
    const char* what;
    void (*mutate)(SegmentConfig*);
    ShmErrc errc;
  };
  const Case cases[] = {
      {"max_guests 0", [](SegmentConfig* c) { c->max_guests = 0; }, ShmErrc::kBadConfig},
      {"max_guests 256", [](SegmentConfig* c) { c->max_guests = 256; }, ShmErrc::kBadConfig},
      {"capacity 0", [](SegmentConfig* c) { c->ring_capacity = 0; }, ShmErrc::kBadConfig},
      {"capacity 2^31+1", [](SegmentConfig* c) { c->ring_capacity = (1u << 31) + 1; },
       ShmErrc::kBadConfig},
      {"no classes", [](SegmentConfig* c) { c->classes.clear(); }, ShmErrc::kBadConfig},
      {"257 classes",
       [](SegmentConfig* c) {
         c->classes.clear();
         for (uint32_t k = 0; k < 257; ++k) c->classes.push_back({8 + k, 1});
       },
       ShmErrc::kBadConfig},
      {"slot_size 7", [](SegmentConfig* c) { c->classes = {{7, 1}}; }, ShmErrc::kBadConfig},
      {"slot_count 0", [](SegmentConfig* c) { c->classes = {{8, 0}}; }, ShmErrc::kBadConfig},
      {"slot_count all ones", [](SegmentConfig* c) { c->classes = {{8, 0xFFFFFFFFu}}; },
       ShmErrc::kBadConfig},
      {"mode with file type bits", [](SegmentConfig* c) { c->mode = S_IFREG | 0600; },
       ShmErrc::kBadConfig},
      {"layout beyond 64 bits",
       [](SegmentConfig* c) { c->classes = {{8, 1}, {0xFFFFFFFFu, kMaxSlotCount}}; },
       ShmErrc::kLayoutOverflow},
  };
  for (const Case& tc : cases) {
    SegmentConfig c = Section42Config();
    tc.mutate(&c);
    absl::StatusOr<std::unique_ptr<Segment>> s = Segment::Create(dir.File("seg"), c);
    EXPECT_EQ(ShmErrcOf(s.status()), tc.errc) << tc.what << ": " << s.status();
  }
  EXPECT_TRUE(DirEntries(dir.path()).empty());
  // The limits themselves are accepted.
  SegmentConfig c = Section42Config();
  c.classes = {{8, 1}};
  c.max_guests = 255;
  EXPECT_TRUE(Segment::Create(dir.File("seg"), c).ok());
}

TEST(Segment, CreationLeavesOnlyTheFinalFileAndTheHostsLockBehindAndTheHostRemovesBoth) {
  TempDir dir;
  const std::vector<std::string> owned = {"seg", "seg.lock"};
  auto seg = MustCreate(dir.File("seg"), Section42Config());
  ASSERT_NE(seg, nullptr);
  EXPECT_EQ(DirEntries(dir.path()), owned);
  // A refused creation removes its temporary file too.
  EXPECT_EQ(ShmErrcOf(Segment::Create(dir.File("seg"), Section42Config()).status()),
            ShmErrc::kLiveSegment);
  EXPECT_EQ(DirEntries(dir.path()), owned);
  seg.reset();
  EXPECT_TRUE(DirEntries(dir.path()).empty());
}

// ---- File and growth (G) --------------------------------------------------------

TEST(Segment, C_G1_ModeIsExactWhateverTheUmask) {
  TempDir dir;
  const mode_t saved = ::umask(0077);
  SegmentConfig c = Section42Config();
  c.mode = 0660;
  auto a = MustCreate(dir.File("a"), c);
  ::umask(0);
  c.mode = 0640;
  auto b = MustCreate(dir.File("b"), c);
  ::umask(saved);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(StatPath(dir.File("a")).st_mode & 07777, 0660u);
  EXPECT_EQ(StatPath(dir.File("b")).st_mode & 07777, 0640u);
}

TEST(Segment, C_G1_SymlinkAtThePathIsRefusedAndItsTargetUntouched) {
  TempDir dir;
  const std::string target = dir.File("target");
  {
    const int fd = ::open(target.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::write(fd, "keep", 4), 4);
    ::close(fd);
  }
  ASSERT_EQ(::symlink(target.c_str(), dir.File("seg").c_str()), 0);
  EXPECT_EQ(ShmErrcOf(Segment::Create(dir.File("seg"), Section42Config()).status()),
            ShmErrc::kSymlink);
  EXPECT_EQ(ShmErrcOf(Segment::Attach(dir.File("seg")).status()), ShmErrc::kSymlink);
  EXPECT_EQ(StatPath(target).st_size, 4);
  EXPECT_TRUE(S_ISLNK(StatPath(dir.File("seg")).st_mode));
  // Also a dangling symlink.
  ASSERT_EQ(::symlink(dir.File("nowhere").c_str(), dir.File("dangling").c_str()), 0);
  EXPECT_EQ(ShmErrcOf(Segment::Create(dir.File("dangling"), Section42Config()).status()),
            ShmErrc::kSymlink);
  EXPECT_FALSE(Exists(dir.File("nowhere")));
}

TEST(Segment, C_G1_NonRegularFilesAreRefused) {
  TempDir dir;
  ASSERT_EQ(::mkdir(dir.File("dir").c_str(), 0700), 0);
  ASSERT_EQ(::mkfifo(dir.File("fifo").c_str(), 0600), 0);
  for (const char* name : {"dir", "fifo"}) {
    EXPECT_EQ(ShmErrcOf(Segment::Create(dir.File(name), Section42Config()).status()),
              ShmErrc::kNotRegularFile)
        << name;
    EXPECT_EQ(ShmErrcOf(Segment::Attach(dir.File(name)).status()), ShmErrc::kNotRegularFile)
        << name;
  }
}

TEST(Segment, C_G1_PathWhoseLockIsHeldIsALiveSegment) {
  TempDir dir;
  auto host = MustCreate(dir.File("seg"), Section42Config());
  ASSERT_NE(host, nullptr);
  const struct stat before = StatPath(dir.File("seg"));
  absl::StatusOr<std::unique_ptr<Segment>> second =
      Segment::Create(dir.File("seg"), Section42Config());
  EXPECT_EQ(ShmErrcOf(second.status()), ShmErrc::kLiveSegment) << second.status();
  EXPECT_EQ(StatPath(dir.File("seg")).st_ino, before.st_ino);
}

TEST(Segment, C_G1_CrashedHostsStaleFileIsReplacedByANewInodeAndOldMappingsStayValid) {
  TempDir dir;
  const std::string path = dir.File("seg");
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  // A host in another process that holds the segment and then dies.
  ChildProcess crashed([&] {
    ::close(ready[0]);
    absl::StatusOr<std::unique_ptr<Segment>> s = Segment::Create(path, Section42Config());
    const uint8_t ok = s.ok() ? 1 : 0;
    if (::write(ready[1], &ok, 1) != 1) return 2;
    for (;;) ::pause();
  });
  ::close(ready[1]);
  ASSERT_EQ(ReadByteWithDeadline(ready[0]), 1);
  ::close(ready[0]);

  // While it lives, its lock refuses a second host.
  EXPECT_EQ(ShmErrcOf(Segment::Create(path, Section42Config()).status()), ShmErrc::kLiveSegment);
  auto old_guest = MustAttach(path);
  ASSERT_NE(old_guest, nullptr);
  std::vector<uint8_t> snapshot(old_guest->base(), old_guest->base() + old_guest->mapped_size());
  const struct stat old_st = StatPath(path);

  crashed.Signal(SIGKILL);
  EXPECT_EQ(crashed.Wait(), 128 + SIGKILL);
  ASSERT_TRUE(Exists(path)) << "a killed host leaves its file behind";

  SegmentConfig bigger = Section42Config();
  bigger.max_guests = 5;
  auto host = MustCreate(path, bigger);
  ASSERT_NE(host, nullptr);
  const struct stat new_st = StatPath(path);
  EXPECT_NE(new_st.st_ino, old_st.st_ino);
  EXPECT_EQ(static_cast<uint64_t>(new_st.st_size), host->layout().total_size);
  // Every page of the old mapping is still there, unchanged (no SIGBUS).
  ASSERT_EQ(old_guest->mapped_size(), snapshot.size());
  EXPECT_EQ(std::memcmp(old_guest->base(), snapshot.data(), snapshot.size()), 0);
  auto new_guest = MustAttach(path);
  ASSERT_NE(new_guest, nullptr);
  EXPECT_EQ(new_guest->layout().max_guests, 5u);
}

TEST(Segment, C_G1_StaleRegularFileIsReplacedNotTruncated) {
  TempDir dir;
  const std::string path = dir.File("seg");
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, 8192), 0);
  void* old = ::mmap(nullptr, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ASSERT_NE(old, MAP_FAILED);
  std::memset(old, 0xAB, 8192);
  const struct stat old_st = StatPath(path);

  auto host = MustCreate(path, Section42Config());
  ASSERT_NE(host, nullptr);
  EXPECT_NE(StatPath(path).st_ino, old_st.st_ino);
  struct stat fd_st {};
  ASSERT_EQ(::fstat(fd, &fd_st), 0);
  EXPECT_EQ(fd_st.st_size, 8192) << "the old inode was truncated";
  const auto* bytes = static_cast<const uint8_t*>(old);
  EXPECT_EQ(bytes[0], 0xAB);
  EXPECT_EQ(bytes[8191], 0xAB);
  ::munmap(old, 8192);
  ::close(fd);
}

TEST(Segment, C_G1_ConcurrentCreatorsYieldExactlyOneLiveSegment) {
  TempDir dir;
  const std::string path = dir.File("seg");
  constexpr int kCreators = 4;
  int results[2];
  int release[2];
  ASSERT_EQ(::pipe(results), 0);
  ASSERT_EQ(::pipe(release), 0);
  std::vector<std::unique_ptr<ChildProcess>> children;
  for (int i = 0; i < kCreators; ++i) {
    children.push_back(std::make_unique<ChildProcess>([&] {
      ::close(results[0]);
      ::close(release[1]);
      absl::StatusOr<std::unique_ptr<Segment>> s = Segment::Create(path, Section42Config());
      const uint8_t outcome = s.ok() ? 0 : ShmErrcOf(s.status()) == ShmErrc::kLiveSegment ? 1 : 2;
      if (::write(results[1], &outcome, 1) != 1) return 3;
      // Hold the segment until the parent has heard from everyone.
      ReadByteWithDeadline(release[0]);
      return 0;
    }));
  }
  ::close(results[1]);
  ::close(release[0]);
  int created = 0;
  int live = 0;
  for (int i = 0; i < kCreators; ++i) {
    const int outcome = ReadByteWithDeadline(results[0]);
    ASSERT_TRUE(outcome == 0 || outcome == 1) << "creator outcome " << outcome;
    (outcome == 0 ? created : live)++;
  }
  EXPECT_EQ(created, 1);
  EXPECT_EQ(live, kCreators - 1);
  EXPECT_EQ(DirEntries(dir.path()), (std::vector<std::string>{"seg", "seg.lock"}));
  ::close(release[1]);
  for (auto& child : children) EXPECT_EQ(child->Wait(), 0);
  ::close(results[0]);
  EXPECT_TRUE(DirEntries(dir.path()).empty()) << "the winner removes the file and its lock";
}

TEST(Segment, C_G2_EmptySegmentsAreRefusedOnCreateAndOnAttach) {
  TempDir dir;
  EXPECT_EQ(ShmErrcOf(SegmentFile::CreateTemporary(dir.File("seg"), 0660, 0).status()),
            ShmErrc::kBadConfig);
  EXPECT_EQ(ShmErrcOf(Segment::Create(dir.File("seg"), SegmentConfig{}).status()),
            ShmErrc::kBadConfig);
  EXPECT_TRUE(DirEntries(dir.path()).empty());

  const int fd = ::open(dir.File("empty").c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(ShmErrcOf(Segment::Attach(dir.File("empty")).status()), ShmErrc::kFileTooSmall);
  EXPECT_EQ(ShmErrcOf(Segment::AttachFd(fd).status()), ShmErrc::kFileTooSmall);
  ::close(fd);
  EXPECT_EQ(ShmErrcOf(Segment::Attach(dir.File("missing")).status()), ShmErrc::kIo);
}

TEST(Segment, C_G3_GrowPublishesCurrentSizeAndTheGuestRemapsOnce) {
  TempDir dir;
  auto host = MustCreate(dir.File("seg"), Section42Config());
  ASSERT_NE(host, nullptr);
  auto guest = MustAttach(dir.File("seg"));
  ASSERT_NE(guest, nullptr);
  const uint64_t old_size = host->mapped_size();
  const uint64_t new_size = old_size + 65536;

  absl::StatusOr<bool> nothing = guest->RemapIfGrown();
  ASSERT_TRUE(nothing.ok()) << nothing.status();
  EXPECT_FALSE(*nothing);

  ASSERT_TRUE(host->Grow(new_size).ok());
  EXPECT_EQ(host->mapped_size(), new_size);
  EXPECT_EQ(host->header().current_size, new_size);
  EXPECT_EQ(host->header().total_size, old_size) << "the initial layout does not change";
  EXPECT_EQ(static_cast<uint64_t>(StatPath(dir.File("seg")).st_size), new_size);

  absl::StatusOr<bool> first = guest->RemapIfGrown();
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(*first);
  EXPECT_EQ(guest->mapped_size(), new_size);
  absl::StatusOr<bool> second = guest->RemapIfGrown();
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_FALSE(*second);

  absl::Status shrink = host->Grow(new_size - 64);
  EXPECT_EQ(ShmErrcOf(shrink), ShmErrc::kBadConfig) << shrink;
  EXPECT_EQ(host->mapped_size(), new_size);
  EXPECT_EQ(host->header().current_size, new_size);
  uint8_t* before = host->base();
  EXPECT_TRUE(host->Grow(new_size).ok());
  EXPECT_EQ(host->base(), before) << "the same size must not remap";
  EXPECT_EQ(static_cast<uint64_t>(StatPath(dir.File("seg")).st_size), new_size);

  // Each side refuses the other's operation.
  EXPECT_EQ(ShmErrcOf(guest->Grow(new_size + 64)), ShmErrc::kWrongState);
  EXPECT_EQ(ShmErrcOf(host->RemapIfGrown().status()), ShmErrc::kWrongState);
}

TEST(Segment, C_G4_DataSurvivesTheRemapAndTheNewAreaIsShared) {
  TempDir dir;
  auto host = MustCreate(dir.File("seg"), Section42Config());
  ASSERT_NE(host, nullptr);
  auto guest = MustAttach(dir.File("seg"));
  ASSERT_NE(guest, nullptr);
  const uint64_t old_size = host->mapped_size();
  const uint64_t data = host->layout().SlotDataOffset(1, 2);
  std::memcpy(host->base() + data, "before the grow", 16);

  ASSERT_TRUE(host->Grow(old_size + 65536).ok());
  std::memcpy(host->base() + old_size + 4000, "in the new area", 16);
  absl::StatusOr<bool> remapped = guest->RemapIfGrown();
  ASSERT_TRUE(remapped.ok()) << remapped.status();
  ASSERT_TRUE(*remapped);

  EXPECT_STREQ(reinterpret_cast<const char*>(guest->base() + data), "before the grow");
  EXPECT_STREQ(reinterpret_cast<const char*>(guest->base() + old_size + 4000), "in the new area");
  // And the other way: the guest's writes in the new area reach the host.
  std::memcpy(guest->base() + old_size + 65000, "from the guest", 15);
  EXPECT_STREQ(reinterpret_cast<const char*>(host->base() + old_size + 65000), "from the guest");
  // Views built after the remap work on the new mapping.
  EXPECT_TRUE(guest->GuestToHostRing(0).IsEmpty());
}

TEST(Segment, C_G5_HostRemovesTheFileOnShutdownAndAGuestLeavesIt) {
  TempDir dir;
  const std::string path = dir.File("seg");
  auto host = MustCreate(path, Section42Config());
  ASSERT_NE(host, nullptr);
  auto guest = MustAttach(path);
  ASSERT_NE(guest, nullptr);
  EXPECT_EQ(ShmErrcOf(guest->Unlink()), ShmErrc::kWrongState);
  guest.reset();
  EXPECT_TRUE(Exists(path)) << "a detaching guest removed the file";
  host.reset();
  EXPECT_FALSE(Exists(path)) << "the host did not remove the file";
}

TEST(Segment, C_G5_HostNeverRemovesAFileThatIsNoLongerItsOwn) {
  TempDir dir;
  const std::string path = dir.File("seg");
  auto first = MustCreate(path, Section42Config());
  ASSERT_NE(first, nullptr);
  ASSERT_TRUE(first->Unlink().ok());
  EXPECT_FALSE(Exists(path));
  // The path stays the first host's (its lock) even without its file...
  EXPECT_EQ(ShmErrcOf(Segment::Create(path, Section42Config()).status()), ShmErrc::kLiveSegment);
  // ...and another file put there is not removed with it.
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  ASSERT_GE(fd, 0);
  ::close(fd);
  first.reset();
  EXPECT_TRUE(Exists(path)) << "the first host removed a file that was not its own";
  auto second = MustCreate(path, Section42Config());
  ASSERT_NE(second, nullptr) << "the path is free once the first host is gone";
  second.reset();
  EXPECT_FALSE(Exists(path));
}

TEST(Segment, C_G6_GuestRefusesToRemapAFileShorterThanCurrentSize) {
  TempDir dir;
  auto host = MustCreate(dir.File("seg"), Section42Config());
  ASSERT_NE(host, nullptr);
  auto guest = MustAttach(dir.File("seg"));
  ASSERT_NE(guest, nullptr);
  const uint64_t size = host->mapped_size();
  uint8_t* mapping = guest->base();
  // A hostile or half-finished grow: current_size says more than the file has.
  Write<uint64_t>(host->base(), offsetof(SegmentHeader, current_size), size + 4096);
  absl::StatusOr<bool> r = guest->RemapIfGrown();
  EXPECT_EQ(ShmErrcOf(r.status()), ShmErrc::kFileShorterThanSegment) << r.status();
  EXPECT_EQ(static_cast<uint64_t>(StatPath(dir.File("seg")).st_size), size);
  EXPECT_EQ(guest->mapped_size(), size);
  EXPECT_EQ(guest->base(), mapping);
  Write<uint64_t>(host->base(), offsetof(SegmentHeader, current_size), UINT64_MAX);
  EXPECT_EQ(ShmErrcOf(guest->RemapIfGrown().status()), ShmErrc::kFileShorterThanSegment);
  EXPECT_EQ(static_cast<uint64_t>(StatPath(dir.File("seg")).st_size), size);
}

// ---- Attach -----------------------------------------------------------------------

TEST(Segment, AttachFdDuplicatesTheDescriptorAndSeesTheHostsSegment) {
  TempDir dir;
  auto host = MustCreate(dir.File("seg"), Section41Config());
  ASSERT_NE(host, nullptr);
  const int fd = ::open(dir.File("seg").c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  absl::StatusOr<std::unique_ptr<Segment>> guest = Segment::AttachFd(fd);
  ::close(fd);
  ASSERT_TRUE(guest.ok()) << guest.status();
  const Segment& g = **guest;
  EXPECT_FALSE(g.is_host());
  EXPECT_NE(g.fd(), fd);
  EXPECT_TRUE(g.path().empty());
  EXPECT_NE(::fcntl(g.fd(), F_GETFD) & FD_CLOEXEC, 0);
  EXPECT_EQ(g.mapped_size(), 206528u);
  EXPECT_EQ(g.layout().var_pool_offset, host->layout().var_pool_offset);
  EXPECT_EQ(g.layout().total_size, host->layout().total_size);
  EXPECT_EQ(g.max_payload_size(), 65536u);
  EXPECT_EQ(g.heartbeat_interval_ns(), 100'000'000u);
  // A slot written by the host is visible through the guest's own mapping.
  absl::StatusOr<SlotRef> ref = host->pool().Allocate(100, kHostPeerId);
  ASSERT_TRUE(ref.ok()) << ref.status();
  absl::StatusOr<absl::Span<uint8_t>> slot = host->pool().SlotData(*ref);
  ASSERT_TRUE(slot.ok());
  std::memcpy(slot->data(), "via fd", 7);
  absl::StatusOr<absl::Span<uint8_t>> seen = g.pool().SlotData(*ref);
  ASSERT_TRUE(seen.ok());
  EXPECT_STREQ(reinterpret_cast<const char*>(seen->data()), "via fd");
}

TEST(Segment, HostAndGuestViewsAddressTheSameRingsAndEntries) {
  TempDir dir;
  auto host = MustCreate(dir.File("seg"), Section42Config());
  ASSERT_NE(host, nullptr);
  auto guest = MustAttach(dir.File("seg"));
  ASSERT_NE(guest, nullptr);
  absl::StatusOr<Occupancy> taken = guest->peers().AttachFirstFree();
  ASSERT_TRUE(taken.ok()) << taken.status();
  EXPECT_EQ(taken->peer_id, 1u);
  absl::StatusOr<PeerEntryView> entry = host->peers().Entry(1);
  ASSERT_TRUE(entry.ok());
  EXPECT_TRUE(entry->State().Is(PeerState::kAttached));

  BipBuffer g2h = guest->GuestToHostRing(2);
  absl::StatusOr<absl::Span<uint8_t>> grant = g2h.TryGrant(8);
  ASSERT_TRUE(grant.ok()) << grant.status();
  std::memcpy(grant->data(), "peer 3!", 8);
  ASSERT_TRUE(g2h.Commit(8).ok());
  absl::StatusOr<absl::Span<const uint8_t>> read = host->GuestToHostRing(2).TryRead();
  ASSERT_TRUE(read.ok()) << read.status();
  ASSERT_EQ(read->size(), 8u);
  EXPECT_EQ(std::memcmp(read->data(), "peer 3!", 8), 0);
  EXPECT_TRUE(host->HostToGuestRing(2).IsEmpty());
  EXPECT_EQ(reinterpret_cast<const uint8_t*>(read->data()) - host->base(),
            static_cast<ptrdiff_t>(host->layout().GuestToHostHeader(2) + kRingHeaderSize));
}

}  // namespace
}  // namespace shmhub::shm
