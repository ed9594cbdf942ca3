// GuestLink: a guest's end of its ring pair (format §6–§9) — the RingLink
// that sends guest->host and receives host->guest for a Guest's occupancy.
//
// GuestLink::Create builds it from an attached Guest: its segment, peer id
// and epoch, and — when the guest bootstrapped over shmhubd's local socket —
// duplicates of its doorbell end and mapping-control socket
// (Guest::DupLocalChannels). A guest attached by path has neither: its waits
// back off with bounded sleeps and payloads too large for a pool slot fail
// with RESOURCE_EXHAUSTED (see ring_link.h).
//
// Lifetime: the link uses the Guest's mapping, so destroy it, and release
// every view it handed out, before Guest::Goodbye() (or the Guest's
// destruction) unmaps the segment. Blocked calls fail with UNAVAILABLE once
// the host raises host_goodbye, the daemon recovers or evicts our slot, or
// the doorbell hangs up (the daemon and any host application closed theirs);
// a guest then says Goodbye and, if it wants to go on, bootstraps again.
//
// Thread-safety: that of RingLink.
#ifndef SHMHUB_CLIENT_GUEST_GUEST_LINK_H_
#define SHMHUB_CLIENT_GUEST_GUEST_LINK_H_

#include <memory>

#include "absl/status/statusor.h"
#include "client/guest/guest.h"
#include "client/link/ring_link.h"

namespace shmhub::client {

class GuestLink {
 public:
  // FAILED_PRECONDITION when the guest has already said Goodbye or its entry
  // no longer holds (Attached, epoch); RingLink::Create's errors otherwise.
  static absl::StatusOr<std::unique_ptr<RingLink>> Create(Guest& guest, LinkOptions options = {});

  GuestLink() = delete;
};

}  // namespace shmhub::client

namespace shmhub {
using GuestLink = client::GuestLink;
}  // namespace shmhub

#endif  // SHMHUB_CLIENT_GUEST_GUEST_LINK_H_
