// HubServer: the whole daemon as one object, used by shmhubd's main() and by
// in-process tests. Start() builds, in order, the event journal (with a
// fresh random hub instance id), the PeerHub (which creates the segment),
// the gRPC service, the grpc::Server (PeerHub, health, reflection, keepalive
// settings for long watch streams) and the liveness monitor.
//
// Shutdown() is bounded by about --shutdown_grace: health turns NOT_SERVING,
// new watch streams are refused, PeerHub::BeginShutdown() sends HOST_SHUTDOWN
// to watchers and raises host_goodbye, the watchers get until the grace
// period ends to receive it, RPCs still running then are cancelled, the
// monitor stops, and the PeerHub is destroyed, which removes the segment.
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
#include "server/event_journal.h"
#include "server/hub_config.h"
#include "server/liveness_monitor.h"
#include "server/peer_hub.h"
#include "server/peer_hub_service.h"

namespace shmhub::server {

class HubServer {
 public:
  // `config` must have passed ValidateHubConfig. Fails when the segment
  // cannot be created (e.g. another daemon's segment is live) or the listen
  // address cannot be bound; nothing is left behind then.
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

  const HubConfig config_;
  // Declaration order is teardown order in reverse: the server goes before
  // the service it calls, the service before the hub and journal it uses.
  std::unique_ptr<EventJournal> journal_;
  std::unique_ptr<PeerHub> hub_;
  std::unique_ptr<PeerHubService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<LivenessMonitor> monitor_;
  int port_ = 0;
  std::string address_;

  absl::Mutex shutdown_mu_;
  bool shut_down_ ABSL_GUARDED_BY(shutdown_mu_) = false;
};

}  // namespace shmhub::server

#endif  // SHMHUB_SERVER_HUB_SERVER_H_
