#include "server/local/handshake_table.h"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "server/base/log.h"
#include "shm/host_control.h"
#include "shm/le_bytes.h"

namespace shmhub::server {
namespace {

constexpr size_t kMaxRequestBytes = shm::kSpecRequestHeaderSize + shm::kMaxBootstrapPayload;

enum class ReadResult {
  kMore,    // the client may send more
  kEnded,   // the client closed its side (or sent the most a request can be)
  kFailed,  // recv failed: drop the connection
};

// Appends what the handshake's client has sent so far.
ReadResult ReadRequestBytes(Handshake& handshake) {
  uint8_t buffer[4096];
  while (handshake.bytes.size() < kMaxRequestBytes) {
    const size_t room = std::min(sizeof(buffer), kMaxRequestBytes - handshake.bytes.size());
    const ssize_t got = ::recv(handshake.connection.get(), buffer, room, 0);
    if (got > 0) {
      handshake.bytes.insert(handshake.bytes.end(), buffer, buffer + got);
      continue;
    }
    if (got == 0) return ReadResult::kEnded;
    if (errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK ? ReadResult::kMore : ReadResult::kFailed;
  }
  return ReadResult::kEnded;
}

// The request once enough bytes decide it: nullopt while more are needed.
// VSH1 is complete at 4 bytes (trailing bytes are ignored, §11.1); RSH0 at
// 6 + sid_len. Any other magic fails at once.
absl::StatusOr<std::optional<shm::BootstrapRequest>> TryDecodeRequest(
    const std::vector<uint8_t>& bytes) {
  if (bytes.size() < shm::kBootstrapMagicSize) return std::nullopt;
  size_t needed = shm::kBootstrapMagicSize;
  if (std::memcmp(bytes.data(), "RSH0", shm::kBootstrapMagicSize) == 0) {
    if (bytes.size() < shm::kSpecRequestHeaderSize) return std::nullopt;
    needed = shm::kSpecRequestHeaderSize +
             shm::GetLe<uint16_t>(bytes.data() + shm::kBootstrapMagicSize);
    if (bytes.size() < needed) return std::nullopt;
  }
  absl::StatusOr<shm::BootstrapRequest> request =
      shm::DecodeBootstrapRequest(absl::MakeConstSpan(bytes.data(), needed));
  if (!request.ok()) return request.status();
  return std::optional<shm::BootstrapRequest>(*std::move(request));
}

}  // namespace

bool HandshakeTable::Admit(shm::UniqueFd connection, PeerCredentials who, absl::Time now) {
  if (pending_.size() >= kCapacity) {
    Log(LogLevel::kWarning, absl::StrCat("local socket: dropped a connection from ",
                                         who.Describe(), ": ", kCapacity,
                                         " handshakes are already in progress"));
    return false;
  }
  pending_.push_back(Handshake{.connection = std::move(connection),
                               .who = std::move(who),
                               .bytes = {},
                               .deadline = now + kTimeout});
  return true;
}

void HandshakeTable::AddTo(PollSet& polled) {
  first_index_ = polled.size();
  polled_count_ = pending_.size();
  for (const Handshake& handshake : pending_) polled.Add(handshake.connection.get(), POLLIN);
}

std::vector<CompletedHandshake> HandshakeTable::Collect(const PollSet& polled, absl::Time now) {
  std::vector<CompletedHandshake> completed;
  std::vector<Handshake> still_pending;
  for (size_t i = 0; i < pending_.size(); ++i) {
    Handshake& handshake = pending_[i];
    if (i < polled_count_ && polled.revents(first_index_ + i) != 0) {
      const ReadResult read = ReadRequestBytes(handshake);
      if (read == ReadResult::kFailed) continue;
      if (shm::IsHostRequest(handshake.bytes)) {
        completed.push_back(
            CompletedHandshake{.kind = CompletedHandshake::Kind::kHost,
                               .handshake = std::move(handshake),
                               .request = {}});
        continue;
      }
      absl::StatusOr<std::optional<shm::BootstrapRequest>> request =
          TryDecodeRequest(handshake.bytes);
      if (!request.ok()) {
        // §11.2: an unknown request is closed without a reply.
        Log(LogLevel::kWarning, absl::StrCat("local socket: dropped a connection from ",
                                             handshake.who.Describe(), ": ",
                                             request.status().message()));
        continue;
      }
      if (request->has_value()) {
        completed.push_back(CompletedHandshake{.kind = CompletedHandshake::Kind::kGuest,
                                               .handshake = std::move(handshake),
                                               .request = **std::move(request)});
        continue;
      }
      if (read == ReadResult::kEnded) continue;  // closed before a whole request
    }
    if (now >= handshake.deadline) {
      Log(LogLevel::kWarning,
          absl::StrCat("local socket: dropped a connection from ", handshake.who.Describe(),
                       " that sent no complete request within ", absl::FormatDuration(kTimeout)));
      continue;
    }
    still_pending.push_back(std::move(handshake));
  }
  pending_ = std::move(still_pending);
  polled_count_ = 0;
  return completed;
}

absl::Time HandshakeTable::NextDeadline() const {
  absl::Time earliest = absl::InfiniteFuture();
  for (const Handshake& handshake : pending_) earliest = std::min(earliest, handshake.deadline);
  return earliest;
}

}  // namespace shmhub::server
