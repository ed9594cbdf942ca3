#include "client/host/host_app.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "client/host/host_link.h"
#include "shm/doorbell.h"
#include "shm/local_socket_client.h"
#include "shm/peer_table.h"
#include "shm/poll_fd.h"
#include "shm/shm_error.h"

namespace shmhub::client {
namespace {

// How long RECOVERY_READY may wait for room on the connection. The daemon
// reads whenever it can, so running out means it is gone or wedged.
constexpr std::chrono::milliseconds kSendTimeout{1000};
// The thread's poll timeout while no handshake waits; the stop eventfd
// wakes it at once anyway.
constexpr absl::Duration kIdlePoll = absl::Seconds(1);

std::chrono::milliseconds ToChrono(absl::Duration d) {
  return std::chrono::milliseconds(std::max<int64_t>(0, absl::ToInt64Milliseconds(d)));
}

}  // namespace

absl::StatusOr<HostApp::Connection> HostApp::Connect(const std::string& socket_path,
                                                    absl::Duration timeout) {
  const shm::Deadline deadline = shm::DeadlineAfter(ToChrono(timeout));
  absl::StatusOr<shm::UniqueFd> socket = shm::ConnectLocalSocket(socket_path, deadline);
  if (!socket.ok()) return socket.status();
  if (absl::Status sent = shm::SendAllBytes(socket->get(), shm::EncodeHostRequest()); !sent.ok()) {
    return shm::Annotate(sent, absl::StrCat("registering with shmhubd at ", socket_path));
  }
  // The reader outlives this first record: PEER_ATTACHED records may follow
  // REGISTERED at once, and it never reads past the record it returns.
  auto reader = std::make_unique<shm::HostRecordReader>(shm::HostControlSender::kDaemon);
  absl::StatusOr<shm::ReceivedHostRecord> reply = reader->ReadOneBefore(socket->get(), deadline);
  if (!reply.ok()) {
    if (shm::ShmErrcOf(reply.status()) == shm::ShmErrc::kIo &&
        std::chrono::steady_clock::now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("shmhubd at ", socket_path, " did not answer the registration within ",
                       absl::FormatDuration(timeout)));
    }
    return shm::Annotate(reply.status(), absl::StrCat("registering with shmhubd at ", socket_path));
  }
  if (reply->record.type == shm::HostRecordType::kRefused) {
    if (reply->record.arg == static_cast<uint32_t>(shm::HostRefusal::kAlreadyRegistered)) {
      return absl::AlreadyExistsError(
          absl::StrCat("shmhubd at ", socket_path,
                       " refused the registration: another host application is registered "
                       "(one data-plane host per segment)"));
    }
    return absl::UnavailableError(
        absl::StrCat("shmhubd at ", socket_path, " refused the registration: it is shutting down"));
  }
  if (reply->record.type != shm::HostRecordType::kRegistered) {
    return shm::ShmError(shm::ShmErrc::kHostRecordBadField,
                         absl::StrCat("shmhubd at ", socket_path,
                                      " sent a peer record before REGISTERED"));
  }
  return Connection{.socket = *std::move(socket),
                    .reader = std::move(reader),
                    .segment = std::move(reply->fds[0])};
}

absl::StatusOr<std::unique_ptr<HostApp>> HostApp::Register(const std::string& socket_path,
                                                           HostAppOptions options) {
  absl::StatusOr<Connection> connection = Connect(socket_path, options.register_timeout);
  if (!connection.ok()) return connection.status();
  shm::UniqueFd stop(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!stop.valid()) return absl::InternalError(absl::StrCat("eventfd: ", std::strerror(errno)));
  absl::StatusOr<std::unique_ptr<shm::Segment>> segment =
      shm::Segment::AttachFd(connection->segment.get());
  if (!segment.ok()) {
    return shm::Annotate(segment.status(),
                         absl::StrCat("mapping the segment shmhubd at ", socket_path, " sent"));
  }
  std::unique_ptr<HostApp> app(new HostApp(socket_path, *std::move(connection), std::move(stop),
                                           *std::move(segment), std::move(options)));
  // Nothing but the first record has been read, so the thread's reader
  // starts at a record boundary.
  app->thread_ = std::thread([raw = app.get()] { raw->Run(); });
  return app;
}

HostApp::HostApp(std::string socket_path, Connection connection, shm::UniqueFd stop,
                 std::unique_ptr<shm::Segment> segment, HostAppOptions options)
    : socket_path_(std::move(socket_path)),
      socket_(std::move(connection.socket)),
      reader_(std::move(connection.reader)),
      stop_(std::move(stop)),
      segment_(std::move(segment)),
      options_(std::move(options)) {}

HostApp::~HostApp() {
  const uint64_t one = 1;
  // Cannot fail short of a closed fd: the counter is far from overflowing.
  [[maybe_unused]] const ssize_t written = ::write(stop_.get(), &one, sizeof(one));
  if (thread_.joinable()) thread_.join();
  // The thread is gone: its state is ours. The daemon sees the connection
  // close with socket_, which unregisters us; acknowledgements still owed
  // then count as given.
  for (auto& [peer_id, served] : served_) served.link->Close();
  for (Handshake& handshake : handshakes_) handshake.link->Close();
}

std::optional<HostEvent> HostApp::NextEvent(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !events_.empty(); };
  mu_.AwaitWithDeadline(absl::Condition(&ready), deadline);
  if (events_.empty()) return std::nullopt;
  HostEvent event = std::move(events_.front());
  events_.pop_front();
  return event;
}

absl::Status HostApp::status() const {
  absl::MutexLock lock(&mu_);
  return status_;
}

size_t HostApp::abandoned_handshakes() const {
  absl::MutexLock lock(&mu_);
  return abandoned_;
}

size_t HostApp::reconnections() const {
  absl::MutexLock lock(&mu_);
  return reconnections_;
}

void HostApp::Push(HostEvent event) {
  absl::MutexLock lock(&mu_);
  events_.push_back(std::move(event));
}

void HostApp::Run() {
  while (true) {
    const absl::Duration wait = handshakes_.empty() ? kIdlePoll : options_.release_poll;
    struct pollfd polled[2] = {{socket_.get(), POLLIN | POLLRDHUP, 0}, {stop_.get(), POLLIN, 0}};
    const int timeout_ms = static_cast<int>(std::max<int64_t>(1, absl::ToInt64Milliseconds(wait)));
    if (::poll(polled, 2, timeout_ms) < 0 && errno != EINTR) {
      EndWith(absl::InternalError(absl::StrCat("poll: ", std::strerror(errno))));
      return;
    }
    if (polled[1].revents != 0) return;  // the destructor
    absl::Status status = polled[0].revents != 0 ? ReadRecords() : absl::OkStatus();
    if (status.ok()) status = AdvanceHandshakes();
    if (status.ok()) continue;
    // A hang-up or a broken socket is the daemon going away; a record that
    // breaks the protocol is this daemon's fault, and ends it all.
    const shm::ShmErrc errc = shm::ShmErrcOf(status);
    const bool daemon_went = errc == shm::ShmErrc::kHostControlClosed ||
                             errc == shm::ShmErrc::kHostRecordTruncated ||
                             errc == shm::ShmErrc::kIo;
    if (!daemon_went || !Reconnect(status)) {
      if (!daemon_went) EndWith(status);
      return;
    }
  }
}

absl::Status HostApp::ReadRecords() {
  while (true) {
    absl::StatusOr<std::optional<shm::ReceivedHostRecord>> next = reader_->ReadOne(socket_.get());
    if (!next.ok()) return next.status();
    if (!next->has_value()) return absl::OkStatus();
    if (absl::Status handled = OnRecord(**std::move(next)); !handled.ok()) return handled;
  }
}

bool HostApp::Reconnect(const absl::Status& why) {
  socket_.Reset();
  absl::Duration backoff = options_.reconnect_backoff;
  while (true) {
    // host_goodbye: the daemon stopped for good and the guests are leaving.
    if (segment_->HostGoodbye()) {
      EndWith(why);
      return false;
    }
    struct pollfd stop = {stop_.get(), POLLIN, 0};
    const int wait_ms = static_cast<int>(std::max<int64_t>(1, absl::ToInt64Milliseconds(backoff)));
    if (::poll(&stop, 1, wait_ms) > 0) return false;  // the destructor
    backoff = std::min(backoff * 2, options_.max_reconnect_backoff);
    absl::StatusOr<Connection> connection = Connect(socket_path_, options_.register_timeout);
    if (!connection.ok()) {
      // Another host application took over: this one has nothing to serve.
      if (connection.status().code() == absl::StatusCode::kAlreadyExists) {
        EndWith(connection.status());
        return false;
      }
      continue;  // nobody listens yet, or it is still starting or stopping
    }
    struct stat ours {};
    struct stat theirs {};
    if (::fstat(segment_->fd(), &ours) != 0 || ::fstat(connection->segment.get(), &theirs) != 0 ||
        ours.st_dev != theirs.st_dev || ours.st_ino != theirs.st_ino) {
      EndWith(absl::FailedPreconditionError(absl::StrCat(
          "shmhubd at ", socket_path_,
          " serves a new segment (the old one was reset or replaced): every link to the old "
          "one is closed; register again to serve the new one")));
      return false;
    }
    socket_ = std::move(connection->socket);
    reader_ = std::move(connection->reader);
    if (absl::Status handed = HandBackLinks(); !handed.ok()) {
      socket_.Reset();
      continue;  // it went again: start over
    }
    absl::MutexLock lock(&mu_);
    ++reconnections_;
    return true;
  }
}

absl::Status HostApp::HandBackLinks() {
  for (const auto& [peer_id, served] : served_) {
    std::vector<int> fds;
    for (const shm::UniqueFd& fd : served.handback) fds.push_back(fd.get());
    const shm::HostRecord record = shm::PeerHandbackRecord(
        {peer_id, served.epoch}, static_cast<uint32_t>(fds.size()));
    if (absl::Status sent =
            shm::SendHostRecord(socket_.get(), record, fds, shm::DeadlineAfter(kSendTimeout));
        !sent.ok()) {
      return shm::Annotate(sent, "handing links back to shmhubd");
    }
  }
  return absl::OkStatus();
}

absl::Status HostApp::OnRecord(shm::ReceivedHostRecord received) {
  switch (received.record.type) {
    case shm::HostRecordType::kPeerAttached:
      return OnPeerAttached(received.record, std::move(received.fds));
    case shm::HostRecordType::kPeerRecovering:
      return OnPeerRecovering(received.record);
    default:
      return shm::ShmError(shm::ShmErrc::kHostRecordBadField,
                           "shmhubd sent REGISTERED or REFUSED again on a registered connection");
  }
}

absl::Status HostApp::OnPeerAttached(const shm::HostRecord& record,
                                     std::vector<shm::UniqueFd> fds) {
  // A new daemon announces every attached guest, this one's links too: the
  // link keeps serving, and the copies it sent are not needed.
  if (auto same = served_.find(record.peer_id);
      same != served_.end() && same->second.epoch == record.epoch) {
    return absl::OkStatus();
  }
  // The daemon ends an occupancy before it announces the slot's next one;
  // should a record have been lost, the old link must not serve the new.
  if (auto old = served_.find(record.peer_id); old != served_.end()) {
    old->second.link->Stop();
    Push(HostEvent{.kind = HostEventKind::kPeerDeparting,
                   .peer_id = record.peer_id,
                   .epoch = old->second.epoch,
                   .link = nullptr,
                   .departure = shm::PeerDeparture::kVanished,
                   .status = absl::OkStatus()});
    served_.erase(old);
  }
  std::optional<shm::Doorbell> doorbell;
  shm::UniqueFd mapping_control;
  std::vector<shm::UniqueFd> handback;
  if (fds.size() == shm::kPeerAttachedFdCount) {
    for (const shm::UniqueFd& fd : fds) {
      absl::StatusOr<shm::UniqueFd> copy = shm::DupCloexec(fd.get());
      if (!copy.ok()) return shm::Annotate(copy.status(), "keeping a copy of a peer's sockets");
      handback.push_back(*std::move(copy));
    }
    doorbell.emplace(shm::DoorbellEnd::kHost, std::move(fds[0]));
    mapping_control = std::move(fds[1]);
  }
  absl::StatusOr<std::unique_ptr<RingLink>> link =
      HostLink::Create(segment_.get(), record.occupancy(), std::move(doorbell),
                       std::move(mapping_control), options_.link_options);
  // FAILED_PRECONDITION: the guest is already gone (it attached and left
  // between two scans); PEER_RECOVERING follows and is answered at once.
  if (!link.ok()) return absl::OkStatus();
  std::shared_ptr<RingLink> shared = *std::move(link);
  served_[record.peer_id] =
      Served{.epoch = record.epoch, .link = shared, .handback = std::move(handback)};
  Push(HostEvent{.kind = HostEventKind::kPeerAttached,
                 .peer_id = record.peer_id,
                 .epoch = record.epoch,
                 .link = std::move(shared),
                 .departure = shm::PeerDeparture::kLeft,
                 .status = absl::OkStatus()});
  return absl::OkStatus();
}

absl::Status HostApp::OnPeerRecovering(const shm::HostRecord& record) {
  const auto departure = static_cast<shm::PeerDeparture>(record.arg);
  auto served = served_.find(record.peer_id);
  if (served == served_.end() || served->second.epoch != record.epoch) {
    // No link of ours touches that occupancy: nothing to release. A
    // vanished one awaits no answer.
    if (departure == shm::PeerDeparture::kVanished) return absl::OkStatus();
    return SendRecoveryReady(record.occupancy());
  }
  std::shared_ptr<RingLink> link = std::move(served->second.link);
  served_.erase(served);
  // From here on nothing of the link touches the rings; the application's
  // threads see ABORTED and release what they hold.
  link->Stop();
  Push(HostEvent{.kind = HostEventKind::kPeerDeparting,
                 .peer_id = record.peer_id,
                 .epoch = record.epoch,
                 .link = nullptr,
                 .departure = departure,
                 .status = absl::OkStatus()});
  if (departure == shm::PeerDeparture::kVanished) return absl::OkStatus();
  handshakes_.push_back(Handshake{.occupancy = record.occupancy(),
                                  .link = std::move(link),
                                  .give_up_at = absl::Now() + options_.release_timeout});
  return absl::OkStatus();
}

absl::Status HostApp::AdvanceHandshakes() {
  const absl::Time now = absl::Now();
  std::vector<Handshake> waiting;
  for (Handshake& handshake : handshakes_) {
    if (handshake.link->outstanding_views() == 0) {
      if (absl::Status sent = SendRecoveryReady(handshake.occupancy); !sent.ok()) {
        return sent;
      }
      continue;
    }
    if (!DaemonStillOwes(handshake.occupancy) || now >= handshake.give_up_at) {
      absl::MutexLock lock(&mu_);
      ++abandoned_;
      continue;
    }
    waiting.push_back(std::move(handshake));
  }
  handshakes_ = std::move(waiting);
  return absl::OkStatus();
}

absl::Status HostApp::SendRecoveryReady(const shm::Occupancy& occupancy) {
  absl::Status sent = shm::SendHostRecord(socket_.get(), shm::RecoveryReadyRecord(occupancy), {},
                                          shm::DeadlineAfter(kSendTimeout));
  if (!sent.ok()) return shm::Annotate(sent, "sending RECOVERY_READY to shmhubd");
  return absl::OkStatus();
}

bool HostApp::DaemonStillOwes(const shm::Occupancy& occupancy) const {
  absl::StatusOr<shm::PeerEntryView> entry = segment_->peers().Entry(occupancy.peer_id);
  if (!entry.ok()) return false;
  const shm::PeerPair pair = entry->LoadPair();
  if (pair.second != occupancy.epoch) return false;
  // Recovery ends in Empty; a Reserved word at our epoch is not ours either.
  return !pair.first.Is(shm::PeerState::kEmpty) && !pair.first.Is(shm::PeerState::kReserved);
}

void HostApp::EndWith(const absl::Status& why) {
  for (auto& [peer_id, served] : served_) served.link->Close();
  for (Handshake& handshake : handshakes_) handshake.link->Close();
  const absl::Status gone =
      shm::ShmErrcOf(why) == shm::ShmErrc::kHostControlClosed
          ? absl::UnavailableError("shmhubd closed the host application's connection and said "
                                   "goodbye (host_goodbye is set: it stopped for good)")
          : shm::Annotate(why, "the connection to shmhubd ended");
  absl::MutexLock lock(&mu_);
  status_ = gone;
  events_.push_back(HostEvent{.kind = HostEventKind::kDaemonGone,
                              .peer_id = 0,
                              .epoch = 0,
                              .link = nullptr,
                              .departure = shm::PeerDeparture::kLeft,
                              .status = gone});
}

}  // namespace shmhub::client
