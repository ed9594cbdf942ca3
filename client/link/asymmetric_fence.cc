#include "client/link/asymmetric_fence.h"

#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace shmhub::client {
namespace {

long Membarrier(int command) { return syscall(SYS_membarrier, command, 0, 0); }

bool RegisterGlobalExpedited() {
  const long supported = Membarrier(MEMBARRIER_CMD_QUERY);
  if (supported < 0 || (supported & MEMBARRIER_CMD_GLOBAL_EXPEDITED) == 0) return false;
  return Membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) == 0;
}

}  // namespace

bool AsymmetricFence::Expedited() {
  // A function-local static: registered once, by whichever thread comes
  // first; the others wait for the answer.
  static const bool expedited = RegisterGlobalExpedited();
  return expedited;
}

void AsymmetricFence::Heavy() {
  // Seq_cst: orders our own store before our load whatever the syscall does.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  // A failing call (it cannot fail once registered, short of seccomp
  // changing under us) leaves the fence above: as if not Expedited().
  if (Expedited()) Membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED);
}

}  // namespace shmhub::client
