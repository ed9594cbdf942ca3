#include "client/link/link_core.h"

#include <sched.h>

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/link/asymmetric_fence.h"
#include "shm/cpu_relax.h"
#include "shm/shm_error.h"

namespace shmhub::client {
namespace {

// The first sleep without a doorbell; doubled up to max_backoff.
constexpr absl::Duration kFirstBackoff = absl::Microseconds(1);

// Attempts between two looks at the peer and the clock while spinning
// (about a microsecond of spinning).
constexpr uint32_t kAttemptsPerCheck = 16;

std::string LinkName(LinkSide side, uint32_t peer_id, uint32_t epoch) {
  return side == LinkSide::kGuest
             ? absl::StrCat("guest link of peer ", peer_id, " epoch ", epoch)
             : absl::StrCat("host link to peer ", peer_id, " epoch ", epoch);
}

}  // namespace

LinkCore::LinkCore(shm::Segment* segment, uint32_t peer_id, uint32_t epoch, LinkSide side,
                   std::optional<shm::Doorbell> doorbell, const LinkOptions& options)
    : segment_(segment),
      peer_id_(peer_id),
      epoch_(epoch),
      side_(side),
      options_(options),
      doorbell_(std::move(doorbell)),
      name_(LinkName(side, peer_id, epoch)),
      entry_(*segment->peers().Entry(peer_id)) {}

absl::Status LinkCore::FlagStatus(uint32_t flags, bool include_gone) const {
  if (flags & kBroken) {
    absl::MutexLock lock(&mu_);
    return failure_;
  }
  if (flags & kStopped) return absl::AbortedError(absl::StrCat(name_, " was stopped for recovery"));
  if (flags & kClosed) return absl::CancelledError(absl::StrCat(name_, " is closed"));
  if (include_gone && (flags & kGone)) {
    absl::MutexLock lock(&mu_);
    return gone_;
  }
  return absl::OkStatus();
}

absl::Status LinkCore::CheckOpen() const {
  // Acquire: pairs with the release in Fail/MarkGone, though the status
  // itself is read under mu_; a stale 0 only delays the error to the next
  // check.
  const uint32_t flags = flags_.load(std::memory_order_acquire);
  if (flags == 0) return absl::OkStatus();
  return FlagStatus(flags, /*include_gone=*/false);
}

absl::Status LinkCore::CheckPeer() const {
  // Acquire: as in CheckOpen.
  const uint32_t flags = flags_.load(std::memory_order_acquire);
  if (flags != 0) {
    if (absl::Status s = FlagStatus(flags, /*include_gone=*/true); !s.ok()) return s;
  }
  if (segment_->HostGoodbye()) {
    return absl::UnavailableError(
        absl::StrCat(name_, ": the host stopped for good or replaced the segment (host_goodbye "
                     "is set)"));
  }
  if (absl::Status pair = entry_.CheckPair(shm::PeerState::kAttached, epoch_); !pair.ok()) {
    return absl::UnavailableError(
        absl::StrCat(name_, ": the peer left (entry no longer Attached at our epoch: ",
                     pair.message(), ")"));
  }
  return absl::OkStatus();
}

bool LinkCore::RingsStillOurs() const {
  const shm::PeerPair pair = entry_.LoadPair();
  return pair.second == epoch_ &&
         (pair.first.Is(shm::PeerState::kAttached) || pair.first.Is(shm::PeerState::kGoodbye));
}

bool LinkCore::Halted() const {
  // Relaxed: a snapshot for a decision the caller re-makes on every call;
  // it orders no other memory.
  return (flags_.load(std::memory_order_relaxed) & (kStopped | kBroken)) != 0;
}

bool LinkCore::Closed() const {
  // Relaxed: as in Halted.
  return (flags_.load(std::memory_order_relaxed) & kClosed) != 0;
}

void LinkCore::Close() {
  // Release: a checker that sees the bit also sees what the closing thread
  // did before (nothing it reads depends on it, but it costs nothing).
  flags_.fetch_or(kClosed, std::memory_order_release);
  // §10: ring when closing, so a peer asleep on the doorbell re-checks.
  RingPeer();
  WakeLocalWaiters();
}

void LinkCore::Stop() {
  // Release: as in Close.
  flags_.fetch_or(kStopped, std::memory_order_release);
  WakeLocalWaiters();
}

absl::Status LinkCore::Fail(const absl::Status& status) {
  absl::Status first;
  {
    absl::MutexLock lock(&mu_);
    // Relaxed: mu_ orders this with the store below.
    if ((flags_.load(std::memory_order_relaxed) & kBroken) == 0) {
      failure_ = status;
      // Release: failure_ is stored before the bit that announces it.
      flags_.fetch_or(kBroken, std::memory_order_release);
    }
    first = failure_;
  }
  WakeLocalWaiters();
  return first;
}

void LinkCore::MarkGone(const absl::Status& status) {
  {
    absl::MutexLock lock(&mu_);
    // Relaxed: mu_ orders this with the store below.
    if ((flags_.load(std::memory_order_relaxed) & kGone) != 0) return;
    gone_ = absl::UnavailableError(absl::StrCat(name_, ": the peer is gone (", status.message(),
                                                ")"));
    // Release: gone_ is stored before the bit that announces it.
    flags_.fetch_or(kGone, std::memory_order_release);
  }
  WakeLocalWaiters();
}

void LinkCore::RingPeer() {
  if (!doorbell_.has_value()) return;
  absl::StatusOr<shm::SignalResult> sent = doorbell_->Signal();
  // kBufferFull is as good as sent (a wake-up is pending); every failure
  // means nobody is left to wake, as Rust counts it (§10).
  if (!sent.ok()) MarkGone(sent.status());
}

void LinkCore::WakeLocalWaiters() {
  absl::MutexLock lock(&wake_mu_);
  // Release: a waiter that reads the new value has seen what we changed
  // before (flags, failure); the mutex orders it for cv waiters anyway.
  wake_seq_.fetch_add(1, std::memory_order_release);
  wake_cv_.SignalAll();
}

void LinkCore::Sleep(uint64_t token, absl::Duration timeout) {
  bool idle = false;
  // Acquire on success: we take over the doorbell after the previous
  // poller's release; relaxed on failure: we only learn someone else polls.
  if (doorbell_.has_value() &&
      poller_busy_.compare_exchange_strong(idle, true, std::memory_order_acquire,
                                           std::memory_order_relaxed)) {
    // The doorbell's resolution is 1 ms: round up rather than poll with 0,
    // which would turn the sleep into a spin.
    const int64_t ms = std::max<int64_t>(1, absl::ToInt64Milliseconds(absl::Ceil(
                                                timeout, absl::Milliseconds(1))));
    absl::StatusOr<shm::WaitResult> woke = doorbell_->Wait(std::chrono::milliseconds(ms));
    // Release: hands the doorbell to the next poller.
    poller_busy_.store(false, std::memory_order_release);
    if (!woke.ok()) {
      MarkGone(woke.status());
      return;
    }
    // Whatever woke us may be meant for the other direction's waiter.
    if (*woke == shm::WaitResult::kWoken) WakeLocalWaiters();
    return;
  }
  // Without a doorbell, or while the other thread polls it: a bounded sleep
  // that Close, Stop and the poller's wake-ups cut short.
  absl::MutexLock lock(&wake_mu_);
  // Relaxed: read under wake_mu_, which every increment holds.
  if (wake_seq_.load(std::memory_order_relaxed) != token) return;
  wake_cv_.WaitWithTimeout(&wake_mu_, timeout);
}

absl::Status LinkCore::WaitUntil(absl::Time deadline,
                                 absl::FunctionRef<absl::StatusOr<bool>()> attempt,
                                 absl::FunctionRef<void()> before_sleep) {
  // The fast path: a call that succeeds at once reads no clock.
  if (absl::Status open = CheckOpen(); !open.ok()) return open;
  absl::StatusOr<bool> first = attempt();
  if (!first.ok()) return first.status();
  if (*first) return absl::OkStatus();

  const absl::Time spin_until = absl::Now() + options_.spin;
  absl::Duration backoff = kFirstBackoff;
  bool spinning = true;
  for (uint32_t pass = 0;; ++pass) {
    // While spinning, the peer checks and the clock (each about as costly
    // as an attempt) are read once every kAttemptsPerCheck attempts, so a
    // spinning waiter sees the other side's index move sooner; there it also
    // yields, in case the other side waits for our CPU (a few hundred ns
    // when nobody does).
    if (!spinning || pass % kAttemptsPerCheck == 0) {
      if (absl::Status peer = CheckPeer(); !peer.ok()) return peer;
      absl::Time now = absl::Now();
      if (now >= deadline) {
        return absl::DeadlineExceededError(
            absl::StrCat(name_, ": deadline passed while waiting"));
      }
      spinning = now < spin_until;
      if (spinning && pass != 0) sched_yield();
      if (!spinning) {
        // Acquire: pairs with WakeLocalWaiters; read before the re-check
        // below so a wake-up after it is not lost.
        const uint64_t token = wake_seq_.load(std::memory_order_acquire);
        before_sleep();
        // The waiter's half of the Dekker handshake (the heavy one, since
        // we sleep at most once per spin, while the other side's half runs
        // on every frame: asymmetric_fence.h). Our last index store (a
        // commit, or the release of ring bytes before_sleep made) is
        // ordered before the re-check's loads of the other side's index,
        // so either we see its progress now or it sees ours and rings us.
        AsymmetricFence::Heavy();
        absl::StatusOr<bool> done = attempt();
        if (!done.ok()) return done.status();
        if (*done) return absl::OkStatus();
        now = absl::Now();
        if (now < deadline) {
          const absl::Duration cap = doorbell_.has_value() ? options_.max_backoff : backoff;
          Sleep(token, std::min(cap, deadline - now));
          backoff = std::min(backoff * 2, options_.max_backoff);
        }
      }
    }
    if (spinning) shm::CpuRelax();
    if (absl::Status open = CheckOpen(); !open.ok()) return open;
    absl::StatusOr<bool> done = attempt();
    if (!done.ok()) return done.status();
    if (*done) return absl::OkStatus();
  }
}

}  // namespace shmhub::client
