// RingProgress: the producer's account of how far the consumer of its ring
// has come, in stream positions that never go backwards.
//
// Ring offsets repeat after every wrap, so the producer numbers bytes
// instead as `lap * capacity + offset`, where `lap` counts its wraps (each
// wrap skips the dead bytes [watermark, capacity) of the lap it leaves). An
// entry granted at `offset` in lap L starts at position L*capacity + offset.
// The consumer's position follows from its `read` word and the watermark:
//   * watermark 0: the consumer has reset after our last wrap (or we never
//     wrapped), so it is in our lap: L*capacity + read;
//   * watermark != 0: it is still in the tail of lap L-1 — unless it reset
//     between our two loads — so it is at (L-1)*capacity + read or, if it
//     raced ahead, L*capacity + read. Both candidates are returned. A read
//     at the watermark (tail done, reset pending) counts as L*capacity.
// The consumer can never be more than one lap behind: wrapping again needs
// write >= read, which needs the consumer to have reset.
//
// Uses: the doorbell rule (ring when either candidate lies inside what we
// committed since the last ring: the consumer caught up with us and may be
// asleep) and MMAP region reuse (bytes are reusable once the lower
// candidate has passed the entry that named them).
//
// Every word is loaded once and only used in arithmetic; a hostile consumer
// can make the estimate wrong (costing it its own wake-ups or payloads), not
// make us touch memory. Not thread-safe: the sending thread owns it.
#ifndef SHMHUB_CLIENT_LINK_RING_PROGRESS_H_
#define SHMHUB_CLIENT_LINK_RING_PROGRESS_H_

#include <cstdint>

#include "shm/format.h"

namespace shmhub::client {

class RingProgress {
 public:
  // Where the consumer may be: lo <= hi, equal unless the loads raced a
  // consumer reset.
  struct ConsumerPosition {
    uint64_t lo = 0;
    uint64_t hi = 0;
  };

  // `header` is our ring's header, `capacity` its trusted capacity. Starts
  // the lap count from the ring's current state, so a link may take over a
  // ring that is mid-stream (wrapped or not).
  RingProgress(shm::RingHeader* header, uint32_t capacity);

  // Our own write word (relaxed: only we store it), read just before a
  // grant so the grant's effect can be told afterwards.
  uint32_t LoadWrite() const;
  // After a successful grant at `offset` of a ring whose write was
  // `write_before`: counts the wrap if the grant made one and returns the
  // entry's stream position.
  uint64_t OnGranted(uint32_t write_before, uint32_t offset);
  // After a failed grant: true (and the wrap is counted) when the grant
  // still published a wrap (§6.3 ); the caller then rings (§10).
  bool OnGrantFailed(uint32_t write_before);

  // The consumer's position. Loads watermark, then read, both acquire; the
  // caller puts whatever fence its protocol needs before.
  ConsumerPosition LoadConsumer() const;

 private:
  shm::RingHeader* const header_;
  const uint64_t capacity_;
  uint64_t lap_ = 0;
};

}  // namespace shmhub::client

#endif  // SHMHUB_CLIENT_LINK_RING_PROGRESS_H_
