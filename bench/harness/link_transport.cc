#include "bench/harness/link_transport.h"

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/harness/control_channel.h"
#include "bench/harness/cpu_placement.h"
#include "bench/harness/forked_child.h"
#include "bench/harness/payload_stamp.h"
#include "bench/harness/two_process.h"
#include "shm/doorbell.h"
#include "shm/mapping_control.h"
#include "shm/poll_fd.h"
#include "shm/segment.h"
#include "shm/unique_fd.h"

namespace shmhub::bench {
namespace {

using client::LinkEndpoints;
using client::LinkSide;
using client::ReceivedFrame;
using client::RingLink;

// The descriptors one link pair needs, made before fork(); each process
// keeps its own ends and closes the other's, so that either one's death
// shows up as a hang-up on the other side (format §10).
struct Wiring {
  std::optional<shm::Doorbell> host_doorbell;
  std::optional<shm::Doorbell> guest_doorbell;
  shm::UniqueFd host_mapping_control;
  shm::UniqueFd guest_mapping_control;

  static absl::StatusOr<Wiring> Create() {
    Wiring wiring;
    absl::StatusOr<std::pair<shm::Doorbell, shm::Doorbell>> doorbells =
        shm::Doorbell::CreatePair();
    if (!doorbells.ok()) return doorbells.status();
    wiring.host_doorbell.emplace(std::move(doorbells->first));
    wiring.guest_doorbell.emplace(std::move(doorbells->second));
    absl::StatusOr<std::pair<shm::UniqueFd, shm::UniqueFd>> control =
        shm::CreateMappingControlPair();
    if (!control.ok()) return control.status();
    wiring.host_mapping_control = std::move(control->first);
    wiring.guest_mapping_control = std::move(control->second);
    return wiring;
  }

  LinkEndpoints Guest(shm::Segment* segment, uint32_t peer_id, uint32_t epoch, bool doorbell) {
    host_doorbell.reset();
    host_mapping_control.Reset();
    if (!doorbell) guest_doorbell.reset();
    LinkEndpoints endpoints;
    endpoints.segment = segment;
    endpoints.peer_id = peer_id;
    endpoints.epoch = epoch;
    endpoints.side = LinkSide::kGuest;
    endpoints.doorbell = std::move(guest_doorbell);
    endpoints.mapping_control = std::move(guest_mapping_control);
    return endpoints;
  }

  LinkEndpoints Host(shm::Segment* segment, uint32_t peer_id, uint32_t epoch, bool doorbell) {
    guest_doorbell.reset();
    guest_mapping_control.Reset();
    if (!doorbell) host_doorbell.reset();
    LinkEndpoints endpoints;
    endpoints.segment = segment;
    endpoints.peer_id = peer_id;
    endpoints.epoch = epoch;
    endpoints.side = LinkSide::kHost;
    endpoints.doorbell = std::move(host_doorbell);
    endpoints.mapping_control = std::move(host_mapping_control);
    return endpoints;
  }
};

absl::Status OutOfOrder(uint64_t expected, absl::Span<const uint8_t> got, size_t size) {
  return absl::DataLossError(absl::StrCat("expected frame ", expected, " of ", size,
                                          " bytes, got stamp ", ReadStamp(got), " of ",
                                          got.size(), " bytes"));
}

absl::Status SendFrames(RingLink& link, const ThroughputWorkload& workload, absl::Time deadline) {
  std::vector<uint8_t> payload(workload.payload_bytes, 0xA5);
  for (uint64_t i = 0; i < workload.frames; ++i) {
    Stamp(absl::MakeSpan(payload), i);
    if (absl::Status s = link.Send(payload, deadline); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat("Send of frame ", i, ": ", s.message()));
    }
  }
  return absl::OkStatus();
}

absl::Status ReceiveFrames(RingLink& link, const ThroughputWorkload& workload,
                           absl::Time deadline) {
  uint64_t sum = 0;
  for (uint64_t i = 0; i < workload.frames; ++i) {
    absl::StatusOr<ReceivedFrame> frame = link.Receive(deadline);
    if (!frame.ok()) {
      return absl::Status(frame.status().code(),
                          absl::StrCat("Receive of frame ", i, ": ", frame.status().message()));
    }
    if (frame->data().size() != workload.payload_bytes || ReadStamp(frame->data()) != i) {
      return OutOfOrder(i, frame->data(), workload.payload_bytes);
    }
    if (workload.read_payload) sum += SumWords(frame->data());
    frame->Release();
  }
  KeepAlive(sum);
  return absl::OkStatus();
}

// SendBatch of up to `batch` frames at a time, each with its own buffer.
absl::Status SendFrameBatches(RingLink& link, const ThroughputWorkload& workload, size_t batch,
                              absl::Time deadline) {
  std::vector<std::vector<uint8_t>> buffers(batch,
                                            std::vector<uint8_t>(workload.payload_bytes, 0xA5));
  std::vector<absl::Span<const uint8_t>> spans;
  uint64_t next = 0;
  while (next < workload.frames) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(batch, workload.frames - next));
    spans.clear();
    for (size_t k = 0; k < n; ++k) {
      Stamp(absl::MakeSpan(buffers[k]), next + k);
      spans.push_back(buffers[k]);
    }
    absl::StatusOr<size_t> sent = link.SendBatch(spans, deadline);
    if (!sent.ok()) {
      return absl::Status(sent.status().code(), absl::StrCat("SendBatch at frame ", next, ": ",
                                                             sent.status().message()));
    }
    next += n;
  }
  return absl::OkStatus();
}

// ReceiveBatch of up to `batch` frames at a time; they are released when
// the batch is dropped.
absl::Status ReceiveFrameBatches(RingLink& link, const ThroughputWorkload& workload,
                                 size_t batch, absl::Time deadline) {
  uint64_t sum = 0;
  uint64_t next = 0;
  while (next < workload.frames) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(batch, workload.frames - next));
    absl::StatusOr<std::vector<ReceivedFrame>> frames = link.ReceiveBatch(want, deadline);
    if (!frames.ok()) {
      return absl::Status(frames.status().code(), absl::StrCat("ReceiveBatch at frame ", next,
                                                               ": ", frames.status().message()));
    }
    for (const ReceivedFrame& frame : *frames) {
      if (frame.data().size() != workload.payload_bytes || ReadStamp(frame.data()) != next) {
        return OutOfOrder(next, frame.data(), workload.payload_bytes);
      }
      if (workload.read_payload) sum += SumWords(frame.data());
      ++next;
    }
  }
  KeepAlive(sum);
  return absl::OkStatus();
}

absl::Status Echo(RingLink& link, const RoundTripWorkload& workload, absl::Time deadline) {
  // The parent sends at most max_iterations frames and then the stop frame.
  for (uint64_t i = 0; i <= workload.max_iterations; ++i) {
    absl::StatusOr<ReceivedFrame> frame = link.Receive(deadline);
    if (!frame.ok()) return frame.status();
    if (absl::Status s = link.Send(frame->data(), deadline); !s.ok()) return s;
    const bool stop = ReadStamp(frame->data()) == kStopStamp;
    frame->Release();
    if (stop) return absl::OkStatus();
  }
  return absl::DataLossError("no stop frame after max_iterations");
}

absl::Status PingPong(RingLink& link, const RoundTripWorkload& workload, absl::Time deadline,
                      RoundTripSamples& samples) {
  std::vector<uint8_t> payload(workload.payload_bytes, 0x5A);
  const int64_t stop_at = NowNs() + std::chrono::nanoseconds(workload.time_budget).count();
  for (uint64_t i = 0; i < workload.max_iterations && NowNs() < stop_at; ++i) {
    Stamp(absl::MakeSpan(payload), i);
    const int64_t start = NowNs();
    if (absl::Status s = link.Send(payload, deadline); !s.ok()) return s;
    absl::StatusOr<ReceivedFrame> echo = link.Receive(deadline);
    const int64_t end = NowNs();
    if (!echo.ok()) return echo.status();
    if (echo->data().size() != workload.payload_bytes || ReadStamp(echo->data()) != i) {
      return OutOfOrder(i, echo->data(), workload.payload_bytes);
    }
    echo->Release();
    if (i >= workload.warmup) samples.push_back(end - start);
  }
  Stamp(absl::MakeSpan(payload), kStopStamp);
  if (absl::Status s = link.Send(payload, deadline); !s.ok()) return s;
  absl::StatusOr<ReceivedFrame> echo = link.Receive(deadline);
  if (!echo.ok()) return echo.status();
  if (samples.empty()) {
    return absl::DeadlineExceededError(absl::StrCat(
        "the time budget ended within the ", workload.warmup, " warm-up round trips"));
  }
  return absl::OkStatus();
}

absl::Status CheckNoLeak(const BenchSegment& segment, const std::vector<uint32_t>& before) {
  absl::StatusOr<std::vector<uint32_t>> after = segment.FreeCounts();
  if (!after.ok()) return after.status();
  if (*after != before) {
    return absl::DataLossError(absl::StrCat("pool free counts ", absl::StrJoin(*after, ","),
                                            " after the run, ", absl::StrJoin(before, ","),
                                            " before"));
  }
  return absl::OkStatus();
}

// One measurement: `child_work(link, deadline)` in a forked guest,
// `parent_work(link, deadline)` timed here on the host side. Returns the
// parent's elapsed nanoseconds.
template <typename ChildWork, typename ParentWork>
absl::StatusOr<int64_t> RunLinkPair(const LinkSetup& setup, std::chrono::milliseconds timeout,
                                    int child_cpu, ChildWork child_work, ParentWork parent_work) {
  BenchSegment& segment = *setup.segment;
  absl::StatusOr<std::vector<uint32_t>> free_before = segment.FreeCounts();
  if (!free_before.ok()) return free_before.status();
  absl::StatusOr<uint32_t> epoch = segment.Reserve(setup.peer_id);
  if (!epoch.ok()) return epoch.status();
  const shm::Deadline deadline = shm::DeadlineAfter(timeout);
  const absl::Time link_deadline = absl::Now() + absl::FromChrono(timeout);
  const std::string path = segment.path();

  // Everything after the reservation runs in here, so that the slot is
  // recovered below on every path.
  absl::StatusOr<int64_t> elapsed = [&]() -> absl::StatusOr<int64_t> {
    absl::StatusOr<Wiring> wiring = Wiring::Create();
    if (!wiring.ok()) return wiring.status();
    absl::StatusOr<ControlChannel> channel = ControlChannel::Create();
    if (!channel.ok()) return channel.status();
    absl::StatusOr<ForkedChild> child = ForkedChild::Start([&]() {
      ControlEnd control = channel->ChildEnd();
      if (child_cpu >= 0) {
        if (absl::Status placed = PinToCpu(child_cpu); !placed.ok()) {
          ChildReady(control, placed, deadline).IgnoreError();
          return 1;
        }
      }
      absl::StatusOr<std::unique_ptr<shm::Segment>> guest =
          AttachAndClaim(path, setup.peer_id, *epoch);
      absl::StatusOr<std::unique_ptr<RingLink>> link =
          guest.ok() ? RingLink::Create(
                           wiring->Guest(guest->get(), setup.peer_id, *epoch, setup.doorbell),
                           setup.options)
                     : absl::StatusOr<std::unique_ptr<RingLink>>(guest.status());
      if (!ChildReady(control, link.status(), deadline).ok()) return 1;
      const int code = ChildFinish(control, child_work(**link, link_deadline), deadline);
      (*link)->Close();
      link->reset();
      if (!SayGoodbye(**guest, setup.peer_id, *epoch).ok()) return 1;
      return code;
    });
    if (!child.ok()) return child.status();
    ControlEnd control = channel->ParentEnd();
    if (absl::Status s = ParentAwaitReady(control, deadline); !s.ok()) return s;
    absl::StatusOr<std::unique_ptr<RingLink>> link = RingLink::Create(
        wiring->Host(&segment.host(), setup.peer_id, *epoch, setup.doorbell), setup.options);
    if (!link.ok()) return link.status();
    const int64_t start = NowNs();
    if (absl::Status s = ParentGo(control); !s.ok()) return s;
    if (absl::Status s = parent_work(**link, link_deadline); !s.ok()) return s;
    const int64_t took = NowNs() - start;
    if (absl::Status s = ParentAwaitDone(control, *child, deadline); !s.ok()) return s;
    return took;
    // Leaving this scope drops the host link and, on an error path, kills
    // the child, so recovery below finds nobody using the rings (§14).
  }();
  absl::Status recovered = segment.Recover(setup.peer_id, *epoch);
  if (!elapsed.ok()) return elapsed.status();
  if (!recovered.ok()) return recovered;
  if (absl::Status s = CheckNoLeak(segment, *free_before); !s.ok()) return s;
  return elapsed;
}

}  // namespace

absl::StatusOr<ThroughputSample> LinkThroughput(const LinkSetup& setup,
                                                const ThroughputWorkload& workload, size_t batch) {
  if (workload.payload_bytes < kMinPayload) return absl::InvalidArgumentError("payload < 8 bytes");
  if (batch == 0) return absl::InvalidArgumentError("batch of 0 frames");
  absl::StatusOr<int64_t> elapsed = RunLinkPair(
      setup, workload.timeout, workload.child_cpu,
      [&](RingLink& link, absl::Time deadline) {
        return batch == 1 ? SendFrames(link, workload, deadline)
                          : SendFrameBatches(link, workload, batch, deadline);
      },
      [&](RingLink& link, absl::Time deadline) {
        return batch == 1 ? ReceiveFrames(link, workload, deadline)
                          : ReceiveFrameBatches(link, workload, batch, deadline);
      });
  if (!elapsed.ok()) return elapsed.status();
  return ThroughputSample{workload.frames, workload.frames * workload.payload_bytes, *elapsed};
}

absl::StatusOr<RoundTripSamples> LinkRoundTrip(const LinkSetup& setup,
                                               const RoundTripWorkload& workload) {
  if (workload.payload_bytes < kMinPayload) return absl::InvalidArgumentError("payload < 8 bytes");
  RoundTripSamples samples;
  samples.reserve(workload.max_iterations);
  absl::StatusOr<int64_t> elapsed = RunLinkPair(
      setup, workload.timeout, workload.child_cpu,
      [&](RingLink& link, absl::Time deadline) { return Echo(link, workload, deadline); },
      [&](RingLink& link, absl::Time deadline) {
        return PingPong(link, workload, deadline, samples);
      });
  if (!elapsed.ok()) return elapsed.status();
  return samples;
}

}  // namespace shmhub::bench
