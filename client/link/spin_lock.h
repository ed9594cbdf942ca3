// SpinLock: a mutual-exclusion lock for critical sections of a few dozen
// nanoseconds that are almost never contended — the receiver's bookkeeping of
// its views, taken by the receiving thread for every frame and only rarely
// by another thread releasing a view.
//
// Why not absl::Mutex: Debian's libabsl is built with its deadlock detector
// on, which runs on every Lock and cost a third of a frame's CPU
// (bench/README.md). An uncontended SpinLock is one exchange and one store.
// A waiter spins on a plain load (no cache-line ping-pong), and yields the
// CPU after a few spins, so a holder that was preempted gets to run even
// when both threads share one CPU.
#ifndef SHMHUB_CLIENT_LINK_SPIN_LOCK_H_
#define SHMHUB_CLIENT_LINK_SPIN_LOCK_H_

#include <sched.h>

#include <atomic>

#include "absl/base/thread_annotations.h"
#include "shm/cpu_relax.h"

namespace shmhub::client {

class ABSL_LOCKABLE SpinLock {
 public:
  SpinLock() = default;
  SpinLock(const SpinLock&) = delete;
  SpinLock& operator=(const SpinLock&) = delete;

  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() {
    // Acquire: the critical section's accesses stay after taking the lock
    // and see everything the previous holder did before its release.
    while (locked_.exchange(true, std::memory_order_acquire)) {
      for (int spins = 0;
           // Relaxed: only a hint that the lock looks free; the exchange
           // above re-checks with acquire.
           locked_.load(std::memory_order_relaxed); ++spins) {
        if (spins < kSpinsBeforeYield) {
          shm::CpuRelax();
        } else {
          sched_yield();
        }
      }
    }
  }

  void Unlock() ABSL_UNLOCK_FUNCTION() {
    // Release: publishes the critical section's writes to the next holder.
    locked_.store(false, std::memory_order_release);
  }

 private:
  static constexpr int kSpinsBeforeYield = 64;
  std::atomic<bool> locked_{false};
};

// Holds a SpinLock for its scope.
class ABSL_SCOPED_LOCKABLE SpinLockHolder {
 public:
  explicit SpinLockHolder(SpinLock* lock) ABSL_EXCLUSIVE_LOCK_FUNCTION(lock) : lock_(lock) {
    lock_->Lock();
  }
  ~SpinLockHolder() ABSL_UNLOCK_FUNCTION() { lock_->Unlock(); }
  SpinLockHolder(const SpinLockHolder&) = delete;
  SpinLockHolder& operator=(const SpinLockHolder&) = delete;

 private:
  SpinLock* const lock_;
};

}  // namespace shmhub::client

#endif  // SHMHUB_CLIENT_LINK_SPIN_LOCK_H_
