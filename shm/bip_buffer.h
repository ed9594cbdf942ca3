// The BipBuffer ring of the hub format (segment-format.md §6): a
// single-producer / single-consumer byte ring over a 128-byte RingHeader and
// `capacity` data bytes in shared memory. Each guest has two: guest->host and
// host->guest.
//
// Contract
//  * Exactly one producer and one consumer per ring. Within one process the
//    callers of TryGrant/Commit (and of TryRead/Release) must be serialised;
//    the producer and the consumer may run concurrently in different threads
//    or processes. A BipBuffer object holds only pointers and the trusted
//    capacity, so each side may build its own or share one.
//  * The memory is NOT owned: `header` and `data` must stay mapped for the
//    object's lifetime. `data` is the `capacity` bytes at header + 128.
//  * `capacity` is the TRUSTED value from the caller's own layout, in
//    1..kMaxRingCapacity. The header's capacity field and the three index
//    words are written by another process and are never trusted: every word
//    is loaded once, checked against `capacity`, and only the copy is used.
//    A state that is no legal one (§6.2) yields kRingCorrupt with a message
//    naming the values; nothing is stored and no byte outside `data` is
//    touched. Callers should treat kRingCorrupt as "the other side is broken".
//  * The algorithms are Rust's [R] (same stores, same order, same results,
//    including the wrap that stays published when the grant then fails,
//    ), plus the consumer guard of D-2 (§6.8): before the consumer zeroes
//    read and watermark it must see the producer's post-wrap `write`. It spins
//    at most `guard_spins` times; if that runs out it changes nothing and
//    returns kRingStalled, and the caller retries later (for instance on the
//    next doorbell) or gives up on the peer.
//  * Memory orders follow §6.5 to §6.7: a release store of `write` publishes
//    the committed bytes to the consumer's acquire load, a release store of
//    `read` hands consumed bytes back to the producer's acquire load.
//
// Spans returned by TryGrant/TryRead point into shared memory; TryRead's bytes
// can be rewritten by a hostile producer at any time, so a reader copies a
// field before validating it (§1.7).
#ifndef SHMHUB_SHM_BIP_BUFFER_H_
#define SHMHUB_SHM_BIP_BUFFER_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "shm/format.h"

namespace shmhub::shm {

class BipBuffer {
 public:
  // How often the D-2 guard re-reads `write` (with a CPU pause in between)
  // before giving up with kRingStalled. The window it waits out is the gap
  // between two consecutive stores of the producer, normally nanoseconds; a
  // producer preempted inside that gap is better retried later than spun on.
  static constexpr uint32_t kDefaultGuardSpins = 4096;

  // `guard_spins` exists for tests of the guard; production uses the default.
  BipBuffer(RingHeader* header, uint8_t* data, uint32_t capacity,
            uint32_t guard_spins = kDefaultGuardSpins);

  // Creator only, before the segment is published: plain stores of the
  // capacity and of zero indexes into zeroed memory (§6.1).
  static void Init(RingHeader* header, uint32_t capacity);

  // ---- Producer side -------------------------------------------------------

  // Reserves `n` contiguous bytes (§6.3). n == 0 gives an empty span and
  // changes nothing. Errors: kRingFull (backpressure: wait on the doorbell and
  // retry; the status is a cached one, no allocation) or kRingCorrupt. A
  // kRingFull may still have published a wrap; the producer then rings
  // the doorbell so the consumer can drain the tail (§10).
  absl::StatusOr<absl::Span<uint8_t>> TryGrant(uint32_t n);

  // Whether TryGrant(n) would succeed now. Never stores. A corrupt header
  // gives false.
  bool CanGrant(uint32_t n) const;

  // Publishes `n` bytes of the last grant (§6.4); `n` is the granted length.
  // kRingOutOfRange if write + n would pass the capacity, kRingCorrupt if
  // `write` already does; the header is unchanged in both cases.
  absl::Status Commit(uint32_t n);

  // ---- Consumer side -------------------------------------------------------

  // The next readable contiguous span (§6.5, Rust's load order ): the
  // tail [read, watermark) of a wrapped ring first, then the front. An empty
  // span means nothing to read. Consuming the whole tail resets read and
  // watermark to 0 behind the D-2 guard. Errors: kRingStalled (guard bound
  // ran out, nothing changed) or kRingCorrupt (nothing stored, unless the
  // write word turns bad after a legal reset).
  absl::StatusOr<absl::Span<const uint8_t>> TryRead();

  // Hands `n` consumed bytes back (§6.6). Reaching the watermark resets read
  // and watermark to 0 behind the D-2 guard. Errors, all with the header
  // unchanged: kRingOutOfRange (read + n > capacity), kRingStalled,
  // kRingCorrupt.
  absl::Status Release(uint32_t n);

  // ---- Both sides / recovery -------------------------------------------------

  // Recovery only, while neither side is active: write, watermark and read
  // := 0. The capacity field is left alone (§6.7).
  void Reset();

  // read == write and watermark == 0 (§6.7).
  bool IsEmpty() const;

  // Bytes committed and not yet released, clamped to [0, capacity]. An
  // approximation under concurrency: for metrics only (§6.7).
  uint32_t Occupancy() const;

  // kRingCorrupt unless the header is in a legal state (§6.2): the capacity
  // field equals the trusted capacity, every index is within it, and the
  // words form S1, S2 or one of the two in-between states of a side that is
  // half way through its pair of stores. Judges a single snapshot, so call it
  // when the ring is quiescent (attach, recovery) or treat a failure on a
  // busy ring as "re-check before acting".
  absl::Status CheckHeader() const;

  uint32_t capacity() const { return capacity_; }

 private:
  // The D-2 guard: OK once `write` < `watermark` has been seen.
  absl::Status AwaitWrapPublished(uint32_t watermark) const;
  // The consumer's two reset stores, read before watermark (§6.6).
  void ResetConsumerWords();

  RingHeader* const header_;
  uint8_t* const data_;
  const uint32_t capacity_;
  const uint32_t guard_spins_;
};

}  // namespace shmhub::shm

#endif  // SHMHUB_SHM_BIP_BUFFER_H_
