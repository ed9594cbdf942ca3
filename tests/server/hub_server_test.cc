// The daemon object: health and reflection services, refusing a busy port
// or a live segment without leaving anything behind, and a shutdown that
// stays bounded even when a watcher stops reading.
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/support/byte_buffer.h"
#include "gtest/gtest.h"
#include "tests/server/in_process_hub.h"

namespace shmhub::server {
namespace {

using ::shmhub::server::testing::InProcessHub;
using ::shmhub::server::testing::SetDeadline;
using ::shmhub::server::testing::TestConfig;
using ::shmhub::server::testing::TestWatcher;
using ::testing::HasSubstr;

grpc::health::v1::HealthCheckResponse::ServingStatus Health(
    const std::shared_ptr<grpc::Channel>& channel, const std::string& service) {
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext context;
  SetDeadline(&context, absl::Seconds(5));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  grpc::Status status = stub->Check(&context, request, &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return response.status();
}

// One ServerReflectionInfo exchange asking for list_services, with the raw
// bytes of the answer (the reflection protos are not compiled into the
// project, and service names appear verbatim in the encoding).
std::string ListServicesRaw(const std::shared_ptr<grpc::Channel>& channel) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  SetDeadline(&context, absl::Seconds(5));
  grpc::CompletionQueue cq;
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call = stub.PrepareCall(
      &context, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
  auto await = [&cq](intptr_t want) {
    void* tag = nullptr;
    bool ok = false;
    const auto deadline = absl::ToChronoTime(absl::Now() + absl::Seconds(5));
    if (cq.AsyncNext(&tag, &ok, deadline) != grpc::CompletionQueue::GOT_EVENT) return false;
    return ok && reinterpret_cast<intptr_t>(tag) == want;
  };
  call->StartCall(reinterpret_cast<void*>(1));
  EXPECT_TRUE(await(1));
  // ServerReflectionRequest{list_services: ""}: field 7, length 0.
  const char request_bytes[] = {0x3a, 0x00};
  grpc::Slice slice(request_bytes, sizeof(request_bytes));
  grpc::ByteBuffer request(&slice, 1);
  call->Write(request, reinterpret_cast<void*>(2));
  EXPECT_TRUE(await(2));
  call->WritesDone(reinterpret_cast<void*>(3));
  EXPECT_TRUE(await(3));
  grpc::ByteBuffer response;
  call->Read(&response, reinterpret_cast<void*>(4));
  EXPECT_TRUE(await(4));
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(5));
  await(5);
  cq.Shutdown();
  void* tag = nullptr;
  bool ok = false;
  while (cq.Next(&tag, &ok)) {
  }
  std::string bytes;
  std::vector<grpc::Slice> slices;
  if (response.Dump(&slices).ok()) {
    for (const grpc::Slice& s : slices) {
      bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
    }
  }
  return bytes;
}

TEST(HubServerTest, HealthIsServingForTheServerAndThePeerHubService) {
  InProcessHub hub;
  ASSERT_TRUE(hub.ok());
  EXPECT_EQ(Health(hub.channel(), ""), grpc::health::v1::HealthCheckResponse::SERVING);
  EXPECT_EQ(Health(hub.channel(), "shmhub.v1.PeerHub"),
            grpc::health::v1::HealthCheckResponse::SERVING);
}

TEST(HubServerTest, ReflectionListsThePeerHubService) {
  InProcessHub hub;
  ASSERT_TRUE(hub.ok());
  const std::string listing = ListServicesRaw(hub.channel());
  EXPECT_THAT(listing, HasSubstr("shmhub.v1.PeerHub"));
  EXPECT_THAT(listing, HasSubstr("grpc.health.v1.Health"));
}

TEST(HubServerTest, ABusyListenAddressIsRefusedAndLeavesNoSegmentBehind) {
  InProcessHub first;
  ASSERT_TRUE(first.ok());
  shmhub::testing::TempDir dir;
  HubConfig config = TestConfig(dir);
  config.listen = first.server().address();
  absl::StatusOr<std::unique_ptr<HubServer>> second = HubServer::Start(config);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(second.status().message(), HasSubstr("cannot listen on " + config.listen));
  EXPECT_EQ(access(config.segment_path.c_str(), F_OK), -1);
  // The first daemon is untouched.
  EXPECT_EQ(Health(first.channel(), ""), grpc::health::v1::HealthCheckResponse::SERVING);
}

TEST(HubServerTest, ASegmentOwnedByALiveDaemonIsRefusedAndLeftAlone) {
  InProcessHub first;
  ASSERT_TRUE(first.ok());
  HubConfig config = first.config();
  config.listen = "127.0.0.1:0";
  absl::StatusOr<std::unique_ptr<HubServer>> second = HubServer::Start(config);
  ASSERT_FALSE(second.ok());
  EXPECT_THAT(second.status().message(), HasSubstr(config.segment_path));
  EXPECT_EQ(access(config.segment_path.c_str(), F_OK), 0);
  v1::ReservePeerResponse reserved = first.Reserve();
  EXPECT_EQ(reserved.peer_id(), 1u);
}

TEST(HubServerTest, ShutdownIsBoundedWhenAWatcherStopsReadingAndReportsNotServingMeanwhile) {
  InProcessHub hub([](HubConfig& config) {
    config.shutdown_grace = absl::Seconds(2);
    config.watcher_queue = 4;
  });
  ASSERT_TRUE(hub.ok());
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  auto channel =
      grpc::CreateCustomChannel(hub.server().address(), grpc::InsecureChannelCredentials(), args);
  auto stub = v1::PeerHub::NewStub(channel);
  v1::WatchEventsRequest request;
  request.set_snapshot_first(true);
  TestWatcher stuck(*stub, request, /*start_paused=*/true);
  // Fill the stream's flow-control window so the server cannot write.
  v1::ReservePeerRequest big;
  for (int i = 0; i < 32; ++i)
    (*big.mutable_labels())[absl::StrCat("l", i)] = std::string(256, 'x');
  for (int i = 0; i < 300; ++i) {
    v1::ReservePeerResponse r = hub.Reserve(big);
    hub.Release(r.peer_id(), r.epoch());
  }
  const std::string path = hub.config().segment_path;
  std::thread shutdown([&hub] { hub.server().Shutdown(); });
  // While the watcher holds the shutdown up, health says NOT_SERVING.
  bool saw_not_serving = false;
  const absl::Time deadline = absl::Now() + absl::Seconds(1);
  while (!saw_not_serving && absl::Now() < deadline) {
    saw_not_serving =
        Health(hub.channel(), "") == grpc::health::v1::HealthCheckResponse::NOT_SERVING;
  }
  EXPECT_TRUE(saw_not_serving);
  shutdown.join();
  EXPECT_EQ(access(path.c_str(), F_OK), -1);
  stuck.Resume();
  std::optional<grpc::Status> status = stuck.Status();
  ASSERT_TRUE(status.has_value());
  EXPECT_FALSE(status->ok());
}

}  // namespace
}  // namespace shmhub::server
