// PeerHub: the daemon's model of the segment's peer slots, and the only code
// that changes them on the host side.
//
// It owns the segment (created at construction, host_goodbye raised and the
// file removed at shutdown), keeps one record per slot of what the daemon
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
// Peer views (GetPeer, ListPeers, Snapshot) report the *published* state,
// the one the event stream has told watchers about, plus live readings from
// the segment (heartbeat age, ring occupancy). A guest's own CAS shows up in
// the published state at the next Scan.
//
// Thread safety: all methods are thread-safe. Scan() is called by the
// LivenessMonitor thread; RPC handlers call the rest concurrently.
#ifndef SHMHUB_SERVER_PEER_HUB_H_
#define SHMHUB_SERVER_PEER_HUB_H_

#include <array>
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
#include "server/event_journal.h"
#include "server/hub_config.h"
#include "server/log.h"
#include "server/slot_record.h"
#include "shm/peer_recovery.h"
#include "shm/segment.h"
#include "shmhub/v1/hub.pb.h"

namespace shmhub::server {

struct ReserveRequest {
  absl::Duration lease_ttl;  // already validated: within (0, max_lease_ttl]
  std::string owner;
  std::map<std::string, std::string> labels;
  std::string request_id;  // empty: no idempotency
};

struct Reservation {
  uint32_t peer_id = 0;
  uint32_t epoch = 0;
  absl::Time lease_expires_at;
  bool replayed = false;  // an earlier request with the same id made it
};

class PeerHub {
 public:
  // Creates the segment at config.segment_path (replacing a stale file,
  // refusing a live one) and starts with every slot Empty. `config` must
  // have passed ValidateHubConfig. `journal` must outlive the hub.
  static absl::StatusOr<std::unique_ptr<PeerHub>> Create(const HubConfig& config,
                                                         EventJournal* journal);
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
  absl::Status Release(uint32_t peer_id, uint32_t epoch);
  absl::StatusOr<shm::RecoveryReport> Evict(uint32_t peer_id, uint32_t epoch,
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

  // ---- Shutdown. Refuses further mutations (UNAVAILABLE), appends
  // HOST_SHUTDOWN and raises host_goodbye in the segment. Idempotent.
  void BeginShutdown();
  bool shutting_down() const;

  const HubConfig& config() const { return config_; }
  const shm::Segment& segment() const { return *segment_; }

 private:
  PeerHub(const HubConfig& config, EventJournal* journal, std::unique_ptr<shm::Segment> segment);

  // The entry of a slot the hub has a record for (1..max_guests).
  shm::PeerEntryView EntryOf(uint32_t peer_id) const;
  // Null for peer ids outside 1..max_guests.
  SlotRecord* FindRecord(uint32_t peer_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  const SlotRecord* FindRecord(uint32_t peer_id) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status NoSuchPeer(uint32_t peer_id) const;
  // The reservation made with `request_id`, while its occupancy lasts.
  std::optional<Reservation> FindReplay(const std::string& request_id) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
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
  void CrashAndRecover(SlotRecord& record, v1::Detector detector,
                       std::optional<uint64_t> heartbeat_age_ns, const std::string& reason)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Runs format §14 on the record's occupancy and publishes RECOVERED. On
  // failure the record keeps its state, so the next pass retries.
  absl::StatusOr<shm::RecoveryReport> RecoverAndPublish(SlotRecord& record)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const HubConfig config_;
  EventJournal* const journal_;
  const std::unique_ptr<shm::Segment> segment_;
  const absl::Time started_at_;
  mutable absl::Mutex mu_;
  std::vector<SlotRecord> slots_ ABSL_GUARDED_BY(mu_);  // slots_[i] is peer i + 1
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace shmhub::server

#endif  // SHMHUB_SERVER_PEER_HUB_H_
