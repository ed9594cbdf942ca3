#include "bench/harness/socketpair_transport.h"

#include <cstdint>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "bench/harness/control_channel.h"
#include "bench/harness/cpu_placement.h"
#include "bench/harness/forked_child.h"
#include "bench/harness/payload_stamp.h"
#include "bench/harness/stream_frames.h"
#include "bench/harness/two_process.h"
#include "shm/poll_fd.h"
#include "shm/unique_fd.h"

namespace shmhub::bench {
namespace {

absl::Status OutOfOrder(uint64_t expected, absl::Span<const uint8_t> got, size_t size) {
  return absl::DataLossError(absl::StrCat("expected frame ", expected, " of ", size,
                                          " bytes, got stamp ", ReadStamp(got), " of ",
                                          got.size(), " bytes"));
}

absl::Status NoSamples(const RoundTripWorkload& workload) {
  return absl::DeadlineExceededError(
      absl::StrCat("the time budget ended within the ", workload.warmup, " warm-up round trips"));
}

absl::Status SendFrames(int fd, const ThroughputWorkload& workload) {
  StreamFrameWriter writer(fd);
  std::vector<uint8_t> payload(workload.payload_bytes, 0xA5);
  for (uint64_t i = 0; i < workload.frames; ++i) {
    Stamp(absl::MakeSpan(payload), i);
    if (absl::Status s = writer.Write(payload); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status ReceiveFrames(int fd, const ThroughputWorkload& workload) {
  StreamFrameReader reader(fd, workload.payload_bytes);
  uint64_t sum = 0;
  for (uint64_t i = 0; i < workload.frames; ++i) {
    absl::StatusOr<absl::Span<const uint8_t>> frame = reader.Next();
    if (!frame.ok()) return frame.status();
    if (frame->size() != workload.payload_bytes || ReadStamp(*frame) != i) {
      return OutOfOrder(i, *frame, workload.payload_bytes);
    }
    if (workload.read_payload) sum += SumWords(*frame);
  }
  KeepAlive(sum);
  return absl::OkStatus();
}

// The reader of a round trip: blocking, or busy-polling until the
// measurement's timeout.
StreamFrameReader RoundTripReader(int fd, const RoundTripWorkload& workload, bool busy_poll) {
  std::optional<std::chrono::steady_clock::time_point> until;
  if (busy_poll) until = std::chrono::steady_clock::now() + workload.timeout;
  return StreamFrameReader(fd, workload.payload_bytes, until);
}

absl::Status Echo(int fd, const RoundTripWorkload& workload, bool busy_poll) {
  StreamFrameReader reader = RoundTripReader(fd, workload, busy_poll);
  StreamFrameWriter writer(fd);
  // The parent sends at most max_iterations frames and then the stop frame.
  for (uint64_t i = 0; i <= workload.max_iterations; ++i) {
    absl::StatusOr<absl::Span<const uint8_t>> frame = reader.Next();
    if (!frame.ok()) return frame.status();
    if (absl::Status s = writer.Write(*frame); !s.ok()) return s;
    if (ReadStamp(*frame) == kStopStamp) return absl::OkStatus();
  }
  return absl::DataLossError("no stop frame after max_iterations");
}

absl::Status PingPong(int fd, const RoundTripWorkload& workload, bool busy_poll,
                      RoundTripSamples& samples) {
  StreamFrameReader reader = RoundTripReader(fd, workload, busy_poll);
  StreamFrameWriter writer(fd);
  std::vector<uint8_t> payload(workload.payload_bytes, 0x5A);
  const int64_t stop_at = NowNs() + std::chrono::nanoseconds(workload.time_budget).count();
  for (uint64_t i = 0; i < workload.max_iterations && NowNs() < stop_at; ++i) {
    Stamp(absl::MakeSpan(payload), i);
    const int64_t start = NowNs();
    if (absl::Status s = writer.Write(payload); !s.ok()) return s;
    absl::StatusOr<absl::Span<const uint8_t>> echo = reader.Next();
    const int64_t end = NowNs();
    if (!echo.ok()) return echo.status();
    if (echo->size() != workload.payload_bytes || ReadStamp(*echo) != i) {
      return OutOfOrder(i, *echo, workload.payload_bytes);
    }
    if (i >= workload.warmup) samples.push_back(end - start);
  }
  Stamp(absl::MakeSpan(payload), kStopStamp);
  if (absl::Status s = writer.Write(payload); !s.ok()) return s;
  absl::StatusOr<absl::Span<const uint8_t>> echo = reader.Next();
  if (!echo.ok()) return echo.status();
  return samples.empty() ? NoSamples(workload) : absl::OkStatus();
}

// Runs `child_work` on one end in a forked child and `parent_work` on the
// other here, timing parent_work.
template <typename ChildWork, typename ParentWork>
absl::StatusOr<int64_t> RunPair(std::chrono::milliseconds timeout, int child_cpu,
                                ChildWork child_work, ParentWork parent_work) {
  absl::StatusOr<std::pair<shm::UniqueFd, shm::UniqueFd>> sockets = CreateStreamPair(timeout);
  if (!sockets.ok()) return sockets.status();
  absl::StatusOr<ControlChannel> channel = ControlChannel::Create();
  if (!channel.ok()) return channel.status();
  const shm::Deadline deadline = shm::DeadlineAfter(timeout);

  absl::StatusOr<ForkedChild> child = ForkedChild::Start([&]() {
    ControlEnd control = channel->ChildEnd();
    sockets->first.Reset();
    const absl::Status placed = child_cpu < 0 ? absl::OkStatus() : PinToCpu(child_cpu);
    if (absl::Status s = ChildReady(control, placed, deadline); !s.ok()) return 1;
    return ChildFinish(control, child_work(sockets->second.get()), deadline);
  });
  if (!child.ok()) return child.status();
  ControlEnd control = channel->ParentEnd();
  sockets->second.Reset();

  if (absl::Status s = ParentAwaitReady(control, deadline); !s.ok()) return s;
  const int64_t start = NowNs();
  if (absl::Status s = ParentGo(control); !s.ok()) return s;
  if (absl::Status s = parent_work(sockets->first.get()); !s.ok()) return s;
  const int64_t elapsed = NowNs() - start;
  if (absl::Status s = ParentAwaitDone(control, *child, deadline); !s.ok()) return s;
  return elapsed;
}

}  // namespace

absl::StatusOr<ThroughputSample> SocketpairThroughput(const ThroughputWorkload& workload) {
  if (workload.payload_bytes < kMinPayload) return absl::InvalidArgumentError("payload < 8 bytes");
  absl::StatusOr<int64_t> elapsed = RunPair(
      workload.timeout, workload.child_cpu, [&](int fd) { return SendFrames(fd, workload); },
      [&](int fd) { return ReceiveFrames(fd, workload); });
  if (!elapsed.ok()) return elapsed.status();
  return ThroughputSample{workload.frames, workload.frames * workload.payload_bytes, *elapsed};
}

absl::StatusOr<RoundTripSamples> SocketpairRoundTrip(const RoundTripWorkload& workload,
                                                     bool busy_poll) {
  if (workload.payload_bytes < kMinPayload) return absl::InvalidArgumentError("payload < 8 bytes");
  RoundTripSamples samples;
  samples.reserve(workload.max_iterations);
  absl::StatusOr<int64_t> elapsed = RunPair(
      workload.timeout, workload.child_cpu, [&](int fd) { return Echo(fd, workload, busy_poll); },
      [&](int fd) { return PingPong(fd, workload, busy_poll, samples); });
  if (!elapsed.ok()) return elapsed.status();
  return samples;
}

}  // namespace shmhub::bench
