// WatchedGuests: the guests that bootstrapped over the local socket, and
// the descriptors that tell the daemon each one is gone (format §13):
//
//   - the host end of its doorbell (§10), polled for the hang-up only: when
//     every copy of the guest end is closed, the guest's process has died,
//     in whatever container or PID namespace. The rings queued on it are
//     the host application's to read (its copy is the same socket).
//   - a pidfd of its process, when the kernel gave one (PeerCredentials).
//
// Whichever fires first is reported to PeerHub (OnLocalGuestGone) and the
// guest is no longer watched; PeerHub ignores a report about an occupancy
// that has already ended. The host end of the guest's mapping-control
// socket is kept too, so the guest's sends to it succeed.
//
// The data-plane host application gets copies of a guest's two host ends
// (ShareWithHost). When it dies, CutOffFromHost shuts those doorbells down
// (shutdown(2): every copy hangs up, the guest's link calls fail at once)
// and stops watching them.
//
// Thread safety: none; the socket server's loop owns it.
#ifndef SHMHUB_SERVER_LOCAL_WATCHED_GUESTS_H_
#define SHMHUB_SERVER_LOCAL_WATCHED_GUESTS_H_

#include <cstddef>
#include <vector>

#include "absl/time/time.h"
#include "server/hub/peer_hub.h"
#include "server/local/poll_set.h"
#include "shm/doorbell.h"
#include "shm/occupancy.h"
#include "shm/unique_fd.h"

namespace shmhub::server {

// A guest that bootstrapped, and the descriptors that tell us it is gone.
struct WatchedGuest {
  shm::Occupancy occupancy;
  shm::Doorbell doorbell;         // the host end; empty once shut with the host application
  shm::UniqueFd pidfd;            // may be invalid
  shm::UniqueFd mapping_control;  // the host end, kept so the guest's sends succeed
  bool shared_with_host = false;  // the host application holds copies of both host ends
};

class WatchedGuests {
 public:
  // `hub` must outlive this.
  explicit WatchedGuests(PeerHub* hub) : hub_(hub) {}
  WatchedGuests(const WatchedGuests&) = delete;
  WatchedGuests& operator=(const WatchedGuests&) = delete;

  void Add(WatchedGuest guest) { guests_.push_back(std::move(guest)); }
  // The doorbell and mapping-control host ends of `occupancy`, handed back
  // by the host application that kept them while no daemon ran: watched
  // again (with the pidfd it may already be watched by), and shared with
  // the host application.
  void Rewatch(const shm::Occupancy& occupancy, shm::Doorbell doorbell,
               shm::UniqueFd mapping_control);

  // Adds each guest's doorbell (POLLRDHUP) and pidfd (POLLIN); remembers
  // where.
  void AddTo(PollSet& polled);
  // Reports every guest `polled` saw go (PeerHub::OnLocalGuestGone, with
  // the time since `noticed`) and stops watching it, and drops guests left
  // with nothing to watch.
  void HandleEvents(const PollSet& polled, absl::Time noticed);

  // Copies of the host ends of `occupancy`'s doorbell and mapping-control
  // socket, for the host application; empty when that guest is not watched
  // here (or a dup failed, which is logged: its link then polls).
  std::vector<shm::UniqueFd> ShareWithHost(const shm::Occupancy& occupancy);
  // The host application is gone: shuts down every doorbell shared with it
  // and returns those guests' occupancies (PeerHub::UnregisterHost's
  // `orphaned`). Keeps the layout of the last AddTo.
  std::vector<shm::Occupancy> CutOffFromHost();

  // Drops the guests whose occupancy ended some other way (goodbye,
  // eviction, a heartbeat crash).
  void Prune();
  // Shutdown (§12, host_goodbye is raised by then): rings every doorbell so
  // a guest asleep on it wakes, then closes ours (the hang-up tells stock
  // Rust links) and watches nothing more.
  void RingAndForgetAll();
  // Handover: closes ours without a ring and watches nothing more.
  void ForgetAll();

  size_t size() const { return guests_.size(); }

 private:
  PeerHub* const hub_;
  std::vector<WatchedGuest> guests_;
  size_t first_index_ = 0;   // of guests_[0]'s doorbell in the last AddTo's PollSet
  size_t polled_count_ = 0;  // how many of guests_ that AddTo added
};

}  // namespace shmhub::server

#endif  // SHMHUB_SERVER_LOCAL_WATCHED_GUESTS_H_
