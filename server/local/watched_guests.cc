#include "server/local/watched_guests.h"

#include <sys/socket.h>

#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/base/log.h"

namespace shmhub::server {

void WatchedGuests::AddTo(PollSet& polled) {
  first_index_ = polled.size();
  polled_count_ = guests_.size();
  for (const WatchedGuest& guest : guests_) {
    // The hang-up only: rings queued on the doorbell are the host
    // application's to read.
    polled.Add(guest.doorbell.fd(), POLLRDHUP);
    polled.Add(guest.pidfd.valid() ? guest.pidfd.get() : -1, POLLIN);
  }
}

void WatchedGuests::HandleEvents(const PollSet& polled, absl::Time noticed) {
  std::vector<WatchedGuest> still_watched;
  for (size_t i = 0; i < guests_.size(); ++i) {
    WatchedGuest& guest = guests_[i];
    const bool was_polled = i < polled_count_;
    const short doorbell_events = was_polled ? polled.revents(first_index_ + 2 * i) : 0;
    const short process_events = was_polled ? polled.revents(first_index_ + 2 * i + 1) : 0;
    if (process_events != 0) {
      hub_->OnLocalGuestGone(guest.occupancy, v1::DETECTOR_PROCESS_EXIT, absl::Now() - noticed);
      continue;
    }
    // A doorbell shut with the host application just now says nothing
    // about the guest: its events predate the shutdown.
    if (doorbell_events != 0 && guest.doorbell.fd() >= 0) {
      // Asked for the hang-up only; the drain confirms it (what is left
      // queued is read first, and the end of the stream follows).
      absl::StatusOr<size_t> drained = guest.doorbell.Drain();
      if (!drained.ok()) {
        hub_->OnLocalGuestGone(guest.occupancy, v1::DETECTOR_DOORBELL, absl::Now() - noticed);
        continue;
      }
    }
    // Its doorbell went with the host application and there is no pidfd:
    // nothing of it is left to watch here (heartbeats still are, by Scan).
    if (guest.doorbell.fd() < 0 && !guest.pidfd.valid()) continue;
    still_watched.push_back(std::move(guest));
  }
  guests_ = std::move(still_watched);
  polled_count_ = 0;
}

void WatchedGuests::Rewatch(const shm::Occupancy& occupancy, shm::Doorbell doorbell,
                            shm::UniqueFd mapping_control) {
  for (WatchedGuest& guest : guests_) {
    if (guest.occupancy != occupancy) continue;
    guest.doorbell = std::move(doorbell);
    guest.mapping_control = std::move(mapping_control);
    guest.shared_with_host = true;
    return;
  }
  guests_.push_back(WatchedGuest{.occupancy = occupancy,
                                 .doorbell = std::move(doorbell),
                                 .pidfd = {},
                                 .mapping_control = std::move(mapping_control),
                                 .shared_with_host = true});
}

std::vector<shm::UniqueFd> WatchedGuests::ShareWithHost(const shm::Occupancy& occupancy) {
  std::vector<shm::UniqueFd> fds;
  for (WatchedGuest& guest : guests_) {
    if (guest.occupancy != occupancy || guest.doorbell.fd() < 0) continue;
    absl::StatusOr<shm::UniqueFd> doorbell = shm::DupCloexec(guest.doorbell.fd());
    absl::StatusOr<shm::UniqueFd> mapping = shm::DupCloexec(guest.mapping_control.get());
    if (!doorbell.ok() || !mapping.ok()) {
      Log(LogLevel::kWarning,
          absl::StrCat("local socket: cannot share peer ", occupancy.peer_id,
                       "'s doorbell with the host application: ",
                       (!doorbell.ok() ? doorbell : mapping).status().message(),
                       "; its link will poll"));
      break;
    }
    fds.push_back(*std::move(doorbell));
    fds.push_back(*std::move(mapping));
    guest.shared_with_host = true;
    break;
  }
  return fds;
}

std::vector<shm::Occupancy> WatchedGuests::CutOffFromHost() {
  std::vector<shm::Occupancy> orphaned;
  for (WatchedGuest& guest : guests_) {
    if (!guest.shared_with_host) continue;
    // shutdown(2), not just close: it acts on the socket, so the guest's
    // end hangs up even while some copy of the host end lives on (a child
    // the host application leaked it to). Our end is then useless as a
    // detector (it reports the hang-up too) and goes.
    ::shutdown(guest.doorbell.fd(), SHUT_RDWR);
    guest.doorbell = shm::Doorbell(shm::DoorbellEnd::kHost, shm::UniqueFd());
    guest.mapping_control.Reset();
    guest.shared_with_host = false;
    orphaned.push_back(guest.occupancy);
  }
  // guests_ keeps its order (the last AddTo's layout indexes it); a guest
  // left with nothing to watch goes at the next HandleEvents.
  return orphaned;
}

void WatchedGuests::Prune() {
  std::erase_if(guests_, [&](const WatchedGuest& guest) {
    return !hub_->IsCurrentOccupancy(guest.occupancy);
  });
  polled_count_ = 0;
}

void WatchedGuests::RingAndForgetAll() {
  for (const WatchedGuest& guest : guests_) {
    if (guest.doorbell.fd() >= 0) guest.doorbell.Signal().IgnoreError();
  }
  ForgetAll();
}

void WatchedGuests::ForgetAll() {
  guests_.clear();
  polled_count_ = 0;
}

}  // namespace shmhub::server
