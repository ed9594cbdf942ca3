// LocalSocketServer: the daemon's local Unix socket (--socket). Guests on
// this node connect to it to bootstrap (format §11) instead of attaching by
// path, and in exchange get the kernel-backed crash detectors of §13:
//
//   guest                                 shmhubd
//   connect ───────────────────────────▶  accept; SO_PEERCRED + pidfd
//   "VSH1" (or "RSH0" + session id) ───▶  reserve a slot (PeerHub)
//                                          doorbell pair, mapping-control pair
//   ◀── VSP1/RSP0: peer id, segment path + fds (doorbell end, segment,
//                  mapping control)       close our copies of the guest ends
//   claim the Reserved entry (shm CAS)     watch: doorbell host end, pidfd
//   ... guest dies: the kernel closes its fds ...
//                                          doorbell hang-up -> CRASHED(DOORBELL)
//                                          pidfd readable   -> CRASHED(PROCESS_EXIT)
//
// The doorbell hang-up works across containers and PID namespaces (it needs
// only the fd); the pidfd needs SO_PEERPIDFD or a pid visible to us.
// Whichever fires first decides; PeerHub ignores the second, since the
// occupancy has ended by then. A guest that stored Goodbye before its fds
// closed gets GOODBYE, not CRASHED.
//
// One thread serves everything with poll(), in a short loop over parts
// that each own their descriptors and their slice of the poll set
// (PollSet), and each can be driven by a test without the thread:
//
//   HandshakeTable  connections that have not finished their first request
//                   (bounded in time and size, at most kCapacity at once, so
//                   a client that connects and says nothing costs a slot
//                   there, never the loop)
//   BootstrapGuest  serves a completed bootstrap request
//   WatchedGuests   the doorbells and pidfds of guests that bootstrapped
//   HostSession     the data-plane host application
//
// The daemon is not a data-plane host: it polls a guest's doorbell for the
// hang-up only and never reads the rings queued on it, which belong to the
// host application holding a copy of the same host end.
//
// The data-plane host application (docs/host-protocol.md) connects here too
// and sends "SHH1" instead of a bootstrap request. One at a time is
// registered (a second gets REFUSED): it receives the segment, then
// PEER_ATTACHED for every attached guest with copies of the daemon's host
// ends of the doorbell and mapping-control socket of guests that
// bootstrapped here, and PEER_RECOVERING before any recovery of a guest it
// was told about, which waits for its RECOVERY_READY (PeerHub,
// HostAckGate). When its connection hangs up or its process exits, the
// daemon shuts down the doorbells it shared (shutdown(2), so every copy
// hangs up: the guests' link calls fail at once, UNAVAILABLE), stops
// watching those doorbells, and PeerHub lets the waiting recoveries run; a
// new host application may then register.
//
// Stop() rings every watched doorbell (host_goodbye is raised by then, and
// Rust guests sleep on the doorbell, §12), closes every descriptor (the
// host application sees its connection end) and removes the socket file.
//
// Thread safety: Stop() may be called from any thread, more than once.
#ifndef SHMHUB_SERVER_LOCAL_LOCAL_SOCKET_SERVER_H_
#define SHMHUB_SERVER_LOCAL_LOCAL_SOCKET_SERVER_H_

#include <cstddef>
#include <memory>
#include <string>
#include <atomic>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/hub/peer_hub.h"
#include "server/local/handshake_table.h"
#include "server/local/host_session.h"
#include "server/local/unix_listener.h"
#include "server/local/watched_guests.h"
#include "shm/unique_fd.h"

namespace shmhub::server {

class LocalSocketServer {
 public:
  // Listens at `path` (see UnixListener for the errors) and starts serving.
  // `hub` must outlive the server.
  static absl::StatusOr<std::unique_ptr<LocalSocketServer>> Start(const std::string& path,
                                                                  PeerHub* hub);
  ~LocalSocketServer();

  LocalSocketServer(const LocalSocketServer&) = delete;
  LocalSocketServer& operator=(const LocalSocketServer&) = delete;

  // Goodbye (host_goodbye is raised by then): rings every watched doorbell
  // before closing it. Handover: closes everything without a ring, since
  // the guests stay (the host application's copies of their doorbells keep
  // them connected) and the next daemon serves them.
  enum class StopKind { kGoodbye, kHandover };
  void Stop(StopKind kind = StopKind::kGoodbye);
  const std::string& path() const { return listener_->path(); }

 private:
  LocalSocketServer(std::unique_ptr<UnixListener> listener, shm::UniqueFd wake,
                    shm::UniqueFd notices, PeerHub* hub);
  // The loop: every turn polls each part's descriptors and hands each part
  // its events.
  void Run();
  // Before the loop starts: watches again the processes of the local guests
  // an adopted segment holds, and reports those that died meanwhile.
  void WatchAdoptedGuests();
  // Serves the handshakes whose request is complete.
  void ServeHandshakes(const PollSet& polled, absl::Time now);
  // Accepts every pending connection into the handshake table.
  void AcceptConnections(absl::Time now);
  // After the loop: wakes every guest (unless handing over) and lets the
  // host application go.
  void ShutDown();

  const std::unique_ptr<UnixListener> listener_;
  const shm::UniqueFd wake_;  // eventfd: Stop() wakes the loop
  PeerHub* const hub_;
  // The parts; only the loop's thread touches them, but for
  // HostSession::WakeForNotices.
  HandshakeTable handshakes_;
  WatchedGuests guests_;
  HostSession host_;
  std::thread thread_;

  absl::Mutex stop_mu_;
  bool stopped_ ABSL_GUARDED_BY(stop_mu_) = false;
  // Written before the loop is woken to stop, read by the loop after.
  std::atomic<bool> handover_{false};
};

}  // namespace shmhub::server

#endif  // SHMHUB_SERVER_LOCAL_LOCAL_SOCKET_SERVER_H_
