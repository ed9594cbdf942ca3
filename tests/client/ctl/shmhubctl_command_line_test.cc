// shmhubctl's command-line handling, run in-process through RunShmhubctl:
// usage errors exit 2 before any RPC is made, help exits 0, a daemon that
// is not there is an RPC failure (exit 1) with the code on stderr.
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/match.h"
#include "client/ctl/command_line.h"
#include "client/ctl/commands.h"
#include "client/ctl/ctl_flags.h"
#include "gtest/gtest.h"

namespace shmhub::ctl {
namespace {

// A port on loopback that nothing listens on: connecting is refused at once.
constexpr char kNoDaemon[] = "--hub=127.0.0.1:1";

struct CtlResult {
  int status;
  std::string out;
  std::string err;
};

CtlResult Shmhubctl(const std::vector<std::string>& args) {
  std::vector<const char*> argv = {"shmhubctl"};
  for (const std::string& arg : args) argv.push_back(arg.c_str());
  std::ostringstream out;
  std::ostringstream err;
  const int status = RunShmhubctl(static_cast<int>(argv.size()), argv.data(), out, err);
  return {status, out.str(), err.str()};
}

class ShmhubctlCommandLineTest : public ::testing::Test {
 protected:
  absl::FlagSaver flag_saver_;
};

TEST_F(ShmhubctlCommandLineTest, HelpListsEveryCommandAndExitsZero) {
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"--help"}, {"help"}, {"-h"}}) {
    const CtlResult run = Shmhubctl(args);
    EXPECT_EQ(run.status, 0);
    for (const CommandSpec& command : Commands()) {
      EXPECT_TRUE(absl::StrContains(run.out, "  " + command.name)) << command.name;
    }
    EXPECT_TRUE(absl::StrContains(run.out, "--hub")) << run.out;
  }
}

TEST_F(ShmhubctlCommandLineTest, CommandHelpShowsItsFlags) {
  const CtlResult run = Shmhubctl({"reserve", "--help"});

  EXPECT_EQ(run.status, 0);
  for (const char* flag : {"--ttl", "--owner", "--label", "--request_id", "--timeout"}) {
    EXPECT_TRUE(absl::StrContains(run.out, flag)) << flag << " in\n" << run.out;
  }
}

TEST_F(ShmhubctlCommandLineTest, UsageErrorsExitTwoWithAMessage) {
  const std::vector<std::vector<std::string>> cases = {
      {},                                       // no command
      {"frobnicate"},                           // unknown command
      {"list", "--bogus"},                      // unknown flag
      {"list", "--ttl=3s"},                     // a flag of another command
      {"release", "1"},                         // missing EPOCH
      {"get", "1", "2"},                        // extra argument
      {"get", "one"},                           // not a number
      {"release", "1", "-5"},                   // negative
      {"evict", "1", "99999999999"},            // beyond 32 bits
      {"reserve", "--ttl=soon"},                // not a duration
      {"reserve", "--label=novalue", kNoDaemon},  // label without '='
      {"reserve", "--label==x", kNoDaemon},     // empty key
      {"reserve", "--label"},                   // missing value
      {"info", "--timeout=0s"},                 // non-positive timeout
      {"help", "frobnicate"},
  };
  for (const std::vector<std::string>& args : cases) {
    const CtlResult run = Shmhubctl(args);
    EXPECT_EQ(run.status, 2) << testing::PrintToString(args) << "\n" << run.err;
    EXPECT_TRUE(absl::StartsWith(run.err, "shmhubctl: ")) << run.err;
    EXPECT_TRUE(run.out.empty()) << run.out;
  }
}

TEST_F(ShmhubctlCommandLineTest, FlagsMayFollowTheCommandAndItsArguments) {
  const CtlResult run = Shmhubctl({"evict", "3", "7", "--reason", "maintenance", kNoDaemon});

  EXPECT_EQ(run.status, 1) << run.err;  // parsed fine; only the daemon is missing
  EXPECT_EQ(absl::GetFlag(FLAGS_reason), "maintenance");
}

TEST_F(ShmhubctlCommandLineTest, AnUnreachableDaemonIsAnRpcFailureNamingTheCode) {
  const CtlResult run = Shmhubctl({kNoDaemon, "--timeout=2s", "list"});

  EXPECT_EQ(run.status, 1);
  EXPECT_TRUE(absl::StartsWith(run.err, "shmhubctl: UNAVAILABLE: ")) << run.err;
  EXPECT_TRUE(absl::StrContains(run.err, "127.0.0.1:1")) << run.err;
}

TEST(CommandLineTest, RepeatedFlagsKeepEveryValueInOrder) {
  const char* argv[] = {"shmhubctl", "reserve", "--label=a=1", "--label", "b=2,3", "--label=c="};

  absl::StatusOr<CommandLine> line = ParseCommandLine(6, argv, {}, {"label"});

  ASSERT_TRUE(line.ok()) << line.status();
  EXPECT_EQ(line->positionals, std::vector<std::string>{"reserve"});
  EXPECT_EQ(line->repeated["label"], (std::vector<std::string>{"a=1", "b=2,3", "c="}));
}

TEST(CommandLineTest, DoubleDashEndsTheFlags) {
  absl::FlagSaver saver;
  const char* argv[] = {"shmhubctl", "--json", "get", "--", "--all"};

  absl::StatusOr<CommandLine> line = ParseCommandLine(5, argv, {"json", "all"}, {});

  ASSERT_TRUE(line.ok()) << line.status();
  EXPECT_EQ(line->positionals, (std::vector<std::string>{"get", "--all"}));
  EXPECT_TRUE(absl::GetFlag(FLAGS_json));
  EXPECT_FALSE(absl::GetFlag(FLAGS_all));
}

TEST(CommandLineTest, BooleansTakeNoNextArgumentAndCanBeNegated) {
  absl::FlagSaver saver;
  const char* argv[] = {"shmhubctl", "--json", "list", "--noall"};

  absl::StatusOr<CommandLine> line = ParseCommandLine(4, argv, {"json", "all"}, {});

  ASSERT_TRUE(line.ok()) << line.status();
  EXPECT_EQ(line->positionals, std::vector<std::string>{"list"});
  EXPECT_TRUE(absl::GetFlag(FLAGS_json));
  EXPECT_FALSE(absl::GetFlag(FLAGS_all));
  EXPECT_EQ(line->flags_given, (std::set<std::string>{"json", "all"}));
}

TEST(CommandLineTest, AFlagOutsideTheKnownSetIsUnknownEvenIfRegistered) {
  const char* argv[] = {"shmhubctl", "--owner=x"};

  absl::StatusOr<CommandLine> line = ParseCommandLine(2, argv, {"json"}, {});

  ASSERT_FALSE(line.ok());
  EXPECT_TRUE(absl::StrContains(line.status().message(), "--owner")) << line.status();
}

}  // namespace
}  // namespace shmhub::ctl
