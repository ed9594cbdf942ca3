// C-B22: two forked processes stream a million records of random sizes through
// one ring in MAP_SHARED memory, wrapping thousands of times. Every record
// carries its sequence number and a checksum of its payload, and both sides
// keep an order-sensitive running checksum: a record lost, duplicated,
// reordered or read stale (the wrap race of §6.8) fails the test.
//
// The records are this test's own (length, tag, sequence, checksum, payload),
// not the §7 framing, so the ring is tested on its own.
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <time.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>

#include "gtest/gtest.h"
#include "shm/bip_buffer.h"
#include "shm/format.h"
#include "shm/shm_error.h"
#include "tests/testing/child_process.h"

namespace shmhub::shm {
namespace {

constexpr uint64_t kRecords = 1'000'000;
constexpr uint32_t kCapacity = 32 * 1024;
// Lengths straddle the 256-byte inline threshold and stay below capacity / 2,
// so every record fits an empty ring wherever `read` stands (§6.3).
constexpr uint32_t kMinRecord = 24;
constexpr uint32_t kSmallMax = 256;
constexpr uint32_t kMaxRecord = 1500;
constexpr uint64_t kSeed = 0x5EEDB1B00FF5E7ULL;
constexpr uint32_t kTag = 0xB1B0C0DE;
// A child gives up (and fails) after this; the parent kills both after
// kParentDeadlineNs. Both are far above the expected few seconds.
constexpr int64_t kChildDeadlineNs = 90'000'000'000;
constexpr int64_t kParentDeadlineNs = 120'000'000'000;

struct RecordHeader {
  uint32_t length;  // whole record, header included
  uint32_t tag;
  uint64_t seq;
  uint64_t checksum;  // of the payload bytes
};
static_assert(sizeof(RecordHeader) == kMinRecord);

// Shared between the parent and both children; accessed with atomic_ref.
struct Control {
  uint64_t producer_exited;
  uint64_t consumer_exited;
  uint64_t producer_sum;
  uint64_t consumer_sum;
  uint64_t consumer_records;
  uint64_t producer_wraps;
  uint64_t producer_full;
  uint64_t consumer_stalls;
  char producer_error[256];
  char consumer_error[256];
};

constexpr size_t kRingOffset = 4096;  // page-aligned, after Control
constexpr size_t kMappingSize = kRingOffset + sizeof(RingHeader) + kCapacity;
static_assert(sizeof(Control) <= kRingOffset);

int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

void Store(uint64_t& word, uint64_t value) {
  // Release: the parent reads the other fields after seeing the exit flag.
  std::atomic_ref<uint64_t>(word).store(value, std::memory_order_release);
}
uint64_t Load(uint64_t& word) {
  return std::atomic_ref<uint64_t>(word).load(std::memory_order_acquire);
}

uint64_t SplitMix(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

uint64_t Absorb(uint64_t h, uint64_t word) {
  h = (h ^ word) * 0x100000001B3ULL;
  return h ^ (h >> 29);
}

// Both sides draw the same lengths from the same seed, so the consumer also
// checks each record's length.
class Lengths {
 public:
  Lengths() : rng_(kSeed) {}
  uint32_t Next() {
    if (std::uniform_int_distribution<int>(0, 9)(rng_) < 7) {
      return std::uniform_int_distribution<uint32_t>(kMinRecord, kSmallMax)(rng_);
    }
    return std::uniform_int_distribution<uint32_t>(kSmallMax + 1, kMaxRecord)(rng_);
  }

 private:
  std::mt19937_64 rng_;
};

// Fills `out` with bytes derived from `seq` and returns their checksum.
uint64_t FillPayload(uint64_t seq, uint8_t* out, size_t size) {
  uint64_t state = seq ^ kSeed;
  uint64_t h = seq;
  size_t i = 0;
  for (; i + 8 <= size; i += 8) {
    const uint64_t word = SplitMix(state);
    std::memcpy(out + i, &word, 8);
    h = Absorb(h, word);
  }
  if (i < size) {
    uint64_t word = SplitMix(state);
    word &= ~uint64_t{0} >> (8 * (8 - (size - i)));
    std::memcpy(out + i, &word, size - i);
    h = Absorb(h, word);
  }
  return h;
}

uint64_t ChecksumPayload(uint64_t seq, const uint8_t* in, size_t size) {
  uint64_t h = seq;
  size_t i = 0;
  for (; i + 8 <= size; i += 8) {
    uint64_t word;
    std::memcpy(&word, in + i, 8);
    h = Absorb(h, word);
  }
  if (i < size) {
    uint64_t word = 0;
    std::memcpy(&word, in + i, size - i);
    h = Absorb(h, word);
  }
  return h;
}

// Order-sensitive fold of every record's checksum.
uint64_t Fold(uint64_t running, uint64_t checksum) { return Absorb(running * 31 + 7, checksum); }

struct Shared {
  Control* control;
  RingHeader* header;
  uint8_t* data;
};

int Fail(char (&error)[256], int code, const std::string& what) {
  std::snprintf(error, sizeof(error), "%s", what.c_str());
  return code;
}

int RunProducer(const Shared& shared) {
  BipBuffer ring(shared.header, shared.data, kCapacity);
  Lengths lengths;
  const int64_t deadline = NowNs() + kChildDeadlineNs;
  uint64_t running = 0;
  uint64_t wraps = 0;
  uint64_t full = 0;
  uint32_t end = 0;  // where the last grant ended
  for (uint64_t seq = 0; seq < kRecords; ++seq) {
    const uint32_t length = lengths.Next();
    absl::StatusOr<absl::Span<uint8_t>> grant = ring.TryGrant(length);
    while (!grant.ok()) {
      if (ShmErrcOf(grant.status()) != ShmErrc::kRingFull) {
        return Fail(shared.control->producer_error, 2, std::string(grant.status().message()));
      }
      if (NowNs() > deadline) return Fail(shared.control->producer_error, 3, "deadline");
      // Stop early if the consumer gave up; its error is the one that matters.
      if (Load(shared.control->consumer_exited) != 0) {
        return Fail(shared.control->producer_error, 10, "consumer exited");
      }
      ++full;
      sched_yield();
      grant = ring.TryGrant(length);
    }
    if (grant->data() == shared.data && end != 0) ++wraps;
    end = static_cast<uint32_t>(grant->data() - shared.data) + length;
    RecordHeader header{length, kTag, seq, 0};
    header.checksum = FillPayload(seq, grant->data() + kMinRecord, length - kMinRecord);
    std::memcpy(grant->data(), &header, sizeof(header));
    running = Fold(running, header.checksum);
    absl::Status commit = ring.Commit(length);
    if (!commit.ok()) return Fail(shared.control->producer_error, 4, std::string(commit.message()));
  }
  Store(shared.control->producer_sum, running);
  Store(shared.control->producer_wraps, wraps);
  Store(shared.control->producer_full, full);
  return 0;
}

int RunConsumer(const Shared& shared) {
  BipBuffer ring(shared.header, shared.data, kCapacity);
  Lengths lengths;
  const int64_t deadline = NowNs() + kChildDeadlineNs;
  uint64_t running = 0;
  uint64_t stalls = 0;
  uint64_t expected = 0;
  bool producer_gone = false;
  while (expected < kRecords) {
    if (NowNs() > deadline) return Fail(shared.control->consumer_error, 3, "deadline");
    absl::StatusOr<absl::Span<const uint8_t>> span = ring.TryRead();
    if (!span.ok()) {
      if (ShmErrcOf(span.status()) == ShmErrc::kRingStalled) {
        ++stalls;
        continue;
      }
      return Fail(shared.control->consumer_error, 2, std::string(span.status().message()));
    }
    if (span->empty()) {
      // One more read after seeing the producer's exit (acquire) sees all it
      // committed; still nothing means records went missing.
      if (producer_gone) {
        return Fail(shared.control->consumer_error, 11,
                    "producer exited, seq " + std::to_string(expected) + " never arrived");
      }
      producer_gone = Load(shared.control->producer_exited) != 0;
      sched_yield();
      continue;
    }
    size_t off = 0;
    while (off < span->size()) {
      RecordHeader header;
      if (span->size() - off < sizeof(header)) {
        return Fail(shared.control->consumer_error, 5,
                    "partial record at seq " + std::to_string(expected));
      }
      std::memcpy(&header, span->data() + off, sizeof(header));
      const uint32_t length = lengths.Next();
      if (header.tag != kTag || header.seq != expected || header.length != length ||
          header.length > span->size() - off) {
        return Fail(shared.control->consumer_error, 6,
                    "expected seq " + std::to_string(expected) + " length " +
                        std::to_string(length) + ", got seq " + std::to_string(header.seq) +
                        " length " + std::to_string(header.length) + " tag " +
                        std::to_string(header.tag));
      }
      const uint64_t checksum =
          ChecksumPayload(expected, span->data() + off + kMinRecord, length - kMinRecord);
      if (checksum != header.checksum) {
        return Fail(shared.control->consumer_error, 7,
                    "bad payload in seq " + std::to_string(expected));
      }
      running = Fold(running, checksum);
      off += length;
      ++expected;
    }
    absl::Status release = ring.Release(static_cast<uint32_t>(off));
    if (!release.ok()) {
      return Fail(shared.control->consumer_error, 8, std::string(release.message()));
    }
  }
  // Nothing may follow the last record, once the producer is done.
  while (Load(shared.control->producer_exited) == 0) {
    if (NowNs() > deadline) return Fail(shared.control->consumer_error, 3, "deadline at the end");
    sched_yield();
  }
  absl::StatusOr<absl::Span<const uint8_t>> rest = ring.TryRead();
  if (!rest.ok() || !rest->empty() || !ring.IsEmpty()) {
    return Fail(shared.control->consumer_error, 9, "bytes after the last record");
  }
  Store(shared.control->consumer_sum, running);
  Store(shared.control->consumer_records, expected);
  Store(shared.control->consumer_stalls, stalls);
  return 0;
}

TEST(BipBufferStress, C_B22_TwoProcessesStreamAMillionRecordsLosslesslyInOrder) {
  void* mapping =
      mmap(nullptr, kMappingSize, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(mapping, MAP_FAILED);
  auto* base = static_cast<uint8_t*>(mapping);
  const Shared shared{reinterpret_cast<Control*>(base),
                      reinterpret_cast<RingHeader*>(base + kRingOffset),
                      base + kRingOffset + sizeof(RingHeader)};
  BipBuffer::Init(shared.header, kCapacity);

  const int64_t start = NowNs();
  shmhub::testing::ChildProcess producer([&shared] {
    const int code = RunProducer(shared);
    Store(shared.control->producer_exited, 1);
    return code;
  });
  shmhub::testing::ChildProcess consumer([&shared] {
    const int code = RunConsumer(shared);
    Store(shared.control->consumer_exited, 1);
    return code;
  });

  const int64_t deadline = start + kParentDeadlineNs;
  while (
      (Load(shared.control->producer_exited) == 0 || Load(shared.control->consumer_exited) == 0) &&
      NowNs() < deadline) {
    timespec nap{0, 10'000'000};
    nanosleep(&nap, nullptr);
  }
  const bool in_time = NowNs() < deadline;
  if (!in_time) {
    producer.Signal(SIGKILL);
    consumer.Signal(SIGKILL);
  }
  const int producer_code = producer.Wait();
  const int consumer_code = consumer.Wait();
  const double seconds = static_cast<double>(NowNs() - start) / 1e9;

  EXPECT_TRUE(in_time) << "children still running after the deadline";
  EXPECT_EQ(consumer_code, 0) << shared.control->consumer_error;
  EXPECT_EQ(producer_code, 0) << shared.control->producer_error;
  EXPECT_EQ(Load(shared.control->consumer_records), kRecords);
  EXPECT_NE(Load(shared.control->producer_sum), 0u);
  EXPECT_EQ(Load(shared.control->consumer_sum), Load(shared.control->producer_sum));
  EXPECT_GE(Load(shared.control->producer_wraps), 1000u);
  RecordProperty("seconds", std::to_string(seconds));
  RecordProperty("wraps", std::to_string(Load(shared.control->producer_wraps)));
  RecordProperty("full", std::to_string(Load(shared.control->producer_full)));
  RecordProperty("stalls", std::to_string(Load(shared.control->consumer_stalls)));
  std::printf("%.2f s, %llu wraps, %llu full, %llu guard stalls\n", seconds,
              static_cast<unsigned long long>(Load(shared.control->producer_wraps)),
              static_cast<unsigned long long>(Load(shared.control->producer_full)),
              static_cast<unsigned long long>(Load(shared.control->consumer_stalls)));
  ASSERT_EQ(munmap(mapping, kMappingSize), 0);
}

}  // namespace
}  // namespace shmhub::shm
