#include "client/link/ring_link.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "client/link/frame_sender.h"
#include "client/link/link_core.h"
#include "client/link/receive_state.h"
#include "shm/peer_table.h"

namespace shmhub::client {

// ---- ReceivedFrame ----------------------------------------------------------

ReceivedFrame::~ReceivedFrame() { Release(); }

ReceivedFrame::ReceivedFrame(ReceivedFrame&& other) noexcept
    : receiver_(std::exchange(other.receiver_, nullptr)),
      data_(std::exchange(other.data_, {})),
      token_(std::exchange(other.token_, 0)) {}

ReceivedFrame& ReceivedFrame::operator=(ReceivedFrame&& other) noexcept {
  if (this != &other) {
    Release();
    receiver_ = std::exchange(other.receiver_, nullptr);
    data_ = std::exchange(other.data_, {});
    token_ = std::exchange(other.token_, 0);
  }
  return *this;
}

void ReceivedFrame::Release() {
  if (receiver_ == nullptr) return;
  // Release may end the receiver's life (the link is gone and this was its
  // last view): nothing of it is touched afterwards.
  std::exchange(receiver_, nullptr)->Release(token_);
  data_ = {};
  token_ = 0;
}

// ---- RingLink -----------------------------------------------------------------

absl::StatusOr<std::unique_ptr<RingLink>> RingLink::Create(LinkEndpoints endpoints,
                                                           LinkOptions options) {
  if (endpoints.segment == nullptr) return absl::InvalidArgumentError("link without a segment");
  if (options.spin < absl::ZeroDuration() || options.max_backoff <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("link options need spin >= 0 and max_backoff > 0, got spin ",
                     absl::FormatDuration(options.spin), " and max_backoff ",
                     absl::FormatDuration(options.max_backoff)));
  }
  absl::StatusOr<shm::PeerEntryView> entry = endpoints.segment->peers().Entry(endpoints.peer_id);
  if (!entry.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("link to peer ", endpoints.peer_id, ": ", entry.status().message()));
  }
  if (absl::Status pair = entry->CheckPair(shm::PeerState::kAttached, endpoints.epoch);
      !pair.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "link to peer ", endpoints.peer_id, " epoch ", endpoints.epoch, ": ", pair.message()));
  }
  // One socket serves both directions (§9.2): the sender and the receiver
  // each own a handle to it.
  shm::UniqueFd send_mapping;
  if (endpoints.mapping_control.valid()) {
    absl::StatusOr<shm::UniqueFd> dup = shm::DupCloexec(endpoints.mapping_control.get());
    if (!dup.ok()) return dup.status();
    send_mapping = *std::move(dup);
  }
  auto core = std::make_shared<LinkCore>(endpoints.segment, endpoints.peer_id, endpoints.epoch,
                                         endpoints.side, std::move(endpoints.doorbell), options);
  auto sender = std::make_unique<FrameSender>(*core, std::move(send_mapping));
  auto receiver = std::make_shared<ReceiveState>(core, std::move(endpoints.mapping_control));
  return std::unique_ptr<RingLink>(
      new RingLink(std::move(core), std::move(sender), std::move(receiver)));
}

RingLink::RingLink(std::shared_ptr<LinkCore> core, std::unique_ptr<FrameSender> sender,
                   std::shared_ptr<ReceiveState> receiver)
    : core_(std::move(core)), sender_(std::move(sender)), receiver_(std::move(receiver)) {}

RingLink::~RingLink() {
  Close();
  // Views still out keep the receiver (and the mappings they point into).
  ReceiveState::Orphan(std::move(receiver_));
}

ReceivedFrame RingLink::MakeFrame(ReceiveState* receiver,
                                  absl::Span<const uint8_t> data, uint64_t token) {
  ReceivedFrame frame;
  frame.receiver_ = receiver;
  frame.data_ = data;
  frame.token_ = token;
  return frame;
}

absl::Status RingLink::Send(absl::Span<const uint8_t> payload, absl::Time deadline) {
  return sender_->Send(payload, deadline, /*may_wait=*/true);
}

absl::Status RingLink::TrySend(absl::Span<const uint8_t> payload) {
  return sender_->Send(payload, absl::InfinitePast(), /*may_wait=*/false);
}

absl::StatusOr<size_t> RingLink::SendBatch(absl::Span<const absl::Span<const uint8_t>> payloads,
                                           absl::Time deadline) {
  return sender_->SendBatch(payloads, deadline);
}

absl::StatusOr<ReceivedFrame> RingLink::Receive(absl::Time deadline) {
  ReceivedFrame frame;
  absl::Status status = core_->WaitUntil(deadline, [&]() -> absl::StatusOr<bool> {
    absl::StatusOr<size_t> taken = receiver_->Take(1, [&](const ReceiveState::View& view) {
      frame = MakeFrame(receiver_.get(), view.data, view.token);
    });
    if (!taken.ok()) return taken.status();
    return *taken != 0;
  }, [&] { receiver_->GiveBackOwed(); });
  if (!status.ok()) return status;
  return frame;
}

absl::StatusOr<std::optional<ReceivedFrame>> RingLink::TryReceive() {
  std::optional<ReceivedFrame> frame;
  absl::StatusOr<size_t> taken = receiver_->Take(1, [&](const ReceiveState::View& view) {
    frame = MakeFrame(receiver_.get(), view.data, view.token);
  });
  if (!taken.ok()) return taken.status();
  // Nothing ready: say so, unless nothing ever will be. The caller may now
  // wait elsewhere, so the ring bytes still owed go back, as before a sleep.
  if (*taken == 0) {
    if (absl::Status peer = core_->CheckPeer(); !peer.ok()) return peer;
    receiver_->GiveBackOwed();
  }
  return frame;
}

absl::StatusOr<std::vector<ReceivedFrame>> RingLink::ReceiveBatch(size_t max,
                                                                  absl::Time deadline) {
  if (max == 0) return absl::InvalidArgumentError("ReceiveBatch needs max >= 1");
  std::vector<ReceivedFrame> frames;
  absl::Status status = core_->WaitUntil(deadline, [&]() -> absl::StatusOr<bool> {
    absl::StatusOr<size_t> taken =
        receiver_->Take(max, [&](const ReceiveState::View& view) {
          frames.push_back(MakeFrame(receiver_.get(), view.data, view.token));
        });
    if (!taken.ok()) return taken.status();
    return *taken != 0;
  }, [&] { receiver_->GiveBackOwed(); });
  if (!status.ok()) return status;
  return frames;
}

void RingLink::Close() {
  // Receive calls (and their sleeps, which give owed ring bytes back) end
  // here, so the bytes of views already released go back now.
  receiver_->GiveBackOwed();
  core_->Close();
}

void RingLink::Stop() { core_->Stop(); }

size_t RingLink::outstanding_views() const { return receiver_->outstanding(); }

uint32_t RingLink::peer_id() const { return core_->peer_id(); }

uint32_t RingLink::epoch() const { return core_->epoch(); }

}  // namespace shmhub::client
