#include "server/rpc/peer_hub_service.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/time/clock.h"
#include "server/base/proto_time.h"
#include "server/hub/peer_events.h"
#include "server/rpc/grpc_status.h"
#include "server/rpc/request_validation.h"
#include "server/rpc/watch_events_reactor.h"

namespace shmhub::server {
namespace {

// How often the dispatcher wakes every stream to consider a PROGRESS
// message: a quarter of the interval keeps the actual gap within 1.25
// intervals; the bounds keep tiny test intervals from spinning and long
// intervals from drifting by more than a second.
absl::Duration ProgressTick(absl::Duration progress_interval) {
  return std::clamp(progress_interval / 4, absl::Milliseconds(5), absl::Seconds(1));
}

grpc::ServerUnaryReactor* Reply(grpc::CallbackServerContext* context, const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

}  // namespace

PeerHubService::PeerHubService(PeerHub& hub, EventJournal& journal)
    : hub_(hub),
      journal_(journal),
      dispatcher_(&journal, hub.config().max_watchers,
                  ProgressTick(hub.config().watch_progress_interval)) {}

PeerHubService::~PeerHubService() = default;

void PeerHubService::StopAcceptingWatchers() { dispatcher_.Close(); }

bool PeerHubService::WaitForWatchersToEnd(absl::Time deadline) {
  return dispatcher_.WaitUntilEmpty(deadline);
}

size_t PeerHubService::watcher_count() const { return dispatcher_.size(); }

grpc::ServerUnaryReactor* PeerHubService::GetSegmentInfo(grpc::CallbackServerContext* context,
                                                         const v1::GetSegmentInfoRequest*,
                                                         v1::GetSegmentInfoResponse* response) {
  *response = hub_.SegmentInfo();
  return Reply(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* PeerHubService::ReservePeer(grpc::CallbackServerContext* context,
                                                      const v1::ReservePeerRequest* request,
                                                      v1::ReservePeerResponse* response) {
  return Reply(context, Reserve(*request, response));
}

grpc::ServerUnaryReactor* PeerHubService::ReleasePeer(grpc::CallbackServerContext* context,
                                                      const v1::ReleasePeerRequest* request,
                                                      v1::ReleasePeerResponse*) {
  return Reply(context, Release(*request));
}

grpc::ServerUnaryReactor* PeerHubService::EvictPeer(grpc::CallbackServerContext* context,
                                                    const v1::EvictPeerRequest* request,
                                                    v1::EvictPeerResponse* response) {
  return Reply(context, Evict(*request, response));
}

grpc::ServerUnaryReactor* PeerHubService::GetPeer(grpc::CallbackServerContext* context,
                                                  const v1::GetPeerRequest* request,
                                                  v1::GetPeerResponse* response) {
  return Reply(context, Get(*request, response));
}

grpc::ServerUnaryReactor* PeerHubService::ListPeers(grpc::CallbackServerContext* context,
                                                    const v1::ListPeersRequest* request,
                                                    v1::ListPeersResponse* response) {
  for (v1::Peer& peer : hub_.ListPeers(request->include_empty())) {
    *response->add_peers() = std::move(peer);
  }
  return Reply(context, absl::OkStatus());
}

grpc::ServerWriteReactor<v1::WatchEventsResponse>* PeerHubService::WatchEvents(
    grpc::CallbackServerContext* context, const v1::WatchEventsRequest* request) {
  const WatchEventsReactor::Context watch_context{
      .hub = &hub_,
      .journal = &journal_,
      .dispatcher = &dispatcher_,
      .metrics = &hub_.metrics(),
      .queue_limit = hub_.config().watcher_queue,
      .progress_interval = hub_.config().watch_progress_interval,
  };
  return new WatchEventsReactor(watch_context, context->peer(), *request);
}

absl::Status PeerHubService::Reserve(const v1::ReservePeerRequest& request,
                                     v1::ReservePeerResponse* response) {
  absl::StatusOr<ReserveRequest> validated = ValidateReserveRequest(request, hub_.config());
  if (!validated.ok()) return validated.status();
  absl::StatusOr<Reservation> reservation = hub_.Reserve(*validated);
  if (!reservation.ok()) return reservation.status();
  response->set_peer_id(reservation->peer_id);
  response->set_epoch(reservation->epoch);
  response->set_segment_path(hub_.config().segment_path);
  *response->mutable_lease_expires_at() = ToProtoTimestamp(reservation->lease_expires_at);
  response->set_replayed(reservation->replayed);
  return absl::OkStatus();
}

absl::Status PeerHubService::Release(const v1::ReleasePeerRequest& request) {
  if (absl::Status s = ValidatePeerId(request.peer_id(), hub_.config().max_guests); !s.ok()) {
    return s;
  }
  return hub_.Release({request.peer_id(), request.epoch()});
}

absl::Status PeerHubService::Evict(const v1::EvictPeerRequest& request,
                                   v1::EvictPeerResponse* response) {
  if (absl::Status s = ValidatePeerId(request.peer_id(), hub_.config().max_guests); !s.ok()) {
    return s;
  }
  if (absl::Status s = ValidateEvictReason(request.reason()); !s.ok()) return s;
  const absl::Time start = absl::Now();
  absl::StatusOr<std::optional<shm::RecoveryReport>> report =
      hub_.Evict({request.peer_id(), request.epoch()}, request.reason());
  if (!report.ok()) return report.status();
  // Unset while the recovery waits for the host application (hub.proto).
  if (report->has_value()) {
    *response->mutable_recovery() = RecoveryReportToProto(**report, absl::Now() - start);
  }
  return absl::OkStatus();
}

absl::Status PeerHubService::Get(const v1::GetPeerRequest& request, v1::GetPeerResponse* response) {
  if (absl::Status s = ValidatePeerId(request.peer_id(), hub_.config().max_guests); !s.ok()) {
    return s;
  }
  absl::StatusOr<v1::Peer> peer = hub_.GetPeer(request.peer_id());
  if (!peer.ok()) return peer.status();
  *response->mutable_peer() = *std::move(peer);
  return absl::OkStatus();
}

}  // namespace shmhub::server
