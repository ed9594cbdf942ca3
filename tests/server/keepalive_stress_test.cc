// A watch stream that carries no data for half a minute survives a client
// that sends HTTP/2 keepalive pings every 10 s: the server's ping policy
// must not answer them with GOAWAY(too_many_pings). With gRPC's default
// server policy (at most one ping per 5 minutes without data, 2 strikes)
// this stream would be cut after the third ping.
#include <memory>
#include <optional>

#include "absl/time/clock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/support/channel_arguments.h"
#include "gtest/gtest.h"
#include "tests/server/in_process_hub.h"

namespace shmhub::server {
namespace {

using ::shmhub::server::testing::InProcessHub;
using ::shmhub::server::testing::TestWatcher;

TEST(KeepaliveStressTest, ClientPingingEveryTenSecondsKeepsAnIdleWatchStream) {
  InProcessHub hub([](HubConfig& config) {
    // No PROGRESS during the test, so the stream carries no data at all.
    config.watch_progress_interval = absl::Hours(1);
  });
  ASSERT_TRUE(hub.ok());
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10'000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5'000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);  // keep pinging an idle stream
  auto channel =
      grpc::CreateCustomChannel(hub.server().address(), grpc::InsecureChannelCredentials(), args);
  auto stub = v1::PeerHub::NewStub(channel);
  v1::WatchEventsRequest request;
  request.set_snapshot_first(true);
  TestWatcher watcher(*stub, request, /*start_paused=*/false, absl::Seconds(120));
  ASSERT_TRUE(watcher.Next().has_value());

  // Four client pings go out while the stream is idle.
  EXPECT_FALSE(watcher.Status(absl::Seconds(45)).has_value()) << "the stream was cut";
  hub.Reserve();
  std::optional<v1::WatchEventsResponse> event = watcher.Next();
  ASSERT_TRUE(event.has_value());
  EXPECT_EQ(event->event().kind(), v1::EVENT_KIND_RESERVED);
}

}  // namespace
}  // namespace shmhub::server
