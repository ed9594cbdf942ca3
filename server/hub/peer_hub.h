// PeerHub: the daemon's model of the segment's peer slots, and the only code
// that changes them on the host side.
//
// It owns the segment (adopted from an earlier daemon or created at
// construction; host_goodbye raised and the file removed at a goodbye
// shutdown, both left for the next daemon at a handover), keeps one record
// per slot of what the daemon
// has published (state, epoch, reservation, armed detectors, stale flag),
// and turns every transition it makes (RPCs) or observes (Scan) into exactly
// one event in the EventJournal. Recovery of crashed, departed and evicted
// guests runs here, and only here (format §14).
//
// Consistency: every record change and its event append happen under one
// mutex, so a Snapshot() taken under that mutex is exact as of the sequence
// number it carries, and a watcher that subscribes after that sequence sees
// every later change exactly once.
//
// The data-plane host application: while one is registered on the local
// socket, the recovery of an occupancy it serves waits for its
// RECOVERY_READY, at most --host_ack_timeout (format §14's precondition;
// docs/host-protocol.md). The wait holds no lock and no thread: the record
// stays Goodbye (or Corrupt) and the acknowledgement, or the first Scan
// after the deadline, runs the recovery (HostAckGate keeps the books).
//
// Peer views (GetPeer, ListPeers, Snapshot) report the *published* state,
// the one the event stream has told watchers about, plus live readings from
// the segment (heartbeat age, ring occupancy). A guest's own CAS shows up in
// the published state at the next Scan.
//
// Metrics: every published event and reservation outcome is counted in
// HubMetrics. The /metrics scrape must not wait for mu_ (a recovery holds it
// for a while), so each slot's published state, stale flag and armed
// detectors are mirrored in lock-free words that every method changing
// records refreshes before it releases mu_ (MutationLock);
// PublishedSlotState() reads them without locking.
//
// Thread safety: all methods are thread-safe. Scan() is called by the
// LivenessMonitor thread; RPC handlers call the rest concurrently.
#ifndef SHMHUB_SERVER_HUB_PEER_HUB_H_
#define SHMHUB_SERVER_HUB_PEER_HUB_H_

#include <array>
#include <atomic>
#include <functional>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/base/log.h"
#include "server/config/hub_config.h"
#include "server/hub/event_journal.h"
#include "server/hub/host_ack_gate.h"
#include "server/hub/hub_metrics.h"
#include "server/hub/slot_record.h"
#include "server/hub/state_log.h"
#include "shm/host_control.h"
#include "shm/occupancy.h"
#include "shm/path_lock.h"
#include "shm/peer_recovery.h"
#include "shm/segment.h"
#include "shmhub/state/v1/hub_state.pb.h"
#include "shmhub/v1/hub.pb.h"

namespace shmhub::server {

struct ReserveRequest {
  absl::Duration lease_ttl;  // already validated: within (0, max_lease_ttl]
  std::string owner;
  std::map<std::string, std::string> labels;
  std::string request_id;  // empty: no idempotency
};

// A guest that bootstrapped over the local socket (LocalSocketServer).
struct LocalGuest {
  std::string session_id;  // RSH0's session id; empty for VSH1
  uint32_t pid = 0;        // SO_PEERCRED's; 0 when not visible in our PID namespace
  uint64_t pid_start_time = 0;  // /proc/<pid>/stat field 22; 0 when unknown
  uint32_t uid = 0;
  bool process_watched = false;  // a pidfd of its process is polled
};

struct Reservation {
  uint32_t peer_id = 0;
  uint32_t epoch = 0;
  absl::Time lease_expires_at;
  bool replayed = false;  // an earlier request with the same id made it

  shm::Occupancy occupancy() const { return {peer_id, epoch}; }
};

// A slot as last published, read without the hub's lock (metrics).
struct PublishedSlot {
  v1::PeerState state = v1::PEER_STATE_EMPTY;
  bool stale = false;  // STALE published and no FRESH since
  // Bit (1 << d) for each armed v1::Detector d; only Attached guests have any.
  uint32_t armed_detectors = 0;
};

// What an earlier daemon on the same segment path left, for PeerHub::Create.
struct HubRestore {
  shm::PathLock lock;  // the path's, already taken
  // Slots as the state log last had them (StateLog::Open); empty for none.
  std::map<uint32_t, state::v1::Slot> slots;
  // Where every slot change goes from now on; null for nowhere.
  StateLog* state_log = nullptr;
};

class PeerHub {
 public:
  // Owns config.segment_path (its PathLock: kLiveSegment while another
  // daemon does) and then either adopts the segment an earlier daemon left
  // there, or creates one. Adopted: every occupancy in it is kept, and the
  // first scans publish what they find. Created: a missing path, a segment
  // whose host said goodbye, a damaged one, or, with --reset_segment, one
  // of another geometry (without it: FAILED_PRECONDITION naming each
  // differing flag); a replaced segment's guests are told to leave
  // (RetireSegmentFile), and its epochs seed the new one's, so no (peer,
  // epoch) pair is handed out twice. `config` must have passed
  // ValidateHubConfig. `journal` and `metrics` must outlive the hub;
  // neither may be null.
  static absl::StatusOr<std::unique_ptr<PeerHub>> Create(const HubConfig& config,
                                                         EventJournal* journal,
                                                         HubMetrics* metrics);
  // The same with the path's lock already taken and what the state log
  // restored. An adopted segment's slots continue from the restored ones
  // (a reservation keeps its lease, request id, owner and labels; a local
  // guest its pid), and the first scans publish only what changed since.
  // A new segment starts every slot above the highest epoch the path ever
  // used, and the restored occupancies it could not keep are ended with an
  // event each.
  static absl::StatusOr<std::unique_ptr<PeerHub>> Create(const HubConfig& config,
                                                         EventJournal* journal,
                                                         HubMetrics* metrics, HubRestore restore);
  ~PeerHub();

  // ---- RPC operations. Inputs are range-checked by the caller (the
  // service); these return the statuses the API documents:
  // NOT_FOUND for a peer id above max_guests, FAILED_PRECONDITION for a
  // wrong state or stale epoch, RESOURCE_EXHAUSTED for no free slot,
  // UNAVAILABLE after BeginShutdown.
  //
  // Release and Evict fence twice: on the published state and epoch (what
  // GetPeer showed the caller), then on the segment's pair with one CAS; a
  // guest's change that no Scan has published yet fails the second check,
  // changes nothing, and is published by the next Scan. Reserve takes the
  // lowest slot that is Empty both as published and in the segment (D-8: a
  // CAS lost to a guest moves on to the next slot).
  absl::StatusOr<Reservation> Reserve(const ReserveRequest& request);
  absl::Status Release(const shm::Occupancy& occupancy);
  // Evict returns the recovery report, or nothing when recovery waits for
  // the registered host application (RECOVERED follows on the stream).
  absl::StatusOr<std::optional<shm::RecoveryReport>> Evict(const shm::Occupancy& occupancy,
                                                           const std::string& reason);
  absl::StatusOr<v1::Peer> GetPeer(uint32_t peer_id) const;
  std::vector<v1::Peer> ListPeers(bool include_empty) const;
  // Every slot (Empty included) and the sequence number it is exact for.
  v1::Snapshot Snapshot() const;
  v1::GetSegmentInfoResponse SegmentInfo() const;

  // ---- Liveness. One monitoring pass over the whole table: expires
  // leases, publishes ATTACHED / STALE / FRESH / GOODBYE / CRASHED, recovers
  // departed and crashed guests (RECOVERED). Called periodically by
  // LivenessMonitor; tests may call it directly. Does nothing after
  // BeginShutdown: the event stream ends with HOST_SHUTDOWN.
  void Scan();

  // ---- Guests on the local socket (format §11, §13; peer_hub_local.cc).
  //
  // Reserves the slot a guest bootstrapping over the local socket gets, and
  // records its pid and that its doorbell (and with a pidfd, its process)
  // is watched. An empty session id (VSH1) takes a fresh slot owned by
  // "local-socket", with the process's pid and uid as labels and a
  // --default_lease_ttl lease; a session id (RSH0) names the request_id of
  // a ReservePeer reservation still Reserved, which is handed over. Errors
  // as Reserve, plus NOT_FOUND for a session id that names no reservation
  // and FAILED_PRECONDITION for one already claimed.
  absl::StatusOr<Reservation> ReserveForLocalGuest(const LocalGuest& guest);
  // The watched guest of `occupancy` is gone: its doorbell hung up
  // (DETECTOR_DOORBELL) or its process exited (DETECTOR_PROCESS_EXIT),
  // noticed `since` ago. The slot is reconciled with the segment first, so
  // a guest that stored Goodbye gets GOODBYE; one still Attached gets
  // CRASHED by `detector` and recovery; a reservation never claimed is
  // released. Nothing happens once that occupancy has ended.
  void OnLocalGuestGone(const shm::Occupancy& occupancy, v1::Detector detector,
                        absl::Duration since);
  // Whether the slot is still occupied by `occupancy`.
  bool IsCurrentOccupancy(const shm::Occupancy& occupancy) const;
  // The local guests an earlier daemon recorded, in occupancies this hub
  // adopted: their process, by pid and start time, for the local socket to
  // watch again (RearmProcessDetector) or report gone (OnLocalGuestGone).
  struct AdoptedLocalGuest {
    shm::Occupancy occupancy;
    uint32_t pid = 0;
    uint64_t pid_start_time = 0;
  };
  std::vector<AdoptedLocalGuest> AdoptedLocalGuests() const;
  // A pidfd of the adopted guest's process is polled again.
  void RearmProcessDetector(const shm::Occupancy& occupancy);

  // ---- The data-plane host application (peer_hub_host.cc; the protocol is
  // docs/host-protocol.md, the bookkeeping HostAckGate). LocalSocketServer
  // holds the host's connection and calls these from its thread.
  //
  // Registers the host application described by `who`: publishes
  // HOST_ATTACHED and queues PEER_ATTACHED for every Attached guest (but
  // those orphaned by an earlier host's death). ALREADY_EXISTS while one is
  // registered (one data-plane host per segment), UNAVAILABLE after
  // BeginShutdown.
  absl::Status RegisterHost(const std::string& who);
  // The registered host application is gone (`why`). Publishes
  // HOST_DETACHED; the recoveries that waited for it run now. `orphaned`
  // are the guests whose doorbell the socket server shut down (they
  // are no longer watched by their doorbell and are never announced to a
  // later host). A no-op when none is registered.
  void UnregisterHost(const std::string& why, const std::vector<shm::Occupancy>& orphaned);
  // RECOVERY_READY from the host: the recovery of `occupancy` runs now if it
  // was waiting for it; anything else is ignored.
  void OnHostRecoveryReady(const shm::Occupancy& occupancy);
  // PEER_HANDBACK from the registered host: it served `occupancy` under an
  // earlier daemon and still does. True when that occupancy is still here
  // (Attached, or found dead at adoption and waiting for its recovery): it
  // is then known to the host, and with `with_doorbell` its doorbell is
  // watched again. False when it has ended: the host is told to drop it.
  bool OnHostHandback(const shm::Occupancy& occupancy, bool with_doorbell);
  // The records owed to the host since the last call, in order
  // (PEER_ATTACHED with arg 0: the caller adds the fds it holds).
  std::vector<shm::HostRecord> TakeHostNotices();
  // Called, under the hub's lock, whenever a record becomes owed: it must
  // only wake whoever calls TakeHostNotices (and may not call the hub).
  // Empty for none; whoever set it clears it before what it captures goes.
  void SetHostNoticeCallback(std::function<void()> callback);

  // ---- Stopping, one of two ways (HubConfig::StopMode); either refuses
  // further mutations (UNAVAILABLE) and ends the event stream, and only the
  // first call counts.
  //
  // Goodbye: appends HOST_SHUTDOWN and raises host_goodbye in the segment;
  // the segment file goes with the hub.
  void BeginShutdown();
  // Handover: nothing is published or written to the segment, and the file
  // stays for the next daemon to adopt with every occupancy in it.
  void BeginHandover();
  bool shutting_down() const;

  const HubConfig& config() const { return config_; }
  // Whether this hub adopted a segment an earlier daemon left.
  bool adopted() const { return adopted_; }
  const shm::Segment& segment() const { return *segment_; }
  HubMetrics& metrics() const { return *metrics_; }

  // What was last published for `peer_id`, without taking the hub's lock:
  // exact as of the end of the last method that changed records, and
  // consistent within the slot (one word). Empty for ids outside
  // 1..max_guests.
  PublishedSlot PublishedSlotState(uint32_t peer_id) const;

 private:
  // mu_, held by a method that changes records: refreshes the mirror
  // before it releases mu_, on every path out of the method.
  class ABSL_SCOPED_LOCKABLE MutationLock;

  PeerHub(const HubConfig& config, EventJournal* journal, HubMetrics* metrics,
          std::unique_ptr<shm::Segment> segment, bool adopted, HubRestore restore);
  // Appends every record that changed to the state log, with its epoch
  // floor (MutationLock, before mu_ is released).
  void PersistSlots() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // " (found at adoption: it ended while no shmhubd ran)" for a crash of an
  // occupancy the predecessor served, noticed within a crash timeout of
  // adopting it; empty otherwise.
  std::string AdoptionNote(const SlotRecord& record, uint64_t now_ns) const;

  // Copies every record's published state into mirror_.
  void RefreshMirror() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // The entry of a slot the hub has a record for (1..max_guests).
  shm::PeerEntryView EntryOf(uint32_t peer_id) const;
  // Null for peer ids outside 1..max_guests.
  SlotRecord* FindRecord(uint32_t peer_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  const SlotRecord* FindRecord(uint32_t peer_id) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status NoSuchPeer(uint32_t peer_id) const;
  // Release's and Evict's two fences: the record published `wanted`
  // (Reserved or Attached) at the occupancy's epoch, then one CAS moving
  // the segment's pair on (Reserved -> Empty, Attached -> Goodbye). The
  // record, or the error the API documents (UNAVAILABLE, NOT_FOUND,
  // FAILED_PRECONDITION naming what was found and what to do instead).
  absl::StatusOr<SlotRecord*> FenceOccupancy(const shm::Occupancy& occupancy,
                                             v1::PeerState wanted)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // UNAVAILABLE once stopping: shutting down, or handing over.
  absl::Status StoppedError() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The record whose reservation was made with `request_id`, while its
  // occupancy lasts; null for none.
  SlotRecord* FindByRequestId(const std::string& request_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The record still held by `occupancy` (SlotRecord::Holds); null once
  // that occupancy has ended or for a peer id outside 1..max_guests.
  SlotRecord* FindHolder(const shm::Occupancy& occupancy) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Logs `event` and appends it to the journal. Every append happens under
  // mu_, which is what makes Snapshot() exact.
  void Publish(v1::PeerEvent event, LogLevel level = LogLevel::kInfo)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // The monitoring pass, one slot at a time (peer_hub_scan.cc, where the
  // rules are). `now_ns` is CLOCK_MONOTONIC.
  void ScanSlot(SlotRecord& record, uint64_t now_ns) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnInvalidState(SlotRecord& record, const shm::PeerPair& seen, uint64_t now_ns)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnEmptied(SlotRecord& record, uint32_t epoch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnNewOccupancy(SlotRecord& record, const shm::PeerPair& seen, uint64_t now_ns)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnReservedSlot(SlotRecord& record, shm::PeerState seen, uint64_t now_ns)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnAttachedSlot(SlotRecord& record, shm::PeerState seen, uint64_t now_ns)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnRecoveringSlot(SlotRecord& record, shm::PeerState seen, uint64_t now_ns)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ExpireLease(SlotRecord& record, uint64_t now_ns) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AdoptForeignReservation(SlotRecord& record, uint64_t now_ns, const std::string& reason,
                               LogLevel level) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PublishAttached(SlotRecord& record, uint64_t now_ns, const std::string& reason,
                       LogLevel level) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PublishGoodbyeAndRecover(SlotRecord& record, const std::string& reason, LogLevel level)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CheckLiveness(SlotRecord& record, uint64_t now_ns) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Publishes CRASHED by `detector` and recovers the slot.
  // `detection_latency` is how long the guest had been dead when this
  // noticed: the heartbeat's age, or the time since its process exited;
  // nothing when that is unknown (no heartbeat yet, an invalid state word).
  void CrashAndRecover(SlotRecord& record, v1::Detector detector,
                       std::optional<uint64_t> heartbeat_age_ns,
                       std::optional<absl::Duration> detection_latency,
                       const std::string& reason) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Runs format §14 on the record's occupancy and publishes RECOVERED. On
  // failure the record keeps its state, so the next pass retries. While
  // the registered host application has not released the occupancy
  // (HeldForHost), nothing runs: UNAVAILABLE, and the next pass, or the
  // host's RECOVERY_READY, tries again. `departure` says why the occupancy
  // ended, for the host's PEER_RECOVERING; retries need not give it.
  absl::StatusOr<shm::RecoveryReport> RecoverAndPublish(
      SlotRecord& record, shm::PeerDeparture departure = shm::PeerDeparture::kCrashed)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether the recovery of the record's occupancy must wait for the host
  // application (HostAckGate::BeginRecovery): true while it does; at the
  // deadline publishes HOST_UNRESPONSIVE and returns false.
  bool HeldForHost(SlotRecord& record, shm::PeerDeparture departure)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Tells the gate each slot's live occupancy (MutationLock, after every
  // change), so the host hears of occupancies that ended without recovery.
  void ReconcileHostGate() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const HubConfig config_;
  EventJournal* const journal_;
  HubMetrics* const metrics_;
  const std::unique_ptr<shm::Segment> segment_;
  const absl::Time started_at_;
  const bool adopted_;
  const uint64_t adopted_at_ns_;  // CLOCK_MONOTONIC at construction
  mutable absl::Mutex mu_;
  std::vector<SlotRecord> slots_ ABSL_GUARDED_BY(mu_);  // slots_[i] is peer i + 1
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  bool handing_over_ ABSL_GUARDED_BY(mu_) = false;
  HostAckGate host_gate_ ABSL_GUARDED_BY(mu_);
  StateLog* const state_log_;
  // Per peer index: the highest epoch this path ever handed out.
  std::vector<uint32_t> epoch_floors_ ABSL_GUARDED_BY(mu_);
  // mirror_[i] is peer i + 1's PublishedSlot, packed into one word so a
  // reader gets the slot's fields from one moment. Written under mu_.
  std::array<std::atomic<uint32_t>, shm::kMaxGuests> mirror_{};
};

class ABSL_SCOPED_LOCKABLE PeerHub::MutationLock {
 public:
  explicit MutationLock(PeerHub* hub) ABSL_EXCLUSIVE_LOCK_FUNCTION(hub->mu_) : hub_(hub) {
    hub_->mu_.Lock();
  }
  // The analysis cannot see that mu_ is still held here.
  ~MutationLock() ABSL_UNLOCK_FUNCTION() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    hub_->ReconcileHostGate();
    hub_->PersistSlots();
    hub_->RefreshMirror();
    hub_->mu_.Unlock();
  }
  MutationLock(const MutationLock&) = delete;
  MutationLock& operator=(const MutationLock&) = delete;

 private:
  PeerHub* const hub_;
};

}  // namespace shmhub::server

#endif  // SHMHUB_SERVER_HUB_PEER_HUB_H_
