// FrameSender: the producing half of a RingLink — picks the tier of each
// payload, writes the entry (and the slot or region behind it), commits, and
// rings the doorbell only when the consumer may be asleep.
//
// Tiers (format §7.6, shm::ChooseTier with the segment's policy): inline in
// the ring; SLOT_REF, the payload copied behind a length prefix (§7.5) into a
// pool slot allocated with owner = this side (the peer id on a guest, 0 =
// kHostPeerId on the host, §5.2/§8.1, which is what recovery's §14 step 2
// frees); MMAP_REF, the payload in a memfd region (MmapRegionSender) when
// the link has a mapping-control socket, RESOURCE_EXHAUSTED otherwise. The
// slot or region bytes are written before the ring commit's release store
// publishes the entry (§7.8). A send that fails after taking a slot gives it
// back: a failed Send has sent nothing.
//
// When to ring (§10, made cheap). After committing, the producer passes a
// store-load barrier (AsymmetricFence::Light: on every frame, so the light
// half) and loads the consumer's position; it rings only when that
// position lies inside what it committed since its last ring decision —
// the consumer had caught up with everything older, so it may be asleep
// waiting for exactly these entries. Otherwise the consumer is still busy
// with older entries and, by the Dekker pairing (the consumer gives its
// ring bytes back, passes the heavy barrier, then re-reads `write` before it
// sleeps), it will see ours without a ring. SendBatch makes that decision
// once for the whole batch (and before any wait inside it, since the
// consumer may sleep on a half-sent batch). A receiver that holds views has
// not given their ring bytes back, so it looks busy and gets no ring: its
// own waits re-check every max_backoff. Also rung, as §10 asks: after a
// grant that published a wrap and failed.
// Interop: the rule needs the consumer's half of the handshake, which only
// shmhub links run. §10 has Rust producers ring after every commit, and a
// Rust consumer sleeps without that half; links to Rust peers set
// LinkOptions::always_ring, which rings after every Send and SendBatch.
//
// Waiting for space: a full ring or an exhausted pool class parks the sender
// in LinkCore::WaitUntil; the receiver rings when its release may have made
// room (receive_state.h). Not thread-safe: one sending thread at a time.
#ifndef SHMHUB_CLIENT_LINK_FRAME_SENDER_H_
#define SHMHUB_CLIENT_LINK_FRAME_SENDER_H_

#include <cstddef>
#include <cstdint>
#include <optional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "client/link/link_core.h"
#include "client/link/mmap_region_sender.h"
#include "client/link/ring_progress.h"
#include "shm/bip_buffer.h"
#include "shm/frame.h"
#include "shm/unique_fd.h"
#include "shm/var_slot_pool.h"

namespace shmhub::client {

class FrameSender {
 public:
  // `mapping_control` may be empty (no MMAP_REF tier).
  FrameSender(LinkCore& core, shm::UniqueFd mapping_control);
  FrameSender(const FrameSender&) = delete;
  FrameSender& operator=(const FrameSender&) = delete;

  // One frame; waits until `deadline` when `may_wait`, otherwise fails with
  // RESOURCE_EXHAUSTED where it would wait.
  absl::Status Send(absl::Span<const uint8_t> payload, absl::Time deadline, bool may_wait);
  // Frames in order, one ring decision at the end; see RingLink::SendBatch.
  absl::StatusOr<size_t> SendBatch(absl::Span<const absl::Span<const uint8_t>> payloads,
                                   absl::Time deadline);

 private:
  // Writes and commits one frame, leaving the ring decision pending.
  absl::Status SendFrame(absl::Span<const uint8_t> payload, absl::Time deadline, bool may_wait);
  absl::Status SendInline(absl::Span<const uint8_t> payload, absl::Time deadline, bool may_wait);
  absl::Status SendSlot(absl::Span<const uint8_t> payload, absl::Time deadline, bool may_wait);
  absl::Status SendMmap(absl::Span<const uint8_t> payload, absl::Time deadline, bool may_wait);

  // Runs `attempt` once, or in LinkCore::WaitUntil when `may_wait`.
  absl::Status Retry(absl::Time deadline, bool may_wait,
                     absl::FunctionRef<absl::StatusOr<bool>()> attempt);
  // A grant of `n` bytes: sets *span and *start (the stream position).
  absl::StatusOr<bool> TryGrantOnce(uint32_t n, absl::Span<uint8_t>* span, uint64_t* start);
  // Publishes `n` granted bytes at stream position `start`.
  absl::Status Commit(uint32_t n, uint64_t start);
  // The ring decision for everything committed since the last one.
  void FlushDoorbell();
  // Maps a shm/ failure of the ring or pool to the link's error: corruption
  // breaks the link (DATA_LOSS), a vanished peer marks it gone.
  absl::Status LinkError(const absl::Status& status);

  LinkCore& core_;
  shm::BipBuffer ring_;
  uint8_t* const ring_data_;
  RingProgress progress_;
  shm::VarSlotPool pool_;
  const uint32_t owner_;
  const shm::TierPolicy policy_;
  std::optional<MmapRegionSender> regions_;

  // Stream positions committed since the last ring decision: [begin, end).
  bool pending_ = false;
  uint64_t pending_begin_ = 0;
  uint64_t pending_end_ = 0;
};

}  // namespace shmhub::client

#endif  // SHMHUB_CLIENT_LINK_FRAME_SENDER_H_
