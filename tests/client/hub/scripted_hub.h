// ScriptedHub: an in-process PeerHub server on an ephemeral 127.0.0.1 port
// that plays back what a test tells it to, for testing the client library's
// own logic (deadlines, status mapping, watch reconnect and resume) without
// a daemon. What the real daemon answers is the business of tests/e2e.
//
// WatchEvents: each call records its request, then plays the next queued
// WatchScript: writes its responses, then either ends the stream with its
// status or, with hang = true, keeps it open until the client cancels.
// With no script queued a call hangs. Unary calls answer from the fields
// below after an optional delay (cut short by cancellation).
#ifndef SHMHUB_TESTS_CLIENT_HUB_SCRIPTED_HUB_H_
#define SHMHUB_TESTS_CLIENT_HUB_SCRIPTED_HUB_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "shmhub/v1/hub.grpc.pb.h"

namespace shmhub::testing {

struct WatchScript {
  std::vector<v1::WatchEventsResponse> responses;
  bool hang = false;
  grpc::Status status = grpc::Status::OK;
};

class ScriptedHub final : public v1::PeerHub::Service {
 public:
  // Listens on 127.0.0.1:`port`; 0 picks a free port.
  explicit ScriptedHub(int port = 0) {
    grpc::EnableDefaultHealthCheckService(true);
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:" + std::to_string(port),
                             grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(this);
    server_ = builder.BuildAndStart();
    EXPECT_NE(server_, nullptr);
    EXPECT_NE(port_, 0);
  }
  ~ScriptedHub() override {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  }

  std::string target() const { return "127.0.0.1:" + std::to_string(port_); }

  // A loopback port nothing listens on right now (bound, read, released).
  static int FreePort() {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    close(fd);
    return ntohs(addr.sin_port);
  }

  void QueueWatch(WatchScript script) {
    absl::MutexLock lock(&mu_);
    scripts_.push_back(std::move(script));
  }
  std::vector<v1::WatchEventsRequest> watch_requests() const {
    absl::MutexLock lock(&mu_);
    return watch_requests_;
  }

  // Unary behaviour.
  void SetUnaryDelay(absl::Duration delay) {
    absl::MutexLock lock(&mu_);
    unary_delay_ = delay;
  }
  void SetUnaryStatus(grpc::Status status) {
    absl::MutexLock lock(&mu_);
    unary_status_ = std::move(status);
  }
  void SetReserveResponse(v1::ReservePeerResponse response) {
    absl::MutexLock lock(&mu_);
    reserve_response_ = std::move(response);
  }
  v1::ReservePeerRequest last_reserve_request() const {
    absl::MutexLock lock(&mu_);
    return last_reserve_request_;
  }
  v1::EvictPeerRequest last_evict_request() const {
    absl::MutexLock lock(&mu_);
    return last_evict_request_;
  }

  grpc::Status WatchEvents(grpc::ServerContext* context, const v1::WatchEventsRequest* request,
                           grpc::ServerWriter<v1::WatchEventsResponse>* writer) override {
    WatchScript script{{}, true, grpc::Status::OK};
    {
      absl::MutexLock lock(&mu_);
      watch_requests_.push_back(*request);
      if (!scripts_.empty()) {
        script = std::move(scripts_.front());
        scripts_.pop_front();
      }
    }
    for (const v1::WatchEventsResponse& response : script.responses) writer->Write(response);
    if (!script.hang) return script.status;
    while (!context->IsCancelled()) absl::SleepFor(absl::Milliseconds(2));
    return grpc::Status::CANCELLED;
  }

  grpc::Status ReservePeer(grpc::ServerContext* context, const v1::ReservePeerRequest* request,
                           v1::ReservePeerResponse* response) override {
    {
      absl::MutexLock lock(&mu_);
      last_reserve_request_ = *request;
      *response = reserve_response_;
    }
    return Unary(context);
  }
  grpc::Status EvictPeer(grpc::ServerContext* context, const v1::EvictPeerRequest* request,
                         v1::EvictPeerResponse*) override {
    {
      absl::MutexLock lock(&mu_);
      last_evict_request_ = *request;
    }
    return Unary(context);
  }
  grpc::Status GetPeer(grpc::ServerContext* context, const v1::GetPeerRequest* request,
                       v1::GetPeerResponse* response) override {
    response->mutable_peer()->set_peer_id(request->peer_id());
    return Unary(context);
  }

 private:
  grpc::Status Unary(grpc::ServerContext* context) {
    absl::Duration delay;
    grpc::Status status;
    {
      absl::MutexLock lock(&mu_);
      delay = unary_delay_;
      status = unary_status_;
    }
    const absl::Time until = absl::Now() + delay;
    while (absl::Now() < until && !context->IsCancelled()) absl::SleepFor(absl::Milliseconds(2));
    return status;
  }

  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;

  mutable absl::Mutex mu_;
  std::deque<WatchScript> scripts_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::WatchEventsRequest> watch_requests_ ABSL_GUARDED_BY(mu_);
  absl::Duration unary_delay_ ABSL_GUARDED_BY(mu_) = absl::ZeroDuration();
  grpc::Status unary_status_ ABSL_GUARDED_BY(mu_) = grpc::Status::OK;
  v1::ReservePeerResponse reserve_response_ ABSL_GUARDED_BY(mu_);
  v1::ReservePeerRequest last_reserve_request_ ABSL_GUARDED_BY(mu_);
  v1::EvictPeerRequest last_evict_request_ ABSL_GUARDED_BY(mu_);
};

}  // namespace shmhub::testing

#endif  // SHMHUB_TESTS_CLIENT_HUB_SCRIPTED_HUB_H_
