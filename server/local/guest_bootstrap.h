// BootstrapGuest: serves one guest whose bootstrap request is complete
// (format §11) and hands back what to watch it by (§13).
//
//   reserve a slot (PeerHub::ReserveForLocalGuest)
//   create its doorbell pair (§10) and mapping-control pair (§9.2)
//   reply VSP1 / RSP0: peer id, segment path, and the guest ends with the
//     segment's descriptor
//   our copies of the guest ends close on return: the guest's copies are
//     then the only ones, which is what makes a hang-up mean "gone"
//
// A refused reservation gets an error reply naming the cause; a reply that
// cannot be sent releases the slot again (fenced on its epoch). Both are
// logged, and nothing is left to watch.
//
// Thread safety: as PeerHub's methods; called from the socket server's loop.
#ifndef SHMHUB_SERVER_LOCAL_GUEST_BOOTSTRAP_H_
#define SHMHUB_SERVER_LOCAL_GUEST_BOOTSTRAP_H_

#include <optional>

#include "server/hub/peer_hub.h"
#include "server/local/handshake_table.h"
#include "server/local/watched_guests.h"
#include "shm/bootstrap.h"

namespace shmhub::server {

// `handshake`'s connection is left open; the caller closes it.
std::optional<WatchedGuest> BootstrapGuest(PeerHub& hub, Handshake& handshake,
                                           const shm::BootstrapRequest& request);

}  // namespace shmhub::server

#endif  // SHMHUB_SERVER_LOCAL_GUEST_BOOTSTRAP_H_
