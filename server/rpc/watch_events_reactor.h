// WatchEventsReactor: one WatchEvents stream, written with gRPC's callback
// API (no thread of its own).
//
// What the watcher gets, in order (hub.proto's WatchEvents contract):
//  - resume_after_sequence set and hub_instance_id naming another instance:
//    Resync(INSTANCE_CHANGED), then a Snapshot;
//  - else snapshot_first: a Snapshot, then the events after its sequence
//    (the snapshot already covers everything before; a resume point given
//    with it is ignored);
//  - else resume_after_sequence set: the events after it, or, when the
//    journal cannot supply them, the journal's Resync (HISTORY_PRUNED,
//    SEQUENCE_AHEAD, SLOW_WATCHER) and then a Snapshot;
//  - else the events from now on.
// A subscription that overflows later (a slow watcher) becomes
// Resync(SLOW_WATCHER) + Snapshot + a new subscription after it, so there
// is never a silent gap. A stream idle for --watch_progress_interval gets a
// Progress carrying the last sequence it has been told about. After the
// HOST_SHUTDOWN event the stream ends with OK.
//
// Concurrency: at most one write is in flight. State lives under mu_; gRPC
// calls (StartWrite, Finish) are made with mu_ released, because gRPC may
// run OnWriteDone/OnDone inline on the calling thread. Pump() is reached
// from the constructor, OnWriteDone, OnCancel and the WatchDispatcher
// thread (after a journal wake or a tick); whoever finds the writer free
// starts the next write.
//
// Lifetime: the object deletes itself in OnDone, after unregistering from
// the dispatcher (no pump runs after that) and dropping its subscription
// (no wake after that).
#ifndef SHMHUB_SERVER_RPC_WATCH_EVENTS_REACTOR_H_
#define SHMHUB_SERVER_RPC_WATCH_EVENTS_REACTOR_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/support/server_callback.h"
#include "grpcpp/support/status.h"
#include "server/hub/event_journal.h"
#include "server/hub/hub_metrics.h"
#include "server/hub/peer_hub.h"
#include "server/rpc/watch_dispatcher.h"
#include "shmhub/v1/hub.pb.h"

namespace shmhub::server {

class WatchEventsReactor final : public grpc::ServerWriteReactor<v1::WatchEventsResponse> {
 public:
  // What every stream of one daemon shares. All pointees outlive the stream.
  struct Context {
    PeerHub* hub;
    EventJournal* journal;
    WatchDispatcher* dispatcher;
    HubMetrics* metrics;               // counts RESYNCs
    uint32_t queue_limit;              // --watcher_queue
    absl::Duration progress_interval;  // --watch_progress_interval
  };

  // Starts the stream; `peer` (the client's address) is for the log.
  WatchEventsReactor(const Context& context, std::string peer,
                     const v1::WatchEventsRequest& request);

  WatchEventsReactor(const WatchEventsReactor&) = delete;
  WatchEventsReactor& operator=(const WatchEventsReactor&) = delete;

  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  // What Pump() does once mu_ is released.
  enum class Action { kNone, kWrite, kFinish };

  ~WatchEventsReactor() override;

  void Pump();
  Action NextActionLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StartLocked(const v1::WatchEventsRequest& request) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Queues `resync`, then a Snapshot, and subscribes after the snapshot.
  void ResyncLocked(v1::Resync resync) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SnapshotAndSubscribeLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Subscribes after `after`; a Resync from the journal goes to ResyncLocked.
  void SubscribeLocked(uint64_t after) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Action WriteLocked(v1::WatchEventsResponse message) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Action FinishLocked(grpc::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Context context_;
  const std::string peer_;
  const absl::Time opened_at_;

  absl::Mutex mu_;
  uint64_t id_ ABSL_GUARDED_BY(mu_) = 0;  // in the dispatcher; 0 when not registered
  std::unique_ptr<EventJournal::Subscription> subscription_ ABSL_GUARDED_BY(mu_);
  // Messages to send before the next event (Resync, Snapshot).
  std::deque<v1::WatchEventsResponse> pending_ ABSL_GUARDED_BY(mu_);
  // The message being written; untouched while write_in_flight_.
  v1::WatchEventsResponse current_ ABSL_GUARDED_BY(mu_);
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time last_write_ ABSL_GUARDED_BY(mu_);
  // Set when current_ is HOST_SHUTDOWN: the stream ends once it is written.
  bool finish_after_write_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;             // OnCancel, or a failed write
  std::optional<grpc::Status> error_ ABSL_GUARDED_BY(mu_);  // end the stream with this
  bool finish_started_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status final_status_ ABSL_GUARDED_BY(mu_);
  uint64_t events_sent_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t resyncs_sent_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace shmhub::server

#endif  // SHMHUB_SERVER_RPC_WATCH_EVENTS_REACTOR_H_
