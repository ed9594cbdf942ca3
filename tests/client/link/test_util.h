// Helpers for the data-plane link tests: a host segment in a private
// directory with one attached guest and the two RingLinks over its ring
// pair (a guest link and a host link in one process), deterministic payloads
// and their checksums, and a look at a doorbell socket's queue.
#ifndef SHMHUB_TESTS_CLIENT_LINK_TEST_UTIL_H_
#define SHMHUB_TESTS_CLIENT_LINK_TEST_UTIL_H_

#include <sys/ioctl.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "client/host/host_link.h"
#include "client/link/ring_link.h"
#include "gtest/gtest.h"
#include "shm/doorbell.h"
#include "shm/mapping_control.h"
#include "shm/segment.h"
#include "shm/unique_fd.h"
#include "tests/testing/temp_dir.h"

namespace shmhub::client::link_test {

// Small enough to fill quickly: a 4 KiB ring per direction, three slot
// classes (largest payload in a slot: 4092 bytes), and payloads up to 8 MiB.
inline shm::SegmentConfig SmallConfig() {
  shm::SegmentConfig config;
  config.max_guests = 2;
  config.ring_capacity = 4096;
  config.classes = {{64, 8}, {1024, 8}, {4096, 4}};
  config.max_payload_size = 8u << 20;
  return config;
}

inline constexpr uint32_t kLargestSlotPayload = 4096 - 4;

// splitmix64: cheap, well-mixed bytes that any process can regenerate.
inline uint64_t Mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// `size` bytes determined by `seed`.
inline void FillPattern(uint64_t seed, absl::Span<uint8_t> out) {
  uint64_t state = Mix(seed);
  size_t i = 0;
  for (; i + 8 <= out.size(); i += 8) {
    state = Mix(state);
    std::memcpy(out.data() + i, &state, 8);
  }
  state = Mix(state);
  for (; i < out.size(); ++i) out[i] = static_cast<uint8_t>(state >> (8 * (i % 8)));
}

inline std::vector<uint8_t> Pattern(uint64_t seed, size_t size) {
  std::vector<uint8_t> bytes(size);
  FillPattern(seed, absl::MakeSpan(bytes));
  return bytes;
}

// FNV-1a over 8-byte words (then the tail bytes): a checksum cheap enough
// for a million frames.
inline uint64_t Checksum(absl::Span<const uint8_t> bytes) {
  uint64_t h = 0xCBF29CE484222325ull ^ bytes.size();
  size_t i = 0;
  for (; i + 8 <= bytes.size(); i += 8) {
    uint64_t word;
    std::memcpy(&word, bytes.data() + i, 8);
    h = (h ^ word) * 0x100000001B3ull;
  }
  for (; i < bytes.size(); ++i) h = (h ^ bytes[i]) * 0x100000001B3ull;
  return h;
}

// Bytes queued on a socket and not yet read: the rings a doorbell end has
// received (FIONREAD on a duplicate of it sees the same queue).
inline int QueuedBytes(int fd) {
  int queued = -1;
  if (::ioctl(fd, FIONREAD, &queued) != 0) return -1;
  return queued;
}

// Every pool class at its configured free count.
inline void ExpectPoolFull(const shm::Segment& segment) {
  shm::VarSlotPool pool = segment.pool();
  for (uint32_t k = 0; k < pool.num_classes(); ++k) {
    absl::StatusOr<uint32_t> free = pool.FreeCount(k);
    ASSERT_TRUE(free.ok()) << free.status();
    EXPECT_EQ(*free, pool.class_config(k).slot_count) << "class " << k;
  }
}

struct PairOptions {
  bool doorbells = true;
  bool mapping_control = true;
  LinkOptions link;
};

// A host segment with one attached guest and both ends of its link. The
// test keeps duplicates of the doorbell ends (to count rings and to hang
// them up) and of the mapping-control ends (to play a hostile peer).
class LinkPairFixture : public ::testing::Test {
 protected:
  void Build(const PairOptions& options = {}, const shm::SegmentConfig& config = SmallConfig()) {
    absl::StatusOr<std::unique_ptr<shm::Segment>> segment =
        shm::Segment::Create(dir_.File("segment"), config);
    ASSERT_TRUE(segment.ok()) << segment.status();
    segment_ = *std::move(segment);
    absl::StatusOr<shm::Occupancy> taken = segment_->peers().AttachFirstFree();
    ASSERT_TRUE(taken.ok()) << taken.status();
    peer_id_ = taken->peer_id;
    epoch_ = taken->epoch;

    LinkEndpoints guest{segment_.get(), peer_id_, epoch_, LinkSide::kGuest, std::nullopt, {}};
    LinkEndpoints host{segment_.get(), peer_id_, epoch_, LinkSide::kHost, std::nullopt, {}};
    if (options.doorbells) {
      absl::StatusOr<std::pair<shm::Doorbell, shm::Doorbell>> pair = shm::Doorbell::CreatePair();
      ASSERT_TRUE(pair.ok()) << pair.status();
      host_doorbell_ = *shm::DupCloexec(pair->first.fd());
      guest_doorbell_ = *shm::DupCloexec(pair->second.fd());
      host.doorbell = std::move(pair->first);
      guest.doorbell = std::move(pair->second);
    }
    if (options.mapping_control) {
      absl::StatusOr<std::pair<shm::UniqueFd, shm::UniqueFd>> pair =
          shm::CreateMappingControlPair();
      ASSERT_TRUE(pair.ok()) << pair.status();
      host_mapping_ = *shm::DupCloexec(pair->first.get());
      guest_mapping_ = *shm::DupCloexec(pair->second.get());
      host.mapping_control = std::move(pair->first);
      guest.mapping_control = std::move(pair->second);
    }
    absl::StatusOr<std::unique_ptr<RingLink>> guest_link =
        RingLink::Create(std::move(guest), options.link);
    ASSERT_TRUE(guest_link.ok()) << guest_link.status();
    guest_ = *std::move(guest_link);
    absl::StatusOr<std::unique_ptr<RingLink>> host_link =
        HostLink::Create(segment_.get(), {peer_id_, epoch_}, std::move(host.doorbell),
                         std::move(host.mapping_control), options.link);
    ASSERT_TRUE(host_link.ok()) << host_link.status();
    host_ = *std::move(host_link);
  }

  // Rings waiting at each end (sent by the other side, not yet drained).
  int RingsQueuedAtHost() const { return QueuedBytes(host_doorbell_.get()); }
  int RingsQueuedAtGuest() const { return QueuedBytes(guest_doorbell_.get()); }

  shmhub::testing::TempDir dir_;
  std::unique_ptr<shm::Segment> segment_;
  uint32_t peer_id_ = 0;
  uint32_t epoch_ = 0;
  // Duplicates of the ends the links hold.
  shm::UniqueFd host_doorbell_;
  shm::UniqueFd guest_doorbell_;
  shm::UniqueFd host_mapping_;
  shm::UniqueFd guest_mapping_;
  std::unique_ptr<RingLink> guest_;
  std::unique_ptr<RingLink> host_;
};

inline absl::Span<const uint8_t> Bytes(const std::vector<uint8_t>& v) {
  return absl::MakeConstSpan(v);
}

inline std::vector<uint8_t> Copy(absl::Span<const uint8_t> span) {
  return std::vector<uint8_t>(span.begin(), span.end());
}

}  // namespace shmhub::client::link_test

#endif  // SHMHUB_TESTS_CLIENT_LINK_TEST_UTIL_H_
