// Micro-benchmarks of entry framing (format §7): what the link's sender and
// receiver pay per frame for writing and parsing an entry and for choosing
// a tier, without any ring or second process. Single-threaded; Google
// Benchmark bounds every loop by its own time and iteration limits.
#include <cstdint>
#include <vector>

#include "absl/types/span.h"
#include "benchmark/benchmark.h"
#include "shm/format.h"
#include "shm/frame.h"
#include "shm/slot_ref.h"

namespace shmhub::shm {
namespace {

// shmhubd's default geometry (server/config/hub_config.h).
TierPolicy DefaultPolicy() {
  TierPolicy policy;
  policy.inline_threshold = kDefaultInlineThreshold;
  policy.max_payload_size = 1u << 20;
  policy.ring_capacity = 65536;
  policy.max_slot_size = 262144;
  return policy;
}

void BM_WriteInlineFrame(benchmark::State& state) {
  const uint32_t len = static_cast<uint32_t>(state.range(0));
  std::vector<uint8_t> payload(len, 0xA5);
  std::vector<uint8_t> entry(InlineFrameSize(len));
  for (auto _ : state) {
    benchmark::DoNotOptimize(WriteInlineFrame(absl::MakeSpan(entry), payload));
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * len);
}
BENCHMARK(BM_WriteInlineFrame)->Arg(8)->Arg(64)->Arg(256);

void BM_ParseInlineFrame(benchmark::State& state) {
  const uint32_t len = static_cast<uint32_t>(state.range(0));
  std::vector<uint8_t> payload(len, 0xA5);
  std::vector<uint8_t> entry(InlineFrameSize(len));
  if (!WriteInlineFrame(absl::MakeSpan(entry), payload).ok()) {
    state.SkipWithError("WriteInlineFrame failed");
    return;
  }
  for (auto _ : state) {
    absl::StatusOr<Frame> frame = ParseFrame(entry);
    benchmark::DoNotOptimize(frame);
  }
}
BENCHMARK(BM_ParseInlineFrame)->Arg(8)->Arg(64)->Arg(256);

void BM_ParseSlotRefFrame(benchmark::State& state) {
  std::vector<uint8_t> entry(kSlotRefFrameSize);
  if (!WriteSlotRefFrame(absl::MakeSpan(entry), SlotRef{2, 0, 7, 42}).ok()) {
    state.SkipWithError("WriteSlotRefFrame failed");
    return;
  }
  for (auto _ : state) {
    absl::StatusOr<Frame> frame = ParseFrame(entry);
    benchmark::DoNotOptimize(frame);
  }
}
BENCHMARK(BM_ParseSlotRefFrame);

void BM_ChooseTier(benchmark::State& state) {
  const TierPolicy policy = DefaultPolicy();
  // One size per tier and the boundaries between them.
  const uint32_t sizes[] = {8, 256, 257, 4096, 262140, 262141, 1u << 20};
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(ChooseTier(sizes[i], policy));
    i = i + 1 == sizeof(sizes) / sizeof(sizes[0]) ? 0 : i + 1;
  }
}
BENCHMARK(BM_ChooseTier);

void BM_WriteReadSlotPayload(benchmark::State& state) {
  const uint32_t len = static_cast<uint32_t>(state.range(0));
  std::vector<uint8_t> payload(len, 0xA5);
  std::vector<uint8_t> slot(SlotBytesFor(len));
  for (auto _ : state) {
    benchmark::DoNotOptimize(WriteSlotPayload(absl::MakeSpan(slot), payload));
    benchmark::ClobberMemory();
    absl::StatusOr<absl::Span<const uint8_t>> read = ReadSlotPayload(slot);
    benchmark::DoNotOptimize(read);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * len);
}
BENCHMARK(BM_WriteReadSlotPayload)->Arg(4096)->Arg(65536);

}  // namespace
}  // namespace shmhub::shm

BENCHMARK_MAIN();
