// AsymmetricFence: the two halves of a Dekker handshake between processes
// where one half runs on every frame and the other only before a sleep.
//
// The doorbell rule (frame_sender.h, link_core.h) is a Dekker handshake: the
// producer stores `write`, then loads the consumer's `read` to decide whether
// to ring; the consumer, before it sleeps, stores `read`, then loads `write`.
// Each side needs a store-load barrier between its two steps, or both can
// miss the other's store and the consumer sleeps on a frame. A seq_cst fence
// on the producer's side on every frame is expensive: it waits until every
// store of the frame (the entry, the payload) has left the store buffer,
// which between cores means waiting for the consumer's cache to give the
// lines up — on every frame.
//
// membarrier(2) moves that cost to the rare side. Light() is a compiler
// barrier only; Heavy() runs MEMBARRIER_CMD_GLOBAL_EXPEDITED, which makes
// every running thread of every registered process execute a full barrier
// before it returns. Whatever point of the light side's program the barrier
// lands on, either its store is visible to the heavy side's load after the
// call, or its load comes after the heavy side's store became visible.
//
// Both halves degrade to a seq_cst fence each when the kernel lacks the
// command, or refuses it (seccomp), or registration failed. The pairing
// stays correct when both processes degrade alike. A light side that is
// registered facing a heavy side that cannot issue the command (mixed
// kernels or seccomp profiles) can miss a ring; our waits re-check at least
// every LinkOptions::max_backoff, so that costs latency, never a hang.
//
// Registration: the first use in a process registers it for
// MEMBARRIER_CMD_GLOBAL_EXPEDITED (its running threads then receive the
// barrier IPIs other registered processes send). Thread-safe.
#ifndef SHMHUB_CLIENT_LINK_ASYMMETRIC_FENCE_H_
#define SHMHUB_CLIENT_LINK_ASYMMETRIC_FENCE_H_

#include <atomic>

namespace shmhub::client {

class AsymmetricFence {
 public:
  // Whether this process uses membarrier (registered, command available).
  static bool Expedited();

  // The frequent side's store-load barrier.
  static void Light() {
    if (Expedited()) {
      // Seq_cst signal fence: the compiler keeps the store before the load;
      // the heavy side's membarrier provides the hardware barrier.
      std::atomic_signal_fence(std::memory_order_seq_cst);
    } else {
      std::atomic_thread_fence(std::memory_order_seq_cst);
    }
  }

  // The rare side's store-load barrier (a system call when Expedited()).
  static void Heavy();
};

}  // namespace shmhub::client

#endif  // SHMHUB_CLIENT_LINK_ASYMMETRIC_FENCE_H_
