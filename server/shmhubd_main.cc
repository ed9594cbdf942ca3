// shmhubd: the shmhub daemon. Parses the flags, starts a HubServer, prints
// one "shmhubd listening on ..." line on stdout (scripts and tests read the
// port from it), and shuts down within --shutdown_grace on SIGTERM or SIGINT
// (plus about 2 s to stop the /metrics exposer, after the segment is gone).
//
// Exit status: 0 after a clean shutdown; 2 when the daemon cannot start
// (a flag value out of range, the segment in use by a live daemon, the
// listen address busy). Abseil itself exits with 1 on a flag it cannot
// parse at all (an unknown flag, "--max_guests=abc").
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/base/log.h"
#include "server/config/hub_flags.h"
#include "server/hub_server.h"

namespace shmhub::server {
namespace {

constexpr int kExitCannotStart = 2;

constexpr char kUsage[] =
    "the shmhub daemon. It creates a shared-memory segment with peer slots for\n"
    "local guest processes, watches their liveness (heartbeats), recovers the slots of\n"
    "guests that crash or leave, and serves the shmhub.v1.PeerHub gRPC API (plus\n"
    "grpc.health.v1.Health and server reflection) for orchestrators.\n"
    "\n"
    "Usage: shmhubd [flags]\n"
    "\n"
    "Every flag has a working default, so plain `shmhubd` runs. Durations are written\n"
    "like 100ms, 1s, 2m. Examples:\n"
    "  shmhubd\n"
    "  shmhubd --segment=/dev/shm/hub-a --listen=127.0.0.1:50052 --max_guests=16\n"
    "  shmhubd --heartbeat_interval=20ms --crash_timeout=300ms --require_heartbeat\n"
    "\n"
    "On start it prints one line to stdout:\n"
    "  shmhubd listening on HOST:PORT segment=PATH instance=ID socket=PATH metrics=HOST:PORT\n"
    "(socket= and metrics= are empty when --socket or --metrics_listen is).\n"
    "SIGTERM or SIGINT: watchers get HOST_SHUTDOWN, guests see host_goodbye, the\n"
    "segment is removed, exit status 0. Exit status 2: the daemon could not start.";

int Run(int argc, char** argv) {
  // Before any thread exists, so every thread gRPC starts inherits the mask
  // and the signals wait for sigwait() below.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  if (int err = pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr); err != 0) {
    Log(LogLevel::kError, absl::StrCat("pthread_sigmask: ", std::strerror(err)));
    return kExitCannotStart;
  }

  absl::FlagsUsageConfig usage_config;
  usage_config.contains_help_flags = IsHubFlagsFile;
  usage_config.contains_helpshort_flags = IsHubFlagsFile;
  usage_config.normalize_filename = NormalizeFlagsFile;
  usage_config.version_string = [] { return std::string("shmhubd " SHMHUB_VERSION "\n"); };
  absl::SetFlagsUsageConfig(usage_config);
  absl::SetProgramUsageMessage(kUsage);
  std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  if (positional.size() > 1) {
    Log(LogLevel::kError, absl::StrCat("unexpected argument(s): ",
                                       absl::StrJoin(positional.begin() + 1, positional.end(), " "),
                                       " (shmhubd takes only flags; see --help)"));
    return kExitCannotStart;
  }

  absl::StatusOr<HubConfig> config = HubConfigFromFlags();
  if (!config.ok()) {
    Log(LogLevel::kError, absl::StrCat("bad configuration: ", config.status().message()));
    return kExitCannotStart;
  }
  absl::StatusOr<std::unique_ptr<HubServer>> server = HubServer::Start(*config);
  if (!server.ok()) {
    Log(LogLevel::kError, absl::StrCat("cannot start: ", server.status().message()));
    return kExitCannotStart;
  }
  std::printf("shmhubd listening on %s segment=%s instance=%s socket=%s metrics=%s\n",
              (*server)->address().c_str(), config->segment_path.c_str(),
              (*server)->hub_instance_id().c_str(), config->socket_path.c_str(),
              (*server)->metrics_address().c_str());
  std::fflush(stdout);

  int signal_number = 0;
  if (int err = sigwait(&stop_signals, &signal_number); err != 0) {
    Log(LogLevel::kError, absl::StrCat("sigwait: ", std::strerror(err), "; shutting down"));
  } else {
    Log(LogLevel::kInfo,
        absl::StrCat("received ", signal_number == SIGTERM ? "SIGTERM" : "SIGINT"));
  }
  (*server)->Shutdown();
  return 0;
}

}  // namespace
}  // namespace shmhub::server

int main(int argc, char** argv) { return shmhub::server::Run(argc, argv); }
