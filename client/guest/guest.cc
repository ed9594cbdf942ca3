#include "client/guest/guest.h"

#include <time.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "shm/format.h"
#include "shm/peer_table.h"
#include "shm/shm_error.h"

namespace shmhub::client {
namespace {

// A header may ask for any interval; below this the thread would spin. The
// format's staleness rule (2 x interval) still uses the header's value.
constexpr absl::Duration kMinHeartbeatInterval = absl::Milliseconds(1);

uint64_t MonotonicNowNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<uint64_t>(ts.tv_nsec);
}

absl::Duration HeaderInterval(uint64_t ns) {
  if (ns > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return absl::InfiniteDuration();
  }
  return absl::Nanoseconds(static_cast<int64_t>(ns));
}

absl::Status CheckOptions(const GuestOptions& options) {
  if (!options.socket_path.empty()) {
    if (!options.segment_path.empty() || options.peer_id != 0 ||
        options.expected_epoch.has_value()) {
      return absl::InvalidArgumentError(
          "with socket_path, shmhubd picks the slot and sends the segment: segment_path, "
          "peer_id and expected_epoch must not be set");
    }
  } else if (options.segment_path.empty()) {
    return absl::InvalidArgumentError("neither segment_path nor socket_path is set");
  }
  if (options.peer_id != 0 && !options.expected_epoch.has_value()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "claiming peer ", options.peer_id,
        " needs expected_epoch (the epoch ReservePeer returned)"));
  }
  if (options.peer_id == 0 && options.expected_epoch.has_value()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "expected_epoch ", *options.expected_epoch,
        " given without a peer_id; a direct attach (peer_id 0) takes whatever epoch it creates"));
  }
  if (options.heartbeat_interval.has_value() &&
      *options.heartbeat_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("heartbeat_interval must be positive, got ",
                     absl::FormatDuration(*options.heartbeat_interval)));
  }
  return absl::OkStatus();
}

}  // namespace

const char* HeartbeatStateName(HeartbeatState state) {
  switch (state) {
    case HeartbeatState::kDisabled:
      return "disabled";
    case HeartbeatState::kRunning:
      return "running";
    case HeartbeatState::kStopped:
      return "stopped";
    case HeartbeatState::kHostGoodbye:
      return "host_goodbye";
    case HeartbeatState::kLostSlot:
      return "lost_slot";
  }
  return "unknown";
}

absl::StatusOr<std::unique_ptr<Guest>> Guest::Attach(const GuestOptions& options) {
  if (absl::Status valid = CheckOptions(options); !valid.ok()) return valid;

  std::optional<LocalChannels> channels;
  std::string segment_path = options.segment_path;
  uint32_t peer_id = options.peer_id;
  std::optional<uint32_t> claim_epoch = options.expected_epoch;
  absl::StatusOr<std::unique_ptr<shm::Segment>> segment;
  if (!options.socket_path.empty()) {
    absl::StatusOr<BootstrappedSlot> slot =
        BootstrapOverLocalSocket(options.socket_path, options.bootstrap_timeout);
    if (!slot.ok()) return slot.status();
    segment_path = slot->segment_path;
    peer_id = slot->peer_id;
    segment = std::move(slot->segment);
    channels = std::move(slot->channels);
  } else {
    segment = shm::Segment::Attach(segment_path);
    if (!segment.ok()) {
      return shm::Annotate(segment.status(), absl::StrCat("attaching segment ", segment_path));
    }
  }
  if ((*segment)->HostGoodbye()) {
    // Taking a slot now would only leave it for the next daemon to clean.
    return absl::UnavailableError(absl::StrCat("the host of ", segment_path,
                                               " stopped for good or replaced the segment "
                                               "(host_goodbye is set)"));
  }
  shm::PeerTable peers = (*segment)->peers();

  uint32_t epoch = 0;
  if (channels.has_value()) {
    // The daemon reserved the slot for this connection a moment ago; its
    // epoch is the one the entry holds now.
    absl::StatusOr<shm::PeerEntryView> entry = peers.Entry(peer_id);
    if (!entry.ok()) {
      return shm::Annotate(entry.status(), absl::StrCat("peer ", peer_id, " sent by shmhubd"));
    }
    claim_epoch = entry->LoadPair().second;
  }
  if (peer_id != 0) {
    epoch = *claim_epoch;
    const std::string what = absl::StrCat("claiming peer ", peer_id, " with epoch ", epoch,
                                          " in ", segment_path);
    absl::StatusOr<shm::PeerEntryView> entry = peers.Entry(peer_id);
    if (!entry.ok()) return shm::Annotate(entry.status(), what);
    if (absl::Status claimed = entry->ClaimFenced(epoch); !claimed.ok()) {
      return shm::Annotate(claimed, what);
    }
  } else {
    absl::StatusOr<shm::Occupancy> taken = peers.AttachFirstFree();
    if (!taken.ok()) {
      return shm::Annotate(taken.status(),
                      absl::StrCat("attaching to a free slot in ", segment_path));
    }
    peer_id = taken->peer_id;
    epoch = taken->epoch;
  }

  absl::Duration interval = absl::ZeroDuration();
  if (options.heartbeat) {
    interval = options.heartbeat_interval.value_or(
        HeaderInterval((*segment)->heartbeat_interval_ns()));
    if (interval > absl::ZeroDuration()) interval = std::max(interval, kMinHeartbeatInterval);
  }
  std::unique_ptr<Guest> guest(
      new Guest(*std::move(segment), peer_id, epoch, interval, std::move(channels)));
  if (interval > absl::ZeroDuration()) guest->StartHeartbeat();
  return guest;
}

Guest::Guest(std::unique_ptr<shm::Segment> segment, uint32_t peer_id, uint32_t epoch,
             absl::Duration heartbeat_interval, std::optional<LocalChannels> channels)
    : peer_id_(peer_id),
      epoch_(epoch),
      heartbeat_interval_(heartbeat_interval),
      bootstrapped_locally_(channels.has_value()),
      segment_(std::move(segment)),
      channels_(std::move(channels)) {}

Guest::~Guest() { Goodbye().IgnoreError(); }

void Guest::StartHeartbeat() {
  // The first heartbeat before Attach returns, so the daemon can arm its
  // heartbeat detector as soon as it sees us attached.
  const HeartbeatState first = HeartbeatOnce();
  heartbeat_state_.store(first, std::memory_order_relaxed);
  if (first != HeartbeatState::kRunning) return;
  heartbeat_thread_ = std::thread([this] { HeartbeatLoop(); });
}

void Guest::HeartbeatLoop() {
  while (!stop_heartbeat_.WaitForNotificationWithTimeout(heartbeat_interval_)) {
    const HeartbeatState next = HeartbeatOnce();
    if (next != HeartbeatState::kRunning) {
      heartbeat_state_.store(next, std::memory_order_relaxed);
      return;
    }
  }
}

HeartbeatState Guest::HeartbeatOnce() {
  absl::ReaderMutexLock lock(&segment_mu_);
  if (segment_ == nullptr) return HeartbeatState::kStopped;
  if (segment_->HostGoodbye()) return HeartbeatState::kHostGoodbye;
  absl::StatusOr<shm::PeerEntryView> entry = segment_->peers().Entry(peer_id_);
  if (!entry.ok() || !entry->CheckPair(shm::PeerState::kAttached, epoch_).ok()) {
    return HeartbeatState::kLostSlot;
  }
  entry->UpdateHeartbeat(MonotonicNowNs());
  return HeartbeatState::kRunning;
}

absl::Status Guest::Goodbye() {
  absl::MutexLock goodbye_lock(&goodbye_mu_);
  if (goodbye_result_.has_value()) return *goodbye_result_;

  stop_heartbeat_.Notify();
  if (heartbeat_thread_.joinable()) heartbeat_thread_.join();
  HeartbeatState running = HeartbeatState::kRunning;
  heartbeat_state_.compare_exchange_strong(running, HeartbeatState::kStopped,
                                           std::memory_order_relaxed);

  std::unique_ptr<shm::Segment> segment;
  {
    absl::MutexLock lock(&segment_mu_);
    segment = std::move(segment_);
  }
  absl::Status result = absl::OkStatus();
  absl::StatusOr<shm::PeerEntryView> entry = segment->peers().Entry(peer_id_);
  if (!entry.ok()) {
    result = entry.status();
  } else {
    result = entry->GoodbyeFenced(epoch_);
  }
  if (!result.ok()) {
    result = shm::Annotate(result, absl::StrCat("goodbye of peer ", peer_id_, " epoch ", epoch_));
  }
  segment.reset();  // unmaps
  // Only now: the daemon reads the hang-up after our Goodbye store.
  channels_.reset();
  goodbye_result_ = result;
  return result;
}

absl::StatusOr<std::optional<LocalChannels>> Guest::DupLocalChannels() {
  absl::MutexLock lock(&goodbye_mu_);
  if (!channels_.has_value()) return std::optional<LocalChannels>();
  absl::StatusOr<shm::UniqueFd> doorbell = shm::DupCloexec(channels_->doorbell.fd());
  if (!doorbell.ok()) return doorbell.status();
  absl::StatusOr<shm::UniqueFd> receive = shm::DupCloexec(channels_->mapping_control_receive.get());
  if (!receive.ok()) return receive.status();
  // Both handles name one socket (§9.2); the send handle may be absent.
  shm::UniqueFd send;
  if (channels_->mapping_control_send.valid()) {
    absl::StatusOr<shm::UniqueFd> dup = shm::DupCloexec(channels_->mapping_control_send.get());
    if (!dup.ok()) return dup.status();
    send = *std::move(dup);
  }
  return std::optional<LocalChannels>(
      LocalChannels{shm::Doorbell(shm::DoorbellEnd::kGuest, *std::move(doorbell)),
                    *std::move(receive), std::move(send)});
}

shm::Segment* Guest::segment() const {
  absl::ReaderMutexLock lock(&segment_mu_);
  return segment_.get();
}

bool Guest::HostGoodbye() const {
  absl::ReaderMutexLock lock(&segment_mu_);
  return segment_ != nullptr && segment_->HostGoodbye();
}

bool Guest::StillAttached() const {
  absl::ReaderMutexLock lock(&segment_mu_);
  if (segment_ == nullptr) return false;
  absl::StatusOr<shm::PeerEntryView> entry = segment_->peers().Entry(peer_id_);
  return entry.ok() && entry->CheckPair(shm::PeerState::kAttached, epoch_).ok();
}

HeartbeatState Guest::heartbeat_state() const {
  return heartbeat_state_.load(std::memory_order_relaxed);
}

}  // namespace shmhub::client
