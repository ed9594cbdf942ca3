#include "server/local/host_connection.h"

#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"

namespace shmhub::server {

HostConnection::HostConnection(shm::UniqueFd socket, PeerCredentials who)
    : socket_(std::move(socket)), who_(std::move(who)), description_(who_.Describe()) {}

absl::Status HostConnection::Enqueue(const shm::HostRecord& record,
                                     std::vector<shm::UniqueFd> fds) {
  if (queue_.size() >= kMaxQueued) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the host application has not read its last ", kMaxQueued, " records"));
  }
  queue_.push_back(Outgoing{.record = record, .fds = std::move(fds), .sent = 0});
  return absl::OkStatus();
}

absl::Status HostConnection::Flush() {
  while (!queue_.empty()) {
    Outgoing& next = queue_.front();
    std::vector<int> fds;
    for (const shm::UniqueFd& fd : next.fds) fds.push_back(fd.get());
    absl::StatusOr<bool> done =
        shm::SendHostRecordSome(socket_.get(), next.record, fds, &next.sent);
    if (!done.ok()) return done.status();
    if (!*done) return absl::OkStatus();  // full: POLLOUT says when to go on
    queue_.pop_front();
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<shm::ReceivedHostRecord>> HostConnection::ReadAvailable() {
  std::vector<shm::ReceivedHostRecord> records;
  // Bounded, so a host that writes without pause cannot hold the loop; the
  // rest is still readable at the next poll.
  while (records.size() < kMaxReadPerCall) {
    absl::StatusOr<std::optional<shm::ReceivedHostRecord>> next = reader_.ReadOne(socket_.get());
    if (!next.ok()) return next.status();
    if (!next->has_value()) return records;
    // The decoder admits only what a host sends, with the fds it carries.
    records.push_back(**std::move(next));
  }
  return records;
}

}  // namespace shmhub::server
