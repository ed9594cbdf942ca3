#include "client/link/ring_progress.h"

#include <atomic>

namespace shmhub::client {

RingProgress::RingProgress(shm::RingHeader* header, uint32_t capacity)
    : header_(header), capacity_(capacity) {
  // Acquire: a watermark left by an earlier producer of this ring means the
  // consumer may still be one lap behind; start in lap 1 so its tail
  // positions stay below ours.
  if (shm::AtomicWord(header_->watermark).load(std::memory_order_acquire) != 0) lap_ = 1;
}

uint32_t RingProgress::LoadWrite() const {
  // Relaxed: our own word; no other process stores it (a hostile one that
  // does only skews our arithmetic).
  return shm::AtomicWord(header_->write).load(std::memory_order_relaxed);
}

uint64_t RingProgress::OnGranted(uint32_t write_before, uint32_t offset) {
  // A grant lands at 0 with a non-zero write before it only by wrapping.
  if (offset == 0 && write_before != 0) ++lap_;
  return lap_ * capacity_ + offset;
}

bool RingProgress::OnGrantFailed(uint32_t write_before) {
  if (write_before == 0 || LoadWrite() != 0) return false;
  ++lap_;
  return true;
}

RingProgress::ConsumerPosition RingProgress::LoadConsumer() const {
  // Acquire, watermark first: the consumer stores read before clearing the
  // watermark, so a 0 seen here comes with a read of our current lap.
  const uint64_t m = shm::AtomicWord(header_->watermark).load(std::memory_order_acquire);
  // Acquire: pairs with the consumer's release of read.
  const uint64_t r = shm::AtomicWord(header_->read).load(std::memory_order_acquire);
  const uint64_t here = lap_ * capacity_;
  if (m == 0 || lap_ == 0) return {here + r, here + r};
  // Still in the previous lap's tail, or raced past its reset. A read at or
  // past the watermark has nothing left in the tail.
  const uint64_t behind = r >= m ? here : here - capacity_ + r;
  return {behind, here + r};
}

}  // namespace shmhub::client
