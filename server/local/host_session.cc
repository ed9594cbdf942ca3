#include "server/local/host_session.h"

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "server/base/log.h"
#include "shm/doorbell.h"
#include "shm/host_control.h"
#include "shm/poll_fd.h"

namespace shmhub::server {
namespace {

// REFUSED is one record on a fresh socket; this only bounds a client that
// never reads.
constexpr std::chrono::milliseconds kReplyTimeout{1000};

}  // namespace

HostSession::HostSession(PeerHub* hub, WatchedGuests* guests, shm::UniqueFd notices)
    : hub_(hub), guests_(guests), notices_(std::move(notices)) {}

void HostSession::Register(Handshake handshake) {
  const std::string who = handshake.who.Describe();
  if (handshake.bytes.size() != shm::kHostRequestSize) {
    Log(LogLevel::kWarning,
        absl::StrCat("local socket: dropped the host application with ", who, ": it sent ",
                     handshake.bytes.size() - shm::kHostRequestSize,
                     " bytes after SHH1 before REGISTERED"));
    return;
  }
  if (absl::Status registered = hub_->RegisterHost(who); !registered.ok()) {
    Log(LogLevel::kWarning, absl::StrCat("local socket: refused the host application with ", who,
                                         ": ", registered.message()));
    const shm::HostRefusal refusal = registered.code() == absl::StatusCode::kAlreadyExists
                                         ? shm::HostRefusal::kAlreadyRegistered
                                         : shm::HostRefusal::kShuttingDown;
    // The client may already be gone; there is nobody else to tell.
    shm::SendHostRecord(handshake.connection.get(), shm::RefusedRecord(refusal), {},
                        shm::DeadlineAfter(kReplyTimeout))
        .IgnoreError();
    return;
  }
  host_.emplace(std::move(handshake.connection), std::move(handshake.who));
  absl::StatusOr<shm::UniqueFd> segment = shm::DupCloexec(hub_->segment().fd());
  if (!segment.ok()) {
    Drop(absl::StrCat("cannot share the segment: ", segment.status().message()));
    return;
  }
  std::vector<shm::UniqueFd> fds;
  fds.push_back(*std::move(segment));
  // The queue is empty: this cannot fail, and REGISTERED goes first.
  host_->Enqueue(shm::RegisteredRecord(), std::move(fds)).IgnoreError();
  Log(LogLevel::kInfo, absl::StrCat("local socket: host application with ", who, " registered"));
  DeliverNotices();
}

void HostSession::AddTo(PollSet& polled) {
  notices_index_ = polled.Add(notices_.get(), POLLIN);
  connection_index_.reset();
  if (!host_.has_value()) return;
  const short events = static_cast<short>(POLLIN | POLLRDHUP | (host_->wants_write() ? POLLOUT : 0));
  connection_index_ = polled.Add(host_->fd(), events);
  polled.Add(host_->pidfd(), POLLIN);
}

void HostSession::HandleEvents(const PollSet& polled) {
  // The host application first: a recovery of one of its guests that waited
  // for it may then run as the guests' own events are handled.
  if (host_.has_value() && connection_index_.has_value()) {
    const short connection_events = polled.revents(*connection_index_);
    if (polled.revents(*connection_index_ + 1) != 0) {
      Drop("its process exited");
    } else if ((connection_events & ~POLLOUT) != 0) {
      absl::StatusOr<std::vector<shm::ReceivedHostRecord>> records = host_->ReadAvailable();
      if (!records.ok()) {
        Drop(std::string(records.status().message()));
      } else {
        for (shm::ReceivedHostRecord& received : *records) OnHostRecord(std::move(received));
      }
    }
    if (host_.has_value() && (connection_events & POLLOUT) != 0) {
      if (absl::Status flushed = host_->Flush(); !flushed.ok()) {
        Drop(std::string(flushed.message()));
      }
    }
  }
  connection_index_.reset();
  if (polled.revents(notices_index_) != 0) DeliverNotices();
}

void HostSession::OnHostRecord(shm::ReceivedHostRecord received) {
  const shm::Occupancy occupancy = received.record.occupancy();
  if (received.record.type == shm::HostRecordType::kRecoveryReady) {
    hub_->OnHostRecoveryReady(occupancy);
    return;
  }
  // PEER_HANDBACK: a host application that served this guest under an
  // earlier daemon; with its copies of the host ends, the doorbell is
  // watched again.
  if (!hub_->OnHostHandback(occupancy, received.fds.size() == shm::kPeerAttachedFdCount)) return;
  if (received.fds.size() != shm::kPeerAttachedFdCount) return;
  guests_->Rewatch(occupancy, shm::Doorbell(shm::DoorbellEnd::kHost, std::move(received.fds[0])),
                   std::move(received.fds[1]));
}

void HostSession::WakeForNotices() const {
  const uint64_t one = 1;
  // An eventfd write fails only when the counter would overflow, and then
  // the loop has a wake-up pending anyway.
  [[maybe_unused]] const ssize_t written = ::write(notices_.get(), &one, sizeof(one));
}

void HostSession::Close(const std::string& why) {
  if (!host_.has_value()) return;
  host_.reset();
  hub_->UnregisterHost(why, {});
}

void HostSession::DeliverNotices() {
  uint64_t count = 0;
  // Resets the eventfd; EAGAIN when nothing was signalled is fine.
  [[maybe_unused]] const ssize_t got = ::read(notices_.get(), &count, sizeof(count));
  std::vector<shm::HostRecord> notices = hub_->TakeHostNotices();
  if (!host_.has_value()) return;  // PeerHub queues only while one is registered
  for (shm::HostRecord& record : notices) {
    std::vector<shm::UniqueFd> fds;
    if (record.type == shm::HostRecordType::kPeerAttached) {
      fds = guests_->ShareWithHost(shm::Occupancy{record.peer_id, record.epoch});
      record.arg = static_cast<uint32_t>(fds.size());
    }
    if (absl::Status queued = host_->Enqueue(record, std::move(fds)); !queued.ok()) {
      Drop(std::string(queued.message()));
      return;
    }
  }
  if (absl::Status flushed = host_->Flush(); !flushed.ok()) {
    Drop(std::string(flushed.message()));
  }
}

void HostSession::Drop(const std::string& why) {
  const std::vector<shm::Occupancy> orphaned = guests_->CutOffFromHost();
  Log(LogLevel::kWarning,
      absl::StrCat("local socket: the host application with ", host_->who(), " is gone (", why,
                   "); shut the doorbells of the ", orphaned.size(), " guests it served"));
  host_.reset();
  hub_->UnregisterHost(absl::StrCat("the host application is gone: ", why), orphaned);
}

}  // namespace shmhub::server
