// AsymmetricFence: the Dekker handshake it exists for. One thread stores its
// flag, passes Light() and loads the other's; the other stores, passes
// Heavy() and loads. Without a store-load barrier on both sides, x86's store
// buffer lets both loads miss both stores (each store still buffered while
// its thread loads); with the pair, at least one thread sees the other.
#include "client/link/asymmetric_fence.h"

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace shmhub::client {
namespace {

constexpr uint32_t kRounds = 100'000;

struct Shared {
  // Each on its own cache line, as the ring indexes are.
  alignas(64) std::atomic<uint32_t> light_flag{0};
  alignas(64) std::atomic<uint32_t> heavy_flag{0};
  alignas(64) std::atomic<uint32_t> arrived{0};
};

// Both threads leave round `round`'s barrier at nearly the same moment, so
// their store-fence-load sequences overlap.
void AwaitBothAt(std::atomic<uint32_t>& arrived, uint32_t round) {
  // Acq_rel: the previous round's loads are done before we arrive, and the
  // other thread's are before we leave.
  arrived.fetch_add(1, std::memory_order_acq_rel);
  // Acquire: as above. Yield now and then: on a loaded machine the other
  // thread may need our CPU to arrive.
  for (uint32_t spins = 1; arrived.load(std::memory_order_acquire) < 2 * round; ++spins) {
    if (spins % 1024 == 0) std::this_thread::yield();
  }
}

TEST(AsymmetricFence, LightAndHeavySidesNeverBothMissTheOthersStore) {
  Shared shared;
  std::vector<uint32_t> light_saw(kRounds);
  std::vector<uint32_t> heavy_saw(kRounds);
  std::thread light([&] {
    for (uint32_t i = 1; i <= kRounds; ++i) {
      AwaitBothAt(shared.arrived, i);
      // Relaxed store and load: the barrier under test is all that orders
      // them.
      shared.light_flag.store(i, std::memory_order_relaxed);
      AsymmetricFence::Light();
      light_saw[i - 1] = shared.heavy_flag.load(std::memory_order_relaxed);
    }
  });
  for (uint32_t i = 1; i <= kRounds; ++i) {
    AwaitBothAt(shared.arrived, i);
    // Relaxed: as above.
    shared.heavy_flag.store(i, std::memory_order_relaxed);
    AsymmetricFence::Heavy();
    heavy_saw[i - 1] = shared.light_flag.load(std::memory_order_relaxed);
  }
  light.join();
  uint32_t both_missed = 0;
  for (uint32_t i = 1; i <= kRounds; ++i) {
    // A flag holds the round number once stored; an older value is a miss.
    if (light_saw[i - 1] < i && heavy_saw[i - 1] < i) ++both_missed;
  }
  EXPECT_EQ(both_missed, 0u) << "of " << kRounds << " rounds (membarrier "
                             << (AsymmetricFence::Expedited() ? "in use" : "unavailable") << ")";
}

}  // namespace
}  // namespace shmhub::client
