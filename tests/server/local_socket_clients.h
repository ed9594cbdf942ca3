// Clients of the daemon's local socket played with raw shm/ calls, for the
// server tests (and the e2e tests' silent host): a guest that bootstraps
// (format §11), then claims its slot or not, and a host application that
// speaks the SHH1 protocol record by record (shm/host_control.h), so a test
// can answer, stay silent or misbehave. Every wait is bounded.
#ifndef SHMHUB_TESTS_SERVER_LOCAL_SOCKET_CLIENTS_H_
#define SHMHUB_TESTS_SERVER_LOCAL_SOCKET_CLIENTS_H_

#include <sys/socket.h>
#include <sys/un.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
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

// A guest's bootstrap before any claim: the connection and the daemon's
// reply, a success (fds: doorbell, segment, then mapping x2 for VSH1 or one
// for RSH0) or an error without fds.
struct LocalBootstrap {
  shm::UniqueFd connection;
  shm::ReceivedBootstrapResponse reply;
};

// Connects, sends `request` and reads the reply in `dialect` within
// kClientWait; nullopt (and a test failure) when none comes.
inline std::optional<LocalBootstrap> ExchangeBootstrap(const std::string& socket_path,
                                                       absl::Span<const uint8_t> request,
                                                       shm::BootstrapDialect dialect) {
  LocalBootstrap bootstrap{ConnectTo(socket_path), {}};
  EXPECT_EQ(::send(bootstrap.connection.get(), request.data(), request.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(request.size()));
  absl::StatusOr<shm::ReceivedBootstrapResponse> reply =
      shm::ReceiveBootstrapResponse(bootstrap.connection.get(), dialect, kClientWait);
  EXPECT_TRUE(reply.ok()) << reply.status();
  if (!reply.ok()) return std::nullopt;
  bootstrap.reply = *std::move(reply);
  return bootstrap;
}

// The VSH1 bootstrap. A reserved slot stays Reserved until it is claimed,
// and is released when the guest hangs up first.
inline std::optional<LocalBootstrap> RequestBootstrap(const std::string& socket_path) {
  const auto request = shm::EncodeVoxRequest();
  return ExchangeBootstrap(socket_path, request, shm::BootstrapDialect::kVox);
}

// The spec's RSH0 bootstrap naming `session_id` (a reservation's
// request_id); nullopt (and a test failure) when it cannot be encoded.
inline std::optional<LocalBootstrap> RequestSpecBootstrap(const std::string& socket_path,
                                                          const std::string& session_id) {
  const absl::StatusOr<std::vector<uint8_t>> request = shm::EncodeSpecRequest(session_id);
  EXPECT_TRUE(request.ok()) << request.status();
  if (!request.ok()) return std::nullopt;
  return ExchangeBootstrap(socket_path, *request, shm::BootstrapDialect::kSpec);
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

// What a guest does after a successful bootstrap (§11.1): maps the segment
// the daemon sent and claims the Reserved slot. nullopt for an error reply,
// and (with a test failure) when a step fails.
inline std::optional<LocalGuestClient> Claim(LocalBootstrap bootstrap) {
  if (bootstrap.reply.response.status != shm::BootstrapStatus::kSuccess) return std::nullopt;
  LocalGuestClient guest;
  guest.connection = std::move(bootstrap.connection);
  guest.reply = std::move(bootstrap.reply);
  absl::StatusOr<std::unique_ptr<shm::Segment>> segment =
      shm::Segment::AttachFd(guest.reply.fds.at(1).get());
  EXPECT_TRUE(segment.ok()) << segment.status();
  if (!segment.ok()) return std::nullopt;
  guest.segment = *std::move(segment);
  guest.peer_id = guest.reply.response.peer_id;
  absl::StatusOr<shm::PeerEntryView> entry = guest.segment->peers().Entry(guest.peer_id);
  EXPECT_TRUE(entry.ok()) << entry.status();
  if (!entry.ok()) return std::nullopt;
  guest.epoch = entry->LoadPair().second;
  // Succeeds only on (Reserved, epoch): the slot was the bootstrap's.
  EXPECT_TRUE(entry->ClaimFenced(guest.epoch).ok());
  return guest;
}

inline std::optional<LocalGuestClient> BootstrapAndClaim(const std::string& socket_path) {
  std::optional<LocalBootstrap> bootstrap = RequestBootstrap(socket_path);
  if (!bootstrap.has_value()) return std::nullopt;
  return Claim(*std::move(bootstrap));
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
  // Next(timeout), which must be a record of `type` (else the test fails).
  std::optional<shm::ReceivedHostRecord> Expect(shm::HostRecordType type,
                                                std::chrono::milliseconds timeout = kClientWait) {
    absl::StatusOr<shm::ReceivedHostRecord> next = Next(timeout);
    EXPECT_TRUE(next.ok()) << next.status();
    if (!next.ok()) return std::nullopt;
    EXPECT_EQ(next->record.type, type) << "got type " << static_cast<uint32_t>(next->record.type);
    if (next->record.type != type) return std::nullopt;
    return *std::move(next);
  }
  absl::Status Ack(uint32_t peer_id, uint32_t epoch) {
    return shm::SendHostRecord(connection_.get(), shm::RecoveryReadyRecord({peer_id, epoch}), {},
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
