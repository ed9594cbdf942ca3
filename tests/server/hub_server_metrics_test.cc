// HubServer's metrics as wired together: the /metrics endpoint, served over
// real HTTP on the port picked for port 0, refused (naming --metrics_listen,
// leaving no segment) when the address is busy, absent when --metrics_listen
// is empty; and the watch streams' RESYNCs counted. Each server with an
// exposer takes about 2 s to stop (civetweb), so this file keeps to few.
#include <unistd.h>

#include <memory>
#include <optional>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/server/in_process_hub.h"
#include "tests/server/metric_families.h"
#include "tests/testing/loopback_http.h"
#include "tests/testing/temp_dir.h"

namespace shmhub::server {
namespace {

using ::shmhub::server::testing::InProcessHub;
using ::shmhub::server::testing::TestConfig;
using ::shmhub::server::testing::TestWatcher;
using ::shmhub::server::testing::Value;
using ::shmhub::testing::HttpResponse;
using ::shmhub::testing::LoopbackHttpGet;
using ::testing::HasSubstr;

void EnableMetrics(HubConfig& config) { config.metrics_listen = "127.0.0.1:0"; }

TEST(HubServerMetricsTest, PortZeroServesEveryFamilyOverHttpOnThePortItPicked) {
  InProcessHub hub(EnableMetrics);
  ASSERT_TRUE(hub.ok());
  const int port = hub.server().metrics_port();
  ASSERT_GT(port, 0);
  EXPECT_EQ(hub.server().metrics_address(), absl::StrCat("127.0.0.1:", port));
  hub.ReserveAndRelease();

  const absl::StatusOr<HttpResponse> response = LoopbackHttpGet(port, "/metrics");
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->status, 200);
  for (const std::string family :
       {"shmhub_peers", "shmhub_events_total", "shmhub_crashes_total",
        "shmhub_crash_detection_seconds", "shmhub_recovery_seconds", "shmhub_reservations_total",
        "shmhub_varslot_free", "shmhub_varslot_capacity", "shmhub_watchers",
        "shmhub_watch_resyncs_total", "shmhub_build_info", "grpc_server_started_total",
        "grpc_server_handled_total", "grpc_server_handling_seconds"}) {
    EXPECT_THAT(response->body, HasSubstr(absl::StrCat("\n# TYPE ", family, " "))) << family;
  }
  EXPECT_THAT(response->body, HasSubstr("shmhub_reservations_total{outcome=\"released\"} 1\n"));
  EXPECT_THAT(response->body, HasSubstr("shmhub_peers{state=\"empty\"} 8\n"));
}

TEST(HubServerMetricsTest, ABusyMetricsAddressIsRefusedNamingTheFlagAndLeavesNoSegmentBehind) {
  InProcessHub first(EnableMetrics);
  ASSERT_TRUE(first.ok());
  shmhub::testing::TempDir dir;
  HubConfig config = TestConfig(dir);
  config.metrics_listen = first.server().metrics_address();
  absl::StatusOr<std::unique_ptr<HubServer>> second = HubServer::Start(config);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(second.status().message(),
              HasSubstr(absl::StrCat("cannot serve /metrics on ", config.metrics_listen,
                                     " (--metrics_listen)")));
  EXPECT_EQ(access(config.segment_path.c_str(), F_OK), -1);
  // The first daemon still serves its metrics.
  const absl::StatusOr<HttpResponse> response =
      LoopbackHttpGet(first.server().metrics_port(), "/metrics");
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->status, 200);
}

TEST(HubServerMetricsTest, AnEmptyMetricsListenBindsNothingButStillCounts) {
  InProcessHub hub;  // TestConfig leaves metrics_listen empty
  ASSERT_TRUE(hub.ok());
  EXPECT_EQ(hub.server().metrics_port(), 0);
  EXPECT_EQ(hub.server().metrics_address(), "");
  hub.ReserveAndRelease();
  EXPECT_EQ(Value(hub.server().metrics().registry()->Collect(), "shmhub_events_total",
                  {{"kind", "released"}}),
            1.0);
}

TEST(HubServerMetricsTest, EveryResyncSentToAWatcherIsCounted) {
  InProcessHub hub;
  ASSERT_TRUE(hub.ok());
  v1::WatchEventsRequest request;
  request.set_resume_after_sequence(0);
  request.set_hub_instance_id("an-earlier-instance");
  TestWatcher watcher(hub.stub(), request);
  const std::optional<v1::WatchEventsResponse> first = watcher.NextNonProgress();
  ASSERT_TRUE(first.has_value());
  ASSERT_TRUE(first->has_resync());
  EXPECT_EQ(Value(hub.server().metrics().registry()->Collect(), "shmhub_watch_resyncs_total"),
            1.0);
}

}  // namespace
}  // namespace shmhub::server
