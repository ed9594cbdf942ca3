// Length-prefixed frames over a Unix-domain SOCK_STREAM socketpair: the
// baseline the shared-memory link is compared with.
//
// It is written the way a careful application would do it, so the
// comparison is fair to the socket: a frame is a little-endian u32 length
// followed by the payload, sent with one writev() per frame (no copy into a
// staging buffer); the reader pulls as many bytes as the kernel has with
// one read() into a large buffer and hands out frames from it, so a burst
// of small frames costs one system call on the receiving side, not two per
// frame.
//
// The sockets are blocking with SO_SNDTIMEO / SO_RCVTIMEO set to the
// caller's timeout, so a wedged peer costs a DEADLINE_EXCEEDED, never a
// hang; a dead one is UNAVAILABLE. A reader made with a busy-poll deadline
// never blocks instead: it retries recv(MSG_DONTWAIT) until data arrives or
// that deadline passes — the socket's counterpart of a spinning link
// receiver, which keeps the kernel's wake-up of a sleeping reader (on a VM,
// of a halted virtual CPU) out of a round trip. SIGPIPE must be ignored by the process
// (the driver does) so a dead reader is an EPIPE, not a kill. A length above
// the reader's limit is DATA_LOSS. Not thread-safe; one writer and one
// reader per direction.
#ifndef SHMHUB_BENCH_HARNESS_STREAM_FRAMES_H_
#define SHMHUB_BENCH_HARNESS_STREAM_FRAMES_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "shm/unique_fd.h"

namespace shmhub::bench {

// socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC) with both send and receive
// timeouts of `timeout` on both ends.
absl::StatusOr<std::pair<shm::UniqueFd, shm::UniqueFd>> CreateStreamPair(
    std::chrono::milliseconds timeout);

// The socket's SO_SNDBUF, for the record (0 if it cannot be read).
int SendBufferBytes(int fd);

class StreamFrameWriter {
 public:
  explicit StreamFrameWriter(int fd) : fd_(fd) {}
  // Writes the whole frame (retrying partial writes and EINTR).
  absl::Status Write(absl::Span<const uint8_t> payload);

 private:
  int fd_;
};

class StreamFrameReader {
 public:
  static constexpr size_t kReadChunk = 256 * 1024;

  // Frames longer than `max_payload` are refused as DATA_LOSS. With
  // `busy_poll_until`, reads spin (see above) until that deadline.
  StreamFrameReader(int fd, uint32_t max_payload,
                    std::optional<std::chrono::steady_clock::time_point> busy_poll_until =
                        std::nullopt);
  // The next frame's payload; valid until the next call.
  absl::StatusOr<absl::Span<const uint8_t>> Next();

 private:
  // Reads at least once more into the buffer, after making room for a frame
  // of `need` bytes from begin_.
  absl::Status Fill(size_t need);

  int fd_;
  uint32_t max_payload_;
  std::optional<std::chrono::steady_clock::time_point> busy_poll_until_;
  std::vector<uint8_t> buffer_;
  size_t begin_ = 0;  // first unconsumed byte
  size_t end_ = 0;    // one past the last byte read
};

}  // namespace shmhub::bench

#endif  // SHMHUB_BENCH_HARNESS_STREAM_FRAMES_H_
