// HubConfig: the documented defaults, the derived intervals, and every
// refusal of ValidateHubConfig and ParseSlotClasses naming the flag.
#include "server/config/hub_config.h"

#include <functional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "shm/format.h"

namespace shmhub::server {
namespace {

using ::testing::HasSubstr;

TEST(HubConfigTest, DefaultsAreTheArchitecturesAndValid) {
  const HubConfig config;
  EXPECT_EQ(config.segment_path, "/dev/shm/shmhub");
  EXPECT_EQ(config.max_guests, 64u);
  EXPECT_EQ(config.ring_bytes, 65536u);
  EXPECT_EQ(FormatSlotClasses(config.slot_classes), "1024:256,16384:64,262144:8");
  EXPECT_EQ(config.heartbeat_interval, absl::Milliseconds(100));
  EXPECT_EQ(config.crash_timeout, absl::Seconds(1));
  EXPECT_FALSE(config.require_heartbeat);
  EXPECT_EQ(config.listen, "127.0.0.1:50051");
  EXPECT_EQ(config.metrics_listen, "127.0.0.1:9464");
  EXPECT_EQ(config.host_ack_timeout, absl::Seconds(2));
  EXPECT_TRUE(ValidateHubConfig(config).ok()) << ValidateHubConfig(config);
}

TEST(HubConfigTest, ScanIntervalIsAQuarterHeartbeatIntervalWithinOneTo250Ms) {
  HubConfig config;
  config.heartbeat_interval = absl::Milliseconds(100);
  EXPECT_EQ(config.ScanInterval(), absl::Milliseconds(25));
  config.heartbeat_interval = absl::Milliseconds(2);
  EXPECT_EQ(config.ScanInterval(), absl::Milliseconds(1));
  config.heartbeat_interval = absl::Seconds(10);
  EXPECT_EQ(config.ScanInterval(), absl::Milliseconds(250));
}

TEST(HubConfigTest, HeartbeatGraceDefaultsToTheCrashTimeout) {
  HubConfig config;
  config.crash_timeout = absl::Seconds(3);
  EXPECT_EQ(config.EffectiveHeartbeatGrace(), absl::Seconds(3));
  config.heartbeat_grace = absl::Milliseconds(500);
  EXPECT_EQ(config.EffectiveHeartbeatGrace(), absl::Milliseconds(500));
}

struct Refusal {
  std::string flag;
  std::function<void(HubConfig&)> breaks;
};

TEST(HubConfigTest, ValidateRefusesEachOutOfRangeValueNamingItsFlag) {
  const std::vector<Refusal> refusals = {
      {"--segment", [](HubConfig& c) { c.segment_path = "relative/shmhub"; }},
      {"--segment", [](HubConfig& c) { c.segment_path.clear(); }},
      {"--max_guests", [](HubConfig& c) { c.max_guests = 0; }},
      {"--max_guests", [](HubConfig& c) { c.max_guests = 256; }},
      {"--ring_bytes", [](HubConfig& c) { c.ring_bytes = 63; }},
      {"--ring_bytes", [](HubConfig& c) { c.ring_bytes = (1u << 30) + 1; }},
      {"--slot_classes", [](HubConfig& c) { c.slot_classes.clear(); }},
      {"--slot_classes", [](HubConfig& c) { c.slot_classes = {{4, 10}}; }},
      {"--slot_classes", [](HubConfig& c) { c.slot_classes = {{64, 0}}; }},
      {"--slot_classes", [](HubConfig& c) { c.slot_classes = {{64, 1}, {64, 1}}; }},
      {"--slot_classes", [](HubConfig& c) { c.slot_classes = {{128, 1}, {64, 1}}; }},
      {"--slot_classes",
       [](HubConfig& c) {
         c.slot_classes.clear();
         for (uint32_t k = 0; k <= shm::kMaxSlotClasses; ++k) c.slot_classes.push_back({8 + k, 1});
       }},
      {"--max_payload_size", [](HubConfig& c) { c.max_payload_size = 0; }},
      {"--heartbeat_interval", [](HubConfig& c) { c.heartbeat_interval = absl::ZeroDuration(); }},
      {"--heartbeat_interval", [](HubConfig& c) { c.heartbeat_interval = absl::Hours(2); }},
      {"--crash_timeout", [](HubConfig& c) { c.crash_timeout = 2 * c.heartbeat_interval; }},
      {"--heartbeat_grace", [](HubConfig& c) { c.heartbeat_grace = -absl::Milliseconds(1); }},
      {"--max_lease_ttl", [](HubConfig& c) { c.max_lease_ttl = absl::ZeroDuration(); }},
      {"--default_lease_ttl",
       [](HubConfig& c) { c.default_lease_ttl = c.max_lease_ttl + absl::Seconds(1); }},
      {"--journal_capacity", [](HubConfig& c) { c.journal_capacity = 15; }},
      {"--watcher_queue", [](HubConfig& c) { c.watcher_queue = 0; }},
      {"--max_watchers", [](HubConfig& c) { c.max_watchers = 0; }},
      {"--watch_progress_interval",
       [](HubConfig& c) { c.watch_progress_interval = absl::Milliseconds(1); }},
      {"--shutdown_grace", [](HubConfig& c) { c.shutdown_grace = absl::Minutes(6); }},
      {"--host_ack_timeout", [](HubConfig& c) { c.host_ack_timeout = absl::ZeroDuration(); }},
      {"--host_ack_timeout", [](HubConfig& c) { c.host_ack_timeout = absl::Minutes(11); }},
      {"--listen", [](HubConfig& c) { c.listen.clear(); }},
      {"--metrics_listen", [](HubConfig& c) { c.metrics_listen = "127.0.0.1"; }},
      {"--metrics_listen", [](HubConfig& c) { c.metrics_listen = ":9464"; }},
      {"--metrics_listen", [](HubConfig& c) { c.metrics_listen = "127.0.0.1:65536"; }},
      {"--metrics_listen", [](HubConfig& c) { c.metrics_listen = "127.0.0.1:+80"; }},
      {"--metrics_listen", [](HubConfig& c) { c.metrics_listen = "::1:9464"; }},
      {"--metrics_listen", [](HubConfig& c) { c.metrics_listen = c.listen; }},
  };
  for (const Refusal& refusal : refusals) {
    HubConfig config;
    refusal.breaks(config);
    const absl::Status status = ValidateHubConfig(config);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << refusal.flag << ": " << status;
    EXPECT_THAT(status.message(), HasSubstr(refusal.flag + ":")) << status;
  }
}

TEST(HubConfigTest, ValidateAcceptsTheBoundaryValues) {
  HubConfig config;
  config.max_guests = 255;
  config.heartbeat_interval = absl::Milliseconds(1);
  config.crash_timeout = 2 * config.heartbeat_interval + absl::Nanoseconds(1);
  config.default_lease_ttl = config.max_lease_ttl;
  config.shutdown_grace = absl::ZeroDuration();
  config.host_ack_timeout = absl::Milliseconds(1);
  config.metrics_listen.clear();  // no /metrics exposer
  EXPECT_TRUE(ValidateHubConfig(config).ok()) << ValidateHubConfig(config);
}

TEST(HubConfigTest, ValidateAcceptsAnyMetricsHostPortAndEmptyForNone) {
  for (const std::string address : {"", "127.0.0.1:0", "0.0.0.0:9464", "[::1]:9464",
                                    "localhost:65535"}) {
    HubConfig config;
    config.metrics_listen = address;
    EXPECT_TRUE(ValidateHubConfig(config).ok()) << address << ": " << ValidateHubConfig(config);
  }
}

TEST(HubConfigTest, ParseSlotClassesReadsSizeCountPairsAndFormatRoundTrips) {
  absl::StatusOr<std::vector<shm::SlotClassConfig>> classes =
      ParseSlotClasses("1024:256,16384:64,262144:8");
  ASSERT_TRUE(classes.ok()) << classes.status();
  ASSERT_EQ(classes->size(), 3u);
  EXPECT_EQ((*classes)[0].slot_size, 1024u);
  EXPECT_EQ((*classes)[0].slot_count, 256u);
  EXPECT_EQ((*classes)[2].slot_size, 262144u);
  EXPECT_EQ((*classes)[2].slot_count, 8u);
  EXPECT_EQ(FormatSlotClasses(*classes), "1024:256,16384:64,262144:8");

  classes = ParseSlotClasses("8:1");
  ASSERT_TRUE(classes.ok()) << classes.status();
  EXPECT_EQ(FormatSlotClasses(*classes), "8:1");
}

TEST(HubConfigTest, ParseSlotClassesRefusesMalformedAndOutOfRangeClasses) {
  struct Case {
    std::string text;
    std::string says;
  };
  std::vector<std::string> too_many;
  for (uint32_t k = 0; k <= shm::kMaxSlotClasses; ++k) {
    too_many.push_back(absl::StrCat(8 + k, ":1"));
  }
  const std::vector<Case> cases = {
      {"", "is not SIZE:COUNT"},
      {"1024", "'1024' is not SIZE:COUNT"},
      {"1024:256:1", "is not SIZE:COUNT"},
      {"a:b", "'a:b' is not SIZE:COUNT"},
      {"1024:-1", "is not SIZE:COUNT"},
      {"99999999999:1", "is not SIZE:COUNT"},
      {"1024:256,", "'' is not SIZE:COUNT"},
      {"4:10", "slot size 4"},
      {"1024:0", "slot count 0"},
      {"8:4294967295", "slot count 4294967295"},
      {"64:1,64:2", "strictly ascending"},
      {"128:1,64:2", "strictly ascending; 64 follows 128"},
      {absl::StrJoin(too_many, ","), "exceed the maximum of 256"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<std::vector<shm::SlotClassConfig>> classes = ParseSlotClasses(c.text);
    ASSERT_FALSE(classes.ok()) << "'" << c.text << "' was accepted";
    EXPECT_EQ(classes.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(classes.status().message(), HasSubstr("--slot_classes:"));
    EXPECT_THAT(classes.status().message(), HasSubstr(c.says)) << c.text.substr(0, 40);
  }
}

}  // namespace
}  // namespace shmhub::server
