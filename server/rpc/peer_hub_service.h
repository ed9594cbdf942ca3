// PeerHubService: the gRPC edge of shmhub.v1.PeerHub, on the callback API.
//
// Unary RPCs check every request field first (request_validation.h), then
// call PeerHub and return its absl::Status as the same gRPC code and
// message. WatchEvents streams are WatchEventsReactors, driven by one
// WatchDispatcher thread shared by all of them.
//
// Lifetime: `hub` and `journal` must outlive the service, and the service
// must outlive the grpc::Server it is registered with (every stream has
// ended once Server::Shutdown returns).
//
// Thread safety: gRPC calls the handlers concurrently; the control methods
// are thread-safe.
#ifndef SHMHUB_SERVER_RPC_PEER_HUB_SERVICE_H_
#define SHMHUB_SERVER_RPC_PEER_HUB_SERVICE_H_

#include <cstddef>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "grpcpp/support/server_callback.h"
#include "server/hub/event_journal.h"
#include "server/hub/peer_hub.h"
#include "server/rpc/watch_dispatcher.h"
#include "shmhub/v1/hub.grpc.pb.h"

namespace shmhub::server {

class PeerHubService final : public v1::PeerHub::CallbackService {
 public:
  PeerHubService(PeerHub& hub, EventJournal& journal);
  ~PeerHubService() override;

  PeerHubService(const PeerHubService&) = delete;
  PeerHubService& operator=(const PeerHubService&) = delete;

  // Shutdown: new WatchEvents calls get UNAVAILABLE; open streams go on
  // until they deliver HOST_SHUTDOWN.
  void StopAcceptingWatchers();
  // Waits until every watch stream has ended or `deadline` passes; true
  // when all have.
  bool WaitForWatchersToEnd(absl::Time deadline);
  size_t watcher_count() const;

  grpc::ServerUnaryReactor* GetSegmentInfo(grpc::CallbackServerContext* context,
                                           const v1::GetSegmentInfoRequest* request,
                                           v1::GetSegmentInfoResponse* response) override;
  grpc::ServerUnaryReactor* ReservePeer(grpc::CallbackServerContext* context,
                                        const v1::ReservePeerRequest* request,
                                        v1::ReservePeerResponse* response) override;
  grpc::ServerUnaryReactor* ReleasePeer(grpc::CallbackServerContext* context,
                                        const v1::ReleasePeerRequest* request,
                                        v1::ReleasePeerResponse* response) override;
  grpc::ServerUnaryReactor* EvictPeer(grpc::CallbackServerContext* context,
                                      const v1::EvictPeerRequest* request,
                                      v1::EvictPeerResponse* response) override;
  grpc::ServerUnaryReactor* GetPeer(grpc::CallbackServerContext* context,
                                    const v1::GetPeerRequest* request,
                                    v1::GetPeerResponse* response) override;
  grpc::ServerUnaryReactor* ListPeers(grpc::CallbackServerContext* context,
                                      const v1::ListPeersRequest* request,
                                      v1::ListPeersResponse* response) override;
  grpc::ServerWriteReactor<v1::WatchEventsResponse>* WatchEvents(
      grpc::CallbackServerContext* context, const v1::WatchEventsRequest* request) override;

 private:
  absl::Status Reserve(const v1::ReservePeerRequest& request, v1::ReservePeerResponse* response);
  absl::Status Release(const v1::ReleasePeerRequest& request);
  absl::Status Evict(const v1::EvictPeerRequest& request, v1::EvictPeerResponse* response);
  absl::Status Get(const v1::GetPeerRequest& request, v1::GetPeerResponse* response);

  PeerHub& hub_;
  EventJournal& journal_;
  WatchDispatcher dispatcher_;
};

}  // namespace shmhub::server

#endif  // SHMHUB_SERVER_RPC_PEER_HUB_SERVICE_H_
