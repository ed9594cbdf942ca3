// Test fixture parts for the server tests: a real HubServer on
// 127.0.0.1:<ephemeral> with a segment in a private /dev/shm directory and
// short intervals, real gRPC stubs, and a WatchEvents reader whose every
// wait is bounded.
#ifndef SHMHUB_TESTS_SERVER_IN_PROCESS_HUB_H_
#define SHMHUB_TESTS_SERVER_IN_PROCESS_HUB_H_

#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "server/config/hub_config.h"
#include "server/hub_server.h"
#include "shmhub/v1/hub.grpc.pb.h"
#include "tests/testing/temp_dir.h"

namespace shmhub::server::testing {

// Short intervals so liveness and progress tests stay fast.
inline HubConfig TestConfig(const shmhub::testing::TempDir& dir) {
  HubConfig config;
  config.segment_path = dir.File("hub");
  config.listen = "127.0.0.1:0";
  config.metrics_listen.clear();
  config.socket_path.clear();
  config.max_guests = 8;
  config.ring_bytes = 4096;
  config.slot_classes = {{64, 16}, {1024, 4}};
  config.heartbeat_interval = absl::Milliseconds(20);
  config.crash_timeout = absl::Milliseconds(300);
  config.max_lease_ttl = absl::Minutes(1);
  config.default_lease_ttl = absl::Seconds(30);
  config.shutdown_grace = absl::Seconds(3);
  return config;
}

// Every RPC a test makes gets a deadline, so a stuck server fails the test.
inline void SetDeadline(grpc::ClientContext* context, absl::Duration timeout = absl::Seconds(10)) {
  context->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
}

// A started HubServer plus a channel and stub to it. Tests adjust the
// config through `tune` before the server starts.
class InProcessHub {
 public:
  explicit InProcessHub(const std::function<void(HubConfig&)>& tune = {}) {
    config_ = TestConfig(dir_);
    if (tune) tune(config_);
    absl::StatusOr<std::unique_ptr<HubServer>> server = HubServer::Start(config_);
    EXPECT_TRUE(server.ok()) << server.status();
    if (!server.ok()) return;
    server_ = *std::move(server);
    channel_ = grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials());
    stub_ = v1::PeerHub::NewStub(channel_);
  }

  bool ok() const { return server_ != nullptr; }
  HubServer& server() { return *server_; }
  const HubConfig& config() const { return config_; }
  v1::PeerHub::Stub& stub() { return *stub_; }
  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }
  const shmhub::testing::TempDir& dir() const { return dir_; }

  // Unary helpers that fail the test on a non-OK status.
  v1::ReservePeerResponse Reserve(v1::ReservePeerRequest request = {}) {
    grpc::ClientContext context;
    SetDeadline(&context);
    v1::ReservePeerResponse response;
    grpc::Status status = stub_->ReservePeer(&context, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  }
  void Release(uint32_t peer_id, uint32_t epoch) {
    grpc::ClientContext context;
    SetDeadline(&context);
    v1::ReleasePeerRequest request;
    request.set_peer_id(peer_id);
    request.set_epoch(epoch);
    v1::ReleasePeerResponse response;
    grpc::Status status = stub_->ReleasePeer(&context, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
  }
  v1::Peer GetPeer(uint32_t peer_id) {
    grpc::ClientContext context;
    SetDeadline(&context);
    v1::GetPeerRequest request;
    request.set_peer_id(peer_id);
    v1::GetPeerResponse response;
    grpc::Status status = stub_->GetPeer(&context, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.peer();
  }
  // One reservation and its release: two events.
  void ReserveAndRelease() {
    v1::ReservePeerResponse r = Reserve();
    Release(r.peer_id(), r.epoch());
  }

 private:
  shmhub::testing::TempDir dir_;
  HubConfig config_;
  std::unique_ptr<HubServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::PeerHub::Stub> stub_;
};

// A WatchEvents stream read by a background thread into a queue. The
// reader can start paused (to play a slow watcher) and be resumed. The
// whole stream has a deadline, and every wait on it has a timeout.
class TestWatcher {
 public:
  TestWatcher(v1::PeerHub::Stub& stub, const v1::WatchEventsRequest& request,
              bool start_paused = false, absl::Duration stream_deadline = absl::Seconds(60))
      : paused_(start_paused) {
    SetDeadline(&context_, stream_deadline);
    thread_ = std::thread([this, &stub, request] { ReadAll(stub, request); });
  }
  ~TestWatcher() {
    Cancel();
    Resume();
    thread_.join();
  }
  TestWatcher(const TestWatcher&) = delete;
  TestWatcher& operator=(const TestWatcher&) = delete;

  void Resume() {
    absl::MutexLock lock(&mu_);
    paused_ = false;
  }
  void Cancel() { context_.TryCancel(); }

  // The next message, or nothing if none arrives within `timeout` or the
  // stream ended.
  std::optional<v1::WatchEventsResponse> Next(absl::Duration timeout = absl::Seconds(10)) {
    absl::MutexLock lock(&mu_);
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !messages_.empty() || status_.has_value();
    };
    mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
    if (messages_.empty()) return std::nullopt;
    v1::WatchEventsResponse message = std::move(messages_.front());
    messages_.pop_front();
    return message;
  }

  // The next message that is not a Progress.
  std::optional<v1::WatchEventsResponse> NextNonProgress(
      absl::Duration timeout = absl::Seconds(10)) {
    const absl::Time deadline = absl::Now() + timeout;
    while (true) {
      std::optional<v1::WatchEventsResponse> message = Next(deadline - absl::Now());
      if (!message.has_value() || !message->has_progress()) return message;
    }
  }

  // The stream's final status once it has ended (messages may still be
  // queued for Next()); nothing if it does not end within `timeout`.
  std::optional<grpc::Status> Status(absl::Duration timeout = absl::Seconds(10)) {
    absl::MutexLock lock(&mu_);
    auto ended = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return status_.has_value(); };
    mu_.AwaitWithTimeout(absl::Condition(&ended), timeout);
    return status_;
  }

 private:
  void ReadAll(v1::PeerHub::Stub& stub, const v1::WatchEventsRequest& request) {
    std::unique_ptr<grpc::ClientReader<v1::WatchEventsResponse>> reader =
        stub.WatchEvents(&context_, request);
    v1::WatchEventsResponse message;
    while (true) {
      {
        absl::MutexLock lock(&mu_);
        auto running = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !paused_; };
        mu_.Await(absl::Condition(&running));
      }
      if (!reader->Read(&message)) break;
      absl::MutexLock lock(&mu_);
      messages_.push_back(message);
    }
    grpc::Status status = reader->Finish();
    absl::MutexLock lock(&mu_);
    status_ = status;
  }

  grpc::ClientContext context_;
  absl::Mutex mu_;
  bool paused_ ABSL_GUARDED_BY(mu_);
  std::deque<v1::WatchEventsResponse> messages_ ABSL_GUARDED_BY(mu_);
  std::optional<grpc::Status> status_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace shmhub::server::testing

#endif  // SHMHUB_TESTS_SERVER_IN_PROCESS_HUB_H_
