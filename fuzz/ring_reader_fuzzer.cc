// Fuzzes the host's side of a guest->host ring (format §6.5, §6.6, §7.7): a
// guest controls every byte of the ring header and of the ring data, and the
// host's drain loop (TryRead, ParseFrame, Release) must neither crash, hang
// nor touch a byte outside the ring.
//
// Input: the first 128 bytes are the RingHeader, the rest is the ring data;
// its length is the trusted capacity the host knows from its own layout.
// The data is copied into a heap block of exactly that size so ASan reports
// any access past it, and each span the loop is handed is checked to lie
// inside it.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "shm/bip_buffer.h"
#include "shm/format.h"
#include "shm/frame.h"

namespace {

using shmhub::shm::BipBuffer;
using shmhub::shm::Frame;
using shmhub::shm::FrameKind;
using shmhub::shm::RingHeader;

// More entries than fit in any input libFuzzer hands us: the loop ends on
// "empty" or an error long before, unless the reader fails to make progress.
constexpr int kMaxEntries = 1 << 14;
// The D-2 guard waits for a producer that does not exist here: keep it short.
constexpr uint32_t kGuardSpins = 2;

void Check(bool ok) {
  if (!ok) std::abort();
}

bool Inside(absl::Span<const uint8_t> inner, absl::Span<const uint8_t> outer) {
  return inner.data() >= outer.data() &&
         inner.data() + inner.size() <= outer.data() + outer.size();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* input, size_t size) {
  if (size <= sizeof(RingHeader) || size - sizeof(RingHeader) > shmhub::shm::kMaxRingCapacity) {
    return 0;
  }
  const uint32_t capacity = static_cast<uint32_t>(size - sizeof(RingHeader));

  RingHeader header;
  std::memcpy(&header, input, sizeof header);
  auto data = std::make_unique<uint8_t[]>(capacity);
  std::memcpy(data.get(), input + sizeof header, capacity);
  const absl::Span<const uint8_t> ring_bytes(data.get(), capacity);

  BipBuffer ring(&header, data.get(), capacity, kGuardSpins);
  uint32_t sink = 0;
  int entries = 0;
  for (; entries < kMaxEntries; ++entries) {
    absl::StatusOr<absl::Span<const uint8_t>> readable = ring.TryRead();
    if (!readable.ok() || readable->empty()) break;
    Check(Inside(*readable, ring_bytes));

    absl::StatusOr<Frame> frame = shmhub::shm::ParseFrame(*readable);
    if (!frame.ok()) break;  // a protocol error: the host stops reading this peer
    Check(frame->total_len >= shmhub::shm::kFrameHeaderSize && frame->total_len % 4 == 0 &&
          frame->total_len <= readable->size());
    if (frame->kind == FrameKind::kInline) {
      Check(Inside(frame->inline_payload, readable->first(frame->total_len)));
      // Touch every payload byte, as a consumer copying it out would.
      for (uint8_t byte : frame->inline_payload) sink += byte;
    }
    if (!ring.Release(frame->total_len).ok()) break;
  }
  Check(entries < kMaxEntries);
  Check(ring.Occupancy() <= capacity);
  static_cast<void>(ring.IsEmpty());
  static_cast<void>(ring.CheckHeader());

  // Keeps the payload reads from being optimised away.
  volatile uint32_t keep = sink;
  static_cast<void>(keep);
  return 0;
}
