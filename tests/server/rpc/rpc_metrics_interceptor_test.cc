// The RPC metrics interceptor on a real in-process HubServer (no /metrics
// exposer: the registry is read directly): started / handled by upper-case
// status code / handling time per method, for the PeerHub service and for
// the health service, unary and streaming.
#include "server/rpc/rpc_metrics_interceptor.h"

#include <functional>
#include <optional>
#include <string>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/server/in_process_hub.h"
#include "tests/server/metric_families.h"

namespace shmhub::server {
namespace {

using ::shmhub::server::testing::FindSeries;
using ::shmhub::server::testing::InProcessHub;
using ::shmhub::server::testing::Labels;
using ::shmhub::server::testing::SetDeadline;
using ::shmhub::server::testing::TestWatcher;
using ::shmhub::server::testing::Value;

constexpr char kService[] = "shmhub.v1.PeerHub";

Labels Method(const std::string& method, const std::string& type = "unary",
              const std::string& service = kService) {
  return {{"grpc_service", service}, {"grpc_method", method}, {"grpc_type", type}};
}

Labels WithCode(Labels labels, const std::string& code) {
  labels["grpc_code"] = code;
  return labels;
}

class RpcMetricsInterceptorTest : public ::testing::Test {
 protected:
  double Counter(const std::string& name, const Labels& labels) {
    return Value(hub_.server().metrics().registry()->Collect(), name, labels).value_or(-1);
  }

  // Polls until `counter` reaches `want` or 10 s pass; returns the last value.
  double AwaitCounter(const std::string& name, const Labels& labels, double want) {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    double value = Counter(name, labels);
    while (value != want && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(2));
      value = Counter(name, labels);
    }
    return value;
  }

  InProcessHub hub_;
};

TEST_F(RpcMetricsInterceptorTest, EveryPeerHubMethodHasStartedAndOkSeriesAtZeroBeforeAnyCall) {
  ASSERT_TRUE(hub_.ok());
  for (const std::string method :
       {"GetSegmentInfo", "ReservePeer", "ReleasePeer", "EvictPeer", "GetPeer", "ListPeers"}) {
    EXPECT_EQ(Counter("grpc_server_started_total", Method(method)), 0) << method;
    EXPECT_EQ(Counter("grpc_server_handled_total", WithCode(Method(method), "OK")), 0) << method;
  }
  EXPECT_EQ(Counter("grpc_server_started_total", Method("WatchEvents", "server_stream")), 0);
}

TEST_F(RpcMetricsInterceptorTest, ASuccessfulCallIsStartedHandledOkAndTimed) {
  ASSERT_TRUE(hub_.ok());
  grpc::ClientContext context;
  SetDeadline(&context);
  v1::GetSegmentInfoResponse response;
  ASSERT_TRUE(hub_.stub().GetSegmentInfo(&context, {}, &response).ok());

  // The status is counted before it is sent, so the reply implies the count.
  const auto families = hub_.server().metrics().registry()->Collect();
  EXPECT_EQ(Value(families, "grpc_server_started_total", Method("GetSegmentInfo")), 1.0);
  EXPECT_EQ(Value(families, "grpc_server_handled_total", WithCode(Method("GetSegmentInfo"), "OK")),
            1.0);
  const prometheus::ClientMetric* timing =
      FindSeries(families, "grpc_server_handling_seconds", Method("GetSegmentInfo"));
  ASSERT_NE(timing, nullptr);
  EXPECT_EQ(timing->histogram.sample_count, 1u);
  EXPECT_GE(timing->histogram.sample_sum, 0.0);
}

TEST_F(RpcMetricsInterceptorTest, FailedCallsAreHandledUnderTheirUpperCaseStatusCode) {
  ASSERT_TRUE(hub_.ok());
  {
    grpc::ClientContext context;
    SetDeadline(&context);
    v1::ReleasePeerRequest request;
    request.set_peer_id(1);
    request.set_epoch(1);
    v1::ReleasePeerResponse response;
    ASSERT_EQ(hub_.stub().ReleasePeer(&context, request, &response).error_code(),
              grpc::StatusCode::FAILED_PRECONDITION);
  }
  {
    grpc::ClientContext context;
    SetDeadline(&context);
    v1::GetPeerRequest request;  // peer id 0 names no slot
    v1::GetPeerResponse response;
    ASSERT_EQ(hub_.stub().GetPeer(&context, request, &response).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
  const auto families = hub_.server().metrics().registry()->Collect();
  EXPECT_EQ(Value(families, "grpc_server_handled_total",
                  WithCode(Method("ReleasePeer"), "FAILED_PRECONDITION")),
            1.0);
  EXPECT_EQ(Value(families, "grpc_server_handled_total", WithCode(Method("ReleasePeer"), "OK")),
            0.0);
  EXPECT_EQ(
      Value(families, "grpc_server_handled_total", WithCode(Method("GetPeer"), "INVALID_ARGUMENT")),
      1.0);
  EXPECT_EQ(Value(families, "grpc_server_started_total", Method("GetPeer")), 1.0);
}

TEST_F(RpcMetricsInterceptorTest, HealthChecksAreCountedUnderTheHealthService) {
  ASSERT_TRUE(hub_.ok());
  auto stub = grpc::health::v1::Health::NewStub(hub_.channel());
  grpc::ClientContext context;
  SetDeadline(&context);
  grpc::health::v1::HealthCheckResponse response;
  ASSERT_TRUE(stub->Check(&context, {}, &response).ok());
  EXPECT_EQ(Counter("grpc_server_handled_total",
                    WithCode(Method("Check", "unary", "grpc.health.v1.Health"), "OK")),
            1);
}

TEST_F(RpcMetricsInterceptorTest, AWatchStreamIsHandledAsCancelledWhenTheClientLeaves) {
  ASSERT_TRUE(hub_.ok());
  const Labels watch = Method("WatchEvents", "server_stream");
  {
    TestWatcher watcher(hub_.stub(), v1::WatchEventsRequest());
    ASSERT_EQ(AwaitCounter("grpc_server_started_total", watch, 1), 1);
    EXPECT_EQ(Counter("grpc_server_handled_total", WithCode(watch, "CANCELLED")), -1)
        << "no CANCELLED series before a stream ends that way";
    watcher.Cancel();
  }
  EXPECT_EQ(AwaitCounter("grpc_server_handled_total", WithCode(watch, "CANCELLED"), 1), 1);
  const auto families = hub_.server().metrics().registry()->Collect();
  const prometheus::ClientMetric* timing =
      FindSeries(families, "grpc_server_handling_seconds", watch);
  ASSERT_NE(timing, nullptr);
  EXPECT_EQ(timing->histogram.sample_count, 1u);
}

}  // namespace
}  // namespace shmhub::server
