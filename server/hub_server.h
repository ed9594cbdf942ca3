// HubServer: the whole daemon as one object, used by shmhubd's main() and by
// in-process tests. Start() takes the segment path's lock, opens the state
// log beside the segment ("<segment>.state", StateLog) and restores what an
// earlier daemon left in it, then builds, in order, the event journal (its
// hub instance id, tail and sequence continued from the log, or a fresh
// random id), the event-driven metrics, the PeerHub (which adopts the
// segment an earlier daemon left, or creates one), the gRPC service, the
// /metrics exposer
// (unless --metrics_listen is empty), the grpc::Server (PeerHub, health,
// reflection, the RPC metrics interceptor, keepalive settings for long watch
// streams), the local socket (unless --socket is empty) and the liveness
// monitor.
//
// Shutdown() is bounded by about --shutdown_grace, and follows
// --stop_mode: health turns NOT_SERVING and new watch streams are refused;
// then, for a goodbye, PeerHub::BeginShutdown() sends HOST_SHUTDOWN to
// watchers and raises host_goodbye, the local socket rings and closes every
// local guest's doorbell and goes away, and the PeerHub's destruction
// removes the segment; for a handover, PeerHub::BeginHandover() ends the
// watch streams without an event, the local socket closes without a ring,
// and the segment and the state log stay for the next daemon. Either way
// the watchers get until the grace period ends, calls still open then get
// 200 ms more, and the monitor stops.
// The /metrics exposer serves until then and stops last: prometheus-cpp's
// (civetweb's) teardown takes about 2 s, which is spent after the segment is
// gone and is not part of the grace period.
//
// Thread safety: Shutdown() may be called from any thread, more than once;
// the accessors are safe until Shutdown() returns.
#ifndef SHMHUB_SERVER_HUB_SERVER_H_
#define SHMHUB_SERVER_HUB_SERVER_H_

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/server.h"
#include "prometheus/exposer.h"
#include "server/config/hub_config.h"
#include "server/hub/event_journal.h"
#include "server/hub/hub_metrics.h"
#include "server/hub/liveness_monitor.h"
#include "server/hub/peer_hub.h"
#include "server/hub/segment_collector.h"
#include "server/hub/state_log.h"
#include "server/local/local_socket_server.h"
#include "server/rpc/peer_hub_service.h"
#include "server/rpc/rpc_metrics_interceptor.h"

namespace shmhub::server {

class HubServer {
 public:
  // `config` must have passed ValidateHubConfig. Fails when the segment
  // cannot be created (e.g. another daemon's segment is live) or the listen
  // or metrics address cannot be bound; nothing is left behind then.
  static absl::StatusOr<std::unique_ptr<HubServer>> Start(const HubConfig& config);
  // Shuts down if that has not happened yet.
  ~HubServer();

  HubServer(const HubServer&) = delete;
  HubServer& operator=(const HubServer&) = delete;

  void Shutdown();

  // The port actually bound (config.listen may name port 0).
  int port() const { return port_; }
  // config.listen's host with the bound port, e.g. "127.0.0.1:43121".
  const std::string& address() const { return address_; }
  // The /metrics port and address actually bound; 0 and empty when
  // config.metrics_listen is empty.
  int metrics_port() const { return metrics_port_; }
  const std::string& metrics_address() const { return metrics_address_; }
  HubMetrics& metrics() { return *metrics_; }
  const std::string& hub_instance_id() const { return journal_->hub_instance_id(); }
  const HubConfig& config() const { return config_; }
  PeerHub& hub() { return *hub_; }
  EventJournal& journal() { return *journal_; }
  const PeerHubService& service() const { return *service_; }

 private:
  explicit HubServer(const HubConfig& config);
  // Undoes a Start() that failed part-way, quietly: no HOST_SHUTDOWN, no
  // drain, since nobody was served yet.
  void Abandon();
  // Serves metrics_ and collector_ on config_.metrics_listen.
  absl::Status StartExposer();
  // Stops scrapes from reaching the hub; returns once none is running.
  void DetachCollector();

  const HubConfig config_;
  // Declaration order is teardown order in reverse: the server goes before
  // the service it calls, the service before the hub and journal it uses;
  // the metrics outlive everything that counts into them or serves them.
  std::unique_ptr<HubMetrics> metrics_;
  std::unique_ptr<RpcMetrics> rpc_metrics_;
  std::unique_ptr<prometheus::Exposer> exposer_;  // null without --metrics_listen
  // Outlives the journal and the hub, which write to it; null when it
  // could not be opened (the daemon runs without).
  std::unique_ptr<StateLog> state_log_;
  std::unique_ptr<EventJournal> journal_;
  std::unique_ptr<PeerHub> hub_;
  // Shared: the exposer holds it weakly and keeps it alive through a scrape.
  std::shared_ptr<SegmentCollector> collector_;
  std::unique_ptr<PeerHubService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<LocalSocketServer> local_;  // null without --socket
  std::unique_ptr<LivenessMonitor> monitor_;
  int port_ = 0;
  std::string address_;
  int metrics_port_ = 0;
  std::string metrics_address_;

  absl::Mutex shutdown_mu_;
  bool shut_down_ ABSL_GUARDED_BY(shutdown_mu_) = false;
};

}  // namespace shmhub::server

#endif  // SHMHUB_SERVER_HUB_SERVER_H_
