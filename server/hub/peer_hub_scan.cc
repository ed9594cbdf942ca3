// PeerHub::Scan: the liveness monitor's pass over the peer table, and the
// recovery of slots whose guests are gone (the peer states and events of
// proto/shmhub/v1/hub.proto; format §5.6 D-1, §13, §14).
//
// For each slot the pass loads (state, epoch) once and compares it with the
// slot's record, the state watchers have been told about. Each difference is
// published as one event per transition, and the record moves with it:
//   Reserved, lease run out   -> RESERVATION_EXPIRED (the daemon's fenced CAS)
//   Reserved -> Attached      -> ATTACHED (a claim keeps the epoch, A-9)
//   Empty -> occupied         -> ATTACHED, or RESERVED, after the D-1 re-read
//   Attached -> Goodbye       -> GOODBYE, recovery, RECOVERED
//   heartbeat (once armed)    -> STALE / FRESH, CRASHED(HEARTBEAT) + recovery
//   invalid state word        -> CRASHED(INVALID_STATE) + recovery
//
// Transitions honest peers never make are logged as warnings and published
// as what the daemon can observe, never as something it did not see or do:
//   - an occupied slot found Empty ended without shmhubd: a reservation gets
//     RELEASED; an attached guest gets GOODBYE then RECOVERED without a
//     recovery report (the reason says nothing was reclaimed); a slot under
//     recovery gets RECOVERED;
//   - an occupied slot found at another epoch holds a new occupancy: after
//     the D-1 re-read its start is published (ATTACHED or RESERVED) with a
//     reason naming the old epoch, whose end the daemon did not see and can
//     no longer recover, since recovery would now hit the new occupant;
//   - an Empty slot found Empty at another epoch: an occupancy came and went
//     between two passes and left nothing to recover; the record takes the
//     new epoch and the log says so;
//   - a slot turned Reserved by another process gets RESERVED with no owner
//     and a --default_lease_ttl lease, so it cannot be held forever;
//   - a guest seen only after it had left (Goodbye at a new epoch) gets
//     ATTACHED then GOODBYE: the epoch proves it attached.
//
// Everything runs under the hub mutex: recovery included, so no RPC can see
// or fence a slot halfway through it. RecoverPeer re-checks the epoch before
// every step; when it fails, the record keeps its state and the next pass
// tries again. A recovery the registered host application must release
// first (peer_hub_host.cc) is not run until it does or its deadline passes:
// the record waits in Goodbye (or Corrupt), and each pass asks again.
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "server/base/log.h"
#include "server/base/monotonic_clock.h"
#include "server/base/proto_time.h"
#include "server/hub/peer_events.h"
#include "server/hub/peer_hub.h"
#include "shm/peer_recovery.h"
#include "shm/peer_table.h"

namespace shmhub::server {
namespace {

// Failed recoveries are retried every pass; logging the first failure and
// then one in this many is enough to diagnose a guest that keeps scribbling.
constexpr uint32_t kRecoveryFailureLogEvery = 100;

std::string FormatNs(uint64_t ns) {
  return absl::FormatDuration(
      absl::Trunc(absl::Nanoseconds(static_cast<int64_t>(ns)), absl::Microseconds(1)));
}

}  // namespace

std::string PeerHub::AdoptionNote(const SlotRecord& record, uint64_t now_ns) const {
  // Within a crash timeout (and a few scans) of adopting, a silent
  // heartbeat or a gone process means the guest died while no daemon ran.
  const uint64_t window_ns = ToNs(config_.crash_timeout + 4 * config_.ScanInterval());
  if (!record.FoundAtAdoption() || ElapsedNs(adopted_at_ns_, now_ns) > window_ns) return {};
  return " (found at adoption: it ended while no shmhubd ran)";
}

void PeerHub::Scan() {
  MutationLock lock(this);
  // After HOST_SHUTDOWN the event stream has ended: nothing more is published.
  if (shutting_down_) return;
  for (SlotRecord& record : slots_) ScanSlot(record, MonotonicNowNs());
}

void PeerHub::ScanSlot(SlotRecord& record, uint64_t now_ns) {
  const shm::PeerPair seen = EntryOf(record.peer_id).LoadPair();
  const shm::StateReading& state = seen.first;
  const uint32_t epoch = seen.second;
  if (!state.valid) {
    OnInvalidState(record, seen, now_ns);
    return;
  }
  if (state.Is(shm::PeerState::kEmpty)) {
    OnEmptied(record, epoch);
    return;
  }
  if (!record.Holds({record.peer_id, epoch})) {
    OnNewOccupancy(record, seen, now_ns);
    return;
  }
  record.unconfirmed.reset();
  switch (record.state) {
    case v1::PEER_STATE_RESERVED:
      OnReservedSlot(record, state.state, now_ns);
      return;
    case v1::PEER_STATE_ATTACHED:
      OnAttachedSlot(record, state.state, now_ns);
      return;
    case v1::PEER_STATE_GOODBYE:
    case v1::PEER_STATE_CORRUPT:
      OnRecoveringSlot(record, state.state, now_ns);
      return;
    default:
      return;  // Empty records took the OnNewOccupancy branch above
  }
}

void PeerHub::OnInvalidState(SlotRecord& record, const shm::PeerPair& seen, uint64_t now_ns) {
  const uint32_t raw = seen.first.raw;
  const uint32_t epoch = seen.second;
  record.unconfirmed.reset();
  if (record.Holds({record.peer_id, epoch}) && record.recovering()) {
    // CRASHED is already out for this occupancy; RecoverPeer accepts an
    // invalid word, so just retry.
    RecoverAndPublish(record).IgnoreError();
    return;
  }
  std::string reason = absl::StrCat("state word holds ", raw, ", which is no peer state");
  if (record.epoch != epoch) {
    absl::StrAppend(&reason, "; the epoch moved from ", record.epoch, " without shmhubd");
    record.BeginOccupancy(v1::PEER_STATE_CORRUPT, epoch, absl::Now());
  }
  record.raw_state = raw;
  const uint64_t heartbeat = EntryOf(record.peer_id).LastHeartbeat();
  // No detection latency: nothing tells when the word was overwritten.
  CrashAndRecover(record, v1::DETECTOR_INVALID_STATE,
                  heartbeat == 0 ? std::nullopt : std::optional(ElapsedNs(heartbeat, now_ns)),
                  std::nullopt, reason);
}

void PeerHub::OnEmptied(SlotRecord& record, uint32_t epoch) {
  record.unconfirmed.reset();
  const std::string epoch_note =
      epoch == record.epoch ? std::string() : absl::StrCat(" (now at epoch ", epoch, ")");
  switch (record.state) {
    case v1::PEER_STATE_EMPTY:
      if (epoch != record.epoch) {
        Log(LogLevel::kWarning,
            absl::StrCat("peer ", record.peer_id, ": epoch moved from ", record.epoch, " to ",
                         epoch,
                         " while the slot looked Empty: a guest came and went between two "
                         "scans, or reset its own entry; nothing is left to recover"));
        record.epoch = epoch;
      }
      return;
    case v1::PEER_STATE_RESERVED:
      Publish(
          MakePeerEvent(v1::EVENT_KIND_RELEASED, record.occupancy(),
                        absl::StrCat("the reservation was released outside shmhubd", epoch_note)),
          LogLevel::kWarning);
      metrics_->CountReservation(ReservationOutcome::kReleased);
      break;
    case v1::PEER_STATE_ATTACHED:
      Publish(MakePeerEvent(v1::EVENT_KIND_GOODBYE, record.occupancy(),
                            absl::StrCat("the slot was emptied outside shmhubd", epoch_note)),
              LogLevel::kWarning);
      Publish(MakePeerEvent(v1::EVENT_KIND_RECOVERED, record.occupancy(),
                            "emptied outside shmhubd: its rings and pool slots were not "
                            "recovered"),
              LogLevel::kWarning);
      break;
    default:
      Publish(MakePeerEvent(
                  v1::EVENT_KIND_RECOVERED, record.occupancy(),
                  absl::StrCat("emptied outside shmhubd before its recovery finished", epoch_note)),
              LogLevel::kWarning);
      break;
  }
  record.BecomeEmpty(epoch, absl::Now());
}

void PeerHub::OnNewOccupancy(SlotRecord& record, const shm::PeerPair& seen, uint64_t now_ns) {
  // D-1: a Rust peer stores the new state before it bumps the epoch, so a
  // transition another process made is published only when the next pass
  // reads the same pair, or the same state one epoch later.
  if (!record.unconfirmed.has_value() ||
      !(*record.unconfirmed == seen || shm::IsLateEpochBump(*record.unconfirmed, seen))) {
    record.unconfirmed = seen;
    return;
  }
  const uint32_t epoch = seen.second;
  const bool epoch_moved = epoch != record.epoch;
  std::string replaced;
  LogLevel level = LogLevel::kInfo;
  if (record.occupied()) {
    replaced = absl::StrCat("; replaces epoch ", record.epoch,
                            ", whose end shmhubd did not see and could not recover");
    level = LogLevel::kWarning;
  }
  const uint32_t previous_epoch = record.epoch;
  record.BeginOccupancy(v1::PEER_STATE_EMPTY, epoch, absl::Now());
  switch (seen.first.state) {
    case shm::PeerState::kReserved:
      AdoptForeignReservation(record, now_ns, absl::StrCat("reserved outside shmhubd", replaced),
                              LogLevel::kWarning);
      return;
    case shm::PeerState::kAttached:
      PublishAttached(record, now_ns,
                      record.FoundAtAdoption()
                          ? std::string("found attached at adoption (an earlier shmhubd served it)")
                          : absl::StrCat("attached without a reservation", replaced),
                      record.FoundAtAdoption() ? LogLevel::kInfo : level);
      CheckLiveness(record, now_ns);
      return;
    case shm::PeerState::kGoodbye:
      if (epoch_moved) {
        PublishAttached(record, now_ns,
                        absl::StrCat("attached and left between two scans", replaced), level);
        PublishGoodbyeAndRecover(record, "left in order", LogLevel::kInfo);
      } else {
        PublishGoodbyeAndRecover(
            record,
            absl::StrCat("Goodbye stored in a slot that was Empty at epoch ", previous_epoch),
            LogLevel::kWarning);
      }
      return;
    case shm::PeerState::kEmpty:
      return;  // ScanSlot sends Empty readings to OnEmptied
  }
}

void PeerHub::OnReservedSlot(SlotRecord& record, shm::PeerState seen, uint64_t now_ns) {
  switch (seen) {
    case shm::PeerState::kReserved:
      if (record.reservation.has_value() && now_ns >= record.reservation->lease_deadline_ns) {
        ExpireLease(record, now_ns);
      }
      return;
    case shm::PeerState::kAttached:
      PublishAttached(record, now_ns, "claimed its reservation", LogLevel::kInfo);
      metrics_->CountReservation(ReservationOutcome::kClaimed);
      CheckLiveness(record, now_ns);
      return;
    case shm::PeerState::kGoodbye:
      PublishAttached(record, now_ns, "claimed its reservation and left between two scans",
                      LogLevel::kInfo);
      metrics_->CountReservation(ReservationOutcome::kClaimed);
      PublishGoodbyeAndRecover(record, "left in order", LogLevel::kInfo);
      return;
    case shm::PeerState::kEmpty:
      return;  // ScanSlot sends Empty readings to OnEmptied
  }
}

void PeerHub::OnAttachedSlot(SlotRecord& record, shm::PeerState seen, uint64_t now_ns) {
  switch (seen) {
    case shm::PeerState::kAttached:
      CheckLiveness(record, now_ns);
      return;
    case shm::PeerState::kGoodbye:
      PublishGoodbyeAndRecover(record, "left in order", LogLevel::kInfo);
      return;
    case shm::PeerState::kReserved:
      AdoptForeignReservation(record, now_ns,
                              "an Attached slot was turned Reserved outside shmhubd",
                              LogLevel::kWarning);
      return;
    case shm::PeerState::kEmpty:
      return;  // ScanSlot sends Empty readings to OnEmptied
  }
}

void PeerHub::OnRecoveringSlot(SlotRecord& record, shm::PeerState seen, uint64_t now_ns) {
  switch (seen) {
    case shm::PeerState::kAttached:
    case shm::PeerState::kGoodbye:
      RecoverAndPublish(record).IgnoreError();  // a retry; failures are logged inside
      return;
    case shm::PeerState::kReserved:
      // RecoverPeer refuses a Reserved entry, and the word is the state a
      // watcher can act on; the lease empties the slot if nobody claims it.
      AdoptForeignReservation(
          record, now_ns,
          "a slot under recovery was turned Reserved outside shmhubd; its recovery is abandoned",
          LogLevel::kWarning);
      return;
    case shm::PeerState::kEmpty:
      return;  // ScanSlot sends Empty readings to OnEmptied
  }
}

void PeerHub::ExpireLease(SlotRecord& record, uint64_t now_ns) {
  shm::PeerEntryView entry = EntryOf(record.peer_id);
  if (entry.ReleaseFenced(record.epoch).ok()) {
    Publish(MakePeerEvent(v1::EVENT_KIND_RESERVATION_EXPIRED, record.occupancy(),
                          absl::StrCat("unclaimed after its lease of ",
                                       absl::FormatDuration(record.reservation->lease_ttl))));
    metrics_->CountReservation(ReservationOutcome::kExpired);
    record.BecomeEmpty(record.epoch, absl::Now());
    return;
  }
  // The guest's claim won the race with the fenced release.
  const shm::PeerPair now_seen = entry.LoadPair();
  if (now_seen.first.Is(shm::PeerState::kAttached) && now_seen.second == record.epoch) {
    PublishAttached(record, now_ns, "claimed its reservation as the lease ran out",
                    LogLevel::kInfo);
    metrics_->CountReservation(ReservationOutcome::kClaimed);
    CheckLiveness(record, now_ns);
  }
  // Anything else is what the next pass reconciles.
}

void PeerHub::AdoptForeignReservation(SlotRecord& record, uint64_t now_ns,
                                      const std::string& reason, LogLevel level) {
  const absl::Time now = absl::Now();
  const absl::Duration ttl = config_.default_lease_ttl;
  record.BeginOccupancy(v1::PEER_STATE_RESERVED, record.epoch, now);
  // No owner, labels or request id: the process that reserved the slot
  // did not say who it is.
  record.reservation.emplace();
  record.reservation->lease_ttl = ttl;
  record.reservation->lease_expires_at = now + ttl;
  record.reservation->lease_deadline_ns = now_ns + ToNs(ttl);
  Publish(MakePeerEvent(v1::EVENT_KIND_RESERVED, record.occupancy(),
                        absl::StrCat(reason, "; lease ", absl::FormatDuration(ttl),
                                     " (--default_lease_ttl)")),
          level);
}

void PeerHub::PublishAttached(SlotRecord& record, uint64_t now_ns, const std::string& reason,
                              LogLevel level) {
  record.Enter(v1::PEER_STATE_ATTACHED, absl::Now());
  record.attach_seen_ns = now_ns;
  // --require_heartbeat arms the detector at attach (format §13, A-19).
  record.heartbeat_armed = config_.require_heartbeat;
  Publish(MakePeerEvent(v1::EVENT_KIND_ATTACHED, record.occupancy(), reason), level);
  host_gate_.Announce(shm::Occupancy{record.peer_id, record.epoch});
}

void PeerHub::PublishGoodbyeAndRecover(SlotRecord& record, const std::string& reason,
                                       LogLevel level) {
  Publish(MakePeerEvent(v1::EVENT_KIND_GOODBYE, record.occupancy(), reason), level);
  record.Enter(v1::PEER_STATE_GOODBYE, absl::Now());
  // Failures are logged inside and retried; so is a wait for the host.
  RecoverAndPublish(record, shm::PeerDeparture::kLeft).IgnoreError();
}

void PeerHub::CheckLiveness(SlotRecord& record, uint64_t now_ns) {
  shm::PeerEntryView entry = EntryOf(record.peer_id);
  const uint64_t heartbeat = entry.LastHeartbeat();
  if (heartbeat != 0 && !record.heartbeat_seen) {
    record.heartbeat_seen = true;
    if (!record.heartbeat_armed) {
      record.heartbeat_armed = true;
      Log(LogLevel::kInfo, absl::StrCat("peer ", record.peer_id, " epoch ", record.epoch,
                                        ": heartbeat detector armed by the first heartbeat"));
    }
  }
  // a guest that never heartbeats is unmonitored, never stale.
  if (!record.heartbeat_armed) return;
  if (!record.heartbeat_seen) {
    // --require_heartbeat and nothing yet: the grace runs from the attach
    // the daemon saw, not from the format's "last = 0" (§5.5).
    const absl::Duration grace = config_.EffectiveHeartbeatGrace();
    if (ElapsedNs(record.attach_seen_ns, now_ns) > ToNs(grace)) {
      CrashAndRecover(record, v1::DETECTOR_HEARTBEAT, std::nullopt, std::nullopt,
                      absl::StrCat("no heartbeat within ", absl::FormatDuration(grace),
                                   " of attaching (--require_heartbeat)"));
    }
    return;
  }
  // A guest that zeroed its heartbeat after arming has been silent since
  // boot as far as the format's rule goes; its age is unknown, hence unset.
  const uint64_t silence_ns = ElapsedNs(heartbeat, now_ns);
  const std::optional<uint64_t> age_ns = heartbeat == 0 ? std::nullopt : std::optional(silence_ns);
  const bool stale = entry.IsHeartbeatStale(now_ns, segment_->heartbeat_interval_ns());
  if (stale && !record.stale) {
    record.stale = true;
    v1::PeerEvent event =
        MakePeerEvent(v1::EVENT_KIND_STALE, record.occupancy(),
                      absl::StrCat("no heartbeat for over 2 x ",
                                   absl::FormatDuration(config_.heartbeat_interval)));
    if (age_ns.has_value()) {
      *event.mutable_heartbeat_age() = ToProtoDuration(absl::Nanoseconds(*age_ns));
    }
    Publish(std::move(event));
  }
  if (silence_ns > ToNs(config_.crash_timeout) && record.process_watched) {
    // §13: heartbeat evidence alone does not recover a guest whose process
    // a pidfd shows alive (stopped, overloaded): recovery would reset rings
    // it still uses. It stays STALE until heartbeats resume, it exits (the
    // process detector) or an orchestrator evicts it.
    if (!record.heartbeat_crash_deferred) {
      record.heartbeat_crash_deferred = true;
      Log(LogLevel::kWarning,
          absl::StrCat("peer ", record.peer_id, " epoch ", record.epoch, ": heartbeat silent for ",
                       FormatNs(silence_ns), ", over --crash_timeout, but pid ", record.pid,
                       " is alive; staying STALE (EvictPeer removes it)"));
    }
    return;
  }
  if (silence_ns > ToNs(config_.crash_timeout)) {
    CrashAndRecover(
        record, v1::DETECTOR_HEARTBEAT, age_ns,
        age_ns.has_value() ? std::optional(absl::Nanoseconds(*age_ns)) : std::nullopt,
        absl::StrCat("heartbeat silent for ", FormatNs(silence_ns), ", over --crash_timeout ",
                     absl::FormatDuration(config_.crash_timeout)));
    return;
  }
  if (!stale && record.stale) {
    record.stale = false;
    record.heartbeat_crash_deferred = false;
    Publish(
        MakePeerEvent(v1::EVENT_KIND_FRESH, record.occupancy(), "heartbeats resumed"));
  }
}

void PeerHub::CrashAndRecover(SlotRecord& record, v1::Detector detector,
                              std::optional<uint64_t> heartbeat_age_ns,
                              std::optional<absl::Duration> detection_latency,
                              const std::string& reason) {
  Publish(MakeCrashedEvent(record.occupancy(), detector, heartbeat_age_ns,
                           absl::StrCat(reason, AdoptionNote(record, MonotonicNowNs()))),
          LogLevel::kWarning);
  if (detection_latency.has_value()) metrics_->ObserveCrashDetection(*detection_latency);
  record.last_detector = detector;
  record.Enter(
      detector == v1::DETECTOR_INVALID_STATE ? v1::PEER_STATE_CORRUPT : v1::PEER_STATE_GOODBYE,
      absl::Now());
  // Failures are logged inside and retried; so is a wait for the host.
  RecoverAndPublish(record, shm::PeerDeparture::kCrashed).IgnoreError();
}

absl::StatusOr<shm::RecoveryReport> PeerHub::RecoverAndPublish(SlotRecord& record,
                                                               shm::PeerDeparture departure) {
  if (HeldForHost(record, departure)) {
    return absl::UnavailableError(absl::StrCat("peer ", record.peer_id, " epoch ", record.epoch,
                                               ": waiting for the host application"));
  }
  const uint64_t start_ns = MonotonicNowNs();
  absl::StatusOr<shm::RecoveryReport> report =
      shm::RecoverPeer(*segment_, record.occupancy());
  const absl::Duration took = absl::Nanoseconds(ElapsedNs(start_ns, MonotonicNowNs()));
  if (!report.ok()) {
    ++record.failed_recoveries;
    if (record.failed_recoveries == 1 || record.failed_recoveries % kRecoveryFailureLogEvery == 0) {
      Log(LogLevel::kError,
          absl::StrCat("peer ", record.peer_id, " epoch ", record.epoch, ": recovery failed (",
                       record.failed_recoveries,
                       " attempts so far; retried every scan): ", report.status().ToString()));
    }
    return report.status();
  }
  for (const std::string& problem : report->problems) {
    Log(LogLevel::kWarning,
        absl::StrCat("peer ", record.peer_id, " epoch ", record.epoch, " recovery: ", problem));
  }
  v1::PeerEvent event =
      MakePeerEvent(v1::EVENT_KIND_RECOVERED, record.occupancy(),
                    record.failed_recoveries == 0
                        ? std::string()
                        : absl::StrCat("after ", record.failed_recoveries, " failed attempts"));
  *event.mutable_recovery() = RecoveryReportToProto(*report, took);
  Publish(std::move(event));
  record.BecomeEmpty(record.epoch, absl::Now());
  return report;
}

}  // namespace shmhub::server
