// shmhubd's /metrics as a scraper sees it: a real shmhubd with
// --metrics_listen=127.0.0.1:0 (the port read from its start line), real
// shmhub-guest processes killed with SIGKILL, the exposition fetched over
// HTTP and linted by the real `promtool check metrics` (Debian's prometheus
// package). Every wait has a deadline; every process is killed and reaped
// when its test ends.
#include <signal.h>

#include <cstdint>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/hub/hub_client.h"
#include "gtest/gtest.h"
#include "shmhub/v1/hub.pb.h"
#include "tests/e2e/running_hub.h"
#include "tests/testing/loopback_http.h"
#include "tests/testing/spawned_process.h"
#include "tests/testing/temp_dir.h"

namespace shmhub {
namespace {

using ::shmhub::testing::kProcessWaitLimit;
using ::shmhub::testing::LoopbackHttpGet;
using ::shmhub::testing::ReserveSlot;
using ::shmhub::testing::RunningHub;
using ::shmhub::testing::SpawnedProcess;
using ::shmhub::testing::StartClaimingGuest;
using ::shmhub::testing::StartShmhubd;
using ::shmhub::testing::TempDir;

constexpr char kPromtool[] = "/usr/bin/promtool";
constexpr uint32_t kMaxGuests = 2;

using Labels = std::map<std::string, std::string>;

// One sample line of the text exposition format.
struct Sample {
  std::string name;
  Labels labels;
  double value = 0;
};

// Parses `name{a="x",b="y"} value` lines; comments and blank lines are
// skipped. Label values here never hold quotes, so no unescaping is needed.
std::vector<Sample> ParseExposition(absl::string_view text) {
  std::vector<Sample> samples;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (line.empty() || line.front() == '#') continue;
    Sample sample;
    const size_t brace = line.find('{');
    const size_t space = line.rfind(' ');
    if (space == absl::string_view::npos) continue;
    if (brace != absl::string_view::npos && brace < space) {
      sample.name = std::string(line.substr(0, brace));
      const size_t close = line.rfind('}', space);
      for (absl::string_view pair :
           absl::StrSplit(line.substr(brace + 1, close - brace - 1), ',', absl::SkipEmpty())) {
        const size_t eq = pair.find('=');
        if (eq == absl::string_view::npos) continue;
        absl::string_view value = pair.substr(eq + 1);
        absl::ConsumePrefix(&value, "\"");
        absl::ConsumeSuffix(&value, "\"");
        sample.labels[std::string(pair.substr(0, eq))] = std::string(value);
      }
    } else {
      sample.name = std::string(line.substr(0, space));
    }
    if (!absl::SimpleAtod(line.substr(space + 1), &sample.value)) continue;
    samples.push_back(std::move(sample));
  }
  return samples;
}

std::optional<double> ValueOf(const std::vector<Sample>& samples, const std::string& name,
                              const Labels& labels = {}) {
  for (const Sample& sample : samples) {
    if (sample.name == name && sample.labels == labels) return sample.value;
  }
  return std::nullopt;
}

// Every sample that carries peer_id="<peer_id>", as text for messages.
std::string SeriesOfPeer(const std::vector<Sample>& samples, uint32_t peer_id) {
  std::string found;
  for (const Sample& sample : samples) {
    auto it = sample.labels.find("peer_id");
    if (it != sample.labels.end() && it->second == absl::StrCat(peer_id)) {
      absl::StrAppend(&found, "\n  ", sample.name, " ", sample.value);
    }
  }
  return found;
}

class MetricsProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<RunningHub> daemon = StartShmhubd(
        dir_, {.flags = {absl::StrCat("--max_guests=", kMaxGuests), "--heartbeat_interval=20ms",
                         "--crash_timeout=300ms"},
               .local_socket = false,
               .metrics = true});
    ASSERT_TRUE(daemon.ok()) << daemon.status();
    daemon_ = std::move(daemon->process);
    segment_ = daemon->endpoints.segment_path;
    metrics_port_ = daemon->endpoints.metrics_port;
    hub_ = std::make_unique<client::HubClient>(daemon->endpoints.grpc_address);
  }

  // The body of one GET /metrics.
  std::string Scrape() {
    const absl::StatusOr<shmhub::testing::HttpResponse> response =
        LoopbackHttpGet(metrics_port_, "/metrics");
    EXPECT_TRUE(response.ok()) << response.status();
    if (!response.ok()) return "";
    EXPECT_EQ(response->status, 200);
    return response->body;
  }

  // Scrapes until `done` holds or the deadline passes; the last scrape.
  template <typename Done>
  std::vector<Sample> ScrapeUntil(Done done) {
    const absl::Time deadline = absl::Now() + kProcessWaitLimit;
    while (true) {
      std::vector<Sample> samples = ParseExposition(Scrape());
      if (done(samples) || absl::Now() >= deadline) return samples;
      absl::SleepFor(absl::Milliseconds(20));
    }
  }

  v1::ReservePeerResponse Reserve() { return ReserveSlot(*hub_, "metrics-e2e"); }

  // A real shmhub-guest claiming `reservation`, heartbeating every 20ms.
  std::unique_ptr<SpawnedProcess> StartGuest(const v1::ReservePeerResponse& reservation) {
    return StartClaimingGuest(dir_, segment_, reservation, "guest.err");
  }

  // Waits until the daemon reports the guest's heartbeat on /metrics.
  void AwaitHeartbeatSeries(uint32_t peer_id) {
    const Labels peer = {{"peer_id", absl::StrCat(peer_id)}};
    const std::vector<Sample> samples = ScrapeUntil([&](const std::vector<Sample>& s) {
      return ValueOf(s, "shmhub_peer_heartbeat_age_seconds", peer).has_value();
    });
    ASSERT_TRUE(ValueOf(samples, "shmhub_peer_heartbeat_age_seconds", peer).has_value())
        << "series of peer " << peer_id << ":" << SeriesOfPeer(samples, peer_id)
        << "\nshmhubd stderr:\n"
        << daemon_->Stderr();
  }

  TempDir dir_;
  std::unique_ptr<SpawnedProcess> daemon_;
  std::string segment_;
  std::unique_ptr<client::HubClient> hub_;
  int metrics_port_ = 0;
};

TEST_F(MetricsProcessTest, TheExpositionPassesPromtoolCheckMetricsWithoutAnyWarning) {
  const v1::ReservePeerResponse reservation = Reserve();
  std::unique_ptr<SpawnedProcess> guest = StartGuest(reservation);
  AwaitHeartbeatSeries(reservation.peer_id());
  EXPECT_FALSE(hub_->ReleasePeer(reservation.peer_id(), reservation.epoch() + 1).ok());

  // Every family has samples now: per-peer gauges, counters, histograms.
  const std::string exposition_path = dir_.File("metrics.txt");
  std::ofstream(exposition_path) << Scrape();
  SpawnedProcess promtool(
      {"/bin/sh", "-c",
       absl::StrCat("exec ", kPromtool, " check metrics < '", exposition_path, "'")},
      dir_.File("promtool.err"));
  const std::string out = promtool.DrainStdout();
  EXPECT_EQ(promtool.Wait(), 0) << out << promtool.Stderr();
  EXPECT_EQ(out, "");
  EXPECT_EQ(promtool.Stderr(), "");
}

TEST_F(MetricsProcessTest, AFailedRpcIsCountedUnderItsStatusCode) {
  // A stale epoch: FAILED_PRECONDITION. Peer 99 of 2 slots: NOT_FOUND.
  const v1::ReservePeerResponse reservation = Reserve();
  const absl::Status stale =
      hub_->ReleasePeer(reservation.peer_id(), reservation.epoch() + 1).status();
  ASSERT_EQ(stale.code(), absl::StatusCode::kFailedPrecondition) << stale;
  const absl::Status missing = hub_->GetPeer(99).status();
  ASSERT_EQ(missing.code(), absl::StatusCode::kNotFound) << missing;
  ASSERT_TRUE(hub_->ReleasePeer(reservation.peer_id(), reservation.epoch()).ok());

  // The status is counted before it is sent, so one scrape suffices.
  const std::vector<Sample> samples = ParseExposition(Scrape());
  const Labels release = {{"grpc_service", "shmhub.v1.PeerHub"},
                          {"grpc_method", "ReleasePeer"},
                          {"grpc_type", "unary"}};
  Labels failed = release;
  failed["grpc_code"] = "FAILED_PRECONDITION";
  Labels ok = release;
  ok["grpc_code"] = "OK";
  EXPECT_EQ(ValueOf(samples, "grpc_server_handled_total", failed), 1.0);
  EXPECT_EQ(ValueOf(samples, "grpc_server_handled_total", ok), 1.0);
  EXPECT_EQ(ValueOf(samples, "grpc_server_started_total", release), 2.0);
  EXPECT_EQ(ValueOf(samples, "grpc_server_handling_seconds_count", release), 2.0);
  Labels get_failed = {{"grpc_service", "shmhub.v1.PeerHub"},
                       {"grpc_method", "GetPeer"},
                       {"grpc_type", "unary"},
                       {"grpc_code", "NOT_FOUND"}};
  EXPECT_EQ(ValueOf(samples, "grpc_server_handled_total", get_failed), 1.0);
}

TEST_F(MetricsProcessTest, TheSeriesOfARecoveredSlotAreGoneFromTheNextScrape) {
  const v1::ReservePeerResponse reservation = Reserve();
  const uint32_t peer_id = reservation.peer_id();
  std::unique_ptr<SpawnedProcess> guest = StartGuest(reservation);
  AwaitHeartbeatSeries(peer_id);

  guest->Signal(SIGKILL);
  ASSERT_EQ(guest->Wait(), 128 + SIGKILL);
  // GetPeer reads under the lock the recovery holds, so an Empty answer
  // means the recovery, and the metrics mirror it refreshes, are complete.
  const absl::Time deadline = absl::Now() + kProcessWaitLimit;
  v1::PeerState state = v1::PEER_STATE_ATTACHED;
  while (state != v1::PEER_STATE_EMPTY && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
    const auto peer = hub_->GetPeer(peer_id);
    ASSERT_TRUE(peer.ok()) << peer.status();
    state = peer->peer().state();
  }
  ASSERT_EQ(state, v1::PEER_STATE_EMPTY) << daemon_->Stderr();

  const std::vector<Sample> samples = ParseExposition(Scrape());
  EXPECT_EQ(SeriesOfPeer(samples, peer_id), "") << "left behind by the recovered slot";
  EXPECT_EQ(ValueOf(samples, "shmhub_peers", {{"state", "empty"}}), kMaxGuests);
  EXPECT_EQ(ValueOf(samples, "shmhub_crashes_total", {{"detector", "heartbeat"}}), 1.0);
  EXPECT_EQ(ValueOf(samples, "shmhub_events_total", {{"kind", "recovered"}}), 1.0);
  EXPECT_EQ(ValueOf(samples, "shmhub_crash_detection_seconds_count"), 1.0);
  EXPECT_EQ(ValueOf(samples, "shmhub_recovery_seconds_count"), 1.0);
}

}  // namespace
}  // namespace shmhub
