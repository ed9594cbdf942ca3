// RingLink in one process: a guest link and a host link over the ring pair
// of one attached peer of a real segment (tiers, views, backpressure,
// doorbell economy, and every way a call ends).
#include "client/link/ring_link.h"

#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/link/mmap_region_sender.h"
#include "gtest/gtest.h"
#include "shm/frame.h"
#include "shm/var_slot_pool.h"
#include "tests/client/link/test_util.h"

namespace shmhub::client {
namespace {

using link_test::Bytes;
using link_test::Checksum;
using link_test::Copy;
using link_test::ExpectPoolFull;
using link_test::kLargestSlotPayload;
using link_test::Pattern;

// A bound for things that must happen; never reached when the code works.
absl::Time Soon() { return absl::Now() + absl::Seconds(10); }
// For calls expected to block until their deadline.
absl::Time Shortly() { return absl::Now() + absl::Milliseconds(50); }

// Mappings of our MMAP regions in this process (sender and receiver side).
int RegionMappings() {
  std::ifstream maps("/proc/self/maps");
  int count = 0;
  for (std::string line; std::getline(maps, line);) {
    if (absl::StrContains(line, "shmhub-link-region")) ++count;
  }
  return count;
}

link_test::PairOptions NoDoorbells() {
  link_test::PairOptions options;
  options.doorbells = false;
  return options;
}

link_test::PairOptions NoMappingControl() {
  link_test::PairOptions options;
  options.mapping_control = false;
  return options;
}

class RingLinkTest : public link_test::LinkPairFixture {
 protected:
  // Receives on `link` and checks the payload is `expected`.
  void ExpectReceive(RingLink& link, const std::vector<uint8_t>& expected) {
    absl::StatusOr<ReceivedFrame> frame = link.Receive(Soon());
    ASSERT_TRUE(frame.ok()) << frame.status();
    EXPECT_EQ(Copy(frame->data()), expected);
  }
  shm::BipBuffer GuestToHost() const { return segment_->GuestToHostRing(peer_id_ - 1); }
};

TEST_F(RingLinkTest, CreateRefusesAMissingSegmentAndPeerIdsOutsideTheSegment) {
  Build();
  LinkEndpoints none;
  EXPECT_EQ(RingLink::Create(std::move(none)).status().code(),
            absl::StatusCode::kInvalidArgument);
  for (uint32_t id : {0u, 3u, 256u}) {
    LinkEndpoints endpoints;
    endpoints.segment = segment_.get();
    endpoints.peer_id = id;
    endpoints.epoch = epoch_;
    EXPECT_EQ(RingLink::Create(std::move(endpoints)).status().code(),
              absl::StatusCode::kInvalidArgument)
        << "peer " << id;
  }
}

TEST_F(RingLinkTest, CreateRefusesAnEntryThatDoesNotHoldAttachedAtTheEpoch) {
  Build();
  LinkEndpoints empty_entry;
  empty_entry.segment = segment_.get();
  empty_entry.peer_id = 2;
  EXPECT_EQ(RingLink::Create(std::move(empty_entry)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  LinkEndpoints old_epoch;
  old_epoch.segment = segment_.get();
  old_epoch.peer_id = peer_id_;
  old_epoch.epoch = epoch_ + 1;
  EXPECT_EQ(RingLink::Create(std::move(old_epoch)).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(RingLinkTest, EveryTierRoundTripsInBothDirections) {
  Build();
  // Inline up to the threshold (256), SLOT_REF up to 4092, MMAP_REF above.
  const std::vector<size_t> sizes = {0,    1,    7,     255,   256,     257,
                                     1000, 4092, 4093,  65536, 3 << 20, 8 << 20};
  for (RingLink* sender : {guest_.get(), host_.get()}) {
    RingLink& receiver = sender == guest_.get() ? *host_ : *guest_;
    for (size_t i = 0; i < sizes.size(); ++i) {
      const std::vector<uint8_t> payload = Pattern(i, sizes[i]);
      ASSERT_TRUE(sender->Send(Bytes(payload), Soon()).ok()) << "size " << sizes[i];
      ExpectReceive(receiver, payload);
    }
  }
  EXPECT_EQ(host_->outstanding_views(), 0u);
  EXPECT_EQ(guest_->outstanding_views(), 0u);
  ExpectPoolFull(*segment_);
}

TEST_F(RingLinkTest, SlotPayloadsAreOwnedByTheSenderAndFreedWhenTheViewIsReleased) {
  Build();
  shm::VarSlotPool pool = segment_->pool();
  // 1000 bytes + the 4-byte prefix: class 1 (1024-byte slots).
  for (RingLink* sender : {guest_.get(), host_.get()}) {
    RingLink& receiver = sender == guest_.get() ? *host_ : *guest_;
    const uint32_t owner = sender == guest_.get() ? peer_id_ : shm::kHostPeerId;
    ASSERT_TRUE(sender->Send(Bytes(Pattern(1, 1000)), Soon()).ok());
    EXPECT_EQ(*pool.FreeCount(1), 7u);
    absl::StatusOr<shm::SlotMetaSnapshot> meta = pool.Meta(1, 0);
    ASSERT_TRUE(meta.ok());
    EXPECT_EQ(meta->state, shm::kSlotAllocated);
    EXPECT_EQ(meta->owner_peer, owner);

    absl::StatusOr<ReceivedFrame> frame = receiver.Receive(Soon());
    ASSERT_TRUE(frame.ok()) << frame.status();
    EXPECT_EQ(Copy(frame->data()), Pattern(1, 1000));
    EXPECT_EQ(*pool.FreeCount(1), 7u) << "the view holds the slot";
    frame->Release();
    EXPECT_TRUE(frame->empty());
    frame->Release();  // idempotent
    EXPECT_EQ(*pool.FreeCount(1), 8u);
  }
}

TEST_F(RingLinkTest, ViewsReleasedOutOfOrderGiveRingBytesBackInRingOrder) {
  Build();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(guest_->Send(Bytes(Pattern(i, 100)), Soon()).ok());
  const uint32_t used = GuestToHost().Occupancy();
  ASSERT_EQ(used, 3 * shm::InlineFrameSize(100));
  std::vector<ReceivedFrame> views;
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<ReceivedFrame> frame = host_->Receive(Soon());
    ASSERT_TRUE(frame.ok()) << frame.status();
    views.push_back(*std::move(frame));
  }
  EXPECT_EQ(host_->outstanding_views(), 3u);
  views[2].Release();
  views[1].Release();
  EXPECT_EQ(host_->outstanding_views(), 1u);
  EXPECT_EQ(GuestToHost().Occupancy(), used) << "the oldest view still holds the ring";
  EXPECT_EQ(Copy(views[0].data()), Pattern(0, 100));
  views[0].Release();
  EXPECT_EQ(host_->outstanding_views(), 0u);
  // Less than a chunk is owed: it goes back when the receiver finds nothing.
  absl::StatusOr<std::optional<ReceivedFrame>> none = host_->TryReceive();
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_FALSE(none->has_value());
  EXPECT_EQ(GuestToHost().Occupancy(), 0u);
}

TEST_F(RingLinkTest, OwedRingBytesWaitForAChunkWhileTheReceiverIsBusyAndGoBackBeforeItSleeps) {
  Build();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(guest_->Send(Bytes(Pattern(i, 100)), Soon()).ok());
  const uint32_t entry = shm::InlineFrameSize(100);
  absl::StatusOr<ReceivedFrame> first = host_->Receive(Soon());
  absl::StatusOr<ReceivedFrame> second = host_->Receive(Soon());
  ASSERT_TRUE(first.ok() && second.ok());
  first->Release();
  absl::StatusOr<ReceivedFrame> third = host_->Receive(Soon());
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_EQ(GuestToHost().Occupancy(), 3 * entry) << "one entry owed: less than a chunk";
  // Nothing more arrives: before the receiver sleeps it gives back what it
  // owes, up to the view it still holds.
  EXPECT_EQ(host_->Receive(Shortly()).status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(GuestToHost().Occupancy(), 2 * entry);
  EXPECT_EQ(Copy(second->data()), Pattern(1, 100));
  EXPECT_EQ(Copy(third->data()), Pattern(2, 100));
}

TEST_F(RingLinkTest, ABusyReceiverGivesRingBytesBackOncePerEighthOfTheRing) {
  Build();
  const uint32_t entry = shm::InlineFrameSize(100);
  const uint32_t chunk = GuestToHost().capacity() / 8;
  const int frames = static_cast<int>(chunk / entry) + 3;
  for (int i = 0; i < frames; ++i) ASSERT_TRUE(guest_->Send(Bytes(Pattern(i, 100)), Soon()).ok());
  uint32_t lowest = GuestToHost().Occupancy();
  int drops = 0;
  for (int i = 0; i < frames; ++i) {
    ExpectReceive(*host_, Pattern(i, 100));
    const uint32_t now = GuestToHost().Occupancy();
    if (now < lowest) ++drops;
    lowest = std::min(lowest, now);
  }
  EXPECT_EQ(drops, 1) << "one chunk went back while receiving";
  EXPECT_GE(static_cast<uint32_t>(frames) * entry - lowest, chunk);
  EXPECT_LT(lowest, chunk) << "what is still owed is less than a chunk";
}

TEST_F(RingLinkTest, ViewsStayValidAfterCloseAndAfterTheLinkIsDestroyed) {
  Build();
  const std::vector<uint8_t> payload = Pattern(7, 3000);
  ASSERT_TRUE(guest_->Send(Bytes(payload), Soon()).ok());
  absl::StatusOr<ReceivedFrame> frame = host_->Receive(Soon());
  ASSERT_TRUE(frame.ok()) << frame.status();
  host_->Close();
  EXPECT_EQ(host_->Receive(Soon()).status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(Copy(frame->data()), payload);
  host_.reset();
  EXPECT_EQ(Copy(frame->data()), payload);
  frame->Release();
  ExpectPoolFull(*segment_);
  EXPECT_EQ(GuestToHost().Occupancy(), 0u) << "a closed link still gives its ring bytes back";
}

TEST_F(RingLinkTest, TrySendReportsResourceExhaustedOnAFullRingAndSucceedsOnceRoomIsMade) {
  Build();
  int sent = 0;
  absl::Status status;
  while ((status = guest_->TrySend(Bytes(Pattern(sent, 200)))).ok() && sent < 100) ++sent;
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
  ASSERT_GT(sent, 1);
  // Room comes back a chunk (an eighth of the ring) at a time.
  const int chunk_frames =
      static_cast<int>(GuestToHost().capacity() / 8 / shm::InlineFrameSize(200)) + 1;
  for (int i = 0; i + 1 < chunk_frames; ++i) ExpectReceive(*host_, Pattern(i, 200));
  EXPECT_EQ(guest_->TrySend(Bytes(Pattern(sent, 200))).code(),
            absl::StatusCode::kResourceExhausted)
      << "less than a chunk was consumed";
  ExpectReceive(*host_, Pattern(chunk_frames - 1, 200));
  EXPECT_TRUE(guest_->TrySend(Bytes(Pattern(sent, 200))).ok());
}

TEST_F(RingLinkTest, SendHitsItsDeadlineWhileThePoolClassIsExhaustedAndSendsNothing) {
  Build();
  // 3000 bytes need the 4096-byte class, which has 4 slots; nobody receives.
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(guest_->Send(Bytes(Pattern(i, 3000)), Soon()).ok());
  EXPECT_EQ(guest_->Send(Bytes(Pattern(4, 3000)), Shortly()).code(),
            absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(guest_->TrySend(Bytes(Pattern(4, 3000))).code(),
            absl::StatusCode::kResourceExhausted);
  for (int i = 0; i < 4; ++i) ExpectReceive(*host_, Pattern(i, 3000));
  absl::StatusOr<std::optional<ReceivedFrame>> more = host_->TryReceive();
  ASSERT_TRUE(more.ok()) << more.status();
  EXPECT_FALSE(more->has_value()) << "the failed sends must have sent nothing";
  ExpectPoolFull(*segment_);
}

TEST_F(RingLinkTest, StalledReceiverMakesSendHitItsDeadlineAndAfterItResumesEverythingArrives) {
  Build();
  // Mixed tiers; frame i is Pattern(i, SizeOf(i)).
  auto size_of = [](uint64_t i) -> size_t {
    switch (i % 4) {
      case 0:
        return 200;
      case 1:
        return 1000;
      case 2:
        return 3000;
      default:
        return i % 8 == 3 ? 100 : (1 << 20);
    }
  };
  uint64_t next = 0;
  absl::Status status;
  while ((status = guest_->Send(Bytes(Pattern(next, size_of(next))), Shortly())).ok()) {
    ASSERT_LT(next, 10'000u) << "the ring, pool or regions should fill long before this";
    ++next;
  }
  ASSERT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded) << status;
  const uint64_t total = next + 200;

  // The receiver resumes; the sender carries on from the frame that failed.
  uint64_t received = 0;
  bool intact = true;
  std::thread receiver([&] {
    for (; received < total; ++received) {
      absl::StatusOr<ReceivedFrame> frame = host_->Receive(Soon());
      if (!frame.ok()) break;
      const std::vector<uint8_t> expected = Pattern(received, size_of(received));
      if (Checksum(frame->data()) != Checksum(Bytes(expected))) intact = false;
    }
  });
  for (; next < total; ++next) {
    ASSERT_TRUE(guest_->Send(Bytes(Pattern(next, size_of(next))), Soon()).ok()) << next;
  }
  receiver.join();
  EXPECT_EQ(received, total);
  EXPECT_TRUE(intact);
  ExpectPoolFull(*segment_);
}

TEST_F(RingLinkTest, SendBatchCommitsEveryFrameInOrderAndRingsOnce) {
  Build();
  std::vector<std::vector<uint8_t>> payloads;
  for (int i = 0; i < 10; ++i) payloads.push_back(Pattern(i, i % 2 == 0 ? 50 : 900));
  std::vector<absl::Span<const uint8_t>> spans(payloads.begin(), payloads.end());
  absl::StatusOr<size_t> sent = guest_->SendBatch(spans, Soon());
  ASSERT_TRUE(sent.ok()) << sent.status();
  EXPECT_EQ(*sent, 10u);
  EXPECT_EQ(RingsQueuedAtHost(), 1);
  for (const std::vector<uint8_t>& payload : payloads) ExpectReceive(*host_, payload);
}

TEST_F(RingLinkTest, SendBatchThatRunsOutOfTimeReportsHowManyFramesWereSent) {
  Build();
  std::vector<std::vector<uint8_t>> payloads(6, Pattern(1, 3000));  // 4 slots of this class
  std::vector<absl::Span<const uint8_t>> spans(payloads.begin(), payloads.end());
  absl::StatusOr<size_t> sent = guest_->SendBatch(spans, Shortly());
  EXPECT_EQ(sent.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_TRUE(absl::StrContains(sent.status().message(), "4 of 6")) << sent.status();
}

TEST_F(RingLinkTest, ProducerRingsOnlyWhenTheConsumerHasCaughtUp) {
  Build();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(guest_->Send(Bytes(Pattern(i, 40)), Soon()).ok());
  // The first entry went into an empty ring; the next two found the
  // consumer still behind the first.
  EXPECT_EQ(RingsQueuedAtHost(), 1);
  for (int i = 0; i < 3; ++i) ExpectReceive(*host_, Pattern(i, 40));
  ASSERT_TRUE(guest_->Send(Bytes(Pattern(3, 40)), Soon()).ok());
  EXPECT_EQ(RingsQueuedAtHost(), 1) << "a consumer that still owes ring bytes is busy";
  ExpectReceive(*host_, Pattern(3, 40));
  // Finding nothing, the consumer gives its bytes back, as before a sleep.
  absl::StatusOr<std::optional<ReceivedFrame>> none = host_->TryReceive();
  ASSERT_TRUE(none.ok()) << none.status();
  ASSERT_FALSE(none->has_value());
  ASSERT_TRUE(guest_->Send(Bytes(Pattern(4, 40)), Soon()).ok());
  EXPECT_EQ(RingsQueuedAtHost(), 2) << "the consumer had caught up, so it may sleep";
  EXPECT_EQ(RingsQueuedAtGuest(), 0) << "no release came near a full ring";
}

TEST_F(RingLinkTest, AlwaysRingRingsOnEverySendAndEveryRingRelease) {
  link_test::PairOptions options;
  options.link.always_ring = true;
  Build(options);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(guest_->Send(Bytes(Pattern(i, 40)), Soon()).ok());
  EXPECT_EQ(RingsQueuedAtHost(), 3);
  for (int i = 0; i < 3; ++i) ExpectReceive(*host_, Pattern(i, 40));
  absl::StatusOr<std::optional<ReceivedFrame>> none = host_->TryReceive();
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(RingsQueuedAtGuest(), 1) << "the bytes went back in one release, which rang";
}

TEST_F(RingLinkTest, ConsumerRingsOncePerChunkItGivesBackToAFullRing) {
  Build();
  int sent = 0;
  while (guest_->TrySend(Bytes(Pattern(sent, 200))).ok() && sent < 100) ++sent;
  ASSERT_EQ(RingsQueuedAtGuest(), 0);
  const int chunk_frames =
      static_cast<int>(GuestToHost().capacity() / 8 / shm::InlineFrameSize(200)) + 1;
  ASSERT_LT(chunk_frames, sent);
  for (int i = 0; i + 1 < chunk_frames; ++i) ExpectReceive(*host_, Pattern(i, 200));
  EXPECT_EQ(RingsQueuedAtGuest(), 0) << "no ring before a chunk is given back";
  ExpectReceive(*host_, Pattern(chunk_frames - 1, 200));
  EXPECT_EQ(RingsQueuedAtGuest(), 1) << "the chunk made room in a full ring";
}

TEST_F(RingLinkTest, FreeingASlotOfAnExhaustedClassRingsTheSender) {
  Build();
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(guest_->Send(Bytes(Pattern(i, 3000)), Soon()).ok());
  std::vector<ReceivedFrame> views;
  for (int i = 0; i < 4; ++i) {
    absl::StatusOr<ReceivedFrame> frame = host_->Receive(Soon());
    ASSERT_TRUE(frame.ok()) << frame.status();
    views.push_back(*std::move(frame));
  }
  ASSERT_EQ(RingsQueuedAtGuest(), 0);
  views[0].Release();
  EXPECT_EQ(RingsQueuedAtGuest(), 1) << "the class was empty: a sender may wait for it";
  views[1].Release();
  EXPECT_EQ(RingsQueuedAtGuest(), 1) << "the class had a free slot already";
}

TEST_F(RingLinkTest, ReceiveHitsItsDeadlineWhenNothingArrives) {
  Build();
  EXPECT_EQ(host_->Receive(Shortly()).status().code(), absl::StatusCode::kDeadlineExceeded);
  absl::StatusOr<std::optional<ReceivedFrame>> none = host_->TryReceive();
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_FALSE(none->has_value());
}

TEST_F(RingLinkTest, WithoutDoorbellsABlockedReceiveStillSeesFramesSentLater) {
  Build(NoDoorbells());
  absl::StatusOr<ReceivedFrame> frame = absl::UnknownError("not received");
  std::thread receiver([&] { frame = host_->Receive(Soon()); });
  ASSERT_TRUE(guest_->Send(Bytes(Pattern(1, 30)), Soon()).ok());
  receiver.join();
  ASSERT_TRUE(frame.ok()) << frame.status();
  EXPECT_EQ(Copy(frame->data()), Pattern(1, 30));
}

TEST_F(RingLinkTest, ReceiveBatchReturnsTheReadyFramesUpToMax) {
  Build();
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(guest_->Send(Bytes(Pattern(i, 60)), Soon()).ok());
  absl::StatusOr<std::vector<ReceivedFrame>> first = host_->ReceiveBatch(3, Soon());
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ(first->size(), 3u);
  absl::StatusOr<std::vector<ReceivedFrame>> rest = host_->ReceiveBatch(10, Soon());
  ASSERT_TRUE(rest.ok()) << rest.status();
  ASSERT_EQ(rest->size(), 2u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(Copy((*first)[i].data()), Pattern(i, 60));
  for (int i = 0; i < 2; ++i) EXPECT_EQ(Copy((*rest)[i].data()), Pattern(i + 3, 60));
  EXPECT_EQ(host_->ReceiveBatch(0, Soon()).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(RingLinkTest, CloseCancelsABlockedReceiveOnAnotherThreadAndEveryLaterCall) {
  Build();
  absl::Status blocked;
  std::thread receiver([&] { blocked = host_->Receive(Soon()).status(); });
  host_->Close();
  receiver.join();
  EXPECT_EQ(blocked.code(), absl::StatusCode::kCancelled) << blocked;
  EXPECT_EQ(host_->TrySend(Bytes(Pattern(0, 8))).code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(host_->TryReceive().status().code(), absl::StatusCode::kCancelled);
}

TEST_F(RingLinkTest, StopAbortsABlockedSendOnAnotherThreadAndEveryLaterCall) {
  Build();
  while (host_->TrySend(Bytes(Pattern(0, 200))).ok()) {
  }
  absl::Status blocked;
  std::thread sender([&] { blocked = host_->Send(Bytes(Pattern(0, 200)), Soon()); });
  host_->Stop();
  sender.join();
  EXPECT_EQ(blocked.code(), absl::StatusCode::kAborted) << blocked;
  EXPECT_EQ(host_->Receive(Soon()).status().code(), absl::StatusCode::kAborted);
}

TEST_F(RingLinkTest, HostGoodbyeMakesABlockedReceiveUnavailable) {
  Build();
  absl::Status blocked;
  std::thread receiver([&] { blocked = guest_->Receive(Soon()).status(); });
  segment_->SetHostGoodbye();
  receiver.join();
  EXPECT_EQ(blocked.code(), absl::StatusCode::kUnavailable) << blocked;
  EXPECT_EQ(guest_->TrySend(Bytes(Pattern(0, 8))).code(), absl::StatusCode::kUnavailable);
}

TEST_F(RingLinkTest, FramesSentBeforeThePeerLeftAreDeliveredThenCallsFailUnavailable) {
  Build();
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(guest_->Send(Bytes(Pattern(i, 500)), Soon()).ok());
  absl::StatusOr<shm::PeerEntryView> entry = segment_->peers().Entry(peer_id_);
  ASSERT_TRUE(entry.ok());
  ASSERT_TRUE(entry->GoodbyeFenced(epoch_).ok());
  for (int i = 0; i < 2; ++i) ExpectReceive(*host_, Pattern(i, 500));
  EXPECT_EQ(host_->Receive(Soon()).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(host_->TrySend(Bytes(Pattern(0, 8))).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(guest_->TrySend(Bytes(Pattern(0, 8))).code(), absl::StatusCode::kUnavailable);
}

TEST_F(RingLinkTest, DoorbellHangUpMakesABlockedReceiveUnavailable) {
  Build();
  absl::Status blocked;
  std::thread receiver([&] { blocked = host_->Receive(Soon()).status(); });
  guest_.reset();
  guest_doorbell_.Reset();  // the last copy of the guest end
  receiver.join();
  EXPECT_EQ(blocked.code(), absl::StatusCode::kUnavailable) << blocked;
}

TEST_F(RingLinkTest, MmapRegionsAreReusedOnceTheReceiverHasReleasedTheirPayloads) {
  Build();
  for (int i = 0; i < 40; ++i) {
    const std::vector<uint8_t> payload = Pattern(i, 3 << 20);
    ASSERT_TRUE(guest_->Send(Bytes(payload), Soon()).ok()) << i;
    ExpectReceive(*host_, payload);
  }
  // 120 MiB went through; one region (mapped here by sender and receiver)
  // carried it all.
  EXPECT_LE(RegionMappings(), 4);
}

TEST_F(RingLinkTest, HeldMmapPayloadsAreNeverOverwrittenAndBoundTheRegions) {
  Build();
  std::vector<ReceivedFrame> held;
  size_t i = 0;
  for (; i < MmapRegionSender::kMaxRegions; ++i) {
    ASSERT_TRUE(guest_->Send(Bytes(Pattern(i, 3 << 20)), Soon()).ok()) << i;
    absl::StatusOr<ReceivedFrame> frame = host_->Receive(Soon());
    ASSERT_TRUE(frame.ok()) << frame.status();
    held.push_back(*std::move(frame));
  }
  // Every region holds a payload still in use: no new one, no reuse.
  EXPECT_EQ(guest_->Send(Bytes(Pattern(i, 3 << 20)), Shortly()).code(),
            absl::StatusCode::kDeadlineExceeded);
  for (size_t j = 0; j < held.size(); ++j) {
    EXPECT_EQ(Checksum(held[j].data()), Checksum(Bytes(Pattern(j, 3 << 20)))) << j;
  }
  held.front().Release();
  ASSERT_TRUE(guest_->Send(Bytes(Pattern(i, 3 << 20)), Soon()).ok());
  ExpectReceive(*host_, Pattern(i, 3 << 20));
  for (size_t j = 1; j < held.size(); ++j) {
    EXPECT_EQ(Checksum(held[j].data()), Checksum(Bytes(Pattern(j, 3 << 20)))) << j;
  }
  EXPECT_LE(RegionMappings(), static_cast<int>(2 * MmapRegionSender::kMaxRegions));
}

TEST_F(RingLinkTest, PayloadTooLargeForASlotWithoutMappingControlIsResourceExhausted) {
  Build(NoMappingControl());
  EXPECT_EQ(guest_->Send(Bytes(Pattern(0, kLargestSlotPayload + 1)), Soon()).code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(guest_->Send(Bytes(Pattern(0, kLargestSlotPayload)), Soon()).ok());
}

TEST_F(RingLinkTest, PayloadAboveMaxPayloadSizeIsRefused) {
  Build();
  EXPECT_EQ(guest_->Send(Bytes(Pattern(0, (8 << 20) + 1)), Soon()).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(RingLinkTest, OptionsMustBoundTheBackoff) {
  Build();
  LinkEndpoints endpoints;
  endpoints.segment = segment_.get();
  endpoints.peer_id = peer_id_;
  endpoints.epoch = epoch_;
  LinkOptions unbounded;
  unbounded.max_backoff = absl::ZeroDuration();
  EXPECT_EQ(RingLink::Create(std::move(endpoints), unbounded).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace shmhub::client
