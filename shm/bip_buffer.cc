#include "shm/bip_buffer.h"

#include <atomic>
#include <cstring>

#include "absl/strings/str_format.h"
#include "shm/cpu_relax.h"
#include "shm/shm_error.h"

namespace shmhub::shm {
namespace {

// "Ring full" is the normal state of a ring under backpressure, so it is built
// once and copied (a refcount bump) instead of allocated on every attempt.
const absl::Status& RingFullStatus() {
  static const absl::Status* const kStatus =
      new absl::Status(ShmError(ShmErrc::kRingFull, "ring full"));
  return *kStatus;
}

absl::Status Corrupt(uint32_t write, uint32_t watermark, uint32_t read, uint32_t capacity,
                     const char* why) {
  return ShmError(ShmErrc::kRingCorrupt,
                  absl::StrFormat("ring corrupt: write=%u watermark=%u read=%u capacity=%u: %s",
                                  write, watermark, read, capacity, why));
}

// The producer loads only write and read.
absl::Status CorruptProducerView(uint32_t write, uint32_t read, uint32_t capacity) {
  return ShmError(
      ShmErrc::kRingCorrupt,
      absl::StrFormat("ring corrupt: write=%u read=%u capacity=%u: index beyond capacity", write,
                      read, capacity));
}

}  // namespace

BipBuffer::BipBuffer(RingHeader* header, uint8_t* data, uint32_t capacity, uint32_t guard_spins)
    : header_(header), data_(data), capacity_(capacity), guard_spins_(guard_spins) {}

void BipBuffer::Init(RingHeader* header, uint32_t capacity) {
  // The segment is not published yet, so nobody else can be looking.
  std::memset(header, 0, sizeof(*header));
  header->capacity = capacity;
}

absl::StatusOr<absl::Span<uint8_t>> BipBuffer::TryGrant(uint32_t n) {
  if (n == 0) return absl::Span<uint8_t>();
  // Relaxed: `write` is our own word; only a hostile consumer changes it, and
  // the range check below catches that.
  const uint32_t w = AtomicWord(header_->write).load(std::memory_order_relaxed);
  // Acquire: pairs with the consumer's release of `read`, so it has finished
  // with the bytes below `r` before we hand them out again.
  const uint32_t r = AtomicWord(header_->read).load(std::memory_order_acquire);
  if (w > capacity_ || r > capacity_) return CorruptProducerView(w, r, capacity_);

  if (w >= r) {
    if (capacity_ - w >= n) return absl::Span<uint8_t>(data_ + w, n);
    if (r == 0) return RingFullStatus();
    // Wrap. Release on both: the watermark carries the bytes committed up to
    // `w`, and a consumer that sees the new `write` must also see the new
    // watermark (it loads `write` first, §6.5). Rust's order; Rust consumers
    // depend on it. The wrap stays published even if the grant fails.
    AtomicWord(header_->watermark).store(w, std::memory_order_release);
    AtomicWord(header_->write).store(0, std::memory_order_release);
    if (n < r) return absl::Span<uint8_t>(data_, n);
    return RingFullStatus();
  }
  // Strict: reaching `r` from below would make the ring look empty.
  if (uint64_t{w} + n < r) return absl::Span<uint8_t>(data_ + w, n);
  return RingFullStatus();
}

bool BipBuffer::CanGrant(uint32_t n) const {
  if (n == 0) return true;
  if (n > capacity_) return false;
  // Same loads and orders as TryGrant, which this predicts.
  const uint32_t w = AtomicWord(header_->write).load(std::memory_order_relaxed);
  const uint32_t r = AtomicWord(header_->read).load(std::memory_order_acquire);
  if (w > capacity_ || r > capacity_) return false;
  if (w >= r) return capacity_ - w >= n || (r != 0 && n < r);
  return uint64_t{w} + n < r;
}

absl::Status BipBuffer::Commit(uint32_t n) {
  // Relaxed: our own word, range-checked before use.
  const uint32_t w = AtomicWord(header_->write).load(std::memory_order_relaxed);
  if (w > capacity_) {
    return ShmError(
        ShmErrc::kRingCorrupt,
        absl::StrFormat("ring corrupt: write=%u capacity=%u: index beyond capacity", w, capacity_));
  }
  const uint64_t next = uint64_t{w} + n;
  if (next > capacity_) {
    return ShmError(ShmErrc::kRingOutOfRange,
                    absl::StrFormat("commit(%u) at write=%u passes capacity %u", n, w, capacity_));
  }
  // Release: publishes the bytes just written to the consumer's acquire load.
  AtomicWord(header_->write).store(static_cast<uint32_t>(next), std::memory_order_release);
  return absl::OkStatus();
}

absl::StatusOr<absl::Span<const uint8_t>> BipBuffer::TryRead() {
  // Relaxed: our own word.
  const uint32_t r = AtomicWord(header_->read).load(std::memory_order_relaxed);
  // Acquire, and `write` BEFORE the watermark: the producer stores the
  // watermark before `write`, so seeing a post-wrap `write` guarantees seeing
  // the watermark of that wrap. Acquire also makes committed bytes visible.
  const uint32_t w = AtomicWord(header_->write).load(std::memory_order_acquire);
  // Acquire: pairs with the wrap's release store, which follows the commit of
  // every byte below the watermark.
  const uint32_t m = AtomicWord(header_->watermark).load(std::memory_order_acquire);
  if (w > capacity_ || m > capacity_ || r > capacity_) {
    return Corrupt(w, m, r, capacity_, "index beyond capacity");
  }

  if (m != 0) {
    // Wrapped. The producer wrapped at write == m with read <= m, and front
    // writes stay below read, so from here write <= m (== m only while the
    // wrap's second store is not yet visible) and read <= m.
    if (r > m) return Corrupt(w, m, r, capacity_, "wrapped with read > watermark");
    if (w > m) return Corrupt(w, m, r, capacity_, "wrapped with write > watermark");
    if (r < m) return absl::Span<const uint8_t>(data_ + r, m - r);
    // Tail fully consumed: move to the front. The guard loads `write` afresh:
    // `w` was loaded before the watermark and may predate the wrap (§6.8).
    if (absl::Status s = AwaitWrapPublished(m); !s.ok()) return s;
    ResetConsumerWords();
    // Acquire: the front's committed bytes. After the guard this can no longer
    // be the pre-wrap value, and with read == 0 the producer cannot wrap again.
    const uint32_t w2 = AtomicWord(header_->write).load(std::memory_order_acquire);
    if (w2 > capacity_) return Corrupt(w2, 0, 0, capacity_, "index beyond capacity");
    return absl::Span<const uint8_t>(data_, w2);
  }
  if (r < w) return absl::Span<const uint8_t>(data_ + r, w - r);
  // Not wrapped: write never falls behind read. (A post-wrap `write` would
  // have brought a non-zero watermark with it, see above.)
  if (r > w) return Corrupt(w, m, r, capacity_, "not wrapped with read > write");
  return absl::Span<const uint8_t>();
}

absl::Status BipBuffer::Release(uint32_t n) {
  // Relaxed: our own word, range-checked before use.
  const uint32_t r = AtomicWord(header_->read).load(std::memory_order_relaxed);
  // Acquire: Rust's order; a watermark seen here is the one the guard checks.
  const uint32_t m = AtomicWord(header_->watermark).load(std::memory_order_acquire);
  if (r > capacity_ || m > capacity_) {
    return ShmError(ShmErrc::kRingCorrupt,
                    absl::StrFormat("ring corrupt: watermark=%u read=%u capacity=%u: index beyond "
                                    "capacity",
                                    m, r, capacity_));
  }
  const uint64_t next = uint64_t{r} + n;
  if (next > capacity_) {
    return ShmError(ShmErrc::kRingOutOfRange,
                    absl::StrFormat("release(%u) at read=%u passes capacity %u", n, r, capacity_));
  }
  if (m != 0 && r > m) {
    return ShmError(ShmErrc::kRingCorrupt,
                    absl::StrFormat("ring corrupt: watermark=%u read=%u capacity=%u: wrapped with "
                                    "read > watermark",
                                    m, r, capacity_));
  }
  if (m != 0 && next >= m) {
    if (absl::Status s = AwaitWrapPublished(m); !s.ok()) return s;
    ResetConsumerWords();
    return absl::OkStatus();
  }
  // Release: we are done with the bytes below `next`; the producer's acquire
  // load of `read` may now hand them out again.
  AtomicWord(header_->read).store(static_cast<uint32_t>(next), std::memory_order_release);
  return absl::OkStatus();
}

absl::Status BipBuffer::AwaitWrapPublished(uint32_t watermark) const {
  for (uint32_t spins = 0;; ++spins) {
    // Acquire: once a value below the watermark is seen, coherence forbids
    // seeing the pre-wrap value again (§6.8), and the front bytes committed
    // up to it are visible.
    const uint32_t w = AtomicWord(header_->write).load(std::memory_order_acquire);
    if (w < watermark) return absl::OkStatus();
    if (w > watermark) {
      return ShmError(ShmErrc::kRingCorrupt,
                      absl::StrFormat("ring corrupt: write=%u watermark=%u capacity=%u: wrapped "
                                      "with write > watermark",
                                      w, watermark, capacity_));
    }
    if (spins == guard_spins_) {
      return ShmError(ShmErrc::kRingStalled,
                      absl::StrFormat("ring stalled: producer wrap not visible (write=%u "
                                      "watermark=%u after %u spins)",
                                      w, watermark, guard_spins_));
    }
    CpuRelax();
  }
}

void BipBuffer::ResetConsumerWords() {
  // Release on both, read first (§6.6): the producer may reuse everything once
  // it sees read == 0, so our reads of the tail must be finished by then.
  AtomicWord(header_->read).store(0, std::memory_order_release);
  AtomicWord(header_->watermark).store(0, std::memory_order_release);
}

void BipBuffer::Reset() {
  // Release: recovery runs with both sides stopped; release keeps the stores
  // ordered after whatever recovery did before (§6.7).
  AtomicWord(header_->write).store(0, std::memory_order_release);
  AtomicWord(header_->watermark).store(0, std::memory_order_release);
  AtomicWord(header_->read).store(0, std::memory_order_release);
}

bool BipBuffer::IsEmpty() const {
  // §6.7's orders: read is the consumer's own word; acquire on the others so
  // "empty" is not judged from a write older than the watermark it pairs with.
  const uint32_t r = AtomicWord(header_->read).load(std::memory_order_relaxed);
  const uint32_t w = AtomicWord(header_->write).load(std::memory_order_acquire);
  const uint32_t m = AtomicWord(header_->watermark).load(std::memory_order_acquire);
  return r == w && m == 0;
}

uint32_t BipBuffer::Occupancy() const {
  // Relaxed: a metric; no data is read on the strength of these values.
  const uint32_t r = AtomicWord(header_->read).load(std::memory_order_relaxed);
  const uint32_t w = AtomicWord(header_->write).load(std::memory_order_relaxed);
  const uint32_t m = AtomicWord(header_->watermark).load(std::memory_order_relaxed);
  uint64_t used = 0;
  if (m == 0) {
    used = w >= r ? w - r : 0;
  } else {
    used = uint64_t{m >= r ? m - r : 0} + (w < r ? w : 0);
  }
  return used > capacity_ ? capacity_ : static_cast<uint32_t>(used);
}

absl::Status BipBuffer::CheckHeader() const {
  // Relaxed on the plain capacity field: written once before publication, but
  // guest-writable, so it is loaded exactly once.
  const uint32_t cap = AtomicWord(header_->capacity).load(std::memory_order_relaxed);
  if (cap != capacity_) {
    return ShmError(
        ShmErrc::kRingCorrupt,
        absl::StrFormat("ring corrupt: capacity field %u != expected %u", cap, capacity_));
  }
  // Acquire: same orders as the consumer, write before watermark.
  const uint32_t w = AtomicWord(header_->write).load(std::memory_order_acquire);
  const uint32_t m = AtomicWord(header_->watermark).load(std::memory_order_acquire);
  const uint32_t r = AtomicWord(header_->read).load(std::memory_order_acquire);
  if (w > capacity_ || m > capacity_ || r > capacity_) {
    return Corrupt(w, m, r, capacity_, "index beyond capacity");
  }
  if (m == 0) {
    // S1.
    if (r <= w) return absl::OkStatus();
    return Corrupt(w, m, r, capacity_, "not wrapped with read > write");
  }
  // S2; the producer between its wrap stores (write still == watermark); the
  // consumer between its reset stores (read already 0, and the producer may
  // since have written anywhere).
  if (r > m) return Corrupt(w, m, r, capacity_, "wrapped with read > watermark");
  if (w < r || w == m || r == 0) return absl::OkStatus();
  return Corrupt(w, m, r, capacity_, "wrapped with read <= write != watermark");
}

}  // namespace shmhub::shm
