// HostConnection: the daemon's end of the registered data-plane host
// application's connection on the local socket (docs/host-protocol.md,
// codec in shm/host_control.h): the records still to be written to it, in
// order, and the RECOVERY_READY records read from it.
//
// Writing never blocks the socket server's poll loop: records wait in a
// queue until the socket takes them (wants_write() asks for POLLOUT). A
// host application that stops reading is not waited for: past kMaxQueued
// unsent records Enqueue fails and the caller drops it, as it does on any
// error here (hang-up, a record the host may not send, a bad descriptor).
//
// The connection and the process behind it (a pidfd, when the kernel gives
// one) both say when the host application is gone.
//
// Thread safety: none; one thread (LocalSocketServer's) owns it.
#ifndef SHMHUB_SERVER_LOCAL_HOST_CONNECTION_H_
#define SHMHUB_SERVER_LOCAL_HOST_CONNECTION_H_

#include <cstddef>
#include <deque>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/local/peer_credentials.h"
#include "shm/host_control.h"
#include "shm/unique_fd.h"

namespace shmhub::server {

class HostConnection {
 public:
  // `socket` is connected and non-blocking or blocking (every call here
  // uses MSG_DONTWAIT); `who` are its credentials.
  HostConnection(shm::UniqueFd socket, PeerCredentials who);

  HostConnection(const HostConnection&) = delete;
  HostConnection& operator=(const HostConnection&) = delete;

  int fd() const { return socket_.get(); }
  // -1 when there is none.
  int pidfd() const { return who_.pidfd.valid() ? who_.pidfd.get() : -1; }
  const std::string& who() const { return description_; }

  // Queues `record` with the descriptors it carries (owned until sent).
  // RESOURCE_EXHAUSTED once kMaxQueued records are waiting.
  absl::Status Enqueue(const shm::HostRecord& record, std::vector<shm::UniqueFd> fds);
  // Writes what the socket takes now. An error means the host is gone.
  absl::Status Flush();
  bool wants_write() const { return !queue_.empty(); }

  // The records that have arrived (RECOVERY_READY, PEER_HANDBACK with its
  // descriptors), at most kMaxReadPerCall. An error means the host is gone
  // (kHostControlClosed) or broke the protocol.
  absl::StatusOr<std::vector<shm::ReceivedHostRecord>> ReadAvailable();

  // Far more than a host that reads at all ever lets pile up: a few records
  // per guest slot.
  static constexpr size_t kMaxQueued = 4096;
  static constexpr size_t kMaxReadPerCall = 256;

 private:
  struct Outgoing {
    shm::HostRecord record;
    std::vector<shm::UniqueFd> fds;
    size_t sent = 0;  // bytes of `record` already written
  };

  shm::UniqueFd socket_;
  PeerCredentials who_;
  std::string description_;
  shm::HostRecordReader reader_{shm::HostControlSender::kHost};
  std::deque<Outgoing> queue_;
};

}  // namespace shmhub::server

#endif  // SHMHUB_SERVER_LOCAL_HOST_CONNECTION_H_
