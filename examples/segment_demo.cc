// Creates a hub segment with shmhubd's default geometry, prints where
// everything lives, and removes it again. Stands in for the daemon in
// `scripts/run.sh` until shmhubd exists; also a short tour of shm/.
//
//   segment_demo [PATH]        default PATH: /dev/shm/shmhub
#include <cstdio>
#include <string>

#include "shm/segment.h"

namespace {

// shmhubd's defaults (server/config/hub_config.h).
shmhub::shm::SegmentConfig DefaultConfig() {
  shmhub::shm::SegmentConfig config;
  config.max_guests = 64;
  config.ring_capacity = 65536;
  config.classes = {{1024, 256}, {16384, 64}, {262144, 8}};
  config.max_payload_size = 1 << 20;
  config.inline_threshold = 0;
  config.heartbeat_interval_ns = 100'000'000;
  config.mode = 0660;
  return config;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string path = argc > 1 ? argv[1] : "/dev/shm/shmhub";
  auto segment = shmhub::shm::Segment::Create(path, DefaultConfig());
  if (!segment.ok()) {
    std::fprintf(stderr, "segment_demo: cannot create %s: %s\n", path.c_str(),
                 segment.status().ToString().c_str());
    return 1;
  }
  const shmhub::shm::SegmentLayout& l = (*segment)->layout();
  std::printf("created %s: %llu bytes, format version 7\n", path.c_str(),
              static_cast<unsigned long long>(l.total_size));
  std::printf("  peer table   at %8llu: %u entries of 64 bytes\n",
              static_cast<unsigned long long>(l.EntryOffset(0)), l.max_guests);
  std::printf("  ring pairs   at %8llu: %u x %llu bytes (%u data bytes per direction)\n",
              static_cast<unsigned long long>(l.ring_base), l.max_guests,
              static_cast<unsigned long long>(l.pair_stride), l.ring_capacity);
  std::printf("  slot pool    at %8llu: %llu bytes\n",
              static_cast<unsigned long long>(l.var_pool_offset),
              static_cast<unsigned long long>(l.pool_size));
  for (size_t k = 0; k < l.classes.size(); ++k) {
    const auto& c = l.classes[k];
    std::printf("    class %zu: %6u slots of %7u bytes, data at %llu\n", k, c.config.slot_count,
                c.config.slot_size, static_cast<unsigned long long>(c.data_offset));
  }
  if (auto removed = (*segment)->Unlink(); !removed.ok()) {
    std::fprintf(stderr, "segment_demo: cannot remove %s: %s\n", path.c_str(),
                 removed.ToString().c_str());
    return 1;
  }
  std::printf("removed %s\n", path.c_str());
  return 0;
}
