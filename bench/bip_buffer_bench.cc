// Micro-benchmarks of the BipBuffer ring (format §6) in one thread: the
// floor under the link's per-frame cost — grant, write an inline entry,
// commit, read, parse, release — with no second process, no doorbell and no
// cache line moving between cores. The ring is shmhubd's default 64 KiB.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "absl/types/span.h"
#include "benchmark/benchmark.h"
#include "shm/bip_buffer.h"
#include "shm/format.h"
#include "shm/frame.h"

namespace shmhub::shm {
namespace {

constexpr uint32_t kCapacity = 65536;

// A ring in private, 64-byte aligned, zeroed memory.
class PrivateRing {
 public:
  PrivateRing()
      : memory_(static_cast<uint8_t*>(std::aligned_alloc(64, kRingHeaderSize + kCapacity))) {
    std::memset(memory_.get(), 0, kRingHeaderSize + kCapacity);
    BipBuffer::Init(header(), kCapacity);
  }
  BipBuffer Make() const { return BipBuffer(header(), memory_.get() + kRingHeaderSize, kCapacity); }

 private:
  struct Free {
    void operator()(uint8_t* p) const { std::free(p); }
  };
  RingHeader* header() const { return reinterpret_cast<RingHeader*>(memory_.get()); }
  std::unique_ptr<uint8_t, Free> memory_;
};

bool Produce(BipBuffer& ring, absl::Span<const uint8_t> payload) {
  const uint32_t len = InlineFrameSize(static_cast<uint32_t>(payload.size()));
  absl::StatusOr<absl::Span<uint8_t>> grant = ring.TryGrant(len);
  return grant.ok() && WriteInlineFrame(*grant, payload).ok() && ring.Commit(len).ok();
}

bool Consume(BipBuffer& ring) {
  absl::StatusOr<absl::Span<const uint8_t>> readable = ring.TryRead();
  if (!readable.ok()) return false;
  absl::StatusOr<Frame> frame = ParseFrame(*readable);
  if (!frame.ok()) return false;
  benchmark::DoNotOptimize(frame->inline_payload.data());
  return ring.Release(frame->total_len).ok();
}

// One entry in, one entry out, per iteration.
void BM_RingRoundTrip(benchmark::State& state) {
  PrivateRing memory;
  BipBuffer ring = memory.Make();
  std::vector<uint8_t> payload(static_cast<size_t>(state.range(0)), 0xA5);
  for (auto _ : state) {
    if (!Produce(ring, payload) || !Consume(ring)) {
      state.SkipWithError("ring operation failed");
      return;
    }
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_RingRoundTrip)->Arg(8)->Arg(64)->Arg(256);

// 64 entries in, then 64 out: the ring wraps as a streaming sender's does.
void BM_RingBurst64(benchmark::State& state) {
  constexpr int kBurst = 64;
  PrivateRing memory;
  BipBuffer ring = memory.Make();
  std::vector<uint8_t> payload(static_cast<size_t>(state.range(0)), 0xA5);
  for (auto _ : state) {
    for (int i = 0; i < kBurst; ++i) {
      if (!Produce(ring, payload)) {
        state.SkipWithError("produce failed");
        return;
      }
    }
    for (int i = 0; i < kBurst; ++i) {
      if (!Consume(ring)) {
        state.SkipWithError("consume failed");
        return;
      }
    }
  }
  state.SetItemsProcessed(state.iterations() * kBurst);
  state.SetBytesProcessed(state.iterations() * kBurst * state.range(0));
}
BENCHMARK(BM_RingBurst64)->Arg(8)->Arg(64)->Arg(256);

}  // namespace
}  // namespace shmhub::shm

BENCHMARK_MAIN();
