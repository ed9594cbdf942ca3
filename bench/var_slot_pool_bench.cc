// Micro-benchmarks of the VarSlotPool (format §8) in one thread: the cost a
// SLOT_REF frame adds on top of the ring — one Treiber-stack pop on send and
// one push on release — with shmhubd's default classes, in private memory.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "absl/status/statusor.h"
#include "benchmark/benchmark.h"
#include "shm/layout.h"
#include "shm/slot_ref.h"
#include "shm/var_slot_pool.h"

namespace shmhub::shm {
namespace {

class PrivatePool {
 public:
  PrivatePool() {
    const SlotClassConfig classes[] = {{1024, 256}, {16384, 64}, {262144, 8}};
    absl::StatusOr<SegmentLayout> layout = ComputeLayout(1, 4096, classes);
    if (!layout.ok()) std::abort();
    layout_ = *layout;
    memory_.reset(static_cast<uint8_t*>(std::aligned_alloc(64, Align64(layout_.total_size))));
    std::memset(memory_.get(), 0, layout_.total_size);
    VarSlotPool::Format(memory_.get(), layout_);
  }
  VarSlotPool Make() const { return VarSlotPool(memory_.get(), layout_); }

 private:
  struct Free {
    void operator()(uint8_t* p) const { std::free(p); }
  };
  SegmentLayout layout_;
  std::unique_ptr<uint8_t, Free> memory_;
};

void BM_AllocateFree(benchmark::State& state) {
  PrivatePool memory;
  VarSlotPool pool = memory.Make();
  const uint32_t size = static_cast<uint32_t>(state.range(0));
  for (auto _ : state) {
    absl::StatusOr<SlotRef> ref = pool.Allocate(size, 1);
    if (!ref.ok() || !pool.Free(*ref).ok()) {
      state.SkipWithError("pool operation failed");
      return;
    }
  }
  state.SetItemsProcessed(state.iterations());
}
// One request per class: 4 KiB and 64 KiB payloads plus their 4-byte prefix.
BENCHMARK(BM_AllocateFree)->Arg(4100)->Arg(65540);

}  // namespace
}  // namespace shmhub::shm

BENCHMARK_MAIN();
