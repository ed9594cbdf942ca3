#include "client/hub/hub_client.h"

#include <utility>

#include <grpc/grpc.h>
#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

namespace shmhub::client {

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  // grpc::StatusCode and absl::StatusCode share the canonical numbering.
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

std::shared_ptr<grpc::Channel> MakeHubChannel(const std::string& target) {
  grpc::ChannelArguments args;
  // After a failed connect, gRPC fails every call at once until its next
  // connection attempt, which by default comes up to 2 minutes later. A
  // restarted daemon on this node should be found within a second.
  // (GRPC_ARG_MIN_RECONNECT_BACKOFF_MS is left alone: gRPC uses it as the
  // connect timeout, and a short one aborts handshakes on a busy machine.)
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
}

HubClient::HubClient(const std::string& target) : HubClient(MakeHubChannel(target)) {}

HubClient::HubClient(std::shared_ptr<grpc::Channel> channel)
    : channel_(std::move(channel)),
      hub_(v1::PeerHub::NewStub(channel_)),
      health_(grpc::health::v1::Health::NewStub(channel_)) {}

void HubClient::set_timeout(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  timeout_ = timeout > absl::ZeroDuration() ? timeout : kDefaultTimeout;
}

absl::Duration HubClient::timeout() const {
  absl::MutexLock lock(&mu_);
  return timeout_;
}

void HubClient::Prepare(grpc::ClientContext& context) const {
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout()));
}

absl::StatusOr<v1::GetSegmentInfoResponse> HubClient::GetSegmentInfo() {
  grpc::ClientContext context;
  Prepare(context);
  v1::GetSegmentInfoResponse response;
  grpc::Status status = hub_->GetSegmentInfo(&context, v1::GetSegmentInfoRequest(), &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response;
}

absl::StatusOr<v1::ReservePeerResponse> HubClient::ReservePeer(
    const v1::ReservePeerRequest& request) {
  grpc::ClientContext context;
  Prepare(context);
  v1::ReservePeerResponse response;
  grpc::Status status = hub_->ReservePeer(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response;
}

absl::StatusOr<v1::ReleasePeerResponse> HubClient::ReleasePeer(uint32_t peer_id,
                                                               uint32_t epoch) {
  grpc::ClientContext context;
  Prepare(context);
  v1::ReleasePeerRequest request;
  request.set_peer_id(peer_id);
  request.set_epoch(epoch);
  v1::ReleasePeerResponse response;
  grpc::Status status = hub_->ReleasePeer(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response;
}

absl::StatusOr<v1::EvictPeerResponse> HubClient::EvictPeer(uint32_t peer_id, uint32_t epoch,
                                                           const std::string& reason) {
  grpc::ClientContext context;
  Prepare(context);
  v1::EvictPeerRequest request;
  request.set_peer_id(peer_id);
  request.set_epoch(epoch);
  request.set_reason(reason);
  v1::EvictPeerResponse response;
  grpc::Status status = hub_->EvictPeer(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response;
}

absl::StatusOr<v1::GetPeerResponse> HubClient::GetPeer(uint32_t peer_id) {
  grpc::ClientContext context;
  Prepare(context);
  v1::GetPeerRequest request;
  request.set_peer_id(peer_id);
  v1::GetPeerResponse response;
  grpc::Status status = hub_->GetPeer(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response;
}

absl::StatusOr<v1::ListPeersResponse> HubClient::ListPeers(bool include_empty) {
  grpc::ClientContext context;
  Prepare(context);
  v1::ListPeersRequest request;
  request.set_include_empty(include_empty);
  v1::ListPeersResponse response;
  grpc::Status status = hub_->ListPeers(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response;
}

absl::StatusOr<bool> HubClient::Health(const std::string& service) {
  grpc::ClientContext context;
  Prepare(context);
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  grpc::Status status = health_->Check(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response.status() == grpc::health::v1::HealthCheckResponse::SERVING;
}

}  // namespace shmhub::client
