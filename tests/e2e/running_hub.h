// What the end-to-end tests share to drive a real shmhubd: starting it in a
// TempDir and reading its endpoints from its start line, logging every event
// it streams, reserving slots and starting real shmhub-guest processes.
//
// Header-only and for tests/e2e only: it names the binaries through the
// SHMHUBD_PATH and SHMHUB_GUEST_PATH definitions the e2e targets get
// (tests/CMakeLists.txt). Every wait is bounded (kProcessWaitLimit unless a
// caller passes less); failures are gtest failures, never aborts, and every
// process started here is killed and reaped with its SpawnedProcess.
#ifndef SHMHUB_TESTS_E2E_RUNNING_HUB_H_
#define SHMHUB_TESTS_E2E_RUNNING_HUB_H_

#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/hub/event_watcher.h"
#include "client/hub/hub_client.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"
#include "shmhub/v1/hub.pb.h"
#include "tests/testing/spawned_process.h"
#include "tests/testing/temp_dir.h"

namespace shmhub::testing {

// Every PeerEvent a watcher hands over, in stream order. Add() runs on the
// watcher's thread, the rest on the test's.
class EventLog {
 public:
  void Add(const v1::PeerEvent& event) {
    absl::MutexLock lock(&mu_);
    events_.push_back(event);
  }

  // The first event at index >= *from for `peer_id` (0: hub-wide events
  // such as HOST_ATTACHED) of `kind`; on success *from moves past it.
  // nullopt when `timeout` passes first.
  std::optional<v1::PeerEvent> WaitFor(uint32_t peer_id, v1::EventKind kind, size_t* from,
                                       absl::Duration timeout = kProcessWaitLimit) const {
    const absl::Time deadline = absl::Now() + timeout;
    absl::MutexLock lock(&mu_);
    while (true) {
      for (size_t i = *from; i < events_.size(); ++i) {
        if (events_[i].peer_id() == peer_id && events_[i].kind() == kind) {
          *from = i + 1;
          return events_[i];
        }
      }
      const size_t seen = events_.size();
      auto grown = [this, seen]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
        return events_.size() > seen;
      };
      if (!mu_.AwaitWithDeadline(absl::Condition(&grown), deadline)) return std::nullopt;
    }
  }

  // How many events for `peer_id` of `kind` have arrived so far.
  size_t Count(uint32_t peer_id, v1::EventKind kind) const {
    absl::MutexLock lock(&mu_);
    size_t count = 0;
    for (const v1::PeerEvent& event : events_) {
      if (event.peer_id() == peer_id && event.kind() == kind) ++count;
    }
    return count;
  }

  // One line per event, for failure messages.
  std::string Describe() const {
    absl::MutexLock lock(&mu_);
    std::string out;
    for (const v1::PeerEvent& event : events_) {
      absl::StrAppend(&out, "\n  #", event.sequence(), " peer ", event.peer_id(), " epoch ",
                      event.epoch(), " ", v1::EventKind_Name(event.kind()));
      if (!event.reason().empty()) absl::StrAppend(&out, " ", event.reason());
    }
    return out;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<v1::PeerEvent> events_ ABSL_GUARDED_BY(mu_);
};

// What shmhubd's start line announces:
//   shmhubd listening on HOST:PORT segment=PATH instance=ID socket=PATH metrics=HOST:PORT
// (socket= and metrics= empty when the daemon has none).
struct HubEndpoints {
  std::string grpc_address;
  std::string segment_path;
  std::string instance;
  std::string socket_path;
  std::string metrics_address;
  int metrics_port = 0;  // 0 without metrics
};

inline absl::StatusOr<HubEndpoints> ParseStartLine(absl::string_view line) {
  absl::string_view rest = line;
  if (!absl::ConsumePrefix(&rest, "shmhubd listening on ")) {
    return absl::InvalidArgumentError(absl::StrCat("not a start line: ", line));
  }
  const size_t space = rest.find(' ');
  HubEndpoints endpoints;
  endpoints.grpc_address = std::string(rest.substr(0, space));
  std::map<absl::string_view, absl::string_view> fields;
  if (space != absl::string_view::npos) {
    for (absl::string_view field : absl::StrSplit(rest.substr(space + 1), ' ')) {
      const std::pair<absl::string_view, absl::string_view> key_value =
          absl::StrSplit(field, absl::MaxSplits('=', 1));
      fields.insert(key_value);
    }
  }
  for (const auto& [key, value] : {std::pair{"segment", &endpoints.segment_path},
                                   std::pair{"instance", &endpoints.instance},
                                   std::pair{"socket", &endpoints.socket_path},
                                   std::pair{"metrics", &endpoints.metrics_address}}) {
    const auto it = fields.find(key);
    if (it == fields.end()) {
      return absl::InvalidArgumentError(absl::StrCat("start line lacks ", key, "=: ", line));
    }
    *value = std::string(it->second);
  }
  if (!endpoints.metrics_address.empty()) {
    const size_t colon = endpoints.metrics_address.rfind(':');
    if (colon == std::string::npos ||
        !absl::SimpleAtoi(absl::string_view(endpoints.metrics_address).substr(colon + 1),
                          &endpoints.metrics_port)) {
      return absl::InvalidArgumentError(absl::StrCat("metrics= has no port: ", line));
    }
  }
  return endpoints;
}

// How a test's shmhubd differs from the defaults every e2e daemon shares:
// segment <dir>/hub.shm, --shutdown_grace=2s and the fields below.
struct ShmhubdOptions {
  // Appended to the command line: --max_guests, liveness intervals, ...
  std::vector<std::string> flags;
  // --listen; port 0 is an ephemeral port, a test that restarts its daemon
  // passes the address the first one got.
  std::string listen = "127.0.0.1:0";
  // --socket=<dir>/hub.sock, or no local socket (--socket=).
  bool local_socket = true;
  // --metrics_listen=127.0.0.1:0, or no /metrics (--metrics_listen=).
  bool metrics = false;
  // The daemon's stderr, a file in the TempDir.
  std::string stderr_name = "shmhubd.err";
};

// A real shmhubd and the endpoints its start line announced.
struct RunningHub {
  std::unique_ptr<SpawnedProcess> process;
  HubEndpoints endpoints;
};

// Starts shmhubd with its files in `dir` and waits (kProcessWaitLimit) for
// its start line. Errors: UNAVAILABLE (with the daemon's stderr) when no
// start line comes, INVALID_ARGUMENT when it cannot be parsed.
inline absl::StatusOr<RunningHub> StartShmhubd(const TempDir& dir,
                                               const ShmhubdOptions& options = {}) {
  std::vector<std::string> argv = {
      SHMHUBD_PATH,
      "--listen=" + options.listen,
      "--segment=" + dir.File("hub.shm"),
      "--socket=" + (options.local_socket ? dir.File("hub.sock") : std::string()),
      std::string("--metrics_listen=") + (options.metrics ? "127.0.0.1:0" : ""),
      "--shutdown_grace=2s"};
  argv.insert(argv.end(), options.flags.begin(), options.flags.end());
  RunningHub hub;
  hub.process = std::make_unique<SpawnedProcess>(argv, dir.File(options.stderr_name));
  const std::optional<std::string> ready = hub.process->WaitForLine("shmhubd listening on ");
  if (!ready.has_value()) {
    return absl::UnavailableError(
        absl::StrCat("shmhubd did not start: ", hub.process->Stderr()));
  }
  absl::StatusOr<HubEndpoints> endpoints = ParseStartLine(*ready);
  if (!endpoints.ok()) return endpoints.status();
  hub.endpoints = *std::move(endpoints);
  return hub;
}

// A fixture for tests that drive one shmhubd and follow its events:
// StartWatchedHub() runs the daemon with its files in dir_, connects hub_
// and logs every event of the daemon's instance, from its first (none is
// missed), in log_. A fatal failure returns from StartWatchedHub() only: a
// test body calls it under ASSERT_NO_FATAL_FAILURE.
class WatchedHubTest : public ::testing::Test {
 protected:
  void StartWatchedHub(const ShmhubdOptions& options) {
    absl::StatusOr<RunningHub> daemon = StartShmhubd(dir_, options);
    ASSERT_TRUE(daemon.ok()) << daemon.status();
    daemon_ = std::move(daemon->process);
    endpoints_ = std::move(daemon->endpoints);
    hub_ = std::make_unique<client::HubClient>(endpoints_.grpc_address);
    client::EventWatcherOptions watch;
    watch.resume_after_sequence = 0;
    watch.hub_instance_id = endpoints_.instance;
    watch.initial_backoff = absl::Milliseconds(10);
    watcher_ = std::make_unique<client::EventWatcher>(
        hub_->channel(), watch, [this](const v1::WatchEventsResponse& response) {
          if (response.has_event()) log_.Add(response.event());
        });
    watcher_->Start();
  }

  void TearDown() override {
    if (watcher_ != nullptr) watcher_->Stop();
  }

  // log_.WaitFor(peer_id, kind, from); when the event does not come, the
  // test fails (non-fatally) with the events seen and shmhubd's stderr.
  std::optional<v1::PeerEvent> ExpectEvent(uint32_t peer_id, v1::EventKind kind, size_t* from) {
    std::optional<v1::PeerEvent> event = log_.WaitFor(peer_id, kind, from);
    EXPECT_TRUE(event.has_value()) << "no " << v1::EventKind_Name(kind) << " for peer "
                                   << peer_id << "; events:" << log_.Describe()
                                   << "\nshmhubd stderr:\n" << daemon_->Stderr();
    return event;
  }

  TempDir dir_;
  std::unique_ptr<SpawnedProcess> daemon_;
  HubEndpoints endpoints_;
  std::unique_ptr<client::HubClient> hub_;
  EventLog log_;
  // Declared after log_, which its callback fills: destroyed (stopped) first.
  std::unique_ptr<client::EventWatcher> watcher_;
};

// ReservePeer for `owner`, with `lease_ttl` when given. A failed call fails
// the test (non-fatally) and yields an empty response.
inline v1::ReservePeerResponse ReserveSlot(client::HubClient& hub, const std::string& owner,
                                           std::optional<absl::Duration> lease_ttl = std::nullopt) {
  v1::ReservePeerRequest request;
  request.set_owner(owner);
  if (lease_ttl.has_value()) {
    *request.mutable_lease_ttl() = google::protobuf::util::TimeUtil::NanosecondsToDuration(
        absl::ToInt64Nanoseconds(*lease_ttl));
  }
  const absl::StatusOr<v1::ReservePeerResponse> reply = hub.ReservePeer(request);
  EXPECT_TRUE(reply.ok()) << reply.status();
  return reply.value_or(v1::ReservePeerResponse());
}

// The slot a guest names in its "attached peer_id=N epoch=E ..." line
// (shmhub-guest, echo_guest).
struct GuestSlot {
  uint32_t peer_id = 0;
  uint32_t epoch = 0;
};

// The slot in an "attached " line; a missing or malformed line fails the
// test (non-fatally) and yields {0, 0}.
inline GuestSlot ParseAttachedLine(const std::optional<std::string>& line) {
  unsigned peer_id = 0;
  unsigned epoch = 0;
  EXPECT_TRUE(line.has_value()) << "no attached line";
  if (line.has_value()) {
    EXPECT_EQ(std::sscanf(line->c_str(), "attached peer_id=%u epoch=%u", &peer_id, &epoch), 2)
        << *line;
  }
  return {peer_id, epoch};
}

// shmhub-guest with `flags`, its stderr in dir/`stderr_name`, once it says
// it is attached (the test fails, non-fatally, when it does not). `slot`,
// when given, receives the slot it attached to.
inline std::unique_ptr<SpawnedProcess> StartShmhubGuest(const TempDir& dir,
                                                        const std::vector<std::string>& flags,
                                                        const std::string& stderr_name,
                                                        GuestSlot* slot = nullptr) {
  std::vector<std::string> argv = {SHMHUB_GUEST_PATH};
  argv.insert(argv.end(), flags.begin(), flags.end());
  auto guest = std::make_unique<SpawnedProcess>(argv, dir.File(stderr_name));
  const std::optional<std::string> attached = guest->WaitForLine("attached ");
  EXPECT_TRUE(attached.has_value()) << guest->Stderr();
  if (slot != nullptr && attached.has_value()) *slot = ParseAttachedLine(attached);
  return guest;
}

// shmhub-guest claiming `reservation` in `segment_path` and heartbeating
// every 20ms, once attached.
inline std::unique_ptr<SpawnedProcess> StartClaimingGuest(
    const TempDir& dir, const std::string& segment_path,
    const v1::ReservePeerResponse& reservation, const std::string& stderr_name) {
  return StartShmhubGuest(dir,
                          {"--segment=" + segment_path,
                           absl::StrCat("--peer_id=", reservation.peer_id()),
                           absl::StrCat("--epoch=", reservation.epoch()),
                           "--heartbeat_interval=20ms"},
                          stderr_name);
}

}  // namespace shmhub::testing

#endif  // SHMHUB_TESTS_E2E_RUNNING_HUB_H_
