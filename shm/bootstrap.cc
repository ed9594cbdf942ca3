#include "shm/bootstrap.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "shm/le_bytes.h"
#include "shm/poll_fd.h"
#include "shm/scm_rights.h"
#include "shm/shm_error.h"

namespace shmhub::shm {
namespace {

constexpr uint8_t kVoxRequestMagic[kBootstrapMagicSize] = {'V', 'S', 'H', '1'};
constexpr uint8_t kVoxResponseMagic[kBootstrapMagicSize] = {'V', 'S', 'P', '1'};
constexpr uint8_t kSpecRequestMagic[kBootstrapMagicSize] = {'R', 'S', 'H', '0'};
constexpr uint8_t kSpecResponseMagic[kBootstrapMagicSize] = {'R', 'S', 'P', '0'};

constexpr size_t kMaxPeerId = 255;
// Control room on receive: more than any valid response carries, so a wrong
// count up to this many is reported as such rather than as truncation.
constexpr size_t kReceiveFdRoom = 8;

const uint8_t* ResponseMagic(BootstrapDialect dialect) {
  return dialect == BootstrapDialect::kVox ? kVoxResponseMagic : kSpecResponseMagic;
}

absl::string_view DialectName(BootstrapDialect dialect) {
  return dialect == BootstrapDialect::kVox ? "VSP1" : "RSP0";
}

absl::Status CheckPeerId(BootstrapStatus status, uint32_t peer_id) {
  if (status == BootstrapStatus::kError && peer_id != 0) {
    return ShmError(ShmErrc::kBootstrapBadPeerId,
                    absl::StrCat("bootstrap error response with peer_id ", peer_id));
  }
  if (status == BootstrapStatus::kSuccess && (peer_id == 0 || peer_id > kMaxPeerId)) {
    return ShmError(
        ShmErrc::kBootstrapBadPeerId,
        absl::StrCat("bootstrap success with peer_id ", peer_id, " outside 1..", kMaxPeerId));
  }
  return absl::OkStatus();
}

struct ResponseHeader {
  BootstrapStatus status;
  uint32_t peer_id;
  uint16_t payload_len;
};

// Steps 2 and 3 of the §11.1 decoding order; `bytes` holds at least the
// 11-byte header.
absl::StatusOr<ResponseHeader> DecodeResponseHeader(BootstrapDialect dialect,
                                                    const uint8_t* bytes) {
  if (std::memcmp(bytes, ResponseMagic(dialect), kBootstrapMagicSize) != 0) {
    return ShmError(ShmErrc::kBootstrapInvalidMagic,
                    absl::StrCat("bootstrap response magic is not ", DialectName(dialect)));
  }
  const uint8_t status = bytes[4];
  if (status > static_cast<uint8_t>(BootstrapStatus::kError)) {
    return ShmError(ShmErrc::kBootstrapUnknownStatus,
                    absl::StrCat("bootstrap response status ", status));
  }
  return ResponseHeader{static_cast<BootstrapStatus>(status), GetLe<uint32_t>(bytes + 5),
                        GetLe<uint16_t>(bytes + 9)};
}

// Strict UTF-8 as Rust's str::from_utf8 sees it: no overlong forms, no
// surrogates, nothing above U+10FFFF.
bool IsUtf8(absl::string_view s) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const uint8_t b = p[i];
    if (b < 0x80) {
      ++i;
      continue;
    }
    size_t extra;
    uint8_t lo = 0x80;
    uint8_t hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) {
      extra = 1;
    } else if (b >= 0xE0 && b <= 0xEF) {
      extra = 2;
      if (b == 0xE0) lo = 0xA0;
      if (b == 0xED) hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
      extra = 3;
      if (b == 0xF0) lo = 0x90;
      if (b == 0xF4) hi = 0x8F;
    } else {
      return false;
    }
    if (n - i <= extra) return false;
    if (p[i + 1] < lo || p[i + 1] > hi) return false;
    for (size_t k = 2; k <= extra; ++k) {
      if (p[i + k] < 0x80 || p[i + k] > 0xBF) return false;
    }
    i += extra + 1;
  }
  return true;
}

absl::Status TimedOut(absl::string_view what) {
  return ShmIoError(absl::StrCat(what, ": no progress before the timeout"), ETIMEDOUT);
}

}  // namespace

std::array<uint8_t, kBootstrapMagicSize> EncodeVoxRequest() {
  std::array<uint8_t, kBootstrapMagicSize> out;
  std::memcpy(out.data(), kVoxRequestMagic, kBootstrapMagicSize);
  return out;
}

absl::StatusOr<std::vector<uint8_t>> EncodeSpecRequest(absl::string_view session_id) {
  if (session_id.size() > kMaxBootstrapPayload) {
    return ShmError(
        ShmErrc::kBootstrapPayloadTooLarge,
        absl::StrCat("session id of ", session_id.size(), " bytes > ", kMaxBootstrapPayload));
  }
  std::vector<uint8_t> out(kSpecRequestHeaderSize + session_id.size());
  std::memcpy(out.data(), kSpecRequestMagic, kBootstrapMagicSize);
  PutLe<uint16_t>(out.data() + 4, static_cast<uint16_t>(session_id.size()));
  std::memcpy(out.data() + kSpecRequestHeaderSize, session_id.data(), session_id.size());
  return out;
}

absl::StatusOr<BootstrapRequest> DecodeBootstrapRequest(absl::Span<const uint8_t> bytes) {
  if (bytes.size() < kBootstrapMagicSize) {
    return ShmError(ShmErrc::kBootstrapTruncated,
                    absl::StrCat("bootstrap request of ", bytes.size(), " bytes"));
  }
  if (std::memcmp(bytes.data(), kVoxRequestMagic, kBootstrapMagicSize) == 0) {
    return BootstrapRequest{BootstrapDialect::kVox, std::string()};
  }
  if (std::memcmp(bytes.data(), kSpecRequestMagic, kBootstrapMagicSize) != 0) {
    return ShmError(ShmErrc::kBootstrapInvalidMagic, "bootstrap request magic is not VSH1 or RSH0");
  }
  if (bytes.size() < kSpecRequestHeaderSize) {
    return ShmError(ShmErrc::kBootstrapTruncated,
                    absl::StrCat("RSH0 request of ", bytes.size(), " bytes"));
  }
  const uint16_t sid_len = GetLe<uint16_t>(bytes.data() + 4);
  if (bytes.size() != kSpecRequestHeaderSize + sid_len) {
    return ShmError(
        ShmErrc::kBootstrapLengthMismatch,
        absl::StrCat("RSH0 request of ", bytes.size(), " bytes with sid_len ", sid_len));
  }
  return BootstrapRequest{
      BootstrapDialect::kSpec,
      std::string(reinterpret_cast<const char*>(bytes.data()) + kSpecRequestHeaderSize, sid_len)};
}

size_t BootstrapFdCount(BootstrapDialect dialect, BootstrapStatus status) {
  if (status != BootstrapStatus::kSuccess) return 0;
  return dialect == BootstrapDialect::kVox ? 4 : 3;
}

absl::StatusOr<std::vector<uint8_t>> EncodeBootstrapResponse(BootstrapDialect dialect,
                                                             const BootstrapResponse& response) {
  if (response.payload.size() > kMaxBootstrapPayload) {
    return ShmError(ShmErrc::kBootstrapPayloadTooLarge,
                    absl::StrCat("bootstrap payload of ", response.payload.size(), " bytes > ",
                                 kMaxBootstrapPayload));
  }
  if (absl::Status s = CheckPeerId(response.status, response.peer_id); !s.ok()) return s;
  std::vector<uint8_t> out(kBootstrapResponseHeaderSize + response.payload.size());
  std::memcpy(out.data(), ResponseMagic(dialect), kBootstrapMagicSize);
  out[4] = static_cast<uint8_t>(response.status);
  PutLe<uint32_t>(out.data() + 5, response.peer_id);
  PutLe<uint16_t>(out.data() + 9, static_cast<uint16_t>(response.payload.size()));
  std::memcpy(out.data() + kBootstrapResponseHeaderSize, response.payload.data(),
              response.payload.size());
  return out;
}

absl::StatusOr<BootstrapResponse> DecodeBootstrapResponse(BootstrapDialect dialect,
                                                          absl::Span<const uint8_t> bytes) {
  if (bytes.size() < kBootstrapResponseHeaderSize) {
    return ShmError(ShmErrc::kBootstrapTruncated,
                    absl::StrCat("bootstrap response of ", bytes.size(), " bytes"));
  }
  absl::StatusOr<ResponseHeader> header = DecodeResponseHeader(dialect, bytes.data());
  if (!header.ok()) return header.status();
  if (bytes.size() != kBootstrapResponseHeaderSize + header->payload_len) {
    return ShmError(ShmErrc::kBootstrapLengthMismatch,
                    absl::StrCat("bootstrap response of ", bytes.size(), " bytes with payload_len ",
                                 header->payload_len));
  }
  if (absl::Status s = CheckPeerId(header->status, header->peer_id); !s.ok()) return s;
  return BootstrapResponse{
      header->status, header->peer_id,
      std::string(reinterpret_cast<const char*>(bytes.data()) + kBootstrapResponseHeaderSize,
                  header->payload_len)};
}

absl::StatusOr<StreamBootstrapPayload> SplitStreamBootstrapPayload(absl::string_view payload) {
  const size_t first = payload.find('\0');
  const size_t second =
      first == absl::string_view::npos ? absl::string_view::npos : payload.find('\0', first + 1);
  if (second == absl::string_view::npos) {
    return ShmError(ShmErrc::kBootstrapBadFields,
                    "stream bootstrap payload has fewer than two NUL separators");
  }
  StreamBootstrapPayload fields{std::string(payload.substr(0, first)),
                                std::string(payload.substr(first + 1, second - first - 1)),
                                std::string(payload.substr(second + 1))};
  if (!IsUtf8(fields.segment_path) || !IsUtf8(fields.doorbell_name) ||
      !IsUtf8(fields.mmap_control_name)) {
    return ShmError(ShmErrc::kBootstrapBadFields, "stream bootstrap field is not UTF-8");
  }
  return fields;
}

absl::Status SendBootstrapResponse(int socket_fd, BootstrapDialect dialect,
                                   const BootstrapResponse& response, absl::Span<const int> fds,
                                   std::chrono::milliseconds timeout) {
  const size_t want_fds = BootstrapFdCount(dialect, response.status);
  if (fds.size() != want_fds) {
    return ShmError(
        ShmErrc::kBootstrapBadFdCount,
        absl::StrCat(DialectName(dialect), " response with ", fds.size(), " fds, want ", want_fds));
  }
  absl::StatusOr<std::vector<uint8_t>> frame = EncodeBootstrapResponse(dialect, response);
  if (!frame.ok()) return frame.status();
  const Deadline deadline = DeadlineAfter(timeout);
  alignas(struct cmsghdr) uint8_t control[ScmRightsSpace(4)];
  size_t sent = 0;
  while (sent < frame->size()) {
    struct iovec iov = {frame->data() + sent, frame->size() - sent};
    struct msghdr msg = {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    // The fds ride with the first byte; once any byte is out, they are too.
    if (sent == 0) PackScmRights(fds, absl::MakeSpan(control), &msg);
    const ssize_t n = ::sendmsg(socket_fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    if (n == 0) return ShmIoError("sendmsg(bootstrap) sent nothing", EIO);
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return ShmIoError("sendmsg(bootstrap)", errno);
    absl::StatusOr<short> revents = PollFd(socket_fd, POLLOUT, deadline);
    if (!revents.ok()) return revents.status();
    if (*revents == 0) return TimedOut("sendmsg(bootstrap)");
  }
  return absl::OkStatus();
}

absl::StatusOr<ReceivedBootstrapResponse> ReceiveBootstrapResponse(
    int socket_fd, BootstrapDialect dialect, std::chrono::milliseconds timeout) {
  const Deadline deadline = DeadlineAfter(timeout);
  ReceivedBootstrapResponse received;
  std::vector<uint8_t> frame(kBootstrapResponseHeaderSize);
  size_t have = 0;
  bool header_checked = false;
  alignas(struct cmsghdr) uint8_t control[ScmRightsSpace(kReceiveFdRoom)];
  // Reads exactly the frame, never past it; `frame` grows to the full size
  // once the header names the payload length.
  while (have < frame.size()) {
    struct iovec iov = {frame.data() + have, frame.size() - have};
    struct msghdr msg = {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    const ssize_t n = ::recvmsg(socket_fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) return ShmIoError("recvmsg(bootstrap)", errno);
      absl::StatusOr<short> revents = PollFd(socket_fd, POLLIN, deadline);
      if (!revents.ok()) return revents.status();
      if (*revents == 0) return TimedOut("recvmsg(bootstrap)");
      continue;
    }
    // Take ownership first, so every return below closes what arrived.
    std::vector<UniqueFd> arrived = UnpackScmRights(msg);
    const bool late_fds = have > 0 && !arrived.empty();
    for (UniqueFd& fd : arrived) received.fds.push_back(std::move(fd));
    if ((msg.msg_flags & MSG_CTRUNC) != 0) {
      return ShmError(ShmErrc::kBootstrapControlTruncated, "bootstrap control data truncated");
    }
    if (late_fds) {
      return ShmError(ShmErrc::kBootstrapBadFdCount,
                      absl::StrCat("bootstrap fds arrived after byte ", have));
    }
    if (n == 0) {
      return ShmError(
          ShmErrc::kBootstrapTruncated,
          absl::StrCat("bootstrap peer closed after ", have, " of ", frame.size(), " bytes"));
    }
    have += static_cast<size_t>(n);
    if (!header_checked && have == kBootstrapResponseHeaderSize) {
      // Fail on a wrong magic or status now rather than after a payload.
      absl::StatusOr<ResponseHeader> header = DecodeResponseHeader(dialect, frame.data());
      if (!header.ok()) return header.status();
      frame.resize(kBootstrapResponseHeaderSize + header->payload_len);
      header_checked = true;
    }
  }
  absl::StatusOr<BootstrapResponse> response = DecodeBootstrapResponse(dialect, frame);
  if (!response.ok()) return response.status();
  const size_t want_fds = BootstrapFdCount(dialect, response->status);
  if (received.fds.size() != want_fds) {
    return ShmError(ShmErrc::kBootstrapBadFdCount,
                    absl::StrCat(DialectName(dialect), " response with ", received.fds.size(),
                                 " fds, want ", want_fds));
  }
  received.response = *std::move(response);
  return received;
}

}  // namespace shmhub::shm
