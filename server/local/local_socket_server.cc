#include "server/local/local_socket_server.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <optional>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/base/log.h"
#include "server/base/shutting_down.h"
#include "server/local/guest_bootstrap.h"
#include "server/local/peer_credentials.h"
#include "server/local/poll_set.h"

namespace shmhub::server {
namespace {

// How often watched guests whose occupancy ended some other way (goodbye,
// eviction) are dropped, and the longest the loop sleeps.
constexpr absl::Duration kPrunePeriod = absl::Seconds(1);

}  // namespace

LocalSocketServer::LocalSocketServer(std::unique_ptr<UnixListener> listener, shm::UniqueFd wake,
                                     shm::UniqueFd notices, PeerHub* hub)
    : listener_(std::move(listener)),
      wake_(std::move(wake)),
      hub_(hub),
      guests_(hub),
      host_(hub, &guests_, std::move(notices)) {}

LocalSocketServer::~LocalSocketServer() { Stop(); }

absl::StatusOr<std::unique_ptr<LocalSocketServer>> LocalSocketServer::Start(
    const std::string& path, PeerHub* hub) {
  absl::StatusOr<std::unique_ptr<UnixListener>> listener = UnixListener::Listen(path);
  if (!listener.ok()) return listener.status();
  shm::UniqueFd wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  shm::UniqueFd notices(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake.valid() || !notices.valid()) {
    return absl::InternalError(absl::StrCat("eventfd: ", std::strerror(errno)));
  }
  std::unique_ptr<LocalSocketServer> server(
      new LocalSocketServer(*std::move(listener), std::move(wake), std::move(notices), hub));
  hub->SetHostNoticeCallback([host = &server->host_] { host->WakeForNotices(); });
  server->WatchAdoptedGuests();
  server->thread_ = std::thread([raw = server.get()] { raw->Run(); });
  return server;
}

void LocalSocketServer::WatchAdoptedGuests() {
  for (const PeerHub::AdoptedLocalGuest& adopted : hub_->AdoptedLocalGuests()) {
    absl::StatusOr<shm::UniqueFd> pidfd =
        OpenProcessIfStillIt(adopted.pid, adopted.pid_start_time);
    if (!pidfd.ok()) {
      Log(LogLevel::kWarning, absl::StrCat("local socket: the guest of ",
                                           adopted.occupancy.ToString(), " died while no shmhubd "
                                           "ran: ", pidfd.status().message()));
      hub_->OnLocalGuestGone(adopted.occupancy, v1::DETECTOR_PROCESS_EXIT, absl::ZeroDuration());
      continue;
    }
    hub_->RearmProcessDetector(adopted.occupancy);
    guests_.Add(WatchedGuest{.occupancy = adopted.occupancy,
                             .doorbell = shm::Doorbell(shm::DoorbellEnd::kHost, shm::UniqueFd()),
                             .pidfd = *std::move(pidfd),
                             .mapping_control = {}});
  }
}

void LocalSocketServer::Stop(StopKind kind) {
  {
    absl::MutexLock lock(&stop_mu_);
    if (stopped_) return;
    stopped_ = true;
  }
  // Relaxed: the eventfd write below and the loop's read of it order it.
  handover_.store(kind == StopKind::kHandover, std::memory_order_relaxed);
  const uint64_t one = 1;
  // Cannot fail short of a closed fd: the counter is far from overflowing.
  [[maybe_unused]] const ssize_t written = ::write(wake_.get(), &one, sizeof(one));
  if (thread_.joinable()) thread_.join();
  // Before host_ (and its eventfd) go with this object.
  hub_->SetHostNoticeCallback({});
}

void LocalSocketServer::Run() {
  absl::Time next_prune = absl::Now() + kPrunePeriod;
  PollSet polled;
  while (true) {
    polled.Clear();
    const size_t stop = polled.Add(wake_.get(), POLLIN);
    const size_t listener = polled.Add(listener_->fd(), POLLIN);
    host_.AddTo(polled);
    handshakes_.AddTo(polled);
    guests_.AddTo(polled);
    const absl::Time wake_by = std::min(next_prune, handshakes_.NextDeadline());
    if (absl::Status waited = polled.Wait(wake_by, kPrunePeriod); !waited.ok()) {
      Log(LogLevel::kError,
          absl::StrCat("local socket: ", waited.message(), "; the local socket stops serving"));
      break;
    }
    if (polled.revents(stop) != 0) break;
    const absl::Time now = absl::Now();
    host_.HandleEvents(polled);
    guests_.HandleEvents(polled, now);
    ServeHandshakes(polled, now);
    if (polled.revents(listener) != 0) AcceptConnections(now);
    if (now >= next_prune) {
      next_prune = now + kPrunePeriod;
      guests_.Prune();
    }
  }
  ShutDown();
}

void LocalSocketServer::ServeHandshakes(const PollSet& polled, absl::Time now) {
  for (CompletedHandshake& completed : handshakes_.Collect(polled, now)) {
    switch (completed.kind) {
      case CompletedHandshake::Kind::kHost:
        host_.Register(std::move(completed.handshake));
        break;
      case CompletedHandshake::Kind::kGuest:
        if (std::optional<WatchedGuest> guest =
                BootstrapGuest(*hub_, completed.handshake, completed.request);
            guest.has_value()) {
          guests_.Add(*std::move(guest));
        }
        break;
    }
  }
}

void LocalSocketServer::AcceptConnections(absl::Time now) {
  while (true) {
    absl::StatusOr<std::optional<shm::UniqueFd>> accepted = listener_->Accept();
    if (!accepted.ok()) {
      Log(LogLevel::kWarning, absl::StrCat("local socket: ", accepted.status().message()));
      return;
    }
    if (!accepted->has_value()) return;
    absl::StatusOr<PeerCredentials> who = ReadPeerCredentials((*accepted)->get());
    if (!who.ok()) {
      Log(LogLevel::kWarning, absl::StrCat("local socket: ", who.status().message()));
      continue;
    }
    handshakes_.Admit(std::move(**accepted), *std::move(who), now);
  }
}

void LocalSocketServer::ShutDown() {
  // Relaxed: ordered by the eventfd that woke the loop (see Stop).
  if (handover_.load(std::memory_order_relaxed)) {
    // The guests stay; the host application reconnects to the next daemon.
    guests_.ForgetAll();
    host_.Close("shmhubd is handing over to the next shmhubd");
    return;
  }
  // §12 host shutdown: host_goodbye is raised; wake every guest that sleeps
  // on its doorbell, then close ours. The host application's connection
  // closes: it sees us go.
  guests_.RingAndForgetAll();
  host_.Close(std::string(kShuttingDown));
}

}  // namespace shmhub::server
