// HubClient's own behaviour against a ScriptedHub: requests carry what the
// caller gave, failures keep the daemon's code and message, every call is
// bounded by the client's deadline, and Health maps the health service.
#include "client/hub/hub_client.h"

#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/client/hub/scripted_hub.h"

namespace shmhub::client {
namespace {

using ::shmhub::testing::ScriptedHub;

TEST(FromGrpcStatusTest, KeepsCodeAndMessage) {
  const absl::Status status =
      FromGrpcStatus(grpc::Status(grpc::FAILED_PRECONDITION, "peer 3 is at epoch 5, not 4"));

  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(status.message(), "peer 3 is at epoch 5, not 4");
  EXPECT_TRUE(FromGrpcStatus(grpc::Status::OK).ok());
  EXPECT_EQ(FromGrpcStatus(grpc::Status(grpc::RESOURCE_EXHAUSTED, "")).code(),
            absl::StatusCode::kResourceExhausted);
}

class HubClientTest : public ::testing::Test {
 protected:
  ScriptedHub hub_;
  HubClient client_{hub_.target()};
};

TEST_F(HubClientTest, ReservePeerSendsTheRequestAndReturnsTheResponse) {
  v1::ReservePeerResponse canned;
  canned.set_peer_id(3);
  canned.set_epoch(7);
  hub_.SetReserveResponse(canned);
  v1::ReservePeerRequest request;
  request.set_owner("ci");
  request.set_request_id("r-1");
  (*request.mutable_labels())["job"] = "build";

  absl::StatusOr<v1::ReservePeerResponse> reserved = client_.ReservePeer(request);

  ASSERT_TRUE(reserved.ok()) << reserved.status();
  EXPECT_EQ(reserved->peer_id(), 3u);
  EXPECT_EQ(reserved->epoch(), 7u);
  EXPECT_EQ(hub_.last_reserve_request().owner(), "ci");
  EXPECT_EQ(hub_.last_reserve_request().request_id(), "r-1");
  EXPECT_EQ(hub_.last_reserve_request().labels().at("job"), "build");
}

TEST_F(HubClientTest, EvictPeerSendsPeerEpochAndReason) {
  ASSERT_TRUE(client_.EvictPeer(2, 9, "maintenance").ok());

  EXPECT_EQ(hub_.last_evict_request().peer_id(), 2u);
  EXPECT_EQ(hub_.last_evict_request().epoch(), 9u);
  EXPECT_EQ(hub_.last_evict_request().reason(), "maintenance");
}

TEST_F(HubClientTest, AFailureKeepsTheDaemonsCodeAndMessage) {
  hub_.SetUnaryStatus(grpc::Status(grpc::NOT_FOUND, "peer_id 200 is above max_guests 64"));

  absl::StatusOr<v1::GetPeerResponse> got = client_.GetPeer(200);

  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(got.status().message(), "peer_id 200 is above max_guests 64");
}

TEST_F(HubClientTest, ACallThatOutlivesTheTimeoutFailsDeadlineExceeded) {
  hub_.SetUnaryDelay(absl::Seconds(30));
  client_.set_timeout(absl::Milliseconds(100));

  absl::StatusOr<v1::GetPeerResponse> got = client_.GetPeer(1);

  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kDeadlineExceeded);
}

TEST_F(HubClientTest, TimeoutDefaultsToFiveSecondsAndRefusesNonPositiveValues) {
  EXPECT_EQ(client_.timeout(), absl::Seconds(5));
  client_.set_timeout(absl::Milliseconds(250));
  EXPECT_EQ(client_.timeout(), absl::Milliseconds(250));
  client_.set_timeout(absl::ZeroDuration());
  EXPECT_EQ(client_.timeout(), HubClient::kDefaultTimeout);
}

TEST_F(HubClientTest, HealthIsServingForTheWholeServerAndAnErrorForAnUnknownService) {
  absl::StatusOr<bool> serving = client_.Health();
  ASSERT_TRUE(serving.ok()) << serving.status();
  EXPECT_TRUE(*serving);

  absl::StatusOr<bool> unknown = client_.Health("no.such.Service");
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
}

TEST(HubClientWithoutDaemonTest, CallsFailUnavailableAtOnce) {
  HubClient client("127.0.0.1:1");

  absl::StatusOr<v1::ListPeersResponse> listed = client.ListPeers(true);

  ASSERT_FALSE(listed.ok());
  EXPECT_EQ(listed.status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace shmhub::client
