// The data-plane host application end to end: a real shmhubd on an
// ephemeral 127.0.0.1 port with its local socket and segment in a TempDir,
// real guests (examples/echo_guest, shmhub-guest) and real host
// applications (examples/echo_host, or this process through HostApp, or a
// silent one speaking the raw protocol), SIGKILLed for real. Events come
// from WatchEvents, metrics from /metrics. Every wait has a deadline; every
// process is killed and reaped when its test ends.
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/host/host_app.h"
#include "client/hub/hub_client.h"
#include "client/link/ring_link.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"
#include "shm/host_control.h"
#include "shmhub/v1/hub.pb.h"
#include "tests/e2e/running_hub.h"
#include "tests/server/local_socket_clients.h"
#include "tests/testing/loopback_http.h"
#include "tests/testing/spawned_process.h"
#include "tests/testing/temp_dir.h"

namespace shmhub {
namespace {

using ::shmhub::server::testing::RawHostClient;
using ::shmhub::testing::kProcessWaitLimit;
using ::shmhub::testing::ParseAttachedLine;
using ::shmhub::testing::ShmhubdOptions;
using ::shmhub::testing::SpawnedProcess;
using ::shmhub::testing::WatchedHubTest;
using client::HostApp;
using client::HostEvent;
using client::HostEventKind;
using client::ReceivedFrame;
using v1::EventKind;
using v1::PeerEvent;

// The value of an unlabelled series in a /metrics body, if present.
std::optional<double> UnlabelledValue(absl::string_view body, absl::string_view name) {
  for (absl::string_view line : absl::StrSplit(body, '\n')) {
    if (!absl::ConsumePrefix(&line, name) || !absl::ConsumePrefix(&line, " ")) continue;
    double value = 0;
    if (absl::SimpleAtod(line, &value)) return value;
  }
  return std::nullopt;
}

class HostAppProcessTest : public WatchedHubTest {
 protected:
  // Starts shmhubd with the local socket, and /metrics when `metrics`;
  // `extra` flags are appended.
  void StartDaemon(bool metrics, const std::vector<std::string>& extra = {}) {
    ShmhubdOptions options{
        .flags = {"--max_guests=4", "--heartbeat_interval=20ms", "--crash_timeout=10s"},
        .metrics = metrics};
    options.flags.insert(options.flags.end(), extra.begin(), extra.end());
    StartWatchedHub(options);
    socket_ = endpoints_.socket_path;
  }

  std::unique_ptr<SpawnedProcess> Spawn(const std::vector<std::string>& argv,
                                        const std::string& name) {
    return std::make_unique<SpawnedProcess>(argv, dir_.File(name + ".err"));
  }

  // The first event of `kind` for `peer_id` since the daemon started.
  std::optional<PeerEvent> Expect(EventKind kind, uint32_t peer_id) {
    size_t from = 0;
    return ExpectEvent(peer_id, kind, &from);
  }

  v1::PeerState StateOf(uint32_t peer_id) {
    const auto peer = hub_->GetPeer(peer_id);
    EXPECT_TRUE(peer.ok()) << peer.status();
    return peer.ok() ? peer->peer().state() : v1::PEER_STATE_UNSPECIFIED;
  }

  // The next HostApp event, which must be of `kind`.
  std::optional<HostEvent> ExpectHostEvent(HostApp& app, HostEventKind kind) {
    std::optional<HostEvent> event = app.NextEvent(absl::Now() + kProcessWaitLimit);
    EXPECT_TRUE(event.has_value()) << "no host application event";
    if (!event.has_value() || event->kind != kind) {
      ADD_FAILURE() << "host application event of another kind";
      return std::nullopt;
    }
    return event;
  }

  std::string socket_;
};

TEST_F(HostAppProcessTest, SecondHostApplicationIsRefusedUntilTheFirstIsGone) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon(/*metrics=*/false));
  std::unique_ptr<SpawnedProcess> first = Spawn({ECHO_HOST_PATH, "--socket=" + socket_}, "host1");
  ASSERT_TRUE(first->WaitForLine("echo_host registered").has_value()) << first->Stderr();
  Expect(v1::EVENT_KIND_HOST_ATTACHED, 0);

  std::unique_ptr<SpawnedProcess> second = Spawn({ECHO_HOST_PATH, "--socket=" + socket_}, "host2");
  EXPECT_EQ(second->Wait(), std::optional<int>(1)) << second->Stderr();
  EXPECT_TRUE(absl::StrContains(second->Stderr(), "ALREADY_EXISTS")) << second->Stderr();
  absl::StatusOr<std::unique_ptr<HostApp>> refused = HostApp::Register(socket_);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kAlreadyExists) << refused.status();

  first->Signal(SIGTERM);
  EXPECT_EQ(first->Wait(), std::optional<int>(0)) << first->Stderr();
  Expect(v1::EVENT_KIND_HOST_DETACHED, 0);
  absl::StatusOr<std::unique_ptr<HostApp>> next = HostApp::Register(socket_);
  EXPECT_TRUE(next.ok()) << next.status();
}

TEST_F(HostAppProcessTest, EchoHostAndEchoGuestRoundTripEveryTier) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon(/*metrics=*/false));
  std::unique_ptr<SpawnedProcess> host = Spawn({ECHO_HOST_PATH, "--socket=" + socket_}, "host");
  ASSERT_TRUE(host->WaitForLine("echo_host registered").has_value()) << host->Stderr();
  // 16 B inline, 900 B and 200000 B in pool slots, 600000 B in a mapping.
  std::unique_ptr<SpawnedProcess> guest =
      Spawn({ECHO_GUEST_PATH, "--socket=" + socket_, "--rounds=50", "--sizes=16,900,200000,600000"},
            "guest");
  EXPECT_EQ(guest->Wait(), std::optional<int>(0)) << guest->Stderr();
  EXPECT_TRUE(guest->WaitForLine("ok rounds=50 frames=200").has_value()) << guest->Stderr();
  const std::optional<std::string> departing = host->WaitForLine("departing ");
  ASSERT_TRUE(departing.has_value()) << host->Stderr();
  EXPECT_TRUE(absl::StrContains(*departing, "reason=left echoed=200")) << *departing;
}

TEST_F(HostAppProcessTest, KilledGuestIsRecoveredOnlyAfterTheHostReleasesItsViews) {
  // A timeout no test run reaches: only the acknowledgement can end the wait.
  ASSERT_NO_FATAL_FAILURE(StartDaemon(/*metrics=*/false, {"--host_ack_timeout=10m"}));
  absl::StatusOr<std::unique_ptr<HostApp>> app = HostApp::Register(socket_);
  ASSERT_TRUE(app.ok()) << app.status();
  // One payload per pool class (1024, 16384, 262144 bytes by default); the
  // guest then waits for echoes that never come.
  std::unique_ptr<SpawnedProcess> guest =
      Spawn({ECHO_GUEST_PATH, "--socket=" + socket_, "--rounds=1", "--sizes=900,12000,200000",
             "--timeout=10m"},
            "guest");
  const auto [peer_id, epoch] = ParseAttachedLine(guest->WaitForLine("attached "));
  std::optional<HostEvent> attached = ExpectHostEvent(**app, HostEventKind::kPeerAttached);
  ASSERT_TRUE(attached.has_value());
  ASSERT_EQ(attached->peer_id, peer_id);

  std::vector<ReceivedFrame> views;
  std::vector<std::vector<uint8_t>> copies;
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<ReceivedFrame> view = attached->link->Receive(absl::Now() + kProcessWaitLimit);
    ASSERT_TRUE(view.ok()) << view.status();
    copies.emplace_back(view->data().begin(), view->data().end());
    views.push_back(*std::move(view));
  }
  shm::Segment& segment = (*app)->segment();
  const std::vector<shm::SlotClassLayout>& classes = segment.layout().classes;
  ASSERT_EQ(classes.size(), 3u);
  for (uint32_t k = 0; k < classes.size(); ++k) {
    EXPECT_EQ(*segment.pool().FreeCount(k), classes[k].config.slot_count - 1)
        << "class " << k << " should lend one slot to the guest's frame";
  }

  guest->Signal(SIGKILL);
  ASSERT_TRUE(Expect(v1::EVENT_KIND_CRASHED, peer_id).has_value());
  std::optional<HostEvent> departing = ExpectHostEvent(**app, HostEventKind::kPeerDeparting);
  ASSERT_TRUE(departing.has_value());
  EXPECT_EQ(departing->epoch, epoch);
  EXPECT_EQ(departing->departure, shm::PeerDeparture::kCrashed);
  // CRASHED is out, and with no host application the same step would have
  // recovered the slot: it is still Goodbye, the guest's slots still lent,
  // and what the views show is what the guest sent.
  EXPECT_EQ(StateOf(peer_id), v1::PEER_STATE_GOODBYE);
  EXPECT_EQ(log_.Count(peer_id, v1::EVENT_KIND_RECOVERED), 0u) << log_.Describe();
  for (uint32_t k = 0; k < classes.size(); ++k) {
    EXPECT_EQ(*segment.pool().FreeCount(k), classes[k].config.slot_count - 1) << "class " << k;
  }
  for (size_t i = 0; i < views.size(); ++i) {
    EXPECT_TRUE(std::equal(views[i].data().begin(), views[i].data().end(), copies[i].begin(),
                           copies[i].end()))
        << "view " << i << " changed under the host application";
  }

  const absl::Time released_at = absl::Now();
  views.clear();
  const std::optional<PeerEvent> recovered = Expect(v1::EVENT_KIND_RECOVERED, peer_id);
  ASSERT_TRUE(recovered.has_value());
  EXPECT_GE(absl::FromUnixNanos(
                google::protobuf::util::TimeUtil::TimestampToNanoseconds(recovered->time())),
            released_at)
      << "recovered before the host released its views";
  EXPECT_EQ(recovered->recovery().slots_reclaimed_by_owner(), 0u)
      << "the host's release already freed the guest's slots";
  for (uint32_t k = 0; k < classes.size(); ++k) {
    EXPECT_EQ(*segment.pool().FreeCount(k), classes[k].config.slot_count) << "class " << k;
  }
  EXPECT_EQ(log_.Count(peer_id, v1::EVENT_KIND_HOST_UNRESPONSIVE), 0u) << log_.Describe();
  EXPECT_EQ((*app)->abandoned_handshakes(), 0u);
}

TEST_F(HostAppProcessTest, SilentHostIsReportedAndRecoveryGoesAheadAtTheTimeout) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon(/*metrics=*/true, {"--host_ack_timeout=300ms"}));
  RawHostClient host(socket_);  // registers, then never answers
  const std::chrono::milliseconds kHostRecordWait = absl::ToChronoMilliseconds(kProcessWaitLimit);
  ASSERT_TRUE(host.Expect(shm::HostRecordType::kRegistered, kHostRecordWait).has_value());
  std::unique_ptr<SpawnedProcess> guest =
      Spawn({SHMHUB_GUEST_PATH, "--socket=" + socket_, "--heartbeat=false"}, "guest");
  const auto [peer_id, epoch] = ParseAttachedLine(guest->WaitForLine("attached "));
  std::optional<shm::ReceivedHostRecord> attached =
      host.Expect(shm::HostRecordType::kPeerAttached, kHostRecordWait);
  ASSERT_TRUE(attached.has_value());
  EXPECT_EQ(attached->record, shm::PeerAttachedRecord({peer_id, epoch}, 2));

  guest->Signal(SIGKILL);
  ASSERT_TRUE(host.Expect(shm::HostRecordType::kPeerRecovering, kHostRecordWait).has_value());
  const std::optional<PeerEvent> crashed = Expect(v1::EVENT_KIND_CRASHED, peer_id);
  const std::optional<PeerEvent> unresponsive = Expect(v1::EVENT_KIND_HOST_UNRESPONSIVE, peer_id);
  const std::optional<PeerEvent> recovered = Expect(v1::EVENT_KIND_RECOVERED, peer_id);
  ASSERT_TRUE(crashed.has_value() && unresponsive.has_value() && recovered.has_value());
  EXPECT_LT(crashed->sequence(), unresponsive->sequence());
  EXPECT_LT(unresponsive->sequence(), recovered->sequence());
  EXPECT_EQ(unresponsive->epoch(), epoch);

  const absl::StatusOr<shmhub::testing::HttpResponse> metrics =
      shmhub::testing::LoopbackHttpGet(endpoints_.metrics_port, "/metrics");
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_EQ(UnlabelledValue(metrics->body, "shmhub_host_ack_timeouts_total"),
            std::optional<double>(1))
      << metrics->body;
  EXPECT_EQ(UnlabelledValue(metrics->body, "shmhub_host_registered"), std::optional<double>(1));
}

TEST_F(HostAppProcessTest, KilledHostFailsItsGuestsPromptlyIsReportedAndANewOneCanRegister) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon(/*metrics=*/false));
  std::unique_ptr<SpawnedProcess> host = Spawn({ECHO_HOST_PATH, "--socket=" + socket_}, "host1");
  ASSERT_TRUE(host->WaitForLine("echo_host registered").has_value()) << host->Stderr();
  // Runs until stopped; a call may wait 10 minutes: only a prompt failure
  // ends it within the test's wait.
  std::unique_ptr<SpawnedProcess> guest =
      Spawn({ECHO_GUEST_PATH, "--socket=" + socket_, "--rounds=0", "--timeout=10m"}, "guest1");
  const uint32_t peer_id = ParseAttachedLine(guest->WaitForLine("attached ")).peer_id;
  ASSERT_TRUE(guest->WaitForLine("echoing ").has_value()) << guest->Stderr();

  host->Signal(SIGKILL);
  EXPECT_EQ(guest->Wait(), std::optional<int>(1)) << "the guest's link calls hung";
  EXPECT_TRUE(absl::StrContains(guest->Stderr(), "UNAVAILABLE")) << guest->Stderr();
  ASSERT_TRUE(Expect(v1::EVENT_KIND_HOST_DETACHED, 0).has_value());
  // The guest left in order once its link failed: no crash, no wait.
  ASSERT_TRUE(Expect(v1::EVENT_KIND_RECOVERED, peer_id).has_value());
  EXPECT_EQ(log_.Count(peer_id, v1::EVENT_KIND_CRASHED), 0u) << log_.Describe();
  EXPECT_EQ(log_.Count(peer_id, v1::EVENT_KIND_HOST_UNRESPONSIVE), 0u) << log_.Describe();

  std::unique_ptr<SpawnedProcess> next = Spawn({ECHO_HOST_PATH, "--socket=" + socket_}, "host2");
  ASSERT_TRUE(next->WaitForLine("echo_host registered").has_value()) << next->Stderr();
  std::unique_ptr<SpawnedProcess> again =
      Spawn({ECHO_GUEST_PATH, "--socket=" + socket_, "--rounds=5"}, "guest2");
  EXPECT_EQ(again->Wait(), std::optional<int>(0)) << again->Stderr();
}

}  // namespace
}  // namespace shmhub
