// HubClient: an orchestrator's typed, blocking client for one shmhubd
// (service shmhub.v1.PeerHub plus grpc.health.v1.Health).
//
// Every call runs with a deadline of timeout() from the moment it starts
// (default 5 s) and does not wait for a channel that is not ready: a daemon
// that is down fails the call with UNAVAILABLE at once instead of using up
// the deadline. Failures come back as absl::Status with the gRPC code and
// the daemon's message unchanged (the codes are numerically the same), so
// callers test `status.code()` and show `status.message()` as they are.
//
// For WatchEvents use EventWatcher (event_watcher.h) on channel().
//
// Thread safety: all methods may be called concurrently from any threads;
// the stubs are thread-safe and the timeout is behind a mutex.
#ifndef SHMHUB_CLIENT_HUB_HUB_CLIENT_H_
#define SHMHUB_CLIENT_HUB_HUB_CLIENT_H_

#include <cstdint>
#include <memory>
#include <string>

#include <grpcpp/channel.h>
#include <grpcpp/support/status.h>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "shmhub/v1/hub.grpc.pb.h"
#include "shmhub/v1/hub.pb.h"

namespace shmhub::client {

// grpc::Status -> absl::Status with the same code and message.
absl::Status FromGrpcStatus(const grpc::Status& status);

// An insecure channel to `target` ("127.0.0.1:50051", "localhost:50051",
// "unix:/path"). shmhubd listens on loopback by default; there is no TLS.
// Its reconnect backoff is at most 1 s (gRPC's default is 2 minutes), so
// calls and watchers find a restarted daemon promptly.
std::shared_ptr<grpc::Channel> MakeHubChannel(const std::string& target);

class HubClient {
 public:
  static constexpr absl::Duration kDefaultTimeout = absl::Seconds(5);

  // Connects lazily: constructing never fails and never blocks.
  explicit HubClient(const std::string& target);
  explicit HubClient(std::shared_ptr<grpc::Channel> channel);

  // Per-call deadline for every later call; a non-positive value restores
  // the default.
  void set_timeout(absl::Duration timeout);
  absl::Duration timeout() const;

  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }

  absl::StatusOr<v1::GetSegmentInfoResponse> GetSegmentInfo();
  absl::StatusOr<v1::ReservePeerResponse> ReservePeer(const v1::ReservePeerRequest& request);
  absl::StatusOr<v1::ReleasePeerResponse> ReleasePeer(uint32_t peer_id, uint32_t epoch);
  absl::StatusOr<v1::EvictPeerResponse> EvictPeer(uint32_t peer_id, uint32_t epoch,
                                                  const std::string& reason);
  absl::StatusOr<v1::GetPeerResponse> GetPeer(uint32_t peer_id);
  absl::StatusOr<v1::ListPeersResponse> ListPeers(bool include_empty);

  // grpc.health.v1.Health/Check for `service` ("" = the whole server):
  // true when SERVING, false for any other status the server reports; an
  // RPC failure (daemon down, deadline) is an error, not false.
  absl::StatusOr<bool> Health(const std::string& service = "");

 private:
  // Arms `context` with the current deadline.
  void Prepare(grpc::ClientContext& context) const;

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::PeerHub::Stub> hub_;
  std::unique_ptr<grpc::health::v1::Health::Stub> health_;

  mutable absl::Mutex mu_;
  absl::Duration timeout_ ABSL_GUARDED_BY(mu_) = kDefaultTimeout;
};

}  // namespace shmhub::client

#endif  // SHMHUB_CLIENT_HUB_HUB_CLIENT_H_
