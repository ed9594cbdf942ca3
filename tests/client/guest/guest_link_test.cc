// GuestLink over a Guest attached by path (no local bootstrap, so no
// doorbell and no mapping-control socket) talking to a HostLink on the
// host's segment. The bootstrapped case, with shmhubd's doorbell, is in
// tests/e2e/guest_link_process_test.cc.
#include "client/guest/guest_link.h"

#include <memory>
#include <optional>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/guest/guest.h"
#include "client/host/host_link.h"
#include "gtest/gtest.h"
#include "shm/peer_table.h"
#include "shm/segment.h"
#include "tests/client/link/test_util.h"
#include "tests/testing/temp_dir.h"

namespace shmhub::client {
namespace {

using link_test::Bytes;
using link_test::Copy;
using link_test::Pattern;

absl::Time Soon() { return absl::Now() + absl::Seconds(10); }

class GuestLinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<shm::Segment>> segment =
        shm::Segment::Create(dir_.File("segment"), link_test::SmallConfig());
    ASSERT_TRUE(segment.ok()) << segment.status();
    segment_ = *std::move(segment);
    absl::StatusOr<shm::Occupancy> reserved = segment_->peers().ReserveFirstFree();
    ASSERT_TRUE(reserved.ok()) << reserved.status();
    GuestOptions options;
    options.segment_path = dir_.File("segment");
    options.peer_id = reserved->peer_id;
    options.expected_epoch = reserved->epoch;
    options.heartbeat = false;
    absl::StatusOr<std::unique_ptr<Guest>> guest = Guest::Attach(options);
    ASSERT_TRUE(guest.ok()) << guest.status();
    guest_ = *std::move(guest);
  }

  std::unique_ptr<RingLink> Host() {
    absl::StatusOr<std::unique_ptr<RingLink>> host =
        HostLink::Create(segment_.get(), {guest_->peer_id(), guest_->epoch()}, std::nullopt, {});
    EXPECT_TRUE(host.ok()) << host.status();
    return host.ok() ? *std::move(host) : nullptr;
  }

  shmhub::testing::TempDir dir_;
  std::unique_ptr<shm::Segment> segment_;
  std::unique_ptr<Guest> guest_;
};

TEST_F(GuestLinkTest, CarriesInlineAndSlotFramesBothWaysForTheGuestsOccupancy) {
  absl::StatusOr<std::unique_ptr<RingLink>> link = shmhub::GuestLink::Create(*guest_);
  ASSERT_TRUE(link.ok()) << link.status();
  EXPECT_EQ((*link)->peer_id(), guest_->peer_id());
  EXPECT_EQ((*link)->epoch(), guest_->epoch());
  std::unique_ptr<RingLink> host = Host();
  ASSERT_NE(host, nullptr);
  for (size_t size : {0, 100, 3000}) {
    ASSERT_TRUE((*link)->Send(Bytes(Pattern(size, size)), Soon()).ok());
    absl::StatusOr<ReceivedFrame> at_host = host->Receive(Soon());
    ASSERT_TRUE(at_host.ok()) << at_host.status();
    EXPECT_EQ(Copy(at_host->data()), Pattern(size, size));
    ASSERT_TRUE(host->Send(Bytes(Pattern(size + 1, size)), Soon()).ok());
    absl::StatusOr<ReceivedFrame> at_guest = (*link)->Receive(Soon());
    ASSERT_TRUE(at_guest.ok()) << at_guest.status();
    EXPECT_EQ(Copy(at_guest->data()), Pattern(size + 1, size));
  }
}

TEST_F(GuestLinkTest, WithoutLocalBootstrapPayloadsBeyondASlotHaveNoTier) {
  absl::StatusOr<std::unique_ptr<RingLink>> link = shmhub::GuestLink::Create(*guest_);
  ASSERT_TRUE(link.ok()) << link.status();
  EXPECT_EQ((*link)->Send(Bytes(Pattern(0, 5000)), Soon()).code(),
            absl::StatusCode::kResourceExhausted);
}

TEST_F(GuestLinkTest, EvictionMakesTheGuestsCallsUnavailable) {
  absl::StatusOr<std::unique_ptr<RingLink>> link = shmhub::GuestLink::Create(*guest_);
  ASSERT_TRUE(link.ok()) << link.status();
  // What shmhubd's EvictPeer does first (§14 step 1).
  ASSERT_TRUE(segment_->peers().Entry(guest_->peer_id())->GoodbyeFenced(guest_->epoch()).ok());
  EXPECT_EQ((*link)->Receive(Soon()).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ((*link)->Send(Bytes(Pattern(0, 10)), Soon()).code(),
            absl::StatusCode::kUnavailable);
}

TEST_F(GuestLinkTest, IsRefusedOnceTheGuestHasSaidGoodbye) {
  ASSERT_TRUE(guest_->Goodbye().ok());
  EXPECT_EQ(shmhub::GuestLink::Create(*guest_).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace shmhub::client
