#include "shm/mapping_control.h"

#include <sys/socket.h>
#include <sys/uio.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "shm/le_bytes.h"
#include "shm/scm_rights.h"
#include "shm/shm_error.h"

namespace shmhub::shm {
namespace {

absl::Status InvalidLength(uint64_t length) {
  return ShmError(ShmErrc::kMappingInvalidLength,
                  absl::StrCat("mapping-control message of ", length, " bytes, want ",
                               kMappingControlMessageSize));
}

}  // namespace

std::array<uint8_t, kMappingControlMessageSize> EncodeMappingControl(
    const MappingControlMessage& message) {
  std::array<uint8_t, kMappingControlMessageSize> out{};
  PutLe<uint32_t>(out.data() + 0, message.map_id);
  PutLe<uint32_t>(out.data() + 4, message.map_generation);
  PutLe<uint64_t>(out.data() + 8, message.mapping_length);
  return out;
}

absl::StatusOr<MappingControlMessage> DecodeMappingControl(absl::Span<const uint8_t> bytes) {
  if (bytes.size() != kMappingControlMessageSize) return InvalidLength(bytes.size());
  MappingControlMessage message;
  message.map_id = GetLe<uint32_t>(bytes.data() + 0);
  message.map_generation = GetLe<uint32_t>(bytes.data() + 4);
  message.mapping_length = GetLe<uint64_t>(bytes.data() + 8);
  return message;
}

absl::StatusOr<std::pair<UniqueFd, UniqueFd>> CreateMappingControlPair() {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) {
    return ShmIoError("socketpair(mapping control)", errno);
  }
  return std::make_pair(UniqueFd(sv[0]), UniqueFd(sv[1]));
}

absl::Status SendMappingControl(int socket_fd, const MappingControlMessage& message,
                                int region_fd) {
  std::array<uint8_t, kMappingControlMessageSize> bytes = EncodeMappingControl(message);
  struct iovec iov = {bytes.data(), bytes.size()};
  alignas(struct cmsghdr) uint8_t control[ScmRightsSpace(1)];
  struct msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  const int fds[1] = {region_fd};
  PackScmRights(fds, absl::MakeSpan(control), &msg);
  for (;;) {
    const ssize_t n = ::sendmsg(socket_fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n == static_cast<ssize_t>(bytes.size())) return absl::OkStatus();
    // A datagram is queued whole or not at all.
    if (n >= 0) return ShmIoError("sendmsg(mapping control): short datagram", EIO);
    switch (errno) {
      case EINTR:
        continue;
      case ECONNREFUSED:  // a DGRAM socketpair reports its closed peer this way
      case EPIPE:
      case ECONNRESET:
      case ENOTCONN:
        return ShmError(ShmErrc::kMappingPeerClosed,
                        absl::StrCat("mapping-control send: ", std::strerror(errno)));
      default:
        return ShmIoError("sendmsg(mapping control)", errno);
    }
  }
}

absl::StatusOr<std::optional<ReceivedMapping>> ReceiveMappingControl(int socket_fd) {
  uint8_t data[kMappingControlReceiveBuffer];
  // Room for exactly one descriptor. The kernel rounds this up so that two
  // fit without MSG_CTRUNC; a second descriptor is rejected below.
  alignas(struct cmsghdr) uint8_t control[ScmRightsSpace(1)];
  struct iovec iov = {data, sizeof(data)};
  struct msghdr msg = {};
  ssize_t n;
  do {
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    msg.msg_flags = 0;
    // MSG_TRUNC: return the datagram's real length, so an oversized one is
    // reported as such. MSG_DONTWAIT: a blocking socket must not block us.
    n = ::recvmsg(socket_fd, &msg, MSG_TRUNC | MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return std::optional<ReceivedMapping>();
    if (errno == EMSGSIZE) {
      return ShmError(ShmErrc::kMappingInvalidLength, "mapping-control recvmsg: EMSGSIZE");
    }
    return ShmIoError("recvmsg(mapping control)", errno);
  }
  // Owned from here on: every early return below closes them.
  std::vector<UniqueFd> fds = UnpackScmRights(msg);
  if (n == 0) return ShmError(ShmErrc::kMappingPeerClosed, "mapping-control recvmsg returned 0");
  if (static_cast<size_t>(n) != kMappingControlMessageSize) {
    return InvalidLength(static_cast<uint64_t>(n));
  }
  if ((msg.msg_flags & MSG_CTRUNC) != 0) {
    return ShmError(ShmErrc::kMappingControlTruncated, "mapping-control data truncated");
  }
  if (fds.size() > 1) {
    return ShmError(
        ShmErrc::kMappingControlTruncated,
        absl::StrCat("mapping-control message carried ", fds.size(), " descriptors, want 1"));
  }
  if (fds.empty()) return ShmError(ShmErrc::kMappingNoFd, "mapping-control message without fd");
  absl::StatusOr<MappingControlMessage> message =
      DecodeMappingControl(absl::MakeConstSpan(data, kMappingControlMessageSize));
  if (!message.ok()) return message.status();
  return std::optional<ReceivedMapping>(ReceivedMapping{*message, std::move(fds.front())});
}

}  // namespace shmhub::shm
