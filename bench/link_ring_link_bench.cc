// Micro-benchmarks of RingLink (client/link) in one process and one thread:
// a guest link sends, the host link receives and releases, on a real
// segment with shmhubd's default geometry, a doorbell pair and a
// mapping-control pair. This is the link's own per-frame cost (tier choice,
// ring, pool, validation, doorbell rule) without a second core: compare it
// with bip_buffer_bench's bare ring round trip to see what the link adds,
// and with link_bench_driver's two-process numbers to see what crossing
// cores costs.
#include <cstdint>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "bench/harness/bench_segment.h"
#include "benchmark/benchmark.h"
#include "client/link/ring_link.h"
#include "shm/doorbell.h"
#include "shm/mapping_control.h"
#include "shm/segment.h"

namespace shmhub::bench {
namespace {

using client::LinkEndpoints;
using client::LinkSide;
using client::ReceivedFrame;
using client::RingLink;

// A claimed occupancy with a link on each side, torn down and recovered
// when the benchmark ends. Without a doorbell the links wait with bounded
// sleeps; in one thread nothing waits, so that isolates the cost of the
// doorbell's system calls.
class LinkPair {
 public:
  absl::Status Open(bool doorbell) {
    absl::StatusOr<std::unique_ptr<BenchSegment>> segment =
        BenchSegment::Create(DefaultDaemonGeometry());
    if (!segment.ok()) return segment.status();
    segment_ = *std::move(segment);
    absl::StatusOr<uint32_t> epoch = segment_->Reserve(kPeer);
    if (!epoch.ok()) return epoch.status();
    epoch_ = *epoch;
    absl::StatusOr<std::unique_ptr<shm::Segment>> guest =
        AttachAndClaim(segment_->path(), kPeer, epoch_);
    if (!guest.ok()) return guest.status();
    guest_segment_ = *std::move(guest);
    absl::StatusOr<std::pair<shm::Doorbell, shm::Doorbell>> doorbells =
        shm::Doorbell::CreatePair();
    if (!doorbells.ok()) return doorbells.status();
    absl::StatusOr<std::pair<shm::UniqueFd, shm::UniqueFd>> control =
        shm::CreateMappingControlPair();
    if (!control.ok()) return control.status();

    LinkEndpoints host{&segment_->host(), kPeer, epoch_, LinkSide::kHost, std::nullopt,
                       std::move(control->first)};
    LinkEndpoints guest_end{guest_segment_.get(), kPeer, epoch_, LinkSide::kGuest, std::nullopt,
                            std::move(control->second)};
    if (doorbell) {
      host.doorbell.emplace(std::move(doorbells->first));
      guest_end.doorbell.emplace(std::move(doorbells->second));
    }
    absl::StatusOr<std::unique_ptr<RingLink>> host_link = RingLink::Create(std::move(host));
    if (!host_link.ok()) return host_link.status();
    host_ = *std::move(host_link);
    absl::StatusOr<std::unique_ptr<RingLink>> guest_link = RingLink::Create(std::move(guest_end));
    if (!guest_link.ok()) return guest_link.status();
    guest_ = *std::move(guest_link);
    return absl::OkStatus();
  }

  ~LinkPair() {
    guest_.reset();
    host_.reset();
    if (segment_ == nullptr) return;
    if (guest_segment_ != nullptr) SayGoodbye(*guest_segment_, kPeer, epoch_).IgnoreError();
    guest_segment_.reset();
    segment_->Recover(kPeer, epoch_).IgnoreError();
  }

  RingLink& guest() { return *guest_; }
  RingLink& host() { return *host_; }

 private:
  static constexpr uint32_t kPeer = 1;
  std::unique_ptr<BenchSegment> segment_;
  std::unique_ptr<shm::Segment> guest_segment_;
  uint32_t epoch_ = 0;
  std::unique_ptr<RingLink> host_;
  std::unique_ptr<RingLink> guest_;
};

absl::Time Deadline() { return absl::Now() + absl::Seconds(10); }

// Send one frame guest->host, receive it, release it. Args: payload bytes,
// doorbell (1) or none (0).
void BM_LinkSendReceive(benchmark::State& state) {
  LinkPair pair;
  if (absl::Status s = pair.Open(state.range(1) != 0); !s.ok()) {
    state.SkipWithError(s.ToString().c_str());
    return;
  }
  std::vector<uint8_t> payload(static_cast<size_t>(state.range(0)), 0xA5);
  const absl::Time deadline = Deadline();
  for (auto _ : state) {
    if (absl::Status s = pair.guest().Send(payload, deadline); !s.ok()) {
      state.SkipWithError(s.ToString().c_str());
      return;
    }
    absl::StatusOr<ReceivedFrame> frame = pair.host().Receive(deadline);
    if (!frame.ok() || frame->data().size() != payload.size()) {
      state.SkipWithError("receive failed");
      return;
    }
    benchmark::DoNotOptimize(frame->data().data());
    frame->Release();
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_LinkSendReceive)
    ->ArgsProduct({{8, 64, 256, 4096, 65536, 1 << 20}, {1, 0}})
    ->ArgNames({"bytes", "doorbell"});

// SendBatch of 32 frames, then ReceiveBatch until all 32 are back.
void BM_LinkBatch32(benchmark::State& state) {
  constexpr size_t kBatch = 32;
  LinkPair pair;
  if (absl::Status s = pair.Open(/*doorbell=*/true); !s.ok()) {
    state.SkipWithError(s.ToString().c_str());
    return;
  }
  std::vector<uint8_t> payload(static_cast<size_t>(state.range(0)), 0xA5);
  const std::vector<absl::Span<const uint8_t>> batch(kBatch, absl::MakeConstSpan(payload));
  const absl::Time deadline = Deadline();
  for (auto _ : state) {
    absl::StatusOr<size_t> sent = pair.guest().SendBatch(batch, deadline);
    if (!sent.ok() || *sent != kBatch) {
      state.SkipWithError("SendBatch failed");
      return;
    }
    size_t received = 0;
    while (received < kBatch) {
      absl::StatusOr<std::vector<ReceivedFrame>> frames =
          pair.host().ReceiveBatch(kBatch - received, deadline);
      if (!frames.ok()) {
        state.SkipWithError(frames.status().ToString().c_str());
        return;
      }
      received += frames->size();
    }
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(kBatch) * state.range(0));
}
BENCHMARK(BM_LinkBatch32)->Arg(8)->Arg(64)->Arg(256);

}  // namespace
}  // namespace shmhub::bench

BENCHMARK_MAIN();
