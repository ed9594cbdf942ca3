#include "shm/host_control.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "shm/le_bytes.h"
#include "shm/scm_rights.h"
#include "shm/shm_error.h"

namespace shmhub::shm {
namespace {

constexpr uint8_t kHostRequestMagic[kHostRequestSize] = {'S', 'H', 'H', '1'};
constexpr uint32_t kMaxPeerId = 255;
// Control room on receive: more than any record carries, so a wrong count
// up to this many is reported as such rather than as truncation.
constexpr size_t kReceiveFdRoom = 4;

absl::string_view TypeName(HostRecordType type) {
  switch (type) {
    case HostRecordType::kRegistered:
      return "REGISTERED";
    case HostRecordType::kRefused:
      return "REFUSED";
    case HostRecordType::kPeerAttached:
      return "PEER_ATTACHED";
    case HostRecordType::kPeerRecovering:
      return "PEER_RECOVERING";
    case HostRecordType::kRecoveryReady:
      return "RECOVERY_READY";
    case HostRecordType::kPeerHandback:
      return "PEER_HANDBACK";
  }
  return "UNKNOWN";
}

bool KnownType(uint32_t raw) {
  return raw >= static_cast<uint32_t>(HostRecordType::kRegistered) &&
         raw <= static_cast<uint32_t>(HostRecordType::kPeerHandback);
}

HostControlSender SenderOf(HostRecordType type) {
  return type == HostRecordType::kRecoveryReady || type == HostRecordType::kPeerHandback
             ? HostControlSender::kHost
             : HostControlSender::kDaemon;
}

absl::Status BadField(const HostRecord& record, absl::string_view problem) {
  return ShmError(ShmErrc::kHostRecordBadField,
                  absl::StrCat(TypeName(record.type), " record (peer ", record.peer_id, ", epoch ",
                               record.epoch, ", arg ", record.arg, "): ", problem));
}

// The field rules of the table in the header, for a known type.
absl::Status CheckFields(const HostRecord& record) {
  const bool names_peer = record.peer_id >= 1 && record.peer_id <= kMaxPeerId;
  switch (record.type) {
    case HostRecordType::kRegistered:
      if (record.peer_id != 0 || record.epoch != 0) return BadField(record, "must name no peer");
      if (record.arg != kRegisteredFdCount) return BadField(record, "arg must be 1 (the segment)");
      return absl::OkStatus();
    case HostRecordType::kRefused:
      if (record.peer_id != 0 || record.epoch != 0) return BadField(record, "must name no peer");
      if (record.arg != static_cast<uint32_t>(HostRefusal::kAlreadyRegistered) &&
          record.arg != static_cast<uint32_t>(HostRefusal::kShuttingDown)) {
        return BadField(record, "unknown refusal");
      }
      return absl::OkStatus();
    case HostRecordType::kPeerAttached:
    case HostRecordType::kPeerHandback:
      if (!names_peer) return BadField(record, "peer id outside 1..255");
      if (record.arg != 0 && record.arg != kPeerAttachedFdCount) {
        return BadField(record, "fd count must be 0 or 2");
      }
      return absl::OkStatus();
    case HostRecordType::kPeerRecovering:
      if (!names_peer) return BadField(record, "peer id outside 1..255");
      if (record.arg < static_cast<uint32_t>(PeerDeparture::kLeft) ||
          record.arg > static_cast<uint32_t>(PeerDeparture::kVanished)) {
        return BadField(record, "unknown departure");
      }
      return absl::OkStatus();
    case HostRecordType::kRecoveryReady:
      if (!names_peer) return BadField(record, "peer id outside 1..255");
      if (record.arg != 0) return BadField(record, "arg must be 0");
      return absl::OkStatus();
  }
  return BadField(record, "unknown type");
}

bool PeerGone(int err) { return err == EPIPE || err == ECONNRESET || err == ENOTCONN; }

}  // namespace

std::array<uint8_t, kHostRequestSize> EncodeHostRequest() {
  std::array<uint8_t, kHostRequestSize> out;
  std::memcpy(out.data(), kHostRequestMagic, kHostRequestSize);
  return out;
}

bool IsHostRequest(absl::Span<const uint8_t> bytes) {
  return bytes.size() >= kHostRequestSize &&
         std::memcmp(bytes.data(), kHostRequestMagic, kHostRequestSize) == 0;
}

HostRecord RegisteredRecord() {
  return HostRecord{HostRecordType::kRegistered, 0, 0, kRegisteredFdCount};
}

HostRecord RefusedRecord(HostRefusal why) {
  return HostRecord{HostRecordType::kRefused, 0, 0, static_cast<uint32_t>(why)};
}

HostRecord PeerAttachedRecord(const Occupancy& occupancy, uint32_t fd_count) {
  return HostRecord{HostRecordType::kPeerAttached, occupancy.peer_id, occupancy.epoch, fd_count};
}

HostRecord PeerRecoveringRecord(const Occupancy& occupancy, PeerDeparture departure) {
  return HostRecord{HostRecordType::kPeerRecovering, occupancy.peer_id, occupancy.epoch,
                    static_cast<uint32_t>(departure)};
}

HostRecord RecoveryReadyRecord(const Occupancy& occupancy) {
  return HostRecord{HostRecordType::kRecoveryReady, occupancy.peer_id, occupancy.epoch, 0};
}

HostRecord PeerHandbackRecord(const Occupancy& occupancy, uint32_t fd_count) {
  return HostRecord{HostRecordType::kPeerHandback, occupancy.peer_id, occupancy.epoch, fd_count};
}

std::array<uint8_t, kHostRecordSize> EncodeHostRecord(const HostRecord& record) {
  std::array<uint8_t, kHostRecordSize> out;
  PutLe<uint32_t>(out.data(), static_cast<uint32_t>(record.type));
  PutLe<uint32_t>(out.data() + 4, record.peer_id);
  PutLe<uint32_t>(out.data() + 8, record.epoch);
  PutLe<uint32_t>(out.data() + 12, record.arg);
  return out;
}

absl::StatusOr<HostRecord> DecodeHostRecord(HostControlSender sender,
                                            absl::Span<const uint8_t> bytes) {
  if (bytes.size() != kHostRecordSize) {
    return ShmError(ShmErrc::kHostRecordTruncated,
                    absl::StrCat("host control record of ", bytes.size(), " bytes, want ",
                                 kHostRecordSize));
  }
  const uint32_t raw_type = GetLe<uint32_t>(bytes.data());
  if (!KnownType(raw_type)) {
    return ShmError(ShmErrc::kHostRecordUnknownType,
                    absl::StrCat("host control record type ", raw_type));
  }
  HostRecord record{static_cast<HostRecordType>(raw_type), GetLe<uint32_t>(bytes.data() + 4),
                    GetLe<uint32_t>(bytes.data() + 8), GetLe<uint32_t>(bytes.data() + 12)};
  if (SenderOf(record.type) != sender) {
    return ShmError(ShmErrc::kHostRecordWrongSender,
                    absl::StrCat(TypeName(record.type), " record from the ",
                                 sender == HostControlSender::kDaemon ? "daemon" : "host",
                                 ", which never sends it"));
  }
  if (absl::Status s = CheckFields(record); !s.ok()) return s;
  return record;
}

size_t HostRecordFdCount(const HostRecord& record) {
  switch (record.type) {
    case HostRecordType::kRegistered:
      return kRegisteredFdCount;
    case HostRecordType::kPeerAttached:
    case HostRecordType::kPeerHandback:
      return record.arg;
    default:
      return 0;
  }
}

absl::StatusOr<bool> SendHostRecordSome(int socket_fd, const HostRecord& record,
                                        absl::Span<const int> fds, size_t* sent) {
  if (fds.size() != HostRecordFdCount(record)) {
    return ShmError(ShmErrc::kHostRecordBadFdCount,
                    absl::StrCat(TypeName(record.type), " record with ", fds.size(),
                                 " fds, want ", HostRecordFdCount(record)));
  }
  const std::array<uint8_t, kHostRecordSize> bytes = EncodeHostRecord(record);
  alignas(struct cmsghdr) uint8_t control[ScmRightsSpace(kPeerAttachedFdCount)];
  while (*sent < kHostRecordSize) {
    struct iovec iov = {const_cast<uint8_t*>(bytes.data()) + *sent, kHostRecordSize - *sent};
    struct msghdr msg = {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    // The fds ride with byte 0; once any byte is out, they are too.
    if (*sent == 0) PackScmRights(fds, absl::MakeSpan(control), &msg);
    const ssize_t n = ::sendmsg(socket_fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      *sent += static_cast<size_t>(n);
      continue;
    }
    if (n == 0) return ShmIoError("sendmsg(host control) sent nothing", EIO);
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return false;
    if (PeerGone(errno)) {
      return ShmError(ShmErrc::kHostControlClosed,
                      absl::StrCat("host control peer gone: ", std::strerror(errno)));
    }
    return ShmIoError("sendmsg(host control)", errno);
  }
  return true;
}

absl::Status SendHostRecord(int socket_fd, const HostRecord& record, absl::Span<const int> fds,
                            Deadline deadline) {
  size_t sent = 0;
  while (true) {
    absl::StatusOr<bool> done = SendHostRecordSome(socket_fd, record, fds, &sent);
    if (!done.ok()) return done.status();
    if (*done) return absl::OkStatus();
    absl::StatusOr<short> revents = PollFd(socket_fd, POLLOUT, deadline);
    if (!revents.ok()) return revents.status();
    if (*revents == 0) {
      return ShmIoError("sendmsg(host control): the socket stayed full until the deadline",
                        ETIMEDOUT);
    }
  }
}

absl::StatusOr<std::optional<ReceivedHostRecord>> HostRecordReader::ReadOne(int socket_fd) {
  while (have_ < kHostRecordSize) {
    struct iovec iov = {bytes_.data() + have_, kHostRecordSize - have_};
    alignas(struct cmsghdr) uint8_t control[ScmRightsSpace(kReceiveFdRoom)];
    struct msghdr msg = {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    const ssize_t n = ::recvmsg(socket_fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return std::nullopt;
      if (errno == ECONNRESET) {
        return ShmError(ShmErrc::kHostControlClosed, "host control peer reset the connection");
      }
      return ShmIoError("recvmsg(host control)", errno);
    }
    // Owned at once, so every error return below closes what arrived.
    std::vector<UniqueFd> arrived = UnpackScmRights(msg);
    const bool late = have_ > 0 && !arrived.empty();
    for (UniqueFd& fd : arrived) fds_.push_back(std::move(fd));
    if ((msg.msg_flags & MSG_CTRUNC) != 0) {
      fds_.clear();
      return ShmError(ShmErrc::kHostRecordControlTruncated, "host control data truncated");
    }
    if (late) {
      fds_.clear();
      return ShmError(ShmErrc::kHostRecordBadFdCount,
                      absl::StrCat("host control fds arrived on byte ", have_, " of a record"));
    }
    if (n == 0) {
      fds_.clear();
      if (have_ == 0) return ShmError(ShmErrc::kHostControlClosed, "host control peer closed");
      return ShmError(ShmErrc::kHostRecordTruncated,
                      absl::StrCat("host control peer closed after ", have_, " of ",
                                   kHostRecordSize, " bytes of a record"));
    }
    have_ += static_cast<size_t>(n);
  }
  have_ = 0;
  ReceivedHostRecord received;
  received.fds = std::move(fds_);
  fds_.clear();
  absl::StatusOr<HostRecord> record = DecodeHostRecord(sender_, bytes_);
  if (!record.ok()) return record.status();
  if (received.fds.size() != HostRecordFdCount(*record)) {
    return ShmError(ShmErrc::kHostRecordBadFdCount,
                    absl::StrCat(TypeName(record->type), " record with ", received.fds.size(),
                                 " fds, want ", HostRecordFdCount(*record)));
  }
  received.record = *record;
  return std::optional<ReceivedHostRecord>(std::move(received));
}

absl::StatusOr<ReceivedHostRecord> HostRecordReader::ReadOneBefore(int socket_fd,
                                                                   Deadline deadline) {
  while (true) {
    absl::StatusOr<std::optional<ReceivedHostRecord>> next = ReadOne(socket_fd);
    if (!next.ok()) return next.status();
    if (next->has_value()) return **std::move(next);
    absl::StatusOr<short> revents = PollFd(socket_fd, POLLIN, deadline);
    if (!revents.ok()) return revents.status();
    if (*revents == 0) {
      return ShmIoError("recvmsg(host control): no whole record before the deadline", ETIMEDOUT);
    }
  }
}

}  // namespace shmhub::shm
