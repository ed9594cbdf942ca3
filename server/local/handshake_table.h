// HandshakeTable: the local socket's connections that have not finished
// their first request yet (format §11 bootstrap, or the host application's
// "SHH1"), each bounded in time and size.
//
// A connection is admitted with its credentials and a deadline. Whenever
// poll() says it is readable, what it sent is appended; once the bytes
// decide the request, the connection leaves the table as a
// CompletedHandshake for the caller to serve. A connection that hangs up,
// fails, sends an unknown magic (§11.2: closed without a reply) or lets its
// deadline pass is dropped and logged. The table holds at most kCapacity
// connections, so a client that connects and says nothing costs one slot
// here, never the loop.
//
// Thread safety: none; the socket server's loop owns it.
#ifndef SHMHUB_SERVER_LOCAL_HANDSHAKE_TABLE_H_
#define SHMHUB_SERVER_LOCAL_HANDSHAKE_TABLE_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/time/time.h"
#include "server/local/peer_credentials.h"
#include "server/local/poll_set.h"
#include "shm/bootstrap.h"
#include "shm/unique_fd.h"

namespace shmhub::server {

struct Handshake {
  shm::UniqueFd connection;
  PeerCredentials who;
  std::vector<uint8_t> bytes;  // what the client sent so far
  absl::Time deadline;
};

// A handshake whose first request is complete.
struct CompletedHandshake {
  enum class Kind {
    kGuest,  // a bootstrap request (VSH1 or RSH0): `request` holds it
    kHost,   // "SHH1": the data-plane host application registering
  };
  Kind kind = Kind::kGuest;
  Handshake handshake;
  shm::BootstrapRequest request;
};

class HandshakeTable {
 public:
  static constexpr size_t kCapacity = 64;
  // A client gets this long to send its request after connecting.
  static constexpr absl::Duration kTimeout = absl::Seconds(2);

  HandshakeTable() = default;
  HandshakeTable(const HandshakeTable&) = delete;
  HandshakeTable& operator=(const HandshakeTable&) = delete;

  // Takes a freshly accepted connection, due by now + kTimeout. False when
  // the table is full: the connection is then closed (and logged).
  bool Admit(shm::UniqueFd connection, PeerCredentials who, absl::Time now);

  // Adds every connection for POLLIN; remembers where.
  void AddTo(PollSet& polled);
  // Reads the connections `polled` reported (as laid out by the last
  // AddTo), drops the failed, finished-early, unknown and overdue ones, and
  // returns those whose request is complete, in admission order.
  std::vector<CompletedHandshake> Collect(const PollSet& polled, absl::Time now);

  // The earliest deadline; absl::InfiniteFuture() when the table is empty.
  absl::Time NextDeadline() const;
  size_t size() const { return pending_.size(); }

 private:
  std::vector<Handshake> pending_;
  size_t first_index_ = 0;  // of pending_[0] in the last AddTo's PollSet
  size_t polled_count_ = 0;  // how many of pending_ that AddTo added
};

}  // namespace shmhub::server

#endif  // SHMHUB_SERVER_LOCAL_HANDSHAKE_TABLE_H_
