#include "server/local_socket_server.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <optional>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "server/host_connection.h"
#include "server/log.h"
#include "server/peer_credentials.h"
#include "shm/bootstrap.h"
#include "shm/doorbell.h"
#include "shm/host_control.h"
#include "shm/le_bytes.h"
#include "shm/mapping_control.h"
#include "shm/shm_error.h"

namespace shmhub::server {
namespace {

// A client gets this long to send its request after connecting.
constexpr absl::Duration kHandshakeTimeout = absl::Seconds(2);
// The reply is a few hundred bytes on a fresh socket; this only bounds a
// client that never reads.
constexpr std::chrono::milliseconds kReplyTimeout{1000};
// How often watched guests whose occupancy ended some other way (goodbye,
// eviction) are dropped, and the longest the loop sleeps.
constexpr absl::Duration kPrunePeriod = absl::Seconds(1);
constexpr size_t kMaxRequestBytes = shm::kSpecRequestHeaderSize + shm::kMaxBootstrapPayload;

struct Handshake {
  shm::UniqueFd connection;
  PeerCredentials who;
  std::vector<uint8_t> bytes;
  absl::Time deadline;
};

// A guest that bootstrapped, and the descriptors that tell us it is gone.
struct WatchedGuest {
  uint32_t peer_id = 0;
  uint32_t epoch = 0;
  shm::Doorbell doorbell;        // the host end; empty once shut with the host application
  shm::UniqueFd pidfd;           // may be invalid
  shm::UniqueFd mapping_control;  // the host end, kept so the guest's sends succeed
  bool shared_with_host = false;  // the host application holds copies of both host ends
};

// The request once enough bytes decide it: nullopt while more are needed.
// VSH1 is complete at 4 bytes (trailing bytes are ignored, §11.1); RSH0 at
// 6 + sid_len. Any other magic fails at once.
absl::StatusOr<std::optional<shm::BootstrapRequest>> TryDecodeRequest(
    const std::vector<uint8_t>& bytes) {
  if (bytes.size() < shm::kBootstrapMagicSize) return std::nullopt;
  size_t needed = shm::kBootstrapMagicSize;
  if (std::memcmp(bytes.data(), "RSH0", shm::kBootstrapMagicSize) == 0) {
    if (bytes.size() < shm::kSpecRequestHeaderSize) return std::nullopt;
    needed = shm::kSpecRequestHeaderSize + shm::GetLe<uint16_t>(bytes.data() + shm::kBootstrapMagicSize);
    if (bytes.size() < needed) return std::nullopt;
  }
  absl::StatusOr<shm::BootstrapRequest> request =
      shm::DecodeBootstrapRequest(absl::MakeConstSpan(bytes.data(), needed));
  if (!request.ok()) return request.status();
  return std::optional<shm::BootstrapRequest>(*std::move(request));
}

void ReplyError(int connection, shm::BootstrapDialect dialect, const std::string& message) {
  shm::BootstrapResponse response;
  response.status = shm::BootstrapStatus::kError;
  response.payload = message.substr(0, shm::kMaxBootstrapPayload);
  // The client may already be gone; there is nobody else to tell.
  shm::SendBootstrapResponse(connection, dialect, response, {}, kReplyTimeout).IgnoreError();
}

enum class ReadResult {
  kMore,    // the client may send more
  kEnded,   // the client closed its side (or sent the most a request can be)
  kFailed,  // recv failed: drop the connection
};

// Appends what the handshake's client has sent so far.
ReadResult ReadRequestBytes(Handshake& handshake) {
  uint8_t buffer[4096];
  while (handshake.bytes.size() < kMaxRequestBytes) {
    const size_t room = std::min(sizeof(buffer), kMaxRequestBytes - handshake.bytes.size());
    const ssize_t got = ::recv(handshake.connection.get(), buffer, room, 0);
    if (got > 0) {
      handshake.bytes.insert(handshake.bytes.end(), buffer, buffer + got);
      continue;
    }
    if (got == 0) return ReadResult::kEnded;
    if (errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK ? ReadResult::kMore : ReadResult::kFailed;
  }
  return ReadResult::kEnded;
}

}  // namespace

LocalSocketServer::LocalSocketServer(std::unique_ptr<UnixListener> listener, shm::UniqueFd wake,
                                     shm::UniqueFd notices, PeerHub* hub)
    : listener_(std::move(listener)),
      wake_(std::move(wake)),
      notices_(std::move(notices)),
      hub_(hub) {}

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
  hub->SetHostNoticeWake(server->notices_.get());
  server->thread_ = std::thread([raw = server.get()] { raw->Run(); });
  return server;
}

void LocalSocketServer::Stop() {
  {
    absl::MutexLock lock(&stop_mu_);
    if (stopped_) return;
    stopped_ = true;
  }
  const uint64_t one = 1;
  // Cannot fail short of a closed fd: the counter is far from overflowing.
  [[maybe_unused]] const ssize_t written = ::write(wake_.get(), &one, sizeof(one));
  if (thread_.joinable()) thread_.join();
  // Before notices_ closes with this object.
  hub_->SetHostNoticeWake(-1);
}

void LocalSocketServer::Run() {
  std::vector<Handshake> handshakes;
  std::vector<WatchedGuest> guests;
  std::optional<HostConnection> host;  // the registered host application
  absl::Time next_prune = absl::Now() + kPrunePeriod;

  // Bootstraps one guest whose request is complete; its connection is
  // closed by the caller afterwards either way.
  auto serve = [&](Handshake& handshake, const shm::BootstrapRequest& request) {
    LocalGuest guest;
    guest.session_id = request.session_id;
    guest.pid = handshake.who.pid;
    guest.uid = handshake.who.uid;
    guest.process_watched = handshake.who.pidfd.valid();
    const int connection = handshake.connection.get();
    const std::string who = handshake.who.Describe();
    absl::StatusOr<Reservation> reservation = hub_->ReserveForLocalGuest(guest);
    if (!reservation.ok()) {
      Log(LogLevel::kWarning, absl::StrCat("local socket: refused the guest with ", who, ": ",
                                           reservation.status().message()));
      ReplyError(connection, request.dialect, std::string(reservation.status().message()));
      return;
    }
    const uint32_t peer_id = reservation->peer_id;
    const uint32_t epoch = reservation->epoch;
    absl::StatusOr<std::pair<shm::Doorbell, shm::Doorbell>> doorbells = shm::Doorbell::CreatePair();
    absl::StatusOr<std::pair<shm::UniqueFd, shm::UniqueFd>> mapping =
        shm::CreateMappingControlPair();
    absl::Status status = !doorbells.ok() ? doorbells.status() : mapping.status();
    if (status.ok()) {
      const int guest_mapping = mapping->second.get();
      std::vector<int> fds = {doorbells->second.fd(), hub_->segment().fd(), guest_mapping};
      // §11.1: Rust wants the mapping-control socket twice (receive, send).
      if (request.dialect == shm::BootstrapDialect::kVox) fds.push_back(guest_mapping);
      shm::BootstrapResponse response;
      response.status = shm::BootstrapStatus::kSuccess;
      response.peer_id = peer_id;
      response.payload = hub_->config().segment_path;
      status = shm::SendBootstrapResponse(connection, request.dialect, response, fds, kReplyTimeout);
    } else {
      ReplyError(connection, request.dialect, "shmhubd could not create the guest's sockets");
    }
    if (!status.ok()) {
      Log(LogLevel::kWarning, absl::StrCat("local socket: bootstrap of peer ", peer_id, " epoch ",
                                           epoch, " for the guest with ", who,
                                           " failed: ", status.ToString(), "; releasing the slot"));
      // Fenced on the epoch; a no-op if the slot has already moved on.
      hub_->Release(peer_id, epoch).IgnoreError();
      return;
    }
    // The guest ends (doorbells->second, mapping->second) close when this
    // function returns: the guest's copies are then the only ones, which is
    // what makes the hang-up mean "the guest is gone" (§10).
    std::vector<std::string> detectors = {"doorbell"};
    if (guest.process_watched) detectors.push_back("process_exit");
    Log(LogLevel::kInfo, absl::StrCat("local socket: guest with ", who, " bootstrapped into peer ",
                                      peer_id, " epoch ", epoch, " (detectors ",
                                      absl::StrJoin(detectors, ", "), ")"));
    guests.push_back(WatchedGuest{.peer_id = peer_id,
                                  .epoch = epoch,
                                  .doorbell = std::move(doorbells->first),
                                  .pidfd = std::move(handshake.who.pidfd),
                                  .mapping_control = std::move(mapping->first)});
  };

  auto gone = [&](const WatchedGuest& guest, v1::Detector detector, absl::Time noticed) {
    hub_->OnLocalGuestGone(guest.peer_id, guest.epoch, detector, absl::Now() - noticed);
  };

  // The host application is gone: the guests it served must see it now.
  auto drop_host = [&](const std::string& why) {
    std::vector<Occupancy> orphaned;
    for (WatchedGuest& guest : guests) {
      if (!guest.shared_with_host) continue;
      // shutdown(2), not just close: it acts on the socket, so the guest's
      // end hangs up even while some copy of the host end lives on (a child
      // the host application leaked it to). Our end is then useless as a
      // detector (it reports the hang-up too) and goes.
      ::shutdown(guest.doorbell.fd(), SHUT_RDWR);
      guest.doorbell = shm::Doorbell(shm::DoorbellEnd::kHost, shm::UniqueFd());
      guest.mapping_control.Reset();
      guest.shared_with_host = false;
      orphaned.push_back(Occupancy{guest.peer_id, guest.epoch});
    }
    // `guests` keeps its order (the poll layout indexes it); one left with
    // nothing to watch is dropped when the guests are next gone through.
    Log(LogLevel::kWarning,
        absl::StrCat("local socket: the host application with ", host->who(), " is gone (", why,
                     "); shut the doorbells of the ", orphaned.size(), " guests it served"));
    host.reset();
    hub_->UnregisterHost(absl::StrCat("the host application is gone: ", why), orphaned);
  };

  // Copies of the guest's host ends for the host application's link.
  auto share_with_host = [&](uint32_t peer_id, uint32_t epoch) {
    std::vector<shm::UniqueFd> fds;
    for (WatchedGuest& guest : guests) {
      if (guest.peer_id != peer_id || guest.epoch != epoch || guest.doorbell.fd() < 0) continue;
      absl::StatusOr<shm::UniqueFd> doorbell = shm::DupCloexec(guest.doorbell.fd());
      absl::StatusOr<shm::UniqueFd> mapping = shm::DupCloexec(guest.mapping_control.get());
      if (!doorbell.ok() || !mapping.ok()) {
        Log(LogLevel::kWarning,
            absl::StrCat("local socket: cannot share peer ", peer_id, "'s doorbell with the host "
                         "application: ", (!doorbell.ok() ? doorbell : mapping).status().message(),
                         "; its link will poll"));
        break;
      }
      fds.push_back(*std::move(doorbell));
      fds.push_back(*std::move(mapping));
      guest.shared_with_host = true;
      break;
    }
    return fds;
  };

  // Writes the records PeerHub owes the host application (PEER_ATTACHED
  // with the descriptors we hold for that guest, PEER_RECOVERING).
  auto deliver_notices = [&] {
    uint64_t count = 0;
    // Resets the eventfd; EAGAIN when nothing was signalled is fine.
    [[maybe_unused]] const ssize_t got = ::read(notices_.get(), &count, sizeof(count));
    std::vector<shm::HostRecord> notices = hub_->TakeHostNotices();
    if (!host.has_value()) return;  // PeerHub queues only while one is registered
    for (shm::HostRecord& record : notices) {
      std::vector<shm::UniqueFd> fds;
      if (record.type == shm::HostRecordType::kPeerAttached) {
        fds = share_with_host(record.peer_id, record.epoch);
        record.arg = static_cast<uint32_t>(fds.size());
      }
      if (absl::Status queued = host->Enqueue(record, std::move(fds)); !queued.ok()) {
        drop_host(std::string(queued.message()));
        return;
      }
    }
    if (absl::Status flushed = host->Flush(); !flushed.ok()) {
      drop_host(std::string(flushed.message()));
    }
  };

  // A handshake that sent "SHH1": register it, or refuse it and close.
  auto register_host = [&](Handshake& handshake) {
    const std::string who = handshake.who.Describe();
    if (handshake.bytes.size() != shm::kHostRequestSize) {
      Log(LogLevel::kWarning,
          absl::StrCat("local socket: dropped the host application with ", who, ": it sent ",
                       handshake.bytes.size() - shm::kHostRequestSize,
                       " bytes after SHH1 before REGISTERED"));
      return;
    }
    if (absl::Status registered = hub_->RegisterHost(who); !registered.ok()) {
      Log(LogLevel::kWarning, absl::StrCat("local socket: refused the host application with ",
                                           who, ": ", registered.message()));
      const shm::HostRefusal refusal = registered.code() == absl::StatusCode::kAlreadyExists
                                           ? shm::HostRefusal::kAlreadyRegistered
                                           : shm::HostRefusal::kShuttingDown;
      // The client may already be gone; there is nobody else to tell.
      shm::SendHostRecord(handshake.connection.get(), shm::RefusedRecord(refusal), {},
                          shm::DeadlineAfter(kReplyTimeout))
          .IgnoreError();
      return;
    }
    host.emplace(std::move(handshake.connection), std::move(handshake.who));
    absl::StatusOr<shm::UniqueFd> segment = shm::DupCloexec(hub_->segment().fd());
    if (!segment.ok()) {
      drop_host(absl::StrCat("cannot share the segment: ", segment.status().message()));
      return;
    }
    std::vector<shm::UniqueFd> fds;
    fds.push_back(*std::move(segment));
    // The queue is empty: this cannot fail, and REGISTERED goes first.
    host->Enqueue(shm::RegisteredRecord(), std::move(fds)).IgnoreError();
    Log(LogLevel::kInfo, absl::StrCat("local socket: host application with ", who, " registered"));
    deliver_notices();
  };

  // Layout: [wake, listener, notices, host connection, host pidfd,
  // handshakes..., per guest: doorbell, pidfd]. A negative fd is skipped by
  // poll(): no host, no pidfd, a doorbell shut with the host application.
  constexpr size_t kNoticesSlot = 2;
  constexpr size_t kHostSlot = 3;
  constexpr size_t kHostProcessSlot = 4;
  constexpr size_t kFirstHandshake = 5;
  std::vector<struct pollfd> polled;
  while (true) {
    polled.clear();
    polled.push_back({wake_.get(), POLLIN, 0});
    polled.push_back({listener_->fd(), POLLIN, 0});
    polled.push_back({notices_.get(), POLLIN, 0});
    const bool host_writes = host.has_value() && host->wants_write();
    const short host_events = static_cast<short>(POLLIN | POLLRDHUP | (host_writes ? POLLOUT : 0));
    polled.push_back({host.has_value() ? host->fd() : -1, host_events, 0});
    polled.push_back({host.has_value() ? host->pidfd() : -1, POLLIN, 0});
    absl::Time wake_by = next_prune;
    for (const Handshake& handshake : handshakes) {
      polled.push_back({handshake.connection.get(), POLLIN, 0});
      wake_by = std::min(wake_by, handshake.deadline);
    }
    const size_t first_guest = polled.size();
    for (const WatchedGuest& guest : guests) {
      // The hang-up only: rings queued on the doorbell are the host
      // application's to read (its copy is the same socket).
      polled.push_back({guest.doorbell.fd(), POLLRDHUP, 0});
      polled.push_back({guest.pidfd.valid() ? guest.pidfd.get() : -1, POLLIN, 0});
    }
    const int timeout_ms = static_cast<int>(
        std::clamp<int64_t>(absl::ToInt64Milliseconds(wake_by - absl::Now()) + 1, 0,
                            absl::ToInt64Milliseconds(kPrunePeriod)));
    if (::poll(polled.data(), polled.size(), timeout_ms) < 0 && errno != EINTR) {
      Log(LogLevel::kError, absl::StrCat("local socket: poll failed: ", std::strerror(errno),
                                         "; the local socket stops serving"));
      break;
    }
    const absl::Time now = absl::Now();
    if (polled[0].revents != 0) break;  // Stop()

    // The host application first: a recovery of one of its guests that
    // waited for it may then run as the guests' own events are handled.
    if (host.has_value()) {
      if (polled[kHostProcessSlot].revents != 0) {
        drop_host("its process exited");
      } else if ((polled[kHostSlot].revents & ~POLLOUT) != 0) {
        absl::StatusOr<std::vector<shm::HostRecord>> acks = host->ReadAvailable();
        if (!acks.ok()) {
          drop_host(std::string(acks.status().message()));
        } else {
          for (const shm::HostRecord& ack : *acks) {
            hub_->OnHostRecoveryReady(Occupancy{ack.peer_id, ack.epoch});
          }
        }
      }
    }
    if (host.has_value() && (polled[kHostSlot].revents & POLLOUT) != 0) {
      if (absl::Status flushed = host->Flush(); !flushed.ok()) {
        drop_host(std::string(flushed.message()));
      }
    }
    if (polled[kNoticesSlot].revents != 0) deliver_notices();

    // Watched guests: their events were polled with the layout above.
    std::vector<WatchedGuest> still_watched;
    for (size_t i = 0; i < guests.size(); ++i) {
      WatchedGuest& guest = guests[i];
      const short doorbell_events = polled[first_guest + 2 * i].revents;
      const short process_events = polled[first_guest + 2 * i + 1].revents;
      if (process_events != 0) {
        gone(guest, v1::DETECTOR_PROCESS_EXIT, now);
        continue;
      }
      // A doorbell shut with the host application just now says nothing
      // about the guest: its events predate the shutdown.
      if (doorbell_events != 0 && guest.doorbell.fd() >= 0) {
        // Asked for the hang-up only; the drain confirms it (what is left
        // queued is read first, and the end of the stream follows).
        absl::StatusOr<size_t> drained = guest.doorbell.Drain();
        if (!drained.ok()) {
          gone(guest, v1::DETECTOR_DOORBELL, now);
          continue;
        }
      }
      // Its doorbell went with the host application and there is no pidfd:
      // nothing of it is left to watch here (heartbeats still are, by Scan).
      if (guest.doorbell.fd() < 0 && !guest.pidfd.valid()) continue;
      still_watched.push_back(std::move(guest));
    }
    guests = std::move(still_watched);

    std::vector<Handshake> pending;
    for (size_t i = 0; i < handshakes.size(); ++i) {
      Handshake& handshake = handshakes[i];
      if (polled[kFirstHandshake + i].revents != 0) {
        const ReadResult read = ReadRequestBytes(handshake);
        if (read == ReadResult::kFailed) continue;
        if (shm::IsHostRequest(handshake.bytes)) {
          register_host(handshake);
          continue;
        }
        absl::StatusOr<std::optional<shm::BootstrapRequest>> request =
            TryDecodeRequest(handshake.bytes);
        if (!request.ok()) {
          // §11.2: an unknown request is closed without a reply.
          Log(LogLevel::kWarning, absl::StrCat("local socket: dropped a connection from ",
                                               handshake.who.Describe(), ": ",
                                               request.status().message()));
          continue;
        }
        if (request->has_value()) {
          serve(handshake, **request);
          continue;
        }
        if (read == ReadResult::kEnded) continue;  // closed before a whole request
      }
      if (now >= handshake.deadline) {
        Log(LogLevel::kWarning,
            absl::StrCat("local socket: dropped a connection from ", handshake.who.Describe(),
                         " that sent no complete request within ",
                         absl::FormatDuration(kHandshakeTimeout)));
        continue;
      }
      pending.push_back(std::move(handshake));
    }
    handshakes = std::move(pending);

    if (polled[1].revents != 0) {
      while (true) {
        absl::StatusOr<std::optional<shm::UniqueFd>> accepted = listener_->Accept();
        if (!accepted.ok()) {
          Log(LogLevel::kWarning, absl::StrCat("local socket: ", accepted.status().message()));
          break;
        }
        if (!accepted->has_value()) break;
        absl::StatusOr<PeerCredentials> who = ReadPeerCredentials((*accepted)->get());
        if (!who.ok()) {
          Log(LogLevel::kWarning, absl::StrCat("local socket: ", who.status().message()));
          continue;
        }
        if (handshakes.size() >= kMaxHandshakes) {
          Log(LogLevel::kWarning,
              absl::StrCat("local socket: dropped a connection from ", who->Describe(), ": ",
                           kMaxHandshakes, " handshakes are already in progress"));
          continue;
        }
        handshakes.push_back(Handshake{.connection = std::move(**accepted),
                                       .who = *std::move(who),
                                       .bytes = {},
                                       .deadline = now + kHandshakeTimeout});
      }
    }

    if (now >= next_prune) {
      next_prune = now + kPrunePeriod;
      std::erase_if(guests, [&](const WatchedGuest& guest) {
        return !hub_->IsCurrentOccupancy(guest.peer_id, guest.epoch);
      });
    }
  }

  // §12 host shutdown: host_goodbye is raised; wake every guest that sleeps
  // on its doorbell, then close ours (the hang-up tells stock Rust links).
  for (const WatchedGuest& guest : guests) {
    if (guest.doorbell.fd() >= 0) guest.doorbell.Signal().IgnoreError();
  }
  // The host application's connection closes with `host`: it sees us go.
  if (host.has_value()) {
    host.reset();
    hub_->UnregisterHost("shmhubd is shutting down", {});
  }
}

}  // namespace shmhub::server
