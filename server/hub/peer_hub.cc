// PeerHub: creation, the RPC operations, views and shutdown. The monitoring
// pass (Scan) and recovery live in peer_hub_scan.cc.
#include "server/hub/peer_hub.h"

#include <sys/stat.h>

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "proto/peer_state_conversion.h"
#include "server/base/monotonic_clock.h"
#include "server/base/proto_time.h"
#include "server/base/shutting_down.h"
#include "server/hub/peer_events.h"
#include "server/hub/peer_view.h"
#include "server/hub/slot_state.h"
#include "shm/format.h"

namespace shmhub::server {
namespace {

constexpr mode_t kSegmentMode = 0660;

absl::string_view StateName(v1::PeerState state) {
  switch (state) {
    case v1::PEER_STATE_EMPTY:
      return "Empty";
    case v1::PEER_STATE_RESERVED:
      return "Reserved";
    case v1::PEER_STATE_ATTACHED:
      return "Attached";
    case v1::PEER_STATE_GOODBYE:
      return "Goodbye";
    case v1::PEER_STATE_CORRUPT:
      return "Corrupt";
    default:
      return "Unspecified";
  }
}

enum class FencedOp { kRelease, kEvict };

// What a caller that found the slot in `observed` should do instead.
absl::string_view FencingHint(FencedOp op, v1::PeerState observed) {
  switch (observed) {
    case v1::PEER_STATE_EMPTY:
      return op == FencedOp::kRelease ? "there is no reservation to release" : "no guest holds it";
    case v1::PEER_STATE_RESERVED:
      return op == FencedOp::kRelease
                 ? "that reservation has ended and the slot was reserved again"
                 : "no guest has claimed it yet; use ReleasePeer to give a reservation back";
    case v1::PEER_STATE_ATTACHED:
      return op == FencedOp::kRelease
                 ? "a guest claimed it; use EvictPeer to remove an attached guest"
                 : "the guest you name is gone and another one holds the slot";
    default:
      return "its guest is gone and shmhubd is recovering the slot";
  }
}

// "peer 3 is Attached at epoch 6, not Reserved at epoch 5; a guest claimed
// it; use EvictPeer to remove an attached guest".
absl::Status FencingError(FencedOp op, uint32_t peer_id, v1::PeerState observed,
                          uint32_t observed_epoch, absl::string_view where, uint32_t epoch) {
  const absl::string_view wanted = op == FencedOp::kRelease ? "Reserved" : "Attached";
  return absl::FailedPreconditionError(
      absl::StrCat("peer ", peer_id, " is ", StateName(observed), " at epoch ", observed_epoch,
                   where, ", not ", wanted, " at epoch ", epoch, "; ", FencingHint(op, observed)));
}

// The same for a slot whose published state matched but whose entry did
// not: a guest changed it since the last scan, which will publish that.
absl::Status SegmentFencingError(FencedOp op, uint32_t peer_id, const shm::PeerPair& seen,
                                 uint32_t epoch) {
  return FencingError(op, peer_id, ApiPeerState(seen.first), seen.second,
                      " in the segment (a guest changed it since the last scan)", epoch);
}

// PublishedSlot packed into one mirror word: state in bits 0..7, stale in
// bit 8, the armed-detector mask in bits 16..31.
constexpr uint32_t kStaleBit = 1u << 8;
constexpr int kDetectorShift = 16;

uint32_t PackPublished(const SlotRecord& record) {
  uint32_t armed = 0;
  for (const v1::Detector detector : record.ArmedDetectors()) {
    armed |= 1u << static_cast<uint32_t>(detector);
  }
  return (static_cast<uint32_t>(record.state) & 0xFFu) | (record.stale ? kStaleBit : 0u) |
         (armed << kDetectorShift);
}

PublishedSlot UnpackPublished(uint32_t word) {
  return PublishedSlot{.state = static_cast<v1::PeerState>(word & 0xFFu),
                       .stale = (word & kStaleBit) != 0,
                       .armed_detectors = word >> kDetectorShift};
}


// The flag that sets the header field a GeometryDifference names.
absl::string_view FlagSetting(absl::string_view field) {
  if (field == "max_guests") return "--max_guests";
  if (field == "bipbuf_capacity") return "--ring_bytes";
  if (field == "slot classes") return "--slot_classes";
  if (field == "max_payload_size") return "--max_payload_size";
  if (field == "heartbeat_interval_ns") return "--heartbeat_interval";
  return field;
}

std::string DescribeDifferences(const std::vector<shm::GeometryDifference>& differences) {
  std::vector<std::string> parts;
  for (const shm::GeometryDifference& d : differences) {
    parts.push_back(absl::StrCat(FlagSetting(d.field), " (", d.field, "): the segment has ",
                                 d.found, ", this daemon ", d.wanted));
  }
  return absl::StrJoin(parts, "; ");
}

bool FileExists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

}  // namespace

absl::StatusOr<std::unique_ptr<PeerHub>> PeerHub::Create(const HubConfig& config,
                                                         EventJournal* journal,
                                                         HubMetrics* metrics) {
  absl::StatusOr<shm::PathLock> lock = shm::PathLock::Acquire(config.segment_path);
  if (!lock.ok()) {
    return shm::Annotate(lock.status(), absl::StrCat("cannot own the segment ",
                                                     config.segment_path,
                                                     " (is another shmhubd using --segment?)"));
  }
  HubRestore restore;
  restore.lock = *std::move(lock);
  return Create(config, journal, metrics, std::move(restore));
}

absl::StatusOr<std::unique_ptr<PeerHub>> PeerHub::Create(const HubConfig& config,
                                                         EventJournal* journal,
                                                         HubMetrics* metrics, HubRestore restore) {
  shm::PathLock& lock = restore.lock;
  std::vector<uint32_t> epoch_floors(config.max_guests, 0);
  for (const auto& [peer_id, slot] : restore.slots) {
    if (peer_id >= 1 && peer_id <= config.max_guests) {
      epoch_floors[peer_id - 1] = std::max(slot.epoch(), slot.epoch_floor());
    }
  }
  shm::SegmentConfig segment_config;
  segment_config.max_guests = config.max_guests;
  segment_config.ring_capacity = config.ring_bytes;
  segment_config.classes = config.slot_classes;
  segment_config.max_payload_size = config.max_payload_size;
  segment_config.inline_threshold = 0;  // the format's default
  segment_config.heartbeat_interval_ns = ToNs(config.heartbeat_interval);
  segment_config.mode = kSegmentMode;
  const std::string& path = config.segment_path;
  if (FileExists(path)) {
    // Looked at as a guest would first: nothing is written until it is
    // either adopted as it is or replaced.
    absl::StatusOr<std::unique_ptr<shm::Segment>> found = shm::Segment::Attach(path);
    const shm::ShmErrc errc = shm::ShmErrcOf(found.status());
    if (errc == shm::ShmErrc::kSymlink || errc == shm::ShmErrc::kNotRegularFile) {
      return shm::Annotate(found.status(), absl::StrCat("cannot use the segment path ", path));
    }
    std::string replacing;
    if (found.ok()) {
      const std::vector<shm::GeometryDifference> differences =
          (*found)->GeometryDifferences(segment_config);
      for (uint32_t i = 0; i < (*found)->layout().max_guests && i < config.max_guests; ++i) {
        epoch_floors[i] = std::max(epoch_floors[i], (*found)->peers().Entry(i + 1)->Epoch());
      }
      if (differences.empty() && !(*found)->HostGoodbye()) {
        found->reset();
        absl::StatusOr<std::unique_ptr<shm::Segment>> adopted = shm::Segment::Adopt(path, &lock);
        if (!adopted.ok()) {
          return shm::Annotate(adopted.status(), absl::StrCat("cannot adopt the segment ", path));
        }
        Log(LogLevel::kInfo, absl::StrCat("adopting the segment ", path,
                                          " an earlier shmhubd left: its guests keep their "
                                          "slots and epochs"));
        return std::unique_ptr<PeerHub>(new PeerHub(config, journal, metrics, *std::move(adopted),
                                                    /*adopted=*/true, std::move(restore)));
      }
      if (!differences.empty() && !config.reset_segment) {
        return absl::FailedPreconditionError(absl::StrCat(
            "the segment ", path, " an earlier shmhubd left has another geometry: ",
            DescribeDifferences(differences),
            ". Start with the segment's settings to keep its guests, or add --reset_segment to "
            "replace it (its guests are told to leave)"));
      }
      replacing = differences.empty()
                      ? std::string("its host said goodbye (host_goodbye is set)")
                      : absl::StrCat("--reset_segment: ", DescribeDifferences(differences));
    } else {
      replacing = absl::StrCat("it cannot be used: ", found.status().message());
    }
    Log(LogLevel::kWarning, absl::StrCat("replacing the segment ", path, " an earlier shmhubd "
                                         "left (", replacing, "); its guests are told to leave"));
    found = absl::StatusOr<std::unique_ptr<shm::Segment>>(nullptr);
    shm::RetireSegmentFile(path);
  }
  segment_config.initial_epochs = epoch_floors;
  absl::StatusOr<std::unique_ptr<shm::Segment>> segment =
      shm::Segment::Create(path, segment_config, std::move(lock));
  if (!segment.ok()) {
    return shm::Annotate(segment.status(), absl::StrCat("cannot create the segment ", path));
  }
  return std::unique_ptr<PeerHub>(new PeerHub(config, journal, metrics, *std::move(segment),
                                              /*adopted=*/false, std::move(restore)));
}

PeerHub::PeerHub(const HubConfig& config, EventJournal* journal, HubMetrics* metrics,
                 std::unique_ptr<shm::Segment> segment, bool adopted, HubRestore restore)
    : config_(config),
      journal_(journal),
      metrics_(metrics),
      segment_(std::move(segment)),
      started_at_(absl::Now()),
      adopted_(adopted),
      adopted_at_ns_(MonotonicNowNs()),
      host_gate_(config.max_guests, config.host_ack_timeout),
      state_log_(restore.state_log) {
  MutationLock lock(this);
  slots_.reserve(config_.max_guests);
  epoch_floors_.assign(config_.max_guests, 0);
  for (uint32_t peer_id = 1; peer_id <= config_.max_guests; ++peer_id) {
    SlotRecord& record = slots_.emplace_back(peer_id, EntryOf(peer_id).Epoch(), started_at_);
    const auto restored = restore.slots.find(peer_id);
    if (restored != restore.slots.end()) {
      epoch_floors_[peer_id - 1] =
          std::max(restored->second.epoch(), restored->second.epoch_floor());
    }
    if (adopted_) {
      host_gate_.ExpectHostUntil(adopted_at_ns_ + ToNs(config_.host_ack_timeout));
      // The occupancy the segment holds now is one a predecessor served; it
      // continues from what the predecessor published of it, and the scans
      // publish what changed while no daemon ran.
      if (restored != restore.slots.end()) RestoreSlot(restored->second, &record);
      // Nothing in this process watches its fds yet: the local socket
      // re-arms the process detector (AdoptedLocalGuests) and the host
      // application's handback the doorbell.
      record.process_watched = false;
      record.doorbell_watched = false;
      record.adopted_epoch = EntryOf(peer_id).Epoch();
      continue;
    }
    if (restored == restore.slots.end() ||
        restored->second.state() == v1::PEER_STATE_EMPTY) {
      continue;
    }
    // A new segment: the occupancy the state log remembers ended with the
    // old one, and watchers hear so.
    const shm::Occupancy ended{peer_id, restored->second.epoch()};
    if (restored->second.state() == v1::PEER_STATE_RESERVED) {
      Publish(MakePeerEvent(v1::EVENT_KIND_RELEASED, ended,
                            "the segment was replaced; the reservation ended with it"),
              LogLevel::kWarning);
      metrics_->CountReservation(ReservationOutcome::kReleased);
    } else {
      Publish(MakePeerEvent(v1::EVENT_KIND_RECOVERED, ended,
                            "the segment was replaced; this occupancy ended with it"),
              LogLevel::kWarning);
    }
  }
}

void PeerHub::PersistSlots() {
  if (state_log_ == nullptr) return;
  for (const SlotRecord& record : slots_) {
    uint32_t& floor = epoch_floors_[record.peer_id - 1];
    floor = std::max(floor, record.epoch);
    // Failures are logged once by the log; the hub goes on without it.
    state_log_->AppendSlot(SlotToState(record, floor)).IgnoreError();
  }
}

// The segment's destructor removes the file (format §15).
PeerHub::~PeerHub() = default;

shm::PeerEntryView PeerHub::EntryOf(uint32_t peer_id) const {
  // Callers pass ids of existing records, 1..max_guests, which the table
  // accepts by construction.
  return *segment_->peers().Entry(peer_id);
}

SlotRecord* PeerHub::FindRecord(uint32_t peer_id) {
  if (peer_id == 0 || peer_id > slots_.size()) return nullptr;
  return &slots_[peer_id - 1];
}

const SlotRecord* PeerHub::FindRecord(uint32_t peer_id) const {
  if (peer_id == 0 || peer_id > slots_.size()) return nullptr;
  return &slots_[peer_id - 1];
}

absl::Status PeerHub::StoppedError() const {
  return handing_over_ ? absl::UnavailableError(
                             "shmhubd is handing over to the next shmhubd on this segment; "
                             "retry in a moment")
                       : ShuttingDownError();
}

absl::Status PeerHub::NoSuchPeer(uint32_t peer_id) const {
  return absl::NotFoundError(absl::StrCat("no peer slot ", peer_id, ": this hub has slots 1..",
                                          config_.max_guests, " (--max_guests)"));
}

void PeerHub::Publish(v1::PeerEvent event, LogLevel level) {
  Log(level, DescribePeerEvent(event));
  metrics_->OnEvent(event);
  journal_->Append(std::move(event));
}

void PeerHub::RefreshMirror() {
  for (const SlotRecord& record : slots_) {
    // Relaxed: each word is the whole of what a reader takes from it, and
    // the reader orders no other memory on it.
    mirror_[record.peer_id - 1].store(PackPublished(record), std::memory_order_relaxed);
  }
}

PublishedSlot PeerHub::PublishedSlotState(uint32_t peer_id) const {
  if (peer_id == 0 || peer_id > config_.max_guests) return PublishedSlot{};
  // Relaxed: see RefreshMirror; a scrape needs no order with other words.
  return UnpackPublished(mirror_[peer_id - 1].load(std::memory_order_relaxed));
}

SlotRecord* PeerHub::FindByRequestId(const std::string& request_id) {
  // Records drop their reservation when the slot is Empty again, so a match
  // is a reservation whose occupancy still lasts.
  for (SlotRecord& record : slots_) {
    if (record.reservation.has_value() && record.reservation->request_id == request_id) {
      return &record;
    }
  }
  return nullptr;
}

SlotRecord* PeerHub::FindHolder(const shm::Occupancy& occupancy) {
  SlotRecord* record = FindRecord(occupancy.peer_id);
  return record != nullptr && record->Holds(occupancy) ? record : nullptr;
}

absl::StatusOr<Reservation> PeerHub::Reserve(const ReserveRequest& request) {
  MutationLock lock(this);
  if (shutting_down_) return StoppedError();
  if (!request.request_id.empty()) {
    if (const SlotRecord* replay = FindByRequestId(request.request_id); replay != nullptr) {
      metrics_->CountReservation(ReservationOutcome::kReplayed);
      return Reservation{.peer_id = replay->peer_id,
                         .epoch = replay->epoch,
                         .lease_expires_at = replay->reservation->lease_expires_at,
                         .replayed = true};
    }
  }
  // D-8 over the slots published Empty: a slot a guest took since the last
  // scan is skipped (its TryReserve fails, or the scan has yet to publish
  // its history), so a reservation never hides an unpublished transition.
  for (SlotRecord& record : slots_) {
    if (record.occupied()) continue;
    absl::StatusOr<uint32_t> epoch = EntryOf(record.peer_id).TryReserve();
    if (!epoch.ok()) continue;
    const absl::Time now = absl::Now();
    record.BeginOccupancy(v1::PEER_STATE_RESERVED, *epoch, now);
    record.reservation = SlotReservation{
        .owner = request.owner,
        .labels = request.labels,
        .request_id = request.request_id,
        .lease_ttl = request.lease_ttl,
        .lease_expires_at = now + request.lease_ttl,
        .lease_deadline_ns = MonotonicNowNs() + ToNs(request.lease_ttl),
    };
    v1::PeerEvent event =
        MakePeerEvent(v1::EVENT_KIND_RESERVED, record.occupancy(),
                      absl::StrCat("lease ", absl::FormatDuration(request.lease_ttl)));
    event.set_owner(request.owner);
    event.mutable_labels()->insert(request.labels.begin(), request.labels.end());
    Publish(std::move(event));
    metrics_->CountReservation(ReservationOutcome::kGranted);
    return Reservation{.peer_id = record.peer_id,
                       .epoch = *epoch,
                       .lease_expires_at = record.reservation->lease_expires_at,
                       .replayed = false};
  }
  metrics_->CountReservation(ReservationOutcome::kNoFreeSlot);
  return absl::ResourceExhaustedError(
      absl::StrCat("all ", config_.max_guests, " peer slots are occupied"));
}

absl::StatusOr<SlotRecord*> PeerHub::FenceOccupancy(const shm::Occupancy& occupancy,
                                                    v1::PeerState wanted) {
  const uint32_t peer_id = occupancy.peer_id;
  const uint32_t epoch = occupancy.epoch;
  const FencedOp op = wanted == v1::PEER_STATE_RESERVED ? FencedOp::kRelease : FencedOp::kEvict;
  if (shutting_down_) return StoppedError();
  SlotRecord* record = FindRecord(peer_id);
  if (record == nullptr) return NoSuchPeer(peer_id);
  if (record->state != wanted || record->epoch != epoch) {
    return FencingError(op, peer_id, record->state, record->epoch, "", epoch);
  }
  shm::PeerEntryView entry = EntryOf(peer_id);
  const absl::Status moved =
      op == FencedOp::kRelease ? entry.ReleaseFenced(epoch) : entry.GoodbyeFenced(epoch);
  if (!moved.ok()) return SegmentFencingError(op, peer_id, entry.LoadPair(), epoch);
  return record;
}

absl::Status PeerHub::Release(const shm::Occupancy& occupancy) {
  MutationLock lock(this);
  absl::StatusOr<SlotRecord*> record = FenceOccupancy(occupancy, v1::PEER_STATE_RESERVED);
  if (!record.ok()) return record.status();
  Publish(MakePeerEvent(v1::EVENT_KIND_RELEASED, occupancy, "released by ReleasePeer"));
  metrics_->CountReservation(ReservationOutcome::kReleased);
  (*record)->BecomeEmpty(occupancy.epoch, absl::Now());
  return absl::OkStatus();
}

absl::StatusOr<std::optional<shm::RecoveryReport>> PeerHub::Evict(
    const shm::Occupancy& occupancy, const std::string& reason) {
  MutationLock lock(this);
  absl::StatusOr<SlotRecord*> fenced = FenceOccupancy(occupancy, v1::PEER_STATE_ATTACHED);
  if (!fenced.ok()) return fenced.status();
  SlotRecord* record = *fenced;
  Publish(MakePeerEvent(v1::EVENT_KIND_EVICTED, occupancy,
                        reason.empty() ? std::string("evicted by EvictPeer") : reason));
  record->Enter(v1::PEER_STATE_GOODBYE, absl::Now());
  // The host application's RECOVERY_READY (or its timeout) recovers it.
  if (HeldForHost(*record, shm::PeerDeparture::kEvicted)) return std::nullopt;
  absl::StatusOr<shm::RecoveryReport> report = RecoverAndPublish(*record);
  if (!report.ok()) {
    return shm::Annotate(report.status(),
                       absl::StrCat(occupancy.ToString(),
                                    " was evicted, but its recovery failed (shmhubd retries it "
                                    "on every scan)"));
  }
  return std::optional<shm::RecoveryReport>(*std::move(report));
}

absl::StatusOr<v1::Peer> PeerHub::GetPeer(uint32_t peer_id) const {
  absl::MutexLock lock(&mu_);
  const SlotRecord* record = FindRecord(peer_id);
  if (record == nullptr) return NoSuchPeer(peer_id);
  return BuildPeerView(*record, *segment_, MonotonicNowNs());
}

std::vector<v1::Peer> PeerHub::ListPeers(bool include_empty) const {
  absl::MutexLock lock(&mu_);
  const uint64_t now_ns = MonotonicNowNs();
  std::vector<v1::Peer> peers;
  for (const SlotRecord& record : slots_) {
    if (include_empty || record.occupied()) {
      peers.push_back(BuildPeerView(record, *segment_, now_ns));
    }
  }
  return peers;
}

v1::Snapshot PeerHub::Snapshot() const {
  absl::MutexLock lock(&mu_);
  v1::Snapshot snapshot;
  // Every append happens under mu_, so no event can fall between this
  // sequence and the records below.
  snapshot.set_sequence(journal_->last_sequence());
  snapshot.set_hub_instance_id(journal_->hub_instance_id());
  const uint64_t now_ns = MonotonicNowNs();
  for (const SlotRecord& record : slots_) {
    *snapshot.add_peers() = BuildPeerView(record, *segment_, now_ns);
  }
  return snapshot;
}

v1::GetSegmentInfoResponse PeerHub::SegmentInfo() const {
  const shm::SegmentLayout& layout = segment_->layout();
  v1::GetSegmentInfoResponse info;
  info.set_segment_path(config_.segment_path);
  info.set_format_version(shm::kVersion);
  info.set_total_size_bytes(layout.total_size);
  // The host's own mapping is the current size: the shared header's copy is
  // writable by every guest.
  info.set_current_size_bytes(segment_->mapped_size());
  info.set_max_guests(layout.max_guests);
  info.set_ring_capacity_bytes(layout.ring_capacity);
  info.set_max_payload_size_bytes(segment_->max_payload_size());
  info.set_inline_threshold_bytes(segment_->EffectiveInlineThreshold());
  *info.mutable_heartbeat_interval() = ToProtoDuration(config_.heartbeat_interval);
  *info.mutable_crash_timeout() = ToProtoDuration(config_.crash_timeout);
  info.set_require_heartbeat(config_.require_heartbeat);
  for (const shm::SlotClassConfig& slot_class : config_.slot_classes) {
    v1::SlotClass* out = info.add_slot_classes();
    out->set_slot_size_bytes(slot_class.slot_size);
    out->set_slot_count(slot_class.slot_count);
  }
  info.set_hub_instance_id(journal_->hub_instance_id());
  *info.mutable_started_at() = ToProtoTimestamp(started_at_);
  info.set_version(SHMHUB_VERSION);
  *info.mutable_host_ack_timeout() = ToProtoDuration(config_.host_ack_timeout);
  return info;
}

void PeerHub::BeginShutdown() {
  absl::MutexLock lock(&mu_);
  if (shutting_down_) return;
  shutting_down_ = true;
  Publish(MakeHubEvent(v1::EVENT_KIND_HOST_SHUTDOWN, std::string(kShuttingDown)));
  segment_->SetHostGoodbye();
}

void PeerHub::BeginHandover() {
  {
    absl::MutexLock lock(&mu_);
    if (shutting_down_) return;
    shutting_down_ = true;
    handing_over_ = true;
    segment_->KeepFileForNextHost();
  }
  Log(LogLevel::kInfo, absl::StrCat("handing over: the segment ", config_.segment_path,
                                    " and every occupancy in it stay for the next shmhubd"));
  // No event marks a handover: wake the watch streams so they see the hub
  // stopping, end, and resume at the next daemon.
  journal_->WakeAll();
}

bool PeerHub::shutting_down() const {
  absl::MutexLock lock(&mu_);
  return shutting_down_;
}

}  // namespace shmhub::server
