// Writes the seed corpus of ring_reader_fuzzer into the directory given as
// argv[1]: rings (128-byte header + data) filled by the real producer with
// every kind of entry, in unwrapped and wrapped states, plus one ring for
// each refusal of §7.7 and for each corrupt or stalled header of C-B19 and
// C-B20, so the fuzzer starts next to every check of the drain loop. Run by
// the build (fuzz/CMakeLists.txt); the seeds are build products, never
// committed.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "shm/bip_buffer.h"
#include "shm/format.h"
#include "shm/frame.h"

namespace shmhub::shm {
namespace {

using Bytes = std::vector<uint8_t>;

Bytes Inline(const std::string& payload) {
  Bytes entry(InlineFrameSize(static_cast<uint32_t>(payload.size())));
  const absl::Span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(payload.data()),
                                        payload.size());
  if (!WriteInlineFrame(absl::MakeSpan(entry), bytes).ok()) entry.clear();
  return entry;
}

Bytes SlotRefEntry() {
  Bytes entry(kSlotRefFrameSize);
  if (!WriteSlotRefFrame(absl::MakeSpan(entry), SlotRef{1, 0, 5, 9}).ok()) entry.clear();
  return entry;
}

Bytes MmapRefEntry() {
  Bytes entry(kMmapRefFrameSize);
  if (!WriteMmapRefFrame(absl::MakeSpan(entry), MmapRef{2, 0, 4096, 100}).ok()) entry.clear();
  return entry;
}

// Raw header bytes with the given total_len and flags, `span` bytes long.
Bytes RawEntry(uint32_t total_len, uint8_t flags, uint16_t inline_len, size_t span) {
  Bytes entry(span, 0);
  FrameHeader header{total_len, flags, 0, inline_len};
  std::memcpy(entry.data(), &header, std::min(span, sizeof header));
  return entry;
}

// A ring in process memory driven through the real BipBuffer.
class SeedRing {
 public:
  explicit SeedRing(uint32_t capacity) : data_(capacity), ring_(&header_, data_.data(), capacity) {
    BipBuffer::Init(&header_, capacity);
  }

  bool Put(const Bytes& entry) {
    const uint32_t n = static_cast<uint32_t>(entry.size());
    absl::StatusOr<absl::Span<uint8_t>> grant = ring_.TryGrant(n);
    if (entry.empty() || !grant.ok()) return false;
    std::memcpy(grant->data(), entry.data(), n);
    return ring_.Commit(n).ok();
  }

  // Reads and releases `count` entries, as the host's drain loop would.
  bool Consume(int count) {
    for (int i = 0; i < count; ++i) {
      absl::StatusOr<absl::Span<const uint8_t>> readable = ring_.TryRead();
      if (!readable.ok()) return false;
      absl::StatusOr<Frame> frame = ParseFrame(*readable);
      if (!frame.ok() || !ring_.Release(frame->total_len).ok()) return false;
    }
    return true;
  }

  RingHeader& header() { return header_; }

  Bytes Serialize() const {
    Bytes out(sizeof header_ + data_.size());
    std::memcpy(out.data(), &header_, sizeof header_);
    std::memcpy(out.data() + sizeof header_, data_.data(), data_.size());
    return out;
  }

 private:
  RingHeader header_{};
  Bytes data_;
  BipBuffer ring_;
};

struct Seed {
  const char* name;
  std::function<bool(SeedRing&)> fill;
  uint32_t capacity;
};

std::vector<Seed> Seeds() {
  auto put_one = [](Bytes entry) { return [entry](SeedRing& r) { return r.Put(entry); }; };
  auto corrupt = [](uint32_t write, uint32_t watermark, uint32_t read) {
    return [=](SeedRing& r) {
      r.header().write = write;
      r.header().watermark = watermark;
      r.header().read = read;
      return true;
    };
  };
  return {
      {"every-kind",
       [](SeedRing& r) {
         return r.Put(Inline("hello")) && r.Put(SlotRefEntry()) && r.Put(MmapRefEntry()) &&
                r.Put(Inline(""));
       },
       128},
      {"wrapped",
       [](SeedRing& r) {
         return r.Put(Inline("0123456")) && r.Put(Inline("abcdefg")) && r.Put(Inline("ABCDEFG")) &&
                r.Consume(2) && r.Put(Inline("wrapped entry!"));
       },
       64},
      {"wrapped-odd-capacity",
       [](SeedRing& r) {
         return r.Put(SlotRefEntry()) && r.Put(MmapRefEntry()) && r.Put(SlotRefEntry()) &&
                r.Put(Inline("tail")) && r.Consume(3) && r.Put(MmapRefEntry());
       },
       100},
      {"inline-len-zero", put_one(RawEntry(16, 0, 0, 16)), 64},
      {"both-flags", put_one(RawEntry(32, 0x03, 0, 32)), 64},
      {"total-len-9", put_one(RawEntry(9, 0, 0, 12)), 64},
      {"total-len-4", put_one(RawEntry(4, 0, 0, 8)), 64},
      {"total-len-0", put_one(RawEntry(0, 0, 0, 12)), 64},
      {"beyond-span", put_one(RawEntry(16, 0, 0, 12)), 64},
      {"short-slot-ref", put_one(RawEntry(16, kFrameFlagSlotRef, 0, 16)), 64},
      {"short-mmap-ref", put_one(RawEntry(28, kFrameFlagMmapRef, 0, 28)), 64},
      {"long-slot-ref", put_one(RawEntry(24, kFrameFlagSlotRef, 0, 24)), 64},
      {"bad-inline-len", put_one(RawEntry(16, 0, 9, 16)), 64},
      {"incomplete", put_one(RawEntry(8, 0, 0, 4)), 64},
      {"write-beyond-capacity", corrupt(40, 0, 0), 32},
      {"read-beyond-capacity", corrupt(0, 0, 40), 32},
      {"watermark-beyond-capacity", corrupt(0, 40, 8), 32},
      {"read-beyond-watermark", corrupt(4, 16, 24), 32},
      {"stalled-wrap", corrupt(24, 24, 24), 32},
  };
}

bool WriteFile(const std::string& path, const Bytes& bytes) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return false;
  const bool ok = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
  return std::fclose(f) == 0 && ok;
}

int Run(const std::string& out) {
  int written = 0;
  for (const Seed& seed : Seeds()) {
    SeedRing ring(seed.capacity);
    if (!seed.fill(ring)) {
      std::fprintf(stderr, "ring_reader_seeds: cannot build seed %s\n", seed.name);
      return 1;
    }
    if (!WriteFile(out + "/" + seed.name, ring.Serialize())) {
      std::perror("ring_reader_seeds: write");
      return 1;
    }
    ++written;
  }
  std::printf("ring_reader_seeds: %d seeds in %s\n", written, out.c_str());
  return 0;
}

}  // namespace
}  // namespace shmhub::shm

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUTPUT_DIR\n", argv[0]);
    return 2;
  }
  return shmhub::shm::Run(argv[1]);
}
