// HostApp: a data-plane host application's registration with shmhubd — the
// one process per segment that serves the guests' rings (the protocol is
// docs/host-protocol.md; the records shm/host_control.h).
//
// Register() connects to the daemon's local socket (its --socket), sends
// "SHH1" and receives the segment (mapped and fully validated here, §3).
// From then on a thread of the HostApp follows the daemon:
//
//   PEER_ATTACHED(peer, epoch [+ doorbell, mapping control])
//       -> a HostLink for that occupancy, handed to the application as a
//          kPeerAttached event;
//   PEER_RECOVERING(peer, epoch, departure)
//       -> the link is stopped (every blocked and later call fails with
//          ABORTED), a kPeerDeparting event tells the application, and once
//          the application has released every view the link handed out
//          (outstanding_views() == 0) the HostApp answers RECOVERY_READY:
//          only then does the daemon recover the slot and free what the
//          guest owned, so no view is ever freed under the application.
//
// The wait for the views is bounded: it ends without an acknowledgement
// when the daemon recovers the slot anyway (its --host_ack_timeout passed:
// the entry is no longer that occupancy) or after `release_timeout`; those
// are counted in abandoned_handshakes(). Handshakes of several peers run at
// once, on the HostApp's thread, and do not depend on the application
// reading its events.
//
// Daemon restarts: when the connection hangs up but the segment's
// host_goodbye is not set (the daemon crashed, was killed, or stopped with
// --stop_mode=handover), the HostApp keeps every link and every frame in
// flight and registers again with whatever daemon next listens at the
// socket path, retrying with backoff (reconnect_backoff, doubling up to
// max_reconnect_backoff). Once registered, it hands back every link it
// serves (PEER_HANDBACK, with copies of the doorbell and mapping-control
// host ends it was given), so the new daemon watches those guests'
// doorbells again and announces nothing twice; reconnections() counts
// these. The application sees no event: the links never stopped.
//
// The end, with kDaemonGone (every link closed, CANCELLED; status() says
// why): host_goodbye is set (a goodbye stop: the guests are leaving); the
// daemon that answers serves another segment (it was reset or replaced:
// "register again" to serve the new one); or another host application
// registered meanwhile. Destroy the HostApp then, and register again if
// there is a daemon to serve.
//
// One HostApp per daemon: a second registration, from this process or any
// other, is refused (ALREADY_EXISTS) while one is registered. If this
// process dies, the daemon notices its connection hang up, shuts down the
// doorbells of the guests it served (their link calls fail at once), and a
// new host application may register.
//
// Lifetime: links and views point into the HostApp's mapping of the
// segment. Release every view and drop every link before destroying the
// HostApp; its destructor unregisters (closing the connection) and closes
// the links it still holds.
//
// Thread safety: every method may be called from any thread; each link is
// used as ring_link.h allows.
#ifndef SHMHUB_CLIENT_HOST_HOST_APP_H_
#define SHMHUB_CLIENT_HOST_HOST_APP_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/link/ring_link.h"
#include "shm/host_control.h"
#include "shm/occupancy.h"
#include "shm/segment.h"
#include "shm/unique_fd.h"

namespace shmhub::client {

struct HostAppOptions {
  // Bounds the registration: connect, request, REGISTERED and mapping.
  absl::Duration register_timeout = absl::Seconds(5);
  // The longest a recovery handshake waits for the application to release
  // a departing peer's views. The daemon's --host_ack_timeout (2s by
  // default) usually ends it first.
  absl::Duration release_timeout = absl::Seconds(30);
  // How often a handshake re-checks the views while it waits.
  absl::Duration release_poll = absl::Milliseconds(1);
  // After the daemon's connection hangs up: the first wait before
  // registering again, doubled after each failed try up to the maximum.
  absl::Duration reconnect_backoff = absl::Milliseconds(10);
  absl::Duration max_reconnect_backoff = absl::Seconds(1);
  // For every HostLink.
  LinkOptions link_options;
};

enum class HostEventKind {
  kPeerAttached,   // `link` serves (peer_id, epoch)
  kPeerDeparting,  // (peer_id, epoch) ended (`departure`); its link is stopped
  kDaemonGone,     // the daemon's connection ended (`status`); the last event
};

struct HostEvent {
  HostEventKind kind = HostEventKind::kPeerAttached;
  uint32_t peer_id = 0;
  uint32_t epoch = 0;
  // kPeerAttached: the HostLink (client/host/host_link.h). The HostApp
  // keeps a reference to stop it when the peer departs.
  std::shared_ptr<RingLink> link;
  // kPeerDeparting.
  shm::PeerDeparture departure = shm::PeerDeparture::kLeft;
  // kDaemonGone.
  absl::Status status;
};

class HostApp {
 public:
  // Errors: UNAVAILABLE when nothing listens at `socket_path`, or the daemon
  // is shutting down; ALREADY_EXISTS when another host application is
  // registered; the shm/ errors of a reply that breaks the protocol or a
  // segment that fails validation; DEADLINE_EXCEEDED past register_timeout.
  static absl::StatusOr<std::unique_ptr<HostApp>> Register(const std::string& socket_path,
                                                           HostAppOptions options = {});
  // Unregisters and closes the links it still holds.
  ~HostApp();

  HostApp(const HostApp&) = delete;
  HostApp& operator=(const HostApp&) = delete;

  // The next event, waiting until `deadline`; nullopt when none came. After
  // kDaemonGone there are no more.
  std::optional<HostEvent> NextEvent(absl::Time deadline);

  // OK while registered; the reason once the daemon is gone.
  absl::Status status() const;
  // The host application's mapping of the segment.
  shm::Segment& segment() const { return *segment_; }
  // Recoveries this HostApp gave up acknowledging (views still held when
  // the daemon went ahead, or after release_timeout).
  size_t abandoned_handshakes() const;
  // How many times it registered again with a new daemon.
  size_t reconnections() const;

 private:
  // A departing peer whose views the application still holds.
  struct Handshake {
    shm::Occupancy occupancy;
    std::shared_ptr<RingLink> link;
    absl::Time give_up_at;
  };
  struct Served {
    uint32_t epoch = 0;
    std::shared_ptr<RingLink> link;
    // Copies of the host ends the daemon gave for the link (none for a
    // guest attached by path), handed back to a new daemon.
    std::vector<shm::UniqueFd> handback;
  };
  // A registered connection: REGISTERED read, nothing after it.
  struct Connection {
    shm::UniqueFd socket;
    std::unique_ptr<shm::HostRecordReader> reader;
    shm::UniqueFd segment;  // the descriptor REGISTERED carried
  };
  // Connects, sends SHH1 and reads REGISTERED within `timeout`.
  static absl::StatusOr<Connection> Connect(const std::string& socket_path,
                                            absl::Duration timeout);

  HostApp(std::string socket_path, Connection connection, shm::UniqueFd stop,
          std::unique_ptr<shm::Segment> segment, HostAppOptions options);
  void Run();
  // Reads and handles what the daemon sent; an error ends the connection.
  absl::Status ReadRecords();
  // The daemon's connection ended (`why`): registers again with the next
  // daemon and hands the links back. False when the HostApp is done: it
  // was destroyed meanwhile, or it ended (EndWith) for one of the reasons
  // in the header.
  bool Reconnect(const absl::Status& why);
  // Sends PEER_HANDBACK for every link served.
  absl::Status HandBackLinks();
  // Handles one record from the daemon; an error ends the connection.
  absl::Status OnRecord(shm::ReceivedHostRecord received);
  absl::Status OnPeerAttached(const shm::HostRecord& record, std::vector<shm::UniqueFd> fds);
  absl::Status OnPeerRecovering(const shm::HostRecord& record);
  // Acknowledges the handshakes whose views are all released, abandons
  // those the daemon or the clock has overtaken.
  absl::Status AdvanceHandshakes();
  absl::Status SendRecoveryReady(const shm::Occupancy& occupancy);
  // Whether the segment's entry still holds `occupancy` in any state a
  // recovery starts from (Attached, Goodbye or corrupt).
  bool DaemonStillOwes(const shm::Occupancy& occupancy) const;
  void Push(HostEvent event);
  // The connection ended: close everything, tell the application.
  void EndWith(const absl::Status& why);

  const std::string socket_path_;
  // The thread's; replaced when it registers again.
  shm::UniqueFd socket_;
  std::unique_ptr<shm::HostRecordReader> reader_;
  const shm::UniqueFd stop_;  // eventfd: the destructor wakes the thread
  const std::unique_ptr<shm::Segment> segment_;
  const HostAppOptions options_;

  // The thread's own state.
  std::map<uint32_t, Served> served_;  // by peer id
  std::vector<Handshake> handshakes_;

  mutable absl::Mutex mu_;
  std::deque<HostEvent> events_ ABSL_GUARDED_BY(mu_);
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  size_t abandoned_ ABSL_GUARDED_BY(mu_) = 0;
  size_t reconnections_ ABSL_GUARDED_BY(mu_) = 0;

  std::thread thread_;
};

}  // namespace shmhub::client

namespace shmhub {
using HostApp = client::HostApp;
}  // namespace shmhub

#endif  // SHMHUB_CLIENT_HOST_HOST_APP_H_
