// shmhubctl and shmhub-guest as people and scripts use them: real processes
// against a real shmhubd on an ephemeral 127.0.0.1 port, with its segment in
// a TempDir. Each test starts its own daemon; every wait has a deadline and
// every process is killed and reaped when the test ends.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "tests/e2e/running_hub.h"
#include "tests/testing/spawned_process.h"
#include "tests/testing/temp_dir.h"


namespace shmhub {
namespace {

using ::google::protobuf::Struct;
using ::shmhub::testing::RunningHub;
using ::shmhub::testing::SpawnedProcess;
using ::shmhub::testing::StartShmhubd;
using ::shmhub::testing::StartShmhubGuest;
using ::shmhub::testing::TempDir;

constexpr absl::Duration kWaitLimit = absl::Seconds(20);


struct CtlResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

Struct ParseJson(const std::string& line) {
  Struct parsed;
  const auto status = google::protobuf::util::JsonStringToMessage(line, &parsed);
  EXPECT_TRUE(status.ok()) << status.ToString() << " in: " << line;
  return parsed;
}

std::string Str(const Struct& object, const std::string& field) {
  const auto it = object.fields().find(field);
  return it == object.fields().end() ? "" : it->second.string_value();
}

double Num(const Struct& object, const std::string& field) {
  const auto it = object.fields().find(field);
  return it == object.fields().end() ? -1 : it->second.number_value();
}

class ShmhubctlProcessTest : public ::testing::Test {
 protected:
  void SetUp() override { StartDaemon(); }

  // `shmhubctl watch` sees a reservation made, then the daemon's goodbye
  // stop (SIGTERM on the default --stop_mode); *watch is left following it.
  void WatchAReservationThroughAGoodbyeStop(std::unique_ptr<SpawnedProcess>* watch) {
    *watch = StartCtl({"watch", "--snapshot"});
    ASSERT_TRUE((*watch)->WaitForLine("snapshot ").has_value()) << (*watch)->Stderr();
    Reserve();
    ASSERT_TRUE((*watch)->WaitForLine("RESERVED").has_value()) << (*watch)->Stderr();
    daemon_->Signal(SIGTERM);
    ASSERT_EQ(daemon_->Wait(), 0) << daemon_->Stderr();
    ASSERT_TRUE((*watch)->WaitForLine("HOST_SHUTDOWN").has_value());
  }

  // Starts shmhubd on `listen` and waits for its "listening on" line.
  void StartDaemon(const std::string& listen = "127.0.0.1:0") {
    absl::StatusOr<RunningHub> daemon = StartShmhubd(
        dir_, {.flags = {"--max_guests=4", "--heartbeat_interval=20ms", "--crash_timeout=300ms",
                         "--watch_progress_interval=200ms"},
               .listen = listen,
               .stderr_name = absl::StrCat("shmhubd", ++daemons_, ".err")});
    ASSERT_TRUE(daemon.ok()) << daemon.status();
    daemon_ = std::move(daemon->process);
    segment_ = daemon->endpoints.segment_path;
    hub_ = daemon->endpoints.grpc_address;
  }

  // Runs shmhubctl --hub=<daemon> ARGS to completion.
  CtlResult Ctl(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {SHMHUBCTL_PATH, "--hub=" + hub_};
    argv.insert(argv.end(), args.begin(), args.end());
    SpawnedProcess ctl(argv, dir_.File(absl::StrCat("ctl", ++ctl_runs_, ".err")));
    CtlResult result;
    result.out = ctl.DrainStdout();
    const std::optional<int> code = ctl.Wait();
    EXPECT_TRUE(code.has_value()) << "shmhubctl did not finish";
    result.exit_code = code.value_or(-1);
    result.err = ctl.Stderr();
    return result;
  }

  std::unique_ptr<SpawnedProcess> StartCtl(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {SHMHUBCTL_PATH, "--hub=" + hub_};
    argv.insert(argv.end(), args.begin(), args.end());
    return std::make_unique<SpawnedProcess>(argv, dir_.File(absl::StrCat("ctl", ++ctl_runs_, ".err")));
  }

  std::unique_ptr<SpawnedProcess> StartGuest(std::vector<std::string> flags) {
    flags.insert(flags.begin(), "--segment=" + segment_);
    return StartShmhubGuest(dir_, flags, absl::StrCat("guest", ++guests_, ".err"));
  }

  struct Reserved {
    uint32_t peer_id = 0;
    uint32_t epoch = 0;
  };
  Reserved Reserve() {
    const CtlResult run = Ctl({"--json", "reserve", "--owner=e2e", "--label=suite=ctl"});
    EXPECT_EQ(run.exit_code, 0) << run.err;
    const Struct reply = ParseJson(std::string(absl::StripAsciiWhitespace(run.out)));
    return {static_cast<uint32_t>(Num(reply, "peer_id")), static_cast<uint32_t>(Num(reply, "epoch"))};
  }

  // Polls `get --json PEER` until its state is `state`.
  bool EventuallyInState(uint32_t peer_id, const std::string& state) {
    const absl::Time deadline = absl::Now() + kWaitLimit;
    while (absl::Now() < deadline) {
      const CtlResult run = Ctl({"--json", "get", absl::StrCat(peer_id)});
      if (run.exit_code == 0 &&
          Str(ParseJson(std::string(absl::StripAsciiWhitespace(run.out))), "state") == state) {
        return true;
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
    return false;
  }

  TempDir dir_;
  std::unique_ptr<SpawnedProcess> daemon_;
  std::string segment_;
  std::string hub_;
  int daemons_ = 0;
  int ctl_runs_ = 0;
  int guests_ = 0;
};

TEST_F(ShmhubctlProcessTest, HealthAndInfoDescribeTheRunningDaemon) {
  const CtlResult health = Ctl({"health"});
  EXPECT_EQ(health.exit_code, 0) << health.err;
  EXPECT_EQ(health.out, "SERVING\n");

  const CtlResult info = Ctl({"--json", "info"});
  ASSERT_EQ(info.exit_code, 0) << info.err;
  const Struct reply = ParseJson(std::string(absl::StripAsciiWhitespace(info.out)));
  EXPECT_EQ(Str(reply, "segment_path"), segment_);
  EXPECT_EQ(Num(reply, "max_guests"), 4);
  EXPECT_EQ(Str(reply, "heartbeat_interval"), "0.020s");
  EXPECT_FALSE(Str(reply, "hub_instance_id").empty());
}

TEST_F(ShmhubctlProcessTest, ReservedSlotIsClaimedByTheGuestAndFreedAfterItsGoodbye) {
  const Reserved reserved = Reserve();
  ASSERT_GE(reserved.peer_id, 1u);
  std::unique_ptr<SpawnedProcess> guest =
      StartGuest({absl::StrCat("--peer_id=", reserved.peer_id),
                  absl::StrCat("--epoch=", reserved.epoch), "--heartbeat_interval=20ms"});

  ASSERT_TRUE(EventuallyInState(reserved.peer_id, "PEER_STATE_ATTACHED"));
  const CtlResult list = Ctl({"list"});
  EXPECT_EQ(list.exit_code, 0) << list.err;
  EXPECT_TRUE(absl::StrContains(list.out, "ATTACHED")) << list.out;
  EXPECT_TRUE(absl::StrContains(list.out, "suite=ctl")) << list.out;

  guest->Signal(SIGTERM);
  EXPECT_EQ(guest->Wait(), 0) << guest->Stderr();
  EXPECT_TRUE(guest->WaitForLine("goodbye ").has_value());
  EXPECT_TRUE(EventuallyInState(reserved.peer_id, "PEER_STATE_EMPTY"));
}

TEST_F(ShmhubctlProcessTest, WatchPrintsTheCrashOfAKilledGuestThenItsRecovery) {
  std::unique_ptr<SpawnedProcess> watch = StartCtl({"--json", "watch"});
  // The watch is open once the daemon answers with progress (idle stream).
  ASSERT_TRUE(watch->WaitForLine("\"progress\"").has_value()) << watch->Stderr();
  const Reserved reserved = Reserve();
  std::unique_ptr<SpawnedProcess> guest =
      StartGuest({absl::StrCat("--peer_id=", reserved.peer_id),
                  absl::StrCat("--epoch=", reserved.epoch), "--heartbeat_interval=20ms"});
  ASSERT_TRUE(watch->WaitForLine("EVENT_KIND_ATTACHED").has_value());

  guest->Signal(SIGKILL);

  const std::optional<std::string> crashed = watch->WaitForLine("EVENT_KIND_CRASHED");
  ASSERT_TRUE(crashed.has_value()) << watch->Stderr();
  EXPECT_TRUE(absl::StrContains(*crashed, "DETECTOR_HEARTBEAT")) << *crashed;
  const Struct event = ParseJson(*crashed).fields().at("event").struct_value();
  EXPECT_EQ(Num(event, "peer_id"), reserved.peer_id);
  EXPECT_EQ(Num(event, "epoch"), reserved.epoch);
  EXPECT_TRUE(watch->WaitForLine("EVENT_KIND_RECOVERED").has_value());
  watch->Signal(SIGINT);
  EXPECT_EQ(watch->Wait(), 0) << watch->Stderr();
}

TEST_F(ShmhubctlProcessTest, ReleaseWithAStaleEpochExitsOneAndChangesNothing) {
  const Reserved reserved = Reserve();

  const CtlResult stale = Ctl({"release", absl::StrCat(reserved.peer_id),
                               absl::StrCat(reserved.epoch + 1)});

  EXPECT_EQ(stale.exit_code, 1);
  EXPECT_TRUE(absl::StartsWith(stale.err, "shmhubctl: FAILED_PRECONDITION: ")) << stale.err;
  EXPECT_TRUE(EventuallyInState(reserved.peer_id, "PEER_STATE_RESERVED"));
  const CtlResult released =
      Ctl({"release", absl::StrCat(reserved.peer_id), absl::StrCat(reserved.epoch)});
  EXPECT_EQ(released.exit_code, 0) << released.err;
  EXPECT_TRUE(EventuallyInState(reserved.peer_id, "PEER_STATE_EMPTY"));
}

TEST_F(ShmhubctlProcessTest, InspectReadsTheLiveSegmentWithoutAskingTheDaemon) {
  std::unique_ptr<SpawnedProcess> guest = StartGuest({"--heartbeat_interval=20ms"});

  const CtlResult inspect = Ctl({"--json", "inspect", segment_});

  ASSERT_EQ(inspect.exit_code, 0) << inspect.err;
  bool saw_attached = false;
  for (absl::string_view line : absl::StrSplit(inspect.out, '\n', absl::SkipEmpty())) {
    const Struct object = ParseJson(std::string(line));
    if (object.fields().contains("peer")) {
      saw_attached |=
          Str(object.fields().at("peer").struct_value(), "state") == "PEER_STATE_ATTACHED";
    }
  }
  EXPECT_TRUE(saw_attached) << inspect.out;
}

TEST_F(ShmhubctlProcessTest, DaemonShutdownEndsWatchAndGuestInOrder) {
  std::unique_ptr<SpawnedProcess> watch = StartCtl({"watch", "--snapshot", "--exit_on_shutdown"});
  std::unique_ptr<SpawnedProcess> guest = StartGuest({"--heartbeat_interval=20ms"});
  ASSERT_TRUE(watch->WaitForLine("ATTACHED").has_value()) << watch->Stderr();

  daemon_->Signal(SIGTERM);

  EXPECT_TRUE(watch->WaitForLine("HOST_SHUTDOWN").has_value()) << watch->Stderr();
  EXPECT_EQ(watch->Wait(), 0) << watch->Stderr();
  EXPECT_TRUE(guest->WaitForLine("host_goodbye ").has_value()) << guest->Stderr();
  EXPECT_EQ(guest->Wait(), 0) << guest->Stderr();
  EXPECT_EQ(daemon_->Wait(), 0) << daemon_->Stderr();
  EXPECT_NE(access(segment_.c_str(), F_OK), 0) << "segment file left behind";
}

TEST_F(ShmhubctlProcessTest, WatchResumesWithoutResyncWhenTheDaemonComesBackWithItsState) {
  std::unique_ptr<SpawnedProcess> watch;
  ASSERT_NO_FATAL_FAILURE(WatchAReservationThroughAGoodbyeStop(&watch));

  // The same instance continues (its state log is beside the segment): the
  // watch resumes after its last event and hears the reservation end with
  // the goodbye'd segment, with no RESYNC.
  StartDaemon(hub_);

  std::optional<std::string> released = watch->WaitForLine("RELEASED");
  ASSERT_TRUE(released.has_value()) << watch->Stderr();
  EXPECT_TRUE(absl::StrContains(*released, "the segment was replaced")) << *released;
  watch->Signal(SIGTERM);
  EXPECT_EQ(watch->Wait(), 0) << watch->Stderr();
  for (const std::string& line : watch->lines()) {
    EXPECT_FALSE(absl::StrContains(line, "RESYNC")) << line;
  }
}

TEST_F(ShmhubctlProcessTest, WatchResyncsWhenTheDaemonComesBackWithoutItsState) {
  std::unique_ptr<SpawnedProcess> watch;
  ASSERT_NO_FATAL_FAILURE(WatchAReservationThroughAGoodbyeStop(&watch));
  ASSERT_EQ(::unlink((segment_ + ".state").c_str()), 0) << "no state log beside the segment";

  StartDaemon(hub_);

  EXPECT_TRUE(watch->WaitForLine("RESYNC reason=INSTANCE_CHANGED").has_value()) << watch->Stderr();
  EXPECT_TRUE(watch->WaitForLine("snapshot ").has_value()) << watch->Stderr();
  watch->Signal(SIGTERM);
  EXPECT_EQ(watch->Wait(), 0) << watch->Stderr();
}

TEST_F(ShmhubctlProcessTest, AnUnreachableHubIsExitOneWithUnavailable) {
  hub_ = "127.0.0.1:1";

  const CtlResult run = Ctl({"list"});

  EXPECT_EQ(run.exit_code, 1);
  EXPECT_TRUE(absl::StartsWith(run.err, "shmhubctl: UNAVAILABLE: ")) << run.err;
}

}  // namespace
}  // namespace shmhub
