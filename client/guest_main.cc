// shmhub-guest: a small real guest process, for people trying shmhub out and
// for end-to-end tests. It attaches to a hub segment (claiming a reserved
// slot, taking a free one, or bootstrapping over shmhubd's local socket),
// heartbeats, and leaves in order when told to.
//
// Output (stdout, one flushed line each, so a parent can wait for them):
//   attached peer_id=N epoch=E pid=P
//   goodbye peer_id=N epoch=E reason=<signal SIGTERM|signal SIGINT|run_for elapsed>
//   host_goodbye peer_id=N epoch=E: the host is shutting down
//   lost_slot peer_id=N epoch=E: the slot no longer holds our occupancy
//   crash peer_id=N epoch=E: exiting without goodbye        (--exit_mode=crash)
// Exit codes: 0 after an orderly goodbye (signal, --run_for, host_goodbye),
// 1 when the attach fails (the reason on stderr; Abseil also exits 1 on a
// flag it cannot parse), 2 for flags that parse but do not fit together or
// the segment (e.g. --peer_id without --epoch, a peer id beyond max_guests),
// 3 when the slot was taken from us (evicted or recovered by the daemon).
// With --exit_mode=crash the process ends at --run_for with _exit(0) and
// leaves its slot Attached, as a crashed guest would.
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/guest/guest.h"
#include "client/program_flags.h"

ABSL_FLAG(std::string, segment, "/dev/shm/shmhub",
          "Path of the hub segment to attach to. Ignored with --socket.");
ABSL_FLAG(std::string, socket, "",
          "shmhubd's local socket (its --socket, e.g. /run/shmhub/hub.sock). Set: bootstrap over "
          "it; the daemon picks the slot, sends the segment and watches our doorbell and "
          "process, so a crash is detected at once. Not with --peer_id/--epoch.");
ABSL_FLAG(uint32_t, peer_id, 0,
          "Reserved slot to claim (1..max_guests, with --epoch). 0: attach to the lowest Empty "
          "slot without a reservation.");
ABSL_FLAG(std::optional<uint32_t>, epoch, std::nullopt,
          "The epoch ReservePeer returned for --peer_id. Required with --peer_id.");
ABSL_FLAG(bool, heartbeat, true, "Write heartbeats into the peer entry.");
ABSL_FLAG(std::optional<absl::Duration>, heartbeat_interval, std::nullopt,
          "Heartbeat period, e.g. 20ms. Default: the interval in the segment header (0 there "
          "means no heartbeats).");
ABSL_FLAG(absl::Duration, run_for, absl::InfiniteDuration(),
          "Leave after this long (see --exit_mode). Default: run until SIGTERM/SIGINT.");
ABSL_FLAG(std::string, exit_mode, "goodbye",
          "What to do when --run_for elapses: 'goodbye' (orderly leave, exit 0) or 'crash' "
          "(_exit(0) without goodbye, leaving the slot Attached; for tests).");

namespace {

constexpr int kExitAttachFailed = 1;
constexpr int kExitUsage = 2;
constexpr int kExitLostSlot = 3;

// How often the main thread looks at host_goodbye and at our entry. Cheap
// (two atomic loads), and short enough for tests to see a prompt exit.
constexpr absl::Duration kPollPeriod = absl::Milliseconds(10);

// "CODE: message", without the status's machine-readable payloads.
std::string Describe(const absl::Status& status) {
  return absl::StatusCodeToString(status.code()) + ": " + std::string(status.message());
}

void PrintLine(const std::string& line) {
  std::fputs(line.c_str(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

std::string Who(const shmhub::client::Guest& guest) {
  return "peer_id=" + std::to_string(guest.peer_id()) + " epoch=" + std::to_string(guest.epoch());
}

int LeaveInOrder(shmhub::client::Guest& guest, const std::string& reason) {
  const absl::Status goodbye = guest.Goodbye();
  if (!goodbye.ok()) {
    std::fprintf(stderr, "shmhub-guest: goodbye wrote nothing: %s\n", Describe(goodbye).c_str());
  }
  PrintLine("goodbye " + Who(guest) + " reason=" + reason);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  shmhub::client::ConfigureProgramUsage("guest_main.cc",
      "a shmhub guest: attaches to a hub segment, heartbeats, leaves in order.\n"
      "  shmhub-guest --peer_id=N --epoch=E    claim a slot reserved with `shmhubctl reserve`\n"
      "  shmhub-guest                          attach to the lowest free slot\n"
      "  shmhub-guest --socket=/run/shmhub/hub.sock   let shmhubd pick the slot (bootstrap)\n"
      "Prints 'attached peer_id=N epoch=E pid=P' once attached. Exit codes: 0 orderly "
      "leave, 1 attach failed (or a flag that does not parse), 2 inconsistent flags, 3 slot "
      "taken away (evicted/recovered).");
  const std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  if (positional.size() > 1) {
    std::fprintf(stderr, "shmhub-guest: unexpected argument '%s' (it takes only flags; see --help)\n",
                 positional[1]);
    return kExitUsage;
  }

  const std::string exit_mode = absl::GetFlag(FLAGS_exit_mode);
  if (exit_mode != "goodbye" && exit_mode != "crash") {
    std::fprintf(stderr, "shmhub-guest: --exit_mode must be 'goodbye' or 'crash', got '%s'\n",
                 exit_mode.c_str());
    return kExitUsage;
  }
  const absl::Duration run_for = absl::GetFlag(FLAGS_run_for);
  if (run_for < absl::ZeroDuration()) {
    std::fprintf(stderr, "shmhub-guest: --run_for must not be negative, got %s\n",
                 absl::FormatDuration(run_for).c_str());
    return kExitUsage;
  }

  // Blocked before Attach starts the heartbeat thread, so every thread
  // inherits the mask and the signals reach only our sigtimedwait.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  shmhub::client::GuestOptions options;
  options.socket_path = absl::GetFlag(FLAGS_socket);
  // The daemon names the segment when we bootstrap over its socket.
  if (options.socket_path.empty()) options.segment_path = absl::GetFlag(FLAGS_segment);
  options.peer_id = absl::GetFlag(FLAGS_peer_id);
  options.expected_epoch = absl::GetFlag(FLAGS_epoch);
  options.heartbeat = absl::GetFlag(FLAGS_heartbeat);
  options.heartbeat_interval = absl::GetFlag(FLAGS_heartbeat_interval);
  absl::StatusOr<std::unique_ptr<shmhub::client::Guest>> attached =
      shmhub::client::Guest::Attach(options);
  if (!attached.ok()) {
    std::fprintf(stderr, "shmhub-guest: %s\n", Describe(attached.status()).c_str());
    // Inconsistent flags or a peer id this segment does not have.
    return attached.status().code() == absl::StatusCode::kInvalidArgument ? kExitUsage
                                                                          : kExitAttachFailed;
  }
  shmhub::client::Guest& guest = **attached;
  PrintLine("attached " + Who(guest) + " pid=" + std::to_string(getpid()));

  const absl::Time deadline = absl::Now() + run_for;
  while (true) {
    if (const int sig = shmhub::client::WaitForSignal(signals, kPollPeriod); sig != 0) {
      return LeaveInOrder(guest, sig == SIGTERM ? "signal SIGTERM" : "signal SIGINT");
    }
    if (guest.HostGoodbye()) {
      guest.Goodbye().IgnoreError();
      PrintLine("host_goodbye " + Who(guest) + ": the host is shutting down");
      return 0;
    }
    if (!guest.StillAttached()) {
      PrintLine("lost_slot " + Who(guest) + ": the slot no longer holds our occupancy");
      return kExitLostSlot;
    }
    if (absl::Now() >= deadline) {
      if (exit_mode == "crash") {
        PrintLine("crash " + Who(guest) + ": exiting without goodbye");
        _exit(0);
      }
      return LeaveInOrder(guest, "run_for elapsed");
    }
  }
}
