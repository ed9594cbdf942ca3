// shmhubd's metrics as a real Prometheus server sees them: a real shmhubd
// (--metrics_listen on an ephemeral 127.0.0.1 port), a real shmhub-guest
// that is SIGSTOPped, and Debian's /usr/bin/prometheus scraping the daemon
// with the shipped deploy/prometheus/prometheus.yml and shmhub-rules.yml.
// The test asks Prometheus's HTTP API, never the daemon, what it saw.
//
// The config is used as shipped except for two rewrites in a temporary
// copy: the target (the daemon's ephemeral metrics port instead of
// 127.0.0.1:9464) and the rule file (an absolute path to the shipped rules,
// since the copy lives elsewhere). The shipped 5s scrape interval is kept,
// so the daemon's --crash_timeout is long instead: the STALE window must
// span more than two scrapes and rule evaluations. Every wait has a
// deadline; every process is killed and reaped when the test ends.
#include <signal.h>

#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/e2e/running_hub.h"
#include "tests/testing/prometheus_server.h"
#include "tests/testing/spawned_process.h"
#include "tests/testing/temp_dir.h"

namespace shmhub {
namespace {

using ::shmhub::testing::DescribeSamples;
using ::shmhub::testing::GuestSlot;
using ::shmhub::testing::PrometheusSample;
using ::shmhub::testing::PrometheusServer;
using ::shmhub::testing::RunningHub;
using ::shmhub::testing::SpawnedProcess;
using ::shmhub::testing::StartShmhubd;
using ::shmhub::testing::StartShmhubGuest;
using ::shmhub::testing::TempDir;
using Samples = std::vector<PrometheusSample>;

// The guest heartbeats at the interval written in the segment header.
constexpr absl::Duration kHeartbeatInterval = absl::Milliseconds(50);
// Longer than two 5s scrapes (and rule evaluations) plus slack, so that
// Prometheus scrapes the stopped guest's stale flag before the daemon
// crashes it and its series vanish.
constexpr absl::Duration kCrashTimeout = absl::Seconds(12);
// The first scrape comes after target discovery (about 5s) plus up to one
// scrape interval of start offset.
constexpr absl::Duration kFirstScrapeWait = absl::Seconds(45);
// Enough for several 5s scrapes on a loaded machine.
constexpr absl::Duration kScrapeWait = absl::Seconds(30);

// deploy/prometheus/, found from this file's path (tests/e2e/).
std::string ShippedPrometheusDir() {
  const absl::string_view self = __FILE__;
  return absl::StrCat(self.substr(0, self.rfind("/tests/e2e/")), "/deploy/prometheus");
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Replaces the only occurrence of `from` in `*text` by `to`; false when
// `from` occurs zero or several times (the shipped file changed shape, and
// the test must not silently run something else).
bool ReplaceOnce(std::string* text, const std::string& from, const std::string& to) {
  const size_t at = text->find(from);
  if (at == std::string::npos || text->find(from, at + 1) != std::string::npos) return false;
  text->replace(at, from.size(), to);
  return true;
}

// The value of the one sample in `samples`, or nullopt.
std::optional<double> OnlyValue(const Samples& samples) {
  if (samples.size() != 1) return std::nullopt;
  return samples[0].value;
}

class PrometheusProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<RunningHub> daemon = StartShmhubd(
        dir_,
        {.flags = {"--max_guests=2",
                   absl::StrCat("--heartbeat_interval=", absl::FormatDuration(kHeartbeatInterval)),
                   absl::StrCat("--crash_timeout=", absl::FormatDuration(kCrashTimeout))},
         .metrics = true});
    ASSERT_TRUE(daemon.ok()) << daemon.status();
    daemon_ = std::move(daemon->process);
    segment_ = daemon->endpoints.segment_path;
    metrics_address_ = daemon->endpoints.metrics_address;

    const std::string shipped_dir = ShippedPrometheusDir();
    absl::StatusOr<std::string> shipped = ReadFile(shipped_dir + "/prometheus.yml");
    ASSERT_TRUE(shipped.ok()) << shipped.status();
    std::string config = *std::move(shipped);
    ASSERT_TRUE(
        ReplaceOnce(&config, "\"127.0.0.1:9464\"", absl::StrCat("\"", metrics_address_, "\"")))
        << "prometheus.yml no longer has exactly one target \"127.0.0.1:9464\":\n" << config;
    ASSERT_TRUE(ReplaceOnce(&config, "- shmhub-rules.yml",
                            absl::StrCat("- ", shipped_dir, "/shmhub-rules.yml")))
        << "prometheus.yml no longer loads exactly one shmhub-rules.yml:\n" << config;
    const std::string config_path = dir_.File("prometheus.yml");
    std::ofstream(config_path) << config;

    absl::StatusOr<std::unique_ptr<PrometheusServer>> prometheus =
        PrometheusServer::Start(config_path, dir_.path());
    ASSERT_TRUE(prometheus.ok()) << prometheus.status();
    prometheus_ = *std::move(prometheus);
  }

  void TearDown() override {
    if (prometheus_ != nullptr) {
      EXPECT_TRUE(prometheus_->Stop().ok()) << prometheus_->Stderr();
    }
  }

  // Awaits `promql` until `done`; fails the test (with Prometheus's log)
  // and returns an empty vector when the deadline passes first.
  Samples Await(const std::string& promql, absl::FunctionRef<bool(const Samples&)> done,
                absl::Duration timeout = kScrapeWait) {
    absl::StatusOr<Samples> samples = prometheus_->AwaitQuery(promql, done, timeout);
    EXPECT_TRUE(samples.ok()) << samples.status() << "\nshmhubd stderr:\n"
                              << daemon_->Stderr() << "\nprometheus stderr:\n"
                              << prometheus_->Stderr();
    return samples.value_or(Samples());
  }

  TempDir dir_;
  std::unique_ptr<SpawnedProcess> daemon_;
  std::string segment_;
  std::string metrics_address_;
  std::unique_ptr<PrometheusServer> prometheus_;
};

TEST_F(PrometheusProcessTest, ScrapesFreshHeartbeatThenStaleFlagThenHeartbeatCrashThenNoSeries) {
  // Attached through the segment alone (not the local socket): heartbeats
  // are the only crash detector watching it.
  GuestSlot slot;
  std::unique_ptr<SpawnedProcess> guest =
      StartShmhubGuest(dir_, {"--segment=" + segment_}, "guest.err", &slot);
  ASSERT_NE(slot.peer_id, 0u) << "the guest did not attach";  // peer ids start at 1
  const std::string peer = absl::StrCat("job=\"shmhub\",peer_id=\"", slot.peer_id, "\"");

  // The shipped job scrapes the daemon; the crash counters exist at 0 from
  // the start, so the heartbeat crash below is an increase Prometheus sees.
  Await("up{job=\"shmhub\"} == 1", [](const Samples& s) { return s.size() == 1; },
        kFirstScrapeWait);
  const std::string heartbeat_crashes =
      "shmhub_crashes_total{job=\"shmhub\",detector=\"heartbeat\"}";
  const std::string other_crashes =
      "sum(shmhub_crashes_total{job=\"shmhub\",detector!=\"heartbeat\"})";
  const std::optional<double> heartbeat_before = OnlyValue(
      Await(heartbeat_crashes, [](const Samples& s) { return s.size() == 1; }));
  ASSERT_TRUE(heartbeat_before.has_value());
  const std::optional<double> others_before =
      OnlyValue(Await(other_crashes, [](const Samples& s) { return s.size() == 1; }));
  ASSERT_TRUE(others_before.has_value());

  // A live guest's heartbeat age, as scraped, is below the interval. Waited
  // for rather than read once: a scrape may land just as the guest is late
  // by a scheduling delay, which says nothing about the metric.
  const std::string age = absl::StrCat("shmhub_peer_heartbeat_age_seconds{", peer, "}");
  const Samples fresh = Await(age, [](const Samples& s) {
    return s.size() == 1 && s[0].value >= 0 &&
           s[0].value < absl::ToDoubleSeconds(kHeartbeatInterval);
  });
  ASSERT_EQ(fresh.size(), 1u);
  const std::string stale = absl::StrCat("shmhub_peer_heartbeat_stale{", peer, "}");
  ASSERT_EQ(OnlyValue(Await(stale, [](const Samples& s) {
              return s.size() == 1 && s[0].value == 0;
            })),
            0.0);
  const Samples armed = Await(absl::StrCat("shmhub_peer_detector_armed{", peer, "}"),
                              [](const Samples& s) { return !s.empty(); });
  ASSERT_EQ(armed.size(), 1u) << DescribeSamples(armed);
  const auto detector = armed[0].labels.find("detector");
  ASSERT_NE(detector, armed[0].labels.end()) << DescribeSamples(armed);
  EXPECT_EQ(detector->second, "heartbeat");

  // Stopped: stale (2 x 50ms without a heartbeat) long before the 12s crash
  // timeout, then crashed by the heartbeat detector and nothing else.
  guest->Signal(SIGSTOP);
  const Samples stale_seen = Await(stale, [](const Samples& s) {
    return s.size() == 1 && s[0].value == 1;
  });
  ASSERT_EQ(stale_seen.size(), 1u) << "stale flag never scraped at 1";
  const Samples crashed = Await(
      heartbeat_crashes,
      [&](const Samples& s) { return s.size() == 1 && s[0].value >= *heartbeat_before + 1; },
      kCrashTimeout + kScrapeWait);
  EXPECT_EQ(OnlyValue(crashed), *heartbeat_before + 1) << DescribeSamples(crashed);
  EXPECT_EQ(OnlyValue(Await(other_crashes, [](const Samples& s) { return s.size() == 1; })),
            *others_before);

  // The recovered slot is Empty: no shmhub series carries its peer id any
  // more (Prometheus's own ALERTS series are not the daemon's).
  Await(absl::StrCat("{__name__=~\"shmhub_.*\",", peer, "}"),
        [](const Samples& s) { return s.empty(); });

  // The shipped ShmhubPeerHeartbeatStale rule saw the stale flag (pending:
  // its 30s "for" is longer than the crash timeout).
  Await(absl::StrCat("max_over_time(ALERTS{alertname=\"ShmhubPeerHeartbeatStale\",", peer,
                     "}[5m])"),
        [](const Samples& s) { return !s.empty(); });

  guest->Signal(SIGKILL);
  EXPECT_EQ(guest->Wait(), 128 + SIGKILL);
}

}  // namespace
}  // namespace shmhub
