#include "client/host/host_app.h"

#include <poll.h>
#include <sys/eventfd.h>
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

absl::StatusOr<std::unique_ptr<HostApp>> HostApp::Register(const std::string& socket_path,
                                                           HostAppOptions options) {
  const shm::Deadline deadline = shm::DeadlineAfter(ToChrono(options.register_timeout));
  absl::StatusOr<shm::UniqueFd> socket = shm::ConnectLocalSocket(socket_path, deadline);
  if (!socket.ok()) return socket.status();
  if (absl::Status sent = shm::SendAllBytes(socket->get(), shm::EncodeHostRequest()); !sent.ok()) {
    return shm::Annotate(sent, absl::StrCat("registering with shmhubd at ", socket_path));
  }
  shm::UniqueFd stop(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!stop.valid()) return absl::InternalError(absl::StrCat("eventfd: ", std::strerror(errno)));

  // The reader outlives this first record: PEER_ATTACHED records may follow
  // REGISTERED at once, and it never reads past the record it returns.
  shm::HostRecordReader reader(shm::HostControlSender::kDaemon);
  absl::StatusOr<shm::ReceivedHostRecord> reply = reader.ReadOneBefore(socket->get(), deadline);
  if (!reply.ok()) {
    if (shm::ShmErrcOf(reply.status()) == shm::ShmErrc::kIo &&
        std::chrono::steady_clock::now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "shmhubd at ", socket_path, " did not answer the registration within ",
          absl::FormatDuration(options.register_timeout)));
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
  absl::StatusOr<std::unique_ptr<shm::Segment>> segment =
      shm::Segment::AttachFd(reply->fds[0].get());
  if (!segment.ok()) {
    return shm::Annotate(segment.status(),
                    absl::StrCat("mapping the segment shmhubd at ", socket_path, " sent"));
  }
  std::unique_ptr<HostApp> app(
      new HostApp(*std::move(socket), std::move(stop), *std::move(segment), std::move(options)));
  // Nothing but the first record has been read, so the thread's reader
  // starts at a record boundary.
  app->thread_ = std::thread([raw = app.get()] { raw->Run(); });
  return app;
}

HostApp::HostApp(shm::UniqueFd socket, shm::UniqueFd stop, std::unique_ptr<shm::Segment> segment,
                 HostAppOptions options)
    : socket_(std::move(socket)),
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
    if (polled[0].revents != 0) {
      while (true) {
        absl::StatusOr<std::optional<shm::ReceivedHostRecord>> next =
            reader_.ReadOne(socket_.get());
        absl::Status handled = next.ok() ? absl::OkStatus() : next.status();
        if (handled.ok() && !next->has_value()) break;
        if (handled.ok()) handled = OnRecord(**std::move(next));
        if (!handled.ok()) {
          EndWith(handled);
          return;
        }
      }
    }
    if (absl::Status advanced = AdvanceHandshakes(); !advanced.ok()) {
      EndWith(advanced);
      return;
    }
  }
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
  if (fds.size() == shm::kPeerAttachedFdCount) {
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
  served_[record.peer_id] = Served{.epoch = record.epoch, .link = shared};
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
          ? absl::UnavailableError("shmhubd closed the host application's connection (it shut "
                                   "down or died)")
          : shm::Annotate(why, "the connection to shmhubd broke");
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
