// Host application control: the wire protocol between shmhubd and the one
// data-plane host application registered with it (ours; the format leaves
// the host side to one process, §14's precondition is what this protocol
// establishes). docs/host-protocol.md has the sequence diagrams; this file
// is the codec and the Unix-socket transport, shared by server/ and
// client/host/.
//
// The host application connects to the daemon's local socket (--socket) and
// sends the 4-byte request "SHH1" (guests send VSH1/RSH0 there). From then on
// both sides exchange fixed 16-byte little-endian records
//
//   off 0  u32 type      off 4  u32 peer_id      off 8  u32 epoch      off 12  u32 arg
//
// some with descriptors (one SCM_RIGHTS message riding on the record's first
// byte):
//
//   type                 sender  peer_id  epoch  arg                    fds
//   1 REGISTERED         daemon  0        0      1 (fd count)           the segment file
//   2 REFUSED            daemon  0        0      HostRefusal            none; the daemon closes
//   3 PEER_ATTACHED      daemon  1..255   any    fd count, 0 or 2       doorbell host end,
//                                                                         mapping-control host end
//   4 PEER_RECOVERING    daemon  1..255   any    PeerDeparture          none
//   5 RECOVERY_READY     host    1..255   any    0                      none
//   6 PEER_HANDBACK      host    1..255   any    fd count, 0 or 2       doorbell host end,
//                                                                         mapping-control host end
//
// PEER_HANDBACK is sent by a host application that registers again with a
// new daemon on the same segment (the old one crashed or handed over): one
// per link it still serves, with copies of the host ends it was given, so
// the new daemon watches those doorbells again and announces nothing twice.
//
// Everything received is hostile: the decoder refuses a record of another
// length, an unknown type, a type the sender may not send, a field out of
// range for its type; the reader refuses descriptors that are not the count
// the record carries or that arrive after part of their record was already
// read, and closes every descriptor that came with a refused record (as
// D-11 does for bootstrap). An error ends the channel: the caller drops the
// connection.
//
// Thread safety: the free functions are stateless. A HostRecordReader has
// one owner.
#ifndef SHMHUB_SHM_HOST_CONTROL_H_
#define SHMHUB_SHM_HOST_CONTROL_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "shm/occupancy.h"
#include "shm/poll_fd.h"
#include "shm/unique_fd.h"

namespace shmhub::shm {

inline constexpr size_t kHostRequestSize = 4;
inline constexpr size_t kHostRecordSize = 16;
// REGISTERED's one fd; PEER_ATTACHED's two for a guest on the local socket.
inline constexpr uint32_t kRegisteredFdCount = 1;
inline constexpr uint32_t kPeerAttachedFdCount = 2;

enum class HostControlSender { kDaemon, kHost };

enum class HostRecordType : uint32_t {
  kRegistered = 1,
  kRefused = 2,
  kPeerAttached = 3,
  kPeerRecovering = 4,
  kRecoveryReady = 5,
  kPeerHandback = 6,
};

// REFUSED's arg: why the daemon would not register this host application.
enum class HostRefusal : uint32_t {
  kAlreadyRegistered = 1,  // one data-plane host per segment
  kShuttingDown = 2,
};

// PEER_RECOVERING's arg: how the occupancy ended.
enum class PeerDeparture : uint32_t {
  kLeft = 1,     // the guest stored Goodbye
  kCrashed = 2,  // a detector declared it crashed (or its state word is corrupt)
  kEvicted = 3,  // EvictPeer
  // The occupancy ended without a recovery by the daemon (its entry was
  // emptied or replaced outside shmhubd): no acknowledgement is awaited.
  kVanished = 4,
};

struct HostRecord {
  HostRecordType type = HostRecordType::kRegistered;
  uint32_t peer_id = 0;
  uint32_t epoch = 0;
  uint32_t arg = 0;

  // The occupancy a PEER_* or RECOVERY_READY record is about.
  Occupancy occupancy() const { return {peer_id, epoch}; }

  friend bool operator==(const HostRecord&, const HostRecord&) = default;
};

// "SHH1".
std::array<uint8_t, kHostRequestSize> EncodeHostRequest();
// Whether `bytes` starts with "SHH1" (false below 4 bytes).
bool IsHostRequest(absl::Span<const uint8_t> bytes);

HostRecord RegisteredRecord();
HostRecord RefusedRecord(HostRefusal why);
HostRecord PeerAttachedRecord(const Occupancy& occupancy, uint32_t fd_count);
HostRecord PeerRecoveringRecord(const Occupancy& occupancy, PeerDeparture departure);
HostRecord RecoveryReadyRecord(const Occupancy& occupancy);
HostRecord PeerHandbackRecord(const Occupancy& occupancy, uint32_t fd_count);

std::array<uint8_t, kHostRecordSize> EncodeHostRecord(const HostRecord& record);

// A record `sender` sent. Checks, in this order: kHostRecordTruncated
// unless exactly 16 bytes; kHostRecordUnknownType; kHostRecordWrongSender;
// kHostRecordBadField for the fields of the table above.
absl::StatusOr<HostRecord> DecodeHostRecord(HostControlSender sender,
                                            absl::Span<const uint8_t> bytes);

// The descriptors a valid record carries (REGISTERED 1, PEER_ATTACHED and
// PEER_HANDBACK their arg, any other 0).
size_t HostRecordFdCount(const HostRecord& record);

// ---- Unix stream transport -------------------------------------------------------

// Sends what the socket takes of `record` now, without blocking, from byte
// *sent on (0 for a new record; `fds` ride on byte 0 and the caller keeps
// its copies). Returns true once all 16 bytes are out, false when the
// socket is full (call again when it is writable). kHostRecordBadFdCount
// when fds.size() != HostRecordFdCount(record); kHostControlClosed when the
// other side is gone; kIo for other failures.
absl::StatusOr<bool> SendHostRecordSome(int socket_fd, const HostRecord& record,
                                        absl::Span<const int> fds, size_t* sent);

// The whole record before `deadline` (kIo with ETIMEDOUT after it); the
// errors of SendHostRecordSome otherwise.
absl::Status SendHostRecord(int socket_fd, const HostRecord& record, absl::Span<const int> fds,
                            Deadline deadline);

struct ReceivedHostRecord {
  HostRecord record;
  std::vector<UniqueFd> fds;  // close-on-exec (MSG_CMSG_CLOEXEC), in the order sent
};

// Reads the records one side sends on a stream socket. Each recvmsg asks for
// the rest of the current record only, never for bytes of the next one, and
// the kernel hands descriptors over with the bytes they were sent with, so a
// record's descriptors cannot be confused with its neighbour's. A partial
// record is kept between calls.
class HostRecordReader {
 public:
  explicit HostRecordReader(HostControlSender sender) : sender_(sender) {}

  HostRecordReader(const HostRecordReader&) = delete;
  HostRecordReader& operator=(const HostRecordReader&) = delete;

  // Without blocking: the next whole record, or nullopt while its bytes
  // have not all arrived. Errors: kHostControlClosed (end of stream at a
  // record boundary), kHostRecordTruncated (end of stream inside a record),
  // kHostRecordControlTruncated, kHostRecordBadFdCount (descriptors that
  // arrive after part of their record was read, or not the count the record
  // carries),
  // the decoding errors, kIo. Every descriptor received with a refused
  // record is closed; after an error the channel is done.
  absl::StatusOr<std::optional<ReceivedHostRecord>> ReadOne(int socket_fd);

  // ReadOne, waiting for the record until `deadline` (kIo with ETIMEDOUT).
  absl::StatusOr<ReceivedHostRecord> ReadOneBefore(int socket_fd, Deadline deadline);

 private:
  const HostControlSender sender_;
  std::array<uint8_t, kHostRecordSize> bytes_{};
  size_t have_ = 0;
  std::vector<UniqueFd> fds_;  // those that came with the current record's first byte
};

}  // namespace shmhub::shm

#endif  // SHMHUB_SHM_HOST_CONTROL_H_
