// Clients of the daemon's local socket played with raw shm/ calls, for the
// server tests: a guest that bootstraps (format §11) and claims its slot,
// and a host application that speaks the SHH1 protocol record by record
// (shm/host_control.h), so a test can answer, stay silent or misbehave.
// Every wait is bounded.
#ifndef SHMHUB_TESTS_SERVER_LOCAL_SOCKET_CLIENTS_H_
#define SHMHUB_TESTS_SERVER_LOCAL_SOCKET_CLIENTS_H_

#include <sys/socket.h>
#include <sys/un.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "shm/bootstrap.h"
#include "shm/host_control.h"
#include "shm/peer_table.h"
#include "shm/poll_fd.h"
#include "shm/segment.h"
#include "shm/unique_fd.h"

namespace shmhub::server::testing {

inline constexpr std::chrono::milliseconds kClientWait{10'000};

inline shm::UniqueFd ConnectTo(const std::string& path) {
  shm::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  struct sockaddr_un address {};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
  EXPECT_EQ(::connect(fd.get(), reinterpret_cast<const struct sockaddr*>(&address),
                      sizeof(address)),
            0)
      << std::strerror(errno);
  return fd;
}

// A guest that bootstrapped with VSH1 and claimed its Reserved slot.
struct LocalGuestClient {
  shm::UniqueFd connection;
  shm::ReceivedBootstrapResponse reply;  // fds: doorbell, segment, mapping x2
  std::unique_ptr<shm::Segment> segment;
  uint32_t peer_id = 0;
  uint32_t epoch = 0;

  int doorbell() const { return reply.fds.at(0).get(); }
  int mapping_send() const { return reply.fds.at(3).get(); }
  // Closes every copy of the guest's doorbell end: what its death does.
  void HangUp() { reply.fds.at(0).Reset(); }
};

inline std::optional<LocalGuestClient> BootstrapAndClaim(const std::string& socket_path) {
  LocalGuestClient guest;
  guest.connection = ConnectTo(socket_path);
  const auto request = shm::EncodeVoxRequest();
  EXPECT_EQ(::send(guest.connection.get(), request.data(), request.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(request.size()));
  absl::StatusOr<shm::ReceivedBootstrapResponse> reply = shm::ReceiveBootstrapResponse(
      guest.connection.get(), shm::BootstrapDialect::kVox, kClientWait);
  EXPECT_TRUE(reply.ok()) << reply.status();
  if (!reply.ok() || reply->response.status != shm::BootstrapStatus::kSuccess) return std::nullopt;
  guest.reply = *std::move(reply);
  absl::StatusOr<std::unique_ptr<shm::Segment>> segment =
      shm::Segment::AttachFd(guest.reply.fds.at(1).get());
  EXPECT_TRUE(segment.ok()) << segment.status();
  if (!segment.ok()) return std::nullopt;
  guest.segment = *std::move(segment);
  guest.peer_id = guest.reply.response.peer_id;
  shm::PeerEntryView entry = *guest.segment->peers().Entry(guest.peer_id);
  guest.epoch = entry.LoadPair().second;
  EXPECT_TRUE(entry.ClaimFenced(guest.epoch).ok());
  return guest;
}

// A host application speaking the protocol by hand.
class RawHostClient {
 public:
  explicit RawHostClient(const std::string& socket_path) : connection_(ConnectTo(socket_path)) {
    const auto request = shm::EncodeHostRequest();
    EXPECT_EQ(::send(connection_.get(), request.data(), request.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(request.size()));
  }

  // The next record the daemon sends, within `timeout`.
  absl::StatusOr<shm::ReceivedHostRecord> Next(std::chrono::milliseconds timeout = kClientWait) {
    return reader_.ReadOneBefore(connection_.get(), shm::DeadlineAfter(timeout));
  }
  // Next(), which must be a record of `type` (else the test fails).
  std::optional<shm::ReceivedHostRecord> Expect(shm::HostRecordType type) {
    absl::StatusOr<shm::ReceivedHostRecord> next = Next();
    EXPECT_TRUE(next.ok()) << next.status();
    if (!next.ok()) return std::nullopt;
    EXPECT_EQ(next->record.type, type) << "got type " << static_cast<uint32_t>(next->record.type);
    if (next->record.type != type) return std::nullopt;
    return *std::move(next);
  }
  absl::Status Ack(uint32_t peer_id, uint32_t epoch) {
    return shm::SendHostRecord(connection_.get(), shm::RecoveryReadyRecord(peer_id, epoch), {},
                               shm::DeadlineAfter(kClientWait));
  }
  int fd() const { return connection_.get(); }
  void HangUp() { connection_.Reset(); }

 private:
  shm::UniqueFd connection_;
  shm::HostRecordReader reader_{shm::HostControlSender::kDaemon};
};

}  // namespace shmhub::server::testing

#endif  // SHMHUB_TESTS_SERVER_LOCAL_SOCKET_CLIENTS_H_
