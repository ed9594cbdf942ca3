// LinkCore: what both halves of one RingLink share — which occupancy the
// link serves, its lifecycle flags, its sticky failure, the doorbell, and the
// one way the link waits (spin, back off, sleep on the doorbell).
//
// Lifecycle. A link is usable until the first of:
//   Close()              CANCELLED for every call from then on;
//   Stop()               ABORTED (recovery: the host is about to ack);
//   Fail(DATA_LOSS)      the peer broke the format; every call fails so;
//   MarkGone(...)        UNAVAILABLE: the doorbell hung up or could not be
//                        rung, a mapping-control send found no reader.
// plus the conditions read from the segment on every check: host_goodbye
// and our entry no longer holding (Attached, epoch), both UNAVAILABLE.
// CheckOpen() covers the first three (the caller cannot go on at all);
// CheckPeer() adds the peer conditions. Receivers consult CheckPeer only
// when nothing is ready, so frames committed before a peer left are still
// delivered; senders consult it before every frame.
//
// Waiting (WaitUntil). `spin` of re-tries with a CPU pause (every 16th
// re-try, about every microsecond, looks at the peer and the clock and
// yields the CPU: when both ends share one CPU, a spinning waiter would
// otherwise burn the time slice the other end needs to make progress), then
// sleeps: on the doorbell when there is one (at most max_backoff, rounded up
// to the doorbell's 1 ms resolution, between re-checks), otherwise doubling
// sleeps from 1 us up to max_backoff. Before each sleep the attempt runs
// once more after AsymmetricFence::Heavy(): that is the waiter's half of the
// Dekker handshake whose other half (store index, fence, load the other
// index, ring if the other side may sleep) is in the sender and the
// receiver. Every loop ends on the deadline or a CheckOpen/CheckPeer
// failure, re-checked at least every max_backoff (1 ms resolution with a
// doorbell).
//
// One doorbell serves both directions of the link, so a sending thread and
// a receiving thread may wait at once. Only one of them polls the doorbell
// (the poller); the other waits on a condition variable that the poller
// signals after every wake-up, so a ring meant for either reaches both.
//
// Thread-safety: every method may be called from any thread.
#ifndef SHMHUB_CLIENT_LINK_LINK_CORE_H_
#define SHMHUB_CLIENT_LINK_LINK_CORE_H_

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/link/ring_link.h"
#include "shm/doorbell.h"
#include "shm/peer_table.h"
#include "shm/segment.h"

namespace shmhub::client {

class LinkCore {
 public:
  // `segment` must outlive the core; peer_id must be valid for it.
  LinkCore(shm::Segment* segment, uint32_t peer_id, uint32_t epoch, LinkSide side,
           std::optional<shm::Doorbell> doorbell, const LinkOptions& options);
  LinkCore(const LinkCore&) = delete;
  LinkCore& operator=(const LinkCore&) = delete;

  shm::Segment& segment() const { return *segment_; }
  uint32_t peer_id() const { return peer_id_; }
  uint32_t epoch() const { return epoch_; }
  LinkSide side() const { return side_; }
  bool has_doorbell() const { return doorbell_.has_value(); }
  // LinkOptions::always_ring: ring on every update, not only for sleepers.
  bool always_ring() const { return options_.always_ring; }
  // "guest 3 epoch 7" / "host link to peer 3 epoch 7", for messages.
  const std::string& name() const { return name_; }

  // CANCELLED, ABORTED or the sticky DATA_LOSS; OK otherwise. Atomic loads
  // only, so it is cheap enough for every call.
  absl::Status CheckOpen() const;
  // CheckOpen, then the sticky UNAVAILABLE, host_goodbye and our entry's
  // (Attached, epoch) pair.
  absl::Status CheckPeer() const;
  // Whether our entry still names our occupancy: our epoch, Attached or
  // Goodbye (left, not yet recovered). A receiver reads entries and gives
  // ring bytes back only while it does: once the entry moved on, recovery
  // may have reset the rings and a new occupant may own them.
  bool RingsStillOurs() const;
  // Stopped or broken: nothing of this link may touch the rings any more.
  bool Halted() const;
  // Close() was called.
  bool Closed() const;

  void Close();
  void Stop();
  // Breaks the link with `status` (DATA_LOSS) unless it already failed, and
  // returns the link's failure (the first one recorded).
  absl::Status Fail(const absl::Status& status);
  // Records that the peer is gone (UNAVAILABLE) unless already recorded.
  void MarkGone(const absl::Status& status);

  // Rings the peer's doorbell, if we have one. A dead peer is recorded with
  // MarkGone; the caller carries on (its next check reports it).
  void RingPeer();

  // Runs `attempt` until it returns true (OK), returns an error (that
  // error), the link check fails (its error) or `deadline` passes
  // (DEADLINE_EXCEEDED). `attempt` runs at least once, even with a past
  // deadline; a first attempt that succeeds reads no clock. `before_sleep`
  // runs before each sleep's last re-check (a receiver gives back the ring
  // bytes it still owes there, so the producer can tell it may sleep). See
  // the file comment for how it waits.
  absl::Status WaitUntil(absl::Time deadline, absl::FunctionRef<absl::StatusOr<bool>()> attempt,
                         absl::FunctionRef<void()> before_sleep = [] {});

 private:
  // Bits of flags_.
  static constexpr uint32_t kClosed = 1;
  static constexpr uint32_t kStopped = 2;
  static constexpr uint32_t kBroken = 4;
  static constexpr uint32_t kGone = 8;

  absl::Status FlagStatus(uint32_t flags, bool include_gone) const;
  // Sleeps up to `timeout`, less when a local waiter or the doorbell wakes
  // us. `token` is the wake sequence read before the caller's last attempt.
  void Sleep(uint64_t token, absl::Duration timeout);
  void WakeLocalWaiters();

  shm::Segment* const segment_;
  const uint32_t peer_id_;
  const uint32_t epoch_;
  const LinkSide side_;
  const LinkOptions options_;
  const std::optional<shm::Doorbell> doorbell_;
  const std::string name_;
  const shm::PeerEntryView entry_;

  // kClosed | kStopped | kBroken | kGone, set once each and read without a
  // lock; kBroken and kGone are set under mu_ after the status they
  // announce.
  std::atomic<uint32_t> flags_{0};
  mutable absl::Mutex mu_;
  absl::Status failure_ ABSL_GUARDED_BY(mu_);  // the kBroken status
  absl::Status gone_ ABSL_GUARDED_BY(mu_);     // the kGone status

  // Doorbell sharing between a sending and a receiving thread.
  std::atomic<bool> poller_busy_{false};
  std::atomic<uint64_t> wake_seq_{0};
  absl::Mutex wake_mu_;
  absl::CondVar wake_cv_;
};

}  // namespace shmhub::client

#endif  // SHMHUB_CLIENT_LINK_LINK_CORE_H_
