// echo_guest: a guest that checks a host application's echo. It bootstraps
// over shmhubd's local socket (client/guest/guest.h), opens its GuestLink,
// and in each round sends one frame of every size in --sizes (the sizes
// pick the tier: inline, a pool slot, or an out-of-segment mapping), then
// receives as many frames and checks that each is the one it sent, byte for
// byte, in order.
//
//   echo_guest --socket=/run/shmhub/hub.sock --rounds=100
//
// Output (stdout, one flushed line each):
//   attached peer_id=N epoch=E
//   echoing peer_id=N epoch=E          (after the first round came back whole)
//   ok rounds=R frames=F bytes=B
//   host_goodbye peer_id=N epoch=E: ... (shmhubd stopped in order)
// Exit status: 0 when every round came back, or when shmhubd stopped in
// order (host_goodbye: a goodbye stop; a restart or handover changes
// nothing); 1 when the bootstrap fails, a link call fails (the host
// application went away; the reason on stderr) or an echo differs; 2 for
// bad flags. SIGTERM/SIGINT end the run after the current round (exit 0).
#include <signal.h>
#include <time.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/guest/guest.h"
#include "client/guest/guest_link.h"
#include "client/link/ring_link.h"
#include "client/program_flags.h"

ABSL_FLAG(std::string, socket, "/run/shmhub/hub.sock",
          "shmhubd's local socket (its --socket; its start line prints it).");
ABSL_FLAG(std::string, sizes, "16,200,900,12000,200000,600000",
          "Payload sizes of one round, in bytes, comma-separated. With shmhubd's defaults "
          "these cover every tier: inline (up to 256 B), a pool slot (up to 262140 B), and "
          "an out-of-segment mapping (up to --max_payload_size, 1 MiB).");
ABSL_FLAG(uint64_t, rounds, 10, "Rounds to run; 0 runs until SIGTERM/SIGINT.");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(10),
          "How long any one send or receive may wait before the run fails.");

namespace {

using shmhub::client::Guest;
using shmhub::client::GuestLink;
using shmhub::client::GuestOptions;
using shmhub::client::ReceivedFrame;
using shmhub::client::RingLink;

constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;

void PrintLine(const std::string& line) {
  std::fputs(line.c_str(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

std::string Describe(const absl::Status& status) {
  return absl::StatusCodeToString(status.code()) + ": " + std::string(status.message());
}

// The payload of frame `index` of round `round`: a byte stream no other
// frame of the run shares a prefix with, so a reordered, truncated or
// stale echo cannot pass for the right one.
std::vector<uint8_t> Payload(uint64_t round, size_t index, size_t size) {
  std::vector<uint8_t> bytes(size);
  uint64_t state = (round << 20) ^ (index << 8) ^ 0x9E3779B97F4A7C15u;
  for (size_t i = 0; i < size; ++i) {
    // xorshift64: cheap and never stuck at zero.
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    bytes[i] = static_cast<uint8_t>(state);
  }
  return bytes;
}

// One round: every size out, every echo back and checked.
absl::Status RunRound(RingLink& link, uint64_t round, const std::vector<size_t>& sizes,
                      absl::Duration timeout, uint64_t* bytes) {
  std::vector<std::vector<uint8_t>> sent;
  for (size_t i = 0; i < sizes.size(); ++i) {
    sent.push_back(Payload(round, i, sizes[i]));
    if (absl::Status status = link.Send(sent.back(), absl::Now() + timeout); !status.ok()) {
      return absl::Status(status.code(), absl::StrCat("round ", round, ": sending ", sizes[i],
                                                      " bytes: ", status.message()));
    }
  }
  for (size_t i = 0; i < sizes.size(); ++i) {
    absl::StatusOr<ReceivedFrame> echo = link.Receive(absl::Now() + timeout);
    if (!echo.ok()) {
      return absl::Status(echo.status().code(),
                          absl::StrCat("round ", round, ": waiting for the echo of ", sizes[i],
                                       " bytes: ", echo.status().message()));
    }
    const absl::Span<const uint8_t> got = echo->data();
    if (got != absl::MakeConstSpan(sent[i])) {
      return absl::DataLossError(absl::StrCat("round ", round, ": the echo of frame ", i, " (",
                                              sizes[i], " bytes) came back as ", got.size(),
                                              " different bytes"));
    }
    *bytes += got.size();
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<size_t>> ParseSizes(const std::string& text) {
  std::vector<size_t> sizes;
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    size_t size = 0;
    if (!absl::SimpleAtoi(item, &size) || size == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--sizes: '", item, "' is not a positive number of bytes"));
    }
    sizes.push_back(size);
  }
  return sizes;
}

bool SignalPending(const sigset_t& signals) {
  const timespec zero{};
  return sigtimedwait(&signals, nullptr, &zero) > 0;
}

}  // namespace

int main(int argc, char** argv) {
  shmhub::client::ConfigureProgramUsage("echo_guest.cc",
      "a shmhub guest that sends frames of several sizes to the host application and checks\n"
      "their echoes (run examples/echo_host next to shmhubd first).\n"
      "  echo_guest --socket=/run/shmhub/hub.sock --rounds=100");
  if (absl::ParseCommandLine(argc, argv).size() > 1) {
    std::fprintf(stderr, "echo_guest: it takes only flags; see --help\n");
    return kExitUsage;
  }
  absl::StatusOr<std::vector<size_t>> sizes = ParseSizes(absl::GetFlag(FLAGS_sizes));
  if (!sizes.ok()) {
    std::fprintf(stderr, "echo_guest: %s\n", std::string(sizes.status().message()).c_str());
    return kExitUsage;
  }
  const uint64_t rounds = absl::GetFlag(FLAGS_rounds);
  const absl::Duration timeout = absl::GetFlag(FLAGS_timeout);

  // Blocked before Attach starts the heartbeat thread, so every thread
  // inherits the mask and the signals reach only our sigtimedwait.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  GuestOptions options;
  options.socket_path = absl::GetFlag(FLAGS_socket);
  absl::StatusOr<std::unique_ptr<Guest>> guest = Guest::Attach(options);
  if (!guest.ok()) {
    std::fprintf(stderr, "echo_guest: %s\n", Describe(guest.status()).c_str());
    return kExitFailed;
  }
  const std::string who =
      absl::StrCat("peer_id=", (*guest)->peer_id(), " epoch=", (*guest)->epoch());
  PrintLine("attached " + who);

  int exit_code = 0;
  {
    absl::StatusOr<std::unique_ptr<RingLink>> link = GuestLink::Create(**guest);
    if (!link.ok()) {
      std::fprintf(stderr, "echo_guest: %s\n", Describe(link.status()).c_str());
      return kExitFailed;
    }
    uint64_t bytes = 0;
    uint64_t done = 0;
    while ((rounds == 0 || done < rounds) && !SignalPending(signals)) {
      if (absl::Status status = RunRound(**link, done, *sizes, timeout, &bytes); !status.ok()) {
        // The daemon stopped in order (a goodbye stop): we leave in order.
        if ((*guest)->HostGoodbye()) {
          PrintLine("host_goodbye " + who + ": shmhubd stopped; leaving");
          break;
        }
        std::fprintf(stderr, "echo_guest: %s\n", Describe(status).c_str());
        exit_code = kExitFailed;
        break;
      }
      if (++done == 1) PrintLine("echoing " + who);
    }
    if (exit_code == 0) {
      PrintLine(absl::StrCat("ok rounds=", done, " frames=", done * sizes->size(),
                             " bytes=", bytes));
    }
  }  // the link (and its copy of our doorbell) goes before Goodbye
  (*guest)->Goodbye().IgnoreError();
  return exit_code;
}
