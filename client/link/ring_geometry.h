// Which of a peer's two rings each side of a link produces into and
// consumes from (format §6.1: guest->host at ring_offset, host->guest one
// ring_stride later), and where their headers and data lie. Everything comes
// from the process's own trusted layout (Segment::layout), never from the
// ring_offset stored in the peer entry. `peer_id` must be valid for the
// segment (1..max_guests).
#ifndef SHMHUB_CLIENT_LINK_RING_GEOMETRY_H_
#define SHMHUB_CLIENT_LINK_RING_GEOMETRY_H_

#include <cstdint>

#include "client/link/ring_link.h"
#include "shm/bip_buffer.h"
#include "shm/format.h"
#include "shm/segment.h"

namespace shmhub::client {

// Offset of the header of the ring `side` produces into.
inline uint64_t SendRingHeaderOffset(const shm::Segment& segment, LinkSide side,
                                     uint32_t peer_id) {
  return side == LinkSide::kGuest ? segment.layout().GuestToHostHeader(peer_id - 1)
                                  : segment.layout().HostToGuestHeader(peer_id - 1);
}

// Offset of the header of the ring `side` consumes.
inline uint64_t ReceiveRingHeaderOffset(const shm::Segment& segment, LinkSide side,
                                        uint32_t peer_id) {
  return side == LinkSide::kGuest ? segment.layout().HostToGuestHeader(peer_id - 1)
                                  : segment.layout().GuestToHostHeader(peer_id - 1);
}

inline shm::BipBuffer SendRing(const shm::Segment& segment, LinkSide side, uint32_t peer_id) {
  return side == LinkSide::kGuest ? segment.GuestToHostRing(peer_id - 1)
                                  : segment.HostToGuestRing(peer_id - 1);
}

inline shm::BipBuffer ReceiveRing(const shm::Segment& segment, LinkSide side, uint32_t peer_id) {
  return side == LinkSide::kGuest ? segment.HostToGuestRing(peer_id - 1)
                                  : segment.GuestToHostRing(peer_id - 1);
}

inline shm::RingHeader* RingHeaderAt(const shm::Segment& segment, uint64_t header_offset) {
  return reinterpret_cast<shm::RingHeader*>(segment.base() + header_offset);
}

inline uint8_t* RingData(const shm::Segment& segment, uint64_t header_offset) {
  return segment.base() + header_offset + shm::kRingHeaderSize;
}

}  // namespace shmhub::client

#endif  // SHMHUB_CLIENT_LINK_RING_GEOMETRY_H_
