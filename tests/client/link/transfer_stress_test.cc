// Two processes exchange 10^6 frames (half each way, both directions at
// once) of random sizes across all three tiers — inline, SLOT_REF, MMAP_REF —
// with checksums: nothing lost, duplicated, reordered or leaked. The forked
// child is the guest (its own mapping, attached by path); the parent is the
// host. Each side sends on one thread and receives on another, holding up
// to a few views at a time and releasing them out of order, and sends part
// of its stream with SendBatch.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/host/host_link.h"
#include "client/link/ring_link.h"
#include "gtest/gtest.h"
#include "shm/peer_table.h"
#include "shm/segment.h"
#include "tests/client/link/process_util.h"
#include "tests/client/link/test_util.h"
#include "tests/testing/child_process.h"
#include "tests/testing/temp_dir.h"

namespace shmhub::client {
namespace {

using link_test::Checksum;
using link_test::FillPattern;
using link_test::Mix;

constexpr uint64_t kFramesPerDirection = 500'000;
// Bounds each blocking call; a healthy run never comes near it.
constexpr absl::Duration kCallBound = absl::Seconds(30);
constexpr absl::Duration kRunBound = absl::Minutes(5);
constexpr size_t kMaxHeldViews = 4;
constexpr size_t kBatch = 8;

constexpr uint64_t kGuestToHost = 0x6768;  // stream salts
constexpr uint64_t kHostToGuest = 0x6867;

shm::SegmentConfig StressConfig() {
  shm::SegmentConfig config;
  config.max_guests = 1;
  config.ring_capacity = 64 << 10;
  // Largest slot payload: 4092 bytes.
  config.classes = {{256, 256}, {4096, 64}};
  config.max_payload_size = 1 << 20;
  return config;
}

// Frame `seq` of stream `salt`: 70% inline (0..256 bytes), 25% SLOT_REF
// (257..4092), 5% MMAP_REF (4093..32768). Both processes compute it.
size_t FrameSize(uint64_t salt, uint64_t seq) {
  const uint64_t r = Mix(salt * 0x100000001B3ull + seq);
  const uint64_t pick = r % 100;
  const uint64_t v = r >> 8;
  if (pick < 70) return v % 257;
  if (pick < 95) return 257 + v % (4092 - 257 + 1);
  return 4093 + v % (32768 - 4093 + 1);
}

uint64_t FrameSeed(uint64_t salt, uint64_t seq) { return Mix(salt) ^ seq; }

// Sends the stream; an empty string on success, else what went wrong.
std::string SendStream(RingLink& link, uint64_t salt) {
  std::vector<std::vector<uint8_t>> buffers(kBatch, std::vector<uint8_t>(32768));
  uint64_t seq = 0;
  while (seq < kFramesPerDirection) {
    // Every eighth group of frames goes as one batch.
    const bool batch = (seq / kBatch) % 8 == 3 && seq + kBatch <= kFramesPerDirection;
    const size_t count = batch ? kBatch : 1;
    std::vector<absl::Span<const uint8_t>> spans;
    for (size_t i = 0; i < count; ++i) {
      const size_t size = FrameSize(salt, seq + i);
      FillPattern(FrameSeed(salt, seq + i), absl::MakeSpan(buffers[i].data(), size));
      spans.push_back(absl::MakeConstSpan(buffers[i].data(), size));
    }
    if (batch) {
      absl::StatusOr<size_t> sent = link.SendBatch(spans, absl::Now() + kCallBound);
      if (!sent.ok()) return absl::StrCat("batch at frame ", seq, ": ", sent.status().ToString());
    } else if (absl::Status sent = link.Send(spans[0], absl::Now() + kCallBound); !sent.ok()) {
      return absl::StrCat("frame ", seq, ": ", sent.ToString());
    }
    seq += count;
  }
  return "";
}

// Receives and checks the stream; an empty string on success.
std::string ReceiveStream(RingLink& link, uint64_t salt) {
  std::vector<uint8_t> expected(32768);
  std::vector<ReceivedFrame> held;
  uint64_t seq = 0;
  uint64_t choice = Mix(salt + 1);
  auto check = [&](const ReceivedFrame& frame) -> std::string {
    const size_t size = FrameSize(salt, seq);
    if (frame.data().size() != size) {
      return absl::StrCat("frame ", seq, ": ", frame.data().size(), " bytes, expected ", size,
                          " (lost, duplicated or reordered)");
    }
    FillPattern(FrameSeed(salt, seq), absl::MakeSpan(expected.data(), size));
    if (Checksum(frame.data()) != Checksum(absl::MakeConstSpan(expected.data(), size))) {
      return absl::StrCat("frame ", seq, ": checksum mismatch");
    }
    ++seq;
    return "";
  };
  auto keep = [&](ReceivedFrame frame) {
    held.push_back(std::move(frame));
    if (held.size() > kMaxHeldViews) {
      choice = Mix(choice);
      const size_t victim = choice % held.size();
      held[victim].Release();
      held.erase(held.begin() + static_cast<ptrdiff_t>(victim));
    }
  };
  while (seq < kFramesPerDirection) {
    absl::StatusOr<std::optional<ReceivedFrame>> ready = link.TryReceive();
    if (!ready.ok()) return absl::StrCat("at frame ", seq, ": ", ready.status().ToString());
    if (ready->has_value()) {
      if (std::string bad = check(**ready); !bad.empty()) return bad;
      keep(**std::move(ready));
      continue;
    }
    // Nothing ready: give everything back (held views keep ring bytes and
    // slots from the sender), then block.
    held.clear();
    absl::StatusOr<std::vector<ReceivedFrame>> frames =
        link.ReceiveBatch(16, absl::Now() + kCallBound);
    if (!frames.ok()) return absl::StrCat("at frame ", seq, ": ", frames.status().ToString());
    for (ReceivedFrame& frame : *frames) {
      if (std::string bad = check(frame); !bad.empty()) return bad;
      keep(std::move(frame));
    }
  }
  held.clear();
  if (link.outstanding_views() != 0) return "views still outstanding at the end";
  return "";
}

// Runs both directions on `link`; an empty string on success.
std::string Exchange(RingLink& link, uint64_t send_salt, uint64_t receive_salt) {
  std::string send_error;
  std::thread sender([&] { send_error = SendStream(link, send_salt); });
  std::string receive_error = ReceiveStream(link, receive_salt);
  if (!receive_error.empty()) link.Close();  // unblocks the sender
  sender.join();
  if (!receive_error.empty()) return "receive: " + receive_error;
  if (!send_error.empty()) return "send: " + send_error;
  return "";
}

TEST(LinkTransferStressTest, AMillionFramesOfEveryTierCrossBetweenTwoProcessesIntact) {
  shmhub::testing::TempDir dir;
  const std::string path = dir.File("segment");
  absl::StatusOr<std::unique_ptr<shm::Segment>> segment =
      shm::Segment::Create(path, StressConfig());
  ASSERT_TRUE(segment.ok()) << segment.status();
  absl::StatusOr<shm::Occupancy> reserved = (*segment)->peers().ReserveFirstFree();
  ASSERT_TRUE(reserved.ok()) << reserved.status();
  const uint32_t peer_id = reserved->peer_id;
  const uint32_t epoch = reserved->epoch;
  link_test::PeerChannels channels = link_test::PeerChannels::Make();
  link_test::ResultPipe verdict;

  const absl::Time start = absl::Now();
  shmhub::testing::ChildProcess guest([&]() -> int {
    channels.KeepGuestEnds();
    absl::StatusOr<std::unique_ptr<shm::Segment>> mine = shm::Segment::Attach(path);
    if (!mine.ok() || !(*mine)->peers().Entry(peer_id)->ClaimFenced(epoch).ok()) {
      std::fprintf(stderr, "guest: cannot attach and claim\n");
      verdict.Report(2);
      return 2;
    }
    absl::StatusOr<std::unique_ptr<RingLink>> link = RingLink::Create(
        LinkEndpoints{mine->get(), peer_id, epoch, LinkSide::kGuest,
                      std::move(channels.guest_doorbell), std::move(channels.guest_mapping)});
    if (!link.ok()) {
      std::fprintf(stderr, "guest: %s\n", link.status().ToString().c_str());
      verdict.Report(3);
      return 3;
    }
    const std::string error = Exchange(**link, kGuestToHost, kHostToGuest);
    link->reset();
    if (!error.empty()) std::fprintf(stderr, "guest: %s\n", error.c_str());
    verdict.Report(error.empty() ? 0 : 1);
    return error.empty() ? 0 : 1;
  });
  channels.KeepHostEnds();
  verdict.CloseWriteEnd();

  ASSERT_TRUE(link_test::AwaitAttached(**segment, peer_id, epoch, absl::Seconds(10)));
  absl::StatusOr<std::unique_ptr<RingLink>> host =
      HostLink::Create(segment->get(), {peer_id, epoch}, std::move(channels.host_doorbell),
                       std::move(channels.host_mapping));
  ASSERT_TRUE(host.ok()) << host.status();
  const std::string error = Exchange(**host, kHostToGuest, kGuestToHost);
  EXPECT_EQ(error, "");

  const std::optional<uint8_t> guest_verdict = verdict.Await(kRunBound);
  ASSERT_TRUE(guest_verdict.has_value()) << "the guest did not finish";
  EXPECT_EQ(*guest_verdict, 0) << "see the guest's stderr above";
  EXPECT_EQ(guest.Wait(), *guest_verdict);
  const absl::Duration elapsed = absl::Now() - start;

  // Nothing leaked: both rings empty, every slot back on its free stack.
  EXPECT_EQ((*host)->outstanding_views(), 0u);
  host->reset();
  EXPECT_TRUE((*segment)->GuestToHostRing(peer_id - 1).IsEmpty());
  EXPECT_TRUE((*segment)->HostToGuestRing(peer_id - 1).IsEmpty());
  link_test::ExpectPoolFull(**segment);

  const double fps = 2.0 * kFramesPerDirection / absl::ToDoubleSeconds(elapsed);
  std::printf("exchanged %llu frames in %s (%.0f frames/s, both directions at once)\n",
              static_cast<unsigned long long>(2 * kFramesPerDirection),
              absl::FormatDuration(elapsed).c_str(), fps);
}

}  // namespace
}  // namespace shmhub::client
