// C-V19: four real processes allocate and free on one MAP_SHARED pool at the
// same time. Every holder writes its own tag into the first and last eight
// bytes of its slot on allocation, checks them before freeing and clears
// them; a slot handed to two holders at once shows up as a foreign or
// non-zero tag. Bounded by an operation count and a deadline per child, and
// by a deadline in the parent that kills stuck children.
#include <sys/mman.h>
#include <time.h>

#include <atomic>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <vector>

#include "absl/types/span.h"
#include "gtest/gtest.h"
#include "shm/format.h"
#include "shm/layout.h"
#include "shm/shm_error.h"
#include "shm/var_slot_pool.h"
#include "tests/testing/child_process.h"

namespace shmhub::shm {
namespace {

constexpr int kChildren = 4;
// 10 slots for 4 processes holding up to 4 each: classes run dry often, and
// requests above 64 bytes compete for the 4 large slots only.
const std::vector<SlotClassConfig> kClasses = {{64, 6}, {256, 4}};
constexpr size_t kMaxHeld = 4;
constexpr uint64_t kOpsPerChild = 2000000;
constexpr int64_t kChildBudgetNs = 2'000'000'000;    // each child stops after 2 s
constexpr int64_t kParentBudgetNs = 20'000'000'000;  // then stuck children fail the test
// Each child must have done real work, or the test proved nothing.
constexpr uint64_t kMinAllocationsPerChild = 1000;

// Child exit codes; each names the check that failed.
enum ChildExit : int {
  kOk = 0,
  kAllocateFailed = 10,  // an error other than kPoolExhausted
  kSlotTooSmall = 11,    // D-9 violated
  kTagOnFreshSlot = 12,  // a freshly allocated slot still carried a tag
  kTagOverwritten = 13,  // someone else wrote into a slot we held
  kMetaMismatch = 14,    // state/owner/generation not ours while we held it
  kFreeFailed = 15,
  kNeverStarted = 16,  // the parent's start signal did not come in time
};

// Written by the children, read by the parent, in its own shared mapping.
struct Control {
  uint32_t start;     // set by the parent once every child exists
  uint32_t finished;  // children done
  uint64_t allocations[kChildren];
  uint64_t exhausted[kChildren];
};

int64_t NowNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

void* MapShared(uint64_t size) {
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    std::perror("mmap");
    std::abort();
  }
  return p;
}

// The tag words of a slot: its first and last eight bytes. Slots here are
// multiples of 64 bytes, so both are 8-aligned.
std::atomic_ref<uint64_t> TagWord(absl::Span<uint8_t> slot, bool last) {
  return std::atomic_ref<uint64_t>(
      *reinterpret_cast<uint64_t*>(slot.data() + (last ? slot.size() - 8 : 0)));
}

struct Held {
  SlotRef ref;
  absl::Span<uint8_t> data;
  uint64_t tag;
};

// Checks that `h` is still ours, clears its tags and frees it.
int Release(VarSlotPool& pool, const Held& h, uint32_t peer) {
  // relaxed: our own earlier stores; a foreign store would be a second holder.
  if (TagWord(h.data, false).load(std::memory_order_relaxed) != h.tag ||
      TagWord(h.data, true).load(std::memory_order_relaxed) != h.tag) {
    return kTagOverwritten;
  }
  absl::StatusOr<SlotMetaSnapshot> m = pool.Meta(h.ref.class_idx, h.ref.slot_idx);
  if (!m.ok() || m->state != kSlotAllocated || m->owner_peer != peer ||
      m->generation != h.ref.generation) {
    return kMetaMismatch;
  }
  // relaxed: the free's release operations publish the cleared tags to the
  // next holder, who must read zeros; that ordering is part of what we test.
  TagWord(h.data, false).store(0, std::memory_order_relaxed);
  TagWord(h.data, true).store(0, std::memory_order_relaxed);
  return pool.Free(h.ref).ok() ? kOk : kFreeFailed;
}

int RunChild(uint8_t* base, const SegmentLayout& layout, Control* control, int index) {
  const uint32_t peer = static_cast<uint32_t>(index) + 1;
  VarSlotPool pool(base, layout);
  const int64_t deadline = NowNs() + kChildBudgetNs;
  // acquire: pairs with the parent's release store of `start`.
  while (std::atomic_ref<uint32_t>(control->start).load(std::memory_order_acquire) == 0) {
    if (NowNs() > deadline) return kNeverStarted;
  }
  uint64_t rng = 0x9E3779B97F4A7C15ULL * peer;
  auto next = [&rng] {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
  };
  std::vector<Held> held;
  uint64_t allocations = 0;
  uint64_t exhausted = 0;
  int result = kOk;
  for (uint64_t op = 0; op < kOpsPerChild && result == kOk; ++op) {
    if ((op & 255) == 0 && NowNs() > deadline) break;
    const uint64_t r = next();
    if (held.size() < kMaxHeld && (held.empty() || (r & 1) != 0)) {
      const auto size = static_cast<uint32_t>(1 + (r >> 8) % 256);
      absl::StatusOr<SlotRef> ref = pool.Allocate(size, peer);
      if (!ref.ok()) {
        if (ShmErrcOf(ref.status()) != ShmErrc::kPoolExhausted) {
          result = kAllocateFailed;
          break;
        }
        ++exhausted;
        continue;
      }
      ++allocations;
      if (pool.class_config(ref->class_idx).slot_size < size) {
        result = kSlotTooSmall;
        break;
      }
      const Held h{*ref, *pool.SlotData(*ref), (uint64_t{peer} << 48) | allocations};
      // relaxed: see Release.
      if (TagWord(h.data, false).load(std::memory_order_relaxed) != 0 ||
          TagWord(h.data, true).load(std::memory_order_relaxed) != 0) {
        result = kTagOnFreshSlot;
        break;
      }
      TagWord(h.data, false).store(h.tag, std::memory_order_relaxed);
      TagWord(h.data, true).store(h.tag, std::memory_order_relaxed);
      held.push_back(h);
    } else {
      const size_t victim = (r >> 8) % held.size();
      result = Release(pool, held[victim], peer);
      held[victim] = held.back();
      held.pop_back();
    }
  }
  for (const Held& h : held) {
    if (result != kOk) break;
    result = Release(pool, h, peer);
  }
  // relaxed: the finished counter's release increment publishes these.
  std::atomic_ref<uint64_t>(control->allocations[index])
      .store(allocations, std::memory_order_relaxed);
  std::atomic_ref<uint64_t>(control->exhausted[index]).store(exhausted, std::memory_order_relaxed);
  // release: pairs with the parent's acquire load.
  std::atomic_ref<uint32_t>(control->finished).fetch_add(1, std::memory_order_release);
  return result;
}

TEST(VarSlotPoolStress, C_V19_FourProcessesNeverShareASlot) {
  absl::StatusOr<SegmentLayout> layout = ComputeLayout(kChildren, 64, kClasses);
  ASSERT_TRUE(layout.ok()) << layout.status();
  auto* base = static_cast<uint8_t*>(MapShared(layout->total_size));
  auto* control = static_cast<Control*>(MapShared(sizeof(Control)));
  VarSlotPool::Format(base, *layout);

  std::vector<std::unique_ptr<testing::ChildProcess>> children;
  for (int i = 0; i < kChildren; ++i) {
    children.push_back(std::make_unique<testing::ChildProcess>(
        [&, i] { return RunChild(base, *layout, control, i); }));
  }
  // release: the children see the formatted pool before they start.
  std::atomic_ref<uint32_t>(control->start).store(1, std::memory_order_release);

  const int64_t deadline = NowNs() + kParentBudgetNs;
  // acquire: pairs with each child's release increment.
  while (std::atomic_ref<uint32_t>(control->finished).load(std::memory_order_acquire) < kChildren &&
         NowNs() < deadline) {
    const timespec tick{0, 10'000'000};
    nanosleep(&tick, nullptr);
  }
  const bool timed_out =
      std::atomic_ref<uint32_t>(control->finished).load(std::memory_order_acquire) < kChildren;
  EXPECT_FALSE(timed_out) << "children still running after " << kParentBudgetNs / 1'000'000
                          << " ms";
  for (int i = 0; i < kChildren; ++i) {
    if (timed_out) children[i]->Signal(SIGKILL);
    EXPECT_EQ(children[i]->Wait(), kOk) << "child " << i;
  }

  VarSlotPool pool(base, *layout);
  for (uint32_t k = 0; k < kClasses.size(); ++k) {
    EXPECT_EQ(pool.FreeCount(k).value_or(0), kClasses[k].slot_count) << "class " << k;
    for (uint32_t j = 0; j < kClasses[k].slot_count; ++j) {
      absl::StatusOr<SlotMetaSnapshot> m = pool.Meta(k, j);
      ASSERT_TRUE(m.ok());
      EXPECT_EQ(m->state, kSlotFree) << "class " << k << " slot " << j;
      EXPECT_EQ(m->owner_peer, 0u) << "class " << k << " slot " << j;
    }
  }
  uint64_t total_exhausted = 0;
  for (int i = 0; i < kChildren; ++i) {
    // relaxed: ordered by the acquire load of `finished` above.
    EXPECT_GE(std::atomic_ref<uint64_t>(control->allocations[i]).load(std::memory_order_relaxed),
              kMinAllocationsPerChild)
        << "child " << i;
    total_exhausted +=
        std::atomic_ref<uint64_t>(control->exhausted[i]).load(std::memory_order_relaxed);
  }
  // Informational: how often the pool ran dry under contention.
  RecordProperty("exhausted", static_cast<int>(total_exhausted));
  ::munmap(control, sizeof(Control));
  ::munmap(base, layout->total_size);
}

}  // namespace
}  // namespace shmhub::shm
