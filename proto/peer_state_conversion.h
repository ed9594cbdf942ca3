// The one mapping from a peer entry's state word (shm/) to the API's
// PeerState (proto/), shared by shmhubd and shmhubctl's offline inspector so
// the two can never disagree. Header-only: both users already link shm/ and
// the generated protos.
#ifndef SHMHUB_PROTO_PEER_STATE_CONVERSION_H_
#define SHMHUB_PROTO_PEER_STATE_CONVERSION_H_

#include "shm/peer_table.h"
#include "shmhub/v1/hub.pb.h"

namespace shmhub {

// An invalid state word is PEER_STATE_CORRUPT.
inline v1::PeerState ApiPeerState(const shm::StateReading& reading) {
  if (!reading.valid) return v1::PEER_STATE_CORRUPT;
  switch (reading.state) {
    case shm::PeerState::kEmpty:
      return v1::PEER_STATE_EMPTY;
    case shm::PeerState::kAttached:
      return v1::PEER_STATE_ATTACHED;
    case shm::PeerState::kGoodbye:
      return v1::PEER_STATE_GOODBYE;
    case shm::PeerState::kReserved:
      return v1::PEER_STATE_RESERVED;
  }
  return v1::PEER_STATE_CORRUPT;
}

}  // namespace shmhub

#endif  // SHMHUB_PROTO_PEER_STATE_CONVERSION_H_
