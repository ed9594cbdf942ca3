// PollSet: the descriptors one poll() call waits on, built anew each turn of
// a poll loop. Each part of the loop adds its own descriptors and keeps the
// indices it was given; after Wait() it reads its own revents by those
// indices and nobody else's, so no part knows another's layout.
//
// Thread safety: none; one loop owns it.
#ifndef SHMHUB_SERVER_LOCAL_POLL_SET_H_
#define SHMHUB_SERVER_LOCAL_POLL_SET_H_

#include <poll.h>

#include <cstddef>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace shmhub::server {

class PollSet {
 public:
  // Forgets every descriptor (the start of a turn).
  void Clear() { fds_.clear(); }
  // Adds `fd` for `events` and returns its index. A negative fd takes an
  // index but is skipped by poll(): a part whose descriptor is gone keeps
  // its layout.
  size_t Add(int fd, short events);
  // What poll() reported for the descriptor at `index` (0 before Wait()).
  short revents(size_t index) const { return fds_[index].revents; }
  size_t size() const { return fds_.size(); }

  // poll() until an event or `deadline`, at most `longest`. A signal ends
  // the wait early with no events (OK). INTERNAL when poll() fails.
  absl::Status Wait(absl::Time deadline, absl::Duration longest);

 private:
  std::vector<struct pollfd> fds_;
};

}  // namespace shmhub::server

#endif  // SHMHUB_SERVER_LOCAL_POLL_SET_H_
