// RingLink: one end of a peer's ring pair — the data plane of format §6–§9.
// GuestLink (client/guest/guest_link.h) and HostLink
// (client/host/host_link.h) are RingLinks built for either side; this file
// is their shared contract.
//
// A link sends on one ring and receives from the other:
//   guest: sends guest->host, receives host->guest
//   host:  sends host->guest, receives guest->host
// Bytes never pass through the kernel on the hot path. A doorbell, when the
// link has one, is rung only when the other side may be asleep (the ring
// was empty before our commit, or was full before our release), so a busy
// stream makes no system calls (LinkOptions::always_ring rings on every
// update instead, for peers that are not shmhub links).
//
// Sending. Send() picks the tier by the format's rule (shm::ChooseTier):
// inline in the ring, SLOT_REF (payload copied into a pool slot), or
// MMAP_REF (payload in a memfd region announced over the mapping-control
// socket; only on links that have one). Send blocks while the ring or the
// pool is full (backpressure) until `deadline`, then fails with
// DEADLINE_EXCEEDED having sent nothing; TrySend never blocks
// (RESOURCE_EXHAUSTED when it would have to). SendBatch commits many frames
// and rings once.
//
// Receiving. Receive() hands out a ReceivedFrame: a zero-copy view of the
// payload (into the ring for inline frames, into the pool slot or mapping
// otherwise) that stays valid until it is released or destroyed. Releasing
// a SLOT_REF frame frees its pool slot; ring space is given back in ring
// order, so an older view still held keeps newer ring bytes reserved, and in
// chunks (receive_state.h says when), so a busy stream touches the shared
// read index once per chunk.
// Frames are read ahead of held views only up to the ring's wrap point:
// while a view from a wrapped ring's tail is held, frames at the front wait
// for its release, so a receiver that keeps views should release them
// before it blocks in Receive. ReceiveBatch hands out up to `max` frames at
// once.
//
// Waiting does not burn a core: spin briefly, then back off, sleeping on the
// doorbell when there is one (bounded sleeps otherwise). Every blocking call
// returns promptly — never spins forever — when: the deadline passes
// (DEADLINE_EXCEEDED), the link is closed (CANCELLED), the host raised
// host_goodbye (UNAVAILABLE), the peer's entry no longer holds this link's
// (Attached, epoch) or the doorbell hung up (UNAVAILABLE: the peer left),
// or the link was stopped for recovery (ABORTED).
//
// Hostile input. Everything read from the ring is validated: entry lengths
// and flags (shm::ParseFrame), slot references (class, index, generation,
// owner, slot length prefix), mapping references (known map id and
// generation, bounds). A corrupt entry is a DATA_LOSS error on that link —
// the link is then broken and every later call fails the same way — never
// undefined behaviour, never a crash, never memory outside the segment or a
// mapping.
//
// Threads: one thread may send while another receives (the rings are
// single-producer, single-consumer per direction). Two concurrent senders
// (or receivers) on one link are not allowed. Close() and Stop() may be
// called from any thread.
#ifndef SHMHUB_CLIENT_LINK_RING_LINK_H_
#define SHMHUB_CLIENT_LINK_RING_LINK_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "shm/doorbell.h"
#include "shm/segment.h"
#include "shm/unique_fd.h"

namespace shmhub::client {

class RingLink;
class ReceiveState;  // the receiver's bookkeeping of views still held
class LinkCore;      // state both halves share (link_core.h)
class FrameSender;   // the sending half (frame_sender.h)

enum class LinkSide { kGuest, kHost };

struct LinkOptions {
  // How long a blocked call spins before it starts backing off.
  absl::Duration spin = absl::Microseconds(50);
  // The longest single sleep while backing off without a doorbell (and the
  // longest doorbell wait between re-checks of host_goodbye and our entry).
  absl::Duration max_backoff = absl::Milliseconds(1);
  // Ring the doorbell after every send and every release of ring bytes, as
  // format §10 lists, instead of only when the other side may be asleep.
  // Set it when the peer is not a shmhub link (a Rust shm-primitives guest
  // or host): it sleeps on the doorbell without the store-load handshake
  // our rule pairs with, and would otherwise sleep through a ring we never
  // sent. Costs a system call per Send.
  bool always_ring = false;
};

// What a link is built from. The segment must outlive the link.
struct LinkEndpoints {
  shm::Segment* segment = nullptr;
  uint32_t peer_id = 0;
  uint32_t epoch = 0;  // the occupancy this link serves
  LinkSide side = LinkSide::kGuest;
  // This side's doorbell end, if any (the guest end for a guest, the host
  // end for the host). Without one, waits back off with bounded sleeps.
  std::optional<shm::Doorbell> doorbell;
  // The mapping-control socket (format §9), if any: needed to send or
  // receive MMAP_REF frames. Without one, payloads too large for a pool
  // slot fail with RESOURCE_EXHAUSTED and a received MMAP_REF is DATA_LOSS.
  shm::UniqueFd mapping_control;
};

// A received payload. Move-only; releases itself when destroyed.
class ReceivedFrame {
 public:
  ReceivedFrame() = default;
  ~ReceivedFrame();
  ReceivedFrame(ReceivedFrame&& other) noexcept;
  ReceivedFrame& operator=(ReceivedFrame&& other) noexcept;
  ReceivedFrame(const ReceivedFrame&) = delete;
  ReceivedFrame& operator=(const ReceivedFrame&) = delete;

  absl::Span<const uint8_t> data() const { return data_; }
  bool empty() const { return receiver_ == nullptr; }
  // Gives the payload back (frees its pool slot; returns ring space in
  // order). Idempotent.
  void Release();

 private:
  friend class RingLink;
  // Not owning: a ReceiveState lives until its last view is released
  // (receive_state.h), so a view needs no reference count of its own.
  ReceiveState* receiver_ = nullptr;
  absl::Span<const uint8_t> data_;
  uint64_t token_ = 0;  // which view this is, for the receiver's bookkeeping
};

class RingLink {
 public:
  // INVALID_ARGUMENT for a peer id outside the segment; FAILED_PRECONDITION
  // when the entry does not hold (Attached, epoch) now.
  static absl::StatusOr<std::unique_ptr<RingLink>> Create(LinkEndpoints endpoints,
                                                          LinkOptions options = {});
  ~RingLink();
  RingLink(const RingLink&) = delete;
  RingLink& operator=(const RingLink&) = delete;

  absl::Status Send(absl::Span<const uint8_t> payload, absl::Time deadline);
  absl::Status TrySend(absl::Span<const uint8_t> payload);
  // Sends payloads in order; returns how many were committed (all of them
  // unless the deadline passed or the link failed, in which case the
  // error comes with the count in its message and a prefix was sent).
  absl::StatusOr<size_t> SendBatch(absl::Span<const absl::Span<const uint8_t>> payloads,
                                   absl::Time deadline);

  absl::StatusOr<ReceivedFrame> Receive(absl::Time deadline);
  // nullopt when nothing is ready now.
  absl::StatusOr<std::optional<ReceivedFrame>> TryReceive();
  // At least one frame (waiting until `deadline` for the first), at most
  // `max`, without waiting for more once one is there.
  absl::StatusOr<std::vector<ReceivedFrame>> ReceiveBatch(size_t max, absl::Time deadline);

  // Ends the link: blocked and later calls fail with CANCELLED. Views
  // already handed out stay valid until released.
  void Close();
  // Recovery (host side, client/host): blocked and later calls fail with
  // ABORTED; views stay valid until released.
  void Stop();
  // Views handed out and not yet released (the host acknowledges a
  // recovery only when this is 0).
  size_t outstanding_views() const;

  uint32_t peer_id() const;
  uint32_t epoch() const;

 private:
  RingLink(std::shared_ptr<LinkCore> core, std::unique_ptr<FrameSender> sender,
           std::shared_ptr<ReceiveState> receiver);
  // A view of `receiver`'s; released through it.
  static ReceivedFrame MakeFrame(ReceiveState* receiver,
                                 absl::Span<const uint8_t> data, uint64_t token);

  std::shared_ptr<LinkCore> core_;
  std::unique_ptr<FrameSender> sender_;
  std::shared_ptr<ReceiveState> receiver_;
};

}  // namespace shmhub::client

#endif  // SHMHUB_CLIENT_LINK_RING_LINK_H_
