// The API as a Python orchestrator sees it: stubs generated from hub.proto
// at test time with protoc + grpc_python_plugin (by examples/shmhub_stubs.py,
// the generator examples/orchestrator.py uses too), run by Debian's
// /usr/bin/python3 (python3-grpcio) against a real shmhubd on an ephemeral
// 127.0.0.1 port, driving a real shmhub-guest (python_orchestrator.py).
// Skipped, with the reason, when that Python has no grpc module.
#include <signal.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/e2e/running_hub.h"
#include "tests/testing/spawned_process.h"
#include "tests/testing/temp_dir.h"

namespace shmhub {
namespace {

using ::shmhub::testing::RunningHub;
using ::shmhub::testing::SpawnedProcess;
using ::shmhub::testing::StartShmhubd;
using ::shmhub::testing::TempDir;

constexpr char kPython[] = "/usr/bin/python3";

// python_orchestrator.py sits next to this file.
std::string ScriptPath() {
  const absl::string_view self = __FILE__;
  return absl::StrCat(self.substr(0, self.rfind('/') + 1), "python_orchestrator.py");
}

// examples/shmhub_stubs.py, two folders up.
std::string StubsScriptPath() {
  const absl::string_view self = __FILE__;
  return absl::StrCat(self.substr(0, self.rfind('/') + 1), "../../examples/shmhub_stubs.py");
}

struct RunResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs `argv` to completion; a process still running after `limit` is
// killed and reported as exit code -1.
RunResult RunToCompletion(const std::vector<std::string>& argv, const std::string& stderr_path,
              absl::Duration limit = absl::Seconds(60)) {
  SpawnedProcess process(argv, stderr_path);
  RunResult result;
  result.out = process.DrainStdout(limit);
  result.exit_code = process.Wait(absl::Seconds(5)).value_or(-1);
  result.err = process.Stderr();
  return result;
}

TEST(PythonOrchestratorProcessTest, GeneratedStubsReserveWatchAndSeeKilledGuestRecovered) {
  TempDir dir;
  const RunResult probe = RunToCompletion({kPython, "-c", "import grpc"}, dir.File("probe.err"));
  if (probe.exit_code != 0) {
    GTEST_SKIP() << kPython << " cannot import grpc (install python3-grpcio, see "
                 << "scripts/install-deps.sh): " << probe.err;
  }

  const RunResult stubs =
      RunToCompletion({kPython, "-B", StubsScriptPath(), dir.path(), SHMHUB_PROTO_DIR},
                      dir.File("stubs.err"));
  ASSERT_EQ(stubs.exit_code, 0) << "shmhub_stubs.py failed: " << stubs.err;

  absl::StatusOr<RunningHub> daemon = StartShmhubd(
      dir, {.flags = {"--max_guests=2", "--heartbeat_interval=20ms", "--crash_timeout=400ms"}});
  ASSERT_TRUE(daemon.ok()) << daemon.status();

  const RunResult script =
      RunToCompletion({kPython, ScriptPath(), dir.path(), daemon->endpoints.grpc_address,
                       SHMHUB_GUEST_PATH, daemon->endpoints.segment_path},
                      dir.File("orchestrator.err"));
  EXPECT_EQ(script.exit_code, 0) << "stderr:\n" << script.err << "\nshmhubd stderr:\n"
                                 << daemon->process->Stderr();
  const absl::string_view out = absl::StripTrailingAsciiWhitespace(script.out);
  const absl::string_view last = out.substr(out.rfind('\n') + 1);
  EXPECT_TRUE(absl::StartsWith(last, "orchestrator ok peer_id=")) << "stdout:\n" << script.out;
}

}  // namespace
}  // namespace shmhub
