// HostSession: the data-plane host application's session on the local
// socket (docs/host-protocol.md): registration, the records PeerHub owes
// it, its RECOVERY_READY answers, and its departure.
//
//   "SHH1" handshake --Register--> PeerHub::RegisterHost; REGISTERED + the
//                                  segment's descriptor, then every owed record
//   PeerHub owes a record --(notice callback: eventfd)--> DeliverNotices:
//     PEER_ATTACHED with copies of the guest's host ends (WatchedGuests),
//     PEER_RECOVERING
//   RECOVERY_READY read --> PeerHub::OnHostRecoveryReady
//   PEER_HANDBACK read (a host that served these guests under an earlier
//     daemon) --> PeerHub::OnHostHandback; its doorbell is watched again
//   connection hangs up, its process exits, or it breaks the protocol
//     --> the doorbells shared with it are shut (WatchedGuests::CutOffFromHost),
//         PeerHub::UnregisterHost; a new host application may register
//
// One host application at a time: a second gets REFUSED (or REFUSED
// shutting-down), and so does one that sent bytes after SHH1 before its
// REGISTERED. Writes never block the loop (HostConnection queues them).
//
// WakeForNotices() is the one method called from other threads: PeerHub's
// notice callback, under the hub's lock; it only writes the eventfd.
//
// Thread safety: the socket server's loop owns everything else.
#ifndef SHMHUB_SERVER_LOCAL_HOST_SESSION_H_
#define SHMHUB_SERVER_LOCAL_HOST_SESSION_H_

#include <cstddef>
#include <optional>
#include <string>

#include "server/hub/peer_hub.h"
#include "server/local/handshake_table.h"
#include "server/local/host_connection.h"
#include "server/local/poll_set.h"
#include "server/local/watched_guests.h"
#include "shm/host_control.h"
#include "shm/unique_fd.h"

namespace shmhub::server {

class HostSession {
 public:
  // `notices` is a non-blocking eventfd. `hub` and `guests` must outlive
  // this.
  HostSession(PeerHub* hub, WatchedGuests* guests, shm::UniqueFd notices);
  HostSession(const HostSession&) = delete;
  HostSession& operator=(const HostSession&) = delete;

  // Registers the host application whose handshake sent "SHH1", or refuses
  // it (the connection then closes).
  void Register(Handshake handshake);

  // Adds the notice eventfd, and the connection (POLLOUT while records
  // wait) and pidfd of a registered host; remembers where.
  void AddTo(PollSet& polled);
  // In order: a host whose process exited or whose connection failed is
  // dropped; its acknowledgements go to PeerHub; queued records are
  // written; owed records are delivered.
  void HandleEvents(const PollSet& polled);

  // Wakes the loop to deliver owed records (PeerHub's notice callback).
  void WakeForNotices() const;
  // Shutdown: the connection closes (the host application sees the daemon
  // go) and PeerHub is told, with `why`.
  void Close(const std::string& why);

  bool registered() const { return host_.has_value(); }

 private:
  // Takes the owed records from PeerHub and queues them for the host.
  void DeliverNotices();
  // RECOVERY_READY, or PEER_HANDBACK with the host ends it carries.
  void OnHostRecord(shm::ReceivedHostRecord received);
  // The host application is gone (`why`).
  void Drop(const std::string& why);

  PeerHub* const hub_;
  WatchedGuests* const guests_;
  const shm::UniqueFd notices_;
  std::optional<HostConnection> host_;
  size_t notices_index_ = 0;
  std::optional<size_t> connection_index_;  // the connection's; its pidfd's follows
};

}  // namespace shmhub::server

#endif  // SHMHUB_SERVER_LOCAL_HOST_SESSION_H_
