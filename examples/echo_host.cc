// echo_host: a data-plane host application that sends every frame a guest
// sends straight back to that guest. It registers with a running shmhubd
// over its local socket (client/host/host_app.h), serves each attached
// guest on a thread of its own, and lets the daemon recover a departing
// guest once that thread has let go of its frames.
//
//   echo_host --socket=/run/shmhub/hub.sock
//
// Output (stdout, one flushed line each):
//   echo_host registered
//   attached peer_id=N epoch=E
//   departing peer_id=N epoch=E reason=left|crashed|evicted|vanished echoed=K
//   daemon_gone: <why>
// Exit status: 0 on SIGTERM/SIGINT, 1 when registration fails or the
// daemon goes away, 2 for bad flags.
#include <signal.h>
#include <time.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/host/host_app.h"
#include "client/link/ring_link.h"
#include "client/program_flags.h"

ABSL_FLAG(std::string, socket, "/run/shmhub/hub.sock",
          "shmhubd's local socket (its --socket; its start line prints it).");

namespace {

using shmhub::client::HostApp;
using shmhub::client::HostEvent;
using shmhub::client::HostEventKind;
using shmhub::client::ReceivedFrame;
using shmhub::client::RingLink;

constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;
// A blocked Receive wakes this often on its own; the link's Stop/Close
// wakes it at once anyway.
constexpr absl::Duration kReceiveSlice = absl::Milliseconds(200);

void PrintLine(const std::string& line) {
  std::fputs(line.c_str(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

std::string Describe(const absl::Status& status) {
  return absl::StatusCodeToString(status.code()) + ": " + std::string(status.message());
}

const char* DepartureName(shmhub::shm::PeerDeparture departure) {
  switch (departure) {
    case shmhub::shm::PeerDeparture::kLeft:
      return "left";
    case shmhub::shm::PeerDeparture::kCrashed:
      return "crashed";
    case shmhub::shm::PeerDeparture::kEvicted:
      return "evicted";
    case shmhub::shm::PeerDeparture::kVanished:
      return "vanished";
  }
  return "unknown";
}

// One guest: its link, the thread echoing on it, how much it echoed.
struct Echoer {
  std::shared_ptr<RingLink> link;
  std::shared_ptr<std::atomic<uint64_t>> echoed = std::make_shared<std::atomic<uint64_t>>(0);
  std::thread thread;
};

// Echoes until the link ends: stopped for recovery (ABORTED), closed
// (CANCELLED), the guest or the daemon gone (UNAVAILABLE), or broken.
void Echo(std::shared_ptr<RingLink> link, std::shared_ptr<std::atomic<uint64_t>> echoed) {
  while (true) {
    absl::StatusOr<ReceivedFrame> frame = link->Receive(absl::Now() + kReceiveSlice);
    if (!frame.ok()) {
      if (frame.status().code() == absl::StatusCode::kDeadlineExceeded) continue;
      return;
    }
    // Send copies the payload into our ring or a pool slot of ours; the
    // view is released when `frame` goes out of scope, after the copy.
    absl::Status sent;
    do {
      sent = link->Send(frame->data(), absl::Now() + kReceiveSlice);
    } while (sent.code() == absl::StatusCode::kDeadlineExceeded);
    if (!sent.ok()) return;
    // Relaxed: a count for the log line, read after the thread is joined.
    echoed->fetch_add(1, std::memory_order_relaxed);
  }
}

// Stops and joins one echoer (its link is stopped or closed already, so
// its blocked call returns at once).
uint64_t Finish(Echoer& echoer) {
  if (echoer.thread.joinable()) echoer.thread.join();
  // Relaxed: the join above already ordered the thread's writes before us.
  return echoer.echoed->load(std::memory_order_relaxed);
}

}  // namespace

int main(int argc, char** argv) {
  shmhub::client::ConfigureProgramUsage("echo_host.cc",
      "a shmhub data-plane host application that echoes every frame back to its guest.\n"
      "  echo_host --socket=/run/shmhub/hub.sock");
  if (absl::ParseCommandLine(argc, argv).size() > 1) {
    std::fprintf(stderr, "echo_host: it takes only flags; see --help\n");
    return kExitUsage;
  }

  // Blocked before any thread exists, so only our sigtimedwait sees them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  absl::StatusOr<std::unique_ptr<HostApp>> app = HostApp::Register(absl::GetFlag(FLAGS_socket));
  if (!app.ok()) {
    std::fprintf(stderr, "echo_host: %s\n", Describe(app.status()).c_str());
    return kExitFailed;
  }
  PrintLine("echo_host registered");

  std::map<uint32_t, Echoer> echoers;  // by peer id
  int exit_code = 0;
  while (true) {
    if (shmhub::client::WaitForSignal(signals, absl::ZeroDuration()) != 0) break;
    std::optional<HostEvent> event = (*app)->NextEvent(absl::Now() + absl::Milliseconds(100));
    if (!event.has_value()) continue;
    const std::string who =
        absl::StrCat("peer_id=", event->peer_id, " epoch=", event->epoch);
    if (event->kind == HostEventKind::kPeerAttached) {
      // The HostApp reports a slot's previous occupancy departed before it
      // attaches the next; should one still be here, end it first.
      if (auto stale = echoers.find(event->peer_id); stale != echoers.end()) {
        stale->second.link->Close();
        Finish(stale->second);
        echoers.erase(stale);
      }
      Echoer& echoer = echoers[event->peer_id];
      echoer.link = event->link;
      echoer.thread = std::thread(Echo, echoer.link, echoer.echoed);
      PrintLine("attached " + who);
    } else if (event->kind == HostEventKind::kPeerDeparting) {
      auto found = echoers.find(event->peer_id);
      uint64_t echoed = 0;
      // The HostApp stopped the link; once the thread is out, no view of
      // ours is left and it acknowledges the recovery.
      if (found != echoers.end() && found->second.link->epoch() == event->epoch) {
        echoed = Finish(found->second);
        echoers.erase(found);
      }
      PrintLine(absl::StrCat("departing ", who, " reason=", DepartureName(event->departure),
                             " echoed=", echoed));
    } else {
      PrintLine("daemon_gone: " + Describe(event->status));
      exit_code = kExitFailed;
      break;
    }
  }
  // Links first, then the threads, then the registration.
  for (auto& [peer_id, echoer] : echoers) echoer.link->Close();
  for (auto& [peer_id, echoer] : echoers) Finish(echoer);
  echoers.clear();
  app->reset();
  return exit_code;
}
