// The mapping-control channel (format §9.1, §9.2): how a peer hands the
// other side the descriptor of a region that MMAP_REF entries point into.
//
// A message is 16 bytes, (map_id u32, map_generation u32, mapping_length
// u64) little-endian, sent as one datagram with exactly one descriptor in one
// SCM_RIGHTS control message. One SOCK_DGRAM socketpair per peer carries
// both directions; each side may dup its end into a send and a receive
// handle (DupCloexec).
//
// Receiving is hostile input. Each malformed message is its own error
// (kMappingInvalidLength, kMappingPeerClosed, kMappingControlTruncated,
// kMappingNoFd), and every descriptor that arrived with a rejected message is
// closed before returning (D-11; Rust leaks them). This primitive keeps no
// state, so a valid message after a malformed one is still readable; making
// the link terminal at the first malformed message is MappingReceiver's job.
//
// Thread-safety: stateless functions; the kernel serialises datagrams.
#ifndef SHMHUB_SHM_MAPPING_CONTROL_H_
#define SHMHUB_SHM_MAPPING_CONTROL_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "shm/format.h"  // kMappingControlMessageSize
#include "shm/unique_fd.h"

namespace shmhub::shm {

// Receive buffer: large enough that an oversized datagram is seen as such
// (MSG_TRUNC reports its real length) rather than silently cut to 16 bytes.
inline constexpr size_t kMappingControlReceiveBuffer = 256;

struct MappingControlMessage {
  uint32_t map_id = 0;
  uint32_t map_generation = 0;
  uint64_t mapping_length = 0;

  friend bool operator==(const MappingControlMessage&, const MappingControlMessage&) = default;
};

std::array<uint8_t, kMappingControlMessageSize> EncodeMappingControl(
    const MappingControlMessage& message);

// kMappingInvalidLength unless `bytes` is exactly 16 bytes long.
absl::StatusOr<MappingControlMessage> DecodeMappingControl(absl::Span<const uint8_t> bytes);

// socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC): the first
// end for the host, the second for the guest.
absl::StatusOr<std::pair<UniqueFd, UniqueFd>> CreateMappingControlPair();

// Sends `message` with `region_fd` attached, in one sendmsg(MSG_NOSIGNAL |
// MSG_DONTWAIT). The caller keeps `region_fd`. kMappingPeerClosed when the
// other end is gone; kIo otherwise (EAGAIN: the peer's queue is full).
absl::Status SendMappingControl(int socket_fd, const MappingControlMessage& message, int region_fd);

struct ReceivedMapping {
  MappingControlMessage message;
  UniqueFd region_fd;  // close-on-exec (MSG_CMSG_CLOEXEC)
};

// Reads one datagram without blocking. nullopt when nothing is queued.
// kMappingInvalidLength for any length but 16, kMappingControlTruncated when
// the control data was cut or held more than one descriptor, kMappingNoFd
// when it held none, kIo for other receive failures; EINTR is retried.
// kMappingPeerClosed for a 0-byte read, as in Rust. On a DGRAM socketpair
// that is only a zero-length datagram: a closed peer reads as "nothing" and
// shows up as kMappingPeerClosed on the send side.
absl::StatusOr<std::optional<ReceivedMapping>> ReceiveMappingControl(int socket_fd);

}  // namespace shmhub::shm

#endif  // SHMHUB_SHM_MAPPING_CONTROL_H_
