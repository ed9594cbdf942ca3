// Writes the seed corpus of segment_validation_fuzzer into the directory
// given as argv[1]: a few small valid segments made by Segment::Create, and
// each of them with one C-H8 corruption applied, so the fuzzer starts next
// to every §3 check. Run by the build (fuzz/CMakeLists.txt); the seeds are
// build products, never committed.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "shm/format.h"
#include "shm/segment.h"

namespace shmhub::shm {
namespace {

using Bytes = std::vector<uint8_t>;

template <typename T>
void Put(Bytes& b, uint64_t offset, T v) {
  if (offset + sizeof(T) <= b.size()) std::memcpy(b.data() + offset, &v, sizeof(T));
}

bool WriteFile(const std::string& path, const Bytes& b) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return false;
  const bool ok = std::fwrite(b.data(), 1, b.size(), f) == b.size();
  return std::fclose(f) == 0 && ok;
}

struct Corruption {
  const char* name;
  std::function<void(Bytes&, const SegmentLayout&)> apply;
};

std::vector<Corruption> Corruptions() {
  using L = const SegmentLayout&;
  return {
      {"short-header", [](Bytes& b, L) { b.resize(100); }},
      {"magic-zero", [](Bytes& b, L) { Put<uint64_t>(b, 0, 0); }},
      {"magic-byte7", [](Bytes& b, L) { b[7] = 0x06; }},
      {"version-6", [](Bytes& b, L) { Put<uint32_t>(b, offsetof(SegmentHeader, version), 6); }},
      {"header-size-0",
       [](Bytes& b, L) { Put<uint32_t>(b, offsetof(SegmentHeader, header_size), 0); }},
      {"max-guests-0", [](Bytes& b, L) { Put<uint32_t>(b, offsetof(SegmentHeader, max_guests), 0); }},
      {"max-guests-256",
       [](Bytes& b, L) { Put<uint32_t>(b, offsetof(SegmentHeader, max_guests), 256); }},
      {"capacity-0",
       [](Bytes& b, L) { Put<uint32_t>(b, offsetof(SegmentHeader, bipbuf_capacity), 0); }},
      {"classes-0",
       [](Bytes& b, L) { Put<uint32_t>(b, offsetof(SegmentHeader, num_var_slot_classes), 0); }},
      {"classes-257",
       [](Bytes& b, L) { Put<uint32_t>(b, offsetof(SegmentHeader, num_var_slot_classes), 257); }},
      {"peer-table-0",
       [](Bytes& b, L) { Put<uint64_t>(b, offsetof(SegmentHeader, peer_table_offset), 0); }},
      {"class-table-out-of-bounds",
       [](Bytes& b, L) { Put<uint64_t>(b, offsetof(SegmentHeader, var_pool_offset), b.size()); }},
      {"slot-size-0", [](Bytes& b, L l) { Put<uint32_t>(b, l.classes[0].header_offset, 0); }},
      {"slot-count-all-ones",
       [](Bytes& b, L l) { Put<uint32_t>(b, l.classes[0].header_offset + 4, kSlotEnd); }},
      {"layout-overflow",
       [](Bytes& b, L l) {
         Put<uint32_t>(b, l.classes[0].header_offset, UINT32_MAX);
         Put<uint32_t>(b, l.classes[0].header_offset + 4, kMaxSlotCount);
       }},
      {"total-size-plus-64",
       [](Bytes& b, L l) { Put<uint64_t>(b, offsetof(SegmentHeader, total_size), l.total_size + 64); }},
      {"current-size-below-total",
       [](Bytes& b, L l) {
         Put<uint64_t>(b, offsetof(SegmentHeader, current_size), l.total_size - 1);
       }},
      {"current-size-past-file",
       [](Bytes& b, L l) {
         Put<uint64_t>(b, offsetof(SegmentHeader, current_size), l.total_size + 64);
       }},
      {"file-shorter-than-segment", [](Bytes& b, L l) { b.resize(l.total_size - 1); }},
      {"ring-offset-plus-64",
       [](Bytes& b, L l) {
         Put<uint64_t>(b, l.EntryOffset(0) + offsetof(PeerEntry, ring_offset), l.RingOffset(0) + 64);
       }},
      {"ring-capacity-mismatch",
       [](Bytes& b, L l) {
         Put<uint32_t>(b, l.HostToGuestHeader(l.max_guests - 1) + offsetof(RingHeader, capacity),
                       l.ring_capacity + 1);
       }},
      {"state-word-7", [](Bytes& b, L l) { Put<uint32_t>(b, l.EntryOffset(0), 7); }},
  };
}

int Run(const std::string& out) {
  SegmentConfig tiny;
  tiny.max_guests = 1;
  tiny.ring_capacity = 64;
  tiny.classes = {{8, 1}};
  SegmentConfig two = tiny;
  two.max_guests = 2;
  two.ring_capacity = 128;
  two.classes = {{16, 2}, {64, 1}};
  SegmentConfig odd = tiny;
  odd.max_guests = 3;
  odd.ring_capacity = 100;
  odd.classes = {{8, 3}, {32, 2}, {128, 1}};
  const std::pair<const char*, SegmentConfig> bases[] = {{"tiny", tiny}, {"two", two}, {"odd", odd}};
  int written = 0;
  for (const auto& [name, config] : bases) {
    absl::StatusOr<std::unique_ptr<Segment>> seg = Segment::Create(out + "/segment.tmp", config);
    if (!seg.ok()) {
      std::fprintf(stderr, "segment_validation_seeds: %s\n", seg.status().ToString().c_str());
      return 1;
    }
    const Bytes good((*seg)->base(), (*seg)->base() + (*seg)->mapped_size());
    const SegmentLayout layout = (*seg)->layout();
    seg->reset();  // the host unlinks its file
    bool ok = WriteFile(out + "/" + name + "-valid", good);
    for (const Corruption& c : Corruptions()) {
      Bytes bad = good;
      c.apply(bad, layout);
      ok = ok && WriteFile(out + "/" + name + "-" + c.name, bad);
    }
    if (!ok) {
      std::perror("segment_validation_seeds: write");
      return 1;
    }
    written += 1 + static_cast<int>(Corruptions().size());
  }
  std::printf("segment_validation_seeds: %d seeds in %s\n", written, out.c_str());
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
