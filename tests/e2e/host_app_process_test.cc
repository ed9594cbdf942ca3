// The data-plane host application end to end: a real shmhubd on an
// ephemeral 127.0.0.1 port with its local socket and segment in a TempDir,
// real guests (examples/echo_guest, shmhub-guest) and real host
// applications (examples/echo_host, or this process through HostApp, or a
// silent one speaking the raw protocol), SIGKILLed for real. Events come
// from WatchEvents, metrics from /metrics. Every wait has a deadline; every
// process is killed and reaped when its test ends.
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/host/host_app.h"
#include "client/hub/event_watcher.h"
#include "client/hub/hub_client.h"
#include "client/link/ring_link.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"
#include "shm/host_control.h"
#include "shm/poll_fd.h"
#include "shmhub/v1/hub.pb.h"
#include "tests/testing/loopback_http.h"
#include "tests/testing/spawned_process.h"
#include "tests/testing/temp_dir.h"

namespace shmhub {
namespace {

using ::shmhub::testing::kProcessWaitLimit;
using ::shmhub::testing::SpawnedProcess;
using ::shmhub::testing::TempDir;
using client::HostApp;
using client::HostEvent;
using client::HostEventKind;
using client::ReceivedFrame;
using v1::EventKind;
using v1::PeerEvent;

// Every PeerEvent the daemon streams, in order.
class EventLog {
 public:
  void Add(const PeerEvent& event) {
    absl::MutexLock lock(&mu_);
    events_.push_back(event);
  }

  // The first event of `kind` (for `peer_id`; 0 matches hub-wide events)
  // once it has arrived; nullopt after the deadline.
  std::optional<PeerEvent> WaitFor(EventKind kind, uint32_t peer_id) {
    const absl::Time deadline = absl::Now() + kProcessWaitLimit;
    absl::MutexLock lock(&mu_);
    while (true) {
      for (const PeerEvent& event : events_) {
        if (event.kind() == kind && event.peer_id() == peer_id) return event;
      }
      const size_t seen = events_.size();
      auto grown = [this, seen]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
        return events_.size() > seen;
      };
      if (!mu_.AwaitWithDeadline(absl::Condition(&grown), deadline)) return std::nullopt;
    }
  }

  size_t Count(EventKind kind, uint32_t peer_id) const {
    absl::MutexLock lock(&mu_);
    size_t count = 0;
    for (const PeerEvent& event : events_) {
      if (event.kind() == kind && event.peer_id() == peer_id) ++count;
    }
    return count;
  }

  std::string Describe() const {
    absl::MutexLock lock(&mu_);
    std::string out;
    for (const PeerEvent& event : events_) {
      absl::StrAppend(&out, "\n  #", event.sequence(), " peer ", event.peer_id(), " epoch ",
                      event.epoch(), " ", v1::EventKind_Name(event.kind()), " ", event.reason());
    }
    return out;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<PeerEvent> events_ ABSL_GUARDED_BY(mu_);
};

// "attached peer_id=N epoch=E" (echo_guest, shmhub-guest) -> (N, E).
std::pair<uint32_t, uint32_t> Occupancy(const std::optional<std::string>& line) {
  unsigned peer_id = 0;
  unsigned epoch = 0;
  if (line.has_value()) {
    EXPECT_EQ(std::sscanf(line->c_str(), "attached peer_id=%u epoch=%u", &peer_id, &epoch), 2)
        << *line;
  }
  return {peer_id, epoch};
}

// The value of an unlabelled series in a /metrics body, if present.
std::optional<double> UnlabelledValue(absl::string_view body, absl::string_view name) {
  for (absl::string_view line : absl::StrSplit(body, '\n')) {
    if (!absl::ConsumePrefix(&line, name) || !absl::ConsumePrefix(&line, " ")) continue;
    double value = 0;
    if (absl::SimpleAtod(line, &value)) return value;
  }
  return std::nullopt;
}

// A host application that registers with the raw protocol and then never
// answers anything.
class SilentHost {
 public:
  explicit SilentHost(const std::string& socket_path) {
    connection_.Reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    struct sockaddr_un address {};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, socket_path.c_str(), sizeof(address.sun_path) - 1);
    EXPECT_EQ(::connect(connection_.get(), reinterpret_cast<const struct sockaddr*>(&address),
                        sizeof(address)),
              0)
        << std::strerror(errno);
    const auto request = shm::EncodeHostRequest();
    EXPECT_EQ(::send(connection_.get(), request.data(), request.size(), MSG_NOSIGNAL), 4);
  }
  // The next record's type, or nullopt.
  std::optional<shm::HostRecord> Next() {
    absl::StatusOr<shm::ReceivedHostRecord> next = reader_.ReadOneBefore(
        connection_.get(), shm::DeadlineAfter(std::chrono::milliseconds(
                               absl::ToInt64Milliseconds(kProcessWaitLimit))));
    EXPECT_TRUE(next.ok()) << next.status();
    if (!next.ok()) return std::nullopt;
    return next->record;
  }

 private:
  shm::UniqueFd connection_;
  shm::HostRecordReader reader_{shm::HostControlSender::kDaemon};
};

class HostAppProcessTest : public ::testing::Test {
 protected:
  // Starts shmhubd with the local socket; `extra` flags are appended.
  void StartDaemon(const std::vector<std::string>& extra) {
    std::vector<std::string> argv = {SHMHUBD_PATH,          "--listen=127.0.0.1:0",
                                     "--segment=" + segment_, "--socket=" + socket_,
                                     "--max_guests=4",       "--heartbeat_interval=20ms",
                                     "--crash_timeout=10s",  "--shutdown_grace=2s"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    daemon_ = std::make_unique<SpawnedProcess>(argv, dir_.File("shmhubd.err"));
    const std::optional<std::string> ready = daemon_->WaitForLine("shmhubd listening on ");
    ASSERT_TRUE(ready.has_value()) << "shmhubd did not start: " << daemon_->Stderr();
    absl::string_view rest = *ready;
    absl::ConsumePrefix(&rest, "shmhubd listening on ");
    channel_ = client::MakeHubChannel(std::string(rest.substr(0, rest.find(' '))));
    hub_ = std::make_unique<client::HubClient>(channel_);
    const size_t metrics_at = rest.find(" metrics=127.0.0.1:");
    if (metrics_at != absl::string_view::npos) {
      absl::string_view port = rest.substr(metrics_at + 19);
      ASSERT_TRUE(absl::SimpleAtoi(port.substr(0, port.find(' ')), &metrics_port_)) << *ready;
    }
    const auto info = hub_->GetSegmentInfo();
    ASSERT_TRUE(info.ok()) << info.status();
    info_ = *info;
    client::EventWatcherOptions options;
    options.resume_after_sequence = 0;
    options.hub_instance_id = info->hub_instance_id();
    options.initial_backoff = absl::Milliseconds(10);
    watcher_ = std::make_unique<client::EventWatcher>(
        channel_, options, [this](const v1::WatchEventsResponse& response) {
          if (response.has_event()) log_.Add(response.event());
        });
    watcher_->Start();
  }

  void TearDown() override {
    if (watcher_ != nullptr) watcher_->Stop();
  }

  std::unique_ptr<SpawnedProcess> Spawn(const std::vector<std::string>& argv,
                                        const std::string& name) {
    return std::make_unique<SpawnedProcess>(argv, dir_.File(name + ".err"));
  }

  std::optional<PeerEvent> Expect(EventKind kind, uint32_t peer_id) {
    std::optional<PeerEvent> event = log_.WaitFor(kind, peer_id);
    EXPECT_TRUE(event.has_value()) << "no " << v1::EventKind_Name(kind) << " for peer "
                                   << peer_id << "; events:" << log_.Describe()
                                   << "\nshmhubd stderr:\n" << daemon_->Stderr();
    return event;
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

  TempDir dir_;
  const std::string segment_ = dir_.File("hub.shm");
  const std::string socket_ = dir_.File("hub.sock");
  std::unique_ptr<SpawnedProcess> daemon_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<client::HubClient> hub_;
  v1::GetSegmentInfoResponse info_;
  int metrics_port_ = 0;
  EventLog log_;
  std::unique_ptr<client::EventWatcher> watcher_;
};

TEST_F(HostAppProcessTest, SecondHostApplicationIsRefusedUntilTheFirstIsGone) {
  StartDaemon({"--metrics_listen="});
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
  StartDaemon({"--metrics_listen="});
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
  StartDaemon({"--metrics_listen=", "--host_ack_timeout=10m"});
  absl::StatusOr<std::unique_ptr<HostApp>> app = HostApp::Register(socket_);
  ASSERT_TRUE(app.ok()) << app.status();
  // One payload per pool class (1024, 16384, 262144 bytes by default); the
  // guest then waits for echoes that never come.
  std::unique_ptr<SpawnedProcess> guest =
      Spawn({ECHO_GUEST_PATH, "--socket=" + socket_, "--rounds=1", "--sizes=900,12000,200000",
             "--timeout=10m"},
            "guest");
  const auto [peer_id, epoch] = Occupancy(guest->WaitForLine("attached "));
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
  EXPECT_EQ(log_.Count(v1::EVENT_KIND_RECOVERED, peer_id), 0u) << log_.Describe();
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
  EXPECT_EQ(log_.Count(v1::EVENT_KIND_HOST_UNRESPONSIVE, peer_id), 0u) << log_.Describe();
  EXPECT_EQ((*app)->abandoned_handshakes(), 0u);
}

TEST_F(HostAppProcessTest, SilentHostIsReportedAndRecoveryGoesAheadAtTheTimeout) {
  StartDaemon({"--metrics_listen=127.0.0.1:0", "--host_ack_timeout=300ms"});
  SilentHost host(socket_);
  std::optional<shm::HostRecord> registered = host.Next();
  ASSERT_TRUE(registered.has_value());
  ASSERT_EQ(registered->type, shm::HostRecordType::kRegistered);
  std::unique_ptr<SpawnedProcess> guest =
      Spawn({SHMHUB_GUEST_PATH, "--socket=" + socket_, "--heartbeat=false"}, "guest");
  const auto [peer_id, epoch] = Occupancy(guest->WaitForLine("attached "));
  std::optional<shm::HostRecord> attached = host.Next();
  ASSERT_TRUE(attached.has_value());
  EXPECT_EQ(*attached, shm::PeerAttachedRecord(peer_id, epoch, 2));

  guest->Signal(SIGKILL);
  std::optional<shm::HostRecord> recovering = host.Next();
  ASSERT_TRUE(recovering.has_value());
  EXPECT_EQ(recovering->type, shm::HostRecordType::kPeerRecovering);
  const std::optional<PeerEvent> crashed = Expect(v1::EVENT_KIND_CRASHED, peer_id);
  const std::optional<PeerEvent> unresponsive = Expect(v1::EVENT_KIND_HOST_UNRESPONSIVE, peer_id);
  const std::optional<PeerEvent> recovered = Expect(v1::EVENT_KIND_RECOVERED, peer_id);
  ASSERT_TRUE(crashed.has_value() && unresponsive.has_value() && recovered.has_value());
  EXPECT_LT(crashed->sequence(), unresponsive->sequence());
  EXPECT_LT(unresponsive->sequence(), recovered->sequence());
  EXPECT_EQ(unresponsive->epoch(), epoch);

  const absl::StatusOr<shmhub::testing::HttpResponse> metrics =
      shmhub::testing::LoopbackHttpGet(metrics_port_, "/metrics");
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_EQ(UnlabelledValue(metrics->body, "shmhub_host_ack_timeouts_total"),
            std::optional<double>(1))
      << metrics->body;
  EXPECT_EQ(UnlabelledValue(metrics->body, "shmhub_host_registered"), std::optional<double>(1));
}

TEST_F(HostAppProcessTest, KilledHostFailsItsGuestsPromptlyIsReportedAndANewOneCanRegister) {
  StartDaemon({"--metrics_listen="});
  std::unique_ptr<SpawnedProcess> host = Spawn({ECHO_HOST_PATH, "--socket=" + socket_}, "host1");
  ASSERT_TRUE(host->WaitForLine("echo_host registered").has_value()) << host->Stderr();
  // Runs until stopped; a call may wait 10 minutes: only a prompt failure
  // ends it within the test's wait.
  std::unique_ptr<SpawnedProcess> guest =
      Spawn({ECHO_GUEST_PATH, "--socket=" + socket_, "--rounds=0", "--timeout=10m"}, "guest1");
  const uint32_t peer_id = Occupancy(guest->WaitForLine("attached ")).first;
  ASSERT_TRUE(guest->WaitForLine("echoing ").has_value()) << guest->Stderr();

  host->Signal(SIGKILL);
  EXPECT_EQ(guest->Wait(), std::optional<int>(1)) << "the guest's link calls hung";
  EXPECT_TRUE(absl::StrContains(guest->Stderr(), "UNAVAILABLE")) << guest->Stderr();
  ASSERT_TRUE(Expect(v1::EVENT_KIND_HOST_DETACHED, 0).has_value());
  // The guest left in order once its link failed: no crash, no wait.
  ASSERT_TRUE(Expect(v1::EVENT_KIND_RECOVERED, peer_id).has_value());
  EXPECT_EQ(log_.Count(v1::EVENT_KIND_CRASHED, peer_id), 0u) << log_.Describe();
  EXPECT_EQ(log_.Count(v1::EVENT_KIND_HOST_UNRESPONSIVE, peer_id), 0u) << log_.Describe();

  std::unique_ptr<SpawnedProcess> next = Spawn({ECHO_HOST_PATH, "--socket=" + socket_}, "host2");
  ASSERT_TRUE(next->WaitForLine("echo_host registered").has_value()) << next->Stderr();
  std::unique_ptr<SpawnedProcess> again =
      Spawn({ECHO_GUEST_PATH, "--socket=" + socket_, "--rounds=5"}, "guest2");
  EXPECT_EQ(again->Wait(), std::optional<int>(0)) << again->Stderr();
}

}  // namespace
}  // namespace shmhub
