// Bootstrap over a local control socket (format §11): how a guest learns its
// peer id and receives its doorbell end, the segment file and its
// mapping-control socket.
//
// Two dialects share one response layout (an 11-byte header, then up to
// 65535 payload bytes):
//  * kVox: what the Rust crates speak. Request "VSH1" (4 bytes);
//    response "VSP1"; a success carries 4 fds in this order: doorbell end,
//    segment file, mapping-control receive fd, mapping-control send fd.
//  * kSpec: the published spec's "RSH0" request (with a session id) and
//    "RSP0" response; a success carries 3 fds: doorbell end, segment file,
//    mapping-control fd (used both ways).
// An error response (status 1) carries no fds and peer id 0. Ours [D-12]: a
// success needs 1 <= peer_id <= 255 (Rust accepts 0 and truncates > 255).
//
// Transport (Unix stream sockets): the sender puts the whole frame and the
// fds in one sendmsg(MSG_NOSIGNAL). SOCK_STREAM may still split the frame, so
// the receiver reads until the frame is complete [D-12], within a timeout.
// The fds arrive with the first byte; the receiver refuses, and closes, any
// set of fds that does not match the status and dialect, fds arriving later,
// and control data the kernel had to truncate.
//
// Thread-safety: stateless functions.
#ifndef SHMHUB_SHM_BOOTSTRAP_H_
#define SHMHUB_SHM_BOOTSTRAP_H_

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "shm/format.h"  // kBootstrapResponseHeaderSize
#include "shm/unique_fd.h"

namespace shmhub::shm {

enum class BootstrapDialect {
  kVox,   // VSH1 / VSP1, 4 fds: the Rust crates (§11.1)
  kSpec,  // RSH0 / RSP0, 3 fds: the published spec (§11.2)
};

enum class BootstrapStatus : uint8_t { kSuccess = 0, kError = 1 };

inline constexpr size_t kBootstrapMagicSize = 4;
inline constexpr size_t kMaxBootstrapPayload = 65535;
// RSH0 request: magic, then sid_len (u16 LE), then the session id.
inline constexpr size_t kSpecRequestHeaderSize = 6;

// ---- Requests ----------------------------------------------------------------

struct BootstrapRequest {
  BootstrapDialect dialect = BootstrapDialect::kVox;
  std::string session_id;  // kSpec only; opaque bytes
};

// "VSH1".
std::array<uint8_t, kBootstrapMagicSize> EncodeVoxRequest();

// "RSH0", sid_len, session id. kBootstrapPayloadTooLarge above 65535 bytes.
absl::StatusOr<std::vector<uint8_t>> EncodeSpecRequest(absl::string_view session_id);

// Either request; the magic picks the dialect. kBootstrapTruncated below 4
// bytes (6 for RSH0), kBootstrapInvalidMagic for any other magic. VSH1
// ignores trailing bytes, as Rust does; RSH0 must be exactly 6 + sid_len
// bytes long (kBootstrapLengthMismatch).
absl::StatusOr<BootstrapRequest> DecodeBootstrapRequest(absl::Span<const uint8_t> bytes);

// ---- Responses ---------------------------------------------------------------

struct BootstrapResponse {
  BootstrapStatus status = BootstrapStatus::kError;
  uint32_t peer_id = 0;
  std::string payload;  // success (kVox): the segment path, no terminator
};

// How many fds travel with a response: 4 (kVox) or 3 (kSpec) for a success,
// none for an error.
size_t BootstrapFdCount(BootstrapDialect dialect, BootstrapStatus status);

// The frame. kBootstrapPayloadTooLarge above 65535 payload bytes;
// kBootstrapBadPeerId for a success outside 1..255 or an error with a peer
// id, which our own decoder would refuse.
absl::StatusOr<std::vector<uint8_t>> EncodeBootstrapResponse(BootstrapDialect dialect,
                                                             const BootstrapResponse& response);

// Checks, in this order: kBootstrapTruncated (< 11 bytes),
// kBootstrapInvalidMagic, kBootstrapUnknownStatus (status > 1, reported
// even if the length is also wrong), kBootstrapLengthMismatch (size !=
// 11 + payload_len), kBootstrapBadPeerId (error with peer id != 0, success
// outside 1..255).
absl::StatusOr<BootstrapResponse> DecodeBootstrapResponse(BootstrapDialect dialect,
                                                          absl::Span<const uint8_t> bytes);

// Stream variant (no fd passing): a success payload "segment_path \0
// doorbell_name \0 mmap_control_name", split at the first two NULs; further
// NULs stay in the third field. kBootstrapBadFields with fewer than two NULs
// or a field that is not UTF-8.
struct StreamBootstrapPayload {
  std::string segment_path;
  std::string doorbell_name;
  std::string mmap_control_name;
};
absl::StatusOr<StreamBootstrapPayload> SplitStreamBootstrapPayload(absl::string_view payload);

// ---- Unix transport ----------------------------------------------------------

// Sends `response` with `fds` attached (the caller keeps its copies) on a
// connected stream socket: one sendmsg(MSG_NOSIGNAL) for the whole frame
// unless the socket takes only part of it, in which case the rest follows
// without fds. kBootstrapBadFdCount unless fds.size() ==
// BootstrapFdCount(dialect, status); the encoding errors; kIo on a send
// failure or when `timeout` passes while the socket is full.
absl::Status SendBootstrapResponse(int socket_fd, BootstrapDialect dialect,
                                   const BootstrapResponse& response, absl::Span<const int> fds,
                                   std::chrono::milliseconds timeout);

struct ReceivedBootstrapResponse {
  BootstrapResponse response;
  // In the order sent (§11.1); close-on-exec (MSG_CMSG_CLOEXEC).
  std::vector<UniqueFd> fds;
};

// Reads one whole response frame from a connected stream socket, waiting at
// most `timeout` in all. Besides the decoding errors: kBootstrapTruncated
// when the peer closes mid-frame, kBootstrapControlTruncated on MSG_CTRUNC,
// kBootstrapBadFdCount when the fds do not match the status and dialect or
// arrive after the first byte, kIo on failure or timeout (ETIMEDOUT). Every
// fd received is closed on every error.
absl::StatusOr<ReceivedBootstrapResponse> ReceiveBootstrapResponse(
    int socket_fd, BootstrapDialect dialect, std::chrono::milliseconds timeout);

}  // namespace shmhub::shm

#endif  // SHMHUB_SHM_BOOTSTRAP_H_
